//! The store's error type.

use taskwheel_core::{FieldError, TransitionError};

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("no such job")]
    NotFound,
    #[error("no such schedule")]
    ScheduleNotFound,
    #[error("no such workflow")]
    WorkflowNotFound,
    /// The request names something the database does not hold (say, an
    /// unknown parent job): the client's mistake, reported on its field.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// A unique name is taken.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The engine failed (I/O, corruption, a bug); the message is for the log, not the client.
    #[error("storage engine: {0}")]
    Backend(String),
    /// The database cannot be reached right now (connection refused or lost,
    /// pool exhausted, server shutting down); the request may succeed if
    /// retried later. Only engines with a database server report it.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store has shut down.
    #[error("the store is closed")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Backend(format!("stored JSON: {e}"))
    }
}
