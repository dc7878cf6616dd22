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

#[test]
fn a_fetch_from_a_black_hole_ends_at_its_deadline_and_releases_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = GitCache::new(tmp.path()).with_timeout(TIMEOUT);
    let url = black_hole();
    for attempt in ["first", "second"] {
        let start = Instant::now();
        let err = cache.resolve(&url, None).expect_err("nothing answers");
        let took = start.elapsed();
        assert!(
            matches!(err, SourceError::TimedOut { .. }),
            "{attempt}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("repository {url}: fetch timed out after 2 s")
        );
        assert!(err.is_transient());
        assert!(
            (TIMEOUT..TIMEOUT + Duration::from_secs(2)).contains(&took),
            "{attempt}: {took:?}"
        );
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
