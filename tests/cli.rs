//! The command-line client against a running daemon: `tasks`, `task`
//! (`--output` live), `cancel`, `rerun`, `deliveries`, `delivery`, `replay`,
//! and `send` signing deliveries that every provider preset accepts.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config() -> String {
    format!(
        r#"
sources:
  open:
    provider: generic
    auth: none
    event: {{field: kind}}
  github:
    provider: github
    secrets: [gh-new, gh-old]
  gitlab_token:
    provider: gitlab
    token: gl-token
  gitlab_signed:
    provider: gitlab
    signing_secret: {WHSEC}
  gitlab_both:
    provider: gitlab
    token: gl-token
    signing_secret: {WHSEC}
  gitea:
    provider: gitea
    secret: gitea-secret
  forgejo:
    provider: forgejo
    secret: forgejo-secret
  gogs:
    provider: gogs
    secret: gogs-secret
  bitbucket:
    provider: bitbucket
    secret: bb-secret
  jira_token:
    provider: jira
    token: jira-token
  jira_secret:
    provider: jira
    secret: jira-secret
  slack:
    provider: slack
    secret: slack-secret
  standard:
    provider: standard
    secret: {WHSEC}
  stripe:
    provider: stripe
    secret: whsec_stripe_test
  g_token:
    provider: generic
    auth: {{token: g-token, header: X-Token}}
    event: {{header: X-Event}}
  g_query:
    provider: generic
    auth: {{token: g-token, query: token}}
  g_hmac:
    provider: generic
    auth: {{hmac: sha256, secret: g-secret, header: X-Signature, prefix: "sha256="}}
  g_hmac_b64:
    provider: generic
    auth: {{hmac: sha512, secret: g-secret, header: X-Sig, encoding: base64}}
  g_basic:
    provider: generic
    auth: {{basic: {{user: deploy, password: "pa:ss"}}}}
programs:
  ok:
    command: [sh, -c, "echo ok"]
  ticker:
    command: handlers/ticker.sh
    env: {{TICKS: "3", PAUSE: "0.2"}}
  sleepy:
    command: [sleep, "30"]
  fail:
    command: [sh, -c, "echo bad >&2; exit 3"]
  slow:
    command: [sh, -c, "sleep 5; echo done"]
mappings:
  open:
    ok: {{rules: [{{run: ok}}]}}
    ticker: {{rules: [{{run: ticker}}]}}
    sleepy: {{rules: [{{run: sleepy}}]}}
    fail: {{rules: [{{run: fail}}]}}
    slow: {{rules: [{{run: slow}}]}}
    deep: {{params: {{all: payload}}, rules: [{{run: ok}}]}}
{}
"#,
        [
            "github",
            "gitlab_token",
            "gitlab_signed",
            "gitlab_both",
            "gitea",
            "forgejo",
            "gogs",
            "bitbucket",
            "jira_token",
            "jira_secret",
            "slack",
            "standard",
            "stripe",
            "g_token",
            "g_query",
            "g_hmac",
            "g_hmac_b64",
            "g_basic",
        ]
        .iter()
        .map(|s| format!("  {s}:\n    \"*\": {{rules: [{{run: ok}}]}}\n"))
        .collect::<String>()
    )
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("HOOKRUNNER_URL")
        .env_remove("HOOKRUNNER_TOKEN")
        .env_remove("HOOKRUNNER_CONFIG")
        .env_remove("HOOKRUNNER_LOG_FORMAT")
        .stdin(Stdio::null());
    cmd
}

fn run(args: &[&str]) -> Out {
    let Output { status, stdout, stderr } = command(args).output().expect("run hookrunner");
    Out {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `hookrunner <args> --config <the daemon's config> --url http://<its address>`.
fn cli(d: &Daemon, args: &[&str]) -> Out {
    let config = d.path("webhook.yaml").display().to_string();
    let url = d.url("");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", &config, "--url", &url]);
    run(&all)
}

/// Writes `body` to a payload file in the daemon's directory.
fn payload(d: &Daemon, name: &str, body: &str) -> String {
    let path = d.path(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

/// Sends `{"kind": kind}` to the open source; the first task's id.
fn start(d: &Daemon, kind: &str) -> String {
    let file = payload(d, &format!("{kind}.json"), &format!(r#"{{"kind":"{kind}"}}"#));
    let out = cli(d, &["send", "--source", "open", &file]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()["tasks"][0]["id"].as_str().unwrap().to_string()
}

#[test]
fn send_signs_deliveries_every_provider_preset_accepts() {
    let d = Daemon::start(&config());
    let plain = r#"{"ref":"refs/heads/main","object_kind":"push","webhookEvent":"jira:issue_created"}"#;
    let cases: &[(&str, Option<&str>, &str, &str)] = &[
        ("github", Some("push"), plain, "push"),
        ("gitlab_token", Some("push"), plain, "push"),
        ("gitlab_signed", Some("merge_request"), plain, "merge_request"),
        ("gitlab_both", Some("Tag Push Hook"), plain, "tag_push"),
        ("gitea", Some("push"), plain, "push"),
        ("forgejo", Some("pull_request"), plain, "pull_request"),
        ("gogs", Some("push"), plain, "push"),
        ("bitbucket", Some("repo:push"), plain, "repo:push"),
        ("jira_token", None, plain, "jira:issue_created"),
        ("jira_secret", Some("jira:issue_updated"), plain, "jira:issue_updated"),
        (
            "slack",
            None,
            r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#,
            "app_mention",
        ),
        ("standard", None, r#"{"type":"invoice.paid","data":{}}"#, "invoice.paid"),
        (
            "stripe",
            None,
            r#"{"id":"evt_1","type":"charge.succeeded"}"#,
            "charge.succeeded",
        ),
        ("open", None, r#"{"kind":"ok"}"#, "ok"),
        ("g_token", Some("build"), plain, "build"),
        ("g_query", None, plain, "default"),
        ("g_hmac", None, plain, "default"),
        ("g_hmac_b64", None, plain, "default"),
        ("g_basic", None, plain, "default"),
    ];
    for (source, event, body, expected) in cases {
        let file = payload(&d, &format!("{source}.json"), body);
        let mut args = vec!["send", "--source", source];
        if let Some(e) = event {
            args.extend(["--event", e]);
        }
        args.push(&file);
        let out = cli(&d, &args);
        assert_eq!(out.code, 0, "{source}: {}{}", out.stdout, out.stderr);
        let answer = out.json();
        assert_eq!(answer["event"], *expected, "{source}: {answer}");
        assert_eq!(answer["tasks"].as_array().map(Vec::len), Some(1), "{source}: {answer}");
        let id = answer["tasks"][0]["id"].as_str().unwrap();
        assert_eq!(d.wait_task(id)["status"], "succeeded", "{source}");
    }
    // Every one was accepted, none refused.
    let out = cli(&d, &["deliveries", "--outcome", "accepted", "--limit", "100", "--json"]);
    assert_eq!(out.json()["deliveries"].as_array().unwrap().len(), cases.len());
}

#[test]
fn send_reports_refusals_and_mistakes() {
    let d = Daemon::start(&config());
    let file = payload(&d, "p.json", r#"{"a":1}"#);
    // A header event is needed for GitHub.
    let out = cli(&d, &["send", "--source", "github", &file]);
    assert_eq!(out.code, 2, "a bad argument");
    assert_eq!(
        out.stderr.trim(),
        "error: source `github` reads its event from the `X-GitHub-Event` header: give --event"
    );
    // A config whose secret differs from the daemon's: the daemon's 401 sentence.
    let other = d.path("other.yaml");
    std::fs::write(&other, config().replace("gitea-secret", "not-the-secret")).unwrap();
    let url = d.url("");
    let out = run(&[
        "send",
        "--config",
        other.to_str().unwrap(),
        "--url",
        &url,
        "--source",
        "gitea",
        "--event",
        "push",
        &file,
    ]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(out.stderr.trim(), "error: the signature does not match");
    // A header given on the command line replaces the signed one.
    let out = cli(
        &d,
        &[
            "send",
            "--source",
            "g_token",
            "--event",
            "x",
            "--header",
            "X-Token: wrong",
            &file,
        ],
    );
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.trim(), "error: the token does not match");
    // A payload the source would refuse: exit 2, and nothing reaches the daemon.
    let before = d.get("/deliveries").json()["deliveries"].as_array().unwrap().len();
    let bad = payload(&d, "bad.json", "{not json");
    let out = cli(&d, &["send", "--source", "open", &bad]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: source `open` would refuse the payload: "),
        "{}",
        out.stderr
    );
    assert_eq!(
        d.get("/deliveries").json()["deliveries"].as_array().unwrap().len(),
        before
    );
    // Unknown source: exit 2, as for `explain`.
    let out = cli(&d, &["send", "--source", "nope", &file]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: there is no source named `nope` (sources: "),
        "{}",
        out.stderr
    );
    // A dry run runs nothing.
    let ok = payload(&d, "ok.json", r#"{"kind":"ok"}"#);
    let out = cli(&d, &["send", "--source", "open", "--dry-run", &ok]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["dry_run"], true);
    // `--wait`: the answer holds the finished task and its output.
    let slow = payload(&d, "slow.json", r#"{"kind":"slow"}"#);
    let out = cli(&d, &["send", "--source", "open", "--wait", "30s", &slow]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let answer = out.json();
    assert_eq!(answer["finished"], true, "{answer}");
    assert_eq!(answer["tasks"][0]["status"], "succeeded", "{answer}");
    assert_eq!(answer["tasks"][0]["stdout"], "done\n", "{answer}");
    // A `--wait` that is no duration is a bad argument: nothing is sent.
    let before = d.get("/deliveries").json()["deliveries"].as_array().unwrap().len();
    let out = cli(&d, &["send", "--source", "open", "--wait", "soon", &slow]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stderr.starts_with("error: `--wait`: "), "{}", out.stderr);
    let after = d.get("/deliveries").json()["deliveries"].as_array().unwrap().len();
    assert_eq!(after, before, "the bad --wait sent a delivery");
}

#[test]
fn tasks_and_task_as_table_details_and_json() {
    let d = Daemon::start(&config());
    let id = start(&d, "ok");
    d.wait_task(&id);
    let failed = start(&d, "fail");
    d.wait_task(&failed);

    let out = cli(&d, &["tasks", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ids: Vec<String> = out.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [failed.clone(), id.clone()]);

    let out = cli(&d, &["tasks"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["ID", "PROGRAM", "STATUS", "EXIT", "CREATED", "DURATION"]);
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&row[..4], [&id[..8], "ok", "succeeded", "0"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..4], [&failed[..8], "fail", "failed", "3"]);

    let out = cli(
        &d,
        &[
            "tasks",
            "--status",
            "failed",
            "--program",
            "fail",
            "--limit",
            "5",
            "--json",
        ],
    );
    let tasks = out.json()["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["id"], failed.as_str());

    let out = cli(&d, &["task", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let task = out.json();
    assert_eq!(task["status"], "succeeded");
    assert_eq!(task["stdout"], "ok\n");

    // The short id of the table works too.
    let out = cli(&d, &["task", &failed[..8]]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let field = |label: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {label}: {}", out.stdout))
            .to_string()
    };
    assert_eq!(field("task:"), failed);
    assert_eq!(field("status:"), "failed");
    assert_eq!(field("exit code:"), "3");
    assert_eq!(field("program:"), "fail");
    assert!(out.stdout.contains("stderr:\n  bad\n"), "{}", out.stdout);
}

#[test]
fn unknown_ids_and_api_errors_are_one_sentence_and_exit_1() {
    let d = Daemon::start(&config());
    let out = cli(&d, &["task", "00000000-0000-0000-0000-000000000000"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: there is no task `00000000-0000-0000-0000-000000000000`\n"
    );
    assert_eq!(out.stdout, "");
    let out = cli(&d, &["task", "nope"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, "error: there is no task `nope`\n");
    let out = cli(&d, &["delivery", "nope"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, "error: there is no delivery `nope` on record\n");
    // A filter that names no status or outcome is a bad argument (exit 2),
    // told before anything is asked of the daemon.
    let out = cli(&d, &["tasks", "--status", "bogus"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with(
            "error: invalid value 'bogus' for '--status <STATUS>': expected one of queued, running, succeeded"
        ),
        "{}",
        out.stderr
    );
    let out = cli(&d, &["deliveries", "--outcome", "bogus"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("expected one of accepted, ignored"),
        "{}",
        out.stderr
    );
    // Nobody listening.
    let out = run(&["tasks", "--url", "http://127.0.0.1:1", "--token", "x"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("error: cannot reach hookrunner at http://127.0.0.1:1: "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
}

#[test]
fn task_output_follows_the_live_output_and_exits_with_the_result() {
    let d = Daemon::start(&config());
    let id = start(&d, "ticker");
    let out = cli(&d, &["task", &id, "--output"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "tick 1\ntick 2\ntick 3\n");
    let stderr: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(stderr[0], "done");
    assert!(
        stderr[1].starts_with(&format!("task {} succeeded (exit code 0, ", &id[..8])),
        "{}",
        out.stderr
    );

    let id = start(&d, "fail");
    let out = cli(&d, &["task", &id, "--output"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.starts_with("bad\n"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("task {} failed", &id[..8])),
        "{}",
        out.stderr
    );
}

#[test]
fn cancel_and_rerun() {
    let d = Daemon::start(&config());
    let sleepy = start(&d, "sleepy");
    eventually("sleepy running", Duration::from_secs(10), || {
        d.get(&format!("/tasks/{sleepy}")).json()["status"] == "running"
    });
    let out = cli(&d, &["cancel", &sleepy]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with(&format!("task {sleepy}")), "{}", out.stdout);
    assert_eq!(d.wait_task(&sleepy)["status"], "cancelled");
    // A finished task cannot be cancelled: the 409 sentence.
    let out = cli(&d, &["cancel", &sleepy]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);

    let ok = start(&d, "ok");
    d.wait_task(&ok);
    let out = cli(&d, &["rerun", &ok[..8], "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let new = out.json();
    assert_eq!(new["rerun_of"], ok.as_str());
    let new_id = new["id"].as_str().unwrap();
    assert_eq!(d.wait_task(new_id)["status"], "succeeded");
    let out = cli(&d, &["rerun", &ok]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("(rerun of {}, program ok)", &ok[..8])),
        "{}",
        out.stdout
    );
}

#[test]
fn deliveries_delivery_and_replay() {
    let d = Daemon::start(&config());
    let task = start(&d, "ok");
    d.wait_task(&task);
    let out = cli(&d, &["deliveries", "--source", "open", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = out.json()["deliveries"].as_array().unwrap().clone();
    assert_eq!(records.len(), 1);
    let id = records[0]["id"].as_str().unwrap().to_string();
    assert_eq!(records[0]["task_ids"][0], task.as_str());

    let out = cli(&d, &["deliveries", "--outcome", "accepted"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..5], [&id[..8], "open", "ok", "accepted", "202"]);
    assert_eq!(row.last(), Some(&"1"));

    let out = cli(&d, &["delivery", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("outcome:") && out.stdout.contains("accepted"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&format!("tasks: {task}")), "{}", out.stdout);
    let out = cli(&d, &["delivery", &id, "--json"]);
    assert_eq!(out.json()["id"], id.as_str());

    let out = cli(&d, &["replay", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(&format!("replayed delivery {id} as ")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("1 task started"), "{}", out.stdout);
    let out = cli(&d, &["replay", &id, "--json"]);
    let replayed = out.json();
    let new_task = replayed["tasks"][0]["id"].as_str().unwrap();
    assert_eq!(d.wait_task(new_task)["status"], "succeeded");
}

#[test]
fn tasks_follow_prints_new_and_changed_tasks() {
    let d = Daemon::start(&config());
    let config_path = d.path("webhook.yaml").display().to_string();
    let url = d.url("");
    let mut child = command(&["tasks", "--follow", "--json", "--config", &config_path, "--url", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let id = start(&d, "slow");
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("succeeded") {
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("a line from --follow");
        let task: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(task["id"], id.as_str());
        statuses.push(task["status"].as_str().unwrap().to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
    // Each change once, in order (a fast task may skip `queued`).
    statuses.dedup();
    assert!(
        statuses.ends_with(&["running".into(), "succeeded".into()]),
        "{statuses:?}"
    );
}

#[test]
fn the_api_token_comes_from_the_config_or_token() {
    let d = Daemon::start(&config().replacen("sources:", "api:\n  tokens: [api-secret]\nsources:", 1));
    let out = cli(&d, &["tasks", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["tasks"], serde_json::json!([]));
    let out = cli(&d, &["tasks", "--token", "wrong"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    // --url and --token: no config needed.
    let url = d.url("");
    let out = run(&[
        "tasks",
        "--config",
        "/nonexistent.yaml",
        "--url",
        &url,
        "--token",
        "api-secret",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(&["tasks", "--config", "/nonexistent.yaml", "--url", &url]);
    assert_eq!(out.code, 1);
}

#[test]
fn completions_man_and_log_format() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        assert!(out.stdout.contains("hookrunner"), "{shell}");
        assert!(out.stdout.contains("deliveries"), "{shell}");
    }
    let out = run(&["man"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(".ie") || out.stdout.contains(".TH hookrunner"),
        "{}",
        &out.stdout[..200]
    );
    assert!(out.stdout.contains("send"));

    // `--log-format json`: one JSON object per line, before or after the subcommand.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("webhook.yaml");
    std::fs::write(&config, "sources:\n  a:\n    provider: generic\n    auth: none\n").unwrap();
    let mut child = command(&[
        "--log-format",
        "json",
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .env("RUST_LOG", "info")
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("log line").unwrap();
        let json: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(json["level"].is_string() && json["timestamp"].is_string(), "{line}");
        let message = json["message"].as_str().unwrap_or("").to_string();
        seen.push(message.clone());
        if message.contains("listening on") {
            break;
        }
        assert!(seen.len() < 50, "{seen:?}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let out = run(&["check", "--log-format", "json", "--config", config.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(&["--log-format", "xml", "check"]);
    assert_eq!(out.code, 2);
}

/// A task whose params carry a body nested as deep as the daemon accepts
/// (its answer nests deeper than serde_json's default 128 levels) is shown.
#[test]
fn a_task_with_a_deeply_nested_param_is_shown() {
    let d = Daemon::start(&config());
    let body = format!("{{\"kind\":\"deep\",\"v\":{}1{}}}", "[".repeat(125), "]".repeat(125));
    let r = d.post_json("/hooks/open", &[], body.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text);
    let id = Daemon::task_ids(&r)[0].clone();
    d.wait_task(&id);
    let out = cli(&d, &["task", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.matches('[').count() >= 125, "{}", out.stdout);
    let out = cli(&d, &["task", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("succeeded"), "{}", out.stdout);
}

/// The client reads only the config's `server` and `api`: a secret of a
/// source that only the daemon's environment holds is not needed to list
/// tasks with the same config file.
#[test]
fn the_client_needs_no_secret_of_the_sources() {
    let d = Daemon::with("sources:\n  s: {provider: github, secret: \"${HR_CLI_TEST_ONLY_THE_DAEMON_HAS_IT}\"}\n")
        .env("HR_CLI_TEST_ONLY_THE_DAEMON_HAS_IT", "s3cret")
        .start();
    let out = cli(&d, &["tasks"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The daemon itself refuses such a config without the variable.
    let out = run(&["check", "--config", &d.path("webhook.yaml").display().to_string()]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("HR_CLI_TEST_ONLY_THE_DAEMON_HAS_IT"),
        "{}",
        out.stderr
    );
}

/// Given `--token`, the client does not read `api.tokens`: on a host whose
/// tokens come from systemd credentials (or a variable only the daemon
/// has), `--token` is all a shell needs.
#[test]
fn a_given_token_needs_no_api_tokens_of_the_config() {
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("api-token"), "api-secret\n").unwrap();
    let api = "api:\n  tokens: [\"${credential:api-token}\", \"${HR_CLI_TEST_DAEMON_ONLY_TOKEN}\"]\n";
    let d = Daemon::with(&format!("{api}sources:\n  s: {{provider: generic, auth: none}}\n"))
        .env("CREDENTIALS_DIRECTORY", credentials.path().to_str().unwrap())
        .env("HR_CLI_TEST_DAEMON_ONLY_TOKEN", "other")
        .start();
    // The same file, listening where this daemon does (no --url).
    let client = d.path("client.yaml");
    std::fs::write(&client, format!("server:\n  listen: {}\n{api}", d.addr)).unwrap();
    let client = client.display().to_string();
    // As in a shell: no credentials.
    let run = |args: &[&str]| {
        let out = command(args).env_remove("CREDENTIALS_DIRECTORY").output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let out = run(&["tasks", "--config", &client, "--token", "api-secret", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["tasks"], serde_json::json!([]));
    let out = command(&["tasks", "--config", &client])
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("HOOKRUNNER_TOKEN", "api-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Without a token the client reads `api.tokens`, and says what it lacks.
    let out = run(&["tasks", "--config", &client]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("client.yaml:4:12: `api.tokens[0]`: `${credential:api-token}` needs systemd's LoadCredential="),
        "{}",
        out.stderr
    );
    // `server` is still read, and checked.
    std::fs::write(d.path("client.yaml"), format!("server:\n  listen: nowhere\n{api}")).unwrap();
    let out = run(&["tasks", "--config", &client, "--token", "api-secret"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("client.yaml:2:3: `server.listen`: `nowhere` is not an address"),
        "{}",
        out.stderr
    );
}

/// `--help` shows which environment variables are set, never the value of
/// one that may hold a secret (`HOOKRUNNER_URL` may carry a password).
#[test]
fn help_never_shows_the_url_or_token_from_the_environment() {
    for command_name in ["tasks", "task", "cancel", "nodes", "send"] {
        let out = command(&[command_name, "--help"])
            .env("HOOKRUNNER_URL", "http://user:url-password@h:1")
            .env("HOOKRUNNER_TOKEN", "token-value")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{help}");
        assert!(help.contains("[env: HOOKRUNNER_URL]"), "{command_name}: {help}");
        assert!(
            !help.contains("url-password") && !help.contains("token-value"),
            "{help}"
        );
    }
}

/// A `--url` the client cannot use and a `--limit` the API refuses are bad
/// arguments (exit 2), found before anything is sent.
#[test]
fn a_bad_url_or_limit_is_a_bad_argument() {
    for url in [
        "ftp://127.0.0.1:9000",
        "http://",
        "unix:/run/hookrunner.sock",
        "http://user:pw@h:99999",
    ] {
        let out = run(&["tasks", "--url", url, "--token", "t"]);
        assert_eq!(out.code, 2, "{url}: {}", out.stderr);
        assert!(out.stderr.starts_with("error: --url: `"), "{}", out.stderr);
        assert!(
            out.stderr.contains("` is not a URL such as http://127.0.0.1:9000"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("pw@"), "{}", out.stderr);
    }
    let out = command(&["nodes", "--token", "t"])
        .env("HOOKRUNNER_URL", "ftp://x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: HOOKRUNNER_URL: `ftp://x` is not a URL"));
    for (command_name, limit) in [("tasks", "0"), ("tasks", "1001"), ("deliveries", "0"), ("tasks", "-1")] {
        let out = run(&[command_name, "--limit", limit, "--url", "http://127.0.0.1:1"]);
        assert_eq!(out.code, 2, "{command_name} --limit {limit}: {}", out.stderr);
    }
    // 1 and 1000 are limits; nothing listens there, so exit 1.
    for limit in ["1", "1000"] {
        let out = run(&["tasks", "--limit", limit, "--url", "http://127.0.0.1:1"]);
        assert_eq!(out.code, 1, "{}", out.stderr);
    }
}

#[test]
fn send_dry_run_carries_the_api_token() {
    let d = Daemon::start(&format!("api: {{tokens: [api-tok]}}\n{}", config()));
    let ok = payload(&d, "ok.json", r#"{"kind":"ok"}"#);
    // The config's first token, as every client command sends it.
    let out = cli(&d, &["send", "--source", "open", "--dry-run", &ok]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["dry_run"], true);
    // `--token` (or HOOKRUNNER_TOKEN) instead; a wrong one is refused.
    let out = cli(&d, &["send", "--source", "open", "--dry-run", "--token", "wrong", &ok]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("token"), "{}", out.stderr);
    let mut cmd = command(&["send", "--source", "open", "--dry-run", &ok, "--url", &d.url("")]);
    cmd.arg("--config")
        .arg(d.path("webhook.yaml"))
        .env("HOOKRUNNER_TOKEN", "api-tok");
    assert!(cmd.output().unwrap().status.success());
    // Nothing ran, and a real send does not need the API's rule.
    let tasks = d.get_with("/tasks", &[("Authorization", "Bearer api-tok")]).json();
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 0, "{tasks}");
    assert_eq!(cli(&d, &["send", "--source", "open", &ok]).code, 0);
}

/// Output that cannot all be written is a failure, said on stderr, never a
/// panic; a reader that stops early (`| head`) is not one. A daemon whose
/// stderr is full goes on serving.
#[test]
fn a_full_or_closed_output_is_an_exit_status_not_a_panic() {
    let d = Daemon::start(&config());
    let config = d.path("webhook.yaml");
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    for (args, code, said) in [
        (
            vec!["check", "--config", config.to_str().unwrap()],
            1,
            "error: cannot write the output: ",
        ),
        (
            vec!["completions", "bash"],
            2,
            "error: cannot write the completion script: ",
        ),
        (vec!["man"], 2, "error: cannot write the man page: "),
    ] {
        let out = Command::new(BIN).args(&args).stdout(full()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // `| head -c1`: the reader had what it wanted.
    let mut child = Command::new(BIN)
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // A daemon logging to a full stderr answers as ever.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap(), "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(d.path(""))
        .stdout(Stdio::null())
        .stderr(full())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    eventually("the daemon to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    for _ in 0..20 {
        let r = request("POST", &format!("{url}/hooks/nope"), &[], Some(b"{}"));
        assert_eq!(r.status, 404, "{}", r.text);
    }
    assert_eq!(request("GET", &format!("{url}/healthz"), &[], None).status, 200);
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon is still running");
    signal(daemon.id(), "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}
