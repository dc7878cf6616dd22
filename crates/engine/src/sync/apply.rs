//! Apply: widen the inventory, write a plan's objects in stages (all at once, or wave by
//! wave), then prune and narrow the inventory.

use std::collections::HashSet;
use std::time::Duration;

use ferry_kube::{Cluster, Inventory};
use ferry_model::{Action, AppSpec, ObjectRef};
use futures::{StreamExt, TryStreamExt, stream};
use tokio_util::sync::CancellationToken;

use super::memo::knowledge;
use super::plan::Planned;
use super::{CONCURRENCY, prune};
use crate::order::{Stage, stage};
use crate::progress::{Event, Progress};
use crate::{EngineError, wait};

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
/// loses track of an object).
pub(super) async fn begin(
    cluster: &Cluster,
    app: &str,
    planned: &Planned,
) -> Result<(), EngineError> {
    let mut widened: Vec<ObjectRef> = planned.previous.clone();
    widened.extend(planned.desired());
    if !planned.changeset.in_sync() || planned.previous.is_empty() {
        cluster
            .write_inventory(
                app,
                &Inventory {
                    revision: planned.changeset.revision.clone(),
                    entries: widened,
                    in_sync: Default::default(),
                },
            )
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
    let check = || match cancel.is_cancelled() {
        true => Err(EngineError::Cancelled),
        false => Ok(()),
    };
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
        check()?;
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
                    let known = knowledge(&manifest.object, &applied);
                    planned.in_sync.remember(&subject, known, &applied);
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

/// Prunes, then narrows the inventory to the plan's objects (keeping those whose
/// deletion failed). Runs only when every write succeeded.
pub(super) async fn finish(
    cluster: &Cluster,
    app: &str,
    planned: &Planned,
    progress: &dyn Progress,
) -> Result<(), EngineError> {
    let revision = planned.changeset.revision.clone();
    let desired = planned.desired();
    let prune = prune::prune(cluster, planned, progress).await;
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
    Ok(())
}
