//! The database handle: SQLite (embedded default) or PostgreSQL, behind one interface.
//!
//! All SQL goes through sqlx's `Any` driver with `$N` placeholders, which both backends accept, so
//! the store's queries are written once. The few places where the backends must differ (how a
//! write transaction starts, row locks, the change feed's transaction ids) branch on [`Backend`].
//!
//! SQLite gets one writer connection and a small pool of readers. Writes are serialized in the
//! process (so they never fail with SQLITE_BUSY against each other) and start with
//! `BEGIN IMMEDIATE` (so a second process, such as an admin command, waits on the busy timeout
//! instead of failing on a lock upgrade). WAL mode with synchronous=NORMAL survives a process
//! crash without losing a committed transaction.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};

use crate::store::sql::{Batch, Sql, StatementDone};

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
    #[error("cannot create the directory for {path}: {source}")]
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
    states: std::sync::Arc<crate::store::StateCache>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The SQLite pragmas every connection runs: WAL, crash-safe commits, a generous busy timeout.
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

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
                Db { backend, writer, reader, states: Default::default() }
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
                Db { backend, writer: pool.clone(), reader: pool, states: Default::default() }
            }
        };
        Ok(db)
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

    /// Asset states cached by version (see [`crate::store::StateCache`]).
    pub fn states(&self) -> &crate::store::StateCache {
        &self.states
    }

    /// Starts a write transaction.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        }
    }

    /// Starts a write transaction with `first` as its first statements, and returns their
    /// results. On SQLite, `BEGIN IMMEDIATE` travels in the same round trip as `first` (and
    /// [`BatchedTx::commit_with`] sends `COMMIT` with the last statements), which is what lets
    /// the single writer take thousands of reports a second.
    pub async fn begin_write_batch(&self, first: Batch) -> Result<(BatchedTx, Vec<StatementDone>), sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                let conn = self.writer.acquire().await?;
                // Open from here on: should anything below fail or be cancelled, the connection
                // is closed rather than returned to the pool inside a transaction.
                let mut tx = BatchedTx::Sqlite(SqliteTx { conn, open: true });
                let mut batch = Batch::default();
                batch.push(Sql::new("BEGIN IMMEDIATE"));
                batch.append(first);
                let mut done = batch.run(tx.conn(), Backend::Sqlite).await?;
                done.remove(0);
                Ok((tx, done))
            }
            Backend::Postgres => {
                let mut tx = BatchedTx::Postgres(self.writer.begin().await?);
                let done = first.run(tx.conn(), Backend::Postgres).await?;
                Ok((tx, done))
            }
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

/// A write transaction from [`Db::begin_write_batch`]. Dropping it without committing rolls it
/// back.
pub enum BatchedTx {
    /// SQLite.
    Sqlite(SqliteTx),
    /// PostgreSQL.
    Postgres(sqlx::Transaction<'static, Any>),
}

/// A SQLite write transaction that sqlx does not know about: its BEGIN went as an ordinary
/// statement, so sqlx would not roll it back. Dropped while open (an error or a cancelled
/// request), it closes its connection instead of returning it to the pool, and closing rolls
/// the transaction back.
pub struct SqliteTx {
    conn: PoolConnection<Any>,
    open: bool,
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

impl BatchedTx {
    /// The connection, for statements that need their results before the next is built.
    pub fn conn(&mut self) -> &mut AnyConnection {
        match self {
            BatchedTx::Sqlite(tx) => &mut tx.conn,
            BatchedTx::Postgres(tx) => tx,
        }
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            BatchedTx::Sqlite(mut tx) => {
                sqlx::query("ROLLBACK").execute(&mut *tx.conn).await?;
                tx.open = false;
                Ok(())
            }
            BatchedTx::Postgres(tx) => tx.rollback().await,
        }
    }

    /// Runs `last` and commits (on SQLite in one round trip), returning `last`'s results.
    pub async fn commit_with(self, last: Batch) -> Result<Vec<StatementDone>, sqlx::Error> {
        match self {
            BatchedTx::Sqlite(mut tx) => {
                let statements = last.len();
                let mut batch = last;
                batch.push(Sql::new("COMMIT"));
                let mut done = batch.run(&mut tx.conn, Backend::Sqlite).await?;
                tx.open = false;
                done.truncate(statements);
                Ok(done)
            }
            BatchedTx::Postgres(mut tx) => {
                let done = last.run(&mut tx, Backend::Postgres).await?;
                tx.commit().await?;
                Ok(done)
            }
        }
    }
}

/// Normalizes a SQLite URL so the file is created on first start, and creates its directory.
fn sqlite_url(url: &str) -> Result<String, OpenError> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:"
        && !path.is_empty()
        && let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .map_err(|source| OpenError::Directory { path: parent.display().to_string(), source })?;
    }
    let mut query: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !query.iter().any(|p| p.starts_with("mode=")) {
        query.push("mode=rwc");
    }
    Ok(format!("sqlite://{path}?{}", query.join("&")))
}

/// True when `error` means the database is unreachable or overloaded (the server answers 503 and
/// the client retries), as opposed to a bug or a constraint violation.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: admin shutdown, crash shutdown, cannot connect now, too many connections,
            // serialization failures and deadlocks (retryable). SQLite: BUSY / LOCKED.
            matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "5" | "6" | "517")
                || code.starts_with("08")
        }
        _ => false,
    }
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
    fn sqlite_urls_create_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/cmdb.db");
        let url = sqlite_url(&format!("sqlite://{}", path.display())).expect("url");
        assert!(url.ends_with("?mode=rwc"), "{url}");
        assert!(path.parent().expect("parent").is_dir());
        assert_eq!(sqlite_url("sqlite://x.db?mode=ro").expect("url"), "sqlite://x.db?mode=ro");
    }
}
