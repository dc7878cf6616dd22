//! Sync phases, waves and hooks as they appear in a [`crate::ChangeSet`], and the
//! annotations that declare them (ferry's, Argo CD's and Helm's; `ferry-plan` reads them).

use serde::{Deserialize, Serialize};

use crate::ObjectRef;

/// An object's sync wave (`"<int>"`, default 0, negative allowed).
pub const WAVE_ANNOTATION: &str = "ferry.dev/sync-wave";
/// Makes an object a hook: `PreSync`, `Sync`, `PostSync`, `SyncFail` or `Skip`,
/// comma-separated.
pub const HOOK_ANNOTATION: &str = "ferry.dev/hook";
/// When a hook is deleted: `HookSucceeded`, `HookFailed`, `BeforeHookCreation`.
pub const HOOK_DELETE_ANNOTATION: &str = "ferry.dev/hook-delete-policy";
/// Argo CD's [`WAVE_ANNOTATION`].
pub const ARGO_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
/// Argo CD's [`HOOK_ANNOTATION`].
pub const ARGO_HOOK_ANNOTATION: &str = "argocd.argoproj.io/hook";
/// Argo CD's [`HOOK_DELETE_ANNOTATION`].
pub const ARGO_HOOK_DELETE_ANNOTATION: &str = "argocd.argoproj.io/hook-delete-policy";
/// Helm's hook annotation (`pre-install`, `post-upgrade`, `test`, …).
pub const HELM_HOOK_ANNOTATION: &str = "helm.sh/hook";
/// Helm's hook weight: the wave among hooks.
pub const HELM_WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";
/// Helm's hook delete policy (`before-hook-creation`, `hook-succeeded`, `hook-failed`).
pub const HELM_HOOK_DELETE_ANNOTATION: &str = "helm.sh/hook-delete-policy";
/// Label on every hook ferry creates, naming the app (hooks do not carry
/// [`crate::APP_LABEL`]: they are not in the inventory, not pruned and not watched).
pub const HOOK_LABEL: &str = "ferry.dev/hook-of";
/// Annotation on every hook ferry creates: its template as in Git
/// (`<Kind>/<namespace>/<name or generateName>`), to find the previous run's hooks.
pub const HOOK_TEMPLATE_ANNOTATION: &str = "ferry.dev/hook-template";

/// The annotations that make an object a hook (of any origin).
pub const HOOK_ANNOTATIONS: [&str; 3] =
    [HOOK_ANNOTATION, ARGO_HOOK_ANNOTATION, HELM_HOOK_ANNOTATION];

/// The phase of a sync a hook runs in.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
pub enum Phase {
    /// Before anything is applied; a failure means nothing else is written.
    PreSync,
    /// Within its wave, with the wave's objects.
    Sync,
    /// After every wave is healthy.
    PostSync,
    /// Only when the sync failed.
    SyncFail,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::PreSync => "PreSync",
            Phase::Sync => "Sync",
            Phase::PostSync => "PostSync",
            Phase::SyncFail => "SyncFail",
        })
    }
}

/// How a hook or a wave ended.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// Not run: a plan (it would run), or the sync stopped before it.
    Pending,
    /// The hook completed / the wave's objects are healthy.
    Succeeded,
    /// The hook failed or timed out / the wave failed or timed out.
    Failed,
}

/// One hook of a sync: planned (a dry run lists the hooks that would run) or run.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct HookRun {
    /// The hook: as created (with its generated name), or as in Git when not created.
    pub subject: ObjectRef,
    /// The phase it ran in.
    pub phase: Phase,
    /// Its wave within the phase.
    #[serde(default)]
    pub wave: i32,
    /// How it ended.
    pub result: RunResult,
    /// How long it took, from creation to completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why it failed, or its last status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One wave of a sync with more than one wave.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct WaveRun {
    /// The wave.
    pub wave: i32,
    /// Its objects (hooks not counted).
    pub objects: usize,
    /// How it ended.
    pub result: RunResult,
    /// How long applying and waiting for it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
