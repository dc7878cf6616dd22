use serde::{Deserialize, Serialize};

use crate::{HookRun, ObjectRef, WaveRun};

/// What the engine does (or would do) to one object.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Not in the cluster; will be created.
    Create,
    /// Differs from the cluster; will be patched.
    Update,
    /// Immutable field changed; will be deleted and re-created (`--force`).
    Recreate,
    /// Matches the cluster; nothing written.
    Unchanged,
    /// Left Git; will be deleted.
    Prune,
    /// Left Git but kept (prune off, or `ferry.dev/prune: disabled`).
    Orphan,
}

/// One object's planned or performed change.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct Change {
    /// The object.
    pub subject: ObjectRef,
    /// The action.
    pub action: Action,
    /// Unified diff of live → desired YAML, Secret values masked; empty when unchanged.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub diff: String,
    /// Extra explanation, e.g. why an object is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Counts of actions in a [`ChangeSet`].
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
pub struct Summary {
    /// Objects to create.
    pub create: usize,
    /// Objects to update (including re-creates).
    pub update: usize,
    /// Unchanged objects.
    pub unchanged: usize,
    /// Objects to prune.
    pub prune: usize,
    /// Objects left in place although gone from Git.
    pub orphan: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to create, {} to update, {} to prune, {} unchanged",
            self.create, self.update, self.prune, self.unchanged
        )?;
        if self.orphan > 0 {
            write!(f, ", {} kept", self.orphan)?;
        }
        Ok(())
    }
}

/// The result of planning an app at one revision: what changes, per object.
/// The CLI prints it, the agent stores it, the dashboard shows it.
#[derive(
    Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct ChangeSet {
    /// App name.
    pub app: String,
    /// Git commit SHA the desired state came from.
    pub revision: String,
    /// Per-object changes, in apply order, prunes last.
    pub changes: Vec<Change>,
    /// The sync's hooks: those that would run (a plan) or that ran, in run order. Hooks
    /// are never in `changes`: they do not make an app OutOfSync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRun>,
    /// The waves, when there is more than one: planned, or as applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveRun>,
}

impl ChangeSet {
    /// Counts per action.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.create += 1,
                Action::Update | Action::Recreate => s.update += 1,
                Action::Unchanged => s.unchanged += 1,
                Action::Prune => s.prune += 1,
                Action::Orphan => s.orphan += 1,
            }
        }
        s
    }

    /// True when applying would write or delete nothing.
    pub fn in_sync(&self) -> bool {
        self.changes
            .iter()
            .all(|c| matches!(c.action, Action::Unchanged | Action::Orphan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(action: Action) -> Change {
        Change {
            subject: ObjectRef::new("v1", "ConfigMap", Some("ns"), "a"),
            action,
            diff: String::new(),
            reason: None,
        }
    }

    #[test]
    fn summary_and_sync() {
        let mut cs = ChangeSet {
            app: "a".into(),
            revision: "abc".into(),
            changes: vec![change(Action::Unchanged), change(Action::Orphan)],
            ..Default::default()
        };
        assert!(cs.in_sync());
        cs.changes.push(change(Action::Recreate));
        cs.changes.push(change(Action::Prune));
        assert!(!cs.in_sync());
        let s = cs.summary();
        assert_eq!((s.update, s.prune, s.unchanged, s.orphan), (1, 1, 1, 1));
        assert_eq!(
            s.to_string(),
            "0 to create, 1 to update, 1 to prune, 1 unchanged, 1 kept"
        );
    }

    #[test]
    fn old_changesets_without_hooks_still_read() {
        let cs: ChangeSet =
            serde_json::from_str(r#"{"app":"a","revision":"abc","changes":[]}"#).unwrap();
        assert!(cs.hooks.is_empty() && cs.waves.is_empty());
        let json = serde_json::to_string(&cs).unwrap();
        assert!(!json.contains("hooks") && !json.contains("waves"), "{json}");
    }
}
