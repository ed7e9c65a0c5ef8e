//! A throwaway PostgreSQL cluster for fault tests: initdb + pg_ctl from /usr/lib/postgresql/*/bin,
//! run as the postgres user (they refuse root), in a temporary directory on its own port, so
//! stopping and starting it disturbs nothing else on the machine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A private cluster; stopped and removed on drop.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version with pg_ctl")
}

fn as_postgres(program: &Path, args: &[&str]) -> std::process::Output {
    // initdb and postgres refuse to run as root; runuser drops to the postgres account.
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .expect("runuser (tests run as root, as CI does)");
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl PgCluster {
    /// Creates and starts a cluster on a free port.
    pub fn start() -> PgCluster {
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(format!("cmdb-pg-{}", cmdb_server::auth::random_hex(6)));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let status = Command::new("chown").arg("postgres:postgres").arg(&dir).status().expect("chown");
        assert!(status.success());
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().expect("addr").port()
        };
        let data = dir.join("data");
        as_postgres(
            &bin.join("initdb"),
            &["-D", data.to_str().expect("utf8"), "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let cluster = PgCluster { bin, dir, port };
        cluster.up();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Starts the (stopped) cluster and waits until it accepts connections.
    pub fn up(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on", self.port, self.dir.display());
        let log = self.dir.join("log").display().to_string();
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "-t", "30", "start"],
        );
    }

    /// Stops the cluster (fast shutdown: open connections are cut).
    pub fn down(&self) {
        as_postgres(&self.bin.join("pg_ctl"), &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// A database URL on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
