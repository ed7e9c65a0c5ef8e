//! The distribution name and version, from whichever release file the host has.
//!
//! The probe prints the first of these that exists, and the parser recognizes the format:
//!
//! * `/etc/os-release` or `/usr/lib/os-release` (systemd's format, every distribution since
//!   about 2012): shell-style `KEY=value` assignments, values unquoted, `"double"` quoted (with
//!   `\"`, `\\`, `\$`, `` \` `` escapes) or `'single'` quoted, `#` comments. `NAME` and
//!   `VERSION_ID` are reported (`ID` stands in for a missing `NAME`).
//! * `/etc/redhat-release` (RHEL/CentOS <= 6, also Oracle and Scientific Linux, Fedora): one
//!   line, `CentOS release 6.6 (Final)`, `Red Hat Enterprise Linux Server release 5.6 (Tikanga)`.
//! * `/etc/SuSE-release` (SLES <= 11): `SUSE Linux Enterprise Server 11 (x86_64)` followed by
//!   `VERSION = 11` and `PATCHLEVEL = 4`; reported as version `11.4`, as SLES's os-release does.
//! * `/etc/lsb-release` (Ubuntu <= 11.10): `DISTRIB_ID=Ubuntu`, `DISTRIB_RELEASE=10.04`.
//! * `/etc/debian_version` (Debian <= 6), which holds only the version: the probe prefixes it
//!   with `Debian GNU/Linux `, giving a one-line release file.

/// The distribution, as far as the release file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// Distribution name, e.g. "Debian GNU/Linux", "CentOS".
    pub name: Option<String>,
    /// Distribution version, e.g. "12", "6.6".
    pub version: Option<String>,
}

/// The probe script: the first release file that exists, most authoritative first.
pub const SCRIPT: &str = "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null \
|| cat /etc/redhat-release 2>/dev/null || cat /etc/SuSE-release 2>/dev/null || cat /etc/lsb-release 2>/dev/null \
|| { v=$(cat /etc/debian_version) && printf 'Debian GNU/Linux %s\\n' \"$v\"; }";

/// Reads one shell word the way `sh` would for an os-release value: quotes removed, escapes
/// resolved, stopping at the first unquoted blank (what follows, e.g. a `# comment`, is not part
/// of the value). An unterminated quote runs to the end of the line.
fn shell_word(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => break,
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&next @ ('"' | '\\' | '$' | '`')) => {
                                out.push(next);
                                chars.next();
                            }
                            _ => out.push('\\'),
                        },
                        c => out.push(c),
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `KEY=value` assignments in order; lines that are not assignments are skipped.
fn assignments(text: &str) -> Vec<(&str, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let valid_key = !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !key.as_bytes()[0].is_ascii_digit();
            valid_key.then(|| (key, shell_word(value)))
        })
        .collect()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Parses a one-line release file: `<name> release <version> (<codename>)` or
/// `<name> <version> (<arch>)`, plus SuSE's `VERSION = ` / `PATCHLEVEL = ` lines.
fn parse_release_line(text: &str) -> OsRelease {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    let Some(first_line) = lines.next() else { return OsRelease::default() };
    let mut suse_version = None;
    let mut suse_patchlevel = None;
    for line in lines {
        if let Some((key, value)) = line.split_once('=') {
            match key.trim() {
                "VERSION" => suse_version = Some(value.trim().to_owned()),
                "PATCHLEVEL" => suse_patchlevel = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    // A trailing "(Final)", "(x86_64)" or "(Tikanga)" is a codename or architecture.
    let head = match first_line.find(" (") {
        Some(at) => &first_line[..at],
        None => first_line,
    }
    .trim();
    let (name, version) = if let Some((name, rest)) = head.split_once(" release ") {
        (Some(name.trim().to_owned()), rest.split_whitespace().next().map(str::to_owned))
    } else {
        let words: Vec<&str> = head.split_whitespace().collect();
        match words.iter().rposition(|w| w.starts_with(|c: char| c.is_ascii_digit())) {
            Some(at) if at > 0 => (Some(words[..at].join(" ")), Some(words[at].to_owned())),
            _ => (Some(head.to_owned()), None),
        }
    };
    let version = match (suse_version.filter(|v| !v.is_empty()), suse_patchlevel.filter(|p| !p.is_empty() && p != "0"))
    {
        (Some(v), Some(p)) => Some(format!("{v}.{p}")),
        (Some(v), None) => Some(v),
        (None, _) => version,
    };
    OsRelease { name: non_empty(name), version: non_empty(version) }
}

/// Parses the release probe's output, whichever release file it came from.
pub fn parse_os_release(text: &str) -> OsRelease {
    let vars = assignments(text);
    let get = |key: &str| vars.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
    if ["NAME", "ID", "VERSION_ID", "PRETTY_NAME"].iter().any(|k| get(k).is_some()) {
        return OsRelease {
            name: non_empty(get("NAME")).or_else(|| non_empty(get("ID"))),
            version: non_empty(get("VERSION_ID")),
        };
    }
    if get("DISTRIB_ID").is_some() {
        return OsRelease { name: non_empty(get("DISTRIB_ID")), version: non_empty(get("DISTRIB_RELEASE")) };
    }
    if !vars.is_empty() {
        // KEY=value lines that name no distribution (e.g. a bare LSB_VERSION=...): nothing known.
        return OsRelease::default();
    }
    parse_release_line(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(name: &str, version: Option<&str>) -> OsRelease {
        OsRelease { name: Some(name.to_owned()), version: version.map(str::to_owned) }
    }

    fn testdata(name: &str) -> String {
        let path = format!("{}/src/collectors/basic/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn os_release_files() {
        assert_eq!(parse_os_release(&testdata("this-vm.os-release")), os("Debian GNU/Linux", Some("12")));
        assert_eq!(parse_os_release(&testdata("dell-r630.os-release")), os("CentOS Linux", Some("7")));
        assert_eq!(parse_os_release(&testdata("glpi-os-release-fedora-35")), os("Fedora Linux", Some("35")));
    }

    #[test]
    fn quoting_and_comments() {
        let text = "# comment\nNAME='Arch Linux'\nID=arch\n  # indented comment\nBUILD_ID=rolling\n";
        assert_eq!(parse_os_release(text), os("Arch Linux", None));
        let text = "NAME=\"Some \\\"quoted\\\" \\$name\" # trailing comment\nVERSION_ID=1.2\n";
        assert_eq!(parse_os_release(text), os("Some \"quoted\" $name", Some("1.2")));
        let text = "NAME=Alpine\\ Linux\nVERSION_ID=3.19.1\n";
        assert_eq!(parse_os_release(text), os("Alpine Linux", Some("3.19.1")));
        assert_eq!(parse_os_release("ID=alpine\nVERSION_ID=\"3.18\"\n"), os("alpine", Some("3.18")));
        assert_eq!(parse_os_release("NAME=\"unterminated\nVERSION_ID=\"\"\n"), os("unterminated", None));
    }

    #[test]
    fn redhat_release_lines() {
        assert_eq!(parse_os_release("CentOS release 6.6 (Final)\n"), os("CentOS", Some("6.6")));
        assert_eq!(
            parse_os_release("Red Hat Enterprise Linux Server release 5.6 (Tikanga)\n"),
            os("Red Hat Enterprise Linux Server", Some("5.6"))
        );
        assert_eq!(parse_os_release("CentOS Linux release 7.9.2009 (Core)"), os("CentOS Linux", Some("7.9.2009")));
        assert_eq!(parse_os_release("Fedora release 14 (Laughlin)\n"), os("Fedora", Some("14")));
    }

    #[test]
    fn suse_and_debian_and_lsb() {
        let suse = "SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 4\n";
        assert_eq!(parse_os_release(suse), os("SUSE Linux Enterprise Server", Some("11.4")));
        let suse_ga = "SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 0\n";
        assert_eq!(parse_os_release(suse_ga), os("SUSE Linux Enterprise Server", Some("11")));
        assert_eq!(parse_os_release("Debian GNU/Linux 6.0.10\n"), os("Debian GNU/Linux", Some("6.0.10")));
        let lsb = "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=10.04\nDISTRIB_CODENAME=lucid\nDISTRIB_DESCRIPTION=\"Ubuntu 10.04.4 LTS\"\n";
        assert_eq!(parse_os_release(lsb), os("Ubuntu", Some("10.04")));
        assert_eq!(parse_os_release("LSB_VERSION=base-4.0-amd64:base-4.0-noarch\n"), OsRelease::default());
    }

    #[test]
    fn empty_input() {
        assert_eq!(parse_os_release(""), OsRelease::default());
        assert_eq!(parse_os_release("\n\n"), OsRelease::default());
    }

    #[test]
    fn the_script_runs_under_sh() {
        let out = std::process::Command::new("sh").arg("-c").arg(SCRIPT).output().expect("sh runs");
        assert!(out.status.success(), "{out:?}");
        assert!(parse_os_release(&String::from_utf8_lossy(&out.stdout)).name.is_some());
    }
}
