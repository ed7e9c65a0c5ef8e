//! What people do with assets: register hosts by hand, edit business fields, list, search and read.
//!
//! Edits go through the same history as reports: a business edit is a `business` section change
//! whose source is `user:<name>`, written in one transaction with the state it produces.

use cmdb_model::business::{AssetStatus, BusinessFields};
use cmdb_model::diff::{ChangeOp, apply, diff_section};
use cmdb_model::state::{AssetState, BUSINESS_SECTION, HOST_SECTION, SectionState};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};

use std::collections::{BTreeMap, BTreeSet};

use crate::db::{Backend, Db, from_us, now_us};
use crate::service::ServiceError;
use crate::service::lists::{self, ListKind};
use crate::store::sql::{Batch, Sql};
use crate::store::summary::{AssetSummary, search_terms};
use crate::store::{self, ChangeContext};

/// One row of the asset list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssetListItem {
    /// Asset id.
    pub id: i64,
    /// Host name.
    pub hostname: String,
    /// Business status.
    pub status: String,
    /// Data centre.
    pub idc: Option<String>,
    /// Cabinet.
    pub cabinet: Option<String>,
    /// Business unit.
    pub business_unit: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Distribution.
    pub os_name: Option<String>,
    /// Distribution version.
    pub os_version: Option<String>,
    /// Board manufacturer.
    pub manufacturer: Option<String>,
    /// Board model.
    pub model: Option<String>,
    /// Board serial.
    pub serial: Option<String>,
    /// CPU model.
    pub cpu_model: Option<String>,
    /// Logical CPUs.
    pub cpu_count: Option<i64>,
    /// Memory (MiB).
    pub memory_mb: Option<i64>,
    /// Disk capacity (bytes).
    pub disk_bytes: Option<i64>,
    /// IP addresses.
    pub ip_addresses: Vec<String>,
    /// Address collectors connect to.
    pub manage_address: Option<String>,
    /// When the asset last reported.
    pub last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `collected_at` of the last applied report.
    pub last_collected_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the asset was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The columns [`list_item`] reads.
pub const LIST_COLUMNS: &str = "id, hostname, status, idc, cabinet, business_unit, owner, tags, os_name, os_version, manufacturer, model, serial, cpu_model, cpu_count, memory_mb, disk_bytes, ip_addresses, manage_address, last_seen_at, last_collected_at, created_at";

/// Decodes a row selected with [`LIST_COLUMNS`].
pub fn list_item(row: &sqlx::any::AnyRow) -> Result<AssetListItem, sqlx::Error> {
    let tags: String = row.try_get(7)?;
    let ips: String = row.try_get(17)?;
    Ok(AssetListItem {
        id: row.try_get(0)?,
        hostname: row.try_get(1)?,
        status: row.try_get(2)?,
        idc: row.try_get(3)?,
        cabinet: row.try_get(4)?,
        business_unit: row.try_get(5)?,
        owner: row.try_get(6)?,
        tags: tags.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
        os_name: row.try_get(8)?,
        os_version: row.try_get(9)?,
        manufacturer: row.try_get(10)?,
        model: row.try_get(11)?,
        serial: row.try_get(12)?,
        cpu_model: row.try_get(13)?,
        cpu_count: row.try_get(14)?,
        memory_mb: row.try_get(15)?,
        disk_bytes: row.try_get(16)?,
        ip_addresses: ips.split(' ').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
        manage_address: row.try_get(18)?,
        last_seen_at: row.try_get::<Option<i64>, _>(19)?.map(from_us),
        last_collected_at: row.try_get::<Option<i64>, _>(20)?.map(from_us),
        created_at: from_us(row.try_get(21)?),
    })
}

/// Filters of the asset list.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// Search: host name (or a part after - . _), IP, MAC, any serial, model.
    pub q: Option<String>,
    /// Status filter.
    pub status: Option<String>,
    /// IDC filter.
    pub idc: Option<String>,
    /// Business unit filter.
    pub business_unit: Option<String>,
    /// Tag filter.
    pub tag: Option<String>,
    /// OS name filter.
    pub os: Option<String>,
    /// Manufacturer filter.
    pub manufacturer: Option<String>,
    /// Owner filter.
    pub owner: Option<String>,
    /// Sort column, `-` prefix for descending.
    pub sort: Option<String>,
    /// Page, from 1.
    pub page: Option<u32>,
    /// Rows per page (max 500).
    pub per_page: Option<u32>,
}

/// One page of the asset list.
#[derive(Debug, Clone, Serialize)]
pub struct AssetPage {
    /// The rows.
    pub items: Vec<AssetListItem>,
    /// Rows matching the filters.
    pub total: i64,
    /// This page.
    pub page: u32,
    /// Page size.
    pub per_page: u32,
    /// For a list as of a time: the instant read, with its offset in the configured zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<crate::service::time::Stated>,
}

/// Columns the list sorts by (the live list, the as-of list and the exports alike).
const SORTABLE: &[&str] = &[
    "id",
    "hostname",
    "status",
    "idc",
    "business_unit",
    "owner",
    "os_name",
    "manufacturer",
    "model",
    "last_seen_at",
    "created_at",
    "cpu_count",
    "memory_mb",
];

/// Appends the WHERE clause for `query`'s filters.
pub fn push_filters(q: &mut Sql, query: &ListQuery) {
    q.push(" WHERE 1 = 1");
    if let Some(text) = query.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let low = text.to_lowercase();
        q.push(" AND id IN (SELECT asset_id FROM search_terms WHERE term >= ");
        q.bind(low.clone());
        q.push(" AND term < ");
        // Terms compare bytewise in both backends (COLLATE "C" on PostgreSQL): this is a prefix range.
        q.bind(format!("{low}\u{10FFFF}"));
        q.push(")");
    }
    for (column, value) in [
        ("status", &query.status),
        ("idc", &query.idc),
        ("business_unit", &query.business_unit),
        ("os_name", &query.os),
        ("manufacturer", &query.manufacturer),
        ("owner", &query.owner),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            q.push(" AND ").push(column).push(" = ").bind(value.to_owned());
        }
    }
    if let Some(tag) = query.tag.as_deref().filter(|t| !t.is_empty()) {
        q.push(" AND tags LIKE ").bind(format!("%,{},%", tag.replace(['%', '_', ','], "")));
    }
}

/// `ORDER BY` for `sort` ("column" or "-column"; unknown columns sort by host name), with the id as
/// the tie-breaker so pages never overlap.
pub fn order_by(sort: Option<&str>) -> String {
    let sort = sort.unwrap_or("hostname");
    let (column, descending) = match sort.strip_prefix('-') {
        Some(column) => (column, true),
        None => (sort, false),
    };
    let column = SORTABLE.iter().find(|c| **c == column).copied().unwrap_or("hostname");
    format!(" ORDER BY {column} {}, id", if descending { "DESC" } else { "ASC" })
}

/// Lists assets.
pub async fn list(db: &Db, query: &ListQuery) -> Result<AssetPage, ServiceError> {
    let per_page = query.per_page.unwrap_or(50).clamp(1, 500);
    let page = query.page.unwrap_or(1).max(1);
    let mut count = Sql::new("SELECT COUNT(*) FROM assets");
    push_filters(&mut count, query);
    let total: i64 = count.query().fetch_one(db.reader()).await?.try_get(0)?;
    let mut q = Sql::new(format!("SELECT {LIST_COLUMNS} FROM assets"));
    push_filters(&mut q, query);
    q.push(&order_by(query.sort.as_deref()));
    q.push(" LIMIT ").bind(i64::from(per_page)).push(" OFFSET ").bind(i64::from((page - 1) * per_page));
    let rows = q.query().fetch_all(db.reader()).await?;
    let items = rows.iter().map(list_item).collect::<Result<Vec<_>, _>>()?;
    Ok(AssetPage { items, total, page, per_page, as_of: None })
}

/// An asset with everything stored about it.
#[derive(Debug, Clone, Serialize)]
pub struct AssetDetail {
    /// The list columns.
    #[serde(flatten)]
    pub summary: AssetListItem,
    /// The business fields.
    pub business: BusinessFields,
    /// Every section as report data (components as lists), including `host`.
    pub sections: Map<String, Value>,
    /// For an asset as of a time: the instant read, with its offset in the configured zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<crate::service::time::Stated>,
}

/// Reads one asset.
pub async fn detail(db: &Db, id: i64) -> Result<AssetDetail, ServiceError> {
    let mut conn = db.reader().acquire().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {LIST_COLUMNS} FROM assets WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no asset {id}")))?;
    let summary = list_item(&row)?;
    let state = store::load_state(&mut conn, id).await?;
    Ok(detail_from_state(summary, &state))
}

/// Builds the detail from a summary row and a state (also used by the as-of view).
pub fn detail_from_state(summary: AssetListItem, state: &AssetState) -> AssetDetail {
    let business =
        state.sections.get(BUSINESS_SECTION).map(|s| BusinessFields::from_fields(&s.fields)).unwrap_or_default();
    let sections = state
        .sections
        .iter()
        .filter(|(name, _)| name.as_str() != BUSINESS_SECTION)
        .map(|(name, s)| (name.clone(), s.to_data(name)))
        .collect();
    AssetDetail { summary, business, sections, as_of: None }
}

async fn write_ops(
    conn: &mut AnyConnection,
    backend: Backend,
    asset_id: i64,
    state: &mut AssetState,
    ops: &[ChangeOp],
    source: &str,
) -> Result<(), ServiceError> {
    for op in ops {
        apply(state, op).map_err(|e| ServiceError::Bug(format!("history and state disagree: {e}")))?;
    }
    if ops.is_empty() {
        return Ok(());
    }
    let now = now_us();
    let context = ChangeContext { asset_id, recorded_at: now, collected_at: None, report_id: None, source };
    let mut writes = Batch::default();
    store::insert_changes(&mut writes, backend, &context, ops);
    store::write_state(&mut writes, asset_id, state, ops);
    store::write_summary(&mut writes, asset_id, &AssetSummary::from_state(state), &search_terms(state), None, now);
    writes.run(conn, backend).await?;
    crate::metrics::changes(ops.len());
    Ok(())
}

/// The managed lists (IDC, business unit, tags) as edits must respect them.
pub type ManagedLists = BTreeMap<ListKind, BTreeSet<String>>;

fn check_lists(lists: &ManagedLists, next: &BusinessFields, fields: &Map<String, Value>) -> Result<(), ServiceError> {
    let touched: BTreeSet<String> = fields.keys().cloned().collect();
    match lists::violations(lists, next, &touched).into_iter().next() {
        Some((field, message)) => Err(ServiceError::Invalid { field: format!("/{field}"), message }),
        None => Ok(()),
    }
}

/// Registers a host by hand: `fields` holds `hostname` plus any business fields. Status defaults
/// to racked.
pub async fn register(db: &Db, source: &str, fields: Map<String, Value>) -> Result<i64, ServiceError> {
    let lists = lists::all(db).await?;
    let mut tx = db.begin_write().await?;
    let id = register_in(&mut tx, db.backend(), &lists, source, fields).await?;
    tx.commit().await?;
    Ok(id)
}

/// [`register`] inside the caller's write transaction (bulk imports apply all lines in one).
pub async fn register_in(
    conn: &mut AnyConnection,
    backend: Backend,
    lists: &ManagedLists,
    source: &str,
    mut fields: Map<String, Value>,
) -> Result<i64, ServiceError> {
    let hostname = match fields.remove("hostname") {
        Some(Value::String(h)) if !h.trim().is_empty() && h.len() <= 253 => h.trim().to_owned(),
        _ => {
            return Err(ServiceError::Invalid {
                field: "/hostname".to_owned(),
                message: "hostname is required (a non-empty string of at most 253 bytes)".to_owned(),
            });
        }
    };
    let business = BusinessFields::default()
        .patched(&fields)
        .map_err(|e| ServiceError::Invalid { field: format!("/{}", e.field), message: e.to_string() })?;
    check_lists(lists, &business, &fields)?;
    let existing = sqlx::query("SELECT id FROM assets WHERE hostname = $1 AND status <> 'retired'")
        .bind(hostname.clone())
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = existing {
        let id: i64 = row.try_get(0)?;
        return Err(ServiceError::Conflict(format!("asset {id} already has host name {hostname:?}")));
    }
    let id = store::insert_asset(conn, &hostname, business.status.as_str(), now_us()).await?;
    let mut host = Map::new();
    host.insert("hostname".to_owned(), Value::String(hostname));
    host.insert("machine_id".to_owned(), Value::Null);
    let mut ops = Vec::new();
    diff_section(HOST_SECTION, None, &SectionState::from_fields(host), &mut ops);
    diff_section(BUSINESS_SECTION, None, &SectionState::from_fields(business.to_fields()), &mut ops);
    let mut state = AssetState::default();
    write_ops(conn, backend, id, &mut state, &ops, source).await?;
    Ok(id)
}

/// Applies a business-field patch to an asset; returns the number of changes.
pub async fn patch_business(db: &Db, id: i64, source: &str, patch: &Map<String, Value>) -> Result<usize, ServiceError> {
    let lists = lists::all(db).await?;
    let mut tx = db.begin_write().await?;
    let changes = patch_business_in(&mut tx, db.backend(), &lists, id, source, patch).await?;
    tx.commit().await?;
    Ok(changes)
}

/// [`patch_business`] inside the caller's write transaction.
pub async fn patch_business_in(
    conn: &mut AnyConnection,
    backend: Backend,
    lists: &ManagedLists,
    id: i64,
    source: &str,
    patch: &Map<String, Value>,
) -> Result<usize, ServiceError> {
    store::lock_asset(conn, backend, id).await?.ok_or_else(|| ServiceError::NotFound(format!("no asset {id}")))?;
    let mut state = store::load_state(conn, id).await?;
    let current =
        state.sections.get(BUSINESS_SECTION).map(|s| BusinessFields::from_fields(&s.fields)).unwrap_or_default();
    let next = current
        .patched(patch)
        .map_err(|e| ServiceError::Invalid { field: format!("/{}", e.field), message: e.to_string() })?;
    check_lists(lists, &next, patch)?;
    let mut ops = Vec::new();
    diff_section(
        BUSINESS_SECTION,
        state.sections.get(BUSINESS_SECTION),
        &SectionState::from_fields(next.to_fields()),
        &mut ops,
    );
    write_ops(conn, backend, id, &mut state, &ops, source).await?;
    Ok(ops.len())
}

/// Statuses for select boxes.
pub fn statuses() -> Vec<&'static str> {
    AssetStatus::ALL.iter().map(|s| s.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_accepts_only_known_columns() {
        assert_eq!(order_by(Some("-memory_mb")), " ORDER BY memory_mb DESC, id");
        assert_eq!(order_by(Some("hostname; DROP TABLE assets")), " ORDER BY hostname ASC, id");
        assert_eq!(order_by(None), " ORDER BY hostname ASC, id");
    }
}
