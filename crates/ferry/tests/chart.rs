//! `charts/ferry`: `helm lint` with every values file of `ci/`, a render test per values
//! file, the chart and `ferry install` producing the same objects for the same settings,
//! and ferry deploying its own chart on the test bed with `ferry apply`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::Fixture;
use ferry_testkit::charts::helm_output;
use ferry_testkit::{copy_dir, workspace_root};
use kube::api::ApiResource;
use serde_json::{Value, json};

fn chart() -> PathBuf {
    workspace_root().join("charts/ferry")
}

/// `helm args…` with a fresh home, whatever its exit status.
fn helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    helm_output(home.path(), args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Parses a multi-document YAML stream into its objects.
fn objects(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .map(|doc| doc.trim_start_matches("---"))
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{e}: {doc}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `helm template ferry charts/ferry -n <ns> --include-crds` with these values files
/// (relative to the chart) and `--set`s, by `Kind/name`.
fn render(ns: &str, files: &[&str], sets: &[&str]) -> BTreeMap<String, Value> {
    let chart = chart();
    let mut args = vec![
        "template".to_string(),
        "ferry".into(),
        chart.display().to_string(),
        "-n".into(),
        ns.into(),
        "--include-crds".into(),
    ];
    for file in files {
        args.extend(["-f".into(), chart.join(file).display().to_string()]);
    }
    for set in sets {
        args.extend(["--set".into(), set.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm(&args);
    assert!(out.status.success(), "helm {args:?}:\n{}", text(&out));
    by_name(objects(&String::from_utf8(out.stdout).unwrap()))
}

fn by_name(objects: Vec<Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for o in objects {
        let key = format!(
            "{}/{}",
            o["kind"].as_str().unwrap(),
            o["metadata"]["name"].as_str().unwrap()
        );
        assert!(out.insert(key.clone(), o).is_none(), "{key} twice");
    }
    out
}

fn container(objects: &BTreeMap<String, Value>) -> &Value {
    &objects["Deployment/ferry-agent"]["spec"]["template"]["spec"]["containers"][0]
}

fn args(objects: &BTreeMap<String, Value>) -> Vec<&str> {
    container(objects)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

fn kinds(objects: &BTreeMap<String, Value>) -> Vec<&str> {
    objects
        .keys()
        .map(|k| k.split('/').next().unwrap())
        .collect()
}

const VALUES_FILES: [&str; 4] = [
    "ci/cluster-admin-values.yaml",
    "ci/monitoring-values.yaml",
    "ci/persistence-values.yaml",
    "ci/single-tenant-values.yaml",
];

#[test]
fn chart_lints_with_every_values_file() {
    let chart = chart();
    let mut found: Vec<String> = std::fs::read_dir(chart.join("ci"))
        .unwrap()
        .map(|e| format!("ci/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    found.sort();
    assert_eq!(
        found, VALUES_FILES,
        "every values file of ci/ has its render test here"
    );
    let dir = chart.display().to_string();
    let out = helm(&["lint", "--strict", &dir]);
    assert!(out.status.success(), "helm lint:\n{}", text(&out));
    assert!(
        text(&out).contains("1 chart(s) linted, 0 chart(s) failed"),
        "{}",
        text(&out)
    );
    for file in VALUES_FILES {
        let values = chart.join(file).display().to_string();
        let out = helm(&["lint", "--strict", &dir, "-f", &values]);
        assert!(out.status.success(), "helm lint -f {file}:\n{}", text(&out));
    }
}

#[test]
fn default_values_render_scoped_rbac_and_nothing_optional() {
    let objects = render("ferry-system", &[], &[]);
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    let rules = objects["ClusterRole/ferry-agent"]["rules"]
        .as_array()
        .unwrap();
    for rule in rules {
        assert_ne!(
            rule["verbs"],
            json!(["*"]),
            "cluster-admin is opt-in: {rule}"
        );
        if rule["apiGroups"] == json!(["*"]) {
            assert_eq!(rule["verbs"], json!(["get", "list", "watch"]), "{rule}");
        }
    }
    assert!(
        rules.iter().any(|r| r["verbs"] == json!(["impersonate"])
            && r["resources"] == json!(["serviceaccounts"]))
    );
    let deployment = &objects["Deployment/ferry-agent"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        container(&objects)["image"],
        "ghcr.io/ferry-dev/ferry:0.1.0"
    );
    assert_eq!(
        args(&objects),
        [
            "agent",
            "--applications",
            "all",
            "--listen",
            "0.0.0.0:8080",
            "--leader-elect-namespace",
            "ferry-system",
            "--log-json"
        ]
    );
    assert!(deployment["spec"]["template"]["spec"]["volumes"].is_null());
}

#[test]
fn cluster_admin_values_bind_everything() {
    let objects = render("ferry-system", &["ci/cluster-admin-values.yaml"], &[]);
    assert_eq!(
        objects["ClusterRole/ferry-agent"]["rules"],
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
    );
    assert_eq!(
        objects["ClusterRoleBinding/ferry-agent"]["subjects"],
        json!([{"kind": "ServiceAccount", "name": "ferry-agent", "namespace": "ferry-system"}])
    );
}

#[test]
fn persistence_values_mount_a_claim_for_the_history() {
    let objects = render("ops", &["ci/persistence-values.yaml"], &[]);
    let claim = &objects["PersistentVolumeClaim/ferry-agent-history"];
    assert_eq!(claim["metadata"]["namespace"], "ops");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "2Gi");
    assert_eq!(claim["spec"]["storageClassName"], "standard");
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    let pod = &objects["Deployment/ferry-agent"]["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "history", "persistentVolumeClaim": {"claimName": "ferry-agent-history"}}])
    );
    assert_eq!(
        container(&objects)["volumeMounts"],
        json!([{"name": "history", "mountPath": "/var/lib/ferry"}])
    );
    assert!(args(&objects).ends_with(&["--data-dir", "/var/lib/ferry"]));
    assert_eq!(
        objects["Deployment/ferry-agent"]["spec"]["strategy"]["type"],
        "Recreate"
    );
    assert_eq!(objects["Deployment/ferry-agent"]["spec"]["replicas"], 1);

    // An existing claim is mounted, not created.
    let objects = render(
        "ops",
        &["ci/persistence-values.yaml"],
        &["history.persistence.existingClaim=mine"],
    );
    assert!(!objects.contains_key("PersistentVolumeClaim/ferry-agent-history"));
    assert_eq!(
        objects["Deployment/ferry-agent"]["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
            ["claimName"],
        "mine"
    );
}

#[test]
fn monitoring_values_add_a_service_monitor_and_a_network_policy() {
    let objects = render("ferry-system", &["ci/monitoring-values.yaml"], &[]);
    let monitor = &objects["ServiceMonitor/ferry-agent"];
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        monitor["metadata"]["labels"],
        json!({"release": "prometheus"})
    );
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{"port": "http", "path": "/metrics", "interval": "15s"}])
    );
    // It selects the Service, whose port it names.
    let service = &objects["Service/ferry-agent"];
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    for (key, value) in selector {
        assert_eq!(&service["metadata"]["labels"][key], value, "{key}");
    }
    assert_eq!(service["spec"]["ports"][0]["name"], "http");

    let policy = &objects["NetworkPolicy/ferry-agent"];
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        objects["Deployment/ferry-agent"]["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    let ingress = &policy["spec"]["ingress"][0];
    assert_eq!(
        ingress["ports"],
        json!([{"port": "http", "protocol": "TCP"}])
    );
    assert_eq!(ingress["from"].as_array().unwrap().len(), 2);
    assert_eq!(
        ingress["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
}

#[test]
fn single_tenant_values_run_one_agent_for_one_namespace() {
    let objects = render("team-a", &["ci/single-tenant-values.yaml"], &[]);
    let c = container(&objects);
    assert_eq!(c["image"], "registry.example/ferry:0.1.0-rc1");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        args(&objects),
        [
            "agent",
            "--applications",
            "team-a",
            "--listen",
            "0.0.0.0:8080",
            "--log-json",
            "--concurrency",
            "4"
        ]
    );
    assert_eq!(
        c["env"],
        json!([
            {"name": "FERRY_WEBHOOK_SECRET", "valueFrom": {"secretKeyRef":
                {"name": "team-a-ferry-webhook", "key": "secret", "optional": true}}},
            {"name": "FERRY_TOKENS", "valueFrom": {"secretKeyRef":
                {"name": "team-a-ferry-tokens", "key": "api-tokens", "optional": true}}}
        ])
    );
    // Helm merges maps: the default limit stays.
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}})
    );
    for (key, object) in &objects {
        if key.starts_with("CustomResourceDefinition/") {
            continue;
        }
        assert_eq!(object["metadata"]["labels"]["team"], "a", "{key}");
    }

    // More than one agent without a Lease is refused at render time.
    let chart = chart().display().to_string();
    let out = helm(&[
        "template",
        "ferry",
        &chart,
        "--set",
        "leaderElection.enabled=false",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("replicas > 1 needs leaderElection.enabled"),
        "{}",
        text(&out)
    );
}

const BLESS: &str = "FERRY_BLESS";

/// `ferry install --namespace delivery` (with `--cluster-admin` when `cluster_admin`) and
/// the chart rendered into `delivery` with the matching values give the same objects, less
/// the Namespaces. With `FERRY_BLESS` set, the CRDs install prints are written to the
/// chart's `crds/` first.
fn assert_chart_equals_install(cluster_admin: bool) {
    let image = "registry.example/ferry:9.9.9";
    let mut install = Command::new(env!("CARGO_BIN_EXE_ferry"));
    install.args(["install", "--namespace", "delivery", "--image", image]);
    if cluster_admin {
        install.arg("--cluster-admin");
    }
    let out = install.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    let mut installed = by_name(objects(&printed));
    // Helm leaves the release namespace to `helm install --create-namespace` (and ferry
    // to an app's `createNamespace`); the agent creates `ferry-system`, where it keeps
    // inventories, when it is missing (with scoped RBAC, create it first).
    for ns in ["delivery", "ferry-system"] {
        let namespace = installed
            .remove(&format!("Namespace/{ns}"))
            .unwrap_or_else(|| panic!("install makes the namespace {ns}"));
        assert_eq!(namespace["apiVersion"], "v1");
    }

    if std::env::var_os(BLESS).is_some() {
        let header = format!(
            "# A CRD as `ferry install` prints it; regenerate with\n# {BLESS}=1 cargo test -p ferry --test chart\n"
        );
        for crd in
            (printed.split("---\n")).filter(|doc| doc.contains("kind: CustomResourceDefinition"))
        {
            let object: Value = serde_saphyr::from_str(crd).expect("a CRD");
            let name = object["metadata"]["name"].as_str().expect("its name");
            let file = chart().join(format!("crds/{name}.yaml"));
            std::fs::write(&file, header.clone() + crd).unwrap();
        }
    }
    let crd_file = chart().join("crds");

    let files: &[&str] = if cluster_admin {
        &["ci/cluster-admin-values.yaml"]
    } else {
        &[]
    };
    let rendered = render(
        "delivery",
        files,
        &["image.repository=registry.example/ferry", "image.tag=9.9.9"],
    );
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        installed.keys().collect::<Vec<_>>(),
        "cluster-admin: {cluster_admin}"
    );
    for (key, object) in &installed {
        assert_eq!(
            &rendered[key],
            object,
            "{key} differs between the chart and `ferry install` (cluster-admin: \
             {cluster_admin}; after changing the CRD, regenerate {} with \
             `{BLESS}=1 cargo test -p ferry --test chart`)",
            crd_file.display()
        );
    }
}

#[test]
fn chart_and_ferry_install_produce_the_same_objects() {
    assert_chart_equals_install(true);
}

#[test]
fn the_charts_default_scoped_rbac_is_ferry_installs() {
    assert_chart_equals_install(false);
    let installed = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["install", "--namespace", "delivery"])
        .output()
        .unwrap();
    let kinds: Vec<String> = by_name(objects(&String::from_utf8(installed.stdout).unwrap()))
        .into_keys()
        .filter(|k| k.starts_with("Role/") || k.starts_with("RoleBinding/"))
        .collect();
    assert_eq!(
        kinds,
        [
            "Role/ferry-agent-lease",
            "Role/ferry-agent-records",
            "RoleBinding/ferry-agent-lease",
            "RoleBinding/ferry-agent-records"
        ],
        "the scoped case compares the namespaced roles too"
    );
}

/// ferry deploys its own chart from a Git repository, with values from ferry.yaml. The
/// CRD is left out (`includeCrds: false`): applied by this test's app it would carry the
/// app's label, and another app (`ferry install --apply`) could no longer own it.
#[tokio::test]
async fn ferry_applies_its_own_chart_on_the_testbed() {
    let f = Fixture::new("chart").await;
    let app = f.app("-ferry");
    copy_dir(&chart(), &f.repo.dir().join("charts/ferry"));
    let ns = f.ns();
    f.repo.write(
        "ferry.yaml",
        &format!(
            "apps:\n  - name: {app}\n    source:\n      repo: .\n      path: charts/ferry\n      helm:\n        \
             releaseName: ferry\n        includeCrds: false\n        values:\n          image:\n            repository: 127.0.0.1:5000/ferry\n          \
             rbac:\n            clusterAdmin: true\n          networkPolicy:\n            enabled: true\n    \
             destination:\n      namespace: {ns}\n    prune: true\n"
        ),
    );
    f.repo.commit("ferry's chart");
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        let plural = format!("{}s", kind.to_lowercase());
        f.delete_later(
            ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
                &plural,
            ),
            None,
            "ferry-agent",
        );
    }
    let file = f.repo.dir().join("ferry.yaml");
    let run = f
        .ferry(&["apply", &app, "-f", file.to_str().unwrap(), "--no-wait"])
        .await;
    run.expect_code(0);
    let deployment: k8s_openapi::api::apps::v1::Deployment =
        f.get("ferry-agent").await.expect("the agent's Deployment");
    let spec = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("ferry-agent"));
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some("127.0.0.1:5000/ferry:0.1.0")
    );
    assert!(
        f.get::<k8s_openapi::api::networking::v1::NetworkPolicy>("ferry-agent")
            .await
            .is_some()
    );
    assert!(
        f.get::<k8s_openapi::api::core::v1::Service>("ferry-agent")
            .await
            .is_some()
    );
    let roles: kube::Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
        kube::Api::all(f.client.clone());
    let binding = roles
        .get("ferry-agent")
        .await
        .expect("the ClusterRoleBinding");
    assert_eq!(
        binding.subjects.unwrap()[0].namespace.as_deref(),
        Some(ns),
        "bound to the release namespace"
    );
    // In sync right after: the chart renders the same objects again.
    let again = f.ferry(&["diff", &app, "-f", file.to_str().unwrap()]).await;
    again.expect_code(0);
    f.finish().await;
}
