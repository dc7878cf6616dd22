use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::Path;

use ferry_model::{HelmOptions, Manifest, Origin};
use serde_json::Value;

use crate::parse::{push_manifests, yaml_chunks};
use crate::process::{Tools, run};
use crate::{RenderError, RenderRequest, Renderer, inside_root};

/// Runs `helm template` on a local chart (the app directory):
/// `helm template <release> <dir> --skip-tests [--namespace ns] [--include-crds]
/// [--values file]... [--values <inline values>] [--kube-version v] [--api-versions v]...`.
///
/// The release defaults to the app name and CRDs are included unless disabled. Values
/// files are relative to the chart and must stay inside the working copy; inline values
/// are merged last. Dependencies must be vendored in `charts/`: fetching charts from
/// repositories or OCI registries is not supported yet. Manifests' origins are the
/// template paths from helm's `# Source:` comments, relative to the chart.
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
        let chart = inside_root(req.dir, req.root)?;
        check_dependencies(&chart)?;
        let options = req.spec.helm.clone().unwrap_or(HelmOptions {
            include_crds: true,
            ..HelmOptions::default()
        });
        let release = options.release_name.as_deref().unwrap_or(req.app);
        let mut args: Vec<OsString> = vec![
            "template".into(),
            release.into(),
            chart.clone().into(),
            "--skip-tests".into(),
        ];
        if let Some(namespace) = req.namespace {
            args.extend(["--namespace".into(), namespace.into()]);
        }
        if options.include_crds {
            args.push("--include-crds".into());
        }
        for file in &options.values_files {
            let path = inside_root(&chart.join(file), req.root)?;
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

/// Checks that the chart's dependencies (from `Chart.yaml` and a legacy
/// `requirements.yaml`) are vendored in `charts/`, as a directory or a `.tgz` archive.
fn check_dependencies(chart: &Path) -> Result<(), RenderError> {
    if !chart.join("Chart.yaml").is_file() {
        return Err(RenderError::Chart {
            chart: chart.to_path_buf(),
            message: "no Chart.yaml: only local charts are supported (remote charts are not supported yet)".into(),
        });
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
    if dependencies.is_empty() {
        return Ok(());
    }
    let vendored = vendored_charts(&chart.join("charts"));
    for dep in &dependencies {
        let name = dep.get("name").and_then(Value::as_str).unwrap_or_default();
        let archive_prefix = format!("{name}-");
        if vendored
            .iter()
            .any(|v| v == name || (v.ends_with(".tgz") && v.starts_with(&archive_prefix)))
        {
            continue;
        }
        let repository = dep
            .get("repository")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let remote = ["oci://", "http://", "https://", "@", "alias:"]
            .iter()
            .any(|p| repository.starts_with(p));
        let message = if remote {
            format!(
                "dependency {name:?} from {repository} is not vendored in charts/ and fetching remote charts is not supported yet: run `helm dependency build` and commit charts/"
            )
        } else {
            format!(
                "dependency {name:?} is missing from charts/: run `helm dependency build` and commit charts/"
            )
        };
        return Err(RenderError::Chart {
            chart: chart.to_path_buf(),
            message,
        });
    }
    Ok(())
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
    fn dependencies_must_be_vendored() {
        assert!(check_dependencies(chart("").path()).is_ok());

        let deps = "dependencies:\n- name: redis\n  version: ^1.0.0\n  repository: oci://registry.example/charts\n- name: common\n  version: 2.0.0\n  repository: file://../common\n";
        let dir = chart(deps);
        let err = check_dependencies(dir.path()).unwrap_err().to_string();
        assert!(err.contains("dependency \"redis\" from oci://registry.example/charts is not vendored in charts/ and fetching remote charts is not supported yet"), "{err}");

        fs::create_dir_all(dir.path().join("charts")).unwrap();
        fs::write(dir.path().join("charts/redis-1.2.3.tgz"), "").unwrap();
        let err = check_dependencies(dir.path()).unwrap_err().to_string();
        assert!(err.ends_with("dependency \"common\" is missing from charts/: run `helm dependency build` and commit charts/"), "{err}");

        fs::create_dir_all(dir.path().join("charts/lib")).unwrap();
        fs::write(dir.path().join("charts/lib/Chart.yaml"), "name: common\n").unwrap();
        assert!(check_dependencies(dir.path()).is_ok());
    }

    #[test]
    fn legacy_requirements_are_checked() {
        let dir = chart("");
        fs::write(
            dir.path().join("requirements.yaml"),
            "dependencies:\n- name: db\n  repository: https://charts.example\n",
        )
        .unwrap();
        let err = check_dependencies(dir.path()).unwrap_err().to_string();
        assert!(err.contains("\"db\" from https://charts.example"), "{err}");
    }

    #[test]
    fn remote_chart_is_not_supported() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_dependencies(dir.path()).unwrap_err().to_string();
        assert!(err.contains("remote charts are not supported yet"), "{err}");
    }
}
