//! The OpenAPI document of every route the agent serves, generated from the handlers'
//! `#[utoipa::path]` attributes and the `ferry-api` types. The agent serves the checked-in
//! copy ([`crate::OPENAPI`]); a test fails when it differs from [`document`].

use ferry_api::{AppRemoved, AppSummary, ErrorBody};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferry agent API",
        description = "The HTTP API of `ferry agent`: apps, history, actions, resource trees, \
            live diffs with drift explained, events and a live stream; the dashboard at `/` \
            uses nothing else. With API tokens configured (`--token ROLE:TOKEN`, \
            `--tokens-file`), every `/api/v1` request needs `Authorization: Bearer <token>`: \
            a viewer token reads, an operator token also acts. Without tokens the agent \
            listens on localhost only and every local caller is an operator. Secret values \
            never appear in any answer."
    ),
    servers((url = "/")),
    security(("bearer" = []), ()),
    tags((name = "apps"), (name = "actions"), (name = "dashboard"), (name = "webhooks"), (name = "meta")),
    paths(
        crate::assets::index,
        crate::assets::asset,
        crate::assets::openapi,
        ferry_agent::api::healthz,
        ferry_agent::api::readyz,
        ferry_agent::api::metrics,
        ferry_agent::api::webhook,
        crate::handlers::whoami,
        crate::stream::stream,
        ferry_agent::api::list_apps,
        ferry_agent::api::get_app,
        ferry_agent::api::history,
        crate::handlers::tree,
        crate::handlers::diff,
        crate::handlers::resource,
        crate::handlers::events,
        ferry_agent::api::action,
    ),
    components(schemas(AppSummary, AppRemoved)),
    modifiers(&TokenAuth)
)]
struct ApiDoc;

/// Adds the bearer token scheme, and the answers of [`crate::auth::guard`] to every
/// `/api/v1` operation.
struct TokenAuth;

impl Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An API token given to the agent with --token or --tokens-file.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
        let error = |description: &str| {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build();
            ResponseBuilder::new()
                .description(description)
                .content("application/json", body)
                .build()
        };
        let guarded = openapi
            .paths
            .paths
            .iter_mut()
            .filter(|(path, _)| path.starts_with("/api/v1/"));
        for (_, item) in guarded {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                responses.entry("401".into()).or_insert_with(|| {
                    error("No or invalid token (only when tokens are configured).").into()
                });
                responses.entry("403".into()).or_insert_with(|| {
                    error(
                        "Refused: not addressed to localhost without tokens, cross-site, or a \
                         viewer token on an action.",
                    )
                    .into()
                });
            }
        }
    }
}

/// The OpenAPI 3 document of the agent's HTTP API, as pretty-printed JSON with a final
/// newline (the form checked in as `crates/web/openapi.json`).
pub fn document() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    json.push('\n');
    json
}
