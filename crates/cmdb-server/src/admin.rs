//! Administration that needs no running server: the first-start credentials and the
//! `agent-key` / `token` commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sqlx::Row;

use crate::auth::{self, KeyScope, Role};
use crate::config::ServerConfig;
use crate::db::{Db, from_us, now_us};
use crate::secrets::{SecretError, SecretKey, agent_key_label};

/// Credentials created on the first start of an empty database.
#[derive(Debug)]
pub struct FirstStart {
    /// The admin bearer token (shown once).
    pub admin_token: String,
    /// This machine's agent key id.
    pub key_id: String,
    /// This machine's agent secret (shown once).
    pub secret: String,
    /// Where the token was written.
    pub token_file: PathBuf,
    /// Where the agent key was written.
    pub key_file: PathBuf,
}

/// Why first-start setup failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The secrets key file is missing, unreadable or not the one the database's secrets were
    /// sealed with.
    #[error(transparent)]
    Secrets(#[from] SecretError),
    /// The first administrator's password could not be hashed (a bug: the parameters are fixed).
    #[error("cannot hash the first password: {0}")]
    Password(String),
    /// A credential file could not be written.
    #[error("cannot write {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// On an empty database, creates an admin token and a `host` agent key for this machine, and
/// writes them to files only the owner can read. Returns `None` when the database was set up
/// before (by this or another instance).
pub async fn first_start(
    db: &Db,
    data_dir: &Path,
    secret_key: &SecretKey,
) -> Result<Option<FirstStart>, BootstrapError> {
    let mut tx = db.begin_write().await?;
    let claimed = sqlx::query("INSERT INTO settings (name, value) VALUES ('bootstrapped', $1) ON CONFLICT DO NOTHING")
        .bind(now_us().to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if !claimed {
        return Ok(None);
    }
    let admin_token = auth::new_token();
    sqlx::query("INSERT INTO api_tokens (name, token_hash, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind("admin (first start)")
        .bind(auth::token_hash(&admin_token))
        .bind(Role::Admin.as_str())
        .bind(now_us())
        .execute(&mut *tx)
        .await?;
    let key_id = format!("ak_{}", auth::random_hex(8));
    let secret = auth::random_hex(32);
    sqlx::query("INSERT INTO agent_keys (key_id, secret, scope, name, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(key_id.clone())
        .bind(secret_key.seal(&agent_key_label(&key_id), &secret))
        .bind(KeyScope::Host.as_str())
        .bind("this machine (first start)")
        .bind(now_us())
        .execute(&mut *tx)
        .await?;
    let token_file = data_dir.join("admin-token");
    let key_file = data_dir.join("agent-key.toml");
    write_private(&token_file, &format!("{admin_token}\n"))?;
    write_private(
        &key_file,
        &format!(
            "# cmdb agent key for this machine (scope: host), created at the server's first start.\nkey_id = \"{key_id}\"\nsecret = \"{secret}\"\n"
        ),
    )?;
    tx.commit().await?;
    Ok(Some(FirstStart { admin_token, key_id, secret, token_file, key_file }))
}

/// Loads the secrets key (`secrets.key_file`), creating it when the database holds no sealed
/// secret yet, then seals any agent secret an older version stored in the clear and checks that
/// the sealed ones open with this key. Every command that reads or writes agent secrets starts
/// here.
pub async fn open_secrets(db: &Db, config: &ServerConfig) -> Result<Arc<SecretKey>, BootstrapError> {
    let path = config.secrets_key_file();
    let sealed_exist = auth::has_sealed_secrets(db.writer()).await?;
    let (key, origin) = SecretKey::load_or_create(&path, !sealed_exist)?;
    let sealed_now = auth::seal_stored_secrets(db.writer(), &key).await.map_err(|e| match e {
        crate::store::StoreError::Db(e) => BootstrapError::Db(e),
        crate::store::StoreError::Corrupt(e) => BootstrapError::Secrets(SecretError::WrongKey { what: e.0 }),
    })?;
    if sealed_now > 0 {
        tracing::info!(count = sealed_now, key_file = %path.display(), ?origin, "sealed agent secrets stored in the clear");
    }
    Ok(Arc::new(key))
}

/// True when asset `id` exists.
pub async fn asset_exists(db: &Db, id: i64) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT 1 FROM assets WHERE id = $1").bind(id).fetch_optional(db.reader()).await?.is_some())
}

/// Writes `content` to `path` with mode 0600, atomically.
pub fn write_private(path: &Path, content: &str) -> Result<(), BootstrapError> {
    crate::file_modes::write_private(path, content)
        .map_err(|source| BootstrapError::File { path: path.to_owned(), source })
}

/// An agent key as listed (never with its secret).
#[derive(Debug, Serialize)]
pub struct KeyInfo {
    /// Public id.
    pub key_id: String,
    /// Scope.
    pub scope: String,
    /// Label.
    pub name: String,
    /// For host keys: the asset it reports as.
    pub asset_id: Option<i64>,
    /// Created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Revoked, if so.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When a request signed with it was last accepted.
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The host name of the asset it is bound to.
    pub hostname: Option<String>,
}

/// The agent's key file (`agent-key.toml`, the agent's `key_file`) for a key: what the CLI's
/// `--out` writes and the keys page shows ready to paste.
pub fn key_file_text(key_id: &str, secret: &str) -> String {
    format!("# cmdb agent key; keep this file private (mode 0600)\nkey_id = \"{key_id}\"\nsecret = \"{secret}\"\n")
}

/// True when an active agent key (`tokens`: API token) already has the non-empty label `name`, so
/// two machines' keys cannot be told apart in the list and the audit log.
pub async fn name_taken(db: &Db, tokens: bool, name: &str) -> Result<bool, sqlx::Error> {
    if name.trim().is_empty() {
        return Ok(false);
    }
    let table = if tokens { "api_tokens" } else { "agent_keys" };
    let count: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {table} WHERE name = $1 AND revoked_at IS NULL"
    )))
    .bind(name.to_owned())
    .fetch_one(db.reader())
    .await?
    .try_get(0)?;
    Ok(count > 0)
}

/// Lists agent keys.
pub async fn list_keys(db: &Db) -> Result<Vec<KeyInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT k.key_id, k.scope, k.name, k.asset_id, k.created_at, k.revoked_at, k.last_used_at, a.hostname \
         FROM agent_keys k LEFT JOIN assets a ON a.id = k.asset_id ORDER BY k.id",
    )
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(KeyInfo {
                key_id: row.try_get(0)?,
                scope: row.try_get(1)?,
                name: row.try_get(2)?,
                asset_id: row.try_get(3)?,
                created_at: from_us(row.try_get(4)?),
                revoked_at: row.try_get::<Option<i64>, _>(5)?.map(from_us),
                last_used_at: row.try_get::<Option<i64>, _>(6)?.map(from_us),
                hostname: row.try_get(7)?,
            })
        })
        .collect()
}

/// Revokes an agent key; `false` when there is no such active key.
pub async fn revoke_key(db: &Db, key_id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE agent_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL")
        .bind(key_id.to_owned())
        .bind(now_us())
        .execute(db.writer())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A token as listed (never with the token).
#[derive(Debug, Serialize)]
pub struct TokenInfo {
    /// Id (for revocation).
    pub id: i64,
    /// Label.
    pub name: String,
    /// Role.
    pub role: String,
    /// Created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Revoked, if so.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Lists tokens.
pub async fn list_tokens(db: &Db) -> Result<Vec<TokenInfo>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY id")
        .fetch_all(db.reader())
        .await?;
    rows.iter()
        .map(|row| {
            Ok(TokenInfo {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                role: row.try_get(2)?,
                created_at: from_us(row.try_get(3)?),
                revoked_at: row.try_get::<Option<i64>, _>(4)?.map(from_us),
            })
        })
        .collect()
}

/// Revokes a token by id; `false` when there is no such active token.
pub async fn revoke_token(db: &Db, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(now_us())
        .execute(db.writer())
        .await?;
    Ok(done.rows_affected() == 1)
}
