//! The `examples/llm-app` infrastructure, rendered with the real Kustomize and Helm
//! binaries: each environment's output is compared exactly with a golden file in
//! `tests/golden/`, and the differences between environments are checked one by one.
//!
//! The Kustomize overlays are rendered the way ferry renders the apps of the example's
//! `ferry.yaml` (its source spec and destination namespace); the Helm chart with each
//! `infra-helm/values-<env>.yaml`. Regenerate the golden files after an intended change
//! with `UPDATE_GOLDEN=1 cargo test -p ferry-render --test llm_app` and review the diff.
//! A missing helm or kustomize fails the tests under `CI=true`.

#[path = "render/common.rs"]
#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use ferry_model::{FerryFile, HelmOptions, Manifest, SourceSpec};
use ferry_render::{RenderRequest, Tools, render, to_yaml};
use serde_json::{Value, json};

use common::{manifest_dir, tools_for};

/// The environments, in promotion order.
const ENVS: [&str; 3] = ["dev", "staging", "production"];

/// What differs between the environments, as both flavours of the infrastructure must
/// render it.
struct Expected {
    env: &'static str,
    namespace: &'static str,
    replicas: u64,
    tag: &'static str,
    model: &'static str,
    log_level: &'static str,
    max_tokens: &'static str,
    resources: Value,
    /// A PodDisruptionBudget and topology spread constraints.
    disruption_budget: bool,
}

fn expected(env: &str) -> Expected {
    match env {
        "dev" => Expected {
            env: "dev",
            namespace: "llm-dev",
            replicas: 1,
            tag: "0.3.0",
            model: "echo-small",
            log_level: "DEBUG",
            max_tokens: "128",
            resources: json!({"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "192Mi"}}),
            disruption_budget: false,
        },
        "staging" => Expected {
            env: "staging",
            namespace: "llm-staging",
            replicas: 2,
            tag: "0.2.1",
            model: "echo-medium",
            log_level: "INFO",
            max_tokens: "256",
            resources: json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}),
            disruption_budget: false,
        },
        "production" => Expected {
            env: "production",
            namespace: "llm-production",
            replicas: 3,
            tag: "0.2.0",
            model: "echo-large",
            log_level: "WARNING",
            max_tokens: "512",
            resources: json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}),
            disruption_budget: true,
        },
        other => panic!("no environment {other}"),
    }
}

/// `examples/llm-app`, the root of the example's repository.
fn example() -> PathBuf {
    let path = manifest_dir().join("../../examples/llm-app");
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn golden_dir() -> PathBuf {
    manifest_dir().join("tests/golden")
}

/// Renders `dir` (relative to the example root) as ferry would for an app with `spec`
/// and destination `namespace`.
fn render_dir(
    app: &str,
    dir: &str,
    namespace: &str,
    spec: &SourceSpec,
    tools: &Tools,
) -> Vec<Manifest> {
    let root = example();
    let dir = root.join(dir);
    let request = RenderRequest {
        app,
        dir: &dir,
        root: &root,
        namespace: Some(namespace),
        spec,
        kube_version: None,
        api_versions: &[],
    };
    render(&request, tools).unwrap_or_else(|e| panic!("rendering {}: {e}", dir.display()))
}

/// The Kustomize overlay of `env`, rendered from the `llm-<env>` app of `ferry.yaml`.
fn render_kustomize(env: &str, tools: &Tools) -> Vec<Manifest> {
    let path = example().join("ferry.yaml");
    let file = FerryFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let name = format!("llm-{env}");
    let app = file.app(&name, &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(app.spec.source.path, format!("infra/{env}"));
    let namespace = app.spec.destination.namespace.as_deref();
    assert_eq!(namespace, Some(expected(env).namespace));
    render_dir(
        &name,
        &app.spec.source.path,
        namespace.unwrap(),
        &app.spec.source,
        tools,
    )
}

/// The Helm chart with `values-<env>.yaml`, released as `llm-app` in `llm-<env>`.
fn render_helm(env: &str, tools: &Tools) -> Vec<Manifest> {
    let spec = SourceSpec {
        repo: ".".into(),
        path: "infra-helm/chart".into(),
        helm: Some(HelmOptions {
            release_name: Some("llm-app".into()),
            values_files: vec![format!("../values-{env}.yaml")],
            ..HelmOptions::default()
        }),
        ..SourceSpec::default()
    };
    render_dir(
        &format!("llm-{env}"),
        &spec.path,
        expected(env).namespace,
        &spec,
        tools,
    )
}

/// Compares `to_yaml(manifests)` with `golden/<name>.yaml`, or writes it when
/// `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, manifests: &[Manifest]) {
    let path = golden_dir().join(format!("{name}.yaml"));
    let actual = to_yaml(manifests);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (write it with UPDATE_GOLDEN=1 cargo test -p ferry-render --test llm_app)",
            path.display()
        )
    });
    if actual != golden {
        let first = actual
            .lines()
            .zip(golden.lines())
            .position(|(a, g)| a != g)
            .unwrap_or_else(|| actual.lines().count().min(golden.lines().count()));
        panic!(
            "{name}: rendered output differs from {} at line {}:\n  golden:   {:?}\n  rendered: {:?}\n\
             (if the change is intended: UPDATE_GOLDEN=1 cargo test -p ferry-render --test llm_app)\n\
             --- rendered:\n{actual}",
            path.display(),
            first + 1,
            golden.lines().nth(first).unwrap_or("<end of file>"),
            actual.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}

fn find<'a>(manifests: &'a [Manifest], kind: &str) -> Option<&'a Manifest> {
    manifests.iter().find(|m| m.kind() == kind)
}

fn get<'a>(manifests: &'a [Manifest], kind: &str) -> &'a Manifest {
    find(manifests, kind).unwrap_or_else(|| panic!("no {kind} in {:?}", kinds(manifests)))
}

fn kinds(manifests: &[Manifest]) -> BTreeSet<String> {
    manifests.iter().map(|m| m.kind().to_string()).collect()
}

/// Checks what an environment's manifests must say, for either flavour.
fn check_environment(flavour: &str, manifests: &[Manifest], want: &Expected) {
    let context = format!("{flavour} {}", want.env);
    let mut want_kinds: BTreeSet<String> = ["ServiceAccount", "ConfigMap", "Service", "Deployment"]
        .map(String::from)
        .into();
    if want.disruption_budget {
        want_kinds.insert("PodDisruptionBudget".into());
    }
    assert_eq!(kinds(manifests), want_kinds, "{context}: kinds");
    assert_eq!(manifests.len(), want_kinds.len(), "{context}: one of each");

    for m in manifests {
        assert_eq!(
            m.namespace(),
            Some(want.namespace),
            "{context}: namespace of {}",
            m.object_ref()
        );
        assert_eq!(
            m.object["metadata"]["labels"]["app.kubernetes.io/environment"],
            want.env,
            "{context}: environment label of {}",
            m.object_ref()
        );
        for label in ["app.kubernetes.io/name", "app.kubernetes.io/part-of"] {
            assert_eq!(
                m.object["metadata"]["labels"][label],
                "llm-app",
                "{context}: label {label} of {}",
                m.object_ref()
            );
        }
    }

    let deployment = &get(manifests, "Deployment").object;
    assert_eq!(deployment["metadata"]["name"], "llm-app", "{context}");
    assert_eq!(
        deployment["spec"]["replicas"], want.replicas,
        "{context}: replicas"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        format!("registry.example/llm-app:{}", want.tag),
        "{context}: image"
    );
    assert_eq!(
        container["resources"], want.resources,
        "{context}: resources"
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(pod["serviceAccountName"], "llm-app", "{context}");
    assert_eq!(
        pod.get("topologySpreadConstraints").is_some(),
        want.disruption_budget,
        "{context}: topology spread constraints only in production"
    );

    let config = get(manifests, "ConfigMap");
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"],
        config.name(),
        "{context}: the Deployment reads the ConfigMap"
    );
    let data = &config.object["data"];
    assert_eq!(data["MODEL_NAME"], want.model, "{context}: MODEL_NAME");
    assert_eq!(data["LOG_LEVEL"], want.log_level, "{context}: LOG_LEVEL");
    assert_eq!(data["MAX_TOKENS"], want.max_tokens, "{context}: MAX_TOKENS");

    let service = &get(manifests, "Service").object;
    let selector = service["spec"]["selector"].as_object().unwrap();
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector {
        assert_eq!(
            &pod_labels[key], value,
            "{context}: the Service selects the pods"
        );
    }
    if let Some(pdb) = find(manifests, "PodDisruptionBudget") {
        assert_eq!(pdb.object["spec"]["minAvailable"], 2, "{context}");
        for (key, value) in pdb.object["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
        {
            assert_eq!(
                &pod_labels[key], value,
                "{context}: the PDB selects the pods"
            );
        }
    }
}

#[test]
fn kustomize_overlays_match_golden_files() {
    let Some((_serial, tools)) = tools_for(&["kustomize"]) else {
        return;
    };
    for env in ENVS {
        let manifests = render_kustomize(env, &tools);
        check_environment("kustomize", &manifests, &expected(env));
        check_golden(&format!("llm-app-kustomize-{env}"), &manifests);
    }
}

#[test]
fn helm_values_match_golden_files() {
    let Some((_serial, tools)) = tools_for(&["helm"]) else {
        return;
    };
    for env in ENVS {
        let manifests = render_helm(env, &tools);
        check_environment("helm", &manifests, &expected(env));
        check_golden(&format!("llm-app-helm-{env}"), &manifests);
    }
}

#[test]
fn environments_differ_only_where_intended() {
    let Some((_serial, tools)) = tools_for(&["kustomize"]) else {
        return;
    };
    let rendered: Vec<Vec<Manifest>> = ENVS.iter().map(|e| render_kustomize(e, &tools)).collect();
    let deployment = |i: usize| &get(&rendered[i], "Deployment").object;
    let replicas: Vec<&Value> = (0..3).map(|i| &deployment(i)["spec"]["replicas"]).collect();
    assert_eq!(replicas, [1, 2, 3]);
    let images: Vec<&Value> = (0..3)
        .map(|i| &deployment(i)["spec"]["template"]["spec"]["containers"][0]["image"])
        .collect();
    assert_eq!(
        images,
        [
            "registry.example/llm-app:0.3.0",
            "registry.example/llm-app:0.2.1",
            "registry.example/llm-app:0.2.0"
        ]
    );
    let namespaces: Vec<Option<&str>> = (0..3).map(|i| rendered[i][0].namespace()).collect();
    assert_eq!(
        namespaces,
        [Some("llm-dev"), Some("llm-staging"), Some("llm-production")]
    );

    // Blank out what is meant to differ; the rest (probes, security context, ports,
    // strategy, the system prompt) must be the same everywhere.
    let normalised = |ms: &[Manifest]| -> Vec<Value> {
        ms.iter()
            .filter(|m| m.kind() != "PodDisruptionBudget")
            .map(|m| {
                let mut o = m.object.clone();
                o["metadata"]["namespace"] = Value::Null;
                o["metadata"]["labels"]["app.kubernetes.io/environment"] = Value::Null;
                match m.kind() {
                    "ConfigMap" => {
                        o["metadata"]["name"] = Value::Null;
                        for key in ["MODEL_NAME", "LOG_LEVEL", "MAX_TOKENS", "TEMPERATURE"] {
                            o["data"][key] = Value::Null;
                        }
                    }
                    "Deployment" => {
                        o["spec"]["replicas"] = Value::Null;
                        let pod = &mut o["spec"]["template"];
                        pod["metadata"]["labels"]["app.kubernetes.io/environment"] = Value::Null;
                        pod["spec"]["topologySpreadConstraints"] = Value::Null;
                        let container = &mut pod["spec"]["containers"][0];
                        container["image"] = Value::Null;
                        container["resources"] = Value::Null;
                        container["envFrom"] = Value::Null;
                    }
                    _ => {}
                }
                o
            })
            .collect()
    };
    let dev = normalised(&rendered[0]);
    for (i, env) in ENVS.iter().enumerate().skip(1) {
        assert_eq!(
            normalised(&rendered[i]),
            dev,
            "{env} differs from dev beyond namespace, replicas, image tag, resources and model settings"
        );
    }
}

#[test]
fn helm_chart_and_overlays_agree() {
    let Some((_serial, tools)) = tools_for(&["kustomize", "helm"]) else {
        return;
    };
    for env in ENVS {
        let kustomize = render_kustomize(env, &tools);
        let helm = render_helm(env, &tools);
        assert_eq!(kinds(&kustomize), kinds(&helm), "{env}: kinds");
        assert_eq!(
            get(&kustomize, "ConfigMap").object["data"],
            get(&helm, "ConfigMap").object["data"],
            "{env}: model settings"
        );
        let container = |ms: &[Manifest]| {
            let mut c =
                get(ms, "Deployment").object["spec"]["template"]["spec"]["containers"][0].clone();
            // Kustomize appends a content hash to the ConfigMap's name; Helm rolls the
            // pods with a checksum annotation instead.
            c["envFrom"] = Value::Null;
            c
        };
        assert_eq!(container(&kustomize), container(&helm), "{env}: container");
        let pod_spec = |ms: &[Manifest]| {
            let mut s = get(ms, "Deployment").object["spec"]["template"]["spec"].clone();
            s["containers"] = Value::Null;
            // Helm's selector labels add app.kubernetes.io/instance.
            s["topologySpreadConstraints"] = Value::Null;
            s
        };
        assert_eq!(pod_spec(&kustomize), pod_spec(&helm), "{env}: pod spec");
    }
}
