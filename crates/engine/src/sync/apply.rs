//! Apply: widen the inventory, write a plan's objects in stages (all at once, or wave by
//! wave), then prune and narrow the inventory.

use std::collections::HashSet;
use std::time::Duration;

use ferry_kube::{Cluster, Inventory};
use ferry_model::{Action, AppKey, AppSpec, ObjectRef};
use futures::{StreamExt, TryStreamExt, stream};
use tokio_util::sync::CancellationToken;

use super::plan::Planned;
use super::{CONCURRENCY, proceed, prune};
use crate::order::{Stage, stage};
use crate::progress::{Event, Progress};
use crate::{EngineError, failpoint, wait};

/// Creates the destination namespace when the app asks for it (before any hook, which
/// may run in it).
pub(super) async fn namespace(cluster: &Cluster, spec: &AppSpec) -> Result<(), EngineError> {
    if spec.destination.create_namespace
        && let Some(ns) = &spec.destination.namespace
    {
        cluster.ensure_namespace(ns).await?;
    }
    Ok(())
}

/// Widens the inventory to the plan's objects (before the first write, so it never
/// loses track of an object). Entries another writer added since the plan read it are
/// kept (the write is conditional, see [`Cluster::update_inventory`]).
pub(super) async fn begin(
    cluster: &Cluster,
    app: &AppKey,
    planned: &Planned,
) -> Result<(), EngineError> {
    let mut widened: Vec<ObjectRef> = planned.previous.clone();
    widened.extend(planned.desired());
    if !planned.changeset.in_sync() || planned.previous.is_empty() {
        planned
            .update_inventory(cluster, app, |current| {
                let mut entries = widened.clone();
                entries.extend(current.into_iter().flat_map(|c| c.entries.iter().cloned()));
                entries.sort();
                entries.dedup();
                Inventory {
                    revision: planned.changeset.revision.clone(),
                    entries,
                    in_sync: Default::default(),
                }
            })
            .await?;
    }
    Ok(())
}

/// Writes the changed objects among `subjects` (all of the plan's with `None`): stage 1
/// (CRDs, Namespaces, ClusterRoles) applied and waited for, discovery refreshed, stage 2
/// in kind order; unchanged objects are not written. `cancel` is checked before every
/// write step: a cancelled sync stops before its next write.
pub(super) async fn write(
    cluster: &Cluster,
    planned: &Planned,
    subjects: Option<&HashSet<&ObjectRef>>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<(), EngineError> {
    let writes: Vec<_> = planned
        .changeset
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Create | Action::Update | Action::Recreate))
        .filter(|c| subjects.is_none_or(|s| s.contains(&c.subject)))
        .collect();
    for wanted_stage in [Stage::Cluster, Stage::Resources] {
        let batch: Vec<_> = writes
            .iter()
            .filter(|c| stage(&c.subject.kind) == wanted_stage)
            .collect();
        if batch.is_empty() {
            continue;
        }
        proceed(cancel)?;
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
                    planned
                        .in_sync
                        .remember(&subject, &manifest.object, &applied);
                    planned.observed(&subject, &applied);
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

    Ok(())
}

/// Drops from the inventory the entries whose objects are gone (neither desired nor
/// live: a sync killed between its prune and the narrowing leaves them) when the plan
/// has nothing else to do, so that the inventory equals the live objects again. Writes
/// nothing when there are none.
pub(super) async fn forget_gone(
    cluster: &Cluster,
    app: &AppKey,
    planned: &Planned,
    cancel: &CancellationToken,
) -> Result<(), EngineError> {
    let mentioned: HashSet<&ObjectRef> = planned
        .changeset
        .changes
        .iter()
        .map(|c| &c.subject)
        .collect();
    let gone: HashSet<&ObjectRef> = planned
        .previous
        .iter()
        .filter(|p| !mentioned.contains(p))
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    proceed(cancel)?;
    planned
        .update_inventory(cluster, app, |current| {
            let mut inventory = current.cloned().unwrap_or_default();
            inventory.entries.retain(|e| !gone.contains(e));
            inventory
        })
        .await?;
    Ok(())
}

/// Prunes, then narrows the inventory to the plan's objects (keeping those whose
/// deletion failed, the Namespaces, CRDs and PersistentVolumes kept by the prune guard,
/// so that they are pruned once allowed, and those another writer added since the plan
/// read it). Runs only when every write succeeded; `cancel` is checked before the prune
/// and before the narrowing.
pub(super) async fn finish(
    cluster: &Cluster,
    app: &AppKey,
    planned: &Planned,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<(), EngineError> {
    failpoint::hit(failpoint::AFTER_APPLY);
    proceed(cancel)?;
    let revision = planned.changeset.revision.clone();
    let desired = planned.desired();
    let prune = prune::prune(cluster, planned, progress, cancel).await;
    failpoint::hit(failpoint::BEFORE_NARROW);
    proceed(cancel)?;
    let mut entries = desired.clone();
    entries.extend(
        planned
            .changeset
            .changes
            .iter()
            .filter(|c| {
                c.action == Action::Orphan
                    && c.reason.as_deref()
                        == Some(crate::plan::reason_guarded(&c.subject.kind).as_str())
            })
            .map(|c| c.subject.clone()),
    );
    let failed = prune
        .as_ref()
        .err()
        .map(|(f, _)| f.clone())
        .unwrap_or_default();
    entries.extend(failed);
    entries.sort();
    entries.dedup();
    if entries != planned.previous || !planned.changeset.in_sync() {
        let known: HashSet<&ObjectRef> = planned.previous.iter().chain(&desired).collect();
        planned
            .update_inventory(cluster, app, |current| {
                let mut entries = entries.clone();
                let added = current.into_iter().flat_map(|c| &c.entries);
                entries.extend(added.filter(|e| !known.contains(e)).cloned());
                entries.sort();
                entries.dedup();
                let in_sync = match planned.keep {
                    true => planned.in_sync.kept(&entries),
                    false => Default::default(),
                };
                Inventory {
                    revision: revision.clone(),
                    entries,
                    in_sync,
                }
            })
            .await?;
    }
    if let Err((failed, first)) = prune {
        return Err(EngineError::Prune {
            count: failed.len(),
            first,
        });
    }
    Ok(())
}
