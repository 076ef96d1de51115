//! The OpenAPI description (`src/http/openapi.json`, served at
//! `GET /openapi.json`) cannot drift from the daemon: it names exactly the
//! routes `http::configure` registers, every documented operation answers a
//! status it lists, every other method of a documented path is `405` with
//! `Allow` naming the documented ones, `docs/API.md` names every operation,
//! every event the two event streams send is one it documents, and
//! Schemathesis finds no server error and no answer that breaks the
//! description.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// A daemon with a hooks prefix of its own, sources and programs that
/// exercise the hooks, and a store.
const CONFIG: &str = r#"
server:
  prefix: /in
state:
  path: $DIR/state.db
sources:
  github:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  hello:
    command: [sh, -c, "echo hello"]
mappings:
  github:
    hello: {rules: [{run: hello}]}
"#;

fn doc() -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join("src/http/openapi.json")).unwrap();
    serde_json::from_str(&text).expect("src/http/openapi.json is JSON")
}

/// Every operation of the description, `METHOD path`, as written (the hooks under `{prefix}`).
fn operations(doc: &Value) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            ops.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops
}

/// The operations of the dashboard (tagged `dashboard`): served once the dashboard is built in.
fn is_dashboard(doc: &Value, op: &str) -> bool {
    let (method, path) = op.split_once(' ').unwrap();
    doc["paths"][path][method.to_lowercase()]["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t == "dashboard"))
}

/// The routes `http::configure` registers, `METHOD /path`, read from its source.
fn registered() -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("src/http/mod.rs")).unwrap();
    let start = text.find("pub fn configure").expect("http::configure");
    let body = &text[start..start + text[start..].find("\n}\n").unwrap()];
    let mut routes = BTreeSet::new();
    for service in body.split(".service(").skip(1) {
        if service.starts_with("hooks::scope()") {
            routes.insert("POST {prefix}/{source}".to_string());
            continue;
        }
        let resource = service.split("web::resource(").nth(1).expect("a resource");
        // `web::resource(["/ui", "/ui/"])`: the first path is the one described.
        let path = resource.split('"').nth(1).unwrap();
        for method in METHODS {
            if service.contains(&format!("web::{}()", method.to_lowercase())) {
                routes.insert(format!("{method} {path}"));
            }
        }
    }
    routes
}

#[test]
fn the_description_names_exactly_the_registered_routes_and_api_md_names_them_all() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let described = operations(&doc);
    let registered = registered();
    let undocumented: Vec<&String> = registered.difference(&described).collect();
    assert!(
        undocumented.is_empty(),
        "routes src/http/openapi.json does not describe: {undocumented:?}"
    );
    // The dashboard's routes are described before its files are built in (another branch).
    let unserved: Vec<&String> = described
        .difference(&registered)
        .filter(|op| !is_dashboard(&doc, op))
        .collect();
    assert!(
        unserved.is_empty(),
        "described operations that are not routes: {unserved:?}"
    );

    let api_md = std::fs::read_to_string(Path::new(ROOT).join("docs/API.md")).unwrap();
    let missing: Vec<String> = described
        .iter()
        .map(|op| op.replace("{prefix}", "/hooks"))
        .filter(|op| !api_md.contains(&format!("`{op}`")))
        .collect();
    assert!(missing.is_empty(), "operations docs/API.md does not name: {missing:?}");

    // Every operation says what each of its statuses means, and every error is `Error`.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path}");
            for (status, r) in responses {
                assert!(
                    r["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status}"
                );
                if status.starts_with('4') {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

/// One request, redirects not followed.
fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> (u16, Vec<(String, String)>) {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(30))
        .redirects(0)
        .build();
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or("").to_string();
            (n.to_lowercase(), v)
        })
        .collect();
    (resp.status(), headers)
}

/// A documented path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{prefix}", "/in")
        .replace("{source}", "github")
        .replace("{id}", "0b9c1f6e-0000-4000-8000-000000000000")
        .replace("{file}", "nothing-here.js")
}

#[test]
fn every_operation_answers_a_documented_status_and_other_methods_are_405_with_allow() {
    let doc = doc();
    let d = Daemon::start(CONFIG);
    // Served, with this daemon's prefix.
    let served = d.get("/openapi.json");
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("application/json"));
    let served = served.json();
    assert!(served["paths"]["/in/{source}"]["post"].is_object());
    assert!(served["paths"].get("{prefix}/{source}").is_none());
    assert_eq!(served["info"]["version"], env!("CARGO_PKG_VERSION"));

    let dashboard_built_in = call("GET", &d.url("/ui"), &[], None).0 != 404;
    if !dashboard_built_in {
        eprintln!("note: the dashboard is not built in here; its described operations are not exercised");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        let item = item.as_object().unwrap();
        let url = d.url(&concrete(path));
        let taken: Vec<String> = METHODS
            .iter()
            .filter(|m| item.contains_key(&m.to_lowercase()))
            .map(|m| m.to_string())
            .collect();
        if !dashboard_built_in && item.values().any(|op| op["tags"][0] == "dashboard") {
            continue;
        }
        for method in &taken {
            let op = &item[&method.to_lowercase()];
            let status = if path == "/events" {
                // The stream does not end: its head is the answer.
                let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(10)).build();
                let resp = agent.get(&url).call().unwrap();
                assert_eq!(resp.content_type(), "text/event-stream");
                resp.status()
            } else {
                let body = (method == "POST").then_some(&br#"{"kind": "hello"}"#[..]);
                call(method, &url, &[("Content-Type", "application/json")], body).0
            };
            let listed = op["responses"].get(status.to_string()).is_some() || op["responses"].get("default").is_some();
            assert!(
                listed,
                "{method} {path} answered {status}, which the description does not list"
            );
        }
        for method in METHODS.iter().filter(|m| !taken.iter().any(|t| t == *m)) {
            let (status, headers) = call(method, &url, &[], None);
            assert_eq!(status, 405, "{method} {path}");
            let allow = headers.iter().find(|(k, _)| k == "allow").map(|(_, v)| v.as_str());
            assert_eq!(allow, Some(taken.join(", ").as_str()), "Allow of {method} {path}");
        }
    }
    assert_eq!(call("GET", &d.url("/nothing/here"), &[], None).0, 404);
}

#[test]
fn the_description_follows_the_api_access_rule() {
    let d = Daemon::start(&CONFIG.replacen("sources:", "api:\n  tokens: [tok-1]\nsources:", 1));
    let without = d.get("/openapi.json");
    assert_eq!(without.status, 401);
    assert_eq!(without.error(), "send an API token as `Authorization: Bearer <token>`");
    let with = d.get_with("/openapi.json", &[("Authorization", "Bearer tok-1")]);
    assert_eq!(with.status, 200);
    assert_eq!(with.json()["openapi"], "3.1.0");
}

// ------------------------------------------------------------- event streams

/// Whether `event` is what `schema` (the description's schema of one event of
/// a `text/event-stream`) allows: the keywords it uses are checked, and a
/// keyword this check does not know fails it.
fn check_event(schema: &Value, event: &sse::Event) -> Result<(), String> {
    let known = ["description", "type", "required", "properties", "additionalProperties"];
    if let Some(k) = schema
        .as_object()
        .unwrap()
        .keys()
        .find(|k| !known.contains(&k.as_str()))
    {
        return Err(format!("the check does not know `{k}`"));
    }
    assert_eq!(schema["type"], "object", "an event is an object of its fields");
    for name in schema["required"].as_array().unwrap() {
        if !event.contains_key(name.as_str().unwrap()) {
            return Err(format!("no `{name}` field"));
        }
    }
    for (name, value) in event {
        let Some(field) = schema["properties"].get(name) else {
            if schema["additionalProperties"] == false {
                return Err(format!("a field `{name}` the description does not name"));
            }
            continue;
        };
        for (keyword, rule) in field.as_object().unwrap() {
            let ok = match keyword.as_str() {
                "type" => rule == "string",
                "enum" => rule.as_array().unwrap().iter().any(|v| v == value),
                "pattern" => regex::Regex::new(rule.as_str().unwrap()).unwrap().is_match(value),
                "contentMediaType" => rule == "application/json" && serde_json::from_str::<Value>(value).is_ok(),
                other => return Err(format!("the check does not know `{other}` of `{name}`")),
            };
            if !ok {
                return Err(format!("`{name}: {value}` breaks `{keyword}: {rule}`"));
            }
        }
    }
    Ok(())
}

#[test]
fn every_event_both_streams_send_is_one_their_description_documents() {
    let doc = doc();
    let schema =
        |path: &str| doc["paths"][path]["get"]["responses"]["200"]["content"]["text/event-stream"]["schema"].clone();
    let config = CONFIG.replace(
        "programs:\n",
        "programs:\n  talk:\n    command: [sh, -c, \"echo one; echo oops >&2; echo two\"]\n",
    ) + "    talk: {rules: [{run: talk}]}\n";
    let d = Daemon::start(&config);
    let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(30)).build();
    let events = agent.get(&d.url("/events")).call().expect("GET /events");
    let mut events = std::io::BufReader::new(events.into_reader());

    let r = d.post_json("/in/github", &[], br#"{"kind": "talk"}"#);
    assert_eq!(r.status, 202, "{}", r.text);
    let id = Daemon::task_ids(&r).remove(0);
    assert_eq!(d.wait_task(&id)["status"], "succeeded");

    // The output, followed after the end: every line, then the status, then the end.
    let output = agent
        .get(&d.url(&format!("/tasks/{id}/output?follow=1")))
        .call()
        .expect("GET output");
    let mut output = std::io::BufReader::new(output.into_reader());
    let mut kinds = Vec::new();
    while let Some(e) = sse::next_event(&mut output) {
        check_event(&schema("/tasks/{id}/output"), &e).unwrap_or_else(|why| panic!("{why}: {e:?}"));
        kinds.push(match e["event"].as_str() {
            "status" => format!(
                "status {}",
                serde_json::from_str::<Value>(&e["data"]).unwrap()["status"]
            ),
            kind => format!("{kind} {}", e["data"]),
        });
    }
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("status \"succeeded\""),
        "{kinds:?}"
    );
    kinds.sort();
    assert_eq!(
        kinds,
        ["status \"succeeded\"", "stderr oops", "stdout one", "stdout two"]
    );

    // The event stream, up to this task's end.
    let mut seen = Vec::new();
    loop {
        let e = sse::next_event(&mut events).expect("the event stream ended");
        check_event(&schema("/events"), &e).unwrap_or_else(|why| panic!("{why}: {e:?}"));
        seen.push(e["event"].clone());
        let data: Value = serde_json::from_str(&e["data"]).unwrap();
        if e["event"] == "task.finished" && data["task"] == id.as_str() {
            break;
        }
    }
    for kind in ["task.created", "task.started", "delivery.recorded", "task.finished"] {
        assert!(seen.iter().any(|k| k == kind), "no {kind} in {seen:?}");
    }
}

// ------------------------------------------------------------- Schemathesis

/// The `schemathesis` command: `$SCHEMATHESIS`, the venv `.ci/run` makes
/// under `target/`, or `PATH`. `None` with a loud line (a failure under CI).
fn schemathesis() -> Option<PathBuf> {
    let found = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .or_else(|| Some(Path::new(ROOT).join("target/schemathesis/bin/schemathesis")))
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join("schemathesis"))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true, but schemathesis is not installed (.ci/run installs it into target/schemathesis)"
        );
        eprintln!(
            "\n*** SKIPPED: schemathesis is not installed (python3 -m venv target/schemathesis && target/schemathesis/bin/pip install schemathesis) to fuzz the API against its description; with CI=true this is a failure. ***\n"
        );
    }
    found
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_description() {
    let Some(st) = schemathesis() else { return };
    let d = Daemon::start(CONFIG);
    // Something on record, so the lists are not empty.
    let resp = d.post_json("/in/github", &[], br#"{"kind": "hello"}"#);
    let task = Daemon::task_ids(&resp).remove(0);
    d.wait_task(&task);
    // The hooks are fuzzed at the source that exists (a random name is only a 404).
    std::fs::write(
        d.path("schemathesis.toml"),
        "[parameters]\n\"path.source\" = \"github\"\n",
    )
    .unwrap();
    let url = d.url("/openapi.json");
    // `HR_SCHEMATHESIS_EXAMPLES=500` for a longer search than CI's.
    let examples = std::env::var("HR_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "50".into());
    let mut args = vec![
        "run",
        &url,
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        &examples,
        // The event stream does not end (tests/events.rs checks it).
        "--exclude-path",
        "/events",
        "--request-timeout",
        "10",
        "--max-redirects",
        "0",
        "--generation-database",
        "none",
        "--no-color",
    ];
    if call("GET", &d.url("/ui"), &[], None).0 == 404 {
        eprintln!("note: the dashboard is not built in here; its described operations are not fuzzed");
        args.extend(["--exclude-tag", "dashboard"]);
    }
    let out = std::process::Command::new(&st)
        .args(&args)
        .env_remove("SCHEMATHESIS_HOOKS")
        .current_dir(d.dir.path())
        .output()
        .expect("schemathesis runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    // What it covered, for the log.
    eprintln!("{text}");
    assert!(!d.logs().contains("panicked"), "{}", d.logs());
}
