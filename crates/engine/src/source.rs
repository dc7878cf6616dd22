//! Source and render stages: fetch a revision and render an app's manifests.

use ferry_model::{AppSpec, Manifest};
use ferry_render::{RenderRequest, Tools};
use ferry_source::{GitCache, Revision};

use crate::EngineError;

/// An app's desired state at one revision: the rendered manifests and where they came from.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The commit rendered.
    pub revision: Revision,
    /// The manifests, in render order.
    pub manifests: Vec<Manifest>,
    /// Which renderer ran (`plain`, `kustomize`, `helm`).
    pub renderer: &'static str,
}

/// Facts about the target cluster that renderers use (Helm's `--kube-version`, `--api-versions`).
#[derive(Clone, Debug, Default)]
pub struct ClusterFacts {
    /// Server version, e.g. `v1.34.4`.
    pub kube_version: Option<String>,
    /// Group/versions served, e.g. `apps/v1`.
    pub api_versions: Vec<String>,
}

/// Fetches `spec.source` at `git_ref` (or the spec's ref) and renders it, all in a
/// blocking task: Git and renderers never run on the async executor.
pub async fn render_app(
    git: &GitCache,
    tools: &Tools,
    name: &str,
    spec: &AppSpec,
    git_ref: Option<&str>,
    facts: &ClusterFacts,
) -> Result<Rendered, EngineError> {
    let git = git.clone();
    let tools = tools.clone();
    let name = name.to_string();
    let spec = spec.clone();
    let git_ref = git_ref
        .map(str::to_string)
        .or_else(|| spec.source.git_ref.clone());
    let facts = facts.clone();
    tokio::task::spawn_blocking(move || {
        let checkout = git.checkout(&spec.source.repo, git_ref.as_deref())?;
        let dir = checkout.app_dir(&spec.source.path)?;
        let kind = ferry_render::detect(&dir, spec.source.renderer);
        let req = RenderRequest {
            app: &name,
            dir: &dir,
            root: checkout.root(),
            namespace: spec.destination.namespace.as_deref(),
            spec: &spec.source,
            kube_version: facts.kube_version.as_deref(),
            api_versions: &facts.api_versions,
        };
        let manifests = ferry_render::render(&req, &tools)?;
        Ok(Rendered {
            revision: checkout.revision.clone(),
            manifests,
            renderer: renderer_name(kind),
        })
    })
    .await
    .map_err(|e| EngineError::Internal(e.to_string()))?
}

fn renderer_name(kind: ferry_model::RendererKind) -> &'static str {
    match kind {
        ferry_model::RendererKind::Kustomize => "kustomize",
        ferry_model::RendererKind::Helm => "helm",
        _ => "plain",
    }
}
