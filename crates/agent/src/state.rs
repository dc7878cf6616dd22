//! What the agent knows about each app, shared by the reconciler, the API and the dashboard.

use std::collections::BTreeMap;
use std::sync::Arc;

pub use ferry_api::{AppDetail as AppStatus, Condition, ObjectStatus, Readiness, SyncState};
use ferry_model::{AppKey, AppSpec, HealthStatus};
use serde::{Deserialize, Serialize};
use tokio::sync::{RwLock, broadcast};

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

/// What an operator set at run time that must outlive the process and follow the lease:
/// a suspension (`ferry suspend`) and a rollback pin (`ferry rollback`), until
/// `ferry resume`. Kept in the cluster ([`crate::kept`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// Suspended at run time (a suspension from the app's spec is not kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
    /// The revision a rollback pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
}

impl Kept {
    /// What of `status` must be kept.
    pub fn of(status: &AppStatus) -> Self {
        Self {
            suspended: status.suspended && !status.spec.suspend,
            pinned: status.pinned.clone(),
        }
    }
}

/// All app statuses by [`AppKey`], with a broadcast of changed apps (for live streams).
#[derive(Clone)]
pub struct Store {
    apps: Arc<RwLock<BTreeMap<AppKey, AppStatus>>>,
    changes: broadcast::Sender<AppKey>,
    kept: Arc<std::sync::Mutex<BTreeMap<AppKey, Kept>>>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            apps: Default::default(),
            changes: broadcast::channel(1024).0,
            kept: Default::default(),
        }
    }
}

impl Store {
    /// Replaces the kept settings (as read from the cluster) and applies them to every
    /// app: an app without an entry is suspended only by its spec and not pinned. Apps
    /// added later get their entry applied by [`upsert`](Self::upsert).
    pub async fn load_kept(&self, kept: BTreeMap<AppKey, Kept>) {
        let mut apps = self.apps.write().await;
        for (name, status) in apps.iter_mut() {
            let entry = kept.get(name).cloned().unwrap_or_default();
            status.suspended = status.spec.suspend || entry.suspended;
            status.pinned = entry.pinned;
        }
        *self.kept.lock().expect("kept settings") = kept;
        let names: Vec<AppKey> = apps.keys().cloned().collect();
        drop(apps);
        for name in names {
            let _ = self.changes.send(name);
        }
    }

    /// Records an app's kept settings (after they were written to the cluster).
    pub fn set_kept(&self, name: &AppKey, kept: Kept) {
        let mut map = self.kept.lock().expect("kept settings");
        if kept == Kept::default() {
            map.remove(name);
        } else {
            map.insert(name.clone(), kept);
        }
    }

    /// Adds or replaces an app's definition, keeping its runtime status.
    pub async fn upsert(&self, name: &AppKey, spec: AppSpec) {
        let mut apps = self.apps.write().await;
        match apps.get_mut(name) {
            Some(s) => {
                s.suspended = s.suspended || spec.suspend;
                s.spec = spec;
            }
            None => {
                let mut status = AppStatus::new(name, spec);
                if let Some(kept) = self.kept.lock().expect("kept settings").get(name) {
                    status.suspended |= kept.suspended;
                    status.pinned = kept.pinned.clone();
                }
                apps.insert(name.clone(), status);
            }
        }
        drop(apps);
        let _ = self.changes.send(name.clone());
    }

    /// Removes an app (its kept settings are forgotten by [`crate::kept::forget`]).
    pub async fn remove(&self, name: &AppKey) {
        self.apps.write().await.remove(name);
        self.set_kept(name, Kept::default());
        let _ = self.changes.send(name.clone());
    }

    /// One app's status.
    pub async fn get(&self, name: &AppKey) -> Option<AppStatus> {
        self.apps.read().await.get(name).cloned()
    }

    /// Runs `f` over every app, sorted by namespace and name, under the read lock (nothing is copied).
    pub async fn scan<T>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &AppStatus>) -> T) -> T {
        let apps = self.apps.read().await;
        f(&mut apps.values())
    }

    /// The apps' keys.
    pub async fn names(&self) -> Vec<AppKey> {
        self.apps.read().await.keys().cloned().collect()
    }

    /// Changes an app's status in place and announces it; false when the app is unknown.
    pub async fn update(&self, name: &AppKey, f: impl FnOnce(&mut AppStatus)) -> bool {
        let found = match self.apps.write().await.get_mut(name) {
            Some(s) => {
                f(s);
                true
            }
            None => false,
        };
        if found {
            let _ = self.changes.send(name.clone());
        }
        found
    }

    /// Subscribes to app-changed notifications.
    pub fn subscribe(&self) -> broadcast::Receiver<AppKey> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_sets_one_condition_true() {
        let mut s = AppStatus::new(&key("a"), AppSpec::default());
        fn flags(s: &AppStatus) -> Vec<(&str, &str, String)> {
            s.conditions
                .iter()
                .map(|c| (c.kind.as_str(), c.status.as_str(), c.message.clone()))
                .collect()
        }
        s.set_ready(Readiness::Ready, "ReconciliationSucceeded", "applied");
        assert_eq!(
            flags(&s),
            [
                ("Ready", "True", "applied".into()),
                ("Reconciling", "False", String::new()),
                ("Stalled", "False", String::new()),
            ]
        );
        s.set_ready(Readiness::Reconciling, "Progressing", "waiting");
        assert_eq!(
            flags(&s),
            [
                ("Ready", "False", "waiting".into()),
                ("Reconciling", "True", String::new()),
                ("Stalled", "False", String::new()),
            ]
        );
        s.set_ready(Readiness::Stalled, "RenderFailed", "no such path");
        assert_eq!(s.reason(), Some("RenderFailed"));
        assert_eq!(
            flags(&s),
            [
                ("Ready", "False", "no such path".into()),
                ("Reconciling", "False", String::new()),
                ("Stalled", "True", "no such path".into()),
            ]
        );
        assert_eq!(SyncState::OutOfSync.to_string(), "OutOfSync");
        assert_eq!(
            serde_json::to_value(SyncState::OutOfSync).unwrap(),
            SyncState::OutOfSync.as_str()
        );
    }

    fn key(name: &str) -> AppKey {
        AppKey::new("ferry-system", name)
    }

    fn spec(suspend: bool) -> AppSpec {
        AppSpec {
            suspend,
            ..AppSpec::default()
        }
    }

    #[tokio::test]
    async fn kept_settings_apply_to_present_and_later_apps() {
        let store = Store::default();
        store.upsert(&key("a"), spec(false)).await;
        store.upsert(&key("b"), spec(true)).await;
        store.upsert(&key("c"), spec(false)).await;
        store
            .update(&key("c"), |s| s.pinned = Some("old".into()))
            .await;
        let kept = |suspended, pinned: Option<&str>| Kept {
            suspended,
            pinned: pinned.map(str::to_string),
        };
        store
            .load_kept(BTreeMap::from([
                (key("a"), kept(false, Some("abc"))),
                (key("d"), kept(true, None)),
            ]))
            .await;
        let a = store.get(&key("a")).await.unwrap();
        assert_eq!((a.suspended, a.pinned.as_deref()), (false, Some("abc")));
        let b = store.get(&key("b")).await.unwrap();
        assert!(b.suspended, "suspended by its spec");
        assert_eq!(
            Kept::of(&b),
            Kept::default(),
            "a spec suspension is not kept"
        );
        let c = store.get(&key("c")).await.unwrap();
        assert_eq!(
            (c.suspended, c.pinned),
            (false, None),
            "no entry: nothing kept"
        );

        store.upsert(&key("d"), spec(false)).await;
        assert!(
            store.get(&key("d")).await.unwrap().suspended,
            "added later: entry applied"
        );
        store.remove(&key("d")).await;
        store.upsert(&key("d"), spec(false)).await;
        assert!(
            !store.get(&key("d")).await.unwrap().suspended,
            "removed: entry forgotten"
        );

        store.set_kept(&key("e"), kept(true, Some("x")));
        store.set_kept(&key("e"), Kept::default());
        store.upsert(&key("e"), spec(false)).await;
        assert_eq!(
            Kept::of(&store.get(&key("e")).await.unwrap()),
            Kept::default()
        );
    }
}
