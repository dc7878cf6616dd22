//! `ferry promote`: copy image tags from one directory of an app set to another in the
//! local working copy of the set's repository, then commit the change with the `git` CLI.
//!
//! The target file is edited line by line ([`yaml`], the pure `ferry_plan::edit`), so
//! its comments and layout stay; nothing but the target file is committed. Blocking.

pub use ferry_plan::edit as yaml;

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_model::appset::{base_name, fill_placeholders};
use ferry_model::{AppSet, PromoteMethod};
use serde::Serialize;

use crate::appset::{ListError, directories};
use yaml::{Change, EditError};

/// File names Kustomize reads, in its order of preference.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Why a promotion did not happen. Each message is one line naming the set, directory
/// or file.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The set's repository is a URL; promote edits a local working copy.
    #[error(
        "app set {set}: promote edits a local working copy, but the set's repository is {repo}; run it in a clone with repo: <path>"
    )]
    NotLocal {
        /// The set.
        set: String,
        /// Its repository.
        repo: String,
    },
    /// `--from` / `--to` is not a directory of the set.
    #[error("app set {set}: {given:?} is not one of its directories ({known})")]
    UnknownDirectory {
        /// The set.
        set: String,
        /// The name given.
        given: String,
        /// The set's directories.
        known: String,
    },
    /// A base name matches more than one directory.
    #[error("app set {set}: {given:?} matches several directories ({matches}); give the path")]
    Ambiguous {
        /// The set.
        set: String,
        /// The name given.
        given: String,
        /// The matching paths.
        matches: String,
    },
    /// `--from` and `--to` are the same directory.
    #[error("--from and --to both name {dir}")]
    SameDirectory {
        /// The directory.
        dir: String,
    },
    /// A directory lacks the file promote reads or edits.
    #[error("{dir}: no {what}")]
    NoFile {
        /// The directory.
        dir: String,
        /// The file looked for.
        what: String,
    },
    /// The set's `valuesFile` does not expand.
    #[error("app set {set}: promote.valuesFile: {message}")]
    ValuesFile {
        /// The set.
        set: String,
        /// Why.
        message: String,
    },
    /// The files to read or edit have uncommitted changes.
    #[error("{files}: uncommitted changes; commit or stash them before promoting")]
    Dirty {
        /// The files, relative to the repository root.
        files: String,
    },
    /// Listing the set's directories failed.
    #[error("app set {set}: {source}")]
    List {
        /// The set.
        set: String,
        /// What went wrong.
        source: ListError,
    },
    /// A file could not be read or edited.
    #[error("{file}: {source}")]
    Edit {
        /// The file, relative to the repository root.
        file: String,
        /// What went wrong.
        source: EditError,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `git` command failed.
    #[error("git {command}: {message}")]
    Git {
        /// The command's arguments.
        command: String,
        /// Its error output, on one line.
        message: String,
    },
}

/// The outcome of a promotion.
#[derive(Clone, Debug, Serialize)]
pub struct Promotion {
    /// The set.
    pub set: String,
    /// The source directory's base name (environment), e.g. `staging`.
    pub from: String,
    /// The target directory's base name, e.g. `production`.
    pub to: String,
    /// The source directory, relative to the repository root.
    pub from_dir: String,
    /// The target directory, relative to the repository root.
    pub to_dir: String,
    /// The file read, relative to the repository root.
    pub source_file: String,
    /// The edited file, relative to the repository root.
    pub file: String,
    /// The new commit's SHA; `None` when the target already matched (nothing committed).
    pub commit: Option<String>,
    /// `HEAD` before the promotion.
    pub previous: String,
    /// What changed.
    pub changes: Vec<Change>,
}

/// Copies the image tags (or the Helm values key) of the set's directory `from` into
/// `to` in the set's local working copy and commits the target file alone. `from` and
/// `to` are directory base names (`staging`) or paths (`infra/staging`).
pub fn promote(set: &AppSet, from: &str, to: &str) -> Result<Promotion, PromoteError> {
    let root = working_copy(set)?;
    let dirs: Vec<String> = directories(&root, &set.directories)
        .map_err(|source| PromoteError::List {
            set: set.name.clone(),
            source,
        })?
        .into_iter()
        .filter(|d| set.selects(d))
        .collect();
    let from_dir = pick(set, &dirs, from)?;
    let to_dir = pick(set, &dirs, to)?;
    if from_dir == to_dir {
        return Err(PromoteError::SameDirectory { dir: from_dir });
    }
    let method = set.promote_method();
    let from_file = file_of(set, &method, &root, &from_dir)?;
    let to_file = file_of(set, &method, &root, &to_dir)?;
    let dirty = git(
        &root,
        &[
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--",
            &from_file,
            &to_file,
        ],
    )?;
    if !dirty.trim().is_empty() {
        let files: Vec<&str> = dirty.lines().filter_map(|l| l.get(3..)).collect();
        return Err(PromoteError::Dirty {
            files: files.join(", "),
        });
    }
    let read = |rel: &str| {
        let path = root.join(rel);
        std::fs::read_to_string(&path).map_err(|source| PromoteError::Io { path, source })
    };
    let (source, target) = (read(&from_file)?, read(&to_file)?);
    let edit_error = |file: &str| {
        let file = file.to_string();
        move |source| PromoteError::Edit { file, source }
    };
    let edit = match &method {
        PromoteMethod::KustomizeImages => {
            let images = yaml::read_images(&source).map_err(edit_error(&from_file))?;
            if images.is_empty() {
                return Err(PromoteError::Edit {
                    file: from_file,
                    source: EditError::Missing("no images: entries to promote".into()),
                });
            }
            yaml::set_images(&target, &images).map_err(edit_error(&to_file))?
        }
        PromoteMethod::HelmValues { key, .. } => {
            let token = yaml::read_value(&source, key).map_err(edit_error(&from_file))?;
            yaml::set_value(&target, key, &token).map_err(edit_error(&to_file))?
        }
    };
    let previous = git(&root, &["rev-parse", "HEAD"])?.trim().to_string();
    let mut promotion = Promotion {
        set: set.name.clone(),
        from: base_name(&from_dir).to_string(),
        to: base_name(&to_dir).to_string(),
        from_dir,
        to_dir,
        source_file: from_file,
        file: to_file.clone(),
        commit: None,
        previous,
        changes: edit.changes,
    };
    if promotion.changes.is_empty() {
        return Ok(promotion);
    }
    let path = root.join(&to_file);
    let write = |text: &str| {
        std::fs::write(&path, text).map_err(|source| PromoteError::Io {
            path: path.clone(),
            source,
        })
    };
    write(&edit.text)?;
    let (subject, body) = promotion.message();
    if let Err(e) = git(
        &root,
        &[
            "commit", "--quiet", "-m", &subject, "-m", &body, "--", &to_file,
        ],
    ) {
        write(&target)?;
        return Err(e);
    }
    promotion.commit = Some(git(&root, &["rev-parse", "HEAD"])?.trim().to_string());
    Ok(promotion)
}

impl Promotion {
    /// The commit message: a subject naming the set, the directories and the changes
    /// (`promote llm: staging → production (registry.example/llm-app 0.2.0 → 0.2.1)`),
    /// and a body listing each change.
    pub fn message(&self) -> (String, String) {
        let list: Vec<String> = self
            .changes
            .iter()
            .map(|c| format!("{} {} → {}", c.image, c.from, c.to))
            .collect();
        let summary = if list.len() <= 2 {
            list.join(", ")
        } else {
            format!("{} images", list.len())
        };
        let subject = format!(
            "promote {}: {} → {} ({summary})",
            self.set, self.from, self.to
        );
        let mut body: Vec<String> = list.iter().map(|l| format!("- {l}")).collect();
        body.push(String::new());
        body.push(format!(
            "Copied from {} by ferry promote.",
            self.source_file
        ));
        (subject, body.join("\n"))
    }
}

/// The set's repository as a local working copy's top directory.
fn working_copy(set: &AppSet) -> Result<PathBuf, PromoteError> {
    let repo = &set.template.spec.source.repo;
    let not_local = || PromoteError::NotLocal {
        set: set.name.clone(),
        repo: repo.clone(),
    };
    let path = match repo.strip_prefix("file://") {
        Some(path) => PathBuf::from(path),
        None if repo.contains("://") || repo.contains('@') => return Err(not_local()),
        None => PathBuf::from(repo),
    };
    let top = git(&path, &["rev-parse", "--show-toplevel"])?;
    let top = PathBuf::from(top.trim());
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(&top, &path) {
        return Err(PromoteError::Git {
            command: "rev-parse --show-toplevel".into(),
            message: format!(
                "{} is inside the working copy {}, not its top directory",
                path.display(),
                top.display()
            ),
        });
    }
    Ok(top)
}

/// The directory of the set that `given` names: a path, or a unique base name.
fn pick(set: &AppSet, dirs: &[String], given: &str) -> Result<String, PromoteError> {
    let given_path = given.trim_end_matches('/').trim_start_matches("./");
    if let Some(d) = dirs.iter().find(|d| *d == given_path) {
        return Ok(d.clone());
    }
    let matches: Vec<&String> = dirs.iter().filter(|d| base_name(d) == given).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(PromoteError::UnknownDirectory {
            set: set.name.clone(),
            given: given.to_string(),
            known: if dirs.is_empty() {
                "none".into()
            } else {
                dirs.iter()
                    .map(|d| base_name(d))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
        many => Err(PromoteError::Ambiguous {
            set: set.name.clone(),
            given: given.to_string(),
            matches: many
                .iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The file promote reads or edits in `dir`, relative to the repository root.
fn file_of(
    set: &AppSet,
    method: &PromoteMethod,
    root: &Path,
    dir: &str,
) -> Result<String, PromoteError> {
    let (names, what) = match method {
        PromoteMethod::KustomizeImages => (
            KUSTOMIZATION_FILES.iter().map(|n| n.to_string()).collect(),
            "kustomization.yaml".to_string(),
        ),
        PromoteMethod::HelmValues { file, .. } => {
            let name =
                fill_placeholders(file, dir).map_err(|message| PromoteError::ValuesFile {
                    set: set.name.clone(),
                    message,
                })?;
            (
                vec![name.clone()],
                format!("values file {name} (promote.valuesFile)"),
            )
        }
    };
    names
        .iter()
        .map(|n| format!("{dir}/{n}"))
        .find(|rel| root.join(rel).is_file())
        .ok_or_else(|| PromoteError::NoFile {
            dir: dir.to_string(),
            what,
        })
}

/// Runs `git -C root args…`; its stdout, or its stderr as the error.
fn git(root: &Path, args: &[&str]) -> Result<String, PromoteError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .map_err(|e| PromoteError::Git {
            command: args.join(" "),
            message: format!("cannot run git: {e}"),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let text = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        return Err(PromoteError::Git {
            command: args.first().copied().unwrap_or_default().to_string(),
            message: text.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
