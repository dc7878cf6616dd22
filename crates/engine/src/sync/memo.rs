//! The in-sync memo: which objects a plan may skip the dry-run of.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

pub use ferry_model::Known;
use ferry_model::{Action, ChangeSet, ObjectRef};
pub(super) use ferry_plan::memo::knowledge;
use serde_json::Value;

/// Objects known to be in sync, by inventory key: while an object's desired manifest and
/// the live values of the fields it sets stay the same, a server-side-apply dry-run would
/// answer the live object again, so a plan skips it. Changes the object's
/// controllers make elsewhere (status, their own annotations) do not matter. Also
/// (in memory only) the resourceVersion of each object's last write by a sync, so that
/// a watch can tell ferry's own writes from drift. Shared by clones.
#[derive(Clone, Debug, Default)]
pub struct InSync {
    known: Arc<Mutex<HashMap<String, Known>>>,
    written: Arc<Mutex<HashMap<String, String>>>,
}

impl InSync {
    /// A memo seeded with what an inventory kept.
    pub fn from_kept(kept: &BTreeMap<String, Known>) -> Self {
        Self {
            known: Arc::new(Mutex::new(
                kept.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            )),
            written: Arc::default(),
        }
    }

    pub(super) fn holds(&self, subject: &ObjectRef, known: Known) -> bool {
        self.known
            .lock()
            .expect("in-sync objects")
            .get(&subject.key())
            == Some(&known)
    }

    /// Remembers the objects `changeset` found unchanged, forgets the others.
    pub(super) fn learn(&self, changeset: &ChangeSet, seen: &HashMap<ObjectRef, Known>) {
        let mut map = self.known.lock().expect("in-sync objects");
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

    /// Remembers an object a sync wrote: what is known of it, if anything, and the
    /// resourceVersion the write produced.
    pub(super) fn remember(&self, subject: &ObjectRef, known: Option<Known>, written: &Value) {
        let key = subject.key();
        let mut map = self.known.lock().expect("in-sync objects");
        match known {
            Some(known) => map.insert(key.clone(), known),
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
            .filter_map(|s| map.get(&s.key()).map(|k| (s.key(), *k)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::{Change, Digest};

    fn change(name: &str, action: Action) -> Change {
        Change {
            subject: ObjectRef::new("v1", "ConfigMap", Some("ns"), name),
            action,
            diff: String::new(),
            reason: None,
        }
    }

    /// A [`Known`] whose digests are `manifest` and `live` repeated.
    fn known(manifest: u8, live: u8) -> Known {
        Known {
            manifest: Digest([manifest; 32]),
            live: Digest([live; 32]),
        }
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
        let seen = HashMap::from([
            (a.subject.clone(), known(1, 10)),
            (b.subject.clone(), known(2, 20)),
        ]);
        memo.learn(&changeset, &seen);
        assert!(memo.holds(&a.subject, known(1, 10)));
        assert!(!memo.holds(&a.subject, known(1, 11)));
        assert!(!memo.holds(&b.subject, known(2, 20)), "not in sync");
        let kept = memo.kept(&[a.subject.clone(), b.subject.clone()]);
        assert_eq!(kept.len(), 1);
        assert!(
            InSync::from_kept(&kept).holds(&a.subject, known(1, 10)),
            "round trip"
        );

        let written = serde_json::json!({"metadata": {"resourceVersion": "7"}});
        memo.remember(&b.subject, Some(known(2, 21)), &written);
        assert!(memo.holds(&b.subject, known(2, 21)), "applied: known");
        assert!(memo.wrote(&b.subject, "7"), "its write is known");
        assert!(!memo.wrote(&b.subject, "8"), "a later version is not");
        assert!(!memo.wrote(&a.subject, "7"), "nor another object");
        memo.remember(&b.subject, None, &written);
        assert!(!memo.holds(&b.subject, known(2, 21)), "written, not known");
        let changeset = ChangeSet {
            changes: vec![change("a", Action::Update)],
            ..changeset
        };
        memo.learn(&changeset, &seen);
        assert!(
            !memo.holds(&a.subject, known(1, 10)),
            "forgotten once it differs"
        );
    }
}
