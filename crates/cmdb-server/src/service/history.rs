//! Reading the history: one asset's changes (the timeline), the change log across assets with its
//! filters, and the change feed scripts follow with a cursor.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::db::{Backend, Db};
use crate::service::ServiceError;
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
    upto: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<ChangeRecord>, ServiceError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CHANGE_COLUMNS} FROM changes WHERE asset_id = $1 AND id < $2 AND recorded_at <= $3 \
         ORDER BY id DESC LIMIT $4"
    )))
    .bind(asset_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(upto.map_or(i64::MAX, |t| t.timestamp_micros()))
    .bind(limit)
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

/// Every change after cursor `after`, oldest first. A consumer that follows `next` never misses a
/// change: on PostgreSQL the feed only shows transactions older than the oldest one still writing
/// in this database (see [`feed_horizon`]), ordered by transaction id, so a late commit cannot land
/// behind a cursor; on SQLite commits are serialized, so ids are commit order. The price on
/// PostgreSQL: a long write transaction in the cmdb database delays (never drops) what the feed
/// shows until it ends.
pub async fn change_feed(db: &Db, after: Option<&str>, limit: i64) -> Result<ChangePage, ServiceError> {
    let (tx, id) = match after {
        Some(cursor) => parse_cursor(cursor)?,
        None => (-1, -1),
    };
    let horizon = match db.backend() {
        Backend::Postgres => Some(feed_horizon(db.reader()).await?),
        Backend::Sqlite => None,
    };
    let mut q = Sql::new(format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE (txid, id) > ("));
    q.bind(tx).push(", ").bind(id).push(")");
    if let Some(horizon) = horizon {
        q.push(" AND txid < ").bind(horizon);
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
    Ok(oldest_running.map_or(xmax, |oldest| oldest.min(xmax)))
}

/// What the change log shows.
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    /// Recorded at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Recorded at or before this instant.
    pub to: Option<DateTime<Utc>>,
    /// An asset id, or a host name (every asset that has it: renamed or retired ones included).
    pub asset: Option<String>,
    /// Section.
    pub section: Option<String>,
    /// added, removed or changed.
    pub action: Option<String>,
    /// agent, ssh, salt, legacy, `user` (any person) or `user:<name>`.
    pub source: Option<String>,
    /// Only records with a smaller id (the next page).
    pub before: Option<i64>,
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
    // The filters other than the source, on the changes table aliased `c`.
    let mut filters: Vec<(String, Param)> = Vec::new();
    if let Some(from) = filter.from {
        filters.push((" AND c.recorded_at >= ".to_owned(), from.timestamp_micros().into()));
    }
    if let Some(to) = filter.to {
        filters.push((" AND c.recorded_at <= ".to_owned(), to.timestamp_micros().into()));
    }
    if let Some(asset) = filter.asset.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        match asset.parse::<i64>() {
            Ok(id) => filters.push((" AND c.asset_id = ".to_owned(), id.into())),
            Err(_) => {
                // Resolve the name first: the asset index then drives the scan of changes.
                let ids: Vec<i64> = sqlx::query("SELECT id FROM assets WHERE hostname = $1")
                    .bind(asset.to_owned())
                    .fetch_all(db.reader())
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
                // No such host: a condition nothing meets; several (renamed, retired): any of them.
                if ids.is_empty() {
                    filters.push((" AND c.asset_id = ".to_owned(), Param::Int(None)));
                }
                for (index, id) in ids.iter().enumerate() {
                    let text = match (index, ids.len()) {
                        (0, 1) => " AND c.asset_id = ",
                        (0, _) => " AND (c.asset_id = ",
                        _ => " OR c.asset_id = ",
                    };
                    filters.push((text.to_owned(), (*id).into()));
                }
                if ids.len() > 1 {
                    filters.push((") AND 1 = ".to_owned(), 1_i64.into()));
                }
            }
        }
    }
    if let Some(section) = filter.section.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        filters.push((" AND c.section = ".to_owned(), section.into()));
    }
    if let Some(action) = filter.action.as_deref().filter(|a| !a.is_empty()) {
        filters.push((" AND c.action = ".to_owned(), action.into()));
    }
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

/// One page of changes, newest first, with each asset's host name. With `sources`, one indexed
/// arm per source, merged by UNION ALL.
fn log_query(filters: &[(String, Param)], sources: Option<&[String]>, before: i64, limit: i64) -> Sql {
    let inner: Vec<String> = CHANGE_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
    let outer: Vec<String> = CHANGE_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect();
    let mut q = Sql::new(format!("SELECT {}, a.hostname FROM (", outer.join(", ")));
    let arm = |q: &mut Sql, source: Option<&str>, index: usize| {
        q.push(&format!("SELECT * FROM (SELECT {} FROM changes c WHERE c.id < ", inner.join(", ")));
        q.bind(before);
        if let Some(source) = source {
            q.push(" AND c.source = ").bind(source);
        }
        for (text, value) in filters {
            q.push(text).bind(value.clone());
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
