//! Managed lists: the values people may choose for IDC, business unit and tags.
//!
//! A list with no values does not restrict anything (a fresh install accepts what it is given);
//! once a list has values, the CSV import refuses values outside it. A value still used by assets
//! cannot be deleted (an audit would then show values nobody can pick), only described.

use std::collections::{BTreeMap, BTreeSet};

use cmdb_model::business::{BusinessFields, MAX_FIELD_LEN};
use serde::Serialize;
use sqlx::Row;

use crate::db::{Db, from_us, now_us};
use crate::service::ServiceError;
use crate::service::assets::NOT_DELETED;

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// Data centres.
    Idc,
    /// Business units.
    BusinessUnit,
    /// Tags.
    Tag,
}

impl ListKind {
    /// Every list.
    pub const ALL: [ListKind; 3] = [ListKind::Idc, ListKind::BusinessUnit, ListKind::Tag];

    /// The name in URLs and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Idc => "idc",
            ListKind::BusinessUnit => "business_unit",
            ListKind::Tag => "tag",
        }
    }

    /// Parses the name; a 404 names the lists that exist.
    pub fn parse(text: &str) -> Result<ListKind, ServiceError> {
        ListKind::ALL.into_iter().find(|k| k.as_str() == text).ok_or_else(|| {
            ServiceError::NotFound(format!("no list {text:?}: the lists are idc, business_unit and tag"))
        })
    }

    /// The business field the list constrains.
    pub fn field(self) -> &'static str {
        match self {
            ListKind::Idc => "idc",
            ListKind::BusinessUnit => "business_unit",
            ListKind::Tag => "tags",
        }
    }

    fn max_len(self) -> usize {
        match self {
            ListKind::Tag => 64,
            _ => MAX_FIELD_LEN,
        }
    }
}

/// One value of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ManagedValue {
    /// The value.
    pub value: String,
    /// What it means.
    pub description: String,
    /// When it was added.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Who added it.
    pub created_by: String,
    /// Assets using it now.
    pub assets: i64,
}

/// Checks a new value: trimmed, not empty, no control characters, tags without commas (the tag
/// column separates with commas).
pub fn normalize(kind: ListKind, value: &str) -> Result<String, ServiceError> {
    let invalid = |message: String| ServiceError::Invalid { field: "/value".to_owned(), message };
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid("the value is empty".to_owned()));
    }
    if value.len() > kind.max_len() {
        return Err(invalid(format!("longer than {} bytes", kind.max_len())));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("contains control characters".to_owned()));
    }
    if kind == ListKind::Tag && value.contains(',') {
        return Err(invalid("a tag cannot contain a comma".to_owned()));
    }
    Ok(value.to_owned())
}

/// How many assets use each value of `kind` now (one query).
async fn usage(db: &Db, kind: ListKind) -> Result<BTreeMap<String, i64>, ServiceError> {
    let mut out = BTreeMap::new();
    match kind {
        ListKind::Idc | ListKind::BusinessUnit => {
            let column = kind.as_str();
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {column}, COUNT(*) FROM assets WHERE {column} IS NOT NULL AND {NOT_DELETED} GROUP BY {column}"
            )))
            .fetch_all(db.reader())
            .await?;
            for row in rows {
                out.insert(row.try_get(0)?, row.try_get(1)?);
            }
        }
        ListKind::Tag => {
            // Tags live in one ",a,b," column; counting them in Rust is one pass over the
            // non-empty ones rather than one LIKE scan per tag.
            let rows =
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT tags FROM assets WHERE tags <> '' AND {NOT_DELETED}")))
                    .fetch_all(db.reader())
                    .await?;
            for row in rows {
                let tags: String = row.try_get(0)?;
                for tag in tags.split(',').filter(|t| !t.is_empty()) {
                    *out.entry(tag.to_owned()).or_insert(0) += 1;
                }
            }
        }
    }
    Ok(out)
}

/// The values of a list with their use, in value order.
pub async fn values(db: &Db, kind: ListKind) -> Result<Vec<ManagedValue>, ServiceError> {
    let rows = sqlx::query(
        "SELECT value, description, created_at, created_by FROM managed_values WHERE list = $1 ORDER BY value",
    )
    .bind(kind.as_str())
    .fetch_all(db.reader())
    .await?;
    let used = usage(db, kind).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let value: String = row.try_get(0)?;
        out.push(ManagedValue {
            assets: used.get(&value).copied().unwrap_or(0),
            value,
            description: row.try_get(1)?,
            created_at: from_us(row.try_get(2)?),
            created_by: row.try_get(3)?,
        });
    }
    Ok(out)
}

/// Every list's values (for validation and select boxes), one query.
pub async fn all(db: &Db) -> Result<BTreeMap<ListKind, BTreeSet<String>>, ServiceError> {
    let rows = sqlx::query("SELECT list, value FROM managed_values").fetch_all(db.reader()).await?;
    let mut out: BTreeMap<ListKind, BTreeSet<String>> =
        ListKind::ALL.into_iter().map(|k| (k, BTreeSet::new())).collect();
    for row in rows {
        let list: String = row.try_get(0)?;
        if let Ok(kind) = ListKind::parse(&list) {
            out.entry(kind).or_default().insert(row.try_get(1)?);
        }
    }
    Ok(out)
}

/// Adds a value; 409 when it exists.
pub async fn add(
    db: &Db,
    kind: ListKind,
    value: &str,
    description: &str,
    actor: &str,
) -> Result<ManagedValue, ServiceError> {
    let value = normalize(kind, value)?;
    let description = description.trim();
    if description.len() > 1000 {
        return Err(ServiceError::Invalid {
            field: "/description".to_owned(),
            message: "longer than 1000 bytes".to_owned(),
        });
    }
    let now = now_us();
    let done = sqlx::query(
        "INSERT INTO managed_values (list, value, description, created_at, created_by) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(kind.as_str())
    .bind(value.clone())
    .bind(description.to_owned())
    .bind(now)
    .bind(actor.to_owned())
    .execute(db.writer())
    .await?;
    if done.rows_affected() == 0 {
        return Err(ServiceError::Conflict(format!("{value:?} is already in the {} list", kind.as_str())));
    }
    tracing::info!(list = kind.as_str(), value = %value, actor, "managed value added");
    let assets = usage(db, kind).await?.get(&value).copied().unwrap_or(0);
    Ok(ManagedValue {
        value,
        description: description.to_owned(),
        created_at: from_us(now),
        created_by: actor.to_owned(),
        assets,
    })
}

/// Changes a value's description; 404 when the value is not in the list.
pub async fn describe(db: &Db, kind: ListKind, value: &str, description: &str) -> Result<(), ServiceError> {
    let description = description.trim();
    if description.len() > 1000 {
        return Err(ServiceError::Invalid {
            field: "/description".to_owned(),
            message: "longer than 1000 bytes".to_owned(),
        });
    }
    let done = sqlx::query("UPDATE managed_values SET description = $3 WHERE list = $1 AND value = $2")
        .bind(kind.as_str())
        .bind(value.to_owned())
        .bind(description.to_owned())
        .execute(db.writer())
        .await?;
    if done.rows_affected() == 0 {
        return Err(ServiceError::NotFound(format!("{value:?} is not in the {} list", kind.as_str())));
    }
    Ok(())
}

/// Removes a value; 409 while assets use it, 404 when it is not in the list.
pub async fn remove(db: &Db, kind: ListKind, value: &str) -> Result<(), ServiceError> {
    let used = usage(db, kind).await?.get(value).copied().unwrap_or(0);
    if used > 0 {
        return Err(ServiceError::Conflict(format!(
            "{used} asset(s) still use {value:?}; change them first (the list filter finds them)"
        )));
    }
    let done = sqlx::query("DELETE FROM managed_values WHERE list = $1 AND value = $2")
        .bind(kind.as_str())
        .bind(value.to_owned())
        .execute(db.writer())
        .await?;
    if done.rows_affected() == 0 {
        return Err(ServiceError::NotFound(format!("{value:?} is not in the {} list", kind.as_str())));
    }
    tracing::info!(list = kind.as_str(), value, "managed value removed");
    Ok(())
}

/// The values of `next` that `fields` sets and the lists do not allow, as (field, message).
/// An empty list allows everything.
pub fn violations(
    lists: &BTreeMap<ListKind, BTreeSet<String>>,
    next: &BusinessFields,
    fields: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let allowed = |kind: ListKind, value: &str| lists.get(&kind).is_none_or(|l| l.is_empty() || l.contains(value));
    for kind in ListKind::ALL {
        if !fields.contains(kind.field()) {
            continue;
        }
        let values: Vec<&str> = match kind {
            ListKind::Idc => next.idc.as_deref().into_iter().collect(),
            ListKind::BusinessUnit => next.business_unit.as_deref().into_iter().collect(),
            ListKind::Tag => next.tags.iter().map(String::as_str).collect(),
        };
        for value in values {
            if !allowed(kind, value) {
                out.push((kind.field().to_owned(), format!("{value:?} is not in the managed {} list", kind.as_str())));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_normalized_and_checked() {
        assert_eq!(normalize(ListKind::Idc, "  DC-1 ").ok().as_deref(), Some("DC-1"));
        assert!(normalize(ListKind::Tag, "a,b").is_err());
        assert!(normalize(ListKind::Idc, " ").is_err());
        assert!(normalize(ListKind::BusinessUnit, "x\u{7}").is_err());
        assert!(ListKind::parse("colour").is_err());
    }

    #[test]
    fn empty_lists_allow_anything_and_full_ones_do_not() {
        let mut lists: BTreeMap<ListKind, BTreeSet<String>> = BTreeMap::new();
        let next =
            BusinessFields { idc: Some("DC-9".into()), tags: vec!["db".into(), "web".into()], ..Default::default() };
        let touched: BTreeSet<String> = ["idc", "tags"].iter().map(|s| (*s).to_owned()).collect();
        assert!(violations(&lists, &next, &touched).is_empty());
        lists.insert(ListKind::Idc, ["DC-1".to_owned()].into());
        lists.insert(ListKind::Tag, ["web".to_owned()].into());
        let found = violations(&lists, &next, &touched);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "idc");
        assert_eq!(found[1].0, "tags");
        // Untouched fields are not judged: an old value outside the list does not block other edits.
        assert!(violations(&lists, &next, &BTreeSet::new()).is_empty());
    }
}
