//! Pull mode: `ferry agent` reconciles apps continuously.
//!
//! Triggers — a Git poll per repository ([`poller`]), push webhooks ([`api`]), live
//! changes seen by one watch per kind ([`drift`]), API actions — feed one work queue
//! ([`queue`]) whose reconciler ([`controller`]) runs the same engine as `ferry apply`
//! ([`engine`]). Status lives in [`state::Store`]; history in a redb file ([`history`]),
//! metrics ([`metrics`]), Events and notifications ([`notify`]) go through [`record`].
//! With leader election only the lease holder reconciles.

pub mod api;
pub mod applications;
pub mod appsets;
pub mod controller;
pub mod crd;
pub mod deps;
pub mod drift;
pub mod engine;
pub mod history;
pub mod kept;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod poller;
pub mod projects;
pub mod queue;
pub mod record;
pub mod state;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_engine::source::ClusterFacts;
use ferry_kube::Cluster;
use ferry_model::{Backoff, FerryFile};
use ferry_render::Tools;
use ferry_source::GitCache;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::history::History;
use crate::queue::Trigger;

/// The retry of loading the kept suspensions and pins on taking the lease: 1 s × 2ⁿ, at
/// most 30 s.
pub const KEPT_RETRY: Backoff = Backoff::new(Duration::from_secs(1), 2, Duration::from_secs(30));

/// How long the agent's Lease lasts: the leader renews it every third of that and stops
/// leading when two thirds passed without a renewal; a standby takes over when it saw no
/// renewal for that long.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);

/// An error that stops the agent from starting.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The apps file is invalid.
    #[error(transparent)]
    Spec(#[from] ferry_model::SpecError),
    /// The cluster is unreachable or refused.
    #[error(transparent)]
    Kube(#[from] ferry_kube::KubeError),
    /// The history store cannot be opened.
    #[error(transparent)]
    History(#[from] history::HistoryError),
    /// The listen address is in use or invalid.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How to run the agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The `ferry.yaml` listing apps, if any.
    pub apps_file: Option<PathBuf>,
    /// Also take apps from `Application` resources: `Some(None)` in all namespaces,
    /// `Some(Some(ns))` in one.
    pub applications: Option<Option<String>>,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Directory for the history store.
    pub data_dir: PathBuf,
    /// Git mirror cache.
    pub git_cache: PathBuf,
    /// kubeconfig context.
    pub context: Option<String>,
    /// Webhook secret (HMAC key or token).
    pub webhook_secret: Option<String>,
    /// Reconciles running at once.
    pub concurrency: usize,
    /// Longest one sync may take.
    pub sync_timeout: Duration,
    /// Longest one ordinary API request may take ([`Cluster::connect_with_timeout`]).
    pub kube_timeout: Duration,
    /// Longest one Git fetch may take ([`GitCache::with_timeout`]).
    pub git_timeout: Duration,
    /// How often every app is compared with Git regardless of changes
    /// ([`drift::resync`]); zero: never.
    pub resync_interval: Duration,
    /// Lease namespace for leader election; `None` = no election (single agent).
    pub lease_namespace: Option<String>,
    /// This agent's identity in the lease.
    pub identity: String,
    /// The dashboard's public base URL, which notifications link to.
    pub dashboard_url: Option<String>,
}

/// Runs the agent until `shutdown` is cancelled (SIGTERM/SIGINT in the binary).
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    run_with(config, shutdown, |_, router| router).await
}

/// Runs the agent like [`run`], serving `routes(api, router)` instead of the agent's own
/// `router`: the hook through which `ferry-web` adds the dashboard and wraps every route
/// in its authentication.
pub async fn run_with(
    config: AgentConfig,
    shutdown: CancellationToken,
    routes: impl FnOnce(api::Api, axum::Router) -> axum::Router,
) -> Result<(), AgentError> {
    let file = match &config.apps_file {
        Some(path) => FerryFile::load(path)?,
        None => FerryFile::default(),
    };
    let cluster =
        Cluster::connect_with_timeout(config.context.as_deref(), config.kube_timeout).await?;
    let (kube_version, api_versions) = cluster.facts().await?;
    let metrics = Arc::new(metrics::Metrics::new());
    let history =
        History::open(&config.data_dir)?.count_corrupt_entries(metrics.history_corrupt_entries());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: config.listen,
            source,
        })?;

    let leader = leader(&cluster, &config, &file).await?;
    let store = state::Store::default();
    for app in &file.apps {
        store.upsert(&file.key(&app.name), app.spec.clone()).await;
    }
    let (notifier, jobs) = notify::Notifier::new(
        file.notifications.clone(),
        config.dashboard_url.clone(),
        metrics.clone(),
    );
    tokio::spawn(notify::deliver(
        jobs,
        cluster.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let record = record::Record {
        history,
        metrics,
        applications: applications::Applications::new(&cluster, &config.identity),
        notifier,
    };
    let facts = ClusterFacts {
        kube_version: Some(kube_version),
        api_versions,
    };
    let (ctx, runner) = controller::context(controller::Parts {
        engine: engine::Engine::new(
            cluster,
            facts,
            GitCache::new(&config.git_cache).with_timeout(config.git_timeout),
            Tools::discover(),
        ),
        store,
        record,
        sync_timeout: config.sync_timeout,
        projects: projects::Projects::new(file.projects.clone()),
        leader: leader.clone(),
        shutdown: shutdown.clone(),
        apps_namespace: file.namespace.clone(),
    });

    if config.applications.is_some() {
        // Before the first repository keys are made: they hold projects' credentials.
        projects::load(&ctx).await;
    }
    appsets::start(&ctx, file.app_sets.clone()).await;
    ctx.pollers.lock().await.sync(&ctx, &shutdown).await;
    if let Some(namespace) = config.applications.clone() {
        tokio::spawn(applications::watch(
            ctx.clone(),
            namespace,
            shutdown.clone(),
        ));
        tokio::spawn(applications::write_statuses(ctx.clone(), shutdown.clone()));
        tokio::spawn(projects::watch(ctx.clone(), shutdown.clone()));
    }
    tokio::spawn(deps::wake(
        ctx.store.clone(),
        ctx.waiting.clone(),
        ctx.queue.clone(),
        {
            let ctx = ctx.clone();
            move |spec| {
                ctx.engine
                    .known_revision(&engine::repo_key(spec, &ctx.projects))
                    .map(|rev| rev.sha)
            }
        },
        shutdown.clone(),
    ));
    tokio::spawn(on_leadership(ctx.clone(), leader, shutdown.clone()));
    if !config.resync_interval.is_zero() {
        tokio::spawn(drift::resync(
            ctx.store.clone(),
            ctx.queue.clone(),
            config.resync_interval,
            shutdown.clone(),
        ));
    }

    let api = api::Api {
        ctx: ctx.clone(),
        webhook_secret: config
            .webhook_secret
            .as_ref()
            .map(|s| Arc::from(s.as_bytes())),
    };
    let app = routes(api.clone(), api::router(api));
    info!(addr = %config.listen, apps = file.apps.len(), "agent listening");
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });
    let runner = runner.with_gauges(ctx.record.metrics.queue_gauges());
    controller::run(ctx, runner, config.concurrency.max(1)).await;
    if let Ok(Err(e)) = server.await {
        warn!("http server: {e}");
    }
    info!("agent stopped");
    Ok(())
}

/// A leadership flag: always true without election, else driven by the Lease.
/// The leadership flag, driven by a Lease: with `--leader-elect-namespace`, Lease
/// `ferry-agent` there (several agents, one leader); without it, Lease
/// [`solo_lease`] in `ferry-system`, so that a second agent started for the same apps
/// on the same cluster stands by and says who holds it instead of fighting the first.
async fn leader(
    cluster: &Cluster,
    config: &AgentConfig,
    file: &FerryFile,
) -> Result<watch::Receiver<bool>, AgentError> {
    let (namespace, name) = match &config.lease_namespace {
        Some(ns) => (ns.clone(), "ferry-agent".to_string()),
        None => (
            ferry_model::SYSTEM_NAMESPACE.to_string(),
            solo_lease(file, config.applications.as_ref()),
        ),
    };
    Ok(cluster
        .lead(&namespace, &name, &config.identity, LEASE_DURATION)
        .await?)
}

/// The Lease of an agent without leader election: `ferry-agent-<hash>`, the hash over
/// the names of its apps and app sets and the namespace of its `Application`s, so that
/// agents of the same apps share it and agents of other apps do not.
pub fn solo_lease(file: &FerryFile, applications: Option<&Option<String>>) -> String {
    use sha2::{Digest, Sha256};
    let mut names: Vec<String> = file
        .apps
        .iter()
        .map(|a| format!("app:{}", a.name))
        .collect();
    names.extend(file.app_sets.iter().map(|s| format!("set:{}", s.name)));
    if let Some(namespace) = applications {
        names.push(format!(
            "applications:{}",
            namespace.as_deref().unwrap_or("*")
        ));
    }
    names.sort();
    let digest = Sha256::digest(names.join("\n").as_bytes());
    format!("ferry-agent-{}", &hex::encode(digest)[..12])
}

/// Queues every app whenever this agent becomes the leader (at start, too).
async fn on_leadership(
    ctx: Arc<controller::Ctx>,
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    loop {
        let leading = *leader.borrow_and_update();
        ctx.record.metrics.leader(leading);
        if leading {
            info!("leading: reconciling all apps");
            // Suspensions and pins first: nothing is reconciled before they are known.
            let mut attempts = 0;
            while let Err(e) = kept::load(&ctx).await {
                attempts += 1;
                let wait = KEPT_RETRY.delay(attempts);
                warn!("cannot read the kept suspensions and pins, retrying in {wait:?}: {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            for app in ctx.store.names().await {
                ctx.enqueue(&app, Trigger::Startup);
            }
        } else {
            info!("standing by: another agent holds the lease");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = leader.changed() => if changed.is_err() { return },
        }
    }
}
