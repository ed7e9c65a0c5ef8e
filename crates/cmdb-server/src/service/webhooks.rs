//! Webhook endpoints: registering, listing and deleting them (admins), their delivery log, and
//! the endpoints that gave up (the dashboard). The events are queued by the writes themselves
//! (`store::outbox`) and delivered by `crate::webhooks`.
//!
//! Only admins register URLs: the server POSTs to whatever address is registered, from inside
//! the network it runs in (SECURITY.md, server-side request forgery).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{Db, from_us, now_us};
use crate::secrets::{SecretKey, webhook_secret_label};
use crate::service::ServiceError;
use crate::store::outbox::EventKind;

/// Shortest secret accepted: the HMAC key must not be guessable.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest secret accepted.
pub const MAX_SECRET_LEN: usize = 512;
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// A new endpoint, as an admin registers it.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NewEndpoint {
    /// Where events are POSTed: an http or https URL with a host.
    pub url: String,
    /// The HMAC key deliveries are signed with (16 to 512 characters); stored sealed, never shown
    /// again.
    pub secret: String,
    /// The kinds of event to receive: `change`, `collection_error`, `stocktake_closed`, `asset`.
    pub events: Vec<String>,
}

impl std::fmt::Debug for NewEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint").field("url", &self.url).field("events", &self.events).finish_non_exhaustive()
    }
}

/// A registered endpoint (never with its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Endpoint {
    /// Its id: the `KeyId` of the deliveries' signature.
    pub id: i64,
    /// Where events are POSTed.
    pub url: String,
    /// The kinds of event it receives.
    pub events: Vec<String>,
    /// False once delivery gave up: nothing more is queued or sent to it.
    pub enabled: bool,
    /// When delivery gave up.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why delivery gave up.
    pub disabled_reason: Option<String>,
    /// Events queued and not delivered (yet, or ever: those of an endpoint that gave up).
    pub pending: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// Who registered it.
    pub created_by: String,
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The endpoint.
    pub endpoint_id: i64,
    /// The event's idempotency id.
    pub event_id: String,
    /// The event's kind.
    pub kind: String,
    /// The asset it is about (0: none).
    pub asset_id: i64,
    /// 1 for the first attempt of the event.
    pub attempt: i64,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status (none when no answer came).
    pub status: Option<i64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
}

/// Checks a new endpoint: the URL, the secret and the event kinds (deduplicated, in the API's
/// order).
fn validate(new: &NewEndpoint) -> Result<(url::Url, Vec<EventKind>), ServiceError> {
    let url = new.url.trim();
    if url.len() > MAX_URL_LEN {
        return Err(ServiceError::invalid("/url", format!("a URL has at most {MAX_URL_LEN} characters")));
    }
    let parsed = url::Url::parse(url).map_err(|e| ServiceError::invalid("/url", format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ServiceError::invalid("/url", "the URL must be http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ServiceError::invalid("/url", "the URL must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // It would be stored and shown in the clear; the secret is what authenticates.
        return Err(ServiceError::invalid("/url", "the URL must not hold a user name or password"));
    }
    if parsed.fragment().is_some() {
        return Err(ServiceError::invalid("/url", "the URL must not have a #fragment"));
    }
    let length = new.secret.chars().count();
    if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&length) {
        return Err(ServiceError::invalid(
            "/secret",
            format!("the secret needs {MIN_SECRET_LEN} to {MAX_SECRET_LEN} characters"),
        ));
    }
    if new.events.is_empty() {
        return Err(ServiceError::invalid("/events", "name at least one event kind"));
    }
    let mut kinds = Vec::new();
    for (index, name) in new.events.iter().enumerate() {
        let kind = EventKind::parse(name).ok_or_else(|| {
            ServiceError::invalid(
                format!("/events/{index}"),
                format!("unknown event kind {name:?}: change, collection_error, stocktake_closed or asset"),
            )
        })?;
        kinds.push(kind);
    }
    kinds.sort();
    kinds.dedup();
    Ok((parsed, kinds))
}

const ENDPOINT_COLUMNS: &str = "id, url, on_change, on_collection_error, on_stocktake_closed, on_asset, enabled, disabled_at, disabled_reason, created_at, created_by, \
     (SELECT COUNT(*) FROM webhook_outbox o WHERE o.endpoint_id = webhook_endpoints.id AND o.state <> 'delivered')";

fn endpoint_row(row: &sqlx::any::AnyRow) -> Result<Endpoint, sqlx::Error> {
    let mut events = Vec::new();
    for (at, kind) in EventKind::ALL.into_iter().enumerate() {
        if row.try_get::<i64, _>(2 + at)? == 1 {
            events.push(kind.as_str().to_owned());
        }
    }
    Ok(Endpoint {
        id: row.try_get(0)?,
        url: row.try_get(1)?,
        events,
        enabled: row.try_get::<i64, _>(6)? == 1,
        disabled_at: row.try_get::<Option<i64>, _>(7)?.map(from_us),
        disabled_reason: row.try_get(8)?,
        created_at: from_us(row.try_get(9)?),
        created_by: row.try_get(10)?,
        pending: row.try_get(11)?,
    })
}

/// Registers an endpoint; its secret is sealed under the key file.
pub async fn create(db: &Db, key: &SecretKey, new: &NewEndpoint, actor: &str) -> Result<Endpoint, ServiceError> {
    let (url, kinds) = validate(new)?;
    let on = |kind: EventKind| i64::from(kinds.contains(&kind));
    let mut tx = db.begin_write().await?;
    // The seal is bound to the id, which the insert assigns: sealed in a second statement.
    let id: i64 = sqlx::query(
        "INSERT INTO webhook_endpoints (url, secret_sealed, on_change, on_collection_error, on_stocktake_closed, on_asset, created_at, created_by) \
         VALUES ($1, '', $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(url.to_string())
    .bind(on(EventKind::Change))
    .bind(on(EventKind::CollectionError))
    .bind(on(EventKind::StocktakeClosed))
    .bind(on(EventKind::Asset))
    .bind(now_us())
    .bind(actor.to_owned())
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    sqlx::query("UPDATE webhook_endpoints SET secret_sealed = $1 WHERE id = $2")
        .bind(key.seal(&webhook_secret_label(id), &new.secret))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(endpoint = id, url = %url, "webhook endpoint registered");
    get(db, id).await
}

/// One endpoint.
pub async fn get(db: &Db, id: i64) -> Result<Endpoint, ServiceError> {
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1")))
            .bind(id)
            .fetch_optional(db.reader())
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no webhook endpoint {id}")))?;
    Ok(endpoint_row(&row)?)
}

/// Every endpoint, oldest first.
pub async fn list(db: &Db) -> Result<Vec<Endpoint>, ServiceError> {
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY id")))
            .fetch_all(db.reader())
            .await?;
    Ok(rows.iter().map(endpoint_row).collect::<Result<_, _>>()?)
}

/// The endpoints whose delivery gave up (for the admins' dashboard).
pub async fn given_up(db: &Db) -> Result<Vec<Endpoint>, ServiceError> {
    Ok(list(db).await?.into_iter().filter(|endpoint| !endpoint.enabled).collect())
}

/// Deletes an endpoint with its queued events and its delivery log; returns its URL.
pub async fn delete(db: &Db, id: i64) -> Result<String, ServiceError> {
    let mut tx = db.begin_write().await?;
    let url: String = sqlx::query("SELECT url FROM webhook_endpoints WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no webhook endpoint {id}")))?
        .try_get(0)?;
    // Its events and log lines (no foreign key ties them to it: see the migration).
    for table in ["webhook_outbox", "webhook_deliveries"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE endpoint_id = $1")))
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    tracing::info!(endpoint = id, "webhook endpoint deleted");
    Ok(url)
}

/// The latest delivery attempts (of one endpoint, or of all), newest first.
pub async fn deliveries(db: &Db, endpoint_id: Option<i64>, limit: i64) -> Result<Vec<Delivery>, ServiceError> {
    let rows = sqlx::query(
        "SELECT endpoint_id, event_id, kind, asset_id, attempt, at, status, error, duration_us FROM webhook_deliveries \
         WHERE ($1 = 0 OR endpoint_id = $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(endpoint_id.unwrap_or(0))
    .bind(limit.clamp(1, 1000))
    .fetch_all(db.reader())
    .await?;
    let decode = |row: &sqlx::any::AnyRow| -> Result<Delivery, sqlx::Error> {
        Ok(Delivery {
            endpoint_id: row.try_get(0)?,
            event_id: row.try_get(1)?,
            kind: row.try_get(2)?,
            asset_id: row.try_get(3)?,
            attempt: row.try_get(4)?,
            at: from_us(row.try_get(5)?),
            status: row.try_get(6)?,
            error: row.try_get(7)?,
            duration_ms: row.try_get::<i64, _>(8)? as f64 / 1000.0,
        })
    };
    Ok(rows.iter().map(decode).collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(url: &str, secret: &str, events: &[&str]) -> NewEndpoint {
        NewEndpoint {
            url: url.to_owned(),
            secret: secret.to_owned(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    fn field(result: Result<(url::Url, Vec<EventKind>), ServiceError>) -> String {
        match result {
            Err(ServiceError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn endpoints_are_checked() {
        let secret = "0123456789abcdef";
        let (url, kinds) =
            validate(&new("https://hooks.example/in?x=1", secret, &["asset", "change", "change"])).expect("valid");
        assert_eq!(url.as_str(), "https://hooks.example/in?x=1");
        assert_eq!(kinds, vec![EventKind::Change, EventKind::Asset]);
        assert_eq!(field(validate(&new("ftp://hooks.example/", secret, &["change"]))), "/url");
        assert_eq!(field(validate(&new("not a url", secret, &["change"]))), "/url");
        assert_eq!(field(validate(&new("http://u:p@hooks.example/", secret, &["change"]))), "/url");
        assert_eq!(field(validate(&new("http://hooks.example/", "short", &["change"]))), "/secret");
        assert_eq!(field(validate(&new("http://hooks.example/", secret, &[]))), "/events");
        assert_eq!(field(validate(&new("http://hooks.example/", secret, &["change", "nope"]))), "/events/1");
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let text = format!("{:?}", new("http://hooks.example/", "very-secret-value-here", &["change"]));
        assert!(!text.contains("very-secret"), "{text}");
    }
}
