//! The `ferry.yaml` schema. [`AppSpec`] is also the spec of the agent's
//! `Application` custom resource, so it derives a JSON schema and uses camelCase.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::AppKey;
use crate::appset::AppSet;
use crate::deps::{DependencyError, dependency_order};
use crate::project::{DEFAULT_PROJECT, NamedProject, Project};

/// An error in an app definition.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML for the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
    /// A field has an invalid value.
    #[error("{location}: field {field}: {message}")]
    Invalid {
        /// File and app the field belongs to.
        location: String,
        /// The field's path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No app set of that name.
    #[error("no app set named {name:?} in {path} (app sets: {known})")]
    UnknownAppSet {
        /// The requested name.
        name: String,
        /// The file searched.
        path: PathBuf,
        /// Names that exist.
        known: String,
    },
    /// A `dependsOn` names no app, or apps depend on each other in a circle.
    #[error("{path}: {source}")]
    Dependency {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: DependencyError,
    },
    /// No app of that name.
    #[error("no app named {name:?} in {path} (apps: {known})")]
    UnknownApp {
        /// The requested name.
        name: String,
        /// The file searched.
        path: PathBuf,
        /// Names that exist.
        known: String,
    },
}

/// Which renderer turns the app directory into manifests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RendererKind {
    /// Detect: `kustomization.yaml` → kustomize, `Chart.yaml` → helm, a top-level
    /// `*.jsonnet` file → jsonnet, else plain.
    #[default]
    Auto,
    /// YAML/JSON files, recursively.
    Plain,
    /// `kustomize build`.
    Kustomize,
    /// `helm template`.
    Helm,
    /// The directory's top-level `*.jsonnet` files (and YAML/JSON files), evaluated
    /// in-process.
    Jsonnet,
}

/// Options for the Kustomize renderer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KustomizeOptions {
    /// `LoadRestrictionsRootOnly` (default) or `LoadRestrictionsNone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_restrictor: Option<String>,
    /// Pass `--enable-helm` (off by default).
    #[serde(default)]
    pub enable_helm: bool,
}

/// Options for the Helm renderer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HelmOptions {
    /// Release name (default: the app name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files, relative to the chart directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    /// Inline values, merged last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub values: Option<serde_json::Value>,
    /// Render the chart's `crds/` too (default true).
    #[serde(default = "yes")]
    pub include_crds: bool,
    /// A chart from a chart repository or OCI registry (`repo`) instead of the app
    /// directory's own chart; values files stay relative to the app directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// The chart repository (`https://…`, `http://…`) or OCI registry path (`oci://…`) of
    /// `chart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The version of `chart`: exact (`1.2.3`) or a range (`^1.0.0`, `>=1.0.0 <2.0.0`,
    /// the highest match wins); default: the newest stable version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Offline renders only (`ferry render`, `ferry diff --against`): the Kubernetes
    /// version for `.Capabilities.KubeVersion`. Against a cluster its own version is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_version: Option<String>,
    /// Offline renders only: API versions for `.Capabilities.APIVersions`, added to
    /// Helm's built-in ones. Against a cluster those it serves are used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
}

impl HelmOptions {
    /// Checks field values; returns the offending field (under `helm.`) and why.
    fn validate(&self, renderer: RendererKind) -> Result<(), (String, String)> {
        let invalid = |field: &str, message: String| Err((format!("source.helm.{field}"), message));
        match (&self.chart, &self.repo) {
            (Some(_), None) => return invalid("repo", "must be set with helm.chart".into()),
            (None, Some(_)) => return invalid("chart", "must be set with helm.repo".into()),
            (None, None) if self.version.is_some() => {
                return invalid("version", "needs helm.chart and helm.repo".into());
            }
            _ => {}
        }
        if let Some(chart) = &self.chart {
            if chart.is_empty()
                || chart.starts_with('.')
                || chart.contains(|c: char| c == '/' || c.is_whitespace())
            {
                return invalid("chart", format!("{chart:?} is not a chart name"));
            }
            if !matches!(renderer, RendererKind::Auto | RendererKind::Helm) {
                return Err((
                    "source.renderer".into(),
                    "must be helm (or left out) with helm.chart".into(),
                ));
            }
        }
        if let Some(repo) = &self.repo
            && !["https://", "http://", "oci://"]
                .iter()
                .any(|scheme| repo.starts_with(scheme) && repo.len() > scheme.len())
        {
            return invalid(
                "repo",
                format!("{repo:?} is not an https://, http:// or oci:// URL"),
            );
        }
        if let Some(version) = &self.version
            && version.trim().is_empty()
        {
            return invalid("version", "must not be empty".into());
        }
        if let Some(version) = &self.kube_version
            && !is_kube_version(version)
        {
            return invalid(
                "kubeVersion",
                format!("{version:?} is not a Kubernetes version such as v1.34.0"),
            );
        }
        if let Some(bad) = self
            .api_versions
            .iter()
            .find(|v| v.is_empty() || v.contains(char::is_whitespace))
        {
            return invalid(
                "apiVersions",
                format!("{bad:?} is not an API version such as apps/v1"),
            );
        }
        Ok(())
    }
}

/// Whether `text` is a Kubernetes version as Helm's `--kube-version` takes it:
/// `[v]MAJOR.MINOR[.PATCH][-pre]`.
fn is_kube_version(text: &str) -> bool {
    let core = text.strip_prefix('v').unwrap_or(text);
    let core = core.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

impl Default for HelmOptions {
    fn default() -> Self {
        Self {
            release_name: None,
            values_files: Vec::new(),
            values: None,
            include_crds: true,
            chart: None,
            repo: None,
            version: None,
            kube_version: None,
            api_versions: Vec::new(),
        }
    }
}

/// Options for the Jsonnet renderer. Values are strings, as with `jsonnet --ext-str` and
/// `--tla-str`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonnetOptions {
    /// External variables, read with `std.extVar(name)`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ext_vars: BTreeMap<String, String>,
    /// Top-level arguments: passed by name when an entry point evaluates to a function.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tlas: BTreeMap<String, String>,
    /// Extra import search directories, relative to the repository root (e.g. `vendor`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub libs: Vec<String>,
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

fn yes() -> bool {
    true
}

/// A Secret holding repository credentials, with Flux's `GitRepository` keys:
/// `username` and `password`, or `bearerToken`, for HTTPS; `identity` (a private key)
/// and `known_hosts` for SSH.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
    /// Its namespace: an Application's own (the only one it may name); for a `ferry.yaml`
    /// app, default `ferry-system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Where an app's manifests come from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// Repository URL (`https://`, `ssh://`, `git@host:path`; in `ferry.yaml` also
    /// `file://` or a local path), without credentials: see `secretRef`.
    pub repo: String,
    /// Agent: the Secret with the repository's credentials (push mode uses your own Git
    /// credentials, or `credentialsDir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// `ferry.yaml` only: a directory holding the same keys as `secretRef`'s Secret as
    /// files (e.g. a mounted Secret), relative to the `ferry.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_dir: Option<String>,
    /// Branch, tag or commit SHA (default: the remote's HEAD).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Directory inside the repository (default: its root).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Renderer (default: auto-detect).
    #[serde(default)]
    pub renderer: RendererKind,
    /// Kustomize options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeOptions>,
    /// Helm options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmOptions>,
    /// Jsonnet options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonnet: Option<JsonnetOptions>,
    /// Variables substituted as `${VAR}` / `${VAR:=default}` after rendering.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// Fail on an undefined variable instead of leaving it empty.
    #[serde(default)]
    pub strict_vars: bool,
}

/// Where an app is deployed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// kubeconfig context (default: the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Default namespace for namespaced objects without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Create the namespace when missing.
    #[serde(default)]
    pub create_namespace: bool,
}

/// Health wait settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitSpec {
    /// Wait for health after applying (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long to wait, e.g. `5m` (default `5m`).
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_timeout() -> String {
    "5m".into()
}

impl Default for WaitSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout: default_timeout(),
        }
    }
}

/// One application: a source, a destination and sync policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppSpec {
    /// The project bounding the app (default `default`): where it may deploy from and
    /// to, which kinds, and as which service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Where manifests come from.
    pub source: SourceSpec,
    /// Where they go.
    #[serde(default)]
    pub destination: Destination,
    /// Delete objects that left Git (default true).
    #[serde(default = "yes")]
    pub prune: bool,
    /// Health wait.
    #[serde(default)]
    pub wait: WaitSpec,
    /// Agent: restore drifted objects at once (default true).
    #[serde(default = "yes")]
    pub self_heal: bool,
    /// Agent: Git poll interval, e.g. `60s` (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Agent: do not reconcile.
    #[serde(default)]
    pub suspend: bool,
    /// Prune Namespaces, CustomResourceDefinitions and PersistentVolumes that left Git
    /// (deleting one deletes what is in it or of its type); without it they are kept
    /// unless annotated `ferry.dev/prune: allow`.
    #[serde(default)]
    pub prune_cluster_scoped: bool,
    /// Accept a render with no objects although the app's inventory holds some (which
    /// prunes them all); without it such a sync is refused before anything is written.
    #[serde(default)]
    pub allow_empty: bool,
    /// Apps that must be synced and healthy (at their current revision) before this one
    /// is synced; `ferry apply --all` applies them first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// A named app as listed in `ferry.yaml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedApp {
    /// App name: a DNS label, unique in the file.
    pub name: String,
    /// The app.
    #[serde(flatten)]
    pub spec: AppSpec,
}

/// The contents of a `ferry.yaml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FerryFile {
    /// The namespace the file's apps belong to: with the name, an app's identity
    /// (`namespace/name`, see [`crate::AppKey`]). Default `ferry-system`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Apps.
    #[serde(default)]
    pub apps: Vec<NamedApp>,
    /// App sets: apps generated from the directories of a repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_sets: Vec<AppSet>,
    /// Projects the apps may name (`project:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<NamedProject>,
    /// Where the agent reports every app's sync outcomes, health and drift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<crate::notify::NotificationSpec>,
}

fn default_namespace() -> String {
    crate::SYSTEM_NAMESPACE.into()
}

impl Default for FerryFile {
    fn default() -> Self {
        Self {
            namespace: default_namespace(),
            apps: Vec::new(),
            app_sets: Vec::new(),
            projects: Vec::new(),
            notifications: Vec::new(),
        }
    }
}

impl FerryFile {
    /// The identity of the file's app `name`.
    pub fn key(&self, name: &str) -> AppKey {
        AppKey::new(&self.namespace, name)
    }

    /// Reads and validates a `ferry.yaml`. Relative local `repo` paths are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let receivers = file.projects.iter_mut().map(|p| &mut p.spec.notifications);
        for receiver in file.notifications.iter_mut().chain(receivers.flatten()) {
            if let Some(token) = &mut receiver.token_file
                && Path::new(token.as_str()).is_relative()
            {
                *token = base.join(&*token).to_string_lossy().into_owned();
            }
        }
        let sources = file.apps.iter_mut().map(|a| &mut a.spec.source);
        let templates = file
            .app_sets
            .iter_mut()
            .map(|s| &mut s.template.spec.source);
        for source in sources.chain(templates) {
            let repo = &source.repo;
            if !repo.contains("://") && !repo.contains('@') && Path::new(repo).is_relative() {
                source.repo = base.join(repo).to_string_lossy().into_owned();
            }
            if let Some(dir) = &mut source.credentials_dir
                && Path::new(dir.as_str()).is_relative()
            {
                *dir = base.join(&*dir).to_string_lossy().into_owned();
            }
        }
        Ok(file)
    }

    /// Parses and validates `ferry.yaml` text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Self, SpecError> {
        let file: Self = serde_saphyr::from_str(text).map_err(|e| SpecError::Parse {
            path: path.to_path_buf(),
            message: one_line(&e.to_string()),
        })?;
        if !is_dns_label(&file.namespace) {
            return Err(SpecError::Invalid {
                location: path.display().to_string(),
                field: "namespace".into(),
                message: format!("{:?} is not a valid namespace name", file.namespace),
            });
        }
        crate::notify::validate_all(&file.notifications).map_err(|(field, message)| {
            SpecError::Invalid {
                location: path.display().to_string(),
                field,
                message,
            }
        })?;
        let mut seen = std::collections::HashSet::new();
        for project in &file.projects {
            let invalid = |field: &str, message: String| SpecError::Invalid {
                location: format!("{} project {:?}", path.display(), project.name),
                field: field.into(),
                message,
            };
            if !is_dns_label(&project.name) {
                return Err(invalid("name", "must be a DNS label (a-z, 0-9, -)".into()));
            }
            if !seen.insert(project.name.as_str()) {
                return Err(invalid("name", "duplicate project name".into()));
            }
            project.spec.validate().map_err(|(f, m)| invalid(&f, m))?;
        }
        let mut seen = std::collections::HashSet::new();
        for app in &file.apps {
            let location = format!("{} app {:?}", path.display(), app.name);
            let invalid = |field: &str, message: String| SpecError::Invalid {
                location: location.clone(),
                field: field.into(),
                message,
            };
            if !is_dns_label(&app.name) {
                return Err(invalid("name", "must be a DNS label (a-z, 0-9, -)".into()));
            }
            if !seen.insert(app.name.as_str()) {
                return Err(invalid("name", "duplicate app name".into()));
            }
            app.spec.validate().map_err(|(f, m)| invalid(&f, m))?;
        }
        let dependency = |source| SpecError::Dependency {
            path: path.to_path_buf(),
            source,
        };
        dependency_order(file.apps.iter().map(|a| {
            let deps = a.spec.depends_on.iter().map(String::as_str);
            (a.name.as_str(), deps)
        }))
        .map_err(dependency)?;
        let mut seen = std::collections::HashSet::new();
        for set in &file.app_sets {
            if let Some(dep) = set
                .template
                .spec
                .depends_on
                .iter()
                .find(|d| !file.apps.iter().any(|a| a.name == **d))
            {
                return Err(dependency(DependencyError::Unknown {
                    app: format!("{} (app set {})", set.template.name, set.name),
                    dependency: dep.clone(),
                    known: file
                        .apps
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }));
            }
            let invalid = |field: String, message: String| SpecError::Invalid {
                location: format!("{} app set {:?}", path.display(), set.name),
                field,
                message,
            };
            set.validate().map_err(|(f, m)| invalid(f, m))?;
            if !seen.insert(set.name.as_str()) {
                return Err(invalid("name".into(), "duplicate app set name".into()));
            }
        }
        Ok(file)
    }

    /// The app set named `name`.
    pub fn app_set(&self, name: &str, path: &Path) -> Result<&AppSet, SpecError> {
        self.app_sets
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| SpecError::UnknownAppSet {
                name: name.into(),
                path: path.to_path_buf(),
                known: self
                    .app_sets
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The project named `name` defined in this file.
    pub fn project(&self, name: &str) -> Option<Project> {
        self.projects
            .iter()
            .find(|p| p.name == name)
            .map(|p| Project {
                name: p.name.clone(),
                spec: p.spec.clone(),
            })
    }

    /// The app named `name`.
    pub fn app(&self, name: &str, path: &Path) -> Result<&NamedApp, SpecError> {
        self.apps
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| SpecError::UnknownApp {
                name: name.into(),
                path: path.to_path_buf(),
                known: self
                    .apps
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl AppSpec {
    /// Checks field values; returns the offending field and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.source.repo.trim().is_empty() {
            return Err(("source.repo".into(), "must not be empty".into()));
        }
        if let Some(project) = &self.project
            && !is_dns_label(project)
        {
            return Err((
                "project".into(),
                format!("{project:?} is not a project name (a DNS label)"),
            ));
        }
        if let Some(ns) = &self.destination.namespace
            && !is_dns_label(ns)
        {
            return Err((
                "destination.namespace".into(),
                format!("{ns:?} is not a valid namespace name"),
            ));
        }
        if self.source.secret_ref.is_some() && self.source.credentials_dir.is_some() {
            return Err((
                "source.credentialsDir".into(),
                "set either source.secretRef or source.credentialsDir".into(),
            ));
        }
        if let Some(secret) = &self.source.secret_ref
            && !is_dns_subdomain(&secret.name)
        {
            return Err((
                "source.secretRef.name".into(),
                format!("{:?} is not a valid Secret name", secret.name),
            ));
        }
        if let Some(helm) = &self.source.helm {
            helm.validate(self.source.renderer)?;
        }
        parse_duration(&self.wait.timeout).map_err(|m| ("wait.timeout".into(), m))?;
        if let Some(i) = &self.interval {
            parse_duration(i).map_err(|m| ("interval".into(), m))?;
        }
        Ok(())
    }

    /// The name of the app's project ([`DEFAULT_PROJECT`] when it names none).
    pub fn project(&self) -> &str {
        self.project.as_deref().unwrap_or(DEFAULT_PROJECT)
    }

    /// The checks of an `Application` in `namespace` beyond [`validate`](Self::validate):
    /// what a `ferry.yaml` may do but a tenant's cluster object may not — a local path
    /// or `file://` repository (the agent's own files), credentials in the URL (they would
    /// show wherever the spec does), `credentialsDir`, a Secret in another namespace, an
    /// SSH repository without a key Secret (the agent's own keys), and Kustomize's
    /// `LoadRestrictionsNone` (files outside the checkout).
    pub fn validate_application(&self, namespace: &str) -> Result<(), (String, String)> {
        self.validate()?;
        let source = &self.source;
        let repo = source.repo.trim();
        let field = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
        if is_local_repo(repo) {
            return field(
                "source.repo",
                "local paths and file:// URLs are not allowed in an Application (only in ferry.yaml)",
            );
        }
        if crate::redact::has_credentials(repo) {
            return field(
                "source.repo",
                "credentials in the URL are not allowed; put them in a Secret named by source.secretRef",
            );
        }
        if source.credentials_dir.is_some() {
            return field(
                "source.credentialsDir",
                "not allowed in an Application (only in ferry.yaml); use source.secretRef",
            );
        }
        if let Some(other) = source
            .secret_ref
            .as_ref()
            .and_then(|s| s.namespace.as_deref())
            .filter(|ns| *ns != namespace)
        {
            return Err((
                "source.secretRef.namespace".into(),
                format!(
                    "{other:?}: an Application may only use Secrets of its own namespace {namespace:?}"
                ),
            ));
        }
        if source
            .kustomize
            .as_ref()
            .and_then(|k| k.load_restrictor.as_deref())
            .is_some_and(|r| r == "LoadRestrictionsNone")
        {
            return field(
                "source.kustomize.loadRestrictor",
                "LoadRestrictionsNone is not allowed in an Application (only in ferry.yaml)",
            );
        }
        Ok(())
    }

    /// The wait timeout.
    pub fn wait_timeout(&self) -> Duration {
        parse_duration(&self.wait.timeout).unwrap_or(Duration::from_secs(300))
    }

    /// The agent's poll interval.
    pub fn poll_interval(&self) -> Duration {
        self.interval
            .as_deref()
            .and_then(|i| parse_duration(i).ok())
            .unwrap_or(Duration::from_secs(60))
    }
}

/// Parses a duration such as `90s`, `5m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration ({e})"))
}

/// Whether `repo` is a local path or `file://` URL rather than a remote: not a URL
/// with a scheme, and not scp-like `[user@]host:path` (a `:` before any `/`).
pub fn is_local_repo(repo: &str) -> bool {
    let lower = repo.trim().to_ascii_lowercase();
    if let Some((scheme, _)) = lower.split_once("://") {
        return scheme == "file";
    }
    match lower.split_once(':') {
        Some((host, _)) => host.contains('/') || host.len() == 1,
        None => true,
    }
}

pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
apps:
  - name: web
    source:
      repo: https://example.com/org/repo.git
      ref: main
      path: deploy/web
    destination:
      namespace: web
      createNamespace: true
    wait:
      timeout: 2m
"#;

    #[test]
    fn parses_with_defaults() {
        let f = FerryFile::parse(FILE, Path::new("ferry.yaml")).unwrap();
        let app = f.app("web", Path::new("ferry.yaml")).unwrap();
        assert_eq!(app.spec.source.git_ref.as_deref(), Some("main"));
        assert!(app.spec.prune && app.spec.wait.enabled && app.spec.self_heal);
        assert_eq!(app.spec.wait_timeout(), Duration::from_secs(120));
        assert_eq!(app.spec.poll_interval(), Duration::from_secs(60));
        assert_eq!(app.spec.source.renderer, RendererKind::Auto);
    }

    #[test]
    fn unknown_field_is_named() {
        let text = FILE.replace("createNamespace", "createNamespaces");
        let err = FerryFile::parse(&text, Path::new("ferry.yaml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("ferry.yaml: "), "{msg}");
        assert!(msg.contains("createNamespaces"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn bad_values_name_the_field() {
        let err = FerryFile::parse(&FILE.replace("2m", "soon"), Path::new("f.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("f.yaml app \"web\": field wait.timeout:")
        );
        let err = FerryFile::parse(&FILE.replace("name: web", "name: Web"), Path::new("f.yaml"))
            .unwrap_err();
        assert!(err.to_string().contains("field name"), "{err}");
        let dup = format!("{FILE}{}", &FILE[FILE.find("  - name").unwrap()..]);
        let err = FerryFile::parse(&dup, Path::new("f.yaml")).unwrap_err();
        assert!(err.to_string().contains("duplicate app name"), "{err}");
    }

    #[test]
    fn dependencies_are_checked_on_load() {
        let two = r#"
apps:
  - name: web
    dependsOn: [db]
    source: {repo: r}
  - name: db
    source: {repo: r}
appSets:
  - name: envs
    directories: "envs/*"
    template:
      name: "{{dir}}"
      dependsOn: [db]
      source: {repo: r, path: "{{path}}"}
"#;
        let f = FerryFile::parse(two, Path::new("f.yaml")).unwrap();
        assert_eq!(f.apps[0].spec.depends_on, ["db"]);
        let err = FerryFile::parse(
            &two.replace("[db]\n    source", "[dbs]\n    source"),
            Path::new("f.yaml"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml: app \"web\" depends on \"dbs\", which is not an app (apps: web, db)"
        );
        let cycle = two.replace("  - name: db\n", "  - name: db\n    dependsOn: [web]\n");
        let err = FerryFile::parse(&cycle, Path::new("f.yaml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml: dependency cycle: web -> db -> web"
        );
        let err = FerryFile::parse(
            &two.replace("      dependsOn: [db]", "      dependsOn: [api]"),
            Path::new("f.yaml"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml: app \"{{dir}} (app set envs)\" depends on \"api\", which is not an app (apps: web, db)"
        );
    }

    #[test]
    fn helm_chart_fields_are_checked() {
        let with = |helm: &str| {
            FILE.replace(
                "      path: deploy/web\n",
                &format!("      path: deploy/web\n      helm: {helm}\n"),
            )
        };
        let ok = "{chart: podinfo, repo: \"oci://ghcr.io/org/charts\", version: \"^6.0.0\", kubeVersion: v1.31.0, apiVersions: [monitoring.coreos.com/v1]}";
        let f = FerryFile::parse(&with(ok), Path::new("f.yaml")).unwrap();
        let helm = f.apps[0].spec.source.helm.clone().unwrap();
        assert_eq!(helm.chart.as_deref(), Some("podinfo"));
        assert_eq!(helm.version.as_deref(), Some("^6.0.0"));
        assert_eq!(helm.kube_version.as_deref(), Some("v1.31.0"));
        assert!(helm.include_crds);
        for (helm, field, message) in [
            (
                "{chart: podinfo}",
                "source.helm.repo",
                "must be set with helm.chart",
            ),
            (
                "{repo: \"https://c.example\"}",
                "source.helm.chart",
                "must be set with helm.repo",
            ),
            (
                "{version: 1.0.0}",
                "source.helm.version",
                "needs helm.chart and helm.repo",
            ),
            (
                "{chart: a/b, repo: \"https://c.example\"}",
                "source.helm.chart",
                "\"a/b\" is not a chart name",
            ),
            (
                "{chart: a, repo: \"ftp://c.example\"}",
                "source.helm.repo",
                "is not an https://, http:// or oci:// URL",
            ),
            (
                "{kubeVersion: latest}",
                "source.helm.kubeVersion",
                "\"latest\" is not a Kubernetes version",
            ),
            (
                "{apiVersions: [\"\"]}",
                "source.helm.apiVersions",
                "is not an API version",
            ),
        ] {
            let err = FerryFile::parse(&with(helm), Path::new("f.yaml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("f.yaml app \"web\": field {field}: ")),
                "{helm}: {err}"
            );
            assert!(err.contains(message), "{helm}: {err}");
        }
        let kustomize = with("{chart: a, repo: \"https://c.example\"}")
            .replace("      helm:", "      renderer: kustomize\n      helm:");
        let err = FerryFile::parse(&kustomize, Path::new("f.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("field source.renderer: must be helm"), "{err}");
        for v in ["1.30", "v1.30.2", "1.31.0-rc.1"] {
            assert!(is_kube_version(v), "{v}");
        }
    }

    #[test]
    fn projects_are_parsed_and_checked() {
        let text = format!(
            "projects:\n  - name: team-b\n    sourceRepos: [\"https://git.example.com/team-b/*\"]\n    destinations: [team-b]\n    serviceAccount: team-b/deployer\n{}",
            FILE.trim_start()
                .replace("  - name: web\n", "  - name: web\n    project: team-b\n")
        );
        let f = FerryFile::parse(&text, Path::new("f.yaml")).unwrap();
        let app = f.app("web", Path::new("f.yaml")).unwrap();
        assert_eq!(app.spec.project(), "team-b");
        let project = f.project("team-b").unwrap();
        assert_eq!(project.spec.service_account(), Some(("team-b", "deployer")));
        assert_eq!(
            FerryFile::parse(FILE, Path::new("f.yaml")).unwrap().apps[0]
                .spec
                .project(),
            "default"
        );
        let err = FerryFile::parse(
            &text.replace("team-b/deployer", "deployer"),
            Path::new("f.yaml"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml project \"team-b\": field serviceAccount: \"deployer\" is not namespace/name"
        );
        let err = FerryFile::parse(
            &text.replace("project: team-b", "project: Team"),
            Path::new("f.yaml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("field project:"), "{err}");
    }

    #[test]
    fn a_files_project_has_repository_credentials() {
        let text = "projects:\n  - name: team-b\n    repoCredentials:\n      - url: https://git.example.com/team-b/\n        secretRef: {name: team-b-git}\napps: []\n";
        let f = FerryFile::parse(text, Path::new("f.yaml")).unwrap();
        let project = f.project("team-b").unwrap();
        let secret = project
            .spec
            .credentials_for("https://git.example.com/team-b/web.git")
            .unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.namespace.as_deref()),
            ("team-b-git", None)
        );
        let err = FerryFile::parse(
            &text.replace("name: team-b-git", "name: Team_B"),
            Path::new("f.yaml"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(
                "field repoCredentials[0].secretRef.name: \"Team_B\" is not a valid Secret name"
            ),
            "{err}"
        );
    }

    #[test]
    fn applications_may_not_reach_the_agents_files_or_put_credentials_in_urls() {
        let app = |source: &str| {
            let text = format!("apps:\n  - name: web\n    source: {source}\n");
            let file = FerryFile::parse(&text, Path::new("f.yaml")).expect("valid in ferry.yaml");
            file.apps[0].spec.validate_application("team-a")
        };
        for (source, field, message) in [
            (
                "{repo: /var/lib/ferry/git/x.git}",
                "source.repo",
                "local paths",
            ),
            ("{repo: ./repo}", "source.repo", "local paths"),
            (
                "{repo: \"file:///srv/repo\"}",
                "source.repo",
                "file:// URLs",
            ),
            (
                "{repo: \"https://bot:ghp_x@github.com/o/r\"}",
                "source.repo",
                "credentials in the URL",
            ),
            (
                "{repo: \"https://github.com/o/r\", credentialsDir: /etc/creds}",
                "source.credentialsDir",
                "only in ferry.yaml",
            ),
            (
                "{repo: \"https://github.com/o/r\", secretRef: {name: git, namespace: team-b}}",
                "source.secretRef.namespace",
                "its own namespace",
            ),
            (
                "{repo: \"https://github.com/o/r\", kustomize: {loadRestrictor: LoadRestrictionsNone}}",
                "source.kustomize.loadRestrictor",
                "LoadRestrictionsNone",
            ),
        ] {
            let (f, m) = app(source).expect_err(source);
            assert_eq!(f, field, "{source}");
            assert!(m.contains(message), "{source}: {m}");
        }
        for ok in [
            "{repo: \"https://github.com/o/r\"}",
            "{repo: \"https://github.com/o/r\", secretRef: {name: git}}",
            "{repo: \"https://github.com/o/r\", secretRef: {name: git, namespace: team-a}}",
            "{repo: \"ssh://git@github.com/o/r.git\", secretRef: {name: git-ssh}}",
            // Its project's repoCredentials may hold the key; with none the fetch refuses.
            "{repo: \"git@github.com:o/r.git\"}",
        ] {
            assert_eq!(app(ok), Ok(()), "{ok}");
        }
        let both = "apps:\n  - name: web\n    source: {repo: r, secretRef: {name: s}, credentialsDir: d}\n";
        let err = FerryFile::parse(both, Path::new("f.yaml")).unwrap_err();
        assert!(
            err.to_string().contains("field source.credentialsDir"),
            "{err}"
        );
    }

    #[test]
    fn unknown_app_lists_known() {
        let f = FerryFile::parse(FILE, Path::new("ferry.yaml")).unwrap();
        let err = f.app("api", Path::new("ferry.yaml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no app named \"api\" in ferry.yaml (apps: web)"
        );
    }
}
