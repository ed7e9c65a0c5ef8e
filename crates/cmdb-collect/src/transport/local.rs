//! Local transport: the bundled script through `sh -s` on this machine.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{HostFailure, ScriptOutput};

/// Runs `script` with `sh -s`, feeding it on stdin, and kills it after `timeout`.
pub async fn run(script: &str, timeout: Duration) -> Result<ScriptOutput, HostFailure> {
    let mut child = Command::new("sh")
        .arg("-s")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HostFailure::Other(format!("cannot start sh: {e}")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| HostFailure::Other("sh has no stdin".to_owned()))?;
    let script = script.as_bytes().to_vec();
    // Write the script concurrently with reading the output, so a large script cannot deadlock
    // against a full stdout pipe.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&script).await;
        let _ = stdin.shutdown().await;
    });
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| HostFailure::Timeout(format!("the probe script ran longer than {timeout:?}")))?
        .map_err(|e| HostFailure::Other(format!("sh failed: {e}")))?;
    let _ = writer.await;
    Ok(ScriptOutput { stdout: output.stdout, stderr: output.stderr, status: output.status.code() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Become, Plan};

    #[tokio::test]
    async fn runs_the_bundled_script() {
        let plan = Plan::all_builtin();
        let boundary = crate::bundle::new_boundary();
        let out = run(&plan.script(Become::None, &boundary), Duration::from_secs(60)).await.expect("sh runs");
        let outputs = plan.split(&out.stdout, &boundary);
        let cpuinfo = outputs.get("cpuinfo").expect("cpuinfo probe ran");
        assert!(cpuinfo.succeeded(), "{cpuinfo:?}");
        assert!(cpuinfo.text().contains("processor"));
    }

    #[tokio::test]
    async fn hung_script_times_out() {
        let err = run("sleep 5", Duration::from_millis(200)).await.expect_err("times out");
        assert!(matches!(err, HostFailure::Timeout(_)));
    }
}
