//! Controlling tasks: cancel, rerun, delete, reading output, and waiting for
//! the result in the webhook's answer.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const CONFIG: &str = r#"
tasks:
  max_concurrent: 1
sources:
  a:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  trap:
    command: handlers/trap.sh
    env: {PIDS_FILE: $DIR/pids}
  echo:
    command: handlers/log-event.sh
    params: [word]
  slow:
    command: [sleep, "5"]
  waits:
    command: handlers/log-event.sh
    wait: 10s
mappings:
  a:
    trap: {rules: [{run: trap}]}
    echo:
      params: {word: payload.word}
      rules: [{run: echo}]
    slow: {rules: [{run: slow}]}
    waits: {rules: [{run: waits}]}
"#;

fn send(d: &Daemon, path: &str, body: &str) -> Resp {
    d.post_json(path, &[], body.as_bytes())
}

fn one(r: &Resp) -> String {
    Daemon::task_ids(r).remove(0)
}

#[test]
fn cancelling_a_running_task_stops_its_whole_group_and_a_queued_one_never_starts() {
    let d = Daemon::start(CONFIG);
    let running = one(&send(&d, "/hooks/a", r#"{"kind":"trap"}"#));
    let queued = one(&send(&d, "/hooks/a", r#"{"kind":"echo","word":"never"}"#));
    let pids = d.trap_pids();

    let r = d.post(&format!("/tasks/{queued}/cancel"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(r.json()["error"], "cancelled by request");

    let r = d.post(&format!("/tasks/{running}/cancel"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text);
    let task = d.wait_task(&running);
    assert_eq!(task["status"], "cancelled");
    assert_eq!(task["error"], "cancelled by request");
    for pid in pids {
        eventually("the cancelled group's processes to end", Duration::from_secs(5), || {
            !alive(pid)
        });
    }
    assert_eq!(d.get(&format!("/tasks/{queued}")).json()["started_at"], Value::Null);

    let r = d.post(&format!("/tasks/{running}/cancel"), &[], b"");
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), format!("task `{running}` has already finished (cancelled)"));
    assert_eq!(
        d.post("/tasks/00000000-0000-0000-0000-000000000000/cancel", &[], b"")
            .status,
        404
    );
}

#[test]
fn rerun_makes_a_linked_task_with_the_same_params_and_body() {
    let d = Daemon::start(CONFIG);
    let old = one(&send(&d, "/hooks/a", r#"{"kind":"echo","word":"again"}"#));
    let old_task = d.wait_task(&old);
    let r = d.post(&format!("/tasks/{old}/rerun"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text);
    let new = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.header("location"), Some(format!("/tasks/{new}").as_str()));
    let new_task = d.wait_task(&new);
    assert_eq!(new_task["status"], "succeeded");
    assert_eq!(new_task["params"], old_task["params"]);
    assert_eq!(new_task["rerun_of"], old.as_str());
    assert_eq!(new_task["argv"][1], "--word=again");
    assert!(
        new_task["stdout"].as_str().unwrap().contains("stdin: 30 bytes"),
        "{new_task}"
    );
    assert_eq!(
        d.get(&format!("/tasks/{old}")).json()["reruns"],
        serde_json::json!([new])
    );

    // After a fix to the program (a reload), a rerun runs the fixed program.
    let fixed = CONFIG.replace(
        "    command: handlers/log-event.sh\n    params: [word]",
        "    command: [sh, -c, \"echo fixed: $0\"]\n    params: [word]",
    );
    assert_ne!(fixed, CONFIG);
    std::fs::write(d.path("webhook.yaml"), &fixed).unwrap();
    assert_eq!(d.post("/-/reload", &[], b"").status, 200);
    let r = d.post(&format!("/tasks/{old}/rerun"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text);
    let newer = d.wait_task(r.json()["id"].as_str().unwrap());
    assert_eq!(newer["stdout"], "fixed: --word=again\n", "{newer}");
}

#[test]
fn finished_tasks_can_be_deleted_and_running_ones_cannot() {
    let d = Daemon::start(CONFIG);
    let slow = one(&send(&d, "/hooks/a", r#"{"kind":"slow"}"#));
    let r = request("DELETE", &d.url(&format!("/tasks/{slow}")), &[], None);
    assert_eq!(r.status, 409);
    assert!(r.error().contains("has not finished yet"), "{}", r.text);
    d.post(&format!("/tasks/{slow}/cancel"), &[], b"");
    d.wait_task(&slow);
    let r = request("DELETE", &d.url(&format!("/tasks/{slow}")), &[], None);
    assert_eq!(r.status, 204);
    assert_eq!(d.get(&format!("/tasks/{slow}")).status, 404);
}

/// After a restart the finished tasks are read from the store: they can
/// still be deleted (record and output files), and cancelling one says it
/// has finished rather than that it does not exist.
#[test]
fn finished_tasks_from_before_a_restart_can_be_deleted_not_cancelled() {
    let mut d = Daemon::start(&CONFIG.replace("tasks:\n", "state: {path: $DIR/state/hookrunner.db}\ntasks:\n"));
    let id = one(&send(&d, "/hooks/a", r#"{"kind":"echo","word":"kept"}"#));
    d.wait_task(&id);
    // A clean stop: the end of the task is written before the daemon exits
    // (after a kill -9 in the same millisecond it could read `interrupted`).
    assert!(d.terminate().success());
    d.restart();
    let file = d.path(&format!("state/output/{id}.1.out"));
    assert!(file.exists());
    assert!(d.get(&format!("/tasks/{id}/output")).text.contains("--word=kept"));
    let r = d.post(&format!("/tasks/{id}/cancel"), &[], b"");
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error(), format!("task `{id}` has already finished (succeeded)"));
    let r = request("DELETE", &d.url(&format!("/tasks/{id}")), &[], None);
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(d.get(&format!("/tasks/{id}")).status, 404);
    assert!(!file.exists(), "the output file is deleted with the task");
    d.restart();
    assert_eq!(
        d.get(&format!("/tasks/{id}")).status,
        404,
        "the stored record is gone too"
    );
}

#[test]
fn output_is_readable_as_text() {
    let d = Daemon::start(CONFIG);
    let id = one(&send(&d, "/hooks/a", r#"{"kind":"echo","word":"中文 words"}"#));
    d.wait_task(&id);
    let r = d.get(&format!("/tasks/{id}/output"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // A handler's output is never taken for a page by a browser.
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.text.contains("arg 1: --word=中文 words\n"), "{}", r.text);
    assert_eq!(d.get(&format!("/tasks/{id}/output?stream=stderr")).text, "");
    assert_eq!(d.get(&format!("/tasks/{id}/output?stream=both")).status, 400);
}

#[test]
fn wait_holds_the_answer_until_the_tasks_finish_or_the_deadline() {
    let d = Daemon::start(CONFIG);
    let r = send(&d, "/hooks/a?wait=10s", r#"{"kind":"echo","word":"fast"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(body["finished"], true);
    assert_eq!(body["tasks"][0]["status"], "succeeded");
    assert_eq!(body["tasks"][0]["exit_code"], 0);
    assert!(body["tasks"][0]["stdout"].as_str().unwrap().contains("--word=fast"));

    let started = std::time::Instant::now();
    let r = send(&d, "/hooks/a?wait=300ms", r#"{"kind":"slow"}"#);
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.json()["tasks"][0]["status"], "queued");
    d.post(&format!("/tasks/{}/cancel", one(&r)), &[], b"");

    // A program's own `wait` applies without the query.
    let r = send(&d, "/hooks/a", r#"{"kind":"waits"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["tasks"][0]["status"], "succeeded");

    assert_eq!(send(&d, "/hooks/a?wait=forever", r#"{"kind":"echo"}"#).status, 400);
}
