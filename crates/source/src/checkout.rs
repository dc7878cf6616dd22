//! Writing a commit's tree to a directory, and confining app paths to it.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use gix::bstr::{BStr, ByteSlice};
use gix::object::tree::EntryKind;

use crate::error::SourceError;
use crate::mirror::Mirror;

/// Symlinks followed while resolving one path before giving up (as the kernel's `ELOOP`).
const MAX_SYMLINK_HOPS: usize = 40;

/// Writes the tree of `commit` into the empty directory `dest`: files with their
/// executable bit, symlinks as symlinks (plain files holding the target where the
/// platform has no symlinks), submodules as empty directories.
pub(crate) fn write_tree(
    mirror: &Mirror,
    repo: &gix::Repository,
    commit: &gix::Commit<'_>,
    dest: &Path,
) -> Result<(), SourceError> {
    let short_sha = short(&commit.id.to_string()).to_string();
    let tree_id = commit.tree_id().map_err(|e| mirror.cache_error(&e))?;
    let mut pending = vec![(tree_id.detach(), dest.to_path_buf())];
    while let Some((tree_id, dir)) = pending.pop() {
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| mirror.cache_error(&e))?;
        let decoded = tree.decode().map_err(|e| mirror.cache_error(&e))?;
        for entry in &decoded.entries {
            let name = safe_name(entry.filename).ok_or_else(|| SourceError::UnsafeTreeEntry {
                repo: mirror.repo.clone(),
                short_sha: short_sha.clone(),
                entry: entry.filename.to_str_lossy().into_owned(),
            })?;
            let path = dir.join(name);
            match entry.mode.kind() {
                EntryKind::Tree => {
                    create_dir(&path)?;
                    pending.push((entry.oid.to_owned(), path));
                }
                EntryKind::Commit => create_dir(&path)?,
                kind @ (EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Link) => {
                    let blob = repo
                        .find_blob(entry.oid)
                        .map_err(|e| mirror.cache_error(&e))?;
                    if kind == EntryKind::Link {
                        write_symlink(&path, blob.data.as_bstr())?;
                    } else {
                        write_file(&path, &blob.data, kind == EntryKind::BlobExecutable)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The first 7 characters of a SHA, as Git abbreviates.
pub(crate) fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// A tree entry name as a single path component, or `None` if writing it could
/// escape its directory or create Git metadata (`..`, `/`, `.git`, …).
fn safe_name(name: &BStr) -> Option<PathBuf> {
    let bytes: &[u8] = name.as_ref();
    let forbidden = bytes.is_empty()
        || bytes == b"."
        || bytes == b".."
        || bytes.eq_ignore_ascii_case(b".git")
        || bytes.iter().any(|b| matches!(b, b'/' | b'\\' | 0));
    if forbidden {
        return None;
    }
    let path = gix::path::from_byte_slice(bytes).ok()?.to_path_buf();
    let mut components = path.components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) => Some(path),
        _ => None,
    }
}

/// Creates a directory that must not exist yet, so nothing is ever written through
/// a pre-existing symlink.
fn create_dir(path: &Path) -> Result<(), SourceError> {
    std::fs::create_dir(path).map_err(SourceError::io(format!("creating {}", path.display())))
}

fn write_file(path: &Path, data: &[u8], executable: bool) -> Result<(), SourceError> {
    let mut options = std::fs::File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if executable { 0o777 } else { 0o666 });
    }
    #[cfg(not(unix))]
    let _ = executable;
    let context = || format!("writing {}", path.display());
    let mut file = options.open(path).map_err(SourceError::io(context()))?;
    file.write_all(data).map_err(SourceError::io(context()))
}

#[cfg(unix)]
fn write_symlink(path: &Path, target: &BStr) -> Result<(), SourceError> {
    let target = gix::path::from_byte_slice(target.as_ref()).map_err(|e| SourceError::Io {
        context: format!("creating symlink {}", path.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    std::os::unix::fs::symlink(target, path).map_err(SourceError::io(format!(
        "creating symlink {}",
        path.display()
    )))
}

#[cfg(not(unix))]
fn write_symlink(path: &Path, target: &BStr) -> Result<(), SourceError> {
    write_file(path, target.as_ref(), false)
}

/// Why a path cannot be used.
pub(crate) enum Rejected {
    /// It leaves the checkout; the text says how.
    Escapes(String),
    /// The filesystem failed.
    Io(String, std::io::Error),
}

/// Resolves `rel` inside `root` the way the OS would, following symlinks, but
/// fails if any step (`..`, an absolute or relative symlink target) would leave `root`.
/// Returns the symlink-free path, or `None` if some component does not exist.
pub(crate) fn resolve_inside(root: &Path, rel: &Path) -> Result<Option<PathBuf>, Rejected> {
    let mut queue: VecDeque<OsString> = VecDeque::new();
    for component in rel.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => {
                return Err(Rejected::Escapes("absolute paths are not allowed".into()));
            }
            Component::CurDir => {}
            Component::ParentDir => queue.push_back("..".into()),
            Component::Normal(name) => queue.push_back(name.to_os_string()),
        }
    }
    let mut stack: Vec<OsString> = Vec::new();
    let mut missing = false;
    let mut hops = 0;
    // The last symlink followed and how many queued components came from symlink
    // targets, to explain an escape through a symlink.
    let mut via: Option<PathBuf> = None;
    let mut from_links = 0usize;
    while let Some(name) = queue.pop_front() {
        let from_link = from_links > 0;
        from_links = from_links.saturating_sub(1);
        if name == ".." {
            if stack.pop().is_none() {
                return Err(Rejected::Escapes(
                    match via.as_ref().filter(|_| from_link) {
                        Some(link) => format!("symlink {link:?} points outside the checkout"),
                        None => "\"..\" leaves the checkout".into(),
                    },
                ));
            }
            continue;
        }
        stack.push(name);
        if missing {
            continue;
        }
        let relative: PathBuf = stack.iter().collect();
        let path = root.join(&relative);
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing = true;
                continue;
            }
            Err(e) => return Err(Rejected::Io(format!("reading {}", path.display()), e)),
        };
        if !metadata.file_type().is_symlink() {
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(Rejected::Escapes(format!(
                "too many levels of symlinks at {relative:?}"
            )));
        }
        let target = std::fs::read_link(&path)
            .map_err(|e| Rejected::Io(format!("reading symlink {}", path.display()), e))?;
        if target.has_root()
            || target
                .components()
                .any(|c| matches!(c, Component::Prefix(_)))
        {
            return Err(Rejected::Escapes(format!(
                "symlink {relative:?} points outside the checkout"
            )));
        }
        stack.pop();
        for component in target.components().rev() {
            match component {
                Component::ParentDir => queue.push_front("..".into()),
                Component::Normal(n) => queue.push_front(n.to_os_string()),
                _ => continue,
            }
            from_links += 1;
        }
        via = Some(relative);
    }
    Ok((!missing).then(|| stack.iter().fold(root.to_path_buf(), |p, c| p.join(c))))
}

/// Fails if a symlink anywhere under `dir` (following symlinked directories that
/// stay inside) points outside `root`.
pub(crate) fn check_symlinks(root: &Path, dir: &Path) -> Result<(), Rejected> {
    let mut visited: HashSet<PathBuf> = HashSet::from([dir.to_path_buf()]);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Rejected::Io(format!("listing {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Rejected::Io(format!("listing {}", dir.display()), e))?;
            let path = entry.path();
            let file_type = entry
                .file_type()
                .map_err(|e| Rejected::Io(format!("reading {}", path.display()), e))?;
            let next = if file_type.is_symlink() {
                let relative = path.strip_prefix(root).unwrap_or(&path);
                resolve_inside(root, relative)?.filter(|p| p.is_dir())
            } else if file_type.is_dir() {
                Some(path)
            } else {
                None
            };
            if let Some(next) = next
                && visited.insert(next.clone())
            {
                pending.push(next);
            }
        }
    }
    Ok(())
}
