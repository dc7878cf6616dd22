//! Fault tests of pull mode: the real `ferry agent` against the test bed while a network
//! peer stops answering (the API server paused with `testbed/ctl pause`, a Git remote that
//! accepts connections and never answers) or is gone (connection refused), and the
//! `testbed/ctl` controls themselves.
//!
//! Pausing the API server affects every test of this binary, so its tests run one at a
//! time ([`SERIAL`]); other test binaries run after this one under `cargo test`. A paused
//! component is resumed when its guard drops, also when the test fails.

mod agent_common;
mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use agent_common::{Agent, AgentHome, WAIT, app_entry, apps_file, condition, eventually};
use common::Fixture;
use ferry_model::APP_LABEL;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::ListParams;
use serde_json::Value;

/// One fault test at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The short deadlines the agents of these tests run with.
const SYNC_TIMEOUT: Duration = Duration::from_secs(8);
const KUBE_TIMEOUT: Duration = Duration::from_secs(3);
const GIT_TIMEOUT: Duration = Duration::from_secs(3);

fn agent_flags() -> Vec<String> {
    let secs = |d: Duration| format!("{}s", d.as_secs());
    vec![
        "--sync-timeout".into(),
        secs(SYNC_TIMEOUT),
        "--kube-timeout".into(),
        secs(KUBE_TIMEOUT),
        "--git-timeout".into(),
        secs(GIT_TIMEOUT),
    ]
}

/// `testbed/ctl <action> <component>`; whether it succeeded.
fn try_ctl(action: &str, component: &str) -> bool {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testbed/ctl");
    Command::new(&script)
        .args([action, component])
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()))
        .success()
}

/// `testbed/ctl <action> <component>`, which must succeed.
fn ctl(action: &str, component: &str) {
    assert!(
        try_ctl(action, component),
        "testbed/ctl {action} {component} failed"
    );
}

/// A stopped test-bed component, started again on drop.
struct Stopped(&'static str);

impl Drop for Stopped {
    fn drop(&mut self) {
        ctl("start", self.0);
    }
}

/// A paused test-bed component, resumed on drop.
struct Paused(&'static str);

impl Paused {
    fn pause(component: &'static str) -> Self {
        ctl("pause", component);
        Self(component)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        ctl("resume", self.0);
    }
}

/// The names of the ConfigMaps labelled as objects of `app` in the test namespace.
async fn labelled_configmaps(f: &Fixture, app: &str) -> Vec<String> {
    let list = f
        .api::<ConfigMap>()
        .list(&ListParams::default().labels(&format!("{APP_LABEL}={app}")))
        .await
        .expect("listing ConfigMaps");
    let mut names: Vec<String> = list.items.iter().map(|c| c.name_any()).collect();
    names.sort();
    names
}

/// The test bed's API server URL, as ferry names it in messages.
async fn testbed_server() -> String {
    let options = kube::config::KubeConfigOptions {
        context: Some(ferry_testkit::TESTBED_CONTEXT.into()),
        ..Default::default()
    };
    kube::Config::from_kubeconfig(&options)
        .await
        .expect("the test bed's kubeconfig")
        .cluster_url
        .to_string()
}

/// The Ready condition's reason and message.
fn ready(status: &Value) -> (String, String) {
    let c = condition(status, "Ready");
    (
        c["reason"].as_str().unwrap_or_default().to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// The API server paused while the agent syncs a new commit, for longer than the sync
/// timeout: the app leaves Progressing within its deadline with a transient timeout
/// error, and after the resume the commit is applied, nothing lost or duplicated.
#[tokio::test]
async fn a_paused_api_server_fails_the_sync_in_time_and_the_commit_lands_after_resume() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("flt-api").await;
    let app = f.app("");
    f.write_configmap("cfg", &[("greeting", "one")]);
    f.repo.commit("one");
    let home = AgentHome::new(&apps_file(&[app_entry(
        &app,
        f.repo.path(),
        "app",
        f.ns(),
        "1s",
        "",
    )]));
    let flags = agent_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = Agent::start(&home, "agent", &flags).await;
    agent
        .wait_app(&app, "Synced and Current at one", |s| {
            s["sync"] == "Synced" && s["health"] == "Current"
        })
        .await;
    let first = agent.app(&app).await["revision"].clone();

    let paused = Paused::pause("kube-apiserver");
    let start = Instant::now();
    f.write_configmap("cfg", &[("greeting", "two")]);
    f.write_configmap("extra", &[("k", "v")]);
    let two = f.repo.commit("two");
    // The poll (1 s) sees the commit; its sync cannot reach the API server.
    let failed = agent
        .wait_app(&app, "a timed-out sync reported", |s| {
            let (reason, message) = ready(s);
            reason.ends_with("Failed") && message.contains("timed out")
        })
        .await;
    let reported = start.elapsed();
    let (reason, message) = ready(&failed);
    eprintln!("latency: timed-out sync reported {reported:?} after the pause: {reason}: {message}");
    // The request's own deadline (shorter than the sync's) names the request and server.
    let server = testbed_server().await;
    assert!(
        message.starts_with(&format!("timed out after {} s: ", KUBE_TIMEOUT.as_secs()))
            && message.ends_with(&format!(" on {server}")),
        "names the request and the API server {server}: {message}"
    );
    assert!(
        reported < SYNC_TIMEOUT + Duration::from_secs(4),
        "reported only after {reported:?} (sync timeout {SYNC_TIMEOUT:?})"
    );
    assert_eq!(
        condition(&failed, "Reconciling")["status"],
        "True",
        "transient, retried: {failed:#}"
    );
    assert_ne!(
        condition(&failed, "Stalled")["status"],
        "True",
        "{failed:#}"
    );
    assert_eq!(
        failed["revision"], first,
        "the new commit is not applied yet"
    );
    // Stay paused for longer than the sync timeout, then resume.
    let held = SYNC_TIMEOUT + Duration::from_secs(2);
    tokio::time::sleep(held.saturating_sub(start.elapsed())).await;
    let resumed = Instant::now();
    drop(paused);

    let applied = agent
        .wait_app(&app, "Synced at two after the resume", |s| {
            s["sync"] == "Synced" && s["revision"] == two.as_str()
        })
        .await;
    eprintln!("latency: applied {:?} after the resume", resumed.elapsed());
    assert_eq!(ready(&applied).0, "ReconciliationSucceeded", "{applied:#}");
    assert_eq!(f.cm_value("cfg", "greeting").await.as_deref(), Some("two"));
    let labelled = labelled_configmaps(&f, &app).await;
    assert_eq!(labelled, ["cfg", "extra"]);
    let inventory = f.inventory(&app).await.expect("an inventory");
    assert_eq!(
        inventory.names(),
        labelled,
        "inventory equals the labelled live objects"
    );
    assert_eq!(inventory.revision, two);
    f.finish().await;
}

/// A loopback listener that accepts connections and never answers them.
fn black_hole() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a black hole");
    let url = format!(
        "http://{}/team/blackholed.git",
        listener.local_addr().unwrap()
    );
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    (url, handle)
}

/// A URL on a loopback port nobody listens on.
fn refused() -> String {
    let port = agent_common::free_port();
    format!("http://127.0.0.1:{port}/team/gone.git")
}

/// An app of a remote that fails (`url`) next to one of a healthy local repository: the
/// failing app reports an error naming its remote within the Git timeout, again on the
/// retry (the mirror lock was released), and the other app keeps applying commits.
async fn a_failing_remote_does_not_hold_up_other_apps(prefix: &str, url: &str, expect: &str) {
    let f = Fixture::new(prefix).await;
    let good = f.app("-good");
    let bad = f.app("-bad");
    f.write_configmap("cfg", &[("greeting", "one")]);
    f.repo.commit("one");
    let home = AgentHome::new(&apps_file(&[
        app_entry(&bad, url, "app", f.ns(), "1s", ""),
        app_entry(&good, f.repo.path(), "app", f.ns(), "1s", ""),
    ]));
    let flags = agent_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let start = Instant::now();
    let agent = Agent::start(&home, "agent", &flags).await;
    let failed = agent
        .wait_app(&bad, "a source error", |s| ready(s).0 == "SourceFailed")
        .await;
    let took = start.elapsed();
    let (_, message) = ready(&failed);
    eprintln!("latency: {bad} failed after {took:?}: {message}");
    assert!(message.contains(url), "names the remote: {message}");
    assert!(message.contains(expect), "{message}");
    assert!(took < GIT_TIMEOUT + Duration::from_secs(10), "{took:?}");

    // The retry's fetch fails the same way within its own deadline: no lock left held.
    let history = agent
        .wait_history(&bad, "two failed attempts", |h| {
            h.iter().filter(|e| e["outcome"] == "failed").count() >= 2
        })
        .await;
    for entry in history.iter().filter(|e| e["outcome"] == "failed") {
        let error = entry["error"].as_str().unwrap_or_default();
        assert!(error.contains(expect) && !error.contains("lock"), "{error}");
        let ms = entry["duration_ms"].as_u64().expect("a duration");
        assert!(
            Duration::from_millis(ms) < GIT_TIMEOUT + Duration::from_secs(3),
            "{entry:#}"
        );
    }

    // Meanwhile the other app follows its repository.
    f.write_configmap("cfg", &[("greeting", "two")]);
    f.repo.commit("two");
    eventually("the good app applies two", WAIT, || async {
        f.cm_value("cfg", "greeting").await.as_deref() == Some("two")
    })
    .await;
    assert_eq!(labelled_configmaps(&f, &good).await, ["cfg"]);
    assert_ne!(agent.app(&bad).await["sync"], "Synced");
    f.finish().await;
}

/// A Git remote that accepts connections and never answers.
#[tokio::test]
async fn a_black_holed_git_remote_times_out_and_other_apps_keep_syncing() {
    let _serial = SERIAL.lock().await;
    let (url, _listener) = black_hole();
    a_failing_remote_does_not_hold_up_other_apps("flt-hole", &url, "timed out after 3 s").await;
}

/// A Git remote whose host refuses connections.
#[tokio::test]
async fn a_gone_git_remote_fails_clearly_and_other_apps_keep_syncing() {
    let _serial = SERIAL.lock().await;
    let url = refused();
    a_failing_remote_does_not_hold_up_other_apps("flt-gone", &url, "cannot fetch").await;
}

/// `testbed/ctl stop` stops the scheduler (a pod stays unscheduled, pausing it is refused)
/// and `start` brings it back with its old command line (the pod gets a node).
#[tokio::test]
async fn testbed_ctl_stops_and_starts_a_component() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("flt-ctl").await;
    assert!(!try_ctl("pause", "no-such-component"));
    ctl("stop", "kube-scheduler");
    let stopped = Stopped("kube-scheduler");
    assert!(
        !try_ctl("pause", "kube-scheduler"),
        "a stopped component cannot be paused"
    );
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = f.api();
    let pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "waits"},
        "spec": {"containers": [{"name": "c", "image": "registry.example/none:1"}]},
    }))
    .unwrap();
    pods.create(&Default::default(), &pod)
        .await
        .expect("creating a pod");
    let node = || async { pods.get("waits").await.ok().and_then(|p| p.spec?.node_name) };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(node().await, None, "scheduled without a scheduler");
    drop(stopped);
    eventually("the restarted scheduler places the pod", WAIT, || async {
        node().await.is_some()
    })
    .await;
    f.finish().await;
}
