//! ferry's shared types, handed from stage to stage:
//! source → render ([`Manifest`]) → plan ([`ChangeSet`]) → apply → prune → observe ([`Health`]).
//!
//! This crate has no I/O besides parsing `ferry.yaml`; every other crate depends on it.

mod app;
pub mod appset;
pub mod backoff;
mod changeset;
pub mod deps;
mod health;
pub mod hook;
mod key;
mod known;
mod manifest;
pub mod notify;
mod object;
pub mod project;
pub mod redact;

pub use app::{
    AppSpec, Destination, FerryFile, HelmOptions, JsonnetOptions, KustomizeOptions, NamedApp,
    RendererKind, SecretRef, SourceSpec, SpecError, WaitSpec, is_local_repo, parse_duration,
};
pub use appset::{AppSet, PromoteMethod, PromoteSpec};
pub use backoff::Backoff;
pub use changeset::{Action, Change, ChangeSet, Summary};
pub use deps::{DependencyError, dependency_order};
pub use health::{Health, HealthStatus};
pub use hook::{HookRun, Phase, RunResult, WaveRun};
pub use key::{AppKey, AppKeyError};
pub use known::{Digest, Known};
pub use manifest::{Manifest, ManifestError, Origin};
pub use notify::{EventKind, NotificationSpec, ReceiverKind};
pub use object::ObjectRef;
pub use project::{
    DEFAULT_PROJECT, KindPattern, NamedProject, Project, ProjectSpec, RepoCredentials,
};
pub use redact::{redact_text, redact_url};

/// The field manager ferry uses for every server-side apply.
pub const FIELD_MANAGER: &str = "ferry";
/// Label put on every object ferry applies, naming the owning app.
pub const APP_LABEL: &str = "ferry.dev/app";
/// Label put on every object ferry applies next to [`APP_LABEL`], naming the owning
/// app's namespace (see [`AppKey`]). Objects written before it existed lack it.
pub const APP_NAMESPACE_LABEL: &str = "ferry.dev/app-namespace";
/// Annotation that protects an object from pruning when set to `disabled`.
pub const PRUNE_ANNOTATION: &str = "ferry.dev/prune";
/// Namespace holding ferry's per-app inventories.
pub const SYSTEM_NAMESPACE: &str = "ferry-system";
