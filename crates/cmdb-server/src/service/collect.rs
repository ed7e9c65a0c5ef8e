//! What collectors should collect: online hosts that have not reported since a cutoff.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::Db;
use crate::service::ServiceError;

/// One host to collect.
#[derive(Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Target {
    /// Asset id.
    pub asset_id: i64,
    /// Host name.
    pub hostname: String,
    /// Address to connect to, when not the host name.
    pub manage_address: Option<String>,
    /// SSH port, when set.
    pub ssh_port: Option<i64>,
    /// Salt minion id (default: the host name).
    pub salt_minion_id: String,
}

/// Online hosts not seen since `cutoff`, by id.
pub async fn targets(db: &Db, cutoff: DateTime<Utc>) -> Result<Vec<Target>, ServiceError> {
    let rows = sqlx::query(
        "SELECT id, hostname, manage_address, ssh_port, salt_minion_id FROM assets \
         WHERE status = 'online' AND (last_seen_at IS NULL OR last_seen_at < $1) ORDER BY id",
    )
    .bind(cutoff.timestamp_micros())
    .fetch_all(db.reader())
    .await?;
    let mut targets = Vec::with_capacity(rows.len());
    for row in rows {
        let hostname: String = row.try_get(1)?;
        let minion: Option<String> = row.try_get(4)?;
        targets.push(Target {
            asset_id: row.try_get(0)?,
            salt_minion_id: minion.unwrap_or_else(|| hostname.clone()),
            hostname,
            manage_address: row.try_get(2)?,
            ssh_port: row.try_get(3)?,
        });
    }
    Ok(targets)
}
