//! The shipped handler scripts in `handlers/`, run by the real daemon: a git
//! deploy into a real work tree, argparse handlers fed hostile values, and the
//! Feishu / DingTalk bots posting to a local receiver that checks signatures
//! the way the real services do. Nothing here talks to anything but 127.0.0.1.

mod common;
use common::*;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Sends one delivery, expects exactly one task, and waits for it to finish.
fn run_one(d: &Daemon, source: &str, body: &Value) -> Value {
    let r = d.post_json(&format!("/hooks/{source}"), &[], body.to_string().as_bytes());
    let ids = Daemon::task_ids(&r);
    assert_eq!(ids.len(), 1, "{}", r.text);
    d.wait_task(&ids[0])
}

/// A string as a YAML scalar (YAML double-quoted strings are JSON strings).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn stdout(task: &Value) -> &str {
    task["stdout"].as_str().unwrap()
}

fn stderr(task: &Value) -> &str {
    task["stderr"].as_str().unwrap()
}

// ---------------------------------------------------------------- deploy.sh

/// An origin (bare), a clone to push from, and the work tree deploy.sh updates,
/// all on branch `main`, with git cut off from the user's and system config.
struct Repos {
    tmp: tempfile::TempDir,
}

impl Repos {
    fn new() -> Repos {
        let tmp = tempfile::tempdir().unwrap();
        let repos = Repos { tmp };
        std::fs::create_dir(repos.home()).unwrap();
        repos.git(
            repos.tmp.path(),
            &["init", "--quiet", "--bare", "-b", "main", "origin.git"],
        );
        repos.git(repos.tmp.path(), &["init", "--quiet", "-b", "main", "seed"]);
        repos.commit("app.txt", "v1\n", "v1");
        repos.git(
            &repos.seed(),
            &["remote", "add", "origin", repos.origin().to_str().unwrap()],
        );
        repos.git(&repos.seed(), &["push", "--quiet", "-u", "origin", "main"]);
        repos.git(
            repos.tmp.path(),
            &["clone", "--quiet", repos.origin().to_str().unwrap(), "deploy"],
        );
        assert_eq!(
            repos.git(&repos.work_tree(), &["symbolic-ref", "--short", "HEAD"]),
            "main"
        );
        repos
    }

    fn origin(&self) -> PathBuf {
        self.tmp.path().join("origin.git")
    }
    fn seed(&self) -> PathBuf {
        self.tmp.path().join("seed")
    }
    /// The work tree deploy.sh fast-forwards (`DEPLOY_DIR`).
    fn work_tree(&self) -> PathBuf {
        self.tmp.path().join("deploy")
    }
    /// An empty HOME for git, here and in the handler.
    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    /// Runs git in `dir`; panics unless it succeeds; returns trimmed stdout.
    fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("HOME", self.home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?} in {}: {}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Commits `file` = `content` in the seed clone; returns the commit id.
    fn commit(&self, file: &str, content: &str, message: &str) -> String {
        std::fs::write(self.seed().join(file), content).unwrap();
        self.git(&self.seed(), &["add", file]);
        self.git(&self.seed(), &["commit", "--quiet", "-m", message]);
        self.git(&self.seed(), &["rev-parse", "HEAD"])
    }

    fn head(&self) -> String {
        self.git(&self.work_tree(), &["rev-parse", "HEAD"])
    }

    /// A daemon whose generic source `git` runs `deploy` on every delivery.
    fn daemon(&self) -> Daemon {
        Daemon::start(&format!(
            r#"
sources:
  git:
    provider: generic
    auth: none
programs:
  deploy:
    command: handlers/deploy.sh
    params: [ref, repo]
    timeout: 1m
    env:
      DEPLOY_DIR: {dir}
      DEPLOY_BRANCH: main
      HOME: {home}
      GIT_CONFIG_NOSYSTEM: "1"
mappings:
  git:
    default:
      params:
        ref: payload.ref
        repo: payload.repo
      rules:
        - run: deploy
"#,
            dir = yaml_str(self.work_tree().to_str().unwrap()),
            home = yaml_str(self.home().to_str().unwrap()),
        ))
    }
}

#[test]
fn deploy_fast_forwards_the_work_tree_to_the_pushed_commit() {
    let repos = Repos::new();
    let before = repos.head();
    let new = repos.commit("app.txt", "v2\n", "v2");
    repos.git(&repos.seed(), &["push", "--quiet", "origin", "main"]);
    assert_ne!(repos.head(), new);

    let d = repos.daemon();
    let task = run_one(&d, "git", &json!({"ref": "refs/heads/main", "repo": "acme/app"}));
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["exit_code"], 0);
    assert_eq!(
        task["argv"],
        json!([
            d.path("handlers/deploy.sh").display().to_string(),
            "--ref=refs/heads/main",
            "--repo=acme/app"
        ])
    );
    let out = stdout(&task);
    let dir = repos.work_tree().display().to_string();
    assert!(
        out.starts_with(&format!("deploying acme/app refs/heads/main into {dir}\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("Updating {}..{}\nFast-forward\n", &before[..7], &new[..7])),
        "{out}"
    );
    assert!(out.ends_with(&format!("HEAD is now {new}\n")), "{out}");

    assert_eq!(repos.head(), new);
    assert_eq!(
        std::fs::read_to_string(repos.work_tree().join("app.txt")).unwrap(),
        "v2\n"
    );
    assert_eq!(repos.git(&repos.work_tree(), &["status", "--porcelain"]), "");
}

#[test]
fn deploy_skips_a_push_to_another_branch_and_leaves_head_alone() {
    let repos = Repos::new();
    let before = repos.head();
    repos.commit("app.txt", "feature\n", "feature work");
    repos.git(&repos.seed(), &["push", "--quiet", "origin", "HEAD:refs/heads/feature"]);

    let d = repos.daemon();
    let task = run_one(&d, "git", &json!({"ref": "refs/heads/feature", "repo": "acme/app"}));
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["exit_code"], 0);
    assert_eq!(stdout(&task), "skipping refs/heads/feature: not refs/heads/main\n");
    assert_eq!(stderr(&task), "");
    assert_eq!(repos.head(), before);
    assert_eq!(
        std::fs::read_to_string(repos.work_tree().join("app.txt")).unwrap(),
        "v1\n"
    );
}

// ---------------------------------------------------------------- notify.py

const NOTIFY_CONFIG: &str = r#"
sources:
  hostile:
    provider: generic
    auth: none
programs:
  notify:
    command: [python3, handlers/notify.py]
    args: ["--event_type={source}:{event}"]
    params: [repo, ref, author]
mappings:
  hostile:
    default:
      params:
        repo: payload.repo
        ref: payload.ref
        author: payload.author
      rules:
        - run: notify
"#;

/// Values a shell or a naive argument parser would mangle reach notify.py verbatim.
fn notify_passes_hostile_values_verbatim(d: Daemon) {
    let pwned = d.path("pwned");
    let repo = format!("a b; $(touch {}) \"q\" `touch {0}` 中文", pwned.display());
    let author = "--event_type=spoofed\n第二行 \\ 'x' -h";
    let body = json!({"repo": repo, "ref": "--help", "author": author, "zeta": 1, "alpha": [1]});
    let task = run_one(&d, "hostile", &body);
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["exit_code"], 0);
    assert_eq!(
        task["argv"],
        json!([
            // Only the command itself is resolved; the script is found from
            // the working dir, the config's directory.
            "python3",
            "handlers/notify.py",
            "--event_type=hostile:default",
            format!("--repo={repo}"),
            "--ref=--help",
            format!("--author={author}"),
        ])
    );
    let out = stdout(&task);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("中文"), "not written as UTF-8: {out}");
    let seen: Value = serde_json::from_str(out).unwrap();
    assert_eq!(
        seen,
        json!({
            "event_type": "hostile:default",
            "repo": repo,
            "ref": "--help",
            "author": author,
            "body_keys": ["alpha", "author", "ref", "repo", "zeta"],
        })
    );
    assert_eq!(stderr(&task), "");
    assert!(!pwned.exists(), "a value was run by a shell");
}

#[test]
fn notify_gets_hostile_and_chinese_values_verbatim() {
    notify_passes_hostile_values_verbatim(Daemon::start(NOTIFY_CONFIG));
}

#[test]
fn notify_gets_chinese_values_verbatim_under_the_c_locale() {
    notify_passes_hostile_values_verbatim(Daemon::with(NOTIFY_CONFIG).env("LANG", "C").env("LC_ALL", "C").start());
}

// ------------------------------------------------------ the shipped config

#[test]
fn shipped_config_runs_notify_and_log_event_for_a_github_push() {
    let config = std::fs::read_to_string(Path::new(ROOT).join("webhook.yaml")).unwrap();
    let secret = "shipped-config-test-secret";
    let d = Daemon::with(&config).env("GITHUB_WEBHOOK_SECRET", secret).start();
    let body = fixture("github/push.json");
    let sig = format!("sha256={}", hmac_sha256_hex(secret, &body));
    let r = d.post_json(
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Delivery", "d-1"),
        ],
        &body,
    );
    let ids = Daemon::task_ids(&r);
    let programs: Vec<Value> = r.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["program"].clone())
        .collect();
    // Not acme/* on main: no deploy; `push` runs notify, `"*"` runs log-event.
    assert_eq!(programs, ["notify", "log-event"]);

    let notify = d.wait_task(&ids[0]);
    assert_eq!(notify["status"], "succeeded", "{notify}");
    let payload: Value = serde_json::from_slice(&body).unwrap();
    let mut keys: Vec<&String> = payload.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        serde_json::from_str::<Value>(stdout(&notify)).unwrap(),
        json!({
            "event_type": "github:push",
            "repo": "Codertocat/Hello-World",
            "ref": "refs/heads/master",
            "author": "Codertocat",
            "body_keys": keys,
        })
    );

    let log = d.wait_task(&ids[1]);
    assert_eq!(log["status"], "succeeded", "{log}");
    assert_eq!(
        stdout(&log),
        format!(
            "source=github event=push task={} delivery=d-1\nstdin: {} bytes\n",
            ids[1],
            body.len()
        )
    );
}

// ---------------------------------------------- a local bot-API receiver

/// One HTTP request as the receiver read it.
#[derive(Debug)]
struct Captured {
    method: String,
    path: String,
    /// The query string exactly as sent (still percent-encoded).
    raw_query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn query(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.raw_query.as_bytes()).into_owned().collect()
    }
    /// A query parameter's value as sent, before percent-decoding.
    fn raw_param(&self, name: &str) -> Option<&str> {
        self.raw_query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 answering every POST with `reply`.
struct Receiver {
    base: String,
    requests: mpsc::Receiver<Captured>,
}

impl Receiver {
    fn start(reply: &'static str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(request) = read_request(&mut stream) else {
                    continue;
                };
                let gone = tx.send(request).is_err();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                if gone {
                    break;
                }
            }
        });
        Receiver { base, requests }
    }

    /// The one request the handler sent (it has finished, so it was sent already).
    fn only_request(&self) -> Captured {
        let request = self
            .requests
            .recv_timeout(Duration::from_secs(5))
            .expect("the handler sent no request");
        assert!(
            self.requests.try_recv().is_err(),
            "the handler sent more than one request"
        );
        request
    }
}

fn read_request(stream: &mut TcpStream) -> std::io::Result<Captured> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed inside the head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some("HTTP/1.1"), None) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return Err(bad("not an HTTP/1.1 request line"));
    };
    let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| bad(l))
        })
        .collect::<Result<_, _>>()?;
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| bad("no Content-Length"))?;
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed inside the body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Captured {
        method: method.to_string(),
        path: path.to_string(),
        raw_query: raw_query.to_string(),
        headers,
        body,
    })
}

fn hmac_sha256_base64(key: &[u8], message: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Both services refuse timestamps more than an hour off; ours must be "now".
fn assert_recent(what: &str, secs: f64) {
    let now = unix_now().as_secs_f64();
    assert!((now - secs).abs() < 300.0, "{what} {secs} is not now ({now})");
}

/// A generic source `repo` whose deliveries run `program` with every param below.
fn bot_config(program: &str, command: &str, env: &[(&str, String)]) -> String {
    let env: String = env
        .iter()
        .map(|(k, v)| format!("      {k}: {}\n", yaml_str(v)))
        .collect();
    format!(
        r#"
sources:
  repo:
    provider: generic
    auth: none
programs:
  {program}:
    command: {command}
    args: ["--event_type={{source}}:{{event}}"]
    params: [title, text, repo, ref, url]
    timeout: 30s
    env:
{env}
mappings:
  repo:
    default:
      params:
        title: payload.title
        text: payload.head_commit.message
        repo: payload.repository.full_name
        ref: payload.ref
        url: payload.compare
      rules:
        - run: {program}
"#
    )
}

const TITLE: &str = "部署完成：acme/app";
const MESSAGE: &str = "修复登录 <at id=all></at> & 中文";

fn push_body() -> Value {
    json!({
        "title": TITLE,
        "ref": "refs/heads/main",
        "repository": {"full_name": "acme/app"},
        "head_commit": {"message": MESSAGE},
        "compare": "https://git.example/acme/app/compare/a1...b2",
    })
}

// ---------------------------------------------------------- feishu-notify.py

const FEISHU_SECRET: &str = "feishu-test-secret-7Qb";

fn feishu_daemon(receiver: &Receiver) -> Daemon {
    Daemon::start(&bot_config(
        "feishu",
        "handlers/feishu-notify.py",
        &[
            (
                "FEISHU_WEBHOOK_URL",
                format!("{}/open-apis/bot/v2/hook/test", receiver.base),
            ),
            ("FEISHU_SECRET", FEISHU_SECRET.to_string()),
        ],
    ))
}

#[test]
fn feishu_posts_a_signed_card_with_the_repo_and_chinese_text() {
    let receiver = Receiver::start(r#"{"code":0,"msg":"success"}"#);
    let d = feishu_daemon(&receiver);
    let task = run_one(&d, "repo", &push_body());
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["exit_code"], 0);
    assert_eq!(stdout(&task), "feishu: sent\n");
    assert_eq!(stderr(&task), "");

    let req = receiver.only_request();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/open-apis/bot/v2/hook/test");
    assert_eq!(req.raw_query, "");
    assert_eq!(req.header("Content-Type"), Some("application/json; charset=utf-8"));
    let body = req.json();
    // Feishu: `timestamp` in seconds (a string) and `sign` = base64(HMAC-SHA256),
    // keyed with "timestamp\nsecret", over an empty message.
    let timestamp = body["timestamp"].as_str().expect("timestamp is a string");
    let secs: u64 = timestamp.parse().unwrap();
    assert_recent("timestamp", secs as f64);
    let sign = hmac_sha256_base64(format!("{timestamp}\n{FEISHU_SECRET}").as_bytes(), b"");
    assert_eq!(body["sign"], sign);
    assert_eq!(
        body,
        json!({
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": true},
                "header": {"title": {"tag": "plain_text", "content": TITLE}, "template": "blue"},
                "elements": [
                    {"tag": "div", "text": {"tag": "lark_md", "content":
                        "**repo**: acme/app\n**ref**: refs/heads/main\n**event**: repo:default\n\
                         **text**: 修复登录 &lt;at id=all&gt;&lt;/at&gt; &amp; 中文"}},
                    {"tag": "action", "actions": [{
                        "tag": "button", "type": "primary",
                        "text": {"tag": "plain_text", "content": "Open"},
                        "url": "https://git.example/acme/app/compare/a1...b2"}]},
                ],
            },
            "timestamp": timestamp,
            "sign": sign,
        })
    );
    // The raw body is UTF-8 text, not \u escapes.
    assert!(String::from_utf8(req.body).unwrap().contains(TITLE));
    assert!(
        !task.to_string().contains(FEISHU_SECRET),
        "the secret is shown in the task"
    );
    assert!(!d.logs().contains(FEISHU_SECRET), "the secret reached the log");
}

#[test]
fn feishu_error_code_fails_the_task_with_exit_code_1() {
    let receiver = Receiver::start(r#"{"code":19021,"msg":"sign match fail"}"#);
    let d = feishu_daemon(&receiver);
    let task = run_one(&d, "repo", &push_body());
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["exit_code"], 1);
    assert_eq!(task["error"], Value::Null);
    assert_eq!(stdout(&task), "");
    assert_eq!(
        stderr(&task),
        "feishu-notify: HTTP 200: {\"code\":19021,\"msg\":\"sign match fail\"}\n"
    );
    receiver.only_request();
}

// -------------------------------------------------------- dingtalk-notify.py

const DINGTALK_SECRET: &str = "SECdingtalk0test0secret0b81f";

fn dingtalk_daemon(receiver: &Receiver) -> Daemon {
    Daemon::start(&bot_config(
        "dingtalk",
        "handlers/dingtalk-notify.py",
        &[
            (
                "DINGTALK_WEBHOOK_URL",
                format!("{}/robot/send?access_token=abc", receiver.base),
            ),
            ("DINGTALK_SECRET", DINGTALK_SECRET.to_string()),
        ],
    ))
}

#[test]
fn dingtalk_posts_signed_markdown_with_the_repo_and_chinese_text() {
    let receiver = Receiver::start(r#"{"errcode":0,"errmsg":"ok"}"#);
    let d = dingtalk_daemon(&receiver);
    let task = run_one(&d, "repo", &push_body());
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["exit_code"], 0);
    assert_eq!(stdout(&task), "dingtalk: sent\n");
    assert_eq!(stderr(&task), "");

    let req = receiver.only_request();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/robot/send");
    assert_eq!(req.header("Content-Type"), Some("application/json; charset=utf-8"));
    // DingTalk: `timestamp` in milliseconds and `sign` = urlencode(base64(HMAC-SHA256)),
    // keyed with the secret, over "timestamp\nsecret".
    let query = req.query();
    let names: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["access_token", "timestamp", "sign"], "{}", req.raw_query);
    assert_eq!(query[0].1, "abc");
    let timestamp = &query[1].1;
    let millis: u64 = timestamp.parse().unwrap();
    assert_recent("timestamp", millis as f64 / 1000.0);
    assert_eq!(timestamp.len(), 13);
    let sign = hmac_sha256_base64(
        DINGTALK_SECRET.as_bytes(),
        format!("{timestamp}\n{DINGTALK_SECRET}").as_bytes(),
    );
    assert_eq!(query[2].1, sign);
    // base64's `+`, `/` and `=` must arrive percent-encoded, or `+` would decode as a space.
    let encoded: String = form_urlencoded::byte_serialize(sign.as_bytes()).collect();
    assert_eq!(req.raw_param("sign"), Some(encoded.as_str()));

    assert_eq!(
        req.json(),
        json!({
            "msgtype": "markdown",
            "markdown": {
                "title": TITLE,
                "text": format!(
                    "### {TITLE}\n\n- **repo**: acme/app\n- **ref**: refs/heads/main\n\
                     - **event**: repo:default\n- **text**: {MESSAGE}\n\n\
                     [Open](https://git.example/acme/app/compare/a1...b2)"
                ),
            },
        })
    );
    assert!(String::from_utf8(req.body).unwrap().contains(TITLE));
    assert!(
        !task.to_string().contains(DINGTALK_SECRET),
        "the secret is shown in the task"
    );
    assert!(!d.logs().contains(DINGTALK_SECRET), "the secret reached the log");
}

#[test]
fn dingtalk_error_code_fails_the_task_with_exit_code_1() {
    let receiver = Receiver::start(r#"{"errcode":310000,"errmsg":"sign not match"}"#);
    let d = dingtalk_daemon(&receiver);
    let task = run_one(&d, "repo", &push_body());
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["exit_code"], 1);
    assert_eq!(stdout(&task), "");
    assert_eq!(
        stderr(&task),
        "dingtalk-notify: HTTP 200: {\"errcode\":310000,\"errmsg\":\"sign not match\"}\n"
    );
    receiver.only_request();
}

/// A webhook URL the request cannot be made with (a comment after it in an
/// EnvironmentFile, a bad port) fails the task without its secret in the
/// task's output, which the API, the dashboard and `?wait=` answers show.
#[test]
fn feishu_and_dingtalk_never_repeat_a_bad_webhook_url() {
    for (program, var) in [("feishu", "FEISHU_WEBHOOK_URL"), ("dingtalk", "DINGTALK_WEBHOOK_URL")] {
        for (url, code) in [
            ("http://127.0.0.1:9/robot/send?access_token=BOTSECRET1 # prod bot", 2),
            ("http://127.0.0.1:9x9/hook/BOTSECRET1", 1),
            ("http://127.0.0.1:9/hook/BOTSECRET1\t", 2),
        ] {
            let d = Daemon::start(&bot_config(
                program,
                &format!("handlers/{program}-notify.py"),
                &[(var, url.to_string())],
            ));
            let task = run_one(&d, "repo", &push_body());
            assert_eq!(task["exit_code"], code, "{program} {url:?}: {task}");
            assert!(!task.to_string().contains("BOTSECRET1"), "{program}: {task}");
            assert!(!d.logs().contains("BOTSECRET1"), "{program}: {}", d.logs());
            assert!(stderr(&task).starts_with(&format!("{program}-notify: ")), "{task}");
        }
    }
}
