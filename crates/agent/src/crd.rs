//! The `Application` custom resource (`ferry.dev/v1alpha1`): an app defined in the
//! cluster instead of a `ferry.yaml`. Its spec is exactly [`AppSpec`]; the agent writes
//! its status subresource and records Kubernetes Events on it.

use ferry_model::{AppSpec, ObjectRef};
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

/// What `ferry install` deploys: the CRD, a namespace, a ServiceAccount with RBAC, a
/// Deployment running `ferry agent` for Application resources with leader election,
/// and a Service for its API and webhooks.
pub fn install_manifests(namespace: &str, image: &str) -> Vec<serde_json::Value> {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(Application::crd()).expect("the CRD serialises");
    let labels = serde_json::json!({"app.kubernetes.io/name": "ferry-agent"});
    vec![
        crd,
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "ferry-agent", "namespace": namespace}}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "ferry-agent"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "ferry-agent"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ferry-agent"},
            "subjects": [{"kind": "ServiceAccount", "name": "ferry-agent", "namespace": namespace}]}),
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
    ]
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
        let all = install_manifests("ferry-system", "ferry:test");
        let kinds: Vec<&str> = all.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "CustomResourceDefinition",
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment",
                "Service"
            ]
        );
    }
}
