//! Notifications off the reconcile path: the controller hands an app's event to
//! [`Notifier::notify`], which never waits — it drops a repeat (the same event at the same
//! revision as the last one of its kind), puts the rest on a bounded queue, and one task
//! delivers them in order ([`ferry_notify::Sender`]: timeouts, retries). Receivers are the
//! `ferry.yaml`'s top-level `notifications:` and those of the app's project; their tokens
//! are read at each delivery (a Secret through `ferry-kube`, or a `tokenFile`). Every
//! delivery is counted in `ferry_notifications_total`; a failed one is logged (its
//! message names the receiver, never its token or address).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_kube::Cluster;
use ferry_model::{AppKey, EventKind, NotificationSpec, ObjectRef};
use ferry_notify::{Notification, Receiver, Secret, Sender};
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Notifications waiting for delivery at most; more are dropped (and counted).
pub const QUEUE: usize = 256;

/// Longest reading a token file may take.
const TOKEN_FILE_TIMEOUT: Duration = Duration::from_secs(5);

/// The queue of a [`Notifier`], emptied by [`deliver`].
pub struct Jobs(mpsc::Receiver<Job>);

/// One notification and who gets it.
struct Job {
    notification: Notification,
    receivers: Vec<NotificationSpec>,
}

/// The events of one kind whose repeats are dropped: the last sync outcome, the last
/// drift event. Health events come only on a change (the controller sees the previous
/// health) and are never dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Class {
    Sync,
    Drift,
    Health,
}

fn class(event: EventKind) -> Class {
    match event {
        EventKind::SyncSucceeded | EventKind::SyncFailed => Class::Sync,
        EventKind::DriftDetected | EventKind::DriftHealed => Class::Drift,
        EventKind::HealthDegraded => Class::Health,
    }
}

/// The last event of a class an app was notified of, with its revision.
type Sent = (EventKind, Option<String>);

/// Hands events to the delivery task.
pub struct Notifier {
    tx: mpsc::Sender<Job>,
    file: Vec<NotificationSpec>,
    dashboard: Option<String>,
    last: Mutex<HashMap<(AppKey, Class), Sent>>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// A notifier for the `ferry.yaml`'s receivers `file`, linking to the dashboard at
    /// `dashboard` (its public base URL), and the queue its events go to (hand it to
    /// [`deliver`]).
    pub fn new(
        file: Vec<NotificationSpec>,
        dashboard: Option<String>,
        metrics: Arc<Metrics>,
    ) -> (Self, Jobs) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let notifier = Self {
            tx,
            file,
            dashboard: dashboard.map(|d| d.trim_end_matches('/').to_string()),
            last: Mutex::default(),
            metrics,
        };
        (notifier, Jobs(rx))
    }

    /// Queues `event` of `app` (whose repository is `repo`, whose project's receivers are
    /// `project`) at `revision` for every receiver that wants it; returns at once.
    pub fn notify(
        &self,
        app: &AppKey,
        repo: &str,
        project: &[NotificationSpec],
        event: EventKind,
        revision: Option<&str>,
        message: &str,
    ) {
        let receivers: Vec<NotificationSpec> = self
            .file
            .iter()
            .chain(project)
            .filter(|r| r.wants(event))
            .cloned()
            .collect();
        if receivers.is_empty() {
            return;
        }
        let revision = revision.filter(|r| !r.is_empty()).map(str::to_string);
        let class = class(event);
        if class != Class::Health {
            let mut last = self.last.lock().expect("notifier");
            let now = (event, revision.clone());
            if last.get(&(app.clone(), class)) == Some(&now) {
                return;
            }
            last.insert((app.clone(), class), now);
        }
        let notification = Notification {
            app: app.clone(),
            event,
            revision,
            message: message.to_string(),
            repo: repo.to_string(),
            dashboard_url: self
                .dashboard
                .as_ref()
                .map(|d| format!("{d}/#/apps/{}/{}", app.namespace, app.name)),
        };
        if let Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) =
            self.tx.try_send(Job {
                notification,
                receivers,
            })
        {
            for r in &job.receivers {
                warn!(receiver = %r.name, %event, "notification queue full, dropped");
                self.metrics
                    .notification(&r.name, r.kind.as_str(), event.as_str(), "dropped");
            }
        }
    }

    /// Forgets what was sent for `app` (it was removed).
    pub fn forget(&self, app: &AppKey) {
        self.last
            .lock()
            .expect("notifier")
            .retain(|(a, _), _| a != app);
    }
}

/// The delivery task, until `shutdown`: one job after the other (so a commit's statuses
/// arrive in order), the receivers of one job at once.
pub async fn deliver(
    jobs: Jobs,
    cluster: Cluster,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let Jobs(mut rx) = jobs;
    let sender = Sender::default();
    loop {
        let job = tokio::select! {
            _ = shutdown.cancelled() => return,
            job = rx.recv() => match job { Some(job) => job, None => return },
        };
        let n = &job.notification;
        let sends = job.receivers.iter().map(|spec| {
            let (cluster, sender, metrics) = (&cluster, &sender, &metrics);
            async move {
                let result = match receiver(cluster, spec).await {
                    Ok(r) => sender.send(&r, n).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                let (kind, event) = (spec.kind.as_str(), n.event.as_str());
                match result {
                    Ok(true) => {
                        debug!(receiver = %spec.name, app = %n.app, event, "notification sent");
                        metrics.notification(&spec.name, kind, event, "sent");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        warn!(app = %n.app, event, "notification failed: {e}");
                        metrics.notification(&spec.name, kind, event, "failed");
                    }
                }
            }
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = futures::future::join_all(sends) => {}
        }
    }
}

/// The receiver `spec` with its secrets read now.
async fn receiver(cluster: &Cluster, spec: &NotificationSpec) -> Result<Receiver, String> {
    let name = &spec.name;
    let mut receiver = Receiver {
        spec: spec.clone(),
        token: None,
        address: None,
    };
    if let Some(path) = &spec.token_file {
        let read = tokio::time::timeout(TOKEN_FILE_TIMEOUT, tokio::fs::read_to_string(path));
        let text = match read.await {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => return Err(format!("receiver {name}: tokenFile {path}: {e}")),
            Err(_) => return Err(format!("receiver {name}: tokenFile {path}: read timed out")),
        };
        receiver.token = Some(Secret(text.trim().to_string()));
    }
    if let Some(secret) = &spec.secret_ref {
        let namespace = secret
            .namespace
            .as_deref()
            .unwrap_or(ferry_model::SYSTEM_NAMESPACE);
        let id = format!("receiver {name}: Secret {namespace}/{}", secret.name);
        let subject = ObjectRef::new("v1", "Secret", Some(namespace), &secret.name);
        let value = match cluster.get(&subject).await {
            Ok(Some(value)) => value,
            Ok(None) => return Err(format!("{id}: not found")),
            Err(e) => return Err(format!("{id}: {e}")),
        };
        let data = serde_json::from_value::<KubeSecret>(value)
            .map_err(|e| format!("{id}: unreadable: {e}"))?
            .data
            .unwrap_or_default();
        let text = |key: &str| {
            data.get(key)
                .map(|v| Secret(String::from_utf8_lossy(&v.0).trim().to_string()))
        };
        receiver.token = text("token");
        receiver.address = text("address");
        if receiver.token.is_none() && receiver.address.is_none() {
            return Err(format!("{id}: has neither a token nor an address key"));
        }
    }
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> NotificationSpec {
        serde_saphyr::from_str("name: ops\ntype: webhook\nurl: http://127.0.0.1:9/hook\n").unwrap()
    }

    fn events(jobs: &mut Jobs) -> Vec<(EventKind, Option<String>)> {
        let mut out = Vec::new();
        while let Ok(job) = jobs.0.try_recv() {
            out.push((job.notification.event, job.notification.revision));
        }
        out
    }

    #[test]
    fn repeats_are_dropped_and_changes_sent() {
        let metrics = Arc::new(Metrics::new());
        let (n, mut jobs) = Notifier::new(
            vec![hook()],
            Some("https://ferry.example.com/".into()),
            metrics,
        );
        let app = AppKey::new("ns", "a");
        let send = |event, rev| n.notify(&app, "https://git.example.com/o/r", &[], event, rev, "m");
        send(EventKind::SyncSucceeded, Some("a1"));
        send(EventKind::SyncSucceeded, Some("a1"));
        send(EventKind::SyncFailed, Some("b2"));
        send(EventKind::SyncFailed, Some("b2"));
        send(EventKind::SyncSucceeded, Some("b2"));
        send(EventKind::DriftDetected, Some("b2"));
        send(EventKind::DriftDetected, Some("b2"));
        send(EventKind::DriftHealed, Some("b2"));
        send(EventKind::DriftDetected, Some("b2"));
        send(EventKind::HealthDegraded, Some("b2"));
        send(EventKind::HealthDegraded, Some("b2"));
        let some = |e, r: &str| (e, Some(r.to_string()));
        assert_eq!(
            events(&mut jobs),
            vec![
                some(EventKind::SyncSucceeded, "a1"),
                some(EventKind::SyncFailed, "b2"),
                some(EventKind::SyncSucceeded, "b2"),
                some(EventKind::DriftDetected, "b2"),
                some(EventKind::DriftHealed, "b2"),
                some(EventKind::DriftDetected, "b2"),
                some(EventKind::HealthDegraded, "b2"),
                some(EventKind::HealthDegraded, "b2"),
            ]
        );
        n.notify(&app, "r", &[], EventKind::SyncFailed, Some("c3"), "m");
        let job = jobs.0.try_recv().unwrap();
        assert_eq!(
            job.notification.dashboard_url.as_deref(),
            Some("https://ferry.example.com/#/apps/ns/a")
        );
    }

    #[test]
    fn no_receiver_no_job_and_a_full_queue_drops_and_counts() {
        let metrics = Arc::new(Metrics::new());
        let (n, mut jobs) = Notifier::new(Vec::new(), None, metrics.clone());
        let app = AppKey::new("ns", "a");
        n.notify(&app, "r", &[], EventKind::SyncFailed, Some("x"), "m");
        assert!(events(&mut jobs).is_empty());
        // The project's receivers count too; fill the queue past its bound.
        let project = [hook()];
        for i in 0..QUEUE + 2 {
            n.notify(
                &app,
                "r",
                &project,
                EventKind::SyncFailed,
                Some(&i.to_string()),
                "m",
            );
        }
        assert_eq!(events(&mut jobs).len(), QUEUE);
        let text = metrics.encode();
        assert!(
            text.contains(r#"ferry_notifications_total{receiver="ops",type="webhook",event="SyncFailed",result="dropped"} 2"#),
            "{text}"
        );
    }
}
