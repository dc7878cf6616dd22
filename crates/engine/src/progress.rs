//! Progress events the engine reports while it works; the CLI prints them, the agent logs them.

use ferry_model::{Action, Health, ObjectRef};

/// One step of a sync.
#[derive(Clone, Debug)]
pub enum Event {
    /// A phase started (e.g. "planning 42 objects").
    Phase(String),
    /// An object was written.
    Applied {
        /// The object.
        subject: ObjectRef,
        /// What was done.
        action: Action,
    },
    /// An object was deleted.
    Pruned(ObjectRef),
    /// Health of the objects being waited for.
    Health {
        /// Objects that are Current.
        ready: usize,
        /// All objects waited for.
        total: usize,
        /// The objects not yet Current, with why.
        pending: Vec<(ObjectRef, Health)>,
    },
}

/// Receives [`Event`]s.
pub trait Progress: Send + Sync {
    /// Called for every event, in order.
    fn event(&self, event: Event);
}

/// Discards events.
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: Event) {}
}
