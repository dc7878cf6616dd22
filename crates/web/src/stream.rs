//! `GET /api/v1/stream`: Server-Sent Events of app status changes, from
//! [`ferry_agent::state::Store::subscribe`].
//!
//! Events: `ready` once connected; `app` with the app's list row (the same JSON as an
//! item of `GET /api/v1/apps`) whenever its status changes; `removed` with `{"name"}`
//! when an app is gone; `resync` when this client fell behind and should reload the
//! list. The stream ends when the agent shuts down, so it never holds up a graceful exit.

use std::collections::HashSet;
use std::convert::Infallible;

use axum::extract::{Extension, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use ferry_api::{AppRemoved, AppSummary, ProjectScope};
use ferry_model::AppKey;
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::handlers::Web;

/// The `removed` event of `app`.
fn removed(app: AppKey) -> AppRemoved {
    AppRemoved {
        name: app.name,
        app_namespace: app.namespace,
    }
}

fn event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_else(|_| "{}".into()))
}

/// Server-Sent Events of app status changes.
///
/// Events: `ready` (`{}`) once connected; `app` (an AppSummary) whenever an app's status
/// changes; `removed` (an AppRemoved) when an app is gone; `resync` (`{}`) when the
/// client fell behind and should reload the list. Comment lines keep the connection alive.
#[utoipa::path(get, path = "/api/v1/stream", operation_id = "stream", tag = "apps",
    responses((status = 200, description = "An event stream.", body = String,
        content_type = "text/event-stream")))]
pub async fn stream(
    State(web): State<Web>,
    scope: Option<Extension<ProjectScope>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ctx = web.api.ctx.clone();
    let rx = ctx.store.subscribe();
    // A token limited to projects hears of its apps only: their changes, and the
    // removal of an app it was shown (or could list when it connected).
    let scope = scope.map(|s| s.0);
    let shown: HashSet<AppKey> = match &scope {
        Some(scope) => {
            ctx.store
                .scan(|apps| {
                    apps.filter(|a| scope.allows(a.spec.project()))
                        .map(|a| a.key())
                        .collect()
                })
                .await
        }
        None => HashSet::new(),
    };
    let state = (rx, ctx, true, scope, shown);
    let events =
        futures::stream::unfold(state, |(mut rx, ctx, first, scope, mut shown)| async move {
            if first {
                let ready = event("ready", &json!({}));
                return Some((Ok(ready), (rx, ctx, false, scope, shown)));
            }
            let ev = loop {
                let next = tokio::select! {
                    _ = ctx.shutdown.cancelled() => return None,
                    next = rx.recv() => next,
                };
                match next {
                    Ok(name) => match (ctx.store.get(&name).await, &scope) {
                        (Some(status), Some(scope)) if !scope.allows(status.spec.project()) => {
                            // Moved out of the scope: gone, as far as this token knows.
                            if shown.remove(&name) {
                                break event("removed", &removed(name));
                            }
                        }
                        (Some(status), _) => {
                            if scope.is_some() {
                                shown.insert(name);
                            }
                            break event("app", &AppSummary::from(&status));
                        }
                        (None, Some(_)) if !shown.remove(&name) => {}
                        (None, _) => break event("removed", &removed(name)),
                    },
                    Err(RecvError::Lagged(_)) => break event("resync", &json!({})),
                    Err(RecvError::Closed) => return None,
                }
            };
            Some((Ok(ev), (rx, ctx, false, scope, shown)))
        });
    Sse::new(events).keep_alive(KeepAlive::default())
}
