//! The reconciler's engine-facing handle: the cluster, Git, renderers and the caches
//! between them (last fetched revisions, renders per commit, objects found in sync).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_engine::EngineError;
use ferry_engine::source::{Checkouts, ClusterFacts, Rendered};
use ferry_engine::sync::InSync;
use ferry_kube::Cluster;
use ferry_model::AppSpec;
use ferry_render::Tools;
use ferry_source::{GitCache, Revision};

/// A repository and ref, the unit Git is polled and fetched by.
pub type RepoKey = (String, Option<String>);

/// The repository key of an app.
pub fn repo_key(spec: &AppSpec) -> RepoKey {
    (spec.source.repo.clone(), spec.source.git_ref.clone())
}

/// What resolving, rendering, planning and applying need, shared by all reconciles.
pub struct Engine {
    /// The target cluster.
    pub cluster: Cluster,
    /// Facts for renderers.
    pub facts: ClusterFacts,
    /// Git mirrors.
    pub git: GitCache,
    /// Working copies shared by all renders of one commit.
    pub checkouts: Checkouts,
    /// Renderer binaries.
    pub tools: Tools,
    /// Objects found in sync, whose dry-runs the next plan skips.
    pub in_sync: InSync,
    revisions: Mutex<HashMap<RepoKey, Revision>>,
    renders: Mutex<HashMap<String, Arc<Rendered>>>,
}

impl Engine {
    /// An engine handle with empty caches.
    pub fn new(cluster: Cluster, facts: ClusterFacts, git: GitCache, tools: Tools) -> Self {
        Self {
            cluster,
            facts,
            checkouts: Checkouts::new(git.clone(), 8),
            git,
            tools,
            in_sync: InSync::default(),
            revisions: Default::default(),
            renders: Default::default(),
        }
    }

    /// The last fetched revision of a repository key.
    pub fn known_revision(&self, key: &RepoKey) -> Option<Revision> {
        self.revisions.lock().expect("revisions").get(key).cloned()
    }

    /// Fetches a repository key now; returns the revision and whether it changed.
    pub async fn fetch(&self, key: &RepoKey) -> Result<(Revision, bool), EngineError> {
        let git = self.git.clone();
        let (repo, git_ref) = key.clone();
        let rev = tokio::task::spawn_blocking(move || git.resolve(&repo, git_ref.as_deref()))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        let mut revisions = self.revisions.lock().expect("revisions");
        let changed = revisions.get(key).is_none_or(|r| r.sha != rev.sha);
        revisions.insert(key.clone(), rev.clone());
        Ok((rev, changed))
    }

    /// Cheap remote check for a repository key (no object transfer).
    pub async fn remote_sha(&self, key: &RepoKey) -> Result<String, EngineError> {
        let git = self.git.clone();
        let (repo, git_ref) = key.clone();
        Ok(
            tokio::task::spawn_blocking(move || git.remote_sha(&repo, git_ref.as_deref()))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))??,
        )
    }

    /// The app's manifests at commit `sha`, cached per (commit, app, source) unless its
    /// chart version is a range (then each render asks the chart repository again).
    pub async fn render(
        &self,
        name: &str,
        spec: &AppSpec,
        sha: &str,
    ) -> Result<Arc<Rendered>, EngineError> {
        let key = format!(
            "{sha}\n{name}\n{}",
            serde_json::to_string(&(&spec.source, &spec.destination.namespace)).unwrap_or_default()
        );
        if let Some(r) = self.renders.lock().expect("renders").get(&key) {
            return Ok(r.clone());
        }
        let rendered = Arc::new(
            self.checkouts
                .render(&self.tools, name, spec, sha, &self.facts)
                .await?,
        );
        if ferry_render::chart_version_floats(&spec.source) {
            return Ok(rendered);
        }
        let mut renders = self.renders.lock().expect("renders");
        if renders.len() > 4096 {
            renders.clear();
        }
        renders.insert(key, rendered.clone());
        Ok(rendered)
    }
}
