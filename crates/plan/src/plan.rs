//! Pure planning: desired, live and dry-run objects in, a [`ChangeSet`] out.
//!
//! The caller fetches, for every desired object, its live copy and the result of a
//! server-side-apply dry-run, and for every inventory entry that is no longer desired
//! its live copy. [`plan`] decides per object what syncing would do and why.

use std::collections::HashSet;

use ferry_model::{APP_LABEL, Action, Change, ChangeSet, Manifest, ObjectRef, PRUNE_ANNOTATION};
use serde_json::Value;

use crate::diff::{normalize, unified};
use crate::order::{apply_order, prune_order};

/// One desired object with what the cluster says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The rendered manifest, as it will be applied.
    pub manifest: Manifest,
    /// The live object; `None` when it does not exist.
    pub live: Option<Value>,
    /// The object as it would be after a server-side apply (dry-run); `None` when
    /// the dry-run was not possible, e.g. its CRD does not exist yet.
    pub dry_run: Option<Value>,
}

/// An inventory entry that is no longer desired.
#[derive(Clone, Debug, PartialEq)]
pub struct Leftover {
    /// The object.
    pub subject: ObjectRef,
    /// The live object; `None` when it is already gone.
    pub live: Option<Value>,
}

/// Everything [`plan`] needs.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    /// App name; objects labelled [`APP_LABEL`] with this value belong to it.
    pub app: &'a str,
    /// Git commit SHA of the desired state.
    pub revision: &'a str,
    /// Desired objects.
    pub desired: Vec<Desired>,
    /// Objects in the previous inventory that are no longer desired.
    pub leftovers: Vec<Leftover>,
    /// Whether the app prunes objects that left Git.
    pub prune: bool,
}

/// Why a plan cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A desired object already exists and is labelled as owned by another app.
    #[error("{subject} is already managed by app {owner:?}; two apps cannot own one object")]
    OwnedByOtherApp {
        /// The object (boxed to keep `Result`s small).
        subject: Box<ObjectRef>,
        /// The app named by its [`APP_LABEL`].
        owner: String,
    },
}

/// Reason given for an object adopted from the cluster (it exists without ferry's label).
pub const REASON_ADOPT: &str =
    "exists in the cluster without the ferry.dev/app label; will be adopted";
/// Reason given when the dry-run was impossible and the diff was computed locally.
pub const REASON_NO_DRY_RUN: &str =
    "server-side dry-run unavailable; change computed from the manifest";
/// Reason given for every leftover when the app does not prune.
pub const REASON_PRUNE_DISABLED: &str = "prune disabled for app";
/// Reason given for a leftover protected by the [`PRUNE_ANNOTATION`].
pub const REASON_PRUNE_ANNOTATION: &str = "annotated ferry.dev/prune: disabled";
/// Reason given for a leftover that lacks the [`APP_LABEL`].
pub const REASON_NOT_LABELLED: &str = "not labelled as owned by this app";

/// Plans one app: per desired object Create, Update or Unchanged; per leftover
/// Prune or Orphan (leftovers already gone are dropped).
///
/// - No live object → Create, diffed against nothing (the manifest as written).
/// - Dry-run result equal to the live object after [`normalize`] → Unchanged;
///   otherwise Update with a diff of live → dry-run.
/// - No dry-run result but a live object → the manifest is overlaid on the live
///   object (maps merged, lists of equal length merged item by item, `null`
///   removing a field); equal → Unchanged, else Update with [`REASON_NO_DRY_RUN`].
/// - A live object labelled as owned by another app → [`PlanError::OwnedByOtherApp`].
/// - Leftovers, in this order: gone → dropped; prune off → Orphan; annotated
///   `ferry.dev/prune: disabled` → Orphan; labelled for another app or unlabelled →
///   Orphan; otherwise Prune, with a diff of live → nothing.
///
/// Changes come in apply order, then leftovers in prune order.
pub fn plan(input: PlanInput<'_>) -> Result<ChangeSet, PlanError> {
    let PlanInput {
        app,
        revision,
        desired,
        leftovers,
        prune,
    } = input;
    let mut applies = Vec::with_capacity(desired.len());
    let mut wanted = HashSet::with_capacity(desired.len());
    for d in &desired {
        let subject = d.manifest.object_ref();
        wanted.insert(subject.clone());
        applies.push(plan_desired(app, subject, d)?);
    }
    applies.sort_by(|a, b| apply_order(&a.subject, &b.subject));

    let mut removals = Vec::new();
    for Leftover { subject, live } in leftovers {
        let Some(live) = live else { continue };
        if !wanted.insert(subject.clone()) {
            // Still desired, or listed twice.
            continue;
        }
        removals.push(plan_leftover(app, prune, subject, &live));
    }
    removals.sort_by(|a, b| prune_order(&a.subject, &b.subject));

    applies.extend(removals);
    Ok(ChangeSet {
        app: app.to_string(),
        revision: revision.to_string(),
        changes: applies,
        ..Default::default()
    })
}

/// The app named by an object's [`APP_LABEL`].
fn owner(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(APP_LABEL))
        .and_then(Value::as_str)
}

fn plan_desired(app: &str, subject: ObjectRef, d: &Desired) -> Result<Change, PlanError> {
    let Some(live) = &d.live else {
        return Ok(Change {
            diff: unified(&subject, None, Some(&d.manifest.object)),
            subject,
            action: Action::Create,
            reason: None,
        });
    };
    let mut reason = match owner(live) {
        Some(o) if o != app => {
            return Err(PlanError::OwnedByOtherApp {
                subject: Box::new(subject),
                owner: o.to_string(),
            });
        }
        Some(_) => None,
        None => Some(REASON_ADOPT.to_string()),
    };
    let before = normalize(live);
    let after = match &d.dry_run {
        Some(dry_run) => normalize(dry_run),
        None => {
            reason.get_or_insert_with(|| REASON_NO_DRY_RUN.to_string());
            overlay(&before, &normalize(&d.manifest.object))
        }
    };
    if before == after {
        return Ok(Change {
            subject,
            action: Action::Unchanged,
            diff: String::new(),
            reason: None,
        });
    }
    Ok(Change {
        diff: unified(&subject, Some(live), Some(&after)),
        subject,
        action: Action::Update,
        reason,
    })
}

/// `desired` laid over `base`: maps merge key by key, lists of the same length merge
/// item by item, other values replace, and `null` removes the field. An approximation
/// of server-side apply for when no dry-run result is available.
fn overlay(base: &Value, desired: &Value) -> Value {
    match (base, desired) {
        (Value::Object(b), Value::Object(d)) => {
            let mut out = b.clone();
            for (key, value) in d {
                if value.is_null() {
                    out.remove(key);
                } else {
                    let merged = match b.get(key) {
                        Some(old) => overlay(old, value),
                        None => value.clone(),
                    };
                    out.insert(key.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (Value::Array(b), Value::Array(d)) if b.len() == d.len() => {
            Value::Array(b.iter().zip(d).map(|(b, d)| overlay(b, d)).collect())
        }
        _ => desired.clone(),
    }
}

fn plan_leftover(app: &str, prune: bool, subject: ObjectRef, live: &Value) -> Change {
    let protected = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(PRUNE_ANNOTATION))
        .and_then(Value::as_str)
        == Some("disabled");
    let keep = if !prune {
        Some(REASON_PRUNE_DISABLED.to_string())
    } else if protected {
        Some(REASON_PRUNE_ANNOTATION.to_string())
    } else {
        match owner(live) {
            Some(o) if o == app => None,
            Some(o) => Some(format!("owned by app {o:?}")),
            None => Some(REASON_NOT_LABELLED.to_string()),
        }
    };
    match keep {
        Some(reason) => Change {
            subject,
            action: Action::Orphan,
            diff: String::new(),
            reason: Some(reason),
        },
        None => Change {
            diff: unified(&subject, Some(live), None),
            subject,
            action: Action::Prune,
            reason: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Origin;
    use serde_json::json;

    const APP: &str = "web";

    fn obj(kind: &str, name: &str, data: &str, owner: Option<&str>) -> Value {
        let api = match kind {
            "Deployment" => "apps/v1",
            "CustomResourceDefinition" => "apiextensions.k8s.io/v1",
            "Widget" => "example.com/v1",
            _ => "v1",
        };
        let mut o = json!({"apiVersion": api, "kind": kind,
                           "metadata": {"name": name, "namespace": "ns"}, "data": {"k": data}});
        if kind == "CustomResourceDefinition" || kind == "Namespace" {
            o["metadata"].as_object_mut().unwrap().remove("namespace");
        }
        if let Some(owner) = owner {
            o["metadata"]["labels"] = json!({APP_LABEL: owner});
        }
        o
    }

    /// What the API server returns: the object plus server fields.
    fn served(mut o: Value) -> Value {
        o["metadata"]["uid"] = json!("u-1");
        o["metadata"]["resourceVersion"] = json!("7");
        o["metadata"]["managedFields"] = json!([{"manager": "ferry"}]);
        o["status"] = json!({});
        o
    }

    fn desired(o: Value, live: Option<Value>, dry_run: Option<Value>) -> Desired {
        Desired {
            manifest: Manifest::new(o, Origin::default()).unwrap(),
            live,
            dry_run,
        }
    }

    fn run(desired: Vec<Desired>, leftovers: Vec<Leftover>, prune: bool) -> ChangeSet {
        plan(PlanInput {
            app: APP,
            revision: "abc123",
            desired,
            leftovers,
            prune,
        })
        .unwrap()
    }

    fn leftover(kind: &str, name: &str, live: Option<Value>) -> Leftover {
        let api = if kind == "Deployment" {
            "apps/v1"
        } else {
            "v1"
        };
        let ns = (kind != "Namespace").then_some("ns");
        Leftover {
            subject: ObjectRef::new(api, kind, ns, name),
            live,
        }
    }

    #[test]
    fn missing_object_is_created() {
        let cs = run(
            vec![desired(obj("ConfigMap", "a", "1", Some(APP)), None, None)],
            vec![],
            true,
        );
        assert_eq!(cs.app, APP);
        assert_eq!(cs.revision, "abc123");
        let c = &cs.changes[0];
        assert_eq!(c.action, Action::Create);
        assert!(c.diff.contains("+  k: \"1\""), "{}", c.diff);
        assert!(
            c.diff.lines().skip(3).all(|l| l.starts_with('+')),
            "{}",
            c.diff
        );
        assert_eq!(c.reason, None);
    }

    #[test]
    fn dry_run_equal_to_live_is_unchanged() {
        let o = obj("ConfigMap", "a", "1", Some(APP));
        let mut dry_run = served(o.clone());
        // The dry-run bumps managedFields timestamps; that is not a change.
        dry_run["metadata"]["managedFields"] = json!([{"manager": "ferry", "time": "later"}]);
        let cs = run(
            vec![desired(o.clone(), Some(served(o)), Some(dry_run))],
            vec![],
            true,
        );
        let c = &cs.changes[0];
        assert_eq!(
            (c.action, c.diff.as_str(), &c.reason),
            (Action::Unchanged, "", &None)
        );
        assert!(cs.in_sync());
    }

    #[test]
    fn dry_run_different_from_live_is_an_update() {
        let live = served(obj("ConfigMap", "a", "old", Some(APP)));
        let new = obj("ConfigMap", "a", "new", Some(APP));
        let cs = run(
            vec![desired(new.clone(), Some(live), Some(served(new)))],
            vec![],
            true,
        );
        let c = &cs.changes[0];
        assert_eq!(c.action, Action::Update);
        assert!(c.diff.contains("-  k: old\n+  k: new\n"), "{}", c.diff);
        assert!(!c.diff.contains("resourceVersion"), "{}", c.diff);
        assert_eq!(c.reason, None);
    }

    #[test]
    fn unlabelled_live_object_is_adopted() {
        let live = served(obj("ConfigMap", "a", "1", None));
        let new = obj("ConfigMap", "a", "1", Some(APP));
        let cs = run(
            vec![desired(new.clone(), Some(live), Some(served(new)))],
            vec![],
            true,
        );
        let c = &cs.changes[0];
        assert_eq!(c.action, Action::Update);
        assert!(
            c.diff.contains(&format!("+    {APP_LABEL}: {APP}")),
            "{}",
            c.diff
        );
        assert_eq!(c.reason.as_deref(), Some(REASON_ADOPT));
    }

    #[test]
    fn object_of_another_app_is_a_conflict() {
        let o = obj("ConfigMap", "a", "1", Some(APP));
        let live = served(obj("ConfigMap", "a", "1", Some("other")));
        let err = plan(PlanInput {
            app: APP,
            revision: "r",
            desired: vec![desired(o.clone(), Some(live), Some(served(o)))],
            leftovers: vec![],
            prune: true,
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap/ns/a is already managed by app \"other\"; two apps cannot own one object"
        );
    }

    #[test]
    fn without_dry_run_the_manifest_is_overlaid_on_live() {
        let mut live = served(obj("ConfigMap", "a", "1", Some(APP)));
        // A server default the manifest does not mention.
        live["data"]["defaulted"] = json!("x");
        let same = obj("ConfigMap", "a", "1", Some(APP));
        let cs = run(vec![desired(same, Some(live.clone()), None)], vec![], true);
        assert_eq!(cs.changes[0].action, Action::Unchanged);

        let changed = obj("ConfigMap", "a", "2", Some(APP));
        let cs = run(vec![desired(changed, Some(live), None)], vec![], true);
        let c = &cs.changes[0];
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.reason.as_deref(), Some(REASON_NO_DRY_RUN));
        assert!(c.diff.contains("-  k: \"1\""), "{}", c.diff);
        assert!(!c.diff.contains("-  defaulted"), "{}", c.diff);
    }

    #[test]
    fn overlay_merges_maps_and_equal_length_lists() {
        let base =
            json!({"a": {"x": 1, "y": 2}, "l": [{"n": 1, "d": true}], "m": [1, 2], "gone": 1});
        let desired = json!({"a": {"x": 3}, "l": [{"n": 1}], "m": [1], "gone": null});
        assert_eq!(
            overlay(&base, &desired),
            json!({"a": {"x": 3, "y": 2}, "l": [{"n": 1, "d": true}], "m": [1]})
        );
    }

    #[test]
    fn leftovers_are_pruned_when_owned() {
        let live = served(obj("ConfigMap", "old", "1", Some(APP)));
        let cs = run(vec![], vec![leftover("ConfigMap", "old", Some(live))], true);
        let c = &cs.changes[0];
        assert_eq!(c.action, Action::Prune);
        assert!(c.diff.contains("-kind: ConfigMap"), "{}", c.diff);
        assert!(
            c.diff.lines().skip(3).all(|l| l.starts_with('-')),
            "{}",
            c.diff
        );
    }

    #[test]
    fn leftovers_kept_with_a_reason() {
        let owned = served(obj("ConfigMap", "a", "1", Some(APP)));
        let cs = run(
            vec![],
            vec![leftover("ConfigMap", "a", Some(owned.clone()))],
            false,
        );
        assert_eq!(cs.changes[0].action, Action::Orphan);
        assert_eq!(cs.changes[0].reason.as_deref(), Some(REASON_PRUNE_DISABLED));
        assert_eq!(cs.changes[0].diff, "");

        let mut protected = owned.clone();
        protected["metadata"]["annotations"] = json!({PRUNE_ANNOTATION: "disabled"});
        let cs = run(
            vec![],
            vec![leftover("ConfigMap", "a", Some(protected))],
            true,
        );
        assert_eq!(cs.changes[0].action, Action::Orphan);
        assert_eq!(
            cs.changes[0].reason.as_deref(),
            Some(REASON_PRUNE_ANNOTATION)
        );

        let other = served(obj("ConfigMap", "a", "1", Some("other")));
        let cs = run(vec![], vec![leftover("ConfigMap", "a", Some(other))], true);
        assert_eq!(cs.changes[0].action, Action::Orphan);
        assert_eq!(
            cs.changes[0].reason.as_deref(),
            Some("owned by app \"other\"")
        );

        let unlabelled = served(obj("ConfigMap", "a", "1", None));
        let cs = run(
            vec![],
            vec![leftover("ConfigMap", "a", Some(unlabelled))],
            true,
        );
        assert_eq!(cs.changes[0].action, Action::Orphan);
        assert_eq!(cs.changes[0].reason.as_deref(), Some(REASON_NOT_LABELLED));
        assert!(cs.in_sync());
    }

    #[test]
    fn leftovers_already_gone_or_still_desired_are_dropped() {
        let o = obj("ConfigMap", "a", "1", Some(APP));
        let live = served(o.clone());
        let cs = run(
            vec![desired(o.clone(), Some(live.clone()), Some(live.clone()))],
            vec![
                leftover("ConfigMap", "gone", None),
                leftover("ConfigMap", "a", Some(live.clone())),
                leftover(
                    "ConfigMap",
                    "twice",
                    Some(served(obj("ConfigMap", "twice", "1", Some(APP)))),
                ),
                leftover(
                    "ConfigMap",
                    "twice",
                    Some(served(obj("ConfigMap", "twice", "1", Some(APP)))),
                ),
            ],
            true,
        );
        let got: Vec<_> = cs
            .changes
            .iter()
            .map(|c| (c.subject.to_string(), c.action))
            .collect();
        assert_eq!(
            got,
            [
                ("ConfigMap/ns/a".to_string(), Action::Unchanged),
                ("ConfigMap/ns/twice".to_string(), Action::Prune),
            ]
        );
    }

    #[test]
    fn changes_are_in_apply_then_prune_order() {
        let crd = obj(
            "CustomResourceDefinition",
            "widgets.example.com",
            "1",
            Some(APP),
        );
        let cs = run(
            vec![
                desired(obj("Deployment", "web", "1", Some(APP)), None, None),
                desired(obj("ConfigMap", "b", "1", Some(APP)), None, None),
                desired(crd, None, None),
                desired(obj("Widget", "w", "1", Some(APP)), None, None),
            ],
            vec![
                leftover(
                    "Namespace",
                    "old-ns",
                    Some(served(obj("Namespace", "old-ns", "1", Some(APP)))),
                ),
                leftover(
                    "ConfigMap",
                    "old",
                    Some(served(obj("ConfigMap", "old", "1", Some(APP)))),
                ),
                leftover(
                    "Deployment",
                    "old",
                    Some(served(obj("Deployment", "old", "1", Some(APP)))),
                ),
            ],
            true,
        );
        let got: Vec<_> = cs.changes.iter().map(|c| c.subject.to_string()).collect();
        assert_eq!(
            got,
            [
                "CustomResourceDefinition/widgets.example.com",
                "ConfigMap/ns/b",
                "Deployment/ns/web",
                "Widget/ns/w",
                "Deployment/ns/old",
                "ConfigMap/ns/old",
                "Namespace/old-ns",
            ]
        );
        assert_eq!(cs.summary().create, 4);
        assert_eq!(cs.summary().prune, 3);
    }

    #[test]
    fn secret_updates_are_masked() {
        let secret = |v: &str| {
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "s", "namespace": "ns", "labels": {APP_LABEL: APP}},
                   "data": {"password": v}})
        };
        let live = served(secret("b2xkLXNlY3JldA=="));
        let new = secret("bmV3LXNlY3JldA==");
        let cs = run(
            vec![desired(new.clone(), Some(live.clone()), Some(served(new)))],
            vec![],
            true,
        );
        let c = &cs.changes[0];
        assert_eq!(c.action, Action::Update);
        assert!(!c.diff.contains("b2xkLXNlY3JldA==") && !c.diff.contains("bmV3LXNlY3JldA=="));
        assert!(
            c.diff.contains("(before)") && c.diff.contains("(after)"),
            "{}",
            c.diff
        );
        let cs = run(
            vec![],
            vec![Leftover {
                subject: ObjectRef::new("v1", "Secret", Some("ns"), "s"),
                live: Some(live),
            }],
            true,
        );
        assert!(
            !cs.changes[0].diff.contains("b2xkLXNlY3JldA=="),
            "{}",
            cs.changes[0].diff
        );
    }
}
