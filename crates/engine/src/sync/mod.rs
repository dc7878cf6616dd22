//! The one sync entry point: [`Sync::run`] plans an app's rendered manifests against the
//! cluster and, unless asked for a dry run, applies, prunes and observes or waits for
//! health. Push mode (`ferry diff`/`ferry apply`), the agent and the dashboard all call
//! it; nothing outside the engine calls the steps (or `Cluster::apply`/`delete`) itself.
//!
//! One file per verb, as in Flux's `ssa` package: [`plan`] (GET/LIST + dry-run, writes
//! nothing), [`apply`] (staged writes, inventory widened first), [`prune`] (deletions,
//! inventory narrowed last), [`memo`] (which dry-runs a plan may skip), [`phases`]
//! (PreSync hooks, waves with their Sync hooks, PostSync and SyncFail hooks).

mod apply;
mod memo;
mod phases;
mod plan;
mod prune;

use std::collections::HashMap;
use std::time::Duration;

use ferry_kube::Cluster;
use ferry_model::{AppKey, AppSpec, ChangeSet, Health, ObjectRef, Project, parse_duration};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use memo::{InSync, Known};

use crate::EngineError;
use crate::progress::{Event, Progress};
use crate::source::Rendered;
use crate::wait::{self, WaitReport};

/// How many API requests one app keeps in flight.
const CONCURRENCY: usize = 16;

/// `Err(Cancelled)` once `cancel` fired: checked before each write step, so that a
/// cancelled sync stops before its next write.
fn proceed(cancel: &CancellationToken) -> Result<(), EngineError> {
    match cancel.is_cancelled() {
        true => Err(EngineError::Cancelled),
        false => Ok(()),
    }
}

/// How long one wave or one wave of hooks may take when neither the sync's wait nor the
/// app's `wait.timeout` says.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

/// What to do about health once the cluster matches the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wait {
    /// Nothing: the report has no health.
    #[default]
    No,
    /// Look once (the agent: watches tell it when to look again).
    Observe,
    /// Poll until every object is Current, one is Failed, or the timeout passes.
    Until(Duration),
}

/// How [`Sync::run`] goes about it.
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    /// Plan only: write nothing (`ferry diff`).
    pub dry_run: bool,
    /// Delete and re-create objects whose immutable fields changed.
    pub force: bool,
    /// What to do about health after applying.
    pub wait: Wait,
    /// The memo of objects known in sync (the agent's, in memory); `None` keeps it in
    /// the app's inventory (push mode).
    pub in_sync: Option<InSync>,
    /// Cancelled: stop before the next write with [`EngineError::Cancelled`].
    pub cancel: CancellationToken,
    /// The whole sync must end by then, else [`EngineError::Timeout`].
    pub deadline: Option<Instant>,
    /// Run the app's hooks (PreSync, Sync, PostSync, SyncFail) and list them in the
    /// ChangeSet; off, hooks are neither run nor listed (the agent healing drift).
    pub hooks: bool,
}

/// What [`Sync::run`] found and did.
#[derive(Clone, Debug)]
pub struct SyncReport {
    /// The plan: what differed from Git (and what was done about it when `applied`).
    pub changeset: ChangeSet,
    /// Every desired object, in apply order.
    pub objects: Vec<ObjectRef>,
    /// Whether the plan was carried out (false for a dry run or a held plan).
    pub applied: bool,
    /// The objects' health, when asked for and the cluster matches the plan.
    pub health: Option<WaitReport>,
}

/// One app on one cluster: the engine's sync entry point.
#[derive(Clone, Copy)]
pub struct Sync<'a> {
    /// The target cluster.
    pub cluster: &'a Cluster,
    /// The app's identity (its ownership labels and inventory).
    pub app: &'a AppKey,
    /// The app.
    pub spec: &'a AppSpec,
    /// The app's project, checked before anything is written; its service account (if
    /// any) makes every request about the app's objects. `None`: no bounds, ferry's
    /// identity.
    pub project: Option<&'a Project>,
    /// The namespace of the `Application` resource defining the app (`None` for an app
    /// of a `ferry.yaml`), for the project's `sourceNamespaces`.
    pub app_namespace: Option<&'a str>,
}

impl<'a> Sync<'a> {
    /// The sync of `app` on `cluster`, outside any project.
    pub fn new(cluster: &'a Cluster, app: &'a AppKey, spec: &'a AppSpec) -> Self {
        Self {
            cluster,
            app,
            spec,
            project: None,
            app_namespace: None,
        }
    }

    /// This sync bounded by `project`, for an app defined in `app_namespace` (an
    /// `Application`'s namespace; `None` for a `ferry.yaml` app).
    pub fn in_project(self, project: &'a Project, app_namespace: Option<&'a str>) -> Self {
        Self {
            project: Some(project),
            app_namespace,
            ..self
        }
    }

    /// The cluster as the app's requests see it: impersonating the project's service
    /// account when it names one.
    fn target(&self) -> Cluster {
        match self.project.and_then(|p| p.spec.service_account()) {
            Some((namespace, name)) => self.cluster.impersonating(namespace, name),
            None => self.cluster.clone(),
        }
    }

    /// Plans `rendered` against the cluster and, unless `opts.dry_run`, applies the plan
    /// (PreSync hooks; staged server-side apply wave by wave, each wave's Sync hooks;
    /// prune, inventory; PostSync hooks), then observes or waits for health.
    /// A render with no objects (hooks aside) for an app whose inventory holds some is
    /// refused ([`EngineError::EmptyRender`]) unless the app sets `allowEmpty`.
    pub async fn run(
        &self,
        rendered: &Rendered,
        opts: &SyncOptions,
        progress: &dyn Progress,
    ) -> Result<SyncReport, EngineError> {
        self.run_gated(rendered, opts, progress, |_| true).await
    }

    /// [`Sync::run`], applying only when `gate` accepts the plan (the agent holds plans
    /// back: self-heal off, a heal backoff, or nothing to change). Health is observed
    /// only when the cluster matches the plan: it was applied, or it changes nothing.
    pub async fn run_gated(
        &self,
        rendered: &Rendered,
        opts: &SyncOptions,
        progress: &dyn Progress,
        gate: impl FnOnce(&ChangeSet) -> bool + Send,
    ) -> Result<SyncReport, EngineError> {
        let work = self.steps(rendered, opts, progress, gate);
        let Some(deadline) = opts.deadline else {
            return work.await;
        };
        let seconds = deadline.saturating_duration_since(Instant::now()).as_secs();
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or(Err(EngineError::Timeout {
                what: "the sync".into(),
                seconds,
            }))
    }

    async fn steps(
        &self,
        rendered: &Rendered,
        opts: &SyncOptions,
        progress: &dyn Progress,
        gate: impl FnOnce(&ChangeSet) -> bool,
    ) -> Result<SyncReport, EngineError> {
        crate::failpoint::hit_for(crate::failpoint::PLAN, &self.app.name);
        let cluster = &self.target();
        let policy = self.project.map(|project| plan::Policy {
            project,
            app_namespace: self.app_namespace,
        });
        let mut planned = plan::plan(cluster, self.app, self.spec, rendered, opts, policy).await?;
        if planned.manifests.is_empty() && !planned.previous.is_empty() && !self.spec.allow_empty {
            return Err(EngineError::EmptyRender {
                app: self.app.to_string(),
                revision: rendered.revision.short_sha().to_string(),
                inventoried: planned.previous.len(),
            });
        }
        let plan_log = phases::listed(&planned, opts.hooks);
        planned.changeset.hooks = plan_log.hooks;
        planned.changeset.waves = plan_log.waves;
        let objects = planned.desired();
        let applied = !opts.dry_run && gate(&planned.changeset);
        if !applied && !opts.dry_run && planned.changeset.in_sync() {
            apply::forget_gone(self.cluster, self.app, &planned, &opts.cancel).await?;
        }
        if applied {
            let timeout = match opts.wait {
                Wait::Until(timeout) => timeout,
                _ => parse_duration(&self.spec.wait.timeout).unwrap_or(PHASE_TIMEOUT),
            };
            let log = phases::Phases {
                cluster,
                app: self.app,
                spec: self.spec,
                planned: &planned,
                progress,
                cancel: &opts.cancel,
                hooks: opts.hooks,
                timeout,
            }
            .run()
            .await?;
            planned.changeset.hooks = log.hooks;
            planned.changeset.waves = log.waves;
            progress.event(Event::Phase(format!(
                "applied: {}",
                planned.changeset.summary()
            )));
        }
        let matches = applied || planned.changeset.in_sync();
        let health = match opts.wait {
            Wait::No => None,
            _ if !matches => None,
            Wait::Observe => {
                // As this sync last read or wrote them; the others (none, usually) read.
                let unseen: Vec<ObjectRef> = (objects.iter())
                    .filter(|s| planned.last_health(s).is_none())
                    .cloned()
                    .collect();
                let mut read: HashMap<ObjectRef, Health> =
                    wait::observe(cluster, &unseen).await?.into_iter().collect();
                let objects = (objects.iter())
                    .map(|s| {
                        let health = (planned.last_health(s).or_else(|| read.remove(s)))
                            .expect("every unseen object was read");
                        (s.clone(), health)
                    })
                    .collect();
                Some(WaitReport::observed(objects))
            }
            Wait::Until(timeout) => {
                Some(wait::wait_healthy(cluster, &objects, timeout, progress).await?)
            }
        };
        Ok(SyncReport {
            changeset: planned.changeset,
            objects,
            applied,
            health,
        })
    }

    /// The desired object for `subject` as ferry would apply it (namespace defaulted,
    /// ownership label set), or `None` when `rendered` has no such object.
    pub async fn desired(
        &self,
        rendered: &Rendered,
        subject: &ObjectRef,
    ) -> Result<Option<Value>, EngineError> {
        let resources = plan::split(&rendered.manifests)?.resources;
        let prepared = plan::prepare(
            &self.target(),
            self.app,
            self.spec,
            &resources,
            &rendered.manifests,
            false,
        )
        .await?;
        Ok(prepared
            .into_iter()
            .map(|(m, _)| m)
            .find(|m| m.object_ref() == *subject)
            .map(|m| m.object))
    }

    /// What the server would store for `desired` (a server-side-apply dry run; writes
    /// nothing).
    pub async fn dry_run(&self, desired: &Value) -> Result<Value, EngineError> {
        Ok(self.target().apply(desired, true).await?)
    }

    /// Removes the app: deletes, in prune order, its inventoried objects that still carry
    /// its labels (and no `ferry.dev/prune: disabled`; a Namespace, CRD or
    /// PersistentVolume only when annotated `ferry.dev/prune: allow`), then its
    /// inventory. On failure the inventory keeps the objects not deleted. Returns how
    /// many objects were deleted. Needs no spec: the app may be gone from every source
    /// already. To delete as a project's service account, pass
    /// [`Cluster::impersonating`] (the inventory is always ferry's).
    pub async fn remove(
        cluster: &Cluster,
        app: &AppKey,
        progress: &dyn Progress,
    ) -> Result<usize, EngineError> {
        prune::remove(cluster, app, progress).await
    }
}
