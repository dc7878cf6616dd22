//! An app's project as push mode finds it: a `Project` resource in the cluster, else an
//! entry of the `ferry.yaml`, else the permissive built-in `default`
//! ([`ferry_model::project::resolve`]). The agent keeps the resources from a watch.

use ferry_kube::{Cluster, KubeError};
use ferry_model::{AppSpec, NamedProject, ObjectRef, Project, ProjectSpec, SpecError};

use crate::EngineError;

/// The `apiVersion` of the `Project` resource.
pub const API_VERSION: &str = "ferry.dev/v1alpha1";

/// The project `app` names, reading its `Project` resource (none when the CRD is not
/// installed) before looking in `file`.
pub async fn resolve(
    cluster: &Cluster,
    app: &str,
    spec: &AppSpec,
    file: &[NamedProject],
) -> Result<Project, EngineError> {
    let name = spec.project();
    let resource = read(cluster, name).await?;
    ferry_model::project::resolve(name, resource.as_ref(), file).ok_or_else(|| {
        EngineError::UnknownProject {
            app: app.to_string(),
            project: name.to_string(),
            looked_in: "no Project resource, not in the ferry.yaml".into(),
        }
    })
}

/// Refuses `app` before anything is fetched when its project does not allow the app
/// itself (its `Application`'s namespace, repositories, destination); [`crate::Sync`]
/// checks the objects too.
pub fn admit(
    project: &Project,
    app: &str,
    app_namespace: Option<&str>,
    spec: &AppSpec,
) -> Result<(), EngineError> {
    let violations = ferry_plan::policy::check_app(project, app_namespace, spec);
    if violations.is_empty() {
        return Ok(());
    }
    Err(EngineError::Policy {
        app: app.to_string(),
        project: project.name.clone(),
        violations,
    })
}

/// The spec of the `Project` resource `name`, validated; `None` when there is none.
async fn read(cluster: &Cluster, name: &str) -> Result<Option<ProjectSpec>, EngineError> {
    let subject = ObjectRef::new(API_VERSION, "Project", None, name);
    let object = match cluster.get(&subject).await {
        Ok(object) => object,
        Err(KubeError::UnknownKind { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let Some(object) = object else {
        return Ok(None);
    };
    let invalid = |field: String, message: String| {
        EngineError::Spec(SpecError::Invalid {
            location: format!("Project {name}"),
            field,
            message,
        })
    };
    let spec: ProjectSpec = serde_json::from_value(object["spec"].clone())
        .map_err(|e| invalid("spec".into(), e.to_string()))?;
    spec.validate().map_err(|(f, m)| invalid(f, m))?;
    Ok(Some(spec))
}
