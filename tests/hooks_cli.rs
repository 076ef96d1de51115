//! `hookrunner hooks install|list|remove|verify`, run as the real binary
//! against local servers standing in for the GitLab, GitHub and Gitea APIs
//! (their paths, headers, status codes and hook objects as documented).

mod common;
mod stand_in;

use common::BIN;
use serde_json::{json, Value};
use stand_in::{Reply, Req, StandIn};
use std::process::Command;
use std::sync::{Arc, Mutex};

const GITLAB_SECRET: &str = "gl-hook-secret-3Fq9";
const GITHUB_SECRET: &str = "gh-hook-secret-8Kd2";
const GITEA_SECRET: &str = "gitea-hook-secret-1Lm7";
const GL_ADMIN: &str = "glpat-maintainer-Xy12";
const GL_REPORTER: &str = "glpat-reporter-Ab34";
const GH_ADMIN: &str = "ghp_admin_Qr56";
const GH_READ: &str = "ghp_read_St78";
const GT_ADMIN: &str = "gitea_admin_Uv90";
const PUBLIC: &str = "https://hooks.example.com";

/// A token some setups put in the hook's own URL.
const URL_TOKEN: &str = "glWEBHOOKsecret111";

const SECRETS: [&str; 10] = [
    URL_TOKEN,
    GITLAB_SECRET,
    GITHUB_SECRET,
    GITEA_SECRET,
    GL_ADMIN,
    GL_REPORTER,
    GH_ADMIN,
    GH_READ,
    GT_ADMIN,
    "glpat-wrong",
];

const CONFIG: &str = r#"
sources:
  gitlab:
    provider: gitlab
    token: gl-hook-secret-3Fq9
  github:
    provider: github
    secret: gh-hook-secret-8Kd2
  gitea:
    provider: gitea
    secret: gitea-hook-secret-1Lm7
  stripe:
    provider: stripe
    secret: whsec_x
programs:
  log:
    command: [/bin/true]
mappings:
  gitlab:
    push:
      rules: [{run: log}]
    merge_request:
      rules: [{run: log}]
    "Pipeline Hook":
      rules: [{run: log}]
    ping:
      rules: [{run: log}]
  github:
    push:
      rules: [{run: log}]
    pull_request.opened:
      rules: [{run: log}]
  gitea:
    push:
      rules: [{run: log}]
    issues:
      rules: [{run: log}]
"#;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `hookrunner hooks ...` with only the given tokens in its environment,
/// and checks no secret or token shows in what it printed.
fn hooks(dir: &tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Out {
    let config = dir.path().join("webhook.yaml");
    if !config.exists() {
        std::fs::write(&config, CONFIG).unwrap();
    }
    let mut cmd = Command::new(BIN);
    cmd.arg("hooks").args(args).arg("--config").arg(&config);
    for var in [
        "GITLAB_TOKEN",
        "GITHUB_TOKEN",
        "GITEA_TOKEN",
        "FORGEJO_TOKEN",
        "GOGS_TOKEN",
        "HOOKRUNNER_PUBLIC_URL",
        "HOOKRUNNER_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let out = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    for s in SECRETS {
        assert!(
            !out.stdout.contains(s) && !out.stderr.contains(s),
            "{s} was printed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    out
}

fn assert_ends(text: &str, end: &str) {
    assert!(text.ends_with(end), "expected to end with {end:?}:\n{text}");
}

// ------------------------------------------------------------ fake GitLab

#[derive(Default)]
struct Forge {
    hooks: Vec<Value>,
    /// The secret each hook was given (not listed back, as the real APIs do).
    secrets: Vec<(u64, String)>,
    next_id: u64,
    /// Answers used, in order, before the normal ones.
    inject: Vec<Reply>,
}

type State = Arc<Mutex<Forge>>;

fn body_of(req: &Req) -> Value {
    if req.body.is_empty() {
        Value::Null
    } else {
        req.json()
    }
}

fn fake_gitlab() -> (StandIn, State) {
    let state: State = Arc::new(Mutex::new(Forge {
        next_id: 1,
        ..Forge::default()
    }));
    let s = state.clone();
    let server = StandIn::start(move |req: &Req| {
        let mut st = s.lock().unwrap();
        if !st.inject.is_empty() {
            return st.inject.remove(0);
        }
        let role = match req.header("PRIVATE-TOKEN") {
            Some(GL_ADMIN) => "maintainer",
            Some(GL_REPORTER) => "reporter",
            _ => return Reply::json(401, json!({"message": "401 Unauthorized"})),
        };
        let parts: Vec<&str> = req.path.trim_start_matches("/api/v4/").split('/').collect();
        let known = matches!(
            parts.as_slice(),
            ["projects", "7" | "acme%2Fapp", ..] | ["groups", "acme", ..]
        );
        if !known {
            let what = if parts[0] == "groups" { "Group" } else { "Project" };
            return Reply::json(404, json!({"message": format!("404 {what} Not Found")}));
        }
        if parts.len() == 2 {
            return Reply::json(
                200,
                json!({"id": 7, "path_with_namespace": "acme/app", "web_url": "https://gitlab.example/acme/app"}),
            );
        }
        if role != "maintainer" {
            return Reply::json(403, json!({"message": "403 Forbidden"}));
        }
        let flags = [
            "push_events",
            "tag_push_events",
            "merge_requests_events",
            "issues_events",
            "confidential_issues_events",
            "note_events",
            "confidential_note_events",
            "pipeline_events",
            "job_events",
            "wiki_page_events",
            "deployment_events",
            "releases_events",
            "feature_flag_events",
            "enable_ssl_verification",
        ];
        let apply = |hook: &mut Value, body: &Value| {
            for key in ["url", "name", "description"].iter().chain(flags.iter()) {
                if let Some(v) = body.get(*key) {
                    hook[*key] = v.clone();
                }
            }
        };
        match (req.method.as_str(), &parts[2..]) {
            ("GET", ["hooks"]) => {
                assert_eq!(req.param("per_page").as_deref(), Some("100"));
                Reply::json(200, Value::Array(st.hooks.clone()))
            }
            ("POST", ["hooks"]) => {
                let body = body_of(req);
                let id = st.next_id;
                st.next_id += 1;
                let mut hook = json!({"id": id, "push_events": true, "enable_ssl_verification": true,
                                      "alert_status": "executable", "disabled_until": null,
                                      "created_at": "2024-05-01T10:00:00.000Z"});
                apply(&mut hook, &body);
                st.secrets.push((id, body["token"].as_str().unwrap_or("").to_string()));
                st.hooks.push(hook.clone());
                Reply::json(201, hook)
            }
            ("PUT", ["hooks", id]) => {
                let id: u64 = id.parse().unwrap();
                let body = body_of(req);
                let Some(hook) = st.hooks.iter_mut().find(|h| h["id"] == id) else {
                    return Reply::json(404, json!({"message": "404 Not found"}));
                };
                apply(hook, &body);
                let hook = hook.clone();
                st.secrets.push((id, body["token"].as_str().unwrap_or("").to_string()));
                Reply::json(200, hook)
            }
            ("DELETE", ["hooks", id]) => {
                let id: u64 = id.parse().unwrap();
                st.hooks.retain(|h| h["id"] != id);
                Reply::empty(204)
            }
            _ => Reply::json(404, json!({"error": "404 Not Found"})),
        }
    });
    (server, state)
}

fn gl_args<'a>(server: &'a StandIn, verb: &'a str) -> Vec<&'a str> {
    vec![verb, "gitlab", "--project", "acme/app", "--api-url", &server.base]
}

#[test]
fn gitlab_install_twice_keeps_one_hook_then_list_verify_remove() {
    let dir = tempfile::tempdir().unwrap();
    let (server, state) = fake_gitlab();
    let token = [("GITLAB_TOKEN", GL_ADMIN), ("HOOKRUNNER_PUBLIC_URL", PUBLIC)];

    let out = hooks(&dir, &gl_args(&server, "install"), &token);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "created hook #1 on GitLab project acme/app: https://hooks.example.com/hooks/gitlab (events: push, merge_request, pipeline)\n"
    );
    assert!(out.stderr.contains("left out: ping"), "{}", out.stderr);
    let reqs = server.take();
    let calls: Vec<String> = reqs.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(
        calls,
        [
            "GET /api/v4/projects/acme%2Fapp",
            "GET /api/v4/projects/acme%2Fapp/hooks",
            "POST /api/v4/projects/acme%2Fapp/hooks"
        ]
    );
    assert!(reqs.iter().all(|r| r.header("PRIVATE-TOKEN") == Some(GL_ADMIN)));
    let post = reqs[2].json();
    assert_eq!(post["url"], "https://hooks.example.com/hooks/gitlab");
    assert_eq!(
        post["token"], GITLAB_SECRET,
        "the source's token, so X-Gitlab-Token matches"
    );
    assert_eq!(post["name"], "hookrunner: gitlab");
    assert_eq!(post["enable_ssl_verification"], true);
    for (flag, on) in [
        ("push_events", true),
        ("merge_requests_events", true),
        ("pipeline_events", true),
        ("tag_push_events", false),
        ("issues_events", false),
        ("note_events", false),
        ("job_events", false),
        ("releases_events", false),
        ("feature_flag_events", false),
        ("wiki_page_events", false),
        ("deployment_events", false),
        ("confidential_issues_events", false),
        ("confidential_note_events", false),
    ] {
        assert_eq!(post[flag], on, "{flag}");
    }

    // Again: the hook with this URL is updated, not added.
    let out = hooks(&dir, &gl_args(&server, "install"), &token);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("updated hook #1 on GitLab project acme/app"),
        "{}",
        out.stdout
    );
    let methods: Vec<String> = server.take().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["GET", "GET", "PUT"]);
    assert_eq!(state.lock().unwrap().hooks.len(), 1);

    let out = hooks(&dir, &gl_args(&server, "verify"), &token);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "ok: hook #1 https://hooks.example.com/hooks/gitlab on GitLab project acme/app [active] events: push, merge_request, pipeline\n"
    );

    // GitLab disables a hook that keeps failing; verify says so, and exits 1.
    state.lock().unwrap().hooks[0]["alert_status"] = json!("disabled");
    let out = hooks(&dir, &gl_args(&server, "verify"), &token);
    assert_eq!(out.code, 1);
    assert!(out.stdout.starts_with("disabled: hook #1 https://hooks.example.com/hooks/gitlab on GitLab project acme/app\n  disabled by GitLab after repeated failed deliveries"), "{}", out.stdout);

    // Someone else's hook is listed, ours marked.
    state.lock().unwrap().hooks.push(
        json!({"id": 9, "url": "https://ci.example.com/hook", "push_events": true, "alert_status": "executable"}),
    );
    let out = hooks(&dir, &gl_args(&server, "list"), &token);
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stdout,
        "* #1 https://hooks.example.com/hooks/gitlab [disabled] events: push, merge_request, pipeline\n      disabled by GitLab after repeated failed deliveries (alert_status: disabled); fix the receiver, then re-enable it in the hook's settings or run `hooks install` again\n  #9 https://ci.example.com/hook [active] events: push\n"
    );
    let mut args = gl_args(&server, "list");
    args.push("--json");
    let listed: Value = serde_json::from_str(&hooks(&dir, &args, &token).stdout).unwrap();
    assert_eq!(listed[0]["ours"], true);
    assert_eq!(listed[1]["ours"], false);

    let out = hooks(&dir, &gl_args(&server, "remove"), &token);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "removed hook #1 from GitLab project acme/app: https://hooks.example.com/hooks/gitlab\n"
    );
    let left: Vec<Value> = state.lock().unwrap().hooks.iter().map(|h| h["id"].clone()).collect();
    assert_eq!(left, [json!(9)]);
    let out = hooks(&dir, &gl_args(&server, "verify"), &token);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.starts_with(
            "missing: hook for https://hooks.example.com/hooks/gitlab on GitLab project acme/app\n  no hook"
        ),
        "{}",
        out.stdout
    );
    // Every secret the hook was given is the source's.
    assert!(state.lock().unwrap().secrets.iter().all(|(_, s)| s == GITLAB_SECRET));
}

#[test]
fn gitlab_401_403_404_and_usage_errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (server, state) = fake_gitlab();
    let url = ["--url", "https://hooks.example.com/hooks/gitlab"];
    let base = server.base.clone();
    let args = |project: &'static str| -> Vec<String> {
        let mut a: Vec<String> = ["install", "gitlab", "--project", project, "--api-url", &base]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(url.iter().map(|s| s.to_string()));
        a
    };
    let args = |project: &'static str| -> Vec<&'static str> {
        args(project)
            .into_iter()
            .map(|s| &*Box::leak(s.into_boxed_str()))
            .collect()
    };
    let out = hooks(&dir, &args("acme/app"), &[("GITLAB_TOKEN", GL_REPORTER)]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_ends(
        &out.stderr,
        "error: not permitted: the token may not manage the webhooks of GitLab project acme/app (403); the token needs the Maintainer (or Owner) role on the project and the `api` scope\n"
    );
    let out = hooks(&dir, &args("acme/nope"), &[("GITLAB_TOKEN", GL_ADMIN)]);
    assert_eq!(out.code, 5);
    assert_ends(
        &out.stderr,
        "error: GitLab project acme/nope not found, or the token cannot see it (404)\n",
    );
    let out = hooks(&dir, &args("acme/app"), &[("GITLAB_TOKEN", "glpat-wrong")]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains("error: GitLab refused the token (401: 401 Unauthorized)"),
        "{}",
        out.stderr
    );
    assert!(state.lock().unwrap().hooks.is_empty());

    // No token: nothing is sent.
    server.take();
    let out = hooks(&dir, &args("acme/app"), &[]);
    assert_eq!(out.code, 2);
    assert_ends(
        &out.stderr,
        "error: set GITLAB_TOKEN to a GitLab access token (it is read from the environment only, never from the command line)\n"
    );
    // No URL for the hook.
    let out = hooks(
        &dir,
        &["install", "gitlab", "--project", "acme/app"],
        &[("GITLAB_TOKEN", GL_ADMIN)],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("give the hook's URL with --url"), "{}", out.stderr);
    // A provider without hooks, a target flag of the other provider, no such source.
    let out = hooks(&dir, &["install", "stripe", "--repo", "a/b"], &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("`hooks` manages webhooks on gitlab, github"),
        "{}",
        out.stderr
    );
    let out = hooks(&dir, &["install", "gitlab", "--repo", "a/b"], &[]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: a gitlab source takes --project ID|PATH or --group ID|PATH\n"
    );
    let out = hooks(&dir, &["install", "nope", "--repo", "a/b"], &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("there is no source named `nope`"), "{}", out.stderr);
    let out = hooks(
        &dir,
        &["install", "gitlab", "--project", "a/b", "--events", "push,pushes"],
        &[("GITLAB_TOKEN", GL_ADMIN)],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("GitLab hooks have no event `pushes`"),
        "{}",
        out.stderr
    );
    // GitHub's event names are checked as well (a typo is not sent).
    let out = hooks(
        &dir,
        &["install", "github", "--repo", "a/b", "--events", "push,pull-request"],
        &[("GITHUB_TOKEN", GH_ADMIN)],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("GitHub hooks have no event `pull-request`") && out.stderr.contains("pull_request"),
        "{}",
        out.stderr
    );
    assert!(server.take().is_empty(), "usage errors send nothing");
}

#[test]
fn gitlab_429_waits_for_retry_after_and_5xx_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let (server, state) = fake_gitlab();
    state.lock().unwrap().inject = vec![
        Reply::json(429, json!({"message": "429 Too Many Requests"})).header("Retry-After", "1"),
        Reply::json(502, json!({"message": "502 Bad Gateway"})),
    ];
    let token = [("GITLAB_TOKEN", GL_ADMIN), ("HOOKRUNNER_PUBLIC_URL", PUBLIC)];
    let mut args = gl_args(&server, "install");
    args.extend(["--events", "push,tag_push"]);
    let out = hooks(&dir, &args, &token);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "note: GitLab answered 429 (rate limited); retrying in 1s (attempt 2 of 4)\nnote: GitLab answered 502: 502 Bad Gateway; retrying in 1s (attempt 3 of 4)\n"
    );
    assert!(out.stdout.contains("(events: push, tag_push)"), "{}", out.stdout);
    assert_eq!(server.take().len(), 5, "2 refused + the 3 calls of an install");
    assert_eq!(state.lock().unwrap().hooks.len(), 1);

    // Still failing after 4 attempts: exit 6.
    state.lock().unwrap().inject = (0..4)
        .map(|_| Reply::json(503, json!({"message": "down"})).header("Retry-After", "0"))
        .collect();
    let out = hooks(&dir, &gl_args(&server, "verify"), &token);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("error: GitLab answered 503: down; gave up after 4 attempts (GET "),
        "{}",
        out.stderr
    );
}

#[test]
fn dry_run_sends_no_mutating_request_and_masks_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (server, state) = fake_gitlab();
    let mut args = gl_args(&server, "install");
    args.push("--dry-run");
    let out = hooks(
        &dir,
        &args,
        &[("GITLAB_TOKEN", GL_ADMIN), ("HOOKRUNNER_PUBLIC_URL", PUBLIC)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let base = &server.base;
    assert!(
        out.stdout.starts_with(&format!(
            "GET {base}/api/v4/projects/acme%2Fapp  (read-only: sent)\nGET {base}/api/v4/projects/acme%2Fapp/hooks?per_page=***  (read-only: sent)\nPOST {base}/api/v4/projects/acme%2Fapp/hooks  (not sent: --dry-run)\n{{\n"
        )),
        "{}",
        out.stdout
    );
    let shown: Value = serde_json::from_str(&out.stdout[out.stdout.find('{').unwrap()..]).unwrap();
    assert_eq!(shown["token"], "***");
    assert_eq!(shown["push_events"], true);
    let methods: Vec<String> = server.take().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["GET", "GET"]);
    assert!(state.lock().unwrap().hooks.is_empty());

    // Without a token nothing at all is sent.
    let out = hooks(&dir, &args, &[("HOOKRUNNER_PUBLIC_URL", PUBLIC)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("(not sent: no token)") && out.stdout.contains("\"token\": \"***\""));
    assert!(server.take().is_empty());

    // Remove, dry: the DELETE is shown, not sent.
    let token = [("GITLAB_TOKEN", GL_ADMIN), ("HOOKRUNNER_PUBLIC_URL", PUBLIC)];
    assert_eq!(hooks(&dir, &gl_args(&server, "install"), &token).code, 0);
    server.take();
    let mut args = gl_args(&server, "remove");
    args.push("--dry-run");
    let out = hooks(&dir, &args, &token);
    assert!(
        out.stdout.contains(&format!(
            "DELETE {base}/api/v4/projects/acme%2Fapp/hooks/1  (not sent: --dry-run)"
        )),
        "{}",
        out.stdout
    );
    assert!(server.take().iter().all(|r| r.method == "GET"));
    assert_eq!(state.lock().unwrap().hooks.len(), 1);
}

// ------------------------------------------------------------ fake GitHub

fn fake_github() -> (StandIn, State) {
    let state: State = Arc::new(Mutex::new(Forge {
        next_id: 100,
        ..Forge::default()
    }));
    let s = state.clone();
    let server = StandIn::start(move |req: &Req| {
        let mut st = s.lock().unwrap();
        assert_eq!(req.header("Accept"), Some("application/vnd.github+json"));
        assert_eq!(req.header("X-GitHub-Api-Version"), Some("2022-11-28"));
        let admin = match req.header("Authorization") {
            Some(a) if a == format!("Bearer {GH_ADMIN}") => true,
            Some(a) if a == format!("Bearer {GH_READ}") => false,
            _ => {
                return Reply::json(
                    401,
                    json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
                )
            }
        };
        let not_found = || {
            Reply::json(
                404,
                json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
            )
        };
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let rest = match parts.as_slice() {
            ["repos", "octo", "app", rest @ ..] | ["orgs", "octo", rest @ ..] => rest.to_vec(),
            _ => return not_found(),
        };
        if rest.is_empty() {
            return Reply::json(200, json!({"id": 1296269, "full_name": "octo/app"}));
        }
        if !admin {
            return not_found(); // GitHub hides hooks from those who may not manage them
        }
        match (req.method.as_str(), rest.as_slice()) {
            ("GET", ["hooks"]) => Reply::json(200, Value::Array(st.hooks.clone())),
            ("POST", ["hooks"]) => {
                let b = body_of(req);
                assert_eq!(b["name"], "web");
                let id = st.next_id;
                st.next_id += 1;
                st.secrets
                    .push((id, b["config"]["secret"].as_str().unwrap().to_string()));
                let mut config = b["config"].clone();
                config["secret"] = json!("********");
                let hook = json!({"type": "Repository", "id": id, "name": "web", "active": b["active"],
                    "events": b["events"], "config": config,
                    "last_response": {"code": null, "status": "unused", "message": null}});
                st.hooks.push(hook.clone());
                Reply::json(201, hook)
            }
            ("PATCH", ["hooks", id]) => {
                let id: u64 = id.parse().unwrap();
                let b = body_of(req);
                st.secrets
                    .push((id, b["config"]["secret"].as_str().unwrap().to_string()));
                let hook = st.hooks.iter_mut().find(|h| h["id"] == id).unwrap();
                hook["events"] = b["events"].clone();
                hook["active"] = b["active"].clone();
                let mut config = b["config"].clone();
                config["secret"] = json!("********");
                hook["config"] = config;
                Reply::json(200, hook.clone())
            }
            _ => not_found(),
        }
    });
    (server, state)
}

#[test]
fn github_repo_hook_is_installed_once_and_a_failing_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (server, state) = fake_github();
    let base = server.base.clone();
    let args = |verb: &'static str| -> Vec<String> {
        [
            verb,
            "github",
            "--repo",
            "octo/app",
            "--api-url",
            &base,
            "--url",
            "https://hooks.example.com/hooks/github",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |verb: &'static str, token: &str| {
        let a = args(verb);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        hooks(&dir, &a, &[("GITHUB_TOKEN", token)])
    };

    let out = run("install", GH_ADMIN);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "created hook #100 on GitHub repository octo/app: https://hooks.example.com/hooks/github (events: pull_request, push)\n");
    let post = server.take().pop().unwrap();
    assert_eq!(post.method, "POST");
    assert_eq!(post.path, "/repos/octo/app/hooks");
    assert_eq!(
        post.json(),
        json!({"name": "web", "active": true, "events": ["pull_request", "push"],
               "config": {"url": "https://hooks.example.com/hooks/github", "content_type": "json",
                          "secret": GITHUB_SECRET, "insecure_ssl": "0"}})
    );
    let out = run("install", GH_ADMIN);
    assert!(out.stdout.starts_with("updated hook #100"), "{}", out.stdout);
    assert_eq!(server.take().pop().unwrap().method, "PATCH");
    assert_eq!(state.lock().unwrap().hooks.len(), 1);
    assert!(state.lock().unwrap().secrets.iter().all(|(_, s)| s == GITHUB_SECRET));
    assert_eq!(run("verify", GH_ADMIN).code, 0);

    // The last delivery failed: verify reports it.
    state.lock().unwrap().hooks[0]["last_response"] =
        json!({"code": 502, "status": "active", "message": "Invalid HTTP Response: 502"});
    let out = run("verify", GH_ADMIN);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stdout,
        "failing: hook #100 https://hooks.example.com/hooks/github on GitHub repository octo/app\n  failing: the last delivery got HTTP 502 (active): Invalid HTTP Response: 502\n"
    );

    // A token that cannot administer the repository's hooks.
    let out = run("install", GH_READ);
    assert_eq!(out.code, 4);
    assert!(out.stderr.starts_with("error: not permitted: the token may not manage the webhooks of GitHub repository octo/app (404); the token needs admin rights on the repository, with the `admin:repo_hook` scope"), "{}", out.stderr);

    // Organization hooks, events given.
    let out = hooks(
        &dir,
        &[
            "install",
            "github",
            "--org",
            "octo",
            "--api-url",
            &server.base,
            "--url",
            "https://hooks.example.com/hooks/github",
            "--events",
            "*",
            "--json",
        ],
        &[("GITHUB_TOKEN", GH_ADMIN)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["action"], "updated",
        "the fake shares one hook list between repo and org"
    );
    assert_eq!(v["events"], json!(["*"]));
    assert_eq!(server.take().last().unwrap().path, "/orgs/octo/hooks/100");
}

// ------------------------------------------------------------- fake Gitea

fn fake_gitea() -> (StandIn, State) {
    let state: State = Arc::new(Mutex::new(Forge {
        next_id: 1,
        ..Forge::default()
    }));
    let s = state.clone();
    let server = StandIn::start(move |req: &Req| {
        let mut st = s.lock().unwrap();
        if req.header("Authorization") != Some(&format!("token {GT_ADMIN}")) {
            return Reply::json(
                401,
                json!({"message": "token is required", "url": "https://gitea.example/api/swagger"}),
            );
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/api/v1/repos/team/site") => Reply::json(200, json!({"id": 3, "full_name": "team/site"})),
            ("GET", "/api/v1/repos/team/site/hooks") => Reply::json(200, Value::Array(st.hooks.clone())),
            ("POST", "/api/v1/repos/team/site/hooks") => {
                let b = body_of(req);
                let id = st.next_id;
                st.next_id += 1;
                st.secrets
                    .push((id, b["config"]["secret"].as_str().unwrap().to_string()));
                let hook = json!({"id": id, "type": b["type"], "branch_filter": b["branch_filter"],
                    "config": {"url": b["config"]["url"], "content_type": "json"},
                    "events": b["events"], "active": b["active"], "authorization_header": ""});
                st.hooks.push(hook.clone());
                Reply::json(201, hook)
            }
            _ => Reply::json(404, json!({"message": "The target couldn't be found.", "errors": []})),
        }
    });
    (server, state)
}

#[test]
fn gitea_hook_gets_the_gitea_type_secret_and_events_and_an_inactive_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (server, state) = fake_gitea();
    let env = [
        ("GITEA_TOKEN", GT_ADMIN),
        ("HOOKRUNNER_PUBLIC_URL", "https://hooks.example.com/"),
    ];
    let out = hooks(
        &dir,
        &["install", "gitea", "--repo", "team/site", "--api-url", &server.base],
        &env,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "created hook #1 on Gitea repository team/site: https://hooks.example.com/hooks/gitea (events: push, issues)\n"
    );
    let post = server.take().pop().unwrap();
    assert_eq!(
        post.json(),
        json!({"type": "gitea", "active": true, "branch_filter": "*",
               "config": {"url": "https://hooks.example.com/hooks/gitea", "content_type": "json", "secret": GITEA_SECRET},
               "events": ["push", "issues", "issue_assign", "issue_label", "issue_milestone"]})
    );
    let verify = ["verify", "gitea", "--repo", "team/site", "--api-url", &server.base];
    assert_eq!(hooks(&dir, &verify, &env).code, 0);
    state.lock().unwrap().hooks[0]["active"] = json!(false);
    let out = hooks(&dir, &verify, &env);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("inactive (active: false): Gitea delivers nothing to it"),
        "{}",
        out.stdout
    );

    // Gitea has no public instance to default to.
    let out = hooks(&dir, &["install", "gitea", "--repo", "team/site"], &env);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: gitea has no public default: give --api-url, e.g. https://gitea.example.com\n"
    );
}

#[test]
fn a_token_in_the_hooks_own_url_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _state) = fake_gitlab();
    let token = [("GITLAB_TOKEN", GL_ADMIN)];
    let url = format!("https://hooks.example.com/hooks/gitlab?token={URL_TOKEN}");
    let mut args = gl_args(&server, "install");
    args.extend(["--url", url.as_str()]);
    // (`hooks` itself checks nothing in SECRETS was printed.)
    let out = hooks(&dir, &args, &token);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with(
            "created hook #1 on GitLab project acme/app: https://hooks.example.com/hooks/gitlab?token=*** "
        ),
        "{}",
        out.stdout
    );
    // The API got the URL as given.
    let post = server.take().pop().unwrap().json();
    assert_eq!(post["url"], url.as_str());
    for verb in ["list", "verify", "remove"] {
        let mut args = gl_args(&server, verb);
        args.extend(["--url", url.as_str(), "--json"]);
        let out = hooks(&dir, &args, &token);
        assert!(
            out.code == 0 || verb == "verify",
            "{verb}: {}{}",
            out.stdout,
            out.stderr
        );
    }
    // The table of `list` masks a listed hook's URL as `--json` does, and a
    // `--dry-run` shows the body it would send with the URL masked.
    hooks(
        &dir,
        &[&gl_args(&server, "install")[..], &["--url", url.as_str()]].concat(),
        &token,
    );
    let out = hooks(&dir, &gl_args(&server, "list"), &token);
    assert!(
        out.stdout.contains("https://hooks.example.com/hooks/gitlab?token=***"),
        "{}",
        out.stdout
    );
    let other = format!("https://user:{URL_TOKEN}@hooks.example.com/other?token={URL_TOKEN}");
    let args = [
        &gl_args(&server, "install")[..],
        &["--url", other.as_str(), "--dry-run"],
    ]
    .concat();
    let out = hooks(&dir, &args, &token);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("\"url\": \"https://user:***@hooks.example.com/other?token=***\""),
        "{}",
        out.stdout
    );
}

#[test]
fn credentials_in_the_api_url_are_never_printed() {
    const API_PASSWORD: &str = "ApiUrlPassw0rd";
    const API_QUERY: &str = "ApiUrlQueryV4lue";
    let dir = tempfile::tempdir().unwrap();
    let (server, _state) = fake_gitlab();
    let token = [("GITLAB_TOKEN", GL_ADMIN), ("HOOKRUNNER_PUBLIC_URL", PUBLIC)];
    let api = server
        .base
        .replace("http://", &format!("http://apiuser:{API_PASSWORD}@"));
    let out = hooks(
        &dir,
        &[
            "install",
            "gitlab",
            "--project",
            "acme/app",
            "--api-url",
            &api,
            "--dry-run",
        ],
        &token,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let ftp = format!("{}/?key={API_QUERY}", api.replace("http://", "ftp://"));
    let refused = hooks(
        &dir,
        &["list", "gitlab", "--project", "acme/app", "--api-url", &ftp],
        &token,
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("ftp://apiuser:***@"), "{}", refused.stderr);
    for printed in [&out.stdout, &out.stderr, &refused.stdout, &refused.stderr] {
        assert!(
            !printed.contains(API_PASSWORD) && !printed.contains(API_QUERY),
            "{printed}"
        );
    }
    assert!(out.stdout.contains("GET http://apiuser:***@"), "{}", out.stdout);
}

#[test]
fn a_redirect_names_the_api_address_to_give_not_the_resource() {
    let dir = tempfile::tempdir().unwrap();
    let server = StandIn::start(|req: &Req| {
        Reply::empty(301).header("Location", &format!("https://git.example.com/gitlab{}", req.path))
    });
    let out = hooks(
        &dir,
        &[
            "install",
            "gitlab",
            "--project",
            "acme/app",
            "--api-url",
            &server.base,
            "--url",
            "https://hooks.example.com/hooks/gitlab",
        ],
        &[("GITLAB_TOKEN", GL_ADMIN)],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "redirected to https://git.example.com/gitlab/api/v4/projects/acme%2Fapp: give https://git.example.com/gitlab/api/v4 as --api-url"
        ),
        "{}",
        out.stderr
    );
}
