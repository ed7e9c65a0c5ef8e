//! Deleting, restoring and merging asset records, each a change in history.
//!
//! Nothing here removes a row or moves a change: a delete sets `identity.deleted_at`, a restore
//! removes it, and a merge appends one change to each asset (an `alias:<id>` component on the
//! survivor, `merged_into` and `deleted_at` on the other), so the as-of view before any of them
//! shows the records as they were and `replay(history) == state` keeps holding.
//!
//! A deleted or merged record is off every list, count, duplicate and collection target (see
//! [`crate::service::assets::NOT_DELETED`]) and reports never land on it; a merged record's
//! identity keys become aliases of the survivor (`asset_aliases`), which identity matching reads,
//! so later reports from either machine record land on the survivor.

use chrono::{DateTime, Utc};
use cmdb_model::diff::{ChangeOp, diff_section};
use cmdb_model::state::{AssetState, IDENTITY_SECTION, SectionState};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::AnyConnection;

use crate::db::{Backend, Db, now_us};
use crate::service::ServiceError;
use crate::service::assets::{check_tag_free, hostname_holder, write_ops};
use crate::store::{self, AssetKeysRow};

/// How recently both records must have reported, with different board UUIDs, for a merge to be
/// refused: two machines that both report are two machines.
pub const MERGE_REFUSAL_DAYS: i64 = 7;

/// What a delete, restore or merge did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordOutcome {
    /// The asset acted on (the survivor of a merge).
    pub asset_id: i64,
    /// For a merge: the asset merged into it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged: Option<i64>,
    /// Change records written.
    pub changes: usize,
}

/// Locks and reads an asset for a record operation; 404 when there is none.
async fn lock(conn: &mut AnyConnection, backend: Backend, id: i64) -> Result<(AssetKeysRow, AssetState), ServiceError> {
    let row =
        store::lock_asset(conn, backend, id).await?.ok_or_else(|| ServiceError::NotFound(format!("no asset {id}")))?;
    let state = store::load_state(conn, id).await?;
    Ok((row, state))
}

/// The changes that turn the identity section into `next`. A section added for the first time is
/// added empty, then filled field by field, so each decision reads as its own sentence ("deleted
/// set to ...", "identity alias:7 added (...)").
fn identity_ops(state: &AssetState, next: &SectionState) -> Vec<ChangeOp> {
    let mut ops = Vec::new();
    let empty = SectionState::default();
    let current = match state.sections.get(IDENTITY_SECTION) {
        Some(current) => current,
        None => {
            diff_section(IDENTITY_SECTION, None, &empty, &mut ops);
            &empty
        }
    };
    diff_section(IDENTITY_SECTION, Some(current), next, &mut ops);
    ops
}

fn identity(state: &AssetState) -> SectionState {
    state.sections.get(IDENTITY_SECTION).cloned().unwrap_or_default()
}

fn stamp(at: DateTime<Utc>) -> Value {
    Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// Deletes asset `id` (a soft delete recorded in history); 409 when it is deleted already.
pub async fn delete(db: &Db, id: i64, source: &str) -> Result<RecordOutcome, ServiceError> {
    let mut tx = db.begin_write().await?;
    let (row, mut state) = lock(&mut tx, db.backend(), id).await?;
    if row.deleted {
        return Err(ServiceError::Conflict(format!("asset {id} is deleted already")));
    }
    let mut next = identity(&state);
    next.fields.insert("deleted_at".to_owned(), stamp(Utc::now()));
    let ops = identity_ops(&state, &next);
    write_ops(&mut tx, db.backend(), id, &mut state, &ops, source).await?;
    tx.commit().await?;
    crate::store::outbox::wake();
    tracing::info!(asset_id = id, source, "asset deleted");
    Ok(RecordOutcome { asset_id: id, merged: None, changes: ops.len() })
}

/// Restores deleted asset `id`; 409 when it is not deleted, was merged, or another asset now
/// holds its host name or asset tag (the answer names it).
pub async fn restore(db: &Db, id: i64, source: &str) -> Result<RecordOutcome, ServiceError> {
    let mut tx = db.begin_write().await?;
    let (row, mut state) = lock(&mut tx, db.backend(), id).await?;
    if !row.deleted {
        return Err(ServiceError::Conflict(format!("asset {id} is not deleted")));
    }
    if let Some(survivor) = state.field(IDENTITY_SECTION, "merged_into").and_then(Value::as_i64) {
        return Err(ServiceError::Conflict(format!(
            "asset {id} was merged into asset {survivor}; a merge is not undone by a restore"
        )));
    }
    if let Some(holder) = hostname_holder(&mut tx, &row.hostname, Some(id)).await? {
        return Err(ServiceError::Conflict(format!(
            "asset {holder} now has the host name {:?}; rename or delete it first",
            row.hostname
        )));
    }
    let tag = state.str_field(cmdb_model::state::BUSINESS_SECTION, "asset_tag").map(str::to_owned);
    check_tag_free(&mut tx, tag.as_deref(), Some(id)).await?;
    let mut next = identity(&state);
    next.fields.remove("deleted_at");
    let ops = identity_ops(&state, &next);
    write_ops(&mut tx, db.backend(), id, &mut state, &ops, source).await?;
    tx.commit().await?;
    crate::store::outbox::wake();
    tracing::info!(asset_id = id, source, "asset restored");
    Ok(RecordOutcome { asset_id: id, merged: None, changes: ops.len() })
}

/// The identity keys of `row` as an alias component of the survivor.
fn alias_component(row: &AssetKeysRow) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("asset_id".to_owned(), json!(row.id));
    out.insert("hostname".to_owned(), json!(row.hostname));
    for (key, value) in [
        ("board_uuid", &row.board_uuid),
        ("board_sn", &row.board_sn),
        ("board_manufacturer", &row.board_manufacturer),
        ("machine_id", &row.machine_id),
    ] {
        out.insert(key.to_owned(), value.as_ref().map_or(Value::Null, |v| json!(v)));
    }
    out
}

/// Merges asset `from` into asset `into` (both stay, with their histories): `into` takes
/// `from`'s identity keys as an alias (and the aliases `from` had), `from` is marked merged and
/// deleted. Refused (409) when either is deleted, or when both reported in the last
/// [`MERGE_REFUSAL_DAYS`] days with different board UUIDs.
pub async fn merge(db: &Db, into: i64, from: i64, source: &str) -> Result<RecordOutcome, ServiceError> {
    if into == from {
        return Err(ServiceError::invalid("/from", "an asset cannot be merged into itself"));
    }
    let mut tx = db.begin_write().await?;
    let backend = db.backend();
    // Lower id first, so two merges of the same pair in opposite directions cannot deadlock.
    let (first, second) = (into.min(from), into.max(from));
    let locked_first = lock(&mut tx, backend, first).await?;
    let locked_second = lock(&mut tx, backend, second).await?;
    let ((survivor, mut survivor_state), (other, mut other_state)) =
        if first == into { (locked_first, locked_second) } else { (locked_second, locked_first) };
    for row in [&survivor, &other] {
        if row.deleted {
            return Err(ServiceError::Conflict(format!("asset {} is deleted; restore it before merging", row.id)));
        }
    }
    let recent = now_us() - MERGE_REFUSAL_DAYS * 86_400_000_000;
    let reported = |row: &AssetKeysRow| row.last_seen_at.is_some_and(|t| t >= recent);
    if let (Some(a), Some(b)) = (&survivor.board_uuid, &other.board_uuid)
        && a != b
        && reported(&survivor)
        && reported(&other)
    {
        return Err(ServiceError::Conflict(format!(
            "assets {into} and {from} both reported in the last {MERGE_REFUSAL_DAYS} days with different board UUIDs \
             ({a} and {b}): they are two machines"
        )));
    }
    let now = Utc::now();
    // The survivor: an alias of the other, and of every record merged into the other before.
    let mut next = identity(&survivor_state);
    next.components.insert(format!("alias:{from}"), alias_component(&other));
    for (key, alias) in &identity(&other_state).components {
        next.components.insert(key.clone(), alias.clone());
    }
    let survivor_ops = identity_ops(&survivor_state, &next);
    // The other: merged (and so deleted).
    let mut gone = identity(&other_state);
    gone.fields.insert("merged_into".to_owned(), json!(into));
    gone.fields.insert("deleted_at".to_owned(), stamp(now));
    let other_ops = identity_ops(&other_state, &gone);
    write_ops(&mut tx, backend, into, &mut survivor_state, &survivor_ops, source).await?;
    write_ops(&mut tx, backend, from, &mut other_state, &other_ops, source).await?;
    tx.commit().await?;
    crate::store::outbox::wake();
    tracing::info!(into, from, source, "assets merged");
    Ok(RecordOutcome { asset_id: into, merged: Some(from), changes: survivor_ops.len() + other_ops.len() })
}
