//! Git polling: one loop per repository and ref, shared by every app that uses it.
//! Each round makes a cheap remote ref check and fetches only when the SHA moved.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use ferry_model::backoff::jitter;
use ferry_model::{redact_text, redact_url};

use crate::controller::Ctx;
use crate::engine::{RepoKey, repo_key};
use crate::queue::Trigger;

/// Keeps one polling loop per repository key in use.
#[derive(Default)]
pub struct Pollers {
    loops: HashMap<RepoKey, JoinHandle<()>>,
}

impl Pollers {
    /// Starts loops for keys in use and stops loops for keys no app uses any more.
    pub async fn sync(&mut self, ctx: &Arc<Ctx>, shutdown: &CancellationToken) {
        let mut wanted: HashMap<RepoKey, Duration> = HashMap::new();
        let apps: Vec<(RepoKey, Duration)> = ctx
            .store
            .scan(|apps| {
                apps.map(|a| (repo_key(&a.spec, &ctx.projects), a.spec.poll_interval()))
                    .collect()
            })
            .await;
        // App sets' repositories, polled even while a set has no app.
        for (key, interval) in apps.into_iter().chain(ctx.appsets.keys()) {
            wanted
                .entry(key)
                .and_modify(|i| *i = (*i).min(interval))
                .or_insert(interval);
        }
        self.loops.retain(|key, handle| {
            let keep = wanted.contains_key(key);
            if !keep {
                handle.abort();
            }
            keep
        });
        for (key, interval) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.loops.entry(key) {
                let key = slot.key().clone();
                slot.insert(tokio::spawn(poll_loop(
                    ctx.clone(),
                    key,
                    interval,
                    shutdown.clone(),
                )));
            }
        }
    }
}

async fn poll_loop(ctx: Arc<Ctx>, key: RepoKey, interval: Duration, shutdown: CancellationToken) {
    let span =
        info_span!("poll", repo = %redact_url(&key.0), r#ref = key.1.as_deref().unwrap_or("HEAD"));
    async move {
        loop {
            // Interval plus up to 10 % jitter, so many repositories do not poll in step.
            let delay = interval.mul_f64(1.0 + 0.1 * jitter());
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            if !*ctx.leader.borrow() {
                continue;
            }
            let known = ctx.engine.known_revision(&key).map(|r| r.sha);
            match ctx.engine.remote_sha(&key).await {
                Ok(sha) if Some(&sha) == known.as_ref() => {
                    debug!("unchanged");
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    warn!("remote check failed: {e}");
                    continue;
                }
            }
            refresh(&ctx, &key, Trigger::Poll).await;
        }
    }
    .instrument(span)
    .await
}

/// Fetches a repository key and queues every app using it when the revision moved
/// (or always, for manual triggers). Returns how many apps were queued.
pub async fn refresh(ctx: &Arc<Ctx>, key: &RepoKey, trigger: Trigger) -> usize {
    match ctx.fetch(key).await {
        Ok((rev, changed)) => {
            // App sets of this repository follow its new revision first, so the apps
            // queued below include added directories and exclude removed ones.
            crate::appsets::fetched(ctx, key, &rev, trigger).await;
            if !changed && !matches!(trigger, Trigger::Manual | Trigger::Webhook) {
                return 0;
            }
            let apps = ctx.apps_of(key).await;
            info!(revision = %rev.short_sha(), apps = apps.len(), ?trigger, "new revision");
            for app in &apps {
                ctx.enqueue(app, trigger);
            }
            apps.len()
        }
        Err(e) => {
            warn!(repo = %redact_url(&key.0), "fetch failed: {}", redact_text(&e.to_string()));
            for app in ctx.apps_of(key).await {
                ctx.enqueue(&app, trigger);
            }
            0
        }
    }
}
