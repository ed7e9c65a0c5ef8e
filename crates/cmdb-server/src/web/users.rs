//! People's accounts: names, argon2id password hashes, roles, and the first administrator.
//!
//! Passwords are hashed with Argon2id (19 MiB, 2 passes, 1 lane: the OWASP baseline) on a blocking
//! thread, so a login does not stall the async workers. A login with an unknown name still verifies
//! against a dummy hash, so the answer takes as long as for a real user and does not tell which
//! names exist. The last active administrator cannot be demoted or disabled (from this UI; a
//! directory account's role is whatever its directory groups grant at its last login).
//!
//! Directory accounts (`users.source = 'directory'`) are created at their first directory login
//! ([`check_login`]) and hold no usable hash: their password is the directory's to check.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Serialize;
use sqlx::Row;

use crate::auth::Role;
use crate::db::{Backend, Db, from_us, now_us};
use crate::directory::{Directory, DirectoryError, Verdict};
use crate::store::{Corrupt, StoreError};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest password accepted (bytes): argon2 hashes any length, but a megabyte "password" would be a
/// cheap way to burn CPU.
pub const MAX_PASSWORD_LEN: usize = 256;

/// A user as the UI shows them (never with the hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Login name (lowercase).
    pub name: String,
    /// Role.
    pub role: Role,
    /// The password was generated and must be changed at the next login.
    pub must_change_password: bool,
    /// Created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last successful login.
    pub last_login_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Disabled accounts cannot log in; their sessions end.
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// A directory (LDAP) account: its password is checked by the directory and its role follows
    /// its directory groups at each login.
    pub directory: bool,
}

/// Why a user operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name or password is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// A user with this name exists.
    #[error("a user named {0:?} already exists")]
    Exists(String),
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// The change would leave no active administrator.
    #[error("this is the last active administrator; make another user admin first")]
    LastAdmin,
    /// Hashing failed (a bug: the parameters are fixed).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// Every password-hashing slot stayed busy for [`HASH_WAIT`]: too many logins at once.
    #[error("too many logins at once; try again in a second")]
    Busy,
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored user does not decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(#[from] Corrupt),
}

impl From<StoreError> for UserError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Db(e) => UserError::Db(e),
            StoreError::Corrupt(e) => UserError::Corrupt(e),
        }
    }
}

impl From<UserError> for super::error::WebError {
    fn from(error: UserError) -> Self {
        use super::error::WebError;
        match error {
            UserError::Invalid(m) => WebError::BadRequest(m),
            e @ (UserError::Exists(_) | UserError::LastAdmin) => WebError::Conflict(e.to_string()),
            UserError::NotFound => WebError::NotFound("no such user".to_owned()),
            UserError::Hash(m) => WebError::Internal(m),
            e @ UserError::Busy => WebError::TooManyRequests { message: e.to_string(), retry_after: 1 },
            UserError::Db(e) => e.into(),
            UserError::Corrupt(e) => crate::store::StoreError::Corrupt(e).into(),
        }
    }
}

fn hasher() -> Argon2<'static> {
    // Params::DEFAULT is m=19456 KiB, t=2, p=1; spelled out so a dependency update cannot weaken it.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a user name: 1 to 64 characters of letters, digits, `.`, `_`, `-`, `@`; returns it
/// trimmed and lowercased (names are case-insensitive).
pub fn normalize_name(name: &str) -> Result<String, UserError> {
    let name = name.trim().to_lowercase();
    if name.is_empty() || name.len() > 64 {
        return Err(UserError::Invalid("a user name has 1 to 64 characters".to_owned()));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')) {
        return Err(UserError::Invalid("a user name may hold letters, digits, '.', '_', '-' and '@' only".to_owned()));
    }
    Ok(name)
}

/// Checks a new password's length.
pub fn check_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(UserError::Invalid(format!("a password has at least {MIN_PASSWORD_LEN} characters")));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(UserError::Invalid(format!("a password has at most {MAX_PASSWORD_LEN} bytes")));
    }
    Ok(())
}

/// How many Argon2 hashes run at once: each takes 19 MiB and a core for ~50 ms, so more than the
/// cores only queues work on the blocking pool (up to 512 threads, 10 GiB) instead of bounding it.
static HASH_SLOTS: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map(usize::from).unwrap_or(2).max(1))
});

/// How long a login waits for a hashing slot before it is answered 429.
pub const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs one Argon2 computation on a blocking thread once a slot is free.
async fn with_hash_slot<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, UserError> {
    with_slot(&HASH_SLOTS, HASH_WAIT, work).await
}

/// Runs `work` on a blocking thread holding one of `slots`, waiting at most `wait` for it.
async fn with_slot<T: Send + 'static>(
    slots: &tokio::sync::Semaphore,
    wait: std::time::Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, UserError> {
    let _slot =
        tokio::time::timeout(wait, slots.acquire()).await.map_err(|_| UserError::Busy)?.map_err(|_| UserError::Busy)?;
    tokio::task::spawn_blocking(work).await.map_err(|e| UserError::Hash(e.to_string()))
}

/// Hashes a password (Argon2id, random 16-byte salt) on a blocking thread; returns the PHC string.
pub async fn hash_password(password: &str) -> Result<String, UserError> {
    let password = password.to_owned();
    with_hash_slot(move || {
        let salt: [u8; 16] = rand::random();
        hasher().hash_password_with_salt(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await?
    .map_err(|e| UserError::Hash(e.to_string()))
}

/// Checks a password against a PHC string on a blocking thread (argon2 compares in constant time).
pub async fn verify_password(hash: &str, password: &str) -> Result<bool, UserError> {
    let (hash, password) = (hash.to_owned(), password.to_owned());
    with_hash_slot(move || hasher().verify_password(password.as_bytes(), hash.as_str()).is_ok()).await
}

/// A hash no password matches, verified for unknown names so they take as long as known ones.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt: [u8; 16] = rand::random();
    let secret: [u8; 32] = rand::random();
    hasher().hash_password_with_salt(&secret, &salt).map(|h| h.to_string()).unwrap_or_default()
});

/// A generated password: 20 characters from an alphabet without look-alikes (about 110 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    (0..20)
        .map(|_| {
            // Rejection sampling keeps every character equally likely.
            loop {
                let byte: u8 = rand::random();
                let limit = 256 - 256 % ALPHABET.len();
                if usize::from(byte) < limit {
                    return char::from(ALPHABET[usize::from(byte) % ALPHABET.len()]);
                }
            }
        })
        .collect()
}

const USER_COLUMNS: &str = "id, name, role, must_change_password, created_at, last_login_at, disabled_at, source";

/// `users.source` of a directory account (local ones are 'local').
const DIRECTORY: &str = "directory";

fn user_row(row: &sqlx::any::AnyRow) -> Result<User, StoreError> {
    let role: String = row.try_get(2)?;
    Ok(User {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        role: Role::parse(&role).ok_or_else(|| Corrupt(format!("a user has role {role:?}")))?,
        must_change_password: row.try_get::<i64, _>(3)? != 0,
        created_at: from_us(row.try_get(4)?),
        last_login_at: row.try_get::<Option<i64>, _>(5)?.map(from_us),
        disabled_at: row.try_get::<Option<i64>, _>(6)?.map(from_us),
        directory: row.try_get::<String, _>(7)? == DIRECTORY,
    })
}

/// Creates a user; `must_change` makes them change the password at the first login, which every
/// path where someone else chose it (the admin page, the CLI) asks for.
pub async fn create(db: &Db, name: &str, role: Role, password: &str, must_change: bool) -> Result<User, UserError> {
    let name = normalize_name(name)?;
    check_password(password)?;
    let hash = hash_password(password).await?;
    let now = now_us();
    let mut tx = db.begin_write().await?;
    let exists =
        sqlx::query("SELECT id FROM users WHERE name = $1").bind(name.clone()).fetch_optional(&mut *tx).await?;
    if exists.is_some() {
        return Err(UserError::Exists(name));
    }
    let row = sqlx::query(
        "INSERT INTO users (name, password_hash, role, must_change_password, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(name.clone())
    .bind(hash)
    .bind(role.as_str())
    .bind(i64::from(must_change))
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get(0)?;
    tx.commit().await?;
    Ok(User {
        id,
        name,
        role,
        must_change_password: must_change,
        created_at: from_us(now),
        last_login_at: None,
        disabled_at: None,
        directory: false,
    })
}

/// Every user, by name.
pub async fn list(db: &Db) -> Result<Vec<User>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users ORDER BY name")))
        .fetch_all(db.reader())
        .await?;
    rows.iter().map(user_row).collect()
}

/// One user by id.
pub async fn get(db: &Db, id: i64) -> Result<User, UserError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.reader())
        .await?
        .ok_or(UserError::NotFound)?;
    Ok(user_row(&row)?)
}

/// One user by name.
pub async fn find(db: &Db, name: &str) -> Result<Option<User>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1")))
        .bind(name.to_owned())
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(user_row).transpose()
}

/// Checks a name and password. `None` for an unknown name, a wrong password or a disabled account
/// (the caller cannot tell which, and neither can the person logging in). Every path runs exactly
/// one Argon2 verification, so the time taken does not tell whether the name exists either.
pub async fn authenticate(db: &Db, name: &str, password: &str) -> Result<Option<User>, UserError> {
    // An oversized password is checked against the dummy hash truncated to the limit, so it costs
    // the same as any other attempt and is never a match.
    let checked =
        if password.len() > MAX_PASSWORD_LEN { &password[..floor_char(password, MAX_PASSWORD_LEN)] } else { password };
    let Ok(name) = normalize_name(name) else {
        verify_password(&DUMMY_HASH, checked).await?;
        return Ok(None);
    };
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = $1")))
            .bind(name)
            .fetch_optional(db.reader())
            .await?;
    let Some(row) = row else {
        verify_password(&DUMMY_HASH, checked).await?;
        return Ok(None);
    };
    let user = user_row(&row)?;
    if password.len() > MAX_PASSWORD_LEN {
        verify_password(&DUMMY_HASH, checked).await?;
        return Ok(None);
    }
    // A directory account's stored '!' would fail at once, so its refusal would be quicker than a
    // wrong password's and tell the name is a directory account: it costs a real check too.
    let hash: String = if user.directory { DUMMY_HASH.clone() } else { row.try_get(8)? };
    let valid = verify_password(&hash, password).await?;
    if !valid || user.disabled_at.is_some() || user.directory {
        return Ok(None);
    }
    sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
        .bind(user.id)
        .bind(now_us())
        .execute(db.writer())
        .await?;
    Ok(Some(user))
}

/// The largest char boundary of `text` at or below `at`.
fn floor_char(text: &str, at: usize) -> usize {
    (0..=at.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0)
}

/// Locks the active administrators (PostgreSQL) and counts those other than `except`.
async fn other_admins(tx: &mut sqlx::AnyConnection, backend: Backend, except: i64) -> Result<i64, sqlx::Error> {
    // On PostgreSQL two admins demoting each other at once must not both succeed: lock the rows.
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM users WHERE role = 'admin' AND disabled_at IS NULL{lock}"
    )))
    .fetch_all(&mut *tx)
    .await?;
    let mut count = 0;
    for row in rows {
        if row.try_get::<i64, _>(0)? != except {
            count += 1;
        }
    }
    Ok(count)
}

/// Changes a user's role (sessions pick it up at their next request).
pub async fn set_role(db: &Db, id: i64, role: Role) -> Result<User, UserError> {
    let mut tx = db.begin_write().await?;
    let user = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(UserError::NotFound)?;
    let user = user_row(&user)?;
    if user.role == Role::Admin
        && role != Role::Admin
        && user.disabled_at.is_none()
        && other_admins(&mut tx, db.backend(), id).await? == 0
    {
        return Err(UserError::LastAdmin);
    }
    sqlx::query("UPDATE users SET role = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(role.as_str())
        .bind(now_us())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(User { role, ..user })
}

/// Disables (ending every session) or enables a user.
pub async fn set_disabled(db: &Db, id: i64, disabled: bool) -> Result<User, UserError> {
    let mut tx = db.begin_write().await?;
    let user = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(UserError::NotFound)?;
    let user = user_row(&user)?;
    if disabled && user.role == Role::Admin && other_admins(&mut tx, db.backend(), id).await? == 0 {
        return Err(UserError::LastAdmin);
    }
    let now = now_us();
    sqlx::query("UPDATE users SET disabled_at = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(disabled.then_some(now))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    if disabled {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(User { disabled_at: disabled.then(|| from_us(now)), ..user })
}

/// Sets a user's password and ends all their sessions (a stolen session dies with the old password).
pub async fn set_password(db: &Db, id: i64, password: &str, must_change: bool) -> Result<(), UserError> {
    check_password(password)?;
    if get(db, id).await?.directory {
        return Err(UserError::Invalid("a directory account's password is kept in the directory".to_owned()));
    }
    let hash = hash_password(password).await?;
    let mut tx = db.begin_write().await?;
    let done =
        sqlx::query("UPDATE users SET password_hash = $2, must_change_password = $3, updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(hash)
            .bind(i64::from(must_change))
            .bind(now_us())
            .execute(&mut *tx)
            .await?;
    if done.rows_affected() == 0 {
        return Err(UserError::NotFound);
    }
    sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Checks `password` against user `id`'s current hash (for "change my password").
pub async fn check_current_password(db: &Db, id: i64, password: &str) -> Result<bool, UserError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Ok(false);
    }
    let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1").bind(id).fetch_optional(db.reader()).await?;
    match row {
        Some(row) => verify_password(&row.try_get::<String, _>(0)?, password).await,
        None => Ok(false),
    }
}

/// What a login's name and password came to, local or directory.
#[derive(Debug)]
pub enum LoginCheck {
    /// The password is right and the account may log in.
    Accepted {
        /// The account (for a directory account, with the role its groups grant now).
        user: User,
        /// A directory account that this login created.
        created: bool,
    },
    /// Unknown name, wrong password or disabled account; `directory` when the directory decided.
    Refused {
        /// The directory checked the password.
        directory: bool,
    },
    /// The directory accepted the password but the person is in no mapped group: refused, and
    /// the sessions of their account (if they had one) are ended.
    NoMappedGroup {
        /// Their account, when they had logged in before.
        user: Option<User>,
    },
    /// The name is a directory name (not a local account) and the directory is unusable now.
    DirectoryDown,
}

/// Checks a login. A name with a local account is checked against its hash, never the directory;
/// any other name goes to the directory when one is configured (see [`crate::directory`]), and a
/// directory account is created or given its groups' role.
pub async fn check_login(
    db: &Db,
    directory: Option<&Result<std::sync::Arc<Directory>, String>>,
    name: &str,
    password: &str,
) -> Result<LoginCheck, UserError> {
    let local = |user: Option<User>| match user {
        Some(user) => LoginCheck::Accepted { user, created: false },
        None => LoginCheck::Refused { directory: false },
    };
    let (Some(directory), Ok(normalized)) = (directory, normalize_name(name)) else {
        return Ok(local(authenticate(db, name, password).await?));
    };
    let known = find(db, &normalized).await?;
    if known.as_ref().is_some_and(|user| !user.directory) {
        return Ok(local(authenticate(db, name, password).await?));
    }
    let Ok(directory) = directory else { return Ok(LoginCheck::DirectoryDown) };
    let verdict = match directory.authenticate(&normalized, password).await {
        Ok(verdict) => verdict,
        Err(DirectoryError::Busy) => return Err(UserError::Busy),
        Err(e @ DirectoryError::Ambiguous(_)) => {
            tracing::error!(error = %e, "directory login refused: fix ldap.user_filter");
            return Ok(LoginCheck::Refused { directory: true });
        }
        Err(e) => {
            tracing::warn!(error = %e, "directory login not possible");
            return Ok(LoginCheck::DirectoryDown);
        }
    };
    match verdict {
        Verdict::Refused => Ok(LoginCheck::Refused { directory: true }),
        Verdict::Accepted { role: None, .. } => {
            if let Some(user) = &known {
                end_sessions(db, user.id).await?;
            }
            Ok(LoginCheck::NoMappedGroup { user: known })
        }
        Verdict::Accepted { role: Some(role), .. } => match directory_account(db, &normalized, role).await? {
            Some((user, _)) if user.disabled_at.is_some() => Ok(LoginCheck::Refused { directory: true }),
            Some((user, created)) => Ok(LoginCheck::Accepted { user, created }),
            // A local account of that name appeared meanwhile: local accounts win.
            None => Ok(LoginCheck::Refused { directory: true }),
        },
    }
}

/// Creates directory account `name` with `role`, or gives the existing one `role` and records the
/// login; `None` when `name` is a local account. Returns the account and whether it was created.
/// The role is the directory's word even for the last administrator: the directory is where
/// directory accounts are managed, and the local first administrator stays.
async fn directory_account(db: &Db, name: &str, role: Role) -> Result<Option<(User, bool)>, UserError> {
    let now = now_us();
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1")))
        .bind(name.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
    let existing = row.as_ref().map(user_row).transpose()?;
    let (user, created) = match existing {
        Some(user) if !user.directory => return Ok(None),
        Some(user) => {
            sqlx::query("UPDATE users SET role = $2, last_login_at = $3, updated_at = $3 WHERE id = $1")
                .bind(user.id)
                .bind(role.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            (User { role, last_login_at: Some(from_us(now)), ..user }, false)
        }
        None => {
            // '!' is no PHC string: no password matches it, locally.
            let row = sqlx::query(
                "INSERT INTO users (name, password_hash, role, must_change_password, created_at, updated_at, \
                 last_login_at, source) VALUES ($1, '!', $2, 0, $3, $3, $3, $4) RETURNING id",
            )
            .bind(name.to_owned())
            .bind(role.as_str())
            .bind(now)
            .bind(DIRECTORY)
            .fetch_one(&mut *tx)
            .await?;
            let user = User {
                id: row.try_get(0)?,
                name: name.to_owned(),
                role,
                must_change_password: false,
                created_at: from_us(now),
                last_login_at: Some(from_us(now)),
                disabled_at: None,
                directory: true,
            };
            (user, true)
        }
    };
    tx.commit().await?;
    Ok(Some((user, created)))
}

/// Ends every session of user `id`.
pub async fn end_sessions(db: &Db, id: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id).execute(db.writer()).await?.rows_affected())
}

/// The administrator created on the first start.
#[derive(Debug)]
pub struct FirstAdmin {
    /// Login name (`admin`).
    pub name: String,
    /// The generated password (shown once; must be changed at first login).
    pub password: String,
    /// Where the password was written (mode 0600).
    pub password_file: PathBuf,
}

/// The name of the first administrator.
pub const FIRST_ADMIN_NAME: &str = "admin";

/// On a database without users, creates the administrator `admin` with a generated password that
/// must be changed at the first login, and writes it to `<data_dir>/admin-password` (mode 0600).
/// Returns `None` when users exist or another instance did this already.
pub async fn first_admin(db: &Db, data_dir: &Path) -> Result<Option<FirstAdmin>, crate::admin::BootstrapError> {
    let password = generate_password();
    let hash = hash_password(&password).await.map_err(|e| match e {
        UserError::Db(e) => crate::admin::BootstrapError::Db(e),
        other => crate::admin::BootstrapError::Password(other.to_string()),
    })?;
    let mut tx = db.begin_write().await?;
    // The settings row is the claim: of several instances starting at once, one creates the admin.
    let claimed = sqlx::query("INSERT INTO settings (name, value) VALUES ('first_admin', $1) ON CONFLICT DO NOTHING")
        .bind(now_us().to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    let users: i64 = sqlx::query("SELECT COUNT(*) FROM users").fetch_one(&mut *tx).await?.try_get(0)?;
    if !claimed || users > 0 {
        tx.commit().await?;
        return Ok(None);
    }
    let now = now_us();
    sqlx::query(
        "INSERT INTO users (name, password_hash, role, must_change_password, created_at, updated_at) \
         VALUES ($1, $2, 'admin', 1, $3, $3)",
    )
    .bind(FIRST_ADMIN_NAME)
    .bind(hash)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let password_file = data_dir.join("admin-password");
    // Written before the commit: if the file cannot be written, nobody is left without a password.
    crate::admin::write_private(&password_file, &format!("{password}\n"))?;
    tx.commit().await?;
    crate::service::audit_log::record(
        db,
        "server",
        "user.create",
        "admin (first start; password must be changed at first login)",
    )
    .await?;
    Ok(Some(FirstAdmin { name: FIRST_ADMIN_NAME.to_owned(), password, password_file }))
}

/// After the first administrator chose their own password, the generated one in `data_dir` is
/// useless; remove the file when it still holds `old_password`, so it does not mislead anyone.
pub fn forget_first_password(data_dir: &Path, old_password: &str) {
    let path = data_dir.join("admin-password");
    if let Ok(text) = std::fs::read_to_string(&path)
        && subtle::ConstantTimeEq::ct_eq(text.trim().as_bytes(), old_password.as_bytes()).into()
        && let Err(error) = std::fs::remove_file(&path)
    {
        tracing::warn!(%error, path = %path.display(), "cannot remove the first-start password file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_is_bounded_and_excess_waits_then_is_refused() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let slots = Arc::new(tokio::sync::Semaphore::new(2));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (slots, running, most) = (slots.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                with_slot(&slots, std::time::Duration::from_secs(30), move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        for task in tasks {
            task.await.expect("task").expect("a slot within the wait");
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "never more hashes at once than slots");
        // Every slot taken: the next waits, then is refused (the login page answers 429).
        let _held = slots.acquire_many(2).await.expect("permits");
        let busy = with_slot(&slots, std::time::Duration::from_millis(50), || ()).await;
        assert!(matches!(busy, Err(UserError::Busy)));
        assert!(HASH_SLOTS.available_permits() >= 1 && HASH_SLOTS.available_permits() <= 1024);
    }

    #[test]
    fn names_are_normalized_and_checked() {
        assert_eq!(normalize_name("  Alice.Ops ").expect("valid"), "alice.ops");
        assert!(normalize_name("").is_err());
        assert!(normalize_name("a b").is_err());
        assert!(normalize_name("<script>").is_err());
        assert!(normalize_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn generated_passwords_are_long_and_vary() {
        let a = generate_password();
        assert_eq!(a.chars().count(), 20);
        assert_ne!(a, generate_password());
        assert!(check_password(&a).is_ok());
        assert!(check_password("short").is_err());
        assert!(check_password(&"x".repeat(300)).is_err());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery").await.expect("slot"));
        assert!(!verify_password(&hash, "correct horse battery!").await.expect("slot"));
        assert!(!verify_password("not a hash", "x").await.expect("slot"));
        assert_ne!(hash, hash_password("correct horse battery").await.expect("hash"), "salted");
    }
}
