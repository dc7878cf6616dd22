//! The agent's HTTP API as types: the query, body and answer of every JSON route.
//!
//! The agent (`ferry-agent`) and its dashboard (`ferry-web`) build these values, the CLI
//! (`ferry get`, `ferry history`, the actions) reads them back, and the OpenAPI document
//! (`crates/web/openapi.json`) is generated from their [`ToSchema`](utoipa::ToSchema)
//! derives. Field names are the wire's: camelCase, except [`HistoryEntry`]'s, which is
//! stored and served as it always was (snake_case).
//!
//! Types the engine hands on ([`ferry_model::ObjectRef`], [`ferry_model::Health`],
//! [`ferry_model::ChangeSet`], ...) are reused as they are.

mod apps;
mod dashboard;
mod history;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use apps::{
    ActionAccepted, AppDetail, AppList, AppRemoved, AppSummary, Condition, ListQuery, ObjectStatus,
    Readiness, RollbackBody, SyncState, WebhookAccepted,
};
pub use dashboard::{
    AppEvent, Comparison, Diff, DiffChange, Events, FieldChange, FieldDrift, ManagerInfo, Node,
    ObjectQuery, ProjectScope, Resource, Role, TimeSource, Tree, WhoAmI,
};
pub use history::{HistoryEntry, HistoryList, HistoryQuery, Outcome, Trigger};

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong, one line.
    pub error: String,
}

impl ErrorBody {
    /// An error body with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            error: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use ferry_model::{AppSpec, ChangeSet, HealthStatus, Summary};
    use serde::Serialize;

    use super::*;

    /// The top-level field names `value` has on the wire, sorted.
    fn keys(value: &impl Serialize) -> Vec<String> {
        match serde_json::to_value(value).expect("serialises") {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn wire_names_are_the_agents() {
        let detail = AppDetail {
            name: "web".into(),
            app_namespace: "team-a".into(),
            spec: AppSpec::default(),
            sync: SyncState::OutOfSync,
            health: HealthStatus::Current,
            revision: String::new(),
            message: String::new(),
            last_sync_at: None,
            last_duration_ms: 0,
            inventory: 0,
            drifted: Vec::new(),
            conditions: Vec::new(),
            suspended: false,
            pinned: None,
            objects: Vec::new(),
            changeset: None,
        };
        assert_eq!(
            keys(&detail),
            [
                "appNamespace",
                "changeset",
                "conditions",
                "drifted",
                "health",
                "inventory",
                "lastDurationMs",
                "lastSyncAt",
                "message",
                "name",
                "objects",
                "pinned",
                "revision",
                "spec",
                "suspended",
                "sync"
            ]
        );
        let entry = HistoryEntry {
            id: 1,
            app: "web".into(),
            revision: String::new(),
            message: String::new(),
            trigger: Trigger::Poll,
            started_at: 0,
            duration_ms: 0,
            outcome: Outcome::Failed,
            error: None,
            summary: Summary::default(),
            changeset: ChangeSet::default(),
        };
        assert!(
            keys(&entry).contains(&"duration_ms".to_string()),
            "history stays snake_case: {:?}",
            keys(&entry)
        );
        let accepted = ActionAccepted {
            app: "web".into(),
            action: "sync".into(),
            revision: None,
        };
        assert_eq!(
            keys(&accepted),
            ["action", "app"],
            "no revision but on a rollback"
        );
        let condition = Condition {
            kind: "Ready".into(),
            status: "True".into(),
            reason: String::new(),
            message: String::new(),
        };
        assert_eq!(keys(&condition), ["message", "reason", "status", "type"]);
    }

    #[test]
    fn names_for_people_are_the_wire_names() {
        for s in [SyncState::Synced, SyncState::OutOfSync, SyncState::Unknown] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        let triggers = [
            Trigger::Poll,
            Trigger::Webhook,
            Trigger::Drift,
            Trigger::Manual,
            Trigger::Rollback,
            Trigger::Startup,
        ];
        for t in triggers {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for o in [Outcome::Succeeded, Outcome::Failed] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for r in [Role::Viewer, Role::Operator] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.to_string());
        }
    }
}
