//! `cmdb-server backup` and `cmdb-server restore`: the whole database as one file, in one format
//! for both backends, so a backup taken on SQLite restores into PostgreSQL and the other way round
//! (which is also how an installation moves from one to the other).
//!
//! The file is a plain tar holding `tables/<name>.ndjson` for every table (one JSON object a row,
//! column name to value, rows in primary-key order) and `manifest.json` ([`Manifest`]: versions,
//! source backend, time, row counts), written last because it counts the rows as they stream.
//! "Every table" is read from the database (all but sqlx's own `_sqlx_migrations`), so a table a
//! later migration adds is carried without a change here. No external tool is involved.
//!
//! A backup reads every table in one snapshot (PostgreSQL: one `REPEATABLE READ READ ONLY`
//! transaction; SQLite: one read transaction on a reader connection, which WAL mode keeps
//! consistent while the writer goes on), so it runs beside a server that is ingesting and blocks
//! nothing. Rows stream from the database to the file; no table is ever held in memory.
//!
//! A restore writes the whole backup in one transaction into a database that `Db::open` has
//! migrated, after checking that both are at the same schema version and (unless forced) that the
//! target is empty. Every row keeps its values, ids and change-feed `txid`s included.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::any::{AnyRow, AnyTypeInfoKind};
use sqlx::{AnyConnection, AssertSqlSafe, Row, ValueRef};
use tokio::sync::mpsc;

use crate::db::{Backend, Db};
use crate::store::FEED_TXID_OFFSET;
use crate::store::sql::{Param, Sql};

/// The version of the file's layout that this cmdb writes and reads.
pub const FORMAT: u32 = 1;

/// The manifest's name in the archive.
const MANIFEST: &str = "manifest.json";

/// sqlx's bookkeeping of applied migrations: it describes the schema rather than the data, and
/// the target has its own from `Db::open`.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Bytes of NDJSON handed to the file writer at a time.
const WRITE_CHUNK: usize = 256 * 1024;

/// Rows per multi-row INSERT, at most (fewer for wide tables, see [`rows_per_insert`]).
const INSERT_ROWS: usize = 500;

/// Bound values per INSERT on PostgreSQL, at most (its limit is 65,535).
const INSERT_PARAMS: usize = 30_000;

/// Bound values per INSERT on SQLite, at most. Binding a numbered parameter (`$N`) looks its name
/// up in a list as long as the statement's parameters, so a statement's binding cost grows with
/// the square of its parameter count: at 8,000 a 100,000-asset restore took 20 minutes, most of
/// it in that lookup.
const SQLITE_INSERT_PARAMS: usize = 1_000;

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a backup this cmdb can read.
    #[error("{} is not a cmdb backup this version can read: {reason}", path.display())]
    NotABackup {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The backup and the target database are at different schema versions.
    #[error(
        "the backup is at schema version {backup} (written by cmdb {cmdb_version}) but the target database is at \
         schema version {target}; restore it with a cmdb whose migrations end at version {backup} (such as \
         {cmdb_version}) into an empty database, then start this version, which migrates it"
    )]
    SchemaMismatch {
        /// The backup's schema version.
        backup: i64,
        /// The target's schema version.
        target: i64,
        /// The cmdb version that wrote the backup.
        cmdb_version: String,
    },
    /// The target holds data and the restore was not forced.
    #[error(
        "the target database is not empty (rows in {tables}); a restore replaces everything in it, so it needs \
         --force"
    )]
    NotEmpty {
        /// The tables that hold rows, comma-separated.
        tables: String,
    },
    /// A table or column the format cannot carry.
    #[error("table {table}: {reason}")]
    Unsupported {
        /// The table.
        table: String,
        /// What it holds that the format cannot carry.
        reason: String,
    },
    /// A row of the backup does not fit the target's table.
    #[error("{entry} line {line}: {reason}")]
    BadRow {
        /// The archive entry.
        entry: String,
        /// The line (from 1).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The backup does not match the target's schema or its own manifest.
    #[error("the backup does not fit the target database: {0}")]
    Mismatch(String),
    /// A worker thread died (a bug).
    #[error("internal error: {0}")]
    Bug(String),
}

/// An I/O error about `path`.
fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::File { path: path.to_owned(), source }
}

/// What a backup holds, written into it as `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The layout of the file ([`FORMAT`]).
    pub format: u32,
    /// The cmdb version that wrote it.
    pub cmdb_version: String,
    /// The highest migration applied to the source database; a restore needs the same.
    pub schema_version: i64,
    /// The source backend: `sqlite` or `postgres`.
    pub backend: String,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub created_at: String,
    /// Rows of every table in the backup.
    pub tables: BTreeMap<String, u64>,
}

impl Manifest {
    /// Rows in all tables.
    pub fn rows(&self) -> u64 {
        self.tables.values().sum()
    }
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// Its manifest.
    pub manifest: Manifest,
    /// The file's size.
    pub bytes: u64,
    /// How long it took.
    pub seconds: f64,
}

/// What a restore wrote.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// The manifest of the backup restored.
    pub manifest: Manifest,
    /// The backup file's size.
    pub bytes: u64,
    /// The feed's txid offset now in force (see `store::FEED_TXID_OFFSET`).
    pub feed_txid_offset: i64,
    /// How long it took.
    pub seconds: f64,
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// How a column's values are bound on a restore, from the target column's declared type: NULLs
/// too, since PostgreSQL refuses a text-typed NULL for a BIGINT column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Bool,
    Text,
    /// A SQLite column without a type affinity that says which: bound as the value comes.
    Any,
}

impl Kind {
    /// SQLite's affinity rules (section 3.1 of its datatype document), in their order.
    fn sqlite(declared: &str) -> Kind {
        let t = declared.to_ascii_lowercase();
        if t.contains("int") {
            Kind::Int
        } else if ["char", "clob", "text"].iter().any(|s| t.contains(s)) {
            Kind::Text
        } else if ["real", "floa", "doub"].iter().any(|s| t.contains(s)) {
            Kind::Float
        } else {
            Kind::Any
        }
    }

    /// PostgreSQL's `information_schema.columns.data_type`; `None` for a type sqlx's Any driver
    /// cannot carry.
    fn postgres(data_type: &str) -> Option<Kind> {
        match data_type {
            "bigint" | "integer" | "smallint" => Some(Kind::Int),
            "double precision" | "real" => Some(Kind::Float),
            "boolean" => Some(Kind::Bool),
            "text" | "character varying" | "character" => Some(Kind::Text),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

/// A table as the database describes it.
#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<Column>,
    /// The primary key's columns, in key order (empty: the table has none).
    key: Vec<String>,
    /// Tables its foreign keys reference.
    parents: BTreeSet<String>,
}

impl Table {
    fn entry(&self) -> String {
        entry_name(&self.name)
    }

    fn column_list(&self) -> String {
        self.columns.iter().map(|c| quoted(&c.name)).collect::<Vec<_>>().join(", ")
    }
}

fn entry_name(table: &str) -> String {
    format!("tables/{table}.ndjson")
}

/// Names go into SQL text and archive paths, so only plain identifiers are accepted (every
/// cmdb table and column is one).
fn check_name(table: &str, name: &str) -> Result<(), BackupError> {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        Ok(())
    } else {
        Err(BackupError::Unsupported { table: table.to_owned(), reason: format!("{name:?} is not a plain identifier") })
    }
}

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// The highest migration applied.
async fn schema_version(conn: &mut AnyConnection) -> Result<i64, BackupError> {
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(&mut *conn).await?;
    version.ok_or_else(|| BackupError::Mismatch("the database has no applied migration".to_owned()))
}

/// Every table but [`MIGRATIONS_TABLE`], parents before the tables that reference them.
async fn tables(conn: &mut AnyConnection, backend: Backend) -> Result<Vec<Table>, BackupError> {
    let mut out: BTreeMap<String, Table> = BTreeMap::new();
    match backend {
        Backend::Sqlite => {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 AND name <> $1 ORDER BY name",
            )
            .bind(MIGRATIONS_TABLE)
            .fetch_all(&mut *conn)
            .await?;
            for name in names {
                check_name(&name, &name)?;
                let rows = sqlx::query("SELECT name, type, pk FROM pragma_table_info($1) ORDER BY cid")
                    .bind(name.clone())
                    .fetch_all(&mut *conn)
                    .await?;
                let mut columns = Vec::new();
                let mut key: Vec<(i64, String)> = Vec::new();
                for row in rows {
                    let (column, declared, pk): (String, String, i64) =
                        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                    check_name(&name, &column)?;
                    if pk > 0 {
                        key.push((pk, column.clone()));
                    }
                    columns.push(Column { name: column, kind: Kind::sqlite(&declared) });
                }
                key.sort();
                let parents: BTreeSet<String> = sqlx::query_scalar("SELECT \"table\" FROM pragma_foreign_key_list($1)")
                    .bind(name.clone())
                    .fetch_all(&mut *conn)
                    .await?
                    .into_iter()
                    .collect();
                let key = key.into_iter().map(|(_, c)| c).collect();
                out.insert(name.clone(), Table { name, columns, key, parents });
            }
        }
        Backend::Postgres => {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
                 AND table_type = 'BASE TABLE' AND table_name <> $1 ORDER BY 1",
            )
            .bind(MIGRATIONS_TABLE)
            .fetch_all(&mut *conn)
            .await?;
            for name in names {
                check_name(&name, &name)?;
                out.insert(
                    name.clone(),
                    Table { name, columns: Vec::new(), key: Vec::new(), parents: BTreeSet::new() },
                );
            }
            let columns = sqlx::query(
                "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
            )
            .fetch_all(&mut *conn)
            .await?;
            for row in columns {
                let (table, column, data_type): (String, String, String) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                let Some(entry) = out.get_mut(&table) else { continue };
                check_name(&table, &column)?;
                let kind = Kind::postgres(&data_type).ok_or_else(|| BackupError::Unsupported {
                    table: table.clone(),
                    reason: format!("column {column} has type {data_type}, which the backup format does not carry"),
                })?;
                entry.columns.push(Column { name: column, kind });
            }
            let keys = sqlx::query(
                "SELECT k.table_name::text, k.column_name::text FROM information_schema.table_constraints t \
                 JOIN information_schema.key_column_usage k ON k.constraint_schema = t.constraint_schema \
                 AND k.constraint_name = t.constraint_name AND k.table_name = t.table_name \
                 WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_schema = current_schema() \
                 ORDER BY k.table_name, k.ordinal_position",
            )
            .fetch_all(&mut *conn)
            .await?;
            for row in keys {
                let (table, column): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                if let Some(entry) = out.get_mut(&table) {
                    entry.key.push(column);
                }
            }
            let references = sqlx::query(
                "SELECT child.relname::text, parent.relname::text FROM pg_constraint k \
                 JOIN pg_class child ON child.oid = k.conrelid JOIN pg_class parent ON parent.oid = k.confrelid \
                 WHERE k.contype = 'f' \
                 AND child.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())",
            )
            .fetch_all(&mut *conn)
            .await?;
            for row in references {
                let (table, parent): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                if let Some(entry) = out.get_mut(&table) {
                    entry.parents.insert(parent);
                }
            }
        }
    }
    Ok(parents_first(out))
}

/// Orders tables so that every table comes after the tables its foreign keys reference (by name
/// among those that are ready). A cycle, which cmdb's schema does not have, is broken in name
/// order: SQLite defers its checks to the commit anyway, and PostgreSQL would name the
/// constraint in its error.
fn parents_first(mut left: BTreeMap<String, Table>) -> Vec<Table> {
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready = left
            .values()
            .find(|t| t.parents.iter().all(|p| *p == t.name || !left.contains_key(p)))
            .or_else(|| left.values().next())
            .map(|t| t.name.clone());
        if let Some(table) = ready.and_then(|name| left.remove(&name)) {
            out.push(table);
        }
    }
    out
}

/// A piece of the archive, from the database reader to the file writer.
enum Piece {
    /// A table's entry starts.
    Begin(String),
    /// NDJSON of the current entry.
    Bytes(Vec<u8>),
    /// The current entry is complete.
    End,
    /// The manifest (the last entry).
    Manifest(Vec<u8>),
}

/// Writes a backup of `db` to `to`: a temporary file in the same directory, mode 0600 from its
/// creation, synced and renamed over `to` only when complete, so a failed backup never leaves a
/// partial file there. Runs beside a server ingesting into the same database without blocking it.
pub async fn backup(db: &Db, to: &Path) -> Result<BackupSummary, BackupError> {
    let started = Instant::now();
    let dir = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // A missing directory is created 0700; an existing one is left as it is (the file itself is
    // private whatever its directory's mode).
    if !dir.is_dir() {
        crate::file_modes::private_dir(dir).map_err(file_error(dir))?;
    }
    // tempfile creates the file 0600 and removes it when dropped, on any early return.
    let temp = tempfile::Builder::new()
        .prefix(".cmdb-backup-")
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(file_error(dir))?;
    let temp_path = temp.path().to_owned();
    let file = temp.as_file().try_clone().map_err(file_error(&temp_path))?;
    // The file is written by a thread of its own: tar writes synchronously, and the database
    // reader must not wait on the disk nor block the runtime it shares with a server.
    let (sender, receiver) = mpsc::channel::<Piece>(8);
    let writer = tokio::task::spawn_blocking(move || write_archive(file, receiver));
    let read = read_snapshot(db, &sender).await;
    drop(sender);
    let written = writer.await.map_err(|e| BackupError::Bug(format!("the backup writer failed: {e}")));
    // When the writer failed first, the reader only saw its channel close: the writer's error is
    // the cause.
    let manifest = match (read, written) {
        (Ok(manifest), Ok(Ok(()))) => manifest,
        (_, Ok(Err(e))) => return Err(file_error(&temp_path)(e)),
        (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
    };
    temp.as_file().sync_all().map_err(file_error(&temp_path))?;
    let bytes = temp.as_file().metadata().map_err(file_error(&temp_path))?.len();
    temp.persist(to).map_err(|e| file_error(to)(e.error))?;
    // The rename is durable once the directory is synced.
    File::open(dir).and_then(|d| d.sync_all()).map_err(file_error(dir))?;
    Ok(BackupSummary { manifest, bytes, seconds: started.elapsed().as_secs_f64() })
}

/// Reads every table in one snapshot and sends it to the writer as NDJSON, then the manifest.
async fn read_snapshot(db: &Db, out: &mpsc::Sender<Piece>) -> Result<Manifest, BackupError> {
    let send = |piece: Piece| async move {
        out.send(piece).await.map_err(|_| BackupError::Bug("the backup writer stopped".to_owned()))
    };
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // PostgreSQL: a read-only transaction takes no transaction id, so it holds back neither
    // writers nor the change feed's horizon. SQLite: the snapshot starts at the first read and
    // lasts to the end of the transaction; in WAL mode the writer goes on meanwhile.
    let begin = match db.backend() {
        Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        Backend::Sqlite => "BEGIN",
    };
    let mut tx = db.reader().begin_with(begin).await?;
    let schema_version = schema_version(&mut tx).await?;
    let tables = tables(&mut tx, db.backend()).await?;
    let mut counts = BTreeMap::new();
    for table in &tables {
        send(Piece::Begin(table.entry())).await?;
        let order = if table.key.is_empty() {
            table.column_list()
        } else {
            table.key.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", ")
        };
        let sql = format!("SELECT {} FROM {} ORDER BY {order}", table.column_list(), quoted(&table.name));
        // Each key and its colon, encoded once per table rather than once per cell.
        let keys: Vec<Vec<u8>> = table
            .columns
            .iter()
            .enumerate()
            .map(|(index, c)| {
                format!("{}{}:", if index == 0 { "{" } else { "," }, Value::from(c.name.as_str())).into_bytes()
            })
            .collect();
        let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut *tx);
        let mut buffer = Vec::with_capacity(WRITE_CHUNK + 4096);
        let mut count = 0u64;
        while let Some(row) = rows.try_next().await? {
            for (index, key) in keys.iter().enumerate() {
                buffer.extend_from_slice(key);
                write_cell(&mut buffer, &row, index, &table.name)?;
            }
            buffer.extend_from_slice(if keys.is_empty() { b"{}\n" } else { b"}\n" });
            count += 1;
            if buffer.len() >= WRITE_CHUNK {
                send(Piece::Bytes(std::mem::replace(&mut buffer, Vec::with_capacity(WRITE_CHUNK + 4096)))).await?;
            }
        }
        drop(rows);
        if !buffer.is_empty() {
            send(Piece::Bytes(buffer)).await?;
        }
        send(Piece::End).await?;
        counts.insert(table.name.clone(), count);
    }
    // Nothing was written; ending the snapshot is all that is left.
    tx.rollback().await?;
    let manifest = Manifest {
        format: FORMAT,
        cmdb_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version,
        backend: backend_name(db.backend()).to_owned(),
        created_at,
        tables: counts,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Bug(e.to_string()))?;
    send(Piece::Manifest(text)).await?;
    Ok(manifest)
}

/// Appends one cell as JSON: an integer as a number, a float as a number, text as a string, a
/// boolean, NULL as null. This dispatches on the kind sqlx's Any driver reports for the value,
/// which decides exactly as trying i64, f64, String and bool in turn would, without building an
/// error for every cell that is not an integer.
fn write_cell(buffer: &mut Vec<u8>, row: &AnyRow, index: usize, table: &str) -> Result<(), BackupError> {
    let kind = {
        let raw = row.try_get_raw(index)?;
        if raw.is_null() { AnyTypeInfoKind::Null } else { raw.type_info().kind() }
    };
    let unsupported = |reason: String| BackupError::Unsupported { table: table.to_owned(), reason };
    match kind {
        AnyTypeInfoKind::Null => buffer.extend_from_slice(b"null"),
        AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
            json(buffer, &row.try_get::<i64, _>(index)?)?;
        }
        AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => {
            let value: f64 = row.try_get(index)?;
            if !value.is_finite() {
                let column = row_column(row, index);
                return Err(unsupported(format!("column {column} holds {value}, which JSON cannot carry")));
            }
            json(buffer, &value)?;
        }
        AnyTypeInfoKind::Text => json(buffer, row.try_get::<&str, _>(index)?)?,
        AnyTypeInfoKind::Bool => json(buffer, &row.try_get::<bool, _>(index)?)?,
        AnyTypeInfoKind::Blob => {
            let column = row_column(row, index);
            return Err(unsupported(format!("column {column} holds a BLOB, which the backup format does not carry")));
        }
    }
    Ok(())
}

/// Appends `value` as JSON (which cannot fail for numbers, strings and booleans).
fn json<T: Serialize + ?Sized>(buffer: &mut Vec<u8>, value: &T) -> Result<(), BackupError> {
    serde_json::to_writer(buffer, value).map_err(|e| BackupError::Bug(e.to_string()))
}

fn row_column(row: &AnyRow, index: usize) -> String {
    use sqlx::Column as _;
    row.columns().get(index).map_or_else(|| index.to_string(), |c| c.name().to_owned())
}

/// The header of an entry: a regular file, mode 0600, stamped now.
fn entry_header() -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o600);
    header.set_mtime(u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0));
    header
}

/// The writer thread: turns the pieces into tar entries, each table's written as it streams (the
/// tar crate seeks back to fill in its size), then the manifest and the end-of-archive blocks.
fn write_archive(file: File, mut pieces: mpsc::Receiver<Piece>) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(BufWriter::with_capacity(WRITE_CHUNK, file));
    while let Some(piece) = pieces.blocking_recv() {
        match piece {
            Piece::Begin(path) => {
                let mut header = entry_header();
                let mut entry = builder.append_writer(&mut header, &path)?;
                loop {
                    match pieces.blocking_recv() {
                        Some(Piece::Bytes(bytes)) => entry.write_all(&bytes)?,
                        Some(Piece::End) => break,
                        _ => return Err(std::io::Error::other(format!("the backup stopped inside {path}"))),
                    }
                }
                entry.finish()?;
            }
            Piece::Manifest(bytes) => {
                let mut header = entry_header();
                header.set_size(bytes.len() as u64);
                builder.append_data(&mut header, MANIFEST, bytes.as_slice())?;
                // Writes the end-of-archive blocks and flushes the buffer.
                builder.into_inner()?.into_inner().map_err(|e| e.into_error())?;
                return Ok(());
            }
            Piece::Bytes(_) | Piece::End => return Err(std::io::Error::other("table data outside a table")),
        }
    }
    Err(std::io::Error::other("the backup stopped before its manifest"))
}

/// Where a table's NDJSON lies in the backup file.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    size: u64,
}

/// The backup's manifest and where each of its entries lies (reading only the tar headers).
fn index_archive(path: &Path) -> Result<(Manifest, BTreeMap<String, Span>), BackupError> {
    let not_a_backup = |reason: String| BackupError::NotABackup { path: path.to_owned(), reason };
    let file = File::open(path).map_err(file_error(path))?;
    let mut archive = tar::Archive::new(file);
    let mut spans = BTreeMap::new();
    let mut manifest = None;
    for entry in archive.entries_with_seek().map_err(|e| not_a_backup(e.to_string()))? {
        let mut entry = entry.map_err(|e| not_a_backup(e.to_string()))?;
        let name = entry.path().map_err(|e| not_a_backup(e.to_string()))?.to_string_lossy().into_owned();
        if name == MANIFEST {
            let mut text = Vec::new();
            entry.read_to_end(&mut text).map_err(file_error(path))?;
            let parsed: Manifest =
                serde_json::from_slice(&text).map_err(|e| not_a_backup(format!("{MANIFEST} does not read: {e}")))?;
            manifest = Some(parsed);
        } else {
            spans.insert(name, Span { offset: entry.raw_file_position(), size: entry.size() });
        }
    }
    let manifest = manifest.ok_or_else(|| not_a_backup(format!("it has no {MANIFEST}")))?;
    if manifest.format != FORMAT {
        return Err(not_a_backup(format!("its format is {}, this cmdb reads format {FORMAT}", manifest.format)));
    }
    for table in manifest.tables.keys() {
        if !spans.contains_key(&entry_name(table)) {
            return Err(not_a_backup(format!("its manifest lists table {table} but it has no {}", entry_name(table))));
        }
    }
    Ok((manifest, spans))
}

/// Reads a backup's manifest (the tar headers and the manifest only).
pub fn read_manifest(path: &Path) -> Result<Manifest, BackupError> {
    index_archive(path).map(|(manifest, _)| manifest)
}

/// Appends the condition that singles out the rows of `table` the migrations insert, which a
/// freshly migrated database holds; false when they insert none into it: the finance custom
/// fields of migration 0007 (`cmdb_model::custom_fields::FINANCE_SET`), created by `cmdb`, and the
/// progress row of the chain step that runs after the migrations (`settings.chain_backfill`).
fn push_seeded(table: &str, q: &mut Sql) -> bool {
    match table {
        "custom_fields" => {
            q.push("created_by = 'cmdb' AND deleted_at IS NULL AND key IN ");
            q.bind_list(cmdb_model::custom_fields::FINANCE_SET.iter().map(|(key, ..)| *key));
            true
        }
        "settings" => {
            q.push("name = 'chain_backfill'");
            true
        }
        _ => false,
    }
}

/// The tables that hold rows other than those the migrations seed.
async fn tables_with_rows(conn: &mut AnyConnection, tables: &[Table]) -> Result<Vec<String>, BackupError> {
    let mut out = Vec::new();
    for table in tables {
        let mut q = Sql::new(format!("SELECT 1 FROM {} WHERE NOT (", quoted(&table.name)));
        if push_seeded(&table.name, &mut q) {
            q.push(")");
        } else {
            q = Sql::new(format!("SELECT 1 FROM {}", quoted(&table.name)));
        }
        q.push(" LIMIT 1");
        if q.query().fetch_optional(&mut *conn).await?.is_some() {
            out.push(table.name.clone());
        }
    }
    Ok(out)
}

/// Restores the backup at `from` into `db`, which `Db::open` has created or migrated.
///
/// Refused when the backup's schema version differs from the database's, and, unless `force`,
/// when the database is not empty. **Empty** means: no table (but `_sqlx_migrations`) holds a
/// row, except the rows the migrations themselves seed, which a freshly migrated database holds:
/// the finance custom fields of migration 0007 (`custom_fields` rows created by `cmdb` with the
/// finance keys, not deleted) and the chain step's progress row (`settings.chain_backfill`).
/// Anything else, a user, a token, one audit line, makes it not
/// empty; a database a server has started on once holds its first-start credentials, so it needs
/// `force`.
///
/// One transaction: every row of every table is deleted (children first), every row of the backup
/// inserted (parents first, in multi-row INSERTs, each value bound with the target column's type),
/// each table's count checked against the manifest; then on PostgreSQL every serial sequence is
/// set past the largest id restored (SQLite's AUTOINCREMENT follows explicit ids by itself), and
/// the change feed's txid offset (`store::FEED_TXID_OFFSET`) is set so that changes written
/// later sort after every restored one: on SQLite, where new changes get the offset as their
/// txid and larger ids, to the largest restored txid; on PostgreSQL, where they get their
/// transaction id plus the offset, to how far the largest restored txid is ahead of this
/// transaction's id (0 when it is not). Every row is restored as the backup holds it, changes with
/// their ids and txids (so a feed consumer's cursor stays valid), except that one setting, which
/// the restore sets rather than copies.
///
/// No server may write to the target while it is restored; start them after (they cache states,
/// keys and snapshot rows of the database they started on).
pub async fn restore(db: &Db, from: &Path, force: bool) -> Result<RestoreSummary, BackupError> {
    let started = Instant::now();
    let (manifest, spans) = index_archive(from)?;
    let bytes = std::fs::metadata(from).map_err(file_error(from))?.len();
    let backend = db.backend();
    let mut tx = db.begin_write().await?;
    let target = schema_version(&mut tx).await?;
    if target != manifest.schema_version {
        return Err(BackupError::SchemaMismatch {
            backup: manifest.schema_version,
            target,
            cmdb_version: manifest.cmdb_version.clone(),
        });
    }
    let tables = tables(&mut tx, backend).await?;
    let names: BTreeSet<&String> = tables.iter().map(|t| &t.name).collect();
    let listed: BTreeSet<&String> = manifest.tables.keys().collect();
    if names != listed {
        let missing: Vec<&&String> = names.difference(&listed).collect();
        let extra: Vec<&&String> = listed.difference(&names).collect();
        return Err(BackupError::Mismatch(format!(
            "tables of the target missing from the backup: {missing:?}; tables of the backup the target lacks: {extra:?}"
        )));
    }
    if !force {
        let full = tables_with_rows(&mut tx, &tables).await?;
        if !full.is_empty() {
            return Err(BackupError::NotEmpty { tables: full.join(", ") });
        }
    }
    if backend == Backend::Sqlite {
        // Foreign keys are checked at the commit, when every table is in place (ends with it).
        sqlx::query("PRAGMA defer_foreign_keys = ON").execute(&mut *tx).await?;
        // Millions of rows into indexed tables in one transaction: with SQLite's default 2 MiB
        // page cache every index insert rereads its pages. Set back after the commit.
        sqlx::query("PRAGMA cache_size = -262144").execute(&mut *tx).await?;
    }
    for table in tables.iter().rev() {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {}", quoted(&table.name)))).execute(&mut *tx).await?;
    }
    let plans: Vec<Plan> = tables
        .iter()
        .map(|table| {
            let span = spans.get(&table.entry()).copied().unwrap_or(Span { offset: 0, size: 0 });
            Plan {
                entry: table.entry(),
                span,
                columns: table.columns.clone(),
                per_insert: rows_per_insert(table.columns.len(), backend),
            }
        })
        .collect();
    // The file is read and parsed by a thread of its own, a few chunks ahead of the inserts.
    let (sender, mut receiver) = mpsc::channel::<Result<Loaded, BackupError>>(4);
    let path = from.to_owned();
    let reader = tokio::task::spawn_blocking(move || load_rows(&path, &plans, &sender));
    let inserted = insert_rows(&mut tx, &tables, &manifest, &mut receiver).await;
    drop(receiver);
    reader.await.map_err(|e| BackupError::Bug(format!("the backup reader failed: {e}")))?;
    inserted?;
    let feed_txid_offset = set_feed_offset(&mut tx, backend).await?;
    if backend == Backend::Postgres {
        reset_sequences(&mut tx).await?;
    }
    tx.commit().await?;
    if backend == Backend::Sqlite {
        sqlx::query("PRAGMA cache_size = -2000").execute(db.writer()).await?;
    }
    Ok(RestoreSummary { manifest, bytes, feed_txid_offset, seconds: started.elapsed().as_secs_f64() })
}

/// What the reader thread reads for one table.
struct Plan {
    entry: String,
    span: Span,
    columns: Vec<Column>,
    /// Rows per INSERT statement.
    per_insert: usize,
}

/// From the reader thread: rows ready to bind, in the target's column order; or a table's end
/// with the rows it held.
enum Loaded {
    Rows(Vec<Vec<Param>>),
    End(u64),
}

fn rows_per_insert(columns: usize, backend: Backend) -> usize {
    let params = match backend {
        Backend::Sqlite => SQLITE_INSERT_PARAMS,
        Backend::Postgres => INSERT_PARAMS,
    };
    (params / columns.max(1)).clamp(1, INSERT_ROWS)
}

/// The reader thread: each table's NDJSON in `plans`' order, in chunks of one INSERT each.
/// Errors go down the channel too; a closed channel (the restore failed) ends it quietly.
fn load_rows(path: &Path, plans: &[Plan], out: &mpsc::Sender<Result<Loaded, BackupError>>) {
    let send = |item| out.blocking_send(item).is_ok();
    let run = || -> Result<bool, BackupError> {
        let mut file = File::open(path).map_err(file_error(path))?;
        for plan in plans {
            file.seek(SeekFrom::Start(plan.span.offset)).map_err(file_error(path))?;
            let lines = BufReader::with_capacity(WRITE_CHUNK, (&mut file).take(plan.span.size)).lines();
            let per_insert = plan.per_insert;
            let mut chunk = Vec::with_capacity(per_insert);
            let mut count = 0u64;
            for (index, line) in lines.enumerate() {
                let line = line.map_err(file_error(path))?;
                if line.trim().is_empty() {
                    continue;
                }
                let row = parse_row(&line, &plan.columns).map_err(|reason| BackupError::BadRow {
                    entry: plan.entry.clone(),
                    line: index as u64 + 1,
                    reason,
                })?;
                chunk.push(row);
                count += 1;
                if chunk.len() == per_insert && !send(Ok(Loaded::Rows(std::mem::take(&mut chunk)))) {
                    return Ok(false);
                }
            }
            if !chunk.is_empty() && !send(Ok(Loaded::Rows(chunk))) {
                return Ok(false);
            }
            if !send(Ok(Loaded::End(count))) {
                return Ok(false);
            }
        }
        Ok(true)
    };
    if let Err(e) = run() {
        send(Err(e));
    }
}

/// One NDJSON line as the values of the target's columns, in their order: every column must be
/// there and nothing else.
fn parse_row(line: &str, columns: &[Column]) -> Result<Vec<Param>, String> {
    let mut object: Map<String, Value> = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let mut row = Vec::with_capacity(columns.len());
    for column in columns {
        let value = object.remove(&column.name).ok_or_else(|| format!("no value for column {}", column.name))?;
        row.push(param(column, value).map_err(|reason| format!("column {}: {reason}", column.name))?);
    }
    if let Some(extra) = object.keys().next() {
        return Err(format!("column {extra} is not in the target's table"));
    }
    Ok(row)
}

/// A JSON value as a value of a column of `column.kind`.
fn param(column: &Column, value: Value) -> Result<Param, String> {
    let wrong = |value: &Value| format!("{value} does not fit a column of type {:?}", column.kind);
    Ok(match (column.kind, value) {
        (Kind::Int, Value::Null) => Param::Int(None),
        (Kind::Float, Value::Null) => Param::Float(None),
        (Kind::Bool, Value::Null) => Param::Bool(None),
        (Kind::Text | Kind::Any, Value::Null) => Param::Text(None),
        (Kind::Int, Value::Number(n)) => Param::Int(Some(n.as_i64().ok_or_else(|| wrong(&Value::Number(n)))?)),
        (Kind::Float, Value::Number(n)) => Param::Float(Some(n.as_f64().ok_or_else(|| wrong(&Value::Number(n)))?)),
        (Kind::Any, Value::Number(n)) => match n.as_i64() {
            Some(i) => Param::Int(Some(i)),
            None => Param::Float(Some(n.as_f64().ok_or_else(|| wrong(&Value::Number(n)))?)),
        },
        // A boolean from PostgreSQL goes into SQLite as the 0 or 1 SQLite would store.
        (Kind::Int, Value::Bool(b)) => Param::Int(Some(i64::from(b))),
        (Kind::Bool | Kind::Any, Value::Bool(b)) => Param::Bool(Some(b)),
        (Kind::Bool, Value::Number(n)) => match n.as_i64() {
            Some(0) => Param::Bool(Some(false)),
            Some(1) => Param::Bool(Some(true)),
            _ => return Err(wrong(&Value::Number(n))),
        },
        (Kind::Text | Kind::Any, Value::String(s)) => Param::Text(Some(s)),
        (_, value) => return Err(wrong(&value)),
    })
}

/// Inserts what the reader thread sends, table by table in `tables`' order, and checks each
/// table's count against the manifest.
async fn insert_rows(
    conn: &mut AnyConnection,
    tables: &[Table],
    manifest: &Manifest,
    loaded: &mut mpsc::Receiver<Result<Loaded, BackupError>>,
) -> Result<(), BackupError> {
    for table in tables {
        let insert = format!("INSERT INTO {} ({})", quoted(&table.name), table.column_list());
        loop {
            match loaded.recv().await {
                Some(Ok(Loaded::Rows(rows))) => {
                    let mut q = Sql::new(insert.as_str());
                    q.values(&rows, |builder, row| {
                        for value in row {
                            builder.bind(value.clone());
                        }
                    });
                    q.query().execute(&mut *conn).await?;
                }
                Some(Ok(Loaded::End(count))) => {
                    let expected = manifest.tables.get(&table.name).copied().unwrap_or(0);
                    if count != expected {
                        return Err(BackupError::Mismatch(format!(
                            "{} holds {count} rows, its manifest says {expected}",
                            table.entry()
                        )));
                    }
                    break;
                }
                Some(Err(e)) => return Err(e),
                None => return Err(BackupError::Bug("the backup reader stopped early".to_owned())),
            }
        }
    }
    Ok(())
}

/// Sets the change feed's txid offset (see [`restore`]) and returns it.
async fn set_feed_offset(conn: &mut AnyConnection, backend: Backend) -> Result<i64, BackupError> {
    let largest: Option<i64> = sqlx::query_scalar("SELECT MAX(txid) FROM changes").fetch_one(&mut *conn).await?;
    let offset = match backend {
        Backend::Sqlite => largest.unwrap_or(0).max(0),
        Backend::Postgres => {
            // Every later transaction has a larger id than this one.
            let current: i64 =
                sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint").fetch_one(&mut *conn).await?;
            largest.map_or(0, |largest| (largest + 1 - current).max(0))
        }
    };
    sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(FEED_TXID_OFFSET)
    .bind(offset.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(offset)
}

/// Sets every serial or identity sequence so that the next id follows the largest restored one
/// (or starts at 1 in an empty table).
async fn reset_sequences(conn: &mut AnyConnection) -> Result<(), BackupError> {
    let serials = sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND (column_default LIKE 'nextval(%' OR is_identity = 'YES') \
         ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in serials {
        let (table, column): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        check_name(&table, &table)?;
        check_name(&table, &column)?;
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX({}), 0) + 1, false) FROM {}",
            quoted(&column),
            quoted(&table)
        );
        sqlx::query(AssertSqlSafe(sql)).bind(table.clone()).bind(column.clone()).execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, parents: &[&str]) -> (String, Table) {
        (
            name.to_owned(),
            Table {
                name: name.to_owned(),
                columns: Vec::new(),
                key: Vec::new(),
                parents: parents.iter().map(|p| (*p).to_owned()).collect(),
            },
        )
    }

    #[test]
    fn parents_come_first() {
        let tables: BTreeMap<String, Table> = [
            table("a_sections", &["assets"]),
            table("assets", &[]),
            table("snapshot_members", &["snapshots"]),
            table("snapshots", &[]),
            table("self_ref", &["self_ref"]),
            table("cycle_a", &["cycle_b"]),
            table("cycle_b", &["cycle_a"]),
        ]
        .into_iter()
        .collect();
        let order: Vec<String> = parents_first(tables).into_iter().map(|t| t.name).collect();
        let at = |name: &str| order.iter().position(|n| n == name).expect("listed");
        assert_eq!(order.len(), 7);
        assert!(at("assets") < at("a_sections"));
        assert!(at("snapshots") < at("snapshot_members"));
    }

    #[test]
    fn values_bind_with_the_column_type() {
        let column = |kind| Column { name: "c".to_owned(), kind };
        assert_eq!(param(&column(Kind::Int), Value::Null), Ok(Param::Int(None)));
        assert_eq!(param(&column(Kind::Text), Value::Null), Ok(Param::Text(None)));
        assert_eq!(param(&column(Kind::Int), serde_json::json!(7)), Ok(Param::Int(Some(7))));
        assert_eq!(param(&column(Kind::Int), serde_json::json!(true)), Ok(Param::Int(Some(1))));
        assert_eq!(param(&column(Kind::Any), serde_json::json!(1.5)), Ok(Param::Float(Some(1.5))));
        assert!(param(&column(Kind::Int), serde_json::json!("7")).is_err());
        assert!(param(&column(Kind::Text), serde_json::json!({"a": 1})).is_err());
        let columns = [column(Kind::Int)];
        assert!(parse_row(r#"{"c": 1, "d": 2}"#, &columns).is_err_and(|e| e.contains("column d")));
        assert!(parse_row(r#"{}"#, &columns).is_err_and(|e| e.contains("no value for column c")));
    }

    #[test]
    fn declared_types_map_to_kinds() {
        assert_eq!(Kind::sqlite("BIGINT"), Kind::Int);
        assert_eq!(Kind::sqlite("INTEGER"), Kind::Int);
        assert_eq!(Kind::sqlite("TEXT"), Kind::Text);
        assert_eq!(Kind::sqlite(""), Kind::Any);
        assert_eq!(Kind::postgres("bigint"), Some(Kind::Int));
        assert_eq!(Kind::postgres("jsonb"), None);
        assert_eq!(rows_per_insert(13, Backend::Postgres), 500);
        assert_eq!(rows_per_insert(100, Backend::Postgres), 300);
        assert_eq!(rows_per_insert(16, Backend::Sqlite), 62);
        assert_eq!(rows_per_insert(2_000, Backend::Sqlite), 1);
    }
}
