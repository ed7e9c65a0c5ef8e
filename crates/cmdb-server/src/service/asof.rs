//! The as-of view: an asset, or the whole list, as it stood at a date-time, rebuilt from history.
//!
//! "As it stood at T" follows the time the server recorded each change, never the time the data
//! was collected, so a view of a past T never changes afterwards. Precisely: the state of asset A
//! at T is the replay of A's changes up to and including `L(A, T)`, the highest change id of A
//! recorded at or before T. With one clock (and per asset, writes are serialized) that is exactly
//! "every change recorded at or before T"; if clocks disagree it is still a prefix of A's history,
//! so it always replays to a state the asset really had.
//!
//! Replaying every asset from nothing would read millions of changes, so [`snapshot`] stores
//! `L(A, T)` for every asset at chosen times (daily, and on demand) with the state after that
//! change (shared between snapshots when the asset did not change). The view at T' then starts
//! from the latest snapshot at or before T' and replays only the changes in between, set-based:
//! one aggregate over the window, then one query per chunk of 500 changed assets.
//!
//! Beside the state, each row carries the recorded_at and collected_at of the latest
//! report-sourced change in the replayed prefix (`last_seen_at`, `last_collected_at`): when the
//! data shown was collected. A report that changed nothing leaves no change record, so these are
//! the report that last changed the asset, not necessarily the last report received.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cmdb_model::diff::apply;
use cmdb_model::state::{AssetState, BUSINESS_SECTION};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::db::{Backend, Db, from_us, now_us};
use crate::service::ServiceError;
use crate::service::assets::{
    AssetDetail, AssetListItem, AssetPage, LIST, ListFilter, ListOrder, ListQuery, detail_from_state, list_item,
};
use crate::service::time::{AsOf, Calendar};
use crate::store::sql::{RowBuilder, Sql};
use crate::store::summary::{AssetSummary, search_terms};
use crate::store::{self, CHANGE_COLUMNS, ChangeRecord};

/// Assets per set-based query when rebuilding (keeps bound parameters well under SQLite's limit).
const CHUNK: usize = 500;

pub use crate::service::time::SETTLE_SECS;

/// Columns an as-of row has besides its id, in the order [`bind_rebuilt`] binds them: the list
/// columns ([`LIST`]), the search terms, and when the record was deleted.
fn row_columns() -> &'static str {
    static TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut names: Vec<&str> = LIST.iter().filter(|c| c.key != "id").map(|c| c.key).collect();
        names.extend(["terms", "deleted_at"]);
        names.join(", ")
    });
    &TEXT
}

/// A complete snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SnapshotRef {
    /// Row id.
    pub id: i64,
    /// Every change recorded at or before this time (Unix µs) is in it.
    pub taken_at: i64,
}

/// One asset rebuilt at a time.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    /// The asset.
    pub asset_id: i64,
    /// The last change replayed.
    pub upto: i64,
    /// When the asset was created (Unix µs).
    pub created_at: i64,
    /// recorded_at of the latest report-sourced change replayed.
    pub last_seen_at: Option<i64>,
    /// collected_at of that change.
    pub last_collected_at: Option<i64>,
    /// The list columns.
    pub summary: AssetSummary,
    /// Search terms, each preceded by a newline.
    pub terms: String,
    /// The state.
    pub state: AssetState,
}

impl Rebuilt {
    /// Builds the row of an asset from its state.
    pub fn from_parts(
        asset_id: i64,
        upto: i64,
        created_at: i64,
        seen: (Option<i64>, Option<i64>),
        state: AssetState,
    ) -> Self {
        let terms = terms_text(&state);
        Rebuilt { terms, ..Self::without_terms(asset_id, upto, created_at, seen, state) }
    }

    /// [`Rebuilt::from_parts`] without the search terms (`terms` empty), for readers that never
    /// search (the exports).
    pub fn without_terms(
        asset_id: i64,
        upto: i64,
        created_at: i64,
        seen: (Option<i64>, Option<i64>),
        state: AssetState,
    ) -> Self {
        let summary = AssetSummary::from_state(&state);
        Rebuilt {
            asset_id,
            upto,
            created_at,
            last_seen_at: seen.0,
            last_collected_at: seen.1,
            summary,
            terms: String::new(),
            state,
        }
    }

    /// The row of the asset list.
    pub fn list_item(&self) -> AssetListItem {
        let s = &self.summary;
        let b = &s.business;
        AssetListItem {
            id: self.asset_id,
            hostname: s.hostname.clone(),
            asset_tag: b.asset_tag.clone(),
            status: b.status.as_str().to_owned(),
            idc: b.idc.clone(),
            cabinet: b.cabinet.clone(),
            cabinet_u: b.cabinet_u.map(i64::from),
            business_unit: b.business_unit.clone(),
            owner: b.owner.clone(),
            tags: b.tags.clone(),
            os_name: s.os_name.clone(),
            os_version: s.os_version.clone(),
            manufacturer: s.manufacturer.clone(),
            model: s.model.clone(),
            serial: s.serial.clone(),
            cpu_model: s.cpu_model.clone(),
            cpu_count: s.cpu_count,
            memory_mb: s.memory_mb,
            disk_bytes: s.disk_bytes,
            ip_addresses: s.ip_addresses.split(' ').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
            manage_address: b.manage_address.clone(),
            last_seen_at: self.last_seen_at.map(from_us),
            last_collected_at: self.last_collected_at.map(from_us),
            created_at: from_us(self.created_at),
            custom: b.custom.clone(),
        }
    }
}

/// The search terms as one text: "\nterm1\nterm2", so "any term starts with q" is a substring test
/// for "\n" + q that both backends can run without an index.
fn terms_text(state: &AssetState) -> String {
    let mut out = String::new();
    for term in search_terms(state) {
        out.push('\n');
        out.push_str(&term);
    }
    out
}

/// Binds the columns of [`row_columns`] for `r`.
fn bind_rebuilt(row: &mut RowBuilder<'_>, r: &Rebuilt) {
    let s = &r.summary;
    let b = &s.business;
    row.bind(s.hostname.clone())
        .bind(b.asset_tag.clone())
        .bind(b.status.as_str())
        .bind(b.idc.clone())
        .bind(b.cabinet.clone())
        .bind(b.cabinet_u.map(i64::from))
        .bind(b.business_unit.clone())
        .bind(b.owner.clone())
        .bind(s.tags_column())
        .bind(s.os_name.clone())
        .bind(s.os_version.clone())
        .bind(s.manufacturer.clone())
        .bind(s.model.clone())
        .bind(s.serial.clone())
        .bind(s.cpu_model.clone())
        .bind(s.cpu_count)
        .bind(s.memory_mb)
        .bind(s.disk_bytes)
        .bind(s.ip_addresses.clone())
        .bind(b.manage_address.clone())
        .bind(r.last_seen_at)
        .bind(r.last_collected_at)
        .bind(r.created_at)
        .bind(s.custom_column())
        .bind(r.terms.clone())
        .bind(s.deleted_at);
}

/// The latest complete snapshot at or before `at` (Unix µs).
pub async fn snapshot_before(conn: &mut AnyConnection, at: i64) -> Result<Option<SnapshotRef>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, taken_at FROM snapshots WHERE status = 'complete' AND taken_at <= $1 \
         ORDER BY taken_at DESC, id DESC LIMIT 1",
    )
    .bind(at)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| Ok(SnapshotRef { id: row.try_get(0)?, taken_at: row.try_get(1)? })).transpose()
}

/// An asset's state in a snapshot.
struct Base {
    upto: i64,
    created_at: i64,
    seen: (Option<i64>, Option<i64>),
    state: String,
}

fn parse_state(text: &str) -> Result<AssetState, ServiceError> {
    serde_json::from_str(text).map_err(|e| ServiceError::Bug(format!("a stored snapshot state does not parse: {e}")))
}

fn qualified_change_columns(alias: &str) -> String {
    CHANGE_COLUMNS.split(", ").map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}

/// Rebuilds, at `at`, every asset whose state differs from `snapshot` (every asset when there is
/// no snapshot), or only asset `only`. Returned in asset id order. States are kept only when
/// `keep_state` (the list needs the rows, not the states).
pub async fn rebuild_changed(
    conn: &mut AnyConnection,
    snapshot: Option<SnapshotRef>,
    at: i64,
    only: Option<i64>,
    keep_state: bool,
) -> Result<Vec<Rebuilt>, ServiceError> {
    let mut rebuilder = Rebuilder::new(conn, snapshot, at, only, keep_state).await?;
    let mut out = Vec::new();
    while let Some(chunk) = rebuilder.next_chunk(conn).await? {
        out.extend(chunk);
    }
    out.sort_by_key(|r| r.asset_id);
    Ok(out)
}

/// Rebuilds the assets [`rebuild_changed`] would, a chunk at a time (in asset id order, but for
/// assets replayed in full after an inconsistency, which come last), so that memory stays bounded
/// however many assets changed.
pub struct Rebuilder {
    snapshot: Option<SnapshotRef>,
    keep_state: bool,
    /// (asset, L(asset, at)) for every asset with a change in the window.
    last: Vec<(i64, i64)>,
    position: usize,
    /// (asset, L, created_at) of assets whose snapshot state does not continue into history.
    inconsistent: Vec<(i64, i64, i64)>,
}

impl Rebuilder {
    /// Finds the assets changed in (snapshot, at] (or up to `at` when there is no snapshot).
    pub async fn new(
        conn: &mut AnyConnection,
        snapshot: Option<SnapshotRef>,
        at: i64,
        only: Option<i64>,
        keep_state: bool,
    ) -> Result<Rebuilder, ServiceError> {
        // L(A, at) for every asset with a change in (snapshot, at]: the highest id recorded by then.
        let mut window = Sql::new("SELECT asset_id, MAX(id) FROM changes WHERE recorded_at <= ");
        window.bind(at);
        if let Some(s) = snapshot {
            window.push(" AND recorded_at > ").bind(s.taken_at);
        }
        if let Some(id) = only {
            window.push(" AND asset_id = ").bind(id);
        }
        window.push(" GROUP BY asset_id ORDER BY asset_id");
        let mut last: Vec<(i64, i64)> = Vec::new();
        for row in window.query().fetch_all(&mut *conn).await? {
            last.push((row.try_get(0)?, row.try_get(1)?));
        }
        Ok(Rebuilder { snapshot, keep_state, last, position: 0, inconsistent: Vec::new() })
    }

    /// Takes the assets whose row `known(asset, L)` has out of the rebuild and returns those rows
    /// (an asset's state at change L never changes, so a row kept for it still holds).
    pub fn take_known<T>(&mut self, known: impl Fn(i64, i64) -> Option<T>) -> Vec<T> {
        let mut taken = Vec::new();
        let mut left = Vec::with_capacity(self.last.len() - self.position);
        for &(asset, l) in &self.last[self.position..] {
            match known(asset, l) {
                Some(row) => taken.push(row),
                None => left.push((asset, l)),
            }
        }
        self.last = left;
        self.position = 0;
        taken
    }

    /// Assets with a change in the window (an upper bound of how many will be rebuilt).
    pub fn candidates(&self) -> usize {
        self.last.len()
    }

    /// The next chunk of rebuilt assets; `None` when done.
    pub async fn next_chunk(&mut self, conn: &mut AnyConnection) -> Result<Option<Vec<Rebuilt>>, ServiceError> {
        while self.position < self.last.len() {
            let end = (self.position + CHUNK).min(self.last.len());
            let chunk: Vec<(i64, i64)> = self.last[self.position..end].to_vec();
            self.position = end;
            let out = self.rebuild(conn, &chunk).await?;
            if !out.is_empty() {
                return Ok(Some(out));
            }
        }
        if self.inconsistent.is_empty() {
            return Ok(None);
        }
        // Only reachable when a snapshot disagrees with the history (a bug or a hand-edited
        // database): the asset is rebuilt from nothing, which is slow but always right.
        tracing::warn!(
            assets = self.inconsistent.len(),
            "snapshot state does not continue into history; replaying in full"
        );
        let mut out = Vec::new();
        for (asset_id, l, created_at) in std::mem::take(&mut self.inconsistent) {
            let mut rebuilt = replay_prefix(conn, asset_id, l, created_at).await?;
            if !self.keep_state {
                rebuilt.state = AssetState::default();
            }
            out.push(rebuilt);
        }
        Ok(Some(out))
    }

    async fn rebuild(&mut self, conn: &mut AnyConnection, chunk: &[(i64, i64)]) -> Result<Vec<Rebuilt>, ServiceError> {
        let mut out = Vec::with_capacity(chunk.len());
        let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
        let mut bases: HashMap<i64, Base> = HashMap::new();
        if let Some(s) = self.snapshot {
            let mut q = Sql::new(
                "SELECT m.asset_id, m.upto, v.created_at, v.last_seen_at, v.last_collected_at, v.state \
             FROM snapshot_members m JOIN asset_versions v ON v.asset_id = m.asset_id AND v.upto = m.upto \
             WHERE m.snapshot_id = ",
            );
            q.bind(s.id).push(" AND m.asset_id IN ");
            q.bind_list(ids.iter().copied());
            for row in q.query().fetch_all(&mut *conn).await? {
                let base = Base {
                    upto: row.try_get(1)?,
                    created_at: row.try_get(2)?,
                    seen: (row.try_get(3)?, row.try_get(4)?),
                    state: row.try_get(5)?,
                };
                bases.insert(row.try_get(0)?, base);
            }
        }
        // An asset whose window holds only ids below its snapshot `upto` (clocks disagreeing) has
        // not changed since the snapshot.
        let changed: Vec<(i64, i64)> =
            chunk.iter().copied().filter(|(id, l)| bases.get(id).is_none_or(|b| *l > b.upto)).collect();
        if changed.is_empty() {
            return Ok(out);
        }
        let ids: Vec<i64> = changed.iter().map(|(id, _)| *id).collect();
        let max_l = changed.iter().map(|(_, l)| *l).max().unwrap_or(0);
        let mut created: HashMap<i64, i64> = HashMap::new();
        if ids.iter().any(|id| !bases.contains_key(id)) {
            let mut q = Sql::new("SELECT id, created_at FROM assets WHERE id IN ");
            q.bind_list(ids.iter().copied());
            for row in q.query().fetch_all(&mut *conn).await? {
                created.insert(row.try_get(0)?, row.try_get(1)?);
            }
        }
        let mut q = Sql::new(format!("SELECT {} FROM changes c", qualified_change_columns("c")));
        match self.snapshot {
            Some(s) => {
                q.push(" LEFT JOIN snapshot_members m ON m.snapshot_id = ")
                    .bind(s.id)
                    .push(" AND m.asset_id = c.asset_id WHERE c.id > COALESCE(m.upto, 0) AND c.asset_id IN ");
            }
            None => {
                q.push(" WHERE c.asset_id IN ");
            }
        }
        q.bind_list(ids.iter().copied());
        q.push(" AND c.id <= ").bind(max_l).push(" ORDER BY c.asset_id, c.id");
        let rows = q.query().fetch_all(&mut *conn).await?;
        let mut records: HashMap<i64, Vec<ChangeRecord>> = HashMap::new();
        for row in &rows {
            let record = store::change_row(row)?;
            records.entry(record.asset_id).or_default().push(record);
        }
        drop(rows);
        for (asset_id, l) in changed {
            let (mut state, upto, created_at, mut seen) = match bases.remove(&asset_id) {
                Some(base) => (parse_state(&base.state)?, base.upto, base.created_at, base.seen),
                None => (AssetState::default(), 0, created.get(&asset_id).copied().unwrap_or(0), (None, None)),
            };
            let mut ok = true;
            for record in records.get(&asset_id).into_iter().flatten().filter(|r| r.id > upto && r.id <= l) {
                if apply(&mut state, &record.op()).is_err() {
                    ok = false;
                    break;
                }
                if record.report_id.is_some() {
                    seen = (
                        Some(record.recorded_at.timestamp_micros()),
                        record.collected_at.map(|t| t.timestamp_micros()),
                    );
                }
            }
            if !ok {
                self.inconsistent.push((asset_id, l, created_at));
                continue;
            }
            let mut rebuilt = Rebuilt::from_parts(asset_id, l, created_at, seen, state);
            if !self.keep_state {
                rebuilt.state = AssetState::default();
            }
            out.push(rebuilt);
        }
        Ok(out)
    }
}

/// Replays asset `asset_id`'s history up to change `upto` from nothing.
async fn replay_prefix(
    conn: &mut AnyConnection,
    asset_id: i64,
    upto: i64,
    created_at: i64,
) -> Result<Rebuilt, ServiceError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CHANGE_COLUMNS} FROM changes WHERE asset_id = $1 AND id <= $2 ORDER BY id"
    )))
    .bind(asset_id)
    .bind(upto)
    .fetch_all(&mut *conn)
    .await?;
    let mut state = AssetState::default();
    let mut seen = (None, None);
    for row in &rows {
        let record = store::change_row(row)?;
        apply(&mut state, &record.op()).map_err(|e| {
            tracing::error!(asset_id, error = %e, "history does not replay");
            ServiceError::Bug(format!("the history of asset {asset_id} does not replay: {e}"))
        })?;
        if record.report_id.is_some() {
            seen = (Some(record.recorded_at.timestamp_micros()), record.collected_at.map(|t| t.timestamp_micros()));
        }
    }
    Ok(Rebuilt::from_parts(asset_id, upto, created_at, seen, state))
}

/// One asset as it stood at `at` (its effective instant); `None` when it did not exist yet.
pub async fn asset_as_of(db: &Db, id: i64, at: AsOf) -> Result<Option<AssetDetail>, ServiceError> {
    let Some(r) = rebuild_one(db, id, at.effective).await? else { return Ok(None) };
    let mut detail = detail_from_state(r.list_item(), &r.state);
    detail.as_of = Some(at.stated());
    // The flag is about the records as they stand now, whatever the as-of: it asks for a decision.
    detail.possible_duplicates = crate::service::duplicates::of(db, id).await?;
    Ok(Some(detail))
}

/// The assets that read as an imported baseline at `at` (Unix µs): those with no change recorded
/// at or before `at` and a baseline effective at or before it, each as its latest such baseline
/// (host name and business fields); only asset `only` when given. This is the one place where
/// as-of does not follow recorded time: a baseline is what the old spreadsheet said the asset was
/// before cmdb knew it, and it gives way to the first change recorded.
pub async fn baselines_at(conn: &mut AnyConnection, at: i64, only: Option<i64>) -> Result<Vec<Rebuilt>, ServiceError> {
    let mut q =
        Sql::new("SELECT b.asset_id, b.effective_at, b.hostname, b.fields FROM baselines b WHERE b.effective_at <= ");
    q.bind(at);
    if let Some(id) = only {
        q.push(" AND b.asset_id = ").bind(id);
    }
    q.push(" AND NOT EXISTS (SELECT 1 FROM changes c WHERE c.asset_id = b.asset_id AND c.recorded_at <= ")
        .bind(at)
        .push(") AND NOT EXISTS (SELECT 1 FROM baselines n WHERE n.asset_id = b.asset_id AND n.effective_at <= ")
        .bind(at)
        .push(" AND (n.effective_at > b.effective_at OR (n.effective_at = b.effective_at AND n.id > b.id))) ORDER BY b.asset_id");
    let rows = q.query().fetch_all(&mut *conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let fields: String = row.try_get(3)?;
        let fields = match serde_json::from_str(&fields) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(ServiceError::Corrupt("a baseline's fields are not a JSON object".to_owned())),
        };
        let mut host = serde_json::Map::new();
        host.insert("hostname".to_owned(), serde_json::Value::String(row.try_get(2)?));
        let mut state = AssetState::default();
        state
            .sections
            .insert(cmdb_model::state::HOST_SECTION.to_owned(), cmdb_model::state::SectionState::from_fields(host));
        state.sections.insert(BUSINESS_SECTION.to_owned(), cmdb_model::state::SectionState::from_fields(fields));
        let effective: i64 = row.try_get(1)?;
        out.push(Rebuilt::from_parts(row.try_get(0)?, 0, effective, (None, None), state));
    }
    Ok(out)
}

/// A baseline import whose rows an as-of view at some instant reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineUse {
    /// The file imported.
    pub file_name: String,
    /// The instant it describes.
    pub effective_at: DateTime<Utc>,
    /// When it was imported.
    pub imported_at: DateTime<Utc>,
    /// Who imported it (`user:<name>`).
    pub imported_by: String,
    /// Its rows read at the instant (assets with no change recorded by then).
    pub rows: i64,
}

/// The baseline imports the view at `at` reads rows of, oldest first.
pub async fn baselines_used(db: &Db, at: DateTime<Utc>) -> Result<Vec<BaselineUse>, ServiceError> {
    let mut conn = db.reader().acquire().await?;
    let used = baselines_at(&mut conn, at.timestamp_micros(), None).await?;
    if used.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT file_name, effective_at, imported_at, imported_by, asset_id FROM baselines WHERE effective_at <= $1 \
         ORDER BY imported_at, id",
    )
    .bind(at.timestamp_micros())
    .fetch_all(&mut *conn)
    .await?;
    // A row is used when its asset reads as a baseline with that very effective instant.
    let read: HashMap<i64, i64> = used.iter().map(|r| (r.asset_id, r.created_at)).collect();
    let mut out: Vec<BaselineUse> = Vec::new();
    for row in &rows {
        let (file_name, effective, imported, by, asset): (String, i64, i64, String, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
        if read.get(&asset) != Some(&effective) {
            continue;
        }
        match out.iter_mut().find(|u| u.file_name == file_name && u.imported_at == from_us(imported)) {
            Some(u) => u.rows += 1,
            None => out.push(BaselineUse {
                file_name,
                effective_at: from_us(effective),
                imported_at: from_us(imported),
                imported_by: by,
                rows: 1,
            }),
        }
    }
    Ok(out)
}

/// One asset rebuilt at `at` with its state; `None` when it did not exist yet.
pub async fn rebuild_one(db: &Db, id: i64, at: DateTime<Utc>) -> Result<Option<Rebuilt>, ServiceError> {
    let at = at.timestamp_micros();
    let mut conn = db.reader().acquire().await?;
    let snapshot = snapshot_before(&mut conn, at).await?;
    if let Some(r) = rebuild_changed(&mut conn, snapshot, at, Some(id), true).await?.pop() {
        return Ok(Some(r));
    }
    // Nothing recorded by then: perhaps an imported baseline says what it was.
    if let Some(r) = baselines_at(&mut conn, at, Some(id)).await?.pop() {
        return Ok(Some(r));
    }
    // Unchanged since the snapshot (or absent from it: then it did not exist yet).
    let Some(s) = snapshot else { return Ok(None) };
    let row = sqlx::query(
        "SELECT m.upto, v.created_at, v.last_seen_at, v.last_collected_at, v.state FROM snapshot_members m \
         JOIN asset_versions v ON v.asset_id = m.asset_id AND v.upto = m.upto WHERE m.snapshot_id = $1 AND m.asset_id = $2",
    )
    .bind(s.id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get(4)?;
    Ok(Some(Rebuilt::from_parts(
        id,
        row.try_get(0)?,
        row.try_get(1)?,
        (row.try_get(2)?, row.try_get(3)?),
        parse_state(&state)?,
    )))
}

/// One row of an as-of list: the list row, and the search terms it is found by.
#[derive(Debug, Clone)]
pub struct AsOfRow {
    /// The list row.
    pub item: AssetListItem,
    /// The search terms, each preceded by a newline.
    pub terms: String,
    /// The record was deleted (or merged) by then: it is in no list.
    pub deleted: bool,
}

/// The list rows of recent snapshots, in memory. A complete snapshot never changes, so its rows
/// are read once per process; every as-of list that starts from it merges the assets changed
/// since and filters, sorts and pages in memory (no temporary table, no sort of 100,000 rows in
/// SQL per request). Holds the two snapshots used last.
///
/// It also keeps the rows of assets rebuilt since a snapshot, by (snapshot, asset, L) where L is
/// the last change replayed: an asset's state at a change never changes, so the next as-of of the
/// same day replays only the assets that changed since the previous one instead of every asset
/// changed since the snapshot.
#[derive(Debug, Default)]
pub struct SnapshotRows {
    entries: std::sync::Mutex<Vec<(i64, std::sync::Arc<Vec<AsOfRow>>)>>,
    rebuilt: std::sync::Mutex<HashMap<(i64, i64, i64), std::sync::Arc<AsOfRow>>>,
}

/// How many snapshots' rows are kept (about 100 MB each at 100,000 assets).
const KEPT_SNAPSHOTS: usize = 2;

/// How many rebuilt rows are kept (about 1 KB each); past it the cache starts again empty.
const KEPT_REBUILT: usize = 50_000;

impl SnapshotRows {
    /// Reads the rows of the latest complete snapshot into memory, so the first as-of list after a
    /// start or a daily snapshot does not wait for them.
    pub async fn warm(&self, db: &Db) -> Result<(), ServiceError> {
        let mut conn = db.reader().acquire().await?;
        let latest = snapshot_before(&mut conn, now_us()).await?;
        drop(conn);
        if let Some(snapshot) = latest {
            self.rows(db, snapshot).await?;
        }
        Ok(())
    }

    /// The kept row of `asset` at change `l` rebuilt on top of `snapshot` (0: none).
    fn rebuilt(&self, snapshot: i64, asset: i64, l: i64) -> Option<std::sync::Arc<AsOfRow>> {
        self.rebuilt.lock().ok()?.get(&(snapshot, asset, l)).cloned()
    }

    fn keep_rebuilt(&self, snapshot: i64, l: i64, row: std::sync::Arc<AsOfRow>) {
        if let Ok(mut kept) = self.rebuilt.lock() {
            if kept.len() >= KEPT_REBUILT {
                kept.clear();
            }
            kept.insert((snapshot, row.item.id, l), row);
        }
    }

    /// The rows of `snapshot`, in asset id order.
    async fn rows(&self, db: &Db, snapshot: SnapshotRef) -> Result<std::sync::Arc<Vec<AsOfRow>>, ServiceError> {
        if let Ok(entries) = self.entries.lock()
            && let Some((_, rows)) = entries.iter().find(|(id, _)| *id == snapshot.id)
        {
            return Ok(rows.clone());
        }
        let started = std::time::Instant::now();
        let rows = load_snapshot_rows(db, snapshot).await?;
        let rows = std::sync::Arc::new(rows);
        tracing::debug!(
            snapshot = snapshot.id,
            rows = rows.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot rows read"
        );
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|(id, _)| *id != snapshot.id);
            entries.insert(0, (snapshot.id, rows.clone()));
            entries.truncate(KEPT_SNAPSHOTS);
        }
        Ok(rows)
    }
}

/// Parts a snapshot's rows are read in, each on its own connection: decoding rows is most of the
/// cost (about 17 µs a row through sqlx), and the parts decode in parallel.
const LOAD_PARTS: i64 = 4;

/// Every row of `snapshot`, in asset id order. A snapshot never changes, so the parts need no
/// common transaction.
async fn load_snapshot_rows(db: &Db, snapshot: SnapshotRef) -> Result<Vec<AsOfRow>, ServiceError> {
    let bounds = sqlx::query("SELECT MIN(asset_id), MAX(asset_id) FROM snapshot_members WHERE snapshot_id = $1")
        .bind(snapshot.id)
        .fetch_one(db.reader())
        .await?;
    let (Some(low), Some(high)) = (bounds.try_get::<Option<i64>, _>(0)?, bounds.try_get::<Option<i64>, _>(1)?) else {
        return Ok(Vec::new());
    };
    let span = (high - low) / LOAD_PARTS + 1;
    let mut parts = tokio::task::JoinSet::new();
    for part in 0..LOAD_PARTS {
        let db = db.clone();
        let (from, to) = (low + part * span, low + (part + 1) * span);
        parts.spawn(async move { load_snapshot_part(&db, snapshot, from, to).await.map(|rows| (part, rows)) });
    }
    let mut loaded = Vec::with_capacity(LOAD_PARTS as usize);
    while let Some(done) = parts.join_next().await {
        loaded.push(done.map_err(|e| ServiceError::Bug(format!("reading a snapshot's rows failed: {e}")))??);
    }
    loaded.sort_by_key(|(part, _)| *part);
    Ok(loaded.into_iter().flat_map(|(_, rows)| rows).collect())
}

/// The rows of `snapshot` with asset ids in [from, to).
async fn load_snapshot_part(db: &Db, snapshot: SnapshotRef, from: i64, to: i64) -> Result<Vec<AsOfRow>, ServiceError> {
    let q = format!(
        "SELECT v.asset_id, {} FROM snapshot_members m JOIN asset_versions v \
         ON v.asset_id = m.asset_id AND v.upto = m.upto \
         WHERE m.snapshot_id = $1 AND m.asset_id >= $2 AND m.asset_id < $3 ORDER BY m.asset_id",
        row_columns().split(", ").map(|c| format!("v.{c}")).collect::<Vec<_>>().join(", ")
    );
    let terms_index = LIST.len();
    let fetched =
        sqlx::query(sqlx::AssertSqlSafe(q)).bind(snapshot.id).bind(from).bind(to).fetch_all(db.reader()).await?;
    let mut rows = Vec::with_capacity(fetched.len());
    for row in &fetched {
        rows.push(AsOfRow {
            item: list_item(row)?,
            terms: row.try_get(terms_index)?,
            deleted: row.try_get::<Option<i64>, _>(terms_index + 1)?.is_some(),
        });
    }
    Ok(rows)
}

/// Every asset's list row as it stood at `at`: the snapshot's rows with the assets changed since
/// replaced (or added).
struct RowsAt {
    base: std::sync::Arc<Vec<AsOfRow>>,
    changed: Vec<std::sync::Arc<AsOfRow>>,
}

impl RowsAt {
    async fn read(db: &Db, cache: &SnapshotRows, at: DateTime<Utc>) -> Result<RowsAt, ServiceError> {
        let at = at.timestamp_micros();
        let mut tx = db.reader().begin().await?;
        let snapshot = snapshot_before(&mut tx, at).await?;
        let sid = snapshot.map_or(0, |s| s.id);
        let mut rebuilder = Rebuilder::new(&mut tx, snapshot, at, None, false).await?;
        let mut changed = rebuilder.take_known(|asset, l| cache.rebuilt(sid, asset, l));
        while let Some(chunk) = rebuilder.next_chunk(&mut tx).await? {
            for r in chunk {
                let l = r.upto;
                let deleted = r.summary.deleted_at.is_some();
                let row = std::sync::Arc::new(AsOfRow { item: r.list_item(), terms: r.terms, deleted });
                cache.keep_rebuilt(sid, l, row.clone());
                changed.push(row);
            }
        }
        for r in baselines_at(&mut tx, at, None).await? {
            changed.push(std::sync::Arc::new(AsOfRow { item: r.list_item(), terms: r.terms, deleted: false }));
        }
        tx.rollback().await?;
        changed.sort_by_key(|r| r.item.id);
        let base = match snapshot {
            Some(s) => cache.rows(db, s).await?,
            None => std::sync::Arc::new(Vec::new()),
        };
        Ok(RowsAt { base, changed })
    }

    /// Every row of a record not deleted by then, in asset id order.
    fn iter(&self) -> impl Iterator<Item = &AsOfRow> {
        self.all().filter(|r| !r.deleted)
    }

    /// Every row, in asset id order (both parts are in id order: a merge).
    fn all(&self) -> impl Iterator<Item = &AsOfRow> {
        let mut base = self.base.iter().peekable();
        let mut changed = self.changed.iter().map(|r| &**r).peekable();
        std::iter::from_fn(move || match (base.peek(), changed.peek()) {
            (Some(b), Some(c)) if b.item.id < c.item.id => base.next(),
            (Some(b), Some(c)) if b.item.id == c.item.id => {
                base.next();
                changed.next()
            }
            (Some(_), Some(_)) | (None, Some(_)) => changed.next(),
            (Some(_), None) => base.next(),
            (None, None) => None,
        })
    }

    /// The rows `query` selects, in its order (the live list's filters and order, see
    /// [`crate::service::assets::matches`] and [`crate::service::assets::compare`]).
    fn select(&self, backend: Backend, query: &ListQuery) -> Vec<&AssetListItem> {
        let filter = ListFilter::new(query);
        let mut rows: Vec<&AssetListItem> =
            self.iter().filter(|r| filter.matches(&r.item, &r.terms)).map(|r| &r.item).collect();
        let order = ListOrder::new(query, backend);
        rows.sort_by(|a, b| order.compare(a, b));
        rows
    }
}

/// The asset list as it stood at `as_of`, filtered, sorted and paged like the live list.
pub async fn list_as_of(
    db: &Db,
    cache: &SnapshotRows,
    as_of: AsOf,
    query: &ListQuery,
) -> Result<AssetPage, ServiceError> {
    let query = &crate::service::assets::resolve_custom(db, query).await?;
    let started = std::time::Instant::now();
    let per_page = query.per_page.unwrap_or(50).clamp(1, 500);
    let page = query.page.unwrap_or(1).max(1);
    let rows = RowsAt::read(db, cache, as_of.effective).await?;
    let selected = rows.select(db.backend(), query);
    let total = selected.len() as i64;
    let skip = usize::try_from((page - 1) * per_page).unwrap_or(usize::MAX);
    let items = selected.into_iter().skip(skip).take(per_page as usize).cloned().collect();
    tracing::debug!(at = %as_of.effective, total, elapsed_ms = started.elapsed().as_millis() as u64, "as-of list");
    // Only an empty list asks (one indexed MIN): was anything recorded by then at all?
    let history_starts_at = if total == 0 {
        history_start(db)
            .await?
            .filter(|start| *start > as_of.effective)
            .map(|start| Calendar::new(as_of.tz, 0).state(start))
    } else {
        None
    };
    Ok(AssetPage { items, total, page, per_page, as_of: Some(as_of.stated()), history_starts_at })
}

/// When the first change was recorded; `None` while nothing has been.
pub async fn history_start(db: &Db) -> Result<Option<DateTime<Utc>>, ServiceError> {
    let first: Option<i64> =
        sqlx::query("SELECT MIN(recorded_at) FROM changes").fetch_one(db.reader()).await?.try_get(0)?;
    Ok(first.map(from_us))
}

/// The list filters' counts as they stood at `at` (what the as-of list's selects offer): every
/// asset then, counted in memory from the same rows the as-of list reads.
pub async fn counts_as_of(
    db: &Db,
    cache: &SnapshotRows,
    at: DateTime<Utc>,
) -> Result<crate::service::dashboard::Counts, ServiceError> {
    use crate::service::dashboard::{Counts, count_values};
    let rows = RowsAt::read(db, cache, at).await?;
    let items: Vec<&AssetListItem> = rows.iter().map(|r| &r.item).collect();
    let of = |pick: fn(&AssetListItem) -> Option<&str>| count_values(items.iter().map(|i| pick(i)));
    let mut tags = count_values(items.iter().flat_map(|i| i.tags.iter().map(|t| Some(t.as_str()))));
    tags.retain(|c| c.value.is_some());
    Ok(Counts {
        status: of(|i| Some(i.status.as_str())),
        os: of(|i| i.os_name.as_deref()),
        manufacturer: of(|i| i.manufacturer.as_deref()),
        business_unit: of(|i| i.business_unit.as_deref()),
        idc: of(|i| i.idc.as_deref()),
        tags,
        owner: of(|i| i.owner.as_deref()),
    })
}

/// Every row `query` selects (all pages) as it stood at `at`, in its order.
pub async fn list_items_as_of(
    db: &Db,
    cache: &SnapshotRows,
    at: DateTime<Utc>,
    query: &ListQuery,
) -> Result<Vec<AssetListItem>, ServiceError> {
    let query = &crate::service::assets::resolve_custom(db, query).await?;
    let rows = RowsAt::read(db, cache, at).await?;
    Ok(rows.select(db.backend(), query).into_iter().cloned().collect())
}

/// A stored (complete) snapshot.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Snapshot {
    /// Snapshot id.
    pub id: i64,
    /// The moment it captures.
    pub taken_at: DateTime<Utc>,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// Why: `daily`, or `manual:<user>`.
    pub reason: String,
    /// Assets in it.
    pub asset_count: i64,
}

/// What a snapshot run did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SnapshotInfo {
    /// Snapshot id.
    pub id: i64,
    /// Its time.
    pub taken_at: DateTime<Utc>,
    /// Assets in it.
    pub asset_count: i64,
    /// Assets whose state was rebuilt (the rest were carried over from the previous snapshot).
    pub rebuilt: usize,
    /// False when a snapshot of that time existed already and was returned.
    pub created: bool,
}

/// Materializes the state of every asset at `at` (at least [`SETTLE_SECS`] in the past) as a
/// snapshot. Written in short transactions so ingestion is never held up for long; the snapshot
/// becomes visible only once complete.
pub async fn snapshot(db: &Db, at: DateTime<Utc>, reason: &str) -> Result<SnapshotInfo, ServiceError> {
    let started = std::time::Instant::now();
    let at_us = at.timestamp_micros();
    if at_us > now_us() - SETTLE_SECS * 1_000_000 {
        return Err(ServiceError::Invalid {
            field: "/at".to_owned(),
            message: format!(
                "a snapshot must be at least {SETTLE_SECS} s in the past, so no write of that time is still in flight"
            ),
        });
    }
    let mut conn = db.reader().acquire().await?;
    let existing = sqlx::query(
        "SELECT id, asset_count FROM snapshots WHERE status = 'complete' AND taken_at = $1 ORDER BY id LIMIT 1",
    )
    .bind(at_us)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = existing {
        return Ok(SnapshotInfo {
            id: row.try_get(0)?,
            taken_at: at,
            asset_count: row.try_get(1)?,
            rebuilt: 0,
            created: false,
        });
    }
    let previous = snapshot_before(&mut conn, at_us).await?;
    let id: i64 = sqlx::query(
        "INSERT INTO snapshots (taken_at, created_at, status, reason) VALUES ($1, $2, 'building', $3) RETURNING id",
    )
    .bind(at_us)
    .bind(now_us())
    .bind(reason.to_owned())
    .fetch_one(db.writer())
    .await?
    .try_get(0)?;
    let mut members: Vec<(i64, i64)> = Vec::new();
    let result = async {
        let mut rebuilder = Rebuilder::new(&mut conn, previous, at_us, None, true).await?;
        while let Some(chunk) = rebuilder.next_chunk(&mut conn).await? {
            write_versions(db, &chunk).await?;
            members.extend(chunk.iter().map(|r| (r.asset_id, r.upto)));
        }
        fill_members(db, id, previous, &members).await
    }
    .await;
    drop(conn);
    if let Err(e) = result {
        // Leave nothing half-written behind: a building snapshot is never read, but its rows would
        // only take space. (Versions written are valid facts and may be shared later.)
        let _ = sqlx::query("DELETE FROM snapshot_members WHERE snapshot_id = $1").bind(id).execute(db.writer()).await;
        let _ = sqlx::query("DELETE FROM snapshots WHERE id = $1").bind(id).execute(db.writer()).await;
        return Err(e);
    }
    let count: i64 = sqlx::query("SELECT asset_count FROM snapshots WHERE id = $1")
        .bind(id)
        .fetch_one(db.reader())
        .await?
        .try_get(0)?;
    tracing::info!(
        snapshot = id,
        taken_at = %at,
        assets = count,
        rebuilt = members.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot taken"
    );
    Ok(SnapshotInfo { id, taken_at: at, asset_count: count, rebuilt: members.len(), created: true })
}

/// Stores rebuilt states as versions: immutable facts keyed by (asset, last change), shared by
/// every snapshot in which the asset had not changed since.
async fn write_versions(db: &Db, rebuilt: &[Rebuilt]) -> Result<(), ServiceError> {
    for chunk in rebuilt.chunks(CHUNK / 2) {
        let mut q = Sql::new(format!("INSERT INTO asset_versions (asset_id, upto, {}, state)", row_columns()));
        let states: Vec<String> = chunk
            .iter()
            .map(|r| serde_json::to_string(&r.state))
            .collect::<Result<_, _>>()
            .map_err(|e| ServiceError::Bug(format!("cannot serialize a state: {e}")))?;
        let rows: Vec<(&Rebuilt, &String)> = chunk.iter().zip(states.iter()).collect();
        q.values(&rows, |row, (r, state)| {
            row.bind(r.asset_id).bind(r.upto);
            bind_rebuilt(row, r);
            row.bind((*state).clone());
        });
        q.push(" ON CONFLICT (asset_id, upto) DO NOTHING");
        q.query().execute(db.writer()).await?;
    }
    Ok(())
}

/// Writes the members of snapshot `id`: the previous snapshot's, with the rebuilt assets' new
/// `upto`; then marks it complete, in one transaction.
async fn fill_members(
    db: &Db,
    id: i64,
    previous: Option<SnapshotRef>,
    rebuilt: &[(i64, i64)],
) -> Result<(), ServiceError> {
    let mut tx = db.begin_write().await?;
    if let Some(p) = previous {
        sqlx::query(
            "INSERT INTO snapshot_members (snapshot_id, asset_id, upto) SELECT $1, asset_id, upto FROM snapshot_members WHERE snapshot_id = $2",
        )
        .bind(id)
        .bind(p.id)
        .execute(&mut *tx)
        .await?;
    }
    for chunk in rebuilt.chunks(CHUNK) {
        let mut q = Sql::new("INSERT INTO snapshot_members (snapshot_id, asset_id, upto)");
        q.values(chunk, |row, (asset_id, upto)| {
            row.bind(id).bind(*asset_id).bind(*upto);
        });
        q.push(" ON CONFLICT (snapshot_id, asset_id) DO UPDATE SET upto = excluded.upto");
        q.query().execute(&mut *tx).await?;
    }
    sqlx::query(
        "UPDATE snapshots SET status = 'complete', asset_count = (SELECT COUNT(*) FROM snapshot_members WHERE snapshot_id = $1) WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Every complete snapshot, newest first.
pub async fn snapshots(db: &Db) -> Result<Vec<Snapshot>, ServiceError> {
    let rows = sqlx::query(
        "SELECT id, taken_at, created_at, reason, asset_count FROM snapshots WHERE status = 'complete' ORDER BY taken_at DESC, id DESC",
    )
    .fetch_all(db.reader())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(Snapshot {
            id: row.try_get(0)?,
            taken_at: from_us(row.try_get(1)?),
            created_at: from_us(row.try_get(2)?),
            reason: row.try_get(3)?,
            asset_count: row.try_get(4)?,
        });
    }
    Ok(out)
}

/// Takes the daily snapshot whenever one is due: at the last instant of each local day in the
/// configured zone (see [`Calendar::daily_snapshot_due`]), so that a date's as-of starts from a
/// snapshot at that very instant. Runs until the task is dropped; checks every ten minutes, so a
/// server that was down at midnight catches up when it starts.
pub async fn run_daily(db: Db, calendar: Calendar, rows: std::sync::Arc<SnapshotRows>) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        interval.tick().await;
        // The latest snapshot's rows are read before people ask for them (at start, and after
        // each daily snapshot below on the next tick).
        if let Err(e) = rows.warm(&db).await {
            tracing::warn!(error = %e, "cannot read the latest snapshot's rows ahead of time");
        }
        let due = match calendar.daily_snapshot_due(Utc::now()) {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell when the daily snapshot is due");
                continue;
            }
        };
        // Every instance on one PostgreSQL database runs this task; one builds the day's
        // snapshot while the others skip the tick (and find it complete at their next one),
        // instead of each building the same snapshot of every asset.
        let mut exclusive = match db.backend() {
            Backend::Sqlite => None,
            Backend::Postgres => match try_lock_daily(&db).await {
                Ok(Some(conn)) => Some(conn),
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the daily snapshot's lock; will retry");
                    continue;
                }
            },
        };
        match snapshot(&db, due, "daily").await {
            Ok(info) if info.created => {
                tracing::info!(snapshot = info.id, taken_at = %info.taken_at, "daily snapshot taken")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "daily snapshot failed; will retry"),
        }
        if let Some(conn) = exclusive.as_mut() {
            // A connection that fails here is closed by the pool, which ends its session lock.
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(DAILY_SNAPSHOT_LOCK).execute(&mut **conn).await;
        }
    }
}

/// The PostgreSQL advisory lock held by the instance building the daily snapshot ("cmdbsnap").
const DAILY_SNAPSHOT_LOCK: i64 = 0x636d_6462_736e_6170;

/// The connection holding the daily snapshot's session lock, or `None` when another instance
/// holds it.
async fn try_lock_daily(db: &Db) -> Result<Option<sqlx::pool::PoolConnection<sqlx::Any>>, sqlx::Error> {
    let mut conn = db.writer().acquire().await?;
    let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
        .bind(DAILY_SNAPSHOT_LOCK)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    Ok(got.then_some(conn))
}
