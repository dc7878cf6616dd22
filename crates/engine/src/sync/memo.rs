//! The in-sync memo: which objects a plan may skip the dry-run of.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use ferry_model::{Action, ChangeSet, ObjectRef};
use serde_json::Value;

/// What a plan learned of one object: the hash of its desired manifest, and a
/// fingerprint of the live object's fields that manifest sets ([`fingerprint`]).
pub type Known = (u64, u64);

/// Objects known to be in sync, by inventory key: while an object's desired manifest and
/// the live values of the fields it sets stay the same, a server-side-apply dry-run would
/// answer the live object again, so a plan skips it. Changes the object's
/// controllers make elsewhere (status, their own annotations) do not matter. Shared by
/// clones.
#[derive(Clone, Debug, Default)]
pub struct InSync(Arc<Mutex<HashMap<String, Known>>>);

impl InSync {
    /// A memo seeded with what an inventory kept.
    pub fn from_kept(kept: &BTreeMap<String, Known>) -> Self {
        Self(Arc::new(Mutex::new(
            kept.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        )))
    }

    pub(super) fn holds(&self, subject: &ObjectRef, known: Known) -> bool {
        self.0.lock().expect("in-sync objects").get(&subject.key()) == Some(&known)
    }

    /// Remembers the objects `changeset` found unchanged, forgets the others.
    pub(super) fn learn(&self, changeset: &ChangeSet, seen: &HashMap<ObjectRef, Known>) {
        let mut map = self.0.lock().expect("in-sync objects");
        for change in &changeset.changes {
            match seen.get(&change.subject) {
                Some(known) if change.action == Action::Unchanged => {
                    map.insert(change.subject.key(), *known);
                }
                _ => {
                    map.remove(&change.subject.key());
                }
            }
        }
    }

    pub(super) fn remember(&self, subject: &ObjectRef, known: Known) {
        self.0
            .lock()
            .expect("in-sync objects")
            .insert(subject.key(), known);
    }

    /// What is known of `subjects`, to keep in their app's inventory.
    pub(super) fn kept(&self, subjects: &[ObjectRef]) -> BTreeMap<String, Known> {
        let map = self.0.lock().expect("in-sync objects");
        subjects
            .iter()
            .filter_map(|s| map.get(&s.key()).map(|k| (s.key(), *k)))
            .collect()
    }
}

fn hash_of(value: &Value) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

/// The desired manifest's hash and the fingerprint of `live` for it; `None` when `live`
/// lacks a field the manifest sets (a write-only field such as a Secret's `stringData`,
/// or one removed live), so that no memo can vouch for it.
pub(super) fn knowledge(manifest: &Value, live: &Value) -> Option<Known> {
    Some((hash_of(manifest), hash_of(&project(live, manifest)?)))
}

/// `live` cut down to the fields `manifest` sets: maps key by key (a `null` in the
/// manifest sets nothing), lists and scalars whole.
fn project(live: &Value, manifest: &Value) -> Option<Value> {
    match (live, manifest) {
        (Value::Object(l), Value::Object(m)) => {
            let mut out = serde_json::Map::new();
            for (k, mv) in m.iter().filter(|(_, v)| !v.is_null()) {
                out.insert(k.clone(), project(l.get(k)?, mv)?);
            }
            Some(Value::Object(out))
        }
        _ => Some(live.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Change;
    use serde_json::json;

    fn change(name: &str, action: Action) -> Change {
        Change {
            subject: ObjectRef::new("v1", "ConfigMap", Some("ns"), name),
            action,
            diff: String::new(),
            reason: None,
        }
    }

    #[test]
    fn in_sync_holds_while_the_managed_fields_and_manifest_are_unchanged() {
        let manifest = json!({"metadata": {"name": "a", "labels": {"app": "x"}},
                              "spec": {"replicas": 1, "template": {"c": [1]}}});
        let live = json!({"metadata": {"name": "a", "labels": {"app": "x"}, "resourceVersion": "1",
                                       "annotations": {"revision": "1"}},
                          "spec": {"replicas": 1, "template": {"c": [1]}, "strategy": "r"},
                          "status": {"ready": 0}});
        let base = knowledge(&manifest, &live).unwrap();

        let mut later = live.clone();
        later["status"]["ready"] = json!(1);
        later["metadata"]["resourceVersion"] = json!("2");
        later["metadata"]["annotations"]["revision"] = json!("2");
        later["spec"]["strategy"] = json!("other");
        assert_eq!(
            knowledge(&manifest, &later),
            Some(base),
            "fields ferry does not set"
        );

        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(3);
        assert_ne!(
            knowledge(&manifest, &edited),
            Some(base),
            "a field ferry sets"
        );
        let mut removed = live.clone();
        removed["metadata"]["labels"] = json!({});
        assert_eq!(
            knowledge(&manifest, &removed),
            None,
            "a label ferry sets, removed"
        );
        let mut item = live.clone();
        item["spec"]["template"]["c"] = json!([1, 2]);
        assert_ne!(knowledge(&manifest, &item), Some(base), "lists count whole");
        let mut wanted = manifest.clone();
        wanted["spec"]["replicas"] = json!(2);
        assert_ne!(knowledge(&wanted, &live), Some(base), "another manifest");
        let secret = json!({"stringData": {"password": "x"}});
        let live_secret = json!({"data": {"password": "eA=="}});
        assert_eq!(
            knowledge(&secret, &live_secret),
            None,
            "write-only fields: no memo"
        );
        let nulls = json!({"metadata": {"name": "a", "creationTimestamp": null}});
        assert!(knowledge(&nulls, &live).is_some(), "a null sets nothing");
    }

    #[test]
    fn in_sync_learns_unchanged_objects_and_forgets_the_others() {
        let memo = InSync::default();
        let a = change("a", Action::Unchanged);
        let b = change("b", Action::Update);
        let changeset = ChangeSet {
            app: "app".into(),
            revision: "r".into(),
            changes: vec![a.clone(), b.clone()],
        };
        let seen = HashMap::from([(a.subject.clone(), (1, 10)), (b.subject.clone(), (2, 20))]);
        memo.learn(&changeset, &seen);
        assert!(memo.holds(&a.subject, (1, 10)));
        assert!(!memo.holds(&a.subject, (1, 11)));
        assert!(!memo.holds(&b.subject, (2, 20)), "not in sync");
        let kept = memo.kept(&[a.subject.clone(), b.subject.clone()]);
        assert_eq!(kept.len(), 1);
        assert!(
            InSync::from_kept(&kept).holds(&a.subject, (1, 10)),
            "round trip"
        );

        memo.remember(&b.subject, (2, 21));
        assert!(memo.holds(&b.subject, (2, 21)), "applied: known");
        let changeset = ChangeSet {
            changes: vec![change("a", Action::Update)],
            ..changeset
        };
        memo.learn(&changeset, &seen);
        assert!(
            !memo.holds(&a.subject, (1, 10)),
            "forgotten once it differs"
        );
    }
}
