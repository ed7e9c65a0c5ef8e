//! The `cmdb-server` binary: parses the command line and hands over to the library.

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
    /// Print the effective configuration as TOML.
    Config,
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
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
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
        Command::Config => {
            let mut shown = config.clone();
            shown.database_url = redact(&shown.database_url);
            if shown.legacy.key.is_some() {
                shown.legacy.key = Some("***".to_owned());
            }
            print!("{}", toml_string(&shown)?);
            Ok(())
        }
        Command::AgentKey(command) => {
            let db = open(&config).await?;
            match command {
                KeyCommand::Create { scope, name } => {
                    let scope = match scope {
                        ScopeArg::Host => KeyScope::Host,
                        ScopeArg::Collector => KeyScope::Collector,
                    };
                    let (key_id, secret) = auth::create_agent_key(db.writer(), scope, &name).await?;
                    println!("key_id = \"{key_id}\"\nsecret = \"{secret}\"");
                    eprintln!("The secret is shown once; store it where the agent reads it (mode 0600).");
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
                    println!("revoked {key_id}");
                }
            }
            Ok(())
        }
        Command::Token(command) => {
            let db = open(&config).await?;
            match command {
                TokenCommand::Create { role, name } => {
                    let role = match role {
                        RoleArg::Viewer => Role::Viewer,
                        RoleArg::Editor => Role::Editor,
                        RoleArg::Admin => Role::Admin,
                    };
                    println!("{}", auth::create_token(db.writer(), &name, role).await?);
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
                    println!("revoked token {id}");
                }
            }
            Ok(())
        }
    }
}

fn toml_string(config: &ServerConfig) -> Result<String> {
    // figment reads TOML; printing it back as JSON-ish TOML keeps the dependency list short.
    let value = serde_json::to_value(config)?;
    let mut out = String::new();
    let mut tables = Vec::new();
    if let serde_json::Value::Object(map) = value {
        for (key, value) in map {
            match value {
                serde_json::Value::Object(table) => tables.push((key, table)),
                serde_json::Value::Null => out.push_str(&format!("# {key} (unset)\n")),
                other => out.push_str(&format!("{key} = {other}\n")),
            }
        }
        for (name, table) in tables {
            out.push_str(&format!("\n[{name}]\n"));
            for (key, value) in table {
                match value {
                    serde_json::Value::Null => out.push_str(&format!("# {key} (unset)\n")),
                    other => out.push_str(&format!("{key} = {other}\n")),
                }
            }
        }
    }
    Ok(out)
}

async fn serve(config: ServerConfig) -> Result<()> {
    let db = open(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    if let Some(first) = admin::first_start(&db, &config.data_dir).await.context("first-start setup")? {
        println!("First start on an empty database: created an admin token and an agent key for this machine.");
        println!("  admin token: {}  (saved to {})", first.admin_token, first.token_file.display());
        println!("  agent key:   {}  (id and secret saved to {})", first.key_id, first.key_file.display());
        println!("These are shown once; the files are readable only by their owner.");
        let _ = first.secret;
    }
    tracing::info!(
        listen = %config.listen,
        database = %redact(&config.database_url),
        durability = %db.durability().await.unwrap_or_default(),
        "cmdb-server ready at {}",
        config.public_url()
    );
    println!("cmdb-server listening on {}", config.public_url());
    let state = AppState::new(db, config);
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
