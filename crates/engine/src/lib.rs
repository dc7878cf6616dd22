//! The engine: everything between a Git revision and a healthy cluster, for one app.
//!
//! Data flows one way: [`source::render_app`] (fetch + render) → [`sync::plan`]
//! (GET + server-side-apply dry-run, then the pure [`plan::plan`]) → [`sync::apply`]
//! (staged apply, prune, inventory) → [`wait::wait_healthy`] (kstatus health).
//!
//! The pure modules live in `ferry-plan` and are re-exported here at their old paths:
//! [`health`], [`order`], [`diff`], [`plan`], [`preview`] (and [`promote::yaml`]). The
//! I/O modules talk to the cluster only through `ferry_kube`.

pub mod appset;
mod error;
pub mod progress;
pub mod promote;
pub mod source;
pub mod sync;
pub mod wait;

pub use error::EngineError;
pub use ferry_plan::{diff, health, order, plan, preview};
