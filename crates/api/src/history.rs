//! The sync history: what the agent records per sync, stored and served alike.

use ferry_model::{ChangeSet, Summary};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What started a recorded sync. The agent's work queue has one more trigger, a health
/// check, which records nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The periodic Git poll found a new revision.
    Poll,
    /// A push webhook.
    Webhook,
    /// Drift in the cluster was corrected (self-heal).
    Drift,
    /// A user asked for a sync.
    Manual,
    /// A user rolled back to an earlier revision.
    Rollback,
    /// The agent's first reconcile after starting.
    Startup,
}

impl Trigger {
    /// The name on the wire, e.g. `poll`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Webhook => "webhook",
            Self::Drift => "drift",
            Self::Manual => "manual",
            Self::Rollback => "rollback",
            Self::Startup => "startup",
        }
    }
}

/// How a sync ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Everything applied (and became healthy when waiting).
    Succeeded,
    /// The sync stopped with an error.
    Failed,
}

impl Outcome {
    /// The name on the wire, e.g. `succeeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// One recorded sync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    /// Unique id; increases with every record.
    pub id: u64,
    /// The app, `namespace/name`.
    pub app: String,
    /// Git commit SHA that was synced.
    pub revision: String,
    /// The commit's message (first line or full).
    pub message: String,
    /// What started the sync.
    pub trigger: Trigger,
    /// Start time, Unix milliseconds.
    pub started_at: i64,
    /// How long the sync took, milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Counts of the changes.
    pub summary: Summary,
    /// The changes themselves.
    pub changeset: ChangeSet,
}

/// Answer of `GET /api/v1/apps/{namespace}/{name}/history`: newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryList {
    /// The entries.
    pub items: Vec<HistoryEntry>,
}

/// Query of `GET /api/v1/apps/{namespace}/{name}/history`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Entries to return (default 50).
    pub limit: Option<usize>,
}
