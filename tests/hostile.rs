//! Promises kept under hostile input: no credential shown, nothing accepted
//! lost, unauthenticated input shapes no metric and no log line, forwarded
//! addresses fail closed, values no process can take are refused at once,
//! output outlives a crash, and strangers cannot fill the log or kill the
//! daemon with a signal.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends a raw HTTP/1.1 request (header lines exactly as given) and returns
/// the status and the body.
fn raw(addr: &str, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = head.replace('\n', "\r\n").into_bytes();
    req.extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    s.write_all(&req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

// ------------------------------------------------------------------ URLs

const PASSWORD: &str = "pa55-w0rd-in-url";
const TOKEN: &str = "t0ken-in-query";
/// An incoming webhook's URL (Slack's, Discord's) carries its secret in the path.
const PATH_SECRET: &str = "s3cret-in-path";
/// A token written as the URL's user name, with no password.
const USER_TOKEN: &str = "T0KEN-as-user-name";

/// A callback URL with a password and a token, pointing at a port nobody
/// listens on, so every attempt fails and is logged.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://cbuser:{PASSWORD}@127.0.0.1:{port}/services/T0/{PATH_SECRET}?token={TOKEN}&x=1")
}

fn callback_config(url: &str) -> String {
    format!(
        r#"
sources:
  a: {{provider: generic, auth: none}}
programs:
  ok:
    command: handlers/append.sh
    env: {{OUT_FILE: $DIR/runs}}
    on_finish:
      - url: "{url}"
        secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
        attempts: 2
        backoff: 10ms
mappings:
  a:
    default: {{rules: [{{run: ok}}]}}
"#
    )
}

fn assert_masked(what: &str, text: &str) {
    assert!(!text.contains(PASSWORD), "{what} shows the URL's password:\n{text}");
    assert!(!text.contains(TOKEN), "{what} shows the URL's query token:\n{text}");
    assert!(!text.contains(PATH_SECRET), "{what} shows the URL's path:\n{text}");
    assert!(!text.contains(USER_TOKEN), "{what} shows the URL's user name:\n{text}");
}

fn urls_are_masked_everywhere(log_format: &str) {
    let url = dead_url();
    let port = url
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // A second callback whose user name is the credential.
    let config = callback_config(&url).replace(
        "mappings:",
        &format!(
            "      - {{url: \"http://{USER_TOKEN}@127.0.0.1:{port}/hook/{PATH_SECRET}\", attempts: 1}}\nmappings:"
        ),
    );
    let d = Daemon::with(&config)
        .env("HOOKRUNNER_LOG_FORMAT", log_format)
        .env("RUST_LOG", "debug")
        .start();
    // `?wait=` holds the answer until the task ends: the sender sees how
    // it ended, not its callbacks.
    let r = d.post_json("/hooks/a?wait=20s", &[], b"{}");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_masked("the ?wait= answer", &r.text);
    assert!(
        !r.text.contains("callbacks") && !r.text.contains("127.0.0.1"),
        "{}",
        r.text
    );
    let id = r.json()["tasks"][0]["id"].as_str().unwrap().to_string();
    let shown = d.get(&format!("/tasks/{id}")).json()["callbacks"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        shown.contains("cbuser:***@127.0.0.1") && shown.ends_with("/services/***?token=***&x=***"),
        "{shown}"
    );
    assert_eq!(
        d.get(&format!("/tasks/{id}")).json()["callbacks"][1]["url"],
        format!("http://***@127.0.0.1:{port}/hook/***")
    );
    eventually("the callbacks to fail", Duration::from_secs(20), || {
        let task = d.get(&format!("/tasks/{id}")).json();
        task["callbacks"][0]["status"] == "failed" && task["callbacks"][1]["status"] == "failed"
    });
    for path in [format!("/tasks/{id}"), "/tasks".into(), "/deliveries".into()] {
        assert_masked(&path, &d.get(&path).text);
    }
    let cli = std::process::Command::new(BIN)
        .args(["task", &id, "--url", &d.url("")])
        .output()
        .unwrap();
    assert!(cli.status.success());
    assert_masked("`hookrunner task`", &String::from_utf8_lossy(&cli.stdout));
    let logs = d.logs_with("/hook/***");
    assert!(
        logs.contains("cbuser:***@"),
        "the failed attempt names the masked URL:\n{logs}"
    );
    assert_masked("the logs", &logs);
    assert!(!logs.to_ascii_lowercase().contains("webhook-signature"), "{logs}");
}

#[test]
fn callback_urls_are_masked_in_text_logs_api_and_cli() {
    urls_are_masked_everywhere("text");
}

#[test]
fn callback_urls_are_masked_in_json_logs() {
    urls_are_masked_everywhere("json");
}

#[test]
fn the_receiver_still_gets_the_real_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://cbuser:{PASSWORD}@{}/done?token={TOKEN}",
        listener.local_addr().unwrap()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0; 65536];
        let n = s.read(&mut buf).unwrap();
        let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).unwrap();
    });
    let d = Daemon::start(&callback_config(&url));
    Daemon::task_ids(&d.post_json("/hooks/a", &[], b"{}"));
    let request = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(request.starts_with(&format!("POST /done?token={TOKEN} ")), "{request}");
}

// ------------------------------------------------------- nesting and crashes

/// `{"d": [[...[1]...]]}` with the array nested `depth` deep.
fn nested(depth: usize) -> String {
    format!(r#"{{"d":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn every_nesting_depth_the_parser_accepts_survives_a_crash_and_runs() {
    let config = r#"
state:
  path: $DIR/state/hookrunner.db
tasks:
  max_concurrent: 1
  max_queued: 1000
  keep: 1000
deliveries:
  keep: 1000
sources:
  a: {provider: generic, auth: none}
programs:
  gate:
    command: handlers/gate.sh
    params: [deep]
    on_interrupt: rerun
    env: {GATE: $DIR/go, OUT_FILE: $DIR/runs}
mappings:
  a:
    default:
      params: {deep: payload.d}
      rules: [{run: gate}]
"#;
    let mut d = Daemon::start(config);
    // The body nests one level more than `d`; the parser takes 127 levels.
    let depths: Vec<usize> = (1..=126).collect();
    let mut ids = Vec::new();
    for &depth in &depths {
        let r = d.post_json("/hooks/a", &[], nested(depth).as_bytes());
        ids.push(Daemon::task_ids(&r).remove(0));
    }
    let too_deep = d.post_json("/hooks/a", &[], nested(127).as_bytes());
    assert_eq!(too_deep.status, 400, "{}", too_deep.text);
    let listed = |d: &Daemon| {
        let tasks = d.get("/tasks?limit=1000").json();
        let deliveries = d.get("/deliveries?limit=1000&outcome=accepted").json();
        (
            tasks["tasks"].as_array().unwrap().clone(),
            deliveries["deliveries"].as_array().unwrap().len(),
        )
    };
    let (tasks, deliveries) = listed(&d);
    assert_eq!((tasks.len(), deliveries), (depths.len(), depths.len()));

    d.kill9();
    d.restart();
    let (tasks, deliveries) = listed(&d);
    assert_eq!(
        (tasks.len(), deliveries),
        (depths.len(), depths.len()),
        "all listed after the crash"
    );
    for (id, depth) in ids.iter().zip(&depths) {
        let task = d.get(&format!("/tasks/{id}")).json();
        let want: Value = {
            use serde::Deserialize;
            let text = nested(*depth);
            let mut de = serde_json::Deserializer::from_str(&text);
            de.disable_recursion_limit();
            Value::deserialize(&mut de).unwrap()["d"].clone()
        };
        assert_eq!(task["params"]["deep"], want, "depth {depth}");
    }
    std::fs::write(d.path("go"), "").unwrap();
    for id in &ids {
        let task = d.wait_task(id);
        assert_eq!(task["status"], "succeeded", "{}", task["id"]);
    }
    let runs = std::fs::read_to_string(d.path("runs")).unwrap();
    for id in &ids {
        assert_eq!(runs.lines().filter(|l| l == id).count(), 1, "task {id} ran once");
    }
}

// --------------------------------------------------------- metrics and logs

/// A metric's name, labels and value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses Prometheus/OpenMetrics text strictly: every line is a comment of a
/// known kind or `name{label="value",...} number`; returns the samples.
fn strict_samples(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let kind = rest.split(' ').next().unwrap();
            assert!(["HELP", "TYPE", "UNIT"].contains(&kind), "bad comment line {line:?}");
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("bad line {line:?}"));
        let name = &line[..name_end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = rest.find("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
                let key = &rest[..eq];
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name in {line:?}"
                );
                rest = &rest[eq + 2..];
                let mut value = String::new();
                let mut chars = rest.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break i,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('"' | '\\'))) => value.push(c),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value in {line:?}"),
                    }
                };
                labels.push((key.to_string(), value));
                rest = &rest[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value = rest.trim().split(' ').next().unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.push((name.to_string(), labels, value));
    }
    samples
}

const HOSTILE_NAMES: [&str; 9] = [
    "a\"} 1\nhookrunner_fake_total 99\n#",
    "x\nforged WARN line",
    "\r\n2026-01-01T00:00:00Z ERROR forged",
    "{}",
    "..",
    "名字",
    "\u{1b}[31mred",
    "back\\slash",
    "%ff%00",
];

#[test]
fn unknown_sources_become_no_metric_series_and_no_log_lines() {
    let d = Daemon::start(
        r#"
sources:
  a: {provider: generic, auth: none}
"#,
    );
    let encode =
        |name: &str| percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut looked_up = 0;
    for name in HOSTILE_NAMES {
        let r = d.post_json(&format!("/hooks/{}", encode(name)), &[], b"{}");
        // `..` is resolved by the client: the request is `POST /`, the
        // dashboard's redirect, which takes only GET.
        let expected = if name == ".." { 405 } else { 404 };
        assert_eq!(r.status, expected, "{name:?}: {}", r.text);
        // (A path the router itself refuses never reaches a source lookup.)
        looked_up += usize::from(r.error().starts_with("there is no source named"));
    }
    assert!(looked_up >= HOSTILE_NAMES.len() - 1);
    let first = d.get("/metrics");
    let samples = strict_samples(&first.text);
    assert!(samples.iter().all(|(n, _, _)| n != "hookrunner_fake_total"));
    let unknown: Vec<_> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == "hookrunner_deliveries_total" && l.iter().any(|(k, v)| k == "source" && v == "(unknown)")
        })
        .collect();
    assert_eq!(unknown.len(), 1, "{}", first.text);
    assert_eq!(unknown[0].2, looked_up as f64);
    for (_, labels, _) in &samples {
        for (k, v) in labels {
            assert!(
                k != "source" || v == "a" || v == "(unknown)",
                "label from a request: {v:?}"
            );
        }
    }
    // More unknown names add no series.
    for i in 0..50 {
        d.post_json(&format!("/hooks/new-name-{i}"), &[], b"{}");
    }
    assert_eq!(strict_samples(&d.get("/metrics").text).len(), samples.len());
    // Every log line is one line: each starts with a timestamp.
    // The name is logged, escaped and quoted.
    let logs = d.logs_with(r#"source="x\\nforged WARN line""#);
    for line in logs.lines() {
        assert!(
            line.starts_with("20") && line.contains('Z'),
            "a forged or broken log line: {line:?}"
        );
    }
}

#[test]
fn source_and_program_names_that_could_break_labels_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhook.yaml");
    for (yaml, key) in [
        (
            "sources:\n  'a\"b': {provider: generic, auth: none}\n",
            "is not a valid source name",
        ),
        (
            "programs:\n  'p q': {command: /bin/true}\n",
            "is not a valid program name",
        ),
        // Clients and proxies resolve `.` and `..` parts away.
        (
            "sources:\n  'a/../b': {provider: generic, auth: none}\n",
            "(no part `.` or `..`)",
        ),
        (
            "sources:\n  '..': {provider: generic, auth: none}\n",
            "is not a valid source name",
        ),
    ] {
        std::fs::write(&path, yaml).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("webhook.yaml:2:3: ") && err.contains(key), "{err}");
    }
}

// ------------------------------------------------------------ X-Forwarded-For

#[test]
fn every_forwarded_for_line_counts_and_bad_hops_fail_closed() {
    let d = Daemon::start(
        r#"
server:
  trusted_proxies: [127.0.0.1]
sources:
  open: {provider: generic, auth: none, allow_ips: ["0.0.0.0/0", "::/0"]}
  lab: {provider: generic, auth: none, allow_ips: [203.0.113.0/24]}
"#,
    );
    let get = |xff: &[&str]| {
        let lines: String = xff.iter().map(|v| format!("X-Forwarded-For: {v}\n")).collect();
        raw(&d.addr, &format!("GET /tasks HTTP/1.1\nHost: localhost\n{lines}"), b"").0
    };
    assert_eq!(get(&[]), 200, "the proxy itself, on loopback");
    assert_eq!(get(&["127.0.0.1"]), 200);
    // A client's own line ahead of the proxy's does not make it loopback.
    assert_eq!(get(&["127.0.0.1", "198.51.100.7"]), 403);
    assert_eq!(get(&["127.0.0.1, 198.51.100.7"]), 403);
    for bad in ["1.2.3.4:5555", "unknown", "garbage", "_hidden", "[::1]"] {
        assert_eq!(get(&[bad]), 403, "{bad}");
        assert_eq!(get(&["127.0.0.1", bad]), 403, "{bad}");
    }
    let post = |source: &str, xff: &[&str]| {
        let lines: String = xff.iter().map(|v| format!("X-Forwarded-For: {v}\n")).collect();
        raw(
            &d.addr,
            &format!("POST /hooks/{source} HTTP/1.1\nHost: x\nContent-Type: application/json\n{lines}"),
            b"{}",
        )
        .0
    };
    assert_eq!(post("lab", &["198.51.100.7, 203.0.113.5"]), 200);
    assert_eq!(
        post("lab", &["203.0.113.5", "198.51.100.7"]),
        403,
        "the proxy's line wins"
    );
    // Even `0.0.0.0/0` does not admit a client nobody can name.
    assert_eq!(post("open", &["not-an-address"]), 403);
    assert_eq!(post("open", &["192.0.2.1"]), 200);
    let refused = d.get("/deliveries?outcome=refused&source=open").json();
    assert_eq!(
        refused["deliveries"][0]["remote_addr"],
        "unknown (a forwarded-for hop is not an IP address)"
    );
}

// ------------------------------------------------------ values no process takes

#[test]
fn values_no_process_can_receive_are_refused_with_422_and_nothing_runs() {
    let d = Daemon::start(
        r#"
sources:
  a: {provider: generic, auth: none}
programs:
  dump:
    command: [python3, handlers/dump.py]
    params: [text]
mappings:
  a:
    default:
      params: {text: payload.text}
      rules: [{run: dump}]
"#,
    );
    let long = "x".repeat(200 * 1024);
    for (text, why) in [
        ("a\u{0}b", "contains a NUL byte"),
        (
            long.as_str(),
            "is 204800 bytes, 204816 as `HOOK_PARAM_<NAME>=<value>`, more than the 131071 bytes Linux passes in one argument or environment string",
        ),
    ] {
        let body = json!({ "text": text }).to_string();
        let r = d.post_json("/hooks/a", &[], body.as_bytes());
        assert_eq!(r.status, 422, "{}", &r.text[..r.text.len().min(300)]);
        let error = r.error();
        assert!(error.contains("param `text`") && error.contains(why), "{error}");
        assert!(error.contains("nothing of this delivery was queued"), "{error}");
        let record = d.get("/deliveries?limit=1").json()["deliveries"][0].clone();
        assert_eq!(record["outcome"], "rejected");
        assert_eq!(record["status"], 422);
        let result = record["rules"][0]["result"].as_str().unwrap();
        assert!(result.starts_with("matched, but cannot run: param `text`"), "{result}");
    }
    assert_eq!(d.get("/tasks").json()["tasks"], json!([]));
    // Just under the limit runs.
    let fits = "y".repeat(100 * 1024);
    let r = d.post_json("/hooks/a", &[], json!({ "text": fits }).to_string().as_bytes());
    let task = d.wait_task(&Daemon::task_ids(&r)[0]);
    assert_eq!(task["status"], "succeeded", "{}", task["error"]);
}

/// The check before queueing counts what `execve` counts (pointers, the
/// script's interpreter line, the variables the engine adds), so the
/// largest delivery it lets through is one a `#!` script can be started
/// with, and one byte more is `422` with nothing queued.
#[test]
fn the_largest_argv_and_environment_accepted_can_be_started() {
    // The param reaches the process 18 times: 16 args, `--p=` and `HOOK_PARAM_P`.
    let copies = 18;
    let d = Daemon::start(&format!(
        r#"
sources:
  a: {{provider: generic, auth: none}}
programs:
  big:
    command: handlers/append.sh
    args: [fits, {}]
    params: [p]
    env: {{OUT_FILE: $DIR/runs}}
mappings:
  a:
    default:
      params: {{p: payload.p}}
      rules: [{{run: big}}]
"#,
        vec!["\"{p}\""; copies - 2].join(", ")
    ));
    let post = |n: usize| d.post_json("/hooks/a", &[], json!({ "p": "x".repeat(n) }).to_string().as_bytes());
    let number_after = |text: &str, words: &str| -> usize {
        let rest = &text[text.find(words).unwrap_or_else(|| panic!("no {words:?} in {text}")) + words.len()..];
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let r = post(120_000);
    assert_eq!(r.status, 422, "{}", &r.text[..r.text.len().min(300)]);
    let error = r.error();
    let total = number_after(&error, "the arguments and environment would be ");
    let max = number_after(&error, "more than the ");
    // The largest value the daemon accepts, found from its own count.
    let largest = 120_000 - (total - max).div_ceil(copies);

    let r = post(largest + 1);
    assert_eq!(r.status, 422, "{}", &r.text[..r.text.len().min(300)]);
    assert!(
        r.error().contains("nothing of this delivery was queued"),
        "{}",
        r.error()
    );
    assert_eq!(d.get("/tasks").json()["tasks"], json!([]));

    let r = post(largest);
    let task = d.wait_task(&Daemon::task_ids(&r)[0]);
    assert_eq!(task["status"], "succeeded", "{}", task["error"]);
    assert_eq!(std::fs::read_to_string(d.path("runs")).unwrap(), "fits\n");
}

// ----------------------------------------------------------- smaller ones

#[test]
fn http_layer_refusals_are_rate_limited_warnings_with_the_client() {
    let d = Daemon::start("sources:\n  a: {provider: generic, auth: none}\n");
    for _ in 0..20 {
        let (status, _) = raw(&d.addr, "POST /hooks/a HTTP/1.1\nHost: x\nContent-Length: abc\n", b"");
        assert_eq!(status, 400);
        let mut s = TcpStream::connect(&d.addr).unwrap();
        s.write_all(b"GARBAGE\r\n\r\n").unwrap();
        let _ = s.read_to_end(&mut Vec::new());
    }
    eventually("the refusal to be logged", Duration::from_secs(5), || {
        d.logs().contains("request refused by the HTTP layer")
    });
    let logs = d.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
    let refusals: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refused by the HTTP layer"))
        .collect();
    assert_eq!(refusals.len(), 1, "rate-limited: {logs}");
    assert!(
        refusals[0].contains(" WARN ") && refusals[0].contains("client=127.0.0.1"),
        "{}",
        refusals[0]
    );
}

#[test]
fn a_malformed_chunked_body_is_a_400_with_one_sentence() {
    let d = Daemon::start("sources:\n  a: {provider: generic, auth: none}\n");
    for chunks in ["ZZ\r\n{}\r\n0\r\n\r\n", "FFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n"] {
        let mut s = TcpStream::connect(&d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = "POST /hooks/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        s.write_all(format!("{head}{chunks}").as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
        // A sentence, no Rust debug output (it once ended in `: None`).
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        let error = serde_json::from_str::<serde_json::Value>(body).unwrap()["error"].clone();
        assert_eq!(
            error,
            "the request body could not be read: it ended before it was complete (a malformed chunk, or the connection closed)"
        );
    }
}

#[test]
fn a_cursor_that_names_nothing_is_a_400_for_tasks_and_deliveries() {
    for state in ["", "state: {path: $DIR/s.db}\n"] {
        let d = Daemon::start(&format!("{state}sources:\n  a: {{provider: generic, auth: none}}\n"));
        d.post_json("/hooks/a", &[], b"{}");
        // An ignored delivery is written in the store's next batch.
        eventually("the delivery on record", Duration::from_secs(5), || {
            d.get("/deliveries").json()["deliveries"][0]["id"].is_string()
        });
        let first = d.get("/deliveries").json()["deliveries"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(d.get(&format!("/deliveries?before={first}")).status, 200);
        for path in [
            "/deliveries?before=garbage",
            "/tasks?before=garbage",
            "/tasks?before=7f0c7a4e-1d1b-4c47-9d1a-0a6c1b0e1f00",
        ] {
            let r = d.get(path);
            assert_eq!(r.status, 400, "{state}{path}: {}", r.text);
            assert!(r.error().contains("before"), "{}", r.text);
        }
    }
}

#[test]
fn sigusr1_reloads_and_other_signals_do_not_kill() {
    let d = Daemon::start("sources:\n  a: {provider: generic, auth: none}\n");
    signal(d.pid(), "USR1");
    eventually("the reload", Duration::from_secs(5), || {
        d.logs().contains("config reloaded")
    });
    for sig in [
        "USR2", "PIPE", "WINCH", "ALRM", "VTALRM", "PROF", "IO", "PWR", "XCPU", "XFSZ",
    ] {
        signal(d.pid(), sig);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(d.get("/healthz").status, 200, "SIGT{sig} stopped the daemon");
    }
    // Each is said at info, but SIGPIPE: every handler that leaves its
    // stdin unread sends one, so it is only at debug.
    eventually("the last signal's line", Duration::from_secs(5), || {
        d.logs().contains("signal=\"SIGXFSZ\"")
    });
    let logs = d.logs();
    assert!(logs.contains("signal=\"SIGUSR2\""), "{logs}");
    assert!(!logs.contains("SIGPIPE"), "{logs}");
}

// ------------------------------------------------------ output and crashes

#[test]
fn output_outlives_a_crash_and_the_handler_keeps_writing() {
    let mut d = Daemon::start(
        r#"
state:
  path: $DIR/state/hookrunner.db
sources:
  a: {provider: generic, auth: none}
programs:
  chatty:
    command: handlers/chatty.sh
    env: {TICKS: "30", PAUSE: "0.1"}
mappings:
  a:
    default: {rules: [{run: chatty}]}
"#,
    );
    let id = Daemon::task_ids(&d.post_json("/hooks/a", &[], b"{}")).remove(0);
    eventually("the third tick", Duration::from_secs(10), || {
        d.get(&format!("/tasks/{id}")).json()["stdout"]
            .as_str()
            .unwrap()
            .contains("tick 3\n")
    });
    let stdout = d.get(&format!("/tasks/{id}")).json()["stdout"]
        .as_str()
        .unwrap()
        .to_string();
    let pid: i32 = stdout
        .lines()
        .next()
        .unwrap()
        .strip_prefix("pid ")
        .unwrap()
        .parse()
        .unwrap();
    d.kill9();
    let file = d.path(&format!("state/output/{id}.1.out"));
    let before = std::fs::metadata(&file).unwrap().len();
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(pid), "the handler died with the daemon");
    assert!(
        std::fs::metadata(&file).unwrap().len() > before,
        "the handler still writes"
    );
    d.restart();
    let task = d.get(&format!("/tasks/{id}")).json();
    assert_eq!(task["status"], "interrupted");
    assert!(task["stdout"].as_str().unwrap().contains("tick 3\n"), "{task}");
    // It runs to its end: no SIGPIPE when it writes after the daemon died.
    eventually("the handler's last line", Duration::from_secs(10), || {
        std::fs::read_to_string(d.path(&format!("state/output/{id}.1.err"))).is_ok_and(|e| e == "done\n")
    });
    let full = std::fs::read_to_string(&file).unwrap();
    assert!(full.contains("tick 30\n"), "{full}");
}

#[test]
fn a_strangers_long_request_line_costs_a_bounded_record() {
    // Unauthenticated requests to a source that does not exist, each with a
    // request line of ~60 KiB: every one is on record, and each record stays
    // small whatever the request line held.
    let d = Daemon::start(
        "sources:\n  a: {provider: generic, auth: none}\nprograms:\n  ok: {command: handlers/log-event.sh}\nmappings:\n  a:\n    \"*\": {rules: [{run: ok}]}\n",
    );
    let name = "n".repeat(20_000);
    let query = format!("q={}&{}", "b".repeat(30_000), "k=v&".repeat(2_000));
    for _ in 0..5 {
        let (status, body) = raw(&d.addr, &format!("POST /hooks/{name}?{query} HTTP/1.1\nHost: x\n"), b"");
        assert_eq!(status, 404);
        assert!(body.len() < 400, "{body}");
    }
    let list = d.get("/deliveries").json()["deliveries"].as_array().unwrap().clone();
    assert_eq!(list.len(), 5);
    for record in &list {
        let size = record.to_string().len();
        assert!(size < 6_000, "a record of {size} bytes: {}", &record.to_string()[..500]);
        assert!(
            record["source"].as_str().unwrap().ends_with("… (20000 bytes)"),
            "{}",
            record["source"]
        );
        let query = record["query"].as_array().unwrap();
        assert!(query.last().unwrap()[1]
            .as_str()
            .unwrap()
            .contains("more parameters not kept"));
    }
    let longest_log_line = d.logs().lines().map(str::len).max().unwrap_or(0);
    assert!(longest_log_line < 2_000, "a log line of {longest_log_line} bytes");
    // A name that is not UTF-8 is refused and on record too.
    let (status, body) = raw(&d.addr, "POST /hooks/%ff HTTP/1.1\nHost: x\n", b"");
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "there is no source named `\u{fffd}`"
    );
    let newest = &d.get("/deliveries").json()["deliveries"][0];
    assert_eq!(newest["source"], "\u{fffd}");
    assert_eq!(newest["status"], 404);
}

#[test]
fn a_refusal_never_shows_what_the_config_put_in_an_argument() {
    let d = Daemon::with(
        "sources:\n  a: {provider: generic, auth: none}\nprograms:\n  ok:\n    command: handlers/log-event.sh\n    args: [\"--key=${DEPLOY_KEY}:{payload}\"]\nmappings:\n  a:\n    \"*\": {rules: [{run: ok}]}\n",
    )
    .env("DEPLOY_KEY", "AKIA-very-secret-key")
    .start();
    let body = format!("{{\"x\":\"{}\"}}", "y".repeat(140_000));
    let r = d.post_json("/hooks/a", &[], body.as_bytes());
    assert_eq!(r.status, 422, "{}", &r.text[..r.text.len().min(300)]);
    assert!(
        r.error().contains("argument 1 of the command would be"),
        "{}",
        r.error()
    );
    assert!(!r.text.contains("AKIA"), "{}", r.text);
    assert!(!d.logs().contains("AKIA"), "{}", d.logs());
    let record = &d.get("/deliveries").json()["deliveries"][0];
    assert!(!record.to_string().contains("AKIA"), "{record}");
}

/// An open source whose event name is a body field (what a sender writes), running `/bin/true`.
const EVENT_FROM_BODY: &str = r#"
sources:
  s:
    provider: generic
    auth: none
    event: {field: ev}
programs:
  ok: {command: /bin/true}
mappings:
  s:
    '*':
      rules: [{run: ok}]
"#;

#[test]
fn what_a_sender_writes_cannot_forge_log_fields_or_drive_the_operator_s_terminal() {
    let d = Daemon::start(EVENT_FROM_BODY);
    let ev = "push source=github delivery_id=FAKE \u{1b}[2J\u{1b}]0;T\u{7}\rX\u{9b}31m";
    let r = d.post_json("/hooks/s", &[], json!({ "ev": ev }).to_string().as_bytes());
    assert_eq!(r.status, 202, "{}", r.text);
    // An unknown source named by the path, with control characters.
    let r = d.post_json("/hooks/%1b%5b2J%1b%5d0%3bPWNED%07x", &[], b"{}");
    assert_eq!(r.status, 404);
    // The value is one quoted field: no `delivery_id=FAKE` of its own.
    let logs = d.logs_with("delivery accepted");
    let line = logs
        .lines()
        .find(|l| l.contains("delivery accepted"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        line.contains(r#"event="push source=github delivery_id=FAKE \\u{1b}[2J"#),
        "{line}"
    );
    assert!(
        line.contains(r#"31m" delivery_id="#),
        "the quotes end the field: {line}"
    );
    assert_eq!(line.matches("FAKE").count(), 1, "{line}");
    assert!(!logs.contains('\u{1b}') && !logs.contains('\u{7}'), "{logs}");
    // The CLI shows what was recorded with its control characters escaped,
    // in tables, details and JSON alike.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .args(["--url", &d.url("")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let id = d.get("/deliveries?source=s").json()["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for text in [
        cli(&["deliveries"]),
        cli(&["delivery", &id]),
        cli(&["tasks"]),
        cli(&["deliveries", "--json"]),
    ] {
        for c in ['\u{1b}', '\u{7}', '\r', '\u{9b}'] {
            assert!(!text.contains(c), "{c:?} in {text}");
        }
    }
    let details = cli(&["delivery", &id]);
    assert!(details.contains(r"\u{1b}[2J"), "{details}");
    let json: Value = serde_json::from_str(&cli(&["deliveries", "--json"])).unwrap();
    assert!(
        json["deliveries"].as_array().unwrap().iter().any(|d| d["event"] == ev),
        "the JSON still reads back as sent"
    );
}

/// The value of `key` anywhere in a JSON log line.
fn json_field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(key).or_else(|| m.values().find_map(|v| json_field(v, key))),
        _ => None,
    }
}

/// `X-Request-Id` is the sender's: every log line that names it writes it
/// as one field, as other fields from a request: escaped and quoted in
/// text, as itself in JSON.
fn request_ids_are_one_field(log_format: &str) {
    let d = Daemon::with(
        r#"
sources:
  open: {provider: generic, auth: none}
  tok: {provider: generic, auth: {token: the-token, header: X-Token}}
programs:
  ok: {command: /bin/true}
mappings:
  open:
    default:
      rules: [{run: ok}]
"#,
    )
    .env("HOOKRUNNER_LOG_FORMAT", log_format)
    .env("RUST_LOG", "debug")
    .start();
    let forged = r#"abc"client=1.2.3.4"#;
    let r = d.post_json("/hooks/open", &[("X-Request-Id", forged)], b"{}");
    d.wait_task(&Daemon::task_ids(&r)[0]);
    let r = d.post_json("/hooks/tok", &[("X-Request-Id", forged), ("X-Token", "wrong")], b"{}");
    assert_eq!(r.status, 401);
    d.logs_with("delivery refused");
    let logs = d.logs_with("task started");
    for message in ["delivery accepted", "rule judged", "task started", "delivery refused"] {
        let line = logs
            .lines()
            .find(|l| l.contains(message) && l.contains("request_id"))
            .unwrap_or_else(|| panic!("no {message:?} line with its request id:\n{logs}"));
        if log_format == "json" {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            // The value itself, escaped once by JSON (not quoted again).
            let id = json_field(&v, "request_id").and_then(Value::as_str).unwrap_or_default();
            assert_eq!(id, forged, "{line}");
            if let Some(client) = json_field(&v, "client") {
                assert_eq!(client, "127.0.0.1", "{line}");
            }
        } else {
            assert!(line.contains(r#"request_id="abc\"client=1.2.3.4""#), "{line}");
            assert!(!line.contains(r#"request_id=abc"#), "{line}");
        }
    }
}

#[test]
fn request_ids_are_escaped_in_text_logs() {
    request_ids_are_one_field("text");
}

#[test]
fn request_ids_are_escaped_in_json_logs() {
    request_ids_are_one_field("json");
}

/// A line end in a recorded value (a source name from the URL path) would
/// start a row of its own in a CLI table, and a bidi override would
/// reorder one: both are shown escaped, in tables and details.
#[test]
fn a_recorded_line_end_or_bidi_control_cannot_forge_a_cli_row() {
    let d = Daemon::start(EVENT_FROM_BODY);
    let r = d.post_json("/hooks/evil%0d%0aFAKE-ROW%0a%e2%80%aeROW", &[], b"{}");
    assert_eq!(r.status, 404);
    let ev = "push\u{202e}gpj.exe\u{2066}";
    let r = d.post_json("/hooks/s", &[], json!({ "ev": ev }).to_string().as_bytes());
    d.wait_task(&Daemon::task_ids(&r)[0]);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .args(["--url", &d.url("")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let id_of = |query: &str| {
        d.get(&format!("/deliveries?{query}")).json()["deliveries"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (evil, pushed) = (id_of("outcome=refused"), id_of("source=s"));
    let table = cli(&["deliveries"]);
    assert!(table.contains(r"evil\r\nFAKE-ROW\n\u{202e}ROW"), "{table}");
    assert!(table.contains(r"push\u{202e}gpj.exe\u{2066}"), "{table}");
    for text in [
        table,
        cli(&["tasks"]),
        cli(&["delivery", &evil]),
        cli(&["delivery", &pushed]),
    ] {
        assert!(!text.lines().any(|l| l.starts_with("FAKE-ROW")), "{text}");
        for c in ['\u{202e}', '\u{2066}', '\r'] {
            assert!(!text.contains(c), "{c:?} in {text}");
        }
    }
    // `--json` still reads back as recorded, with the controls as JSON escapes.
    let json: Value = serde_json::from_str(&cli(&["deliveries", "--json"])).unwrap();
    assert!(json["deliveries"].as_array().unwrap().iter().any(|d| d["event"] == ev));
}

/// An auth header sent twice (a valid value and another) is refused: the
/// daemon does not pick one of the two. For a provider's signature, a
/// generic token header and the API's bearer token alike.
#[test]
fn an_auth_header_sent_twice_is_refused() {
    let d = Daemon::start(
        r#"
api:
  tokens: [api-token-1]
sources:
  gh: {provider: github, secret: gh-secret}
  tok: {provider: generic, auth: {token: the-token, header: X-Token}}
"#,
    );
    let body = br#"{"zen":"x"}"#;
    let good = format!("sha256={}", hmac_sha256_hex("gh-secret", body));
    let bad = format!("sha256={}", "0".repeat(64));
    let post = |source: &str, lines: &[String]| {
        let head = format!(
            "POST /hooks/{source} HTTP/1.1\nHost: x\nContent-Type: application/json\nX-GitHub-Event: ping\n{}",
            lines.iter().map(|l| format!("{l}\n")).collect::<String>()
        );
        raw(&d.addr, &head, body)
    };
    let sig = |v: &str| format!("X-Hub-Signature-256: {v}");
    assert_eq!(post("gh", &[sig(&good)]).0, 200, "one valid signature passes");
    for lines in [
        [sig(&good), sig(&bad)],
        [sig(&bad), sig(&good)],
        [sig(&good), sig(&good)],
    ] {
        let (status, answer) = post("gh", &lines);
        assert_eq!(status, 401, "{answer}");
        assert!(
            answer.contains("the `X-Hub-Signature-256` header was sent more than once"),
            "{answer}"
        );
    }
    let token = |v: &str| format!("X-Token: {v}");
    assert_eq!(post("tok", &[token("the-token")]).0, 200);
    let (status, answer) = post("tok", &[token("the-token"), token("other")]);
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer.contains("the `X-Token` header was sent more than once"),
        "{answer}"
    );
    // Its name in another case is the same header.
    let (status, _) = raw(
        &d.addr,
        "POST /hooks/tok?x=1 HTTP/1.1\nHost: x\nContent-Type: application/json\nX-Token: the-token\nx-token: other\n",
        body,
    );
    assert_eq!(status, 401);

    let get = |lines: &[&str]| {
        let head = format!(
            "GET /tasks HTTP/1.1\nHost: localhost\n{}",
            lines.iter().map(|l| format!("{l}\n")).collect::<String>()
        );
        raw(&d.addr, &head, b"")
    };
    assert_eq!(get(&["Authorization: Bearer api-token-1"]).0, 200);
    for lines in [
        ["Authorization: Bearer api-token-1", "Authorization: Bearer wrong"],
        ["Authorization: Bearer wrong", "Authorization: Bearer api-token-1"],
    ] {
        let (status, answer) = get(&lines);
        assert_eq!(status, 401, "{answer}");
        assert!(
            answer.contains("the `Authorization` header was sent more than once"),
            "{answer}"
        );
    }
}

#[test]
fn a_sender_that_writes_a_too_large_body_before_reading_gets_the_413() {
    // Many clients (Python's, Go's without Expect) send the whole body
    // before they read: the daemon reads the rest of it (up to 64 MiB) and
    // throws it away, so they get the 413, on a connection that goes on.
    let d = Daemon::start("sources:\n  s: {provider: generic, auth: none}\n");
    let addr = d.addr.clone();
    for (size, chunked) in [(2 << 20, false), (8 << 20, false), (3 << 20, true)] {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {size}")
        };
        write!(
            s,
            "POST /hooks/s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
        )
        .unwrap();
        let block = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < size {
            if chunked {
                write!(s, "{:x}\r\n", block.len()).unwrap();
            }
            s.write_all(&block)
                .unwrap_or_else(|e| panic!("after {sent} bytes: {e}"));
            if chunked {
                s.write_all(b"\r\n").unwrap();
            }
            sent += block.len();
        }
        if chunked {
            s.write_all(b"0\r\n\r\n").unwrap();
        }
        // Then a second request on the same connection.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("\"status\":\"ok\"") {
            let n = s
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&answer)));
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{size}: {text}");
        assert!(text.contains("larger than the limit"), "{text}");
    }
}

// ------------------------------------------------------- a stranger's flood

const FLOOD_SECRET: &str = "flood-secret";

fn flood_config(state: &str) -> String {
    format!(
        r#"
{state}
server:
  max_body: 1KiB
deliveries:
  keep: 8
  keep_refused: 5
sources:
  github: {{provider: github, secret: {FLOOD_SECRET}}}
  lab: {{provider: generic, auth: none, allow_ips: [192.0.2.0/24]}}
programs:
  deploy:
    command: handlers/log-event.sh
mappings:
  github:
    push: {{rules: [{{run: deploy}}]}}
"#
    )
}

/// A sender's delivery on record: its record id, body and task.
struct Sent {
    id: String,
    body: String,
    task: String,
}

fn signed_push(d: &Daemon, n: usize) -> Sent {
    let body = json!({ "ref": "refs/heads/main", "n": n }).to_string();
    let sig = format!("sha256={}", hmac_sha256_hex(FLOOD_SECRET, body.as_bytes()));
    let id = format!("sender-{n}");
    let r = d.post_json(
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Delivery", &id),
        ],
        body.as_bytes(),
    );
    let task = Daemon::task_ids(&r).remove(0);
    d.wait_task(&task);
    Sent { id, body, task }
}

/// `count` requests that get no further than auth, of every kind: unsigned,
/// badly signed, to a source that does not exist, from an address
/// `allow_ips` does not list, and too large. Returns how many each status got.
fn strangers_flood(d: &Daemon, count: usize) -> std::collections::BTreeMap<u16, usize> {
    let mut statuses = std::collections::BTreeMap::new();
    let big = vec![b'x'; 2048];
    for i in 0..count {
        let r = match i % 5 {
            0 => d.post_json("/hooks/github", &[("X-GitHub-Event", "push")], b"{}"),
            1 => d.post_json(
                "/hooks/github",
                &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", "sha256=00")],
                b"{}",
            ),
            2 => d.post_json(&format!("/hooks/nowhere-{i}"), &[], b"{}"),
            3 => d.post_json("/hooks/lab", &[], b"{}"),
            _ => d.post_json("/hooks/github", &[("X-GitHub-Event", "push")], &big),
        };
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    statuses
}

/// Every sender's record is on record with its body, and can be replayed
/// and its task run again; of the strangers' records, at most `keep_refused`.
fn senders_records_survive(d: &Daemon, sent: &[Sent], ignored: &str) {
    for s in sent {
        let r = d.get(&format!("/deliveries/{}", s.id));
        assert_eq!(r.status, 200, "{}: {}", s.id, r.text);
        let record = r.json();
        assert_eq!(
            (record["outcome"].as_str(), record["body_kept"].as_bool()),
            (Some("accepted"), Some(true))
        );
        let body = d.get(&format!("/deliveries/{}/body", s.id));
        assert_eq!((body.status, body.text.as_str()), (200, s.body.as_str()));
    }
    let r = d.get(&format!("/deliveries/{ignored}"));
    assert_eq!((r.status, r.json()["outcome"].as_str()), (200, Some("ignored")));
    let refused = d.get("/deliveries?outcome=refused&limit=1000").json()["deliveries"]
        .as_array()
        .unwrap()
        .clone();
    assert!(refused.len() <= 5, "{} refused records kept", refused.len());
    for r in &refused {
        assert!([401, 403, 404, 413].contains(&r["status"].as_u64().unwrap()), "{r}");
    }
    let replayed = d.post(&format!("/deliveries/{}/replay", sent[0].id), &[], b"");
    let task = Daemon::task_ids(&replayed).remove(0);
    assert_eq!(d.wait_task(&task)["status"], "succeeded");
    let rerun = d.post(&format!("/tasks/{}/rerun", sent[1].task), &[], b"");
    assert_eq!(rerun.status, 202, "{}", rerun.text);
    let task = rerun.json()["id"].as_str().unwrap().to_string();
    let task = d.wait_task(&task);
    assert_eq!(task["status"], "succeeded");
    assert!(
        task["stdout"]
            .as_str()
            .unwrap()
            .contains(&format!("stdin: {} bytes", sent[1].body.len())),
        "{task}"
    );
}

/// The records of refused deliveries in the SQLite store, and the others.
fn stored_records(d: &Daemon) -> (i64, i64) {
    let db =
        rusqlite::Connection::open_with_flags(d.path("hooks.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    (
        count("SELECT COUNT(*) FROM deliveries WHERE outcome = 'refused'"),
        count("SELECT COUNT(*) FROM deliveries WHERE outcome <> 'refused'"),
    )
}

fn a_strangers_flood_pushes_out_no_senders_record(state: &str) {
    // The store's prune says when it ran (at debug).
    let mut d = Daemon::with(&flood_config(state))
        .env("RUST_LOG", "info,hookrunner::store=debug")
        .start();
    let sent: Vec<Sent> = (0..3).map(|n| signed_push(&d, n)).collect();
    // A signed delivery no rule matches is a sender's too, kept with its body.
    let body = b"{\"action\":\"opened\"}";
    let sig = format!("sha256={}", hmac_sha256_hex(FLOOD_SECRET, body));
    let ignored = "sender-ignored";
    let r = d.post_json(
        "/hooks/github",
        &[
            ("X-GitHub-Event", "issues"),
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Delivery", ignored),
        ],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // 60 times `keep`, 100 times `keep_refused`.
    let statuses = strangers_flood(&d, 500);
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        [(401, 200), (403, 100), (404, 100), (413, 100)]
    );
    // Each is still counted.
    let metrics = d.get("/metrics").text;
    assert!(
        metrics.contains("hookrunner_deliveries_total{source=\"github\",outcome=\"refused\"} 300"),
        "{metrics}"
    );
    senders_records_survive(&d, &sent, ignored);
    // Refused records are listed, the newest `keep_refused` of them.
    eventually(
        "the newest refused records to be listed",
        Duration::from_secs(5),
        || {
            d.get("/deliveries?outcome=refused&limit=1000").json()["deliveries"]
                .as_array()
                .unwrap()
                .len()
                == 5
        },
    );
    if state.is_empty() {
        return;
    }
    // The store held them to their budget as it wrote them.
    let (refused, others) = stored_records(&d);
    assert!(refused <= 5, "{refused} refused records in the store");
    // The senders' 4, and the replay's.
    assert_eq!(others, 5);
    // After a crash and a restart, read from the store: the same, and a new
    // flood changes nothing, nor does the store's prune (every 10 s), though
    // the store holds more records than `keep`, counting the refused ones.
    d.restart();
    senders_records_survive(&d, &sent, ignored);
    strangers_flood(&d, 100);
    assert_eq!(stored_records(&d), (5, 6));
    eventually("the store's prune", Duration::from_secs(30), || {
        d.logs().contains("store pruned")
    });
    senders_records_survive(&d, &sent, ignored);
    let (refused, others) = stored_records(&d);
    assert!(refused <= 5, "{refused} refused records in the store");
    // And the two replays since.
    assert_eq!(others, 7);
}

#[test]
fn a_strangers_flood_pushes_out_no_senders_record_in_memory() {
    a_strangers_flood_pushes_out_no_senders_record("");
}

#[test]
fn a_strangers_flood_pushes_out_no_senders_record_in_the_store_nor_after_a_restart() {
    a_strangers_flood_pushes_out_no_senders_record("state: {path: $DIR/hooks.db}");
}

#[test]
fn a_strangers_flood_writes_a_few_warnings_every_10_s_not_one_a_request() {
    let d = Daemon::start(&flood_config(""));
    let started = std::time::Instant::now();
    let statuses = strangers_flood(&d, 400);
    assert_eq!(statuses.values().sum::<usize>(), 400);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the flood must fit in one window"
    );
    // A sender's refusal after auth (a body that is not JSON) is not a
    // stranger's: it is logged every time.
    let body = b"{not json";
    let sig = format!("sha256={}", hmac_sha256_hex(FLOOD_SECRET, body));
    let r = d.post_json(
        "/hooks/github",
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
        body,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let refused_lines = |logs: &str| -> Vec<String> {
        logs.lines()
            .filter(|l| l.contains("delivery refused"))
            .map(str::to_string)
            .collect()
    };
    let logs = d.logs_with("the body is not valid JSON");
    let lines = refused_lines(&logs);
    assert_eq!(
        lines.len(),
        6,
        "five of the strangers' 400 refusals, and the sender's: {lines:#?}"
    );
    for line in &lines[..5] {
        assert!(line.contains(" WARN ") && line.contains("suppressed=0"), "{line}");
    }
    assert!(
        lines[5].contains(" WARN ") && !lines[5].contains("suppressed"),
        "{}",
        lines[5]
    );
    // Once 10 s have passed since the first refusal (which came some time
    // after `started`), the next stranger's refusal is a warning again, and
    // says how many were held back.
    std::thread::sleep(Duration::from_secs(12).saturating_sub(started.elapsed()));
    assert_eq!(d.post_json("/hooks/nowhere", &[], b"{}").status, 404);
    let logs = d.logs_with("suppressed=395");
    let lines = refused_lines(&logs);
    assert_eq!(lines.len(), 7, "{lines:#?}");
    assert!(
        lines[6].contains(" WARN ") && lines[6].contains("source=nowhere"),
        "{}",
        lines[6]
    );
    // Every one of them is still on record (the newest few) and counted.
    let metrics = d.get("/metrics").text;
    assert!(
        metrics.contains("hookrunner_deliveries_total{source=\"(unknown)\",outcome=\"refused\"} 81"),
        "{metrics}"
    );
}

#[test]
fn with_keep_refused_0_refused_requests_are_counted_but_not_recorded() {
    let d = Daemon::start(&flood_config("state: {path: $DIR/hooks.db}").replace("keep_refused: 5", "keep_refused: 0"));
    let sent = signed_push(&d, 0);
    let statuses = strangers_flood(&d, 50);
    assert_eq!(statuses.values().sum::<usize>(), 50);
    let list = d.get("/deliveries?limit=1000").json()["deliveries"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], sent.id.as_str());
    assert_eq!(stored_records(&d), (0, 1));
    let metrics = d.get("/metrics").text;
    assert!(
        metrics.contains("hookrunner_deliveries_total{source=\"github\",outcome=\"refused\"} 30"),
        "{metrics}"
    );
}
