//! The public error-code table. Every API adapter maps its failures to one of
//! these codes; the codes and their meaning are stable across versions.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body or query is malformed or a field is invalid (400).
    InvalidRequest,
    /// No such object in this tenant (404).
    NotFound,
    /// The lease token is not the job's current lease (409).
    LeaseMismatch,
    /// The object is in a state that does not allow the action (409).
    InvalidState,
    /// A unique name is taken (409).
    Conflict,
    /// The server is shutting down or its store is unreachable (503).
    Unavailable,
    /// A bug or an unexpected store failure; details are in the server log (500).
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::LeaseMismatch | ErrorCode::InvalidState | ErrorCode::Conflict => 409,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// A problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
