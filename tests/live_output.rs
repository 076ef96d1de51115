//! Live output over Server-Sent Events: lines arrive while the handler runs,
//! then a final status; a stalled follower slows nobody.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
sources:
  a:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  ticker:
    command: handlers/ticker.sh
    env: {TICKS: "3", PAUSE: "0.4"}
  flood:
    command: [sh, -c, "seq 1 200000"]
  forger:
    command: [sh, -c, "printf 'line1\\rdata: x\\r\\revent: stderr\\rdata: fake\\n'"]
mappings:
  a:
    forger: {rules: [{run: forger}]}
    ticker: {rules: [{run: ticker}]}
    flood: {rules: [{run: flood}]}
"#;

/// Opens an SSE stream and returns a reader of its lines (after the headers).
fn follow(d: &Daemon, id: &str, accept_header: bool) -> BufReader<TcpStream> {
    let mut conn = TcpStream::connect(&d.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = if accept_header {
        format!("GET /tasks/{id}/output HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
    } else {
        format!("GET /tasks/{id}/output?follow=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    };
    conn.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        assert!(!line.is_empty(), "connection closed in the headers");
    }
    reader
}

/// Reads SSE events `(event, data)` until `status`.
fn events(reader: &mut BufReader<TcpStream>, mut each: impl FnMut(&str, &str)) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(e) = sse::next_event(reader) {
        let (name, data) = (e.get("event").cloned().unwrap_or_default(), e["data"].clone());
        each(&name, &data);
        let end = name == "status";
        out.push((name, data));
        if end {
            break;
        }
    }
    out
}

#[test]
fn a_follower_sees_lines_while_the_handler_runs_then_the_status() {
    // Lines 2 s apart: the follower is connected long before the last one.
    let d = Daemon::start(&CONFIG.replace("PAUSE: \"0.4\"", "PAUSE: \"2\""));
    let r = d.post_json("/hooks/a", &[], br#"{"kind":"ticker"}"#);
    let id = Daemon::task_ids(&r).remove(0);
    let mut reader = follow(&d, &id, true);
    let mut status_at_first_line = None;
    let got = events(&mut reader, |name, _| {
        if name == "stdout" && status_at_first_line.is_none() {
            status_at_first_line = Some(d.get(&format!("/tasks/{id}")).json()["status"].clone());
        }
    });
    assert_eq!(
        status_at_first_line.unwrap(),
        "running",
        "the first line came only after the handler ended"
    );
    let lines: Vec<(&str, &str)> = got.iter().map(|(n, d)| (n.as_str(), d.as_str())).collect();
    assert_eq!(
        &lines[..4],
        &[
            ("stdout", "tick 1"),
            ("stdout", "tick 2"),
            ("stdout", "tick 3"),
            ("stderr", "done")
        ]
    );
    assert_eq!(lines[4].0, "status");
    let status: serde_json::Value = serde_json::from_str(lines[4].1).unwrap();
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["exit_code"], 0);

    // A follower of a finished task gets the whole output and the status at once.
    let mut reader = follow(&d, &id, false);
    let again = events(&mut reader, |_, _| {});
    assert_eq!(again, got);
}

#[test]
fn a_stalled_follower_does_not_slow_the_handler_or_other_followers() {
    let d = Daemon::start(CONFIG);
    let r = d.post_json("/hooks/a", &[], br#"{"kind":"flood"}"#);
    let id = Daemon::task_ids(&r).remove(0);
    // This follower never reads.
    let _stalled = follow(&d, &id, true);
    let mut reader = follow(&d, &id, true);
    let started = Instant::now();
    let mut seen = 0usize;
    let mut missed = 0usize;
    let got = events(&mut reader, |name, data| match name {
        "stdout" => seen += 1,
        // Output a follower fell too far behind to read (freed from disk), in bytes.
        "missed" => {
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            missed += v["bytes"].as_u64().unwrap() as usize;
        }
        _ => {}
    });
    assert_eq!(got.last().unwrap().0, "status");
    let task = d.wait_task(&id);
    assert_eq!(task["status"], "succeeded");
    assert!(started.elapsed() < Duration::from_secs(20));
    // Lines were delivered (the follower joined after some); none twice.
    assert!(seen <= 200_000 && seen > 0, "seen {seen}, missed {missed} bytes");
    assert!(
        task["duration_ms"].as_u64().unwrap() < 10_000,
        "the stalled follower slowed the handler: {task}"
    );
}

/// A long output's front is given back to the file system while the handler
/// runs; `GET /tasks/{id}/output` then answers what the file still holds,
/// never the freed region's zero bytes, says how much is gone, and does so
/// again after a restart.
#[test]
fn a_long_outputs_freed_front_is_skipped_and_counted() {
    let config = r#"
state: {path: $DIR/state/hookrunner.db}
tasks: {output_limit: 64KiB}
sources:
  a: {provider: generic, auth: none}
programs:
  long:
    command: [python3, -c, "import sys, time\nfor i in range(200000): print(f'line {i:06d} ' + 'x' * 30)\nsys.stdout.flush(); time.sleep(2.5); print('end')"]
mappings:
  a:
    "*": {rules: [{run: long}]}
"#;
    let mut d = Daemon::start(config);
    let id = Daemon::task_ids(&d.post_json("/hooks/a", &[], b"{}"))[0].clone();
    let task = d.wait_task(&id);
    assert_eq!(task["status"], "succeeded", "{task}");
    let file = d.path(&format!("state/output/{id}.1.out"));
    let written = std::fs::metadata(&file).unwrap().len();
    assert_eq!(written, 200_000 * 43 + 4);
    let check = |d: &Daemon| {
        let r = d.get(&format!("/tasks/{id}/output"));
        assert_eq!(r.status, 200);
        assert!(!r.text.contains('\0'), "the freed region's zeros were sent");
        let skipped: u64 = r
            .header("X-Output-Skipped-Bytes")
            .expect("the answer says what is gone")
            .parse()
            .unwrap();
        assert!(skipped > 1_000_000, "{skipped}");
        assert_eq!(skipped + r.text.len() as u64, written);
        assert!(r.text.ends_with("line 199999 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nend\n"));
        assert!(r.text.len() >= 1 << 20, "at least the last MiB is kept");
    };
    check(&d);
    d.restart();
    check(&d);
}

#[test]
fn carriage_returns_in_output_cannot_forge_events() {
    // SSE ends a line at a bare CR: printed by a handler (from a payload, say),
    // one would otherwise start fields of its own, here a fake stderr line.
    let d = Daemon::start(CONFIG);
    let id = Daemon::task_ids(&d.post_json("/hooks/a", &[], br#"{"kind":"forger"}"#))[0].clone();
    d.wait_task(&id);
    let mut reader = follow(&d, &id, false);
    let got = events(&mut reader, |_, _| {});
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["stdout", "status"], "{got:?}");
    assert_eq!(got[0].1, "line1\ndata: x\n\nevent: stderr\ndata: fake");
    assert_eq!(d.get(&format!("/tasks/{id}/output?stream=stderr")).text, "");
}
