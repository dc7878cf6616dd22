//! Fingerprints for the in-sync memo: what a plan learned of an object ([`Known`]), stable
//! across Rust releases and processes so that it can be kept in the app's inventory.
//!
//! A digest is the SHA-256 of a value's canonical JSON: compact `serde_json` output with
//! object keys in sorted order at every level. The keys are sorted explicitly, so the
//! digest is the same whether or not serde_json's `preserve_order` feature is enabled
//! (the workspace does not enable it).

use ferry_model::{Digest, Known};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::diff::Sorted;

/// The SHA-256 of `value`'s canonical JSON.
pub fn digest(value: &Value) -> Digest {
    let json = serde_json::to_vec(&Sorted(value)).expect("a JSON value serialises");
    Digest(Sha256::digest(json).into())
}

/// The desired manifest's digest and the digest of `live` cut down to the fields the
/// manifest sets; `None` when `live` lacks a field the manifest sets (a write-only field
/// such as a Secret's `stringData`, or one removed live), so that no memo can vouch for it.
pub fn knowledge(manifest: &Value, live: &Value) -> Option<Known> {
    Some(Known {
        manifest: digest(manifest),
        live: digest(&project(live, manifest)?),
    })
}

/// `live` cut down to the fields `manifest` sets: maps key by key (a `null` in the
/// manifest sets nothing), lists and scalars whole.
fn project(live: &Value, manifest: &Value) -> Option<Value> {
    match (live, manifest) {
        (Value::Object(l), Value::Object(m)) => {
            let mut out = serde_json::Map::new();
            for (k, mv) in m.iter().filter(|(_, v)| !v.is_null()) {
                out.insert(k.clone(), project(l.get(k)?, mv)?);
            }
            Some(Value::Object(out))
        }
        _ => Some(live.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn in_sync_holds_while_the_managed_fields_and_manifest_are_unchanged() {
        let manifest = json!({"metadata": {"name": "a", "labels": {"app": "x"}},
                              "spec": {"replicas": 1, "template": {"c": [1]}}});
        let live = json!({"metadata": {"name": "a", "labels": {"app": "x"}, "resourceVersion": "1",
                                       "annotations": {"revision": "1"}},
                          "spec": {"replicas": 1, "template": {"c": [1]}, "strategy": "r"},
                          "status": {"ready": 0}});
        let base = knowledge(&manifest, &live).unwrap();

        let mut later = live.clone();
        later["status"]["ready"] = json!(1);
        later["metadata"]["resourceVersion"] = json!("2");
        later["metadata"]["annotations"]["revision"] = json!("2");
        later["spec"]["strategy"] = json!("other");
        assert_eq!(
            knowledge(&manifest, &later),
            Some(base),
            "fields ferry does not set"
        );

        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(3);
        assert_ne!(
            knowledge(&manifest, &edited),
            Some(base),
            "a field ferry sets"
        );
        let mut removed = live.clone();
        removed["metadata"]["labels"] = json!({});
        assert_eq!(
            knowledge(&manifest, &removed),
            None,
            "a label ferry sets, removed"
        );
        let mut item = live.clone();
        item["spec"]["template"]["c"] = json!([1, 2]);
        assert_ne!(knowledge(&manifest, &item), Some(base), "lists count whole");
        let mut wanted = manifest.clone();
        wanted["spec"]["replicas"] = json!(2);
        assert_ne!(knowledge(&wanted, &live), Some(base), "another manifest");
        let secret = json!({"stringData": {"password": "x"}});
        let live_secret = json!({"data": {"password": "eA=="}});
        assert_eq!(
            knowledge(&secret, &live_secret),
            None,
            "write-only fields: no memo"
        );
        let nulls = json!({"metadata": {"name": "a", "creationTimestamp": null}});
        assert!(knowledge(&nulls, &live).is_some(), "a null sets nothing");
    }

    #[test]
    fn digests_are_sha256_of_canonical_json() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"d": [2, 1], "c": null}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": {"c": null, "d": [2, 1]}, "b": 1}"#).unwrap();
        assert_eq!(digest(&a), digest(&b), "key order does not matter");
        // sha256 of `{"a":{"c":null,"d":[2,1]},"b":1}`, fixed so that persisted memos stay valid.
        assert_eq!(
            serde_json::to_value(digest(&a)).unwrap(),
            json!("bc9ad11b7850575d46b7bdd04896acccd62c7015fa4291f222935e5b95c11d48")
        );
        assert_ne!(
            digest(&json!([1, 2])),
            digest(&json!([2, 1])),
            "lists keep order"
        );
    }
}
