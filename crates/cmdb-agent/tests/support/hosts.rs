//! The real parts the agent's end-to-end tests collect from, shared by `transports.rs` and
//! `security.rs`:
//!
//! - SSH: `scripts/fake-ssh-hosts.sh` turns every fixture directory into a chroot behind a real
//!   sshd (127.0.0.170.., port 2542, state in /tmp/cmdb-fake-ssh-agent).
//! - Salt: the loopback master and minions m1..m3 of `scripts/loopback-salt.sh` (/tmp/cmdb-salt,
//!   shared with cmdb-collect's Salt tests and set up by whichever test needs it first).
//!
//! The servers live as long as the test processes that use them: each user holds a shared `flock`
//! on a `.users` file beside the state, and a detached `flock -x ... down` watchdog, started by
//! whoever started the servers, stops them once every user has exited.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use super::{KEY_ID, SECRET, TestServer};

pub const SSH_PORT: u16 = 2542;
pub const SSH_FIRST_OCTET: u8 = 170;
pub const SSH_STATE: &str = "/tmp/cmdb-fake-ssh-agent";
pub const SSH_ROOT: &str = "/srv/cmdb-fake-ssh-agent";
pub const SALT_DIR: &str = "/tmp/cmdb-salt";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// Holds an exclusive lock on `path` (shared with other test processes) while it lives.
pub fn lock(path: &str) -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    file.lock().unwrap_or_else(|e| panic!("lock {path}: {e}"));
    file
}

pub fn run_script(script: &str, args: &[&str], env: &[(&str, &str)]) {
    let mut command = std::process::Command::new("bash");
    command.arg(workspace_root().join("scripts").join(script)).args(args).stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Files whose shared locks mark this process as a user of a test server, held until it exits.
static USING: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());

/// Declares this process a user of the servers behind `users` (a shared lock held until exit).
/// Returns true when no other process was using them (so they may be restarted).
pub fn use_servers(users: &str) -> bool {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(users)
        .unwrap_or_else(|e| panic!("{users}: {e}"));
    let alone = file.try_lock().is_ok();
    if alone {
        file.unlock().unwrap_or_else(|e| panic!("unlock {users}: {e}"));
    }
    file.lock_shared().unwrap_or_else(|e| panic!("shared lock {users}: {e}"));
    USING.lock().unwrap_or_else(|p| p.into_inner()).push(file);
    alone
}

/// Starts a detached watchdog that runs `script down` (with `env`) once nobody uses `users`.
pub fn stop_when_unused(users: &str, script: &str, env: &[(&str, &str)]) {
    use std::os::unix::process::CommandExt;
    let script = workspace_root().join("scripts").join(script);
    let spawned = std::process::Command::new("flock")
        .arg("-x")
        .arg(users)
        .arg("bash")
        .arg(script)
        .arg("down")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: Ctrl-C on the test run must not kill the watchdog first.
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        eprintln!("no watchdog stops {users} (is flock installed?): {e}");
    }
}

/// (address, fixture directory name) of each fake SSH host, started once per test process
/// (or reused while another test process uses them).
pub fn fake_ssh_hosts() -> &'static Vec<(String, String)> {
    static HOSTS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    HOSTS.get_or_init(|| {
        let _guard = lock(&format!("{SSH_STATE}.lock"));
        let users = format!("{SSH_STATE}.users");
        let running = Path::new(SSH_STATE).join("hosts.tsv").exists() && Path::new(SSH_STATE).join("sshd.pid").exists();
        if use_servers(&users) || !running {
            // Nobody else uses them: start afresh from the current fixtures.
            let fixtures = workspace_root().join("fixtures/hosts").display().to_string();
            let port = SSH_PORT.to_string();
            run_script(
                "fake-ssh-hosts.sh",
                &["up", &fixtures, &SSH_FIRST_OCTET.to_string()],
                &[("STATE", SSH_STATE), ("ROOT", SSH_ROOT), ("PORT", &port)],
            );
            stop_when_unused(&users, "fake-ssh-hosts.sh", &[("STATE", SSH_STATE)]);
        }
        let tsv = std::fs::read_to_string(Path::new(SSH_STATE).join("hosts.tsv")).expect("hosts.tsv");
        tsv.lines().filter_map(|l| l.split_once('\t')).map(|(a, h)| (a.to_owned(), h.to_owned())).collect()
    })
}

pub fn agent(home: &Path, config: &Path, state: &Path, server: &TestServer) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cmdb-agent"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
        .env("HOME", home)
        .env("CMDB_SERVER_URL", server.url())
        .env("CMDB_KEY_ID", KEY_ID)
        .env("CMDB_SECRET", SECRET)
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state);
    command
}

pub fn expected_hostname(fixture: &str) -> String {
    let dir = workspace_root().join("fixtures/hosts").join(fixture);
    std::fs::read_to_string(dir.join("hostname"))
        .ok()
        .and_then(|t| t.lines().next().map(str::trim).map(str::to_owned))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fixture.to_owned())
}

/// Starts (or joins) the loopback Salt master and minions.
pub fn ensure_salt() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let _guard = lock(&format!("{SALT_DIR}.lock"));
        let users = format!("{SALT_DIR}.users");
        use_servers(&users);
        if !salt_is_up() {
            run_script("loopback-salt.sh", &["up", "3"], &[("DIR", SALT_DIR)]);
            stop_when_unused(&users, "loopback-salt.sh", &[("DIR", SALT_DIR)]);
        }
    });
}

pub fn salt_is_up() -> bool {
    let Ok(out) = std::process::Command::new(Path::new(SALT_DIR).join("venv/bin/salt"))
        .args([
            "-c",
            &format!("{SALT_DIR}/etc"),
            "--out=json",
            "--static",
            "--timeout=10",
            "-L",
            "m1,m2,m3",
            "test.ping",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    let answers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    ["m1", "m2", "m3"].iter().all(|m| answers.get(*m) == Some(&serde_json::Value::Bool(true)))
}
