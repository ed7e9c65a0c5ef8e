//! The `cmdb-agent` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cmdb_agent::commands::execute(cmdb_agent::cli::Cli::parse())
}
