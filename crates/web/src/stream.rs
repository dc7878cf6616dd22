//! `GET /api/v1/stream`: Server-Sent Events of app status changes, from
//! [`ferry_agent::state::Store::subscribe`].
//!
//! Events: `ready` once connected; `app` with the app's list row (the same JSON as an
//! item of `GET /api/v1/apps`) whenever its status changes; `removed` with `{"name"}`
//! when an app is gone; `resync` when this client fell behind and should reload the
//! list. The stream ends when the agent shuts down, so it never holds up a graceful exit.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use ferry_api::{AppRemoved, AppSummary};
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::handlers::Web;

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
pub async fn stream(State(web): State<Web>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ctx = web.api.ctx.clone();
    let rx = ctx.store.subscribe();
    let events = futures::stream::unfold((rx, ctx, true), |(mut rx, ctx, first)| async move {
        if first {
            let ready = event("ready", &json!({}));
            return Some((Ok(ready), (rx, ctx, false)));
        }
        let next = tokio::select! {
            _ = ctx.shutdown.cancelled() => return None,
            next = rx.recv() => next,
        };
        let ev = match next {
            Ok(name) => match ctx.store.get(&name).await {
                Some(status) => event("app", &AppSummary::from(&status)),
                None => event(
                    "removed",
                    &AppRemoved {
                        name: name.name,
                        app_namespace: name.namespace,
                    },
                ),
            },
            Err(RecvError::Lagged(_)) => event("resync", &json!({})),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(ev), (rx, ctx, false)))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
