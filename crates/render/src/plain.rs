use std::fs;
use std::path::{Path, PathBuf};

use ferry_model::Manifest;

use crate::{RenderError, RenderRequest, Renderer, inside_root, parse_documents};

/// Renders every `*.yaml`, `*.yml` and `*.json` file under the app directory, recursively,
/// in order of relative path. Hidden files and directories (`.git`, ...) are ignored,
/// symlinked directories are not followed, and symlinked files must resolve inside the
/// working copy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Renderer for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }

    fn render(&self, req: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        let mut files = Vec::new();
        let mut others = Vec::new();
        collect(req.dir, Path::new(""), &mut files, &mut others)?;
        if files.is_empty() && !others.is_empty() {
            others.sort();
            let mut found: Vec<String> = others
                .iter()
                .take(FOUND_SHOWN)
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if others.len() > FOUND_SHOWN {
                found.push(format!("and {} more", others.len() - FOUND_SHOWN));
            }
            return Err(RenderError::NoManifests {
                dir: req.dir.to_path_buf(),
                found,
            });
        }
        files.sort();
        let mut manifests = Vec::new();
        for rel in files {
            let path = req.dir.join(&rel);
            inside_root(&path, req.root)?;
            let name = rel.to_string_lossy();
            let bytes = fs::read(&path).map_err(|source| RenderError::Io { path, source })?;
            let text = String::from_utf8(bytes).map_err(|_| RenderError::NotUtf8 {
                file: name.to_string(),
            })?;
            manifests.extend(parse_documents(&text, &name)?);
        }
        Ok(manifests)
    }
}

/// How many non-manifest files a [`RenderError::NoManifests`] names.
const FOUND_SHOWN: usize = 5;

/// Appends the manifest files under `base/rel` to `out` and the other files to `others`,
/// as paths relative to `base`.
fn collect(
    base: &Path,
    rel: &Path,
    out: &mut Vec<PathBuf>,
    others: &mut Vec<PathBuf>,
) -> Result<(), RenderError> {
    let dir = base.join(rel);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenderError::Io { path, source }
    };
    for entry in fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(io(&path))?;
        if file_type.is_dir() {
            collect(base, &rel.join(&name), out, others)?;
        } else if file_type.is_symlink() && path.is_dir() {
            tracing::warn!(path = %path.display(), "not following symlinked directory");
        } else if is_manifest_file(&path) {
            out.push(rel.join(name));
        } else {
            others.push(rel.join(name));
        }
    }
    Ok(())
}

fn is_manifest_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json")
}
