//! `cmdb-agent collectors`: every collector, the exact commands it runs, which need root, and the
//! sudoers lines that let an unprivileged user run those (and only those) through `sudo -n`.

use std::fmt::Write as _;

use cmdb_collect::external::ExternalCollector;
use cmdb_collect::{COLLECTORS, ENVELOPE_PROBES};

use crate::local;

/// One command of one collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The command as an admin reads it (and sudoers matches it).
    pub command: String,
    /// True when it needs root.
    pub needs_root: bool,
    /// Programs the probe tries in turn (`for c in MegaCli64 MegaCli ...`), when it does; the
    /// sudoers line must name the one the host has.
    pub candidates: Vec<String>,
}

impl CommandLine {
    fn new(command: &str, needs_root: bool, programs: &[&str]) -> Self {
        // A probe that names one program runs it as its command says; one that names several
        // tries them in turn.
        let candidates =
            if programs.len() > 1 { programs.iter().map(|p| (*p).to_owned()).collect() } else { Vec::new() };
        CommandLine { command: command.to_owned(), needs_root, candidates }
    }
}

/// One collector as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Section name.
    pub name: String,
    /// What it reports.
    pub summary: String,
    /// True when `collectors` selects it.
    pub enabled: bool,
    /// Its commands.
    pub commands: Vec<CommandLine>,
}

/// Every built-in collector, every declared external one, and the envelope probes.
pub fn collectors(enabled: &[String], externals: &[ExternalCollector]) -> Vec<Listed> {
    let mut out = vec![Listed {
        name: "(every report)".to_owned(),
        summary: "Host name and machine id for the report envelope.".to_owned(),
        enabled: true,
        commands: ENVELOPE_PROBES.iter().map(|p| CommandLine::new(p.command, p.needs_root, p.programs)).collect(),
    }];
    for c in COLLECTORS {
        out.push(Listed {
            name: c.name().to_owned(),
            summary: c.summary().to_owned(),
            enabled: enabled.iter().any(|e| e == c.name()),
            commands: c.probes().iter().map(|p| CommandLine::new(p.command, p.needs_root, p.programs)).collect(),
        });
    }
    for e in externals {
        out.push(Listed {
            name: e.name.clone(),
            summary: format!("External collector (timeout {}s).", e.timeout.as_secs()),
            enabled: enabled.iter().any(|n| n == &e.name),
            commands: vec![CommandLine::new(&e.command, e.needs_root, &[])],
        });
    }
    out
}

/// Escapes the characters sudoers gives meaning to in a command's arguments.
fn sudoers_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, ',' | ':' | '=' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The sudoers entries for one root-only command: its program replaced by an absolute path
/// (sudoers requires one). A probe that tries several programs gets one entry per program found
/// in `path`; a program found nowhere is assumed in /usr/sbin and reported as missing.
fn sudoers_entries(line: &CommandLine, path: &str) -> (Vec<String>, Vec<String>) {
    let mut words = line.command.split_whitespace();
    let Some(program) = words.next() else { return (Vec::new(), Vec::new()) };
    let args: Vec<&str> = words.collect();
    let with_args = |program: &str| {
        if args.is_empty() { program.to_owned() } else { format!("{program} {}", sudoers_escape(&args.join(" "))) }
    };
    let candidates: Vec<&str> =
        if line.candidates.is_empty() { vec![program] } else { line.candidates.iter().map(String::as_str).collect() };
    let found: Vec<String> =
        candidates.iter().filter_map(|c| local::which(c, path)).map(|p| with_args(&p.display().to_string())).collect();
    if !found.is_empty() {
        return (found, Vec::new());
    }
    let assumed = if program.starts_with('/') { program.to_owned() } else { format!("/usr/sbin/{program}") };
    (vec![with_args(&assumed)], vec![program.to_owned()])
}

/// The sudoers lines for the root-only commands of the enabled collectors, for `user`, and the
/// programs this machine does not have (their path in the lines is a guess).
pub fn sudoers(listed: &[Listed], user: &str, path: &str) -> (Vec<String>, Vec<String>) {
    let mut commands: Vec<String> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for line in listed.iter().filter(|l| l.enabled).flat_map(|l| l.commands.iter()).filter(|c| c.needs_root) {
        let (entries, absent) = sudoers_entries(line, path);
        for entry in entries {
            if !commands.contains(&entry) {
                commands.push(entry);
            }
        }
        missing.extend(absent);
    }
    missing.dedup();
    if commands.is_empty() {
        return (Vec::new(), missing);
    }
    let lines = vec![
        // sudo -n over a non-interactive SSH exec has no terminal.
        format!("Defaults:{user} !requiretty"),
        format!("{user} ALL=(root) NOPASSWD: {}", commands.join(", ")),
    ];
    (lines, missing)
}

/// The text `cmdb-agent collectors` prints.
pub fn render(listed: &[Listed], user: &str, path: &str) -> String {
    let mut out = String::new();
    for l in listed {
        let state = if l.enabled { "" } else { "  (not enabled)" };
        let _ = writeln!(out, "{}{state}\n    {}", l.name, l.summary);
        for c in &l.commands {
            let root = if c.needs_root { "    [root]" } else { "" };
            let _ = writeln!(out, "    $ {}{root}", c.command);
        }
        out.push('\n');
    }
    let (lines, missing) = sudoers(listed, user, path);
    if lines.is_empty() {
        out.push_str("No enabled collector needs root.\n");
    } else {
        let _ = writeln!(
            out,
            "Commands marked [root] run through `sudo -n` when become = \"sudo\" and the user is not root.\n\
             Sudoers lines for user {user} (visudo -f /etc/sudoers.d/cmdb-agent):\n"
        );
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        if !missing.is_empty() {
            let _ = writeln!(
                out,
                "\nNot found on this machine (path assumed in /usr/sbin; adjust for your hosts): {}",
                missing.join(", ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lists_every_builtin_command_and_sudoers_for_root_ones() {
        let enabled: Vec<String> = COLLECTORS.iter().map(|c| c.name().to_owned()).collect();
        let externals = vec![ExternalCollector {
            name: "raid".into(),
            command: "/usr/local/bin/raid-facts --level=all".into(),
            timeout: Duration::from_secs(10),
            needs_root: true,
        }];
        let mut with_raid = enabled.clone();
        with_raid.push("raid".into());
        let listed = collectors(&with_raid, &externals);
        let text = render(&listed, "cmdb", "/nonexistent");
        for c in COLLECTORS {
            for p in c.probes() {
                assert!(text.contains(&format!("$ {}", p.command)), "{} missing:\n{text}", p.command);
            }
        }
        let (lines, missing) = sudoers(&listed, "cmdb", "/nonexistent");
        assert!(missing.contains(&"dmidecode".to_owned()), "{missing:?}");
        assert_eq!(lines[0], "Defaults:cmdb !requiretty");
        assert!(lines[1].contains("/usr/local/bin/raid-facts --level\\=all"), "{}", lines[1]);
        for c in COLLECTORS {
            for p in c.probes().iter().filter(|p| p.needs_root) {
                let program = p.command.split_whitespace().next().unwrap_or_default();
                assert!(lines[1].contains(&format!("/usr/sbin/{program}")), "{program}: {}", lines[1]);
            }
        }
    }

    #[test]
    fn candidate_programs_found_on_the_host_get_their_own_entries() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["MegaCli64", "storcli"] {
            let path = dir.path().join(name);
            std::fs::write(&path, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let line = CommandLine::new("MegaCli -PDList -aALL -NoLog", true, &["MegaCli64", "MegaCli"]);
        let (entries, missing) = sudoers_entries(&line, &dir.path().display().to_string());
        assert_eq!(entries, vec![format!("{}/MegaCli64 -PDList -aALL -NoLog", dir.path().display())]);
        assert!(missing.is_empty());
    }

    #[test]
    fn disabled_collectors_get_no_sudoers_line() {
        let listed = collectors(&["cpu".to_owned()], &[]);
        assert!(sudoers(&listed, "cmdb", "/nonexistent").0.is_empty());
        assert!(render(&listed, "cmdb", "/nonexistent").contains("board  (not enabled)"));
    }
}
