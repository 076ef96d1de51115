//! The dashboard over plain HTTP: its files and their headers, and the
//! routes it reads besides the task and delivery API (`/-/overview`,
//! `/-/dry-run`, `/deliveries/{id}/body`). tests/browser.rs drives the pages.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const CONFIG: &str = r#"
sources:
  github:
    provider: github
    secret: gh-secret-value
  app:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  deploy:
    command: handlers/log-event.sh
    params: [ref]
    env: {DEPLOY_KEY: "very-secret-deploy-key"}
    max_concurrent: 2
  echo:
    command: [sh, -c, 'printf "%s\n" "$HOOK_PARAM_TEXT"']
    params: [text]
mappings:
  github:
    push:
      params: {ref: payload.ref}
      rules:
        - if: ref == "refs/heads/main"
          run: deploy
  app:
    say:
      params: {text: payload.text}
      rules: [{run: echo}]
"#;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn hardened(r: &Resp, what: &str) {
    assert_eq!(r.header("content-security-policy"), Some(CSP), "{what}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    assert!(r.header("set-cookie").is_none(), "{what}");
}

/// The head of a GET's answer, as sent (redirects not followed).
fn raw_get(d: &Daemon, path: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(&d.addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer.split("\r\n\r\n").next().unwrap().to_string() + "\r\n"
}

#[test]
fn the_pages_files_come_from_the_binary_with_a_strict_policy() {
    let d = Daemon::start(CONFIG);
    // `/` leads to the dashboard.
    let head = raw_get(&d, "/");
    assert!(head.starts_with("HTTP/1.1 302 Found\r\n"), "{head}");
    assert!(head.contains("\r\nlocation: /ui\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\ncontent-security-policy: {CSP}\r\n")),
        "{head}"
    );

    let mut total = 0;
    for path in ["/ui", "/ui/", "/ui/index.html"] {
        let r = d.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        hardened(&r, path);
        total = r.text.len();
        // No inline script or style: every script and style sheet is a file.
        assert!(!r.text.contains("<script>") && !r.text.contains("style="), "{}", r.text);
        assert!(r.text.contains(r#"<script type="module" src="/ui/app.js"></script>"#));
        assert!(r.text.contains(r#"<link rel="stylesheet" href="/ui/app.css">"#));
    }
    for (file, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
    ] {
        let r = d.get(&format!("/ui/{file}"));
        assert_eq!(r.status, 200, "{file}");
        assert_eq!(r.header("content-type"), Some(kind));
        hardened(&r, file);
        total += r.text.len();
        // Cached, revalidated by the tag of this build.
        let tag = r.header("etag").expect("an ETag").to_string();
        let again = d.get_with(&format!("/ui/{file}"), &[("If-None-Match", &tag)]);
        assert_eq!(again.status, 304, "{file}");
        assert_eq!(again.text, "");
    }
    // The first page, whole and uncompressed, is far under 200 KB.
    eprintln!("the dashboard's files: {total} bytes");
    assert!(total < 200_000, "{total} bytes");
    // The script never writes HTML.
    let js = d.get("/ui/app.js").text;
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }

    // Anything else under /ui is the usual JSON 404, hardened too.
    let r = d.get("/ui/secrets.txt");
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "there is nothing at `/ui/secrets.txt`");
    hardened(&r, "a 404");
    let r = request("POST", &d.url("/ui"), &[], Some(b""));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    hardened(&r, "a 405");
}

#[test]
fn the_files_need_no_token_but_the_data_does() {
    let d = Daemon::start(&CONFIG.replacen("sources:", "api:\n  tokens: [dash-token]\nsources:", 1));
    assert_eq!(d.get("/ui").status, 200);
    assert_eq!(d.get("/ui/app.js").status, 200);
    for path in ["/-/overview", "/deliveries/x/body"] {
        let r = d.get(path);
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.error(), "send an API token as `Authorization: Bearer <token>`");
    }
    let r = request(
        "POST",
        &d.url("/-/dry-run"),
        &[("Content-Type", "application/json")],
        Some(br#"{"source": "app"}"#),
    );
    assert_eq!(r.status, 401);
    let r = d.get_with("/-/overview", &[("Authorization", "Bearer dash-token")]);
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn the_overview_counts_per_program_and_names_variables_without_their_values() {
    let d = Daemon::start(CONFIG);
    let r = d.get("/-/overview");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("very-secret-deploy-key"), "{}", r.text);
    assert!(!r.text.contains("gh-secret-value"), "{}", r.text);
    let v = r.json();
    assert_eq!(v["limits"], json!({"max_concurrent": 4, "max_queued": 1000}));
    assert_eq!(v["running"], 0);
    let deploy = &v["programs"][0];
    assert_eq!(deploy["name"], "deploy");
    assert_eq!(deploy["max_concurrent"], 2);
    assert_eq!(deploy["running"], 0);
    let env = deploy["env"].as_array().unwrap();
    assert!(
        env.contains(&json!("DEPLOY_KEY")) && env.contains(&json!("HOOK_PARAM_REF")),
        "{env:?}"
    );
    assert_eq!(
        v["sources"],
        json!([
            {"name": "app", "provider": "generic", "auth": "none", "methods": ["POST"], "url": "/hooks/app"},
            {"name": "github", "provider": "github", "auth": "signature", "methods": ["POST"], "url": "/hooks/github"},
        ])
    );
}

#[test]
fn the_overview_names_the_store_as_readyz_does() {
    let d = Daemon::start(&format!("state:\n  path: $DIR/state.db\n{CONFIG}"));
    let store = d.get("/-/overview").json()["store"].clone();
    assert_eq!(store, d.get("/readyz").json()["store"]["store"]);
    assert_eq!(store, format!("sqlite:{}", d.path("state.db").display()).as_str());
}

#[test]
fn a_dry_run_through_the_api_judges_without_the_signature_and_records_nothing() {
    let d = Daemon::start(CONFIG);
    let ask = |body: serde_json::Value| {
        request(
            "POST",
            &d.url("/-/dry-run"),
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    };
    let r = ask(json!({
        "source": "github",
        "headers": [["X-GitHub-Event", "push"], ["Content-Type", "application/json"]],
        "body": r#"{"ref": "refs/heads/main"}"#,
    }));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["event"], "push");
    assert_eq!(v["would_run"], 1);
    assert_eq!(v["rules"][0]["result"], "matched");
    let argv = v["rules"][0]["argv"].as_array().unwrap();
    assert_eq!(argv.last().unwrap(), "--ref=refs/heads/main");
    // Another branch: the rule says why not.
    let v = ask(
        json!({"source": "github", "headers": [["X-GitHub-Event", "push"]], "body": r#"{"ref": "refs/heads/dev"}"#}),
    )
    .json();
    assert_eq!(v["would_run"], 0);
    assert_eq!(v["rules"][0]["result"], "not matched");
    assert_eq!(v["rules"][0]["if"], "ref == \"refs/heads/main\"");
    // Nothing ran, nothing is on record.
    assert_eq!(d.get("/tasks").json()["tasks"], json!([]));
    assert_eq!(d.get("/deliveries").json()["deliveries"], json!([]));

    // What the source itself would refuse, and what is not a dry run.
    let r = ask(json!({"source": "github", "headers": [], "body": "{}"}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("X-GitHub-Event"), "{}", r.error());
    let r = ask(json!({"source": "github", "headers": [["X-GitHub-Event", "push"]], "body": "{not json"}));
    assert_eq!(r.status, 415, "{}", r.text);
    let r = ask(
        json!({"source": "github", "headers": [["X-GitHub-Event", "push"], ["Content-Type", "application/json"]], "body": "{not json"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let r = ask(json!({"source": "nope", "body": "{}"}));
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "there is no source named `nope`");
    let r = ask(json!({"source": "app", "headers": [["bad name", "x"]]}));
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "`bad name` is not a header name");
    let r = ask(json!({"body": "{}"}));
    assert_eq!(r.status, 400);
    assert!(
        r.error().starts_with("the body must be JSON {\"source\""),
        "{}",
        r.error()
    );
    let r = d.get("/-/dry-run");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
}

#[test]
fn a_kept_body_is_served_as_bytes_no_browser_renders() {
    let d = Daemon::start(CONFIG);
    let body = json!({"kind": "say", "text": "<script>alert(1)</script>"}).to_string();
    let r = d.post_json("/hooks/app", &[], body.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.json()["delivery_id"].as_str().unwrap().to_string();
    let r = d.get(&format!("/deliveries/{id}/body"));
    assert_eq!(r.status, 200);
    assert_eq!(r.text, body);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("content-disposition"), Some("attachment"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("content-security-policy"), Some("sandbox; default-src 'none'"));
    let r = d.get("/deliveries/nope/body");
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "there is no delivery `nope` on record");
    // A refused delivery's body is not kept.
    let r = d.post_json("/hooks/github", &[("X-GitHub-Event", "push")], b"{}");
    assert_eq!(r.status, 401);
    let refused = d.get("/deliveries?outcome=refused").json()["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = d.get(&format!("/deliveries/{refused}/body"));
    assert_eq!(r.status, 404);
    assert!(r.error().contains("is not kept"), "{}", r.error());
}

/// `GET /tasks?id=<prefix>&node=<name>`, as the task list's search asks it,
/// in memory, from SQLite, and from a cluster's PostgreSQL.
#[test]
fn the_task_list_filters_by_node_and_id_prefix_in_every_store() {
    let db = common::pg::Db::create();
    for (store, state) in stores(&db) {
        let config = format!("node:\n  name: node-a\n{state}{CONFIG}");
        let d = Daemon::start(&config);
        let mut ids = Vec::new();
        for n in 0..6 {
            let r = say(&d, n);
            assert_eq!(r.status, 202, "{store}: {}", r.text);
            ids.push(Daemon::task_ids(&r).remove(0));
        }
        for id in &ids {
            d.wait_task(id);
        }
        let listed = |query: &str| -> Vec<String> {
            let r = d.get(&format!("/tasks?{query}"));
            assert_eq!(r.status, 200, "{store} {query}: {}", r.text);
            r.json()["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string())
                .collect()
        };
        // A prefix: exactly the tasks whose ids start so, newest first, in either case.
        for id in &ids {
            for len in [1, 4, 9, 20, 36] {
                let prefix = &id[..len];
                let want: Vec<String> = ids.iter().rev().filter(|i| i.starts_with(prefix)).cloned().collect();
                assert_eq!(listed(&format!("id={prefix}")), want, "{store}: id={prefix}");
                assert_eq!(listed(&format!("id={}", prefix.to_uppercase())), want, "{store}");
            }
        }
        // Paged: the prefix with `before`.
        let first = &ids[0][..1];
        let all = listed(&format!("id={first}"));
        if all.len() > 1 {
            assert_eq!(
                listed(&format!("id={first}&before={}", all[0])),
                all[1..].to_vec(),
                "{store}"
            );
        }
        // The node: in a cluster, the node that ran them; without one, none.
        let on_a = listed("node=node-a");
        if store == "postgres" {
            assert_eq!(on_a.len(), 6, "{store}");
        } else {
            assert_eq!(
                on_a,
                Vec::<String>::new(),
                "{store}: tasks have no node without a cluster"
            );
        }
        assert_eq!(listed("node=node-b"), Vec::<String>::new(), "{store}");
        for bad in ["zz", "0123456789", "a%27%20OR%201=1--", &"a".repeat(40)] {
            let r = d.get(&format!("/tasks?id={bad}"));
            assert_eq!(r.status, 400, "{store} {bad}: {}", r.text);
            assert!(
                r.error().starts_with("`id` must be the start of a task id"),
                "{}",
                r.error()
            );
        }
    }
}

/// A delivery that runs `echo` with `n` as its text.
fn say(d: &Daemon, n: usize) -> Resp {
    d.post_json(
        "/hooks/app",
        &[],
        json!({"kind": "say", "text": n}).to_string().as_bytes(),
    )
}

/// Every store the list tests run against: memory, SQLite, and PostgreSQL
/// when a server is there.
fn stores(db: &Option<common::pg::Db>) -> Vec<(&'static str, String)> {
    let mut stores = vec![
        ("memory", String::new()),
        ("sqlite", "state:\n  path: $DIR/state.db\n".to_string()),
    ];
    if let Some(db) = db {
        stores.push((
            "postgres",
            format!("state:\n  postgres: {}\n  connections: 2\n", db.url()),
        ));
    }
    stores
}

const LOUD: &str = r#"
sources:
  app:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  loud:
    command: [sh, -c, 'head -c 30000 /dev/zero | tr "\0" o; head -c 30000 /dev/zero | tr "\0" e >&2']
  fail:
    command: [sh, -c, 'exit 3']
mappings:
  app:
    loud: {rules: [{run: loud}]}
    fail: {rules: [{run: fail}]}
"#;

#[test]
fn the_overview_counts_the_last_hours_failures_and_lists_can_leave_the_output_out() {
    let db = common::pg::Db::create();
    for (store, state) in stores(&db) {
        let d = Daemon::start(&format!("{state}{LOUD}"));
        // Before any task: nothing finished.
        assert_eq!(
            d.get("/-/overview").json()["last_hour"],
            json!({"finished": 0, "failed": 0, "among_newest": 0}),
            "{store}"
        );
        let mut ids = Vec::new();
        for kind in ["loud", "fail", "loud", "fail", "loud"] {
            let r = d.post_json("/hooks/app", &[], json!({ "kind": kind }).to_string().as_bytes());
            ids.extend(Daemon::task_ids(&r));
        }
        for id in &ids {
            d.wait_task(id);
        }
        let ov = d.get("/-/overview");
        assert_eq!(ov.status, 200, "{store}: {}", ov.text);
        assert_eq!(
            ov.json()["last_hour"],
            json!({"finished": 5, "failed": 2, "among_newest": 5}),
            "{store}"
        );
        // The overview carries no task, so no output: it stays small.
        assert!(ov.text.len() < 4096, "{store}: {} bytes", ov.text.len());

        // With their tails by default; `output=none` leaves them out.
        let full = d.get("/tasks?limit=100");
        assert_eq!(full.status, 200, "{store}: {}", full.text);
        assert!(full.text.len() > 5 * 30000, "{store}: {} bytes", full.text.len());
        let explicit = d.get("/tasks?limit=100&output=tails").json();
        assert_eq!(explicit["tasks"][0]["stdout"].as_str().unwrap().len(), 30000, "{store}");
        let bare = d.get("/tasks?limit=100&output=none");
        assert_eq!(bare.status, 200, "{store}: {}", bare.text);
        assert!(bare.text.len() < 10000, "{store}: {} bytes", bare.text.len());
        let tasks = bare.json()["tasks"].as_array().unwrap().clone();
        let listed: Vec<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
        let want: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
        assert_eq!(listed, want, "{store}");
        for t in &tasks {
            let t = t.as_object().unwrap();
            assert!(!t.contains_key("stdout") && !t.contains_key("stderr"), "{store}: {t:?}");
            assert!(
                t.contains_key("stdout_truncated") && t.contains_key("status"),
                "{store}: {t:?}"
            );
        }
        for bad in ["full", "NONE", ""] {
            let r = d.get(&format!("/tasks?output={bad}"));
            assert_eq!(r.status, 400, "{store} {bad}: {}", r.text);
            assert_eq!(r.error(), format!("unknown output `{bad}`: expected tails or none"));
        }
    }
}

/// The ids and the `next` of a list's answer.
fn page(d: &Daemon, path: &str, field: &str) -> (Vec<String>, Value) {
    let r = d.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    let v = r.json();
    let ids = v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    (ids, v["next"].clone())
}

#[test]
fn a_task_list_pages_on_after_the_task_at_its_cursor_is_deleted() {
    let db = common::pg::Db::create();
    for (store, state) in stores(&db) {
        let d = Daemon::start(&format!("{state}{CONFIG}"));
        let mut ids = Vec::new();
        for n in 0..6 {
            let r = say(&d, n);
            ids.extend(Daemon::task_ids(&r));
        }
        for id in &ids {
            d.wait_task(id);
        }
        let (first, next) = page(&d, "/tasks?limit=2", "tasks");
        assert_eq!(first, [ids[5].clone(), ids[4].clone()], "{store}");
        let next = next.as_str().expect("a cursor").to_string();
        // The page's last task goes away.
        assert_eq!(
            request("DELETE", &d.url(&format!("/tasks/{}", ids[4])), &[], None).status,
            204,
            "{store}"
        );
        // Its id no longer marks a place, the cursor does.
        assert_eq!(
            d.get(&format!("/tasks?limit=2&before={}", ids[4])).status,
            400,
            "{store}"
        );
        let (second, next) = page(&d, &format!("/tasks?limit=2&before={next}"), "tasks");
        assert_eq!(second, [ids[3].clone(), ids[2].clone()], "{store}");
        let (third, next) = page(
            &d,
            &format!("/tasks?limit=2&before={}", next.as_str().unwrap()),
            "tasks",
        );
        assert_eq!(third, [ids[1].clone(), ids[0].clone()], "{store}");
        // A full page that is the last says so: no cursor to an empty page.
        assert_eq!(next, Value::Null, "{store}");
        // Below the oldest task, an empty page, with no cursor.
        let (none, next) = page(&d, "/tasks?limit=2&before=~1", "tasks");
        assert_eq!((none.len(), next), (0, Value::Null), "{store}");
        // A page that is not full is the last.
        assert_eq!(page(&d, "/tasks?limit=10", "tasks").1, Value::Null, "{store}");
        // The same with `output=none` and a filter.
        let (some, _) = page(&d, "/tasks?limit=10&output=none&program=echo&before=~999999", "tasks");
        assert_eq!(some.len(), 5, "{store}");
        for bad in ["~", "~x", "~-1", "~99999999999999999999999", "~9223372036854775808"] {
            assert_eq!(d.get(&format!("/tasks?before={bad}")).status, 400, "{store} {bad}");
        }
    }
}

#[test]
fn a_delivery_list_pages_on_after_the_record_at_its_cursor_is_dropped() {
    let db = common::pg::Db::create();
    for (store, state) in stores(&db) {
        let config = format!("{state}deliveries:\n  keep_refused: 2\n{CONFIG}");
        let d = Daemon::start(&config);
        // Three kept under `deliveries.keep`, then two refused ones.
        let mut accepted = Vec::new();
        for n in 0..3 {
            let r = say(&d, n);
            assert_eq!(r.status, 202, "{store}");
            accepted.push(r.json()["delivery_id"].as_str().unwrap().to_string());
        }
        let refuse = || assert_eq!(d.post_json("/hooks/nosuch", &[], b"{}").status, 404);
        refuse();
        refuse();
        // Refused records are written in the background.
        eventually("the refused records listed", Duration::from_secs(10), || {
            page(&d, "/deliveries?outcome=refused", "deliveries").0.len() == 2
        });
        let (first, next) = page(&d, "/deliveries?limit=2", "deliveries");
        let next = next.as_str().expect("a cursor").to_string();
        let last = first[1].clone();
        // Strangers churn the refused budget: the page's records are dropped.
        refuse();
        refuse();
        eventually("the page's last record dropped", Duration::from_secs(10), || {
            d.get(&format!("/deliveries?before={last}")).status == 400
        });
        let (second, next) = page(&d, &format!("/deliveries?limit=2&before={next}"), "deliveries");
        assert_eq!(second, [accepted[2].clone(), accepted[1].clone()], "{store}");
        let (third, next) = page(
            &d,
            &format!("/deliveries?limit=2&before={}", next.as_str().unwrap()),
            "deliveries",
        );
        assert_eq!((third, next), (vec![accepted[0].clone()], Value::Null), "{store}");
        // A full page that is the last says so.
        let all = page(&d, "/deliveries?limit=100", "deliveries").0.len();
        let (whole, next) = page(&d, &format!("/deliveries?limit={all}"), "deliveries");
        assert_eq!((whole.len(), next), (all, Value::Null), "{store}");
        // A cursor past any place the log can have is refused as a cursor.
        let r = d.get("/deliveries?before=~99999999999999999999");
        assert_eq!(r.status, 400, "{store}");
        assert_eq!(
            r.error(),
            "`before`: the cursor `~99999999999999999999` is past every place in the log"
        );
    }
}
