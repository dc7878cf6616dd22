//! Sync phases, waves and hooks, from objects' annotations (ferry's, Argo CD's, Helm's).
//!
//! - [`classify`]: is an object applied in a wave, run as a hook, or never applied;
//! - [`steps`]: the sync's steps in order — PreSync hooks by wave, then the waves (each
//!   with its Sync hooks), PostSync hooks by wave, SyncFail hooks by wave;
//! - [`completion`]: whether a hook's live object has completed.
//!
//! ferry's annotations win over Argo CD's, which win over Helm's. Helm's hook types map
//! as Argo CD maps them: `pre-install`/`pre-upgrade` → PreSync, `post-install`/
//! `post-upgrade` → PostSync, `helm.sh/hook-weight` → the hook's wave; `test*` hooks, and
//! hooks of only the delete/rollback types, are never applied by a sync.

use std::collections::BTreeMap;

use ferry_model::hook::{
    ARGO_HOOK_ANNOTATION, ARGO_HOOK_DELETE_ANNOTATION, ARGO_WAVE_ANNOTATION, HELM_HOOK_ANNOTATION,
    HELM_HOOK_DELETE_ANNOTATION, HELM_WEIGHT_ANNOTATION, HOOK_ANNOTATION, HOOK_DELETE_ANNOTATION,
    WAVE_ANNOTATION,
};
use ferry_model::{HealthStatus, Manifest, ObjectRef, Phase};
use serde_json::Value;

use crate::order::apply_order;

/// An annotation whose value ferry does not understand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {subject}: annotation {annotation}: {value:?} is not {expected}")]
pub struct HookError {
    /// Where the object came from.
    pub origin: String,
    /// The object (boxed to keep `Result`s small).
    pub subject: Box<ObjectRef>,
    /// The annotation.
    pub annotation: &'static str,
    /// Its value.
    pub value: String,
    /// What it should be.
    pub expected: &'static str,
}

/// When a hook's object is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeletePolicy {
    /// Once it succeeded.
    pub succeeded: bool,
    /// Once it failed.
    pub failed: bool,
    /// Before the next run creates it again (the default when no policy is given).
    pub before_creation: bool,
}

/// A hook: run in its phases (created, never updated), waited for until complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// The phases it runs in (at least one).
    pub phases: Vec<Phase>,
    /// Its wave within each phase.
    pub wave: i32,
    /// When it is deleted.
    pub delete: DeletePolicy,
}

/// What a sync does with an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Applied (and inventoried, pruned, watched) in its wave.
    Resource {
        /// The wave.
        wave: i32,
    },
    /// Run as a hook.
    Hook(Hook),
    /// Never applied: `Skip`, a Helm test, or a Helm hook of no sync phase.
    Skip,
}

/// The role of a rendered object, from its annotations.
pub fn classify(m: &Manifest) -> Result<Role, HookError> {
    let bad = |annotation: &'static str, value: &str, expected: &'static str| HookError {
        origin: m.origin.to_string(),
        subject: Box::new(m.object_ref()),
        annotation,
        value: value.to_string(),
        expected,
    };
    let wave_of = |keys: &[&'static str]| -> Result<Option<i32>, HookError> {
        for key in keys {
            if let Some(value) = m.annotation(key) {
                return match value.trim().parse::<i32>() {
                    Ok(wave) => Ok(Some(wave)),
                    Err(_) => Err(bad(key, value, "an integer")),
                };
            }
        }
        Ok(None)
    };

    let hook = if let Some((key, value)) = first(m, &[HOOK_ANNOTATION, ARGO_HOOK_ANNOTATION]) {
        let mut phases = Vec::new();
        for item in list(value) {
            let phase = match item {
                "PreSync" => Phase::PreSync,
                "Sync" => Phase::Sync,
                "PostSync" => Phase::PostSync,
                "SyncFail" => Phase::SyncFail,
                "Skip" => return Ok(Role::Skip),
                // Argo CD's hook run when an app is deleted: no sync runs it.
                "PostDelete" => continue,
                _ => {
                    return Err(bad(
                        key,
                        value,
                        "a comma-separated list of PreSync, Sync, PostSync, SyncFail, Skip",
                    ));
                }
            };
            phases.push(phase);
        }
        let delete = match first(m, &[HOOK_DELETE_ANNOTATION, ARGO_HOOK_DELETE_ANNOTATION]) {
            Some((key, value)) => policy(
                value,
                ["HookSucceeded", "HookFailed", "BeforeHookCreation"],
            )
            .ok_or_else(|| {
                bad(
                    key,
                    value,
                    "a comma-separated list of HookSucceeded, HookFailed, BeforeHookCreation",
                )
            })?,
            None => helm_policy(m).map_err(|v| {
                bad(
                    HELM_HOOK_DELETE_ANNOTATION,
                    v,
                    "a comma-separated list of before-hook-creation, hook-succeeded, hook-failed",
                )
            })?,
        };
        Some((phases, delete))
    } else if let Some(value) = m.annotation(HELM_HOOK_ANNOTATION) {
        let mut phases = Vec::new();
        for item in list(value) {
            match item {
                "pre-install" | "pre-upgrade" => phases.push(Phase::PreSync),
                "post-install" | "post-upgrade" => phases.push(Phase::PostSync),
                t if t.starts_with("test") => return Ok(Role::Skip),
                // pre/post-delete, pre/post-rollback and Helm 2's crd-install: no sync
                // phase runs them.
                _ => {}
            }
        }
        let delete = helm_policy(m).map_err(|v| {
            bad(
                HELM_HOOK_DELETE_ANNOTATION,
                v,
                "a comma-separated list of before-hook-creation, hook-succeeded, hook-failed",
            )
        })?;
        Some((phases, delete))
    } else {
        None
    };

    match hook {
        None => Ok(Role::Resource {
            wave: wave_of(&[WAVE_ANNOTATION, ARGO_WAVE_ANNOTATION])?.unwrap_or(0),
        }),
        Some((phases, _)) if phases.is_empty() => Ok(Role::Skip),
        Some((mut phases, delete)) => {
            phases.sort();
            phases.dedup();
            let wave = wave_of(&[
                WAVE_ANNOTATION,
                ARGO_WAVE_ANNOTATION,
                HELM_WEIGHT_ANNOTATION,
            ])?
            .unwrap_or(0);
            Ok(Role::Hook(Hook {
                phases,
                wave,
                delete,
            }))
        }
    }
}

/// The first of `keys` the object is annotated with, and its value.
fn first<'m>(m: &'m Manifest, keys: &[&'static str]) -> Option<(&'static str, &'m str)> {
    keys.iter()
        .find_map(|key| m.annotation(key).map(|value| (*key, value)))
}

/// The items of a comma-separated annotation value, trimmed, empty ones left out.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A delete policy from a list of the three names `[succeeded, failed, before]`;
/// `None` for an unknown name. No name at all means before creation.
fn policy(value: &str, names: [&str; 3]) -> Option<DeletePolicy> {
    let mut p = DeletePolicy::default();
    for item in list(value) {
        match names.iter().position(|n| *n == item)? {
            0 => p.succeeded = true,
            1 => p.failed = true,
            _ => p.before_creation = true,
        }
    }
    if p == DeletePolicy::default() {
        p.before_creation = true;
    }
    Some(p)
}

/// Helm's delete policy (before creation when absent); the bad value on error.
fn helm_policy(m: &Manifest) -> Result<DeletePolicy, &str> {
    match m.annotation(HELM_HOOK_DELETE_ANNOTATION) {
        None => Ok(DeletePolicy {
            before_creation: true,
            ..Default::default()
        }),
        Some(value) => policy(
            value,
            ["hook-succeeded", "hook-failed", "before-hook-creation"],
        )
        .ok_or(value),
    }
}

/// One wave of a phase: indices into the caller's resources and hooks, in apply order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wave {
    /// The wave.
    pub wave: i32,
    /// The resources applied in it (empty outside the sync phase).
    pub resources: Vec<usize>,
    /// The hooks run in it.
    pub hooks: Vec<usize>,
}

/// A sync's steps, in the order they run; each list is in ascending wave order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Steps {
    /// PreSync hooks, before anything is applied.
    pub pre_sync: Vec<Wave>,
    /// The sync phase: resources and Sync hooks, wave by wave.
    pub sync: Vec<Wave>,
    /// PostSync hooks, once every wave is healthy.
    pub post_sync: Vec<Wave>,
    /// SyncFail hooks, when the sync failed.
    pub sync_fail: Vec<Wave>,
}

/// Groups resources (their wave and reference) and hooks (their [`Hook`] and reference)
/// into [`Steps`]. Within a wave, resources and hooks are in [`apply_order`].
pub fn steps(resources: &[(i32, &ObjectRef)], hooks: &[(&Hook, &ObjectRef)]) -> Steps {
    let mut sync: BTreeMap<i32, Wave> = BTreeMap::new();
    for (i, (wave, _)) in resources.iter().enumerate() {
        sync.entry(*wave).or_default().resources.push(i);
    }
    let mut phases: BTreeMap<(Phase, i32), Vec<usize>> = BTreeMap::new();
    for (i, (hook, _)) in hooks.iter().enumerate() {
        for phase in &hook.phases {
            phases.entry((*phase, hook.wave)).or_default().push(i);
        }
    }
    let mut out = Steps::default();
    for ((phase, wave), mut items) in phases {
        sort_by_ref(&mut items, |i| hooks[i].1);
        let step = Wave {
            wave,
            resources: Vec::new(),
            hooks: items,
        };
        match phase {
            Phase::PreSync => out.pre_sync.push(step),
            Phase::Sync => sync.entry(wave).or_default().hooks = step.hooks,
            Phase::PostSync => out.post_sync.push(step),
            Phase::SyncFail => out.sync_fail.push(step),
        }
    }
    out.sync = sync
        .into_iter()
        .map(|(wave, mut w)| {
            w.wave = wave;
            sort_by_ref(&mut w.resources, |i| resources[i].1);
            w
        })
        .collect();
    out
}

/// Sorts indices by the [`apply_order`] of the objects they stand for.
fn sort_by_ref<'r>(items: &mut [usize], refs: impl Fn(usize) -> &'r ObjectRef) {
    items.sort_by(|a, b| apply_order(refs(*a), refs(*b)).then(a.cmp(b)));
}

/// Whether a hook's live object has completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Not yet, with its status.
    Running(String),
    /// It succeeded.
    Succeeded,
    /// It failed, with why.
    Failed(String),
}

/// A hook's completion: a Job by its `Complete`/`Failed` condition, a Pod by its phase
/// `Succeeded`/`Failed`, any other kind by its health (Current is success).
pub fn completion(live: &Value) -> Completion {
    let s = |p: &str| live.pointer(p).and_then(Value::as_str).unwrap_or("");
    let group = s("/apiVersion").split_once('/').map_or("", |(g, _)| g);
    match (group, s("/kind")) {
        ("batch", "Job") => {
            let conditions = live
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let holds = |kind: &str| {
                conditions
                    .iter()
                    .find(|c| c["type"] == kind && c["status"] == "True")
            };
            if holds("Complete").is_some() {
                Completion::Succeeded
            } else if let Some(c) = holds("Failed") {
                Completion::Failed(reason(c))
            } else {
                Completion::Running("job not complete".into())
            }
        }
        ("", "Pod") => match s("/status/phase") {
            "Succeeded" => Completion::Succeeded,
            "Failed" => Completion::Failed(match s("/status/message") {
                "" => "pod failed".into(),
                m => m.to_string(),
            }),
            "" => Completion::Running("pod Pending".into()),
            phase => Completion::Running(format!("pod {phase}")),
        },
        _ => {
            let h = crate::health::health(live);
            match h.status {
                HealthStatus::Current => Completion::Succeeded,
                HealthStatus::Failed => Completion::Failed(h.message),
                _ => Completion::Running(h.message),
            }
        }
    }
}

/// A condition's reason and message, as one line.
fn reason(c: &Value) -> String {
    let part = |k: &str| c[k].as_str().filter(|s| !s.is_empty());
    match (part("reason"), part("message")) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (Some(x), None) | (None, Some(x)) => x.to_string(),
        (None, None) => "job failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Origin;
    use serde_json::json;

    fn object(kind: &str, name: &str, annotations: Value) -> Manifest {
        let api = match kind {
            "Job" => "batch/v1",
            "Deployment" => "apps/v1",
            _ => "v1",
        };
        Manifest::new(
            json!({"apiVersion": api, "kind": kind,
                   "metadata": {"name": name, "namespace": "ns", "annotations": annotations}}),
            Origin {
                file: "app/x.yaml".into(),
                doc: 0,
            },
        )
        .unwrap()
    }

    fn role(annotations: Value) -> Role {
        classify(&object("Job", "j", annotations)).unwrap()
    }

    fn hook(phases: &[Phase], wave: i32, delete: DeletePolicy) -> Role {
        Role::Hook(Hook {
            phases: phases.to_vec(),
            wave,
            delete,
        })
    }

    const BEFORE: DeletePolicy = DeletePolicy {
        succeeded: false,
        failed: false,
        before_creation: true,
    };

    #[test]
    fn plain_objects_are_resources_of_wave_zero() {
        assert_eq!(role(json!({})), Role::Resource { wave: 0 });
        assert_eq!(
            role(json!({"ferry.dev/sync-wave": "-2"})),
            Role::Resource { wave: -2 }
        );
        assert_eq!(
            role(json!({"argocd.argoproj.io/sync-wave": " 3 "})),
            Role::Resource { wave: 3 }
        );
        // ferry's wins over Argo CD's.
        assert_eq!(
            role(json!({"ferry.dev/sync-wave": "1", "argocd.argoproj.io/sync-wave": "5"})),
            Role::Resource { wave: 1 }
        );
        // Helm's weight orders hooks only.
        assert_eq!(
            role(json!({"helm.sh/hook-weight": "5"})),
            Role::Resource { wave: 0 }
        );
    }

    #[test]
    fn bad_values_name_the_object_and_annotation() {
        let err =
            classify(&object("Job", "j", json!({"ferry.dev/sync-wave": "first"}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "app/x.yaml (document 1): Job/ns/j: annotation ferry.dev/sync-wave: \"first\" is not an integer"
        );
        let err = classify(&object("Job", "j", json!({"ferry.dev/hook": "PreSink"}))).unwrap_err();
        assert_eq!(err.annotation, "ferry.dev/hook");
        let err = classify(&object(
            "Job",
            "j",
            json!({"argocd.argoproj.io/hook": "PreSync", "argocd.argoproj.io/hook-delete-policy": "Never"}),
        ))
        .unwrap_err();
        assert_eq!(err.annotation, "argocd.argoproj.io/hook-delete-policy");
        let err = classify(&object(
            "Job",
            "j",
            json!({"helm.sh/hook": "pre-install", "helm.sh/hook-delete-policy": "sometimes"}),
        ))
        .unwrap_err();
        assert_eq!(err.annotation, "helm.sh/hook-delete-policy");
    }

    #[test]
    fn ferry_and_argo_hooks() {
        for (hook_key, delete_key, wave_key) in [
            (
                "ferry.dev/hook",
                "ferry.dev/hook-delete-policy",
                "ferry.dev/sync-wave",
            ),
            (
                "argocd.argoproj.io/hook",
                "argocd.argoproj.io/hook-delete-policy",
                "argocd.argoproj.io/sync-wave",
            ),
        ] {
            assert_eq!(
                role(json!({hook_key: "PreSync"})),
                hook(&[Phase::PreSync], 0, BEFORE)
            );
            assert_eq!(
                role(json!({hook_key: "PostSync, PreSync,", wave_key: "2",
                            delete_key: "HookSucceeded,HookFailed"})),
                hook(
                    &[Phase::PreSync, Phase::PostSync],
                    2,
                    DeletePolicy {
                        succeeded: true,
                        failed: true,
                        before_creation: false
                    }
                )
            );
            assert_eq!(
                role(json!({hook_key: "Sync,SyncFail", delete_key: "BeforeHookCreation"})),
                hook(&[Phase::Sync, Phase::SyncFail], 0, BEFORE)
            );
            assert_eq!(role(json!({hook_key: "Skip"})), Role::Skip);
            assert_eq!(role(json!({hook_key: "PostDelete"})), Role::Skip);
        }
        // ferry's wins over Argo CD's, which wins over Helm's.
        assert_eq!(
            role(
                json!({"ferry.dev/hook": "PostSync", "argocd.argoproj.io/hook": "PreSync",
                        "helm.sh/hook": "pre-install"})
            ),
            hook(&[Phase::PostSync], 0, BEFORE)
        );
        assert_eq!(
            role(json!({"argocd.argoproj.io/hook": "Sync", "helm.sh/hook": "pre-install"})),
            hook(&[Phase::Sync], 0, BEFORE)
        );
    }

    #[test]
    fn helm_hooks_map_as_argo_cd_maps_them() {
        assert_eq!(
            role(json!({"helm.sh/hook": "pre-install,pre-upgrade", "helm.sh/hook-weight": "-5"})),
            hook(&[Phase::PreSync], -5, BEFORE)
        );
        assert_eq!(
            role(
                json!({"helm.sh/hook": "post-install", "helm.sh/hook-delete-policy": "hook-succeeded"})
            ),
            hook(
                &[Phase::PostSync],
                0,
                DeletePolicy {
                    succeeded: true,
                    ..Default::default()
                }
            )
        );
        assert_eq!(
            role(json!({"helm.sh/hook": "pre-upgrade,post-upgrade",
                        "helm.sh/hook-delete-policy": "before-hook-creation,hook-failed"})),
            hook(
                &[Phase::PreSync, Phase::PostSync],
                0,
                DeletePolicy {
                    failed: true,
                    before_creation: true,
                    ..Default::default()
                }
            )
        );
        // A sync wave annotation wins over the hook weight.
        assert_eq!(
            role(
                json!({"helm.sh/hook": "post-install", "helm.sh/hook-weight": "1",
                        "argocd.argoproj.io/sync-wave": "4"})
            ),
            hook(&[Phase::PostSync], 4, BEFORE)
        );
        for never in [
            "test",
            "test-success",
            "pre-delete",
            "post-rollback,pre-delete",
        ] {
            assert_eq!(role(json!({"helm.sh/hook": never})), Role::Skip, "{never}");
        }
        assert_eq!(
            role(json!({"helm.sh/hook": "pre-install,test"})),
            Role::Skip,
            "a test hook is never applied"
        );
    }

    fn r(kind: &str, name: &str) -> ObjectRef {
        object(kind, name, json!({})).object_ref()
    }

    #[test]
    fn steps_group_by_phase_and_wave_in_apply_order() {
        let (dep, cm_b, cm_a, svc) = (
            r("Deployment", "web"),
            r("ConfigMap", "b"),
            r("ConfigMap", "a"),
            r("Service", "web"),
        );
        let resources = [(1, &dep), (0, &cm_b), (-1, &svc), (0, &cm_a)];
        let pre = Hook {
            phases: vec![Phase::PreSync],
            wave: 0,
            delete: BEFORE,
        };
        let pre_early = Hook {
            phases: vec![Phase::PreSync, Phase::PostSync],
            wave: -3,
            delete: BEFORE,
        };
        let sync = Hook {
            phases: vec![Phase::Sync],
            wave: 5,
            delete: BEFORE,
        };
        let fail = Hook {
            phases: vec![Phase::SyncFail],
            wave: 0,
            delete: BEFORE,
        };
        let (j1, j2, j3, j4) = (r("Job", "z"), r("Job", "a"), r("Job", "s"), r("Pod", "f"));
        let hooks = [(&pre, &j1), (&pre_early, &j2), (&sync, &j3), (&fail, &j4)];
        let steps = steps(&resources, &hooks);
        let wave = |wave, resources: &[usize], hooks: &[usize]| Wave {
            wave,
            resources: resources.to_vec(),
            hooks: hooks.to_vec(),
        };
        assert_eq!(
            steps,
            Steps {
                pre_sync: vec![wave(-3, &[], &[1]), wave(0, &[], &[0])],
                sync: vec![
                    wave(-1, &[2], &[]),
                    wave(0, &[3, 1], &[]),
                    wave(1, &[0], &[]),
                    wave(5, &[], &[2]),
                ],
                post_sync: vec![wave(-3, &[], &[1])],
                sync_fail: vec![wave(0, &[], &[3])],
            }
        );
    }

    #[test]
    fn one_wave_without_hooks_is_one_step() {
        let (a, b) = (r("ConfigMap", "a"), r("Deployment", "b"));
        let steps = steps(&[(0, &b), (0, &a)], &[]);
        assert_eq!(steps.sync.len(), 1);
        assert_eq!(steps.sync[0].resources, [1, 0]);
        assert!(steps.pre_sync.is_empty() && steps.post_sync.is_empty());
    }

    #[test]
    fn completion_of_jobs_pods_and_other_kinds() {
        let job = |conditions: Value| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                   "status": {"conditions": conditions}})
        };
        assert_eq!(
            completion(&job(json!([{"type": "Complete", "status": "True"}]))),
            Completion::Succeeded
        );
        assert_eq!(
            completion(&job(json!([
                {"type": "FailureTarget", "status": "True"},
                {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                 "message": "Job was active longer than specified deadline"}
            ]))),
            Completion::Failed(
                "DeadlineExceeded: Job was active longer than specified deadline".into()
            )
        );
        assert!(matches!(
            completion(&job(json!([{"type": "Complete", "status": "False"}]))),
            Completion::Running(_)
        ));
        assert!(matches!(
            completion(&json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {}})),
            Completion::Running(_)
        ));
        let pod = |phase: &str| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "status": {"phase": phase}})
        };
        assert_eq!(completion(&pod("Succeeded")), Completion::Succeeded);
        assert_eq!(
            completion(&pod("Failed")),
            Completion::Failed("pod failed".into())
        );
        assert_eq!(
            completion(&pod("Running")),
            Completion::Running("pod Running".into())
        );
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert_eq!(completion(&cm), Completion::Succeeded);
    }
}
