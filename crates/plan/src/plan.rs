//! Pure planning: desired, live and dry-run objects in, a [`ChangeSet`] out.
//!
//! The caller fetches, for every desired object, its live copy and the result of a
//! server-side-apply dry-run, and for every inventory entry that is no longer desired
//! its live copy. [`plan`] decides per object what syncing would do and why.

use std::collections::HashSet;

use ferry_model::{
    APP_LABEL, APP_NAMESPACE_LABEL, Action, AppKey, Change, ChangeSet, Manifest, ObjectRef,
    PRUNE_ANNOTATION,
};
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
    /// The app; objects labelled [`APP_LABEL`] with its name and [`APP_NAMESPACE_LABEL`]
    /// with its namespace belong to it (and, written by earlier versions, objects with
    /// its name and no namespace label).
    pub app: &'a AppKey,
    /// Git commit SHA of the desired state.
    pub revision: &'a str,
    /// Desired objects.
    pub desired: Vec<Desired>,
    /// Objects in the previous inventory that are no longer desired.
    pub leftovers: Vec<Leftover>,
    /// Whether the app prunes objects that left Git.
    pub prune: bool,
    /// Whether the app prunes the kinds of [`prune_guarded`] too without their
    /// `ferry.dev/prune: allow` annotation.
    pub prune_cluster_scoped: bool,
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
/// The [`PRUNE_ANNOTATION`] value that lets a [`prune_guarded`] object be pruned.
pub const PRUNE_ALLOW: &str = "allow";

/// Whether deleting the object would delete more than itself (a Namespace its objects, a
/// CustomResourceDefinition every object of its kind, a PersistentVolume its data): such
/// objects are pruned only when annotated `ferry.dev/prune: allow` or when the app sets
/// `pruneClusterScoped`.
pub fn prune_guarded(subject: &ObjectRef) -> bool {
    matches!(
        (subject.group.as_str(), subject.kind.as_str()),
        ("", "Namespace")
            | ("", "PersistentVolume")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
    )
}

/// Reason given for a [`prune_guarded`] leftover that is kept.
pub fn reason_guarded(kind: &str) -> String {
    format!(
        "a {kind} is not pruned (deleting it deletes what it holds): annotate it \
         ferry.dev/prune: allow or set pruneClusterScoped: true to prune it"
    )
}

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
///   Orphan; a [`prune_guarded`] kind neither annotated `ferry.dev/prune: allow` nor
///   allowed by `prune_cluster_scoped` → Orphan with [`reason_guarded`]; otherwise
///   Prune, with a diff of live → nothing.
///
/// Changes come in apply order, then leftovers in prune order.
pub fn plan(input: PlanInput<'_>) -> Result<ChangeSet, PlanError> {
    let PlanInput {
        app,
        revision,
        desired,
        leftovers,
        prune,
        prune_cluster_scoped,
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
        removals.push(plan_leftover(
            app,
            prune,
            prune_cluster_scoped,
            subject,
            &live,
        ));
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

/// The app an object's labels name: [`APP_LABEL`], and [`APP_NAMESPACE_LABEL`] unless
/// an earlier version wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner<'a> {
    /// The app's name.
    pub name: &'a str,
    /// The app's namespace; `None` on objects labelled before apps had one.
    pub namespace: Option<&'a str>,
}

impl Owner<'_> {
    /// The owner of `obj`, if labelled.
    pub fn of(obj: &Value) -> Option<Owner<'_>> {
        let labels = obj.pointer("/metadata/labels")?;
        Some(Owner {
            name: labels.get(APP_LABEL)?.as_str()?,
            namespace: labels.get(APP_NAMESPACE_LABEL).and_then(Value::as_str),
        })
    }

    /// Whether these labels make `app` the owner (an object labelled with the name
    /// alone, by an earlier version, belongs to the app of that name).
    pub fn is(&self, app: &AppKey) -> bool {
        self.name == app.name && self.namespace.is_none_or(|ns| ns == app.namespace)
    }
}

impl std::fmt::Display for Owner<'_> {
    /// `namespace/name`, or the name alone.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(self.name),
        }
    }
}

fn plan_desired(app: &AppKey, subject: ObjectRef, d: &Desired) -> Result<Change, PlanError> {
    let Some(live) = &d.live else {
        return Ok(Change {
            diff: unified(&subject, None, Some(&d.manifest.object)),
            subject,
            action: Action::Create,
            reason: None,
        });
    };
    let mut reason = match Owner::of(live) {
        Some(o) if !o.is(app) => {
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

fn plan_leftover(
    app: &AppKey,
    prune: bool,
    prune_cluster_scoped: bool,
    subject: ObjectRef,
    live: &Value,
) -> Change {
    let annotation = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(PRUNE_ANNOTATION))
        .and_then(Value::as_str);
    let keep = if !prune {
        Some(REASON_PRUNE_DISABLED.to_string())
    } else if annotation == Some("disabled") {
        Some(REASON_PRUNE_ANNOTATION.to_string())
    } else {
        match Owner::of(live) {
            Some(o) if !o.is(app) => Some(format!("owned by app {:?}", o.to_string())),
            None => Some(REASON_NOT_LABELLED.to_string()),
            Some(_)
                if prune_guarded(&subject)
                    && !prune_cluster_scoped
                    && annotation != Some(PRUNE_ALLOW) =>
            {
                Some(reason_guarded(&subject.kind))
            }
            Some(_) => None,
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
    const NS: &str = "team-a";

    fn key() -> AppKey {
        AppKey::new(NS, APP)
    }

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
            o["metadata"]["labels"] = json!({APP_LABEL: owner, APP_NAMESPACE_LABEL: NS});
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

    /// Served and annotated `ferry.dev/prune: allow`.
    fn allowed(o: Value) -> Value {
        let mut o = served(o);
        o["metadata"]["annotations"] = json!({PRUNE_ANNOTATION: PRUNE_ALLOW});
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
            app: &key(),
            revision: "abc123",
            desired,
            leftovers,
            prune,
            prune_cluster_scoped: false,
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
        assert_eq!(cs.app, "team-a/web");
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
            app: &key(),
            revision: "r",
            desired: vec![desired(o.clone(), Some(live), Some(served(o)))],
            leftovers: vec![],
            prune: true,
            prune_cluster_scoped: false,
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap/ns/a is already managed by app \"team-a/other\"; two apps cannot own one object"
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
            Some("owned by app \"team-a/other\"")
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
    fn the_same_name_in_another_namespace_is_another_app() {
        let mut theirs = served(obj("ConfigMap", "a", "1", Some(APP)));
        theirs["metadata"]["labels"][APP_NAMESPACE_LABEL] = json!("team-b");
        let cs = run(
            vec![],
            vec![leftover("ConfigMap", "a", Some(theirs.clone()))],
            true,
        );
        assert_eq!(cs.changes[0].action, Action::Orphan);
        assert_eq!(
            cs.changes[0].reason.as_deref(),
            Some("owned by app \"team-b/web\"")
        );
        let o = obj("ConfigMap", "a", "1", Some(APP));
        let err = plan(PlanInput {
            app: &key(),
            revision: "r",
            desired: vec![desired(o.clone(), Some(theirs), Some(served(o)))],
            leftovers: vec![],
            prune: true,
            prune_cluster_scoped: false,
        })
        .unwrap_err();
        assert!(err.to_string().contains("\"team-b/web\""), "{err}");
    }

    #[test]
    fn objects_labelled_by_an_earlier_version_belong_to_the_app_of_their_name() {
        let legacy = |name: &str| {
            let mut o = served(obj("ConfigMap", name, "1", Some(APP)));
            o["metadata"]["labels"] = json!({APP_LABEL: APP});
            o
        };
        let new = obj("ConfigMap", "kept", "1", Some(APP));
        let cs = run(
            vec![desired(
                new.clone(),
                Some(legacy("kept")),
                Some(served(new)),
            )],
            vec![leftover("ConfigMap", "gone", Some(legacy("gone")))],
            true,
        );
        let got: Vec<_> = cs
            .changes
            .iter()
            .map(|c| (c.subject.name.as_str(), c.action, c.reason.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("kept", Action::Update, None),
                ("gone", Action::Prune, None),
            ]
        );
        assert!(
            cs.changes[0]
                .diff
                .contains(&format!("+    {APP_NAMESPACE_LABEL}: {NS}")),
            "the namespace label is added: {}",
            cs.changes[0].diff
        );
    }

    #[test]
    fn namespaces_crds_and_volumes_are_kept_unless_allowed() {
        let crd = "apiextensions.k8s.io/v1";
        let leftovers = |live: fn(Value) -> Value| {
            [
                ("v1", "Namespace", None, "team"),
                (crd, "CustomResourceDefinition", None, "widgets.example.com"),
                ("v1", "PersistentVolume", None, "pv-1"),
                ("v1", "ConfigMap", Some("ns"), "plain"),
            ]
            .map(|(api, kind, ns, name)| {
                let mut o = obj(kind, name, "1", Some(APP));
                o["apiVersion"] = json!(api);
                if ns.is_none() {
                    o["metadata"].as_object_mut().unwrap().remove("namespace");
                }
                Leftover {
                    subject: ObjectRef::new(api, kind, ns, name),
                    live: Some(live(o)),
                }
            })
            .to_vec()
        };
        let actions = |cs: &ChangeSet| -> Vec<(String, Action)> {
            let mut got: Vec<_> = cs
                .changes
                .iter()
                .map(|c| (c.subject.kind.clone(), c.action))
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            got
        };

        let cs = run(vec![], leftovers(served), true);
        assert_eq!(
            actions(&cs),
            [
                ("ConfigMap".to_string(), Action::Prune),
                ("CustomResourceDefinition".to_string(), Action::Orphan),
                ("Namespace".to_string(), Action::Orphan),
                ("PersistentVolume".to_string(), Action::Orphan),
            ]
        );
        for c in cs.changes.iter().filter(|c| c.action == Action::Orphan) {
            assert_eq!(c.reason, Some(reason_guarded(&c.subject.kind)));
            assert_eq!(c.diff, "");
        }
        assert!(
            reason_guarded("Namespace").contains("ferry.dev/prune: allow"),
            "{}",
            reason_guarded("Namespace")
        );
        assert_eq!(cs.summary().prune, 1);
        assert_eq!(cs.summary().orphan, 3);

        let cs = run(vec![], leftovers(allowed), true);
        assert!(cs.changes.iter().all(|c| c.action == Action::Prune));

        let cs = plan(PlanInput {
            app: &key(),
            revision: "r",
            desired: vec![],
            leftovers: leftovers(served),
            prune: true,
            prune_cluster_scoped: true,
        })
        .unwrap();
        assert!(cs.changes.iter().all(|c| c.action == Action::Prune));

        // A Namespace-like kind of another group is not guarded.
        let other = ObjectRef::new("example.com/v1", "Namespace", None, "x");
        assert!(!prune_guarded(&other));
        let cs = run(
            vec![],
            leftovers(|o| {
                let mut o = allowed(o);
                o["metadata"]["annotations"][PRUNE_ANNOTATION] = json!("disabled");
                o
            }),
            true,
        );
        assert!(
            cs.changes
                .iter()
                .all(|c| c.reason.as_deref() == Some(REASON_PRUNE_ANNOTATION)),
            "disabled wins"
        );
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
                    Some(allowed(obj("Namespace", "old-ns", "1", Some(APP)))),
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
