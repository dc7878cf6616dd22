//! Integration tests of the render stage. Kustomize and Helm tests run the real binaries
//! (see `common::real_tools`); they fail under `CI=true` when a binary is missing.

mod charts;
mod common;
mod helm;
mod jsonnet;
mod kustomize;
mod plain;
mod process;
mod vars;
