//! Push webhooks: verify a request's signature or token, then extract the pushed
//! repository and ref. Pure functions; the HTTP routing lives in the API server.
//!
//! | provider | authentication | event header |
//! |---|---|---|
//! | GitHub | `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>` | `X-GitHub-Event: push` |
//! | GitLab | `X-Gitlab-Token: <secret>` | `X-Gitlab-Event: Push Hook` / `Tag Push Hook` / `System Hook` |
//! | Gitea, Forgejo | `X-Gitea-Signature` / `X-Forgejo-Signature: <hex>` or `X-Hub-Signature-256` | `X-Gitea-Event` / `X-Forgejo-Event: push` |
//! | Bitbucket Cloud and Data Center | `X-Hub-Signature: sha256=<hex>` | `X-Event-Key: repo:push` / `repo:refs_changed` |
//! | Generic | `X-Ferry-Signature: sha256=<hex>` or `Authorization: Bearer <secret>` | none |
//!
//! The generic body is `{"repository": "<url>", "ref": "refs/heads/main", "after": "<sha>"}`
//! with `ref` and `after` optional.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Largest accepted request body, bytes.
pub const MAX_BODY: usize = 1 << 20;

/// A Git hosting service that sends push webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// GitHub and GitHub Enterprise.
    GitHub,
    /// GitLab (project, group and system hooks).
    GitLab,
    /// Gitea and Forgejo.
    Gitea,
    /// Bitbucket Cloud and Bitbucket Data Center / Server.
    Bitbucket,
    /// Any sender of ferry's own minimal payload, e.g. a CI job.
    Generic,
}

impl Provider {
    /// The provider served at `/webhook/<segment>`: `github`, `gitlab`, `gitea`
    /// (or `forgejo`), `bitbucket`, `generic`; ASCII case is ignored.
    pub fn from_path(segment: &str) -> Option<Self> {
        match segment.to_ascii_lowercase().as_str() {
            "github" => Some(Self::GitHub),
            "gitlab" => Some(Self::GitLab),
            "gitea" | "forgejo" => Some(Self::Gitea),
            "bitbucket" => Some(Self::Bitbucket),
            "generic" => Some(Self::Generic),
            _ => None,
        }
    }

    /// Lowercase name, for paths, logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
            Self::Bitbucket => "bitbucket",
            Self::Generic => "generic",
        }
    }
}

/// What a verified push webhook says was pushed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushEvent {
    /// Every URL of the repository the payload gives (HTTPS and SSH clone URLs, web
    /// URL…), deduplicated; never empty. Compare with [`repo_matches`].
    pub repos: Vec<String>,
    /// The pushed ref, e.g. `refs/heads/main` or `refs/tags/v1`; `None` when the
    /// payload names none or one push changed several refs (treat as "any ref").
    pub git_ref: Option<String>,
    /// The ref's new commit SHA; `None` when unknown or the ref was deleted.
    pub after: Option<String>,
}

/// Why a webhook request was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Missing or wrong signature or token (or no secret configured).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Too large, malformed, or missing required fields.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Authentic but not a push, e.g. a ping.
    #[error("ignored: {0}")]
    Ignored(String),
}

impl WebhookError {
    /// The `result` label for [`crate::metrics::Metrics::webhook`].
    pub fn result(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::BadRequest(_) => "bad_request",
            Self::Ignored(_) => "ignored",
        }
    }

    /// The HTTP status to answer with: 401, 400, or 202 for an ignored event (so the
    /// sender does not report a failed delivery).
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Unauthorized(_) => http::StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => http::StatusCode::BAD_REQUEST,
            Self::Ignored(_) => http::StatusCode::ACCEPTED,
        }
    }
}

/// Checks the body size, then the request's signature or token against `secret`
/// (before looking at the body), then the event type, and parses the push payload.
/// An empty `secret` rejects every request.
pub fn verify_and_parse(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<PushEvent, WebhookError> {
    if body.len() > MAX_BODY {
        return Err(WebhookError::BadRequest(format!(
            "body of {} bytes exceeds the limit of {MAX_BODY}",
            body.len()
        )));
    }
    verify(provider, headers, body, secret)?;
    check_event(provider, headers)?;
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::BadRequest(format!("invalid JSON: {e}")))?;
    if !payload.is_object() {
        return Err(WebhookError::BadRequest(
            "payload is not a JSON object".into(),
        ));
    }
    let event = match provider {
        Provider::GitHub | Provider::Gitea => parse_github_like(&payload),
        Provider::GitLab => parse_gitlab(&payload)?,
        Provider::Bitbucket => parse_bitbucket(&payload),
        Provider::Generic => parse_generic(&payload)?,
    };
    if event.repos.is_empty() {
        return Err(WebhookError::BadRequest(
            "payload names no repository URL".into(),
        ));
    }
    Ok(event)
}

/// True when `app_repo` names the same repository as one of `event_repos`. URLs are
/// normalised first: scheme, `user@` and port dropped, `git@host:org/x` read as
/// `host/org/x`, trailing `/` and `.git` removed, all lowercased. So
/// `git@github.com:Org/App.git` matches `https://github.com/org/app`.
pub fn repo_matches(app_repo: &str, event_repos: &[String]) -> bool {
    let wanted = normalize(app_repo);
    !wanted.is_empty() && event_repos.iter().any(|r| normalize(r) == wanted)
}

/// `host/path`, lowercased, without scheme, credentials, port, `.git` or slashes at
/// either end; empty when there is no path.
fn normalize(url: &str) -> String {
    let url = url.trim();
    let (authority, path) = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').unwrap_or((rest, "")),
        // scp-like `[user@]host:path`, or a plain local path.
        None => match url.split_once(':') {
            Some((host, path)) if !host.contains('/') => (host, path),
            _ => ("", url),
        },
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let mut path = path.trim_matches('/');
    while let Some(p) = path.strip_suffix(".git").or_else(|| path.strip_suffix('/')) {
        path = p;
    }
    if path.is_empty() {
        return String::new();
    }
    format!("{host}/{path}").to_lowercase()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, String> {
    headers
        .get(name)
        .map(|v| v.to_str().map(str::trim))
        .transpose()
        .map_err(|_| format!("header {name} is not ASCII"))
}

fn unauthorized(message: impl Into<String>) -> WebhookError {
    WebhookError::Unauthorized(message.into())
}

fn verify(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<(), WebhookError> {
    if secret.is_empty() {
        return Err(unauthorized("no webhook secret is configured"));
    }
    let get = |name| header(headers, name).map_err(unauthorized);
    match provider {
        Provider::GitHub => match get("x-hub-signature-256")? {
            Some(sig) => check_prefixed_hmac(secret, body, sig),
            None => Err(unauthorized("missing X-Hub-Signature-256 header")),
        },
        Provider::Gitea => {
            if let Some(sig) = get("x-gitea-signature")? {
                check_hmac(secret, body, sig)
            } else if let Some(sig) = get("x-forgejo-signature")? {
                check_hmac(secret, body, sig)
            } else if let Some(sig) = get("x-hub-signature-256")? {
                check_prefixed_hmac(secret, body, sig)
            } else {
                Err(unauthorized("missing X-Gitea-Signature header"))
            }
        }
        Provider::GitLab => match get("x-gitlab-token")? {
            Some(token) => check_token(secret, token),
            None => Err(unauthorized("missing X-Gitlab-Token header")),
        },
        Provider::Bitbucket => match get("x-hub-signature")? {
            Some(sig) => check_prefixed_hmac(secret, body, sig),
            None => Err(unauthorized("missing X-Hub-Signature header")),
        },
        Provider::Generic => {
            if let Some(sig) = get("x-ferry-signature")? {
                check_prefixed_hmac(secret, body, sig)
            } else if let Some(auth) = get("authorization")? {
                match auth.split_once(' ') {
                    Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                        check_token(secret, token.trim())
                    }
                    _ => Err(unauthorized("Authorization is not a Bearer token")),
                }
            } else {
                Err(unauthorized(
                    "missing X-Ferry-Signature or Authorization header",
                ))
            }
        }
    }
}

/// Checks `sha256=<hex>`.
fn check_prefixed_hmac(secret: &[u8], body: &[u8], sig: &str) -> Result<(), WebhookError> {
    match sig.strip_prefix("sha256=") {
        Some(hex) => check_hmac(secret, body, hex),
        None => Err(unauthorized("signature does not start with sha256=")),
    }
}

/// Checks a hex HMAC-SHA256 of `body` in constant time.
fn check_hmac(secret: &[u8], body: &[u8], hex_sig: &str) -> Result<(), WebhookError> {
    let sig = hex::decode(hex_sig).map_err(|_| unauthorized("signature is not hex"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| unauthorized("signature does not match"))
}

/// Compares a shared token in constant time (the length is not hidden).
fn check_token(secret: &[u8], token: &str) -> Result<(), WebhookError> {
    if bool::from(token.as_bytes().ct_eq(secret)) {
        Ok(())
    } else {
        Err(unauthorized("token does not match"))
    }
}

fn check_event(provider: Provider, headers: &HeaderMap) -> Result<(), WebhookError> {
    let get = |name| header(headers, name).map_err(WebhookError::BadRequest);
    let (name, event, push): (&str, _, &[&str]) = match provider {
        Provider::Generic => return Ok(()),
        Provider::GitHub => ("X-GitHub-Event", get("x-github-event")?, &["push"]),
        Provider::GitLab => (
            "X-Gitlab-Event",
            get("x-gitlab-event")?,
            &["Push Hook", "Tag Push Hook", "System Hook"],
        ),
        Provider::Gitea => (
            "X-Gitea-Event",
            get("x-gitea-event")?.or(get("x-forgejo-event")?),
            &["push"],
        ),
        Provider::Bitbucket => (
            "X-Event-Key",
            get("x-event-key")?,
            &["repo:push", "repo:refs_changed"],
        ),
    };
    match event {
        None => Err(WebhookError::BadRequest(format!("missing {name} header"))),
        Some(e) if push.contains(&e) => Ok(()),
        Some(e) => Err(WebhookError::Ignored(format!("{name}: {e} is not a push"))),
    }
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Collects the strings at `pointers`, skipping missing ones and duplicates.
fn urls(v: &Value, pointers: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in pointers.iter().filter_map(|p| str_at(v, p)) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

/// A commit SHA, or `None` for the all-zero SHA of a deleted ref.
fn sha(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.bytes().all(|b| b == b'0'))
        .map(str::to_string)
}

/// GitHub and Gitea push payloads share their shape.
fn parse_github_like(v: &Value) -> PushEvent {
    PushEvent {
        repos: urls(
            v,
            &[
                "/repository/clone_url",
                "/repository/ssh_url",
                "/repository/git_url",
                "/repository/html_url",
                "/repository/url",
                "/repository/svn_url",
            ],
        ),
        git_ref: str_at(v, "/ref").map(str::to_string),
        after: sha(str_at(v, "/after")),
    }
}

fn parse_gitlab(v: &Value) -> Result<PushEvent, WebhookError> {
    // System hooks carry every kind of event under one header.
    match str_at(v, "/object_kind").or(str_at(v, "/event_name")) {
        None | Some("push" | "tag_push") => {}
        Some(kind) => {
            return Err(WebhookError::Ignored(format!("{kind} is not a push")));
        }
    }
    Ok(PushEvent {
        repos: urls(
            v,
            &[
                "/project/git_http_url",
                "/project/git_ssh_url",
                "/project/web_url",
                "/project/http_url",
                "/project/ssh_url",
                "/repository/git_http_url",
                "/repository/git_ssh_url",
                "/repository/url",
                "/repository/homepage",
            ],
        ),
        git_ref: str_at(v, "/ref").map(str::to_string),
        after: sha(str_at(v, "/after").or(str_at(v, "/checkout_sha"))),
    })
}

/// Bitbucket Cloud (`repo:push`, has `push.changes`) or Data Center (`repo:refs_changed`,
/// has top-level `changes`).
fn parse_bitbucket(v: &Value) -> PushEvent {
    let mut repos = urls(v, &["/repository/links/html/href"]);
    for link in array(v, "/repository/links/clone") {
        if let Some(href) = str_at(link, "/href")
            && !repos.iter().any(|r| r == href)
        {
            repos.push(href.to_string());
        }
    }
    let refs: Vec<(Option<String>, Option<String>)> = if v.pointer("/push").is_some() {
        array(v, "/push/changes")
            .iter()
            .map(|c| {
                // `new` is null when the ref was deleted; the name is then in `old`.
                let side = if c["new"].is_object() {
                    &c["new"]
                } else {
                    &c["old"]
                };
                let git_ref = str_at(side, "/name").map(|name| match str_at(side, "/type") {
                    Some("tag") => format!("refs/tags/{name}"),
                    _ => format!("refs/heads/{name}"),
                });
                (git_ref, sha(str_at(c, "/new/target/hash")))
            })
            .collect()
    } else {
        array(v, "/changes")
            .iter()
            .map(|c| {
                let git_ref = str_at(c, "/refId").or(str_at(c, "/ref/id"));
                (git_ref.map(str::to_string), sha(str_at(c, "/toHash")))
            })
            .collect()
    };
    let (git_ref, after) = match refs.as_slice() {
        [(git_ref, after)] => (git_ref.clone(), after.clone()),
        // Several refs in one push: report none, so every app of the repo reconciles.
        _ => (None, None),
    };
    PushEvent {
        repos,
        git_ref,
        after,
    }
}

fn array<'v>(v: &'v Value, pointer: &str) -> &'v [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn parse_generic(v: &Value) -> Result<PushEvent, WebhookError> {
    let repo = str_at(v, "/repository").ok_or_else(|| {
        WebhookError::BadRequest("`repository` must be a non-empty string".into())
    })?;
    Ok(PushEvent {
        repos: vec![repo.to_string()],
        git_ref: str_at(v, "/ref").map(str::to_string),
        after: sha(str_at(v, "/after")),
    })
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn hmac_hex(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn unauthorized(result: Result<PushEvent, WebhookError>) -> bool {
        matches!(result, Err(WebhookError::Unauthorized(_)))
    }

    fn bad_request(result: Result<PushEvent, WebhookError>) -> bool {
        matches!(result, Err(WebhookError::BadRequest(_)))
    }

    fn ignored(result: Result<PushEvent, WebhookError>) -> bool {
        matches!(result, Err(WebhookError::Ignored(_)))
    }

    fn github_push() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "ref": "refs/heads/main",
            "before": ZERO,
            "after": SHA,
            "created": false,
            "deleted": false,
            "forced": false,
            "compare": "https://github.com/Octo-Org/Deploy/compare/abc...def",
            "commits": [{"id": SHA, "message": "bump", "author": {"name": "Octo"}}],
            "head_commit": {"id": SHA, "message": "bump"},
            "repository": {
                "id": 1296269,
                "name": "Deploy",
                "full_name": "Octo-Org/Deploy",
                "private": false,
                "html_url": "https://github.com/Octo-Org/Deploy",
                "url": "https://github.com/Octo-Org/Deploy",
                "git_url": "git://github.com/Octo-Org/Deploy.git",
                "ssh_url": "git@github.com:Octo-Org/Deploy.git",
                "clone_url": "https://github.com/Octo-Org/Deploy.git",
                "svn_url": "https://github.com/Octo-Org/Deploy",
                "default_branch": "main"
            },
            "pusher": {"name": "octo", "email": "octo@example.com"},
            "sender": {"login": "octo", "id": 1}
        }))
        .unwrap()
    }

    #[test]
    fn github() {
        let body = github_push();
        let sig = format!("sha256={}", hmac_hex(&body));
        let good = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
        let event = verify_and_parse(Provider::GitHub, &good, &body, SECRET).unwrap();
        assert_eq!(
            event,
            PushEvent {
                repos: vec![
                    "https://github.com/Octo-Org/Deploy.git".into(),
                    "git@github.com:Octo-Org/Deploy.git".into(),
                    "git://github.com/Octo-Org/Deploy.git".into(),
                    "https://github.com/Octo-Org/Deploy".into(),
                ],
                git_ref: Some("refs/heads/main".into()),
                after: Some(SHA.into()),
            }
        );
        assert!(repo_matches("git@github.com:octo-org/deploy", &event.repos));

        // Wrong secret, tampered body, missing header, missing prefix, not hex.
        assert!(unauthorized(verify_and_parse(
            Provider::GitHub,
            &good,
            &body,
            b"other"
        )));
        let mut tampered = body.clone();
        tampered[2] ^= 1;
        assert!(unauthorized(verify_and_parse(
            Provider::GitHub,
            &good,
            &tampered,
            SECRET
        )));
        let missing = headers(&[("X-GitHub-Event", "push")]);
        assert!(unauthorized(verify_and_parse(
            Provider::GitHub,
            &missing,
            &body,
            SECRET
        )));
        let bare = headers(&[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig[7..]),
        ]);
        assert!(unauthorized(verify_and_parse(
            Provider::GitHub,
            &bare,
            &body,
            SECRET
        )));
        let junk = headers(&[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", "sha256=zz"),
        ]);
        assert!(unauthorized(verify_and_parse(
            Provider::GitHub,
            &junk,
            &body,
            SECRET
        )));
        // Empty secret rejects even a matching signature.
        let empty_sig = {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"").unwrap();
            mac.update(&body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        };
        let empty = headers(&[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &empty_sig),
        ]);
        assert!(unauthorized(verify_and_parse(
            Provider::GitHub,
            &empty,
            &body,
            b""
        )));
    }

    #[test]
    fn github_ping_and_other_events() {
        let body = serde_json::to_vec(&json!({
            "zen": "Keep it logically awesome.",
            "hook_id": 1,
            "repository": {"clone_url": "https://github.com/o/r.git"}
        }))
        .unwrap();
        let sig = format!("sha256={}", hmac_hex(&body));
        for event in ["ping", "pull_request"] {
            let h = headers(&[("X-GitHub-Event", event), ("X-Hub-Signature-256", &sig)]);
            assert!(ignored(verify_and_parse(
                Provider::GitHub,
                &h,
                &body,
                SECRET
            )));
        }
        // Authentication comes first, even for a ping.
        let h = headers(&[("X-GitHub-Event", "ping")]);
        assert!(unauthorized(verify_and_parse(
            Provider::GitHub,
            &h,
            &body,
            SECRET
        )));
        let h = headers(&[("X-Hub-Signature-256", &sig)]);
        assert!(bad_request(verify_and_parse(
            Provider::GitHub,
            &h,
            &body,
            SECRET
        )));
    }

    #[test]
    fn github_deleted_branch_has_no_after() {
        let body = serde_json::to_vec(&json!({
            "ref": "refs/heads/feature", "before": SHA, "after": ZERO, "deleted": true,
            "repository": {"clone_url": "https://github.com/o/r.git"}
        }))
        .unwrap();
        let sig = format!("sha256={}", hmac_hex(&body));
        let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
        let event = verify_and_parse(Provider::GitHub, &h, &body, SECRET).unwrap();
        assert_eq!(event.after, None);
        assert_eq!(event.git_ref.as_deref(), Some("refs/heads/feature"));
    }

    #[test]
    fn malformed_bodies_with_good_signature() {
        for body in [&b"{not json"[..], b"[1, 2]", b"{}", b""] {
            let sig = format!("sha256={}", hmac_hex(body));
            let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
            assert!(bad_request(verify_and_parse(
                Provider::GitHub,
                &h,
                body,
                SECRET
            )));
        }
    }

    #[test]
    fn oversized_body() {
        let body = vec![b' '; MAX_BODY + 1];
        let sig = format!("sha256={}", hmac_hex(&body));
        let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
        let err = verify_and_parse(Provider::GitHub, &h, &body, SECRET).unwrap_err();
        assert_eq!(err.result(), "bad_request");
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }

    fn gitlab_push(kind: &str, git_ref: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object_kind": kind,
            "event_name": kind,
            "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
            "after": SHA,
            "ref": git_ref,
            "ref_protected": true,
            "checkout_sha": SHA,
            "user_username": "jsmith",
            "project_id": 15,
            "project": {
                "id": 15,
                "name": "Deploy",
                "web_url": "https://gitlab.example.com/group/sub/deploy",
                "git_ssh_url": "git@gitlab.example.com:group/sub/deploy.git",
                "git_http_url": "https://gitlab.example.com/group/sub/deploy.git",
                "namespace": "sub",
                "path_with_namespace": "group/sub/deploy",
                "default_branch": "main",
                "homepage": "https://gitlab.example.com/group/sub/deploy",
                "url": "git@gitlab.example.com:group/sub/deploy.git",
                "ssh_url": "git@gitlab.example.com:group/sub/deploy.git",
                "http_url": "https://gitlab.example.com/group/sub/deploy.git"
            },
            "repository": {
                "name": "Deploy",
                "url": "git@gitlab.example.com:group/sub/deploy.git",
                "homepage": "https://gitlab.example.com/group/sub/deploy",
                "git_http_url": "https://gitlab.example.com/group/sub/deploy.git",
                "git_ssh_url": "git@gitlab.example.com:group/sub/deploy.git"
            },
            "commits": [],
            "total_commits_count": 0
        }))
        .unwrap()
    }

    #[test]
    fn gitlab() {
        let token = std::str::from_utf8(SECRET).unwrap();
        let body = gitlab_push("push", "refs/heads/main");
        let good = headers(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", token)]);
        let event = verify_and_parse(Provider::GitLab, &good, &body, SECRET).unwrap();
        assert_eq!(
            event.repos,
            [
                "https://gitlab.example.com/group/sub/deploy.git",
                "git@gitlab.example.com:group/sub/deploy.git",
                "https://gitlab.example.com/group/sub/deploy",
            ]
        );
        assert_eq!(event.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(event.after.as_deref(), Some(SHA));
        assert!(repo_matches(
            "ssh://git@gitlab.example.com:2222/group/sub/deploy",
            &event.repos
        ));

        let tag = gitlab_push("tag_push", "refs/tags/v1.0.0");
        let h = headers(&[
            ("X-Gitlab-Event", "Tag Push Hook"),
            ("X-Gitlab-Token", token),
        ]);
        let event = verify_and_parse(Provider::GitLab, &h, &tag, SECRET).unwrap();
        assert_eq!(event.git_ref.as_deref(), Some("refs/tags/v1.0.0"));

        let wrong = headers(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "nope")]);
        assert!(unauthorized(verify_and_parse(
            Provider::GitLab,
            &wrong,
            &body,
            SECRET
        )));
        let prefix = headers(&[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", &token[..5]),
        ]);
        assert!(unauthorized(verify_and_parse(
            Provider::GitLab,
            &prefix,
            &body,
            SECRET
        )));
        let missing = headers(&[("X-Gitlab-Event", "Push Hook")]);
        assert!(unauthorized(verify_and_parse(
            Provider::GitLab,
            &missing,
            &body,
            SECRET
        )));
        assert!(bad_request(verify_and_parse(
            Provider::GitLab,
            &good,
            b"{\"ref\":",
            SECRET
        )));

        let mr = headers(&[
            ("X-Gitlab-Event", "Merge Request Hook"),
            ("X-Gitlab-Token", token),
        ]);
        assert!(ignored(verify_and_parse(
            Provider::GitLab,
            &mr,
            &body,
            SECRET
        )));
        // A system hook carries every event kind under one header.
        let system = headers(&[("X-Gitlab-Event", "System Hook"), ("X-Gitlab-Token", token)]);
        assert!(verify_and_parse(Provider::GitLab, &system, &body, SECRET).is_ok());
        let created = gitlab_push("project_create", "");
        assert!(ignored(verify_and_parse(
            Provider::GitLab,
            &system,
            &created,
            SECRET
        )));
    }

    fn gitea_push() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "ref": "refs/heads/develop",
            "before": "28e1879d029cb852e4844d9c718537df08844e03",
            "after": SHA,
            "compare_url": "http://localhost:3000/gitea/webhooks/compare/28e1879d...6113728f",
            "commits": [{"id": SHA, "message": "Webhooks Yay!"}],
            "repository": {
                "id": 140,
                "owner": {"id": 1, "login": "gitea", "username": "gitea"},
                "name": "webhooks",
                "full_name": "gitea/webhooks",
                "private": false,
                "html_url": "http://localhost:3000/gitea/webhooks",
                "ssh_url": "ssh://gitea@localhost:2222/gitea/webhooks.git",
                "clone_url": "http://localhost:3000/gitea/webhooks.git",
                "default_branch": "master"
            },
            "pusher": {"id": 1, "login": "gitea"},
            "sender": {"id": 1, "login": "gitea"}
        }))
        .unwrap()
    }

    #[test]
    fn gitea() {
        let body = gitea_push();
        let hex = hmac_hex(&body);
        let good = headers(&[("X-Gitea-Event", "push"), ("X-Gitea-Signature", &hex)]);
        let event = verify_and_parse(Provider::Gitea, &good, &body, SECRET).unwrap();
        assert_eq!(
            event,
            PushEvent {
                repos: vec![
                    "http://localhost:3000/gitea/webhooks.git".into(),
                    "ssh://gitea@localhost:2222/gitea/webhooks.git".into(),
                    "http://localhost:3000/gitea/webhooks".into(),
                ],
                git_ref: Some("refs/heads/develop".into()),
                after: Some(SHA.into()),
            }
        );

        // Forgejo headers and the GitHub-style signature are accepted too.
        let sig = format!("sha256={hex}");
        for h in [
            headers(&[("X-Forgejo-Event", "push"), ("X-Forgejo-Signature", &hex)]),
            headers(&[("X-Gitea-Event", "push"), ("X-Hub-Signature-256", &sig)]),
        ] {
            assert!(verify_and_parse(Provider::Gitea, &h, &body, SECRET).is_ok());
        }

        let bad = headers(&[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Signature", &hmac_hex(b"x")),
        ]);
        assert!(unauthorized(verify_and_parse(
            Provider::Gitea,
            &bad,
            &body,
            SECRET
        )));
        let missing = headers(&[("X-Gitea-Event", "push")]);
        assert!(unauthorized(verify_and_parse(
            Provider::Gitea,
            &missing,
            &body,
            SECRET
        )));
        let malformed = b"{\"ref\": 1,";
        let h = headers(&[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Signature", &hmac_hex(malformed)),
        ]);
        assert!(bad_request(verify_and_parse(
            Provider::Gitea,
            &h,
            malformed,
            SECRET
        )));
        let issues = headers(&[("X-Gitea-Event", "issues"), ("X-Gitea-Signature", &hex)]);
        assert!(ignored(verify_and_parse(
            Provider::Gitea,
            &issues,
            &body,
            SECRET
        )));
    }

    fn bitbucket_cloud_push() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "actor": {"display_name": "Jane", "type": "user"},
            "repository": {
                "type": "repository",
                "full_name": "team/deploy",
                "name": "deploy",
                "scm": "git",
                "is_private": true,
                "links": {
                    "self": {"href": "https://api.bitbucket.org/2.0/repositories/team/deploy"},
                    "html": {"href": "https://bitbucket.org/team/deploy"},
                    "avatar": {"href": "https://bytebucket.org/ravatar/x"}
                }
            },
            "push": {
                "changes": [{
                    "old": {"type": "branch", "name": "main", "target": {"hash": "1e65c05c"}},
                    "new": {"type": "branch", "name": "main", "target": {"type": "commit", "hash": SHA}},
                    "created": false,
                    "forced": false,
                    "closed": false,
                    "commits": [{"hash": SHA, "message": "bump"}],
                    "truncated": false
                }]
            }
        }))
        .unwrap()
    }

    fn bitbucket_server_push() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "eventKey": "repo:refs_changed",
            "date": "2017-09-19T09:45:32+1000",
            "actor": {"name": "admin", "id": 1},
            "repository": {
                "slug": "deploy",
                "id": 84,
                "name": "deploy",
                "scmId": "git",
                "project": {"key": "OPS", "id": 84, "name": "Ops"},
                "links": {
                    "clone": [
                        {"href": "ssh://git@bitbucket.example.com:7999/ops/deploy.git", "name": "ssh"},
                        {"href": "https://bitbucket.example.com/scm/ops/deploy.git", "name": "http"}
                    ],
                    "self": [{"href": "https://bitbucket.example.com/projects/OPS/repos/deploy/browse"}]
                }
            },
            "changes": [{
                "ref": {"id": "refs/heads/master", "displayId": "master", "type": "BRANCH"},
                "refId": "refs/heads/master",
                "fromHash": "ecddabb624f6f5ba43816f5926e580a5f680a932",
                "toHash": SHA,
                "type": "UPDATE"
            }]
        }))
        .unwrap()
    }

    #[test]
    fn bitbucket_cloud() {
        let body = bitbucket_cloud_push();
        let sig = format!("sha256={}", hmac_hex(&body));
        let good = headers(&[("X-Event-Key", "repo:push"), ("X-Hub-Signature", &sig)]);
        let event = verify_and_parse(Provider::Bitbucket, &good, &body, SECRET).unwrap();
        assert_eq!(
            event,
            PushEvent {
                repos: vec!["https://bitbucket.org/team/deploy".into()],
                git_ref: Some("refs/heads/main".into()),
                after: Some(SHA.into()),
            }
        );
        assert!(repo_matches(
            "git@bitbucket.org:team/deploy.git",
            &event.repos
        ));

        let bad = headers(&[
            ("X-Event-Key", "repo:push"),
            ("X-Hub-Signature", "sha256=00"),
        ]);
        assert!(unauthorized(verify_and_parse(
            Provider::Bitbucket,
            &bad,
            &body,
            SECRET
        )));
        let missing = headers(&[("X-Event-Key", "repo:push")]);
        assert!(unauthorized(verify_and_parse(
            Provider::Bitbucket,
            &missing,
            &body,
            SECRET
        )));
        let fork = headers(&[("X-Event-Key", "repo:fork"), ("X-Hub-Signature", &sig)]);
        assert!(ignored(verify_and_parse(
            Provider::Bitbucket,
            &fork,
            &body,
            SECRET
        )));
    }

    #[test]
    fn bitbucket_cloud_tag_delete_and_multi_ref() {
        let deleted = serde_json::to_vec(&json!({
            "repository": {"links": {"html": {"href": "https://bitbucket.org/team/deploy"}}},
            "push": {"changes": [{
                "old": {"type": "tag", "name": "v1", "target": {"hash": SHA}},
                "new": null
            }]}
        }))
        .unwrap();
        let sig = format!("sha256={}", hmac_hex(&deleted));
        let h = headers(&[("X-Event-Key", "repo:push"), ("X-Hub-Signature", &sig)]);
        let event = verify_and_parse(Provider::Bitbucket, &h, &deleted, SECRET).unwrap();
        assert_eq!(event.git_ref.as_deref(), Some("refs/tags/v1"));
        assert_eq!(event.after, None);

        let two = serde_json::to_vec(&json!({
            "repository": {"links": {"html": {"href": "https://bitbucket.org/team/deploy"}}},
            "push": {"changes": [
                {"new": {"type": "branch", "name": "a", "target": {"hash": SHA}}},
                {"new": {"type": "branch", "name": "b", "target": {"hash": SHA}}}
            ]}
        }))
        .unwrap();
        let sig = format!("sha256={}", hmac_hex(&two));
        let h = headers(&[("X-Event-Key", "repo:push"), ("X-Hub-Signature", &sig)]);
        let event = verify_and_parse(Provider::Bitbucket, &h, &two, SECRET).unwrap();
        assert_eq!((event.git_ref, event.after), (None, None));
    }

    #[test]
    fn bitbucket_server() {
        let body = bitbucket_server_push();
        let sig = format!("sha256={}", hmac_hex(&body));
        let good = headers(&[
            ("X-Event-Key", "repo:refs_changed"),
            ("X-Hub-Signature", &sig),
        ]);
        let event = verify_and_parse(Provider::Bitbucket, &good, &body, SECRET).unwrap();
        assert_eq!(
            event,
            PushEvent {
                repos: vec![
                    "ssh://git@bitbucket.example.com:7999/ops/deploy.git".into(),
                    "https://bitbucket.example.com/scm/ops/deploy.git".into(),
                ],
                git_ref: Some("refs/heads/master".into()),
                after: Some(SHA.into()),
            }
        );
        assert!(repo_matches(
            "https://bitbucket.example.com/scm/ops/deploy",
            &event.repos
        ));

        let ping_body = br#"{"test": true}"#;
        let ping_sig = format!("sha256={}", hmac_hex(ping_body));
        let ping = headers(&[
            ("X-Event-Key", "diagnostics:ping"),
            ("X-Hub-Signature", &ping_sig),
        ]);
        assert!(ignored(verify_and_parse(
            Provider::Bitbucket,
            &ping,
            ping_body,
            SECRET
        )));
        let malformed = b"not json";
        let h = headers(&[
            ("X-Event-Key", "repo:refs_changed"),
            (
                "X-Hub-Signature",
                &format!("sha256={}", hmac_hex(malformed)),
            ),
        ]);
        assert!(bad_request(verify_and_parse(
            Provider::Bitbucket,
            &h,
            malformed,
            SECRET
        )));
    }

    #[test]
    fn generic() {
        let body = br#"{"repository": "https://git.example.com/ops/deploy.git", "ref": "refs/heads/main"}"#;
        let sig = format!("sha256={}", hmac_hex(body));
        let token = format!("Bearer {}", std::str::from_utf8(SECRET).unwrap());
        let expected = PushEvent {
            repos: vec!["https://git.example.com/ops/deploy.git".into()],
            git_ref: Some("refs/heads/main".into()),
            after: None,
        };
        for h in [
            headers(&[("X-Ferry-Signature", &sig)]),
            headers(&[("Authorization", &token)]),
            headers(&[("Authorization", &token.replace("Bearer", "bearer"))]),
        ] {
            assert_eq!(
                verify_and_parse(Provider::Generic, &h, body, SECRET).unwrap(),
                expected
            );
        }

        for h in [
            headers(&[]),
            headers(&[("Authorization", "Bearer wrong")]),
            headers(&[("Authorization", "Basic Zm9vOmJhcg==")]),
            headers(&[("X-Ferry-Signature", "sha256=abcd")]),
            // A present but wrong signature is not rescued by a good token.
            headers(&[
                ("X-Ferry-Signature", "sha256=abcd"),
                ("Authorization", &token),
            ]),
        ] {
            assert!(unauthorized(verify_and_parse(
                Provider::Generic,
                &h,
                body,
                SECRET
            )));
        }

        let auth = headers(&[("Authorization", &token)]);
        for bad in [
            &b"{"[..],
            br#"{"ref": "refs/heads/main"}"#,
            br#"{"repository": 5}"#,
        ] {
            assert!(bad_request(verify_and_parse(
                Provider::Generic,
                &auth,
                bad,
                SECRET
            )));
        }
        let with_after = format!(r#"{{"repository": "git@host:o/r", "after": "{SHA}"}}"#);
        let event =
            verify_and_parse(Provider::Generic, &auth, with_after.as_bytes(), SECRET).unwrap();
        assert_eq!((event.git_ref, event.after.as_deref()), (None, Some(SHA)));
    }

    #[test]
    fn provider_names_round_trip() {
        for p in [
            Provider::GitHub,
            Provider::GitLab,
            Provider::Gitea,
            Provider::Bitbucket,
            Provider::Generic,
        ] {
            assert_eq!(Provider::from_path(p.name()), Some(p));
        }
        assert_eq!(Provider::from_path("GitHub"), Some(Provider::GitHub));
        assert_eq!(Provider::from_path("forgejo"), Some(Provider::Gitea));
        assert_eq!(Provider::from_path("svn"), None);
        assert_eq!(Provider::from_path(""), None);
    }

    #[test]
    fn error_results_and_statuses() {
        let cases = [
            (
                WebhookError::Unauthorized(String::new()),
                "unauthorized",
                401,
            ),
            (WebhookError::BadRequest(String::new()), "bad_request", 400),
            (WebhookError::Ignored(String::new()), "ignored", 202),
        ];
        for (err, result, status) in cases {
            assert_eq!((err.result(), err.status().as_u16()), (result, status));
        }
    }

    #[test]
    fn repo_matching() {
        let event = |urls: &[&str]| urls.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let gh = event(&["https://github.com/org/app.git"]);
        for same in [
            "https://github.com/org/app",
            "https://github.com/org/app.git",
            "https://github.com/org/app/",
            "https://github.com/org/app.git/",
            "http://github.com/org/app",
            "HTTPS://GitHub.com/Org/App",
            "https://user:token@github.com/org/app",
            "git@github.com:org/app.git",
            "git@github.com:/org/app",
            "github.com:org/app",
            "ssh://git@github.com/org/app.git",
            "ssh://git@github.com:22/org/app.git",
            "git://github.com/org/app",
            "  https://github.com/org/app  ",
        ] {
            assert!(repo_matches(same, &gh), "{same}");
        }
        for different in [
            "https://github.com/org/app2",
            "https://github.com/org/ap",
            "https://github.com/other/app",
            "https://gitlab.com/org/app",
            "https://github.com/org/app/sub",
            "https://github.com",
            "https://github.com/",
            "",
        ] {
            assert!(!repo_matches(different, &gh), "{different}");
        }
        assert!(!repo_matches("https://github.com/org/app", &[]));
        // Nested groups and any of several event URLs.
        let gl = event(&["https://x/a", "git@gitlab.com:group/sub/app.git"]);
        assert!(repo_matches("https://gitlab.com/group/sub/app", &gl));
        assert!(!repo_matches("https://gitlab.com/group/app", &gl));
        // Local paths.
        let local = event(&["file:///srv/git/app.git"]);
        assert!(repo_matches("/srv/git/app", &local));
    }
}
