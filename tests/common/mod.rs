//! Test helpers: start the real `hookrunner` binary on a free port in a temp
//! directory, talk HTTP to it, and wait for tasks with deadlines, not sleeps.
#![allow(dead_code)]

pub mod pg;
pub mod sse;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hookrunner");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A running daemon in its own temp directory.
pub struct Daemon {
    child: Option<Child>,
    pub addr: String,
    pub dir: tempfile::TempDir,
    logs: Arc<Mutex<Vec<String>>>,
    /// Set when the daemon's stderr has been read to its end.
    logs_ended: Arc<AtomicBool>,
    env: Vec<(String, String)>,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Resp {
    /// The answer as JSON, however deeply it nests (a task's params hold what
    /// the body held, a few levels further in).
    pub fn json(&self) -> Value {
        use serde::Deserialize;
        let mut de = serde_json::Deserializer::from_str(&self.text);
        de.disable_recursion_limit();
        Value::deserialize(&mut de).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The `error` sentence of an error answer.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.text))
            .to_string()
    }
}

/// Copies the shipped handlers and the test handlers into `dir/handlers`.
pub fn install_handlers(dir: &Path) {
    let target = dir.join("handlers");
    std::fs::create_dir_all(&target).unwrap();
    for from in [Path::new(ROOT).join("handlers"), Path::new(ROOT).join("tests/handlers")] {
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
        }
    }
}

pub struct Builder {
    config: String,
    env: Vec<(String, String)>,
    handlers: bool,
}

impl Builder {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn without_handlers(mut self) -> Self {
        self.handlers = false;
        self
    }
    pub fn start(self) -> Daemon {
        self.start_in(tempfile::tempdir().unwrap())
    }

    /// Starts in `dir`, which may already hold state (a store, files).
    pub fn start_in(self, dir: tempfile::TempDir) -> Daemon {
        if self.handlers {
            install_handlers(dir.path());
        }
        let config = self.config.replace("$DIR", &dir.path().display().to_string());
        std::fs::write(dir.path().join("webhook.yaml"), config).unwrap();
        Daemon::spawn(dir, &self.env)
    }
}

impl Daemon {
    /// A daemon on `config` (`$DIR` in it is replaced by the temp directory).
    pub fn with(config: &str) -> Builder {
        Builder {
            config: config.to_string(),
            env: Vec::new(),
            handlers: true,
        }
    }

    pub fn start(config: &str) -> Daemon {
        Daemon::with(config).start()
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Daemon {
        Daemon::with(config).start_in(dir)
    }

    fn spawn(dir: tempfile::TempDir, env: &[(String, String)]) -> Daemon {
        let (child, addr, logs, logs_ended) = launch(dir.path(), env, "127.0.0.1:0");
        Daemon {
            child: Some(child),
            addr,
            dir,
            logs,
            logs_ended,
            env: env.to_vec(),
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again in the same directory (after `kill9` or `terminate`).
    pub fn restart(&mut self) {
        self.relaunch("127.0.0.1:0");
    }

    /// Like `restart`, on the same address: a client that was connected
    /// (a browser's page) finds the new daemon where the old one was.
    pub fn restart_same_address(&mut self) {
        let addr = self.addr.clone();
        self.relaunch(&addr);
    }

    fn relaunch(&mut self, listen: &str) {
        self.kill9();
        let (child, addr, logs, logs_ended) = launch(self.dir.path(), &self.env, listen);
        self.child = Some(child);
        self.addr = addr;
        self.logs = logs;
        self.logs_ended = logs_ended;
    }
}

type Launched = (Child, String, Arc<Mutex<Vec<String>>>, Arc<AtomicBool>);

fn launch(dir: &Path, env: &[(String, String)], listen: &str) -> Launched {
    {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(dir.join("webhook.yaml"))
            .args(["--listen", listen])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start hookrunner");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        let ended = Arc::new(AtomicBool::new(false));
        let ended_in_reader = ended.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    // Text or JSON logs: the address runs to the first quote or space.
                    let addr: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != '"').collect();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
            ended_in_reader.store(true, Ordering::SeqCst);
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("daemon did not start:\n{}", logs.lock().unwrap().join("\n"));
            }
        };
        (child, addr, logs, ended)
    }
}

impl Daemon {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The pids the `trap` test handler wrote (itself and its child), once it has written them.
    pub fn trap_pids(&self) -> Vec<i32> {
        // The shell creates the file before it writes both numbers.
        eventually("the trap handler to start", Duration::from_secs(10), || {
            std::fs::read_to_string(self.path("pids"))
                .is_ok_and(|s| s.ends_with('\n') && s.split_whitespace().count() == 2)
        });
        std::fs::read_to_string(self.path("pids"))
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The logs once they hold `needle`: a line is read from the daemon's
    /// output a moment after it is written, and some are written after the
    /// answer that the test has already seen.
    pub fn logs_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in the logs:\n{logs}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request("POST", &self.url(path), headers, Some(body))
    }

    /// POSTs JSON with the given extra headers.
    pub fn post_json(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        self.post(path, &all, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        request("GET", &self.url(path), &[], None)
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        request("GET", &self.url(path), headers, None)
    }

    /// Waits until the task has finished; returns it.
    pub fn wait_task(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let task = self.get(&format!("/tasks/{id}")).json();
            let status = task["status"].as_str().unwrap_or("").to_string();
            if !matches!(status.as_str(), "queued" | "running") {
                return task;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} still {status}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The ids of the tasks in a 202 answer.
    pub fn task_ids(resp: &Resp) -> Vec<String> {
        assert_eq!(resp.status, 202, "expected 202: {}", resp.text);
        resp.json()["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        signal(child.id(), "TERM");
        let status = wait_exit(&mut child, Duration::from_secs(60));
        self.read_last_logs();
        status
    }

    /// Waits for the daemon to exit (after a signal sent some other way).
    pub fn terminate_wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(60));
        self.read_last_logs();
        status
    }

    /// Waits (a few seconds at most) until the exited daemon's last log
    /// lines have been read, so `logs()` holds what it wrote before exiting.
    fn read_last_logs(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.logs_ended.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn signal(pid: u32, name: &str) {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

/// Whether a process with this pid exists.
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP request; any status is an answer, not an error.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or("").to_string();
            (n, v)
        })
        .collect();
    let text = resp.into_string().unwrap();
    Resp { status, headers, text }
}

/// `sha256=<hex>` HMAC as GitHub signs.
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn github_headers<'a>(event: &'a str, sig: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("X-GitHub-Event", event), ("X-Hub-Signature-256", sig)]
}

/// A fixture's exact bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(ROOT).join("tests/fixtures").join(name)).unwrap()
}

/// Waits until `check` holds, or panics with `what`.
pub fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
