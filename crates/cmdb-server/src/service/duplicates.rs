//! Possible duplicates: assets that share a board serial number or a board UUID, the identity
//! keys a machine carries wherever it goes. Two records for one machine happen: a retired host
//! that reports again, a machine registered by hand before its agent ran, a cloned VM. cmdb
//! never merges them on its own (that is a person's decision, with its history); it flags them on
//! the list, on both assets' pages and in the audit workbook, always by this one rule.
//!
//! The keys are the stored identity columns (`assets.board_sn`, `assets.board_uuid`), which hold
//! only real values: placeholders such as "To Be Filled By O.E.M." are never stored as keys (see
//! `cmdb_model::identity`), so they never make two assets look alike.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use crate::db::Db;
use crate::service::ServiceError;

/// Another asset that shares an identity key with the one at hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SharedIdentity {
    /// The other asset.
    pub asset_id: i64,
    /// Its host name now.
    pub hostname: String,
    /// What they share: `board serial` or `board UUID`.
    pub shares: String,
}

/// Every asset that shares a key with another, with the others (as they stand now). Two
/// index-only GROUP BYs and one read of the few assets they name.
pub async fn all(db: &Db) -> Result<BTreeMap<i64, Vec<SharedIdentity>>, ServiceError> {
    let rows = sqlx::query(
        "SELECT id, hostname, board_sn, board_uuid FROM assets \
         WHERE board_sn IN (SELECT board_sn FROM assets WHERE board_sn IS NOT NULL GROUP BY board_sn HAVING COUNT(*) > 1) \
         OR board_uuid IN (SELECT board_uuid FROM assets WHERE board_uuid IS NOT NULL GROUP BY board_uuid HAVING COUNT(*) > 1) \
         ORDER BY id",
    )
    .fetch_all(db.reader())
    .await?;
    let mut assets: Vec<(i64, String, Option<String>, Option<String>)> = Vec::with_capacity(rows.len());
    for row in &rows {
        assets.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?));
    }
    let mut out: BTreeMap<i64, Vec<SharedIdentity>> = BTreeMap::new();
    for (id, _, sn, uuid) in &assets {
        for (other, hostname, other_sn, other_uuid) in &assets {
            if other == id {
                continue;
            }
            let shares = if sn.is_some() && sn == other_sn {
                "board serial"
            } else if uuid.is_some() && uuid == other_uuid {
                "board UUID"
            } else {
                continue;
            };
            out.entry(*id).or_default().push(SharedIdentity {
                asset_id: *other,
                hostname: hostname.clone(),
                shares: shares.to_owned(),
            });
        }
    }
    Ok(out)
}

/// The assets that share a key with asset `id` (empty for most).
pub async fn of(db: &Db, id: i64) -> Result<Vec<SharedIdentity>, ServiceError> {
    let rows = sqlx::query(
        "SELECT o.id, o.hostname, CASE WHEN o.board_sn = a.board_sn THEN 'board serial' ELSE 'board UUID' END \
         FROM assets a JOIN assets o ON o.id <> a.id \
         AND (o.board_sn = a.board_sn OR o.board_uuid = a.board_uuid) WHERE a.id = $1 ORDER BY o.id",
    )
    .bind(id)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| Ok(SharedIdentity { asset_id: row.try_get(0)?, hostname: row.try_get(1)?, shares: row.try_get(2)? }))
        .collect()
}
