//! The engine: everything between a Git revision and a healthy cluster, for one app.
//!
//! Data flows one way: [`source::render_app`] (fetch + render) → [`sync::Sync::run`], the
//! one sync entry point: plan (GET/LIST + server-side-apply dry-run, then the pure
//! [`plan::plan`]) → apply (staged, inventory widened first) → prune (inventory narrowed
//! last) → health ([`wait`], kstatus rules). Push mode, the agent and the dashboard all
//! call [`sync::Sync`]; none of them calls a step on its own.
//!
//! The pure modules live in `ferry-plan` and are re-exported here at their old paths:
//! [`health`], [`order`], [`diff`], [`plan`], [`preview`] (and [`promote::yaml`]). The
//! I/O modules talk to the cluster only through `ferry_kube`.

pub mod appset;
mod error;
pub mod facts;
pub mod failpoint;
pub mod progress;
pub mod project;
pub mod promote;
pub mod source;
pub mod sync;
pub mod wait;

pub use error::EngineError;
pub use ferry_plan::{diff, health, order, plan, preview};
pub use sync::{Sync, SyncOptions, SyncReport, Wait};
