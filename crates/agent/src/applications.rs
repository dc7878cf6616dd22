//! Apps defined as `Application` resources: a watch keeps the store in step with them,
//! a writer mirrors each app's status into the status subresource, and sync and drift
//! are recorded as Kubernetes Events on the resource. An app's identity is the
//! resource's namespace and name ([`AppKey`]). An invalid resource is not reconciled:
//! its status says `Ready=False`, reason `InvalidSpec`, naming the field, and a Warning
//! Event says the same.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_kube::{Cluster, EventRecorder, Watched};
use ferry_model::AppKey;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Resource, ResourceExt};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::controller::Ctx;
use crate::crd::{Application, ApplicationStatus};
use crate::queue::Trigger;
use crate::state::{AppStatus, Readiness};

/// The Application resources behind apps, and an Event recorder.
pub struct Applications {
    recorder: EventRecorder,
    refs: RwLock<HashMap<AppKey, ObjectReference>>,
}

impl Applications {
    /// A recorder reporting as `ferry-agent` / `identity`.
    pub fn new(cluster: &Cluster, identity: &str) -> Self {
        Self {
            recorder: cluster.event_recorder("ferry-agent", identity),
            refs: Default::default(),
        }
    }

    /// The namespace of the app's Application (`None` for apps from a file).
    pub async fn namespace(&self, app: &AppKey) -> Option<String> {
        self.refs.read().await.get(app)?.namespace.clone()
    }

    /// Records an Event on the app's Application (no-op for apps from a file).
    pub async fn event(&self, app: &AppKey, warning: bool, reason: &str, note: String) {
        let Some(reference) = self.refs.read().await.get(app).cloned() else {
            return;
        };
        self.publish(app, &reference, warning, reason, &note).await;
    }

    async fn publish(
        &self,
        app: &AppKey,
        reference: &ObjectReference,
        warning: bool,
        reason: &str,
        note: &str,
    ) {
        if let Err(e) = self
            .recorder
            .publish(reference, warning, reason, "Reconcile", note)
            .await
        {
            warn!(%app, "cannot record event: {e}");
        }
    }
}

/// The reason of the Ready condition of an invalid Application.
pub const INVALID_SPEC: &str = "InvalidSpec";

/// The field of `app` that is invalid and why, if any: its name (which must fit a label
/// value) or a field of its spec.
fn invalid(key: &AppKey, app: &Application) -> Option<(String, String)> {
    if let Err(e) = key.check() {
        return Some(("metadata.name".into(), e.to_string()));
    }
    app.spec
        .app
        .validate_application(&key.namespace)
        .err()
        .map(|(field, message)| (format!("spec.{field}"), message))
}

/// Shows that `app` is invalid (leader only): `Ready=False` with [`INVALID_SPEC`] and
/// the field in its status, and a Warning Event, each once per generation and message.
async fn report_invalid(
    ctx: &Ctx,
    key: &AppKey,
    app: &Application,
    field: &str,
    message: &str,
    reported: &mut HashMap<AppKey, (Option<i64>, String)>,
) {
    let text = format!("field {field}: {message}");
    warn!(app = %key, "invalid Application: {text}");
    let seen = (app.metadata.generation, text.clone());
    if !*ctx.leader.borrow() || reported.get(key) == Some(&seen) {
        return;
    }
    let mut status = AppStatus::new(key, Default::default());
    status.set_ready(Readiness::Stalled, INVALID_SPEC, &text);
    let value = serde_json::to_value(ApplicationStatus::from(&status)).unwrap_or_default();
    match ctx
        .engine
        .cluster
        .patch_status::<Application>(&key.namespace, &key.name, &value)
        .await
    {
        Ok(_) => {
            reported.insert(key.clone(), seen);
        }
        Err(e) => warn!(app = %key, "cannot write status: {e}"),
    }
    ctx.record
        .applications
        .publish(key, &app.object_ref(&()), true, INVALID_SPEC, &text)
        .await;
}

/// Keeps the store in step with Application resources (in `namespace`, or all).
pub async fn watch(ctx: Arc<Ctx>, namespace: Option<String>, shutdown: CancellationToken) {
    let stream = ctx
        .engine
        .cluster
        .watch_typed::<Application>(namespace.as_deref());
    let mut stream = std::pin::pin!(stream);
    // What was last reported about invalid Applications, so a resync reports nothing new.
    let mut reported = HashMap::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        match event {
            None => return,
            Some(Ok(Watched::Applied(mut app))) => {
                let name = AppKey::new(app.namespace().unwrap_or_default(), app.name_any());
                if let Some((field, message)) = invalid(&name, &app) {
                    // Not reconciled until fixed; its objects stay.
                    if ctx.store.get(&name).await.is_some() {
                        forget(&ctx, &name).await;
                    }
                    report_invalid(&ctx, &name, &app, &field, &message, &mut reported).await;
                    continue;
                }
                reported.remove(&name);
                // Its Secret is in its own namespace, whatever the spec left out.
                if let Some(secret) = &mut app.spec.app.source.secret_ref {
                    secret.namespace = Some(name.namespace.clone());
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
                let name = AppKey::new(app.namespace().unwrap_or_default(), app.name_any());
                info!(app = %name, "Application deleted");
                reported.remove(&name);
                forget(&ctx, &name).await;
            }
            Some(Err(e)) => warn!("Application watch: {e}"),
        }
    }
}

/// Drops an app from the store (its objects stay): deleted, or invalid.
async fn forget(ctx: &Arc<Ctx>, name: &AppKey) {
    ctx.record.applications.refs.write().await.remove(name);
    ctx.store.remove(name).await;
    crate::kept::forget(ctx, name).await;
    ctx.record.metrics.remove_app(name);
    ctx.record.notifier.forget(name);
    ctx.pollers.lock().await.sync(ctx, &ctx.shutdown).await;
}

/// Mirrors app statuses into Application status subresources (leader only).
pub async fn write_statuses(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut changes = ctx.store.subscribe();
    let mut written: HashMap<AppKey, ApplicationStatus> = HashMap::new();
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
        let known = ctx
            .record
            .applications
            .refs
            .read()
            .await
            .contains_key(&name);
        let Some(app) = ctx.store.get(&name).await.filter(|_| known) else {
            // Gone or invalid: a status written later starts afresh.
            written.remove(&name);
            continue;
        };
        let status = ApplicationStatus::from(&app);
        if written.get(&name) == Some(&status) {
            continue;
        }
        let value = serde_json::to_value(&status).unwrap_or_default();
        match ctx
            .engine
            .cluster
            .patch_status::<Application>(&name.namespace, &name.name, &value)
            .await
        {
            Ok(_) => {
                written.insert(name, status);
            }
            Err(e) => warn!(app = %name, "cannot write status: {e}"),
        }
    }
}
