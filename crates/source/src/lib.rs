//! Source stage: fetches Git repositories into a cache and checks out revisions.
//!
//! [`GitCache`] keeps one bare mirror per repository URL and updates it
//! incrementally; [`GitCache::checkout`] writes a revision's files into a fresh
//! directory owned by the caller. Everything is blocking (pure-Rust `gix`);
//! async callers should use `spawn_blocking`.
//!
//! Local repositories (plain paths and `file://`) are fetched through
//! `git upload-pack` and `ssh://` / `git@host:path` through the system `ssh`,
//! as `gix` does; `https://` needs no external program.
//!
//! [`Credentials`] say what a fetch authenticates with (HTTP basic or bearer, an SSH
//! key with `known_hosts`); each credential has its own mirrors.

mod checkout;
mod credentials;
mod error;
mod local;
mod mirror;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use credentials::{Credentials, KEYS as CREDENTIAL_KEYS};
pub use error::SourceError;

use checkout::{Rejected, short};
use mirror::{Deadline, Mirror, is_hex_prefix};

/// How long one fetch or ref listing may take by default (`--git-timeout`), waiting
/// for the mirror's lock included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A directory of bare mirrors, one per repository URL, shared by all callers
/// (and processes: a lock file per mirror serialises fetches).
///
/// Every network operation has a deadline, [`timeout`](Self::with_timeout) from its
/// start: waiting for the mirror's lock (held by another fetch of the repository) is
/// bounded by it, HTTP requests carry it as their request timeout, and gix's interrupt
/// flag is raised when it passes, so the fetch ends, and releases the lock, instead of
/// hanging on a remote that stopped answering; `ssh` is killed at the deadline.
///
/// Fetches use the cache's [`Credentials`] ([`with_credentials`](Self::with_credentials);
/// by default the process's own). Mirrors are per repository *and* credential, so a
/// commit one credential fetched (and the full-SHA fast path would serve from the
/// mirror) is never served to a fetch with another, or with none.
#[derive(Clone, Debug)]
pub struct GitCache {
    root: PathBuf,
    timeout: Duration,
    credentials: Credentials,
}

/// A resolved commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// Full 40-hex commit SHA.
    pub sha: String,
    /// The commit's subject line.
    pub message: String,
    /// The author's name.
    pub author: String,
    /// Author time, in seconds since the Unix epoch.
    pub time: i64,
}

impl Revision {
    /// The SHA abbreviated to 7 characters, for display.
    pub fn short_sha(&self) -> &str {
        short(&self.sha)
    }
}

/// A revision's files written to a temporary directory, deleted on drop.
#[derive(Debug)]
pub struct Checkout {
    /// The commit whose tree was written.
    pub revision: Revision,
    repo: String,
    dir: tempfile::TempDir,
}

impl GitCache {
    /// Cache in `root` (created if missing), e.g. `~/.cache/ferry/git`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            timeout: DEFAULT_TIMEOUT,
            credentials: Credentials::ambient(),
        }
    }

    /// The same cache fetching with `credentials` (and their own mirrors).
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// The same cache with another deadline per fetch or ref listing.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Fetches `repo` (bare mirror in the cache, keyed by a hash of the URL; reused
    /// and updated incrementally) and resolves `git_ref`: `None` (or `HEAD`) is the
    /// remote's HEAD; otherwise a full ref name (`refs/…`), a branch, a tag, or a full
    /// or abbreviated (at least 4 hex digits) commit SHA, tried in that order.
    pub fn resolve(&self, repo: &str, git_ref: Option<&str>) -> Result<Revision, SourceError> {
        let (mirror, handle, id) = self.fetch_and_resolve(repo, git_ref)?;
        let commit = handle.find_commit(id).map_err(|e| mirror.cache_error(&e))?;
        mirror.revision(&commit)
    }

    /// Like [`resolve`](Self::resolve), then writes the revision's tree into a fresh
    /// temporary directory (a working copy owned by the caller, never the shared cache).
    pub fn checkout(&self, repo: &str, git_ref: Option<&str>) -> Result<Checkout, SourceError> {
        let (mirror, handle, id) = self.fetch_and_resolve(repo, git_ref)?;
        let commit = handle.find_commit(id).map_err(|e| mirror.cache_error(&e))?;
        let revision = mirror.revision(&commit)?;
        let dir = tempfile::Builder::new()
            .prefix("ferry-checkout-")
            .tempdir()
            .map_err(SourceError::io("creating a checkout directory"))?;
        let _span = tracing::debug_span!("git checkout", repo = %mirror.repo, sha = %revision.sha)
            .entered();
        checkout::write_tree(&mirror, &handle, &commit, dir.path())?;
        Ok(Checkout {
            revision,
            repo: mirror.repo,
            dir,
        })
    }

    /// Cheap remote check: the commit SHA the remote ref points to now, from a ref
    /// listing only (like `git ls-remote`), without fetching objects.
    ///
    /// A branch or tag is looked up on the remote; a full SHA is returned as is; an
    /// abbreviated SHA is expanded from the cache, fetching only if it is not there yet.
    pub fn remote_sha(&self, repo: &str, git_ref: Option<&str>) -> Result<String, SourceError> {
        let mirror = Mirror::locate(&self.root, repo, &self.credentials)?;
        mirror.check_local()?;
        let deadline = Deadline::after(self.timeout);
        // Without waiting for a fetch in progress, unless the mirror must be created.
        let handle = match mirror.open_existing() {
            Some(handle) => handle,
            None => {
                let lock = mirror.lock(&deadline)?;
                mirror.open_or_init(&lock)?
            }
        };
        if let Some(sha) = mirror.remote_commit(&handle, git_ref, &deadline)? {
            return Ok(sha);
        }
        match git_ref {
            Some(sha) if sha.len() == 40 && is_hex_prefix(sha) => Ok(sha.to_ascii_lowercase()),
            Some(sha) if is_hex_prefix(sha) => match mirror.resolve_sha(&handle, sha)? {
                Some(commit) => Ok(commit.id.to_string()),
                None => Ok(self.resolve(repo, git_ref)?.sha),
            },
            _ => Err(SourceError::RefNotFound {
                repo: mirror.repo,
                git_ref: git_ref.unwrap_or("HEAD").to_string(),
            }),
        }
    }

    /// Fetches under the mirror's lock (unless `git_ref` is a full SHA already
    /// present) and resolves `git_ref` to a commit id.
    fn fetch_and_resolve(
        &self,
        repo: &str,
        git_ref: Option<&str>,
    ) -> Result<(Mirror, gix::Repository, gix::ObjectId), SourceError> {
        let mirror = Mirror::locate(&self.root, repo, &self.credentials)?;
        mirror.check_local()?;
        let deadline = Deadline::after(self.timeout);
        let lock = mirror.lock(&deadline)?;
        let handle = mirror.open_or_init(&lock)?;
        // A full SHA already in the mirror needs no fetch (the agent fetches once per
        // repository, then checks out the fetched commit for every app).
        let cached = match git_ref {
            Some(sha) if sha.len() == 40 && is_hex_prefix(sha) => {
                mirror.resolve_sha(&handle, sha)?.map(|c| c.id)
            }
            _ => None,
        };
        let id = match cached {
            Some(id) => id,
            None => {
                mirror.fetch(&handle, &deadline)?;
                mirror.resolve_local(&handle, git_ref)?.id
            }
        };
        drop(lock);
        Ok((mirror, handle, id))
    }
}

impl Checkout {
    /// The checkout's root directory (the repository's top level).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Joins the app path `path` (relative to the repository root; empty for the
    /// root) safely: it must name an existing directory inside the checkout, must
    /// not be absolute, leave the checkout through `..` or a symlink, or contain a
    /// symlink pointing outside the checkout. Returns the symlink-free directory.
    pub fn app_dir(&self, path: &str) -> Result<PathBuf, SourceError> {
        let root = self.root();
        let escapes = |reason: String| SourceError::PathEscapes {
            path: path.to_string(),
            repo: self.repo.clone(),
            short_sha: self.revision.short_sha().to_string(),
            reason,
        };
        let rejected = |r: Rejected| match r {
            Rejected::Escapes(reason) => escapes(reason),
            Rejected::Io(context, source) => SourceError::Io { context, source },
        };
        let dir = checkout::resolve_inside(root, Path::new(path))
            .map_err(rejected)?
            .ok_or_else(|| SourceError::PathNotFound {
                path: path.to_string(),
                repo: self.repo.clone(),
                short_sha: self.revision.short_sha().to_string(),
            })?;
        if !dir.is_dir() {
            return Err(SourceError::NotADirectory {
                path: path.to_string(),
                repo: self.repo.clone(),
                short_sha: self.revision.short_sha().to_string(),
            });
        }
        checkout::check_symlinks(root, &dir).map_err(rejected)?;
        Ok(dir)
    }
}
