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

/// The body of every error answer (the `Error` schema of the OpenAPI document).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct Body<'a> {
    /// Machine-readable code (bad_request, invalid, unauthorized, forbidden, not_found, conflict,
    /// too_large, unsupported_media_type, too_many_requests, unavailable, internal).
    error: &'a str,
    /// What went wrong, for people.
    message: String,
    /// JSON pointer of the offending value (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pointer: Option<&'a str>,
}

/// The error answers of the OpenAPI document: one type per status, listed in each operation's
/// `#[utoipa::path(responses(...))]`, each an `Error` body.
pub mod responses {
    use std::collections::BTreeMap;

    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, response::Response};

    fn error(status: &str, description: &str) -> BTreeMap<String, RefOr<Response>> {
        let name = <super::Body<'_> as utoipa::ToSchema>::name();
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(name))).build();
        let response = ResponseBuilder::new().description(description).content("application/json", content).build();
        BTreeMap::from([(status.to_owned(), RefOr::T(response))])
    }

    macro_rules! error_response {
        ($($name:ident $status:literal $description:literal;)*) => {$(
            #[doc = concat!("The ", $status, " answer: ", $description)]
            pub struct $name;
            impl utoipa::IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    error($status, $description)
                }
            }
        )*};
    }

    error_response! {
        BadRequest "400" "Malformed request (bad JSON, bad query value).";
        Unauthorized "401" "Missing, unknown or revoked credentials.";
        Forbidden "403" "The credentials lack the role this needs.";
        NotFound "404" "No such resource.";
        Conflict "409" "Conflicts with what is stored.";
        TooLarge "413" "Body larger than the configured limit.";
        UnsupportedMediaType "415" "Wrong Content-Type.";
        Invalid "422" "Well-formed but invalid; `pointer` names the offending value.";
        Unavailable "503" "The database is unavailable; retry after Retry-After seconds.";
    }
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

impl From<crate::service::ServiceError> for ApiError {
    fn from(error: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as E;
        match error {
            E::Malformed(m) => ApiError::BadRequest(m),
            E::Invalid { field, message } => ApiError::Invalid { pointer: field, message },
            E::Forbidden(m) => ApiError::Forbidden(m),
            E::NotFound(m) => ApiError::NotFound(m),
            E::Conflict(m) => ApiError::Conflict(m),
            E::Unavailable => ApiError::Unavailable("the database is unavailable; retry later".to_owned()),
            // Logged where they were raised (ServiceError's From impls); the client learns no detail.
            E::Corrupt(_) => ApiError::Internal("stored data does not decode; the server log has details".to_owned()),
            E::Bug(m) => ApiError::Internal(m),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        crate::service::ServiceError::from(error).into()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        crate::service::ServiceError::from(error).into()
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
