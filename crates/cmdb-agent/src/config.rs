//! The agent's configuration: typed, layered, and able to say where every value came from.
//!
//! Layers, weakest first: built-in defaults < the TOML file (`/etc/cmdb/agent.toml`, `--config`)
//! < environment variables (`CMDB_` prefix, `__` between nested keys: `CMDB_SERVER_URL`,
//! `CMDB_SSH__CONCURRENCY`) < command-line flags. Each layer is checked on its own before the
//! layers are merged, so a typo or a bad value is reported against the file, variable or flag
//! that supplied it, never against the merged whole.
//!
//! TOML cannot hold both `collectors = [...]` and `[collectors.NAME]` tables (one key, two
//! types), so the list of collectors to run is `collectors` and external collectors are declared
//! under `[external.NAME]`; an external runs only when its name is also listed in `collectors`.
//!
//! ```toml
//! server_url = "https://cmdb.example.com"
//! key_file = "/etc/cmdb/agent-key.toml"
//! collectors = ["basic", "cpu", "board", "memory", "disk", "nic", "raid"]
//!
//! [external.raid]
//! command = "/usr/local/bin/raid-facts --json"
//! timeout = "20s"
//! needs_root = true
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use cmdb_collect::external::ExternalCollector;
use cmdb_collect::transport::salt::SaltOptions;
use cmdb_collect::transport::ssh::{HostKeyPolicy, SshAuth, SshOptions};
use cmdb_collect::{Become, CollectOptions, Plan, PlanError};
use figment::providers::Format;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

/// Where the configuration file is looked for when neither `--config` nor `CMDB_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/cmdb/agent.toml";

/// Prefix of the environment variables that configure the agent.
pub const ENV_PREFIX: &str = "CMDB_";

/// Variables with the `CMDB_` prefix that are read directly rather than being configuration keys:
/// the config path, the log filter, and secrets that must never sit in a file or on a command line.
pub const ENV_NOT_CONFIG: &[&str] = &["CMDB_CONFIG", "CMDB_LOG", "CMDB_SSH_PASSWORD", "CMDB_SSH_KEY_PASSPHRASE"];

/// Environment variable holding the SSH password (never accepted from a flag or the file).
pub const ENV_SSH_PASSWORD: &str = "CMDB_SSH_PASSWORD";

/// Environment variable holding the passphrase of `ssh.key_file`.
pub const ENV_SSH_KEY_PASSPHRASE: &str = "CMDB_SSH_KEY_PASSPHRASE";

/// The smallest `remote_output_limit` accepted: below it even a small host's report would not fit.
pub const MIN_REMOTE_OUTPUT_LIMIT: usize = 64 * 1024;

const NAME_DEFAULT: &str = "built-in default";
const NAME_ENV: &str = "environment variable";
const NAME_FLAG: &str = "command-line flag";

/// A secret string: never printed by `Debug`, only by explicit access.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// The whole agent configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Base URL of the cmdb server, e.g. "https://cmdb.example.com"; reports go to {server_url}/api/v1/reports.
    pub server_url: Option<String>,
    /// Public id of this agent's key (the server prints it with the secret).
    pub key_id: Option<String>,
    /// The key's secret; prefer `secret_file` or `key_file`, which keep it out of configs and process listings.
    pub secret: Option<Secret>,
    /// A file holding only the secret (surrounding whitespace is ignored); should be mode 0600.
    pub secret_file: Option<PathBuf>,
    /// A TOML file with `key_id` and `secret`, as the server writes it at first start (data/agent-key.toml).
    pub key_file: Option<PathBuf>,
    /// Collectors to run, in report order: built-in names and names declared under `[external]`.
    #[serde(deserialize_with = "string_or_list")]
    pub collectors: Vec<String>,
    /// External collectors by section name; each runs only when also listed in `collectors`.
    pub external: BTreeMap<String, ExternalConfig>,
    /// Interfaces left out of the nic section: exact names, or prefixes ending in `*`.
    #[serde(deserialize_with = "string_or_list")]
    pub nic_exclude: Vec<String>,
    /// How root-only commands run: "none" (as the current user) or "sudo" (through `sudo -n`).
    #[serde(rename = "become")]
    pub become_root: Become,
    /// Where the agent keeps its state: last delivered host names and rejected reports.
    pub state_dir: PathBuf,
    /// Where undeliverable reports wait for the server; defaults to `{state_dir}/spool`.
    pub spool_dir: Option<PathBuf>,
    /// Most bytes one host may send back over SSH or Salt (stdout and stderr together); a host past it fails.
    pub remote_output_limit: usize,
    /// Agentless collection over SSH (`cmdb-agent ssh`).
    pub ssh: SshConfig,
    /// Collection through SaltStack (`cmdb-agent salt`).
    pub salt: SaltConfig,
    /// How reports are sent to the server.
    pub delivery: DeliveryConfig,
    /// Limits of the spool of undeliverable reports.
    pub spool: SpoolConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            server_url: None,
            key_id: None,
            secret: None,
            secret_file: None,
            key_file: None,
            collectors: cmdb_model::report::BUILTIN_SECTIONS.iter().map(|s| (*s).to_owned()).collect(),
            external: BTreeMap::new(),
            nic_exclude: CollectOptions::default().nic_exclude,
            become_root: Become::None,
            state_dir: PathBuf::from("/var/lib/cmdb-agent"),
            spool_dir: None,
            remote_output_limit: cmdb_collect::transport::DEFAULT_OUTPUT_LIMIT,
            ssh: SshConfig::default(),
            salt: SaltConfig::default(),
            delivery: DeliveryConfig::default(),
            spool: SpoolConfig::default(),
        }
    }
}

/// One external collector: a command that prints a JSON object, which becomes its section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    /// The shell command line run on each host (locally, over SSH or through Salt).
    pub command: String,
    /// Kill the command after this long, e.g. "10s".
    #[serde(default = "default_external_timeout")]
    pub timeout: HumanDuration,
    /// True when the command needs root: it then runs through `sudo -n` when `become = "sudo"`.
    #[serde(default, alias = "become")]
    pub needs_root: bool,
}

fn default_external_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

/// `[ssh]`: agentless collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshConfig {
    /// Login user when the inventory does not name one; defaults to the current user.
    pub user: Option<String>,
    /// SSH port when the inventory does not name one.
    pub port: u16,
    /// Private key (OpenSSH format); its passphrase, if any, comes from CMDB_SSH_KEY_PASSPHRASE.
    pub key_file: Option<PathBuf>,
    /// A file holding the login password (the password may also come from CMDB_SSH_PASSWORD).
    pub password_file: Option<PathBuf>,
    /// The known_hosts file host keys are checked against; defaults to ~/.ssh/known_hosts.
    pub known_hosts: Option<PathBuf>,
    /// "strict" refuses hosts missing from known_hosts; "accept-new" records them (a changed key still fails).
    pub host_key_policy: HostKeyPolicyConfig,
    /// Limit for TCP connect, handshake and authentication.
    pub connect_timeout: HumanDuration,
    /// Limit for running the bundled probe script on one host.
    pub command_timeout: HumanDuration,
    /// Hosts collected at the same time.
    pub concurrency: usize,
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            user: None,
            port: 22,
            key_file: None,
            password_file: None,
            known_hosts: None,
            host_key_policy: HostKeyPolicyConfig::Strict,
            connect_timeout: HumanDuration::secs(10),
            command_timeout: HumanDuration::secs(120),
            concurrency: 64,
        }
    }
}

/// The unknown-host policy as written in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicyConfig {
    /// Refuse hosts whose key is not in known_hosts.
    #[default]
    Strict,
    /// Record the key of a host seen for the first time.
    AcceptNew,
}

impl From<HostKeyPolicyConfig> for HostKeyPolicy {
    fn from(policy: HostKeyPolicyConfig) -> Self {
        match policy {
            HostKeyPolicyConfig::Strict => HostKeyPolicy::Strict,
            HostKeyPolicyConfig::AcceptNew => HostKeyPolicy::AcceptNew,
        }
    }
}

/// `[salt]`: collection through a Salt master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SaltConfig {
    /// The `salt` executable.
    pub salt_bin: PathBuf,
    /// Extra arguments placed before the target, e.g. ["-c", "/etc/salt"].
    #[serde(deserialize_with = "string_or_list")]
    pub extra_args: Vec<String>,
    /// Minions per `salt` invocation.
    pub batch_size: usize,
    /// Salt's own `--timeout` for minions to answer.
    pub timeout: HumanDuration,
}

impl Default for SaltConfig {
    fn default() -> Self {
        SaltConfig {
            salt_bin: PathBuf::from("salt"),
            extra_args: Vec::new(),
            batch_size: 100,
            timeout: HumanDuration::secs(60),
        }
    }
}

/// `[delivery]`: sending reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Limit for one HTTP request, connect included.
    pub timeout: HumanDuration,
    /// Further attempts after a failed one (5xx, 408, 429, connection errors) before the report is spooled.
    pub retries: u32,
    /// Wait before the first retry; doubled per retry, with jitter.
    pub backoff: HumanDuration,
    /// Longest wait between two attempts, Retry-After included.
    pub max_backoff: HumanDuration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: HumanDuration::secs(30),
            retries: 4,
            backoff: HumanDuration::secs(1),
            max_backoff: HumanDuration::secs(60),
        }
    }
}

/// `[spool]`: bounds of the on-disk queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Most reports kept waiting; the oldest are dropped (and logged) beyond it.
    pub max_reports: usize,
    /// Reports older than this are dropped (and logged) instead of sent.
    pub max_age: HumanDuration,
    /// Most refused reports kept in `{state_dir}/rejected` for inspection.
    pub max_rejected: usize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { max_reports: 5000, max_age: HumanDuration::secs(14 * 86400), max_rejected: 200 }
    }
}

/// Accepts a list, or (from an environment variable) a comma-separated string.
fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct ListVisitor;

    impl<'de> de::Visitor<'de> for ListVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings or a comma-separated string")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<String>, E> {
            Ok(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                items.push(item);
            }
            Ok(items)
        }
    }

    deserializer.deserialize_any(ListVisitor)
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The configuration file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag.
    Flag(String),
    /// Computed from other values (the text says how).
    Derived(String),
    /// Not set anywhere.
    Unset,
}

impl Origin {
    /// Layer precedence: a higher number overrides a lower one.
    fn rank(&self) -> u8 {
        match self {
            Origin::Default | Origin::Derived(_) | Origin::Unset => 0,
            Origin::File(_) => 1,
            Origin::Env(_) => 2,
            Origin::Flag(_) => 3,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Derived(how) => write!(f, "derived: {how}"),
            Origin::Unset => f.write_str("not set"),
        }
    }
}

/// Why the configuration cannot be used. Every variant names the file, variable or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config`/`CMDB_CONFIG` named a file that cannot be read.
    #[error("cannot read configuration file {path}: {source}")]
    FileUnreadable {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A value is malformed, has the wrong type, or a key is unknown.
    #[error("{origin}: {message}")]
    Invalid {
        /// The file (and key), variable or flag that supplied it.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A secret file cannot be read or is empty.
    #[error("{what} {path} (from {origin}): {message}")]
    SecretFile {
        /// "secret_file", "key_file", "ssh.password_file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Where the path was configured.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
    /// Something needed for this command is not configured.
    #[error("{0}")]
    Missing(String),
}

/// One command-line flag that sets a configuration key.
#[derive(Debug, Clone)]
pub struct FlagSetting {
    /// Dotted configuration key, e.g. "ssh.concurrency".
    pub key: &'static str,
    /// The flag as typed, e.g. "--concurrency".
    pub flag: &'static str,
    /// The value.
    pub value: Value,
}

impl FlagSetting {
    /// A flag setting `key` to `value`.
    pub fn new(key: &'static str, flag: &'static str, value: impl Into<Value>) -> Self {
        FlagSetting { key, flag, value: value.into() }
    }
}

/// Everything the configuration is built from, so tests can supply each layer without touching
/// the process environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigInputs {
    /// The file named by `--config`/`CMDB_CONFIG` (must exist); `None` reads
    /// [`DEFAULT_CONFIG_PATH`] when it exists.
    pub file: Option<PathBuf>,
    /// Environment variables (all of them; only the `CMDB_` ones are used).
    pub env: Vec<(String, String)>,
    /// Flags given on the command line.
    pub flags: Vec<FlagSetting>,
}

impl ConfigInputs {
    /// Inputs from the real process environment.
    pub fn from_process(file: Option<PathBuf>, flags: Vec<FlagSetting>) -> Self {
        let env =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
        ConfigInputs { file, env, flags }
    }
}

/// A figment provider for one layer whose metadata can name the exact variable or flag of a key.
#[derive(Clone)]
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn insert_nested(dict: &mut Dict, keys: &[String], value: Value) {
    match keys {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict.entry(first.clone()).or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_nested(inner, rest, value);
            }
        }
    }
}

fn env_var_name(keys: &[&str]) -> String {
    let joined: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
    format!("{ENV_PREFIX}{}", joined.join("__"))
}

fn defaults_layer() -> Result<Layer, ConfigError> {
    let value = Value::serialize(AgentConfig::default())
        .map_err(|e| ConfigError::Invalid { origin: NAME_DEFAULT.to_owned(), message: e.to_string() })?;
    let dict = value.into_dict().unwrap_or_default();
    Ok(Layer { metadata: Metadata::named(NAME_DEFAULT), dict })
}

fn env_layer(env: &[(String, String)]) -> Result<Layer, ConfigError> {
    let mut dict = Dict::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        if ENV_NOT_CONFIG.contains(&name.as_str()) {
            continue;
        }
        let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError::Invalid {
                origin: format!("environment variable {name}"),
                message: "empty key segment (nested keys are separated by exactly two underscores)".to_owned(),
            });
        }
        // Values stay strings: a secret such as "0042" must not turn into the number 42. Numbers
        // and booleans are converted when the typed config is read (lossy extraction).
        insert_nested(&mut dict, &keys, Value::from(value.clone()));
    }
    let metadata = Metadata::named(NAME_ENV).interpolater(|_: &Profile, keys: &[&str]| env_var_name(keys));
    Ok(Layer { metadata, dict })
}

fn flag_layer(flags: &[FlagSetting]) -> Layer {
    let mut dict = Dict::new();
    let mut names: Vec<(String, String)> = Vec::new();
    for flag in flags {
        let keys: Vec<String> = flag.key.split('.').map(str::to_owned).collect();
        insert_nested(&mut dict, &keys, flag.value.clone());
        names.push((flag.key.to_owned(), flag.flag.to_owned()));
    }
    let metadata = Metadata::named(NAME_FLAG).interpolater(move |_: &Profile, keys: &[&str]| {
        let key = keys.join(".");
        names
            .iter()
            .find(|(k, _)| *k == key || key.starts_with(&format!("{k}.")))
            .map(|(_, flag)| flag.clone())
            .unwrap_or_else(|| format!("flag for {key}"))
    });
    Layer { metadata, dict }
}

/// Describes where a figment error points: the file and key, the variable, or the flag.
fn describe_error(error: &figment::Error) -> ConfigError {
    let mut keys: Vec<String> = error.path.clone();
    // figment's path already ends with the unknown field for some values (a top-level key from
    // the environment) and not for others (a key inside a table of a file).
    if let figment::error::Kind::UnknownField(field, _) = &error.kind
        && keys.last() != Some(field)
    {
        keys.push(field.clone());
    }
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let origin = match &error.metadata {
        Some(md) if md.name == NAME_ENV => match key_refs.is_empty() {
            true => "environment".to_owned(),
            false => format!("environment variable {}", env_var_name(&key_refs)),
        },
        Some(md) if md.name == NAME_FLAG => md.interpolate(&Profile::Default, &key_refs),
        Some(md) => {
            let place = match md.source.as_ref().and_then(Source::file_path) {
                Some(path) => path.display().to_string(),
                None => md.name.to_string(),
            };
            if key_refs.is_empty() { place } else { format!("{place}: key `{}`", key_refs.join(".")) }
        }
        None => "configuration".to_owned(),
    };
    let mut message = error.kind.to_string();
    if let figment::error::Kind::UnknownField(field, expected) = &error.kind {
        message = format!("unknown key `{field}`; known keys here: {}", expected.join(", "));
    }
    ConfigError::Invalid { origin, message }
}

/// The configuration after layering, with the provenance of every value.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The effective configuration.
    pub config: AgentConfig,
    figment: Figment,
    env: Vec<(String, String)>,
}

/// Builds the effective configuration from its layers.
pub fn load(inputs: &ConfigInputs) -> Result<LoadedConfig, ConfigError> {
    let defaults = defaults_layer()?;
    let mut figment = Figment::from(defaults);

    let (path, explicit) = match &inputs.file {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    match std::fs::File::open(&path) {
        Ok(_) => {
            let check = Figment::from(figment::providers::Toml::file_exact(&path));
            check.extract_lossy::<AgentConfig>().map_err(|e| describe_error(&e))?;
            figment = figment.merge(figment::providers::Toml::file_exact(&path));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
        Err(source) => return Err(ConfigError::FileUnreadable { path, source }),
    }

    let env = env_layer(&inputs.env)?;
    Figment::from(env.clone()).extract_lossy::<AgentConfig>().map_err(|e| describe_error(&e))?;
    figment = figment.merge(env);

    let flags = flag_layer(&inputs.flags);
    Figment::from(flags.clone()).extract_lossy::<AgentConfig>().map_err(|e| describe_error(&e))?;
    figment = figment.merge(flags);

    let config: AgentConfig = figment.extract_lossy().map_err(|e| describe_error(&e))?;
    let loaded = LoadedConfig { config, figment, env: inputs.env.clone() };
    loaded.validate()?;
    Ok(loaded)
}

/// A usable key: id and secret, with where they came from.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The key's public id.
    pub key_id: String,
    /// The key's secret.
    pub secret: Secret,
    /// Where the secret came from (for messages; never the secret itself).
    pub origin: String,
}

/// The key file the server writes at first start. Other keys the server may add are ignored: the
/// file belongs to the server, not to this configuration.
#[derive(Deserialize)]
struct KeyFile {
    key_id: String,
    secret: String,
}

impl LoadedConfig {
    /// Where the value at dotted `key` came from.
    pub fn origin(&self, key: &str) -> Origin {
        // Unset options are present in the defaults layer as empty values.
        match self.figment.find_value(key) {
            Ok(Value::Empty(..)) | Err(_) => return Origin::Unset,
            Ok(_) => {}
        }
        let Some(md) = self.figment.find_metadata(key) else { return Origin::Unset };
        let keys: Vec<&str> = key.split('.').collect();
        if md.name == NAME_DEFAULT {
            Origin::Default
        } else if md.name == NAME_ENV {
            Origin::Env(env_var_name(&keys))
        } else if md.name == NAME_FLAG {
            Origin::Flag(md.interpolate(&Profile::Default, &keys))
        } else {
            match md.source.as_ref().and_then(Source::file_path) {
                Some(path) => Origin::File(path.to_owned()),
                None => Origin::Derived(md.name.to_string()),
            }
        }
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let origin = match self.origin(key) {
            Origin::File(path) => format!("{}: key `{key}`", path.display()),
            Origin::Env(var) => format!("environment variable {var}"),
            Origin::Flag(flag) => format!("flag {flag}"),
            other => format!("{key} ({other})"),
        };
        ConfigError::Invalid { origin, message: message.into() }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        if let Some(url) = &c.server_url {
            parse_server_url(url).map_err(|message| self.invalid("server_url", message))?;
        }
        if c.collectors.is_empty() {
            return Err(self.invalid("collectors", "the list of collectors is empty"));
        }
        if c.ssh.concurrency == 0 {
            return Err(self.invalid("ssh.concurrency", "must be at least 1"));
        }
        if c.salt.batch_size == 0 {
            return Err(self.invalid("salt.batch_size", "must be at least 1"));
        }
        if c.remote_output_limit < MIN_REMOTE_OUTPUT_LIMIT {
            return Err(self.invalid(
                "remote_output_limit",
                format!("must be at least {MIN_REMOTE_OUTPUT_LIMIT} bytes (the default is 16 MiB)"),
            ));
        }
        if c.spool.max_reports == 0 {
            return Err(self.invalid("spool.max_reports", "must be at least 1"));
        }
        for (name, external) in &c.external {
            if external.command.trim().is_empty() {
                return Err(self.invalid(&format!("external.{name}.command"), "must not be empty"));
            }
        }
        Ok(())
    }

    /// The spool directory: `spool_dir`, else `{state_dir}/spool`.
    pub fn spool_dir(&self) -> PathBuf {
        self.config.spool_dir.clone().unwrap_or_else(|| self.config.state_dir.join("spool"))
    }

    /// When nobody chose `state_dir` (no file, variable or flag set it), what to say about the
    /// default, so a report waiting in the spool is found; `None` when it was chosen.
    pub fn default_state_notice(&self) -> Option<String> {
        matches!(self.origin("state_dir"), Origin::Default).then(|| {
            format!(
                "state_dir is not set: using the default {} (spool {}); set state_dir or --state-dir to choose",
                self.config.state_dir.display(),
                self.spool_dir().display()
            )
        })
    }

    /// Where refused reports are kept for inspection.
    pub fn rejected_dir(&self) -> PathBuf {
        self.config.state_dir.join("rejected")
    }

    /// The declared external collectors.
    pub fn externals(&self) -> Vec<ExternalCollector> {
        self.config
            .external
            .iter()
            .map(|(name, e)| ExternalCollector {
                name: name.clone(),
                command: e.command.clone(),
                timeout: e.timeout.get(),
                needs_root: e.needs_root,
            })
            .collect()
    }

    /// The collection plan for `collectors` (unknown names are an error naming where the list came from).
    pub fn plan(&self) -> Result<Plan, ConfigError> {
        let options = CollectOptions { nic_exclude: self.config.nic_exclude.clone() };
        Plan::new(&self.config.collectors, &self.externals(), options).map_err(|e| match e {
            PlanError::BadExternalName(ref name) => self.invalid(&format!("external.{name}"), e.to_string()),
            other => self.invalid("collectors", other.to_string()),
        })
    }

    /// The server URL, or an error saying how to set it.
    pub fn server_url(&self) -> Result<reqwest::Url, ConfigError> {
        let url = self.config.server_url.as_deref().ok_or_else(|| {
            ConfigError::Missing(
                "server_url is not set: set it in the configuration file, CMDB_SERVER_URL or --server-url".to_owned(),
            )
        })?;
        parse_server_url(url).map_err(|message| self.invalid("server_url", message))
    }

    /// The agent key. Of `secret`, `secret_file` and `key_file`, the one set by the strongest layer
    /// wins (a flag over the environment over the file); two set by the same layer are an error.
    pub fn credentials(&self) -> Result<Credentials, ConfigError> {
        let c = &self.config;
        let mut candidates: Vec<(&'static str, Origin)> = Vec::new();
        if c.secret.is_some() {
            candidates.push(("secret", self.origin("secret")));
        }
        if c.secret_file.is_some() {
            candidates.push(("secret_file", self.origin("secret_file")));
        }
        if c.key_file.is_some() {
            candidates.push(("key_file", self.origin("key_file")));
        }
        let Some(best_rank) = candidates.iter().map(|(_, o)| o.rank()).max() else {
            return Err(ConfigError::Missing(
                "no agent key: set key_file (the server's agent-key.toml), or key_id with secret_file or secret \
                 (CMDB_KEY_FILE, CMDB_KEY_ID, CMDB_SECRET_FILE, CMDB_SECRET)"
                    .to_owned(),
            ));
        };
        let best: Vec<&(&str, Origin)> = candidates.iter().filter(|(_, o)| o.rank() == best_rank).collect();
        if best.len() > 1 {
            let list: Vec<String> = best.iter().map(|(k, o)| format!("{k} ({o})")).collect();
            return Err(ConfigError::Missing(format!(
                "the agent key is configured twice: {}; keep only one",
                list.join(" and ")
            )));
        }
        let (which, origin) = best[0].clone();
        let explicit_key_id = c.key_id.clone();
        match which {
            "secret" => {
                let secret = c.secret.clone().unwrap_or_else(|| Secret::new(""));
                let key_id = self.require_key_id(explicit_key_id, "secret", &origin)?;
                self.nonempty_secret(&secret, "secret", &origin)?;
                Ok(Credentials { key_id, secret, origin: format!("secret ({origin})") })
            }
            "secret_file" => {
                let path = c.secret_file.clone().unwrap_or_default();
                let text = read_secret_file("secret_file", &path, &origin)?;
                let key_id = self.require_key_id(explicit_key_id, "secret_file", &origin)?;
                Ok(Credentials {
                    key_id,
                    secret: Secret::new(text.trim()),
                    origin: format!("secret_file {} ({origin})", path.display()),
                })
            }
            _ => {
                let path = c.key_file.clone().unwrap_or_default();
                read_secret_file("key_file", &path, &origin)?;
                let key: KeyFile =
                    Figment::from(figment::providers::Toml::file_exact(&path)).extract().map_err(|e| {
                        ConfigError::SecretFile {
                            what: "key_file",
                            path: path.clone(),
                            origin: origin.clone(),
                            message: format!("expected key_id and secret: {}", e.kind),
                        }
                    })?;
                if let Some(id) = explicit_key_id
                    && id != key.key_id
                {
                    return Err(ConfigError::Missing(format!(
                        "key_id {id:?} ({}) differs from the key_id {:?} in key_file {}; remove one",
                        self.origin("key_id"),
                        key.key_id,
                        path.display()
                    )));
                }
                let secret = Secret::new(key.secret.trim());
                self.nonempty_secret(&secret, "key_file", &origin)?;
                Ok(Credentials {
                    key_id: key.key_id,
                    secret,
                    origin: format!("key_file {} ({origin})", path.display()),
                })
            }
        }
    }

    fn require_key_id(&self, key_id: Option<String>, with: &str, origin: &Origin) -> Result<String, ConfigError> {
        match key_id {
            Some(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
            _ => Err(ConfigError::Missing(format!(
                "{with} is set ({origin}) but key_id is not: set key_id (CMDB_KEY_ID, --key-id) or use key_file"
            ))),
        }
    }

    fn nonempty_secret(&self, secret: &Secret, what: &str, origin: &Origin) -> Result<(), ConfigError> {
        if secret.expose().trim().is_empty() {
            return Err(ConfigError::Missing(format!("{what} ({origin}) gives an empty secret")));
        }
        Ok(())
    }

    fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// SSH settings for a run. Credentials, in order: a password (ssh.password_file or
    /// CMDB_SSH_PASSWORD), ssh.key_file, the running ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
    pub fn ssh_options(&self) -> Result<SshOptions, ConfigError> {
        let s = &self.config.ssh;
        let home = self.env_var("HOME").map(PathBuf::from);
        let password = match (&s.password_file, self.env_var(ENV_SSH_PASSWORD)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Missing(format!(
                    "both ssh.password_file ({}) and {ENV_SSH_PASSWORD} are set; keep only one",
                    self.origin("ssh.password_file")
                )));
            }
            (Some(path), None) => {
                let text = read_secret_file("ssh.password_file", path, &self.origin("ssh.password_file"))?;
                Some(text.trim_end_matches(['\n', '\r']).to_owned())
            }
            (None, Some(password)) => Some(password.to_owned()),
            (None, None) => None,
        };
        let auth = match (password, &s.key_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Missing(format!(
                    "both a password and ssh.key_file ({}) are set; keep only one",
                    self.origin("ssh.key_file")
                )));
            }
            (Some(password), None) => SshAuth::Password(password),
            (None, Some(path)) => SshAuth::KeyFile {
                path: path.clone(),
                passphrase: self.env_var(ENV_SSH_KEY_PASSPHRASE).map(str::to_owned),
            },
            (None, None) if self.env_var("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()) => SshAuth::Agent,
            (None, None) => {
                let found = home.as_ref().and_then(|home| {
                    ["id_ed25519", "id_ecdsa", "id_rsa"]
                        .iter()
                        .map(|name| home.join(".ssh").join(name))
                        .find(|p| p.is_file())
                });
                match found {
                    Some(path) => {
                        SshAuth::KeyFile { path, passphrase: self.env_var(ENV_SSH_KEY_PASSPHRASE).map(str::to_owned) }
                    }
                    None => {
                        return Err(ConfigError::Missing(
                            "no SSH credentials: set ssh.key_file (--ssh-key), ssh.password_file or \
                             CMDB_SSH_PASSWORD, or start an ssh-agent"
                                .to_owned(),
                        ));
                    }
                }
            }
        };
        let known_hosts = match (&s.known_hosts, &home) {
            (Some(path), _) => path.clone(),
            (None, Some(home)) => home.join(".ssh").join("known_hosts"),
            (None, None) => {
                return Err(ConfigError::Missing(
                    "ssh.known_hosts is not set and $HOME is unknown: set ssh.known_hosts (--known-hosts)".to_owned(),
                ));
            }
        };
        let user = s
            .user
            .clone()
            .or_else(|| self.env_var("USER").map(str::to_owned))
            .or_else(|| self.env_var("LOGNAME").map(str::to_owned))
            .unwrap_or_else(|| "root".to_owned());
        Ok(SshOptions {
            user,
            auth,
            known_hosts,
            host_key_policy: s.host_key_policy.into(),
            connect_timeout: s.connect_timeout.get(),
            command_timeout: s.command_timeout.get(),
            output_limit: self.config.remote_output_limit,
        })
    }

    /// Salt settings for a run.
    pub fn salt_options(&self) -> SaltOptions {
        let s = &self.config.salt;
        SaltOptions {
            salt_bin: s.salt_bin.clone(),
            extra_args: s.extra_args.clone(),
            timeout: s.timeout.get(),
            batch_size: s.batch_size,
            output_limit: self.config.remote_output_limit,
        }
    }

    /// Every effective value as (dotted key, TOML value or a note, origin), secrets redacted.
    pub fn describe(&self) -> Vec<(String, String, Origin)> {
        let mut shown = self.config.clone();
        if shown.secret.is_some() {
            shown.secret = Some(Secret::new("(redacted)"));
        }
        let mut rows = Vec::new();
        let value = serde_json::to_value(&shown).unwrap_or(serde_json::Value::Null);
        self.flatten("", &value, &mut rows);
        for row in &mut rows {
            if row.0 == "spool_dir" && row.2 == Origin::Unset {
                *row = (row.0.clone(), toml_value(&self.spool_dir().display().to_string().into()), {
                    Origin::Derived("{state_dir}/spool".to_owned())
                });
            }
        }
        rows
    }

    fn flatten(&self, prefix: &str, value: &serde_json::Value, rows: &mut Vec<(String, String, Origin)>) {
        match value {
            serde_json::Value::Object(map) if !(prefix == "external" && map.is_empty()) => {
                for (key, inner) in map {
                    let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    self.flatten(&path, inner, rows);
                }
            }
            serde_json::Value::Null => rows.push((prefix.to_owned(), "(not set)".to_owned(), Origin::Unset)),
            other => rows.push((prefix.to_owned(), toml_value(other), self.origin(prefix))),
        }
    }
}

/// Renders a JSON value as TOML would write it.
fn toml_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", inner.join(", "))
        }
        serde_json::Value::Object(map) if map.is_empty() => "{}".to_owned(),
        other => other.to_string(),
    }
}

/// Checks `server_url`: http or https, a host, no query or fragment.
pub fn parse_server_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("URL {text:?} must start with https:// (or http://)"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("URL {text:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("URL {text:?} must not have a query or fragment"));
    }
    Ok(url)
}

/// Reads a file holding a secret, warning when others may read it.
fn read_secret_file(what: &'static str, path: &Path, origin: &Origin) -> Result<String, ConfigError> {
    let err =
        |message: String| ConfigError::SecretFile { what, path: path.to_owned(), origin: origin.clone(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    if text.trim().is_empty() {
        return Err(err("the file is empty".to_owned()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(file = %path.display(), "{what} is readable by group or others; chmod 600 it");
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }

    #[test]
    fn the_example_configuration_loads_and_sets_every_section() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.toml.example");
        let loaded =
            load(&ConfigInputs { file: Some(example.clone()), ..ConfigInputs::default() }).expect("example loads");
        let origin = Origin::File(example);
        for key in [
            "server_url",
            "key_file",
            "collectors",
            "nic_exclude",
            "become",
            "state_dir",
            "remote_output_limit",
            "external.raid.command",
            "ssh.concurrency",
            "ssh.host_key_policy",
            "salt.extra_args",
            "delivery.retries",
            "spool.max_age",
        ] {
            assert_eq!(loaded.origin(key), origin, "{key} is not shown in the example");
        }
        loaded.plan().expect("the example's collectors plan");
    }

    #[test]
    fn defaults_apply_without_any_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inputs = ConfigInputs { file: Some(write(dir.path(), "agent.toml", "")), ..ConfigInputs::default() };
        let loaded = load(&inputs).expect("loads");
        assert_eq!(loaded.config, AgentConfig::default());
        assert_eq!(loaded.origin("ssh.concurrency"), Origin::Default);
        assert_eq!(loaded.origin("server_url"), Origin::Unset);
        assert_eq!(loaded.spool_dir(), PathBuf::from("/var/lib/cmdb-agent/spool"));
        let notice = loaded.default_state_notice().expect("the default is said");
        assert!(notice.contains("/var/lib/cmdb-agent (spool /var/lib/cmdb-agent/spool)"), "{notice}");
        let chosen = ConfigInputs {
            file: Some(write(dir.path(), "chosen.toml", "state_dir = \"/srv/cmdb\"\n")),
            ..ConfigInputs::default()
        };
        assert_eq!(load(&chosen).expect("loads").default_state_notice(), None, "a chosen directory goes unsaid");
    }

    #[test]
    fn file_then_env_then_flag_with_provenance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(
            dir.path(),
            "agent.toml",
            "server_url = \"https://file.example\"\nkey_id = \"from-file\"\nstate_dir = \"/srv/state\"\n\
             [ssh]\nconcurrency = 8\nuser = \"file-user\"\n[delivery]\nretries = 2\n",
        );
        let inputs = ConfigInputs {
            file: Some(file.clone()),
            env: env(&[
                ("CMDB_SERVER_URL", "https://env.example"),
                ("CMDB_SSH__CONCURRENCY", "16"),
                ("CMDB_COLLECTORS", "cpu, disk"),
                ("CMDB_SSH_PASSWORD", "not a config key"),
                ("PATH", "/usr/bin"),
            ]),
            flags: vec![FlagSetting::new("ssh.concurrency", "--concurrency", 32u64)],
        };
        let loaded = load(&inputs).expect("loads");
        let c = &loaded.config;
        assert_eq!(c.server_url.as_deref(), Some("https://env.example"));
        assert_eq!(c.key_id.as_deref(), Some("from-file"));
        assert_eq!(c.ssh.concurrency, 32);
        assert_eq!(c.ssh.user.as_deref(), Some("file-user"));
        assert_eq!(c.delivery.retries, 2);
        assert_eq!(c.collectors, vec!["cpu".to_owned(), "disk".to_owned()]);
        assert_eq!(loaded.origin("server_url"), Origin::Env("CMDB_SERVER_URL".into()));
        assert_eq!(loaded.origin("key_id"), Origin::File(file.clone()));
        assert_eq!(loaded.origin("ssh.concurrency"), Origin::Flag("--concurrency".into()));
        assert_eq!(loaded.origin("ssh.user"), Origin::File(file));
        assert_eq!(loaded.origin("ssh.port"), Origin::Default);
        assert_eq!(loaded.origin("collectors"), Origin::Env("CMDB_COLLECTORS".into()));
        assert_eq!(loaded.spool_dir(), PathBuf::from("/srv/state/spool"));
        let rows = loaded.describe();
        let row = rows.iter().find(|r| r.0 == "ssh.concurrency").expect("row");
        assert_eq!((row.1.as_str(), &row.2), ("32", &Origin::Flag("--concurrency".into())));
        let spool = rows.iter().find(|r| r.0 == "spool_dir").expect("row");
        assert!(matches!(spool.2, Origin::Derived(_)), "{spool:?}");
    }

    #[test]
    fn remote_output_limit_reaches_both_transports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let defaults = load(&ConfigInputs { file: Some(write(dir.path(), "a.toml", "")), ..ConfigInputs::default() })
            .expect("loads");
        assert_eq!(defaults.salt_options().output_limit, 16 * 1024 * 1024);
        let file = write(
            dir.path(),
            "b.toml",
            "remote_output_limit = 1048576\n[ssh]\nkey_file = \"/nonexistent/key\"\nknown_hosts = \"/nonexistent/kh\"\n",
        );
        let loaded = load(&ConfigInputs { file: Some(file), ..ConfigInputs::default() }).expect("loads");
        assert_eq!(loaded.salt_options().output_limit, 1_048_576);
        assert_eq!(loaded.ssh_options().expect("ssh options").output_limit, 1_048_576);
        let text = load(&ConfigInputs {
            file: Some(write(dir.path(), "c.toml", "")),
            env: env(&[("CMDB_REMOTE_OUTPUT_LIMIT", "1000")]),
            ..ConfigInputs::default()
        })
        .expect_err("too small")
        .to_string();
        assert!(text.contains("CMDB_REMOTE_OUTPUT_LIMIT") && text.contains("at least 65536"), "{text}");
    }

    #[test]
    fn unknown_file_key_names_the_file_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), "agent.toml", "[ssh]\nconcurency = 8\n");
        let err = load(&ConfigInputs { file: Some(file.clone()), ..ConfigInputs::default() }).expect_err("unknown");
        let text = err.to_string();
        assert!(text.contains(&file.display().to_string()), "{text}");
        assert!(text.contains("ssh.concurency") && text.contains("concurrency"), "{text}");
    }

    #[test]
    fn unknown_env_keys_name_the_exact_variable() {
        for (name, expected) in [("CMDB_LISTEN", "CMDB_LISTEN"), ("CMDB_SSH__CONCURENCY", "CMDB_SSH__CONCURENCY")] {
            let err = load(&ConfigInputs { env: env(&[(name, "8")]), ..ConfigInputs::default() }).expect_err("unknown");
            let text = err.to_string();
            assert!(text.contains(&format!("environment variable {expected}:")), "{text}");
        }
    }

    #[test]
    fn bad_values_name_their_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), "agent.toml", "[delivery]\ntimeout = \"ten\"\n");
        let text = load(&ConfigInputs { file: Some(file.clone()), ..ConfigInputs::default() })
            .expect_err("bad duration")
            .to_string();
        assert!(text.contains(&file.display().to_string()) && text.contains("\"ten\""), "{text}");

        let empty = write(dir.path(), "empty.toml", "");
        let text = load(&ConfigInputs {
            file: Some(empty.clone()),
            env: env(&[("CMDB_SSH__CONCURRENCY", "lots")]),
            ..ConfigInputs::default()
        })
        .expect_err("bad number")
        .to_string();
        assert!(text.contains("CMDB_SSH__CONCURRENCY"), "{text}");

        let text = load(&ConfigInputs {
            file: Some(empty.clone()),
            env: env(&[("CMDB_SERVR_URL", "https://x")]),
            ..ConfigInputs::default()
        })
        .expect_err("unknown variable")
        .to_string();
        assert!(text.contains("CMDB_SERVR_URL"), "{text}");

        let text = load(&ConfigInputs {
            file: Some(empty.clone()),
            flags: vec![FlagSetting::new("server_url", "--server-url", "ftp://x")],
            ..ConfigInputs::default()
        })
        .expect_err("bad scheme")
        .to_string();
        assert!(text.contains("--server-url") && text.contains("https://"), "{text}");

        let text = load(&ConfigInputs {
            file: Some(empty),
            flags: vec![FlagSetting::new("become", "--become", "root")],
            ..ConfigInputs::default()
        })
        .expect_err("bad become")
        .to_string();
        assert!(text.contains("--become"), "{text}");

        let missing = dir.path().join("missing.toml");
        let text = load(&ConfigInputs { file: Some(missing.clone()), ..ConfigInputs::default() })
            .expect_err("missing explicit file")
            .to_string();
        assert!(text.contains(&missing.display().to_string()), "{text}");
    }

    #[test]
    fn unknown_collector_lists_known_ones_and_names_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), "agent.toml", "collectors = [\"cpu\", \"gpu\"]\n");
        let loaded = load(&ConfigInputs { file: Some(file.clone()), ..ConfigInputs::default() }).expect("loads");
        let text = loaded.plan().err().expect("unknown collector").to_string();
        assert!(text.contains("\"gpu\"") && text.contains("basic, cpu, board, memory, disk, nic"), "{text}");
        assert!(text.contains(&file.display().to_string()), "{text}");
    }

    #[test]
    fn externals_are_declared_apart_from_the_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(
            dir.path(),
            "agent.toml",
            "collectors = [\"cpu\", \"raid\"]\n[external.raid]\ncommand = \"raid-facts\"\ntimeout = \"20s\"\nneeds_root = true\n",
        );
        let loaded = load(&ConfigInputs { file: Some(file), ..ConfigInputs::default() }).expect("loads");
        let externals = loaded.externals();
        assert_eq!(externals.len(), 1);
        assert_eq!(externals[0].timeout, std::time::Duration::from_secs(20));
        assert!(externals[0].needs_root);
        assert_eq!(loaded.plan().expect("plans").collector_names(), vec!["cpu".to_owned(), "raid".to_owned()]);
    }

    #[test]
    fn credentials_from_key_file_secret_file_and_layers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_file = write(dir.path(), "agent-key.toml", "key_id = \"k-1\"\nsecret = \"0042abc\"\ncreated = 1\n");
        let secret_file = write(dir.path(), "secret", "s3cr3t\n");
        let file = write(dir.path(), "agent.toml", &format!("key_file = {:?}\n", key_file.display().to_string()));
        let loaded = load(&ConfigInputs { file: Some(file.clone()), ..ConfigInputs::default() }).expect("loads");
        let creds = loaded.credentials().expect("key file");
        assert_eq!((creds.key_id.as_str(), creds.secret.expose()), ("k-1", "0042abc"));

        // The environment overrides the file's key_file with its own secret.
        let loaded = load(&ConfigInputs {
            file: Some(file.clone()),
            env: env(&[("CMDB_KEY_ID", "k-2"), ("CMDB_SECRET", "0042")]),
            ..ConfigInputs::default()
        })
        .expect("loads");
        let creds = loaded.credentials().expect("env secret");
        assert_eq!((creds.key_id.as_str(), creds.secret.expose()), ("k-2", "0042"), "kept as a string");
        assert!(!format!("{creds:?}").contains("0042\""), "Debug must not print the secret");

        // Two ways in one layer are ambiguous.
        let loaded = load(&ConfigInputs {
            file: Some(file.clone()),
            env: env(&[("CMDB_KEY_ID", "k-2"), ("CMDB_SECRET", "x"), ("CMDB_SECRET_FILE", "/nonexistent")]),
            ..ConfigInputs::default()
        })
        .expect("loads");
        let text = loaded.credentials().expect_err("ambiguous").to_string();
        assert!(text.contains("CMDB_SECRET") && text.contains("CMDB_SECRET_FILE"), "{text}");

        let loaded = load(&ConfigInputs {
            file: Some(write(dir.path(), "b.toml", "key_id = \"k\"\n")),
            env: env(&[("CMDB_SECRET_FILE", &secret_file.display().to_string())]),
            ..ConfigInputs::default()
        })
        .expect("loads");
        assert_eq!(loaded.credentials().expect("secret file").secret.expose(), "s3cr3t");

        let loaded = load(&ConfigInputs {
            file: Some(write(dir.path(), "c.toml", "key_id = \"k\"\nsecret_file = \"/nonexistent/secret\"\n")),
            ..ConfigInputs::default()
        })
        .expect("loads");
        let text = loaded.credentials().expect_err("missing secret file").to_string();
        assert!(text.contains("/nonexistent/secret") && text.contains("c.toml"), "{text}");
    }
}
