//! The dashboard's routes: the caller's role, resource trees, events, one object's
//! live state and comparison with Git, and a fresh diff with drift explained.

use ferry_model::{Action, Health, ObjectRef, Summary};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read apps, trees, diffs, history, events and the stream.
    Viewer,
    /// Everything a viewer may, plus sync, refresh, suspend, resume and rollback.
    Operator,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        })
    }
}

/// The projects a token is limited to (`viewer:team-a+team-b:<token>`): it sees and acts
/// on only the apps of these projects. In a request's extensions only for such a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectScope(pub Vec<String>);

impl ProjectScope {
    /// Whether an app of `project` is within the scope.
    pub fn allows(&self, project: &str) -> bool {
        self.0.iter().any(|p| p == project)
    }
}

/// Answer of `GET /api/v1/whoami`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// The caller's role.
    pub role: Role,
}

/// One object in an app's resource tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The object.
    pub subject: ObjectRef,
    /// Its uid, when it exists.
    pub uid: Option<String>,
    /// Its health, computed from the live object.
    pub health: Health,
    /// True for objects ferry applied (inventory), false for owned children.
    pub managed: bool,
    /// True when the object differs from Git (managed objects only).
    pub drifted: bool,
    /// A short status, e.g. `2/2 ready` or `Running`.
    pub info: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: Option<String>,
    /// Objects it owns.
    #[schema(no_recursion)]
    pub children: Vec<Node>,
}

/// Answer of `GET /api/v1/apps/{namespace}/{name}/tree`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tree {
    /// The app, `namespace/name`.
    pub app: String,
    /// Its revision.
    pub revision: String,
    /// The inventory's objects, each with what it owns.
    pub nodes: Vec<Node>,
}

/// One Kubernetes Event about an object of the app.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppEvent {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub kind: String,
    /// CamelCase reason, e.g. `ScalingReplicaSet`.
    pub reason: String,
    /// The message.
    pub message: String,
    /// How many times it happened.
    pub count: i64,
    /// When it last happened (RFC 3339).
    pub time: Option<String>,
    /// The object it is about.
    pub object: ObjectRef,
    /// The component that reported it.
    pub source: Option<String>,
}

/// Answer of `GET /api/v1/apps/{namespace}/{name}/events`: newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Events {
    /// The events.
    pub items: Vec<AppEvent>,
}

/// How a field differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldChange {
    /// Both sides have the field, with different values.
    Changed,
    /// Git sets the field; the cluster does not have it.
    Missing,
    /// The cluster has the field; Git does not set it (a sync removes it).
    Extra,
}

/// Where a [`FieldDrift::time`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum TimeSource {
    /// The manager's `managedFields` entry.
    ManagedFields,
    /// When the agent first saw the app differ from Git (the entry has no time).
    Detected,
}

/// One field that differs between the live object and Git. Field paths only, never
/// values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldDrift {
    /// The field, e.g. `spec.replicas` or `spec.template.spec.containers[name=web].image`.
    pub path: String,
    /// How it differs.
    pub change: FieldChange,
    /// The field manager that last wrote it, e.g. `kubectl`, when known.
    pub manager: Option<String>,
    /// That manager's operation: `Apply` or `Update`.
    pub operation: Option<String>,
    /// The subresource written through, e.g. `scale`, if any.
    pub subresource: Option<String>,
    /// RFC 3339: the manager's last write to the object, or when the drift was detected.
    pub time: Option<String>,
    /// Where `time` comes from.
    pub time_source: Option<TimeSource>,
    /// One line for people, e.g. `spec.replicas changed by kubectl 2 min ago`.
    pub summary: String,
}

/// Desired vs live for one object of the app.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// Unified diff live → desired (dry-run), Secret values masked; empty when in sync.
    pub diff: String,
    /// The desired object as the server would store it (dry-run), masked, as YAML.
    pub desired_yaml: Option<String>,
    /// Fields that differ, with their managers.
    pub drift: Vec<FieldDrift>,
    /// Why no comparison could be made, if so.
    pub error: Option<String>,
}

/// One field manager of an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagerInfo {
    /// The manager, e.g. `kubectl`.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: Option<String>,
    /// The subresource written through, e.g. `scale`.
    pub subresource: Option<String>,
    /// Its last write (RFC 3339).
    pub time: Option<String>,
}

/// Query of `GET /api/v1/apps/{namespace}/{name}/resource`: one object.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ObjectQuery {
    /// API group; empty or absent for the core group.
    #[serde(default)]
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace; absent for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// Answer of `GET /api/v1/apps/{namespace}/{name}/resource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Resource {
    /// The object.
    pub subject: ObjectRef,
    /// In the app's inventory.
    pub managed: bool,
    /// It exists in the cluster.
    pub exists: bool,
    /// Its health.
    pub health: Health,
    /// Live object as YAML: no managedFields, Secret values masked.
    pub yaml: Option<String>,
    /// Its field managers.
    pub managers: Vec<ManagerInfo>,
    /// Desired vs live (managed objects only).
    pub comparison: Option<Comparison>,
}

/// One object of a fresh diff.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiffChange {
    /// The object.
    pub subject: ObjectRef,
    /// What a sync would do.
    pub action: Action,
    /// Unified diff, Secret values masked; empty when unchanged.
    pub diff: String,
    /// Extra explanation, e.g. why an object is kept.
    pub reason: Option<String>,
    /// The fields that differ, for an update.
    pub drift: Vec<FieldDrift>,
}

/// Answer of `GET /api/v1/apps/{namespace}/{name}/diff`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// The app, `namespace/name`.
    pub app: String,
    /// The revision compared with.
    pub revision: String,
    /// Nothing would be written.
    pub in_sync: bool,
    /// Counts per action.
    pub summary: Summary,
    /// Per-object changes.
    pub changes: Vec<DiffChange>,
}
