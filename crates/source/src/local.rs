//! The transport to a local repository: gix's protocol over the pipes of a
//! `git-upload-pack` child that ferry spawns itself (gix's own file transport keeps its
//! child to itself), so that the child is killed at the fetch's deadline.

use std::any::Any;
use std::borrow::Cow;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use gix::bstr::{BStr, BString};
use gix::protocol::transport::client::blocking_io::{RequestWriter, SetServiceResponse, Transport};
use gix::protocol::transport::client::git::ConnectMode;
use gix::protocol::transport::client::git::blocking_io::Connection;
use gix::protocol::transport::client::{self, MessageKind, TransportWithoutIO, WriteMode};
use gix::protocol::transport::{Protocol, Service};

/// Environment variables of the agent's own Git setup that must not reach the child
/// (gix's file transport removes the same).
const ENV_VARS_TO_REMOVE: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
    "GIT_CONFIG_COUNT",
];

/// A transport to the repository at `path` whose `git-upload-pack` (spawned at the
/// handshake) is killed at `deadline`, and killed and reaped when the transport drops.
pub(crate) struct UploadPack {
    path: PathBuf,
    /// `path` as gix spells it.
    url_path: BString,
    deadline: Instant,
    connection: Option<Connection<ChildStdout, ChildStdin>>,
    child: Option<Arc<Mutex<Child>>>,
    /// Dropping it stops the watchdog.
    stop: Option<mpsc::Sender<()>>,
}

impl UploadPack {
    /// A transport to `path`, a local repository (the path of the URL `url`), for a
    /// fetch ending at `deadline`.
    pub(crate) fn new(path: &Path, url: &gix::Url, deadline: Instant) -> Self {
        Self {
            path: path.to_path_buf(),
            url_path: url.path.clone(),
            deadline,
            connection: None,
            child: None,
            stop: None,
        }
    }

    /// Spawns `git-upload-pack <path>` (or `git upload-pack` when the former is not on
    /// `PATH`) speaking protocol version 2, and a watchdog killing it at the deadline.
    fn spawn(&mut self) -> Result<(ChildStdout, ChildStdin), client::Error> {
        let path = &self.path;
        let command = |program: &str, args: &[&str]| {
            let mut command = Command::new(program);
            command
                .args(args)
                .arg(path)
                .env("GIT_PROTOCOL", "version=2")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            for name in ENV_VARS_TO_REMOVE {
                command.env_remove(name);
            }
            command
        };
        let invoke_failed = |source, name: &str| client::Error::InvokeProgram {
            source,
            command: name.into(),
        };
        let mut child =
            match command("git-upload-pack", &[]).spawn() {
                Err(e) if e.kind() == ErrorKind::NotFound => command("git", &["upload-pack"])
                    .spawn()
                    .map_err(|e| invoke_failed(e, "git upload-pack"))?,
                spawned => spawned.map_err(|e| invoke_failed(e, "git-upload-pack"))?,
            };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take().expect("stdin is piped");
        let child = Arc::new(Mutex::new(child));
        let (stop, stopped) = mpsc::channel::<()>();
        let watched = child.clone();
        let at = self.deadline;
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(at.saturating_duration_since(Instant::now()))
            {
                let _ = watched.lock().unwrap_or_else(|e| e.into_inner()).kill();
            }
        });
        self.child = Some(child);
        self.stop = Some(stop);
        Ok((stdout, stdin))
    }

    fn connection(&mut self) -> Result<&mut Connection<ChildStdout, ChildStdin>, client::Error> {
        self.connection
            .as_mut()
            .ok_or(client::Error::MissingHandshake)
    }
}

impl Drop for UploadPack {
    fn drop(&mut self) {
        self.stop.take();
        self.connection.take();
        if let Some(child) = self.child.take() {
            let mut child = child.lock().unwrap_or_else(|e| e.into_inner());
            // Done or not, it goes now (a fetch that failed may have left it waiting).
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl TransportWithoutIO for UploadPack {
    fn to_url(&self) -> Cow<'_, BStr> {
        let mut url = BString::from("file://");
        url.extend_from_slice(&self.url_path);
        Cow::Owned(url)
    }

    fn connection_persists_across_multiple_requests(&self) -> bool {
        true
    }

    fn configure(&mut self, _config: &dyn Any) -> gix::Result {
        Ok(())
    }
}

impl Transport for UploadPack {
    fn handshake<'a>(
        &mut self,
        service: Service,
        extra_parameters: &'a [(&'a str, Option<&'a str>)],
    ) -> Result<SetServiceResponse<'_>, client::Error> {
        if service != Service::UploadPack {
            return Err(client::Error::InvokeProgram {
                source: std::io::Error::new(ErrorKind::Unsupported, "only fetches"),
                command: service.as_str().into(),
            });
        }
        if self.connection.is_none() {
            let (stdout, stdin) = self.spawn()?;
            self.connection = Some(Connection::new(
                stdout,
                stdin,
                Protocol::V2,
                self.url_path.clone(),
                None::<(&str, _)>,
                ConnectMode::Process,
                false,
            ));
        }
        self.connection()?.handshake(service, extra_parameters)
    }

    fn request(
        &mut self,
        write_mode: WriteMode,
        on_into_read: MessageKind,
        trace: bool,
    ) -> Result<RequestWriter<'_>, client::Error> {
        self.connection()?.request(write_mode, on_into_read, trace)
    }
}
