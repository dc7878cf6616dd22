use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ferry_model::{Manifest, Origin};
use serde_json::Value;

use crate::parse::{push_manifests, yaml_chunks};
use crate::process::{Tools, run, run_in_home};
use crate::{RenderError, RenderRequest, Renderer, charts, inside_root};

/// Runs `helm template` on the app's chart:
/// `helm template <release> <chart> --skip-tests [--namespace ns] [--include-crds]
/// [--values file]... [--values <inline values>] [--kube-version v] [--api-versions v]...`.
///
/// The chart is the app directory, or with `helm.chart` and `helm.repo` a chart pulled
/// from a chart repository or OCI registry into the chart cache ([`Tools::chart_cache`]).
/// A local chart's dependencies come from `charts/` when vendored there; those from chart
/// repositories or OCI registries that are not are built with `helm dependency build` into
/// a copy of the chart, and cached when the chart pins them (a lock file or exact
/// versions). The release defaults to the app name and CRDs are included unless disabled.
/// Values files are relative to the app directory and must stay inside the working copy;
/// inline values are merged last. Manifests' origins are the template paths from helm's
/// `# Source:` comments, relative to the chart.
#[derive(Clone, Debug)]
pub struct Helm {
    tools: Tools,
}

impl Helm {
    /// A Helm renderer using `tools.helm` under the limits of `tools`.
    pub fn new(tools: Tools) -> Self {
        Self { tools }
    }
}

impl Renderer for Helm {
    fn name(&self) -> &'static str {
        "helm"
    }

    fn render(&self, req: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        let program = self
            .tools
            .helm
            .as_deref()
            .ok_or(RenderError::ToolNotFound {
                tool: "helm",
                env: "FERRY_HELM",
            })?;
        let dir = inside_root(req.dir, req.root)?;
        let options = req.spec.helm.clone().unwrap_or_default();
        let scratch = tempfile::tempdir().map_err(|source| RenderError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let chart = match (&options.chart, &options.repo) {
            (Some(name), Some(repo)) => {
                let version = options.version.as_deref();
                charts::pull(program, &self.tools, name, repo, version)?
            }
            _ => {
                let remote = missing_dependencies(&dir)?;
                if remote.is_empty() {
                    dir.clone()
                } else {
                    build_dependencies(program, &self.tools, &dir, &remote, scratch.path())?
                }
            }
        };
        let release = options.release_name.as_deref().unwrap_or(req.app);
        let mut args: Vec<OsString> = vec![
            "template".into(),
            release.into(),
            chart.into(),
            "--skip-tests".into(),
        ];
        if let Some(namespace) = req.namespace {
            args.extend(["--namespace".into(), namespace.into()]);
        }
        if options.include_crds {
            args.push("--include-crds".into());
        }
        for file in &options.values_files {
            let path = inside_root(&dir.join(file), req.root)?;
            args.extend(["--values".into(), path.into()]);
        }
        let inline = match options.values.as_ref().filter(|v| !v.is_null()) {
            Some(values) => {
                let file = inline_values_file(values)?;
                args.extend(["--values".into(), file.path().into()]);
                Some(file)
            }
            None => None,
        };
        if let Some(version) = req.kube_version {
            args.extend(["--kube-version".into(), version.into()]);
        }
        for version in req.api_versions {
            args.extend(["--api-versions".into(), version.into()]);
        }
        let output = run(self.name(), program, &args, req.root, &self.tools)?;
        drop(inline);
        parse_output(&output)
    }
}

/// A dependency of a local chart to build from a chart repository or OCI registry.
#[derive(Debug, PartialEq)]
struct RemoteDependency {
    name: String,
    version: String,
    repository: String,
}

/// Builds `chart`'s dependencies with `helm dependency build` in a copy of the chart under
/// `scratch` and returns the copy. When every dependency is pinned (a lock file, or exact
/// versions) the built archives are cached in `<chart cache>/dependencies/<key>`, keyed by
/// the chart's dependency files, and later renders copy them instead of building.
fn build_dependencies(
    program: &Path,
    tools: &Tools,
    chart: &Path,
    remote: &[RemoteDependency],
    scratch: &Path,
) -> Result<PathBuf, RenderError> {
    let failed = |message: String| RenderError::Chart {
        chart: chart.to_path_buf(),
        message: format!("building dependencies ({}): {message}", names(remote)),
    };
    let copy = scratch.join("chart");
    copy_dir(chart, &copy).map_err(|e| failed(e.to_string()))?;
    let mut files = String::new();
    let mut locked = false;
    for file in [
        "Chart.yaml",
        "Chart.lock",
        "requirements.yaml",
        "requirements.lock",
    ] {
        if let Ok(text) = fs::read_to_string(chart.join(file)) {
            locked |= file.ends_with(".lock");
            files.push_str(&format!("{file}\n{text}\n"));
        }
    }
    let pinned = locked || remote.iter().all(|d| charts::is_exact(&d.version));
    let root = tools.chart_cache.join("dependencies");
    let entry = root.join(charts::key(&files));
    let charts_dir = copy.join("charts");
    if pinned && entry.is_dir() {
        copy_dir(&entry, &charts_dir).map_err(|e| failed(e.to_string()))?;
        return Ok(copy);
    }
    fs::create_dir_all(&root).map_err(|e| failed(format!("{}: {e}", root.display())))?;
    let _lock = pinned
        .then(|| charts::lock(&entry.with_extension("lock")))
        .transpose()
        .map_err(|e| failed(e.to_string()))?;
    if pinned && entry.is_dir() {
        copy_dir(&entry, &charts_dir).map_err(|e| failed(e.to_string()))?;
        return Ok(copy);
    }
    let mut args: Vec<OsString> = vec!["dependency".into(), "build".into(), copy.clone().into()];
    if remote.iter().any(|d| {
        d.repository
            .strip_prefix("oci://")
            .is_some_and(charts::is_loopback)
    }) {
        args.push("--plain-http".into());
    }
    let home = scratch.join("home");
    if locked {
        // With a lock file, `helm dependency build` only takes repositories it knows by name.
        let mut added = Vec::new();
        for dep in remote.iter().filter(|d| d.repository.starts_with("http")) {
            let url = dep.repository.trim_end_matches('/');
            if added.contains(&url) {
                continue;
            }
            added.push(url);
            let name = format!("ferry-{}", charts::key(url));
            let add: Vec<OsString> = vec!["repo".into(), "add".into(), name.into(), url.into()];
            run_in_home("helm", program, &add, scratch, tools, &home)
                .map_err(|e| failed(e.to_string()))?;
        }
    }
    run_in_home("helm", program, &args, scratch, tools, &home)
        .map_err(|e| failed(e.to_string()))?;
    if pinned {
        let partial = tempfile::tempdir_in(&root).map_err(|e| failed(e.to_string()))?;
        for archive in fs::read_dir(&charts_dir).into_iter().flatten().flatten() {
            let name = archive.file_name();
            if name.to_string_lossy().ends_with(".tgz") {
                fs::copy(archive.path(), partial.path().join(&name))
                    .map_err(|e| failed(e.to_string()))?;
            }
        }
        fs::rename(partial.keep(), &entry)
            .map_err(|e| failed(format!("{}: {e}", entry.display())))?;
    }
    Ok(copy)
}

/// `name version from repository, ...` for messages.
fn names(deps: &[RemoteDependency]) -> String {
    deps.iter()
        .map(|d| format!("{} {} from {}", d.name, d.version, d.repository))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies the directory `from` into `to`, recursively; symbolic links are left out.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn inline_values_file(values: &Value) -> Result<tempfile::NamedTempFile, RenderError> {
    let io = |source| RenderError::Io {
        path: std::env::temp_dir(),
        source,
    };
    let mut file = tempfile::Builder::new()
        .prefix("ferry-values-")
        .suffix(".json")
        .tempfile()
        .map_err(io)?;
    file.write_all(values.to_string().as_bytes()).map_err(io)?;
    Ok(file)
}

/// Parses `helm template` output; each document's origin is its `# Source:` template,
/// relative to the chart, and its index among that template's documents.
fn parse_output(output: &str) -> Result<Vec<Manifest>, RenderError> {
    let mut docs_per_source: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for chunk in yaml_chunks(output) {
        let file = chunk
            .text
            .lines()
            .take_while(|l| l.starts_with("---") || l.starts_with('#'))
            .find_map(|l| l.strip_prefix("# Source: "))
            .map(|source| {
                let source = source.trim();
                source
                    .split_once('/')
                    .map_or(source, |(_, rel)| rel)
                    .to_string()
            })
            .unwrap_or_else(|| "helm".into());
        let value = chunk.parse(&format!("helm output ({file})"))?;
        let doc = docs_per_source.entry(file.clone()).or_default();
        let origin = Origin { file, doc: *doc };
        *doc += 1;
        push_manifests(value, &origin, &mut out)?;
    }
    Ok(out)
}

/// The chart's dependencies (from `Chart.yaml` and a legacy `requirements.yaml`) that are
/// not vendored in `charts/` (as a directory or a `.tgz` archive) and come from a chart
/// repository or OCI registry, to build; any other missing dependency is an error.
fn missing_dependencies(chart: &Path) -> Result<Vec<RemoteDependency>, RenderError> {
    let error = |message: String| RenderError::Chart {
        chart: chart.to_path_buf(),
        message,
    };
    if !chart.join("Chart.yaml").is_file() {
        return Err(error(
            "no Chart.yaml (for a chart from a chart repository or OCI registry set helm.chart and helm.repo)".into(),
        ));
    }
    let mut dependencies = Vec::new();
    for file in ["Chart.yaml", "requirements.yaml"] {
        if let Some(Value::Array(deps)) = read_yaml(&chart.join(file), file)?
            .as_mut()
            .and_then(|meta| meta.get_mut("dependencies"))
            .map(Value::take)
        {
            dependencies.extend(deps);
        }
    }
    let vendored = vendored_charts(&chart.join("charts"));
    let mut remote = Vec::new();
    for dep in &dependencies {
        let field = |key: &str| dep.get(key).and_then(Value::as_str).unwrap_or_default();
        let name = field("name");
        let archive_prefix = format!("{name}-");
        if vendored
            .iter()
            .any(|v| v == name || (v.ends_with(".tgz") && v.starts_with(&archive_prefix)))
        {
            continue;
        }
        let repository = field("repository");
        if ["oci://", "http://", "https://"]
            .iter()
            .any(|p| repository.starts_with(p))
        {
            remote.push(RemoteDependency {
                name: name.into(),
                version: field("version").into(),
                repository: repository.into(),
            });
        } else if repository.starts_with('@') || repository.starts_with("alias:") {
            return Err(error(format!(
                "dependency {name:?} names the repository {repository}, an alias in a local Helm configuration: use the repository's URL, or vendor the chart in charts/"
            )));
        } else {
            return Err(error(format!(
                "dependency {name:?} is missing from charts/: run `helm dependency build` and commit charts/"
            )));
        }
    }
    Ok(remote)
}

/// Reads a single-document YAML file; `None` when the file does not exist.
fn read_yaml(path: &Path, name: &str) -> Result<Option<Value>, RenderError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(path).map_err(|source| RenderError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    yaml_chunks(&text)
        .first()
        .map(|c| c.parse(name))
        .transpose()
}

/// Names under `charts/`: directory names, their charts' names, and archive file names.
fn vendored_charts(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        names.push(entry.file_name().to_string_lossy().into_owned());
        if path.is_dir()
            && let Ok(Some(meta)) = read_yaml(&path.join("Chart.yaml"), "Chart.yaml")
            && let Some(name) = meta.get("name").and_then(Value::as_str)
        {
            names.push(name.to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "---\n# Source: demo/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# Source: demo/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n---\n# Source: demo/charts/sub/templates/c.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n";

    #[test]
    fn origins_come_from_source_comments() {
        let ms = parse_output(OUTPUT).unwrap();
        let origins: Vec<String> = ms.iter().map(|m| m.origin.to_string()).collect();
        assert_eq!(
            origins,
            [
                "templates/a.yaml (document 1)",
                "templates/a.yaml (document 2)",
                "charts/sub/templates/c.yaml (document 1)"
            ]
        );
    }

    #[test]
    fn output_syntax_errors_name_the_template() {
        let err = parse_output("---\n# Source: demo/templates/a.yaml\na: [\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("helm output (templates/a.yaml):3:"),
            "{err}"
        );
    }

    fn chart(deps: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("Chart.yaml"),
            format!("apiVersion: v2\nname: demo\nversion: 0.1.0\n{deps}"),
        )
        .unwrap();
        dir
    }

    #[test]
    fn remote_dependencies_are_built_local_ones_must_be_vendored() {
        assert_eq!(missing_dependencies(chart("").path()).unwrap(), []);

        let deps = "dependencies:\n- name: redis\n  version: ^1.0.0\n  repository: oci://registry.example/charts\n- name: common\n  version: 2.0.0\n  repository: file://../common\n";
        let dir = chart(deps);
        let err = missing_dependencies(dir.path()).unwrap_err().to_string();
        assert!(err.ends_with("dependency \"common\" is missing from charts/: run `helm dependency build` and commit charts/"), "{err}");

        fs::create_dir_all(dir.path().join("charts/lib")).unwrap();
        fs::write(dir.path().join("charts/lib/Chart.yaml"), "name: common\n").unwrap();
        assert_eq!(
            missing_dependencies(dir.path()).unwrap(),
            [RemoteDependency {
                name: "redis".into(),
                version: "^1.0.0".into(),
                repository: "oci://registry.example/charts".into()
            }]
        );

        fs::write(dir.path().join("charts/redis-1.2.3.tgz"), "").unwrap();
        assert_eq!(missing_dependencies(dir.path()).unwrap(), []);
    }

    #[test]
    fn legacy_requirements_and_aliases() {
        let dir = chart("");
        fs::write(
            dir.path().join("requirements.yaml"),
            "dependencies:\n- name: db\n  version: 1.0.0\n  repository: https://charts.example\n- name: cache\n  repository: \"@stable\"\n",
        )
        .unwrap();
        let err = missing_dependencies(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("dependency \"cache\" names the repository @stable"),
            "{err}"
        );
    }

    #[test]
    fn no_chart_yaml_points_at_helm_chart() {
        let dir = tempfile::tempdir().unwrap();
        let err = missing_dependencies(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no Chart.yaml (for a chart from a chart repository or OCI registry set helm.chart and helm.repo)"), "{err}");
    }
}
