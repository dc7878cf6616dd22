//! What the agent knows about each app, shared by the reconciler, the API and the dashboard.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_model::{AppSpec, ChangeSet, Health, HealthStatus, ObjectRef};
use serde::{Deserialize, Serialize};
use tokio::sync::{RwLock, broadcast};

/// Whether the cluster matches Git.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SyncState {
    /// Every object matches the desired revision.
    Synced,
    /// Some object differs (drift, or a new revision not yet applied).
    OutOfSync,
    /// Not reconciled yet.
    Unknown,
}

/// A Kubernetes-style condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    /// CamelCase reason, e.g. `ApplyFailed`.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

/// One object of an app with its health.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectStatus {
    /// The object.
    pub subject: ObjectRef,
    /// Its health.
    pub health: Health,
}

/// The status of one app.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// App name.
    pub name: String,
    /// The app's definition.
    pub spec: AppSpec,
    /// Sync state.
    pub sync: SyncState,
    /// Aggregated health (worst of the objects).
    pub health: HealthStatus,
    /// Last applied (or observed in sync) commit SHA.
    pub revision: String,
    /// That commit's subject line.
    pub message: String,
    /// Unix ms of the last sync that wrote something.
    pub last_sync_at: Option<i64>,
    /// How long the last reconcile took, in ms.
    pub last_duration_ms: u64,
    /// Number of objects in the inventory.
    pub inventory: usize,
    /// Objects that differ from Git (when OutOfSync).
    pub drifted: Vec<ObjectRef>,
    /// Ready / Reconciling / Stalled.
    pub conditions: Vec<Condition>,
    /// Reconciliation is suspended.
    pub suspended: bool,
    /// Revision pinned by a rollback (until resumed).
    pub pinned: Option<String>,
    /// Per-object health.
    pub objects: Vec<ObjectStatus>,
    /// The last plan (diffs masked).
    pub changeset: Option<ChangeSet>,
}

impl AppStatus {
    /// A fresh status for an app not yet reconciled.
    pub fn new(name: &str, spec: AppSpec) -> Self {
        Self {
            name: name.into(),
            suspended: spec.suspend,
            spec,
            sync: SyncState::Unknown,
            health: HealthStatus::Unknown,
            revision: String::new(),
            message: String::new(),
            last_sync_at: None,
            last_duration_ms: 0,
            inventory: 0,
            drifted: Vec::new(),
            conditions: Vec::new(),
            pinned: None,
            objects: Vec::new(),
            changeset: None,
        }
    }

    /// Sets the Ready/Reconciling/Stalled conditions from an outcome.
    pub fn set_ready(&mut self, ready: bool, reason: &str, message: &str, stalled: bool) {
        let flag = |b: bool| if b { "True" } else { "False" };
        self.conditions = vec![
            Condition {
                kind: "Ready",
                status: flag(ready),
                reason: reason.into(),
                message: message.into(),
            },
            Condition {
                kind: "Reconciling",
                status: flag(!ready && !stalled),
                reason: reason.into(),
                message: String::new(),
            },
            Condition {
                kind: "Stalled",
                status: flag(stalled),
                reason: reason.into(),
                message: if stalled {
                    message.into()
                } else {
                    String::new()
                },
            },
        ];
    }

    /// The Ready condition's reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.conditions
            .iter()
            .find(|c| c.kind == "Ready")
            .map(|c| c.reason.as_str())
    }
}

/// The worst health among objects (Failed > InProgress > ... > Current).
pub fn aggregate(objects: &[ObjectStatus]) -> HealthStatus {
    let rank = |s: HealthStatus| match s {
        HealthStatus::Failed => 5,
        HealthStatus::NotFound => 4,
        HealthStatus::Terminating => 3,
        HealthStatus::InProgress => 2,
        HealthStatus::Unknown => 1,
        HealthStatus::Current => 0,
    };
    objects
        .iter()
        .map(|o| o.health.status)
        .max_by_key(|s| rank(*s))
        .unwrap_or(HealthStatus::Current)
}

/// What an operator set at run time that must outlive the process: a suspension
/// (`ferry suspend`) and a rollback pin (`ferry rollback`), until `ferry resume`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Kept {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    suspended: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pinned: Option<String>,
}

/// The JSON file of [`Kept`] settings by app name.
struct KeptFile {
    path: PathBuf,
    apps: std::sync::Mutex<BTreeMap<String, Kept>>,
}

impl KeptFile {
    /// Sets (or with the default, drops) one app's entry and rewrites the file atomically.
    fn set(&self, name: &str, kept: Kept) -> Result<(), String> {
        let mut apps = self.apps.lock().expect("kept settings");
        if kept == Kept::default() {
            if apps.remove(name).is_none() {
                return Ok(());
            }
        } else {
            apps.insert(name.to_string(), kept);
        }
        let text = serde_json::to_vec_pretty(&*apps).map_err(|e| e.to_string())?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| format!("writing {}: {e}", self.path.display()))
    }
}

/// All app statuses, with a broadcast of changed app names (for live streams).
#[derive(Clone)]
pub struct Store {
    apps: Arc<RwLock<BTreeMap<String, AppStatus>>>,
    changes: broadcast::Sender<String>,
    kept: Option<Arc<KeptFile>>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            apps: Default::default(),
            changes: broadcast::channel(1024).0,
            kept: None,
        }
    }
}

impl Store {
    /// A store that keeps suspensions and rollback pins in the JSON file `path`, so that a
    /// restarted agent does not resume a suspended app or leave a rollback for the branch
    /// head. Apps added later get their kept settings back. A missing file is empty; an
    /// unreadable one is an error (the caller may start with [`Store::default`]).
    pub fn with_kept_file(path: PathBuf) -> Result<Self, String> {
        let apps = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("reading {}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        Ok(Self {
            kept: Some(Arc::new(KeptFile {
                path,
                apps: std::sync::Mutex::new(apps),
            })),
            ..Self::default()
        })
    }

    /// Saves an app's suspension and rollback pin (call after changing either); a no-op
    /// without a kept file.
    pub async fn keep(&self, name: &str) -> Result<(), String> {
        let Some(file) = &self.kept else {
            return Ok(());
        };
        let kept = match self.apps.read().await.get(name) {
            Some(s) => Kept {
                suspended: s.suspended && !s.spec.suspend,
                pinned: s.pinned.clone(),
            },
            None => Kept::default(),
        };
        file.set(name, kept)
    }

    /// Adds or replaces an app's definition, keeping its runtime status.
    pub async fn upsert(&self, name: &str, spec: AppSpec) {
        let mut apps = self.apps.write().await;
        match apps.get_mut(name) {
            Some(s) => {
                s.suspended = s.suspended || spec.suspend;
                s.spec = spec;
            }
            None => {
                let mut status = AppStatus::new(name, spec);
                if let Some(file) = &self.kept
                    && let Some(kept) = file.apps.lock().expect("kept settings").get(name)
                {
                    status.suspended |= kept.suspended;
                    status.pinned = kept.pinned.clone();
                }
                apps.insert(name.into(), status);
            }
        }
        drop(apps);
        let _ = self.changes.send(name.into());
    }

    /// Removes an app, and its kept suspension and pin.
    pub async fn remove(&self, name: &str) {
        self.apps.write().await.remove(name);
        if let Some(file) = &self.kept
            && let Err(e) = file.set(name, Kept::default())
        {
            tracing::warn!("{e}");
        }
        let _ = self.changes.send(name.into());
    }

    /// One app's status.
    pub async fn get(&self, name: &str) -> Option<AppStatus> {
        self.apps.read().await.get(name).cloned()
    }

    /// Every app, sorted by name.
    pub async fn list(&self) -> Vec<AppStatus> {
        self.apps.read().await.values().cloned().collect()
    }

    /// App names.
    pub async fn names(&self) -> Vec<String> {
        self.apps.read().await.keys().cloned().collect()
    }

    /// Changes an app's status in place and announces it; false when the app is unknown.
    pub async fn update(&self, name: &str, f: impl FnOnce(&mut AppStatus)) -> bool {
        let found = match self.apps.write().await.get_mut(name) {
            Some(s) => {
                f(s);
                true
            }
            None => false,
        };
        if found {
            let _ = self.changes.send(name.into());
        }
        found
    }

    /// Subscribes to app-changed notifications.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(suspend: bool) -> AppSpec {
        AppSpec {
            suspend,
            ..AppSpec::default()
        }
    }

    #[tokio::test]
    async fn suspensions_and_pins_are_kept_in_the_file() {
        let dir = std::env::temp_dir().join(format!("ferry-kept-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kept.json");
        let _ = std::fs::remove_file(&path);

        let store = Store::with_kept_file(path.clone()).unwrap();
        store.upsert("a", spec(false)).await;
        store.upsert("b", spec(true)).await;
        store.update("a", |s| s.pinned = Some("abc".into())).await;
        store.keep("a").await.unwrap();
        store.keep("b").await.unwrap(); // suspended by its spec: nothing to keep

        // A new process: "a" gets its pin back, also when it is added later.
        let again = Store::with_kept_file(path.clone()).unwrap();
        again.upsert("b", spec(false)).await;
        assert!(!again.get("b").await.unwrap().suspended);
        again.upsert("a", spec(false)).await;
        let a = again.get("a").await.unwrap();
        assert_eq!(a.pinned.as_deref(), Some("abc"));
        assert!(!a.suspended);

        // Suspend, then resume: the file follows; removing an app forgets it.
        again.update("a", |s| s.suspended = true).await;
        again.keep("a").await.unwrap();
        let third = Store::with_kept_file(path.clone()).unwrap();
        third.upsert("a", spec(false)).await;
        assert!(third.get("a").await.unwrap().suspended);
        third.remove("a").await;
        let fourth = Store::with_kept_file(path.clone()).unwrap();
        fourth.upsert("a", spec(false)).await;
        let a = fourth.get("a").await.unwrap();
        assert!(!a.suspended && a.pinned.is_none());

        std::fs::write(&path, "not json").unwrap();
        assert!(Store::with_kept_file(path.clone()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
