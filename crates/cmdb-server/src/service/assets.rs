//! What people do with assets: register hosts by hand, edit business fields, list, search and read.
//!
//! Edits go through the same history as reports: a business edit is a `business` section change
//! whose source is `user:<name>`, written in one transaction with the state it produces.

use cmdb_model::business::{AssetStatus, BusinessFields};
use cmdb_model::diff::{ChangeOp, apply, diff_section};
use cmdb_model::state::{AssetState, BUSINESS_SECTION, HOST_SECTION, IDENTITY_SECTION, SectionState};
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AssetListItem {
    /// Asset id.
    pub id: i64,
    /// Host name.
    pub hostname: String,
    /// Asset tag.
    pub asset_tag: Option<String>,
    /// Business status.
    pub status: String,
    /// Data centre.
    pub idc: Option<String>,
    /// Cabinet.
    pub cabinet: Option<String>,
    /// Position (U) in the cabinet.
    pub cabinet_u: Option<i64>,
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
    /// Custom field values by key, in their stored form.
    #[schema(value_type = Object)]
    pub custom: BTreeMap<String, Value>,
}

/// What a list column holds, for the as-of table's SQL type and the API description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// An integer that is always there.
    Id,
    /// Text that is always there.
    Text,
    /// Text or nothing.
    OptionalText,
    /// An integer or nothing.
    OptionalInt,
    /// A list of words, stored as one text.
    Words,
    /// An instant that is always there.
    Time,
    /// An instant or nothing.
    OptionalTime,
    /// A JSON object (custom values), stored as canonical JSON text.
    Object,
}

/// One column of the asset list. [`LIST`] is the one definition that the live list, the as-of
/// list (its table and its SQL), sorting, the CSV/XLSX exports, the list page and the API
/// description read; [`AssetListItem`] has exactly these fields (a unit test checks).
#[derive(Debug, Clone, Copy)]
pub struct ListColumn {
    /// Field name in JSON, the CSV/XLSX header, the SQL column and the sort key.
    pub key: &'static str,
    /// Header on the list page.
    pub label: &'static str,
    /// What it holds.
    pub kind: ColumnKind,
    /// The list can be sorted by it.
    pub sortable: bool,
    /// What it means (the API description).
    pub description: &'static str,
}

const fn column(
    key: &'static str,
    label: &'static str,
    kind: ColumnKind,
    sortable: bool,
    description: &'static str,
) -> ListColumn {
    ListColumn { key, label, kind, sortable, description }
}

/// The asset list's columns, in the order rows are selected, exported and decoded.
pub const LIST: &[ListColumn] = {
    use ColumnKind::*;
    &[
        column("id", "Id", Id, true, "Asset id."),
        column("hostname", "Host name", Text, true, "Host name."),
        column("asset_tag", "Asset tag", OptionalText, true, "The organisation's asset tag."),
        column("status", "Status", Text, true, "Business status: racked, online, offline or retired."),
        column("idc", "IDC", OptionalText, true, "Data centre."),
        column("cabinet", "Cabinet", OptionalText, true, "Cabinet."),
        column("cabinet_u", "U", OptionalInt, true, "Position (U) in the cabinet."),
        column("business_unit", "Business unit", OptionalText, true, "Business unit."),
        column("owner", "Owner", OptionalText, true, "Owner."),
        column("tags", "Tags", Words, false, "Tags."),
        column("os_name", "OS", OptionalText, true, "Distribution."),
        column("os_version", "OS version", OptionalText, false, "Distribution version."),
        column("manufacturer", "Manufacturer", OptionalText, true, "Board manufacturer."),
        column("model", "Model", OptionalText, true, "Board model."),
        column("serial", "Serial", OptionalText, true, "Board serial number."),
        column("cpu_model", "CPU model", OptionalText, false, "CPU model."),
        column("cpu_count", "CPUs", OptionalInt, true, "Logical CPUs."),
        column("memory_mb", "Memory", OptionalInt, true, "Memory in MiB."),
        column("disk_bytes", "Disk", OptionalInt, true, "Disk capacity in bytes."),
        column("ip_addresses", "IP addresses", Words, false, "IP addresses."),
        column("manage_address", "Manage address", OptionalText, false, "Address collectors connect to."),
        column(
            "last_seen_at",
            "Last seen",
            OptionalTime,
            true,
            "Live: when the asset last reported. As of a time: recorded_at of the report that last changed it.",
        ),
        column("last_collected_at", "Last collected", OptionalTime, false, "collected_at of that report."),
        column("created_at", "Created", Time, true, "When the asset was created."),
        column("custom", "Custom fields", Object, false, "Custom field values by key (see /api/v1/fields)."),
    ]
};

/// The list columns as a SELECT list (`id, hostname, ...`), in [`LIST`] order.
pub fn list_columns() -> &'static str {
    static TEXT: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| LIST.iter().map(|c| c.key).collect::<Vec<_>>().join(", "));
    &TEXT
}

/// The list's column names (the export's headers), in [`LIST`] order.
pub fn list_keys() -> &'static [&'static str] {
    static KEYS: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(|| LIST.iter().map(|c| c.key).collect());
    &KEYS
}

/// Decodes a row selected with [`list_columns`].
pub fn list_item(row: &sqlx::any::AnyRow) -> Result<AssetListItem, sqlx::Error> {
    // Columns in LIST order; a counter keeps the decoder in step with the list.
    let mut at = 0usize;
    let mut next = || {
        at += 1;
        at - 1
    };
    let id = row.try_get(next())?;
    let hostname = row.try_get(next())?;
    let asset_tag = row.try_get(next())?;
    let status = row.try_get(next())?;
    let idc = row.try_get(next())?;
    let cabinet = row.try_get(next())?;
    let cabinet_u = row.try_get(next())?;
    let business_unit = row.try_get(next())?;
    let owner = row.try_get(next())?;
    let tags: String = row.try_get(next())?;
    Ok(AssetListItem {
        id,
        hostname,
        asset_tag,
        status,
        idc,
        cabinet,
        cabinet_u,
        business_unit,
        owner,
        tags: tags.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
        os_name: row.try_get(next())?,
        os_version: row.try_get(next())?,
        manufacturer: row.try_get(next())?,
        model: row.try_get(next())?,
        serial: row.try_get(next())?,
        cpu_model: row.try_get(next())?,
        cpu_count: row.try_get(next())?,
        memory_mb: row.try_get(next())?,
        disk_bytes: row.try_get(next())?,
        ip_addresses: row
            .try_get::<String, _>(next())?
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        manage_address: row.try_get(next())?,
        last_seen_at: row.try_get::<Option<i64>, _>(next())?.map(from_us),
        last_collected_at: row.try_get::<Option<i64>, _>(next())?.map(from_us),
        created_at: from_us(row.try_get(next())?),
        custom: match serde_json::from_str(&row.try_get::<String, _>(next())?) {
            Ok(Value::Object(map)) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        },
    })
}

/// Filters of the asset list (also the query parameters of the list, its exports and the as-of
/// list in the OpenAPI document).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct ListQuery {
    /// Search: host name (or a part after - . _), IP, MAC, any serial, model (prefix,
    /// case-insensitive).
    pub q: Option<String>,
    /// Status (racked, online, offline, retired).
    pub status: Option<String>,
    /// Asset tag (exact).
    pub asset_tag: Option<String>,
    /// IDC.
    pub idc: Option<String>,
    /// Business unit.
    pub business_unit: Option<String>,
    /// One tag.
    pub tag: Option<String>,
    /// OS name.
    pub os: Option<String>,
    /// Board manufacturer.
    pub manufacturer: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Sort column (id, hostname, status, idc, business_unit, owner, os_name, manufacturer, model,
    /// last_seen_at, created_at, cpu_count, memory_mb); prefix - for descending.
    pub sort: Option<String>,
    /// Page, from 1.
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// Rows per page (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub per_page: Option<u32>,
    /// Custom field filters as given (`custom.<key>=<value>`, see [`ListQuery::from_query`]).
    #[serde(skip)]
    #[param(ignore)]
    pub custom: Vec<(String, String)>,
    /// The custom filters read by their fields (see [`resolve_custom`]): key and stored value.
    #[serde(skip)]
    #[param(ignore)]
    pub custom_values: Vec<(String, Value)>,
    /// For `sort=custom.<key>` (see [`resolve_custom`]): the key, and whether its values are
    /// numbers (integer and decimal fields sort by value, not as text).
    #[serde(skip)]
    #[param(ignore)]
    pub custom_sort: Option<(String, bool)>,
}

/// The prefix of a custom field filter's parameter name.
pub const CUSTOM_PREFIX: &str = "custom.";

impl ListQuery {
    /// Reads a query string: the named parameters, and every `custom.<key>=<value>` filter.
    pub fn from_query(raw: Option<&str>) -> Result<ListQuery, ServiceError> {
        let (named, custom) = split_custom_filters(raw)?;
        let mut query: ListQuery = serde_urlencoded::from_str(&named)
            .map_err(|e| ServiceError::Malformed(format!("malformed query parameter: {e}")))?;
        query.custom = custom.into_iter().filter(|(_, value)| !value.is_empty()).collect();
        Ok(query)
    }
}

/// A list's query string split in two: the named parameters (as a query string again) and the
/// custom field filters (`custom.<key>=<value>` as key and value), each in order. The API's
/// [`ListQuery`] and the list page's parameters read their query strings through it.
pub fn split_custom_filters(raw: Option<&str>) -> Result<(String, Vec<(String, String)>), ServiceError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ServiceError::Malformed(format!("malformed query string: {e}")))?;
    let (custom, named): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(name, _)| name.starts_with(CUSTOM_PREFIX));
    let custom = custom.into_iter().map(|(name, value)| (name[CUSTOM_PREFIX.len()..].to_owned(), value)).collect();
    Ok((serde_urlencoded::to_string(&named).unwrap_or_default(), custom))
}

/// `query` with its custom filters read by their fields: a date filter `2024/3/1` finds the
/// stored `2024-03-01`, a decimal `1200.50` the stored `1200.5`. An unknown field or a value its
/// field cannot hold is refused, naming the parameter.
pub async fn resolve_custom(db: &Db, query: &ListQuery) -> Result<ListQuery, ServiceError> {
    let mut out = query.clone();
    let sort_key = query.sort.as_deref().map(|s| s.trim_start_matches('-')).and_then(|s| s.strip_prefix(CUSTOM_PREFIX));
    if query.custom.is_empty() && sort_key.is_none() {
        return Ok(out);
    }
    let definitions = crate::service::custom_fields::definitions(db).await?;
    if let Some(key) = sort_key {
        use cmdb_model::custom_fields::FieldType;
        let definition = definitions
            .fields
            .get(key)
            .or_else(|| definitions.deleted.get(key))
            .ok_or_else(|| ServiceError::invalid("sort", format!("no custom field {key:?} to sort by")))?;
        out.custom_sort =
            Some((key.to_owned(), matches!(definition.field_type, FieldType::Integer | FieldType::Decimal)));
    }
    out.custom_values.clear();
    for (key, text) in &query.custom {
        let parameter = format!("{CUSTOM_PREFIX}{key}");
        let definition = definitions
            .fields
            .get(key)
            .or_else(|| definitions.deleted.get(key))
            .ok_or_else(|| ServiceError::invalid(&parameter, format!("no custom field {key:?}")))?;
        let value = definition
            .value(&Value::String(text.clone()))
            .map_err(|e| ServiceError::invalid(&parameter, e.0))?
            .unwrap_or(Value::Null);
        out.custom_values.push((key.clone(), value));
    }
    Ok(out)
}

/// The custom filter parameters, for the OpenAPI document (one pattern stands for all).
pub struct CustomFilterParams;

impl utoipa::IntoParams for CustomFilterParams {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        vec![
            ParameterBuilder::new()
                .name("custom.{key}")
                .parameter_in(ParameterIn::Query)
                .description(Some(
                    "A custom field filter, one per field: custom.purchase_date=2024-03-01 (the value in any form the \
                     field accepts; see /api/v1/fields).",
                ))
                .schema(Some(
                    utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String),
                ))
                .build(),
        ]
    }
}

/// The query parameters of [`ListQuery`] without the paging ones, for the exports (which have
/// every row the filters select); documentation only, the handlers read a [`ListQuery`].
pub struct ListFilters;

impl utoipa::IntoParams for ListFilters {
    fn into_params(
        parameter_in_provider: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        let paging = ["page", "per_page"];
        ListQuery::into_params(parameter_in_provider)
            .into_iter()
            .filter(|p| !paging.contains(&p.name.as_str()))
            .chain(CustomFilterParams::into_params(|| None))
            .collect()
    }
}

/// One page of the asset list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// For a list as of a time before the first recorded change: when the history starts, so an
    /// empty list reads as "nothing recorded yet", not "nothing matches".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_starts_at: Option<crate::service::time::Stated>,
}

/// The filters that compare a list column with a value: (column, value), from `query`.
pub fn equality_filters(query: &ListQuery) -> Vec<(&'static str, String)> {
    [
        ("status", &query.status),
        ("asset_tag", &query.asset_tag),
        ("idc", &query.idc),
        ("business_unit", &query.business_unit),
        ("os_name", &query.os),
        ("manufacturer", &query.manufacturer),
        ("owner", &query.owner),
    ]
    .into_iter()
    .filter_map(|(column, value)| value.as_deref().filter(|v| !v.is_empty()).map(|v| (column, v.to_owned())))
    .collect()
}

/// The tag the tag filter looks for (case-sensitive; a comma cannot be part of a tag).
fn tag_filter(query: &ListQuery) -> Option<String> {
    query.tag.as_deref().filter(|t| !t.is_empty()).map(|tag| tag.replace(',', ""))
}

/// What the search looks for in the search terms: a term that starts with the lowercased text.
fn search_text(query: &ListQuery) -> Option<String> {
    query.q.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase)
}

/// The prefixes a search looks for in the terms: the lowercased text, and, when it reads as a MAC
/// address or its start in another common notation, that in the colon notation the terms hold.
fn search_prefixes(query: &ListQuery) -> Vec<String> {
    let Some(text) = search_text(query) else { return Vec::new() };
    let mac = mac_form(&text).filter(|mac| *mac != text);
    std::iter::once(text).chain(mac).collect()
}

/// `text` (lowercase) as a MAC address, or its start, in colon notation, when it is one in a
/// common notation: `a0:36:9f`, `a0-36-9f`, Cisco's `a036.9f12.3456`, or bare hex of at least 6
/// digits. Groups must have the notation's width (so `10.0.1`, an address, is not read as one).
pub fn mac_form(text: &str) -> Option<String> {
    let separators: Vec<char> = text.chars().filter(|c| matches!(c, ':' | '-' | '.')).collect();
    let separator = separators.first().copied();
    if separators.iter().any(|c| Some(*c) != separator) {
        return None;
    }
    let groups: Vec<&str> = match separator {
        Some(sep) => text.split(sep).collect(),
        None => vec![text],
    };
    let width = match separator {
        Some('.') => 4,
        Some(_) => 2,
        None => 12,
    };
    let (last, full) = groups.split_last()?;
    let hex: String = groups.concat();
    let fits = full.iter().all(|g| g.len() == width) && !last.is_empty() && last.len() <= width;
    let long_enough = if separator.is_some() { hex.len() >= 4 } else { hex.len() >= 6 };
    if !fits || !long_enough || hex.len() > 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let pairs: Vec<&str> = hex.as_bytes().chunks(2).filter_map(|pair| std::str::from_utf8(pair).ok()).collect();
    Some(pairs.join(":"))
}

/// The list's filters applied to rows in memory (the as-of list), with exactly the semantics of
/// [`push_filters`] in SQL (the live list).
#[derive(Debug)]
pub struct ListFilter {
    /// What a term must start with (any of them), each preceded by a newline; empty: no search.
    prefixes: Vec<String>,
    equal: Vec<(&'static str, String)>,
    tag: Option<String>,
    custom: Vec<(String, Value)>,
}

impl ListFilter {
    /// The filters of `query`.
    pub fn new(query: &ListQuery) -> Self {
        ListFilter {
            prefixes: search_prefixes(query).into_iter().map(|t| format!("\n{t}")).collect(),
            equal: equality_filters(query),
            tag: tag_filter(query),
            custom: query.custom_values.clone(),
        }
    }

    /// Whether `item`, found by search terms `terms` (each preceded by a newline), passes.
    pub fn matches(&self, item: &AssetListItem, terms: &str) -> bool {
        if !self.prefixes.is_empty() && !self.prefixes.iter().any(|p| terms.contains(p.as_str())) {
            return false;
        }
        for (column, value) in &self.equal {
            let actual = match *column {
                "status" => Some(item.status.as_str()),
                "asset_tag" => item.asset_tag.as_deref(),
                "idc" => item.idc.as_deref(),
                "business_unit" => item.business_unit.as_deref(),
                "os_name" => item.os_name.as_deref(),
                "manufacturer" => item.manufacturer.as_deref(),
                "owner" => item.owner.as_deref(),
                _ => None,
            };
            if actual != Some(value.as_str()) {
                return false;
            }
        }
        if let Some(tag) = &self.tag
            && !item.tags.iter().any(|t| t == tag)
        {
            return false;
        }
        self.custom.iter().all(|(key, value)| item.custom.get(key) == Some(value))
    }
}

/// A sort value of a list row.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortValue<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Number(Option<OrderedNumber>),
}

/// A custom number (an integer, or a decimal read from its canonical text) in total order.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedNumber(f64);

impl Eq for OrderedNumber {}

impl PartialOrd for OrderedNumber {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedNumber {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The list's order applied to rows in memory (the as-of list), as [`order_by`] orders in SQL:
/// by the column, then by id; text compares bytewise (SQLite's BINARY, PostgreSQL's C and C.UTF-8
/// collations); an empty value sorts first on SQLite and last on PostgreSQL, as each does.
#[derive(Debug)]
pub struct ListOrder {
    column: &'static str,
    /// A custom field to sort by instead of `column`, and whether its values are numbers.
    custom: Option<(String, bool)>,
    descending: bool,
    nulls_first_ascending: bool,
}

impl ListOrder {
    /// The order of `query` (resolved by [`resolve_custom`]) on `backend`.
    pub fn new(query: &ListQuery, backend: crate::db::Backend) -> Self {
        let (column, _) = sort_column(query.sort.as_deref());
        ListOrder {
            column,
            custom: query.custom_sort.clone(),
            descending: query.sort.as_deref().is_some_and(|s| s.starts_with('-')),
            nulls_first_ascending: backend == crate::db::Backend::Sqlite,
        }
    }

    fn value<'a>(&self, item: &'a AssetListItem) -> SortValue<'a> {
        if let Some((key, numeric)) = &self.custom {
            let value = item.custom.get(key);
            return match (numeric, value) {
                (true, Some(Value::Number(n))) => SortValue::Number(n.as_f64().map(OrderedNumber)),
                (true, Some(Value::String(s))) => SortValue::Number(s.parse().ok().map(OrderedNumber)),
                (true, _) => SortValue::Number(None),
                // Booleans sort as SQLite stores them (0, 1) and PostgreSQL's text ('false' <
                // 'true'): the same order.
                (false, Some(Value::Bool(b))) => SortValue::Text(Some(if *b { "true" } else { "false" })),
                (false, Some(Value::String(s))) => SortValue::Text(Some(s.as_str())),
                (false, _) => SortValue::Text(None),
            };
        }
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| SortValue::Int(t.map(|t| t.timestamp_micros()));
        match self.column {
            "id" => SortValue::Int(Some(item.id)),
            "status" => SortValue::Text(Some(&item.status)),
            "asset_tag" => SortValue::Text(item.asset_tag.as_deref()),
            "idc" => SortValue::Text(item.idc.as_deref()),
            "business_unit" => SortValue::Text(item.business_unit.as_deref()),
            "owner" => SortValue::Text(item.owner.as_deref()),
            "os_name" => SortValue::Text(item.os_name.as_deref()),
            "manufacturer" => SortValue::Text(item.manufacturer.as_deref()),
            "model" => SortValue::Text(item.model.as_deref()),
            "cabinet" => SortValue::Text(item.cabinet.as_deref()),
            "cabinet_u" => SortValue::Int(item.cabinet_u),
            "serial" => SortValue::Text(item.serial.as_deref()),
            "last_seen_at" => time(item.last_seen_at),
            "created_at" => time(Some(item.created_at)),
            "cpu_count" => SortValue::Int(item.cpu_count),
            "memory_mb" => SortValue::Int(item.memory_mb),
            "disk_bytes" => SortValue::Int(item.disk_bytes),
            _ => SortValue::Text(Some(&item.hostname)),
        }
    }

    /// How `a` and `b` compare in this order.
    pub fn compare(&self, a: &AssetListItem, b: &AssetListItem) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let (x, y) = (self.value(a), self.value(b));
        let x_null = matches!(x, SortValue::Int(None) | SortValue::Text(None) | SortValue::Number(None));
        let y_null = matches!(y, SortValue::Int(None) | SortValue::Text(None) | SortValue::Number(None));
        let by_value = match (x_null, y_null) {
            (true, true) => Ordering::Equal,
            // Ascending: nulls first on SQLite, last on PostgreSQL; descending reverses that.
            (true, false) => {
                if self.nulls_first_ascending != self.descending {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if self.nulls_first_ascending != self.descending {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let ordering = x.cmp(&y);
                if self.descending { ordering.reverse() } else { ordering }
            }
        };
        by_value.then(a.id.cmp(&b.id))
    }
}

/// The condition that keeps deleted (and merged) records off every list, count and choice: the
/// one definition of "not deleted" in SQL.
pub const NOT_DELETED: &str = "deleted_at IS NULL";

/// Appends the WHERE clause for `query`'s filters (deleted records are never listed).
pub fn push_filters(q: &mut Sql, backend: Backend, query: &ListQuery) {
    q.push(" WHERE ").push(NOT_DELETED);
    let prefixes = search_prefixes(query);
    if !prefixes.is_empty() {
        q.push(" AND id IN (SELECT asset_id FROM search_terms WHERE ");
        for (index, low) in prefixes.into_iter().enumerate() {
            if index > 0 {
                q.push(" OR ");
            }
            // Terms compare bytewise in both backends (COLLATE "C" on PostgreSQL): a prefix range.
            q.push("(term >= ").bind(low.clone()).push(" AND term < ").bind(format!("{low}\u{10FFFF}")).push(")");
        }
        q.push(")");
    }
    for (column, value) in equality_filters(query) {
        q.push(" AND ").push(column).push(" = ").bind(value);
    }
    // Custom values compare as JSON text: `"2024-03-01"`, `42`, `true` in both backends.
    for (key, value) in &query.custom_values {
        if cmdb_model::custom_fields::check_key(key).is_err() {
            continue;
        }
        let column = match backend {
            Backend::Sqlite => format!("(custom -> '$.{key}')"),
            Backend::Postgres => format!("((custom::jsonb -> '{key}')::text)"),
        };
        q.push(" AND ").push(&column).push(" = ").bind(serde_json::to_string(value).unwrap_or_default());
    }
    // The stored column is `,a,b,`: the tag between commas.
    if let Some(needle) = tag_filter(query).map(|tag| format!(",{tag},")) {
        // Case-sensitive on both backends (LIKE is not on SQLite), as the in-memory filter is.
        let find = match backend {
            Backend::Sqlite => " AND instr(tags, ",
            Backend::Postgres => " AND strpos(tags, ",
        };
        q.push(find).bind(needle).push(") > 0");
    }
}

/// `ORDER BY` for `sort` ("column" or "-column"; unknown columns sort by host name), with the id as
/// the tie-breaker so pages never overlap.
pub fn order_by(sort: Option<&str>) -> String {
    let (column, descending) = sort_column(sort);
    format!(" ORDER BY {column} {}, id", if descending { "DESC" } else { "ASC" })
}

/// `ORDER BY` for `query` (resolved by [`resolve_custom`]): a list column, or a custom field's
/// value (numbers by value, text bytewise as the list columns compare).
pub fn order_by_query(query: &ListQuery, backend: Backend) -> String {
    let Some((key, numeric)) = &query.custom_sort else { return order_by(query.sort.as_deref()) };
    if cmdb_model::custom_fields::check_key(key).is_err() {
        return order_by(None);
    }
    let direction = if query.sort.as_deref().is_some_and(|s| s.starts_with('-')) { "DESC" } else { "ASC" };
    let text = crate::service::custom_fields::value_sql(backend, key);
    let value = match (backend, numeric) {
        (Backend::Sqlite, true) => format!("CAST({text} AS REAL)"),
        (Backend::Postgres, true) => format!("{text}::numeric"),
        (_, false) => text,
    };
    format!(" ORDER BY {value} {direction}, id")
}

/// The sort column of `sort` ("column" or "-column"; unknown columns sort by host name) and
/// whether it is descending.
fn sort_column(sort: Option<&str>) -> (&'static str, bool) {
    let sort = sort.unwrap_or("hostname");
    let (column, descending) = match sort.strip_prefix('-') {
        Some(column) => (column, true),
        None => (sort, false),
    };
    (LIST.iter().find(|c| c.sortable && c.key == column).map_or("hostname", |c| c.key), descending)
}

/// Lists assets.
pub async fn list(db: &Db, query: &ListQuery) -> Result<AssetPage, ServiceError> {
    let query = &resolve_custom(db, query).await?;
    let per_page = query.per_page.unwrap_or(50).clamp(1, 500);
    let page = query.page.unwrap_or(1).max(1);
    let mut count = Sql::new("SELECT COUNT(*) FROM assets");
    push_filters(&mut count, db.backend(), query);
    let total: i64 = count.query().fetch_one(db.reader()).await?.try_get(0)?;
    let mut q = Sql::new(format!("SELECT {} FROM assets", list_columns()));
    push_filters(&mut q, db.backend(), query);
    q.push(&order_by_query(query, db.backend()));
    q.push(" LIMIT ").bind(i64::from(per_page)).push(" OFFSET ").bind(i64::from((page - 1) * per_page));
    let rows = q.query().fetch_all(db.reader()).await?;
    let items = rows.iter().map(list_item).collect::<Result<Vec<_>, _>>()?;
    Ok(AssetPage { items, total, page, per_page, as_of: None, history_starts_at: None })
}

/// An asset with everything stored about it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AssetDetail {
    /// The list columns.
    #[serde(flatten)]
    pub summary: AssetListItem,
    /// The business fields.
    #[schema(value_type = Object)]
    pub business: BusinessFields,
    /// Every section as report data (components as lists), including `host`.
    #[schema(value_type = Object)]
    pub sections: Map<String, Value>,
    /// For an asset as of a time: the instant read, with its offset in the configured zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<crate::service::time::Stated>,
    /// The asset this one may be the same machine as: set when its first report could not be
    /// tied to that asset by board or machine identity (a new host key matching only by host
    /// name, a report collected for another target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub possible_duplicate_of: Option<i64>,
    /// Other assets that may be the same machine now (see [`crate::service::duplicates`]).
    pub possible_duplicates: Vec<crate::service::duplicates::SharedIdentity>,
    /// When the record was deleted (RFC 3339), while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// The asset this record was merged into: read that one instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<i64>,
}

/// Reads one asset.
pub async fn detail(db: &Db, id: i64) -> Result<AssetDetail, ServiceError> {
    let mut conn = db.reader().acquire().await?;
    // The flag after the list columns, so `list_item` reads the row as it reads any list row.
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {}, possible_duplicate_of FROM assets WHERE id = $1",
        list_columns()
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ServiceError::NotFound(format!("no asset {id}")))?;
    let summary = list_item(&row)?;
    let duplicate: Option<i64> = row.try_get(LIST.len())?;
    let state = store::load_state(&mut conn, id).await?;
    drop(conn);
    let possible_duplicates = crate::service::duplicates::of(db, id).await?;
    Ok(AssetDetail { possible_duplicate_of: duplicate, possible_duplicates, ..detail_from_state(summary, &state) })
}

/// Builds the detail from a summary row and a state (also used by the as-of view).
pub fn detail_from_state(summary: AssetListItem, state: &AssetState) -> AssetDetail {
    let business =
        state.sections.get(BUSINESS_SECTION).map(|s| BusinessFields::from_fields(&s.fields)).unwrap_or_default();
    let sections = state
        .sections
        .iter()
        .filter(|(name, _)| name.as_str() != BUSINESS_SECTION && name.as_str() != IDENTITY_SECTION)
        .map(|(name, s)| (name.clone(), s.to_data(name)))
        .collect();
    AssetDetail {
        summary,
        business,
        sections,
        as_of: None,
        possible_duplicate_of: None,
        possible_duplicates: Vec::new(),
        deleted_at: state.str_field(IDENTITY_SECTION, "deleted_at").map(str::to_owned),
        merged_into: state.field(IDENTITY_SECTION, "merged_into").and_then(Value::as_i64),
    }
}

/// Applies `ops` to `state` and writes them with the state and its summary (the one way an edit
/// reaches the store).
pub(crate) async fn write_ops(
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
    let link = store::chain_link(conn, backend, asset_id, ops.len()).await?;
    let mut writes = Batch::default();
    store::insert_changes(&mut writes, backend, &context, ops, &link)?;
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

/// The asset, not retired and not deleted, other than `except`, that has host name `hostname`: the
/// one rule of who holds a name (registration and restore ask it).
pub async fn hostname_holder(
    conn: &mut AnyConnection,
    hostname: &str,
    except: Option<i64>,
) -> Result<Option<i64>, ServiceError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM assets WHERE hostname = $1 AND status <> 'retired' AND {NOT_DELETED} AND id <> $2"
    )))
    .bind(hostname.to_owned())
    .bind(except.unwrap_or(0))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// Refuses an asset tag another asset (not deleted) holds: 409 naming the holder. The unique
/// index holds the rule against concurrent writers; this names who has the tag.
pub async fn check_tag_free(
    conn: &mut AnyConnection,
    tag: Option<&str>,
    asset: Option<i64>,
) -> Result<(), ServiceError> {
    let Some(tag) = tag else { return Ok(()) };
    let holder = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, hostname FROM assets WHERE asset_tag = $1 AND {NOT_DELETED} AND id <> $2"
    )))
    .bind(tag.to_owned())
    .bind(asset.unwrap_or(0))
    .fetch_optional(&mut *conn)
    .await?;
    match holder {
        Some(row) => {
            let (id, hostname): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            Err(ServiceError::Conflict(format!("asset tag {tag:?} is held by asset {id} ({hostname})")))
        }
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
    crate::store::outbox::wake();
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
    let definitions = crate::service::custom_fields::definitions_in(conn).await?;
    let business = BusinessFields::default()
        .patched(&fields, &definitions)
        .map_err(|e| ServiceError::Invalid { field: format!("/{}", e.field), message: e.to_string() })?;
    check_lists(lists, &business, &fields)?;
    check_tag_free(conn, business.asset_tag.as_deref(), None).await?;
    if let Some(id) = hostname_holder(conn, &hostname, None).await? {
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
    crate::store::outbox::wake();
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
    let definitions = crate::service::custom_fields::definitions_in(conn).await?;
    let next = current
        .patched(patch, &definitions)
        .map_err(|e| ServiceError::Invalid { field: format!("/{}", e.field), message: e.to_string() })?;
    check_lists(lists, &next, patch)?;
    if next.asset_tag != current.asset_tag {
        check_tag_free(conn, next.asset_tag.as_deref(), Some(id)).await?;
    }
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

    #[test]
    fn mac_addresses_read_in_every_common_notation() {
        for text in ["a0:36:9f:12:34:56", "a0-36-9f-12-34-56", "a036.9f12.3456", "a0369f123456"] {
            assert_eq!(mac_form(text).as_deref(), Some("a0:36:9f:12:34:56"), "{text}");
        }
        assert_eq!(mac_form("a0-36-9f").as_deref(), Some("a0:36:9f"));
        assert_eq!(mac_form("a036.9f").as_deref(), Some("a0:36:9f"));
        assert_eq!(mac_form("a0369f1").as_deref(), Some("a0:36:9f:1"));
        for not_mac in ["10.0.1", "10.0.0.5", "web-01", "a0:36-9f", "a036", "zz:zz:zz", "a0369f12345678"] {
            assert_eq!(mac_form(not_mac), None, "{not_mac}");
        }
    }

    use super::*;

    #[test]
    fn the_list_row_has_exactly_the_list_columns() {
        let item = AssetListItem {
            id: 1,
            hostname: String::new(),
            asset_tag: None,
            status: String::new(),
            idc: None,
            cabinet: None,
            cabinet_u: None,
            business_unit: None,
            owner: None,
            tags: Vec::new(),
            os_name: None,
            os_version: None,
            manufacturer: None,
            model: None,
            serial: None,
            cpu_model: None,
            cpu_count: None,
            memory_mb: None,
            disk_bytes: None,
            ip_addresses: Vec::new(),
            manage_address: None,
            last_seen_at: None,
            last_collected_at: None,
            created_at: chrono::DateTime::default(),
            custom: BTreeMap::new(),
        };
        let json = serde_json::to_value(&item).expect("json");
        let fields: BTreeSet<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
        let columns: BTreeSet<&str> = LIST.iter().map(|c| c.key).collect();
        assert_eq!(fields, columns);
        assert_eq!(list_keys().len(), LIST.len());
    }

    #[test]
    fn sort_accepts_only_known_columns() {
        assert_eq!(order_by(Some("-memory_mb")), " ORDER BY memory_mb DESC, id");
        assert_eq!(order_by(Some("hostname; DROP TABLE assets")), " ORDER BY hostname ASC, id");
        assert_eq!(order_by(None), " ORDER BY hostname ASC, id");
    }
}
