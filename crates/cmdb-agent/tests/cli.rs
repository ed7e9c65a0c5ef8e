//! The cmdb-agent binary, driven as an operator would.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::{KEY_ID, SECRET, TestServer, free_port};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn fixture(host: &str) -> PathBuf {
    workspace_root().join("fixtures/hosts").join(host)
}

/// The binary with a clean environment: no CMDB_* from the caller, HOME in `home`.
fn agent(home: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cmdb-agent"));
    command.env_clear();
    command.env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()));
    command.env("HOME", home);
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn run(command: &mut tokio::process::Command) -> Output {
    command.output().await.expect("cmdb-agent runs")
}

/// A temp dir holding an empty config file; returns (dir, config path).
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "").expect("config");
    (dir, config)
}

#[tokio::test]
async fn collect_replay_prints_a_valid_report() {
    let (dir, config) = setup();
    let out =
        run(agent(dir.path()).arg("--config").arg(&config).arg("collect").arg("--replay").arg(fixture("this-vm")))
            .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = cmdb_model::report::parse_report(&out.stdout).expect("a valid v1 report");
    let expected = std::fs::read_to_string(fixture("this-vm").join("hostname")).expect("fixture hostname");
    assert_eq!(report.host.hostname, expected.trim());
    assert_eq!(report.agent.mode, cmdb_model::report::Mode::Agent);
    let names: Vec<&str> = report.sections.keys().map(String::as_str).collect();
    let mut builtin = cmdb_model::report::BUILTIN_SECTIONS.to_vec();
    builtin.sort();
    assert_eq!(names, builtin);
}

#[tokio::test]
async fn collect_on_this_machine_prints_a_valid_report() {
    let (dir, config) = setup();
    let state = dir.path().join("state");
    let out = run(agent(dir.path()).arg("--config").arg(&config).arg("--state-dir").arg(&state).arg("collect")).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = cmdb_model::report::parse_report(&out.stdout).expect("a valid v1 report");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(report.host.hostname, hostname.trim());
    assert!(!state.exists(), "collect writes nothing");

    let out = run(agent(dir.path()).arg("--config").arg(&config).arg("collect").arg("--only").arg("cpu,memory")).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = cmdb_model::report::parse_report(&out.stdout).expect("valid");
    assert_eq!(report.sections.keys().cloned().collect::<Vec<_>>(), vec!["cpu".to_owned(), "memory".to_owned()]);

    let out = run(agent(dir.path()).arg("--config").arg(&config).arg("collect").arg("--only").arg("cpu,gpu")).await;
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    assert!(err.contains("\"gpu\"") && err.contains("--only") && err.contains("basic, cpu"), "{err}");
}

#[tokio::test]
async fn collectors_lists_every_command_and_sudoers_lines() {
    let (dir, config) = setup();
    let out = run(agent(dir.path()).arg("--config").arg(&config).arg("collectors")).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    for c in cmdb_collect::COLLECTORS {
        assert!(listing.contains(c.name()), "{} missing", c.name());
        for p in c.probes() {
            assert!(listing.contains(&format!("$ {}", p.command)), "{:?} missing:\n{listing}", p.command);
        }
    }
    for p in cmdb_collect::ENVELOPE_PROBES {
        assert!(listing.contains(&format!("$ {}", p.command)), "{:?} missing", p.command);
    }
    if cmdb_collect::COLLECTORS.iter().any(|c| c.probes().iter().any(|p| p.needs_root)) {
        assert!(listing.contains("Defaults:cmdb !requiretty"), "{listing}");
        assert!(listing.contains("cmdb ALL=(root) NOPASSWD: /"), "{listing}");
    }
}

#[tokio::test]
async fn config_shows_each_value_with_its_source_and_hides_the_secret() {
    let (dir, config) = setup();
    std::fs::write(&config, "key_id = \"from-file\"\n[ssh]\nuser = \"inventory\"\n").expect("config");
    let state = dir.path().join("state");
    let out = run(agent(dir.path())
        .env("CMDB_SERVER_URL", "https://cmdb.example")
        .env("CMDB_SECRET", "topsecret-value")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .arg("config"))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let line = |key: &str| -> String {
        listing.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_default().to_owned()
    };
    assert!(line("key_id").ends_with(&format!("# {}", config.display())), "{listing}");
    assert!(line("server_url").ends_with("# env CMDB_SERVER_URL"), "{listing}");
    assert!(line("state_dir").ends_with("# flag --state-dir"), "{listing}");
    assert!(line("ssh.user").contains("\"inventory\""), "{listing}");
    assert!(line("ssh.port").ends_with("# default"), "{listing}");
    assert!(line("spool_dir").contains(&state.join("spool").display().to_string()), "{listing}");
    assert!(!listing.contains("topsecret-value"), "the secret must never be printed");
    assert!(line("secret").contains("redacted"), "{listing}");
}

#[tokio::test]
async fn configuration_errors_name_their_source_and_exit_78() {
    let (dir, config) = setup();
    let out =
        run(agent(dir.path()).env("CMDB_SSH__CONCURRENCY", "lots").arg("--config").arg(&config).arg("config")).await;
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("CMDB_SSH__CONCURRENCY"), "{}", text(&out.stderr));

    std::fs::write(&config, "colectors = [\"cpu\"]\n").expect("config");
    let out = run(agent(dir.path()).arg("--config").arg(&config).arg("config")).await;
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    assert!(err.contains(&config.display().to_string()) && err.contains("colectors"), "{err}");
}

fn server_env(command: &mut tokio::process::Command, url: &str, config: &Path, state: &Path) {
    command
        .env("CMDB_SERVER_URL", url)
        .env("CMDB_KEY_ID", KEY_ID)
        .env("CMDB_SECRET", SECRET)
        .env("CMDB_DELIVERY__RETRIES", "1")
        .env("CMDB_DELIVERY__BACKOFF", "10ms")
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_spools_while_the_server_is_down_and_spool_flush_delivers_once() {
    let (dir, config) = setup();
    let state = dir.path().join("state");
    let addr = free_port();
    let url = format!("http://{addr}");

    let mut cmd = agent(dir.path());
    server_env(&mut cmd, &url, &config, &state);
    let out = run(cmd.arg("run").arg("--replay").arg(fixture("this-vm"))).await;
    assert_eq!(out.status.code(), Some(75), "spooled is a temporary failure: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("spooled 1"), "{}", text(&out.stderr));

    let mut cmd = agent(dir.path());
    server_env(&mut cmd, &url, &config, &state);
    let out = run(cmd.arg("spool").arg("list")).await;
    assert!(text(&out.stdout).contains("1 report(s) waiting"), "{}", text(&out.stdout));

    let server = TestServer::start_on(addr).await;
    let mut cmd = agent(dir.path());
    server_env(&mut cmd, &url, &config, &state);
    let out = run(cmd.arg("spool").arg("flush")).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.stored().len(), 1);

    let mut cmd = agent(dir.path());
    server_env(&mut cmd, &url, &config, &state);
    let out = run(cmd.arg("spool").arg("flush")).await;
    assert!(out.status.success());
    assert_eq!(server.stored().len(), 1, "delivered exactly once");
    let mut cmd = agent(dir.path());
    server_env(&mut cmd, &url, &config, &state);
    let out = run(cmd.arg("spool").arg("list")).await;
    assert!(text(&out.stdout).contains("0 report(s) waiting"), "{}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_announces_a_rename_once() {
    let (dir, config) = setup();
    let state = dir.path().join("state");
    let host = dir.path().join("host");
    std::fs::create_dir(&host).expect("replay dir");
    for file in ["cpuinfo.out", "meminfo", "os-release", "uname"] {
        std::fs::copy(fixture("this-vm").join(file), host.join(file)).expect("copy fixture");
    }
    let server = TestServer::start().await;
    for name in ["before-rename", "after-rename", "after-rename"] {
        std::fs::write(host.join("hostname"), format!("{name}\n")).expect("hostname");
        let mut cmd = agent(dir.path());
        server_env(&mut cmd, &server.url(), &config, &state);
        let out = run(cmd.arg("run").arg("--replay").arg(&host)).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let stored = server.stored();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0]["host"]["previous_hostname"], serde_json::Value::Null);
    assert_eq!(stored[1]["host"]["hostname"], "after-rename");
    assert_eq!(stored[1]["host"]["previous_hostname"], "before-rename");
    assert_eq!(stored[2]["host"]["previous_hostname"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_fan_out_ends_with_a_summary_and_fails_when_hosts_fail() {
    let (dir, config) = setup();
    let inventory = dir.path().join("hosts");
    std::fs::write(&inventory, "# nothing listens on port 1\n127.0.0.1:1\n[::1]:1\n").expect("inventory");
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").expect("known_hosts");
    let out = run(agent(dir.path())
        .env("CMDB_SSH_PASSWORD", "not-used")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("ssh")
        .arg("--inventory")
        .arg(&inventory)
        .arg("--known-hosts")
        .arg(&known_hosts)
        .arg("--dry-run"))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("ok 0, failed 2"), "{err}");
    assert!(err.contains("failed hosts:\n") && err.contains("  127.0.0.1:1 ") && err.contains("  [::1]:1 "), "{err}");
    assert!(out.stdout.is_empty(), "no report for failed hosts");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_fan_out_finishes_hosts_in_flight_and_says_what_was_left_out() {
    let (dir, config) = setup();
    // Accepts TCP connections but never speaks SSH: each host hangs until the connect timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let inventory = dir.path().join("hosts");
    let hosts: String = (1..=5).map(|i| format!("root@127.0.0.{i}:{port}\n")).collect();
    std::fs::write(&inventory, hosts).expect("inventory");
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").expect("known_hosts");
    let child = agent(dir.path())
        .env("CMDB_SSH_PASSWORD", "not-used")
        .env("CMDB_SSH__CONNECT_TIMEOUT", "3s")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("ssh")
        .arg("--inventory")
        .arg(&inventory)
        .arg("--known-hosts")
        .arg(&known_hosts)
        .arg("--concurrency")
        .arg("1")
        .arg("--dry-run")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill runs");
    assert!(kill.success());
    let out = child.wait_with_output().await.expect("exits");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("ok 0, failed 1") && err.contains("not started 4 (interrupted)"), "{err}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread")]
async fn salt_target_lists_are_checked() {
    let (dir, config) = setup();
    let out =
        run(agent(dir.path()).arg("--config").arg(&config).arg("salt").arg("--target").arg("web*").arg("--dry-run"))
            .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("salt -L"), "{}", text(&out.stderr));
}

/// The agent must not carry the server's HTTP-server or SQL stack.
#[test]
fn dependency_tree_has_no_server_or_sql_crates() {
    let out = std::process::Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args(["tree", "-p", "cmdb-agent", "-e", "normal", "--prefix", "none", "--format", "{p} {f}", "--offline"])
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tree = text(&out.stdout);
    assert!(tree.lines().any(|l| l.starts_with("reqwest ")), "cargo tree output looks wrong:\n{tree}");
    for line in tree.lines() {
        let mut parts = line.split_whitespace();
        let name = parts.next().unwrap_or_default();
        let features = line.rsplit(' ').next().unwrap_or_default();
        assert!(
            !matches!(name, "axum" | "axum-core" | "sqlx" | "sqlx-core" | "libsqlite3-sys" | "tokio-postgres")
                && !name.starts_with("sqlx-"),
            "{name} is in the agent's dependency tree"
        );
        if matches!(name, "hyper" | "hyper-util") {
            assert!(!features.split(',').any(|f| f == "server" || f.starts_with("server-")), "{line}");
        }
        if name == "reqwest" {
            assert!(features.split(',').any(|f| f == "__rustls"), "reqwest must use rustls: {line}");
            assert!(!features.split(',').any(|f| f.contains("native-tls")), "{line}");
        }
    }
}
