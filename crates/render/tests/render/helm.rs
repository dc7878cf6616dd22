use ferry_model::{HelmOptions, Manifest};
use ferry_render::{RenderError, render};
use serde_json::json;

use crate::common::{App, fixtures, no_tools, tools_for, write};

fn chart_app() -> App {
    let mut app = App::new(&fixtures(), "chart");
    app.namespace = Some("team".into());
    app
}

fn summary(ms: &[Manifest]) -> Vec<String> {
    ms.iter()
        .map(|m| format!("{} {}", m.object_ref(), m.origin))
        .collect()
}

#[test]
fn chart_is_templated_with_values_namespace_and_crds() {
    let Some((_serial, tools)) = tools_for(&["helm"]) else {
        return;
    };
    let mut app = chart_app();
    app.kube_version = Some("v1.34.4".into());
    app.api_versions = vec!["example.com/v1".into()];
    app.spec.helm = Some(HelmOptions {
        release_name: Some("web".into()),
        values_files: vec!["values-prod.yaml".into()],
        values: Some(json!({"replicas": 4})),
        include_crds: true,
        ..HelmOptions::default()
    });
    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(
        summary(&ms),
        [
            "CustomResourceDefinition/widgets.example.com crds/widgets.yaml (document 1)",
            "ConfigMap/team/web-config templates/configmap.yaml (document 1)",
            "Deployment/web templates/deployment.yaml (document 1)",
        ],
        "tests (templates/tests) are skipped"
    );
    assert_eq!(
        ms[1].object["data"],
        json!({
            "greeting": "hello from prod", "color": "red", "replicas": "4",
            "kubeVersion": "v1.34.4", "hasWidgets": "true"
        })
    );
    assert_eq!(ms[2].object["spec"]["replicas"], 4);
}

#[test]
fn defaults_use_app_name_and_include_crds() {
    let Some((_serial, tools)) = tools_for(&["helm"]) else {
        return;
    };
    let mut app = chart_app();
    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(ms.len(), 3);
    assert_eq!(ms[1].name(), "demo-config");
    assert_eq!(ms[1].object["data"]["greeting"], "hello");
    assert_eq!(ms[1].object["data"]["hasWidgets"], "false");

    app.spec.helm = Some(HelmOptions {
        include_crds: false,
        ..HelmOptions::default()
    });
    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(
        summary(&ms),
        [
            "ConfigMap/team/demo-config templates/configmap.yaml (document 1)",
            "Deployment/demo templates/deployment.yaml (document 1)",
        ]
    );
}

#[test]
fn template_failure_shows_stderr() {
    let Some((_serial, tools)) = tools_for(&["helm"]) else {
        return;
    };
    let mut app = chart_app();
    app.spec.helm = Some(HelmOptions {
        values: Some(json!({"fail": true})),
        include_crds: true,
        ..HelmOptions::default()
    });
    let err = render(&app.request(), &tools).unwrap_err();
    assert!(
        matches!(err, RenderError::ToolFailed { tool: "helm", .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with("helm failed (exit status: 1): "), "{msg}");
    assert!(msg.contains("boom: the chart was asked to fail"), "{msg}");
}

#[test]
fn values_files_must_stay_inside_the_working_copy() {
    let mut app = App::new(&fixtures().join("chart"), "");
    app.spec.helm = Some(HelmOptions {
        values_files: vec!["../kustomize/base/configmap.yaml".into()],
        include_crds: true,
        ..HelmOptions::default()
    });
    let mut tools = no_tools();
    tools.helm = Some("/nonexistent/helm".into());
    let err = render(&app.request(), &tools).unwrap_err();
    assert!(matches!(err, RenderError::OutsideRoot { .. }), "{err}");

    app.spec.helm.as_mut().unwrap().values_files = vec!["missing.yaml".into()];
    let err = render(&app.request(), &tools).unwrap_err();
    assert!(
        err.to_string().contains("missing.yaml: No such file"),
        "{err}"
    );
}

#[test]
fn unvendored_local_dependencies_are_rejected_before_running_helm() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "Chart.yaml",
        "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n  - name: common\n    version: 1.0.0\n    repository: file://../common\n",
    );
    let app = App::new(root.path(), "");
    let mut tools = no_tools();
    tools.helm = Some("/nonexistent/helm".into());
    let err = render(&app.request(), &tools).unwrap_err();
    assert!(
        err.to_string().ends_with(": dependency \"common\" is missing from charts/: run `helm dependency build` and commit charts/"),
        "{err}"
    );
}
