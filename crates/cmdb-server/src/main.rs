//! The `cmdb-server` binary: parses the command line and hands over to the library.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use cmdb_server::auth::{self, KeyScope, Role};
use cmdb_server::config::{FlagOverrides, ServerConfig};
use cmdb_server::db::{Db, PoolSettings};
use cmdb_server::{AppState, admin};

/// cmdb-server: asset inventory with complete history. Without a command it serves.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (default: /etc/cmdb/server.toml when it exists).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides `listen`).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (overrides `database_url`).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Directory for first-start credentials (overrides `data_dir`).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and UI (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage agent keys.
    #[command(subcommand)]
    AgentKey(KeyCommand),
    /// Manage bearer tokens for people and scripts.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage users of the web UI (passwords are read from CMDB_USER_PASSWORD, a prompt or stdin;
    /// never from the command line).
    #[command(subcommand)]
    User(UserCommand),
    /// Print the effective configuration as TOML.
    Config,
    /// Check every asset's history (safe beside a running server): its change records form an
    /// intact hash chain and replay to exactly its stored state; prints the digest of the chain
    /// heads (as of --as-of) recomputed from the records; exits non-zero naming each asset and its
    /// first bad record, or when the digest differs from --expect.
    Verify {
        /// The instant whose digest to recompute: RFC 3339, or a date (the end of that day in the
        /// configured time zone). Default: every record.
        #[arg(long)]
        as_of: Option<String>,
        /// The digest kept from then (the audit workbook's About sheet, the audit CSVs'
        /// `X-Cmdb-History-Digest`, or `GET /api/v1/audit/digest`); a different one fails.
        #[arg(long, requires = "as_of")]
        expect: Option<String>,
    },
    /// Write the whole database to FILE (a tar of NDJSON tables, mode 0600) from one consistent
    /// snapshot; safe beside a running server, and restorable into either backend.
    Backup {
        /// The backup file (written to a temporary file beside it, then renamed).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Restore a backup into the database (created and migrated first); refuses a database at
    /// another schema version, and one that is not empty unless --force. Stop the servers first.
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Replace everything in a database that is not empty.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Create {
        /// Role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Login name.
        #[arg(long)]
        name: String,
        /// Generate a password, print it once, and require a change at the first login.
        #[arg(long)]
        generate: bool,
    },
    /// List users (never their passwords).
    List,
    /// Set a user's password (ends their sessions).
    Passwd {
        /// Login name.
        #[arg(long)]
        name: String,
        /// Generate a password, print it once, and require a change at the next login.
        #[arg(long)]
        generate: bool,
    },
    /// Change a user's role.
    SetRole {
        /// Login name.
        #[arg(long)]
        name: String,
        /// New role.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Disable a user (ends their sessions).
    Disable {
        /// Login name.
        #[arg(long)]
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        /// Login name.
        #[arg(long)]
        name: String,
    },
}

/// A new password: `CMDB_USER_PASSWORD`, else typed twice at a prompt, else one line of stdin.
fn read_new_password() -> Result<String> {
    if let Ok(password) = std::env::var("CMDB_USER_PASSWORD")
        && !password.is_empty()
    {
        return Ok(password);
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let second = rpassword::prompt_password("Password again: ").context("reading the password")?;
        if first != second {
            bail!("the passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password given: set CMDB_USER_PASSWORD, type it at the prompt, pipe it on stdin, or use --generate");
    }
    Ok(password)
}

fn role_of(role: RoleArg) -> Role {
    match role {
        RoleArg::Viewer => Role::Viewer,
        RoleArg::Editor => Role::Editor,
        RoleArg::Admin => Role::Admin,
    }
}

async fn user_command(config: &ServerConfig, command: UserCommand) -> Result<()> {
    use cmdb_server::service::audit_log as audit;
    use cmdb_server::web::users;
    let db = open(config).await?;
    let find = |name: String| {
        let db = db.clone();
        async move {
            let name = users::normalize_name(&name)?;
            users::find(&db, &name).await?.with_context(|| format!("no user named {name}"))
        }
    };
    match command {
        UserCommand::Create { role, name, generate } => {
            let password = if generate { users::generate_password() } else { read_new_password()? };
            // Whoever runs this chose (or generated) the password: the user changes it first.
            let user = users::create(&db, &name, role_of(role), &password, true).await?;
            audit::record(&db, "cli", "user.create", &format!("user {} role {}", user.name, user.role.as_str()))
                .await?;
            println!("created user {} with role {}", user.name, user.role.as_str());
            if generate {
                println!("password: {password}");
                eprintln!("The password is shown once.");
            }
            eprintln!("{} must change the password at the first login.", user.name);
        }
        UserCommand::List => {
            for user in users::list(&db).await? {
                println!(
                    "{}\t{}\tcreated={}\tlast_login={}\t{}",
                    user.name,
                    user.role.as_str(),
                    user.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    user.last_login_at.map_or("-".to_owned(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    if user.disabled_at.is_some() { "disabled" } else { "active" }
                );
            }
        }
        UserCommand::Passwd { name, generate } => {
            let user = find(name).await?;
            let password = if generate { users::generate_password() } else { read_new_password()? };
            users::set_password(&db, user.id, &password, true).await?;
            audit::record(&db, "cli", "user.password_reset", &format!("user {}", user.name)).await?;
            println!("password of {} changed; their sessions have ended", user.name);
            if generate {
                println!("password: {password}");
                eprintln!("The password is shown once.");
            }
            eprintln!("{} must change it at the next login.", user.name);
        }
        UserCommand::SetRole { name, role } => {
            let user = find(name).await?;
            let updated = users::set_role(&db, user.id, role_of(role)).await?;
            audit::record(
                &db,
                "cli",
                "user.role",
                &format!("user {} role {} -> {}", user.name, user.role.as_str(), updated.role.as_str()),
            )
            .await?;
            println!("{} is now {}", user.name, updated.role.as_str());
        }
        UserCommand::Disable { name } => {
            let user = find(name).await?;
            users::set_disabled(&db, user.id, true).await?;
            audit::record(&db, "cli", "user.disable", &format!("user {}", user.name)).await?;
            println!("disabled {}", user.name);
        }
        UserCommand::Enable { name } => {
            let user = find(name).await?;
            users::set_disabled(&db, user.id, false).await?;
            audit::record(&db, "cli", "user.enable", &format!("user {}", user.name)).await?;
            println!("enabled {}", user.name);
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScopeArg {
    /// One machine in agent mode (bound to the first asset it reports as).
    Host,
    /// An SSH or Salt worker (any host).
    Collector,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Viewer,
    Editor,
    Admin,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create a key; prints its id and secret once.
    Create {
        /// What the key may report for.
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// A label (e.g. the machine or worker name).
        #[arg(long, default_value = "")]
        name: String,
        /// Bind a host key to this asset now, instead of to whatever its first report matches
        /// (the only way to tie a new key to an asset that has board or machine identity).
        #[arg(long)]
        asset: Option<i64>,
        /// Write the agent's key file (key_id and secret, mode 0600) here instead of printing
        /// the secret; an existing file is never overwritten. Point the agent's key_file at it.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// Create the key even when an active key already has this name.
        #[arg(long)]
        force: bool,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key id (ak_...).
        key_id: String,
    },
    /// Give a key a new secret (prints it once); the old secret stops working.
    Rotate {
        /// The key id (ak_...).
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; prints it once.
    Create {
        /// Role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A label (who or what uses it).
        #[arg(long)]
        name: String,
        /// Create the token even when an active token already has this name.
        #[arg(long)]
        force: bool,
    },
    /// List tokens (never the tokens themselves).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token's id from `token list`.
        id: i64,
    },
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CMDB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

async fn open(config: &ServerConfig) -> Result<Db> {
    let settings = PoolSettings {
        postgres_connections: config.pool.postgres_connections,
        sqlite_readers: config.pool.sqlite_readers,
        acquire_timeout: std::time::Duration::from_secs(config.pool.acquire_timeout_secs),
    };
    Db::open(&config.database_url, &settings).await.with_context(|| format!("opening {}", redact(&config.database_url)))
}

/// The database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// mimalloc: the exports and as-of rebuilds allocate millions of small values from several
/// threads, where glibc's allocator spent a third of the audit workbook's time (perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let flags = FlagOverrides {
        listen: cli.listen.clone(),
        database_url: cli.database_url.clone(),
        data_dir: cli.data_dir.clone(),
    };
    let config = ServerConfig::load(cli.config.as_deref(), &flags).context("invalid configuration")?;
    init_logging(&config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            open(&config).await?;
            println!("migrations applied to {}", redact(&config.database_url));
            Ok(())
        }
        Command::User(command) => user_command(&config, command).await,
        Command::Verify { as_of, expect } => {
            let at = match as_of.as_deref() {
                Some(text) => Some(
                    cmdb_server::service::Calendar::of(&config)
                        .as_of("as_of", text)
                        .map_err(|e| anyhow::anyhow!("--as-of: {e}"))?
                        .requested,
                ),
                None => None,
            };
            if let Some(expect) = &expect
                && !cmdb_model::chain::is_hash(expect)
            {
                anyhow::bail!("--expect {expect:?} is not a digest (64 lowercase hex digits)");
            }
            let db = open(&config).await?;
            let started = std::time::Instant::now();
            let mut last = 0u64;
            let found = cmdb_server::service::verify::verify(&db, at, &mut |done| {
                if done >= last + 10_000 {
                    eprintln!("  {done} assets checked");
                    last = done;
                }
            })
            .await
            .context("verify")?;
            for m in &found.mismatches {
                let record = m.change_id.map_or_else(String::new, |id| format!(" (first bad record: change {id})"));
                println!("asset {}: {}{record}", m.asset_id, m.reason);
            }
            let instant = at.map_or_else(
                || "every record".to_owned(),
                |t| format!("as of {}", t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            );
            println!("history digest {instant} ({} chains): {}", found.chains, found.digest);
            println!(
                "verified {} assets and {} change records in {:.1} s: {}",
                found.assets,
                found.changes,
                started.elapsed().as_secs_f64(),
                if found.mismatches.is_empty() {
                    "every chain is intact and the history rebuilds every stored state".to_owned()
                } else {
                    format!("{} mismatch(es)", found.mismatches.len())
                }
            );
            let digest_differs = expect.as_ref().is_some_and(|expect| *expect != found.digest);
            if let Some(expect) = expect.as_ref().filter(|_| digest_differs) {
                println!("the digest differs from the one expected ({expect}): the history up to then was changed");
            }
            if found.mismatches.is_empty() && !digest_differs { Ok(()) } else { std::process::exit(1) }
        }
        Command::Backup { to } => {
            let db = open(&config).await?;
            let done = cmdb_server::backup::backup(&db, &to)
                .await
                .with_context(|| format!("backing up {} to {}", redact(&config.database_url), to.display()))?;
            println!(
                "backed up {} tables, {} rows, {} bytes to {} in {:.1} s",
                done.manifest.tables.len(),
                done.manifest.rows(),
                done.bytes,
                to.display(),
                done.seconds
            );
            Ok(())
        }
        Command::Restore { from, force } => {
            let db = open(&config).await?;
            let done = cmdb_server::backup::restore(&db, &from, force)
                .await
                .with_context(|| format!("restoring {} into {}", from.display(), redact(&config.database_url)))?;
            println!(
                "restored {} tables, {} rows, {} bytes from {} (a {} backup of {}) in {:.1} s",
                done.manifest.tables.len(),
                done.manifest.rows(),
                done.bytes,
                from.display(),
                done.manifest.backend,
                done.manifest.created_at,
                done.seconds
            );
            Ok(())
        }
        Command::Config => {
            let mut shown = config.clone();
            shown.database_url = redact(&shown.database_url);
            if shown.legacy.key.is_some() {
                shown.legacy.key = Some("***".to_owned());
            }
            if shown.metrics.token.is_some() {
                shown.metrics.token = Some("***".to_owned());
            }
            print!("{}", toml_string(&shown)?);
            Ok(())
        }
        Command::AgentKey(command) => {
            let db = open(&config).await?;
            let secret_key = admin::open_secrets(&db, &config).await.context("secrets key")?;
            match command {
                KeyCommand::Create { scope, name, asset, out, force } => {
                    if !force && admin::name_taken(&db, false, &name).await? {
                        bail!("an active agent key is already named {name:?}; choose another name or pass --force");
                    }
                    // Refuse before creating a key that would be lost.
                    if let Some(path) = &out
                        && path.exists()
                    {
                        bail!("{} exists; choose another --out (a key file is never overwritten)", path.display());
                    }
                    let scope = match scope {
                        ScopeArg::Host => KeyScope::Host,
                        ScopeArg::Collector => KeyScope::Collector,
                    };
                    if asset.is_some() && scope != KeyScope::Host {
                        bail!("--asset binds host keys only; a collector key reports for any host");
                    }
                    if let Some(asset) = asset
                        && !admin::asset_exists(&db, asset).await?
                    {
                        bail!("no asset {asset}");
                    }
                    let (key_id, secret) =
                        auth::create_agent_key(db.writer(), &secret_key, scope, &name, asset).await?;
                    let bound = asset.map(|a| format!(" bound to asset {a}")).unwrap_or_default();
                    audit(&db, "agent_key.create", &format!("{key_id} scope {} name {name:?}{bound}", scope.as_str()))
                        .await;
                    match out {
                        Some(path) => {
                            cmdb_server::file_modes::create_private(&path, &admin::key_file_text(&key_id, &secret))
                                .with_context(|| format!("cannot write the key file {}", path.display()))?;
                            println!("{key_id}");
                            eprintln!(
                                "Wrote {} (mode 0600). Copy it to the agent host and set key_file = \"<its path>\" \
                                 in the agent's configuration (or pass --key-file).",
                                path.display()
                            );
                        }
                        None => {
                            print!("{}", admin::key_file_text(&key_id, &secret));
                            eprintln!(
                                "The secret is shown once. Save the lines above as the agent's key file (mode 0600, \
                                 e.g. /etc/cmdb/agent-key.toml) and set key_file to it; --out FILE writes it for you."
                            );
                        }
                    }
                }
                KeyCommand::Rotate { key_id } => {
                    let Some(secret) = auth::rotate_agent_key(db.writer(), &secret_key, &key_id).await? else {
                        bail!("no active agent key {key_id}");
                    };
                    audit(&db, "agent_key.rotate", &key_id).await;
                    println!("key_id = \"{key_id}\"\nsecret = \"{secret}\"");
                    eprintln!(
                        "The secret is shown once; the old one is refused at once on PostgreSQL (running servers hear \
                         of the change) and within key_cache_secs by a running server on SQLite."
                    );
                }
                KeyCommand::List => {
                    for key in admin::list_keys(&db).await? {
                        println!(
                            "{}\t{}\t{}\tasset={}\tcreated={}\t{}",
                            key.key_id,
                            key.scope,
                            key.name,
                            key.asset_id.map_or("-".to_owned(), |a| a.to_string()),
                            key.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                            key.revoked_at.map_or("active".to_owned(), |r| format!("revoked {}", r.format("%Y-%m-%d")))
                        );
                    }
                }
                KeyCommand::Revoke { key_id } => {
                    if !admin::revoke_key(&db, &key_id).await? {
                        bail!("no active agent key {key_id}");
                    }
                    audit(&db, "agent_key.revoke", &key_id).await;
                    println!("revoked {key_id}");
                }
            }
            Ok(())
        }
        Command::Token(command) => {
            let db = open(&config).await?;
            match command {
                TokenCommand::Create { role, name, force } => {
                    if !force && admin::name_taken(&db, true, &name).await? {
                        bail!("an active token is already named {name:?}; choose another name or pass --force");
                    }
                    let role = match role {
                        RoleArg::Viewer => Role::Viewer,
                        RoleArg::Editor => Role::Editor,
                        RoleArg::Admin => Role::Admin,
                    };
                    let token = auth::create_token(db.writer(), &name, role).await?;
                    audit(&db, "token.create", &format!("name {name:?} role {}", role.as_str())).await;
                    println!("{token}");
                    eprintln!("The token is shown once.");
                }
                TokenCommand::List => {
                    for token in admin::list_tokens(&db).await? {
                        println!(
                            "{}\t{}\t{}\tcreated={}\t{}",
                            token.id,
                            token.role,
                            token.name,
                            token.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                            token
                                .revoked_at
                                .map_or("active".to_owned(), |r| format!("revoked {}", r.format("%Y-%m-%d")))
                        );
                    }
                }
                TokenCommand::Revoke { id } => {
                    if !admin::revoke_token(&db, id).await? {
                        bail!("no active token {id}");
                    }
                    audit(&db, "token.revoke", &format!("id {id}")).await;
                    println!("revoked token {id}");
                }
            }
            Ok(())
        }
    }
}

/// Records an administrative action taken from the command line in the audit log.
async fn audit(db: &Db, action: &str, detail: &str) {
    if let Err(e) = cmdb_server::service::audit_log::record(db, "cli", action, detail).await {
        eprintln!("warning: could not write the audit log: {e}");
    }
}

fn toml_string(config: &ServerConfig) -> Result<String> {
    Ok(toml::to_string(config)?)
}

async fn serve(config: ServerConfig) -> Result<()> {
    cmdb_server::file_modes::private_dir(&config.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    let db = open(&config).await?;
    let secret_key = admin::open_secrets(&db, &config).await.context("secrets key")?;
    // A broken [ldap] section (a missing or world-readable password file, a bad CA file) stops the
    // start here rather than at the first directory login.
    if let Some(ldap) = &config.ldap {
        cmdb_server::directory::Directory::new(ldap).context("[ldap]")?;
        tracing::info!(url = %ldap.url, "directory (LDAP) login is on");
    }
    if config.legacy.enabled {
        let networks: Vec<String> = config.legacy.allow_from.iter().map(ToString::to_string).collect();
        tracing::warn!(
            allow_from = %networks.join(","),
            "the legacy endpoint POST /api/asset is on: its body is unsigned and one key serves the whole fleet; \
             turn it off once the old clients are replaced"
        );
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    // Secrets go to the terminal of the person starting the server, never into a journal or a
    // log collector that captures stdout: there only the files that hold them are named.
    let terminal = std::io::stdout().is_terminal();
    if let Some(first) = admin::first_start(&db, &config.data_dir, &secret_key).await.context("first-start setup")? {
        println!("First start on an empty database: created an admin token and an agent key for this machine.");
        if terminal {
            println!("  admin token: {}  (saved to {})", first.admin_token, first.token_file.display());
        } else {
            println!("  admin token: saved to {}", first.token_file.display());
        }
        println!("  agent key:   {}  (id and secret saved to {})", first.key_id, first.key_file.display());
        println!("The files are readable only by their owner.");
        let _ = first.secret;
    }
    if let Some(first) =
        cmdb_server::web::users::first_admin(&db, &config.data_dir).await.context("first-start setup")?
    {
        println!("Created the web UI administrator {:?}.", first.name);
        if terminal {
            println!(
                "  password:    {}  (saved to {}; you must change it at the first login)",
                first.password,
                first.password_file.display()
            );
        } else {
            println!(
                "  password:    saved to {} (you must change it at the first login)",
                first.password_file.display()
            );
        }
        println!("  log in at    {}/login", config.public_url().trim_end_matches('/'));
    }
    tracing::info!(
        listen = %config.listen,
        database = %redact(&config.database_url),
        durability = %db.durability().await.unwrap_or_default(),
        "cmdb-server ready at {}",
        config.public_url()
    );
    println!("cmdb-server listening on {}", config.public_url());
    let state = AppState::new(db, config, secret_key);
    cmdb_server::serve(state, listener).await.context("server failed")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://cmdb:hunter2@db/cmdb"), "postgres://cmdb:***@db/cmdb");
        assert_eq!(redact("postgres://cmdb@db/cmdb"), "postgres://cmdb@db/cmdb");
        assert_eq!(redact("sqlite://data/cmdb.db"), "sqlite://data/cmdb.db");
    }
}
