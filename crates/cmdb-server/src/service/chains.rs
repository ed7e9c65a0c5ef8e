//! The history's digest: one hash over every asset's chain head as of an instant
//! ([`cmdb_model::chain::heads_digest`]). The audit workbook, the audit CSVs and
//! `GET /api/v1/audit/digest` carry it; an auditor keeps it outside the database, and
//! `cmdb-server verify --as-of T --expect DIGEST` later proves the history up to T unchanged
//! (verify recomputes every hash from the records' content; this module reads the stored ones).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::db::Db;
use crate::service::ServiceError;
use crate::service::time::{AsOf, Stated};

/// Names the digest's construction, so that a kept digest says how to recompute it.
pub const ALGORITHM: &str = "sha256-merkle-v1";

/// The digest of the history as of an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HistoryDigest {
    /// The instant: every change recorded at or before it.
    pub as_of: Stated,
    /// The digest (64 hex digits).
    pub digest: String,
    /// How it is built: a Merkle root over `(asset_id, chain head)` in asset order.
    pub algorithm: &'static str,
    /// Assets with at least one change by then (the chains it covers).
    pub chains: u64,
    /// The command that proves it later.
    pub verify_command: String,
}

/// Every asset's chain head as of `at` (Unix µs), in asset order: the stored hash of its last
/// record (by id) recorded at or before `at`; assets with none are left out. One query: each
/// asset's records are read newest first through `changes_asset` until one is old enough.
pub async fn heads_at(conn: &mut sqlx::AnyConnection, at: i64) -> Result<Vec<(i64, String)>, ServiceError> {
    let rows = sqlx::query(
        "SELECT a.id, (SELECT c.hash FROM changes c WHERE c.asset_id = a.id AND c.recorded_at <= $1 \
         ORDER BY c.id DESC LIMIT 1) FROM assets a ORDER BY a.id",
    )
    .bind(at)
    .fetch_all(&mut *conn)
    .await?;
    let mut heads = Vec::with_capacity(rows.len());
    for row in &rows {
        let (id, head): (i64, Option<String>) = (row.try_get(0)?, row.try_get(1)?);
        if let Some(head) = head {
            heads.push((id, head));
        }
    }
    Ok(heads)
}

/// The digest as of `at` (a settled as-of), from the stored hashes.
pub async fn digest(db: &Db, at: AsOf) -> Result<HistoryDigest, ServiceError> {
    let mut conn = db.reader().acquire().await?;
    let heads = heads_at(&mut conn, at.effective.timestamp_micros()).await?;
    Ok(described(at, &heads))
}

/// The answer for `heads` as of `at`.
pub fn described(at: AsOf, heads: &[(i64, String)]) -> HistoryDigest {
    let digest = cmdb_model::chain::heads_digest(heads.iter().map(|(id, head)| (*id, head.as_str())));
    HistoryDigest {
        as_of: at.stated(),
        verify_command: verify_command(at.effective, &digest),
        digest,
        algorithm: ALGORITHM,
        chains: heads.len() as u64,
    }
}

/// The command that recomputes `digest` for `at` from the records themselves.
pub fn verify_command(at: DateTime<Utc>, digest: &str) -> String {
    format!("cmdb-server verify --as-of {} --expect {digest}", at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}
