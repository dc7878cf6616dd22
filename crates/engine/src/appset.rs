//! App sets against a repository: list the directories a set's pattern matches in a
//! checkout (or a working copy) and expand the set's template into apps.

use std::path::{Path, PathBuf};

use ferry_model::appset::{component_matches, expand, is_pattern, pattern_components};
use ferry_model::{AppSet, NamedApp};
use ferry_source::{GitCache, Revision};

use crate::EngineError;

/// Why the directories of a set could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The pattern is not a relative path inside the repository.
    #[error("directories {pattern:?}: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        message: String,
    },
    /// A matching entry leads outside the repository.
    #[error("directory {path:?} is not allowed: {reason}")]
    Escapes {
        /// The directory, relative to the repository root.
        path: String,
        /// How it escapes.
        reason: String,
    },
    /// The filesystem failed.
    #[error("listing {path}: {source}")]
    Io {
        /// The directory being read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A set expanded at one revision.
#[derive(Clone, Debug)]
pub struct Expanded {
    /// The commit the directories were listed from.
    pub revision: Revision,
    /// The generated apps, sorted by directory.
    pub apps: Vec<NamedApp>,
}

/// The directories under `root` that the pattern matches, as `/`-separated paths
/// relative to `root`, sorted. `*` and `?` match within one component and never match a
/// name starting with `.` unless the pattern does; `.git` is never listed. A symlinked
/// directory is listed under its own name if its target stays inside `root`, and is an
/// error otherwise; files are skipped. A missing exact path matches nothing.
pub fn directories(root: &Path, pattern: &str) -> Result<Vec<String>, ListError> {
    let components = pattern_components(pattern).map_err(|message| ListError::Pattern {
        pattern: pattern.to_string(),
        message,
    })?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ListError::Io { path, source }
    };
    let root = root.canonicalize().map_err(io(root))?;
    // (path relative to the root, its symlink-free location)
    let mut level: Vec<(String, PathBuf)> = vec![(String::new(), root.clone())];
    for component in components {
        let mut next = Vec::new();
        for (rel, dir) in &level {
            let names: Vec<String> = if is_pattern(component) {
                let mut names = Vec::new();
                for entry in std::fs::read_dir(dir).map_err(io(dir))? {
                    let name = entry.map_err(io(dir))?.file_name();
                    let name = name.to_string_lossy().into_owned();
                    if component_matches(component, &name) {
                        names.push(name);
                    }
                }
                names
            } else {
                vec![component.to_string()]
            };
            for name in names {
                if name == ".git" {
                    continue;
                }
                let rel = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                if let Some(found) = inside(&root, &dir.join(&name), &rel)? {
                    next.push((rel, found));
                }
            }
        }
        level = next;
    }
    let mut dirs: Vec<String> = level.into_iter().map(|(rel, _)| rel).collect();
    dirs.sort();
    Ok(dirs)
}

/// The symlink-free location of `path` if it is a directory inside `root`; `None` when
/// it is missing or not a directory; an error when a symlink leads outside `root`.
fn inside(root: &Path, path: &Path, rel: &str) -> Result<Option<PathBuf>, ListError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ListError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if metadata.is_dir() {
        return Ok(Some(path.to_path_buf()));
    }
    if !metadata.file_type().is_symlink() {
        return Ok(None);
    }
    let target = match path.canonicalize() {
        Ok(t) => t,
        // A dangling symlink names no directory.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ListError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !target.starts_with(root) {
        return Err(ListError::Escapes {
            path: rel.to_string(),
            reason: "it is a symlink pointing outside the repository".into(),
        });
    }
    Ok(target.is_dir().then_some(target))
}

/// Checks out the set's repository at `git_ref` (default: the set's `source.ref`),
/// lists its directories and expands the template. Runs in a blocking task.
pub async fn expand_set(
    git: &GitCache,
    set: &AppSet,
    git_ref: Option<&str>,
) -> Result<Expanded, EngineError> {
    let git = git.clone();
    let set = set.clone();
    let git_ref = git_ref
        .map(str::to_string)
        .or_else(|| set.template.spec.source.git_ref.clone());
    tokio::task::spawn_blocking(move || {
        let checkout = git.checkout(&set.template.spec.source.repo, git_ref.as_deref())?;
        let dirs = directories(checkout.root(), &set.directories).map_err(|source| {
            EngineError::AppSet {
                set: set.name.clone(),
                revision: checkout.revision.short_sha().to_string(),
                source,
            }
        })?;
        let apps = expand(&set, &dirs)?;
        Ok(Expanded {
            revision: checkout.revision.clone(),
            apps,
        })
    })
    .await
    .map_err(|e| EngineError::Internal(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dirs: &[&str], files: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for d in dirs {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        for f in files {
            std::fs::write(root.path().join(f), "x").unwrap();
        }
        root
    }

    #[test]
    fn lists_matching_directories_only() {
        let root = tree(
            &[
                "infra/dev",
                "infra/prod/sub",
                "infra/.hidden",
                ".git/x",
                "apps/a",
            ],
            &["infra/README.md"],
        );
        let list = |p: &str| directories(root.path(), p).unwrap();
        assert_eq!(list("infra/*"), ["infra/dev", "infra/prod"]);
        assert_eq!(list("*/*"), ["apps/a", "infra/dev", "infra/prod"]);
        assert_eq!(list("infra/p*/*"), ["infra/prod/sub"]);
        assert_eq!(list("infra/dev"), ["infra/dev"]);
        assert!(list("infra/qa").is_empty());
        assert!(list("infra/README.md").is_empty());
        assert!(list("*").iter().all(|d| d != ".git"));
        assert_eq!(list("./infra/d?v/"), ["infra/dev"]);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_must_stay_inside() {
        let outside = tempfile::tempdir().unwrap();
        let root = tree(&["infra/dev", "shared/qa"], &[]);
        std::os::unix::fs::symlink("../shared/qa", root.path().join("infra/qa")).unwrap();
        std::os::unix::fs::symlink("missing", root.path().join("infra/dangling")).unwrap();
        assert_eq!(
            directories(root.path(), "infra/*").unwrap(),
            ["infra/dev", "infra/qa"]
        );
        std::os::unix::fs::symlink(outside.path(), root.path().join("infra/evil")).unwrap();
        let err = directories(root.path(), "infra/*").unwrap_err().to_string();
        assert_eq!(
            err,
            "directory \"infra/evil\" is not allowed: it is a symlink pointing outside the repository"
        );
        let err = directories(root.path(), "../x").unwrap_err().to_string();
        assert!(err.contains("leaves the repository"), "{err}");
    }
}
