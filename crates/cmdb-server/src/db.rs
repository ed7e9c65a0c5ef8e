//! The database handle: SQLite (embedded default) or PostgreSQL, behind one interface.
//!
//! All SQL goes through sqlx's `Any` driver with `$N` placeholders, which both backends accept, so
//! the store's queries are written once. The few places where the backends must differ (how a
//! write transaction starts, row locks, the change feed's transaction ids) branch on [`Backend`].
//!
//! SQLite gets one writer connection and a small pool of readers. Writes are serialized in the
//! process (so they never fail with SQLITE_BUSY against each other; reports go through one
//! writer task owned by the ingestor) and start with `BEGIN IMMEDIATE` (so a
//! second process, such as an admin command, waits on the busy timeout instead of failing on a
//! lock upgrade). WAL mode with synchronous=NORMAL survives a process
//! crash without losing a committed transaction.

mod chain_backfill;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Which database the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server (several server instances may share it).
    Postgres,
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is neither sqlite: nor postgres:.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    Scheme(String),
    /// The SQLite file's directory could not be created.
    #[error("cannot create {path} or its directory: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Computing the hash chains of history written before them failed (it resumes on the next
    /// start).
    #[error("cannot compute the change chains of the existing history: {0}")]
    Chains(#[source] sqlx::Error),
}

/// Pool sizes and timeouts.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// PostgreSQL connections per server instance.
    pub postgres_connections: u32,
    /// SQLite reader connections (there is always exactly one writer).
    pub sqlite_readers: u32,
    /// How long a request waits for a connection before the server answers 503.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings { postgres_connections: 32, sqlite_readers: 4, acquire_timeout: Duration::from_secs(5) }
    }
}

/// The database.
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    writer: AnyPool,
    reader: AnyPool,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The SQLite pragmas every connection runs: WAL, crash-safe commits, a generous busy timeout.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
     PRAGMA wal_autocheckpoint = 10000;";

/// How often the background task checkpoints the SQLite WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

impl Db {
    /// Opens (and for SQLite creates) the database at `url` and applies migrations.
    pub async fn open(url: &str, settings: &PoolSettings) -> Result<Db, OpenError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(OpenError::Scheme(url.to_owned()));
        };
        let db = match backend {
            Backend::Sqlite => {
                let url = sqlite_url(url)?;
                let options = AnyConnectOptions::from_str(&url).map_err(OpenError::Connect)?;
                let pool = |max: u32| {
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .min_connections(0)
                        .acquire_timeout(settings.acquire_timeout)
                        // A connection to a local file does not go stale; pinging it on every
                        // acquire would cost the single writer a round trip per report.
                        .test_before_acquire(false)
                        .after_connect(|conn, _meta| {
                            Box::pin(async move {
                                conn.execute(SQLITE_PRAGMAS).await?;
                                Ok(())
                            })
                        })
                        .connect_with(options.clone())
                };
                let writer = pool(1).await.map_err(OpenError::Connect)?;
                SQLITE_MIGRATIONS.run(&writer).await.map_err(OpenError::Migrate)?;
                let reader = pool(settings.sqlite_readers.max(1)).await.map_err(OpenError::Connect)?;
                let db = Db { backend, writer, reader };
                // Checkpoints run beside the writer rather than inside its commits (SQLite's
                // automatic checkpoint, here only a backstop at 10,000 pages, would run in the
                // writer's COMMIT and hold every queued report up while it copies pages).
                tokio::spawn(checkpoint_wal(db.reader().clone()));
                db
            }
            Backend::Postgres => {
                let options = AnyConnectOptions::from_str(url).map_err(OpenError::Connect)?;
                let pool = AnyPoolOptions::new()
                    .max_connections(settings.postgres_connections.max(2))
                    .min_connections(0)
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(OpenError::Connect)?;
                // Several instances may start at once: PostgreSQL's migration lock serializes them.
                POSTGRES_MIGRATIONS.run(&pool).await.map_err(OpenError::Migrate)?;
                Db { backend, writer: pool.clone(), reader: pool }
            }
        };
        chain_backfill::run(&db).await.map_err(OpenError::Chains)?;
        Ok(db)
    }

    /// Computes the hash chains of every change record that has none, from the start (opening
    /// does this once, resumably, for history written before chains existed): for tools that
    /// load history in bulk, like the scale benchmark's seeder. Returns the records hashed.
    pub async fn complete_chains(&self) -> Result<u64, sqlx::Error> {
        chain_backfill::rerun(self).await
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for statements that write (on SQLite: the single writer connection).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// The pool for read-only queries.
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// Starts a write transaction.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        }
    }

    /// Checks that the database answers (for /readyz).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map(drop)
    }

    /// The durability settings in force, printed beside benchmark figures.
    pub async fn durability(&self) -> Result<String, sqlx::Error> {
        use sqlx::Row;
        match self.backend {
            Backend::Sqlite => {
                let mut conn = self.writer.acquire().await?;
                let mode: String = sqlx::query("PRAGMA journal_mode").fetch_one(&mut *conn).await?.try_get(0)?;
                let sync: i64 = sqlx::query("PRAGMA synchronous").fetch_one(&mut *conn).await?.try_get(0)?;
                let sync = match sync {
                    0 => "OFF",
                    1 => "NORMAL",
                    2 => "FULL",
                    3 => "EXTRA",
                    _ => "?",
                };
                Ok(format!("sqlite journal_mode={mode} synchronous={sync}"))
            }
            Backend::Postgres => {
                let row = sqlx::query(
                    "SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('full_page_writes')",
                )
                .fetch_one(&self.reader)
                .await?;
                Ok(format!(
                    "postgres fsync={} synchronous_commit={} full_page_writes={}",
                    row.try_get::<String, _>(0)?,
                    row.try_get::<String, _>(1)?,
                    row.try_get::<String, _>(2)?
                ))
            }
        }
    }

    /// Closes every connection (graceful shutdown).
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// Copies the WAL into the database file every [`CHECKPOINT_EVERY`] (PASSIVE: never waits for,
/// nor blocks, readers or the writer), until the pool closes.
async fn checkpoint_wal(pool: AnyPool) {
    while !pool.is_closed() {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await
            && !pool.is_closed()
        {
            tracing::debug!(%error, "WAL checkpoint failed; the next one retries");
        }
    }
}

/// Normalizes a SQLite URL so the file is created on first start, and creates its directory.
fn sqlite_url(url: &str) -> Result<String, OpenError> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:" && !path.is_empty() && !query.contains("mode=ro") {
        let file = std::path::Path::new(path);
        // The directory 0700 and the database 0600 before SQLite opens it: SQLite gives the -wal
        // and -shm files the database file's mode, and would otherwise create it 0644.
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::file_modes::private_dir(parent)
                .map_err(|source| OpenError::Directory { path: parent.display().to_string(), source })?;
        }
        crate::file_modes::private_file(file)
            .map_err(|source| OpenError::Directory { path: file.display().to_string(), source })?;
        for suffix in ["-wal", "-shm"] {
            crate::file_modes::warn_if_wider(
                std::path::Path::new(&format!("{path}{suffix}")),
                crate::file_modes::PRIVATE_FILE,
            );
        }
    }
    let mut query: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !query.iter().any(|p| p.starts_with("mode=")) {
        query.push("mode=rwc");
    }
    Ok(format!("sqlite://{path}?{}", query.join("&")))
}

/// How a database failure should be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// The database is unavailable or busy (503 with Retry-After; retrying helps).
    Retryable,
    /// Anything else: a bug (500, logged as an error).
    Bug,
}

/// Classifies a database error. This is the only place that decides it.
///
/// Retryable: I/O, pool timed out or closed, the driver's worker crashed, TLS; PostgreSQL
/// SQLSTATE class 08 (connection exceptions), 57P01-57P03 (shutdown, cannot connect now), 53300
/// (too many connections), 40001 and 40P01 (serialization failure, deadlock); SQLite BUSY, LOCKED
/// and BUSY_RECOVERY (5, 6, 517). Everything else, `Protocol` and `Decode` included, is a bug.
pub fn classify(error: &sqlx::Error) -> DbFailure {
    let retryable = match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "5" | "6" | "517")
                || code.starts_with("08")
        }
        _ => false,
    };
    if retryable { DbFailure::Retryable } else { DbFailure::Bug }
}

/// Now, in Unix microseconds (the unit of every timestamp column).
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Converts a stored timestamp back to a date-time.
pub fn from_us(us: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_and_decode_errors_are_bugs_not_outages() {
        assert_eq!(classify(&sqlx::Error::Protocol("x".into())), DbFailure::Bug);
        assert_eq!(classify(&sqlx::Error::Decode("x".into())), DbFailure::Bug);
        assert_eq!(classify(&sqlx::Error::RowNotFound), DbFailure::Bug);
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), DbFailure::Retryable);
        assert_eq!(classify(&sqlx::Error::PoolClosed), DbFailure::Retryable);
        assert_eq!(classify(&sqlx::Error::WorkerCrashed), DbFailure::Retryable);
        assert_eq!(
            classify(&sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"))),
            DbFailure::Retryable
        );
    }

    #[test]
    fn sqlite_urls_create_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/cmdb.db");
        let url = sqlite_url(&format!("sqlite://{}", path.display())).expect("url");
        assert!(url.ends_with("?mode=rwc"), "{url}");
        assert!(path.parent().expect("parent").is_dir());
        assert_eq!(sqlite_url("sqlite://x.db?mode=ro").expect("url"), "sqlite://x.db?mode=ro");
    }
}
