//! Prometheus metrics of the agent, exposed in the OpenMetrics text format.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `ferry_reconcile_duration_seconds` | histogram | `app`, `namespace` |
//! | `ferry_sync_total` | counter | `app`, `namespace`, `result` |
//! | `ferry_app_info` | gauge (always 1) | `app`, `namespace`, `sync`, `health`, `revision` |
//! | `ferry_drift_detected_total` | counter | `app`, `namespace` |
//! | `ferry_git_fetch_duration_seconds` | histogram | `repo` |
//! | `ferry_git_fetch_errors_total` | counter | `repo` |
//! | `ferry_leader` | gauge (1 leading, 0 standing by) | |
//! | `ferry_webhook_requests_total` | counter | `provider`, `result` |
//! | `ferry_history_corrupt_entries_total` | counter | |
//! | `ferry_queue_depth` | gauge (apps queued, waiting to start) | |
//! | `ferry_queue_in_flight` | gauge (apps being reconciled) | |
//! | `ferry_queue_scheduled` | gauge (apps with a pending timer: retry, requeue) | |
//! | `ferry_notifications_total` | counter | `receiver`, `type`, `event`, `result` |
//!
//! `app` and `namespace` are the app's name and namespace (its [`AppKey`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use ferry_model::AppKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
    namespace: String,
}

impl From<&AppKey> for AppLabels {
    fn from(key: &AppKey) -> Self {
        Self {
            app: key.name.clone(),
            namespace: key.namespace.clone(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    app: String,
    namespace: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    app: String,
    namespace: String,
    sync: String,
    health: String,
    revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepoLabels {
    repo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    receiver: String,
    r#type: String,
    event: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    provider: String,
    result: String,
}

/// The label set of an unlabelled family (whose series appears once created).
type NoLabels = [(&'static str, &'static str); 0];

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Reconcile durations: 0.1 s to about 3.4 min.
fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 12))
}

/// Git fetch durations: 0.05 s to about 1.7 min.
fn fetch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

/// The label sets an app currently has, so they can be replaced or removed.
#[derive(Debug, Default)]
struct AppSeries {
    info: Option<InfoLabels>,
    results: BTreeSet<String>,
}

/// The work queue's sizes, set by its runner after every change; unregistered (exported
/// nowhere) unless made by [`Metrics::queue_gauges`].
#[derive(Clone, Debug, Default)]
pub struct QueueGauges {
    depth: Gauge,
    in_flight: Gauge,
    scheduled: Gauge,
}

impl QueueGauges {
    /// Sets the three gauges: keys waiting to start, keys in flight, keys with a timer.
    pub fn set(&self, depth: usize, in_flight: usize, scheduled: usize) {
        let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.depth.set(to_i64(depth));
        self.in_flight.set(to_i64(in_flight));
        self.scheduled.set(to_i64(scheduled));
    }

    /// The gauges' values: waiting, in flight, scheduled.
    #[cfg(test)]
    pub(crate) fn get(&self) -> (i64, i64, i64) {
        (self.depth.get(), self.in_flight.get(), self.scheduled.get())
    }
}

/// The agent's metrics. `Send + Sync`: share one behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histograms<AppLabels>,
    syncs: Family<SyncLabels, Counter>,
    app_info: Family<InfoLabels, Gauge>,
    drift: Family<AppLabels, Counter>,
    git_fetch: Histograms<RepoLabels>,
    git_fetch_errors: Family<RepoLabels, Counter>,
    leader: Family<NoLabels, Gauge>,
    webhooks: Family<WebhookLabels, Counter>,
    history_corrupt: Family<NoLabels, Counter>,
    queue_depth: Family<NoLabels, Gauge>,
    queue_in_flight: Family<NoLabels, Gauge>,
    queue_scheduled: Family<NoLabels, Gauge>,
    notifications: Family<NotificationLabels, Counter>,
    apps: Mutex<HashMap<AppKey, AppSeries>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family. A family appears in [`Metrics::encode`] once it has a series.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconcile_duration =
            Histograms::<AppLabels>::new_with_constructor(reconcile_histogram as fn() -> _);
        registry.register_with_unit(
            "ferry_reconcile_duration",
            "Duration of reconciles of an app",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let syncs = Family::<SyncLabels, Counter>::default();
        registry.register(
            "ferry_sync",
            "Syncs of an app by result (success, failure)",
            syncs.clone(),
        );
        let app_info = Family::<InfoLabels, Gauge>::default();
        registry.register(
            "ferry_app_info",
            "Current sync status, health and revision of an app (always 1)",
            app_info.clone(),
        );
        let drift = Family::<AppLabels, Counter>::default();
        registry.register(
            "ferry_drift_detected",
            "Times live objects of an app were found to differ from Git",
            drift.clone(),
        );
        let git_fetch =
            Histograms::<RepoLabels>::new_with_constructor(fetch_histogram as fn() -> _);
        registry.register_with_unit(
            "ferry_git_fetch_duration",
            "Duration of Git fetches of a repository",
            Unit::Seconds,
            git_fetch.clone(),
        );
        let git_fetch_errors = Family::<RepoLabels, Counter>::default();
        registry.register(
            "ferry_git_fetch_errors",
            "Failed Git fetches of a repository (unreachable, refused, timed out)",
            git_fetch_errors.clone(),
        );
        let leader = Family::<NoLabels, Gauge>::default();
        registry.register(
            "ferry_leader",
            "1 while this agent reconciles (holds the Lease, or runs without election), else 0",
            leader.clone(),
        );
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "ferry_webhook_requests",
            "Webhook requests by provider and result (accepted, unauthorized, bad_request, ignored)",
            webhooks.clone(),
        );
        let history_corrupt = Family::<NoLabels, Counter>::default();
        registry.register(
            "ferry_history_corrupt_entries",
            "Sync history entries found undecodable and skipped (each counted once)",
            history_corrupt.clone(),
        );
        let mut queue_gauge = |name: &str, help: &str| {
            let gauge = Family::<NoLabels, Gauge>::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let queue_depth = queue_gauge(
            "ferry_queue_depth",
            "Apps queued for a reconcile and waiting for a free worker",
        );
        let queue_in_flight = queue_gauge(
            "ferry_queue_in_flight",
            "Apps being reconciled now (their error policy included)",
        );
        let queue_scheduled = queue_gauge(
            "ferry_queue_scheduled",
            "Apps with a pending timer (a retry, a requeue, a health check)",
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "ferry_notifications",
            "Notifications by receiver, type, event and result (sent, failed, dropped)",
            notifications.clone(),
        );
        Self {
            registry,
            reconcile_duration,
            syncs,
            app_info,
            drift,
            git_fetch,
            git_fetch_errors,
            leader,
            webhooks,
            history_corrupt,
            queue_depth,
            queue_in_flight,
            queue_scheduled,
            notifications,
            apps: Mutex::default(),
        }
    }

    /// A reconcile of `app` finished with `result` (`success` or `failure`) after
    /// `seconds`: observes `ferry_reconcile_duration_seconds` and counts `ferry_sync_total`.
    pub fn reconcile_finished(&self, app: &AppKey, result: &str, seconds: f64) {
        self.reconcile_duration
            .get_or_create(&app.into())
            .observe(seconds);
        self.syncs
            .get_or_create(&SyncLabels {
                app: app.name.clone(),
                namespace: app.namespace.clone(),
                result: result.into(),
            })
            .inc();
        self.apps()
            .entry(app.clone())
            .or_default()
            .results
            .insert(result.into());
    }

    /// Sets `ferry_app_info{app,namespace,sync,health,revision} 1`, removing the app's
    /// previous series so only the current state is exported.
    pub fn app_info(&self, app: &AppKey, sync: &str, health: &str, revision: &str) {
        let labels = InfoLabels {
            app: app.name.clone(),
            namespace: app.namespace.clone(),
            sync: sync.into(),
            health: health.into(),
            revision: revision.into(),
        };
        // Hold the lock across remove + set so concurrent calls cannot leave two series.
        let mut apps = self.apps();
        let series = apps.entry(app.clone()).or_default();
        if let Some(old) = series.info.take()
            && old != labels
        {
            self.app_info.remove(&old);
        }
        self.app_info.get_or_create(&labels).set(1);
        series.info = Some(labels);
    }

    /// Removes every series labelled with `app` (the app was deleted).
    pub fn remove_app(&self, app: &AppKey) {
        let Some(series) = self.apps().remove(app) else {
            return;
        };
        if let Some(info) = series.info {
            self.app_info.remove(&info);
        }
        for result in series.results {
            self.syncs.remove(&SyncLabels {
                app: app.name.clone(),
                namespace: app.namespace.clone(),
                result,
            });
        }
        let labels = AppLabels::from(app);
        self.reconcile_duration.remove(&labels);
        self.drift.remove(&labels);
    }

    /// Counts `ferry_drift_detected_total{app,namespace}`.
    pub fn drift_detected(&self, app: &AppKey) {
        self.apps().entry(app.clone()).or_default();
        self.drift.get_or_create(&app.into()).inc();
    }

    /// Observes a Git fetch of `repo` (redacted) in `ferry_git_fetch_duration_seconds`.
    pub fn git_fetch(&self, repo: &str, seconds: f64) {
        self.git_fetch
            .get_or_create(&RepoLabels {
                repo: ferry_model::redact_url(repo).into_owned(),
            })
            .observe(seconds);
    }

    /// Counts a failed Git fetch of `repo` (redacted) in `ferry_git_fetch_errors_total`.
    pub fn git_fetch_failed(&self, repo: &str) {
        self.git_fetch_errors
            .get_or_create(&RepoLabels {
                repo: ferry_model::redact_url(repo).into_owned(),
            })
            .inc();
    }

    /// Sets `ferry_leader` to 1 while this agent leads, else 0.
    pub fn leader(&self, leading: bool) {
        self.leader.get_or_create(&[]).set(i64::from(leading));
    }

    /// Counts a webhook request in `ferry_webhook_requests_total{provider,result}`;
    /// `result` is `accepted`, `unauthorized`, `bad_request` or `ignored`.
    pub fn webhook(&self, provider: &str, result: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                provider: provider.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Counts a notification in `ferry_notifications_total{receiver,type,event,result}`;
    /// `result` is `sent`, `failed` or `dropped` (the queue was full).
    pub fn notification(&self, receiver: &str, kind: &str, event: &str, result: &str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                receiver: receiver.into(),
                r#type: kind.into(),
                event: event.into(),
                result: result.into(),
            })
            .inc();
    }

    /// The counter `ferry_history_corrupt_entries_total` (exported from this call on),
    /// for [`History::count_corrupt_entries`](crate::history::History::count_corrupt_entries).
    pub fn history_corrupt_entries(&self) -> Counter {
        self.history_corrupt.get_or_create(&[]).clone()
    }

    /// The gauges `ferry_queue_depth`, `ferry_queue_in_flight` and `ferry_queue_scheduled`
    /// (exported from this call on), for [`Runner::with_gauges`](crate::queue::Runner::with_gauges).
    pub fn queue_gauges(&self) -> QueueGauges {
        QueueGauges {
            depth: self.queue_depth.get_or_create(&[]).clone(),
            in_flight: self.queue_in_flight.get_or_create(&[]).clone(),
            scheduled: self.queue_scheduled.get_or_create(&[]).clone(),
        }
    }

    /// All metrics in the OpenMetrics text format (serve with [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    fn apps(&self) -> std::sync::MutexGuard<'_, HashMap<AppKey, AppSeries>> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn empty_until_used() {
        assert_eq!(Metrics::new().encode(), "# EOF\n");
    }

    #[test]
    fn encodes_every_family() {
        let m = Metrics::new();
        let web = &AppKey::new("ferry-system", "web");
        m.reconcile_finished(web, "success", 0.3);
        m.reconcile_finished(web, "success", 1.5);
        m.reconcile_finished(web, "failure", 0.05);
        m.app_info(web, "Synced", "Healthy", "abc123");
        m.drift_detected(web);
        m.drift_detected(web);
        m.git_fetch("https://example.com/org/repo.git", 0.2);
        m.git_fetch_failed("https://example.com/org/repo.git");
        m.leader(true);
        m.webhook("github", "accepted");
        m.webhook("github", "unauthorized");
        m.webhook("github", "accepted");
        m.queue_gauges().set(3, 2, 1);
        let text = m.encode();

        for family in [
            "ferry_reconcile_duration_seconds histogram",
            "ferry_sync counter",
            "ferry_app_info gauge",
            "ferry_drift_detected counter",
            "ferry_git_fetch_duration_seconds histogram",
            "ferry_git_fetch_errors counter",
            "ferry_leader gauge",
            "ferry_webhook_requests counter",
            "ferry_queue_depth gauge",
            "ferry_queue_in_flight gauge",
            "ferry_queue_scheduled gauge",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family}\n")),
                "{family}\n{text}"
            );
        }
        assert!(text.contains("# UNIT ferry_reconcile_duration_seconds seconds\n"));
        assert!(text.ends_with("# EOF\n"));
        for line in [
            r#"ferry_git_fetch_errors_total{repo="https://example.com/org/repo.git"} 1"#,
            "ferry_leader 1",
            r#"ferry_reconcile_duration_seconds_count{app="web",namespace="ferry-system"} 3"#,
            r#"ferry_reconcile_duration_seconds_sum{app="web",namespace="ferry-system"} 1.85"#,
            r#"ferry_reconcile_duration_seconds_bucket{le="0.1",app="web",namespace="ferry-system"} 1"#,
            r#"ferry_reconcile_duration_seconds_bucket{le="+Inf",app="web",namespace="ferry-system"} 3"#,
            r#"ferry_sync_total{app="web",namespace="ferry-system",result="success"} 2"#,
            r#"ferry_sync_total{app="web",namespace="ferry-system",result="failure"} 1"#,
            r#"ferry_app_info{app="web",namespace="ferry-system",sync="Synced",health="Healthy",revision="abc123"} 1"#,
            r#"ferry_drift_detected_total{app="web",namespace="ferry-system"} 2"#,
            r#"ferry_git_fetch_duration_seconds_count{repo="https://example.com/org/repo.git"} 1"#,
            r#"ferry_webhook_requests_total{provider="github",result="accepted"} 2"#,
            r#"ferry_webhook_requests_total{provider="github",result="unauthorized"} 1"#,
            "ferry_queue_depth 3",
            "ferry_queue_in_flight 2",
            "ferry_queue_scheduled 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn the_corrupt_history_entry_counter_is_exported_once_handed_out() {
        let m = Metrics::new();
        let counter = m.history_corrupt_entries();
        assert!(
            m.encode()
                .lines()
                .any(|l| l == "ferry_history_corrupt_entries_total 0"),
            "{}",
            m.encode()
        );
        counter.inc();
        m.history_corrupt_entries().inc();
        assert!(
            m.encode()
                .lines()
                .any(|l| l == "ferry_history_corrupt_entries_total 2")
        );
    }

    #[test]
    fn app_info_replaces_previous_series() {
        let m = Metrics::new();
        let web = &AppKey::new("ferry-system", "web");
        m.app_info(web, "OutOfSync", "Progressing", "aaa");
        m.app_info(
            &AppKey::new("ferry-system", "db"),
            "Synced",
            "Healthy",
            "ccc",
        );
        m.app_info(web, "Synced", "Healthy", "bbb");
        m.app_info(web, "Synced", "Healthy", "bbb");
        let text = m.encode();
        assert_eq!(
            lines_with(
                &text,
                r#"ferry_app_info{app="web",namespace="ferry-system""#
            ),
            [
                r#"ferry_app_info{app="web",namespace="ferry-system",sync="Synced",health="Healthy",revision="bbb"} 1"#
            ]
        );
        assert_eq!(lines_with(&text, r#"ferry_app_info{app="db""#).len(), 1);
    }

    #[test]
    fn remove_app_drops_its_series() {
        let m = Metrics::new();
        let key = |ns: &str, name: &str| AppKey::new(ns, name);
        for app in [
            key("team-a", "web"),
            key("team-b", "web"),
            key("team-a", "db"),
        ] {
            m.reconcile_finished(&app, "success", 1.0);
            m.reconcile_finished(&app, "failure", 1.0);
            m.app_info(&app, "Synced", "Healthy", "abc");
            m.drift_detected(&app);
        }
        m.remove_app(&key("team-a", "web"));
        m.remove_app(&key("team-a", "never-seen"));
        let text = m.encode();
        assert!(!text.contains(r#"app="web",namespace="team-a""#), "{text}");
        assert!(text.contains(r#"app="web",namespace="team-b""#), "{text}");
        assert_eq!(
            text.lines().filter(|l| l.contains(r#"app="db""#)).count(),
            // 12 buckets + +Inf + sum + count, 2 sync results, info, drift
            15 + 2 + 1 + 1
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.git_fetch("a\"b\\c", 1.0);
        assert!(
            m.encode()
                .contains(r#"ferry_git_fetch_duration_seconds_count{repo="a\"b\\c"} 1"#)
        );
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Metrics>();
    }
}
