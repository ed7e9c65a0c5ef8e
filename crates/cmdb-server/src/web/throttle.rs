//! Failed-login throttling: who may try a password now, decided and counted in one transaction.
//!
//! Policy:
//! - **(user, address)**: 5 failures are free; the 5th and each further one block that pair for
//!   twice as long as the one before (1 s, 2 s, ... up to [`MAX_BLOCK_SECS`]).
//! - **address**: 20 failures across user names are free (many people may share one NAT
//!   address), then the same backoff for that address.
//! - **user**: at most [`USER_FAILURES_PER_HOUR`] failures in a fixed hour, from anywhere; past
//!   that the user is refused, except from addresses the user logged in from in the last
//!   [`TRUSTED_ADDRESS_DAYS`] days, so nobody can lock `admin` out from outside.
//!
//! The check and the count are one step: [`admit`] refuses a blocked attempt, or counts the
//! attempt as a failure *before* the password is checked, in one write transaction (SQLite's
//! single writer; row locks on PostgreSQL). Parallel attempts therefore see each other: 60 at once
//! for one user and address get 5 password checks, not 35. A successful login takes its count back
//! ([`succeeded`]). A refused attempt runs no hash.
//!
//! The counters live in the database (`login_throttle`), so several instances behind one load
//! balancer share them and a restart does not reset them.

use sqlx::Row;

use crate::db::{Backend, Db};

/// Failures a (user, address) pair may have before it is slowed down.
pub const FREE_FAILURES_PAIR: i64 = 5;
/// Failures one client address may have (across user names) before it is slowed down.
pub const FREE_FAILURES_IP: i64 = 20;
/// Failures a user may have in an hour from addresses it has not logged in from.
pub const USER_FAILURES_PER_HOUR: i64 = 100;
/// Addresses a user logged in from within this many days are never blocked by the per-user cap.
pub const TRUSTED_ADDRESS_DAYS: i64 = 30;
/// The longest block, in seconds.
pub const MAX_BLOCK_SECS: i64 = 15 * 60;
/// A backoff scope's count starts over after this long without failures.
pub const RESET_AFTER_SECS: i64 = 60 * 60;

const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3600 * SECOND;

/// How long a backoff scope with `failures` consecutive failures is blocked, in seconds (0: not
/// blocked). The `free`-th failure is the first that blocks.
pub fn block_secs(failures: i64, free: i64) -> i64 {
    if failures < free {
        return 0;
    }
    let exponent = (failures - free).min(20);
    (1_i64 << exponent).min(MAX_BLOCK_SECS)
}

/// One login attempt: who, from where.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The normalized user name (or what was typed, when it is not a valid name).
    pub user: String,
    /// The user's id, when the name exists.
    pub user_id: Option<i64>,
    /// The client's address, when known.
    pub address: Option<String>,
}

impl Attempt {
    fn pair_scope(&self) -> String {
        format!("pair:{}|{}", self.user, self.address.as_deref().unwrap_or("-"))
    }

    fn ip_scope(&self) -> Option<String> {
        self.address.as_ref().map(|a| format!("ip:{a}"))
    }

    fn user_scope(&self) -> String {
        format!("user:{}", self.user)
    }
}

/// What [`admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check the password; the attempt is already counted as a failure.
    Allowed {
        /// Seconds this attempt blocks further ones if the password is wrong (0: none), for the
        /// message after a wrong password.
        blocks_for: i64,
    },
    /// Do not check anything; retry after this many seconds.
    Throttled {
        /// Seconds until an attempt may be admitted (at least 1).
        retry_after: i64,
    },
}

struct Counter {
    failures: i64,
    last_failure_at: i64,
    blocked_until: i64,
    window_start: i64,
}

async fn counters(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    scopes: &[String],
    now: i64,
) -> Result<Vec<Counter>, sqlx::Error> {
    let mut out = Vec::with_capacity(scopes.len());
    for scope in scopes {
        // The row exists first, so that on PostgreSQL `FOR UPDATE` has something to lock and two
        // parallel attempts queue on it instead of both reading "no failures".
        sqlx::query(
            "INSERT INTO login_throttle (scope, failures, last_failure_at, blocked_until, window_start) \
             VALUES ($1, 0, 0, 0, $2) ON CONFLICT (scope) DO NOTHING",
        )
        .bind(scope.clone())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let lock = if backend == Backend::Postgres { " FOR UPDATE" } else { "" };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT failures, last_failure_at, blocked_until, window_start FROM login_throttle WHERE scope = $1{lock}"
        )))
        .bind(scope.clone())
        .fetch_one(&mut *tx)
        .await?;
        out.push(Counter {
            failures: row.try_get(0)?,
            last_failure_at: row.try_get(1)?,
            blocked_until: row.try_get(2)?,
            window_start: row.try_get(3)?,
        });
    }
    Ok(out)
}

async fn store(tx: &mut sqlx::AnyConnection, scope: &str, counter: &Counter) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE login_throttle SET failures = $2, last_failure_at = $3, blocked_until = $4, window_start = $5 \
         WHERE scope = $1",
    )
    .bind(scope.to_owned())
    .bind(counter.failures)
    .bind(counter.last_failure_at)
    .bind(counter.blocked_until)
    .bind(counter.window_start)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// True when `attempt`'s address is one its user logged in from in the last 30 days.
async fn trusted_address(tx: &mut sqlx::AnyConnection, attempt: &Attempt, now: i64) -> Result<bool, sqlx::Error> {
    let (Some(user_id), Some(address)) = (attempt.user_id, attempt.address.as_ref()) else { return Ok(false) };
    let row = sqlx::query("SELECT last_login_at FROM login_addresses WHERE user_id = $1 AND address = $2")
        .bind(user_id)
        .bind(address.clone())
        .fetch_optional(&mut *tx)
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<i64, _>(0)? >= now - TRUSTED_ADDRESS_DAYS * 24 * HOUR,
        None => false,
    })
}

/// Decides whether `attempt` may check a password now and, if so, counts it as a failure in the
/// same transaction (see the module documentation).
pub async fn admit(db: &Db, attempt: &Attempt, now: i64) -> Result<Admission, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let backoff: Vec<(String, i64)> = std::iter::once((attempt.pair_scope(), FREE_FAILURES_PAIR))
        .chain(attempt.ip_scope().map(|scope| (scope, FREE_FAILURES_IP)))
        .collect();
    let mut scopes: Vec<String> = backoff.iter().map(|(scope, _)| scope.clone()).collect();
    scopes.push(attempt.user_scope());
    let mut counters = counters(&mut tx, db.backend(), &scopes, now).await?;
    let mut wait = counters.iter().take(backoff.len()).map(|c| c.blocked_until - now).max().unwrap_or(0);
    let user_counter = counters.last_mut();
    if let Some(user) = user_counter {
        if now - user.window_start >= HOUR {
            user.window_start = now;
            user.failures = 0;
        }
        if user.failures >= USER_FAILURES_PER_HOUR && !trusted_address(&mut tx, attempt, now).await? {
            wait = wait.max(user.window_start + HOUR - now);
        }
    }
    if wait > 0 {
        tx.commit().await?;
        return Ok(Admission::Throttled { retry_after: ((wait + SECOND - 1) / SECOND).max(1) });
    }
    let mut blocks_for = 0;
    for ((scope, free), counter) in backoff.iter().zip(counters.iter_mut()) {
        if counter.last_failure_at < now - RESET_AFTER_SECS * SECOND {
            counter.failures = 0;
        }
        counter.failures += 1;
        counter.last_failure_at = now;
        let secs = block_secs(counter.failures, *free);
        blocks_for = blocks_for.max(secs);
        counter.blocked_until = if secs > 0 { now + secs * SECOND } else { 0 };
        store(&mut tx, scope, counter).await?;
    }
    if let (Some(scope), Some(user)) = (scopes.last(), counters.last_mut()) {
        user.failures += 1;
        user.last_failure_at = now;
        store(&mut tx, scope, user).await?;
    }
    tx.commit().await?;
    Ok(Admission::Allowed { blocks_for })
}

/// A successful login: takes back the failure [`admit`] counted, clears the pair's backoff and
/// remembers the address as one the user logs in from.
pub async fn succeeded(db: &Db, attempt: &Attempt, user_id: i64, now: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM login_throttle WHERE scope = $1").bind(attempt.pair_scope()).execute(&mut *tx).await?;
    let mut scopes: Vec<(String, i64)> =
        attempt.ip_scope().map(|scope| (scope, FREE_FAILURES_IP)).into_iter().collect();
    scopes.push((attempt.user_scope(), USER_FAILURES_PER_HOUR));
    take_back(&mut tx, db.backend(), &scopes, now).await?;
    if let Some(address) = &attempt.address {
        sqlx::query(
            "INSERT INTO login_addresses (user_id, address, last_login_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, address) DO UPDATE SET last_login_at = $3",
        )
        .bind(user_id)
        .bind(address.clone())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// An admitted attempt whose password was never checked (no hashing slot was free): takes back
/// the failure [`admit`] counted, without touching anything else.
pub async fn succeeded_without_login(db: &Db, attempt: &Attempt, now: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let mut scopes = vec![(attempt.pair_scope(), FREE_FAILURES_PAIR)];
    scopes.extend(attempt.ip_scope().map(|scope| (scope, FREE_FAILURES_IP)));
    scopes.push((attempt.user_scope(), USER_FAILURES_PER_HOUR));
    take_back(&mut tx, db.backend(), &scopes, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Takes one counted failure back from each of `scopes` (scope, free failures), lifting a block
/// the remaining count no longer earns.
async fn take_back(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    scopes: &[(String, i64)],
    now: i64,
) -> Result<(), sqlx::Error> {
    let names: Vec<String> = scopes.iter().map(|(scope, _)| scope.clone()).collect();
    let counters = counters(tx, backend, &names, now).await?;
    for ((scope, free), counter) in scopes.iter().zip(counters) {
        let failures = (counter.failures - 1).max(0);
        let blocked_until = if block_secs(failures, *free) == 0 { 0 } else { counter.blocked_until };
        store(tx, scope, &Counter { failures, blocked_until, ..counter }).await?;
    }
    Ok(())
}

/// Deletes rows whose failures are old enough to be forgotten anyway, and login addresses past
/// their trust period.
pub async fn prune(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM login_throttle WHERE last_failure_at < $1 AND blocked_until < $2 AND window_start < $1",
    )
    .bind(now - RESET_AFTER_SECS * SECOND)
    .bind(now)
    .execute(db.writer())
    .await?;
    let addresses = sqlx::query("DELETE FROM login_addresses WHERE last_login_at < $1")
        .bind(now - TRUSTED_ADDRESS_DAYS * 24 * HOUR)
        .execute(db.writer())
        .await?;
    Ok(done.rows_affected() + addresses.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_the_last_free_failure_doubles_and_is_capped() {
        assert_eq!(block_secs(4, 5), 0);
        assert_eq!(block_secs(5, 5), 1);
        assert_eq!(block_secs(6, 5), 2);
        assert_eq!(block_secs(9, 5), 16);
        assert_eq!(block_secs(30, 5), MAX_BLOCK_SECS);
        assert_eq!(block_secs(i64::MAX / 2, 5), MAX_BLOCK_SECS);
    }
}
