//! Notifications of an app's sync outcomes, health and drift, sent to
//!
//! | receiver | request |
//! |---|---|
//! | `webhook` | `POST <url>`, JSON [`Payload`], `X-Ferry-Event`, `X-Ferry-Signature: sha256=<hex HMAC-SHA256 of the body>` when a token is set |
//! | `slack` | `POST <url>`, `{"text": …}` (Slack, Mattermost, Rocket.Chat incoming webhooks) |
//! | `github` | `POST <url>/repos/{owner}/{repo}/statuses/{sha}`, `Authorization: Bearer <token>` |
//! | `gitlab` | `POST <url>/api/v4/projects/{id}/statuses/{sha}`, `PRIVATE-TOKEN: <token>` |
//! | `gitea` | `POST <url>/api/v1/repos/{owner}/{repo}/statuses/{sha}`, `Authorization: token <token>` |
//!
//! A commit status has the context `ferry/<namespace>/<name>` and links to the app's page
//! on the dashboard. Every request has a timeout (the receiver's `timeout`); a failed
//! delivery (a transport error, a 429 or a 5xx answer) is retried on [`RETRY`], a 4xx one
//! is not. Tokens and secret addresses never appear in errors: receivers are named by
//! their `name`, and URLs in messages go through [`ferry_model::redact_text`].

use std::time::Duration;

use ferry_model::{AppKey, Backoff, EventKind, NotificationSpec, ReceiverKind, redact_text};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// The retry of a failed delivery: 1 s, 2 s, 4 s… at most 30 s, with jitter.
pub const RETRY: Backoff =
    Backoff::new(Duration::from_secs(1), 2, Duration::from_secs(30)).with_jitter(0.2);

/// Attempts of one delivery, the first included.
pub const ATTEMPTS: u32 = 3;

/// The longest error-answer body quoted in an error.
const QUOTED_BODY: usize = 200;

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The receiver cannot be addressed for this app (no URL, no repository).
    #[error("receiver {receiver}: {message}")]
    Config {
        /// The receiver's name.
        receiver: String,
        /// What is missing.
        message: String,
    },
    /// The receiver answered with an error status.
    #[error("receiver {receiver}: HTTP {status} after {attempts} attempt(s): {body}")]
    Status {
        /// The receiver's name.
        receiver: String,
        /// The HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The start of the answer's body.
        body: String,
    },
    /// No answer: connection refused, timed out, TLS failed.
    #[error("receiver {receiver}: {message} after {attempts} attempt(s)")]
    Transport {
        /// The receiver's name.
        receiver: String,
        /// The transport error, without its URL.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// One thing that happened to an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The app.
    pub app: AppKey,
    /// What happened.
    pub event: EventKind,
    /// The commit concerned (full SHA), when known.
    pub revision: Option<String>,
    /// A one-line description (already redacted).
    pub message: String,
    /// The app's repository URL (`source.repo`), whence a commit status's repository.
    pub repo: String,
    /// The app's page on the dashboard, when the agent knows its public address.
    pub dashboard_url: Option<String>,
}

/// A token or a secret address; its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A receiver with its secrets read.
#[derive(Clone, Debug)]
pub struct Receiver {
    /// The receiver as configured.
    pub spec: NotificationSpec,
    /// Its token (`token` of its Secret, or its `tokenFile`).
    pub token: Option<Secret>,
    /// Its address from the Secret's `address` key, replacing `spec.url`.
    pub address: Option<Secret>,
}

/// The body of a generic webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Payload {
    /// The app, `namespace/name`.
    pub app: String,
    /// The app's namespace.
    pub namespace: String,
    /// The app's name.
    pub name: String,
    /// `SyncSucceeded`, `SyncFailed`, `HealthDegraded`, `DriftDetected`, `DriftHealed`.
    pub event: String,
    /// The commit, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// What happened, one line.
    pub message: String,
    /// The app's page on the dashboard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A request to send: what [`Sender::send`] posts, built by [`request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Where to (may hold a secret: never log it).
    pub url: String,
    /// Headers besides `Content-Type: application/json` (may hold the token).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// The HMAC-SHA256 signature of `body` under `key`, as `sha256=<hex>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The commit-status context of `app`: `ferry/<namespace>/<name>`.
pub fn context(app: &AppKey) -> String {
    format!("ferry/{app}")
}

/// The repository path of a Git URL (`https://host/a/b.git`, `ssh://git@host/a/b`,
/// `git@host:a/b.git`): `a/b`, without `.git` and surrounding slashes.
pub fn repository_path(url: &str) -> Option<String> {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1,
        None => url.split_once(':')?.1,
    };
    let path = rest.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    path.contains('/').then(|| path.to_string())
}

/// Percent-encodes everything but unreserved characters (a GitLab project path as ID).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The commit-status state of `event` in the forge's vocabulary.
fn state(kind: ReceiverKind, event: EventKind) -> &'static str {
    match (kind, event) {
        (_, EventKind::SyncSucceeded | EventKind::DriftHealed) => "success",
        (ReceiverKind::Gitlab, _) => "failed",
        (_, EventKind::HealthDegraded) => "error",
        _ => "failure",
    }
}

/// The request that tells `receiver` about `n`; `Ok(None)` when there is nothing to send
/// (the receiver does not want the event, or a commit status without a revision).
pub fn request(receiver: &Receiver, n: &Notification) -> Result<Option<Request>, NotifyError> {
    let spec = &receiver.spec;
    if !spec.wants(n.event) {
        return Ok(None);
    }
    let config = |message: &str| NotifyError::Config {
        receiver: spec.name.clone(),
        message: message.into(),
    };
    let base = receiver
        .address
        .as_ref()
        .map(|a| a.0.clone())
        .or_else(|| spec.url.clone())
        .or_else(|| match spec.kind {
            ReceiverKind::Github => Some("https://api.github.com".into()),
            ReceiverKind::Gitlab => Some("https://gitlab.com".into()),
            _ => None,
        })
        .ok_or_else(|| config("no url (and no address in its Secret)"))?;
    let token = receiver.token.as_ref().map(|t| t.0.as_str());
    let json = |v: serde_json::Value| serde_json::to_vec(&v).expect("JSON serialises");
    let short = n.revision.as_deref().map(|r| r.get(..7).unwrap_or(r));
    match spec.kind {
        ReceiverKind::Webhook => {
            let payload = Payload {
                app: n.app.to_string(),
                namespace: n.app.namespace.clone(),
                name: n.app.name.clone(),
                event: n.event.to_string(),
                revision: n.revision.clone(),
                message: n.message.clone(),
                url: n.dashboard_url.clone(),
            };
            let body = serde_json::to_vec(&payload).expect("JSON serialises");
            let mut headers = vec![("X-Ferry-Event", n.event.to_string())];
            if let Some(token) = token {
                headers.push(("X-Ferry-Signature", signature(token.as_bytes(), &body)));
            }
            Ok(Some(Request {
                url: base,
                headers,
                body,
            }))
        }
        ReceiverKind::Slack => {
            let mut text = format!("ferry: {} {}", n.app, n.event);
            if let Some(short) = short {
                text.push_str(&format!(" at {short}"));
            }
            if !n.message.is_empty() {
                text.push_str(&format!(": {}", n.message));
            }
            if let Some(url) = &n.dashboard_url {
                text.push_str(&format!(" <{url}|dashboard>"));
            }
            Ok(Some(Request {
                url: base,
                headers: Vec::new(),
                body: json(serde_json::json!({ "text": text })),
            }))
        }
        kind => {
            let Some(sha) = &n.revision else {
                return Ok(None);
            };
            let repository = spec
                .repository
                .clone()
                .or_else(|| repository_path(&n.repo))
                .ok_or_else(|| config("no repository: set repository (owner/name)"))?;
            let token = token.ok_or_else(|| config("no token"))?;
            let base = base.trim_end_matches('/');
            let description: String = format!("{}: {}", n.event, n.message)
                .chars()
                .take(140)
                .collect();
            let mut status = serde_json::json!({
                "state": state(kind, n.event),
                "description": description,
            });
            if let Some(url) = &n.dashboard_url {
                status["target_url"] = url.clone().into();
            }
            let (url, auth) = match kind {
                ReceiverKind::Github => {
                    status["context"] = context(&n.app).into();
                    (
                        format!("{base}/repos/{repository}/statuses/{sha}"),
                        ("Authorization", format!("Bearer {token}")),
                    )
                }
                ReceiverKind::Gitlab => {
                    status["name"] = context(&n.app).into();
                    (
                        format!(
                            "{base}/api/v4/projects/{}/statuses/{sha}",
                            encode(&repository)
                        ),
                        ("PRIVATE-TOKEN", token.to_string()),
                    )
                }
                _ => {
                    status["context"] = context(&n.app).into();
                    (
                        format!("{base}/api/v1/repos/{repository}/statuses/{sha}"),
                        ("Authorization", format!("token {token}")),
                    )
                }
            };
            let mut headers = vec![auth];
            if kind == ReceiverKind::Github {
                headers.push(("Accept", "application/vnd.github+json".into()));
            }
            Ok(Some(Request {
                url,
                headers,
                body: json(status),
            }))
        }
    }
}

/// Delivers requests with timeouts and retries.
#[derive(Clone, Debug)]
pub struct Sender {
    client: reqwest::Client,
    retry: Backoff,
    attempts: u32,
}

impl Default for Sender {
    fn default() -> Self {
        Self::new(RETRY, ATTEMPTS)
    }
}

impl Sender {
    /// A sender retrying on `retry`, making at most `attempts` attempts per delivery.
    pub fn new(retry: Backoff, attempts: u32) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds");
        Self {
            client,
            retry,
            attempts: attempts.max(1),
        }
    }

    /// Tells `receiver` about `n`: `Ok(false)` when there was nothing to send, `Ok(true)`
    /// once delivered (a 2xx answer). Each attempt is bounded by the receiver's timeout.
    pub async fn send(&self, receiver: &Receiver, n: &Notification) -> Result<bool, NotifyError> {
        let Some(req) = request(receiver, n)? else {
            return Ok(false);
        };
        let name = &receiver.spec.name;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut builder = self
                .client
                .post(&req.url)
                .timeout(receiver.spec.timeout())
                .header("Content-Type", "application/json")
                .body(req.body.clone());
            for (k, v) in &req.headers {
                builder = builder.header(*k, v);
            }
            let error = match builder.send().await {
                Ok(answer) if answer.status().is_success() => return Ok(true),
                Ok(answer) => {
                    let status = answer.status();
                    let body = tokio::time::timeout(receiver.spec.timeout(), answer.text())
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default();
                    let quoted: String = body.chars().take(QUOTED_BODY).collect();
                    let error = NotifyError::Status {
                        receiver: name.clone(),
                        status: status.as_u16(),
                        attempts: attempt,
                        body: redact_text(quoted.trim()).replace('\n', " "),
                    };
                    if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS
                    {
                        return Err(error);
                    }
                    error
                }
                Err(e) => NotifyError::Transport {
                    receiver: name.clone(),
                    message: transport_message(e),
                    attempts: attempt,
                },
            };
            if attempt >= self.attempts {
                return Err(error);
            }
            tokio::time::sleep(self.retry.delay(attempt)).await;
        }
    }
}

/// A transport error without its URL (which may hold a secret), and its causes.
fn transport_message(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut message = kind.to_string();
    let e = e.without_url();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    redact_text(&message).into_owned()
}

#[cfg(test)]
mod tests;
