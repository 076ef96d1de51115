//! Completion callbacks: a signed POST per `on_finish` URL when a task ends,
//! retried with backoff; its state is on the task.

mod common;
use base64::Engine as _;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One received POST.
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// A local receiver answering each request with the next status of `answers` (then 200).
fn receiver(answers: Vec<u16>) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/done?token=abc", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .unwrap()
                .1
                .parse()
                .unwrap();
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let status = answers.next().unwrap_or(200);
            let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            conn.write_all(reply.as_bytes()).unwrap();
            if tx.send(Received { headers, body }).is_err() {
                break;
            }
        }
    });
    (url, rx)
}

fn config(url: &str) -> String {
    format!(
        r#"
sources:
  a:
    provider: generic
    auth: none
    event: {{field: kind}}
programs:
  ok:
    command: handlers/log-event.sh
    on_finish:
      - url: "{url}"
        secret: "{SECRET}"
        backoff: 100ms
  quiet:
    command: handlers/log-event.sh
    on_finish:
      - url: "{url}"
        when: [failed, timed_out]
mappings:
  a:
    ok: {{rules: [{{run: ok}}]}}
    quiet: {{rules: [{{run: quiet}}]}}
"#
    )
}

/// Verifies a Standard Webhooks signature the way a receiver would.
fn verify(r: &Received) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let signed = format!("{}.{}.", r.header("webhook-id"), r.header("webhook-timestamp"));
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(signed.as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    r.header("webhook-signature").split(' ').any(|s| s == expected)
}

#[test]
fn a_finished_task_is_reported_with_a_correctly_signed_post() {
    let (url, rx) = receiver(vec![]);
    let d = Daemon::start(&config(&url));
    let r = d.post_json("/hooks/a", &[], br#"{"kind":"ok"}"#);
    let id = Daemon::task_ids(&r).remove(0);
    let got = rx.recv_timeout(Duration::from_secs(20)).expect("no callback arrived");
    assert!(verify(&got), "signature does not verify: {:?}", got.headers);
    let ts: u64 = got.header("webhook-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) < 60);
    let json: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(json["type"], "task.succeeded");
    assert_eq!(json["task"]["id"], id.as_str());
    assert_eq!(json["task"]["exit_code"], 0);
    assert!(json["task"]["stdout"].as_str().unwrap().contains("source=a event=ok"));
    eventually("the callback state", Duration::from_secs(10), || {
        d.get(&format!("/tasks/{id}")).json()["callbacks"][0]["status"] == "delivered"
    });
    let task = d.get(&format!("/tasks/{id}")).json();
    // The query may carry a token, and the path past its first segment a
    // secret (an incoming webhook's): masked wherever the URL is shown.
    assert_eq!(
        task["callbacks"][0]["url"],
        url.replace("/done?token=abc", "/***?token=***")
    );
    assert_eq!(task["callbacks"][0]["attempts"], 1);

    // `when` filters: a succeeded `quiet` task sends nothing.
    let r = d.post_json("/hooks/a", &[], br#"{"kind":"quiet"}"#);
    let quiet = Daemon::task_ids(&r).remove(0);
    d.wait_task(&quiet);
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    assert_eq!(
        d.get(&format!("/tasks/{quiet}")).json()["callbacks"],
        serde_json::json!([])
    );
}

#[test]
fn a_receiver_that_fails_twice_gets_the_callback_on_the_third_attempt() {
    let (url, rx) = receiver(vec![500, 503]);
    let d = Daemon::start(&config(&url));
    let r = d.post_json("/hooks/a", &[], br#"{"kind":"ok"}"#);
    let id = Daemon::task_ids(&r).remove(0);
    let ids: Vec<String> = (0..3)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(20))
                .expect("callback attempt")
                .header("webhook-id")
                .to_string()
        })
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "a retried message keeps its webhook-id: {ids:?}"
    );
    eventually("the callback to be delivered", Duration::from_secs(10), || {
        d.get(&format!("/tasks/{id}")).json()["callbacks"][0]["status"] == "delivered"
    });
    let state = &d.get(&format!("/tasks/{id}")).json()["callbacks"][0];
    assert_eq!(state["attempts"], 3);
    assert_eq!(state["last_error"], serde_json::Value::Null);
}

/// A restart sends only the callbacks still pending, going on from the
/// attempts already made; one already delivered is not sent again.
#[test]
fn a_restart_resends_only_the_pending_callbacks() {
    let (delivered_url, delivered) = receiver(vec![]);
    let (pending_url, pending) = receiver(vec![500]);
    let config = format!(
        r#"
state: {{path: $DIR/state/hookrunner.db}}
sources:
  a: {{provider: generic, auth: none}}
programs:
  ok:
    command: handlers/log-event.sh
    on_finish:
      - url: "{delivered_url}"
      - url: "{pending_url}"
        backoff: 3s
mappings:
  a:
    "*": {{rules: [{{run: ok}}]}}
"#
    );
    let mut d = Daemon::start(&config);
    let id = Daemon::task_ids(&d.post_json("/hooks/a", &[], b"{}")).remove(0);
    let first = delivered
        .recv_timeout(Duration::from_secs(20))
        .expect("the first callback");
    let failed = pending
        .recv_timeout(Duration::from_secs(20))
        .expect("the second callback's first attempt");
    eventually("both callbacks' state to be recorded", Duration::from_secs(10), || {
        let t = d.get(&format!("/tasks/{id}")).json();
        t["callbacks"][0]["status"] == "delivered" && t["callbacks"][1]["attempts"] == 1
    });
    // And on disk (the store writes in the background), before the crash.
    eventually("both callbacks' state to be on disk", Duration::from_secs(10), || {
        let db = rusqlite::Connection::open_with_flags(
            d.path("state/hookrunner.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let data: String = db
            .query_row("SELECT data FROM tasks WHERE id = ?1", [&id], |r| r.get(0))
            .unwrap_or_default();
        let t: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
        t["callbacks"][0]["status"] == "delivered" && t["callbacks"][1]["attempts"] == 1
    });
    d.kill9();
    d.restart();
    let again = pending
        .recv_timeout(Duration::from_secs(20))
        .expect("the pending callback, resumed");
    assert_eq!(again.header("webhook-id"), failed.header("webhook-id"));
    eventually("the resumed callback to be delivered", Duration::from_secs(10), || {
        d.get(&format!("/tasks/{id}")).json()["callbacks"][1]["status"] == "delivered"
    });
    let t = d.get(&format!("/tasks/{id}")).json();
    assert_eq!(t["callbacks"][1]["attempts"], 2, "{t}");
    assert_eq!(t["callbacks"][0]["status"], "delivered");
    assert_eq!(t["callbacks"][0]["attempts"], 1);
    assert!(
        delivered.recv_timeout(Duration::from_secs(2)).is_err(),
        "the delivered callback was sent again (first id {})",
        first.header("webhook-id")
    );
}
