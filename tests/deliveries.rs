//! Deliveries on record, dedup, replay, dry runs and `hookrunner explain`:
//! "why didn't my hook fire?" answered from the daemon itself.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &str = "dedup-secret";

const CONFIG: &str = r#"
server:
  trusted_proxies: [127.0.0.1]
sources:
  github:
    provider: github
    secret: dedup-secret
    dedup: {window: 2s}
  ci:
    provider: generic
    auth: {token: ci-token, header: X-Token}
    event: {field: kind}
    dedup: {key: body_sha256, window: 1m}
programs:
  deploy:
    command: handlers/log-event.sh
    params: [ref, repo]
mappings:
  github:
    push:
      params:
        ref: payload.ref
        repo: payload.repository.full_name
      rules:
        - if: ref == "refs/heads/main"
          run: deploy
  ci:
    "*":
      params:
        n: payload.n
        first: payload.items[0].name
      rules:
        - run: log-event
"#;

fn push(d: &Daemon, delivery: &str, git_ref: &str) -> Resp {
    let body = json!({"ref": git_ref, "repository": {"full_name": "acme/app"}}).to_string();
    let sig = format!("sha256={}", hmac_sha256_hex(SECRET, body.as_bytes()));
    d.post_json(
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Delivery", delivery),
        ],
        body.as_bytes(),
    )
}

#[test]
fn a_redelivery_inside_the_window_runs_nothing_and_after_it_runs_again() {
    let d = Daemon::start(CONFIG);
    let first = push(&d, "dlv-1", "refs/heads/main");
    let first_tasks = Daemon::task_ids(&first);
    assert_eq!(first.json()["delivery_id"], "dlv-1");

    let again = push(&d, "dlv-1", "refs/heads/main");
    assert_eq!(again.status, 200, "{}", again.text);
    let body = again.json();
    assert_eq!(body["duplicate"], true);
    assert_eq!(body["first_delivery"], "dlv-1");
    assert_eq!(body["tasks"][0]["id"], first_tasks[0].as_str());
    assert_eq!(
        d.get("/tasks").json()["tasks"].as_array().unwrap().len(),
        1,
        "the duplicate ran something"
    );

    // The duplicate is on record and says so.
    let dups = d.get("/deliveries?outcome=duplicate").json();
    let dup = &dups["deliveries"][0];
    assert_eq!(dup["delivery_id"], "dlv-1");
    assert_eq!(dup["duplicate_of"], "dlv-1");
    assert_ne!(dup["id"], "dlv-1", "the repeat has a record of its own");

    std::thread::sleep(Duration::from_millis(2100));
    let later = push(&d, "dlv-1", "refs/heads/main");
    assert_eq!(later.status, 202, "after the window the delivery runs: {}", later.text);
}

#[test]
fn identical_bodies_are_duplicates_with_body_sha256() {
    let d = Daemon::start(CONFIG);
    let send = |body: &str| d.post_json("/hooks/ci", &[("X-Token", "ci-token")], body.as_bytes());
    assert_eq!(send(r#"{"kind":"build","n":1}"#).status, 202);
    assert_eq!(send(r#"{"kind":"build","n":1}"#).json()["duplicate"], true);
    assert_eq!(send(r#"{"kind":"build","n":2}"#).status, 202);
}

#[test]
fn an_ignored_delivery_says_which_rule_failed_and_shows_the_params() {
    let d = Daemon::start(CONFIG);
    let r = push(&d, "dlv-ignored", "refs/heads/feature");
    assert_eq!(r.status, 200);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("/deliveries/dlv-ignored"),
        "{}",
        r.text
    );
    let rec = d.get("/deliveries/dlv-ignored").json();
    assert_eq!(rec["outcome"], "ignored");
    assert_eq!(rec["source"], "github");
    assert_eq!(rec["event"], "push");
    assert_eq!(rec["reason"], "no rule matched");
    assert_eq!(
        rec["params"]["push"],
        json!({"ref": "refs/heads/feature", "repo": "acme/app"})
    );
    assert_eq!(
        rec["rules"],
        json!([{"mapping": "push", "rule": 0, "if": "ref == \"refs/heads/main\"", "program": "deploy", "result": "not matched"}])
    );
    assert_eq!(rec["task_ids"], json!([]));
    assert_eq!(rec["remote_addr"], "127.0.0.1");
    assert!(rec["received_at"].as_str().unwrap().ends_with('Z'));
    // The signature is masked in the recorded headers.
    let headers = rec["headers"].as_array().unwrap();
    assert!(headers.contains(&json!(["x-hub-signature-256", "***"])), "{headers:?}");
    assert!(headers.contains(&json!(["x-github-event", "push"])));

    // An event no mapping knows says so.
    let body = b"{}";
    let sig = format!("sha256={}", hmac_sha256_hex(SECRET, body));
    d.post_json(
        "/hooks/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Delivery", "dlv-ping"),
        ],
        body,
    );
    let rec = d.get("/deliveries/dlv-ping").json();
    assert_eq!(
        rec["reason"],
        "no mapping of source `github` has a key for event `ping`"
    );
}

#[test]
fn rejected_deliveries_say_why_in_plain_words() {
    let d = Daemon::start(CONFIG);
    let body = br#"{"ref":"refs/heads/main"}"#;
    let wrong = format!("sha256={}", hmac_sha256_hex("wrong", body));
    let r = d.post_json(
        "/hooks/github",
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &wrong)],
        body,
    );
    assert_eq!(r.status, 401);
    d.post_json("/hooks/ci", &[("X-Token", "nope")], b"{}");
    d.post_json("/hooks/nowhere", &[], b"{}");
    d.post_json("/hooks/ci", &[("X-Token", "ci-token")], b"{not json");

    let reasons_of = |outcome: &str| -> Vec<(String, u64, String)> {
        let list = d.get(&format!("/deliveries?outcome={outcome}")).json();
        list["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["source"].as_str().unwrap().to_string(),
                    r["status"].as_u64().unwrap(),
                    r["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // Refused before or at auth: `refused`.
    let refused = reasons_of("refused");
    let refused: Vec<(&str, u64, &str)> = refused.iter().map(|(s, n, r)| (s.as_str(), *n, r.as_str())).collect();
    assert_eq!(
        refused,
        [
            ("nowhere", 404, "there is no source named `nowhere`"),
            ("ci", 401, "the token does not match"),
            ("github", 401, "the signature does not match"),
        ]
    );
    // Refused after auth passed: `rejected`.
    let rejected = reasons_of("rejected");
    assert_eq!((rejected.len(), rejected[0].1), (1, 400));
    assert!(
        rejected[0].2.starts_with("the body is not valid JSON"),
        "{}",
        rejected[0].2
    );
    // Token headers are masked too, and bodies of refused deliveries are not kept.
    let list = d.get("/deliveries?outcome=refused").json();
    let recs = list["deliveries"].as_array().unwrap();
    assert!(recs[1]["headers"]
        .as_array()
        .unwrap()
        .contains(&json!(["x-token", "***"])));
    assert_eq!(recs[1]["body_kept"], false);
    assert!(!list.to_string().contains("nope"));
    // Filters.
    assert_eq!(
        d.get("/deliveries?source=github").json()["deliveries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        d.get("/deliveries?outcome=accepted").json()["deliveries"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(d.get("/deliveries?outcome=bogus").status, 400);
    assert_eq!(d.get("/deliveries/unknown").status, 404);
}

#[test]
fn replay_runs_a_delivery_again_and_links_both_records() {
    let d = Daemon::start(CONFIG);
    let first = push(&d, "dlv-replay", "refs/heads/main");
    let old_task = Daemon::task_ids(&first)[0].clone();
    d.wait_task(&old_task);
    let r = d.post("/deliveries/dlv-replay/replay", &[], b"");
    let new_tasks = Daemon::task_ids(&r);
    assert_ne!(new_tasks[0], old_task);
    let task = d.wait_task(&new_tasks[0]);
    assert_eq!(task["status"], "succeeded");
    assert_eq!(task["params"]["ref"], "refs/heads/main");
    let new_record = r.header("location").unwrap().to_string();
    let replayed = d.get(&new_record).json();
    assert_eq!(replayed["replay_of"], "dlv-replay");
    assert_eq!(replayed["task_ids"], json!(new_tasks));
    let original = d.get("/deliveries/dlv-replay").json();
    assert_eq!(original["replays"], json!([replayed["id"]]));
    // A refused delivery has no body to replay.
    d.post_json("/hooks/ci", &[("X-Token", "nope")], b"{}");
    let refused = d.get("/deliveries?outcome=refused").json()["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = d.post(&format!("/deliveries/{refused}/replay"), &[], b"");
    assert_eq!(r.status, 409);
    assert!(r.error().contains("cannot be replayed"), "{}", r.text);
}

#[test]
fn dry_run_shows_the_trace_and_argv_and_runs_nothing() {
    let d = Daemon::start(CONFIG);
    let body = json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/app"}}).to_string();
    let sig = format!("sha256={}", hmac_sha256_hex(SECRET, body.as_bytes()));
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-Hub-Signature-256", sig.as_str()),
        ("X-GitHub-Delivery", "dry-1"),
    ];
    let r = d.post_json("/hooks/github?dry_run=1", &headers, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text);
    let trace = r.json();
    assert_eq!(trace["dry_run"], true);
    assert_eq!(trace["would_run"], 1);
    let argv = trace["rules"][0]["argv"].as_array().unwrap();
    assert!(argv[0].as_str().unwrap().ends_with("/handlers/log-event.sh"));
    assert_eq!(argv[1..], [json!("--ref=refs/heads/main"), json!("--repo=acme/app")]);
    assert_eq!(d.get("/tasks").json()["tasks"], json!([]));
    // Any case of on, and a bare `?dry_run`, is a dry run; a value that is
    // neither on nor off is refused, never taken for off (a real run).
    for on in ["TRUE", "Yes", ""] {
        let r = d.post_json(&format!("/hooks/github?dry_run={on}"), &headers, body.as_bytes());
        assert_eq!(
            (r.status, &r.json()["dry_run"]),
            (200, &json!(true)),
            "{on}: {}",
            r.text
        );
    }
    for odd in ["on", "2", "y"] {
        let r = d.post_json(&format!("/hooks/github?dry_run={odd}"), &headers, body.as_bytes());
        assert_eq!(r.status, 400, "{odd}: {}", r.text);
        assert_eq!(
            r.error(),
            format!("`dry_run` is `{odd}`: it may be 1, true, yes, 0, false or no")
        );
    }
    assert_eq!(d.get("/tasks").json()["tasks"], json!([]));
    // It is authenticated like a real delivery, and it does not use up the delivery id.
    let wrong = [
        ("X-GitHub-Event", "push"),
        ("X-Hub-Signature-256", "sha256=00"),
        ("X-GitHub-Delivery", "dry-2"),
    ];
    assert_eq!(
        d.post_json("/hooks/github?dry_run=1", &wrong, body.as_bytes()).status,
        401
    );
    // A bad value is judged after auth, as a bad `?wait=` is: a stranger
    // gets the `401`, a sender the `400`, recorded as a rejected delivery.
    assert_eq!(
        d.post_json("/hooks/github?dry_run=maybe", &wrong, body.as_bytes())
            .status,
        401
    );
    let rejected = d.get("/deliveries?outcome=rejected").json();
    let statuses: Vec<_> = rejected["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(400); 3], "{rejected}");
    assert_eq!(d.post_json("/hooks/github", &headers, body.as_bytes()).status, 202);
}

/// A dry run shows the daemon's own view (argv, params, every rule's
/// condition): it needs the API rule, as `/tasks` does, besides the
/// source's own auth, even on a source with `auth: none`.
#[test]
fn a_dry_run_needs_the_api_rule_besides_the_sources_auth() {
    let config = r#"
server:
  trusted_proxies: [127.0.0.1]
sources:
  open: {provider: generic, auth: none}
programs:
  p:
    command: handlers/log-event.sh
    args: [--key=ARG-FROM-CONFIG]
mappings:
  open:
    default:
      rules: [{if: 'true', run: p}]
"#;
    let d = Daemon::start(config);
    let r = d.post_json("/hooks/open?dry_run=1", &[], b"{}");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("ARG-FROM-CONFIG"), "{}", r.text);
    // A client a trusted proxy names, not loopback: the hook is open to it,
    // its dry run is not.
    let from_afar = [("X-Forwarded-For", "203.0.113.9")];
    let r = d.post_json("/hooks/open?dry_run=1", &from_afar, b"{}");
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error().contains("answers only loopback clients"), "{}", r.text);
    assert!(
        !r.text.contains("ARG-FROM-CONFIG") && !r.text.contains("handlers"),
        "{}",
        r.text
    );
    assert_eq!(d.post_json("/hooks/open", &from_afar, b"{}").status, 202);

    // With `api.tokens`, a dry run needs one, loopback or not.
    let d = Daemon::start(&config.replacen("sources:", "api:\n  tokens: [dry-api-token]\nsources:", 1));
    let r = d.post_json("/hooks/open?dry_run=1", &[], b"{}");
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    assert!(!r.text.contains("ARG-FROM-CONFIG"), "{}", r.text);
    let wrong = [("Authorization", "Bearer not-it")];
    assert_eq!(d.post_json("/hooks/open?dry_run=1", &wrong, b"{}").status, 401);
    let r = d.post_json(
        "/hooks/open?dry_run=1",
        &[("Authorization", "Bearer dry-api-token")],
        b"{}",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["would_run"], 1);
    assert_eq!(d.post_json("/hooks/open", &[], b"{}").status, 202);
}

#[test]
fn the_delivery_log_has_the_same_access_rule_as_tasks() {
    let d = Daemon::start(CONFIG);
    let r = d.get_with("/deliveries", &[("X-Forwarded-For", "203.0.113.9")]);
    assert_eq!(r.status, 403);
    let r = request(
        "POST",
        &d.url("/deliveries/x/replay"),
        &[("X-Forwarded-For", "203.0.113.9")],
        Some(b""),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn explain_prints_the_trace_offline_without_running_anything() {
    let dir = tempfile::tempdir().unwrap();
    install_handlers(dir.path());
    std::fs::write(dir.path().join("webhook.yaml"), CONFIG).unwrap();
    let payload = dir.path().join("push.json");
    std::fs::write(
        &payload,
        r#"{"ref":"refs/heads/main","repository":{"full_name":"acme/app"}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .current_dir(dir.path())
        .args(["explain", "--source", "github", "--event", "push", "--json"])
        .arg(&payload)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let trace: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(trace["rules"][0]["result"], "matched");
    assert_eq!(trace["rules"][0]["argv"][1], "--ref=refs/heads/main");

    let out = std::process::Command::new(BIN)
        .current_dir(dir.path())
        .args(["explain", "--source", "github", "--event", "push"])
        .arg(&payload)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rule 0 if ref == \"refs/heads/main\": matched → run `deploy`"),
        "{text}"
    );
    assert!(text.contains("1 task would run"), "{text}");

    let out = std::process::Command::new(BIN)
        .current_dir(dir.path())
        .args(["explain", "--source", "nope", "--event", "push"])
        .arg(&payload)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no source named `nope`"));

    // The event comes from where the daemon reads it: the header (given
    // as --event or --header), or the body, never a flag that contradicts it.
    let explain = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .current_dir(dir.path())
            .arg("explain")
            .args(args)
            .arg(&payload)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = explain(&["--source", "github", "--header", "X-GitHub-Event: push"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1 task would run"), "{text}");
    let (code, text) = explain(&["--source", "github"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("source `github` reads its event from the `X-GitHub-Event` header: give --event"),
        "{text}"
    );
    // `ci` reads its event from the body's `kind`.
    std::fs::write(&payload, r#"{"kind":"build","ref":"refs/heads/main"}"#).unwrap();
    let (code, text) = explain(&["--source", "ci", "--json"]);
    assert_eq!(code, Some(0), "{text}");
    let trace: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(trace["event"], "build");
    let (code, text) = explain(&["--source", "ci", "--event", "deploy"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("source `ci` reads this delivery's event as `build`, not `deploy`"),
        "{text}"
    );
}

#[test]
fn odd_bodies_get_defined_answers() {
    let d = Daemon::start(CONFIG);
    let send = |body: &[u8]| d.post_json("/hooks/ci", &[("X-Token", "ci-token")], body);
    // Not UTF-8.
    let r = send(b"{\"kind\":\"\xff\xfe\"}");
    assert_eq!(r.status, 400);
    // Duplicate keys: the last one counts.
    let r = send(br#"{"kind":"a","kind":"build","n":1}"#);
    assert_eq!(r.json()["event"], "build");
    // Paths through arrays, and through missing keys.
    let r = send(br#"{"kind":"list","items":[{"name":"first"}]}"#);
    let task = d.wait_task(&Daemon::task_ids(&r)[0]);
    assert_eq!(task["params"], json!({"n": null, "first": "first"}));
    // A body that is an array or a string has no event field: a clear 400.
    let r = send(br#"[1,2,3]"#);
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "the body has no event name in the configured `event.field`");
    let r = send(br#""just a string""#);
    assert_eq!(r.status, 400);
    // A 1 MiB header is refused by the HTTP layer with 431, not a crash or a hang.
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(&d.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = b"POST /hooks/ci HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'x', 1 << 20));
    req.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\n{}");
    let _ = conn.write_all(&req);
    let mut answer = [0u8; 64];
    let n = conn.read(&mut answer).unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert_eq!(d.get("/healthz").status, 200, "the daemon is still up");
}

/// A generic HMAC header is masked in the record whatever its name says.
#[test]
fn a_generic_signature_header_is_masked_whatever_its_name() {
    let d = Daemon::start(
        "sources:\n  sig: {provider: generic, auth: {hmac: sha256, secret: s3cret, header: X-Check}}\nprograms:\n  p: {command: [/bin/true]}\nmappings:\n  sig:\n    \"*\": {rules: [{run: p}]}\n",
    );
    let body = br#"{"a":1}"#;
    let sig = hmac_sha256_hex("s3cret", body);
    let r = d.post_json("/hooks/sig", &[("X-Check", &sig)], body);
    assert_eq!(r.status, 202, "{}", r.text);
    let list = d.get("/deliveries").json();
    let headers = &list["deliveries"][0]["headers"];
    assert!(
        headers.as_array().unwrap().contains(&json!(["x-check", "***"])),
        "{headers}"
    );
    assert!(!list.to_string().contains(&sig));
}

#[test]
fn the_list_says_a_body_is_kept_for_a_record_read_back_after_a_restart() {
    let mut d = Daemon::start(&format!("state:\n  path: data/hookrunner.db\n{CONFIG}"));
    assert_eq!(
        push(&d, "8d1f0c2e-1111-2222-3333-444455556666", "refs/heads/main").status,
        202
    );
    let kept = |d: &Daemon| -> Vec<(String, Value)> {
        d.get("/deliveries").json()["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["outcome"].as_str().unwrap().to_string(), r["body_kept"].clone()))
            .collect()
    };
    let before = kept(&d);
    assert_eq!(before, [("accepted".to_string(), json!(true))]);
    // Read from the store now, without their bodies: the same answer.
    d.restart();
    assert_eq!(kept(&d), before);
    let short = &d.get("/deliveries?outcome=accepted").json()["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_string()[..8];
    let out = std::process::Command::new(BIN)
        .args(["delivery", short, "--url", &d.url("")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.lines().any(|l| l.starts_with("body kept") && l.ends_with("true")),
        "{text}"
    );
}

#[test]
fn explain_refuses_a_payload_over_max_body_and_stops_quietly_when_its_reader_does() {
    let dir = tempfile::tempdir().unwrap();
    install_handlers(dir.path());
    std::fs::write(
        dir.path().join("webhook.yaml"),
        CONFIG.replace("server:\n", "server:\n  max_body: 1KiB\n"),
    )
    .unwrap();
    let payload = dir.path().join("push.json");
    std::fs::write(
        &payload,
        r#"{"ref":"refs/heads/main","repository":{"full_name":"acme/app"}}"#,
    )
    .unwrap();
    let explain = |payload: &std::path::Path| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.current_dir(dir.path())
            .args(["explain", "--source", "github", "--event", "push"])
            .arg(payload);
        cmd
    };
    // Larger than the daemon would take: refused without reading it all
    // (/dev/zero never ends).
    let out = explain(std::path::Path::new("/dev/zero")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: `/dev/zero` is larger than `server.max_body` (1024 bytes), which the daemon refuses"
    );
    // A reader that has gone (`| head -1`) ends it without a panic.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = explain(&payload)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_senders_delivery_id_names_its_own_record_in_every_url() {
    let d = Daemon::start(CONFIG);
    let id = "../../tasks?x=1#f g";
    let r = push(&d, id, "refs/heads/other");
    assert_eq!(r.status, 200, "{}", r.text);
    // The ignored answer points at the record, encoded.
    let encoded = "..%2F..%2Ftasks%3Fx%3D1%23f%20g";
    assert!(r.text.contains(&format!("see /deliveries/{encoded})")), "{}", r.text);
    let record = d.get(&format!("/deliveries/{encoded}")).json();
    assert_eq!(record["delivery_id"], id);
    assert_eq!(record["url"], format!("/deliveries/{encoded}"));
    let listed = d.get("/deliveries").json();
    assert_eq!(listed["deliveries"][0]["url"], format!("/deliveries/{encoded}"));
}
