//! Fast local collection for agent mode.
//!
//! Over SSH and Salt the probes must travel as one bundled script. On the agent's own machine
//! there is no such constraint, and running that script costs three process spawns per probe
//! (`timeout`, `sh -c`, the command) one after the other. Here instead:
//!
//! - probes that only read a file (`cat /proc/cpuinfo`, `cat A 2>/dev/null || cat B`, the
//!   `hostname` probe) are read in-process;
//! - the others run at the same time, each as its own process, directly when the script is a
//!   plain command line and through `sh -c` otherwise, with the bundle's environment
//!   (`LC_ALL=C`, its PATH, `SUDO`) and timeout.
//!
//! The [`Outputs`] are the same the bundled script yields (stdout byte for byte, the same exit
//! classification), so the same parsers see the same input; a test compares both paths on the
//! machine it runs on. A read that fails falls back to running the probe's script, so errors keep
//! the shell's exact status and message.

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

/// Finds `program` in `path` (a PATH string) as an executable file.
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

/// Directories whose files a probe may read in-process. Anything else goes through the shell.
const READABLE_PREFIXES: &[&str] = &["/proc/", "/sys/", "/etc/", "/usr/lib/", "/var/lib/"];

fn readable_path(word: &str) -> Option<&str> {
    let ok = READABLE_PREFIXES.iter().any(|p| word.starts_with(p))
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_'))
        && !word.contains("..");
    ok.then_some(word)
}

/// The files a probe script reads, in fallback order, when the script is exactly `cat A` or
/// `cat A 2>/dev/null || cat B` (any number of alternatives).
fn cat_chain(script: &str) -> Option<Vec<&str>> {
    let mut files = Vec::new();
    let alternatives: Vec<&str> = script.split("||").map(str::trim).collect();
    for (index, alt) in alternatives.iter().enumerate() {
        let mut words = alt.split_whitespace();
        if words.next()? != "cat" {
            return None;
        }
        let file = readable_path(words.next()?)?;
        let rest: Vec<&str> = words.collect();
        let last = index + 1 == alternatives.len();
        // Every alternative but the last must silence its stderr; the last must not.
        match (last, rest.as_slice()) {
            (false, ["2>/dev/null"]) | (true, []) => files.push(file),
            _ => return None,
        }
    }
    (!files.is_empty()).then_some(files)
}

/// The output of `probe` read in-process, when its script is a pure file read and the read works.
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
    let files = cat_chain(&probe.script)?;
    files.iter().find_map(|f| std::fs::read(f).ok()).map(ProbeOutput::ok)
}

/// Splits a script into argv when it is a plain command line: words of characters the shell
/// gives no meaning to.
fn plain_argv(script: &str) -> Option<Vec<String>> {
    let plain = |b: u8| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b',' | b'=' | b':' | b'+' | b'@' | b'%')
    };
    let words: Vec<String> = script.split_whitespace().map(str::to_owned).collect();
    (!words.is_empty() && words.iter().all(|w| w.bytes().all(plain))).then_some(words)
}

/// Exit classification exactly as [`cmdb_collect::bundle::split`] does it for `sh`'s `$?`.
fn classify(code: i32) -> Exit {
    match code {
        127 => Exit::NotFound,
        124 | 137 | 143 => Exit::TimedOut,
        code => Exit::Code(code),
    }
}

async fn run_probe(probe: ProbeSpec, sudo: &'static str, path: String) -> (String, ProbeOutput) {
    // Root-only commands are written `$SUDO cmd`; substitute the bundle's value of SUDO.
    let expanded = match probe.script.trim_start().strip_prefix("$SUDO ") {
        Some(rest) if sudo.is_empty() => rest.to_owned(),
        Some(rest) => format!("{sudo} {rest}"),
        None => probe.script.clone(),
    };
    let mut command = match plain_argv(&expanded) {
        Some(argv) => {
            let Some(program) = which(&argv[0], &path) else {
                return (probe.id, ProbeOutput::not_found());
            };
            let mut c = Command::new(program);
            c.args(&argv[1..]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(&probe.script).env("SUDO", sudo);
            c
        }
    };
    command
        .env("LC_ALL", "C")
        .env("PATH", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (probe.id, ProbeOutput::not_found()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return (probe.id, ProbeOutput { stdout: Vec::new(), stderr: e.to_string(), exit: Exit::Code(126) });
        }
        Err(e) => return (probe.id, ProbeOutput { stdout: Vec::new(), stderr: e.to_string(), exit: Exit::Lost }),
    };
    // The bundle gives every probe at least one second (`timeout` takes whole seconds).
    let limit = probe.timeout.max(Duration::from_secs(1));
    let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return (probe.id, ProbeOutput { stdout: Vec::new(), stderr: e.to_string(), exit: Exit::Lost }),
        Err(_) => return (probe.id, ProbeOutput { stdout: Vec::new(), stderr: String::new(), exit: Exit::TimedOut }),
    };
    let code = {
        use std::os::unix::process::ExitStatusExt;
        output.status.code().or_else(|| output.status.signal().map(|s| 128 + s)).unwrap_or(128)
    };
    let stderr_end = output.stderr.len().min(STDERR_LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr[..stderr_end]).into_owned();
    (probe.id, ProbeOutput { stdout: output.stdout, stderr, exit: classify(code) })
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
    for probe in probes {
        match read_in_process(probe, &path) {
            Some(output) => outputs.insert(probe.id.clone(), output),
            None => {
                running.spawn(run_probe(probe.clone(), sudo, path.clone()));
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
    fn recognises_file_reads_only() {
        assert_eq!(cat_chain("cat /proc/cpuinfo"), Some(vec!["/proc/cpuinfo"]));
        assert_eq!(
            cat_chain("cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release"),
            Some(vec!["/etc/os-release", "/usr/lib/os-release"])
        );
        assert_eq!(cat_chain("cat /proc/cpuinfo | head"), None);
        assert_eq!(cat_chain("cat /home/x/secret"), None);
        assert_eq!(cat_chain("cat /etc/../root/x"), None);
        assert_eq!(cat_chain("cat /etc/a || cat /etc/b"), None, "the first alternative's stderr would show");
        assert_eq!(cat_chain("lsblk -J"), None);
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
            let (mut a, mut b) = (normalise(a.text().into_owned()), normalise(b.text().into_owned()));
            if probe.id == "meminfo" {
                // Free and cached memory move between two reads; the total and the fields do not.
                let keep = |t: &str| {
                    t.lines()
                        .map(|l| {
                            if l.starts_with("MemTotal") {
                                l.to_owned()
                            } else {
                                l.replace(|c: char| c.is_ascii_digit(), "")
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
