//! The Salt transport against a real Salt master and three minions on this machine
//! (`scripts/loopback-salt.sh up 3`: a venv from PyPI under /tmp/cmdb-salt, 1-2 minutes the first
//! time; minion ids m1..m3). Every minion is this machine, so each must return what the local
//! transport returns for the same plan.

mod ssh_support;

use std::path::PathBuf;

use std::sync::OnceLock;
use std::time::Duration;

use cmdb_collect::transport::HostFailure;
use cmdb_collect::transport::salt::{self, SaltOptions};
use cmdb_collect::{Become, Plan};

fn minions() -> Vec<String> {
    ssh_support::SALT_MINIONS.iter().map(|m| (*m).to_owned()).collect()
}

/// The loopback master and minions, started (or reused) once per process; batches of 2.
fn options() -> &'static SaltOptions {
    static OPTIONS: OnceLock<SaltOptions> = OnceLock::new();
    OPTIONS.get_or_init(|| ssh_support::loopback_salt(2, cmdb_collect::transport::DEFAULT_OUTPUT_LIMIT))
}

#[tokio::test]
async fn every_minion_returns_what_the_local_transport_returns() {
    let options = options();
    let plan = Plan::all_builtin();
    let boundary = cmdb_collect::bundle::new_boundary();
    let script = plan.script(Become::Sudo, &boundary);
    let local = cmdb_collect::transport::local::run(&script, Duration::from_secs(60)).await.expect("local run");
    let local_outputs = plan.split(&local.stdout, &boundary);
    assert!(local_outputs.succeeded("cpuinfo").is_some(), "the local run itself works");

    // Batches of 2 over 3 minions: two salt invocations, results in the order asked.
    let results = salt::run(options, &minions(), &script).await;
    assert_eq!(results.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(), minions());
    for (minion, result) in results {
        let output = result.unwrap_or_else(|e| panic!("{minion}: {e}"));
        assert_eq!(output.status, local.status, "{minion}: script exit status");
        let remote = plan.split(&output.stdout, &boundary);
        // The last frame ends the output: had Salt's rstrip reached it, its newline would be gone.
        assert!(output.stdout.ends_with(b"\n"), "{minion}: output arrives whole");
        ssh_support::assert_same_outputs(&local_outputs, &remote, &minion);
    }
}

#[tokio::test]
async fn an_unknown_minion_is_a_failed_host_and_the_others_still_answer() {
    let options = options();
    let asked = vec!["m1".to_owned(), "no-such-minion".to_owned()];
    let results = salt::run(options, &asked, "printf 'a  \\n\\n'; echo e >&2; exit 5\n").await;
    assert_eq!(results.len(), 2);
    let (first, m1) = &results[0];
    assert_eq!(first, "m1");
    let m1 = m1.as_ref().expect("m1 answers");
    // Trailing blanks and newlines survive the trip (Salt would strip them from plain stdout).
    assert_eq!((m1.stdout.as_slice(), m1.stderr.as_slice(), m1.status), (&b"a  \n\n"[..], &b"e\n"[..], Some(5)));
    let (second, unknown) = &results[1];
    assert_eq!(second, "no-such-minion");
    assert!(matches!(unknown, Err(HostFailure::Unreachable(_))), "{unknown:?}");
}

#[tokio::test]
async fn a_script_past_the_command_timeout_is_a_timeout() {
    let options = options();
    let results =
        salt::run_with_command_timeout(options, &["m2".to_owned()], "sleep 30\n", Duration::from_secs(2)).await;
    assert!(matches!(results[0].1, Err(HostFailure::Timeout(_))), "{:?}", results[0].1);
}

#[tokio::test]
async fn a_missing_salt_binary_fails_every_minion_with_the_reason() {
    let options = SaltOptions {
        salt_bin: PathBuf::from("/nonexistent/salt"),
        extra_args: Vec::new(),
        timeout: Duration::from_secs(5),
        batch_size: 10,
        output_limit: cmdb_collect::transport::DEFAULT_OUTPUT_LIMIT,
    };
    let results = salt::run(&options, &minions(), "true").await;
    assert_eq!(results.len(), 3);
    for (_, result) in results {
        assert!(matches!(result, Err(HostFailure::Other(ref m)) if m.contains("/nonexistent/salt")), "{result:?}");
    }
}
