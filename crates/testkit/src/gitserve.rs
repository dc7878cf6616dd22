//! Private Git servers on loopback: Git over HTTP behind basic or bearer authentication
//! ([`GitHttpServer`], `git http-backend` as a CGI program), and Git over SSH
//! ([`SshServer`], a real `sshd` run by the test on a free port with its own host key and
//! `authorized_keys`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// What a [`GitHttpServer`] requires in every request's `Authorization` header.
#[derive(Clone, Debug)]
pub enum HttpAuth {
    /// `Basic` with this user name and password.
    Basic(String, String),
    /// `Bearer` with this token.
    Bearer(String),
    /// None: a public repository.
    None,
}

impl HttpAuth {
    fn header(&self) -> Option<String> {
        Some(match self {
            HttpAuth::Basic(user, password) => {
                use base64::Engine;
                let pair = format!("{user}:{password}");
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            HttpAuth::Bearer(token) => format!("Bearer {token}"),
            HttpAuth::None => return None,
        })
    }
}

/// Serves one repository over HTTP/1.0 on 127.0.0.1 with `git http-backend` (the smart
/// protocol), answering 401 to a request without the right credentials, until dropped.
///
/// # Panics
///
/// When the port cannot be bound.
pub struct GitHttpServer {
    addr: SocketAddr,
    name: String,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl GitHttpServer {
    /// Serves the repository at `repo` (a working copy or a bare repository) requiring `auth`.
    pub fn start(repo: &Path, auth: HttpAuth) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let root = repo
            .parent()
            .expect("a repository in a directory")
            .to_path_buf();
        let name = repo
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 repository name")
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let expected = auth.header();
        let (stopping, counter, refusals) = (stop.clone(), requests.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let (root, expected, refusals) =
                            (root.clone(), expected.clone(), refusals.clone());
                        std::thread::spawn(move || {
                            if !serve_git(&root, expected.as_deref(), stream) {
                                refusals.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            addr,
            name,
            stop,
            requests,
            refused,
            thread: Some(thread),
        }
    }

    /// The repository's URL, `http://127.0.0.1:<port>/<name>`, without credentials.
    pub fn url(&self) -> String {
        format!("http://{}/{}", self.addr, self.name)
    }

    /// How many requests were answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// How many of them were refused with 401.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request: 401 without `expected` authorization, else `git http-backend`'s
/// answer. False when refused.
fn serve_git(root: &Path, expected: Option<&str>, stream: TcpStream) -> bool {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return true;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut out = &stream;
    if expected.is_some_and(|e| header("authorization") != Some(e)) {
        let _ = out.write_all(
            b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\n\r\n",
        );
        return false;
    }
    let body = match (header("content-length"), header("transfer-encoding")) {
        (_, Some(te)) if te.eq_ignore_ascii_case("chunked") => read_chunked(&mut reader),
        (Some(length), _) => {
            let mut body = vec![0; length.parse().unwrap_or(0)];
            reader
                .read_exact(&mut body)
                .map(|()| body)
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or("GET");
    let target = parts.next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let home = std::env::temp_dir();
    let mut child = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header("content-encoding").unwrap_or_default(),
        )
        .env("GIT_PROTOCOL", header("git-protocol").unwrap_or_default())
        .env("REMOTE_USER", "git")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("running git http-backend");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut output = Vec::new();
    let _ = child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut output);
    let _ = writer.join();
    let _ = child.wait();
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else {
        let _ = out.write_all(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
        return true;
    };
    let cgi = String::from_utf8_lossy(&output[..end]).into_owned();
    let mut status = "200 OK".to_string();
    let mut response = String::new();
    for line in cgi.lines() {
        match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => {
                status = value.trim().to_string();
            }
            _ => {
                response.push_str(line.trim_end());
                response.push_str("\r\n");
            }
        }
    }
    let payload = &output[end + gap..];
    let _ = out
        .write_all(
            format!(
                "HTTP/1.0 {status}\r\n{response}Content-Length: {}\r\n\r\n",
                payload.len()
            )
            .as_bytes(),
        )
        .and_then(|()| out.write_all(payload));
    true
}

/// Reads a chunked request body.
fn read_chunked(reader: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            return body;
        }
        let size =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if size == 0 {
            let mut trailer = String::new();
            let _ = reader.read_line(&mut trailer);
            return body;
        }
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            return body;
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// A real `sshd` on 127.0.0.1 and a free port, run by the test (as the test's own user)
/// until dropped: its own host key, one client key in its `authorized_keys`, password
/// logins off. Git is served by the user's own `git-upload-pack`.
///
/// # Panics
///
/// When `ssh-keygen` or `/usr/sbin/sshd` (Debian's `openssh-server`) is missing or
/// `sshd` does not listen within 10 s.
pub struct SshServer {
    dir: TempDir,
    port: u16,
    child: Child,
}

impl SshServer {
    /// Starts the server.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("sshd directory");
        let path = |name: &str| dir.path().join(name);
        keygen(&path("host_key"));
        keygen(&path("client_key"));
        std::fs::copy(path("client_key.pub"), path("authorized_keys"))
            .expect("writing authorized_keys");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {keys}\n\
             PidFile {pid}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             AllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\n",
            host = path("host_key").display(),
            keys = path("authorized_keys").display(),
            pid = path("sshd.pid").display(),
        );
        std::fs::write(path("sshd_config"), config).expect("writing sshd_config");
        // sshd run as root needs its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = std::fs::File::create(path("sshd.log")).expect("sshd log");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("running /usr/sbin/sshd (Debian package openssh-server)");
        let server = Self { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on port {port}: {}",
                std::fs::read_to_string(server.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The `ssh://` URL of the repository at the absolute path `repo` on this server.
    pub fn url(&self, repo: &Path) -> String {
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(whoami);
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, repo.display())
    }

    /// The client's private key (in `authorized_keys`).
    pub fn client_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("client_key")).expect("client key")
    }

    /// A `known_hosts` line for this server's host key.
    pub fn known_hosts(&self) -> String {
        self.known_hosts_with(&self.dir.path().join("host_key.pub"))
    }

    /// A `known_hosts` line naming this server with another (newly made) host key.
    pub fn wrong_known_hosts(&self) -> String {
        let other = self.dir.path().join("other_key");
        if !other.exists() {
            keygen(&other);
        }
        self.known_hosts_with(&other.with_extension("pub"))
    }

    fn known_hosts_with(&self, public: &Path) -> String {
        let key = std::fs::read_to_string(public).expect("public host key");
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        format!("[127.0.0.1]:{} {}\n", self.port, key.join(" "))
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes an ed25519 key pair without a passphrase at `path` (and `path.pub`).
fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry-test", "-f"])
        .arg(path)
        .output()
        .expect("running ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("running id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
