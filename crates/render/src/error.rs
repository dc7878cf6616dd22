use std::path::PathBuf;
use std::time::Duration;

use ferry_model::{ManifestError, Origin};

/// Why rendering failed. Every message is one line and names the file, object or tool.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A file or directory could not be read (or a scratch file written).
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file or a renderer's output is not valid UTF-8.
    #[error("{file}: not valid UTF-8")]
    NotUtf8 {
        /// The file (relative to the app directory) or the renderer's name.
        file: String,
    },
    /// Invalid YAML or JSON.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file (relative to the app directory) or the renderer's name.
        file: String,
        /// One-based line.
        line: u64,
        /// One-based column.
        column: u64,
        /// The parser's message.
        message: String,
    },
    /// A document is not a Kubernetes object.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Two manifests describe the same object.
    #[error("duplicate object {object}: in {first} and {second}")]
    Duplicate {
        /// The object, `Kind/namespace/name`.
        object: String,
        /// Where it is first defined.
        first: Origin,
        /// Where it is defined again.
        second: Origin,
    },
    /// Strict variable substitution met an undefined variable.
    #[error("{origin}: {object}: variable {name} is not defined (strictVars is on)")]
    UndefinedVariable {
        /// The variable.
        name: String,
        /// The object using it, `Kind/namespace/name` as written before substitution.
        object: String,
        /// Where the object comes from.
        origin: Origin,
    },
    /// The app directory holds files, but none that a renderer reads.
    #[error(
        "{}: no manifests (*.yaml, *.yml, *.json, *.jsonnet, kustomization.yaml or Chart.yaml); found only {}",
        dir.display(),
        found.join(", ")
    )]
    NoManifests {
        /// The app directory.
        dir: PathBuf,
        /// Some of the files found (relative paths, at most a few).
        found: Vec<String>,
    },
    /// A path escapes the working copy.
    #[error("{} is outside the working copy {}", path.display(), root.display())]
    OutsideRoot {
        /// The offending path.
        path: PathBuf,
        /// The working-copy root.
        root: PathBuf,
    },
    /// A Jsonnet file does not parse or evaluate.
    #[error("{location}: {message}")]
    Jsonnet {
        /// `file:line:column` (the file relative to the app directory), or the file.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A Jsonnet import names a file outside the working copy.
    #[error("{location}: import {import:?} is outside the repository")]
    ImportOutsideRoot {
        /// `file:line:column` of the import.
        location: String,
        /// The path as written in the import.
        import: String,
    },
    /// A renderer option has an invalid value.
    #[error("{field}: {message}")]
    InvalidOption {
        /// The option, e.g. `kustomize.loadRestrictor`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A Helm chart cannot be rendered as it is (e.g. unvendored dependencies).
    #[error("{}: {message}", chart.display())]
    Chart {
        /// The chart directory.
        chart: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A chart could not be pulled from its chart repository or OCI registry.
    #[error("chart {chart} version {version} from {repo}: {message}")]
    Pull {
        /// The chart's name.
        chart: String,
        /// The chart repository or OCI registry path.
        repo: String,
        /// The version or range asked for.
        version: String,
        /// What failed, e.g. Helm's error.
        message: String,
    },
    /// The renderer's binary was not found.
    #[error("{tool} not found: install it (testbed/build.sh installs a pinned one) or set {env}")]
    ToolNotFound {
        /// `helm` or `kustomize`.
        tool: &'static str,
        /// The environment variable that names the binary.
        env: &'static str,
    },
    /// The renderer's binary could not be started.
    #[error("cannot run {tool} ({}): {source}", program.display())]
    Spawn {
        /// `helm` or `kustomize`.
        tool: &'static str,
        /// The binary.
        program: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The renderer exited unsuccessfully.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        /// `helm` or `kustomize`.
        tool: &'static str,
        /// The exit status, e.g. `exit status: 1`.
        status: String,
        /// The last lines of its standard error, joined into one bounded line.
        stderr: String,
    },
    /// The renderer ran longer than allowed and was killed.
    #[error("{tool} did not finish within {timeout:?} and was killed")]
    Timeout {
        /// `helm` or `kustomize`.
        tool: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// An in-process evaluation ran longer than allowed; its thread is abandoned.
    #[error("{tool} did not finish within {timeout:?}; the evaluation was abandoned")]
    EvalTimeout {
        /// `jsonnet`.
        tool: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The renderer printed more than allowed and was killed.
    #[error("{tool} output exceeds the limit of {limit} bytes")]
    OutputTooLarge {
        /// `helm` or `kustomize`.
        tool: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
}
