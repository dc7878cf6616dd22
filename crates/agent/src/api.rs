//! The agent's HTTP surface: health probes, Prometheus metrics, Git webhooks and the
//! JSON API (apps, history, actions) that the CLI and the dashboard use.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferry_api::{
    ActionAccepted, AppDetail, AppList, AppSummary, ErrorBody, HistoryList, HistoryQuery,
    ListQuery, ProjectScope, RollbackBody, WebhookAccepted,
};
use ferry_model::redact_url;

use ferry_model::AppKey;

use crate::controller::Ctx;
use crate::engine::{RepoKey, repo_key};
use crate::kept;
use crate::poller::refresh;
use crate::queue::Trigger;
use crate::webhook::{MAX_BODY, Provider, repo_matches, verify_and_parse};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct Api {
    /// The reconciler context.
    pub ctx: Arc<Ctx>,
    /// Secret for webhook signatures/tokens; webhooks are refused without one.
    pub webhook_secret: Option<Arc<[u8]>>,
}

/// The agent's router.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/hooks/{provider}", post(webhook))
        .route("/api/v1/apps", get(list_apps))
        .route("/api/v1/apps/{namespace}/{name}", get(get_app))
        .route("/api/v1/apps/{namespace}/{name}/history", get(history))
        .route("/api/v1/apps/{namespace}/{name}/{action}", post(action))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// A JSON error answer with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(message))).into_response()
}

/// Liveness probe.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness probe.
#[utoipa::path(get, path = "/readyz", tag = "meta", security(()),
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
async fn readyz() -> &'static str {
    "ok"
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "meta", security(()),
    responses((status = 200, description = "Metrics.", body = String,
        content_type = "application/openmetrics-text")))]
async fn metrics(State(api): State<Api>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        api.ctx.record.metrics.encode(),
    )
        .into_response()
}

/// Git push webhook, authenticated by its signature or token (`--webhook-secret`).
///
/// API tokens play no part here.
#[utoipa::path(post, path = "/hooks/{provider}", operation_id = "webhook", tag = "webhooks",
    security(()),
    params(("provider" = String, Path,
        description = "`github`, `gitlab`, `gitea`, `bitbucket` or `generic`.")),
    request_body(content = Object, description = "The provider's push event."),
    responses(
        (status = 202, description = "Accepted: matching repositories are fetched.",
            body = WebhookAccepted),
        (status = 401, description = "No webhook secret configured, or a bad signature.",
            body = ErrorBody),
        (status = 404, description = "Unknown provider.", body = ErrorBody)))]
async fn webhook(
    State(api): State<Api>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(provider) = Provider::from_path(&provider) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown webhook provider {provider:?}"),
        );
    };
    let Some(secret) = &api.webhook_secret else {
        api.ctx
            .record
            .metrics
            .webhook(provider.name(), "unauthorized");
        return error(
            StatusCode::UNAUTHORIZED,
            "webhooks are disabled: no secret configured",
        );
    };
    let event = match verify_and_parse(provider, &headers, &body, secret) {
        Ok(event) => event,
        Err(e) => {
            api.ctx.record.metrics.webhook(provider.name(), e.result());
            return error(e.status(), e.to_string());
        }
    };
    let branch = event.git_ref.as_deref().map(|r| {
        r.trim_start_matches("refs/heads/")
            .trim_start_matches("refs/tags/")
    });
    let mut keys: Vec<RepoKey> = api
        .ctx
        .store
        .scan(|apps| apps.map(|a| repo_key(&a.spec, &api.ctx.projects)).collect())
        .await;
    // App sets' repositories too, so a set with no app yet hears of its first directory.
    keys.extend(api.ctx.appsets.keys().into_iter().map(|(key, _)| key));
    keys.sort();
    keys.dedup();
    keys.retain(|key| {
        let ref_ok = match (&key.1, branch) {
            (Some(want), Some(got)) => want == got,
            _ => true,
        };
        ref_ok && repo_matches(&key.0, &event.repos)
    });
    api.ctx.record.metrics.webhook(provider.name(), "accepted");
    let ctx = api.ctx.clone();
    let repos = keys.len();
    tokio::spawn(async move {
        for key in keys {
            refresh(&ctx, &key, Trigger::Webhook).await;
        }
    });
    (
        StatusCode::ACCEPTED,
        Json(WebhookAccepted {
            repositories: repos,
        }),
    )
        .into_response()
}

/// List apps, filtered and paginated.
#[utoipa::path(get, path = "/api/v1/apps", operation_id = "listApps", tag = "apps",
    params(ListQuery),
    responses((status = 200, description = "A page of apps.", body = AppList)))]
async fn list_apps(
    State(api): State<Api>,
    scope: Option<Extension<ProjectScope>>,
    Query(q): Query<ListQuery>,
) -> Response {
    let needle = q.q.as_deref().map(str::to_lowercase);
    let scope = scope.map(|s| s.0);
    let limit = q.limit.unwrap_or(100).min(1000);
    let (total, items) = api
        .ctx
        .store
        .scan(|apps| {
            let mut total = 0;
            let mut items: Vec<AppSummary> = Vec::new();
            let matching = apps
                .filter(|a| (q.app_namespace.as_deref()).is_none_or(|ns| a.app_namespace == ns))
                .filter(|a| scope.as_ref().is_none_or(|s| s.allows(a.spec.project())))
                .filter(|a| q.sync.as_deref().is_none_or(|s| a.sync.as_str() == s))
                .filter(|a| {
                    q.health
                        .as_deref()
                        .is_none_or(|h| a.health.to_string() == h)
                })
                .filter(|a| {
                    needle.as_deref().is_none_or(|n| {
                        a.name.contains(n)
                            || redact_url(&a.spec.source.repo).to_lowercase().contains(n)
                            || a.spec.source.path.to_lowercase().contains(n)
                    })
                });
            for a in matching {
                if total >= q.offset && items.len() < limit {
                    items.push(AppSummary::from(a));
                }
                total += 1;
            }
            (total, items)
        })
        .await;
    Json(AppList {
        total,
        offset: q.offset,
        items,
    })
    .into_response()
}

/// The app `namespace/name` of a request path.
pub fn app_key((namespace, name): (String, String)) -> AppKey {
    AppKey::new(namespace, name)
}

/// The answer to a request for an app the agent does not have.
pub fn no_app(key: &AppKey) -> Response {
    error(StatusCode::NOT_FOUND, format!("no app {key}"))
}

/// One app's full status.
#[utoipa::path(get, path = "/api/v1/apps/{namespace}/{name}", operation_id = "getApp",
    tag = "apps",
    params(("namespace" = String, Path, description = "The app's namespace."),
        ("name" = String, Path, description = "App name.")),
    responses(
        (status = 200, description = "The status.", body = AppDetail),
        (status = 404, description = "No such app.", body = ErrorBody)))]
async fn get_app(State(api): State<Api>, Path(path): Path<(String, String)>) -> Response {
    let key = app_key(path);
    match api.ctx.store.get(&key).await {
        Some(app) => Json(app.redacted()).into_response(),
        None => no_app(&key),
    }
}

/// The app's sync history, newest first.
#[utoipa::path(get, path = "/api/v1/apps/{namespace}/{name}/history",
    operation_id = "appHistory", tag = "apps",
    params(("namespace" = String, Path, description = "The app's namespace."),
        ("name" = String, Path, description = "App name."), HistoryQuery),
    responses(
        (status = 200, description = "History entries.", body = HistoryList),
        (status = 404, description = "No such app.", body = ErrorBody)))]
async fn history(
    State(api): State<Api>,
    Path(path): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let key = app_key(path);
    if api.ctx.store.get(&key).await.is_none() {
        return no_app(&key);
    }
    match (api.ctx.record.history).list(&key.to_string(), q.limit.unwrap_or(50)) {
        Ok(items) => Json(HistoryList { items }).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Act on an app (operator role).
///
/// `sync` applies now (also when self-heal is off); `refresh` fetches Git and re-compares;
/// `suspend` / `resume` stop and restart reconciling (resume also clears a rollback pin);
/// `rollback` pins a history entry's revision or a Git revision. Requests must carry
/// `Authorization` or `Content-Type: application/json`, and an `Origin`, if any, matching
/// the host.
#[utoipa::path(post, path = "/api/v1/apps/{namespace}/{name}/{action}",
    operation_id = "appAction", tag = "actions",
    params(("namespace" = String, Path, description = "The app's namespace."),
        ("name" = String, Path, description = "App name."),
        ("action" = String, Path,
            description = "`sync`, `refresh`, `suspend`, `resume` or `rollback`.")),
    request_body(content = Option<RollbackBody>, description = "For `rollback` only."),
    responses(
        (status = 202, description = "Accepted: the reconcile is queued.",
            body = ActionAccepted),
        (status = 400, description = "Bad rollback body.", body = ErrorBody),
        (status = 404, description = "No such app, action or history entry.",
            body = ErrorBody),
        (status = 503, description = "This agent is standing by, or the change cannot be kept in the cluster.",
            body = ErrorBody)))]
async fn action(
    State(api): State<Api>,
    Path((namespace, name, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let ctx = &api.ctx;
    let name = AppKey::new(namespace, name);
    let Some(app) = ctx.store.get(&name).await else {
        return no_app(&name);
    };
    match action.as_str() {
        "sync" => {
            ctx.enqueue(&name, Trigger::Manual);
        }
        "refresh" => {
            let ctx = ctx.clone();
            let key = repo_key(&app.spec, &ctx.projects);
            tokio::spawn(async move { refresh(&ctx, &key, Trigger::Manual).await });
        }
        "suspend" | "resume" => {
            let suspend = action == "suspend";
            let changed = kept::change(ctx, &name, |s| {
                s.suspended = suspend;
                if !suspend {
                    s.pinned = None;
                }
            });
            if let Err(response) = keep(ctx, changed).await {
                return response;
            }
            ctx.enqueue(&name, Trigger::Manual);
        }
        "rollback" => {
            let target = match serde_json::from_slice::<RollbackBody>(&body) {
                Ok(b) => b.target,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
            };
            let revision = match target.parse::<u64>() {
                Ok(id) if target.len() < 7 => match ctx.record.history.get(id) {
                    Ok(Some(entry)) if entry.app == name.to_string() => entry.revision,
                    Ok(_) => {
                        return error(
                            StatusCode::NOT_FOUND,
                            format!("no history entry {id} for app {name}"),
                        );
                    }
                    Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                },
                _ => target,
            };
            if revision.is_empty() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "that history entry has no revision",
                );
            }
            let changed = kept::change(ctx, &name, |s| s.pinned = Some(revision.clone()));
            if let Err(response) = keep(ctx, changed).await {
                return response;
            }
            ctx.enqueue(&name, Trigger::Rollback);
            return accepted(name, action, Some(revision));
        }
        other => return error(StatusCode::NOT_FOUND, format!("unknown action {other:?}")),
    }
    accepted(name, action, None)
}

fn accepted(app: AppKey, action: String, revision: Option<String>) -> Response {
    let body = ActionAccepted {
        app: app.to_string(),
        action,
        revision,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Runs a change to what is kept (suspension, pin) on the leader only: only the leader
/// writes, and the standby loads what is kept when it takes over. The error response
/// says why nothing changed.
async fn keep(
    ctx: &Ctx,
    change: impl Future<Output = Result<bool, ferry_kube::KubeError>>,
) -> Result<(), Response> {
    if !*ctx.leader.borrow() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this agent is standing by (another agent holds the lease): send the action to the leader",
        ));
    }
    change.await.map(drop).map_err(|e| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot keep the change in the cluster, nothing changed: {e}"),
        )
    })
}
