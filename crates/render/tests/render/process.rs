use std::time::{Duration, Instant};

use ferry_model::{HelmOptions, KustomizeOptions, RendererKind};
use ferry_render::render;
use serde_json::json;

use crate::common::{App, fixtures, no_tools, script, serial};

/// A fake renderer that prints its arguments, environment and working directory as a ConfigMap.
const ECHO: &str = r#"cat <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: echo
data:
  args: "$*"
  env: "$(env | cut -d= -f1 | grep -v -x -e PWD -e SHLVL -e _ -e OLDPWD | sort | tr '\n' ' ')"
  home: "$HOME"
  helmCache: "$HELM_CACHE_HOME"
  cwd: "$(pwd)"
EOF"#;

fn chart_app() -> App {
    let mut app = App::new(&fixtures(), "chart");
    app.namespace = Some("team".into());
    app
}

#[test]
fn missing_binaries_have_one_clear_message() {
    let err = render(&chart_app().request(), &no_tools()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "helm not found: install it (testbed/build.sh installs a pinned one) or set FERRY_HELM"
    );
    let app = App::new(&fixtures(), "kustomize/base");
    let err = render(&app.request(), &no_tools()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kustomize not found: install it (testbed/build.sh installs a pinned one) or set FERRY_KUSTOMIZE"
    );
}

#[test]
fn unstartable_binary_is_named() {
    let mut tools = no_tools();
    tools.helm = Some("/nonexistent/helm".into());
    let err = render(&chart_app().request(), &tools).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot run helm (/nonexistent/helm): No such file or directory (os error 2)"
    );
}

#[test]
fn helm_gets_its_arguments_and_a_clean_environment() {
    let _serial = serial();
    let bin = tempfile::tempdir().unwrap();
    let mut tools = no_tools();
    tools.helm = Some(script(bin.path(), "helm", ECHO));
    let mut app = chart_app();
    app.kube_version = Some("v1.34.4".into());
    app.api_versions = vec!["a.example/v1".into(), "b.example/v2".into()];
    app.spec.helm = Some(HelmOptions {
        release_name: None,
        values_files: vec!["values-prod.yaml".into()],
        values: Some(json!({"replicas": 2})),
        include_crds: true,
        ..HelmOptions::default()
    });
    let ms = render(&app.request(), &tools).unwrap();
    let data = &ms[0].object["data"];
    let chart = fixtures().join("chart").canonicalize().unwrap();
    let args = data["args"].as_str().unwrap();
    let expected_start = format!(
        "template demo {0} --skip-tests --namespace team --include-crds --values {0}/values-prod.yaml --values /",
        chart.display()
    );
    assert!(args.starts_with(&expected_start), "{args}");
    assert!(
        args.ends_with(
            ".json --kube-version v1.34.4 --api-versions a.example/v1 --api-versions b.example/v2"
        ),
        "{args}"
    );
    assert_eq!(
        data["env"],
        "HELM_CACHE_HOME HELM_CONFIG_HOME HELM_DATA_HOME HOME PATH "
    );
    let home = data["home"].as_str().unwrap();
    assert_ne!(Some(home), std::env::var("HOME").ok().as_deref());
    assert!(data["helmCache"].as_str().unwrap().starts_with(home));
    assert_eq!(
        data["cwd"],
        fixtures().canonicalize().unwrap().to_str().unwrap()
    );
    assert!(
        !std::path::Path::new(home).exists(),
        "the scratch home is removed"
    );
}

#[test]
fn kustomize_gets_its_arguments() {
    let _serial = serial();
    let bin = tempfile::tempdir().unwrap();
    let mut tools = no_tools();
    tools.kustomize = Some(script(bin.path(), "kustomize", ECHO));
    tools.helm = Some("/opt/helm".into());
    let mut app = App::new(&fixtures(), "kustomize/base");
    app.spec.kustomize = Some(KustomizeOptions {
        load_restrictor: None,
        enable_helm: true,
    });
    let dir = fixtures().join("kustomize/base").canonicalize().unwrap();
    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(
        ms[0].object["data"]["args"],
        format!(
            "build {} --load-restrictor LoadRestrictionsRootOnly --enable-helm --helm-command /opt/helm",
            dir.display()
        )
    );
    assert_eq!(ms[0].origin.file, "kustomize");

    let kubectl_dir = tempfile::tempdir().unwrap();
    tools.kustomize = Some(script(kubectl_dir.path(), "kubectl", ECHO));
    app.spec.kustomize = None;
    let ms = render(&app.request(), &tools).unwrap();
    assert_eq!(
        ms[0].object["data"]["args"],
        format!(
            "kustomize {} --load-restrictor LoadRestrictionsRootOnly",
            dir.display()
        )
    );
}

#[test]
fn failure_shows_the_end_of_stderr_on_one_line() {
    let _serial = serial();
    let bin = tempfile::tempdir().unwrap();
    let mut tools = no_tools();
    let body = "for i in 1 2 3 4 5 6 7 8 9 10; do echo \"progress $i\" >&2; done\necho 'Error: something broke' >&2\nexit 3";
    tools.helm = Some(script(bin.path(), "helm", body));
    let err = render(&chart_app().request(), &tools).unwrap_err();
    assert_eq!(
        err.to_string(),
        "helm failed (exit status: 3): progress 4 | progress 5 | progress 6 | progress 7 | progress 8 | progress 9 | progress 10 | Error: something broke"
    );
}

#[test]
fn timeout_kills_the_renderer_and_its_children() {
    let _serial = serial();
    let bin = tempfile::tempdir().unwrap();
    let pid_file = bin.path().join("child.pid");
    let mut tools = no_tools();
    tools.timeout = Duration::from_secs(1);
    let body = format!("sleep 30 &\necho $! > {}\nwait", pid_file.display());
    tools.helm = Some(script(bin.path(), "helm", &body));
    let started = Instant::now();
    let err = render(&chart_app().request(), &tools).unwrap_err();
    assert_eq!(
        err.to_string(),
        "helm did not finish within 1s and was killed"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = format!("/proc/{}", pid.trim());
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&proc_dir).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !std::path::Path::new(&proc_dir).exists(),
        "the sleeping child was killed"
    );
}

#[test]
fn output_cap_kills_the_renderer() {
    let _serial = serial();
    let bin = tempfile::tempdir().unwrap();
    let mut tools = no_tools();
    tools.max_output = 10_000;
    tools.kustomize = Some(script(bin.path(), "kustomize", "yes 'a: b'"));
    let mut app = App::new(&fixtures(), "chart");
    app.spec.renderer = RendererKind::Kustomize;
    let started = Instant::now();
    let err = render(&app.request(), &tools).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kustomize output exceeds the limit of 10000 bytes"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn renderer_output_errors_name_the_renderer() {
    let _serial = serial();
    let bin = tempfile::tempdir().unwrap();
    let mut tools = no_tools();
    tools.kustomize = Some(script(bin.path(), "kustomize", "printf 'a: 1\\nb: [\\n'"));
    let app = App::new(&fixtures(), "kustomize/base");
    let err = render(&app.request(), &tools).unwrap_err();
    assert!(err.to_string().starts_with("kustomize:"), "{err}");
}
