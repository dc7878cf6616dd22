//! App sets in the agent: a set's apps follow the directories of its repository.
//!
//! At start ([`start`]) and whenever the set's repository is fetched at a new revision
//! ([`fetched`], called by [`crate::poller::refresh`]), the set is expanded again: new
//! directories become apps in the store and are queued, vanished ones are removed from
//! the store and queued once more so that their removal is finished ([`finalize`]) by the
//! work queue, which never runs it alongside a reconcile of the same app. A removed app of
//! a set with `pruneOnRemove` then has its objects deleted — those in its inventory that
//! still carry its `ferry.dev/app` label and are not annotated `ferry.dev/prune: disabled`
//! — and its inventory with them; otherwise its objects stay and the app is forgotten.
//!
//! A set that fails to expand (unreachable repository, an invalid generated name) keeps
//! the apps it had: nothing is removed on an error.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_engine::Sync;
use ferry_engine::appset::expand_set;
use ferry_engine::progress::Silent;
use ferry_model::{AppKey, AppSet, Backoff, NamedApp, redact_text, redact_url};
use ferry_source::Revision;
use tracing::{info, warn};

use crate::controller::{Ctx, Error};
use crate::engine::{RepoKey, repo_key};
use crate::queue::{Action, Trigger};

/// The retry of a set whose expansion failed transiently: every 30 s.
pub const EXPAND_RETRY: Backoff = Backoff::constant(Duration::from_secs(30));

/// The retry of deleting the objects of an app removed from its set: 10 s × 2ⁿ, at most
/// 160 s.
pub const PRUNE_RETRY: Backoff = Backoff::new(Duration::from_secs(10), 2, Duration::from_secs(160));

/// The agent's app sets and the apps each one generated.
#[derive(Default)]
pub struct AppSets {
    /// Per set: its definition, the revision last expanded and its apps. Held while a
    /// set is expanded, so expansions of one set never interleave.
    sets: tokio::sync::Mutex<Vec<SetState>>,
    /// The sets' repository keys and poll intervals (fixed after [`start`]).
    keys: Mutex<Vec<(RepoKey, Duration)>>,
    /// Apps removed from their set whose removal is not finished: app → whether its
    /// objects are deleted.
    removed: Mutex<HashMap<AppKey, bool>>,
}

struct SetState {
    set: AppSet,
    key: RepoKey,
    /// The revision last expanded (successfully, or with a permanent error).
    sha: Option<String>,
    apps: BTreeSet<String>,
}

impl AppSets {
    /// The repository keys the sets need polled, with their intervals: polled even while
    /// a set has no app, so that a first directory is noticed.
    pub fn keys(&self) -> Vec<(RepoKey, Duration)> {
        self.keys.lock().expect("app set keys").clone()
    }
}

/// Registers the file's sets and expands each at its repository's current revision.
pub async fn start(ctx: &Arc<Ctx>, sets: Vec<AppSet>) {
    if sets.is_empty() {
        return;
    }
    let mut states = Vec::with_capacity(sets.len());
    let mut keys = Vec::with_capacity(sets.len());
    for set in sets {
        let key = repo_key(&set.template.spec);
        keys.push((key.clone(), set.template.spec.poll_interval()));
        states.push(SetState {
            set,
            key,
            sha: None,
            apps: BTreeSet::new(),
        });
    }
    *ctx.appsets.keys.lock().expect("app set keys") = keys.clone();
    *ctx.appsets.sets.lock().await = states;
    let mut fetched_keys: Vec<RepoKey> = Vec::new();
    for (key, _) in keys {
        if fetched_keys.contains(&key) {
            continue;
        }
        match ctx.fetch(&key).await {
            Ok((rev, _)) => fetched(ctx, &key, &rev, Trigger::Startup).await,
            Err(e) => {
                warn!(repo = %redact_url(&key.0), "app sets: fetch failed: {}; retrying on the next poll", redact_text(&e.to_string()))
            }
        }
        fetched_keys.push(key);
    }
}

/// Re-expands the sets of the repository `key` that were not expanded at `rev` yet.
/// Called whenever `key` was fetched. A transient failure (e.g. a checkout I/O error) is
/// retried in the background ([`EXPAND_RETRY`]) until it succeeds or fails for good.
pub async fn fetched(ctx: &Arc<Ctx>, key: &RepoKey, rev: &Revision, trigger: Trigger) {
    if !expand(ctx, key, rev, trigger).await {
        return;
    }
    let (ctx, key, rev) = (ctx.clone(), key.clone(), rev.clone());
    tokio::spawn(async move {
        for attempt in 1.. {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(EXPAND_RETRY.delay(attempt)) => {}
            }
            if !expand(&ctx, &key, &rev, trigger).await {
                return;
            }
        }
    });
}

/// One expansion round of the sets of `key` at `rev`; true when one should be retried.
async fn expand(ctx: &Arc<Ctx>, key: &RepoKey, rev: &Revision, trigger: Trigger) -> bool {
    let mut sets = ctx.appsets.sets.lock().await;
    let mut retry = false;
    for state in sets
        .iter_mut()
        .filter(|s| s.key == *key && s.sha.as_deref() != Some(rev.sha.as_str()))
    {
        let name = state.set.name.clone();
        let expanded = match ctx.engine.git_for(&key.2).await {
            Ok(git) => expand_set(&git, &state.set, Some(&rev.sha)).await,
            Err(e) => Err(e),
        };
        match expanded {
            Ok(expanded) => {
                state.sha = Some(rev.sha.clone());
                reconcile_set(ctx, state, expanded.apps, trigger).await;
            }
            Err(e) if e.is_transient() => {
                warn!(set = %name, revision = %rev.short_sha(), "app set: {e}; retrying in 30 s");
                retry = true;
            }
            Err(e) => {
                // Permanent until the next commit: keep the set's apps as they are.
                state.sha = Some(rev.sha.clone());
                warn!(set = %name, revision = %rev.short_sha(), "app set not expanded, its apps are kept: {e}");
            }
        }
    }
    retry
}

/// Brings the store in line with a set's newly expanded apps. (Every app of a set has
/// the set's repository, which is polled from the start: the pollers need no change.)
async fn reconcile_set(
    ctx: &Arc<Ctx>,
    state: &mut SetState,
    apps: Vec<NamedApp>,
    trigger: Trigger,
) {
    let set = state.set.name.clone();
    let mut keep = BTreeSet::new();
    let key = |name: &str| AppKey::new(&ctx.apps_namespace, name);
    for app in apps {
        let existing = ctx.store.get(&key(&app.name)).await;
        if existing.is_some() && !state.apps.contains(&app.name) {
            warn!(%set, app = %app.name, "app set: an app of that name exists already; not generating it");
            continue;
        }
        ctx.appsets
            .removed
            .lock()
            .expect("removed apps")
            .remove(&key(&app.name));
        keep.insert(app.name.clone());
        if existing.is_some_and(|s| s.spec == app.spec) {
            continue;
        }
        if !state.apps.contains(&app.name) {
            info!(%set, app = %app.name, path = %app.spec.source.path, "app set: app added");
        }
        ctx.store.upsert(&key(&app.name), app.spec).await;
        ctx.enqueue(&key(&app.name), trigger);
    }
    for gone in state.apps.difference(&keep) {
        let gone = &key(gone);
        info!(%set, app = %gone, prune = state.set.prune_on_remove, "app set: directory gone, app removed");
        ctx.store.remove(gone).await;
        crate::kept::forget(ctx, gone).await;
        ctx.record.metrics.remove_app(gone);
        ctx.record.notifier.forget(gone);
        ctx.forget_failures(gone);
        ctx.appsets
            .removed
            .lock()
            .expect("removed apps")
            .insert(gone.clone(), state.set.prune_on_remove);
        // The work queue runs `finalize` once no reconcile of the app is in flight.
        ctx.enqueue(gone, trigger);
    }
    state.apps = keep;
}

/// Finishes the removal of an app that left its set, if `app` is one: with
/// `pruneOnRemove`, deletes its objects and inventory; a failure is an error, retried by
/// the error policy ([`PRUNE_RETRY`]) unless the app's directory came back meanwhile.
/// Called by a reconcile of an app the store does not have.
pub async fn finalize(ctx: &Arc<Ctx>, app: &AppKey) -> Result<Action, Error> {
    let Some(prune) = ctx
        .appsets
        .removed
        .lock()
        .expect("removed apps")
        .remove(app)
    else {
        return Ok(Action::AwaitChange);
    };
    if !prune {
        info!(%app, "app removed from its set; its objects are kept");
        return Ok(Action::AwaitChange);
    }
    match Sync::remove(&ctx.engine.cluster, app, &Silent).await {
        Ok(deleted) => {
            info!(%app, objects = deleted, "app removed from its set; its objects were deleted");
            Ok(Action::AwaitChange)
        }
        Err(e) if ctx.store.get(app).await.is_some() => {
            warn!(%app, "deleting the objects of a removed app failed: {e}; its directory came back");
            Ok(Action::AwaitChange)
        }
        Err(e) => {
            ctx.appsets
                .removed
                .lock()
                .expect("removed apps")
                .entry(app.clone())
                .or_insert(true);
            Err(Error::Prune(e))
        }
    }
}
