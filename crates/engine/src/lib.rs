//! The engine: plan, apply, prune and health wait for one app.
