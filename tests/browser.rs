//! The dashboard in a real browser: headless Chromium from Debian
//! (`chromium`, `chromium-driver`) driven over WebDriver, against the real
//! daemon and real handler scripts. Without them the tests say so loudly and
//! pass, except under CI=true, where they fail.
//!
//! `cargo test --test browser -- --ignored screenshots` writes the PNGs of
//! docs/screenshots/.

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::{browser, Browser};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const CONFIG: &str = r#"
sources:
  app:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  ticker:
    command: handlers/ticker.sh
    env: {TICKS: "6", PAUSE: "0.5"}
  slow:
    command: handlers/sleepy.sh
    env: {SLEEP: "60", OUT_FILE: "$DIR/slow.out"}
  echo:
    command: [sh, -c, 'printf "%s\n" "$HOOK_PARAM_TEXT"; printf "warning: %s\n" "$HOOK_PARAM_TEXT" >&2']
    params: [text]
mappings:
  app:
    tick: {rules: [{run: ticker}]}
    slow: {rules: [{run: slow}]}
    say:
      params: {text: payload.text}
      rules:
        - if: text != "quiet"
          run: echo
"#;

const TEN: Duration = Duration::from_secs(10);

fn deliver(d: &Daemon, body: &Value) -> Resp {
    let r = d.post_json("/hooks/app", &[], body.to_string().as_bytes());
    assert!(r.status == 202 || r.status == 200, "{} {}", r.status, r.text);
    r
}

/// Opens a page of the dashboard and waits for its heading.
fn open(b: &Browser, d: &Daemon, route: &str, heading: &str) {
    b.goto(&d.url(&format!("/ui#/{route}")));
    b.wait(
        &format!("the heading `{heading}`"),
        TEN,
        "const h = document.querySelector('main h1'); return h && h.textContent.startsWith(arguments[0]);",
        &[json!(heading)],
    );
}

/// Opens a task's page and clicks its Cancel button once it is enabled.
fn click_cancel(b: &Browser, d: &Daemon, id: &str) {
    open(b, d, &format!("tasks/{id}"), "Task");
    b.wait(
        "an enabled Cancel button",
        TEN,
        "return !document.getElementById('cancel').disabled",
        &[],
    );
    b.click("#cancel");
}

/// Waits until the page reads the daemon's event stream (GET /events).
/// [`open`], then waits for the page's event stream to be connected.
fn open_live(b: &Browser, d: &Daemon, route: &str, heading: &str) {
    open(b, d, route, heading);
    connected(b);
}

fn connected(b: &Browser) {
    b.wait(
        "the live indicator",
        TEN,
        "return document.getElementById('live').textContent === 'live'",
        &[],
    );
}

/// [`CONFIG`] with `api.tokens: [ui-secret-token]`.
fn with_token() -> String {
    CONFIG.replacen("sources:", "api:\n  tokens: [ui-secret-token]\nsources:", 1)
}

/// Waits for the page to show the token form.
fn token_form(b: &Browser) {
    b.wait(
        "the token form",
        TEN,
        "return document.getElementById('token') !== null",
        &[],
    );
}

#[test]
fn a_deliverys_tasks_appear_in_the_list_at_once_without_reload() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    open_live(&b, &d, "tasks", "Tasks");
    // A flag that a reload would lose.
    b.js("window.__sameDocument = 'yes'", &[]);
    let before = b.js("return document.querySelectorAll('#tasks tbody tr').length", &[]);
    assert_eq!(before, json!(0));

    // The page notes (by the same clock as this test) when the row appears.
    b.js(
        "window.__rowAt = null; new MutationObserver(() => { \
           if (window.__rowAt === null && document.querySelector('#tasks tbody tr')) window.__rowAt = Date.now(); \
         }).observe(document.getElementById('tasks'), {childList: true, subtree: true});",
        &[],
    );
    let r = deliver(&d, &json!({"kind": "say", "text": "hello"}));
    let accepted = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let id = Daemon::task_ids(&r).remove(0);
    b.wait(
        "the new task's row",
        TEN,
        "return document.querySelector('tr[data-task=\"' + arguments[0] + '\"]') !== null",
        &[json!(id)],
    );
    let at = b
        .js("return window.__rowAt", &[])
        .as_i64()
        .expect("the time the row appeared");
    let took = at - accepted;
    eprintln!("the task's row appeared {took} ms after the 202 was read");
    // Within a second of the 202, as the dashboard promises (about 0.1 s on
    // an idle machine; no reload, no polling: only the event stream is this fast).
    assert!(took < 1000, "the row took {took} ms, not within a second");
    assert_eq!(
        b.js("return window.__sameDocument", &[]),
        json!("yes"),
        "the page reloaded"
    );
    // And its status follows the task to its end.
    b.wait(
        "the row to say succeeded",
        TEN,
        "const r = document.querySelector('tr[data-task=\"' + arguments[0] + '\"]'); return r && r.textContent.includes('succeeded');",
        &[json!(id)],
    );
    let row = b.js(
        "return document.querySelector('tr[data-task=\"' + arguments[0] + '\"]').textContent",
        &[json!(id)],
    );
    assert!(row.as_str().unwrap().contains("echo"), "{row}");
}

#[test]
fn the_id_search_and_filters_narrow_the_list_through_the_api() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    let mut ids = Vec::new();
    for n in 0..5 {
        let r = deliver(&d, &json!({"kind": "say", "text": n}));
        ids.push(Daemon::task_ids(&r).remove(0));
    }
    for id in &ids {
        d.wait_task(id);
    }
    open(&b, &d, "tasks", "Tasks");
    b.wait(
        "five rows",
        TEN,
        "return document.querySelectorAll('#tasks tbody tr').length === 5",
        &[],
    );
    let prefix = &ids[2][..6];
    b.type_into("input[name=q]", prefix);
    b.click("form.filters button[type=submit]");
    let rows = b.wait(
        "the search's rows",
        TEN,
        "const p = document.querySelector('main p[role=status]'); return location.hash.includes('q=') && p !== null && p.textContent.includes('shown') \
         && [...document.querySelectorAll('#tasks tbody tr')].map(r => r.dataset.task)",
        &[],
    );
    let want: Vec<&String> = ids.iter().rev().filter(|i| i.starts_with(prefix)).collect();
    assert_eq!(rows, json!(want));
    // A filter the API answers: no task ran on a node without a cluster.
    b.goto(&d.url("/ui#/tasks?node=elsewhere"));
    b.wait(
        "no rows",
        TEN,
        "const p = document.querySelector('main p[role=status]'); return p !== null && p.textContent === 'No tasks match.'",
        &[],
    );
    // A search the API refuses says why, and offers no older page.
    b.goto(&d.url("/ui#/tasks?q=zz"));
    b.wait(
        "the API's refusal",
        TEN,
        "return document.querySelector('main p[role=status] [role=alert]') !== null",
        &[],
    );
    assert_eq!(
        b.js("return document.querySelector('.more button').hidden", &[]),
        json!(true)
    );
    // A whole id opens the task.
    open(&b, &d, "tasks", "Tasks");
    b.type_into("input[name=q]", &ids[0]);
    b.click("form.filters button[type=submit]");
    b.wait(
        "the task's page",
        TEN,
        "const h = document.querySelector('main h1'); return h && h.textContent === 'Task ' + arguments[0]",
        &[json!(ids[0])],
    );
}

#[test]
fn long_lists_page_through_older_entries_on_request() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    // More than one page (100) of tasks and of delivery records.
    let ids: Vec<String> = (0..130)
        .map(|n| Daemon::task_ids(&deliver(&d, &json!({"kind": "say", "text": n}))).remove(0))
        .collect();
    for id in &ids {
        d.wait_task(id);
    }
    for (route, heading, table, key, noun) in [
        ("tasks", "Tasks", "#tasks", "task", "tasks"),
        ("deliveries", "Deliveries", "#deliveries", "delivery", "deliveries"),
    ] {
        open(&b, &d, route, heading);
        let status = "const p = document.querySelector('main p[role=status]'); return p !== null && p.textContent === arguments[0]";
        b.wait("the first page", TEN, status, &[json!(format!("100 {noun} shown"))]);
        b.click(".more button");
        b.wait(
            "the older page",
            TEN,
            status,
            &[json!(format!("130 {noun} shown, no older ones"))],
        );
        let (rows, hidden) = (
            b.js(
                &format!("return [...document.querySelectorAll('{table} tbody tr')].map(r => r.dataset.{key})"),
                &[],
            ),
            b.js("return document.querySelector('.more button').hidden", &[]),
        );
        let rows: Vec<&str> = rows.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let distinct: std::collections::HashSet<&str> = rows.iter().copied().collect();
        assert_eq!((rows.len(), distinct.len()), (130, 130), "{route}: every entry once");
        assert_eq!(hidden, json!(true), "{route}: nothing older to load");
        if route == "tasks" {
            // Newest first, the oldest last.
            assert_eq!((rows[0], rows[129]), (ids[129].as_str(), ids[0].as_str()));
        }
    }
}

#[test]
fn a_running_tasks_output_appears_line_by_line_with_stderr_told_apart() {
    let Some(b) = browser() else { return };
    // Lines 1.5 s apart: the page is up long before the last one, even on a
    // slow machine.
    let d = Daemon::start(&CONFIG.replacen("PAUSE: \"0.5\"", "PAUSE: \"1.5\"", 1));
    let r = deliver(&d, &json!({"kind": "tick"}));
    let id = Daemon::task_ids(&r).remove(0);
    open(&b, &d, &format!("tasks/{id}"), "Task");
    // `tick 1` shows while the handler still runs (it prints 6 lines).
    b.wait(
        "the first line",
        TEN,
        "return document.getElementById('output').textContent.includes('tick 1')",
        &[],
    );
    let status = d.get(&format!("/tasks/{id}")).json()["status"].clone();
    let text = b.js("return document.getElementById('output').textContent", &[]);
    assert_eq!(status, json!("running"), "the task had already ended: {text}");
    assert!(!text.as_str().unwrap().contains("tick 6"), "all at once: {text}");
    // Then the rest, in order, and stderr's line marked as such.
    b.wait(
        "the stderr line",
        Duration::from_secs(30),
        "return document.querySelector('#output .line.stderr') !== null",
        &[],
    );
    let lines = b.js(
        "return [...document.querySelectorAll('#output .line')].map(l => [l.className, l.lastChild.textContent])",
        &[],
    );
    let expected: Vec<Value> = (1..=6)
        .map(|i| json!(["line stdout", format!("tick {i}")]))
        .chain([json!(["line stderr", "done"])])
        .collect();
    assert_eq!(lines, Value::Array(expected));
    b.wait(
        "the status to say succeeded",
        TEN,
        "return document.querySelector('main h1 + p .badge').textContent === 'succeeded'",
        &[],
    );
    // The timeline shows the attempt with its exit code.
    let timeline = b.js("return document.querySelector('ol.timeline').textContent", &[]);
    assert!(
        timeline.as_str().unwrap().starts_with("Attempt 1 succeeded exit 0 · "),
        "{timeline}"
    );
}

#[test]
fn cancel_stops_a_running_task() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    let r = deliver(&d, &json!({"kind": "slow"}));
    let id = Daemon::task_ids(&r).remove(0);
    eventually("the task to run", TEN, || {
        d.get(&format!("/tasks/{id}")).json()["status"] == "running"
    });
    click_cancel(&b, &d, &id);
    b.wait(
        "the page to say cancelled",
        TEN,
        "return document.querySelector('main h1 + p .badge').textContent === 'cancelled'",
        &[],
    );
    let task = d.get(&format!("/tasks/{id}")).json();
    assert_eq!(task["status"], "cancelled");
    assert_eq!(task["error"], "cancelled by request");
    // The handler never reached its end.
    let out = std::fs::read_to_string(d.path("slow.out")).unwrap_or_default();
    assert!(!out.contains("end"), "{out}");
    // Now finished: Rerun is offered, Cancel is not.
    assert_eq!(
        b.js("return document.getElementById('cancel').disabled", &[]),
        json!(true)
    );
    assert_eq!(
        b.js("return document.getElementById('rerun').disabled", &[]),
        json!(false)
    );
}

#[test]
fn replay_creates_a_new_delivery() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    let r = deliver(&d, &json!({"kind": "say", "text": "again"}));
    let first = r.json()["delivery_id"].as_str().unwrap().to_string();
    open(&b, &d, &format!("deliveries/{first}"), "Delivery");
    b.click("#replay");
    let new = b.wait(
        "the replay's page",
        TEN,
        "const m = location.hash.match(/^#\\/deliveries\\/(.+)$/); const h = document.querySelector('main h1'); \
         return m && decodeURIComponent(m[1]) !== arguments[0] && h && h.textContent.startsWith('Delivery') && decodeURIComponent(m[1]);",
        &[json!(first)],
    );
    let new = new.as_str().unwrap();
    let record = d.get(&format!("/deliveries/{new}")).json();
    assert_eq!(record["replay_of"], json!(first));
    assert_eq!(record["outcome"], "accepted");
    assert_eq!(record["task_ids"].as_array().unwrap().len(), 1);
    let page = b.js("return document.querySelector('main').innerText", &[]);
    assert!(page.as_str().unwrap().contains("replay of"), "{page}");
    assert_eq!(d.get("/deliveries").json()["deliveries"].as_array().unwrap().len(), 2);
}

#[test]
fn try_in_try_a_payload_copies_the_headers_that_mean_something() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    let r = d.post_json(
        "/hooks/app",
        &[("X-Api-Key", "k-secret"), ("X-Trace", "t-1")],
        json!({"kind": "say", "text": "hi"}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.json()["delivery_id"].as_str().unwrap().to_string();
    open(&b, &d, &format!("deliveries/{id}"), "Delivery");
    b.click("#try-this");
    let copied = b.wait(
        "the headers copied",
        TEN,
        "const t = document.querySelector('#try-headers'); return t && t.value.length > 0 && t.value;",
        &[],
    );
    let copied = copied.as_str().unwrap().to_ascii_lowercase();
    // What the sender meant is there; the framing of that one request and
    // the values the record masks are not.
    assert!(
        copied.contains("x-trace: t-1") && copied.contains("content-type:"),
        "{copied}"
    );
    for gone in ["content-length", "host:", "***", "x-api-key"] {
        assert!(!copied.contains(gone), "{gone}: {copied}");
    }
}

#[test]
fn the_trace_of_an_ignored_delivery_names_the_rule_and_why() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    let r = deliver(&d, &json!({"kind": "say", "text": "quiet"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json()["delivery_id"].as_str().unwrap().to_string();
    open(&b, &d, &format!("deliveries/{id}"), "Delivery");
    let rows = b.wait(
        "the trace",
        TEN,
        "const t = document.querySelector('table.trace'); return t && [...t.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.textContent));",
        &[],
    );
    assert_eq!(rows, json!([["say", "0", "text != \"quiet\"", "echo", "not matched"]]));
    let page = b
        .js("return document.querySelector('main').innerText", &[])
        .as_str()
        .unwrap()
        .to_string();
    assert!(page.contains("ignored"), "{page}");
    assert!(page.contains("No rule matched: nothing ran."), "{page}");
}

const HOSTILE: &str = r#"<script>window.__pwned = 1</script>"><img src=x onerror="window.__pwned = 2"><b>bold</b>"#;

#[test]
fn a_hostile_payload_renders_as_text_and_runs_no_script() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    let body = json!({"kind": "say", "text": HOSTILE});
    let r = d.post_json("/hooks/app", &[("X-Evil", HOSTILE)], body.to_string().as_bytes());
    assert_eq!(r.status, 202, "{}", r.text);
    let task = Daemon::task_ids(&r).remove(0);
    let delivery = r.json()["delivery_id"].as_str().unwrap().to_string();
    d.wait_task(&task);
    let check = |what: &str| {
        assert_eq!(
            b.js("return window.__pwned === undefined", &[]),
            json!(true),
            "{what}: a script ran"
        );
        assert_eq!(
            b.js(
                "return document.querySelectorAll('main img, main script, main b').length",
                &[]
            ),
            json!(0),
            "{what}: the payload became elements"
        );
    };
    // The task: its params, argv and output hold the text.
    open(&b, &d, &format!("tasks/{task}"), "Task");
    b.wait(
        "the output",
        TEN,
        "return document.getElementById('output').textContent.includes('warning: ')",
        &[],
    );
    let text = b.js("return document.querySelector('main').innerText", &[]);
    assert!(text.as_str().unwrap().matches(HOSTILE).count() >= 3, "{text}");
    check("the task page");
    // The delivery: its header and body.
    open(&b, &d, &format!("deliveries/{delivery}"), "Delivery");
    b.wait("the body", TEN, "return document.getElementById('body') !== null", &[]);
    let text = b.js("return document.querySelector('main').innerText", &[]);
    assert!(text.as_str().unwrap().contains(HOSTILE), "{text}");
    check("the delivery page");
    // The lists and the dry run.
    open(&b, &d, "tasks", "Tasks");
    open(&b, &d, "deliveries", "Deliveries");
    open(&b, &d, "try", "Try a payload");
    b.type_into("#try-body", &body.to_string());
    b.click("#try-run");
    b.wait(
        "the verdict",
        TEN,
        "return document.querySelector('#try-result h2') !== null",
        &[],
    );
    let text = b.js("return document.getElementById('try-result').innerText", &[]);
    assert!(text.as_str().unwrap().contains(&format!("--text={HOSTILE}")), "{text}");
    check("the dry run");
    // A bidi override cannot make an argument read as another: it is shown
    // as the CLI shows it.
    let r = deliver(&d, &json!({"kind": "say", "text": "photo\u{202e}gnp.exe"}));
    let task = Daemon::task_ids(&r).remove(0);
    open(&b, &d, &format!("tasks/{task}"), "Task");
    let argv = b.wait(
        "the arguments",
        TEN,
        "const a = document.querySelector('ol.argv'); return a && a.textContent",
        &[],
    );
    assert!(
        argv.as_str().unwrap().contains("--text=photo\\u{202e}gnp.exe"),
        "{argv}"
    );
    assert!(!argv.as_str().unwrap().contains('\u{202e}'), "{argv}");
}

/// Serves `html` to every request, from another origin than the daemon's
/// (another port on loopback): a web page the user happens to open.
fn serve_page(html: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    format!("http://{addr}/")
}

#[test]
fn another_site_cannot_make_the_browser_cancel_or_rerun() {
    // Without `api.tokens` the API trusts loopback clients, and the browser on
    // this machine is one: a page from another origin must still not be able
    // to act through it.
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    let id = Daemon::task_ids(&deliver(&d, &json!({"kind": "slow"}))).remove(0);
    eventually("the task to run", TEN, || {
        d.get(&format!("/tasks/{id}")).json()["status"] == "running"
    });
    let api = d.url("");
    let page = serve_page(format!(
        r#"<!doctype html><title>cat pictures</title>
<form id="f" method="post" enctype="text/plain" action="{api}/tasks/{id}/cancel"><input name="a" value="b"></form>
<script>
(async () => {{
  for (const path of ['/tasks/{id}/rerun', '/-/reload']) {{
    await fetch('{api}' + path, {{method: 'POST', mode: 'no-cors', body: 'x'}}).catch(() => {{}});
  }}
  document.getElementById('f').submit();
}})();
</script>"#
    ));
    b.goto(&page);
    // The form's answer replaces the page: the daemon's refusal.
    let text = b.wait(
        "the daemon's answer to the form",
        TEN,
        "return location.port !== arguments[0] && document.body && document.body.innerText",
        &[json!(page.rsplit(':').next().unwrap().trim_end_matches('/'))],
    );
    assert!(text.as_str().unwrap().contains("cross-site request forgery"), "{text}");
    let task = d.get(&format!("/tasks/{id}")).json();
    assert_eq!(task["status"], "running", "{task}");
    assert!(task["reruns"].as_array().is_none_or(Vec::is_empty), "{task}");
    assert_eq!(d.get("/tasks").json()["tasks"].as_array().unwrap().len(), 1);
    assert!(!d.logs().contains("config reloaded"), "{}", d.logs());
    // The dashboard, from the daemon's own origin, still can.
    click_cancel(&b, &d, &id);
    eventually("the task to be cancelled", TEN, || {
        d.get(&format!("/tasks/{id}")).json()["status"] == "cancelled"
    });
}

#[test]
fn the_page_asks_for_the_token_once_and_keeps_it_for_the_tab() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(&with_token());
    b.goto(&d.url("/ui#/tasks"));
    token_form(&b);
    let label = b.js("return document.querySelector('label[for=token]').textContent", &[]);
    assert!(label.as_str().unwrap().contains("API token"), "{label}");
    // A wrong one: asked again.
    b.type_into("#token", "wrong");
    b.click(".token-form button[type=submit]");
    b.wait(
        "the form again, with the reason",
        TEN,
        "return document.getElementById('token') !== null && document.querySelector('.token-form').textContent.includes('not valid')",
        &[],
    );
    // Tried, never kept.
    assert_eq!(
        b.js("return sessionStorage.getItem('hookrunner.api-token')", &[]),
        Value::Null
    );
    b.js("document.getElementById('token').value = ''", &[]);
    b.type_into("#token", "ui-secret-token");
    b.click(".token-form button[type=submit]");
    b.wait(
        "the tasks page",
        TEN,
        "const h = document.querySelector('main h1'); return h && h.textContent === 'Tasks'",
        &[],
    );
    assert_eq!(
        b.js("return sessionStorage.getItem('hookrunner.api-token')", &[]),
        json!("ui-secret-token")
    );
    assert_eq!(b.js("return document.cookie", &[]), json!(""));
    // Another page of the same tab: no question.
    let r = deliver(&d, &json!({"kind": "say", "text": "hi"}));
    let id = Daemon::task_ids(&r).remove(0);
    open(&b, &d, &format!("tasks/{id}"), "Task");
    // The stream takes the token too.
    connected(&b);
}

/// `threads` senders at once, `each` `say` deliveries apiece; returns once
/// every task they started has finished.
fn burst(d: &Daemon, threads: usize, each: usize) {
    let url = d.url("/hooks/app");
    let ids: Vec<String> = std::thread::scope(|s| {
        let senders: Vec<_> = (0..threads)
            .map(|t| {
                let url = &url;
                s.spawn(move || {
                    (0..each)
                        .map(|n| {
                            let body = json!({"kind": "say", "text": format!("{t}-{n}")}).to_string();
                            let r = request(
                                "POST",
                                url,
                                &[("Content-Type", "application/json")],
                                Some(body.as_bytes()),
                            );
                            Daemon::task_ids(&r).remove(0)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        senders.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    for id in &ids {
        d.wait_task(id);
    }
}

#[test]
fn the_overview_catches_up_after_a_burst() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    open_live(&b, &d, "overview", "Overview");
    burst(&d, 4, 3);
    // The last events of the burst came while the page was loading: it
    // loads once more after that.
    b.wait(
        "the cards to show every task finished",
        TEN,
        "const cards = [...document.querySelectorAll('.card')].map(c => c.textContent); \
         return cards.length > 2 && cards[0].startsWith('Running0') && cards[2].includes('12 finished, 0 failed')",
        &[],
    );
}

/// Bytes the page has transferred so far (its document and every request
/// that completed: headers and bodies as sent, by the Resource Timing API).
const TRANSFERRED: &str =
    "const nav = performance.getEntriesByType('navigation').reduce((n, e) => n + e.transferSize, 0); \
     return nav + performance.getEntriesByType('resource').reduce((n, e) => n + e.transferSize, 0);";

#[test]
fn the_first_page_and_the_task_list_stay_small_when_tasks_print_a_lot() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(&CONFIG.replacen(
        "programs:",
        "programs:\n  loud:\n    command: [sh, -c, 'head -c 61440 /dev/zero | tr \"\\0\" o; head -c 61440 /dev/zero | tr \"\\0\" e >&2']",
        1,
    ).replacen("    tick: {rules: [{run: ticker}]}", "    tick: {rules: [{run: ticker}]}\n    loud: {rules: [{run: loud}]}", 1));
    // 40 tasks of 60 KiB on stdout and on stderr each: 4.8 MB of output tails.
    let ids: Vec<String> = (0..40)
        .map(|_| Daemon::task_ids(&deliver(&d, &json!({"kind": "loud"}))).remove(0))
        .collect();
    for id in &ids {
        assert_eq!(d.wait_task(id)["stdout"].as_str().unwrap().len(), 61440);
    }
    // `/`, as a user types it: the overview, all it loads until its cards show.
    b.goto(&d.url("/"));
    b.wait(
        "the overview's cards",
        TEN,
        "const cards = [...document.querySelectorAll('.card')].map(c => c.textContent); \
         return cards.length > 2 && cards[2].includes('40 finished, 0 failed')",
        &[],
    );
    connected(&b);
    let first = b.js(TRANSFERRED, &[]).as_u64().unwrap();
    eprintln!("the first page transferred {first} bytes");
    assert!(first > 10_000, "the files were counted: {first}");
    assert!(first < 200_000, "the first page transferred {first} bytes");
    // The task list, its first page of 100 rows.
    b.js("performance.clearResourceTimings()", &[]);
    b.goto(&d.url("/ui#/tasks"));
    b.wait(
        "the task list",
        TEN,
        "const p = document.querySelector('main p[role=status]'); return p !== null && p.textContent === '40 tasks shown, no older ones'",
        &[],
    );
    let list = b.js(
        "return performance.getEntriesByType('resource').reduce((n, e) => n + e.transferSize, 0)",
        &[],
    );
    let list = list.as_u64().unwrap();
    eprintln!("the task list transferred {list} bytes");
    assert!(list < 200_000, "the task list transferred {list} bytes");
}

#[test]
fn a_flood_of_refused_requests_costs_the_deliveries_page_no_requests() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    open_live(&b, &d, "deliveries", "Deliveries");
    b.js(
        "performance.setResourceTimingBufferSize(100000); performance.clearResourceTimings()",
        &[],
    );
    // A stranger's flood: 3000 requests to a source that does not exist.
    let url = d.url("/hooks/nosuch");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..750 {
                    assert_eq!(request("POST", &url, &[], Some(b"{}")).status, 404);
                }
            });
        }
    });
    // Every one is accounted for: a row, or counted in the line above the list.
    let shown = b.wait(
        "the page to account for the 3000 records",
        Duration::from_secs(30),
        "const rows = document.querySelectorAll('#deliveries tbody tr').length; \
         const n = document.getElementById('newer'); const waiting = n ? Number(n.dataset.waiting || 0) : 0; \
         return rows + waiting === 3000 && rows",
        &[],
    );
    assert_eq!(shown, json!(500), "the rows added live are bounded");
    let requests = b.js("return performance.getEntriesByType('resource').length", &[]);
    assert!(requests.as_u64().unwrap() <= 5, "the page made {requests} requests");
    // Still usable: the newest page on request, and another page.
    b.click("#newer button");
    b.wait(
        "the newest page",
        TEN,
        "const p = document.querySelector('main p[role=status]'); return p !== null && p.textContent === '100 deliveries shown'",
        &[],
    );
    b.click("nav a[data-page=overview]");
    b.wait(
        "the overview",
        TEN,
        "const h = document.querySelector('main h1'); return h && h.textContent === 'Overview'",
        &[],
    );
}

#[test]
fn the_arrow_keys_step_through_a_filters_options_and_the_focus_stays_on_it() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    for (route, heading, select, second) in [
        ("tasks", "Tasks", "status", "running"),
        ("deliveries", "Deliveries", "outcome", "ignored"),
    ] {
        open(&b, &d, route, heading);
        b.js(
            "document.querySelector('select[name=' + arguments[0] + ']').focus()",
            &[json!(select)],
        );
        for (n, want) in [(1, None), (2, Some(second))] {
            b.press("\u{E015}");
            // Each option is applied (the page loads again), and the focus comes back.
            b.wait(
                "the option applied and the focus on the select",
                TEN,
                "const s = document.activeElement; return s && s.tagName === 'SELECT' && s.name === arguments[0] \
                 && s.selectedIndex === arguments[1] && location.hash.includes(arguments[0] + '=') \
                 && s.value === new URLSearchParams(location.hash.split('?')[1]).get(arguments[0])",
                &[json!(select), json!(n)],
            );
            if let Some(v) = want {
                let value = b.js("return document.activeElement.value", &[]);
                assert_eq!(value, json!(v), "{route}");
            }
        }
    }
}

#[test]
fn a_malformed_address_is_not_found_and_a_token_not_ascii_is_refused_in_the_form() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(&with_token());
    b.goto(&d.url("/ui#/tasks"));
    token_form(&b);
    b.type_into("#token", "t\u{f8}ken\u{20ac}");
    b.click(".token-form button[type=submit]");
    let said = b.wait(
        "the form's refusal",
        TEN,
        "const e = document.getElementById('token-error'); return e && !e.hidden && e.textContent",
        &[],
    );
    assert!(said.as_str().unwrap().contains("printable ASCII"), "{said}");
    assert_eq!(
        b.js("return sessionStorage.getItem('hookrunner.api-token')", &[]),
        Value::Null
    );
    // A good one still works after that.
    b.js("document.getElementById('token').value = ''", &[]);
    b.type_into("#token", "ui-secret-token");
    b.click(".token-form button[type=submit]");
    b.wait(
        "the tasks page",
        TEN,
        "const h = document.querySelector('main h1'); return h && h.textContent === 'Tasks'",
        &[],
    );
    // A malformed escape in the address, or more parts than a page has:
    // "Not found", not the old page nor the page the start names.
    for address in [
        "/ui#/tasks/%E0%A4%A",
        "/ui#/overview/x",
        "/ui#/tasks/00000000-0000-0000-0000-000000000000/extra",
    ] {
        b.goto(&d.url("/ui#/tasks"));
        b.wait(
            "the tasks page",
            TEN,
            "const h = document.querySelector('main h1'); return h && h.textContent === 'Tasks'",
            &[],
        );
        b.goto(&d.url(address));
        b.wait(
            &format!("Not found for {address}"),
            TEN,
            "const h = document.querySelector('main h1'); return h && h.textContent === 'Not found'",
            &[],
        );
    }
}

/// The text of the list's count line.
const COUNT_LINE: &str =
    "const p = document.querySelector('main p[role=status]'); return p !== null && p.textContent === arguments[0]";

#[test]
fn the_count_line_follows_the_rows_added_live_and_rows_keep_creation_order() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    open_live(&b, &d, "tasks", "Tasks");
    b.wait("an empty list", TEN, COUNT_LINE, &[json!("No tasks match.")]);
    // A burst from four clients at once: the rows' refreshes overlap.
    let url = d.url("/hooks/app");
    std::thread::scope(|s| {
        for t in 0..4 {
            let url = &url;
            s.spawn(move || {
                for n in 0..3 {
                    let body = json!({"kind": "say", "text": format!("{t}-{n}")}).to_string();
                    let r = request(
                        "POST",
                        url,
                        &[("Content-Type", "application/json")],
                        Some(body.as_bytes()),
                    );
                    assert_eq!(r.status, 202, "{}", r.text);
                }
            });
        }
    });
    b.wait(
        "the count of 12 rows",
        TEN,
        COUNT_LINE,
        &[json!("12 tasks shown, no older ones")],
    );
    let rows = b.js(
        "return [...document.querySelectorAll('#tasks tbody tr')].map(r => r.dataset.task)",
        &[],
    );
    let rows: Vec<&str> = rows.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(rows.len(), 12, "{rows:?}");
    // Newest first, by creation time.
    let created: Vec<String> = rows
        .iter()
        .map(|id| {
            d.get(&format!("/tasks/{id}")).json()["created_at"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted, "rows out of creation order: {rows:?}");

    // The deliveries' count line too.
    open_live(&b, &d, "deliveries", "Deliveries");
    b.wait(
        "12 records",
        TEN,
        COUNT_LINE,
        &[json!("12 deliveries shown, no older ones")],
    );
    deliver(&d, &json!({"kind": "say", "text": "one more"}));
    b.wait(
        "13 records",
        TEN,
        COUNT_LINE,
        &[json!("13 deliveries shown, no older ones")],
    );
}

#[test]
fn a_filtered_list_drops_a_task_that_no_longer_matches() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    open_live(&b, &d, "tasks?status=running", "Tasks");
    b.wait("an empty list", TEN, COUNT_LINE, &[json!("No tasks match.")]);
    let slow = Daemon::task_ids(&deliver(&d, &json!({"kind": "slow"}))).remove(0);
    b.wait(
        "the running task's row",
        TEN,
        "const r = document.querySelector('tr[data-task=\"' + arguments[0] + '\"]'); return r !== null && r.textContent.includes('running')",
        &[json!(slow)],
    );
    b.wait(
        "the count of one",
        TEN,
        COUNT_LINE,
        &[json!("1 task shown, no older ones")],
    );
    // Its duration goes on counting while it runs.
    let duration =
        "return document.querySelector('tr[data-task=\"' + arguments[0] + '\"] td[data-label=duration]').textContent";
    let first = b.js(duration, &[json!(slow)]);
    b.wait(
        "the duration to advance",
        TEN,
        &format!("const now = (() => {{ {duration} }})(); return now !== arguments[1] && now"),
        &[json!(slow), first],
    );
    // A task that only passes through `running`, and the running one cancelled.
    let quick = Daemon::task_ids(&deliver(&d, &json!({"kind": "say", "text": "quick"}))).remove(0);
    d.wait_task(&quick);
    let r = d.post(&format!("/tasks/{slow}/cancel"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text);
    d.wait_task(&slow);
    b.wait("no rows", TEN, COUNT_LINE, &[json!("No tasks match.")]);
    assert_eq!(
        b.js("return document.querySelectorAll('#tasks tbody tr').length", &[]),
        json!(0)
    );
}

const RESTART_CONFIG: &str = r#"
state:
  path: $DIR/state.db
sources:
  app:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  hold:
    command: [sh, -c, 'echo "holding $HOOK_TASK_ID"; exec sleep 60']
    max_concurrent: 1
  again:
    command: [sh, -c, 'n=$(( $(cat "$COUNT_FILE" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$COUNT_FILE"; echo "run $n"; exec sleep 60']
    on_interrupt: rerun
    env: {COUNT_FILE: "$DIR/runs"}
mappings:
  app:
    hold: {rules: [{run: hold}]}
    again: {rules: [{run: again}]}
"#;

const TWENTY: Duration = Duration::from_secs(20);

/// The task page's status, as its header shows it.
const HEADER_STATUS: &str =
    "const b = document.querySelector('main h1 + p .badge'); return b !== null && b.textContent === arguments[0]";

#[test]
fn the_task_page_reloads_its_task_after_the_daemon_restarts() {
    let Some(b) = browser() else { return };
    let mut d = Daemon::start(RESTART_CONFIG);
    let blocker = Daemon::task_ids(&deliver(&d, &json!({"kind": "hold"}))).remove(0);
    eventually("the first task to run", TEN, || {
        d.get(&format!("/tasks/{blocker}")).json()["status"] == "running"
    });
    let id = Daemon::task_ids(&deliver(&d, &json!({"kind": "hold"}))).remove(0);
    open_live(&b, &d, &format!("tasks/{id}"), "Task");
    b.wait("the status queued", TEN, HEADER_STATUS, &[json!("queued")]);
    // It starts: the page hears of it on the event stream.
    let r = d.post(&format!("/tasks/{blocker}/cancel"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text);
    b.wait("the status running", TEN, HEADER_STATUS, &[json!("running")]);
    let line = format!("holding {id}");
    b.wait(
        "its output",
        TEN,
        "return document.getElementById('output').textContent.includes(arguments[0])",
        &[json!(line)],
    );
    b.js("window.__sameDocument = 'yes'", &[]);

    // A crash and a start: the task was interrupted, which no event tells.
    d.restart_same_address();
    eventually("the task to be interrupted", TEN, || {
        d.get(&format!("/tasks/{id}")).json()["status"] == "interrupted"
    });
    b.wait("the status interrupted", TWENTY, HEADER_STATUS, &[json!("interrupted")]);
    b.wait(
        "Rerun offered, Cancel not",
        TEN,
        "return document.getElementById('cancel').disabled && !document.getElementById('rerun').disabled",
        &[],
    );
    b.wait(
        "the interrupted attempt",
        TEN,
        "return document.querySelector('ol.timeline').textContent.startsWith('Attempt 1 interrupted')",
        &[],
    );
    // The output was read again, to its end: no line twice, no dead end.
    let text = b.wait(
        "the output read again",
        TWENTY,
        "const t = document.getElementById('output').textContent; return t.includes('output stream opened again') && t.includes(arguments[0]) && t",
        &[json!(line)],
    );
    let text = text.as_str().unwrap();
    assert_eq!(text.matches(&line).count(), 1, "{text}");
    assert!(!text.contains("output stream ended"), "{text}");
    assert_eq!(
        b.js("return window.__sameDocument", &[]),
        json!("yes"),
        "the page reloaded"
    );
}

#[test]
fn the_output_of_a_task_run_again_after_a_restart_goes_on_live() {
    let Some(b) = browser() else { return };
    let mut d = Daemon::start(RESTART_CONFIG);
    let id = Daemon::task_ids(&deliver(&d, &json!({"kind": "again"}))).remove(0);
    open_live(&b, &d, &format!("tasks/{id}"), "Task");
    b.wait(
        "the first run's output",
        TEN,
        "return document.getElementById('output').textContent.includes('run 1')",
        &[],
    );
    b.wait("the status running", TEN, HEADER_STATUS, &[json!("running")]);

    // Interrupted by the crash, queued again at the start, running again.
    d.restart_same_address();
    eventually("the second run", TWENTY, || {
        d.get(&format!("/tasks/{id}")).json()["attempt"] == 2
    });
    let text = b.wait(
        "the second run's output",
        TWENTY,
        "const t = document.getElementById('output').textContent; return t.includes('run 2') && t",
        &[],
    );
    assert!(!text.as_str().unwrap().contains("output stream ended"), "{text}");
    b.wait("the status running", TEN, HEADER_STATUS, &[json!("running")]);
    b.wait(
        "both attempts",
        TEN,
        "const t = document.querySelector('ol.timeline').textContent; return t.startsWith('Attempt 1 interrupted') && t.includes('Attempt 2 running')",
        &[],
    );
    assert_eq!(d.get(&format!("/tasks/{id}")).json()["status"], "running");
}

/// Wraps the page's `fetch` so that each event stream it opens is listed in
/// `window.__streams` (`{url, auth, open}`) until it is closed.
const WATCH_STREAMS: &str = r#"
window.__streams = [];
const fetchBefore = window.fetch;
window.fetch = async (input, init) => {
  const r = await fetchBefore(input, init);
  if (!r.body || !(r.headers.get('content-type') || '').startsWith('text/event-stream')) return r;
  const s = { url: String(input), auth: new Headers((init && init.headers) || {}).get('Authorization'), open: true };
  window.__streams.push(s);
  const reader = r.body.getReader();
  const body = new ReadableStream({
    async pull(c) {
      try {
        const { value, done } = await reader.read();
        if (done) { s.open = false; c.close(); } else c.enqueue(value);
      } catch (e) { s.open = false; c.error(e); }
    },
    cancel(why) { s.open = false; return reader.cancel(why); },
  });
  return new Response(body, { status: r.status, statusText: r.statusText, headers: r.headers });
};
"#;

#[test]
fn forget_token_closes_the_streams_opened_with_it() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(&with_token());
    let auth = [("Authorization", "Bearer ui-secret-token")];
    let r = d.post(
        "/hooks/app",
        &[("Content-Type", "application/json")],
        br#"{"kind": "slow"}"#,
    );
    let id = Daemon::task_ids(&r).remove(0);
    eventually("the task to run", TEN, || {
        d.get_with(&format!("/tasks/{id}"), &auth).json()["status"] == "running"
    });
    b.goto(&d.url(&format!("/ui#/tasks/{id}")));
    token_form(&b);
    b.js(WATCH_STREAMS, &[]);
    b.type_into("#token", "ui-secret-token");
    b.click(".token-form button[type=submit]");
    connected(&b);
    let open_with_token =
        "return window.__streams.filter(s => s.open && s.auth === 'Bearer ui-secret-token').map(s => s.url).sort()";
    b.wait(
        "the event stream and the output stream, with the token",
        TEN,
        &format!("const open = (() => {{ {open_with_token} }})(); return open.length === 2 && open"),
        &[],
    );
    let open = b.js(open_with_token, &[]);
    assert_eq!(open, json!(["/events", format!("/tasks/{id}/output?follow=1")]));

    b.click("#forget-token");
    b.wait(
        "no stream open with the token",
        TEN,
        &format!("return (() => {{ {open_with_token} }})().length === 0"),
        &[],
    );
    b.wait(
        "the live indicator to say a token is needed",
        TEN,
        "return document.getElementById('live').textContent === 'needs a token'",
        &[],
    );
    token_form(&b);
    assert_eq!(
        b.js("return sessionStorage.getItem('hookrunner.api-token')", &[]),
        json!(null)
    );
}

#[test]
fn a_task_page_says_when_it_shows_only_the_end_of_the_output() {
    let Some(b) = browser() else { return };
    let config = CONFIG
        .replacen("sources:", "tasks:\n  output_limit: 1KiB\nsources:", 1)
        .replacen(
            "programs:",
            "programs:\n  loud:\n    command: [sh, -c, 'i=1; while [ $i -le 300 ]; do echo \"line $i\"; i=$((i+1)); done']",
            1,
        )
        .replacen("    tick:", "    loud: {rules: [{run: loud}]}\n    tick:", 1);
    let d = Daemon::start(&config);
    let id = Daemon::task_ids(&deliver(&d, &json!({"kind": "loud"}))).remove(0);
    let task = d.wait_task(&id);
    assert_eq!(task["stdout_truncated"], true, "{task}");
    open(&b, &d, &format!("tasks/{id}"), "Task");
    b.wait(
        "the note that only the end is shown",
        TEN,
        "const p = document.getElementById('output-partial'); return p && !p.hidden && p.textContent.includes('Only the end of stdout')",
        &[],
    );
    // The page shows the end, not the start...
    let shown = b.js("return document.getElementById('output').textContent", &[]);
    assert!(shown.as_str().unwrap().contains("line 300"), "{shown}");
    assert!(!shown.as_str().unwrap().contains("line 1line"), "{shown}");
    // ...and its link leads to the whole of it.
    let href = b.js(
        "return document.querySelector('#output-partial a.whole-output').getAttribute('href')",
        &[],
    );
    assert_eq!(href, json!(format!("/tasks/{id}/output")));
    let whole = d.get(href.as_str().unwrap());
    assert!(whole.text.starts_with("line 1\nline 2\n"), "{}", &whole.text[..40]);
    // A task whose output fits says nothing.
    let quiet = Daemon::task_ids(&deliver(&d, &json!({"kind": "say", "text": "hi"}))).remove(0);
    d.wait_task(&quiet);
    open(&b, &d, &format!("tasks/{quiet}"), "Task");
    b.wait(
        "the output",
        TEN,
        "return document.getElementById('output').textContent.includes('hi')",
        &[],
    );
    assert_eq!(
        b.js("return document.getElementById('output-partial').hidden", &[]),
        json!(true)
    );
}

#[test]
fn a_token_withdrawn_by_a_reload_turns_a_task_page_into_the_token_form() {
    let Some(b) = browser() else { return };
    let config = with_token();
    let d = Daemon::start(&config);
    let auth = [("Authorization", "Bearer ui-secret-token")];
    let r = d.post_json("/hooks/app", &[], br#"{"kind": "slow"}"#);
    let id = Daemon::task_ids(&r).remove(0);
    eventually("the task to run", TEN, || {
        d.get_with(&format!("/tasks/{id}"), &auth).json()["status"] == "running"
    });
    b.goto(&d.url(&format!("/ui#/tasks/{id}")));
    token_form(&b);
    b.type_into("#token", "ui-secret-token");
    b.click(".token-form button[type=submit]");
    b.wait(
        "the task page",
        TEN,
        "const h = document.querySelector('main h1'); return h && h.textContent.startsWith('Task')",
        &[],
    );
    connected(&b);
    // The token is withdrawn: the page asks for one again by itself.
    std::fs::write(
        d.path("webhook.yaml"),
        CONFIG.replacen("sources:", "api:\n  tokens: [another-token]\nsources:", 1),
    )
    .unwrap();
    let r = request("POST", &d.url("/-/reload"), &auth, Some(b""));
    assert_eq!(r.status, 200, "{}", r.text);
    b.wait(
        "the token form again, without navigating",
        Duration::from_secs(20),
        "return document.getElementById('token') !== null",
        &[],
    );
    assert_eq!(b.js("return location.hash", &[]), json!(format!("#/tasks/{id}")));
}

/// Writes docs/screenshots/*.png: every page at 1280 px, the task list at 390 px.
#[test]
#[ignore = "writes docs/screenshots; run with --ignored screenshots"]
fn screenshots() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(CONFIG);
    let dir = std::path::Path::new(ROOT).join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let mut last = String::new();
    for (i, text) in ["hello", "quiet", "world"].iter().enumerate() {
        let r = deliver(&d, &json!({"kind": "say", "text": text, "n": i}));
        if r.status == 202 {
            last = Daemon::task_ids(&r).remove(0);
        }
    }
    let ignored = d.get("/deliveries?outcome=ignored").json()["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    d.wait_task(&last);
    let r = deliver(&d, &json!({"kind": "tick"}));
    let ticker = Daemon::task_ids(&r).remove(0);
    deliver(&d, &json!({"kind": "slow"}));
    let shot = |name: &str| b.screenshot(&dir.join(format!("{name}.png")));
    b.size(1280, 1000);
    open(&b, &d, "overview", "Overview");
    shot("overview");
    open(&b, &d, "tasks", "Tasks");
    b.wait(
        "rows",
        TEN,
        "return document.querySelectorAll('#tasks tbody tr').length >= 4",
        &[],
    );
    shot("tasks");
    open(&b, &d, &format!("tasks/{ticker}"), "Task");
    b.wait(
        "the end of the output",
        TEN,
        "return document.querySelector('#output .line.stderr') !== null",
        &[],
    );
    shot("task");
    open(&b, &d, "deliveries", "Deliveries");
    shot("deliveries");
    open(&b, &d, &format!("deliveries/{ignored}"), "Delivery");
    shot("delivery");
    open(&b, &d, "try", "Try a payload");
    b.type_into("#try-body", r#"{"kind": "say", "text": "from the try page"}"#);
    b.click("#try-run");
    b.wait(
        "the verdict",
        TEN,
        "return document.querySelector('#try-result h2') !== null",
        &[],
    );
    shot("try");
    b.size(390, 844);
    open(&b, &d, "tasks", "Tasks");
    b.wait(
        "rows",
        TEN,
        "return document.querySelectorAll('#tasks tbody tr').length >= 4",
        &[],
    );
    shot("tasks-390");
}

/// A handler that prints many lines at once: the page keeps up (the view
/// holds the last lines, says how many it left out, and follows the end).
#[test]
fn a_flood_of_output_lines_keeps_the_task_page_responsive() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(
        &CONFIG
            .replacen(
                "programs:",
                "programs:\n  flood:\n    command: [sh, -c, 'sleep 2; seq 1 20000; sleep 1']",
                1,
            )
            .replacen(
                "mappings:\n  app:",
                "mappings:\n  app:\n    flood: {rules: [{run: flood}]}",
                1,
            ),
    );
    let r = deliver(&d, &json!({"kind": "flood"}));
    let id = Daemon::task_ids(&r).remove(0);
    open(&b, &d, &format!("tasks/{id}"), "Task");
    b.wait(
        "the last line, with the end in view",
        Duration::from_secs(30),
        "const o = document.getElementById('output'); const last = o.lastElementChild; \
         return last && last.textContent.endsWith('20000') && o.scrollHeight - o.scrollTop - o.clientHeight < 8",
        &[],
    );
    let shown = b.js("return document.querySelectorAll('#output .line.stdout').length", &[]);
    assert!(shown.as_u64().unwrap() <= 5500, "{shown} lines kept in the page");
    let note = b.js(
        "const n = document.getElementById('output-dropped'); return n && n.textContent",
        &[],
    );
    assert!(
        note.as_str()
            .is_some_and(|n| n.contains("earlier lines are not shown here")),
        "{note}"
    );
}

/// A burst of deliveries while the list is open: every row ends showing
/// its task's final status, without a reload.
#[test]
fn after_a_burst_every_row_of_the_list_shows_its_final_status() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(&format!("tasks:\n  max_queued: 10000\n{CONFIG}"));
    open_live(&b, &d, "tasks", "Tasks");
    burst(&d, 16, 150);
    b.wait(
        "every row shown to say succeeded",
        Duration::from_secs(60),
        "const rows = [...document.querySelectorAll('tr[data-task]')]; \
         return rows.length >= 100 && rows.every(r => r.querySelector('.badge').textContent === 'succeeded')",
        &[],
    );
}

#[test]
fn an_earlier_attempts_output_can_be_read_on_the_task_page() {
    let Some(b) = browser() else { return };
    let d = Daemon::start(
        &CONFIG
            .replacen(
                "programs:",
                "programs:\n  flaky:\n    command: handlers/attempts.sh\n    retry: {attempts: 2, backoff: 100ms}\n    env: {COUNT_FILE: \"$DIR/count\", SUCCEED_ON: \"2\"}",
                1,
            )
            .replacen("mappings:\n  app:", "mappings:\n  app:\n    flaky: {rules: [{run: flaky}]}", 1),
    );
    let r = deliver(&d, &json!({"kind": "flaky"}));
    let id = Daemon::task_ids(&r).remove(0);
    assert_eq!(d.wait_task(&id)["status"], "succeeded");
    open(&b, &d, &format!("tasks/{id}"), "Task");
    let first = b.wait(
        "attempt 1's output",
        TEN,
        "const d = document.querySelector('ol.timeline li details'); return d && d.textContent",
        &[],
    );
    assert!(first.as_str().unwrap().contains("run 1"), "{first}");
    // Only the earlier attempt has it; the last one's output is the page's.
    assert_eq!(
        b.js("return document.querySelectorAll('ol.timeline details').length", &[]),
        json!(1)
    );
}
