//! Private repositories: over HTTP behind basic and bearer authentication (`git
//! http-backend` on loopback), and over SSH (a real `sshd` on loopback) with a key and
//! `known_hosts`. A commit fetched with one credential is not served to another.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use ferry_source::{Credentials, GitCache, SourceError};
use ferry_testkit::TestRepo;
use ferry_testkit::gitserve::{GitHttpServer, HttpAuth, SshServer};

const PASSWORD: &str = "pw-9f2c1e";
const TOKEN: &str = "tok-5a7b3d";

fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn private_repo() -> (TestRepo, String) {
    let repo = TestRepo::new();
    repo.write("deploy/cm.yaml", "kind: ConfigMap\n");
    let sha = repo.commit("private commit");
    (repo, sha)
}

fn secret(id: &str, pairs: &[(&str, &str)]) -> Credentials {
    Credentials::from_keys(id, &keys(pairs)).expect("complete credentials")
}

#[test]
fn https_with_basic_auth_fetches_and_the_commit_stays_with_its_credentials() {
    let (repo, sha) = private_repo();
    let server = GitHttpServer::start(repo.dir(), HttpAuth::Basic("bot".into(), PASSWORD.into()));
    let url = server.url();
    let tmp = tempfile::tempdir().unwrap();
    let cache = GitCache::new(tmp.path()).with_timeout(Duration::from_secs(20));
    let team_a = cache.clone().with_credentials(secret(
        "Secret team-a/git",
        &[("username", "bot"), ("password", PASSWORD)],
    ));

    let rev = team_a
        .resolve(&url, Some("main"))
        .expect("fetch with the Secret");
    assert_eq!(rev.sha, sha);
    assert_eq!(team_a.remote_sha(&url, None).unwrap(), sha);
    let checkout = team_a.checkout(&url, Some(&sha)).unwrap();
    assert!(checkout.root().join("deploy/cm.yaml").is_file());

    // Another tenant asks for the same repository and the full SHA, which the full-SHA
    // fast path would serve from a mirror holding it: with no credentials, with a wrong
    // password under another Secret, it gets nothing.
    let anonymous = cache.clone().with_credentials(Credentials::anonymous());
    let wrong = cache.clone().with_credentials(secret(
        "Secret team-b/git",
        &[("username", "bot"), ("password", "guess")],
    ));
    let refused_before = server.refused();
    for (who, cache) in [("anonymous", &anonymous), ("wrong password", &wrong)] {
        let err = cache
            .checkout(&url, Some(&sha))
            .expect_err("another tenant cannot fetch the private commit");
        assert!(
            matches!(err, SourceError::Unreachable { .. }),
            "{who}: {err:?}"
        );
        let text = err.to_string();
        assert!(!text.contains(PASSWORD), "{who}: {text}");
        let err = cache.resolve(&url, Some(&sha)).expect_err("nor resolve it");
        assert!(!err.to_string().contains(PASSWORD));
    }
    assert!(server.refused() > refused_before, "the server was asked");
    // The mirrors are separate directories, one per credential.
    let mirrors = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".git"))
        .count();
    assert_eq!(mirrors, 3);
}

#[test]
fn https_with_a_bearer_token_fetches() {
    let (repo, sha) = private_repo();
    let server = GitHttpServer::start(repo.dir(), HttpAuth::Bearer(TOKEN.into()));
    let tmp = tempfile::tempdir().unwrap();
    let cache = GitCache::new(tmp.path())
        .with_timeout(Duration::from_secs(20))
        .with_credentials(secret("Secret team-a/token", &[("bearerToken", TOKEN)]));
    assert_eq!(cache.resolve(&server.url(), None).unwrap().sha, sha);
    let other = GitCache::new(tmp.path())
        .with_timeout(Duration::from_secs(20))
        .with_credentials(secret("Secret team-b/token", &[("bearerToken", "other")]));
    let err = other.resolve(&server.url(), Some(&sha)).unwrap_err();
    assert!(!err.to_string().contains(TOKEN), "{err}");
}

#[test]
fn ssh_with_a_key_checks_the_host_key() {
    let (repo, sha) = private_repo();
    let server = SshServer::start();
    let url = server.url(repo.dir());
    let tmp = tempfile::tempdir().unwrap();
    let cache = GitCache::new(tmp.path()).with_timeout(Duration::from_secs(20));
    let key = server.client_key();
    let with = |id: &str, known_hosts: &str| {
        cache.clone().with_credentials(secret(
            id,
            &[("identity", key.as_str()), ("known_hosts", known_hosts)],
        ))
    };

    let team_a = with("Secret team-a/ssh", &server.known_hosts());
    assert_eq!(team_a.resolve(&url, None).expect("fetch over SSH").sha, sha);
    assert_eq!(team_a.remote_sha(&url, Some("main")).unwrap(), sha);

    let start = Instant::now();
    let err = with("Secret team-a/ssh-wrong", &server.wrong_known_hosts())
        .resolve(&url, Some(&sha))
        .expect_err("another host key");
    assert!(
        matches!(err, SourceError::HostKeyRejected { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(err.to_string().contains("SSH host key rejected"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));

    let err = cache
        .clone()
        .with_credentials(Credentials::anonymous())
        .resolve(&url, Some(&sha))
        .expect_err("SSH without a key");
    assert!(matches!(err, SourceError::Credentials { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("needs credentials with identity and known_hosts")
    );

    // Another key (not in authorized_keys) does not get the commit team-a fetched.
    let stranger = tempfile::tempdir().unwrap();
    let key_path = stranger.path().join("k");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key_path)
        .status()
        .unwrap();
    assert!(made.success());
    let other_key = std::fs::read_to_string(&key_path).unwrap();
    let err = cache
        .clone()
        .with_credentials(secret(
            "Secret team-b/ssh",
            &[
                ("identity", &other_key),
                ("known_hosts", &server.known_hosts()),
            ],
        ))
        .checkout(&url, Some(&sha))
        .expect_err("a key the server does not know");
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("Permission denied"), "{err}");
}

#[test]
fn an_ssh_fetch_from_a_black_hole_ends_at_its_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let cache = GitCache::new(tmp.path())
        .with_timeout(Duration::from_secs(2))
        .with_credentials(secret(
            "Secret team-a/ssh",
            &[
                ("identity", "not a key"),
                ("known_hosts", "[127.0.0.1]:1 ssh-ed25519 AAAA"),
            ],
        ));
    let url = format!("ssh://git@127.0.0.1:{port}/team/app.git");
    let start = Instant::now();
    let err = cache.resolve(&url, None).expect_err("nothing answers");
    assert!(matches!(err, SourceError::TimedOut { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn credentials_must_fit_the_scheme() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = GitCache::new(tmp.path()).with_credentials(secret(
        "Secret team-a/git",
        &[("username", "bot"), ("password", PASSWORD)],
    ));
    let err = cache
        .resolve("ssh://git@127.0.0.1:1/r.git", None)
        .unwrap_err();
    assert!(matches!(err, SourceError::Credentials { .. }), "{err:?}");
    assert!(
        err.to_string().contains(
            "Secret team-a/git: a username/password or bearerToken is only for http(s)://"
        ),
        "{err}"
    );
    let err = cache
        .resolve("http://git.example.com/r.git", None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("never sent in clear text: use https://"),
        "{err}"
    );
}
