//! The test bed is a working cluster: controllers, scheduler and kwok run pods, CRDs work,
//! and the control plane is the pinned Kubernetes version.

use std::time::Duration;

use ferry_testkit::{TestNamespace, client, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use serde_json::json;

/// A Deployment becomes Available only if the controller-manager makes its ReplicaSet and
/// pods, the scheduler binds them to nodes and kwok marks them running and ready.
#[tokio::test]
async fn deployment_becomes_available() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "testkit-deploy").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns.name());
    let deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "registry.k8s.io/pause:3.10" }] }
            }
        }
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();

    wait_for(
        "deployment web to have 2 available replicas",
        Duration::from_secs(60),
        || async {
            let status = deployments.get("web").await?.status.unwrap_or_default();
            Ok::<_, kube::Error>((status.available_replicas == Some(2)).then_some(()))
        },
    )
    .await;

    let pods = Api::<Pod>::namespaced(client.clone(), ns.name())
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 2);
    for pod in &pods.items {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        assert!(
            node.is_some_and(|n| n.starts_with("kwok-node-")),
            "pod not on a kwok node: {node:?}"
        );
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.pod_ip.is_some(), "kwok gives running pods an IP");
    }
    ns.cleanup().await;
}

/// A CRD applied with server-side apply becomes Established and serves custom resources.
#[tokio::test]
async fn crd_serves_custom_resources() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "testkit-crd").await;
    // The CRD is cluster-wide: name it after the namespace so that runs never collide.
    let plural = format!("widgets{}", ns.name().replace('-', ""));
    let crd_name = format!("{plural}.testkit.ferry.dev");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": crd_name },
        "spec": {
            "group": "testkit.ferry.dev",
            "scope": "Namespaced",
            "names": { "plural": plural, "singular": plural, "kind": "Widget" },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "properties": { "size": { "type": "integer" } }
                    } }
                } }
            }]
        }
    }))
    .unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.patch(
        &crd_name,
        &PatchParams::apply("ferry-testkit"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();

    wait_for(
        "the CRD to be Established",
        Duration::from_secs(30),
        || async {
            let crd = crds.get(&crd_name).await?;
            let established = ferry_testkit::established(&crd);
            Ok::<_, kube::Error>(established.then_some(()))
        },
    )
    .await;

    let gvk = GroupVersionKind::gvk("testkit.ferry.dev", "v1", "Widget");
    let widgets = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        ns.name(),
        &ApiResource::from_gvk_with_plural(&gvk, &plural),
    );
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "testkit.ferry.dev/v1",
        "kind": "Widget",
        "metadata": { "name": "w1" },
        "spec": { "size": 3 }
    }))
    .unwrap();
    // Right after Established, discovery may briefly lag; retry the create until it lands.
    wait_for(
        "the custom resource to be created",
        Duration::from_secs(10),
        || async {
            widgets
                .create(&PostParams::default(), &widget)
                .await
                .map(Some)
        },
    )
    .await;
    let read = widgets.get("w1").await.unwrap();
    assert_eq!(read.data["spec"]["size"], json!(3));

    ns.cleanup().await;
    crds.delete(&crd_name, &DeleteParams::default())
        .await
        .unwrap();
}

/// Dropping a TestNamespace without `cleanup` (a failed test) still deletes it, also from
/// a current-thread runtime like this one.
#[tokio::test]
async fn dropped_namespace_is_deleted() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "testkit-drop").await;
    let name = ns.name().to_owned();
    drop(ns);
    // Drop returns once the API server accepted the DELETE: the namespace is terminating
    // (the namespace controller empties it) or already gone.
    let left = Api::<Namespace>::all(client).get_opt(&name).await.unwrap();
    assert!(
        left.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
        "namespace {name} is not being deleted"
    );
}

/// The API server reports the version pinned in testbed/versions.env, which build.sh
/// stamps into the binaries with -ldflags.
#[tokio::test]
async fn server_reports_pinned_version() {
    let pinned = include_str!("../../../testbed/versions.env")
        .lines()
        .find_map(|line| line.strip_prefix("K8S_VERSION="))
        .expect("K8S_VERSION in testbed/versions.env");
    let info = client().await.apiserver_version().await.unwrap();
    assert_eq!(info.git_version, pinned);
}

/// Whether `GET http://<addr>/v2/` answers 200 (an OCI registry's API root).
fn registry_answers(addr: &str) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    stream
        .write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_ok()
        && BufReader::new(&stream).read_line(&mut line).is_ok()
        && line.contains(" 200 ")
}

/// `testbed/registry up` starts the pinned OCI registry on loopback and prints its address
/// (again, unchanged, when already up); `down` stops it.
#[test]
fn registry_script_serves_the_pinned_registry() {
    let pinned = include_str!("../../../testbed/versions.env")
        .lines()
        .find_map(|line| line.strip_prefix("REGISTRY_VERSION="))
        .expect("REGISTRY_VERSION in testbed/versions.env");
    let version = std::process::Command::new(ferry_testkit::charts::testbed_binary("registry"))
        .arg("--version")
        .output()
        .expect("registry --version");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(
        version.trim_end().ends_with(&format!(" {pinned}")),
        "{version}"
    );

    let state = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testbed/registry");
    let run = |verb: &str| {
        let out = std::process::Command::new(script)
            .arg(verb)
            .env("FERRY_REGISTRY_STATE", state.path().join("registry"))
            .output()
            .expect("running testbed/registry");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "testbed/registry {verb}: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let up = run("up");
    let addr = up
        .trim_end()
        .strip_prefix("export FERRY_REGISTRY=")
        .unwrap_or_else(|| panic!("unexpected output of up: {up:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(registry_answers(&addr), "no registry on {addr}");
    assert_eq!(run("up"), up, "a second up reuses the running registry");
    run("down");
    assert!(
        !registry_answers(&addr),
        "the registry on {addr} still answers"
    );
    assert!(!state.path().join("registry").exists());
}

/// The test bed's Gitea is the pinned version; it starts with an admin whose token may
/// create a repository, and stops when dropped.
#[tokio::test]
async fn gitea_is_the_pinned_version_and_stops_on_drop() {
    let pinned = include_str!("../../../testbed/versions.env")
        .lines()
        .find_map(|line| line.strip_prefix("GITEA_VERSION="))
        .expect("GITEA_VERSION in testbed/versions.env");
    let forge = ferry_testkit::forge::Gitea::start().await;
    let (status, version) = forge.api(reqwest::Method::GET, "/version", None).await;
    assert_eq!(status, 200);
    assert_eq!(version["version"], pinned.trim_start_matches('v'));
    forge.create_repo("probe").await;
    let (status, repo) = forge
        .api(reqwest::Method::GET, "/repos/ferry/probe", None)
        .await;
    assert_eq!(
        (status, repo["default_branch"].as_str()),
        (200, Some("main"))
    );
    let addr = forge.url().trim_start_matches("http://").to_string();
    drop(forge);
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "gitea still listens on {addr} after drop"
    );
}
