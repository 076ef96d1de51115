//! What the documentation claims, checked where a test can check it: every
//! config key, route, command and flag is documented; every relative link
//! resolves; the README's quick start and "Try it" walk-through work as
//! written; and the behaviours the docs promise (debug logs of each rule's
//! verdict, no secret in any log, interrupted tasks counted and reported,
//! the callback `webhook-id`, how the client finds the daemon, `raw_event`,
//! the `?wait=` record, `explain` order) are what the daemon does.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

// ---------------------------------------------------------------- helpers

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// README.md and every `docs/*.md`.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![Path::new(ROOT).join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The text of a Markdown file without its fenced code blocks.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The fenced code blocks of `text`, as (language, body).
fn code_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some((lang.trim().to_string(), String::new())),
            }
            continue;
        }
        if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    blocks
}

/// The part of `text` from the heading `heading` to the next heading of the
/// same or a higher level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading `{heading}`"))
        + 1;
    let level = heading.chars().take_while(|c| *c == '#').count();
    let rest = &text[start + heading.len()..];
    let mut offset = 0;
    let mut fenced = false;
    for line in rest.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !fenced && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            break;
        }
        offset += line.len();
    }
    &text[start..start + heading.len() + offset]
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor the headings of a Markdown file make (duplicates get `-1`, `-2`, ...).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for line in prose(text).lines() {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes == 0 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = seen.entry(base.clone()).or_default();
        out.insert(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
        *n += 1;
    }
    out
}

/// Runs `hookrunner <args>` with none of its environment variables set.
fn hookrunner(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("HOOKRUNNER_URL")
        .env_remove("HOOKRUNNER_TOKEN")
        .env_remove("HOOKRUNNER_CONFIG")
        .env_remove("HOOKRUNNER_LOG_FORMAT")
        .stdin(Stdio::null());
    cmd
}

/// (exit code, stdout, stderr)
fn output(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.output().expect("run hookrunner");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One POST a callback receiver got.
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A local callback receiver answering 200; returns its base URL
/// (`http://127.0.0.1:<port>`) and what it receives.
fn receiver() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).is_err() {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx.send(Received { headers, body }).is_err() {
                break;
            }
        }
    });
    (base, rx)
}

// ------------------------------------------------ the reference is complete

/// The YAML keys `src/config/raw.rs` accepts: the fields of its structs
/// (with `#[serde(rename = "...")]` applied).
fn config_keys() -> BTreeSet<String> {
    let text = read("src/config/raw.rs");
    let mut keys = BTreeSet::new();
    let mut in_struct = false;
    let mut rename: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("pub struct Raw") && t.ends_with('{') {
            in_struct = true;
            continue;
        }
        if !in_struct {
            continue;
        }
        if t == "}" {
            in_struct = false;
            continue;
        }
        if let Some(r) = t.split("rename = \"").nth(1) {
            rename = r.split('"').next().map(str::to_string);
            continue;
        }
        if let Some(field) = t.strip_prefix("pub ").and_then(|f| f.split(':').next()) {
            keys.insert(rename.take().unwrap_or_else(|| field.trim().to_string()));
        }
    }
    keys
}

#[test]
fn every_config_key_is_in_the_configuration_reference() {
    let keys = config_keys();
    assert!(keys.len() > 40, "the parse of raw.rs found only {keys:?}");
    let doc = read("docs/CONFIGURATION.md");
    let missing: Vec<&String> = keys.iter().filter(|k| !doc.contains(&format!("`{k}`"))).collect();
    assert!(
        missing.is_empty(),
        "keys that src/config/raw.rs accepts but docs/CONFIGURATION.md does not name: {missing:?}"
    );
}

/// The routes `http::configure` registers, as `METHOD /path`.
fn routes() -> Vec<String> {
    let text = read("src/http/mod.rs");
    let start = text.find("pub fn configure").expect("http::configure");
    let body = &text[start..start + text[start..].find("\n}\n").unwrap()];
    let mut routes = Vec::new();
    for service in body.split(".service(").skip(1) {
        let quoted = |s: &str| s.split('"').nth(1).unwrap().to_string();
        if service.starts_with("hooks::scope()") {
            // The hooks: every path under `server.prefix` (`/hooks` by default).
            routes.push("POST /hooks/{source}".to_string());
            continue;
        }
        if let Some(rest) = service.split("web::scope(").nth(1) {
            // Everything under the scope is one delivery endpoint.
            routes.push(format!("POST {}/{{source}}", quoted(rest)));
            continue;
        }
        let path = quoted(service.split("web::resource(").nth(1).expect("a resource"));
        for method in ["get", "post", "put", "delete", "patch"] {
            if service.contains(&format!("web::{method}()")) {
                routes.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    routes
}

#[test]
fn every_route_is_in_the_api_reference() {
    let routes = routes();
    assert!(routes.len() >= 13, "{routes:?}");
    let doc = read("docs/API.md");
    let missing: Vec<&String> = routes.iter().filter(|r| !doc.contains(&format!("`{r}`"))).collect();
    assert!(missing.is_empty(), "routes that docs/API.md does not name: {missing:?}");
}

/// The commands a `--help` text lists.
fn commands_of(help: &str) -> Vec<String> {
    help.split("Commands:")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .filter(|c| c != "help")
                .collect()
        })
        .unwrap_or_default()
}

/// The long flags a `--help` text lists.
fn flags_of(help: &str) -> Vec<String> {
    help.lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|f| f.trim_end_matches(',').to_string())
        .collect()
}

#[test]
fn every_command_and_flag_is_in_the_cli_reference() {
    let doc = read("docs/CLI.md");
    let (_, top, _) = output(hookrunner(&["--help"]));
    let commands = commands_of(&top);
    assert!(commands.len() >= 15, "{top}");
    let mut missing = Vec::new();
    let mut flags: Vec<(String, String)> = flags_of(&top).into_iter().map(|f| (String::new(), f)).collect();
    for command in &commands {
        if !doc.contains(&format!("`hookrunner {command}")) {
            missing.push(format!("command `{command}`"));
        }
        let (_, help, _) = output(hookrunner(&[command, "--help"]));
        let subcommands = commands_of(&help);
        if command == "hooks" {
            // `hookrunner hooks` is described in docs/HOOKS.md; CLI.md names its commands.
            for sub in subcommands {
                if !doc.contains(&sub) {
                    missing.push(format!("`hooks {sub}`"));
                }
            }
            continue;
        }
        for f in flags_of(&help) {
            flags.push((command.clone(), f));
        }
        for sub in subcommands {
            if !doc.contains(&format!("`hookrunner {command} {sub}")) {
                missing.push(format!("command `{command} {sub}`"));
            }
            let (_, help, _) = output(hookrunner(&[command, &sub, "--help"]));
            for f in flags_of(&help) {
                flags.push((format!("{command} {sub}"), f));
            }
        }
    }
    for (command, flag) in flags {
        if !doc.contains(&format!("`{flag}")) {
            missing.push(format!("flag `{flag}` of `{command}`"));
        }
    }
    assert!(missing.is_empty(), "not in docs/CLI.md: {missing:?}");
}

#[test]
fn every_relative_link_points_at_a_file_and_heading_that_exist() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap();
        let name = file.strip_prefix(ROOT).unwrap().display().to_string();
        let body = prose(&text);
        for piece in body.split("](").skip(1) {
            let Some(end) = piece.find(')') else { continue };
            let target = piece[..end].trim();
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target, None),
            };
            let resolved = if path.is_empty() { file.clone() } else { dir.join(path) };
            if !resolved.exists() {
                broken.push(format!("{name}: `{target}`: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                if resolved.extension().is_some_and(|e| e == "md") {
                    let target_text = std::fs::read_to_string(&resolved).unwrap();
                    if !anchors(&target_text).contains(anchor) {
                        broken.push(format!("{name}: `{target}`: no such heading"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_links_every_document() {
    let readme = prose(&read("README.md"));
    let unlinked: Vec<String> = markdown_files()
        .into_iter()
        .skip(1)
        .map(|p| p.strip_prefix(ROOT).unwrap().display().to_string())
        .filter(|doc| !readme.contains(&format!("]({doc})")) && !readme.contains(&format!("]({doc}#")))
        .collect();
    assert!(unlinked.is_empty(), "documents the README does not link: {unlinked:?}");
}

#[test]
fn the_testing_page_names_every_test_file() {
    let testing = read("docs/TESTING.md");
    let mut unnamed: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("tests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rs"))
        .map(|n| format!("tests/{n}"))
        .filter(|f| !testing.contains(&format!("`{f}`")))
        .collect();
    unnamed.sort();
    assert!(
        unnamed.is_empty(),
        "test files docs/TESTING.md does not name: {unnamed:?}"
    );
}

// ------------------------------------------------- the README, as written

/// The commands of a shell block: each line without its `# comment`.
fn commands_in(block: &str) -> Vec<String> {
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_quick_start_runs_the_daemon_and_the_tests_ci_runs() {
    let readme = read("README.md");
    let quick = section(&readme, "## Quick start");
    let block = code_blocks(quick)
        .into_iter()
        .find(|(lang, _)| lang == "sh")
        .expect("a sh block in the quick start")
        .1;
    let commands = commands_in(&block);
    assert_eq!(commands.len(), 2, "two commands: {commands:?}");

    // The tests: exactly what CI runs (besides its style checks, which TESTING.md names).
    let ci: Vec<String> = read(".ci/run")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cargo ") && !l.contains("--version"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        ci,
        [
            "cargo fmt --check",
            "cargo clippy --all-targets --quiet -- -D warnings",
            "cargo test"
        ],
        ".ci/run checks the style and runs the tests with"
    );
    let testing = read("docs/TESTING.md");
    assert!(testing.contains("`cargo fmt --check`, `cargo clippy --all-targets -- -D warnings`"));
    let ci = &ci[2..];
    assert_eq!(commands[1], ci[0]);
    assert!(quick.contains("first build takes a few minutes"), "{quick}");

    // The daemon: `cargo run` of the default binary without a command (serve),
    // on ./webhook.yaml, at the address the comment names.
    assert_eq!(commands[0], "cargo run --release");
    assert!(read("Cargo.toml").contains("default-run = \"hookrunner\""));
    let comment = block.lines().next().unwrap();
    let addr = comment
        .split("http://")
        .nth(1)
        .expect("the address in the comment")
        .trim();
    let shipped = read("webhook.yaml");
    assert!(
        shipped.contains(&format!("listen: {addr} ")),
        "webhook.yaml does not listen on {addr}"
    );

    // No command, a webhook.yaml in the current directory: the daemon, with
    // its state in data/hookrunner.db next to the config.
    let dir = tempfile::tempdir().unwrap();
    install_handlers(dir.path());
    std::fs::write(dir.path().join("webhook.yaml"), &shipped).unwrap();
    let mut child = hookrunner(&["--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("STATE_DIRECTORY")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.trim().to_string());
            }
        }
    });
    let listening = rx.recv_timeout(Duration::from_secs(20));
    let health = listening
        .as_ref()
        .map(|a| request("GET", &format!("http://{a}/healthz"), &[], None).status);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health, Ok(200), "the daemon did not serve");
    assert!(dir.path().join("data/hookrunner.db").exists());
}

#[test]
fn the_try_it_walk_through_works_as_written() {
    let readme = read("README.md");
    let try_it = section(&readme, "### Try it");
    let blocks = code_blocks(try_it);
    let script = &blocks[0].1;
    let body = script
        .split("BODY='")
        .nth(1)
        .and_then(|b| b.split('\'').next())
        .expect("BODY='...'");
    let secret = script
        .split("-hmac ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("-hmac <secret>");
    let path = script
        .split("localhost:9000")
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .expect("the URL");
    let sig = format!("sha256={}", hmac_sha256_hex(secret, body.as_bytes()));
    let mut headers: Vec<(String, String)> = Vec::new();
    for h in script.split("-H ").skip(1) {
        let quote = h.chars().next().unwrap();
        let value = h[1..].split(quote).next().unwrap();
        let (k, v) = value.split_once(": ").unwrap();
        headers.push((k.to_string(), v.replace("sha256=$SIG", &sig)));
    }
    let header_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let d = Daemon::start(&read("webhook.yaml"));
    let answer = d.post(path, &header_refs, body.as_bytes());
    assert_eq!(answer.status, 202, "{}", answer.text);
    let shown: Value = serde_json::from_str(&blocks[1].1).expect("the 202 answer as JSON");
    let got = answer.json();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got), keys(&shown), "{}", answer.text);
    let programs = |v: &Value| -> Vec<Value> {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["program"].clone())
            .collect()
    };
    assert_eq!(programs(&got), programs(&shown));
    assert_eq!(got["delivery_id"], shown["delivery_id"]);
    assert!(answer.header("X-Request-Id").is_some());

    // The task as shown: the same fields in the same order, and what the handler printed.
    let notify = got["tasks"][0]["id"].as_str().unwrap().to_string();
    let task = d.wait_task(&notify);
    let shown_task: Value = serde_json::from_str(&blocks[3].1).expect("the task as JSON");
    assert_eq!(keys(&task), keys(&shown_task));
    for field in [
        "source",
        "event",
        "program",
        "params",
        "argv",
        "status",
        "exit_code",
        "error",
        "stdout",
        "stderr",
        "attempt",
        "callbacks",
        "node",
    ] {
        assert_eq!(task[field], shown_task[field], "`{field}`");
    }
    let raw = d.get(&format!("/tasks/{notify}")).text;
    assert!(
        raw.find("\"ref\"") < raw.find("\"repo\"") && raw.find("\"repo\"") < raw.find("\"author\""),
        "params in mapping order: {raw}"
    );

    // The same request again: a duplicate.
    let again = d.post(path, &header_refs, body.as_bytes());
    assert_eq!(again.status, 200, "{}", again.text);
    let shown_dup: Value = serde_json::from_str(&blocks[4].1).expect("the duplicate answer as JSON");
    assert_eq!(keys(&again.json()), keys(&shown_dup));
    assert_eq!(again.json()["message"], shown_dup["message"]);

    // `hookrunner delivery 0f3a5c1e`: an id shortened as the tables show it.
    let (code, out, err) = output(hookrunner(&["delivery", "0f3a5c1e", "--url", &d.url("")]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("outcome:      accepted"), "{out}");
}

// ------------------------------------------------------- logs and callbacks

#[test]
fn rust_log_debug_logs_each_rules_verdict() {
    let d = Daemon::with(
        r#"
sources:
  a: {provider: generic, auth: none}
programs:
  work: {command: handlers/log-event.sh}
mappings:
  a:
    default:
      params: {kind: payload.kind}
      rules:
        - {if: 'kind == "deploy"', run: work}
        - run: work
"#,
    )
    .env("RUST_LOG", "debug")
    .start();
    let r = d.post_json("/hooks/a", &[], br#"{"kind":"test"}"#);
    assert_eq!(r.status, 202, "{}", r.text);
    eventually("the verdicts in the log", Duration::from_secs(5), || {
        d.logs().matches("rule judged").count() >= 2
    });
    let logs = d.logs();
    let judged: Vec<&str> = logs.lines().filter(|l| l.contains("rule judged")).collect();
    assert_eq!(judged.len(), 2, "{logs}");
    assert!(
        judged[0].contains(" DEBUG ")
            && judged[0].contains("mapping=default rule=0")
            && judged[0].contains("result=not matched"),
        "{}",
        judged[0]
    );
    assert!(
        judged[1].contains("rule=1")
            && judged[1].contains("result=matched")
            && judged[1].contains("condition=\"(always)\""),
        "{}",
        judged[1]
    );
}

#[test]
fn the_callback_webhook_id_is_msg_task_id_n_and_no_secret_reaches_the_log() {
    const SOURCE_SECRET: &str = "source-s3cret-value";
    const CALLBACK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const PASSWORD: &str = "cb-pa55word";
    const TOKEN: &str = "cb-t0ken";
    let (base, rx) = receiver();
    let url = base.replace("http://", &format!("http://user:{PASSWORD}@")) + &format!("/done?token={TOKEN}");
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        format!("http://user:{PASSWORD}@127.0.0.1:{port}/gone?token={TOKEN}")
    };
    let d = Daemon::with(&format!(
        r#"
sources:
  a:
    provider: generic
    auth: {{hmac: sha256, secret: {SOURCE_SECRET}, header: X-Sig, prefix: "sha256="}}
programs:
  work:
    command: handlers/log-event.sh
    on_finish:
      - {{url: "{url}", secret: {CALLBACK_SECRET}}}
      - {{url: "{url}"}}
      - {{url: "{dead}", attempts: 1}}
mappings:
  a:
    default: {{rules: [{{run: work}}]}}
"#
    ))
    // A library's own module named at trace does not open it up either.
    .env("RUST_LOG", "trace,ureq::unit=trace,ureq=trace")
    .start();
    let body = br#"{"kind":"x"}"#;
    let sig = format!("sha256={}", hmac_sha256_hex(SOURCE_SECRET, body));
    let r = d.post_json(
        "/hooks/a",
        &[("X-Sig", &sig), ("Authorization", "Bearer api-t0ken")],
        body,
    );
    let id = Daemon::task_ids(&r).remove(0);
    assert_eq!(id.len(), 36, "a hyphenated UUID: {id}");
    let got: Vec<Received> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).expect("a callback"))
        .collect();
    let mut ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort();
    assert_eq!(ids, [format!("msg_{id}_0"), format!("msg_{id}_1")]);
    for r in &got {
        assert_eq!(r.json()["task"]["id"], id.as_str());
    }
    let signature = got
        .iter()
        .map(|r| r.header("webhook-signature").to_string())
        .find(|s| !s.is_empty())
        .expect("the signed callback");
    eventually("the failed callback", Duration::from_secs(10), || {
        d.get(&format!("/tasks/{id}")).json()["callbacks"][2]["status"] == "failed"
    });
    let task = d.get(&format!("/tasks/{id}")).json();
    assert_eq!(
        task["callbacks"][0]["url"],
        format!("{}/done?token=***", base.replace("http://", "http://user:***@"))
    );

    let logs = d.logs_with("completion callback failed");
    assert!(logs.contains("http://user:***@127.0.0.1:"), "{logs}");
    let sig_hex = sig.trim_start_matches("sha256=");
    let signature_b64 = signature.trim_start_matches("v1,");
    for secret in [
        SOURCE_SECRET,
        sig_hex,
        CALLBACK_SECRET,
        PASSWORD,
        TOKEN,
        signature_b64,
        "api-t0ken",
    ] {
        assert!(!logs.contains(secret), "`{secret}` is in the log:\n{logs}");
    }
}

#[test]
fn a_task_interrupted_at_start_is_counted_and_reported() {
    let (base, rx) = receiver();
    let mut d = Daemon::start(&format!(
        r#"
state:
  path: $DIR/state/hookrunner.db
sources:
  a: {{provider: generic, auth: none}}
programs:
  slow:
    command: handlers/sleepy.sh
    env: {{OUT_FILE: $DIR/runs, SLEEP: "5"}}
    on_finish:
      - {{url: "{base}/done", when: [interrupted]}}
mappings:
  a:
    default: {{rules: [{{run: slow}}]}}
"#
    ));
    let id = Daemon::task_ids(&d.post_json("/hooks/a", &[], b"{}")).remove(0);
    eventually("the handler to start", Duration::from_secs(10), || {
        std::fs::read_to_string(d.path("runs")).is_ok_and(|r| r.contains(&format!("start {id}")))
    });
    d.kill9();
    d.restart();

    let callback = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the interrupted callback");
    assert_eq!(callback.json()["type"], "task.interrupted");
    assert_eq!(callback.header("webhook-id"), format!("msg_{id}_0"));
    let task = d.get(&format!("/tasks/{id}")).json();
    assert_eq!(task["status"], "interrupted");
    assert_eq!(task["error"], "daemon stopped while running");
    assert_eq!(task["exit_code"], Value::Null);
    let metrics = d.get("/metrics").text;
    assert!(
        metrics.contains("hookrunner_tasks_total{program=\"slow\",status=\"interrupted\"} 1"),
        "{metrics}"
    );
    let logs = d.logs_with("task interrupted");
    assert!(
        logs.lines().any(|l| l.contains(" WARN ")
            && l.contains("task interrupted: the daemon stopped while it ran")
            && l.contains(&id)),
        "{logs}"
    );
    assert!(logs.contains("recovered unfinished work from the store"), "{logs}");
    assert!(logs.contains("interrupted=1"), "{logs}");

    // `/readyz` with a store.
    let ready = d.get("/readyz").json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"]["writable"], true);
    assert_eq!(ready["store"]["unreadable_rows"], 0);

    // `hookrunner db check`, line by line.
    assert!(d.terminate().success());
    let (code, out, err) = output(hookrunner(&[
        "db",
        "check",
        "--config",
        d.path("webhook.yaml").to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "integrity: ok");
    assert_eq!(lines[1], "schema version 2 (this hookrunner writes 2)");
    assert_eq!(lines[2], "1 tasks, 1 deliveries");
    assert_eq!(lines[3], "0 unreadable rows");
    assert!(lines[4].ends_with("hookrunner.db: ok"), "{out}");
}

// ------------------------------------------------ records, order, explain

#[test]
fn the_record_keeps_the_raw_event_and_says_202_after_a_wait() {
    let d = Daemon::start(
        r#"
sources:
  gl: {provider: gitlab, token: gl-token}
programs:
  work:
    command: handlers/log-event.sh
    params: [zeta, alpha, mid]
mappings:
  gl:
    push:
      params: {zeta: payload.z, alpha: payload.a, mid: payload.m}
      rules: [{run: work}]
"#,
    );
    let r = d.post_json(
        "/hooks/gl?wait=10s",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "gl-token")],
        br#"{"a": 1, "m": 2, "z": 3}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["finished"], true);
    let record = d.get("/deliveries?limit=1").json()["deliveries"][0].clone();
    assert_eq!(
        (record["event"].as_str(), record["raw_event"].as_str()),
        (Some("push"), Some("Push Hook"))
    );
    assert_eq!(
        (record["outcome"].as_str(), record["status"].as_u64()),
        (Some("accepted"), Some(202))
    );
    // Params in mapping order, in the record and on the task.
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&record["params"]["push"]), ["zeta", "alpha", "mid"]);
    let task = d
        .get(&format!("/tasks/{}", record["task_ids"][0].as_str().unwrap()))
        .json();
    assert_eq!(keys(&task["params"]), ["zeta", "alpha", "mid"]);

    // `/readyz` without a store.
    assert_eq!(d.get("/readyz").json(), json!({"status": "ready", "store": null}));
}

#[test]
fn explain_text_and_json_judge_in_the_same_order_with_params_in_mapping_order() {
    let dir = tempfile::tempdir().unwrap();
    install_handlers(dir.path());
    std::fs::write(
        dir.path().join("webhook.yaml"),
        r#"
sources:
  gh: {provider: github, secret: s}
mappings:
  gh:
    "*":
      params: {zeta: payload.z}
      rules: [{run: log-event}]
    push:
      params: {zeta: payload.z, alpha: payload.a}
      rules:
        - {if: 'alpha == 1', run: log-event}
        - {if: 'alpha == 2', run: log-event}
    push.opened:
      rules: [{run: log-event}]
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("p.json"), r#"{"action": "opened", "a": 1, "z": 9}"#).unwrap();
    let config = dir.path().join("webhook.yaml");
    let payload = dir.path().join("p.json");
    let args = |json: bool| {
        let mut a = vec![
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--source",
            "gh",
            "--event",
            "push",
        ];
        if json {
            a.push("--json");
        }
        a.push(payload.to_str().unwrap());
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |json: bool| {
        let a = args(json);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        output(hookrunner(&refs))
    };
    let (code, text, err) = run(false);
    assert_eq!(code, 0, "{err}");
    let (code, json_text, err) = run(true);
    assert_eq!(code, 0, "{err}");
    let trace: Value = serde_json::from_str(&json_text).unwrap();

    // Judging order: `<event>.<action>`, `<event>`, `*`.
    let json_rules: Vec<String> = trace["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r["mapping"].as_str().unwrap(), r["rule"]))
        .collect();
    assert_eq!(json_rules, ["push.opened 0", "push 0", "push 1", "* 0"]);
    let mut text_rules = Vec::new();
    let mut mapping = String::new();
    for line in text.lines() {
        if let Some(m) = line.strip_prefix("mapping `") {
            mapping = m.trim_end_matches('`').to_string();
        } else if let Some(r) = line.strip_prefix("  rule ") {
            text_rules.push(format!("{mapping} {}", r.split_whitespace().next().unwrap()));
        }
    }
    assert_eq!(text_rules, json_rules, "{text}");
    let param_keys: Vec<&String> = trace["params"]["push"].as_object().unwrap().keys().collect();
    assert_eq!(param_keys, ["zeta", "alpha"]);
    let text_params: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "mapping `push`")
        .filter_map(|l| l.strip_prefix("  param "))
        .take(2)
        .collect();
    assert_eq!(text_params, ["zeta = 9", "alpha = 1"], "{text}");
}

// ------------------------------------------------------ finding the daemon

#[test]
fn client_commands_find_the_daemon_and_say_where_the_address_came_from() {
    let config = "sources:\n  a: {provider: generic, auth: none}\n";
    let d = Daemon::start(config);
    // The daemon's config, naming the address it listens on.
    std::fs::write(
        d.path("webhook.yaml"),
        format!("server:\n  listen: {}\n{config}", d.addr),
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();

    // HOOKRUNNER_CONFIG, from a directory without a webhook.yaml.
    let mut cmd = hookrunner(&["tasks"]);
    cmd.current_dir(elsewhere.path())
        .env("HOOKRUNNER_CONFIG", d.path("webhook.yaml"));
    let (code, out, err) = output(cmd);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ID "), "{out}");

    // ./webhook.yaml.
    let mut cmd = hookrunner(&["tasks", "--json"]);
    cmd.current_dir(d.dir.path());
    let (code, out, err) = output(cmd);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"tasks": [], "next": null})
    );

    // Nothing to find.
    if Path::new("/etc/hookrunner/webhook.yaml").exists() {
        eprintln!("skipped the no-config case: /etc/hookrunner/webhook.yaml exists here");
    } else {
        // Every command that reads a config looks in the same places.
        for args in [&["tasks"][..], &["hooks", "list", "gitlab", "--project", "g/p"]] {
            let mut cmd = hookrunner(args);
            cmd.current_dir(elsewhere.path());
            let (code, _, err) = output(cmd);
            assert_eq!(code, 2, "{args:?}: {err}");
            assert!(
                err.trim().ends_with(
                    "no config found: give --config (or set HOOKRUNNER_CONFIG); looked for `webhook.yaml` and `/etc/hookrunner/webhook.yaml`"
                ),
                "{args:?}: {err}"
            );
        }
    }

    // A daemon that cannot be reached: the error says where the address came from.
    let unreachable = |cmd: Command, origin: &str| {
        let (code, _, err) = output(cmd);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.starts_with("error: cannot reach hookrunner at http://127.0.0.1:1: "),
            "{err}"
        );
        assert!(
            err.trim_end().ends_with(&format!("(the address is from {origin})")),
            "{err}"
        );
    };
    let mut cmd = hookrunner(&["tasks", "--url", "http://127.0.0.1:1"]);
    cmd.current_dir(elsewhere.path());
    unreachable(cmd, "--url");
    let mut cmd = hookrunner(&["tasks"]);
    cmd.current_dir(elsewhere.path()).env("HOOKRUNNER_URL", "127.0.0.1:1");
    unreachable(cmd, "HOOKRUNNER_URL");
    let dead = elsewhere.path().join("dead.yaml");
    std::fs::write(&dead, format!("server:\n  listen: 127.0.0.1:1\n{config}")).unwrap();
    let mut cmd = hookrunner(&["tasks"]);
    cmd.current_dir(elsewhere.path()).env("HOOKRUNNER_CONFIG", &dead);
    unreachable(cmd, &format!("`server.listen` in {}", dead.display()));
}
