//! The webhook dispatcher: delivers the events the writes queued in `webhook_outbox`
//! (`store::outbox`), at least once and in order per endpoint and asset.
//!
//! Each server instance runs one dispatcher (`app::serve` spawns it). It claims due rows with a
//! lease: the oldest undelivered row of each (endpoint, asset) and only that one, so at most one
//! delivery per endpoint and asset is in flight across every instance (PostgreSQL: the claim
//! takes the rows `FOR UPDATE SKIP LOCKED`, so instances sharing a database never claim one row
//! twice; SQLite has one instance and one writer). A killed instance's claims expire with their
//! lease and are claimed again, which is where duplicates come from: the receiver knows them by
//! the event's idempotency id (`Idempotency-Key`, also the signature's nonce).
//!
//! A delivery is a POST of the event's JSON, signed with the endpoint's secret exactly as agents
//! sign their requests (`cmdb_model::signing`), with the endpoint's id as the key id. A 2xx
//! answer delivers it; anything else (another status, a redirect, no answer in
//! `webhooks.timeout_secs`) is retried with exponential backoff until the event is
//! `webhooks.give_up_after_secs` old, when the endpoint is disabled. Every attempt is logged in
//! `webhook_deliveries`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sqlx::Row;
use tokio::task::JoinSet;

use crate::config::Webhooks;
use crate::db::{Backend, Db, from_us, now_us};
use crate::secrets::{SecretKey, webhook_secret_label};
use crate::store::outbox::EventKind;
use crate::store::sql::{Batch, Sql};
use crate::store::{CHANGE_COLUMNS, StoreError, change_row};

/// How long a claim outlives the delivery's timeout before another dispatcher may take the row.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The outbox rows (`o`) a dispatcher may claim at `$1`: pending, due, not held by a live lease,
/// for an enabled endpoint, and the oldest undelivered row of their (endpoint, asset), so an
/// asset's next event waits until the one before it is delivered.
const CLAIMABLE: &str = "o.state = 'pending' AND o.next_attempt_at <= $1 \
     AND (o.lease_until IS NULL OR o.lease_until < $1) \
     AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = o.endpoint_id AND e.enabled = 1) \
     AND NOT EXISTS (SELECT 1 FROM webhook_outbox p WHERE p.endpoint_id = o.endpoint_id \
     AND p.asset_id = o.asset_id AND p.state = 'pending' AND p.id < o.id)";

/// Longest error text kept in the delivery log.
const MAX_ERROR_LEN: usize = 500;

/// A claimed outbox row.
#[derive(Debug, Clone)]
struct Claimed {
    id: i64,
    endpoint_id: i64,
    event_id: String,
    kind: String,
    asset_id: i64,
    changes: Option<(i64, i64)>,
    payload: Option<String>,
    created_at: i64,
    attempts: i64,
}

/// Where an endpoint's events go, and the key they are signed with.
#[derive(Clone)]
struct Target {
    url: url::Url,
    secret: Arc<String>,
}

/// An attempt made, to record.
struct Finished {
    row: Claimed,
    attempt: Attempt,
    /// When it ended (Unix µs).
    at: i64,
    duration_us: i64,
}

/// What one attempt came to.
enum Attempt {
    /// The receiver answered this status.
    Answered(u16),
    /// No answer (or the event could not be built): why.
    Failed(String),
}

/// One instance's dispatcher.
struct Dispatcher {
    db: Db,
    config: Webhooks,
    key: Arc<SecretKey>,
    client: reqwest::Client,
    /// Endpoints never change once registered (only their `enabled`), so their URL and opened
    /// secret are kept.
    targets: Mutex<HashMap<i64, Target>>,
}

/// Starts this instance's dispatcher.
pub fn spawn(db: Db, config: Webhooks, key: Arc<SecretKey>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            // A redirect would send the signed event somewhere the admin did not register.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cmdb-server/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot build the webhook HTTP client; webhooks are not delivered");
                return;
            }
        };
        let dispatcher = Arc::new(Dispatcher { db, config, key, client, targets: Mutex::default() });
        dispatcher.run().await;
    })
}

impl Dispatcher {
    async fn run(self: Arc<Self>) {
        // Bounded so that one statement records every finished attempt (SQLite binds at most
        // 32,766 values).
        let max = self.config.max_in_flight.clamp(1, 1000);
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        let mut running: JoinSet<Finished> = JoinSet::new();
        // Attempts made and not recorded yet: recorded together, in the transaction that claims
        // the next events (on SQLite every write takes the one writer, which reports need).
        let mut finished: Vec<Finished> = Vec::new();
        loop {
            while let Some(done) = running.try_join_next() {
                // A panicked delivery is not recorded: its lease expires and it is sent again.
                if let Ok(done) = done {
                    finished.push(done);
                }
            }
            let room = max.saturating_sub(running.len());
            match self.settle_and_claim(&finished, room).await {
                Ok(rows) => {
                    finished.clear();
                    for row in rows {
                        let this = Arc::clone(&self);
                        running.spawn(async move { this.deliver(row).await });
                    }
                }
                Err(error) => {
                    // Kept and recorded later (or, should this instance die first, sent again
                    // when their leases expire: at least once).
                    tracing::warn!(%error, "cannot record or claim webhook events; will retry");
                    tokio::time::sleep(poll).await;
                    continue;
                }
            }
            // Until a delivery ends (its asset's next event may be due), a write commits here,
            // or the poll interval passes (writes by other instances, retries coming due).
            tokio::select! {
                done = running.join_next(), if !running.is_empty() => {
                    if let Some(Ok(done)) = done {
                        finished.push(done);
                    }
                }
                () = crate::store::outbox::committed() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Records `finished` attempts and claims up to `limit` due rows, each the oldest
    /// undelivered one of its (endpoint, asset), in one transaction.
    async fn settle_and_claim(&self, finished: &[Finished], limit: usize) -> Result<Vec<Claimed>, StoreError> {
        let now = now_us();
        let claim = limit > 0 && self.anything_due(now).await?;
        if finished.is_empty() && !claim {
            return Ok(Vec::new());
        }
        let mut batch = Batch::default();
        self.record(&mut batch, finished, now);
        let mut tx = self.db.begin_write().await?;
        batch.run(&mut tx, self.db.backend()).await?;
        let claimed = if claim { self.claim(&mut tx, now, limit).await? } else { Vec::new() };
        tx.commit().await?;
        Ok(claimed)
    }

    /// Whether any row is due, read first so that an idle dispatcher does not take SQLite's one
    /// writer every poll.
    async fn anything_due(&self, now: i64) -> Result<bool, sqlx::Error> {
        let due = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT 1 FROM webhook_outbox o WHERE {CLAIMABLE} LIMIT 1")))
            .bind(now)
            .fetch_optional(self.db.reader())
            .await?;
        Ok(due.is_some())
    }

    /// Claims up to `limit` due rows with a lease.
    async fn claim(&self, conn: &mut sqlx::AnyConnection, now: i64, limit: usize) -> Result<Vec<Claimed>, sqlx::Error> {
        let lease = Duration::from_secs(self.config.timeout_secs.max(1)) + LEASE_MARGIN;
        let lock = match self.db.backend() {
            Backend::Postgres => " FOR UPDATE OF o SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE webhook_outbox SET lease_until = $2 WHERE id IN (\
             SELECT o.id FROM webhook_outbox o WHERE {CLAIMABLE} ORDER BY o.id LIMIT $3{lock}) \
             RETURNING id, endpoint_id, event_id, kind, asset_id, first_change_id, last_change_id, payload, created_at, attempts"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(now + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                let first: Option<i64> = row.try_get(5)?;
                let last: Option<i64> = row.try_get(6)?;
                Ok(Claimed {
                    id: row.try_get(0)?,
                    endpoint_id: row.try_get(1)?,
                    event_id: row.try_get(2)?,
                    kind: row.try_get(3)?,
                    asset_id: row.try_get(4)?,
                    changes: first.zip(last),
                    payload: row.try_get(7)?,
                    created_at: row.try_get(8)?,
                    attempts: row.try_get(9)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        claimed.sort_by_key(|row| row.id);
        Ok(claimed)
    }

    /// Makes one attempt at `row`.
    async fn deliver(&self, row: Claimed) -> Finished {
        let started = Instant::now();
        let attempt = self.attempt(&row).await;
        let duration_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
        Finished { row, attempt, at: now_us(), duration_us }
    }

    async fn attempt(&self, row: &Claimed) -> Attempt {
        let target = match self.target(row.endpoint_id).await {
            Ok(target) => target,
            Err(error) => return Attempt::Failed(format!("cannot read the endpoint: {error}")),
        };
        let body = match self.body(row).await {
            Ok(body) => body,
            Err(error) => return Attempt::Failed(format!("cannot build the event: {error}")),
        };
        let path = match target.url.query() {
            Some(query) => format!("{}?{query}", target.url.path()),
            None => target.url.path().to_owned(),
        };
        let authorization = cmdb_model::signing::authorization(
            &row.endpoint_id.to_string(),
            &target.secret,
            "POST",
            &path,
            chrono::Utc::now().timestamp(),
            &row.event_id,
            &body,
        );
        let sent = self
            .client
            .post(target.url.clone())
            .header("authorization", authorization)
            .header("idempotency-key", &row.event_id)
            .header("content-type", "application/json")
            .header("x-cmdb-event", &row.kind)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => Attempt::Answered(response.status().as_u16()),
            // reqwest's error names the URL, never a header: no secret in the log.
            Err(error) => Attempt::Failed(error_chain(&error)),
        }
    }

    /// The endpoint's URL and opened secret.
    async fn target(&self, endpoint_id: i64) -> Result<Target, String> {
        if let Some(target) = self.targets.lock().ok().and_then(|targets| targets.get(&endpoint_id).cloned()) {
            return Ok(target);
        }
        let row = sqlx::query("SELECT url, secret_sealed FROM webhook_endpoints WHERE id = $1")
            .bind(endpoint_id)
            .fetch_optional(self.db.reader())
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("endpoint {endpoint_id} is gone"))?;
        let url: String = row.try_get(0).map_err(|e| e.to_string())?;
        let sealed: String = row.try_get(1).map_err(|e| e.to_string())?;
        let url = url::Url::parse(&url).map_err(|e| format!("the stored URL does not parse: {e}"))?;
        let secret = self.key.open(&webhook_secret_label(endpoint_id), &sealed).map_err(|e| e.to_string())?;
        let target = Target { url, secret: Arc::new(secret) };
        if let Ok(mut targets) = self.targets.lock() {
            targets.insert(endpoint_id, target.clone());
        }
        Ok(target)
    }

    /// The event's JSON: its id, kind, asset and time, its data, and for a change event the
    /// change records (as the change feed gives them), read back from the history they were
    /// committed with.
    async fn body(&self, row: &Claimed) -> Result<Vec<u8>, String> {
        let mut event = Map::new();
        event.insert("event_id".to_owned(), json!(row.event_id));
        event.insert("event".to_owned(), json!(row.kind));
        event.insert("asset_id".to_owned(), if row.asset_id == 0 { Value::Null } else { json!(row.asset_id) });
        event.insert("occurred_at".to_owned(), json!(from_us(row.created_at)));
        if let Some(payload) = &row.payload {
            match serde_json::from_str(payload) {
                Ok(Value::Object(fields)) => event.extend(fields),
                _ => return Err("a queued payload is not a JSON object".to_owned()),
            }
        }
        if let Some((first, last)) = row.changes {
            if row.kind == EventKind::Change.as_str() {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {CHANGE_COLUMNS} FROM changes WHERE asset_id = $1 AND id >= $2 AND id <= $3 ORDER BY id"
                )))
                .bind(row.asset_id)
                .bind(first)
                .bind(last)
                .fetch_all(self.db.reader())
                .await
                .map_err(|e| e.to_string())?;
                let changes = rows.iter().map(change_row).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
                event.insert("changes".to_owned(), serde_json::to_value(changes).map_err(|e| e.to_string())?);
            } else {
                event.insert("change_ids".to_owned(), json!({"first": first, "last": last}));
            }
        }
        serde_json::to_vec(&Value::Object(event)).map_err(|e| e.to_string())
    }

    /// Adds to `batch` what `finished` attempts came to: their lines in the delivery log, and each
    /// row delivered, retried later, or (past the give-up age) its endpoint disabled. Delivered
    /// rows and log lines go in one statement each (on PostgreSQL each statement is a round trip).
    fn record(&self, batch: &mut Batch, finished: &[Finished], now: i64) {
        let mut delivered = Vec::new();
        let mut lines = Vec::with_capacity(finished.len());
        for done in finished {
            let row = &done.row;
            let number = row.attempts + 1;
            let (status, error) = match &done.attempt {
                Attempt::Answered(status) if (200..300).contains(status) => (Some(i64::from(*status)), None),
                Attempt::Answered(status) => (Some(i64::from(*status)), Some(format!("answered HTTP {status}"))),
                Attempt::Failed(why) => (None, Some(why.chars().take(MAX_ERROR_LEN).collect::<String>())),
            };
            lines.push((done, number, status, error.clone()));
            let Some(why) = error else {
                delivered.push(row.id);
                continue;
            };
            let give_up_us = i64::try_from(self.config.give_up_after_secs).unwrap_or(i64::MAX / 2_000_000) * 1_000_000;
            let deadline = row.created_at.saturating_add(give_up_us);
            if done.at >= deadline {
                let reason = format!(
                    "gave up on event {} ({}) after {number} attempts over {} s: {why}",
                    row.event_id,
                    row.kind,
                    (done.at - row.created_at) / 1_000_000
                );
                tracing::warn!(endpoint = row.endpoint_id, %reason, "webhook endpoint disabled");
                let mut q = Sql::new("UPDATE webhook_endpoints SET enabled = 0, disabled_at = ");
                q.bind(done.at)
                    .push(", disabled_reason = ")
                    .bind(reason)
                    .push(" WHERE id = ")
                    .bind(row.endpoint_id)
                    .push(" AND enabled = 1");
                batch.push(q);
                // Nothing more goes to it: its queue is kept, counted as undelivered.
                let mut q = Sql::new(
                    "UPDATE webhook_outbox SET state = 'given_up', lease_until = NULL, attempts = CASE WHEN id = ",
                );
                q.bind(row.id)
                    .push(" THEN ")
                    .bind(number)
                    .push(" ELSE attempts END WHERE endpoint_id = ")
                    .bind(row.endpoint_id)
                    .push(" AND state = 'pending'");
                batch.push(q);
            } else {
                let next = (done.at + self.backoff_us(number)).min(deadline);
                tracing::debug!(endpoint = row.endpoint_id, event_id = %row.event_id, attempt = number, error = %why, "webhook delivery failed; will retry");
                let mut q = Sql::new("UPDATE webhook_outbox SET attempts = ");
                q.bind(number)
                    .push(", next_attempt_at = ")
                    .bind(next)
                    .push(", lease_until = NULL WHERE id = ")
                    .bind(row.id)
                    .push(" AND state = 'pending'");
                batch.push(q);
            }
        }
        if !delivered.is_empty() {
            let mut q = Sql::new("UPDATE webhook_outbox SET state = 'delivered', delivered_at = ");
            q.bind(now).push(", attempts = attempts + 1, lease_until = NULL WHERE id IN ").bind_list(delivered);
            batch.push(q);
        }
        if !lines.is_empty() {
            let mut log = Sql::new(
                "INSERT INTO webhook_deliveries (endpoint_id, event_id, kind, asset_id, attempt, at, status, error, duration_us)",
            );
            log.values(&lines, |values, (done, number, status, error)| {
                values
                    .bind(done.row.endpoint_id)
                    .bind(done.row.event_id.clone())
                    .bind(done.row.kind.clone())
                    .bind(done.row.asset_id)
                    .bind(*number)
                    .bind(done.at)
                    .bind(*status)
                    .bind(error.clone())
                    .bind(done.duration_us);
            });
            batch.push(log);
        }
    }

    /// The wait before attempt `attempts + 1`: `min_backoff_ms` doubled per failed attempt,
    /// at most `max_backoff_secs`.
    fn backoff_us(&self, attempts: i64) -> i64 {
        let min = self.config.min_backoff_ms.max(1).saturating_mul(1000);
        let max = self.config.max_backoff_secs.max(1).saturating_mul(1_000_000);
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 40)).unwrap_or(40);
        let wait = min.saturating_mul(1u64 << exponent.min(40)).min(max);
        i64::try_from(wait).unwrap_or(i64::MAX / 2)
    }
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
