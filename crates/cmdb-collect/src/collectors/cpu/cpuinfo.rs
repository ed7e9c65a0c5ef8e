//! `/proc/cpuinfo` on every architecture Linux servers run.
//!
//! The grammar is `key<blanks>: value`, the blanks being tabs or (when the text was copied)
//! spaces; blank lines separate processors. What varies is which keys exist:
//!
//! * **x86**: one block per logical CPU with `processor`, `model name`, `physical id`.
//! * **arm64**: one block per CPU with `processor` and `CPU implementer`/`CPU part`, no model
//!   name; kernels before 3.19 add a global `Processor : AArch64 Processor rev 4 (aarch64)` line.
//! * **arm (32-bit)**: since Linux 3.8 per-CPU `model name : ARMv7 Processor rev 4 (v7l)`;
//!   before, one global `Processor :` line, and uniprocessor kernels print no `processor` line at
//!   all. A trailing `Hardware :` names the board, not the CPU.
//! * **ppc64/ppc64le**: `processor` blocks with `cpu : POWER9 (raw), altivec supported`.
//! * **s390x**: a header with `# processors : N` and one `processor N: ... machine = 3906` line
//!   per CPU (newer kernels add `cpu number` blocks).
//! * **mips** (`cpu model`), **sparc** (`cpu`, `ncpus active`), **alpha** (`cpus detected`) and
//!   **riscv** (`uarch`) are read the same way.
//!
//! Counting: `cpu_count` is the number of distinct numeric `processor` entries (or the
//! architecture's own count); `cpu_physical_count` the number of distinct `physical id` values,
//! or 1 when the kernel prints none (ARM, most VMs, non-x86). A truncated file is counted as it
//! stands: it is the kernel's answer at the time it was captured.

use std::collections::BTreeSet;

use cmdb_model::report::CpuData;

use super::arm;

/// What the parser gathers before deciding.
#[derive(Default)]
struct Seen {
    processors: BTreeSet<u32>,
    physical_ids: BTreeSet<String>,
    model_name: Option<String>,
    processor_line: Option<String>,
    /// (implementer, part) per `CPU part` line, in order.
    arm_cores: Vec<(Option<u32>, Option<u32>)>,
    arm_implementer: Option<u32>,
    ppc_or_sparc_cpu: Option<String>,
    mips_cpu_model: Option<String>,
    riscv_uarch: Option<String>,
    declared_count: Option<u32>,
    s390_processors: BTreeSet<u32>,
    s390_machine: Option<String>,
    any_field: bool,
}

/// Keeps the first non-empty value.
fn first(slot: &mut Option<String>, value: &str) {
    if slot.is_none() && !value.is_empty() {
        *slot = Some(value.to_owned());
    }
}

/// IBM Z machine types as `machine = NNNN` prints them.
fn s390_machine_name(machine: &str) -> String {
    let name = match machine {
        "2064" => "z900",
        "2066" => "z800",
        "2084" => "z990",
        "2086" => "z890",
        "2094" => "z9 EC",
        "2096" => "z9 BC",
        "2097" => "z10 EC",
        "2098" => "z10 BC",
        "2817" => "z196",
        "2818" => "z114",
        "2827" => "zEC12",
        "2828" => "zBC12",
        "2964" => "z13",
        "2965" => "z13s",
        "3906" => "z14",
        "3907" => "z14 ZR1",
        "8561" => "z15",
        "8562" => "z15 T02",
        "3931" => "z16",
        "3932" => "z16 A02",
        _ => return format!("IBM/S390 machine {machine}"),
    };
    format!("IBM {name} ({machine})")
}

/// The generic string arm64 kernels before 3.19 printed as `Processor`; it names no core.
fn is_generic_aarch64(processor: &str) -> bool {
    processor.starts_with("AArch64 Processor")
}

impl Seen {
    fn read(&mut self, key: &str, value: &str) {
        self.any_field = true;
        match key {
            "processor" => {
                if let Ok(n) = value.parse::<u32>() {
                    self.processors.insert(n);
                }
            }
            "Processor" => first(&mut self.processor_line, value),
            "physical id" => {
                if !value.is_empty() {
                    self.physical_ids.insert(value.to_owned());
                }
            }
            "model name" => first(&mut self.model_name, value),
            "CPU implementer" => self.arm_implementer = arm::parse_id(value),
            "CPU part" => self.arm_cores.push((self.arm_implementer, arm::parse_id(value))),
            "cpu" => first(&mut self.ppc_or_sparc_cpu, value),
            "cpu model" => first(&mut self.mips_cpu_model, value),
            "uarch" => first(&mut self.riscv_uarch, value),
            "# processors" | "ncpus active" | "cpus detected" => {
                if self.declared_count.is_none() {
                    self.declared_count = value.parse().ok();
                }
            }
            "machine" if value.chars().all(|c| c.is_ascii_digit()) && !value.is_empty() => {
                first(&mut self.s390_machine, value);
            }
            _ => {
                // s390x: "processor 0: version = FF,  identification = 243EF7,  machine = 3906".
                if let Some(n) = key.strip_prefix("processor ").and_then(|n| n.trim().parse::<u32>().ok()) {
                    self.s390_processors.insert(n);
                    if let Some(machine) = value.split(',').find_map(|part| part.trim().strip_prefix("machine = ")) {
                        first(&mut self.s390_machine, machine.trim());
                    }
                }
            }
        }
    }

    /// The name built from the ARM core ids: distinct core names in order, joined with " + "
    /// for big.LITTLE systems. `known_only` refuses names made of raw ids.
    fn arm_model(&self, known_only: bool) -> Option<String> {
        let mut names: Vec<String> = Vec::new();
        for (implementer, part) in &self.arm_cores {
            let (Some(implementer), Some(part)) = (implementer, part) else { continue };
            let name = if known_only {
                arm::known_core_name(*implementer, *part)?
            } else {
                arm::core_name(*implementer, *part)
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.is_empty() { None } else { Some(names.join(" + ")) }
    }

    fn model(&self) -> Option<String> {
        if let Some(name) = &self.model_name {
            return Some(name.clone());
        }
        let specific_processor = self.processor_line.clone().filter(|p| !is_generic_aarch64(p));
        specific_processor
            .or_else(|| self.arm_model(true))
            .or_else(|| self.arm_model(false))
            .or_else(|| self.processor_line.clone())
            .or_else(|| self.ppc_or_sparc_cpu.clone())
            .or_else(|| self.mips_cpu_model.clone())
            .or_else(|| self.riscv_uarch.clone())
            .or_else(|| self.s390_machine.as_deref().map(s390_machine_name))
    }

    fn count(&self) -> Option<u32> {
        if !self.processors.is_empty() {
            return u32::try_from(self.processors.len()).ok();
        }
        if let Some(declared) = self.declared_count.filter(|n| *n > 0) {
            return Some(declared);
        }
        if !self.s390_processors.is_empty() {
            return u32::try_from(self.s390_processors.len()).ok();
        }
        // Uniprocessor ARM kernels before 3.8 print a single block without a `processor` line.
        (self.processor_line.is_some() || !self.arm_cores.is_empty()).then_some(1)
    }
}

/// Parses `/proc/cpuinfo` text. Every field is `None` when the text holds no CPU description.
pub fn parse_cpuinfo(text: &str) -> CpuData {
    let mut seen = Seen::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        // Only the ends are trimmed: model names keep their inner runs of spaces.
        seen.read(key.trim(), value.trim());
    }
    let cpu_count = seen.count();
    let cpu_physical_count = match u32::try_from(seen.physical_ids.len()) {
        Ok(0) | Err(_) => cpu_count.map(|_| 1),
        Ok(n) => Some(n),
    };
    let cpu_model = if seen.any_field { seen.model() } else { None };
    CpuData { cpu_count, cpu_physical_count, cpu_model }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> String {
        let path = format!("{}/src/collectors/cpu/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn cpu(count: u32, physical: u32, model: &str) -> CpuData {
        CpuData { cpu_count: Some(count), cpu_physical_count: Some(physical), cpu_model: Some(model.to_owned()) }
    }

    #[test]
    fn x86_fixtures() {
        for (file, expected) in [
            ("course-canonical.out", cpu(24, 2, "Intel(R) Xeon(R) CPU E5-2620 v2 @ 2.10GHz")),
            ("lenovo-rd650.out", cpu(48, 2, "Intel(R) Xeon(R) CPU E5-2670 v3 @ 2.30GHz")),
            ("this-vm.out", cpu(2, 1, "AMD EPYC")),
            ("dell-r630.out", cpu(16, 2, "Intel(R) Xeon(R) CPU           E5620  @ 2.40GHz")),
            ("oracle-x5-2-oda.out", cpu(16, 2, "Intel(R) Xeon(R) CPU E5-2699 v3 @ 2.30GHz")),
        ] {
            assert_eq!(parse_cpuinfo(&testdata(file)), expected, "{file}");
        }
    }

    #[test]
    fn truncated_file_with_spaces_for_tabs() {
        // glpi-agent's bug #505 file: 3 processors, all on physical id 1.
        assert_eq!(
            parse_cpuinfo(&testdata("hp-dl180-g6.out")),
            cpu(3, 1, "Intel(R) Xeon(R) CPU           E5504  @ 2.00GHz")
        );
    }

    #[test]
    fn arm_samples() {
        for (file, expected) in [
            // fusioninventory's cpu.t expects TYPE 'Feroceon 88FR131 rev 1 (v5l)'.
            ("fusion-linux-armel-2.out", cpu(1, 1, "Feroceon 88FR131 rev 1 (v5l)")),
            ("fusion-linux-armel-3.out", cpu(1, 1, "ARMv6-compatible processor rev 7 (v6l)")),
            ("fusion-linux-raspberry-pi-3-model-b.out", cpu(4, 1, "ARMv7 Processor rev 4 (v7l)")),
            ("glpi-raspberry-pi-3-model-b-on-bookworm.out", cpu(4, 1, "ARM Cortex-A53")),
            ("pytorch-scaleway.out", cpu(2, 1, "Cavium ThunderX-88XX")),
            ("pytorch-nexus9.out", cpu(2, 1, "NVIDIA Denver 1.0 rev 0 (aarch64)")),
            ("pytorch-galaxy-s7-us.out", cpu(4, 1, "AArch64 Processor rev 2 (aarch64)")),
        ] {
            assert_eq!(parse_cpuinfo(&testdata(file)), expected, "{file}");
        }
    }

    #[test]
    fn other_architectures() {
        assert_eq!(parse_cpuinfo(&testdata("syzkaller-ppc64le-powernv.out")), cpu(6, 1, "POWER8E, altivec supported"));
        assert_eq!(parse_cpuinfo(&testdata("linuxone-rhel74-s390x.out")), cpu(2, 1, "IBM z14 (3906)"));
        // fusioninventory's cpu.t expects NAME 'R4400SC V5.0  FPU V0.0' (inner double space kept).
        assert_eq!(parse_cpuinfo(&testdata("fusion-linux-mips-1.out")), cpu(1, 1, "R4400SC V5.0  FPU V0.0"));
    }

    #[test]
    fn arm64_server_without_model_name() {
        let block = |n: u32, part: &str| {
            format!(
                "processor\t: {n}\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: {part}\n\n"
            )
        };
        let text: String = (0..4).map(|n| block(n, "0xd0c")).collect();
        assert_eq!(parse_cpuinfo(&text), cpu(4, 1, "ARM Neoverse-N1"));
        let biglittle: String = (0..2).map(|n| block(n, "0xd03")).chain((2..4).map(|n| block(n, "0xd09"))).collect();
        assert_eq!(parse_cpuinfo(&biglittle).cpu_model.as_deref(), Some("ARM Cortex-A53 + ARM Cortex-A73"));
        let old_kernel = format!("Processor\t: AArch64 Processor rev 1 (aarch64)\n{}", block(0, "0xd08"));
        assert_eq!(parse_cpuinfo(&old_kernel).cpu_model.as_deref(), Some("ARM Cortex-A72"));
        let unknown = block(0, "0xfff");
        assert_eq!(parse_cpuinfo(&unknown).cpu_model.as_deref(), Some("ARM part 0xfff"));
        let kunpeng = block(0, "0xd01").replace("0x41", "0x48");
        assert_eq!(parse_cpuinfo(&kunpeng).cpu_model.as_deref(), Some("HiSilicon Kunpeng-920"));
    }

    #[test]
    fn nothing_recognizable() {
        assert_eq!(parse_cpuinfo(""), CpuData::default());
        assert_eq!(parse_cpuinfo("garbage without separators\n"), CpuData::default());
        assert_eq!(parse_cpuinfo("flags : fpu\n").cpu_count, None);
    }

    #[test]
    fn physical_ids_are_counted_distinctly_even_if_sparse() {
        let text =
            "processor : 0\nphysical id : 0\n\nprocessor : 1\nphysical id : 3\n\nprocessor : 2\nphysical id : 3\n";
        assert_eq!(parse_cpuinfo(text), CpuData { cpu_count: Some(3), cpu_physical_count: Some(2), cpu_model: None });
    }
}
