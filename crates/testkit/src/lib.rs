//! Test support: test-bed access, per-test namespaces, Git repositories made by tests.
