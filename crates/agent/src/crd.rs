//! The `Application` custom resource (`ferry.dev/v1alpha1`): an app defined in the
//! cluster instead of a `ferry.yaml`. Its spec is exactly [`AppSpec`]; the agent writes
//! its status subresource and records Kubernetes Events on it. The cluster-scoped
//! `Project` resource bounds the apps that name it; its spec is exactly [`ProjectSpec`].

use ferry_model::{AppSpec, ObjectRef, ProjectSpec, SYSTEM_NAMESPACE};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::state::{AppStatus, Condition};

/// The spec of an `Application`: the same schema as an entry of `ferry.yaml`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Application",
    namespaced,
    status = "ApplicationStatus",
    shortname = "fapp",
    printcolumn = r#"{"name":"Sync","type":"string","jsonPath":".status.sync"}"#,
    printcolumn = r#"{"name":"Health","type":"string","jsonPath":".status.health"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct ApplicationSpec {
    /// The app definition.
    #[serde(flatten)]
    pub app: AppSpec,
}

/// The spec of a `Project`: the same schema as an entry of `ferry.yaml`'s `projects`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Project",
    shortname = "fproj",
    printcolumn = r#"{"name":"ServiceAccount","type":"string","jsonPath":".spec.serviceAccount"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct ProjectResourceSpec {
    /// The project definition.
    #[serde(flatten)]
    pub project: ProjectSpec,
}

/// A condition as stored in the status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCondition {
    /// Ready, Reconciling or Stalled.
    #[serde(rename = "type")]
    pub kind: String,
    /// True or False.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Detail.
    #[serde(default)]
    pub message: String,
}

/// The status the agent writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    /// Ready / Reconciling / Stalled.
    #[serde(default)]
    pub conditions: Vec<StatusCondition>,
    /// Synced, OutOfSync or Unknown.
    #[serde(default)]
    pub sync: String,
    /// Aggregated health.
    #[serde(default)]
    pub health: String,
    /// Last applied commit SHA.
    #[serde(default)]
    pub last_applied_revision: String,
    /// Its commit message.
    #[serde(default)]
    pub last_applied_message: String,
    /// Objects in the inventory.
    #[serde(default)]
    pub inventory_size: usize,
    /// RFC 3339 time of the last sync that wrote something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// Duration of the last reconcile in ms.
    #[serde(default)]
    pub last_sync_duration_ms: u64,
    /// Objects that differ from Git.
    #[serde(default)]
    pub drifted: Vec<ObjectRef>,
}

impl From<&AppStatus> for ApplicationStatus {
    fn from(s: &AppStatus) -> Self {
        let cond = |c: &Condition| StatusCondition {
            kind: c.kind.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        };
        Self {
            conditions: s.conditions.iter().map(cond).collect(),
            sync: s.sync.to_string(),
            health: s.health.to_string(),
            last_applied_revision: s.revision.clone(),
            last_applied_message: s.message.clone(),
            inventory_size: s.inventory,
            last_sync_time: s.last_sync_at.and_then(rfc3339),
            last_sync_duration_ms: s.last_duration_ms,
            drifted: s.drifted.clone(),
        }
    }
}

fn rfc3339(ms: i64) -> Option<String> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).ok()?);
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

/// What `ferry install` deploys: the CRDs, a namespace, a ServiceAccount with RBAC, a
/// Deployment running `ferry agent` for Application resources with leader election,
/// and a Service for its API and webhooks.
///
/// The RBAC is that of an agent applying every app as its project's service account:
/// impersonate service accounts; read its CRDs and write their status; ConfigMaps in
/// `ferry-system` (inventories, kept settings); Leases in `namespace`; Events; and get,
/// list and watch of every kind (the drift watches and the dashboard read what the apps
/// deploy). With `cluster_admin` it may do anything, as earlier versions could, which
/// apps in projects without a service account need.
pub fn install_manifests(
    namespace: &str,
    image: &str,
    cluster_admin: bool,
) -> Vec<serde_json::Value> {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(Application::crd()).expect("the CRD serialises");
    let projects = serde_json::to_value(Project::crd()).expect("the CRD serialises");
    let labels = serde_json::json!({"app.kubernetes.io/name": "ferry-agent"});
    let subjects = serde_json::json!([{"kind": "ServiceAccount", "name": "ferry-agent", "namespace": namespace}]);
    let rules = if cluster_admin {
        serde_json::json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
    } else {
        serde_json::json!([
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
            {"apiGroups": ["ferry.dev"], "resources": ["applications", "projects"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["ferry.dev"], "resources": ["applications/status"],
             "verbs": ["get", "patch", "update"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
             "verbs": ["create", "patch", "update"]},
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
        ])
    };
    let role = |name: &str, ns: &str, rules: serde_json::Value| {
        [
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": ns}, "rules": rules}),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": subjects}),
        ]
    };
    let mut out = vec![
        crd,
        projects,
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
    ];
    if namespace != SYSTEM_NAMESPACE {
        out.push(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": SYSTEM_NAMESPACE}}));
    }
    out.extend([
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "ferry-agent", "namespace": namespace}}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "ferry-agent"}, "rules": rules}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "ferry-agent"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ferry-agent"},
            "subjects": subjects}),
    ]);
    if !cluster_admin {
        out.extend(role(
            "ferry-agent-records",
            SYSTEM_NAMESPACE,
            serde_json::json!([{"apiGroups": [""], "resources": ["configmaps"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]),
        ));
        out.extend(role(
            "ferry-agent-lease",
            namespace,
            serde_json::json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                "verbs": ["get", "list", "watch", "create", "update", "patch"]}]),
        ));
    }
    out.extend([
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "ferry-agent", "namespace": namespace, "labels": labels},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {
                    "serviceAccountName": "ferry-agent",
                    "containers": [{"name": "agent", "image": image,
                        "args": ["agent", "--applications", "all", "--listen", "0.0.0.0:8080",
                                 "--leader-elect-namespace", namespace, "--log-json"],
                        "env": [{"name": "FERRY_WEBHOOK_SECRET", "valueFrom": {"secretKeyRef":
                            {"name": "ferry-webhook", "key": "secret", "optional": true}}},
                            // API tokens, `role:token,…`: without them the agent refuses
                            // to listen beyond localhost.
                            {"name": "FERRY_TOKENS", "valueFrom": {"secretKeyRef":
                            {"name": "ferry-api-tokens", "key": "tokens", "optional": true}}}],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                      "limits": {"memory": "256Mi"}}}]}}}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "ferry-agent", "namespace": namespace, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    ]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_schema_has_the_app_spec_fields() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(Application::crd()).unwrap();
        assert_eq!(crd["metadata"]["name"], "applications.ferry.dev");
        let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"];
        for field in [
            "source",
            "destination",
            "prune",
            "wait",
            "selfHeal",
            "suspend",
            "dependsOn",
            "allowEmpty",
        ] {
            assert!(props.get(field).is_some(), "missing {field} in {props}");
        }
        assert!(props["source"]["properties"].get("jsonnet").is_some());
        assert!(crd["spec"]["versions"][0]["subresources"]["status"].is_object());
        let all = install_manifests("ferry-system", "ferry:test", true);
        let kinds: Vec<&str> = all.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "CustomResourceDefinition",
                "CustomResourceDefinition",
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment",
                "Service"
            ]
        );
        assert_eq!(all[4]["rules"][0]["verbs"], serde_json::json!(["*"]));
    }

    #[test]
    fn the_project_crd_is_cluster_scoped_with_the_project_fields() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(Project::crd()).unwrap();
        assert_eq!(crd["metadata"]["name"], "projects.ferry.dev");
        assert_eq!(crd["spec"]["scope"], "Cluster");
        let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"];
        for field in [
            "sourceRepos",
            "destinations",
            "clusterResources",
            "namespacedResourceDenylist",
            "serviceAccount",
            "sourceNamespaces",
            "repoCredentials",
        ] {
            assert!(props.get(field).is_some(), "missing {field} in {props}");
        }
    }

    #[test]
    fn the_default_install_impersonates_instead_of_being_cluster_admin() {
        let all = install_manifests("ops", "ferry:test", false);
        let role = all.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
        let rules = role["rules"].as_array().unwrap();
        assert!(
            rules
                .iter()
                .any(|r| r["verbs"] == serde_json::json!(["impersonate"])
                    && r["resources"] == serde_json::json!(["serviceaccounts"]))
        );
        for rule in rules {
            let verbs = rule["verbs"].as_array().unwrap();
            assert!(!verbs.contains(&serde_json::json!("*")), "{rule}");
            if rule["resources"] == serde_json::json!(["*"]) {
                assert_eq!(rule["verbs"], serde_json::json!(["get", "list", "watch"]));
            }
        }
        let roles: Vec<(&str, &str)> = all
            .iter()
            .filter(|o| o["kind"] == "Role")
            .map(|o| {
                (
                    o["metadata"]["namespace"].as_str().unwrap(),
                    o["rules"][0]["resources"][0].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(roles, [("ferry-system", "configmaps"), ("ops", "leases")]);
        assert!(
            all.iter()
                .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == "ferry-system")
        );
    }
}
