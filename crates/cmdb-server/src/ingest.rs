//! Report ingestion: identity -> diff -> the writes that append the changes and update the state.
//!
//! [`Ingestor`] owns ingestion: on SQLite it holds the one writer task and its queue (see
//! [`sqlite_writer`]); on PostgreSQL each request writes in its own transaction.
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
//! by a row lock on the asset. On SQLite the single writer task serializes everything.

use std::sync::Arc;

use cmdb_model::business::{AssetStatus, BusinessFields};
use cmdb_model::diff::{Action, ChangeOp, apply, diff_report};
use cmdb_model::identity::{MatchKey, ReportKeys, admissible};
use cmdb_model::report::{Report, SectionResult};
use cmdb_model::state::{AssetState, BUSINESS_SECTION};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Row};
use uuid::Uuid;

use crate::auth::{AgentKey, KeyScope, nonce_insert};
use crate::db::{Backend, Db, classify, now_us};
use crate::store::sql::{Batch, Sql};
use crate::store::summary::{AssetSummary, search_terms};
use crate::store::{self, AssetKeysRow, ChangeContext, Corrupt, StateCache, StoreError};

/// What the server answers to a report (and stores, so a repeated report id gets the same answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    /// The report's id.
    pub report_id: Uuid,
    /// The asset the report was matched to or created as.
    pub asset_id: i64,
    /// False when the report was older than the last applied one and was not applied.
    pub applied: bool,
    /// The identity key that matched, or null when the asset was created.
    #[schema(value_type = Option<String>)]
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

/// The `source` of reports from the legacy endpoint (`POST /api/asset`).
pub const LEGACY_SOURCE: &str = "legacy";

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
    /// The report contradicts what it claims to be: collected for one asset, it resolves to
    /// another (a collection error on the target says so too), or it would rename an asset
    /// through the legacy endpoint.
    #[error("{0}")]
    Conflict(String),
    /// The history and the state disagree (a bug; nothing was written).
    #[error("stored state is inconsistent with its history: {0}")]
    Inconsistent(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Stored data does not decode (a bug or a hand-edited database; nothing was written).
    #[error("stored data is corrupt: {0}")]
    Corrupt(#[from] Corrupt),
    /// The SQLite writer task is gone (the server is shutting down); retrying is safe.
    #[error("not stored, retry: {0}")]
    Aborted(String),
}

impl From<StoreError> for IngestError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Db(e) => IngestError::Db(e),
            StoreError::Corrupt(e) => IngestError::Corrupt(e),
        }
    }
}

/// The owner of ingestion for one database: on SQLite, the writer task and its queue.
///
/// Clones share the task; it ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Ingestor {
    db: Target,
    /// SQLite: the queue of the writer task that runs every report (None on PostgreSQL).
    queue: Option<tokio::sync::mpsc::Sender<Job>>,
}

impl Ingestor {
    /// Starts ingestion for `db` (on SQLite, spawns the writer task).
    pub fn start(db: Db) -> Ingestor {
        let db = Target { db, states: Default::default() };
        let queue = match db.backend() {
            Backend::Sqlite => {
                let (queue, jobs) = tokio::sync::mpsc::channel(1024);
                tokio::spawn(sqlite_writer(db.clone(), jobs));
                Some(queue)
            }
            Backend::Postgres => None,
        };
        Ingestor { db, queue }
    }
}

/// The database a report is written to, with the states cached for it (asset states by version,
/// so an unchanged host's report skips loading its state). Internal to ingestion; it reads as the
/// database it wraps.
#[derive(Debug, Clone)]
struct Target {
    db: Db,
    states: Arc<StateCache>,
}

impl std::ops::Deref for Target {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

impl Target {
    fn states(&self) -> &StateCache {
        &self.states
    }
}

impl Ingestor {
    /// Ingests one validated report. `source` is agent, ssh, salt or legacy.
    pub async fn ingest(
        &self,
        report: &Report,
        source: &str,
        key: Option<&AgentKey>,
        nonce: Option<&NonceUse<'_>>,
    ) -> Result<(Outcome, Disposition), IngestError> {
        ingest(&self.db, self.queue.as_ref(), report, source, key, nonce).await
    }
}

async fn ingest(
    db: &Target,
    queue: Option<&tokio::sync::mpsc::Sender<Job>>,
    report: &Report,
    source: &str,
    key: Option<&AgentKey>,
    nonce: Option<&NonceUse<'_>>,
) -> Result<(Outcome, Disposition), IngestError> {
    if let Some(queue) = queue {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            report: report.clone(),
            source: source.to_owned(),
            key: key.cloned(),
            nonce: nonce.map(|n| OwnedNonce {
                key_id: n.key_id.to_owned(),
                nonce: n.nonce.to_owned(),
                timestamp: n.timestamp,
                window_secs: n.window_secs,
            }),
            reply,
        };
        let stopped = || IngestError::Aborted("the writer has stopped".to_owned());
        queue.send(job).await.map_err(|_| stopped())?;
        return answer.await.map_err(|_| stopped())?;
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ingest_postgres(db, Submission { report, source, key, nonce }).await {
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

fn stored_outcome_query(report_id: &str) -> Sql {
    let mut q = Sql::new("SELECT outcome FROM reports WHERE report_id = ");
    q.bind(report_id);
    q
}

fn decode_outcome(rows: &[AnyRow]) -> Result<Option<Outcome>, StoreError> {
    let Some(row) = rows.first() else { return Ok(None) };
    let text: String = row.try_get(0)?;
    Ok(serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Corrupt(format!("a stored report outcome does not parse: {e}")))?)
}

async fn stored_outcome(conn: &mut AnyConnection, report_id: &str) -> Result<Option<Outcome>, StoreError> {
    let rows = stored_outcome_query(report_id).query().fetch_all(&mut *conn).await?;
    decode_outcome(&rows)
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

/// One report on its way to the SQLite writer.
pub struct Job {
    report: Report,
    source: String,
    key: Option<AgentKey>,
    nonce: Option<OwnedNonce>,
    reply: Reply,
}

/// What a report's sender is told.
type Answer = Result<(Outcome, Disposition), IngestError>;

/// Where the SQLite writer sends a report's answer.
type Reply = tokio::sync::oneshot::Sender<Answer>;

/// A report and who sent it.
#[derive(Clone, Copy)]
struct Submission<'a> {
    report: &'a Report,
    source: &'a str,
    key: Option<&'a AgentKey>,
    nonce: Option<&'a NonceUse<'a>>,
}

struct OwnedNonce {
    key_id: String,
    nonce: String,
    timestamp: i64,
    window_secs: u64,
}

/// What the reads of one report decided: the writes that apply it and the answer to give once
/// they are committed.
struct Decision {
    /// Statements that apply the report.
    writes: Batch,
    /// False when nothing of the report may be kept (a replayed nonce, a refused key).
    keep: bool,
    /// The answer, valid once `writes` are committed (or at once when `keep` is false).
    answer: Result<(Outcome, Disposition), IngestError>,
    /// The asset state to cache once committed: (asset, version, state).
    cache: Option<(i64, i64, Arc<AssetState>)>,
}

/// Reads what decides a report's fate and builds its writes, inside an open transaction.
///
/// Everything that decides what to write is read first, in one batch (one round trip on
/// SQLite) that starts with `prefix`. Every decision is exact: on SQLite the connection is the
/// only writer; on PostgreSQL the advisory locks serialize reports of one host (and so two
/// deliveries of one report) and the key row is locked.
async fn decide(
    conn: &mut AnyConnection,
    db: &Target,
    prefix: Vec<Sql>,
    submission: Submission<'_>,
) -> Result<Decision, IngestError> {
    let Submission { report, source, key, nonce } = submission;
    let backend = db.backend();
    let report_id = report.report_id.to_string();
    let keys = ReportKeys::from_report(report);
    let host_key = key.filter(|k| k.scope == KeyScope::Host);
    let refuse =
        |answer: IngestError| Decision { writes: Batch::default(), keep: false, answer: Err(answer), cache: None };

    // The indices `push` returns count the prefix, so they index `run`'s results directly.
    let mut reads = Batch::default();
    for statement in prefix {
        reads.push(statement);
    }
    if backend == Backend::Postgres {
        // Two first reports of one host must not both create it.
        let mut locks = vec![lock_key(&format!("hostname:{}", keys.hostname))];
        if let Some(uuid) = keys.board_uuid.value() {
            locks.push(lock_key(&format!("uuid:{uuid}")));
        }
        locks.sort_unstable();
        locks.dedup();
        let mut q = Sql::new("SELECT ");
        for (index, lock) in locks.into_iter().enumerate() {
            if index > 0 {
                q.push(", ");
            }
            q.push("pg_advisory_xact_lock(").bind(lock).push(")");
        }
        reads.push(q);
    }
    let nonce_statement = nonce.map(|n| reads.push(nonce_insert(n.key_id, n.nonce, n.timestamp, n.window_secs)));
    if let Some(n) = &nonce {
        reads.push(crate::auth::key_used(n.key_id, crate::db::now_us()));
    }
    let outcome_statement = reads.push(stored_outcome_query(&report_id));
    let key_statement = host_key.map(|k| {
        let mut q = Sql::new("SELECT asset_id FROM agent_keys WHERE id = ");
        q.bind(k.id);
        if backend == Backend::Postgres {
            q.push(" FOR UPDATE");
        }
        reads.push(q)
    });
    let mut hostnames = vec![keys.hostname.as_str()];
    if let Some(previous) = &keys.previous_hostname {
        hostnames.push(previous);
    }
    let sn = keys.board_serial.value().map(|(_, sn)| sn.as_str());
    let target_statement = report.collected_for.map(|target| {
        let mut q = Sql::new("SELECT id, hostname FROM assets WHERE id = ");
        q.bind(target);
        reads.push(q)
    });
    let candidates_statement = reads.push(store::identity_candidates(
        keys.board_uuid.value().map(String::as_str),
        sn,
        keys.machine_id.as_deref(),
        &hostnames,
    ));
    let read = reads.run(conn, backend).await?;
    if let Some(i) = nonce_statement
        && read[i].rows_affected != 1
    {
        return Ok(refuse(IngestError::Replay));
    }
    if let Some(outcome) = decode_outcome(&read[outcome_statement].rows)? {
        // Kept, so that the nonce is spent.
        return Ok(Decision {
            writes: Batch::default(),
            keep: true,
            answer: Ok((outcome, Disposition::Duplicate)),
            cache: None,
        });
    }
    // The asset a host key is bound to, as stored now (the key was looked up before the lock).
    let bound: Option<i64> = match key_statement.and_then(|i| read[i].rows.first()) {
        Some(row) => row.try_get(0)?,
        None => None,
    };
    let (candidates, deleted): (Vec<AssetKeysRow>, Vec<AssetKeysRow>) =
        store::keys_rows(&read[candidates_statement].rows)?.into_iter().partition(|row| !row.deleted);
    let mut matched = find_match(&candidates, &keys);
    // An asset created by this report that may be the same machine as an existing one: a
    // deleted record is never matched (as a retired one is not), but the new asset says which
    // record it may repeat.
    let mut possible_duplicate_of: Option<i64> =
        if matched.is_none() { find_match(&deleted, &keys).map(|(row, _)| row.id) } else { None };

    // A host key binds through a host name only to an asset without a stored strong key (one
    // registered by hand, before its agent was deployed). An asset that has a board UUID, board
    // serial or machine id is never taken over by a name alone, even when this report's board
    // section failed: the report becomes a new asset, flagged, and an admin may bind the key
    // explicitly.
    if host_key.is_some()
        && bound.is_none()
        && let Some((row, MatchKey::Hostname | MatchKey::PreviousHostname)) = &matched
        && row.has_strong_key()
    {
        tracing::warn!(
            asset_id = row.id,
            hostname = %report.host.hostname,
            "a new host key matched an asset with board identity by host name only; creating a new asset"
        );
        possible_duplicate_of = Some(row.id);
        matched = None;
    }

    // A report collected for a target must resolve to that target.
    if let Some(target) = report.collected_for {
        let target_row = match target_statement.and_then(|i| read[i].rows.first()) {
            Some(row) => Some((row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?)),
            None => None,
        };
        match (&matched, target_row) {
            (Some((row, _)), Some((target_id, target_name))) if row.id != target_id => {
                let message = format!(
                    "the report collected for asset {target_id} ({target_name}) identifies itself as asset {} ({}): \
                     not stored. The host at this target's address may be another machine, or be lying.",
                    row.id, row.hostname
                );
                tracing::warn!(target_id, other = row.id, report_id = %report.report_id, "{message}");
                let mut writes = Batch::default();
                writes.push(identity_error(target_id, report, source, &message, now_us()));
                return Ok(Decision { writes, keep: true, answer: Err(IngestError::Conflict(message)), cache: None });
            }
            (Some((row, _)), None) => {
                return Ok(refuse(IngestError::Conflict(format!(
                    "collected_for names asset {target}, which does not exist; the report identifies asset {}",
                    row.id
                ))));
            }
            // A machine no asset knows (a board swap, a reinstall) at the target's address.
            (None, Some((target_id, _))) => possible_duplicate_of = possible_duplicate_of.or(Some(target_id)),
            _ => {}
        }
    }

    // The legacy endpoint's body is unsigned and its key shared by the whole fleet: it never
    // renames an asset.
    if source == LEGACY_SOURCE
        && let Some((row, _)) = &matched
        && row.hostname != report.host.hostname
    {
        return Ok(refuse(IngestError::Conflict(format!(
            "the legacy endpoint does not rename assets: asset {} is {:?}, the report says {:?}; rename it in cmdb or \
             report with cmdb-agent",
            row.id, row.hostname, report.host.hostname
        ))));
    }

    if let Some(key) = host_key {
        let refused = match &matched {
            Some((row, _)) => bound.is_some_and(|b| b != row.id),
            // A host key already bound may not create a second asset.
            None => bound.is_some(),
        };
        if refused {
            return Ok(refuse(forbidden(&key.key_id, &report.host.hostname)));
        }
    }

    let now = now_us();
    let collected_at = report.collected_at.timestamp_micros();
    let mut writes = Batch::default();
    let (asset_id, matched_by, created, stored, version) = match matched {
        Some((row, match_key)) => {
            // On SQLite the connection is the only writer, so the row read with the candidates
            // is current; PostgreSQL rereads it under a row lock.
            let locked = match backend {
                Backend::Sqlite => row.clone(),
                Backend::Postgres => match store::lock_asset(conn, backend, row.id).await? {
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
                writes.push(save_outcome_query(&outcome, now)?);
                tracing::warn!(
                    report_id = %report.report_id,
                    asset_id = row.id,
                    collected_at = %report.collected_at,
                    last_applied = %crate::db::from_us(locked.last_collected_at.unwrap_or_default()),
                    "stale report acknowledged and not applied"
                );
                return Ok(Decision { writes, keep: true, answer: Ok((outcome, Disposition::Stale)), cache: None });
            }
            let state = match db.states().get(row.id, locked.version) {
                Some(state) => state,
                None => Arc::new(store::load_state(conn, row.id).await?),
            };
            (row.id, Some(match_key), false, state, locked.version)
        }
        None => {
            let id = store::insert_asset(conn, &report.host.hostname, AssetStatus::Online.as_str(), now).await?;
            if let Some(other) = possible_duplicate_of {
                let mut q = Sql::new("UPDATE assets SET possible_duplicate_of = ");
                q.bind(other).push(" WHERE id = ").bind(id);
                writes.push(q);
                // Also where people look for what needs attention.
                let message = format!(
                    "possible duplicate of asset {other}: this report could not be tied to it (that record is deleted, \
                     or shares only a host name or a collection target with it), so it created a new asset; merge \
                     or delete one of them"
                );
                writes.push(identity_error(id, report, source, &message, now));
            }
            (id, None, true, Arc::new(AssetState::default()), 0)
        }
    };

    if let Some(key) = host_key
        && bound.is_none()
    {
        let mut q = Sql::new("UPDATE agent_keys SET asset_id = ");
        q.bind(asset_id).push(" WHERE id = ").bind(key.id);
        writes.push(q);
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
        let link = store::chain_link(conn, backend, asset_id, ops.len()).await?;
        store::insert_changes(&mut writes, backend, &context, &ops, &link)?;
        store::write_state(&mut writes, asset_id, &state, &ops);
        // The stored rows are the terms of the stored state (every write goes through
        // write_summary); a new asset has none yet.
        let previous_terms = if created { Default::default() } else { search_terms(&stored) };
        store::write_summary(
            &mut writes,
            asset_id,
            &AssetSummary::from_state(&state),
            &search_terms(&state),
            Some(&previous_terms),
            now,
        );
    }
    let mut seen = Sql::new("UPDATE assets SET last_seen_at = ");
    seen.bind(now)
        .push(", last_collected_at = ")
        .bind(collected_at)
        .push(", last_report_id = ")
        .bind(report_id.clone())
        .push(" WHERE id = ")
        .bind(asset_id);
    writes.push(seen);
    let errors: Vec<(&String, &String)> = report
        .sections
        .iter()
        .filter_map(|(section, result)| match result {
            SectionResult::Error(message) => Some((section, message)),
            _ => None,
        })
        .collect();
    if !errors.is_empty() {
        let mut q = Sql::new(
            "INSERT INTO collection_errors (asset_id, report_id, hostname, source, section, message, collected_at, recorded_at)",
        );
        q.values(&errors, |row, (section, message)| {
            row.bind(asset_id)
                .bind(report_id.clone())
                .bind(report.host.hostname.clone())
                .bind(source)
                .bind((*section).clone())
                .bind((*message).clone())
                .bind(collected_at)
                .bind(now);
        });
        // The report's errors as one webhook event, queued with them.
        let listed: Vec<(&str, &str)> = errors.iter().map(|(s, m)| (s.as_str(), m.as_str())).collect();
        let payload = store::outbox::collection_error_payload(
            Some(&report_id),
            &report.host.hostname,
            source,
            Some(report.collected_at),
            &listed,
        );
        let event = store::outbox::insert(&store::outbox::OutboxEvent {
            kind: store::outbox::EventKind::CollectionError,
            asset_id,
            changes: None,
            payload: Some(payload),
            now,
        });
        match backend {
            // One query for the whole batch anyway.
            Backend::Sqlite => {
                writes.push(q);
                writes.push(event);
            }
            // One statement per round trip: the event rides on the errors' insert, so a report
            // pays nothing more when no endpoint listens.
            Backend::Postgres => {
                let mut both = Sql::new("WITH errors AS (");
                both.append(&q).push(") ").append(&event);
                writes.push(both);
            }
        }
    }
    let outcome =
        Outcome { report_id: report.report_id, asset_id, applied: true, matched_by, created, changes: ops.len() };
    // The report id is unique: should it have been taken after all (a report id reused with
    // other content, which the locks do not cover), this insert fails, nothing of the report is
    // kept, and the first outcome is the answer.
    writes.push(save_outcome_query(&outcome, now)?);
    // write_summary bumps the version when the state changes.
    let version = if ops.is_empty() { version } else { version + 1 };
    let disposition = if ops.is_empty() { Disposition::Unchanged } else { Disposition::Changed };
    Ok(Decision { writes, keep: true, answer: Ok((outcome, disposition)), cache: Some((asset_id, version, state)) })
}

/// A collection error in section `identity` on `asset_id` about `report`: where people look for
/// what needs their attention (a report tied to the wrong asset, a possible duplicate).
fn identity_error(asset_id: i64, report: &Report, source: &str, message: &str, now: i64) -> Sql {
    let mut q = Sql::new(
        "INSERT INTO collection_errors (asset_id, report_id, hostname, source, section, message, collected_at, recorded_at)",
    );
    q.values(&[()], |row, ()| {
        row.bind(asset_id)
            .bind(report.report_id.to_string())
            .bind(report.host.hostname.clone())
            .bind(source)
            .bind("identity")
            .bind(message.to_owned())
            .bind(report.collected_at.timestamp_micros())
            .bind(now);
    });
    q
}

/// The answer to a report whose writes failed on a unique violation: the report id was taken,
/// so the first outcome is the answer.
async fn taken_report_id(
    db: &Target,
    report_id: Uuid,
    error: StoreError,
) -> Result<(Outcome, Disposition), IngestError> {
    if matches!(&error, StoreError::Db(sqlx::Error::Database(e)) if e.is_unique_violation()) {
        let mut conn = db.reader().acquire().await?;
        if let Some(first) = stored_outcome(&mut conn, &report_id.to_string()).await? {
            return Ok((first, Disposition::Duplicate));
        }
    }
    Err(error.into())
}

/// One report, one transaction (PostgreSQL: several connections and server instances write
/// concurrently, serialized per host by the locks `decide` takes).
async fn ingest_postgres(db: &Target, submission: Submission<'_>) -> Result<(Outcome, Disposition), IngestError> {
    let report = submission.report;
    let mut tx = db.begin_write().await?;
    let decision = decide(&mut tx, db, Vec::new(), submission).await?;
    if !decision.keep {
        tx.rollback().await?;
        return decision.answer;
    }
    if let Err(error) = decision.writes.run(&mut tx, Backend::Postgres).await {
        drop(tx);
        return taken_report_id(db, report.report_id, error).await;
    }
    tx.commit().await?;
    store::outbox::wake();
    if let Some((asset_id, version, state)) = decision.cache {
        db.states().put(asset_id, version, state);
    }
    decision.answer
}

/// Reports the SQLite writer puts in one transaction at most (group commit), so that other
/// writes (sessions, edits, pruning) get their turn under load and a report waits for at most
/// this many others before its answer.
const GROUP_MAX: usize = 64;

/// The SQLite writer: takes the queued reports, up to [`GROUP_MAX`] at a time, into one
/// transaction on the writer connection, each in its own savepoint, and answers them once that
/// transaction has committed (group commit).
///
/// SQLite has one writer, and what bounds it is latency, not work: every statement is a round
/// trip to the connection's worker thread, and every commit appends and syncs the WAL. Here a
/// report costs two round trips (its savepoint with its reads, its writes with the release),
/// and a group one `BEGIN IMMEDIATE` and one `COMMIT`. A report that fails rolls back to its
/// savepoint alone; the others of its group are kept.
async fn sqlite_writer(db: Target, queue: tokio::sync::mpsc::Receiver<Job>) {
    // A panic must not stop ingestion for good: the loop runs in a task of its own and is
    // restarted on the same queue (the reports of the group it was working on are answered 503
    // and retried; none of them was committed).
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    loop {
        match tokio::spawn(writer_loop(db.clone(), Arc::clone(&queue))).await {
            Err(error) if error.is_panic() => tracing::error!("the SQLite writer panicked; restarting it"),
            // The queue closed (every Ingestor is gone) or the runtime is shutting down.
            _ => return,
        }
    }
}

async fn writer_loop(db: Target, queue: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>>) {
    let mut queue = queue.lock().await;
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut conn = match db.writer().acquire().await {
            Ok(conn) => conn,
            Err(error) => {
                let message = error.to_string();
                for job in group {
                    let _ = job.reply.send(Err(IngestError::Aborted(format!("no writer connection: {message}"))));
                }
                continue;
            }
        };
        let mut in_flight = InFlight { conn: &mut conn, done: false };
        // Unless the group ended cleanly, the connection's state is unknown: closed, not reused.
        in_flight.done = sqlite_group(in_flight.conn, &db, group).await;
    }
}

/// The writer connection while a group is on it: unless the group finished cleanly (including
/// when a panic unwinds through it), the connection is closed instead of going back to the pool
/// inside a transaction.
struct InFlight<'a> {
    conn: &'a mut PoolConnection<Any>,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.close_on_drop();
        }
    }
}

/// What a report of a group answers once the group has committed.
struct Kept {
    answer: Result<(Outcome, Disposition), IngestError>,
    /// The asset state to cache: (asset, version, state).
    cache: Option<(i64, i64, Arc<AssetState>)>,
}

/// A report of a group whose answer waits for the group's commit.
struct Pending {
    reply: Reply,
    report_id: Uuid,
    /// Its answer, or why it failed (its savepoint was rolled back).
    result: Result<Kept, IngestError>,
}

/// The answer to a report whose group could not be committed: nothing of it was kept.
fn group_failed() -> IngestError {
    IngestError::Aborted("the write transaction of its group failed; send it again".to_owned())
}

/// Ingests a group of reports in one transaction, each in its own savepoint, and answers each once
/// the transaction has committed; false when the connection could not be brought back out of the
/// transaction.
async fn sqlite_group(conn: &mut PoolConnection<Any>, db: &Target, group: Vec<Job>) -> bool {
    if let Err(error) = sqlx::Executor::execute(&mut **conn, "BEGIN IMMEDIATE").await {
        tracing::warn!(error = %error, "cannot begin a write transaction");
        for job in group {
            let _ = job.reply.send(Err(group_failed()));
        }
        return rollback(conn).await;
    }
    let mut pending: Vec<Pending> = Vec::with_capacity(group.len());
    for job in group {
        let nonce = job.nonce.as_ref().map(|n| NonceUse {
            key_id: &n.key_id,
            nonce: &n.nonce,
            timestamp: n.timestamp,
            window_secs: n.window_secs,
        });
        let submission =
            Submission { report: &job.report, source: &job.source, key: job.key.as_ref(), nonce: nonce.as_ref() };
        // Everything `decide` reads (the asset, its chain head, the next ids) is read inside this
        // savepoint, after the group's earlier reports: each report sees what they wrote.
        let result = match decide(conn, db, vec![Sql::new("SAVEPOINT report")], submission).await {
            Ok(Decision { keep: false, answer, .. }) => {
                // Refused: nothing of it is kept, and its answer does not wait for the commit.
                if !undo(conn).await {
                    let _ = job.reply.send(Err(group_failed()));
                    return abort(conn, pending).await;
                }
                let _ = job.reply.send(answer);
                continue;
            }
            Ok(Decision { mut writes, answer, cache, .. }) => {
                writes.push(Sql::new("RELEASE report"));
                match writes.run(conn, Backend::Sqlite).await {
                    Ok(_) => Ok(Kept { answer, cache }),
                    Err(error) => Err(IngestError::from(error)),
                }
            }
            Err(error) => Err(error),
        };
        if result.is_err() && !undo(conn).await {
            let _ = job.reply.send(Err(group_failed()));
            return abort(conn, pending).await;
        }
        pending.push(Pending { reply: job.reply, report_id: job.report.report_id, result });
    }
    if let Err(error) = sqlx::Executor::execute(&mut **conn, "COMMIT").await {
        tracing::warn!(error = %error, reports = pending.len(), "a group of reports did not commit");
        return abort(conn, pending).await;
    }
    store::outbox::wake();
    for p in pending {
        let answer = match p.result {
            Ok(kept) => {
                if let Some((asset_id, version, state)) = kept.cache {
                    db.states().put(asset_id, version, state);
                }
                kept.answer
            }
            // Read after the commit: the first delivery of a report id may have been in this group.
            Err(IngestError::Db(error)) => taken_report_id(db, p.report_id, error.into()).await,
            Err(other) => Err(other),
        };
        let _ = p.reply.send(answer);
    }
    true
}

/// Rolls the current report's savepoint back and releases it; false when that failed (SQLite
/// rolls the whole transaction back on some errors), so the group's earlier reports are lost.
async fn undo(conn: &mut PoolConnection<Any>) -> bool {
    sqlx::Executor::execute(&mut **conn, "ROLLBACK TO report; RELEASE report").await.is_ok()
}

/// Gives up on a group: nothing of it is kept, every report waiting for the commit is answered
/// 503 (the client sends it again), and the connection is taken out of the transaction.
async fn abort(conn: &mut PoolConnection<Any>, pending: Vec<Pending>) -> bool {
    for p in pending {
        let _ = p.reply.send(Err(group_failed()));
    }
    rollback(conn).await
}

/// Ends the open transaction, if any; false when the connection did not answer.
async fn rollback(conn: &mut PoolConnection<Any>) -> bool {
    match sqlx::query("ROLLBACK").execute(&mut **conn).await {
        Ok(_) => true,
        // No transaction left to roll back (BEGIN itself failed, or SQLite already rolled it
        // back): the connection is fine.
        Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => true,
        Err(_) => false,
    }
}

fn forbidden(key_id: &str, hostname: &str) -> IngestError {
    tracing::warn!(key_id, hostname, "host-scoped agent key reported for another asset; refused");
    IngestError::Forbidden(format!(
        "agent key {key_id} is a host key bound to another asset; use a collector key for SSH/Salt workers"
    ))
}

fn save_outcome_query(outcome: &Outcome, now: i64) -> Result<Sql, sqlx::Error> {
    let text = serde_json::to_string(outcome).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let mut q = Sql::new("INSERT INTO reports (report_id, asset_id, received_at, outcome)");
    q.values(&[()], |row, ()| {
        row.bind(outcome.report_id.to_string()).bind(outcome.asset_id).bind(now).bind(text.clone());
    });
    Ok(q)
}

/// True when `error` should be answered with 503 (the client retries later).
pub fn is_transient(error: &IngestError) -> bool {
    matches!(error, IngestError::Aborted(_))
        || matches!(error, IngestError::Db(e) if classify(e) == crate::db::DbFailure::Retryable)
}
