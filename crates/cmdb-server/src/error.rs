//! One error type for every HTTP answer that is not a success.
//!
//! Each variant maps to a status and a JSON body `{"error": "<code>", "message": "...", "pointer"?}`.
//! Database outages become 503 with Retry-After (clients retry); they never surface as 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON (or not UTF-8, or nested too deep).
    #[error("{0}")]
    BadRequest(String),
    /// The JSON is well-formed but violates the schema at `pointer`.
    #[error("{message}")]
    Invalid {
        /// JSON pointer of the offending value.
        pointer: String,
        /// What is wrong.
        message: String,
    },
    /// No or bad credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials fine, action not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the configured limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// Wrong Content-Type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many attempts.
    #[error("{0}")]
    TooManyRequests(String),
    /// The database is unreachable or overloaded; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug.
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pointer: Option<&'a str>,
}

impl ApiError {
    /// Status code and machine-readable code.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&error) {
            tracing::warn!(%error, "database unavailable");
            crate::metrics::db_error();
            ApiError::Unavailable("the database is unavailable; retry later".to_owned())
        } else {
            tracing::error!(%error, "database error");
            crate::metrics::db_error();
            ApiError::Internal("database error".to_owned())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        let pointer = match &self {
            ApiError::Invalid { pointer, .. } => Some(pointer.as_str()),
            _ => None,
        };
        let body = Body { error: code, message: self.to_string(), pointer };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
