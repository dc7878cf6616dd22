//! Plan: the live objects (a LIST per kind and namespace with many objects, else a GET
//! each) and a server-side-apply dry-run per object, then the pure [`crate::plan::plan`].
//! Writes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ferry_kube::{Cluster, Inventory, KubeError, VersionedInventory};
use ferry_model::hook::{HOOK_LABEL, HOOK_TEMPLATE_ANNOTATION};
use ferry_model::{
    APP_LABEL, APP_NAMESPACE_LABEL, Action, AppKey, AppSpec, ChangeSet, Health, Manifest,
    ObjectRef, Project,
};
use ferry_plan::hooks::{Hook, Role, classify};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use super::memo::{InSync, Known, knowledge};
use super::{CONCURRENCY, SyncOptions};
use crate::EngineError;
use crate::health::health;
use crate::plan::{Desired, Leftover, PlanInput};
use crate::source::Rendered;

/// A plan made against the live cluster, ready to apply.
#[derive(Clone, Debug)]
pub(super) struct Planned {
    /// What would change.
    pub changeset: ChangeSet,
    /// The manifests to apply, keyed by object, as prepared (namespace, labels).
    pub manifests: HashMap<ObjectRef, Manifest>,
    /// The inventory before this sync.
    pub previous: Vec<ObjectRef>,
    /// The inventory as this sync last read or wrote it, with its head's version: the
    /// condition of the sync's next inventory write, which so reads nothing first.
    pub inventory: Arc<Mutex<VersionedInventory>>,
    /// Objects known to be in sync (applied objects are added).
    pub in_sync: InSync,
    /// Whether the inventory keeps `in_sync` (push mode; the agent keeps it in memory).
    pub keep: bool,
    /// Each desired object's wave.
    pub waves: HashMap<ObjectRef, i32>,
    /// The hooks, as ferry would create them.
    pub hooks: Vec<PlannedHook>,
    /// The health of each object as this sync last read or wrote it.
    pub health: Arc<Mutex<HashMap<ObjectRef, Health>>>,
}

/// A hook as ferry creates it: namespace defaulted, labelled [`HOOK_LABEL`] (not
/// [`APP_LABEL`]: hooks are not inventoried, pruned or watched) and annotated with its
/// template.
#[derive(Clone, Debug)]
pub(super) struct PlannedHook {
    /// The object to create.
    pub manifest: Manifest,
    /// When it runs and is deleted.
    pub hook: Hook,
    /// The hook as in Git, named by its name or its generateName.
    pub template: ObjectRef,
}

impl Planned {
    /// Records `object` as this sync read or wrote it.
    pub(super) fn observed(&self, subject: &ObjectRef, object: &Value) {
        (self.health.lock().expect("observed health")).insert(subject.clone(), health(object));
    }

    /// The health of `subject` as this sync last read or wrote it.
    pub(super) fn last_health(&self, subject: &ObjectRef) -> Option<Health> {
        (self.health.lock().expect("observed health"))
            .get(subject)
            .cloned()
    }

    /// Writes the inventory [`Cluster::update_inventory_from`] what this sync last read
    /// or wrote of it (a conflict reads it again).
    pub(super) async fn update_inventory(
        &self,
        cluster: &Cluster,
        app: &AppKey,
        update: impl FnMut(Option<&Inventory>) -> Inventory,
    ) -> Result<(), EngineError> {
        let read = self.inventory.lock().expect("inventory").clone();
        let written = cluster.update_inventory_from(app, read, update).await?;
        *self.inventory.lock().expect("inventory") = written;
        Ok(())
    }

    /// The desired objects, in apply order.
    pub(super) fn desired(&self) -> Vec<ObjectRef> {
        self.changeset
            .changes
            .iter()
            .filter(|c| self.manifests.contains_key(&c.subject))
            .map(|c| c.subject.clone())
            .collect()
    }
}

/// Rendered manifests split by [`classify`]; objects never applied are left out.
#[derive(Default)]
pub(super) struct Split {
    /// The resources.
    pub resources: Vec<Manifest>,
    /// Their waves, one per resource.
    pub waves: Vec<i32>,
    /// The hooks.
    pub hooks: Vec<(Manifest, Hook)>,
}

/// Splits rendered manifests into resources (with their waves) and hooks.
pub(super) fn split(manifests: &[Manifest]) -> Result<Split, EngineError> {
    let mut out = Split::default();
    for m in manifests {
        match classify(m)? {
            Role::Resource { wave } => {
                out.resources.push(m.clone());
                out.waves.push(wave);
            }
            Role::Hook(hook) => out.hooks.push((m.clone(), hook)),
            Role::Skip => {}
        }
    }
    Ok(out)
}

/// Rendered manifests as ferry applies them: namespace defaulted (or cleared for
/// cluster-scoped kinds), ownership label set (the hook labels for `hooks`), kinds
/// checked. The flag is false for a kind the cluster does not serve yet but a CRD among
/// `all` (the app's manifests) defines.
pub(super) async fn prepare(
    cluster: &Cluster,
    app: &AppKey,
    spec: &AppSpec,
    manifests: &[Manifest],
    all: &[Manifest],
    hooks: bool,
) -> Result<Vec<(Manifest, bool)>, EngineError> {
    let crd_scopes = crd_scopes(all);
    let mut out = Vec::with_capacity(manifests.len());
    for m in manifests {
        let mut m = m.clone();
        let known = match cluster.resolve(m.api_version(), m.kind()).await {
            Ok(r) => Some(r.namespaced),
            Err(e @ KubeError::UnknownKind { .. }) => {
                let group = m.api_version().split_once('/').map_or("", |(g, _)| g);
                match crd_scopes.get(&(group.to_string(), m.kind().to_string())) {
                    Some(namespaced) => {
                        out.push((finish(m, *namespaced, spec, app, hooks)?, false));
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
            m = finish(m, namespaced, spec, app, hooks)?;
        }
        out.push((m, true));
    }
    Ok(out)
}

fn finish(
    mut m: Manifest,
    namespaced: bool,
    spec: &AppSpec,
    app: &AppKey,
    hook: bool,
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
    if hook {
        m.set_label(HOOK_LABEL, &app.name);
        m.set_annotation(HOOK_TEMPLATE_ANNOTATION, &template(&m).to_string());
    } else {
        m.set_label(APP_LABEL, &app.name);
    }
    m.set_label(APP_NAMESPACE_LABEL, &app.namespace);
    Ok(m)
}

/// A hook's reference as in Git: named by its name, or else its generateName.
pub(super) fn template(m: &Manifest) -> ObjectRef {
    let mut subject = m.object_ref();
    if subject.name.is_empty() {
        subject.name = m.generate_name().unwrap_or_default().to_string();
    }
    subject
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

/// How many objects of one kind in one namespace make one LIST cheaper than their GETs.
const LIST_FROM: usize = 8;

/// What the plan knows of the app's live objects before it reads them one by one.
#[derive(Default)]
struct Prefetched {
    /// Objects found, by reference.
    listed: HashMap<ObjectRef, Value>,
    /// Objects known not to exist: no GET needed.
    absent: HashSet<ObjectRef>,
}

/// The app's live objects of each (kind, namespace) with at least [`LIST_FROM`] desired
/// objects, by one labelled LIST each instead of a GET per object. When at least
/// [`LIST_FROM`] of them are not in that list (a first sync, or objects to adopt), one
/// metadata-only LIST of the kind's names in the namespace tells which of those exist
/// at all: the others are absent, the rest are left to a GET.
async fn prefetch(
    cluster: &Cluster,
    app: &AppKey,
    prepared: &[(Manifest, bool)],
) -> Result<Prefetched, EngineError> {
    let mut groups: HashMap<(String, String, Option<String>), Vec<ObjectRef>> = HashMap::new();
    for (m, _) in prepared.iter().filter(|(_, known)| *known) {
        let key = (
            m.api_version().to_string(),
            m.kind().to_string(),
            m.namespace().map(str::to_string),
        );
        groups.entry(key).or_default().push(m.object_ref());
    }
    // By name alone, so that objects labelled by earlier versions are listed too; the
    // plan checks the namespace label.
    let selector = format!("{APP_LABEL}={}", app.name);
    let selector = selector.as_str();
    let found: Vec<Prefetched> = stream::iter(
        groups
            .into_iter()
            .filter(|(_, subjects)| subjects.len() >= LIST_FROM),
    )
    .map(|((version, kind, namespace), subjects)| async move {
        let listed: HashMap<ObjectRef, Value> = cluster
            .list_selected(&version, &kind, namespace.as_deref(), Some(selector))
            .await?
            .into_iter()
            .map(|o| (ferry_kube::object_ref(&o), o))
            .collect();
        let missed: Vec<ObjectRef> = subjects
            .into_iter()
            .filter(|s| !listed.contains_key(s))
            .collect();
        let absent = if missed.len() >= LIST_FROM {
            let names = cluster
                .list_names(&version, &kind, namespace.as_deref())
                .await?;
            missed
                .into_iter()
                .filter(|s| !names.contains(&s.name))
                .collect()
        } else {
            HashSet::new()
        };
        Ok::<_, EngineError>(Prefetched { listed, absent })
    })
    .buffered(CONCURRENCY)
    .try_collect()
    .await?;
    Ok(found
        .into_iter()
        .fold(Prefetched::default(), |mut all, group| {
            all.listed.extend(group.listed);
            all.absent.extend(group.absent);
            all
        }))
}

/// The project an app is bounded by, and where its `Application` lives.
#[derive(Clone, Copy)]
pub(super) struct Policy<'a> {
    /// The project.
    pub project: &'a Project,
    /// The `Application`'s namespace (`None`: a `ferry.yaml` app).
    pub app_namespace: Option<&'a str>,
}

/// Refuses the app when its project does not allow it or one of its objects (as
/// prepared: namespace defaulted, resources and hooks).
fn enforce(
    policy: Policy<'_>,
    app: &AppKey,
    spec: &AppSpec,
    objects: &[Manifest],
) -> Result<(), EngineError> {
    let violations = ferry_plan::policy::check(ferry_plan::policy::PolicyInput {
        project: policy.project,
        app_namespace: policy.app_namespace,
        spec,
        objects,
    });
    if violations.is_empty() {
        return Ok(());
    }
    Err(EngineError::Policy {
        app: app.to_string(),
        project: policy.project.name.clone(),
        violations,
    })
}

/// Plans `rendered` against the cluster, skipping the dry-run of objects known to be in
/// sync, and remembering those found unchanged this time: in `in_sync` (the agent's
/// memory) or, without it, in the app's inventory, which [`super::apply`] keeps up to
/// date when it writes it anyway.
pub(super) async fn plan(
    cluster: &Cluster,
    app: &AppKey,
    spec: &AppSpec,
    rendered: &Rendered,
    opts: &SyncOptions,
    policy: Option<Policy<'_>>,
) -> Result<Planned, EngineError> {
    let Split {
        resources,
        waves: resource_waves,
        hooks,
    } = split(&rendered.manifests)?;
    let prepared = prepare(cluster, app, spec, &resources, &rendered.manifests, false).await?;
    let waves: HashMap<ObjectRef, i32> = prepared
        .iter()
        .zip(resource_waves)
        .map(|((m, _), wave)| (m.object_ref(), wave))
        .collect();
    let (hook_manifests, hook_specs): (Vec<Manifest>, Vec<Hook>) = hooks.into_iter().unzip();
    let hooks = prepare(
        cluster,
        app,
        spec,
        &hook_manifests,
        &rendered.manifests,
        true,
    )
    .await?
    .into_iter()
    .zip(hook_specs)
    .map(|((manifest, _), hook)| PlannedHook {
        template: template(&manifest),
        manifest,
        hook,
    })
    .collect::<Vec<PlannedHook>>();
    if let Some(policy) = policy {
        let objects: Vec<Manifest> = (prepared.iter().map(|(m, _)| m.clone()))
            .chain(hooks.iter().map(|h| h.manifest.clone()))
            .collect();
        enforce(policy, app, spec, &objects)?;
    }
    let head = cluster.read_inventory_versioned(app).await?;
    let inventory = head.inventory.clone().unwrap_or_default();
    let previous = inventory.entries;
    let (in_sync, keep) = match &opts.in_sync {
        Some(memo) => (memo.clone(), false),
        None => (InSync::from_kept(&inventory.in_sync), true),
    };
    let in_sync = &in_sync;

    // Namespaces this sync creates: a dry-run in them answers 404 until then.
    let mut creates_namespace: HashSet<&str> = resources
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

    let prefetched = &prefetch(cluster, app, &prepared).await?;
    let mut recreate = HashSet::new();
    let seen: Mutex<HashMap<ObjectRef, Known>> = Mutex::default();
    let seen = &seen;
    let observed: Mutex<HashMap<ObjectRef, Health>> = Mutex::default();
    let observed = &observed;
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
            let live = match prefetched.listed.get(&subject) {
                Some(found) => Some(found.clone()),
                None if prefetched.absent.contains(&subject) => None,
                None => cluster.get(&subject).await?,
            };
            if let Some(live) = &live {
                (observed.lock().expect("observed health")).insert(subject.clone(), health(live));
            }
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

    let manifests: HashMap<ObjectRef, Manifest> = desired
        .iter()
        .map(|d| (d.manifest.object_ref(), d.manifest.clone()))
        .collect();
    let mut changeset = crate::plan::plan(PlanInput {
        app,
        revision: &rendered.revision.sha,
        desired,
        leftovers,
        prune: spec.prune,
        prune_cluster_scoped: spec.prune_cluster_scoped,
    })?;
    in_sync.learn(&changeset, &seen.lock().expect("seen objects"), &manifests);
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
        inventory: Arc::new(Mutex::new(head)),
        in_sync: in_sync.clone(),
        keep,
        waves,
        hooks,
        health: Arc::new(Mutex::new(std::mem::take(
            &mut *observed.lock().expect("observed health"),
        ))),
    })
}
