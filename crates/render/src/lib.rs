//! Render stage: turns an app directory into manifests (plain YAML, Kustomize, Helm,
//! Jsonnet).
//!
//! Rendering never touches a cluster. [`render`] picks a renderer ([`detect`]), runs it,
//! substitutes `${VAR}` variables ([`substitute`]) and rejects duplicate objects.
//! Kustomize and Helm run as external processes under the limits in [`Tools`]; Jsonnet runs
//! in-process on its own thread under the same limits.

#![warn(missing_docs)]

mod charts;
mod error;
mod helm;
mod jsonnet;
mod kustomize;
mod parse;
mod plain;
mod process;
mod vars;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ferry_model::{Manifest, ObjectRef, Origin, RendererKind, SourceSpec};

pub use error::RenderError;
pub use helm::Helm;
pub use jsonnet::{Jsonnet, MAX_ABANDONED};
pub use kustomize::Kustomize;
pub use parse::{parse_documents, to_yaml};
pub use plain::Plain;
pub use process::Tools;
pub use vars::substitute;

/// Everything a renderer needs to know about one app at one revision.
#[derive(Clone, Copy, Debug)]
pub struct RenderRequest<'a> {
    /// App name; the default Helm release name.
    pub app: &'a str,
    /// The app directory inside a working copy of the revision.
    pub dir: &'a Path,
    /// The working copy's root; the app directory, plain files and Helm values files
    /// must stay inside it.
    pub root: &'a Path,
    /// Destination namespace (`helm template --namespace`), also the namespace assumed for
    /// objects without one when looking for duplicates.
    pub namespace: Option<&'a str>,
    /// The app's source settings: renderer, Kustomize/Helm options, variables.
    pub spec: &'a SourceSpec,
    /// Kubernetes version of the target cluster, e.g. `v1.34.4` (`helm --kube-version`).
    pub kube_version: Option<&'a str>,
    /// API versions served by the target cluster (`helm --api-versions`).
    pub api_versions: &'a [String],
}

/// Turns an app directory into manifests.
pub trait Renderer {
    /// Short name used in messages and as the origin of generated output, e.g. `helm`.
    fn name(&self) -> &'static str;

    /// Renders the app. Variables are not substituted and duplicates are not checked here;
    /// [`render`] does both.
    fn render(&self, req: &RenderRequest) -> Result<Vec<Manifest>, RenderError>;
}

/// Files whose presence makes an app directory a Kustomize root.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Resolves [`RendererKind::Auto`]: a Kustomization file means Kustomize, else a
/// `Chart.yaml` means Helm, else a top-level `*.jsonnet` file means Jsonnet, else plain
/// files. Any other `kind` is returned unchanged.
pub fn detect(dir: &Path, kind: RendererKind) -> RendererKind {
    if kind != RendererKind::Auto {
        kind
    } else if KUSTOMIZATION_FILES.iter().any(|f| dir.join(f).is_file()) {
        RendererKind::Kustomize
    } else if dir.join("Chart.yaml").is_file() {
        RendererKind::Helm
    } else if jsonnet::has_entry_point(dir) {
        RendererKind::Jsonnet
    } else {
        RendererKind::Plain
    }
}

/// The app's renderer: Helm for a chart from a repository (`helm.chart`), else
/// [`detect`] on the app directory.
pub fn renderer_for(dir: &Path, spec: &SourceSpec) -> RendererKind {
    if spec.helm.as_ref().is_some_and(|h| h.chart.is_some()) {
        RendererKind::Helm
    } else {
        detect(dir, spec.renderer)
    }
}

/// Whether the app renders a chart from a repository whose version is a range or left
/// out, so that a render may pick a newer chart than an earlier render of the same commit.
pub fn chart_version_floats(spec: &SourceSpec) -> bool {
    spec.helm
        .as_ref()
        .filter(|h| h.chart.is_some())
        .is_some_and(|h| !h.version.as_deref().is_some_and(charts::is_exact))
}

/// Renders an app: detects and runs its renderer, substitutes variables, then rejects
/// duplicate objects.
///
/// Variables are substituted only when the app defines `vars` or sets `strictVars`, so
/// apps that use neither keep `${...}` text (e.g. in embedded shell scripts) untouched.
pub fn render(req: &RenderRequest, tools: &Tools) -> Result<Vec<Manifest>, RenderError> {
    inside_root(req.dir, req.root)?;
    let manifests = match renderer_for(req.dir, req.spec) {
        RendererKind::Kustomize => Kustomize::new(tools.clone()).render(req)?,
        RendererKind::Helm => Helm::new(tools.clone()).render(req)?,
        RendererKind::Jsonnet => Jsonnet::new(tools.clone()).render(req)?,
        RendererKind::Auto | RendererKind::Plain => Plain.render(req)?,
    };
    let manifests = if req.spec.vars.is_empty() && !req.spec.strict_vars {
        manifests
    } else {
        vars::substitute_manifests(manifests, &req.spec.vars, req.spec.strict_vars)?
    };
    check_duplicates(&manifests, req.namespace)?;
    Ok(manifests)
}

/// Fails when two manifests describe the same object. Objects without a namespace are
/// taken to be in `namespace`, where ferry will put them. Hooks with a generated name
/// (no `metadata.name`) are distinct objects each time they run.
fn check_duplicates(manifests: &[Manifest], namespace: Option<&str>) -> Result<(), RenderError> {
    let mut seen: HashMap<ObjectRef, &Origin> = HashMap::new();
    for m in manifests.iter().filter(|m| !m.name().is_empty()) {
        let object = ObjectRef::new(
            m.api_version(),
            m.kind(),
            m.namespace().or(namespace),
            m.name(),
        );
        if let Some(first) = seen.get(&object) {
            return Err(RenderError::Duplicate {
                object: object.to_string(),
                first: (*first).clone(),
                second: m.origin.clone(),
            });
        }
        seen.insert(object, &m.origin);
    }
    Ok(())
}

/// Canonicalizes `path` and checks that it lies inside `root`.
fn inside_root(path: &Path, root: &Path) -> Result<PathBuf, RenderError> {
    let canonical = |p: &Path| {
        p.canonicalize().map_err(|source| RenderError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let resolved = canonical(path)?;
    if resolved.starts_with(canonical(root)?) {
        Ok(resolved)
    } else {
        Err(RenderError::OutsideRoot {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(ns: Option<&str>, file: &str) -> Manifest {
        let mut object =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
        if let Some(ns) = ns {
            object["metadata"]["namespace"] = ns.into();
        }
        Manifest::new(
            object,
            Origin {
                file: file.into(),
                doc: 0,
            },
        )
        .unwrap()
    }

    #[test]
    fn duplicates_name_both_origins() {
        let ms = [manifest(Some("x"), "a.yaml"), manifest(Some("x"), "b.yaml")];
        let err = check_duplicates(&ms, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "duplicate object ConfigMap/x/a: in a.yaml (document 1) and b.yaml (document 1)"
        );
    }

    #[test]
    fn hooks_with_generated_names_are_not_duplicates() {
        let hook = |file: &str| {
            Manifest::new(
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {
                    "generateName": "migrate-", "namespace": "x",
                    "annotations": {"ferry.dev/hook": "PreSync"}}}),
                Origin {
                    file: file.into(),
                    doc: 0,
                },
            )
            .unwrap()
        };
        assert!(check_duplicates(&[hook("a.yaml"), hook("b.yaml")], None).is_ok());
    }

    #[test]
    fn missing_namespace_is_the_destination() {
        let ms = [manifest(None, "a.yaml"), manifest(Some("x"), "b.yaml")];
        assert!(check_duplicates(&ms, Some("y")).is_ok());
        let err = check_duplicates(&ms, Some("x")).unwrap_err();
        assert!(err.to_string().contains("ConfigMap/x/a"), "{err}");
    }

    #[test]
    fn detect_by_marker_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect(dir.path(), RendererKind::Auto), RendererKind::Plain);
        std::fs::write(dir.path().join("Chart.yaml"), "name: c\n").unwrap();
        assert_eq!(detect(dir.path(), RendererKind::Auto), RendererKind::Helm);
        assert_eq!(detect(dir.path(), RendererKind::Plain), RendererKind::Plain);
        for file in KUSTOMIZATION_FILES {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("Chart.yaml"), "name: c\n").unwrap();
            std::fs::write(dir.path().join(file), "resources: []\n").unwrap();
            assert_eq!(
                detect(dir.path(), RendererKind::Auto),
                RendererKind::Kustomize
            );
        }
    }

    #[test]
    fn chart_versions_float_unless_exact() {
        let spec = |chart: Option<&str>, version: Option<&str>| SourceSpec {
            helm: Some(ferry_model::HelmOptions {
                chart: chart.map(Into::into),
                repo: chart.map(|_| "https://charts.example".into()),
                version: version.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!chart_version_floats(&SourceSpec::default()));
        assert!(!chart_version_floats(&spec(None, None)));
        assert!(!chart_version_floats(&spec(Some("podinfo"), Some("6.5.4"))));
        assert!(chart_version_floats(&spec(Some("podinfo"), Some("^6.0.0"))));
        assert!(chart_version_floats(&spec(Some("podinfo"), None)));
    }

    #[test]
    fn app_dir_must_be_inside_root() {
        let root = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let err = inside_root(other.path(), root.path()).unwrap_err();
        assert!(matches!(err, RenderError::OutsideRoot { .. }), "{err}");
        assert!(inside_root(root.path(), root.path()).is_ok());
    }
}
