//! kstatus-style health of a live object, computed from the object alone.
//!
//! The rules follow kstatus (`sigs.k8s.io/cli-utils/pkg/kstatus`): generic rules first
//! (deletion, observed generation, `Reconciling`/`Stalled` conditions), then built-in
//! rules per kind, then a `Ready` condition for kinds without built-in rules, and
//! finally Current for anything else.
//!
//! Deliberate differences from kstatus, all aimed at failing fast with a clear reason:
//! - The `Ready` condition is only consulted for kinds without built-in rules (as in
//!   kstatus' `Compute`); a Pod's `Ready=False` must not hide a crash loop.
//! - A Job that has started but not finished is InProgress (kstatus: Current), so a
//!   wait covers migration Jobs until they complete.
//! - A Pod in phase `Failed` is Failed (kstatus: Current).
//! - A container in `CrashLoopBackOff` makes its Pod Failed once it has restarted
//!   [`CRASH_LOOP_RESTARTS`] times (InProgress before, to allow a slow start);
//!   `ImagePullBackOff`, `InvalidImageName` and `ErrImageNeverPull` are Failed at once,
//!   while a first `ErrImagePull` is InProgress.
//! - An unschedulable Pod stays InProgress (kstatus fails it after 15 s, which needs a
//!   clock); the wait timeout reports it with the scheduler's message.
//! - A Service of type `LoadBalancer` needs an ingress IP or hostname in its status.
//! - A PersistentVolumeClaim in phase `Lost` is Failed.

use ferry_model::{Health, HealthStatus};
use serde_json::Value;

/// Restarts after which a container in `CrashLoopBackOff` makes its Pod Failed.
pub const CRASH_LOOP_RESTARTS: i64 = 3;

/// The health of a live object (as returned by the API server, with `status`).
pub fn health(obj: &Value) -> Health {
    if let Some(h) = generic(obj) {
        return h;
    }
    let kind = str_at(obj, "/kind");
    let group = str_at(obj, "/apiVersion")
        .split_once('/')
        .map_or("", |(g, _)| g);
    match (group, kind) {
        ("apps" | "extensions", "Deployment") => deployment(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps" | "extensions", "DaemonSet") => daemon_set(obj),
        ("apps" | "extensions", "ReplicaSet") => replica_set(obj),
        ("batch", "Job") => job(obj),
        ("", "Pod") => pod(obj),
        ("", "PersistentVolumeClaim") => pvc(obj),
        ("", "Service") => service(obj),
        ("", "Namespace") => namespace(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj),
        _ => ready_condition(obj),
    }
}

/// One entry of `status.conditions`.
struct Condition<'a> {
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

impl Condition<'_> {
    fn is(&self, status: &str) -> bool {
        self.status == status
    }

    /// `reason: message`, either alone when the other is empty, or `fallback`.
    fn describe(&self, fallback: &str) -> String {
        describe(self.reason, self.message, fallback)
    }
}

fn describe(reason: &str, message: &str, fallback: &str) -> String {
    let text = match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (false, true) => reason.to_string(),
        (true, false) => message.to_string(),
        (true, true) => fallback.to_string(),
    };
    one_line(&text)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int_at(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

fn int_or(obj: &Value, pointer: &str, default: i64) -> i64 {
    int_at(obj, pointer).unwrap_or(default)
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<Condition<'a>> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .map(|c| Condition {
            status: str_at(c, "/status"),
            reason: str_at(c, "/reason"),
            message: str_at(c, "/message"),
        })
}

fn in_progress(message: impl Into<String>) -> Health {
    Health::new(HealthStatus::InProgress, message)
}

fn failed(message: impl Into<String>) -> Health {
    Health::new(HealthStatus::Failed, message)
}

/// `n things`, singular when `n == 1`.
fn count(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `x of n things`, the noun agreeing with `n`.
fn of(x: i64, n: i64, noun: &str) -> String {
    format!("{x} of {}", count(n, noun))
}

fn generic(obj: &Value) -> Option<Health> {
    if !str_at(obj, "/metadata/deletionTimestamp").is_empty() {
        return Some(Health::new(HealthStatus::Terminating, "being deleted"));
    }
    if let (Some(generation), Some(observed)) = (
        int_at(obj, "/metadata/generation"),
        int_at(obj, "/status/observedGeneration"),
    ) && generation != observed
    {
        return Some(in_progress(format!(
            "generation {generation} not yet observed by its controller (observed {observed})"
        )));
    }
    if let Some(c) = condition(obj, "Reconciling")
        && c.is("True")
    {
        return Some(in_progress(c.describe("reconciling")));
    }
    if let Some(c) = condition(obj, "Stalled")
        && c.is("True")
    {
        return Some(failed(c.describe("stalled")));
    }
    None
}

fn ready_condition(obj: &Value) -> Health {
    match condition(obj, "Ready") {
        Some(c) if c.is("True") => Health::current(),
        Some(c) => in_progress(c.describe("not ready")),
        None => Health::current(),
    }
}

fn deployment(obj: &Value) -> Health {
    // Without a progress deadline the controller never sets a final Progressing reason.
    let mut progressing = int_at(obj, "/spec/progressDeadlineSeconds").is_none();
    if let Some(c) = condition(obj, "Progressing") {
        if c.reason == "ProgressDeadlineExceeded" {
            return failed(format!(
                "progress deadline exceeded: {}",
                c.describe("rollout stopped")
            ));
        }
        progressing |= c.is("True") && c.reason == "NewReplicaSetAvailable";
    }
    let spec = int_or(obj, "/spec/replicas", 1);
    let replicas = int_or(obj, "/status/replicas", 0);
    let updated = int_or(obj, "/status/updatedReplicas", 0);
    let ready = int_or(obj, "/status/readyReplicas", 0);
    let available = int_or(obj, "/status/availableReplicas", 0);
    if spec > replicas {
        return in_progress(format!("{} created", of(replicas, spec, "replica")));
    }
    if spec > updated {
        return in_progress(format!("{} updated", of(updated, spec, "replica")));
    }
    if replicas > spec {
        return in_progress(format!(
            "{} pending termination",
            count(replicas - spec, "old replica")
        ));
    }
    if updated > available {
        return in_progress(format!("{} available", of(available, updated, "replica")));
    }
    if spec > ready {
        return in_progress(format!("{} ready", of(ready, spec, "replica")));
    }
    if !progressing {
        let why = condition(obj, "Progressing").map_or_else(
            || "no Progressing condition".to_string(),
            |c| c.describe("no reason given"),
        );
        return in_progress(format!("rollout not finished ({why})"));
    }
    match condition(obj, "Available") {
        Some(c) if c.is("True") => Health::current(),
        Some(c) => in_progress(format!("not available: {}", c.describe("no reason given"))),
        None => in_progress("not available: no Available condition"),
    }
}

fn stateful_set(obj: &Value) -> Health {
    if str_at(obj, "/spec/updateStrategy/type") == "OnDelete" {
        // Pods are replaced by the user, so there is no rollout to wait for.
        return Health::current();
    }
    let spec = int_or(obj, "/spec/replicas", 1);
    let replicas = int_or(obj, "/status/replicas", 0);
    let ready = int_or(obj, "/status/readyReplicas", 0);
    let current = int_or(obj, "/status/currentReplicas", 0);
    let updated = int_or(obj, "/status/updatedReplicas", 0);
    if spec > replicas {
        return in_progress(format!("{} created", of(replicas, spec, "replica")));
    }
    if spec > ready {
        return in_progress(format!("{} ready", of(ready, spec, "replica")));
    }
    if replicas > spec {
        return in_progress(format!(
            "{} pending termination",
            count(replicas - spec, "old replica")
        ));
    }
    if let Some(partition) = int_at(obj, "/spec/updateStrategy/rollingUpdate/partition") {
        let target = (spec - partition).max(0);
        if updated < target {
            return in_progress(format!(
                "{} updated (partition {partition})",
                of(updated, target, "replica")
            ));
        }
        return Health::current();
    }
    if spec > current {
        return in_progress(format!(
            "{} at the current revision",
            of(current, spec, "replica")
        ));
    }
    let current_rev = str_at(obj, "/status/currentRevision");
    let update_rev = str_at(obj, "/status/updateRevision");
    if current_rev != update_rev {
        return in_progress(format!(
            "rollout from revision {current_rev} to {update_rev} not finished"
        ));
    }
    Health::current()
}

fn daemon_set(obj: &Value) -> Health {
    // The controller always sets these once it has seen the object.
    if int_at(obj, "/metadata/generation").is_none()
        || int_at(obj, "/status/observedGeneration").is_none()
    {
        return in_progress("not yet observed by its controller");
    }
    let Some(desired) = int_at(obj, "/status/desiredNumberScheduled") else {
        return in_progress("no desired number of pods in status yet");
    };
    for (field, what) in [
        ("/status/currentNumberScheduled", "scheduled"),
        ("/status/updatedNumberScheduled", "updated"),
        ("/status/numberAvailable", "available"),
        ("/status/numberReady", "ready"),
    ] {
        let n = int_or(obj, field, 0);
        if desired > n {
            return in_progress(format!("{} {what}", of(n, desired, "pod")));
        }
    }
    Health::current()
}

fn replica_set(obj: &Value) -> Health {
    if let Some(c) = condition(obj, "ReplicaFailure")
        && c.is("True")
    {
        return in_progress(format!("replica failure: {}", c.describe("check the pods")));
    }
    let spec = int_or(obj, "/spec/replicas", 1);
    let replicas = int_or(obj, "/status/replicas", 0);
    for (field, what) in [
        ("/status/fullyLabeledReplicas", "labelled"),
        ("/status/availableReplicas", "available"),
        ("/status/readyReplicas", "ready"),
    ] {
        let n = int_or(obj, field, 0);
        if spec > n {
            return in_progress(format!("{} {what}", of(n, spec, "replica")));
        }
    }
    if replicas > spec {
        return in_progress(format!(
            "{} pending termination",
            count(replicas - spec, "old replica")
        ));
    }
    Health::current()
}

fn job(obj: &Value) -> Health {
    for kind in ["Failed", "FailureTarget"] {
        if let Some(c) = condition(obj, kind)
            && c.is("True")
        {
            return failed(format!("Job failed: {}", c.describe("no reason given")));
        }
    }
    for kind in ["Complete", "Suspended"] {
        if condition(obj, kind).is_some_and(|c| c.is("True")) {
            return Health::current();
        }
    }
    if str_at(obj, "/status/startTime").is_empty() {
        return in_progress("Job not started");
    }
    let parallelism = int_or(obj, "/spec/parallelism", 1);
    let completions = int_or(obj, "/spec/completions", parallelism);
    let succeeded = int_or(obj, "/status/succeeded", 0);
    let active = int_or(obj, "/status/active", 0);
    let failures = int_or(obj, "/status/failed", 0);
    in_progress(format!(
        "Job running: {active} active, {succeeded} of {completions} succeeded, {failures} failed"
    ))
}

fn pod(obj: &Value) -> Health {
    match str_at(obj, "/status/phase") {
        "Succeeded" => Health::current(),
        "Failed" => failed(format!(
            "Pod failed: {}",
            describe(
                str_at(obj, "/status/reason"),
                str_at(obj, "/status/message"),
                "a container exited with an error"
            )
        )),
        phase @ ("Running" | "Pending") => {
            let ready = condition(obj, "Ready");
            if phase == "Running" && ready.as_ref().is_some_and(|c| c.is("True")) {
                return Health::current();
            }
            if let Some(h) = container_problem(obj) {
                return h;
            }
            if phase == "Pending" {
                return match condition(obj, "PodScheduled") {
                    Some(c) if c.is("False") => in_progress(format!(
                        "Pod not scheduled: {}",
                        c.describe("no reason given")
                    )),
                    _ => in_progress("Pod pending"),
                };
            }
            match ready {
                Some(c) if !c.message.is_empty() => in_progress(format!(
                    "Pod running but not ready: {}",
                    one_line(c.message)
                )),
                _ => in_progress("Pod running but not ready"),
            }
        }
        "" => in_progress("Pod not yet observed by the kubelet"),
        other => Health::new(
            HealthStatus::Unknown,
            format!("unknown Pod phase {other:?}"),
        ),
    }
}

/// The worst container problem: a fail-fast reason beats a transient one.
fn container_problem(obj: &Value) -> Option<Health> {
    let statuses = ["/status/initContainerStatuses", "/status/containerStatuses"]
        .into_iter()
        .filter_map(|p| obj.pointer(p).and_then(Value::as_array))
        .flatten();
    let mut transient = None;
    for cs in statuses {
        let name = str_at(cs, "/name");
        let reason = str_at(cs, "/state/waiting/reason");
        let message = str_at(cs, "/state/waiting/message");
        let restarts = int_or(cs, "/restartCount", 0);
        let health = match reason {
            "CrashLoopBackOff" => {
                let last = describe(
                    str_at(cs, "/lastState/terminated/reason"),
                    "",
                    "unknown reason",
                );
                let exit = int_at(cs, "/lastState/terminated/exitCode")
                    .map(|c| format!(", exit code {c}"))
                    .unwrap_or_default();
                let text = format!(
                    "container {name} is crash-looping ({}, last exit: {last}{exit})",
                    count(restarts, "restart")
                );
                if restarts >= CRASH_LOOP_RESTARTS {
                    failed(text)
                } else {
                    in_progress(text)
                }
            }
            "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => failed(format!(
                "container {name}: {}",
                describe(reason, message, "")
            )),
            "ErrImagePull" | "CreateContainerConfigError" | "CreateContainerError" => in_progress(
                format!("container {name}: {}", describe(reason, message, "")),
            ),
            _ => continue,
        };
        if health.status == HealthStatus::Failed {
            return Some(health);
        }
        transient.get_or_insert(health);
    }
    transient
}

fn pvc(obj: &Value) -> Health {
    match str_at(obj, "/status/phase") {
        "Bound" => Health::current(),
        "Lost" => failed("PVC lost its volume"),
        "" => in_progress("PVC not yet bound"),
        phase => in_progress(format!("PVC is {phase}, not Bound")),
    }
}

fn service(obj: &Value) -> Health {
    if str_at(obj, "/spec/type") != "LoadBalancer" {
        return Health::current();
    }
    let has_address = obj
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|ingress| {
            ingress
                .iter()
                .any(|i| !str_at(i, "/ip").is_empty() || !str_at(i, "/hostname").is_empty())
        });
    if has_address {
        Health::current()
    } else {
        in_progress("waiting for a load balancer address")
    }
}

fn namespace(obj: &Value) -> Health {
    if str_at(obj, "/status/phase") == "Terminating" {
        Health::new(HealthStatus::Terminating, "Namespace is terminating")
    } else {
        Health::current()
    }
}

fn crd(obj: &Value) -> Health {
    if let Some(c) = condition(obj, "NamesAccepted")
        && c.is("False")
    {
        return failed(format!(
            "names not accepted: {}",
            c.describe("no reason given")
        ));
    }
    match condition(obj, "Established") {
        Some(c) if c.is("True") => Health::current(),
        Some(c) if c.is("False") && c.reason != "Installing" => failed(format!(
            "not established: {}",
            c.describe("no reason given")
        )),
        _ => in_progress("CRD not yet established"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(obj: Value) -> (HealthStatus, String) {
        let h = health(&obj);
        assert!(
            !h.message.contains('\n'),
            "multi-line message: {:?}",
            h.message
        );
        if h.status == HealthStatus::Current {
            assert_eq!(h.message, "", "Current carries no message");
        } else {
            assert!(!h.message.is_empty(), "{:?} without a message", h.status);
        }
        (h.status, h.message)
    }

    fn cond(kind: &str, status: &str, reason: &str, message: &str) -> Value {
        json!({"type": kind, "status": status, "reason": reason, "message": message})
    }

    fn deploy(spec: Value, st: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "generation": 2},
            "spec": spec, "status": st
        })
    }

    fn healthy_deploy_status() -> Value {
        json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
            "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [
                cond("Available", "True", "MinimumReplicasAvailable", "ok"),
                cond("Progressing", "True", "NewReplicaSetAvailable", "done"),
            ]
        })
    }

    const CURRENT: HealthStatus = HealthStatus::Current;
    const IN_PROGRESS: HealthStatus = HealthStatus::InProgress;
    const FAILED: HealthStatus = HealthStatus::Failed;

    #[test]
    fn deletion_timestamp_wins() {
        let mut d = deploy(json!({"replicas": 3}), healthy_deploy_status());
        d["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(status(d).0, HealthStatus::Terminating);
    }

    #[test]
    fn unobserved_generation_is_in_progress() {
        let mut st = healthy_deploy_status();
        st["observedGeneration"] = json!(1);
        let (s, m) = status(deploy(json!({"replicas": 3}), st));
        assert_eq!(s, IN_PROGRESS);
        assert_eq!(
            m,
            "generation 2 not yet observed by its controller (observed 1)"
        );
    }

    #[test]
    fn generic_conditions() {
        let cr = |conds: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                   "metadata": {"name": "w", "generation": 1},
                   "status": {"observedGeneration": 1, "conditions": conds}})
        };
        assert_eq!(
            status(cr(json!([cond(
                "Reconciling",
                "True",
                "Progressing",
                "working\non it"
            )]))),
            (IN_PROGRESS, "Progressing: working on it".into())
        );
        assert_eq!(
            status(cr(json!([cond("Stalled", "True", "", "bad config")]))),
            (FAILED, "bad config".into())
        );
        assert_eq!(
            status(cr(json!([cond("Ready", "True", "", "")]))).0,
            CURRENT
        );
        assert_eq!(
            status(cr(json!([cond("Ready", "False", "Waiting", "")]))),
            (IN_PROGRESS, "Waiting".into())
        );
        assert_eq!(
            status(cr(json!([cond("Ready", "Unknown", "", "")]))),
            (IN_PROGRESS, "not ready".into())
        );
        assert_eq!(status(cr(json!([]))).0, CURRENT);
        // Stalled is only looked at when not reconciling.
        let both = json!([
            cond("Reconciling", "True", "", "retrying"),
            cond("Stalled", "True", "", "x")
        ]);
        assert_eq!(status(cr(both)).0, IN_PROGRESS);
    }

    #[test]
    fn unknown_kind_without_status_is_current() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
        assert_eq!(status(cm).0, CURRENT);
        let cr =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"}});
        assert_eq!(status(cr).0, CURRENT);
    }

    #[test]
    fn deployment_rollout() {
        let spec = json!({"replicas": 3, "progressDeadlineSeconds": 600});
        assert_eq!(
            status(deploy(spec.clone(), healthy_deploy_status())).0,
            CURRENT
        );

        let mut st = healthy_deploy_status();
        st["availableReplicas"] = json!(2);
        assert_eq!(
            status(deploy(spec.clone(), st)),
            (IN_PROGRESS, "2 of 3 replicas available".into())
        );

        let mut st = healthy_deploy_status();
        st["updatedReplicas"] = json!(1);
        assert_eq!(
            status(deploy(spec.clone(), st)),
            (IN_PROGRESS, "1 of 3 replicas updated".into())
        );

        let mut st = healthy_deploy_status();
        st["replicas"] = json!(4);
        assert_eq!(
            status(deploy(spec.clone(), st)),
            (IN_PROGRESS, "1 old replica pending termination".into())
        );

        let mut st = healthy_deploy_status();
        st["readyReplicas"] = json!(0);
        assert_eq!(
            status(deploy(spec.clone(), st)),
            (IN_PROGRESS, "0 of 3 replicas ready".into())
        );

        let st = json!({"observedGeneration": 2});
        assert_eq!(
            status(deploy(spec.clone(), st)),
            (IN_PROGRESS, "0 of 3 replicas created".into())
        );

        let mut st = healthy_deploy_status();
        st["conditions"][1] = cond("Progressing", "True", "ReplicaSetUpdated", "rolling");
        assert_eq!(
            status(deploy(spec.clone(), st)),
            (
                IN_PROGRESS,
                "rollout not finished (ReplicaSetUpdated: rolling)".into()
            )
        );

        let mut st = healthy_deploy_status();
        st["conditions"][0] = cond("Available", "False", "MinimumReplicasUnavailable", "");
        assert_eq!(
            status(deploy(spec, st)),
            (
                IN_PROGRESS,
                "not available: MinimumReplicasUnavailable".into()
            )
        );
    }

    #[test]
    fn deployment_defaults_and_deadline() {
        // spec.replicas defaults to 1.
        let st = json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1,
            "conditions": [cond("Available", "True", "", "")]});
        // No progress deadline: the Progressing condition is not required.
        assert_eq!(status(deploy(json!({}), st)).0, CURRENT);

        let mut st = healthy_deploy_status();
        st["availableReplicas"] = json!(1);
        st["conditions"][1] = cond(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            "ReplicaSet \"web-5d8\" has timed out progressing.",
        );
        assert_eq!(
            status(deploy(json!({"replicas": 3, "progressDeadlineSeconds": 600}), st)),
            (
                FAILED,
                "progress deadline exceeded: ProgressDeadlineExceeded: ReplicaSet \"web-5d8\" has timed out progressing.".into()
            )
        );
    }

    fn sts(spec: Value, st: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
               "spec": spec, "status": st})
    }

    #[test]
    fn stateful_set() {
        let done = json!({"replicas": 3, "readyReplicas": 3, "currentReplicas": 3,
            "updatedReplicas": 3, "currentRevision": "db-1", "updateRevision": "db-1"});
        assert_eq!(status(sts(json!({"replicas": 3}), done.clone())).0, CURRENT);

        let mut st = done.clone();
        st["readyReplicas"] = json!(2);
        assert_eq!(
            status(sts(json!({"replicas": 3}), st)),
            (IN_PROGRESS, "2 of 3 replicas ready".into())
        );

        let mut st = done.clone();
        st["updateRevision"] = json!("db-2");
        assert_eq!(
            status(sts(json!({"replicas": 3}), st)),
            (
                IN_PROGRESS,
                "rollout from revision db-1 to db-2 not finished".into()
            )
        );

        let mut st = done.clone();
        st["currentReplicas"] = json!(1);
        assert_eq!(status(sts(json!({"replicas": 3}), st)).0, IN_PROGRESS);

        let partitioned = json!({"replicas": 3,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}});
        let mut st = done.clone();
        st["updatedReplicas"] = json!(0);
        assert_eq!(
            status(sts(partitioned.clone(), st)),
            (IN_PROGRESS, "0 of 1 replica updated (partition 2)".into())
        );
        let mut st = done.clone();
        st["updatedReplicas"] = json!(1);
        st["updateRevision"] = json!("db-2");
        assert_eq!(status(sts(partitioned, st)).0, CURRENT);

        let on_delete = json!({"replicas": 3, "updateStrategy": {"type": "OnDelete"}});
        assert_eq!(status(sts(on_delete, json!({}))).0, CURRENT);
    }

    fn ds(st: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
               "metadata": {"name": "agent", "generation": 1}, "status": st})
    }

    #[test]
    fn daemon_set() {
        let done = json!({"observedGeneration": 1, "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3, "updatedNumberScheduled": 3,
            "numberAvailable": 3, "numberReady": 3});
        assert_eq!(status(ds(done.clone())).0, CURRENT);
        let mut st = done.clone();
        st["updatedNumberScheduled"] = json!(2);
        assert_eq!(status(ds(st)), (IN_PROGRESS, "2 of 3 pods updated".into()));
        let mut st = done.clone();
        st["numberAvailable"] = json!(1);
        assert_eq!(
            status(ds(st)),
            (IN_PROGRESS, "1 of 3 pods available".into())
        );
        assert_eq!(
            status(ds(json!({"desiredNumberScheduled": 3}))),
            (IN_PROGRESS, "not yet observed by its controller".into())
        );
        assert_eq!(status(ds(json!({"observedGeneration": 1}))).0, IN_PROGRESS);
    }

    #[test]
    fn replica_set() {
        let rs = |st: Value| {
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"},
                   "spec": {"replicas": 2}, "status": st})
        };
        let done = json!({"replicas": 2, "fullyLabeledReplicas": 2,
            "availableReplicas": 2, "readyReplicas": 2});
        assert_eq!(status(rs(done.clone())).0, CURRENT);
        let mut st = done.clone();
        st["readyReplicas"] = json!(1);
        assert_eq!(
            status(rs(st)),
            (IN_PROGRESS, "1 of 2 replicas ready".into())
        );
        let mut st = done.clone();
        st["conditions"] = json!([cond(
            "ReplicaFailure",
            "True",
            "FailedCreate",
            "quota exceeded"
        )]);
        assert_eq!(
            status(rs(st)),
            (
                IN_PROGRESS,
                "replica failure: FailedCreate: quota exceeded".into()
            )
        );
    }

    fn job(st: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
               "spec": {"completions": 1}, "status": st})
    }

    #[test]
    fn job_states() {
        assert_eq!(
            status(job(json!({"succeeded": 1, "startTime": "t",
                "conditions": [cond("Complete", "True", "", "")]})))
            .0,
            CURRENT
        );
        assert_eq!(
            status(job(
                json!({"failed": 7, "startTime": "t", "conditions": [cond(
                "Failed", "True", "BackoffLimitExceeded",
                "Job has reached the specified backoff limit")]})
            )),
            (
                FAILED,
                "Job failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
                    .into()
            )
        );
        assert_eq!(
            status(job(json!({}))),
            (IN_PROGRESS, "Job not started".into())
        );
        assert_eq!(
            status(job(json!({"startTime": "t", "active": 1}))),
            (
                IN_PROGRESS,
                "Job running: 1 active, 0 of 1 succeeded, 0 failed".into()
            )
        );
        assert_eq!(
            status(job(
                json!({"conditions": [cond("Suspended", "True", "", "")]})
            ))
            .0,
            CURRENT
        );
    }

    fn pod(st: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": st})
    }

    fn crash_looping(restarts: i64) -> Value {
        pod(json!({
            "phase": "Running",
            "conditions": [cond("Ready", "False", "ContainersNotReady", "containers with unready status: [app]")],
            "containerStatuses": [{
                "name": "app", "restartCount": restarts,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}
            }]
        }))
    }

    #[test]
    fn pod_phases() {
        assert_eq!(status(pod(json!({"phase": "Succeeded"}))).0, CURRENT);
        assert_eq!(
            status(pod(
                json!({"phase": "Running", "conditions": [cond("Ready", "True", "", "")]})
            ))
            .0,
            CURRENT
        );
        assert_eq!(
            status(pod(json!({"phase": "Running",
                "conditions": [cond("Ready", "False", "", "containers with unready status: [app]")]}))),
            (
                IN_PROGRESS,
                "Pod running but not ready: containers with unready status: [app]".into()
            )
        );
        assert_eq!(
            status(pod(json!({"phase": "Failed", "reason": "Evicted",
                "message": "The node was low on resource: memory."}))),
            (
                FAILED,
                "Pod failed: Evicted: The node was low on resource: memory.".into()
            )
        );
        assert_eq!(status(pod(json!({}))).0, IN_PROGRESS);
        assert_eq!(
            status(pod(json!({"phase": "Pending"}))),
            (IN_PROGRESS, "Pod pending".into())
        );
        assert_eq!(
            status(pod(json!({"phase": "Pending", "conditions": [cond(
                "PodScheduled", "False", "Unschedulable", "0/3 nodes are available")]}))),
            (
                IN_PROGRESS,
                "Pod not scheduled: Unschedulable: 0/3 nodes are available".into()
            )
        );
        assert_eq!(
            status(pod(json!({"phase": "Weird"}))).0,
            HealthStatus::Unknown
        );
    }

    #[test]
    fn crash_loop_fails_after_three_restarts() {
        assert_eq!(
            status(crash_looping(1)),
            (
                IN_PROGRESS,
                "container app is crash-looping (1 restart, last exit: Error, exit code 1)".into()
            )
        );
        assert_eq!(
            status(crash_looping(CRASH_LOOP_RESTARTS)),
            (
                FAILED,
                "container app is crash-looping (3 restarts, last exit: Error, exit code 1)".into()
            )
        );
    }

    #[test]
    fn image_pull_problems() {
        let waiting = |name: &str, reason: &str| {
            json!({"name": name, "restartCount": 0,
                   "state": {"waiting": {"reason": reason, "message": "pull access denied"}}})
        };
        let p = pod(json!({"phase": "Pending", "containerStatuses": [
            waiting("a", "ErrImagePull"), waiting("b", "ImagePullBackOff")]}));
        assert_eq!(
            status(p),
            (
                FAILED,
                "container b: ImagePullBackOff: pull access denied".into()
            )
        );
        let p = pod(
            json!({"phase": "Pending", "initContainerStatuses": [waiting("init", "ErrImagePull")]}),
        );
        assert_eq!(
            status(p),
            (
                IN_PROGRESS,
                "container init: ErrImagePull: pull access denied".into()
            )
        );
    }

    #[test]
    fn pvc_service_namespace() {
        let pvc = |phase: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "d"},
                   "status": {"phase": phase}})
        };
        assert_eq!(status(pvc("Bound")).0, CURRENT);
        assert_eq!(
            status(pvc("Pending")),
            (IN_PROGRESS, "PVC is Pending, not Bound".into())
        );
        assert_eq!(status(pvc("Lost")).0, FAILED);

        let svc = |ty: &str, st: Value| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                   "spec": {"type": ty}, "status": st})
        };
        assert_eq!(status(svc("ClusterIP", json!({}))).0, CURRENT);
        assert_eq!(
            status(svc("LoadBalancer", json!({"loadBalancer": {}}))),
            (IN_PROGRESS, "waiting for a load balancer address".into())
        );
        assert_eq!(
            status(svc(
                "LoadBalancer",
                json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}})
            ))
            .0,
            CURRENT
        );
        assert_eq!(
            status(svc(
                "LoadBalancer",
                json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}})
            ))
            .0,
            CURRENT
        );

        let ns = |phase: &str| {
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"},
                   "status": {"phase": phase}})
        };
        assert_eq!(status(ns("Active")).0, CURRENT);
        assert_eq!(status(ns("Terminating")).0, HealthStatus::Terminating);
    }

    #[test]
    fn crd_conditions() {
        let crd = |conds: Value| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "widgets.example.com"}, "status": {"conditions": conds}})
        };
        assert_eq!(
            status(crd(json!([
                cond("NamesAccepted", "True", "", ""),
                cond("Established", "True", "", "")
            ])))
            .0,
            CURRENT
        );
        assert_eq!(
            status(crd(json!([cond(
                "NamesAccepted",
                "False",
                "ListKindConflict",
                "\"WidgetList\" is already in use"
            )]))),
            (
                FAILED,
                "names not accepted: ListKindConflict: \"WidgetList\" is already in use".into()
            )
        );
        assert_eq!(
            status(crd(json!([cond("Established", "False", "Installing", "")]))),
            (IN_PROGRESS, "CRD not yet established".into())
        );
        assert_eq!(status(crd(json!([]))).0, IN_PROGRESS);
    }

    #[test]
    fn ready_condition_is_not_used_for_built_in_kinds() {
        // A crash-looping Pod has Ready=False; the Pod rules still see the crash loop.
        assert_eq!(status(crash_looping(5)).0, FAILED);
    }
}
