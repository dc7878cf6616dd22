//! The projects apps name: those of the `ferry.yaml` and the `Project` resources (kept
//! in step by a watch, when the agent watches Application resources). A change to a
//! project queues a sync of every app naming it.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_engine::EngineError;
use ferry_kube::{Cluster, Watched};
use ferry_model::{AppSpec, NamedProject, Project, ProjectSpec, project};
use futures::StreamExt;
use kube::ResourceExt;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::controller::Ctx;
use crate::crd;
use crate::queue::Trigger;

/// The projects known to the agent.
#[derive(Default)]
pub struct Projects {
    file: Vec<NamedProject>,
    resources: RwLock<BTreeMap<String, ProjectSpec>>,
}

impl Projects {
    /// The projects of the `ferry.yaml`; `Project` resources are added by [`watch`].
    pub fn new(file: Vec<NamedProject>) -> Self {
        Self {
            file,
            resources: Default::default(),
        }
    }

    /// The project of `app` ([`project::resolve`]: a `Project` resource, else the
    /// `ferry.yaml`'s, else the permissive built-in `default`).
    pub async fn of(&self, app: &str, spec: &AppSpec) -> Result<Project, EngineError> {
        let name = spec.project();
        let resources = self.resources.read().await;
        project::resolve(name, resources.get(name), &self.file).ok_or_else(|| {
            EngineError::UnknownProject {
                app: app.to_string(),
                project: name.to_string(),
                looked_in: "no Project resource, not in the ferry.yaml".into(),
            }
        })
    }

    /// The cluster as `app`'s requests see it: impersonating its project's service
    /// account, if any (ferry's own identity when its project is unknown).
    pub async fn cluster_for(&self, cluster: &Cluster, app: &str, spec: &AppSpec) -> Cluster {
        match self.of(app, spec).await {
            Ok(p) => match p.spec.service_account() {
                Some((namespace, name)) => cluster.impersonating(namespace, name),
                None => cluster.clone(),
            },
            Err(_) => cluster.clone(),
        }
    }
}

/// Reads the `Project` resources once (none when the CRD is not installed), so that apps
/// reconciled before the watch has listed them find their projects. A failure is logged:
/// the watch fills them in, and an app refused meanwhile is retried when they arrive.
pub async fn load(ctx: &Ctx) {
    let listed = ctx
        .engine
        .cluster
        .list_selected(ferry_engine::project::API_VERSION, "Project", None, None)
        .await;
    let items = match listed {
        Ok(items) => items,
        Err(ferry_kube::KubeError::UnknownKind { .. }) => return,
        Err(e) => {
            warn!("cannot list the Project resources: {e}");
            return;
        }
    };
    let mut resources = ctx.projects.resources.write().await;
    for item in items {
        let name = item["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match serde_json::from_value::<ProjectSpec>(item["spec"].clone()) {
            Ok(spec) if spec.validate_resource().is_ok() => {
                resources.insert(name, spec);
            }
            _ => warn!(project = %name, "invalid Project: its apps are refused"),
        }
    }
}

/// Keeps the `Project` resources in step; queues a sync of the apps naming a project
/// that changed.
pub async fn watch(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let stream = ctx.engine.cluster.watch_cluster_typed::<crd::Project>();
    let mut stream = std::pin::pin!(stream);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        let name = match event {
            None => return,
            Some(Ok(Watched::Applied(p))) => {
                let name = p.name_any();
                let mut resources = ctx.projects.resources.write().await;
                match p.spec.project.validate_resource() {
                    Ok(()) if resources.get(&name) == Some(&p.spec.project) => continue,
                    Ok(()) => {
                        info!(project = %name, "Project added or changed");
                        resources.insert(name.clone(), p.spec.project);
                    }
                    Err((field, message)) => {
                        // Its apps are refused rather than left to a stale definition.
                        warn!(project = %name, "invalid Project: field {field}: {message}");
                        resources.remove(&name);
                    }
                }
                name
            }
            Some(Ok(Watched::Deleted(p))) => {
                let name = p.name_any();
                info!(project = %name, "Project deleted");
                ctx.projects.resources.write().await.remove(&name);
                name
            }
            Some(Err(e)) => {
                warn!("Project watch: {e}");
                continue;
            }
        };
        let apps = ctx
            .store
            .scan(|apps| {
                apps.filter(|s| s.spec.project() == name)
                    .map(|s| s.key())
                    .collect::<Vec<_>>()
            })
            .await;
        for app in apps {
            ctx.forget_failures(&app);
            ctx.enqueue(&app, Trigger::Startup);
        }
    }
}
