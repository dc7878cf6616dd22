//! The dashboard's static files, compiled into the binary: no CDN, works offline.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Content-Security-Policy of the dashboard: only its own scripts, styles and API.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

/// The web dashboard (HTML).
#[utoipa::path(get, path = "/", operation_id = "dashboard", tag = "dashboard", security(()),
    responses((status = 200, description = "The single page.", body = String,
        content_type = "text/html")))]
pub async fn index() -> Response {
    file(
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    )
}

/// A static file of the dashboard.
#[utoipa::path(get, path = "/assets/{file}", operation_id = "asset", tag = "dashboard",
    security(()),
    params(("file" = String, Path, description = "`app.js`, `app.css` or `favicon.svg`.")),
    responses(
        (status = 200, description = "The file."),
        (status = 404, description = "No such file.", body = ferry_api::ErrorBody)))]
pub async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => file(
            "text/javascript; charset=utf-8",
            include_bytes!("../assets/app.js"),
        ),
        "app.css" => file(
            "text/css; charset=utf-8",
            include_bytes!("../assets/app.css"),
        ),
        "favicon.svg" => file("image/svg+xml", include_bytes!("../assets/favicon.svg")),
        _ => crate::error_response(StatusCode::NOT_FOUND, format!("no asset {name:?}")),
    }
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", operation_id = "openapi", tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document.", body = Object)))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI).into_response()
}
