//! Watches on live objects, for drift detection (kube-runtime watchers, one per kind).

use futures::{Stream, StreamExt};
use kube::api::{Api, DynamicObject, TypeMeta};
use kube::runtime::watcher;
use serde_json::Value;

use crate::{Cluster, KubeError, Resolved, inventory};

/// A change seen by a watch.
#[derive(Clone, Debug)]
pub enum WatchEvent {
    /// An object was created or modified, or listed when the watch (re)started.
    Changed(Value),
    /// An object was deleted.
    Deleted(Value),
    /// The watch starts a (re)list: its objects follow as `Changed`, then `Resynced`.
    Relisting,
    /// The watch finished a (re)list; the objects listed came before it as `Changed`.
    Resynced,
}

impl Cluster {
    /// Watches every object of one kind, in all namespaces, that carries `label`
    /// (a label selector), but ferry's own inventory ConfigMaps (labelled with their
    /// app, not its objects). The stream retries on its own with backoff; errors are
    /// yielded for logging and do not end it.
    pub fn watch(
        &self,
        resolved: &Resolved,
        label: &str,
    ) -> impl Stream<Item = Result<WatchEvent, KubeError>> + Send + 'static {
        let api: Api<DynamicObject> =
            Api::all_with(self.watch_client().clone(), &resolved.resource);
        let server = self.server().to_string();
        let types = TypeMeta {
            api_version: resolved.resource.api_version.clone(),
            kind: resolved.resource.kind.clone(),
        };
        let config = watcher::Config::default().labels(label);
        let config_maps = types.api_version == "v1" && types.kind == "ConfigMap";
        let own = move |o: &DynamicObject| {
            config_maps
                && inventory::is_inventory(
                    o.metadata.namespace.as_deref(),
                    o.metadata.name.as_deref().unwrap_or_default(),
                )
        };
        kube::runtime::WatchStreamExt::default_backoff(watcher(api, config)).filter_map(
            move |event| {
                let server = server.clone();
                let types = types.clone();
                async move {
                    // Listed items come without apiVersion and kind: the watch knows them.
                    let to_value = |mut o: DynamicObject| {
                        o.types.get_or_insert(types);
                        serde_json::to_value(o).unwrap_or_default()
                    };
                    match event {
                        Ok(
                            watcher::Event::Apply(o)
                            | watcher::Event::InitApply(o)
                            | watcher::Event::Delete(o),
                        ) if own(&o) => None,
                        // Objects of the initial list count as changes too: an edit made
                        // between the last apply and the watch's start is seen, not lost.
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                            Some(Ok(WatchEvent::Changed(to_value(o))))
                        }
                        Ok(watcher::Event::Delete(o)) => Some(Ok(WatchEvent::Deleted(to_value(o)))),
                        Ok(watcher::Event::InitDone) => Some(Ok(WatchEvent::Resynced)),
                        Ok(watcher::Event::Init) => Some(Ok(WatchEvent::Relisting)),
                        Err(e) => Some(Err(KubeError::Unreachable {
                            server,
                            message: e.to_string(),
                        })),
                    }
                }
            },
        )
    }
}
