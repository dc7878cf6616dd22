//! Pure planning: everything ferry decides about Kubernetes objects without talking to
//! anything. Values in, values out — no cluster, network, Git, files, processes or
//! clocks (callers pass the time in); `scripts/test.sh` checks that this crate depends on
//! none of kube, k8s-openapi, tokio, reqwest or gix.
//!
//! - [`diff`]: normalisation, Secret masking, unified diffs;
//! - [`order`]: apply and prune order;
//! - [`hooks`]: sync phases, waves and hooks from annotations (ferry, Argo CD, Helm);
//! - [`health`]: kstatus-style health of one live object;
//! - [`plan`]: desired, live and dry-run objects in, a `ChangeSet` out;
//! - [`preview`]: what moving between two revisions changes, offline;
//! - [`drift`]: which field differs from Git and which field manager wrote it;
//! - [`memo`]: stable fingerprints for the in-sync memo kept in inventories;
//! - [`policy`]: a project's rules against one app and its objects (violations);
//! - [`edit`]: targeted, layout-preserving edits of YAML files' text (`ferry promote`).
//!
//! Fetching, rendering and applying are the engine's (`ferry-engine`).

pub mod diff;
pub mod drift;
pub mod edit;
pub mod health;
pub mod hooks;
pub mod memo;
pub mod order;
pub mod plan;
pub mod policy;
pub mod preview;
