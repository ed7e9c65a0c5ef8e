//! The audit log of logins, failed logins, user, agent-key and token changes, and exports.
//! Skeleton: the table arrives with the users migration.

use crate::db::Db;

/// Records one audited action by `actor` (a user or token name).
pub async fn record(db: &Db, actor: &str, action: &str, detail: &str) -> Result<(), sqlx::Error> {
    let _ = (db, actor, action, detail);
    Ok(())
}
