//! Exports: the (filtered) asset list as CSV or XLSX, live or as of a date, and the year-end audit
//! workbook (assets and components as of a date, every change in a period) with CSV variants.
//!
//! Cells are typed: numbers are numbers and times are Excel date-times in the configured zone (named
//! in the column header) in XLSX, so a spreadsheet sorts and sums them; in CSV times are RFC 3339
//! with the zone's offset. Text that a spreadsheet would take for a formula
//! (starting with `=`, `+`, `-`, `@`, tab or carriage return) is prefixed with `'` in CSV (the
//! OWASP advice against CSV injection; the importer strips it again). XLSX cells are written as
//! strings, which no spreadsheet evaluates. A sheet holds at most [`MAX_SHEET_ROWS`] rows; longer
//! tables continue on "Changes 2", "Changes 3", ...

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use cmdb_model::business::BusinessFields;
use cmdb_model::catalog;
use cmdb_model::state::{AssetState, BUSINESS_SECTION};
use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::Row;
use tempfile::NamedTempFile;

use crate::db::{Db, from_us};
use crate::service::ServiceError;
use crate::service::asof::{self, Rebuilt};
use crate::service::assets::{AssetListItem, ListQuery, list_columns, list_item, push_filters};
use crate::service::time::{AsOf, AuditPeriod, Calendar};
use crate::store::sql::Sql;
use crate::store::{self, CHANGE_COLUMNS, ChangeRecord};

mod cell;
mod workbook;

pub use cell::{Cell, csv_text};
use workbook::Book;
pub use workbook::MAX_SHEET_ROWS;

/// Columns of the asset list export: the list's columns ([`crate::service::assets::LIST`]); lists
/// are joined with `,` (tags) and ` ` (addresses).
/// The list's own columns in an export (the custom values follow, one column per field, see
/// [`CustomColumns`]).
pub fn list_headers() -> &'static [&'static str] {
    static KEYS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        crate::service::assets::list_keys().iter().copied().filter(|k| *k != "custom").collect()
    });
    &KEYS
}

/// The custom fields as export columns: every field ever defined (a deleted field's values are
/// still evidence), in definition order, headed by key, each cell typed by its field.
#[derive(Debug, Clone, Default)]
pub struct CustomColumns(Vec<cmdb_model::custom_fields::FieldDefinition>);

impl CustomColumns {
    /// The columns of the fields defined now.
    pub async fn load(db: &Db) -> Result<CustomColumns, ServiceError> {
        let fields = crate::service::custom_fields::fields(db, true).await?;
        Ok(CustomColumns(fields.iter().map(crate::service::custom_fields::CustomField::definition).collect()))
    }

    /// The custom fields' headers.
    pub fn keys(&self) -> Vec<String> {
        self.0.iter().map(|d| d.key.clone()).collect()
    }

    /// `headers` followed by one header per field.
    pub fn headers(&self, headers: &[&str]) -> Vec<String> {
        headers.iter().map(|h| (*h).to_owned()).chain(self.0.iter().map(|d| d.key.clone())).collect()
    }

    /// The cells of `values`, one per field: dates as text (YYYY-MM-DD), decimals as numbers when
    /// a double holds them exactly (else as text), integers and flags as such.
    pub fn cells(&self, values: &std::collections::BTreeMap<String, Value>) -> Vec<Cell> {
        use cmdb_model::custom_fields::FieldType;
        self.0
            .iter()
            .map(|d| match (values.get(&d.key), d.field_type) {
                (None | Some(Value::Null), _) => Cell::Empty,
                (Some(Value::Bool(b)), _) => Cell::Bool(*b),
                (Some(Value::Number(n)), _) => {
                    n.as_i64().map_or_else(|| Cell::Number(n.as_f64().unwrap_or(0.0)), Cell::Int)
                }
                (Some(Value::String(text)), FieldType::Decimal) => match text.parse::<f64>() {
                    Ok(n) if cmdb_model::custom_fields::canonical_decimal(&format!("{n}")).as_deref() == Some(text) => {
                        Cell::Number(n)
                    }
                    _ => Cell::Text(text.clone()),
                },
                (Some(Value::String(text)), _) => Cell::Text(text.clone()),
                (Some(other), _) => Cell::Text(other.to_string()),
            })
            .collect()
    }
}

/// The cells of one list row, in [`list_headers`] order, then its custom values.
fn list_cells(item: &AssetListItem, custom: &CustomColumns) -> Vec<Cell> {
    let mut cells = vec![
        Cell::Int(item.id),
        Cell::Text(item.hostname.clone()),
        Cell::text(item.asset_tag.as_deref()),
        Cell::Text(item.status.clone()),
        Cell::text(item.idc.as_deref()),
        Cell::text(item.cabinet.as_deref()),
        Cell::int(item.cabinet_u),
        Cell::text(item.business_unit.as_deref()),
        Cell::text(item.owner.as_deref()),
        if item.tags.is_empty() { Cell::Empty } else { Cell::Text(item.tags.join(",")) },
        Cell::text(item.os_name.as_deref()),
        Cell::text(item.os_version.as_deref()),
        Cell::text(item.manufacturer.as_deref()),
        Cell::text(item.model.as_deref()),
        Cell::text(item.serial.as_deref()),
        Cell::text(item.cpu_model.as_deref()),
        Cell::int(item.cpu_count),
        Cell::int(item.memory_mb),
        Cell::int(item.disk_bytes),
        if item.ip_addresses.is_empty() { Cell::Empty } else { Cell::Text(item.ip_addresses.join(" ")) },
        Cell::text(item.manage_address.as_deref()),
        Cell::time(item.last_seen_at),
        Cell::time(item.last_collected_at),
        Cell::Time(item.created_at),
    ];
    cells.extend(custom.cells(&item.custom));
    cells
}

/// Columns of the audit workbook's asset sheet: every business field, then the key facts.
pub const AUDIT_ASSET_HEADERS: &[&str] = &[
    "asset_id",
    "hostname",
    "asset_tag",
    "status",
    "idc",
    "cabinet",
    "cabinet_u",
    "business_unit",
    "owner",
    "tags",
    "manage_address",
    "ssh_port",
    "salt_minion_id",
    "notes",
    "os_name",
    "os_version",
    "manufacturer",
    "model",
    "serial",
    "cpu_model",
    "cpu_count",
    "memory_mb",
    "disk_bytes",
    "ip_addresses",
    "created_at",
    "data_recorded_at",
    "data_collected_at",
    "possible_duplicates",
];

/// Assets flagged as possible duplicates, with the others (see [`crate::service::duplicates`]).
type Duplicates = std::collections::BTreeMap<i64, Vec<crate::service::duplicates::SharedIdentity>>;

fn audit_asset_cells(r: &Rebuilt, duplicates: &Duplicates, custom: &CustomColumns) -> Vec<Cell> {
    let s = &r.summary;
    let b = r
        .state
        .sections
        .get(BUSINESS_SECTION)
        .map(|section| BusinessFields::from_fields(&section.fields))
        .unwrap_or_default();
    let mut cells = vec![
        Cell::Int(r.asset_id),
        Cell::Text(s.hostname.clone()),
        Cell::text(b.asset_tag.as_deref()),
        Cell::Text(b.status.as_str().to_owned()),
        Cell::text(b.idc.as_deref()),
        Cell::text(b.cabinet.as_deref()),
        Cell::int(b.cabinet_u.map(i64::from)),
        Cell::text(b.business_unit.as_deref()),
        Cell::text(b.owner.as_deref()),
        if b.tags.is_empty() { Cell::Empty } else { Cell::Text(b.tags.join(",")) },
        Cell::text(b.manage_address.as_deref()),
        Cell::int(b.ssh_port.map(i64::from)),
        Cell::text(b.salt_minion_id.as_deref()),
        Cell::text(b.notes.as_deref()),
        Cell::text(s.os_name.as_deref()),
        Cell::text(s.os_version.as_deref()),
        Cell::text(s.manufacturer.as_deref()),
        Cell::text(s.model.as_deref()),
        Cell::text(s.serial.as_deref()),
        Cell::text(s.cpu_model.as_deref()),
        Cell::int(s.cpu_count),
        Cell::int(s.memory_mb),
        Cell::int(s.disk_bytes),
        if s.ip_addresses.is_empty() { Cell::Empty } else { Cell::Text(s.ip_addresses.clone()) },
        Cell::Time(from_us(r.created_at)),
        Cell::time(r.last_seen_at.map(from_us)),
        Cell::time(r.last_collected_at.map(from_us)),
        match duplicates.get(&r.asset_id) {
            Some(others) => Cell::Text(
                others
                    .iter()
                    .map(|d| format!("{} {} (same {})", d.asset_id, d.hostname, d.shares))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            None => Cell::Empty,
        },
    ];
    cells.extend(custom.cells(&b.custom));
    cells
}

/// Columns of the component sheet.
pub const COMPONENT_HEADERS: &[&str] =
    &["asset_id", "hostname", "section", "key", "manufacturer", "model", "serial", "capacity", "data"];

fn first_text(component: &serde_json::Map<String, Value>, keys: &[&str]) -> Cell {
    keys.iter()
        .find_map(|k| component.get(*k).and_then(Value::as_str).filter(|v| !v.is_empty()))
        .map_or(Cell::Empty, |v| Cell::Text(v.to_owned()))
}

fn component_rows(r: &Rebuilt) -> Vec<Vec<Cell>> {
    let mut out = Vec::new();
    for (section, state) in &r.state.sections {
        for (key, component) in &state.components {
            // Capacity in the unit the collector reports, named so a reader cannot mistake it.
            let capacity = if let Some(bytes) = component.get("capacity_bytes").and_then(Value::as_i64) {
                Cell::Text(format!("{bytes} bytes"))
            } else if let Some(mb) = component.get("capacity_mb").and_then(Value::as_i64) {
                Cell::Text(format!("{mb} MiB"))
            } else {
                Cell::Empty
            };
            out.push(vec![
                Cell::Int(r.asset_id),
                Cell::Text(r.summary.hostname.clone()),
                Cell::Text(section.clone()),
                Cell::Text(key.clone()),
                first_text(component, &["manufacturer", "vendor"]),
                first_text(component, &["model", "part_number"]),
                first_text(component, &["sn"]),
                capacity,
                Cell::Text(serde_json::to_string(component).unwrap_or_default()),
            ]);
        }
    }
    out
}

/// A component sheet of the audit workbook: one per built-in component section, with a column per
/// catalog field (two for sizes: the rounded GB/GiB figure and the exact one), so numbers are
/// numbers and a MAC address is never in a serial column.
pub struct ComponentSheet {
    /// The section (`disk`).
    pub section: &'static catalog::Section,
    /// The column headers.
    pub headers: Vec<String>,
}

/// The component sheets, in the catalog's order.
pub fn component_sheets() -> Vec<ComponentSheet> {
    catalog::SECTIONS
        .iter()
        .filter(|s| !s.component_fields.is_empty())
        .map(|section| {
            let mut headers = vec!["asset_id".to_owned(), "hostname".to_owned(), section.key_label.to_owned()];
            for f in section.component_fields {
                headers.extend(field_headers(f));
            }
            headers.push(OTHER_FIELDS.to_owned());
            ComponentSheet { section, headers }
        })
        .collect()
}

/// The last column of a component sheet: fields the catalog does not name, as JSON.
const OTHER_FIELDS: &str = "other fields";

/// Columns of the sheet of components in sections the catalog does not know.
const OTHER_COMPONENT_HEADERS: &[&str] = &["asset_id", "hostname", "section", "key", "data"];

/// What follows a catalog field's label in each column it makes: sizes make two (the rounded
/// figure and the exact one), every other unit one.
fn field_suffixes(unit: catalog::Unit) -> &'static [&'static str] {
    use catalog::Unit;
    match unit {
        Unit::StorageBytes => &[" (GB)", " (bytes)"],
        Unit::MemoryMib => &[" (GiB)", " (MiB)"],
        Unit::MegaTransfers => &[" (MT/s)"],
        Unit::PlainBytes => &[" (bytes)"],
        Unit::Text | Unit::Number | Unit::Flag | Unit::List => &[""],
    }
}

/// The columns one catalog field makes.
fn field_headers(f: &catalog::Field) -> impl Iterator<Item = String> + '_ {
    field_suffixes(f.unit).iter().map(move |suffix| format!("{}{suffix}", f.label))
}

/// The cells one catalog field makes, as many as [`field_headers`] names. A value of another type
/// than the unit expects (an older agent's text) is written as text in the first column.
fn field_cells(f: &catalog::Field, value: Option<&Value>, out: &mut Vec<Cell>) {
    use catalog::Unit;
    let start = out.len();
    match (f.unit, value) {
        (_, None | Some(Value::Null)) => {}
        (Unit::StorageBytes, Some(Value::Number(n))) if n.as_u64().is_some() => {
            let bytes = n.as_u64().unwrap_or_default();
            out.extend([Cell::Number(catalog::gigabytes(bytes)), Cell::Int(bytes as i64)]);
        }
        (Unit::MemoryMib, Some(Value::Number(n))) if n.as_u64().is_some() => {
            let mib = n.as_u64().unwrap_or_default();
            out.extend([Cell::Number(catalog::gibibytes(mib)), Cell::Int(mib as i64)]);
        }
        (Unit::Number | Unit::MegaTransfers | Unit::PlainBytes, Some(Value::Number(n))) if n.as_i64().is_some() => {
            out.push(Cell::Int(n.as_i64().unwrap_or_default()));
        }
        (Unit::Flag, Some(Value::Bool(b))) => out.push(Cell::Bool(*b)),
        (_, Some(Value::Array(items))) => {
            out.push(Cell::Text(items.iter().map(catalog::plain).collect::<Vec<_>>().join(", ")));
        }
        (_, Some(Value::String(text))) if text.is_empty() => {}
        (_, Some(other)) => out.push(Cell::Text(catalog::plain(other))),
    }
    out.resize(start + field_suffixes(f.unit).len(), Cell::Empty);
}

/// The rows of `r`'s components: for each component section the catalog knows, its sheet's index
/// in `sheets` and its rows; components of other sections go to `other` (one JSON cell each).
fn section_component_rows(
    r: &Rebuilt,
    sheets: &[ComponentSheet],
    rows: &mut [Vec<Vec<Cell>>],
    other: &mut Vec<Vec<Cell>>,
) -> u64 {
    let mut count = 0;
    for (section, state) in &r.state.sections {
        let index = sheets.iter().position(|s| s.section.name == section);
        let key_field = cmdb_model::report::component_list(section).map(|(_, k)| k);
        for (key, component) in &state.components {
            count += 1;
            let Some(index) = index else {
                other.push(vec![
                    Cell::Int(r.asset_id),
                    Cell::Text(r.summary.hostname.clone()),
                    Cell::Text(section.clone()),
                    Cell::Text(key.clone()),
                    Cell::Text(serde_json::to_string(component).unwrap_or_default()),
                ]);
                continue;
            };
            let fields = sheets[index].section.component_fields;
            let mut cells = Vec::with_capacity(sheets[index].headers.len());
            cells.extend([Cell::Int(r.asset_id), Cell::Text(r.summary.hostname.clone()), Cell::Text(key.clone())]);
            for f in fields {
                field_cells(f, component.get(f.key), &mut cells);
            }
            let unknown: serde_json::Map<String, Value> = component
                .iter()
                .filter(|(k, _)| Some(k.as_str()) != key_field && !fields.iter().any(|f| f.key == k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            cells.push(if unknown.is_empty() { Cell::Empty } else { Cell::Text(Value::Object(unknown).to_string()) });
            rows[index].push(cells);
        }
    }
    count
}

/// Columns of the change sheet.
pub const CHANGE_HEADERS: &[&str] = &[
    "change_id",
    "recorded_at",
    "collected_at",
    "asset_id",
    "hostname",
    "source",
    "report_id",
    "section",
    "component",
    "path",
    "action",
    "old",
    "new",
    "summary",
];

fn change_cells(c: &ChangeRecord, hostname: &str) -> Vec<Cell> {
    let json = |v: &Option<Value>| v.as_ref().map_or(Cell::Empty, |v| Cell::Text(v.to_string()));
    vec![
        Cell::Int(c.id),
        Cell::Time(c.recorded_at),
        Cell::time(c.collected_at),
        Cell::Int(c.asset_id),
        Cell::Text(hostname.to_owned()),
        Cell::Text(c.source.clone()),
        Cell::text(c.report_id.as_deref()),
        Cell::Text(c.section.clone()),
        Cell::text(c.component.as_deref()),
        Cell::Text(c.path.clone()),
        Cell::Text(c.action.as_str().to_owned()),
        json(&c.old),
        json(&c.new),
        Cell::Text(c.summary.clone()),
    ]
}

/// Where export rows go: a CSV document or a run of worksheets.
trait Table {
    fn row(&mut self, cells: &[Cell]) -> Result<(), ServiceError>;
}

/// A CSV document being written.
struct CsvTable<W: std::io::Write = Vec<u8>> {
    writer: csv::Writer<W>,
    rows: u64,
    tz: Tz,
}

impl CsvTable {
    fn new(headers: &[&str], tz: Tz) -> Result<CsvTable, ServiceError> {
        CsvTable::to(Vec::new(), headers, tz)
    }
}

impl<W: std::io::Write> CsvTable<W> {
    /// A CSV document written to `sink` (the CSV writer buffers).
    fn to(sink: W, headers: &[&str], tz: Tz) -> Result<CsvTable<W>, ServiceError> {
        let mut writer = csv::Writer::from_writer(sink);
        writer.write_record(headers).map_err(csv_error)?;
        Ok(CsvTable { writer, rows: 0, tz })
    }

    fn finish(self) -> Result<W, ServiceError> {
        self.writer.into_inner().map_err(|e| ServiceError::Bug(format!("cannot finish the CSV: {e}")))
    }
}

fn csv_error(e: csv::Error) -> ServiceError {
    ServiceError::Bug(format!("cannot write the CSV: {e}"))
}

impl<W: std::io::Write> Table for CsvTable<W> {
    fn row(&mut self, cells: &[Cell]) -> Result<(), ServiceError> {
        self.rows += 1;
        let tz = self.tz;
        self.writer.write_record(cells.iter().map(|c| c.csv(tz))).map_err(csv_error)
    }
}

/// The live list rows `query` selects (every page), in its order.
pub async fn list_items(db: &Db, query: &ListQuery) -> Result<Vec<AssetListItem>, ServiceError> {
    let query = &crate::service::assets::resolve_custom(db, query).await?;
    let mut q = Sql::new(format!("SELECT {} FROM assets", list_columns()));
    push_filters(&mut q, db.backend(), query);
    q.push(&crate::service::assets::order_by_query(query, db.backend()));
    let rows = q.query().fetch_all(db.reader()).await?;
    Ok(rows.iter().map(list_item).collect::<Result<Vec<_>, _>>()?)
}

/// `items` as CSV, with a column per custom field.
pub async fn items_csv(db: &Db, items: &[AssetListItem], tz: Tz) -> Result<Vec<u8>, ServiceError> {
    let custom = CustomColumns::load(db).await?;
    let headers = custom.headers(list_headers());
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut table = CsvTable::new(&headers, tz)?;
    for item in items {
        table.row(&list_cells(item, &custom))?;
    }
    table.finish()
}

/// `items` as an XLSX workbook with one sheet, "Assets", with a column per custom field.
pub async fn items_xlsx(db: &Db, items: &[AssetListItem], tz: Tz) -> Result<Vec<u8>, ServiceError> {
    let custom = CustomColumns::load(db).await?;
    let mut book = Book::new(tz);
    book.plain = custom.keys();
    let table = book.table("Assets", &custom.headers(list_headers()))?;
    for item in items {
        book.row(table, list_cells(item, &custom))?;
    }
    book.finish()
}

/// Calls `each` for every asset as it stood at `at`, in asset id order, with its state. Streams
/// the snapshot's rows and merges the assets changed since, so memory stays bounded.
pub async fn for_each_asset_as_of(
    db: &Db,
    at: DateTime<Utc>,
    each: &mut (dyn FnMut(&Rebuilt) -> Result<(), ServiceError> + Send),
) -> Result<u64, ServiceError> {
    // Reading never writes: the export starts from the latest snapshot the daily task (or an
    // admin) took at or before `at`; a date's as-of has one at that very instant.
    let at_us = at.timestamp_micros();
    let mut conn = db.reader().acquire().await?;
    let snapshot = asof::snapshot_before(&mut conn, at_us).await?;
    let mut changed = asof::rebuild_changed(&mut conn, snapshot, at_us, None, true).await?;
    // Assets nothing was recorded for by then read as their imported baseline, if any.
    changed.extend(asof::baselines_at(&mut conn, at_us, None).await?);
    changed.sort_by_key(|r| r.asset_id);
    let mut changed = changed.into_iter().peekable();
    let mut count = 0u64;
    // Records deleted (or merged) by `at` are in no export of that time.
    let mut each = |r: &Rebuilt| -> Result<u64, ServiceError> {
        if r.summary.deleted_at.is_some() {
            return Ok(0);
        }
        each(r).map(|()| 1)
    };
    if let Some(s) = snapshot {
        // One statement whose rows are handled as they arrive: the database produces the next
        // rows while this task rebuilds the ones before (a page at a time, each fetched whole
        // and then handled, left one side idle while the other worked). Memory stays bounded:
        // the driver holds only a few rows ahead. A snapshot's rows never change, so reading
        // them in one statement sees the same rows as reading them in pages.
        let mut rows = sqlx::query(
            "SELECT m.asset_id, m.upto, v.created_at, v.last_seen_at, v.last_collected_at, v.state \
             FROM snapshot_members m JOIN asset_versions v ON v.asset_id = m.asset_id AND v.upto = m.upto \
             WHERE m.snapshot_id = $1 ORDER BY m.asset_id",
        )
        .bind(s.id)
        .fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            let asset_id: i64 = row.try_get(0)?;
            while let Some(next) = changed.next_if(|c| c.asset_id < asset_id) {
                count += each(&next)?;
            }
            if let Some(next) = changed.next_if(|c| c.asset_id == asset_id) {
                count += each(&next)?;
                continue;
            }
            let text: &str = row.try_get(5)?;
            let state: AssetState = serde_json::from_str(text)
                .map_err(|e| ServiceError::Bug(format!("a stored snapshot state does not parse: {e}")))?;
            let rebuilt = Rebuilt::without_terms(
                asset_id,
                row.try_get(1)?,
                row.try_get(2)?,
                (row.try_get(3)?, row.try_get(4)?),
                state,
            );
            count += each(&rebuilt)?;
        }
    }
    for next in changed {
        count += each(&next)?;
    }
    Ok(count)
}

/// Calls `each` for every change recorded in [from, to] (both inclusive), oldest first, with the asset's current
/// host name. Reads in pages by (recorded_at, id), so memory stays bounded; the page's lower bound
/// is also stated as a plain range (`recorded_at >= $1`) so the index on recorded_at bounds the
/// scan on both ends (an OR alone made PostgreSQL filter every older change, 3 s a page).
pub async fn for_each_change(
    db: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    asset_id: Option<i64>,
    each: &mut (dyn FnMut(&ChangeRecord, &str) -> Result<(), ServiceError> + Send),
) -> Result<u64, ServiceError> {
    let columns = CHANGE_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ");
    let (mut after_time, mut after_id) = (from.timestamp_micros() - 1, i64::MAX);
    let to = to.timestamp_micros();
    let mut count = 0;
    let mut conn = db.reader().acquire().await?;
    loop {
        let one_asset = if asset_id.is_some() { " AND c.asset_id = $4" } else { "" };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns}, a.hostname FROM changes c JOIN assets a ON a.id = c.asset_id \
             WHERE c.recorded_at >= $1 AND c.recorded_at <= $3 AND (c.recorded_at > $1 OR c.id > $2){one_asset} \
             ORDER BY c.recorded_at, c.id LIMIT 5000"
        )))
        .bind(after_time)
        .bind(after_id)
        .bind(to);
        if let Some(id) = asset_id {
            query = query.bind(id);
        }
        // Rows are handled as they arrive, while the database produces the next ones.
        let mut rows = query.fetch(&mut *conn);
        let mut page = 0;
        while let Some(row) = rows.try_next().await? {
            let record = store::change_row(&row)?;
            let hostname: &str = row.try_get(14)?;
            after_time = record.recorded_at.timestamp_micros();
            after_id = record.id;
            each(&record, hostname)?;
            page += 1;
        }
        count += page;
        if page == 0 {
            break;
        }
    }
    Ok(count)
}

/// The audit's asset sheet as CSV: every asset as of `as_of`.
pub async fn audit_assets_csv(db: &Db, as_of: AsOf) -> Result<NamedTempFile, ServiceError> {
    let custom = CustomColumns::load(db).await?;
    let headers = custom.headers(AUDIT_ASSET_HEADERS);
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut table = CsvTable::to(temp_file()?, &headers, as_of.tz)?;
    let duplicates = crate::service::duplicates::all(db).await?;
    for_each_asset_as_of(db, as_of.effective, &mut |r| table.row(&audit_asset_cells(r, &duplicates, &custom))).await?;
    table.finish()
}

/// The audit's component sheet as CSV: every component of every asset as of `as_of`.
pub async fn audit_components_csv(db: &Db, as_of: AsOf) -> Result<NamedTempFile, ServiceError> {
    let mut table = CsvTable::to(temp_file()?, COMPONENT_HEADERS, as_of.tz)?;
    for_each_asset_as_of(db, as_of.effective, &mut |r| {
        for cells in component_rows(r) {
            table.row(&cells)?;
        }
        Ok(())
    })
    .await?;
    table.finish()
}

/// The audit's change sheet as CSV: every change recorded in [from, to).
pub async fn audit_changes_csv(
    db: &Db,
    period: &AuditPeriod,
    asset_id: Option<i64>,
) -> Result<NamedTempFile, ServiceError> {
    let mut table = CsvTable::to(temp_file()?, CHANGE_HEADERS, period.as_of.tz)?;
    for_each_change(db, period.from, period.to, asset_id, &mut |c, hostname| table.row(&change_cells(c, hostname)))
        .await?;
    table.finish()
}

/// The audit log action of every audit export, from the API and the pages alike.
pub const AUDIT_ACTION: &str = "export.audit";

/// The audit workbook's file name: the effective as-of in the configured zone, with its offset.
pub fn audit_file_name(period: &AuditPeriod) -> String {
    format!("cmdb-audit-{}.xlsx", period.as_of.file_stamp())
}

/// How the audit log describes an audit workbook.
pub fn describe_audit(period: &AuditPeriod) -> String {
    let cal = Calendar::new(period.as_of.tz, 0);
    format!(
        "audit workbook as of {} with changes from {} to {}",
        period.as_of.stated().at,
        cal.state(period.from).at,
        cal.state(period.to).at
    )
}

/// A temporary file for an export (deleted when dropped).
fn temp_file() -> Result<NamedTempFile, ServiceError> {
    NamedTempFile::new().map_err(|e| ServiceError::Bug(format!("cannot create a temporary file for the export: {e}")))
}

/// The audit workbook, written to a temporary file: assets as of the period's as-of, their
/// components, and every change recorded in [from, to]. It takes seconds of CPU for a large
/// inventory, so it runs on a blocking thread and the async workers keep serving meanwhile.
pub async fn audit_workbook(db: &Db, period: &AuditPeriod) -> Result<NamedTempFile, ServiceError> {
    let (db, period) = (db.clone(), *period);
    tokio::task::spawn_blocking(move || tokio::runtime::Handle::current().block_on(write_audit_workbook(&db, &period)))
        .await
        .map_err(|e| ServiceError::Bug(format!("the audit workbook task failed: {e}")))?
}

/// Rows on their way to the workbook's writer thread.
enum Rows {
    Assets(Vec<Vec<Cell>>),
    /// Rows of the component sheet at this index of [`component_sheets`].
    Components(usize, Vec<Vec<Cell>>),
    OtherComponents(Vec<Vec<Cell>>),
    Changes(Vec<Vec<Cell>>),
}

/// Rows per message to the writer thread.
const BATCH: usize = 2_000;

/// What the reader counted, for the About sheet.
struct Counts {
    assets: u64,
    components: u64,
    changes: u64,
}

/// Builds the workbook in two threads: this one reads the database, rebuilds the assets and makes
/// the rows; a writer thread writes them into the sheets (the XML and its compression are half
/// the work). The channel is bounded, so memory stays flat whichever side is slower.
async fn write_audit_workbook(db: &Db, period: &AuditPeriod) -> Result<NamedTempFile, ServiceError> {
    let (as_of, from, to) = (period.as_of.effective, period.from, period.to);
    let started = std::time::Instant::now();
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Rows>(8);
    let tz = period.as_of.tz;
    let sheets = component_sheets();
    let tables: Vec<(&'static str, Vec<String>)> =
        sheets.iter().map(|s| (s.section.title, s.headers.clone())).collect();
    let custom = CustomColumns::load(db).await?;
    let asset_headers = (custom.headers(AUDIT_ASSET_HEADERS), custom.keys());
    let writer = std::thread::Builder::new()
        .name("audit-workbook".to_owned())
        .spawn(move || write_sheets(receiver, tz, asset_headers, tables))
        .map_err(|e| ServiceError::Bug(format!("cannot start the workbook writer: {e}")))?;
    let gone = || ServiceError::Bug("the workbook writer stopped".to_owned());
    let duplicates = crate::service::duplicates::all(db).await?;
    let mut assets_batch = Vec::with_capacity(BATCH);
    let mut component_batches: Vec<Vec<Vec<Cell>>> = sheets.iter().map(|_| Vec::with_capacity(BATCH)).collect();
    let mut other_batch = Vec::new();
    let mut components = 0u64;
    // The changes are read after the assets. Reading them beside the assets (on a connection of
    // their own; the writer takes any sheet's rows in any order) was tried: on PostgreSQL, whose
    // server then competes for the same two cores, both runs were slower (17-19 s against 15 s).
    let read = async {
        let assets = for_each_asset_as_of(db, as_of, &mut |r| {
            assets_batch.push(audit_asset_cells(r, &duplicates, &custom));
            components += section_component_rows(r, &sheets, &mut component_batches, &mut other_batch);
            if assets_batch.len() >= BATCH {
                sender.send(Rows::Assets(std::mem::take(&mut assets_batch))).map_err(|_| gone())?;
            }
            for (index, batch) in component_batches.iter_mut().enumerate() {
                if batch.len() >= BATCH {
                    sender.send(Rows::Components(index, std::mem::take(batch))).map_err(|_| gone())?;
                }
            }
            if other_batch.len() >= BATCH {
                sender.send(Rows::OtherComponents(std::mem::take(&mut other_batch))).map_err(|_| gone())?;
            }
            Ok(())
        })
        .await?;
        sender.send(Rows::Assets(std::mem::take(&mut assets_batch))).map_err(|_| gone())?;
        for (index, batch) in component_batches.iter_mut().enumerate() {
            sender.send(Rows::Components(index, std::mem::take(batch))).map_err(|_| gone())?;
        }
        if !other_batch.is_empty() {
            sender.send(Rows::OtherComponents(std::mem::take(&mut other_batch))).map_err(|_| gone())?;
        }
        let mut changes_batch = Vec::with_capacity(BATCH);
        let changes = for_each_change(db, from, to, None, &mut |c, hostname| {
            changes_batch.push(change_cells(c, hostname));
            if changes_batch.len() >= BATCH {
                sender.send(Rows::Changes(std::mem::take(&mut changes_batch))).map_err(|_| gone())?;
            }
            Ok(())
        })
        .await?;
        sender.send(Rows::Changes(changes_batch)).map_err(|_| gone())?;
        Ok::<_, ServiceError>((assets, changes))
    };
    // The history digest (one query on a reader of its own) is read beside the sheets' rows.
    let (counted, digest) = tokio::join!(read, crate::service::chains::digest(db, period.as_of));
    let read_ms = started.elapsed().as_millis() as u64;
    drop(sender);
    let book = writer.join().map_err(|_| ServiceError::Bug("the workbook writer panicked".to_owned()))?;
    let sheets_ms = started.elapsed().as_millis() as u64;
    // A failed read is the error to report (the writer then stopped on the closed channel).
    let (assets, changes) = counted?;
    let book = book?;
    let history_starts = asof::history_start(db).await?;
    let baselines = asof::baselines_used(db, as_of).await?;
    let digest = digest?;
    let counts = Counts { assets, components, changes };
    let file = finish_audit_workbook(book, period, &sheets, history_starts, &baselines, &digest, &counts)?;
    let bytes = file.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    tracing::info!(
        %as_of, %from, %to, assets, components, changes,
        bytes, read_ms, sheets_ms, elapsed_ms = started.elapsed().as_millis() as u64,
        "audit workbook written"
    );
    Ok(file)
}

/// The writer thread: the sheets of the audit workbook, from the rows it receives; `components`
/// are the component sheets' titles and headers, in [`Rows::Components`] index order.
fn write_sheets(
    receiver: std::sync::mpsc::Receiver<Rows>,
    tz: Tz,
    (asset_headers, custom_keys): (Vec<String>, Vec<String>),
    components: Vec<(&'static str, Vec<String>)>,
) -> Result<Book, ServiceError> {
    let mut book = Book::new(tz);
    book.plain = custom_keys;
    // "About" comes first but is filled last, when the counts are known; it is a normal sheet,
    // which can be written in any order.
    book.add_plain_sheet("About")?;
    let asset_table = book.table("Assets", &asset_headers)?;
    let mut component_tables = Vec::new();
    for (title, headers) in &components {
        component_tables.push(book.table(title, headers)?);
    }
    let change_table = book.table("Changes", CHANGE_HEADERS)?;
    let mut other_table = None;
    for rows in receiver {
        let (table, rows) = match rows {
            Rows::Assets(rows) => (asset_table, rows),
            Rows::Components(index, rows) => (component_tables[index], rows),
            Rows::OtherComponents(rows) => {
                let table = match other_table {
                    Some(table) => table,
                    None => *other_table.insert(book.table("Other components", OTHER_COMPONENT_HEADERS)?),
                };
                (table, rows)
            }
            Rows::Changes(rows) => (change_table, rows),
        };
        for cells in rows {
            book.row(table, cells)?;
        }
    }
    Ok(book)
}

/// Fills the About sheet and writes the workbook to a temporary file.
fn finish_audit_workbook(
    mut book: Book,
    period: &AuditPeriod,
    sheets: &[ComponentSheet],
    history_starts: Option<DateTime<Utc>>,
    baselines: &[asof::BaselineUse],
    digest: &crate::service::chains::HistoryDigest,
    counts: &Counts,
) -> Result<NamedTempFile, ServiceError> {
    let (as_of, from, to) = (period.as_of.effective, period.from, period.to);
    let tz = period.as_of.tz;
    let cal = Calendar::new(tz, 0);
    let requested = if period.as_of.requested == period.as_of.effective {
        Cell::Empty
    } else {
        Cell::Text(format!(
            "{} (later than the latest settled instant, so read at the as-of above)",
            cal.state(period.as_of.requested).at
        ))
    };
    let at = |t: DateTime<Utc>| Cell::Text(cal.state(t).at);
    let components: Vec<&str> = sheets.iter().map(|s| s.section.title).collect();
    let lines: Vec<(&str, Cell)> = vec![
        ("cmdb audit export", Cell::Empty),
        ("Time zone", Cell::Text(tz.name().to_owned())),
        ("Assets and components as of", at(as_of)),
        ("As of requested", requested),
        ("Changes recorded from (inclusive)", at(from)),
        ("Changes recorded to (inclusive)", at(to)),
        ("History starts", history_starts.map_or(Cell::Text("no change recorded yet".to_owned()), at)),
        ("Generated at", at(Utc::now())),
        ("Assets", Cell::Int(counts.assets as i64)),
        ("Components", Cell::Int(counts.components as i64)),
        ("Changes", Cell::Int(counts.changes as i64)),
        ("History digest", Cell::Text(digest.digest.clone())),
        ("History digest as of", Cell::Text(digest.as_of.at.clone())),
        ("Change chains in the digest", Cell::Int(digest.chains as i64)),
        ("Verify the history behind this workbook", Cell::Text(digest.verify_command.clone())),
        ("", Cell::Empty),
        ("How each sheet was built", Cell::Empty),
        (
            "Assets",
            Cell::Text(
                "Every asset as it stood at the as-of instant, rebuilt from the latest daily snapshot at or before \
                 it and the changes recorded after that snapshot up to the instant. Sizes are in MiB (memory) \
                 and bytes (disk) as the collectors report them."
                    .to_owned(),
            ),
        ),
        (
            "Component sheets",
            Cell::Text(format!(
                "{}: one row per component of those assets at the same instant, one column per field. \
                 Sizes have two columns: GB (decimal, as drives are labelled) or GiB (binary, as memory is \
                 sold) rounded to two decimals, and the exact figure. Fields cmdb does not name are under \
                 \"{OTHER_FIELDS}\" as JSON.",
                components.join(", ")
            )),
        ),
        (
            "possible_duplicates",
            Cell::Text(
                "On the Assets sheet: the other assets that share the asset's board serial or UUID as the \
                 records stand now (possibly one machine recorded twice; cmdb never merges on its own)."
                    .to_owned(),
            ),
        ),
        (
            "Changes",
            Cell::Text(
                "Every change record the server wrote in the period, oldest first: one row per field that \
                 changed, with the values before and after as JSON and a sentence that describes it."
                    .to_owned(),
            ),
        ),
        (
            "History digest",
            Cell::Text(format!(
                "Every asset's change records form a hash chain (SHA-256 over each record's content and the hash of \
                 the record before it); the digest is a Merkle root ({}) over every asset's chain head as of the \
                 instant above. Keep this workbook, or the digest, outside cmdb: the command above, run later \
                 against the cmdb database, recomputes it from the records themselves and fails if any record up \
                 to then was edited, deleted or inserted.",
                crate::service::chains::ALGORITHM
            )),
        ),
        (
            "Times",
            Cell::Text(format!(
                "Date-time cells are Excel date-times in {} (the zone is in each column header). As of a \
                 time means every change the server recorded at or before it (recorded_at); \
                 data_collected_at is when the report that last changed the asset was collected.",
                tz.name()
            )),
        ),
    ];
    let mut lines = lines;
    lines.push(("", Cell::Empty));
    if baselines.is_empty() {
        lines.push(("Baselines", Cell::Text("none: every asset is as cmdb recorded it".to_owned())));
    }
    for b in baselines {
        lines.push((
            "Baseline",
            Cell::Text(format!(
                "{}: the state as of {}, imported {} by {}; {} asset(s) with nothing recorded by the as-of instant are as \
                 this sheet says (a baseline gives way to an asset's first recorded change)",
                b.file_name,
                cal.state(b.effective_at).at,
                cal.state(b.imported_at).at,
                b.imported_by,
                b.rows
            )),
        ));
    }
    book.fill_plain_sheet(0, lines, (34.0, 100.0))?;
    let file = temp_file()?;
    book.finish_to(&file)?;
    Ok(file)
}

/// The import template: an "Import" sheet headed by every column an import takes, and a
/// "Columns" sheet that says what each holds.
pub async fn import_template(db: &Db, tz: Tz) -> Result<Vec<u8>, ServiceError> {
    let columns = crate::service::import::template_columns(db).await?;
    let mut book = Book::new(tz);
    // Keys are written as they are: the template imports back.
    book.plain = columns.iter().map(|(key, _)| key.clone()).collect();
    let keys: Vec<&str> = columns.iter().map(|(key, _)| key.as_str()).collect();
    book.table("Import", &keys)?;
    let help = book.table("Columns", &["column", "holds"])?;
    for (key, what) in &columns {
        book.row(help, [Cell::Text(key.clone()), Cell::Text(what.clone())])?;
    }
    book.finish()
}

/// A stocktake's report: Summary (counts, scope, who opened and closed it and when, the zone),
/// Verified, Moved, Missing, Unexpected and Collection only. Built from the frozen list and the
/// recorded sightings only, so a closed stocktake's report never changes.
pub fn stocktake_report(stocktake: &crate::service::stocktakes::Stocktake, tz: Tz) -> Result<Vec<u8>, ServiceError> {
    let cal = Calendar::new(tz, 0);
    let mut book = Book::new(tz);
    let summary = book.table("Summary", &["item", "value"])?;
    let c = &stocktake.counts;
    let text = |s: &str| Cell::Text(s.to_owned());
    let lines: Vec<(&str, Cell)> = vec![
        ("Stocktake", text(&stocktake.name)),
        ("Scope", text(&serde_json::to_string(&stocktake.scope).unwrap_or_default())),
        ("Time zone", text(tz.name())),
        ("Opened", text(&format!("{} by {}", cal.state(stocktake.opened_at).at, stocktake.opened_by))),
        (
            "Closed",
            match (&stocktake.closed_at, &stocktake.closed_by) {
                (Some(at), Some(by)) => text(&format!("{} by {}", cal.state(*at).at, by)),
                _ => text("open: counts may still change"),
            },
        ),
        ("Expected", Cell::Int(c.expected)),
        ("Verified", Cell::Int(c.verified)),
        ("Moved", Cell::Int(c.moved)),
        ("Missing", Cell::Int(c.missing)),
        ("Unexpected", Cell::Int(c.unexpected)),
        ("Seen by collection only", Cell::Int(c.seen_by_collection_only)),
    ];
    for (label, value) in lines {
        book.row(summary, [text(label), value])?;
    }
    let item_headers = ["asset_id", "hostname", "asset_tag", "serial", "idc", "cabinet", "cabinet_u"];
    let item_cells = |i: &crate::service::stocktakes::Item| {
        vec![
            Cell::Int(i.asset_id),
            Cell::Text(i.hostname.clone()),
            Cell::text(i.asset_tag.as_deref()),
            Cell::text(i.serial.as_deref()),
            Cell::text(i.idc.as_deref()),
            Cell::text(i.cabinet.as_deref()),
            Cell::int(i.cabinet_u),
        ]
    };
    let sighting_headers =
        ["code", "asset_id", "hostname", "seen_idc", "seen_cabinet", "seen_cabinet_u", "note", "seen_at", "seen_by"];
    let sighting_cells = |s: &crate::service::stocktakes::SightingRecord| {
        vec![
            Cell::Text(s.code.clone()),
            Cell::int(s.asset_id),
            Cell::text(s.hostname.as_deref()),
            Cell::text(s.idc.as_deref()),
            Cell::text(s.cabinet.as_deref()),
            Cell::int(s.cabinet_u),
            Cell::text(s.note.as_deref()),
            Cell::Time(s.seen_at),
            Cell::Text(s.seen_by.clone()),
        ]
    };
    for (sheet, status) in [("Verified", "verified"), ("Missing", "missing")] {
        let table = book.table(sheet, &item_headers)?;
        for item in stocktake.items.iter().filter(|i| i.status == status) {
            book.row(table, item_cells(item))?;
        }
    }
    // Moved: where the record said, and where it was seen (its first sighting).
    let moved = book.table("Moved", &[&item_headers[..], &sighting_headers[..]].concat())?;
    for item in stocktake.items.iter().filter(|i| i.status == "moved") {
        let first = stocktake.sightings.iter().find(|s| s.asset_id == Some(item.asset_id) && s.outcome == "moved");
        let mut cells = item_cells(item);
        cells.extend(first.map(sighting_cells).unwrap_or_default());
        book.row(moved, cells)?;
    }
    let unexpected = book.table("Unexpected", &[&sighting_headers[..], &["outcome"][..]].concat())?;
    for s in stocktake.sightings.iter().filter(|s| s.outcome == "unexpected" || s.outcome == "unknown") {
        let mut cells = sighting_cells(s);
        cells.push(Cell::Text(s.outcome.clone()));
        book.row(unexpected, cells)?;
    }
    let collection = book.table("Collection only", &item_headers)?;
    for item in stocktake.items.iter().filter(|i| i.status == "missing" && i.reported) {
        book.row(collection, item_cells(item))?;
    }
    book.finish()
}
