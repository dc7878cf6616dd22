//! The in-sync memo: which objects a plan may skip the dry-run of.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

pub use ferry_model::Known;
use ferry_model::{Action, ChangeSet, ObjectRef};
pub(super) use ferry_plan::memo::knowledge;

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

        memo.remember(&b.subject, known(2, 21));
        assert!(memo.holds(&b.subject, known(2, 21)), "applied: known");
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
