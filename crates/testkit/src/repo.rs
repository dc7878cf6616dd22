//! Git repositories made by tests, with the `git` CLI in temporary directories.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// The author of every commit made through [`TestRepo`].
pub const AUTHOR: (&str, &str) = ("Ada Author", "ada@example.com");

/// The committer of every commit made through [`TestRepo`].
pub const COMMITTER: (&str, &str) = ("Cy Committer", "cy@example.com");

/// A Git working copy in a temporary directory (removed on drop), default branch `main`.
///
/// Its `git` runs without the user's or the system's Git configuration, as [`AUTHOR`] and
/// [`COMMITTER`], and never signs.
///
/// # Panics
///
/// Every method panics when `git` or the file system fails, naming the command or file.
pub struct TestRepo {
    dir: TempDir,
}

impl TestRepo {
    /// An empty repository (no commit yet) on branch `main`.
    pub fn new() -> Self {
        let repo = Self {
            dir: tempfile::tempdir().expect("temporary directory for the repository"),
        };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo
    }

    /// The working copy's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The working copy's path as text (for `--repo` and the like).
    pub fn path(&self) -> &str {
        self.dir.path().to_str().expect("UTF-8 temporary path")
    }

    /// Writes `text` to the file `rel` (creating directories).
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("a file inside the repository"))
            .unwrap_or_else(|e| panic!("creating the directory of {}: {e}", path.display()));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Removes the file `rel`.
    pub fn remove(&self, rel: &str) {
        let path = self.dir.path().join(rel);
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
    }

    /// Commits everything in the working tree (also when nothing changed); the commit's SHA.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.head()
    }

    /// The SHA of `HEAD`.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    /// Tags `HEAD` as `name`: annotated with `message`, else lightweight.
    pub fn tag(&self, name: &str, message: Option<&str>) {
        match message {
            Some(message) => self.git(&["tag", "--annotate", name, "-m", message]),
            None => self.git(&["tag", name]),
        };
    }

    /// Runs `git args…` in the working copy; its standard output, trimmed.
    pub fn git(&self, args: &[&str]) -> String {
        self.git_with_input(args, None)
    }

    /// Runs `git args…` in the working copy with `input` on its standard input; its
    /// standard output, trimmed.
    pub fn git_stdin(&self, args: &[&str], input: &str) -> String {
        self.git_with_input(args, Some(input))
    }

    fn git_with_input(&self, args: &[&str], input: Option<&str>) -> String {
        let mut child = Command::new("git")
            .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
            .args(args)
            .current_dir(self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", AUTHOR.0)
            .env("GIT_AUTHOR_EMAIL", AUTHOR.1)
            .env("GIT_COMMITTER_NAME", COMMITTER.0)
            .env("GIT_COMMITTER_EMAIL", COMMITTER.1)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running git {args:?}: {e}"));
        if let Some(input) = input {
            child
                .stdin
                .take()
                .expect("git's standard input")
                .write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("writing to git {args:?}: {e}"));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("running git {args:?}: {e}"));
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("git prints UTF-8")
            .trim()
            .to_string()
    }
}

impl Default for TestRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TestRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRepo")
            .field("dir", &self.dir.path())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_tags_and_runs_git_with_the_fixed_identity() {
        let repo = TestRepo::new();
        repo.write("a/b.txt", "one\n");
        let first = repo.commit("first");
        assert_eq!(first.len(), 40, "{first}");
        assert_eq!(repo.head(), first);
        repo.tag("v1", Some("release 1"));
        repo.tag("light", None);
        repo.remove("a/b.txt");
        let second = repo.commit("second");
        assert_ne!(second, first);
        assert_eq!(repo.git(&["rev-parse", "v1^{commit}"]), first);
        assert_eq!(repo.git(&["rev-parse", "light"]), first);
        assert_eq!(repo.git(&["cat-file", "-t", "v1"]), "tag");
        assert_eq!(
            repo.git(&["log", "-1", "--format=%an <%ae>|%cn <%ce>|%s"]),
            "Ada Author <ada@example.com>|Cy Committer <cy@example.com>|second"
        );
        assert_eq!(repo.git(&["ls-tree", "--name-only", "HEAD"]), "");
        assert_eq!(repo.git(&["branch", "--show-current"]), "main");
        let blob = repo.git_stdin(&["hash-object", "-w", "--stdin"], "one\n");
        assert_eq!(repo.git(&["cat-file", "-p", &blob]), "one");
    }
}
