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
    let mut q = Sql::new("SELECT id, at, actor, action, detail, client_ip FROM audit_log WHERE id < ");
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
            })
        })
        .collect()
}
