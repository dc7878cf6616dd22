//! The in-sync memo: which objects a plan may skip the dry-run of.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

pub use ferry_model::Known;
use ferry_model::{Action, ChangeSet, Manifest, ObjectRef};
pub(super) use ferry_plan::memo::knowledge;
use serde_json::Value;

/// Objects known to be in sync, by inventory key: while an object's desired manifest and
/// the live values of the fields it sets stay the same, a server-side-apply dry-run would
/// answer the live object again, so a plan skips it. Changes the object's
/// controllers make elsewhere (status, their own annotations) do not matter. Also
/// (in memory only) the resourceVersion of each object's last write by a sync and the
/// manifest an object was found in sync with, so that a watch can tell ferry's own
/// writes and its controllers' changes from drift ([`InSync::wrote`],
/// [`InSync::vouches_for`]). Shared by clones.
#[derive(Clone, Debug, Default)]
pub struct InSync {
    known: Arc<Mutex<HashMap<String, Entry>>>,
    written: Arc<Mutex<HashMap<String, String>>>,
}

/// What the memo knows of one object, and the manifest (compact JSON) it learned that
/// with; `None` for what an inventory kept.
#[derive(Clone, Debug)]
struct Entry {
    known: Known,
    manifest: Option<Arc<str>>,
}

impl Entry {
    fn new(known: Known, manifest: &Value) -> Self {
        Self {
            known,
            manifest: Some(manifest.to_string().into()),
        }
    }
}

impl InSync {
    /// A memo seeded with what an inventory kept.
    pub fn from_kept(kept: &BTreeMap<String, Known>) -> Self {
        let entries = kept.iter().map(|(k, v)| {
            let entry = Entry {
                known: *v,
                manifest: None,
            };
            (k.clone(), entry)
        });
        Self {
            known: Arc::new(Mutex::new(entries.collect())),
            written: Arc::default(),
        }
    }

    pub(super) fn holds(&self, subject: &ObjectRef, known: Known) -> bool {
        self.known
            .lock()
            .expect("in-sync objects")
            .get(&subject.key())
            .is_some_and(|e| e.known == known)
    }

    /// Remembers the objects `changeset` found unchanged (with their `manifests`),
    /// forgets the others.
    pub(super) fn learn(
        &self,
        changeset: &ChangeSet,
        seen: &HashMap<ObjectRef, Known>,
        manifests: &HashMap<ObjectRef, Manifest>,
    ) {
        let mut map = self.known.lock().expect("in-sync objects");
        for change in &changeset.changes {
            let key = change.subject.key();
            match (seen.get(&change.subject), manifests.get(&change.subject)) {
                (Some(known), Some(m)) if change.action == Action::Unchanged => {
                    map.insert(key, Entry::new(*known, &m.object));
                }
                _ => {
                    map.remove(&key);
                }
            }
        }
    }

    /// Remembers an object a sync wrote from `manifest`: what is known of it, if
    /// anything, and the resourceVersion the write produced.
    pub(super) fn remember(&self, subject: &ObjectRef, manifest: &Value, written: &Value) {
        let key = subject.key();
        let mut map = self.known.lock().expect("in-sync objects");
        match knowledge(manifest, written) {
            Some(known) => map.insert(key.clone(), Entry::new(known, manifest)),
            None => map.remove(&key),
        };
        drop(map);
        if let Some(version) = written
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            (self.written.lock().expect("written objects")).insert(key, version.to_string());
        }
    }

    /// Whether a plan would find `live` unchanged without a dry-run: the memo knows its
    /// object in sync with a manifest, and the live values of the fields that manifest
    /// sets are still as they were then (a controller changed only its status or fields
    /// ferry does not set, such as a Deployment's revision annotation).
    pub fn vouches_for(&self, live: &Value) -> bool {
        let key = ferry_kube::object_ref(live).key();
        let entry = (self.known.lock().expect("in-sync objects"))
            .get(&key)
            .cloned();
        let Some(Entry {
            known,
            manifest: Some(manifest),
        }) = entry
        else {
            return false;
        };
        serde_json::from_str::<Value>(&manifest)
            .is_ok_and(|manifest| knowledge(&manifest, live) == Some(known))
    }

    /// Whether `subject` at `resource_version` is an object as a sync wrote it (a watch
    /// event of ferry's own write, not drift).
    pub fn wrote(&self, subject: &ObjectRef, resource_version: &str) -> bool {
        (self.written.lock().expect("written objects"))
            .get(&subject.key())
            .is_some_and(|v| v == resource_version)
    }

    /// What is known of `subjects`, to keep in their app's inventory.
    pub(super) fn kept(&self, subjects: &[ObjectRef]) -> BTreeMap<String, Known> {
        let map = self.known.lock().expect("in-sync objects");
        subjects
            .iter()
            .filter_map(|s| map.get(&s.key()).map(|e| (s.key(), e.known)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::{Change, Origin};
    use serde_json::json;

    fn change(name: &str, action: Action) -> Change {
        Change {
            subject: ObjectRef::new("v1", "ConfigMap", Some("ns"), name),
            action,
            diff: String::new(),
            reason: None,
        }
    }

    /// A ConfigMap `name` in `ns` with `data.k = value`.
    fn config_map(name: &str, value: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": "ns"}, "data": {"k": value}})
    }

    fn manifests(objects: &[&Value]) -> HashMap<ObjectRef, Manifest> {
        (objects.iter())
            .map(|o| {
                let m = Manifest::new((*o).clone(), Origin::default()).unwrap();
                (m.object_ref(), m)
            })
            .collect()
    }

    fn known(manifest: &Value, live: &Value) -> Known {
        knowledge(manifest, live).unwrap()
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
            ..Default::default()
        };
        let (a_manifest, b_manifest) = (config_map("a", "1"), config_map("b", "2"));
        let a_live = a_manifest.clone();
        let b_live = config_map("b", "old");
        let seen = HashMap::from([
            (a.subject.clone(), known(&a_manifest, &a_live)),
            (b.subject.clone(), known(&b_manifest, &b_live)),
        ]);
        let desired = manifests(&[&a_manifest, &b_manifest]);
        memo.learn(&changeset, &seen, &desired);
        assert!(memo.holds(&a.subject, known(&a_manifest, &a_live)));
        assert!(!memo.holds(&a.subject, known(&a_manifest, &config_map("a", "x"))));
        assert!(
            !memo.holds(&b.subject, known(&b_manifest, &b_live)),
            "not in sync"
        );
        let kept = memo.kept(&[a.subject.clone(), b.subject.clone()]);
        assert_eq!(kept.len(), 1);
        assert!(
            InSync::from_kept(&kept).holds(&a.subject, known(&a_manifest, &a_live)),
            "round trip"
        );

        let mut written = b_manifest.clone();
        written["metadata"]["resourceVersion"] = json!("7");
        memo.remember(&b.subject, &b_manifest, &written);
        assert!(
            memo.holds(&b.subject, known(&b_manifest, &written)),
            "applied: known"
        );
        assert!(memo.wrote(&b.subject, "7"), "its write is known");
        assert!(!memo.wrote(&b.subject, "8"), "a later version is not");
        assert!(!memo.wrote(&a.subject, "7"), "nor another object");
        let secret = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "b", "namespace": "ns"},
                            "stringData": {"k": "v"}});
        memo.remember(&b.subject, &secret, &written);
        assert!(
            !memo.holds(&b.subject, known(&b_manifest, &written)),
            "written, not known"
        );
        let changeset = ChangeSet {
            changes: vec![change("a", Action::Update)],
            ..changeset
        };
        memo.learn(&changeset, &seen, &desired);
        assert!(
            !memo.holds(&a.subject, known(&a_manifest, &a_live)),
            "forgotten once it differs"
        );
    }

    /// A watch event of a Deployment its controller annotated and gave a status (an
    /// UpdateStatus call) is vouched for; an edit of a field the manifest sets, the
    /// removal of a label it sets, another object or one known only from an inventory is
    /// not.
    #[test]
    fn the_memo_vouches_for_controller_changes_not_for_drift() {
        let manifest = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "labels": {"ferry.dev/app": "a"}},
            "spec": {"replicas": 0, "template": {"spec": {"containers": [{"name": "c"}]}}}});
        let mut applied = manifest.clone();
        applied["metadata"]["resourceVersion"] = json!("10");
        applied["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        let memo = InSync::default();
        let subject = ferry_kube::object_ref(&manifest);
        memo.remember(&subject, &manifest, &applied);
        assert!(memo.vouches_for(&applied), "as written");

        let mut progressed = applied.clone();
        progressed["metadata"]["resourceVersion"] = json!("11");
        progressed["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
        progressed["status"] = json!({"observedGeneration": 1});
        assert!(memo.vouches_for(&progressed), "the controller's changes");

        let mut scaled = progressed.clone();
        scaled["spec"]["replicas"] = json!(3);
        assert!(!memo.vouches_for(&scaled), "a field the manifest sets");
        let mut unlabelled = progressed.clone();
        unlabelled["metadata"]["labels"] = json!({});
        assert!(!memo.vouches_for(&unlabelled), "a label it sets, removed");
        let mut other = progressed.clone();
        other["metadata"]["name"] = json!("api");
        assert!(!memo.vouches_for(&other), "another object");

        let kept = InSync::from_kept(&memo.kept(&[subject]));
        assert!(
            !kept.vouches_for(&progressed),
            "no manifest from an inventory"
        );
    }
}
