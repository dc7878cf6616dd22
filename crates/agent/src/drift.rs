//! Drift detection: one watch per kind in use, shared by all apps; a change to an
//! object labelled `ferry.dev/app=<app>` queues that app, whose reconcile then
//! compares the live object with Git (no polling of the cluster). A change to nothing
//! but the object's status (a controller reporting progress) queues a health check
//! only, which plans nothing. Every event also updates the objects' health kept in
//! [`crate::live::LiveHealth`], so that health check reads memory, not the API server.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use ferry_kube::WatchEvent;
use ferry_model::{APP_LABEL, ObjectRef};
use ferry_plan::diff::without_write_stamps;
use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::controller::Ctx;
use crate::queue::Trigger;

/// The kinds being watched: (group, kind) → the watch task.
#[derive(Default)]
pub struct Watches {
    kinds: HashMap<(String, String), JoinHandle<()>>,
}

impl Watches {
    /// Makes sure each object's kind is watched.
    pub async fn ensure(
        &mut self,
        ctx: &Arc<Ctx>,
        objects: &[ObjectRef],
        shutdown: &CancellationToken,
    ) {
        for o in objects {
            let key = (o.group.clone(), o.kind.clone());
            if self.kinds.contains_key(&key) {
                continue;
            }
            let resolved = match ctx.engine.cluster.resolve(&o.api_version(), &o.kind).await {
                Ok(r) => r,
                Err(e) => {
                    warn!("cannot watch {}: {e}", o.kind);
                    continue;
                }
            };
            let stream = ctx.engine.cluster.watch(&resolved, APP_LABEL);
            let ctx = ctx.clone();
            let shutdown = shutdown.clone();
            let (group, kind) = key.clone();
            let handle = tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                let mut seen = Fingerprints::default();
                loop {
                    let event = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        e = stream.next() => e,
                    };
                    let Some(event) = event else { return };
                    let (object, trigger) = match event {
                        Ok(WatchEvent::Changed(o)) => {
                            ctx.live.changed(&o);
                            let trigger = match seen.changed(&o) {
                                // A sync's own write: nothing to compare, only health.
                                Trigger::Drift if own_write(&ctx, &o) => Trigger::Health,
                                trigger => trigger,
                            };
                            (o, trigger)
                        }
                        Ok(WatchEvent::Deleted(o)) => {
                            ctx.live.deleted(&o);
                            seen.deleted(&o);
                            (o, Trigger::Drift)
                        }
                        Ok(WatchEvent::Relisting) => {
                            ctx.live.relisting(&group, &kind);
                            continue;
                        }
                        Ok(WatchEvent::Resynced) => {
                            ctx.live.listed(&group, &kind);
                            continue;
                        }
                        Err(e) => {
                            warn!(%kind, "watch error: {e}");
                            continue;
                        }
                    };
                    let Some(app) = object
                        .pointer("/metadata/labels")
                        .and_then(|l| l.get(APP_LABEL))
                        .and_then(|v| v.as_str())
                    else {
                        continue;
                    };
                    if trigger == Trigger::Health && ctx.check_health_now(app).await {
                        continue;
                    }
                    if ctx.store.get(app).await.is_some() {
                        debug!(%kind, %app, ?trigger, "live change");
                        ctx.enqueue(app, trigger);
                    }
                }
            });
            self.kinds.insert(key, handle);
        }
    }
}

/// Whether `object` is, at its resourceVersion, as a sync of ferry wrote it.
fn own_write(ctx: &Ctx, object: &Value) -> bool {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| (ctx.engine.in_sync).wrote(&ferry_kube::object_ref(object), v))
}

/// The last seen fingerprint of each object of one kind, to tell a status-only change
/// from an edit.
#[derive(Default)]
struct Fingerprints(HashMap<(String, String), u64>);

impl Fingerprints {
    /// [`Trigger::Health`] when only the object's status (or bookkeeping such as its
    /// resourceVersion and managedFields) changed since it was last seen; otherwise
    /// [`Trigger::Drift`], also for an object seen for the first time.
    fn changed(&mut self, object: &Value) -> Trigger {
        let print = fingerprint(object);
        match self.0.insert(key(object), print) {
            Some(previous) if previous == print => Trigger::Health,
            _ => Trigger::Drift,
        }
    }

    fn deleted(&mut self, object: &Value) {
        self.0.remove(&key(object));
    }
}

fn key(object: &Value) -> (String, String) {
    let field = |f: &str| {
        object["metadata"][f]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    (field("namespace"), field("name"))
}

/// A hash of everything but the status and the fields the API server changes on every
/// write.
fn fingerprint(object: &Value) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    without_write_stamps(object).to_string().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_only_changes_ask_for_a_health_check() {
        let mut seen = Fingerprints::default();
        let deploy = |replicas: u64, ready: u64, rv: &str| {
            json!({
                "metadata": {"name": "web", "namespace": "ns", "resourceVersion": rv,
                             "managedFields": [{"manager": rv}]},
                "spec": {"replicas": replicas},
                "status": {"readyReplicas": ready},
            })
        };
        assert_eq!(
            seen.changed(&deploy(1, 0, "1")),
            Trigger::Drift,
            "first sight"
        );
        assert_eq!(seen.changed(&deploy(1, 1, "2")), Trigger::Health);
        assert_eq!(
            seen.changed(&deploy(3, 1, "3")),
            Trigger::Drift,
            "spec edited"
        );
        assert_eq!(seen.changed(&deploy(3, 1, "4")), Trigger::Health);
        let mut other = deploy(3, 1, "5");
        other["metadata"]["name"] = json!("api");
        assert_eq!(seen.changed(&other), Trigger::Drift, "another object");
        let mut labelled = deploy(3, 1, "6");
        labelled["metadata"]["labels"] = json!({"x": "y"});
        assert_eq!(seen.changed(&labelled), Trigger::Drift, "metadata edited");
        seen.deleted(&labelled);
        assert_eq!(seen.changed(&labelled), Trigger::Drift, "re-created");
    }
}
