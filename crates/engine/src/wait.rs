//! Waiting on the cluster: health of applied objects, CRDs established, objects gone.

use std::time::{Duration, Instant};

use ferry_kube::Cluster;
use ferry_model::{Health, HealthStatus, ObjectRef};
use futures::{StreamExt, TryStreamExt, stream};

use crate::EngineError;
use crate::health::health;
use crate::progress::{Event, Progress};

const POLL: Duration = Duration::from_millis(500);

/// How a health wait ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitOutcome {
    /// Every object is Current.
    Healthy,
    /// An object is Failed (the wait stopped at once).
    Failed,
    /// The timeout passed with objects not yet Current.
    TimedOut,
    /// Looked at once ([`crate::sync::Wait::Observe`]): objects not yet Current.
    Progressing,
}

/// The result of [`wait_healthy`]: the outcome and each object's last health.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WaitReport {
    /// How it ended.
    pub outcome: WaitOutcome,
    /// Last observed health per object.
    pub objects: Vec<(ObjectRef, Health)>,
}

impl WaitReport {
    /// The report of one look at the objects: Healthy when all are Current, Failed when
    /// one is, else Progressing.
    pub fn observed(objects: Vec<(ObjectRef, Health)>) -> Self {
        let outcome = if objects
            .iter()
            .all(|(_, h)| h.status == HealthStatus::Current)
        {
            WaitOutcome::Healthy
        } else if objects
            .iter()
            .any(|(_, h)| h.status == HealthStatus::Failed)
        {
            WaitOutcome::Failed
        } else {
            WaitOutcome::Progressing
        };
        Self { outcome, objects }
    }

    /// Objects that are not Current, with why.
    pub fn unready(&self) -> impl Iterator<Item = &(ObjectRef, Health)> {
        self.objects
            .iter()
            .filter(|(_, h)| h.status != HealthStatus::Current)
    }
}

/// Observes every object's health once.
pub async fn observe(
    cluster: &Cluster,
    subjects: &[ObjectRef],
) -> Result<Vec<(ObjectRef, Health)>, EngineError> {
    stream::iter(subjects.to_vec())
        .map(|s| async move {
            let h = match cluster.get(&s).await? {
                Some(obj) => health(&obj),
                None => Health::new(HealthStatus::NotFound, "object not found"),
            };
            Ok::<_, EngineError>((s, h))
        })
        .buffered(16)
        .try_collect()
        .await
}

/// Polls the objects' health until all are Current, one is Failed, or `timeout` passes.
pub async fn wait_healthy(
    cluster: &Cluster,
    subjects: &[ObjectRef],
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<WaitReport, EngineError> {
    let deadline = Instant::now() + timeout;
    loop {
        let objects = observe(cluster, subjects).await?;
        let pending: Vec<_> = objects
            .iter()
            .filter(|(_, h)| h.status != HealthStatus::Current)
            .cloned()
            .collect();
        progress.event(Event::Health {
            ready: objects.len() - pending.len(),
            total: objects.len(),
            pending: pending.clone(),
        });
        let outcome = if pending.is_empty() {
            Some(WaitOutcome::Healthy)
        } else if pending
            .iter()
            .any(|(_, h)| h.status == HealthStatus::Failed)
        {
            Some(WaitOutcome::Failed)
        } else if Instant::now() >= deadline {
            Some(WaitOutcome::TimedOut)
        } else {
            None
        };
        if let Some(outcome) = outcome {
            return Ok(WaitReport { outcome, objects });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until each CRD reports `Established`.
pub async fn established(
    cluster: &Cluster,
    crds: &[ObjectRef],
    timeout: Duration,
) -> Result<(), EngineError> {
    let deadline = Instant::now() + timeout;
    for crd in crds {
        loop {
            let ok = cluster.get(crd).await?.is_some_and(|obj| {
                obj.pointer("/status/conditions")
                    .and_then(|c| c.as_array())
                    .is_some_and(|conds| {
                        conds
                            .iter()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    })
            });
            if ok {
                break;
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Timeout {
                    what: format!("{crd} to be Established"),
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Waits until an object no longer exists.
pub async fn gone(
    cluster: &Cluster,
    subject: &ObjectRef,
    timeout: Duration,
) -> Result<(), EngineError> {
    let deadline = Instant::now() + timeout;
    while cluster.get(subject).await?.is_some() {
        if Instant::now() >= deadline {
            return Err(EngineError::Timeout {
                what: format!("{subject} to be deleted"),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
