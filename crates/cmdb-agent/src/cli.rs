//! The command line. Flags that set configuration keys become the strongest configuration layer
//! (see [`Cli::flag_settings`]); the rest select what to do.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::FlagSetting;

/// cmdb's agent and agentless collector.
#[derive(Debug, Parser)]
#[command(name = "cmdb-agent", version, about, long_about = None, max_term_width = 110)]
pub struct Cli {
    /// Configuration file [default: /etc/cmdb/agent.toml when it exists]
    #[arg(long, global = true, env = "CMDB_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Base URL of the cmdb server (server_url)
    #[arg(long, global = true, value_name = "URL")]
    pub server_url: Option<String>,

    /// The agent key's id (key_id)
    #[arg(long, global = true, value_name = "ID")]
    pub key_id: Option<String>,

    /// TOML file with key_id and secret, as the server writes it (key_file)
    #[arg(long, global = true, value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// File holding the key's secret (secret_file); there is no flag for the secret itself
    #[arg(long, global = true, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,

    /// Directory for state and rejected reports (state_dir)
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Directory for reports waiting for the server (spool_dir)
    #[arg(long, global = true, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// How root-only commands run (become)
    #[arg(long = "become", global = true, value_enum, value_name = "HOW")]
    pub become_root: Option<BecomeArg>,

    /// More log output (-v debug, -vv trace); CMDB_LOG=<filter> also works
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--become`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BecomeArg {
    /// Run everything as the current user.
    None,
    /// Run root-only commands through `sudo -n`.
    Sudo,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collect this machine and print the report as JSON on stdout (no network)
    Collect {
        /// Collectors to run instead of the configured list (comma-separated)
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        only: Vec<String>,
        /// Read saved command outputs from DIR instead of running commands
        #[arg(long, value_name = "DIR")]
        replay: Option<PathBuf>,
    },
    /// Collect this machine and deliver the report (for the systemd timer)
    Run {
        /// Collectors to run instead of the configured list (comma-separated)
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        only: Vec<String>,
        /// Deliver a report built from saved outputs in DIR instead (testing, migrations)
        #[arg(long, value_name = "DIR")]
        replay: Option<PathBuf>,
    },
    /// Collect many hosts over SSH and deliver each report as soon as it is ready
    Ssh(SshArgs),
    /// Collect minions through the salt CLI and deliver their reports
    Salt(SaltArgs),
    /// List every collector, the commands it runs, which need root, and sudoers lines
    Collectors {
        /// User the sudoers lines are written for [default: ssh.user, else "cmdb"]
        #[arg(long, value_name = "USER")]
        sudo_user: Option<String>,
    },
    /// Print the effective configuration and where each value comes from
    Config,
    /// Inspect or send the reports waiting for the server
    Spool {
        /// list or flush.
        #[command(subcommand)]
        action: SpoolAction,
    },
}

/// `spool` actions.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum SpoolAction {
    /// Show the waiting reports, oldest first
    List,
    /// Send the waiting reports now, oldest first
    Flush,
}

/// Options shared by the fan-out commands.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Collectors to run instead of the configured list (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub only: Vec<String>,
    /// Do not deliver: print each report as one JSON line on stdout (or write them to --output)
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run, write DIR/<host>.json instead of printing
    #[arg(long, value_name = "DIR", requires = "dry_run")]
    pub output: Option<PathBuf>,
    /// No progress bar even on a terminal
    #[arg(long)]
    pub no_progress: bool,
}

/// `ssh`.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// Where the hosts come from.
    #[command(flatten)]
    pub source: SshSource,
    /// Hosts collected at the same time (ssh.concurrency)
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Login user when the inventory names none (ssh.user)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Private key file (ssh.key_file)
    #[arg(long, value_name = "PATH")]
    pub ssh_key: Option<PathBuf>,
    /// known_hosts file to check host keys against (ssh.known_hosts)
    #[arg(long, value_name = "PATH")]
    pub known_hosts: Option<PathBuf>,
    /// Record the keys of hosts seen for the first time (ssh.host_key_policy = "accept-new")
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Shared fan-out options.
    #[command(flatten)]
    pub fanout: FanoutArgs,
}

/// `ssh` host source: exactly one.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SshSource {
    /// A host list (host[:port] per line) or an Ansible INI inventory
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Ask the server which hosts to collect (GET /api/v1/collect-targets)
    #[arg(long)]
    pub from_server: bool,
}

/// `salt`.
#[derive(Debug, Args)]
pub struct SaltArgs {
    /// Where the minions come from.
    #[command(flatten)]
    pub source: SaltSource,
    /// Minions per salt call (salt.batch_size)
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Shared fan-out options.
    #[command(flatten)]
    pub fanout: FanoutArgs,
}

/// `salt` minion source: exactly one.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SaltSource {
    /// Minion ids, comma-separated (a salt list expression, as for `salt -L`)
    #[arg(long, value_name = "EXPR")]
    pub target: Option<String>,
    /// Ask the server which minions to collect (each target's salt_minion_id)
    #[arg(long)]
    pub from_server: bool,
}

fn path_value(path: &std::path::Path) -> String {
    path.display().to_string()
}

impl Cli {
    /// The configuration keys set by flags, each naming its flag for provenance and errors.
    pub fn flag_settings(&self) -> Vec<FlagSetting> {
        let mut flags = Vec::new();
        if let Some(v) = &self.server_url {
            flags.push(FlagSetting::new("server_url", "--server-url", v.clone()));
        }
        if let Some(v) = &self.key_id {
            flags.push(FlagSetting::new("key_id", "--key-id", v.clone()));
        }
        if let Some(v) = &self.key_file {
            flags.push(FlagSetting::new("key_file", "--key-file", path_value(v)));
        }
        if let Some(v) = &self.secret_file {
            flags.push(FlagSetting::new("secret_file", "--secret-file", path_value(v)));
        }
        if let Some(v) = &self.state_dir {
            flags.push(FlagSetting::new("state_dir", "--state-dir", path_value(v)));
        }
        if let Some(v) = &self.spool_dir {
            flags.push(FlagSetting::new("spool_dir", "--spool-dir", path_value(v)));
        }
        if let Some(v) = self.become_root {
            let text = match v {
                BecomeArg::None => "none",
                BecomeArg::Sudo => "sudo",
            };
            flags.push(FlagSetting::new("become", "--become", text));
        }
        let only = match &self.command {
            Command::Collect { only, .. } | Command::Run { only, .. } => Some(only),
            Command::Ssh(args) => Some(&args.fanout.only),
            Command::Salt(args) => Some(&args.fanout.only),
            _ => None,
        };
        if let Some(only) = only.filter(|o| !o.is_empty()) {
            flags.push(FlagSetting::new("collectors", "--only", only.clone()));
        }
        if let Command::Ssh(args) = &self.command {
            if let Some(n) = args.concurrency {
                flags.push(FlagSetting::new("ssh.concurrency", "--concurrency", n as u64));
            }
            if let Some(v) = &args.user {
                flags.push(FlagSetting::new("ssh.user", "--user", v.clone()));
            }
            if let Some(v) = &args.ssh_key {
                flags.push(FlagSetting::new("ssh.key_file", "--ssh-key", path_value(v)));
            }
            if let Some(v) = &args.known_hosts {
                flags.push(FlagSetting::new("ssh.known_hosts", "--known-hosts", path_value(v)));
            }
            if args.accept_new_host_keys {
                flags.push(FlagSetting::new("ssh.host_key_policy", "--accept-new-host-keys", "accept-new"));
            }
        }
        if let Command::Salt(args) = &self.command
            && let Some(n) = args.batch_size
        {
            flags.push(FlagSetting::new("salt.batch_size", "--batch-size", n as u64));
        }
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ssh_needs_exactly_one_source() {
        assert!(Cli::try_parse_from(["cmdb-agent", "ssh"]).is_err());
        assert!(Cli::try_parse_from(["cmdb-agent", "ssh", "--inventory", "x", "--from-server"]).is_err());
        let cli =
            Cli::try_parse_from(["cmdb-agent", "ssh", "--inventory", "x", "--concurrency", "5", "--only", "cpu,disk"])
                .expect("parses");
        let flags = cli.flag_settings();
        assert!(flags.iter().any(|f| f.key == "ssh.concurrency" && f.flag == "--concurrency"));
        assert!(flags.iter().any(|f| f.key == "collectors" && f.flag == "--only"));
    }

    #[test]
    fn output_requires_dry_run() {
        assert!(Cli::try_parse_from(["cmdb-agent", "salt", "--target", "m1", "--output", "d"]).is_err());
        assert!(Cli::try_parse_from(["cmdb-agent", "salt", "--target", "m1", "--dry-run", "--output", "d"]).is_ok());
    }
}
