//! SQL for assets, their state and their history. Every function takes a connection (or a
//! transaction, which derefs to one) so callers decide the transaction boundaries.
//!
//! Architecture invariant: the `asset_sections` and `components` rows of an asset always equal
//! the replay of its `changes` rows; they are only ever written by [`write_state`], which the
//! callers invoke with exactly the changes they insert in the same transaction.

pub mod outbox;
pub mod sql;
pub mod summary;

use std::collections::{BTreeMap, BTreeSet};

/// Stored data that does not decode: a bug or a hand-edited database, never the caller's fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Corrupt(pub String);

/// Why a store function failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// What the database returned does not decode.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

use cmdb_model::diff::{Action, ChangeOp};
use cmdb_model::state::{AssetState, IDENTITY_SECTION, SectionState};
use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};

use crate::db::Backend;
use sql::{Batch, Sql};
use summary::AssetSummary;

/// Rows per multi-row INSERT (SQLite allows 32766 bound values; each change row binds 15).
const INSERT_CHUNK: usize = 500;

/// The identity and bookkeeping columns of an asset, as ingestion reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetKeysRow {
    /// Asset id.
    pub id: i64,
    /// Host name.
    pub hostname: String,
    /// Normalized board UUID.
    pub board_uuid: Option<String>,
    /// Normalized board serial.
    pub board_sn: Option<String>,
    /// Normalized board manufacturer.
    pub board_manufacturer: Option<String>,
    /// Normalized machine id.
    pub machine_id: Option<String>,
    /// Business status.
    pub status: String,
    /// When the asset last reported anything.
    pub last_seen_at: Option<i64>,
    /// `collected_at` of the last applied report.
    pub last_collected_at: Option<i64>,
    /// Bumped by every state write: a cached state of the same version is current.
    pub version: i64,
    /// The record is deleted (or merged into another): reports never land on it.
    pub deleted: bool,
    /// For a row read through a merge alias: the merged asset whose keys these are (`id` is the
    /// survivor's).
    pub alias_of: Option<i64>,
}

impl AssetKeysRow {
    /// True when the asset has a board UUID, board serial or machine id: identity that a host
    /// name alone must not take over.
    pub fn has_strong_key(&self) -> bool {
        [&self.board_uuid, &self.board_sn, &self.machine_id]
            .iter()
            .any(|key| key.as_deref().is_some_and(|k| !k.is_empty()))
    }

    /// The stored identity keys.
    pub fn keys(&self) -> cmdb_model::identity::StoredKeys {
        cmdb_model::identity::StoredKeys {
            board_uuid: self.board_uuid.clone(),
            board_sn: self.board_sn.clone(),
            board_manufacturer: self.board_manufacturer.clone(),
            machine_id: self.machine_id.clone(),
            hostname: Some(self.hostname.clone()),
        }
    }
}

const KEYS_COLUMNS: &str = "id, hostname, board_uuid, board_sn, board_manufacturer, machine_id, status, last_seen_at, last_collected_at, version, deleted_at, CAST(NULL AS BIGINT)";

/// Decodes a keys row whose columns start at `at`.
fn keys_row_at(row: &sqlx::any::AnyRow, at: usize) -> Result<AssetKeysRow, sqlx::Error> {
    Ok(AssetKeysRow {
        id: row.try_get(at)?,
        hostname: row.try_get(at + 1)?,
        board_uuid: row.try_get(at + 2)?,
        board_sn: row.try_get(at + 3)?,
        board_manufacturer: row.try_get(at + 4)?,
        machine_id: row.try_get(at + 5)?,
        status: row.try_get(at + 6)?,
        last_seen_at: row.try_get(at + 7)?,
        last_collected_at: row.try_get(at + 8)?,
        version: row.try_get(at + 9)?,
        deleted: row.try_get::<Option<i64>, _>(at + 10)?.is_some(),
        alias_of: row.try_get(at + 11)?,
    })
}

/// The query for every non-retired asset that shares at least one identity key with the report,
/// deleted ones included (so a report from a deleted record's machine can say so), and every
/// survivor of a merge whose aliases share one (read with the alias's keys); decode its rows with
/// [`keys_rows`]. Rows of the assets themselves come first.
pub fn identity_candidates(
    board_uuid: Option<&str>,
    board_sn: Option<&str>,
    machine_id: Option<&str>,
    hostnames: &[&str],
) -> Sql {
    let mut terms: Vec<(&str, &str)> = Vec::new();
    if let Some(uuid) = board_uuid {
        terms.push(("board_uuid", uuid));
    }
    if let Some(sn) = board_sn {
        terms.push(("board_sn", sn));
    }
    if let Some(id) = machine_id {
        terms.push(("machine_id", id));
    }
    for hostname in hostnames {
        terms.push(("hostname", hostname));
    }
    let push_terms = |q: &mut Sql, prefix: &str| {
        for (index, (column, value)) in terms.iter().enumerate() {
            if index > 0 {
                q.push(" OR ");
            }
            q.push(prefix).push(column).push(" = ").bind(*value);
        }
    };
    let mut q = Sql::new(format!(
        "SELECT * FROM (SELECT 0 AS via_alias, {KEYS_COLUMNS} FROM assets WHERE status <> 'retired' AND ("
    ));
    push_terms(&mut q, "");
    q.push(") ORDER BY last_seen_at DESC, id DESC LIMIT 50) direct UNION ALL SELECT * FROM (SELECT 1, a.id, l.hostname, l.board_uuid, l.board_sn, l.board_manufacturer, l.machine_id, a.status, a.last_seen_at, a.last_collected_at, a.version, a.deleted_at, l.alias_of FROM asset_aliases l JOIN assets a ON a.id = l.asset_id WHERE a.status <> 'retired' AND (");
    push_terms(&mut q, "l.");
    q.push(") LIMIT 50) via ORDER BY 1, 9 DESC, 2 DESC");
    q
}

/// Decodes the rows of [`identity_candidates`] (which lead with a column of their own).
pub fn keys_rows(rows: &[sqlx::any::AnyRow]) -> Result<Vec<AssetKeysRow>, sqlx::Error> {
    rows.iter().map(|row| keys_row_at(row, 1)).collect()
}

/// Reads an asset's keys row, locking it against concurrent writers on PostgreSQL.
pub async fn lock_asset(
    conn: &mut AnyConnection,
    backend: Backend,
    id: i64,
) -> Result<Option<AssetKeysRow>, sqlx::Error> {
    let sql = match backend {
        Backend::Postgres => {
            "SELECT id, hostname, board_uuid, board_sn, board_manufacturer, machine_id, status, last_seen_at, last_collected_at, version, deleted_at, CAST(NULL AS BIGINT) FROM assets WHERE id = $1 FOR UPDATE"
        }
        Backend::Sqlite => {
            "SELECT id, hostname, board_uuid, board_sn, board_manufacturer, machine_id, status, last_seen_at, last_collected_at, version, deleted_at, CAST(NULL AS BIGINT) FROM assets WHERE id = $1"
        }
    };
    let row = sqlx::query(sql).bind(id).fetch_optional(&mut *conn).await?;
    row.as_ref().map(|row| keys_row_at(row, 0)).transpose()
}

/// Recently used asset states by version, so an unchanged report does not reread and reparse the
/// state it is compared with. A cached entry is used only when its version equals the version read
/// (under the row lock) in the transaction, so it is exact even with several server instances: any
/// write, by any instance, bumps the version.
#[derive(Debug, Default)]
pub struct StateCache {
    entries: std::sync::Mutex<std::collections::HashMap<i64, (i64, std::sync::Arc<AssetState>)>>,
}

/// Entries kept before the cache starts over (about 10 KB each for a typical server).
const STATE_CACHE_CAPACITY: usize = 20_000;

impl StateCache {
    /// The state of `asset_id` at `version`, if cached.
    pub fn get(&self, asset_id: i64, version: i64) -> Option<std::sync::Arc<AssetState>> {
        let entries = self.entries.lock().ok()?;
        entries.get(&asset_id).filter(|(v, _)| *v == version).map(|(_, state)| state.clone())
    }

    /// Remembers the state of `asset_id` at `version`.
    pub fn put(&self, asset_id: i64, version: i64, state: std::sync::Arc<AssetState>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= STATE_CACHE_CAPACITY && !entries.contains_key(&asset_id) {
                entries.clear();
            }
            entries.insert(asset_id, (version, state));
        }
    }
}

/// Loads an asset's current state (sections and components).
pub async fn load_state(conn: &mut AnyConnection, asset_id: i64) -> Result<AssetState, StoreError> {
    let mut state = AssetState::default();
    let sections = sqlx::query("SELECT section, fields FROM asset_sections WHERE asset_id = $1")
        .bind(asset_id)
        .fetch_all(&mut *conn)
        .await?;
    for row in sections {
        let name: String = row.try_get(0)?;
        let fields: String = row.try_get(1)?;
        state.sections.insert(name, SectionState::from_fields(parse_object(&fields)?));
    }
    let components = sqlx::query("SELECT section, ckey, data FROM components WHERE asset_id = $1")
        .bind(asset_id)
        .fetch_all(&mut *conn)
        .await?;
    for row in components {
        let section: String = row.try_get(0)?;
        let key: String = row.try_get(1)?;
        let data: String = row.try_get(2)?;
        state.sections.entry(section).or_default().components.insert(key, parse_object(&data)?);
    }
    Ok(state)
}

fn parse_object(text: &str) -> Result<Map<String, Value>, Corrupt> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Corrupt("a stored state is JSON but not an object".to_owned())),
        Err(e) => Err(Corrupt(format!("a stored state is not JSON: {e}"))),
    }
}

fn to_json(value: &Map<String, Value>) -> String {
    // serde_json's Map is a BTreeMap here, so the text is canonical (sorted keys).
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// Writes the parts of `state` that `ops` touched: sections and components are upserted or
/// deleted to match `state`, which must be the result of applying `ops`; when a merge alias
/// (`identity` component `alias:<id>`) changed, the asset's `asset_aliases` rows, which identity
/// matching reads, are rewritten from them.
pub fn write_state(batch: &mut Batch, asset_id: i64, state: &AssetState, ops: &[ChangeOp]) {
    if ops.iter().any(|op| op.section == IDENTITY_SECTION && op.component.as_deref().is_some_and(is_alias)) {
        write_aliases(batch, asset_id, state);
    }
    let mut sections: BTreeSet<&str> = BTreeSet::new();
    let mut components: BTreeSet<(&str, &str)> = BTreeSet::new();
    for op in ops {
        match &op.component {
            Some(key) => {
                components.insert((op.section.as_str(), key.as_str()));
            }
            None => {
                sections.insert(op.section.as_str());
            }
        }
    }
    for section in sections {
        match state.sections.get(section) {
            Some(s) => {
                let mut q = Sql::new("INSERT INTO asset_sections (asset_id, section, fields)");
                q.values(&[()], |row, ()| {
                    row.bind(asset_id).bind(section).bind(to_json(&s.fields));
                });
                q.push(" ON CONFLICT (asset_id, section) DO UPDATE SET fields = excluded.fields");
                batch.push(q);
            }
            None => {
                for table in ["asset_sections", "components"] {
                    let mut q = Sql::new(format!("DELETE FROM {table} WHERE asset_id = "));
                    q.bind(asset_id).push(" AND section = ").bind(section);
                    batch.push(q);
                }
            }
        }
    }
    let mut upserts: Vec<(&str, &str, String)> = Vec::new();
    for (section, key) in components {
        match state.sections.get(section).and_then(|s| s.components.get(key)) {
            Some(data) => upserts.push((section, key, to_json(data))),
            None => {
                let mut q = Sql::new("DELETE FROM components WHERE asset_id = ");
                q.bind(asset_id).push(" AND section = ").bind(section).push(" AND ckey = ").bind(key);
                batch.push(q);
            }
        }
    }
    for chunk in upserts.chunks(INSERT_CHUNK) {
        let mut q = Sql::new("INSERT INTO components (asset_id, section, ckey, data)");
        q.values(chunk, |row, (section, key, data)| {
            row.bind(asset_id).bind(*section).bind(*key).bind(data.clone());
        });
        q.push(" ON CONFLICT (asset_id, section, ckey) DO UPDATE SET data = excluded.data");
        batch.push(q);
    }
}

/// Whether an `identity` component key is a merge alias.
fn is_alias(key: &str) -> bool {
    key.starts_with("alias:")
}

/// Rewrites the `asset_aliases` rows of `asset_id` from its identity section's alias components.
fn write_aliases(batch: &mut Batch, asset_id: i64, state: &AssetState) {
    let mut q = Sql::new("DELETE FROM asset_aliases WHERE asset_id = ");
    q.bind(asset_id);
    batch.push(q);
    let aliases: Vec<&Map<String, Value>> = state
        .sections
        .get(IDENTITY_SECTION)
        .map(|s| s.components.iter().filter(|(k, _)| is_alias(k)).map(|(_, v)| v).collect())
        .unwrap_or_default();
    if aliases.is_empty() {
        return;
    }
    let text = |alias: &Map<String, Value>, key: &str| alias.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut q = Sql::new(
        "INSERT INTO asset_aliases (asset_id, alias_of, hostname, board_uuid, board_sn, board_manufacturer, machine_id)",
    );
    q.values(&aliases, |row, alias| {
        row.bind(asset_id)
            .bind(alias.get("asset_id").and_then(Value::as_i64).unwrap_or(0))
            .bind(text(alias, "hostname"))
            .bind(text(alias, "board_uuid"))
            .bind(text(alias, "board_sn"))
            .bind(text(alias, "board_manufacturer"))
            .bind(text(alias, "machine_id"));
    });
    batch.push(q);
}

/// Where a change came from and when.
#[derive(Debug, Clone)]
pub struct ChangeContext<'a> {
    /// The asset.
    pub asset_id: i64,
    /// Server time of the write (Unix µs).
    pub recorded_at: i64,
    /// When the data was collected (Unix µs), for reports.
    pub collected_at: Option<i64>,
    /// The report that caused it, if any.
    pub report_id: Option<&'a str>,
    /// agent, ssh, salt, legacy, or user:<name>.
    pub source: &'a str,
}

fn value_text(value: &Option<Value>) -> Option<String> {
    value.as_ref().map(|v| serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned()))
}

/// The `settings` row that holds the feed's txid offset: set by a restore (`backup::restore`) so
/// that changes written after it sort after every restored one in the change feed, which orders by
/// `(txid, id)`; absent (0) on a database that was never restored into.
pub const FEED_TXID_OFFSET: &str = "feed_txid_offset";

/// The feed's txid offset as a SQL expression (one primary-key lookup in `settings`).
macro_rules! feed_txid_offset_sql {
    () => {
        "(SELECT COALESCE(MAX(CAST(value AS BIGINT)), 0) FROM settings WHERE name = 'feed_txid_offset')"
    };
}

/// The feed's txid offset (see [`FEED_TXID_OFFSET`]), as a query that returns it.
pub const FEED_TXID_OFFSET_QUERY: &str = concat!("SELECT ", feed_txid_offset_sql!());

/// Where an asset's hash chain goes on: the ids its next records take, in order, and the hash of
/// its last record (`None` for an asset without history).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainLink {
    /// Ids for the next records, ascending.
    pub ids: Vec<i64>,
    /// The chain head the first of them links to.
    pub previous: Option<String>,
    /// The feed's txid offset (see [`FEED_TXID_OFFSET`]), read in the same round trip so that
    /// the insert carries it as a constant.
    pub txid_offset: i64,
    /// How many enabled webhook endpoints receive change or asset events, read in the same round
    /// trip: with none, [`insert_changes`] queues no event (and sends no statement for it).
    pub subscribers: i64,
}

/// Reads asset `asset_id`'s chain head and reserves ids for `count` new records, in one round
/// trip. The caller holds the asset (its row lock on PostgreSQL; the single writer on SQLite), so
/// the head cannot move before the records are written. Ids are taken before the insert because
/// a record's hash covers its id.
pub async fn chain_link(
    conn: &mut AnyConnection,
    backend: Backend,
    asset_id: i64,
    count: usize,
) -> Result<ChainLink, sqlx::Error> {
    let head = format!(
        "(SELECT hash FROM changes WHERE asset_id = $1 ORDER BY id DESC LIMIT 1), {}, {}",
        feed_txid_offset_sql!(),
        outbox::SUBSCRIBED_TO_CHANGES_SQL
    );
    match backend {
        Backend::Sqlite => {
            // AUTOINCREMENT's counter: never below any id used, and it follows explicit ids.
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0), {head}"
            )))
            .bind(asset_id)
            .fetch_one(&mut *conn)
            .await?;
            let last: i64 = row.try_get(0)?;
            Ok(ChainLink {
                ids: (1..=count as i64).map(|n| last + n).collect(),
                previous: row.try_get(1)?,
                txid_offset: row.try_get(2)?,
                subscribers: row.try_get(3)?,
            })
        }
        Backend::Postgres => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT nextval(pg_get_serial_sequence('changes', 'id')), {head} FROM generate_series(1, $2)"
            )))
            .bind(asset_id)
            .bind(count as i64)
            .fetch_all(&mut *conn)
            .await?;
            let mut ids = rows.iter().map(|row| row.try_get(0)).collect::<Result<Vec<i64>, _>>()?;
            ids.sort_unstable();
            let (previous, txid_offset, subscribers) = match rows.first() {
                Some(row) => (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
                None => (None, 0, 0),
            };
            Ok(ChainLink { ids, previous, txid_offset, subscribers })
        }
    }
}

/// The hash chain input of a change about to be written.
fn chained<'a>(
    id: i64,
    context: &'a ChangeContext<'a>,
    op: &'a ChangeOp,
    old: Option<&'a str>,
    new: Option<&'a str>,
) -> cmdb_model::chain::ChainedRecord<'a> {
    cmdb_model::chain::ChainedRecord {
        id,
        asset_id: context.asset_id,
        recorded_at: context.recorded_at,
        collected_at: context.collected_at,
        report_id: context.report_id,
        source: context.source,
        section: &op.section,
        component: op.component.as_deref(),
        path: &op.path,
        action: op.action.as_str(),
        old_value: old,
        new_value: new,
    }
}

/// Appends change records (history first: callers insert changes before writing the state), with
/// the ids and chain head `link` reserved for them ([`chain_link`] with `ops.len()`), and queues
/// their webhook events in the same batch: one `change` event carrying the records, and an
/// `asset` event when the write created, deleted, restored or merged the asset
/// ([`outbox::asset_action`]). Every write of changes comes here, so none is left out.
pub fn insert_changes(
    batch: &mut Batch,
    backend: Backend,
    context: &ChangeContext<'_>,
    ops: &[ChangeOp],
    link: &ChainLink,
) -> Result<(), StoreError> {
    if link.ids.len() != ops.len() {
        return Err(StoreError::Corrupt(Corrupt(format!(
            "{} change ids reserved for {} changes",
            link.ids.len(),
            ops.len()
        ))));
    }
    // Each row: its id, stored value texts, hash and the hash it links to.
    let mut previous = link.previous.clone();
    let mut rows = Vec::with_capacity(ops.len());
    for (op, id) in ops.iter().zip(&link.ids) {
        let (old, new) = (value_text(&op.old), value_text(&op.new));
        let hash = cmdb_model::chain::record_hash(
            &chained(*id, context, op, old.as_deref(), new.as_deref()),
            previous.as_deref(),
        );
        rows.push((op, *id, old, new, previous.replace(hash.clone()), hash));
    }
    // The feed orders by txid: on PostgreSQL the writing transaction's id (the feed stops below
    // the oldest one still running), on SQLite a constant (commits are serialized, so ids are
    // commit order); on both plus the offset a restore set (a number read from the database).
    let txid = match backend {
        Backend::Postgres => format!("pg_current_xact_id()::text::bigint + {}", link.txid_offset),
        Backend::Sqlite => link.txid_offset.to_string(),
    };
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut q = Sql::new(
            "INSERT INTO changes (id, txid, asset_id, recorded_at, collected_at, report_id, source, section, component, path, action, old_value, new_value, summary, hash, prev_hash)",
        );
        q.values(chunk, |row, (op, id, old, new, prev, hash)| {
            row.bind(*id)
                .expr(&txid)
                .bind(context.asset_id)
                .bind(context.recorded_at)
                .bind(context.collected_at)
                .bind(context.report_id.map(str::to_owned))
                .bind(context.source)
                .bind(op.section.clone())
                .bind(op.component.clone())
                .bind(op.path.clone())
                .bind(op.action.as_str())
                .bind(old.clone())
                .bind(new.clone())
                .bind(op.sentence())
                .bind(hash.clone())
                .bind(prev.clone());
        });
        batch.push(q);
    }
    if link.subscribers > 0
        && let (Some(first), Some(last)) = (link.ids.first(), link.ids.last())
    {
        let mut events = vec![(outbox::EventKind::Change, None)];
        if let Some(action) = outbox::asset_action(link.previous.is_none(), ops) {
            events.push((outbox::EventKind::Asset, Some(serde_json::json!({ "action": action }))));
        }
        for (kind, payload) in events {
            batch.push(outbox::insert(&outbox::OutboxEvent {
                kind,
                asset_id: context.asset_id,
                changes: Some((*first, *last)),
                payload,
                now: context.recorded_at,
            }));
        }
    }
    Ok(())
}

/// Inserts a new asset row and returns its id.
pub async fn insert_asset(
    conn: &mut AnyConnection,
    hostname: &str,
    status: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO assets (hostname, status, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
    )
    .bind(hostname.to_owned())
    .bind(status.to_owned())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    row.try_get(0)
}

/// Rewrites an asset's denormalized columns and search terms from its state.
pub fn write_summary(
    batch: &mut Batch,
    asset_id: i64,
    summary: &AssetSummary,
    terms: &BTreeSet<String>,
    previous_terms: Option<&BTreeSet<String>>,
    now: i64,
) {
    let b = &summary.business;
    let mut q = Sql::new("UPDATE assets SET hostname = ");
    q.bind(summary.hostname.clone())
        .push(", board_uuid = ")
        .bind(summary.board_uuid.clone())
        .push(", board_sn = ")
        .bind(summary.board_sn.clone())
        .push(", board_manufacturer = ")
        .bind(summary.board_manufacturer.clone())
        .push(", machine_id = ")
        .bind(summary.machine_id.clone())
        .push(", status = ")
        .bind(b.status.as_str())
        .push(", idc = ")
        .bind(b.idc.clone())
        .push(", cabinet = ")
        .bind(b.cabinet.clone())
        .push(", cabinet_u = ")
        .bind(b.cabinet_u.map(i64::from))
        .push(", business_unit = ")
        .bind(b.business_unit.clone())
        .push(", owner = ")
        .bind(b.owner.clone())
        .push(", tags = ")
        .bind(summary.tags_column())
        .push(", manage_address = ")
        .bind(b.manage_address.clone())
        .push(", ssh_port = ")
        .bind(b.ssh_port.map(i64::from))
        .push(", salt_minion_id = ")
        .bind(b.salt_minion_id.clone())
        .push(", os_name = ")
        .bind(summary.os_name.clone())
        .push(", os_version = ")
        .bind(summary.os_version.clone())
        .push(", manufacturer = ")
        .bind(summary.manufacturer.clone())
        .push(", model = ")
        .bind(summary.model.clone())
        .push(", serial = ")
        .bind(summary.serial.clone())
        .push(", cpu_model = ")
        .bind(summary.cpu_model.clone())
        .push(", cpu_count = ")
        .bind(summary.cpu_count)
        .push(", memory_mb = ")
        .bind(summary.memory_mb)
        .push(", disk_bytes = ")
        .bind(summary.disk_bytes)
        .push(", ip_addresses = ")
        .bind(summary.ip_addresses.clone())
        .push(", asset_tag = ")
        .bind(b.asset_tag.clone())
        .push(", custom = ")
        .bind(summary.custom_column())
        .push(", deleted_at = ")
        .bind(summary.deleted_at)
        .push(", merged_into = ")
        .bind(summary.merged_into)
        .push(", updated_at = ")
        .bind(now)
        .push(", version = version + 1 WHERE id = ")
        .bind(asset_id);
    batch.push(q);
    // With the terms of the state being replaced, only the difference is written: most reports
    // change a figure or a component, not a name, address or serial, and then the search index
    // is not touched at all. Without them, the asset's terms are rewritten whole.
    let added: Vec<&String> = match previous_terms {
        Some(previous) => {
            let removed: Vec<&String> = previous.difference(terms).collect();
            for chunk in removed.chunks(INSERT_CHUNK) {
                let mut q = Sql::new("DELETE FROM search_terms WHERE asset_id = ");
                q.bind(asset_id).push(" AND term IN (");
                for (i, term) in chunk.iter().enumerate() {
                    if i > 0 {
                        q.push(", ");
                    }
                    q.bind((*term).clone());
                }
                q.push(")");
                batch.push(q);
            }
            terms.difference(previous).collect()
        }
        None => {
            let mut q = Sql::new("DELETE FROM search_terms WHERE asset_id = ");
            q.bind(asset_id);
            batch.push(q);
            terms.iter().collect()
        }
    };
    for chunk in added.chunks(INSERT_CHUNK) {
        let mut q = Sql::new("INSERT INTO search_terms (term, asset_id)");
        q.values(chunk, |row, term| {
            row.bind((*term).clone()).bind(asset_id);
        });
        q.push(" ON CONFLICT DO NOTHING");
        batch.push(q);
    }
}

/// One stored change record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ChangeRecord {
    /// Row id.
    pub id: i64,
    /// Feed cursor of this record.
    pub cursor: String,
    /// The asset.
    pub asset_id: i64,
    /// Server time of the write.
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// When the data was collected.
    pub collected_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The report that caused it.
    pub report_id: Option<String>,
    /// agent, ssh, salt, legacy or user:<name>.
    pub source: String,
    /// Section.
    pub section: String,
    /// Component key.
    pub component: Option<String>,
    /// JSON pointer inside the section or component.
    pub path: String,
    /// added, removed or changed.
    #[schema(value_type = String)]
    pub action: Action,
    /// Old value (absent when nothing existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// New value (absent when nothing is left).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// A readable sentence.
    pub summary: String,
}

impl ChangeRecord {
    /// The model operation this record stores.
    pub fn op(&self) -> ChangeOp {
        ChangeOp {
            section: self.section.clone(),
            component: self.component.clone(),
            path: self.path.clone(),
            action: self.action,
            old: self.old.clone(),
            new: self.new.clone(),
        }
    }
}

/// The columns [`change_row`] reads, in order.
pub const CHANGE_COLUMNS: &str = "id, txid, asset_id, recorded_at, collected_at, report_id, source, section, component, path, action, old_value, new_value, summary";

/// Decodes a change row selected with [`CHANGE_COLUMNS`].
pub fn change_row(row: &sqlx::any::AnyRow) -> Result<ChangeRecord, StoreError> {
    let parse = |text: Option<String>| -> Result<Option<Value>, Corrupt> {
        text.map(|t| serde_json::from_str(&t).map_err(|e| Corrupt(format!("a stored change value is not JSON: {e}"))))
            .transpose()
    };
    let id: i64 = row.try_get(0)?;
    let txid: i64 = row.try_get(1)?;
    let action: String = row.try_get(10)?;
    Ok(ChangeRecord {
        id,
        cursor: format!("{txid}-{id}"),
        asset_id: row.try_get(2)?,
        recorded_at: crate::db::from_us(row.try_get(3)?),
        collected_at: row.try_get::<Option<i64>, _>(4)?.map(crate::db::from_us),
        report_id: row.try_get(5)?,
        source: row.try_get(6)?,
        section: row.try_get(7)?,
        component: row.try_get(8)?,
        path: row.try_get(9)?,
        action: Action::parse(&action).ok_or_else(|| Corrupt(format!("a stored change has action {action:?}")))?,
        old: parse(row.try_get(11)?)?,
        new: parse(row.try_get(12)?)?,
        summary: row.try_get(13)?,
    })
}

/// Every change of an asset in the order it was written.
pub async fn asset_history(conn: &mut AnyConnection, asset_id: i64) -> Result<Vec<ChangeRecord>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CHANGE_COLUMNS} FROM changes WHERE asset_id = $1 ORDER BY id"
    )))
    .bind(asset_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(change_row).collect()
}

/// Groups component rows by section (helper for callers that list components).
pub fn group_components(state: &AssetState) -> BTreeMap<&str, Vec<&Map<String, Value>>> {
    state.sections.iter().map(|(name, s)| (name.as_str(), s.components.values().collect())).collect()
}
