//! Fetch deadlines against remotes that fail: one that accepts connections and never
//! answers, and one that refuses them.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use ferry_source::{GitCache, SourceError};

const TIMEOUT: Duration = Duration::from_secs(2);

/// A loopback listener that accepts connections and never answers; its URL.
fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a black hole");
    let url = format!("http://{}/team/app.git", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    url
}

/// Resolves `url`, which must fail with `TimedOut` within [`TIMEOUT`] and 2 s more (a
/// second attempt too: the first released the mirror's lock); returns the error.
fn resolve_times_out(cache: &GitCache, url: &str, attempt: &str) -> SourceError {
    let start = Instant::now();
    let err = cache.resolve(url, None).expect_err("no answer");
    let took = start.elapsed();
    assert!(
        matches!(err, SourceError::TimedOut { .. }),
        "{attempt}: {err:?}"
    );
    assert!(
        (TIMEOUT..TIMEOUT + Duration::from_secs(2)).contains(&took),
        "{attempt}: {took:?}"
    );
    err
}

#[test]
fn a_fetch_from_a_black_hole_ends_at_its_deadline_and_releases_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = GitCache::new(tmp.path()).with_timeout(TIMEOUT);
    let url = black_hole();
    for attempt in ["first", "second"] {
        let err = resolve_times_out(&cache, &url, attempt);
        assert_eq!(
            err.to_string(),
            format!("repository {url}: fetch timed out after 2 s")
        );
        assert!(err.is_transient());
    }
    let start = Instant::now();
    let err = cache
        .remote_sha(&url, Some("main"))
        .expect_err("nothing answers");
    assert!(matches!(err, SourceError::TimedOut { .. }), "{err:?}");
    assert!(start.elapsed() < TIMEOUT + Duration::from_secs(2));
}

#[test]
fn a_refused_connection_fails_at_once_naming_the_remote() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/team/gone.git");
    let tmp = tempfile::tempdir().unwrap();
    let cache = GitCache::new(tmp.path()).with_timeout(Duration::from_secs(30));
    let start = Instant::now();
    let err = cache.resolve(&url, None).expect_err("refused");
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("repository {url}: cannot fetch: ")),
        "{err}"
    );
    assert!(err.is_transient());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// A local repository whose `git-upload-pack` hangs: its `packed-refs` is a FIFO nobody
/// writes, so listing the refs blocks in `open`. Restored on drop.
struct HungLocalRepo {
    repo: ferry_testkit::TestRepo,
    packed: Vec<u8>,
}

impl HungLocalRepo {
    fn new() -> Self {
        let repo = ferry_testkit::TestRepo::new();
        repo.write("app/cm.yaml", "kind: ConfigMap\n");
        repo.commit("one");
        repo.git(&["pack-refs", "--all"]);
        let path = repo.dir().join(".git/packed-refs");
        let packed = std::fs::read(&path).expect("packed refs");
        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("running mkfifo");
        assert!(made.success());
        Self { repo, packed }
    }

    /// Puts the real `packed-refs` back: the repository answers again.
    fn restore(&self) {
        let path = self.repo.dir().join(".git/packed-refs");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, &self.packed).unwrap();
    }
}

#[test]
fn a_hung_local_upload_pack_is_killed_at_the_deadline_and_the_lock_released() {
    let hung = HungLocalRepo::new();
    let tmp = tempfile::tempdir().unwrap();
    let cache = GitCache::new(tmp.path()).with_timeout(TIMEOUT);
    let url = hung.repo.path().to_string();
    for attempt in ["first", "second"] {
        resolve_times_out(&cache, &url, attempt);
    }
    let start = Instant::now();
    let err = cache.remote_sha(&url, None).expect_err("upload-pack hangs");
    assert!(matches!(err, SourceError::TimedOut { .. }), "{err:?}");
    assert!(start.elapsed() < TIMEOUT + Duration::from_secs(2));
    // The lock was released and the mirror is intact: the next fetch succeeds.
    hung.restore();
    let rev = cache
        .resolve(&url, None)
        .expect("the repository answers again");
    assert_eq!(rev.sha, hung.repo.head());
}
