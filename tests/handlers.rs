//! The handler contract: argv, environment, stdin, exit codes, timeouts,
//! process groups, spawn failures and output limits.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const CONFIG: &str = r#"
tasks:
  output_limit: 64KiB
sources:
  ci:
    provider: generic
    auth: none
    event: {field: kind}
programs:
  dump:
    command: handlers/dump.py
    args: ["--event_type={event}", "{source}/{{literal}}"]
    params: [text, ref]
    env: {EXTRA: from-config}
  trap:
    command: handlers/trap.sh
    timeout: 1s
    env: {PIDS_FILE: $DIR/pids}
  missing:
    command: handlers/does-not-exist.sh
  noexec:
    command: handlers/not-executable.sh
  noisy:
    command: handlers/noisy.sh
  selfkill:
    command: [sh, -c, "kill -KILL $$$$"]   # `$$` is a literal `$` in config strings
  argv_list:
    command: [python3, handlers/dump.py, --fixed]
  envdump:
    command: [sh, -c, "unset PWD; exec env -0", envdump]
    params: [text]
    env: {EXTRA: from-config}
mappings:
  ci:
    dump:
      params:
        text: payload.text
        ref: payload.ref
      rules:
        - run: dump
    trap: {rules: [{run: trap}]}
    missing: {rules: [{run: missing}]}
    noexec: {rules: [{run: noexec}]}
    noisy: {rules: [{run: noisy}]}
    selfkill: {rules: [{run: selfkill}]}
    argv_list: {rules: [{run: argv_list}]}
    envdump:
      params: {text: payload.text}
      rules: [{run: envdump}]
"#;

fn run(d: &Daemon, body: &Value) -> Value {
    let r = d.post_json("/hooks/ci", &[], body.to_string().as_bytes());
    let ids = Daemon::task_ids(&r);
    d.wait_task(&ids[0])
}

fn seen(task: &Value) -> Value {
    serde_json::from_str(task["stdout"].as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {task}"))
}

#[test]
fn hostile_values_and_chinese_text_arrive_verbatim_as_single_arguments() {
    let d = Daemon::start(CONFIG);
    let hostile = "a b 'q' \"dq\" $(touch /tmp/pwned) `id`; rm -rf / && echo\nnext line \\ 部署完成 🎉";
    let task = run(&d, &json!({"kind": "dump", "text": hostile, "ref": "--help"}));
    assert_eq!(task["status"], "succeeded", "{task}");
    let got = seen(&task);
    assert_eq!(
        got["argv"],
        json!([
            "--event_type=dump",
            "ci/{literal}",
            format!("--text={hostile}"),
            "--ref=--help"
        ])
    );
    assert_eq!(task["argv"][0], format!("{}/handlers/dump.py", d.dir.path().display()));
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    // The param reaches the environment too.
    assert_eq!(got["env"]["HOOK_PARAM_TEXT"], hostile);
}

#[test]
fn numbers_objects_and_missing_values_are_rendered_plainly() {
    let d = Daemon::start(CONFIG);
    let task = run(&d, &json!({"kind": "dump", "text": {"a": [1, 2]}, "ref": 42}));
    assert_eq!(seen(&task)["argv"][2], r#"--text={"a":[1,2]}"#);
    assert_eq!(seen(&task)["argv"][3], "--ref=42");
    let task = run(&d, &json!({"kind": "dump"}));
    assert_eq!(seen(&task)["argv"][2], "--text=");
}

#[test]
fn the_handler_environment_is_cleared_and_daemon_secrets_never_reach_it() {
    let d = Daemon::with(CONFIG)
        .env("SUPER_SECRET_TOKEN", "hunter2")
        .env("LANG", "C.UTF-8")
        .start();
    // `env -0` prints exactly the environment it was given.
    let task = run(&d, &json!({"kind": "envdump", "text": "x"}));
    assert_eq!(task["status"], "succeeded", "{task}");
    let env: std::collections::BTreeMap<&str, &str> = task["stdout"]
        .as_str()
        .unwrap()
        .split('\0')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let keys: Vec<&str> = env.keys().copied().collect();
    let mut expected = vec![
        "EXTRA",
        "HOME",
        "HOOK_DELIVERY_ID",
        "HOOK_EVENT",
        "HOOK_NODE",
        "HOOK_PARAM_TEXT",
        "HOOK_REQUEST_ID",
        "HOOK_SOURCE",
        "HOOK_TASK_ID",
        "LANG",
        "PATH",
    ];
    if std::env::var_os("TZ").is_some() {
        expected.push("TZ");
    }
    if std::env::var_os("LC_ALL").is_some() {
        expected.push("LC_ALL");
    }
    expected.sort();
    if std::env::var_os("HOME").is_none() {
        expected.retain(|k| *k != "HOME");
    }
    assert_eq!(keys, expected, "the handler saw exactly these variables");
    assert_eq!(env["EXTRA"], "from-config");
    assert_eq!(env["HOOK_SOURCE"], "ci");
    assert_eq!(env["HOOK_EVENT"], "envdump");
    assert_eq!(env["HOOK_TASK_ID"], task["id"]);
    assert_eq!(env["HOOK_DELIVERY_ID"], task["delivery_id"]);
    assert_eq!(env["LANG"], "C.UTF-8");
    assert_eq!(env["HOOK_REQUEST_ID"], task["request_id"]);
    assert!(!task["stdout"].as_str().unwrap().contains("hunter2"));

    // The working directory defaults to the config file's directory.
    let task = run(&d, &json!({"kind": "dump"}));
    assert_eq!(
        seen(&task)["cwd"],
        d.dir.path().canonicalize().unwrap().display().to_string()
    );
}

#[test]
fn stdin_carries_the_exact_body_even_when_large() {
    let d = Daemon::start(CONFIG.replace("output_limit: 64KiB", "output_limit: 1MiB").as_str());
    let text = "中".repeat(100_000); // 300,000 bytes: more than a pipe buffer and than argv allows per arg
    let body = json!({"kind": "argv_list", "text": text}).to_string();
    let r = d.post_json("/hooks/ci", &[], body.as_bytes());
    let task = d.wait_task(&Daemon::task_ids(&r)[0]);
    assert_eq!(task["status"], "succeeded", "{task}");
    let got = seen(&task);
    assert_eq!(got["stdin"].as_str().unwrap(), body);
    assert_eq!(got["stdin_len"], body.len());
    assert_eq!(got["argv"], json!(["--fixed"]));
}

#[test]
fn a_timeout_kills_the_whole_process_group_even_when_sigterm_is_ignored() {
    let d = Daemon::start(CONFIG);
    let task = run(&d, &json!({"kind": "trap"}));
    assert_eq!(task["status"], "timed_out", "{task}");
    assert_eq!(task["exit_code"], Value::Null);
    assert_eq!(task["error"], "timed out after 1s");
    for pid in d.trap_pids() {
        eventually("the timed-out group's processes to end", Duration::from_secs(5), || {
            !alive(pid)
        });
    }
    // The grace period (5 s) passed before SIGKILL, since SIGTERM was ignored.
    assert!(task["duration_ms"].as_u64().unwrap() >= 5_900, "{task}");
}

#[test]
fn a_program_that_cannot_start_fails_with_the_os_reason() {
    let d = Daemon::start(CONFIG);
    let task = run(&d, &json!({"kind": "missing"}));
    assert_eq!(task["status"], "failed");
    assert_eq!(task["exit_code"], Value::Null);
    assert_eq!(task["started_at"], Value::Null);
    let error = task["error"].as_str().unwrap();
    assert!(
        error.starts_with("could not start `") && error.contains("No such file or directory"),
        "{error}"
    );

    let task = run(&d, &json!({"kind": "noexec"}));
    assert_eq!(task["status"], "failed");
    assert!(task["error"].as_str().unwrap().contains("Permission denied"), "{task}");
}

#[test]
fn exit_codes_signals_and_output_limits_are_reported() {
    let d = Daemon::start(CONFIG);
    let task = run(&d, &json!({"kind": "noisy"}));
    assert_eq!(task["status"], "failed");
    assert_eq!(task["exit_code"], 3);
    assert_eq!(task["error"], Value::Null);
    let stdout = task["stdout"].as_str().unwrap();
    assert_eq!(stdout.len(), 64 * 1024, "the tail is kept up to output_limit");
    assert!(stdout.ends_with("xxxTHE-END\n"));
    assert_eq!(task["stdout_truncated"], true);
    assert_eq!(task["stderr"], "oops\n");
    assert_eq!(task["stderr_truncated"], false);

    let task = run(&d, &json!({"kind": "selfkill"}));
    assert_eq!(task["status"], "failed");
    assert_eq!(task["exit_code"], Value::Null);
    assert_eq!(task["error"], "killed by SIGKILL");
}

#[test]
fn a_request_id_follows_the_delivery_to_its_tasks_and_handlers() {
    let d = Daemon::start(CONFIG);
    let r = d.post_json(
        "/hooks/ci",
        &[("X-Request-Id", "req-4711")],
        br#"{"kind":"envdump","text":"x"}"#,
    );
    assert_eq!(r.header("x-request-id"), Some("req-4711"));
    let task = d.wait_task(&Daemon::task_ids(&r)[0]);
    assert_eq!(task["request_id"], "req-4711");
    assert!(task["stdout"].as_str().unwrap().contains("HOOK_REQUEST_ID=req-4711"));
    let record = d
        .get(&format!("/deliveries/{}", task["delivery_id"].as_str().unwrap()))
        .json();
    assert_eq!(record["request_id"], "req-4711");
    // The request id is in the logs (this waits for it, or fails).
    d.logs_with("req-4711");
    // Without one, one is made up.
    let r = d.post_json("/hooks/ci", &[], br#"{"kind":"envdump","text":"x"}"#);
    assert_eq!(r.header("x-request-id").unwrap().len(), 32);
}

#[test]
fn the_answer_does_not_wait_for_the_handler() {
    let d = Daemon::start(CONFIG);
    let started = std::time::Instant::now();
    let r = d.post_json("/hooks/ci", &[], br#"{"kind":"trap"}"#);
    assert_eq!(r.status, 202);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the 202 waited for the handler"
    );
    let id = &Daemon::task_ids(&r)[0];
    eventually("the task to run", Duration::from_secs(10), || {
        d.get(&format!("/tasks/{id}")).json()["status"] == "running"
    });
}

#[test]
fn an_environment_variable_in_args_is_text_never_a_param() {
    // `${ARG}` brings in braces: they reach the handler as they are, and
    // neither pull a param from the request nor make the config invalid.
    let d = Daemon::with(
        r#"
sources:
  s: {provider: generic, auth: none}
programs:
  show:
    command: [printf, "%s|"]
    args: ["${ARG}", "{word}", "${UNSET:-a{b}"]
mappings:
  s:
    default:
      params: {word: payload.word}
      rules: [{run: show}]
"#,
    )
    .env("ARG", "pre-{word}-50%{-}")
    .start();
    let r = d.post_json("/hooks/s?wait=20s", &[], br#"{"word":"from-the-request"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["tasks"][0]["stdout"],
        "pre-{word}-50%{-}|from-the-request|a{b|"
    );
}

/// A descriptor the daemon was started with, open and not close-on-exec (a
/// shell's `exec 9<file`), is not passed on to handlers.
#[test]
fn descriptors_the_daemon_inherited_do_not_reach_handlers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("webhook.yaml"),
        r#"
sources:
  a: {provider: generic, auth: none}
programs:
  fds:
    command: [sh, -c, "cd /proc/$$$$/fd && for f in *; do echo \"fd $$f\"; done"]
mappings:
  a:
    default: {rules: [{run: fds}]}
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("secret.txt"), "inherited").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            r#"exec 9<secret.txt; exec "$0" serve -c webhook.yaml -l "$1""#,
            BIN,
            &addr,
        ])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://{addr}/hooks/a?wait=10s");
    let mut answer = None;
    for _ in 0..100 {
        match ureq::post(&url)
            .set("Content-Type", "application/json")
            .send_string("{}")
        {
            Ok(r) => {
                answer = Some(r.into_json::<Value>().unwrap());
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    let answer = answer.unwrap_or_else(|| panic!("the daemon did not answer:\n{logs}"));
    let stdout = answer["tasks"][0]["stdout"].as_str().unwrap();
    assert!(stdout.contains("fd 0\n") && stdout.contains("fd 2\n"), "{stdout}");
    assert!(
        !stdout.contains("fd 9\n"),
        "the handler got the daemon's fd 9:\n{stdout}"
    );
    assert!(
        // fd 9, and whatever the test runner itself passed on (cargo's jobserver).
        logs.contains("closed the descriptors this process inherited without close-on-exec"),
        "{logs}"
    );
}
