//! `cmdb-server verify`: the history is evidence only if it rebuilds what is stored. For every
//! asset, replaying its change records must give exactly its stored sections and components, and
//! no section or component row may belong to an asset that does not exist.
//!
//! It reads in chunks of assets, each chunk in one read transaction on the readers' pool (three
//! queries a chunk), so it runs beside a live server without holding the writer.

use std::collections::BTreeSet;

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

/// Checks every asset; `progress` is called after each chunk with the assets checked so far.
pub async fn verify(db: &Db, progress: &mut (dyn FnMut(u64) + Send)) -> Result<Verification, ServiceError> {
    let mut out = Verification::default();
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
        let mut q = Sql::new(format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE asset_id IN "));
        q.bind_list(ids.iter().copied());
        q.push(" ORDER BY asset_id, id");
        let rows = q.query().fetch_all(&mut *tx).await?;
        let mut history: std::collections::BTreeMap<i64, Vec<store::ChangeRecord>> = Default::default();
        for row in &rows {
            let record = store::change_row(row)?;
            history.entry(record.asset_id).or_default().push(record);
        }
        let mut states = states_of(&mut tx, &ids).await?;
        for id in &ids {
            let stored = states.remove(id).unwrap_or_default();
            let records = history.remove(id).unwrap_or_default();
            out.changes += records.len() as u64;
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
            out.assets += 1;
        }
        tx.rollback().await?;
        after = last;
        progress(out.assets);
    }
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
