//! adnanh/webhook's own end-to-end table, through `hookrunner import`.
//!
//! For every case of `tests/fixtures/adnanh/cases.json` (adnanh's
//! `hookHandlerTests`, its Unix-socket rerun and `TestStaticParams`), and for
//! both of adnanh's hooks templates (JSON and YAML): the template is rendered
//! as adnanh's test renders it (with a recording wrapper around
//! `hookecho.py` as `{{ .Hookecho }}`), `hookrunner import adnanh` turns it
//! into a config, the real daemon starts on it, the case's request is sent
//! byte for byte (methods such as `Get` and repeated headers included), and
//! the answer's status and body, and the command's arguments, `HOOK_*`
//! environment and working directory, are compared with what Debian's
//! `webhook` 2.8.0 did (`peer_*` and `command` in cases.json).
//!
//! Where hookrunner answers otherwise on purpose, the difference is listed
//! in [`EXPECTED`] with its reason (and in docs/MIGRATING.md); a listed
//! difference that does not happen fails the test too, so the list stays true.
//!
//! Run one case: `IMPORT_CASES=0,14 cargo test --test import`; one template:
//! `IMPORT_TEMPLATES=json`. Needs the body, param, answer and signature
//! features of issue 15 (bodies, param_env, response, methods, ...): on a
//! daemon without them the import's config is refused, and each case says so.

mod common;

use common::{Daemon, BIN, ROOT};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A difference from the peer that is intended, for one case.
struct Expected {
    case: usize,
    /// What differs: `status`, `body`.
    field: &'static str,
    /// What hookrunner gives instead (`None`: anything but the peer's).
    ours: Option<&'static str>,
    why: &'static str,
}

/// Every intended difference, with its reason. docs/MIGRATING.md lists them for users.
const EXPECTED: &[Expected] = &[
    Expected {
        case: 2,
        field: "status",
        ours: Some("401"),
        why: "a signature is checked by the source's `auth`: a wrong one is 401 (adnanh: 500, its `or` aborting on the first secret's mismatch); the command does not run in either",
    },
    Expected {
        case: 2,
        field: "body",
        ours: None,
        why: "hookrunner's refusals carry a JSON `error` sentence",
    },
    Expected {
        case: 18,
        field: "status",
        ours: Some("401"),
        why: "a missing signature header is 401 from `auth` (adnanh: a rule mismatch, the hook's 400); the command does not run in either",
    },
    Expected {
        case: 18,
        field: "body",
        ours: None,
        why: "hookrunner's refusals carry a JSON `error` sentence",
    },
    Expected {
        case: 27,
        field: "status",
        ours: Some("401"),
        why: "as case 18: the signature header is missing",
    },
    Expected {
        case: 27,
        field: "body",
        ours: None,
        why: "hookrunner's refusals carry a JSON `error` sentence",
    },
    Expected {
        case: 16,
        field: "body",
        ours: None,
        why: "a 405 carries a JSON `error` sentence (adnanh: empty)",
    },
    Expected {
        case: 17,
        field: "body",
        ours: None,
        why: "a 405 carries a JSON `error` sentence (adnanh: empty)",
    },
];

fn wanted(var: &str) -> Option<Vec<String>> {
    std::env::var(var).ok().map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("tests/fixtures/adnanh/cases.json")).unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(all.len(), 30);
    match wanted("IMPORT_CASES") {
        Some(list) => all
            .into_iter()
            .filter(|c| list.contains(&c["index"].to_string()))
            .collect(),
        None => all,
    }
}

/// The wrapper adnanh's observations were made with: records argv, the
/// `HOOK_*` environment and the working directory, then runs hookecho.py.
fn wrapper(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join("hookecho");
    let record = dir.join("calls.jsonl");
    let hookecho = Path::new(ROOT).join("tests/fixtures/adnanh/hookecho.py");
    let script = format!(
        "#!/usr/bin/env python3\nimport json, os, sys\nenv = [k + '=' + v for k, v in os.environ.items() if (k + '=' + v).startswith('HOOK_')]\nwith open({record:?}, 'a') as f:\n    f.write(json.dumps({{'args': sys.argv[1:], 'hook_env': env, 'cwd': os.getcwd()}}) + '\\n')\nos.execv({hookecho:?}, [{hookecho:?}] + sys.argv[1:])\n",
        record = record.display().to_string(),
        hookecho = hookecho.display().to_string(),
    );
    std::fs::write(&path, script).unwrap();
    make_executable(&path);
    path
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn calls(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One HTTP/1.1 exchange, written by hand so the method and every header
/// go out exactly as the case has them (as Go's client sends them). A
/// server that answers before reading the whole body and closes may reset
/// the connection before the answer is read (more often on a loaded
/// machine): such an exchange is tried again, up to three times.
fn exchange(addr: &str, method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Vec<u8>, u16) {
    let mut tries = 0;
    loop {
        tries += 1;
        match try_exchange(addr, method, path, headers, body) {
            Ok(answer) => return answer,
            Err(e) if tries < 3 => eprintln!("{method} {path} on {addr}: {e}; trying again"),
            Err(e) => panic!("{method} {path} on {addr}: {e}"),
        }
    }
}

fn try_exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>, u16)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let port = s.local_addr()?.port();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Accept-Encoding: gzip\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    // A server may answer (and close) before it reads the body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err(e);
        }
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(std::io::Error::other("the connection closed without an HTTP answer"));
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut rest = raw[split + 4..].to_vec();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = rest[nl + 2 + size + 2..].to_vec();
        }
        rest = out;
    }
    Ok((status, rest, port))
}

/// A case made ready to send: its hooks file (rendered as adnanh's test
/// renders it, with the recording wrapper), its method and path.
struct Prepared {
    hooks: PathBuf,
    method: String,
    path: String,
}

fn prepare(case: &Value, template: &str, dir: &Path) -> Prepared {
    let hookecho = wrapper(dir);
    let hooks = dir.join(format!("hooks.{template}"));
    let mut path = case["path"].as_str().unwrap_or("").to_string();
    let mut method = case["method"].as_str().unwrap_or("POST").to_string();
    if case["transport"] == "direct-call" {
        // TestStaticParams, over HTTP: its hook, its script (in the temp dir, not /tmp).
        let mut hook = case["hook"].clone();
        let script = dir.join("with space");
        std::fs::write(&script, case["script_files"]["/tmp/with space"].as_str().unwrap()).unwrap();
        make_executable(&script);
        hook["execute-command"] = Value::from(script.display().to_string());
        hook["command-working-directory"] = Value::from(dir.display().to_string());
        std::fs::write(&hooks, serde_json::to_string(&vec![hook]).unwrap()).unwrap();
        path = "/hooks/static-params-name-space".into();
        method = "POST".into();
    } else {
        let text =
            std::fs::read_to_string(Path::new(ROOT).join(format!("tests/fixtures/adnanh/hooks.{template}.tmpl")))
                .unwrap();
        std::fs::write(&hooks, text.replace("{{ .Hookecho }}", &hookecho.display().to_string())).unwrap();
    }
    Prepared { hooks, method, path }
}

/// The case's request, sent to `addr`: (status, body, client port).
fn send(addr: &str, case: &Value, prepared: &Prepared) -> (u16, String, u16) {
    let mut headers = Vec::new();
    for (k, values) in case["headers"].as_object().unwrap() {
        for v in values.as_array().unwrap() {
            headers.push((k.clone(), v.as_str().unwrap().to_string()));
        }
    }
    let body = case["body"].as_str().unwrap_or("").as_bytes().to_vec();
    let (status, got, port) = exchange(addr, &prepared.method, &prepared.path, &headers, &body);
    (status, String::from_utf8_lossy(&got).to_string(), port)
}

/// What one case gave, field by field, where it differs from the peer.
fn run_case(case: &Value, template: &str) -> Result<Vec<(String, String, String)>, String> {
    let index = case["index"].as_u64().unwrap() as usize;
    let dir = tempfile::tempdir().unwrap();
    let prepared = prepare(case, template, dir.path());
    let hooks = prepared.hooks.clone();
    let config = dir.path().join("webhook.yaml");
    let mut import = Command::new(BIN);
    import.args(["import", "adnanh"]).arg(&hooks).arg("-o").arg(&config);
    if let Some(m) = case["cli_http_methods"].as_array() {
        let list: Vec<&str> = m.iter().filter_map(Value::as_str).collect();
        import.arg("--http-methods").arg(list.join(","));
    }
    let out = import.output().unwrap();
    if !out.status.success() {
        return Err(format!("import failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    if !check.status.success() {
        return Err(format!(
            "the daemon refuses the imported config (are the issue-15 features merged?): {}",
            String::from_utf8_lossy(&check.stdout).trim().to_string() + &String::from_utf8_lossy(&check.stderr)
        ));
    }
    let text = std::fs::read_to_string(&config).unwrap();
    let daemon = Daemon::with(&text).without_handlers().start();
    let (status, got_body, port) = send(&daemon.addr, case, &prepared);

    let mut diffs = Vec::new();
    let peer_status = case["peer_status"]
        .as_u64()
        .or(case["expected_status"].as_u64())
        .unwrap_or(if index == 29 { 200 } else { 0 });
    if u64::from(status) != peer_status {
        diffs.push(("status".into(), peer_status.to_string(), status.to_string()));
    }
    let peer_body = match (index, case["peer_body"].as_str()) {
        (29, _) => Some("\n".to_string()),
        (28, _) => None,
        (_, Some(b)) => Some(b.replace("<PORT>", &port.to_string())),
        _ => None,
    };
    let peer_body = peer_body.or_else(|| {
        // Case 28 (the Unix-socket rerun of case 0): the peer's case 0.
        (index == 28).then(|| case["expected_body"].as_str().unwrap_or("").to_string())
    });
    if let Some(pb) = peer_body {
        if pb != got_body {
            diffs.push(("body".into(), pb, got_body.clone()));
        }
    }
    // The command: whether it ran, with what.
    if index != 29 {
        let runs = case["command_runs"].as_bool().unwrap_or(false);
        if runs {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while calls(dir.path()).is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let seen = calls(dir.path());
        let tasks = daemon.get("/tasks").json();
        let started = tasks["tasks"].as_array().map_or(0, Vec::len);
        match (runs, seen.first()) {
            (true, Some(call)) => {
                let want = &case["command"];
                let args: Vec<String> = want["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().replace("<PORT>", &port.to_string()))
                    .collect();
                let got_args: Vec<String> = call["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
                if args != got_args {
                    diffs.push(("args".into(), format!("{args:?}"), format!("{got_args:?}")));
                }
                let mut env: Vec<String> = want["hook_env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
                let mut got_env: Vec<String> = call["hook_env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
                env.sort();
                got_env.sort();
                if env != got_env {
                    diffs.push(("env".into(), format!("{env:?}"), format!("{got_env:?}")));
                }
                if want["cwd"] == "/" && call["cwd"] != "/" {
                    diffs.push(("cwd".into(), "/".into(), call["cwd"].to_string()));
                }
            }
            (true, None) => diffs.push(("command".into(), "ran".into(), "did not run".into())),
            (false, Some(_)) => diffs.push(("command".into(), "did not run".into(), "ran".into())),
            (false, None) => {
                // The peer tried to run it (case 26: not found) or did not get that far.
                let tried = case["command_waited_for"] == Value::Bool(true);
                if !tried && started != 0 {
                    diffs.push(("command".into(), "no task".into(), format!("{started} task(s)")));
                }
            }
        }
    }
    if std::env::var("IMPORT_VERBOSE").is_ok() {
        eprintln!("case {index} ({template}): {status} {got_body:?}\n{}", daemon.logs());
    }
    Ok(diffs)
}

fn run_template(template: &str) {
    if wanted("IMPORT_TEMPLATES").is_some_and(|t| !t.iter().any(|x| x == template)) {
        return;
    }
    let mut failures = Vec::new();
    for case in cases() {
        let index = case["index"].as_u64().unwrap() as usize;
        let desc = case["desc"].as_str().unwrap_or("");
        match run_case(&case, template) {
            Err(e) => failures.push(format!("case {index} `{desc}`: {e}")),
            Ok(diffs) => {
                for (field, peer, ours) in &diffs {
                    match EXPECTED.iter().find(|e| e.case == index && e.field == field) {
                        Some(e) if e.ours.is_none_or(|o| o == ours) => {}
                        Some(e) => failures.push(format!(
                            "case {index} `{desc}`: {field}: expected hookrunner's {:?} ({}), got {ours:?}",
                            e.ours, e.why
                        )),
                        None => failures.push(format!(
                            "case {index} `{desc}`: {field}: the peer gave {peer:?}, hookrunner {ours:?}"
                        )),
                    }
                }
                for e in EXPECTED.iter().filter(|e| e.case == index) {
                    if !diffs.iter().any(|(f, _, _)| f == e.field) {
                        failures.push(format!(
                            "case {index} `{desc}`: the listed difference in {} did not happen ({}); update EXPECTED and docs/MIGRATING.md",
                            e.field, e.why
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s) ({template} template):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn adnanhs_cases_through_the_json_template() {
    run_template("json");
}

#[test]
fn adnanhs_cases_through_the_yaml_template() {
    run_template("yaml");
}

/// Side by side with the peer itself: Debian's `webhook` (`apt-get install
/// webhook`) and hookrunner on the same rendered hooks file and the same
/// requests. Checks that the live peer still gives what cases.json recorded
/// (status, body, arguments, `HOOK_*` environment), and prints hookrunner's
/// answer beside it. Without the package it says SKIPPED loudly; with
/// `CI=true` (as `.ci/run` sets) a missing package is a failure.
#[test]
fn side_by_side_with_debians_webhook() {
    let Some(peer) = ["/usr/bin/webhook", "webhook"]
        .into_iter()
        .find(|p| Command::new(p).arg("-version").output().is_ok())
    else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true, but Debian's webhook is not installed (apt-get install webhook)"
        );
        eprintln!(
            "\n*** SKIPPED: Debian's webhook is not installed (apt-get install webhook) to run adnanh's cases side by side; with CI=true this is a failure. ***\n"
        );
        return;
    };
    let mut problems = Vec::new();
    for template in ["json", "yaml"] {
        if wanted("IMPORT_TEMPLATES").is_some_and(|t| !t.iter().any(|x| x == template)) {
            continue;
        }
        for case in cases() {
            let index = case["index"].as_u64().unwrap();
            if case["transport"] != "tcp" {
                continue; // 2.8.0 has no -socket; TestStaticParams calls Go directly.
            }
            let dir = tempfile::tempdir().unwrap();
            let prepared = prepare(&case, template, dir.path());
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let mut cmd = Command::new(peer);
            cmd.arg(format!("-hooks={}", prepared.hooks.display()))
                .args(["-ip=127.0.0.1", &format!("-port={port}")])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            if let Some(m) = case["cli_http_methods"].as_array() {
                let list: Vec<&str> = m.iter().filter_map(Value::as_str).collect();
                cmd.arg(format!("-http-methods={}", list.join(",")));
            }
            let mut child = cmd.spawn().unwrap();
            let addr = format!("127.0.0.1:{port}");
            common::eventually("webhook to answer GET /", Duration::from_secs(10), || {
                try_exchange(&addr, "GET", "/", &[], b"").is_ok_and(|(status, ..)| status == 200)
            });
            let (status, body, client_port) = send(&addr, &case, &prepared);
            if case["command_runs"] == Value::Bool(true) {
                common::eventually("the peer's command", Duration::from_secs(10), || {
                    !calls(dir.path()).is_empty()
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            let recorded_body = case["peer_body"]
                .as_str()
                .map(|b| b.replace("<PORT>", &client_port.to_string()));
            if Some(u64::from(status)) != case["peer_status"].as_u64()
                || recorded_body.as_deref() != Some(body.as_str())
            {
                problems.push(format!(
                    "case {index} ({template}): the live peer gave {status} {body:?}, cases.json says {} {:?}",
                    case["peer_status"], recorded_body
                ));
            }
            if let Some(call) = calls(dir.path()).first() {
                let want: Vec<String> = case["command"]["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| v.as_str().unwrap().replace("<PORT>", &client_port.to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let got: Vec<String> = call["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                if want != got {
                    problems.push(format!(
                        "case {index} ({template}): the peer's command got {got:?}, cases.json says {want:?}"
                    ));
                }
            }
            let ours = run_case(&case, template);
            eprintln!("case {index:>2} {template}: webhook {status} {body:?} | hookrunner differences: {ours:?}");
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The command itself: a hook that cannot be translated is listed on stderr
/// with its id and reason, exit status 1, nothing written; `--allow-partial`
/// writes the rest (exit 0). No daemon needed.
#[test]
fn the_command_lists_gaps_and_writes_nothing_without_allow_partial() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks.json");
    std::fs::write(
        &hooks,
        r#"[{"id": "scalr", "execute-command": "/bin/true", "trigger-rule": {"match": {"type": "scalr-signature", "secret": "s"}}},
            {"id": "ok", "execute-command": "/bin/true",}]"#,
    )
    .unwrap();
    let out = dir.path().join("webhook.yaml");
    let run = |partial: bool| {
        let mut c = Command::new(BIN);
        c.args(["import", "adnanh"]).arg(&hooks).arg("-o").arg(&out);
        if partial {
            c.arg("--allow-partial");
        }
        c.output().unwrap()
    };
    let r = run(false);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:1: hook `scalr`: cannot translate: `scalr-signature`",
            hooks.display()
        )),
        "{stderr}"
    );
    assert!(!out.exists());
    let r = run(true);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("# adnanh hook `ok`"));
    assert!(text.contains("NOT TRANSLATED"));
    // A file adnanh would refuse: exit 2 with the place.
    std::fs::write(&hooks, "- id: a\n  success-http-response-code: \"201\"\n").unwrap();
    let r = run(false);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains(":2:31:"));
}

/// `hookrunner import adnanh` on `text`, written to `dir/name`; to `out`
/// if given, else to stdout.
fn import_text(dir: &Path, name: &str, text: &str, out: Option<&Path>) -> std::process::Output {
    let hooks = dir.join(name);
    std::fs::write(&hooks, text).unwrap();
    let mut import = Command::new(BIN);
    import.args(["import", "adnanh"]).arg(&hooks);
    if let Some(out) = out {
        import.arg("-o").arg(out);
    }
    import.output().unwrap()
}

/// What `hookrunner import adnanh` made of a JSON hooks file.
struct Imported {
    code: Option<i32>,
    config: String,
    stderr: String,
}

fn import_hooks(dir: &Path, hooks: &Value) -> Imported {
    let out = import_text(dir, "hooks.json", &hooks.to_string(), None);
    Imported {
        code: out.status.code(),
        config: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_hostile_hooks_file_is_refused_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, text: &str| {
        let out = import_text(dir.path(), name, text, Some(&dir.path().join("webhook.yaml")));
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Ten aliases of ten aliases, nine times: 10^9 nodes from 700 bytes.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (prev, next) in "abcdefghi".chars().zip("bcdefghij".chars()) {
        bomb.push_str(&format!("{next}: &{next} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    let (code, err) = run("bomb.yaml", &bomb);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("its aliases expand to more than 1000000 nodes, more than any hooks file holds (a limit of `hookrunner import`)"), "{err}");
    // Nesting far deeper than any hooks file, in a place nothing reads.
    let deep = format!(
        "[{{\"id\": \"x\", \"execute-command\": \"/bin/true\", \"junk\": {}{}}}]",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (code, err) = run("deep.json", &deep);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("it nests deeper than 512 levels, more than any hooks file does (a limit of `hookrunner import`)"),
        "{err}"
    );
}

#[test]
fn an_output_that_is_not_a_file_is_written_to_not_replaced() {
    // `-o /dev/null` (here a named pipe, to leave the real one alone) must
    // stay what it is: a rename over it would put a file in its place.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let hooks = r#"[{"id": "ok", "execute-command": "/bin/true"}]"#;
    let out = import_text(dir.path(), "hooks.json", hooks, Some(&fifo));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = reader.join().unwrap();
    assert!(text.contains("sources:") && text.contains("ok"), "{text}");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn a_dotted_name_under_a_header_parsed_as_json_reads_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = r#"[{"id": "meta", "execute-command": "/bin/true",
             "parse-parameters-as-json": [{"source": "header", "name": "X-Meta"}, {"source": "url", "name": "q"}],
             "pass-arguments-to-command": [{"source": "header", "name": "x-meta.b"}, {"source": "url", "name": "q.c.0"}]}]"#;
    let out = import_text(dir.path(), "hooks.json", hooks, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = String::from_utf8(out.stdout).unwrap();
    let d = Daemon::start(&config);
    let r = d.post(
        "/hooks/meta?q=%7B%22c%22%3A%5B%22qc%22%5D%7D",
        &[("Content-Type", "application/json"), ("X-Meta", r#"{"b": "hb"}"#)],
        b"{}",
    );
    // Answered as adnanh answers (200, its response-message); the task is on record.
    assert_eq!(r.status, 200, "{}", r.text);
    let id = d.get("/tasks").json()["tasks"][0]["id"].as_str().unwrap().to_string();
    let task = d.wait_task(&id);
    assert_eq!(task["argv"], serde_json::json!(["/bin/true", "hb", "qc"]), "{config}");
}

/// adnanh's Bitbucket example (its docs/Hook-Examples.md): an `or` of 14
/// `ip-whitelist` matches. An `or` made only of them (nested too) is the
/// source's `allow_ips` with every range; beside other rules in an `and` the
/// rest is the condition. Where an `ip-whitelist` cannot be translated
/// exactly (inside `not`, in an `or` with other matches) it is refused, once.
#[test]
fn an_or_of_ip_whitelists_becomes_allow_ips() {
    let dir = tempfile::tempdir().unwrap();
    let bitbucket = [
        "13.52.5.96/28",
        "13.236.8.224/28",
        "18.136.214.96/28",
        "18.184.99.224/28",
        "18.234.32.224/28",
        "18.246.31.224/28",
        "52.215.192.224/28",
        "104.192.137.240/28",
        "104.192.138.240/28",
        "104.192.140.240/28",
        "104.192.142.240/28",
        "104.192.143.240/28",
        "185.166.143.240/28",
        "185.166.142.240/28",
    ];
    let ip = |range: &str| serde_json::json!({"match": {"type": "ip-whitelist", "ip-range": range}});
    let ref_is_main = serde_json::json!({"match": {"type": "value", "value": "main", "parameter": {"source": "payload", "name": "ref"}}});
    let hooks = serde_json::json!([
        {"id": "webhook", "execute-command": "/bin/true",
         "trigger-rule": {"or": bitbucket.iter().map(|r| ip(r)).collect::<Vec<_>>()}},
        {"id": "local", "execute-command": "/bin/true",
         "trigger-rule": {"or": [ip("10.0.0.0/8"), {"or": [ip("192.168.0.0/16"), ip("127.0.0.1")]}]}},
        {"id": "local-main", "execute-command": "/bin/true",
         "trigger-rule": {"and": [{"or": [ip("10.0.0.0/8"), ip("127.0.0.0/8")]}, ref_is_main]}},
    ]);
    let out = import_hooks(dir.path(), &hooks);
    let stderr = &out.stderr;
    assert!(out.code == Some(0), "{stderr}");
    let config = out.config;
    for range in bitbucket {
        assert!(config.contains(range), "{range} is missing: {config}");
    }
    let d = Daemon::start(&config);
    // 127.0.0.1 is none of Bitbucket's addresses.
    assert_eq!(d.post("/hooks/webhook", &[], b"").status, 403);
    let r = d.post("/hooks/local", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text);
    let json = [("Content-Type", "application/json")];
    let r = d.post("/hooks/local-main", &json, br#"{"ref": "main"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = d.post("/hooks/local-main", &json, br#"{"ref": "dev"}"#);
    assert_eq!((r.status, r.text.as_str()), (200, "Hook rules were not satisfied."));
    assert_eq!(d.get("/tasks").json()["tasks"].as_array().unwrap().len(), 2);

    // Not exactly translatable: refused, each reason said once.
    for rule in [
        serde_json::json!({"not": {"or": [ip("10.0.0.0/8"), ip("192.168.0.0/16")]}}),
        serde_json::json!({"or": [ip("10.0.0.0/8"), ip("192.168.0.0/16"), ref_is_main]}),
    ] {
        let hooks = serde_json::json!([{"id": "x", "execute-command": "/bin/true", "trigger-rule": rule}]);
        let out = import_hooks(dir.path(), &hooks);
        let stderr = &out.stderr;
        assert_eq!(out.code, Some(1), "{rule}: {stderr}");
        let refusals: Vec<&str> = stderr.lines().filter(|l| l.contains("cannot translate")).collect();
        assert_eq!(refusals.len(), 1, "{rule}: {stderr}");
        assert!(
            refusals[0].contains("an `ip-whitelist` inside `not`, or in an `or` with other matches"),
            "{stderr}"
        );
    }
}

/// With an empty `--urlprefix` a hook named like one of the daemon's routes
/// cannot be served: it is listed as not translated, and with
/// `--allow-partial` left out so that the rest is written and loads.
#[test]
fn with_an_empty_prefix_hooks_named_like_api_routes_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let routes = [
        "tasks",
        "ui",
        "-",
        "healthz",
        "metrics",
        "nodes",
        "events",
        "deliveries",
        "readyz",
        "openapi.json",
        "-/reload",
    ];
    let mut hooks: Vec<Value> = routes
        .iter()
        .map(|id| serde_json::json!({"id": id, "execute-command": "/bin/true"}))
        .collect();
    hooks.push(serde_json::json!({"id": "deploy", "execute-command": "/bin/true"}));
    let path = dir.path().join("hooks.json");
    std::fs::write(&path, Value::Array(hooks).to_string()).unwrap();
    let out = dir.path().join("webhook.yaml");
    let run = |partial: bool| {
        let mut c = Command::new(BIN);
        c.args(["import", "adnanh", "--urlprefix", ""])
            .arg(&path)
            .arg("-o")
            .arg(&out);
        if partial {
            c.arg("--allow-partial");
        }
        c.output().unwrap()
    };
    let r = run(false);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    for id in routes {
        assert!(
            stderr.contains(&format!("hook `{id}`: cannot translate: with an empty -urlprefix")),
            "{id}: {stderr}"
        );
    }
    assert!(!out.exists());
    let r = run(true);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("would not load"), "{stderr}");
    assert!(stderr.contains("1 of 12 hook(s)"), "{stderr}");
    let config = std::fs::read_to_string(&out).unwrap();
    assert!(
        config.contains("# NOT TRANSLATED, left out: hook `-/reload`"),
        "{config}"
    );
    let d = Daemon::start(&config);
    let r = d.post("/deploy", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(d.get("/healthz").status, 200);
}

/// Go's octal escapes (`\123`, up to `\777`) are translated as other escapes
/// are; an escape Go does not know (`\u0042`, which Rust reads as `B`) is
/// refused, as adnanh answers 500 to every request that evaluates it.
#[test]
fn go_octal_escapes_are_translated_and_escapes_go_refuses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hook = |id: &str, regex: &str| {
        serde_json::json!({"id": id, "execute-command": "/bin/true",
            "trigger-rule": {"match": {"type": "regex", "regex": regex, "parameter": {"source": "url", "name": "v"}}}})
    };
    let hooks = serde_json::json!([hook("octal", r"^\123[\141-\143]\0$"), hook("angle", r"^\<\>$")]);
    let out = import_hooks(dir.path(), &hooks);
    assert!(out.code == Some(0), "{}", out.stderr);
    let d = Daemon::start(&out.config);
    for (path, runs) in [
        ("/hooks/octal?v=Sb%00", true),
        ("/hooks/octal?v=Sd%00", false),
        ("/hooks/octal?v=123b0", false),
        ("/hooks/angle?v=%3C%3E", true),
        ("/hooks/angle?v=", false),
    ] {
        let r = d.post(path, &[], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.text != "Hook rules were not satisfied.", runs, "{path}: {}", r.text);
    }

    for (regex, why) in [
        (r"^\u0042$", "has `\\u`, an escape Go's regexp does not know"),
        (r"^(a)\1$", "has `\\1`, a back-reference, which Go's regexp refuses"),
    ] {
        let hooks = serde_json::json!([hook("x", regex)]);
        let out = import_hooks(dir.path(), &hooks);
        let stderr = &out.stderr;
        assert_eq!(out.code, Some(1), "{regex}: {stderr}");
        assert!(stderr.contains(why), "{regex}: {stderr}");
    }
}

/// A match of a type adnanh does not know (a typo) still reads its
/// parameter there: false when it is there, a not-found error when it is
/// not, which `not` keeps, so `and: [not: typo]` runs only with the header.
/// Without a parameter adnanh answers 500 to every request: refused. A
/// `not` over a payload value inside an `and` gets a note: adnanh counts a
/// `null` or `""` value as there, the translation as missing.
#[test]
fn a_not_keeps_adnanhs_not_found_error_of_an_unknown_match_type() {
    let dir = tempfile::tempdir().unwrap();
    let typo = serde_json::json!({"not": {"match": {"type": "Value", "value": "x", "parameter": {"source": "header", "name": "X-Skip"}}}});
    let hooks = serde_json::json!([
        {"id": "bg", "execute-command": "/bin/true", "trigger-rule": {"and": [typo]}},
        {"id": "top", "execute-command": "/bin/true", "trigger-rule": typo},
        {"id": "nn", "execute-command": "/bin/true", "trigger-rule": {"and": [
            {"match": {"type": "value", "value": "main", "parameter": {"source": "payload", "name": "ref"}}},
            {"not": {"match": {"type": "value", "value": "dependabot[bot]", "parameter": {"source": "payload", "name": "pusher.name"}}}}]}},
    ]);
    let out = import_hooks(dir.path(), &hooks);
    let stderr = &out.stderr;
    assert!(out.code == Some(0), "{stderr}");
    assert!(
        stderr.contains("hook `nn`: note: a `not` inside an `and` over a match on `payload` `pusher.name`: adnanh counts a value that is there but empty (`\"\"`) or JSON `null`"),
        "{stderr}"
    );
    let d = Daemon::start(&out.config);
    let ran = |r: common::Resp| {
        assert_eq!(r.status, 200, "{}", r.text);
        r.text != "Hook rules were not satisfied."
    };
    assert!(
        !ran(d.post("/hooks/bg", &[], b"")),
        "no header: adnanh's not-found error"
    );
    assert!(ran(d.post("/hooks/bg", &[("X-Skip", "x")], b"")));
    assert!(ran(d.post("/hooks/bg", &[("X-Skip", "y")], b"")));
    assert!(ran(d.post("/hooks/top", &[], b"")), "at the top the error is ignored");
    let json = [("Content-Type", "application/json")];
    assert!(ran(d.post(
        "/hooks/nn",
        &json,
        br#"{"ref": "main", "pusher": {"name": "me"}}"#
    )));
    assert!(!ran(d.post(
        "/hooks/nn",
        &json,
        br#"{"ref": "main", "pusher": {"name": "dependabot[bot]"}}"#
    )));
    // The difference the note names (adnanh runs these).
    assert!(!ran(d.post(
        "/hooks/nn",
        &json,
        br#"{"ref": "main", "pusher": {"name": null}}"#
    )));

    let hooks = serde_json::json!([{"id": "x", "execute-command": "/bin/true",
        "trigger-rule": {"not": {"match": {"type": "ip-whitlist", "ip-range": "1.2.3.4"}}}}]);
    let out = import_hooks(dir.path(), &hooks);
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot translate: match type `ip-whitlist` is not one adnanh knows, and its parameter cannot be read (no `source` is given): adnanh answers 500 to every request that evaluates it, under `not` too"),
        "{stderr}"
    );
}

/// An IPv4-mapped IPv6 range (`::ffff:127.0.0.1/128`) is the IPv4 range it
/// maps, as Go reads it: adnanh lets 127.0.0.1 in, and so does the daemon.
#[test]
fn an_ipv4_mapped_range_is_its_ipv4_range() {
    let dir = tempfile::tempdir().unwrap();
    let hook = |id: &str, range: &str| {
        serde_json::json!({"id": id, "execute-command": "/bin/true",
            "trigger-rule": {"match": {"type": "ip-whitelist", "ip-range": range}}})
    };
    let hooks = serde_json::json!([
        hook("mapped", "::ffff:127.0.0.1/128"),
        hook("mapped-net", "::ffff:127.0.0.0/104"),
        hook("other", "::ffff:127.0.0.2/128"),
    ]);
    let out = import_hooks(dir.path(), &hooks);
    assert!(out.code == Some(0), "{}", out.stderr);
    let d = Daemon::start(&out.config);
    assert_eq!(d.post("/hooks/mapped", &[], b"").status, 200);
    assert_eq!(d.post("/hooks/mapped-net", &[], b"").status, 200);
    assert_eq!(d.post("/hooks/other", &[], b"").status, 403);
}

#[test]
fn the_imports_diagnostics_show_control_characters_of_the_hooks_file_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let out = import_text(
        dir.path(),
        "hooks.json",
        r#"[{"id": "esc\u001b[31mred\u0007", "execute-command": "/bin/true"}]"#,
        Some(&dir.path().join("webhook.yaml")),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r"hook `esc\u{1b}[31mred\u{7}`"), "{stderr}");
    assert!(!stderr.contains('\u{1b}') && !stderr.contains('\u{7}'), "{stderr}");
}

/// A rule that checks both an API key (a `value` match on a credential
/// header) and a signature keeps both checks, whichever comes first in the
/// file: the signature becomes the source's `auth` and the key stays a
/// condition. A correct signature without the key must not run the command.
#[test]
fn an_api_key_beside_a_signature_is_still_checked_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let key = serde_json::json!({"match": {"type": "value", "value": "k-123", "parameter": {"source": "header", "name": "X-Api-Key"}}});
    let sig = serde_json::json!({"match": {"type": "payload-hmac-sha256", "secret": "s3cret", "parameter": {"source": "header", "name": "X-Signature"}}});
    let hooks = serde_json::json!([
        {"id": "key-first", "execute-command": "/bin/true", "trigger-rule": {"and": [key, sig]}},
        {"id": "sig-first", "execute-command": "/bin/true", "trigger-rule": {"and": [sig, key]}},
    ]);
    let out = import_hooks(dir.path(), &hooks);
    let stderr = &out.stderr;
    assert!(out.code == Some(0), "{stderr}");
    let d = Daemon::start(&out.config);
    let body = br#"{"a": 1}"#;
    let good = format!("sha256={}", common::hmac_sha256_hex("s3cret", body));
    for hook in ["key-first", "sig-first"] {
        let path = format!("/hooks/{hook}");
        let json = ("Content-Type", "application/json");
        let r = d.post(&path, &[json, ("X-Signature", &good)], body);
        assert_eq!(
            (r.status, r.text.as_str()),
            (200, "Hook rules were not satisfied."),
            "{hook}: a good signature without the key"
        );
        let r = d.post(&path, &[json, ("X-Signature", &good), ("X-Api-Key", "wrong")], body);
        assert_eq!(
            (r.status, r.text.as_str()),
            (200, "Hook rules were not satisfied."),
            "{hook}"
        );
        let r = d.post(
            &path,
            &[json, ("X-Signature", "sha256=00"), ("X-Api-Key", "k-123")],
            body,
        );
        assert_eq!(r.status, 401, "{hook}: a bad signature with the key: {}", r.text);
        let r = d.post(&path, &[json, ("X-Signature", &good), ("X-Api-Key", "k-123")], body);
        assert_eq!(r.status, 200, "{hook}: {}", r.text);
        assert_ne!(r.text, "Hook rules were not satisfied.", "{hook}: both checks hold");
    }
    assert_eq!(d.get("/tasks").json()["tasks"].as_array().unwrap().len(), 2);
}

/// A `value: ""` match on a credential header is not a token (an empty
/// token cannot be one): it stays a condition, and the import loads.
#[test]
fn an_empty_value_on_a_credential_header_is_a_condition_not_an_empty_token() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = serde_json::json!([{"id": "no-token", "execute-command": "/bin/true",
        "trigger-rule": {"match": {"type": "value", "value": "", "parameter": {"source": "header", "name": "X-Api-Token"}}}}]);
    let out = import_hooks(dir.path(), &hooks);
    let stderr = &out.stderr;
    assert!(out.code == Some(0), "{stderr}");
    let config = out.config;
    assert!(config.contains("auth: none"), "{config}");
    let d = Daemon::start(&config);
    let r = d.post("/hooks/no-token", &[("X-Api-Token", "")], b"");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.text, "Hook rules were not satisfied.");
    let r = d.post("/hooks/no-token", &[("X-Api-Token", "something")], b"");
    assert_eq!((r.status, r.text.as_str()), (200, "Hook rules were not satisfied."));
}

/// A header whose name cannot be a header name (a space, a brace, a
/// non-ASCII letter) never arrives, so adnanh reads it as not found: an
/// argument is empty, a variable unset, a match false (and its `not`
/// true), a signature read from it a hook that never runs. The rest of the
/// file still imports.
#[test]
fn a_header_name_no_request_can_carry_reads_as_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = serde_json::json!([
        {"id": "args", "execute-command": "/bin/echo",
         "include-command-output-in-response": true,
         "pass-arguments-to-command": [{"source": "header", "name": "X Bad"}, {"source": "string", "name": "end"}],
         "pass-environment-to-command": [{"source": "header", "name": "{x}", "envname": "BRACE"}],
         "pass-file-to-command": [{"source": "header", "name": "Ünï", "envname": "FILE"}]},
        {"id": "not-bad", "execute-command": "/bin/true",
         "trigger-rule": {"not": {"match": {"type": "value", "value": "x", "parameter": {"source": "header", "name": "X Bad"}}}}},
        {"id": "bad", "execute-command": "/bin/true",
         "trigger-rule": {"match": {"type": "value", "value": "x", "parameter": {"source": "header", "name": "X Bad"}}}},
        {"id": "bad-token", "execute-command": "/bin/true",
         "trigger-rule": {"match": {"type": "value", "value": "t", "parameter": {"source": "header", "name": "Api Token"}}}},
    ]);
    let out = import_hooks(dir.path(), &hooks);
    let stderr = &out.stderr;
    assert!(out.code == Some(0), "{stderr}");
    assert!(
        stderr.contains("header `X Bad` is not a valid header name, so no request carries it"),
        "{stderr}"
    );
    let d = Daemon::start(&out.config);
    let r = d.post("/hooks/args", &[], b"");
    assert_eq!((r.status, r.text.as_str()), (200, " end\n"));
    assert_ne!(
        d.post("/hooks/not-bad", &[], b"").text,
        "Hook rules were not satisfied."
    );
    assert_eq!(d.post("/hooks/bad", &[], b"").text, "Hook rules were not satisfied.");
    assert_eq!(
        d.post("/hooks/bad-token", &[], b"").text,
        "Hook rules were not satisfied."
    );

    let hooks = serde_json::json!([{"id": "sig", "execute-command": "/bin/true",
        "trigger-rule": {"match": {"type": "payload-hmac-sha1", "secret": "s", "parameter": {"source": "header", "name": "X Sig"}}}}]);
    let out = import_hooks(dir.path(), &hooks);
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(
        stderr.contains("which is not a valid header name: no request carries it"),
        "{stderr}"
    );
}

/// The same variable named twice: the last entry that has a value wins;
/// one whose source cannot be read leaves the earlier one in place.
#[test]
fn a_variable_named_twice_keeps_the_entry_adnanh_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = serde_json::json!([{"id": "env", "execute-command": "/usr/bin/env",
        "include-command-output-in-response": true,
        "pass-environment-to-command": [
            {"source": "string", "name": "first", "envname": "A"},
            {"source": "request", "name": "nothing", "envname": "A"},
            {"source": "string", "name": "one", "envname": "B"},
            {"source": "url", "name": "b", "envname": "B"}]}]);
    let out = import_hooks(dir.path(), &hooks);
    let stderr = &out.stderr;
    assert!(out.code == Some(0), "{stderr}");
    assert!(
        stderr.contains("`B` is given more than once: the last entry is used"),
        "{stderr}"
    );
    let d = Daemon::start(&out.config);
    let r = d.post("/hooks/env?b=two", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text);
    let lines: Vec<&str> = r.text.lines().collect();
    assert!(lines.contains(&"A=first"), "{}", r.text);
    assert!(lines.contains(&"B=two"), "{}", r.text);
}
