//! `cpu` collector: logical CPUs, sockets and the processor model.
//!
//! Command: `cat /proc/cpuinfo` (no root). Replay file: `cpuinfo.out`.
//!
//! See [`cpuinfo`] for the formats read (x86, arm64, 32-bit arm, ppc64le, s390x, mips, sparc,
//! riscv). A `/proc/cpuinfo` that cannot be read, or that describes no processor, is an error.
//!
//! Known limit: arm64 and other non-x86 kernels print no `physical id`, so multi-socket ARM
//! servers (Ampere Altra, Kunpeng 920 2P) are reported as one socket.

pub mod arm;
pub mod cpuinfo;

pub use cpuinfo::parse_cpuinfo;

use cmdb_model::report::CpuData;

use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

/// Processors: logical CPUs, sockets, model name.
pub struct Cpu;

/// Probe id of `cat /proc/cpuinfo`.
pub const CPUINFO: &str = "cpuinfo";

const PROBES: &[Probe] = &[Probe {
    id: CPUINFO,
    command: "cat /proc/cpuinfo",
    script: "cat /proc/cpuinfo",
    needs_root: false,
    replay_file: Some("cpuinfo.out"),
    timeout_secs: 5,
    may_hang: false,
    programs: &[],
}];

/// Decides the cpu section from the probe's output.
pub fn cpu_from_outputs(outputs: &Outputs) -> Result<CpuData, CollectError> {
    let output = match outputs.succeeded(CPUINFO) {
        Some(output) => output,
        None => {
            let why = outputs.get(CPUINFO).map_or_else(|| format!("{CPUINFO}: did not run"), |o| o.failure(CPUINFO));
            return Err(CollectError::Command(why));
        }
    };
    let data = parse_cpuinfo(&output.text());
    if data.cpu_count.is_none() {
        return Err(CollectError::Parse {
            probe: CPUINFO.to_owned(),
            message: "no processor entry found in /proc/cpuinfo".to_owned(),
        });
    }
    Ok(data)
}

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn summary(&self) -> &'static str {
        "Processors: logical CPUs, sockets, model name."
    }

    fn probes(&self) -> &'static [Probe] {
        PROBES
    }

    fn parse(&self, outputs: &Outputs, _options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        let data = cpu_from_outputs(outputs)?;
        serde_json::to_value(data)
            .map_err(|e| CollectError::Parse { probe: CPUINFO.to_owned(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeOutput;

    fn outputs(output: ProbeOutput) -> Outputs {
        let mut outputs = Outputs::default();
        outputs.insert(CPUINFO, output);
        outputs
    }

    #[test]
    fn serializes_to_the_v1_shape() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC\nphysical id\t: 0\n";
        let value = Cpu.parse(&outputs(ProbeOutput::ok(text.as_bytes())), &CollectOptions::default()).expect("ok");
        assert_eq!(value, serde_json::json!({"cpu_count": 1, "cpu_physical_count": 1, "cpu_model": "AMD EPYC"}));
    }

    #[test]
    fn unreadable_or_empty_cpuinfo_is_an_error() {
        assert!(cpu_from_outputs(&outputs(ProbeOutput::not_found())).is_err());
        assert!(cpu_from_outputs(&outputs(ProbeOutput::ok(&b""[..]))).is_err());
        assert!(cpu_from_outputs(&Outputs::default()).is_err());
    }
}
