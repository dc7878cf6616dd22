//! One cached bare mirror: locating it, locking, fetching and resolving refs.

use std::collections::HashSet;
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gix::bstr::{BString, ByteSlice};
use gix::refs::transaction::{Change, PreviousValue, RefEdit, RefLog};
use gix::remote::Direction;
use gix::remote::fetch::Status;
use gix::remote::fetch::refs::update::Mode;
use sha2::{Digest, Sha256};

use crate::Revision;
use crate::credentials::{Credentials, SshSession};
use crate::error::{SourceError, gix_line};
use crate::local::UploadPack;

/// Where the remote's `HEAD` commit is recorded in a mirror.
const HEAD_REF: &str = "refs/ferry/HEAD";

/// What a mirror fetches: all branches and tags under their own names, and the remote `HEAD`.
const REFSPECS: [&str; 3] = [
    "+refs/heads/*:refs/heads/*",
    "+refs/tags/*:refs/tags/*",
    "+HEAD:refs/ferry/HEAD",
];

/// Local refs kept in sync with the remote; those the remote no longer has are deleted.
const MIRRORED_PREFIXES: [&str; 3] = ["refs/heads/", "refs/tags/", "refs/ferry/"];

/// A repository's bare mirror in the cache.
pub(crate) struct Mirror {
    /// The repository as the caller spelled it (password redacted), for messages.
    pub(crate) repo: String,
    /// The URL fetched from (local paths made absolute and canonical).
    url: gix::Url,
    /// The local path, when the URL is a local repository.
    local: Option<PathBuf>,
    /// The bare mirror directory.
    dir: PathBuf,
    /// The lock file guarding `dir`.
    lock_path: PathBuf,
    /// What fetches authenticate with.
    credentials: Credentials,
}

/// Holds the exclusive lock of a mirror until dropped.
pub(crate) struct MirrorLock {
    _file: File,
}

/// A connection to a mirror's remote.
type Connection<'a, 'r> = gix::remote::Connection<
    'a,
    'static,
    'r,
    Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>,
>;

/// How often a waiter tries the mirror lock again.
const LOCK_RETRY: Duration = Duration::from_millis(50);

/// A flag raised at a deadline by a timer thread, for gix's `should_interrupt`; the
/// timer stops when this is dropped.
pub(crate) struct Deadline {
    at: Instant,
    timeout: Duration,
    flag: Arc<AtomicBool>,
    _stop: mpsc::Sender<()>,
}

impl Deadline {
    /// A deadline `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Self {
        let at = Instant::now() + timeout;
        let flag = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let raised = flag.clone();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(at.saturating_duration_since(Instant::now()))
            {
                raised.store(true, Ordering::Relaxed);
            }
        });
        Self {
            at,
            timeout,
            flag,
            _stop: stop,
        }
    }

    /// The time left, at least a millisecond (a zero request timeout means none).
    fn remaining(&self) -> Duration {
        self.at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    fn passed(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || Instant::now() >= self.at
    }
}

impl Mirror {
    /// Locates the mirror of `repo` fetched with `credentials` under `root`, without
    /// creating anything. Each credential has its own mirror: the directory name hashes
    /// the URL and, unless they are the process's own, the credentials' name.
    pub(crate) fn locate(
        root: &Path,
        repo: &str,
        credentials: &Credentials,
    ) -> Result<Self, SourceError> {
        let spelled = repo.trim();
        let invalid = |message: String| SourceError::InvalidUrl {
            repo: repo.to_string(),
            message,
        };
        if spelled.is_empty() {
            return Err(invalid("empty".into()));
        }
        let mut url =
            gix::url::parse(spelled.as_bytes().as_bstr()).map_err(|e| invalid(e.to_string()))?;
        let local = if url.scheme == gix::url::Scheme::File {
            let path = gix::path::from_byte_slice(url.path.as_slice())
                .map_err(|e| invalid(gix_line(&e)))?
                .to_path_buf();
            // One mirror per repository however it is spelled (relative, `file://`, via symlinks).
            let absolute = std::fs::canonicalize(&path)
                .or_else(|_| std::path::absolute(&path))
                .map_err(|e| invalid(e.to_string()))?;
            let spelled =
                gix::path::into_bstr(absolute.as_path()).map_err(|e| invalid(gix_line(&e)))?;
            url = gix::url::parse(spelled.as_ref()).map_err(|e| invalid(e.to_string()))?;
            Some(absolute)
        } else {
            None
        };
        // A password (e.g. a rotating token) neither selects the mirror nor shows in messages.
        let mut without_password = url.clone();
        // Over HTTP(S) a user name alone is often a token (`https://<token>@host/…`).
        let http = matches!(url.scheme, gix::url::Scheme::Http | gix::url::Scheme::Https);
        let display = match without_password.set_password(None) {
            Some(_) => {
                let mut redacted = url.clone();
                redacted.set_password(Some("***".into()));
                redacted.to_bstring().to_string()
            }
            None if http && url.user().is_some() => {
                let mut redacted = url.clone();
                redacted.set_user(Some("***".into()));
                redacted.to_bstring().to_string()
            }
            None => repo.to_string(),
        };
        let canonical = without_password.to_bstring();
        let mut key = canonical.to_vec();
        if !credentials.is_ambient() {
            key.push(b'\n');
            key.extend_from_slice(credentials.id().as_bytes());
        }
        let hash = hex::encode(&Sha256::digest(&key)[..12]);
        let name = format!("{}-{hash}", readable_name(&canonical));
        Ok(Self {
            repo: display,
            url,
            local,
            dir: root.join(format!("{name}.git")),
            lock_path: root.join(format!("{name}.lock")),
            credentials: credentials.clone(),
        })
    }

    /// Waits until `deadline` at most for the mirror's lock (other processes and threads
    /// wait in turn), then records this process as its holder in the lock file. The
    /// lock is the file's `flock`, so it dies with its holder's process.
    pub(crate) fn lock(&self, deadline: &Deadline) -> Result<MirrorLock, SourceError> {
        if let Some(parent) = self.lock_path.parent() {
            std::fs::create_dir_all(parent).map_err(SourceError::io(format!(
                "creating git cache {}",
                parent.display()
            )))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(SourceError::io(format!(
                "opening lock file {}",
                self.lock_path.display()
            )))?;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if !deadline.passed() => {
                    std::thread::sleep(LOCK_RETRY.min(deadline.remaining()));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ =
                        File::open(&self.lock_path).and_then(|mut f| f.read_to_string(&mut holder));
                    let holder = holder.trim();
                    return Err(SourceError::LockTimeout {
                        repo: self.repo.clone(),
                        lock: self.lock_path.clone(),
                        holder: if holder.is_empty() {
                            "an unknown process".into()
                        } else {
                            holder.to_string()
                        },
                        seconds: deadline.timeout.as_secs(),
                    });
                }
                Err(TryLockError::Error(e)) => {
                    return Err(SourceError::io(format!(
                        "locking {}",
                        self.lock_path.display()
                    ))(e));
                }
            }
        }
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let record = format!("pid {} since {since} (Unix time)\n", std::process::id());
        file.set_len(0)
            .and_then(|()| (&file).rewind())
            .and_then(|()| (&file).write_all(record.as_bytes()))
            .map_err(SourceError::io(format!(
                "writing lock file {}",
                self.lock_path.display()
            )))?;
        Ok(MirrorLock { _file: file })
    }

    /// Removes Git lock files (`refs/…/HEAD.lock`, `packed-refs.lock`, …) left by a process
    /// killed mid-fetch. Only a holder of the mirror lock writes the mirror, and that lock
    /// dies with its process, so under it any such file is stale; left alone, it would fail
    /// every later fetch.
    fn clear_stale_locks(&self) {
        let mut pending = vec![self.dir.clone()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() && entry.file_name() != "objects" {
                    pending.push(path);
                } else if kind.is_file()
                    && path.extension().is_some_and(|e| e == "lock")
                    && std::fs::remove_file(&path).is_ok()
                {
                    tracing::warn!(path = %path.display(), "removed a stale lock file from the git cache");
                }
            }
        }
    }

    /// Opens the mirror, creating it first if missing. Call with the lock held.
    pub(crate) fn open_or_init(&self, _lock: &MirrorLock) -> Result<gix::Repository, SourceError> {
        if self.dir.exists() {
            self.clear_stale_locks();
            match gix::open(&self.dir) {
                Ok(repo) => return Ok(repo),
                Err(err) => {
                    tracing::warn!(dir = %self.dir.display(), error = %gix_line(&err), "recreating unreadable git cache");
                    std::fs::remove_dir_all(&self.dir).map_err(SourceError::io(format!(
                        "removing unreadable git cache {}",
                        self.dir.display()
                    )))?;
                }
            }
        }
        // Initialise next to the final place and rename, so a crash never leaves a half-made mirror.
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        let staging = tempfile::Builder::new()
            .prefix(".init-")
            .tempdir_in(parent)
            .map_err(SourceError::io(format!(
                "creating a directory in git cache {}",
                parent.display()
            )))?;
        gix::init_bare(staging.path()).map_err(|e| self.cache_error(&e))?;
        std::fs::rename(staging.path(), &self.dir).map_err(SourceError::io(format!(
            "moving new mirror to {}",
            self.dir.display()
        )))?;
        gix::open(&self.dir).map_err(|e| self.cache_error(&e))
    }

    /// Opens the mirror if it exists and is readable; safe without the lock, as a
    /// mirror only ever appears whole (see [`open_or_init`](Self::open_or_init)).
    pub(crate) fn open_existing(&self) -> Option<gix::Repository> {
        self.dir
            .exists()
            .then(|| gix::open(&self.dir).ok())
            .flatten()
    }

    /// Rejects a local repository that is missing (transient) or not a repository (terminal),
    /// with clearer messages than the transport's. Remote URLs pass. Only the layout is
    /// looked at (`HEAD` and the object and ref directories), not the refs: reading them
    /// is `git-upload-pack`'s, under the deadline.
    pub(crate) fn check_local(&self) -> Result<(), SourceError> {
        let Some(path) = &self.local else {
            return Ok(());
        };
        if !path.exists() {
            return Err(SourceError::Unreachable {
                repo: self.repo.clone(),
                message: format!("{} does not exist", path.display()),
            });
        }
        let layout = gix::discover::is_git(path)
            .or_else(|_| gix::discover::is_git(&path.join(".git")))
            .map(drop);
        if let Err(err) = layout {
            tracing::debug!(path = %path.display(), error = %gix_line(&err), "not a repository");
            return Err(SourceError::NotARepository {
                repo: self.repo.clone(),
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    /// An anonymous remote for the URL with the mirror's refspecs.
    fn remote<'r>(&self, repo: &'r gix::Repository) -> Result<gix::Remote<'r>, SourceError> {
        repo.remote_at(self.url.clone())
            .and_then(|r| r.with_refspecs(REFSPECS, Direction::Fetch))
            .map(|r| r.with_fetch_tags(gix::remote::fetch::Tags::None))
            .map_err(|e| SourceError::InvalidUrl {
                repo: self.repo.clone(),
                message: gix_line(&e),
            })
    }

    /// A connection to the remote whose HTTP requests each end by `deadline` (the
    /// request timeout of gix's reqwest backend), and whose local `git-upload-pack` is
    /// killed then ([`UploadPack`]). Other transports stop at `deadline` through the
    /// interrupt flag the caller passes to the fetch (and `ssh` runs under `timeout`).
    fn connect<'a, 'r>(
        &self,
        repo: &'r gix::Repository,
        remote: &'a gix::Remote<'r>,
        deadline: &Deadline,
        ssh: Option<&SshSession>,
    ) -> Result<Connection<'a, 'r>, SourceError> {
        use gix::protocol::transport::client::blocking_io::{Transport, http};
        if let Some(path) = &self.local {
            let transport: Box<dyn Transport + Send> =
                Box::new(UploadPack::new(path, &self.url, deadline.at));
            return Ok(remote.to_connection_with_transport(transport));
        }
        let mut connection = remote
            .connect(Direction::Fetch)
            .map_err(|e| self.unreachable(&e, deadline, ssh))?;
        if !matches!(
            self.url.scheme,
            gix::url::Scheme::Http | gix::url::Scheme::Https
        ) {
            return Ok(connection);
        }
        if !self.credentials.uses_helpers() {
            // Credentials go in a header of every request; a challenge gets no answer.
            connection = connection.with_credentials(|_| Ok(None));
        }
        let mut options = repo
            .transport_options(self.url.to_bstring().as_bstr(), None)
            .map_err(|e| self.unreachable(&e, deadline, None))?
            .and_then(|o| o.downcast::<http::Options>().ok())
            .map(|o| *o)
            .unwrap_or_default();
        let at = deadline.at;
        let configure_request: Box<http::reqwest::ConfigureRequestFn> = Box::new(move |request| {
            *request.timeout_mut() = Some(
                at.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            );
            Ok(())
        });
        options.connect_timeout = Some(deadline.remaining());
        options.extra_headers.extend(self.credentials.http_header());
        options.backend = Some(Arc::new(Mutex::new(http::reqwest::Options {
            configure_request: Some(configure_request),
            ..Default::default()
        })));
        Ok(connection.with_transport_options(Box::new(options)))
    }

    /// A transport failure: [`SourceError::TimedOut`] once `deadline` has passed,
    /// [`SourceError::HostKeyRejected`] when `ssh` said so, with `ssh`'s own message.
    fn unreachable(
        &self,
        err: &gix::Error,
        deadline: &Deadline,
        ssh: Option<&SshSession>,
    ) -> SourceError {
        if deadline.passed() {
            return SourceError::TimedOut {
                repo: self.repo.clone(),
                seconds: deadline.timeout.as_secs(),
            };
        }
        let said = ssh.map(SshSession::log).filter(|l| !l.is_empty());
        if let Some(said) = &said
            && (said.contains("Host key verification failed")
                || said.contains("host key is known")
                || said.contains("HOST IDENTIFICATION HAS CHANGED"))
        {
            return SourceError::HostKeyRejected {
                repo: self.repo.clone(),
                message: said.clone(),
            };
        }
        let mut message = gix_line(err);
        if let Some(said) = said {
            message = format!("{message}: ssh: {said}");
        }
        SourceError::Unreachable {
            repo: self.repo.clone(),
            message,
        }
    }

    /// A handle on `repo` set up to reach the remote with the mirror's credentials (for
    /// SSH, its key and `known_hosts`, and `ssh` killed at `deadline`), and the SSH
    /// session that must live until the transfer ends.
    fn authenticated(
        &self,
        repo: &gix::Repository,
        deadline: &Deadline,
    ) -> Result<(gix::Repository, Option<SshSession>), SourceError> {
        self.credentials.check_url(&self.url).map_err(|e| match e {
            SourceError::Credentials { id, message } => SourceError::Credentials {
                id: format!("repository {}: {id}", self.repo),
                message,
            },
            other => other,
        })?;
        let mut repo = repo.clone();
        let session = self.credentials.ssh_session(deadline.remaining())?;
        if let Some(session) = &session {
            use gix::config::tree::{Core, Ssh};
            let mut config = repo.config_snapshot_mut();
            config
                .set_value(&Core::SSH_COMMAND, session.command.as_str())
                .and_then(|_| config.set_value(&Ssh::VARIANT, "ssh"))
                .map_err(|e| self.cache_error(&e))?;
            config.commit().map_err(|e| self.cache_error(&e))?;
        }
        Ok((repo, session))
    }

    /// Fetches new objects and updates the mirror's refs to match the remote, deleting
    /// branches and tags the remote no longer has; gives up at `deadline`. Call with
    /// the lock held.
    pub(crate) fn fetch(
        &self,
        repo: &gix::Repository,
        deadline: &Deadline,
    ) -> Result<(), SourceError> {
        let _span = tracing::debug_span!("git fetch", repo = %self.repo).entered();
        let (remote_repo, ssh) = self.authenticated(repo, deadline)?;
        let unreachable = |e: gix::Error| self.unreachable(&e, deadline, ssh.as_ref());
        let remote = self.remote(&remote_repo)?;
        let outcome = self
            .connect(&remote_repo, &remote, deadline, ssh.as_ref())?
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(unreachable)?
            .receive(gix::progress::Discard, &deadline.flag)
            .map_err(unreachable)?;
        let (Status::NoPackReceived { update_refs, .. } | Status::Change { update_refs, .. }) =
            &outcome.status;
        for (update, mapping) in update_refs.updates.iter().zip(&outcome.ref_map.mappings) {
            if matches!(
                update.mode,
                Mode::RejectedSourceObjectNotFound { .. }
                    | Mode::RejectedTagUpdate
                    | Mode::RejectedNonFastForward
                    | Mode::RejectedToReplaceWithUnborn
                    | Mode::RejectedCurrentlyCheckedOut { .. }
            ) {
                tracing::warn!(repo = %self.repo, r#ref = %mapping.remote.as_name().unwrap_or_default(), mode = %update.mode, "ref not updated in git cache");
            }
        }
        let remote_names: HashSet<BString> = outcome
            .ref_map
            .mappings
            .iter()
            // An unborn remote ref (an empty remote's HEAD) leaves nothing to keep.
            .filter(|m| m.remote.as_id().is_some())
            .filter_map(|m| m.local.clone())
            .collect();
        self.prune(repo, &remote_names)
    }

    /// Deletes mirrored refs that are not in `keep`.
    fn prune(&self, repo: &gix::Repository, keep: &HashSet<BString>) -> Result<(), SourceError> {
        let mut edits = Vec::new();
        let platform = repo.references().map_err(|e| self.cache_error(&e))?;
        for prefix in MIRRORED_PREFIXES {
            let refs = platform
                .prefixed(prefix)
                .map_err(|e| self.cache_error(&e))?;
            for reference in refs {
                let reference = reference.map_err(|e| self.cache_error(&e))?;
                let name = reference.name().as_bstr();
                if !keep.contains(name) {
                    tracing::debug!(repo = %self.repo, name = %name, "pruning ref gone from remote");
                    edits.push(RefEdit {
                        change: Change::Delete {
                            expected: PreviousValue::Any,
                            log: RefLog::AndReference,
                        },
                        name: reference.name().to_owned(),
                        deref: false,
                    });
                }
            }
        }
        if !edits.is_empty() {
            repo.edit_references(edits)
                .map_err(|e| self.cache_error(&e))?;
        }
        Ok(())
    }

    /// The commit `git_ref` names on the remote right now, from a ref listing only.
    /// `Ok(None)` when no branch or tag matches (the caller may treat it as a SHA).
    pub(crate) fn remote_commit(
        &self,
        repo: &gix::Repository,
        git_ref: Option<&str>,
        deadline: &Deadline,
    ) -> Result<Option<String>, SourceError> {
        let (remote_repo, ssh) = self.authenticated(repo, deadline)?;
        let unreachable = |e: gix::Error| self.unreachable(&e, deadline, ssh.as_ref());
        let remote = self.remote(&remote_repo)?;
        let (ref_map, _) = self
            .connect(&remote_repo, &remote, deadline, ssh.as_ref())?
            .ref_map(gix::progress::Discard, Default::default())
            .map_err(unreachable)?;
        let wants_head = matches!(git_ref, None | Some("HEAD"));
        for candidate in &candidate_names(git_ref, "HEAD") {
            let found = ref_map
                .remote_refs
                .iter()
                .map(|r| r.unpack())
                .find(|(name, _, _)| *name == candidate.as_str());
            if let Some((_, direct, peeled)) = found {
                return match peeled.or(direct) {
                    Some(id) => Ok(Some(id.to_string())),
                    None if wants_head => Err(SourceError::NoHead {
                        repo: self.repo.clone(),
                    }),
                    None => Err(SourceError::RefNotFound {
                        repo: self.repo.clone(),
                        git_ref: git_ref.unwrap_or("HEAD").to_string(),
                    }),
                };
            }
        }
        if wants_head {
            return Err(SourceError::NoHead {
                repo: self.repo.clone(),
            });
        }
        Ok(None)
    }

    /// Resolves `git_ref` among the mirror's refs and objects (no network).
    pub(crate) fn resolve_local<'r>(
        &self,
        repo: &'r gix::Repository,
        git_ref: Option<&str>,
    ) -> Result<gix::Commit<'r>, SourceError> {
        let wanted = git_ref.unwrap_or("HEAD");
        let not_found = || match git_ref {
            None | Some("HEAD") => SourceError::NoHead {
                repo: self.repo.clone(),
            },
            Some(r) => SourceError::RefNotFound {
                repo: self.repo.clone(),
                git_ref: r.to_string(),
            },
        };
        for candidate in candidate_names(git_ref, HEAD_REF) {
            let Ok(name) = gix::refs::FullName::try_from(candidate.as_str()) else {
                continue;
            };
            let found = repo
                .try_find_reference(&name)
                .map_err(|e| self.cache_error(&e))?;
            if let Some(mut reference) = found {
                // A symbolic ref left dangling by an unborn remote HEAD resolves to nothing.
                return match reference.peel_to_id() {
                    Ok(id) => self.commit(repo, id.detach(), wanted),
                    Err(e) if e.is_not_found() => Err(not_found()),
                    Err(e) => Err(self.cache_error(&e)),
                };
            }
        }
        match git_ref {
            Some(r) if is_hex_prefix(r) => self.resolve_sha(repo, r)?.ok_or_else(not_found),
            _ => Err(not_found()),
        }
    }

    /// Finds the commit whose SHA is, or starts with, the hex string `sha` among the
    /// mirror's objects; `Ok(None)` when none matches.
    pub(crate) fn resolve_sha<'r>(
        &self,
        repo: &'r gix::Repository,
        sha: &str,
    ) -> Result<Option<gix::Commit<'r>>, SourceError> {
        let Ok(prefix) = gix::hash::Prefix::from_hex(sha) else {
            return Ok(None);
        };
        match repo
            .objects
            .lookup_prefix(prefix, None)
            .map_err(|e| self.cache_error(&e))?
        {
            None => Ok(None),
            Some(Err(())) => Err(SourceError::AmbiguousRef {
                repo: self.repo.clone(),
                git_ref: sha.to_string(),
            }),
            Some(Ok(id)) => self.commit(repo, id, sha).map(Some),
        }
    }

    /// Looks up `id`, following annotated tags, and requires a commit.
    fn commit<'r>(
        &self,
        repo: &'r gix::Repository,
        id: gix::ObjectId,
        wanted: &str,
    ) -> Result<gix::Commit<'r>, SourceError> {
        let object = repo
            .find_object(id)
            .and_then(|o| o.peel_tags_to_end())
            .map_err(|e| self.cache_error(&e))?;
        if object.kind != gix::object::Kind::Commit {
            return Err(SourceError::NotACommit {
                repo: self.repo.clone(),
                git_ref: wanted.to_string(),
            });
        }
        Ok(object.into_commit())
    }

    /// The commit's [`Revision`].
    pub(crate) fn revision(&self, commit: &gix::Commit<'_>) -> Result<Revision, SourceError> {
        let message = commit.message().map_err(|e| self.cache_error(&e))?;
        let author = commit.author().map_err(|e| self.cache_error(&e))?;
        let time = author.time().map_err(|e| self.cache_error(&e))?;
        Ok(Revision {
            sha: commit.id.to_string(),
            message: message.summary().to_str_lossy().into_owned(),
            author: author.name.to_str_lossy().into_owned(),
            time: time.seconds,
        })
    }

    /// A failure reading or writing the mirror.
    pub(crate) fn cache_error(&self, err: &gix::Error) -> SourceError {
        SourceError::Cache {
            repo: self.repo.clone(),
            dir: self.dir.clone(),
            message: gix_line(err),
        }
    }
}

/// Full ref names `git_ref` may stand for, in priority order: `head` for none or
/// `HEAD`, the name itself for `refs/…`, else the branch then the tag.
fn candidate_names(git_ref: Option<&str>, head: &str) -> Vec<String> {
    match git_ref {
        None | Some("HEAD") => vec![head.into()],
        Some(r) if r.starts_with("refs/") => vec![r.into()],
        Some(r) => vec![format!("refs/heads/{r}"), format!("refs/tags/{r}")],
    }
}

/// Whether `s` can be an abbreviated or full commit SHA.
pub(crate) fn is_hex_prefix(s: &str) -> bool {
    (4..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A short, filesystem-safe name derived from the URL's last path component.
fn readable_name(url: &BString) -> String {
    let text = url.to_str_lossy();
    let last = text
        .trim_end_matches('/')
        .rsplit(['/', ':', '\\'])
        .next()
        .unwrap_or_default();
    let last = last.strip_suffix(".git").unwrap_or(last);
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let name = name.trim_start_matches('.');
    if name.is_empty() {
        "repo".into()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Deadline, Mirror};
    use crate::SourceError;

    #[test]
    fn a_held_mirror_lock_is_waited_for_until_the_deadline_and_names_its_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let mirror = Mirror::locate(
            tmp.path(),
            "https://git.example.com/team/app.git",
            &crate::Credentials::ambient(),
        )
        .unwrap();
        let held = mirror
            .lock(&Deadline::after(Duration::from_secs(1)))
            .unwrap();
        let start = Instant::now();
        let second = std::thread::scope(|s| {
            s.spawn(|| {
                mirror
                    .lock(&Deadline::after(Duration::from_millis(300)))
                    .map(drop)
            })
            .join()
            .unwrap()
        });
        let waited = start.elapsed();
        let err = second.expect_err("the lock is held");
        assert!(matches!(err, SourceError::LockTimeout { .. }), "{err:?}");
        assert!(err.is_transient());
        let message = err.to_string();
        assert!(
            message.contains("https://git.example.com/team/app.git")
                && message.contains(&format!("pid {} since", std::process::id())),
            "{message}"
        );
        assert!(
            (Duration::from_millis(300)..Duration::from_secs(3)).contains(&waited),
            "{waited:?}"
        );

        // A waiter gets the lock as soon as its holder lets go.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                mirror
                    .lock(&Deadline::after(Duration::from_secs(10)))
                    .map(drop)
            });
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
            let start = Instant::now();
            waiter.join().unwrap().expect("the lock was released");
            assert!(start.elapsed() < Duration::from_secs(2));
        });
    }

    #[test]
    fn a_deadline_raises_its_interrupt_flag_when_it_passes() {
        let deadline = Deadline::after(Duration::from_millis(100));
        assert!(!deadline.flag.load(std::sync::atomic::Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(300));
        assert!(deadline.flag.load(std::sync::atomic::Ordering::Relaxed));
        assert!(deadline.passed());
    }
}
