//! The one mapping from failures to HTTP answers: a status from the public
//! error-code table and a JSON body `{"error": {"code", "message", "field"?}}`.
//! Internal details are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use taskwheel_core::wire::{ErrorBody, ErrorDetail};
use taskwheel_core::{ErrorCode, FieldError, TransitionError};
use taskwheel_store::StoreError;

use crate::engine::EngineError;

#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) ErrorDetail);

impl ApiError {
    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::from(FieldError::new(field, message))
    }

    pub(crate) fn not_found_route() -> Self {
        Self::new(ErrorCode::NotFound, "no such endpoint; see docs/API.md")
    }

    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ErrorDetail {
            code,
            message: message.into(),
            field: None,
        })
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self(ErrorDetail {
            code: ErrorCode::InvalidRequest,
            message: e.to_string(),
            field: Some(e.field),
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::new(ErrorCode::NotFound, "no such job"),
            StoreError::ScheduleNotFound => Self::new(ErrorCode::NotFound, "no such schedule"),
            StoreError::WorkflowNotFound => Self::new(ErrorCode::NotFound, "no such workflow"),
            StoreError::Invalid(field) => field.into(),
            StoreError::Conflict(message) => Self::new(ErrorCode::Conflict, message),
            StoreError::Transition(t @ TransitionError::StaleLease) => {
                Self::new(ErrorCode::LeaseMismatch, t.to_string())
            }
            StoreError::Transition(t @ TransitionError::WrongState { .. }) => {
                Self::new(ErrorCode::InvalidState, t.to_string())
            }
            StoreError::Closed => Self::new(ErrorCode::Unavailable, "the server is shutting down"),
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable");
                Self::new(
                    ErrorCode::Unavailable,
                    "the database is unavailable; retry shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "store failure");
                Self::new(ErrorCode::Internal, "internal error; see the server log")
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(f) => f.into(),
            EngineError::Store(s) => s.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody { error: self.0 })).into_response()
    }
}
