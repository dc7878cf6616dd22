//! Shared helpers for the `ferry` binary's integration tests: the `ferry` process with an
//! isolated cache, and a per-test [`Fixture`] (namespace, Git repository, app names) that
//! cleans up what ferry wrote outside the test namespace.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use ferry_model::{APP_LABEL, AppKey, ObjectRef, SYSTEM_NAMESPACE};
use ferry_testkit::{TESTBED_CONTEXT, TestNamespace, TestRepo};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::{Api, Client};
use tempfile::TempDir;

/// How long one `ferry` run may take before the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What one `ferry` run printed, and its exit code.
#[derive(Debug)]
pub struct Run {
    /// The command line (for messages).
    pub args: Vec<String>,
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the whole output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code of {self}");
        self
    }

    /// The one `error: …` line on stderr, without the prefix.
    ///
    /// # Panics
    ///
    /// When stderr has no such line, or more than one, or the line is not last, or an
    /// earlier line (narration) mentions an error too (e.g. a library's log).
    #[track_caller]
    pub fn error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        let errors: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "expected exactly one error line on stderr of {self}"
        );
        assert_eq!(
            lines.last().copied(),
            Some(errors[0]),
            "the error is not the last line of stderr of {self}"
        );
        for line in &lines[..lines.len() - 1] {
            assert!(
                !line.to_lowercase().contains("error"),
                "stderr has more than the one error line: {line:?} in {self}"
            );
        }
        errors[0].trim_start_matches("error:").trim()
    }

    /// Asserts that exit code is 2 and the single error line contains every one of `parts`.
    #[track_caller]
    pub fn expect_error(&self, parts: &[&str]) -> &str {
        self.expect_code(2);
        let line = self.error_line();
        for part in parts {
            assert!(
                line.contains(part),
                "error line lacks {part:?}: {line:?}\nfull output: {self}"
            );
        }
        line
    }

    /// Asserts that stdout contains `part`.
    #[track_caller]
    pub fn expect_stdout(&self, part: &str) -> &Self {
        assert!(
            self.stdout.contains(part),
            "stdout lacks {part:?} in {self}"
        );
        self
    }

    /// Asserts that stdout has a line starting with `prefix` and ending with `suffix`.
    #[track_caller]
    pub fn expect_line(&self, prefix: &str, suffix: &str) -> &Self {
        assert!(
            self.stdout
                .lines()
                .any(|l| l.starts_with(prefix) && l.ends_with(suffix)),
            "stdout has no line {prefix:?}…{suffix:?} in {self}"
        );
        self
    }

    /// Asserts that stderr contains `part`.
    #[track_caller]
    pub fn expect_stderr(&self, part: &str) -> &Self {
        assert!(
            self.stderr.contains(part),
            "stderr lacks {part:?} in {self}"
        );
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`ferry {}` (exit {})\n--- stdout:\n{}--- stderr:\n{}---",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// The real `ferry` binary with its own cache directory (so its Git cache is the test's).
pub struct Ferry {
    cache: TempDir,
}

impl Ferry {
    /// Runs against the test bed (`$KUBECONFIG`, context `ferry-testbed`).
    pub fn new() -> Self {
        Self {
            cache: tempfile::tempdir().expect("temporary FERRY_CACHE"),
        }
    }

    /// The same cache, but with `KUBECONFIG` pointing at `path` and the kubeconfig's own
    /// current context.
    pub fn with_kubeconfig(&self, path: &Path) -> FerryWith<'_> {
        FerryWith {
            ferry: self,
            kubeconfig: path.to_path_buf(),
        }
    }

    /// Runs `ferry args…` and collects its output.
    pub async fn run(&self, args: &[&str]) -> Run {
        run(self.cache.path(), None, args, RUN_TIMEOUT).await
    }

    /// [`Ferry::run`] allowed to take up to `timeout` (for large apps).
    pub async fn run_within(&self, timeout: Duration, args: &[&str]) -> Run {
        run(self.cache.path(), None, args, timeout).await
    }
}

/// [`Ferry`] with another kubeconfig.
pub struct FerryWith<'a> {
    ferry: &'a Ferry,
    kubeconfig: PathBuf,
}

impl FerryWith<'_> {
    /// Runs `ferry args…` with the other kubeconfig.
    pub async fn run(&self, args: &[&str]) -> Run {
        run(
            self.ferry.cache.path(),
            Some(&self.kubeconfig),
            args,
            RUN_TIMEOUT,
        )
        .await
    }
}

async fn run(cache: &Path, kubeconfig: Option<&Path>, args: &[&str], timeout: Duration) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(args)
        .env("FERRY_CACHE", cache)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match kubeconfig {
        Some(path) => {
            cmd.env("KUBECONFIG", path).env_remove("FERRY_CONTEXT");
        }
        // Pin the test bed's context, whatever the kubeconfig's current context is.
        None => {
            cmd.env("FERRY_CONTEXT", TESTBED_CONTEXT);
        }
    }
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("`ferry {}` ran longer than {timeout:?}", args.join(" ")))
        .expect("starting the ferry binary");
    let run = Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: out.status.code().expect("ferry exited by a signal"),
        stdout: String::from_utf8(out.stdout).expect("ferry prints UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("ferry prints UTF-8"),
    };
    // Shown by the test harness when the test fails (or with --nocapture).
    eprintln!("{run}");
    run
}

/// An app's inventory as stored in the cluster.
#[derive(Debug)]
pub struct StoredInventory {
    /// The ConfigMap's resourceVersion.
    pub resource_version: String,
    /// The recorded revision.
    pub revision: String,
    /// The recorded objects, by name.
    pub entries: Vec<ObjectRef>,
}

impl StoredInventory {
    /// The names of the entries, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.iter().map(|e| e.name.clone()).collect();
        names.sort();
        names
    }
}

/// Something outside the test namespace to delete at the end of a test.
struct Leftover {
    resource: ApiResource,
    namespace: Option<String>,
    name: String,
}

/// One test's world: a client, a namespace, a Git repository, the `ferry` binary with its
/// own cache, and the list of things outside the namespace to delete at the end (app
/// inventories in `ferry-system`, cluster-scoped objects).
///
/// Call [`finish`](Self::finish) at the end; when a test fails first, `Drop` deletes the
/// leftovers best-effort (the namespace deletes itself through [`TestNamespace`]).
pub struct Fixture {
    pub client: Client,
    pub repo: TestRepo,
    pub ferry: Ferry,
    ns: Option<TestNamespace>,
    leftovers: Mutex<Vec<Leftover>>,
}

impl Fixture {
    /// A fixture with a namespace `<prefix>-<suffix>`; keep prefixes short, app names
    /// derive from the namespace name.
    pub async fn new(prefix: &str) -> Self {
        let client = ferry_testkit::client().await;
        let ns = TestNamespace::new(&client, prefix).await;
        Self {
            client,
            repo: TestRepo::new(),
            ferry: Ferry::new(),
            ns: Some(ns),
            leftovers: Mutex::new(Vec::new()),
        }
    }

    /// The test namespace.
    pub fn ns(&self) -> &str {
        self.ns.as_ref().expect("namespace").name()
    }

    /// A unique app name (the namespace name plus `suffix`); its inventory is deleted at the end.
    pub fn app(&self, suffix: &str) -> String {
        let name = format!("{}{suffix}", self.ns());
        self.delete_later(
            ApiResource::erase::<ConfigMap>(&()),
            Some(SYSTEM_NAMESPACE),
            &inventory_name(&key(&name)),
        );
        name
    }

    /// Writes ConfigMap `name` with `data` (see [`configmap`]) to `app/<name>.yaml` of the
    /// repository.
    pub fn write_configmap(&self, name: &str, data: &[(&str, &str)]) {
        self.repo
            .write(&format!("app/{name}.yaml"), &configmap(name, data));
    }

    /// Deletes this object at the end of the test.
    pub fn delete_later(&self, resource: ApiResource, namespace: Option<&str>, name: &str) {
        self.leftovers.lock().unwrap().push(Leftover {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        });
    }

    /// Runs `ferry args…` against the test bed.
    pub async fn ferry(&self, args: &[&str]) -> Run {
        self.ferry.run(args).await
    }

    /// Runs `ferry <command> <app> --repo <repo> --path <path> -n <ns> extra…`.
    pub async fn one_off(&self, command: &str, app: &str, path: &str, extra: &[&str]) -> Run {
        self.one_off_within(RUN_TIMEOUT, command, app, path, extra)
            .await
    }

    /// [`Fixture::one_off`] allowed to take up to `timeout` (for large apps).
    pub async fn one_off_within(
        &self,
        timeout: Duration,
        command: &str,
        app: &str,
        path: &str,
        extra: &[&str],
    ) -> Run {
        let ns = self.ns().to_string();
        let mut args = vec![
            command,
            app,
            "--repo",
            self.repo.path(),
            "--path",
            path,
            "-n",
            &ns,
        ];
        args.extend_from_slice(extra);
        self.ferry.run_within(timeout, &args).await
    }

    /// A typed API in the test namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), self.ns())
    }

    /// An object of the test namespace, if it exists.
    pub async fn get<K>(&self, name: &str) -> Option<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("reading {name} in {}: {e}", self.ns()))
    }

    /// A ConfigMap's `data[key]`, `None` when the ConfigMap or the key is missing.
    pub async fn cm_value(&self, name: &str, key: &str) -> Option<String> {
        self.get::<ConfigMap>(name)
            .await
            .and_then(|cm| cm.data)
            .and_then(|d| d.get(key).cloned())
    }

    /// Patches `data[key]` of a ConfigMap as another field manager would (a live edit,
    /// `kubectl-edit`).
    pub async fn edit_value(&self, name: &str, key: &str, value: &str) {
        self.api::<ConfigMap>()
            .patch(
                name,
                &PatchParams {
                    field_manager: Some("kubectl-edit".into()),
                    ..Default::default()
                },
                &Patch::Merge(serde_json::json!({ "data": { key: value } })),
            )
            .await
            .unwrap_or_else(|e| panic!("patching ConfigMap {name}: {e}"));
    }

    /// The ConfigMaps of the test namespace except the `kube-root-ca.crt` every namespace gets.
    pub async fn configmaps(&self) -> Vec<String> {
        let mut names = self.configmap_names(&ListParams::default()).await;
        names.retain(|n| n != "kube-root-ca.crt");
        names
    }

    /// The ConfigMaps of the test namespace labelled as objects of `app`.
    pub async fn labelled_configmaps(&self, app: &str) -> Vec<String> {
        let labelled = ListParams::default().labels(&format!("{APP_LABEL}={app}"));
        self.configmap_names(&labelled).await
    }

    /// The names of the test namespace's ConfigMaps that `params` list, sorted.
    async fn configmap_names(&self, params: &ListParams) -> Vec<String> {
        let list = self
            .api::<ConfigMap>()
            .list(params)
            .await
            .expect("listing ConfigMaps");
        let mut names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|cm| cm.metadata.name)
            .collect();
        names.sort();
        names
    }

    /// An app's inventory, if ferry wrote one (read as ferry reads it, in any format).
    pub async fn inventory(&self, app: &str) -> Option<StoredInventory> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), SYSTEM_NAMESPACE);
        let head = api
            .get_opt(&inventory_name(&key(app)))
            .await
            .expect("reading the inventory")?;
        let inv = self
            .cluster()
            .await
            .read_inventory(&key(app))
            .await
            .expect("decoding the inventory")?;
        Some(StoredInventory {
            resource_version: head.metadata.resource_version.unwrap_or_default(),
            revision: inv.revision,
            entries: inv.entries,
        })
    }

    /// The test bed as ferry's library sees it.
    pub async fn cluster(&self) -> ferry_kube::Cluster {
        ferry_kube::Cluster::from_client(
            self.client.clone(),
            "the test bed".into(),
            ferry_kube::DEFAULT_REQUEST_TIMEOUT,
        )
        .await
        .expect("discovery on the test bed")
    }

    /// Writes a kubeconfig into a temporary file of the fixture's lifetime.
    pub fn kubeconfig_file(&self, text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temporary kubeconfig");
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("writing the kubeconfig");
        file
    }

    /// Deletes the leftovers and the namespace, waiting until the namespace is gone.
    pub async fn finish(mut self) {
        let leftovers = std::mem::take(&mut *self.leftovers.lock().unwrap());
        delete_all(&self.client, &leftovers)
            .await
            .unwrap_or_else(|e| panic!("cleaning up: {e}"));
        self.ns.take().expect("namespace").cleanup().await;
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let leftovers = std::mem::take(&mut *self.leftovers.lock().unwrap());
        if leftovers.is_empty() {
            return;
        }
        // Drop cannot await and may run inside the test's runtime: use a thread with its own.
        let outcome = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let client = ferry_testkit::client().await;
                delete_all(&client, &leftovers).await
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the clean-up thread panicked".into()));
        if let Err(e) = outcome {
            eprintln!("ferry tests: clean-up failed: {e}");
        }
    }
}

async fn delete_all(client: &Client, leftovers: &[Leftover]) -> Result<(), String> {
    for l in leftovers {
        let api: Api<DynamicObject> = match &l.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &l.resource),
            None => Api::all_with(client.clone(), &l.resource),
        };
        match api.delete(&l.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(format!("deleting {} {}: {e}", l.resource.kind, l.name)),
        }
    }
    Ok(())
}

/// The API resource of a kind, for [`Fixture::delete_later`] and dynamic reads.
pub fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Writes `text` as `ferry.yaml` into a new temporary directory, which lives as long as
/// the `TempDir` returned with the file's path.
pub fn ferry_yaml(text: &str) -> (TempDir, String) {
    let dir = tempfile::tempdir().expect("a directory for ferry.yaml");
    let file = dir.path().join("ferry.yaml");
    std::fs::write(&file, text).expect("writing ferry.yaml");
    let file = file.to_str().expect("a UTF-8 path").to_string();
    (dir, file)
}

/// A ConfigMap manifest with the given data (values quoted).
/// The identity of a ferry.yaml app (or a one-off one) named `name`.
pub fn key(name: &str) -> AppKey {
    AppKey::new(SYSTEM_NAMESPACE, name)
}

/// The name of the head ConfigMap of `app`'s inventory.
pub fn inventory_name(app: &AppKey) -> String {
    format!("ferry-inventory-{}", app.dotted())
}

pub fn configmap(name: &str, data: &[(&str, &str)]) -> String {
    let mut text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n");
    if data.is_empty() {
        text.push_str("  {}\n");
    }
    for (k, v) in data {
        text.push_str(&format!("  {k}: {v:?}\n"));
    }
    text
}

/// A Deployment manifest with one pod labelled `app: <selector>`. `extra_spec` and
/// `pod_spec_extra` are inserted verbatim (indented YAML lines, each ending in a newline)
/// into the Deployment's spec and the pod template's spec.
pub fn deployment(name: &str, selector: &str, extra_spec: &str, pod_spec_extra: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
{extra_spec}  selector:
    matchLabels:
      app: {selector}
  template:
    metadata:
      labels:
        app: {selector}
    spec:
{pod_spec_extra}      containers:
      - name: main
        image: registry.k8s.io/pause:3.10
"
    )
}
