//! Exports: the (filtered) asset list as CSV or XLSX, and the year-end audit workbook.
//! Skeleton: being written.

use chrono::{DateTime, Utc};

use crate::assets::ListQuery;
use crate::db::Db;
use crate::error::ApiError;

/// Exactly the assets the filters select (all pages), as CSV.
pub async fn list_csv(db: &Db, query: &ListQuery) -> Result<Vec<u8>, ApiError> {
    let _ = (db, query);
    Err(ApiError::Internal("exports are not implemented yet".to_owned()))
}

/// Exactly the assets the filters select (all pages), as XLSX.
pub async fn list_xlsx(db: &Db, query: &ListQuery) -> Result<Vec<u8>, ApiError> {
    let _ = (db, query);
    Err(ApiError::Internal("exports are not implemented yet".to_owned()))
}

/// The audit workbook: assets as of `as_of`, their components, and every change in [from, to).
pub async fn audit_xlsx(
    db: &Db,
    as_of: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<u8>, ApiError> {
    let _ = (db, as_of, from, to);
    Err(ApiError::Internal("exports are not implemented yet".to_owned()))
}
