//! Normalisation, Secret masking and unified diffs of Kubernetes objects.
//!
//! Objects are compared without the fields the API server owns ([`normalize`]),
//! rendered as YAML with sorted keys ([`to_yaml`]) and diffed line by line
//! ([`unified`]). Secret values never reach the output: [`mask_pair`] replaces them
//! with masks that only tell whether a value changed.

use ferry_model::ObjectRef;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use similar::TextDiff;

/// Metadata fields the API server rewrites on every write to an object, whatever was
/// written (with `status`, removed by [`without_write_stamps`]).
const WRITE_STAMPS: &[&str] = &["managedFields", "resourceVersion"];

/// The other metadata fields set by the API server, never by the user.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "generation",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// kubectl's copy of the last applied object; repeats a Secret's values.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Annotations written by tools and controllers, not part of the desired state.
const SERVER_ANNOTATIONS: &[&str] = &[LAST_APPLIED, "deployment.kubernetes.io/revision"];

/// The mask for a Secret value that is the same on both sides (or on one side only).
pub const MASK: &str = "***";
/// The mask for the live side of a changed Secret value.
pub const MASK_BEFORE: &str = "*** (before)";
/// The mask for the desired side of a changed Secret value.
pub const MASK_AFTER: &str = "*** (after)";

/// Secret fields holding values.
const SECRET_FIELDS: &[&str] = &["data", "stringData"];

/// A copy of `obj` without server-owned fields: `status`, server-set metadata
/// (`managedFields`, `resourceVersion`, `uid`, `generation`, `creationTimestamp`,
/// `selfLink`, `deletionTimestamp`, `deletionGracePeriodSeconds`) and the
/// `kubectl.kubernetes.io/last-applied-configuration` and
/// `deployment.kubernetes.io/revision` annotations. Empty `labels`/`annotations`
/// maps are removed, so "no annotations" and "only server annotations" compare equal.
pub fn normalize(obj: &Value) -> Value {
    let mut out = without_write_stamps(obj);
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in SERVER_METADATA {
            meta.remove(*field);
        }
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            for key in SERVER_ANNOTATIONS {
                annotations.remove(*key);
            }
        }
        for field in ["labels", "annotations"] {
            if meta
                .get(field)
                .is_some_and(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty))
            {
                meta.remove(field);
            }
        }
    }
    out
}

/// A copy of `obj` without what the API server changes on every write: `status`,
/// `metadata.managedFields` and `metadata.resourceVersion`. Two such copies of an object
/// differ only when the object itself was changed, not just its status.
pub fn without_write_stamps(obj: &Value) -> Value {
    let mut out = obj.clone();
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    map.remove("status");
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in WRITE_STAMPS {
            meta.remove(*field);
        }
    }
    out
}

/// True for a core `v1` Secret.
fn is_secret(obj: &Value) -> bool {
    obj.get("kind").and_then(Value::as_str) == Some("Secret")
        && obj.get("apiVersion").and_then(Value::as_str) == Some("v1")
}

/// Masks the values of one Secret. `other` is the object on the other side of a
/// diff (or `Value::Null`): a value that differs from the other side's value for the
/// same field and key gets `changed`, anything else [`MASK`]. The
/// `last-applied-configuration` annotation, which repeats the values, is masked too.
fn mask_against(obj: &Value, other: &Value, changed: &str) -> Value {
    let mut out = obj.clone();
    if !is_secret(obj) {
        return out;
    }
    for field in SECRET_FIELDS {
        let Some(values) = out.get_mut(*field).and_then(Value::as_object_mut) else {
            continue;
        };
        for (key, value) in values.iter_mut() {
            let theirs = other.get(*field).and_then(|m| m.get(key));
            let mask = match theirs {
                Some(theirs) if theirs != value => changed,
                _ => MASK,
            };
            *value = Value::String(mask.into());
        }
    }
    if let Some(a) = out
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.get_mut(LAST_APPLIED))
    {
        *a = Value::String(MASK.into());
    }
    out
}

/// A copy of `obj` with every value of a Secret's `data` and `stringData` replaced
/// by [`MASK`]. Other objects are returned unchanged.
pub fn mask_secret(obj: &Value) -> Value {
    mask_against(obj, &Value::Null, MASK)
}

/// Masks both sides of a diff. Values equal on both sides (or present on one side
/// only) become [`MASK`]; a value that changed becomes [`MASK_BEFORE`] on the live
/// side and [`MASK_AFTER`] on the desired side, so the diff shows which keys changed
/// without showing any value. Either side may be `Value::Null` (absent).
pub fn mask_pair(live: &Value, desired: &Value) -> (Value, Value) {
    (
        mask_against(live, desired, MASK_BEFORE),
        mask_against(desired, live, MASK_AFTER),
    )
}

/// Serialises a JSON value with object keys in sorted order, whatever the map type.
pub(crate) struct Sorted<'a>(pub(crate) &'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &Sorted(value))?;
                }
                out.end()
            }
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            other => other.serialize(serializer),
        }
    }
}

/// Renders a value as YAML with sorted keys; multi-line strings become literal
/// blocks, so a diff shows their changed lines. Deterministic for equal values.
pub fn to_yaml(v: &Value) -> String {
    let options = serde_saphyr::ser_options! {
        // Never fold long lines: a folded scalar re-wraps and hides the changed part.
        folded_wrap_chars: usize::MAX,
    };
    serde_saphyr::to_string_with_options(&Sorted(v), options).unwrap_or_else(|_| {
        // JSON is YAML; this is only reached if the emitter rejects a value.
        let mut json = serde_json::to_string_pretty(v).unwrap_or_default();
        json.push('\n');
        json
    })
}

/// A unified diff (3 lines of context) of `live` → `desired`, both normalised with
/// [`normalize`] and masked with [`mask_pair`], with headers
/// `--- live/<Kind/ns/name>` and `+++ desired/<Kind/ns/name>`. `None` stands for an
/// absent object (create or delete). Empty when both render the same.
pub fn unified(subject: &ObjectRef, live: Option<&Value>, desired: Option<&Value>) -> String {
    let live = live.map_or(Value::Null, normalize);
    let desired = desired.map_or(Value::Null, normalize);
    let (live, desired) = mask_pair(&live, &desired);
    let render = |v: &Value| {
        if v.is_null() {
            String::new()
        } else {
            to_yaml(v)
        }
    };
    let (old, new) = (render(&live), render(&desired));
    if old == new {
        return String::new();
    }
    TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{subject}"), &format!("desired/{subject}"))
        .to_string()
}

const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// Line counts still expected in the current hunk, from its `@@ -a,b +c,d @@` header.
fn hunk_lengths(header: &str) -> Option<(usize, usize)> {
    let mut parts = header.strip_prefix("@@ ")?.split(' ');
    let len = |range: &str, sign: char| -> Option<usize> {
        let range = range.strip_prefix(sign)?;
        match range.split_once(',') {
            Some((_, n)) => n.parse().ok(),
            None => Some(1),
        }
    };
    Some((len(parts.next()?, '-')?, len(parts.next()?, '+')?))
}

/// Colours a unified diff (one or several concatenated) for a terminal: file headers
/// bold, hunk headers cyan, removed lines red, added lines green. Lines inside a hunk
/// are classified by the hunk's line counts, so a removed YAML line that starts with
/// `--` is never mistaken for a file header.
pub fn colorize(diff: &str) -> String {
    let mut out = String::with_capacity(diff.len() + diff.len() / 4);
    // Old and new lines left in the current hunk.
    let mut left = (0usize, 0usize);
    for line in diff.split_inclusive('\n') {
        let (text, newline) = match line.strip_suffix('\n') {
            Some(text) => (text, "\n"),
            None => (line, ""),
        };
        let in_hunk = left != (0, 0);
        let colour = if in_hunk {
            match text.chars().next() {
                Some('-') => {
                    left.0 = left.0.saturating_sub(1);
                    Some(RED)
                }
                Some('+') => {
                    left.1 = left.1.saturating_sub(1);
                    Some(GREEN)
                }
                Some('\\') => None,
                _ => {
                    left = (left.0.saturating_sub(1), left.1.saturating_sub(1));
                    None
                }
            }
        } else if let Some(lengths) = hunk_lengths(text) {
            left = lengths;
            Some(CYAN)
        } else if text.starts_with("--- ") || text.starts_with("+++ ") {
            Some(BOLD)
        } else {
            None
        };
        match colour {
            Some(c) => {
                out.push_str(c);
                out.push_str(text);
                out.push_str(RESET);
            }
            None => out.push_str(text),
        }
        out.push_str(newline);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm_ref() -> ObjectRef {
        ObjectRef::new("v1", "ConfigMap", Some("ns"), "a")
    }

    fn secret(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "s", "namespace": "ns"}, "type": "Opaque", "data": data})
    }

    #[test]
    fn normalize_drops_server_fields() {
        let live = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "a", "namespace": "ns", "uid": "123", "resourceVersion": "9",
                "generation": 1, "creationTimestamp": "t", "selfLink": "/x",
                "managedFields": [{"manager": "ferry"}],
                "deletionTimestamp": "t", "deletionGracePeriodSeconds": 30,
                "labels": {"app": "a"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "deployment.kubernetes.io/revision": "3"
                }
            },
            "data": {"k": "v"},
            "status": {"x": 1}
        });
        assert_eq!(
            normalize(&live),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "a"}},
                   "data": {"k": "v"}})
        );
        assert_eq!(
            without_write_stamps(&live)["metadata"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            [
                "annotations",
                "creationTimestamp",
                "deletionGracePeriodSeconds",
                "deletionTimestamp",
                "generation",
                "labels",
                "name",
                "namespace",
                "selfLink",
                "uid"
            ]
        );
        assert_eq!(without_write_stamps(&live).get("status"), None);
    }

    #[test]
    fn mask_secret_hides_every_value() {
        let mut s = secret(json!({"password": "aHVudGVyMg==", "user": "YWRtaW4="}));
        s["stringData"] = json!({"token": "plain-token"});
        s["metadata"]["annotations"] = json!({
            "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"
        });
        let masked = mask_secret(&s);
        let text = to_yaml(&masked);
        for value in ["aHVudGVyMg==", "YWRtaW4=", "plain-token"] {
            assert!(!text.contains(value), "{value} leaked:\n{text}");
        }
        assert_eq!(masked["data"]["password"], MASK);
        assert_eq!(masked["stringData"]["token"], MASK);
        // Not a Secret: untouched.
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}});
        assert_eq!(mask_secret(&cm), cm);
    }

    #[test]
    fn mask_pair_shows_only_what_changed() {
        let live = secret(json!({"same": "c2FtZQ==", "changed": "b2xk", "removed": "Z29uZQ=="}));
        let desired = secret(json!({"same": "c2FtZQ==", "changed": "bmV3", "added": "YWRk"}));
        let (l, d) = mask_pair(&live, &desired);
        assert_eq!(
            l["data"],
            json!({"same": MASK, "changed": MASK_BEFORE, "removed": MASK})
        );
        assert_eq!(
            d["data"],
            json!({"same": MASK, "changed": MASK_AFTER, "added": MASK})
        );
    }

    #[test]
    fn secret_values_never_appear_in_diffs() {
        let subject = ObjectRef::new("v1", "Secret", Some("ns"), "s");
        let live = secret(json!({"same": "c2FtZQ==", "changed": "b2xkLXZhbHVl"}));
        let desired =
            secret(json!({"same": "c2FtZQ==", "changed": "bmV3LXZhbHVl", "added": "YWRkZWQ="}));
        for diff in [
            unified(&subject, Some(&live), Some(&desired)),
            unified(&subject, None, Some(&desired)),
            unified(&subject, Some(&live), None),
        ] {
            assert!(!diff.is_empty());
            for value in ["c2FtZQ==", "b2xkLXZhbHVl", "bmV3LXZhbHVl", "YWRkZWQ="] {
                assert!(!diff.contains(value), "{value} leaked:\n{diff}");
            }
        }
        let diff = unified(&subject, Some(&live), Some(&desired));
        let expected = r#"--- live/Secret/ns/s
+++ desired/Secret/ns/s
@@ -1,6 +1,7 @@
 apiVersion: v1
 data:
-  changed: "*** (before)"
+  added: "***"
+  changed: "*** (after)"
   same: "***"
 kind: Secret
 metadata:
"#;
        assert_eq!(diff, expected);
    }

    #[test]
    fn equal_objects_give_an_empty_diff() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "a", "namespace": "ns"}, "data": {"k": "v"}});
        assert_eq!(unified(&cm_ref(), Some(&obj), Some(&obj)), "");
        let mut live = obj.clone();
        live["metadata"]["resourceVersion"] = json!("42");
        live["metadata"]["managedFields"] = json!([{"manager": "ferry"}]);
        live["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
        live["status"] = json!({"phase": "whatever"});
        assert_eq!(unified(&cm_ref(), Some(&live), Some(&obj)), "");
        assert_eq!(unified(&cm_ref(), None, None), "");
    }

    #[test]
    fn unified_diff_format() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "a", "namespace": "ns"},
                          "data": {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5",
                                   "f": "6", "g": "7", "h": "8"}});
        let mut desired = live.clone();
        desired["data"]["h"] = json!("eight");
        let diff = unified(&cm_ref(), Some(&live), Some(&desired));
        let expected = r#"--- live/ConfigMap/ns/a
+++ desired/ConfigMap/ns/a
@@ -7,7 +7,7 @@
   e: "5"
   f: "6"
   g: "7"
-  h: "8"
+  h: eight
 kind: ConfigMap
 metadata:
   name: a
"#;
        assert_eq!(diff, expected);
    }

    #[test]
    fn create_and_delete_diffs() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "a", "namespace": "ns"}});
        let create = unified(&cm_ref(), None, Some(&obj));
        assert!(
            create.starts_with(
                "--- live/ConfigMap/ns/a\n+++ desired/ConfigMap/ns/a\n@@ -0,0 +1,5 @@\n"
            ),
            "{create}"
        );
        assert!(
            create.lines().skip(3).all(|l| l.starts_with('+')),
            "{create}"
        );
        let delete = unified(&cm_ref(), Some(&obj), None);
        assert!(
            delete.lines().skip(3).all(|l| l.starts_with('-')),
            "{delete}"
        );
    }

    #[test]
    fn yaml_is_sorted_and_readable() {
        let v = json!({"b": 1, "a": {"z": true, "y": "yes", "x": "123"}, "s": "line1\nline2\n",
                       "l": ["one", {"k": null}], "e": {}});
        let yaml = to_yaml(&v);
        let keys: Vec<_> = yaml.lines().filter(|l| !l.starts_with(' ')).collect();
        assert_eq!(keys[0], "a:");
        assert!(yaml.contains("  x: \"123\""), "{yaml}");
        assert!(yaml.contains("  \"y\": \"yes\""), "{yaml}");
        assert!(yaml.contains("s: |\n  line1\n  line2\n"), "{yaml}");
        let long = "word ".repeat(40);
        let yaml = to_yaml(&json!({ "long": long.trim() }));
        assert_eq!(yaml.lines().count(), 1, "{yaml}");
    }

    #[test]
    fn yaml_round_trips_tricky_values() {
        let v = json!({
            "strings": ["null", "~", "on", "NO", "1e3", "0x1F", "a: b", "- x", "#hash",
                        " leading", "trailing ", "", "multi\nline\n  indented\n", "tab\there",
                        "quote's", "\"double\"", "ünïcode", "*** (before)"],
            "numbers": [0, -3, 1.5, 18446744073709551615u64],
            "bools": [true, false],
            "nothing": null,
            "nested": {"empty_list": [], "empty_map": {}, "list_of_lists": [[1], [2, 3]]}
        });
        let yaml = to_yaml(&v);
        let back: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, v, "{yaml}");
    }

    #[test]
    fn colorize_marks_lines() {
        let diff = "--- live/x\n+++ desired/x\n@@ -1,3 +1,3 @@\n a\n--- b\n+++ c\n d\n";
        let coloured = colorize(diff);
        let lines: Vec<_> = coloured.lines().collect();
        assert_eq!(lines[0], format!("{BOLD}--- live/x{RESET}"));
        assert_eq!(lines[1], format!("{BOLD}+++ desired/x{RESET}"));
        assert_eq!(lines[2], format!("{CYAN}@@ -1,3 +1,3 @@{RESET}"));
        assert_eq!(lines[3], " a");
        assert_eq!(
            lines[4],
            format!("{RED}--- b{RESET}"),
            "removed line, not a header"
        );
        assert_eq!(lines[5], format!("{GREEN}+++ c{RESET}"));
        assert_eq!(lines[6], " d");
        // Concatenated diffs: the second file header is bold again.
        let two = colorize(&format!("{diff}{diff}"));
        assert_eq!(
            two.lines().nth(7).unwrap(),
            format!("{BOLD}--- live/x{RESET}")
        );
        assert_eq!(colorize(""), "");
    }
}
