//! Plan, apply and prune one app against a cluster (the I/O side of [`crate::plan`]).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_kube::{Cluster, Inventory, KubeError};
use ferry_model::{APP_LABEL, Action, AppSpec, ChangeSet, Manifest, ObjectRef};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use crate::order::{Stage, stage};
use crate::plan::{Desired, Leftover, PlanInput};
use crate::progress::{Event, Progress};
use crate::source::Rendered;
use crate::{EngineError, wait};

/// How many API requests one app keeps in flight.
const CONCURRENCY: usize = 16;

/// Options for planning and applying.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncOptions {
    /// Delete and re-create objects whose immutable fields changed.
    pub force: bool,
}

/// A plan made against the live cluster, ready to apply.
#[derive(Clone, Debug)]
pub struct Planned {
    /// What would change.
    pub changeset: ChangeSet,
    /// The manifests to apply, keyed by object, as prepared (namespace, labels).
    manifests: HashMap<ObjectRef, Manifest>,
    /// The inventory before this sync.
    previous: Vec<ObjectRef>,
    /// Objects known to be in sync (applied objects are added).
    in_sync: InSync,
    /// Whether the inventory keeps `in_sync` (push mode; the agent keeps it in memory).
    keep: bool,
}

impl Planned {
    /// The desired objects, in apply order.
    pub fn desired(&self) -> Vec<ObjectRef> {
        self.changeset
            .changes
            .iter()
            .filter(|c| self.manifests.contains_key(&c.subject))
            .map(|c| c.subject.clone())
            .collect()
    }
}

/// Rendered manifests as ferry applies them: namespace defaulted (or cleared for
/// cluster-scoped kinds), ownership label set, kinds checked. The flag is false for a
/// kind the cluster does not serve yet but a CRD among the manifests defines.
pub async fn prepare(
    cluster: &Cluster,
    app: &str,
    spec: &AppSpec,
    manifests: &[Manifest],
) -> Result<Vec<(Manifest, bool)>, EngineError> {
    let crd_scopes = crd_scopes(manifests);
    let mut out = Vec::with_capacity(manifests.len());
    for m in manifests {
        let mut m = m.clone();
        let known = match cluster.resolve(m.api_version(), m.kind()).await {
            Ok(r) => Some(r.namespaced),
            Err(e @ KubeError::UnknownKind { .. }) => {
                let group = m.api_version().split_once('/').map_or("", |(g, _)| g);
                match crd_scopes.get(&(group.to_string(), m.kind().to_string())) {
                    Some(namespaced) => {
                        out.push((finish(m, *namespaced, spec, app)?, false));
                        continue;
                    }
                    None => {
                        return Err(EngineError::UnknownKind {
                            subject: Box::new(m.object_ref()),
                            origin: m.origin.to_string(),
                            source: e,
                        });
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(namespaced) = known {
            m = finish(m, namespaced, spec, app)?;
        }
        out.push((m, true));
    }
    Ok(out)
}

fn finish(
    mut m: Manifest,
    namespaced: bool,
    spec: &AppSpec,
    app: &str,
) -> Result<Manifest, EngineError> {
    if namespaced {
        if m.namespace().is_none() {
            match &spec.destination.namespace {
                Some(ns) => m.set_namespace(ns),
                None => {
                    return Err(EngineError::NoNamespace {
                        subject: Box::new(m.object_ref()),
                        origin: m.origin.to_string(),
                    });
                }
            }
        }
    } else {
        m.clear_namespace();
    }
    m.set_label(APP_LABEL, app);
    Ok(m)
}

/// (group, kind) → namespaced, for CRDs defined in the same set of manifests.
fn crd_scopes(manifests: &[Manifest]) -> HashMap<(String, String), bool> {
    manifests
        .iter()
        .filter(|m| m.kind() == "CustomResourceDefinition")
        .filter_map(|m| {
            let s = &m.object["spec"];
            Some((
                (
                    s["group"].as_str()?.to_string(),
                    s["names"]["kind"].as_str()?.to_string(),
                ),
                s["scope"].as_str() != Some("Cluster"),
            ))
        })
        .collect()
}

/// What a plan learned of one object: the hash of its desired manifest, and a
/// fingerprint of the live object's fields that manifest sets ([`fingerprint`]).
pub type Known = (u64, u64);

/// Objects known to be in sync, by inventory key: while an object's desired manifest and
/// the live values of the fields it sets stay the same, a server-side-apply dry-run would
/// answer the live object again, so [`plan_with`] skips it. Changes the object's
/// controllers make elsewhere (status, their own annotations) do not matter. Shared by
/// clones.
#[derive(Clone, Debug, Default)]
pub struct InSync(Arc<Mutex<HashMap<String, Known>>>);

impl InSync {
    /// A memo seeded with what an inventory kept.
    pub fn from_kept(kept: &std::collections::BTreeMap<String, Known>) -> Self {
        Self(Arc::new(Mutex::new(
            kept.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        )))
    }

    fn holds(&self, subject: &ObjectRef, known: Known) -> bool {
        self.0.lock().expect("in-sync objects").get(&subject.key()) == Some(&known)
    }

    /// Remembers the objects `changeset` found unchanged, forgets the others.
    fn learn(&self, changeset: &ChangeSet, seen: &HashMap<ObjectRef, Known>) {
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

    fn remember(&self, subject: &ObjectRef, known: Known) {
        self.0
            .lock()
            .expect("in-sync objects")
            .insert(subject.key(), known);
    }

    /// What is known of `subjects`, to keep in their app's inventory.
    fn kept(&self, subjects: &[ObjectRef]) -> std::collections::BTreeMap<String, Known> {
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
fn knowledge(manifest: &Value, live: &Value) -> Option<Known> {
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

/// How many objects of one kind in one namespace make one LIST cheaper than their GETs.
const LIST_FROM: usize = 8;

/// The app's live objects of each (kind, namespace) with at least [`LIST_FROM`] desired
/// objects, by one labelled LIST each instead of a GET per object. Objects not found
/// (not created yet, or not labelled yet) are left to a GET.
async fn prefetch(
    cluster: &Cluster,
    app: &str,
    prepared: &[(Manifest, bool)],
) -> Result<HashMap<ObjectRef, Value>, EngineError> {
    let mut groups: HashMap<(String, String, Option<String>), usize> = HashMap::new();
    for (m, _) in prepared.iter().filter(|(_, known)| *known) {
        let key = (
            m.api_version().to_string(),
            m.kind().to_string(),
            m.namespace().map(str::to_string),
        );
        *groups.entry(key).or_default() += 1;
    }
    let selector = format!("{APP_LABEL}={app}");
    let selector = selector.as_str();
    let lists: Vec<Vec<Value>> = stream::iter(groups.into_iter().filter(|(_, n)| *n >= LIST_FROM))
        .map(|((version, kind, namespace), _)| async move {
            cluster
                .list_selected(&version, &kind, namespace.as_deref(), Some(selector))
                .await
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(lists
        .into_iter()
        .flatten()
        .map(|o| (ferry_kube::object_ref(&o), o))
        .collect())
}

/// Plans `rendered` against the cluster: the live objects (a LIST per kind and namespace
/// with many objects, else a GET each) and a server-side-apply dry-run per object, then
/// [`crate::plan::plan`]. Writes nothing.
pub async fn plan(
    cluster: &Cluster,
    app: &str,
    spec: &AppSpec,
    rendered: &Rendered,
    opts: SyncOptions,
) -> Result<Planned, EngineError> {
    plan_with(cluster, app, spec, rendered, opts, None).await
}

/// [`plan`], skipping the dry-run of objects known to be in sync, and remembering those
/// found unchanged this time: in `in_sync` (the agent's memory) or, without it, in the
/// app's inventory, which [`apply`] keeps up to date when it writes it anyway.
pub async fn plan_with(
    cluster: &Cluster,
    app: &str,
    spec: &AppSpec,
    rendered: &Rendered,
    opts: SyncOptions,
    in_sync: Option<&InSync>,
) -> Result<Planned, EngineError> {
    let prepared = prepare(cluster, app, spec, &rendered.manifests).await?;
    let inventory = cluster.read_inventory(app).await?.unwrap_or_default();
    let previous = inventory.entries;
    let (in_sync, keep) = match in_sync {
        Some(memo) => (memo.clone(), false),
        None => (InSync::from_kept(&inventory.in_sync), true),
    };
    let in_sync = &in_sync;

    // Namespaces this sync creates: a dry-run in them answers 404 until then.
    let mut creates_namespace: HashSet<&str> = rendered
        .manifests
        .iter()
        .filter(|m| m.kind() == "Namespace" && m.api_version() == "v1")
        .map(|m| m.name())
        .collect();
    if spec.destination.create_namespace
        && let Some(ns) = &spec.destination.namespace
    {
        creates_namespace.insert(ns);
    }
    let creates_namespace = &creates_namespace;

    let listed = &prefetch(cluster, app, &prepared).await?;
    let mut recreate = HashSet::new();
    let seen: Mutex<HashMap<ObjectRef, Known>> = Mutex::default();
    let seen = &seen;
    let desired: Vec<(Desired, bool)> = stream::iter(prepared)
        .map(|(manifest, known)| async move {
            if !known {
                return Ok((
                    Desired {
                        manifest,
                        live: None,
                        dry_run: None,
                    },
                    false,
                ));
            }
            let subject = manifest.object_ref();
            let live = match listed.get(&subject) {
                Some(found) => Some(found.clone()),
                None => cluster.get(&subject).await?,
            };
            let known = live.as_ref().and_then(|l| knowledge(&manifest.object, l));
            if let Some(known) = known {
                seen.lock()
                    .expect("seen objects")
                    .insert(subject.clone(), known);
            }
            if known.is_some_and(|k| in_sync.holds(&subject, k)) {
                return Ok((
                    Desired {
                        manifest,
                        dry_run: live.clone(),
                        live,
                    },
                    false,
                ));
            }
            let (dry_run, immutable) = match cluster.apply(&manifest.object, true).await {
                Ok(v) => (Some(v), false),
                Err(e) if e.is_immutable() && opts.force => (None, true),
                Err(
                    e @ KubeError::Invalid {
                        immutable: true, ..
                    },
                ) => {
                    let KubeError::Invalid { message, .. } = e else {
                        unreachable!()
                    };
                    return Err(EngineError::Immutable {
                        subject: Box::new(subject),
                        message,
                    });
                }
                // The namespace does not exist: fine when this sync creates it.
                Err(KubeError::NamespaceNotFound { namespace, .. }) if live.is_none() => {
                    if !creates_namespace.contains(namespace.as_str()) {
                        return Err(EngineError::NoSuchNamespace {
                            namespace,
                            subject: Box::new(subject),
                        });
                    }
                    (None, false)
                }
                Err(e) => return Err(e.into()),
            };
            Ok((
                Desired {
                    manifest,
                    live,
                    dry_run,
                },
                immutable,
            ))
        })
        .buffered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let desired: Vec<Desired> = desired
        .into_iter()
        .map(|(d, immutable)| {
            if immutable {
                recreate.insert(d.manifest.object_ref());
            }
            d
        })
        .collect();

    let wanted: HashSet<ObjectRef> = desired.iter().map(|d| d.manifest.object_ref()).collect();
    // Owned items in the streams below: borrowed closure arguments make the futures
    // not `Send` for every lifetime, which callers that spawn them (the agent) need.
    let gone: Vec<ObjectRef> = previous
        .iter()
        .filter(|r| !wanted.contains(*r))
        .cloned()
        .collect();
    let leftovers: Vec<Leftover> = stream::iter(gone)
        .map(|subject| async move {
            let live = match cluster.get(&subject).await {
                Ok(live) => live,
                // Its kind is gone from the cluster, so the object is too.
                Err(KubeError::UnknownKind { .. }) => None,
                Err(e) => return Err(EngineError::from(e)),
            };
            Ok(Leftover { subject, live })
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;

    let manifests = desired
        .iter()
        .map(|d| (d.manifest.object_ref(), d.manifest.clone()))
        .collect();
    let mut changeset = crate::plan::plan(PlanInput {
        app,
        revision: &rendered.revision.sha,
        desired,
        leftovers,
        prune: spec.prune,
    })?;
    in_sync.learn(&changeset, &seen.lock().expect("seen objects"));
    for change in &mut changeset.changes {
        if recreate.contains(&change.subject) {
            change.action = Action::Recreate;
            change.reason = Some("immutable field changed; will delete and re-create".into());
        }
    }
    Ok(Planned {
        changeset,
        manifests,
        previous,
        in_sync: in_sync.clone(),
        keep,
    })
}

/// What [`apply`] did.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    /// The plan that was carried out.
    pub changeset: ChangeSet,
    /// Every desired object (written or unchanged), in apply order.
    pub objects: Vec<ObjectRef>,
}

/// Carries out a plan: stage 1 (CRDs, Namespaces, ClusterRoles) applied and waited
/// for, discovery refreshed, stage 2 in kind order; only changed objects are written.
/// The inventory is widened before the first write and narrowed only after prune, so
/// it never loses track of an object; prune runs only when every apply succeeded.
pub async fn apply(
    cluster: &Cluster,
    app: &str,
    spec: &AppSpec,
    planned: &Planned,
    progress: &dyn Progress,
) -> Result<ApplyReport, EngineError> {
    let revision = planned.changeset.revision.clone();
    let desired = planned.desired();
    let mut widened: Vec<ObjectRef> = planned.previous.clone();
    widened.extend(desired.iter().cloned());
    if !planned.changeset.in_sync() || planned.previous.is_empty() {
        cluster
            .write_inventory(
                app,
                &Inventory {
                    revision: revision.clone(),
                    entries: widened,
                    in_sync: Default::default(),
                },
            )
            .await?;
    }
    if spec.destination.create_namespace
        && let Some(ns) = &spec.destination.namespace
    {
        cluster.ensure_namespace(ns).await?;
    }

    let writes: Vec<_> = planned
        .changeset
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Create | Action::Update | Action::Recreate))
        .collect();
    for wanted_stage in [Stage::Cluster, Stage::Resources] {
        let batch: Vec<_> = writes
            .iter()
            .filter(|c| stage(&c.subject.kind) == wanted_stage)
            .collect();
        if batch.is_empty() {
            continue;
        }
        progress.event(Event::Phase(format!(
            "applying {} object(s) ({})",
            batch.len(),
            match wanted_stage {
                Stage::Cluster => "definitions",
                Stage::Resources => "resources",
            }
        )));
        // Kinds apply in order; objects of one kind rank go in parallel.
        let mut i = 0;
        while i < batch.len() {
            let rank = crate::order::kind_rank(&batch[i].subject.kind);
            let group: Vec<_> = batch[i..]
                .iter()
                .take_while(|c| crate::order::kind_rank(&c.subject.kind) == rank)
                .collect();
            i += group.len();
            let owned: Vec<(ObjectRef, Action)> = group
                .iter()
                .map(|c| (c.subject.clone(), c.action))
                .collect();
            stream::iter(owned)
                .map(|(subject, action)| async move {
                    let manifest = &planned.manifests[&subject];
                    if action == Action::Recreate {
                        cluster.delete(&subject).await?;
                        wait::gone(cluster, &subject, Duration::from_secs(60)).await?;
                    }
                    let applied = cluster.apply(&manifest.object, false).await?;
                    if let Some(known) = knowledge(&manifest.object, &applied) {
                        planned.in_sync.remember(&subject, known);
                    }
                    progress.event(Event::Applied { subject, action });
                    Ok::<_, EngineError>(())
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<()>()
                .await?;
        }
        if wanted_stage == Stage::Cluster {
            let crds: Vec<ObjectRef> = batch
                .iter()
                .filter(|c| c.subject.kind == "CustomResourceDefinition")
                .map(|c| c.subject.clone())
                .collect();
            wait::established(cluster, &crds, Duration::from_secs(60)).await?;
            cluster.refresh().await?;
        }
    }

    let prune = prune(cluster, planned, progress).await;
    let mut entries = desired.clone();
    let failed = prune
        .as_ref()
        .err()
        .map(|(f, _)| f.clone())
        .unwrap_or_default();
    entries.extend(failed);
    entries.sort();
    entries.dedup();
    if entries != planned.previous || !planned.changeset.in_sync() {
        let in_sync = match planned.keep {
            true => planned.in_sync.kept(&entries),
            false => Default::default(),
        };
        cluster
            .write_inventory(
                app,
                &Inventory {
                    revision,
                    entries,
                    in_sync,
                },
            )
            .await?;
    }
    if let Err((failed, first)) = prune {
        return Err(EngineError::Prune {
            count: failed.len(),
            first,
        });
    }
    Ok(ApplyReport {
        changeset: planned.changeset.clone(),
        objects: desired,
    })
}

/// Deletes the plan's prune entries in prune order; on failure returns the objects
/// that could not be deleted and the first error.
async fn prune(
    cluster: &Cluster,
    planned: &Planned,
    progress: &dyn Progress,
) -> Result<(), (Vec<ObjectRef>, String)> {
    let doomed: Vec<&ObjectRef> = planned
        .changeset
        .changes
        .iter()
        .filter(|c| c.action == Action::Prune)
        .map(|c| &c.subject)
        .collect();
    if doomed.is_empty() {
        return Ok(());
    }
    progress.event(Event::Phase(format!("pruning {} object(s)", doomed.len())));
    let mut failed = Vec::new();
    let mut first = None;
    for subject in doomed {
        match cluster.delete(subject).await {
            Ok(()) => progress.event(Event::Pruned(subject.clone())),
            Err(e) => {
                first.get_or_insert_with(|| e.to_string());
                failed.push(subject.clone());
            }
        }
    }
    match first {
        None => Ok(()),
        Some(first) => Err((failed, first)),
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
