//! Setup shared by the SSH and Salt integration tests: real OpenSSH servers and a real Salt
//! master on loopback, started by the scripts in `scripts/` the first time a test binary needs
//! them and reused while they are healthy.
//!
//! Every test binary uses its own state directory and port (never the scripts' defaults), so a
//! developer's `loopback-sshd.sh up` or another binary cannot restart a server under a running
//! test. Setup runs under an exclusive `flock` on a lock file beside the state, so two test
//! processes never run a script at the same time; inside a process a `OnceLock` runs it once.
//! The servers live as long as the test processes that use them: each user holds a shared
//! `flock` on a `.users` file for its lifetime, and a detached watchdog started beside the
//! servers waits for an exclusive lock on it (that is, for every user to exit) and then runs
//! the script's `down`. A second test process arriving meanwhile reuses the running servers.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cmdb_collect::Outputs;
use cmdb_collect::transport::ssh::{HostKeyPolicy, SshAuth, SshOptions, SshTarget};

/// The repository's `scripts/` directory.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

/// Holds an exclusive lock on `path` while alive.
pub struct SetupLock(File);

/// Takes the exclusive setup lock at `path` (created if missing), waiting for other processes.
pub fn setup_lock(path: &Path) -> SetupLock {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("lock directory");
    }
    let file = File::options().create(true).truncate(false).write(true).open(path).expect("lock file opens");
    file.lock().expect("flock");
    SetupLock(file)
}

/// Marks this process as a user of the servers behind `users_lock` until it exits, and starts
/// a detached watchdog that runs `script down` (with `env`) once no process uses them any more.
pub fn stop_when_unused(users_lock: &Path, script: &str, env: &[(&str, &str)]) {
    let script = scripts_dir().join(script).display().to_string();
    watch(users_lock, &["bash", &script, "down"], env);
}

/// As [`stop_when_unused`], for a server whose only handle is its pid file.
pub fn kill_when_unused(users_lock: &Path, pid_file: &Path) {
    let pid_file = pid_file.display().to_string();
    watch(users_lock, &["sh", "-c", "kill \"$(cat \"$0\")\" 2>/dev/null; rm -f \"$0\"", &pid_file], &[]);
}

fn watch(users_lock: &Path, down: &[&str], env: &[(&str, &str)]) {
    use std::os::unix::process::CommandExt;
    static HELD: std::sync::Mutex<Vec<File>> = std::sync::Mutex::new(Vec::new());
    let file = File::options().create(true).truncate(false).write(true).open(users_lock).expect("users lock");
    file.lock_shared().expect("shared flock");
    HELD.lock().unwrap_or_else(|p| p.into_inner()).push(file);
    // Own process group and no inherited output: neither Ctrl-C on the test run nor a test
    // harness waiting for its output pipes to close is held up by the watchdog.
    let spawned = Command::new("flock")
        .arg("-x")
        .arg(users_lock)
        .args(down)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        eprintln!("no watchdog to stop {down:?} (is flock installed?): {e}");
    }
}

/// Runs `script` with `args` and `env`, failing the test with its output if it fails or takes
/// longer than `limit`.
pub fn run_script(script: &str, args: &[&str], env: &[(&str, &str)], limit: Duration) {
    let path = scripts_dir().join(script);
    let mut child = Command::new("bash")
        .arg(&path)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let started = Instant::now();
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => break,
            None if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{script} {args:?} took longer than {limit:?}");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let output = child.wait_with_output().expect("output");
    assert!(
        output.status.success(),
        "{script} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// True when every pid file matching `prefix*.pid` in `dir` names a live process (and there is
/// at least one).
pub fn pids_alive(dir: &Path, prefix: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    let mut any = false;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".pid") {
            let Ok(pid) = std::fs::read_to_string(entry.path()) else { return false };
            if !Path::new(&format!("/proc/{}", pid.trim())).exists() {
                return false;
            }
            any = true;
        }
    }
    any
}

/// True when `ssh -F config address true` succeeds (the server is up and accepts the key).
pub fn ssh_works(config: &Path, address: &str) -> bool {
    Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-o", "ConnectTimeout=5", address, "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A set of loopback SSH hosts started by `scripts/loopback-sshd.sh`.
#[derive(Debug, Clone)]
pub struct LoopbackHosts {
    /// The script's state directory (client_key, known_hosts, ssh_config, inventory).
    pub dir: PathBuf,
    /// The port every host listens on.
    pub port: u16,
    /// The host addresses, 127.0.0.2 upwards.
    pub addresses: Vec<String>,
}

impl LoopbackHosts {
    /// Starts (or reuses) `count` hosts with state in `dir` on `port`.
    pub fn up(dir: &Path, port: u16, count: usize) -> Self {
        let _lock = setup_lock(&dir.with_extension("lock"));
        let dir_text = dir.display().to_string();
        stop_when_unused(&dir.with_extension("users"), "loopback-sshd.sh", &[("DIR", &dir_text)]);
        let addresses: Vec<String> = (2..count + 2).map(|i| format!("127.0.0.{i}")).collect();
        let last = addresses.last().expect("at least one host");
        let inventory = std::fs::read_to_string(dir.join("inventory")).unwrap_or_default();
        let healthy =
            inventory.lines().count() == count && pids_alive(dir, "sshd-") && ssh_works(&dir.join("ssh_config"), last);
        if !healthy {
            let count_text = count.to_string();
            let port_text = port.to_string();
            run_script(
                "loopback-sshd.sh",
                &["up", &count_text],
                &[("DIR", &dir_text), ("PORT", &port_text)],
                Duration::from_secs(300),
            );
        }
        LoopbackHosts { dir: dir.to_owned(), port, addresses }
    }

    /// The client key that every host accepts.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    /// The known_hosts file that pins every host.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Options for root with the client key and strict host key checking.
    pub fn options(&self) -> SshOptions {
        SshOptions {
            user: "root".into(),
            auth: SshAuth::KeyFile { path: self.client_key(), passphrase: None },
            known_hosts: self.known_hosts(),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(60),
            output_limit: cmdb_collect::transport::DEFAULT_OUTPUT_LIMIT,
        }
    }

    /// The target for `address`.
    pub fn target(&self, address: &str) -> SshTarget {
        SshTarget { name: address.to_owned(), host: address.to_owned(), port: self.port, user: None }
    }
}

/// Blanks the fields the kernel changes between two reads, so that two reads of the same
/// machine compare equal: the current CPU clock in /proc/cpuinfo and the remaining lifetimes of
/// dynamic addresses (`valid_lft 85000sec` in `ip addr`, `"valid_life_time":85000` in `ip -j`).
/// On this machine every address is static ("forever") and the clock fixed, so nothing changes;
/// elsewhere they tick.
pub fn stable(id: &str, bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if id == "cpuinfo" && line.starts_with("cpu MHz") {
            out.push_str("cpu MHz: <varies>\n");
        } else if line.trim_start().starts_with("valid_lft") {
            out.push_str("valid_lft <varies>\n");
        } else {
            out.push_str(line);
        }
    }
    for key in ["\"valid_life_time\":", "\"preferred_life_time\":"] {
        let mut rest = out.as_str();
        let mut blanked = String::with_capacity(out.len());
        while let Some(at) = rest.find(key) {
            let value_start = at + key.len();
            blanked.push_str(&rest[..value_start]);
            let digits = rest[value_start..].chars().take_while(char::is_ascii_digit).count();
            blanked.push_str(if digits > 0 { "0" } else { "" });
            rest = &rest[value_start + digits..];
        }
        blanked.push_str(rest);
        out = blanked;
    }
    out.into_bytes()
}

/// Probes whose output changes from one read to the next on the same machine: free memory.
pub const VOLATILE: &[&str] = &["meminfo"];

/// Asserts that two runs of the same plan on the same machine read the same: every probe's
/// exit, and the stdout and stderr of every probe but the [`VOLATILE`] ones (after [`stable`]).
pub fn assert_same_outputs(local: &Outputs, remote: &Outputs, host: &str) {
    assert_eq!(
        local.by_id.keys().collect::<Vec<_>>(),
        remote.by_id.keys().collect::<Vec<_>>(),
        "{host}: the same probes ran"
    );
    for (id, l) in &local.by_id {
        let r = &remote.by_id[id];
        assert_eq!(l.exit, r.exit, "{host}: probe {id} exit");
        if VOLATILE.contains(&id.as_str()) {
            continue;
        }
        assert_eq!(
            String::from_utf8_lossy(&stable(id, &l.stdout)),
            String::from_utf8_lossy(&stable(id, &r.stdout)),
            "{host}: probe {id} stdout"
        );
        assert_eq!(l.stderr, r.stderr, "{host}: probe {id} stderr");
    }
}

/// True when a process whose command line contains `pattern` is running (`pgrep -f`).
pub fn process_running(pattern: &str) -> bool {
    Command::new("pgrep").args(["-f", pattern]).output().is_ok_and(|o| o.status.success())
}

/// The loopback Salt master and minions m1..m3 of `scripts/loopback-salt.sh`, shared by every
/// Salt test (and cmdb-agent's): state under this directory.
pub const SALT_DIR: &str = "/tmp/cmdb-salt";

/// The loopback minions' ids.
pub const SALT_MINIONS: [&str; 3] = ["m1", "m2", "m3"];

/// True when the loopback master answers and every minion returns `test.ping`.
pub fn salt_is_up() -> bool {
    let Ok(output) = Command::new(Path::new(SALT_DIR).join("venv/bin/salt"))
        .args(["-c", &format!("{SALT_DIR}/etc"), "--out=json", "--static", "--timeout=10", "-L"])
        .arg(SALT_MINIONS.join(","))
        .arg("test.ping")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    let answers: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    SALT_MINIONS.iter().all(|m| answers.get(*m) == Some(&serde_json::Value::Bool(true)))
}

/// Starts the loopback master and minions unless they answer (under the setup lock; stopped when
/// every test process that joined is done, unless someone else started them), and returns options
/// that reach them.
pub fn loopback_salt(batch_size: usize, output_limit: usize) -> cmdb_collect::transport::salt::SaltOptions {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    READY.get_or_init(|| {
        let _lock = setup_lock(&Path::new(SALT_DIR).with_extension("lock"));
        if !salt_is_up() {
            stop_when_unused(&Path::new(SALT_DIR).with_extension("users"), "loopback-salt.sh", &[("DIR", SALT_DIR)]);
            run_script("loopback-salt.sh", &["up", "3"], &[("DIR", SALT_DIR)], Duration::from_secs(600));
        }
    });
    cmdb_collect::transport::salt::SaltOptions {
        salt_bin: Path::new(SALT_DIR).join("venv/bin/salt"),
        extra_args: vec!["-c".into(), format!("{SALT_DIR}/etc")],
        timeout: Duration::from_secs(20),
        batch_size,
        output_limit,
    }
}
