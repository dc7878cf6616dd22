//! An app's resource tree: the objects ferry applied (its inventory) and what they own
//! through `ownerReferences` (Deployment → ReplicaSet → Pod, CronJob → Job → Pod,
//! Service → EndpointSlice), with health per node, and the Kubernetes Events about them.

use std::collections::{BTreeSet, HashMap, HashSet};

pub use ferry_api::{AppEvent, Node};
use ferry_engine::health::health;
use ferry_kube::{Cluster, KubeError};
use ferry_model::{Health, HealthStatus, ObjectRef};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

/// Kinds whose objects the tree lists as children: (apiVersion, kind).
pub const CHILD_KINDS: &[(&str, &str)] = &[
    ("apps/v1", "ReplicaSet"),
    ("v1", "Pod"),
    ("batch/v1", "Job"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
];

/// Which child kinds (indexes into [`CHILD_KINDS`]) an object of `kind` may own.
fn owns(kind: &str) -> &'static [usize] {
    match kind {
        "Deployment" => &[0],
        "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => &[1],
        "CronJob" => &[2],
        "Service" => &[3],
        _ => &[],
    }
}

/// Most levels below an inventory object (Deployment → ReplicaSet → Pod is two).
const MAX_DEPTH: usize = 4;

fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn int_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// A one-line status for the node.
fn info(obj: &Value) -> Option<String> {
    let kind = str_at(obj, "/kind")?;
    Some(match kind {
        "Deployment" | "StatefulSet" | "ReplicaSet" => format!(
            "{}/{} ready",
            int_at(obj, "/status/readyReplicas"),
            int_at(obj, "/spec/replicas")
        ),
        "DaemonSet" => format!(
            "{}/{} ready",
            int_at(obj, "/status/numberReady"),
            int_at(obj, "/status/desiredNumberScheduled")
        ),
        "Pod" => {
            let phase = str_at(obj, "/status/phase").unwrap_or("Pending");
            match str_at(obj, "/spec/nodeName") {
                Some(node) => format!("{phase} on {node}"),
                None => phase.to_string(),
            }
        }
        "Job" => format!(
            "{} succeeded, {} failed",
            int_at(obj, "/status/succeeded"),
            int_at(obj, "/status/failed")
        ),
        _ => return None,
    })
}

/// A ReplicaSet scaled to zero with no Pods left: an old revision, not worth a node.
fn is_idle_replica_set(obj: &Value) -> bool {
    str_at(obj, "/kind") == Some("ReplicaSet")
        && int_at(obj, "/spec/replicas") == 0
        && int_at(obj, "/status/replicas") == 0
}

fn node(subject: ObjectRef, live: Option<&Value>, managed: bool, drifted: bool) -> Node {
    Node {
        subject,
        uid: live
            .and_then(|o| str_at(o, "/metadata/uid"))
            .map(str::to_string),
        health: live.map_or_else(
            || Health::new(HealthStatus::NotFound, "object not found"),
            health,
        ),
        managed,
        drifted,
        info: live.and_then(info),
        created_at: live
            .and_then(|o| str_at(o, "/metadata/creationTimestamp"))
            .map(str::to_string),
        children: Vec::new(),
    }
}

/// The live objects of the child kinds, grouped by the uid of each owner.
type Owned = HashMap<String, Vec<Value>>;

fn attach(n: &mut Node, owned: &Owned, depth: usize, seen: &mut HashSet<String>) {
    let Some(uid) = n.uid.clone() else { return };
    if depth >= MAX_DEPTH || !seen.insert(uid.clone()) {
        return;
    }
    for child in owned.get(&uid).into_iter().flatten() {
        if is_idle_replica_set(child) {
            continue;
        }
        let mut c = node(ferry_kube::object_ref(child), Some(child), false, false);
        attach(&mut c, owned, depth + 1, seen);
        n.children.push(c);
    }
    n.children.sort_by(|a, b| {
        (&a.subject.kind, &a.subject.name).cmp(&(&b.subject.kind, &b.subject.name))
    });
}

/// Builds the tree of `roots` (the app's inventory; `drifted` marks those that differ
/// from Git): one GET per root, one LIST per child kind in use and namespace.
pub async fn build(
    cluster: &Cluster,
    roots: &[ObjectRef],
    drifted: &[ObjectRef],
) -> Result<Vec<Node>, KubeError> {
    let lives: Vec<Option<Value>> = stream::iter(roots.to_vec())
        .map(|s| async move {
            match cluster.get(&s).await {
                Ok(v) => Ok(v),
                // A kind the cluster no longer serves: the object is gone.
                Err(KubeError::UnknownKind { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .buffered(16)
        .try_collect()
        .await?;

    // Child kinds reachable from the roots' kinds, and the namespaces to look in.
    let mut kinds: BTreeSet<usize> = BTreeSet::new();
    let mut todo: Vec<&str> = roots.iter().map(|r| r.kind.as_str()).collect();
    while let Some(kind) = todo.pop() {
        for &k in owns(kind) {
            if kinds.insert(k) {
                todo.push(CHILD_KINDS[k].1);
            }
        }
    }
    let namespaces: BTreeSet<&str> = roots
        .iter()
        .zip(&lives)
        .filter(|(_, live)| live.is_some())
        .filter_map(|(r, _)| r.namespace.as_deref())
        .collect();
    // Owned items: borrowed ones make the futures not `Send` for every lifetime.
    let lists: Vec<(usize, String)> = kinds
        .iter()
        .flat_map(|&k| namespaces.iter().map(move |ns| (k, ns.to_string())))
        .collect();
    let listed: Vec<Vec<Value>> = stream::iter(lists)
        .map(|(k, ns)| async move {
            let (api_version, kind) = CHILD_KINDS[k];
            match cluster.list_in(api_version, kind, &ns).await {
                Ok(items) => Ok(items),
                Err(KubeError::UnknownKind { .. }) => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let mut owned: Owned = HashMap::new();
    for obj in listed.into_iter().flatten() {
        let owners: Vec<String> = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|o| o.get("uid").and_then(Value::as_str).map(str::to_string))
            .collect();
        for uid in owners {
            owned.entry(uid).or_default().push(obj.clone());
        }
    }

    let mut seen = HashSet::new();
    Ok(roots
        .iter()
        .zip(&lives)
        .map(|(subject, live)| {
            let mut n = node(
                subject.clone(),
                live.as_ref(),
                true,
                drifted.contains(subject),
            );
            attach(&mut n, &owned, 0, &mut seen);
            n
        })
        .collect())
}

/// Every node of a tree, depth first.
pub fn flatten(nodes: &[Node]) -> Vec<&Node> {
    let mut out = Vec::new();
    let mut stack: Vec<&Node> = nodes.iter().rev().collect();
    while let Some(n) = stack.pop() {
        out.push(n);
        stack.extend(n.children.iter().rev());
    }
    out
}

/// Most events returned.
pub const MAX_EVENTS: usize = 100;

/// The Events in the tree's namespaces whose object is a node of the tree (by uid, or by
/// kind, namespace and name for events older than the object), newest first. Events
/// about the app's `Application` resource are included.
pub async fn events(
    cluster: &Cluster,
    app: &ferry_model::AppKey,
    nodes: &[Node],
    extra_namespaces: &[&str],
) -> Result<Vec<AppEvent>, KubeError> {
    let all = flatten(nodes);
    let uids: HashSet<&str> = all.iter().filter_map(|n| n.uid.as_deref()).collect();
    let names: HashSet<(&str, Option<&str>, &str)> = all
        .iter()
        .map(|n| {
            (
                n.subject.kind.as_str(),
                n.subject.namespace.as_deref(),
                n.subject.name.as_str(),
            )
        })
        .collect();
    let mut namespaces: BTreeSet<&str> = all
        .iter()
        .filter_map(|n| n.subject.namespace.as_deref())
        .collect();
    namespaces.extend(extra_namespaces);
    namespaces.insert(&app.namespace);
    let mut out = Vec::new();
    for ns in namespaces {
        for e in cluster.list_in("v1", "Event", ns).await? {
            let involved = &e["involvedObject"];
            let s = |p: &str| str_at(involved, p);
            let kind = s("/kind").unwrap_or_default();
            let name = s("/name").unwrap_or_default();
            let namespace = s("/namespace");
            let matches = s("/uid").is_some_and(|u| uids.contains(u))
                || names.contains(&(kind, namespace, name))
                || (kind == "Application"
                    && name == app.name
                    && namespace == Some(app.namespace.as_str()));
            if !matches {
                continue;
            }
            let time = [
                "/lastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .find_map(|p| str_at(&e, p))
            .map(str::to_string);
            out.push(AppEvent {
                kind: str_at(&e, "/type").unwrap_or("Normal").into(),
                reason: str_at(&e, "/reason").unwrap_or_default().into(),
                message: str_at(&e, "/message").unwrap_or_default().into(),
                count: e.get("count").and_then(Value::as_i64).unwrap_or(1),
                time,
                object: ObjectRef::new(s("/apiVersion").unwrap_or("v1"), kind, namespace, name),
                source: str_at(&e, "/source/component")
                    .or_else(|| str_at(&e, "/reportingComponent"))
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
            });
        }
    }
    let when = |e: &AppEvent| {
        e.time
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    };
    out.sort_by_key(|e| std::cmp::Reverse(when(e)));
    out.truncate(MAX_EVENTS);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn attaches_owned_objects_and_skips_idle_replica_sets() {
        let rs = |name: &str, uid: &str, replicas: i64| {
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": name, "namespace": "ns", "uid": uid,
                             "ownerReferences": [{"uid": "d1"}]},
                "spec": {"replicas": replicas}, "status": {"replicas": replicas, "readyReplicas": replicas,
                    "availableReplicas": replicas, "observedGeneration": 0}})
        };
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1-a", "namespace": "ns", "uid": "p1",
                         "ownerReferences": [{"uid": "r1"}]},
            "spec": {"nodeName": "kwok-0"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let mut owned: Owned = HashMap::new();
        owned.insert(
            "d1".into(),
            vec![rs("web-1", "r1", 1), rs("web-0", "r0", 0)],
        );
        owned.insert("r1".into(), vec![pod]);
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "uid": "d1"}, "spec": {"replicas": 1}});
        let mut n = node(ferry_kube::object_ref(&deploy), Some(&deploy), true, false);
        attach(&mut n, &owned, 0, &mut HashSet::new());
        assert_eq!(n.children.len(), 1);
        let rs = &n.children[0];
        assert_eq!(rs.subject.name, "web-1");
        assert_eq!(rs.info.as_deref(), Some("1/1 ready"));
        assert_eq!(rs.children[0].info.as_deref(), Some("Running on kwok-0"));
        assert_eq!(rs.children[0].health.status, HealthStatus::Current);
        let names: Vec<&str> = flatten(std::slice::from_ref(&n))
            .iter()
            .map(|n| n.subject.name.as_str())
            .collect();
        assert_eq!(names, ["web", "web-1", "web-1-a"]);

        let missing = node(
            ObjectRef::new("v1", "ConfigMap", Some("ns"), "c"),
            None,
            true,
            true,
        );
        assert_eq!(missing.health.status, HealthStatus::NotFound);
    }
}
