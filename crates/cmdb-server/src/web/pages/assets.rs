//! The asset list (search, filters, sort, pages, as-of date, exports) and the asset detail (facts,
//! components, external sections, business fields and their edit form, the change timeline,
//! collection errors).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use cmdb_model::business::{BusinessFields, FIELD_NAMES};
use cmdb_model::custom_fields::{Definitions, FieldDefinition};
use cmdb_model::report::component_list;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::dashboard::Count;
use super::{CurrentUser, Layout, Posted, cell, parse_query, query_string};
use crate::auth::Role;
use crate::service::assets::{self, AssetDetail, AssetPage, ListQuery};
use crate::service::audit_log as audit;
use crate::service::collection_errors::{self, CollectionError, ErrorFilter};
use crate::service::custom_fields;
use crate::service::export;
use crate::service::history;
use crate::service::lists::{self, ListKind};
use crate::service::readable::{self, ComponentTable, FactSection};
use crate::service::time::{AsOf, Stated};
use crate::store::ChangeRecord;
use crate::web::error::WebError;
use crate::web::{WebState, templates};

/// The list's parameters as they appear in the URL.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ListParams {
    /// Search text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Asset tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_tag: Option<String>,
    /// IDC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idc: Option<String>,
    /// Business unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_unit: Option<String>,
    /// Tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// OS name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Manufacturer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Sort column (`-` for descending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// Page (from 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Rows per page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u32>,
    /// As-of date or date-time (the list as it stood then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// The columns shown, comma-separated list keys (absent: the defaults of [`PAGE_COLUMNS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cols: Option<String>,
    /// Custom field filters (`custom.<key>=<value>`), kept in every link.
    #[serde(skip)]
    pub custom: Vec<(String, String)>,
}

/// Columns the list page can show (the host name always is), in [`assets::LIST`] order, each with
/// whether it is shown until a person chooses (the default fits 1440 px).
const PAGE_COLUMNS: &[(&str, bool)] = &[
    ("asset_tag", true),
    ("status", true),
    ("idc", true),
    ("cabinet", true),
    ("cabinet_u", true),
    ("business_unit", false),
    ("owner", true),
    ("os_name", true),
    ("manufacturer", false),
    ("model", true),
    ("serial", true),
    ("cpu_count", true),
    ("memory_mb", true),
    ("disk_bytes", true),
    ("ip_addresses", true),
    ("last_seen_at", true),
    ("tags", false),
];

impl ListParams {
    /// Reads the page's query string: the named parameters and the custom field filters.
    pub(crate) fn from_query(raw: Option<&str>) -> Result<ListParams, WebError> {
        let (named, custom) = assets::split_custom_filters(raw).map_err(|e| WebError::BadRequest(e.to_string()))?;
        let mut params: ListParams = parse_query(Some(&named))?;
        params.custom = custom.into_iter().filter(|(_, value)| !value.trim().is_empty()).collect();
        Ok(params)
    }

    /// The store's query for these parameters.
    pub fn list_query(&self) -> ListQuery {
        ListQuery {
            q: self.q.clone(),
            status: self.status.clone(),
            asset_tag: self.asset_tag.clone(),
            idc: self.idc.clone(),
            business_unit: self.business_unit.clone(),
            tag: self.tag.clone(),
            os: self.os.clone(),
            manufacturer: self.manufacturer.clone(),
            owner: self.owner.clone(),
            sort: self.sort.clone(),
            page: self.page,
            per_page: self.per_page,
            custom: self.custom.clone(),
            custom_values: Vec::new(),
            custom_sort: None,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        let mut query = serde_urlencoded::to_string(self).unwrap_or_default();
        let custom: Vec<(String, &str)> = self
            .custom
            .iter()
            .map(|(key, value)| (format!("{}{key}", assets::CUSTOM_PREFIX), value.as_str()))
            .collect();
        if !custom.is_empty() {
            let extra = serde_urlencoded::to_string(&custom).unwrap_or_default();
            query = if query.is_empty() { extra } else { format!("{query}&{extra}") };
        }
        if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }
    }

    /// The columns to show: the host name, then those chosen (unknown keys are ignored) in list
    /// order, then the custom fields chosen (`custom.<key>`, none by default) in definition order.
    fn shown_columns(&self, custom: &[FieldDefinition]) -> Vec<String> {
        let chosen: Vec<&str> = match self.cols.as_deref() {
            Some(cols) => cols.split(',').map(str::trim).collect(),
            None => PAGE_COLUMNS.iter().filter(|(_, default)| *default).map(|(key, _)| *key).collect(),
        };
        std::iter::once("hostname".to_owned())
            .chain(PAGE_COLUMNS.iter().map(|(key, _)| *key).filter(|c| chosen.contains(c)).map(str::to_owned))
            .chain(
                custom
                    .iter()
                    .map(|d| format!("{}{}", assets::CUSTOM_PREFIX, d.key))
                    .filter(|c| chosen.contains(&c.as_str())),
            )
            .collect()
    }

    /// The filters, sort and as-of date without paging: what an export selects.
    pub(crate) fn filters_only(&self) -> ListParams {
        ListParams { page: None, per_page: None, ..self.clone() }
    }
}

/// A sortable column header.
#[derive(Debug, Serialize)]
struct SortLink {
    key: String,
    label: String,
    /// For a custom field's column: its key in the row's `custom` values.
    custom: Option<String>,
    href: String,
    arrow: &'static str,
}

#[derive(Serialize)]
struct ListPage {
    layout: Layout,
    params: ListParams,
    page: AssetPage,
    pages: u32,
    prev: Option<String>,
    next: Option<String>,
    columns: Vec<SortLink>,
    statuses: Vec<&'static str>,
    idcs: Vec<Count>,
    business_units: Vec<Count>,
    oses: Vec<Count>,
    manufacturers: Vec<Count>,
    tags: Vec<Count>,
    owners: Vec<Count>,
    /// Assets flagged as possible duplicates (see `service::duplicates`).
    duplicate_ids: Vec<i64>,
    /// Every column a person may show, with whether it is shown.
    choices: Vec<(String, String, bool)>,
    as_of: Option<Stated>,
    csv_href: String,
    xlsx_href: String,
    labels_href: String,
    audit_href: Option<String>,
}

/// `GET /assets`.
pub async fn list(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let params = ListParams::from_query(raw.as_deref())?;
    let query = params.list_query();
    let as_of = resolve_as_of(&state, params.as_of.as_deref())?;
    let page = match as_of {
        Some(at) => crate::service::asof::list_as_of(&state.app.db, &state.app.snapshot_rows, at, &query).await?,
        None => assets::list(&state.app.db, &query).await?,
    };
    let pages = u32::try_from((page.total + i64::from(page.per_page) - 1) / i64::from(page.per_page.max(1)))
        .unwrap_or(u32::MAX);
    let link = |n: u32| ListParams { page: Some(n), ..params.clone() }.url("/assets");
    let current_sort = params.sort.clone().unwrap_or_else(|| "hostname".to_owned());
    let custom_fields: Vec<FieldDefinition> =
        custom_fields::fields(&state.app.db, false).await?.iter().map(custom_fields::CustomField::definition).collect();
    let shown = params.shown_columns(&custom_fields);
    let custom_columns: Vec<(String, String)> =
        custom_fields.iter().map(|d| (format!("{}{}", assets::CUSTOM_PREFIX, d.key), d.label.clone())).collect();
    let columns = assets::LIST
        .iter()
        .filter(|c| shown.iter().any(|s| s == c.key))
        .map(|c| (c.key.to_owned(), c.label.to_owned()))
        .chain(custom_columns.iter().filter(|(key, _)| shown.contains(key)).cloned())
        .map(|(key, label)| {
            let (next, arrow) = if current_sort == key {
                (format!("-{key}"), "▲")
            } else if current_sort.strip_prefix('-') == Some(key.as_str()) {
                (key.clone(), "▼")
            } else {
                (key.clone(), "")
            };
            SortLink {
                custom: key.strip_prefix(assets::CUSTOM_PREFIX).map(str::to_owned),
                href: ListParams { sort: Some(next), page: None, ..params.clone() }.url("/assets"),
                key,
                label,
                arrow,
            }
        })
        .collect();
    let figures = state.figures().await?;
    // The selects offer what the list holds: as of a time, the counts as of that time.
    let counts = match as_of {
        Some(at) => crate::service::asof::counts_as_of(&state.app.db, &state.app.snapshot_rows, at.effective).await?,
        None => figures.counts.clone(),
    };
    let choices = assets::LIST
        .iter()
        .filter(|c| PAGE_COLUMNS.iter().any(|(key, _)| *key == c.key))
        .map(|c| (c.key.to_owned(), c.label.to_owned()))
        .chain(custom_columns)
        .map(|(key, label)| {
            let on = shown.contains(&key);
            (key, label, on)
        })
        .collect();
    let filters = params.filters_only();
    let audit_href = as_of.map(|_| {
        let day = params.as_of.clone().unwrap_or_default();
        format!("/assets/audit.xlsx?{}", query_string(&[("as_of", day.as_str())]))
    });
    let list_page = ListPage {
        layout: user.layout(&state, "assets"),
        prev: (page.page > 1).then(|| link(page.page - 1)),
        next: (page.page < pages).then(|| link(page.page + 1)),
        pages,
        columns,
        statuses: assets::statuses(),
        idcs: counts.idc,
        business_units: counts.business_unit,
        oses: counts.os,
        manufacturers: counts.manufacturer,
        tags: counts.tags,
        owners: counts.owner,
        duplicate_ids: figures.duplicate_ids.clone(),
        choices,
        as_of: as_of.map(|a| a.stated()),
        csv_href: filters.url("/assets/export.csv"),
        xlsx_href: filters.url("/assets/export.xlsx"),
        labels_href: filters.url("/assets/labels"),
        audit_href,
        params,
        page,
    };
    // htmx asks for the results only (live search); everyone else gets the page.
    let partial = headers.get("hx-target").and_then(|v| v.to_str().ok()) == Some("results");
    let mut response =
        templates::render(if partial { "asset_rows.html" } else { "assets.html" }, &list_page)?.into_response();
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("HX-Request, HX-Target"));
    Ok(response)
}

use crate::download::bytes as download;

fn describe(params: &ListParams) -> String {
    let text = serde_urlencoded::to_string(ListParams { sort: None, ..params.filters_only() }).unwrap_or_default();
    if text.is_empty() { "all assets".to_owned() } else { text }
}

/// The rows an export holds: exactly the filtered list (every page), live or as of a date.
async fn export_items(state: &WebState, params: &ListParams) -> Result<Vec<assets::AssetListItem>, WebError> {
    let query = params.filters_only().list_query();
    let db = &state.app.db;
    Ok(match resolve_as_of(state, params.as_of.as_deref())? {
        Some(at) => crate::service::asof::list_items_as_of(db, &state.app.snapshot_rows, at.effective, &query).await?,
        None => crate::service::export::list_items(db, &query).await?,
    })
}

/// The as-of of a page's query string, by the one rule of [`crate::service::time`].
fn resolve_as_of(state: &WebState, text: Option<&str>) -> Result<Option<AsOf>, WebError> {
    Ok(state.app.calendar.optional_as_of(text)?)
}

fn export_name(state: &WebState, params: &ListParams, extension: &str) -> Result<String, WebError> {
    Ok(match resolve_as_of(state, params.as_of.as_deref())? {
        Some(at) => format!("cmdb-assets-as-of-{}.{extension}", at.file_stamp()),
        None => format!("cmdb-assets-{}.{extension}", state.app.calendar.file_stamp(Utc::now())),
    })
}

/// `GET /assets/export.csv`: exactly the filtered list (every page), as CSV; with `as_of`, the
/// list as it stood then.
pub async fn export_csv(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let params = ListParams::from_query(raw.as_deref())?;
    let items = export_items(&state, &params).await?;
    let body = crate::service::export::items_csv(&state.app.db, &items, state.app.calendar.tz).await?;
    let detail = format!("{} rows: {}", items.len(), describe(&params));
    audit::record_from(&state.app.db, &user.session.name, "export.csv", &detail, user.client_ip.as_deref()).await?;
    Ok(download(body, "text/csv; charset=utf-8", &export_name(&state, &params, "csv")?))
}

/// `GET /assets/export.xlsx`: the same rows as XLSX.
pub async fn export_xlsx(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let params = ListParams::from_query(raw.as_deref())?;
    let items = export_items(&state, &params).await?;
    let body = crate::service::export::items_xlsx(&state.app.db, &items, state.app.calendar.tz).await?;
    let detail = format!("{} rows: {}", items.len(), describe(&params));
    audit::record_from(&state.app.db, &user.session.name, "export.xlsx", &detail, user.client_ip.as_deref()).await?;
    Ok(download(
        body,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        &export_name(&state, &params, "xlsx")?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuditParams {
    as_of: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// `GET /assets/audit.xlsx?as_of=2026-12-31[&from=..&to=..]`: the year-end audit workbook: assets
/// as of the date, and every change of the year up to it (or of [from, to]).
pub async fn export_audit(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let params: AuditParams = parse_query(raw.as_deref())?;
    let period =
        state.app.calendar.audit_period(params.as_of.as_deref(), params.from.as_deref(), params.to.as_deref())?;
    let file = export::audit_workbook(&state.app.db, &period).await?;
    let detail = export::describe_audit(&period);
    audit::record_from(&state.app.db, &user.session.name, export::AUDIT_ACTION, &detail, user.client_ip.as_deref())
        .await?;
    crate::download::file(file, crate::download::XLSX, &export::audit_file_name(&period))
        .await
        .map_err(|e| WebError::Internal(format!("cannot read the workbook back: {e}")))
}

/// One line of the change timeline.
#[derive(Debug, Serialize)]
pub struct ChangeLine {
    /// Row id.
    pub id: i64,
    /// The asset.
    pub asset_id: i64,
    /// The asset's current host name (change log only).
    pub hostname: Option<String>,
    /// When the server recorded it.
    pub recorded_at: DateTime<Utc>,
    /// When the data was collected.
    pub collected_at: Option<DateTime<Utc>>,
    /// agent, ssh, salt, legacy or user:<name>.
    pub source: String,
    /// Section.
    pub section: String,
    /// Component key.
    pub component: Option<String>,
    /// Path inside the section or component.
    pub path: String,
    /// added, removed, changed.
    pub action: String,
    /// Old value as text.
    pub old: Option<String>,
    /// New value as text.
    pub new: Option<String>,
    /// The readable sentence.
    pub summary: String,
}

impl ChangeLine {
    /// A timeline line from a change record.
    pub fn from_record(record: ChangeRecord, hostname: Option<String>) -> Self {
        // Said with today's labels and units, also for records written before them (the stored
        // summary stays as it was written; the API gives it).
        let summary = record.op().sentence();
        ChangeLine {
            id: record.id,
            asset_id: record.asset_id,
            hostname,
            recorded_at: record.recorded_at,
            collected_at: record.collected_at,
            source: record.source,
            section: record.section,
            component: record.component,
            path: record.path,
            action: record.action.as_str().to_owned(),
            old: record.old.as_ref().map(cell),
            new: record.new.as_ref().map(cell),
            summary,
        }
    }
}

/// The edit form's values (text as typed) by input name: the business fields by name, custom
/// fields as `custom.<key>`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct BusinessForm(BTreeMap<String, String>);

/// The input name of custom field `key` in the form.
fn custom_input(key: &str) -> String {
    format!("custom.{key}")
}

impl BusinessForm {
    fn from_fields(b: &BusinessFields) -> Self {
        let fields = b.to_fields();
        let mut form = BTreeMap::new();
        for name in FIELD_NAMES {
            let text = match fields.get(*name) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "),
                Some(other) => other.to_string(),
            };
            form.insert((*name).to_owned(), text);
        }
        for (key, value) in &b.custom {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            form.insert(custom_input(key), text);
        }
        BusinessForm(form)
    }

    /// The value of input `name` (empty when absent).
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// The form as a patch of every business field and of the custom fields in `definitions`
    /// (strings; the model parses numbers, dates and tag lists).
    fn patch(&self, definitions: &Definitions) -> Map<String, Value> {
        let value = |text: &str| {
            let text = text.replace("\r\n", "\n");
            if text.trim().is_empty() { Value::Null } else { Value::String(text) }
        };
        let mut map = Map::new();
        for name in FIELD_NAMES {
            map.insert((*name).to_owned(), value(self.get(name)));
        }
        let custom: Map<String, Value> =
            definitions.fields.keys().map(|key| (key.clone(), value(self.get(&custom_input(key))))).collect();
        map.insert("custom".to_owned(), Value::Object(custom));
        map
    }

    /// The submitted values (`owner`) and the values when the page was loaded (`orig_owner`).
    fn split(posted: &BTreeMap<String, String>) -> (BusinessForm, BusinessForm) {
        let mut submitted = BTreeMap::new();
        let mut original = BTreeMap::new();
        for (name, value) in posted {
            match name.strip_prefix("orig_") {
                Some(name) => original.insert(name.to_owned(), value.clone()),
                None => submitted.insert(name.clone(), value.clone()),
            };
        }
        (BusinessForm(submitted), BusinessForm(original))
    }
}

/// The managed lists (part of the audit API): once a list has values, the edit form offers only
/// those, and an edit that sets another value is refused.
#[derive(Debug, Default, Serialize)]
struct ManagedChoices {
    idc: Vec<String>,
    business_unit: Vec<String>,
    tag: Vec<String>,
}

impl ManagedChoices {
    async fn load(db: &crate::db::Db) -> Result<Self, WebError> {
        let all = lists::all(db).await?;
        let get = |kind: ListKind| all.get(&kind).map(|set| set.iter().cloned().collect()).unwrap_or_default();
        Ok(ManagedChoices {
            idc: get(ListKind::Idc),
            business_unit: get(ListKind::BusinessUnit),
            tag: get(ListKind::Tag),
        })
    }
}

#[derive(Serialize)]
struct DetailPage {
    layout: Layout,
    asset: AssetDetail,
    facts: Vec<FactSection>,
    components: Vec<ComponentTable>,
    external: Vec<FactSection>,
    form: BusinessForm,
    orig: BusinessForm,
    form_error: Option<String>,
    statuses: Vec<&'static str>,
    idcs: Vec<Count>,
    business_units: Vec<Count>,
    managed: ManagedChoices,
    /// Every custom field, deleted ones too (their values stay on the page, labelled).
    custom_fields: Vec<custom_fields::CustomField>,
    timeline: Vec<history::Grouped<ChangeLine>>,
    older: Option<String>,
    errors: Vec<CollectionError>,
    as_of: Option<Stated>,
    as_of_text: Option<String>,
    saved: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DetailParams {
    as_of: Option<String>,
    before: Option<i64>,
    saved: Option<u8>,
}

const TIMELINE_PAGE: i64 = 100;
const FACT_SECTIONS: &[&str] = &["host", "basic", "cpu", "board"];

#[derive(Serialize)]
struct NotYetPage {
    layout: Layout,
    id: i64,
    as_of: Stated,
    as_of_text: String,
    first_recorded: Stated,
    first_day: String,
}

/// An as-of asset page before the asset existed: a page with the navigation that says when its
/// history starts and links to that day (404: there is no asset to show at that time).
async fn not_yet(state: &WebState, user: &CurrentUser, id: i64, at: AsOf) -> Result<Response, WebError> {
    let Some(first) = crate::service::history::first_recorded(&state.app.db, id).await? else {
        return Err(WebError::NotFound(format!("no asset {id}")));
    };
    let calendar = &state.app.calendar;
    let page = NotYetPage {
        layout: user.layout(state, "assets"),
        id,
        as_of: at.stated(),
        as_of_text: calendar.state(at.requested).at.chars().take(10).collect(),
        first_recorded: calendar.state(first),
        first_day: calendar.state(first).at.chars().take(10).collect(),
    };
    Ok((StatusCode::NOT_FOUND, templates::render("asset_not_yet.html", &page)?).into_response())
}

async fn render_detail(
    state: &WebState,
    user: &CurrentUser,
    id: i64,
    params: DetailParams,
    form: Option<(BusinessForm, String)>,
) -> Result<Response, WebError> {
    let db = &state.app.db;
    let as_of = resolve_as_of(state, params.as_of.as_deref())?;
    let asset = match as_of {
        Some(at) => match crate::service::asof::asset_as_of(db, id, at).await? {
            Some(asset) => asset,
            None => return not_yet(state, user, id, at).await,
        },
        None => assets::detail(db, id).await?,
    };
    // A merged record is read through the one it was merged into (its own history stays there as
    // of earlier dates).
    if let (Some(survivor), None) = (asset.merged_into, as_of) {
        return Ok(Redirect::to(&format!("/assets/{survivor}")).into_response());
    }
    let mut facts = Vec::new();
    let mut components = Vec::new();
    let mut external = Vec::new();
    for name in FACT_SECTIONS {
        if let Some(data) = asset.sections.get(*name) {
            facts.push(readable::fact_section(name, data));
        }
    }
    for (name, data) in &asset.sections {
        if FACT_SECTIONS.contains(&name.as_str()) {
            continue;
        }
        match component_list(name) {
            Some((list_key, key_field)) => components.push(readable::component_table(name, list_key, key_field, data)),
            None => external.push(readable::fact_section(name, data)),
        }
    }
    // The timeline: newest first, one page, never past the as-of instant.
    let upto = as_of.map(|t| t.effective);
    let records = history::asset_changes(db, id, params.before, history::Span::upto(upto), TIMELINE_PAGE).await?;
    let older = (records.len() as i64 == TIMELINE_PAGE).then(|| {
        let last = records.last().map(|r| r.id.to_string()).unwrap_or_default();
        let mut pairs = vec![("before", last.as_str())];
        if let Some(a) = params.as_of.as_deref() {
            pairs.push(("as_of", a));
        }
        format!("/assets/{id}?{}#timeline", query_string(&pairs))
    });
    let firsts = history::first_reports(db, &[id]).await?;
    let timeline = history::group_first_reports(records, |r| r, &firsts)
        .into_iter()
        .map(|g| g.map(|r| ChangeLine::from_record(r, None)))
        .collect();
    let filter = ErrorFilter { asset_id: Some(id), to: upto, ..ErrorFilter::default() };
    let errors = collection_errors::list(db, &filter, 20).await?;
    let figures = state.figures().await?;
    let status = if form.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let (form, form_error) = match form {
        Some((form, error)) => (form, Some(error)),
        None => (BusinessForm::from_fields(&asset.business), None),
    };
    let page = DetailPage {
        layout: user.layout(state, "assets"),
        orig: BusinessForm::from_fields(&asset.business),
        facts,
        components,
        external,
        form,
        form_error,
        statuses: assets::statuses(),
        idcs: figures.counts.idc.clone(),
        business_units: figures.counts.business_unit.clone(),
        managed: ManagedChoices::load(db).await?,
        custom_fields: custom_fields::fields(db, true).await?,
        timeline,
        older,
        errors,
        as_of: as_of.map(|a| a.stated()),
        as_of_text: params.as_of.clone(),
        saved: params.saved.is_some(),
        asset,
    };
    Ok((status, templates::render("asset.html", &page)?).into_response())
}

/// `GET /assets/{id}`.
pub async fn detail(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    Path(id): Path<i64>,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let params: DetailParams = parse_query(raw.as_deref())?;
    render_detail(&state, &user, id, params, None).await
}

/// The edit form: the values as submitted (`owner`) and as they were when the page was loaded
/// (`orig_owner`), for every field (custom ones as `custom.<key>`).
pub type BusinessFormFields = BTreeMap<String, String>;

/// `POST /assets/{id}/business`: an editor changes business fields. Only the fields the person
/// changed are written, so two people editing different fields of one asset do not undo each
/// other; a field someone else changed since the form was loaded is refused, not overwritten.
pub async fn edit_business(
    State(state): State<Arc<WebState>>,
    Path(id): Path<i64>,
    posted: Posted<BusinessFormFields>,
) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Editor)?;
    let db = &state.app.db;
    let (submitted, original) = BusinessForm::split(&posted.form);
    let definitions = custom_fields::definitions(db).await?;
    let empty = BusinessFields::default();
    let parse = |form: &BusinessForm| empty.patched(&form.patch(&definitions), &definitions);
    let new = match parse(&submitted) {
        Ok(fields) => fields.to_fields(),
        Err(e) => {
            return render_detail(&state, user, id, DetailParams::default(), Some((submitted, e.to_string()))).await;
        }
    };
    let old = parse(&original)
        .map_err(|e| WebError::BadRequest(format!("the form's original values are invalid: {e}")))?
        .to_fields();
    let current = assets::detail(db, id).await?.business.to_fields();
    let mut patch = Map::new();
    let mut conflicts = Vec::new();
    for name in FIELD_NAMES {
        let (before, after) = (old.get(*name), new.get(*name));
        if before == after {
            continue;
        }
        if current.get(*name) != before {
            conflicts.push((*name).to_owned());
        }
        patch.insert((*name).to_owned(), after.cloned().unwrap_or(Value::Null));
    }
    // Custom fields one by one, like the others: only those the person changed.
    let values =
        |fields: &Map<String, Value>| fields.get("custom").and_then(Value::as_object).cloned().unwrap_or_default();
    let (old_custom, new_custom, current_custom) = (values(&old), values(&new), values(&current));
    let mut custom = Map::new();
    for key in definitions.fields.keys() {
        let (before, after) = (old_custom.get(key), new_custom.get(key));
        if before == after {
            continue;
        }
        if current_custom.get(key) != before {
            conflicts.push(custom_input(key));
        }
        custom.insert(key.clone(), after.cloned().unwrap_or(Value::Null));
    }
    if !custom.is_empty() {
        patch.insert("custom".to_owned(), Value::Object(custom));
    }
    if !conflicts.is_empty() {
        let message = format!(
            "Someone else changed {} since you opened this page. Your values are kept below; check them against the timeline and save again.",
            conflicts.join(", ")
        );
        // The form now carries the current values as its originals, so saving again applies.
        return render_detail(&state, user, id, DetailParams::default(), Some((submitted, message))).await;
    }
    // Values the person set must be in the managed lists (when those have values), as for imports.
    let next = BusinessFields::from_fields(&current)
        .patched(&patch, &definitions)
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let changed: std::collections::BTreeSet<String> = patch.keys().cloned().collect();
    let refused = lists::violations(&lists::all(db).await?, &next, &changed);
    if !refused.is_empty() {
        let message = refused.iter().map(|(field, why)| format!("{field}: {why}")).collect::<Vec<_>>().join("; ");
        return render_detail(&state, user, id, DetailParams::default(), Some((submitted, message))).await;
    }
    if !patch.is_empty() {
        let source = user.session.principal().source();
        let changes = assets::patch_business(db, id, &source, &patch).await?;
        tracing::info!(user = %user.session.name, asset_id = id, changes, "business fields edited");
    }
    Ok(Redirect::to(&format!("/assets/{id}?saved=1#business")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_urls_keep_filters_and_drop_empties() {
        let params =
            ListParams { q: Some("web 01".into()), status: Some("online".into()), page: Some(3), ..Default::default() };
        assert_eq!(params.url("/assets"), "/assets?q=web+01&status=online&page=3");
        assert_eq!(params.filters_only().url("/assets/export.csv"), "/assets/export.csv?q=web+01&status=online");
        let dated = ListParams { as_of: Some("2026-12-31".into()), page: Some(2), ..Default::default() };
        assert_eq!(dated.filters_only().url("/assets/export.csv"), "/assets/export.csv?as_of=2026-12-31");
        assert_eq!(ListParams::default().url("/assets"), "/assets");
    }

    #[test]
    fn form_patch_clears_empty_fields() {
        let form = BusinessForm(
            [("owner", "ops"), ("tags", "a, b"), ("status", "online")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        );
        let none = Definitions::default();
        let fields = BusinessFields::default().patched(&form.patch(&none), &none).expect("valid");
        assert_eq!(fields.owner.as_deref(), Some("ops"));
        assert_eq!(fields.tags, vec!["a", "b"]);
        assert_eq!(fields.idc, None);
    }
}
