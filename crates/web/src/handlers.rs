//! The dashboard's JSON endpoints beyond the agent's own: resource tree, live diff,
//! one object (live YAML, diff, drift explained), events, the caller's role.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_agent::api::Api;
use ferry_agent::state::AppStatus;
use ferry_api::{
    Comparison, Diff, DiffChange, ErrorBody, Events, ObjectQuery, Resource, Tree, WhoAmI,
};
use ferry_engine::diff::{mask_secret, normalize, to_yaml, unified};
use ferry_engine::progress::Silent;
use ferry_engine::source::Rendered;
use ferry_engine::{Sync, SyncOptions};
use ferry_model::{Action, AppKey, Health, HealthStatus, ObjectRef, Project};
use ferry_plan::drift::{explain, manager_infos};
use serde_json::Value;

use crate::auth::Role;
use crate::tree::{self, CHILD_KINDS};

/// Shared state of the dashboard's handlers.
#[derive(Clone)]
pub struct Web {
    /// The agent's API state (reconciler context).
    pub api: Api,
    /// When each drifted app was first seen out of sync ([`track_drift`]).
    drift_since: Arc<Mutex<HashMap<AppKey, SystemTime>>>,
}

impl Web {
    /// Wraps the agent's API state.
    pub fn new(api: Api) -> Self {
        Self {
            api,
            drift_since: Default::default(),
        }
    }

    fn drift_since(&self, app: &AppKey) -> Option<SystemTime> {
        self.drift_since
            .lock()
            .expect("drift_since")
            .get(app)
            .copied()
    }
}

/// Notes when each app starts to drift (and forgets it once in sync again), until the
/// agent shuts down: the time reported for a field whose manager left no time.
pub async fn track_drift(web: Web) {
    let ctx = web.api.ctx.clone();
    let mut rx = ctx.store.subscribe();
    loop {
        let name = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            next = rx.recv() => match next {
                Ok(name) => name,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        let drifted = ctx
            .store
            .get(&name)
            .await
            .is_some_and(|s| !s.drifted.is_empty());
        let mut since = web.drift_since.lock().expect("drift_since");
        if drifted {
            since.entry(name).or_insert_with(SystemTime::now);
        } else {
            since.remove(&name);
        }
    }
}

/// Why a dashboard request failed.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No such app.
    #[error("no app {0}")]
    NoApp(AppKey),
    /// The object is not part of the app.
    #[error("{subject} is not an object of app {app}")]
    NotOfApp {
        /// The object asked for.
        subject: Box<ObjectRef>,
        /// The app.
        app: AppKey,
    },
    /// The app has not been reconciled yet, so there is no revision to compare with.
    #[error("app {0} has no revision yet: it has not been reconciled")]
    NoRevision(AppKey),
    /// Rendering or planning failed.
    #[error(transparent)]
    Engine(#[from] ferry_engine::EngineError),
    /// The cluster refused or is unreachable.
    #[error(transparent)]
    Kube(#[from] ferry_kube::KubeError),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = match &self {
            WebError::NoApp(_) | WebError::NotOfApp { .. } => StatusCode::NOT_FOUND,
            WebError::NoRevision(_) => StatusCode::CONFLICT,
            WebError::Engine(_) | WebError::Kube(_) => StatusCode::BAD_GATEWAY,
        };
        let message = ferry_model::redact_text(&self.to_string()).into_owned();
        crate::error_response(status, message)
    }
}

async fn app(web: &Web, name: &AppKey) -> Result<AppStatus, WebError> {
    web.api
        .ctx
        .store
        .get(name)
        .await
        .ok_or_else(|| WebError::NoApp(name.clone()))
}

/// The path parameters of an app's routes, `{namespace}/{name}`.
fn key((namespace, name): (String, String)) -> AppKey {
    AppKey::new(namespace, name)
}

/// The app's inventory: the objects of its last reconcile, else its inventory ConfigMap.
async fn roots(web: &Web, status: &AppStatus) -> Result<Vec<ObjectRef>, WebError> {
    if !status.objects.is_empty() {
        return Ok(status.objects.iter().map(|o| o.subject.clone()).collect());
    }
    Ok(web
        .api
        .ctx
        .engine
        .cluster
        .read_inventory(&status.key())
        .await?
        .map(|i| i.entries)
        .unwrap_or_default())
}

/// The caller's role.
#[utoipa::path(get, path = "/api/v1/whoami", operation_id = "whoami", tag = "apps",
    responses((status = 200, description = "The role.", body = WhoAmI)))]
pub async fn whoami(role: Option<axum::Extension<Role>>) -> Response {
    let role = role.map_or(Role::Viewer, |r| r.0);
    Json(WhoAmI { role }).into_response()
}

/// Resource tree: inventory objects and what they own (ownerReferences), with health.
#[utoipa::path(get, path = "/api/v1/apps/{namespace}/{name}/tree", operation_id = "appTree", tag = "apps",
    params(("namespace" = String, Path, description = "The app's namespace."),
        ("name" = String, Path, description = "App name.")),
    responses(
        (status = 200, description = "The tree.", body = Tree),
        (status = 404, description = "No such app.", body = ErrorBody),
        (status = 502, description = "The cluster failed.", body = ErrorBody)))]
pub async fn tree(
    State(web): State<Web>,
    Path(path): Path<(String, String)>,
) -> Result<Response, WebError> {
    let name = key(path);
    let status = app(&web, &name).await?;
    let roots = roots(&web, &status).await?;
    let nodes = tree::build(&web.api.ctx.engine.cluster, &roots, &status.drifted).await?;
    let tree = Tree {
        app: name.to_string(),
        revision: status.revision,
        nodes,
    };
    Ok(Json(tree).into_response())
}

/// Kubernetes Events about the app's objects, newest first (at most 100).
#[utoipa::path(get, path = "/api/v1/apps/{namespace}/{name}/events", operation_id = "appEvents",
    tag = "apps",
    params(("namespace" = String, Path, description = "The app's namespace."),
        ("name" = String, Path, description = "App name.")),
    responses(
        (status = 200, description = "The events.", body = Events),
        (status = 404, description = "No such app.", body = ErrorBody),
        (status = 502, description = "The cluster failed.", body = ErrorBody)))]
pub async fn events(
    State(web): State<Web>,
    Path(path): Path<(String, String)>,
) -> Result<Response, WebError> {
    let name = key(path);
    let status = app(&web, &name).await?;
    let roots = roots(&web, &status).await?;
    let cluster = &web.api.ctx.engine.cluster;
    let nodes = tree::build(cluster, &roots, &[]).await?;
    let extra: Vec<&str> = status
        .spec
        .destination
        .namespace
        .as_deref()
        .into_iter()
        .collect();
    let items = tree::events(cluster, &name, &nodes, &extra).await?;
    Ok(Json(Events { items }).into_response())
}

/// The app's manifests at its current revision (the agent's render cache).
async fn rendered(web: &Web, status: &AppStatus) -> Result<Rendered, WebError> {
    if status.revision.is_empty() {
        return Err(WebError::NoRevision(status.key()));
    }
    let ctx = &web.api.ctx;
    let credentials = ctx.projects.credentials(&status.spec);
    Ok(ctx
        .engine
        .render(&status.name, &status.spec, &credentials, &status.revision)
        .await?)
}

/// The desired object for `subject` as ferry would apply it (namespace defaulted,
/// ownership label set), or `None` when Git has no such object.
async fn desired_manifest(
    web: &Web,
    status: &AppStatus,
    tenancy: &Tenancy,
    subject: &ObjectRef,
) -> Result<Option<Value>, WebError> {
    let rendered = rendered(web, status).await?;
    Ok(sync(web, status, tenancy)
        .desired(&rendered, subject)
        .await?)
}

/// An app's project and the namespace of its Application: its dry runs impersonate the
/// project's service account and are bounded by the project, as its syncs are.
struct Tenancy {
    key: AppKey,
    project: Project,
    app_namespace: Option<String>,
}

impl Tenancy {
    async fn of(web: &Web, status: &AppStatus) -> Result<Self, WebError> {
        let ctx = &web.api.ctx;
        let key = status.key();
        Ok(Self {
            project: ctx.projects.of(&status.name, &status.spec).await?,
            app_namespace: ctx.record.applications.namespace(&key).await,
            key,
        })
    }
}

/// The engine's sync of the app (used here for dry runs only).
fn sync<'a>(web: &'a Web, status: &'a AppStatus, tenancy: &'a Tenancy) -> Sync<'a> {
    Sync::new(&web.api.ctx.engine.cluster, &tenancy.key, &status.spec)
        .in_project(&tenancy.project, tenancy.app_namespace.as_deref())
}

/// Compares one object with Git through a server-side-apply dry-run.
async fn compare(
    web: &Web,
    status: &AppStatus,
    tenancy: &Tenancy,
    subject: &ObjectRef,
    live: Option<&Value>,
) -> Comparison {
    let desired = match desired_manifest(web, status, tenancy, subject).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return Comparison {
                error: Some("not in Git at the app's revision".into()),
                ..Default::default()
            };
        }
        Err(e) => {
            return Comparison {
                error: Some(ferry_model::redact_text(&e.to_string()).into_owned()),
                ..Default::default()
            };
        }
    };
    let Some(live) = live else {
        return Comparison {
            diff: unified(subject, None, Some(&desired)),
            desired_yaml: Some(to_yaml(&mask_secret(&normalize(&desired)))),
            ..Default::default()
        };
    };
    match sync(web, status, tenancy).dry_run(&desired).await {
        Ok(dry_run) => Comparison {
            diff: unified(subject, Some(live), Some(&normalize(&dry_run))),
            desired_yaml: Some(to_yaml(&mask_secret(&normalize(&dry_run)))),
            drift: explain(
                live,
                &dry_run,
                SystemTime::now(),
                web.drift_since(&tenancy.key),
            ),
            error: None,
        },
        Err(e) => Comparison {
            desired_yaml: Some(to_yaml(&mask_secret(&normalize(&desired)))),
            error: Some(format!("dry-run failed: {e}")),
            ..Default::default()
        },
    }
}

/// The live object as YAML for people: no managedFields, Secret values masked.
fn live_yaml(live: &Value) -> String {
    let mut shown = mask_secret(live);
    if let Some(meta) = shown.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    to_yaml(&shown)
}

/// One object of the app: live YAML, desired vs live diff, drift explained, field managers.
#[utoipa::path(get, path = "/api/v1/apps/{namespace}/{name}/resource", operation_id = "appResource",
    tag = "apps",
    params(("namespace" = String, Path, description = "The app's namespace."),
        ("name" = String, Path, description = "App name."), ObjectQuery),
    responses(
        (status = 200, description = "The object.", body = Resource),
        (status = 400, description = "A required query parameter is missing."),
        (status = 404, description = "No such app, or the object is not the app's.",
            body = ErrorBody),
        (status = 502, description = "The cluster failed.", body = ErrorBody)))]
pub async fn resource(
    State(web): State<Web>,
    Path(path): Path<(String, String)>,
    Query(q): Query<ObjectQuery>,
) -> Result<Response, WebError> {
    let name = key(path);
    let status = app(&web, &name).await?;
    let api_version = if q.group.is_empty() {
        q.version.clone()
    } else {
        format!("{}/{}", q.group, q.version)
    };
    let subject = ObjectRef::new(&api_version, &q.kind, q.namespace.as_deref(), &q.name);
    let roots = roots(&web, &status).await?;
    let managed = roots.contains(&subject);
    let namespace_of_app = subject.namespace.as_deref().is_some_and(|ns| {
        roots.iter().any(|r| r.namespace.as_deref() == Some(ns))
            || status.spec.destination.namespace.as_deref() == Some(ns)
    });
    let child = CHILD_KINDS
        .iter()
        .any(|(v, k)| *k == subject.kind && ObjectRef::new(v, k, None, "").group == subject.group);
    let of_app = managed || (child && namespace_of_app);
    if !of_app {
        return Err(WebError::NotOfApp {
            subject: Box::new(subject),
            app: name,
        });
    }
    let live = web.api.ctx.engine.cluster.get(&subject).await?;
    let health = live.as_ref().map_or_else(
        || Health::new(HealthStatus::NotFound, "object not found"),
        ferry_engine::health::health,
    );
    let comparison = if managed {
        let tenancy = Tenancy::of(&web, &status).await?;
        Some(compare(&web, &status, &tenancy, &subject, live.as_ref()).await)
    } else {
        None
    };
    let resource = Resource {
        managed,
        exists: live.is_some(),
        health,
        yaml: live.as_ref().map(live_yaml),
        managers: live.as_ref().map(manager_infos).unwrap_or_default(),
        comparison,
        subject,
    };
    Ok(Json(resource).into_response())
}

/// A fresh plan at the app's revision against the cluster, with drift explained.
///
/// The plan uses server-side-apply dry-runs: nothing is written.
#[utoipa::path(get, path = "/api/v1/apps/{namespace}/{name}/diff", operation_id = "appDiff", tag = "apps",
    params(("namespace" = String, Path, description = "The app's namespace."),
        ("name" = String, Path, description = "App name.")),
    responses(
        (status = 200, description = "Per-object changes.", body = Diff),
        (status = 404, description = "No such app.", body = ErrorBody),
        (status = 409, description = "The app has not been reconciled yet.", body = ErrorBody),
        (status = 502, description = "Rendering or the cluster failed.", body = ErrorBody)))]
pub async fn diff(
    State(web): State<Web>,
    Path(path): Path<(String, String)>,
) -> Result<Response, WebError> {
    let name = key(path);
    let status = app(&web, &name).await?;
    let rendered = rendered(&web, &status).await?;
    let cluster = &web.api.ctx.engine.cluster;
    let opts = SyncOptions {
        dry_run: true,
        ..Default::default()
    };
    let tenancy = Tenancy::of(&web, &status).await?;
    let changeset = sync(&web, &status, &tenancy)
        .run(&rendered, &opts, &Silent)
        .await?
        .changeset;
    let mut changes = Vec::with_capacity(changeset.changes.len());
    for c in &changeset.changes {
        let drift = if c.action == Action::Update {
            let live = cluster.get(&c.subject).await?;
            compare(&web, &status, &tenancy, &c.subject, live.as_ref())
                .await
                .drift
        } else {
            Vec::new()
        };
        changes.push(DiffChange {
            subject: c.subject.clone(),
            action: c.action,
            diff: c.diff.clone(),
            reason: c.reason.clone(),
            drift,
        });
    }
    let diff = Diff {
        app: name.to_string(),
        revision: status.revision,
        in_sync: changeset.in_sync(),
        summary: changeset.summary(),
        changes,
    };
    Ok(Json(diff).into_response())
}
