//! Small key/value records ferry keeps for itself in ConfigMaps of the `ferry-system`
//! namespace (e.g. the agent's suspensions and rollback pins), one key per app.

use std::collections::BTreeMap;

use ferry_model::{FIELD_MANAGER, ObjectRef, SYSTEM_NAMESPACE};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::{Cluster, KubeError};

impl Cluster {
    /// The data of ConfigMap `name` in `ferry-system`; empty when it does not exist.
    pub async fn read_system_data(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, String>, KubeError> {
        let subject = system_ref(name);
        let cm = self
            .system_config_maps()
            .get_opt(name)
            .await
            .map_err(|e| self.api_error(e, "get", &subject))?;
        Ok(cm.and_then(|cm| cm.data).unwrap_or_default())
    }

    /// Sets (`Some`) or removes (`None`) one key of ConfigMap `name` in `ferry-system`,
    /// creating both when missing. One JSON merge patch per call, so writers of other
    /// keys never overwrite each other.
    pub async fn set_system_key(
        &self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), KubeError> {
        let subject = system_ref(name);
        let api = self.system_config_maps();
        let patch = serde_json::json!({ "data": { key: value } });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        for _ in 0..2 {
            match api.patch(name, &params, &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(self.api_error(e, "patch", &subject)),
            }
            let Some(value) = value else {
                return Ok(());
            };
            self.ensure_namespace(SYSTEM_NAMESPACE).await?;
            let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {
                    "name": name,
                    "namespace": SYSTEM_NAMESPACE,
                    "labels": {"app.kubernetes.io/managed-by": "ferry"},
                },
                "data": { key: value },
            }))
            .expect("a ConfigMap");
            let post = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match api.create(&post, &cm).await {
                Ok(_) => return Ok(()),
                // Created by another writer meanwhile: patch it.
                Err(kube::Error::Api(s)) if s.is_already_exists() => {}
                Err(e) => return Err(self.api_error(e, "create", &subject)),
            }
        }
        Err(KubeError::Api {
            verb: "patch",
            subject: Box::new(subject),
            code: 409,
            message: "the ConfigMap was created and deleted concurrently; try again".into(),
        })
    }

    fn system_config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client().clone(), SYSTEM_NAMESPACE)
    }
}

fn system_ref(name: &str) -> ObjectRef {
    ObjectRef::new("v1", "ConfigMap", Some(SYSTEM_NAMESPACE), name)
}
