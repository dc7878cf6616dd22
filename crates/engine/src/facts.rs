//! The Kubernetes version and API versions Helm renders for when there is no cluster.
//!
//! Against a cluster they come from its discovery ([`ClusterFacts`] from the caller).
//! Offline (`ferry render`, `ferry diff --against`) each comes from the app's
//! `helm.kubeVersion` / `helm.apiVersions`, else from the cluster last seen for the app
//! (a [`FactsStore`] record, written whenever ferry renders the app against a cluster),
//! else the default: [`DEFAULT_KUBE_VERSION`] and Helm's built-in API versions.

use std::path::PathBuf;

use ferry_model::HelmOptions;
use serde::{Deserialize, Serialize};

use crate::source::ClusterFacts;

/// The Kubernetes version of offline renders when neither the app nor a record gives one.
pub const DEFAULT_KUBE_VERSION: &str = "v1.34.0";

/// What was seen of an app's cluster the last time ferry rendered the app against it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeenCluster {
    /// The API server's URL.
    pub server: String,
    /// Its version, e.g. `v1.34.4`.
    pub kube_version: String,
    /// The group/versions it served.
    pub api_versions: Vec<String>,
    /// When, RFC 3339 in UTC.
    pub seen_at: String,
}

/// Records of the cluster last seen per app: one JSON file per app in a directory
/// (ferry's cache dir `clusters/<app>.json`), replaced whole on every write.
#[derive(Clone, Debug)]
pub struct FactsStore {
    dir: PathBuf,
}

impl FactsStore {
    /// A store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, app: &str) -> PathBuf {
        let name: String = app
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{name}.json"))
    }

    /// Records that `app` was rendered against the cluster at `server` with `facts`.
    pub fn record(&self, app: &str, server: &str, facts: &ClusterFacts) -> std::io::Result<()> {
        let seen = SeenCluster {
            server: server.into(),
            kube_version: facts.kube_version.clone().unwrap_or_default(),
            api_versions: facts.api_versions.clone(),
            seen_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        std::fs::create_dir_all(&self.dir)?;
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        serde_json::to_writer_pretty(&mut file, &seen)?;
        file.persist(self.path(app))?;
        Ok(())
    }

    /// The cluster last seen for `app`; `None` when there is no readable record.
    pub fn last_seen(&self, app: &str) -> Option<SeenCluster> {
        let path = self.path(app);
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str::<SeenCluster>(&text) {
            Ok(seen) if !seen.kube_version.is_empty() => Some(seen),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "ignoring an unreadable cluster record");
                None
            }
        }
    }
}

/// The facts for an offline render of an app, and the one line that says where they
/// came from.
#[derive(Clone, Debug)]
pub struct OfflineFacts {
    /// The Kubernetes version (always set) and the API versions added to Helm's own.
    pub facts: ClusterFacts,
    /// E.g. `helm (no cluster): Kubernetes v1.29.0 from helm.kubeVersion, 61 API versions
    /// from the cluster last seen for app web (https://…, 2026-12-01T12:00:00Z)`.
    pub note: String,
}

/// The facts for rendering `app` without a cluster: per field the app's Helm option, else
/// the cluster last seen in `store`, else the default.
pub fn offline(app: &str, helm: Option<&HelmOptions>, store: &FactsStore) -> OfflineFacts {
    let seen = store.last_seen(app);
    let seen_source = seen.as_ref().map(|s| {
        format!(
            "the cluster last seen for app {app} ({}, {})",
            s.server, s.seen_at
        )
    });
    let default_source = format!(
        "ferry's default (no helm.kubeVersion/helm.apiVersions, no cluster recorded for app {app})"
    );
    let (kube_version, kube_source) = match (helm.and_then(|h| h.kube_version.clone()), &seen) {
        (Some(v), _) => (v, "helm.kubeVersion".to_string()),
        (None, Some(s)) => (
            s.kube_version.clone(),
            seen_source.clone().unwrap_or_default(),
        ),
        (None, None) => (DEFAULT_KUBE_VERSION.to_string(), default_source.clone()),
    };
    let app_apis = helm.map(|h| h.api_versions.clone()).unwrap_or_default();
    let (api_versions, api_source) = match (app_apis.is_empty(), &seen) {
        (false, _) => (app_apis, "helm.apiVersions".to_string()),
        (true, Some(s)) => (s.api_versions.clone(), seen_source.unwrap_or_default()),
        (true, None) => (Vec::new(), default_source),
    };
    let apis = if api_versions.is_empty() {
        "Helm's built-in API versions".to_string()
    } else {
        let n = api_versions.len();
        format!("{n} API version{}", if n == 1 { "" } else { "s" })
    };
    let note = if kube_source == api_source {
        format!("helm (no cluster): Kubernetes {kube_version} and {apis} from {kube_source}")
    } else {
        format!(
            "helm (no cluster): Kubernetes {kube_version} from {kube_source}, {apis} from {api_source}"
        )
    };
    OfflineFacts {
        facts: ClusterFacts {
            kube_version: Some(kube_version),
            api_versions,
        },
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(version: &str, apis: &[&str]) -> ClusterFacts {
        ClusterFacts {
            kube_version: Some(version.into()),
            api_versions: apis.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn app_fields_then_recorded_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = FactsStore::new(dir.path().join("clusters"));

        let none = offline("web", None, &store);
        assert_eq!(
            none.facts.kube_version.as_deref(),
            Some(DEFAULT_KUBE_VERSION)
        );
        assert!(none.facts.api_versions.is_empty());
        assert_eq!(
            none.note,
            "helm (no cluster): Kubernetes v1.34.0 and Helm's built-in API versions from ferry's default (no helm.kubeVersion/helm.apiVersions, no cluster recorded for app web)"
        );

        store
            .record(
                "web",
                "https://10.0.0.1:6443",
                &cluster("v1.33.2", &["a/v1", "b/v1"]),
            )
            .unwrap();
        let seen = offline("web", None, &store);
        assert_eq!(seen.facts.kube_version.as_deref(), Some("v1.33.2"));
        assert_eq!(seen.facts.api_versions, ["a/v1", "b/v1"]);
        assert!(
            seen.note.starts_with("helm (no cluster): Kubernetes v1.33.2 and 2 API versions from the cluster last seen for app web (https://10.0.0.1:6443, 20"),
            "{}",
            seen.note
        );
        assert_eq!(
            offline("api", None, &store).facts.kube_version.as_deref(),
            Some(DEFAULT_KUBE_VERSION)
        );

        let helm = HelmOptions {
            kube_version: Some("v1.29.0".into()),
            ..HelmOptions::default()
        };
        let mixed = offline("web", Some(&helm), &store);
        assert_eq!(mixed.facts.kube_version.as_deref(), Some("v1.29.0"));
        assert_eq!(mixed.facts.api_versions, ["a/v1", "b/v1"]);
        assert!(
            mixed.note.starts_with("helm (no cluster): Kubernetes v1.29.0 from helm.kubeVersion, 2 API versions from the cluster last seen for app web ("),
            "{}",
            mixed.note
        );

        let helm = HelmOptions {
            kube_version: Some("v1.29.0".into()),
            api_versions: vec!["x.example/v1".into()],
            ..HelmOptions::default()
        };
        let app = offline("web", Some(&helm), &store);
        assert_eq!(app.facts.api_versions, ["x.example/v1"]);
        assert_eq!(
            app.note,
            "helm (no cluster): Kubernetes v1.29.0 from helm.kubeVersion, 1 API version from helm.apiVersions"
        );
    }

    #[test]
    fn records_are_replaced_and_bad_ones_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = FactsStore::new(dir.path());
        store
            .record("web", "https://a", &cluster("v1.30.0", &[]))
            .unwrap();
        store
            .record("web", "https://b", &cluster("v1.31.0", &["apps/v1"]))
            .unwrap();
        let seen = store.last_seen("web").unwrap();
        assert_eq!(
            (seen.server.as_str(), seen.kube_version.as_str()),
            ("https://b", "v1.31.0")
        );
        std::fs::write(dir.path().join("web.json"), "{not json").unwrap();
        assert_eq!(store.last_seen("web"), None);
        store
            .record("a/../b c", "https://c", &cluster("v1.32.0", &[]))
            .unwrap();
        assert!(dir.path().join("a_.._b_c.json").is_file());
    }
}
