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

/// An agent home whose ferry.yaml has the one app `app`: the fixture's `app/` directory
/// into its namespace, polled every `interval`.
fn one_app_home(f: &Fixture, app: &str, interval: &str) -> AgentHome {
    AgentHome::new(&apps_file(&[app_entry(
        app,
        f.repo.path(),
        "app",
        f.ns(),
        interval,
        "",
    )]))
}

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
    let home = one_app_home(&f, &app, "1s");
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
    let labelled = f.labelled_configmaps(&app).await;
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

/// Sends `signal` (`STOP`, `CONT`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A paused process, resumed (SIGCONT) on drop.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

/// Restarts the API server (`testbed/ctl stop`, `start`) and waits until it answers.
async fn restart_api_server(f: &Fixture) {
    ctl("stop", "kube-apiserver");
    ctl("start", "kube-apiserver");
    api_server_answers(f).await;
}

/// Compacts etcd's history up to its current revision (through its gRPC gateway, with the
/// API server's client certificate), so that no watch can resume from an older resource
/// version: it must list again.
fn compact_etcd() {
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let state = PathBuf::from(kubeconfig).parent().unwrap().to_path_buf();
    let ports = std::fs::read_to_string(state.join("ports.env")).expect("ports.env");
    let port = ports
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_PORT="))
        .expect("ETCD_PORT")
        .to_string();
    let pki = state.join("pki");
    let call = |path: &str, body: &str| -> Value {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "10", "--cacert"])
            .arg(pki.join("ca.crt"))
            .arg("--cert")
            .arg(pki.join("apiserver-etcd-client.crt"))
            .arg("--key")
            .arg(pki.join("apiserver-etcd-client.key"))
            .args([
                "-X",
                "POST",
                &format!("https://127.0.0.1:{port}{path}"),
                "-d",
                body,
            ])
            .output()
            .expect("running curl");
        assert!(out.status.success(), "etcd {path}: {out:?}");
        serde_json::from_slice(&out.stdout).expect("etcd's answer")
    };
    let revision = call("/v3/kv/range", r#"{"key":"AA==","limit":1}"#)["header"]["revision"]
        .as_str()
        .expect("a revision")
        .to_string();
    call(
        "/v3/kv/compaction",
        &format!(r#"{{"revision":"{revision}","physical":true}}"#),
    );
}

/// Waits until the API server answers a list again.
async fn api_server_answers(f: &Fixture) {
    eventually(
        "the API server answers again",
        Duration::from_secs(60),
        || async {
            f.api::<ConfigMap>()
                .list(&ListParams::default().limit(1))
                .await
                .is_ok()
        },
    )
    .await;
}

/// Waits until the API server answers a list again, and the controller-manager caught up
/// with it (a new namespace gets its `default` ServiceAccount), so that later tests find
/// the control plane as before.
async fn api_server_ready(f: &Fixture) {
    api_server_answers(f).await;
    let probe = ferry_testkit::TestNamespace::new(&f.client, "flt-probe").await;
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(f.client.clone(), probe.name());
    eventually(
        "the controller-manager caught up",
        Duration::from_secs(120),
        || async { matches!(accounts.get_opt("default").await, Ok(Some(_))) },
    )
    .await;
    probe.cleanup().await;
}

/// The labelled live ConfigMaps of `app` equal its inventory's entries and `expected`.
async fn assert_converged(f: &Fixture, app: &str, expected: &[&str]) {
    let labelled = f.labelled_configmaps(app).await;
    assert_eq!(labelled, expected, "labelled live objects of {app}");
    let inventory = f.inventory(app).await.expect("an inventory");
    assert_eq!(
        inventory.names(),
        labelled,
        "inventory equals the labelled live objects"
    );
}

/// An object deleted while the agent's watch is away (the agent paused, its connections
/// closed by an API server restart), after which the watch cannot resume (etcd compacted
/// past its resource version) and lists its kind again: the relist misses the object and the agent
/// re-creates it. The periodic resync is an hour away, so only the relist can heal it.
#[tokio::test]
async fn an_object_deleted_while_the_watch_is_away_is_healed_after_the_relist() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("flt-gap").await;
    let app = f.app("");
    f.write_configmap("cfg", &[("greeting", "one")]);
    f.write_configmap("other", &[("k", "v")]);
    f.repo.commit("one");
    let home = one_app_home(&f, &app, "1h");
    let mut flags = agent_flags();
    flags.extend(["--resync-interval".into(), "1h".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = Agent::start(&home, "agent", &flags).await;
    agent
        .wait_app(&app, "Synced and Current", |s| {
            s["sync"] == "Synced" && s["health"] == "Current"
        })
        .await;

    signal(agent.pid(), "STOP");
    let resume = Resume(agent.pid());
    // The restart closes the paused agent's watch connections first, so that the
    // deletion's event cannot wait in its socket buffer; the compaction then keeps its
    // watch from resuming after the deletion.
    restart_api_server(&f).await;
    f.api::<ConfigMap>()
        .delete("cfg", &Default::default())
        .await
        .expect("deleting cfg");
    compact_etcd();
    // A second restart empties the API server's watch cache, which would otherwise still
    // hold the deletion's event for the agent's resumed watch.
    restart_api_server(&f).await;
    drop(resume);
    let took = eventually("cfg re-created", Duration::from_secs(45), || async {
        f.cm_value("cfg", "greeting").await.as_deref() == Some("one")
    })
    .await;
    eprintln!("latency: healed {took:?} after the agent resumed");
    // Before any assertion: the tests after this one need the whole control plane back.
    api_server_ready(&f).await;
    assert!(
        agent.log().contains("an object is missing after a relist"),
        "healed by the relist's comparison"
    );
    assert_converged(&f, &app, &["cfg", "other"]).await;
    f.finish().await;
}

/// A custom resource whose CRD another party installs after the agent started: the app
/// fails with the unknown kind, and once the CRD is there its retry syncs (discovery is
/// refreshed for the unknown kind) without a restart.
#[tokio::test]
async fn a_crd_installed_by_another_party_is_found_without_a_restart() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("flt-crd").await;
    let app = f.app("");
    let group = format!("{}.ferry.test", f.ns());
    let crd_name = format!("gadgets.{group}");
    f.repo.write(
        "app/gadget.yaml",
        &format!(
            "apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: one\nspec:\n  size: 3\n"
        ),
    );
    f.repo.commit("a gadget");
    let home = one_app_home(&f, &app, "1h");
    let flags = agent_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = Agent::start(&home, "agent", &flags).await;
    let failed = agent
        .wait_app(&app, "the unknown kind reported", |s| {
            ready(s).1.contains("Gadget")
        })
        .await;
    eprintln!("before the CRD: {}", ready(&failed).1);

    let crd_resource = common::resource(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    f.delete_later(crd_resource.clone(), None, &crd_name);
    let crds = kube::Api::<kube::api::DynamicObject>::all_with(f.client.clone(), &crd_resource);
    let crd: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {
            "group": group,
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))
    .unwrap();
    let installed = Instant::now();
    crds.create(&Default::default(), &crd)
        .await
        .expect("creating the CRD");
    agent
        .wait_app(&app, "Synced once the CRD is there", |s| {
            s["sync"] == "Synced" && s["health"] == "Current"
        })
        .await;
    eprintln!(
        "latency: synced {:?} after the CRD was created",
        installed.elapsed()
    );
    let gadgets = kube::Api::<kube::api::DynamicObject>::namespaced_with(
        f.client.clone(),
        f.ns(),
        &common::resource(&format!("{group}/v1"), "Gadget", "gadgets"),
    );
    let gadget = gadgets.get("one").await.expect("the gadget exists");
    assert_eq!(gadget.data["spec"]["size"], 3);
    assert_eq!(
        gadget.labels().get(APP_LABEL).map(String::as_str),
        Some(app.as_str())
    );
    let inventory = f.inventory(&app).await.expect("an inventory");
    assert_eq!(inventory.names(), ["one"]);
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
    assert_eq!(f.labelled_configmaps(&good).await, ["cfg"]);
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

/// An agent API that accepts connections and never answers: each client command
/// (`get`, `history`, an action) gives up at `--request-timeout` with a one-line error
/// naming the agent's address, and exits non-zero.
#[test]
fn client_commands_give_up_on_an_agent_that_never_answers() {
    let (url, _listener) = black_hole();
    let server = url.trim_end_matches("/team/blackholed.git");
    for args in [
        &["get", "apps"][..],
        &["history", "web"],
        &["sync", "web"],
        &["rollback", "web", "abc1234"],
    ] {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(["--server", server, "--request-timeout", "1s"])
            .output()
            .expect("running ferry");
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
        assert!(
            stderr.contains(&format!("cannot reach the agent at {server}/api/v1/apps"))
                && stderr.contains("no answer within 1s"),
            "{args:?}: {stderr}"
        );
    }
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
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> = f.api();
    eventually("the namespace's default ServiceAccount", WAIT, || async {
        matches!(accounts.get_opt("default").await, Ok(Some(_)))
    })
    .await;
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

/// A loopback TCP proxy to the test bed's API server whose access can be cut: cut, every
/// connection (open or new) is a black hole (bytes read and dropped, nothing answered);
/// restored, new connections are forwarded again, while those of before stay black holes
/// (so nothing sent during the cut reaches the server late).
struct ApiProxy {
    port: u16,
    state: std::sync::Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    /// Incremented by every cut: a connection forwards only within its own epoch.
    epoch: std::sync::atomic::AtomicU64,
    cut: std::sync::atomic::AtomicBool,
}

impl ApiProxy {
    async fn start(upstream: &str) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(ProxyState::default());
        let upstream = upstream.to_string();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (state, upstream) = (shared.clone(), upstream.clone());
                tokio::spawn(async move {
                    let epoch = state.epoch.load(SeqCst);
                    let live = !state.cut.load(SeqCst);
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let forwarding = move || live && state.epoch.load(SeqCst) == epoch;
                    let pump =
                        |mut from: tokio::net::tcp::OwnedReadHalf,
                         mut to: tokio::net::tcp::OwnedWriteHalf| {
                            let forwarding = forwarding.clone();
                            async move {
                                let mut buf = vec![0; 64 * 1024];
                                loop {
                                    let n = match from.read(&mut buf).await {
                                        Ok(0) | Err(_) => return,
                                        Ok(n) => n,
                                    };
                                    if forwarding() && to.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write),
                        pump(server_read, client_write)
                    );
                });
            }
        });
        Self { port, state, task }
    }

    fn cut(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.state.cut.store(true, SeqCst);
        self.state.epoch.fetch_add(1, SeqCst);
    }

    fn restore(&self) {
        self.state
            .cut
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// A kubeconfig file whose test-bed context goes through this proxy.
    async fn kubeconfig(&self, f: &Fixture) -> tempfile::NamedTempFile {
        let path = std::env::var("KUBECONFIG").expect("KUBECONFIG");
        let mut config = kube::config::Kubeconfig::read_from(&path).expect("the kubeconfig");
        let context = config
            .contexts
            .iter()
            .find(|c| c.name == ferry_testkit::TESTBED_CONTEXT)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.clone())
            .expect("the test bed's context");
        for cluster in &mut config.clusters {
            if cluster.name == context
                && let Some(c) = &mut cluster.cluster
            {
                c.server = Some(format!("https://127.0.0.1:{}", self.port));
            }
        }
        f.kubeconfig_file(&serde_json::to_string(&config).unwrap())
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `host:port` of the test bed's API server.
async fn api_server_address() -> String {
    let url = testbed_server().await;
    url.trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

/// The UTC timestamp that starts the first log line containing `needle`.
fn logged_at(log: &str, needle: &str) -> Option<String> {
    log.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

/// Two agents with leader election; the leader's API access is cut (a black hole: its
/// renewals and syncs hang). The leader stops leading on its own clock before the standby
/// takes the Lease over; the standby applies the commit made meanwhile; after the access
/// comes back the old leader stays a standby and records, applies and publishes nothing.
#[tokio::test]
async fn a_leader_cut_off_from_the_api_steps_down_before_the_standby_takes_over() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("flt-fence").await;
    let app = f.app("");
    f.write_configmap("cfg", &[("greeting", "one")]);
    f.repo.commit("one");
    let yaml = apps_file(&[app_entry(&app, f.repo.path(), "app", f.ns(), "1s", "")]);
    let (home_a, home_b) = (AgentHome::new(&yaml), AgentHome::new(&yaml));
    let proxy = ApiProxy::start(&api_server_address().await).await;
    let kubeconfig = proxy.kubeconfig(&f).await;
    let kubeconfig = kubeconfig.path().to_str().unwrap().to_string();
    let mut flags = agent_flags();
    flags.extend(["--leader-elect-namespace".into(), f.ns().into()]);
    let with_id = |id: &str| {
        let mut flags = flags.clone();
        flags.extend(["--identity".into(), format!("{}-{id}", f.ns())]);
        flags
    };
    let (flags_a, flags_b) = (with_id("a"), with_id("b"));
    let flags_a: Vec<&str> = flags_a.iter().map(String::as_str).collect();
    let flags_b: Vec<&str> = flags_b.iter().map(String::as_str).collect();
    let a = Agent::start_with_env(&home_a, "a", &flags_a, &[("KUBECONFIG", &kubeconfig)]).await;
    eventually("a leads", WAIT, || async {
        a.log().contains("leading: reconciling all apps")
    })
    .await;
    let b = Agent::start(&home_b, "b", &flags_b).await;
    a.wait_app(&app, "Synced at one", |s| s["sync"] == "Synced")
        .await;
    eventually("b stands by", WAIT, || async {
        b.log().contains("standing by")
    })
    .await;

    proxy.cut();
    let cut = Instant::now();
    f.write_configmap("cfg", &[("greeting", "two")]);
    f.write_configmap("extra", &[("k", "v")]);
    let two = f.repo.commit("two");
    eventually("b applies two", Duration::from_secs(60), || async {
        f.cm_value("cfg", "greeting").await.as_deref() == Some("two")
    })
    .await;
    eprintln!(
        "latency: the standby applied the commit {:?} after the cut",
        cut.elapsed()
    );
    let (log_a, log_b) = (a.log(), b.log());
    let stepped_down = logged_at(&log_a, "the lease was not renewed in time")
        .expect("the cut-off leader says it stopped leading");
    let took_over = logged_at(&log_b, "leading: reconciling all apps").expect("the standby leads");
    eprintln!("a stepped down at {stepped_down}, b took over at {took_over}");
    assert!(
        stepped_down < took_over,
        "the old leader stopped ({stepped_down}) before the standby took over ({took_over})"
    );
    b.wait_app(&app, "Synced at two", |s| {
        s["sync"] == "Synced" && s["revision"] == two.as_str()
    })
    .await;

    proxy.restore();
    f.write_configmap("cfg", &[("greeting", "three")]);
    let three = f.repo.commit("three");
    b.wait_app(&app, "Synced at three", |s| {
        s["sync"] == "Synced" && s["revision"] == three.as_str()
    })
    .await;
    // a reaches the API server again, sees b's Lease and stays a standby.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let log_a = a.log();
    let after_cut = &log_a[log_a.find("the lease was not renewed in time").unwrap()..];
    assert!(
        !after_cut.contains(" applied") && !after_cut.contains("leading: reconciling"),
        "the old leader acted after losing the lease:\n{after_cut}"
    );
    let stepped_down_ms = stepped_down
        .parse::<k8s_openapi::jiff::Timestamp>()
        .expect("a log timestamp")
        .as_millisecond();
    let late: Vec<Value> = a
        .history(&app)
        .await
        .into_iter()
        .filter(|e| e["started_at"].as_i64().unwrap_or_default() >= stepped_down_ms)
        .collect();
    assert!(
        late.is_empty(),
        "the old leader recorded syncs after it stopped leading: {late:#?}"
    );
    assert_converged(&f, &app, &["cfg", "extra"]).await;
    assert_eq!(
        f.cm_value("cfg", "greeting").await.as_deref(),
        Some("three")
    );
    f.finish().await;
}

/// Writes Secret `name` to `app/<name>.yaml` of the repository.
fn write_secret(f: &Fixture, name: &str) {
    f.repo.write(
        &format!("app/{name}.yaml"),
        &format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  k: v\n"),
    );
}

/// The names of the Secrets labelled as objects of `app` in the test namespace.
async fn labelled_secrets(f: &Fixture, app: &str) -> Vec<String> {
    let secrets = f
        .api::<k8s_openapi::api::core::v1::Secret>()
        .list(&ListParams::default().labels(&format!("{APP_LABEL}={app}")))
        .await
        .expect("listing Secrets");
    let mut names: Vec<String> = secrets.items.iter().map(|s| s.name_any()).collect();
    names.sort();
    names
}

/// The agent stopped at failpoint `point` of the sync of a commit that changes one
/// object, adds one and removes a ConfigMap and a Secret (two kind ranks, so a prune has a
/// middle), and SIGKILLed there; a restarted agent converges: nothing lost, duplicated or
/// wrongly pruned (an unlabelled ConfigMap of the namespace stays), the inventory equals
/// the labelled live objects, the app Synced and Current.
async fn killed_at_a_failpoint_then_restarted_converges(prefix: &str, point: &str) {
    let f = Fixture::new(prefix).await;
    let app = f.app("");
    f.write_configmap("cfg", &[("greeting", "one")]);
    f.write_configmap("old", &[("k", "v")]);
    write_secret(&f, "old-secret");
    f.repo.commit("one");
    f.one_off("apply", &app, "app", &[]).await.expect_code(0);
    let bystander: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bystander"}, "data": {"k": "v"},
    }))
    .unwrap();
    f.api::<ConfigMap>()
        .create(&Default::default(), &bystander)
        .await
        .expect("creating an unlabelled ConfigMap");

    let home = one_app_home(&f, &app, "1s");
    let flags = agent_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let failpoints = format!("{point}=return");
    let mut agent =
        Agent::start_with_env(&home, "agent", &flags, &[("FAILPOINTS", &failpoints)]).await;
    agent
        .wait_app(&app, "Synced at one", |s| s["sync"] == "Synced")
        .await;
    f.write_configmap("cfg", &[("greeting", "two")]);
    f.write_configmap("added", &[("k", "v")]);
    f.repo.remove("app/old.yaml");
    f.repo.remove("app/old-secret.yaml");
    let two = f.repo.commit("two");
    let marker = format!("ferry: failpoint {point} reached");
    eventually(&format!("the agent stops at {point}"), WAIT, || async {
        agent.log().contains(&marker)
    })
    .await;
    agent.kill();
    let live = (
        f.labelled_configmaps(&app).await,
        labelled_secrets(&f, &app).await,
    );
    let inventory = f.inventory(&app).await.expect("an inventory").names();
    eprintln!("killed at {point}: live {live:?}, inventory {inventory:?}");
    for name in live.0.iter().chain(&live.1) {
        assert!(
            inventory.contains(name),
            "{name} is live but not in the inventory: it could never be pruned"
        );
    }

    let restarted = Agent::start(&home, "restarted", &flags).await;
    restarted
        .wait_app(&app, "Synced and Current at two", |s| {
            s["sync"] == "Synced" && s["health"] == "Current" && s["revision"] == two.as_str()
        })
        .await;
    assert_eq!(f.cm_value("cfg", "greeting").await.as_deref(), Some("two"));
    assert_converged(&f, &app, &["added", "cfg"]).await;
    assert_eq!(labelled_secrets(&f, &app).await, Vec::<String>::new());
    assert_eq!(
        f.configmaps().await,
        ["added", "bystander", "cfg"],
        "nothing else pruned, nothing twice"
    );
    f.finish().await;
}

/// Killed after the writes, before the prune and the inventory's narrowing.
#[tokio::test]
async fn an_agent_killed_between_apply_and_the_inventory_write_converges_on_restart() {
    let _serial = SERIAL.lock().await;
    killed_at_a_failpoint_then_restarted_converges("flt-kapply", "after-apply").await;
}

/// Killed in the middle of a prune: the Secret deleted, the ConfigMap not yet.
#[tokio::test]
async fn an_agent_killed_mid_prune_converges_on_restart() {
    let _serial = SERIAL.lock().await;
    killed_at_a_failpoint_then_restarted_converges("flt-kprune", "mid-prune").await;
}

/// Killed after the prune, before the inventory's narrowing.
#[tokio::test]
async fn an_agent_killed_between_prune_and_the_inventory_narrowing_converges_on_restart() {
    let _serial = SERIAL.lock().await;
    killed_at_a_failpoint_then_restarted_converges("flt-knarrow", "before-narrow").await;
}

/// A control-plane component (`kube-apiserver` or `etcd`) stopped while the agent syncs a
/// new commit, and started again: the agent's retries apply it, nothing lost.
async fn a_restarted_component_is_survived(prefix: &str, component: &'static str) {
    let f = Fixture::new(prefix).await;
    let app = f.app("");
    f.write_configmap("cfg", &[("greeting", "one")]);
    f.write_configmap("keep", &[("k", "v")]);
    f.repo.commit("one");
    let home = one_app_home(&f, &app, "1s");
    let flags = agent_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = Agent::start(&home, "agent", &flags).await;
    agent
        .wait_app(&app, "Synced and Current at one", |s| {
            s["sync"] == "Synced" && s["health"] == "Current"
        })
        .await;

    ctl("stop", component);
    let stopped = Stopped(component);
    let down = Instant::now();
    f.write_configmap("cfg", &[("greeting", "two")]);
    f.write_configmap("added", &[("k", "v")]);
    f.repo.remove("app/keep.yaml");
    let two = f.repo.commit("two");
    // Down for less than the lease's renewal deadline: the agent keeps leading, and its
    // sync of the commit fails meanwhile.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_ne!(agent.app(&app).await["revision"], two.as_str());
    eprintln!("{component} down for {:?}", down.elapsed());
    drop(stopped);
    let up = Instant::now();
    api_server_ready(&f).await;
    let status = agent
        .wait_app(&app, "Synced and Current at two", |s| {
            s["sync"] == "Synced" && s["health"] == "Current" && s["revision"] == two.as_str()
        })
        .await;
    eprintln!(
        "latency: applied {:?} after {component} was started again",
        up.elapsed()
    );
    assert_eq!(ready(&status).0, "ReconciliationSucceeded", "{status:#}");
    assert_eq!(f.cm_value("cfg", "greeting").await.as_deref(), Some("two"));
    assert_converged(&f, &app, &["added", "cfg"]).await;
    f.finish().await;
}

/// The API server stopped and started again during agent operation.
#[tokio::test]
async fn a_restarted_api_server_is_survived() {
    let _serial = SERIAL.lock().await;
    a_restarted_component_is_survived("flt-apirs", "kube-apiserver").await;
}

/// etcd stopped and started again during agent operation.
#[tokio::test]
async fn a_restarted_etcd_is_survived() {
    let _serial = SERIAL.lock().await;
    a_restarted_component_is_survived("flt-etcdrs", "etcd").await;
}

/// One app's planner panics on every sync (failpoint `plan:<app>=panic`): that app
/// reports the panic and is retried, while the other app of the same agent keeps
/// applying commits.
#[tokio::test]
async fn a_panicking_planner_for_one_app_leaves_the_others_syncing() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("flt-panic").await;
    let (good, bad) = (f.app("-good"), f.app("-bad"));
    f.write_configmap("cfg", &[("greeting", "one")]);
    f.repo.commit("one");
    let home = AgentHome::new(&apps_file(&[
        app_entry(&bad, f.repo.path(), "app", f.ns(), "1s", ""),
        app_entry(&good, f.repo.path(), "app", f.ns(), "1s", ""),
    ]));
    let flags = agent_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let failpoints = format!("plan:{bad}=panic");
    let agent = Agent::start_with_env(&home, "agent", &flags, &[("FAILPOINTS", &failpoints)]).await;
    let failed = agent
        .wait_app(&bad, "the panic reported", |s| {
            ready(s).0 == "ReconcilePanicked"
        })
        .await;
    eprintln!("{bad}: {}", ready(&failed).1);
    agent
        .wait_app(&good, "Synced at one", |s| s["sync"] == "Synced")
        .await;
    f.write_configmap("cfg", &[("greeting", "two")]);
    let two = f.repo.commit("two");
    agent
        .wait_app(&good, "Synced at two", |s| {
            s["sync"] == "Synced" && s["revision"] == two.as_str()
        })
        .await;
    assert_eq!(f.cm_value("cfg", "greeting").await.as_deref(), Some("two"));
    assert_eq!(f.labelled_configmaps(&good).await, ["cfg"]);
    assert!(
        f.inventory(&bad).await.is_none(),
        "the panicking app wrote nothing"
    );
    eventually("the panicking app is retried", WAIT, || async {
        agent.log().matches("the reconcile panicked").count() >= 2
    })
    .await;
    f.finish().await;
}
