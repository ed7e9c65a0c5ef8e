//! The server's configuration: built-in defaults < file < environment (`CMDB_SERVER_*`) < flags.
//!
//! Every field has a default, so `cmdb-server` starts with no configuration at all on an embedded
//! SQLite file. Errors name the file or variable that supplied the bad value (figment keeps the
//! provenance of every value).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Default location of the configuration file; read only if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/cmdb/server.toml";

/// Environment variable prefix; `CMDB_SERVER_DATABASE_URL` sets `database_url`,
/// `CMDB_SERVER_LEGACY__ENABLED` sets `legacy.enabled`.
pub const ENV_PREFIX: &str = "CMDB_SERVER_";

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port the HTTP server listens on.
    pub listen: String,
    /// Database: `sqlite://PATH` (created on first start) or `postgres://USER@HOST:PORT/DB`.
    pub database_url: String,
    /// Directory where the first start writes the admin token and this machine's agent key.
    pub data_dir: PathBuf,
    /// Base URL people use to reach the server (printed at start); default `http://<listen>`.
    pub public_url: Option<String>,
    /// IANA time zone for "start of today" (the collect-targets cutoff) and for dates in the UI.
    pub timezone: String,
    /// Allowed difference between an agent's clock and ours, in seconds (signed requests).
    pub clock_window_secs: u64,
    /// Largest request body accepted, in bytes (larger bodies get 413).
    pub body_limit_bytes: usize,
    /// Seconds an agent key lookup is cached. On PostgreSQL every instance hears of a key change
    /// at once (NOTIFY), so this bounds staleness only while an instance reconnects its listener;
    /// the instance that made the change refuses the old key at once in any case.
    pub key_cache_secs: u64,
    /// Seconds between SIGTERM and closing the listener. Meanwhile `/readyz` answers 503
    /// ("draining") and requests are still served, so a load balancer that checks `/readyz` stops
    /// sending new work here before the connections close; behind one, set it above the
    /// balancer's check interval times its fall count. 0 (a single instance) closes at once.
    pub shutdown_drain_secs: u64,
    /// Log format: "text" or "json".
    pub log_format: String,
    /// How long bookkeeping rows are kept.
    pub retention: Retention,
    /// The course client's endpoint (`POST /api/asset`), off by default.
    pub legacy: Legacy,
    /// Database connection pools.
    pub pool: Pool,
    /// The web UI's sessions and proxies.
    pub web: Web,
    /// Secrets at rest.
    pub secrets: Secrets,
    /// The Prometheus endpoint.
    pub metrics: Metrics,
    /// What one report may hold; a report over a limit is refused (422, naming the limit) and
    /// writes nothing.
    pub limits: cmdb_model::report::ReportLimits,
    /// Directory (LDAP) login; off when absent.
    pub ldap: Option<LdapConfig>,
    /// Delivery of webhook events to the endpoints admins register.
    pub webhooks: Webhooks,
}

/// Directory (LDAP) login. A person without a local account logs in with their directory name and
/// password; their role follows their groups at each login. Local accounts never go to the
/// directory, and keep working when it is down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://HOST:PORT` (StartTLS, always) or `ldaps://HOST:PORT` (TLS); plain text is not offered.
    pub url: String,
    /// The service account the server binds as to find people and their groups.
    pub bind_dn: String,
    /// A file whose first line is the service account's password; it must not be readable by
    /// group or others (mode 0600).
    pub bind_password_file: PathBuf,
    /// Where people's entries are searched (subtree), e.g. `ou=people,dc=example,dc=org`.
    pub user_base: String,
    /// The filter that finds one person; `{username}` is replaced by the login name, escaped per
    /// RFC 4515.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Where groups are searched (subtree); without it only `member_attribute` tells the groups.
    #[serde(default)]
    pub group_base: Option<String>,
    /// The filter that finds a person's groups under `group_base`; `{dn}` is the person's entry and
    /// `{username}` the login name (both escaped).
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// An attribute of the person's entry that lists their groups' DNs (e.g. `memberOf`).
    #[serde(default)]
    pub member_attribute: Option<String>,
    /// Group DN -> role (`viewer`, `editor`, `admin`). A person gets the highest role of their
    /// mapped groups; a person in none is refused and their sessions end.
    pub groups: std::collections::BTreeMap<String, crate::auth::Role>,
    /// PEM file of the CA certificates that sign the directory's certificate; default: the
    /// system's trusted roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds one directory operation (connect, bind, search) may take.
    #[serde(default = "default_ldap_timeout")]
    pub timeout_secs: u64,
}

fn default_user_filter() -> String {
    "(&(objectClass=person)(uid={username}))".to_owned()
}

fn default_group_filter() -> String {
    "(|(member={dn})(uniqueMember={dn}))".to_owned()
}

fn default_ldap_timeout() -> u64 {
    5
}

/// Delivery of webhook events (endpoints are registered at runtime, by admins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webhooks {
    /// Seconds an event is retried after it was committed; when its delivery still fails after
    /// that, the endpoint is disabled (shown on the dashboard to admins) and nothing more is sent.
    pub give_up_after_secs: u64,
    /// Deliveries one server instance has in flight at once (never more than one per endpoint
    /// and asset; at most 1,000).
    pub max_in_flight: usize,
    /// Seconds a delivery waits for the receiver's answer.
    pub timeout_secs: u64,
    /// Milliseconds before the first retry; each further retry waits twice as long.
    pub min_backoff_ms: u64,
    /// Longest wait between two retries, in seconds.
    pub max_backoff_secs: u64,
    /// Milliseconds between looks for due events while there is nothing to send.
    pub poll_interval_ms: u64,
    /// Days delivered events and the delivery log are kept.
    pub keep_days: u64,
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            give_up_after_secs: 86_400,
            max_in_flight: 16,
            timeout_secs: 10,
            min_backoff_ms: 1_000,
            max_backoff_secs: 300,
            poll_interval_ms: 100,
            keep_days: 7,
        }
    }
}

/// Secrets at rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Secrets {
    /// The key that seals agent secrets in the database (default `<data_dir>/secret.key`, created
    /// 0600 at first start). Every instance that shares a database needs the same file; keep it
    /// out of database backups.
    pub key_file: Option<PathBuf>,
}

/// The Prometheus endpoint `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// A bearer token `/metrics` then requires (`Authorization: Bearer <token>`); without it the
    /// endpoint is open to anyone who reaches the listen address.
    pub token: Option<String>,
}

/// Web UI sessions and the reverse proxy in front of the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    /// Mark cookies `Secure`: "auto" (when the request came over TLS, per `public_url` or a trusted
    /// proxy's `X-Forwarded-Proto`), "always" or "never".
    pub secure_cookies: String,
    /// IP addresses of reverse proxies whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Minutes a session survives without a request.
    pub session_idle_minutes: u64,
    /// Hours a session lasts at most, however active.
    pub session_absolute_hours: u64,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            secure_cookies: "auto".to_owned(),
            trusted_proxies: Vec::new(),
            session_idle_minutes: 8 * 60,
            session_absolute_hours: 24,
        }
    }
}

/// Retention of bookkeeping rows (history is never pruned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Days a report id is remembered for idempotency.
    pub reports_days: u64,
    /// Days a collection error row is kept.
    pub errors_days: u64,
    /// Seconds between pruning runs.
    pub prune_interval_secs: u64,
}

/// The legacy course-client endpoint. Its body is unsigned and one key serves the whole fleet, so
/// it is off by default, open only to `allow_from`, and never renames an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Legacy {
    /// Accept `POST /api/asset`.
    pub enabled: bool,
    /// The shared key of the `auth-api` header (required when enabled).
    pub key: Option<String>,
    /// Client networks allowed to use it (CIDR, e.g. `10.20.0.0/16`); default loopback only.
    pub allow_from: Vec<ipnet::IpNet>,
}

impl Default for Legacy {
    fn default() -> Self {
        let loopback = ["127.0.0.0/8", "::1/128"];
        Legacy { enabled: false, key: None, allow_from: loopback.iter().filter_map(|n| n.parse().ok()).collect() }
    }
}

/// Connection pools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pool {
    /// PostgreSQL connections per server instance.
    pub postgres_connections: u32,
    /// SQLite reader connections (writes always use one connection).
    pub sqlite_readers: u32,
    /// Seconds a request waits for a connection before the server answers 503.
    pub acquire_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_owned(),
            database_url: "sqlite://data/cmdb.db".to_owned(),
            data_dir: PathBuf::from("data"),
            public_url: None,
            timezone: "UTC".to_owned(),
            clock_window_secs: 300,
            body_limit_bytes: 4 * 1024 * 1024,
            key_cache_secs: 1,
            shutdown_drain_secs: 0,
            log_format: "text".to_owned(),
            retention: Retention::default(),
            legacy: Legacy::default(),
            pool: Pool::default(),
            web: Web::default(),
            secrets: Secrets::default(),
            metrics: Metrics::default(),
            limits: cmdb_model::report::ReportLimits::default(),
            ldap: None,
            webhooks: Webhooks::default(),
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention { reports_days: 30, errors_days: 90, prune_interval_secs: 300 }
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool { postgres_connections: 32, sqlite_readers: 4, acquire_timeout_secs: 5 }
    }
}

/// Settings given on the command line (highest precedence); `None` leaves lower layers alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `--database-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value has the wrong type or an unknown key was given; the message names its source.
    #[error("{0}")]
    Figment(#[from] Box<figment::Error>),
    /// A value is well-typed but not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// Which setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The layers, without extracting (also used to show provenance).
pub fn figment(file: Option<&Path>, flags: &FlagOverrides) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(ServerConfig::default()));
    match file {
        Some(path) => figment = figment.merge(Toml::file_exact(path)),
        None => {
            if Path::new(DEFAULT_CONFIG_FILE).exists() {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
        }
    }
    // CMDB_SERVER_URL is the agent's setting (its prefix is CMDB_): it must not trip the server's
    // unknown-key check when both run in one environment, as in the quick start.
    let env = Env::prefixed(ENV_PREFIX).split("__").ignore(&["url"]);
    figment.merge(env).merge(Serialized::globals(flags))
}

impl ServerConfig {
    /// Loads and validates the configuration.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<ServerConfig, ConfigError> {
        let config: ServerConfig = figment(file, flags).extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(ConfigError::Invalid {
                field: "timezone",
                message: format!("unknown time zone {:?}", self.timezone),
            });
        }
        if self.legacy.enabled && self.legacy.key.as_deref().is_none_or(|k| k.len() < 8) {
            return Err(ConfigError::Invalid {
                field: "legacy.key",
                message: "the legacy endpoint needs a key of at least 8 characters".to_owned(),
            });
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid {
                field: "log_format",
                message: "must be \"text\" or \"json\"".to_owned(),
            });
        }
        if !matches!(self.web.secure_cookies.as_str(), "auto" | "always" | "never") {
            return Err(ConfigError::Invalid {
                field: "web.secure_cookies",
                message: "must be \"auto\", \"always\" or \"never\"".to_owned(),
            });
        }
        if self.web.session_idle_minutes == 0 || self.web.session_absolute_hours == 0 {
            return Err(ConfigError::Invalid {
                field: "web",
                message: "session lifetimes must be positive".to_owned(),
            });
        }
        if self.metrics.token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::Invalid {
                field: "metrics.token",
                message: "a metrics token has at least 16 characters".to_owned(),
            });
        }
        if self.limits.max_sections == 0
            || self.limits.max_components_per_section == 0
            || self.limits.max_string_bytes < 64
        {
            return Err(ConfigError::Invalid {
                field: "limits",
                message: "limits must allow at least one section, one component and 64-byte strings".to_owned(),
            });
        }
        if self.body_limit_bytes < 1024 {
            return Err(ConfigError::Invalid {
                field: "body_limit_bytes",
                message: "must be at least 1024".to_owned(),
            });
        }
        if let Some(ldap) = &self.ldap {
            ldap.validate()?;
        }
        Ok(())
    }

    /// The secrets key file: `secrets.key_file`, or `<data_dir>/secret.key`.
    pub fn secrets_key_file(&self) -> PathBuf {
        self.secrets.key_file.clone().unwrap_or_else(|| self.data_dir.join("secret.key"))
    }

    /// The configured time zone.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// The URL people should open.
    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

impl LdapConfig {
    /// Checks what types cannot: a TLS scheme, a filter that names the user, a mapped group.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |field: &'static str, message: &str| Err(ConfigError::Invalid { field, message: message.to_owned() });
        let url = self.url.to_ascii_lowercase();
        if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
            return invalid("ldap.url", "must be ldap://HOST:PORT (StartTLS) or ldaps://HOST:PORT");
        }
        if !self.user_filter.contains("{username}") {
            return invalid("ldap.user_filter", "must contain {username}");
        }
        if self.group_base.is_none() && self.member_attribute.is_none() {
            return invalid("ldap", "set group_base or member_attribute, or no group can grant a role");
        }
        if self.groups.is_empty() {
            return invalid("ldap.groups", "map at least one group DN to a role");
        }
        if self.timeout_secs == 0 {
            return invalid("ldap.timeout_secs", "must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // figment's Jail closure returns figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    #[test]
    fn the_ldap_section_parses_and_is_checked() {
        figment::Jail::expect_with(|jail| {
            let section = "[ldap]\nurl = \"ldap://ldap.example.org\"\nbind_dn = \"cn=cmdb,dc=example,dc=org\"\n\
                           bind_password_file = \"/etc/cmdb/ldap-bind-password\"\n\
                           user_base = \"ou=people,dc=example,dc=org\"\ngroup_base = \"ou=groups,dc=example,dc=org\"\n\
                           [ldap.groups]\n\"cn=admins,ou=groups,dc=example,dc=org\" = \"admin\"\n";
            jail.create_file("ldap.toml", section)?;
            let config = ServerConfig::load(Some(Path::new("ldap.toml")), &FlagOverrides::default())
                .map_err(|e| e.to_string())?;
            let ldap = config.ldap.ok_or("the section is read")?;
            assert_eq!(ldap.user_filter, "(&(objectClass=person)(uid={username}))");
            assert_eq!(ldap.timeout_secs, 5);
            assert_eq!(ldap.groups.get("cn=admins,ou=groups,dc=example,dc=org"), Some(&crate::auth::Role::Admin));
            assert!(ServerConfig::default().ldap.is_none(), "off unless configured");

            jail.create_file("plain.toml", &section.replace("ldap://", "http://"))?;
            let err = ServerConfig::load(Some(Path::new("plain.toml")), &FlagOverrides::default())
                .expect_err("not LDAP")
                .to_string();
            assert!(err.contains("ldap.url"), "{err}");
            jail.create_file("typo.toml", &section.replace("user_base", "userbase"))?;
            assert!(ServerConfig::load(Some(Path::new("typo.toml")), &FlagOverrides::default()).is_err());
            jail.create_file("role.toml", &section.replace("\"admin\"", "\"root\""))?;
            assert!(ServerConfig::load(Some(Path::new("role.toml")), &FlagOverrides::default()).is_err());
            Ok(())
        });
    }

    // figment's Jail closure returns figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    #[test]
    fn layers_and_errors_name_their_source() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("server.toml", "listen = \"0.0.0.0:9000\"\ntimezone = \"Asia/Shanghai\"\n")?;
            jail.set_env("CMDB_SERVER_LISTEN", "127.0.0.1:9001");
            let flags = FlagOverrides { database_url: Some("sqlite://x.db".into()), ..Default::default() };
            let config = ServerConfig::load(Some(Path::new("server.toml")), &flags).map_err(|e| e.to_string())?;
            assert_eq!(config.listen, "127.0.0.1:9001", "environment beats file");
            assert_eq!(config.timezone, "Asia/Shanghai");
            assert_eq!(config.database_url, "sqlite://x.db", "flags beat everything");

            jail.create_file("bad.toml", "clock_window_secs = \"soon\"\n")?;
            let err = ServerConfig::load(Some(Path::new("bad.toml")), &FlagOverrides::default())
                .expect_err("bad type")
                .to_string();
            assert!(err.contains("bad.toml"), "{err}");

            jail.set_env("CMDB_SERVER_COLOUR", "red");
            let err = ServerConfig::load(Some(Path::new("server.toml")), &FlagOverrides::default())
                .expect_err("unknown")
                .to_string();
            assert!(err.contains("colour") && err.contains("CMDB_SERVER_"), "{err}");
            Ok(())
        });
    }
}
