//! Several nodes sharing one PostgreSQL database: any node accepts, the
//! nodes claim the work, a node's death loses nothing it acknowledged, and
//! every node shows (and controls) the whole cluster.
//!
//! Each test makes its own database. One test runs at a time: one of them
//! stops and starts the machine's PostgreSQL server.

#[allow(dead_code)] // only the page's script runs here, no clicks or typing
#[path = "common/browser.rs"]
mod browser;
mod common;
use common::pg::Db;
use common::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A node of the cluster on `db`, named `name`, with `labels`, running `programs` (YAML).
fn node(db: &Db, name: &str, labels: &str, shared: &Path, programs: &str, mappings: &str) -> Daemon {
    node_at(&db.url(), name, labels, shared, programs, mappings)
}

/// [`node`] on the database at `url`.
fn node_at(url: &str, name: &str, labels: &str, shared: &Path, programs: &str, mappings: &str) -> Daemon {
    node_leased(url, name, labels, shared, programs, mappings, "2s")
}

/// [`node_at`] with another `node.lease`.
fn node_leased(
    url: &str,
    name: &str,
    labels: &str,
    shared: &Path,
    programs: &str,
    mappings: &str,
    lease: &str,
) -> Daemon {
    start_node(&node_config(url, shared, programs, mappings, lease), name, labels)
}

/// A node's config: on the database at `url`, running `programs`.
fn node_config(url: &str, shared: &Path, programs: &str, mappings: &str, lease: &str) -> String {
    format!(
        r#"
state:
  postgres: {url}
  connections: 4
node:
  lease: {lease}
tasks:
  max_concurrent: 2
  max_queued: 10000
  shutdown_grace: 2s
sources:
  a: {{provider: generic, auth: none, event: {{field: kind}}}}
  d: {{provider: generic, auth: none, event: {{field: kind}}, dedup: true}}
programs:
{programs}
mappings:
  a:
{mappings}
  d:
{mappings}
"#,
    )
    .replace("$SHARED", &shared.display().to_string())
}

/// Starts a node named `name`, with `labels`, on `config`.
fn start_node(config: &str, name: &str, labels: &str) -> Daemon {
    Daemon::with(config)
        .env("HOOKRUNNER_NODE_NAME", name)
        .env("HOOKRUNNER_NODE_LABELS", labels)
        .start()
}

/// Runs `hookrunner serve` on `config` with `env` until it exits (at most
/// 30 s): what it wrote to stderr, or `Err` with it when it exited 0.
fn serve_refused(config: &Path, env: &[(&str, &str)]) -> Result<String, String> {
    serve_refused_as(Path::new(BIN), config, env)
}

/// [`serve_refused`] with the daemon binary at `bin`.
fn serve_refused_as(bin: &Path, config: &Path, env: &[(&str, &str)]) -> Result<String, String> {
    let mut serve = std::process::Command::new(bin);
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        serve.env(k, v);
    }
    let mut serve = serve.spawn().unwrap();
    let status = wait_exit(&mut serve, Duration::from_secs(30));
    let mut err = String::new();
    std::io::Read::read_to_string(serve.stderr.as_mut().unwrap(), &mut err).unwrap();
    if status.success() {
        Err(err)
    } else {
        Ok(err)
    }
}

/// One cluster test at a time (nodes, ports and the database server are
/// shared), with a new database and a shared directory for its nodes.
fn fresh() -> Option<(std::sync::MutexGuard<'static, ()>, Db, tempfile::TempDir)> {
    let one = serial();
    let db = Db::create()?;
    Some((one, db, tempfile::tempdir().unwrap()))
}

const STAMP: &str = r#"
  work:
    command: handlers/stamp.sh
    on_interrupt: rerun
    env: {OUT_FILE: $SHARED/runs, SLEEP: "0.3"}
"#;
const STAMP_MAPPING: &str = "    work: {rules: [{run: work}]}";

/// A task as any node shows it.
fn task(d: &Daemon, id: &str) -> Value {
    d.get(&format!("/tasks/{id}")).json()
}

fn wait_final(d: &Daemon, ids: &[String], limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    ids.iter()
        .map(|id| loop {
            let t = task(d, id);
            if !matches!(t["status"].as_str(), Some("queued" | "running")) {
                break t;
            }
            assert!(Instant::now() < deadline, "task {id} still {}: {t}", t["status"]);
            std::thread::sleep(Duration::from_millis(50));
        })
        .collect()
}

/// `start|end <task> <node> <ns>` lines.
fn runs(shared: &Path) -> Vec<(String, String, String, u128)> {
    std::fs::read_to_string(shared.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let p: Vec<&str> = l.split(' ').collect();
            (p[0].into(), p[1].into(), p[2].into(), p[3].parse().unwrap())
        })
        .collect()
}

fn send(d: &Daemon, body: &str) -> Vec<String> {
    Daemon::task_ids(&d.post_json("/hooks/a", &[], body.as_bytes()))
}

#[test]
fn a_burst_over_three_nodes_survives_one_being_killed() {
    let Some((_one, db, shared)) = fresh() else { return };
    let mut nodes: Vec<Daemon> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| node(&db, n, "", shared.path(), STAMP, STAMP_MAPPING))
        .collect();
    let urls: Vec<String> = nodes.iter().map(|d| d.url("/hooks/a")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|i| {
            let (urls, stop) = (urls.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
                let mut acked = Vec::new();
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let r = agent
                        .post(&urls[n % urls.len()])
                        .set("Content-Type", "application/json")
                        .send_string(r#"{"kind":"work"}"#);
                    if let Ok(r) = r {
                        if r.status() == 202 {
                            let v: Value = r.into_json().unwrap();
                            acked.push(v["tasks"][0]["id"].as_str().unwrap().to_string());
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    nodes[2].kill9();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<String> = senders.into_iter().flat_map(|s| s.join().unwrap()).collect();
    assert!(acked.len() > 50, "only {} deliveries acknowledged", acked.len());
    let done = wait_final(&nodes[0], &acked, Duration::from_secs(90));
    let runs = runs(shared.path());
    for t in &done {
        let id = t["id"].as_str().unwrap();
        assert_eq!(t["status"], "succeeded", "{t}");
        let node = t["node"].as_str().unwrap();
        // It ran to its end once where the cluster says; no live node ran it twice.
        let ends: Vec<&str> = runs
            .iter()
            .filter(|(what, task, _, _)| what == "end" && task == id)
            .map(|(_, _, n, _)| n.as_str())
            .collect();
        assert_eq!(ends.iter().filter(|n| **n == node).count(), 1, "{id}: {ends:?}");
        assert!(
            ends.iter().filter(|n| **n != "n3").count() <= 1,
            "{id} ran to its end twice on live nodes: {ends:?}"
        );
    }
    assert!(done.iter().any(|t| t["node"] != "n3"), "the live nodes ran work");
    let nodes_seen = nodes[0].get("/nodes").json();
    let dead = nodes_seen["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "n3")
        .unwrap()
        .clone();
    assert_eq!(dead["status"], "dead", "{nodes_seen}");
    assert!(["n1", "n2"].contains(&dead["taken_over_by"].as_str().unwrap()));
    // What it ran was taken over: it runs nothing any more.
    assert_eq!(dead["running"], 0, "{nodes_seen}");
}

#[test]
fn fan_out_runs_once_on_each_labelled_node() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs = r#"
  deploy:
    command: handlers/stamp.sh
    run_on: [web]
    fan_out: true
    env: {OUT_FILE: $SHARED/runs, SLEEP: "0.1"}
"#;
    let mapping = "    deploy: {rules: [{run: deploy}]}";
    let nodes: Vec<Daemon> = [("n1", "web"), ("n2", "web,eu"), ("n3", "web"), ("n4", "db")]
        .iter()
        .map(|(n, l)| node(&db, n, l, shared.path(), programs, mapping))
        .collect();
    let ids = send(&nodes[3], r#"{"kind":"deploy"}"#);
    assert_eq!(ids.len(), 3, "one task per node labelled web");
    let done = wait_final(&nodes[0], &ids, Duration::from_secs(30));
    let mut ran_on = HashSet::new();
    for t in &done {
        assert_eq!(t["status"], "succeeded", "{t}");
        assert_eq!(t["node"], t["pinned_node"], "{t}");
        ran_on.insert(t["node"].as_str().unwrap().to_string());
    }
    assert_eq!(ran_on, ["n1", "n2", "n3"].iter().map(|s| s.to_string()).collect());
    let runs = runs(shared.path());
    for t in &done {
        let mine: Vec<_> = runs
            .iter()
            .filter(|r| r.0 == "end" && r.1 == t["id"].as_str().unwrap())
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].2, t["node"].as_str().unwrap());
    }
}

/// The program `keyed`: `stamp.sh` serialized on the param `k`, with `extra` lines.
fn keyed(extra: &str, sleep: &str) -> String {
    format!(
        "\n  keyed:\n    command: handlers/stamp.sh\n    params: [k]\n    concurrency_key: \"{{k}}\"\n{extra}    env: {{OUT_FILE: $SHARED/runs, SLEEP: \"{sleep}\"}}\n"
    )
}
const KEYED_MAPPING: &str = "    keyed: {params: {k: payload.k}, rules: [{run: keyed}]}";

#[test]
fn one_key_never_runs_twice_at_once_across_nodes() {
    let Some((_one, db, shared)) = fresh() else { return };
    // Runs of `same` last long enough for all 18 deliveries to be in while
    // the first of them still runs, on a slow machine too.
    let programs = keyed("", "0.2").replace("SLEEP: \"0.2\"", "SLEEP: \"0.2\", LONG_FOR: same, LONG_SLEEP: \"1\"");
    let (programs, mapping) = (programs.as_str(), KEYED_MAPPING);
    let nodes: Vec<Daemon> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| node(&db, n, "", shared.path(), programs, mapping))
        .collect();
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.extend(send(&nodes[i % 3], r#"{"kind":"keyed","k":"same"}"#));
        ids.extend(send(
            &nodes[(i + 1) % 3],
            &format!(r#"{{"kind":"keyed","k":"other-{i}"}}"#),
        ));
    }
    // The node that starts the first run of `same` stops claiming (it
    // drains and exits), so the key's later runs are claimed by the others
    // while its run may still hold the key.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no run of `same` was seen running"
        );
        let list = nodes[0].get("/tasks?status=running&limit=50").json();
        let on = list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["concurrency_key"] == "same")
            .and_then(|t| t["node"].as_str().map(str::to_string));
        if let Some(n) = on {
            break n;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut nodes = nodes;
    let at = ["n1", "n2", "n3"].iter().position(|n| *n == first).unwrap();
    let mut leaving = nodes.remove(at);
    signal(leaving.pid(), "TERM");
    let done = wait_final(&nodes[0], &ids, Duration::from_secs(60));
    assert!(leaving.terminate_wait().success());
    assert!(done.iter().all(|t| t["status"] == "succeeded"));
    let same: HashSet<String> = done
        .iter()
        .filter(|t| t["concurrency_key"] == "same")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let runs = runs(shared.path());
    let mut spans: HashMap<String, (u128, u128, String)> = HashMap::new();
    for (what, id, node, at) in runs.iter().filter(|r| same.contains(&r.1)) {
        let e = spans.entry(id.clone()).or_insert((0, 0, node.clone()));
        if what == "start" {
            e.0 = *at;
        } else {
            e.1 = *at;
        }
    }
    let mut spans: Vec<_> = spans.into_values().collect();
    spans.sort();
    assert_eq!(spans.len(), 9);
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].1,
            "two runs of key `same` overlapped: {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    let on: HashSet<&str> = spans.iter().map(|s| s.2.as_str()).collect();
    assert!(
        on.contains(first.as_str()) && on.len() > 1,
        "the key's runs did not go to more than one node: {on:?}"
    );
}

/// Two nodes, `na` and `nb`; the program `chatty` (`TICKS`, `PAUSE`) may
/// run only on `nb` (label `b`).
fn chatty_on_b(db: &Db, ticks: &str, pause: &str) -> (Daemon, Daemon) {
    let programs = format!(
        r#"
  chatty:
    command: handlers/chatty.sh
    run_on: [b]
    env: {{TICKS: "{ticks}", PAUSE: "{pause}"}}
"#
    );
    let mapping = "    chatty: {rules: [{run: chatty}]}";
    // chatty writes nothing the nodes share (no `$SHARED` in its config).
    let shared = Path::new("/nonexistent-shared");
    let a = node(db, "na", "", shared, &programs, mapping);
    let b = node(db, "nb", "b", shared, &programs, mapping);
    (a, b)
}

#[test]
fn output_and_cancel_of_a_task_on_another_node() {
    let _one = serial();
    let Some(db) = Db::create() else { return };
    let (a, b) = chatty_on_b(&db, "200", "0.1");
    let id = send(&a, r#"{"kind":"chatty"}"#).remove(0);
    eventually("the task to run on nb", Duration::from_secs(10), || {
        let t = task(&a, &id);
        t["status"] == "running" && t["node"] == "nb"
    });
    // Live output through na, from nb.
    let mut stream = std::net::TcpStream::connect(&a.addr).unwrap();
    stream
        .write_all(format!("GET /tasks/{id}/output?follow=1 HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream);
    let mut ticks = Vec::new();
    let mut line = String::new();
    let mut pid = None;
    while ticks.len() < 3 {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            if let Some(p) = data.strip_prefix("pid ") {
                pid = p.parse::<i32>().ok();
            }
            if data.starts_with("tick ") {
                ticks.push(data.to_string());
            }
        }
    }
    assert_eq!(ticks[..2], ["tick 1", "tick 2"]);
    let pid = pid.expect("the handler's pid line came through");
    assert!(alive(pid));
    // Cancel through na, of the task on nb.
    let r = a.post(&format!("/tasks/{id}/cancel"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text);
    let t = wait_final(&a, std::slice::from_ref(&id), Duration::from_secs(20)).remove(0);
    assert_eq!(t["status"], "cancelled", "{t}");
    assert_eq!(t["error"], "cancelled by request");
    eventually("the handler to be stopped", Duration::from_secs(10), || !alive(pid));
    drop(b);
}

/// `(event, data)` of each event `GET /events` on `d` streams, read on a thread.
fn event_stream(d: &Daemon) -> std::sync::mpsc::Receiver<(String, Value)> {
    let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(60)).build();
    let resp = agent.get(&d.url("/events")).call().expect("GET /events");
    assert_eq!(resp.status(), 200);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(resp.into_reader());
        while let Some(e) = sse::next_event(&mut reader) {
            let data = serde_json::from_str(&e["data"]).expect("data is JSON");
            if tx.send((e.get("event").cloned().unwrap_or_default(), data)).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn every_nodes_event_stream_shows_the_work_of_the_others() {
    let _one = serial();
    let Some(db) = Db::create() else { return };
    let (a, b) = chatty_on_b(&db, "3", "0.05");
    let programs = r#"
  chatty:
    command: handlers/chatty.sh
    run_on: [b]
    env: {TICKS: "3", PAUSE: "0.05"}
"#;
    let c = node(
        &db,
        "nc",
        "",
        Path::new("/nonexistent-shared"),
        programs,
        "    chatty: {rules: [{run: chatty}]}",
    );
    // Listening on na; the delivery arrives at nc, the task runs on nb.
    let events = event_stream(&a);
    // A listener on nb too, so that nb announces the output's growth (to its own stream).
    let on_b = event_stream(&b);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (id, seen) = 'found: loop {
        assert!(
            Instant::now() < deadline,
            "na's stream never showed a task received by nc"
        );
        // The first deliveries may come before nc has heard that na listens.
        let id = send(&c, r#"{"kind":"chatty"}"#).remove(0);
        let mut seen: Vec<(String, Value)> = Vec::new();
        let until = Instant::now() + Duration::from_secs(2);
        while let Ok(e) = events.recv_timeout(until.saturating_duration_since(Instant::now())) {
            let mine = e.1["task"] == id.as_str() || e.1["tasks"][0] == id.as_str();
            if mine {
                seen.push(e);
            }
            if seen.iter().any(|(k, _)| k == "task.created") {
                break 'found (id, seen);
            }
        }
    };
    let mut seen = seen;
    let until = Instant::now() + Duration::from_secs(15);
    while !["task.finished", "delivery.recorded"]
        .iter()
        .all(|k| seen.iter().any(|(kind, _)| kind == k))
    {
        let left = until.saturating_duration_since(Instant::now());
        let e = events
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("na's stream stopped short: {seen:?}"));
        if e.1["task"] == id.as_str() || e.1["tasks"][0] == id.as_str() {
            seen.push(e);
        }
    }
    let of = |kind: &str| -> Vec<&Value> { seen.iter().filter(|(k, _)| k == kind).map(|(_, d)| d).collect() };
    // From nc, which received it.
    assert_eq!(of("task.created").len(), 1, "{seen:?}");
    assert_eq!(of("task.created")[0]["program"], "chatty");
    assert_eq!(of("delivery.recorded").len(), 1, "{seen:?}");
    // From nb, which ran it.
    let started = of("task.started");
    assert_eq!(started.len(), 1, "{seen:?}");
    assert_eq!(started[0]["node"], "nb");
    let finished = of("task.finished");
    assert_eq!(finished.len(), 1, "{seen:?}");
    assert_eq!(
        (&finished[0]["node"], &finished[0]["status"]),
        (&"nb".into(), &"succeeded".into())
    );
    // Output growth stays with the node that runs the task.
    assert!(of("task.output").is_empty(), "{seen:?}");
    let announced = std::iter::from_fn(|| on_b.recv_timeout(Duration::from_secs(5)).ok())
        .any(|(k, d)| k == "task.output" && d["task"] == id.as_str());
    assert!(announced, "nb announced the output on its own stream");
    // What na streams agrees with what any node shows of the task.
    let t = task(&a, &id);
    assert_eq!((&t["node"], &t["status"]), (&"nb".into(), &"succeeded".into()));
    drop((b, c));
}

#[test]
fn the_dashboard_on_one_node_shows_another_nodes_task_live() {
    let _one = serial();
    let Some(db) = Db::create() else { return };
    let Some(b) = browser::browser() else { return };
    let (a, nb) = chatty_on_b(&db, "3", "0.05");
    b.goto(&a.url("/ui#/tasks"));
    b.wait(
        "the page to read na's event stream",
        Duration::from_secs(10),
        "const l = document.getElementById('live'); return l !== null && l.textContent === 'live'",
        &[],
    );
    // A flag that a reload would lose.
    b.js("window.__sameDocument = 'yes'", &[]);
    let row = "const r = document.querySelector('tr[data-task=\"' + arguments[0] + '\"]'); return r !== null && r.textContent";
    let deadline = Instant::now() + Duration::from_secs(20);
    let (id, text) = loop {
        assert!(
            Instant::now() < deadline,
            "na's dashboard never showed a task nb received and ran"
        );
        // Received and run by nb: na's page hears of it only through the relay
        // (the first deliveries may come before nb has heard that na has a listener).
        let id = send(&nb, r#"{"kind":"chatty"}"#).remove(0);
        let until = Instant::now() + Duration::from_secs(3);
        let shown = loop {
            let text = b.js(row, &[json!(id)]);
            if text.as_str().is_some_and(|t| t.contains("succeeded")) || Instant::now() > until {
                break text;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(text) = shown.as_str().filter(|t| t.contains("succeeded")) {
            break (id, text.to_string());
        }
    };
    assert!(text.contains("nb"), "the row names the node that ran it: {text}");
    assert_eq!(
        b.js("return window.__sameDocument", &[]),
        json!("yes"),
        "the page reloaded"
    );
    assert_eq!(task(&a, &id)["node"], "nb");
}

#[test]
fn a_wait_delivery_answers_when_another_node_has_run_it() {
    let _one = serial();
    let Some(db) = Db::create() else { return };
    let (a, b) = chatty_on_b(&db, "3", "0.2");
    // na accepts and waits; only nb may run it.
    let r = a.post_json("/hooks/a?wait=20s", &[], br#"{"kind":"chatty"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(body["finished"], true, "{body}");
    let t = &body["tasks"][0];
    assert_eq!(t["status"], "succeeded", "{body}");
    assert_eq!(t["exit_code"], 0, "{body}");
    // Where it ran is for the API, not the sender.
    assert!(t.get("node").is_none(), "{body}");
    let id = t["id"].as_str().unwrap();
    assert_eq!(a.get(&format!("/tasks/{id}")).json()["node"], "nb");
    let stdout = t["stdout"].as_str().unwrap_or_default();
    assert!(stdout.contains("tick 3"), "the output nb kept: {body}");
    drop(b);
}

#[test]
fn the_database_going_away_refuses_with_503_and_loses_nothing() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs = r#"
  work:
    command: handlers/stamp.sh
    env: {OUT_FILE: $SHARED/runs, SLEEP: "2"}
"#;
    let a = node(&db, "n1", "", shared.path(), programs, STAMP_MAPPING);
    let b = node(&db, "n2", "", shared.path(), programs, STAMP_MAPPING);
    let mut acked = Vec::new();
    for i in 0..4 {
        acked.extend(send(if i % 2 == 0 { &a } else { &b }, r#"{"kind":"work"}"#));
    }
    eventually("tasks to run", Duration::from_secs(10), || {
        runs(shared.path()).iter().filter(|r| r.0 == "start").count() >= 2
    });
    // Someone watches n1's events through the outage.
    let events = event_stream(&a);
    common::pg::server("stop");
    let refused = (|| {
        for d in [&a, &b] {
            let r = d.post_json("/hooks/a", &[], br#"{"kind":"work"}"#);
            if r.status != 503 {
                return Err(format!("{}: {}", r.status, r.text));
            }
            assert_eq!(r.header("retry-after"), Some("5"));
        }
        Ok(())
    })();
    let unready = a.get("/readyz");
    common::pg::server("start");
    assert_eq!(
        refused,
        Ok(()),
        "a delivery was not refused while the database was down"
    );
    assert_eq!(unready.status, 503, "{}", unready.text);
    assert!(unready.text.contains("cannot write"), "{}", unready.text);
    for d in [&a, &b] {
        eventually("the node to be ready again", Duration::from_secs(30), || {
            d.get("/readyz").status == 200
        });
    }
    acked.extend(send(&a, r#"{"kind":"work"}"#));
    let done = wait_final(&b, &acked, Duration::from_secs(60));
    for t in &done {
        assert_eq!(t["status"], "succeeded", "{t}");
    }
    // n1's listener was told to reload (other nodes' events may have been
    // missed), and then saw every task end again, whichever node ran it.
    let seen: Vec<(String, Value)> = std::iter::from_fn(|| events.recv_timeout(Duration::from_secs(5)).ok()).collect();
    let reset = seen
        .iter()
        .position(|(k, _)| k == "reset")
        .unwrap_or_else(|| panic!("no reset after the outage: {seen:?}"));
    let last = acked.last().unwrap();
    assert!(
        seen[reset..]
            .iter()
            .any(|(k, d)| k == "task.finished" && d["task"] == last.as_str()),
        "the end of {last} after the outage: {seen:?}"
    );
}

/// A TCP relay to the machine's PostgreSQL that can go silent: its
/// connections stay open and nothing passes, as in a network partition or
/// with a hung server (no reset, no refusal).
struct Relay {
    port: u16,
    silent: Arc<AtomicBool>,
    /// Once set, the relay goes silent the moment a client next sends the
    /// `COMMIT` of a transaction that wrote a row (the server answered an
    /// `INSERT` on that connection since its last `COMMIT`, or the
    /// transaction wakes the nodes with `NOTIFY`, as the writer's batch of a
    /// task's end does), before passing it on (once): the client is cut off
    /// in the middle of a transaction whose row locks the server still holds.
    cut_at_commit: Arc<AtomicBool>,
    /// While set, what any connection sends is lost, and a connection that
    /// lost something stays dead (sends nothing on, answers nothing, never
    /// closes): a path gone away under open connections. New connections
    /// work again once it is cleared.
    blackhole: Arc<AtomicBool>,
}

impl Relay {
    /// A relay to `db`'s server, and the URL of `db` through it.
    fn to(db: &Db) -> (Relay, String) {
        let relay = Relay::start();
        let url = db.url().replace(":5432/", &format!(":{}/", relay.port));
        (relay, url)
    }

    fn start() -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = Arc::new(AtomicBool::new(false));
        let cut_at_commit = Arc::new(AtomicBool::new(false));
        let blackhole = Arc::new(AtomicBool::new(false));
        let (quiet, cut, hole) = (silent.clone(), cut_at_commit.clone(), blackhole.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect("127.0.0.1:5432") else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Whether the server said it wrote a row since the client's last COMMIT.
                let wrote = Arc::new(AtomicBool::new(false));
                // Whether this connection lost something to the blackhole.
                let dead = Arc::new(AtomicBool::new(false));
                let (quiet2, wrote2, cut) = (quiet.clone(), wrote.clone(), cut.clone());
                let (hole2, dead2) = (hole.clone(), dead.clone());
                std::thread::spawn(move || {
                    pump(client, server, &quiet2, Some((&cut, &wrote2)), None, (&hole2, &dead2))
                });
                let (quiet2, hole2) = (quiet.clone(), hole.clone());
                std::thread::spawn(move || pump(s2, c2, &quiet2, None, Some(&wrote), (&hole2, &dead)));
            }
        });
        Relay {
            port,
            silent,
            cut_at_commit,
            blackhole,
        }
    }
}

fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    silent: &AtomicBool,
    cut: Option<(&AtomicBool, &AtomicBool)>,
    wrote: Option<&AtomicBool>,
    (blackhole, dead): (&AtomicBool, &AtomicBool),
) {
    use std::io::Read;
    let mut buf = [0u8; 16 * 1024];
    // Whether the client sent a `NOTIFY` since its last `COMMIT`.
    let mut notified = false;
    loop {
        while silent.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if blackhole.load(Ordering::SeqCst) {
            dead.store(true, Ordering::SeqCst);
        }
        if dead.load(Ordering::SeqCst) {
            continue;
        }
        let has = |what: &[u8]| buf[..n].windows(what.len()).any(|w| w == what);
        if let Some(wrote) = wrote {
            // The server's CommandComplete of an INSERT (or upsert).
            if has(b"INSERT 0 ") {
                wrote.store(true, Ordering::SeqCst);
            }
        }
        if let Some((armed, wrote)) = cut {
            notified |= has(b"NOTIFY");
            if has(b"COMMIT") {
                let wrote = wrote.swap(false, Ordering::SeqCst) || std::mem::take(&mut notified);
                if wrote && armed.swap(false, Ordering::SeqCst) {
                    silent.store(true, Ordering::SeqCst);
                }
            }
        }
        while silent.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_database_gone_silent_refuses_with_503_instead_of_hanging() {
    let _one = serial();
    let Some(db) = Db::create() else { return };
    let (relay, url) = Relay::to(&db);
    let shared = tempfile::tempdir().unwrap();
    let a = node_at(&url, "n1", "", shared.path(), STAMP, STAMP_MAPPING);
    let first = send(&a, r#"{"kind":"work"}"#);
    assert_eq!(
        wait_final(&a, &first, Duration::from_secs(20))[0]["status"],
        "succeeded"
    );

    relay.silent.store(true, Ordering::SeqCst);
    // The delivery cannot be committed: a 503 after the query timeout, not a
    // wait for as long as the silence lasts.
    let r = a.post_json("/hooks/a", &[], br#"{"kind":"work"}"#);
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("5"));
    eventually(
        "/readyz to say the store is out of reach",
        Duration::from_secs(30),
        || a.get("/readyz").status == 503,
    );
    let unready = a.get("/readyz");
    assert!(unready.text.contains("did not answer within"), "{}", unready.text);

    relay.silent.store(false, Ordering::SeqCst);
    eventually("the node to be ready again", Duration::from_secs(60), || {
        a.get("/readyz").status == 200
    });
    let mut acked = first;
    eventually("a delivery to be accepted again", Duration::from_secs(30), || {
        let ids = send(&a, r#"{"kind":"work"}"#);
        let ok = !ids.is_empty();
        acked.extend(ids);
        ok
    });
    for t in wait_final(&a, &acked, Duration::from_secs(60)) {
        assert_eq!(t["status"], "succeeded", "{t}");
    }
}

#[test]
fn a_task_deleted_through_another_node_is_gone_from_the_node_that_ran_it() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs = STAMP.replace("on_interrupt: rerun", "run_on: [web]");
    let web = node(&db, "n1", "web", shared.path(), &programs, STAMP_MAPPING);
    let other = node(&db, "n2", "", shared.path(), &programs, STAMP_MAPPING);
    let id = send(&other, r#"{"kind":"work"}"#).remove(0);
    let done = wait_final(&web, std::slice::from_ref(&id), Duration::from_secs(20));
    assert_eq!(
        (done[0]["status"].as_str(), done[0]["node"].as_str()),
        (Some("succeeded"), Some("n1"))
    );
    assert_eq!(web.get(&format!("/tasks/{id}/output")).status, 200);
    // The other node sees the end once n1 has written it.
    wait_final(&other, std::slice::from_ref(&id), Duration::from_secs(20));
    let r = request("DELETE", &other.url(&format!("/tasks/{id}")), &[], None);
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(other.get(&format!("/tasks/{id}")).status, 404);
    eventually("the node that ran it to forget it", Duration::from_secs(10), || {
        web.get(&format!("/tasks/{id}")).status == 404
    });
    assert_eq!(web.get(&format!("/tasks/{id}/output")).status, 404);
    assert_eq!(
        request("POST", &web.url(&format!("/tasks/{id}/rerun")), &[], Some(b"")).status,
        404
    );
}

#[test]
fn max_queued_holds_for_a_burst_between_two_counts_of_the_queue() {
    let Some((_one, db, shared)) = fresh() else { return };
    let config = format!(
        r#"
state:
  postgres: {url}
node:
  lease: 30s
tasks:
  max_concurrent: 1
  max_queued: 3
sources:
  a: {{provider: generic, auth: none, event: {{field: kind}}}}
programs:
{STAMP}
mappings:
  a:
{STAMP_MAPPING}
"#,
        url = db.url()
    )
    .replace("SLEEP: \"0.3\"", "SLEEP: \"5\"")
    .replace("$SHARED", &shared.path().display().to_string());
    // A long lease: the queue is counted every 10 s, so the burst below
    // falls between two counts.
    let d = Daemon::with(&config).env("HOOKRUNNER_NODE_NAME", "n1").start();
    let mut accepted = 0;
    for _ in 0..20 {
        let r = d.post_json("/hooks/a", &[], br#"{"kind":"work"}"#);
        match r.status {
            202 => accepted += 1,
            503 => assert!(r.error().contains("queue"), "{}", r.text),
            s => panic!("{s}: {}", r.text),
        }
    }
    // One running and three queued; one more at most, if the count of the
    // queue happened to read it just before a commit.
    assert!((4..=5).contains(&accepted), "{accepted} of 20 accepted");
}

#[test]
fn a_node_restarted_after_a_crash_stops_its_old_handler_before_running_the_task_again() {
    let Some((_one, db, shared)) = fresh() else { return };
    // The first run outlives any slow restart; the second one is short.
    let programs = STAMP.replace("SLEEP: \"0.3\"", "SLEEP: \"0.3\", FIRST_SLEEP: \"60\"");
    let mut a = node(&db, "n1", "", shared.path(), &programs, STAMP_MAPPING);
    let id = send(&a, r#"{"kind":"work"}"#).remove(0);
    eventually("the handler to start", Duration::from_secs(10), || {
        runs(shared.path()).iter().any(|r| r.0 == "start" && r.1 == id)
    });
    a.kill9();
    // The name is free again once the crashed run's lease (2 s) is over.
    std::thread::sleep(Duration::from_secs(3));
    a.restart();
    let done = wait_final(&a, std::slice::from_ref(&id), Duration::from_secs(30));
    assert_eq!(done[0]["status"], "succeeded", "{}", done[0]);
    assert_eq!(done[0]["attempt"], 2, "{}", done[0]);
    let runs = runs(shared.path());
    let starts = runs.iter().filter(|r| r.0 == "start" && r.1 == id).count();
    let ends = runs.iter().filter(|r| r.0 == "end" && r.1 == id).count();
    // The first run was stopped at the restart: only the second one ended.
    assert_eq!((starts, ends), (2, 1), "{runs:?}");
    a.logs_with("left running when its daemon died is stopped");
}

/// The head and body of each request a [`callback_receiver`] got.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A completion-callback receiver on a free port: its URL, and the head and
/// body of each request it got, answered with `status_of(n)` (n from 0;
/// 0 for no answer at all).
fn callback_receiver(status_of: fn(usize) -> u16) -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/done", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let got = received.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { break };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut head, mut len) = (String::new(), 0);
            loop {
                let mut l = String::new();
                reader.read_line(&mut l).unwrap();
                if l.trim().is_empty() {
                    break;
                }
                if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                head.push_str(&l);
            }
            let mut body = vec![0; len];
            std::io::Read::read_exact(&mut reader, &mut body).unwrap();
            got.lock()
                .unwrap()
                .push((head, String::from_utf8_lossy(&body).into_owned()));
            match status_of(n) {
                // No answer: the sender waits until it gives up (or dies).
                0 => std::thread::sleep(Duration::from_secs(3)),
                status => {
                    let _ = conn.write_all(
                        format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                    );
                }
            }
        }
    });
    (url, received)
}

#[test]
fn a_killed_nodes_retry_and_callback_are_finished_by_another() {
    let Some((_one, db, shared)) = fresh() else { return };
    // The callback receiver: no answer to the first request (its sender dies
    // waiting, before it can record the attempt), then 200.
    let (cb_url, received) = callback_receiver(|n| if n == 0 { 0 } else { 200 });
    let programs = format!(
        r#"
  flaky:
    command: handlers/attempts.sh
    retry: {{attempts: 3, backoff: 10s}}
    env: {{COUNT_FILE: $SHARED/count, SUCCEED_ON: "2"}}
  told:
    command: handlers/stamp.sh
    env: {{OUT_FILE: $SHARED/runs, SLEEP: "0"}}
    on_finish:
      - url: "{cb_url}"
        attempts: 3
        backoff: 6s
"#
    );
    let mapping = "    flaky: {rules: [{run: flaky}]}\n    told: {rules: [{run: told}]}";
    let mut first = node(&db, "n1", "", shared.path(), &programs, mapping);
    let retried = send(&first, r#"{"kind":"flaky"}"#).remove(0);
    let told = send(&first, r#"{"kind":"told"}"#).remove(0);
    eventually(
        "attempt 1 to fail and the callback to be sent once",
        Duration::from_secs(15),
        || {
            task(&first, &retried)["attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
                && received.lock().unwrap().len() == 1
        },
    );
    first.kill9();
    let second = node(&db, "n2", "", shared.path(), &programs, mapping);
    let done = wait_final(&second, &[retried.clone(), told.clone()], Duration::from_secs(30));
    assert_eq!(done[0]["status"], "succeeded", "{}", done[0]);
    assert_eq!(done[0]["attempt"], 2);
    assert_eq!(done[0]["node"], "n2", "the retry ran on the node still alive");
    eventually("the callback delivered by n2", Duration::from_secs(30), || {
        task(&second, &told)["callbacks"][0]["status"] == "delivered"
    });
    let heads: Vec<String> = received.lock().unwrap().iter().map(|(head, _)| head.clone()).collect();
    assert_eq!(heads.len(), 2, "{heads:?}");
    let id_header = format!("webhook-id: msg_{told}_0");
    assert!(
        heads.iter().all(|h| h.to_ascii_lowercase().contains(&id_header)),
        "{heads:?}"
    );
    let nodes = second.get("/nodes").json();
    assert!(
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "n1" && n["taken_over_by"] == "n2"),
        "{nodes}"
    );
}

#[test]
fn a_single_nodes_history_moves_into_a_cluster() {
    let Some((_one, db, shared)) = fresh() else { return };
    let single = format!(
        "state:\n  path: $DIR/state/hookrunner.db\nsources:\n  a: {{provider: generic, auth: none, event: {{field: kind}}}}\nprograms:\n{}\nmappings:\n  a:\n{STAMP_MAPPING}\n",
        STAMP.replace("$SHARED", &shared.path().display().to_string())
    );
    let mut one = Daemon::start(&single);
    let ids: Vec<String> = (0..3).flat_map(|_| send(&one, r#"{"kind":"work"}"#)).collect();
    wait_final(&one, &ids, Duration::from_secs(20));
    one.terminate();
    let out = std::process::Command::new(BIN)
        .args(["db", "copy", "--from"])
        .arg(one.path("state/hookrunner.db"))
        .args(["--to", &db.url()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.starts_with("copied 3 tasks and 3 deliveries from "), "{said}");
    // Again: nothing is copied twice, and the report says so.
    let out = std::process::Command::new(BIN)
        .args(["db", "copy", "--from"])
        .arg(one.path("state/hookrunner.db"))
        .args(["--to", &db.url()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.starts_with("copied 0 tasks and 0 deliveries from "), "{said}");
    assert!(
        said.contains("6 rows were in the database already (copied before) and were left as they are"),
        "{said}"
    );
    // The `key=value` form is refused (its password could not be masked
    // where the address is shown), and never echoed.
    let out = std::process::Command::new(BIN)
        .args(["db", "copy", "--from"])
        .arg(one.path("state/hookrunner.db"))
        .args(["--to", "host=127.0.0.1 user=postgres password=KvPassw0rd dbname=test"])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("--to must be a URL such as `postgres://"), "{said}");
    assert!(!said.contains("KvPassw0rd"), "{said}");
    let node = node(&db, "n1", "", shared.path(), STAMP, STAMP_MAPPING);
    let listed = node.get("/tasks?limit=10").json();
    let mut seen: Vec<String> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    seen.reverse();
    assert_eq!(seen, ids, "the same tasks, in the same order");
    assert_eq!(
        node.get("/deliveries").json()["deliveries"].as_array().unwrap().len(),
        3
    );
    assert_eq!(task(&node, &ids[0])["status"], "succeeded");

    // `db check` reads the cluster's database through the same config.
    let out = std::process::Command::new(BIN)
        .args(["db", "check", "--config"])
        .arg(node.path("webhook.yaml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("\n3 tasks, 3 deliveries\n0 unreadable rows\n"), "{said}");
    assert!(said.trim_end().ends_with(": ok"), "{said}");
    db.query("UPDATE tasks SET record = 'not a record' WHERE id = (SELECT id FROM tasks ORDER BY seq LIMIT 1)");
    let out = std::process::Command::new(BIN)
        .args(["db", "check", "--config"])
        .arg(node.path("webhook.yaml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("1 unreadable rows\n  tasks row `{}`", ids[0])),
        "{said}"
    );
}

/// `sslmode` means what it means to libpq: `prefer` (the default) and
/// `require` encrypt without checking the certificate, `verify-ca` checks
/// the chain against `sslrootcert`, `verify-full` the name too; a node that
/// cannot connect as asked says why and does not start.
#[test]
fn tls_to_the_database_follows_sslmode() {
    let _one = serial();
    let Some(db) = Db::create() else { return };
    if db.query("SHOW ssl") != "on" {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true, but the PostgreSQL server has ssl = off (Debian's default is on, with its snakeoil certificate)"
        );
        eprintln!("\n*** SKIPPED: the PostgreSQL server has ssl = off; with CI=true this is a failure. ***\n");
        return;
    }
    let cert = db.query("SHOW ssl_cert_file");
    let cert = if cert.starts_with('/') {
        cert
    } else {
        db.query("SHOW data_directory") + "/" + &cert
    };
    // The machine's server certificate is self-signed for `localhost`.
    let base = |host: &str| format!("postgres://postgres:not-the-password@{host}:5432/{}", db.name);
    let config = |url: &str| {
        format!(
            "state:\n  postgres: \"{url}\"\n  connections: 2\nsources:\n  a: {{provider: generic, auth: none}}\nprograms:\n  p: {{command: [/bin/true]}}\nmappings:\n  a:\n    \"*\": {{rules: [{{run: p}}]}}\n"
        )
    };
    let encrypted = |d: &Daemon| {
        let n = d.post_json("/hooks/a", &[], b"{}");
        assert_eq!(n.status, 202, "{}", n.text);
        db.query(&format!(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = '{}' AND a.application_name = 'hookrunner'",
            db.name
        ))
    };
    for (i, url) in [
        base("127.0.0.1"),
        format!("{}?sslmode=require", base("127.0.0.1")),
        format!("{}?sslmode=verify-ca&sslrootcert={cert}", base("127.0.0.1")),
        format!("{}?sslmode=verify-full&sslrootcert={cert}", base("localhost")),
    ]
    .iter()
    .enumerate()
    {
        let d = Daemon::with(&config(url))
            .without_handlers()
            .env("HOOKRUNNER_NODE_NAME", &format!("tls-{i}"))
            .start();
        assert_eq!(encrypted(&d), "t", "{url}: the connections are not encrypted");
    }
    let d = Daemon::with(&config(&format!("{}?sslmode=disable", base("127.0.0.1"))))
        .without_handlers()
        .env("HOOKRUNNER_NODE_NAME", "plain")
        .start();
    assert_eq!(encrypted(&d), "f", "sslmode=disable still encrypted");
    drop(d);

    for (url, why) in [
        // The name on the certificate is `localhost`, not the address.
        (
            format!("{}?sslmode=verify-full&sslrootcert={cert}", base("127.0.0.1")),
            "certificate not valid for name \"127.0.0.1\"",
        ),
        // Not signed by any of the Mozilla roots.
        (format!("{}?sslmode=verify-full", base("localhost")), "UnknownIssuer"),
        (
            format!("{}?sslmode=verify-full&sslrootcert=/nonexistent.pem", base("localhost")),
            "sslrootcert /nonexistent.pem",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("webhook.yaml"), config(&url)).unwrap();
        let mut child = std::process::Command::new(BIN)
            .args(["serve", "--config", "webhook.yaml", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(20));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!status.success(), "{url}: started");
        assert!(err.contains(why), "{url}: {err}");
        assert!(!err.contains("not-the-password"), "the password reached the log: {err}");
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("webhook.yaml"),
        config(&format!("{}?sslmode=verify-everything", base("localhost"))),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--config", "webhook.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("webhook.yaml:2:3: `state.postgres`: `sslmode` is not one of"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
}

#[test]
fn keys_reruns_and_duplicates_behave_the_same_on_every_node() {
    let Some((_one, db, shared)) = fresh() else { return };
    // A run of the key `same` lasts until it is cancelled, however slowly
    // the newer task reaches the other node.
    let programs = keyed("    on_busy: cancel_running\n", "0.3")
        .replace("SLEEP: \"0.3\"", "SLEEP: \"0.3\", LONG_FOR: same, LONG_SLEEP: \"10\"");
    let (programs, mapping) = (programs.as_str(), KEYED_MAPPING);
    let a = node(&db, "na", "", shared.path(), programs, mapping);
    let b = node(&db, "nb", "", shared.path(), programs, mapping);

    // `cancel_running` stops an older run of the same key, never the new
    // task itself (which another node may already have started).
    let mut ids = Vec::new();
    for i in 0..24 {
        let d = if i % 2 == 0 { &a } else { &b };
        ids.extend(send(d, &format!(r#"{{"kind":"keyed","k":"k{i}"}}"#)));
        std::thread::sleep(Duration::from_millis(30));
    }
    let done = wait_final(&a, &ids, Duration::from_secs(60));
    for t in &done {
        assert_eq!(t["status"], "succeeded", "{t}");
    }
    let older = send(&a, r#"{"kind":"keyed","k":"same"}"#);
    eventually("the first run of `same` to start", Duration::from_secs(10), || {
        task(&a, &older[0])["status"] == "running"
    });
    let newer = send(&b, r#"{"kind":"keyed","k":"same"}"#);
    let both = wait_final(&a, &[older[0].clone(), newer[0].clone()], Duration::from_secs(30));
    assert_eq!(both[0]["status"], "cancelled", "{}", both[0]);
    assert_eq!(both[0]["error"], format!("superseded by {}", newer[0]));
    assert_eq!(both[1]["status"], "succeeded", "{}", both[1]);

    // A rerun asked of either node answers 202 with the new task; the node
    // that ran the old one lists it among the old task's reruns.
    let old = &ids[0];
    let ran_on = task(&a, old)["node"].as_str().unwrap().to_string();
    for d in [&a, &b] {
        let r = d.post(&format!("/tasks/{old}/rerun"), &[], b"");
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.json()["rerun_of"], old.as_str());
        let new = r.json()["id"].as_str().unwrap().to_string();
        assert_eq!(
            wait_final(d, std::slice::from_ref(&new), Duration::from_secs(30))[0]["status"],
            "succeeded"
        );
        if d.get("/-/overview").json()["node"] == ran_on.as_str() {
            let reruns = task(d, old)["reruns"].clone();
            assert!(
                reruns.as_array().unwrap().contains(&Value::from(new.as_str())),
                "{reruns}"
            );
        }
    }

    // A repeat answered by another node than the first names the first's tasks.
    let body = br#"{"kind":"keyed","k":"dup"}"#;
    let first = a.post_json("/hooks/d", &[], body);
    assert_eq!(first.status, 202, "{}", first.text);
    let again = b.post_json("/hooks/d", &[], body);
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["duplicate"], true);
    let ids_of = |r: &Resp| -> Vec<Value> {
        r.json()["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].clone())
            .collect()
    };
    assert_eq!(ids_of(&first).len(), 1);
    assert_eq!(ids_of(&again), ids_of(&first));
}

/// A dedup key held by a node that died (or lost the database) between
/// holding it and committing its delivery stops no retry once it has been
/// held longer than a commit may take; a key whose delivery was committed
/// holds for its whole window.
#[test]
fn a_dedup_key_stranded_by_a_dead_node_does_not_swallow_the_retry() {
    let Some((_one, db, shared)) = fresh() else { return };
    let a = node(&db, "n1", "", shared.path(), STAMP, STAMP_MAPPING);
    let (stranded, kept) = (br#"{"kind":"work","n":1}"#, br#"{"kind":"work","n":2}"#);
    for body in [stranded, kept] {
        let r = a.post_json("/hooks/d", &[], body);
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let first_of_kept = db.query("SELECT first_id FROM dedup ORDER BY expires_ms DESC LIMIT 1");
    // Both keys held for 20 s of their 60 s window; the first one as a node
    // that died before its commit leaves it: naming a delivery never written.
    let age = "expires_ms = (extract(epoch from clock_timestamp()) * 1000)::bigint + 40000";
    db.query(&format!("UPDATE dedup SET {age}"));
    db.query(&format!(
        "UPDATE dedup SET first_id = 'never-committed' WHERE first_id <> '{}'",
        first_of_kept.trim()
    ));
    let retry = a.post_json("/hooks/d", &[], stranded);
    assert_eq!(retry.status, 202, "the retry ran: {}", retry.text);
    let again = a.post_json("/hooks/d", &[], kept);
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["duplicate"], true);
    // The retry holds the key now: sent once more, it is a duplicate.
    let once_more = a.post_json("/hooks/d", &[], stranded);
    assert_eq!(once_more.status, 200, "{}", once_more.text);
}

/// A `fan_out` task committed pinned to a node that was taken over in the
/// moment between its delivery reading the live nodes and its commit is
/// settled as that node's takeover would have settled it.
#[test]
fn a_fan_out_task_pinned_to_a_node_taken_over_before_its_commit_is_interrupted() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs =
        "  nowhere:\n    command: handlers/stamp.sh\n    run_on: [nobody]\n    env: {OUT_FILE: $SHARED/runs}\n";
    let mapping = "    nowhere: {rules: [{run: nowhere}]}";
    let a = node(&db, "n1", "", shared.path(), programs, mapping);
    let mut b = node(&db, "n2", "", shared.path(), programs, mapping);
    b.kill9();
    eventually("n1 to take n2 over", Duration::from_secs(30), || {
        a.get("/nodes").json()["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["name"] == "n2" && n["taken_over_by"] == "n1"))
    });
    // Committed pinned to n2, as if its delivery had read n2 alive.
    let id = send(&a, r#"{"kind":"nowhere"}"#).remove(0);
    db.query(&format!(
        "UPDATE tasks SET pinned_node = 'n2', record = (record::jsonb || '{{\"pinned_node\":\"n2\"}}')::text WHERE id = '{id}'"
    ));
    let done = wait_final(&a, std::slice::from_ref(&id), Duration::from_secs(30));
    assert_eq!(done[0]["status"], "interrupted", "{}", done[0]);
    assert_eq!(
        done[0]["error"], "node `n2` is gone and the task was pinned to it (fan_out)",
        "{}",
        done[0]
    );
}

#[test]
fn a_database_password_with_a_slash_or_question_mark_is_never_shown() {
    let _one = serial();
    let Some(db) = Db::create() else { return };
    // The server trusts loopback, so any password connects; the driver takes
    // everything up to the last `@` as the user and password.
    for (i, password) in ["Top/S3cretPW", "Top?S3cretPW", "Top#S3cretPW"].into_iter().enumerate() {
        let url = db.url().replace("postgres@", &format!("postgres:{password}@"));
        let d = Daemon::with(&format!(
            "state:\n  postgres: \"{url}\"\nsources:\n  a: {{provider: generic, auth: none}}\n"
        ))
        .env("HOOKRUNNER_NODE_NAME", &format!("pw-{i}"))
        .start();
        let shown = [
            d.get("/readyz").text,
            d.get("/-/overview").text,
            d.get("/nodes").text,
            d.logs(),
        ];
        for text in &shown {
            assert!(!text.contains("S3cretPW"), "{password}: {text}");
        }
        assert_eq!(
            d.get("/readyz").json()["store"]["store"],
            "postgres://***@127.0.0.1:5432/".to_string() + &db.name + "?sslmode=***"
        );
    }
}

/// A stranger's flood through every node leaves the senders' records and
/// bodies alone; the database holds `keep_refused` refused records at most,
/// and its prune (one node's, every 10 s) takes none of the senders'.
#[test]
fn a_strangers_flood_through_every_node_pushes_out_no_senders_record() {
    let _one = serial();
    let Some(db) = Db::create() else { return };
    let url = db.url();
    let config = format!(
        r#"
state:
  postgres: {url}
  connections: 4
node:
  lease: 2s
deliveries:
  keep: 6
  keep_refused: 5
sources:
  a: {{provider: generic, auth: {{token: flood-token, header: X-Token}}}}
programs:
  ok: {{command: handlers/log-event.sh}}
mappings:
  a:
    default: {{rules: [{{run: ok}}]}}
"#
    );
    let start = |name: &str| {
        Daemon::with(&config)
            .env("HOOKRUNNER_NODE_NAME", name)
            .env("RUST_LOG", "info,hookrunner::store=debug")
            .start()
    };
    let (a, b) = (start("fa"), start("fb"));
    let mut sent = Vec::new();
    for n in 0..4 {
        let body = format!(r#"{{"n":{n}}}"#);
        let r = a.post_json("/hooks/a", &[("X-Token", "flood-token")], body.as_bytes());
        assert_eq!(r.status, 202, "{}", r.text);
        let id = r.json()["delivery_id"].as_str().unwrap().to_string();
        sent.push((id, body, Daemon::task_ids(&r).remove(0)));
    }
    let tasks: Vec<String> = sent.iter().map(|(_, _, t)| t.clone()).collect();
    wait_final(&a, &tasks, Duration::from_secs(30));
    let prunes = || a.logs().matches("store pruned").count() + b.logs().matches("store pruned").count();
    let before = prunes();
    for i in 0..300 {
        let d = if i % 2 == 0 { &a } else { &b };
        let status = match i % 3 {
            0 => d.post_json("/hooks/a", &[], b"{}").status,
            1 => d.post_json("/hooks/a", &[("X-Token", "wrong")], b"{}").status,
            _ => d.post_json(&format!("/hooks/nowhere-{i}"), &[], b"{}").status,
        };
        assert!(status == 401 || status == 404, "{status}");
    }
    let count = |outcome: &str| -> usize {
        db.query(&format!("SELECT count(*) FROM deliveries WHERE outcome {outcome}"))
            .parse()
            .unwrap()
    };
    eventually(
        "the newest 5 refused records, and no more",
        Duration::from_secs(30),
        || count("= 'refused'") == 5,
    );
    assert_eq!(count("<> 'refused'"), 4);
    eventually("a node's prune", Duration::from_secs(30), || prunes() > before);
    assert_eq!((count("= 'refused'"), count("<> 'refused'")), (5, 4));
    for d in [&a, &b] {
        for (id, body, _) in &sent {
            let r = d.get(&format!("/deliveries/{id}/body"));
            assert_eq!((r.status, r.text.as_str()), (200, body.as_str()));
        }
        let refused = d.get("/deliveries?outcome=refused&limit=1000").json()["deliveries"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(refused, 5);
    }
    let r = b.post(&format!("/tasks/{}/rerun", sent[0].2), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text);
}

#[test]
fn a_backlog_held_back_by_its_limit_does_not_keep_other_work_from_starting() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs = r#"
  limited:
    command: handlers/gate.sh
    max_concurrent: 1
    env: {GATE: $SHARED/open-limited, OUT_FILE: $SHARED/limited}
  keyed:
    command: handlers/gate.sh
    concurrency_key: "one"
    env: {GATE: $SHARED/open-keyed, OUT_FILE: $SHARED/keyed}
  work:
    command: [sh, -c, "echo done"]
"#;
    let mappings =
        "    limited: {rules: [{run: limited}]}\n    keyed: {rules: [{run: keyed}]}\n    work: {rules: [{run: work}]}";
    let d = node(&db, "n1", "", shared.path(), programs, mappings);
    // Held back by a program's limit, then by a busy key: each time more
    // tasks than a claim looks at at once (32 rows for one free slot), the
    // one that runs waiting for a gate, and one slot of the node's two free.
    for (kind, gate) in [("limited", "open-limited"), ("keyed", "open-keyed")] {
        let backlog: Vec<String> = (0..80)
            .flat_map(|_| send(&d, &format!(r#"{{"kind":"{kind}"}}"#)))
            .collect();
        assert_eq!(backlog.len(), 80);
        let work = send(&d, r#"{"kind":"work"}"#);
        // The work behind them runs while the gate is still shut.
        let done = wait_final(&d, &work, Duration::from_secs(30));
        assert_eq!(done[0]["status"], "succeeded", "{kind}: {}", done[0]);
        let queued = d.get("/tasks?status=queued&limit=1000").json()["tasks"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(queued, 79, "{kind}: the backlog waits behind its one running task");
        std::fs::write(shared.path().join(gate), "").unwrap();
        for t in wait_final(&d, &backlog, Duration::from_secs(120)) {
            assert_eq!(t["status"], "succeeded", "{kind}: {t}");
        }
    }
}

#[test]
fn a_node_whose_config_lacks_a_program_leaves_its_tasks_to_a_node_that_has_it() {
    let Some((_one, db, shared)) = fresh() else { return };
    let newer = format!(
        "{STAMP}  fresh:\n    command: handlers/stamp.sh\n    env: {{OUT_FILE: $SHARED/runs, SLEEP: \"0.2\"}}\n"
    );
    let mappings = format!("{STAMP_MAPPING}\n    fresh: {{rules: [{{run: fresh}}]}}");
    let a = node(&db, "new", "", shared.path(), &newer, &mappings);
    // An older config, without `fresh`, on the other node (a rolling deploy).
    let b = node(&db, "old", "", shared.path(), STAMP, STAMP_MAPPING);
    let ids: Vec<String> = (0..8).flat_map(|_| send(&a, r#"{"kind":"fresh"}"#)).collect();
    assert_eq!(ids.len(), 8);
    for t in wait_final(&b, &ids, Duration::from_secs(60)) {
        assert_eq!(t["status"], "succeeded", "{t}");
        assert_eq!(t["node"], "new", "{t}");
    }
    assert!(!b.logs().contains("panicked"), "{}", b.logs());
}

#[test]
fn a_cancel_asked_for_just_before_the_node_died_is_kept_at_the_takeover() {
    let Some((_one, db, shared)) = fresh() else { return };
    let slow = STAMP.replace("SLEEP: \"0.3\"", "SLEEP: \"20\"");
    let mut b = node(&db, "b", "", shared.path(), &slow, STAMP_MAPPING);
    let id = send(&b, r#"{"kind":"work"}"#).remove(0);
    eventually("the task runs on b", Duration::from_secs(10), || {
        task(&b, &id)["status"] == "running"
    });
    let a = node(&db, "a", "", shared.path(), &slow, STAMP_MAPPING);
    b.kill9();
    // Asked through a; b is gone and cannot stop it: the cancel is kept in
    // the database for whoever takes b's work over.
    let r = a.post(&format!("/tasks/{id}/cancel"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text);
    let done = wait_final(&a, std::slice::from_ref(&id), Duration::from_secs(30));
    assert_eq!(done[0]["status"], "cancelled", "{}", done[0]);
    assert_eq!(done[0]["attempt"], 1, "{}", done[0]);
    // Not run again (the program says on_interrupt: rerun).
    std::thread::sleep(Duration::from_secs(1));
    let starts = runs(shared.path())
        .iter()
        .filter(|r| r.0 == "start" && r.1 == id)
        .count();
    assert_eq!(starts, 1, "{:?}", runs(shared.path()));
}

#[test]
fn a_node_back_from_a_partition_shows_and_sends_the_takers_outcome_not_its_own() {
    let Some((_one, db, shared)) = fresh() else { return };
    // The callback receiver: every request answered 200.
    let (cb_url, received) = callback_receiver(|_| 200);
    // `told` still runs when far is back; `short` ends while far is cut off.
    let programs = format!(
        "  told:\n    command: handlers/stamp.sh\n    env: {{OUT_FILE: $SHARED/runs, SLEEP: \"60\"}}\n    on_finish:\n      - url: \"{cb_url}\"\n  short:\n    command: handlers/stamp.sh\n    env: {{OUT_FILE: $SHARED/runs, SLEEP: \"3\"}}\n    on_finish:\n      - url: \"{cb_url}\"\n  farwork:\n    command: handlers/stamp.sh\n    run_on: [f]\n    env: {{OUT_FILE: $SHARED/runs, SLEEP: \"0.2\"}}\n"
    );
    let mapping =
        "    told: {rules: [{run: told}]}\n    short: {rules: [{run: short}]}\n    farwork: {rules: [{run: farwork}]}";
    let (relay, far_url) = Relay::to(&db);
    // far heartbeats every 2 s: back from the cut, it tries to claim the
    // work queued meanwhile before it learns it was taken over.
    let far = node_leased(&far_url, "far", "f", shared.path(), &programs, mapping, "6s");
    let id = send(&far, r#"{"kind":"told"}"#).remove(0);
    // `short`'s sender waits for its outcome (`?wait=`).
    let wait_url = far.url("/hooks/a?wait=90s");
    let waiter = std::thread::spawn(move || {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
        match agent
            .post(&wait_url)
            .set("Content-Type", "application/json")
            .send_bytes(br#"{"kind":"short"}"#)
        {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r.into_string().unwrap(),
            Err(e) => panic!("{e}"),
        }
    });
    let mut short = String::new();
    eventually("`short` to be accepted", Duration::from_secs(10), || {
        let list = far.get("/tasks?program=short").json();
        match list["tasks"][0]["id"].as_str() {
            Some(id) => {
                short = id.to_string();
                true
            }
            None => false,
        }
    });
    eventually("the tasks to run on far", Duration::from_secs(10), || {
        task(&far, &id)["status"] == "running" && task(&far, &short)["status"] == "running"
    });
    // far loses the database in the middle of its next write (at the latest
    // the one of `short`'s end), with the rows it wrote still locked, for
    // far longer than its lease: near, started then, takes its work over
    // once the server has ended far's transaction (left idle too long).
    relay.cut_at_commit.store(true, Ordering::SeqCst);
    eventually("short's handler to end on far", Duration::from_secs(10), || {
        runs(shared.path()).iter().any(|r| r.0 == "end" && r.1 == short)
    });
    eventually("far to be cut off", Duration::from_secs(10), || {
        relay.silent.load(Ordering::SeqCst)
    });
    let near = node(&db, "near", "", shared.path(), &programs, mapping);
    eventually("near to take far's tasks over", Duration::from_secs(40), || {
        task(&near, &id)["status"] == "interrupted" && task(&near, &short)["status"] == "interrupted"
    });
    // Waiting on far's locks did not count as the database being out of
    // reach: near never refused deliveries meanwhile.
    assert!(!near.logs().contains("the database cannot write"), "{}", near.logs());
    // Work only far may run, queued while it is cut off: far claims it once
    // it has joined again, and runs it to its end.
    let waiting: Vec<String> = (0..3).flat_map(|_| send(&near, r#"{"kind":"farwork"}"#)).collect();
    relay.silent.store(false, Ordering::SeqCst);
    eventually("far to find its work taken over", Duration::from_secs(40), || {
        far.logs().contains("its work was taken over by another node")
    });
    // far stopped its handler, and now shows what the cluster shows.
    eventually("far to show the taker's outcome", Duration::from_secs(20), || {
        task(&far, &id)["status"] == "interrupted" && task(&far, &short)["status"] == "interrupted"
    });
    for t in wait_final(&near, &waiting, Duration::from_secs(30)) {
        assert_eq!(t["status"], "succeeded", "{t}");
        assert_eq!(t["node"], "far", "{t}");
    }
    eventually("the callbacks of the takeover", Duration::from_secs(20), || {
        received.lock().unwrap().len() >= 2
    });
    // The sender that waited was told the cluster's outcome, not far's.
    let answer: Value = serde_json::from_str(&waiter.join().unwrap()).unwrap();
    assert_eq!(answer["tasks"][0]["id"], short.as_str(), "{answer}");
    assert_eq!(answer["tasks"][0]["status"], "interrupted", "{answer}");
    // Give a second, contradicting callback from far the time to come.
    std::thread::sleep(Duration::from_secs(3));
    let bodies: Vec<String> = received.lock().unwrap().iter().map(|(_, body)| body.clone()).collect();
    assert_eq!(bodies.len(), 2, "one outcome, one callback a task: {bodies:?}");
    for t in [&id, &short] {
        let of: Vec<&String> = bodies.iter().filter(|b| b.contains(t.as_str())).collect();
        assert_eq!(of.len(), 1, "{t}: {bodies:?}");
        assert!(of[0].contains("interrupted"), "{t}: {bodies:?}");
        for d in [&far, &near] {
            assert_eq!(task(d, t)["status"], "interrupted");
        }
    }
}

/// A keyed program run again after an interruption, whose handler locks a
/// file for as long as any process of its group lives: a run that finds
/// the lock taken says `overlap`. The first run sleeps 120 s, the others 0.2 s.
const GUARDED: &str = "  guarded:\n    command: handlers/exclusive.sh\n    on_interrupt: rerun\n    concurrency_key: \"one\"\n    env: {OUT_FILE: $SHARED/runs, LOCK: $SHARED/lock, FIRST_SLEEP: \"120\"}\n";
const GUARDED_MAPPING: &str = "    guarded: {rules: [{run: guarded}]}";

/// A node cut off from the database stops what must never run twice at
/// once (here a keyed program run again after an interruption) before its
/// lease ends, so the node that takes its work over never runs the task
/// beside it. The handler locks a file for as long as any process of its
/// group lives: a run that finds the lock taken says `overlap`.
#[test]
fn a_node_cut_off_from_the_database_stops_its_keyed_task_before_another_runs_it_again() {
    let Some((_one, db, shared)) = fresh() else { return };
    let (programs, mapping) = (GUARDED, GUARDED_MAPPING);
    let (relay, far_url) = Relay::to(&db);
    let far = node_leased(&far_url, "far", "", shared.path(), programs, mapping, "4s");
    let id = send(&far, r#"{"kind":"guarded"}"#).remove(0);
    eventually("the task to start on far", Duration::from_secs(10), || {
        runs(shared.path()).iter().any(|r| r.0 == "start" && r.2 == "far")
    });
    let near = node(&db, "near", "", shared.path(), programs, mapping);
    relay.silent.store(true, Ordering::SeqCst);
    let done = wait_final(&near, std::slice::from_ref(&id), Duration::from_secs(40)).remove(0);
    let lines = runs(shared.path());
    assert!(!lines.iter().any(|r| r.0 == "overlap"), "two runs at once: {lines:?}");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["node"], "near", "{done}");
    let first = &done["attempts"][0];
    assert_eq!(first["status"], "interrupted", "{done}");
    // far's run was stopped, not left to its 120 s: it never ended by itself.
    let starts: Vec<&str> = lines.iter().filter(|r| r.0 == "start").map(|r| r.2.as_str()).collect();
    assert_eq!(starts, ["far", "near"], "{lines:?}");
    assert!(!lines.iter().any(|r| r.0 == "end" && r.2 == "far"), "{lines:?}");
    assert!(
        far.logs().contains("must never run twice at once are stopped"),
        "{}",
        far.logs()
    );
    // Back, far finds its work taken over and shows the cluster's outcome.
    relay.silent.store(false, Ordering::SeqCst);
    eventually("far to show the taker's outcome", Duration::from_secs(40), || {
        task(&far, &id)["status"] == "succeeded"
    });
}

/// A daemon killed outright leaves its handlers running where no other
/// node can see them. Restarted at once under its name (as systemd does),
/// it stops those whose tasks must never run twice before it even tries to
/// join (the crashed run's lease still holds the name, so the join is
/// refused): the node that takes that run's work over never runs the task
/// beside the old handler.
#[test]
fn a_node_restarted_at_once_after_a_crash_stops_its_keyed_handler_before_another_runs_it() {
    let Some((_one, db, shared)) = fresh() else { return };
    let (programs, mapping) = (GUARDED, GUARDED_MAPPING);
    let mut a = node_leased(&db.url(), "n1", "", shared.path(), programs, mapping, "4s");
    let id = send(&a, r#"{"kind":"guarded"}"#).remove(0);
    eventually("the task to start on n1", Duration::from_secs(10), || {
        runs(shared.path()).iter().any(|r| r.0 == "start" && r.2 == "n1")
    });
    let b = node(&db, "n2", "", shared.path(), programs, mapping);
    a.kill9();
    let err = serve_refused(
        &a.path("webhook.yaml"),
        &[("RUST_LOG", "info"), ("HOOKRUNNER_NODE_NAME", "n1")],
    )
    .unwrap_or_else(|e| panic!("the restart was not refused: {e}"));
    assert!(err.contains("node name `n1` is in use by a live node"), "{err}");
    assert!(err.contains("left running when its daemon died is stopped"), "{err}");
    let done = wait_final(&b, std::slice::from_ref(&id), Duration::from_secs(40)).remove(0);
    let lines = runs(shared.path());
    assert!(!lines.iter().any(|r| r.0 == "overlap"), "two runs at once: {lines:?}");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["node"], "n2", "{done}");
    let starts: Vec<&str> = lines.iter().filter(|r| r.0 == "start").map(|r| r.2.as_str()).collect();
    assert_eq!(starts, ["n1", "n2"], "{lines:?}");
    assert!(!lines.iter().any(|r| r.0 == "end" && r.2 == "n1"), "{lines:?}");
}

/// A path to the database that goes away for most of half a lease, right
/// after a heartbeat was taken, taking with it what the open connections
/// send, does not fence: the heartbeat that gets no answer is given up
/// after a fifth of the lease and tried again, on a new connection, every
/// twentieth, so one is taken soon after the path is back, long before
/// 70 % of the lease. The keyed task runs on untouched.
#[test]
fn a_path_to_the_database_lost_for_half_a_lease_does_not_stop_a_nodes_keyed_task() {
    let Some((_one, db, shared)) = fresh() else { return };
    let (relay, url) = Relay::to(&db);
    let n = node_leased(&url, "n1", "", shared.path(), GUARDED, GUARDED_MAPPING, "4s");
    let id = send(&n, r#"{"kind":"guarded"}"#).remove(0);
    eventually("the task to start", Duration::from_secs(10), || {
        runs(shared.path()).iter().any(|r| r.0 == "start")
    });
    let beat = || db.query("SELECT heartbeat_ms FROM nodes WHERE name = 'n1'");
    let before = beat();
    eventually("a heartbeat", Duration::from_secs(5), || beat() != before);
    relay.blackhole.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1800));
    relay.blackhole.store(false, Ordering::SeqCst);
    let during = beat();
    eventually("a heartbeat after the outage", Duration::from_secs(5), || {
        beat() != during
    });
    // Past where a fence would have come.
    std::thread::sleep(Duration::from_secs(2));
    let t = task(&n, &id);
    assert_eq!(t["status"], "running", "{t}");
    assert_eq!(t["attempt"], 1, "{t}");
    assert!(
        !n.logs().contains("must never run twice at once are stopped"),
        "{}",
        n.logs()
    );
    let lines = runs(shared.path());
    assert_eq!(lines.iter().filter(|r| r.0 == "start").count(), 1, "{lines:?}");
}

/// A second daemon started under a live node's name, from another path (a
/// new build run by hand beside the installed one), is refused, and leaves
/// the live node's handlers alone: their parent is a hookrunner, alive.
#[test]
fn a_second_daemon_under_a_live_nodes_name_leaves_its_handlers_alone() {
    let Some((_one, db, shared)) = fresh() else { return };
    let a = node_leased(&db.url(), "n1", "", shared.path(), GUARDED, GUARDED_MAPPING, "4s");
    let id = send(&a, r#"{"kind":"guarded"}"#).remove(0);
    eventually("the task to start", Duration::from_secs(10), || {
        runs(shared.path()).iter().any(|r| r.0 == "start")
    });
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("hookrunner");
    std::fs::copy(BIN, &copy).unwrap();
    let err = serve_refused_as(
        &copy,
        &a.path("webhook.yaml"),
        &[("RUST_LOG", "info"), ("HOOKRUNNER_NODE_NAME", "n1")],
    )
    .unwrap_or_else(|e| panic!("the second daemon was not refused: {e}"));
    assert!(err.contains("node name `n1` is in use by a live node"), "{err}");
    assert!(!err.contains("left running when its daemon died"), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    let t = task(&a, &id);
    assert_eq!(t["status"], "running", "{t}");
    assert_eq!(t["attempt"], 1, "{t}");
}

/// The node cannot tell its own link down from the database down: after
/// most of a lease without a heartbeat it stops the tasks that must never
/// run twice, even with no other node to take them over. Back before
/// anyone took over, it writes their ends itself: `interrupted`, or run
/// again with `on_interrupt: rerun`; other tasks ran through the outage.
#[test]
fn a_lone_node_fenced_by_an_outage_writes_the_ends_itself_and_runs_the_rest_through() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs = &(GUARDED.to_string()
        + "  limited:\n    command: handlers/stamp.sh\n    max_concurrent: 1\n    env: {OUT_FILE: $SHARED/limited, SLEEP: \"120\"}\n  plain:\n    command: handlers/stamp.sh\n    env: {OUT_FILE: $SHARED/plain, SLEEP: \"5\"}\n");
    let mapping =
        &(GUARDED_MAPPING.to_string() + "\n    limited: {rules: [{run: limited}]}\n    plain: {rules: [{run: plain}]}");
    let (relay, url) = Relay::to(&db);
    // Room for the three at once.
    let config = node_config(&url, shared.path(), programs, mapping, "2s")
        .replace("tasks:\n  max_concurrent: 2\n", "tasks:\n  max_concurrent: 3\n");
    assert!(config.contains("max_concurrent: 3"));
    let n = start_node(&config, "alone", "");
    let ids: Vec<String> = ["guarded", "limited", "plain"]
        .iter()
        .map(|k| send(&n, &format!(r#"{{"kind":"{k}"}}"#)).remove(0))
        .collect();
    eventually("the three to run", Duration::from_secs(10), || {
        ids.iter().all(|id| task(&n, id)["status"] == "running")
    });
    relay.silent.store(true, Ordering::SeqCst);
    eventually("the fence", Duration::from_secs(10), || {
        n.logs().contains("must never run twice at once are stopped")
    });
    std::thread::sleep(Duration::from_secs(1));
    relay.silent.store(false, Ordering::SeqCst);
    let done = wait_final(&n, &ids, Duration::from_secs(40));
    let (guarded, limited, plain) = (&done[0], &done[1], &done[2]);
    assert_eq!(guarded["status"], "succeeded", "run again: {guarded}");
    assert_eq!(guarded["attempts"][0]["status"], "interrupted", "{guarded}");
    assert!(
        guarded["attempts"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("could not reach the database")),
        "{guarded}"
    );
    assert_eq!(limited["status"], "interrupted", "{limited}");
    assert!(
        limited["error"]
            .as_str()
            .is_some_and(|e| e.contains("could not reach the database")),
        "{limited}"
    );
    assert_eq!(plain["status"], "succeeded", "ran through the outage: {plain}");
    assert_eq!(plain["attempt"], 1, "{plain}");
    assert!(!n.logs().contains("taken over"), "{}", n.logs());
    // What the node wrote is what the database holds: another node shows it.
    let other = node(&db, "other", "", shared.path(), programs, mapping);
    for (id, status) in ids.iter().zip(["succeeded", "interrupted", "succeeded"]) {
        assert_eq!(task(&other, id)["status"], status);
    }
}

#[test]
fn a_schema_version_that_is_missing_or_not_a_number_is_named_not_migrated_over() {
    let Some((_one, db, shared)) = fresh() else { return };
    let mut n = node(&db, "n1", "", shared.path(), STAMP, STAMP_MAPPING);
    let id = send(&n, r#"{"kind":"work"}"#).remove(0);
    wait_final(&n, std::slice::from_ref(&id), Duration::from_secs(20));
    n.terminate();
    let config = n.path("webhook.yaml");
    for (damage, says) in [
        (
            "UPDATE hookrunner_meta SET value = 'abc' WHERE key = 'schema_version'",
            "is `abc`, which is not a version number",
        ),
        (
            "UPDATE hookrunner_meta SET value = '-1' WHERE key = 'schema_version'",
            "is `-1`, which is not a version number",
        ),
        (
            "UPDATE hookrunner_meta SET value = '0' WHERE key = 'schema_version'",
            "is 0 (no schema), but the database has a `tasks` table",
        ),
        (
            "DELETE FROM hookrunner_meta WHERE key = 'schema_version'",
            "no `schema_version` row in `hookrunner_meta`",
        ),
        ("DROP TABLE hookrunner_meta", "no `hookrunner_meta` table"),
    ] {
        db.query(damage);
        let check = std::process::Command::new(BIN)
            .args(["db", "check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(!check.status.success(), "{damage}: {said}");
        assert!(said.contains(says), "{damage}: {said}");
        let err = serve_refused(&config, &[]).unwrap_or_else(|e| panic!("{damage}: serve started: {e}"));
        assert!(err.contains(says), "{damage}: {err}");
        // Put it back for the next kind of damage.
        db.query("CREATE TABLE IF NOT EXISTS hookrunner_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
        db.query(
            "INSERT INTO hookrunner_meta VALUES ('schema_version', '2') ON CONFLICT (key) DO UPDATE SET value = '2'",
        );
    }
}

#[test]
fn a_keys_queued_tasks_start_in_the_order_they_were_accepted_across_nodes() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs = r#"
  work:
    command: handlers/stamp.sh
    concurrency_key: "z"
    on_busy: queue
    env: {OUT_FILE: $SHARED/runs, SLEEP: "0.02"}
"#;
    let nodes: Vec<Daemon> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| node(&db, n, "", shared.path(), programs, STAMP_MAPPING))
        .collect();
    // One after another, each answered before the next is sent, over all
    // three nodes: the order of acceptance is the order of these ids.
    let ids: Vec<String> = (0..60)
        .flat_map(|i| send(&nodes[i % 3], r#"{"kind":"work"}"#))
        .collect();
    assert_eq!(ids.len(), 60);
    for t in wait_final(&nodes[0], &ids, Duration::from_secs(120)) {
        assert_eq!(t["status"], "succeeded", "{t}");
    }
    let started: Vec<String> = runs(shared.path())
        .into_iter()
        .filter(|r| r.0 == "start")
        .map(|r| r.1)
        .collect();
    assert_eq!(
        started, ids,
        "the key's tasks started out of the order they were accepted in"
    );
}

#[test]
fn a_takeover_by_a_node_lacking_the_program_follows_the_programs_on_interrupt() {
    let Some((_one, db, shared)) = fresh() else { return };
    let newer = format!(
        "{STAMP}  fresh:\n    command: handlers/stamp.sh\n    on_interrupt: rerun\n    env: {{OUT_FILE: $SHARED/runs, SLEEP: \"30\"}}\n  marked:\n    command: handlers/stamp.sh\n    env: {{OUT_FILE: $SHARED/runs, SLEEP: \"30\"}}\n"
    );
    let mappings =
        format!("{STAMP_MAPPING}\n    fresh: {{rules: [{{run: fresh}}]}}\n    marked: {{rules: [{{run: marked}}]}}");
    let mut new = node(&db, "new", "", shared.path(), &newer, &mappings);
    let fresh = send(&new, r#"{"kind":"fresh"}"#).remove(0);
    let marked = send(&new, r#"{"kind":"marked"}"#).remove(0);
    eventually("both to run on new", Duration::from_secs(10), || {
        task(&new, &fresh)["status"] == "running" && task(&new, &marked)["status"] == "running"
    });
    // The only other node has an older config, without either program.
    let old = node(&db, "old", "", shared.path(), STAMP, STAMP_MAPPING);
    new.kill9();
    eventually("old to take new's work over", Duration::from_secs(30), || {
        task(&old, &marked)["status"] == "interrupted"
    });
    // `rerun`: queued again for a node that has the program (none is alive).
    let t = task(&old, &fresh);
    assert_eq!(
        (t["status"].as_str(), t["attempt"].as_u64()),
        (Some("queued"), Some(2)),
        "{t}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(task(&old, &fresh)["status"], "queued");
    // A node with it comes back and runs it.
    let back = node(
        &db,
        "back",
        "",
        shared.path(),
        &newer.replace("SLEEP: \"30\"", "SLEEP: \"0.1\""),
        &mappings,
    );
    let done = wait_final(&back, std::slice::from_ref(&fresh), Duration::from_secs(30));
    assert_eq!(done[0]["status"], "succeeded", "{}", done[0]);
    assert_eq!(done[0]["node"], "back");
}

/// The first of `ids` seen running.
fn wait_running(d: &Daemon, ids: &[String], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(id) = ids.iter().find(|id| task(d, id)["status"] == "running") {
            return id.clone();
        }
        assert!(Instant::now() < deadline, "none of {ids:?} started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_fan_out_deliverys_tasks_share_a_key_one_node_at_a_time_and_never_replace_each_other() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs = r#"
  deploy:
    command: handlers/stamp.sh
    run_on: [web]
    fan_out: true
    params: [k]
    concurrency_key: "{k}"
    on_busy: replace
    env: {OUT_FILE: $SHARED/runs, FIRST_SLEEP: "2", SLEEP: "0.2"}
"#;
    let mapping = "    deploy: {params: {k: payload.k}, rules: [{run: deploy}]}";
    let nodes: Vec<Daemon> = ["n1", "n2"]
        .iter()
        .map(|n| node(&db, n, "web", shared.path(), programs, mapping))
        .collect();
    let first = send(&nodes[0], r#"{"kind":"deploy","k":"site"}"#);
    assert_eq!(first.len(), 2, "one task per web node");
    // The key is the site's across the cluster: one node deploys, the other waits.
    let running = wait_running(&nodes[0], &first, Duration::from_secs(30));
    let waiting = first.iter().find(|id| **id != running).unwrap().clone();
    let second = send(&nodes[1], r#"{"kind":"deploy","k":"site"}"#);
    assert_eq!(second.len(), 2);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    let done: HashMap<String, Value> = wait_final(&nodes[0], &all, Duration::from_secs(60))
        .into_iter()
        .map(|t| (t["id"].as_str().unwrap().to_string(), t))
        .collect();
    assert_eq!(done[&running]["status"], "succeeded", "{}", done[&running]);
    // The newer delivery's task for the waiting one's node replaced it ...
    let node_of = |id: &str| done[id]["pinned_node"].as_str().unwrap().to_string();
    let by = second.iter().find(|id| node_of(id) == node_of(&waiting)).unwrap();
    assert_eq!(done[&waiting]["status"], "cancelled", "{}", done[&waiting]);
    assert_eq!(done[&waiting]["error"], format!("superseded by {by}"));
    // ... and its tasks, one per node, both ran: neither replaced the other.
    for id in &second {
        assert_eq!(done[id]["status"], "succeeded", "{}", done[id]);
    }
    // Never two at once: each start comes after the previous end.
    let runs = runs(shared.path());
    let mut open = 0;
    for r in &runs {
        open += if r.0 == "start" { 1 } else { -1 };
        assert!(open <= 1, "{runs:?}");
    }
    assert_eq!(runs.len(), 6, "{runs:?}");
}

#[test]
fn a_claim_supersedes_what_the_node_that_queued_a_newer_task_left_behind() {
    let Some((_one, db, shared)) = fresh() else { return };
    // Node `a` accepts but cannot run the program (no label x), and its
    // config queues (an older config): what it queues is never superseded
    // by it, as if it had died just after each `202`.
    let program = |on_busy: &str| {
        format!(
            "\n  keyed:\n    command: handlers/stamp.sh\n    params: [k]\n    run_on: [x]\n    concurrency_key: \"{{k}}\"\n    on_busy: {on_busy}\n    env: {{OUT_FILE: $SHARED/runs, FIRST_SLEEP: \"30\", SLEEP: \"0.2\"}}\n"
        )
    };
    let a = node(&db, "a", "", shared.path(), &program("queue"), KEYED_MAPPING);
    let older = send(&a, r#"{"kind":"keyed","k":"same"}"#);
    let newer = send(&a, r#"{"kind":"keyed","k":"same"}"#);
    assert_eq!(task(&a, &older[0])["status"], "queued");
    // The node that may run it replaces: the older task never starts.
    let b = node(&db, "b", "x", shared.path(), &program("cancel_running"), KEYED_MAPPING);
    let gone = wait_final(&b, &older, Duration::from_secs(20));
    assert_eq!(gone[0]["status"], "cancelled", "{}", gone[0]);
    assert_eq!(gone[0]["error"], format!("superseded by {}", newer[0]));
    assert_eq!(wait_running(&b, &newer, Duration::from_secs(20)), newer[0]);
    // A newer task still stops the running one (`cancel_running`), though
    // the node that queued it never asked.
    let newest = send(&a, r#"{"kind":"keyed","k":"same"}"#);
    let done = wait_final(&b, &[newer[0].clone(), newest[0].clone()], Duration::from_secs(20));
    assert_eq!(done[0]["status"], "cancelled", "{}", done[0]);
    assert_eq!(done[0]["error"], format!("superseded by {}", newest[0]));
    assert_eq!(done[1]["status"], "succeeded", "{}", done[1]);
    let runs = runs(shared.path());
    assert!(!runs.iter().any(|r| r.1 == older[0]), "{runs:?}");
}

#[test]
fn callbacks_a_node_lacking_the_program_took_over_are_sent_by_a_node_that_has_it() {
    let Some((_one, db, shared)) = fresh() else { return };
    // No answer to the first request (its sender dies waiting), then 200.
    let (cb_url, received) = callback_receiver(|n| if n == 0 { 0 } else { 200 });
    let newer = format!(
        r#"{STAMP}
  told:
    command: handlers/stamp.sh
    env: {{OUT_FILE: $SHARED/runs, SLEEP: "0"}}
    on_finish: [{{url: "{cb_url}", attempts: 3, backoff: 6s}}]
  marked:
    command: handlers/stamp.sh
    env: {{OUT_FILE: $SHARED/runs, SLEEP: "30"}}
    on_finish: [{{url: "{cb_url}", when: [interrupted]}}]
"#
    );
    let mappings =
        format!("{STAMP_MAPPING}\n    told: {{rules: [{{run: told}}]}}\n    marked: {{rules: [{{run: marked}}]}}");
    let mut new = node(&db, "new", "", shared.path(), &newer, &mappings);
    let told = send(&new, r#"{"kind":"told"}"#).remove(0);
    let marked = send(&new, r#"{"kind":"marked"}"#).remove(0);
    eventually(
        "told's callback to be on its way and marked to run",
        Duration::from_secs(15),
        || received.lock().unwrap().len() == 1 && task(&new, &marked)["status"] == "running",
    );
    // The only other node has an older config, without either program: it
    // takes the work over but cannot send what it does not know.
    let old = node(&db, "old", "", shared.path(), STAMP, STAMP_MAPPING);
    new.kill9();
    eventually("old to take new's work over", Duration::from_secs(30), || {
        task(&old, &marked)["status"] == "interrupted"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(received.lock().unwrap().len(), 1, "old sent a callback it cannot know");
    assert_eq!(task(&old, &told)["callbacks"][0]["status"], "pending");
    // A node with the programs comes back: it sends both.
    let back = node(&db, "back", "", shared.path(), &newer, &mappings);
    eventually("both callbacks delivered", Duration::from_secs(30), || {
        task(&back, &told)["callbacks"][0]["status"] == "delivered"
            && task(&back, &marked)["callbacks"][0]["status"] == "delivered"
    });
    let bodies: Vec<Value> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_str(body).unwrap())
        .collect();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    let of = |id: &str| bodies.iter().filter(|b| b.to_string().contains(id)).count();
    assert_eq!((of(&told), of(&marked)), (2, 1), "{bodies:?}");
    assert!(
        bodies.iter().any(|b| b.to_string().contains("interrupted")),
        "{bodies:?}"
    );
    assert!(!old.logs().contains("panicked") && !back.logs().contains("panicked"));
}

#[test]
fn callbacks_survive_the_death_of_each_node_that_took_them_over_in_turn() {
    let Some((_one, db, shared)) = fresh() else { return };
    // No answer to the first request (its sender dies waiting), a 500 to
    // the second (its sender dies during the backoff), then 200.
    let (cb_url, received) = callback_receiver(|n| match n {
        0 => 0,
        1 => 500,
        _ => 200,
    });
    let programs = format!(
        r#"
  told:
    command: handlers/stamp.sh
    env: {{OUT_FILE: $SHARED/runs, SLEEP: "0"}}
    on_finish: [{{url: "{cb_url}", attempts: 5, backoff: 8s}}]
"#
    );
    let mapping = "    told: {rules: [{run: told}]}";
    let mut first = node(&db, "n1", "", shared.path(), &programs, mapping);
    let told = send(&first, r#"{"kind":"told"}"#).remove(0);
    eventually("the first attempt on its way", Duration::from_secs(15), || {
        received.lock().unwrap().len() == 1
    });
    first.kill9();
    let mut second = node(&db, "n2", "", shared.path(), &programs, mapping);
    eventually("n2's attempt answered 500 and written", Duration::from_secs(30), || {
        received.lock().unwrap().len() == 2 && task(&second, &told)["callbacks"][0]["attempts"].as_u64() >= Some(1)
    });
    second.kill9();
    let third = node(&db, "n3", "", shared.path(), &programs, mapping);
    eventually("n3 to deliver it", Duration::from_secs(40), || {
        task(&third, &told)["callbacks"][0]["status"] == "delivered"
    });
    assert_eq!(received.lock().unwrap().len(), 3);
}

#[test]
fn a_copied_history_has_its_interrupted_tasks_callbacks_sent_by_the_cluster() {
    let Some((_one, db, shared)) = fresh() else { return };
    let (cb_url, received) = callback_receiver(|_| 200);
    let programs = format!(
        "\n  long:\n    command: handlers/stamp.sh\n    env: {{OUT_FILE: {}/runs, SLEEP: \"30\"}}\n    on_finish: [{{url: \"{cb_url}\", when: [interrupted]}}]\n",
        shared.path().display()
    );
    let mapping = "    long: {rules: [{run: long}]}";
    let single = format!(
        "state:\n  path: $DIR/state/hookrunner.db\nsources:\n  a: {{provider: generic, auth: none, event: {{field: kind}}}}\nprograms:{programs}mappings:\n  a:\n{mapping}\n"
    );
    let mut one = Daemon::start(&single);
    let id = send(&one, r#"{"kind":"long"}"#).remove(0);
    // Running on disk (the answer may come before the write): what the
    // crash leaves for the copy.
    eventually("the task to be running in the store", Duration::from_secs(30), || {
        rusqlite::Connection::open_with_flags(
            one.path("state/hookrunner.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|c| {
            c.query_row("SELECT status FROM tasks WHERE id = ?1", [&id], |r| {
                r.get::<_, String>(0)
            })
        })
        .is_ok_and(|s| s == "running")
    });
    one.kill9();
    let out = std::process::Command::new(BIN)
        .args(["db", "copy", "--from"])
        .arg(one.path("state/hookrunner.db"))
        .args(["--to", &db.url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(received.lock().unwrap().is_empty());
    let node = node(&db, "n1", "", shared.path(), &programs, mapping);
    eventually("the interrupted task's callback", Duration::from_secs(30), || {
        task(&node, &id)["callbacks"][0]["status"] == "delivered"
    });
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_str(&got[0].1).unwrap();
    assert!(
        body.to_string().contains("interrupted") && body.to_string().contains(&id),
        "{body}"
    );
}

#[test]
fn a_retry_waiting_out_its_backoff_cancelled_through_another_node_never_runs() {
    let Some((_one, db, shared)) = fresh() else { return };
    let (cb_url, received) = callback_receiver(|_| 200);
    let programs = format!(
        r#"
  flaky:
    command: handlers/attempts.sh
    retry: {{attempts: 3, backoff: 3s}}
    env: {{COUNT_FILE: $SHARED/count, SUCCEED_ON: "2"}}
    on_finish: [{{url: "{cb_url}"}}]
"#
    );
    let mapping = "    flaky: {rules: [{run: flaky}]}";
    let a = node(&db, "na", "", shared.path(), &programs, mapping);
    let b = node(&db, "nb", "", shared.path(), &programs, mapping);
    let id = send(&a, r#"{"kind":"flaky"}"#).remove(0);
    eventually(
        "attempt 1 to fail and the task to wait",
        Duration::from_secs(15),
        || {
            let t = task(&a, &id);
            t["status"] == "queued" && t["attempts"].as_array().is_some_and(|a| a.len() == 1)
        },
    );
    let r = b.post(&format!("/tasks/{id}/cancel"), &[], b"");
    assert!(r.status < 300, "{}", r.text);
    // Past the backoff: still cancelled, attempt 2 never ran, one callback.
    std::thread::sleep(Duration::from_secs(5));
    let t = task(&a, &id);
    assert_eq!(t["status"], "cancelled", "{t}");
    assert_eq!(
        std::fs::read_to_string(shared.path().join("count")).unwrap().trim(),
        "1"
    );
    eventually("the cancel's callback", Duration::from_secs(10), || {
        received.lock().unwrap().len() == 1
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(received.lock().unwrap().len(), 1);
}

/// A claim that committed while its answer was lost (the connection dropped
/// at that moment) leaves a row running under a node that does not know
/// it: the node puts it back within a few leases, and it runs.
#[test]
fn a_task_claimed_without_the_node_learning_it_goes_back_to_the_queue_and_runs() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs = r#"
  hold:
    command: [/bin/sleep, "60"]
  work:
    command: handlers/stamp.sh
    env: {OUT_FILE: $SHARED/runs, SLEEP: "0"}
"#;
    let mapping = "    hold: {rules: [{run: hold}]}\n    work: {rules: [{run: work}]}";
    let a = node(&db, "na", "", shared.path(), programs, mapping);
    // Both of the node's slots taken: the next task waits in the queue.
    let holds: Vec<String> = (0..2).flat_map(|_| send(&a, r#"{"kind":"hold"}"#)).collect();
    eventually("both holds running", Duration::from_secs(15), || {
        holds.iter().all(|id| task(&a, id)["status"] == "running")
    });
    let id = send(&a, r#"{"kind":"work"}"#).remove(0);
    assert_eq!(task(&a, &id)["status"], "queued");
    // What a claim whose answer was lost leaves: the row running under the
    // node, under a claim the node never heard of.
    let changed = db.query(&format!(
        "UPDATE tasks SET status = 'running', node = 'na', claim = gen_random_uuid() WHERE id = '{id}' AND status = 'queued' RETURNING 1"
    ));
    assert!(changed.contains("UPDATE 1"), "{changed}");
    // A slot frees up; the task runs once the node has put it back.
    let r = a.post(&format!("/tasks/{}/cancel", holds[0]), &[], b"");
    assert!(r.status < 300, "{}", r.text);
    let done = wait_final(&a, std::slice::from_ref(&id), Duration::from_secs(30));
    assert_eq!(done[0]["status"], "succeeded", "{}", done[0]);
    let started: Vec<_> = runs(shared.path())
        .into_iter()
        .filter(|(kind, task, node, _)| kind == "start" && task == &id && node == "na")
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    let logs = a.logs();
    assert_eq!(logs.matches("go back to the queue").count(), 1, "{logs}");
}

/// A node that died after spawning a handler but before recording its pid
/// does not run the task again at its own next start (`on_interrupt: mark`):
/// the attempt's output files say the handler was started there.
#[test]
fn a_nodes_own_restart_does_not_run_again_a_task_whose_start_it_did_not_record() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs = r#"
  work:
    command: handlers/stamp.sh
    env: {OUT_FILE: $SHARED/runs, SLEEP: "0"}
"#;
    let mut a = node(&db, "na", "", shared.path(), programs, STAMP_MAPPING);
    let id = send(&a, r#"{"kind":"work"}"#).remove(0);
    let done = wait_final(&a, std::slice::from_ref(&id), Duration::from_secs(15));
    assert_eq!(done[0]["status"], "succeeded", "{}", done[0]);
    a.kill9();
    // What a crash between the spawn and the write of its pid leaves: the
    // row running under the node, its start not recorded.
    let changed = db.query(&format!(
        r#"UPDATE tasks SET status = 'running', finished_ms = NULL,
             record = jsonb_set(record::jsonb, '{{state}}', '{{"state": "running", "started_ms": 1, "pid": null}}')::text
           WHERE id = '{id}'"#
    ));
    assert!(changed.contains("UPDATE 1"), "{changed}");
    std::thread::sleep(Duration::from_secs(3));
    a.restart();
    let done = wait_final(&a, std::slice::from_ref(&id), Duration::from_secs(15));
    assert_eq!(done[0]["status"], "interrupted", "{}", done[0]);
    std::thread::sleep(Duration::from_secs(1));
    let started = runs(shared.path())
        .iter()
        .filter(|r| r.0 == "start" && r.1 == id)
        .count();
    assert_eq!(started, 1, "the handler ran once");
}

/// Two nodes started at once under one name never used before: one joins,
/// the other refuses to start (the name is in use), every time.
#[test]
fn two_nodes_starting_at_once_under_one_new_name_do_not_both_join() {
    let Some((_one, db, shared)) = fresh() else { return };
    let config = shared.path().join("webhook.yaml");
    std::fs::write(
        &config,
        format!(
            "state:\n  postgres: {}\nnode:\n  lease: 2s\nsources:\n  a: {{provider: generic, auth: none}}\n",
            db.url()
        ),
    )
    .unwrap();
    for round in 0..4 {
        let name = format!("twin-{round}");
        let mut twins: Vec<std::process::Child> = (0..2)
            .map(|_| {
                std::process::Command::new(BIN)
                    .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                    .arg(&config)
                    .env("HOOKRUNNER_NODE_NAME", &name)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // The one refused exits within a few seconds; the other runs on.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut exited = Vec::new();
        while exited.is_empty() && Instant::now() < deadline {
            for (i, t) in twins.iter_mut().enumerate() {
                if let Some(status) = t.try_wait().unwrap() {
                    exited.push((i, status));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(1));
        for (i, t) in twins.iter_mut().enumerate() {
            if !exited.iter().any(|(j, _)| *j == i) {
                if let Some(status) = t.try_wait().unwrap() {
                    exited.push((i, status));
                }
            }
        }
        assert_eq!(
            exited.len(),
            1,
            "round {round}: exactly one of the two stops: {exited:?}"
        );
        let (i, status) = exited[0];
        assert!(!status.success());
        let mut err = String::new();
        std::io::Read::read_to_string(twins[i].stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(
            err.contains(&format!("node name `{name}` is in use by a live node")),
            "{err}"
        );
        for t in &mut twins {
            let _ = t.kill();
            let _ = t.wait();
        }
    }
}

/// A key's `fan_out` tasks run in the order of their deliveries across the
/// nodes: a node never takes its task of a newer delivery while the older
/// delivery's task for another node still waits for the key.
#[test]
fn a_keys_fan_out_tasks_run_delivery_by_delivery_across_nodes() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs = r#"
  roll:
    command: handlers/stamp.sh
    run_on: [web]
    fan_out: true
    params: [k]
    concurrency_key: "{k}"
    env: {OUT_FILE: $SHARED/runs, SLEEP: "0.3"}
"#;
    let mapping = "    roll: {params: {k: payload.k}, rules: [{run: roll}]}";
    let nodes: Vec<Daemon> = ["n1", "n2"]
        .iter()
        .map(|n| node(&db, n, "web", shared.path(), programs, mapping))
        .collect();
    let deliveries: Vec<Vec<String>> = (0..3)
        .map(|_| {
            let ids = send(&nodes[0], r#"{"kind":"roll","k":"site"}"#);
            assert_eq!(ids.len(), 2, "one task per web node");
            ids
        })
        .collect();
    let all: Vec<String> = deliveries.concat();
    for t in wait_final(&nodes[0], &all, Duration::from_secs(60)) {
        assert_eq!(t["status"], "succeeded", "{t}");
    }
    let delivery_of = |id: &str| deliveries.iter().position(|d| d.iter().any(|t| t == id)).unwrap();
    let order: Vec<usize> = runs(shared.path())
        .iter()
        .filter(|r| r.0 == "start")
        .map(|r| delivery_of(&r.1))
        .collect();
    assert_eq!(order, [0, 0, 1, 1, 2, 2], "{:?}", runs(shared.path()));
}

/// Text a PostgreSQL column cannot hold as it is (a NUL, which `TEXT`
/// refuses; a value past what an index entry may be) comes in a delivery:
/// it is stored, found by the filters, and never stops the store writing
/// what comes after it (it once failed every later write, answered 503).
#[test]
fn text_a_database_column_cannot_hold_is_stored_found_and_blocks_nothing() {
    let Some((_one, db, shared)) = fresh() else { return };
    let programs = keyed("", "0");
    let d = node(&db, "n1", "", shared.path(), &programs, KEYED_MAPPING);
    // Incompressible (PostgreSQL compresses an index entry before it judges its size).
    let mut x: u64 = 1;
    let long: String = (0..3000)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            char::from_digit((x >> 60) as u32, 16).unwrap()
        })
        .collect();

    // A stranger's: an unknown source whose name has a NUL.
    assert_eq!(d.post_json("/hooks/x%00y", &[], b"{}").status, 404);
    // A sender's: an event with a NUL, and a long one (no rule matches either).
    assert_eq!(d.post_json("/hooks/a", &[], br#"{"kind":"a\u0000b"}"#).status, 200);
    let long_event = format!(r#"{{"kind":"{long}"}}"#);
    assert_eq!(d.post_json("/hooks/a", &[], long_event.as_bytes()).status, 200);
    // A task whose concurrency key is longer than an index entry may be.
    let long_key = send(&d, &format!(r#"{{"kind":"keyed","k":"{long}"}}"#));
    let short_key = send(&d, r#"{"kind":"keyed","k":"short"}"#);
    assert_eq!((long_key.len(), short_key.len()), (1, 1));
    for t in wait_final(
        &d,
        &[long_key[0].clone(), short_key[0].clone()],
        Duration::from_secs(20),
    ) {
        assert_eq!(t["status"], "succeeded", "{t}");
    }
    assert_eq!(d.get("/readyz").status, 200, "{}", d.get("/readyz").text);

    // Each record reads back exact, and the filters find it.
    let nul = d.get("/deliveries?event=a%00b").json();
    assert_eq!(nul["deliveries"].as_array().unwrap().len(), 1, "{nul}");
    assert_eq!(nul["deliveries"][0]["event"], "a\u{0}b");
    let stranger = d.get("/deliveries?source=x%00y").json();
    assert_eq!(stranger["deliveries"].as_array().unwrap().len(), 1, "{stranger}");
    assert_eq!(stranger["deliveries"][0]["source"], "x\u{0}y");
    let by_long = d.get(&format!("/deliveries?event={long}")).json();
    assert_eq!(by_long["deliveries"][0]["event"], long.as_str(), "{by_long}");
    let id = nul["deliveries"][0]["id"].as_str().unwrap();
    assert_eq!(d.get(&format!("/deliveries/{id}")).json()["event"], "a\u{0}b");
    assert_eq!(task(&d, &long_key[0])["params"]["k"], long.as_str());
    // And nothing was turned away after them.
    let after = send(&d, r#"{"kind":"keyed","k":"after"}"#);
    assert_eq!(
        wait_final(&d, &after, Duration::from_secs(20))[0]["status"],
        "succeeded"
    );
}
