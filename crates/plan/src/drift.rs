//! Drift explained: which fields of a live object differ from what Git wants, and which
//! field manager last wrote each of them, read from `metadata.managedFields`.
//!
//! Both objects are compared after [`crate::diff::normalize`]. A field's manager
//! is found by walking each managedFields entry's `fieldsV1` set (`f:spec` → `f:replicas`,
//! `k:{"name":"web"}` for an item of a keyed list, `v:` for a set item, `i:` for an index)
//! against the live object. The time reported is the entry's `time`, i.e. that manager's
//! last write to the object — the Kubernetes API keeps no per-field time. Writes through
//! a subresource (`kubectl scale`) get no `time` from the API server; for those the time
//! the agent first saw the app drift is reported instead ([`TimeSource::Detected`]).
//!
//! Only field paths are reported, never values, so Secrets need no masking here.

use std::time::SystemTime;

use serde_json::Value;

pub use ferry_api::{FieldChange, FieldDrift, ManagerInfo, TimeSource};

/// One segment of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A differing field: its path in the live object (for ownership), its label, how it differs.
struct Found {
    segs: Vec<Seg>,
    label: String,
    change: FieldChange,
}

fn key_label(label: &str, key: &str) -> String {
    let plain = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (label.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{label}.{key}"),
        (_, false) => format!("{label}[{key}]"),
    }
}

/// The `name` of every item, when all items are objects with a string `name`.
fn names(items: &[Value]) -> Option<Vec<&str>> {
    items
        .iter()
        .map(|i| i.get("name").and_then(Value::as_str))
        .collect()
}

fn walk(live: &Value, want: &Value, segs: &mut Vec<Seg>, label: &str, out: &mut Vec<Found>) {
    let found = |segs: &Vec<Seg>, label: &str, change| Found {
        segs: segs.clone(),
        label: label.to_string(),
        change,
    };
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => {
            let mut keys: Vec<&String> = l.keys().chain(w.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let sub = key_label(label, key);
                segs.push(Seg::Key(key.clone()));
                match (l.get(key), w.get(key)) {
                    (Some(a), Some(b)) => walk(a, b, segs, &sub, out),
                    (Some(_), None) => out.push(found(segs, &sub, FieldChange::Extra)),
                    (None, Some(_)) => out.push(found(segs, &sub, FieldChange::Missing)),
                    (None, None) => {}
                }
                segs.pop();
            }
        }
        (Value::Array(l), Value::Array(w)) => match (names(l), names(w)) {
            (Some(ln), Some(wn)) if !l.is_empty() || !w.is_empty() => {
                let mut all: Vec<&str> = ln.clone();
                all.extend(wn.iter().filter(|n| !ln.contains(n)));
                for name in all {
                    let sub = format!("{label}[name={name}]");
                    let li = ln.iter().position(|n| *n == name);
                    let wi = wn.iter().position(|n| *n == name);
                    match (li, wi) {
                        (Some(i), Some(j)) => {
                            segs.push(Seg::Index(i));
                            walk(&l[i], &w[j], segs, &sub, out);
                            segs.pop();
                        }
                        (Some(i), None) => {
                            segs.push(Seg::Index(i));
                            out.push(found(segs, &sub, FieldChange::Extra));
                            segs.pop();
                        }
                        (None, _) => {
                            // Not in the live list: no live path below the list itself.
                            out.push(Found {
                                segs: segs.clone(),
                                label: sub,
                                change: FieldChange::Missing,
                            });
                        }
                    }
                }
            }
            _ if l.len() == w.len() => {
                for (i, (a, b)) in l.iter().zip(w).enumerate() {
                    segs.push(Seg::Index(i));
                    walk(a, b, segs, &format!("{label}[{i}]"), out);
                    segs.pop();
                }
            }
            _ => out.push(found(segs, label, FieldChange::Changed)),
        },
        (a, b) if a != b => out.push(found(segs, label, FieldChange::Changed)),
        _ => {}
    }
}

/// The index of the item of `list` that a `k:`/`v:`/`i:` key of `fieldsV1` designates.
fn item_index(list: &Value, key: &str) -> Option<usize> {
    let items = list.as_array()?;
    if let Some(json) = key.strip_prefix("k:") {
        let want: serde_json::Map<String, Value> = serde_json::from_str(json).ok()?;
        items
            .iter()
            .position(|item| want.iter().all(|(k, v)| item.get(k) == Some(v)))
    } else if let Some(json) = key.strip_prefix("v:") {
        let want: Value = serde_json::from_str(json).ok()?;
        items.iter().position(|item| *item == want)
    } else {
        key.strip_prefix("i:")?.parse().ok()
    }
}

/// The paths of `live` that a `fieldsV1` set owns.
fn owned(fields: &Value, live: &Value, segs: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    let Some(map) = fields.as_object() else {
        return;
    };
    for (key, sub) in map {
        if key == "." {
            out.push(segs.clone());
            continue;
        }
        let (seg, child) = if let Some(name) = key.strip_prefix("f:") {
            (
                Seg::Key(name.to_string()),
                live.get(name).unwrap_or(&Value::Null),
            )
        } else {
            let Some(i) = item_index(live, key) else {
                continue;
            };
            (Seg::Index(i), &live[i])
        };
        segs.push(seg);
        if sub.as_object().is_none_or(|m| m.is_empty()) {
            out.push(segs.clone());
        } else {
            owned(sub, child, segs, out);
        }
        segs.pop();
    }
}

/// One `metadata.managedFields` entry with the live paths it owns.
struct Manager {
    info: ManagerInfo,
    paths: Vec<Vec<Seg>>,
}

/// Who wrote `live`: one entry per `metadata.managedFields` entry (manager, operation,
/// subresource, time; empty strings read as absent).
pub fn manager_infos(live: &Value) -> Vec<ManagerInfo> {
    managed_fields(live).map(manager_info).collect()
}

fn managed_fields(live: &Value) -> impl Iterator<Item = &Value> {
    live.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn manager_info(entry: &Value) -> ManagerInfo {
    let s = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    ManagerInfo {
        manager: s("manager").unwrap_or_else(|| "unknown".into()),
        operation: s("operation"),
        subresource: s("subresource"),
        time: s("time"),
    }
}

fn managers(live: &Value) -> Vec<Manager> {
    managed_fields(live)
        .map(|e| {
            let mut paths = Vec::new();
            owned(
                e.get("fieldsV1").unwrap_or(&Value::Null),
                live,
                &mut Vec::new(),
                &mut paths,
            );
            Manager {
                info: manager_info(e),
                paths,
            }
        })
        .collect()
}

/// "12 s ago", "3 min ago", "2 h ago", "4 d ago".
pub fn ago(time: &str, now: SystemTime) -> Option<String> {
    let then = humantime::parse_rfc3339_weak(time).ok()?;
    let secs = now.duration_since(then).map(|d| d.as_secs()).unwrap_or(0);
    Some(match secs {
        0..5 => "just now".into(),
        5..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86400),
    })
}

/// The fields in which `live` differs from `desired` (the server-side-apply dry-run of
/// the Git manifest), each with the manager that last wrote it. Both are normalised
/// here; `live` must still carry its `managedFields`. `detected` is when the agent first
/// saw the app drift, used for managers whose entry has no time.
pub fn explain(
    live: &Value,
    desired: &Value,
    now: SystemTime,
    detected: Option<SystemTime>,
) -> Vec<FieldDrift> {
    let norm_live = crate::diff::normalize(live);
    let norm_want = crate::diff::normalize(desired);
    let mut found = Vec::new();
    walk(&norm_live, &norm_want, &mut Vec::new(), "", &mut found);
    let managers = managers(live);
    found
        .into_iter()
        .map(|f| {
            let touches = |m: &&Manager| {
                m.paths
                    .iter()
                    .any(|p| p.starts_with(&f.segs) || f.segs.starts_with(p))
            };
            // Whoever removed a field no longer owns it: nobody to name.
            let by = if f.change == FieldChange::Missing {
                None
            } else {
                let mut candidates: Vec<&Manager> = managers.iter().filter(touches).collect();
                if candidates
                    .iter()
                    .any(|m| m.info.manager != ferry_model::FIELD_MANAGER)
                {
                    candidates.retain(|m| m.info.manager != ferry_model::FIELD_MANAGER);
                }
                candidates
                    .into_iter()
                    .max_by_key(|m| m.info.time.as_deref().unwrap_or(""))
            };
            let (time, time_source) =
                match (by.and_then(|m| m.info.time.as_deref()), by.and(detected)) {
                    (Some(t), _) => (Some(t.to_string()), Some(TimeSource::ManagedFields)),
                    (None, Some(d)) => (
                        Some(humantime::format_rfc3339_seconds(d).to_string()),
                        Some(TimeSource::Detected),
                    ),
                    (None, None) => (None, None),
                };
            let when = time
                .as_deref()
                .and_then(|t| ago(t, now))
                .map(|a| format!(" {a}"))
                .unwrap_or_default();
            let summary = match (f.change, by) {
                (FieldChange::Missing, _) => {
                    format!("{} missing on the cluster (set in Git)", f.label)
                }
                (FieldChange::Changed, Some(m)) => {
                    format!("{} changed by {}{when}", f.label, m.info.manager)
                }
                (FieldChange::Extra, Some(m)) => {
                    format!("{} added by {}{when} (not in Git)", f.label, m.info.manager)
                }
                (FieldChange::Changed, None) => format!("{} changed on the cluster", f.label),
                (FieldChange::Extra, None) => {
                    format!("{} added on the cluster (not in Git)", f.label)
                }
            };
            FieldDrift {
                path: f.label,
                change: f.change,
                manager: by.map(|m| m.info.manager.clone()),
                operation: by.and_then(|m| m.info.operation.clone()),
                subresource: by.and_then(|m| m.info.subresource.clone()),
                time,
                time_source,
                summary,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn at(time: &str) -> SystemTime {
        humantime::parse_rfc3339(time).unwrap()
    }

    fn deployment(replicas: i64, image: &str, managed: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "resourceVersion": "7",
                         "labels": {"app.kubernetes.io/name": "web"},
                         "managedFields": managed},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "sidecar", "image": "envoy"},
                {"name": "web", "image": image}
            ]}}},
            "status": {"replicas": replicas}
        })
    }

    fn managed() -> Value {
        json!([
            {"manager": "ferry", "operation": "Apply", "time": "2026-01-01T10:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:app.kubernetes.io/name": {}}},
               "f:spec": {"f:template": {"f:spec": {"f:containers": {
                 "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}},
                 "k:{\"name\":\"sidecar\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}},
            {"manager": "kubectl", "operation": "Update", "subresource": "scale",
             "time": "2026-01-01T11:58:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
             "time": "2026-01-01T11:59:00Z", "fieldsV1": {"f:status": {"f:replicas": {}}}}
        ])
    }

    #[test]
    fn names_the_manager_of_each_changed_field() {
        let live = deployment(5, "web:2", managed());
        let want = deployment(2, "web:1", json!([]));
        let now = at("2026-01-01T12:00:00Z");
        let d = explain(&live, &want, now, None);
        assert_eq!(d.len(), 2, "{d:#?}");
        assert_eq!(d[0].path, "spec.replicas");
        assert_eq!(d[0].change, FieldChange::Changed);
        assert_eq!(d[0].manager.as_deref(), Some("kubectl"));
        assert_eq!(d[0].subresource.as_deref(), Some("scale"));
        assert_eq!(d[0].summary, "spec.replicas changed by kubectl 2 min ago");
        // Owned only by ferry (a server-side apply by someone else would own it): ferry.
        assert_eq!(d[1].path, "spec.template.spec.containers[name=web].image");
        assert_eq!(d[1].manager.as_deref(), Some("ferry"));
    }

    #[test]
    fn scale_subresource_without_time_uses_detection_time() {
        let mut m = managed();
        m[1].as_object_mut().unwrap().remove("time");
        let live = deployment(5, "web:1", m);
        let want = deployment(2, "web:1", json!([]));
        let now = at("2026-01-01T12:00:00Z");
        let d = explain(&live, &want, now, Some(at("2026-01-01T11:57:00Z")));
        assert_eq!(d[0].summary, "spec.replicas changed by kubectl 3 min ago");
        assert_eq!(d[0].time.as_deref(), Some("2026-01-01T11:57:00Z"));
        assert_eq!(d[0].time_source, Some(TimeSource::Detected));
        let d = explain(&live, &want, now, None);
        assert_eq!(d[0].summary, "spec.replicas changed by kubectl");
        assert_eq!(d[0].time_source, None);
    }

    #[test]
    fn missing_extra_and_keys_with_dots() {
        let mut live = deployment(2, "web:1", managed());
        live["metadata"]["labels"]["team"] = json!("x");
        live["metadata"]["managedFields"][1]["manager"] = json!("kubectl-label");
        live["metadata"]["managedFields"][1]["fieldsV1"] =
            json!({"f:metadata": {"f:labels": {"f:team": {}}}});
        live["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app.kubernetes.io/name");
        let want = deployment(2, "web:1", json!([]));
        let d = explain(&live, &want, at("2026-01-01T12:00:00Z"), None);
        let lines: Vec<&str> = d.iter().map(|f| f.summary.as_str()).collect();
        assert_eq!(
            lines,
            [
                "metadata.labels[app.kubernetes.io/name] missing on the cluster (set in Git)",
                "metadata.labels.team added by kubectl-label 2 min ago (not in Git)",
            ]
        );
    }

    #[test]
    fn lists_without_names_and_secrets() {
        let live = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "managedFields": [
                {"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-01T11:00:00Z",
                 "fieldsV1": {"f:data": {"f:password": {}}}}]},
            "data": {"password": "bmV3", "user": "YQ=="}});
        let want = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": "b2xk", "user": "YQ=="}});
        let d = explain(&live, &want, at("2026-01-01T12:00:00Z"), None);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].summary,
            "data.password changed by kubectl-edit 1 h ago"
        );
        let text = serde_json::to_string(&d).unwrap();
        assert!(!text.contains("bmV3") && !text.contains("b2xk"), "{text}");

        let a = json!({"args": ["a", "b"]});
        let b = json!({"args": ["a", "c"]});
        let d = explain(&a, &b, SystemTime::now(), None);
        assert_eq!(d[0].path, "args[1]");
        let c = json!({"args": ["a"]});
        assert_eq!(explain(&a, &c, SystemTime::now(), None)[0].path, "args");
    }

    #[test]
    fn set_and_index_keys() {
        let live = json!({"spec": {"finalizers": ["a", "b"], "ports": [1, 2]},
            "metadata": {"managedFields": [
                {"manager": "m1", "time": "2026-01-01T11:00:00Z",
                 "fieldsV1": {"f:spec": {"f:finalizers": {"v:\"b\"": {}}, "f:ports": {"i:1": {}}}}}]}});
        let mut paths = Vec::new();
        for m in managers(&live) {
            paths.extend(m.paths);
        }
        assert_eq!(
            paths,
            [
                vec![
                    Seg::Key("spec".into()),
                    Seg::Key("finalizers".into()),
                    Seg::Index(1)
                ],
                vec![
                    Seg::Key("spec".into()),
                    Seg::Key("ports".into()),
                    Seg::Index(1)
                ],
            ]
        );
    }

    #[test]
    fn ages() {
        let now = at("2026-01-01T12:00:00Z");
        let t = |s: u64| {
            let then = now - Duration::from_secs(s);
            ago(&humantime::format_rfc3339(then).to_string(), now).unwrap()
        };
        assert_eq!(t(1), "just now");
        assert_eq!(t(30), "30 s ago");
        assert_eq!(t(150), "2 min ago");
        assert_eq!(t(7300), "2 h ago");
        assert_eq!(t(200_000), "2 d ago");
        assert_eq!(ago("not a time", now), None);
    }
}
