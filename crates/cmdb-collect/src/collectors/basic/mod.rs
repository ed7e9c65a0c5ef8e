//! `basic` collector: host name, operating system family, distribution name and version,
//! kernel release and machine architecture.
//!
//! Commands (none needs root):
//!
//! * `cat /etc/os-release`, falling back in order to `/usr/lib/os-release`,
//!   `/etc/redhat-release`, `/etc/SuSE-release`, `/etc/lsb-release` and `/etc/debian_version`
//!   for hosts older than os-release (CentOS/RHEL 5-6, SLES 11, Debian 6, Ubuntu 10.04).
//!   Replay file: `os-release`.
//! * `uname -a`. Replay file: `uname`.
//! * The host name comes from the envelope's `hostname` probe (`hostname`, else
//!   `cat /etc/hostname`; replay file `hostname`), else from `uname -a`'s node name.
//!
//! A missing release file or `uname` leaves its fields null. When neither gives anything the
//! section is an error rather than a section of nulls: the host name alone is already in the
//! report envelope, and a section of nulls would erase the stored distribution and kernel after
//! a transient failure.

pub mod os_release;
pub mod uname;

pub use os_release::parse_os_release;
pub use uname::parse_uname;

use cmdb_model::report::BasicData;

use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

/// Operating system: host name, distribution, kernel, architecture.
pub struct Basic;

/// Probe id of the release-file reader.
pub const OS_RELEASE: &str = "os-release";

/// Probe id of `uname -a`.
pub const UNAME: &str = "uname";

/// The envelope probe that prints the host name (see `crate::ENVELOPE_PROBES`).
const HOSTNAME: &str = "hostname";

const PROBES: &[Probe] = &[
    Probe {
        id: OS_RELEASE,
        command: "cat /etc/os-release (or /usr/lib/os-release, /etc/redhat-release, /etc/SuSE-release, /etc/lsb-release, /etc/debian_version)",
        script: os_release::SCRIPT,
        needs_root: false,
        replay_file: Some("os-release"),
        timeout_secs: 5,
        may_hang: false,
        programs: &[],
    },
    Probe {
        id: UNAME,
        command: "uname -a",
        script: "uname -a",
        needs_root: false,
        replay_file: Some("uname"),
        timeout_secs: 5,
        may_hang: false,
        programs: &[],
    },
];

/// The first non-empty line a successful probe printed.
fn first_line(outputs: &Outputs, id: &str) -> Option<String> {
    let output = outputs.succeeded(id)?;
    output.text().lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned)
}

/// Decides the basic section from the probes' outputs (see the module documentation).
pub fn basic_from_outputs(outputs: &Outputs) -> Result<BasicData, CollectError> {
    let release = outputs.succeeded(OS_RELEASE).map(|o| parse_os_release(&o.text()));
    let uname = outputs.succeeded(UNAME).and_then(|o| parse_uname(&o.text()));
    let release_known = release.as_ref().is_some_and(|r| r.name.is_some() || r.version.is_some());
    if !release_known && uname.is_none() {
        let why = |id: &str| outputs.get(id).map_or_else(|| format!("{id}: did not run"), |o| o.failure(id));
        return Err(CollectError::Command(format!(
            "no operating system information: {}; {}",
            if release.is_some() {
                format!("{OS_RELEASE}: no distribution name or version found")
            } else {
                why(OS_RELEASE)
            },
            if outputs.succeeded(UNAME).is_some() { format!("{UNAME}: unreadable output") } else { why(UNAME) },
        )));
    }
    let release = release.unwrap_or_default();
    Ok(BasicData {
        hostname: first_line(outputs, HOSTNAME).or_else(|| uname.as_ref().map(|u| u.nodename.clone())),
        // The probes are Linux commands; uname names the kernel when it ran.
        os_platform: Some(uname.as_ref().map_or_else(|| "linux".to_owned(), |u| u.kernel_name.to_ascii_lowercase())),
        os_name: release.name,
        os_version: release.version,
        kernel: uname.as_ref().map(|u| u.kernel_release.clone()),
        arch: uname.and_then(|u| u.machine),
    })
}

impl Collector for Basic {
    fn name(&self) -> &'static str {
        "basic"
    }

    fn summary(&self) -> &'static str {
        "Operating system: host name, distribution, kernel, architecture."
    }

    fn probes(&self) -> &'static [Probe] {
        PROBES
    }

    fn parse(&self, outputs: &Outputs, _options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        let data = basic_from_outputs(outputs)?;
        serde_json::to_value(data)
            .map_err(|e| CollectError::Parse { probe: OS_RELEASE.to_owned(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeOutput;

    fn outputs(os_release: Option<&str>, uname: Option<&str>, hostname: Option<&str>) -> Outputs {
        let mut outputs = Outputs::default();
        let probe = |text: Option<&str>| text.map_or_else(ProbeOutput::not_found, |t| ProbeOutput::ok(t.as_bytes()));
        outputs.insert(OS_RELEASE, probe(os_release));
        outputs.insert(UNAME, probe(uname));
        outputs.insert(HOSTNAME, probe(hostname));
        outputs
    }

    const OS: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n";
    const UNAME_A: &str = "Linux vm 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0 x86_64 GNU/Linux\n";

    #[test]
    fn everything_known() {
        let value =
            Basic.parse(&outputs(Some(OS), Some(UNAME_A), Some("vm\n")), &CollectOptions::default()).expect("ok");
        assert_eq!(
            value,
            serde_json::json!({"hostname": "vm", "os_platform": "linux", "os_name": "Debian GNU/Linux",
                               "os_version": "12", "kernel": "6.18.44-fc-v669", "arch": "x86_64"})
        );
    }

    #[test]
    fn missing_pieces_are_null() {
        let data = basic_from_outputs(&outputs(Some(OS), None, None)).expect("ok");
        assert_eq!((data.kernel, data.arch, data.hostname), (None, None, None));
        assert_eq!(data.os_platform.as_deref(), Some("linux"));
        let data = basic_from_outputs(&outputs(None, Some(UNAME_A), None)).expect("ok");
        assert_eq!((data.os_name, data.hostname.as_deref()), (None, Some("vm")), "node name stands in for hostname");
        let data = basic_from_outputs(&outputs(Some("CentOS release 6.6 (Final)\n"), None, Some("db1"))).expect("ok");
        assert_eq!((data.os_name.as_deref(), data.os_version.as_deref()), (Some("CentOS"), Some("6.6")));
    }

    #[test]
    fn nothing_known_is_an_error() {
        let err = basic_from_outputs(&outputs(None, None, Some("vm"))).expect_err("error");
        assert!(err.to_string().contains("os-release") && err.to_string().contains("uname"), "{err}");
        assert!(basic_from_outputs(&outputs(Some("\n"), Some("garbage"), None)).is_err());
    }
}
