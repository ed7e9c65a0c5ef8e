//! Password authentication against a real OpenSSH server: a private sshd on 127.0.0.2 port 2323
//! that accepts only passwords, for a dedicated local user `cmdb-sshpw` whose random password is
//! set through chpasswd's stdin (never argv) and kept 0600 in /tmp/cmdb-ssh-password-test.
//! Started on first use by `scripts/password-sshd.sh` and reused while it runs.

mod ssh_support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use cmdb_collect::transport::HostFailure;
use cmdb_collect::transport::ssh::{HostKeyPolicy, SshAuth, SshClient, SshOptions, SshTarget};

const STATE: &str = "/tmp/cmdb-ssh-password-test";
const PORT: u16 = 2323;
const USER: &str = "cmdb-sshpw";

/// The password of the test user, once the server is up.
fn password() -> &'static String {
    static PASSWORD: OnceLock<String> = OnceLock::new();
    PASSWORD.get_or_init(|| {
        let state = Path::new(STATE);
        let _lock = ssh_support::setup_lock(&state.with_extension("lock"));
        ssh_support::stop_when_unused(&state.with_extension("users"), "password-sshd.sh", &[("DIR", STATE)]);
        let port = PORT.to_string();
        let reusable = ssh_support::pids_alive(state, "sshd") && state.join("password").exists();
        if !reusable {
            ssh_support::run_script(
                "password-sshd.sh",
                &["up"],
                &[("DIR", STATE), ("PORT", &port), ("PW_USER", USER)],
                Duration::from_secs(300),
            );
        }
        std::fs::read_to_string(state.join("password")).expect("password file").trim().to_owned()
    })
}

fn options(password: String) -> SshOptions {
    SshOptions {
        user: USER.into(),
        auth: SshAuth::Password(password),
        known_hosts: PathBuf::from(STATE).join("known_hosts"),
        host_key_policy: HostKeyPolicy::Strict,
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(30),
        output_limit: cmdb_collect::transport::DEFAULT_OUTPUT_LIMIT,
    }
}

fn target() -> SshTarget {
    SshTarget { name: "password-host".into(), host: "127.0.0.2".into(), port: PORT, user: None }
}

#[tokio::test]
async fn the_right_password_logs_in_and_a_wrong_one_is_an_auth_failure() {
    let password = password().clone();
    let client = SshClient::new(options(password.clone())).expect("client");
    let out = client.run(&target(), "id -un").await.expect("password accepted");
    assert_eq!(out.stdout, format!("{USER}\n").into_bytes());

    let wrong = SshClient::new(options(format!("{password}-wrong"))).expect("client");
    match wrong.run(&target(), "true").await {
        Err(HostFailure::Auth(message)) => {
            assert!(!message.contains(&password), "the password must not appear in errors: {message}");
        }
        other => panic!("expected Auth, got {other:?}"),
    }
    // A key is not what this server takes.
    let mut by_key = options(String::new());
    by_key.auth = SshAuth::KeyFile { path: PathBuf::from(STATE).join("ssh_host_ed25519_key"), passphrase: None };
    let err = SshClient::new(by_key).expect("client").run(&target(), "true").await;
    assert!(matches!(err, Err(HostFailure::Auth(_))), "{err:?}");
}

#[tokio::test]
async fn a_hung_command_of_an_ordinary_user_is_killed_at_the_command_timeout() {
    let mut options = options(password().clone());
    options.command_timeout = Duration::from_secs(1);
    let client = SshClient::new(options).expect("client");
    // No probe timeout here: only the "signal" request can stop this sleep early.
    let marker = "sleep 88.0417";
    let started = std::time::Instant::now();
    let err = client.run(&target(), &format!("{marker}; echo never\n")).await.expect_err("hangs");
    assert!(matches!(err, HostFailure::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while ssh_support::process_running(marker) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!ssh_support::process_running(marker), "sshd did not kill the session on the signal request");
}
