//! Who may do what: bearer tokens with a role, checked on every `/api/v1` request, and
//! the guards against cross-site requests.
//!
//! - With tokens configured, every `/api/v1` request needs `Authorization: Bearer
//!   <token>`; a viewer token reads, an operator token also acts (POST). A token given as
//!   `ROLE:PROJECTS:TOKEN` (`viewer:team-a:<token>`, `viewer:team-a+team-b:<token>`) is limited to the apps of
//!   those projects: the guard puts a [`ProjectScope`] into the request, and the list,
//!   the stream and every per-app route ([`limit`]) show only those apps.
//! - Without tokens, the agent must listen on a loopback address ([`Auth::check_listen`])
//!   and answers only requests addressed to a loopback host name (no DNS rebinding); every
//!   local caller is an operator.
//! - A POST must not come from another site: a `Sec-Fetch-Site: cross-site` or an
//!   `Origin` other than the request's own host is refused, and the request must carry
//!   `Authorization` or a JSON `Content-Type`, which no HTML form can send. No cookies are
//!   ever used, so a browser never sends credentials on its own.
//! - `/healthz`, `/readyz`, `/metrics` and the webhooks (`/hooks/…`, signed with their own
//!   secret) are outside this scheme; the dashboard's static files and the OpenAPI
//!   document hold no data and are public.
//!
//! Tokens are kept only as SHA-256 digests, compared in constant time, and never logged
//! or echoed in errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_model::AppKey;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use ferry_api::{ProjectScope, Role};

use crate::error_response;

/// Shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// A token configuration that cannot be used. Messages never contain a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A token spec without `ROLE:`.
    #[error("{origin}: expected ROLE:TOKEN or ROLE:PROJECTS:TOKEN with ROLE viewer or operator")]
    Malformed {
        /// `--token` or `<file>:<line>`.
        origin: String,
    },
    /// A role other than viewer or operator.
    #[error("{origin}: unknown role {role:?} (use viewer or operator)")]
    UnknownRole {
        /// `--token` or `<file>:<line>`.
        origin: String,
        /// The role given.
        role: String,
    },
    /// A token shorter than [`MIN_TOKEN_LEN`].
    #[error("{origin}: the {role} token is shorter than {MIN_TOKEN_LEN} characters")]
    TooShort {
        /// `--token` or `<file>:<line>`.
        origin: String,
        /// Its role.
        role: Role,
    },
    /// The tokens file cannot be read.
    #[error("tokens file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Listening beyond this machine without tokens.
    #[error(
        "refusing to serve the API on {addr} without tokens: anyone who can reach it could \
         sync and roll back apps; give --token operator:<token> (or --tokens-file), or \
         listen on 127.0.0.1"
    )]
    Exposed {
        /// The listen address.
        addr: SocketAddr,
    },
}

/// What a token grants: a role, over every app or over the apps of some projects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The role.
    pub role: Role,
    /// The projects it is limited to; `None`: every app.
    pub projects: Option<ProjectScope>,
}

/// The configured tokens (as digests) and what they grant.
#[derive(Default)]
pub struct Auth {
    tokens: Vec<(Grant, [u8; 32])>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// Parses `ROLE:TOKEN` specs (from `--token`) and the lines of a tokens file (same
    /// form; blank lines and `#` comments skipped).
    pub fn new(specs: &[String], file: Option<&Path>) -> Result<Self, AuthError> {
        let mut auth = Self::default();
        for spec in specs {
            auth.add(spec, "--token")?;
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| AuthError::File {
                path: path.to_path_buf(),
                source,
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                auth.add(line, &format!("{}:{}", path.display(), n + 1))?;
            }
        }
        Ok(auth)
    }

    fn add(&mut self, spec: &str, origin: &str) -> Result<(), AuthError> {
        let Some((role, token)) = spec.trim().split_once(':') else {
            return Err(AuthError::Malformed {
                origin: origin.into(),
            });
        };
        let role = match role.trim() {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            other => {
                // A "role" longer than a word is more likely a mistyped token: don't echo it.
                let role = if other.len() <= 12 { other } else { "…" };
                return Err(AuthError::UnknownRole {
                    origin: origin.into(),
                    role: role.into(),
                });
            }
        };
        // `PROJECTS:TOKEN` when the part before a colon is a list of project names (or
        // `*`, every project, for a token that itself holds a colon).
        let (projects, token) = match token.split_once(':') {
            Some((list, rest)) if list.trim() == "*" => (None, rest),
            Some((list, rest)) if is_project_list(list) => {
                let names = list.split('+').map(|p| p.trim().to_string()).collect();
                (Some(ProjectScope(names)), rest)
            }
            _ => (None, token),
        };
        let token = token.trim();
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(AuthError::TooShort {
                origin: origin.into(),
                role,
            });
        }
        self.tokens.push((Grant { role, projects }, digest(token)));
        Ok(())
    }

    /// True when tokens are configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Refuses a non-loopback listen address when no token is configured.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), AuthError> {
        if self.enabled() || addr.ip().is_loopback() {
            Ok(())
        } else {
            Err(AuthError::Exposed { addr })
        }
    }

    /// One line for the start-up message, e.g. `2 tokens (1 viewer, 1 operator)`.
    pub fn describe(&self) -> String {
        if !self.enabled() {
            return "no API tokens: localhost only, every local caller may act".into();
        }
        let operators = self
            .tokens
            .iter()
            .filter(|(g, _)| g.role == Role::Operator)
            .count();
        let limited = self
            .tokens
            .iter()
            .filter(|(g, _)| g.projects.is_some())
            .count();
        let limited = match limited {
            0 => String::new(),
            n => format!(", {n} limited to projects"),
        };
        format!(
            "API tokens required ({} viewer, {operators} operator{limited})",
            self.tokens.len() - operators
        )
    }

    /// The role of a presented token; `None` when it matches no configured token.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        self.grant_of(token).map(|g| g.role)
    }

    /// What a presented token grants; `None` when it matches no configured token.
    pub fn grant_of(&self, token: &str) -> Option<Grant> {
        let presented = digest(token);
        // Compare against every token, so the time taken says nothing about which matched.
        let mut found = None;
        for (grant, known) in &self.tokens {
            if bool::from(known.ct_eq(&presented)) {
                found = Some(grant.clone());
            }
        }
        found
    }
}

/// Whether `list` is a `+`-separated list of project names (DNS labels).
fn is_project_list(list: &str) -> bool {
    list.split('+').all(|p| {
        let p = p.trim();
        !p.is_empty()
            && p.len() <= 63
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    })
}

/// The app an `/api/v1/apps/{namespace}/{name}…` path is about.
fn app_of_path(path: &str) -> Option<AppKey> {
    let rest = path.strip_prefix("/api/v1/apps/")?;
    let mut parts = rest.split('/');
    let (namespace, name) = (parts.next()?, parts.next()?);
    (!namespace.is_empty() && !name.is_empty()).then(|| AppKey::new(namespace, name))
}

/// The middleware keeping a token limited to projects ([`ProjectScope`]) to their apps:
/// a per-app route of an app of another project answers 404, as for an app that does
/// not exist. Runs inside [`guard`].
pub async fn limit(
    State(store): State<ferry_agent::state::Store>,
    req: Request,
    next: Next,
) -> Response {
    if let (Some(scope), Some(name)) = (
        req.extensions().get::<ProjectScope>(),
        app_of_path(req.uri().path()),
    ) && let Some(status) = store.get(&name).await
        && !scope.allows(status.spec.project())
    {
        return error_response(StatusCode::NOT_FOUND, format!("no app {name}"));
    }
    next.run(req).await
}

/// Paths outside the token scheme: probes, metrics and webhooks (signed on their own).
fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics") || path.starts_with("/hooks/")
}

/// The host name of a `Host` header value or URL authority, without the port.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// True for `localhost`, `127.x.y.z` and `::1`.
fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a write request looks cross-site; `None` when it is acceptable.
fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    let get = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Some("cross-site request refused");
    }
    if let Some(origin) = get(header::ORIGIN) {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if authority.is_none() || authority != get(header::HOST) {
            return Some("request from another origin refused");
        }
    }
    let simple_type = get(header::CONTENT_TYPE).is_none_or(|t| {
        let t = t.split(';').next().unwrap_or_default().trim();
        t.eq_ignore_ascii_case("application/x-www-form-urlencoded")
            || t.eq_ignore_ascii_case("multipart/form-data")
            || t.eq_ignore_ascii_case("text/plain")
    });
    if simple_type && !headers.contains_key(header::AUTHORIZATION) {
        return Some(
            "actions need an Authorization header or Content-Type: application/json \
             (protection against cross-site requests)",
        );
    }
    None
}

/// The middleware applying [`Auth`] to every request (see the module docs). It puts the
/// caller's [`Role`] into the request's extensions.
pub async fn guard(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if is_open(path) {
        return next.run(req).await;
    }
    let headers = req.headers();
    if !auth.enabled() {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(host_name)
            .unwrap_or_default();
        if !is_loopback_name(host) {
            return error_response(
                StatusCode::FORBIDDEN,
                "without API tokens the agent only answers requests addressed to localhost",
            );
        }
    }
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if write && let Some(why) = cross_site(headers) {
        return error_response(StatusCode::FORBIDDEN, why);
    }
    if !path.starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let grant = if auth.enabled() {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match token.and_then(|t| auth.grant_of(t.trim())) {
            Some(grant) => grant,
            None => {
                let message = if token.is_some() {
                    "invalid token"
                } else {
                    "authentication required: send Authorization: Bearer <token>"
                };
                let mut resp = error_response(StatusCode::UNAUTHORIZED, message);
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"ferry\""),
                );
                return resp;
            }
        }
    } else {
        Grant {
            role: Role::Operator,
            projects: None,
        }
    };
    if write && grant.role != Role::Operator {
        return error_response(
            StatusCode::FORBIDDEN,
            "this token is a viewer token: actions need an operator token",
        );
    }
    req.extensions_mut().insert(grant.role);
    if let Some(scope) = grant.projects {
        req.extensions_mut().insert(scope);
    }
    next.run(req).await.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_roles_and_hides_tokens() {
        let a = Auth::new(
            &specs(&[
                "viewer:view-token-0123456789",
                "operator:op-token-0123456789",
            ]),
            None,
        )
        .unwrap();
        assert_eq!(a.role_of("view-token-0123456789"), Some(Role::Viewer));
        assert_eq!(a.role_of("op-token-0123456789"), Some(Role::Operator));
        assert_eq!(a.role_of("op-token-012345678"), None);
        assert_eq!(a.describe(), "API tokens required (1 viewer, 1 operator)");
        assert!(!format!("{a:?}").contains("token-0123"));

        let e = Auth::new(&specs(&["admin:secret-secret-secret"]), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--token: unknown role \"admin\" (use viewer or operator)"
        );
        let e = Auth::new(&specs(&["secret-secret-secret"]), None).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = Auth::new(&specs(&["averyveryverylongsecret:x"]), None).unwrap_err();
        assert!(!e.to_string().contains("averyvery"), "{e}");
        let e = Auth::new(&specs(&["operator:short"]), None).unwrap_err();
        assert!(!e.to_string().contains("short\""), "{e}");
        assert!(e.to_string().contains("shorter than 16"), "{e}");
    }

    #[test]
    fn tokens_limited_to_projects() {
        let a = Auth::new(
            &specs(&[
                "viewer:team-a:view-a-token-0123456789",
                "operator:team-a+team-b:op-ab-token-0123456789",
                "viewer:*:with:colon-token-0123456789",
                "viewer:Not_A_Project:token-0123456789",
            ]),
            None,
        )
        .unwrap();
        let scope =
            |names: &[&str]| Some(ProjectScope(names.iter().map(|n| n.to_string()).collect()));
        assert_eq!(
            a.grant_of("view-a-token-0123456789"),
            Some(Grant {
                role: Role::Viewer,
                projects: scope(&["team-a"])
            })
        );
        assert_eq!(
            a.grant_of("op-ab-token-0123456789").unwrap().projects,
            scope(&["team-a", "team-b"])
        );
        assert_eq!(
            a.grant_of("with:colon-token-0123456789").unwrap().projects,
            None
        );
        // Not a list of project names: the whole rest is the token.
        assert_eq!(
            a.grant_of("Not_A_Project:token-0123456789")
                .unwrap()
                .projects,
            None
        );
        assert_eq!(a.grant_of("team-a:view-a-token-0123456789"), None);
        assert_eq!(
            a.describe(),
            "API tokens required (3 viewer, 1 operator, 2 limited to projects)"
        );
        assert!(scope(&["team-a"]).unwrap().allows("team-a"));
        assert!(!scope(&["team-a"]).unwrap().allows("team-b"));
        let web = Some(AppKey::new("team-a", "web"));
        assert_eq!(app_of_path("/api/v1/apps/team-a/web/tree"), web);
        assert_eq!(app_of_path("/api/v1/apps/team-a/web"), web);
        assert_eq!(app_of_path("/api/v1/apps/web"), None);
        assert_eq!(app_of_path("/api/v1/apps"), None);
        assert_eq!(app_of_path("/api/v1/stream"), None);
    }

    #[test]
    fn tokens_file() {
        let path = std::env::temp_dir().join(format!("ferry-web-tokens-{}", std::process::id()));
        std::fs::write(
            &path,
            "# team tokens\n\nviewer: view-token-0123456789\nbad\n",
        )
        .unwrap();
        let e = Auth::new(&[], Some(&path)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:4: expected ROLE:TOKEN or ROLE:PROJECTS:TOKEN with ROLE viewer or operator",
                path.display()
            )
        );
        std::fs::write(&path, "viewer: view-token-0123456789\n").unwrap();
        let a = Auth::new(&[], Some(&path)).unwrap();
        assert_eq!(a.role_of("view-token-0123456789"), Some(Role::Viewer));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn listen_needs_tokens_beyond_loopback() {
        let none = Auth::default();
        assert!(none.check_listen("127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(none.check_listen("[::1]:8080".parse().unwrap()).is_ok());
        let e = none
            .check_listen("0.0.0.0:8080".parse().unwrap())
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("refusing to serve the API on 0.0.0.0:8080 without tokens")
        );
        let some = Auth::new(&specs(&["operator:op-token-0123456789"]), None).unwrap();
        assert!(some.check_listen("0.0.0.0:8080".parse().unwrap()).is_ok());
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
        assert!(is_loopback_name("localhost"));
        assert!(is_loopback_name("127.0.0.2"));
        assert!(is_loopback_name("::1"));
        assert!(!is_loopback_name("evil.example"));
    }

    /// Answers of a small router behind [`guard`] (the real handlers need a cluster).
    async fn status(auth: &Arc<Auth>, method: &str, uri: &str, headers: &[(&str, &str)]) -> u16 {
        use axum::Router;
        use axum::body::Body;
        use axum::routing::{get, post};
        use tower::ServiceExt;

        let router = Router::new()
            .route("/", get(|| async { "page" }))
            .route("/healthz", get(|| async { "ok" }))
            .route("/api/v1/apps", get(|| async { "list" }))
            .route(
                "/api/v1/apps/{namespace}/{name}/{action}",
                post(|| async { "done" }),
            )
            .route("/hooks/{provider}", post(|| async { "hook" }))
            .layer(axum::middleware::from_fn_with_state(auth.clone(), guard));
        let mut req = Request::builder().method(method).uri(uri);
        if !headers.iter().any(|(k, _)| *k == "host") {
            req = req.header("host", "127.0.0.1:8080");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = router
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        if resp.status() == StatusCode::UNAUTHORIZED {
            assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
        }
        resp.status().as_u16()
    }

    #[tokio::test]
    async fn guard_with_tokens() {
        let auth = Arc::new(
            Auth::new(
                &specs(&[
                    "viewer:view-token-0123456789",
                    "operator:op-token-0123456789",
                ]),
                None,
            )
            .unwrap(),
        );
        let viewer = ("authorization", "Bearer view-token-0123456789");
        let operator = ("authorization", "Bearer op-token-0123456789");
        let sync = "/api/v1/apps/ns/a/sync";
        assert_eq!(status(&auth, "GET", "/api/v1/apps", &[]).await, 401);
        assert_eq!(
            status(
                &auth,
                "GET",
                "/api/v1/apps",
                &[("authorization", "Bearer nope")]
            )
            .await,
            401
        );
        assert_eq!(
            status(
                &auth,
                "GET",
                "/api/v1/apps",
                &[("authorization", "Basic eDp5")]
            )
            .await,
            401
        );
        assert_eq!(status(&auth, "GET", "/api/v1/apps", &[viewer]).await, 200);
        assert_eq!(status(&auth, "POST", sync, &[viewer]).await, 403);
        assert_eq!(
            status(&auth, "POST", sync, &[]).await,
            403,
            "no token, no JSON"
        );
        assert_eq!(
            status(&auth, "POST", sync, &[("content-type", "application/json")]).await,
            401
        );
        assert_eq!(status(&auth, "POST", sync, &[operator]).await, 200);
        let evil = ("origin", "http://evil.example");
        assert_eq!(status(&auth, "POST", sync, &[operator, evil]).await, 403);
        // Outside the token scheme: the page, probes, webhooks.
        assert_eq!(status(&auth, "GET", "/", &[]).await, 200);
        assert_eq!(status(&auth, "GET", "/healthz", &[]).await, 200);
        assert_eq!(status(&auth, "POST", "/hooks/github", &[]).await, 200);
        // With tokens, any Host name is fine (the agent may sit behind a Service).
        let host = ("host", "ferry.example");
        assert_eq!(
            status(&auth, "GET", "/api/v1/apps", &[viewer, host]).await,
            200
        );
    }

    #[tokio::test]
    async fn guard_without_tokens() {
        let auth = Arc::new(Auth::default());
        let json = ("content-type", "application/json");
        let sync = "/api/v1/apps/ns/a/sync";
        assert_eq!(status(&auth, "GET", "/api/v1/apps", &[]).await, 200);
        let localhost = ("host", "localhost:8080");
        assert_eq!(
            status(&auth, "GET", "/api/v1/apps", &[localhost]).await,
            200
        );
        let rebound = ("host", "evil.example:8080");
        assert_eq!(status(&auth, "GET", "/api/v1/apps", &[rebound]).await, 403);
        assert_eq!(status(&auth, "GET", "/", &[rebound]).await, 403);
        assert_eq!(status(&auth, "GET", "/healthz", &[rebound]).await, 200);
        assert_eq!(status(&auth, "POST", sync, &[json]).await, 200);
        let form = ("content-type", "text/plain");
        assert_eq!(status(&auth, "POST", sync, &[form]).await, 403);
        let site = ("sec-fetch-site", "cross-site");
        assert_eq!(status(&auth, "POST", sync, &[json, site]).await, 403);
        let same = ("origin", "http://127.0.0.1:8080");
        assert_eq!(status(&auth, "POST", sync, &[json, same]).await, 200);
    }

    #[test]
    fn cross_site_rules() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:8080");
        assert_eq!(cross_site(&h(&[json, host])), None);
        assert_eq!(cross_site(&h(&[("authorization", "Bearer x"), host])), None);
        assert!(cross_site(&h(&[host])).is_some());
        assert!(cross_site(&h(&[("content-type", "text/plain;charset=UTF-8"), host])).is_some());
        assert_eq!(
            cross_site(&h(&[json, host, ("origin", "http://127.0.0.1:8080")])),
            None
        );
        assert!(cross_site(&h(&[json, host, ("origin", "http://evil.example")])).is_some());
        assert!(cross_site(&h(&[json, host, ("origin", "null")])).is_some());
        assert!(cross_site(&h(&[json, host, ("sec-fetch-site", "cross-site")])).is_some());
    }
}
