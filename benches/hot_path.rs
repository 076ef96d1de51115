//! Micro-benchmarks of a delivery's hot path: `cargo bench --bench hot_path`.
//!
//! - `verify/github_hmac_sha256_25KiB`: `auth::verify` of a GitHub source
//!   (HMAC-SHA256 of a 25 KiB body, `X-Hub-Signature-256`), target < 20 µs.
//! - `condition/eval`: one compiled condition,
//!   `ref == "refs/heads/main" && str::regex_matches(repo, "^acme/")`, target < 1 µs.
//! - `judge/push`: `Routes::judge` on `tests/fixtures/github/push.json`
//!   (select the mappings, extract three params, evaluate the condition, plus
//!   a rule without one), as `POST /hooks/github` does it.
//! - `route/select`: the mapping lookup alone.
//! - `parse/push_json_wanted`: the fixture parsed the way `POST /hooks/github`
//!   parses it, into a value holding only what the mappings read (all of it checked).
//! - `parse/push_json_full`: a full `serde_json::Value` of the fixture, for scale.
//!
//! Everything is built through `hookrunner::config::parse`, the way the daemon
//! builds it from `webhook.yaml`.
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hookrunner::auth::{self, HmacAlgo};
use hookrunner::config::{parse, Config};
use hookrunner::mapping::condition::{Condition, Vars};
use hookrunner::mapping::Delivery;
use std::path::Path;
use std::time::SystemTime;

const SECRET: &str = "bench-secret";
const CONDITION: &str = r#"ref == "refs/heads/main" && str::regex_matches(repo, "^acme/")"#;

fn config() -> Config {
    let text = format!(
        r#"
sources:
  github:
    provider: github
    secret: {SECRET}
programs:
  deploy:
    command: /bin/true
    params: [ref, repo]
  notify:
    command: /bin/true
    params: [repo, ref, author]
mappings:
  github:
    push:
      params:
        ref: payload.ref
        repo: payload.repository.full_name
        author: payload.head_commit.author.name
      rules:
        - if: {CONDITION}
          run: deploy
        - run: notify
"#
    );
    parse(&text, Path::new("x/webhook.yaml")).unwrap_or_else(|e| panic!("bench config: {e}"))
}

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/github/push.json")).expect("push.json")
}

/// A 25 KiB body: the push fixture padded with a JSON string field.
fn body_25k() -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture()).unwrap();
    let len = serde_json::to_vec(&v).unwrap().len();
    v["padding"] = serde_json::Value::String("x".repeat(25 * 1024 - len - 13));
    let body = serde_json::to_vec(&v).unwrap();
    assert_eq!(body.len(), 25 * 1024);
    body
}

fn bench_verify(c: &mut Criterion) {
    let config = config();
    let auth = &config.sources["github"].auth;
    let body = body_25k();
    let sig = format!(
        "sha256={}",
        hex::encode(HmacAlgo::Sha256.sign(SECRET.as_bytes(), &body))
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("x-hub-signature-256"),
        HeaderValue::from_str(&sig).unwrap(),
    );
    headers.insert(
        HeaderName::from_static("x-github-event"),
        HeaderValue::from_static("push"),
    );
    let now = SystemTime::now();
    assert!(auth::verify(auth, &headers, &[], &body, now).is_ok());
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("github_hmac_sha256_25KiB", |b| {
        b.iter(|| auth::verify(black_box(auth), black_box(&headers), &[], black_box(&body), now))
    });
    g.finish();
}

fn bench_condition(c: &mut Criterion) {
    let cond = Condition::compile(CONDITION, |_| true).unwrap();
    let names = ["ref", "repo", "author", "source", "event", "action"];
    let values: Vec<evalexpr::Value> = ["refs/heads/main", "acme/app", "Codertocat", "github", "push", ""]
        .into_iter()
        .map(evalexpr::Value::from)
        .collect();
    let vars = Vars {
        names: &names,
        values: &values,
    };
    assert_eq!(cond.eval(&vars), Ok(true));
    c.bench_function("condition/eval", |b| b.iter(|| cond.eval(black_box(&vars))));
}

fn bench_judge(c: &mut Criterion) {
    let config = config();
    let routes = &config.sources["github"].routes;
    let json: serde_json::Value = serde_json::from_slice(&fixture()).unwrap();
    let headers = HeaderMap::new();
    let request = hookrunner::mapping::Request::default();
    let delivery = Delivery {
        source: "github",
        event: "push",
        raw_event: None,
        action: "",
        body: &json,
        headers: &headers,
        query: &[],
        request: &request,
        raw: b"",
        secret_headers: Vec::new(),
        secret_query: Vec::new(),
    };
    let j = routes.judge(&delivery);
    assert_eq!(
        (j.trace.len(), j.matches.len()),
        (2, 1),
        "one rule not matched (ref is master), one matched"
    );
    c.bench_function("judge/push", |b| b.iter(|| routes.judge(black_box(&delivery))));
    c.bench_function("route/select", |b| b.iter(|| routes.select(black_box(&delivery)).len()));
    let raw = fixture();
    let wanted = &config.sources["github"].body;
    assert_eq!(
        routes
            .judge(&Delivery {
                body: &wanted.parse(&raw).unwrap(),
                ..delivery
            })
            .params,
        j.params,
        "the sparse body gives the same params"
    );
    c.bench_function("parse/push_json_wanted_8.6KiB", |b| {
        b.iter(|| wanted.parse(black_box(&raw)).unwrap())
    });
    c.bench_function("parse/push_json_full_8.6KiB", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&raw)).unwrap())
    });
}

/// Dedup of a GitHub delivery (the default for GitHub sources): a new
/// delivery id checked and remembered, in a window that already holds
/// 100,000 ids (the cap), so each check also drops the oldest.
fn bench_dedup(c: &mut Criterion) {
    use hookrunner::delivery::dedup::DedupCache;
    let cache = DedupCache::default();
    let window = std::time::Duration::from_secs(3600);
    for i in 0..100_000u64 {
        cache.check("github", &format!("0f3a5c1e-1111-2222-3333-{i:012}"), window, "d");
    }
    let mut n = 100_000u64;
    c.bench_function("dedup/check_new_id", |b| {
        b.iter_batched(
            || {
                n += 1;
                format!("0f3a5c1e-1111-2222-3333-{n:012}")
            },
            |id| cache.check("github", black_box(&id), window, "0b9c2f4e-record"),
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench_verify, bench_condition, bench_judge, bench_dedup);
criterion_main!(benches);
