//! Helpers for `tests/agent.rs`: the real `ferry agent` as a child process with its own
//! cache, data directory, port and log file, plus small HTTP and wait helpers.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::TESTBED_CONTEXT;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tempfile::TempDir;

/// The longest any single wait in these tests may take: a wait returns as soon as what it
/// waits for holds, so this only bounds a failure. The suite's cluster tests share one
/// test bed, which runs slower for a while after the fault tests restart its components
/// (once, there, a failed hook Job was not in the history after 30 s).
pub const WAIT: Duration = Duration::from_secs(60);

/// One item of a `ferry.yaml` `apps:` list. `extra` is inserted verbatim (lines indented by
/// four spaces, each ending in a newline).
pub fn app_entry(
    name: &str,
    repo: &str,
    path: &str,
    ns: &str,
    interval: &str,
    extra: &str,
) -> String {
    format!(
        "  - name: {name}
    source:
      repo: {repo:?}
      path: {path:?}
    destination:
      namespace: {ns}
    interval: {interval}
{extra}"
    )
}

/// The API path of `app`: `namespace/name` as given, or a ferry.yaml app's name in
/// `ferry-system`.
pub fn app_path(app: &str) -> String {
    match app.contains('/') {
        true => app.to_string(),
        false => format!("ferry-system/{app}"),
    }
}

/// A `ferry.yaml` with these apps.
pub fn apps_file(entries: &[String]) -> String {
    format!("apps:\n{}", entries.concat())
}

/// A free TCP port on 127.0.0.1 (bound and released; a tiny race is accepted).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// `sha256=<hex HMAC-SHA256 of body>`, GitHub's `X-Hub-Signature-256`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The directories an agent keeps across restarts: its `FERRY_CACHE`, its `--data-dir`,
/// and a directory for the apps file and the logs.
pub struct AgentHome {
    pub cache: TempDir,
    pub data: TempDir,
    pub dir: TempDir,
}

impl AgentHome {
    /// A home whose `ferry.yaml` holds `apps_yaml`.
    pub fn new(apps_yaml: &str) -> Self {
        let home = Self {
            cache: tempfile::tempdir().expect("temporary FERRY_CACHE"),
            data: tempfile::tempdir().expect("temporary --data-dir"),
            dir: tempfile::tempdir().expect("temporary agent directory"),
        };
        std::fs::write(home.apps_file(), apps_yaml).expect("writing ferry.yaml");
        home
    }

    /// The apps file.
    pub fn apps_file(&self) -> PathBuf {
        self.dir.path().join("ferry.yaml")
    }
}

/// A running `ferry agent` child process. Dropping it kills the process (SIGKILL); when the
/// test is failing, its log is printed first.
pub struct Agent {
    child: Option<Child>,
    /// A label for messages and the log file name.
    pub name: String,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Agent {
    /// Spawns `ferry agent` for `home` on a free port with `extra` flags and waits until
    /// its HTTP server answers `/healthz`.
    pub async fn start(home: &AgentHome, name: &str, extra: &[&str]) -> Self {
        let mut agent = Self::spawn(home, name, extra);
        agent.wait_ready().await;
        agent
    }

    /// [`Agent::start`] with `env` set for the process (e.g. `FAILPOINTS`, `KUBECONFIG`).
    pub async fn start_with_env(
        home: &AgentHome,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut agent = Self::spawn_with_env(home, name, extra, env);
        agent.wait_ready().await;
        agent
    }

    /// Spawns `ferry agent` without waiting for it.
    pub fn spawn(home: &AgentHome, name: &str, extra: &[&str]) -> Self {
        Self::spawn_with_env(home, name, extra, &[])
    }

    /// [`Agent::spawn`] with `env` set for the process.
    pub fn spawn_with_env(
        home: &AgentHome,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        // A new log file per process, so a restarted agent's log is its own.
        let mut n = 0;
        let log = loop {
            let p = home.dir.path().join(format!("{name}-{n}.log"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let stderr = File::create(&log).expect("creating the agent's log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("agent")
            .arg("--file")
            .arg(home.apps_file())
            .args(["--listen", &listen])
            .arg("--data-dir")
            .arg(home.data.path())
            .args(extra)
            .env("FERRY_CACHE", home.cache.path())
            .env("FERRY_CONTEXT", TESTBED_CONTEXT)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("FERRY_WEBHOOK_SECRET")
            .env_remove("FERRY_SERVER")
            .env_remove("FAILPOINTS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().expect("starting `ferry agent`");
        eprintln!(
            "[{name}] started `ferry agent` pid {} on {listen}, log {}",
            child.id(),
            log.display()
        );
        Self {
            child: Some(child),
            name: name.to_string(),
            url: format!("http://{listen}"),
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }

    /// Waits until `/healthz` answers 200; panics (with the log) if the process exits first.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(resp) = self.http.get(format!("{}/healthz", self.url)).send().await
                && resp.status().is_success()
            {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "[{}] `ferry agent` exited with {status} before serving; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "[{}] `ferry agent` did not serve /healthz within {WAIT:?}; log:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent running").id()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("[{}] killed (SIGKILL)", self.name);
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns the status and how long
    /// the exit took. Panics (after SIGKILL) when the agent does not exit in time.
    pub async fn terminate(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("agent running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the agent") {
                return (status, start.elapsed());
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "[{}] `ferry agent` did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET `path`; the status and the body as text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("[{}] GET {path}: {e}", self.name));
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// GET `path` as JSON (panics unless 200).
    pub async fn get_json(&self, path: &str) -> Value {
        let (status, text) = self.get_text(path).await;
        assert_eq!(status, 200, "[{}] GET {path}: {text}", self.name);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }

    /// One app's status from `GET /api/v1/apps/<namespace>/<name>` (`app` is
    /// `namespace/name`, or the name of an app of the ferry.yaml).
    pub async fn app(&self, app: &str) -> Value {
        self.get_json(&format!("/api/v1/apps/{}", app_path(app)))
            .await
    }

    /// An app's history entries, newest first.
    pub async fn history(&self, app: &str) -> Vec<Value> {
        self.get_json(&format!(
            "/api/v1/apps/{}/history?limit=1000",
            app_path(app)
        ))
        .await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// POST `body` to `path` with `headers`; the status and the body (JSON or text).
    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("[{}] POST {path}: {e}", self.name));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Waits until the agent lists the app (an Application appears once its watch has
    /// seen it).
    pub async fn wait_listed(&self, app: &str) {
        let path = format!("/api/v1/apps/{}", app_path(app));
        let path = &path;
        eventually(&format!("app {app} to be listed"), WAIT, || async move {
            self.get_text(path).await.0 == 200
        })
        .await;
    }

    /// Waits until the app's status satisfies `check`; returns that status.
    pub async fn wait_app(&self, app: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.app(app).await;
            if check(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] app {app}: timed out after {WAIT:?} waiting for {what}; last status:\n{}",
                self.name,
                serde_json::to_string_pretty(&status).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Agent {
    /// Waits until the app's history satisfies `check` (history is written after the
    /// objects, so a test that saw the cluster change waits for it); returns the entries.
    pub async fn wait_history(
        &self,
        app: &str,
        what: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let history = self.history(app).await;
            if check(&history) {
                return history;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] app {app}: timed out after {WAIT:?} waiting for history with {what}; \
                 history:\n{}",
                self.name,
                serde_json::to_string_pretty(&history).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // The log is printed when the test fails, or always with FERRY_TEST_AGENT_LOGS=1.
        if std::thread::panicking() || std::env::var_os("FERRY_TEST_AGENT_LOGS").is_some() {
            eprintln!(
                "----- log of agent [{}] ({}) -----\n{}----- end of log [{}] -----",
                self.name,
                self.log.display(),
                self.log(),
                self.name
            );
        }
        self.kill();
    }
}

/// Polls `check` every 50 ms (fine enough to report latencies) for up to `timeout` until
/// it is true; returns how long it took. Panics naming `what` on timeout.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `check` stays true for `period` (polled every 200 ms).
pub async fn stays<F, Fut>(what: &str, period: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < period {
        assert!(check().await, "{what} did not hold for {period:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(check().await, "{what} did not hold for {period:?}");
}

/// The condition of `kind` (`Ready`, …) in an app status.
pub fn condition<'v>(status: &'v Value, kind: &str) -> &'v Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}
