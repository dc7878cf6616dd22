use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};

use super::*;

fn spec(kind: ReceiverKind, url: Option<&str>) -> NotificationSpec {
    NotificationSpec {
        name: "r".into(),
        kind,
        url: url.map(Into::into),
        secret_ref: None,
        token_file: None,
        events: Vec::new(),
        repository: None,
        timeout: Some("2s".into()),
    }
}

fn receiver(kind: ReceiverKind, url: Option<&str>, token: Option<&str>) -> Receiver {
    Receiver {
        spec: spec(kind, url),
        token: token.map(|t| Secret(t.into())),
        address: None,
    }
}

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn note(event: EventKind) -> Notification {
    Notification {
        app: AppKey::new("team-a", "guestbook"),
        event,
        revision: Some(SHA.into()),
        message: "applied 0123456: 1 created".into(),
        repo: "https://git.example.com/acme/deploy.git".into(),
        dashboard_url: Some("https://ferry.example.com/#/apps/team-a/guestbook".into()),
    }
}

fn body(req: &Request) -> serde_json::Value {
    serde_json::from_slice(&req.body).unwrap()
}

#[test]
fn webhook_payload_is_signed_with_hmac_sha256() {
    let r = receiver(
        ReceiverKind::Webhook,
        Some("https://hooks.example.com/x"),
        Some("k3y"),
    );
    let req = request(&r, &note(EventKind::SyncFailed)).unwrap().unwrap();
    assert_eq!(req.url, "https://hooks.example.com/x");
    let payload: Payload = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(payload.app, "team-a/guestbook");
    assert_eq!(payload.event, "SyncFailed");
    assert_eq!(payload.revision.as_deref(), Some(SHA));
    let sig = req
        .headers
        .iter()
        .find(|(k, _)| *k == "X-Ferry-Signature")
        .unwrap();
    // Known answer: HMAC-SHA256 of the body under the key, computed independently.
    let mut mac = Hmac::<Sha256>::new_from_slice(b"k3y").unwrap();
    mac.update(&req.body);
    mac.verify_slice(&hex::decode(sig.1.strip_prefix("sha256=").unwrap()).unwrap())
        .unwrap();
    assert_eq!(
        signature(b"key", b"The quick brown fox jumps over the lazy dog"),
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
    // Without a token: no signature header.
    let r = receiver(
        ReceiverKind::Webhook,
        Some("https://hooks.example.com/x"),
        None,
    );
    let req = request(&r, &note(EventKind::SyncFailed)).unwrap().unwrap();
    assert!(req.headers.iter().all(|(k, _)| *k != "X-Ferry-Signature"));
}

#[test]
fn slack_text_names_app_event_revision_and_link() {
    let mut r = receiver(ReceiverKind::Slack, None, None);
    r.address = Some(Secret("https://hooks.slack.com/services/T0/B0/XXX".into()));
    let req = request(&r, &note(EventKind::DriftDetected))
        .unwrap()
        .unwrap();
    assert_eq!(req.url, "https://hooks.slack.com/services/T0/B0/XXX");
    assert_eq!(
        body(&req)["text"],
        "ferry: team-a/guestbook DriftDetected at 0123456: applied 0123456: 1 created \
         <https://ferry.example.com/#/apps/team-a/guestbook|dashboard>"
    );
}

#[test]
fn commit_statuses_in_each_forges_api() {
    let gh = receiver(ReceiverKind::Github, None, Some("ghp_x"));
    let req = request(&gh, &note(EventKind::SyncSucceeded))
        .unwrap()
        .unwrap();
    assert_eq!(
        req.url,
        format!("https://api.github.com/repos/acme/deploy/statuses/{SHA}")
    );
    assert!(
        req.headers
            .contains(&("Authorization", "Bearer ghp_x".into()))
    );
    let b = body(&req);
    assert_eq!(b["state"], "success");
    assert_eq!(b["context"], "ferry/team-a/guestbook");
    assert_eq!(
        b["target_url"],
        "https://ferry.example.com/#/apps/team-a/guestbook"
    );
    assert_eq!(
        body(&request(&gh, &note(EventKind::SyncFailed)).unwrap().unwrap())["state"],
        "failure"
    );
    assert_eq!(
        body(
            &request(&gh, &note(EventKind::HealthDegraded))
                .unwrap()
                .unwrap()
        )["state"],
        "error"
    );

    let mut gl = receiver(
        ReceiverKind::Gitlab,
        Some("https://gitlab.example.com/"),
        Some("glpat"),
    );
    gl.spec.repository = Some("group/sub/deploy".into());
    let req = request(&gl, &note(EventKind::SyncFailed)).unwrap().unwrap();
    assert_eq!(
        req.url,
        format!("https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fdeploy/statuses/{SHA}")
    );
    assert!(req.headers.contains(&("PRIVATE-TOKEN", "glpat".into())));
    assert_eq!(body(&req)["state"], "failed");
    assert_eq!(body(&req)["name"], "ferry/team-a/guestbook");

    let gt = receiver(
        ReceiverKind::Gitea,
        Some("http://127.0.0.1:3000"),
        Some("t0k"),
    );
    let req = request(&gt, &note(EventKind::SyncSucceeded))
        .unwrap()
        .unwrap();
    assert_eq!(
        req.url,
        format!("http://127.0.0.1:3000/api/v1/repos/acme/deploy/statuses/{SHA}")
    );
    assert!(req.headers.contains(&("Authorization", "token t0k".into())));

    // No status for drift, nor without a revision.
    assert_eq!(request(&gt, &note(EventKind::DriftDetected)).unwrap(), None);
    let mut unknown = note(EventKind::SyncFailed);
    unknown.revision = None;
    assert_eq!(request(&gt, &unknown).unwrap(), None);
    // A repository URL without a path is a configuration error naming the receiver.
    let mut bare = note(EventKind::SyncSucceeded);
    bare.repo = "https://git.example.com".into();
    let err = request(&gt, &bare).unwrap_err().to_string();
    assert!(err.starts_with("receiver r: no repository"), "{err}");
}

#[test]
fn repository_paths_of_git_urls() {
    for (url, path) in [
        ("https://github.com/acme/deploy.git", Some("acme/deploy")),
        ("https://github.com/acme/deploy/", Some("acme/deploy")),
        ("git@github.com:acme/deploy.git", Some("acme/deploy")),
        (
            "ssh://git@gitlab.com/group/sub/deploy",
            Some("group/sub/deploy"),
        ),
        ("https://github.com/", None),
    ] {
        assert_eq!(repository_path(url).as_deref(), path, "{url}");
    }
}

#[test]
fn events_left_out_are_not_sent() {
    let mut r = receiver(ReceiverKind::Webhook, Some("http://x"), None);
    r.spec.events = vec![EventKind::SyncFailed];
    assert_eq!(request(&r, &note(EventKind::SyncSucceeded)).unwrap(), None);
}

/// The requests a loopback receiver got: headers and body.
type Requests = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A loopback receiver answering with the statuses in `answers` (then 200), recording
/// each request's headers and body.
async fn serve(answers: Vec<StatusCode>) -> (String, Requests) {
    let seen: Requests = Default::default();
    let answers = Arc::new(Mutex::new(answers.into_iter()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: HeaderMap, body: axum::body::Bytes| async move {
                log.lock().unwrap().push((headers, body.to_vec()));
                answers.lock().unwrap().next().unwrap_or(StatusCode::OK)
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

fn quick() -> Sender {
    Sender::new(Backoff::constant(Duration::from_millis(10)), 3)
}

#[tokio::test]
async fn retries_server_errors_then_delivers() {
    let (url, seen) = serve(vec![StatusCode::BAD_GATEWAY, StatusCode::TOO_MANY_REQUESTS]).await;
    let r = receiver(ReceiverKind::Webhook, Some(&url), Some("k"));
    assert!(
        quick()
            .send(&r, &note(EventKind::SyncSucceeded))
            .await
            .unwrap()
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let (headers, body) = &seen[2];
    assert_eq!(headers["x-ferry-event"], "SyncSucceeded");
    assert_eq!(headers["x-ferry-signature"], signature(b"k", body).as_str());
    assert_eq!(headers["content-type"], "application/json");
}

#[tokio::test]
async fn a_client_error_is_not_retried_and_gives_up_after_the_attempts() {
    for (answers, status, attempts) in [
        (vec![StatusCode::UNAUTHORIZED], 401, 1),
        (vec![StatusCode::INTERNAL_SERVER_ERROR; 5], 500, 3),
    ] {
        let (url, seen) = serve(answers).await;
        let r = receiver(ReceiverKind::Webhook, Some(&url), None);
        let err = quick()
            .send(&r, &note(EventKind::SyncFailed))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                NotifyError::Status { status: s, attempts: a, .. } if s == status && a == attempts
            ),
            "{err}"
        );
        assert_eq!(seen.lock().unwrap().len(), attempts as usize);
    }
}

#[tokio::test]
async fn a_silent_receiver_times_out_and_secrets_stay_out_of_the_error() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let mut r = receiver(ReceiverKind::Slack, None, None);
    r.address = Some(Secret(format!("http://{addr}/services/T0/B0/s3cr3t")));
    r.spec.timeout = Some("200ms".into());
    let start = std::time::Instant::now();
    let err = Sender::new(Backoff::constant(Duration::ZERO), 2)
        .send(&r, &note(EventKind::SyncFailed))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let text = err.to_string();
    assert!(text.starts_with("receiver r: timed out"), "{text}");
    assert!(text.ends_with("after 2 attempt(s)"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(!format!("{r:?}").contains("s3cr3t"));
}
