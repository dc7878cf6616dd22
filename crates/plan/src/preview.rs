//! Offline preview: what moving from one revision to another changes, without a cluster.

use std::collections::BTreeMap;

use ferry_model::{Action, Change, ChangeSet, Manifest, ObjectRef};

use crate::diff::{normalize, unified};
use crate::order::{apply_order, prune_order};

/// Kinds that are cluster-scoped in every Kubernetes version; offline (without
/// discovery) every other kind is treated as namespaced.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "CSIDriver",
    "VolumeAttachment",
];

/// Gives objects without a namespace the app's destination namespace, as applying
/// would, except for kinds known to be cluster-scoped.
pub fn default_namespace(manifests: &mut [Manifest], namespace: &str) {
    for m in manifests {
        if m.namespace().is_none() && !CLUSTER_SCOPED.contains(&m.kind()) {
            m.set_namespace(namespace);
        }
    }
}

/// Compares the manifests of `base` (e.g. the target branch) with `head` (e.g. a pull
/// request): objects only in head are Create, only in base Prune, different Update.
pub fn compare(app: &str, revision: &str, base: &[Manifest], head: &[Manifest]) -> ChangeSet {
    let index = |ms: &[Manifest]| -> BTreeMap<ObjectRef, serde_json::Value> {
        ms.iter()
            .map(|m| (m.object_ref(), m.object.clone()))
            .collect()
    };
    let (base, head) = (index(base), index(head));
    let mut applies = Vec::new();
    for (subject, new) in &head {
        let old = base.get(subject);
        let action = match old {
            None => Action::Create,
            Some(old) if normalize(old) == normalize(new) => Action::Unchanged,
            Some(_) => Action::Update,
        };
        let diff = match action {
            Action::Unchanged => String::new(),
            _ => unified(subject, old, Some(new)),
        };
        applies.push(change(subject, action, diff));
    }
    applies.sort_by(|a, b| apply_order(&a.subject, &b.subject));
    let mut prunes: Vec<Change> = base
        .iter()
        .filter(|(s, _)| !head.contains_key(s))
        .map(|(s, old)| change(s, Action::Prune, unified(s, Some(old), None)))
        .collect();
    prunes.sort_by(|a, b| prune_order(&a.subject, &b.subject));
    applies.extend(prunes);
    ChangeSet {
        app: app.into(),
        revision: revision.into(),
        changes: applies,
        ..Default::default()
    }
}

fn change(subject: &ObjectRef, action: Action, diff: String) -> Change {
    Change {
        subject: subject.clone(),
        action,
        diff,
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Origin;
    use serde_json::json;

    fn cm(name: &str, value: &str) -> Manifest {
        Manifest::new(
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":"ns"},"data":{"k":value}}),
            Origin::default(),
        )
        .unwrap()
    }

    #[test]
    fn namespace_defaults_skip_cluster_scoped_kinds() {
        let mut ms = vec![
            Manifest::new(
                json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}),
                Origin::default(),
            )
            .unwrap(),
            Manifest::new(
                json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n"}}),
                Origin::default(),
            )
            .unwrap(),
        ];
        default_namespace(&mut ms, "web");
        assert_eq!(ms[0].namespace(), Some("web"));
        assert_eq!(ms[1].namespace(), None);
    }

    #[test]
    fn create_update_prune_unchanged() {
        let base = [cm("same", "1"), cm("changed", "1"), cm("removed", "1")];
        let head = [cm("same", "1"), cm("changed", "2"), cm("added", "1")];
        let cs = compare("app", "abc", &base, &head);
        let got: Vec<(String, Action)> = cs
            .changes
            .iter()
            .map(|c| (c.subject.name.clone(), c.action))
            .collect();
        assert_eq!(
            got,
            vec![
                ("added".into(), Action::Create),
                ("changed".into(), Action::Update),
                ("same".into(), Action::Unchanged),
                ("removed".into(), Action::Prune),
            ]
        );
        let update = &cs.changes[1];
        assert!(
            update.diff.contains("-  k: '1'") || update.diff.contains("-  k: \"1\""),
            "{}",
            update.diff
        );
        assert!(cs.changes[2].diff.is_empty());
    }
}
