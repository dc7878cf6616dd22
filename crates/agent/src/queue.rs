//! The reconciler's work queue, in the style of kube-runtime's controller: a reconcile
//! returns an [`Action`] (come back after a while, or when something changes), a failed
//! one is handed to an error policy that picks its retry, and the queue owns every timer.
//!
//! - **De-duplication.** A key queued, or in flight, once more is not queued twice: its
//!   triggers merge into one, keeping the stronger ([`Trigger::stronger`]).
//! - **One reconcile per key at a time.** A trigger arriving while the key is in flight
//!   runs once more after it; at most `concurrency` keys are in flight.
//! - **One pending timer per key.** A delayed request ([`Queue::enqueue_after`], or an
//!   [`Action::Requeue`]) merges into the key's timer: the earliest deadline wins, with
//!   the stronger trigger. An immediate request at least as strong as the timer's trigger
//!   cancels it (the run it starts covers it); a weaker one (a health check while a
//!   retry is pending) leaves it, so a retry is never lost to a health check.
//! - **Panics.** A reconcile that panics is caught (the task's `JoinError`) and handed to
//!   the error policy as [`Panicked`] with its message, like an error: the key is retried
//!   as the policy says and never left in flight.
//! - **Gauges.** After every change the runner sets its [`QueueGauges`]: how many keys
//!   wait, run, and have a timer (`ferry_queue_*`, see [`Runner::with_gauges`]).
//! - **Shutdown.** Once `shutdown` is cancelled nothing new starts and pending timers are
//!   dropped; in-flight reconciles finish (their failures still reach the error policy).
//!
//! Written here rather than taken from kube-runtime's scheduler: that one de-duplicates
//! on the key alone, while ferry's triggers carry meaning (a manual sync may apply with
//! self-heal off, a health check plans nothing) and must merge by strength; the queue is
//! also generic over its key so that it is tested without a cluster. A `BTreeMap` of
//! deadlines and one `sleep_until` stand in for a `DelayQueue`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::history;
use crate::metrics::QueueGauges;

/// Why a reconcile is queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The periodic Git poll found a new revision.
    Poll,
    /// A push webhook.
    Webhook,
    /// A live change in the cluster (healed when self-heal is on).
    Drift,
    /// A user asked for a sync.
    Manual,
    /// A user rolled back to an earlier revision.
    Rollback,
    /// The agent's first reconcile after starting (or after taking the lease).
    Startup,
    /// Only the objects' health is looked at again (a status change, or health still
    /// progressing): nothing is planned, so nothing is recorded in the history.
    Health,
}

impl Trigger {
    fn rank(self) -> u8 {
        match self {
            Self::Rollback => 6,
            Self::Manual => 5,
            Self::Webhook => 4,
            Self::Poll => 3,
            Self::Drift => 2,
            Self::Startup => 1,
            Self::Health => 0,
        }
    }

    /// Of two triggers merged into one reconcile, the one that says most about why
    /// (rollback > manual > webhook > poll > drift > startup > health); `self` on a tie.
    pub fn stronger(self, other: Self) -> Self {
        if self.rank() >= other.rank() {
            self
        } else {
            other
        }
    }

    /// The history's trigger of the sync this one starts; `None` for a health check.
    pub fn recorded(self) -> Option<history::Trigger> {
        Some(match self {
            Self::Poll => history::Trigger::Poll,
            Self::Webhook => history::Trigger::Webhook,
            Self::Drift => history::Trigger::Drift,
            Self::Manual => history::Trigger::Manual,
            Self::Rollback => history::Trigger::Rollback,
            Self::Startup => history::Trigger::Startup,
            Self::Health => return None,
        })
    }
}

impl From<history::Trigger> for Trigger {
    fn from(trigger: history::Trigger) -> Self {
        match trigger {
            history::Trigger::Poll => Self::Poll,
            history::Trigger::Webhook => Self::Webhook,
            history::Trigger::Drift => Self::Drift,
            history::Trigger::Manual => Self::Manual,
            history::Trigger::Rollback => Self::Rollback,
            history::Trigger::Startup => Self::Startup,
        }
    }
}

/// When to reconcile a key again, as a reconcile or the error policy decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Again after `after`, with `trigger` (merged into the key's one timer).
    Requeue {
        /// The wait.
        after: Duration,
        /// Why it runs again.
        trigger: Trigger,
    },
    /// Only when something queues the key again.
    AwaitChange,
}

impl Action {
    /// Again after `after`, with `trigger`.
    pub fn requeue(after: Duration, trigger: Trigger) -> Self {
        Self::Requeue { after, trigger }
    }
}

/// A reconcile that panicked, with the panic's message; the queue hands it to the error
/// policy as an error (`E: From<Panicked>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panicked(pub String);

enum Request<K> {
    Now(K, Trigger),
    At(K, Trigger, Instant),
}

/// The sending side of the queue; cheap to clone.
pub struct Queue<K> {
    tx: mpsc::UnboundedSender<Request<K>>,
}

impl<K> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

/// A queue and the runner that works it off ([`Runner::run`]).
pub fn queue<K>() -> (Queue<K>, Runner<K>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Queue { tx },
        Runner {
            rx,
            gauges: QueueGauges::default(),
        },
    )
}

impl<K> Queue<K> {
    /// Queues a reconcile of `key` now.
    pub fn enqueue(&self, key: K, trigger: Trigger) {
        let _ = self.tx.send(Request::Now(key, trigger));
    }

    /// Queues a reconcile of `key` after `delay`, merged into the key's one timer.
    pub fn enqueue_after(&self, key: K, trigger: Trigger, delay: Duration) {
        let _ = self
            .tx
            .send(Request::At(key, trigger, Instant::now() + delay));
    }
}

/// The receiving side of the queue.
pub struct Runner<K> {
    rx: mpsc::UnboundedReceiver<Request<K>>,
    gauges: QueueGauges,
}

impl<K> Runner<K> {
    /// Reports the queue's sizes in `gauges` ([`Metrics::queue_gauges`](crate::metrics::Metrics::queue_gauges)).
    pub fn with_gauges(self, gauges: QueueGauges) -> Self {
        Self { gauges, ..self }
    }
}

enum Done<E> {
    Reconciled(Result<Action, E>),
    Handled(Action),
}

#[derive(Clone, Copy)]
enum Stage {
    Reconcile,
    Policy,
}

impl<K: Clone + Eq + Hash + Debug + Send + 'static> Runner<K> {
    /// Works the queue off until `shutdown` (or until every [`Queue`] is dropped and
    /// nothing is left to do): runs `reconcile(key, trigger)`, at most `concurrency` at
    /// once, and `error_policy(key, trigger, error)` for each failed or panicked one;
    /// the [`Action`] either returns schedules the key's next run.
    pub async fn run<R, RF, P, PF, E>(
        mut self,
        concurrency: usize,
        shutdown: CancellationToken,
        reconcile: R,
        error_policy: P,
    ) where
        R: Fn(K, Trigger) -> RF,
        RF: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(K, Trigger, E) -> PF,
        PF: Future<Output = Action> + Send + 'static,
        E: From<Panicked> + Send + 'static,
    {
        let concurrency = concurrency.max(1);
        let mut state: State<K> = State::default();
        let mut tasks: JoinSet<Done<E>> = JoinSet::new();
        let mut spawned: HashMap<Id, (K, Trigger, Stage)> = HashMap::new();
        let handle = |tasks: &mut JoinSet<Done<E>>, key: K, trigger: Trigger, e: E| {
            let policy = error_policy(key.clone(), trigger, e);
            let id = tasks.spawn(async move { Done::Handled(policy.await) }).id();
            (id, (key, trigger, Stage::Policy))
        };
        let mut open = true;
        let mut stopping = false;
        loop {
            while !stopping && state.running.len() < concurrency {
                let Some((key, trigger)) = state.start_next() else {
                    break;
                };
                let run = reconcile(key.clone(), trigger);
                let id = tasks.spawn(async move { Done::Reconciled(run.await) }).id();
                spawned.insert(id, (key, trigger, Stage::Reconcile));
            }
            self.gauges
                .set(state.queued.len(), state.running.len(), state.timers.len());
            if tasks.is_empty() && (stopping || (!open && state.is_idle())) {
                break;
            }
            let deadline = state.next_deadline();
            tokio::select! {
                _ = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    state.drop_pending();
                    info!(in_flight = state.running.len(), "shutting down: letting in-flight syncs finish");
                }
                request = self.rx.recv(), if open && !stopping => match request {
                    Some(Request::Now(key, trigger)) => state.now(key, trigger),
                    Some(Request::At(key, trigger, at)) => state.at(key, trigger, at),
                    None => open = false,
                },
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && !stopping => {
                    state.fire_due();
                }
                Some(joined) = tasks.join_next_with_id() => {
                    let (id, done) = match joined {
                        Ok((id, done)) => (id, Ok(done)),
                        Err(e) => (e.id(), Err(e)),
                    };
                    let Some((key, trigger, stage)) = spawned.remove(&id) else { continue };
                    let action = match (done, stage) {
                        (Ok(Done::Reconciled(Ok(action)) | Done::Handled(action)), _) => action,
                        (Ok(Done::Reconciled(Err(e))), _) => {
                            let (id, task) = handle(&mut tasks, key, trigger, e);
                            spawned.insert(id, task);
                            continue;
                        }
                        (Err(e), Stage::Reconcile) => {
                            let message = panic_message(e);
                            warn!(?key, "reconcile panicked: {message}");
                            let (id, task) = handle(&mut tasks, key, trigger, Panicked(message).into());
                            spawned.insert(id, task);
                            continue;
                        }
                        (Err(e), Stage::Policy) => {
                            error!(?key, "the error policy failed: {}", panic_message(e));
                            Action::AwaitChange
                        }
                    };
                    let again = state.finish(&key);
                    if stopping {
                        continue;
                    }
                    if let Action::Requeue { after, trigger } = action {
                        state.at(key.clone(), trigger, Instant::now() + after);
                    }
                    if let Some(trigger) = again {
                        state.now(key, trigger);
                    }
                }
                else => break,
            }
        }
    }
}

fn panic_message(e: JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

struct Timer {
    at: Instant,
    seq: u64,
    trigger: Trigger,
}

/// The queue's bookkeeping: keys ready to start (with their merged trigger), keys in
/// flight (with the trigger to run once more after), and one timer per key.
struct State<K> {
    ready: VecDeque<K>,
    queued: HashMap<K, Trigger>,
    running: HashMap<K, Option<Trigger>>,
    timers: HashMap<K, Timer>,
    deadlines: BTreeMap<(Instant, u64), K>,
    seq: u64,
}

impl<K> Default for State<K> {
    fn default() -> Self {
        Self {
            ready: VecDeque::new(),
            queued: HashMap::new(),
            running: HashMap::new(),
            timers: HashMap::new(),
            deadlines: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<K: Clone + Eq + Hash> State<K> {
    fn now(&mut self, key: K, trigger: Trigger) {
        if self
            .timers
            .get(&key)
            .is_some_and(|t| trigger.rank() >= t.trigger.rank())
        {
            self.cancel(&key);
        }
        if let Some(again) = self.running.get_mut(&key) {
            *again = Some(again.map_or(trigger, |t| t.stronger(trigger)));
        } else if let Some(queued) = self.queued.get_mut(&key) {
            *queued = queued.stronger(trigger);
        } else {
            self.queued.insert(key.clone(), trigger);
            self.ready.push_back(key);
        }
    }

    fn at(&mut self, key: K, mut trigger: Trigger, mut at: Instant) {
        if let Some(old) = self.cancel(&key) {
            at = at.min(old.at);
            trigger = old.trigger.stronger(trigger);
        }
        self.seq += 1;
        self.deadlines.insert((at, self.seq), key.clone());
        self.timers.insert(
            key,
            Timer {
                at,
                seq: self.seq,
                trigger,
            },
        );
    }

    fn cancel(&mut self, key: &K) -> Option<Timer> {
        let timer = self.timers.remove(key)?;
        self.deadlines.remove(&(timer.at, timer.seq));
        Some(timer)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|(at, _)| *at)
    }

    fn fire_due(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(timer) = self.timers.remove(&key) {
                self.now(key, timer.trigger);
            }
        }
    }

    fn start_next(&mut self) -> Option<(K, Trigger)> {
        let key = self.ready.pop_front()?;
        let trigger = self.queued.remove(&key)?;
        self.running.insert(key.clone(), None);
        Some((key, trigger))
    }

    fn finish(&mut self, key: &K) -> Option<Trigger> {
        self.running.remove(key).flatten()
    }

    fn drop_pending(&mut self) {
        self.ready.clear();
        self.queued.clear();
        self.timers.clear();
        self.deadlines.clear();
    }

    fn is_idle(&self) -> bool {
        self.ready.is_empty() && self.running.is_empty() && self.timers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use ferry_model::Backoff;

    use super::*;

    type Key = &'static str;

    #[derive(Debug, PartialEq)]
    enum TestError {
        Failed,
        Panicked(String),
    }

    impl From<Panicked> for TestError {
        fn from(p: Panicked) -> Self {
            Self::Panicked(p.0)
        }
    }

    /// What the fake reconcile and error policy saw, with the (paused) time since start.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<(Key, Trigger, u64)>>>);

    impl Log {
        fn push(&self, key: Key, trigger: Trigger, start: Instant) {
            let ms = start.elapsed().as_millis() as u64;
            self.0.lock().unwrap().push((key, trigger, ms));
        }
        fn take(&self) -> Vec<(Key, Trigger, u64)> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
        fn of(&self, key: Key) -> Vec<(Trigger, u64)> {
            let log = self.0.lock().unwrap();
            log.iter()
                .filter(|e| e.0 == key)
                .map(|e| (e.1, e.2))
                .collect()
        }
    }

    const RETRY: Backoff = Backoff::new(Duration::from_secs(5), 2, Duration::from_secs(40));

    /// Runs a queue whose reconcile logs each call, then sleeps `work` and fails for keys
    /// starting with `fail` (panics for keys starting with `panic`); the error policy logs
    /// the error and retries with [`RETRY`] per key.
    struct Harness {
        queue: Queue<Key>,
        runs: Log,
        errors: Arc<Mutex<Vec<(Key, TestError, u32)>>>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        start: Instant,
        gauges: QueueGauges,
    }

    impl Harness {
        fn new(concurrency: usize, work: Duration) -> Self {
            let (queue, runner) = queue::<Key>();
            let runs = Log::default();
            let errors: Arc<Mutex<Vec<(Key, TestError, u32)>>> = Default::default();
            let shutdown = CancellationToken::new();
            let start = Instant::now();
            let attempts: Arc<Mutex<HashMap<Key, u32>>> = Default::default();
            let reconcile = {
                let runs = runs.clone();
                let attempts = attempts.clone();
                move |key: Key, trigger: Trigger| {
                    runs.push(key, trigger, start);
                    let attempts = attempts.clone();
                    async move {
                        tokio::time::sleep(work).await;
                        if key.starts_with("panic") {
                            panic!("boom in {key}");
                        }
                        if key.starts_with("fail") {
                            return Err(TestError::Failed);
                        }
                        attempts.lock().unwrap().remove(key);
                        Ok(Action::AwaitChange)
                    }
                }
            };
            let policy = {
                let errors = errors.clone();
                move |key: Key, trigger: Trigger, e: TestError| {
                    let n = {
                        let mut attempts = attempts.lock().unwrap();
                        let n = attempts.entry(key).or_default();
                        *n += 1;
                        *n
                    };
                    errors.lock().unwrap().push((key, e, n));
                    async move { Action::requeue(RETRY.delay(n), trigger) }
                }
            };
            let gauges = QueueGauges::default();
            let runner = runner.with_gauges(gauges.clone());
            let task = tokio::spawn(runner.run(concurrency, shutdown.clone(), reconcile, policy));
            Self {
                queue,
                runs,
                errors,
                shutdown,
                task,
                start,
                gauges,
            }
        }

        async fn stop(self) -> Log {
            self.shutdown.cancel();
            self.task.await.unwrap();
            self.runs
        }
    }

    async fn sleep_s(s: f64) {
        tokio::time::sleep(Duration::from_secs_f64(s)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_of_a_queued_app_merge_into_one_run_keeping_the_strongest() {
        let h = Harness::new(1, Duration::from_secs(1));
        h.queue.enqueue("busy", Trigger::Poll);
        for trigger in [
            Trigger::Drift,
            Trigger::Manual,
            Trigger::Health,
            Trigger::Poll,
        ] {
            h.queue.enqueue("a", trigger);
        }
        sleep_s(10.0).await;
        let runs = h.stop().await;
        assert_eq!(runs.of("a"), [(Trigger::Manual, 1000)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_during_a_run_runs_once_more_after_it() {
        let h = Harness::new(4, Duration::from_secs(2));
        h.queue.enqueue("a", Trigger::Startup);
        sleep_s(0.5).await;
        for trigger in [Trigger::Health, Trigger::Webhook, Trigger::Drift] {
            h.queue.enqueue("a", trigger);
        }
        sleep_s(10.0).await;
        let runs = h.stop().await;
        assert_eq!(
            runs.of("a"),
            [(Trigger::Startup, 0), (Trigger::Webhook, 2000)],
            "never two at once, the strongest trigger kept"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_concurrency_run_at_once() {
        let h = Harness::new(2, Duration::from_secs(1));
        for key in ["a", "b", "c", "d", "e"] {
            h.queue.enqueue(key, Trigger::Startup);
        }
        sleep_s(10.0).await;
        let mut starts: Vec<u64> = h.stop().await.take().iter().map(|e| e.2).collect();
        starts.sort();
        assert_eq!(starts, [0, 0, 1000, 1000, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_app_retries_with_growing_capped_backoff_in_one_chain() {
        let h = Harness::new(4, Duration::ZERO);
        h.queue.enqueue("fail", Trigger::Manual);
        // More triggers while a retry is pending: each runs, but the chain stays one.
        for _ in 0..3 {
            sleep_s(1.0).await;
            h.queue.enqueue("fail", Trigger::Manual);
        }
        sleep_s(190.0).await;
        let errors = h.errors.clone();
        let runs = h.stop().await.of("fail");
        let times: Vec<u64> = runs.iter().map(|r| r.1 / 1000).collect();
        // 0, the extra triggers at 1, 2 and 3 s (each cancels the pending retry), then
        // one retry after the other: 5 × 2ⁿ, at most 40 s.
        assert_eq!(times, [0, 1, 2, 3, 43, 83, 123, 163]);
        let attempts: Vec<u32> = errors.lock().unwrap().iter().map(|e| e.2).collect();
        assert_eq!(attempts, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(runs.iter().all(|r| r.0 == Trigger::Manual));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_reconcile_is_reported_retried_and_does_not_stop_others() {
        let h = Harness::new(1, Duration::from_millis(100));
        h.queue.enqueue("panic", Trigger::Startup);
        h.queue.enqueue("good", Trigger::Startup);
        sleep_s(1.0).await;
        h.queue.enqueue("good", Trigger::Poll);
        sleep_s(10.0).await;
        let errors = h.errors.clone();
        let runs = h.stop().await;
        assert_eq!(
            runs.of("panic"),
            [(Trigger::Startup, 0), (Trigger::Startup, 5100)],
            "retried after the backoff"
        );
        assert_eq!(
            runs.of("good"),
            [(Trigger::Startup, 100), (Trigger::Poll, 1000)]
        );
        let errors = errors.lock().unwrap();
        assert_eq!(
            errors[0],
            ("panic", TestError::Panicked("boom in panic".into()), 1)
        );
        assert_eq!(errors[1].2, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn one_pending_timer_per_app_earliest_deadline_strongest_trigger() {
        let h = Harness::new(4, Duration::ZERO);
        h.queue
            .enqueue_after("a", Trigger::Health, Duration::from_secs(3));
        h.queue
            .enqueue_after("a", Trigger::Drift, Duration::from_secs(1));
        h.queue
            .enqueue_after("a", Trigger::Manual, Duration::from_secs(2));
        h.queue
            .enqueue_after("b", Trigger::Poll, Duration::from_secs(2));
        sleep_s(10.0).await;
        let runs = h.stop().await;
        assert_eq!(runs.of("a"), [(Trigger::Manual, 1000)]);
        assert_eq!(runs.of("b"), [(Trigger::Poll, 2000)]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_immediate_trigger_cancels_a_weaker_timer_but_not_a_stronger_one() {
        let h = Harness::new(4, Duration::ZERO);
        h.queue
            .enqueue_after("a", Trigger::Health, Duration::from_secs(5));
        h.queue
            .enqueue_after("b", Trigger::Manual, Duration::from_secs(5));
        sleep_s(1.0).await;
        h.queue.enqueue("a", Trigger::Drift);
        h.queue.enqueue("b", Trigger::Health);
        sleep_s(10.0).await;
        let runs = h.stop().await;
        assert_eq!(
            runs.of("a"),
            [(Trigger::Drift, 1000)],
            "the timer is covered"
        );
        assert_eq!(
            runs.of("b"),
            [(Trigger::Health, 1000), (Trigger::Manual, 5000)],
            "a health check does not swallow the pending sync"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_in_flight_runs_finish_and_starts_nothing_new() {
        let h = Harness::new(1, Duration::from_secs(3));
        h.queue.enqueue("a", Trigger::Startup);
        h.queue.enqueue("b", Trigger::Startup);
        h.queue
            .enqueue_after("c", Trigger::Poll, Duration::from_secs(2));
        sleep_s(1.0).await;
        let (shutdown, task, runs, queue) = (h.shutdown, h.task, h.runs, h.queue);
        shutdown.cancel();
        queue.enqueue("d", Trigger::Manual);
        let stopped = Instant::now();
        task.await.unwrap();
        assert_eq!(
            stopped.elapsed(),
            Duration::from_secs(2),
            "waited for the run in flight"
        );
        assert_eq!(runs.take(), [("a", Trigger::Startup, 0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_gauges_follow_waiting_running_and_scheduled_keys() {
        let h = Harness::new(1, Duration::from_secs(1));
        for key in ["a", "b", "c", "b"] {
            h.queue.enqueue(key, Trigger::Poll);
        }
        h.queue
            .enqueue_after("later", Trigger::Health, Duration::from_secs(5));
        sleep_s(0.5).await;
        assert_eq!(
            h.gauges.get(),
            (2, 1, 1),
            "b and c wait, a runs, later has a timer"
        );
        sleep_s(3.0).await;
        assert_eq!(h.gauges.get(), (0, 0, 1));
        sleep_s(2.0).await;
        assert_eq!(h.gauges.get(), (0, 1, 0), "the timer fired");
        h.queue.enqueue("fail", Trigger::Manual);
        sleep_s(2.0).await;
        assert_eq!(
            h.gauges.get(),
            (0, 0, 1),
            "the failed key's retry is scheduled"
        );
        h.queue.enqueue("a", Trigger::Manual);
        h.queue.enqueue("b", Trigger::Manual);
        sleep_s(0.5).await;
        assert_eq!(h.gauges.get(), (1, 1, 1));
        let gauges = h.gauges.clone();
        h.stop().await;
        assert_eq!(gauges.get(), (0, 0, 0), "nothing left after shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn the_runner_stops_when_the_queue_is_dropped_and_idle() {
        let h = Harness::new(1, Duration::from_secs(1));
        h.queue.enqueue("a", Trigger::Startup);
        drop(h.queue);
        h.task.await.unwrap();
        assert_eq!(h.start.elapsed(), Duration::from_secs(1));
        assert_eq!(h.runs.take(), [("a", Trigger::Startup, 0)]);
    }

    #[test]
    fn triggers_convert_to_and_from_the_history() {
        for t in [
            history::Trigger::Poll,
            history::Trigger::Webhook,
            history::Trigger::Drift,
            history::Trigger::Manual,
            history::Trigger::Rollback,
            history::Trigger::Startup,
        ] {
            assert_eq!(Trigger::from(t).recorded(), Some(t));
        }
        assert_eq!(Trigger::Health.recorded(), None);
        assert_eq!(Trigger::Drift.stronger(Trigger::Health), Trigger::Drift);
        assert_eq!(Trigger::Health.stronger(Trigger::Startup), Trigger::Startup);
        assert_eq!(
            Trigger::Manual.stronger(Trigger::Rollback),
            Trigger::Rollback
        );
    }
}
