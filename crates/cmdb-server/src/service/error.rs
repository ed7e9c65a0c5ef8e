//! The one error type of the service layer, and the one place that decides which database
//! failures are worth retrying.
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

/// How a database failure should be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// The database is unavailable or busy (503 with Retry-After; retrying helps).
    Retryable,
    /// Anything else: a bug (500, logged as an error).
    Bug,
}

/// Classifies a database error. This is the only place that decides it.
///
/// Retryable: I/O, pool timed out or closed, the driver's worker crashed, TLS; PostgreSQL
/// SQLSTATE class 08 (connection exceptions), 57P01-57P03 (shutdown, cannot connect now), 53300
/// (too many connections), 40001 and 40P01 (serialization failure, deadlock); SQLite BUSY, LOCKED
/// and BUSY_RECOVERY (5, 6, 517). Everything else, `Protocol` and `Decode` included, is a bug.
pub fn classify(error: &sqlx::Error) -> DbFailure {
    let retryable = match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "5" | "6" | "517")
                || code.starts_with("08")
        }
        _ => false,
    };
    if retryable { DbFailure::Retryable } else { DbFailure::Bug }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_and_decode_errors_are_bugs_not_outages() {
        assert_eq!(classify(&sqlx::Error::Protocol("x".into())), DbFailure::Bug);
        assert_eq!(classify(&sqlx::Error::Decode("x".into())), DbFailure::Bug);
        assert_eq!(classify(&sqlx::Error::RowNotFound), DbFailure::Bug);
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), DbFailure::Retryable);
        assert_eq!(classify(&sqlx::Error::PoolClosed), DbFailure::Retryable);
        assert_eq!(classify(&sqlx::Error::WorkerCrashed), DbFailure::Retryable);
        assert_eq!(
            classify(&sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"))),
            DbFailure::Retryable
        );
    }
}
