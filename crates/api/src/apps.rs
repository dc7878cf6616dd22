//! Apps: the list, one app's status, and the actions on an app.

use ferry_model::{AppKey, AppSpec, ChangeSet, Health, HealthStatus, ObjectRef};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Whether the cluster matches Git.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SyncState {
    /// Every object matches the desired revision.
    Synced,
    /// Some object differs (drift, or a new revision not yet applied).
    OutOfSync,
    /// Not reconciled yet.
    Unknown,
}

impl SyncState {
    /// The name on the wire, e.g. `OutOfSync`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "Synced",
            Self::OutOfSync => "OutOfSync",
            Self::Unknown => "Unknown",
        }
    }
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Query of `GET /api/v1/apps`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only apps in this sync state.
    #[param(value_type = Option<SyncState>)]
    pub sync: Option<String>,
    /// Only apps of this health.
    #[param(value_type = Option<HealthStatus>)]
    pub health: Option<String>,
    /// Substring of the name, repository or path.
    pub q: Option<String>,
    /// Only apps of this namespace (the app's own, not its destination).
    #[serde(default, rename = "appNamespace")]
    #[param(rename = "appNamespace")]
    pub app_namespace: Option<String>,
    /// Items to skip.
    #[serde(default)]
    pub offset: usize,
    /// Items to return (default 100, at most 1000).
    #[param(maximum = 1000)]
    pub limit: Option<usize>,
}

/// One row of the app list (and the data of the stream's `app` event).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSummary {
    /// App name.
    pub name: String,
    /// The app's namespace: with the name, its identity (`appNamespace/name`).
    pub app_namespace: String,
    /// Git repository.
    pub repo: String,
    /// Path in the repository.
    pub path: String,
    /// Destination namespace.
    pub namespace: Option<String>,
    /// Sync state.
    pub sync: SyncState,
    /// Aggregated health.
    pub health: HealthStatus,
    /// Commit SHA last applied or observed.
    pub revision: String,
    /// That commit's subject.
    pub message: String,
    /// Unix ms of the last sync that wrote something.
    pub last_sync_at: Option<i64>,
    /// Reconciliation is suspended.
    pub suspended: bool,
    /// Reason of the Ready condition.
    pub reason: Option<String>,
}

/// A page of the app list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppList {
    /// Matching apps.
    pub total: usize,
    /// Matching apps skipped.
    pub offset: usize,
    /// The page.
    pub items: Vec<AppSummary>,
}

/// A Kubernetes-style condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Condition {
    /// `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: String,
    /// CamelCase reason, e.g. `ApplyFailed`.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

/// One object of an app with its health.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ObjectStatus {
    /// The object.
    pub subject: ObjectRef,
    /// Its health.
    pub health: Health,
}

/// One app's full status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AppStatus)]
pub struct AppDetail {
    /// App name.
    pub name: String,
    /// The app's namespace: with the name, its identity (`appNamespace/name`).
    pub app_namespace: String,
    /// The app's definition (ferry.yaml schema, camelCase).
    #[schema(value_type = Object)]
    pub spec: AppSpec,
    /// Sync state.
    pub sync: SyncState,
    /// Aggregated health (worst of the objects).
    pub health: HealthStatus,
    /// Last applied (or observed in sync) commit SHA.
    pub revision: String,
    /// That commit's subject line.
    pub message: String,
    /// Unix ms of the last sync that wrote something.
    pub last_sync_at: Option<i64>,
    /// How long the last reconcile took, in ms.
    pub last_duration_ms: u64,
    /// Objects in the inventory.
    pub inventory: usize,
    /// Objects that differ from Git (when OutOfSync).
    pub drifted: Vec<ObjectRef>,
    /// Ready / Reconciling / Stalled.
    pub conditions: Vec<Condition>,
    /// Reconciliation is suspended.
    pub suspended: bool,
    /// Revision pinned by a rollback, until resumed.
    pub pinned: Option<String>,
    /// Per-object health.
    pub objects: Vec<ObjectStatus>,
    /// The last plan (diffs masked).
    pub changeset: Option<ChangeSet>,
}

/// Where an app stands, as its Ready, Reconciling and Stalled conditions say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Applied and healthy: Ready.
    Ready,
    /// Not ready yet, and work goes on (progressing, out of sync, a failure that is
    /// retried, suspended): Reconciling.
    Reconciling,
    /// Not ready, and it will not get there without a change: Stalled.
    Stalled,
}

impl AppDetail {
    /// A fresh status for an app not yet reconciled.
    pub fn new(app: &AppKey, spec: AppSpec) -> Self {
        Self {
            name: app.name.clone(),
            app_namespace: app.namespace.clone(),
            suspended: spec.suspend,
            spec,
            sync: SyncState::Unknown,
            health: HealthStatus::Unknown,
            revision: String::new(),
            message: String::new(),
            last_sync_at: None,
            last_duration_ms: 0,
            inventory: 0,
            drifted: Vec::new(),
            conditions: Vec::new(),
            pinned: None,
            objects: Vec::new(),
            changeset: None,
        }
    }

    /// Sets the Ready/Reconciling/Stalled conditions: one is True, with `reason`.
    pub fn set_ready(&mut self, readiness: Readiness, reason: &str, message: &str) {
        let flag = |b: bool| if b { "True" } else { "False" };
        let ready = readiness == Readiness::Ready;
        let stalled = readiness == Readiness::Stalled;
        self.conditions = vec![
            Condition {
                kind: "Ready".into(),
                status: flag(ready).into(),
                reason: reason.into(),
                message: message.into(),
            },
            Condition {
                kind: "Reconciling".into(),
                status: flag(!ready && !stalled).into(),
                reason: reason.into(),
                message: String::new(),
            },
            Condition {
                kind: "Stalled".into(),
                status: flag(stalled).into(),
                reason: reason.into(),
                message: if stalled {
                    message.into()
                } else {
                    String::new()
                },
            },
        ];
    }

    /// The app's identity.
    pub fn key(&self) -> AppKey {
        AppKey::new(&self.app_namespace, &self.name)
    }

    /// This status as the API shows it: credentials removed from the repository URLs
    /// and from condition messages ([`ferry_model::redact_url`]).
    pub fn redacted(&self) -> Self {
        use ferry_model::{redact_text, redact_url};
        let mut shown = self.clone();
        let source = &mut shown.spec.source;
        source.repo = redact_url(&source.repo).into_owned();
        if let Some(repo) = source.helm.as_mut().and_then(|h| h.repo.as_mut()) {
            *repo = redact_url(repo).into_owned();
        }
        for condition in &mut shown.conditions {
            condition.message = redact_text(&condition.message).into_owned();
        }
        shown
    }

    /// The Ready condition's reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.conditions
            .iter()
            .find(|c| c.kind == "Ready")
            .map(|c| c.reason.as_str())
    }
}

impl From<&AppDetail> for AppSummary {
    fn from(s: &AppDetail) -> Self {
        Self {
            name: s.name.clone(),
            app_namespace: s.app_namespace.clone(),
            repo: ferry_model::redact_url(&s.spec.source.repo).into_owned(),
            path: s.spec.source.path.clone(),
            namespace: s.spec.destination.namespace.clone(),
            sync: s.sync,
            health: s.health,
            revision: s.revision.clone(),
            message: s.message.clone(),
            last_sync_at: s.last_sync_at,
            suspended: s.suspended,
            reason: s.reason().map(str::to_string),
        }
    }
}

/// Body of `POST /api/v1/apps/{namespace}/{name}/rollback`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RollbackBody {
    /// A history entry id, or a commit SHA / ref.
    pub target: String,
}

/// Answer to an action: it is queued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionAccepted {
    /// The app, `namespace/name`.
    pub app: String,
    /// The action, e.g. `sync`.
    pub action: String,
    /// The revision rolled back to (rollback only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// Answer to a webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookAccepted {
    /// Repositories refreshed.
    pub repositories: usize,
}

/// Data of the stream's `removed` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppRemoved {
    /// The app that is gone.
    pub name: String,
    /// Its namespace.
    pub app_namespace: String,
}
