//! The only crate that talks to the Kubernetes API server.
