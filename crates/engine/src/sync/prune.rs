//! Prune: delete what left Git, and everything of an app that is removed.

use ferry_kube::{Cluster, Inventory, KubeError};
use ferry_model::{Action, AppKey, ObjectRef, PRUNE_ANNOTATION};

use futures::{StreamExt, stream};
use tokio_util::sync::CancellationToken;

use super::CONCURRENCY;
use super::plan::Planned;
use crate::order::{kind_rank, sort_for_prune};
use crate::plan::{Owner, PRUNE_ALLOW, prune_guarded};
use crate::progress::{Event, Progress};
use crate::{EngineError, failpoint};

/// Deletes the plan's prune entries in prune order (objects of one kind rank in
/// parallel); on failure returns the objects that could not be deleted and the first
/// error. A cancelled sync deletes no further kind rank (those objects count as not
/// deleted).
pub(super) async fn prune(
    cluster: &Cluster,
    planned: &Planned,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<(), (Vec<ObjectRef>, String)> {
    let doomed: Vec<ObjectRef> = planned
        .changeset
        .changes
        .iter()
        .filter(|c| c.action == Action::Prune)
        .map(|c| c.subject.clone())
        .collect();
    if doomed.is_empty() {
        return Ok(());
    }
    progress.event(Event::Phase(format!("pruning {} object(s)", doomed.len())));
    let mut failed = Vec::new();
    let mut first = None;
    let mut rest = doomed.as_slice();
    while let Some(head) = rest.first() {
        if cancel.is_cancelled() {
            first.get_or_insert_with(|| EngineError::Cancelled.to_string());
            failed.extend_from_slice(rest);
            break;
        }
        if rest.len() < doomed.len() {
            failpoint::hit(failpoint::MID_PRUNE);
        }
        let rank = kind_rank(&head.kind);
        let len = rest
            .iter()
            .take_while(|s| kind_rank(&s.kind) == rank)
            .count();
        let (group, tail) = rest.split_at(len);
        rest = tail;
        let results: Vec<(ObjectRef, Result<(), KubeError>)> = stream::iter(group.to_vec())
            .map(|subject| async move {
                let result = cluster.delete(&subject).await;
                (subject, result)
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        for (subject, result) in results {
            match result {
                Ok(()) => progress.event(Event::Pruned(subject)),
                Err(e) => {
                    first.get_or_insert_with(|| e.to_string());
                    failed.push(subject);
                }
            }
        }
    }
    match first {
        None => Ok(()),
        Some(first) => Err((failed, first)),
    }
}

/// Deletes, in prune order, the inventoried objects of `app` that still carry its labels
/// (and no `ferry.dev/prune: disabled`; a [`prune_guarded`] kind only when annotated
/// `ferry.dev/prune: allow`), then the inventory; on failure the inventory keeps the
/// objects not deleted. Returns how many objects were deleted.
pub(super) async fn remove(
    cluster: &Cluster,
    app: &AppKey,
    progress: &dyn Progress,
) -> Result<usize, EngineError> {
    let Some(inventory) = cluster.read_inventory(app).await? else {
        // Shards a crash left behind the head's deletion go too.
        cluster.delete_inventory(app).await?;
        return Ok(0);
    };
    let mut entries = inventory.entries.clone();
    sort_for_prune(&mut entries);
    let mut deleted = 0;
    let mut failed = Vec::new();
    let mut first = None;
    for subject in entries {
        let live = match cluster.get(&subject).await {
            Ok(Some(live)) => live,
            // Gone already, or its kind is no longer served: nothing to delete.
            Ok(None) | Err(KubeError::UnknownKind { .. }) => continue,
            Err(e) => {
                first.get_or_insert(e);
                failed.push(subject);
                continue;
            }
        };
        let metadata = &live["metadata"];
        let owned = Owner::of(&live).is_some_and(|o| o.is(app));
        let annotation = metadata["annotations"][PRUNE_ANNOTATION].as_str();
        let protected = annotation == Some("disabled")
            || (prune_guarded(&subject) && annotation != Some(PRUNE_ALLOW));
        if !owned || protected {
            continue;
        }
        match cluster.delete(&subject).await {
            Ok(()) => {
                progress.event(Event::Pruned(subject));
                deleted += 1;
            }
            Err(e) => {
                first.get_or_insert(e);
                failed.push(subject);
            }
        }
    }
    if let Some(e) = first {
        cluster
            .write_inventory(
                app,
                &Inventory {
                    revision: inventory.revision,
                    entries: failed,
                    in_sync: Default::default(),
                },
            )
            .await?;
        return Err(e.into());
    }
    cluster.delete_inventory(app).await?;
    Ok(deleted)
}
