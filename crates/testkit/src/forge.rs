//! A real Git forge for tests: [`Gitea`], built by `testbed/gitea/build.sh`, run on a
//! free loopback port with its own work directory, SQLite database, an admin user and
//! an API token. Tests push to it over HTTP, point its webhooks at the agent, and read
//! the commit statuses the agent sets.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

/// The admin's user name (also the owner of the repositories [`Gitea::create_repo`] makes).
pub const ADMIN: &str = "ferry";
/// The admin's password.
pub const PASSWORD: &str = "ferry-test-password";

/// How long Gitea may take to answer after starting (migrations of a fresh database).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The test bed's Gitea: `$FERRY_GITEA_HOME` (set by `scripts/env.sh`), else the newest
/// `${FERRY_CACHE:-~/.cache/ferry}/gitea/*` holding `bin/gitea` and its source's `src/`.
///
/// # Panics
///
/// When there is none: run `testbed/gitea/build.sh`.
pub fn gitea_home() -> PathBuf {
    let found = match std::env::var_os("FERRY_GITEA_HOME") {
        Some(home) => Some(PathBuf::from(home)).filter(|h| h.join("bin/gitea").is_file()),
        None => {
            let cache = std::env::var_os("FERRY_CACHE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/ferry")))
                .expect("FERRY_CACHE or HOME");
            std::fs::read_dir(cache.join("gitea"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path())
                .filter(|home| home.join("bin/gitea").is_file())
                .max_by_key(|home| {
                    home.join("bin/gitea")
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                })
        }
    };
    found.unwrap_or_else(|| panic!("the test bed's Gitea is missing: run testbed/gitea/build.sh"))
}

/// A Gitea server run by the test; dropping it stops the server.
pub struct Gitea {
    child: Child,
    url: String,
    token: String,
    http: reqwest::Client,
    dir: TempDir,
}

impl Gitea {
    /// Starts Gitea on a free loopback port (webhooks may target loopback addresses),
    /// creates the admin [`ADMIN`] and an API token, and waits until its API answers.
    pub async fn start() -> Self {
        let home = gitea_home();
        let dir = tempfile::tempdir().expect("gitea work dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let work = dir.path().to_path_buf();
        let work = work.as_path();
        let config = work.join("custom/conf/app.ini");
        std::fs::create_dir_all(config.parent().expect("conf dir")).expect("conf dir");
        std::fs::write(
            &config,
            format!(
                "APP_NAME = ferry test forge
RUN_MODE = prod
WORK_PATH = {work}
[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
ROOT_URL = http://127.0.0.1:{port}/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = {src}
APP_DATA_PATH = {work}/data
[database]
DB_TYPE = sqlite3
PATH = {work}/gitea.db
[security]
INSTALL_LOCK = true
SECRET_KEY = ferry-test-secret-key
ALLOWED_HOST_LIST = loopback
[repository]
ROOT = {work}/repos
[webhook]
DELIVER_TIMEOUT = 10
[service]
DISABLE_REGISTRATION = true
[log]
MODE = console
LEVEL = warn
ROOT_PATH = {work}/log
[cron]
ENABLED = false
[session]
PROVIDER = memory
[cache]
ADAPTER = memory
[mailer]
ENABLED = false
",
                work = work.display(),
                src = home.join("src").display(),
            ),
        )
        .expect("app.ini");
        let log = std::fs::File::create(work.join("gitea.log")).expect("gitea log");
        let child = gitea(&home, work)
            .arg("web")
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting gitea");
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("HTTP client");
        let mut forge = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            token: String::new(),
            http,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let version = forge
                .http
                .get(format!("{}/api/v1/version", forge.url))
                .send();
            if let Ok(answer) = version.await
                && answer.status().is_success()
            {
                break;
            }
            if let Some(status) = forge.child.try_wait().expect("gitea status") {
                panic!("gitea exited at start ({status}):\n{}", forge.log());
            }
            assert!(
                Instant::now() < deadline,
                "gitea on port {port} did not answer within {START_TIMEOUT:?}:\n{}",
                forge.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let created = gitea(&home, work)
            .args(["admin", "user", "create", "--admin", "--username", ADMIN])
            .args(["--password", PASSWORD, "--email", "ferry@example.com"])
            .arg("--must-change-password=false")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .output()
            .expect("gitea admin user create");
        assert!(
            created.status.success(),
            "gitea admin user create: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let token = forge
            .http
            .post(format!("{}/api/v1/users/{ADMIN}/tokens", forge.url))
            .basic_auth(ADMIN, Some(PASSWORD))
            .json(&json!({"name": "ferry-tests", "scopes": ["all"]}))
            .send()
            .await
            .and_then(|a| a.error_for_status())
            .expect("creating an API token");
        let token: Value = token.json().await.expect("the token's JSON");
        forge.token = token["sha1"].as_str().expect("the token").to_string();
        forge
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin's API token (all scopes).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The anonymous clone URL of the admin's repository `name`.
    pub fn clone_url(&self, name: &str) -> String {
        format!("{}/{ADMIN}/{name}.git", self.url)
    }

    /// The clone URL of `name` with the admin's credentials, for `git push`.
    pub fn push_url(&self, name: &str) -> String {
        let (scheme, host) = self.url.split_once("://").expect("a URL");
        format!("{scheme}://{ADMIN}:{PASSWORD}@{host}/{ADMIN}/{name}.git")
    }

    /// Sends `body` to the API path `path` (after `/api/v1`) with the admin's token;
    /// returns the status and the JSON answer (`null` when empty).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.url))
            .header("Authorization", format!("token {}", self.token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("a Gitea API request");
        let status = answer.status().as_u16();
        let text = answer.text().await.expect("the answer's body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates the public repository `name` of the admin, empty, default branch `main`.
    pub async fn create_repo(&self, name: &str) {
        let body = json!({"name": name, "default_branch": "main", "private": false});
        let (status, answer) = self
            .api(reqwest::Method::POST, "/user/repos", Some(body))
            .await;
        assert_eq!(status, 201, "creating repository {name}: {answer}");
    }

    /// Adds a Gitea-type webhook of `repo` for push events, posting JSON to `url`
    /// signed with `secret` (`X-Gitea-Signature`).
    pub async fn add_webhook(&self, repo: &str, url: &str, secret: &str) {
        let body = json!({
            "type": "gitea",
            "active": true,
            "events": ["push"],
            "config": {"url": url, "content_type": "json", "secret": secret},
        });
        let path = format!("/repos/{ADMIN}/{repo}/hooks");
        let (status, answer) = self.api(reqwest::Method::POST, &path, Some(body)).await;
        assert_eq!(status, 201, "adding a webhook to {repo}: {answer}");
    }

    /// The commit statuses of `sha` in `repo`, newest first.
    pub async fn statuses(&self, repo: &str, sha: &str) -> Vec<Value> {
        let path = format!("/repos/{ADMIN}/{repo}/commits/{sha}/statuses");
        let (status, answer) = self.api(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "statuses of {sha}: {answer}");
        answer.as_array().cloned().unwrap_or_default()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gitea.log")).unwrap_or_default()
    }
}

impl Drop for Gitea {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `gitea` command for `home`'s binary in the work directory `work`. Gitea refuses to
/// run as root unless told it may: test machines often run as root.
fn gitea(home: &Path, work: &Path) -> Command {
    let mut cmd = Command::new(home.join("bin/gitea"));
    cmd.current_dir(work)
        .env("GITEA_WORK_DIR", work)
        .env("GITEA_CUSTOM", work.join("custom"))
        .env("GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT", "true")
        .env("HOME", work)
        .stdin(Stdio::null());
    cmd
}
