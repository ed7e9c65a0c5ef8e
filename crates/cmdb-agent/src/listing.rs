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
        commands: ENVELOPE_PROBES
            .iter()
            .map(|p| CommandLine { command: p.command.to_owned(), needs_root: p.needs_root })
            .collect(),
    }];
    for c in COLLECTORS {
        out.push(Listed {
            name: c.name().to_owned(),
            summary: c.summary().to_owned(),
            enabled: enabled.iter().any(|e| e == c.name()),
            commands: c
                .probes()
                .iter()
                .map(|p| CommandLine { command: p.command.to_owned(), needs_root: p.needs_root })
                .collect(),
        });
    }
    for e in externals {
        out.push(Listed {
            name: e.name.clone(),
            summary: format!("External collector (timeout {}s).", e.timeout.as_secs()),
            enabled: enabled.iter().any(|n| n == &e.name),
            commands: vec![CommandLine { command: e.command.clone(), needs_root: e.needs_root }],
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

/// A command with its program replaced by an absolute path (sudoers requires one): the file found
/// in `path`, else `/usr/sbin/<program>`.
fn absolute_command(command: &str, path: &str) -> String {
    let mut words = command.split_whitespace();
    let Some(program) = words.next() else { return String::new() };
    let program = match local::which(program, path) {
        Some(found) => found.display().to_string(),
        None if program.starts_with('/') => program.to_owned(),
        None => format!("/usr/sbin/{program}"),
    };
    let args: Vec<&str> = words.collect();
    if args.is_empty() { program } else { format!("{program} {}", sudoers_escape(&args.join(" "))) }
}

/// The sudoers lines for the root-only commands of the enabled collectors, for `user`.
pub fn sudoers(listed: &[Listed], user: &str, path: &str) -> Vec<String> {
    let mut commands: Vec<String> = listed
        .iter()
        .filter(|l| l.enabled)
        .flat_map(|l| l.commands.iter())
        .filter(|c| c.needs_root)
        .map(|c| absolute_command(&c.command, path))
        .collect();
    commands.dedup();
    if commands.is_empty() {
        return Vec::new();
    }
    vec![
        // sudo -n over a non-interactive SSH exec has no terminal.
        format!("Defaults:{user} !requiretty"),
        format!("{user} ALL=(root) NOPASSWD: {}", commands.join(", ")),
    ]
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
    let lines = sudoers(listed, user, path);
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
        let lines = sudoers(&listed, "cmdb", "/nonexistent");
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
    fn disabled_collectors_get_no_sudoers_line() {
        let listed = collectors(&["cpu".to_owned()], &[]);
        assert!(sudoers(&listed, "cmdb", "/nonexistent").is_empty());
        assert!(render(&listed, "cmdb", "/nonexistent").contains("board  (not enabled)"));
    }
}
