//! The shared checkout cache against real repositories made with the `git` CLI.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ferry_engine::source::{Checkouts, ClusterFacts};
use ferry_model::FerryFile;
use ferry_render::Tools;
use ferry_source::GitCache;

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?} failed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn commit_configmaps(dir: &Path, value: &str) -> String {
    for app in ["a", "b"] {
        let path = dir.join("apps").join(app);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(
            path.join("cm.yaml"),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}\ndata:\n  v: \"{value}\"\n"),
        )
        .unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", value]);
    git(dir, &["rev-parse", "HEAD"])
}

struct Fixture {
    _tmp: tempfile::TempDir,
    repo: String,
    checkouts: Checkouts,
    shas: [String; 2],
}

fn fixture(capacity: usize) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    let shas = [
        commit_configmaps(&work, "one"),
        commit_configmaps(&work, "two"),
    ];
    let cache = GitCache::new(tmp.path().join("cache"));
    let repo = work.display().to_string();
    cache.resolve(&repo, None).unwrap();
    Fixture {
        _tmp: tmp,
        repo,
        checkouts: Checkouts::new(cache, capacity),
        shas,
    }
}

#[tokio::test]
async fn concurrent_renders_of_one_commit_share_one_checkout() {
    let f = fixture(4);
    let gets = (0..16).map(|_| f.checkouts.get(&f.repo, &f.shas[0]));
    let all = futures::future::try_join_all(gets).await.unwrap();
    assert!(
        all.iter().all(|c| Arc::ptr_eq(c, &all[0])),
        "one checkout written"
    );
    assert_eq!(all[0].revision.sha, f.shas[0]);
    let other = f.checkouts.get(&f.repo, &f.shas[1]).await.unwrap();
    assert!(
        !Arc::ptr_eq(&other, &all[0]),
        "another commit, another checkout"
    );

    let file = FerryFile::parse(
        &format!(
            "apps:\n- name: a\n  source: {{repo: {0}, path: apps/a}}\n  destination: {{namespace: ns}}\n\
             - name: b\n  source: {{repo: {0}, path: apps/b}}\n  destination: {{namespace: ns}}\n",
            f.repo
        ),
        Path::new("ferry.yaml"),
    )
    .unwrap();
    let tools = Tools::discover();
    for app in &file.apps {
        let rendered = f
            .checkouts
            .render(
                &tools,
                &app.name,
                &app.spec,
                &f.shas[0],
                &ClusterFacts::default(),
            )
            .await
            .unwrap();
        assert_eq!(rendered.manifests.len(), 1);
        assert_eq!(
            rendered.manifests[0].object["metadata"]["name"],
            app.name.as_str()
        );
        assert_eq!(rendered.manifests[0].object["data"]["v"], "one");
    }
}

#[tokio::test]
async fn evicted_checkouts_are_deleted_after_their_last_render() {
    let f = fixture(1);
    let first = f.checkouts.get(&f.repo, &f.shas[0]).await.unwrap();
    let dir = first.root().to_path_buf();
    assert!(dir.join("apps/a/cm.yaml").is_file());
    let second = f.checkouts.get(&f.repo, &f.shas[1]).await.unwrap();
    assert!(dir.exists(), "still in use by `first`");
    drop(first);
    assert!(!dir.exists(), "evicted and unused: deleted");
    let again = f.checkouts.get(&f.repo, &f.shas[0]).await.unwrap();
    assert_ne!(again.root(), second.root());
    assert!(
        again.root().join("apps/b/cm.yaml").is_file(),
        "written again on demand"
    );
}

#[tokio::test]
async fn a_failed_checkout_is_not_cached() {
    let f = fixture(4);
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let err = f.checkouts.get(&f.repo, missing).await.unwrap_err();
    assert!(err.to_string().contains("0123456"), "{err}");
    assert!(f.checkouts.get(&f.repo, missing).await.is_err());
    assert!(f.checkouts.get(&f.repo, &f.shas[0]).await.is_ok());
}
