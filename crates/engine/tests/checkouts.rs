//! The shared checkout cache against real repositories made with the `git` CLI.

use std::path::Path;
use std::sync::Arc;

use ferry_engine::source::{Checkouts, ClusterFacts};
use ferry_model::FerryFile;
use ferry_render::Tools;
use ferry_source::{Credentials, GitCache};
use ferry_testkit::TestRepo;

/// Commits a ConfigMap holding `value` into each of `apps/a` and `apps/b`; the commit's SHA.
fn commit_configmaps(work: &TestRepo, value: &str) -> String {
    for app in ["a", "b"] {
        work.write(
            &format!("apps/{app}/cm.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}\ndata:\n  v: \"{value}\"\n"),
        );
    }
    work.commit(value)
}

struct Fixture {
    _work: TestRepo,
    _tmp: tempfile::TempDir,
    repo: String,
    checkouts: Checkouts,
    shas: [String; 2],
}

fn fixture(capacity: usize) -> Fixture {
    let work = TestRepo::new();
    let shas = [
        commit_configmaps(&work, "one"),
        commit_configmaps(&work, "two"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let cache = GitCache::new(tmp.path().join("cache"));
    let repo = work.path().to_string();
    cache.resolve(&repo, None).unwrap();
    Fixture {
        _work: work,
        _tmp: tmp,
        repo,
        checkouts: Checkouts::new(cache, capacity),
        shas,
    }
}

#[tokio::test]
async fn concurrent_renders_of_one_commit_share_one_checkout() {
    let f = fixture(4);
    let ambient = Credentials::ambient();
    let gets = (0..16).map(|_| f.checkouts.get(&f.repo, &ambient, &f.shas[0]));
    let all = futures::future::try_join_all(gets).await.unwrap();
    assert!(
        all.iter().all(|c| Arc::ptr_eq(c, &all[0])),
        "one checkout written"
    );
    assert_eq!(all[0].revision.sha, f.shas[0]);
    let other = f
        .checkouts
        .get(&f.repo, &Credentials::ambient(), &f.shas[1])
        .await
        .unwrap();
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
                &Credentials::ambient(),
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
    let first = f
        .checkouts
        .get(&f.repo, &Credentials::ambient(), &f.shas[0])
        .await
        .unwrap();
    let dir = first.root().to_path_buf();
    assert!(dir.join("apps/a/cm.yaml").is_file());
    let second = f
        .checkouts
        .get(&f.repo, &Credentials::ambient(), &f.shas[1])
        .await
        .unwrap();
    assert!(dir.exists(), "still in use by `first`");
    drop(first);
    assert!(!dir.exists(), "evicted and unused: deleted");
    let again = f
        .checkouts
        .get(&f.repo, &Credentials::ambient(), &f.shas[0])
        .await
        .unwrap();
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
    let err = f
        .checkouts
        .get(&f.repo, &Credentials::ambient(), missing)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("0123456"), "{err}");
    assert!(
        f.checkouts
            .get(&f.repo, &Credentials::ambient(), missing)
            .await
            .is_err()
    );
    assert!(
        f.checkouts
            .get(&f.repo, &Credentials::ambient(), &f.shas[0])
            .await
            .is_ok()
    );
}
