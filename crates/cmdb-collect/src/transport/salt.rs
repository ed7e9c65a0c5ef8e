//! Salt transport (skeleton; being implemented): `salt --out=json --static -L m1,m2,... cmd.run_all`.

use std::path::PathBuf;
use std::time::Duration;

use super::{HostFailure, ScriptOutput};

/// How to call the salt CLI.
#[derive(Debug, Clone)]
pub struct SaltOptions {
    /// The `salt` executable.
    pub salt_bin: PathBuf,
    /// Extra arguments before the target (e.g. `-c /etc/salt`).
    pub extra_args: Vec<String>,
    /// Salt's own `--timeout` for minions to answer.
    pub timeout: Duration,
    /// Minions per `salt` invocation.
    pub batch_size: usize,
}

/// Runs `script` on every minion in `minions` (in batches) and returns each minion's result.
/// A minion that does not answer is a failed host.
pub async fn run(
    options: &SaltOptions,
    minions: &[String],
    script: &str,
) -> Vec<(String, Result<ScriptOutput, HostFailure>)> {
    let _ = (options, script);
    minions
        .iter()
        .map(|m| (m.clone(), Err(HostFailure::Other("Salt transport not implemented yet".to_owned()))))
        .collect()
}
