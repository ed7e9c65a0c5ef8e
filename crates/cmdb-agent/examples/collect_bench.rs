//! Wall time of `cmdb-agent collect` on this machine: 50 runs (after 5 warm-up runs), median,
//! mean, min and max. Target: a median of at most 20 ms.
//!
//! ```text
//! cargo build --release -p cmdb-agent --bin cmdb-agent --example collect_bench
//! target/release/examples/collect_bench [PATH-TO-cmdb-agent] [RUNS]
//! ```
//! Without a path, the `cmdb-agent` next to this example's directory is measured.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let binary = match args.next() {
        Some(path) => PathBuf::from(path),
        None => {
            let me = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
            let dir = me.parent().and_then(|examples| examples.parent()).ok_or("unexpected example location")?;
            dir.join("cmdb-agent")
        }
    };
    let runs: usize = match args.next() {
        Some(n) => n.parse().map_err(|_| format!("RUNS must be a number, not {n:?}"))?,
        None => 50,
    };
    let once = || -> Result<Duration, String> {
        let start = Instant::now();
        let status = Command::new(&binary)
            .arg("collect")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let elapsed = start.elapsed();
        if !status.success() {
            return Err(format!("{} collect failed: {status}", binary.display()));
        }
        Ok(elapsed)
    };
    for _ in 0..5 {
        once()?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(once()?);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median =
        if runs % 2 == 1 { ms(times[runs / 2]) } else { (ms(times[runs / 2 - 1]) + ms(times[runs / 2])) / 2.0 };
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / runs as f64;
    println!(
        "cmdb-agent collect, {runs} runs: median {median:.1} ms, mean {mean:.1} ms, min {:.1} ms, max {:.1} ms (target: median <= 20 ms)",
        ms(times[0]),
        ms(times[runs - 1])
    );
    Ok(())
}
