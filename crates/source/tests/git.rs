//! Tests against real repositories created with the `git` CLI in temporary directories.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_source::{GitCache, SourceError};
use ferry_testkit::TestRepo;
use tempfile::TempDir;

/// A repository with branch `main` (HEAD), a branch `feature`, an annotated tag
/// `v1` and a lightweight tag `light`.
struct Fixture {
    work: TestRepo,
    /// Holds the cache (and whatever else a test puts beside it).
    tmp: TempDir,
    cache: GitCache,
    /// First commit (tagged `v1` and `light`, parent of `feature`).
    c1: String,
    /// Second commit on `main`.
    c2: String,
    /// Commit on `feature`.
    c3: String,
}

impl Fixture {
    fn new() -> Self {
        let work = TestRepo::new();
        work.write("apps/web/deploy.yaml", "kind: Deployment\n");
        let c1 = work.commit("first commit\n\nwith a body\nover lines");
        work.tag("v1", Some("release 1"));
        work.tag("light", None);
        work.git(&["checkout", "-q", "-b", "feature"]);
        work.write("feature.txt", "feature\n");
        let c3 = work.commit("feature work");
        work.git(&["checkout", "-q", "main"]);
        work.write("apps/web/service.yaml", "kind: Service\n");
        let c2 = work.commit("second commit");
        let tmp = TempDir::new().unwrap();
        let cache = GitCache::new(tmp.path().join("cache"));
        Self {
            work,
            tmp,
            cache,
            c1,
            c2,
            c3,
        }
    }

    fn repo(&self) -> String {
        self.work.path().to_string()
    }

    fn sha(&self, git_ref: Option<&str>) -> String {
        self.cache.resolve(&self.repo(), git_ref).unwrap().sha
    }

    /// The single bare mirror in the cache.
    fn mirror_dir(&self) -> PathBuf {
        let mirrors: Vec<PathBuf> = std::fs::read_dir(self.cache.root())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "git"))
            .collect();
        assert_eq!(mirrors.len(), 1, "one mirror per repository: {mirrors:?}");
        mirrors[0].clone()
    }
}

#[test]
fn resolves_head_branches_tags_and_shas() {
    let f = Fixture::new();
    let head = f.cache.resolve(&f.repo(), None).unwrap();
    assert_eq!(head.sha, f.c2);
    assert_eq!(head.message, "second commit");
    assert_eq!(head.author, "Ada Author");
    let author_time: i64 = f
        .work
        .git(&["log", "-1", "--format=%at", &f.c2])
        .parse()
        .unwrap();
    assert_eq!(head.time, author_time);
    assert_eq!(head.short_sha(), &f.c2[..7]);

    assert_eq!(f.sha(Some("HEAD")), f.c2);
    assert_eq!(f.sha(Some("main")), f.c2);
    assert_eq!(f.sha(Some("refs/heads/main")), f.c2);
    assert_eq!(f.sha(Some("feature")), f.c3);
    assert_eq!(
        f.sha(Some("v1")),
        f.c1,
        "annotated tag peeled to its commit"
    );
    assert_eq!(f.sha(Some("light")), f.c1);
    assert_eq!(f.sha(Some(&f.c1)), f.c1);
    assert_eq!(f.sha(Some(&f.c3[..7])), f.c3);
    assert_eq!(f.sha(Some(&f.c1.to_uppercase()[..10])), f.c1);

    let first = f.cache.resolve(&f.repo(), Some("v1")).unwrap();
    assert_eq!(first.message, "first commit", "subject line only");
}

#[test]
fn sees_new_commits_and_deleted_branches_on_next_resolve() {
    let f = Fixture::new();
    assert_eq!(f.sha(None), f.c2);
    assert_eq!(f.sha(Some("feature")), f.c3);
    let mirror = f.mirror_dir();

    f.work.write("apps/web/config.yaml", "kind: ConfigMap\n");
    let c4 = f.work.commit("third commit");
    f.work.git(&["branch", "-D", "-q", "feature"]);
    f.work.git(&["tag", "-d", "light"]);

    let rev = f.cache.resolve(&f.repo(), None).unwrap();
    assert_eq!(rev.sha, c4);
    assert_eq!(rev.message, "third commit");
    assert_eq!(f.mirror_dir(), mirror, "the mirror is reused");
    for gone in ["feature", "light"] {
        let err = f.cache.resolve(&f.repo(), Some(gone)).unwrap_err();
        assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    }
    // A commit that is no longer on any branch stays resolvable by SHA once fetched.
    assert_eq!(f.sha(Some(&f.c3)), f.c3);
}

#[test]
fn follows_remote_head_changes() {
    let f = Fixture::new();
    assert_eq!(f.sha(None), f.c2);
    f.work.git(&["checkout", "-q", "feature"]);
    assert_eq!(f.sha(None), f.c3);
}

#[test]
fn file_urls_relative_paths_and_bare_repositories() {
    let f = Fixture::new();
    let url = format!("file://{}", f.work.dir().display());
    assert_eq!(f.cache.resolve(&url, Some("main")).unwrap().sha, f.c2);

    let cwd = std::env::current_dir().unwrap();
    let relative = relative_path(&cwd, f.work.dir());
    assert!(relative.is_relative());
    let rev = f
        .cache
        .resolve(relative.to_str().unwrap(), Some("feature"))
        .unwrap();
    assert_eq!(rev.sha, f.c3);
    assert_eq!(f.sha(None), f.c2);
    f.mirror_dir(); // the three spellings share one mirror

    let bare = f.tmp.path().join("bare.git");
    let bare = bare.to_string_lossy().into_owned();
    f.work.git(&["clone", "-q", "--bare", ".", &bare]);
    assert_eq!(f.cache.resolve(&bare, None).unwrap().sha, f.c2);
    let checkout = f.cache.checkout(&bare, Some("v1")).unwrap();
    assert!(checkout.root().join("apps/web/deploy.yaml").is_file());
}

/// `to` relative to the directory `from`, both absolute.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

#[test]
fn unknown_ref_is_terminal_and_named() {
    let f = Fixture::new();
    let err = f.cache.resolve(&f.repo(), Some("nope")).unwrap_err();
    assert!(!err.is_transient());
    let text = err.to_string();
    assert_eq!(
        text,
        format!(
            "repository {}: ref \"nope\" not found (no branch, tag or commit matches)",
            f.repo()
        )
    );
    let err = f.cache.resolve(&f.repo(), Some("deadbeef")).unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    let err = f
        .cache
        .checkout(&f.repo(), Some("no such..ref"))
        .unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
}

#[test]
fn unreachable_repository_is_transient_and_not_a_repository_is_terminal() {
    let tmp = TempDir::new().unwrap();
    let cache = GitCache::new(tmp.path().join("cache"));
    let missing = tmp.path().join("does-not-exist");
    let missing = missing.to_str().unwrap();
    for err in [
        cache.resolve(missing, None).unwrap_err(),
        cache.remote_sha(missing, None).unwrap_err(),
    ] {
        assert!(err.is_transient(), "{err}");
        let text = err.to_string();
        assert!(text.contains(missing), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
    let file_url = format!("file://{missing}");
    let err = cache.resolve(&file_url, None).unwrap_err();
    assert!(err.is_transient(), "{err}");

    let plain = tmp.path().join("plain-dir");
    std::fs::create_dir(&plain).unwrap();
    let err = cache.resolve(plain.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(err, SourceError::NotARepository { .. }), "{err}");
    assert!(!err.is_transient());

    let empty = TestRepo::new();
    let err = cache.resolve(empty.path(), None).unwrap_err();
    assert!(matches!(err, SourceError::NoHead { .. }), "{err}");
    assert!(!err.is_transient());
}

#[test]
fn unreachable_network_remote_is_transient() {
    let tmp = TempDir::new().unwrap();
    let cache = GitCache::new(tmp.path().join("cache"));
    // Nothing listens on port 1 of localhost: the connection is refused at once.
    let url = "http://127.0.0.1:1/repo.git";
    let err = cache.resolve(url, None).unwrap_err();
    assert!(err.is_transient(), "{err}");
    let text = err.to_string();
    assert!(text.starts_with(&format!("repository {url}: ")), "{text}");
    assert!(!text.contains('\n'), "{text}");

    let with_token = "http://user:s3cr3t@127.0.0.1:1/repo.git";
    let err = cache.remote_sha(with_token, None).unwrap_err();
    assert!(err.is_transient(), "{err}");
    let text = err.to_string();
    assert!(!text.contains("s3cr3t"), "password redacted: {text}");
    assert!(text.contains("user:***@127.0.0.1"), "{text}");
}

#[test]
fn public_types_can_cross_threads() {
    fn check<T: Send + Sync>() {}
    check::<GitCache>();
    check::<ferry_source::Revision>();
    check::<ferry_source::Checkout>();
    check::<SourceError>();
}

#[test]
fn ambiguous_short_sha_is_an_error() {
    let work = TestRepo::new();
    // Among 1500 distinct blobs two all but certainly share a 4-digit prefix (and,
    // as blob ids depend only on content, the same two on every run): find such a
    // pair by hashing contents, then commit just that pair.
    let mut first_by_prefix = std::collections::HashMap::new();
    let (prefix, pair) = (0..1500)
        .map(|i| i.to_string())
        .find_map(|name| {
            let content = format!("{name}\n");
            let id = gix::objs::compute_hash(
                gix::hash::Kind::Sha1,
                gix::objs::Kind::Blob,
                content.as_bytes(),
            )
            .unwrap();
            let prefix = id.to_string()[..4].to_string();
            let other = first_by_prefix.insert(prefix.clone(), name.clone())?;
            Some((prefix, [other, name]))
        })
        .expect("some 4-digit prefix is shared");
    for name in &pair {
        work.write(name, &format!("{name}\n"));
    }
    work.commit("two blobs with a common prefix");
    let tmp = TempDir::new().unwrap();
    let cache = GitCache::new(tmp.path().join("cache"));
    let err = cache.resolve(work.path(), Some(&prefix)).unwrap_err();
    assert!(matches!(err, SourceError::AmbiguousRef { .. }), "{err}");
    assert!(!err.is_transient());
}

#[test]
fn checkout_writes_files_and_confines_app_paths() {
    let f = Fixture::new();
    f.work.write("scripts/run.sh", "#!/bin/sh\n");
    use std::os::unix::fs::PermissionsExt;
    let script = f.work.dir().join("scripts/run.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("web", f.work.dir().join("apps/web-link")).unwrap();
    std::os::unix::fs::symlink("deploy.yaml", f.work.dir().join("apps/web/alias.yaml")).unwrap();
    std::fs::create_dir_all(f.work.dir().join("other")).unwrap();
    std::os::unix::fs::symlink("..", f.work.dir().join("other/up")).unwrap();
    std::fs::create_dir_all(f.work.dir().join("bad/evil")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", f.work.dir().join("bad/evil/passwd")).unwrap();
    std::os::unix::fs::symlink("../..", f.work.dir().join("bad/evil-rel")).unwrap();
    let sha = f.work.commit("layout");

    let checkout = f.cache.checkout(&f.repo(), None).unwrap();
    assert_eq!(checkout.revision.sha, sha);
    let root = checkout.root().to_path_buf();
    assert!(!root.starts_with(f.cache.root()), "never inside the cache");
    assert!(!root.join(".git").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("apps/web/deploy.yaml")).unwrap(),
        "kind: Deployment\n"
    );
    assert!(!root.join("feature.txt").exists(), "only main's tree");
    assert_eq!(
        std::fs::read_link(root.join("apps/web/alias.yaml")).unwrap(),
        Path::new("deploy.yaml")
    );
    let mode = std::fs::metadata(root.join("scripts/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert!(mode & 0o100 != 0, "executable bit kept: {mode:o}");

    assert_eq!(checkout.app_dir("apps/web").unwrap(), root.join("apps/web"));
    assert_eq!(
        checkout.app_dir("apps/web/").unwrap(),
        root.join("apps/web")
    );
    assert_eq!(
        checkout.app_dir("apps/web-link").unwrap(),
        root.join("apps/web"),
        "a symlink that stays inside is resolved"
    );
    assert_eq!(
        checkout.app_dir("apps/../apps/web").unwrap(),
        root.join("apps/web")
    );
    assert_eq!(checkout.app_dir("apps").unwrap(), root.join("apps"));
    assert_eq!(
        checkout.app_dir("other/up/apps/web").unwrap(),
        root.join("apps/web")
    );

    let short = &sha[..7];
    let rejected = |path: &str| {
        let err = checkout.app_dir(path).unwrap_err();
        assert!(
            matches!(err, SourceError::PathEscapes { .. }),
            "{path}: {err}"
        );
        assert!(!err.is_transient());
        err.to_string()
    };
    let text = rejected("../outside");
    assert_eq!(
        text,
        format!(
            "path \"../outside\" in {}@{short} is not allowed: \"..\" leaves the checkout",
            f.repo()
        )
    );
    rejected("apps/../../x");
    assert!(rejected("/etc").contains("absolute"));
    assert!(rejected("bad/evil-rel").contains("symlink \"bad/evil-rel\""));
    assert!(rejected("bad/evil-rel/etc").contains("points outside the checkout"));
    let text = rejected("bad/evil");
    assert!(text.contains("symlink \"bad/evil/passwd\""), "{text}");
    // The root contains `bad/evil`, and `other/up` leads back to the root.
    rejected("");
    rejected("other");

    let err = checkout.app_dir("nope").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("path \"nope\" does not exist in {}@{short}", f.repo())
    );
    assert!(!err.is_transient());
    let err = checkout.app_dir("apps/web/deploy.yaml").unwrap_err();
    assert!(matches!(err, SourceError::NotADirectory { .. }), "{err}");

    let dir = root.clone();
    drop(checkout);
    assert!(!dir.exists(), "the checkout is removed on drop");
}

#[test]
fn checkout_rejects_unsafe_tree_entries() {
    let f = Fixture::new();
    let blob = f.work.git(&["hash-object", "-w", "apps/web/deploy.yaml"]);
    for name in ["..", ".GIT"] {
        let tree = f
            .work
            .git_stdin(&["mktree"], &format!("100644 blob {blob}\t{name}\n"));
        let sha = f.work.git(&["commit-tree", &tree, "-m", "evil"]);
        f.work.git(&["update-ref", "refs/heads/evil", &sha]);
        let err = f.cache.checkout(&f.repo(), Some("evil")).unwrap_err();
        assert!(
            matches!(err, SourceError::UnsafeTreeEntry { ref entry, .. } if entry == name),
            "{err}"
        );
        assert!(!err.is_transient());
    }
}

#[test]
fn checkout_of_a_tag_and_a_branch() {
    let f = Fixture::new();
    let v1 = f.cache.checkout(&f.repo(), Some("v1")).unwrap();
    assert_eq!(v1.revision.sha, f.c1);
    assert!(v1.root().join("apps/web/deploy.yaml").is_file());
    assert!(!v1.root().join("apps/web/service.yaml").exists());
    assert_eq!(v1.app_dir("").unwrap(), v1.root());
    assert_eq!(v1.app_dir(".").unwrap(), v1.root());
    assert_eq!(v1.app_dir("./apps").unwrap(), v1.root().join("apps"));
    let feature = f.cache.checkout(&f.repo(), Some("feature")).unwrap();
    assert!(feature.root().join("feature.txt").is_file());
    assert_ne!(v1.root(), feature.root());
}

#[test]
fn remote_sha_lists_without_fetching() {
    let f = Fixture::new();
    let repo = f.repo();
    assert_eq!(f.cache.remote_sha(&repo, None).unwrap(), f.c2);
    assert_eq!(f.cache.remote_sha(&repo, Some("feature")).unwrap(), f.c3);
    assert_eq!(f.cache.remote_sha(&repo, Some("v1")).unwrap(), f.c1);
    assert_eq!(f.cache.remote_sha(&repo, Some(&f.c1)).unwrap(), f.c1);
    let err = f.cache.remote_sha(&repo, Some("nope")).unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");

    let mirror = f.mirror_dir();
    let fetched = |sha: &str| {
        Command::new("git")
            .args(["--git-dir", mirror.to_str().unwrap(), "cat-file", "-e", sha])
            .status()
            .unwrap()
            .success()
    };
    assert!(!fetched(&f.c2), "remote_sha fetched no objects");

    // A short SHA needs objects: it is expanded from the cache, fetching once.
    assert_eq!(f.cache.remote_sha(&repo, Some(&f.c3[..8])).unwrap(), f.c3);
    assert!(fetched(&f.c2));

    let c4 = f.work.commit("new on main");
    assert_eq!(f.cache.remote_sha(&repo, Some("main")).unwrap(), c4);
    assert!(!fetched(&c4));
    assert_eq!(f.sha(None), c4);
}

#[test]
fn concurrent_resolves_of_one_repository_succeed() {
    let f = Fixture::new();
    let repo = f.repo();
    let results: Vec<Result<String, SourceError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let (cache, repo) = (f.cache.clone(), repo.clone());
                s.spawn(move || {
                    let git_ref = if i == 0 { None } else { Some("main") };
                    cache.resolve(&repo, git_ref).map(|r| r.sha)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in results {
        assert_eq!(result.unwrap(), f.c2);
    }
    f.mirror_dir();
}

#[test]
fn fetch_waits_for_the_lock_file_held_elsewhere() {
    let f = Fixture::new();
    assert_eq!(f.sha(None), f.c2);
    let lock_path = std::fs::read_dir(f.cache.root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "lock"))
        .expect("a lock file next to the mirror");
    // Another process would hold it through its own open file, like this one.
    let held = std::fs::File::open(&lock_path).unwrap();
    held.lock().unwrap();
    let c4 = f.work.commit("while locked");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| f.cache.resolve(&f.repo(), None).map(|r| r.sha));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!waiter.is_finished(), "resolve waits for the lock");
        // remote_sha only lists refs and does not wait.
        assert_eq!(f.cache.remote_sha(&f.repo(), None).unwrap(), c4);
        held.unlock().unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), c4);
    });
}

#[test]
fn invalid_repository_string_is_terminal() {
    let cache = GitCache::new(TempDir::new().unwrap().path().join("cache"));
    let err = cache.resolve("", None).unwrap_err();
    assert!(matches!(err, SourceError::InvalidUrl { .. }), "{err}");
    assert!(!err.is_transient());
}

/// A process killed mid-fetch leaves Git lock files in the mirror; the next fetch (under
/// the mirror lock, which died with that process) removes them instead of failing forever.
#[test]
fn stale_lock_files_of_a_killed_fetch_are_cleared() {
    let f = Fixture::new();
    assert_eq!(f.sha(None), f.c2);
    let mirror = std::fs::read_dir(f.cache.root())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "git"))
        .expect("a mirror directory");
    let refs = mirror.join("refs");
    let mut stale = Vec::new();
    for dir in std::fs::read_dir(&refs).unwrap().flatten() {
        if dir.path().is_dir() {
            let lock = dir.path().join("HEAD.lock");
            std::fs::write(&lock, "").unwrap();
            stale.push(lock);
        }
    }
    std::fs::write(mirror.join("packed-refs.lock"), "").unwrap();
    stale.push(mirror.join("packed-refs.lock"));
    assert!(stale.len() >= 2, "{stale:?}");

    f.work.write("later.txt", "later\n");
    let c4 = f.work.commit("later");
    assert_eq!(f.sha(None), c4, "fetched despite the stale locks");
    for lock in stale {
        assert!(!lock.exists(), "{} left behind", lock.display());
    }
}
