//! The audit log: who logged in (or failed to), who changed users, agent keys and tokens, and who
//! exported what. Admins read it in the UI (`/admin/audit`).
//!
//! Entries never hold a password, token or secret: callers pass names, ids and roles only. A failed
//! login records the user name only when such a user exists, because people sometimes type their
//! password into the name field.

use serde::Serialize;
use sqlx::Row;

use crate::db::{Db, from_us, now_us};
use crate::store::sql::Sql;

/// Records one audited action by `actor` (a user or token name).
pub async fn record(db: &Db, actor: &str, action: &str, detail: &str) -> Result<(), sqlx::Error> {
    record_from(db, actor, action, detail, None).await
}

/// Records one audited action with the client address it came from.
pub async fn record_from(
    db: &Db,
    actor: &str,
    action: &str,
    detail: &str,
    client_ip: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, detail, client_ip) VALUES ($1, $2, $3, $4, $5)")
        .bind(now_us())
        .bind(actor.to_owned())
        .bind(action.to_owned())
        .bind(detail.to_owned())
        .bind(client_ip.map(str::to_owned))
        .execute(db.writer())
        .await?;
    tracing::info!(target: "cmdb::audit", actor, action, detail, client_ip, "audit");
    Ok(())
}

/// Repeats of one unauthenticated event are folded into one row per this window (µs).
pub const REPEAT_WINDOW_US: i64 = 10 * 60 * 1_000_000;
/// At most this many rows of repeated events per window; beyond it, every further repeat is
/// folded into one row per action (actor and address `*`), whatever its actor and address.
pub const REPEAT_ROWS_PER_WINDOW: i64 = 1000;

/// The PostgreSQL advisory lock that serializes [`record_repeated`] ("cmdbaudt").
const REPEAT_LOCK: i64 = 0x636d_6462_6175_6474;

/// Records an event that unauthenticated traffic can cause (failed and throttled logins): a
/// repeat of the same action by the same actor from the same address within the window adds to
/// that row's `repeats` instead of adding a row, so the log grows by a small bounded number of
/// rows per window whatever the request rate.
pub async fn record_repeated(
    db: &Db,
    actor: &str,
    action: &str,
    detail: &str,
    client_ip: Option<&str>,
) -> Result<(), sqlx::Error> {
    let now = now_us();
    let window_start = now - now.rem_euclid(REPEAT_WINDOW_US);
    let mut tx = db.begin_write().await?;
    if db.backend() == crate::db::Backend::Postgres {
        // Parallel repeats must find each other's row, not each insert one: serialize them (on
        // SQLite `BEGIN IMMEDIATE` already does). Their rate is bounded by login throttling.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(REPEAT_LOCK).execute(&mut *tx).await?;
    }
    let bump = |actor: String, address: Option<String>| {
        sqlx::query(
            "UPDATE audit_log SET repeats = repeats + 1, last_at = $1 WHERE id = (SELECT MAX(id) FROM audit_log              WHERE action = $2 AND actor = $3 AND COALESCE(client_ip, '') = COALESCE($4, '') AND at >= $5 AND last_at IS NOT NULL)",
        )
        .bind(now)
        .bind(action.to_owned())
        .bind(actor)
        .bind(address)
        .bind(window_start)
    };
    let mut done = bump(actor.to_owned(), client_ip.map(str::to_owned)).execute(&mut *tx).await?.rows_affected();
    let (mut row_actor, mut row_address) = (actor.to_owned(), client_ip.map(str::to_owned));
    if done == 0 {
        let rows: i64 = sqlx::query("SELECT COUNT(*) FROM audit_log WHERE at >= $1 AND last_at IS NOT NULL")
            .bind(window_start)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if rows >= REPEAT_ROWS_PER_WINDOW {
            (row_actor, row_address) = ("*".to_owned(), Some("*".to_owned()));
            done = bump(row_actor.clone(), row_address.clone()).execute(&mut *tx).await?.rows_affected();
        }
    }
    if done == 0 {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, detail, client_ip, repeats, last_at) VALUES ($1, $2, $3, $4, $5, 1, $1)",
        )
        .bind(now)
        .bind(row_actor)
        .bind(action.to_owned())
        .bind(detail.to_owned())
        .bind(row_address)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(target: "cmdb::audit", actor, action, detail, client_ip, "audit");
    Ok(())
}

/// One audit entry.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who (user or token name, `cli`, or `-` for an unknown user).
    pub actor: String,
    /// What: `login`, `login_failed`, `logout`, `user.create`, `token.revoke`, `export.csv`, ...
    pub action: String,
    /// Names and ids the action concerned.
    pub detail: String,
    /// The client's address, when known.
    pub client_ip: Option<String>,
    /// How many times it happened (repeated unauthenticated events share one entry per window).
    pub repeats: i64,
    /// The last repeat, when there were several.
    pub last_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Filters of the audit log.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only actions starting with this (e.g. `login`, `token.`).
    pub action: Option<String>,
    /// Only entries at or after (Unix µs).
    #[serde(skip)]
    pub from: Option<i64>,
    /// Only entries before (Unix µs).
    #[serde(skip)]
    pub to: Option<i64>,
    /// Only entries with a smaller id (paging).
    pub before: Option<i64>,
}

/// Entries matching `query`, newest first, at most `limit`.
pub async fn list(db: &Db, query: &AuditQuery, limit: i64) -> Result<Vec<Entry>, sqlx::Error> {
    let mut q =
        Sql::new("SELECT id, at, actor, action, detail, client_ip, repeats, last_at FROM audit_log WHERE id < ");
    q.bind(query.before.unwrap_or(i64::MAX));
    if let Some(actor) = query.actor.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        q.push(" AND actor = ").bind(actor);
    }
    if let Some(action) = query.action.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        // A prefix range instead of LIKE: no wildcard escaping, and it can use the index.
        q.push(" AND action >= ").bind(action).push(" AND action < ").bind(format!("{action}\u{10FFFF}"));
    }
    if let Some(from) = query.from {
        q.push(" AND at >= ").bind(from);
    }
    if let Some(to) = query.to {
        q.push(" AND at < ").bind(to);
    }
    q.push(" ORDER BY id DESC LIMIT ").bind(limit);
    let rows = q.query().fetch_all(db.reader()).await?;
    rows.iter()
        .map(|row| {
            Ok(Entry {
                id: row.try_get(0)?,
                at: from_us(row.try_get(1)?),
                actor: row.try_get(2)?,
                action: row.try_get(3)?,
                detail: row.try_get(4)?,
                client_ip: row.try_get(5)?,
                repeats: row.try_get(6)?,
                last_at: row
                    .try_get::<Option<i64>, _>(7)?
                    .filter(|_| row.try_get::<i64, _>(6).unwrap_or(1) > 1)
                    .map(from_us),
            })
        })
        .collect()
}
