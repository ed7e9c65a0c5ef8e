//! `cmdb-server verify`: the history is evidence only if it rebuilds what is stored and is the
//! history that was written. For every asset, its change records must form an intact hash chain
//! (each record's hash matches its content, and links to the hash of the record before it),
//! replaying them must give exactly its stored sections and components, and no section or
//! component row may belong to an asset that does not exist. It also recomputes the digest of the
//! chain heads as of an instant from the records' content, to compare with a digest kept outside
//! the database ([`crate::service::chains`]).
//!
//! It reads in chunks of assets, each chunk in one read transaction on the readers' pool (three
//! queries a chunk), so it runs beside a live server without holding the writer.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cmdb_model::chain::{ChainedRecord, record_hash};
use cmdb_model::diff::replay;
use cmdb_model::state::{AssetState, SectionState};
use serde::Serialize;
use sqlx::Row;

use crate::db::Db;
use crate::service::ServiceError;
use crate::store::sql::Sql;
use crate::store::{self, CHANGE_COLUMNS};

/// Assets per chunk.
const CHUNK: usize = 500;

/// One asset whose history does not rebuild what is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The asset (or the missing asset an orphan row names).
    pub asset_id: i64,
    /// The first change record that is wrong, when one is (it cannot be applied, or it is the
    /// last one that touched what differs).
    pub change_id: Option<i64>,
    /// What is wrong, for a person.
    pub reason: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Assets checked.
    pub assets: u64,
    /// Change records replayed.
    pub changes: u64,
    /// Every mismatch, in asset order.
    pub mismatches: Vec<Mismatch>,
    /// The digest of the chain heads as of the instant asked for (else of every record), each
    /// head recomputed from the records' content.
    pub digest: String,
    /// The chains that digest covers.
    pub chains: u64,
}

/// The stored chain columns of a record, beside its decoded content.
struct Link {
    /// Raw stored texts of the old and new values (the hash covers the text as stored).
    old: Option<String>,
    new: Option<String>,
    hash: Option<String>,
    prev_hash: Option<String>,
}

/// Abbreviates a hash for a sentence.
fn short(hash: Option<&str>) -> String {
    hash.map_or_else(|| "none".to_owned(), |h| h.chars().take(12).collect())
}

/// Checks one asset's chain; returns the first broken record and the head as of `at`,
/// recomputed from content (an edit anywhere before it changes it, even if every later stored
/// hash was rewritten to match).
fn check_chain(records: &[(store::ChangeRecord, Link)], at: Option<i64>) -> (Option<Mismatch>, Option<String>) {
    let mut first_bad = None;
    let mut recomputed: Option<String> = None;
    let mut head_at = None;
    let mut before: Option<(i64, Option<&str>)> = None;
    for (record, link) in records {
        let content = ChainedRecord {
            id: record.id,
            asset_id: record.asset_id,
            recorded_at: record.recorded_at.timestamp_micros(),
            collected_at: record.collected_at.map(|t| t.timestamp_micros()),
            report_id: record.report_id.as_deref(),
            source: &record.source,
            section: &record.section,
            component: record.component.as_deref(),
            path: &record.path,
            action: record.action.as_str(),
            old_value: link.old.as_deref(),
            new_value: link.new.as_deref(),
        };
        // The hash of the content as stored, linked as stored; in an intact chain it is also the
        // recomputed one, so one SHA-256 a record serves both.
        let own = record_hash(&content, link.prev_hash.as_deref());
        if first_bad.is_none() {
            let previous = before.and_then(|(_, hash)| hash);
            let reason = if link.hash.is_none() {
                Some(format!("record {} has no hash: it was not written by cmdb", record.id))
            } else if link.prev_hash.as_deref() != previous {
                let after = match before {
                    Some((id, _)) => format!("the asset's record before it, {id}, has hash {}", short(previous)),
                    None => "it is the asset's first record".to_owned(),
                };
                Some(format!(
                    "record {} links to a previous record with hash {}, but {after}: a record was deleted or inserted                      before it",
                    record.id,
                    short(link.prev_hash.as_deref())
                ))
            } else if link.hash.as_deref() != Some(own.as_str()) {
                Some(format!("record {} does not match its hash: its content was edited", record.id))
            } else {
                None
            };
            if let Some(reason) = reason {
                first_bad = Some(Mismatch {
                    asset_id: record.asset_id,
                    change_id: Some(record.id),
                    reason: format!("broken chain: {reason}"),
                });
            }
        }
        let hash = if link.prev_hash == recomputed { own } else { record_hash(&content, recomputed.as_deref()) };
        if at.is_none_or(|at| content.recorded_at <= at) {
            head_at = Some(hash.clone());
        }
        recomputed = Some(hash);
        before = Some((record.id, link.hash.as_deref()));
    }
    (first_bad, head_at)
}

/// The first place where `a` and `b` differ: a section, or a component of one.
fn first_difference(stored: &AssetState, rebuilt: &AssetState) -> Option<(String, Option<String>)> {
    let names: BTreeSet<&String> = stored.sections.keys().chain(rebuilt.sections.keys()).collect();
    for name in names {
        let empty = SectionState::default();
        let (s, r) = (stored.sections.get(name), rebuilt.sections.get(name));
        if s.is_none() || r.is_none() || s.map(|s| &s.fields) != r.map(|r| &r.fields) {
            return Some((name.clone(), None));
        }
        let (s, r) = (s.unwrap_or(&empty), r.unwrap_or(&empty));
        let keys: BTreeSet<&String> = s.components.keys().chain(r.components.keys()).collect();
        for key in keys {
            if s.components.get(key) != r.components.get(key) {
                return Some((name.clone(), Some(key.clone())));
            }
        }
    }
    None
}

/// The stored states of `ids`: two queries.
async fn states_of(
    conn: &mut sqlx::AnyConnection,
    ids: &[i64],
) -> Result<std::collections::BTreeMap<i64, AssetState>, ServiceError> {
    let object = |text: &str| match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(ServiceError::Corrupt("a stored section or component is not a JSON object".to_owned())),
    };
    let mut out: std::collections::BTreeMap<i64, AssetState> = Default::default();
    let mut q = Sql::new("SELECT asset_id, section, fields FROM asset_sections WHERE asset_id IN ");
    q.bind_list(ids.iter().copied());
    for row in q.query().fetch_all(&mut *conn).await? {
        let (id, section, fields): (i64, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        out.entry(id).or_default().sections.insert(section, SectionState::from_fields(object(&fields)?));
    }
    let mut q = Sql::new("SELECT asset_id, section, ckey, data FROM components WHERE asset_id IN ");
    q.bind_list(ids.iter().copied());
    for row in q.query().fetch_all(&mut *conn).await? {
        let (id, section, key, data): (i64, String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        out.entry(id).or_default().sections.entry(section).or_default().components.insert(key, object(&data)?);
    }
    Ok(out)
}

/// Checks every asset; the digest is of the heads as of `as_of` (else of every record).
/// `progress` is called after each chunk with the assets checked so far.
pub async fn verify(
    db: &Db,
    as_of: Option<DateTime<Utc>>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Verification, ServiceError> {
    let mut out = Verification::default();
    let at = as_of.map(|t| t.timestamp_micros());
    let mut heads: Vec<(i64, String)> = Vec::new();
    let mut after = i64::MIN;
    loop {
        let mut tx = db.reader().begin().await?;
        let ids: Vec<i64> = sqlx::query("SELECT id FROM assets WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(CHUNK as i64)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let Some(&last) = ids.last() else { break };
        let mut q = Sql::new(format!("SELECT {CHANGE_COLUMNS}, hash, prev_hash FROM changes WHERE asset_id IN "));
        q.bind_list(ids.iter().copied());
        q.push(" ORDER BY asset_id, id");
        let rows = q.query().fetch_all(&mut *tx).await?;
        let columns = CHANGE_COLUMNS.split(", ").count();
        let old_at = CHANGE_COLUMNS.split(", ").position(|c| c == "old_value").unwrap_or(0);
        let mut history: std::collections::BTreeMap<i64, Vec<(store::ChangeRecord, Link)>> = Default::default();
        for row in &rows {
            let record = store::change_row(row)?;
            let link = Link {
                old: row.try_get(old_at)?,
                new: row.try_get(old_at + 1)?,
                hash: row.try_get(columns)?,
                prev_hash: row.try_get(columns + 1)?,
            };
            history.entry(record.asset_id).or_default().push((record, link));
        }
        let mut states = states_of(&mut tx, &ids).await?;
        for id in &ids {
            let stored = states.remove(id).unwrap_or_default();
            let chained = history.remove(id).unwrap_or_default();
            out.changes += chained.len() as u64;
            out.assets += 1;
            let (broken, head) = check_chain(&chained, at);
            if let Some(head) = head {
                heads.push((*id, head));
            }
            if let Some(broken) = broken {
                out.mismatches.push(broken);
                continue;
            }
            let records: Vec<store::ChangeRecord> = chained.into_iter().map(|(record, _)| record).collect();
            let ops: Vec<_> = records.iter().map(store::ChangeRecord::op).collect();
            match replay(&ops) {
                Err(e) => {
                    // The record that cannot be applied: replay the prefixes to find it.
                    let bad = (1..=ops.len()).find(|n| replay(&ops[..*n]).is_err()).map(|n| records[n - 1].id);
                    out.mismatches.push(Mismatch {
                        asset_id: *id,
                        change_id: bad,
                        reason: format!("the history does not replay: {e}"),
                    });
                }
                Ok(rebuilt) if rebuilt != stored => {
                    let (section, component) = first_difference(&stored, &rebuilt).unwrap_or_default();
                    let touched = records
                        .iter()
                        .rev()
                        .find(|r| r.section == section && (component.is_none() || r.component == component))
                        .map(|r| r.id);
                    let what = match &component {
                        Some(key) => format!("component {key} of section {section}"),
                        None => format!("section {section}"),
                    };
                    out.mismatches.push(Mismatch {
                        asset_id: *id,
                        change_id: touched,
                        reason: format!("the stored {what} is not what its history rebuilds"),
                    });
                }
                Ok(_) => {}
            }
        }
        tx.rollback().await?;
        after = last;
        progress(out.assets);
    }
    out.chains = heads.len() as u64;
    out.digest = cmdb_model::chain::heads_digest(heads.iter().map(|(id, head)| (*id, head.as_str())));
    // Rows of assets that do not exist are accounted for by nothing.
    for table in ["asset_sections", "components"] {
        let sql = format!(
            "SELECT DISTINCT asset_id FROM {table} WHERE asset_id NOT IN (SELECT id FROM assets) ORDER BY asset_id"
        );
        for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(db.reader()).await? {
            let asset_id: i64 = row.try_get(0)?;
            out.mismatches.push(Mismatch {
                asset_id,
                change_id: None,
                reason: format!("{table} has rows of asset {asset_id}, which does not exist"),
            });
        }
    }
    Ok(out)
}
