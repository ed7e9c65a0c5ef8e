//! The one error type of the service layer. Which database failures are worth retrying is
//! decided in one place, [`crate::db::classify`].
//!
//! Handlers map a [`ServiceError`] to their own answer at the edge (`ApiError` for the REST API,
//! `WebError` for pages); nothing below the edges knows an HTTP status.

/// Why a use case did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input cannot be read at all (not a date, not JSON, not CSV).
    #[error("{0}")]
    Malformed(String),
    /// The input is readable but breaks a rule; `field` names it (a JSON pointer or a parameter).
    #[error("{message}")]
    Invalid {
        /// The offending field: a JSON pointer (`/idc`) or a parameter name (`as_of`).
        field: String,
        /// What is wrong, for a person.
        message: String,
    },
    /// The caller's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing (or not at that time).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// The database is unavailable or busy; retrying later helps.
    #[error("the database is unavailable; retry later")]
    Unavailable,
    /// Stored data does not decode (a bug or a hand-edited database); never the caller's fault.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Anything else: a bug, logged where it is turned into an answer.
    #[error("{0}")]
    Bug(String),
}

impl ServiceError {
    /// An [`ServiceError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::Invalid { field: field.into(), message: message.into() }
    }
}

use crate::db::{DbFailure, classify};

impl From<sqlx::Error> for ServiceError {
    fn from(error: sqlx::Error) -> Self {
        crate::metrics::db_error();
        match classify(&error) {
            DbFailure::Retryable => {
                tracing::warn!(%error, "database unavailable");
                ServiceError::Unavailable
            }
            DbFailure::Bug => {
                tracing::error!(%error, "database error");
                ServiceError::Bug("database error".to_owned())
            }
        }
    }
}

impl From<crate::store::Corrupt> for ServiceError {
    fn from(error: crate::store::Corrupt) -> Self {
        tracing::error!(%error, "stored data does not decode");
        ServiceError::Corrupt(error.0)
    }
}

impl From<crate::store::StoreError> for ServiceError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Db(e) => e.into(),
            crate::store::StoreError::Corrupt(e) => e.into(),
        }
    }
}
