//! Per-app inventory: which objects ferry applied for an app, kept in the cluster as a
//! ConfigMap `ferry-inventory-<app>` in the `ferry-system` namespace (one JSON entry per
//! object, Flux's `<ns>_<name>_<group>_<kind>` identity plus the version to read it back).

use std::collections::BTreeMap;

use ferry_model::{Known, ObjectRef, SYSTEM_NAMESPACE};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use crate::{Cluster, KubeError};

/// The objects an app owns, as last recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Git revision of the last successful apply.
    pub revision: String,
    /// Owned objects.
    pub entries: Vec<ObjectRef>,
    /// What the last sync knew to be in sync, by object key, so that the next plan can
    /// skip those objects' dry-runs. A cache: missing or unreadable, it is empty.
    pub in_sync: BTreeMap<String, Known>,
}

fn name(app: &str) -> String {
    format!("ferry-inventory-{app}")
}

/// An inventory from its ConfigMap's `data`. The `inSync` memo is a cache: entries it
/// cannot read (written in an older format) are dropped, and so is all of it if unreadable.
fn decode(subject: &ObjectRef, data: &BTreeMap<String, String>) -> Result<Inventory, KubeError> {
    let entries = match data.get("entries") {
        Some(text) => serde_json::from_str(text).map_err(|e| KubeError::Decode {
            message: format!("{subject}: entries: {e}"),
        })?,
        None => Vec::new(),
    };
    let memo: BTreeMap<String, serde_json::Value> = data
        .get("inSync")
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let in_sync = memo
        .into_iter()
        .filter_map(|(key, known)| Some((key, serde_json::from_value(known).ok()?)))
        .collect();
    Ok(Inventory {
        revision: data.get("revision").cloned().unwrap_or_default(),
        entries,
        in_sync,
    })
}

impl Cluster {
    /// Reads an app's inventory; `None` when the app was never applied.
    pub async fn read_inventory(&self, app: &str) -> Result<Option<Inventory>, KubeError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client().clone(), SYSTEM_NAMESPACE);
        let subject = ObjectRef::new("v1", "ConfigMap", Some(SYSTEM_NAMESPACE), &name(app));
        let Some(cm) = api
            .get_opt(&subject.name)
            .await
            .map_err(|e| KubeError::from_api(e, "get", &subject))?
        else {
            return Ok(None);
        };
        decode(&subject, &cm.data.unwrap_or_default()).map(Some)
    }

    /// Deletes an app's inventory (after its objects were deleted). Already gone is not
    /// an error.
    pub async fn delete_inventory(&self, app: &str) -> Result<(), KubeError> {
        let subject = ObjectRef::new("v1", "ConfigMap", Some(SYSTEM_NAMESPACE), &name(app));
        self.delete(&subject).await
    }

    /// Writes an app's inventory (creating `ferry-system` when missing).
    pub async fn write_inventory(&self, app: &str, inv: &Inventory) -> Result<(), KubeError> {
        self.ensure_namespace(SYSTEM_NAMESPACE).await?;
        let subject = ObjectRef::new("v1", "ConfigMap", Some(SYSTEM_NAMESPACE), &name(app));
        let mut entries = inv.entries.clone();
        entries.sort();
        entries.dedup();
        let encode = |e: serde_json::Error| KubeError::Decode {
            message: e.to_string(),
        };
        let entries = serde_json::to_string(&entries).map_err(encode)?;
        let in_sync = serde_json::to_string(&inv.in_sync).map_err(encode)?;
        let cm = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": subject.name,
                "namespace": SYSTEM_NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "ferry", ferry_model::APP_LABEL: app},
            },
            "data": {"app": app, "revision": inv.revision, "entries": entries, "inSync": in_sync},
        });
        let api: Api<ConfigMap> = Api::namespaced(self.client().clone(), SYSTEM_NAMESPACE);
        api.patch(
            &subject.name,
            &PatchParams::apply(ferry_model::FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await
        .map_err(|e| KubeError::from_api(e, "apply", &subject))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Digest;

    #[test]
    fn an_unreadable_memo_is_dropped_and_the_entries_read() {
        let subject = ObjectRef::new("v1", "ConfigMap", Some(SYSTEM_NAMESPACE), &name("app"));
        let entry = ObjectRef::new("v1", "ConfigMap", Some("ns"), "a");
        let known = Known {
            manifest: Digest([1; 32]),
            live: Digest([2; 32]),
        };
        let data = |in_sync: String| {
            BTreeMap::from([
                ("revision".to_string(), "abc".to_string()),
                (
                    "entries".to_string(),
                    serde_json::to_string(&[&entry]).unwrap(),
                ),
                ("inSync".to_string(), in_sync),
            ])
        };
        let old = decode(&subject, &data(format!(r#"{{"{}":[1,2]}}"#, entry.key()))).unwrap();
        assert_eq!(old.revision, "abc");
        assert_eq!(old.entries, std::slice::from_ref(&entry));
        assert!(old.in_sync.is_empty(), "{:?}", old.in_sync);
        assert!(
            decode(&subject, &data("not JSON".into()))
                .unwrap()
                .in_sync
                .is_empty()
        );

        let memo = BTreeMap::from([(entry.key(), known)]);
        let mixed = format!(
            r#"{{"{}":{},"b":[3,4]}}"#,
            entry.key(),
            serde_json::to_string(&known).unwrap()
        );
        assert_eq!(decode(&subject, &data(mixed)).unwrap().in_sync, memo);
        let round = serde_json::to_string(&memo).unwrap();
        assert_eq!(decode(&subject, &data(round)).unwrap().in_sync, memo);
    }
}
