//! Helm charts from a chart repository (served over HTTP by the test) applied by the real
//! `ferry` binary against the test bed, and offline renders that use the cluster ferry last
//! saw for the app.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Fixture, resource};
use ferry_testkit::charts::ChartRepo;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};

/// The podinfo-shaped chart of the render tests: `kubeVersion: ">=1.23.0-0"`, and a
/// ServiceMonitor only where `monitoring.coreos.com/v1/ServiceMonitor` is served.
fn podinfo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../render/tests/fixtures/podinfo")
}

const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";

/// The ServiceMonitor CRD (a minimal schema), applied and established.
async fn service_monitor_crd(f: &Fixture) {
    let crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": SERVICE_MONITOR_CRD},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": "servicemonitors", "singular": "servicemonitor", "kind": "ServiceMonitor"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    });
    f.delete_later(
        ApiResource::erase::<CustomResourceDefinition>(&()),
        None,
        SERVICE_MONITOR_CRD,
    );
    let crds = Api::<CustomResourceDefinition>::all(f.client.clone());
    crds.patch(
        SERVICE_MONITOR_CRD,
        &PatchParams::apply("ferry-test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("applying the ServiceMonitor CRD");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds.get(SERVICE_MONITOR_CRD).await.expect("CRD");
        let established = ferry_testkit::established(&crd);
        if established {
            break;
        }
        assert!(Instant::now() < deadline, "CRD not established in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A ferry.yaml with one app rendering podinfo from `repo` at `version`, values from Git.
fn ferry_file(dir: &Path, f: &Fixture, app: &str, repo: &str, helm_extra: &str) -> String {
    let file = dir.join("ferry.yaml");
    std::fs::write(
        &file,
        format!(
            "apps:
- name: {app}
  source:
    repo: {}
    path: deploy
    helm:
      chart: podinfo
      repo: {repo}
      valuesFiles: [values.yaml]
{helm_extra}
  destination:
    namespace: {}
  wait:
    timeout: 60s
",
            f.repo.path(),
            f.ns()
        ),
    )
    .unwrap();
    file.to_str().unwrap().to_string()
}

#[tokio::test]
async fn apply_a_repository_chart_then_render_it_offline_as_on_the_cluster() {
    let f = Fixture::new("e2e-helm").await;
    let app = f.app("");
    service_monitor_crd(&f).await;
    let charts = ChartRepo::new();
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        charts.publish(&podinfo(), version);
    }
    f.repo.write(
        "deploy/values.yaml",
        "replicaCount: 2\nhpa:\n  enabled: false\n",
    );
    f.repo.commit("podinfo values");
    let dir = tempfile::tempdir().unwrap();
    let file = ferry_file(
        dir.path(),
        &f,
        &app,
        &charts.url(),
        "      version: \">=1.0.0 <2.0.0\"",
    );

    // Never rendered against a cluster: ferry's default version, Helm's own API versions.
    let offline = f.ferry(&["render", "-f", &file]).await;
    offline.expect_code(0).expect_stderr(&format!(
        "helm (no cluster): Kubernetes v1.34.0 and Helm's built-in API versions from ferry's default (no helm.kubeVersion/helm.apiVersions, no cluster recorded for app {app})"
    ));
    assert!(
        !offline.stdout.contains("kind: ServiceMonitor"),
        "{offline}"
    );

    f.ferry(&["apply", "-f", &file])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: all 3 object(s) healthy"));
    let deploy = f
        .get::<Deployment>(&format!("{app}-podinfo"))
        .await
        .expect("the chart's Deployment");
    let labels = deploy.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("helm.sh/chart").map(String::as_str),
        Some("podinfo-1.1.0"),
        "the range picks the highest match"
    );
    assert_eq!(deploy.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let cluster_version = deploy
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .remove("podinfo.dev/kube-version")
        .expect("the chart's kube-version annotation");
    assert!(cluster_version.starts_with("v1.34."), "{cluster_version}");
    let monitors: Api<DynamicObject> = Api::namespaced_with(
        f.client.clone(),
        f.ns(),
        &resource(
            "monitoring.coreos.com/v1",
            "ServiceMonitor",
            "servicemonitors",
        ),
    );
    monitors
        .get(&format!("{app}-podinfo"))
        .await
        .expect("the ServiceMonitor, rendered for the cluster's API versions");

    // Offline again: the cluster just seen, so the same objects as on the cluster.
    let offline = f.ferry(&["render", "-f", &file]).await;
    offline
        .expect_code(0)
        .expect_stderr(&format!(
            "helm (no cluster): Kubernetes {cluster_version} and "
        ))
        .expect_stderr(&format!(
            "from the cluster last seen for app {app} (https://127.0.0.1:"
        ))
        .expect_stdout("kind: ServiceMonitor")
        .expect_stdout(&format!("podinfo.dev/kube-version: {cluster_version}"));

    // A pull-request preview renders both revisions the same way, and says so once.
    let preview = f
        .ferry(&[
            "diff",
            "-f",
            &file,
            "--revision",
            "HEAD",
            "--against",
            "HEAD",
        ])
        .await;
    preview
        .expect_code(0)
        .expect_stderr(&format!("from the cluster last seen for app {app} ("));
    assert_eq!(
        preview.stderr.matches("helm (no cluster)").count(),
        1,
        "{preview}"
    );

    // The app's own fields win offline.
    let pinned = ferry_file(
        dir.path(),
        &f,
        &app,
        &charts.url(),
        "      version: 1.0.0\n      kubeVersion: v1.30.0",
    );
    let offline = f.ferry(&["render", "-f", &pinned]).await;
    offline
        .expect_code(0)
        .expect_stderr("helm (no cluster): Kubernetes v1.30.0 from helm.kubeVersion, ")
        .expect_stdout("helm.sh/chart: podinfo-1.0.0")
        .expect_stdout("podinfo.dev/kube-version: v1.30.0");

    // A version the repository lacks: one line naming chart, repository and version.
    let missing = ferry_file(dir.path(), &f, &app, &charts.url(), "      version: 9.9.9");
    f.ferry(&["apply", "-f", &missing]).await.expect_error(&[
        &format!("chart podinfo version 9.9.9 from {}", charts.url()),
        "not found",
    ]);

    f.finish().await;
}
