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

/// The format of a stored inventory, kept under `format` (none: 1). A memo stored in
/// another format than this one is not read (it is a cache); the entries always are.
const FORMAT: u32 = 2;

fn name(app: &str) -> String {
    format!("ferry-inventory-{app}")
}

/// The ConfigMap data of `app`'s inventory `inv`, entries sorted and deduplicated.
fn encode(app: &str, inv: &Inventory) -> Result<BTreeMap<String, String>, KubeError> {
    let mut entries = inv.entries.clone();
    entries.sort();
    entries.dedup();
    let encode = |e: serde_json::Error| KubeError::Decode {
        message: e.to_string(),
    };
    Ok(BTreeMap::from([
        ("app".to_string(), app.to_string()),
        ("format".to_string(), FORMAT.to_string()),
        ("revision".to_string(), inv.revision.clone()),
        (
            "entries".to_string(),
            serde_json::to_string(&entries).map_err(encode)?,
        ),
        (
            "inSync".to_string(),
            serde_json::to_string(&inv.in_sync).map_err(encode)?,
        ),
    ]))
}

/// The inventory in the ConfigMap data of `subject`. The `inSync` memo is a cache: it is
/// read only in the current format, and entries it cannot read are dropped.
fn decode(data: &BTreeMap<String, String>, subject: &ObjectRef) -> Result<Inventory, KubeError> {
    let entries = match data.get("entries") {
        Some(text) => serde_json::from_str(text).map_err(|e| KubeError::Decode {
            message: format!("{subject}: entries: {e}"),
        })?,
        None => Vec::new(),
    };
    let format = data
        .get("format")
        .map_or(Some(1), |f| f.parse::<u32>().ok());
    let memo: BTreeMap<String, serde_json::Value> = data
        .get("inSync")
        .filter(|_| format == Some(FORMAT))
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
            .map_err(|e| self.api_error(e, "get", &subject))?
        else {
            return Ok(None);
        };
        decode(&cm.data.unwrap_or_default(), &subject).map(Some)
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
        let cm = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": subject.name,
                "namespace": SYSTEM_NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "ferry", ferry_model::APP_LABEL: app},
            },
            "data": encode(app, inv)?,
        });
        let api: Api<ConfigMap> = Api::namespaced(self.client().clone(), SYSTEM_NAMESPACE);
        api.patch(
            &subject.name,
            &PatchParams::apply(ferry_model::FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await
        .map_err(|e| self.api_error(e, "apply", &subject))?;
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
                ("format".to_string(), FORMAT.to_string()),
                ("inSync".to_string(), in_sync),
            ])
        };
        let old = decode(&data(format!(r#"{{"{}":[1,2]}}"#, entry.key())), &subject).unwrap();
        assert_eq!(old.revision, "abc");
        assert_eq!(old.entries, std::slice::from_ref(&entry));
        assert!(old.in_sync.is_empty(), "{:?}", old.in_sync);
        assert!(
            decode(&data("not JSON".into()), &subject)
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
        assert_eq!(decode(&data(mixed), &subject).unwrap().in_sync, memo);
        let round = serde_json::to_string(&memo).unwrap();
        assert_eq!(decode(&data(round), &subject).unwrap().in_sync, memo);
    }

    fn subject() -> ObjectRef {
        ObjectRef::new("v1", "ConfigMap", Some(SYSTEM_NAMESPACE), &name("web"))
    }

    #[test]
    fn an_inventory_of_the_first_format_keeps_its_entries_and_drops_its_memo() {
        let data = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("revision".to_string(), "abc".to_string()),
            (
                "entries".to_string(),
                r#"[{"group":"","version":"v1","kind":"ConfigMap","namespace":"web","name":"cfg"}]"#
                    .to_string(),
            ),
            ("inSync".to_string(), r#"{"web/cfg":[1,2]}"#.to_string()),
        ]);
        let inv = decode(&data, &subject()).unwrap();
        assert_eq!(inv.revision, "abc");
        assert_eq!(
            inv.entries,
            [ObjectRef::new("v1", "ConfigMap", Some("web"), "cfg")]
        );
        assert!(inv.in_sync.is_empty(), "{:?}", inv.in_sync);
    }

    #[test]
    fn an_inventory_round_trips_with_its_format() {
        let cfg = ObjectRef::new("v1", "ConfigMap", Some("web"), "cfg");
        let inv = Inventory {
            revision: "abc".into(),
            entries: vec![
                cfg.clone(),
                ObjectRef::new("apps/v1", "Deployment", Some("web"), "d"),
            ],
            in_sync: BTreeMap::from([(
                "web/cfg".to_string(),
                Known {
                    manifest: Digest([1; 32]),
                    live: Digest([2; 32]),
                },
            )]),
        };
        let data = encode("web", &inv).unwrap();
        assert_eq!(data["format"], FORMAT.to_string());
        let mut sorted = inv.clone();
        sorted.entries.sort();
        assert_eq!(decode(&data, &subject()).unwrap(), sorted);
    }
}
