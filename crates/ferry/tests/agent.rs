//! Integration tests of pull mode: the real `ferry agent` binary as a child process against
//! the test bed (`eval "$(testbed/up)"`).
//!
//! Every test has its own Git repository, namespace, app names, `FERRY_CACHE`, data
//! directory and port; the agent is killed when the test ends and its log is printed when
//! the test fails. Tests assert what the cluster holds, read back through the API, and
//! print the latencies they see (`latency:` lines, shown with `--nocapture`).

mod agent_common;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use agent_common::{
    Agent, AgentHome, WAIT, app_entry, apps_file, condition, eventually, github_signature, stays,
};
use common::{Fixture, deployment};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const SECRET: &str = "s3cret-for-tests";

/// A one-app `ferry.yaml` for the fixture's repository (`path` app) and namespace.
fn one_app(f: &Fixture, app: &str, interval: &str, extra: &str) -> String {
    apps_file(&[app_entry(
        app,
        f.repo.path(),
        "app",
        f.ns(),
        interval,
        extra,
    )])
}

/// Writes ConfigMap `cfg` with `greeting: <greeting>` to `app/cfg.yaml` of the repository.
fn greet(f: &Fixture, greeting: &str) {
    f.write_configmap("cfg", &[("greeting", greeting)]);
}

/// Starts an agent (with `flags`) for `app` alone (see [`one_app`]) and waits until it
/// applied `greeting: one`.
async fn start_agent(
    f: &Fixture,
    app: &str,
    interval: &str,
    extra: &str,
    flags: &[&str],
) -> (AgentHome, Agent) {
    let home = AgentHome::new(&one_app(f, app, interval, extra));
    let agent = Agent::start(&home, "agent", flags).await;
    wait_value(f, "cfg", "greeting", Some("one")).await;
    (home, agent)
}

/// Waits until ConfigMap `name` has `data[key] == want` (`None`: the ConfigMap or key is
/// missing); returns how long that took.
async fn wait_value(f: &Fixture, name: &str, key: &str, want: Option<&str>) -> Duration {
    eventually(
        &format!("ConfigMap {name} {key}={want:?} in {}", f.ns()),
        WAIT,
        || async move { f.cm_value(name, key).await.as_deref() == want },
    )
    .await
}

/// Waits for ConfigMap `name` to exist: objects of one wave are applied concurrently, so
/// another object of the same sync may land after the one a test waited for.
async fn wait_exists(f: &Fixture, name: &str) {
    eventually(
        &format!("ConfigMap {name} in {}", f.ns()),
        WAIT,
        || async move { f.get::<ConfigMap>(name).await.is_some() },
    )
    .await;
}

/// `ferry <args…> --server <agent>`.
async fn cli(f: &Fixture, agent: &Agent, args: &[&str]) -> common::Run {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--server", &agent.url]);
    f.ferry(&all).await
}

/// A push event as GitHub sends it, for the fixture's repository.
fn push_body(f: &Fixture, after: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "after": after,
        "repository": {
            "clone_url": f.repo.path(),
            "html_url": format!("file://{}", f.repo.path()),
        },
    }))
    .unwrap()
}

/// A value of the agent's `/metrics`, by the series' full text (name and labels).
async fn metric(agent: &Agent, series: &str) -> Option<f64> {
    let (status, text) = agent.get_text("/metrics").await;
    assert_eq!(status, 200, "GET /metrics: {text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// History entries of `app` with this revision, trigger and outcome.
fn entries<'h>(history: &'h [Value], revision: &str, trigger: &str) -> Vec<&'h Value> {
    history
        .iter()
        .filter(|e| e["revision"] == revision && e["trigger"] == trigger)
        .collect()
}

async fn uid(f: &Fixture, name: &str) -> String {
    f.get::<ConfigMap>(name)
        .await
        .unwrap_or_else(|| panic!("ConfigMap {name} exists"))
        .uid()
        .expect("a uid")
}

/// A commit is applied by the Git poll within the app's interval (1 s), shows in the
/// status, `ferry get apps`, `ferry history` and `/metrics`.
#[tokio::test]
async fn poll_applies_a_new_commit() {
    let f = Fixture::new("ag-poll").await;
    let app = f.app("");
    greet(&f, "one");
    let first = f.repo.commit("one");
    let home = AgentHome::new(&one_app(&f, &app, "1s", ""));
    let agent = Agent::start(&home, "agent", &[]).await;

    let startup = wait_value(&f, "cfg", "greeting", Some("one")).await;
    eprintln!("latency: agent ready → first revision applied: {startup:?}");
    agent
        .wait_app(&app, "Synced at the first commit", |s| {
            s["sync"] == "Synced" && s["revision"] == first.as_str()
        })
        .await;

    greet(&f, "two");
    let second = f.repo.commit("two");
    let latency = wait_value(&f, "cfg", "greeting", Some("two")).await;
    eprintln!("latency: poll (interval 1s) commit → applied: {latency:?}");
    assert!(
        latency < Duration::from_secs(10),
        "a 1 s poll took {latency:?} to apply a commit"
    );
    let status = agent
        .wait_app(&app, "Synced at the second commit", |s| {
            s["sync"] == "Synced" && s["revision"] == second.as_str()
        })
        .await;
    assert_eq!(status["health"], "Current");
    assert_eq!(status["message"], "two");
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(
        f.inventory(&app).await.expect("inventory").revision,
        second,
        "the inventory records the applied revision"
    );

    cli(&f, &agent, &["get", "apps"])
        .await
        .expect_code(0)
        .expect_line(&app, "two")
        .expect_stdout(&format!("Synced     Current      {}", &second[..7]));
    let history = agent
        .wait_history(&app, "the poll entry", |h| {
            !entries(h, &second, "poll").is_empty()
        })
        .await;
    assert_eq!(
        entries(&history, &first, "startup").len(),
        1,
        "{history:#?}"
    );
    let polled = entries(&history, &second, "poll");
    assert_eq!(polled.len(), 1, "{history:#?}");
    assert_eq!(polled[0]["outcome"], "succeeded");
    cli(&f, &agent, &["history", &app])
        .await
        .expect_code(0)
        .expect_stdout(&second[..7])
        .expect_stdout("poll");
    let synced = metric(
        &agent,
        &format!("ferry_sync_total{{app=\"{app}\",namespace=\"ferry-system\",result=\"success\"}}"),
    )
    .await;
    assert!(
        synced.is_some_and(|n| n >= 2.0),
        "ferry_sync_total: {synced:?}"
    );
    f.finish().await;
}

/// With a 1 h poll interval only a webhook can bring a commit in: a signed GitHub push
/// is applied at once.
#[tokio::test]
async fn webhook_applies_a_new_commit() {
    let f = Fixture::new("ag-hook").await;
    let app = f.app("");
    greet(&f, "one");
    f.repo.commit("one");
    let (_home, agent) = start_agent(&f, &app, "1h", "", &["--webhook-secret", SECRET]).await;

    greet(&f, "two");
    let second = f.repo.commit("two");
    stays(
        "no poll picks the commit up",
        Duration::from_secs(2),
        || async { f.cm_value("cfg", "greeting").await.as_deref() == Some("one") },
    )
    .await;

    let body = push_body(&f, &second);
    let sig = github_signature(SECRET, &body);
    let sent = Instant::now();
    let (status, resp) = agent
        .post(
            "/hooks/github",
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
            &body,
        )
        .await;
    assert_eq!(status, 202, "{resp}");
    assert_eq!(resp["repositories"], 1, "{resp}");
    wait_value(&f, "cfg", "greeting", Some("two")).await;
    let latency = sent.elapsed();
    eprintln!("latency: webhook → applied (commit → applied): {latency:?}");
    assert!(latency < Duration::from_secs(10), "{latency:?}");
    let history = agent
        .wait_history(&app, "the webhook entry", |h| {
            !entries(h, &second, "webhook").is_empty()
        })
        .await;
    assert_eq!(
        entries(&history, &second, "webhook").len(),
        1,
        "{history:#?}"
    );
    assert_eq!(
        metric(
            &agent,
            "ferry_webhook_requests_total{provider=\"github\",result=\"accepted\"}"
        )
        .await,
        Some(1.0)
    );
    f.finish().await;
}

/// Good signature 202; wrong or missing signature 401 and nothing happens; malformed JSON
/// with a good signature 400; a push of another repository is accepted but queues nothing.
#[tokio::test]
async fn webhook_signatures_are_checked() {
    let f = Fixture::new("ag-sig").await;
    let app = f.app("");
    greet(&f, "one");
    f.repo.commit("one");
    let (_home, agent) = start_agent(&f, &app, "1h", "", &["--webhook-secret", SECRET]).await;
    greet(&f, "two");
    let second = f.repo.commit("two");
    let body = push_body(&f, &second);

    let wrong = github_signature("not-the-secret", &body);
    let (status, resp) = agent
        .post(
            "/hooks/github",
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &wrong)],
            &body,
        )
        .await;
    assert_eq!(status, 401, "wrong signature: {resp}");
    let (status, resp) = agent
        .post("/hooks/github", &[("X-GitHub-Event", "push")], &body)
        .await;
    assert_eq!(status, 401, "missing signature: {resp}");
    let malformed = b"{\"ref\": \"refs/heads/main\", \"repository\": ";
    let sig = github_signature(SECRET, malformed);
    let (status, resp) = agent
        .post(
            "/hooks/github",
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
            malformed,
        )
        .await;
    assert_eq!(status, 400, "malformed JSON: {resp}");
    let other = serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "after": second,
        "repository": { "clone_url": "https://git.example.com/someone/else.git" },
    }))
    .unwrap();
    let sig = github_signature(SECRET, &other);
    let (status, resp) = agent
        .post(
            "/hooks/github",
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
            &other,
        )
        .await;
    assert_eq!(status, 202, "another repository: {resp}");
    assert_eq!(resp["repositories"], 0, "{resp}");

    stays(
        "refused webhooks trigger nothing",
        Duration::from_secs(4),
        || async { f.cm_value("cfg", "greeting").await.as_deref() == Some("one") },
    )
    .await;
    assert!(
        entries(&agent.history(&app).await, &second, "webhook").is_empty(),
        "a refused webhook synced"
    );
    let count = |result: &str| {
        format!("ferry_webhook_requests_total{{provider=\"github\",result=\"{result}\"}}")
    };
    assert_eq!(metric(&agent, &count("unauthorized")).await, Some(2.0));
    assert_eq!(metric(&agent, &count("bad_request")).await, Some(1.0));

    let sig = github_signature(SECRET, &body);
    let (status, resp) = agent
        .post(
            "/hooks/github",
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
            &body,
        )
        .await;
    assert_eq!(status, 202, "good signature: {resp}");
    let latency = wait_value(&f, "cfg", "greeting", Some("two")).await;
    eprintln!("latency: webhook → applied: {latency:?}");
    f.finish().await;
}

/// A scaled Deployment, an edited ConfigMap and a deleted ConfigMap are restored by the
/// drift watch (the poll interval is 1 h, so only the watch can notice).
#[tokio::test]
async fn live_changes_are_healed() {
    let f = Fixture::new("ag-heal").await;
    let app = f.app("");
    greet(&f, "one");
    f.repo
        .write("app/deploy.yaml", &deployment("web", "web", "", ""));
    f.repo.commit("one");
    let (_home, agent) = start_agent(&f, &app, "1h", "", &[]).await;
    agent
        .wait_app(&app, "Synced with 2 objects", |s| {
            s["sync"] == "Synced" && s["inventory"] == 2
        })
        .await;

    // kubectl scale deployment web --replicas=3
    let deployments = f.api::<Deployment>();
    let scaled = deployments
        .patch_scale(
            "web",
            &PatchParams {
                field_manager: Some("kubectl".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({ "spec": { "replicas": 3 } })),
        )
        .await
        .expect("scaling the Deployment");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(3));
    let scale = eventually("the Deployment scaled back to 1", WAIT, || async {
        let d = deployments
            .get("web")
            .await
            .expect("reading the Deployment");
        d.spec.and_then(|s| s.replicas) == Some(1)
    })
    .await;
    eprintln!("latency: drift → healed (kubectl scale): {scale:?}");

    let before = uid(&f, "cfg").await;
    f.edit_value("cfg", "greeting", "tampered").await;
    let edit = wait_value(&f, "cfg", "greeting", Some("one")).await;
    eprintln!("latency: drift → healed (ConfigMap edit, 2nd heal within 10 s): {edit:?}");
    assert_eq!(uid(&f, "cfg").await, before, "the edit was healed in place");

    f.api::<ConfigMap>()
        .delete("cfg", &DeleteParams::default())
        .await
        .expect("deleting the ConfigMap");
    let recreate = eventually("the deleted ConfigMap re-created", WAIT, || async {
        f.get::<ConfigMap>("cfg")
            .await
            .is_some_and(|c| c.uid().as_deref() != Some(before.as_str()))
    })
    .await;
    eprintln!("latency: drift → healed (ConfigMap deleted, 3rd heal within 10 s): {recreate:?}");
    assert_eq!(f.cm_value("cfg", "greeting").await.as_deref(), Some("one"));

    agent
        .wait_history(&app, "3 drift syncs", |h| {
            h.iter().filter(|e| e["trigger"] == "drift").count() >= 3
        })
        .await;
    let detected = metric(
        &agent,
        &format!("ferry_drift_detected_total{{app=\"{app}\",namespace=\"ferry-system\"}}"),
    )
    .await;
    assert!(detected.is_some_and(|n| n >= 3.0), "{detected:?}");
    agent
        .wait_app(&app, "Synced after healing", |s| s["sync"] == "Synced")
        .await;
    f.finish().await;
}

/// A cold start syncs each app once: the watch events of the agent's own writes and of
/// the Deployment controller's changes (its revision annotation, the status) only look
/// at health. A scale of the Deployment, a field the app sets, is still healed.
#[tokio::test]
async fn a_cold_start_syncs_each_app_once() {
    let f = Fixture::new("ag-once").await;
    let apps = [f.app("a"), f.app("b")];
    let mut entries = Vec::new();
    for (dir, app) in ["a", "b"].into_iter().zip(&apps) {
        let web = format!("web-{dir}");
        let idle = deployment(&web, &web, "", "").replace("replicas: 1", "replicas: 0");
        f.repo.write(&format!("{dir}/deploy.yaml"), &idle);
        f.repo.write(
            &format!("{dir}/cfg.yaml"),
            &common::configmap(&format!("cfg-{dir}"), &[("k", "v")]),
        );
        entries.push(app_entry(app, f.repo.path(), dir, f.ns(), "1h", ""));
    }
    f.repo.commit("one");
    let home = AgentHome::new(&apps_file(&entries));
    let agent = Agent::start(&home, "agent", &[]).await;
    let syncs = |app: &str| {
        let series = format!(
            "ferry_sync_total{{app=\"{app}\",namespace=\"ferry-system\",result=\"success\"}}"
        );
        let agent = &agent;
        async move { metric(agent, &series).await }
    };
    for app in &apps {
        agent
            .wait_app(app, "Synced and Current", |s| {
                s["sync"] == "Synced" && s["health"] == "Current"
            })
            .await;
    }
    let once = || async {
        let counts = (syncs(&apps[0]).await, syncs(&apps[1]).await);
        eprintln!("syncs: {counts:?}");
        counts == (Some(1.0), Some(1.0))
    };
    eventually("a sync of each app counted", WAIT, once).await;
    stays("one sync per app", Duration::from_secs(5), once).await;

    f.api::<Deployment>()
        .patch_scale(
            "web-a",
            &PatchParams {
                field_manager: Some("kubectl".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({ "spec": { "replicas": 2 } })),
        )
        .await
        .expect("scaling the Deployment");
    eventually("web-a scaled back to 0", WAIT, || async {
        let d = f.get::<Deployment>("web-a").await.expect("web-a exists");
        d.spec.and_then(|s| s.replicas) == Some(0)
    })
    .await;
    eventually("the heal counted as a sync", WAIT, || async {
        syncs(&apps[0]).await == Some(2.0)
    })
    .await;
    stays(
        "one heal, the other app left alone",
        Duration::from_secs(3),
        || async { syncs(&apps[0]).await == Some(2.0) && syncs(&apps[1]).await == Some(1.0) },
    )
    .await;
    f.finish().await;
}

/// With `selfHeal: false` a live edit stays, the app reports OutOfSync with the drifted
/// object, and `ferry sync` restores it.
#[tokio::test]
async fn self_heal_off_reports_drift_until_sync() {
    let f = Fixture::new("ag-noheal").await;
    let app = f.app("");
    greet(&f, "one");
    f.write_configmap("other", &[]);
    f.repo.commit("one");
    let (_home, agent) = start_agent(&f, &app, "1h", "    selfHeal: false\n", &[]).await;
    agent
        .wait_app(&app, "Synced", |s| s["sync"] == "Synced")
        .await;

    f.edit_value("cfg", "greeting", "tampered").await;
    let status = agent
        .wait_app(&app, "OutOfSync with cfg drifted", |s| {
            s["sync"] == "OutOfSync"
                && s["drifted"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|o| o["name"] == "cfg"))
        })
        .await;
    let drifted = status["drifted"].as_array().unwrap();
    assert_eq!(drifted.len(), 1, "only cfg drifted: {drifted:?}");
    assert_eq!(drifted[0]["kind"], "ConfigMap");
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "Ready")["reason"], "OutOfSync");
    stays("the edit stays", Duration::from_secs(3), || async {
        f.cm_value("cfg", "greeting").await.as_deref() == Some("tampered")
    })
    .await;

    f.api::<ConfigMap>()
        .delete("other", &DeleteParams::default())
        .await
        .expect("deleting a ConfigMap");
    agent
        .wait_app(&app, "both objects drifted", |s| {
            s["drifted"].as_array().is_some_and(|d| d.len() == 2)
        })
        .await;
    assert!(
        f.get::<ConfigMap>("other").await.is_none(),
        "not re-created"
    );
    cli(&f, &agent, &["get", "apps"])
        .await
        .expect_code(0)
        .expect_stdout("OutOfSync");

    cli(&f, &agent, &["sync", &app])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: sync requested"));
    let healed = wait_value(&f, "cfg", "greeting", Some("one")).await;
    eprintln!("latency: `ferry sync` → drift healed: {healed:?}");
    wait_exists(&f, "other").await;
    let status = agent
        .wait_app(&app, "Synced after ferry sync", |s| s["sync"] == "Synced")
        .await;
    assert_eq!(status["drifted"], json!([]));
    agent
        .wait_history(&app, "a manual sync", |h| {
            h.iter().any(|e| e["trigger"] == "manual")
        })
        .await;
    f.finish().await;
}

/// With `selfHeal: false`, `ferry sync` is one sync: while the app waits for a Deployment
/// that cannot become healthy (no node matches its selector), a later live edit stays.
#[tokio::test]
async fn self_heal_off_manual_sync_does_not_keep_healing() {
    let f = Fixture::new("ag-once").await;
    let app = f.app("");
    greet(&f, "one");
    let unschedulable = "      nodeSelector:\n        ferry.dev/no-such-node: \"true\"\n";
    f.repo.write(
        "app/deploy.yaml",
        &deployment("web", "web", "", unschedulable),
    );
    f.repo.commit("one");
    let (_home, agent) = start_agent(&f, &app, "1h", "    selfHeal: false\n", &[]).await;
    agent
        .wait_app(&app, "Synced and InProgress", |s| {
            s["sync"] == "Synced" && s["health"] == "InProgress"
        })
        .await;

    cli(&f, &agent, &["sync", &app]).await.expect_code(0);
    // The manual sync runs, finds the Deployment InProgress and looks again every 2 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    f.edit_value("cfg", "greeting", "tampered").await;
    agent
        .wait_app(&app, "OutOfSync", |s| s["sync"] == "OutOfSync")
        .await;
    stays(
        "the edit stays (self-heal is off)",
        Duration::from_secs(6),
        || async { f.cm_value("cfg", "greeting").await.as_deref() == Some("tampered") },
    )
    .await;
    f.finish().await;
}

/// A failing app (missing path; an unknown kind) does not stop a healthy one, and reports
/// why through `ferry get app -o json`.
#[tokio::test]
async fn failing_apps_report_why_and_do_not_block_others() {
    let f = Fixture::new("ag-fail").await;
    let good = f.app("-good");
    let missing = f.app("-missing");
    let unknown = f.app("-unknown");
    greet(&f, "one");
    f.repo.write(
        "bad/widget.yaml",
        "apiVersion: widgets.example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec: {}\n",
    );
    f.repo.commit("one");
    let repo = f.repo.path();
    let home = AgentHome::new(&apps_file(&[
        app_entry(&missing, repo, "does-not-exist", f.ns(), "1s", ""),
        app_entry(&good, repo, "app", f.ns(), "1s", ""),
        app_entry(&unknown, repo, "bad", f.ns(), "1s", ""),
    ]));
    let agent = Agent::start(&home, "agent", &[]).await;
    wait_value(&f, "cfg", "greeting", Some("one")).await;
    agent
        .wait_app(&good, "Synced and Current", |s| {
            s["sync"] == "Synced" && s["health"] == "Current"
        })
        .await;

    for (app, reasons, mention) in [
        (
            &missing,
            &["SourceFailed", "RenderFailed"][..],
            "does-not-exist",
        ),
        (&unknown, &["ApplyFailed", "RenderFailed"][..], "Widget"),
    ] {
        agent
            .wait_app(app, "Ready=False", |s| {
                condition(s, "Ready")["status"] == "False"
            })
            .await;
        let run = cli(&f, &agent, &["get", "app", app, "-o", "json"]).await;
        run.expect_code(0);
        let status: Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
        let ready = condition(&status, "Ready");
        let reason = ready["reason"].as_str().unwrap_or_default();
        let message = ready["message"].as_str().unwrap_or_default();
        assert!(
            reasons.contains(&reason),
            "{app}: reason {reason:?}, expected one of {reasons:?}: {status:#}"
        );
        assert!(
            message.contains(mention),
            "{app}: the message does not name {mention:?}: {message:?}"
        );
        assert_ne!(status["sync"], "Synced", "{app}: {status:#}");
        agent
            .wait_history(app, "a failed entry with its error", |h| {
                h.iter()
                    .any(|e| e["outcome"] == "failed" && e["error"].as_str().is_some())
            })
            .await;
    }
    let run = cli(&f, &agent, &["get", "app", &good, "-o", "json"]).await;
    let status: Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    assert_eq!(status["sync"], "Synced");
    assert_eq!(status["health"], "Current");
    assert_eq!(condition(&status, "Ready")["status"], "True");
    let list = cli(&f, &agent, &["get", "apps"]).await;
    list.expect_code(0);
    for app in [&good, &missing, &unknown] {
        list.expect_stdout(app);
    }
    assert_eq!(f.labelled_configmaps(&good).await, ["cfg"]);
    f.finish().await;
}

/// A commit that leaves the app with no objects is refused: the app is Stalled with the
/// reason, and its objects stay.
#[tokio::test]
async fn empty_render_stalls_the_app_and_prunes_nothing() {
    let f = Fixture::new("ag-empty").await;
    let app = f.app("");
    greet(&f, "one");
    f.repo.commit("one");
    let (_home, agent) = start_agent(&f, &app, "1s", "", &[]).await;

    f.repo
        .write("app/cfg.yaml", "# switched off until the next release\n");
    let empty = f.repo.commit("comment everything out");
    agent
        .wait_app(&app, "Stalled", |s| {
            condition(s, "Stalled")["status"] == "True"
        })
        .await;
    let run = cli(&f, &agent, &["get", "app", &app, "-o", "json"]).await;
    let status: Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    let message = condition(&status, "Stalled")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(&format!("at {}", &empty[..7]))
            && message.contains("all 1 object(s) in its inventory would be pruned"),
        "{message:?}"
    );
    assert_eq!(f.labelled_configmaps(&app).await, ["cfg"]);
    f.finish().await;
}

/// SIGKILL (right after a commit, possibly mid-sync) and a restart on the same data
/// directory: history survives, objects keep their uids, and the agent converges again.
#[tokio::test]
async fn sigkill_and_restart_keep_history_and_objects() {
    let f = Fixture::new("ag-kill").await;
    let app = f.app("");
    greet(&f, "one");
    f.write_configmap("other", &[]);
    let first = f.repo.commit("one");
    let (home, mut agent) = start_agent(&f, &app, "1s", "", &[]).await;
    greet(&f, "two");
    let second = f.repo.commit("two");
    wait_value(&f, "cfg", "greeting", Some("two")).await;
    let before = agent
        .wait_history(&app, "2 entries", |h| h.len() >= 2)
        .await;
    let uids = (uid(&f, "cfg").await, uid(&f, "other").await);

    greet(&f, "three");
    let third = f.repo.commit("three");
    tokio::time::sleep(Duration::from_millis(900)).await;
    agent.kill();

    let restarted = Agent::start(&home, "agent", &[]).await;
    let after = restarted.history(&app).await;
    for entry in &before {
        assert!(
            after.contains(entry),
            "history entry lost in the restart: {entry:#}\nnow: {after:#?}"
        );
    }
    assert_eq!(entries(&before, &first, "startup").len(), 1, "{before:#?}");
    assert_eq!(entries(&before, &second, "poll").len(), 1, "{before:#?}");
    cli(&f, &restarted, &["history", &app])
        .await
        .expect_code(0)
        .expect_stdout(&first[..7])
        .expect_stdout(&second[..7]);

    wait_value(&f, "cfg", "greeting", Some("three")).await;
    restarted
        .wait_app(&app, "Synced at the third commit", |s| {
            s["sync"] == "Synced" && s["revision"] == third.as_str()
        })
        .await;
    assert_eq!(
        (uid(&f, "cfg").await, uid(&f, "other").await),
        uids,
        "objects were re-created"
    );
    assert_eq!(f.configmaps().await, ["cfg", "other"]);
    let inventory = f.inventory(&app).await.expect("inventory");
    assert_eq!(inventory.revision, third);
    assert_eq!(inventory.names(), ["cfg", "other"], "no duplicates");
    let history = restarted
        .wait_history(&app, "the third commit", |h| {
            h.iter().any(|e| e["revision"] == third.as_str())
        })
        .await;
    let ids: BTreeSet<u64> = history.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert_eq!(
        ids.len(),
        history.len(),
        "history ids are unique: {history:#?}"
    );
    assert_eq!(
        history
            .iter()
            .filter(|e| e["revision"] == third.as_str() && e["outcome"] == "succeeded")
            .count(),
        1,
        "the third commit was applied once: {history:#?}"
    );

    // The restarted agent watches again: a live edit is healed.
    f.edit_value("cfg", "greeting", "tampered").await;
    let healed = wait_value(&f, "cfg", "greeting", Some("three")).await;
    eprintln!("latency: drift → healed after a restart: {healed:?}");
    f.finish().await;
}

/// Two agents with leader election: only the lease holder reconciles and takes actions;
/// when it is killed, the standby takes the lease over, keeps the leader's rollback pin
/// (kept in the cluster), and on `ferry resume` applies the newest commit.
#[tokio::test]
async fn leader_election_fails_over_to_the_standby() {
    let f = Fixture::new("ag-lease").await;
    let app = f.app("");
    greet(&f, "one");
    let first = f.repo.commit("one");
    let yaml = one_app(&f, &app, "1s", "");
    let (home_a, home_b) = (AgentHome::new(&yaml), AgentHome::new(&yaml));
    let (id_a, id_b) = (format!("{}-a", f.ns()), format!("{}-b", f.ns()));
    let lease_ns = ["--leader-elect-namespace", f.ns(), "--identity"];
    let a = Agent::start(&home_a, "a", &[&lease_ns[..], &[id_a.as_str()]].concat()).await;
    let b = Agent::start(&home_b, "b", &[&lease_ns[..], &[id_b.as_str()]].concat()).await;
    wait_value(&f, "cfg", "greeting", Some("one")).await;

    let leases: Api<Lease> = f.api();
    let holder = || async {
        leases
            .get_opt("ferry-agent")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let first_holder = holder().await.expect("the Lease ferry-agent has a holder");
    let (mut leader, standby) = if first_holder == id_a {
        (a, b)
    } else {
        assert_eq!(first_holder, id_b, "unexpected holder");
        (b, a)
    };
    eprintln!("leader: {}, standby: {}", leader.name, standby.name);
    eventually("the leader logs that it leads", WAIT, || async {
        leader.log().contains("leading")
    })
    .await;
    assert!(
        !standby.log().contains("leading"),
        "the standby claims to lead:\n{}",
        standby.log()
    );
    assert!(
        standby.log().contains("standing by"),
        "the standby does not say it stands by:\n{}",
        standby.log()
    );
    leader
        .wait_history(&app, "an entry", |h| !h.is_empty())
        .await;

    greet(&f, "two");
    f.repo.commit("two");
    wait_value(&f, "cfg", "greeting", Some("two")).await;
    assert!(
        standby.history(&app).await.is_empty(),
        "the standby reconciled"
    );
    assert_eq!(standby.app(&app).await["sync"], "Unknown");
    assert!(!standby.log().contains("applied"), "{}", standby.log());

    // Only the leader takes actions; a rollback pin it keeps follows the lease.
    cli(&f, &standby, &["suspend", &app])
        .await
        .expect_error(&["standing by", "send the action to the leader"]);
    cli(&f, &leader, &["rollback", &app, &first])
        .await
        .expect_code(0);
    wait_value(&f, "cfg", "greeting", Some("one")).await;

    leader.kill();
    let killed = Instant::now();
    greet(&f, "three");
    let third = f.repo.commit("three");
    // Lease duration 15 s, renewed 5 s before it expires; then up to 1 s of jitter.
    let budget = Duration::from_secs(40);
    eventually("the standby leads", budget, || async {
        standby.log().contains("leading")
    })
    .await;
    let status = standby
        .wait_app(&app, "Synced at the pinned commit", |s| {
            s["sync"] == "Synced" && s["revision"] == first.as_str()
        })
        .await;
    let failover = killed.elapsed();
    eprintln!("latency: leader SIGKILL → standby reconciled with the kept pin: {failover:?}");
    assert_eq!(status["pinned"], first.as_str(), "{status:#}");
    let standby_id = if standby.name == "a" { &id_a } else { &id_b };
    assert_eq!(holder().await.as_ref(), Some(standby_id));
    stays(
        "the new leader keeps the pin",
        Duration::from_secs(3),
        || async { f.cm_value("cfg", "greeting").await.as_deref() == Some("one") },
    )
    .await;

    cli(&f, &standby, &["resume", &app]).await.expect_code(0);
    wait_value(&f, "cfg", "greeting", Some("three")).await;
    standby
        .wait_app(&app, "Synced at the third commit", |s| {
            s["sync"] == "Synced" && s["revision"] == third.as_str() && s["pinned"].is_null()
        })
        .await;
    standby
        .wait_history(&app, "the third commit", |h| {
            h.iter().any(|e| e["revision"] == third.as_str())
        })
        .await;
    f.finish().await;
}

/// While suspended neither a live edit nor a new commit is acted on; `ferry resume`
/// brings both in.
#[tokio::test]
async fn suspend_and_resume() {
    let f = Fixture::new("ag-susp").await;
    let app = f.app("");
    greet(&f, "one");
    f.repo.commit("one");
    let (_home, agent) = start_agent(&f, &app, "1s", "", &[]).await;
    agent
        .wait_app(&app, "Synced", |s| s["sync"] == "Synced")
        .await;

    cli(&f, &agent, &["suspend", &app])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: suspend requested"));
    agent
        .wait_app(&app, "suspended", |s| {
            s["suspended"] == true && condition(s, "Ready")["reason"] == "Suspended"
        })
        .await;
    f.edit_value("cfg", "greeting", "tampered").await;
    greet(&f, "two");
    f.write_configmap("added", &[]);
    let second = f.repo.commit("two");
    stays("nothing is reconciled", Duration::from_secs(4), || async {
        f.cm_value("cfg", "greeting").await.as_deref() == Some("tampered")
            && f.get::<ConfigMap>("added").await.is_none()
    })
    .await;
    cli(&f, &agent, &["get", "apps"])
        .await
        .expect_code(0)
        .expect_stdout("Suspended");
    cli(&f, &agent, &["get", "app", &app])
        .await
        .expect_code(0)
        .expect_stdout("suspended: reconciliation is off")
        .expect_stdout("Ready=False Suspended");

    cli(&f, &agent, &["resume", &app])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: resume requested"));
    let resumed = wait_value(&f, "cfg", "greeting", Some("two")).await;
    eprintln!("latency: `ferry resume` → applied: {resumed:?}");
    wait_exists(&f, "added").await;
    let status = agent
        .wait_app(&app, "Synced at the second commit", |s| {
            s["sync"] == "Synced" && s["revision"] == second.as_str()
        })
        .await;
    assert_eq!(status["suspended"], false);
    f.finish().await;
}

/// `ferry rollback` to a SHA and to a history id: the cluster shows the old content (and
/// an object added later is pruned), the app is pinned and ignores new commits, and
/// `ferry resume` returns to the branch head.
#[tokio::test]
async fn rollback_pins_until_resume() {
    let f = Fixture::new("ag-back").await;
    let app = f.app("");
    greet(&f, "one");
    let first = f.repo.commit("one");
    let (_home, agent) = start_agent(&f, &app, "1s", "", &[]).await;
    greet(&f, "two");
    f.write_configmap("extra", &[]);
    f.repo.commit("two");
    wait_value(&f, "cfg", "greeting", Some("two")).await;
    wait_exists(&f, "extra").await;

    // By SHA.
    cli(&f, &agent, &["rollback", &app, &first])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: rolling back to {}", &first[..7]));
    let rolled = wait_value(&f, "cfg", "greeting", Some("one")).await;
    eprintln!("latency: `ferry rollback` → applied: {rolled:?}");
    eventually("extra pruned by the rollback", WAIT, || async {
        f.get::<ConfigMap>("extra").await.is_none()
    })
    .await;
    let run = cli(&f, &agent, &["get", "app", &app, "-o", "json"]).await;
    let status: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(status["pinned"], first.as_str(), "{status:#}");
    cli(&f, &agent, &["get", "app", &app])
        .await
        .expect_code(0)
        .expect_stdout(&format!("pinned:   {} (rolled back", &first[..7]));
    agent
        .wait_app(&app, "Synced at the first commit", |s| {
            s["sync"] == "Synced" && s["revision"] == first.as_str()
        })
        .await;

    // Pinned: a new commit is not applied.
    greet(&f, "three");
    let third = f.repo.commit("three");
    stays("the pin holds", Duration::from_secs(3), || async {
        f.cm_value("cfg", "greeting").await.as_deref() == Some("one")
    })
    .await;

    cli(&f, &agent, &["resume", &app]).await.expect_code(0);
    wait_value(&f, "cfg", "greeting", Some("three")).await;
    wait_exists(&f, "extra").await;
    let status = agent
        .wait_app(&app, "Synced at the head", |s| {
            s["sync"] == "Synced" && s["revision"] == third.as_str()
        })
        .await;
    assert_eq!(status["pinned"], Value::Null);

    // By history id: the startup sync of the first commit.
    let history = agent.history(&app).await;
    let id = entries(&history, &first, "startup")
        .first()
        .and_then(|e| e["id"].as_u64())
        .unwrap_or_else(|| panic!("no startup entry for the first commit: {history:#?}"))
        .to_string();
    cli(&f, &agent, &["rollback", &app, &id])
        .await
        .expect_code(0)
        .expect_stdout(&format!("rolling back to {}", &first[..7]));
    wait_value(&f, "cfg", "greeting", Some("one")).await;
    let status = agent
        .wait_app(&app, "pinned to the first commit", |s| {
            s["revision"] == first.as_str() && s["pinned"] == first.as_str()
        })
        .await;
    assert_eq!(status["sync"], "Synced");
    agent
        .wait_history(&app, "two rollbacks to the first commit", |h| {
            entries(h, &first, "rollback").len() == 2
        })
        .await;
    cli(&f, &agent, &["rollback", &app, "999999"])
        .await
        .expect_error(&["no history entry 999999"]);
    cli(&f, &agent, &["resume", &app]).await.expect_code(0);
    wait_value(&f, "cfg", "greeting", Some("three")).await;
    f.finish().await;
}

/// A rollback pin and a suspension outlive a restart of the agent (same data directory):
/// the restarted agent neither returns to the branch head nor resumes on its own.
#[tokio::test]
async fn restart_keeps_rollback_pin_and_suspension() {
    let f = Fixture::new("ag-keep").await;
    let app = f.app("");
    greet(&f, "one");
    let first = f.repo.commit("one");
    let (home, mut agent) = start_agent(&f, &app, "1s", "", &[]).await;
    greet(&f, "two");
    let second = f.repo.commit("two");
    wait_value(&f, "cfg", "greeting", Some("two")).await;
    cli(&f, &agent, &["rollback", &app, &first])
        .await
        .expect_code(0);
    wait_value(&f, "cfg", "greeting", Some("one")).await;

    agent.kill();
    let mut agent = Agent::start(&home, "agent", &[]).await;
    let status = agent
        .wait_app(&app, "Synced after the restart", |s| s["sync"] == "Synced")
        .await;
    assert_eq!(status["pinned"], first.as_str(), "{status:#}");
    assert_eq!(status["revision"], first.as_str(), "{status:#}");
    stays(
        "the pin holds after a restart",
        Duration::from_secs(3),
        || async { f.cm_value("cfg", "greeting").await.as_deref() == Some("one") },
    )
    .await;

    cli(&f, &agent, &["suspend", &app]).await.expect_code(0);
    agent
        .wait_app(&app, "suspended", |s| s["suspended"] == true)
        .await;
    let (status, _) = agent.terminate(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    let agent = Agent::start(&home, "agent", &[]).await;
    let status = agent
        .wait_app(&app, "suspended after the restart", |s| {
            condition(s, "Ready")["reason"] == "Suspended"
        })
        .await;
    assert_eq!(status["suspended"], true, "{status:#}");
    f.edit_value("cfg", "greeting", "tampered").await;
    stays(
        "a suspended app is left alone",
        Duration::from_secs(3),
        || async { f.cm_value("cfg", "greeting").await.as_deref() == Some("tampered") },
    )
    .await;

    cli(&f, &agent, &["resume", &app]).await.expect_code(0);
    wait_value(&f, "cfg", "greeting", Some("two")).await;
    let status = agent
        .wait_app(&app, "Synced at the head", |s| {
            s["sync"] == "Synced" && s["revision"] == second.as_str()
        })
        .await;
    assert_eq!(status["pinned"], Value::Null);
    assert_eq!(status["suspended"], false);
    f.finish().await;
}

/// SIGTERM shortly after a commit: the agent exits 0 within 10 s and the inventory lists
/// exactly the app's objects in the cluster, with that revision's content.
#[tokio::test]
async fn sigterm_exits_promptly_with_inventory_matching_the_cluster() {
    let f = Fixture::new("ag-term").await;
    let app = f.app("");
    greet(&f, "one");
    f.write_configmap("old", &[]);
    let first = f.repo.commit("one");
    let (_home, mut agent) = start_agent(&f, &app, "1s", "", &[]).await;
    agent
        .wait_app(&app, "Synced", |s| s["sync"] == "Synced")
        .await;

    greet(&f, "two");
    f.repo.remove("app/old.yaml");
    f.write_configmap("new", &[]);
    let second = f.repo.commit("two");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, took) = agent.terminate(Duration::from_secs(10)).await;
    eprintln!("latency: SIGTERM → exit: {took:?}");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(agent.log().contains("agent stopped"), "{}", agent.log());

    let inventory = f.inventory(&app).await.expect("inventory");
    let cluster = f.labelled_configmaps(&app).await;
    assert_eq!(
        inventory.names(),
        cluster,
        "the inventory ({}) does not match the cluster",
        inventory.revision
    );
    let greeting = f.cm_value("cfg", "greeting").await;
    if inventory.revision == first {
        assert_eq!(cluster, ["cfg", "old"]);
        assert_eq!(greeting.as_deref(), Some("one"));
    } else {
        assert_eq!(inventory.revision, second);
        assert_eq!(cluster, ["cfg", "new"]);
        assert_eq!(greeting.as_deref(), Some("two"));
    }
    eprintln!(
        "SIGTERM left the app at the {} commit",
        if inventory.revision == first {
            "first"
        } else {
            "second"
        }
    );
    f.finish().await;
}

/// `web` depends on `db`: while `db` cannot sync, `web` is not synced and shows
/// `waiting for <db>`; once a commit fixes `db` and it is synced and healthy, `web` follows.
#[tokio::test]
async fn a_dependent_waits_for_its_dependency() {
    let f = Fixture::new("ag-deps").await;
    let web = f.app("-web");
    let db = f.app("-db");
    f.repo.write(
        "db/widget.yaml",
        "apiVersion: widgets.example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec: {}\n",
    );
    f.write_configmap("web", &[("app", "web")]);
    f.repo.commit("db is broken");
    let repo = f.repo.path();
    let home = AgentHome::new(&apps_file(&[
        app_entry(
            &web,
            repo,
            "app",
            f.ns(),
            "1s",
            &format!("    dependsOn: [{db}]\n"),
        ),
        app_entry(&db, repo, "db", f.ns(), "1s", ""),
    ]));
    let agent = Agent::start(&home, "agent", &[]).await;
    let waiting = format!("waiting for {db}");
    let status = agent
        .wait_app(&web, "waiting for its dependency", |s| {
            condition(s, "Ready")["reason"] == "WaitingForDependency"
        })
        .await;
    let message = condition(&status, "Ready")["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.starts_with(&waiting), "{status:#}");
    let run = cli(&f, &agent, &["get", "app", &web]).await;
    run.expect_code(0)
        .expect_stdout("WaitingForDependency")
        .expect_stdout(&waiting);
    stays(
        "web not applied while db fails",
        Duration::from_secs(3),
        || async { f.get::<ConfigMap>("web").await.is_none() },
    )
    .await;

    f.repo.remove("db/widget.yaml");
    f.repo
        .write("db/cm.yaml", &common::configmap("db", &[("app", "db")]));
    f.repo.commit("db fixed");
    wait_value(&f, "web", "app", Some("web")).await;
    let db_cm = f.get::<ConfigMap>("db").await.expect("db applied");
    let web_cm = f.get::<ConfigMap>("web").await.expect("web applied");
    let rv = |cm: &ConfigMap| cm.resource_version().unwrap().parse::<u64>().unwrap();
    assert!(rv(&db_cm) < rv(&web_cm), "db was created first");
    agent
        .wait_app(&web, "Synced and Ready", |s| {
            s["sync"] == "Synced" && condition(s, "Ready")["status"] == "True"
        })
        .await;
    f.finish().await;
}
