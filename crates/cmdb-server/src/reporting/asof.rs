//! The as-of view: an asset, or the whole list, as it stood at a date-time (by the time the server
//! recorded each change). Skeleton: being written.

use chrono::{DateTime, Utc};

use crate::assets::{AssetDetail, AssetPage, ListQuery};
use crate::db::Db;
use crate::error::ApiError;

/// One asset as it stood at `at`; `None` when it did not exist yet.
pub async fn asset_as_of(db: &Db, id: i64, at: DateTime<Utc>) -> Result<Option<AssetDetail>, ApiError> {
    let _ = (db, id, at);
    Err(ApiError::Internal("the as-of view is not implemented yet".to_owned()))
}

/// The asset list as it stood at `at`, filtered and paged like the live list.
pub async fn list_as_of(db: &Db, at: DateTime<Utc>, query: &ListQuery) -> Result<AssetPage, ApiError> {
    let _ = (db, at, query);
    Err(ApiError::Internal("the as-of view is not implemented yet".to_owned()))
}
