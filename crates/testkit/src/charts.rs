//! Chart sources for tests: a chart repository served over HTTP by the test itself
//! ([`ChartRepo`], packaged with the real `helm package` and indexed with `helm repo
//! index`) and a real OCI registry ([`Registry`], CNCF distribution's `registry` from the
//! test bed), both on 127.0.0.1 and stopped when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long one `helm` command of a test helper may take.
const HELM_TIMEOUT: Duration = Duration::from_secs(60);

/// A binary of the test bed: `$FERRY_TESTBED_BIN/<name>`, else `<name>` on `PATH`
/// (`scripts/env.sh` puts the test bed's bin dir there), else the newest
/// `${FERRY_CACHE:-~/.cache/ferry}/testbed/*/bin/<name>`.
///
/// # Panics
///
/// When there is none: run `testbed/build.sh`.
pub fn testbed_binary(name: &str) -> PathBuf {
    let found = if std::env::var_os("FERRY_TESTBED_BIN").is_some() {
        pinned_testbed_binary(name)
    } else {
        let on_path = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        });
        on_path.or_else(|| pinned_testbed_binary(name))
    };
    found.unwrap_or_else(|| panic!("the test bed's {name} is missing: run testbed/build.sh"))
}

/// The test bed's own build of a binary, never one found on `PATH`:
/// `$FERRY_TESTBED_BIN/<name>`, else the newest
/// `${FERRY_CACHE:-~/.cache/ferry}/testbed/*/bin/<name>`.
pub fn pinned_testbed_binary(name: &str) -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("FERRY_TESTBED_BIN") {
        return Some(Path::new(&bin).join(name)).filter(|p| p.is_file());
    }
    let cache = std::env::var_os("FERRY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/ferry")))?;
    std::fs::read_dir(cache.join("testbed"))
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("bin").join(name))
        .filter(|path| path.is_file())
        .max_by_key(|path| path.metadata().and_then(|m| m.modified()).ok())
}

/// Runs `helm args…` with `HOME` (and so Helm's homes) in `home`, under [`HELM_TIMEOUT`];
/// returns its output whatever its exit status.
///
/// # Panics
///
/// When helm cannot be started or times out.
pub fn helm_output(home: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(testbed_binary("helm"))
        .args(args)
        .env("HOME", home)
        .env_remove("HELM_CACHE_HOME")
        .env_remove("HELM_CONFIG_HOME")
        .env_remove("HELM_DATA_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting helm");
    let deadline = Instant::now() + HELM_TIMEOUT;
    while child.try_wait().expect("waiting for helm").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("helm {args:?} ran longer than {HELM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("helm output")
}

/// Runs `helm args…` as [`helm_output`] does; returns its stdout.
///
/// # Panics
///
/// When helm fails or times out.
pub fn helm(home: &Path, args: &[&str]) -> String {
    let out = helm_output(home, args);
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Serves the files of a directory over HTTP/1.0 on 127.0.0.1 (GET only, one thread per
/// connection) until dropped, counting the requests.
pub struct FileServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Serves `dir` on a free port.
    pub fn start(dir: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (dir, stopping, counter) = (dir.to_path_buf(), stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let dir = dir.clone();
                        std::thread::spawn(move || serve(&dir, stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            addr,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections were accepted so far (one request each).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request on `stream` with the file under `dir` or 404.
fn serve(dir: &Path, stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let rel = Path::new(
        path.split('?')
            .next()
            .unwrap_or_default()
            .trim_start_matches('/'),
    );
    let safe = rel.components().all(|c| matches!(c, Component::Normal(_)));
    let body = request
        .starts_with("GET ")
        .then_some(())
        .filter(|_| safe)
        .and_then(|_| std::fs::read(dir.join(rel)).ok());
    let mut stream = &stream;
    let _ = match body {
        Some(body) => stream
            .write_all(
                format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
            )
            .and_then(|_| stream.write_all(&body)),
        None => stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    };
}

/// A Helm chart repository: an `index.yaml` and packaged charts in a temporary directory,
/// served by a [`FileServer`].
pub struct ChartRepo {
    dir: TempDir,
    home: TempDir,
    server: FileServer,
}

impl ChartRepo {
    /// An empty repository, served at once.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("chart repository dir");
        let server = FileServer::start(dir.path());
        Self {
            dir,
            home: tempfile::tempdir().expect("helm home"),
            server,
        }
    }

    /// The repository's URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The server (to count requests).
    pub fn server(&self) -> &FileServer {
        &self.server
    }

    /// Packages the chart in `chart` as `version` (`helm package --version`) into the
    /// repository and re-indexes it (`helm repo index --url`).
    pub fn publish(&self, chart: &Path, version: &str) {
        let dest = self.dir.path().to_str().expect("UTF-8 path");
        let chart = chart.to_str().expect("UTF-8 path");
        helm(
            self.home.path(),
            &[
                "package",
                chart,
                "--version",
                version,
                "--destination",
                dest,
            ],
        );
        helm(
            self.home.path(),
            &["repo", "index", dest, "--url", &self.url()],
        );
    }
}

impl Default for ChartRepo {
    fn default() -> Self {
        Self::new()
    }
}

/// CNCF distribution's OCI registry (the test bed's `registry` binary) on a free port of
/// 127.0.0.1 over plain HTTP, storing in a temporary directory; killed when dropped.
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    home: TempDir,
    _dir: TempDir,
}

impl Registry {
    /// Starts a registry and waits until it answers `/v2/`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("registry dir");
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: ferry-tests\n",
                dir.path().join("data").display()
            ),
        )
        .expect("registry config");
        let child = Command::new(testbed_binary("registry"))
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).expect("log"))
            .spawn()
            .expect("starting registry");
        let mut registry = Self {
            child,
            addr,
            home: tempfile::tempdir().expect("helm home"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !registry.answers() {
            if let Some(status) = registry.child.try_wait().expect("registry status") {
                panic!("registry exited at start ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "registry on {addr} did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        let mut line = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && BufReader::new(&stream).read_line(&mut line).is_ok()
            && line.contains(" 200 ")
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Packages the chart in `chart` as `version` and pushes it to
    /// `oci://<host>/<namespace>` (`helm push --plain-http`).
    pub fn push_chart(&self, chart: &Path, version: &str, namespace: &str) {
        let out = tempfile::tempdir().expect("package dir");
        let dest = out.path().to_str().expect("UTF-8 path");
        helm(
            self.home.path(),
            &[
                "package",
                chart.to_str().expect("UTF-8 path"),
                "--version",
                version,
                "--destination",
                dest,
            ],
        );
        let archive = std::fs::read_dir(out.path())
            .expect("package dir")
            .flatten()
            .next()
            .expect("a packaged chart")
            .path();
        let target = format!("oci://{}/{namespace}", self.host());
        helm(
            self.home.path(),
            &[
                "push",
                archive.to_str().expect("UTF-8 path"),
                &target,
                "--plain-http",
            ],
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
