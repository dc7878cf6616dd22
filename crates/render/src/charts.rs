//! Charts from chart repositories and OCI registries, pulled with `helm pull` into a cache
//! shared by processes: `<cache>/<repository key>/<chart>-<version>.tgz`, written under a
//! lock per chart and moved into place whole, so readers never see a partial archive.
//! An exact version is served from the cache without asking the repository; a range (or
//! no version) is resolved by the repository on every pull.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::RenderError;
use crate::process::{Tools, run};

/// The archive (`.tgz`) of chart `chart` of `repo` (`https://`, `http://` or `oci://`) at
/// `version` (exact or a range; `None`: the newest stable version), from the cache or
/// pulled into it.
pub(crate) fn pull(
    program: &Path,
    tools: &Tools,
    chart: &str,
    repo: &str,
    version: Option<&str>,
) -> Result<PathBuf, RenderError> {
    let failed = |message: String| RenderError::Pull {
        chart: chart.into(),
        repo: repo.into(),
        version: version.unwrap_or("(newest)").into(),
        message,
    };
    let dir = tools.chart_cache.join(key(repo.trim_end_matches('/')));
    let cached = |v: &str| dir.join(format!("{chart}-{v}.tgz"));
    let exact = version
        .filter(|v| is_exact(v))
        .map(|v| v.trim_start_matches('v'));
    if let Some(v) = exact
        && cached(v).is_file()
    {
        return Ok(cached(v));
    }
    fs::create_dir_all(&dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    let _lock = lock(&dir.join(format!("{chart}.lock"))).map_err(|e| failed(e.to_string()))?;
    if let Some(v) = exact
        && cached(v).is_file()
    {
        return Ok(cached(v));
    }
    let scratch = tempfile::tempdir_in(&dir).map_err(|e| failed(e.to_string()))?;
    let mut args: Vec<OsString> = vec!["pull".into()];
    match repo.strip_prefix("oci://") {
        Some(rest) => {
            args.push(format!("{}/{chart}", repo.trim_end_matches('/')).into());
            if is_loopback(rest) {
                args.push("--plain-http".into());
            }
        }
        None => args.extend([chart.into(), "--repo".into(), repo.into()]),
    }
    if let Some(v) = version {
        args.extend(["--version".into(), v.into()]);
    }
    args.extend(["--destination".into(), scratch.path().into()]);
    run("helm", program, &args, scratch.path(), tools).map_err(|e| failed(e.to_string()))?;
    let prefix = format!("{chart}-");
    let archive = fs::read_dir(scratch.path())
        .map_err(|e| failed(e.to_string()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with(&prefix) && name.ends_with(".tgz"))
        .ok_or_else(|| failed("helm pull wrote no chart archive".into()))?;
    let pulled = archive[prefix.len()..archive.len() - ".tgz".len()].to_string();
    let path = cached(&pulled);
    fs::rename(scratch.path().join(&archive), &path)
        .map_err(|e| failed(format!("{}: {e}", path.display())))?;
    tracing::info!(chart, repo, version = pulled, "pulled chart");
    Ok(path)
}

/// Blocks until this process holds the lock file at `path` (released when dropped).
pub(crate) fn lock(path: &Path) -> std::io::Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    file.lock()
        .map_err(|e| std::io::Error::new(e.kind(), format!("locking {}: {e}", path.display())))?;
    Ok(file)
}

/// A short stable key for `text`: the first 16 hex digits of its SHA-256.
pub(crate) fn key(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// Whether `version` names one version (`1.2.3`, `v1.2.3-rc.1+build`), not a range.
pub(crate) fn is_exact(version: &str) -> bool {
    let v = version.strip_prefix('v').unwrap_or(version);
    let (core, rest) = match v.find(['-', '+']) {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-+.".contains(&b))
}

/// Whether an OCI reference (without `oci://`) is on a loopback host, which Helm is then
/// told to reach over plain HTTP.
pub(crate) fn is_loopback(reference: &str) -> bool {
    let host = reference.split('/').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_versions_and_ranges() {
        for v in ["1.2.3", "v1.2.3", "1.0.0-rc.1", "1.0.0+build.5", "10.20.30"] {
            assert!(is_exact(v), "{v}");
        }
        for v in [
            "^1.0.0",
            "~1.2",
            ">=1.0.0 <2.0.0",
            "1.x",
            "1.2",
            "*",
            "1.2.3 || 2.0.0",
        ] {
            assert!(!is_exact(v), "{v}");
        }
    }

    #[test]
    fn loopback_registries() {
        for r in [
            "127.0.0.1:5000/charts",
            "localhost/c",
            "[::1]:5000/c",
            "127.1.2.3",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "ghcr.io/org/charts",
            "10.0.0.1:5000/c",
            "registry.local:5000",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn keys_are_stable() {
        assert_eq!(key("https://charts.example"), key("https://charts.example"));
        assert_ne!(key("https://a.example"), key("https://b.example"));
        assert_eq!(key("x").len(), 16);
    }
}
