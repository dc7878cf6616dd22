//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ferry_model::SourceSpec;
use ferry_render::{RenderRequest, Tools};
pub use ferry_testkit::manifest_dir;

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    manifest_dir().join("tests/fixtures")
}

/// An app to render: owns everything a [`RenderRequest`] borrows.
pub struct App {
    pub root: PathBuf,
    pub dir: PathBuf,
    pub spec: SourceSpec,
    pub namespace: Option<String>,
    pub kube_version: Option<String>,
    pub api_versions: Vec<String>,
}

impl App {
    pub fn new(root: &Path, dir: &str) -> Self {
        Self {
            root: root.to_path_buf(),
            dir: root.join(dir),
            spec: SourceSpec::default(),
            namespace: None,
            kube_version: None,
            api_versions: Vec::new(),
        }
    }

    pub fn request(&self) -> RenderRequest<'_> {
        RenderRequest {
            app: "demo",
            dir: &self.dir,
            root: &self.root,
            namespace: self.namespace.as_deref(),
            spec: &self.spec,
            kube_version: self.kube_version.as_deref(),
            api_versions: &self.api_versions,
        }
    }
}

/// Writes `text` to `root/rel`, creating directories.
pub fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Tests that start processes (or write scripts that are then run) take this lock, so
/// no process forked by one test inherits a script another test is still writing
/// (which would make running it fail with "text file busy").
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes an executable `/bin/sh` script called `name` into `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Tools with no binaries and short limits, for tests with fake binaries.
pub fn no_tools() -> Tools {
    Tools {
        helm: None,
        kustomize: None,
        timeout: std::time::Duration::from_secs(30),
        max_output: 1 << 20,
        chart_cache: std::env::temp_dir().join("ferry-render-tests-no-charts"),
    }
}

/// The real binaries: `FERRY_HELM` / `FERRY_KUSTOMIZE`, else the test bed's pinned builds
/// (`$FERRY_TESTBED_BIN`, `${FERRY_CACHE:-~/.cache/ferry}/testbed/*/bin`), else `PATH`.
pub fn real_tools() -> Tools {
    let mut tools = Tools::discover();
    for (var, name, slot) in [
        ("FERRY_HELM", "helm", &mut tools.helm),
        ("FERRY_KUSTOMIZE", "kustomize", &mut tools.kustomize),
    ] {
        if std::env::var_os(var).is_none()
            && let Some(found) = ferry_testkit::charts::pinned_testbed_binary(name)
        {
            *slot = Some(found);
        }
    }
    tools
}

/// The lock of [`serial`] and [`real_tools`], when every tool of `needed` (`helm`,
/// `kustomize`) is there; `None`, the test returning, as [`require`] says.
pub fn tools_for(needed: &[&str]) -> Option<(MutexGuard<'static, ()>, Tools)> {
    let lock = serial();
    let tools = real_tools();
    for tool in needed {
        let binary = match *tool {
            "helm" => tools.helm.as_deref(),
            "kustomize" => tools.kustomize.as_deref(),
            other => panic!("no tool {other} in Tools"),
        };
        if !require(tool, binary) {
            return None;
        }
    }
    Some((lock, tools))
}

/// Whether the test can go on with `binary`. A missing binary fails the test under
/// `CI=true`; elsewhere it prints a note and the test returns early.
pub fn require(tool: &str, binary: Option<&Path>) -> bool {
    if binary.is_some() {
        return true;
    }
    let message = format!(
        "{tool} not found: run testbed/build.sh or set FERRY_{}",
        tool.to_uppercase()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("note: skipping test, {message}");
    false
}
