//! How deliveries are answered, with real requests to the real daemon:
//! `response` of a source and of a mapping key (statuses, text bodies,
//! headers), wait mode (the failure status, the handlers' raw stdout),
//! `methods`, `cors` and its preflights, `server.prefix`, source names with
//! `/`, and generic HMAC signatures as adnanh's users send them.

mod common;
use common::*;

const CONFIG: &str = r#"
tasks: {output_limit: 1KiB}
sources:
  shaped:
    provider: generic
    auth: {token: tok}
    event: {field: kind}
    response:
      status: 201
      body: "queued, thanks\n"
      headers: {X-Served-By: hookrunner, Content-Type: text/x-custom}
      no_match: 409
      no_match_body: "nothing to do\n"
  plain:
    provider: generic
    auth: none
    event: {field: kind}
  strict:
    provider: generic
    auth: none
    event: {field: kind}
    response: {failure: 502}
  raw:
    provider: generic
    auth: none
    event: {field: kind}
    response: {output: true, output_on_failure: true}
  a/b:
    provider: generic
    auth: none
programs:
  say:
    command: [printf, "said %s\n"]
    args: ["{word}"]
  fail:
    command: [sh, -c, 'printf "building %s\n" "$1"; echo oops >&2; exit 3', sh]
    args: ["{word}"]
  noisy:
    command: handlers/noisy.sh
mappings:
  shaped:
    ship:
      params: {word: payload.word}
      rules: [{run: say}]
    build:
      params: {word: payload.word}
      response: {status: 200, body: "build started\n", headers: {X-Mapping: build}}
      rules: [{run: say}]
    quiet:
      params: {word: payload.word}
      response: {no_match: 202}
      rules: [{if: word == "never", run: say}]
  plain:
    ok:
      params: {word: payload.word}
      rules: [{run: say}]
    bad:
      params: {word: payload.word}
      rules: [{run: fail}]
  strict:
    bad:
      params: {word: payload.word}
      rules: [{run: fail}]
    hushed:
      params: {word: payload.word}
      response: {failure_body: "the build failed\n"}
      rules: [{run: fail}]
  raw:
    two:
      params: {word: payload.word}
      rules: [{run: say, if: 'word != ""'}, {run: fail}]
    ok:
      params: {word: payload.word}
      rules: [{run: say}, {run: say}]
    bad:
      params: {word: payload.word}
      rules: [{run: fail}]
    noisy: {rules: [{run: noisy}]}
  a/b:
    default:
      params: {word: payload.word}
      rules: [{run: say}]
"#;

fn send(d: &Daemon, path: &str, body: &str) -> Resp {
    d.post_json(path, &[("X-Webhook-Token", "tok")], body.as_bytes())
}

// ------------------------------------------------------------- response

#[test]
fn a_source_sets_the_success_status_body_and_headers() {
    let d = Daemon::start(CONFIG);
    let r = send(&d, "/hooks/shaped", r#"{"kind":"ship","word":"hi"}"#);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.text, "queued, thanks\n");
    assert_eq!(r.header("content-type"), Some("text/x-custom"));
    assert_eq!(r.header("x-served-by"), Some("hookrunner"));
    assert!(r.header("x-request-id").is_some());
    // The task ran, as for any accepted delivery.
    let record = d.get("/deliveries?limit=1").json()["deliveries"][0].clone();
    assert_eq!(
        (record["outcome"].as_str(), record["status"].as_u64()),
        (Some("accepted"), Some(201))
    );
    let task = d.wait_task(record["task_ids"][0].as_str().unwrap());
    assert_eq!(task["stdout"], "said hi\n");
}

#[test]
fn a_mapping_key_overrides_the_source_key_by_key() {
    let d = Daemon::start(CONFIG);
    let r = send(&d, "/hooks/shaped", r#"{"kind":"build","word":"x"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text, "build started\n");
    // Headers merge by name: the source's stay, the mapping's are added.
    assert_eq!(r.header("x-served-by"), Some("hookrunner"));
    assert_eq!(r.header("x-mapping"), Some("build"));
    assert_eq!(r.header("content-type"), Some("text/x-custom"));
    // `quiet` sets only `no_match`: its no-match answer keeps the source's body.
    let r = send(&d, "/hooks/shaped", r#"{"kind":"quiet","word":"y"}"#);
    assert_eq!((r.status, r.text.as_str()), (202, "nothing to do\n"));
}

#[test]
fn no_match_has_its_own_status_and_body_and_the_record_says_so() {
    let d = Daemon::start(CONFIG);
    let r = send(&d, "/hooks/shaped", r#"{"kind":"unknown"}"#);
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.text, "nothing to do\n");
    assert_eq!(r.header("x-served-by"), Some("hookrunner"));
    let record = d.get("/deliveries?limit=1").json()["deliveries"][0].clone();
    assert_eq!(
        (record["outcome"].as_str(), record["status"].as_u64()),
        (Some("ignored"), Some(409))
    );
    // Without `response`, no match is the JSON 200 it always was.
    let r = d.post_json("/hooks/plain", &[], br#"{"kind":"unknown"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["tasks"], serde_json::json!([]));
}

#[test]
fn headers_go_on_answers_after_auth_only_and_json_stays_json() {
    let d = Daemon::start(CONFIG);
    // Refused before auth: none of the source's headers.
    let r = d.post_json("/hooks/shaped", &[("X-Webhook-Token", "wrong")], b"{}");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-served-by"), None);
    // Refused after auth (no event): the headers, but the JSON error keeps its type.
    let r = send(&d, "/hooks/shaped", "{}");
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.header("x-served-by"), Some("hookrunner"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.error(), "the body has no event name in the configured `event.field`");
}

// ------------------------------------------------------------- wait mode

#[test]
fn a_failed_handler_in_wait_mode_is_a_500_by_default_or_the_configured_status() {
    let d = Daemon::start(CONFIG);
    let r = d.post_json("/hooks/plain?wait=20s", &[], br#"{"kind":"bad","word":"w"}"#);
    assert_eq!(r.status, 500, "{}", r.text);
    let body = r.json();
    assert_eq!(body["finished"], true);
    assert_eq!(body["tasks"][0]["status"], "failed");
    assert_eq!(body["tasks"][0]["exit_code"], 3);
    let r = d.post_json("/hooks/strict?wait=20s", &[], br#"{"kind":"bad","word":"w"}"#);
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.json()["tasks"][0]["status"], "failed");
    // `failure_body`: the sender gets that text, not the task's argv and output.
    let r = d.post_json("/hooks/strict?wait=20s", &[], br#"{"kind":"hushed","word":"w"}"#);
    assert_eq!((r.status, r.text.as_str()), (502, "the build failed\n"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // Success is still 200 with the tasks.
    let r = d.post_json("/hooks/plain?wait=20s", &[], br#"{"kind":"ok","word":"w"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["tasks"][0]["status"], "succeeded");
    // The record was written when the tasks were queued.
    let record = d.get("/deliveries?limit=1").json()["deliveries"][0].clone();
    assert_eq!(record["status"], 202);
}

#[test]
fn output_answers_with_the_raw_stdout_of_every_task_in_order() {
    let d = Daemon::start(CONFIG);
    let r = d.post_json("/hooks/raw?wait=20s", &[], br#"{"kind":"ok","word":"hello"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text, "said hello\nsaid hello\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // On failure, with `output_on_failure`: stdout only (not stderr), with the failure status.
    let r = d.post_json("/hooks/raw?wait=20s", &[], br#"{"kind":"bad","word":"x"}"#);
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.text, "building x\n");
    // One task of two failed: the delivery failed; both outputs, in task order.
    let r = d.post_json("/hooks/raw?wait=20s", &[], br#"{"kind":"two","word":"y"}"#);
    assert_eq!((r.status, r.text.as_str()), (500, "said y\nbuilding y\n"));
}

#[test]
fn the_raw_output_is_the_whole_file_not_the_tasks_tail() {
    let d = Daemon::start(CONFIG);
    let r = d.post_json("/hooks/raw?wait=20s", &[], br#"{"kind":"noisy"}"#);
    assert_eq!(r.status, 500);
    // All 199,998 bytes, though the task keeps only the last 1 KiB (`output_limit`).
    assert_eq!(r.text.len(), 199_998);
    assert!(r.text.starts_with("xxxx") && r.text.ends_with("THE-END\n"));
    let task = d.get("/tasks?limit=1").json()["tasks"][0].clone();
    assert!(task["stdout"].as_str().unwrap().len() <= 1024);
}

#[test]
fn a_wait_that_runs_out_is_the_usual_accepted_answer() {
    let d = Daemon::start(
        r#"
sources:
  s:
    provider: generic
    auth: none
    response: {status: 200, body: "later\n", output: true}
programs:
  slow:
    command: [sleep, "3"]
mappings:
  s:
    default: {rules: [{run: slow}]}
"#,
    );
    let r = d.post_json("/hooks/s?wait=200ms", &[], b"{}");
    assert_eq!((r.status, r.text.as_str()), (200, "later\n"));
}

// ------------------------------------------------------------- methods

#[test]
fn methods_other_than_the_listed_ones_are_405_with_allow() {
    let d = Daemon::start(
        r#"
sources:
  poll:
    provider: generic
    auth: none
    methods: [GET, PUT]
  default: {provider: generic, auth: none}
programs:
  say:
    command: [printf, "said %s\n"]
    args: ["{word}"]
mappings:
  poll:
    default:
      params: {word: query.word}
      rules: [{run: say}]
"#,
    );
    let get = request(
        "GET",
        &d.url("/hooks/poll?word=polled"),
        &[("Content-Type", "application/json")],
        Some(b"{}"),
    );
    assert_eq!(get.status, 202, "{}", get.text);
    let id = get.json()["tasks"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(d.wait_task(&id)["stdout"], "said polled\n");
    // A GET as a browser or `curl` sends it: no body, no Content-Type.
    let bare = request("GET", &d.url("/hooks/poll?word=bare"), &[], None);
    assert_eq!(bare.status, 202, "{}", bare.text);
    let id = bare.json()["tasks"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(d.wait_task(&id)["stdout"], "said bare\n");
    let post = d.post_json("/hooks/poll", &[], b"{}");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, PUT"));
    assert_eq!(post.error(), "method POST is not allowed here");
    // The default is POST alone.
    let r = request("GET", &d.url("/hooks/default"), &[], None);
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    // An unknown source is a 404 whatever the method.
    assert_eq!(request("GET", &d.url("/hooks/nope"), &[], None).status, 404);
}

// ------------------------------------------------------------- CORS

const CORS: &str = r#"
sources:
  browser:
    provider: generic
    auth: none
    cors: {origins: ["https://app.example"], headers: [Content-Type, X-Token], max_age: 10m}
  anyone:
    provider: generic
    auth: none
    methods: [POST, PUT]
    cors: {origins: "*"}
  closed: {provider: generic, auth: none}
programs:
  say:
    command: [printf, "said\n"]
mappings:
  browser:
    default: {rules: [{run: say}]}
"#;

fn preflight(d: &Daemon, path: &str, origin: &str) -> Resp {
    request(
        "OPTIONS",
        &d.url(path),
        &[("Origin", origin), ("Access-Control-Request-Method", "POST")],
        None,
    )
}

#[test]
fn a_preflight_from_a_listed_origin_gets_204_and_the_allow_headers() {
    let d = Daemon::start(CORS);
    let r = preflight(&d, "/hooks/browser", "https://app.example");
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(r.text, "");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(r.header("access-control-allow-methods"), Some("POST"));
    assert_eq!(r.header("access-control-allow-headers"), Some("Content-Type, X-Token"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("vary"), Some("Origin"));
    // `"*"`: any origin; the methods default to the source's.
    let r = preflight(&d, "/hooks/anyone", "https://elsewhere.example");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-methods"), Some("POST, PUT"));
    assert_eq!(r.header("access-control-allow-headers"), Some("Content-Type"));
    assert_eq!(r.header("access-control-max-age"), None);
    // Preflights run nothing and are not deliveries.
    assert_eq!(d.get("/deliveries").json()["deliveries"], serde_json::json!([]));
    assert_eq!(d.get("/tasks").json()["tasks"], serde_json::json!([]));
}

#[test]
fn a_preflight_from_another_origin_is_403_and_without_cors_options_is_405() {
    let d = Daemon::start(CORS);
    let r = preflight(&d, "/hooks/browser", "https://evil.example");
    assert_eq!(r.status, 403);
    assert_eq!(
        r.error(),
        "origin `https://evil.example` is not allowed by `cors` of source `browser`"
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = preflight(&d, "/hooks/closed", "https://app.example");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    // OPTIONS that is not a preflight is a method like any other.
    let r = request(
        "OPTIONS",
        &d.url("/hooks/browser"),
        &[("Origin", "https://app.example")],
        None,
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("POST, OPTIONS")));
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"));
}

#[test]
fn answers_to_an_allowed_origin_carry_allow_origin_and_vary() {
    let d = Daemon::start(CORS);
    let r = d.post_json("/hooks/browser", &[("Origin", "https://app.example")], b"{}");
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = d.post_json("/hooks/browser", &[("Origin", "https://evil.example")], b"{}");
    assert_eq!(r.status, 202);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("vary"), Some("Origin"));
    // Errors too, so a page can read them.
    let r = d.post(
        "/hooks/browser",
        &[("Origin", "https://app.example"), ("Content-Type", "application/json")],
        b"{",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"));
    let r = d.post_json("/hooks/anyone", &[("Origin", "https://x.example")], b"{}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

// ------------------------------------------------------------- paths

#[test]
fn a_source_named_with_a_slash_is_reached_raw_and_encoded() {
    let d = Daemon::start(CONFIG);
    for path in ["/hooks/a/b", "/hooks/a%2Fb", "/hooks/a%2fb"] {
        let r = d.post_json(path, &[], br#"{"word":"slash"}"#);
        assert_eq!(r.status, 202, "{path}: {}", r.text);
        assert_eq!(r.json()["source"], "a/b", "{path}");
    }
    assert_eq!(d.post_json("/hooks/a", &[], b"{}").status, 404);
    assert_eq!(d.post_json("/hooks/a/b/", &[], b"{}").status, 404);
}

#[test]
fn hooks_can_be_served_at_the_root_or_under_another_prefix() {
    let root = Daemon::start(&format!("server: {{prefix: \"\"}}\n{CONFIG}"));
    let r = root.post_json("/plain", &[], br#"{"kind":"ok","word":"root"}"#);
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(root.post_json("/a/b", &[], b"{}").status, 202);
    assert_eq!(root.post_json("/hooks/plain", &[], b"{}").status, 404);
    // The API keeps its paths, and `/` still leads to the dashboard.
    assert_eq!(root.get("/tasks").status, 200);
    assert_eq!(root.get("/healthz").json()["status"], "ok");
    let ui = root.get("/");
    assert_eq!(ui.status, 200, "{}", ui.text);
    assert_eq!(ui.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(root.post_json("//plain", &[], b"{}").status, 404);

    let v1 = Daemon::start(&format!("server: {{prefix: /api/v1}}\n{CONFIG}"));
    let r = v1.post_json("/api/v1/plain", &[], br#"{"kind":"ok","word":"v1"}"#);
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(v1.post_json("/api/v1/a%2Fb", &[], b"{}").status, 202);
    let r = v1.post_json("/hooks/plain", &[], b"{}");
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "there is nothing at `/hooks/plain`");
    assert_eq!(v1.post_json("/api/v1", &[], b"{}").status, 404);
}

#[test]
fn a_reload_moves_the_prefix() {
    let d = Daemon::start(CONFIG);
    assert_eq!(d.post_json("/hooks/a/b", &[], b"{}").status, 202);
    std::fs::write(d.path("webhook.yaml"), format!("server: {{prefix: /v2}}\n{CONFIG}")).unwrap();
    let r = d.post("/-/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(d.post_json("/v2/a/b", &[], b"{}").status, 202);
    assert_eq!(d.post_json("/hooks/a/b", &[], b"{}").status, 404);
}

#[test]
fn a_source_under_an_api_path_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("webhook.yaml");
    std::fs::write(
        &config,
        "server:\n  prefix: \"\"\nsources:\n  tasks:\n    provider: generic\n    auth: none\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("webhook.yaml:4:3: `sources.tasks`: source `tasks` would be served at `/tasks`, under `/tasks`, which the API serves"),
        "{err}"
    );
}

// ------------------------------------------------------------- signatures

const SIGNED: &str = r#"
sources:
  signed:
    provider: generic
    auth: {hmac: sha256, secret: k3y, header: X-Signature, prefix: "sha256=", query: sig}
  by_query:
    provider: generic
    auth: {hmac: sha1, secret: k3y, query: signature}
"#;

fn sig256(body: &[u8]) -> String {
    hmac_sha256_hex("k3y", body)
}

#[test]
fn signatures_bare_prefixed_upper_case_or_listed_verify() {
    let d = Daemon::start(SIGNED);
    let body = br#"{"a":1}"#;
    let good = sig256(body);
    let bad = "0".repeat(64);
    for sig in [
        format!("sha256={good}"),
        good.clone(),
        good.to_uppercase(),
        format!("sha256={bad},sha256={good}"),
        format!("{bad}, sha256={}", good.to_uppercase()),
    ] {
        let r = d.post_json("/hooks/signed", &[("X-Signature", &sig)], body);
        assert_eq!(r.status, 200, "{sig}: {}", r.text);
    }
    for sig in [format!("sha256={bad}"), format!("{bad},{bad}")] {
        let r = d.post_json("/hooks/signed", &[("X-Signature", &sig)], body);
        assert_eq!(r.status, 401, "{sig}");
        assert_eq!(r.error(), "the signature does not match");
    }
}

#[test]
fn a_signature_can_come_from_the_query_the_header_first() {
    let d = Daemon::start(SIGNED);
    let body = br#"{"a":1}"#;
    let good = sig256(body);
    let r = d.post_json(&format!("/hooks/signed?sig={good}"), &[], body);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = d.post_json(&format!("/hooks/signed?sig=sha256%3D{good}"), &[], body);
    assert_eq!(r.status, 200, "{}", r.text);
    // The header, when sent, decides.
    let r = d.post_json(
        &format!("/hooks/signed?sig={good}"),
        &[("X-Signature", "sha256=00")],
        body,
    );
    assert_eq!(r.status, 401);
    let r = d.post_json("/hooks/signed", &[], body);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.error(),
        "no signature was sent (expected the `X-Signature` header or the `sig` query parameter)"
    );
    // SHA-1, from the query only.
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"k3y").unwrap();
    mac.update(body);
    let sha1 = hex::encode(mac.finalize().into_bytes());
    let r = d.post_json(
        &format!("/hooks/by_query?signature={sha1}"),
        &[("X-Signature", "x")],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn a_signature_over_an_empty_body_is_checked_like_any_other() {
    let d = Daemon::start(SIGNED);
    // A correct signature of the empty body passes, and the empty body is
    // accepted (this source has no mappings: `200`, nothing runs).
    let good = format!("sha256={}", sig256(b""));
    let r = d.post("/hooks/signed", &[("X-Signature", &good)], b"");
    assert_eq!(r.status, 200, "{}", r.text);
    let record = d.get("/deliveries?limit=1").json()["deliveries"][0].clone();
    assert!(
        !record["reason"].as_str().unwrap_or("").contains("signature"),
        "{record}"
    );
    // A signature of another body does not.
    let other = format!("sha256={}", sig256(b"{}"));
    let r = d.post("/hooks/signed", &[("X-Signature", &other)], b"");
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");
}

#[test]
fn hookrunner_send_signs_into_the_query_and_posts_under_the_prefix() {
    let d = Daemon::start(&format!(
        "server: {{prefix: /api/v1}}\n{}",
        SIGNED.replace("header: X-Signature, ", "")
    ));
    let file = d.path("body.json");
    std::fs::write(&file, r#"{"a":1}"#).unwrap();
    let config = d.path("webhook.yaml");
    let out = std::process::Command::new(BIN)
        .args(["send", "--source", "signed"])
        .arg(&file)
        .arg("--config")
        .arg(&config)
        .args(["--url", &d.url("")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let record = d.get("/deliveries?limit=1").json()["deliveries"][0].clone();
    assert_eq!(record["source"], "signed");
    assert_eq!(record["outcome"], "ignored", "{record}");
}
