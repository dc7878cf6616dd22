//! Where the reconciler's outcomes go besides the app statuses: the sync history,
//! Prometheus metrics, Kubernetes Events on `Application` resources and notifications.

use std::sync::Arc;

use tracing::warn;

use crate::applications::Applications;
use crate::history::{Entry, History};
use crate::metrics::Metrics;

/// The history, metrics, Events and notifications, shared by all reconciles.
pub struct Record {
    /// Sync history.
    pub history: History,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Application resources and their Events.
    pub applications: Applications,
    /// Notifications (webhooks, commit statuses), sent off the reconcile path.
    pub notifier: crate::notify::Notifier,
}

impl Record {
    /// Appends a history entry; the store's fsync runs on a blocking thread. A failure
    /// is logged.
    pub async fn entry(&self, entry: Entry) {
        let history = self.history.clone();
        match tokio::task::spawn_blocking(move || history.record(entry)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!("cannot record history: {e}"),
            Err(e) => warn!("cannot record history: {e}"),
        }
    }

    /// Whether the app's newest successful history entry is at `sha` (true when the
    /// history cannot be read, so that nothing is recorded twice).
    pub async fn recorded(&self, app: &ferry_model::AppKey, sha: &str) -> bool {
        let history = self.history.clone();
        let app = app.to_string();
        match tokio::task::spawn_blocking(move || history.last_success(&app)).await {
            Ok(Ok(Some(entry))) => entry.revision == sha,
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                warn!("cannot read history: {e}");
                true
            }
            Err(_) => true,
        }
    }
}
