//! SIGTERM: stop accepting, let tasks finish within `tasks.shutdown_grace`,
//! then stop what still runs (its whole group) and exit 0.

mod common;
use common::*;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
tasks:
  max_concurrent: 1
  shutdown_grace: 10s
sources:
  a:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  sleepy:
    command: handlers/sleepy.sh
    env: {OUT_FILE: $DIR/runs, SLEEP: "0.5"}
  trap:
    command: handlers/trap.sh
    env: {PIDS_FILE: $DIR/pids}
mappings:
  a:
    sleepy: {rules: [{run: sleepy}]}
    trap: {rules: [{run: trap}]}
"#;

fn send(d: &Daemon, kind: &str) -> Vec<String> {
    let r = d.post_json("/hooks/a", &[], format!(r#"{{"kind":"{kind}"}}"#).as_bytes());
    Daemon::task_ids(&r)
}

#[test]
fn sigterm_lets_running_and_queued_tasks_finish_then_exits_0() {
    let mut d = Daemon::start(CONFIG);
    let first = send(&d, "sleepy");
    let second = send(&d, "sleepy");
    eventually("the first task to start", Duration::from_secs(10), || {
        std::fs::read_to_string(d.path("runs")).is_ok_and(|r| r.contains("start"))
    });
    let status = d.terminate();
    assert!(status.success(), "exit status {status:?}");
    let runs = std::fs::read_to_string(d.path("runs")).unwrap();
    for id in first.iter().chain(&second) {
        assert!(runs.contains(&format!("end {id}")), "task {id} did not finish:\n{runs}");
    }
    assert!(d.logs().contains("stopping: deliveries are refused"), "{}", d.logs());
}

#[test]
fn after_the_grace_running_groups_are_killed_and_unstarted_tasks_are_reported() {
    let mut d = Daemon::start(&CONFIG.replace("shutdown_grace: 10s", "shutdown_grace: 1s"));
    send(&d, "trap");
    let never = send(&d, "sleepy");
    let pids = d.trap_pids();
    let started = Instant::now();
    let status = d.terminate();
    assert!(status.success(), "exit status {status:?}");
    // 1 s grace, then SIGTERM (ignored) and SIGKILL 5 s later.
    assert!(started.elapsed() < Duration::from_secs(20));
    for pid in pids {
        eventually(
            "the handlers' processes to end with the daemon",
            Duration::from_secs(5),
            || !alive(pid),
        );
    }
    assert!(!d.path("runs").exists(), "the queued task started after the grace");
    let logs = d.logs();
    assert!(
        logs.contains(&format!(
            "task cancelled: the daemon stopped before it started task_id={}",
            never[0]
        )),
        "{logs}"
    );
}

#[test]
fn with_a_store_a_task_the_grace_ran_out_on_shows_interrupted_at_once_and_after_restart() {
    let mut d = Daemon::start(&format!(
        "state:\n  path: $DIR/state/hookrunner.db\n{}",
        CONFIG
            .replace("shutdown_grace: 10s", "shutdown_grace: 1s")
            .replace("SLEEP: \"0.5\"", "SLEEP: \"30\"")
    ));
    let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(30)).build();
    let mut stream = std::io::BufReader::new(agent.get(&d.url("/events")).call().unwrap().into_reader());
    let id = send(&d, "sleepy").remove(0);
    eventually("the handler to start", Duration::from_secs(10), || {
        std::fs::read_to_string(d.path("runs")).is_ok_and(|r| r.contains(&format!("start {id}")))
    });
    signal(d.pid(), "TERM");
    // What the stream says when the grace is over is what the next start says.
    let finished = loop {
        let e = sse::next_event(&mut stream).expect("the stream ended before the task did");
        if e.get("event").map(String::as_str) == Some("task.finished") && e["data"].contains(&id) {
            break serde_json::from_str::<serde_json::Value>(&e["data"]).unwrap();
        }
    };
    assert_eq!(finished["status"], "interrupted", "{finished}");
    assert!(d.terminate_wait().success());
    // Not reported as finished by the stopping daemon: the next start does.
    let logs = d.logs();
    assert!(!logs.contains("task finished"), "{logs}");
    assert!(logs.contains("will show as interrupted at the next start"), "{logs}");
    d.restart();
    let task = d.get(&format!("/tasks/{id}")).json();
    assert_eq!(task["status"], "interrupted", "{task}");
    assert_eq!(task["error"], "daemon stopped while running", "{task}");
    d.logs_with("task interrupted: the daemon stopped while it ran");
}
