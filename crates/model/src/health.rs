use std::fmt;

use serde::{Deserialize, Serialize};

/// kstatus-style status of one object.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
pub enum HealthStatus {
    /// Reconciled and ready.
    Current,
    /// Still rolling out or reconciling.
    InProgress,
    /// Will not become ready without a change.
    Failed,
    /// Being deleted.
    Terminating,
    /// Does not exist.
    NotFound,
    /// Status cannot be determined.
    Unknown,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A status with the reason behind it.
#[derive(
    Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct Health {
    /// The status.
    pub status: HealthStatus,
    /// Why, in one line (empty when Current).
    pub message: String,
}

impl Health {
    /// A health with a message.
    pub fn new(status: HealthStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// Current with no message.
    pub fn current() -> Self {
        Self::new(HealthStatus::Current, "")
    }
}
