use ferry_model::{ChangeSet, ObjectRef};

/// Why syncing an app failed, with the stage it failed in.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Fetching or checking out the source failed.
    #[error(transparent)]
    Source(#[from] ferry_source::SourceError),
    /// An app set's template does not expand (bad generated name, invalid field).
    #[error(transparent)]
    Spec(#[from] ferry_model::SpecError),
    /// An app set's directories could not be listed.
    #[error("app set {set} at {revision}: {source}")]
    AppSet {
        /// The set.
        set: String,
        /// The revision listed, abbreviated.
        revision: String,
        /// What went wrong.
        source: crate::appset::ListError,
    },
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] ferry_render::RenderError),
    /// The API server refused or could not be reached.
    #[error(transparent)]
    Kube(#[from] ferry_kube::KubeError),
    /// The plan is impossible (e.g. an object owned by another app).
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// An immutable field changed and `--force` was not given.
    #[error(
        "{subject}: an immutable field changed ({message}); re-run with --force to delete and re-create it"
    )]
    Immutable {
        /// The object.
        subject: Box<ObjectRef>,
        /// The server's message naming the field.
        message: String,
    },
    /// An object is namespaced but neither it nor the app names a namespace.
    #[error(
        "{origin}: {subject} is namespaced but has no namespace and the app sets no destination.namespace"
    )]
    NoNamespace {
        /// The object.
        subject: Box<ObjectRef>,
        /// Where it came from.
        origin: String,
    },
    /// An object's namespace does not exist and this sync does not create it.
    #[error(
        "{subject}: namespace {namespace} does not exist; create it, or set destination.createNamespace (--create-namespace)"
    )]
    NoSuchNamespace {
        /// The object.
        subject: Box<ObjectRef>,
        /// The missing namespace.
        namespace: String,
    },
    /// A kind the cluster does not know, and no CRD for it in the app.
    #[error("{origin}: {subject}: {source}")]
    UnknownKind {
        /// The object.
        subject: Box<ObjectRef>,
        /// Where it came from.
        origin: String,
        /// The discovery error.
        source: ferry_kube::KubeError,
    },
    /// An annotation declaring a wave or a hook is invalid.
    #[error(transparent)]
    Hook(#[from] ferry_plan::hooks::HookError),
    /// A hook failed or timed out, or a wave did not become healthy: the sync stopped
    /// there (later waves untouched; SyncFail hooks ran).
    #[error("{message}")]
    Stopped {
        /// The phase that failed: `PreSync`, `Sync` (a wave) or `PostSync`.
        phase: ferry_model::Phase,
        /// What failed and why.
        message: String,
        /// True when it timed out (a retry may get past it).
        timed_out: bool,
        /// The plan, with the hooks and waves as far as they ran (boxed to keep
        /// `Result`s small).
        changeset: Box<ChangeSet>,
    },
    /// Pruning failed for some objects; they stay in the inventory.
    #[error("prune failed for {count} object(s): {first}")]
    Prune {
        /// How many deletions failed.
        count: usize,
        /// The first failure.
        first: String,
    },
    /// Waiting for something other than health (CRD established, object deleted) timed out.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        seconds: u64,
    },
    /// The render has no objects but the app's inventory holds some: syncing would prune
    /// them all. Refused unless the app sets `allowEmpty`.
    #[error(
        "app {app} at {revision}: the render has no objects, so all {inventoried} object(s) in its inventory would be pruned; refusing (set allowEmpty: true on the app to allow an empty app)"
    )]
    EmptyRender {
        /// The app.
        app: String,
        /// The revision rendered, abbreviated.
        revision: String,
        /// How many objects its inventory holds.
        inventoried: usize,
    },
    /// The app's project does not allow the app or some of its objects; nothing was
    /// written.
    #[error("app {app}: refused by project {project}: {}", violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Policy {
        /// The app.
        app: String,
        /// Its project.
        project: String,
        /// What the project does not allow, each naming the object and the rule.
        violations: Vec<ferry_plan::policy::Violation>,
    },
    /// The app names a project that is not defined.
    #[error("app {app}: project {project} is not defined ({looked_in})")]
    UnknownProject {
        /// The app.
        app: String,
        /// The project named.
        project: String,
        /// Where it was looked for, e.g. `not in ferry.yaml, no Project resource`.
        looked_in: String,
    },
    /// The sync was cancelled (the agent lost its lease or is stopping) before a write.
    #[error("the sync was cancelled before its next write")]
    Cancelled,
    /// A background task panicked or was cancelled.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// True when a later retry may succeed without a change in Git.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Source(e) => e.is_transient(),
            EngineError::Kube(e) => e.is_transient(),
            EngineError::Prune { .. } | EngineError::Timeout { .. } | EngineError::Cancelled => {
                true
            }
            EngineError::Stopped { timed_out, .. } => *timed_out,
            EngineError::AppSet {
                source: crate::appset::ListError::Io { .. },
                ..
            } => true,
            _ => false,
        }
    }

    /// The stage that failed, for status reasons: Source, Render, Apply, Prune, or the
    /// sync phase that stopped the sync (PreSync, Sync, PostSync).
    pub fn stage(&self) -> &'static str {
        match self {
            EngineError::Stopped { phase, .. } => match phase {
                ferry_model::Phase::PreSync => "PreSync",
                ferry_model::Phase::Sync => "Sync",
                ferry_model::Phase::PostSync => "PostSync",
                ferry_model::Phase::SyncFail => "SyncFail",
            },
            EngineError::Source(_) | EngineError::Spec(_) | EngineError::AppSet { .. } => "Source",
            EngineError::Render(_) | EngineError::EmptyRender { .. } => "Render",
            EngineError::Prune { .. } => "Prune",
            EngineError::Policy { .. } | EngineError::UnknownProject { .. } => "Project",
            _ => "Apply",
        }
    }

    /// The reason of the status condition and Event reporting this failure:
    /// `ProjectViolation` for a refusal by the project, else `<stage>Failed`.
    pub fn reason(&self) -> String {
        match self {
            EngineError::Policy { .. } => "ProjectViolation".into(),
            _ => format!("{}Failed", self.stage()),
        }
    }

    /// The plan of a sync that stopped at a hook or a wave, with what ran.
    pub fn changeset(&self) -> Option<&ChangeSet> {
        match self {
            EngineError::Stopped { changeset, .. } => Some(changeset),
            _ => None,
        }
    }
}
