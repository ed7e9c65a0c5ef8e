//! The migration step SQL cannot do: hash chains for change records written before chains
//! existed (migration 0009). SQLite has no SHA-256, and one implementation
//! ([`cmdb_model::chain`]) must compute every hash, so it runs in Rust, right after the SQL
//! migrations, before the database is used.
//!
//! Resumable: assets are done in id order, a chunk per transaction, and the last asset done is
//! kept in `settings.chain_backfill` (`done` once every asset is), so an interrupted `migrate`
//! goes on where it stopped. An asset's records are hashed in one transaction, so a chain is never
//! half computed. On PostgreSQL an advisory lock makes instances that start together wait for the
//! one doing it.

use cmdb_model::chain::{ChainedRecord, record_hash};
use sqlx::{AnyConnection, Row};

use super::{Backend, Db};

/// Assets per transaction.
const CHUNK: i64 = 200;
/// Rows per UPDATE statement (three bound values each).
const UPDATE_CHUNK: usize = 300;
/// The advisory lock key of the backfill (PostgreSQL).
const LOCK_KEY: i64 = 0x636d_6462_6368_6e31; // "cmdbchn1"
/// The progress row in `settings`.
const PROGRESS: &str = "chain_backfill";

/// Computes the missing chains; returns the records hashed.
pub(super) async fn run(db: &Db) -> Result<u64, sqlx::Error> {
    if progress(db.writer()).await?.as_deref() == Some("done") {
        return Ok(0);
    }
    // Session-level lock, so it is held on one connection across the chunks' transactions.
    let mut lock = match db.backend() {
        Backend::Postgres => {
            let mut conn = db.writer().acquire().await?;
            sqlx::query("SELECT pg_advisory_lock($1)").bind(LOCK_KEY).execute(&mut *conn).await?;
            Some(conn)
        }
        Backend::Sqlite => None,
    };
    let result = backfill(db).await;
    if let Some(conn) = lock.as_mut() {
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK_KEY).execute(&mut **conn).await?;
    }
    result
}

/// Forgets the progress and computes every missing chain from the first asset (see
/// [`Db::complete_chains`]).
pub(super) async fn rerun(db: &Db) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM settings WHERE name = $1").bind(PROGRESS).execute(db.writer()).await?;
    run(db).await
}

async fn progress(pool: &sqlx::AnyPool) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT value FROM settings WHERE name = $1").bind(PROGRESS).fetch_optional(pool).await?;
    row.map(|row| row.try_get(0)).transpose()
}

async fn backfill(db: &Db) -> Result<u64, sqlx::Error> {
    // Reread under the lock: another instance may have finished meanwhile.
    let mut after = match progress(db.writer()).await?.as_deref() {
        Some("done") => return Ok(0),
        Some(last) => last.parse::<i64>().unwrap_or(i64::MIN),
        None => i64::MIN,
    };
    let mut hashed = 0u64;
    loop {
        let mut tx = db.begin_write().await?;
        let ids: Vec<i64> = sqlx::query("SELECT id FROM assets WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(CHUNK)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let Some(&last) = ids.last() else {
            save_progress(&mut tx, "done").await?;
            tx.commit().await?;
            if hashed > 0 {
                tracing::info!(records = hashed, "change chains computed for the existing history");
            }
            return Ok(hashed);
        };
        hashed += hash_chunk(&mut tx, ids[0], last).await?;
        save_progress(&mut tx, &last.to_string()).await?;
        tx.commit().await?;
        after = last;
        if hashed > 0 {
            tracing::info!(records = hashed, through_asset = last, "computing change chains");
        }
    }
}

async fn save_progress(conn: &mut AnyConnection, value: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(PROGRESS)
    .bind(value.to_owned())
    .execute(&mut *conn)
    .await
    .map(drop)
}

/// Hashes the unhashed records of assets `first..=last`.
async fn hash_chunk(conn: &mut AnyConnection, first: i64, last: i64) -> Result<u64, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, asset_id, recorded_at, collected_at, report_id, source, section, component, path, action, \
         old_value, new_value, hash FROM changes WHERE asset_id >= $1 AND asset_id <= $2 ORDER BY asset_id, id",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&mut *conn)
    .await?;
    // (id, hash, previous hash) of every record that has no hash yet.
    let mut updates: Vec<(i64, String, Option<String>)> = Vec::new();
    let mut chain: Option<(i64, Option<String>)> = None;
    for row in &rows {
        let (id, asset_id): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let previous = match chain.take() {
            Some((asset, head)) if asset == asset_id => head,
            _ => None,
        };
        let stored: Option<String> = row.try_get(12)?;
        let hash = match stored {
            Some(hash) => hash,
            None => {
                let (report_id, source, section): (Option<String>, String, String) =
                    (row.try_get(4)?, row.try_get(5)?, row.try_get(6)?);
                let (component, path, action): (Option<String>, String, String) =
                    (row.try_get(7)?, row.try_get(8)?, row.try_get(9)?);
                let (old, new): (Option<String>, Option<String>) = (row.try_get(10)?, row.try_get(11)?);
                let record = ChainedRecord {
                    id,
                    asset_id,
                    recorded_at: row.try_get(2)?,
                    collected_at: row.try_get(3)?,
                    report_id: report_id.as_deref(),
                    source: &source,
                    section: &section,
                    component: component.as_deref(),
                    path: &path,
                    action: &action,
                    old_value: old.as_deref(),
                    new_value: new.as_deref(),
                };
                let hash = record_hash(&record, previous.as_deref());
                updates.push((id, hash.clone(), previous));
                hash
            }
        };
        chain = Some((asset_id, Some(hash)));
    }
    for chunk in updates.chunks(UPDATE_CHUNK) {
        // UPDATE ... FROM (VALUES ...): one statement per chunk on both backends (SQLite >= 3.33);
        // a VALUES list's columns are column1.. in both.
        let mut sql = String::from("UPDATE changes SET hash = v.column2, prev_hash = v.column3 FROM (VALUES ");
        for n in 0..chunk.len() {
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${}, ${})", 3 * n + 1, 3 * n + 2, 3 * n + 3));
        }
        sql.push_str(") AS v WHERE changes.id = v.column1");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, hash, previous) in chunk {
            q = q.bind(*id).bind(hash.clone()).bind(previous.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(updates.len() as u64)
}
