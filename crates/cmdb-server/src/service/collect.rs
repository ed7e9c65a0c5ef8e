//! What collectors should collect: online hosts that have not reported since a cutoff.

use std::collections::HashMap;

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

/// Why a host is left out of the targets: what a collector would do with it is ambiguous or
/// unsafe, so it becomes a collection error instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// The asset left out.
    pub asset_id: i64,
    /// Its host name.
    pub hostname: String,
    /// Why.
    pub reason: String,
}

/// The hosts to collect and those withheld.
#[derive(Debug, Default)]
pub struct Targets {
    /// Hosts to collect, by id.
    pub targets: Vec<Target>,
    /// Hosts left out (to be recorded with [`record_withheld`]).
    pub withheld: Vec<Withheld>,
}

/// Online hosts not seen since `cutoff`, by id. Two assets that would be reached at the same
/// address (manage address, else host name; compared case-insensitively) are both withheld: a
/// collector would write one machine's report to whichever asset it was collecting, and the
/// server could no longer tell them apart. So is an address that could be read as more than one
/// word or an option (stored before such addresses were refused).
///
/// `mode` is the collector's transport (`ssh`, `salt`, or none for both): an SSH collector is not
/// kept from a host because its minion id is shared, nor a Salt collector because its address is.
pub async fn targets(db: &Db, cutoff: DateTime<Utc>, mode: Option<&str>) -> Result<Targets, ServiceError> {
    let (check_address, check_minion) = match mode {
        Some("ssh") => (true, false),
        Some("salt") => (false, true),
        _ => (true, true),
    };
    // Every online asset: the due ones are the targets, and all of them count for shared
    // addresses (a due host must not share an address with one that reported today).
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, hostname, manage_address, ssh_port, salt_minion_id, last_seen_at FROM assets \
         WHERE status = 'online' AND {} ORDER BY id",
        crate::service::assets::NOT_DELETED
    )))
    .fetch_all(db.reader())
    .await?;
    let cutoff = cutoff.timestamp_micros();
    let mut all = Vec::new();
    let mut by_address: HashMap<String, Vec<i64>> = HashMap::new();
    let mut by_minion: HashMap<String, Vec<i64>> = HashMap::new();
    for row in rows {
        let hostname: String = row.try_get(1)?;
        let minion: Option<String> = row.try_get(4)?;
        let target = Target {
            asset_id: row.try_get(0)?,
            salt_minion_id: minion.unwrap_or_else(|| hostname.clone()),
            hostname,
            manage_address: row.try_get(2)?,
            ssh_port: row.try_get(3)?,
        };
        let address = target.manage_address.as_deref().unwrap_or(&target.hostname);
        by_address.entry(endpoint(address, target.ssh_port)).or_default().push(target.asset_id);
        by_minion.entry(target.salt_minion_id.clone()).or_default().push(target.asset_id);
        let last_seen: Option<i64> = row.try_get(5)?;
        if last_seen.is_none_or(|seen| seen < cutoff) {
            all.push(target);
        }
    }
    let mut out = Targets::default();
    for target in all {
        let address = target.manage_address.clone().unwrap_or_else(|| target.hostname.clone());
        let others = |sharing: Option<&Vec<i64>>| -> Option<String> {
            let others: Vec<String> =
                sharing?.iter().filter(|id| **id != target.asset_id).map(|id| format!("asset {id}")).collect();
            (!others.is_empty()).then(|| others.join(", "))
        };
        let shared_address = others(by_address.get(&endpoint(&address, target.ssh_port))).filter(|_| check_address);
        let shared_minion = others(by_minion.get(&target.salt_minion_id)).filter(|_| check_minion);
        let reason = if let Some(others) = shared_address {
            Some(format!(
                "not collected: address {address:?} (port {}) is also the address of {others}; give each asset its own \
                 manage_address (or retire the old record)",
                target.ssh_port.unwrap_or(22)
            ))
        } else if let Some(others) = shared_minion {
            Some(format!(
                "not collected: Salt minion id {:?} is also the minion of {others}; give each asset its own salt_minion_id",
                target.salt_minion_id
            ))
        } else if let Err(problem) = cmdb_model::business::check_manage_address(&address) {
            Some(format!("not collected: {problem}"))
        } else if let Err(problem) = cmdb_model::business::check_minion_id(&target.salt_minion_id) {
            Some(format!("not collected: salt_minion_id: {problem}"))
        } else {
            None
        };
        match reason {
            Some(reason) => {
                out.withheld.push(Withheld { asset_id: target.asset_id, hostname: target.hostname, reason })
            }
            None => out.targets.push(target),
        }
    }
    Ok(out)
}

/// Where SSH reaches a host: the address (case-insensitive, as DNS is) and the port.
fn endpoint(address: &str, port: Option<i64>) -> String {
    format!("{}:{}", address.to_lowercase(), port.unwrap_or(22))
}

/// Records each withheld host as a collection error (source `collect-targets`), at most once a
/// day per asset and reason, so collectors asking every few minutes do not flood the list.
pub async fn record_withheld(db: &Db, withheld: &[Withheld]) -> Result<(), ServiceError> {
    let now = crate::db::now_us();
    let day_ago = now - 86_400_000_000;
    for item in withheld {
        let seen = sqlx::query(
            "SELECT 1 FROM collection_errors WHERE asset_id = $1 AND source = 'collect-targets' AND message = $2 \
             AND recorded_at > $3",
        )
        .bind(item.asset_id)
        .bind(item.reason.clone())
        .bind(day_ago)
        .fetch_optional(db.reader())
        .await?;
        if seen.is_some() {
            continue;
        }
        // The error and its webhook event, in one transaction.
        let mut tx = db.begin_write().await?;
        sqlx::query(
            "INSERT INTO collection_errors (asset_id, report_id, hostname, source, section, message, collected_at, recorded_at) \
             VALUES ($1, NULL, $2, 'collect-targets', 'address', $3, NULL, $4)",
        )
        .bind(item.asset_id)
        .bind(item.hostname.clone())
        .bind(item.reason.clone())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        crate::store::outbox::insert(&crate::store::outbox::OutboxEvent {
            kind: crate::store::outbox::EventKind::CollectionError,
            asset_id: item.asset_id,
            changes: None,
            payload: Some(crate::store::outbox::collection_error_payload(
                None,
                &item.hostname,
                "collect-targets",
                None,
                &[("address", &item.reason)],
            )),
            now,
        })
        .query()
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        crate::store::outbox::wake();
        tracing::warn!(asset_id = item.asset_id, reason = %item.reason, "collect target withheld");
    }
    Ok(())
}
