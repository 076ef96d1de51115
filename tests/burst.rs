//! A burst of 20,000 deliveries on 64 connections: every 202 is matched by
//! exactly one run of the handler, and every other answer is a 503.

mod common;
use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CONFIG: &str = r#"
tasks:
  max_concurrent: 4
  max_queued: 1000
  keep: 100000
sources:
  ci:
    provider: generic
    auth: {token: burst-token, header: X-Token}
programs:
  append:
    command: handlers/append.sh
    args: ["{delivery_id}"]
    env: {OUT_FILE: $DIR/executed}
mappings:
  ci:
    "*":
      rules:
        - run: append
"#;

const DELIVERIES: usize = 20_000;
const CONNECTIONS: usize = 64;

#[test]
fn every_acknowledged_delivery_runs_exactly_once() {
    let d = Daemon::start(CONFIG);
    let url = d.url("/hooks/ci");
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (url, next, accepted, refused) = (url.clone(), next.clone(), accepted.clone(), refused.clone());
            std::thread::spawn(move || {
                // One keep-alive connection per thread.
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(60))
                    .max_idle_connections(1)
                    .build();
                while next.fetch_add(1, Ordering::Relaxed) < DELIVERIES {
                    let result = agent
                        .post(&url)
                        .set("Content-Type", "application/json")
                        .set("X-Token", "burst-token")
                        .send_string(r#"{"n":1}"#);
                    match result {
                        Ok(r) => {
                            assert_eq!(r.status(), 202);
                            let json: serde_json::Value = r.into_json().unwrap();
                            accepted
                                .lock()
                                .unwrap()
                                .push(json["delivery_id"].as_str().unwrap().to_string());
                        }
                        Err(ureq::Error::Status(503, r)) => {
                            assert_eq!(r.header("retry-after"), Some("5"));
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected answer: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    let refused = refused.load(Ordering::Relaxed);
    assert_eq!(accepted.len() + refused, DELIVERIES, "every request got a 202 or a 503");
    assert!(accepted.len() >= 1_000, "only {} accepted", accepted.len());

    let executed_path = d.path("executed");
    eventually("every accepted delivery to run", Duration::from_secs(300), || {
        let (running, queued) = {
            let list = d.get("/tasks?status=queued&limit=1").json();
            let running = d.get("/tasks?status=running&limit=1").json();
            (
                running["tasks"].as_array().unwrap().len(),
                list["tasks"].as_array().unwrap().len(),
            )
        };
        running == 0 && queued == 0
    });
    let executed = std::fs::read_to_string(executed_path).unwrap();
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for line in executed.lines() {
        *runs.entry(line).or_default() += 1;
    }
    for id in &accepted {
        assert_eq!(
            runs.get(id.as_str()).copied(),
            Some(1),
            "delivery {id} ran {:?} times",
            runs.get(id.as_str())
        );
    }
    assert_eq!(
        runs.len(),
        accepted.len(),
        "a handler ran for a delivery that was not acknowledged"
    );
    let failed = d.get("/tasks?status=failed&limit=10").json();
    assert_eq!(failed["tasks"].as_array().unwrap().len(), 0, "{failed}");
    eprintln!("burst: {} accepted, {} refused with 503", accepted.len(), refused);
}
