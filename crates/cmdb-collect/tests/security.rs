//! Attacks on the collector side, each reproduced against the real part it targets.
//!
//! - The bundled script writes no file: every redirection goes to /dev/null or a file descriptor
//!   (checked on the text), nothing appears in `$TMPDIR` while it runs under sh, dash and busybox,
//!   and a symlink planted where the old script wrote its stderr (`$TMPDIR/.cmdb-$$.err`) is
//!   never followed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cmdb_collect::bundle::{self, Become};
use cmdb_collect::{Exit, Plan, ProbeSpec};

// ---------------------------------------------------------------------------------------------
// The bundled script and temporary files.

/// One redirection found in shell code: the operator as written (with its fd) and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Redirection {
    operator: String,
    target: String,
}

/// Every redirection in `code` that the shell would perform, outside quotes, inside `$( )`
/// included. Enough of sh's grammar for the bundled script and the probes' snippets: quotes,
/// backslashes, command substitution, arithmetic (skipped: its `<` and `>` compare numbers).
fn redirections(code: &str) -> Vec<Redirection> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    // Open `$(` substitutions, each with the depth of plain parentheses inside it, and whether
    // the innermost context is a double-quoted string.
    let mut stack: Vec<(bool, usize)> = vec![(false, 0)];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let in_double = stack.last().is_some_and(|(dq, _)| *dq);
        if c == '\\' {
            i += 2;
            continue;
        }
        if c == '$' && chars.get(i + 1) == Some(&'(') {
            if chars.get(i + 2) == Some(&'(') {
                // Arithmetic: skip to the matching `))`.
                let mut depth = 0;
                i += 1;
                while i < chars.len() {
                    match chars[i] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            stack.push((false, 0));
            i += 2;
            continue;
        }
        if in_double {
            if c == '"' {
                stack.pop();
            }
            i += 1;
            continue;
        }
        match c {
            '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                continue;
            }
            '"' => stack.push((true, 0)),
            '(' => {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
            }
            ')' => {
                let open_substitutions = stack.len() - 1;
                match stack.last_mut() {
                    Some((_, depth)) if *depth > 0 => *depth -= 1,
                    _ if open_substitutions > 0 => {
                        stack.pop();
                    }
                    _ => {}
                }
            }
            '>' | '<' => {
                let mut start = i;
                while start > 0 && chars[start - 1].is_ascii_digit() {
                    start -= 1;
                }
                let mut end = i + 1;
                while end < chars.len() && matches!(chars[end], '>' | '<' | '&' | '|') {
                    end += 1;
                }
                let operator: String = chars[start..end].iter().collect();
                let mut t = end;
                while t < chars.len() && chars[t] == ' ' {
                    t += 1;
                }
                let mut target = String::new();
                let mut quote: Option<char> = None;
                while t < chars.len() {
                    let ch = chars[t];
                    match quote {
                        Some(q) if ch == q => quote = None,
                        Some(_) => {}
                        None if ch == '\'' || ch == '"' => quote = Some(ch),
                        None if ch.is_whitespace() || ";|&()<>".contains(ch) => break,
                        None => {}
                    }
                    target.push(ch);
                    t += 1;
                }
                found.push(Redirection { operator, target });
                i = t;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// True for the redirections the bundled script may use: /dev/null, or a file descriptor.
fn harmless(r: &Redirection) -> bool {
    let to_descriptor = r.operator.ends_with('&') && (r.target == "-" || r.target.chars().all(|c| c.is_ascii_digit()));
    let heredoc = r.operator.contains("<<");
    !heredoc && (r.target == "/dev/null" || (to_descriptor && !r.target.is_empty()))
}

#[test]
fn the_redirection_scanner_finds_what_the_shell_would_do() {
    let found = redirections(
        r#"a 2>"$E" </dev/null; b=$(c 2>&1 >&3 3>&-) 'd > x' "e > y" "$(f >>/tmp/z)" $((1 > 2)) \> g; h<<EOF"#,
    );
    let pairs: Vec<(&str, &str)> = found.iter().map(|r| (r.operator.as_str(), r.target.as_str())).collect();
    assert_eq!(
        pairs,
        vec![
            ("2>", "\"$E\""),
            ("<", "/dev/null"),
            ("2>&", "1"),
            (">&", "3"),
            ("3>&", "-"),
            (">>", "/tmp/z"),
            ("<<", "EOF"),
        ]
    );
    let verdicts: Vec<bool> = found.iter().map(harmless).collect();
    assert_eq!(verdicts, vec![false, true, true, true, true, false, false]);
}

#[test]
fn the_bundled_script_redirects_only_to_dev_null_or_file_descriptors() {
    let plan = Plan::all_builtin();
    let mut probes: Vec<ProbeSpec> = plan.probes().to_vec();
    // A probe whose programs are missing takes the script's other branch.
    probes.push(ProbeSpec {
        id: "absent".into(),
        script: "no-such-tool-cmdb".into(),
        needs_root: true,
        replay_file: None,
        timeout: Duration::from_secs(5),
        may_hang: true,
        programs: vec!["no-such-tool-cmdb".into()],
    });
    for become_root in [Become::None, Become::Sudo] {
        let script = bundle::script(&probes, become_root, &bundle::new_boundary());
        let found = redirections(&script);
        // Each probe's capture redirects at least its stderr, its stdout and its stdin.
        assert!(found.len() >= 3 * probes.len(), "the scanner read the script: {found:?}");
        let unsafe_ones: Vec<&Redirection> = found.iter().filter(|r| !harmless(r)).collect();
        assert!(unsafe_ones.is_empty(), "redirections to files in the bundled script: {unsafe_ones:?}\n{script}");
    }
    // What the remote shell runs from inside the quotes: the probes' own snippets.
    for probe in &probes {
        let unsafe_ones: Vec<Redirection> = redirections(&probe.script).into_iter().filter(|r| !harmless(r)).collect();
        assert!(unsafe_ones.is_empty(), "probe {} redirects to a file: {unsafe_ones:?}", probe.id);
    }
}

/// The shells the script must run under, as installed here (`sh` always).
fn shells() -> Vec<Vec<&'static str>> {
    let mut shells = vec![vec!["sh"]];
    if Path::new("/usr/bin/dash").exists() || Path::new("/bin/dash").exists() {
        shells.push(vec!["dash"]);
    }
    if Path::new("/bin/busybox").exists() || Path::new("/usr/bin/busybox").exists() {
        shells.push(vec!["busybox", "sh"]);
    }
    shells
}

fn spec(id: &str, script: &str) -> ProbeSpec {
    ProbeSpec {
        id: id.into(),
        script: script.into(),
        needs_root: false,
        replay_file: None,
        timeout: Duration::from_secs(10),
        may_hang: false,
        programs: Vec::new(),
    }
}

/// Every built-in probe, plus one listing `$TMPDIR` while the script runs and one writing stderr.
fn probes_with_witnesses() -> Vec<ProbeSpec> {
    let mut probes: Vec<ProbeSpec> = Plan::all_builtin().probes().to_vec();
    probes.push(spec("tmpdir-listing", "ls -A \"$TMPDIR\""));
    let mut stderr = spec("stderr", "echo out; printf 'oops\\n\\n' >&2; exit 3");
    stderr.may_hang = true;
    probes.push(stderr);
    probes
}

/// Starts `shell -s` with `TMPDIR=tmpdir`, lets `before` see its pid (the script's `$$`) while
/// the shell waits for its script, then feeds `script` and returns stdout.
fn run_script(shell: &[&str], tmpdir: &Path, script: &str, before: impl FnOnce(u32)) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(shell[0])
        .args(&shell[1..])
        .arg("-s")
        .env("TMPDIR", tmpdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{shell:?}: {e}"));
    before(child.id());
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(script.as_bytes()).expect("script written");
    drop(stdin);
    let output = child.wait_with_output().expect("shell ran");
    output.stdout
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read tmpdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_bundled_script_leaves_tmpdir_empty_and_still_parses() {
    let probes = probes_with_witnesses();
    for shell in shells() {
        let tmpdir = tempfile::tempdir().expect("tempdir");
        let boundary = bundle::new_boundary();
        let stdout = run_script(&shell, tmpdir.path(), &bundle::script(&probes, Become::None, &boundary), |_| {});
        let outputs = bundle::split(&stdout, &probes, &boundary);
        for probe in &probes {
            let output = outputs.get(&probe.id).expect("every probe framed");
            assert_ne!(output.exit, Exit::Lost, "{shell:?}: probe {} lost", probe.id);
        }
        let listing = outputs.get("tmpdir-listing").expect("listing");
        assert!(listing.succeeded(), "{shell:?}: {listing:?}");
        assert_eq!(listing.text(), "", "{shell:?}: files in $TMPDIR while the script ran");
        assert_eq!(entries(tmpdir.path()), Vec::<String>::new(), "{shell:?}: files left in $TMPDIR");
        // stderr still comes back byte for byte (trailing newlines included), after stdout.
        let stderr = outputs.get("stderr").expect("stderr probe");
        assert_eq!(
            (stderr.stdout.as_slice(), stderr.stderr.as_str(), stderr.exit),
            (&b"out\n"[..], "oops\n\n", Exit::Code(3))
        );
        assert!(outputs.get("cpuinfo").is_some_and(|o| o.succeeded()), "{shell:?}: {:?}", outputs.get("cpuinfo"));
    }
}

#[test]
fn a_symlink_planted_at_the_old_stderr_path_is_never_followed() {
    let probes = probes_with_witnesses();
    for shell in shells() {
        let tmpdir = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("victim dir");
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, "precious\n").expect("victim");
        let mut planted_name = String::new();
        let boundary = bundle::new_boundary();
        let script = bundle::script(&probes, Become::None, &boundary);
        // What a local user of the target could do: the name the old script used was
        // `$TMPDIR/.cmdb-$$.err`, and `$$` is the pid of the shell now waiting for its script.
        let stdout = run_script(&shell, tmpdir.path(), &script, |pid| {
            planted_name = format!(".cmdb-{pid}.err");
            std::os::unix::fs::symlink(&victim, tmpdir.path().join(&planted_name)).expect("symlink planted");
        });
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "precious\n",
            "{shell:?}: the victim was written"
        );
        assert_eq!(entries(tmpdir.path()), vec![planted_name.clone()], "{shell:?}: only the planted link is there");
        let outputs = bundle::split(&stdout, &probes, &boundary);
        assert_eq!(outputs.get("stderr").expect("stderr probe").stderr, "oops\n\n", "{shell:?}");
    }
}
