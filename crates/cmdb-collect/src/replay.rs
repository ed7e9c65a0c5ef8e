//! Replay: a directory of saved command outputs stands in for a host.
//!
//! The layout is the old course client's debug mode (one file per command: `board.out`,
//! `cpuinfo.out`, `disk.out`, `memory.out`, `nic.out`) plus the newer optional files (`lsblk.json`,
//! `ip-addr.json`, `os-release`, `meminfo`, `hostname`, `uname`, `storcli.json`, `machine-id`,
//! `external-NAME.json`). A missing file means the command was absent or failed on that host.

use std::io;
use std::path::Path;

use crate::probe::{Outputs, ProbeOutput, ProbeSpec};

/// Reads the outputs of `probes` from `dir`. Probes without a replay file, and files that do not
/// exist, read as "command not found".
pub fn read_dir(dir: &Path, probes: &[ProbeSpec]) -> io::Result<Outputs> {
    if !dir.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} is not a directory", dir.display())));
    }
    let mut outputs = Outputs::default();
    for probe in probes {
        let output = match &probe.replay_file {
            Some(file) => match std::fs::read(dir.join(file)) {
                Ok(bytes) => ProbeOutput::ok(bytes),
                // By design (the host may lack the command), but said, so a misspelt or
                // forgotten file is not mistaken for the host's answer.
                Err(e) if e.kind() == io::ErrorKind::NotFound => ProbeOutput {
                    stderr: format!(
                        "no {file} in {} (replay reads a missing file as command not found)",
                        dir.display()
                    ),
                    ..ProbeOutput::not_found()
                },
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display()))),
            },
            None => ProbeOutput::not_found(),
        };
        outputs.insert(probe.id.clone(), output);
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_says_it_is_read_as_command_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = crate::plan::Plan::new(&["basic".to_owned()], &[], crate::CollectOptions::default()).expect("plan");
        let probes = plan.probes().to_vec();
        let outputs = read_dir(dir.path(), &probes).expect("read");
        let (id, missing) = outputs.by_id.iter().next().expect("a probe");
        let file = probes.iter().find(|p| &p.id == id).and_then(|p| p.replay_file.clone()).expect("replay file");
        let message = missing.failure(id);
        assert!(message.contains("command not found"), "{message}");
        assert!(message.contains(&format!("no {file} in {}", dir.path().display())), "{message}");
    }
}
