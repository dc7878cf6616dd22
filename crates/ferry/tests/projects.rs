//! Projects on the test bed, two tenants: team-b's apps may deploy only from team-b's
//! repository into team-b's namespace, no cluster-scoped kinds; everything else is
//! refused before anything is written, by push mode (exit 2, one line naming the object
//! and the rule) and by the agent (a status condition and a Warning Event on the
//! Application). A project's service account applies its apps: RBAC has the last word.

mod agent_common;
mod common;

use agent_common::{Agent, AgentHome, WAIT, condition, eventually};
use common::{Fixture, configmap};
use ferry_model::SYSTEM_NAMESPACE;
use std::path::Path;

use ferry_testkit::gitserve::{GitHttpServer, HttpAuth, SshServer};
use ferry_testkit::{TestNamespace, TestRepo};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// A ClusterRole manifest named `name`.
fn cluster_role(name: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\nrules: []\n"
    )
}

/// A ConfigMap manifest in an explicit namespace.
fn configmap_in(name: &str, namespace: &str) -> String {
    configmap(name, &[("k", "v")]).replace(
        &format!("  name: {name}\n"),
        &format!("  name: {name}\n  namespace: {namespace}\n"),
    )
}

/// The ConfigMaps of `namespace` but `kube-root-ca.crt`.
async fn configmaps_in(client: &Client, namespace: &str) -> Vec<String> {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await
        .expect("listing ConfigMaps")
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .filter(|n| n != "kube-root-ca.crt")
        .collect()
}

/// Whether ferry wrote an inventory for the app `namespace/app`.
async fn has_inventory(client: &Client, namespace: &str, app: &str) -> bool {
    Api::<ConfigMap>::namespaced(client.clone(), SYSTEM_NAMESPACE)
        .get_opt(&format!("ferry-inventory-{namespace}.{app}"))
        .await
        .expect("reading the inventory")
        .is_some()
}

/// team-b's repository: `ok/` (a ConfigMap), `into-a/` (a ConfigMap naming team-a's
/// namespace), `cluster/` (a ClusterRole and a ConfigMap).
fn team_b_repo(f: &Fixture, team_a: &str, role: &str) {
    f.repo
        .write("ok/cfg.yaml", &configmap("cfg", &[("k", "v")]));
    f.repo
        .write("into-a/cfg.yaml", &configmap_in("intruder", team_a));
    f.repo.write("cluster/role.yaml", &cluster_role(role));
    f.repo
        .write("cluster/cfg.yaml", &configmap("with-role", &[("k", "v")]));
    f.repo.commit("team-b");
}

/// Push mode: an app inside team-b's project applies; an object in team-a's namespace, a
/// ClusterRole and a repository outside the project are each refused with exit 2 and one
/// line naming the object and the rule, and nothing is written (no object, no inventory).
#[tokio::test]
async fn push_mode_refuses_what_the_project_does_not_allow() {
    let f = Fixture::new("proj-push").await;
    let team_a = TestNamespace::new(&f.client, "proj-push-a").await;
    let role = format!("{}-role", f.ns());
    f.delete_later(ApiResource::erase::<ClusterRole>(&()), None, &role);
    team_b_repo(&f, team_a.name(), &role);
    let outside = TestRepo::new();
    outside.write("app/cfg.yaml", &configmap("outside", &[("k", "v")]));
    outside.commit("team-a's");
    let (ok, into_a, cluster, other) = (f.app("-ok"), f.app("-a"), f.app("-cr"), f.app("-repo"));
    let app = |name: &str, repo: &str, path: &str| {
        format!(
            "  - name: {name}\n    project: team-b\n    source: {{repo: {repo:?}, path: {path}}}\n    destination: {{namespace: {ns}}}\n    wait: {{enabled: false}}\n",
            ns = f.ns()
        )
    };
    let file = format!(
        "projects:\n  - name: team-b\n    sourceRepos: [{repo:?}]\n    destinations: [{ns}]\napps:\n{}{}{}{}",
        app(&ok, f.repo.path(), "ok"),
        app(&into_a, f.repo.path(), "into-a"),
        app(&cluster, f.repo.path(), "cluster"),
        app(&other, outside.path(), "app"),
        repo = f.repo.path(),
        ns = f.ns(),
    );
    let (_dir, path) = common::ferry_yaml(&file);
    let path = path.as_str();

    f.ferry(&["apply", &ok, "-f", path]).await.expect_code(0);
    assert_eq!(f.cm_value("cfg", "k").await.as_deref(), Some("v"));

    f.ferry(&["apply", &into_a, "-f", path])
        .await
        .expect_error(&[
            &format!("app ferry-system/{into_a}: refused by project team-b"),
            &format!(
                "ConfigMap/{}/intruder: namespace {} is not in destinations [{}]",
                team_a.name(),
                team_a.name(),
                f.ns()
            ),
        ]);
    f.ferry(&["apply", &cluster, "-f", path])
        .await
        .expect_error(&[&format!(
            "ClusterRole/{role}: cluster-scoped kind rbac.authorization.k8s.io/ClusterRole is not in clusterResources (empty)"
        )]);
    f.ferry(&["apply", &other, "-f", path])
        .await
        .expect_error(&[&format!(
            "repository {} is not in sourceRepos [{}]",
            outside.path(),
            f.repo.path()
        )]);
    // `diff` is refused the same way.
    f.ferry(&["diff", &cluster, "-f", path])
        .await
        .expect_error(&["clusterResources"]);

    assert_eq!(
        configmaps_in(&f.client, team_a.name()).await,
        Vec::<String>::new()
    );
    assert_eq!(f.configmaps().await, ["cfg"], "only the allowed app wrote");
    let roles: Api<ClusterRole> = Api::all(f.client.clone());
    assert!(roles.get_opt(&role).await.unwrap().is_none());
    for refused in [&into_a, &cluster, &other] {
        assert!(
            !has_inventory(&f.client, SYSTEM_NAMESPACE, refused).await,
            "{refused}"
        );
    }
    assert!(has_inventory(&f.client, SYSTEM_NAMESPACE, &ok).await);
    team_a.cleanup().await;
    f.finish().await;
}

/// A Secret in `ferry-system` (made if missing), where a Project's `repoCredentials`
/// look by default; deleted when `f` finishes.
async fn system_secret(f: &Fixture, name: &str, string_data: Value) {
    let namespaces: Api<Namespace> = Api::all(f.client.clone());
    let system = serde_json::from_value(json!({"metadata": {"name": SYSTEM_NAMESPACE}})).unwrap();
    match namespaces.create(&PostParams::default(), &system).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating namespace {SYSTEM_NAMESPACE}: {e}"),
    }
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name}, "stringData": string_data}))
    .unwrap();
    f.delete_later(
        ApiResource::erase::<Secret>(&()),
        Some(SYSTEM_NAMESPACE),
        name,
    );
    Api::<Secret>::namespaced(f.client.clone(), SYSTEM_NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the credentials Secret");
}

/// Creates the Project `name` with `spec`; deleted when `f` finishes.
async fn create_project(f: &Fixture, name: &str, spec: Value) {
    let projects: Api<DynamicObject> =
        Api::all_with(f.client.clone(), &ferry_api("Project", "projects"));
    f.delete_later(ferry_api("Project", "projects"), None, name);
    let project = json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Project",
        "metadata": {"name": name}, "spec": spec});
    projects
        .create(
            &PostParams::default(),
            &serde_json::from_value(project).unwrap(),
        )
        .await
        .expect("creating a Project");
}

/// A Project `name` for `repo` deploying into, and taking Applications from, `namespace`,
/// with `repo_credentials`; deleted when `f` finishes.
async fn credentials_project(
    f: &Fixture,
    name: &str,
    repo: &str,
    namespace: &str,
    repo_credentials: Value,
) {
    let spec = json!({"sourceRepos": [repo], "destinations": [namespace],
                      "sourceNamespaces": [namespace], "repoCredentials": repo_credentials});
    create_project(f, name, spec).await;
}

/// An Application `<ns>-web` of `project` for `repo` (path `app`, no credentials of
/// its own) in the fixture's namespace; returns its API and name.
async fn project_application(
    f: &Fixture,
    project: &str,
    repo: &str,
) -> (Api<DynamicObject>, String) {
    let apps: Api<DynamicObject> = Api::namespaced_with(
        f.client.clone(),
        f.ns(),
        &ferry_api("Application", "applications"),
    );
    let web = f.app("-web");
    let application = json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": web},
        "spec": {"project": project, "source": {"repo": repo, "path": "app"},
                 "destination": {"namespace": f.ns()}, "wait": {"enabled": false},
                 "interval": "1h"}});
    apps.create(
        &PostParams::default(),
        &serde_json::from_value(application).unwrap(),
    )
    .await
    .expect("creating the Application");
    (apps, web)
}

/// An Application of an SSH repository with no Secret of its own is fetched with its
/// project's SSH `repoCredentials` entry (key and known_hosts, host key checked).
#[tokio::test]
async fn a_projects_ssh_credentials_serve_an_application_without_its_own() {
    let f = Fixture::new("proj-ssh").await;
    install_crds(&f).await;
    let repo = TestRepo::new();
    repo.write("app/cfg.yaml", &configmap("over-ssh", &[("k", "v")]));
    repo.commit("private over SSH");
    let sshd = SshServer::start();
    let url = sshd.url(repo.dir());
    let secret_name = format!("{}-ssh", f.ns());
    system_secret(
        &f,
        &secret_name,
        json!({"identity": sshd.client_key(), "known_hosts": sshd.known_hosts()}),
    )
    .await;
    let project = format!("{}-p", f.ns());
    let creds = json!([{"url": url, "secretRef": {"name": secret_name}}]);
    credentials_project(&f, &project, &url, f.ns(), creds).await;
    let (apps, web) = project_application(&f, &project, &url).await;

    let home = AgentHome::new("apps: []\n");
    let agent = Agent::start(&home, "agent", &["--applications", f.ns()]).await;
    let web_key = format!("{}/{web}", f.ns());
    agent.wait_listed(&web_key).await;
    agent
        .wait_app(&web_key, "Synced", |s| s["sync"] == "Synced")
        .await;
    assert_eq!(f.cm_value("over-ssh", "k").await.as_deref(), Some("v"));
    drop(agent);
    let _ = apps.delete(&web, &Default::default()).await;
    f.finish().await;
}

/// Installs the CRDs `ferry install` prints (Application, Project), as the test bed
/// has no agent installed; waits until they are established.
async fn install_crds(f: &Fixture) {
    let printed = f.ferry(&["install"]).await;
    printed.expect_code(0);
    let crds: Api<DynamicObject> = Api::all_with(
        f.client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    let mut names = Vec::new();
    for doc in printed.stdout.split("\n---\n") {
        let doc = doc.trim_start_matches("---\n");
        let Ok(object) = serde_saphyr::from_str::<Value>(doc) else {
            continue;
        };
        if object["kind"] != "CustomResourceDefinition" {
            continue;
        }
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        crds.patch(
            &name,
            &PatchParams::apply("ferry-tests").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        names.push(name);
    }
    assert_eq!(names, ["applications.ferry.dev", "projects.ferry.dev"]);
    for name in &names {
        let crds = &crds;
        eventually(&format!("CRD {name} established"), WAIT, || async move {
            crds.get(name).await.is_ok_and(|crd| {
                crd.data["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    })
            })
        })
        .await;
    }
}

fn ferry_api(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ferry.dev", "v1alpha1", kind),
        plural,
    )
}

/// The agent: team-b's Application (in team-b's namespace, naming team-b's Project)
/// whose manifests put a ConfigMap into team-a's namespace is refused: nothing written,
/// Ready=False with reason ProjectViolation naming the object and the rule in the
/// Application's status, and a Warning Event saying the same. An Application in a
/// namespace the project does not list in sourceNamespaces is refused too.
#[tokio::test]
async fn the_agent_refuses_an_application_outside_its_project() {
    let f = Fixture::new("proj-agent").await;
    let team_a = TestNamespace::new(&f.client, "proj-agent-a").await;
    install_crds(&f).await;
    let role = format!("{}-role", f.ns());
    team_b_repo(&f, team_a.name(), &role);
    // Served over HTTP: an Application may not name a local path.
    let served = GitHttpServer::start(Path::new(f.repo.path()), HttpAuth::None);
    let repo = served.url();
    let project = format!("{}-b", f.ns());
    let spec = json!({"sourceRepos": [repo], "destinations": [f.ns()],
                      "sourceNamespaces": [f.ns()]});
    create_project(&f, &project, spec).await;
    let apps: Api<DynamicObject> = Api::namespaced_with(
        f.client.clone(),
        f.ns(),
        &ferry_api("Application", "applications"),
    );
    let application = |name: &str, path: &str| {
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": name},
            "spec": {"project": project, "source": {"repo": repo, "path": path},
                     "destination": {"namespace": f.ns()}, "wait": {"enabled": false}}})
    };
    let intruder = f.app("-a");
    apps.create(
        &PostParams::default(),
        &serde_json::from_value(application(&intruder, "into-a")).unwrap(),
    )
    .await
    .expect("creating the Application");

    let home = AgentHome::new("apps: []\n");
    let agent = Agent::start(&home, "agent", &["--applications", f.ns()]).await;
    let (apps, intruder_ref) = (&apps, &intruder);
    eventually(
        "the Application's status shows the refusal",
        WAIT,
        || async move {
            let app = apps
                .get(intruder_ref)
                .await
                .expect("reading the Application");
            let ready = condition(&app.data["status"], "Ready");
            ready["status"] == "False" && ready["reason"] == "ProjectViolation"
        },
    )
    .await;
    let app = apps.get(&intruder).await.unwrap();
    let message = condition(&app.data["status"], "Ready")["message"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = format!(
        "ConfigMap/{}/intruder: namespace {} is not in destinations [{}]",
        team_a.name(),
        team_a.name(),
        f.ns()
    );
    assert!(message.contains(&expected), "{message}");
    assert!(
        message.contains(&format!("refused by project {project}")),
        "{message}"
    );
    let events: Api<Event> = Api::namespaced(f.client.clone(), f.ns());
    let (events, expected) = (&events, &expected);
    eventually("a Warning Event naming the rule", WAIT, || async move {
        events.list(&Default::default()).await.is_ok_and(|list| {
            list.items.iter().any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("ProjectViolation")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.contains(expected.as_str()))
            })
        })
    })
    .await;
    assert_eq!(
        configmaps_in(&f.client, team_a.name()).await,
        Vec::<String>::new()
    );
    assert!(!has_inventory(&f.client, f.ns(), &intruder).await);
    drop(agent);
    let _ = apps.delete(&intruder, &Default::default()).await;
    team_a.cleanup().await;
    f.finish().await;
}

/// A project's service account applies its apps: one lacking `create configmaps` gets a
/// Forbidden error naming the account and the object; once a RoleBinding created by
/// the test grants it, the agent's next retry syncs the app.
#[tokio::test]
async fn the_service_account_applies_and_rbac_has_the_last_word() {
    let f = Fixture::new("proj-imp").await;
    f.repo
        .write("app/cfg.yaml", &configmap("cfg", &[("k", "v")]));
    f.repo.commit("one ConfigMap");
    let ns = f.ns().to_string();
    let role = |name: &str, verbs: &[&str]| -> Role {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs}]}))
        .unwrap()
    };
    let binding = |name: &str| -> RoleBinding {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}]}))
        .unwrap()
    };
    let roles: Api<Role> = f.api();
    let bindings: Api<RoleBinding> = f.api();
    let post = PostParams::default();
    roles
        .create(&post, &role("read", &["get", "list", "watch", "patch"]))
        .await
        .unwrap();
    bindings.create(&post, &binding("read")).await.unwrap();
    let app = f.app("");
    let yaml = format!(
        "projects:\n  - name: deployers\n    sourceRepos: [\"*\"]\n    destinations: [{ns}]\n    serviceAccount: {ns}/deployer\napps:\n  - name: {app}\n    project: deployers\n    source: {{repo: {repo:?}, path: app}}\n    destination: {{namespace: {ns}}}\n    interval: 1s\n",
        repo = f.repo.path()
    );
    let home = AgentHome::new(&yaml);
    let agent = Agent::start(&home, "agent", &[]).await;
    let account = format!("system:serviceaccount:{ns}:deployer");
    let status = agent
        .wait_app(&app, "a Forbidden error naming the account", |s| {
            condition(s, "Ready")["message"]
                .as_str()
                .is_some_and(|m| m.contains("forbidden"))
        })
        .await;
    let message = condition(&status, "Ready")["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "forbidden: {account} cannot apply ConfigMap/{ns}/cfg"
        )),
        "{message}"
    );
    assert!(
        message.contains("cannot create resource \"configmaps\""),
        "{message}"
    );
    assert_eq!(f.configmaps().await, Vec::<String>::new());

    roles
        .create(&post, &role("create", &["create"]))
        .await
        .unwrap();
    bindings.create(&post, &binding("create")).await.unwrap();
    agent
        .wait_app(&app, "Synced once the account may create", |s| {
            s["sync"] == "Synced" && condition(s, "Ready")["status"] == "True"
        })
        .await;
    assert_eq!(f.cm_value("cfg", "k").await.as_deref(), Some("v"));
    drop(agent);
    f.finish().await;
}

/// A project's repository credentials (`repoCredentials`, a Secret in `ferry-system`)
/// fetch a private repository for an Application of the project that names no Secret of
/// its own; a `ferry.yaml` app of another project, naming the same repository at the
/// commit the agent holds, gets neither the credentials nor the cached commit.
#[tokio::test]
async fn a_projects_repository_credentials_serve_its_apps_only() {
    const PASSWORD: &str = "pw-proj-7d41c9";
    let f = Fixture::new("proj-creds").await;
    let team_b = TestNamespace::new(&f.client, "proj-creds-b").await;
    install_crds(&f).await;
    f.repo
        .write("app/cfg.yaml", &configmap("private", &[("k", "v")]));
    let sha = f.repo.commit("private");
    let served = GitHttpServer::start(
        Path::new(f.repo.path()),
        HttpAuth::Basic("bot".into(), PASSWORD.into()),
    );
    let repo = served.url();
    // A credential template for the whole server, as Argo CD's repo-creds: a URL prefix.
    let prefix = repo[..repo.rfind('/').expect("a path") + 1].to_string();

    let secret_name = format!("{}-git", f.ns());
    system_secret(
        &f,
        &secret_name,
        json!({"username": "bot", "password": PASSWORD}),
    )
    .await;

    let (with_creds, without) = (format!("{}-a", f.ns()), format!("{}-b", f.ns()));
    for (name, ns, creds) in [
        (
            &with_creds,
            f.ns(),
            json!([{"url": prefix, "secretRef": {"name": secret_name}}]),
        ),
        (&without, team_b.name(), json!([])),
    ] {
        credentials_project(&f, name, &repo, ns, creds).await;
    }
    let (apps, web) = project_application(&f, &with_creds, &repo).await;

    let thief = f.app("-thief");
    let file = format!(
        "apps:\n  - name: {thief}\n    project: {without}\n    source: {{repo: {repo:?}, ref: {sha}, path: app}}\n    destination: {{namespace: {ns}}}\n    interval: 1h\n",
        ns = team_b.name()
    );
    let home = AgentHome::new(&file);
    let agent = Agent::start(&home, "agent", &["--applications", f.ns()]).await;
    let web_key = format!("{}/{web}", f.ns());
    agent.wait_listed(&web_key).await;
    agent
        .wait_app(&web_key, "Synced", |s| s["sync"] == "Synced")
        .await;
    assert_eq!(f.cm_value("private", "k").await.as_deref(), Some("v"));
    let status = agent
        .wait_app(&thief, "a fetch failure", |s| {
            let ready = condition(s, "Ready");
            ready["status"] == "False"
                && ready["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("cannot fetch"))
        })
        .await;
    let message = condition(&status, "Ready")["message"].to_string();
    assert!(message.contains(&repo), "{message}");
    assert_eq!(
        configmaps_in(&f.client, team_b.name()).await,
        Vec::<String>::new(),
        "the other project's app got the private commit"
    );
    assert!(
        !agent.log().contains(PASSWORD),
        "the log shows the password"
    );
    drop(agent);
    let _ = apps.delete(&web, &Default::default()).await;
    team_b.cleanup().await;
    f.finish().await;
}
