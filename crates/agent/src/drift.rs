//! Drift detection: one watch per kind in use, shared by all apps; a change to an
//! object labelled `ferry.dev/app=<app>` queues that app, whose reconcile then
//! compares the live object with Git (no polling of the cluster).

use std::collections::HashMap;
use std::sync::Arc;

use ferry_model::{APP_LABEL, ObjectRef};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::controller::Ctx;
use crate::history::Trigger;

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
            let resolved = match ctx.cluster.resolve(&o.api_version(), &o.kind).await {
                Ok(r) => r,
                Err(e) => {
                    warn!("cannot watch {}: {e}", o.kind);
                    continue;
                }
            };
            let stream = ctx.cluster.watch(&resolved, APP_LABEL);
            let ctx = ctx.clone();
            let shutdown = shutdown.clone();
            let kind = o.kind.clone();
            let handle = tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                loop {
                    let event = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        e = stream.next() => e,
                    };
                    let Some(event) = event else { return };
                    let object = match event {
                        Ok(
                            ferry_kube::WatchEvent::Changed(o) | ferry_kube::WatchEvent::Deleted(o),
                        ) => o,
                        Ok(ferry_kube::WatchEvent::Resynced) => continue,
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
                    if ctx.store.get(app).await.is_some() {
                        debug!(%kind, %app, "live change");
                        ctx.enqueue(app, Trigger::Drift);
                    }
                }
            });
            self.kinds.insert(key, handle);
        }
    }
}
