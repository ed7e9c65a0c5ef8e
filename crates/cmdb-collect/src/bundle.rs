//! One shell script per host: every probe, delimited, run once.
//!
//! Root-only commands in probe scripts are written `$SUDO command ...`: the script sets `SUDO` to
//! `sudo -n` when `become = "sudo"` and the user is not root, so the sudoers line is exactly the
//! command (what `cmdb-agent collectors` prints), never `sh` or `timeout`.
//!
//! Each probe's stdout is framed by lines carrying a random boundary, its exit status and the
//! first 4 KiB of its stderr. A newline is printed before the closing marker and stripped again
//! when splitting, so outputs without a trailing newline come back byte for byte. A command that
//! is missing, fails or hangs affects only its own frame.
//!
//! The script writes no file: a probe's stdout goes straight to the script's stdout (a copy of it
//! kept on fd 3), and its stderr is captured by a command substitution and printed after the
//! probe's end marker. A fixed path such as `/tmp/.cmdb-$$.err` would let any local user of the
//! target pre-create it or plant a symlink there, and `mktemp` is not POSIX. Every redirection in
//! the script goes to `/dev/null` or to a file descriptor (`tests/security.rs` checks the text).
//! The capture cannot hold NUL bytes (the shell drops them), which only matters for a diagnostic.
//!
//! The script needs only a POSIX sh, `printf` and (optionally) `timeout`; it runs the same under
//! bash, dash and busybox ash, locally, over SSH and through Salt.

use std::fmt::Write as _;

use crate::probe::{Exit, Outputs, ProbeOutput, ProbeSpec};

/// How root-only probes are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Become {
    /// Run everything as the connecting user; root-only probes may fail with "permission denied".
    #[default]
    None,
    /// Run root-only probes through `sudo -n` (never prompts) unless already root.
    Sudo,
}

/// Bytes of stderr kept per probe.
pub const STDERR_LIMIT: usize = 4096;

/// A fresh random boundary (16 hex digits), so no command output can forge a delimiter.
pub fn new_boundary() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Quotes `text` as one sh word.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Builds the bundled script.
pub fn script(probes: &[ProbeSpec], become_root: Become, boundary: &str) -> String {
    let mut s = String::with_capacity(4096);
    s.push_str("LC_ALL=C; export LC_ALL\n");
    s.push_str(
        "PATH=\"$PATH:/usr/local/sbin:/usr/sbin:/sbin:/opt/MegaRAID/MegaCli:/opt/MegaRAID/storcli\"; export PATH\n",
    );
    // Probes write their stdout straight to the script's stdout through fd 3, while their
    // stderr is captured in a variable (see the module doc): no file is ever written.
    s.push_str("exec 3>&1\n");
    // TERM first (sudo relays it to the command it runs as root), KILL two seconds later where
    // `timeout` knows -k (GNU coreutils, busybox >= 1.33).
    s.push_str("if command -v timeout >/dev/null 2>&1; then if timeout -k 1 5 true 2>/dev/null; then T='timeout -k 2'; else T=timeout; fi; else T=; fi\n");
    match become_root {
        Become::Sudo => {
            s.push_str("if [ \"$(id -u 2>/dev/null)\" = 0 ]; then SUDO=; else SUDO='sudo -n'; fi; export SUDO\n")
        }
        Become::None => s.push_str("SUDO=; export SUDO\n"),
    }
    // Inside each `$( ... )`: stderr goes to the capture (2>&1), stdout to the script's stdout
    // (>&3), fd 3 is closed for the probe, and the exit status is appended after a `/`, which
    // also keeps trailing newlines of stderr from being stripped by the substitution.
    let capture = "2>&1 >&3 3>&- </dev/null; printf '/%s' \"$?\")";
    for probe in probes {
        let secs = probe.timeout.as_secs().max(1);
        let body = sh_quote(&probe.script);
        let _ = writeln!(s, "printf '%s\\n' '=={boundary}:begin:{}'", probe.id);
        if !probe.programs.is_empty() {
            let found: Vec<String> =
                probe.programs.iter().map(|p| format!("command -v {} >/dev/null 2>&1", sh_quote(p))).collect();
            let _ = writeln!(s, "if {}; then", found.join(" || "));
        }
        if probe.may_hang {
            let _ = writeln!(
                s,
                "if [ -n \"$T\" ]; then e=$($T {secs} sh -c {body} {capture}; else e=$(sh -c {body} {capture}; fi"
            );
        } else {
            // A subshell, not `sh -c`: one fork instead of two process starts, and an `exit` in
            // the snippet still ends only the snippet. The space after `$(` keeps `$((` from
            // being read as arithmetic.
            let _ = writeln!(s, "e=$( (eval {body}) {capture}");
        }
        if let Some(first) = probe.programs.first() {
            let missing = sh_quote(&format!("{}\n/127", missing_program_message(first)));
            let _ = writeln!(s, "else e={missing}; fi");
        }
        // `##*/` takes the status after the last `/`, `%/*` leaves stderr exactly as printed
        // (slashes in it included); `%.Ns` is printf's own byte limit, so no `head` is started.
        let _ = write!(
            s,
            "c=${{e##*/}}; e=${{e%/*}}\n\
             printf '\\n%s\\n' \"=={boundary}:end:{id}:$c\"\n\
             printf '%.{STDERR_LIMIT}s' \"$e\"\n\
             printf '\\n%s\\n' '=={boundary}:done:{id}'\n",
            id = probe.id,
        );
    }
    s
}

/// What the script prints on stderr for a probe none of whose programs is installed (`first` is
/// the first of them).
pub fn missing_program_message(first: &str) -> String {
    format!("{first}: command not found")
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() {
        return None;
    }
    haystack[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// Splits the bundled script's stdout into per-probe outputs. A probe whose frame is missing or
/// cut short is [`Exit::Lost`], so the caller reports it instead of guessing.
pub fn split(output: &[u8], probes: &[ProbeSpec], boundary: &str) -> Outputs {
    let mut outputs = Outputs::default();
    let mut cursor = 0;
    for probe in probes {
        let begin = format!("=={boundary}:begin:{}\n", probe.id);
        let end = format!("\n=={boundary}:end:{}:", probe.id);
        let done = format!("\n=={boundary}:done:{}\n", probe.id);
        let lost = ProbeOutput { stdout: Vec::new(), stderr: String::new(), exit: Exit::Lost };
        let Some(b) = find(output, begin.as_bytes(), cursor) else {
            outputs.insert(probe.id.clone(), lost);
            continue;
        };
        let body_start = b + begin.len();
        let Some(e) = find(output, end.as_bytes(), body_start) else {
            outputs.insert(probe.id.clone(), lost);
            continue;
        };
        let status_start = e + end.len();
        let status_end = find(output, b"\n", status_start).unwrap_or(output.len());
        let code: Option<i32> =
            std::str::from_utf8(&output[status_start..status_end]).ok().and_then(|s| s.parse().ok());
        let stderr_start = (status_end + 1).min(output.len());
        let (stderr, next) = match find(output, done.as_bytes(), stderr_start) {
            Some(d) => (String::from_utf8_lossy(&output[stderr_start..d]).into_owned(), d + done.len()),
            None => (String::new(), status_end),
        };
        let exit = match code {
            Some(127) => Exit::NotFound,
            // GNU timeout exits 124 when it had to stop the command; a command killed by the
            // follow-up SIGKILL (or busybox's TERM) shows as 128 + the signal number.
            Some(124 | 137 | 143) => Exit::TimedOut,
            Some(code) => Exit::Code(code),
            None => Exit::Lost,
        };
        outputs.insert(probe.id.clone(), ProbeOutput { stdout: output[body_start..e].to_vec(), stderr, exit });
        cursor = next;
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    fn spec(id: &str, script: &str, timeout: u64) -> ProbeSpec {
        ProbeSpec {
            id: id.into(),
            script: script.into(),
            needs_root: false,
            replay_file: None,
            timeout: Duration::from_secs(timeout),
            may_hang: true,
            programs: Vec::new(),
        }
    }

    fn run(probes: &[ProbeSpec]) -> Outputs {
        let boundary = new_boundary();
        let out = Command::new("sh").arg("-c").arg(script(probes, Become::None, &boundary)).output().expect("sh runs");
        split(&out.stdout, probes, &boundary)
    }

    #[test]
    fn outputs_come_back_byte_for_byte() {
        let probes = [
            spec("no-newline", "printf 'a\\nb'", 5),
            spec("newline", "printf 'x\\n\\n'", 5),
            spec("empty", "true", 5),
            spec("quote", "echo \"it's\"", 5),
        ];
        let outputs = run(&probes);
        assert_eq!(outputs.get("no-newline").expect("ran").stdout, b"a\nb");
        assert_eq!(outputs.get("newline").expect("ran").stdout, b"x\n\n");
        assert_eq!(outputs.get("empty").expect("ran").stdout, b"");
        assert_eq!(outputs.get("quote").expect("ran").stdout, b"it's\n");
        assert!(outputs.get("quote").expect("ran").succeeded());
    }

    #[test]
    fn failures_stay_in_their_frame() {
        let probes = [
            spec("missing", "no-such-command-cmdb --x", 5),
            spec("fails", "echo out; echo oops >&2; exit 3", 5),
            spec("hangs", "sleep 30", 1),
            spec("after", "echo fine", 5),
        ];
        let outputs = run(&probes);
        assert_eq!(outputs.get("missing").expect("ran").exit, Exit::NotFound);
        let fails = outputs.get("fails").expect("ran");
        assert_eq!((fails.exit, fails.stdout.as_slice(), fails.stderr.trim()), (Exit::Code(3), &b"out\n"[..], "oops"));
        assert_eq!(outputs.get("hangs").expect("ran").exit, Exit::TimedOut);
        assert_eq!(outputs.get("after").expect("ran").stdout, b"fine\n");
    }

    #[test]
    fn probes_whose_programs_are_missing_start_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("ran");
        let touch = format!("echo ran > {}; echo out", sh_quote(&marker.display().to_string()));
        let mut absent = spec("absent", &touch, 5);
        absent.programs = vec!["no-such-tool-cmdb".into(), "/no/such/path/tool".into()];
        let mut present = spec("present", "echo out", 5);
        present.programs = vec!["no-such-tool-cmdb".into(), "sh".into()];
        let mut quick = spec("quick", "echo quick", 5);
        quick.may_hang = false;
        quick.programs = vec!["sh".into()];
        let outputs = run(&[absent, present, quick]);
        let absent = outputs.get("absent").expect("framed");
        assert_eq!((absent.exit, absent.stdout.as_slice()), (Exit::NotFound, &b""[..]));
        assert_eq!(absent.stderr.trim(), "no-such-tool-cmdb: command not found");
        assert!(!marker.exists(), "the probe's script never ran");
        assert_eq!(outputs.get("present").expect("ran").stdout, b"out\n", "one program found is enough");
        assert_eq!(outputs.get("quick").expect("ran").stdout, b"quick\n");
    }

    #[test]
    fn truncated_output_marks_probes_lost() {
        let probes = [spec("a", "echo a", 5), spec("b", "echo b", 5)];
        let boundary = "0123456789abcdef";
        let full =
            format!("=={boundary}:begin:a\na\n\n=={boundary}:end:a:0\n\n=={boundary}:done:a\n=={boundary}:begin:b\nb");
        let outputs = split(full.as_bytes(), &probes, boundary);
        assert!(outputs.get("a").expect("a").succeeded());
        assert_eq!(outputs.get("b").expect("b").exit, Exit::Lost);
    }
}
