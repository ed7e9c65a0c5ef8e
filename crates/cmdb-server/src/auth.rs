//! Who is calling: agents sign requests with a key (HMAC), people and scripts present a bearer
//! token with a role.
//!
//! Agent keys are cached for a few seconds (`key_cache_secs`) so a report does not cost a key
//! lookup; the scope check of `host` keys is done in the ingest transaction itself, so it is exact
//! even across several server instances. On PostgreSQL a change to a key is announced to every
//! instance (a trigger's NOTIFY, see [`listen_for_key_changes`]), which forgets that key at once;
//! the cache's lifetime only bounds staleness while that announcement cannot be heard. Secrets
//! and tokens are never logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use cmdb_model::signing::{self, SignedHeader};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::now_us;
use crate::secrets::{SecretKey, agent_key_label};
use crate::store::{Corrupt, StoreError};

/// What an agent key may report for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    /// One machine in agent mode: only the asset it first reported as.
    Host,
    /// An SSH or Salt worker: any host.
    Collector,
}

impl KeyScope {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Host => "host",
            KeyScope::Collector => "collector",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "host" => Some(KeyScope::Host),
            "collector" => Some(KeyScope::Collector),
            _ => None,
        }
    }
}

/// An agent key as the server knows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentKey {
    /// Row id.
    pub id: i64,
    /// Public key id (sent in every request).
    pub key_id: String,
    /// The shared HMAC secret.
    pub secret: String,
    /// Scope.
    pub scope: KeyScope,
    /// For host keys: the asset it is bound to, once it has reported.
    pub asset_id: Option<i64>,
    /// A label for people.
    pub name: String,
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs and panic messages.
        f.debug_struct("AgentKey")
            .field("id", &self.id)
            .field("key_id", &self.key_id)
            .field("scope", &self.scope)
            .field("asset_id", &self.asset_id)
            .finish_non_exhaustive()
    }
}

/// Roles of people and scripts, in increasing power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Reads everything and edits business fields, registers hosts, imports.
    Editor,
    /// Everything, including users, agent keys and tokens.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A person or script, authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token name or user name; becomes `user:<name>` in change records.
    pub name: String,
    /// Role.
    pub role: Role,
}

impl Principal {
    /// The change-record source for this principal's edits.
    pub fn source(&self) -> String {
        format!("user:{}", self.name)
    }
}

/// Why a signed request was refused (all are 401 to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentAuthError {
    /// No Authorization header.
    #[error("missing Authorization header (expected {} ...)", signing::SCHEME)]
    Missing,
    /// The header could not be parsed.
    #[error("{0}")]
    Header(#[from] signing::HeaderError),
    /// The timestamp is outside the clock window.
    #[error("timestamp outside the allowed clock window of {0} s; check the agent's clock")]
    Clock(u64),
    /// Unknown or revoked key.
    #[error("unknown or revoked agent key")]
    UnknownKey,
    /// The signature does not match.
    #[error("signature does not match the request")]
    Signature,
    /// The nonce was used before within the window.
    #[error("nonce already used (replayed request)")]
    Replay,
}

/// A short-lived cache of agent keys by key id (negative answers included), and the key that
/// opens their sealed secrets.
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, (Option<AgentKey>, Instant)>>,
    secret_key: Arc<SecretKey>,
    /// Bumped by every forget: a lookup that read the database before a forget does not store
    /// what it read, which may be the key as it was before the change.
    generation: AtomicU64,
}

impl KeyCache {
    /// A cache whose entries live `ttl`, opening secrets with `secret_key`.
    pub fn new(ttl: Duration, secret_key: Arc<SecretKey>) -> Self {
        KeyCache { ttl, entries: RwLock::new(HashMap::new()), secret_key, generation: AtomicU64::new(0) }
    }

    /// The key that seals secrets at rest.
    pub fn secret_key(&self) -> &Arc<SecretKey> {
        &self.secret_key
    }

    /// The active key `key_id`, from the cache or the database.
    pub async fn get(&self, pool: &AnyPool, key_id: &str) -> Result<Option<AgentKey>, StoreError> {
        if let Ok(entries) = self.entries.read()
            && let Some((key, at)) = entries.get(key_id)
            && at.elapsed() < self.ttl
        {
            return Ok(key.clone());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let key = load_agent_key(pool, &self.secret_key, key_id).await?;
        if let Ok(mut entries) = self.entries.write()
            && self.generation.load(Ordering::Acquire) == generation
        {
            if entries.len() > 10_000 {
                entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            }
            entries.insert(key_id.to_owned(), (key.clone(), Instant::now()));
        }
        Ok(key)
    }

    /// Forgets everything (after a key is created, revoked, rotated or bound), so this instance
    /// refuses a revoked key at once; other instances follow within the cache's lifetime.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }

    /// Forgets one key (another instance changed it).
    pub fn forget(&self, key_id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(key_id);
        }
    }
}

/// The PostgreSQL channel on which a trigger announces every change to an agent key (migration
/// 0012), with the key id as payload.
pub const KEY_CHANGES_CHANNEL: &str = "cmdb_agent_keys";

/// Listens on PostgreSQL at `database_url` for agent-key changes made through any instance, the
/// CLI or a restore, and makes `cache` forget each changed key at once. Runs until aborted. When
/// the connection is lost, announcements may have been missed, so the whole cache is forgotten
/// and the listener reconnects (with backoff); meanwhile the cache's lifetime bounds staleness.
pub async fn listen_for_key_changes(database_url: String, cache: Arc<KeyCache>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match sqlx::postgres::PgListener::connect(&database_url).await {
            Ok(mut listener) => match listener.listen(KEY_CHANGES_CHANNEL).await {
                Ok(()) => {
                    // Anything changed while nobody listened is forgotten too.
                    cache.clear();
                    backoff = Duration::from_millis(200);
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(notification)) => cache.forget(notification.payload()),
                            // The connection dropped; try_recv reconnects on the next call, but
                            // what was announced meanwhile is lost.
                            Ok(None) => cache.clear(),
                            Err(e) => {
                                tracing::warn!(error = %e, "agent key announcements: connection lost; reconnecting");
                                cache.clear();
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "agent key announcements: LISTEN failed; retrying"),
            },
            Err(e) => tracing::warn!(error = %e, "agent key announcements: cannot connect; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn load_agent_key(pool: &AnyPool, secret_key: &SecretKey, key_id: &str) -> Result<Option<AgentKey>, StoreError> {
    let row = sqlx::query(
        "SELECT id, key_id, secret, scope, asset_id, name FROM agent_keys WHERE key_id = $1 AND revoked_at IS NULL",
    )
    .bind(key_id.to_owned())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let scope: String = row.try_get(3)?;
    let stored: String = row.try_get(2)?;
    let secret = secret_key.open(&agent_key_label(key_id), &stored).map_err(|e| Corrupt(e.to_string()))?;
    Ok(Some(AgentKey {
        id: row.try_get(0)?,
        key_id: row.try_get(1)?,
        secret,
        scope: KeyScope::parse(&scope).ok_or_else(|| Corrupt(format!("agent key {key_id} has scope {scope:?}")))?,
        asset_id: row.try_get(4)?,
        name: row.try_get(5)?,
    }))
}

/// Seals the agent secrets an older version stored in the clear, and checks that the sealed ones
/// open with `secret_key` (so an instance started with the wrong key file stops at start instead
/// of refusing every agent). Returns how many were sealed now.
pub async fn seal_stored_secrets(pool: &AnyPool, secret_key: &SecretKey) -> Result<u64, StoreError> {
    let rows = sqlx::query("SELECT key_id, secret FROM agent_keys ORDER BY id").fetch_all(pool).await?;
    let mut sealed = 0;
    let mut checked = false;
    for row in rows {
        let key_id: String = row.try_get(0)?;
        let stored: String = row.try_get(1)?;
        let label = agent_key_label(&key_id);
        if SecretKey::is_sealed(&stored) {
            if !checked {
                secret_key.open(&label, &stored).map_err(|e| Corrupt(e.to_string()))?;
                checked = true;
            }
            continue;
        }
        // Only rows still in the clear are touched, so two instances starting at once agree.
        let done = sqlx::query("UPDATE agent_keys SET secret = $1 WHERE key_id = $2 AND secret = $3")
            .bind(secret_key.seal(&label, &stored))
            .bind(key_id)
            .bind(stored)
            .execute(pool)
            .await?;
        sealed += done.rows_affected();
    }
    Ok(sealed)
}

/// True when the database holds any sealed secret (then the key file must exist already).
pub async fn has_sealed_secrets(pool: &AnyPool) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) FROM agent_keys WHERE secret LIKE 'v1:%'").fetch_one(pool).await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

/// Checks a signed request up to (not including) the nonce, which the caller records in the
/// transaction the request performs.
pub async fn verify_agent(
    cache: &KeyCache,
    pool: &AnyPool,
    clock_window_secs: u64,
    authorization: Option<&str>,
    method: &str,
    target: &str,
    body: &[u8],
) -> Result<Result<(AgentKey, SignedHeader), AgentAuthError>, StoreError> {
    let Some(value) = authorization else { return Ok(Err(AgentAuthError::Missing)) };
    let header = match signing::parse_authorization(value) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e.into())),
    };
    let now = chrono::Utc::now().timestamp();
    if header.timestamp.abs_diff(now) > clock_window_secs {
        return Ok(Err(AgentAuthError::Clock(clock_window_secs)));
    }
    let Some(key) = cache.get(pool, &header.key_id).await? else { return Ok(Err(AgentAuthError::UnknownKey)) };
    if !signing::verify(&key.secret, &header, method, target, body) {
        return Ok(Err(AgentAuthError::Signature));
    }
    Ok(Ok((key, header)))
}

/// Records a nonce; `false` when it was already used. Nonces expire once their timestamp leaves
/// the clock window, so the store is pruned as the window passes.
pub async fn record_nonce(
    conn: &mut AnyConnection,
    key_id: &str,
    nonce: &str,
    timestamp: i64,
    clock_window_secs: u64,
) -> Result<bool, sqlx::Error> {
    let done = nonce_insert(key_id, nonce, timestamp, clock_window_secs).query().execute(&mut *conn).await?;
    if done.rows_affected() == 1 {
        key_used(key_id, crate::db::now_us()).query().execute(&mut *conn).await?;
    }
    Ok(done.rows_affected() == 1)
}

/// The statement [`record_nonce`] runs, for callers that batch it: it affects one row when the
/// nonce is new and none when it was used before.
pub fn nonce_insert(key_id: &str, nonce: &str, timestamp: i64, clock_window_secs: u64) -> crate::store::sql::Sql {
    let window = i64::try_from(clock_window_secs).unwrap_or(i64::MAX / 2_000_000);
    let expires_at = (timestamp.saturating_add(window).saturating_add(1)).saturating_mul(1_000_000);
    let mut q = crate::store::sql::Sql::new("INSERT INTO nonces (key_id, nonce, expires_at)");
    q.values(&[()], |row, ()| {
        row.bind(key_id).bind(nonce).bind(expires_at);
    });
    q.push(" ON CONFLICT DO NOTHING");
    q
}

/// How often an agent key's last use is written (µs): once a minute is exact enough to tell a
/// live key from a forgotten one.
const KEY_USE_RESOLUTION_US: i64 = 60_000_000;

/// The statement that stamps agent key `key_id` as used now (at most once a minute), run in the
/// same transaction that records its request's nonce.
pub fn key_used(key_id: &str, now_us: i64) -> crate::store::sql::Sql {
    let mut q = crate::store::sql::Sql::new("UPDATE agent_keys SET last_used_at = ");
    q.bind(now_us).push(" WHERE key_id = ").bind(key_id).push(" AND (last_used_at IS NULL OR last_used_at < ");
    q.bind(now_us - KEY_USE_RESOLUTION_US).push(")");
    q
}

/// A fresh random secret: `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        out.push_str(&hex::encode(rand::random::<[u8; 16]>()));
    }
    out.truncate(bytes * 2);
    out
}

/// How tokens are stored: SHA-256 of the token (tokens are 256-bit random, so a fast hash is
/// enough; passwords get argon2).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new bearer token string.
pub fn new_token() -> String {
    format!("cmdb_{}", random_hex(32))
}

/// Looks up a bearer token (`Authorization: Bearer cmdb_...`).
pub async fn token_principal(pool: &AnyPool, token: &str) -> Result<Option<Principal>, sqlx::Error> {
    let row = sqlx::query("SELECT name, role FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(token_hash(token))
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get(1)?;
    Ok(Role::parse(&role).map(|role| Principal { name: row.try_get::<String, _>(0).unwrap_or_default(), role }))
}

/// Creates an agent key; returns (key id, secret). The secret is shown once and stored sealed.
pub async fn create_agent_key(
    pool: &AnyPool,
    secret_key: &SecretKey,
    scope: KeyScope,
    name: &str,
    asset_id: Option<i64>,
) -> Result<(String, String), sqlx::Error> {
    let key_id = format!("ak_{}", random_hex(8));
    let secret = random_hex(32);
    sqlx::query(
        "INSERT INTO agent_keys (key_id, secret, scope, name, created_at, asset_id) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key_id.clone())
    .bind(secret_key.seal(&agent_key_label(&key_id), &secret))
    .bind(scope.as_str())
    .bind(name.to_owned())
    .bind(now_us())
    .bind(asset_id)
    .execute(pool)
    .await?;
    Ok((key_id, secret))
}

/// Gives the active key `key_id` a new secret (the old one stops working at once on this
/// instance, and on others when their key cache expires); returns it, shown once. `None` when
/// there is no such active key.
pub async fn rotate_agent_key(
    pool: &AnyPool,
    secret_key: &SecretKey,
    key_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let secret = random_hex(32);
    let done = sqlx::query("UPDATE agent_keys SET secret = $1 WHERE key_id = $2 AND revoked_at IS NULL")
        .bind(secret_key.seal(&agent_key_label(key_id), &secret))
        .bind(key_id.to_owned())
        .execute(pool)
        .await?;
    Ok((done.rows_affected() == 1).then_some(secret))
}

/// Creates a bearer token; returns the token, shown once.
pub async fn create_token(pool: &AnyPool, name: &str, role: Role) -> Result<String, sqlx::Error> {
    let token = new_token();
    sqlx::query("INSERT INTO api_tokens (name, token_hash, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(name.to_owned())
        .bind(token_hash(&token))
        .bind(role.as_str())
        .bind(now_us())
        .execute(pool)
        .await?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let key = AgentKey {
            id: 1,
            key_id: "ak_1".into(),
            secret: "very-secret".into(),
            scope: KeyScope::Host,
            asset_id: None,
            name: "x".into(),
        };
        assert!(!format!("{key:?}").contains("very-secret"));
    }

    #[test]
    fn random_material_has_the_right_length_and_varies() {
        assert_eq!(random_hex(32).len(), 64);
        assert_ne!(random_hex(16), random_hex(16));
        assert!(new_token().starts_with("cmdb_"));
        assert_eq!(token_hash("a").len(), 64);
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Editor && Role::Editor < Role::Admin);
        assert_eq!(Role::parse("editor"), Some(Role::Editor));
    }
}
