//! Admission without an HTTP server: a real config, engine and delivery
//! log; requests made of header pairs and bytes.

use super::*;
use crate::auth::ip::Client;
use crate::config::parse;
use crate::headers::HeaderPairs;
use crate::process::OutputDir;
use std::path::Path;

const CONFIG: &str = r#"
tasks: {max_concurrent: 1, max_queued: 1}
sources:
  gh:
    provider: github
    secret: s3cret
  open:
    provider: generic
    auth: none
    event: {field: kind}
    allow_ips: [10.0.0.0/8]
  plain:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  wait:
    command: [sleep, "5"]
  echo:
    command: [echo]
    params: [text]
mappings:
  gh:
    push:
      params: {ref: payload.ref}
      rules:
        - if: ref == "refs/heads/main"
          run: wait
  plain:
    slow: {rules: [{run: wait}]}
    echo:
      params: {text: payload.text}
      rules: [{run: echo}]
"#;

struct World {
    config: Config,
    engine: Engine,
    deliveries: DeliveryLog,
    dedup: DedupCache,
    metrics: Metrics,
    _outputs: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let config = parse(CONFIG, Path::new("webhook.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let outputs = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let engine = Engine::new(
            config.limits.clone(),
            tokio::runtime::Handle::current(),
            None,
            metrics,
            OutputDir::open(outputs.path()).unwrap(),
            crate::engine::NodeId::default(),
        );
        World {
            config,
            engine,
            deliveries: DeliveryLog::new(100, 100, 1 << 20, None),
            dedup: DedupCache::default(),
            metrics: Metrics::new(),
            _outputs: outputs,
        }
    }

    fn intake(&self) -> Intake<'_> {
        Intake {
            config: &self.config,
            engine: &self.engine,
            deliveries: &self.deliveries,
            dedup: &self.dedup,
            metrics: &self.metrics,
        }
    }

    async fn send(&self, source: &str, headers: &[(&str, &str)], body: &str) -> Result<Answer, Refused> {
        self.send_from(source, "127.0.0.1", headers, body).await
    }

    async fn send_from(&self, source: &str, ip: &str, headers: &[(&str, &str)], body: &str) -> Result<Answer, Refused> {
        let mut h: HeaderPairs = headers.iter().copied().collect();
        h.add("content-type", "application/json");
        let arrival = Arrival {
            source,
            client: Client::Addr(ip.parse().unwrap()),
            headers: &h,
            query: &[],
            request_id: "req-1".into(),
            request: Default::default(),
        };
        let body = Bytes::from(body.to_string());
        admit(self.intake(), &arrival, async { Ok(body) }).await
    }

    /// The newest delivery record.
    fn last(&self) -> Arc<Record> {
        let newest = crate::delivery::Filter {
            limit: 1,
            ..Default::default()
        };
        self.deliveries.list(&newest, None).unwrap()[0].clone()
    }
}

fn signed(body: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"s3cret").unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn each_refusal_is_recorded_with_its_status() {
    let w = World::new();
    let e = w.send("nope", &[], "{}").await.unwrap_err();
    assert_eq!((e.status(), w.last().status), (404, 404));
    assert_eq!(w.last().outcome, Outcome::Refused);
    let e = w.send("open", &[], r#"{"kind":"x"}"#).await.unwrap_err();
    assert_eq!((e.status(), w.last().outcome), (403, Outcome::Refused));
    let body = r#"{"ref":"refs/heads/main"}"#;
    let e = w
        .send(
            "gh",
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", "sha256=00")],
            body,
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 401);
    let record = w.last();
    assert_eq!((record.outcome, record.status), (Outcome::Refused, 401));
    assert_eq!(record.reason.as_deref(), Some("the signature does not match"));
    let e = w
        .send(
            "gh",
            &[("X-Hub-Signature-256", &signed("{")), ("X-GitHub-Event", "push")],
            "{",
        )
        .await
        .unwrap_err();
    // Refused after auth passed: a sender's, not a stranger's.
    assert_eq!((e.status(), w.last().outcome), (400, Outcome::Rejected));
}

#[tokio::test]
async fn a_match_is_queued_and_recorded_once() {
    let w = World::new();
    let body = r#"{"ref":"refs/heads/main"}"#;
    let sig = signed(body);
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-Hub-Signature-256", sig.as_str()),
        ("X-GitHub-Delivery", "d-1"),
    ];
    let Ok(Answer::Accepted { about, tasks }) = w.send("gh", &headers, body).await else {
        panic!("not accepted")
    };
    assert_eq!(
        (about.delivery_id.as_str(), about.event.as_str(), tasks.len()),
        ("d-1", "push", 1)
    );
    assert!(w.engine.task(&tasks[0].id).is_some(), "the task is in the engine");
    let record = w.deliveries.get("d-1").unwrap();
    assert_eq!((record.outcome, record.status), (Outcome::Accepted, 202));
    assert_eq!(record.task_ids, [tasks[0].id]);
    assert_eq!(record.body().as_deref(), Some(body.as_bytes()), "kept for replay");
    // The same delivery id again: a duplicate, nothing queued.
    let Ok(Answer::Duplicate {
        first,
        tasks: first_tasks,
        ..
    }) = w.send("gh", &headers, body).await
    else {
        panic!("not a duplicate")
    };
    assert_eq!((first.as_str(), first_tasks), ("d-1", vec![tasks[0].id]));
    assert_eq!(w.last().outcome, Outcome::Duplicate);
    assert_eq!(w.engine.counts().0 + w.engine.counts().1, 1);
}

#[tokio::test]
async fn no_match_is_ignored_with_the_trace() {
    let w = World::new();
    let body = r#"{"ref":"refs/heads/dev"}"#;
    let sig = signed(body);
    let answer = w
        .send("gh", &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)], body)
        .await
        .unwrap();
    assert!(matches!(answer, Answer::Ignored { .. }), "{answer:?}");
    let record = w.last();
    assert_eq!(
        (record.outcome, record.reason.as_deref()),
        (Outcome::Ignored, Some("no rule matched"))
    );
    assert_eq!(record.rules[0].result, "not matched");
}

#[tokio::test]
async fn a_full_queue_refuses_the_delivery_with_503() {
    let w = World::new();
    // One runs, one waits: the queue (max 1) is then full.
    for _ in 0..2 {
        assert_eq!(w.send("plain", &[], r#"{"kind":"slow"}"#).await.unwrap().status(), 202);
    }
    let e = w.send("plain", &[], r#"{"kind":"slow"}"#).await.unwrap_err();
    assert_eq!(e, Refused::QueueFull);
    assert_eq!(w.last().status, 503);
}

#[tokio::test]
async fn a_value_no_process_can_take_is_a_422_naming_the_param() {
    let w = World::new();
    let e = w
        .send("plain", &[], r#"{"kind":"echo","text":"a\u0000b"}"#)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 422);
    assert!(e.to_string().contains("param `text` contains a NUL byte"), "{e}");
    assert!(w.last().rules[0].result.starts_with("matched, but cannot run"));
    assert_eq!(w.engine.counts(), (0, 0));
}

#[tokio::test]
async fn a_dry_run_judges_and_records_nothing() {
    let w = World::new();
    let mut h = HeaderPairs::new();
    h.add("content-type", "application/json");
    let query = [("dry_run".to_string(), "1".to_string())];
    let arrival = Arrival {
        source: "plain",
        client: Client::Addr("127.0.0.1".parse().unwrap()),
        headers: &h,
        query: &query,
        request_id: "r".into(),
        request: Default::default(),
    };
    let body = Bytes::from_static(br#"{"kind":"echo","text":"hi"}"#);
    let Ok(Answer::DryRun(trace)) = admit(w.intake(), &arrival, async { Ok(body) }).await else {
        panic!("no dry run")
    };
    assert_eq!(trace["would_run"], 1);
    assert_eq!(trace["rules"][0]["argv"], serde_json::json!(["echo", "--text=hi"]));
    let all = crate::delivery::Filter {
        limit: 100,
        ..Default::default()
    };
    assert!(w.deliveries.list(&all, None).unwrap().is_empty());
    assert_eq!(w.engine.counts(), (0, 0));
}

#[tokio::test]
async fn a_body_that_fails_to_arrive_is_refused_after_the_source_checks() {
    let w = World::new();
    let h = HeaderPairs::new();
    let arrival = Arrival {
        source: "plain",
        client: Client::Addr("127.0.0.1".parse().unwrap()),
        headers: &h,
        query: &[],
        request_id: "r".into(),
        request: Default::default(),
    };
    let e = admit(w.intake(), &arrival, async { Err(Refused::TooLarge { limit: 10 }) })
        .await
        .unwrap_err();
    assert_eq!((e.status(), w.last().outcome), (413, Outcome::Refused));
    // An unknown source is refused without the body being read at all.
    let arrival = Arrival {
        source: "nope",
        ..arrival
    };
    let e = admit(w.intake(), &arrival, async { panic!("the body was read") })
        .await
        .unwrap_err();
    assert_eq!(e.status(), 404);
}
