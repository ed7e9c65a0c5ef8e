//! Custom fields: admins define them (the finance set is there from the start), people give
//! assets values for them.
//!
//! A definition's rules (key, types, accepted forms) are `cmdb_model::custom_fields`; this module
//! stores definitions and enforces what needs the database: a key is never reused (a deleted
//! field keeps its key, so its values in history keep their meaning), and a field's type or
//! choices cannot change under values that exist.

use cmdb_model::custom_fields::{Definitions, FieldDefinition, FieldType};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{Backend, Db, from_us, now_us};
use crate::service::ServiceError;
use crate::service::assets::NOT_DELETED;

/// A custom field as the API and the admin page show it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CustomField {
    /// The key in `business.custom`, in filters (`custom.<key>`) and in spreadsheet headers.
    pub key: String,
    /// What a person reads.
    pub label: String,
    /// text, integer, decimal, date, enum or bool.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub field_type: FieldType,
    /// For enum fields: the values to choose from.
    pub choices: Vec<String>,
    /// A hint shown beside the field.
    pub help: Option<String>,
    /// When it was defined.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Who defined it (`cmdb` for the finance set).
    pub created_by: String,
    /// When it was deleted (hidden; its key is never reused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Assets not deleted that have a value for it now (counted by `list` and `get`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assets: Option<i64>,
}

impl CustomField {
    /// The model's definition.
    pub fn definition(&self) -> FieldDefinition {
        FieldDefinition {
            key: self.key.clone(),
            label: self.label.clone(),
            field_type: self.field_type,
            choices: self.choices.clone(),
            help: self.help.clone(),
        }
    }
}

/// What `POST /api/v1/fields` takes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewField {
    /// `[a-z][a-z0-9_]{0,39}`.
    pub key: String,
    /// What a person reads.
    pub label: String,
    /// text, integer, decimal, date, enum or bool.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub field_type: FieldType,
    /// For enum fields: the values to choose from.
    #[serde(default)]
    pub choices: Vec<String>,
    /// A hint shown beside the field.
    #[serde(default)]
    pub help: Option<String>,
}

/// What `PATCH /api/v1/fields/{key}` takes: the parts to change.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldChange {
    /// A new label.
    #[serde(default)]
    pub label: Option<String>,
    /// A new type (refused while values exist).
    #[serde(default, rename = "type")]
    #[schema(value_type = Option<String>)]
    pub field_type: Option<FieldType>,
    /// New choices for an enum field (refused when a value in use would no longer be one).
    #[serde(default)]
    pub choices: Option<Vec<String>>,
    /// A new hint (empty: none).
    #[serde(default)]
    pub help: Option<String>,
}

const COLUMNS: &str = "key, label, field_type, choices, help, created_at, created_by, deleted_at";

fn decode(row: &sqlx::any::AnyRow) -> Result<CustomField, ServiceError> {
    let key: String = row.try_get(0)?;
    let field_type: String = row.try_get(2)?;
    let choices: String = row.try_get(3)?;
    Ok(CustomField {
        field_type: FieldType::parse(&field_type)
            .ok_or_else(|| ServiceError::Corrupt(format!("custom field {key} has type {field_type:?}")))?,
        choices: serde_json::from_str(&choices)
            .map_err(|e| ServiceError::Corrupt(format!("custom field {key}'s choices are not a JSON list: {e}")))?,
        label: row.try_get(1)?,
        help: row.try_get(4)?,
        created_at: from_us(row.try_get(5)?),
        created_by: row.try_get(6)?,
        deleted_at: row.try_get::<Option<i64>, _>(7)?.map(from_us),
        assets: None,
        key,
    })
}

/// SQL for "the asset's current value of custom field `key`" as text (`key` is checked).
pub fn value_sql(backend: Backend, key: &str) -> String {
    match backend {
        Backend::Sqlite => format!("json_extract(custom, '$.{key}')"),
        Backend::Postgres => format!("(custom::jsonb ->> '{key}')"),
    }
}

/// Every field in definition order, deleted ones only when asked for, without counting their use
/// (`assets` is `None`): one query, for pages and exports that show or read the fields.
pub async fn fields(db: &Db, with_deleted: bool) -> Result<Vec<CustomField>, ServiceError> {
    fields_in(&mut *db.reader().acquire().await?, with_deleted).await
}

async fn fields_in(conn: &mut sqlx::AnyConnection, with_deleted: bool) -> Result<Vec<CustomField>, ServiceError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM custom_fields ORDER BY position, key")))
        .fetch_all(&mut *conn)
        .await?;
    let mut fields = Vec::with_capacity(rows.len());
    for row in &rows {
        let field = decode(row)?;
        if field.deleted_at.is_none() || with_deleted {
            fields.push(field);
        }
    }
    Ok(fields)
}

/// [`fields`], each with the number of assets that have a value for it (one query counts them all).
pub async fn list(db: &Db, with_deleted: bool) -> Result<Vec<CustomField>, ServiceError> {
    let mut fields = fields(db, with_deleted).await?;
    if fields.is_empty() {
        return Ok(fields);
    }
    let mut counts = Vec::new();
    for field in &fields {
        cmdb_model::custom_fields::check_key(&field.key).map_err(|e| ServiceError::Corrupt(e.0))?;
        counts.push(format!(
            "COALESCE(SUM(CASE WHEN {} IS NULL THEN 0 ELSE 1 END), 0)",
            value_sql(db.backend(), &field.key)
        ));
    }
    let sql = format!("SELECT {} FROM assets WHERE {NOT_DELETED}", counts.join(", "));
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(db.reader()).await?;
    for (index, field) in fields.iter_mut().enumerate() {
        field.assets = Some(row.try_get(index)?);
    }
    Ok(fields)
}

/// One field (deleted ones too); 404 when no field ever had the key.
pub async fn get(db: &Db, key: &str) -> Result<CustomField, ServiceError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM custom_fields WHERE key = $1")))
        .bind(key.to_owned())
        .fetch_optional(db.reader())
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no custom field {key:?}")))?;
    let mut field = decode(&row)?;
    field.assets = Some(in_use(db, key).await?);
    Ok(field)
}

/// The definitions edits and imports read values by.
pub async fn definitions(db: &Db) -> Result<Definitions, ServiceError> {
    definitions_in(&mut *db.reader().acquire().await?).await
}

/// [`definitions`] on the caller's connection (inside its transaction).
pub async fn definitions_in(conn: &mut sqlx::AnyConnection) -> Result<Definitions, ServiceError> {
    let mut out = Definitions::default();
    for field in fields_in(conn, true).await? {
        let target = if field.deleted_at.is_some() { &mut out.deleted } else { &mut out.fields };
        target.insert(field.key.clone(), field.definition());
    }
    Ok(out)
}

/// How many assets (not deleted) have a value for `key` now.
async fn in_use(db: &Db, key: &str) -> Result<i64, ServiceError> {
    cmdb_model::custom_fields::check_key(key).map_err(|e| ServiceError::Corrupt(e.0))?;
    let sql =
        format!("SELECT COUNT(*) FROM assets WHERE {NOT_DELETED} AND {} IS NOT NULL", value_sql(db.backend(), key));
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(db.reader()).await?.try_get(0)?)
}

/// The values of `key` in use now (for a change of choices).
async fn values_in_use(db: &Db, key: &str) -> Result<Vec<String>, ServiceError> {
    let value = value_sql(db.backend(), key);
    let sql = format!("SELECT DISTINCT {value} FROM assets WHERE {NOT_DELETED} AND {value} IS NOT NULL");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(db.reader()).await?;
    rows.iter().map(|row| row.try_get::<String, _>(0).map_err(ServiceError::from)).collect()
}

fn invalid(e: cmdb_model::custom_fields::CustomFieldError) -> ServiceError {
    ServiceError::invalid("/", e.0)
}

/// Defines a field; 409 when the key is taken, now or by a deleted field.
pub async fn create(db: &Db, field: NewField, actor: &str) -> Result<CustomField, ServiceError> {
    let definition = FieldDefinition {
        key: field.key,
        label: field.label,
        field_type: field.field_type,
        choices: field.choices,
        help: field.help,
    }
    .normalized()
    .map_err(invalid)?;
    let choices = serde_json::to_string(&definition.choices).map_err(|e| ServiceError::Bug(e.to_string()))?;
    let done = sqlx::query(
        "INSERT INTO custom_fields (key, label, field_type, choices, help, position, created_at, created_by) \
         SELECT $1, $2, $3, $4, $5, COALESCE(MAX(position), 0) + 1, $6, $7 FROM custom_fields WHERE 1 = 1 \
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(definition.key.clone())
    .bind(definition.label.clone())
    .bind(definition.field_type.as_str())
    .bind(choices)
    .bind(definition.help.clone())
    .bind(now_us())
    .bind(actor.to_owned())
    .execute(db.writer())
    .await?;
    if done.rows_affected() == 0 {
        let existing = get(db, &definition.key).await?;
        return Err(ServiceError::Conflict(match existing.deleted_at {
            Some(_) => format!(
                "the key {:?} belonged to a field that was deleted; keys are never reused (its values are in history)",
                definition.key
            ),
            None => format!("a field with key {:?} exists ({})", definition.key, existing.label),
        }));
    }
    tracing::info!(key = %definition.key, actor, "custom field defined");
    get(db, &definition.key).await
}

/// Changes a field's label, help, type or choices. The type cannot change while an asset has a
/// value (409); new choices must keep every value in use.
pub async fn change(db: &Db, key: &str, change: FieldChange) -> Result<CustomField, ServiceError> {
    let current = get(db, key).await?;
    let in_use = current.assets.unwrap_or(0);
    if current.deleted_at.is_some() {
        return Err(ServiceError::Conflict(format!("the field {key:?} was deleted")));
    }
    let next = FieldDefinition {
        key: current.key.clone(),
        label: change.label.unwrap_or_else(|| current.label.clone()),
        field_type: change.field_type.unwrap_or(current.field_type),
        choices: match (change.choices, change.field_type) {
            (Some(choices), _) => choices,
            // A new type other than enum drops the old choices with it.
            (None, Some(t)) if t != FieldType::Enum => Vec::new(),
            (None, _) => current.choices.clone(),
        },
        help: match change.help {
            Some(help) => Some(help),
            None => current.help.clone(),
        },
    }
    .normalized()
    .map_err(invalid)?;
    if next.field_type != current.field_type && in_use > 0 {
        return Err(ServiceError::Conflict(format!(
            "the type of {key:?} cannot change from {} to {} while {} asset(s) have a value; clear them first",
            current.field_type.as_str(),
            next.field_type.as_str(),
            in_use
        )));
    }
    if next.field_type == FieldType::Enum && in_use > 0 {
        let orphans: Vec<String> =
            values_in_use(db, key).await?.into_iter().filter(|v| !next.choices.contains(v)).collect();
        if !orphans.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "assets use {} of {key:?}, which the new choices leave out",
                orphans.join(", ")
            )));
        }
    }
    let choices = serde_json::to_string(&next.choices).map_err(|e| ServiceError::Bug(e.to_string()))?;
    sqlx::query("UPDATE custom_fields SET label = $1, field_type = $2, choices = $3, help = $4 WHERE key = $5")
        .bind(next.label)
        .bind(next.field_type.as_str())
        .bind(choices)
        .bind(next.help)
        .bind(key.to_owned())
        .execute(db.writer())
        .await?;
    get(db, key).await
}

/// Deletes (hides) a field: no new values, its key never reused, its values kept in history and
/// on the assets that have them.
pub async fn delete(db: &Db, key: &str, actor: &str) -> Result<(), ServiceError> {
    let current = get(db, key).await?;
    if current.deleted_at.is_some() {
        return Err(ServiceError::NotFound(format!("the field {key:?} is deleted already")));
    }
    sqlx::query("UPDATE custom_fields SET deleted_at = $1, deleted_by = $2 WHERE key = $3 AND deleted_at IS NULL")
        .bind(now_us())
        .bind(actor.to_owned())
        .bind(key.to_owned())
        .execute(db.writer())
        .await?;
    tracing::info!(key, actor, "custom field deleted");
    Ok(())
}
