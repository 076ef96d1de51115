//! The chat handlers (`handlers/*-events.py`, `handlers/feishu-owner-dm.py`)
//! run by the real daemon on real GitLab and GitHub payloads (with Chinese
//! text put in), posting to local servers that stand in for DingTalk, Feishu
//! (custom bot and Open API), WeCom and Slack and check what those services
//! check: signatures, request shapes, headers. Nothing leaves 127.0.0.1.

mod common;
mod stand_in;

use common::*;
use serde_json::{json, Value};
use stand_in::{all_text, hmac_sha256_base64, Reply, Req, StandIn};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const GITLAB_TOKEN: &str = "gl-hook-token-4d1";
const GITHUB_SECRET: &str = "gh-hook-secret-9c2";
const DINGTALK_SECRET: &str = "SECdingtalk0chat0secret0e71";
const FEISHU_SECRET: &str = "feishu-chat-secret-Qw3";

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A string as a YAML scalar (YAML double-quoted strings are JSON strings).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

// ------------------------------------------------ the chat services

/// Replies queued for the next requests to a path, before the default ones.
type Script = Arc<Mutex<HashMap<&'static str, Vec<Reply>>>>;

const DINGTALK_PATH: &str = "/robot/send";
const FEISHU_PATH: &str = "/open-apis/bot/v2/hook/feishu-hook-id";
const WECOM_PATH: &str = "/cgi-bin/webhook/send";
const SLACK_PATH: &str = "/services/T000/B000/slack-secret-path";

/// DingTalk, Feishu, WeCom and Slack on one local server, each on its own
/// path, answering as the service does (a bad signature gets the service's
/// own error code).
fn chat_services() -> (StandIn, Script) {
    let script: Script = Arc::new(Mutex::new(HashMap::new()));
    let queued = script.clone();
    let server = StandIn::start(move |req: &Req| {
        if let Some(list) = queued.lock().unwrap().get_mut(req.path.as_str()) {
            if !list.is_empty() {
                return list.remove(0);
            }
        }
        match req.path.as_str() {
            DINGTALK_PATH => {
                if dingtalk_signature_ok(req) {
                    Reply::json(200, json!({"errcode": 0, "errmsg": "ok"}))
                } else {
                    Reply::json(200, json!({"errcode": 310000, "errmsg": "sign not match"}))
                }
            }
            FEISHU_PATH => {
                if feishu_signature_ok(&req.json()) {
                    Reply::json(200, json!({"code": 0, "msg": "success", "data": {}}))
                } else {
                    Reply::json(
                        200,
                        json!({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}),
                    )
                }
            }
            WECOM_PATH if req.param("key").as_deref() == Some("wecom-key") => {
                Reply::json(200, json!({"errcode": 0, "errmsg": "ok"}))
            }
            WECOM_PATH => Reply::json(200, json!({"errcode": 93000, "errmsg": "invalid webhook url"})),
            SLACK_PATH => Reply::text(200, "ok"),
            _ => Reply::text(404, "no_service"),
        }
    });
    (server, script)
}

/// DingTalk's check, and the robot's access token.
fn dingtalk_signature_ok(req: &Req) -> bool {
    req.param("access_token").as_deref() == Some("ding-token") && stand_in::dingtalk_signed(req, DINGTALK_SECRET)
}

/// Feishu: body `timestamp` (s, a string) and `sign` = base64(HMAC-SHA256(key "ts\nsecret", "")).
fn feishu_signature_ok(body: &Value) -> bool {
    let (Some(ts), Some(sign)) = (body["timestamp"].as_str(), body["sign"].as_str()) else {
        return false;
    };
    let Ok(secs) = ts.parse::<u64>() else { return false };
    (now_secs() - secs as f64).abs() < 3600.0
        && sign == hmac_sha256_base64(format!("{ts}\n{FEISHU_SECRET}").as_bytes(), b"")
}

fn chat_config(base: &str, extra_env: &str, program_extra: &str) -> String {
    let program = |name: &str, script: &str, env: &[(&str, String)]| {
        let env: String = env
            .iter()
            .map(|(k, v)| format!("      {k}: {}\n", yaml_str(v)))
            .collect();
        format!(
            "  {name}:\n    command: handlers/{script}\n    timeout: 30s\n    exit_codes: {{success: [0], retry: [75]}}\n{program_extra}    env:\n{env}{extra_env}"
        )
    };
    let rules =
        "      rules:\n        - run: dingtalk\n        - run: feishu\n        - run: wecom\n        - run: slack\n";
    format!(
        "tasks:\n  max_concurrent: 4\nsources:\n  gitlab:\n    provider: gitlab\n    token: {GITLAB_TOKEN}\n  github:\n    provider: github\n    secret: {GITHUB_SECRET}\nprograms:\n{}{}{}{}mappings:\n  gitlab:\n    \"*\":\n{rules}  github:\n    \"*\":\n{rules}",
        program(
            "dingtalk",
            "dingtalk-events.py",
            &[
                ("DINGTALK_WEBHOOK_URL", format!("{base}{DINGTALK_PATH}?access_token=ding-token")),
                ("DINGTALK_SECRET", DINGTALK_SECRET.into()),
            ]
        ),
        program(
            "feishu",
            "feishu-events.py",
            &[
                ("FEISHU_WEBHOOK_URL", format!("{base}{FEISHU_PATH}")),
                ("FEISHU_SECRET", FEISHU_SECRET.into()),
            ]
        ),
        program("wecom", "wecom-events.py", &[("WECOM_WEBHOOK_URL", format!("{base}{WECOM_PATH}?key=wecom-key"))]),
        program("slack", "slack-events.py", &[("SLACK_WEBHOOK_URL", format!("{base}{SLACK_PATH}"))]),
    )
}

/// Posts a delivery as its provider would (token or signature over the exact bytes).
fn deliver(d: &Daemon, source: &str, event: &str, body: &[u8], n: usize) -> Vec<String> {
    let r = if source == "gitlab" {
        d.post_json(
            "/hooks/gitlab",
            &[("X-Gitlab-Event", event), ("X-Gitlab-Token", GITLAB_TOKEN)],
            body,
        )
    } else {
        let sig = format!("sha256={}", hmac_sha256_hex(GITHUB_SECRET, body));
        let id = format!("delivery-{}", now_secs());
        d.post_json(
            "/hooks/github",
            &[
                ("X-GitHub-Event", event),
                ("X-Hub-Signature-256", &sig),
                ("X-GitHub-Delivery", &id),
            ],
            body,
        )
    };
    let ids = Daemon::task_ids(&r);
    assert_eq!(ids.len(), n, "{}", r.text);
    ids
}

/// A fixture as JSON with some fields replaced (JSON pointers).
fn fixture_with(name: &str, changes: &[(&str, Value)]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(name)).unwrap();
    for (pointer, value) in changes {
        *v.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{name} has no {pointer}")) = value.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

/// The readable text of one chat message as its service receives it.
fn message_text(req: &Req) -> String {
    all_text(&req.json())
}

struct Case {
    source: &'static str,
    fixture: &'static str,
    event: &'static str,
    changes: Vec<(&'static str, Value)>,
    /// Must appear in every service's message (the first is the non-ASCII one).
    expect: Vec<&'static str>,
}

fn cases() -> Vec<Case> {
    let c = |source, fixture, event, changes: Vec<(&'static str, Value)>, expect: Vec<&'static str>| Case {
        source,
        fixture,
        event,
        changes,
        expect,
    };
    vec![
        c(
            "gitlab",
            "gitlab/push.json",
            "Push Hook",
            vec![
                (
                    "/commits/1/message",
                    json!("修复：登录页面的中文乱码问题\n\n详细说明见工单"),
                ),
                ("/user_name", json!("张三")),
                ("/total_commits_count", json!(57)),
            ],
            vec![
                "修复：登录页面的中文乱码问题",
                "张三",
                "mike/diaspora",
                "pushed 57 commits to master",
                "55 more commits",
                "http://example.com/mike/diaspora/-/compare/95790bf8...da156088",
            ],
        ),
        c(
            "gitlab",
            "gitlab/tag_push.json",
            "Tag Push Hook",
            vec![("/user_name", json!("李四"))],
            vec!["李四", "jsmith/example", "pushed tag v1.0.0", "/-/tags/v1.0.0"],
        ),
        c(
            "gitlab",
            "gitlab/merge_request.json",
            "Merge Request Hook",
            vec![
                ("/object_attributes/title", json!("新增：支付模块 🎉")),
                ("/user/name", json!("王五")),
            ],
            vec![
                "新增：支付模块 🎉",
                "王五",
                "gitlabhq/gitlab-test",
                "opened merge request !1",
                "http://example.com/diaspora/merge_requests/1",
            ],
        ),
        c(
            "gitlab",
            "gitlab/pipeline.json",
            "Pipeline Hook",
            vec![
                ("/commit/message", json!("流水线：修复构建\n")),
                ("/user/name", json!("赵六")),
            ],
            vec![
                "流水线：修复构建",
                "赵六",
                "gitlab-org/gitlab-test",
                "Pipeline #31 passed on master",
                "/pipelines/31",
            ],
        ),
        c(
            "gitlab",
            "gitlab/job.json",
            "Job Hook",
            vec![
                ("/commit/message", json!("任务：部署到测试环境")),
                ("/user/name", json!("孙七")),
            ],
            vec![
                "任务：部署到测试环境",
                "孙七",
                "jsmithy2/release-tools-fake",
                "Job auto_deploy:start success on main",
                "https://gitlab.com/jsmithy2/release-tools-fake/-/jobs/3580121225",
            ],
        ),
        c(
            "gitlab",
            "gitlab/issue.json",
            "Issue Hook",
            vec![
                ("/object_attributes/title", json!("缺陷：无法上传文件")),
                ("/user/name", json!("周八")),
            ],
            vec![
                "缺陷：无法上传文件",
                "周八",
                "gitlabhq/gitlab-test",
                "opened issue #23",
                "http://example.com/diaspora/issues/23",
            ],
        ),
        c(
            "gitlab",
            "gitlab/issue.json",
            "Confidential Issue Hook",
            vec![
                ("/object_attributes/title", json!("安全：密码泄露")),
                ("/object_attributes/confidential", json!(true)),
                ("/event_type", json!("confidential_issue")),
            ],
            vec!["安全：密码泄露", "opened confidential issue #23"],
        ),
        c(
            "gitlab",
            "gitlab/note.merge_request.json",
            "Note Hook",
            vec![("/object_attributes/note", json!("看起来不错，可以合并"))],
            vec![
                "看起来不错，可以合并",
                "gitlab-org/gitlab-test",
                "left a comment on merge request !1",
                "http://example.com/gitlab-org/gitlab-test/merge_requests/1#note_1244",
            ],
        ),
        c(
            "gitlab",
            "gitlab/note.issue.json",
            "Confidential Note Hook",
            vec![
                ("/object_attributes/note", json!("机密评论：请勿外传")),
                ("/event_type", json!("confidential_note")),
            ],
            vec![
                "机密评论：请勿外传",
                "Administrator",
                "left a confidential comment on issue #17",
                "http://example.com/gitlab-org/gitlab-test/-/issues/17#note_1241",
            ],
        ),
        c(
            "gitlab",
            "gitlab/release.json",
            "Release Hook",
            vec![
                ("/description", json!("第一个正式版本")),
                ("/name", json!("v1.1 正式版")),
            ],
            vec![
                "第一个正式版本",
                "Release v1.1 正式版 (v1.1) created",
                "gitlab-org/release-webhook-example",
                "https://example.com/gitlab-org/release-webhook-example/-/releases/v1.1",
            ],
        ),
        c(
            "gitlab",
            "gitlab/wiki_page.json",
            "Wiki Page Hook",
            vec![("/object_attributes/title", json!("部署指南"))],
            vec![
                "部署指南",
                "Administrator created wiki page",
                "root/awesome-project",
                "http://example.com/root/awesome-project/-/wikis/awesome",
            ],
        ),
        c(
            "gitlab",
            "gitlab/deployment.json",
            "Deployment Hook",
            vec![("/commit_title", json!("发布新版本")), ("/user/name", json!("吴九"))],
            vec![
                "发布新版本",
                "吴九",
                "Deployment to staging succeeded",
                "root/test-deployment-webhooks",
                "http://example.com/root/test-deployment-webhooks/-/jobs/796",
            ],
        ),
        c(
            "gitlab",
            "gitlab/feature_flag.json",
            "Feature Flag Hook",
            vec![
                ("/object_attributes/description", json!("新的结账流程")),
                ("/user/name", json!("郑十")),
            ],
            vec![
                "新的结账流程",
                "郑十",
                "turned feature flag test-feature-flag on",
                "gitlabhq/gitlab-test",
                "http://example.com/gitlabhq/gitlab-test/-/feature_flags",
            ],
        ),
        c(
            "github",
            "github/push.json",
            "push",
            vec![
                ("/head_commit/message", json!("初始提交：添加说明文件")),
                ("/commits/0/message", json!("初始提交：添加说明文件")),
                ("/pusher/name", json!("钱十一")),
            ],
            vec![
                "初始提交：添加说明文件",
                "钱十一",
                "Codertocat/Hello-World",
                "created branch master with 1 commit",
                "https://github.com/Codertocat/Hello-World/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            ],
        ),
        c(
            "github",
            "github/pull_request.opened.json",
            "pull_request",
            vec![("/pull_request/title", json!("改进：更新说明文档"))],
            vec![
                "改进：更新说明文档",
                "Codertocat",
                "opened pull request #2",
                "Codertocat/Hello-World",
                "https://github.com/Codertocat/Hello-World/pull/2",
            ],
        ),
        c(
            "github",
            "github/issues.labeled.json",
            "issues",
            vec![("/issue/title", json!("拼写错误"))],
            vec![
                "拼写错误",
                "Codertocat labeled issue #1",
                "[bug]",
                "https://github.com/Codertocat/Hello-World/issues/1",
            ],
        ),
        c(
            "github",
            "github/issue_comment.created.json",
            "issue_comment",
            vec![("/comment/body", json!("谢谢，已修复"))],
            vec![
                "谢谢，已修复",
                "Codertocat commented on issue #1",
                "Codertocat/Hello-World",
                "https://github.com/Codertocat/Hello-World/issues/1#issuecomment-492700400",
            ],
        ),
        c(
            "github",
            "github/release.published.json",
            "release",
            vec![("/release/name", json!("第一版"))],
            vec![
                "第一版",
                "Codertocat published release",
                "https://github.com/Codertocat/Hello-World/releases/tag/0.0.1",
            ],
        ),
        c(
            "github",
            "github/workflow_run.completed.json",
            "workflow_run",
            vec![("/workflow_run/display_title", json!("更新依赖"))],
            vec![
                "更新依赖",
                "octo-org/octo-repo",
                "success on master",
                "https://github.com/octo-org/octo-repo/actions/runs/289782451",
            ],
        ),
    ]
}

#[test]
fn every_gitlab_and_github_event_reaches_every_chat_service_intact() {
    let (server, _) = chat_services();
    let d = Daemon::start(&chat_config(&server.base, "", ""));
    for case in cases() {
        let body = fixture_with(case.fixture, &case.changes);
        let what = format!("{} {}", case.fixture, case.event);
        for id in deliver(&d, case.source, case.event, &body, 4) {
            let task = d.wait_task(&id);
            assert_eq!(task["status"], "succeeded", "{what}: {task}");
            assert_eq!(task["stderr"], "", "{what}: {task}");
            assert!(task["stdout"].as_str().unwrap().contains("sent "), "{what}: {task}");
        }
        // The project's own page, which every message links (as a link, not just text).
        let sent: Value = serde_json::from_slice(&body).unwrap();
        let project_url = ["/project/web_url", "/repository/homepage", "/repository/html_url"]
            .iter()
            .find_map(|p| sent.pointer(p).and_then(Value::as_str))
            .unwrap_or_else(|| panic!("{what}: no project URL in the fixture"))
            .to_string();
        let requests = server.take_at_least(4);
        assert_eq!(requests.len(), 4, "{what}");
        let mut paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, [WECOM_PATH, FEISHU_PATH, DINGTALK_PATH, SLACK_PATH], "{what}");
        for req in &requests {
            assert_eq!(req.method, "POST");
            assert_eq!(
                req.header("Content-Type"),
                Some("application/json; charset=utf-8"),
                "{what}"
            );
            let raw = req.text();
            // Non-ASCII text arrives as UTF-8 bytes, not \u escapes, and unchanged.
            assert!(raw.contains(case.expect[0]), "{what} → {}: {raw}", req.path);
            let text = message_text(req);
            for want in &case.expect {
                assert!(text.contains(want), "{what} → {} lacks {want:?}:\n{text}", req.path);
            }
            let link = match req.path.as_str() {
                SLACK_PATH => format!("<{project_url}|"),
                _ => format!("]({project_url})"),
            };
            assert!(
                raw.contains(&link),
                "{what} → {} does not link {project_url}: {raw}",
                req.path
            );
            let body = req.json();
            match req.path.as_str() {
                DINGTALK_PATH => {
                    assert!(dingtalk_signature_ok(req), "{what}: {}", req.raw_query);
                    assert_eq!(body["msgtype"], "markdown");
                    assert!(!body["markdown"]["title"].as_str().unwrap().is_empty());
                }
                FEISHU_PATH => {
                    assert!(feishu_signature_ok(&body), "{what}: {body}");
                    assert_eq!(body["msg_type"], "interactive");
                    let card = &body["card"];
                    assert!(card["header"]["title"]["content"].is_string());
                    let button = card["elements"].as_array().unwrap().last().unwrap();
                    assert_eq!(button["tag"], "action", "{what}: {card}");
                }
                WECOM_PATH => {
                    assert_eq!(body["msgtype"], "markdown");
                    assert!(body["markdown"]["content"].as_str().unwrap().len() <= 4096);
                }
                SLACK_PATH => {
                    assert!(body["text"].is_string());
                    assert_eq!(body["blocks"][0]["type"], "section");
                }
                _ => unreachable!(),
            }
        }
    }
    let logs = d.logs();
    for secret in [DINGTALK_SECRET, FEISHU_SECRET, "wecom-key", "slack-secret-path"] {
        assert!(!logs.contains(secret), "{secret} reached the log");
    }
}

#[test]
fn a_429_with_retry_after_is_waited_out_and_retried() {
    let (server, script) = chat_services();
    {
        let mut s = script.lock().unwrap();
        s.insert(
            FEISHU_PATH,
            vec![Reply::json(429, json!({"code": 9499, "msg": "too many request"})).header("Retry-After", "1")],
        );
        s.insert(
            SLACK_PATH,
            vec![Reply::text(429, "rate_limited").header("Retry-After", "1")],
        );
        s.insert(DINGTALK_PATH, vec![Reply::text(503, "busy")]);
    }
    let d = Daemon::start(&chat_config(&server.base, "", ""));
    let body = fixture_with("gitlab/push.json", &[("/user_name", json!("张三"))]);
    for id in deliver(&d, "gitlab", "Push Hook", &body, 4) {
        let task = d.wait_task(&id);
        assert_eq!(task["status"], "succeeded", "{task}");
        assert_eq!(
            task["attempt"], 1,
            "retried inside the handler, not by the daemon: {task}"
        );
        let program = task["program"].as_str().unwrap();
        let stderr = task["stderr"].as_str().unwrap();
        match program {
            "feishu" | "slack" => {
                assert!(
                    stderr.contains("HTTP 429") && stderr.contains("retrying in 1 s"),
                    "{stderr}"
                )
            }
            "dingtalk" => assert!(
                stderr.contains("HTTP 503") && stderr.contains("retrying in 1 s"),
                "{stderr}"
            ),
            _ => assert_eq!(stderr, ""),
        }
    }
    let requests = server.take_at_least(7);
    let count = |p: &str| requests.iter().filter(|r| r.path == p).count();
    assert_eq!(
        (
            count(FEISHU_PATH),
            count(SLACK_PATH),
            count(DINGTALK_PATH),
            count(WECOM_PATH)
        ),
        (2, 2, 2, 1)
    );
    // Each attempt is signed afresh, and the retried message is the same.
    let feishu: Vec<&Req> = requests.iter().filter(|r| r.path == FEISHU_PATH).collect();
    assert!(feishu.iter().all(|r| feishu_signature_ok(&r.json())));
    assert_eq!(feishu[0].json()["card"], feishu[1].json()["card"]);
}

#[test]
fn permanent_and_retryable_failures_exit_with_distinct_codes() {
    let (server, script) = chat_services();
    {
        let mut s = script.lock().unwrap();
        s.insert(SLACK_PATH, vec![Reply::text(403, "invalid_token")]);
        // Always busy: 2 attempts in the handler, 2 runs by the daemon.
        s.insert(DINGTALK_PATH, (0..4).map(|_| Reply::text(503, "busy")).collect());
        s.insert(
            FEISHU_PATH,
            vec![Reply::json(200, json!({"code": 19021, "msg": "sign match fail"}))],
        );
    }
    let config = chat_config(
        &server.base,
        "      CHAT_RETRY_ATTEMPTS: \"2\"\n",
        "    retry: {attempts: 2, backoff: 100ms, on: [timed_out]}\n",
    )
    // A wrong key: WeCom's errcode for it.
    .replace("key=wecom-key", "key=wrong-key");
    let d = Daemon::start(&config);
    let body = fixture("gitlab/push.json");
    let mut by_program = HashMap::new();
    for id in deliver(&d, "gitlab", "Push Hook", &body, 4) {
        let task = d.wait_task(&id);
        by_program.insert(task["program"].as_str().unwrap().to_string(), task);
    }
    let slack = &by_program["slack"];
    assert_eq!(
        (slack["status"].as_str(), slack["exit_code"].as_i64()),
        (Some("failed"), Some(1)),
        "{slack}"
    );
    assert_eq!(slack["stderr"], "slack-events.py: slack: HTTP 403: invalid_token\n");
    let feishu = &by_program["feishu"];
    assert_eq!(feishu["exit_code"], 1, "{feishu}");
    assert!(feishu["stderr"].as_str().unwrap().contains("19021"));
    let wecom = &by_program["wecom"];
    assert_eq!(wecom["exit_code"], 1, "{wecom}");
    assert!(wecom["stderr"].as_str().unwrap().contains("93000"));
    let ding = &by_program["dingtalk"];
    assert_eq!(
        (ding["status"].as_str(), ding["exit_code"].as_i64()),
        (Some("failed"), Some(75)),
        "{ding}"
    );
    assert_eq!(ding["attempt"], 2, "75 asks the daemon for another run: {ding}");
    assert!(
        ding["stderr"].as_str().unwrap().contains("gave up after 2 attempts"),
        "{ding}"
    );
    let requests = server.take_at_least(7);
    let count = |p: &str| requests.iter().filter(|r| r.path == p).count();
    assert_eq!(
        (
            count(SLACK_PATH),
            count(FEISHU_PATH),
            count(WECOM_PATH),
            count(DINGTALK_PATH)
        ),
        (1, 1, 1, 4)
    );
}

// -------------------------------------------- Feishu owner DMs (app API)

const APP_ID: &str = "cli_a1b2c3d4e5";
const APP_SECRET: &str = "app-secret-Zx81";
const TENANT_TOKEN: &str = "t-g1044ghJRTQ2OPJ5YKQ4ZT5B";

fn feishu_app(known: &'static [(&'static str, &'static str)]) -> StandIn {
    stand_in::feishu_app(APP_ID, APP_SECRET, TENANT_TOKEN, known)
}

fn dm_config(api: &str, owners_file: &str) -> String {
    format!(
        r#"
sources:
  gitlab:
    provider: gitlab
    token: {GITLAB_TOKEN}
programs:
  owner-dm:
    command: handlers/feishu-owner-dm.py
    timeout: 30s
    exit_codes: {{success: [0], retry: [75]}}
    env:
      FEISHU_APP_ID: {APP_ID}
      FEISHU_APP_SECRET: {APP_SECRET}
      FEISHU_API_BASE: {api}
      OWNERS_FILE: {owners_file}
      HOOK_CACHE_DIR: $DIR/cache
mappings:
  gitlab:
    push:
      rules:
        - run: owner-dm
"#
    )
}

#[test]
fn a_push_reaches_each_exact_owner_in_feishu_with_one_card_and_a_cached_token() {
    let api = feishu_app(&[
        ("li.lei@example.com", "5d9bdxxx"),
        ("han.meimei@example.com", "7a3cfyyy"),
    ]);
    let d = Daemon::start(&dm_config(&api.base, "owners.json"));
    std::fs::write(
        d.path("owners.json"),
        json!({
            "mike/": "team@example.com",
            "mike/diaspora": ["li.lei@example.com", "han.meimei@example.com"],
            "diaspora": "other@example.com",
        })
        .to_string(),
    )
    .unwrap();
    let body = fixture_with(
        "gitlab/push.json",
        &[
            ("/user_name", json!("张三")),
            ("/commits/1/message", json!("修复：订单金额显示错误\n\n关联工单 #42")),
        ],
    );
    let ids = deliver(&d, "gitlab", "Push Hook", &body, 1);
    let task = d.wait_task(&ids[0]);
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(
        task["stdout"],
        "sent to li.lei@example.com\nsent to han.meimei@example.com\nfeishu: 2 of 2 owners of mike/diaspora reached\n"
    );
    let reqs = api.take();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/open-apis/auth/v3/tenant_access_token/internal",
            "/open-apis/contact/v3/users/batch_get_id",
            "/open-apis/im/v1/messages",
            "/open-apis/im/v1/messages",
        ]
    );
    assert_eq!(reqs[0].json(), json!({"app_id": APP_ID, "app_secret": APP_SECRET}));
    assert_eq!(
        reqs[1].json(),
        json!({"emails": ["li.lei@example.com", "han.meimei@example.com"]})
    );
    for (req, user) in reqs[2..].iter().zip(["5d9bdxxx", "7a3cfyyy"]) {
        assert_eq!(req.header("Content-Type"), Some("application/json; charset=utf-8"));
        let b = req.json();
        assert_eq!(b["receive_id"], user);
        assert_eq!(b["msg_type"], "interactive");
        assert!(b["uuid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 50));
        let card: Value = serde_json::from_str(b["content"].as_str().expect("content is a JSON string")).unwrap();
        let text = all_text(&card);
        for want in [
            "mike/diaspora",
            "张三",
            "修复：订单金额显示错误",
            "关联工单 #42",
            "master",
            "Commits**: 4",
        ] {
            assert!(text.contains(want), "card lacks {want:?}: {text}");
        }
        let button = &card["elements"].as_array().unwrap().last().unwrap()["actions"][0];
        assert_eq!(
            button["url"],
            "http://example.com/mike/diaspora/-/compare/95790bf8...da156088"
        );
        assert!(
            req.text().contains("修复：订单金额显示错误"),
            "the raw body carries UTF-8"
        );
    }

    // The token is cached: the next push asks for none.
    let ids = deliver(&d, "gitlab", "Push Hook", &fixture("gitlab/push.json"), 1);
    assert_eq!(d.wait_task(&ids[0])["status"], "succeeded");
    let paths: Vec<String> = api.take().into_iter().map(|r| r.path).collect();
    assert!(!paths.iter().any(|p| p.contains("tenant_access_token")), "{paths:?}");
    assert_eq!(paths.len(), 3);
    let cached = std::fs::read_dir(d.path("cache")).unwrap().count();
    assert!(cached >= 1);
    assert!(!d.logs().contains(TENANT_TOKEN) && !d.logs().contains(APP_SECRET));
}

#[test]
fn owners_by_contained_key_unknown_owners_and_projects_without_owners_are_reported() {
    let api = feishu_app(&[("billing-lead@example.com", "u-billing")]);
    let d = Daemon::start(&dm_config(&api.base, "owners.yaml"));
    std::fs::write(
        d.path("owners.yaml"),
        "# project path: owners\nacme/: platform@example.com\nbilling:\n  - billing-lead@example.com\n  - gone@example.com   # left the company\n\"acme/web\": [web@example.com]\n",
    )
    .unwrap();
    // Both `acme/` and `billing` are in the path: the longer key wins.
    let body = fixture_with(
        "gitlab/push.json",
        &[
            ("/project/path_with_namespace", json!("acme/billing-service")),
            ("/user_name", json!("李雷")),
        ],
    );
    let ids = deliver(&d, "gitlab", "Push Hook", &body, 1);
    let task = d.wait_task(&ids[0]);
    assert_eq!(
        (task["status"].as_str(), task["exit_code"].as_i64()),
        (Some("failed"), Some(3)),
        "{task}"
    );
    assert_eq!(
        task["stdout"],
        "sent to billing-lead@example.com\nfeishu: 1 of 2 owners of acme/billing-service reached\n"
    );
    assert_eq!(
        task["stderr"],
        "feishu-owner-dm.py: gone@example.com (owner of acme/billing-service by `billing`) is not a Feishu user the app can see \
         (no such email in the tenant, outside the app's contact range, or the app lacks contact:user.employee_id:readonly, \
         without which Feishu returns no user_id)\n"
    );
    let reqs = api.take();
    assert_eq!(
        reqs[1].json(),
        json!({"emails": ["billing-lead@example.com", "gone@example.com"]})
    );
    assert_eq!(reqs.iter().filter(|r| r.path == "/open-apis/im/v1/messages").count(), 1);

    // No key matches: nothing is sent, and the task says why.
    let body = fixture_with(
        "gitlab/push.json",
        &[("/project/path_with_namespace", json!("other/tool"))],
    );
    let ids = deliver(&d, "gitlab", "Push Hook", &body, 1);
    let task = d.wait_task(&ids[0]);
    assert_eq!(task["exit_code"], 3, "{task}");
    assert_eq!(
        task["stderr"],
        "feishu-owner-dm.py: no owner for project other/tool in owners.yaml\n"
    );
    assert!(api.take().is_empty(), "nothing is sent for a project without owners");

    // What is not an email (a YAML mapping the file's reader does not take,
    // a typo) stops the task with the file's error, before anything is sent.
    for (text, said) in [
        (
            "mike/diaspora: {a: b}\n",
            "feishu-owner-dm.py: owners.yaml:1: `{...}` is not supported here: give an email or a list of emails\n",
        ),
        (
            "mike/diaspora: [li.lei@example.com, han.meimei]\n",
            "feishu-owner-dm.py: owners file owners.yaml: `mike/diaspora`: 'han.meimei' is not an email\n",
        ),
    ] {
        std::fs::write(d.path("owners.yaml"), text).unwrap();
        let ids = deliver(&d, "gitlab", "Push Hook", &fixture("gitlab/push.json"), 1);
        let task = d.wait_task(&ids[0]);
        assert_eq!(task["exit_code"], 2, "{task}");
        assert_eq!(task["stderr"], said, "{task}");
        assert!(api.take().is_empty(), "nothing is sent");
    }
}

#[test]
fn a_retried_owner_dm_task_does_not_send_a_card_twice() {
    // The second owner's message fails (503) until the task's second run.
    let failures = Arc::new(Mutex::new(1));
    let left = failures.clone();
    let api = stand_in::feishu_app_with(
        APP_ID,
        APP_SECRET,
        TENANT_TOKEN,
        &[("li.lei@example.com", "u-1"), ("han.meimei@example.com", "u-2")],
        move |req| {
            let to_second = req.path == "/open-apis/im/v1/messages" && req.json()["receive_id"] == "u-2";
            let mut left = left.lock().unwrap();
            (to_second && *left > 0).then(|| {
                *left -= 1;
                Reply::json(503, json!({"code": 1, "msg": "busy"}))
            })
        },
    );
    // No `retry:` policy: exit 75 alone gets 3 runs, 2 s apart.
    let config = dm_config(&api.base, "owners.json").replace(
        "      HOOK_CACHE_DIR",
        "      CHAT_RETRY_ATTEMPTS: \"1\"\n      HOOK_CACHE_DIR",
    );
    let d = Daemon::start(&config);
    std::fs::write(
        d.path("owners.json"),
        json!({"mike/diaspora": ["li.lei@example.com", "han.meimei@example.com"]}).to_string(),
    )
    .unwrap();
    let ids = deliver(&d, "gitlab", "Push Hook", &fixture("gitlab/push.json"), 1);
    let task = d.wait_task(&ids[0]);
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["attempt"], 2, "{task}");
    assert_eq!(task["attempts"][0]["exit_code"], 75, "{task}");
    assert_eq!(
        task["stdout"],
        "already sent to li.lei@example.com by an earlier attempt\nsent to han.meimei@example.com\nfeishu: 2 of 2 owners of mike/diaspora reached\n"
    );
    let sent: Vec<Value> = api
        .take()
        .into_iter()
        .filter(|r| r.path == "/open-apis/im/v1/messages")
        .map(|r| r.json())
        .collect();
    let to: Vec<&str> = sent.iter().map(|m| m["receive_id"].as_str().unwrap()).collect();
    assert_eq!(to, ["u-1", "u-2", "u-2"], "u-1 once; u-2 failed once, then got it");
    // The retry of u-2 carries the same uuid, so Feishu would drop a repeat.
    assert_eq!(sent[1]["uuid"], sent[2]["uuid"]);
    assert_eq!(*failures.lock().unwrap(), 0);
}

/// Runs `handlers/<script>` on `body` with `env` (and nothing else of ours).
fn handler(script: &str, args: &[&str], env: &[(&str, &str)], body: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(std::path::Path::new(ROOT).join("handlers").join(script))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn untrusted_text_mentions_nobody_and_a_bad_payload_or_url_is_exit_2_without_the_secret() {
    let issue = json!({
        "action": "opened",
        "issue": {"title": "<!channel> 紧急 <@U123> <font color=\"warning\">x</font>", "number": 7,
                  "html_url": "http://git.example/a/b/issues/7", "user": {"login": "li"}},
        "repository": {"full_name": "a/b", "html_url": "http://git.example/a/b"},
        "sender": {"login": "li"}
    })
    .to_string();
    let github = [("HOOK_EVENT", "issues")];
    // Slack: the notification text is escaped as the blocks are.
    let (code, out, err) = handler("slack-events.py", &["--print"], &github, &issue);
    assert_eq!(code, 0, "{err}");
    let slack: Value = serde_json::from_str(&out).unwrap();
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .contains("&lt;!channel&gt; 紧急 &lt;@U123&gt;"),
        "{slack}"
    );
    assert!(!out.contains("<!channel>") && !out.contains("<@U123>"), "{out}");
    // WeCom: no mention and no markup of the sender's.
    let (code, out, err) = handler("wecom-events.py", &["--print"], &github, &issue);
    assert_eq!(code, 0, "{err}");
    let content = serde_json::from_str::<Value>(&out).unwrap()["markdown"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.contains("紧急 ＜@U123＞"), "{content}");
    assert!(
        !content.contains("<@") && !content.contains("<font color=\"warning\">"),
        "{content}"
    );
    // A field of the wrong type: exit 2 and a sentence, no traceback.
    for (script, event, body) in [
        (
            "slack-events.py",
            "push",
            r#"{"object_kind":"push","total_commits_count":"many"}"#,
        ),
        (
            "dingtalk-events.py",
            "merge_request",
            r#"{"object_kind":"merge_request","object_attributes":"x"}"#,
        ),
        (
            "feishu-events.py",
            "pull_request",
            r#"{"action":"opened","pull_request":"oops"}"#,
        ),
        // Fields a message could be made without are checked too: a
        // project given as a string is not silently left out.
        (
            "slack-events.py",
            "push",
            r#"{"object_kind":"push","ref":"refs/heads/main","user_name":"Mona","project":"acme/app"}"#,
        ),
        (
            "dingtalk-events.py",
            "push",
            r#"{"object_kind":"push","ref":"refs/heads/main","commits":"oops"}"#,
        ),
        (
            "wecom-events.py",
            "push",
            r#"{"ref":"refs/heads/main","pusher":{"name":"m"},"commits":[1]}"#,
        ),
    ] {
        let (code, _, err) = handler(script, &["--print"], &[("HOOK_EVENT", event)], body);
        assert_eq!(code, 2, "{script}: {err}");
        assert!(
            err.contains("the payload is not shaped as the provider sends it"),
            "{err}"
        );
        assert!(!err.contains("Traceback"), "{err}");
    }
    // A URL with a stray comment after it: a config error, the URL unsaid.
    let (code, _, err) = handler(
        "slack-events.py",
        &[],
        &[
            ("HOOK_EVENT", "issues"),
            ("SLACK_WEBHOOK_URL", "http://127.0.0.1:9/services/T0/B0/S3CRET99 # prod"),
        ],
        &issue,
    );
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("S3CRET99"), "{err}");
}

/// `dingtalk-events.py` run on GitLab's push fixture, posting to `url`
/// with `env` besides: its exit code and stderr.
fn dingtalk_push(url: &str, env: &[(&str, &str)]) -> (i32, String) {
    let push = String::from_utf8(fixture("gitlab/push.json")).unwrap();
    let mut all = vec![("HOOK_EVENT", "Push Hook"), ("DINGTALK_WEBHOOK_URL", url)];
    all.extend_from_slice(env);
    let (code, _, err) = handler("dingtalk-events.py", &[], &all, &push);
    (code, err)
}

/// What a service answers may quote the request back (a proxy's error
/// page with the request line): the webhook URL's token is not repeated in
/// the handler's output, which the API and the dashboard show.
#[test]
fn an_answer_quoting_the_webhook_token_is_shown_without_it() {
    let server = StandIn::start(|req: &Req| {
        Reply::text(502, &format!("upstream error for POST {}?{}", req.path, req.raw_query))
    });
    let url = format!("{}/robot/send?access_token=DTSECRETTOK42", server.base);
    let (code, err) = dingtalk_push(
        &url,
        &[("DINGTALK_SECRET", DINGTALK_SECRET), ("CHAT_RETRY_ATTEMPTS", "1")],
    );
    assert_eq!(code, 75, "{err}");
    assert!(
        err.contains("HTTP 502: upstream error for POST /robot/send?access_token=***"),
        "{err}"
    );
    assert!(
        !err.contains("DTSECRETTOK42") && !err.contains(DINGTALK_SECRET),
        "{err}"
    );
    assert_eq!(server.requests().len(), 1);
}

/// Text from the payload makes no link, image or HTML of its own in any
/// markdown a chat service renders; a payload that names nobody says
/// `someone`.
#[test]
fn commit_messages_make_no_links_or_markup_and_a_missing_user_is_someone() {
    let mut push: Value = serde_json::from_slice(&fixture("gitlab/push.json")).unwrap();
    push["commits"][0]["message"] =
        json!("修复 [点我](http://evil.example) ![](http://tracker.example/p.gif) <b>x</b>");
    push["user_name"] = Value::Null;
    push["user_username"] = Value::Null;
    push["user"] = Value::Null;
    let push = push.to_string();
    for script in ["dingtalk-events.py", "feishu-events.py", "wecom-events.py"] {
        let (code, out, err) = handler(script, &["--print"], &[("HOOK_EVENT", "Push Hook")], &push);
        assert_eq!(code, 0, "{script}: {err}");
        assert!(out.contains("修复 [点我］(http://evil.example)"), "{script}: {out}");
        for injected in ["](http://evil", "](http://tracker", "<b>"] {
            assert!(!out.contains(injected), "{script}: {injected} in {out}");
        }
        assert!(out.contains("someone pushed"), "{script}: {out}");
    }
}

/// A service that takes longer to answer than the run has left: the run
/// gives up at `CHAT_DEADLINE` (exit 75, to be retried) instead of being
/// killed at the program's timeout.
#[test]
fn a_slow_service_is_given_up_at_the_deadline_not_waited_for() {
    let server = StandIn::start(|_: &Req| {
        std::thread::sleep(std::time::Duration::from_secs(6));
        Reply::json(200, json!({"errcode": 0, "errmsg": "ok"}))
    });
    let url = format!("{}/robot/send?access_token=abc", server.base);
    let (code, err) = dingtalk_push(&url, &[("CHAT_DEADLINE", "2")]);
    assert_eq!(code, 75, "{err}");
}

/// A WeCom message cut to the service's 4096 bytes keeps its end: how many
/// commits were left out, and the link.
#[test]
fn a_wecom_message_cut_to_its_limit_keeps_the_count_of_commits_left_out_and_the_link() {
    let mut push: Value = serde_json::from_slice(&fixture("gitlab/push.json")).unwrap();
    let commit = push["commits"][0].clone();
    push["commits"] = Value::Array(
        (0..40)
            .map(|i| {
                let mut c = commit.clone();
                c["message"] = json!(format!("{i} {}", "很长的提交信息".repeat(60)));
                c["author"]["name"] = json!("作者".repeat(300));
                c
            })
            .collect(),
    );
    push["total_commits_count"] = json!(40);
    let (code, out, err) = handler(
        "wecom-events.py",
        &["--print"],
        &[("HOOK_EVENT", "Push Hook")],
        &push.to_string(),
    );
    assert_eq!(code, 0, "{err}");
    let content = serde_json::from_str::<Value>(&out).unwrap()["markdown"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.len() <= 4096, "{} bytes", content.len());
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines[lines.len() - 2], "> … and 35 more commits", "{content}");
    assert!(lines[lines.len() - 1].starts_with("[View]("), "{content}");
    assert!(
        content.contains("…\n> … and 35 more"),
        "the commits were cut: {content}"
    );
}
