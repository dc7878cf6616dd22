//! The reconciler, in the style of kube-runtime's controller: the work queue
//! ([`crate::queue`]) runs a reconcile of one app at a time, which returns an
//! [`Action`] saying when to come back; a failed reconcile goes to the error policy,
//! which reports it and picks the retry ([`SYNC_RETRY`]). Each reconcile is idempotent
//! and runs in its own span: resolve the revision → render (cached per revision) → plan
//! → apply when needed → observe health → record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_engine::EngineError;
use ferry_engine::progress::{Event, Progress};
use ferry_engine::wait::observe;
use ferry_engine::{Sync, SyncOptions, Wait};
use ferry_model::{
    AppKey, AppSpec, Backoff, ChangeSet, EventKind, HealthStatus, ObjectRef, redact_text,
    redact_url,
};
use ferry_source::Revision;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::deps::{Blocked, DEPENDENCY_RECHECK, Waiting, gate};
use crate::engine::{Engine, RepoKey, repo_key};
use crate::history::{self, Entry, Outcome};
use crate::live::LiveHealth;
use crate::queue::{Action, Panicked, Queue, Runner, Trigger};
use crate::record::Record;
use crate::state::{AppStatus, ObjectStatus, Readiness, Store, SyncState, aggregate};

/// The retry of a failed sync (transient or not): 5 s × 2ⁿ, plus up to 20 % jitter,
/// at most 3 min (jitter included).
pub const SYNC_RETRY: Backoff =
    Backoff::new(Duration::from_secs(5), 2, Duration::from_secs(180)).with_jitter(0.2);

/// Self-heal: the first heal of an app is immediate; a heal within [`HEAL_REPEAT`] of
/// the previous one waits 2 s × 2ⁿ (2 s, 4 s, … at most 300 s) after it, so that a fight
/// with another controller does not spin.
pub const SELF_HEAL: Backoff = Backoff::new(Duration::from_secs(2), 2, Duration::from_secs(300));

/// How close to the previous heal a heal counts as a repeat ([`SELF_HEAL`]).
pub const HEAL_REPEAT: Duration = Duration::from_secs(10);

/// The fallback interval of health checks while objects are progressing.
const HEALTH_RECHECK: Duration = Duration::from_secs(10);

/// Everything a reconcile needs, shared by all tasks, in handles: the engine side, the
/// app statuses, where outcomes are recorded, the work queue, leadership and shutdown.
pub struct Ctx {
    /// Cluster, Git, renderers and their caches.
    pub engine: Engine,
    /// App statuses (read by every part of the agent, the API and the dashboard).
    pub store: Store,
    /// History, metrics and Events.
    pub record: Record,
    /// The work queue.
    pub queue: Queue<AppKey>,
    /// True while this agent holds the lease (only the leader writes).
    pub leader: watch::Receiver<bool>,
    /// Cancelled when the agent stops.
    pub shutdown: CancellationToken,
    /// Longest a reconcile may take.
    pub sync_timeout: Duration,
    /// One Git polling loop per repository in use.
    pub pollers: tokio::sync::Mutex<crate::poller::Pollers>,
    /// App sets and the apps they generated.
    pub appsets: crate::appsets::AppSets,
    watches: tokio::sync::Mutex<crate::drift::Watches>,
    /// Drift seen during an app's own sync, looked at again when it ends.
    pub deferred: crate::drift::Deferred,
    /// The health of the watched objects, kept from the drift watches.
    pub live: LiveHealth,
    failures: Failures,
    heals: Mutex<HashMap<AppKey, Heal>>,
    /// Apps held by the dependency gate ([`crate::deps`]).
    pub waiting: Arc<Waiting>,
    /// The namespace of the apps of `ferry.yaml` (and of its app sets).
    pub apps_namespace: String,
    /// The projects apps name.
    pub projects: crate::projects::Projects,
}

/// What a [`Ctx`] is built from ([`context`]).
pub struct Parts {
    /// Cluster, Git, renderers.
    pub engine: Engine,
    /// App statuses.
    pub store: Store,
    /// History, metrics and Events.
    pub record: Record,
    /// Longest a reconcile may take.
    pub sync_timeout: Duration,
    /// The projects of the `ferry.yaml`.
    pub projects: crate::projects::Projects,
    /// The leadership flag.
    pub leader: watch::Receiver<bool>,
    /// Cancelled when the agent stops.
    pub shutdown: CancellationToken,
    /// The namespace of the apps of `ferry.yaml`.
    pub apps_namespace: String,
}

/// Builds the context and the runner of its work queue ([`run`]).
pub fn context(parts: Parts) -> (Arc<Ctx>, Runner<AppKey>) {
    let (queue, runner) = crate::queue::queue();
    let ctx = Ctx {
        engine: parts.engine,
        store: parts.store,
        record: parts.record,
        queue,
        leader: parts.leader,
        shutdown: parts.shutdown,
        sync_timeout: parts.sync_timeout,
        pollers: Default::default(),
        appsets: Default::default(),
        watches: Default::default(),
        deferred: Default::default(),
        live: Default::default(),
        failures: Default::default(),
        heals: Default::default(),
        waiting: Default::default(),
        apps_namespace: parts.apps_namespace,
        projects: parts.projects,
    };
    (Arc::new(ctx), runner)
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Ctx {
    /// Queues a reconcile of `app` now.
    pub fn enqueue(&self, app: &AppKey, trigger: Trigger) {
        self.queue.enqueue(app.clone(), trigger);
    }

    /// A health check of `app` done at once from the health the watches keep, outside the
    /// queue: it sends no API request and never waits behind other apps' syncs. False
    /// when it cannot be done so (a standby, an app gone, suspended or not observed yet,
    /// a kind not listed yet): queue [`Trigger::Health`] then.
    pub async fn check_health_now(&self, app: &AppKey) -> bool {
        if !*self.leader.borrow() {
            return false;
        }
        let Some(status) = self.store.get(app).await else {
            return false;
        };
        if status.suspended || status.objects.is_empty() {
            return false;
        }
        let Some(health) = self.live.health(&subjects(&status)) else {
            return false;
        };
        if let Action::Requeue { after, trigger } = record_health(self, app, &status, health).await
        {
            self.queue.enqueue_after(app.clone(), trigger, after);
        }
        true
    }

    /// Fetches a repository key now ([`Engine::fetch`]), timing it (or counting its
    /// failure) in the metrics.
    pub async fn fetch(&self, key: &RepoKey) -> Result<(Revision, bool), EngineError> {
        let start = Instant::now();
        let fetched = self.engine.fetch(key).await.inspect_err(|_| {
            self.record.metrics.git_fetch_failed(&key.0);
        })?;
        self.record
            .metrics
            .git_fetch(&key.0, start.elapsed().as_secs_f64());
        Ok(fetched)
    }

    /// Apps whose source is `key`.
    pub async fn apps_of(&self, key: &RepoKey) -> Vec<AppKey> {
        self.store
            .scan(|apps| {
                apps.filter(|a| repo_key(&a.spec) == *key)
                    .map(AppStatus::key)
                    .collect()
            })
            .await
    }

    /// Forgets the failed attempts of an app (removed from its set: the removal's own
    /// retries count from one).
    pub fn forget_failures(&self, app: &AppKey) {
        self.failures.clear(app);
    }
}

/// Consecutive failed reconciles per app: the one count the error policy, the first
/// failure's Event and history entry, and the health checks of a failing app go by.
#[derive(Default)]
struct Failures(Mutex<HashMap<AppKey, u32>>);

impl Failures {
    /// Counts one more failure; returns the count.
    fn add(&self, app: &AppKey) -> u32 {
        let mut map = self.0.lock().expect("failures");
        let n = map.entry(app.clone()).or_default();
        *n += 1;
        *n
    }

    fn clear(&self, app: &AppKey) {
        self.0.lock().expect("failures").remove(app);
    }

    fn failing(&self, app: &AppKey) -> bool {
        self.0.lock().expect("failures").contains_key(app)
    }
}

/// Works the queue off until shutdown: at most `concurrency` reconciles at once, one per
/// app; on shutdown no new work starts and in-flight reconciles finish (each is bounded
/// by the sync timeout).
pub async fn run(ctx: Arc<Ctx>, runner: Runner<AppKey>, concurrency: usize) {
    let shutdown = ctx.shutdown.clone();
    let policy_ctx = ctx.clone();
    runner
        .run(
            concurrency,
            shutdown,
            move |app, trigger| {
                let ctx = ctx.clone();
                let span = info_span!("reconcile", app = %app, trigger = ?trigger);
                async move { reconcile(&ctx, &app, trigger).await }.instrument(span)
            },
            move |app, trigger, error| {
                let ctx = policy_ctx.clone();
                let span = info_span!("reconcile", app = %app, trigger = ?trigger);
                async move { error_policy(&ctx, &app, trigger, error).await }.instrument(span)
            },
        )
        .await;
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sync failed (resolve, render, plan, apply, observe, or the timeout).
    #[error("{}", .0.error)]
    Sync(Box<SyncFailure>),
    /// Deleting the objects of an app removed from its set failed.
    #[error("deleting the objects of a removed app failed: {0}")]
    Prune(#[source] EngineError),
    /// The reconcile panicked.
    #[error("the reconcile panicked: {0}")]
    Panicked(String),
}

impl From<Panicked> for Error {
    fn from(p: Panicked) -> Self {
        Self::Panicked(p.0)
    }
}

/// A failed sync: the error, the revision when it was resolved, and the attempt's start
/// and trigger for its history entry.
#[derive(Debug)]
pub struct SyncFailure {
    /// What went wrong.
    pub error: EngineError,
    /// The revision being synced, once resolved.
    pub revision: Option<Revision>,
    attempt: Attempt,
    trigger: history::Trigger,
}

/// What one reconcile of an app does, decided from what is known before it starts.
#[derive(Debug)]
enum Step<'a> {
    /// Not the leader: nothing (a new leader queues every app).
    Standby,
    /// Not in the store: finish its removal from its app set, if it is one.
    Finalize,
    /// Suspended: say so and sync nothing.
    Suspended,
    /// Look at the objects' health only.
    CheckHealth(&'a AppStatus),
    /// Compare with Git and apply when needed.
    Sync(&'a AppStatus, history::Trigger),
}

fn decide(status: Option<&AppStatus>, trigger: Trigger, leader: bool) -> Step<'_> {
    if !leader {
        return Step::Standby;
    }
    let Some(status) = status else {
        return Step::Finalize;
    };
    if status.suspended {
        return Step::Suspended;
    }
    match trigger.recorded() {
        Some(trigger) => Step::Sync(status, trigger),
        None if !status.objects.is_empty() => Step::CheckHealth(status),
        // Nothing observed yet to check the health of: compare with Git.
        None => Step::Sync(status, history::Trigger::Drift),
    }
}

/// One reconcile of one app: status, history, metrics, and when to come back.
async fn reconcile(ctx: &Arc<Ctx>, name: &AppKey, trigger: Trigger) -> Result<Action, Error> {
    let status = ctx.store.get(name).await;
    let leader = *ctx.leader.borrow();
    match decide(status.as_ref(), trigger, leader) {
        Step::Standby => Ok(Action::AwaitChange),
        Step::Finalize => {
            // An app that left its app set: finish its removal (prune when asked).
            let action = crate::appsets::finalize(ctx, name).await?;
            ctx.failures.clear(name);
            Ok(action)
        }
        Step::Suspended => {
            ctx.store
                .update(name, |s| {
                    s.set_ready(
                        Readiness::Reconciling,
                        "Suspended",
                        "reconciliation is suspended",
                    )
                })
                .await;
            Ok(Action::AwaitChange)
        }
        Step::CheckHealth(status) => match check_health(ctx, name, status).await {
            Ok(action) => Ok(action),
            Err(e) => {
                warn!("health check failed, reconciling: {e}");
                ctx.enqueue(name, Trigger::Drift);
                Ok(Action::AwaitChange)
            }
        },
        Step::Sync(status, recorded) => match blocked(ctx, status).await {
            Some(blocked) => Ok(hold(ctx, name, status, &blocked, trigger).await),
            None => {
                ctx.waiting.release(name);
                sync(ctx, name, status, recorded).await
            }
        },
    }
}

/// The dependency gate over every app the agent knows ([`gate`]).
async fn blocked(ctx: &Ctx, status: &AppStatus) -> Option<Blocked> {
    if status.spec.depends_on.is_empty() {
        return None;
    }
    let latest = |spec: &ferry_model::AppSpec| {
        ctx.engine
            .known_revision(&repo_key(spec))
            .map(|rev| rev.sha)
    };
    ctx.store
        .scan(|apps| {
            let apps = apps.map(|s| (s.key(), s)).collect();
            gate(status, &apps, &latest)
        })
        .await
}

/// Holds an app at the dependency gate: shows why, and looks again when the dependency
/// becomes ready ([`crate::deps::wake`]) or after [`DEPENDENCY_RECHECK`].
async fn hold(
    ctx: &Ctx,
    name: &AppKey,
    status: &AppStatus,
    blocked: &Blocked,
    trigger: Trigger,
) -> Action {
    ctx.waiting.hold(name, blocked, trigger);
    let (readiness, reason, message) = blocked.condition();
    let shown = status
        .conditions
        .iter()
        .any(|c| c.kind == "Ready" && c.reason == reason && c.message == message);
    if !shown {
        info!(%reason, "not syncing: {message}");
        ctx.store
            .update(name, |s| s.set_ready(readiness, reason, &message))
            .await;
    }
    Action::requeue(DEPENDENCY_RECHECK, trigger)
}

/// The step a sync is at (the engine's last phase, or the controller's own step), so
/// that a sync cut by its deadline says where it was.
#[derive(Default)]
struct StepTracker(Mutex<String>);

impl StepTracker {
    fn set(&self, step: impl Into<String>) {
        *self.0.lock().expect("step") = step.into();
    }

    fn get(&self) -> String {
        self.0.lock().expect("step").clone()
    }
}

impl Progress for StepTracker {
    fn event(&self, event: Event) {
        match event {
            Event::Phase(phase) => self.set(phase),
            Event::Applied { subject, .. } => self.set(format!("applying after {subject}")),
            Event::Pruned(subject) => self.set(format!("pruning after {subject}")),
            Event::Health { .. } => self.set("observing health"),
        }
    }
}

/// A sync bounded by the sync timeout, timed in the metrics. Every step of it (fetch,
/// render, plan, apply, prune, health, Events, the history) runs inside that deadline;
/// a sync cut by it fails with a transient [`EngineError::Timeout`] naming the app and
/// the step it was at, and is retried with [`SYNC_RETRY`].
async fn sync(
    ctx: &Arc<Ctx>,
    name: &AppKey,
    status: &AppStatus,
    trigger: history::Trigger,
) -> Result<Action, Error> {
    let attempt = Attempt::now();
    let step = StepTracker::default();
    let _syncing = crate::drift::syncing(ctx, name);
    let outcome = tokio::time::timeout(
        ctx.sync_timeout,
        sync_once(ctx, name, status, trigger, attempt, &step),
    )
    .await;
    let seconds = attempt.start.elapsed().as_secs_f64();
    let result = outcome.unwrap_or_else(|_| {
        Err(Box::new(SyncFailure {
            error: EngineError::Timeout {
                what: format!("the sync of {name} (at step: {})", step.get()),
                seconds: ctx.sync_timeout.as_secs(),
            },
            revision: None,
            attempt,
            trigger,
        }))
    });
    match result {
        Ok(action) => {
            ctx.failures.clear(name);
            ctx.record
                .metrics
                .reconcile_finished(name, "success", seconds);
            Ok(action)
        }
        Err(failure) => {
            ctx.record
                .metrics
                .reconcile_finished(name, "failure", seconds);
            Err(Error::Sync(failure))
        }
    }
}

/// The error policy: counts the failure, reports it (status, log, the first failure's
/// Event; the history) and retries ([`retry`]); after losing the lease it only logs.
async fn error_policy(ctx: &Ctx, name: &AppKey, trigger: Trigger, error: Error) -> Action {
    if !*ctx.leader.borrow() {
        // Lost the lease meanwhile (the sync stopped before its next write): the new
        // leader syncs the app; nothing is recorded or published from here.
        warn!("not leading any more, the sync stopped: {error}");
        return Action::AwaitChange;
    }
    let attempts = ctx.failures.add(name);
    let action = retry(&error, trigger, attempts);
    let after = match action {
        Action::Requeue { after, .. } => after,
        Action::AwaitChange => Duration::ZERO,
    };
    match error {
        Error::Sync(failure) => report_sync_failure(ctx, name, *failure, attempts).await,
        Error::Prune(e) => {
            warn!(
                attempts,
                "deleting the objects of a removed app failed: {e}; retrying in {after:?}"
            );
        }
        Error::Panicked(message) => {
            let reason = "ReconcilePanicked";
            let message = format!("the reconcile panicked: {message}");
            warn!(attempts, "{message}; retrying in {after:?}");
            ctx.store
                .update(name, |s| {
                    s.set_ready(Readiness::Reconciling, reason, &message)
                })
                .await;
            if attempts == 1 {
                ctx.record
                    .applications
                    .event(name, true, reason, message)
                    .await;
            }
        }
    }
    action
}

/// When a failed reconcile runs again: a sync (whether its error is transient or not)
/// and a panicked reconcile after [`SYNC_RETRY`], with the same trigger; the pruning of
/// a removed app after [`crate::appsets::PRUNE_RETRY`].
fn retry(error: &Error, trigger: Trigger, attempts: u32) -> Action {
    match error {
        Error::Sync(failure) => Action::requeue(SYNC_RETRY.delay(attempts), failure.trigger.into()),
        Error::Prune(_) => {
            Action::requeue(crate::appsets::PRUNE_RETRY.delay(attempts), Trigger::Poll)
        }
        Error::Panicked(_) => Action::requeue(SYNC_RETRY.delay(attempts), trigger),
    }
}

/// A sync error that a retry may get past keeps the app Reconciling; any other stalls it.
fn readiness(error: &EngineError) -> Readiness {
    if error.is_transient() {
        Readiness::Reconciling
    } else {
        Readiness::Stalled
    }
}

async fn report_sync_failure(ctx: &Ctx, name: &AppKey, failure: SyncFailure, attempts: u32) {
    let SyncFailure {
        error,
        revision,
        attempt,
        trigger,
    } = failure;
    let reason = error.reason();
    // The one message for the log, status, Event and history: any URL in it redacted.
    let message = redact_text(&error.to_string()).into_owned();
    warn!(%reason, attempts, "sync failed: {message}");
    let readiness = readiness(&error);
    ctx.store
        .update(name, |s| {
            s.set_ready(readiness, &reason, &message);
            s.last_duration_ms = attempt.start.elapsed().as_millis() as u64;
        })
        .await;
    if attempts == 1 {
        ctx.record
            .applications
            .event(name, true, &reason, message.clone())
            .await;
        if let Some(status) = ctx.store.get(name).await {
            let sha = revision.as_ref().map(|r| r.sha.as_str());
            notify(
                ctx,
                name,
                &status.spec,
                EventKind::SyncFailed,
                sha,
                &message,
            )
            .await;
        }
    }
    if attempts == 1 || readiness != Readiness::Stalled {
        let entry = attempt.entry(
            name,
            trigger,
            revision.as_ref(),
            Some(message),
            error.changeset().cloned().unwrap_or_default(),
        );
        ctx.record.entry(entry).await;
    }
}

/// When a sync started, for its history entry.
#[derive(Clone, Copy, Debug)]
struct Attempt {
    started_at: i64,
    start: Instant,
}

impl Attempt {
    fn now() -> Self {
        Self {
            started_at: now_ms(),
            start: Instant::now(),
        }
    }

    /// The history entry of this attempt, ending now.
    fn entry(
        self,
        app: &AppKey,
        trigger: history::Trigger,
        revision: Option<&Revision>,
        error: Option<String>,
        changeset: ferry_model::ChangeSet,
    ) -> Entry {
        Entry {
            id: 0,
            app: app.to_string(),
            revision: revision.map(|r| r.sha.clone()).unwrap_or_default(),
            message: revision.map(|r| r.message.clone()).unwrap_or_default(),
            trigger,
            started_at: self.started_at,
            duration_ms: self.start.elapsed().as_millis() as u64,
            outcome: if error.is_some() {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            },
            error,
            summary: changeset.summary(),
            changeset,
        }
    }
}

/// Resolve, render, plan, apply when needed, observe health. Returns when to look again
/// and how (a health check, or a comparison with Git).
async fn sync_once(
    ctx: &Arc<Ctx>,
    name: &AppKey,
    status: &AppStatus,
    trigger: history::Trigger,
    attempt: Attempt,
    step: &StepTracker,
) -> Result<Action, Box<SyncFailure>> {
    let fail = |revision: Option<&Revision>| {
        let revision = revision.cloned();
        move |error: EngineError| {
            Box::new(SyncFailure {
                error,
                revision,
                attempt,
                trigger,
            })
        }
    };
    let spec = &status.spec;
    let start = attempt.start;
    let key = repo_key(spec);
    let project = (ctx.projects.of(&name.to_string(), spec).await).map_err(fail(None))?;
    let app_namespace = ctx.record.applications.namespace(name).await;
    ferry_engine::project::admit(&project, &name.to_string(), app_namespace.as_deref(), spec)
        .map_err(fail(None))?;
    step.set(format!("fetching {}", redact_url(&spec.source.repo)));
    let rev = match (status.pinned.as_deref(), ctx.engine.known_revision(&key)) {
        (Some(pin), _) => {
            let pin_key = (key.0.clone(), Some(pin.to_string()), key.2.clone());
            ctx.fetch(&pin_key).await.map_err(fail(None))?.0
        }
        (None, Some(rev)) => rev,
        (None, None) => ctx.fetch(&key).await.map_err(fail(None))?.0,
    };
    step.set(format!("rendering {}", rev.short_sha()));
    let rendered = ctx
        .engine
        .render(&name.name, spec, &rev.sha)
        .await
        .map_err(fail(Some(&rev)))?;
    let new_revision = rev.sha != status.revision;
    // A difference found without a new revision or an explicit sync is drift: healed
    // only with self-heal on and outside the heal backoff.
    let is_drift = !new_revision
        && !matches!(
            trigger,
            history::Trigger::Manual | history::Trigger::Rollback
        );
    // Hooks run on a manual sync (or rollback) and on the first sync of a revision,
    // never when healing drift (nor again after a restart at a recorded revision).
    let hooks = !is_drift && (!new_revision || !ctx.record.recorded(name, &rev.sha).await);
    let mut hold = None;
    let mut drift: Option<Vec<ObjectRef>> = None;
    let gate = |changeset: &ChangeSet| {
        if changeset.in_sync() && changeset.hooks.is_empty() {
            return false;
        }
        if is_drift {
            drift = Some(differing(changeset));
            hold = match spec.self_heal {
                false => Some(Hold::SelfHealOff),
                true => heal_backoff(ctx, name).map(Hold::Backoff),
            };
        }
        hold.is_none()
    };
    let fence = Fence::new(&ctx.leader);
    let opts = SyncOptions {
        wait: Wait::Observe,
        in_sync: Some(ctx.engine.in_sync.clone()),
        hooks,
        cancel: fence.token.clone(),
        ..Default::default()
    };
    step.set("planning");
    let result = Sync::new(&ctx.engine.cluster, name, spec)
        .in_project(&project, app_namespace.as_deref())
        .run_gated(&rendered, &opts, step, gate)
        .await;
    drop(fence);
    if !*ctx.leader.borrow() {
        // Lost the lease at the end: the outcome is neither recorded nor published.
        return Err(fail(Some(&rev))(EngineError::Cancelled));
    }
    step.set("recording the outcome");
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            // The drift was seen; healing it failed.
            if let Some(drifted) = &drift {
                drift_detected(ctx, name, status, drifted).await;
            }
            return Err(fail(Some(&rev))(error));
        }
    };
    let changeset = report.changeset.clone();
    let drifted = differing(&changeset);
    let mut wrote = false;
    let ran_hooks = report.applied && !changeset.hooks.is_empty();
    if changeset.in_sync()
        && !ran_hooks
        && new_revision
        && !ctx.record.recorded(name, &rev.sha).await
    {
        // The cluster already matches a revision the history does not show as applied:
        // a commit that changed no object, or an agent killed between apply and record.
        ctx.record
            .entry(attempt.entry(name, trigger, Some(&rev), None, changeset.clone()))
            .await;
    }
    if !changeset.in_sync() || ran_hooks {
        if is_drift {
            drift_detected(ctx, name, status, &drifted).await;
        }
        match hold {
            Some(Hold::SelfHealOff) => {
                ctx.store
                    .update(name, |s| {
                        s.sync = SyncState::OutOfSync;
                        s.drifted = drifted.clone();
                        s.changeset = Some(changeset.clone());
                        s.set_ready(
                            Readiness::Reconciling,
                            "OutOfSync",
                            &format!(
                                "{} object(s) differ from Git; self-heal is off",
                                drifted.len()
                            ),
                        );
                    })
                    .await;
                // Health was not observed: keep looking at it while it progresses.
                return Ok(look_again(status.health));
            }
            Some(Hold::Backoff(wait)) => return Ok(Action::requeue(wait, Trigger::Drift)),
            None => {}
        }
        wrote = true;
        let trigger = if is_drift {
            history::Trigger::Drift
        } else {
            trigger
        };
        ctx.record
            .entry(attempt.entry(name, trigger, Some(&rev), None, changeset.clone()))
            .await;
        info!(revision = %rev.short_sha(), summary = %changeset.summary(), "applied");
        ctx.record
            .applications
            .event(
                name,
                false,
                if is_drift { "DriftCorrected" } else { "Synced" },
                format!("applied {}: {}", rev.short_sha(), changeset.summary()),
            )
            .await;
    }
    let desired = report.objects;
    step.set("starting the drift watches");
    ctx.watches
        .lock()
        .await
        .ensure(ctx, &desired, &ctx.shutdown)
        .await;
    let health = report.health.map(|h| h.objects).unwrap_or_default();
    let (objects, overall) = summarize(health);
    ctx.record.metrics.app_info(
        name,
        SyncState::Synced.as_str(),
        &overall.to_string(),
        &rev.sha,
    );
    let elapsed = start.elapsed().as_millis() as u64;
    let (event, message) = match is_drift && wrote {
        true => (EventKind::DriftHealed, "restored from Git".to_string()),
        false => (
            EventKind::SyncSucceeded,
            format!("synced {}: {}", rev.short_sha(), changeset.summary()),
        ),
    };
    if wrote || new_revision || ctx.failures.failing(name) {
        notify(ctx, name, spec, event, Some(&rev.sha), &message).await;
    }
    health_degraded(ctx, name, spec, status.health, overall, &rev.sha, &objects).await;
    ctx.store
        .update(name, |s| {
            s.sync = SyncState::Synced;
            s.revision = rev.sha.clone();
            s.message = rev.message.clone();
            s.drifted.clear();
            s.inventory = desired.len();
            s.last_duration_ms = elapsed;
            if wrote {
                s.last_sync_at = Some(now_ms());
                s.changeset = Some(changeset);
            }
            set_health(s, objects, overall, true);
        })
        .await;
    // A look-again (health still progressing, or a heal held back) only re-compares: it
    // must not inherit a manual sync's or a rollback's licence to apply, or later live
    // edits would be applied with self-heal off.
    Ok(look_again(overall))
}

/// A sync's cancellation token, cancelled as soon as this agent stops leading (the
/// engine then stops before its next write), for as long as the fence lives.
struct Fence {
    token: CancellationToken,
    watch: tokio::task::JoinHandle<()>,
}

impl Fence {
    fn new(leader: &watch::Receiver<bool>) -> Self {
        let token = CancellationToken::new();
        let mut leader = leader.clone();
        let cancel = token.clone();
        let watch = tokio::spawn(async move {
            // A closed channel (leadership unknown) cancels too.
            let _ = leader.wait_for(|leading| !*leading).await;
            cancel.cancel();
        });
        Self { token, watch }
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// Why a plan that differs from Git is not applied now.
enum Hold {
    /// Drift with self-heal off: shown as OutOfSync.
    SelfHealOff,
    /// Drift within the heal backoff: looked at again after this long.
    Backoff(Duration),
}

/// The objects a changeset would change.
fn differing(changeset: &ChangeSet) -> Vec<ObjectRef> {
    changeset
        .changes
        .iter()
        .filter(|c| {
            !matches!(
                c.action,
                ferry_model::Action::Unchanged | ferry_model::Action::Orphan
            )
        })
        .map(|c| c.subject.clone())
        .collect()
}

/// Counts and reports drift of `drifted` from `status` (metric, log line, Event,
/// notification).
async fn drift_detected(ctx: &Ctx, name: &AppKey, status: &AppStatus, drifted: &[ObjectRef]) {
    ctx.record.metrics.drift_detected(name);
    info!(objects = drifted.len(), "drift detected");
    let list: Vec<String> = drifted.iter().map(ToString::to_string).collect();
    let message = format!("differs from Git: {}", list.join(", "));
    ctx.record
        .applications
        .event(name, true, "DriftDetected", message.clone())
        .await;
    let sha = Some(status.revision.as_str());
    notify(
        ctx,
        name,
        &status.spec,
        EventKind::DriftDetected,
        sha,
        &message,
    )
    .await;
}

/// Hands `event` of `name` to the notifier, for the `ferry.yaml`'s receivers and those
/// of the app's project; returns at once.
async fn notify(
    ctx: &Ctx,
    name: &AppKey,
    spec: &AppSpec,
    event: EventKind,
    revision: Option<&str>,
    message: &str,
) {
    let project = match ctx.projects.of(&name.to_string(), spec).await {
        Ok(project) => project.spec.notifications,
        Err(_) => Vec::new(),
    };
    ctx.record
        .notifier
        .notify(name, &spec.source.repo, &project, event, revision, message);
}

/// Notifies a turn of `name`'s health to Failed (from `before`).
async fn health_degraded(
    ctx: &Ctx,
    name: &AppKey,
    spec: &AppSpec,
    before: HealthStatus,
    now: HealthStatus,
    revision: &str,
    objects: &[ObjectStatus],
) {
    if now != HealthStatus::Failed || before == HealthStatus::Failed {
        return;
    }
    let failed: Vec<String> = objects
        .iter()
        .filter(|o| o.health.status == HealthStatus::Failed)
        .map(|o| o.subject.to_string())
        .collect();
    let message = format!("Failed: {}", failed.join(", "));
    notify(
        ctx,
        name,
        spec,
        EventKind::HealthDegraded,
        Some(revision),
        &message,
    )
    .await;
}

/// Looks at the app's objects again without planning (their status changed, or their
/// health was still progressing): updates health and, when synced, the conditions.
/// After a failed sync the conditions say why, and the retry, already queued, looks
/// at the health again. Bounded by the sync timeout, like a sync.
async fn check_health(ctx: &Ctx, name: &AppKey, status: &AppStatus) -> Result<Action, EngineError> {
    let subjects = subjects(status);
    // From the watches when they have listed every kind involved: no API request.
    let health = match ctx.live.health(&subjects) {
        Some(health) => health,
        None => {
            let cluster = ctx
                .projects
                .cluster_for(&ctx.engine.cluster, &name.to_string(), &status.spec)
                .await;
            tokio::time::timeout(ctx.sync_timeout, observe(&cluster, &subjects))
                .await
                .map_err(|_| EngineError::Timeout {
                    what: format!("the health check of {name}"),
                    seconds: ctx.sync_timeout.as_secs(),
                })??
        }
    };
    Ok(record_health(ctx, name, status, health).await)
}

/// The objects whose health an app shows.
fn subjects(status: &AppStatus) -> Vec<ObjectRef> {
    status.objects.iter().map(|o| o.subject.clone()).collect()
}

/// Records a health check's result (status, metrics); says when to look again.
async fn record_health(
    ctx: &Ctx,
    name: &AppKey,
    status: &AppStatus,
    health: Vec<(ObjectRef, ferry_model::Health)>,
) -> Action {
    let (objects, overall) = summarize(health);
    ctx.record.metrics.app_info(
        name,
        status.sync.as_str(),
        &overall.to_string(),
        &status.revision,
    );
    let failing = ctx.failures.failing(name);
    let (before, revision) = (status.health, &status.revision);
    health_degraded(ctx, name, &status.spec, before, overall, revision, &objects).await;
    ctx.store
        .update(name, |s| set_health(s, objects, overall, !failing))
        .await;
    if failing {
        Action::AwaitChange
    } else {
        look_again(overall)
    }
}

fn summarize(health: Vec<(ObjectRef, ferry_model::Health)>) -> (Vec<ObjectStatus>, HealthStatus) {
    let objects: Vec<ObjectStatus> = health
        .into_iter()
        .map(|(subject, health)| ObjectStatus { subject, health })
        .collect();
    let overall = aggregate(&objects);
    (objects, overall)
}

/// Records the objects' health; with `conditions`, a synced app's conditions follow it.
fn set_health(
    s: &mut AppStatus,
    objects: Vec<ObjectStatus>,
    overall: HealthStatus,
    conditions: bool,
) {
    s.health = overall;
    s.objects = objects;
    if !conditions || s.sync != SyncState::Synced {
        return;
    }
    let short = s.revision.get(..7).unwrap_or(&s.revision).to_string();
    match overall {
        HealthStatus::Current => s.set_ready(
            Readiness::Ready,
            "ReconciliationSucceeded",
            &format!("applied revision {short}"),
        ),
        HealthStatus::Failed => s.set_ready(
            Readiness::Stalled,
            "HealthCheckFailed",
            "an object is Failed",
        ),
        _ => s.set_ready(
            Readiness::Reconciling,
            "Progressing",
            "waiting for objects to become healthy",
        ),
    }
}

/// While health is still progressing, look again after a while (status changes of the
/// watched objects usually come first).
fn look_again(overall: HealthStatus) -> Action {
    match overall {
        HealthStatus::Current | HealthStatus::Failed => Action::AwaitChange,
        _ => Action::requeue(HEALTH_RECHECK, Trigger::Health),
    }
}

/// An app's last heal and how many came in a row ([`SELF_HEAL`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Heal {
    repeats: u32,
    last: Instant,
}

/// Whether an app may heal now: `None` (the heal is counted) or how long to hold back.
fn heal_backoff(ctx: &Ctx, name: &AppKey) -> Option<Duration> {
    let mut heals = ctx.heals.lock().expect("heals");
    match heal_now(heals.get(name).copied(), Instant::now()) {
        Ok(heal) => {
            heals.insert(name.clone(), heal);
            None
        }
        Err(wait) => Some(wait),
    }
}

/// The self-heal rule: after `previous`, a heal at `now` may run (`Ok`, the heal to
/// count) or must wait (`Err`, how much longer).
fn heal_now(previous: Option<Heal>, now: Instant) -> Result<Heal, Duration> {
    let (repeats, since) = match previous {
        Some(h) if now.duration_since(h.last) <= HEAL_REPEAT => {
            (h.repeats, now.duration_since(h.last))
        }
        _ => (0, Duration::MAX),
    };
    let wait = SELF_HEAL.delay(repeats);
    if since < wait {
        return Err(wait - since);
    }
    Ok(Heal {
        repeats: repeats + 1,
        last: now,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_model::AppSpec;
    use ferry_model::Health;

    use super::*;

    fn key(name: &str) -> AppKey {
        AppKey::new("ferry-system", name)
    }

    fn status(suspended: bool, observed: bool) -> AppStatus {
        let mut s = AppStatus::new(&key("a"), AppSpec::default());
        s.suspended = suspended;
        if observed {
            s.objects.push(ObjectStatus {
                subject: ObjectRef::new("v1", "ConfigMap", Some("ns"), "cfg"),
                health: Health {
                    status: HealthStatus::Current,
                    message: String::new(),
                },
            });
        }
        s
    }

    #[test]
    fn decide_gates_on_leadership_presence_and_suspension() {
        let s = status(false, true);
        assert!(matches!(
            decide(Some(&s), Trigger::Manual, false),
            Step::Standby
        ));
        assert!(matches!(
            decide(None, Trigger::Manual, false),
            Step::Standby
        ));
        assert!(matches!(decide(None, Trigger::Poll, true), Step::Finalize));
        let suspended = status(true, true);
        for t in [Trigger::Manual, Trigger::Health, Trigger::Drift] {
            assert!(matches!(decide(Some(&suspended), t, true), Step::Suspended));
        }
        assert!(matches!(
            decide(Some(&s), Trigger::Rollback, true),
            Step::Sync(_, history::Trigger::Rollback)
        ));
    }

    #[test]
    fn a_health_trigger_checks_health_or_compares_when_nothing_was_observed() {
        let observed = status(false, true);
        assert!(matches!(
            decide(Some(&observed), Trigger::Health, true),
            Step::CheckHealth(_)
        ));
        let fresh = status(false, false);
        assert!(matches!(
            decide(Some(&fresh), Trigger::Health, true),
            Step::Sync(_, history::Trigger::Drift)
        ));
    }

    fn sync_error(error: EngineError, trigger: history::Trigger) -> Error {
        Error::Sync(Box::new(SyncFailure {
            error,
            revision: None,
            attempt: Attempt::now(),
            trigger,
        }))
    }

    #[test]
    fn the_error_policy_retries_every_failure_with_backoff() {
        let transient = || EngineError::Timeout {
            what: "the sync".into(),
            seconds: 1,
        };
        let terminal = || EngineError::Internal("broken".into());
        assert_eq!(readiness(&transient()), Readiness::Reconciling);
        assert_eq!(readiness(&terminal()), Readiness::Stalled);
        for (attempts, low, high) in [(1, 5.0, 6.0), (3, 20.0, 24.0), (7, 180.0, 180.0)] {
            for error in [transient(), terminal()] {
                let error = sync_error(error, history::Trigger::Manual);
                let Action::Requeue { after, trigger } = retry(&error, Trigger::Health, attempts)
                else {
                    panic!("not retried");
                };
                assert_eq!(trigger, Trigger::Manual, "the sync's own trigger");
                let s = after.as_secs_f64();
                assert!((low..=high).contains(&s), "{attempts}: {s}");
            }
        }
        let panicked = Error::from(Panicked("boom".into()));
        assert_eq!(panicked.to_string(), "the reconcile panicked: boom");
        assert!(matches!(
            retry(&panicked, Trigger::Webhook, 1),
            Action::Requeue {
                trigger: Trigger::Webhook,
                ..
            }
        ));
    }

    #[test]
    fn heals_in_a_row_back_off_and_a_pause_resets_them() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let first = heal_now(None, t0).unwrap();
        assert_eq!(first.repeats, 1, "the first heal is immediate");
        assert_eq!(heal_now(Some(first), t0 + s(1)), Err(s(1)), "2 s after");
        let second = heal_now(Some(first), t0 + s(2)).unwrap();
        assert_eq!(heal_now(Some(second), t0 + s(3)), Err(s(3)), "then 4 s");
        let third = heal_now(Some(second), t0 + s(6)).unwrap();
        assert_eq!(third.repeats, 3);
        assert_eq!(heal_now(Some(third), t0 + s(7)), Err(s(7)), "then 8 s");
        let later = heal_now(Some(third), t0 + s(17)).unwrap();
        assert_eq!(later.repeats, 1, "more than 10 s later: immediate again");
        let many = Heal {
            repeats: 12,
            last: t0,
        };
        assert_eq!(
            heal_now(Some(many), t0 + s(5)),
            Err(s(295)),
            "at most 300 s"
        );
    }

    /// A sync's token is cancelled when the leadership flag turns false, not before, and
    /// a fence dropped (the sync over) cancels nothing later.
    #[tokio::test(start_paused = true)]
    async fn losing_the_lease_cancels_the_sync_in_flight() {
        let (leader_tx, leader) = watch::channel(true);
        let fence = Fence::new(&leader);
        let done = Fence::new(&leader);
        let finished = done.token.clone();
        drop(done);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!fence.token.is_cancelled(), "leading: not cancelled");
        leader_tx.send(false).unwrap();
        tokio::time::timeout(Duration::from_secs(1), fence.token.cancelled())
            .await
            .expect("cancelled when the lease is lost");
        assert!(
            !finished.is_cancelled(),
            "a finished sync's token is left alone"
        );
        leader_tx.send(true).unwrap();
        drop(leader_tx);
        let orphan = Fence::new(&leader);
        tokio::time::timeout(Duration::from_secs(1), orphan.token.cancelled())
            .await
            .expect("cancelled when leadership is unknown");
    }

    /// The queue driven by the controller's decision over a real store, with a fake sync:
    /// a standby or suspended app is not synced; leadership and resume sync it.
    #[tokio::test(start_paused = true)]
    async fn leadership_and_suspension_gate_the_queue() {
        let store = Store::default();
        store.upsert(&key("a"), AppSpec::default()).await;
        store
            .upsert(
                &key("b"),
                AppSpec {
                    suspend: true,
                    ..AppSpec::default()
                },
            )
            .await;
        let (leader_tx, leader) = watch::channel(false);
        let synced: Arc<Mutex<Vec<AppKey>>> = Default::default();
        let (queue, runner) = crate::queue::queue::<AppKey>();
        let shutdown = CancellationToken::new();
        let reconcile = {
            let (store, synced) = (store.clone(), synced.clone());
            move |app: AppKey, trigger: Trigger| {
                let (store, synced, leader) = (store.clone(), synced.clone(), leader.clone());
                async move {
                    let status = store.get(&app).await;
                    if let Step::Sync(..) = decide(status.as_ref(), trigger, *leader.borrow()) {
                        synced.lock().unwrap().push(app);
                    }
                    Ok::<_, Error>(Action::AwaitChange)
                }
            }
        };
        let task = tokio::spawn(runner.run(1, shutdown.clone(), reconcile, |_, _, _| async {
            Action::AwaitChange
        }));
        let settle = || tokio::time::sleep(Duration::from_secs(1));
        queue.enqueue(key("a"), Trigger::Startup);
        queue.enqueue(key("b"), Trigger::Startup);
        settle().await;
        assert!(synced.lock().unwrap().is_empty(), "standing by");

        leader_tx.send(true).unwrap();
        queue.enqueue(key("a"), Trigger::Startup);
        queue.enqueue(key("b"), Trigger::Manual);
        settle().await;
        assert_eq!(*synced.lock().unwrap(), [key("a")], "b is suspended");

        store.update(&key("b"), |s| s.suspended = false).await;
        queue.enqueue(key("b"), Trigger::Manual);
        settle().await;
        assert_eq!(*synced.lock().unwrap(), [key("a"), key("b")], "resumed");
        shutdown.cancel();
        task.await.unwrap();
    }
}
