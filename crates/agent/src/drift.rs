//! Drift detection: one watch per kind in use, shared by all apps; a change to an
//! object labelled `ferry.dev/app=<name>` and `ferry.dev/app-namespace=<namespace>`
//! queues that app (an object an earlier version labelled with the name alone queues
//! every app of that name), whose reconcile then
//! compares the live object with Git (no polling of the cluster). A change to nothing
//! but the object's status (a controller reporting progress), ferry's own write, and a
//! change that leaves the fields ferry sets as the in-sync memo knows them (a
//! Deployment's controller annotating its revision; an object first seen by a list)
//! queue a health check only, which plans nothing. A change that looks like drift while
//! its app's sync is in flight (the event of the sync's own write may come before the
//! sync remembered it) is looked at again when the sync ends ([`Deferred`]). Every event also updates the objects' health kept in
//! [`crate::live::LiveHealth`], so that health check reads memory, not the API server.
//!
//! **Watch gaps.** A watch that reconnects too late to resume (its resource version is
//! gone: the API server restarted, or the agent was away too long) lists its kind
//! again, and deletions made meanwhile are never reported as such. So at the end of
//! every (re)list each app's known objects of that kind are compared with the list, and
//! an app missing one is queued for a comparison with Git ([`missing`]).
//! [`resync`] queues every app for that comparison periodically as well
//! (`--resync-interval`), cheap thanks to the in-sync memo.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use ferry_engine::plan::Owner;
use ferry_kube::WatchEvent;
use ferry_model::{APP_LABEL, AppKey, ObjectRef};
use ferry_plan::diff::without_write_stamps;
use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::controller::Ctx;
use crate::queue::{Queue, Trigger};
use crate::state::{AppStatus, Store};

/// The default of `--resync-interval`: how often every app is compared with Git even
/// when nothing was seen to change.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(600);

/// The kinds being watched: (group, kind) → the watch task.
#[derive(Default)]
pub struct Watches {
    kinds: HashMap<(String, String), JoinHandle<()>>,
}

impl Watches {
    /// Makes sure each object's kind is watched.
    pub async fn ensure(
        &mut self,
        ctx: &Arc<Ctx>,
        objects: &[ObjectRef],
        shutdown: &CancellationToken,
    ) {
        for o in objects {
            let key = (o.group.clone(), o.kind.clone());
            if self.kinds.contains_key(&key) {
                continue;
            }
            let resolved = match ctx.engine.cluster.resolve(&o.api_version(), &o.kind).await {
                Ok(r) => r,
                Err(e) => {
                    warn!("cannot watch {}: {e}", o.kind);
                    continue;
                }
            };
            let stream = ctx.engine.cluster.watch(&resolved, APP_LABEL);
            let ctx = ctx.clone();
            let shutdown = shutdown.clone();
            let (group, kind) = key.clone();
            let handle = tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                let mut seen = Fingerprints::default();
                // The keys listed by a (re)list in progress.
                let mut listing: Option<HashSet<String>> = None;
                loop {
                    let event = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        e = stream.next() => e,
                    };
                    let Some(event) = event else { return };
                    // A deletion is drift even during the app's sync.
                    let (object, trigger, deletion) = match event {
                        Ok(WatchEvent::Changed(o)) => {
                            if let Some(listed) = &mut listing {
                                listed.insert(object_key(&o));
                            }
                            ctx.live.changed(&o);
                            let trigger = match seen.changed(&o) {
                                // A sync's own write, or changes a plan would not see
                                // (its controller's annotations): only health.
                                Trigger::Drift
                                    if own_write(&ctx, &o)
                                        || ctx.engine.in_sync.vouches_for(&o) =>
                                {
                                    Trigger::Health
                                }
                                trigger => trigger,
                            };
                            (o, trigger, false)
                        }
                        Ok(WatchEvent::Deleted(o)) => {
                            ctx.live.deleted(&o);
                            seen.deleted(&o);
                            (o, Trigger::Drift, true)
                        }
                        Ok(WatchEvent::Relisting) => {
                            ctx.live.relisting(&group, &kind);
                            listing = Some(HashSet::new());
                            continue;
                        }
                        Ok(WatchEvent::Resynced) => {
                            ctx.live.listed(&group, &kind);
                            let listed = listing.take().unwrap_or_default();
                            seen.retain(&listed);
                            let apps = ctx
                                .store
                                .scan(|apps| missing(apps, &group, &kind, &listed))
                                .await;
                            debug!(%kind, objects = listed.len(), "listed");
                            for app in apps {
                                info!(%kind, %app, "an object is missing after a relist: comparing with Git");
                                ctx.enqueue(&app, Trigger::Drift);
                            }
                            continue;
                        }
                        Err(e) => {
                            warn!(%kind, "watch error: {e}");
                            continue;
                        }
                    };
                    let Some(owner) = Owner::of(&object) else {
                        continue;
                    };
                    let apps = match owner.namespace {
                        Some(namespace) => vec![AppKey::new(namespace, owner.name)],
                        None => (ctx.store.names().await.into_iter())
                            .filter(|k| k.name == owner.name)
                            .collect(),
                    };
                    for app in &apps {
                        if trigger == Trigger::Health && ctx.check_health_now(app).await {
                            continue;
                        }
                        if trigger == Trigger::Drift
                            && !deletion
                            && ctx.deferred.defer(app, &object)
                        {
                            debug!(%kind, %app, "live change during the app's sync: deferred");
                            continue;
                        }
                        if ctx.store.get(app).await.is_some() {
                            debug!(%kind, %app, ?trigger, "live change");
                            ctx.enqueue(app, trigger);
                        }
                    }
                }
            });
            self.kinds.insert(key, handle);
        }
    }
}

/// The apps with an object of `(group, kind)` they last synced or observed that a
/// complete list of that kind (`listed`, by [`ObjectRef::key`]) does not name: it was
/// deleted while the watch was away.
fn missing(
    apps: &mut dyn Iterator<Item = &AppStatus>,
    group: &str,
    kind: &str,
    listed: &HashSet<String>,
) -> Vec<AppKey> {
    apps.filter(|a| {
        a.objects.iter().any(|o| {
            o.subject.group == group && o.subject.kind == kind && !listed.contains(&o.subject.key())
        })
    })
    .map(|a| a.key())
    .collect()
}

/// Queues every app of `store` for a comparison with Git every `interval`, until
/// `shutdown` (the first time one interval after the start).
pub async fn resync(
    store: Store,
    queue: Queue<AppKey>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let names = store.names().await;
        debug!(apps = names.len(), "periodic resync");
        for app in names {
            queue.enqueue(app, Trigger::Drift);
        }
    }
}

/// Changes that looked like drift while their app's sync was in flight, kept (the latest
/// of each object) until it ends: the watch event of a sync's write can arrive before
/// the sync has remembered the write, and the change of a controller reacting to it
/// before the memo can vouch for it. When the sync ends they are looked at again
/// ([`syncing`]).
#[derive(Default)]
pub struct Deferred(std::sync::Mutex<HashMap<AppKey, HashMap<String, Value>>>);

impl Deferred {
    /// Keeps `object` for when `app`'s sync in flight ends; false when none is.
    pub fn defer(&self, app: &AppKey, object: &Value) -> bool {
        let mut syncing = self.0.lock().expect("deferred changes");
        let Some(objects) = syncing.get_mut(app) else {
            return false;
        };
        objects.insert(object_key(object), object.clone());
        true
    }
}

/// `app`'s sync is in flight until the returned guard is dropped; then the changes
/// deferred meanwhile queue a comparison with Git when one of them is neither the
/// sync's own write nor vouched for by the memo, else a health check.
pub fn syncing<'a>(ctx: &'a Ctx, app: &'a AppKey) -> Syncing<'a> {
    (ctx.deferred.0.lock().expect("deferred changes")).insert(app.clone(), HashMap::new());
    Syncing { ctx, app }
}

/// See [`syncing`].
pub struct Syncing<'a> {
    ctx: &'a Ctx,
    app: &'a AppKey,
}

impl Drop for Syncing<'_> {
    fn drop(&mut self) {
        let deferred = (self.ctx.deferred.0.lock().expect("deferred changes")).remove(self.app);
        let Some(objects) = deferred.filter(|o| !o.is_empty()) else {
            return;
        };
        let drifted = objects
            .values()
            .any(|o| !own_write(self.ctx, o) && !self.ctx.engine.in_sync.vouches_for(o));
        let trigger = if drifted {
            Trigger::Drift
        } else {
            Trigger::Health
        };
        debug!(app = %self.app, objects = objects.len(), ?trigger, "deferred live changes");
        self.ctx.enqueue(self.app, trigger);
    }
}

/// Whether `object` is, at its resourceVersion, as a sync of ferry wrote it.
fn own_write(ctx: &Ctx, object: &Value) -> bool {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| (ctx.engine.in_sync).wrote(&ferry_kube::object_ref(object), v))
}

/// The last seen fingerprint of each object of one kind, to tell a status-only change
/// from an edit.
#[derive(Default)]
struct Fingerprints(HashMap<String, u64>);

impl Fingerprints {
    /// [`Trigger::Health`] when only the object's status (or bookkeeping such as its
    /// resourceVersion and managedFields) changed since it was last seen; otherwise
    /// [`Trigger::Drift`], also for an object seen for the first time.
    fn changed(&mut self, object: &Value) -> Trigger {
        let print = fingerprint(object);
        match self.0.insert(object_key(object), print) {
            Some(previous) if previous == print => Trigger::Health,
            _ => Trigger::Drift,
        }
    }

    fn deleted(&mut self, object: &Value) {
        self.0.remove(&object_key(object));
    }

    /// Forgets the objects a complete list (`listed`, by [`ObjectRef::key`]) did not name.
    fn retain(&mut self, listed: &HashSet<String>) {
        self.0.retain(|k, _| listed.contains(k));
    }
}

/// The object's [`ObjectRef::key`].
fn object_key(object: &Value) -> String {
    ferry_kube::object_ref(object).key()
}

/// A hash of everything but the status and the fields the API server changes on every
/// write.
fn fingerprint(object: &Value) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    without_write_stamps(object).to_string().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::{AppSpec, Health, HealthStatus};
    use serde_json::json;

    fn key(name: &str) -> AppKey {
        AppKey::new("ferry-system", name)
    }

    fn app(name: &str, objects: &[ObjectRef]) -> AppStatus {
        let mut status = AppStatus::new(&key(name), AppSpec::default());
        status.objects = objects
            .iter()
            .map(|subject| crate::state::ObjectStatus {
                subject: subject.clone(),
                health: Health::new(HealthStatus::Current, ""),
            })
            .collect();
        status
    }

    #[test]
    fn a_relist_missing_an_object_names_its_app_only() {
        let cm = |name: &str| ObjectRef::new("v1", "ConfigMap", Some("ns"), name);
        let deploy = ObjectRef::new("apps/v1", "Deployment", Some("ns"), "gone");
        let apps = [
            app("a", &[cm("a1"), cm("a2")]),
            app("b", &[cm("b1"), deploy.clone()]),
            app("fresh", &[]),
        ];
        let listed: HashSet<String> = [cm("a1").key(), cm("b1").key()].into();
        let missing_of = |kind: &str, group: &str| missing(&mut apps.iter(), group, kind, &listed);
        assert_eq!(
            missing_of("ConfigMap", ""),
            [key("a")],
            "a2 was deleted meanwhile"
        );
        assert_eq!(
            missing_of("Deployment", "apps"),
            [key("b")],
            "only the relisted kind counts"
        );
        let everything: HashSet<String> = [cm("a1").key(), cm("a2").key(), cm("b1").key()].into();
        assert!(missing(&mut apps.iter(), "", "ConfigMap", &everything).is_empty());
    }

    /// The resync timer with tokio's paused clock: every app once per interval, none
    /// before the first interval, none after shutdown.
    #[tokio::test(start_paused = true)]
    async fn resync_queues_every_app_each_interval() {
        let store = Store::default();
        store.upsert(&key("a"), AppSpec::default()).await;
        store.upsert(&key("b"), AppSpec::default()).await;
        let (queue, runner) = crate::queue::queue::<AppKey>();
        let runs: Arc<std::sync::Mutex<Vec<(AppKey, Trigger)>>> = Default::default();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let runs = runs.clone();
            runner.run(
                1,
                shutdown.clone(),
                move |app: AppKey, trigger| {
                    let runs = runs.clone();
                    async move {
                        runs.lock().unwrap().push((app, trigger));
                        Ok::<_, crate::controller::Error>(crate::queue::Action::AwaitChange)
                    }
                },
                |_, _, _| async { crate::queue::Action::AwaitChange },
            )
        });
        let interval = Duration::from_secs(600);
        let timer = tokio::spawn(resync(store, queue, interval, shutdown.clone()));
        tokio::time::sleep(Duration::from_secs(599)).await;
        assert!(runs.lock().unwrap().is_empty(), "not before the interval");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let drift = |app: &str| (key(app), Trigger::Drift);
        assert_eq!(*runs.lock().unwrap(), [drift("a"), drift("b")]);
        tokio::time::sleep(interval).await;
        assert_eq!(runs.lock().unwrap().len(), 4, "once more per interval");
        shutdown.cancel();
        timer.await.unwrap();
        task.await.unwrap();
    }

    #[test]
    fn status_only_changes_ask_for_a_health_check() {
        let mut seen = Fingerprints::default();
        let deploy = |replicas: u64, ready: u64, rv: &str| {
            json!({
                "metadata": {"name": "web", "namespace": "ns", "resourceVersion": rv,
                             "managedFields": [{"manager": rv}]},
                "spec": {"replicas": replicas},
                "status": {"readyReplicas": ready},
            })
        };
        assert_eq!(
            seen.changed(&deploy(1, 0, "1")),
            Trigger::Drift,
            "first sight"
        );
        assert_eq!(seen.changed(&deploy(1, 1, "2")), Trigger::Health);
        assert_eq!(
            seen.changed(&deploy(3, 1, "3")),
            Trigger::Drift,
            "spec edited"
        );
        assert_eq!(seen.changed(&deploy(3, 1, "4")), Trigger::Health);
        let mut other = deploy(3, 1, "5");
        other["metadata"]["name"] = json!("api");
        assert_eq!(seen.changed(&other), Trigger::Drift, "another object");
        let mut labelled = deploy(3, 1, "6");
        labelled["metadata"]["labels"] = json!({"x": "y"});
        assert_eq!(seen.changed(&labelled), Trigger::Drift, "metadata edited");
        seen.deleted(&labelled);
        assert_eq!(seen.changed(&labelled), Trigger::Drift, "re-created");
    }
}
