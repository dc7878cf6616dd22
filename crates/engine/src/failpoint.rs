//! Failpoints for the fault tests ([`fail`]): named points of a sync where a test stops
//! the process to kill it there. Built with the `failpoints` feature only (the `ferry`
//! binary's tests enable it through a dev-dependency); without it [`hit`] is empty and
//! the `FAILPOINTS` variable is never read.
//!
//! `FAILPOINTS="<name>=return"` makes the process print `ferry: failpoint <name> reached`
//! on stderr when a sync gets there, and block that sync there until it is killed;
//! `<name>=panic` panics there (any action of the `fail` crate works).

/// Between the writes of a sync and its prune (objects applied, inventory still wide).
pub const AFTER_APPLY: &str = "after-apply";
/// In a prune, after the objects of its first kind rank were deleted.
pub const MID_PRUNE: &str = "mid-prune";
/// After the prune, before the inventory is narrowed.
pub const BEFORE_NARROW: &str = "before-narrow";

/// The start of an app's plan, per app: `plan:<app>=panic` makes that app's planner
/// panic ([`hit_for`]).
pub const PLAN: &str = "plan";

/// The failpoint `<point>:<app>`, for failures of one app only.
#[cfg(feature = "failpoints")]
pub(crate) fn hit_for(point: &str, app: &str) {
    hit(&format!("{point}:{app}"));
}

/// Does nothing: built without failpoints.
#[cfg(not(feature = "failpoints"))]
pub(crate) fn hit_for(_point: &str, _app: &str) {}

/// Stops here when `FAILPOINTS` names `name` (see the module documentation).
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &str) {
    static SETUP: std::sync::Once = std::sync::Once::new();
    // The scenario stays configured for the process's lifetime.
    SETUP.call_once(|| std::mem::forget(fail::FailScenario::setup()));
    fail::fail_point!(name, |_| {
        eprintln!("ferry: failpoint {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    });
}

/// Does nothing: built without failpoints.
#[cfg(not(feature = "failpoints"))]
pub(crate) fn hit(_name: &str) {}
