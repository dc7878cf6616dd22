//! Running renderer binaries: discovery, a clean environment, a timeout and an output cap.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::RenderError;

/// The renderer binaries and the limits they run under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tools {
    /// The `helm` binary; `None` when not found.
    pub helm: Option<PathBuf>,
    /// The `kustomize` binary, or a `kubectl` binary (file name `kubectl`), which is then
    /// run as `kubectl kustomize`; `None` when neither was found.
    pub kustomize: Option<PathBuf>,
    /// How long one renderer run may take before it is killed.
    pub timeout: Duration,
    /// How many bytes of standard output one renderer run may print before it is killed.
    pub max_output: usize,
    /// Where charts pulled from chart repositories and OCI registries, and built chart
    /// dependencies, are cached (shared by processes, under a lock per entry).
    pub chart_cache: PathBuf,
}

impl Tools {
    /// Default for [`Tools::timeout`].
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
    /// Default for [`Tools::max_output`]: 64 MiB.
    pub const DEFAULT_MAX_OUTPUT: usize = 64 << 20;

    /// Finds the binaries: `FERRY_HELM` / `FERRY_KUSTOMIZE` when set, else `helm` /
    /// `kustomize` on `PATH`, else `kubectl` on `PATH` for Kustomize. Limits are the
    /// defaults; the chart cache is `charts/` in ferry's cache directory (`$FERRY_CACHE`,
    /// else `~/.cache/ferry`).
    pub fn discover() -> Self {
        Self::discover_with(|name| std::env::var_os(name))
    }

    fn discover_with(env: impl Fn(&str) -> Option<OsString>) -> Self {
        let path = env("PATH");
        let on_path = |name: &str| {
            path.as_deref().and_then(|p| {
                std::env::split_paths(p)
                    .map(|dir| dir.join(name))
                    .find(|candidate| is_executable(candidate))
            })
        };
        let configured = |var: &str| env(var).filter(|v| !v.is_empty()).map(PathBuf::from);
        Self {
            helm: configured("FERRY_HELM").or_else(|| on_path("helm")),
            kustomize: configured("FERRY_KUSTOMIZE")
                .or_else(|| on_path("kustomize"))
                .or_else(|| on_path("kubectl")),
            timeout: Self::DEFAULT_TIMEOUT,
            max_output: Self::DEFAULT_MAX_OUTPUT,
            chart_cache: env("FERRY_CACHE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|home| Path::new(&home).join(".cache/ferry")))
                .unwrap_or_else(|| std::env::temp_dir().join("ferry"))
                .join("charts"),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// How much of a tool's standard error is kept (the end of it).
const STDERR_KEEP: usize = 64 << 10;
/// How many of the last standard-error lines an error message shows.
const STDERR_LINES: usize = 8;
/// How many characters of standard error an error message shows at most.
const STDERR_CHARS: usize = 1000;

/// Runs `program args` in `cwd` with a clean environment (only `PATH`, and `HOME` plus
/// Helm's cache/config/data homes in a fresh temporary directory) under the timeout and
/// output cap of `tools`. Returns standard output.
pub(crate) fn run(
    tool: &'static str,
    program: &Path,
    args: &[OsString],
    cwd: &Path,
    tools: &Tools,
) -> Result<String, RenderError> {
    let scratch = tempfile::tempdir().map_err(|source| RenderError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    run_in_home(tool, program, args, cwd, tools, scratch.path())
}

/// Like [`run`], with `HOME` and Helm's homes under `home` (kept between runs by the caller).
pub(crate) fn run_in_home(
    tool: &'static str,
    program: &Path,
    args: &[OsString],
    cwd: &Path,
    tools: &Tools,
    home: &Path,
) -> Result<String, RenderError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join(".cache/helm"))
        .env("HELM_CONFIG_HOME", home.join(".config/helm"))
        .env("HELM_DATA_HOME", home.join(".local/share/helm"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    tracing::debug!(tool, program = %program.display(), ?args, "running renderer");
    let mut child = cmd.spawn().map_err(|source| RenderError::Spawn {
        tool,
        program: program.to_path_buf(),
        source,
    })?;

    enum Event {
        Stdout(Vec<u8>),
        Stderr(Vec<u8>),
        Overflow,
        Failed(std::io::Error),
    }
    let (tx, rx) = mpsc::channel();
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let limit = tools.max_output;
    let stdout_tx = tx.clone();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let event = match (&mut stdout).take(limit as u64 + 1).read_to_end(&mut buf) {
            Err(err) => Event::Failed(err),
            Ok(_) if buf.len() > limit => Event::Overflow,
            Ok(_) => Event::Stdout(buf),
        };
        let _ = stdout_tx.send(event);
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        let _ = tx.send(match read_tail(&mut stderr) {
            Ok(buf) => Event::Stderr(buf),
            Err(err) => Event::Failed(err),
        });
    });

    let deadline = Instant::now() + tools.timeout;
    let timeout = RenderError::Timeout {
        tool,
        timeout: tools.timeout,
    };
    let (mut out, mut err) = (None, None);
    while out.is_none() || err.is_none() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::Stdout(buf)) => out = Some(buf),
            Ok(Event::Stderr(buf)) => err = Some(buf),
            Ok(Event::Overflow) => {
                return Err(kill(child, RenderError::OutputTooLarge { tool, limit }));
            }
            Ok(Event::Failed(source)) => {
                let error = RenderError::Io {
                    path: program.to_path_buf(),
                    source,
                };
                return Err(kill(child, error));
            }
            Err(_) => return Err(kill(child, timeout)),
        }
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => return Err(kill(child, timeout)),
            Err(source) => {
                let error = RenderError::Io {
                    path: program.to_path_buf(),
                    source,
                };
                return Err(kill(child, error));
            }
        }
    };
    let (out, err) = (out.unwrap_or_default(), err.unwrap_or_default());
    if !status.success() {
        return Err(RenderError::ToolFailed {
            tool,
            status: status.to_string(),
            stderr: summarize(&err),
        });
    }
    if !err.is_empty() {
        tracing::warn!(tool, stderr = %summarize(&err), "renderer wrote to standard error");
    }
    String::from_utf8(out).map_err(|_| RenderError::NotUtf8 { file: tool.into() })
}

/// Kills the child's whole process group, reaps the child and returns `error`.
fn kill(mut child: Child, error: RenderError) -> RenderError {
    let pid = rustix::process::Pid::from_child(&child);
    if let Err(err) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
        tracing::warn!(%err, "cannot kill renderer process group");
        let _ = child.kill();
    }
    let _ = child.wait();
    error
}

/// Reads `reader` to the end, keeping only the last [`STDERR_KEEP`] bytes (or a little more).
fn read_tail(reader: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut buf = [0; 8192];
    loop {
        match reader.read(&mut buf)? {
            0 => return Ok(kept),
            n => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * STDERR_KEEP {
                    kept.drain(..kept.len() - STDERR_KEEP);
                }
            }
        }
    }
}

/// The last lines of a tool's standard error as one bounded line.
fn summarize(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return "no output on standard error".into();
    }
    let joined = lines[lines.len().saturating_sub(STDERR_LINES)..].join(" | ");
    let count = joined.chars().count();
    if count <= STDERR_CHARS {
        joined
    } else {
        let tail: String = joined.chars().skip(count - STDERR_CHARS).collect();
        format!("...{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn discover_prefers_env_then_path_then_kubectl() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let helm = script(b.path(), "helm");
        let kubectl = script(a.path(), "kubectl");
        std::fs::write(a.path().join("kustomize"), "not executable").unwrap();
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        let env = |vars: Vec<(&'static str, OsString)>| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            }
        };

        let tools = Tools::discover_with(env(vec![("PATH", path.clone())]));
        assert_eq!(tools.helm.as_deref(), Some(helm.as_path()));
        assert_eq!(tools.kustomize.as_deref(), Some(kubectl.as_path()));
        assert_eq!(tools.timeout, Tools::DEFAULT_TIMEOUT);
        assert_eq!(tools.chart_cache, std::env::temp_dir().join("ferry/charts"));
        let tools = Tools::discover_with(env(vec![("HOME", "/home/u".into())]));
        assert_eq!(tools.chart_cache, Path::new("/home/u/.cache/ferry/charts"));
        let tools = Tools::discover_with(env(vec![("FERRY_CACHE", "/c".into())]));
        assert_eq!(tools.chart_cache, Path::new("/c/charts"));

        let kustomize = script(b.path(), "kustomize");
        let tools = Tools::discover_with(env(vec![
            ("PATH", path),
            ("FERRY_HELM", "/opt/helm".into()),
            ("FERRY_KUSTOMIZE", "".into()),
        ]));
        assert_eq!(tools.helm.as_deref(), Some(Path::new("/opt/helm")));
        assert_eq!(tools.kustomize.as_deref(), Some(kustomize.as_path()));

        let tools = Tools::discover_with(env(vec![]));
        assert_eq!((tools.helm, tools.kustomize), (None, None));
    }

    #[test]
    fn stderr_summary_is_one_bounded_line() {
        assert_eq!(summarize(b""), "no output on standard error");
        assert_eq!(summarize(b"  Error: boom \n\n"), "Error: boom");
        let many: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        assert_eq!(
            summarize(many.as_bytes()),
            "line 13 | line 14 | line 15 | line 16 | line 17 | line 18 | line 19 | line 20"
        );
        let long = "x".repeat(5000);
        let s = summarize(long.as_bytes());
        assert_eq!(s.len(), STDERR_CHARS + 3);
        assert!(s.starts_with("...x"));
    }

    #[test]
    fn read_tail_keeps_the_end() {
        let data: Vec<u8> = (0..5 * STDERR_KEEP).map(|i| (i % 251) as u8).collect();
        let kept = read_tail(&mut data.as_slice()).unwrap();
        assert!(kept.len() >= STDERR_KEEP && kept.len() <= 2 * STDERR_KEEP);
        assert!(data.ends_with(&kept));
    }
}
