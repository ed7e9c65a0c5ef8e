//! Failed-login throttling with exponential backoff, per user name and per client address.
//!
//! The counters live in the database (`login_throttle`), so several server instances behind one
//! load balancer share them and a restart does not reset them. A scope may fail a few times freely;
//! after that each further failure blocks the scope for twice as long as the one before, up to
//! [`MAX_BLOCK_SECS`]. Failures older than [`RESET_AFTER_SECS`] are forgotten. While a scope is
//! blocked, the password is not even checked, so guessing costs the attacker time, not the server.

use sqlx::Row;

use crate::db::Db;

/// Failures a user name may have before it is slowed down.
pub const FREE_FAILURES_USER: i64 = 5;
/// Failures one client address may have (across user names) before it is slowed down. Higher than
/// per user because many people may share one NAT address.
pub const FREE_FAILURES_IP: i64 = 20;
/// The longest block, in seconds.
pub const MAX_BLOCK_SECS: i64 = 15 * 60;
/// A scope's count starts over after this long without failures.
pub const RESET_AFTER_SECS: i64 = 60 * 60;

const SECOND: i64 = 1_000_000;

/// A throttled scope: `user:<name>` or `ip:<address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    key: String,
    free: i64,
}

impl Scope {
    /// The scope of a user name.
    pub fn user(name: &str) -> Scope {
        Scope { key: format!("user:{name}"), free: FREE_FAILURES_USER }
    }

    /// The scope of a client address.
    pub fn ip(address: &str) -> Scope {
        Scope { key: format!("ip:{address}"), free: FREE_FAILURES_IP }
    }
}

/// How long a scope with `failures` consecutive failures is blocked, in seconds (0: not blocked).
pub fn block_secs(failures: i64, free: i64) -> i64 {
    if failures <= free {
        return 0;
    }
    let exponent = (failures - free - 1).min(20);
    (1_i64 << exponent).min(MAX_BLOCK_SECS)
}

/// Seconds until the most blocked of `scopes` may try again; 0 when none is blocked.
pub async fn blocked_for(db: &Db, scopes: &[Scope], now: i64) -> Result<i64, sqlx::Error> {
    let mut longest = 0;
    for scope in scopes {
        let row = sqlx::query("SELECT blocked_until FROM login_throttle WHERE scope = $1")
            .bind(scope.key.clone())
            .fetch_optional(db.reader())
            .await?;
        if let Some(row) = row {
            let until: i64 = row.try_get(0)?;
            longest = longest.max(until - now);
        }
    }
    // Round up so "try again in 0 s" is never shown while still blocked.
    Ok((longest + SECOND - 1) / SECOND)
}

/// Counts a failed login against every scope; returns the longest block it caused, in seconds.
pub async fn fail(db: &Db, scopes: &[Scope], now: i64) -> Result<i64, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let mut longest = 0;
    for scope in scopes {
        let row = sqlx::query(
            "INSERT INTO login_throttle (scope, failures, last_failure_at, blocked_until) VALUES ($1, 1, $2, 0) \
             ON CONFLICT (scope) DO UPDATE SET \
             failures = CASE WHEN login_throttle.last_failure_at < $3 THEN 1 ELSE login_throttle.failures + 1 END, \
             last_failure_at = $2 \
             RETURNING failures",
        )
        .bind(scope.key.clone())
        .bind(now)
        .bind(now - RESET_AFTER_SECS * SECOND)
        .fetch_one(&mut *tx)
        .await?;
        let failures: i64 = row.try_get(0)?;
        let secs = block_secs(failures, scope.free);
        longest = longest.max(secs);
        sqlx::query("UPDATE login_throttle SET blocked_until = $2 WHERE scope = $1")
            .bind(scope.key.clone())
            .bind(if secs > 0 { now + secs * SECOND } else { 0 })
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(longest)
}

/// Forgets the failures of `scope` (after a successful login).
pub async fn clear(db: &Db, scope: &Scope) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_throttle WHERE scope = $1").bind(scope.key.clone()).execute(db.writer()).await?;
    Ok(())
}

/// Deletes rows whose failures are old enough to be forgotten anyway.
pub async fn prune(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM login_throttle WHERE last_failure_at < $1 AND blocked_until < $2")
        .bind(now - RESET_AFTER_SECS * SECOND)
        .bind(now)
        .execute(db.writer())
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_after_the_free_failures_and_is_capped() {
        assert_eq!(block_secs(5, 5), 0);
        assert_eq!(block_secs(6, 5), 1);
        assert_eq!(block_secs(7, 5), 2);
        assert_eq!(block_secs(10, 5), 16);
        assert_eq!(block_secs(30, 5), MAX_BLOCK_SECS);
        assert_eq!(block_secs(i64::MAX / 2, 5), MAX_BLOCK_SECS);
    }
}
