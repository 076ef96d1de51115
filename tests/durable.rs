//! The durable store: a `202` survives a crash, queued work resumes after a
//! restart, running work is marked interrupted (or re-run), history outlives
//! the process, and a store that cannot write refuses deliveries with 503.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn config(on_interrupt: &str, state: &str) -> String {
    format!(
        r#"
state:
  path: {state}
tasks:
  max_concurrent: 2
  max_queued: 40
  shutdown_grace: 10s
sources:
  a:
    provider: generic
    auth: none
    event: {{field: kind}}
programs:
  work:
    command: handlers/sleepy.sh
    on_interrupt: {on_interrupt}
    env: {{OUT_FILE: $DIR/runs, SLEEP: "0.2"}}
  quick:
    command: handlers/log-event.sh
mappings:
  a:
    work: {{rules: [{{run: work}}]}}
    quick: {{rules: [{{run: quick}}]}}
"#
    )
}

/// Sends deliveries from 4 threads until `stop`; returns the task ids that got a 202.
fn burst(d: &Daemon, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..4)
        .map(|_| {
            let url = d.url("/hooks/a");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
                let mut accepted = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match agent
                        .post(&url)
                        .set("Content-Type", "application/json")
                        .send_string(r#"{"kind":"work"}"#)
                    {
                        Ok(r) if r.status() == 202 => {
                            let v: Value = r.into_json().unwrap();
                            accepted.push(v["tasks"][0]["id"].as_str().unwrap().to_string());
                        }
                        Ok(_) | Err(ureq::Error::Status(..)) => {}
                        // The daemon is gone: that request was never acknowledged.
                        Err(ureq::Error::Transport(_)) => break,
                    }
                }
                accepted
            })
        })
        .collect()
}

/// How often each task started and ended, from the handler's own log.
fn runs(d: &Daemon) -> HashMap<String, (usize, usize)> {
    let mut out: HashMap<String, (usize, usize)> = HashMap::new();
    for line in std::fs::read_to_string(d.path("runs")).unwrap_or_default().lines() {
        let (what, id) = line.split_once(' ').unwrap();
        let e = out.entry(id.to_string()).or_default();
        if what == "start" {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    out
}

fn wait_idle(d: &Daemon) {
    eventually("the queue to drain", Duration::from_secs(120), || {
        let q = d.get("/tasks?status=queued&limit=1").json();
        let r = d.get("/tasks?status=running&limit=1").json();
        q["tasks"].as_array().unwrap().is_empty() && r["tasks"].as_array().unwrap().is_empty()
    });
}

#[test]
fn a_crash_loses_no_acknowledged_delivery_and_runs_none_twice() {
    let mut d = Daemon::start(&config("mark", "data/hookrunner.db"));
    let stop = Arc::new(AtomicBool::new(false));
    let senders = burst(&d, stop.clone());
    eventually("some tasks to run", Duration::from_secs(20), || runs(&d).len() >= 4);
    d.kill9();
    stop.store(true, Ordering::Relaxed);
    let accepted: Vec<String> = senders.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(accepted.len() >= 4, "only {} accepted", accepted.len());

    d.restart();
    d.logs_with("recovered unfinished work from the store");
    wait_idle(&d);
    let runs = runs(&d);
    let mut interrupted = 0;
    for id in &accepted {
        let task = d.get(&format!("/tasks/{id}"));
        assert_eq!(task.status, 200, "task {id} is not in the history");
        let task = task.json();
        let (starts, ends) = runs.get(id).copied().unwrap_or_default();
        match task["status"].as_str().unwrap() {
            "succeeded" => assert_eq!((starts, ends), (1, 1), "task {id} ran {starts} times"),
            "interrupted" => {
                interrupted += 1;
                assert_eq!(task["error"], "daemon stopped while running");
                // Its handler, orphaned by the crash, may still have finished; it never started twice.
                assert_eq!(starts, 1, "an interrupted task ran again");
            }
            other => panic!("task {id} ended {other}: {task}"),
        }
    }
    assert!(interrupted <= 2, "more interrupted tasks than could run at once");
    // Nothing ran that was not acknowledged... except work whose 202 the kill cut off.
    let unacknowledged = runs.keys().filter(|id| !accepted.contains(id)).count();
    assert!(
        unacknowledged <= 4,
        "{unacknowledged} runs of tasks nobody acknowledged"
    );
    // The whole history is listed.
    let listed = d.get("/tasks?program=work&limit=1000").json()["tasks"]
        .as_array()
        .unwrap()
        .len();
    assert!(listed >= accepted.len());
}

#[test]
fn interrupted_tasks_run_again_when_their_program_says_rerun() {
    let mut d = Daemon::start(&config("rerun", "data/hookrunner.db"));
    let r = d.post_json("/hooks/a", &[], br#"{"kind":"work"}"#);
    let id = Daemon::task_ids(&r).remove(0);
    eventually("the task to start", Duration::from_secs(10), || {
        runs(&d).contains_key(&id)
    });
    d.kill9();
    d.restart();
    let task = d.wait_task(&id);
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["attempt"], 2);
    assert_eq!(task["attempts"][0]["status"], "interrupted");
    // Started twice: once before the crash (that run may have finished as an orphan), once after.
    assert_eq!(runs(&d)[&id].0, 2);
}

#[test]
fn sigterm_keeps_queued_work_for_the_next_start_and_exits_0() {
    let mut d = Daemon::start(&config("mark", "data/hookrunner.db"));
    let stop = Arc::new(AtomicBool::new(false));
    let senders = burst(&d, stop.clone());
    eventually("a backlog", Duration::from_secs(20), || {
        d.get("/tasks?status=queued&limit=20").json()["tasks"]
            .as_array()
            .unwrap()
            .len()
            >= 10
    });
    let status = d.terminate();
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "{status:?}");
    let accepted: Vec<String> = senders.into_iter().flat_map(|t| t.join().unwrap()).collect();
    // Stopped, the database file alone holds everything: a copy of it
    // (without its `-wal`) has every accepted task.
    let wal = d.path("data/hookrunner.db-wal");
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "the -wal file is left empty"
    );
    let copy = d.path("copy.db");
    std::fs::copy(d.path("data/hookrunner.db"), &copy).unwrap();
    let stored: i64 = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert!(
        stored as usize >= accepted.len(),
        "{stored} rows, {} accepted",
        accepted.len()
    );
    d.restart();
    wait_idle(&d);
    let runs = runs(&d);
    for id in &accepted {
        assert_eq!(
            runs.get(id).copied(),
            Some((1, 1)),
            "task {id} did not run exactly once"
        );
        assert_eq!(d.get(&format!("/tasks/{id}")).json()["status"], "succeeded");
    }
}

#[test]
fn history_and_deliveries_outlive_the_process_and_page_with_a_cursor() {
    let mut d = Daemon::start(&config("mark", "data/hookrunner.db"));
    let ids: Vec<String> = (0..5)
        .map(|_| Daemon::task_ids(&d.post_json("/hooks/a", &[], br#"{"kind":"quick"}"#)).remove(0))
        .collect();
    for id in &ids {
        d.wait_task(id);
    }
    d.post_json("/hooks/a", &[], br#"{"kind":"nothing"}"#);
    assert!(d.terminate().success());
    d.restart();
    let list = |q: &str| -> Vec<String> {
        d.get(&format!("/tasks{q}")).json()["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(list("?program=quick"), newest_first);
    assert_eq!(list("?program=quick&limit=2"), newest_first[..2]);
    assert_eq!(
        list(&format!("?program=quick&limit=2&before={}", newest_first[1])),
        newest_first[2..4]
    );
    let task = d.get(&format!("/tasks/{}", ids[0])).json();
    assert_eq!(task["status"], "succeeded");
    assert!(task["stdout"].as_str().unwrap().contains("source=a event=quick"));
    assert!(task.get("_seq").is_none(), "internal fields leaked: {task}");
    let deliveries = d.get("/deliveries").json()["deliveries"].as_array().unwrap().clone();
    assert_eq!(deliveries.len(), 6);
    assert_eq!(deliveries[0]["outcome"], "ignored");
    // A stored delivery can be replayed after the restart.
    let first = deliveries[5]["id"].as_str().unwrap();
    let r = d.post(&format!("/deliveries/{first}/replay"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text);
    // A task from before the restart can be re-run.
    let r = d.post(&format!("/tasks/{}/rerun", ids[0]), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(d.wait_task(r.json()["id"].as_str().unwrap())["status"], "succeeded");
}

#[test]
fn a_store_that_cannot_write_refuses_deliveries_until_it_recovers() {
    if !nix_is_root() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true, but not root: mounting a small tmpfs needs root"
        );
        eprintln!("\n*** SKIPPED: mounting a small tmpfs needs root; with CI=true this is a failure. ***\n");
        return;
    }
    let mount = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mount.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(mounted, "could not mount a tmpfs as root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.path().to_path_buf());
    let db = mount.path().join("hookrunner.db");
    let d = Daemon::start(&config("mark", &db.display().to_string()));
    assert_eq!(d.get("/readyz").status, 200);
    assert_eq!(d.post_json("/hooks/a", &[], br#"{"kind":"quick"}"#).status, 202);
    // Fill the disk.
    let filler = mount.path().join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "count=64"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    let big = format!(r#"{{"kind":"quick","pad":"{}"}}"#, "x".repeat(200_000));
    let mut refused = None;
    for _ in 0..50 {
        let r = d.post_json("/hooks/a", &[], big.as_bytes());
        if r.status == 503 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let refused = refused.expect("the full disk never refused a delivery");
    assert!(
        refused.error().starts_with("the store cannot write"),
        "{}",
        refused.text
    );
    assert_eq!(refused.header("retry-after"), Some("5"));
    let ready = d.get("/readyz");
    assert_eq!(ready.status, 503);
    assert!(ready.error().starts_with("the store cannot write"), "{}", ready.text);
    // Free the space: the store recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    eventually("the store to recover", Duration::from_secs(20), || {
        d.post_json("/hooks/a", &[], br#"{"kind":"quick"}"#).status == 202
    });
    assert_eq!(d.get("/readyz").status, 200);
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// `hookrunner db check --path <path>`.
fn db_check(path: &Path) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(["db", "check", "--path"])
        .arg(path)
        .output()
        .unwrap()
}

/// Starts the daemon on `dir`'s `webhook.yaml`, which must refuse to start:
/// what it said.
fn refused_at_start(dir: &Path) -> String {
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("webhook.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_damaged_or_newer_store_is_refused_with_a_way_out() {
    let dir = tempfile::tempdir().unwrap();
    install_handlers(dir.path());
    std::fs::write(dir.path().join("webhook.yaml"), config("mark", "state.db")).unwrap();
    std::fs::write(dir.path().join("state.db"), b"this is not a database, just bytes").unwrap();
    let err = refused_at_start(dir.path());
    assert!(
        err.contains("is not a readable hookrunner database") && err.contains("Move it aside"),
        "{err}"
    );
    let out = db_check(&dir.path().join("state.db"));
    assert!(!out.status.success());

    // A store from a newer hookrunner.
    let path = dir.path().join("newer.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    std::fs::write(dir.path().join("webhook.yaml"), config("mark", "newer.db")).unwrap();
    let err = refused_at_start(dir.path());
    assert!(err.contains("schema version 99, newer than this hookrunner's"), "{err}");
    let out = db_check(&path);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("written by a newer hookrunner (schema version 99); this one cannot read it: upgrade hookrunner"),
        "{said}"
    );

    // Files `db check` calls no hookrunner store are not made one at start:
    // another program's tables, a schema version no hookrunner writes.
    for (name, sql, said) in [
        (
            "foreign.db",
            "CREATE TABLE foo (x)",
            "the file holds another program's tables (foo)",
        ),
        (
            "negative.db",
            "PRAGMA user_version = -5",
            "schema version -5, which no hookrunner writes",
        ),
    ] {
        let path = dir.path().join(name);
        rusqlite::Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        std::fs::write(dir.path().join("webhook.yaml"), config("mark", name)).unwrap();
        let err = refused_at_start(dir.path());
        assert!(err.contains(said), "{err}");
        let conn = rusqlite::Connection::open(&path).unwrap();
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'tasks'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(tables, 0, "nothing was added to {name}");
    }

    // A healthy store checks out.
    let path = dir.path().join("fresh.db");
    std::fs::write(dir.path().join("webhook.yaml"), config("mark", "fresh.db")).unwrap();
    let mut d = Daemon::with(&config("mark", &path.display().to_string())).start();
    assert!(d.terminate().success());
    let out = db_check(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));

    // A damaged page: the check says so and how to go on, not a bare error.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() >= 3 * 4096, "{} bytes", bytes.len());
    bytes[4096..3 * 4096].fill(0xff);
    std::fs::write(&path, &bytes).unwrap();
    let out = db_check(&path);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("integrity: "), "{said}");
    assert!(
        said.trim_end().ends_with(&format!(
            "{}: damaged; move it aside to start with an empty store (the history in it is lost)",
            path.display()
        )),
        "{said}"
    );
}

const GITHUB: &str = r#"
state:
  path: data/hookrunner.db
sources:
  gh:
    provider: github
    secret: s3cret
    dedup: {window: 10s}
programs:
  quick:
    command: handlers/log-event.sh
mappings:
  gh:
    push: {rules: [{run: quick}]}
"#;

fn push(d: &Daemon, delivery: &str, body: &str) -> Resp {
    let sig = format!("sha256={}", hmac_sha256_hex("s3cret", body.as_bytes()));
    let mut headers = github_headers("push", &sig);
    headers.push(("X-GitHub-Delivery", delivery));
    d.post_json("/hooks/gh", &headers, body.as_bytes())
}

#[test]
fn a_delivery_id_sent_again_never_replaces_the_first_record() {
    let mut d = Daemon::start(GITHUB);
    let sent = std::time::Instant::now();
    let first = push(&d, "dup-1", r#"{"n":"first"}"#);
    let first_tasks = Daemon::task_ids(&first);
    d.wait_task(&first_tasks[0]);
    d.kill9();
    d.restart();
    // Inside the window, after the restart: a duplicate, with a record of its own.
    let again = push(&d, "dup-1", r#"{"n":"first"}"#);
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["duplicate"], true);
    // After the window (GitHub's "Redeliver"): it runs, again with its own record.
    std::thread::sleep(
        (sent + std::time::Duration::from_millis(10_200)).saturating_duration_since(std::time::Instant::now()),
    );
    let redelivered = push(&d, "dup-1", r#"{"n":"second"}"#);
    let second_tasks = Daemon::task_ids(&redelivered);
    d.wait_task(&second_tasks[0]);

    let kept = d.get("/deliveries/dup-1").json();
    assert_eq!(kept["outcome"], "accepted", "{kept}");
    assert_eq!(kept["task_ids"], serde_json::json!(first_tasks), "{kept}");
    assert_eq!(d.get("/deliveries/dup-1/body").text, r#"{"n":"first"}"#);
    let all = d.get("/deliveries?limit=10").json()["deliveries"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(all.len(), 3, "{all:?}");
    let ids: std::collections::HashSet<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "three records, three ids: {all:?}");
    assert!(all.iter().all(|r| r["delivery_id"] == "dup-1"), "{all:?}");
    let duplicate = all.iter().find(|r| r["outcome"] == "duplicate").unwrap();
    assert_eq!(duplicate["duplicate_of"], "dup-1");
    let newest = &all[0];
    assert_eq!(newest["outcome"], "accepted");
    assert_eq!(newest["task_ids"], serde_json::json!(second_tasks));
    // Each task leads to the record of its own delivery.
    let task = d.get(&format!("/tasks/{}", second_tasks[0])).json();
    assert_eq!(task["params"], serde_json::json!({}));
    let record = d.get(&format!("/deliveries/{}", newest["id"].as_str().unwrap())).json();
    assert_eq!(record["task_ids"], serde_json::json!(second_tasks));
}

#[test]
fn the_same_delivery_id_sent_twice_at_once_makes_two_records() {
    let d = Daemon::start(GITHUB);
    let pairs = 20;
    std::thread::scope(|s| {
        for i in 0..pairs {
            for _ in 0..2 {
                let d = &d;
                s.spawn(move || push(d, &format!("race-{i}"), r#"{"n":1}"#));
            }
        }
    });
    // A duplicate's record is written to the store in the background: the
    // listing (read from the store) has it moments after the answer.
    let list = || {
        d.get("/deliveries?limit=100").json()["deliveries"]
            .as_array()
            .unwrap()
            .clone()
    };
    eventually("every request on record", std::time::Duration::from_secs(10), || {
        list().len() == 2 * pairs
    });
    let all = list();
    assert_eq!(all.len(), 2 * pairs, "every request is on record: {all:?}");
    for i in 0..pairs {
        let id = format!("race-{i}");
        let pair: Vec<&serde_json::Value> = all.iter().filter(|r| r["delivery_id"] == id.as_str()).collect();
        assert_eq!(pair.len(), 2, "{id}: {pair:?}");
        let outcomes: std::collections::BTreeSet<&str> = pair.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["accepted", "duplicate"].into(), "{id}: {pair:?}");
        assert!(pair.iter().any(|r| r["id"] == id.as_str()), "{id}: {pair:?}");
    }
}

/// A crash between a handler's start and the write that records it leaves
/// the task stored as queued while its handler runs on. The restart finds
/// that handler (its `HOOK_TASK_ID`) and treats it as the run it is: never a
/// second run beside it. Here the "handler" is a stand-in started by the
/// test with the queued task's id, so the window is hit every time.
#[test]
fn a_handler_whose_start_was_not_recorded_is_never_started_again_beside_it() {
    for on_interrupt in ["mark", "rerun"] {
        let config = format!(
            r#"
state:
  path: data/hookrunner.db
tasks:
  max_concurrent: 1
sources:
  a:
    provider: generic
    auth: none
    event: {{field: kind}}
programs:
  block:
    command: handlers/sleepy.sh
    env: {{OUT_FILE: $DIR/runs, SLEEP: "3"}}
  work:
    command: handlers/sleepy.sh
    on_interrupt: {on_interrupt}
    env: {{OUT_FILE: $DIR/runs, SLEEP: "0.1"}}
mappings:
  a:
    block: {{rules: [{{run: block}}]}}
    work: {{rules: [{{run: work}}]}}
"#
        );
        let mut d = Daemon::start(&config);
        let block = d.post_json("/hooks/a", &[], br#"{"kind":"block"}"#).json()["tasks"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        eventually("the blocking task to run", Duration::from_secs(10), || {
            runs(&d).contains_key(&block)
        });
        let r = d.post_json("/hooks/a", &[], br#"{"kind":"work"}"#);
        assert_eq!(r.status, 202, "{}", r.text);
        let id = r.json()["tasks"][0]["id"].as_str().unwrap().to_string();
        assert_eq!(d.get(&format!("/tasks/{id}")).json()["status"], "queued");
        d.kill9();
        // What the crash left: the queued task's handler, running.
        let mut stand_in = std::process::Command::new("sleep")
            .arg("60")
            .env_clear()
            .env("HOOK_TASK_ID", &id)
            .process_group(0)
            .spawn()
            .unwrap();
        d.restart();
        d.logs_with("the daemon stopped before it recorded that this task started, but its handler is running");
        let mut task = Value::Null;
        eventually("the task to be settled", Duration::from_secs(20), || {
            task = d.get(&format!("/tasks/{id}")).json();
            match on_interrupt {
                "mark" => task["status"] == "interrupted",
                _ => task["status"] == "succeeded",
            }
        });
        let started_here = runs(&d).get(&id).copied().unwrap_or_default();
        match on_interrupt {
            "mark" => {
                // Left alone, as a recorded run would be; not started by the daemon.
                assert_eq!(task["error"], "daemon stopped while running", "{task}");
                assert_eq!(started_here, (0, 0), "{task}");
                assert!(
                    stand_in.try_wait().unwrap().is_none(),
                    "the interrupted run was stopped"
                );
                let _ = stand_in.kill();
                let _ = stand_in.wait();
            }
            _ => {
                // The old run was stopped before the second attempt started.
                let status = stand_in.wait().unwrap();
                assert!(!status.success(), "the stand-in was not stopped: {status}");
                assert_eq!(task["attempt"], 2, "{task}");
                assert_eq!(task["attempts"][0]["status"], "interrupted", "{task}");
                assert_eq!(started_here, (1, 1), "{task}");
            }
        }
        // The blocking task's own orphan ends by itself within 3 s.
    }
}

/// A handler left running by a crash (`on_interrupt: mark`) still holds its
/// concurrency key: the next task of that key starts only once it is gone,
/// never beside it.
#[test]
fn a_handler_left_running_by_a_crash_keeps_its_concurrency_key() {
    let config = r#"
state:
  path: data/hookrunner.db
tasks:
  max_concurrent: 2
sources:
  a:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  deploy:
    command: handlers/sleepy.sh
    concurrency_key: site
    env: {OUT_FILE: $DIR/runs, SLEEP: "0.5", FIRST_SLEEP: "12"}
mappings:
  a:
    deploy: {rules: [{run: deploy}]}
"#;
    // The first run outlives two restarts even on a slow machine.
    let mut d = Daemon::start(config);
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let r = d.post_json("/hooks/a", &[], br#"{"kind":"deploy"}"#);
            assert_eq!(r.status, 202, "{}", r.text);
            r.json()["tasks"][0]["id"].as_str().unwrap().to_string()
        })
        .collect();
    eventually("the first to run", Duration::from_secs(10), || {
        runs(&d).contains_key(&ids[0])
    });
    assert_eq!(d.get(&format!("/tasks/{}", ids[1])).json()["status"], "queued");
    d.kill9();
    d.restart();
    d.logs_with("it is left alone and its output goes on into its file");
    // A second crash while that handler still runs, once its task is
    // `interrupted` on disk: its key must stay held all the same.
    eventually("the task to be interrupted on disk", Duration::from_secs(10), || {
        let db = rusqlite::Connection::open_with_flags(
            d.path("data/hookrunner.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.query_row("SELECT status FROM tasks WHERE id = ?1", [&ids[0]], |r| {
            r.get::<_, String>(0)
        })
        .is_ok_and(|s| s == "interrupted")
    });
    d.kill9();
    d.restart();
    d.logs_with("is still running from an earlier start; its concurrency key stays held until it ends");
    eventually("the second to finish", Duration::from_secs(40), || {
        d.get(&format!("/tasks/{}", ids[1])).json()["status"] == "succeeded"
    });
    assert_eq!(d.get(&format!("/tasks/{}", ids[0])).json()["status"], "interrupted");
    d.logs_with("its concurrency key is free");
    // From the handlers' own log: the first (orphaned) run ended before the second began.
    let log = std::fs::read_to_string(d.path("runs")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let at = |what: &str, id: &str| {
        lines
            .iter()
            .position(|l| *l == format!("{what} {id}"))
            .unwrap_or_else(|| panic!("no `{what} {id}` in {log}"))
    };
    assert!(
        at("end", &ids[0]) < at("start", &ids[1]),
        "two runs of one key at once: {log}"
    );
}
