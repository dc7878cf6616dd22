//! ferry's container image (`scripts/image.sh`, umoci on an empty OCI layout): its config
//! (non-root user, labels with version and commit, only dash as /bin/sh, for SSH fetches), a push to a real OCI
//! registry with skopeo, and the image run with a real OCI runtime (runc; Debian's crun
//! 1.8 refuses this machine's hybrid cgroup layout) on the test bed: `ferry version`, the
//! helm, kustomize, git and ssh it carries, and `ferry agent` syncing an app.
//!
//! The image is built from this build's ferry binary once per binary (cached under
//! `${FERRY_CACHE:-~/.cache/ferry}/image-test/<hash of its inputs>`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Fixture;
use ferry_testkit::{output_text, workspace_root};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program}: {e} (scripts/setup.sh installs umoci, skopeo and runc)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?}:\n{}",
        output_text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The OCI layout of this build's image, built when its inputs changed.
fn layout() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.as_ref() {
        return path.clone();
    }
    let root = workspace_root();
    let mut hash = Sha256::new();
    hash.update(std::fs::read(env!("CARGO_BIN_EXE_ferry")).unwrap());
    hash.update(std::fs::read(root.join("scripts/image.sh")).unwrap());
    for tool in ["helm", "kustomize"] {
        let path = ferry_testkit::charts::testbed_binary(tool);
        hash.update(path.display().to_string());
        hash.update(path.metadata().unwrap().len().to_le_bytes());
    }
    let key = hex::encode(&hash.finalize()[..8]);
    let cache = std::env::var_os("FERRY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/ferry"))
        .join("image-test");
    let out = cache.join(&key);
    let layout = out.join("oci");
    if !out.join("done").exists() {
        // One image is kept: older ones go.
        let _ = std::fs::remove_dir_all(&cache);
        std::fs::create_dir_all(&out).unwrap();
        let start = Instant::now();
        let build = Command::new("bash")
            .arg(root.join("scripts/image.sh"))
            .args(["--binary", env!("CARGO_BIN_EXE_ferry"), "--out"])
            .arg(&out)
            .output()
            .expect("running image.sh");
        assert!(
            build.status.success(),
            "image.sh failed:\n{}",
            output_text(&build)
        );
        eprintln!(
            "built the image in {:?}:\n{}",
            start.elapsed(),
            output_text(&build)
        );
        // Unpacked once for runc, read-only for every container.
        run(
            "umoci",
            &[
                "unpack",
                "--image",
                &format!("{}:{}", layout.display(), version()),
                out.join("bundle").to_str().unwrap(),
            ],
        );
        std::fs::write(out.join("done"), "").unwrap();
    }
    *built = Some(layout.clone());
    layout
}

fn image_ref(layout: &Path) -> String {
    format!("oci:{}:{}", layout.display(), version())
}

#[test]
fn image_config_names_the_version_commit_and_a_non_root_user() {
    let layout = layout();
    let config: Value = serde_json::from_str(&run(
        "skopeo",
        &["inspect", "--config", &image_ref(&layout)],
    ))
    .unwrap();
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/local/bin/ferry"]));
    assert_eq!(c["Labels"]["org.opencontainers.image.version"], version());
    let revision = c["Labels"]["org.opencontainers.image.revision"]
        .as_str()
        .unwrap();
    assert_eq!(revision.len(), 40, "a full commit SHA: {revision}");
    assert_eq!(c["Labels"]["dev.ferry.helm.version"], "v3.19.0");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert!(
        layout
            .parent()
            .unwrap()
            .join(format!("ferry-{}-image.tar", version()))
            .is_file()
    );

    // Pushed to a real registry, the same image comes back.
    let registry = ferry_testkit::charts::Registry::start();
    let remote = format!("docker://{}/ferry:{}", registry.host(), version());
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &image_ref(&layout),
            &remote,
        ],
    );
    let digest = |reference: &str, tls: &[&str]| {
        let mut args = vec!["inspect", "--format", "{{.Digest}}"];
        args.extend_from_slice(tls);
        args.push(reference);
        run("skopeo", &args).trim().to_string()
    };
    assert_eq!(
        digest(&remote, &["--tls-verify=false"]),
        digest(&image_ref(&layout), &[])
    );
}

/// The image's root filesystem, unpacked by umoci.
fn rootfs() -> PathBuf {
    layout().parent().unwrap().join("bundle/rootfs")
}

/// A runc bundle of the image: umoci's runtime config with the root filesystem read-only,
/// a fresh home for user ferry and a tmpfs on /tmp, the host's network (the test bed
/// listens on 127.0.0.1), these read-only bind mounts, and this command.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new(mounts: &[(&Path, &str)], args: &[&str]) -> Self {
        Self::with_program("/usr/local/bin/ferry", mounts, args)
    }

    fn with_program(program: &str, mounts: &[(&Path, &str)], args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let chown = Command::new("chown")
            .arg("65532:65532")
            .arg(&home)
            .status()
            .unwrap();
        assert!(chown.success());
        let path = bundle.join("config.json");
        let unpacked = layout().parent().unwrap().join("bundle/config.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(unpacked).unwrap()).unwrap();
        config["root"] = serde_json::json!({"path": rootfs(), "readonly": true});
        let process = &mut config["process"];
        process["terminal"] = false.into();
        process["args"] = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .into();
        process["env"].as_array_mut().unwrap().extend([
            "FERRY_CONTEXT=ferry-testbed".into(),
            "KUBECONFIG=/kube/config".into(),
        ]);
        let linux = config["linux"].as_object_mut().unwrap();
        linux.remove("resources");
        linux["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|ns| ns["type"] != "network");
        let list = config["mounts"].as_array_mut().unwrap();
        list.push(
            serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777"]}),
        );
        list.push(
            serde_json::json!({"destination": "/home/ferry", "type": "bind",
            "source": home, "options": ["rbind", "rw"]}),
        );
        for (source, target) in mounts {
            list.push(serde_json::json!({"destination": target, "type": "bind",
                "source": source, "options": ["rbind", "ro"]}));
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        Self { dir }
    }

    fn runc(&self) -> Command {
        let mut cmd = Command::new("runc");
        cmd.arg("--root").arg(self.dir.path().join("state"));
        cmd
    }

    /// Runs the container to its end.
    fn output(&self, id: &str) -> Output {
        self.runc()
            .args(["run", "--bundle"])
            .arg(self.dir.path().join("bundle"))
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .expect("running runc (scripts/setup.sh installs it)")
    }
}

/// Runs `program args…` in the image (entrypoint replaced): its exit status, and its
/// stdout and stderr.
fn in_image_status(program: &str, args: &[&str]) -> (bool, String) {
    let bundle = Bundle::with_program(program, &[], args);
    let id = format!(
        "ferry-{}-{}",
        std::process::id(),
        program.rsplit('/').next().unwrap()
    );
    let out = bundle.output(&id);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// [`in_image_status`] for a command that must succeed.
fn in_image(program: &str, args: &[&str]) -> String {
    let (ok, printed) = in_image_status(program, args);
    assert!(ok, "{program} {args:?} in the image:\n{printed}");
    printed
}

#[test]
fn the_image_runs_ferry_and_the_tools_it_needs() {
    let bundle = Bundle::new(&[], &["version"]);
    let out = bundle.output("ferry-version");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("ferry {}\n", version())
    );

    assert!(in_image("/usr/local/bin/helm", &["version", "--short"]).starts_with("v3.19.0"));
    assert!(in_image("/usr/local/bin/kustomize", &["version"]).contains("v5.7.1"));
    assert!(in_image("/usr/bin/git", &["--version"]).starts_with("git version 2."));
    assert!(in_image("/usr/bin/ssh", &["-V"]).starts_with("OpenSSH_"));
    // git's HTTPS helper loads (libcurl, TLS) and gets as far as connecting.
    let (ok, helper) = in_image_status(
        "/usr/bin/git",
        &["ls-remote", "https://127.0.0.1:1/none.git"],
    );
    assert!(
        !ok && helper.contains("Couldn't connect to server"),
        "{helper}"
    );
    // An SSH fetch's `core.sshCommand` as ferry-source writes it, the way gix runs it
    // (`sh -c '<command> "$@"' <command> <ssh args>`).
    let ssh_command = "timeout -k 2 5.2 ssh -F /dev/null -o BatchMode=yes";
    assert!(
        in_image(
            "/bin/sh",
            &["-c", &format!("{ssh_command} \"$@\""), ssh_command, "-V"]
        )
        .starts_with("OpenSSH_")
    );
    // dash is the one shell.
    let root = rootfs();
    for shell in ["usr/bin/bash", "bin/bash"] {
        assert!(!root.join(shell).exists(), "{shell} is in the image");
    }
}

#[tokio::test]
async fn ferry_agent_in_the_image_syncs_an_app() {
    let f = Fixture::new("img").await;
    let app = f.app("-web");
    f.write_configmap("from-the-image", &[("synced", "yes")]);
    f.repo.write(
        "ferry.yaml",
        &format!(
            "apps:\n  - name: {app}\n    source:\n      repo: /repo\n      path: app\n    destination:\n      \
             namespace: {}\n",
            f.ns()
        ),
    );
    f.repo.commit("an app for the image");
    // The agent runs as 65532: the repository and the kubeconfig are made its own.
    let chown = Command::new("chown")
        .args(["-R", "65532:65532"])
        .arg(f.repo.dir())
        .status()
        .unwrap();
    assert!(chown.success());
    let kubeconfig = std::env::var_os("KUBECONFIG").expect("KUBECONFIG (testbed/up)");
    let kube_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&kubeconfig, kube_dir.path().join("config")).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "65532:65532"])
        .arg(kube_dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let bundle = Bundle::new(
        &[(f.repo.dir(), "/repo"), (kube_dir.path(), "/kube")],
        &["agent", "-f", "/repo/ferry.yaml", "--listen", &listen],
    );
    let id = format!("ferry-agent-{}", std::process::id());
    let log = bundle.dir.path().join("agent.log");
    let mut child = bundle
        .runc()
        .args(["run", "--bundle"])
        .arg(bundle.dir.path().join("bundle"))
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(bundle.dir.path().join("agent.err")).unwrap())
        .spawn()
        .expect("starting runc");
    let deadline = Instant::now() + Duration::from_secs(90);
    let synced = loop {
        if let Some(cm) = f.get::<ConfigMap>("from-the-image").await {
            break Some(cm);
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let healthz = reqwest::Client::new()
        .get(format!("http://{listen}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status().as_u16());
    let _ = bundle.runc().args(["kill", &id, "KILL"]).status();
    let _ = child.wait();
    let _ = bundle.runc().args(["delete", "--force", &id]).status();
    let logs = format!(
        "{}{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        std::fs::read_to_string(bundle.dir.path().join("agent.err")).unwrap_or_default()
    );
    let cm =
        synced.unwrap_or_else(|| panic!("the agent in the image did not sync the app:\n{logs}"));
    assert_eq!(cm.data.unwrap()["synced"], "yes");
    assert_eq!(
        healthz.ok(),
        Some(200),
        "the agent's /healthz in the container:\n{logs}"
    );
    f.finish().await;
}
