//! Apps defined as `Application` resources: a watch keeps the store in step with them,
//! a writer mirrors each app's status into the status subresource, and sync and drift
//! are recorded as Kubernetes Events on the resource.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_kube::{Cluster, EventRecorder, Watched};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Resource, ResourceExt};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::controller::Ctx;
use crate::crd::{Application, ApplicationStatus};
use crate::queue::Trigger;

/// The Application resources behind apps, and an Event recorder.
pub struct Applications {
    recorder: EventRecorder,
    refs: RwLock<HashMap<String, ObjectReference>>,
}

impl Applications {
    /// A recorder reporting as `ferry-agent` / `identity`.
    pub fn new(cluster: &Cluster, identity: &str) -> Self {
        Self {
            recorder: cluster.event_recorder("ferry-agent", identity),
            refs: Default::default(),
        }
    }

    /// Records an Event on the app's Application (no-op for apps from a file).
    pub async fn event(&self, app: &str, warning: bool, reason: &str, note: String) {
        let Some(reference) = self.refs.read().await.get(app).cloned() else {
            return;
        };
        if let Err(e) = self
            .recorder
            .publish(&reference, warning, reason, "Reconcile", &note)
            .await
        {
            warn!(%app, "cannot record event: {e}");
        }
    }
}

/// Keeps the store in step with Application resources (in `namespace`, or all).
pub async fn watch(ctx: Arc<Ctx>, namespace: Option<String>, shutdown: CancellationToken) {
    let stream = ctx
        .engine
        .cluster
        .watch_typed::<Application>(namespace.as_deref());
    let mut stream = std::pin::pin!(stream);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        match event {
            None => return,
            Some(Ok(Watched::Applied(mut app))) => {
                let name = app.name_any();
                let namespace = app.namespace().unwrap_or_default();
                if let Err((field, message)) = app.spec.app.validate_application(&namespace) {
                    warn!(app = %name, %namespace, "invalid Application: field {field}: {message}");
                    continue;
                }
                // Its Secret is in its own namespace, whatever the spec left out.
                if let Some(secret) = &mut app.spec.app.source.secret_ref {
                    secret.namespace = Some(namespace);
                }
                let reference = app.object_ref(&());
                ctx.record
                    .applications
                    .refs
                    .write()
                    .await
                    .insert(name.clone(), reference);
                let changed = ctx
                    .store
                    .get(&name)
                    .await
                    .is_none_or(|s| s.spec != app.spec.app);
                if changed {
                    info!(app = %name, "Application added or changed");
                    ctx.store.upsert(&name, app.spec.app.clone()).await;
                    ctx.store
                        .update(&name, |s| s.suspended = app.spec.app.suspend)
                        .await;
                    ctx.pollers.lock().await.sync(&ctx, &ctx.shutdown).await;
                    ctx.enqueue(&name, Trigger::Startup);
                }
            }
            Some(Ok(Watched::Deleted(app))) => {
                let name = app.name_any();
                info!(app = %name, "Application deleted");
                ctx.record.applications.refs.write().await.remove(&name);
                ctx.store.remove(&name).await;
                crate::kept::forget(&ctx, &name).await;
                ctx.record.metrics.remove_app(&name);
                ctx.pollers.lock().await.sync(&ctx, &ctx.shutdown).await;
            }
            Some(Err(e)) => warn!("Application watch: {e}"),
        }
    }
}

/// Mirrors app statuses into Application status subresources (leader only).
pub async fn write_statuses(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut changes = ctx.store.subscribe();
    let mut written: HashMap<String, ApplicationStatus> = HashMap::new();
    loop {
        let name = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = changes.recv() => match n {
                Ok(n) => n,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            },
        };
        if !*ctx.leader.borrow() {
            continue;
        }
        let Some(reference) = ctx
            .record
            .applications
            .refs
            .read()
            .await
            .get(&name)
            .cloned()
        else {
            continue;
        };
        let Some(app) = ctx.store.get(&name).await else {
            continue;
        };
        let status = ApplicationStatus::from(&app);
        if written.get(&name) == Some(&status) {
            continue;
        }
        let namespace = reference.namespace.as_deref().unwrap_or("default");
        let value = serde_json::to_value(&status).unwrap_or_default();
        match ctx
            .engine
            .cluster
            .patch_status::<Application>(namespace, &name, &value)
            .await
        {
            Ok(_) => {
                written.insert(name, status);
            }
            Err(e) => warn!(app = %name, "cannot write status: {e}"),
        }
    }
}
