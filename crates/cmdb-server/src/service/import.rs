//! Bulk import of hosts and business fields from CSV.
//!
//! The file has a header row. `hostname` registers a host by hand when no live (non-retired)
//! asset has that name, and edits the one that has it otherwise; an `id` (or `asset_id`) column
//! names the asset to edit directly. Every other recognised column is a business field
//! (`cmdb_model::business::FIELD_NAMES`); the read-only columns of the list export are accepted and
//! ignored, so an exported list can be edited and imported back. An empty cell clears the field,
//! except `status`, which it leaves alone. Tags are comma-separated.
//!
//! Every line is checked before anything is written: field values, managed lists, duplicates, and
//! that the named assets exist. A dry run stops there and reports what each line would do. A real
//! run with any invalid line applies nothing. Each applied line is an ordinary registration or
//! business edit through [`crate::service::assets`], so it is a change record whose source is the user.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use cmdb_model::business::{BusinessFields, FIELD_NAMES};
use cmdb_model::custom_fields::Definitions;
use cmdb_model::identity::normalize_serial;
use cmdb_model::state::BUSINESS_SECTION;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;

use crate::db::{Db, now_us};
use crate::service::ServiceError;
use crate::service::assets;
use crate::service::export::list_headers;
use crate::service::lists;
use crate::service::sheet::{self, Sheet, SheetCell};
use crate::store::sql::Sql;

/// Most lines one import may have (a larger change is better split and reviewed in parts).
pub const MAX_LINES: usize = 100_000;

/// A problem with one line (line 1 is the header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LineError {
    /// Line number in the file (records spanning lines count from their first line).
    pub line: u64,
    /// The column concerned, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// What one line does (or would do, in a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LineResult {
    /// Line number.
    pub line: u64,
    /// Host name.
    pub hostname: String,
    /// `create`, `update` or `unchanged`.
    pub action: &'static str,
    /// The asset (for `create`, known once applied).
    pub asset_id: Option<i64>,
    /// The business fields whose value changes.
    pub fields: Vec<String>,
}

/// The outcome of an import.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// True when nothing was written on purpose.
    pub dry_run: bool,
    /// True when the lines were applied.
    pub applied: bool,
    /// Data lines read.
    pub lines: usize,
    /// Every problem found; when not empty, nothing was applied.
    pub errors: Vec<LineError>,
    /// What each line does.
    pub results: Vec<LineResult>,
}

/// Why an import failed after it started writing.
#[derive(Debug, thiserror::Error)]
#[error("line {line} failed, so no line was applied: {source}")]
pub struct ApplyFailure {
    /// The line that failed.
    pub line: u64,
    /// The error.
    #[source]
    pub source: ServiceError,
}

/// Columns of the list export that are facts, not business fields: accepted and ignored (but
/// `serial` and `manufacturer`, which match rows to assets).
fn ignored_column(name: &str) -> bool {
    list_headers().contains(&name)
        && !FIELD_NAMES.contains(&name)
        && !["id", "hostname", "serial", "manufacturer"].contains(&name)
}

/// One parsed line, before it is resolved against the database.
struct Parsed {
    line: u64,
    id: Option<i64>,
    hostname: Option<String>,
    /// Board serial and manufacturer, to find the asset by.
    serial: Option<String>,
    manufacturer: Option<String>,
    /// Business fields, and custom values under `custom`.
    patch: Map<String, Value>,
}

impl Parsed {
    fn asset_tag(&self) -> Option<&str> {
        self.patch.get("asset_tag").and_then(Value::as_str)
    }
}

/// What a column of the sheet holds.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    Id,
    Hostname,
    Serial,
    Manufacturer,
    Business(&'static str),
    Custom(String),
    Ignored,
}

/// The column a header names: a key (`asset_tag`, `purchase_date`, `custom.purchase_date`) or a
/// label as people write them in a sheet (`Asset tag`, `Host name`, `Purchase date`), in any case.
fn column(header: &str, definitions: &Definitions) -> Option<Column> {
    let name = header.trim().to_lowercase();
    let key = name.replace([' ', '-'], "_");
    let key = key.strip_prefix("custom.").unwrap_or(&key);
    let business_labels =
        cmdb_model::catalog::section(cmdb_model::state::BUSINESS_SECTION).map_or(&[][..], |s| s.fields);
    match key {
        "id" | "asset_id" => return Some(Column::Id),
        "hostname" | "host_name" => return Some(Column::Hostname),
        "serial" | "serial_number" | "sn" => return Some(Column::Serial),
        "manufacturer" => return Some(Column::Manufacturer),
        _ => {}
    }
    if let Some(field) = FIELD_NAMES.iter().find(|f| **f == key) {
        return Some(Column::Business(field));
    }
    if let Some(field) = business_labels.iter().find(|f| f.label.to_lowercase() == name && FIELD_NAMES.contains(&f.key))
    {
        return FIELD_NAMES.iter().find(|f| **f == field.key).map(|f| Column::Business(f));
    }
    if definitions.fields.contains_key(key) {
        return Some(Column::Custom(key.to_owned()));
    }
    if let Some(field) = definitions.fields.values().find(|f| f.label.to_lowercase() == name) {
        return Some(Column::Custom(field.key.clone()));
    }
    ignored_column(key).then_some(Column::Ignored)
}

/// The value of a cell for a field: text as typed (numbers without a needless `.0`, date cells as
/// `YYYY-MM-DD`), booleans as booleans, blank as null.
fn cell_value(cell: &SheetCell) -> Value {
    match cell {
        SheetCell::Bool(b) => Value::Bool(*b),
        cell if cell.is_empty() => Value::Null,
        cell => Value::String(cell.text()),
    }
}

/// Reads the sheet's rows; header problems are errors on line 1, cell problems on their line and
/// column.
fn parse(sheet: &Sheet, definitions: &Definitions, errors: &mut Vec<LineError>) -> Vec<Parsed> {
    let mut columns = Vec::with_capacity(sheet.headers.len());
    let mut seen = BTreeSet::new();
    for header in &sheet.headers {
        let name = header.trim().to_lowercase();
        match column(header, definitions) {
            Some(c) if c != Column::Ignored && columns.contains(&c) => {
                errors.push(LineError {
                    line: 1,
                    column: Some(name.clone()),
                    message: "another column already holds this field".to_owned(),
                });
                columns.push(Column::Ignored);
            }
            Some(c) => columns.push(c),
            None if name.is_empty() => columns.push(Column::Ignored),
            None => {
                let custom: Vec<&str> = definitions.fields.keys().map(String::as_str).collect();
                errors.push(LineError {
                    line: 1,
                    column: Some(name.clone()),
                    message: format!(
                        "unknown column {name:?}: use hostname, id, serial, the business fields {} or the custom fields {}",
                        FIELD_NAMES.join(", "),
                        custom.join(", ")
                    ),
                });
                columns.push(Column::Ignored);
            }
        }
        if !name.is_empty() && !seen.insert(name.clone()) {
            errors.push(LineError { line: 1, column: Some(name), message: "column appears twice".to_owned() });
        }
    }
    let keyed = [Column::Hostname, Column::Id, Column::Serial, Column::Business("asset_tag")];
    if !columns.iter().any(|c| keyed.contains(c)) {
        errors.push(LineError {
            line: 1,
            column: None,
            message: "the header needs a column to find assets by: hostname, id, asset_tag or serial".to_owned(),
        });
    }
    if !errors.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(sheet.rows.len());
    for (line, cells) in &sheet.rows {
        let line = *line;
        let mut parsed = Parsed { line, id: None, hostname: None, serial: None, manufacturer: None, patch: Map::new() };
        let mut custom = Map::new();
        let mut bad_id = false;
        for (index, column) in columns.iter().enumerate() {
            let cell = cells.get(index).unwrap_or(&SheetCell::Empty);
            let name = || sheet_header(&sheet.headers, index);
            if let SheetCell::Error(message) = cell {
                if *column != Column::Ignored {
                    errors.push(LineError { line, column: Some(name()), message: message.clone() });
                }
                continue;
            }
            let text = cell.text();
            match column {
                Column::Id if !cell.is_empty() => match text.parse::<i64>() {
                    Ok(id) if id > 0 => parsed.id = Some(id),
                    _ => {
                        bad_id = true;
                        errors.push(LineError {
                            line,
                            column: Some(name()),
                            message: format!("{text:?} is not an asset id"),
                        });
                    }
                },
                Column::Hostname if !cell.is_empty() => parsed.hostname = Some(text),
                Column::Serial if !cell.is_empty() => parsed.serial = Some(text),
                Column::Manufacturer if !cell.is_empty() => parsed.manufacturer = Some(text),
                // An empty status leaves it alone (a sheet without statuses does not reset them).
                Column::Business("status") if cell.is_empty() => {}
                Column::Business(field) => {
                    parsed.patch.insert((*field).to_owned(), cell_value(cell));
                }
                Column::Custom(key) => {
                    let value = cell_value(cell);
                    // Each cell is checked on its own, so every bad cell of the row is reported.
                    match definitions.fields.get(key).map(|d| d.value(&value)) {
                        Some(Err(e)) => errors.push(LineError { line, column: Some(key.clone()), message: e.0 }),
                        _ => {
                            custom.insert(key.clone(), value);
                        }
                    }
                }
                _ => {}
            }
        }
        if !custom.is_empty() {
            parsed.patch.insert("custom".to_owned(), Value::Object(custom));
        }
        let findable =
            parsed.id.is_some() || parsed.hostname.is_some() || parsed.serial.is_some() || parsed.asset_tag().is_some();
        if !findable && !bad_id {
            errors.push(LineError {
                line,
                column: None,
                message: "no hostname, id, asset_tag or serial to find the asset by".to_owned(),
            });
        }
        out.push(parsed);
    }
    out
}

/// The header of column `index` as written (lowercased), for messages.
fn sheet_header(headers: &[String], index: usize) -> String {
    headers.get(index).map(|h| h.trim().to_lowercase()).unwrap_or_default()
}

/// A line resolved against the database.
struct Planned {
    line: u64,
    hostname: String,
    target: Option<i64>,
    patch: Map<String, Value>,
    fields: Vec<String>,
    /// Found by nothing and not to be created (no host name): reported, never applied.
    unmatched: bool,
}

/// The assets rows can match, by each key (set-based reads: one query per key and chunk).
#[derive(Default)]
struct Candidates {
    /// Every asset named by id: (host name, deleted).
    by_id: HashMap<i64, (String, bool)>,
    by_tag: HashMap<String, Vec<i64>>,
    /// By normalized serial: (asset, normalized manufacturer).
    by_serial: HashMap<String, Vec<(i64, Option<String>)>>,
    by_name: HashMap<String, Vec<i64>>,
}

/// Assets a row may match: not retired, not deleted (see the module doc).
fn matchable() -> String {
    format!("status <> 'retired' AND {}", crate::service::assets::NOT_DELETED)
}

impl Candidates {
    async fn read(db: &Db, parsed: &[Parsed]) -> Result<Candidates, ServiceError> {
        let mut out = Candidates::default();
        let ids: Vec<i64> = parsed.iter().filter_map(|p| p.id).collect::<BTreeSet<_>>().into_iter().collect();
        for chunk in ids.chunks(500) {
            let mut q = Sql::new("SELECT id, hostname, deleted_at FROM assets WHERE id IN ");
            q.bind_list(chunk.iter().copied());
            for row in q.query().fetch_all(db.reader()).await? {
                out.by_id.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get::<Option<i64>, _>(2)?.is_some()));
            }
        }
        let tags: Vec<String> = parsed
            .iter()
            .filter_map(|p| p.asset_tag().map(str::to_owned))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in tags.chunks(500) {
            let mut q = Sql::new(format!("SELECT id, asset_tag FROM assets WHERE {} AND asset_tag IN ", matchable()));
            q.bind_list(chunk.iter().map(String::as_str));
            for row in q.query().fetch_all(db.reader()).await? {
                out.by_tag.entry(row.try_get(1)?).or_default().push(row.try_get(0)?);
            }
        }
        let serials: Vec<String> = parsed
            .iter()
            .filter_map(|p| p.serial.as_deref().and_then(normalize_serial))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in serials.chunks(500) {
            let mut q = Sql::new(format!(
                "SELECT id, board_sn, board_manufacturer FROM assets WHERE {} AND board_sn IN ",
                matchable()
            ));
            q.bind_list(chunk.iter().map(String::as_str));
            for row in q.query().fetch_all(db.reader()).await? {
                out.by_serial.entry(row.try_get(1)?).or_default().push((row.try_get(0)?, row.try_get(2)?));
            }
        }
        let names: Vec<String> =
            parsed.iter().filter_map(|p| p.hostname.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        for chunk in names.chunks(500) {
            let mut q = Sql::new(format!("SELECT id, hostname FROM assets WHERE {} AND hostname IN ", matchable()));
            q.bind_list(chunk.iter().map(|n| n.as_str()));
            for row in q.query().fetch_all(db.reader()).await? {
                out.by_name.entry(row.try_get(1)?).or_default().push(row.try_get(0)?);
            }
        }
        Ok(out)
    }

    /// The asset row `p` names: by id, then asset tag, then (manufacturer and) serial, then host
    /// name; the first key that finds assets decides. `Ok(None)`: no asset (a new one, or
    /// unmatched); several assets for one key is an error on that column.
    fn resolve(&self, p: &Parsed) -> Result<Option<i64>, LineError> {
        let error =
            |column: &str, message: String| LineError { line: p.line, column: Some(column.to_owned()), message };
        if let Some(id) = p.id {
            return match self.by_id.get(&id) {
                None => Err(error("id", format!("no asset {id}"))),
                Some((_, true)) => Err(error("id", format!("asset {id} is deleted; restore it first"))),
                Some((stored, false)) if p.hostname.as_ref().is_some_and(|h| h != stored) => Err(error(
                    "hostname",
                    format!(
                        "asset {id} is {stored:?}, not {:?} (host names come from the host; the import does not rename)",
                        p.hostname.as_deref().unwrap_or_default()
                    ),
                )),
                Some(_) => Ok(Some(id)),
            };
        }
        let one = |column: &str, what: &str, found: &[i64]| -> Result<Option<i64>, LineError> {
            match found {
                [] => Ok(None),
                [id] => Ok(Some(*id)),
                several => Err(error(
                    column,
                    format!("{} assets have this {what} ({}); give the id", several.len(), join_ids(several)),
                )),
            }
        };
        if let Some(tag) = p.asset_tag()
            && let Some(found) = one("asset_tag", "asset tag", self.by_tag.get(tag).map_or(&[][..], Vec::as_slice))?
        {
            return Ok(Some(found));
        }
        if let Some(serial) = p.serial.as_deref().and_then(normalize_serial) {
            let maker = p.manufacturer.as_deref().and_then(normalize_serial);
            let found: Vec<i64> = self
                .by_serial
                .get(&serial)
                .into_iter()
                .flatten()
                .filter(|(_, stored)| maker.is_none() || *stored == maker)
                .map(|(id, _)| *id)
                .collect();
            if let Some(found) = one("serial", "serial", &found)? {
                return Ok(Some(found));
            }
        }
        if let Some(hostname) = &p.hostname {
            return one("hostname", "host name", self.by_name.get(hostname).map_or(&[][..], Vec::as_slice));
        }
        Ok(None)
    }
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(|id| format!("asset {id}")).collect::<Vec<_>>().join(", ")
}

/// Checks every line and works out what it does; reads the database in a few set-based queries.
async fn plan(
    db: &Db,
    parsed: Vec<Parsed>,
    definitions: &Definitions,
    errors: &mut Vec<LineError>,
) -> Result<Vec<Planned>, ServiceError> {
    let candidates = Candidates::read(db, &parsed).await?;
    let mut targets: Vec<Option<i64>> = Vec::with_capacity(parsed.len());
    for p in &parsed {
        match candidates.resolve(p) {
            Ok(target) => targets.push(target),
            Err(e) => {
                errors.push(e);
                targets.push(None);
            }
        }
    }
    // Current business fields and host names of the assets edited.
    let edited: Vec<i64> = targets.iter().flatten().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let mut current: HashMap<i64, BusinessFields> = HashMap::new();
    let mut names: HashMap<i64, String> = HashMap::new();
    for chunk in edited.chunks(500) {
        let mut q = Sql::new(
            "SELECT a.id, s.fields, a.hostname FROM assets a LEFT JOIN asset_sections s ON s.asset_id = a.id AND s.section = ",
        );
        q.bind(BUSINESS_SECTION).push(" WHERE a.id IN ");
        q.bind_list(chunk.iter().copied());
        for row in q.query().fetch_all(db.reader()).await? {
            let text: Option<String> = row.try_get(1)?;
            let fields = match text.as_deref().map(serde_json::from_str::<Value>) {
                Some(Ok(Value::Object(map))) => BusinessFields::from_fields(&map),
                _ => BusinessFields::default(),
            };
            let id: i64 = row.try_get(0)?;
            current.insert(id, fields);
            names.insert(id, row.try_get(2)?);
        }
    }
    let managed = lists::all(db).await?;
    let mut claimed: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::with_capacity(parsed.len());
    for (p, target) in parsed.into_iter().zip(targets) {
        if target.is_none() && p.id.is_some() {
            continue;
        }
        let hostname = match (target, &p.hostname) {
            (Some(id), _) => names.get(&id).cloned().or(p.hostname.clone()).unwrap_or_default(),
            (None, Some(h)) => h.clone(),
            (None, None) => {
                // Found by nothing, and without a host name to register it by.
                out.push(Planned {
                    line: p.line,
                    hostname: String::new(),
                    target: None,
                    patch: p.patch,
                    fields: Vec::new(),
                    unmatched: true,
                });
                continue;
            }
        };
        if let Some(tag) = p.asset_tag()
            && let Some(holder) = candidates.by_tag.get(tag).and_then(|ids| ids.iter().find(|id| Some(**id) != target))
        {
            errors.push(LineError {
                line: p.line,
                column: Some("asset_tag".to_owned()),
                message: format!("asset tag {tag:?} is held by asset {holder}"),
            });
            continue;
        }
        if target.is_none() && hostname.len() > 253 {
            errors.push(LineError {
                line: p.line,
                column: Some("hostname".to_owned()),
                message: "a host name has at most 253 bytes".to_owned(),
            });
            continue;
        }
        let key = target.map_or_else(|| format!("new:{hostname}"), |id| format!("id:{id}"));
        let tag_key = p.asset_tag().map(|tag| format!("tag:{tag}"));
        if let Some(first) = tag_key.and_then(|k| claimed.insert(k, p.line)) {
            errors.push(LineError {
                line: p.line,
                column: Some("asset_tag".to_owned()),
                message: format!("line {first} gives the same asset tag; a tag names one asset"),
            });
            continue;
        }
        if let Some(first) = claimed.insert(key, p.line) {
            errors.push(LineError {
                line: p.line,
                column: None,
                message: format!("the same asset as line {first}; give each asset one line"),
            });
            continue;
        }
        let before = target.and_then(|id| current.get(&id).cloned()).unwrap_or_default();
        let next = match before.patched(&p.patch, definitions) {
            Ok(next) => next,
            Err(e) => {
                errors.push(LineError { line: p.line, column: Some(e.field.clone()), message: e.message });
                continue;
            }
        };
        let touched: BTreeSet<String> = p.patch.keys().cloned().collect();
        let violations = lists::violations(&managed, &next, &touched);
        if !violations.is_empty() {
            for (column, message) in violations {
                errors.push(LineError { line: p.line, column: Some(column), message });
            }
            continue;
        }
        let (old, new) = (before.to_fields(), next.to_fields());
        let mut fields: Vec<String> =
            FIELD_NAMES.iter().filter(|f| old.get(**f) != new.get(**f)).map(|f| (*f).to_owned()).collect();
        let keys: BTreeSet<&String> = before.custom.keys().chain(next.custom.keys()).collect();
        fields.extend(
            keys.into_iter().filter(|k| before.custom.get(*k) != next.custom.get(*k)).map(|k| format!("custom.{k}")),
        );
        out.push(Planned { line: p.line, hostname, target, patch: p.patch, fields, unmatched: false });
    }
    Ok(out)
}

/// The file an import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// CSV, UTF-8.
    Csv,
    /// A workbook: XLSX as Excel and LibreOffice write it (also XLS, ODS); its first sheet.
    Workbook,
}

/// An import as the state on a past date (admin only, checked at the edge).
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The instant the sheet describes (by the date rule of `service::time`).
    pub effective: DateTime<Utc>,
    /// The file's name, kept with each baseline record.
    pub file_name: String,
}

impl Baseline {
    /// A baseline on `as_of` by the date rule of every as_of (a date is its end, a date after
    /// today is refused, the instant is at most the latest settled one) for the file `file_name`
    /// (kept without control characters, at most 255 characters).
    pub fn on(calendar: &crate::service::Calendar, as_of: &str, file_name: &str) -> Result<Baseline, ServiceError> {
        let at = calendar.optional_as_of(Some(as_of))?;
        Ok(Baseline {
            effective: at.map_or_else(Utc::now, |a| a.effective),
            file_name: file_name.chars().filter(|c| !c.is_control()).take(255).collect(),
        })
    }
}

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Only check and report (the default everywhere).
    pub dry_run: bool,
    /// Import as a baseline instead of as edits.
    pub baseline: Option<Baseline>,
}

impl ImportOptions {
    /// The audit log's name of this import.
    pub fn audit_action(&self) -> &'static str {
        if self.baseline.is_some() { "import.baseline" } else { "import" }
    }
}

/// Imports `body` as `source` (`user:<name>`). With `dry_run`, or when any line is invalid,
/// nothing is written and the report says why; otherwise every line is applied in one
/// transaction, all or nothing.
///
/// As a baseline, no asset is edited and no back-dated change is written: each row becomes an
/// append-only baseline record of its asset (created now when no asset matches), which the as-of
/// view reads for instants before the asset's first recorded change. A row whose asset has a
/// change recorded at or before the baseline's instant is refused: cmdb's own history already
/// says what it was then.
pub async fn import(
    db: &Db,
    source: &str,
    format: ImportFormat,
    body: &[u8],
    options: &ImportOptions,
) -> Result<ImportReport, ApplyFailure> {
    let started = std::time::Instant::now();
    let dry_run = options.dry_run;
    let early = |source| ApplyFailure { line: 0, source };
    let mut errors = Vec::new();
    let read = match format {
        ImportFormat::Csv => sheet::from_csv(body, MAX_LINES),
        ImportFormat::Workbook => sheet::from_workbook(body, MAX_LINES),
    };
    let sheet = match read {
        Ok(sheet) => sheet,
        Err(e) => {
            errors.push(LineError { line: 1, column: None, message: e.0 });
            Sheet::default()
        }
    };
    let definitions = crate::service::custom_fields::definitions(db).await.map_err(early)?;
    let parsed = if errors.is_empty() { parse(&sheet, &definitions, &mut errors) } else { Vec::new() };
    let lines = parsed.len();
    let mut planned =
        if errors.is_empty() { plan(db, parsed, &definitions, &mut errors).await.map_err(early)? } else { Vec::new() };
    if let Some(baseline) = &options.baseline {
        refuse_recorded(db, &mut planned, baseline, &mut errors).await.map_err(early)?;
    }
    errors.sort_by_key(|e| e.line);
    let mut results: Vec<LineResult> = planned
        .iter()
        .map(|p| LineResult {
            line: p.line,
            hostname: p.hostname.clone(),
            action: match (p.unmatched, p.target, p.fields.is_empty(), options.baseline.is_some()) {
                (true, ..) => "unmatched",
                (false, None, ..) => "create",
                (false, Some(_), _, true) => "baseline",
                (false, Some(_), true, false) => "unchanged",
                (false, Some(_), false, false) => "update",
            },
            asset_id: p.target,
            fields: p.fields.clone(),
        })
        .collect();
    if dry_run || !errors.is_empty() {
        return Ok(ImportReport { dry_run, applied: false, lines, errors, results });
    }
    // Every line was checked against the database just now; what can still fail is the database
    // itself, or a person registering the same host name in between. All lines are applied in one
    // transaction, so then nothing is applied.
    let managed = lists::all(db).await.map_err(early)?;
    let mut tx = db.begin_write().await.map_err(|e| early(e.into()))?;
    let now = now_us();
    for (p, result) in planned.into_iter().zip(results.iter_mut()) {
        let failure = |source| ApplyFailure { line: p.line, source };
        if p.unmatched {
            continue;
        }
        let id = match p.target {
            None => {
                let mut fields = p.patch.clone();
                fields.insert("hostname".to_owned(), Value::String(p.hostname.clone()));
                let id = assets::register_in(&mut tx, db.backend(), &managed, source, fields).await.map_err(failure)?;
                result.asset_id = Some(id);
                id
            }
            Some(id) if !p.fields.is_empty() && options.baseline.is_none() => {
                assets::patch_business_in(&mut tx, db.backend(), &managed, id, source, &p.patch)
                    .await
                    .map_err(failure)?;
                id
            }
            Some(id) => id,
        };
        if let Some(baseline) = &options.baseline {
            // The row's own values, as the sheet gave them on that date.
            let fields = BusinessFields::default()
                .patched(&p.patch, &definitions)
                .map_err(|e| failure(ServiceError::invalid(format!("/{}", e.field), e.message)))?;
            let text =
                serde_json::to_string(&fields.to_fields()).map_err(|e| failure(ServiceError::Bug(e.to_string())))?;
            sqlx::query(
                "INSERT INTO baselines (asset_id, effective_at, hostname, fields, file_name, line, imported_at, imported_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(baseline.effective.timestamp_micros())
            .bind(p.hostname.clone())
            .bind(text)
            .bind(baseline.file_name.clone())
            .bind(i64::try_from(p.line).unwrap_or(i64::MAX))
            .bind(now)
            .bind(source.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(|e| failure(e.into()))?;
        }
    }
    tx.commit().await.map_err(|e| early(e.into()))?;
    crate::store::outbox::wake();
    let counts: BTreeMap<&str, usize> = results.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.action).or_insert(0) += 1;
        m
    });
    tracing::info!(
        source,
        lines,
        ?counts,
        baseline = options.baseline.is_some(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "import applied"
    );
    Ok(ImportReport { dry_run, applied: true, lines, errors, results })
}

/// For a baseline: refuses the rows whose asset has a change recorded at or before the
/// baseline's instant (one query per 500 assets).
async fn refuse_recorded(
    db: &Db,
    planned: &mut Vec<Planned>,
    baseline: &Baseline,
    errors: &mut Vec<LineError>,
) -> Result<(), ServiceError> {
    let ids: Vec<i64> = planned.iter().filter_map(|p| p.target).collect();
    let mut first: HashMap<i64, i64> = HashMap::new();
    for chunk in ids.chunks(500) {
        let mut q = Sql::new("SELECT asset_id, MIN(recorded_at) FROM changes WHERE recorded_at <= ");
        q.bind(baseline.effective.timestamp_micros()).push(" AND asset_id IN ");
        q.bind_list(chunk.iter().copied());
        q.push(" GROUP BY asset_id");
        for row in q.query().fetch_all(db.reader()).await? {
            first.insert(row.try_get(0)?, row.try_get(1)?);
        }
    }
    planned.retain(|p| match p.target.and_then(|id| first.get(&id).map(|at| (id, *at))) {
        Some((id, at)) => {
            errors.push(LineError {
                line: p.line,
                column: None,
                message: format!(
                    "asset {id} has history recorded from {} on, at or before the baseline's {}: cmdb's own record says \
                     what it was then, so a baseline cannot",
                    crate::db::from_us(at).to_rfc3339(),
                    baseline.effective.to_rfc3339()
                ),
            });
            false
        }
        None => true,
    });
    Ok(())
}

/// The columns a sheet to import may have, in template order, each with what it holds: the keys
/// that find assets, every business field, every custom field in use (not deleted).
pub async fn template_columns(db: &Db) -> Result<Vec<(String, String)>, ServiceError> {
    let mut out: Vec<(String, String)> = vec![
        ("id".to_owned(), "cmdb's asset id: finds the asset first (leave empty for new assets)".to_owned()),
        (
            "hostname".to_owned(),
            "Host name: finds the asset last; registers a new asset when nothing matches".to_owned(),
        ),
        ("serial".to_owned(), "Board serial number: finds the asset (with manufacturer, when given)".to_owned()),
        ("manufacturer".to_owned(), "Board manufacturer, as the serial's qualifier".to_owned()),
    ];
    let labels = cmdb_model::catalog::section(BUSINESS_SECTION).map_or(&[][..], |s| s.fields);
    for field in FIELD_NAMES {
        let label = labels.iter().find(|f| f.key == *field).map_or(*field, |f| f.label);
        let what = match *field {
            "asset_tag" => "Asset tag (printable ASCII, unique): finds the asset after the id".to_owned(),
            "status" => "racked, online, offline or retired (empty: unchanged)".to_owned(),
            "tags" => "Tags, comma-separated".to_owned(),
            _ => label.to_owned(),
        };
        out.push(((*field).to_owned(), what));
    }
    for field in crate::service::custom_fields::fields(db, false).await? {
        let mut what =
            format!("{} ({}): {}", field.label, field.field_type.as_str(), field.field_type.accepted_forms());
        if !field.choices.is_empty() {
            what.push_str(&format!("; one of {}", field.choices.join(", ")));
        }
        out.push((field.key, what));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str, errors: &mut Vec<LineError>) -> Vec<Parsed> {
        parse(&sheet::from_csv(text.as_bytes(), MAX_LINES).expect("csv"), &Definitions::default(), errors)
    }

    #[test]
    fn header_problems_are_reported_on_line_one() {
        let mut errors = Vec::new();
        let parsed = csv("hostname,colour\nweb-01,red\n", &mut errors);
        assert!(parsed.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 1);
        assert_eq!(errors[0].column.as_deref(), Some("colour"));
    }

    #[test]
    fn cells_are_read_like_the_export_wrote_them() {
        let mut errors = Vec::new();
        let body = "\u{feff}Hostname,owner,status,tags,os_name\nweb-01,'=ops,,\"a,b\",Debian\n,,,,\n";
        let parsed = csv(body, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(parsed.len(), 1, "blank lines are skipped");
        let line = &parsed[0];
        assert_eq!(line.line, 2);
        assert_eq!(line.hostname.as_deref(), Some("web-01"));
        assert_eq!(line.patch.get("owner"), Some(&Value::String("=ops".into())));
        assert_eq!(line.patch.get("tags"), Some(&Value::String("a,b".into())));
        assert!(!line.patch.contains_key("status"), "an empty status leaves it alone");
        assert!(!line.patch.contains_key("os_name"), "facts are ignored");
    }

    #[test]
    fn bad_ids_are_line_errors() {
        let mut errors = Vec::new();
        let parsed = csv("id,owner\n1,a\nx,b\n", &mut errors);
        assert_eq!(parsed.len(), 2);
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3], "{errors:?}");
    }
}
