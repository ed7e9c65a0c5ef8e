//! Stocktakes: the year-end physical count (盘点). A stocktake freezes, when it opens, the assets a
//! list filter selects (not retired, not deleted) with what the record said about each; people
//! scan codes (asset tag, board serial or host name) and each sighting is answered at once:
//! verified (where the record says), moved (elsewhere), unexpected (not in the list, or no asset at
//! all), already seen. Closing freezes it, with the collection evidence (an agent report recorded
//! since it opened) kept beside the physical outcome, never counted as verified.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cmdb_model::identity::normalize_serial;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::Row;

use crate::db::{Db, from_us, now_us};
use crate::service::ServiceError;
use crate::service::assets::{CUSTOM_PREFIX, ListQuery};

/// What a sighting found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An expected asset, where the record says.
    Verified,
    /// An expected asset, somewhere else than the record says.
    Moved,
    /// An asset that is not in the stocktake's list.
    Unexpected,
    /// A code that matches no asset.
    Unknown,
    /// An asset seen before in this stocktake (counted once).
    AlreadySeen,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::Moved => "moved",
            Outcome::Unexpected => "unexpected",
            Outcome::Unknown => "unknown",
            Outcome::AlreadySeen => "already_seen",
        }
    }

    fn parse(text: &str) -> Option<Outcome> {
        [Outcome::Verified, Outcome::Moved, Outcome::Unexpected, Outcome::Unknown, Outcome::AlreadySeen]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// What `POST /api/v1/stocktakes` takes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStocktake {
    /// A name people recognise (`BJ-1 2026 year end`).
    pub name: String,
    /// Any asset-list filter (`{"idc": "bj-1"}`, `{"custom.supplier": "Acme"}`); empty: every asset.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub scope: Map<String, Value>,
}

/// What `POST /api/v1/stocktakes/{id}/sightings` takes: a scanned code and where it was seen.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sighting {
    /// Asset tag, board serial or host name.
    pub code: String,
    /// Where it was seen (compared with the record when given).
    #[serde(default)]
    pub idc: Option<String>,
    /// The cabinet it was seen in.
    #[serde(default)]
    pub cabinet: Option<String>,
    /// The rack unit.
    #[serde(default)]
    pub cabinet_u: Option<i64>,
    /// A free note.
    #[serde(default)]
    pub note: Option<String>,
}

/// The answer to one sighting.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SightingOutcome {
    /// What it found.
    #[schema(value_type = String)]
    pub outcome: Outcome,
    /// The asset, when the code matched one.
    pub asset_id: Option<i64>,
    /// Its host name.
    pub hostname: Option<String>,
    /// For `moved`: what the record says, field by field (`cabinet: A01 (seen in A07)`).
    pub differences: Vec<String>,
    /// The stocktake's counts after it.
    pub counts: Counts,
}

/// A stocktake's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Counts {
    /// Assets in the frozen list.
    pub expected: i64,
    /// Expected assets seen where the record says.
    pub verified: i64,
    /// Expected assets seen elsewhere.
    pub moved: i64,
    /// Expected assets not seen.
    pub missing: i64,
    /// Sightings of assets outside the list, and codes that match no asset.
    pub unexpected: i64,
    /// Missing assets an agent reported since the stocktake opened (frozen at close; evidence of
    /// existence, never counted as verified).
    pub seen_by_collection_only: i64,
}

/// One expected asset with what became of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Item {
    /// The asset.
    pub asset_id: i64,
    /// Host name when the stocktake opened.
    pub hostname: String,
    /// Asset tag then.
    pub asset_tag: Option<String>,
    /// Board serial then.
    pub serial: Option<String>,
    /// IDC then.
    pub idc: Option<String>,
    /// Cabinet then.
    pub cabinet: Option<String>,
    /// Rack unit then.
    pub cabinet_u: Option<i64>,
    /// verified, moved or missing.
    pub status: String,
    /// Reported by an agent since the stocktake opened (known at close).
    pub reported: bool,
}

/// One recorded sighting.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SightingRecord {
    /// The code scanned.
    pub code: String,
    /// The asset it found.
    pub asset_id: Option<i64>,
    /// That asset's host name.
    pub hostname: Option<String>,
    /// Where it was seen.
    pub idc: Option<String>,
    /// The cabinet.
    pub cabinet: Option<String>,
    /// The rack unit.
    pub cabinet_u: Option<i64>,
    /// The note.
    pub note: Option<String>,
    /// What it found.
    pub outcome: String,
    /// When.
    pub seen_at: DateTime<Utc>,
    /// Who.
    pub seen_by: String,
}

/// A stocktake with its counts, its items and its sightings.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Stocktake {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The list filter it froze.
    #[schema(value_type = Object)]
    pub scope: Map<String, Value>,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
    /// Who opened it (`user:<name>`).
    pub opened_by: String,
    /// When it closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// Who closed it.
    pub closed_by: Option<String>,
    /// The counts.
    pub counts: Counts,
    /// Every expected asset (empty in lists).
    pub items: Vec<Item>,
    /// Every sighting, oldest first (empty in lists).
    pub sightings: Vec<SightingRecord>,
}

/// The list filter of a scope: the list's named filters and `custom.<key>`; anything else is a 422.
fn scope_query(scope: &Map<String, Value>) -> Result<ListQuery, ServiceError> {
    const NAMED: &[&str] = &["q", "status", "asset_tag", "idc", "business_unit", "tag", "os", "manufacturer", "owner"];
    let mut pairs = Vec::new();
    for (key, value) in scope {
        if !NAMED.contains(&key.as_str()) && !key.starts_with(CUSTOM_PREFIX) {
            return Err(ServiceError::invalid(
                format!("/scope/{key}"),
                format!("not a list filter; use {} or custom.<key>", NAMED.join(", ")),
            ));
        }
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(ServiceError::invalid(format!("/scope/{key}"), "a filter value is a string")),
        };
        pairs.push((key.clone(), text));
    }
    ListQuery::from_query(Some(&serde_urlencoded::to_string(&pairs).unwrap_or_default()))
}

/// Opens a stocktake: the assets `scope` selects now, not retired, are its expected list.
pub async fn open(db: &Db, new: NewStocktake, actor: &str) -> Result<Stocktake, ServiceError> {
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("/name", "a name of 1 to 200 bytes without control characters"));
    }
    let query = scope_query(&new.scope)?;
    let items: Vec<_> = crate::service::export::list_items(db, &query)
        .await?
        .into_iter()
        .filter(|item| item.status != "retired")
        .collect();
    let scope = serde_json::to_string(&new.scope).map_err(|e| ServiceError::Bug(e.to_string()))?;
    let mut tx = db.begin_write().await?;
    let id: i64 =
        sqlx::query("INSERT INTO stocktakes (name, scope, opened_at, opened_by) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(name)
            .bind(scope)
            .bind(now_us())
            .bind(actor.to_owned())
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
    for chunk in items.chunks(500) {
        let mut q = crate::store::sql::Sql::new(
            "INSERT INTO stocktake_items (stocktake_id, asset_id, hostname, asset_tag, serial, idc, cabinet, cabinet_u)",
        );
        q.values(chunk, |row, item| {
            row.bind(id)
                .bind(item.id)
                .bind(item.hostname.clone())
                .bind(item.asset_tag.clone())
                .bind(item.serial.clone())
                .bind(item.idc.clone())
                .bind(item.cabinet.clone())
                .bind(item.cabinet_u);
        });
        q.query().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    tracing::info!(stocktake = id, expected = items.len(), actor, "stocktake opened");
    get(db, id).await
}

const STOCKTAKE_COLUMNS: &str = "id, name, scope, opened_at, opened_by, closed_at, closed_by";

fn decode(row: &sqlx::any::AnyRow) -> Result<Stocktake, ServiceError> {
    let scope: String = row.try_get(2)?;
    Ok(Stocktake {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        scope: match serde_json::from_str(&scope) {
            Ok(Value::Object(map)) => map,
            _ => return Err(ServiceError::Corrupt("a stocktake's scope is not a JSON object".to_owned())),
        },
        opened_at: from_us(row.try_get(3)?),
        opened_by: row.try_get(4)?,
        closed_at: row.try_get::<Option<i64>, _>(5)?.map(from_us),
        closed_by: row.try_get(6)?,
        counts: Counts::default(),
        items: Vec::new(),
        sightings: Vec::new(),
    })
}

/// Every stocktake with its counts, newest first (items and sightings left out). Three queries,
/// however many stocktakes there are.
pub async fn list(db: &Db) -> Result<Vec<Stocktake>, ServiceError> {
    let mut conn = db.reader().acquire().await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {STOCKTAKE_COLUMNS} FROM stocktakes ORDER BY id DESC")))
        .fetch_all(&mut *conn)
        .await?;
    let mut out = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    fill(&mut conn, &mut out).await?;
    for stocktake in &mut out {
        stocktake.items.clear();
        stocktake.sightings.clear();
    }
    Ok(out)
}

/// One stocktake with its counts, items and sightings; 404 when there is none.
pub async fn get(db: &Db, id: i64) -> Result<Stocktake, ServiceError> {
    let mut conn = db.reader().acquire().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {STOCKTAKE_COLUMNS} FROM stocktakes WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no stocktake {id}")))?;
    let mut one = [decode(&row)?];
    fill(&mut conn, &mut one).await?;
    let [stocktake] = one;
    Ok(stocktake)
}

/// Reads the sightings and items of `stocktakes` (one query each) and computes their counts: the
/// first sighting of an expected asset decides whether it is verified or moved.
async fn fill(conn: &mut sqlx::AnyConnection, stocktakes: &mut [Stocktake]) -> Result<(), ServiceError> {
    let ids: Vec<i64> = stocktakes.iter().map(|s| s.id).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let position: BTreeMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for chunk in ids.chunks(500) {
        let mut q = crate::store::sql::Sql::new(
            "SELECT stocktake_id, code, asset_id, hostname, idc, cabinet, cabinet_u, note, outcome, seen_at, seen_by \
             FROM stocktake_sightings WHERE stocktake_id IN ",
        );
        q.bind_list(chunk.iter().copied());
        q.push(" ORDER BY id");
        for row in q.query().fetch_all(&mut *conn).await? {
            let at = position[&row.try_get::<i64, _>(0)?];
            stocktakes[at].sightings.push(SightingRecord {
                code: row.try_get(1)?,
                asset_id: row.try_get(2)?,
                hostname: row.try_get(3)?,
                idc: row.try_get(4)?,
                cabinet: row.try_get(5)?,
                cabinet_u: row.try_get(6)?,
                note: row.try_get(7)?,
                outcome: row.try_get(8)?,
                seen_at: from_us(row.try_get(9)?),
                seen_by: row.try_get(10)?,
            });
        }
        let mut q = crate::store::sql::Sql::new(
            "SELECT stocktake_id, asset_id, hostname, asset_tag, serial, idc, cabinet, cabinet_u, reported \
             FROM stocktake_items WHERE stocktake_id IN ",
        );
        q.bind_list(chunk.iter().copied());
        q.push(" ORDER BY stocktake_id, cabinet, cabinet_u, hostname, asset_id");
        for row in q.query().fetch_all(&mut *conn).await? {
            let at = position[&row.try_get::<i64, _>(0)?];
            stocktakes[at].items.push(Item {
                asset_id: row.try_get(1)?,
                hostname: row.try_get(2)?,
                asset_tag: row.try_get(3)?,
                serial: row.try_get(4)?,
                idc: row.try_get(5)?,
                cabinet: row.try_get(6)?,
                cabinet_u: row.try_get(7)?,
                status: String::new(),
                reported: row.try_get::<i64, _>(8)? != 0,
            });
        }
    }
    for stocktake in stocktakes.iter_mut() {
        let mut status: BTreeMap<i64, Outcome> = BTreeMap::new();
        for s in &stocktake.sightings {
            if let (Some(asset), Some(outcome)) = (s.asset_id, Outcome::parse(&s.outcome))
                && matches!(outcome, Outcome::Verified | Outcome::Moved)
            {
                status.entry(asset).or_insert(outcome);
            }
        }
        let mut counts = Counts::default();
        for item in &mut stocktake.items {
            item.status = match status.get(&item.asset_id) {
                Some(Outcome::Verified) => {
                    counts.verified += 1;
                    "verified"
                }
                Some(_) => {
                    counts.moved += 1;
                    "moved"
                }
                None => {
                    counts.missing += 1;
                    if item.reported {
                        counts.seen_by_collection_only += 1;
                    }
                    "missing"
                }
            }
            .to_owned();
        }
        counts.expected = stocktake.items.len() as i64;
        counts.unexpected = stocktake
            .sightings
            .iter()
            .filter(|s| s.outcome == Outcome::Unexpected.as_str() || s.outcome == Outcome::Unknown.as_str())
            .count() as i64;
        stocktake.counts = counts;
    }
    Ok(())
}

/// The asset `code` names: an asset tag, then a board serial, then a host name, among records not
/// deleted; a merged record's code finds the one it was merged into.
async fn find(conn: &mut sqlx::AnyConnection, code: &str) -> Result<Option<(i64, String)>, ServiceError> {
    let serial = normalize_serial(code);
    for (column, value) in
        [("asset_tag", Some(code.to_owned())), ("board_sn", serial), ("hostname", Some(code.to_owned()))]
    {
        let Some(value) = value else { continue };
        let sql = format!(
            "SELECT id, hostname, merged_into, deleted_at FROM assets WHERE {column} = $1 \
             ORDER BY deleted_at IS NOT NULL, id LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_optional(&mut *conn).await?;
        let Some(row) = row else { continue };
        let (id, hostname, merged_into, deleted): (i64, String, Option<i64>, Option<i64>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        if let Some(survivor) = merged_into {
            let row = sqlx::query("SELECT id, hostname FROM assets WHERE id = $1")
                .bind(survivor)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = row {
                return Ok(Some((row.try_get(0)?, row.try_get(1)?)));
            }
        }
        if deleted.is_none() {
            return Ok(Some((id, hostname)));
        }
    }
    Ok(None)
}

fn clean(text: &Option<String>, max: usize) -> Option<String> {
    text.as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().filter(|c| !c.is_control()).take(max).collect())
}

/// Records a sighting and answers its outcome; 409 when the stocktake is closed.
pub async fn sight(db: &Db, id: i64, sighting: Sighting, actor: &str) -> Result<SightingOutcome, ServiceError> {
    let code = sighting.code.trim().to_owned();
    if code.is_empty() || code.len() > 253 || code.chars().any(char::is_control) {
        return Err(ServiceError::invalid("/code", "a code of 1 to 253 bytes without control characters"));
    }
    let (idc, cabinet, note) = (clean(&sighting.idc, 200), clean(&sighting.cabinet, 200), clean(&sighting.note, 1000));
    let mut tx = db.begin_write().await?;
    let closed: Option<i64> = sqlx::query("SELECT closed_at FROM stocktakes WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no stocktake {id}")))?
        .try_get(0)?;
    if closed.is_some() {
        return Err(ServiceError::Conflict(format!("stocktake {id} is closed; its report is final")));
    }
    let found = find(&mut tx, &code).await?;
    let mut differences = Vec::new();
    let outcome = match &found {
        None => Outcome::Unknown,
        Some((asset, _)) => {
            let item = sqlx::query(
                "SELECT idc, cabinet, cabinet_u FROM stocktake_items WHERE stocktake_id = $1 AND asset_id = $2",
            )
            .bind(id)
            .bind(*asset)
            .fetch_optional(&mut *tx)
            .await?;
            let seen = sqlx::query(
                "SELECT 1 FROM stocktake_sightings WHERE stocktake_id = $1 AND asset_id = $2 AND outcome IN ('verified', 'moved', 'unexpected')",
            )
            .bind(id)
            .bind(*asset)
            .fetch_optional(&mut *tx)
            .await?;
            match (item, seen) {
                (_, Some(_)) => Outcome::AlreadySeen,
                (None, None) => Outcome::Unexpected,
                (Some(_), None) => {
                    // Where the record says now (a location edited during the count counts).
                    let current = sqlx::query("SELECT idc, cabinet, cabinet_u FROM assets WHERE id = $1")
                        .bind(*asset)
                        .fetch_one(&mut *tx)
                        .await?;
                    let (r_idc, r_cabinet, r_u): (Option<String>, Option<String>, Option<i64>) =
                        (current.try_get(0)?, current.try_get(1)?, current.try_get(2)?);
                    let mut compare = |field: &str, record: Option<String>, seen: Option<String>| {
                        if let Some(seen) = seen
                            && record.as_deref() != Some(seen.as_str())
                        {
                            differences.push(format!(
                                "{field}: {} (seen in {seen})",
                                record.unwrap_or_else(|| "(none)".to_owned())
                            ));
                        }
                    };
                    compare("idc", r_idc, idc.clone());
                    compare("cabinet", r_cabinet, cabinet.clone());
                    compare("cabinet_u", r_u.map(|u| u.to_string()), sighting.cabinet_u.map(|u| u.to_string()));
                    if differences.is_empty() { Outcome::Verified } else { Outcome::Moved }
                }
            }
        }
    };
    sqlx::query(
        "INSERT INTO stocktake_sightings (stocktake_id, code, asset_id, hostname, idc, cabinet, cabinet_u, note, outcome, seen_at, seen_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(code)
    .bind(found.as_ref().map(|(a, _)| *a))
    .bind(found.as_ref().map(|(_, h)| h.clone()))
    .bind(idc)
    .bind(cabinet)
    .bind(sighting.cabinet_u)
    .bind(note)
    .bind(outcome.as_str())
    .bind(now_us())
    .bind(actor.to_owned())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let counts = get(db, id).await?.counts;
    Ok(SightingOutcome {
        outcome,
        asset_id: found.as_ref().map(|(a, _)| *a),
        hostname: found.map(|(_, h)| h),
        differences,
        counts,
    })
}

/// Closes a stocktake: only the person who opened it or an admin (`is_admin`); freezes the
/// collection evidence. 409 when it is closed already.
pub async fn close(db: &Db, id: i64, actor: &str, is_admin: bool) -> Result<Stocktake, ServiceError> {
    let mut tx = db.begin_write().await?;
    let row = sqlx::query("SELECT opened_by, opened_at, closed_at FROM stocktakes WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no stocktake {id}")))?;
    let (opened_by, opened_at, closed_at): (String, i64, Option<i64>) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    if closed_at.is_some() {
        return Err(ServiceError::Conflict(format!("stocktake {id} is closed already")));
    }
    if opened_by != actor && !is_admin {
        return Err(ServiceError::Forbidden(format!(
            "only {opened_by}, who opened it, or an admin closes stocktake {id}"
        )));
    }
    // Collection evidence: an agent's report recorded for the asset since the stocktake opened.
    sqlx::query(
        "UPDATE stocktake_items SET reported = 1 WHERE stocktake_id = $1 AND asset_id IN \
         (SELECT asset_id FROM reports WHERE received_at >= $2 AND asset_id IS NOT NULL)",
    )
    .bind(id)
    .bind(opened_at)
    .execute(&mut *tx)
    .await?;
    let now = now_us();
    sqlx::query("UPDATE stocktakes SET closed_at = $1, closed_by = $2 WHERE id = $3")
        .bind(now)
        .bind(actor.to_owned())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    // The webhook event, queued in the same transaction as the close.
    crate::store::outbox::insert(&crate::store::outbox::OutboxEvent {
        kind: crate::store::outbox::EventKind::StocktakeClosed,
        asset_id: 0,
        changes: None,
        payload: Some(serde_json::json!({
            "stocktake_id": id,
            "closed_by": actor,
            "closed_at": crate::db::from_us(now),
        })),
        now,
    })
    .query()
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    crate::store::outbox::wake();
    tracing::info!(stocktake = id, actor, "stocktake closed");
    get(db, id).await
}

/// Cabinets of the expected list with their progress (seen of expected), for the stocktake page.
pub fn progress_by_cabinet(stocktake: &Stocktake) -> Vec<(String, i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for item in &stocktake.items {
        let key = format!(
            "{} {}",
            item.idc.as_deref().unwrap_or("(no IDC)"),
            item.cabinet.as_deref().unwrap_or("(no cabinet)")
        );
        let entry = out.entry(key).or_default();
        entry.1 += 1;
        if item.status != "missing" {
            entry.0 += 1;
        }
    }
    out.into_iter().map(|(k, (seen, expected))| (k, seen, expected)).collect()
}
