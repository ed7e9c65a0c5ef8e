//! What every request handler shares: the database, the configuration and what is derived from it
//! once at start.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::auth::KeyCache;
use crate::config::ServerConfig;
use crate::db::Db;
use crate::directory::Directory;
use crate::ingest::Ingestor;
use crate::secrets::SecretKey;
use crate::service::Calendar;
use crate::service::asof::SnapshotRows;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The configuration.
    pub config: ServerConfig,
    /// Agent keys, cached briefly (shared with the task that hears other instances' key changes).
    pub keys: Arc<KeyCache>,
    /// What a date means here (the configured zone and clock window), resolved once.
    pub calendar: Calendar,
    /// The owner of report ingestion (on SQLite, the writer task and its queue).
    pub ingestor: Ingestor,
    /// The list rows of recent snapshots, kept in memory for as-of lists.
    pub snapshot_rows: Arc<SnapshotRows>,
    /// Set at SIGTERM: `/readyz` then answers 503 so a load balancer moves new work elsewhere
    /// while in-flight requests finish.
    pub draining: AtomicBool,
    /// The directory for directory (LDAP) login: `None` without an `[ldap]` section; `Some(Err)`
    /// when the section is there but its files are unusable (then directory logins are refused as
    /// if the directory were down, and local logins go on).
    pub directory: Option<Result<Arc<Directory>, String>>,
}

impl AppState {
    /// State for `db` and `config`; `secret_key` opens the agent secrets sealed in the database
    /// (see [`crate::admin::open_secrets`]).
    pub fn new(db: Db, config: ServerConfig, secret_key: Arc<SecretKey>) -> Arc<Self> {
        let keys = Arc::new(KeyCache::new(Duration::from_secs(config.key_cache_secs), secret_key));
        let calendar = Calendar::of(&config);
        let ingestor = Ingestor::start(db.clone());
        let directory = config.ldap.as_ref().map(|ldap| {
            Directory::new(ldap).map(Arc::new).map_err(|e| {
                tracing::error!(error = %e, "directory login is unavailable");
                e.to_string()
            })
        });
        Arc::new(AppState {
            db,
            config,
            keys,
            calendar,
            ingestor,
            snapshot_rows: Arc::default(),
            draining: AtomicBool::new(false),
            directory,
        })
    }
}
