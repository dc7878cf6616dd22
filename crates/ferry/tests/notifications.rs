//! Notifications against a real Git forge: the test bed's Gitea (`testbed/gitea/build.sh`)
//! holds the app's repository, its real push webhooks trigger the agent's syncs, and the
//! agent's commit statuses appear in its API; a generic webhook receiver in the test
//! checks the HMAC signature and the events (sync succeeded and failed, drift detected
//! and healed, health degraded). The poll interval is 1 h: only the webhook or the drift watch can act.

mod agent_common;
mod common;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use agent_common::{Agent, AgentHome, WAIT, app_entry, eventually, github_signature};
use axum::http::HeaderMap;
use common::Fixture;
use ferry_testkit::forge::Gitea;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const HOOK_SECRET: &str = "gitea-to-agent-secret";
const HMAC_KEY: &str = "notification-hmac-key";

/// What the generic webhook receiver got: each body with its signature check.
type Seen = Arc<Mutex<Vec<(Value, bool)>>>;

/// A generic webhook receiver on loopback: `/hook` records each body and whether its
/// `X-Ferry-Signature` is the HMAC-SHA256 of the body under [`HMAC_KEY`].
async fn receiver() -> (String, Seen) {
    let seen: Seen = Default::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: HeaderMap, body: axum::body::Bytes| async move {
                let signed = headers
                    .get("x-ferry-signature")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|sig| sig == github_signature(HMAC_KEY, &body));
                let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push((value, signed));
                "ok"
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

/// Pushes the test repository's `main` to the forge's `deploy` repository.
fn push(f: &Fixture, forge: &Gitea) -> String {
    f.repo
        .git(&["push", "--quiet", &forge.push_url("deploy"), "HEAD:main"]);
    f.repo.head()
}

/// Waits until Gitea shows the status `state` with `context` on `sha`; returns it.
async fn wait_status(forge: &Gitea, sha: &str, context: &str, state: &str) -> Value {
    let found = |statuses: Vec<Value>| {
        statuses
            .into_iter()
            .find(|s| s["context"] == context && s["status"] == state)
    };
    let took = eventually(&format!("commit status {state} on {sha}"), WAIT, || async {
        found(forge.statuses("deploy", sha).await).is_some()
    })
    .await;
    eprintln!("latency: commit status {state} on {}: {took:?}", &sha[..7]);
    found(forge.statuses("deploy", sha).await).expect("the status")
}

/// Waits until the receiver got `event` (at `sha`, when given); returns that payload.
async fn wait_event(seen: &Seen, event: &str, sha: Option<&str>) -> Value {
    let matches = |v: &Value| v["event"] == event && sha.is_none_or(|s| v["revision"] == s);
    eventually(&format!("a {event} notification"), WAIT, || async {
        seen.lock().unwrap().iter().any(|(v, _)| matches(v))
    })
    .await;
    let seen = seen.lock().unwrap();
    let (payload, signed) = seen.iter().find(|(v, _)| matches(v)).unwrap();
    assert!(
        signed,
        "the {event} notification's X-Ferry-Signature is the body's HMAC"
    );
    payload.clone()
}

/// A sync, a broken commit, its fix, a live edit and a failing Pod, with statuses in Gitea (token from
/// a file) and events at a generic webhook of the app's project (HMAC key from a Secret);
/// a receiver that is down is counted as failed, and no token shows in the agent's log.
#[tokio::test]
async fn statuses_in_gitea_and_signed_webhooks_follow_syncs_and_drift() {
    let start = Instant::now();
    let forge = Gitea::start().await;
    eprintln!(
        "latency: Gitea started with an admin and a token: {:?}",
        start.elapsed()
    );
    forge.create_repo("deploy").await;
    let f = Fixture::new("notify").await;
    let app = f.app("");
    f.write_configmap("cfg", &[("greeting", "one")]);
    f.repo.commit("one");
    let one = push(&f, &forge);

    let (hook, seen) = receiver().await;
    let down = format!("http://127.0.0.1:{}/gone", agent_common::free_port());
    let home = AgentHome::new("");
    let dir = home.dir.path();
    std::fs::write(dir.join("forge-token"), format!("{}\n", forge.token())).unwrap();
    // The project's receiver reads its HMAC key from a Secret.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "ops-hook"},
        "stringData": {"token": HMAC_KEY},
    }))
    .unwrap();
    f.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the receiver's Secret");
    let apps = app_entry(
        &app,
        &forge.clone_url("deploy"),
        "app",
        f.ns(),
        "1h",
        "    project: team\n",
    );
    let file = format!(
        "notifications:
  - name: forge
    type: gitea
    url: {forge_url}
    tokenFile: forge-token
  - name: down
    type: webhook
    url: {down}
    events: [SyncSucceeded]
    timeout: 2s
projects:
  - name: team
    sourceRepos: ['*']
    destinations: ['*']
    notifications:
      - name: ops
        type: webhook
        url: {hook}
        secretRef: {{name: ops-hook, namespace: {ns}}}
        timeout: 5s
apps:
{apps}",
        forge_url = forge.url(),
        ns = f.ns(),
    );
    std::fs::write(home.apps_file(), file).unwrap();
    let agent = Agent::start(
        &home,
        "agent",
        &[
            "--webhook-secret",
            HOOK_SECRET,
            "--dashboard-url",
            "https://ferry.example.com/",
        ],
    )
    .await;
    let context = format!("ferry/ferry-system/{app}");
    let link = format!("https://ferry.example.com/#/apps/ferry-system/{app}");

    // The first sync: a success status on the commit, a signed SyncSucceeded.
    let status = wait_status(&forge, &one, &context, "success").await;
    assert_eq!(status["target_url"], link.as_str());
    let ok = wait_event(&seen, "SyncSucceeded", Some(&one)).await;
    assert_eq!(ok["app"], format!("ferry-system/{app}"));
    assert_eq!(ok["url"], link.as_str());

    // Gitea's own push webhook triggers the sync of a broken commit.
    forge
        .add_webhook("deploy", &format!("{}/hooks/gitea", agent.url), HOOK_SECRET)
        .await;
    f.repo.write("app/bad.yaml", "kind: [unclosed\n");
    f.repo.commit("two: broken");
    let two = push(&f, &forge);
    let failed = wait_status(&forge, &two, &context, "failure").await;
    assert!(
        failed["description"]
            .as_str()
            .unwrap()
            .starts_with("SyncFailed: "),
        "{failed}"
    );
    let failure = wait_event(&seen, "SyncFailed", Some(&two)).await;
    assert!(
        failure["message"].as_str().unwrap().contains("bad.yaml"),
        "{failure}"
    );
    agent
        .wait_history(&app, "the failed sync of the push, by webhook", |h| {
            h.iter()
                .any(|e| e["revision"] == two.as_str() && e["trigger"] == "webhook")
        })
        .await;

    // The fix: success on its commit.
    f.repo.remove("app/bad.yaml");
    f.write_configmap("cfg", &[("greeting", "three")]);
    // A Pod no node may run (it stays Pending), whose status the test fails later.
    f.repo.write(
        "app/worker.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: worker\nspec:\n  nodeSelector:\n    ferry.dev/test: nowhere\n  containers:\n    - name: main\n      image: registry.example/worker:1\n",
    );
    f.repo.commit("three: fixed");
    let three = push(&f, &forge);
    wait_status(&forge, &three, &context, "success").await;
    wait_event(&seen, "SyncSucceeded", Some(&three)).await;
    assert_eq!(
        f.cm_value("cfg", "greeting").await.as_deref(),
        Some("three")
    );

    // A live edit: drift detected, then healed.
    f.edit_value("cfg", "greeting", "tampered").await;
    let drift = wait_event(&seen, "DriftDetected", Some(&three)).await;
    assert!(
        drift["message"].as_str().unwrap().contains("cfg"),
        "{drift}"
    );
    wait_event(&seen, "DriftHealed", Some(&three)).await;
    assert_eq!(
        f.cm_value("cfg", "greeting").await.as_deref(),
        Some("three")
    );

    assert_eq!(
        forge.statuses("deploy", &three).await.len(),
        1,
        "no status for drift"
    );

    // The Pod fails: health degraded, an error status on the synced commit.
    f.api::<Pod>()
        .patch_status(
            "worker",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed", "reason": "Evicted", "message": "the node ran out of memory"}})),
        )
        .await
        .expect("failing the Pod");
    let degraded = wait_event(&seen, "HealthDegraded", Some(&three)).await;
    assert!(
        degraded["message"].as_str().unwrap().contains("Pod"),
        "{degraded}"
    );
    wait_status(&forge, &three, &context, "error").await;

    // Each event once, in order.
    let events: Vec<(String, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(v, _)| {
            (
                v["event"].as_str().unwrap().into(),
                v["revision"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("SyncSucceeded", &one),
        ("SyncFailed", &two),
        ("SyncSucceeded", &three),
        ("DriftDetected", &three),
        ("DriftHealed", &three),
        ("HealthDegraded", &three),
    ]
    .iter()
    .map(|(e, s)| (e.to_string(), s.to_string()))
    .collect();
    assert_eq!(events, expected);

    // The receiver that is down: counted as failed, the syncs went on regardless.
    let series = |receiver: &str, kind: &str, event: &str, result: &str| {
        format!(
            "ferry_notifications_total{{receiver=\"{receiver}\",type=\"{kind}\",event=\"{event}\",result=\"{result}\"}}"
        )
    };
    eventually("the failed delivery counted", WAIT, || async {
        agent.get_text("/metrics").await.1.contains(&series(
            "down",
            "webhook",
            "SyncSucceeded",
            "failed",
        ))
    })
    .await;
    let (_, metrics) = agent.get_text("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "{} 2",
            series("forge", "gitea", "SyncSucceeded", "sent")
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "{} 1",
            series("ops", "webhook", "SyncFailed", "sent")
        )),
        "{metrics}"
    );
    let log = agent.log();
    assert!(
        log.contains("notification failed: receiver down: cannot connect"),
        "{log}"
    );
    assert!(
        !log.contains(forge.token()),
        "the forge token is never logged"
    );
    assert!(!log.contains(HMAC_KEY), "the HMAC key is never logged");
    drop(agent);
    f.finish().await;
}
