//! Possible duplicates: two records (neither deleted) that may be one machine. Two records for one
//! machine happen: a retired or deleted host that reports again, a machine registered by hand
//! before its agent ran, a cloned VM. cmdb never merges them on its own (that is a person's
//! decision, with its history, see [`crate::service::record::merge`]); it flags them on the list,
//! on both assets' pages, on the duplicates page and in the audit workbook, always by this one
//! rule. Two records are possible duplicates when they share
//!
//! - a board UUID, a (manufacturer, serial) pair of the board, or a machine id, as stored in the
//!   normalized identity columns (placeholders such as "To Be Filled By O.E.M." are never stored
//!   as keys, see `cmdb_model::identity`, so they never make two assets look alike);
//! - a universally administered unicast MAC address (first octet & 0x03 = 0): locally
//!   administered ones (bridges, VMs, bonds) and multicast ones are shared by design;
//! - or when one was marked, when a report created it, as a possible duplicate of the other.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use crate::db::Db;
use crate::service::ServiceError;
use crate::service::assets::NOT_DELETED;

/// Another asset that may be the same machine as the one at hand.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub struct SharedIdentity {
    /// The other asset.
    pub asset_id: i64,
    /// Its host name now.
    pub hostname: String,
    /// What they share: `board UUID`, `board serial`, `machine id`, `MAC address <mac>`, or
    /// `marked when created`.
    pub shares: String,
}

/// One pair of possible duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DuplicatePair {
    /// The lower asset id.
    pub asset_id: i64,
    /// Its host name.
    pub hostname: String,
    /// The higher asset id.
    pub other_id: i64,
    /// Its host name.
    pub other_hostname: String,
    /// Everything they share.
    pub shares: Vec<String>,
}

/// A record and the key value it carries, as one query of the rule returns them.
struct Keyed {
    id: i64,
    hostname: String,
    key: String,
}

/// Whether `term` is a MAC address that names one interface: six colon-separated hex octets,
/// universally administered and unicast (first octet & 0x03 == 0), not all zeros.
pub fn is_unique_mac(term: &str) -> bool {
    let octets: Vec<&str> = term.split(':').collect();
    if octets.len() != 6 || octets.iter().any(|o| o.len() != 2 || !o.chars().all(|c| c.is_ascii_hexdigit())) {
        return false;
    }
    let first = u8::from_str_radix(octets[0], 16).unwrap_or(0xff);
    first & 0x03 == 0 && octets.iter().any(|o| *o != "00")
}

/// The rule's queries: for each kind of key, the records (not deleted) whose value of it is
/// shared; restricted to the values asset `only` has, when given.
async fn keyed(db: &Db, only: Option<i64>) -> Result<Vec<(&'static str, Vec<Keyed>)>, ServiceError> {
    let restrict = |expr: &str| match only {
        Some(_) => format!(" AND {expr} IN (SELECT {expr} FROM assets WHERE id = $1)"),
        None => String::new(),
    };
    let mut out = Vec::new();
    for (label, expr) in [
        ("board UUID", "board_uuid"),
        ("board serial", "COALESCE(board_manufacturer, '') || '/' || board_sn"),
        ("machine id", "machine_id"),
    ] {
        let column = expr.rsplit(' ').next().unwrap_or(expr);
        let sql = format!(
            "SELECT id, hostname, {expr} FROM assets WHERE {NOT_DELETED} AND {column} IS NOT NULL{} AND {expr} IN \
             (SELECT {expr} FROM assets WHERE {NOT_DELETED} AND {column} IS NOT NULL GROUP BY {expr} HAVING COUNT(*) > 1)",
            restrict(expr)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(id) = only {
            q = q.bind(id);
        }
        let rows = q.fetch_all(db.reader()).await?;
        let mut keyed = Vec::with_capacity(rows.len());
        for row in &rows {
            keyed.push(Keyed { id: row.try_get(0)?, hostname: row.try_get(1)?, key: row.try_get(2)? });
        }
        out.push((label, keyed));
    }
    // MAC addresses are search terms (lowercase, colon notation): the shared ones that look like
    // one, checked exactly in Rust. A term range skips names and most addresses.
    let mac_only = match only {
        Some(_) => " AND t.term IN (SELECT term FROM search_terms WHERE asset_id = $1)",
        None => "",
    };
    let sql = format!(
        "SELECT a.id, a.hostname, t.term FROM search_terms t JOIN assets a ON a.id = t.asset_id \
         WHERE a.{NOT_DELETED}{mac_only} AND t.term IN (SELECT term FROM search_terms \
         WHERE LENGTH(term) = 17 AND term LIKE '__:__:__:__:__:__' GROUP BY term HAVING COUNT(*) > 1)"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some(id) = only {
        q = q.bind(id);
    }
    let mut macs = Vec::new();
    for row in &q.fetch_all(db.reader()).await? {
        let key: String = row.try_get(2)?;
        if is_unique_mac(&key) {
            macs.push(Keyed { id: row.try_get(0)?, hostname: row.try_get(1)?, key });
        }
    }
    out.push(("MAC address", macs));
    // Marks set when a report created a record that could not be tied to another.
    let sql = format!(
        "SELECT a.id, a.hostname, o.id, o.hostname FROM assets a JOIN assets o ON o.id = a.possible_duplicate_of \
         WHERE a.{NOT_DELETED} AND o.{NOT_DELETED}{}",
        if only.is_some() { " AND (a.id = $1 OR o.id = $1)" } else { "" }
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some(id) = only {
        q = q.bind(id);
    }
    let mut marks = Vec::new();
    for row in &q.fetch_all(db.reader()).await? {
        let (a, o): (i64, i64) = (row.try_get(0)?, row.try_get(2)?);
        let key = format!("{}-{}", a.min(o), a.max(o));
        marks.push(Keyed { id: a, hostname: row.try_get(1)?, key: key.clone() });
        marks.push(Keyed { id: o, hostname: row.try_get(3)?, key });
    }
    out.push(("marked when created", marks));
    Ok(out)
}

/// Pairs of records by what they share: (lower id, higher id) -> (host names, shares in the
/// rule's order).
type Pairs = BTreeMap<(i64, i64), ((String, String), Vec<String>)>;

fn pairs(keyed: Vec<(&'static str, Vec<Keyed>)>) -> Pairs {
    let mut out: Pairs = BTreeMap::new();
    for (label, rows) in keyed {
        let mut by_key: BTreeMap<&str, Vec<&Keyed>> = BTreeMap::new();
        for row in &rows {
            by_key.entry(row.key.as_str()).or_default().push(row);
        }
        for (key, group) in by_key {
            let shares = if label == "MAC address" { format!("MAC address {key}") } else { label.to_owned() };
            for (i, a) in group.iter().enumerate() {
                for b in &group[i + 1..] {
                    if a.id == b.id {
                        continue;
                    }
                    let (low, high) = if a.id < b.id { (a, b) } else { (b, a) };
                    let entry = out
                        .entry((low.id, high.id))
                        .or_insert_with(|| ((low.hostname.clone(), high.hostname.clone()), Vec::new()));
                    if !entry.1.contains(&shares) {
                        entry.1.push(shares.clone());
                    }
                }
            }
        }
    }
    out
}

/// Every pair of possible duplicates, lower id first.
pub async fn pairs_all(db: &Db) -> Result<Vec<DuplicatePair>, ServiceError> {
    Ok(pairs(keyed(db, None).await?)
        .into_iter()
        .map(|((a, b), ((ha, hb), shares))| DuplicatePair {
            asset_id: a,
            hostname: ha,
            other_id: b,
            other_hostname: hb,
            shares,
        })
        .collect())
}

fn by_asset(pairs: Pairs) -> BTreeMap<i64, Vec<SharedIdentity>> {
    let mut out: BTreeMap<i64, Vec<SharedIdentity>> = BTreeMap::new();
    for ((a, b), ((ha, hb), shares)) in pairs {
        let shares = shares.join(", ");
        out.entry(a).or_default().push(SharedIdentity { asset_id: b, hostname: hb, shares: shares.clone() });
        out.entry(b).or_default().push(SharedIdentity { asset_id: a, hostname: ha, shares });
    }
    for others in out.values_mut() {
        others.sort();
    }
    out
}

/// Every record that may be a duplicate, with the others (as they stand now).
pub async fn all(db: &Db) -> Result<BTreeMap<i64, Vec<SharedIdentity>>, ServiceError> {
    Ok(by_asset(pairs(keyed(db, None).await?)))
}

/// The records that may be the same machine as asset `id` (empty for most).
pub async fn of(db: &Db, id: i64) -> Result<Vec<SharedIdentity>, ServiceError> {
    Ok(by_asset(pairs(keyed(db, Some(id)).await?)).remove(&id).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_universally_administered_unicast_macs_identify_a_machine() {
        assert!(is_unique_mac("00:1c:42:a5:57:7a"));
        assert!(is_unique_mac("a0:36:9f:12:34:56"));
        for shared in [
            "02:42:ac:11:00:02", // locally administered (Docker)
            "fe:ff:ff:ff:ff:ff", // locally administered
            "01:00:5e:00:00:01", // multicast
            "00:00:00:00:00:00",
            "00:1c:42:a5:57",
            "00:1c:42:a5:57:7g",
            "fe80::1:2:3:4:5",
        ] {
            assert!(!is_unique_mac(shared), "{shared}");
        }
    }
}
