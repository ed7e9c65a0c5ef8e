//! Salt transport: `salt --out=json --static -L m1,m2,... cmd.run_all <command>` per batch of minions.
//!
//! How the bundled script travels, and why:
//!
//! - The script goes base64-encoded inside the command, `(echo B64 | base64 -d | sh -s; echo
//!   cmdb-status:$?) | base64`, run with `python_shell=True shell=/bin/sh`. Salt's CLI parses
//!   every argument as YAML and `key=value` words as keyword arguments; a base64 string plus a
//!   fixed wrapper has no character either parser cares about, so no script can be mangled by
//!   quoting. `sh -s` reads it from stdin, so the minion's login shell does not matter.
//! - The script's stdout comes back base64-encoded too. Salt decodes a command's output as text
//!   (a Latin-1 vendor name or a stray byte would be replaced) and strips trailing whitespace
//!   (the last frame's newline would be lost); base64 text survives both, so the outputs arrive
//!   byte for byte, exactly as over SSH. The script's exit status rides in the last line,
//!   because the pipeline's own status is that of `base64`.
//! - `rstrip=False` keeps the script's own stderr whole (a diagnostic only: probe stderr travels
//!   framed inside stdout).
//! - `timeout=` makes the minion kill a hung script; the `salt` process itself is killed if it
//!   outlives every limit, so a stuck master cannot hang a run.
//! - Output is bounded three times over ([`SaltOptions::output_limit`], remote_output_limit):
//!   the minion keeps only the first limit (plus room for the status line) of the script's stdout
//!   (`head -c`), so a runaway host fails alone; the `salt` process's stdout is read up to about
//!   twice the limit per minion of the batch (base64, line breaks and the script's own stderr),
//!   past which the process is killed and the batch fails, since a minion that ignores the
//!   wrapper could otherwise exhaust this machine's memory; and each minion whose decoded output
//!   and stderr together exceed the limit fails on its own.
//! - Minion ids are checked before they reach `salt -L` ([`check_minion_id`]): in a list target
//!   a comma would add minions nobody asked for, and `*?[]` would make an id a glob.
//!
//! A minion that does not answer (`"Minion did not return. [No response]"`), or that Salt leaves
//! out of its answer (an unknown id, a key not accepted), is a failed host: Unreachable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{HostFailure, ScriptOutput};

/// How to call the salt CLI.
#[derive(Debug, Clone)]
pub struct SaltOptions {
    /// The `salt` executable.
    pub salt_bin: PathBuf,
    /// Extra arguments before the target (e.g. `-c /etc/salt`).
    pub extra_args: Vec<String>,
    /// Salt's own `--timeout` for minions to answer.
    pub timeout: Duration,
    /// Minions per `salt` invocation.
    pub batch_size: usize,
    /// The most bytes one minion may send back, its script's stdout and stderr together; see
    /// the module doc for how the `salt` process's own output is bounded from it.
    pub output_limit: usize,
}

/// How long [`run`] lets the script run on a minion (`cmd.run_all timeout=`).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest base64-encoded script passed in one argument: Linux refuses a single argv string
/// over 128 KiB (MAX_ARG_STRLEN), on the master and again in the minion's `sh -c`.
const MAX_ENCODED_SCRIPT: usize = 120 * 1024;

/// The marker of the line that carries the script's exit status.
const STATUS_MARKER: &[u8] = b"cmdb-status:";

/// What the Salt master puts in place of a return value larger than its `max_event_size`.
const TRIMMED: &str = "VALUE_TRIMMED";

/// Room kept after the output limit for the status line (`cmdb-status:N` and a newline).
const STATUS_ROOM: usize = 32;

/// Bytes of the `salt` process's own stderr kept for messages; the rest is read and dropped.
const SALT_STDERR_KEPT: usize = 64 * 1024;

/// The longest minion id accepted: a DNS name's limit, which Salt's default ids (the FQDN) obey.
pub const MAX_MINION_ID: usize = cmdb_model::business::MAX_MINION_ID_LEN;

/// Checks that `id` is one plain minion id, safe to place in a `salt -L` list: not empty, at
/// most [`MAX_MINION_ID`] bytes, and free of commas (list separators), whitespace, control
/// characters and the glob and path characters `/\*?[]`. The error says what is wrong. The rule
/// is `cmdb_model::business::check_minion_id`, the one the server applies to business edits.
pub fn check_minion_id(id: &str) -> Result<(), String> {
    cmdb_model::business::check_minion_id(id).map_err(|problem| format!("the minion id {id:?} is refused: {problem}"))
}

/// How many bytes of the `salt` process's stdout are read for a batch of `minions`: per minion
/// twice the limit (base64 is 4/3 of the bytes, plus line breaks, JSON and the script's own
/// stderr) and 64 KiB of JSON around it, plus 1 MiB for warnings Salt prints before its answer.
pub fn batch_read_limit(output_limit: usize, minions: usize) -> usize {
    output_limit.saturating_mul(2).saturating_add(64 * 1024).saturating_mul(minions).saturating_add(1024 * 1024)
}

/// Runs `script` on every minion in `minions` (in batches) and returns each minion's result.
/// A minion that does not answer is a failed host. Each minion may run the script for
/// [`DEFAULT_COMMAND_TIMEOUT`]; see [`run_with_command_timeout`] to choose.
pub async fn run(
    options: &SaltOptions,
    minions: &[String],
    script: &str,
) -> Vec<(String, Result<ScriptOutput, HostFailure>)> {
    run_with_command_timeout(options, minions, script, DEFAULT_COMMAND_TIMEOUT).await
}

/// As [`run`], with a limit on how long the script may run on each minion. Results come back in
/// the order of `minions`. Batches run one after another: each `salt` process costs the master
/// one job and this machine one Python interpreter (~100 MB), and the minions of a batch
/// already run in parallel.
pub async fn run_with_command_timeout(
    options: &SaltOptions,
    minions: &[String],
    script: &str,
    command_timeout: Duration,
) -> Vec<(String, Result<ScriptOutput, HostFailure>)> {
    let command = match wrapped_command(script, options.output_limit) {
        Ok(command) => command,
        Err(failure) => return minions.iter().map(|m| (m.clone(), Err(failure.clone()))).collect(),
    };
    let mut results = Vec::with_capacity(minions.len());
    for batch in minions.chunks(options.batch_size.max(1)) {
        // An id that is not one plain minion id never reaches `salt -L` (see [`check_minion_id`]).
        let asked: Vec<String> = batch.iter().filter(|m| check_minion_id(m).is_ok()).cloned().collect();
        let mut answers = if asked.is_empty() {
            Ok(BatchAnswers::new())
        } else {
            run_batch(options, &asked, &command, command_timeout).await
        };
        for minion in batch {
            if let Err(reason) = check_minion_id(minion) {
                results.push((minion.clone(), Err(HostFailure::Other(format!("not asked: {reason}")))));
                continue;
            }
            let result = match &mut answers {
                Ok(by_minion) => by_minion.remove(minion).unwrap_or_else(|| {
                    Err(HostFailure::Unreachable(format!(
                        "Salt returned nothing for minion {minion:?} (unknown id, key not accepted, or not connected)"
                    )))
                }),
                Err(failure) => Err(failure.clone()),
            };
            results.push((minion.clone(), result));
        }
    }
    results
}

/// The shell command that carries `script` (see the module doc for why it looks like this); the
/// minion passes on at most `output_limit` bytes of its stdout plus room for the status line.
fn wrapped_command(script: &str, output_limit: usize) -> Result<String, HostFailure> {
    let encoded = BASE64.encode(script.as_bytes());
    if encoded.len() > MAX_ENCODED_SCRIPT {
        return Err(HostFailure::Other(format!(
            "the probe script is too large for one Salt command ({} bytes base64-encoded, at most {MAX_ENCODED_SCRIPT})",
            encoded.len()
        )));
    }
    let keep = output_limit.saturating_add(STATUS_ROOM);
    Ok(format!("(echo {encoded} | base64 -d | sh -s; echo cmdb-status:$?) | head -c {keep} | base64"))
}

type BatchAnswers = BTreeMap<String, Result<ScriptOutput, HostFailure>>;

/// Runs one `salt` process for `batch` and reads every minion's answer from its JSON.
async fn run_batch(
    options: &SaltOptions,
    batch: &[String],
    command: &str,
    command_timeout: Duration,
) -> Result<BatchAnswers, HostFailure> {
    let salt_timeout = options.timeout.as_secs().max(1);
    let command_secs = command_timeout.as_secs().max(1);
    let mut cmd = Command::new(&options.salt_bin);
    cmd.args(&options.extra_args)
        .arg("--out=json")
        .arg("--static")
        .arg(format!("--timeout={salt_timeout}"))
        .arg("-L")
        .arg(batch.join(","))
        .arg("cmd.run_all")
        .arg(command)
        .arg("python_shell=True")
        .arg("shell=/bin/sh")
        // Keeps the script's own stderr whole (stdout is base64 and would not care).
        .arg("rstrip=False")
        .arg(format!("timeout={command_secs}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tracing::debug!(minions = batch.len(), salt = %options.salt_bin.display(), "running salt batch");
    let mut child =
        cmd.spawn().map_err(|e| HostFailure::Other(format!("cannot start {}: {e}", options.salt_bin.display())))?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(HostFailure::Other("salt started without its output pipes".to_owned()));
    };
    // Drained to the end in the background, so a chatty salt never blocks on a full pipe.
    let stderr = tokio::spawn(read_head(stderr, SALT_STDERR_KEPT));
    let read_limit = batch_read_limit(options.output_limit, batch.len());
    // The CLI waits for running jobs as long as the minions report them alive, so the process
    // gets the command limit plus Salt's own answer window plus slack for its start-up, and is
    // killed (kill_on_drop) past that.
    let limit = command_timeout + options.timeout + Duration::from_secs(30);
    let finished = tokio::time::timeout(limit, async {
        let stdout = read_bounded(&mut stdout, read_limit).await;
        if stdout.is_err() {
            let _ = child.start_kill();
        }
        let status = child.wait().await;
        (stdout, status)
    })
    .await;
    let (stdout, status) =
        finished.map_err(|_| HostFailure::Timeout(format!("salt did not finish within {limit:?}")))?;
    let stdout = stdout.map_err(|e| match e {
        ReadError::TooLong => HostFailure::Other(format!(
            "salt's answer for {} minion(s) exceeds {read_limit} bytes (about twice remote_output_limit per \
             minion); salt was stopped",
            batch.len()
        )),
        ReadError::Io(e) => HostFailure::Other(format!("reading salt's output failed: {e}")),
    })?;
    let status = status.map_err(|e| HostFailure::Other(format!("salt failed: {e}")))?;
    let stderr = stderr.await.unwrap_or_default();
    let Some(answers) = find_json_object(&stdout) else {
        let stderr = String::from_utf8_lossy(&stderr);
        let stdout = String::from_utf8_lossy(&stdout);
        let reason = stderr.lines().chain(stdout.lines()).map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        return Err(HostFailure::Other(format!(
            "salt printed no JSON answer (exit status {:?}): {}",
            status.code(),
            first_chars(reason, 300)
        )));
    };
    Ok(answers
        .into_iter()
        .map(|(minion, value)| {
            let result = minion_result(&minion, &value, options.output_limit);
            (minion, result)
        })
        .collect())
}

/// Why [`read_bounded`] stopped.
enum ReadError {
    /// More than the limit arrived.
    TooLong,
    /// The pipe failed.
    Io(std::io::Error),
}

/// Reads `reader` to its end, or fails as soon as more than `limit` bytes arrived.
async fn read_bounded(reader: &mut (impl AsyncRead + Unpin), limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut chunk).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(buffer);
        }
        if buffer.len() + n > limit {
            return Err(ReadError::TooLong);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Reads `reader` to its end and keeps its first `keep` bytes.
async fn read_head(mut reader: impl AsyncRead + Unpin, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    while let Ok(n) = reader.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let room = keep.saturating_sub(kept.len()).min(n);
        kept.extend_from_slice(&chunk[..room]);
    }
    kept
}

/// Finds the JSON object in the CLI's stdout. Salt may print warnings or other noise before it
/// (deprecation notices, a banner from a wrapper), so every `{` that starts a line is tried
/// until one parses as a whole object.
fn find_json_object(stdout: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let starts = std::iter::once(0).chain(stdout.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1));
    for start in starts {
        let rest = &stdout[start..];
        let trimmed = rest.iter().position(|b| !b.is_ascii_whitespace() || *b == b'\n').unwrap_or(rest.len());
        if rest.get(trimmed) != Some(&b'{') {
            continue;
        }
        let mut stream = serde_json::Deserializer::from_slice(&rest[trimmed..]).into_iter::<serde_json::Value>();
        if let Some(Ok(serde_json::Value::Object(map))) = stream.next() {
            return Some(map);
        }
    }
    None
}

/// Turns one minion's entry of the JSON answer into a result; a minion whose decoded output and
/// stderr together exceed `output_limit` fails.
fn minion_result(minion: &str, value: &serde_json::Value, output_limit: usize) -> Result<ScriptOutput, HostFailure> {
    let object = match value {
        serde_json::Value::Object(object) => object,
        serde_json::Value::String(text) if text.contains("did not return") || text.contains("Not connected") => {
            return Err(HostFailure::Unreachable(first_chars(text.trim(), 300)));
        }
        other => {
            let text = other.as_str().map(str::to_owned).unwrap_or_else(|| other.to_string());
            return Err(HostFailure::Other(format!("Salt answered: {}", first_chars(text.trim(), 300))));
        }
    };
    let text = |key: &str| object.get(key).and_then(serde_json::Value::as_str).unwrap_or("");
    let stdout = text("stdout");
    let stderr = text("stderr");
    let retcode = object.get("retcode").and_then(serde_json::Value::as_i64);
    let over_limit = || HostFailure::OutputLimit { host: format!("minion {minion}"), limit: output_limit };
    if stdout == TRIMMED {
        return Err(HostFailure::Other(format!(
            "the Salt master dropped minion {minion}'s output: it is larger than the master's max_event_size \
             (1 MiB unless configured; about 770 KiB of script output, base64-encoded)"
        )));
    }
    // Base64 is 4 characters per 3 bytes: longer text cannot decode to output within the limit.
    let encoded_room = output_limit.saturating_add(STATUS_ROOM).div_ceil(3).saturating_mul(4);
    if stderr.len() > output_limit || stdout.bytes().filter(|b| !b.is_ascii_whitespace()).count() > encoded_room {
        return Err(over_limit());
    }
    let decoded = decode_base64(stdout);
    // The minion's `head -c` cut the output there: it was longer than the limit.
    if decoded.as_ref().is_some_and(|bytes| bytes.len() >= output_limit.saturating_add(STATUS_ROOM)) {
        return Err(over_limit());
    }
    match decoded.and_then(split_status) {
        Some((bytes, _)) if bytes.len() + stderr.len() > output_limit => Err(over_limit()),
        Some((bytes, status)) => Ok(ScriptOutput { stdout: bytes, stderr: stderr.as_bytes().to_vec(), status }),
        None if stdout.trim_end().ends_with("seconds") && stdout.contains(": Timed out after ") => {
            Err(HostFailure::Timeout(format!(
                "the probe script {}",
                stdout.rsplit(" : ").next().unwrap_or("timed out").trim()
            )))
        }
        None => {
            let reason = stderr.lines().chain(stdout.lines()).map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
            Err(HostFailure::Other(format!(
                "the minion did not run the probe script (retcode {retcode:?}): {}",
                first_chars(reason, 300)
            )))
        }
    }
}

/// The first `n` characters of `text`, for messages built from what a minion or Salt printed.
fn first_chars(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

/// Decodes the base64 stdout (line breaks and surrounding blanks ignored).
fn decode_base64(stdout: &str) -> Option<Vec<u8>> {
    let compact: String = stdout.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return None;
    }
    BASE64.decode(compact.as_bytes()).ok()
}

/// Splits the trailing `cmdb-status:N` line off the decoded output.
fn split_status(bytes: Vec<u8>) -> Option<(Vec<u8>, Option<i32>)> {
    // The marker is the last thing written, so the last occurrence is the real one whatever
    // the script printed.
    let at = bytes.windows(STATUS_MARKER.len()).rposition(|w| w == STATUS_MARKER)?;
    let status_text = std::str::from_utf8(&bytes[at + STATUS_MARKER.len()..]).ok()?.trim();
    let status = status_text.parse::<i32>().ok();
    Some((bytes[..at].to_vec(), status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{self, Become};
    use crate::probe::{Exit, ProbeSpec};

    const LIMIT: usize = crate::transport::DEFAULT_OUTPUT_LIMIT;

    /// Decodes the base64 stdout and splits off the trailing `cmdb-status:N` line.
    fn decode_stdout(stdout: &str) -> Option<(Vec<u8>, Option<i32>)> {
        decode_base64(stdout).and_then(split_status)
    }

    fn spec(id: &str, script: &str) -> ProbeSpec {
        ProbeSpec {
            id: id.into(),
            script: script.into(),
            needs_root: false,
            replay_file: None,
            timeout: Duration::from_secs(5),

            may_hang: true,
            programs: Vec::new(),
        }
    }

    /// Runs the wrapped command through a real `sh -c` as the minion would, and returns its stdout.
    fn run_wrapped(script: &str) -> String {
        let command = wrapped_command(script, crate::transport::DEFAULT_OUTPUT_LIMIT).expect("fits");
        let out = std::process::Command::new("sh").arg("-c").arg(&command).output().expect("sh runs");
        String::from_utf8(out.stdout).expect("base64 is ASCII")
    }

    #[test]
    fn wrapped_script_round_trips_bytes_and_status() {
        let stdout = run_wrapped("printf 'a\\tb\\n\\n\\377\\r\\n  '; exit 3");
        let (bytes, status) = decode_stdout(&stdout).expect("decodes");
        assert_eq!(bytes, b"a\tb\n\n\xff\r\n  ");
        assert_eq!(status, Some(3));
        // Salt strips trailing whitespace; base64 text does not care.
        let (stripped, _) = decode_stdout(stdout.trim_end()).expect("decodes");
        assert_eq!(stripped, bytes);
    }

    #[test]
    fn bundled_frames_survive_salt_stripping() {
        let probes = [spec("a", "printf 'x  \\n\\n'"), spec("last", "printf 'tail \\t\\n'; echo warn >&2")];
        let boundary = bundle::new_boundary();
        let script = bundle::script(&probes, Become::None, &boundary);
        let stdout = run_wrapped(&script);
        // What Salt does to stdout, then what this transport gets back.
        let (bytes, _) = decode_stdout(stdout.trim_end()).expect("decodes");
        let outputs = bundle::split(&bytes, &probes, &boundary);
        assert_eq!(outputs.get("a").expect("a").stdout, b"x  \n\n");
        let last = outputs.get("last").expect("last");
        assert_eq!((last.stdout.as_slice(), last.stderr.trim(), last.exit), (&b"tail \t\n"[..], "warn", Exit::Code(0)));
    }

    #[test]
    fn split_copes_with_a_lost_final_newline() {
        // Had the raw stdout been returned (not base64), Salt's rstrip would take the newline
        // after the last `done` marker: the probe must still be read, exit status included.
        let probes = [spec("a", "echo one"), spec("b", "printf 'two'; echo oops >&2; exit 4")];
        let boundary = bundle::new_boundary();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(bundle::script(&probes, Become::None, &boundary))
            .output()
            .expect("sh");
        let full = bundle::split(&out.stdout, &probes, &boundary);
        let stripped_bytes = String::from_utf8(out.stdout).expect("utf8").trim_end().as_bytes().to_vec();
        let stripped = bundle::split(&stripped_bytes, &probes, &boundary);
        assert_eq!(stripped.get("a"), full.get("a"));
        let b = stripped.get("b").expect("b");
        assert_eq!((b.stdout.as_slice(), b.exit), (&b"two"[..], Exit::Code(4)));
    }

    #[test]
    fn json_is_found_after_noise() {
        let stdout = b"[WARNING ] Deprecated option: {foo}\nsome banner\n{\n  \"m1\": {\"retcode\": 0, \"stdout\": \"\", \"stderr\": \"\"},\n  \"m2\": \"Minion did not return. [No response]\"\n}\n";
        let map = find_json_object(stdout).expect("found");
        assert_eq!(map.len(), 2);
        assert!(find_json_object(b"Salt request timed out. The master is not responding.\n").is_none());
    }

    #[test]
    fn minion_answers_map_to_failures() {
        let dead = serde_json::json!("Minion did not return. [No response]");
        assert!(matches!(minion_result("m1", &dead, LIMIT), Err(HostFailure::Unreachable(_))));
        let not_connected = serde_json::json!("Minion did not return. [Not connected]");
        assert!(matches!(minion_result("m1", &not_connected, LIMIT), Err(HostFailure::Unreachable(_))));
        let error = serde_json::json!("'cmd.run_all' is not available.");
        assert!(matches!(minion_result("m1", &error, LIMIT), Err(HostFailure::Other(_))));
        let timed_out = serde_json::json!({"retcode": 1, "stderr": "", "stdout": "(echo x | base64 -d | sh -s) | base64 : Timed out after 3 seconds"});
        assert!(
            matches!(minion_result("m1", &timed_out, LIMIT), Err(HostFailure::Timeout(_))),
            "{:?}",
            minion_result("m1", &timed_out, LIMIT)
        );
        let no_base64 = serde_json::json!({"retcode": 127, "stderr": "sh: 1: base64: not found", "stdout": ""});
        match minion_result("m1", &no_base64, LIMIT) {
            Err(HostFailure::Other(message)) => assert!(message.contains("base64: not found"), "{message}"),
            other => panic!("expected Other, got {other:?}"),
        }
        let ok = serde_json::json!({"retcode": 0, "stderr": "e\n", "stdout": BASE64.encode(b"out\ncmdb-status:0\n")});
        assert_eq!(
            minion_result("m1", &ok, LIMIT),
            Ok(ScriptOutput { stdout: b"out\n".to_vec(), stderr: b"e\n".to_vec(), status: Some(0) })
        );
    }

    #[test]
    fn oversized_scripts_fail_every_minion_up_front() {
        let script = "x".repeat(MAX_ENCODED_SCRIPT);
        assert!(matches!(wrapped_command(&script, LIMIT), Err(HostFailure::Other(_))));
    }

    #[test]
    fn a_minion_past_the_output_limit_fails() {
        let limit = 1000;
        let entry = |stdout: &[u8], stderr: &str| {
            let mut encoded = BASE64.encode(stdout);
            encoded.push('\n');
            serde_json::json!({"retcode": 0, "stderr": stderr, "stdout": encoded})
        };
        let fits = entry(&[b"x".repeat(900), b"cmdb-status:0\n".to_vec()].concat(), "warn\n");
        assert_eq!(minion_result("m1", &fits, limit).map(|o| o.stdout.len()), Ok(900));
        // Output and stderr count together.
        let together = entry(&[b"x".repeat(900), b"cmdb-status:0\n".to_vec()].concat(), &"e".repeat(101));
        assert_eq!(
            minion_result("m1", &together, limit),
            Err(HostFailure::OutputLimit { host: "minion m1".into(), limit })
        );
        // What the minion's `head -c` leaves of a runaway script: no status line, limit + room bytes.
        let cut = entry(&b"y".repeat(limit + STATUS_ROOM), "");
        let err = minion_result("m1", &cut, limit).expect_err("over the limit");
        assert_eq!(err.to_string(), "minion m1: output exceeds 1000 bytes (remote_output_limit)");
        // A minion that ignores the wrapper is refused before its text is decoded.
        let huge = entry(&b"z".repeat(10 * limit), "");
        assert!(matches!(minion_result("m1", &huge, limit), Err(HostFailure::OutputLimit { .. })));
        // The master's own cut (max_event_size) is named as such, not as a script that did not run.
        let trimmed = serde_json::json!({"retcode": 0, "stderr": "", "stdout": "VALUE_TRIMMED"});
        match minion_result("m1", &trimmed, limit) {
            Err(HostFailure::Other(message)) => assert!(message.contains("max_event_size"), "{message}"),
            other => panic!("expected the max_event_size message, got {other:?}"),
        }
    }

    #[test]
    fn the_minion_cuts_a_runaway_script_at_the_limit() {
        let limit = 4096;
        let command =
            wrapped_command("i=0; while [ $i -lt 2000 ]; do echo 0123456789; i=$((i+1)); done", limit).expect("fits");
        let out = std::process::Command::new("sh").arg("-c").arg(&command).output().expect("sh runs");
        let bytes = decode_base64(&String::from_utf8_lossy(&out.stdout)).expect("base64");
        assert_eq!(bytes.len(), limit + STATUS_ROOM, "the minion sends no more than the limit and the room");
        let answer = serde_json::json!({"retcode": 0, "stderr": "", "stdout": String::from_utf8_lossy(&out.stdout)});
        assert!(matches!(minion_result("m1", &answer, limit), Err(HostFailure::OutputLimit { .. })));
    }
}
