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

use cmdb_model::business::{BusinessFields, FIELD_NAMES};
use cmdb_model::state::BUSINESS_SECTION;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;

use crate::db::Db;
use crate::service::ServiceError;
use crate::service::assets;
use crate::service::export::list_headers;
use crate::service::lists;
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

/// Columns of the list export that are facts, not business fields: accepted and ignored.
fn ignored_column(name: &str) -> bool {
    list_headers().contains(&name) && !FIELD_NAMES.contains(&name) && name != "id" && name != "hostname"
}

/// One parsed line, before it is resolved against the database.
struct Parsed {
    line: u64,
    id: Option<i64>,
    hostname: Option<String>,
    patch: Map<String, Value>,
}

/// Cell text as the export wrote it: the `'` that defuses a formula is removed again.
fn cell_text(raw: &str) -> String {
    let trimmed = raw.trim();
    match trimmed.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest.to_owned(),
        _ => trimmed.to_owned(),
    }
}

/// Reads the CSV into lines; file-level problems are errors on line 1.
fn parse(body: &[u8], errors: &mut Vec<LineError>) -> Vec<Parsed> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if let Err(e) = std::str::from_utf8(body) {
        errors.push(LineError { line: 1, column: None, message: format!("the file is not UTF-8: {e}") });
        return Vec::new();
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(body);
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|h| h.trim().to_lowercase()).collect(),
        Err(e) => {
            errors.push(LineError { line: 1, column: None, message: format!("cannot read the header: {e}") });
            return Vec::new();
        }
    };
    let mut seen = BTreeSet::new();
    for name in &headers {
        let known = name == "id"
            || name == "asset_id"
            || name == "hostname"
            || FIELD_NAMES.contains(&name.as_str())
            || ignored_column(name);
        if !known {
            errors.push(LineError {
                line: 1,
                column: Some(name.clone()),
                message: format!(
                    "unknown column {name:?}: use hostname, id and the business fields {}",
                    FIELD_NAMES.join(", ")
                ),
            });
        }
        if !seen.insert(name.as_str()) {
            errors.push(LineError { line: 1, column: Some(name.clone()), message: "column appears twice".to_owned() });
        }
    }
    if !headers.iter().any(|h| h == "hostname" || h == "id" || h == "asset_id") {
        errors.push(LineError {
            line: 1,
            column: None,
            message: "the header needs a hostname column (or an id column)".to_owned(),
        });
    }
    if !errors.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(LineError { line, column: None, message: format!("malformed CSV: {e}") });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        if out.len() >= MAX_LINES {
            errors.push(LineError {
                line,
                column: None,
                message: format!("more than {MAX_LINES} lines; split the file"),
            });
            break;
        }
        let mut parsed = Parsed { line, id: None, hostname: None, patch: Map::new() };
        let mut bad_id = false;
        for (name, raw) in headers.iter().zip(record.iter()) {
            let text = cell_text(raw);
            match name.as_str() {
                "id" | "asset_id" if !text.is_empty() => match text.parse::<i64>() {
                    Ok(id) if id > 0 => parsed.id = Some(id),
                    _ => {
                        bad_id = true;
                        errors.push(LineError {
                            line,
                            column: Some(name.clone()),
                            message: format!("{text:?} is not an asset id"),
                        });
                    }
                },
                "id" | "asset_id" => {}
                "hostname" if !text.is_empty() => parsed.hostname = Some(text),
                "hostname" => {}
                "status" if text.is_empty() => {}
                field if FIELD_NAMES.contains(&field) => {
                    let value = if text.is_empty() { Value::Null } else { Value::String(text) };
                    parsed.patch.insert(field.to_owned(), value);
                }
                _ => {}
            }
        }
        if parsed.id.is_none() && parsed.hostname.is_none() && !bad_id {
            errors.push(LineError {
                line,
                column: Some("hostname".to_owned()),
                message: "no hostname and no id".to_owned(),
            });
        }
        out.push(parsed);
    }
    out
}

/// A line resolved against the database.
struct Planned {
    line: u64,
    hostname: String,
    target: Option<i64>,
    patch: Map<String, Value>,
    fields: Vec<String>,
}

/// Checks every line and works out what it does; reads the database in a few set-based queries.
async fn plan(db: &Db, parsed: Vec<Parsed>, errors: &mut Vec<LineError>) -> Result<Vec<Planned>, ServiceError> {
    // Assets named by id, and live assets named by host name.
    let ids: BTreeSet<i64> = parsed.iter().filter_map(|p| p.id).collect();
    let names: BTreeSet<String> = parsed.iter().filter(|p| p.id.is_none()).filter_map(|p| p.hostname.clone()).collect();
    let mut by_id: HashMap<i64, String> = HashMap::new();
    let ids: Vec<i64> = ids.into_iter().collect();
    for chunk in ids.chunks(500) {
        let mut q = Sql::new("SELECT id, hostname FROM assets WHERE id IN ");
        q.bind_list(chunk.iter().copied());
        for row in q.query().fetch_all(db.reader()).await? {
            by_id.insert(row.try_get(0)?, row.try_get(1)?);
        }
    }
    let mut by_name: HashMap<String, Vec<i64>> = HashMap::new();
    let names: Vec<String> = names.into_iter().collect();
    for chunk in names.chunks(500) {
        let mut q = Sql::new(
            "SELECT id, hostname FROM assets WHERE status <> 'retired' AND deleted_at IS NULL AND hostname IN ",
        );
        q.bind_list(chunk.iter().map(|n| n.as_str()));
        for row in q.query().fetch_all(db.reader()).await? {
            by_name.entry(row.try_get(1)?).or_default().push(row.try_get(0)?);
        }
    }
    let mut targets: Vec<Option<i64>> = Vec::with_capacity(parsed.len());
    for p in &parsed {
        let target = match (p.id, &p.hostname) {
            (Some(id), hostname) => match by_id.get(&id) {
                None => {
                    errors.push(LineError {
                        line: p.line,
                        column: Some("id".to_owned()),
                        message: format!("no asset {id}"),
                    });
                    None
                }
                Some(stored) if hostname.as_ref().is_some_and(|h| h != stored) => {
                    errors.push(LineError {
                        line: p.line,
                        column: Some("hostname".to_owned()),
                        message: format!(
                            "asset {id} is {stored:?}, not {:?} (host names come from the host; the import does not rename)",
                            hostname.as_deref().unwrap_or_default()
                        ),
                    });
                    None
                }
                Some(_) => Some(id),
            },
            (None, Some(hostname)) => match by_name.get(hostname).map(Vec::as_slice) {
                Some([id]) => Some(*id),
                Some(several) if several.len() > 1 => {
                    errors.push(LineError {
                        line: p.line,
                        column: Some("hostname".to_owned()),
                        message: format!("{} live assets are called {hostname:?}; give the id", several.len()),
                    });
                    None
                }
                _ => None,
            },
            (None, None) => None,
        };
        targets.push(target);
    }
    // Current business fields of the assets edited.
    let edited: Vec<i64> = targets.iter().flatten().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let mut current: HashMap<i64, BusinessFields> = HashMap::new();
    for chunk in edited.chunks(500) {
        let mut q = Sql::new("SELECT asset_id, fields FROM asset_sections WHERE section = ");
        q.bind(BUSINESS_SECTION).push(" AND asset_id IN ");
        q.bind_list(chunk.iter().copied());
        for row in q.query().fetch_all(db.reader()).await? {
            let text: String = row.try_get(1)?;
            let fields = match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => BusinessFields::from_fields(&map),
                _ => BusinessFields::default(),
            };
            current.insert(row.try_get(0)?, fields);
        }
    }
    let managed = lists::all(db).await?;
    let definitions = crate::service::custom_fields::definitions(db).await?;
    let mut claimed: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::with_capacity(parsed.len());
    for (p, target) in parsed.into_iter().zip(targets) {
        let hostname = match (target, &p.hostname) {
            (Some(id), _) => by_id.get(&id).cloned().or(p.hostname.clone()).unwrap_or_default(),
            (None, Some(h)) => h.clone(),
            (None, None) => continue,
        };
        if target.is_none() && p.id.is_some() {
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
        if let Some(first) = claimed.insert(key, p.line) {
            errors.push(LineError {
                line: p.line,
                column: None,
                message: format!("the same asset as line {first}; give each asset one line"),
            });
            continue;
        }
        let before = target.and_then(|id| current.get(&id).cloned()).unwrap_or_default();
        let next = match before.patched(&p.patch, &definitions) {
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
        let fields: Vec<String> =
            FIELD_NAMES.iter().filter(|f| old.get(**f) != new.get(**f)).map(|f| (*f).to_owned()).collect();
        out.push(Planned { line: p.line, hostname, target, patch: p.patch, fields });
    }
    Ok(out)
}

/// Imports `body` (CSV) as `source` (`user:<name>`). With `dry_run`, or when any line is invalid,
/// nothing is written and the report says why.
pub async fn import_csv(db: &Db, source: &str, body: &[u8], dry_run: bool) -> Result<ImportReport, ApplyFailure> {
    let started = std::time::Instant::now();
    let mut errors = Vec::new();
    let parsed = parse(body, &mut errors);
    let lines = parsed.len();
    let planned = if errors.is_empty() {
        plan(db, parsed, &mut errors).await.map_err(|source| ApplyFailure { line: 0, source })?
    } else {
        Vec::new()
    };
    errors.sort_by_key(|e| e.line);
    let mut results: Vec<LineResult> = planned
        .iter()
        .map(|p| LineResult {
            line: p.line,
            hostname: p.hostname.clone(),
            action: match (p.target, p.fields.is_empty()) {
                (None, _) => "create",
                (Some(_), true) => "unchanged",
                (Some(_), false) => "update",
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
    let managed = lists::all(db).await.map_err(|source| ApplyFailure { line: 0, source })?;
    let mut tx = db.begin_write().await.map_err(|e| ApplyFailure { line: 0, source: e.into() })?;
    for (p, result) in planned.into_iter().zip(results.iter_mut()) {
        let failure = |source| ApplyFailure { line: p.line, source };
        match p.target {
            None => {
                let mut fields = p.patch.clone();
                fields.insert("hostname".to_owned(), Value::String(p.hostname.clone()));
                let id = assets::register_in(&mut tx, db.backend(), &managed, source, fields).await.map_err(failure)?;
                result.asset_id = Some(id);
            }
            Some(id) if !p.fields.is_empty() => {
                assets::patch_business_in(&mut tx, db.backend(), &managed, id, source, &p.patch)
                    .await
                    .map_err(failure)?;
            }
            Some(_) => {}
        }
    }
    tx.commit().await.map_err(|e| ApplyFailure { line: 0, source: e.into() })?;
    let counts: BTreeMap<&str, usize> = results.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.action).or_insert(0) += 1;
        m
    });
    tracing::info!(source, lines, ?counts, elapsed_ms = started.elapsed().as_millis() as u64, "CSV import applied");
    Ok(ImportReport { dry_run, applied: true, lines, errors, results })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_problems_are_reported_on_line_one() {
        let mut errors = Vec::new();
        let parsed = parse(b"hostname,colour\nweb-01,red\n", &mut errors);
        assert!(parsed.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 1);
        assert_eq!(errors[0].column.as_deref(), Some("colour"));
    }

    #[test]
    fn cells_are_read_like_the_export_wrote_them() {
        let mut errors = Vec::new();
        let body = "\u{feff}Hostname,owner,status,tags,os_name\nweb-01,'=ops,,\"a,b\",Debian\n,,,,\n";
        let parsed = parse(body.as_bytes(), &mut errors);
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
    fn ragged_lines_and_bad_ids_are_line_errors() {
        let mut errors = Vec::new();
        let parsed = parse(b"id,owner\n1,a\n2\nx,b\n", &mut errors);
        assert_eq!(parsed.len(), 2);
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4], "{errors:?}");
    }
}
