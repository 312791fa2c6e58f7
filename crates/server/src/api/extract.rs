//! Extractors that turn malformed input into errors naming the field at
//! fault, and the tenant of the caller.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use taskwheel_core::{FieldError, JobId, TENANT_DEFAULT};

use super::error::ApiError;

/// A JSON body; a bad one answers 400 with the path of the offending field.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::field("body", e.body_text()))?;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de)
            .map(JsonBody)
            .map_err(|e| named(e.path().to_string(), e.inner().to_string()))
    }
}

/// A query string, with the same error reporting as [`JsonBody`].
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded(query));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| named(e.path().to_string(), e.inner().to_string()))
    }
}

fn form_urlencoded(query: &str) -> ::form_urlencoded::Parse<'_> {
    ::form_urlencoded::parse(query.as_bytes())
}

/// serde names the top level `.`; unknown or missing fields name themselves
/// in the message. A missing field's path is the object that lacks it, so
/// the field's name is added to it.
fn named(path: String, message: String) -> ApiError {
    let missing = message.starts_with("missing field");
    let field = match (path.as_str(), field_in_message(&message)) {
        (".", Some(name)) => name,
        (".", None) => "body".into(),
        (object, Some(name)) if missing => format!("{object}.{name}"),
        _ => path,
    };
    ApiError::field(field, message)
}

/// Reads one item of a batch on its own; the error names the field within
/// the item (empty for the item as a whole).
pub(crate) fn item<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let (path, message) = (e.path().to_string(), e.inner().to_string());
        let field = if path == "." {
            field_in_message(&message).unwrap_or_default()
        } else {
            path
        };
        FieldError::new(field, message)
    })
}

/// Pulls the field name out of serde's "missing field `x`" / "unknown field `x`".
fn field_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// Parses the `{id}` path segment as a job id.
pub(crate) fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::field("id", format!("`{raw}` is not a job id (a UUID)")))
}

/// The tenant a request acts for. Every request is the built-in tenant until
/// API keys arrive; handlers already take it, so nothing reshapes then.
pub(crate) struct Tenant(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Tenant(TENANT_DEFAULT.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_come_out_of_serde_messages() {
        assert_eq!(
            field_in_message("missing field `worker` at line 1").as_deref(),
            Some("worker")
        );
        assert_eq!(
            field_in_message("unknown field `tries`, expected one of").as_deref(),
            Some("tries")
        );
        assert_eq!(field_in_message("expected value"), None);
    }
}
