//! Several teams on one cluster, against the test bed: an app's identity is the namespace
//! and name of its `Application` (two apps named `web` are two apps), an invalid
//! Application says why, inventories and labels of earlier versions are taken over, and
//! the prune guard keeps Namespaces.

mod agent_common;
mod common;

use agent_common::{Agent, AgentHome, WAIT, condition, eventually};
use common::Fixture;
use ferry_agent::crd::Application;
use ferry_model::{APP_LABEL, APP_NAMESPACE_LABEL, SYSTEM_NAMESPACE};
use ferry_testkit::gitserve::{GitHttpServer, HttpAuth};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// Installs the `Application` CRD (as `ferry install` does) and waits until it is served.
async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "applications.ferry.dev";
    crds.patch(
        name,
        &PatchParams::apply("ferry-tests").force(),
        &Patch::Apply(Application::crd()),
    )
    .await
    .expect("installing the Application CRD");
    eventually("the Application CRD is established", WAIT, || async {
        crds.get(name)
            .await
            .ok()
            .is_some_and(|crd| ferry_testkit::established(&crd))
    })
    .await;
}

/// Creates namespace `name`, deleted when the test ends.
async fn namespace(f: &Fixture, name: &str) {
    let api: Api<Namespace> = Api::all(f.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    f.delete_later(
        common::resource("v1", "Namespace", "namespaces"),
        None,
        name,
    );
}

/// An `Application` `namespace/name` deploying `path` of the repository at `repo` (the
/// fixture's, served over HTTP: an Application may not name a local path) into
/// `destination`, polled every second, with `spec` merged in.
fn application(repo: &str, name: &str, path: &str, destination: &str, spec: Value) -> Value {
    let mut app = json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {
            "source": {"repo": repo, "path": path},
            "destination": {"namespace": destination},
            "interval": "1s",
        },
    });
    if let (Some(base), Value::Object(extra)) = (app["spec"].as_object_mut(), spec) {
        base.extend(extra);
    }
    app
}

async fn create_application(f: &Fixture, namespace: &str, app: Value) {
    let api: Api<Application> = Api::namespaced(f.client.clone(), namespace);
    let app: Application = serde_json::from_value(app).expect("an Application");
    api.create(&PostParams::default(), &app)
        .await
        .unwrap_or_else(|e| panic!("creating Application {namespace}/{}: {e}", app.name_any()));
}

/// Polls `probe` every 100 ms until it answers, for at most [`WAIT`].
async fn poll<T, Fut: Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> Fut) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the agent shows app `key` (`namespace/name`) and `check` holds.
async fn wait_app(agent: &Agent, key: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/apps/{key}");
    poll(&format!("{key}: {what}"), || async {
        let (status, text) = agent.get_text(&path).await;
        let value: Value = serde_json::from_str(&text).ok()?;
        (status == 200 && check(&value)).then_some(value)
    })
    .await
}

fn synced_at(status: &Value, revision: &str) -> bool {
    status["sync"] == "Synced"
        && status["revision"] == revision
        && condition(status, "Ready")["status"] == "True"
}

/// The names of the ConfigMaps in `namespace` labelled for app `name` of `app_namespace`.
async fn owned(f: &Fixture, namespace: &str, name: &str, app_namespace: &str) -> Vec<String> {
    let api: Api<ConfigMap> = Api::namespaced(f.client.clone(), namespace);
    let selector = format!("{APP_LABEL}={name},{APP_NAMESPACE_LABEL}={app_namespace}");
    let mut names: Vec<String> = api
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("listing ConfigMaps")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    names
}

/// Two tenants each with an Application `web`, deploying into their own namespaces: both
/// are synced, with labels and inventories apart; a commit that prunes one's object
/// leaves the other's; deleting one Application leaves the other synced and its objects
/// in place. An invalid Application says `Ready=False`, `InvalidSpec`, naming the field,
/// with a Warning Event.
#[tokio::test]
async fn two_applications_of_one_name_in_two_namespaces_are_two_apps() {
    let f = Fixture::new("tenants").await;
    install_crd(&f.client).await;
    let (team_a, team_b) = (format!("{}-a", f.ns()), format!("{}-b", f.ns()));
    let (dest_a, dest_b) = (format!("{}-da", f.ns()), format!("{}-db", f.ns()));
    for ns in [&team_a, &team_b, &dest_a, &dest_b] {
        namespace(&f, ns).await;
    }
    for (path, tenant) in [("a", "a"), ("b", "b")] {
        f.repo.write(
            &format!("{path}/web.yaml"),
            &common::configmap("web", &[("tenant", tenant)]),
        );
    }
    f.repo
        .write("b/extra.yaml", &common::configmap("extra", &[]));
    let first = f.repo.commit("two tenants");
    for (ns, name) in [(&team_a, "web"), (&team_b, "web")] {
        f.delete_later(
            common::resource("v1", "ConfigMap", "configmaps"),
            Some(SYSTEM_NAMESPACE),
            &format!("ferry-inventory-{ns}.{name}"),
        );
    }

    let served = GitHttpServer::start(Path::new(f.repo.path()), HttpAuth::None);
    let repo = &served.url();
    let home = AgentHome::new("apps: []\n");
    let agent = Agent::start(&home, "agent", &["--applications", "all"]).await;
    create_application(
        &f,
        &team_a,
        application(repo, "web", "a", &dest_a, json!({})),
    )
    .await;
    create_application(
        &f,
        &team_b,
        application(repo, "web", "b", &dest_b, json!({})),
    )
    .await;
    let a_key = format!("{team_a}/web");
    let b_key = format!("{team_b}/web");
    for key in [&a_key, &b_key] {
        wait_app(&agent, key, "synced", |s| synced_at(s, &first)).await;
    }
    assert_eq!(owned(&f, &dest_a, "web", &team_a).await, ["web"]);
    assert_eq!(owned(&f, &dest_b, "web", &team_b).await, ["extra", "web"]);
    let list = agent
        .get_json(&format!("/api/v1/apps?appNamespace={team_b}"))
        .await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["appNamespace"], team_b.as_str());
    let inventories: Api<ConfigMap> = Api::namespaced(f.client.clone(), SYSTEM_NAMESPACE);
    for ns in [&team_a, &team_b] {
        let head = inventories
            .get(&format!("ferry-inventory-{ns}.web"))
            .await
            .unwrap_or_else(|e| panic!("{ns}'s inventory: {e}"));
        assert_eq!(head.data.unwrap()["app"], format!("{ns}/web"));
    }

    // team-b's commit prunes its own object only.
    f.repo.remove("b/extra.yaml");
    let second = f.repo.commit("b: drop extra");
    wait_app(&agent, &b_key, "synced at the second commit", |s| {
        synced_at(s, &second)
    })
    .await;
    eventually("team-b's extra is pruned", WAIT, || async {
        owned(&f, &dest_b, "web", &team_b).await == ["web"]
    })
    .await;
    assert_eq!(owned(&f, &dest_a, "web", &team_a).await, ["web"]);
    let a = wait_app(&agent, &a_key, "synced", |s| synced_at(s, &second)).await;
    assert_eq!(a["inventory"], 1, "{a}");

    // Deleting team-b's Application leaves team-a's app and every object.
    let apps_b: Api<Application> = Api::namespaced(f.client.clone(), &team_b);
    apps_b
        .delete("web", &DeleteParams::default())
        .await
        .expect("deleting team-b's Application");
    eventually("team-b/web is gone from the agent", WAIT, || async {
        agent.get_text(&format!("/api/v1/apps/{b_key}")).await.0 == 404
    })
    .await;
    assert_eq!(
        agent.get_text(&format!("/api/v1/apps/{a_key}")).await.0,
        200
    );
    assert_eq!(owned(&f, &dest_a, "web", &team_a).await, ["web"]);
    assert_eq!(owned(&f, &dest_b, "web", &team_b).await, ["web"]);

    // An invalid Application is not reconciled and says which field is wrong.
    let bad = application(
        repo,
        "bad",
        "a",
        &dest_b,
        json!({"wait": {"timeout": "soon"}}),
    );
    create_application(&f, &team_b, bad).await;
    let message = poll("the invalid Application's status", || async {
        let ready = (apps_b.get("bad").await.ok())
            .and_then(|a| a.status)
            .and_then(|s| s.conditions.into_iter().find(|c| c.kind == "Ready"))?;
        (ready.reason == "InvalidSpec" && ready.status == "False").then_some(ready.message)
    })
    .await;
    assert!(
        message.contains("spec.wait.timeout") && message.contains("soon"),
        "{message}"
    );
    let events: Api<Event> = Api::namespaced(f.client.clone(), &team_b);
    eventually(
        "a Warning Event on the invalid Application",
        WAIT,
        || async {
            events
                .list(&ListParams::default())
                .await
                .map(|l| {
                    l.items.iter().any(|e| {
                        e.involved_object.name.as_deref() == Some("bad")
                            && e.reason.as_deref() == Some("InvalidSpec")
                            && e.type_.as_deref() == Some("Warning")
                            && e.message
                                .as_deref()
                                .is_some_and(|m| m.contains("spec.wait.timeout"))
                    })
                })
                .unwrap_or(false)
        },
    )
    .await;
    assert_eq!(
        agent
            .get_text(&format!("/api/v1/apps/{team_b}/bad"))
            .await
            .0,
        404,
        "not reconciled"
    );
    drop(agent);
    f.finish().await;
}

/// Objects and an inventory as an earlier version wrote them — labelled with the app's
/// name alone, the inventory `ferry-inventory-<app>` — are taken over by the first
/// sync: nothing is pruned or kept, the objects get the namespace label, the inventory
/// its new name; a later commit prunes as usual.
#[tokio::test]
async fn an_earlier_versions_labels_and_inventory_are_taken_over() {
    let f = Fixture::new("migrate").await;
    let app = f.app("");
    let cluster = f.cluster().await;
    for name in ["a", "b"] {
        f.write_configmap(name, &[("k", name)]);
        let mut object: Value =
            serde_json::from_str(&yaml_to_json(&common::configmap(name, &[("k", name)]))).unwrap();
        object["metadata"]["namespace"] = json!(f.ns());
        object["metadata"]["labels"] = json!({APP_LABEL: app});
        cluster.apply(&object, false).await.expect("an old object");
    }
    f.repo.commit("a and b");
    let entries = json!([
        {"group": "", "version": "v1", "kind": "ConfigMap", "namespace": f.ns(), "name": "a"},
        {"group": "", "version": "v1", "kind": "ConfigMap", "namespace": f.ns(), "name": "b"},
    ]);
    let legacy = format!("ferry-inventory-{app}");
    let inventories: Api<ConfigMap> = Api::namespaced(f.client.clone(), SYSTEM_NAMESPACE);
    cluster.ensure_namespace(SYSTEM_NAMESPACE).await.unwrap();
    let head: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": legacy, "labels": {APP_LABEL: app}},
        "data": {"app": app, "format": "2", "revision": "old", "entries": entries.to_string()},
    }))
    .unwrap();
    inventories
        .create(&PostParams::default(), &head)
        .await
        .expect("an old inventory");
    f.delete_later(
        common::resource("v1", "ConfigMap", "configmaps"),
        Some(SYSTEM_NAMESPACE),
        &legacy,
    );

    let run = f.one_off("apply", &app, "app", &["--no-wait"]).await;
    run.expect_code(0)
        .expect_stderr("applied: 0 to create, 2 to update, 0 to prune, 0 unchanged");
    assert!(!run.stdout.contains("keep"), "nothing kept: {}", run.stdout);
    for name in ["a", "b"] {
        let cm = f.get::<ConfigMap>(name).await.expect("still there");
        assert_eq!(
            cm.labels().get(APP_NAMESPACE_LABEL).map(String::as_str),
            Some(SYSTEM_NAMESPACE),
            "{name}"
        );
    }
    assert_eq!(
        f.inventory(&app).await.expect("new inventory").names(),
        ["a", "b"]
    );
    assert!(
        inventories.get_opt(&legacy).await.unwrap().is_none(),
        "the old inventory is replaced"
    );

    f.repo.remove("app/b.yaml");
    f.repo.commit("drop b");
    f.one_off("apply", &app, "app", &["--no-wait"])
        .await
        .expect_code(0)
        .expect_stderr("0 to create, 0 to update, 1 to prune, 1 unchanged");
    assert!(f.get::<ConfigMap>("b").await.is_none(), "b is pruned");
    f.finish().await;
}

/// A Namespace removed from Git is kept, with the reason in the plan, until it is
/// annotated `ferry.dev/prune: allow`; then the next apply prunes it.
#[tokio::test]
async fn a_namespace_removed_from_git_is_kept_unless_allowed() {
    let f = Fixture::new("guard").await;
    let app = f.app("");
    let extra = format!("{}-kept", f.ns());
    f.delete_later(
        common::resource("v1", "Namespace", "namespaces"),
        None,
        &extra,
    );
    f.write_configmap("cfg", &[]);
    f.repo.write(
        "app/ns.yaml",
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {extra}\n"),
    );
    f.repo.commit("with a namespace");
    f.one_off("apply", &app, "app", &["--no-wait"])
        .await
        .expect_code(0);
    let namespaces: Api<Namespace> = Api::all(f.client.clone());
    assert!(namespaces.get_opt(&extra).await.unwrap().is_some());

    f.repo.remove("app/ns.yaml");
    f.repo.commit("namespace gone from Git");
    let reason = "a Namespace is not pruned (deleting it deletes what it holds)";
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_stdout(&format!("? keep Namespace/{extra} ({reason}"))
        .expect_stdout("ferry.dev/prune: allow");
    f.one_off("apply", &app, "app", &["--no-wait"])
        .await
        .expect_code(0)
        .expect_stderr("0 to prune, 1 unchanged, 1 kept")
        .expect_stderr(&format!("? keep Namespace/{extra} ({reason}"));
    let json = f.one_off("diff", &app, "app", &["-o", "json"]).await;
    let plan: Value = serde_json::from_str(&json.stdout).expect("a JSON ChangeSet");
    let kept = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"]["kind"] == "Namespace")
        .expect("the namespace in the ChangeSet")
        .clone();
    assert_eq!(kept["action"], "orphan", "{kept}");
    assert!(
        kept["reason"].as_str().unwrap().starts_with(reason),
        "{kept}"
    );
    let ns = namespaces.get(&extra).await.unwrap();
    assert!(ns.metadata.deletion_timestamp.is_none(), "kept");

    namespaces
        .patch(
            &extra,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"ferry.dev/prune": "allow"}}})),
        )
        .await
        .unwrap();
    f.one_off("apply", &app, "app", &["--no-wait"])
        .await
        .expect_code(0)
        .expect_stderr("1 to prune");
    let gone = namespaces.get_opt(&extra).await.unwrap();
    assert!(
        gone.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
        "pruned once allowed"
    );
    f.finish().await;
}

/// The YAML of [`common::configmap`] as JSON.
fn yaml_to_json(yaml: &str) -> String {
    let value: Value = serde_saphyr::from_str(yaml).expect("YAML");
    value.to_string()
}
