//! The webhook outbox: the statements every write adds to its own batch, so an event is queued in
//! the same transaction as what it reports (committed together or not at all).
//!
//! An event becomes one `webhook_outbox` row per enabled endpoint subscribed to its kind, by an
//! `INSERT ... SELECT ... FROM webhook_endpoints`: no endpoint, no row, and no extra round trip
//! on SQLite (the batch is one query). The dispatcher (`crate::webhooks`) delivers the rows.

use cmdb_model::diff::ChangeOp;
use cmdb_model::state::IDENTITY_SECTION;
use serde_json::Value;

use super::sql::Sql;

/// What an event is about; admins subscribe an endpoint to some of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// A committed report or edit, with its change records.
    Change,
    /// A report's collection errors (or a collection target withheld).
    CollectionError,
    /// A stocktake was closed.
    StocktakeClosed,
    /// An asset was created, deleted, restored or merged.
    Asset,
}

impl EventKind {
    /// Every kind, in the order the API lists them.
    pub const ALL: [EventKind; 4] =
        [EventKind::Change, EventKind::CollectionError, EventKind::StocktakeClosed, EventKind::Asset];

    /// The name in the API, the payloads and the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Change => "change",
            EventKind::CollectionError => "collection_error",
            EventKind::StocktakeClosed => "stocktake_closed",
            EventKind::Asset => "asset",
        }
    }

    /// The kind named `text`.
    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// The `webhook_endpoints` column that subscribes an endpoint to this kind.
    pub fn column(self) -> &'static str {
        match self {
            EventKind::Change => "on_change",
            EventKind::CollectionError => "on_collection_error",
            EventKind::StocktakeClosed => "on_stocktake_closed",
            EventKind::Asset => "on_asset",
        }
    }
}

/// A SQL expression: how many enabled endpoints receive change or asset events. `chain_link`
/// reads it in the round trip it makes anyway, so a write queues nothing, and sends no statement,
/// when nobody listens.
pub const SUBSCRIBED_TO_CHANGES_SQL: &str =
    "(SELECT COUNT(*) FROM webhook_endpoints WHERE enabled = 1 AND (on_change = 1 OR on_asset = 1))";

/// Signalled after a write commits, so this process's dispatcher looks for new events at once
/// rather than at its next poll (which still finds what other instances wrote).
static COMMITTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Wakes this process's dispatcher: a write that may have queued events has committed.
pub fn wake() {
    COMMITTED.notify_one();
}

/// Resolves at the next [`wake`] (or at once, when one came since the last call).
pub async fn committed() {
    COMMITTED.notified().await;
}

/// A new idempotency id (the same for every endpoint and every attempt of the event); also the
/// nonce of the signed delivery, so it fits the nonce's alphabet and length.
fn new_event_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// One event to queue.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// Its kind.
    pub kind: EventKind,
    /// The asset it is about (0: none).
    pub asset_id: i64,
    /// The change records it carries (first and last id), for change and asset events.
    pub changes: Option<(i64, i64)>,
    /// Its data (other events), as JSON.
    pub payload: Option<Value>,
    /// When it was committed (Unix µs).
    pub now: i64,
}

/// The statement that queues `event`, under a new idempotency id, for every enabled endpoint
/// subscribed to its kind.
pub fn insert(event: &OutboxEvent) -> Sql {
    let mut q = Sql::new(
        "INSERT INTO webhook_outbox (endpoint_id, event_id, kind, asset_id, first_change_id, last_change_id, payload, created_at, next_attempt_at) SELECT id, ",
    );
    q.bind(new_event_id())
        .push(", ")
        .bind(event.kind.as_str())
        .push(", ")
        .bind(event.asset_id)
        .push(", CAST(")
        .bind(event.changes.map(|(first, _)| first))
        .push(" AS BIGINT), CAST(")
        .bind(event.changes.map(|(_, last)| last))
        .push(" AS BIGINT), CAST(")
        .bind(event.payload.as_ref().map(Value::to_string))
        .push(" AS TEXT), ")
        .bind(event.now)
        .push(", ")
        .bind(event.now)
        .push(" FROM webhook_endpoints WHERE enabled = 1 AND ")
        .push(event.kind.column())
        .push(" = 1 ORDER BY id");
    q
}

/// The payload of a `collection_error` event: the errors of one report (or of a collect target
/// withheld, without a report), each `{"section", "message"}`.
pub fn collection_error_payload(
    report_id: Option<&str>,
    hostname: &str,
    source: &str,
    collected_at: Option<chrono::DateTime<chrono::Utc>>,
    errors: &[(&str, &str)],
) -> Value {
    serde_json::json!({
        "report_id": report_id,
        "hostname": hostname,
        "source": source,
        "collected_at": collected_at,
        "errors": errors.iter().map(|(section, message)| serde_json::json!({"section": section, "message": message})).collect::<Vec<_>>(),
    })
}

/// What a write of `ops` did to its asset, as an `asset` event's action: `created` (the asset's
/// first records), `merged` (merged into another), `deleted` or `restored`; `None` for any other
/// write.
pub fn asset_action(first_records: bool, ops: &[ChangeOp]) -> Option<&'static str> {
    if first_records {
        return Some("created");
    }
    // The identity pseudo-section's fields: a path names one (`/deleted_at`), or the empty path
    // the whole section (added or removed at once).
    let touches = |field: &str, set: bool| {
        ops.iter().filter(|op| op.section == IDENTITY_SECTION && op.component.is_none()).any(|op| {
            let value = if set { &op.new } else { &op.old };
            let other = if set { &op.old } else { &op.new };
            if op.path == format!("/{field}") {
                value.is_some() && other.is_none()
            } else if op.path.is_empty() {
                let has = |v: &Option<Value>| v.as_ref().and_then(|v| v.get(field)).is_some();
                has(value) && !has(other)
            } else {
                false
            }
        })
    };
    if touches("merged_into", true) {
        Some("merged")
    } else if touches("deleted_at", true) {
        Some("deleted")
    } else if touches("deleted_at", false) {
        Some("restored")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdb_model::diff::Action;
    use serde_json::json;

    fn op(path: &str, old: Option<Value>, new: Option<Value>) -> ChangeOp {
        let action = match (&old, &new) {
            (None, _) => Action::Added,
            (_, None) => Action::Removed,
            _ => Action::Changed,
        };
        ChangeOp { section: IDENTITY_SECTION.to_owned(), component: None, path: path.to_owned(), action, old, new }
    }

    #[test]
    fn asset_actions_follow_the_identity_section() {
        assert_eq!(asset_action(true, &[]), Some("created"));
        assert_eq!(asset_action(false, &[op("/deleted_at", None, Some(json!("t")))]), Some("deleted"));
        assert_eq!(asset_action(false, &[op("", None, Some(json!({"deleted_at": "t"})))]), Some("deleted"));
        assert_eq!(
            asset_action(false, &[op("", None, Some(json!({"deleted_at": "t", "merged_into": 4})))]),
            Some("merged")
        );
        assert_eq!(asset_action(false, &[op("/deleted_at", Some(json!("t")), None)]), Some("restored"));
        let business = ChangeOp { section: "business".to_owned(), ..op("/owner", None, Some(json!("x"))) };
        assert_eq!(asset_action(false, &[business]), None);
    }

    #[test]
    fn kinds_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }
}
