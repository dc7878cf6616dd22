//! Paths and files of the test running: its package and workspace directories (read when
//! the test runs), recursive copies, and a finished process's output for failure messages.

use std::path::{Path, PathBuf};
use std::process::Output;

/// The package directory of the test running, read when it runs (cargo sets
/// `CARGO_MANIFEST_DIR`) rather than baked in at compile time: a test binary reused from a
/// shared target dir may have been built from another checkout of the same sources.
///
/// # Panics
///
/// When `CARGO_MANIFEST_DIR` is unset (the test was not started by cargo).
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .expect("cargo test sets CARGO_MANIFEST_DIR")
        .into()
}

/// The workspace's root directory (two up from a package in `crates/`), canonical.
///
/// # Panics
///
/// As [`manifest_dir`], or when that directory is gone.
pub fn workspace_root() -> PathBuf {
    manifest_dir()
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Copies the directory `from` into `to`, recursively (creating `to`).
///
/// # Panics
///
/// When a directory cannot be read or created, or a file cannot be copied.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
        let target = to.join(entry.file_name());
        let is_dir = entry
            .file_type()
            .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()))
            .is_dir();
        if is_dir {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copying {}: {e}", entry.path().display()));
        }
    }
}

/// A finished process's stdout and stderr, each under a `--- stdout:` / `--- stderr:`
/// header, for an assertion's message.
pub fn output_text(out: &Output) -> String {
    format!(
        "--- stdout:\n{}--- stderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
