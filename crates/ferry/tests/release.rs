//! The release archive of `scripts/release.sh` (the binary, completions and man pages, a
//! `.sha256` that `sha256sum -c` accepts), the GitHub Action's steps (`scripts/action.sh`)
//! installing ferry from such an archive (checksum verified, a tampered one refused) and
//! writing a diff to the job summary, and actionlint on the action and the example's
//! workflows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_testkit::{TestRepo, output_text, workspace_root};

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Runs `scripts/release.sh --binary <this build's ferry> --out <out>`; returns the archive.
fn release(out: &Path) -> PathBuf {
    let run = Command::new("bash")
        .arg(workspace_root().join("scripts/release.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_ferry"), "--out"])
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("running release.sh");
    assert!(
        run.status.success(),
        "release.sh failed:\n{}",
        output_text(&run)
    );
    let printed = String::from_utf8(run.stdout).unwrap();
    PathBuf::from(printed.lines().last().expect("the archive's path"))
}

fn tar_list(archive: &Path) -> BTreeSet<String> {
    let out = Command::new("tar")
        .arg("-tzvf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let listing = String::from_utf8(out.stdout).unwrap();
    for line in listing.lines() {
        assert!(line.contains(" 0/0 "), "entries are owned by 0:0: {line}");
        assert!(
            line.contains("2023-11-14"),
            "entries are dated SOURCE_DATE_EPOCH: {line}"
        );
    }
    let out = Command::new("tar")
        .arg("-tzf")
        .arg(archive)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

/// The action's step `action.sh <step>` with a runner's environment in `runner`.
fn action(step: &str, runner: &Path, dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(workspace_root().join("scripts/action.sh"))
        .arg(step)
        .current_dir(dir)
        .env("RUNNER_TEMP", runner)
        .env("GITHUB_PATH", runner.join("path"))
        .env("GITHUB_STEP_SUMMARY", runner.join("summary.md"))
        .env("GITHUB_OUTPUT", runner.join("output"))
        .env("FERRY_CACHE", runner.join("cache"))
        .env("KUBECONFIG", "/dev/null");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().expect("running action.sh")
}

#[test]
fn release_archive_installs_with_the_action() {
    let dist = tempfile::tempdir().unwrap();
    // The action downloads <releases>/v<version>/<archive>: lay the release out that way.
    let releases = dist.path().join("releases");
    let out = releases.join(format!("v{}", version()));
    let archive = release(&out);
    let name = format!("ferry-{}-x86_64-unknown-linux-gnu.tar.gz", version());
    assert_eq!(archive, out.join(&name));

    let entries = tar_list(&archive);
    for entry in [
        "ferry",
        "README.md",
        "completions/ferry.bash",
        "completions/_ferry",
        "completions/ferry.fish",
        "completions/_ferry.ps1",
        "man/ferry.1",
        "man/ferry-apply.1",
        "man/ferry-completion.1",
    ] {
        assert!(entries.contains(entry), "{entry} missing from {entries:?}");
    }
    let check = Command::new("sha256sum")
        .args(["--check", "--strict"])
        .arg(format!("{name}.sha256"))
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", output_text(&check));

    // The same binary and date give the same archive, byte for byte.
    let again = tempfile::tempdir().unwrap();
    let second = release(again.path());
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        std::fs::read(&second).unwrap(),
        "release.sh is not reproducible"
    );

    // The action's install step, from a file:// URL instead of GitHub's.
    let runner = tempfile::tempdir().unwrap();
    let base = format!("file://{}", releases.display());
    let env = [
        ("FERRY_VERSION", version()),
        ("FERRY_RELEASES", base.as_str()),
    ];
    let installed = action("install", runner.path(), runner.path(), &env);
    assert!(
        installed.status.success(),
        "install:\n{}",
        output_text(&installed)
    );
    let bin = runner.path().join(format!("ferry-{}/bin", version()));
    assert_eq!(
        std::fs::read_to_string(runner.path().join("path")).unwrap(),
        format!("{}\n", bin.display())
    );
    let run = Command::new(bin.join("ferry"))
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(run.stdout).unwrap(),
        format!("ferry {}\n", version())
    );

    // A tampered archive is refused, nothing installed.
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let runner = tempfile::tempdir().unwrap();
    let refused = action("install", runner.path(), runner.path(), &env);
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&format!(
            "::error::{name}: SHA-256 does not match {name}.sha256"
        )),
        "{}",
        output_text(&refused)
    );
    assert!(!runner.path().join("path").exists());
    assert!(
        !runner
            .path()
            .join(format!("ferry-{}/bin/ferry", version()))
            .exists()
    );

    // A version that is not released fails with the URL.
    let missing = action(
        "install",
        runner.path(),
        runner.path(),
        &[
            ("FERRY_VERSION", "9.9.9"),
            ("FERRY_RELEASES", base.as_str()),
        ],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("::error::cannot download file://"),
        "{}",
        output_text(&missing)
    );
}

#[test]
fn the_action_writes_the_diff_to_the_job_summary() {
    let repo = TestRepo::new();
    repo.write(
        "ferry.yaml",
        "apps:\n  - name: web\n    source:\n      repo: .\n      path: app\n    destination:\n      namespace: web\n",
    );
    let cm = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: {v}\n"
        )
    };
    repo.write("app/settings.yaml", &cm("info"));
    let base = repo.commit("base");
    repo.write("app/settings.yaml", &cm("debug"));
    let head = repo.commit("debug logs");

    let runner = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_ferry")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = |revision: &str, against: &str| {
        vec![
            ("PATH", path.clone()),
            ("FERRY_COMMAND", "diff".into()),
            ("FERRY_APP", "web".into()),
            ("FERRY_REVISION", revision.to_string()),
            ("FERRY_AGAINST", against.to_string()),
        ]
    };
    let run = |env: Vec<(&str, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        action("run", runner.path(), repo.dir(), &env)
    };

    let changed = run(env(&head, &base));
    assert!(
        changed.status.success(),
        "changes pending is no failure:\n{}",
        output_text(&changed)
    );
    let summary = std::fs::read_to_string(runner.path().join("summary.md")).unwrap();
    assert!(
        summary.starts_with(&format!("### ferry diff web -f ferry.yaml --revision {head} --against {base}\n\nChanges pending:\n\n```diff\n")),
        "{summary}"
    );
    assert!(
        summary.contains("-  level: info\n+  level: debug\n"),
        "{summary}"
    );
    assert!(summary.ends_with("```\n"), "{summary}");
    let output = std::fs::read_to_string(runner.path().join("output")).unwrap();
    assert_eq!(output, "exit-code=1\nchanges=true\n");

    std::fs::remove_file(runner.path().join("output")).unwrap();
    let same = run(env(&head, &head));
    assert!(same.status.success(), "{}", output_text(&same));
    let summary = std::fs::read_to_string(runner.path().join("summary.md")).unwrap();
    assert!(summary.contains("In sync: nothing to change."), "{summary}");
    let output = std::fs::read_to_string(runner.path().join("output")).unwrap();
    assert_eq!(output, "exit-code=0\nchanges=false\n");

    // An error fails the step, and the summary says so.
    std::fs::remove_file(runner.path().join("output")).unwrap();
    let broken = run(env(&head, "0000000000000000000000000000000000000000"));
    assert_eq!(broken.status.code(), Some(2), "{}", output_text(&broken));
    let summary = std::fs::read_to_string(runner.path().join("summary.md")).unwrap();
    assert!(summary.contains(":x: exit code 2"), "{summary}");
    let output = std::fs::read_to_string(runner.path().join("output")).unwrap();
    assert_eq!(output, "exit-code=2\nchanges=false\n");

    let bad = run(vec![
        ("PATH", path.clone()),
        ("FERRY_COMMAND", "delete".into()),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("command \"delete\" is not diff or apply")
    );
}

fn actionlint(dir: &Path, files: &[PathBuf]) -> Output {
    Command::new(ferry_testkit::charts::testbed_binary("actionlint"))
        .args(["-no-color", "-oneline"])
        .args(files)
        .current_dir(dir)
        .output()
        .expect("running actionlint")
}

#[test]
fn actionlint_accepts_the_action_and_the_workflows() {
    let root = workspace_root();
    let example = root.join("examples/llm-app");
    let workflows: Vec<PathBuf> = ["ci.yaml", "cd.yaml"]
        .iter()
        .map(|f| example.join(".github/workflows").join(f))
        .collect();
    let out = actionlint(&example, &workflows);
    assert!(
        out.status.success(),
        "actionlint on the example:\n{}",
        output_text(&out)
    );

    // actionlint checks a local action's metadata and the inputs a workflow gives it:
    // a repository with ferry's action.yml at its root and a workflow using `./`.
    let repo = tempfile::tempdir().unwrap();
    std::fs::copy(root.join("action.yml"), repo.path().join("action.yml")).unwrap();
    std::fs::create_dir_all(repo.path().join(".github/workflows")).unwrap();
    std::fs::create_dir_all(repo.path().join(".git")).unwrap();
    let workflow = repo.path().join(".github/workflows/deploy.yaml");
    let uses = |with: &str| {
        format!(
            "name: deploy\non: [push]\njobs:\n  deploy:\n    runs-on: ubuntu-24.04\n    steps:\n      \
             - uses: actions/checkout@v4\n      - id: ferry\n        uses: ./\n        with:\n{with}      \
             - run: echo \"${{{{ steps.ferry.outputs.changes }}}} ${{{{ steps.ferry.outputs.exit-code }}}}\"\n"
        )
    };
    std::fs::write(
        &workflow,
        uses("          version: 0.1.0\n          command: diff\n          app: web\n          args: --all\n"),
    )
    .unwrap();
    let out = actionlint(repo.path(), std::slice::from_ref(&workflow));
    assert!(
        out.status.success(),
        "actionlint with the action:\n{}",
        output_text(&out)
    );

    // The check is real: an unknown input and a missing required one are reported.
    std::fs::write(
        &workflow,
        uses("          command: diff\n          colour: blue\n"),
    )
    .unwrap();
    let out = actionlint(repo.path(), std::slice::from_ref(&workflow));
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("\"colour\""), "{report}");
    assert!(report.contains("\"version\""), "{report}");
}
