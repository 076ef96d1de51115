//! Bodies that are not JSON, params from anywhere in the request, and what
//! a handler gets besides argv (issue 15, sections 1 to 3): real requests to
//! the real daemon, real handlers (`tests/handlers/dump.py` prints its argv,
//! environment, stdin and the files its arguments and variables name).

mod common;

use common::{eventually, hmac_sha256_hex, request, Daemon, Resp};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const CONFIG: &str = r#"
state:
  path: data/hookrunner.db
tasks:
  max_concurrent: 1
sources:
  any:
    provider: generic
    auth: none
    event: {header: X-Event}
    bodies: [any]
  signed:
    provider: generic
    auth: {hmac: sha256, secret: s3cret, header: X-Signature, prefix: "sha256="}
  xmlish:
    provider: generic
    auth: none
    bodies: [xml]
    content_type: application/xml
programs:
  dump:
    command: [python3, handlers/dump.py]
    params: [a, b]
  files:
    command: [python3, handlers/dump.py]
    params: [title, sha, upload]
  show:
    command: [python3, handlers/dump.py]
  envs:
    command: [python3, handlers/dump.py]
    param_env: {REPO: repo, NOT_THERE: nope, EMPTY: empty}
    param_files:
      DATA_FILE: repo
      BLOB: {param: blob, base64: true}
      NO_FILE: nope
  bare:
    command: [python3, handlers/dump.py]
    hook_env: false
    param_env: {HOOK_repo: repo}
  gate:
    command: handlers/gate.sh
    env: {GATE: "$DIR/open", OUT_FILE: "$DIR/gate.out"}
mappings:
  any:
    plain:
      params: {a: payload.a, b: payload.b}
      rules: [{run: dump}]
    whole:
      params: {a: payload, b: request.body}
      rules: [{run: dump}]
    upload:
      params: {title: payload.title, sha: payload.meta.sha, upload: payload.upload}
      rules: [{run: files}]
    ignored:
      params: {upload: payload.upload}
      rules: [{if: upload == "never", run: show}]
    envs:
      params: {repo: payload.repo, nope: payload.nope, empty: payload.empty, blob: payload.blob}
      rules: [{run: envs}]
    bare:
      params: {repo: payload.repo}
      rules: [{run: bare}]
    block:
      rules: [{run: gate}]
    request:
      parse_json: [payload.data, headers.X-Meta, query.q, payload.broken]
      params:
        method: request.method
        path: request.path
        peer: request.remote_addr
        client: request.client_ip
        raw: request.body
        all_headers: headers
        all_query: query
        dotted: payload."head_commit.id"
        sha: payload.data.sha
        meta: headers.X-Meta.build
        q: query.q.n
        tags: query.tags[]
      rules:
        - if: sha == "abc" && meta == 7 && q == 2
          run: show
  signed:
    "*":
      params: {a: payload.a, b: request.method}
      rules: [{run: dump}]
  xmlish:
    "*":
      params:
        a: "payload.app.users.user[1].-name"
        b: "payload.app.messages.message.#text"
      rules: [{run: dump}]
"#;

fn daemon() -> Daemon {
    let d = Daemon::with(CONFIG).start();
    std::fs::create_dir_all(d.path("data")).unwrap();
    d
}

/// The one task of an accepted delivery, once finished, and what its handler printed.
fn ran(d: &Daemon, r: &Resp) -> (Value, Value) {
    let ids = Daemon::task_ids(r);
    assert_eq!(ids.len(), 1, "{}", r.text);
    let task = d.wait_task(&ids[0]);
    assert_eq!(task["status"], "succeeded", "{task}");
    let seen = serde_json::from_str(task["stdout"].as_str().unwrap()).unwrap();
    (task, seen)
}

fn post(d: &Daemon, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    d.post(path, headers, body)
}

/// One part of a multipart body: name, file name, content type, bytes.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart body with CRLF line ends.
fn multipart(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content_type, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(f) = filename {
            disposition.push_str(&format!("; filename=\"{f}\""));
        }
        body.extend_from_slice(format!("{disposition}\r\n").as_bytes());
        if let Some(ct) = content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[test]
fn a_multipart_body_gives_fields_json_parts_and_files_that_go_with_the_task() {
    let d = daemon();
    let picture: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x01binary\xff";
    let body = multipart(
        "----hookrunner7MA4YWxk",
        &[
            ("title", None, None, "Release 1.2 ✓".as_bytes()),
            ("meta", None, Some("application/json"), br#"{"sha":"abc123","n":1}"#),
            ("upload", Some("../thumb nail.png"), Some("image/png"), picture),
            ("title", None, None, b"second title, ignored"),
        ],
    );
    let ct = "multipart/form-data; boundary=----hookrunner7MA4YWxk";
    let r = post(&d, "/hooks/any", &[("Content-Type", ct), ("X-Event", "upload")], &body);
    let (task, seen) = ran(&d, &r);
    let upload = task["params"]["upload"].as_str().unwrap().to_string();
    assert_eq!(task["params"]["title"], "Release 1.2 ✓");
    assert_eq!(task["params"]["sha"], "abc123");
    let delivery = r.json()["delivery_id"].as_str().unwrap().to_string();
    let expected = d
        .path("data/uploads")
        .canonicalize()
        .unwrap_or_else(|_| d.path("data/uploads"))
        .join(&delivery)
        .join("2-thumb_nail.png");
    assert!(
        upload.ends_with(&format!("/data/uploads/{delivery}/2-thumb_nail.png")),
        "{upload} vs {expected:?}"
    );
    assert_eq!(seen["argv"][2], format!("--upload={upload}"));
    // The handler read the file: the part's exact bytes.
    assert_eq!(
        seen["files"][&upload].as_str().unwrap().as_bytes(),
        String::from_utf8_lossy(picture).as_bytes()
    );
    // stdin is the body as received.
    assert_eq!(seen["stdin_len"], body.len());
    // Once its last task has ended, the delivery's files are gone.
    eventually("the upload directory to go", Duration::from_secs(10), || {
        !Path::new(&upload).parent().unwrap().exists()
    });

    // A multipart delivery that runs nothing leaves no files.
    let r = post(&d, "/hooks/any", &[("Content-Type", ct), ("X-Event", "ignored")], &body);
    assert_eq!(r.status, 200, "{}", r.text);
    let dirs = std::fs::read_dir(d.path("data/uploads"))
        .map(|e| e.count())
        .unwrap_or(0);
    assert_eq!(dirs, 0, "no directory is left for an ignored delivery");

    // A broken body is a 400; a multipart type without a boundary too.
    let r = post(
        &d,
        "/hooks/any",
        &[("Content-Type", ct), ("X-Event", "upload")],
        b"--x\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error(), "the multipart body has no part delimited by its boundary");
    let r = post(
        &d,
        "/hooks/any",
        &[("Content-Type", "multipart/form-data"), ("X-Event", "upload")],
        &body,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "the multipart body's Content-Type has no `boundary`");
}

#[test]
fn a_file_missing_when_its_task_starts_is_written_again_from_the_stored_body() {
    let d = daemon();
    // The gate holds the only slot, so the multipart task waits in the queue.
    let r = post(
        &d,
        "/hooks/any",
        &[("X-Event", "block"), ("Content-Type", "application/json")],
        b"{}",
    );
    let gate = Daemon::task_ids(&r)[0].clone();
    // Its preamble (which the boundary's parts ignore) holds a second
    // layout with a file of the same name in the same place: the file
    // written again is the delivery's own.
    let mut body = b"--fake\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"notes.txt\"\r\n\r\nforged\r\n--fake--\r\n".to_vec();
    body.extend(multipart(
        "b0undary",
        &[("upload", Some("notes.txt"), Some("text/plain"), b"kept bytes\n")],
    ));
    let r = post(
        &d,
        "/hooks/any",
        &[
            ("Content-Type", "multipart/form-data; boundary=b0undary"),
            ("X-Event", "upload"),
        ],
        &body,
    );
    let id = Daemon::task_ids(&r)[0].clone();
    let task = d.get(&format!("/tasks/{id}")).json();
    assert_eq!(task["status"], "queued");
    let upload = task["params"]["upload"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read(&upload).unwrap(), b"kept bytes\n", "written at admission");
    // As if it ran on a node that never had the file.
    std::fs::remove_dir_all(Path::new(&upload).parent().unwrap()).unwrap();
    std::fs::write(d.path("open"), "").unwrap();
    assert_eq!(d.wait_task(&gate)["status"], "succeeded");
    let task = d.wait_task(&id);
    assert_eq!(task["status"], "succeeded", "{task}");
    let seen: Value = serde_json::from_str(task["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(seen["files"][&upload], "kept bytes\n");
    eventually("the upload directory to go", Duration::from_secs(10), || {
        !Path::new(&upload).exists()
    });
}

#[test]
fn xml_form_text_and_bodies_without_a_content_type() {
    let d = daemon();
    // adnanh's own XML test case: attributes as `-name`, text as `#text`.
    let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<app>
  <users>
    <user id="1" name="Jeff" />
    <user id="2" name="Sally" />
  </users>
  <messages>
    <message id="1" from_user="1" to_user="2">Hello!!</message>
  </messages>
</app>"#;
    // `content_type: application/xml` picks the parser whatever is sent.
    let r = post(&d, "/hooks/xmlish", &[("Content-Type", "text/plain")], xml);
    let (task, seen) = ran(&d, &r);
    assert_eq!(task["params"], json!({"a": "Sally", "b": "Hello!!"}));
    assert_eq!(seen["stdin"], String::from_utf8_lossy(xml).as_ref());
    let r = post(
        &d,
        "/hooks/xmlish",
        &[],
        b"<!DOCTYPE x [<!ENTITY e \"boom\">]><x>&e;</x>",
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error(),
        "the body is not valid XML: DOCTYPE declarations (and the entities they declare) are refused"
    );

    // A form: fields as strings, the first of a repeated one; stdin as sent.
    let form = b"a=1&b=two+words&a=ignored";
    let r = post(
        &d,
        "/hooks/any",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Event", "plain"),
        ],
        form,
    );
    let (task, seen) = ran(&d, &r);
    assert_eq!(task["params"], json!({"a": "1", "b": "two words"}));
    assert_eq!(seen["stdin"], "a=1&b=two+words&a=ignored");

    // Text: the whole payload is the string, and so is `request.body`.
    let r = post(
        &d,
        "/hooks/any",
        &[("Content-Type", "text/plain"), ("X-Event", "whole")],
        b"deploy now",
    );
    let (task, _) = ran(&d, &r);
    assert_eq!(task["params"], json!({"a": "deploy now", "b": "deploy now"}));
    let r = post(
        &d,
        "/hooks/any",
        &[("Content-Type", "application/octet-stream"), ("X-Event", "whole")],
        b"\xff\xfe",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "the body is not UTF-8 text");

    // No Content-Type: judged by the content.
    for (body, a) in [
        (&br#"{"a": 5}"#[..], json!(5)),
        (b"a=x&b=y", json!("x")),
        (b"<r><a>in xml</a></r>", Value::Null),
        (b"just words", Value::Null),
    ] {
        let r = post(&d, "/hooks/any", &[("X-Event", "plain")], body);
        let (task, _) = ran(&d, &r);
        assert_eq!(task["params"]["a"], a, "{}", String::from_utf8_lossy(body));
    }

    // A bare `curl -X POST`: no body, no Content-Type. Every payload param is null.
    let r = request("POST", &d.url("/hooks/any"), &[("X-Event", "whole")], None);
    let (task, seen) = ran(&d, &r);
    assert_eq!(task["params"], json!({"a": null, "b": ""}));
    assert_eq!(seen["argv"], json!(["--a=", "--b="]));
    assert_eq!(seen["stdin_len"], 0);
}

#[test]
fn a_kind_the_source_does_not_take_is_a_415_and_an_empty_signed_body_verifies() {
    let d = daemon();
    for (ct, body, kind) in [
        ("application/xml", &b"<a/>"[..], "xml (Content-Type `application/xml`)"),
        ("text/plain", b"hi", "text (Content-Type `text/plain`)"),
        (
            "multipart/form-data; boundary=x",
            b"--x--",
            "multipart (Content-Type `multipart/form-data; boundary=x`)",
        ),
    ] {
        let sig = format!("sha256={}", hmac_sha256_hex("s3cret", body));
        let r = post(
            &d,
            "/hooks/signed",
            &[("Content-Type", ct), ("X-Signature", &sig)],
            body,
        );
        assert_eq!(r.status, 415, "{}", r.text);
        assert_eq!(
            r.error(),
            format!("the body is {kind}, and source `signed` accepts only json")
        );
    }
    let sig = format!("sha256={}", hmac_sha256_hex("s3cret", b"<a/>"));
    let r = post(&d, "/hooks/signed", &[("X-Signature", &sig)], b"<a/>");
    assert_eq!(
        r.error(),
        "the body is xml (judged by its content, without a Content-Type), and source `signed` accepts only json"
    );

    // adnanh's failing case: a valid signature over an empty body.
    let sig = format!("sha256={}", hmac_sha256_hex("s3cret", b""));
    let r = post(
        &d,
        "/hooks/signed",
        &[("Content-Type", "application/json"), ("X-Signature", &sig)],
        b"",
    );
    let (task, _) = ran(&d, &r);
    assert_eq!(task["params"], json!({"a": null, "b": "POST"}));
    let r = post(&d, "/hooks/signed", &[("X-Signature", "sha256=00")], b"");
    assert_eq!(r.status, 401);
}

#[test]
fn param_env_and_param_files_and_hook_env() {
    let d = daemon();
    let body = json!({"repo": "acme/site", "empty": "", "blob": "aGVsbG8gZmlsZQ"}).to_string();
    let r = post(
        &d,
        "/hooks/any",
        &[("Content-Type", "application/json"), ("X-Event", "envs")],
        body.as_bytes(),
    );
    let (task, seen) = ran(&d, &r);
    let env = &seen["env"];
    assert_eq!(env["REPO"], "acme/site");
    assert_eq!(env["EMPTY"], "", "an empty string is set, empty");
    assert!(
        env.get("NOT_THERE").is_none(),
        "a missing param leaves its variable unset: {env}"
    );
    assert!(env.get("NO_FILE").is_none(), "no file, no variable");
    let data_file = env["DATA_FILE"].as_str().unwrap();
    let blob = env["BLOB"].as_str().unwrap();
    assert_eq!(seen["files"][data_file], "acme/site");
    assert_eq!(seen["files"][blob], "hello file", "base64 decoded, padding optional");
    let id = task["id"].as_str().unwrap();
    assert!(
        data_file.ends_with(&format!("/data/output/{id}.1.files/DATA_FILE")),
        "{data_file}"
    );
    // The attempt's directory went with it.
    assert!(!Path::new(data_file).parent().unwrap().exists());

    // A value that is not base64 cannot be given: refused when it arrives.
    let body = json!({"repo": "r", "blob": "not base64!"}).to_string();
    let r = post(
        &d,
        "/hooks/any",
        &[("Content-Type", "application/json"), ("X-Event", "envs")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(
        r.error(),
        "rule 0 of mapping `envs` matched, but program `envs` cannot be run: param `blob` is not base64, and `param_files` says it is; nothing of this delivery was queued"
    );

    // Wrapped at 76 columns, as `base64` and MIME write it: the line breaks
    // (`\n` or `\r\n`) are skipped, as Go's decoder skips them.
    let text = "a line long enough that its base64 is wrapped onto a second line by base64(1)\n";
    let encoded = "YSBsaW5lIGxvbmcgZW5vdWdoIHRoYXQgaXRzIGJhc2U2NCBpcyB3cmFwcGVkIG9udG8gYSBzZWNv\n\
                   bmQgbGluZSBieSBiYXNlNjQoMSkK\n";
    for wrapped in [encoded.to_string(), encoded.replace('\n', "\r\n")] {
        let body = json!({"repo": "r", "blob": wrapped}).to_string();
        let r = post(
            &d,
            "/hooks/any",
            &[("Content-Type", "application/json"), ("X-Event", "envs")],
            body.as_bytes(),
        );
        let (_, seen) = ran(&d, &r);
        let blob = seen["env"]["BLOB"].as_str().unwrap();
        assert_eq!(seen["files"][blob], text, "{wrapped:?}");
    }
    // Only line breaks: a space or a tab inside is not base64, as in Go.
    for spaced in ["aGVs bG8", "aGVs\tbG8"] {
        let body = json!({"repo": "r", "blob": spaced}).to_string();
        let r = post(
            &d,
            "/hooks/any",
            &[("Content-Type", "application/json"), ("X-Event", "envs")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 422, "{spaced:?}: {}", r.text);
    }

    // hook_env: false: none of the HOOK_* variables, as adnanh sets none.
    let r = post(
        &d,
        "/hooks/any",
        &[("Content-Type", "application/json"), ("X-Event", "bare")],
        br#"{"repo":"x"}"#,
    );
    let (_, seen) = ran(&d, &r);
    let names: Vec<&String> = seen["env"].as_object().unwrap().keys().collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("HOOK_")).collect::<Vec<_>>(),
        [&&"HOOK_repo".to_string()],
        "{names:?}"
    );
}

#[test]
fn params_from_the_request_quoted_keys_and_parse_json_are_the_same_in_a_dry_run() {
    let d = daemon();
    let body = json!({
        "head_commit.id": "c0ffee",
        "data": "{\"sha\": \"abc\"}",
        "broken": "{not json",
    })
    .to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Event", "request"),
        ("X-Meta", r#"{"build": 7}"#),
        ("x-lower-case", "v"),
        ("X-Api-Token", "t0ken"),
    ];
    let path = "/hooks/any?q=%7B%22n%22%3A2%7D&tags[]=a&secret=s";
    let dry = post(&d, &format!("{path}&dry_run=1"), &headers, body.as_bytes());
    assert_eq!(dry.status, 200, "{}", dry.text);
    let dry = dry.json();
    assert_eq!(dry["would_run"], 1, "{dry}");
    assert_eq!(
        dry["notes"],
        json!(["mapping `request`: parse_json: `payload.broken` is not valid JSON (key must be a string at line 1 column 2); it is left as it is"])
    );
    let r = post(&d, path, &headers, body.as_bytes());
    let (task, _) = ran(&d, &r);
    let params = &task["params"];
    // A dry run sees what a run sees (but its own connection and `dry_run=1`).
    let mut seen_dry = dry["params"]["request"].clone();
    seen_dry["peer"] = params["peer"].clone();
    seen_dry["all_query"].as_object_mut().unwrap().remove("dry_run");
    assert_eq!(params, &seen_dry);
    // Headers by name, in order.
    let names: Vec<&String> = params["all_headers"].as_object().unwrap().keys().collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    assert_eq!(params["method"], "POST");
    assert_eq!(params["path"], "/hooks/any");
    assert!(params["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{params}");
    assert_eq!(params["client"], "127.0.0.1");
    assert_eq!(params["raw"], body);
    assert_eq!(params["dotted"], "c0ffee");
    assert_eq!(params["sha"], "abc");
    assert_eq!(params["meta"], 7);
    assert_eq!(params["q"], 2);
    assert_eq!(params["tags"], "a");
    let all_headers = &params["all_headers"];
    assert_eq!(all_headers["X-Lower-Case"], "v", "canonical names: {all_headers}");
    assert_eq!(all_headers["X-Meta"], json!({"build": 7}), "parsed by parse_json");
    assert_eq!(all_headers["X-Api-Token"], "***", "credentials never shown");
    assert_eq!(params["all_query"]["secret"], "***");
    assert_eq!(params["all_query"]["q"], json!({"n": 2}));
    // The record keeps the note too.
    let record = d
        .get(&format!("/deliveries/{}", r.json()["delivery_id"].as_str().unwrap()))
        .json();
    assert_eq!(record["notes"], dry["notes"]);
}

#[test]
fn at_start_files_no_unfinished_task_needs_are_removed() {
    let mut d = daemon();
    let r = post(
        &d,
        "/hooks/any",
        &[("X-Event", "block"), ("Content-Type", "application/json")],
        b"{}",
    );
    let gate = Daemon::task_ids(&r)[0].clone();
    let body = multipart("zz", &[("upload", Some("a.txt"), None, b"after a crash")]);
    let r = post(
        &d,
        "/hooks/any",
        &[
            ("Content-Type", "multipart/form-data; boundary=zz"),
            ("X-Event", "upload"),
        ],
        &body,
    );
    let id = Daemon::task_ids(&r)[0].clone();
    let stray = d.path("data/uploads/an-old-delivery");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("0-x.bin"), "left behind").unwrap();
    d.kill9();
    d.restart();
    assert!(!stray.exists(), "a directory no unfinished task needs goes at start");
    // The queued task runs after the restart, with its file.
    let task = d.wait_task(&id);
    assert_eq!(task["status"], "succeeded", "{task}");
    let seen: Value = serde_json::from_str(task["stdout"].as_str().unwrap()).unwrap();
    let upload = task["params"]["upload"].as_str().unwrap();
    assert_eq!(seen["files"][upload], "after a crash");
    assert_eq!(d.wait_task(&gate)["status"], "interrupted");
    // Let the gate's orphaned handler go.
    std::fs::write(d.path("open"), "").unwrap();
}

#[test]
fn a_param_as_deep_as_an_xml_body_can_make_stays_an_object_in_the_api_across_a_restart() {
    let mut d = daemon();
    // 127 elements, the innermost with an attribute: a 128-level value, one
    // past serde_json's own limit, which the XML parser makes.
    let depth = 127;
    let mut xml = String::new();
    for _ in 0..depth - 1 {
        xml.push_str("<e>");
    }
    xml.push_str(r#"<e at="1">deep</e>"#);
    for _ in 0..depth - 1 {
        xml.push_str("</e>");
    }
    let r = post(
        &d,
        "/hooks/any",
        &[("X-Event", "whole"), ("Content-Type", "application/xml")],
        xml.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let (task, _) = ran(&d, &r);
    let id = task["id"].as_str().unwrap().to_string();
    let listed = d.get("/deliveries?limit=1").json();
    let delivery = listed["deliveries"][0]["id"].as_str().unwrap().to_string();
    let check = |d: &Daemon| {
        let task = d.get(&format!("/tasks/{id}")).json();
        let mut v = &task["params"]["a"];
        for level in 0..depth - 1 {
            assert!(v.is_object(), "level {level} of the task's param: {v}");
            v = &v["e"];
        }
        assert_eq!(v["e"]["-at"], "1", "{v}");
        let record = d.get(&format!("/deliveries/{delivery}")).json();
        assert!(record.to_string().contains(r#""-at":"1""#), "{record}");
    };
    check(&d);
    d.restart();
    check(&d);
}
