//! The reconciler's engine-facing handle: the cluster, Git, renderers and the caches
//! between them (last fetched revisions, renders per commit, objects found in sync).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_engine::EngineError;
use ferry_engine::source::{Checkouts, ClusterFacts, Rendered};
use ferry_engine::sync::InSync;
use ferry_kube::Cluster;
use ferry_model::{AppSpec, Manifest, ObjectRef, Origin, SYSTEM_NAMESPACE, SecretRef, SourceSpec};
use ferry_render::Tools;
use ferry_source::{Credentials, GitCache, Revision, SourceError};
use k8s_openapi::api::core::v1::Secret;

/// A repository, ref and credentials, the unit Git is polled and fetched by.
pub type RepoKey = (String, Option<String>, CredentialsRef);

/// Where the credentials of a source are: the agent fetches anonymously unless a
/// source names a Secret (`secretRef`) or, in `ferry.yaml`, a directory, or its project
/// has credentials for the repository (`repoCredentials`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CredentialsRef {
    /// None: not even the agent's own Git or SSH setup.
    #[default]
    Anonymous,
    /// A Secret (namespace, name).
    Secret(String, String),
    /// A directory of key files (`credentialsDir`).
    Dir(String),
}

impl CredentialsRef {
    /// The credentials `source` names; a Secret without a namespace is in `ferry-system`
    /// (the Application watch fills in an Application's own).
    pub fn of(source: &SourceSpec) -> Self {
        match (&source.secret_ref, &source.credentials_dir) {
            (Some(secret), _) => Self::secret(secret),
            (None, Some(dir)) => Self::Dir(dir.clone()),
            (None, None) => Self::Anonymous,
        }
    }

    /// The Secret `secret` names (in `ferry-system` when it names no namespace).
    pub fn secret(secret: &SecretRef) -> Self {
        Self::Secret(
            secret
                .namespace
                .clone()
                .unwrap_or_else(|| SYSTEM_NAMESPACE.into()),
            secret.name.clone(),
        )
    }
}

/// The repository key of an app: its source with the credentials it is fetched with
/// ([`Projects::credentials`](crate::projects::Projects::credentials)).
pub fn repo_key(spec: &AppSpec, projects: &crate::projects::Projects) -> RepoKey {
    (
        spec.source.repo.clone(),
        spec.source.git_ref.clone(),
        projects.credentials(spec),
    )
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
    renders: Mutex<HashMap<String, Arc<Packed>>>,
}

/// A render as the cache keeps it: each manifest as compact JSON text, parsed again at
/// each use. Parsed, a small object takes several times its text (every JSON object is a
/// B-tree node of its own): kept parsed, the renders of 1000 apps of 4 objects took
/// 14.5 MiB of the agent's 40 MiB heap.
struct Packed {
    revision: Revision,
    renderer: &'static str,
    manifests: Vec<(Box<str>, Origin)>,
}

impl Packed {
    fn pack(rendered: &Rendered) -> Self {
        Self {
            revision: rendered.revision.clone(),
            renderer: rendered.renderer,
            manifests: rendered
                .manifests
                .iter()
                .map(|m| (m.object.to_string().into_boxed_str(), m.origin.clone()))
                .collect(),
        }
    }

    fn unpack(&self) -> Rendered {
        Rendered {
            revision: self.revision.clone(),
            renderer: self.renderer,
            manifests: self
                .manifests
                .iter()
                .map(|(json, origin)| Manifest {
                    object: serde_json::from_str(json).expect("JSON ferry wrote parses"),
                    origin: origin.clone(),
                })
                .collect(),
        }
    }
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

    /// The credentials `at` names, read now (a Secret through the API server).
    pub async fn credentials(&self, at: &CredentialsRef) -> Result<Credentials, EngineError> {
        match at {
            CredentialsRef::Anonymous => Ok(Credentials::anonymous()),
            CredentialsRef::Dir(dir) => Ok(Credentials::from_dir(std::path::Path::new(dir))?),
            CredentialsRef::Secret(namespace, name) => {
                let id = format!("Secret {namespace}/{name}");
                let subject = ObjectRef::new("v1", "Secret", Some(namespace), name);
                let Some(value) = self.cluster.get(&subject).await? else {
                    return Err(SourceError::Credentials {
                        id,
                        message: "not found".into(),
                    }
                    .into());
                };
                let secret: Secret =
                    serde_json::from_value(value).map_err(|e| SourceError::Credentials {
                        id: id.clone(),
                        message: format!("unreadable: {e}"),
                    })?;
                let keys = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                Ok(Credentials::from_keys(id, &keys)?)
            }
        }
    }

    /// The Git cache fetching with the credentials `at` names.
    pub async fn git_for(&self, at: &CredentialsRef) -> Result<GitCache, EngineError> {
        Ok(self
            .git
            .clone()
            .with_credentials(self.credentials(at).await?))
    }

    /// Fetches a repository key now; returns the revision and whether it changed.
    pub async fn fetch(&self, key: &RepoKey) -> Result<(Revision, bool), EngineError> {
        let git = self.git_for(&key.2).await?;
        let (repo, git_ref, _) = key.clone();
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
        let git = self.git_for(&key.2).await?;
        let (repo, git_ref, _) = key.clone();
        Ok(
            tokio::task::spawn_blocking(move || git.remote_sha(&repo, git_ref.as_deref()))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))??,
        )
    }

    /// The app's manifests at commit `sha`, cached per (commit, app, source and its
    /// credentials, `credentials_ref`) unless its chart version is a range (then each
    /// render asks the chart repository again). The checkout is one its credentials
    /// fetched.
    pub async fn render(
        &self,
        name: &str,
        spec: &AppSpec,
        credentials_ref: &CredentialsRef,
        sha: &str,
    ) -> Result<Rendered, EngineError> {
        let key = format!(
            "{sha}\n{name}\n{credentials_ref:?}\n{}",
            serde_json::to_string(&(&spec.source, &spec.destination.namespace)).unwrap_or_default()
        );
        let cached = self.renders.lock().expect("renders").get(&key).cloned();
        if let Some(packed) = cached {
            return Ok(packed.unpack());
        }
        let credentials = self.credentials(credentials_ref).await?;
        let rendered = self
            .checkouts
            .render(&self.tools, name, spec, &credentials, sha, &self.facts)
            .await?;
        if ferry_render::chart_version_floats(&spec.source) {
            return Ok(rendered);
        }
        let mut renders = self.renders.lock().expect("renders");
        if renders.len() > 4096 {
            renders.clear();
        }
        renders.insert(key, Arc::new(Packed::pack(&rendered)));
        Ok(rendered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_packed_render_unpacks_to_the_same_manifests() {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {"replicas": 0, "ratio": 0.25, "big": u64::MAX, "neg": -3,
                     "args": ["--a", "ü", ""], "none": null, "on": true}
        });
        let rendered = Rendered {
            revision: Revision {
                sha: "a".repeat(40),
                message: "one".into(),
                author: "me".into(),
                time: 1,
            },
            manifests: vec![Manifest {
                object,
                origin: Origin {
                    file: "web.yaml".into(),
                    doc: 2,
                },
            }],
            renderer: "plain",
        };
        let again = Packed::pack(&rendered).unpack();
        assert_eq!(again.manifests, rendered.manifests);
        assert_eq!(again.revision.sha, rendered.revision.sha);
        assert_eq!(again.renderer, "plain");
    }
}
