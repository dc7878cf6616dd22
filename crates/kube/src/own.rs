//! The agent's own resources, so that no other crate talks to the API server: typed
//! watches (the `Application` custom resource), status subresource patches, Kubernetes
//! Events (leader election on a Lease is in `lease.rs`).

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Cluster, KubeError};

/// A change to a typed resource.
#[derive(Clone, Debug)]
pub enum Watched<K> {
    /// Created or modified, or listed when the watch (re)started.
    Applied(K),
    /// Deleted.
    Deleted(K),
}

/// Publishes Kubernetes Events about objects, as one reporting controller.
#[derive(Clone)]
pub struct EventRecorder {
    recorder: Recorder,
}

impl EventRecorder {
    /// Records a Normal (or, with `warning`, a Warning) Event on `reference`; the note
    /// is cut to 1000 characters.
    pub async fn publish(
        &self,
        reference: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), KubeError> {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        self.recorder
            .publish(&event, reference)
            .await
            .map_err(|e| KubeError::Api {
                verb: "create",
                subject: Box::new(crate::ObjectRef::new(
                    "events.k8s.io/v1",
                    "Event",
                    reference.namespace.as_deref(),
                    reference.name.as_deref().unwrap_or_default(),
                )),
                code: 0,
                message: e.to_string(),
            })
    }
}

impl Cluster {
    /// Watches every `K` (in `namespace`, or in all). The stream retries on its own with
    /// backoff; errors are yielded for logging and do not end it.
    pub fn watch_typed<K>(
        &self,
        namespace: Option<&str>,
    ) -> impl Stream<Item = Result<Watched<K>, KubeError>> + Send + 'static
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + 'static,
    {
        let api: Api<K> = match namespace {
            Some(ns) => Api::namespaced(self.watch_client().clone(), ns),
            None => Api::all(self.watch_client().clone()),
        };
        self.watch_api(api)
    }

    /// Watches every cluster-scoped `K` (the `Project` custom resource), like
    /// [`watch_typed`](Self::watch_typed).
    pub fn watch_cluster_typed<K>(
        &self,
    ) -> impl Stream<Item = Result<Watched<K>, KubeError>> + Send + 'static
    where
        K: Resource<DynamicType = (), Scope = ClusterResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + 'static,
    {
        self.watch_api(Api::all(self.watch_client().clone()))
    }

    fn watch_api<K>(
        &self,
        api: Api<K>,
    ) -> impl Stream<Item = Result<Watched<K>, KubeError>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let server = self.server().to_string();
        kube::runtime::WatchStreamExt::default_backoff(watcher(api, watcher::Config::default()))
            .filter_map(move |event| {
                let server = server.clone();
                async move {
                    match event {
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                            Some(Ok(Watched::Applied(o)))
                        }
                        Ok(watcher::Event::Delete(o)) => Some(Ok(Watched::Deleted(o))),
                        Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                        Err(e) => Some(Err(KubeError::Unreachable {
                            server,
                            message: e.to_string(),
                        })),
                    }
                }
            })
    }

    /// Merge-patches the status subresource of `K` `name` in `namespace` with `status`.
    pub async fn patch_status<K>(
        &self,
        namespace: &str,
        name: &str,
        status: &Value,
    ) -> Result<(), KubeError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client().clone(), namespace);
        let patch = serde_json::json!({ "status": status });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|e| {
                let subject = crate::ObjectRef::new(
                    &K::api_version(&()),
                    &K::kind(&()),
                    Some(namespace),
                    name,
                );
                self.api_error(e, "patch status of", &subject)
            })
    }

    /// An Event recorder reporting as `controller` (instance `instance`).
    pub fn event_recorder(&self, controller: &str, instance: &str) -> EventRecorder {
        let reporter = Reporter {
            controller: controller.into(),
            instance: Some(instance.into()),
        };
        EventRecorder {
            recorder: Recorder::new(self.client().clone(), reporter),
        }
    }
}
