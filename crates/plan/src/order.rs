//! Apply stages and the fixed kind order, as used by Flux's `ssa` package.
//!
//! Objects are applied by (stage, kind rank, kind, namespace, name, group) and pruned
//! in exactly the reverse order: custom resources go before their definitions,
//! namespaces last.

use std::cmp::Ordering;

use ferry_model::{Manifest, ObjectRef};

/// When an object is applied. All of stage [`Stage::Cluster`] is applied and waited
/// for (CRDs `Established`) before stage [`Stage::Resources`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Stage 1: definitions other objects need: CRDs, Namespaces, ClusterRoles.
    Cluster,
    /// Stage 2: everything else.
    Resources,
}

/// The stage a kind is applied in.
pub fn stage(kind: &str) -> Stage {
    match kind {
        "CustomResourceDefinition" | "Namespace" | "ClusterRole" => Stage::Cluster,
        _ => Stage::Resources,
    }
}

/// Known kinds, in apply order. Unknown kinds follow them.
const KIND_ORDER: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "LimitRange",
    "PriorityClass",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "NetworkPolicy",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "Pod",
    "HorizontalPodAutoscaler",
    "IngressClass",
    "Ingress",
    "APIService",
];

/// Kinds applied after everything else: admission webhooks could reject the rest.
const KIND_ORDER_LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// A kind's position in the apply order: known kinds in their fixed order, then all
/// unknown kinds (one shared rank), then the admission webhook configurations.
pub fn kind_rank(kind: &str) -> usize {
    if let Some(i) = KIND_ORDER.iter().position(|k| *k == kind) {
        i
    } else if let Some(i) = KIND_ORDER_LAST.iter().position(|k| *k == kind) {
        KIND_ORDER.len() + 1 + i
    } else {
        KIND_ORDER.len()
    }
}

/// Apply order of two objects: stage, kind rank, kind, namespace (cluster-scoped
/// first), name, then API group.
pub fn apply_order(a: &ObjectRef, b: &ObjectRef) -> Ordering {
    apply_key(a).cmp(&apply_key(b))
}

fn apply_key(r: &ObjectRef) -> (Stage, usize, &str, Option<&str>, &str, &str) {
    (
        stage(&r.kind),
        kind_rank(&r.kind),
        &r.kind,
        r.namespace.as_deref(),
        &r.name,
        &r.group,
    )
}

/// An [`ObjectRef`] ordered by [`apply_order`], for cached-key sorting.
#[derive(PartialEq, Eq)]
struct ApplyKey(ObjectRef);

impl Ord for ApplyKey {
    fn cmp(&self, other: &Self) -> Ordering {
        apply_order(&self.0, &other.0)
    }
}

impl PartialOrd for ApplyKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Prune order: the exact reverse of [`apply_order`].
pub fn prune_order(a: &ObjectRef, b: &ObjectRef) -> Ordering {
    apply_order(b, a)
}

/// Sorts manifests into apply order.
pub fn sort_for_apply(items: &mut [Manifest]) {
    items.sort_by_cached_key(|m| ApplyKey(m.object_ref()));
}

/// Sorts references into prune order (reverse apply order).
pub fn sort_for_prune(refs: &mut [ObjectRef]) {
    refs.sort_by(prune_order);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Origin;
    use serde_json::json;

    fn manifest(api: &str, kind: &str, ns: Option<&str>, name: &str) -> Manifest {
        let mut obj = json!({"apiVersion": api, "kind": kind, "metadata": {"name": name}});
        if let Some(ns) = ns {
            obj["metadata"]["namespace"] = json!(ns);
        }
        Manifest::new(obj, Origin::default()).unwrap()
    }

    fn names(items: &[Manifest]) -> Vec<String> {
        items.iter().map(|m| m.object_ref().to_string()).collect()
    }

    #[test]
    fn stages() {
        assert_eq!(stage("CustomResourceDefinition"), Stage::Cluster);
        assert_eq!(stage("Namespace"), Stage::Cluster);
        assert_eq!(stage("ClusterRole"), Stage::Cluster);
        assert_eq!(stage("ClusterRoleBinding"), Stage::Resources);
        assert_eq!(stage("Deployment"), Stage::Resources);
        assert!(Stage::Cluster < Stage::Resources);
    }

    #[test]
    fn ranks() {
        assert_eq!(kind_rank("Namespace"), 0);
        assert!(kind_rank("ConfigMap") < kind_rank("Deployment"));
        assert!(kind_rank("Deployment") < kind_rank("Widget"));
        assert_eq!(kind_rank("Widget"), kind_rank("Gadget"));
        assert!(kind_rank("Widget") < kind_rank("MutatingWebhookConfiguration"));
        assert!(
            kind_rank("MutatingWebhookConfiguration") < kind_rank("ValidatingWebhookConfiguration")
        );
    }

    fn mixed() -> Vec<Manifest> {
        vec![
            manifest(
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
                None,
                "hook",
            ),
            manifest("example.com/v1", "Widget", Some("team"), "w"),
            manifest("apps/v1", "Deployment", Some("team"), "web"),
            manifest("v1", "ConfigMap", Some("team"), "b"),
            manifest("v1", "ConfigMap", Some("alpha"), "z"),
            manifest("v1", "ConfigMap", Some("team"), "a"),
            manifest(
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                "crb",
            ),
            manifest("v1", "ServiceAccount", Some("team"), "sa"),
            manifest("rbac.authorization.k8s.io/v1", "ClusterRole", None, "cr"),
            manifest(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                "widgets.example.com",
            ),
            manifest("v1", "Namespace", None, "team"),
        ]
    }

    #[test]
    fn apply_order_stages_then_kinds_then_names() {
        let mut items = mixed();
        sort_for_apply(&mut items);
        assert_eq!(
            names(&items),
            [
                "Namespace/team",
                "CustomResourceDefinition/widgets.example.com",
                "ClusterRole/cr",
                "ServiceAccount/team/sa",
                "ClusterRoleBinding/crb",
                "ConfigMap/alpha/z",
                "ConfigMap/team/a",
                "ConfigMap/team/b",
                "Deployment/team/web",
                "Widget/team/w",
                "ValidatingWebhookConfiguration/hook",
            ]
        );
    }

    #[test]
    fn prune_order_is_reverse_apply_order() {
        let mut items = mixed();
        sort_for_apply(&mut items);
        let mut refs: Vec<ObjectRef> = items.iter().map(Manifest::object_ref).collect();
        refs.reverse();
        let expected = refs.clone();
        refs.sort();
        sort_for_prune(&mut refs);
        assert_eq!(refs, expected);
        assert_eq!(refs.first().unwrap().kind, "ValidatingWebhookConfiguration");
        let widget = refs.iter().position(|r| r.kind == "Widget").unwrap();
        let crd = refs
            .iter()
            .position(|r| r.kind == "CustomResourceDefinition")
            .unwrap();
        assert!(widget < crd, "custom resources are pruned before their CRD");
        assert_eq!(refs.last().unwrap().kind, "Namespace");
    }
}
