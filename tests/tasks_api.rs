//! `GET /tasks`: filters, access rules, and the bounded queue.

mod common;
use common::*;

const CONFIG: &str = r#"
server:
  trusted_proxies: [127.0.0.1]
tasks:
  max_concurrent: 1
  max_queued: 2
sources:
  a:
    provider: generic
    auth: none
    event: {field: kind}
  b:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  sleepy:
    command: handlers/sleepy.sh
    env: {OUT_FILE: $DIR/runs, SLEEP: "0.3"}
  ok:
    command: handlers/log-event.sh
  bad:
    command: [sh, -c, "exit 1"]
mappings:
  a:
    sleepy: {rules: [{run: sleepy}]}
    ok: {rules: [{run: ok}]}
    bad: {rules: [{run: bad}]}
  b:
    ok: {rules: [{run: ok}]}
"#;

fn send(d: &Daemon, source: &str, kind: &str) -> Resp {
    d.post_json(
        &format!("/hooks/{source}"),
        &[],
        format!(r#"{{"kind":"{kind}"}}"#).as_bytes(),
    )
}

fn ids(resp: &Resp) -> Vec<String> {
    resp.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_loses_no_accepted_task() {
    // The first run lasts until all eight are sent, however slowly.
    let d = Daemon::start(&CONFIG.replace("SLEEP: \"0.3\"}", "SLEEP: \"0.3\", FIRST_SLEEP: \"5\"}"));
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let r = send(&d, "a", "sleepy");
        match r.status {
            202 => accepted.extend(Daemon::task_ids(&r)),
            503 => {
                refused += 1;
                assert_eq!(r.header("retry-after"), Some("5"));
                assert_eq!(
                    r.error(),
                    "the task queue is full; nothing of this delivery was accepted, retry later"
                );
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    // One runs, two wait: the rest are refused.
    assert_eq!(accepted.len(), 3);
    assert_eq!(refused, 5);
    for id in &accepted {
        assert_eq!(d.wait_task(id)["status"], "succeeded");
    }
    // Every accepted task ran once, one at a time, in arrival order.
    let runs = std::fs::read_to_string(d.path("runs")).unwrap();
    let expected: Vec<String> = accepted
        .iter()
        .flat_map(|id| [format!("start {id}"), format!("end {id}")])
        .collect();
    assert_eq!(runs.lines().collect::<Vec<_>>(), expected);
    // Room again: accepted.
    assert_eq!(send(&d, "a", "ok").status, 202);
}

#[test]
fn tasks_are_listed_newest_first_and_filtered() {
    let d = Daemon::start(CONFIG);
    let first = ids(&send(&d, "a", "ok"));
    let bad = ids(&send(&d, "a", "bad"));
    let other = ids(&send(&d, "b", "ok"));
    for id in first.iter().chain(&bad).chain(&other) {
        d.wait_task(id);
    }
    let list = |q: &str| -> Vec<String> {
        let r = d.get(&format!("/tasks{q}"));
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(list(""), vec![other[0].clone(), bad[0].clone(), first[0].clone()]);
    assert_eq!(list("?status=failed"), bad);
    assert_eq!(list("?source=b"), other);
    assert_eq!(list("?source=a&event=ok"), first);
    assert_eq!(list("?program=bad"), bad);
    assert_eq!(list("?status=succeeded&limit=1"), other);
    assert!(list("?status=running").is_empty());

    let task = d.get(&format!("/tasks/{}", bad[0])).json();
    for field in [
        "id",
        "delivery_id",
        "source",
        "event",
        "program",
        "params",
        "argv",
        "status",
        "exit_code",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "duration_ms",
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
    ] {
        assert!(task.get(field).is_some(), "task lacks `{field}`: {task}");
    }
    assert_eq!(task["exit_code"], 1);
    assert!(task["created_at"].as_str().unwrap().ends_with('Z'));

    let r = d.get("/tasks?status=exploded");
    assert_eq!(r.status, 400);
    assert!(r.error().starts_with("unknown status `exploded`"), "{}", r.text);
    assert_eq!(d.get("/tasks?limit=0").status, 400);
    assert_eq!(d.get("/tasks?limit=abc").status, 400);
    assert_eq!(d.get("/tasks?colour=red").status, 400);
    let r = d.get("/tasks/00000000-0000-0000-0000-000000000000");
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "there is no task `00000000-0000-0000-0000-000000000000`");
    assert_eq!(d.get("/tasks/not-a-uuid").status, 404);
}

#[test]
fn without_tokens_only_loopback_clients_may_read_tasks() {
    let d = Daemon::start(CONFIG);
    assert_eq!(d.get("/tasks").status, 200);
    // Seen through the trusted proxy, the client is 203.0.113.9: refused.
    let r = d.get_with("/tasks", &[("X-Forwarded-For", "203.0.113.9")]);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.error(),
        "the task API answers only loopback clients while `api.tokens` is empty, and 203.0.113.9 is not one"
    );
    let id = &ids(&send(&d, "a", "ok"))[0];
    assert_eq!(
        d.get_with(&format!("/tasks/{id}"), &[("X-Forwarded-For", "203.0.113.9")])
            .status,
        403
    );
}

#[test]
fn without_tokens_a_local_reverse_proxy_s_clients_are_not_loopback_clients() {
    // A proxy on this machine connects over loopback; without
    // `trusted_proxies` its `X-Forwarded-For` cannot be believed, so the
    // request is not taken for a local one.
    let d = Daemon::start(&CONFIG.replace("  trusted_proxies: [127.0.0.1]\n", ""));
    assert_eq!(d.get("/tasks").status, 200);
    for header in ["X-Forwarded-For", "Forwarded", "X-Real-IP"] {
        let value = if header == "Forwarded" {
            "for=203.0.113.9"
        } else {
            "203.0.113.9"
        };
        for path in ["/tasks", "/deliveries", "/events", "/-/overview"] {
            let r = d.get_with(path, &[(header, value)]);
            assert_eq!(r.status, 403, "{header} {path}: {}", r.text);
            assert!(r.error().contains("set `api.tokens`"), "{}", r.error());
        }
        let r = d.post(
            "/-/reload",
            &[(header, value), ("Content-Type", "application/json")],
            b"",
        );
        assert_eq!(r.status, 403, "{header}: {}", r.text);
    }
    // The hooks themselves still take what a proxy forwards.
    assert_eq!(
        d.post_json("/hooks/a", &[("X-Forwarded-For", "203.0.113.9")], br#"{"kind":"ok"}"#)
            .status,
        202
    );
    // A trusted proxy's `X-Forwarded-For` is read; `Forwarded` never is.
    let d = Daemon::start(CONFIG);
    assert_eq!(d.get_with("/tasks", &[("X-Forwarded-For", "127.0.0.1")]).status, 200);
    assert_eq!(d.get_with("/tasks", &[("Forwarded", "for=127.0.0.1")]).status, 403);
}

#[test]
fn with_tokens_every_client_needs_one() {
    let config = CONFIG.replace("tasks:\n", "api:\n  tokens: [tok-1, \"${SECOND_TOKEN}\"]\ntasks:\n");
    let d = Daemon::with(&config).env("SECOND_TOKEN", "tok-2").start();
    let r = d.get("/tasks");
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "send an API token as `Authorization: Bearer <token>`");
    let r = d.get_with("/tasks", &[("Authorization", "Bearer nope")]);
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the API token is not valid");
    assert_eq!(d.get_with("/tasks", &[("Authorization", "Bearer tok-1")]).status, 200);
    // The scheme's name in any case, as HTTP has it.
    assert_eq!(d.get_with("/tasks", &[("Authorization", "bearer tok-1")]).status, 200);
    assert_eq!(d.get_with("/tasks", &[("Authorization", "BEARER tok-1")]).status, 200);
    assert_eq!(d.get_with("/tasks", &[("Authorization", "Basic tok-1")]).status, 401);
    let remote = [("Authorization", "Bearer tok-2"), ("X-Forwarded-For", "203.0.113.9")];
    assert_eq!(d.get_with("/tasks", &remote).status, 200);
    assert!(!d.logs().contains("tok-2"));
}

#[test]
fn without_tokens_a_web_page_cannot_use_the_api() {
    // A browser on this machine is a loopback client: a page it opens must
    // not read the API through a rebound DNS name, nor change anything with a
    // cross-site form or fetch.
    let d = Daemon::start(CONFIG);
    let id = &ids(&send(&d, "a", "ok"))[0];
    d.wait_task(id);
    let port = d.addr.rsplit(':').next().unwrap().to_string();

    let rebound = format!("rebind.attacker.example:{port}");
    for path in ["/tasks", "/deliveries", "/events", "/metrics", "/-/overview"] {
        let r = d.get_with(path, &[("Host", &rebound)]);
        assert_eq!(r.status, 403, "{path}: {}", r.text);
        assert!(r.error().contains("DNS-rebinding"), "{}", r.error());
        assert!(!r.text.contains("attacker"), "the host is not echoed: {}", r.text);
    }
    for host in [
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("127.0.0.1:{port}"),
    ] {
        assert_eq!(d.get_with("/tasks", &[("Host", &host)]).status, 200, "{host}");
    }

    let tasks_before = d.get("/tasks").json()["tasks"].as_array().unwrap().len();
    let own = format!("http://127.0.0.1:{port}");
    let other_port = format!("http://127.0.0.1:{}", port.parse::<u32>().unwrap() + 1);
    let forged: [&[(&str, &str)]; 5] = [
        &[("Origin", "http://attacker.example")],
        &[("Origin", &other_port)],
        &[("Origin", "null")],
        &[("Sec-Fetch-Site", "cross-site"), ("Origin", "http://attacker.example")],
        // Another port on localhost is the same site but another origin.
        &[("Sec-Fetch-Site", "same-site"), ("Origin", &other_port)],
    ];
    for headers in forged {
        let mut all = vec![("Content-Type", "text/plain")];
        all.extend_from_slice(headers);
        let r = d.post(&format!("/tasks/{id}/rerun"), &all, b"");
        assert_eq!(r.status, 403, "{headers:?}: {}", r.text);
        assert!(r.error().contains("cross-site request forgery"), "{}", r.error());
        assert_eq!(d.post("/-/reload", &all, b"").status, 403, "{headers:?}");
    }
    assert_eq!(
        d.get("/tasks").json()["tasks"].as_array().unwrap().len(),
        tasks_before,
        "no forged rerun made a task"
    );
    // A cross-site GET that cannot change anything is still answered (its
    // page cannot read the answer without CORS, which the API never sends).
    let r = d.get_with("/tasks", &[("Sec-Fetch-Site", "cross-site")]);
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());

    // The dashboard's own requests, the CLI's and scripts' still work.
    for headers in [
        vec![("Sec-Fetch-Site", "same-origin"), ("Origin", own.as_str())],
        vec![("Origin", own.as_str())],
        vec![],
    ] {
        assert_eq!(d.post("/-/reload", &headers, b"").status, 200, "{headers:?}");
    }
    assert_eq!(
        d.post(&format!("/tasks/{id}/rerun"), &[("Sec-Fetch-Site", "same-origin")], b"")
            .status,
        202
    );
}

#[test]
fn with_tokens_the_host_and_origin_do_not_matter() {
    // The token is the proof: a browser never sends it by itself.
    let config = CONFIG.replace("tasks:\n", "api:\n  tokens: [tok-1]\ntasks:\n");
    let d = Daemon::start(&config);
    let auth = ("Authorization", "Bearer tok-1");
    assert_eq!(d.get_with("/tasks", &[auth, ("Host", "hooks.example.com")]).status, 200);
    let r = d.post(
        "/-/reload",
        &[
            auth,
            ("Host", "hooks.example.com"),
            ("Origin", "https://hooks.example.com"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text);
}
