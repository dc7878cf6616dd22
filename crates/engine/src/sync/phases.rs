//! Phases, waves and hooks: PreSync hooks, then the plan's objects wave by wave (each
//! with its Sync hooks, each waited for until healthy before the next when a later wave
//! has work), prune, then PostSync hooks once everything is healthy; SyncFail hooks when
//! any of it failed. The pure parts (which object is what, the order) are
//! `ferry_plan::hooks`.
//!
//! An app with one wave and no hooks runs exactly one write step, as without waves: no
//! health wait, no extra request.

use std::collections::HashSet;
use std::time::Duration;

use ferry_kube::Cluster;
use ferry_model::hook::{HOOK_LABEL, HOOK_TEMPLATE_ANNOTATION};
use ferry_model::{
    APP_NAMESPACE_LABEL, Action, AppKey, AppSpec, HookRun, ObjectRef, Phase, RunResult, WaveRun,
};
use ferry_plan::hooks::{Completion, Steps, Wave, completion, steps};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::apply;
use super::plan::{Planned, PlannedHook};
use crate::EngineError;
use crate::progress::{Event, Progress};
use crate::wait::{self, WaitOutcome, WaitReport};

/// How often a running hook is looked at.
const POLL: Duration = Duration::from_millis(500);

/// The hooks and waves of a sync, for its ChangeSet.
#[derive(Clone, Debug, Default)]
pub(super) struct Log {
    /// The hooks, in run order.
    pub hooks: Vec<HookRun>,
    /// The waves, when there is more than one.
    pub waves: Vec<WaveRun>,
}

/// Why the sync stopped.
enum Failure {
    /// A hook failed or timed out, or a wave did not become healthy.
    Stop {
        phase: Phase,
        message: String,
        timed_out: bool,
    },
    /// Anything else (an API error, a cancellation).
    Engine(EngineError),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(e)
    }
}

impl From<ferry_kube::KubeError> for Failure {
    fn from(e: ferry_kube::KubeError) -> Self {
        Failure::Engine(e.into())
    }
}

/// A hook created and not yet complete.
struct Running {
    /// Index into [`Planned::hooks`].
    index: usize,
    /// The created object (its generated name).
    subject: ObjectRef,
    started: Instant,
}

/// One sync's phases over a plan.
pub(super) struct Phases<'a> {
    /// The target cluster.
    pub cluster: &'a Cluster,
    /// The app.
    pub app: &'a AppKey,
    /// Its spec.
    pub spec: &'a AppSpec,
    /// The plan to carry out.
    pub planned: &'a Planned,
    /// Where progress goes.
    pub progress: &'a dyn Progress,
    /// Checked before every write.
    pub cancel: &'a CancellationToken,
    /// Whether hooks run (not when healing drift).
    pub hooks: bool,
    /// How long one wave or the hooks of one wave may take.
    pub timeout: Duration,
}

/// The plan's hooks and waves as a plan shows them: every hook that would run (as in
/// Git), every wave when there is more than one, all pending.
pub(super) fn listed(planned: &Planned, hooks: bool) -> Log {
    let steps = steps_of(planned, hooks);
    let mut log = Log::default();
    let phases = [
        (Phase::PreSync, &steps.pre_sync),
        (Phase::Sync, &steps.sync),
        (Phase::PostSync, &steps.post_sync),
    ];
    for (phase, waves) in phases {
        for w in waves {
            for i in &w.hooks {
                log.hooks.push(HookRun {
                    subject: planned.hooks[*i].template.clone(),
                    phase,
                    wave: w.wave,
                    result: RunResult::Pending,
                    duration_ms: None,
                    message: None,
                });
            }
        }
    }
    if steps.sync.len() > 1 {
        log.waves = steps
            .sync
            .iter()
            .map(|w| WaveRun {
                wave: w.wave,
                objects: w.resources.len(),
                result: RunResult::Pending,
                duration_ms: None,
                message: None,
            })
            .collect();
    }
    log
}

/// The plan's steps: its objects by wave, and its hooks when they run.
fn steps_of(planned: &Planned, hooks: bool) -> Steps {
    let desired = planned.desired();
    let resources: Vec<(i32, &ObjectRef)> = desired
        .iter()
        .map(|s| (planned.waves.get(s).copied().unwrap_or_default(), s))
        .collect();
    let hooks: Vec<_> = match hooks {
        true => planned
            .hooks
            .iter()
            .map(|h| (&h.hook, &h.template))
            .collect(),
        false => Vec::new(),
    };
    steps(&resources, &hooks)
}

impl Phases<'_> {
    /// Carries out the plan phase by phase; returns what ran. A failure runs the
    /// SyncFail hooks (unless the sync was cancelled) and is [`EngineError::Stopped`]
    /// for a hook or a wave, carrying the ChangeSet as far as it ran.
    pub(super) async fn run(&self) -> Result<Log, EngineError> {
        let steps = steps_of(self.planned, self.hooks);
        let mut log = Log {
            waves: listed(self.planned, self.hooks).waves,
            hooks: Vec::new(),
        };
        let failure = match self.steps(&steps, &mut log).await {
            Ok(()) => return Ok(log),
            Err(Failure::Engine(EngineError::Cancelled)) => return Err(EngineError::Cancelled),
            Err(failure) => failure,
        };
        if !steps.sync_fail.is_empty() {
            self.event("sync failed: running SyncFail hooks".into());
            for w in &steps.sync_fail {
                // Their own failures are recorded in the log; the sync failed anyway.
                let _ = self.hooks(Phase::SyncFail, w, &mut log).await;
            }
        }
        match failure {
            Failure::Engine(e) => Err(e),
            Failure::Stop {
                phase,
                message,
                timed_out,
            } => {
                let mut changeset = self.planned.changeset.clone();
                changeset.hooks = log.hooks;
                changeset.waves = log.waves;
                Err(EngineError::Stopped {
                    phase,
                    message,
                    timed_out,
                    changeset: Box::new(changeset),
                })
            }
        }
    }

    async fn steps(&self, steps: &Steps, log: &mut Log) -> Result<(), Failure> {
        self.check()?;
        apply::namespace(self.cluster, self.spec).await?;
        for w in &steps.pre_sync {
            self.hooks(Phase::PreSync, w, log).await?;
        }
        self.check()?;
        apply::begin(self.cluster, self.app, self.planned).await?;
        let desired = self.planned.desired();
        let writes: HashSet<&ObjectRef> = self
            .planned
            .changeset
            .changes
            .iter()
            .filter(|c| matches!(c.action, Action::Create | Action::Update | Action::Recreate))
            .map(|c| &c.subject)
            .collect();
        let busy: Vec<bool> = steps
            .sync
            .iter()
            .map(|w| {
                !w.hooks.is_empty() || w.resources.iter().any(|i| writes.contains(&desired[*i]))
            })
            .collect();
        let multi = steps.sync.len() > 1;
        for (n, w) in steps.sync.iter().enumerate() {
            let started = Instant::now();
            let subjects: Vec<ObjectRef> =
                w.resources.iter().map(|i| desired[*i].clone()).collect();
            if multi && busy[n] {
                self.event(format!("wave {}: {} object(s)", w.wave, subjects.len()));
            }
            let result = self
                .wave(w, &subjects, multi, busy[n + 1..].contains(&true), log)
                .await;
            if let Some(entry) = log.waves.get_mut(n) {
                entry.duration_ms = Some(started.elapsed().as_millis() as u64);
                entry.result = match &result {
                    Ok(()) => RunResult::Succeeded,
                    Err(_) => RunResult::Failed,
                };
                if let Err(Failure::Stop { message, .. }) = &result {
                    entry.message = Some(message.clone());
                }
            }
            result?;
            if multi && busy[n] {
                self.event(format!(
                    "wave {}: done in {:.1} s",
                    w.wave,
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        self.check()?;
        apply::finish(
            self.cluster,
            self.app,
            self.planned,
            self.progress,
            self.cancel,
        )
        .await?;
        if steps.post_sync.is_empty() {
            return Ok(());
        }
        let report =
            wait::wait_healthy(self.cluster, &desired, self.timeout, self.progress).await?;
        if report.outcome != WaitOutcome::Healthy {
            return Err(Failure::Stop {
                phase: Phase::PostSync,
                message: format!(
                    "PostSync hooks not run: {}",
                    unhealthy(&report, self.timeout)
                ),
                timed_out: report.outcome == WaitOutcome::TimedOut,
            });
        }
        for w in &steps.post_sync {
            self.hooks(Phase::PostSync, w, log).await?;
        }
        Ok(())
    }

    /// One wave: its objects written, its Sync hooks created, then (when a later wave
    /// has work) its objects waited for until healthy, and its hooks until complete.
    async fn wave(
        &self,
        w: &Wave,
        subjects: &[ObjectRef],
        multi: bool,
        later: bool,
        log: &mut Log,
    ) -> Result<(), Failure> {
        if multi {
            let only: HashSet<&ObjectRef> = subjects.iter().collect();
            apply::write(
                self.cluster,
                self.planned,
                Some(&only),
                self.progress,
                self.cancel,
            )
            .await?;
        } else {
            apply::write(self.cluster, self.planned, None, self.progress, self.cancel).await?;
        }
        let running = self.create(Phase::Sync, w).await?;
        if multi && later {
            let report =
                wait::wait_healthy(self.cluster, subjects, self.timeout, self.progress).await?;
            if report.outcome != WaitOutcome::Healthy {
                return Err(Failure::Stop {
                    phase: Phase::Sync,
                    message: format!(
                        "wave {} not healthy, later waves not applied: {}",
                        w.wave,
                        unhealthy(&report, self.timeout)
                    ),
                    timed_out: report.outcome == WaitOutcome::TimedOut,
                });
            }
        }
        self.complete(Phase::Sync, running, log).await
    }

    /// Runs the hooks of one wave of `phase`: creates them, waits until they complete.
    async fn hooks(&self, phase: Phase, w: &Wave, log: &mut Log) -> Result<(), Failure> {
        self.event(format!(
            "{phase}: running {} hook(s) (wave {})",
            w.hooks.len(),
            w.wave
        ));
        let running = self.create(phase, w).await?;
        self.complete(phase, running, log).await
    }

    /// Creates the hooks of `w`, each after deleting its previous run's object when its
    /// policy says so.
    async fn create(&self, phase: Phase, w: &Wave) -> Result<Vec<Running>, Failure> {
        let mut running = Vec::with_capacity(w.hooks.len());
        for index in &w.hooks {
            self.check()?;
            let hook = &self.planned.hooks[*index];
            if hook.hook.delete.before_creation {
                self.delete_previous(hook).await?;
            }
            let created = self.cluster.create(&hook.manifest.object).await?;
            let subject = ferry_kube::object_ref(&created);
            self.event(format!("{phase} hook {subject}: created"));
            running.push(Running {
                index: *index,
                subject,
                started: Instant::now(),
            });
        }
        Ok(running)
    }

    /// Deletes the objects earlier runs of `hook` left (found by [`HOOK_LABEL`] and
    /// [`HOOK_TEMPLATE_ANNOTATION`]), waiting until a fixed-name one is gone.
    async fn delete_previous(&self, hook: &PlannedHook) -> Result<(), Failure> {
        let template = hook.template.to_string();
        let selector = format!(
            "{HOOK_LABEL}={},{APP_NAMESPACE_LABEL}={}",
            self.app.name, self.app.namespace
        );
        let listed = self
            .cluster
            .list_selected(
                &hook.template.api_version(),
                &hook.template.kind,
                hook.template.namespace.as_deref(),
                Some(&selector),
            )
            .await?;
        for old in listed {
            if old["metadata"]["annotations"][HOOK_TEMPLATE_ANNOTATION].as_str()
                != Some(template.as_str())
            {
                continue;
            }
            let subject = ferry_kube::object_ref(&old);
            self.cluster.delete(&subject).await?;
            if !hook.manifest.name().is_empty() {
                wait::gone(self.cluster, &subject, self.timeout).await?;
            }
            self.event(format!("hook {subject}: deleted (before hook creation)"));
        }
        Ok(())
    }

    /// Waits until every running hook succeeded or failed (or the timeout passes, a
    /// failure), records each and deletes it when its policy says so.
    async fn complete(
        &self,
        phase: Phase,
        mut running: Vec<Running>,
        log: &mut Log,
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + self.timeout;
        let mut failed: Option<String> = None;
        let mut timed_out = false;
        while !running.is_empty() {
            let mut still = Vec::new();
            for r in running {
                let state = match self.cluster.get(&r.subject).await? {
                    Some(live) => completion(&live),
                    None => Completion::Failed("deleted before it completed".into()),
                };
                match state {
                    Completion::Running(status) => still.push((r, status)),
                    Completion::Succeeded => self.done(phase, r, None, log).await?,
                    Completion::Failed(why) => {
                        failed.get_or_insert_with(|| format!("{phase} hook {}: {why}", r.subject));
                        self.done(phase, r, Some(why), log).await?;
                    }
                }
            }
            if still.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for (r, status) in still {
                    let why = format!("not complete after {} s ({status})", self.timeout.as_secs());
                    failed.get_or_insert_with(|| format!("{phase} hook {}: {why}", r.subject));
                    timed_out = true;
                    self.done(phase, r, Some(why), log).await?;
                }
                break;
            }
            tokio::time::sleep(POLL).await;
            running = still.into_iter().map(|(r, _)| r).collect();
        }
        match failed {
            None => Ok(()),
            Some(message) => Err(Failure::Stop {
                phase,
                message,
                timed_out,
            }),
        }
    }

    /// Records a finished hook (`failed` with why) and deletes it per its policy.
    async fn done(
        &self,
        phase: Phase,
        r: Running,
        failed: Option<String>,
        log: &mut Log,
    ) -> Result<(), Failure> {
        let hook = &self.planned.hooks[r.index];
        let elapsed = r.started.elapsed();
        let (result, delete) = match &failed {
            None => (RunResult::Succeeded, hook.hook.delete.succeeded),
            Some(_) => (RunResult::Failed, hook.hook.delete.failed),
        };
        self.event(format!(
            "{phase} hook {}: {} in {:.1} s{}",
            r.subject,
            match result {
                RunResult::Failed => "failed",
                _ => "succeeded",
            },
            elapsed.as_secs_f64(),
            failed
                .as_deref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        ));
        if delete {
            self.cluster.delete(&r.subject).await?;
        }
        log.hooks.push(HookRun {
            subject: r.subject,
            phase,
            wave: hook.hook.wave,
            result,
            duration_ms: Some(elapsed.as_millis() as u64),
            message: failed,
        });
        Ok(())
    }

    fn check(&self) -> Result<(), Failure> {
        super::proceed(self.cancel).map_err(Failure::Engine)
    }

    fn event(&self, text: String) {
        self.progress.event(Event::Phase(text));
    }
}

/// The first object of a health wait that is not Current, and why; with the timeout
/// when it passed.
fn unhealthy(report: &WaitReport, timeout: Duration) -> String {
    let first = report
        .unready()
        .next()
        .map(|(s, h)| format!("{s}: {}", h.message))
        .unwrap_or_default();
    match report.outcome {
        WaitOutcome::TimedOut => format!("timed out after {} s: {first}", timeout.as_secs()),
        _ => first,
    }
}
