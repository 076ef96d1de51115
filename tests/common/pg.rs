//! A PostgreSQL database of the test's own, on the machine's server
//! (127.0.0.1:5432, trust auth), dropped when the test ends.
//!
//! Without a reachable server the cluster tests are skipped with one loud
//! line, except under CI (`CI=true`), where that is a failure: `.ci/run`
//! starts the installed server first.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub struct Db {
    pub name: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether the server answers.
pub fn reachable() -> bool {
    std::net::TcpStream::connect_timeout(&"127.0.0.1:5432".parse().unwrap(), Duration::from_secs(1)).is_ok()
}

impl Db {
    /// A new, empty database; `None` (with a loud line) when no server is
    /// reachable outside CI.
    pub fn create() -> Option<Db> {
        if !reachable() {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true, but no PostgreSQL answers at 127.0.0.1:5432"
            );
            eprintln!(
                "\n*** SKIPPED: no PostgreSQL at 127.0.0.1:5432. Start it (pg_ctlcluster --skip-systemctl-redirect 15 main start) to run the cluster tests; with CI=true this is a failure. ***\n"
            );
            return None;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "hr_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        psql("test", &format!("CREATE DATABASE {name}"));
        Some(Db { name })
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}?sslmode=disable", self.name)
    }

    /// Runs `sql` in this database; its rows, `|`-separated, one per line.
    pub fn query(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if reachable() {
            let _ = Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
                .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .output();
        }
    }
}

/// The machine's PostgreSQL cluster, for tests that stop and start it.
pub fn server(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| "15".into());
    let out = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .output()
        .expect("run pg_ctlcluster");
    assert!(
        out.status.success(),
        "pg_ctlcluster {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
