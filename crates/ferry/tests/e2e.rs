//! End-to-end tests of the `ferry` binary against the test bed (`eval "$(testbed/up)"`).
//!
//! Every test has its own namespace, Git repository, `FERRY_CACHE` and app names, and
//! asserts exit codes, output and the cluster state read back through the API.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Fixture, configmap, deployment, ferry_yaml, resource};
use ferry_model::{APP_LABEL, Action, ChangeSet, PRUNE_ANNOTATION};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
";

/// resourceVersions of the named objects of the test namespace.
async fn versions(f: &Fixture, configmaps: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in configmaps {
        let cm = f.get::<ConfigMap>(name).await.expect("ConfigMap exists");
        out.insert(format!("ConfigMap/{name}"), cm.resource_version().unwrap());
    }
    let svc = f.get::<Service>("web").await.expect("Service exists");
    out.insert("Service/web".into(), svc.resource_version().unwrap());
    let deploy = f.get::<Deployment>("web").await.expect("Deployment exists");
    out.insert("Deployment/web".into(), deploy.resource_version().unwrap());
    out
}

/// Create, re-apply without changes (nothing written), update one value, prune a removed object.
#[tokio::test]
async fn apply_creates_skips_unchanged_updates_and_prunes() {
    let f = Fixture::new("e2e-life").await;
    let app = f.app("");
    f.write_configmap("cfg", &[("greeting", "hello")]);
    f.write_configmap("extra", &[]);
    f.repo.write("app/svc.yaml", SERVICE);
    f.repo
        .write("app/deploy.yaml", &deployment("web", "web", "", ""));
    let first = f.repo.commit("create");

    // Create.
    f.one_off("apply", &app, "app", &["--timeout", "60s"])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: all 4 object(s) healthy"))
        .expect_stderr("applied: 4 to create, 0 to update, 0 to prune, 0 unchanged");
    assert_eq!(
        f.cm_value("cfg", "greeting").await.as_deref(),
        Some("hello")
    );
    let cfg = f.get::<ConfigMap>("cfg").await.unwrap();
    assert_eq!(cfg.labels().get(APP_LABEL), Some(&app));
    let inv = f.inventory(&app).await.expect("inventory written");
    assert_eq!(inv.revision, first);
    assert_eq!(inv.names(), ["cfg", "extra", "web", "web"]);

    // Unchanged: nothing is written, not even the inventory.
    let before = versions(&f, &["cfg", "extra"]).await;
    f.one_off("apply", &app, "app", &["--timeout", "60s"])
        .await
        .expect_code(0)
        .expect_stderr("applied: 0 to create, 0 to update, 0 to prune, 4 unchanged");
    assert_eq!(versions(&f, &["cfg", "extra"]).await, before);
    assert_eq!(
        f.inventory(&app).await.unwrap().resource_version,
        inv.resource_version,
        "an unchanged apply rewrote the inventory"
    );

    // Update: only the changed object is written.
    f.write_configmap("cfg", &[("greeting", "hi")]);
    let second = f.repo.commit("update");
    f.one_off("apply", &app, "app", &["--timeout", "60s"])
        .await
        .expect_code(0)
        .expect_stderr("~ update ConfigMap/")
        .expect_stderr("applied: 0 to create, 1 to update, 0 to prune, 3 unchanged");
    assert_eq!(f.cm_value("cfg", "greeting").await.as_deref(), Some("hi"));
    let after = versions(&f, &["cfg", "extra"]).await;
    for (object, rv) in &before {
        if object == "ConfigMap/cfg" {
            assert_ne!(&after[object], rv, "{object} was not updated");
        } else {
            assert_eq!(
                &after[object], rv,
                "{object} was written but did not change"
            );
        }
    }
    assert_eq!(f.inventory(&app).await.unwrap().revision, second);

    // Prune: the object removed from Git is deleted and leaves the inventory.
    f.repo.remove("app/extra.yaml");
    f.repo.commit("remove extra");
    f.one_off("apply", &app, "app", &["--timeout", "60s"])
        .await
        .expect_code(0)
        .expect_stderr(&format!("- pruned ConfigMap/{}/extra", f.ns()))
        .expect_stderr("applied: 0 to create, 0 to update, 1 to prune, 3 unchanged");
    assert!(
        f.get::<ConfigMap>("extra").await.is_none(),
        "extra not pruned"
    );
    assert!(f.get::<ConfigMap>("cfg").await.is_some());
    assert_eq!(
        f.inventory(&app).await.unwrap().names(),
        ["cfg", "web", "web"]
    );

    f.finish().await;
}

/// A CRD and an object of its kind in one apply: the CRD is established first.
#[tokio::test]
async fn crd_and_custom_resource_in_one_apply() {
    let f = Fixture::new("e2e-crd").await;
    let app = f.app("");
    let group = format!("{}.ferry.test", f.ns());
    let crd_name = format!("widgets.{group}");
    f.delete_later(
        ApiResource::erase::<CustomResourceDefinition>(&()),
        None,
        &crd_name,
    );
    f.repo.write(
        "app/crd.yaml",
        &format!(
            "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {crd_name}
spec:
  group: {group}
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
"
        ),
    );
    f.repo.write(
        "app/widget.yaml",
        &format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: gear\nspec:\n  size: 3\n"
        ),
    );
    f.repo.commit("crd and widget");

    // Through a ferry.yaml this time.
    let (_dir, file) = ferry_yaml(&format!(
        "apps:\n- name: {app}\n  source:\n    repo: {}\n    path: app\n  destination:\n    namespace: {}\n  wait:\n    timeout: 60s\n",
        f.repo.path(),
        f.ns()
    ));
    let file = file.as_str();

    f.ferry(&["apply", "-f", file])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: all 2 object(s) healthy"));

    let crd = Api::<CustomResourceDefinition>::all(f.client.clone())
        .get(&crd_name)
        .await
        .expect("CRD exists");
    let established = ferry_testkit::established(&crd);
    assert!(established, "CRD not established");
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        f.client.clone(),
        f.ns(),
        &resource(&format!("{group}/v1"), "Widget", "widgets"),
    );
    let gear = widgets.get("gear").await.expect("Widget gear exists");
    assert_eq!(gear.data["spec"]["size"], 3);
    assert_eq!(gear.labels().get(APP_LABEL), Some(&app));

    // The second time round the kind is known and both are unchanged.
    f.ferry(&["diff", "-f", file])
        .await
        .expect_code(0)
        .expect_stdout("in sync (0 to create, 0 to update, 0 to prune, 2 unchanged)");

    f.finish().await;
}

/// Cluster IPs from the bottom of the test bed's service range (10.0.0.0/24), which the
/// API server keeps for static assignment; only this test uses them.
const CLUSTER_IPS: [&str; 2] = ["10.0.0.12", "10.0.0.13"];

/// A Service `web` with a fixed cluster IP.
fn fixed_ip_service(ip: &str) -> String {
    SERVICE.replace("spec:\n", &format!("spec:\n  clusterIP: {ip}\n"))
}

/// An immutable field change fails without --force and changes nothing; with --force the
/// object is deleted and re-created.
#[tokio::test]
async fn immutable_field_change_needs_force() {
    let f = Fixture::new("e2e-immut").await;
    let app = f.app("");
    f.repo
        .write("app/deploy.yaml", &deployment("web", "web", "", ""));
    f.write_configmap("cfg", &[("v", "1")]);
    f.repo
        .write("app/svc.yaml", &fixed_ip_service(CLUSTER_IPS[0]));
    f.repo.commit("v1");
    f.one_off("apply", &app, "app", &["--timeout", "60s"])
        .await
        .expect_code(0);
    let original = f.get::<Deployment>("web").await.unwrap();
    let uid = original.uid().unwrap();

    f.repo
        .write("app/deploy.yaml", &deployment("web", "web-v2", "", ""));
    f.write_configmap("cfg", &[("v", "2")]);
    f.repo.commit("new selector");

    let run = f.one_off("apply", &app, "app", &["--timeout", "60s"]).await;
    run.expect_error(&[
        &format!("Deployment/{}/web", f.ns()),
        "immutable",
        "spec.selector",
        "--force",
    ]);
    let now = f.get::<Deployment>("web").await.unwrap();
    assert_eq!(
        now.uid().unwrap(),
        uid,
        "Deployment was replaced without --force"
    );
    assert_eq!(
        now.resource_version(),
        original.resource_version(),
        "Deployment was written"
    );
    assert_eq!(
        f.cm_value("cfg", "v").await.as_deref(),
        Some("1"),
        "the ConfigMap was updated although the apply failed"
    );

    // diff shows the re-create.
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(1)
        .expect_stdout(&format!("! recreate Deployment/{}/web", f.ns()));

    f.one_off("apply", &app, "app", &["--timeout", "60s", "--force"])
        .await
        .expect_code(0)
        .expect_stderr(&format!("! recreate Deployment/{}/web", f.ns()))
        .expect_stdout("healthy");
    let recreated = f.get::<Deployment>("web").await.unwrap();
    assert_ne!(
        recreated.uid().unwrap(),
        uid,
        "Deployment was not re-created"
    );
    let selector = recreated.spec.unwrap().selector.match_labels.unwrap();
    assert_eq!(selector.get("app").map(String::as_str), Some("web-v2"));
    assert_eq!(f.cm_value("cfg", "v").await.as_deref(), Some("2"));

    // A Service's clusterIP: the API server words this one "may not change once set".
    f.repo
        .write("app/svc.yaml", &fixed_ip_service(CLUSTER_IPS[1]));
    f.repo.commit("new cluster IP");
    let svc_uid = f.get::<Service>("web").await.unwrap().uid().unwrap();
    f.one_off("apply", &app, "app", &["--timeout", "60s"])
        .await
        .expect_error(&[&format!("Service/{}/web", f.ns()), "immutable", "clusterIP"]);
    let svc = f.get::<Service>("web").await.unwrap();
    assert_eq!(svc.uid().unwrap(), svc_uid);
    assert_eq!(
        svc.spec.unwrap().cluster_ip.as_deref(),
        Some(CLUSTER_IPS[0])
    );
    f.one_off("apply", &app, "app", &["--timeout", "60s", "--force"])
        .await
        .expect_code(0)
        .expect_stderr(&format!("! recreate Service/{}/web", f.ns()));
    let svc = f.get::<Service>("web").await.unwrap();
    assert_ne!(svc.uid().unwrap(), svc_uid, "Service was not re-created");
    assert_eq!(
        svc.spec.unwrap().cluster_ip.as_deref(),
        Some(CLUSTER_IPS[1])
    );

    f.finish().await;
}

/// An object annotated `ferry.dev/prune: disabled` stays when it leaves Git.
#[tokio::test]
async fn prune_annotation_keeps_object() {
    let f = Fixture::new("e2e-keep").await;
    let app = f.app("");
    f.repo.write(
        "app/keep.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  annotations:\n    {PRUNE_ANNOTATION}: disabled\ndata:\n  k: v\n"
        ),
    );
    f.write_configmap("drop", &[("k", "v")]);
    f.write_configmap("stay", &[("k", "v")]);
    f.repo.commit("three");
    f.one_off("apply", &app, "app", &[]).await.expect_code(0);
    assert_eq!(f.configmaps().await, ["drop", "keep", "stay"]);

    f.repo.remove("app/keep.yaml");
    f.repo.remove("app/drop.yaml");
    f.repo.commit("remove two");
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(1)
        .expect_stdout(&format!(
            "? keep ConfigMap/{}/keep (annotated ferry.dev/prune: disabled)",
            f.ns()
        ))
        .expect_stdout(&format!("- prune ConfigMap/{}/drop", f.ns()));
    f.one_off("apply", &app, "app", &[])
        .await
        .expect_code(0)
        .expect_stderr("0 to create, 0 to update, 1 to prune, 1 unchanged, 1 kept");
    assert_eq!(f.configmaps().await, ["keep", "stay"]);
    assert_eq!(f.inventory(&app).await.unwrap().names(), ["stay"]);

    f.finish().await;
}

/// A commit that leaves an app with no objects would prune all of it: refused (exit 2,
/// nothing written) unless the app sets `allowEmpty`.
#[tokio::test]
async fn empty_render_is_refused_unless_allowed() {
    let f = Fixture::new("e2e-empty").await;
    let app = f.app("");
    f.write_configmap("one", &[("k", "v")]);
    f.write_configmap("two", &[("k", "v")]);
    f.repo.commit("two objects");
    f.one_off("apply", &app, "app", &[]).await.expect_code(0);
    let before = f.inventory(&app).await.expect("inventory written");

    f.repo.remove("app/two.yaml");
    f.repo
        .write("app/one.yaml", "# switched off until the next release\n");
    let empty = f.repo.commit("comment everything out");
    let refusal = [
        format!("app ferry-system/{app} at {}", &empty[..7]),
        "the render has no objects, so all 2 object(s) in its inventory would be pruned".into(),
        "allowEmpty: true".into(),
    ];
    let refusal: Vec<&str> = refusal.iter().map(String::as_str).collect();
    for command in ["diff", "apply"] {
        f.one_off(command, &app, "app", &[])
            .await
            .expect_error(&refusal);
        assert_eq!(f.configmaps().await, ["one", "two"], "{command} pruned");
        assert_eq!(
            f.inventory(&app).await.unwrap().resource_version,
            before.resource_version,
            "{command} rewrote the inventory"
        );
    }

    let (_dir, file) = ferry_yaml(&format!(
        "apps:\n- name: {app}\n  allowEmpty: true\n  source:\n    repo: {}\n    path: app\n  destination:\n    namespace: {}\n",
        f.repo.path(),
        f.ns()
    ));
    f.ferry(&["apply", "-f", &file])
        .await
        .expect_code(0)
        .expect_stderr("0 to create, 0 to update, 2 to prune, 0 unchanged");
    assert!(f.configmaps().await.is_empty(), "allowEmpty did not prune");
    assert!(f.inventory(&app).await.unwrap().names().is_empty());

    f.finish().await;
}

/// Two apps cannot claim one object: the second apply fails naming the owner and writes nothing.
#[tokio::test]
async fn two_apps_cannot_claim_one_object() {
    let f = Fixture::new("e2e-claim").await;
    let first = f.app("-a");
    let second = f.app("-b");
    f.repo
        .write("a/shared.yaml", &configmap("shared", &[("from", "a")]));
    f.repo
        .write("b/shared.yaml", &configmap("shared", &[("from", "b")]));
    f.repo.write("b/mine.yaml", &configmap("b-only", &[]));
    f.repo.commit("two apps");
    f.one_off("apply", &first, "a", &[]).await.expect_code(0);
    let before = f.get::<ConfigMap>("shared").await.unwrap();

    let run = f.one_off("apply", &second, "b", &[]).await;
    run.expect_error(&[
        &format!("ConfigMap/{}/shared", f.ns()),
        &format!("app \"ferry-system/{first}\""),
    ]);
    assert_eq!(
        f.configmaps().await,
        ["shared"],
        "the second app wrote objects"
    );
    let after = f.get::<ConfigMap>("shared").await.unwrap();
    assert_eq!(after.resource_version(), before.resource_version());
    assert_eq!(after.labels().get(APP_LABEL), Some(&first));
    assert!(
        f.inventory(&second).await.is_none(),
        "the failed app wrote an inventory"
    );

    // diff reports the same conflict as an error.
    f.one_off("diff", &second, "b", &[])
        .await
        .expect_error(&[&format!("app \"ferry-system/{first}\"")]);

    f.finish().await;
}

/// An object that now belongs to another app is not pruned when it leaves this app's Git.
#[tokio::test]
async fn object_owned_by_another_app_is_not_pruned() {
    let f = Fixture::new("e2e-owned").await;
    let app = f.app("");
    f.write_configmap("mine", &[]);
    f.write_configmap("moved", &[]);
    f.repo.commit("two");
    f.one_off("apply", &app, "app", &[]).await.expect_code(0);

    // Hand `moved` over to another app, then drop it from this app's Git.
    let other = format!("{app}-other");
    f.api::<ConfigMap>()
        .patch(
            "moved",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {APP_LABEL: other}}})),
        )
        .await
        .unwrap();
    f.repo.remove("app/moved.yaml");
    f.repo.commit("moved to the other app");

    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(0)
        .expect_stdout(&format!(
            "? keep ConfigMap/{}/moved (owned by app \"ferry-system/{other}\")",
            f.ns()
        ));
    f.one_off("apply", &app, "app", &[])
        .await
        .expect_code(0)
        .expect_stderr("0 to prune, 1 unchanged, 1 kept");
    let moved = f.get::<ConfigMap>("moved").await.expect("moved was pruned");
    assert_eq!(moved.labels().get(APP_LABEL), Some(&other));
    assert_eq!(f.inventory(&app).await.unwrap().names(), ["mine"]);

    f.finish().await;
}

/// A Deployment that becomes available: exit 0 and "healthy".
#[tokio::test]
async fn wait_succeeds_when_deployment_is_available() {
    let f = Fixture::new("e2e-healthy").await;
    let app = f.app("");
    f.repo.write(
        "app/deploy.yaml",
        &deployment("web", "web", "", "").replace("replicas: 1", "replicas: 2"),
    );
    f.repo.write("app/svc.yaml", SERVICE);
    f.repo.commit("web");
    f.one_off("apply", &app, "app", &["--timeout", "60s"])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: all 2 object(s) healthy"));
    let status = f.get::<Deployment>("web").await.unwrap().status.unwrap();
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(status.ready_replicas, Some(2));

    f.finish().await;
}

/// A Job that fails: exit 1, the output names the Job and the reason.
#[tokio::test]
async fn wait_fails_on_failed_job() {
    let f = Fixture::new("e2e-job").await;
    let app = f.app("");
    // Its pod can never be scheduled, so the Job fails when its deadline passes.
    f.repo.write(
        "app/job.yaml",
        "apiVersion: batch/v1
kind: Job
metadata:
  name: doomed
spec:
  backoffLimit: 0
  activeDeadlineSeconds: 2
  template:
    spec:
      restartPolicy: Never
      nodeSelector:
        ferry.test/no-such-node: \"true\"
      containers:
      - name: main
        image: registry.k8s.io/pause:3.10
",
    );
    f.write_configmap("cfg", &[]);
    f.repo.commit("doomed job");
    let start = Instant::now();
    let run = f.one_off("apply", &app, "app", &["--timeout", "60s"]).await;
    run.expect_code(1)
        .expect_stdout(&format!("{app}: failed:"))
        .expect_stdout(&format!("Job/{}/doomed: Failed", f.ns()))
        .expect_stdout("DeadlineExceeded");
    assert!(
        !run.stdout.contains("ConfigMap/"),
        "a healthy object is listed as failed: {run}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(45),
        "the wait did not stop at the failure"
    );
    // The apply itself happened.
    assert!(f.get::<Job>("doomed").await.is_some());
    assert!(f.get::<ConfigMap>("cfg").await.is_some());

    f.finish().await;
}

/// A Deployment that exceeds its progress deadline: exit 1 with the controller's reason.
#[tokio::test]
async fn wait_fails_on_progress_deadline() {
    let f = Fixture::new("e2e-deadline").await;
    let app = f.app("");
    f.repo.write(
        "app/deploy.yaml",
        &deployment(
            "stuck",
            "stuck",
            "  progressDeadlineSeconds: 1\n",
            "      nodeSelector:\n        ferry.test/no-such-node: \"true\"\n",
        ),
    );
    f.repo.commit("stuck");
    f.one_off("apply", &app, "app", &["--timeout", "60s"])
        .await
        .expect_code(1)
        .expect_stdout(&format!("{app}: failed:"))
        .expect_stdout(&format!("Deployment/{}/stuck: Failed", f.ns()))
        .expect_stdout("ProgressDeadlineExceeded");

    f.finish().await;
}

/// A wait that times out lists the objects that are not ready, and only those.
#[tokio::test]
async fn wait_timeout_lists_unready_objects() {
    let f = Fixture::new("e2e-timeout").await;
    let app = f.app("");
    f.repo.write(
        "app/deploy.yaml",
        &deployment(
            "stuck",
            "stuck",
            "",
            "      nodeSelector:\n        ferry.test/no-such-node: \"true\"\n",
        ),
    );
    f.write_configmap("cfg", &[]);
    f.repo.commit("stuck");
    let start = Instant::now();
    let run = f.one_off("apply", &app, "app", &["--timeout", "3s"]).await;
    let took = start.elapsed();
    run.expect_code(1)
        .expect_stdout(&format!("{app}: timed out waiting for health:"))
        .expect_stdout(&format!(
            "Deployment/{}/stuck: InProgress 0 of 1 replica available",
            f.ns()
        ));
    assert!(
        !run.stdout.contains("ConfigMap/"),
        "a ready object is listed as unready: {run}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "--timeout 3s took {took:?}"
    );

    f.finish().await;
}

/// `ferry diff`: 0 in sync, 1 changes pending (nothing written), 2 on error.
#[tokio::test]
async fn diff_exit_codes() {
    let f = Fixture::new("e2e-diff").await;
    let app = f.app("");
    f.write_configmap("cfg", &[("k", "old")]);
    f.repo.commit("one");

    // Nothing applied yet: a create is pending.
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(1)
        .expect_stdout(&format!("+ create ConfigMap/{}/cfg", f.ns()));
    assert!(f.configmaps().await.is_empty(), "diff wrote an object");
    assert!(f.inventory(&app).await.is_none(), "diff wrote an inventory");

    f.one_off("apply", &app, "app", &[]).await.expect_code(0);
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: in sync"));

    f.write_configmap("cfg", &[("k", "new")]);
    f.repo.commit("two");
    let run = f.one_off("diff", &app, "app", &[]).await;
    run.expect_code(1)
        .expect_stdout(&format!("~ update ConfigMap/{}/cfg", f.ns()))
        .expect_stdout("-  k: old")
        .expect_stdout("+  k: new")
        .expect_stdout("0 to create, 1 to update, 0 to prune, 0 unchanged");
    assert_eq!(f.cm_value("cfg", "k").await.as_deref(), Some("old"));

    f.repo.write(
        "app/gadget.yaml",
        "apiVersion: example.ferry.test/v1\nkind: Gadget\nmetadata:\n  name: g\n",
    );
    f.repo.commit("unknown kind");
    f.one_off("diff", &app, "app", &[]).await.expect_error(&[
        "gadget.yaml",
        "Gadget",
        "not known to the cluster",
    ]);

    f.finish().await;
}

/// Many objects of one kind in one namespace are read with one labelled LIST instead of a
/// GET each: a live edit of a listed object is still seen, and an unlabelled object that
/// Git also has (not in the LIST) is still found and adopted, not "created".
#[tokio::test]
async fn many_objects_of_a_kind_are_listed_not_fetched_one_by_one() {
    let f = Fixture::new("e2e-list").await;
    let app = f.app("");
    let names: Vec<String> = (0..12).map(|i| format!("cm-{i:02}")).collect();
    for name in &names {
        f.repo.write(
            &format!("app/{name}.yaml"),
            &configmap(name, &[("v", "git")]),
        );
    }
    f.repo.commit("twelve");
    // One object exists already without ferry's label.
    let cms: Api<ConfigMap> = f.api();
    let manual = serde_json::from_value(json!({
        "metadata": {"name": "cm-11"}, "data": {"v": "git"}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &manual).await.unwrap();

    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(1)
        .expect_stdout("11 to create, 1 to update, 0 to prune, 0 unchanged")
        .expect_stdout(&format!("~ update ConfigMap/{}/cm-11", f.ns()));
    f.one_off("apply", &app, "app", &["--no-wait"])
        .await
        .expect_code(0);
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: in sync"));

    cms.patch(
        "cm-04",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "edited"}})),
    )
    .await
    .unwrap();
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(1)
        .expect_stdout(&format!("~ update ConfigMap/{}/cm-04", f.ns()))
        .expect_stdout("-  v: edited")
        .expect_stdout("0 to create, 1 to update, 0 to prune, 11 unchanged");
    f.finish().await;
}

/// Server-side-apply dry-runs the API server has answered for `resource` of `group`.
fn dry_runs(group: &str, resource: &str) -> u64 {
    let out = std::process::Command::new("kubectl")
        .args(["get", "--raw", "/metrics"])
        .output()
        .expect("kubectl runs");
    assert!(out.status.success(), "kubectl get --raw /metrics failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| {
            l.contains(&format!("group=\"{group}\""))
                && l.contains(&format!("resource=\"{resource}\""))
                && l.contains("verb=\"APPLY\"")
                && l.contains("dry_run=\"All\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A push-mode run skips the dry-run of every object its inventory knows to be in sync
/// (same manifest, same live values of the fields ferry sets); a live edit brings the
/// dry-run back for that object alone, and the diff shows it.
#[tokio::test]
async fn objects_known_in_sync_skip_their_dry_runs() {
    let f = Fixture::new("e2e-memo").await;
    let app = f.app("");
    let group = format!("{}.ferry.test", f.ns());
    let crd_name = format!("gizmos.{group}");
    f.delete_later(
        ApiResource::erase::<CustomResourceDefinition>(&()),
        None,
        &crd_name,
    );
    let crd = serde_json::from_value(json!({
        "metadata": {"name": crd_name},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {
                "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                    "type": "object", "properties": {"size": {"type": "integer"}}}}}}}],
        },
    }))
    .unwrap();
    Api::<CustomResourceDefinition>::all(f.client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .unwrap();
    for i in 0..10 {
        f.repo.write(
            &format!("app/g{i}.yaml"),
            &format!(
                "apiVersion: {group}/v1\nkind: Gizmo\nmetadata:\n  name: g{i}\nspec:\n  size: {i}\n"
            ),
        );
    }
    f.repo.commit("gizmos");
    // The kind is served once the CRD is established; until then ferry says it is unknown.
    let start = Instant::now();
    loop {
        let run = f.one_off("apply", &app, "app", &["--no-wait"]).await;
        if run.code == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never applied: {run}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let before = dry_runs(&group, "gizmos");
    f.one_off("apply", &app, "app", &["--no-wait"])
        .await
        .expect_code(0);
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: in sync"));
    assert_eq!(
        dry_runs(&group, "gizmos") - before,
        0,
        "known in sync: no dry-run"
    );

    let gizmos: Api<DynamicObject> = Api::namespaced_with(
        f.client.clone(),
        f.ns(),
        &resource(&format!("{group}/v1"), "Gizmo", "gizmos"),
    );
    gizmos
        .patch(
            "g3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 30}})),
        )
        .await
        .unwrap();
    let before = dry_runs(&group, "gizmos");
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(1)
        .expect_stdout(&format!("~ update Gizmo/{}/g3", f.ns()))
        .expect_stdout("0 to create, 1 to update, 0 to prune, 9 unchanged");
    assert_eq!(
        dry_runs(&group, "gizmos") - before,
        1,
        "only the edited object"
    );
    f.finish().await;
}

/// `ferry diff --revision A --against B` compares two revisions without a cluster.
#[tokio::test]
async fn offline_preview_needs_no_cluster() {
    let f = Fixture::new("e2e-preview").await;
    let app = f.app("");
    f.write_configmap("cfg", &[("k", "1")]);
    f.write_configmap("same", &[]);
    let base = f.repo.commit("base");
    f.write_configmap("cfg", &[("k", "2")]);
    f.write_configmap("new", &[]);
    let head = f.repo.commit("head");

    let missing = tempfile::tempdir().unwrap();
    let offline = f
        .ferry
        .with_kubeconfig(&missing.path().join("no-such-kubeconfig"));
    let ns = f.ns().to_string();
    let common = ["--repo", f.repo.path(), "--path", "app", "-n", &ns];

    let mut args = vec!["diff", &app];
    args.extend(common);
    args.extend(["--revision", &head, "--against", &base]);
    let run = offline.run(&args).await;
    // Offline there is no discovery to tell namespaced kinds from cluster-scoped ones, so
    // objects keep the namespace their manifest gives (none here).
    run.expect_code(1)
        .expect_line("~ update ConfigMap/", "/cfg")
        .expect_line("+ create ConfigMap/", "/new")
        .expect_stdout("1 to create, 1 to update, 0 to prune, 1 unchanged")
        .expect_stderr("no cluster");
    assert!(
        !run.stdout.contains("/same\n"),
        "unchanged object listed: {run}"
    );

    // The other way round, the new object is a prune.
    let mut args = vec!["diff", &app];
    args.extend(common);
    args.extend(["--revision", &base, "--against", &head]);
    offline
        .run(&args)
        .await
        .expect_code(1)
        .expect_line("- prune ConfigMap/", "/new");

    let mut args = vec!["diff", &app];
    args.extend(common);
    args.extend(["--revision", &head, "--against", "main"]);
    offline
        .run(&args)
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: in sync"));

    // The same kubeconfig does break commands that need the cluster.
    let mut args = vec!["diff", &app];
    args.extend(common);
    offline.run(&args).await.expect_error(&["kubeconfig"]);
    assert!(f.configmaps().await.is_empty());

    f.finish().await;
}

/// `ferry diff --output json` prints a ChangeSet with the planned actions.
#[tokio::test]
async fn diff_json_is_a_changeset() {
    let f = Fixture::new("e2e-json").await;
    let app = f.app("");
    f.write_configmap("a", &[("k", "1")]);
    f.write_configmap("b", &[]);
    f.write_configmap("c", &[]);
    f.repo.commit("abc");
    f.one_off("apply", &app, "app", &[]).await.expect_code(0);

    f.write_configmap("a", &[("k", "2")]);
    f.repo.remove("app/b.yaml");
    f.write_configmap("d", &[]);
    let sha = f.repo.commit("a changed, b removed, d added");

    let run = f.one_off("diff", &app, "app", &["--output", "json"]).await;
    run.expect_code(1);
    let cs: ChangeSet = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not a ChangeSet: {e}\n{run}"));
    assert_eq!(cs.app, format!("ferry-system/{app}"));
    assert_eq!(cs.revision, sha);
    let actions: BTreeMap<&str, Action> = cs
        .changes
        .iter()
        .map(|c| (c.subject.name.as_str(), c.action))
        .collect();
    assert_eq!(
        actions,
        BTreeMap::from([
            ("a", Action::Update),
            ("b", Action::Prune),
            ("c", Action::Unchanged),
            ("d", Action::Create),
        ])
    );
    for c in &cs.changes {
        assert_eq!(c.subject.kind, "ConfigMap");
        assert_eq!(c.subject.namespace.as_deref(), Some(f.ns()));
        assert_eq!(c.diff.is_empty(), c.action == Action::Unchanged, "{c:?}");
    }
    assert_eq!(
        cs.changes.last().map(|c| c.action),
        Some(Action::Prune),
        "prunes come last"
    );

    f.finish().await;
}

/// `ferry apply --revision <older sha>` rolls back to the older content.
#[tokio::test]
async fn apply_revision_rolls_back() {
    let f = Fixture::new("e2e-rollback").await;
    let app = f.app("");
    f.write_configmap("cfg", &[("v", "1")]);
    let old = f.repo.commit("v1");
    f.write_configmap("cfg", &[("v", "2")]);
    f.write_configmap("added", &[]);
    let new = f.repo.commit("v2");

    f.one_off("apply", &app, "app", &[]).await.expect_code(0);
    assert_eq!(f.cm_value("cfg", "v").await.as_deref(), Some("2"));
    assert_eq!(f.inventory(&app).await.unwrap().revision, new);

    f.one_off("apply", &app, "app", &["--revision", &old])
        .await
        .expect_code(0)
        .expect_stderr(&format!("{app}: 1 object(s) at {}", &old[..7]));
    assert_eq!(f.cm_value("cfg", "v").await.as_deref(), Some("1"));
    assert_eq!(
        f.configmaps().await,
        ["cfg"],
        "the newer object was not pruned"
    );
    let inv = f.inventory(&app).await.unwrap();
    assert_eq!(inv.revision, old);
    assert_eq!(inv.names(), ["cfg"]);

    // And forward again with the branch head.
    f.one_off("apply", &app, "app", &[]).await.expect_code(0);
    assert_eq!(f.cm_value("cfg", "v").await.as_deref(), Some("2"));
    assert_eq!(f.configmaps().await, ["added", "cfg"]);

    f.finish().await;
}

// --- bad input: one error line, exit 2, nothing written ---------------------------------

/// Applies `path` of the fixture's repo as a new app and asserts exit 2, one error line
/// containing `parts`, and that no object and no inventory were written. Returns the line.
async fn apply_fails_writing_nothing(
    f: &Fixture,
    app: &str,
    path: &str,
    extra: &[&str],
    parts: &[&str],
) -> String {
    let run = f.one_off("apply", app, path, extra).await;
    let line = run.expect_error(parts).to_string();
    assert!(
        f.configmaps().await.is_empty(),
        "objects were written: {run}"
    );
    assert!(
        f.inventory(app).await.is_none(),
        "an inventory was written: {run}"
    );
    line
}

/// Invalid YAML, an object without a name, duplicate objects and an unknown kind, each
/// next to a valid ConfigMap that must not be applied either.
#[tokio::test]
async fn bad_manifests_are_rejected_writing_nothing() {
    let f = Fixture::new("e2e-badyaml").await;
    let ns = f.ns().to_string();
    for dir in ["yaml", "noname", "dup", "kind"] {
        f.repo
            .write(&format!("{dir}/good.yaml"), &configmap("good", &[]));
    }
    f.repo.write(
        "yaml/bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata: [unclosed\n",
    );
    f.repo.write(
        "noname/noname.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels:\n    a: b\ndata: {}\n",
    );
    f.repo
        .write("dup/one.yaml", &configmap("twice", &[("k", "1")]));
    f.repo
        .write("dup/two.yaml", &configmap("twice", &[("k", "2")]));
    f.repo.write(
        "kind/gadget.yaml",
        "apiVersion: example.ferry.test/v1\nkind: Gadget\nmetadata:\n  name: g\n",
    );
    f.repo.commit("bad manifests");

    // Invalid YAML: bad.yaml:<line>:<column>: …
    let line = apply_fails_writing_nothing(&f, &f.app("-yaml"), "yaml", &[], &["bad.yaml:"]).await;
    let rest = &line[line.find("bad.yaml:").unwrap() + "bad.yaml:".len()..];
    let mut fields = rest.splitn(3, ':');
    let row: u32 = fields
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no line number after bad.yaml: in {line:?}"));
    let column: u32 = fields
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no column after bad.yaml:{row}: in {line:?}"));
    assert_eq!(row, 5, "{line}");
    assert!(column >= 1, "{line}");

    apply_fails_writing_nothing(
        &f,
        &f.app("-noname"),
        "noname",
        &[],
        &["noname.yaml", "metadata.name"],
    )
    .await;

    apply_fails_writing_nothing(
        &f,
        &f.app("-dup"),
        "dup",
        &[],
        &[
            &format!("duplicate object ConfigMap/{ns}/twice"),
            "one.yaml",
            "two.yaml",
        ],
    )
    .await;

    let line = apply_fails_writing_nothing(
        &f,
        &f.app("-kind"),
        "kind",
        &[],
        &[
            "gadget.yaml",
            "Gadget",
            "example.ferry.test/v1",
            "not known to the cluster",
        ],
    )
    .await;
    assert_eq!(
        line.matches("not known to the cluster").count(),
        1,
        "the cause is repeated: {line}"
    );

    f.finish().await;
}

/// An unknown ref, an unknown path and paths that leave the repository.
#[tokio::test]
async fn bad_source_is_rejected_writing_nothing() {
    let f = Fixture::new("e2e-badsrc").await;
    f.write_configmap("good", &[]);
    f.repo.commit("one");
    apply_fails_writing_nothing(
        &f,
        &f.app("-ref"),
        "app",
        &["--ref", "no-such-branch"],
        &["ref \"no-such-branch\" not found"],
    )
    .await;
    apply_fails_writing_nothing(
        &f,
        &f.app("-path"),
        "no/such/dir",
        &[],
        &["\"no/such/dir\"", "does not exist"],
    )
    .await;
    apply_fails_writing_nothing(&f, &f.app("-up"), "../", &[], &["\"../\"", "not allowed"]).await;
    apply_fails_writing_nothing(
        &f,
        &f.app("-upup"),
        "app/../..",
        &[],
        &["\"app/../..\"", "not allowed"],
    )
    .await;
    f.finish().await;
}

/// A destination namespace that does not exist is an error (nothing written) unless the
/// sync creates it: `--create-namespace`, or a Namespace object in the app.
#[tokio::test]
async fn missing_namespace_is_an_error_unless_created() {
    let f = Fixture::new("e2e-nons").await;
    let missing = format!("{}-new", f.ns());
    let own = format!("{}-own", f.ns());
    for ns in [&missing, &own] {
        f.delete_later(ApiResource::erase::<Namespace>(&()), None, ns);
    }
    f.write_configmap("cfg", &[]);
    f.repo.write(
        "own/ns.yaml",
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {own}\n"),
    );
    f.repo.write(
        "own/cfg.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: {own}\n"),
    );
    f.repo.commit("one");
    let app = f.app("");
    let namespaces: Api<Namespace> = Api::all(f.client.clone());
    let base = ["--repo", f.repo.path(), "--path", "app", "-n", &missing];

    for command in ["diff", "apply"] {
        let mut args = vec![command, &app];
        args.extend(base);
        f.ferry(&args).await.expect_error(&[
            &format!("ConfigMap/{missing}/cfg"),
            &format!("namespace {missing} does not exist"),
            "--create-namespace",
        ]);
    }
    assert!(namespaces.get_opt(&missing).await.unwrap().is_none());
    assert!(
        f.inventory(&app).await.is_none(),
        "an inventory was written"
    );

    let mut args = vec!["apply", &app];
    args.extend(base);
    args.push("--create-namespace");
    f.ferry(&args).await.expect_code(0);
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), &missing);
    assert!(cms.get_opt("cfg").await.unwrap().is_some());

    let own_app = f.app("-own");
    f.ferry(&["apply", &own_app, "--repo", f.repo.path(), "--path", "own"])
        .await
        .expect_code(0)
        .expect_stdout("all 2 object(s) healthy");
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), &own);
    assert!(cms.get_opt("cfg").await.unwrap().is_some());

    f.finish().await;
}

#[tokio::test]
async fn unreachable_cluster_is_an_error() {
    let f = Fixture::new("e2e-unreach").await;
    f.write_configmap("good", &[]);
    f.repo.commit("one");
    let kubeconfig = f.kubeconfig_file(
        "apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: nobody
  user:
    token: not-a-token
contexts:
- name: nowhere
  context:
    cluster: nowhere
    user: nobody
current-context: nowhere
",
    );
    let app = f.app("");
    let ns = f.ns().to_string();
    let start = Instant::now();
    let run = f
        .ferry
        .with_kubeconfig(kubeconfig.path())
        .run(&[
            "apply",
            &app,
            "--repo",
            f.repo.path(),
            "--path",
            "app",
            "-n",
            &ns,
        ])
        .await;
    run.expect_error(&["cannot reach the cluster", "127.0.0.1:1"]);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "giving up on an unreachable cluster took {:?}",
        start.elapsed()
    );
    assert!(f.configmaps().await.is_empty());
    assert!(f.inventory(&app).await.is_none());
    f.finish().await;
}

/// With a service account that may only get and list, apply fails as forbidden and writes nothing.
#[tokio::test]
async fn forbidden_verb_is_an_error() {
    let f = Fixture::new("e2e-rbac").await;
    let ns = f.ns().to_string();
    let app = f.app("");
    f.write_configmap("cfg", &[]);
    f.repo.commit("one");

    let pp = PostParams::default();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "reader"}})).unwrap();
    f.api::<ServiceAccount>().create(&pp, &sa).await.unwrap();
    let read_only = |name: &str, resources: &[&str]| -> Role {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "rules": [{"apiGroups": ["*"], "resources": resources, "verbs": ["get", "list"]}],
        }))
        .unwrap()
    };
    let binding = |name: &str| -> RoleBinding {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        }))
        .unwrap()
    };
    f.api::<Role>()
        .create(&pp, &read_only("read-only", &["*"]))
        .await
        .unwrap();
    f.api::<RoleBinding>()
        .create(&pp, &binding("read-only"))
        .await
        .unwrap();
    // Reading inventories is allowed too, so that the failure is the write itself.
    let system = ferry_model::SYSTEM_NAMESPACE;
    let namespaces: Api<Namespace> = Api::all(f.client.clone());
    if namespaces.get_opt(system).await.unwrap().is_none() {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": system}})).unwrap();
        match namespaces.create(&pp, &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("creating {system}: {e}"),
        }
    }
    let inventory_reader = format!("{ns}-inventory-reader");
    for r in [
        ApiResource::erase::<RoleBinding>(&()),
        ApiResource::erase::<Role>(&()),
    ] {
        f.delete_later(r, Some(system), &inventory_reader);
    }
    Api::<Role>::namespaced(f.client.clone(), system)
        .create(&pp, &read_only(&inventory_reader, &["configmaps"]))
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(f.client.clone(), system)
        .create(&pp, &binding(&inventory_reader))
        .await
        .unwrap();
    // And the app's Project (push mode checks it when the Project CRD is installed, as
    // after projects.rs on a reused test bed).
    let project_reader = format!("{ns}-project-reader");
    for r in [
        ApiResource::erase::<ClusterRoleBinding>(&()),
        ApiResource::erase::<ClusterRole>(&()),
    ] {
        f.delete_later(r, None, &project_reader);
    }
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": project_reader},
        "rules": [{"apiGroups": ["ferry.dev"], "resources": ["projects"], "verbs": ["get", "list"]}],
    }))
    .unwrap();
    Api::<ClusterRole>::all(f.client.clone())
        .create(&pp, &role)
        .await
        .unwrap();
    let cluster_binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": project_reader},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": project_reader},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(f.client.clone())
        .create(&pp, &cluster_binding)
        .await
        .unwrap();

    let token = f
        .api::<ServiceAccount>()
        .create_token_request(
            "reader",
            &pp,
            &TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    expiration_seconds: Some(600),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .status
        .expect("token issued")
        .token;
    let admin = kube::config::Kubeconfig::read().expect("test bed kubeconfig");
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == ferry_testkit::TESTBED_CONTEXT)
        .and_then(|c| c.cluster.clone())
        .expect("the test bed cluster in $KUBECONFIG");
    let kubeconfig = f.kubeconfig_file(&format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: {}
    certificate-authority-data: {}
users:
- name: reader
  user:
    token: {token}
contexts:
- name: reader
  context:
    cluster: testbed
    user: reader
current-context: reader
",
        cluster.server.unwrap(),
        cluster.certificate_authority_data.unwrap(),
    ));

    let limited = f.ferry.with_kubeconfig(kubeconfig.path());
    let args = ["--repo", f.repo.path(), "--path", "app", "-n", &ns];
    let mut apply = vec!["apply", &app];
    apply.extend(args);
    limited
        .run(&apply)
        .await
        .expect_error(&["forbidden", &format!("ConfigMap/{ns}/cfg")]);
    assert!(f.configmaps().await.is_empty(), "an object was written");
    assert!(
        f.inventory(&app).await.is_none(),
        "an inventory was written"
    );

    f.finish().await;
}

/// Argo CD's `jsonnet-guestbook` layout (an entry point importing `params.libsonnet`),
/// with an external variable and a top-level argument from the ferry.yaml: rendered in
/// process and applied.
#[tokio::test]
async fn jsonnet_app_is_rendered_and_applied() {
    let f = Fixture::new("e2e-jsonnet").await;
    let app = f.app("");
    f.repo.write(
        "jsonnet-guestbook/params.libsonnet",
        "{\n  containerPort: 80,\n  image: 'registry.k8s.io/pause:3.10',\n  name: 'jsonnet-guestbook-ui',\n  servicePort: 80,\n  type: 'ClusterIP',\n}\n",
    );
    f.repo.write(
        "jsonnet-guestbook/guestbook-ui.jsonnet",
        r#"local params = import 'params.libsonnet';
local labels = { app: params.name, env: std.extVar('env') };

function(replicas)
  [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: params.name, labels: labels },
      spec: {
        ports: [{ port: params.servicePort, targetPort: params.containerPort }],
        selector: { app: params.name },
        type: params.type,
      },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: params.name, labels: labels },
      spec: {
        replicas: std.parseInt(replicas),
        selector: { matchLabels: { app: params.name } },
        template: {
          metadata: { labels: { app: params.name } },
          spec: { containers: [{ image: params.image, name: 'main', ports: [{ containerPort: params.containerPort }] }] },
        },
      },
    },
  ]
"#,
    );
    f.repo.commit("jsonnet guestbook");
    let (_dir, file) = ferry_yaml(&format!(
        "apps:\n- name: {app}\n  source:\n    repo: {}\n    path: jsonnet-guestbook\n    jsonnet:\n      extVars: {{env: staging}}\n      tlas: {{replicas: \"2\"}}\n  destination:\n    namespace: {}\n  wait:\n    timeout: 60s\n",
        f.repo.path(),
        f.ns()
    ));
    let file = file.as_str();
    f.ferry(&["apply", "-f", file])
        .await
        .expect_code(0)
        .expect_stderr("2 object(s) at")
        .expect_stderr("(jsonnet)")
        .expect_stdout(&format!("{app}: all 2 object(s) healthy"));
    let deploy = f
        .get::<Deployment>("jsonnet-guestbook-ui")
        .await
        .expect("Deployment applied");
    assert_eq!(deploy.spec.unwrap().replicas, Some(2));
    assert_eq!(deploy.metadata.labels.unwrap()["env"], "staging");
    let svc = f
        .get::<Service>("jsonnet-guestbook-ui")
        .await
        .expect("Service applied");
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 80);

    // A broken file: exit 2 naming the file and line, nothing changed.
    f.repo.write(
        "jsonnet-guestbook/params.libsonnet",
        "{\n  containerPort: 80,\n  image: ,\n}\n",
    );
    f.repo.commit("break it");
    f.ferry(&["apply", "-f", file])
        .await
        .expect_error(&["params.libsonnet:3:10", "syntax error"]);
    f.finish().await;
}

/// A ferry.yaml of apps where `web` depends on `db`: written as its `apps` entries list
/// them, each app's directory holding one ConfigMap named after the app.
fn dependent_apps(f: &Fixture, apps: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let mut text = String::from("apps:\n");
    for (app, deps) in apps {
        text.push_str(&format!(
            "- name: {app}\n  dependsOn: [{deps}]\n  source:\n    repo: {}\n    path: {app}\n  destination:\n    namespace: {}\n  wait:\n    timeout: 60s\n",
            f.repo.path(),
            f.ns()
        ));
    }
    ferry_yaml(&text)
}

/// `apply --all` applies every app, dependencies first and ties in file order (seen in
/// the order the cluster created their objects), and `diff --all` compares them all.
#[tokio::test]
async fn apply_all_follows_dependencies() {
    let f = Fixture::new("e2e-deps").await;
    let (web, db, docs) = (f.app("-web"), f.app("-db"), f.app("-docs"));
    for app in [&web, &db, &docs] {
        f.repo
            .write(&format!("{app}/cm.yaml"), &configmap(app, &[("app", app)]));
    }
    f.repo.commit("three apps");
    let deps = db.clone();
    let (_dir, file) = dependent_apps(&f, &[(&web, &deps), (&db, ""), (&docs, "")]);

    f.ferry(&["diff", "--all", "-f", &file])
        .await
        .expect_code(1)
        .expect_stdout(&format!("{web}: 1 to create"))
        .expect_stdout(&format!("{docs}: 1 to create"));
    assert!(f.configmaps().await.is_empty(), "diff wrote");

    let run = f.ferry(&["apply", "--all", "-f", &file]).await;
    run.expect_code(0);
    let order: Vec<usize> = [&db, &web, &docs]
        .iter()
        .map(|app| {
            run.stdout
                .find(&format!("{app}: all 1 object(s) healthy"))
                .unwrap()
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{run}");
    let mut created = Vec::new();
    for app in [&web, &db, &docs] {
        let cm = f.get::<ConfigMap>(app).await.expect("applied");
        let rv: u64 = cm.resource_version().unwrap().parse().unwrap();
        created.push((rv, app.clone()));
    }
    created.sort();
    let created: Vec<String> = created.into_iter().map(|(_, a)| a).collect();
    assert_eq!(created, [db.clone(), web.clone(), docs.clone()]);

    f.ferry(&["diff", "--all", "-f", &file])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{db}: in sync"));
    f.finish().await;
}

/// `apply --all` stops at the first app that fails: its dependents and the apps after it
/// are not applied. A cycle or an unknown dependency is refused before anything is written.
#[tokio::test]
async fn apply_all_stops_at_the_first_failure() {
    let f = Fixture::new("e2e-depfail").await;
    let (web, db, docs) = (f.app("-web"), f.app("-db"), f.app("-docs"));
    f.repo.write(
        &format!("{db}/widget.yaml"),
        "apiVersion: widgets.example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec: {}\n",
    );
    for app in [&web, &docs] {
        f.repo
            .write(&format!("{app}/cm.yaml"), &configmap(app, &[("app", app)]));
    }
    f.repo.commit("db is broken");

    let (_dir, file) = dependent_apps(&f, &[(&web, &db), (&db, ""), (&docs, "")]);
    f.ferry(&["apply", "--all", "-f", &file])
        .await
        .expect_error(&[&format!("app {db}"), "Widget"]);
    assert!(f.configmaps().await.is_empty(), "applied after the failure");

    let (_dir, cycle) = dependent_apps(&f, &[(&web, &db), (&db, &web), (&docs, "")]);
    f.ferry(&["apply", "--all", "-f", &cycle])
        .await
        .expect_error(&[&format!("dependency cycle: {web} -> {db} -> {web}")]);
    let (_dir, unknown) = dependent_apps(&f, &[(&web, "nope"), (&docs, "")]);
    f.ferry(&["apply", "--all", "-f", &unknown])
        .await
        .expect_error(&[&format!(
            "app \"{web}\" depends on \"nope\", which is not an app"
        )]);
    assert!(
        f.configmaps().await.is_empty(),
        "written despite a bad file"
    );
    f.finish().await;
}
