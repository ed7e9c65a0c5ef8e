//! Reading the history: one asset's changes (the timeline), the change log across assets with its
//! filters, and the change feed scripts follow with a cursor.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::db::{Backend, Db};
use crate::service::ServiceError;
pub use crate::service::time::Span;
use crate::store::sql::{Param, Sql};
use crate::store::{self, CHANGE_COLUMNS, ChangeRecord};

/// A page of change records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangePage {
    /// The records.
    pub items: Vec<ChangeRecord>,
    /// Cursor for the next page, when there may be more.
    pub next: Option<String>,
}

/// One asset's changes, newest first: those with an id below `before`, recorded at or before
/// `upto` (an as-of view never shows later ones), at most `limit`.
pub async fn asset_changes(
    db: &Db,
    asset_id: i64,
    before: Option<i64>,
    span: Span,
    limit: i64,
) -> Result<Vec<ChangeRecord>, ServiceError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CHANGE_COLUMNS} FROM changes WHERE asset_id = $1 AND id < $2 AND recorded_at <= $3 \
         AND recorded_at >= $5 ORDER BY id DESC LIMIT $4"
    )))
    .bind(asset_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(span.to.map_or(i64::MAX, |t| t.timestamp_micros()))
    .bind(limit)
    .bind(span.from.map_or(i64::MIN, |t| t.timestamp_micros()))
    .fetch_all(db.reader())
    .await?;
    Ok(rows.iter().map(store::change_row).collect::<Result<Vec<_>, _>>()?)
}

/// Parses a change feed cursor (`<txid>-<id>`).
pub fn parse_cursor(text: &str) -> Result<(i64, i64), ServiceError> {
    let bad = || ServiceError::invalid("after", format!("malformed cursor {text:?}"));
    let (tx, id) = text.split_once('-').ok_or_else(bad)?;
    Ok((tx.parse().map_err(|_| bad())?, id.parse().map_err(|_| bad())?))
}

/// When asset `id`'s first change was recorded; `None` when it has none (no such asset).
pub async fn first_recorded(db: &Db, id: i64) -> Result<Option<chrono::DateTime<chrono::Utc>>, ServiceError> {
    let first: Option<i64> = sqlx::query("SELECT MIN(recorded_at) FROM changes WHERE asset_id = $1")
        .bind(id)
        .fetch_one(db.reader())
        .await?
        .try_get(0)?;
    Ok(first.map(crate::db::from_us))
}

/// The change feed's filters (the change log's, for scripts).
#[derive(Debug, Clone, Default)]
pub struct FeedFilter {
    /// Only these assets' changes (`None`: every asset; empty: none).
    pub assets: Option<Vec<i64>>,
    /// Only changes recorded in this span.
    pub span: Span,
    /// Only this section's changes.
    pub section: Option<String>,
    /// Any of these actions (none: every action).
    pub actions: Vec<cmdb_model::Action>,
    /// Only changes from this source: agent, ssh, salt, legacy, `user` (any person) or `user:<name>`.
    pub source: Option<String>,
}

/// Every change after cursor `after` that `filter` selects, oldest first. A consumer that follows
/// `next` never misses a change: on PostgreSQL the feed only shows transactions older than the
/// oldest one still writing in this database (see [`feed_horizon`]), ordered by transaction id, so
/// a late commit cannot land behind a cursor; on SQLite commits are serialized, so ids are commit
/// order. The price on PostgreSQL: a long write transaction in the cmdb database delays (never
/// drops) what the feed shows until it ends.
pub async fn change_feed(
    db: &Db,
    after: Option<&str>,
    filter: FeedFilter,
    limit: i64,
) -> Result<ChangePage, ServiceError> {
    let (tx, id) = match after {
        Some(cursor) => parse_cursor(cursor)?,
        None => (-1, -1),
    };
    let horizon = match db.backend() {
        Backend::Postgres => Some(feed_horizon(db.reader()).await?),
        Backend::Sqlite => None,
    };
    let mut q = Sql::new(format!("SELECT {CHANGE_COLUMNS} FROM changes c WHERE (txid, id) > ("));
    q.bind(tx).push(", ").bind(id).push(")");
    if let Some(horizon) = horizon {
        q.push(" AND txid < ").bind(horizon);
    }
    for condition in shared_conditions(filter.span, filter.assets, filter.section.as_deref(), &filter.actions) {
        condition.push_to(&mut q);
    }
    match filter.source.as_deref() {
        Some("user") => {
            q.push(" AND source LIKE 'user:%'");
        }
        Some(source) => {
            q.push(" AND source = ").bind(source);
        }
        None => {}
    }
    q.push(" ORDER BY txid, id LIMIT ").bind(limit);
    let rows = q.query().fetch_all(db.reader()).await?;
    let items = rows.iter().map(store::change_row).collect::<Result<Vec<_>, _>>()?;
    let next = items.last().map(|c| c.cursor.clone()).or(after.map(str::to_owned));
    Ok(ChangePage { items, next })
}

/// The PostgreSQL feed horizon: every transaction with a smaller id has ended, or belongs to
/// another database and so never writes our `changes`. It is the smallest transaction id still
/// running in this database, else the current snapshot's `xmax`.
///
/// Why not `pg_snapshot_xmin`: that horizon is cluster-wide, so any transaction in any database
/// of the cluster (a neighbour's batch job, `VACUUM`, another test) would hold the feed back.
///
/// The order of the three statements is what makes this safe, and each runs in its own implicit
/// transaction so `pg_stat_activity` is read fresh: (1) `xmax` is read first; (2) the running
/// transactions of this database are read after it, so any transaction below `xmax` that is not
/// listed had already ended; (3) the caller's query takes its snapshot after that, so it sees
/// every such ended transaction. A transaction that gets its id after (1) gets one at or above
/// `xmax` and stays beyond the horizon. `backend_xid` is a 32-bit `xid`; it is widened to the
/// 64-bit ids in `changes.txid` relative to `xmax`, which is exact because a running transaction
/// is always within 2^31 of it (one that got its id at or after `xmax` is beyond the horizon
/// anyway). Sessions are listed with their `backend_xid` for the role that runs them, so every
/// cmdb-server instance on the database must connect as the same role (or one granted
/// `pg_read_all_stats`).
async fn feed_horizon(pool: &sqlx::AnyPool) -> Result<i64, ServiceError> {
    let xmax: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetch_one(pool).await?;
    let oldest_running: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(CASE WHEN behind < 2147483648 THEN $1 - behind ELSE $1 END) FROM ( \
           SELECT ((($1 - backend_xid::text::bigint) % 4294967296) + 4294967296) % 4294967296 AS behind \
           FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL) AS running",
    )
    .bind(xmax)
    .fetch_one(pool)
    .await?;
    // Stored txids carry the offset a restore set (store::insert_changes); so does the horizon.
    let offset: i64 = sqlx::query_scalar(store::FEED_TXID_OFFSET_QUERY).fetch_one(pool).await?;
    Ok(oldest_running.map_or(xmax, |oldest| oldest.min(xmax)) + offset)
}

/// What the change log shows.
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    /// Recorded in this span.
    pub span: Span,
    /// An asset id, or a host name (every asset that has it: renamed or retired ones included).
    pub asset: Option<String>,
    /// Section.
    pub section: Option<String>,
    /// Any of these actions (none: every action).
    pub actions: Vec<cmdb_model::Action>,
    /// agent, ssh, salt, legacy, `user` (any person) or `user:<name>`.
    pub source: Option<String>,
    /// Only records with a smaller id (the next page).
    pub before: Option<i64>,
}

/// An action filter's values as actions (blank ones ignored); the error names the value that is
/// not one, for the edge to answer in its own form.
pub fn parse_actions<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<cmdb_model::Action>, String> {
    values
        .into_iter()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| cmdb_model::Action::parse(a).ok_or_else(|| format!("action {a:?} is not added, removed or changed")))
        .collect()
}

/// The most assets a host-name part matches (a filter that matches more is too vague to read).
const MATCHED_ASSETS: i64 = 500;

/// The assets an asset filter names: an id, or (see [`assets_named`]) every asset whose current
/// or former host name contains the text. The change log and the change feed read it alike.
pub async fn assets_matching(db: &Db, text: &str) -> Result<Vec<i64>, ServiceError> {
    let text = text.trim();
    match text.parse::<i64>() {
        Ok(id) => Ok(vec![id]),
        Err(_) => assets_named(db, text).await,
    }
}

/// Assets whose host name contains `text` (ignoring ASCII case) now or did before (a former name
/// is in the history as the old value of `basic` `/hostname`).
async fn assets_named(db: &Db, text: &str) -> Result<Vec<i64>, ServiceError> {
    let pattern = format!("%{}%", crate::store::sql::like_escaped(text));
    let rows = sqlx::query(
        "SELECT id FROM assets WHERE LOWER(hostname) LIKE LOWER($1) ESCAPE '\\' \
         UNION SELECT asset_id FROM changes WHERE section = 'basic' AND path = '/hostname' \
         AND LOWER(old_value) LIKE LOWER($1) ESCAPE '\\' LIMIT $2",
    )
    .bind(pattern)
    .bind(MATCHED_ASSETS)
    .fetch_all(db.reader())
    .await?;
    let mut ids: Vec<i64> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// One line of the change log: a change and its asset's current host name.
#[derive(Debug)]
pub struct LoggedChange {
    /// The change.
    pub record: ChangeRecord,
    /// The asset's host name now.
    pub hostname: String,
}

/// One page of the change log, newest first, with each asset's host name (a JOIN, not a query per
/// row), at most `limit` lines.
pub async fn change_log(db: &Db, filter: &ChangeFilter, limit: i64) -> Result<Vec<LoggedChange>, ServiceError> {
    // Resolve a host name first: the asset index then drives the scan of changes. No such host
    // matches nothing; several (renamed, retired, partial) match any of them.
    let assets = match filter.asset.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(asset) => Some(assets_matching(db, asset).await?),
        None => None,
    };
    let section = filter.section.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let filters = shared_conditions(filter.span, assets, section, &filter.actions);
    let sources: Option<Vec<String>> = match filter.source.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some("user") => Some(people(db).await?),
        Some(source) => Some(vec![source.to_owned()]),
        None => None,
    };
    let q = log_query(&filters, sources.as_deref(), filter.before.unwrap_or(i64::MAX), limit);
    let rows = q.query().fetch_all(db.reader()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(LoggedChange { record: store::change_row(row)?, hostname: row.try_get(14)? });
    }
    Ok(out)
}

/// Every `user:<name>` source in the history. People's edits are a small share of all changes. A
/// range over `source` cannot be read in id order, which would sort every edit ever made; instead
/// each person's edits are read newest first from the (source, id) index and the lists merged, in
/// one query. The distinct sources are few (agent, ssh, salt, legacy, one per person): walk them
/// with one index seek each (a loose index scan), whatever the collation, and keep the people's.
async fn people(db: &Db) -> Result<Vec<String>, ServiceError> {
    let names = sqlx::query(
        "WITH RECURSIVE s(source) AS (SELECT MIN(source) FROM changes \
         UNION ALL SELECT (SELECT MIN(c.source) FROM changes c WHERE c.source > s.source) FROM s \
         WHERE s.source IS NOT NULL) SELECT source FROM s WHERE source IS NOT NULL",
    )
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(|r| r.try_get::<String, _>(0))
    .collect::<Result<Vec<_>, _>>()?;
    Ok(names.into_iter().filter(|source| source.starts_with("user:")).collect())
}

/// The filters the change log and the change feed share (the source aside: the log reads
/// people's edits from an index, the feed by prefix), on `changes` aliased `c`.
fn shared_conditions(
    span: Span,
    assets: Option<Vec<i64>>,
    section: Option<&str>,
    actions: &[cmdb_model::Action],
) -> Vec<Condition> {
    let mut out = Vec::new();
    if let Some(from) = span.from {
        out.push(Condition::Is(" AND c.recorded_at >= ", from.timestamp_micros().into()));
    }
    if let Some(to) = span.to {
        out.push(Condition::Is(" AND c.recorded_at <= ", to.timestamp_micros().into()));
    }
    if let Some(ids) = assets {
        out.push(Condition::In(" AND c.asset_id IN ", ids.into_iter().map(Param::from).collect()));
    }
    if let Some(section) = section {
        out.push(Condition::Is(" AND c.section = ", section.into()));
    }
    if !actions.is_empty() {
        out.push(Condition::In(" AND c.action IN ", actions.iter().map(|a| a.as_str().into()).collect()));
    }
    out
}

/// One condition of the change log or feed, written into its query (each arm of the log's).
enum Condition {
    /// `text` then one bound value (`" AND c.section = "`).
    Is(&'static str, Param),
    /// `text` then a bound list (`" AND c.asset_id IN "`); an empty list matches nothing.
    In(&'static str, Vec<Param>),
}

impl Condition {
    fn push_to(&self, q: &mut Sql) {
        match self {
            Condition::Is(text, value) => {
                q.push(text).bind(value.clone());
            }
            Condition::In(_, values) if values.is_empty() => {
                q.push(" AND 1 = 0");
            }
            Condition::In(text, values) => {
                q.push(text).bind_list(values.iter().cloned());
            }
        }
    }
}

/// One page of changes, newest first, with each asset's host name. With `sources`, one indexed
/// arm per source, merged by UNION ALL.
fn log_query(filters: &[Condition], sources: Option<&[String]>, before: i64, limit: i64) -> Sql {
    let inner: Vec<String> = CHANGE_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
    let outer: Vec<String> = CHANGE_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect();
    let mut q = Sql::new(format!("SELECT {}, a.hostname FROM (", outer.join(", ")));
    let arm = |q: &mut Sql, source: Option<&str>, index: usize| {
        q.push(&format!("SELECT * FROM (SELECT {} FROM changes c WHERE c.id < ", inner.join(", ")));
        q.bind(before);
        if let Some(source) = source {
            q.push(" AND c.source = ").bind(source);
        }
        for condition in filters {
            condition.push_to(q);
        }
        q.push(" ORDER BY c.id DESC LIMIT ").bind(limit);
        q.push(&format!(") s{index}"));
    };
    match sources {
        None => arm(&mut q, None, 0),
        Some([]) => {
            arm(&mut q, None, 0);
            q.push(" WHERE 1 = 0");
        }
        Some(list) => {
            for (index, source) in list.iter().enumerate() {
                if index > 0 {
                    q.push(" UNION ALL ");
                }
                arm(&mut q, Some(source), index);
            }
        }
    }
    q.push(") u JOIN assets a ON a.id = u.asset_id ORDER BY u.id DESC LIMIT ").bind(limit);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse() {
        assert_eq!(parse_cursor("12-34").ok(), Some((12, 34)));
        assert!(parse_cursor("x").is_err());
        assert!(parse_cursor("1-x").is_err());
    }
}

/// A row of a timeline or the change log as a person reads it: one change, or an asset's whole
/// first report (dozens of "added" records) as one row that expands.
#[derive(Debug, Serialize)]
pub struct Grouped<T> {
    /// For an asset's first report: what it brought (`first seen with 2 disks, 16 DIMMs, 3 NICs`).
    pub first_seen: Option<String>,
    /// The changes of the row, in page order.
    pub items: Vec<T>,
}

impl<T> Grouped<T> {
    /// The same row with each change turned into `f`'s form (a page's line).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Grouped<U> {
        Grouped { first_seen: self.first_seen, items: self.items.into_iter().map(f).collect() }
    }
}

/// How each of `asset_ids` was first recorded: the time and report of its first change (one
/// query), so a page can tell which of its records belong to an asset's first report.
pub async fn first_reports(
    db: &Db,
    asset_ids: &[i64],
) -> Result<HashMap<i64, (DateTime<Utc>, Option<String>)>, ServiceError> {
    let mut ids: Vec<i64> = asset_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut firsts = HashMap::new();
    if ids.is_empty() {
        return Ok(firsts);
    }
    let mut q = Sql::new(
        "SELECT c.asset_id, c.recorded_at, c.report_id FROM changes c WHERE c.id IN \
         (SELECT MIN(id) FROM changes WHERE asset_id IN ",
    );
    q.bind_list(ids.iter().copied());
    q.push(" GROUP BY asset_id)");
    for row in q.query().fetch_all(db.reader()).await? {
        firsts.insert(row.try_get(0)?, (crate::db::from_us(row.try_get(1)?), row.try_get(2)?));
    }
    Ok(firsts)
}

/// `items` (in page order) grouped for reading: the records of an asset's first report (same
/// asset, time and report as its first change, see [`first_reports`]) that follow each other
/// become one row; every other record is a row of its own.
pub fn group_first_reports<T>(
    items: Vec<T>,
    record: impl Fn(&T) -> &ChangeRecord,
    firsts: &HashMap<i64, (DateTime<Utc>, Option<String>)>,
) -> Vec<Grouped<T>> {
    let is_first = |r: &ChangeRecord| {
        firsts.get(&r.asset_id).is_some_and(|(at, report)| *at == r.recorded_at && *report == r.report_id)
    };
    let mut out: Vec<Grouped<T>> = Vec::new();
    for item in items {
        let r = record(&item);
        let joins = is_first(r)
            && out.last().is_some_and(|g| {
                g.first_seen.is_some() && g.items.first().is_some_and(|f| record(f).asset_id == r.asset_id)
            });
        if joins {
            if let Some(group) = out.last_mut() {
                group.items.push(item);
            }
        } else {
            let first_seen = is_first(r).then(String::new);
            out.push(Grouped { first_seen, items: vec![item] });
        }
    }
    for group in &mut out {
        if group.first_seen.is_some() {
            group.first_seen = Some(first_seen_sentence(group.items.iter().map(&record)));
        }
    }
    out
}

/// What a first report brought, counted by component (`first seen with 2 disks, 16 DIMMs, 3
/// NICs`), in the catalog's order of sections and then by name.
pub fn first_seen_sentence<'a>(records: impl Iterator<Item = &'a ChangeRecord>) -> String {
    let mut counts: std::collections::BTreeMap<(usize, String), usize> = std::collections::BTreeMap::new();
    let mut fields = 0;
    for r in records {
        match &r.component {
            Some(_) if r.path.is_empty() && r.action == cmdb_model::Action::Added => {
                let order =
                    cmdb_model::catalog::SECTIONS.iter().position(|s| s.name == r.section).unwrap_or(usize::MAX);
                *counts.entry((order, r.section.clone())).or_default() += 1;
            }
            _ => fields += 1,
        }
    }
    let parts: Vec<String> =
        counts.iter().map(|((_, section), n)| cmdb_model::catalog::count_of(section, *n)).collect();
    match (parts.is_empty(), fields) {
        (true, 1) => "first seen (1 field)".to_owned(),
        (true, n) => format!("first seen ({n} fields)"),
        (false, _) => format!("first seen with {}", parts.join(", ")),
    }
}
