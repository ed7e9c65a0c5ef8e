//! The SSH transport against real OpenSSH servers on loopback (`scripts/loopback-sshd.sh`):
//! 24 hosts 127.0.0.2..25 on port 2322, state in /tmp/cmdb-ssh-transport-test. The tests run as
//! root (as CI does); the script installs openssh-server with apt-get when sshd is missing.

mod ssh_support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cmdb_collect::transport::HostFailure;
use cmdb_collect::transport::known_hosts::fingerprint;
use cmdb_collect::transport::ssh::{HostKeyPolicy, SshAuth, SshClient, SshOptions};
use cmdb_collect::{Become, Plan};
use russh::keys::PublicKey;
use ssh_support::{LoopbackHosts, assert_same_outputs, process_running};

const HOSTS: usize = 24;
const PORT: u16 = 2322;

fn hosts() -> &'static LoopbackHosts {
    static HOSTS_UP: OnceLock<LoopbackHosts> = OnceLock::new();
    HOSTS_UP.get_or_init(|| LoopbackHosts::up(Path::new("/tmp/cmdb-ssh-transport-test"), PORT, HOSTS))
}

fn public_key(path: &Path) -> PublicKey {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    PublicKey::from_openssh(text.trim()).expect("public key parses")
}

fn host_public_key() -> PublicKey {
    public_key(&hosts().dir.join("ssh_host_ed25519_key.pub"))
}

fn keygen(path: &Path, kind: &str, passphrase: &str) {
    if path.exists() {
        return;
    }
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", passphrase, "-C", "cmdb-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen -t {kind} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loopback_host_returns_what_the_local_transport_returns() {
    let hosts = hosts();
    let plan = Plan::all_builtin();
    let boundary = cmdb_collect::bundle::new_boundary();
    let script = plan.script(Become::None, &boundary);
    let local = cmdb_collect::transport::local::run(&script, Duration::from_secs(60)).await.expect("local run");
    let local_outputs = plan.split(&local.stdout, &boundary);
    assert!(local_outputs.succeeded("cpuinfo").is_some(), "the local run itself works: {local_outputs:?}");

    let client = SshClient::new(hosts.options()).expect("client");
    let mut runs = tokio::task::JoinSet::new();
    for address in &hosts.addresses {
        let (client, target, script) = (client.clone(), hosts.target(address), script.clone());
        runs.spawn(async move { (target.host.clone(), client.run(&target, &script).await) });
    }
    let mut done = 0;
    while let Some(joined) = runs.join_next().await {
        let (host, result) = joined.expect("task");
        let output = result.unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(output.status, local.status, "{host}: script exit status");
        assert_eq!(output.stderr, local.stderr, "{host}: script stderr");
        assert_same_outputs(&local_outputs, &plan.split(&output.stdout, &boundary), &host);
        done += 1;
    }
    assert_eq!(done, HOSTS);
}

#[tokio::test]
async fn a_host_whose_key_differs_from_known_hosts_is_refused() {
    let hosts = hosts();
    let dir = tempfile::tempdir().expect("tempdir");
    let known_hosts = dir.path().join("known_hosts");
    // Pin 127.0.0.2 to a key that is not its host key (the client key will do).
    let wrong = public_key(&hosts.dir.join("client_key.pub"));
    let wrong_text = wrong.to_openssh().expect("encode");
    std::fs::write(&known_hosts, format!("[127.0.0.2]:{PORT} {wrong_text}\n")).expect("write");
    let mut options = hosts.options();
    options.known_hosts = known_hosts.clone();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        options.host_key_policy = policy;
        let client = SshClient::new(options.clone()).expect("client");
        let err = client.run(&hosts.target("127.0.0.2"), "echo reached").await.expect_err("refused");
        match err {
            HostFailure::HostKey(message) => {
                assert!(message.contains("CHANGED"), "{message}");
                assert!(message.contains(&fingerprint(&host_public_key())), "names the presented key: {message}");
                assert!(message.contains(&fingerprint(&wrong)), "names the recorded key: {message}");
            }
            other => panic!("{policy:?}: expected HostKey, got {other:?}"),
        }
    }
    assert_eq!(std::fs::read_to_string(&known_hosts).expect("read"), format!("[127.0.0.2]:{PORT} {wrong_text}\n"));
}

#[tokio::test]
async fn unknown_and_revoked_hosts_are_refused_and_hashed_entries_work() {
    let hosts = hosts();
    let dir = tempfile::tempdir().expect("tempdir");
    let host_key = host_public_key().to_openssh().expect("encode");
    let mut options = hosts.options();

    options.known_hosts = dir.path().join("empty");
    let err = SshClient::new(options.clone()).expect("client").run(&hosts.target("127.0.0.3"), "true").await;
    assert!(matches!(err, Err(HostFailure::HostKey(ref m)) if m.contains("is not in")), "{err:?}");

    options.known_hosts = dir.path().join("revoked");
    std::fs::write(&options.known_hosts, format!("[127.0.0.3]:{PORT} {host_key}\n@revoked * {host_key}\n")).expect("w");
    let err = SshClient::new(options.clone()).expect("client").run(&hosts.target("127.0.0.3"), "true").await;
    assert!(matches!(err, Err(HostFailure::HostKey(ref m)) if m.contains("@revoked")), "{err:?}");

    // `ssh-keygen -H` hashes every name of the script's known_hosts, as HashKnownHosts does.
    let hashed = dir.path().join("hashed");
    std::fs::copy(hosts.known_hosts(), &hashed).expect("copy");
    let status = std::process::Command::new("ssh-keygen").arg("-H").arg("-f").arg(&hashed).output().expect("keygen");
    assert!(status.status.success());
    let text = std::fs::read_to_string(&hashed).expect("read");
    assert!(text.starts_with("|1|") && !text.contains("127.0.0.3"), "{text}");
    options.known_hosts = hashed;
    let out = SshClient::new(options).expect("client").run(&hosts.target("127.0.0.3"), "echo hashed-ok").await;
    assert_eq!(out.expect("hashed entry trusted").stdout, b"hashed-ok\n");
}

#[tokio::test]
async fn an_address_where_nothing_listens_is_unreachable() {
    let hosts = hosts();
    // A port that was free a moment ago on an address with no sshd.
    let port = std::net::TcpListener::bind("127.0.0.2:0").and_then(|l| l.local_addr()).expect("bind").port();
    let client = SshClient::new(hosts.options()).expect("client");
    let mut target = hosts.target("127.0.0.2");
    target.port = port;
    let err = client.run(&target, "true").await.expect_err("nothing listens");
    assert!(matches!(err, HostFailure::Unreachable(_)), "{err:?}");
    let mut target = hosts.target("no-such-host.invalid");
    target.host = "no-such-host.invalid".into();
    let err = client.run(&target, "true").await.expect_err("no such name");
    assert!(matches!(err, HostFailure::Unreachable(ref m) if m.contains("resolve")), "{err:?}");
}

#[tokio::test]
async fn a_wrong_client_key_is_an_auth_failure() {
    let hosts = hosts();
    let dir = tempfile::tempdir().expect("tempdir");
    let stranger = dir.path().join("stranger");
    keygen(&stranger, "ed25519", "");
    let mut options = hosts.options();
    options.auth = SshAuth::KeyFile { path: stranger, passphrase: None };
    let err = SshClient::new(options).expect("client").run(&hosts.target("127.0.0.4"), "true").await;
    assert!(matches!(err, Err(HostFailure::Auth(ref m)) if m.contains("refused")), "{err:?}");
    // A wrong user is refused the same way.
    let mut options = hosts.options();
    options.user = "nobody-cmdb".into();
    let err = SshClient::new(options).expect("client").run(&hosts.target("127.0.0.4"), "true").await;
    assert!(matches!(err, Err(HostFailure::Auth(_))), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_records_first_seen_keys_once_and_a_changed_key_then_fails() {
    let hosts = hosts();
    let dir = tempfile::tempdir().expect("tempdir");
    let known_hosts = dir.path().join("ssh/known_hosts");
    let mut options = hosts.options();
    options.known_hosts = known_hosts.clone();
    options.host_key_policy = HostKeyPolicy::AcceptNew;
    // Every host at once, twice over, on one client: one line per host, no torn lines.
    let client = SshClient::new(options.clone()).expect("client");
    let mut runs = tokio::task::JoinSet::new();
    for address in hosts.addresses.iter().chain(hosts.addresses.iter()) {
        let (client, target) = (client.clone(), hosts.target(address));
        runs.spawn(async move { client.run(&target, "echo ok").await });
    }
    while let Some(joined) = runs.join_next().await {
        assert_eq!(joined.expect("task").expect("accept-new connects").stdout, b"ok\n");
    }
    let text = std::fs::read_to_string(&known_hosts).expect("recorded");
    let host_key = host_public_key();
    let mut bare_key = host_key.clone();
    bare_key.set_comment("");
    let host_key_text = bare_key.to_openssh().expect("encode");
    let mut expected: Vec<String> = hosts.addresses.iter().map(|a| format!("[{a}]:{PORT} {host_key_text}")).collect();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    expected.sort();
    lines.sort();
    assert_eq!(lines, expected);

    // What was recorded is trusted by a strict client.
    let mut strict = options.clone();
    strict.host_key_policy = HostKeyPolicy::Strict;
    let out = SshClient::new(strict).expect("client").run(&hosts.target("127.0.0.5"), "echo strict").await;
    assert_eq!(out.expect("recorded key trusted").stdout, b"strict\n");

    // Now the file says 127.0.0.5 had another key: the host's real key is a change, and fails.
    let other = public_key(&hosts.dir.join("client_key.pub")).to_openssh().expect("encode");
    let tampered = text.replace(&format!("[127.0.0.5]:{PORT} {host_key_text}"), &format!("[127.0.0.5]:{PORT} {other}"));
    std::fs::write(&known_hosts, &tampered).expect("write");
    let err = SshClient::new(options).expect("client").run(&hosts.target("127.0.0.5"), "true").await;
    assert!(matches!(err, Err(HostFailure::HostKey(ref m)) if m.contains("CHANGED")), "{err:?}");
    assert_eq!(std::fs::read_to_string(&known_hosts).expect("read"), tampered, "a changed key is never written");
}

/// Extra client keys (RSA with a passphrase, ECDSA) are authorised once in the test hosts'
/// authorized_keys, which sshd re-reads on every login.
fn authorise(hosts: &LoopbackHosts, key: &Path) {
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub");
    let authorized = hosts.dir.join("authorized_keys");
    let current = std::fs::read_to_string(&authorized).unwrap_or_default();
    if !current.contains(public.trim()) {
        let _lock = ssh_support::setup_lock(&hosts.dir.with_extension("lock"));
        std::fs::write(&authorized, format!("{current}{}\n", public.trim())).expect("authorize");
    }
}

#[tokio::test]
async fn rsa_with_passphrase_ecdsa_and_agent_keys_authenticate() {
    let hosts = hosts();
    let keys = hosts.dir.join("extra-keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    let rsa = keys.join("rsa");
    let ecdsa = keys.join("ecdsa");
    keygen(&rsa, "rsa", "correct horse");
    keygen(&ecdsa, "ecdsa", "");
    authorise(hosts, &rsa);
    authorise(hosts, &ecdsa);
    let mut options = hosts.options();
    for (path, passphrase) in [(rsa.clone(), Some("correct horse".to_owned())), (ecdsa, None)] {
        options.auth = SshAuth::KeyFile { path: path.clone(), passphrase };
        let out = SshClient::new(options.clone()).expect("key loads").run(&hosts.target("127.0.0.6"), "id -u").await;
        assert_eq!(out.unwrap_or_else(|e| panic!("{}: {e}", path.display())).stdout, b"0\n");
    }

    // A private ssh-agent holding the ed25519 client key.
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent starts");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    options.auth = SshAuth::Agent;
    let empty = SshClient::new(options.clone()).expect("client").with_agent_socket(socket.clone());
    let err = empty.run(&hosts.target("127.0.0.6"), "true").await;
    assert!(matches!(err, Err(HostFailure::Auth(ref m)) if m.contains("no keys")), "{err:?}");
    let added = std::process::Command::new("ssh-add")
        .arg(hosts.client_key())
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .expect("ssh-add");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let with_key = SshClient::new(options).expect("client").with_agent_socket(socket);
    let out = with_key.run(&hosts.target("127.0.0.6"), "echo via-agent").await;
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(out.expect("agent key accepted").stdout, b"via-agent\n");
}

#[tokio::test]
async fn script_goes_on_stdin_and_status_and_stderr_come_back() {
    let hosts = hosts();
    let client = SshClient::new(hosts.options()).expect("client");
    // 1 MiB of script: far past any argv limit, and past the SSH window.
    let filler = format!("# {}\n", "x".repeat(1023)).repeat(1024);
    let script = format!("{filler}printf 'a\\0b\\377'; echo to-stderr >&2; exit 7\n");
    let out = client.run(&hosts.target("127.0.0.7"), &script).await.expect("runs");
    assert_eq!(out.stdout, b"a\0b\xff");
    assert_eq!(out.stderr, b"to-stderr\n");
    assert_eq!(out.status, Some(7));
}

#[tokio::test]
async fn a_hung_probe_times_out_the_host_and_its_probe_timeout_kills_it() {
    let hosts = hosts();
    let mut options: SshOptions = hosts.options();
    options.command_timeout = Duration::from_secs(1);
    let client = SshClient::new(options).expect("client");
    // A unique sleep length marks this test's remote process; its probe may run 2 s.
    let marker = "sleep 87.0313";
    let probe = cmdb_collect::ProbeSpec {
        id: "hangs".into(),
        script: format!("{marker}; echo never"),
        needs_root: false,
        replay_file: None,
        timeout: Duration::from_secs(2),
        may_hang: true,
        programs: Vec::new(),
    };
    let script = cmdb_collect::bundle::script(&[probe], Become::None, &cmdb_collect::bundle::new_boundary());
    let started = Instant::now();
    let err = client.run(&hosts.target("127.0.0.8"), &script).await.expect_err("hangs");
    assert!(matches!(err, HostFailure::Timeout(_)), "{err:?}");
    // Had the 1 s command timeout not fired, the probe timeout would have ended the script
    // at 2 s with a result instead of this error; the bound only guards against a hang.
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // sshd will not signal a root session, so the probe's own `timeout` must end it.
    let deadline = Instant::now() + Duration::from_secs(6);
    while process_running(marker) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!process_running(marker), "the hung probe was left running");
}

#[tokio::test]
async fn missing_key_file_fails_once_up_front() {
    let mut options = hosts().options();
    options.auth = SshAuth::KeyFile { path: PathBuf::from("/nonexistent/cmdb/key"), passphrase: None };
    assert!(matches!(SshClient::new(options), Err(HostFailure::Auth(_))));
}

/// An extra sshd on 127.0.0.2 port 2324 that presents the test hosts' key with a host
/// certificate signed by a test CA (principals 127.0.0.2 and cert-host.test), for the
/// `@cert-authority` lines. Started once, reused while it runs.
fn certificate_host() -> &'static PathBuf {
    static CA: OnceLock<PathBuf> = OnceLock::new();
    CA.get_or_init(|| {
        let hosts = hosts();
        let dir = hosts.dir.join("cert");
        let _lock = ssh_support::setup_lock(&hosts.dir.with_extension("cert.lock"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        ssh_support::kill_when_unused(&hosts.dir.with_extension("cert.users"), &dir.join("sshd.pid"));
        if ssh_support::pids_alive(&dir, "sshd") {
            return dir;
        }
        keygen(&dir.join("ca"), "ed25519", "");
        let host_key = dir.join("host_key");
        std::fs::copy(hosts.dir.join("ssh_host_ed25519_key"), &host_key).expect("copy key");
        std::fs::copy(hosts.dir.join("ssh_host_ed25519_key.pub"), dir.join("host_key.pub")).expect("copy pub");
        let signed = std::process::Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(dir.join("ca"))
            .args(["-h", "-I", "cmdb-test-host", "-n", "127.0.0.2,cert-host.test", "-V", "-1d:+3650d"])
            .arg(dir.join("host_key.pub"))
            .output()
            .expect("ssh-keygen -s");
        assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
        let config = format!(
            "Port 2324\nListenAddress 127.0.0.2\nHostKey {key}\nHostCertificate {key}-cert.pub\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\nLogLevel ERROR\n",
            key = host_key.display(),
            dir = dir.display(),
            auth = hosts.dir.join("authorized_keys").display()
        );
        std::fs::write(dir.join("sshd.conf"), config).expect("config");
        let started = std::process::Command::new("/usr/sbin/sshd")
            .arg("-f")
            .arg(dir.join("sshd.conf"))
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .status()
            .expect("sshd starts");
        assert!(started.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect("127.0.0.2:2324").is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        dir
    })
}

#[tokio::test]
async fn host_certificates_are_trusted_through_cert_authority_lines() {
    let dir = certificate_host();
    let hosts = hosts();
    let ca = std::fs::read_to_string(dir.join("ca.pub")).expect("ca.pub");
    let ca = ca.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let known_hosts = tempfile::tempdir().expect("tempdir");
    let mut options = hosts.options();
    let mut target = hosts.target("127.0.0.2");
    target.port = 2324;
    let mut run = |contents: String| {
        let path = known_hosts.path().join(format!("kh-{}", rand_suffix()));
        std::fs::write(&path, contents).expect("write");
        options.known_hosts = path;
        SshClient::new(options.clone()).expect("client")
    };
    // Only the CA is listed: the certificate (principal 127.0.0.2, signed by it) is trusted.
    // As in OpenSSH, a host on a port other than 22 is named [host]:port in every line.
    for pattern in ["[127.0.0.*]:2324", "*"] {
        let out = run(format!("@cert-authority {pattern} {ca}\n")).run(&target, "echo cert-ok").await;
        assert_eq!(out.expect("certificate trusted").stdout, b"cert-ok\n");
    }
    // A CA line for other hosts does not cover this one, and another CA is not this one.
    let other_ca = std::fs::read_to_string(hosts.dir.join("client_key.pub")).expect("pub");
    let other_ca = other_ca.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    for contents in [format!("@cert-authority *.example.com {ca}\n"), format!("@cert-authority * {other_ca}\n")] {
        let err = run(contents.clone()).run(&target, "true").await;
        assert!(matches!(err, Err(HostFailure::HostKey(_))), "{contents}: {err:?}");
    }
    // A revoked CA loses even though it is listed.
    let err = run(format!("@cert-authority * {ca}\n@revoked * {ca}\n")).run(&target, "true").await;
    assert!(matches!(err, Err(HostFailure::HostKey(ref m)) if m.contains("@revoked")), "{err:?}");
}

fn rand_suffix() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
