//! A store written by an earlier hookrunner (schema version 1: each row was
//! the API's JSON) opens without loss: its queued tasks run, its history
//! shows, a row version 1 could not even read back (nested too deep) works,
//! a row that cannot be converted is kept aside, and a row that cannot be
//! read is reported, never skipped in silence.

mod common;
use common::*;
use rusqlite::{params, Connection};
use serde_json::{json, Value};
use std::time::Duration;

const V1_SCHEMA: &str = "CREATE TABLE tasks (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, source TEXT NOT NULL, event TEXT NOT NULL,
    program TEXT NOT NULL, status TEXT NOT NULL, created_ms INTEGER NOT NULL, finished_ms INTEGER,
    callbacks_pending INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL, body BLOB);
CREATE INDEX tasks_status ON tasks (status, seq);
CREATE INDEX tasks_source ON tasks (source, seq);
CREATE INDEX tasks_event ON tasks (event, seq);
CREATE INDEX tasks_program ON tasks (program, seq);
CREATE INDEX tasks_finished ON tasks (finished_ms) WHERE finished_ms IS NOT NULL;
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, delivery_id TEXT NOT NULL,
    source TEXT NOT NULL, event TEXT, outcome TEXT NOT NULL, received_ms INTEGER NOT NULL,
    data TEXT NOT NULL, body BLOB);
CREATE INDEX deliveries_source ON deliveries (source, seq);
CREATE INDEX deliveries_event ON deliveries (event, seq);
CREATE INDEX deliveries_outcome ON deliveries (outcome, seq);
CREATE INDEX deliveries_received ON deliveries (received_ms);
PRAGMA user_version = 1;";

const CONFIG: &str = r#"
state:
  path: $DIR/state/hookrunner.db
sources:
  a: {provider: generic, auth: none}
programs:
  work:
    command: handlers/append.sh
    args: ["{msg}"]
    env: {OUT_FILE: $DIR/runs}
mappings:
  a:
    default:
      params: {msg: payload.msg}
      rules: [{run: work}]
"#;

/// A task row as version 1 wrote it: the API's JSON plus `_seq`, `_record_id`, `_created_ms`.
fn v1_task(id: &str, seq: i64, status: &str, params: Value, stdout: &str) -> Value {
    let finished = !matches!(status, "queued" | "running");
    json!({
        "id": id, "delivery_id": "d-1", "request_id": "r-1", "source": "a", "event": "default",
        "program": "work", "params": params, "argv": ["handlers/append.sh", "old"], "status": status,
        "exit_code": if finished { json!(0) } else { Value::Null }, "error": null,
        "created_at": "2026-11-01T10:00:00.000Z",
        "started_at": if finished { json!("2026-11-01T10:00:01.000Z") } else { Value::Null },
        "finished_at": if finished { json!("2026-11-01T10:00:02.000Z") } else { Value::Null },
        "duration_ms": if finished { json!(1000) } else { Value::Null },
        "stdout": stdout, "stderr": "", "stdout_truncated": false, "stderr_truncated": false,
        "rerun_of": null, "reruns": [], "concurrency_key": null, "attempt": 1, "attempts": [],
        "next_attempt_at": null, "callbacks": [], "url": format!("/tasks/{id}"),
        "_seq": seq, "_record_id": "rec-1", "_created_ms": 1_793_527_200_000i64 + seq,
    })
}

fn deep(depth: usize) -> String {
    format!("{}\"bottom\"{}", "[".repeat(depth), "]".repeat(depth))
}

const QUEUED: &str = "11111111-1111-4111-8111-111111111111";
const DONE: &str = "22222222-2222-4222-8222-222222222222";
const DEEP: &str = "33333333-3333-4333-8333-333333333333";
const CORRUPT: &str = "44444444-4444-4444-8444-444444444444";

fn write_v1_store(path: &std::path::Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = Connection::open(path).unwrap();
    c.execute_batch(V1_SCHEMA).unwrap();
    let put = |id: &str, seq: i64, status: &str, data: String, body: Option<&[u8]>| {
        c.execute(
            "INSERT INTO tasks (id, seq, source, event, program, status, created_ms, finished_ms, data, body)
             VALUES (?1, ?2, 'a', 'default', 'work', ?3, 0, ?4, ?5, ?6)",
            params![
                id,
                seq,
                status,
                (status == "succeeded").then_some(1_793_527_202_000i64),
                data,
                body
            ],
        )
        .unwrap();
    };
    put(
        QUEUED,
        1,
        "queued",
        v1_task(QUEUED, 1, "queued", json!({"msg": "queued-before-upgrade"}), "").to_string(),
        Some(br#"{"msg":"queued-before-upgrade"}"#),
    );
    put(
        DONE,
        2,
        "succeeded",
        v1_task(DONE, 2, "succeeded", json!({"msg": "done"}), "hello from v1\n").to_string(),
        None,
    );
    // Version 1 stored this (params nested 126 deep, plus the row's own levels),
    // but could not read it back: the task was lost at every restart.
    let text = v1_task(DEEP, 3, "queued", json!({"msg": "deep-one"}), "")
        .to_string()
        .replace(
            r#""params":{"msg":"deep-one"}"#,
            &format!(r#""params":{{"msg":"deep-one","deep":{}}}"#, deep(126)),
        );
    put(DEEP, 3, "queued", text, Some(br#"{"msg":"deep-one"}"#));
    put(CORRUPT, 4, "succeeded", "{not json".into(), None);
    c.execute(
        "INSERT INTO deliveries (id, delivery_id, source, event, outcome, received_ms, data, body) VALUES ('rec-1', 'd-1', 'a', 'default', 'accepted', 1793527200000, ?1, ?2)",
        params![
            json!({"id": "rec-1", "delivery_id": "d-1", "request_id": "r-1", "source": "a", "event": "default",
                   "raw_event": null, "received_at": "2026-11-01T10:00:00.000Z", "remote_addr": "127.0.0.1",
                   "headers": [["content-type", "application/json"]], "query": [], "body_size": 31,
                   "body_kept": true, "outcome": "accepted", "status": 202, "reason": null,
                   "params": {"default": {"msg": "queued-before-upgrade"}}, "rules": [{"mapping": "default", "rule": 0, "if": null, "program": "work", "result": "matched"}],
                   "task_ids": [QUEUED], "duplicate_of": null, "replay_of": null, "replays": [], "url": "/deliveries/rec-1"})
            .to_string(),
            &br#"{"msg":"queued-before-upgrade"}"#[..]
        ],
    )
    .unwrap();
}

fn db_check(d: &Daemon) -> (i32, String) {
    let out = std::process::Command::new(BIN)
        .args(["db", "check", "--config"])
        .arg(d.path("webhook.yaml"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_version_1_store_opens_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    write_v1_store(&dir.path().join("state/hookrunner.db"));
    let mut d = Daemon::start_in(dir, CONFIG);
    // The queued tasks of the old store run, the deep one included.
    for id in [QUEUED, DEEP] {
        let task = d.wait_task(id);
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    let runs = std::fs::read_to_string(d.path("runs")).unwrap();
    assert_eq!(runs.lines().collect::<Vec<_>>().len(), 2, "{runs}");
    assert!(
        runs.contains("queued-before-upgrade\n") && runs.contains("deep-one\n"),
        "{runs}"
    );
    let done = d.get(&format!("/tasks/{DONE}")).json();
    assert_eq!(
        (done["status"].as_str(), done["stdout"].as_str()),
        (Some("succeeded"), Some("hello from v1\n"))
    );
    let deep_task = d.get(&format!("/tasks/{DEEP}")).json();
    assert_eq!(deep_task["params"]["deep"].to_string(), deep(126));
    let delivery = d.get("/deliveries/rec-1").json();
    assert_eq!(delivery["task_ids"], json!([QUEUED]));
    assert_eq!(delivery["params"]["default"]["msg"], "queued-before-upgrade");
    let listed = d.get("/tasks?limit=10").json()["tasks"].as_array().unwrap().len();
    assert_eq!(
        listed, 3,
        "the row that could not be converted is kept aside, not listed"
    );
    assert!(
        d.logs().contains(CORRUPT),
        "the set-aside row is named in the log:\n{}",
        d.logs()
    );

    d.terminate();
    let (code, report) = db_check(&d);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("schema version 2") && report.contains("0 unreadable rows"),
        "{report}"
    );
    assert!(report.contains("1 rows could not be converted"), "{report}");
    let c = Connection::open(d.path("state/hookrunner.db")).unwrap();
    let kept: String = c
        .query_row("SELECT data FROM quarantine WHERE id = ?", [CORRUPT], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, "{not json", "kept byte for byte");

    // A row that cannot be read is reported, not skipped in silence.
    const BROKEN: &str = "55555555-5555-4555-8555-555555555555";
    c.execute(
        "INSERT INTO tasks (id, seq, source, event, program, status, created_ms, data) VALUES (?1, 99, 'a', 'default', 'work', 'queued', 0, '{\"v\":2,\"id\":')",
        [BROKEN],
    )
    .unwrap();
    // Rows changed by hand so that their record is not text at all.
    const BLOB: &str = "66666666-6666-4666-8666-666666666666";
    const NUMBER: &str = "77777777-7777-4777-8777-777777777777";
    c.execute(
        "INSERT INTO tasks (id, seq, source, event, program, status, created_ms, data) VALUES (?1, 100, 'a', 'default', 'work', 'queued', 0, x'ff00')",
        [BLOB],
    )
    .unwrap();
    c.execute(
        "INSERT INTO tasks (id, seq, source, event, program, status, created_ms, data) VALUES (?1, 101, 'a', 'default', 'work', 'succeeded', 0, 42)",
        [NUMBER],
    )
    .unwrap();
    drop(c);
    d.restart();
    let ready = d.get("/readyz").json();
    assert_eq!(ready["status"], "ready");
    // The unfinished ones at once (recovery reads them first) ...
    assert_eq!(ready["store"]["unreadable"][0]["id"], BROKEN);
    assert_eq!(ready["store"]["unreadable"][1]["id"], BLOB);
    assert!(d.logs().contains(BROKEN), "{}", d.logs());
    // ... and the finished one by the read of every row after the start,
    // before anything lists it.
    eventually("the finished row counted", Duration::from_secs(10), || {
        d.get("/readyz").json()["store"]["unreadable_rows"] == 3
    });
    let ready = d.get("/readyz").json();
    assert_eq!(ready["store"]["unreadable"][2]["id"], NUMBER, "{ready}");
    assert!(d.logs().contains(NUMBER), "{}", d.logs());
    eventually("the summary line", Duration::from_secs(5), || {
        d.logs().contains("some stored rows cannot be read")
    });
    // The lists still answer, without the rows they cannot read, and count
    // none of them twice.
    let listed = d.get("/tasks?limit=100");
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json()["tasks"].as_array().unwrap().len(), 3, "{}", listed.text);
    let ready = d.get("/readyz").json();
    assert_eq!(ready["store"]["unreadable_rows"], 3, "{ready}");
    d.terminate();
    let (code, report) = db_check(&d);
    assert_eq!(code, 1, "{report}");
    for id in [BROKEN, BLOB, NUMBER] {
        assert!(report.contains(&format!("tasks row `{id}`")), "{report}");
    }
    assert!(report.contains("its data is not UTF-8 text"), "{report}");
    assert!(report.contains("3 unreadable rows"), "{report}");
}

fn db_check_path(path: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(BIN)
        .args(["db", "check", "--path"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn db_check_tells_an_old_store_from_another_programs_file() {
    let dir = tempfile::tempdir().unwrap();
    // A version-1 store: its version, no counts (its rows are not read).
    let v1 = dir.path().join("v1.db");
    write_v1_store(&v1);
    let (code, report) = db_check_path(&v1);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("schema version 1 (this hookrunner writes 2)")
            && report.contains("rows not read: the next start converts this store to version 2"),
        "{report}"
    );
    assert!(!report.contains(" tasks, "), "counts of rows not read: {report}");
    // Another program's SQLite file is not an empty store.
    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE accounts (a); CREATE TABLE notes (b);")
        .unwrap();
    let (code, report) = db_check_path(&other);
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains("not a hookrunner store: it has tables hookrunner does not make (accounts, notes)"),
        "{report}"
    );
    // A schema version no hookrunner writes.
    let odd = dir.path().join("odd.db");
    Connection::open(&odd)
        .unwrap()
        .execute_batch("PRAGMA user_version = -5;")
        .unwrap();
    let (code, report) = db_check_path(&odd);
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains("schema version -5 is not one hookrunner writes"),
        "{report}"
    );
    // A really empty file is an empty store.
    let empty = dir.path().join("empty.db");
    Connection::open(&empty).unwrap().execute_batch("VACUUM;").unwrap();
    let (code, report) = db_check_path(&empty);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("ok (empty)"), "{report}");
    // A directory is a usage error.
    let (code, report) = db_check_path(dir.path());
    assert_eq!(code, 2, "{report}");
    assert!(
        report.contains("is a directory; give the store's SQLite file"),
        "{report}"
    );
}
