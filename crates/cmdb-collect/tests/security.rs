//! Attacks on the collector side, each reproduced against the real part it targets. Together with
//! `crates/cmdb-agent/tests/security.rs` (the agent's side) these are the security regression tests;
//! the pure rules have unit tests next to their code:
//!
//! - `transport::salt` tests: `check_minion_id` on hostile ids, a minion past the output limit,
//!   the minion-side cut of a runaway script.
//! - `cmdb_agent::terminal` tests: escape sequences and control characters shown, not obeyed.
//!
//! Here:
//!
//! - The bundled script writes no file: every redirection goes to /dev/null or a file descriptor
//!   (checked on the text), nothing appears in `$TMPDIR` while it runs under sh, dash and busybox,
//!   and a symlink planted where the old script wrote its stderr (`$TMPDIR/.cmdb-$$.err`) is
//!   never followed.
//! - One host's output is bounded (remote_output_limit): over SSH (loopback sshd) a host past the
//!   limit, counting stdout and stderr together, fails with "output exceeds N bytes" while the
//!   others answer; through Salt (the loopback master) a minion past it fails alone, and a `salt`
//!   process whose answer for a batch passes the batch's bound is stopped (a stand-in: the real
//!   master trims returns past its max_event_size before they could get there).
//! - Hostile minion ids never reach `salt -L`.

mod ssh_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use cmdb_collect::bundle::{self, Become};
use cmdb_collect::transport::HostFailure;
use cmdb_collect::transport::salt::{self, SaltOptions, check_minion_id};
use cmdb_collect::transport::ssh::SshClient;
use cmdb_collect::{Exit, Plan, ProbeSpec};
use ssh_support::LoopbackHosts;

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

// ---------------------------------------------------------------------------------------------
// The output limit over SSH.

const SSH_PORT: u16 = 2362;

fn ssh_hosts() -> &'static LoopbackHosts {
    static HOSTS: OnceLock<LoopbackHosts> = OnceLock::new();
    HOSTS.get_or_init(|| LoopbackHosts::up(Path::new("/tmp/cmdb-ssh-security-test"), SSH_PORT, 3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_host_past_the_output_limit_fails_and_the_others_answer() {
    let hosts = ssh_hosts();
    let limit = 1024 * 1024;
    let mut options = hosts.options();
    options.output_limit = limit;
    let client = SshClient::new(options).expect("client");
    // One script for every host; sshd tells each which address was dialled. 127.0.0.2 streams
    // 3 MiB of stdout, 127.0.0.3 600 KiB of stdout and 600 KiB of stderr (each under the limit,
    // together over it), 127.0.0.4 a line.
    let script = "case \"$SSH_CONNECTION\" in\n\
                  *' 127.0.0.2 '*) head -c 3145728 /dev/zero ;;\n\
                  *' 127.0.0.3 '*) head -c 614400 /dev/zero; head -c 614400 /dev/zero >&2 ;;\n\
                  *) echo small ;;\n\
                  esac\n";
    let mut runs = tokio::task::JoinSet::new();
    for address in &hosts.addresses {
        let (client, target) = (client.clone(), hosts.target(address));
        runs.spawn(async move { (target.host.clone(), client.run(&target, script).await) });
    }
    let mut results = std::collections::BTreeMap::new();
    while let Some(joined) = runs.join_next().await {
        let (host, result) = joined.expect("task");
        results.insert(host, result);
    }
    for flooding in ["127.0.0.2", "127.0.0.3"] {
        let failure = results[flooding].as_ref().expect_err("past the limit");
        assert_eq!(*failure, HostFailure::OutputLimit { host: format!("{flooding}:{SSH_PORT}"), limit });
        assert_eq!(
            failure.to_string(),
            format!("{flooding}:{SSH_PORT}: output exceeds 1048576 bytes (remote_output_limit)")
        );
    }
    let small = results["127.0.0.4"].as_ref().expect("the host within the limit answers");
    assert_eq!(small.stdout, b"small\n");
}

// ---------------------------------------------------------------------------------------------
// The output limit and minion ids through Salt.

use ssh_support::SALT_DIR;

/// The loopback master and minions m1..m3 (shared with the other Salt tests), started if needed.
fn salt_options(limit: usize, batch_size: usize) -> SaltOptions {
    ssh_support::loopback_salt(batch_size, limit)
}

/// A shell snippet that finds which loopback minion runs it: every minion is this machine, but
/// each runs from its own `$SALT_DIR/m/N` root, which its processes' command lines name.
fn which_minion() -> String {
    format!(
        "me=; p=$$; while [ \"$p\" -gt 1 ] 2>/dev/null; do \
         case \"$(tr '\\000' ' ' </proc/$p/cmdline 2>/dev/null)\" in *'{SALT_DIR}/m/'*) \
         me=$(tr '\\000' ' ' </proc/$p/cmdline | sed 's|.*{SALT_DIR}/m/\\([0-9]*\\).*|m\\1|'); break ;; esac; \
         p=$(cut -d' ' -f4 /proc/$p/stat); done\n"
    )
}

#[tokio::test]
async fn the_loopback_minions_can_tell_themselves_apart() {
    // The Salt tests below rely on it; if this fails, they prove nothing.
    let options = salt_options(1024 * 1024, 3);
    let minions: Vec<String> = ["m1", "m2", "m3"].iter().map(|m| (*m).to_owned()).collect();
    let results = salt::run(&options, &minions, &format!("{}echo \"$me\"\n", which_minion())).await;
    for (minion, result) in results {
        let output = result.unwrap_or_else(|e| panic!("{minion}: {e}"));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), minion);
    }
}

#[tokio::test]
async fn a_minion_past_the_output_limit_fails_and_the_others_answer() {
    // 256 KiB: Salt's master drops a return value past its max_event_size (1 MiB by default) as
    // "VALUE_TRIMMED", so a larger limit could not be crossed through the loopback master.
    let limit = 256 * 1024;
    let options = salt_options(limit, 3);
    let minions: Vec<String> = ["m1", "m2", "m3"].iter().map(|m| (*m).to_owned()).collect();
    // m2 streams 3 MiB (its `head -c` keeps the limit and the status room); m3 prints 200 KiB on
    // stdout and 200 KiB on stderr, each under the limit, together over it; m1 prints a line.
    let script = format!(
        "{}case \"$me\" in\n\
         m2) head -c 3145728 /dev/zero ;;\n\
         m3) head -c 204800 /dev/zero; head -c 204800 /dev/zero | tr '\\000' e >&2 ;;\n\
         *) echo \"small $me\" ;;\n\
         esac\n",
        which_minion()
    );
    let results = salt::run(&options, &minions, &script).await;
    let by_minion: std::collections::BTreeMap<String, _> = results.into_iter().collect();
    for minion in ["m2", "m3"] {
        let failure = by_minion[minion].as_ref().expect_err("past the limit");
        assert_eq!(failure.to_string(), format!("minion {minion}: output exceeds 262144 bytes (remote_output_limit)"));
    }
    let output = by_minion["m1"].as_ref().unwrap_or_else(|e| panic!("m1: {e}"));
    assert_eq!(output.stdout, b"small m1\n");
}

#[tokio::test]
async fn a_salt_answer_past_the_batch_bound_stops_salt_and_fails_only_that_batch() {
    // The loopback master cannot be made to answer past the bound (it trims what exceeds its
    // max_event_size), so a stand-in plays a master configured with a large max_event_size, or
    // a broken wrapper: for the batch holding m2 it prints without end.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let flooding = dir.path().join("salt");
    std::fs::write(
        &flooding,
        "#!/bin/sh\ncase \" $* \" in *' -L m2 '*) exec yes 0123456789abcdef ;; esac\necho '{}'\n",
    )
    .expect("stand-in");
    std::fs::set_permissions(&flooding, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let limit = 64 * 1024;
    let options = SaltOptions {
        salt_bin: flooding,
        extra_args: Vec::new(),
        timeout: Duration::from_secs(5),
        batch_size: 1,
        output_limit: limit,
    };
    let minions: Vec<String> = ["m1", "m2", "m3"].iter().map(|m| (*m).to_owned()).collect();
    // Were salt not stopped at the bound, this would read until the 5-minute command limit.
    let results = tokio::time::timeout(Duration::from_secs(60), salt::run(&options, &minions, "true"))
        .await
        .expect("the flooding salt is stopped at the bound");
    let by_minion: std::collections::BTreeMap<String, _> = results.into_iter().collect();
    match &by_minion["m2"] {
        Err(HostFailure::Other(message)) => {
            let bound = salt::batch_read_limit(limit, 1);
            assert!(message.contains(&format!("exceeds {bound} bytes")), "{message}");
            assert!(message.contains("salt was stopped"), "{message}");
        }
        other => panic!("m2: expected the batch bound, got {other:?}"),
    }
    // The other batches ran on their own (the stand-in knows no minion: an empty answer).
    for minion in ["m1", "m3"] {
        assert!(matches!(by_minion[minion], Err(HostFailure::Unreachable(_))), "{minion}: {:?}", by_minion[minion]);
    }
}

/// A `salt` stand-in that records its arguments, one per line, in `log` and answers nothing:
/// only what reaches the command line matters here.
fn recording_salt(dir: &Path, log: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("salt");
    std::fs::write(&path, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\necho '{{}}'\n", log.display()))
        .expect("fake salt");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Ids that must never be placed in a `salt -L` list, and why.
fn hostile_minion_ids() -> Vec<(String, &'static str)> {
    vec![
        (String::new(), "empty"),
        ("a,b".into(), "comma: a second minion"),
        ("web-01,*".into(), "comma and glob"),
        ("*".into(), "glob: every minion"),
        ("web-0?".into(), "glob"),
        ("web-[0-9]".into(), "glob class"),
        ("web]".into(), "bracket"),
        ("web 01".into(), "space: a second argument to some shells"),
        ("web\t01".into(), "tab"),
        ("web\n01".into(), "newline"),
        ("web\u{a0}01".into(), "non-breaking space"),
        ("web\x1b[2J".into(), "escape sequence"),
        ("web\0".into(), "NUL"),
        ("web\u{9b}".into(), "C1 control"),
        ("../etc/passwd".into(), "slash"),
        ("web\\01".into(), "backslash"),
        ("m".repeat(254), "254 bytes"),
    ]
}

#[test]
fn hostile_minion_ids_are_refused_and_real_ones_pass() {
    for (id, why) in hostile_minion_ids() {
        assert!(check_minion_id(&id).is_err(), "{why}: {id:?} was accepted");
    }
    for id in ["m1", "web-01.example.com", "db_02", "host@site", "xn--mnchen-3ya.example", "M1", &"m".repeat(253)] {
        assert_eq!(check_minion_id(id), Ok(()), "{id}");
    }
}

#[tokio::test]
async fn hostile_minion_ids_never_reach_salt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("argv");
    let options = SaltOptions {
        salt_bin: recording_salt(dir.path(), &log),
        extra_args: Vec::new(),
        timeout: Duration::from_secs(5),
        batch_size: 100,
        output_limit: cmdb_collect::transport::DEFAULT_OUTPUT_LIMIT,
    };
    let mut minions: Vec<String> = hostile_minion_ids().into_iter().map(|(id, _)| id).collect();
    minions.push("good-1".into());
    let results = salt::run(&options, &minions, "true").await;
    let argv = std::fs::read_to_string(&log).expect("salt ran for the good id");
    let lines: Vec<&str> = argv.lines().collect();
    let at = lines.iter().position(|a| *a == "-L").expect("a list target");
    assert_eq!(lines[at + 1], "good-1", "only the plain id is listed: {argv:?}");
    for (minion, result) in &results[..results.len() - 1] {
        match result {
            Err(HostFailure::Other(message)) => assert!(message.starts_with("not asked: "), "{minion:?}: {message}"),
            other => panic!("{minion:?}: expected a refusal, got {other:?}"),
        }
    }
}
