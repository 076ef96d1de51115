//! Per-key concurrency (`queue`, `replace`, `cancel_running`), per-program
//! limits, and retries with backoff.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const CONFIG: &str = r#"
tasks:
  max_concurrent: 8
sources:
  a:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  serial:
    command: handlers/sleepy.sh
    concurrency_key: "{repo}"
    env: {OUT_FILE: $DIR/serial, SLEEP: "0.3"}
  latest:
    command: handlers/sleepy.sh
    concurrency_key: "{repo}"
    on_busy: replace
    env: {OUT_FILE: $DIR/latest, SLEEP: "1"}
  preempt:
    command: handlers/trap.sh
    concurrency_key: "{repo}"
    on_busy: cancel_running
    env: {PIDS_FILE: $DIR/pids}
  limited:
    command: handlers/sleepy.sh
    max_concurrent: 1
    env: {OUT_FILE: $DIR/limited, SLEEP: "0.3"}
  flaky:
    command: handlers/attempts.sh
    retry: {attempts: 3, backoff: 200ms, max_backoff: 1s}
    env: {COUNT_FILE: $DIR/flaky-count}
  codes:
    command: handlers/attempts.sh
    exit_codes: {success: [0, 78], retry: [75]}
    env: {COUNT_FILE: $DIR/codes-count, FAIL_CODE: "75", SUCCEED_ON: "2", FINAL_CODE: "78"}
  giveup:
    command: handlers/attempts.sh
    retry: {attempts: 2, backoff: 100ms}
    env: {COUNT_FILE: $DIR/giveup-count, SUCCEED_ON: "9"}
mappings:
  a:
    "*":
      params: {repo: payload.repo}
      rules:
        - if: event == "serial"
          run: serial
        - if: event == "latest"
          run: latest
        - if: event == "preempt"
          run: preempt
        - if: event == "limited"
          run: limited
        - if: event == "flaky"
          run: flaky
        - if: event == "codes"
          run: codes
        - if: event == "giveup"
          run: giveup
"#;

fn send(d: &Daemon, kind: &str, repo: &str) -> String {
    let r = d.post_json(
        "/hooks/a",
        &[],
        format!(r#"{{"kind":"{kind}","repo":"{repo}"}}"#).as_bytes(),
    );
    Daemon::task_ids(&r).remove(0)
}

/// (task id, start or end) in the order the handler wrote them.
fn events(d: &Daemon, file: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(d.path(file))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (what, id) = l.split_once(' ').unwrap();
            (id.to_string(), what.to_string())
        })
        .collect()
}

#[test]
fn same_key_tasks_run_one_after_another_in_order_and_other_keys_in_parallel() {
    let d = Daemon::start(CONFIG);
    let same: Vec<String> = (0..5).map(|_| send(&d, "serial", "acme/app")).collect();
    let other = send(&d, "serial", "acme/other");
    for id in same.iter().chain([&other]) {
        assert_eq!(d.wait_task(id)["status"], "succeeded");
    }
    let log: Vec<(String, String)> = events(&d, "serial")
        .into_iter()
        .filter(|(id, _)| *id != other)
        .collect();
    let expected: Vec<(String, String)> = same
        .iter()
        .flat_map(|id| [(id.clone(), "start".into()), (id.clone(), "end".into())])
        .collect();
    assert_eq!(log, expected, "same-key tasks overlapped or ran out of order");
    // The other key did not wait for the first key's queue.
    let all = events(&d, "serial");
    let other_start = all.iter().position(|e| e.0 == other && e.1 == "start").unwrap();
    let last_end = all.iter().rposition(|e| same.contains(&e.0) && e.1 == "end").unwrap();
    assert!(
        other_start < last_end,
        "different keys did not run in parallel: {all:?}"
    );
    assert_eq!(
        d.get(&format!("/tasks/{}", same[0])).json()["concurrency_key"],
        "acme/app"
    );
}

#[test]
fn replace_runs_the_running_task_and_only_the_newest_waiting_one() {
    // The first deploy runs until the whole burst is in, however slowly.
    let d = Daemon::start(&CONFIG.replace(
        "env: {OUT_FILE: $DIR/latest, SLEEP: \"1\"}",
        "env: {OUT_FILE: $DIR/latest, SLEEP: \"1\", FIRST_SLEEP: \"6\"}",
    ));
    let first = send(&d, "latest", "acme/app");
    eventually("the first deploy to start", Duration::from_secs(10), || {
        !events(&d, "latest").is_empty()
    });
    let burst: Vec<String> = (0..5).map(|_| send(&d, "latest", "acme/app")).collect();
    let tasks: Vec<Value> = std::iter::once(&first)
        .chain(&burst)
        .map(|id| d.wait_task(id))
        .collect();
    let ran: Vec<&str> = tasks
        .iter()
        .filter(|t| t["status"] == "succeeded")
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ran,
        vec![first.as_str(), burst[4].as_str()],
        "exactly the running one and the newest ran"
    );
    for (i, t) in tasks[1..5].iter().enumerate() {
        assert_eq!(t["status"], "cancelled");
        let by = &burst[i + 1];
        assert_eq!(t["error"], format!("superseded by {by}"));
        assert_eq!(t["started_at"], Value::Null);
    }
    // And they never overlapped.
    let log = events(&d, "latest");
    assert_eq!(
        log.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["start", "end", "start", "end"]
    );
}

#[test]
fn cancel_running_stops_the_running_task_group_and_takes_its_place() {
    let d = Daemon::start(CONFIG);
    let first = send(&d, "preempt", "acme/app");
    let pids = d.trap_pids();
    std::fs::remove_file(d.path("pids")).unwrap();
    let second = send(&d, "preempt", "acme/app");
    let old = d.wait_task(&first);
    assert_eq!(old["status"], "cancelled");
    assert_eq!(old["error"], format!("superseded by {second}"));
    for pid in pids {
        eventually("the superseded task's processes to end", Duration::from_secs(5), || {
            !alive(pid)
        });
    }
    d.trap_pids(); // the new task has started
    assert_eq!(d.get(&format!("/tasks/{second}")).json()["status"], "running");
    d.post(&format!("/tasks/{second}/cancel"), &[], b"");
    d.wait_task(&second);
}

#[test]
fn a_program_limit_holds_while_other_programs_run() {
    let d = Daemon::start(CONFIG);
    let ids: Vec<String> = (0..3).map(|i| send(&d, "limited", &format!("r{i}"))).collect();
    for id in &ids {
        d.wait_task(id);
    }
    let log = events(&d, "limited");
    assert_eq!(
        log.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["start", "end", "start", "end", "start", "end"]
    );
}

#[test]
fn a_failing_handler_is_retried_with_backoff_and_each_attempt_is_recorded() {
    let d = Daemon::start(CONFIG);
    let id = send(&d, "flaky", "x");
    let task = d.wait_task(&id);
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["attempt"], 3);
    let attempts = task["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], i + 1);
        assert_eq!(a["status"], "failed");
        assert_eq!(a["exit_code"], 1);
        assert_eq!(a["stdout"], format!("run {}\n", i + 1));
    }
    assert_eq!(task["stdout"], "run 3\n");
    // The backoff was honoured: the next attempt started no earlier than half a step after the last ended.
    let ended = humantime::parse_rfc3339(attempts[0]["finished_at"].as_str().unwrap()).unwrap();
    let next = humantime::parse_rfc3339(attempts[1]["started_at"].as_str().unwrap()).unwrap();
    assert!(
        next.duration_since(ended).unwrap() >= Duration::from_millis(100),
        "{task}"
    );
}

#[test]
fn exit_codes_can_ask_for_a_retry_or_count_as_success() {
    let d = Daemon::start(CONFIG);
    let task = d.wait_task(&send(&d, "codes", "x"));
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["exit_code"], 78);
    assert_eq!(task["attempts"][0]["exit_code"], 75);
    assert_eq!(task["attempt"], 2);
    // Out of attempts: the last failure stands.
    let task = d.wait_task(&send(&d, "giveup", "x"));
    assert_eq!(task["status"], "failed");
    assert_eq!(task["attempt"], 2);
    assert_eq!(task["attempts"].as_array().unwrap().len(), 1);
}
