//! Report ingestion: identity -> diff -> one transaction that appends the changes and updates the
//! state.
//!
//! Per report, in one write transaction:
//! 1. record the request's nonce (a replayed request stops here);
//! 2. a report id seen before returns the first outcome and writes nothing else;
//! 3. resolve the asset by identity keys (see `cmdb_model::identity`), creating it if none matches;
//! 4. a report older than the last applied one is acknowledged and not applied;
//! 5. diff the stored state against the report; append the changes, then write the state they
//!    produce, the asset's summary columns and search terms, the collection errors, and the
//!    report's outcome.
//!
//! On PostgreSQL, concurrent reports for one host are serialized by a transaction-scoped advisory
//! lock on their host name and board UUID (so two first reports cannot both create the asset) and
//! by a row lock on the asset. On SQLite the single writer connection serializes everything.

use std::sync::Arc;

use cmdb_model::business::{AssetStatus, BusinessFields};
use cmdb_model::diff::{Action, ChangeOp, apply, diff_report};
use cmdb_model::identity::{MatchKey, ReportKeys, admissible};
use cmdb_model::report::{Report, SectionResult};
use cmdb_model::state::{AssetState, BUSINESS_SECTION};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::auth::{AgentKey, KeyScope, record_nonce};
use crate::db::{Backend, Db, is_unavailable, now_us};
use crate::store::summary::{AssetSummary, search_terms};
use crate::store::{self, AssetKeysRow, ChangeContext};

/// What the server answers to a report (and stores, so a repeated report id gets the same answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The report's id.
    pub report_id: Uuid,
    /// The asset the report was matched to or created as.
    pub asset_id: i64,
    /// False when the report was older than the last applied one and was not applied.
    pub applied: bool,
    /// The identity key that matched, or null when the asset was created.
    pub matched_by: Option<MatchKey>,
    /// True when this report created the asset.
    pub created: bool,
    /// Number of change records written.
    pub changes: usize,
}

/// How an ingestion ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Applied and something changed.
    Changed,
    /// Applied; nothing changed.
    Unchanged,
    /// Older than the last applied report.
    Stale,
    /// Report id seen before.
    Duplicate,
}

impl Disposition {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Changed => "changed",
            Disposition::Unchanged => "unchanged",
            Disposition::Stale => "stale",
            Disposition::Duplicate => "duplicate",
        }
    }
}

/// The nonce that authorized the request, recorded in the report's transaction.
#[derive(Debug, Clone)]
pub struct NonceUse<'a> {
    /// Key id (or "legacy").
    pub key_id: &'a str,
    /// The nonce.
    pub nonce: &'a str,
    /// The request's timestamp (Unix seconds).
    pub timestamp: i64,
    /// The clock window in seconds.
    pub window_secs: u64,
}

/// Why a report was not ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The nonce was used before.
    #[error("nonce already used (replayed request)")]
    Replay,
    /// The key may not report for this asset.
    #[error("{0}")]
    Forbidden(String),
    /// The history and the state disagree (a bug; nothing was written).
    #[error("stored state is inconsistent with its history: {0}")]
    Inconsistent(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// Ingests one validated report. `source` is agent, ssh, salt or legacy.
pub async fn ingest(
    db: &Db,
    report: &Report,
    source: &str,
    key: Option<&AgentKey>,
    nonce: Option<&NonceUse<'_>>,
) -> Result<(Outcome, Disposition), IngestError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ingest_once(db, report, source, key, nonce).await {
            // Deadlocks and serialization failures are safe to retry: the transaction rolled back.
            Err(IngestError::Db(e)) if attempt < 4 && is_retryable(&e) => {
                tracing::debug!(attempt, error = %e, "retrying report transaction");
                tokio::time::sleep(std::time::Duration::from_millis(10 * attempt)).await;
            }
            other => return other,
        }
    }
}

fn is_retryable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

fn lock_key(text: &str) -> i64 {
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

async fn stored_outcome(conn: &mut AnyConnection, report_id: &str) -> Result<Option<Outcome>, sqlx::Error> {
    let row = sqlx::query("SELECT outcome FROM reports WHERE report_id = $1")
        .bind(report_id.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.try_get(0)?;
    serde_json::from_str(&text).map(Some).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn find_match(candidates: &[AssetKeysRow], keys: &ReportKeys) -> Option<(AssetKeysRow, MatchKey)> {
    for key in MatchKey::ALL {
        let found = candidates.iter().find(|c| {
            let has_key = match key {
                MatchKey::BoardUuid => keys.board_uuid.value().is_some_and(|u| c.board_uuid.as_ref() == Some(u)),
                MatchKey::BoardSerial => keys.board_serial.value().is_some_and(|(manufacturer, sn)| {
                    c.board_sn.as_ref() == Some(sn) && c.board_manufacturer.as_ref() == manufacturer.as_ref()
                }),
                MatchKey::MachineId => keys.machine_id.as_ref().is_some_and(|m| c.machine_id.as_ref() == Some(m)),
                MatchKey::PreviousHostname => keys.previous_hostname.as_ref() == Some(&c.hostname),
                MatchKey::Hostname => keys.hostname == c.hostname,
            };
            has_key && admissible(key, &c.keys(), keys)
        });
        if let Some(found) = found {
            return Some((found.clone(), key));
        }
    }
    None
}

async fn ingest_once(
    db: &Db,
    report: &Report,
    source: &str,
    key: Option<&AgentKey>,
    nonce: Option<&NonceUse<'_>>,
) -> Result<(Outcome, Disposition), IngestError> {
    let backend = db.backend();
    let report_id = report.report_id.to_string();
    let mut tx = db.begin_write().await?;

    if let Some(n) = nonce
        && !record_nonce(&mut tx, n.key_id, n.nonce, n.timestamp, n.window_secs).await?
    {
        return Err(IngestError::Replay);
    }
    if let Some(outcome) = stored_outcome(&mut tx, &report_id).await? {
        tx.commit().await?;
        return Ok((outcome, Disposition::Duplicate));
    }

    let keys = ReportKeys::from_report(report);
    if backend == Backend::Postgres {
        let mut locks = vec![lock_key(&format!("hostname:{}", keys.hostname))];
        if let Some(uuid) = keys.board_uuid.value() {
            locks.push(lock_key(&format!("uuid:{uuid}")));
        }
        locks.sort_unstable();
        locks.dedup();
        let sql = if locks.len() == 1 {
            "SELECT pg_advisory_xact_lock($1)"
        } else {
            "SELECT pg_advisory_xact_lock($1), pg_advisory_xact_lock($2)"
        };
        let mut query = sqlx::query(sql);
        for lock in locks {
            query = query.bind(lock);
        }
        query.execute(&mut *tx).await?;
    }
    let mut hostnames = vec![keys.hostname.as_str()];
    if let Some(previous) = &keys.previous_hostname {
        hostnames.push(previous);
    }
    let sn = keys.board_serial.value().map(|(_, sn)| sn.as_str());
    let candidates = store::identity_candidates(
        &mut tx,
        keys.board_uuid.value().map(String::as_str),
        sn,
        keys.machine_id.as_deref(),
        &hostnames,
    )
    .await?;
    let matched = find_match(&candidates, &keys);

    if let (Some(key), Some((row, _))) = (key, &matched)
        && key.scope == KeyScope::Host
        && key.asset_id.is_some_and(|bound| bound != row.id)
    {
        return Err(forbidden(key, &report.host.hostname));
    }

    let now = now_us();
    let collected_at = report.collected_at.timestamp_micros();
    let (asset_id, matched_by, created, stored, version) = match matched {
        Some((row, match_key)) => {
            // On SQLite, BEGIN IMMEDIATE already made this the only writer, so the row read with
            // the candidates is current; PostgreSQL rereads it under a row lock.
            let locked = match backend {
                Backend::Sqlite => row.clone(),
                Backend::Postgres => match store::lock_asset(&mut tx, backend, row.id).await? {
                    Some(locked) => locked,
                    None => return Err(IngestError::Inconsistent(format!("asset {} vanished", row.id))),
                },
            };
            if locked.last_collected_at.is_some_and(|last| collected_at < last) {
                let outcome = Outcome {
                    report_id: report.report_id,
                    asset_id: row.id,
                    applied: false,
                    matched_by: Some(match_key),
                    created: false,
                    changes: 0,
                };
                save_outcome(&mut tx, &outcome, now).await?;
                tx.commit().await?;
                tracing::warn!(
                    report_id = %report.report_id,
                    asset_id = row.id,
                    collected_at = %report.collected_at,
                    last_applied = %crate::db::from_us(locked.last_collected_at.unwrap_or_default()),
                    "stale report acknowledged and not applied"
                );
                return Ok((outcome, Disposition::Stale));
            }
            let state = match db.states().get(row.id, locked.version) {
                Some(state) => state,
                None => Arc::new(store::load_state(&mut tx, row.id).await?),
            };
            (row.id, Some(match_key), false, state, locked.version)
        }
        None => {
            if let Some(key) = key
                && key.scope == KeyScope::Host
                && key.asset_id.is_some()
            {
                return Err(forbidden(key, &report.host.hostname));
            }
            let id = store::insert_asset(&mut tx, &report.host.hostname, AssetStatus::Online.as_str(), now).await?;
            (id, None, true, Arc::new(AssetState::default()), 0)
        }
    };

    if let Some(key) = key
        && key.scope == KeyScope::Host
    {
        // Exact even when another instance bound the key a moment ago: the row decides.
        let bound =
            sqlx::query("UPDATE agent_keys SET asset_id = $1 WHERE id = $2 AND (asset_id IS NULL OR asset_id = $1)")
                .bind(asset_id)
                .bind(key.id)
                .execute(&mut *tx)
                .await?;
        if bound.rows_affected() != 1 {
            return Err(forbidden(key, &report.host.hostname));
        }
    }

    let mut ops: Vec<ChangeOp> = Vec::new();
    if created {
        let business = BusinessFields { status: AssetStatus::Online, ..BusinessFields::default() };
        ops.push(ChangeOp {
            section: BUSINESS_SECTION.to_owned(),
            component: None,
            path: String::new(),
            action: Action::Added,
            old: None,
            new: Some(Value::Object(business.to_fields())),
        });
    }
    ops.extend(diff_report(&stored, report));
    let state = if ops.is_empty() {
        Arc::clone(&stored)
    } else {
        let mut state = AssetState::clone(&stored);
        for op in &ops {
            apply(&mut state, op).map_err(|e| IngestError::Inconsistent(e.to_string()))?;
        }
        Arc::new(state)
    };
    if !ops.is_empty() {
        let context = ChangeContext {
            asset_id,
            recorded_at: now,
            collected_at: Some(collected_at),
            report_id: Some(&report_id),
            source,
        };
        store::insert_changes(&mut tx, backend, &context, &ops).await?;
        store::write_state(&mut tx, asset_id, &state, &ops).await?;
        // The stored rows are the terms of the stored state (every write goes through
        // write_summary); a new asset has none yet.
        let previous_terms = if created { Default::default() } else { search_terms(&stored) };
        store::write_summary(
            &mut tx,
            asset_id,
            &AssetSummary::from_state(&state),
            &search_terms(&state),
            Some(&previous_terms),
            now,
        )
        .await?;
    }
    sqlx::query("UPDATE assets SET last_seen_at = $2, last_collected_at = $3, last_report_id = $4 WHERE id = $1")
        .bind(asset_id)
        .bind(now)
        .bind(collected_at)
        .bind(report_id.clone())
        .execute(&mut *tx)
        .await?;
    for (section, result) in &report.sections {
        if let SectionResult::Error(message) = result {
            sqlx::query(
                "INSERT INTO collection_errors (asset_id, report_id, hostname, source, section, message, collected_at, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(asset_id)
            .bind(report_id.clone())
            .bind(report.host.hostname.clone())
            .bind(source.to_owned())
            .bind(section.clone())
            .bind(message.clone())
            .bind(collected_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
    }
    let outcome =
        Outcome { report_id: report.report_id, asset_id, applied: true, matched_by, created, changes: ops.len() };
    if !save_outcome(&mut tx, &outcome, now).await? {
        // Another instance committed the same report id while we worked: answer with its outcome.
        drop(tx);
        let mut conn = db.reader().acquire().await?;
        return match stored_outcome(&mut conn, &report_id).await? {
            Some(first) => Ok((first, Disposition::Duplicate)),
            None => Err(IngestError::Inconsistent(format!("report {report_id} vanished"))),
        };
    }
    tx.commit().await?;
    // write_summary bumped the version when the state changed.
    let version = if ops.is_empty() { version } else { version + 1 };
    db.states().put(asset_id, version, state);
    let disposition = if ops.is_empty() { Disposition::Unchanged } else { Disposition::Changed };
    Ok((outcome, disposition))
}

fn forbidden(key: &AgentKey, hostname: &str) -> IngestError {
    tracing::warn!(key_id = %key.key_id, hostname, "host-scoped agent key reported for another asset; refused");
    IngestError::Forbidden(format!(
        "agent key {} is a host key bound to another asset; use a collector key for SSH/Salt workers",
        key.key_id
    ))
}

/// Stores the outcome under the report id; `false` when the id is already taken.
async fn save_outcome(conn: &mut AnyConnection, outcome: &Outcome, now: i64) -> Result<bool, sqlx::Error> {
    let text = serde_json::to_string(outcome).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let done = sqlx::query(
        "INSERT INTO reports (report_id, asset_id, received_at, outcome) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(outcome.report_id.to_string())
    .bind(outcome.asset_id)
    .bind(now)
    .bind(text)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// True when `error` should be answered with 503 (the client retries later).
pub fn is_transient(error: &IngestError) -> bool {
    matches!(error, IngestError::Db(e) if is_unavailable(e))
}
