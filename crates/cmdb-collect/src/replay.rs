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
                Err(e) if e.kind() == io::ErrorKind::NotFound => ProbeOutput::not_found(),
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display()))),
            },
            None => ProbeOutput::not_found(),
        };
        outputs.insert(probe.id.clone(), output);
    }
    Ok(outputs)
}
