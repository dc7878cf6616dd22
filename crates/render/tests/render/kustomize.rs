use ferry_model::{KustomizeOptions, RendererKind};
use ferry_render::{Kustomize, RenderError, Renderer, render};
use ferry_testkit::copy_dir;

use crate::common::{App, fixtures, real_tools, require, serial, tools_for, write};

fn summary(ms: &[ferry_model::Manifest]) -> Vec<String> {
    ms.iter()
        .map(|m| format!("{} {}", m.object_ref(), m.origin))
        .collect()
}

#[test]
fn overlay_is_built() {
    let Some((_serial, tools)) = tools_for(&["kustomize"]) else {
        return;
    };
    let app = App::new(&fixtures(), "kustomize/overlays/prod");
    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(
        summary(&ms),
        [
            "ConfigMap/prod/prod-web-config kustomize (document 1)",
            "Deployment/prod/prod-web kustomize (document 2)",
        ]
    );
    assert_eq!(ms[1].object["spec"]["replicas"], 3);
}

#[test]
fn kubectl_kustomize_builds_too() {
    let _serial = serial();
    let mut tools = real_tools();
    tools.kustomize = which("kubectl");
    if !require("kubectl", tools.kustomize.as_deref()) {
        return;
    }
    let app = App::new(&fixtures(), "kustomize/overlays/prod");
    let ms = Kustomize::new(tools).render(&app.request()).unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].name(), "prod-web-config");
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[test]
fn load_restrictor_is_passed() {
    let Some((_serial, tools)) = tools_for(&["kustomize"]) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "shared/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n",
    );
    write(
        root.path(),
        "app/kustomization.yaml",
        "resources:\n  - ../shared/cm.yaml\n",
    );
    let mut app = App::new(root.path(), "app");

    let err = render(&app.request(), &tools).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("kustomize failed (exit status: 1): "),
        "{msg}"
    );
    assert!(
        msg.contains("security; file") || msg.contains("is not in or below"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");

    app.spec.kustomize = Some(KustomizeOptions {
        load_restrictor: Some("LoadRestrictionsNone".into()),
        enable_helm: false,
    });
    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(ms[0].name(), "shared");
}

#[test]
fn failure_shows_stderr() {
    let Some((_serial, tools)) = tools_for(&["kustomize"]) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "kustomization.yaml",
        "resources:\n  - missing.yaml\n",
    );
    let app = App::new(root.path(), "");
    let err = render(&app.request(), &tools).unwrap_err();
    assert!(
        matches!(
            err,
            RenderError::ToolFailed {
                tool: "kustomize",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("missing.yaml"), "{err}");
}

#[test]
fn invalid_load_restrictor_is_rejected() {
    let root = tempfile::tempdir().unwrap();
    let mut app = App::new(root.path(), "");
    app.spec.renderer = RendererKind::Kustomize;
    app.spec.kustomize = Some(KustomizeOptions {
        load_restrictor: Some("Anything".into()),
        enable_helm: false,
    });
    let mut tools = crate::common::no_tools();
    tools.kustomize = Some("/nonexistent/kustomize".into());
    let err = render(&app.request(), &tools).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kustomize.loadRestrictor: \"Anything\" is not one of LoadRestrictionsRootOnly, LoadRestrictionsNone"
    );
}

#[test]
fn helm_charts_need_enable_helm() {
    let Some((_serial, tools)) = tools_for(&["kustomize", "helm"]) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    copy_dir(
        &fixtures().join("chart"),
        &root.path().join("app/charts/demo"),
    );
    write(
        root.path(),
        "app/kustomization.yaml",
        "helmCharts:\n  - name: demo\n    releaseName: inflated\n    valuesInline:\n      greeting: from kustomize\n",
    );
    let mut app = App::new(root.path(), "app");

    let err = render(&app.request(), &tools).unwrap_err();
    assert!(err.to_string().contains("--enable-helm"), "{err}");

    app.spec.kustomize = Some(KustomizeOptions {
        load_restrictor: None,
        enable_helm: true,
    });
    let ms = render(&app.request(), &tools).unwrap();
    let cm = ms.iter().find(|m| m.kind() == "ConfigMap").unwrap();
    assert_eq!(cm.name(), "inflated-config");
    assert_eq!(cm.object["data"]["greeting"], "from kustomize");
}
