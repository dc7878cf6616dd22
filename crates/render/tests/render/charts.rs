//! Helm against real chart sources: the podinfo-shaped fixture's `kubeVersion` and
//! `.Capabilities` branches, charts from a chart repository served over HTTP by the test
//! and from a real OCI registry (the test bed's `registry`), by exact version and by
//! range, and a local chart's dependencies built from the HTTP repository.

use std::path::Path;

use ferry_model::{HelmOptions, Manifest};
use ferry_render::{RenderError, Tools, render};
use ferry_testkit::charts::{ChartRepo, Registry, helm};

use crate::common::{App, fixtures, real_tools, require, serial, write};

/// The real binaries with a chart cache of their own.
fn tools(cache: &Path) -> Option<Tools> {
    let mut tools = real_tools();
    tools.chart_cache = cache.to_path_buf();
    require("helm", tools.helm.as_deref()).then_some(tools)
}

fn kinds(ms: &[Manifest]) -> Vec<String> {
    ms.iter().map(|m| m.object_ref().to_string()).collect()
}

fn deployment(ms: &[Manifest]) -> &Manifest {
    ms.iter()
        .find(|m| m.kind() == "Deployment")
        .expect("a Deployment")
}

/// The `helm.sh/chart` label of the Deployment: `<chart>-<version>`.
fn chart_label(ms: &[Manifest]) -> String {
    deployment(ms).object["metadata"]["labels"]["helm.sh/chart"]
        .as_str()
        .unwrap()
        .to_string()
}

fn podinfo() -> std::path::PathBuf {
    fixtures().join("podinfo")
}

/// An app directory (a working copy) holding only a values file, rendering `chart` from
/// `repo` at `version`.
fn remote_app(root: &Path, repo: &str, version: &str) -> App {
    write(root, "deploy/values.yaml", "ui:\n  message: from git\n");
    let mut app = App::new(root, "deploy");
    app.namespace = Some("web".into());
    app.spec.helm = Some(HelmOptions {
        chart: Some("podinfo".into()),
        repo: Some(repo.into()),
        version: Some(version.into()),
        values_files: vec!["values.yaml".into()],
        ..HelmOptions::default()
    });
    app
}

fn set_version(app: &mut App, version: &str) {
    app.spec.helm.as_mut().unwrap().version = Some(version.into());
}

#[test]
fn kube_version_constraint_and_capabilities_follow_the_given_cluster() {
    let _serial = serial();
    let cache = tempfile::tempdir().unwrap();
    let Some(tools) = tools(cache.path()) else {
        return;
    };
    let mut app = App::new(&fixtures(), "podinfo");

    // No version given: helm's own default, which the test bed's helm (built with the
    // ldflags of official releases) has at its client-go's minor, not v1.20.
    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(
        deployment(&ms).object["metadata"]["annotations"]["podinfo.dev/kube-version"],
        "v1.34.0"
    );
    assert_eq!(
        kinds(&ms),
        [
            "Service/demo-podinfo",
            "Deployment/demo-podinfo",
            "HorizontalPodAutoscaler/demo-podinfo"
        ]
    );

    app.kube_version = Some("v1.22.0".into());
    let err = render(&app.request(), &tools).unwrap_err().to_string();
    assert!(
        err.contains(
            "chart requires kubeVersion: >=1.23.0-0 which is incompatible with Kubernetes v1.22.0"
        ),
        "{err}"
    );

    app.kube_version = Some("v1.31.2".into());
    app.api_versions = vec![
        "monitoring.coreos.com/v1".into(),
        "monitoring.coreos.com/v1/ServiceMonitor".into(),
    ];
    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(
        deployment(&ms).object["metadata"]["annotations"]["podinfo.dev/kube-version"],
        "v1.31.2"
    );
    let monitor = ms.iter().find(|m| m.kind() == "ServiceMonitor");
    assert_eq!(
        monitor.map(|m| m.origin.to_string()).as_deref(),
        Some("templates/servicemonitor.yaml (document 1)")
    );
}

#[test]
fn charts_from_an_http_repository_by_version_and_range() {
    let _serial = serial();
    let cache = tempfile::tempdir().unwrap();
    let Some(tools) = tools(cache.path()) else {
        return;
    };
    let repo = ChartRepo::new();
    for version in ["1.0.0", "1.2.0", "1.10.0", "2.0.0"] {
        repo.publish(&podinfo(), version);
    }
    let root = tempfile::tempdir().unwrap();
    let mut app = remote_app(root.path(), &repo.url(), "1.2.0");

    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(chart_label(&ms), "podinfo-1.2.0");
    let env = &deployment(&ms).object["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env[1]["value"], "from git",
        "values files come from the app directory"
    );
    assert_eq!(
        deployment(&ms).origin.to_string(),
        "templates/deployment.yaml (document 1)"
    );

    // An exact version is served from the cache: the repository is not asked again.
    let asked = repo.server().requests();
    let again = render(&app.request(), &tools).unwrap();
    assert_eq!(chart_label(&again), "podinfo-1.2.0");
    assert_eq!(
        repo.server().requests(),
        asked,
        "a cached exact version is not fetched"
    );

    for range in ["^1.0.0", ">=1.0.0 <2.0.0"] {
        set_version(&mut app, range);
        let ms = render(&app.request(), &tools).unwrap();
        assert_eq!(
            chart_label(&ms),
            "podinfo-1.10.0",
            "{range} picks the highest match"
        );
    }

    set_version(&mut app, "9.9.9");
    let err = render(&app.request(), &tools).unwrap_err();
    assert!(matches!(err, RenderError::Pull { .. }), "{err}");
    let msg = err.to_string();
    let start = format!(
        "chart podinfo version 9.9.9 from {}: helm failed",
        repo.url()
    );
    assert!(msg.starts_with(&start), "{msg}");
    assert!(
        msg.contains("chart \"podinfo\" version \"9.9.9\" not found"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn concurrent_renders_pull_a_chart_once() {
    let _serial = serial();
    let first = tempfile::tempdir().unwrap();
    let Some(tools) = tools(first.path()) else {
        return;
    };
    let repo = ChartRepo::new();
    repo.publish(&podinfo(), "3.0.0");
    let root = tempfile::tempdir().unwrap();
    let app = remote_app(root.path(), &repo.url(), "3.0.0");
    render(&app.request(), &tools).unwrap();
    let one_pull = repo.server().requests();
    assert!(one_pull > 0);

    let shared = tempfile::tempdir().unwrap();
    let mut tools = tools;
    tools.chart_cache = shared.path().to_path_buf();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let ms = render(&app.request(), &tools).unwrap();
                assert_eq!(chart_label(&ms), "podinfo-3.0.0");
            });
        }
    });
    assert_eq!(
        repo.server().requests(),
        2 * one_pull,
        "the renders waited on the chart's lock and the later ones took the cached archive"
    );
    let archives: Vec<_> = walk(shared.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tgz"))
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    assert!(archives[0].ends_with("podinfo-3.0.0.tgz"));
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn charts_from_an_oci_registry_by_version_and_range() {
    let _serial = serial();
    let cache = tempfile::tempdir().unwrap();
    let Some(tools) = tools(cache.path()) else {
        return;
    };
    let registry = Registry::start();
    for version in ["1.0.0", "1.3.0", "2.0.0"] {
        registry.push_chart(&podinfo(), version, "charts");
    }
    let url = format!("oci://{}/charts", registry.host());
    let root = tempfile::tempdir().unwrap();
    let mut app = remote_app(root.path(), &url, "1.0.0");

    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(chart_label(&ms), "podinfo-1.0.0");
    assert_eq!(
        kinds(&ms)[0],
        "Service/demo-podinfo",
        "the release is the app name"
    );

    for range in ["^1.0.0", ">=1.0.0 <2.0.0"] {
        set_version(&mut app, range);
        let ms = render(&app.request(), &tools).unwrap();
        assert_eq!(
            chart_label(&ms),
            "podinfo-1.3.0",
            "{range} picks the highest match"
        );
    }

    set_version(&mut app, "1.1.0");
    let msg = render(&app.request(), &tools).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "chart podinfo version 1.1.0 from {url}: helm failed"
        )),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn dependencies_are_built_from_an_http_repository() {
    let _serial = serial();
    let cache = tempfile::tempdir().unwrap();
    let Some(tools) = tools(cache.path()) else {
        return;
    };
    let repo = ChartRepo::new();
    for version in ["1.0.0", "1.4.0", "2.0.0"] {
        repo.publish(&podinfo(), version);
    }
    let root = tempfile::tempdir().unwrap();
    let chart = |version: &str| {
        format!(
            "apiVersion: v2\nname: shop\nversion: 0.3.0\nkubeVersion: \">=1.23.0-0\"\ndependencies:\n  - name: podinfo\n    version: \"{version}\"\n    repository: {}\n",
            repo.url()
        )
    };
    write(root.path(), "shop/Chart.yaml", &chart(">=1.0.0 <2.0.0"));
    write(
        root.path(),
        "shop/templates/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-shop\ndata:\n  backend: {{ .Release.Name }}-podinfo\n",
    );
    write(
        root.path(),
        "shop/values.yaml",
        "podinfo:\n  hpa:\n    enabled: false\n",
    );
    let mut app = App::new(root.path(), "shop");

    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(
        chart_label(&ms),
        "podinfo-1.4.0",
        "the range picks the highest match"
    );
    assert_eq!(
        deployment(&ms).origin.to_string(),
        "charts/podinfo/templates/deployment.yaml (document 1)"
    );
    assert!(
        ms.iter().all(|m| m.kind() != "HorizontalPodAutoscaler"),
        "the parent's values reach the dependency"
    );
    assert!(
        !root.path().join("shop/charts").exists(),
        "the working copy is not written"
    );

    // Pinned by a lock file (as public charts commit it): built once, then from the cache.
    let home = tempfile::tempdir().unwrap();
    write(root.path(), "shop/Chart.yaml", &chart("~1.0.0"));
    helm(
        home.path(),
        &[
            "dependency",
            "update",
            root.path().join("shop").to_str().unwrap(),
        ],
    );
    std::fs::remove_dir_all(root.path().join("shop/charts")).unwrap();
    app.namespace = Some("shop".into());
    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(chart_label(&ms), "podinfo-1.0.0");
    let asked = repo.server().requests();
    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(chart_label(&ms), "podinfo-1.0.0");
    assert_eq!(
        repo.server().requests(),
        asked,
        "pinned dependencies come from the cache"
    );

    write(root.path(), "shop/Chart.yaml", &chart("7.0.0"));
    std::fs::remove_file(root.path().join("shop/Chart.lock")).unwrap();
    let msg = render(&app.request(), &tools).unwrap_err().to_string();
    assert!(
        msg.contains(&format!(
            "building dependencies (podinfo 7.0.0 from {}): helm failed",
            repo.url()
        )),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}
