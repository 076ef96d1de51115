//! `POST /hooks/{source}`: who may send, what is accepted, and every refusal.

mod common;
use common::*;

const SECRET: &str = "It's a Secret to Everybody";

const CONFIG: &str = r#"
server:
  max_body: 64KiB
  trusted_proxies: [127.0.0.1]
sources:
  github:
    provider: github
    secret: "It's a Secret to Everybody"
  gitlab:
    provider: gitlab
    token: gl-token
  jira:
    provider: jira
    token: jira-token
  jira_cloud:
    provider: jira
    secret: jira-secret
  ci:
    provider: generic
    auth: {hmac: sha256, secret: ci-secret, header: X-Signature, prefix: "sha256="}
    event: {header: X-Event}
  open:
    provider: generic
    auth: none
    event: {field: kind}
  private:
    provider: generic
    auth: none
    allow_ips: [10.0.0.0/8]
  quiet:
    provider: generic
    auth: none
programs:
  dump:
    command: handlers/dump.py
    params: [ref, repo]
mappings:
  github:
    push:
      params:
        ref: payload.ref
        repo: payload.repository.full_name
      rules:
        - run: dump
    issues.labeled:
      params:
        label: payload.label.name
      rules:
        - run: log-event
  gitlab:
    push:
      params:
        ref: payload.ref
        repo: payload.project.path_with_namespace
      rules:
        - run: dump
    Merge Request Hook:
      rules:
        - run: log-event
  jira:
    jira:issue_created:
      rules:
        - run: log-event
    jira:issue_updated:
      rules:
        - run: log-event
  jira_cloud:
    "*":
      rules:
        - run: log-event
  ci:
    build:
      rules:
        - run: log-event
  open:
    "*":
      params:
        n: payload.n
      rules:
        - if: n > 5
          run: log-event
  private:
    "*":
      rules:
        - run: log-event
"#;

fn daemon() -> Daemon {
    Daemon::start(CONFIG)
}

fn signed(body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(SECRET, body))
}

#[test]
fn signed_github_push_runs_the_handler_with_its_params() {
    let d = daemon();
    let body = fixture("github/push.json");
    let sig = signed(&body);
    let resp = d.post_json(
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ],
        &body,
    );
    assert_eq!(resp.status, 202, "{}", resp.text);
    let json = resp.json();
    assert_eq!(json["delivery_id"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(json["source"], "github");
    assert_eq!(json["event"], "push");
    let tasks = json["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["program"], "dump");
    assert_eq!(tasks[0]["status"], "queued");
    let id = tasks[0]["id"].as_str().unwrap();
    assert_eq!(tasks[0]["url"], format!("/tasks/{id}"));

    let task = d.wait_task(id);
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["exit_code"], 0);
    assert_eq!(task["params"]["ref"], "refs/heads/master");
    assert_eq!(task["params"]["repo"], "Codertocat/Hello-World");
    let seen: serde_json::Value = serde_json::from_str(task["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(
        seen["argv"],
        serde_json::json!(["--ref=refs/heads/master", "--repo=Codertocat/Hello-World"])
    );
    assert_eq!(seen["stdin_len"], body.len());
}

#[test]
fn wrong_or_missing_signature_is_refused_with_401_and_runs_nothing() {
    let d = daemon();
    let body = fixture("github/push.json");
    let wrong = format!("sha256={}", hmac_sha256_hex("not the secret", &body));
    let r = d.post_json("/hooks/github", &github_headers("push", &wrong), &body);
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");

    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let r = d.post_json("/hooks/github", &github_headers("push", &signed(&body)), &tampered);
    assert_eq!(r.status, 401);

    let r = d.post_json("/hooks/github", &[("X-GitHub-Event", "push")], &body);
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the `X-Hub-Signature-256` header is missing");

    let r = d.post_json("/hooks/github", &github_headers("push", "sha256=zz"), &body);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.error(),
        "the `X-Hub-Signature-256` header is not a well-formed signature"
    );

    assert_eq!(d.get("/tasks").json()["tasks"].as_array().unwrap().len(), 0);
    assert!(!d.logs().contains(SECRET), "the secret reached the log");
}

#[test]
fn github_action_key_and_star_semantics() {
    let d = daemon();
    let body = fixture("github/issues.labeled.json");
    let r = d.post_json("/hooks/github", &github_headers("issues", &signed(&body)), &body);
    let ids = Daemon::task_ids(&r);
    assert_eq!(ids.len(), 1);
    let task = d.wait_task(&ids[0]);
    assert_eq!(task["program"], "log-event");
    assert_eq!(task["params"]["label"], "bug");
    // An event no key matches is answered 200 with no tasks.
    let body = fixture("github/ping.json");
    let r = d.post_json("/hooks/github", &github_headers("ping", &signed(&body)), &body);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["tasks"], serde_json::json!([]));
    assert!(r.json()["message"].as_str().unwrap().contains("no rule matched"));
}

#[test]
fn form_encoded_github_payload_is_accepted() {
    let d = daemon();
    let json = fixture("github/push.json");
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&json).unwrap())
        .finish();
    let sig = signed(form.as_bytes());
    let r = d.post(
        "/hooks/github",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig),
        ],
        form.as_bytes(),
    );
    let ids = Daemon::task_ids(&r);
    let task = d.wait_task(&ids[0]);
    assert_eq!(task["params"]["repo"], "Codertocat/Hello-World");
    // The handler gets the JSON itself on stdin, not the form encoding.
    let seen: serde_json::Value = serde_json::from_str(task["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(seen["stdin"].as_str().unwrap().as_bytes(), &json[..]);
}

#[test]
fn gitlab_token_and_event_names() {
    let d = daemon();
    let body = fixture("gitlab/push.json");
    let r = d.post_json(
        "/hooks/gitlab",
        &[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", "gl-token"),
            ("X-Gitlab-Event-UUID", "evt-1"),
        ],
        &body,
    );
    let ids = Daemon::task_ids(&r);
    assert_eq!(r.json()["event"], "push");
    assert_eq!(r.json()["delivery_id"], "evt-1");
    let task = d.wait_task(&ids[0]);
    assert_eq!(task["params"]["repo"], "mike/diaspora");

    let r = d.post_json(
        "/hooks/gitlab",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "nope")],
        &body,
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the token does not match");
    let r = d.post_json("/hooks/gitlab", &[("X-Gitlab-Event", "Push Hook")], &body);
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "no token was sent (expected the `X-Gitlab-Token` header)");

    // The raw header value is a key too: `Merge Request Hook` → merge_request.
    let body = fixture("gitlab/merge_request.json");
    let r = d.post_json(
        "/hooks/gitlab",
        &[("X-Gitlab-Event", "Merge Request Hook"), ("X-Gitlab-Token", "gl-token")],
        &body,
    );
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["event"], "merge_request");
}

#[test]
fn jira_event_from_body_or_header_and_token_from_header_or_query() {
    let d = daemon();
    let created = fixture("jira/issue_created.json");
    let r = d.post_json("/hooks/jira?token=jira-token", &[], &created);
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["event"], "jira:issue_created");

    let updated = fixture("jira/issue_updated.json");
    let r = d.post_json("/hooks/jira", &[("X-Webhook-Token", "jira-token")], &updated);
    assert_eq!(r.json()["event"], "jira:issue_updated");

    // The header wins over the body.
    let r = d.post_json(
        "/hooks/jira",
        &[
            ("X-Webhook-Token", "jira-token"),
            ("X-Jira-Event-Type", "jira:issue_updated"),
        ],
        &created,
    );
    assert_eq!(r.json()["event"], "jira:issue_updated");

    let r = d.post_json("/hooks/jira?token=wrong", &[], &created);
    assert_eq!(r.status, 401);

    // Jira Cloud: X-Hub-Signature with sha256, and its delivery id.
    let sig = format!("sha256={}", hmac_sha256_hex("jira-secret", &created));
    let r = d.post_json(
        "/hooks/jira_cloud",
        &[("X-Hub-Signature", &sig), ("X-Atlassian-Webhook-Identifier", "jira-77")],
        &created,
    );
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["delivery_id"], "jira-77");
}

#[test]
fn generic_hmac_source() {
    let d = daemon();
    let body = br#"{"status":"ok"}"#;
    let sig = format!("sha256={}", hmac_sha256_hex("ci-secret", body));
    let r = d.post_json("/hooks/ci", &[("X-Signature", &sig), ("X-Event", "build")], body);
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["event"], "build");
    let r = d.post_json("/hooks/ci", &[("X-Signature", &sig), ("X-Event", "deploy")], body);
    assert_eq!(r.status, 200);
    let r = d.post_json("/hooks/ci", &[("X-Signature", "sha256=00"), ("X-Event", "build")], body);
    assert_eq!(r.status, 401);
    // A missing event header is a bad request, after auth.
    let r = d.post_json("/hooks/ci", &[("X-Signature", &sig)], body);
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "the `X-Event` header is missing");
}

#[test]
fn conditions_decide_and_runtime_errors_count_as_no_match() {
    let d = daemon();
    let r = d.post_json("/hooks/open", &[], br#"{"kind":"x","n":9}"#);
    assert_eq!(r.status, 202, "{}", r.text);
    let r = d.post_json("/hooks/open", &[], br#"{"kind":"x","n":2}"#);
    assert_eq!(r.status, 200);
    // `n > 5` on a string is a type error: not matched, logged, never a 500.
    let r = d.post_json("/hooks/open", &[], br#"{"kind":"x","n":"abc"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    eventually(
        "the evaluation error in the log",
        std::time::Duration::from_secs(5),
        || d.logs().contains("condition could not be evaluated"),
    );
    // A body without the event field is refused.
    let r = d.post_json("/hooks/open", &[], br#"{"n":9}"#);
    assert_eq!(r.status, 400);
}

#[test]
fn ip_allowlist_refuses_other_addresses_with_403() {
    let d = daemon();
    let r = d.post_json("/hooks/private", &[], b"{}");
    assert_eq!(r.status, 403);
    assert_eq!(r.error(), "address 127.0.0.1 is not in `allow_ips` of source `private`");
    // Through the trusted proxy (127.0.0.1), the forwarded client counts.
    let r = d.post_json("/hooks/private", &[("X-Forwarded-For", "10.1.2.3")], b"{}");
    assert_eq!(r.status, 202, "{}", r.text);
    let r = d.post_json("/hooks/private", &[("X-Forwarded-For", "203.0.113.9")], b"{}");
    assert_eq!(r.status, 403);
}

#[test]
fn bad_requests_get_clear_json_errors() {
    let d = daemon();
    let r = d.post_json("/hooks/nope", &[], b"{}");
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "there is no source named `nope`");

    let big = vec![b' '; 64 * 1024 + 1];
    let r = d.post_json("/hooks/quiet", &[], &big);
    assert_eq!(r.status, 413);
    assert!(r.error().contains("larger than the limit"), "{}", r.text);

    let r = d.post("/hooks/quiet", &[("Content-Type", "text/plain")], b"{}");
    assert_eq!(r.status, 415);
    assert_eq!(
        r.error(),
        "the body is text (Content-Type `text/plain`), and source `quiet` accepts only json"
    );

    let r = d.post_json("/hooks/quiet", &[], b"{\"a\": ");
    assert_eq!(r.status, 400);
    assert!(r.error().starts_with("the body is not valid JSON"), "{}", r.text);

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = d.post_json("/hooks/quiet", &[], deep.as_bytes());
    assert_eq!(r.status, 400);

    let r = d.post(
        "/hooks/quiet",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"a=1",
    );
    assert_eq!(r.status, 415);
    assert_eq!(
        r.error(),
        "the body is a form (Content-Type `application/x-www-form-urlencoded`) without a `payload` field holding JSON, and source `quiet` accepts only json (add `form` to its `bodies` to take plain forms)"
    );

    let r = request("GET", &d.url("/hooks/quiet"), &[], None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));

    // A source with no mappings: 200, nothing run.
    let r = d.post_json("/hooks/quiet", &[], b"{}");
    assert_eq!(r.status, 200);
    assert_eq!(d.get("/healthz").status, 200);
    assert_eq!(d.get("/nowhere").status, 404);
}

#[test]
fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let d = Daemon::start(&CONFIG.replace("  trusted_proxies: [127.0.0.1]\n", ""));
    // Without trusted proxies, a client cannot talk its way into the allowlist.
    let r = d.post_json("/hooks/private", &[("X-Forwarded-For", "10.1.2.3")], b"{}");
    assert_eq!(r.status, 403);
    assert_eq!(r.error(), "address 127.0.0.1 is not in `allow_ips` of source `private`");
}

#[test]
fn numbers_are_rendered_as_json_writes_the_value() {
    // CONFIGURATION.md, params: a number passes as its value, not as spelled.
    let d = Daemon::start(
        "sources:\n  a: {provider: generic, auth: none}\nprograms:\n  t:\n    command: /bin/true\n    params: [a, b, c, d, e]\nmappings:\n  a:\n    \"*\":\n      params: {a: payload.a, b: payload.b, c: payload.c, d: payload.d, e: payload.e}\n      rules: [{run: t}]\n",
    );
    let r = d.post_json(
        "/hooks/a",
        &[],
        br#"{"a": 1.10, "b": 1E2, "c": 18446744073709551617, "d": 42, "e": "1.10"}"#,
    );
    let task = d.wait_task(&Daemon::task_ids(&r)[0]);
    assert_eq!(
        task["argv"],
        serde_json::json!([
            "/bin/true",
            "--a=1.1",
            "--b=100.0",
            "--c=1.8446744073709552e+19",
            "--d=42",
            "--e=1.10"
        ])
    );
}
