//! The agent's dashboard and the API behind it.
//!
//! [`router`] takes the agent's own router (apps, history, actions, metrics, webhooks)
//! and adds:
//!
//! - the web UI at `/` (plain HTML, CSS and JavaScript compiled into the binary);
//! - `GET /api/v1/apps/{namespace}/{name}/tree`: inventory objects and what they own, with health;
//! - `GET /api/v1/apps/{namespace}/{name}/diff`: a fresh desired-vs-live plan with drift explained;
//! - `GET /api/v1/apps/{namespace}/{name}/resource`: one object's live YAML, diff and field managers;
//! - `GET /api/v1/apps/{namespace}/{name}/events`: Kubernetes Events about the app's objects;
//! - `GET /api/v1/stream`: Server-Sent Events of app status changes;
//! - `GET /api/v1/whoami`: the caller's role;
//! - `GET /api/openapi.json`: the OpenAPI 3 document of every route ([`OPENAPI`],
//!   generated from the `ferry-api` types by [`openapi_document`]);
//!
//! and wraps everything in [`auth::guard`]: bearer tokens with viewer and operator roles
//! (optionally limited to projects, enforced by [`auth::limit`]), loopback-only without
//! tokens, and refusal of cross-site writes. Secret values never
//! leave the agent: diffs, YAML and drift reports are masked or carry field names only.

pub mod auth;
pub mod tree;

mod assets;
mod handlers;
mod openapi;
mod stream;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use auth::{Auth, AuthError, Role};
use ferry_agent::api::error as error_response;
pub use handlers::WebError;
pub use openapi::document as openapi_document;

/// The OpenAPI 3 document of the agent's HTTP API as checked in (`crates/web/openapi.json`);
/// a test keeps it equal to [`openapi_document`].
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The agent's router `agent` plus the dashboard and its API, all behind `auth`. Must be
/// called inside a Tokio runtime: it starts a task noting when apps drift.
pub fn router(api: ferry_agent::api::Api, agent: Router, auth: Arc<Auth>) -> Router {
    let web_store = api.ctx.store.clone();
    let web = handlers::Web::new(api);
    tokio::spawn(handlers::track_drift(web.clone()));
    let dashboard = Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::asset))
        .route("/api/openapi.json", get(assets::openapi))
        .route("/api/v1/whoami", get(handlers::whoami))
        .route("/api/v1/stream", get(stream::stream))
        .route("/api/v1/apps/{namespace}/{name}/tree", get(handlers::tree))
        .route("/api/v1/apps/{namespace}/{name}/diff", get(handlers::diff))
        .route(
            "/api/v1/apps/{namespace}/{name}/resource",
            get(handlers::resource),
        )
        .route(
            "/api/v1/apps/{namespace}/{name}/events",
            get(handlers::events),
        )
        .with_state(web);
    let store = web_store.clone();
    agent
        .merge(dashboard)
        .layer(axum::middleware::from_fn_with_state(store, auth::limit))
        .layer(axum::middleware::from_fn_with_state(auth, auth::guard))
}
