//! The dependency gate (`dependsOn`): an app is not synced until every app it depends on
//! is Synced and Healthy at its current revision. A held app shows `waiting for <app>`
//! and is queued again, with the trigger it was held with, as soon as that app becomes
//! ready ([`wake`]); a timer ([`DEPENDENCY_RECHECK`]) is the fallback. A dependency is
//! an app of the same namespace (`db`) unless it names one (`team-a/db`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use ferry_model::{AppKey, AppSpec, DependencyError, HealthStatus, dependency_order};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::queue::{Queue, Trigger};
use crate::state::{AppStatus, Readiness, Store, SyncState};

/// How often a held app looks at its dependencies again when no readiness change of
/// theirs woke it.
pub const DEPENDENCY_RECHECK: Duration = Duration::from_secs(30);

/// Why an app may not be synced now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// A dependency is not ready yet: the app waits for it.
    Waiting {
        /// The dependency.
        dependency: String,
        /// What it lacks, e.g. `not healthy`.
        why: &'static str,
    },
    /// A dependency names no app the agent knows.
    Unknown(String),
    /// Apps depend on each other in a circle.
    Cycle(String),
}

impl Blocked {
    /// The readiness, reason and message the held app shows.
    pub fn condition(&self) -> (Readiness, &'static str, String) {
        match self {
            Self::Waiting { dependency, why } => (
                Readiness::Reconciling,
                "WaitingForDependency",
                format!("waiting for {dependency} ({why})"),
            ),
            Self::Unknown(dependency) => (
                Readiness::Stalled,
                "DependencyNotFound",
                format!("depends on {dependency}, which is not an app"),
            ),
            Self::Cycle(message) => (Readiness::Stalled, "DependencyCycle", message.clone()),
        }
    }

    /// The dependency whose readiness change should wake the held app.
    fn dependency(&self) -> Option<&str> {
        match self {
            Self::Waiting { dependency, .. } => Some(dependency),
            _ => None,
        }
    }
}

/// Whether `dep` is ready for its dependents: synced, healthy and Ready, at `latest`
/// (the newest revision known for its source) unless a rollback pins it. `Err` says what
/// it lacks.
pub fn ready(dep: &AppStatus, latest: Option<&str>) -> Result<(), &'static str> {
    let condition_ready = dep
        .conditions
        .iter()
        .any(|c| c.kind == "Ready" && c.status == "True");
    if dep.sync != SyncState::Synced || dep.revision.is_empty() {
        Err("not synced")
    } else if dep.health != HealthStatus::Current || !condition_ready {
        Err("not healthy")
    } else if dep.pinned.is_none() && latest.is_some_and(|l| l != dep.revision) {
        Err("not synced at its current revision")
    } else {
        Ok(())
    }
}

/// The app a `dependsOn` entry of an app in `namespace` names: `namespace/name`, or a
/// bare name in `namespace`.
pub fn dependency(namespace: &str, entry: &str) -> AppKey {
    AppKey::parse(entry, namespace).unwrap_or_else(|_| AppKey::new(namespace, entry))
}

/// The keys of an app's dependencies, in `dependsOn` order.
fn dependencies_of(app: &AppStatus) -> impl Iterator<Item = AppKey> + '_ {
    let namespace = &app.app_namespace;
    app.spec
        .depends_on
        .iter()
        .map(move |d| dependency(namespace, d))
}

/// The gate: whether `app` must wait, given every app the agent knows and the newest
/// revision known for a source (`latest`).
pub fn gate(
    app: &AppStatus,
    apps: &BTreeMap<AppKey, &AppStatus>,
    latest: &dyn Fn(&AppSpec) -> Option<String>,
) -> Option<Blocked> {
    if app.spec.depends_on.is_empty() {
        return None;
    }
    if let Some(unknown) = (app.spec.depends_on.iter())
        .zip(dependencies_of(app))
        .find(|(_, key)| !apps.contains_key(key))
    {
        return Some(Blocked::Unknown(unknown.0.clone()));
    }
    if let Err(DependencyError::Cycle { cycle }) = reachable_order(&app.key(), apps) {
        return Some(Blocked::Cycle(format!(
            "dependency cycle: {}",
            cycle.join(" -> ")
        )));
    }
    (app.spec.depends_on.iter())
        .zip(dependencies_of(app))
        .find_map(|(name, key)| {
            let dep = apps[&key];
            ready(dep, latest(&dep.spec).as_deref())
                .err()
                .map(|why| Blocked::Waiting {
                    dependency: name.clone(),
                    why,
                })
        })
}

/// The dependency order of the apps reachable from `start` (unknown names left out:
/// they are reported where they are used).
fn reachable_order(
    start: &AppKey,
    apps: &BTreeMap<AppKey, &AppStatus>,
) -> Result<Vec<usize>, DependencyError> {
    let mut seen: Vec<AppKey> = vec![start.clone()];
    let mut todo = VecDeque::from([start.clone()]);
    while let Some(key) = todo.pop_front() {
        for dep in dependencies_of(apps[&key]) {
            if apps.contains_key(&dep) && !seen.contains(&dep) {
                seen.push(dep.clone());
                todo.push_back(dep);
            }
        }
    }
    // Shown by name within the app's namespace, else as `namespace/name`.
    let shown = |key: &AppKey| match key.namespace == start.namespace {
        true => key.name.clone(),
        false => key.to_string(),
    };
    let names: Vec<String> = seen.iter().map(shown).collect();
    let deps: Vec<Vec<String>> = seen
        .iter()
        .map(|key| {
            dependencies_of(apps[key])
                .filter(|d| apps.contains_key(d))
                .map(|d| shown(&d))
                .collect()
        })
        .collect();
    dependency_order(
        names
            .iter()
            .zip(&deps)
            .map(|(name, deps)| (name.as_str(), deps.iter().map(String::as_str))),
    )
}

/// Apps held by the gate: each with the dependency it waits for and the trigger it was
/// held with.
#[derive(Debug, Default)]
pub struct Waiting(Mutex<HashMap<AppKey, (AppKey, Trigger)>>);

impl Waiting {
    /// Holds `app` until `blocked`'s dependency is ready; an app blocked for another
    /// reason (unknown dependency, cycle) waits for a change of its own spec.
    pub fn hold(&self, app: &AppKey, blocked: &Blocked, trigger: Trigger) {
        let mut map = self.0.lock().expect("waiting");
        match blocked.dependency() {
            Some(dep) => {
                let trigger = match map.get(app) {
                    Some((_, held)) => held.stronger(trigger),
                    None => trigger,
                };
                map.insert(app.clone(), (dependency(&app.namespace, dep), trigger));
            }
            None => {
                map.remove(app);
            }
        }
    }

    /// Lets `app` go (it passed the gate).
    pub fn release(&self, app: &AppKey) {
        self.0.lock().expect("waiting").remove(app);
    }

    /// Takes the apps waiting for `dep`, with their triggers.
    fn take(&self, dep: &AppKey) -> Vec<(AppKey, Trigger)> {
        let mut map = self.0.lock().expect("waiting");
        let woken: Vec<AppKey> = map
            .iter()
            .filter(|(_, (d, _))| d == dep)
            .map(|(app, _)| app.clone())
            .collect();
        woken
            .into_iter()
            .filter_map(|app| map.remove(&app).map(|(_, trigger)| (app, trigger)))
            .collect()
    }

    /// The dependencies someone waits for.
    fn dependencies(&self) -> Vec<AppKey> {
        let map = self.0.lock().expect("waiting");
        let mut deps: Vec<AppKey> = map.values().map(|(d, _)| d.clone()).collect();
        deps.sort();
        deps.dedup();
        deps
    }
}

/// Wakes held apps until `shutdown`: whenever an app's status changes and it is ready
/// ([`ready`]), the apps waiting for it are queued at once with the trigger they were
/// held with. After missed notifications every awaited dependency is looked at.
pub async fn wake(
    store: Store,
    waiting: std::sync::Arc<Waiting>,
    queue: Queue<AppKey>,
    latest: impl Fn(&AppSpec) -> Option<String>,
    shutdown: CancellationToken,
) {
    let mut changes = store.subscribe();
    loop {
        let changed = tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = changes.recv() => changed,
        };
        let names = match changed {
            Ok(name) => vec![name],
            Err(RecvError::Lagged(_)) => waiting.dependencies(),
            Err(RecvError::Closed) => return,
        };
        for name in names {
            let Some(dep) = store.get(&name).await else {
                continue;
            };
            if ready(&dep, latest(&dep.spec).as_deref()).is_ok() {
                for (app, trigger) in waiting.take(&name) {
                    tracing::info!(%app, dependency = %name, "dependency ready");
                    queue.enqueue(app, trigger);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::queue::Action;

    fn spec(deps: &[&str]) -> AppSpec {
        AppSpec {
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            ..AppSpec::default()
        }
    }

    fn key(name: &str) -> AppKey {
        AppKey::new("ferry-system", name)
    }

    fn synced(name: &str, deps: &[&str], revision: &str, health: HealthStatus) -> AppStatus {
        let mut s = AppStatus::new(&key(name), spec(deps));
        s.sync = SyncState::Synced;
        s.revision = revision.into();
        s.health = health;
        if health == HealthStatus::Current {
            s.set_ready(Readiness::Ready, "ReconciliationSucceeded", "applied");
        } else {
            s.set_ready(Readiness::Reconciling, "Progressing", "waiting");
        }
        s
    }

    fn gate_of(app: &AppStatus, all: &[&AppStatus], latest: Option<&str>) -> Option<Blocked> {
        let apps: BTreeMap<AppKey, &AppStatus> = all.iter().map(|s| (s.key(), *s)).collect();
        let latest = latest.map(str::to_string);
        gate(app, &apps, &move |_| latest.clone())
    }

    #[test]
    fn the_gate_waits_for_synced_healthy_current_dependencies() {
        let web = AppStatus::new(&key("web"), spec(&["db"]));
        let fresh = AppStatus::new(&key("db"), spec(&[]));
        let waiting = |why| {
            Some(Blocked::Waiting {
                dependency: "db".into(),
                why,
            })
        };
        assert_eq!(gate_of(&web, &[&web, &fresh], None), waiting("not synced"));
        let progressing = synced("db", &[], "abc", HealthStatus::InProgress);
        assert_eq!(
            gate_of(&web, &[&web, &progressing], None),
            waiting("not healthy")
        );
        let mut failed = synced("db", &[], "abc", HealthStatus::Current);
        failed.set_ready(Readiness::Stalled, "ApplyFailed", "boom");
        assert_eq!(
            gate_of(&web, &[&web, &failed], None),
            waiting("not healthy")
        );
        let db = synced("db", &[], "abc", HealthStatus::Current);
        assert_eq!(
            gate_of(&web, &[&web, &db], Some("def")),
            waiting("not synced at its current revision")
        );
        assert_eq!(gate_of(&web, &[&web, &db], Some("abc")), None);
        assert_eq!(gate_of(&web, &[&web, &db], None), None);
        let mut pinned = db.clone();
        pinned.pinned = Some("abc".into());
        assert_eq!(gate_of(&web, &[&web, &pinned], Some("def")), None);

        let (message, reason) = {
            let (r, reason, m) = waiting("not healthy").unwrap().condition();
            assert_eq!(r, Readiness::Reconciling);
            (m, reason)
        };
        assert_eq!(
            (reason, message.as_str()),
            ("WaitingForDependency", "waiting for db (not healthy)")
        );
    }

    #[test]
    fn unknown_dependencies_and_cycles_stall() {
        let web = AppStatus::new(&key("web"), spec(&["db"]));
        let blocked = gate_of(&web, &[&web], None).unwrap();
        assert_eq!(blocked, Blocked::Unknown("db".into()));
        assert_eq!(
            blocked.condition(),
            (
                Readiness::Stalled,
                "DependencyNotFound",
                "depends on db, which is not an app".into()
            )
        );
        let db = synced("db", &["cache"], "abc", HealthStatus::Current);
        let cache = synced("cache", &["web"], "abc", HealthStatus::Current);
        let other = AppStatus::new(&key("other"), spec(&["nope"]));
        let blocked = gate_of(&web, &[&web, &db, &cache, &other], None).unwrap();
        assert_eq!(
            blocked.condition().2,
            "dependency cycle: web -> db -> cache -> web"
        );
    }

    /// The queue with a fake sync behind the gate, the real store and [`wake`], on a
    /// paused clock: the dependent is held while its dependency is progressing and is
    /// synced, with the trigger it was held with, as soon as the dependency is ready,
    /// long before the fallback recheck.
    #[test]
    fn dependencies_resolve_in_the_apps_namespace_unless_named() {
        let mut web = synced("web", &["db", "shared/cache"], "abc", HealthStatus::Current);
        web.app_namespace = "team-a".into();
        let mut db = synced("db", &[], "abc", HealthStatus::Current);
        db.app_namespace = "team-a".into();
        let cache = {
            let mut c = synced("cache", &[], "abc", HealthStatus::Current);
            c.app_namespace = "shared".into();
            c
        };
        let other_db = synced("db", &[], "abc", HealthStatus::Current);
        assert_eq!(
            gate_of(&web, &[&web, &other_db, &cache], None),
            Some(Blocked::Unknown("db".into())),
            "ferry-system/db is not team-a's db"
        );
        assert_eq!(gate_of(&web, &[&web, &db, &cache], None), None);
        assert_eq!(
            dependency("team-a", "shared/cache"),
            AppKey::new("shared", "cache")
        );
        let waiting = Waiting::default();
        let blocked = Blocked::Waiting {
            dependency: "db".into(),
            why: "not synced",
        };
        waiting.hold(&web.key(), &blocked, Trigger::Poll);
        assert!(
            waiting.take(&key("db")).is_empty(),
            "another namespace's db"
        );
        assert_eq!(
            waiting.take(&AppKey::new("team-a", "db")),
            [(web.key(), Trigger::Poll)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dependent_is_woken_when_its_dependency_becomes_ready() {
        let store = Store::default();
        store.upsert(&key("db"), spec(&[])).await;
        store.upsert(&key("web"), spec(&["db"])).await;
        let waiting = Arc::new(Waiting::default());
        let synced_apps: Arc<Mutex<Vec<(AppKey, Trigger)>>> = Default::default();
        let (queue, runner) = crate::queue::queue::<AppKey>();
        let shutdown = CancellationToken::new();
        let reconcile = {
            let (store, waiting, synced_apps) =
                (store.clone(), waiting.clone(), synced_apps.clone());
            move |app: AppKey, trigger: Trigger| {
                let (store, waiting, synced_apps) =
                    (store.clone(), waiting.clone(), synced_apps.clone());
                async move {
                    let status = store.get(&app).await.unwrap();
                    let all = store
                        .scan(|apps| apps.cloned().collect::<Vec<AppStatus>>())
                        .await;
                    let apps = all.iter().map(|s| (s.key(), s)).collect();
                    if let Some(blocked) = gate(&status, &apps, &|_| None) {
                        waiting.hold(&app, &blocked, trigger);
                        let (readiness, reason, message) = blocked.condition();
                        store
                            .update(&app, |s| s.set_ready(readiness, reason, &message))
                            .await;
                        return Ok::<_, crate::controller::Error>(Action::requeue(
                            DEPENDENCY_RECHECK,
                            trigger,
                        ));
                    }
                    waiting.release(&app);
                    synced_apps.lock().unwrap().push((app, trigger));
                    Ok(Action::AwaitChange)
                }
            }
        };
        let task = tokio::spawn(runner.run(1, shutdown.clone(), reconcile, |_, _, _| async {
            Action::AwaitChange
        }));
        let waker = tokio::spawn(wake(
            store.clone(),
            waiting.clone(),
            queue.clone(),
            |_| None,
            shutdown.clone(),
        ));
        let settle = || tokio::time::sleep(Duration::from_secs(1));

        queue.enqueue(key("web"), Trigger::Manual);
        settle().await;
        let web = store.get(&key("web")).await.unwrap();
        assert_eq!(web.reason(), Some("WaitingForDependency"));
        assert_eq!(
            web.conditions[0].message, "waiting for db (not synced)",
            "{:?}",
            web.conditions
        );
        assert!(synced_apps.lock().unwrap().is_empty(), "held");

        store
            .update(&key("db"), |s| {
                s.sync = SyncState::Synced;
                s.revision = "abc".into();
                s.health = HealthStatus::InProgress;
                s.set_ready(Readiness::Reconciling, "Progressing", "waiting");
            })
            .await;
        settle().await;
        assert!(synced_apps.lock().unwrap().is_empty(), "still progressing");

        store
            .update(&key("db"), |s| {
                s.health = HealthStatus::Current;
                s.set_ready(Readiness::Ready, "ReconciliationSucceeded", "applied");
            })
            .await;
        settle().await;
        assert_eq!(
            *synced_apps.lock().unwrap(),
            [(key("web"), Trigger::Manual)],
            "woken at once, with the trigger it was held with"
        );

        tokio::time::sleep(DEPENDENCY_RECHECK * 2).await;
        assert_eq!(synced_apps.lock().unwrap().len(), 1, "no second sync");
        shutdown.cancel();
        task.await.unwrap();
        waker.await.unwrap();
    }
}
