//! Per-app inventory: which objects ferry applied for an app, kept in the cluster as a
//! ConfigMap `ferry-inventory-<app>` in the `ferry-system` namespace (one JSON entry per
//! object, Flux's `<ns>_<name>_<group>_<kind>` identity plus the version to read it back).

use std::collections::BTreeMap;

use ferry_model::{ObjectRef, SYSTEM_NAMESPACE};
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
    /// What the last sync knew to be in sync, by object key: (manifest hash, live
    /// fingerprint), so that the next plan can skip those objects' dry-runs. A cache:
    /// missing or unreadable, it is empty.
    pub in_sync: BTreeMap<String, (u64, u64)>,
}

fn name(app: &str) -> String {
    format!("ferry-inventory-{app}")
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
        let data = cm.data.unwrap_or_default();
        let entries = match data.get("entries") {
            Some(text) => serde_json::from_str(text).map_err(|e| KubeError::Decode {
                message: format!("{subject}: entries: {e}"),
            })?,
            None => Vec::new(),
        };
        let in_sync = data
            .get("inSync")
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        Ok(Some(Inventory {
            revision: data.get("revision").cloned().unwrap_or_default(),
            entries,
            in_sync,
        }))
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
