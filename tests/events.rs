//! `GET /events`: a delivery's task and delivery events arrive in order with
//! increasing ids, output growth is announced, `Last-Event-ID` resumes after
//! an id, and the stream keeps the task API's access rule.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

const CONFIG: &str = r#"
sources:
  a:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  talk:
    command: [sh, -c, "echo one; echo two >&2; sleep 0.3; echo three"]
mappings:
  a:
    talk: {rules: [{run: talk}]}
"#;

/// One event as the stream sent it.
#[derive(Debug, Clone)]
struct Ev {
    id: u64,
    kind: String,
    data: Value,
}

/// A reader of `GET /events`.
struct Events {
    reader: BufReader<Box<dyn Read + Send + Sync>>,
}

impl Events {
    fn open(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> Events {
        let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(30)).build();
        let mut req = agent.get(&d.url(path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let resp = req.call().expect("GET /events");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.header("content-type"), Some("text/event-stream"));
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        Events {
            reader: BufReader::new(resp.into_reader()),
        }
    }

    /// The next event (comments skipped): an id, a kind and one line of JSON, nothing else.
    fn next(&mut self) -> Ev {
        let e = sse::next_event(&mut self.reader).expect("the stream ended");
        let unexpected: Vec<_> = e
            .keys()
            .filter(|k| !["id", "event", "data"].contains(&k.as_str()))
            .collect();
        assert!(unexpected.is_empty(), "unexpected fields {unexpected:?}");
        assert!(!e["data"].contains('\n'), "data is one line: {e:?}");
        Ev {
            id: e.get("id").expect("an event without an id").parse().unwrap(),
            kind: e.get("event").expect("an event without a kind").clone(),
            data: serde_json::from_str(&e["data"]).expect("data is JSON"),
        }
    }

    /// Events until `done` holds for one (included).
    fn until(&mut self, mut done: impl FnMut(&Ev) -> bool) -> Vec<Ev> {
        let mut out = Vec::new();
        loop {
            let e = self.next();
            let stop = done(&e);
            out.push(e);
            if stop {
                return out;
            }
        }
    }
}

fn of<'a>(events: &'a [Ev], kind: &str, task: &str) -> Vec<&'a Ev> {
    events
        .iter()
        .filter(|e| e.kind == kind && e.data["task"].as_str().is_none_or(|t| t == task))
        .collect()
}

/// Reads until the task finished and its delivery was recorded.
fn a_delivery(d: &Daemon, events: &mut Events) -> (String, Vec<Ev>) {
    let resp = d.post_json("/hooks/a", &[], br#"{"kind": "talk"}"#);
    let task = Daemon::task_ids(&resp).remove(0);
    let (mut finished, mut recorded) = (false, false);
    let got = events.until(|e| {
        finished |= e.kind == "task.finished" && e.data["task"] == task.as_str();
        recorded |= e.kind == "delivery.recorded" && e.data["tasks"][0] == task.as_str();
        finished && recorded
    });
    (task, got)
}

#[test]
fn a_delivery_streams_its_tasks_life_and_its_record_in_order() {
    let d = Daemon::start(CONFIG);
    let mut events = Events::open(&d, "/events", &[]);
    let (task, got) = a_delivery(&d, &mut events);
    let ids: Vec<u64> = got.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let created = of(&got, "task.created", &task);
    let started = of(&got, "task.started", &task);
    let finished = of(&got, "task.finished", &task);
    let recorded: Vec<&Ev> = got.iter().filter(|e| e.kind == "delivery.recorded").collect();
    assert_eq!(
        (created.len(), started.len(), finished.len(), recorded.len()),
        (1, 1, 1, 1),
        "{got:#?}"
    );
    let (created, started, finished, recorded) = (created[0], started[0], finished[0], recorded[0]);
    assert!(created.id < started.id && started.id < finished.id && created.id < recorded.id);

    assert_eq!(created.data["program"], "talk");
    assert_eq!(created.data["source"], "a");
    assert_eq!(created.data["status"], "queued");
    assert_eq!(created.data["delivery"], recorded.data["delivery"]);
    assert!(created.data["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(started.data["status"], "running");
    assert_eq!(started.data["attempt"], 1);
    assert_eq!(finished.data["status"], "succeeded");
    assert_eq!(finished.data["exit_code"], 0);
    assert!(finished.data["finished_at"].is_string());
    assert_eq!(recorded.data["outcome"], "accepted");
    assert_eq!(recorded.data["status"], 202);
    assert_eq!(recorded.data["source"], "a");
    // The delivery named is the one `GET /deliveries/{id}` shows.
    let delivery = recorded.data["delivery"].as_str().unwrap();
    assert_eq!(
        d.get(&format!("/deliveries/{delivery}")).json()["task_ids"][0],
        task.as_str()
    );

    // Output: announced while the task ran, and all of it before the end.
    let out = of(&got, "task.output", &task);
    let last = |stream: &str| {
        out.iter()
            .filter(|e| e.data["stream"] == stream)
            .map(|e| (e.id, e.data["bytes"].as_u64().unwrap()))
            .next_back()
    };
    let (stdout_id, stdout_bytes) = last("stdout").expect("stdout announced");
    let (_, stderr_bytes) = last("stderr").expect("stderr announced");
    assert_eq!(stdout_bytes, "one\nthree\n".len() as u64);
    assert_eq!(stderr_bytes, "two\n".len() as u64);
    assert!(started.id < stdout_id && stdout_id < finished.id);
}

#[test]
fn last_event_id_resumes_after_it_and_an_unknown_id_is_a_reset() {
    let d = Daemon::start(CONFIG);
    let mut events = Events::open(&d, "/events", &[]);
    let (_, first) = a_delivery(&d, &mut events);
    let created = first.iter().find(|e| e.kind == "task.created").unwrap().id;

    // Resumed after `created`: the kept events that follow it, in order.
    let mut resumed = Events::open(&d, "/events", &[("Last-Event-ID", &created.to_string())]);
    let again: Vec<u64> = (0..first.iter().filter(|e| e.id > created).count())
        .map(|_| resumed.next().id)
        .collect();
    let expected: Vec<u64> = first.iter().map(|e| e.id).filter(|id| *id > created).collect();
    assert_eq!(again, expected);
    // `?since=` does the same.
    let mut since = Events::open(&d, &format!("/events?since={created}"), &[]);
    assert_eq!(since.next().id, created + 1);

    // Then live events: the next delivery's, nothing twice.
    let (task, _) = a_delivery(&d, &mut events);
    let next = resumed.next();
    assert_eq!(
        (next.kind.as_str(), next.data["task"].as_str()),
        ("task.created", Some(task.as_str()))
    );
    assert!(next.id > *expected.last().unwrap());

    // An id this daemon never gave (past its newest): a reset, then live events.
    let future = (next.id + 1_000_000).to_string();
    let mut stale = Events::open(&d, "/events", &[("Last-Event-ID", &future)]);
    let reset = stale.next();
    assert_eq!(reset.kind, "reset");
    assert_eq!(reset.data["oldest"], first[0].id);
    assert!(reset.id >= next.id);

    // A bad id is a 400 with a sentence.
    let bad = d.get_with("/events", &[("Last-Event-ID", "soon")]);
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("Last-Event-ID"), "{}", bad.error());
    // A name it does not know is refused, as `/tasks` and `/deliveries` do.
    let bad = d.get("/events?sinse=5");
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.error(),
        "unknown query parameter `sinse`: `/events` takes only `since`"
    );
}

#[test]
fn an_id_from_before_a_restart_is_a_reset_not_a_resume_at_the_wrong_place() {
    let mut d = Daemon::start(CONFIG);
    let mut events = Events::open(&d, "/events", &[]);
    let mut last = 0;
    for _ in 0..3 {
        let (_, evs) = a_delivery(&d, &mut events);
        last = evs.last().unwrap().id;
    }
    drop(events);
    d.restart();
    // The new daemon gives events of its own before the client comes back.
    let mut events = Events::open(&d, "/events", &[]);
    let (task, evs) = a_delivery(&d, &mut events);
    assert!(
        evs[0].id > last,
        "ids go on growing across a restart: {} after {last}",
        evs[0].id
    );
    // The client resumes with the last id it saw from the earlier run: it
    // is told to reload, and is not handed the new run's events as if it had
    // seen the ones before.
    let mut resumed = Events::open(&d, "/events", &[("Last-Event-ID", &last.to_string())]);
    let reset = resumed.next();
    assert_eq!(reset.kind, "reset", "{reset:?}");
    assert_eq!(reset.data["oldest"], evs[0].id);
    // ...and the new run's task is there when it reloads.
    let listed = d.get("/tasks").json();
    assert!(listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == task.as_str()));
}

#[test]
fn a_delivery_that_runs_nothing_is_streamed_to_listeners() {
    let d = Daemon::start(CONFIG);
    let mut events = Events::open(&d, "/events", &[]);
    let resp = d.post_json("/hooks/a", &[], br#"{"kind": "nothing"}"#);
    assert_eq!(resp.status, 200, "{}", resp.text);
    let e = events.next();
    assert_eq!(e.kind, "delivery.recorded");
    assert_eq!(e.data["outcome"], "ignored");
    assert_eq!(e.data["tasks"], serde_json::json!([]));
    let refused = d.post_json("/hooks/nope", &[], b"{}");
    assert_eq!(refused.status, 404);
    let e = events.next();
    assert_eq!(
        (e.data["outcome"].as_str(), e.data["status"].as_u64()),
        (Some("refused"), Some(404))
    );
}

#[test]
fn with_api_tokens_the_stream_needs_one() {
    let d = Daemon::start(&CONFIG.replacen("sources:", "api:\n  tokens: [tok-1]\nsources:", 1));
    let without = d.get("/events");
    assert_eq!(without.status, 401);
    assert_eq!(without.error(), "send an API token as `Authorization: Bearer <token>`");
    let wrong = d.get_with("/events", &[("Authorization", "Bearer nope")]);
    assert_eq!(wrong.status, 401);
    let mut events = Events::open(&d, "/events", &[("Authorization", "Bearer tok-1")]);
    let resp = d.post_json("/hooks/a", &[], br#"{"kind": "talk"}"#);
    let task = Daemon::task_ids(&resp).remove(0);
    let e = events.next();
    assert_eq!(
        (e.kind.as_str(), e.data["task"].as_str()),
        ("task.created", Some(task.as_str()))
    );
    // Only GET.
    let post = d.post("/events", &[], b"");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));
}

/// `hookrunner tasks --watch ARGS` against `d`, its stdout lines on a channel.
fn watch(d: &Daemon, args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = std::process::Command::new(BIN)
        .args(["tasks", "--watch", "--url", &d.url("")])
        .args(args)
        .env_remove("HOOKRUNNER_URL")
        .env_remove("HOOKRUNNER_TOKEN")
        .env_remove("HOOKRUNNER_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Sends deliveries until `rx` shows a line naming one of their tasks; that task's id.
fn first_seen(d: &Daemon, rx: &std::sync::mpsc::Receiver<String>, seen: &mut Vec<String>) -> String {
    // The watcher connects on its own time: deliveries before that are not on its stream.
    let mut sent = Vec::new();
    for _ in 0..50 {
        let resp = d.post_json("/hooks/a", &[], br#"{"kind": "talk"}"#);
        sent.push(Daemon::task_ids(&resp).remove(0));
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            seen.push(line.clone());
            if let Some(task) = sent.iter().find(|t| line.contains(&t[..8])) {
                return task.clone();
            }
        }
    }
    panic!("tasks --watch printed no task: {seen:?}");
}

#[test]
fn tasks_watch_prints_a_line_per_task_event() {
    let d = Daemon::start(CONFIG);
    let (mut child, rx) = watch(&d, &[]);
    let mut lines = Vec::new();
    first_seen(&d, &rx, &mut lines);
    assert!(lines[0].starts_with("TIME "), "{lines:?}");
    // Connected: a new delivery's task is seen from its creation.
    let resp = d.post_json("/hooks/a", &[], br#"{"kind": "talk"}"#);
    let task = Daemon::task_ids(&resp).remove(0);
    let short = &task[..8];
    let mut statuses = Vec::new();
    let mut line = String::new();
    loop {
        if line.contains(short) {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(&cells[1..4], [short, "talk", "a"], "{line}");
            statuses.push(cells[4].to_string());
            if cells[4] == "succeeded" {
                assert_eq!(cells.get(5), Some(&"0"), "{line}");
                break;
            }
        }
        line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a line from tasks --watch");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(statuses, ["queued", "running", "succeeded"]);

    // JSON, filtered by status: only the ends.
    let (mut child, rx) = watch(&d, &["--status", "succeeded", "--json"]);
    let mut lines = Vec::new();
    let task = first_seen(&d, &rx, &mut lines);
    let _ = child.kill();
    let _ = child.wait();
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["task"], task.as_str());
    assert_eq!(last["event"], "task.finished");
    assert!(
        last["id"].as_str().is_some_and(|id| id.parse::<u64>().is_ok()),
        "{last}"
    );
    for line in &lines {
        let e: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            (e["event"].as_str(), e["status"].as_str()),
            (Some("task.finished"), Some("succeeded"))
        );
    }
}

#[test]
fn a_stopping_daemon_ends_the_stream_after_its_last_events() {
    let mut d = Daemon::start(CONFIG);
    let mut events = Events::open(&d, "/events", &[]);
    let resp = d.post_json("/hooks/a", &[], br#"{"kind": "talk"}"#);
    let task = Daemon::task_ids(&resp).remove(0);
    events.until(|e| e.kind == "task.started");
    // Stopped while the task runs: its end still comes, then the stream ends.
    signal(d.pid(), "TERM");
    events.until(|e| e.kind == "task.finished" && e.data["task"] == task.as_str());
    // A clean end of the chunked body, not a connection cut when the server gives up on it.
    let mut rest = String::new();
    events
        .reader
        .read_to_string(&mut rest)
        .expect("the stream ends cleanly");
    assert!(!rest.contains("event:"), "{rest}");
    assert_eq!(d.terminate_wait().code(), Some(0));
}

/// A stream keeps the right it was opened with only while the config in
/// force grants it: a reload that withdraws its token ends it (the events
/// stream and a task's live output alike), and leaves other streams alone.
#[test]
fn a_reload_that_withdraws_a_token_ends_the_streams_opened_with_it() {
    let config = |tokens: &str| {
        CONFIG
            .replacen("sources:", &format!("api:\n  tokens: [{tokens}]\nsources:"), 1)
            .replace("mappings:", "  quiet:\n    command: [sleep, \"30\"]\nmappings:")
            .replace(
                "talk: {rules: [{run: talk}]}",
                "talk: {rules: [{run: talk}]}\n    quiet: {rules: [{run: quiet}]}",
            )
    };
    let d = Daemon::start(&config("tok-1, tok-2"));
    let one = [("Authorization", "Bearer tok-1")];
    let two = [("Authorization", "Bearer tok-2")];
    let mut revoked = Events::open(&d, "/events", &one);
    let mut kept = Events::open(&d, "/events", &two);
    let quiet = Daemon::task_ids(&d.post_json("/hooks/a", &[], br#"{"kind": "quiet"}"#)).remove(0);
    revoked.until(|e| e.kind == "task.started" && e.data["task"] == quiet.as_str());
    kept.until(|e| e.kind == "task.started" && e.data["task"] == quiet.as_str());
    // A live output of a task that prints nothing.
    let follow = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(30))
        .build()
        .get(&d.url(&format!("/tasks/{quiet}/output?follow=1")))
        .set("Authorization", "Bearer tok-1")
        .call()
        .unwrap();
    assert_eq!(follow.status(), 200);

    std::fs::write(d.path("webhook.yaml"), config("tok-2")).unwrap();
    let r = request("POST", &d.url("/-/reload"), &two, Some(b""));
    assert_eq!(r.status, 200, "{}", r.text);
    // Both streams opened with tok-1 end, cleanly, without waiting for an event.
    let mut rest = String::new();
    revoked
        .reader
        .read_to_string(&mut rest)
        .expect("the stream ends cleanly");
    let mut output = String::new();
    follow
        .into_reader()
        .read_to_string(&mut output)
        .expect("the output stream ends cleanly");
    assert!(
        !output.contains("event: status"),
        "it ended before the task did: {output}"
    );
    d.logs_with("a reload withdrew the access it was opened with");
    // The one opened with the token still listed goes on.
    let next = Daemon::task_ids(&d.post_json("/hooks/a", &[], br#"{"kind": "talk"}"#)).remove(0);
    kept.until(|e| e.kind == "task.created" && e.data["task"] == next.as_str());
    assert_eq!(d.get_with("/events", &one).status, 401);
}
