//! The reconciler: a work queue of apps, bounded concurrency, one reconcile per app at a
//! time, requeue with backoff. Each reconcile is idempotent and runs in its own span:
//! resolve the revision → render (cached per revision) → plan → apply when needed →
//! observe health → record.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_engine::EngineError;
use ferry_engine::progress::Silent;
use ferry_engine::source::{Checkouts, ClusterFacts, Rendered};
use ferry_engine::sync::InSync;
use ferry_engine::wait::observe;
use ferry_engine::{Sync, SyncOptions, Wait};
use ferry_kube::Cluster;
use ferry_model::{Action, AppSpec, ChangeSet, HealthStatus, ObjectRef};
use ferry_render::Tools;
use ferry_source::{GitCache, Revision};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::history::{Entry, History, Outcome, Trigger};
use crate::metrics::Metrics;
use crate::state::{AppStatus, ObjectStatus, Store, SyncState, aggregate};

/// A repository and ref, the unit Git is polled and fetched by.
pub type RepoKey = (String, Option<String>);

/// Everything a reconcile needs, shared by all tasks.
pub struct Ctx {
    /// The target cluster.
    pub cluster: Cluster,
    /// Facts for renderers.
    pub facts: ClusterFacts,
    /// Git mirrors.
    pub git: GitCache,
    /// Working copies shared by all renders of one commit.
    pub checkouts: Checkouts,
    /// Objects found in sync, whose dry-runs the next plan skips.
    in_sync: InSync,
    /// Renderer binaries.
    pub tools: Tools,
    /// App statuses.
    pub store: Store,
    /// Sync history.
    pub history: History,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Longest a reconcile may take.
    pub sync_timeout: Duration,
    /// True while this agent holds the lease (only the leader writes).
    pub leader: watch::Receiver<bool>,
    /// Cancelled when the agent stops.
    pub shutdown: CancellationToken,
    /// Application resources and their Events.
    pub applications: crate::applications::Applications,
    /// One Git polling loop per repository in use.
    pub pollers: tokio::sync::Mutex<crate::poller::Pollers>,
    /// App sets and the apps they generated.
    pub appsets: crate::appsets::AppSets,
    queue: mpsc::UnboundedSender<(String, Trigger)>,
    watches: tokio::sync::Mutex<crate::drift::Watches>,
    revisions: Mutex<HashMap<RepoKey, Revision>>,
    renders: Mutex<HashMap<String, Arc<Rendered>>>,
    failures: Mutex<HashMap<String, u32>>,
    heals: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Builds the context and the receiving end of its work queue.
#[allow(clippy::too_many_arguments)]
pub fn context(
    cluster: Cluster,
    facts: ClusterFacts,
    git: GitCache,
    tools: Tools,
    store: Store,
    history: History,
    metrics: Arc<Metrics>,
    sync_timeout: Duration,
    leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
    identity: &str,
) -> (Arc<Ctx>, mpsc::UnboundedReceiver<(String, Trigger)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let applications = crate::applications::Applications::new(&cluster, identity);
    let ctx = Ctx {
        applications,
        pollers: Default::default(),
        appsets: Default::default(),
        cluster,
        facts,
        checkouts: Checkouts::new(git.clone(), 8),
        in_sync: InSync::default(),
        git,
        tools,
        store,
        history,
        metrics,
        sync_timeout,
        leader,
        shutdown,
        queue: tx,
        watches: Default::default(),
        revisions: Default::default(),
        renders: Default::default(),
        failures: Default::default(),
        heals: Default::default(),
    };
    (Arc::new(ctx), rx)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A pseudo-random fraction in [0, 1) for jitter, without a RNG dependency.
pub fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    f64::from(nanos % 1000) / 1000.0
}

/// The repository key of an app.
pub fn repo_key(spec: &AppSpec) -> RepoKey {
    (spec.source.repo.clone(), spec.source.git_ref.clone())
}

impl Ctx {
    /// Queues a reconcile of `app`.
    pub fn enqueue(&self, app: &str, trigger: Trigger) {
        let _ = self.queue.send((app.to_string(), trigger));
    }

    /// Queues a reconcile after `delay`.
    pub fn enqueue_after(self: &Arc<Self>, app: &str, trigger: Trigger, delay: Duration) {
        let ctx = self.clone();
        let app = app.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            ctx.enqueue(&app, trigger);
        });
    }

    /// The last fetched revision of a repository key.
    pub fn known_revision(&self, key: &RepoKey) -> Option<Revision> {
        self.revisions.lock().expect("revisions").get(key).cloned()
    }

    /// Fetches a repository key now; returns the revision and whether it changed.
    pub async fn fetch(&self, key: &RepoKey) -> Result<(Revision, bool), EngineError> {
        let git = self.git.clone();
        let (repo, git_ref) = key.clone();
        let start = Instant::now();
        let rev = tokio::task::spawn_blocking(move || git.resolve(&repo, git_ref.as_deref()))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        self.metrics
            .git_fetch(&key.0, start.elapsed().as_secs_f64());
        let mut revisions = self.revisions.lock().expect("revisions");
        let changed = revisions.get(key).is_none_or(|r| r.sha != rev.sha);
        revisions.insert(key.clone(), rev.clone());
        Ok((rev, changed))
    }

    /// Cheap remote check for a repository key (no object transfer).
    pub async fn remote_sha(&self, key: &RepoKey) -> Result<String, EngineError> {
        let git = self.git.clone();
        let (repo, git_ref) = key.clone();
        Ok(
            tokio::task::spawn_blocking(move || git.remote_sha(&repo, git_ref.as_deref()))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))??,
        )
    }

    /// Apps whose source is `key`.
    pub async fn apps_of(&self, key: &RepoKey) -> Vec<String> {
        self.store
            .scan(|apps| {
                apps.filter(|a| repo_key(&a.spec) == *key)
                    .map(|a| a.name.clone())
                    .collect()
            })
            .await
    }

    /// The app's manifests at commit `sha`, cached per (commit, app, source).
    pub async fn render(
        &self,
        name: &str,
        spec: &AppSpec,
        sha: &str,
    ) -> Result<Arc<Rendered>, EngineError> {
        let key = format!(
            "{sha}\n{name}\n{}",
            serde_json::to_string(&(&spec.source, &spec.destination.namespace)).unwrap_or_default()
        );
        if let Some(r) = self.renders.lock().expect("renders").get(&key) {
            return Ok(r.clone());
        }
        let rendered = Arc::new(
            self.checkouts
                .render(&self.tools, name, spec, sha, &self.facts)
                .await?,
        );
        let mut renders = self.renders.lock().expect("renders");
        if renders.len() > 4096 {
            renders.clear();
        }
        renders.insert(key, rendered.clone());
        Ok(rendered)
    }
}

/// Runs the work queue until `shutdown`: at most `concurrency` reconciles at once and
/// one per app; a trigger for an app in flight runs again after it. On shutdown no new
/// work starts and in-flight reconciles finish (each is bounded by the sync timeout).
pub async fn run_queue(
    ctx: Arc<Ctx>,
    mut rx: mpsc::UnboundedReceiver<(String, Trigger)>,
    concurrency: usize,
    shutdown: CancellationToken,
) {
    let mut inflight: HashSet<String> = HashSet::new();
    let mut again: HashMap<String, Trigger> = HashMap::new();
    let mut backlog: VecDeque<(String, Trigger)> = VecDeque::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    let start = |tasks: &mut JoinSet<String>, app: String, trigger: Trigger| {
        let ctx = ctx.clone();
        tasks.spawn(async move {
            reconcile(&ctx, &app, trigger).await;
            app
        });
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some((app, trigger)) = rx.recv() => {
                if inflight.contains(&app) || backlog.iter().any(|(a, _)| *a == app) {
                    again.entry(app).and_modify(|t| *t = stronger(*t, trigger)).or_insert(trigger);
                } else if inflight.len() < concurrency {
                    inflight.insert(app.clone());
                    start(&mut tasks, app, trigger);
                } else {
                    backlog.push_back((app, trigger));
                }
            }
            Some(done) = tasks.join_next() => {
                let app = match done {
                    Ok(app) => app,
                    Err(e) => { warn!("reconcile task failed: {e}"); continue; }
                };
                inflight.remove(&app);
                if let Some(trigger) = again.remove(&app) {
                    backlog.push_back((app, trigger));
                }
                while inflight.len() < concurrency {
                    let Some((app, trigger)) = backlog.pop_front() else { break };
                    let trigger = again.remove(&app).map_or(trigger, |t| stronger(t, trigger));
                    inflight.insert(app.clone());
                    start(&mut tasks, app, trigger);
                }
            }
        }
    }
    info!(
        in_flight = inflight.len(),
        "shutting down: letting in-flight syncs finish"
    );
    while tasks.join_next().await.is_some() {}
}

/// When two triggers merge, keep the one that says most about why.
fn stronger(a: Trigger, b: Trigger) -> Trigger {
    let rank = |t: Trigger| match t {
        Trigger::Rollback => 5,
        Trigger::Manual => 4,
        Trigger::Webhook => 3,
        Trigger::Poll => 2,
        Trigger::Drift => 1,
        Trigger::Startup => 0,
        Trigger::Health => -1,
    };
    if rank(a) >= rank(b) { a } else { b }
}

/// One reconcile of one app, with timeout, status, history, metrics and requeue.
async fn reconcile(ctx: &Arc<Ctx>, name: &str, trigger: Trigger) {
    let span = info_span!("reconcile", app = %name, trigger = ?trigger);
    async {
        if !*ctx.leader.borrow() {
            return;
        }
        let Some(status) = ctx.store.get(name).await else {
            // An app that left its app set: finish its removal (prune when asked).
            crate::appsets::finalize(ctx, name).await;
            return;
        };
        if status.suspended {
            ctx.store
                .update(name, |s| {
                    s.set_ready(false, "Suspended", "reconciliation is suspended", false)
                })
                .await;
            return;
        }
        if trigger == Trigger::Health && !status.objects.is_empty() {
            match check_health(ctx, name, &status).await {
                Ok(Some((delay, again))) => ctx.enqueue_after(name, again, delay),
                Ok(None) => {}
                Err(e) => {
                    warn!("health check failed, reconciling: {e}");
                    ctx.enqueue(name, Trigger::Drift);
                }
            }
            return;
        }
        // Nothing observed yet to check the health of: compare with Git.
        let trigger = match trigger {
            Trigger::Health => Trigger::Drift,
            other => other,
        };
        let attempt = Attempt::now();
        let start = attempt.start;
        let outcome = tokio::time::timeout(
            ctx.sync_timeout,
            sync_once(
                ctx,
                name,
                &status.spec,
                status.pinned.as_deref(),
                &status.revision,
                trigger,
            ),
        )
        .await;
        let seconds = start.elapsed().as_secs_f64();
        let result = match outcome {
            Ok(r) => r,
            Err(_) => Err(SyncFailure {
                error: EngineError::Timeout {
                    what: "the sync".into(),
                    seconds: ctx.sync_timeout.as_secs(),
                },
                revision: None,
            }),
        };
        match result {
            Ok(requeue) => {
                ctx.failures.lock().expect("failures").remove(name);
                ctx.metrics.reconcile_finished(name, "success", seconds);
                // A look-again (health still progressing, or a heal held back) only
                // re-compares: it must not inherit a manual sync's or a rollback's licence
                // to apply, or later live edits would be applied with self-heal off.
                if let Some((delay, again)) = requeue {
                    ctx.enqueue_after(name, again, delay);
                }
            }
            Err(SyncFailure { error, revision }) => {
                ctx.metrics.reconcile_finished(name, "failure", seconds);
                let attempts = {
                    let mut f = ctx.failures.lock().expect("failures");
                    let n = f.entry(name.to_string()).or_default();
                    *n += 1;
                    *n
                };
                let reason = format!("{}Failed", error.stage());
                let message = error.to_string();
                warn!(%reason, attempts, "sync failed: {message}");
                let stalled = !error.is_transient();
                ctx.store
                    .update(name, |s| {
                        s.set_ready(false, &reason, &message, stalled);
                        s.last_duration_ms = start.elapsed().as_millis() as u64;
                    })
                    .await;
                if attempts == 1 {
                    ctx.applications
                        .event(name, true, &reason, message.clone())
                        .await;
                }
                if attempts == 1 || !stalled {
                    let entry = attempt.entry(
                        name,
                        trigger,
                        revision.as_ref(),
                        Some(message),
                        Default::default(),
                    );
                    record(ctx, entry).await;
                }
                // Retry with exponential backoff (5 s × 2ⁿ, at most 3 min) and jitter.
                let base = 5.0 * 2f64.powi(attempts.min(6) as i32 - 1);
                let delay = Duration::from_secs_f64(base.min(180.0) * (1.0 + 0.2 * jitter()));
                ctx.enqueue_after(name, trigger, delay);
            }
        }
    }
    .instrument(span)
    .await
}

struct SyncFailure {
    error: EngineError,
    revision: Option<Revision>,
}

/// Whether the app's newest successful history entry is at `sha`.
async fn recorded(ctx: &Ctx, app: &str, sha: &str) -> bool {
    let history = ctx.history.clone();
    let app = app.to_string();
    match tokio::task::spawn_blocking(move || history.last_success(&app)).await {
        Ok(Ok(Some(entry))) => entry.revision == sha,
        Ok(Ok(None)) => false,
        Ok(Err(e)) => {
            warn!("cannot read history: {e}");
            true
        }
        Err(_) => true,
    }
}

/// When a sync started, for its history entry.
#[derive(Clone, Copy)]
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
        app: &str,
        trigger: Trigger,
        revision: Option<&Revision>,
        error: Option<String>,
        changeset: ferry_model::ChangeSet,
    ) -> Entry {
        Entry {
            id: 0,
            app: app.into(),
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

/// Appends a history entry; the store's fsync runs on a blocking thread.
async fn record(ctx: &Ctx, entry: Entry) {
    let history = ctx.history.clone();
    match tokio::task::spawn_blocking(move || history.record(entry)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!("cannot record history: {e}"),
        Err(e) => warn!("cannot record history: {e}"),
    }
}

/// Resolve, render, plan, apply when needed, observe health. Returns when to look again
/// and how (a health check, or a comparison with Git).
async fn sync_once(
    ctx: &Arc<Ctx>,
    name: &str,
    spec: &AppSpec,
    pinned: Option<&str>,
    last_revision: &str,
    trigger: Trigger,
) -> Result<Option<(Duration, Trigger)>, SyncFailure> {
    let fail = |revision: Option<&Revision>| {
        let revision = revision.cloned();
        move |error: EngineError| SyncFailure { error, revision }
    };
    let attempt = Attempt::now();
    let start = attempt.start;
    let key = repo_key(spec);
    let rev = match (pinned, ctx.known_revision(&key)) {
        (Some(pin), _) => {
            let pin_key = (spec.source.repo.clone(), Some(pin.to_string()));
            ctx.fetch(&pin_key).await.map_err(fail(None))?.0
        }
        (None, Some(rev)) => rev,
        (None, None) => ctx.fetch(&key).await.map_err(fail(None))?.0,
    };
    let rendered = ctx
        .render(name, spec, &rev.sha)
        .await
        .map_err(fail(Some(&rev)))?;
    let new_revision = rev.sha != last_revision;
    // A difference found without a new revision or an explicit sync is drift: healed
    // only with self-heal on and outside the heal backoff.
    let is_drift = !new_revision && !matches!(trigger, Trigger::Manual | Trigger::Rollback);
    let mut hold = None;
    let mut drift: Option<Vec<ObjectRef>> = None;
    let gate = |changeset: &ChangeSet| {
        if changeset.in_sync() {
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
    let opts = SyncOptions {
        wait: Wait::Observe,
        in_sync: Some(ctx.in_sync.clone()),
        ..Default::default()
    };
    let result = Sync::new(&ctx.cluster, name, spec)
        .run_gated(&rendered, &opts, &Silent, gate)
        .await;
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            // The drift was seen; healing it failed.
            if let Some(drifted) = &drift {
                drift_detected(ctx, name, drifted).await;
            }
            return Err(fail(Some(&rev))(error));
        }
    };
    let changeset = report.changeset.clone();
    let drifted = differing(&changeset);
    let mut wrote = false;
    if changeset.in_sync() && new_revision && !recorded(ctx, name, &rev.sha).await {
        // The cluster already matches a revision the history does not show as applied:
        // a commit that changed no object, or an agent killed between apply and record.
        record(
            ctx,
            attempt.entry(name, trigger, Some(&rev), None, changeset.clone()),
        )
        .await;
    }
    if !changeset.in_sync() {
        if is_drift {
            drift_detected(ctx, name, &drifted).await;
        }
        match hold {
            Some(Hold::SelfHealOff) => {
                ctx.store
                    .update(name, |s| {
                        s.sync = SyncState::OutOfSync;
                        s.drifted = drifted.clone();
                        s.changeset = Some(changeset.clone());
                        s.set_ready(
                            false,
                            "OutOfSync",
                            &format!(
                                "{} object(s) differ from Git; self-heal is off",
                                drifted.len()
                            ),
                            false,
                        );
                    })
                    .await;
                return Ok(None);
            }
            Some(Hold::Backoff(wait)) => return Ok(Some((wait, Trigger::Drift))),
            None => {}
        }
        wrote = true;
        let trigger = if is_drift { Trigger::Drift } else { trigger };
        record(
            ctx,
            attempt.entry(name, trigger, Some(&rev), None, changeset.clone()),
        )
        .await;
        info!(revision = %rev.short_sha(), summary = %changeset.summary(), "applied");
        ctx.applications
            .event(
                name,
                false,
                if is_drift { "DriftCorrected" } else { "Synced" },
                format!("applied {}: {}", rev.short_sha(), changeset.summary()),
            )
            .await;
    }
    let desired = report.objects;
    ctx.watches
        .lock()
        .await
        .ensure(ctx, &desired, &ctx.shutdown)
        .await;
    let health = report.health.map(|h| h.objects).unwrap_or_default();
    let (objects, overall) = summarize(health);
    ctx.metrics
        .app_info(name, "Synced", &overall.to_string(), &rev.sha);
    let elapsed = start.elapsed().as_millis() as u64;
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
    Ok(look_again(overall))
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
        .filter(|c| !matches!(c.action, Action::Unchanged | Action::Orphan))
        .map(|c| c.subject.clone())
        .collect()
}

/// Counts and reports drift of `drifted` (metric, log line, Event).
async fn drift_detected(ctx: &Ctx, name: &str, drifted: &[ObjectRef]) {
    ctx.metrics.drift_detected(name);
    info!(objects = drifted.len(), "drift detected");
    let list: Vec<String> = drifted.iter().map(ToString::to_string).collect();
    ctx.applications
        .event(
            name,
            true,
            "DriftDetected",
            format!("differs from Git: {}", list.join(", ")),
        )
        .await;
}

/// Looks at the app's objects again without planning (their status changed, or their
/// health was still progressing): updates health and, when synced, the conditions.
async fn check_health(
    ctx: &Ctx,
    name: &str,
    status: &AppStatus,
) -> Result<Option<(Duration, Trigger)>, EngineError> {
    let subjects: Vec<ObjectRef> = status.objects.iter().map(|o| o.subject.clone()).collect();
    let (objects, overall) = summarize(observe(&ctx.cluster, &subjects).await?);
    let sync = format!("{:?}", status.sync);
    ctx.metrics
        .app_info(name, &sync, &overall.to_string(), &status.revision);
    // After a failed sync the conditions say why; the health of what runs still shows.
    let failing = ctx.failures.lock().expect("failures").contains_key(name);
    ctx.store
        .update(name, |s| set_health(s, objects, overall, !failing))
        .await;
    Ok(look_again(overall))
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
            true,
            "ReconciliationSucceeded",
            &format!("applied revision {short}"),
            false,
        ),
        HealthStatus::Failed => {
            s.set_ready(false, "HealthCheckFailed", "an object is Failed", true)
        }
        _ => s.set_ready(
            false,
            "Progressing",
            "waiting for objects to become healthy",
            false,
        ),
    }
}

/// While health is still progressing, look again after a while (status changes of the
/// watched objects usually come first).
fn look_again(overall: HealthStatus) -> Option<(Duration, Trigger)> {
    match overall {
        HealthStatus::Current | HealthStatus::Failed => None,
        _ => Some((HEALTH_RECHECK, Trigger::Health)),
    }
}

/// The fallback interval of health checks while objects are progressing.
const HEALTH_RECHECK: Duration = Duration::from_secs(10);

/// Self-heal backoff: the first heal is immediate; each further heal within 10 s of the
/// previous one waits twice as long (2 s, 4 s, … up to 300 s), so a fight with another controller does not spin. `None` = heal now.
fn heal_backoff(ctx: &Ctx, name: &str) -> Option<Duration> {
    let mut heals = ctx.heals.lock().expect("heals");
    let now = Instant::now();
    let (count, last) = heals
        .get(name)
        .copied()
        .unwrap_or((0, now - Duration::from_secs(3600)));
    let since = now.duration_since(last);
    let count = if since > Duration::from_secs(10) {
        0
    } else {
        count
    };
    let wait = if count == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs((1u64 << count.min(9)).min(300))
    };
    if since < wait {
        return Some(wait - since);
    }
    heals.insert(name.to_string(), (count + 1, now));
    None
}
