//! Private repositories in pull mode, against the test bed: the real `ferry agent` fetches
//! over HTTP behind basic authentication (`git http-backend` on loopback) with a Secret,
//! and over SSH (a real `sshd` on loopback) with a key Secret; an Application of another
//! tenant without the Secret does not get the commit the agent has cached; a wrong host
//! key is refused; and no credential shows in the API, `/metrics`, the log, Events,
//! Application statuses or the history.

mod agent_common;

use std::collections::BTreeMap;

use agent_common::{Agent, AgentHome, WAIT, app_path, condition, eventually};
use ferry_agent::crd::Application;
use ferry_testkit::gitserve::{GitHttpServer, HttpAuth, SshServer};
use ferry_testkit::{TestNamespace, TestRepo};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use serde_json::{Value, json};

const PASSWORD: &str = "pw-3b9e71c4d2";

/// Installs the `Application` CRD (idempotent) and waits until it is served.
async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "applications.ferry.dev",
        &PatchParams::apply("ferry-test").force(),
        &Patch::Apply(Application::crd()),
    )
    .await
    .expect("applying the Application CRD");
    ferry_testkit::wait_for("the Application CRD to be served", WAIT, || async {
        let apps: Api<Application> = Api::namespaced(client.clone(), "default");
        Ok::<_, kube::Error>(apps.list(&ListParams::default().limit(1)).await.ok())
    })
    .await;
}

async fn secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let data: BTreeMap<String, ByteString> = data
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {ns}/{name}: {e}"));
}

async fn application(client: &Client, ns: &str, name: &str, source: Value) {
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "source": source,
            "destination": {"namespace": ns},
            "interval": "1h",
        },
    }))
    .expect("an Application");
    Api::<Application>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &app)
        .await
        .unwrap_or_else(|e| panic!("creating Application {ns}/{name}: {e}"));
}

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: one\n")
}

async fn cm_exists(client: &Client, ns: &str, name: &str) -> bool {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Waits until the app's Ready condition is False with a message containing `part`.
async fn wait_failed(agent: &Agent, app: &str, part: &str) -> String {
    agent.wait_listed(app).await;
    let status = agent
        .wait_app(app, &format!("a failure naming {part:?}"), |s| {
            let ready = condition(s, "Ready");
            ready["status"] == "False" && ready["message"].as_str().unwrap_or("").contains(part)
        })
        .await;
    condition(&status, "Ready")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn private_repositories_over_http_and_ssh_stay_with_their_credentials_and_never_show() {
    let client = ferry_testkit::client().await;
    install_crd(&client).await;
    let team_a = TestNamespace::new(&client, "cred-a").await;
    let team_b = TestNamespace::new(&client, "cred-b").await;
    let (ns_a, ns_b) = (team_a.name().to_string(), team_b.name().to_string());

    // team-a's private repository over HTTP with basic auth, its Secret in team-a.
    let http_repo = TestRepo::new();
    http_repo.write("app/cm.yaml", &configmap("from-http"));
    http_repo.write("url/cm.yaml", &configmap("from-url"));
    let http_sha = http_repo.commit("private over HTTP");
    let http = GitHttpServer::start(
        http_repo.dir(),
        HttpAuth::Basic("bot".into(), PASSWORD.into()),
    );
    secret(
        &client,
        &ns_a,
        "git-http",
        &[("username", "bot"), ("password", PASSWORD)],
    )
    .await;
    // team-b's private repository over SSH, its key Secret in team-b.
    let ssh_repo = TestRepo::new();
    ssh_repo.write("app/cm.yaml", &configmap("from-ssh"));
    ssh_repo.commit("private over SSH");
    let sshd = SshServer::start();
    let key = sshd.client_key();
    secret(
        &client,
        &ns_b,
        "git-ssh",
        &[("identity", &key), ("known_hosts", &sshd.known_hosts())],
    )
    .await;
    secret(
        &client,
        &ns_b,
        "git-ssh-wrong-host",
        &[
            ("identity", &key),
            ("known_hosts", &sshd.wrong_known_hosts()),
        ],
    )
    .await;

    // The operator's ferry.yaml: team-a's app with its Secret, and one whose URL carries
    // the password (allowed in a local file, shown nowhere).
    let web = format!("{ns_a}-web");
    let url_app = format!("{ns_a}-url");
    let with_password = http
        .url()
        .replace("http://", &format!("http://bot:{PASSWORD}@"));
    let file = format!(
        "apps:
  - name: {web}
    source: {{repo: {repo:?}, path: app, secretRef: {{name: git-http, namespace: {ns_a}}}}}
    destination: {{namespace: {ns_a}}}
    interval: 1h
  - name: {url_app}
    source: {{repo: {with_password:?}, path: url}}
    destination: {{namespace: {ns_a}}}
    interval: 1h
",
        repo = http.url(),
    );
    // team-b's Applications: its own SSH repository; team-a's repository at the commit the
    // agent holds, without credentials; with a Secret name that only team-a has; with a
    // wrong host key; and a local path.
    let ssh_app = format!("{ns_b}-ssh");
    let thief = format!("{ns_b}-thief");
    let borrow = format!("{ns_b}-borrow");
    let wrong_host = format!("{ns_b}-wrong-host");
    let local = format!("{ns_b}-local");
    let ssh_url = sshd.url(ssh_repo.dir());
    let home = AgentHome::new(&file);
    let agent = Agent::start(
        &home,
        "agent",
        &["--applications", &ns_b, "--git-timeout", "20s"],
    )
    .await;
    eventually("team-a's app to apply its private commit", WAIT, || {
        cm_exists(&client, &ns_a, "from-http")
    })
    .await;

    application(
        &client,
        &ns_b,
        &ssh_app,
        json!({"repo": ssh_url, "path": "app", "secretRef": {"name": "git-ssh"}}),
    )
    .await;
    application(
        &client,
        &ns_b,
        &thief,
        json!({"repo": http.url(), "ref": http_sha, "path": "app"}),
    )
    .await;
    application(
        &client,
        &ns_b,
        &borrow,
        json!({"repo": http.url(), "path": "app", "secretRef": {"name": "git-http"}}),
    )
    .await;
    application(
        &client,
        &ns_b,
        &wrong_host,
        json!({"repo": ssh_url, "path": "app", "secretRef": {"name": "git-ssh-wrong-host"}}),
    )
    .await;
    application(
        &client,
        &ns_b,
        &local,
        json!({"repo": http_repo.path(), "path": "app"}),
    )
    .await;

    eventually("team-b's SSH app to apply", WAIT, || {
        cm_exists(&client, &ns_b, "from-ssh")
    })
    .await;
    let (ssh_app, thief, borrow, wrong_host) = (
        format!("{ns_b}/{ssh_app}"),
        format!("{ns_b}/{thief}"),
        format!("{ns_b}/{borrow}"),
        format!("{ns_b}/{wrong_host}"),
    );
    let stolen = wait_failed(&agent, &thief, "cannot fetch").await;
    assert!(stolen.contains(&http.url()), "{stolen}");
    wait_failed(
        &agent,
        &borrow,
        &format!("Secret {ns_b}/git-http: not found"),
    )
    .await;
    wait_failed(&agent, &wrong_host, "SSH host key rejected").await;
    eventually("the local-path Application to be refused", WAIT, || async {
        let log = agent.log();
        log.contains("invalid Application")
            && log.contains("local paths and file:// URLs are not allowed")
    })
    .await;
    let (status, _) = agent
        .get_text(&format!("/api/v1/apps/{ns_b}/{local}"))
        .await;
    assert_eq!(status, 404, "a refused Application is not an app");
    assert!(
        !cm_exists(&client, &ns_b, "from-http").await,
        "team-b got team-a's private commit"
    );
    for app in [&web, &url_app] {
        agent
            .wait_history(app, "its first sync", |h| !h.is_empty())
            .await;
    }

    // No credential in any output.
    let mut outputs: Vec<(String, String)> = Vec::new();
    for path in ["/api/v1/apps", "/metrics"] {
        outputs.push((path.into(), agent.get_text(path).await.1));
    }
    for app in [&web, &url_app, &ssh_app, &thief, &borrow, &wrong_host] {
        for path in [
            format!("/api/v1/apps/{}", app_path(app)),
            format!("/api/v1/apps/{}/history?limit=100", app_path(app)),
        ] {
            let text = agent.get_text(&path).await.1;
            outputs.push((path, text));
        }
    }
    for ns in [&ns_a, &ns_b] {
        let events = Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("listing Events");
        outputs.push((
            format!("Events in {ns}"),
            serde_json::to_string(&events).unwrap(),
        ));
        let apps = Api::<Application>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("listing Applications");
        outputs.push((
            format!("Application statuses in {ns}"),
            serde_json::to_string(&apps.items.iter().map(|a| &a.status).collect::<Vec<_>>())
                .unwrap(),
        ));
    }
    outputs.push(("the agent's log".into(), agent.log()));
    let key_line = key.lines().nth(1).expect("a key body").to_string();
    for (what, text) in &outputs {
        assert!(!text.is_empty(), "{what} is empty");
        for credential in [PASSWORD, key_line.as_str()] {
            assert!(
                !text.contains(credential),
                "{what} shows a credential:\n{text}"
            );
        }
    }
    let metrics = &outputs[1].1;
    assert!(
        metrics.contains(&format!(
            "ferry_git_fetch_duration_seconds_count{{repo=\"{}\"}}",
            http.url()
        )),
        "the fetch metric names the repository, redacted:\n{metrics}"
    );
    let listed = &outputs[0].1;
    assert!(listed.contains(&http.url()), "{listed}");

    drop(agent);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ferry_model::SYSTEM_NAMESPACE);
    for app in [&web, &url_app, &ssh_app, &thief, &borrow, &wrong_host] {
        let _ = configmaps
            .delete(
                &format!("ferry-inventory-{}", app_path(app).replace('/', ".")),
                &DeleteParams::default(),
            )
            .await;
    }
    team_a.cleanup().await;
    team_b.cleanup().await;
}
