//! The error type of the source stage.

use std::path::PathBuf;

/// An error while fetching, resolving or checking out a repository.
///
/// Every message is a single line that names the repository (and, for path
/// errors, the revision) it is about.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository string is not a URL or path Git understands.
    #[error("repository {repo}: invalid URL: {message}")]
    InvalidUrl {
        /// The repository as given.
        repo: String,
        /// Why it does not parse.
        message: String,
    },
    /// The repository could not be reached or fetched (network, remote process, missing path).
    #[error("repository {repo}: cannot fetch: {message}")]
    Unreachable {
        /// The repository as given.
        repo: String,
        /// What went wrong.
        message: String,
    },
    /// The fetch did not finish within the Git timeout.
    #[error("repository {repo}: fetch timed out after {seconds} s")]
    TimedOut {
        /// The repository as given.
        repo: String,
        /// The Git timeout.
        seconds: u64,
    },
    /// Another fetch of the repository held the mirror's lock for the whole Git timeout.
    #[error("repository {repo}: git cache lock {} still held after {seconds} s, by {holder}", lock.display())]
    LockTimeout {
        /// The repository as given.
        repo: String,
        /// The lock file.
        lock: PathBuf,
        /// Who holds it, as recorded in the lock file (`pid N since T`).
        holder: String,
        /// How long this fetch waited.
        seconds: u64,
    },
    /// The credentials are incomplete, or do not fit the repository's scheme.
    #[error("{id}: {message}")]
    Credentials {
        /// The credentials, e.g. `Secret team-a/git`.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The SSH server's host key is not the one `known_hosts` lists (or none is listed).
    #[error(
        "repository {repo}: SSH host key rejected (not in the credentials' known_hosts): {message}"
    )]
    HostKeyRejected {
        /// The repository as given.
        repo: String,
        /// What `ssh` said.
        message: String,
    },
    /// A local path exists but is not a Git repository.
    #[error("repository {repo}: {path} is not a git repository")]
    NotARepository {
        /// The repository as given.
        repo: String,
        /// The local path that was checked.
        path: PathBuf,
    },
    /// No branch, tag or commit matches the requested ref.
    #[error("repository {repo}: ref {git_ref:?} not found (no branch, tag or commit matches)")]
    RefNotFound {
        /// The repository as given.
        repo: String,
        /// The requested ref.
        git_ref: String,
    },
    /// A short SHA matches more than one object.
    #[error("repository {repo}: short SHA {git_ref:?} is ambiguous; use more characters")]
    AmbiguousRef {
        /// The repository as given.
        repo: String,
        /// The requested short SHA.
        git_ref: String,
    },
    /// The ref exists but does not lead to a commit (e.g. a tag of a tree).
    #[error("repository {repo}: ref {git_ref:?} does not point to a commit")]
    NotACommit {
        /// The repository as given.
        repo: String,
        /// The requested ref.
        git_ref: String,
    },
    /// The remote `HEAD` is unborn or missing (empty repository).
    #[error("repository {repo}: the remote HEAD does not point to a commit (empty repository?)")]
    NoHead {
        /// The repository as given.
        repo: String,
    },
    /// The local object database or cache could not be read or written.
    #[error("repository {repo}: git cache {}: {message}", dir.display())]
    Cache {
        /// The repository as given.
        repo: String,
        /// The cache directory (bare mirror) involved.
        dir: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The committed tree contains an entry that cannot be written safely.
    #[error("repository {repo}@{short_sha}: tree entry {entry:?} has an unsafe name")]
    UnsafeTreeEntry {
        /// The repository as given.
        repo: String,
        /// The revision, abbreviated.
        short_sha: String,
        /// The offending entry name.
        entry: String,
    },
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The app path is absolute, or leaves the checkout via `..` or a symlink.
    #[error("path {path:?} in {repo}@{short_sha} is not allowed: {reason}")]
    PathEscapes {
        /// The app path as given.
        path: String,
        /// The repository as given.
        repo: String,
        /// The revision, abbreviated.
        short_sha: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The app path does not exist in the revision.
    #[error("path {path:?} does not exist in {repo}@{short_sha}")]
    PathNotFound {
        /// The app path as given.
        path: String,
        /// The repository as given.
        repo: String,
        /// The revision, abbreviated.
        short_sha: String,
    },
    /// The app path exists but is not a directory.
    #[error("path {path:?} in {repo}@{short_sha} is not a directory")]
    NotADirectory {
        /// The app path as given.
        path: String,
        /// The repository as given.
        repo: String,
        /// The revision, abbreviated.
        short_sha: String,
    },
}

impl SourceError {
    /// Whether retrying later may succeed without changing the input: network and
    /// I/O failures are transient; unknown refs, bad paths and non-repositories are not.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Unreachable { .. }
            | SourceError::TimedOut { .. }
            | SourceError::LockTimeout { .. }
            | SourceError::Cache { .. }
            | SourceError::Io { .. } => true,
            SourceError::InvalidUrl { .. }
            | SourceError::Credentials { .. }
            | SourceError::HostKeyRejected { .. }
            | SourceError::NotARepository { .. }
            | SourceError::RefNotFound { .. }
            | SourceError::AmbiguousRef { .. }
            | SourceError::NotACommit { .. }
            | SourceError::NoHead { .. }
            | SourceError::UnsafeTreeEntry { .. }
            | SourceError::PathEscapes { .. }
            | SourceError::PathNotFound { .. }
            | SourceError::NotADirectory { .. } => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SourceError {
        let context = context.into();
        move |source| SourceError::Io { context, source }
    }
}

/// Renders a gix error and its causes on one line, dropping repeated messages.
pub(crate) fn gix_line(err: &gix::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in err.iter_errors() {
        push_part(&mut parts, &e.to_string());
    }
    if parts.is_empty() {
        push_part(&mut parts, &err.to_string());
    }
    parts.join(": ")
}

fn push_part(parts: &mut Vec<String>, message: &str) {
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if message.is_empty() || parts.iter().any(|p| p.contains(&message)) {
        return;
    }
    parts.push(message);
}
