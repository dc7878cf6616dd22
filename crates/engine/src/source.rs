//! Source and render stages: fetch a revision and render an app's manifests.

use ferry_model::{AppSpec, Manifest, SourceSpec};
use ferry_render::{RenderRequest, Tools};
use ferry_source::{Checkout, Credentials, GitCache, Revision};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

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

/// The credentials push mode fetches `source` with: its `credentialsDir`, else your own
/// (Git's credential helpers, your SSH setup). `secretRef` is the agent's.
pub fn local_credentials(source: &SourceSpec) -> Result<Credentials, EngineError> {
    match &source.credentials_dir {
        Some(dir) => Ok(Credentials::from_dir(std::path::Path::new(dir))?),
        None => Ok(Credentials::ambient()),
    }
}

/// Fetches `spec.source` at `git_ref` (or the spec's ref) with its
/// [`local_credentials`] and renders it, all in a blocking task: Git and renderers
/// never run on the async executor.
pub async fn render_app(
    git: &GitCache,
    tools: &Tools,
    name: &str,
    spec: &AppSpec,
    git_ref: Option<&str>,
    facts: &ClusterFacts,
) -> Result<Rendered, EngineError> {
    let git = git
        .clone()
        .with_credentials(local_credentials(&spec.source)?);
    let repo = spec.source.repo.clone();
    let git_ref = git_ref
        .map(str::to_string)
        .or_else(|| spec.source.git_ref.clone());
    let checkout = blocking(move || Ok(git.checkout(&repo, git_ref.as_deref())?)).await?;
    render_in(Arc::new(checkout), tools, name, spec, facts).await
}

/// Renders `spec` from a checkout already written (shared, read-only), in a blocking task.
pub async fn render_in(
    checkout: Arc<Checkout>,
    tools: &Tools,
    name: &str,
    spec: &AppSpec,
    facts: &ClusterFacts,
) -> Result<Rendered, EngineError> {
    let tools = tools.clone();
    let name = name.to_string();
    let spec = spec.clone();
    let facts = facts.clone();
    blocking(move || {
        let dir = checkout.app_dir(&spec.source.path)?;
        let kind = ferry_render::renderer_for(&dir, &spec.source);
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
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
}

/// A cache entry: (repository, credentials, SHA) and its checkout, written once.
type Slot = ((String, String, String), Arc<OnceCell<Arc<Checkout>>>);

/// Checkouts shared by every render of the same commit: one working copy per
/// (repository, credentials, commit SHA), written once even when many apps ask at the
/// same time. Keyed by credentials too, so an app never gets a checkout that only
/// another app's credentials could fetch.
/// A checkout is read-only once written (renderers never write into it), and is
/// deleted when it has left the cache and its last render finished.
#[derive(Clone)]
pub struct Checkouts {
    git: GitCache,
    capacity: usize,
    slots: Arc<Mutex<VecDeque<Slot>>>,
}

impl Checkouts {
    /// A cache over `git` keeping the `capacity` most recently used checkouts.
    pub fn new(git: GitCache, capacity: usize) -> Self {
        Self {
            git,
            capacity: capacity.max(1),
            slots: Default::default(),
        }
    }

    /// The checkout of commit `sha` (a full SHA) of `repo` fetched with `credentials`,
    /// written on first use.
    pub async fn get(
        &self,
        repo: &str,
        credentials: &Credentials,
        sha: &str,
    ) -> Result<Arc<Checkout>, EngineError> {
        let key = (
            repo.to_string(),
            credentials.id().to_string(),
            sha.to_string(),
        );
        let slot = {
            let mut slots = self.slots.lock().expect("checkouts");
            let slot = match slots.iter().position(|(k, _)| *k == key) {
                Some(i) => slots.remove(i).expect("position is in range").1,
                None => Default::default(),
            };
            slots.push_front((key, slot.clone()));
            slots.truncate(self.capacity);
            slot
        };
        slot.get_or_try_init(|| {
            let git = self.git.clone().with_credentials(credentials.clone());
            let (repo, sha) = (repo.to_string(), sha.to_string());
            async move {
                Ok(Arc::new(
                    blocking(move || Ok(git.checkout(&repo, Some(&sha))?)).await?,
                ))
            }
        })
        .await
        .cloned()
    }

    /// Renders `spec` at commit `sha` from the shared checkout fetched with `credentials`.
    pub async fn render(
        &self,
        tools: &Tools,
        name: &str,
        spec: &AppSpec,
        credentials: &Credentials,
        sha: &str,
        facts: &ClusterFacts,
    ) -> Result<Rendered, EngineError> {
        let checkout = self.get(&spec.source.repo, credentials, sha).await?;
        render_in(checkout, tools, name, spec, facts).await
    }
}

fn renderer_name(kind: ferry_model::RendererKind) -> &'static str {
    match kind {
        ferry_model::RendererKind::Kustomize => "kustomize",
        ferry_model::RendererKind::Helm => "helm",
        ferry_model::RendererKind::Jsonnet => "jsonnet",
        _ => "plain",
    }
}
