//! Leader election on a `coordination.k8s.io/v1` Lease, in the style of client-go's
//! leader election, with the leader fenced by its own clock.
//!
//! - Every write of the Lease is conditional (created when missing, else replaced at the
//!   resourceVersion read), so two candidates never both win one round.
//! - **The leader** renews every `duration / 3` (each attempt bounded by that long) and
//!   stops leading (the flag turns false) once `duration - duration / 3` has passed
//!   since the start of its last successful renewal — also while the API server does
//!   not answer at all, so a leader cut off from the cluster steps down on its own.
//! - **A candidate** takes the Lease over only when its record (holder, renew time,
//!   resourceVersion) has not changed for `duration`, as measured by the candidate's own
//!   clock since it first saw that record; wall-clock times in the record are not
//!   compared across machines.
//!
//! So the old leader has stopped at least `duration / 3` before any candidate can take
//! over, as long as both clocks run at about the same rate.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{debug, warn};

use crate::{Cluster, KubeError, ObjectRef};

/// One candidate for one Lease.
struct Elector {
    api: Api<Lease>,
    subject: ObjectRef,
    identity: String,
    duration: Duration,
    /// How often the leader renews (and a candidate looks again).
    renew: Duration,
    cluster: Cluster,
}

/// The Lease's record as a candidate last saw it, and when it first saw it.
struct Observed {
    record: (Option<String>, Option<String>, Option<String>),
    since: Instant,
}

impl Cluster {
    /// Leader election on Lease `name` in `namespace` (created when missing) as
    /// `identity`: the flag is true while this identity holds the lease and has renewed
    /// it in time (see the module documentation). A lease lasts `duration`; the task
    /// ends, releasing the lease, when every receiver is dropped.
    pub async fn lead(
        &self,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Result<watch::Receiver<bool>, KubeError> {
        self.ensure_namespace(namespace).await?;
        let elector = Elector {
            api: Api::namespaced(self.client().clone(), namespace),
            subject: ObjectRef::new("coordination.k8s.io/v1", "Lease", Some(namespace), name),
            identity: identity.to_string(),
            duration,
            renew: duration / 3,
            cluster: self.clone(),
        };
        let (tx, rx) = watch::channel(false);
        tokio::spawn(elector.run(tx));
        Ok(rx)
    }
}

impl Elector {
    async fn run(self, tx: watch::Sender<bool>) {
        let mut observed: Option<Observed> = None;
        // Until when this agent may act as the leader, while it is.
        let mut valid_until: Option<Instant> = None;
        loop {
            let started = Instant::now();
            match timeout(self.renew, self.try_hold(&mut observed)).await {
                Ok(Ok(true)) => valid_until = Some(started + self.duration - self.renew),
                Ok(Ok(false)) => valid_until = None,
                // Still leading until `valid_until`, unless a later round renews.
                Ok(Err(e)) => {
                    warn!(lease = %self.subject, "cannot acquire or renew the lease: {e}")
                }
                Err(_) => warn!(
                    lease = %self.subject,
                    "acquiring or renewing the lease timed out after {} s",
                    self.renew.as_secs()
                ),
            }
            let next = started + self.renew;
            // Until the next round; stepping down at `valid_until` when it comes first.
            loop {
                let leading = valid_until.is_some_and(|until| Instant::now() < until);
                if !leading && valid_until.take().is_some() {
                    warn!(lease = %self.subject, "the lease was not renewed in time: no longer leading");
                }
                tx.send_if_modified(|flag| std::mem::replace(flag, leading) != leading);
                let wake = valid_until.map_or(next, |until| until.min(next));
                tokio::select! {
                    _ = tx.closed() => {
                        if leading {
                            self.release().await;
                        }
                        return;
                    }
                    _ = sleep_until(wake) => {}
                }
                if Instant::now() >= next {
                    break;
                }
            }
        }
    }

    /// One round: acquires or renews the Lease; whether this identity holds it now.
    async fn try_hold(&self, observed: &mut Option<Observed>) -> Result<bool, KubeError> {
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self
            .api
            .get_opt(&self.subject.name)
            .await
            .map_err(|e| self.cluster.api_error(e, "get", &self.subject))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.subject.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or_default();
        if holder.as_deref() == Some(self.identity.as_str()) {
            let acquired = spec.acquire_time.unwrap_or_else(|| now.clone());
            lease.spec = Some(self.spec(acquired, now, transitions));
            return self.replace(&lease).await;
        }
        let record = (
            holder.clone(),
            spec.renew_time.as_ref().map(|t| t.0.to_string()),
            lease.metadata.resource_version.clone(),
        );
        if observed.as_ref().is_none_or(|o| o.record.0 != holder)
            && let Some(holder) = &holder
        {
            warn!(lease = %self.subject, "the lease is held by {holder}: standing by while it renews it");
        }
        let since = match observed {
            Some(o) if o.record == record => o.since,
            _ => {
                *observed = Some(Observed {
                    record,
                    since: Instant::now(),
                });
                Instant::now()
            }
        };
        let lasts = spec
            .lease_duration_seconds
            .map_or(self.duration, |s| Duration::from_secs(s.max(1) as u64));
        if holder.is_some() && since.elapsed() < lasts {
            return Ok(false);
        }
        lease.spec = Some(self.spec(now.clone(), now, transitions + 1));
        self.replace(&lease).await
    }

    fn spec(&self, acquired: MicroTime, renewed: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(acquired),
            renew_time: Some(renewed),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Replaces the Lease at the resourceVersion it was read at.
    async fn replace(&self, lease: &Lease) -> Result<bool, KubeError> {
        self.write(
            self.api
                .replace(&self.subject.name, &PostParams::default(), lease)
                .await,
        )
    }

    /// A write's outcome: held, or lost to another candidate (409).
    fn write(&self, result: Result<Lease, kube::Error>) -> Result<bool, KubeError> {
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.cluster.api_error(e, "write", &self.subject)),
        }
    }

    /// Gives the Lease up (best effort, bounded), so that a candidate need not wait for
    /// it to expire.
    async fn release(&self) {
        let released = async {
            let mut lease = self.api.get(&self.subject.name).await?;
            if let Some(spec) = &mut lease.spec
                && spec.holder_identity.as_deref() == Some(self.identity.as_str())
            {
                spec.holder_identity = None;
                self.api
                    .replace(&self.subject.name, &PostParams::default(), &lease)
                    .await?;
            }
            Ok::<_, kube::Error>(())
        };
        if let Ok(Err(e)) = timeout(self.renew, released).await {
            debug!(lease = %self.subject, "releasing the lease: {e}");
        }
    }
}
