//! Fast local collection for agent mode.
//!
//! Over SSH and Salt the probes must travel as one bundled script. On the agent's own machine
//! there is no such constraint, and running that script costs three process spawns per probe
//! (`timeout`, `sh -c`, the command) one after the other. Here instead every probe runs at the
//! same time, and the shell is skipped wherever the result is certain without it:
//!
//! - a file read (`cat /proc/cpuinfo`; `cat A 2>/dev/null || cat B ...` up to the first file that
//!   reads) is done in-process; so is the `hostname` probe (the kernel's node name);
//! - a plain command line is executed directly, and so is the first alternative of
//!   `cmd 2>/dev/null || ...` (when it exits 0 the shell would have printed exactly its output);
//! - a probe none of whose programs ([`cmdb_collect::Probe::programs`]) is on PATH is "not found"
//!   without a spawn, with the message the bundle prints;
//! - everything else, and every shortcut that does not succeed cleanly, runs the probe's own
//!   script through `sh -c` with the bundle's environment (`LC_ALL=C`, its PATH, `SUDO`).
//!
//! The [`Outputs`] are the same the bundled script yields (stdout byte for byte, the same exit
//! classification), so the same parsers see the same input; a test compares both paths on the
//! machine it runs on.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cmdb_collect::bundle::{self, STDERR_LIMIT};
use cmdb_collect::{Become, Exit, Outputs, ProbeOutput, ProbeSpec};
use tokio::process::Command;

/// Directories the bundled script appends to PATH (sbin directories, vendor RAID tools).
/// Read from the bundle itself so the two paths cannot drift apart.
pub fn bundle_path_suffix() -> String {
    let script = bundle::script(&[], Become::None, "0000000000000000");
    script
        .lines()
        .find_map(|line| line.strip_prefix("PATH=\"$PATH:").and_then(|rest| rest.split('"').next()).map(str::to_owned))
        .unwrap_or_else(|| "/usr/local/sbin:/usr/sbin:/sbin".to_owned())
}

/// The PATH probes run with: the agent's PATH plus the bundle's additions.
pub fn probe_path() -> String {
    let base = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned());
    format!("{base}:{}", bundle_path_suffix())
}

/// Finds `program` in `path` (a PATH string) as an executable file, as `command -v` does.
pub fn which(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_executable(&p).then_some(p);
    }
    path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(program)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True when the agent runs as root (the owner of /proc/self is the effective user).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Splits a script on its top-level `||`. `None` when the script has anything else at top level
/// that would run after a successful first alternative (`;`, `&`, `&&`, a pipe, a newline), since
/// then the first alternative's output is not the whole output. Quotes and `{ }`, `( )`, `$( )`
/// groups are respected.
pub fn top_level_alternatives(script: &str) -> Option<Vec<&str>> {
    let bytes = script.as_bytes();
    let (mut depth, mut single, mut double) = (0i32, false, false);
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' if !single => i += 1,
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            _ if single || double => {}
            b'{' | b'(' => depth += 1,
            b'}' | b')' => depth -= 1,
            _ if depth > 0 => {}
            b'|' if bytes.get(i + 1) == Some(&b'|') => {
                parts.push(script[start..i].trim());
                i += 1;
                start = i + 1;
            }
            b'|' | b'&' | b';' | b'\n' => return None,
            _ => {}
        }
        i += 1;
    }
    if single || double || depth != 0 {
        return None;
    }
    parts.push(script[start..].trim());
    Some(parts)
}

/// Directories whose files a probe may read in-process. Anything else goes through the shell.
const READABLE_PREFIXES: &[&str] = &["/proc/", "/sys/", "/etc/", "/usr/lib/", "/var/lib/"];

fn readable_path(word: &str) -> Option<&str> {
    let ok = READABLE_PREFIXES.iter().any(|p| word.starts_with(p))
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_'))
        && !word.contains("..");
    ok.then_some(word)
}

/// The file an alternative reads when it is exactly `cat FILE`, or `cat FILE 2>/dev/null` when it
/// is not the last alternative (a failing last `cat` would print its own message).
fn cat_file(alternative: &str, last: bool) -> Option<&str> {
    let words: Vec<&str> = alternative.split_whitespace().collect();
    match words.as_slice() {
        ["cat", file] if last => readable_path(file),
        ["cat", file, "2>/dev/null"] if !last => readable_path(file),
        _ => None,
    }
}

/// The output of `probe` read in-process: the first file of its leading `cat` alternatives that
/// reads. `None` when the script is not such a chain or no file reads (the shell then runs it).
fn read_in_process(probe: &ProbeSpec, path: &str) -> Option<ProbeOutput> {
    if probe.needs_root {
        return None;
    }
    if probe.script.trim() == "hostname 2>/dev/null || cat /etc/hostname" {
        // `hostname` prints the kernel's node name (gethostname), which is this file's content.
        return match which("hostname", path) {
            Some(_) => std::fs::read("/proc/sys/kernel/hostname").ok().map(ProbeOutput::ok),
            None => std::fs::read("/etc/hostname").ok().map(ProbeOutput::ok),
        };
    }
    if probe.script == DMI_SYSFS_SCRIPT {
        return Some(dmi_sysfs(Path::new("/sys/class/dmi/id")));
    }
    let alternatives = top_level_alternatives(&probe.script)?;
    for (index, alternative) in alternatives.iter().enumerate() {
        let file = cat_file(alternative, index + 1 == alternatives.len())?;
        if let Ok(bytes) = std::fs::read(file) {
            return Some(ProbeOutput::ok(bytes));
        }
    }
    None
}

/// The board collector's DMI sysfs probe, as this emulation knows it. A different script (the
/// collector changed) no longer matches and simply runs through the shell.
const DMI_SYSFS_SCRIPT: &str = "d=/sys/class/dmi/id; if [ ! -d \"$d\" ]; then echo 'dmi: absent'; exit 0; fi; echo 'dmi: present'; \
for f in sys_vendor product_name product_serial product_uuid; do \
if [ -r \"$d/$f\" ] && v=$(cat \"$d/$f\" 2>/dev/null); then printf '%s: %s\\n' \"$f\" \"$v\"; \
elif [ -e \"$d/$f\" ]; then printf '%s! unreadable\\n' \"$f\"; fi; done";

/// What [`DMI_SYSFS_SCRIPT`] prints for directory `dir`: `$(cat f)` drops trailing newlines, an
/// existing file that cannot be read is "unreadable", a missing one is not mentioned.
fn dmi_sysfs(dir: &Path) -> ProbeOutput {
    if !dir.is_dir() {
        return ProbeOutput::ok(&b"dmi: absent\n"[..]);
    }
    let mut out = b"dmi: present\n".to_vec();
    for name in ["sys_vendor", "product_name", "product_serial", "product_uuid"] {
        let file = dir.join(name);
        match std::fs::read(&file) {
            Ok(mut value) => {
                while value.last() == Some(&b'\n') {
                    value.pop();
                }
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(&value);
                out.push(b'\n');
            }
            Err(_) if file.symlink_metadata().is_ok() => {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"! unreadable\n");
            }
            Err(_) => {}
        }
    }
    ProbeOutput::ok(out)
}

/// Splits a command into argv when every word is free of shell syntax.
fn plain_argv(script: &str) -> Option<Vec<String>> {
    let plain = |b: u8| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b',' | b'=' | b':' | b'+' | b'@' | b'%')
    };
    let words: Vec<String> = script.split_whitespace().map(str::to_owned).collect();
    (!words.is_empty() && words.iter().all(|w| w.bytes().all(plain))).then_some(words)
}

/// `$SUDO cmd` with the bundle's value of SUDO substituted.
fn expand_sudo(command: &str, sudo: &str) -> String {
    match command.trim_start().strip_prefix("$SUDO ") {
        Some(rest) if sudo.is_empty() => rest.to_owned(),
        Some(rest) => format!("{sudo} {rest}"),
        None => command.to_owned(),
    }
}

/// Exit classification exactly as [`cmdb_collect::bundle::split`] does it for `sh`'s `$?`.
fn classify(code: i32) -> Exit {
    match code {
        127 => Exit::NotFound,
        124 | 137 | 143 => Exit::TimedOut,
        code => Exit::Code(code),
    }
}

/// How to run a probe's command.
enum Run<'a> {
    /// Execute this argv directly.
    Direct(Vec<String>),
    /// `sh -c` this script.
    Shell(&'a str),
}

/// Runs one command; `None` when a direct command is not in PATH.
async fn spawn(run: Run<'_>, sudo: &str, path: &str, timeout: Duration) -> Option<ProbeOutput> {
    let mut command = match run {
        Run::Direct(argv) => {
            let Some(program) = which(&argv[0], path) else {
                // The shell's "not found" message differs between dash, bash and busybox; let the
                // caller run the script so the message is the one the bundle would carry.
                return None;
            };
            let mut c = Command::new(program);
            c.args(&argv[1..]);
            c
        }
        Run::Shell(script) => {
            // POSIX puts sh in /bin; naming it saves a PATH search of failed execs per probe.
            let sh = if Path::new("/bin/sh").exists() { "/bin/sh" } else { "sh" };
            let mut c = Command::new(sh);
            // $0 as the bundle's inner `sh -c` has it: the shell's error messages start with it.
            c.arg0("sh");
            c.arg("-c").arg(script).env("SUDO", sudo);
            c
        }
    };
    command
        .env("LC_ALL", "C")
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let lost = |message: String| ProbeOutput { stdout: Vec::new(), stderr: message, exit: Exit::Lost };
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Some(ProbeOutput { stdout: Vec::new(), stderr: e.to_string(), exit: Exit::Code(126) });
        }
        Err(e) => return Some(lost(e.to_string())),
    };
    // The bundle gives every probe at least one second (`timeout` takes whole seconds).
    let output = match tokio::time::timeout(timeout.max(Duration::from_secs(1)), child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Some(lost(e.to_string())),
        Err(_) => return Some(ProbeOutput { stdout: Vec::new(), stderr: String::new(), exit: Exit::TimedOut }),
    };
    let code = {
        use std::os::unix::process::ExitStatusExt;
        output.status.code().or_else(|| output.status.signal().map(|s| 128 + s)).unwrap_or(128)
    };
    let stderr_end = output.stderr.len().min(STDERR_LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr[..stderr_end]).into_owned();
    Some(ProbeOutput { stdout: output.stdout, stderr, exit: classify(code) })
}

/// What the shell said about each program missing from PATH. `sh -c 'prog args'` fails the same
/// way for every probe that is only `prog ...` ("sh: 1: prog: not found" from dash), so the
/// shell is asked once per program rather than once per probe.
type MissingPrograms = std::sync::Arc<tokio::sync::Mutex<std::collections::HashMap<String, ProbeOutput>>>;

async fn run_probe(
    probe: ProbeSpec,
    sudo: &'static str,
    path: String,
    missing: MissingPrograms,
) -> (String, ProbeOutput) {
    if let Some(first) = probe.programs.first()
        && probe.programs.iter().all(|p| which(p, &path).is_none())
    {
        let stderr = format!("{}\n", bundle::missing_program_message(first));
        return (probe.id, ProbeOutput { stdout: Vec::new(), stderr, exit: Exit::NotFound });
    }
    if let Some(alternatives) = top_level_alternatives(&probe.script) {
        if let [only] = alternatives.as_slice()
            && let Some(argv) = plain_argv(&expand_sudo(only, sudo))
        {
            let program = argv[0].clone();
            if let Some(output) = spawn(Run::Direct(argv), sudo, &path, probe.timeout).await {
                return (probe.id, output);
            }
            let mut known = missing.lock().await;
            if let Some(output) = known.get(&program) {
                return (probe.id, output.clone());
            }
            let output = spawn(Run::Shell(&probe.script), sudo, &path, probe.timeout)
                .await
                .unwrap_or_else(ProbeOutput::not_found);
            if output.exit == Exit::NotFound {
                known.insert(program, output.clone());
            }
            return (probe.id, output);
        }
        // `cmd 2>/dev/null || ...`: when cmd succeeds, its stdout is the script's whole output
        // and its silenced stderr is no part of it.
        if let [first, _, ..] = alternatives.as_slice()
            && let Some(command) = first.strip_suffix("2>/dev/null")
            && let Some(argv) = plain_argv(&expand_sudo(command, sudo))
            && let Some(output) = spawn(Run::Direct(argv), sudo, &path, probe.timeout).await
            && output.succeeded()
        {
            return (probe.id, ProbeOutput { stderr: String::new(), ..output });
        }
    }
    let output = spawn(Run::Shell(&probe.script), sudo, &path, probe.timeout).await;
    (probe.id, output.unwrap_or_else(ProbeOutput::not_found))
}

/// Runs every probe on this machine: file reads in-process, commands concurrently.
pub async fn run_probes(probes: &[ProbeSpec], become_root: Become) -> Outputs {
    let path = probe_path();
    let sudo: &'static str = match become_root {
        Become::Sudo if !running_as_root() => "sudo -n",
        _ => "",
    };
    let mut outputs = Outputs::default();
    let mut running = tokio::task::JoinSet::new();
    let missing = MissingPrograms::default();
    for probe in probes {
        match read_in_process(probe, &path) {
            Some(output) => outputs.insert(probe.id.clone(), output),
            None => {
                running.spawn(run_probe(probe.clone(), sudo, path.clone(), missing.clone()));
            }
        }
    }
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((id, output)) => outputs.insert(id, output),
            Err(e) => tracing::error!(error = %e, "a probe task failed"),
        }
    }
    // A probe whose task died is reported as lost, like a frame missing from the bundle's output.
    for probe in probes {
        if outputs.get(&probe.id).is_none() {
            outputs
                .insert(probe.id.clone(), ProbeOutput { stdout: Vec::new(), stderr: String::new(), exit: Exit::Lost });
        }
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_alternatives_respect_quotes_and_groups() {
        assert_eq!(top_level_alternatives("cat /proc/cpuinfo"), Some(vec!["cat /proc/cpuinfo"]));
        assert_eq!(
            top_level_alternatives("a 2>/dev/null || b || { v=$(c) && printf '%s|x;' \"$v\"; }"),
            Some(vec!["a 2>/dev/null", "b", "{ v=$(c) && printf '%s|x;' \"$v\"; }"])
        );
        assert_eq!(top_level_alternatives("a || b && c"), None, "c would run after a");
        assert_eq!(top_level_alternatives("a || b; c"), None);
        assert_eq!(top_level_alternatives("cat /proc/cpuinfo | head"), None);
        assert_eq!(top_level_alternatives("echo 'unclosed"), None);
    }

    #[test]
    fn recognises_file_reads_only() {
        assert_eq!(cat_file("cat /proc/cpuinfo", true), Some("/proc/cpuinfo"));
        assert_eq!(cat_file("cat /etc/os-release 2>/dev/null", false), Some("/etc/os-release"));
        assert_eq!(cat_file("cat /etc/os-release", false), None, "its error message would show");
        assert_eq!(cat_file("cat /etc/os-release 2>/dev/null", true), None, "its failure would be silent");
        assert_eq!(cat_file("cat /home/x/secret", true), None);
        assert_eq!(cat_file("cat /etc/../root/x", true), None);
        assert_eq!(cat_file("lsblk -J", true), None);
    }

    #[test]
    fn plain_command_lines_only() {
        assert_eq!(plain_argv("ip -j addr show").map(|v| v.len()), Some(4));
        assert!(plain_argv("lsblk -J -b -d -o NAME,SIZE,ROTA").is_some());
        assert!(plain_argv("for c in a b; do x; done").is_none());
        assert!(plain_argv("echo \"$HOME\"").is_none());
        assert!(plain_argv("a > b").is_none());
    }

    #[test]
    fn dmi_sysfs_emulation_matches_the_script() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = dir.path().join("id");
        let run = |d: &Path| {
            let script = DMI_SYSFS_SCRIPT.replace("d=/sys/class/dmi/id;", &format!("d={};", d.display()));
            let out = std::process::Command::new("sh").arg("-c").arg(script).output().expect("sh runs");
            (out.status.success(), out.stdout)
        };
        assert_eq!(run(&id), (true, dmi_sysfs(&id).stdout), "absent");
        std::fs::create_dir(&id).expect("mkdir");
        std::fs::write(id.join("sys_vendor"), "Dell Inc.\n\n").expect("write");
        std::fs::write(id.join("product_name"), "PowerEdge R630 \n").expect("write");
        std::fs::write(id.join("product_uuid"), "4c4c4544-0057").expect("write");
        std::fs::create_dir(id.join("product_serial")).expect("an unreadable entry");
        let (ok, expected) = run(&id);
        assert!(ok);
        assert_eq!(String::from_utf8_lossy(&dmi_sysfs(&id).stdout), String::from_utf8_lossy(&expected));
    }

    #[test]
    fn path_suffix_comes_from_the_bundle() {
        assert!(bundle_path_suffix().contains("/usr/sbin"), "{}", bundle_path_suffix());
    }

    #[tokio::test]
    async fn exits_are_classified_like_the_bundle() {
        let spec = |id: &str, script: &str, secs: u64| ProbeSpec {
            id: id.into(),
            script: script.into(),
            needs_root: false,
            replay_file: None,
            timeout: Duration::from_secs(secs),
            may_hang: true,
            programs: Vec::new(),
        };
        let outputs = run_probes(
            &[
                spec("missing", "no-such-command-cmdb --x", 5),
                spec("fails", "echo out; echo oops >&2; exit 3", 5),
                spec("hangs", "sleep 30", 1),
                spec("file", "cat /proc/self/status", 5),
            ],
            Become::None,
        )
        .await;
        assert_eq!(outputs.get("missing").expect("ran").exit, Exit::NotFound);
        let fails = outputs.get("fails").expect("ran");
        assert_eq!((fails.exit, fails.stdout.as_slice(), fails.stderr.trim()), (Exit::Code(3), &b"out\n"[..], "oops"));
        assert_eq!(outputs.get("hangs").expect("ran").exit, Exit::TimedOut);
        assert!(outputs.get("file").expect("read").text().contains("Name:"));
    }

    /// The fast path and the bundled script must give the parsers the same input on this machine.
    #[tokio::test]
    async fn same_outputs_as_the_bundled_script() {
        let plan = cmdb_collect::Plan::all_builtin();
        let boundary = bundle::new_boundary();
        let script = plan.script(Become::None, &boundary);
        let scripted = cmdb_collect::transport::local::run(&script, Duration::from_secs(120)).await.expect("sh runs");
        let via_script = plan.split(&scripted.stdout, &boundary);
        let fast = run_probes(plan.probes(), Become::None).await;
        // Values that change between two reads of the same source (CPU clock, address
        // lifetimes counting down) are blanked on both sides.
        let normalise = |text: String| -> String {
            let mut out = text;
            for key in
                ["cpu MHz\t\t: ", "valid_lft ", "preferred_lft ", "\"valid_life_time\":", "\"preferred_life_time\":"]
            {
                let mut result = String::with_capacity(out.len());
                let mut rest = out.as_str();
                while let Some(at) = rest.find(key) {
                    result.push_str(&rest[..at + key.len()]);
                    rest = rest[at + key.len()..].trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '.');
                }
                result.push_str(rest);
                out = result;
            }
            out
        };
        for probe in plan.probes() {
            let a = via_script.get(&probe.id).expect("script ran the probe");
            let b = fast.get(&probe.id).expect("fast path ran the probe");
            assert_eq!(a.exit, b.exit, "exit of {}: script {a:?} fast {b:?}", probe.id);
            assert_eq!(a.stderr, b.stderr, "stderr of {}", probe.id);
            let (mut a, mut b) = (normalise(a.text().into_owned()), normalise(b.text().into_owned()));
            if probe.id == "meminfo" {
                // Free and cached memory move between two reads (and with them the padding the
                // kernel aligns figures with); the total and the field names do not.
                let keep = |t: &str| {
                    t.lines()
                        .map(|l| {
                            if l.starts_with("MemTotal") {
                                l.to_owned()
                            } else {
                                l.replace(|c: char| c.is_ascii_digit(), "")
                                    .split_whitespace()
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                (a, b) = (keep(&a), keep(&b));
            }
            assert_eq!(a, b, "stdout of {}", probe.id);
        }
    }
}
