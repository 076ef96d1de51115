//! The recipes in docs/recipes/: each one's `webhook.yaml` (its first
//! ```yaml block) is taken from the Markdown as written, checked, and run by
//! the real daemon against local stand-ins for the services it talks to.

mod common;
mod stand_in;

use common::*;
use serde_json::{json, Value};
use stand_in::{all_text, Reply, Req, StandIn};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The first fenced block of `lang` in a recipe.
fn block(recipe: &str, lang: &str) -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docs/recipes").join(recipe)).unwrap();
    let start = text
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("{recipe} has no {lang} block"))
        + lang.len()
        + 4;
    let end = start + text[start..].find("\n```").unwrap();
    text[start..end].to_string()
}

const RECIPES: [&str; 4] = [
    "gitlab-events-to-dingtalk.md",
    "gitlab-push-to-feishu-owner.md",
    "github-push-deploy-latest-wins.md",
    "register-webhook.md",
];

/// What the recipes read from the environment.
const ENV: [(&str, &str); 9] = [
    ("GITLAB_WEBHOOK_TOKEN", "recipe-gitlab-token-51"),
    ("GITHUB_WEBHOOK_SECRET", "recipe-github-secret-62"),
    (
        "DINGTALK_WEBHOOK_URL",
        "https://oapi.dingtalk.com/robot/send?access_token=x",
    ),
    ("DINGTALK_SECRET", "SECrecipe0dingtalk"),
    ("FEISHU_APP_ID", "cli_recipe"),
    ("FEISHU_APP_SECRET", "recipe-app-secret"),
    ("DEPLOY_DIR", "/srv/app"),
    ("HOOKRUNNER_PUBLIC_URL", "https://hooks.example.com"),
    ("STATE_DIRECTORY", "/var/lib/hookrunner"),
];

#[test]
fn every_recipe_config_passes_check() {
    assert_eq!(
        std::fs::read_dir(Path::new(ROOT).join("docs/recipes")).unwrap().count(),
        RECIPES.len()
    );
    for recipe in RECIPES {
        let dir = tempfile::tempdir().unwrap();
        install_handlers(dir.path());
        let config = dir.path().join("webhook.yaml");
        std::fs::write(&config, block(recipe, "yaml")).unwrap();
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&config)
            .envs(ENV)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{recipe}: {stderr}");
        assert!(!stderr.contains("warning"), "{recipe}: {stderr}");
    }
}

fn gitlab_delivery(d: &Daemon, event: &str, body: &[u8]) -> Resp {
    d.post_json(
        "/hooks/gitlab",
        &[("X-Gitlab-Event", event), ("X-Gitlab-Token", "recipe-gitlab-token-51")],
        body,
    )
}

fn with(fixture_name: &str, changes: &[(&str, Value)]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(fixture_name)).unwrap();
    for (p, value) in changes {
        *v.pointer_mut(p).unwrap() = value.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn gitlab_events_to_dingtalk_recipe_posts_signed_messages_for_what_it_should() {
    let robot = StandIn::start(|req: &Req| {
        if stand_in::dingtalk_signed(req, "SECrecipe0dingtalk") {
            Reply::json(200, json!({"errcode": 0, "errmsg": "ok"}))
        } else {
            Reply::json(200, json!({"errcode": 310000, "errmsg": "sign not match"}))
        }
    });
    let url = format!("{}/robot/send?access_token=recipe", robot.base);
    let mut b = Daemon::with(&block("gitlab-events-to-dingtalk.md", "yaml"));
    for (k, v) in ENV {
        b = b.env(k, if k == "DINGTALK_WEBHOOK_URL" { &url } else { v });
    }
    let d = b.env("DINGTALK_KEYWORD", "[代码]").start();

    let push = with(
        "gitlab/push.json",
        &[("/commits/1/message", json!("优化：首页加载速度"))],
    );
    let ids = Daemon::task_ids(&gitlab_delivery(&d, "Push Hook", &push));
    assert_eq!(ids.len(), 1);
    let task = d.wait_task(&ids[0]);
    assert_eq!(task["status"], "succeeded", "{task}");
    let req = robot.take_at_least(1).remove(0);
    let body = req.json();
    assert!(
        body["markdown"]["title"]
            .as_str()
            .unwrap()
            .starts_with("[代码]mike/diaspora: "),
        "{body}"
    );
    assert!(all_text(&body).contains("优化：首页加载速度"));

    // A running pipeline is not worth a message; a finished one is.
    let running = with(
        "gitlab/pipeline.json",
        &[("/object_attributes/status", json!("running"))],
    );
    let r = gitlab_delivery(&d, "Pipeline Hook", &running);
    assert_eq!(r.status, 200, "{}", r.text);
    let ids = Daemon::task_ids(&gitlab_delivery(&d, "Pipeline Hook", &fixture("gitlab/pipeline.json")));
    assert_eq!(d.wait_task(&ids[0])["status"], "succeeded");
    let reqs = robot.take_at_least(1);
    assert_eq!(reqs.len(), 1);
    assert!(all_text(&reqs[0].json()).contains("Pipeline #31 passed on master"));
    // Confidential comments are left out of a group chat unless added on purpose.
    let r = gitlab_delivery(&d, "Confidential Note Hook", &fixture("gitlab/note.issue.json"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(robot.requests().is_empty());
}

#[test]
fn gitlab_push_to_feishu_owner_recipe_sends_each_owner_a_card() {
    let api = stand_in::feishu_app(
        "cli_recipe",
        "recipe-app-secret",
        "t-recipe-token",
        &[
            ("li.lei@example.com", "u-lilei"),
            ("han.meimei@example.com", "u-hmm"),
            ("platform-team@example.com", "u-plat"),
        ],
    );
    let mut b = Daemon::with(&block("gitlab-push-to-feishu-owner.md", "yaml"));
    for (k, v) in ENV {
        if k != "STATE_DIRECTORY" {
            b = b.env(k, v);
        }
    }
    let d = b.env("FEISHU_API_BASE", &api.base).start();
    std::fs::write(d.path("owners.json"), block("gitlab-push-to-feishu-owner.md", "json")).unwrap();

    let push = with(
        "gitlab/push.json",
        &[
            ("/project/path_with_namespace", json!("acme/billing")),
            ("/user_name", json!("韩梅梅")),
        ],
    );
    let ids = Daemon::task_ids(&gitlab_delivery(&d, "Push Hook", &push));
    let task = d.wait_task(&ids[0]);
    assert_eq!(task["status"], "succeeded", "{task}");
    let sent: Vec<Value> = api
        .take()
        .into_iter()
        .filter(|r| r.path == "/open-apis/im/v1/messages")
        .map(|r| r.json())
        .collect();
    let to: Vec<&str> = sent.iter().map(|m| m["receive_id"].as_str().unwrap()).collect();
    assert_eq!(to, ["u-lilei", "u-hmm"]);
    assert!(all_text(&sent[0]).contains("韩梅梅"));
    assert!(d.path("data/cache").is_dir(), "the token cache is under ./data/cache");

    // acme/web: by the contained key `acme/`.
    let push = with(
        "gitlab/push.json",
        &[("/project/path_with_namespace", json!("acme/web"))],
    );
    let ids = Daemon::task_ids(&gitlab_delivery(&d, "Push Hook", &push));
    assert_eq!(d.wait_task(&ids[0])["status"], "succeeded");
    let to: Vec<String> = api
        .take()
        .into_iter()
        .filter(|r| r.path == "/open-apis/im/v1/messages")
        .map(|r| r.json()["receive_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(to, ["u-plat"]);

    // A deleted branch runs nothing.
    let gone = with(
        "gitlab/push.json",
        &[("/after", json!("0000000000000000000000000000000000000000"))],
    );
    assert_eq!(gitlab_delivery(&d, "Push Hook", &gone).status, 200);
}

#[test]
fn github_deploy_recipe_deploys_the_first_and_the_latest_push() {
    let mut b = Daemon::with(&block("github-push-deploy-latest-wins.md", "yaml"));
    for (k, v) in ENV {
        b = b.env(k, v);
    }
    let d = b.start();
    // The recipe's config as written; only the deploy script is a stand-in
    // that holds the first deploy until the test lets it go.
    let stub = d.path("handlers/deploy.sh");
    std::fs::write(
        &stub,
        "#!/bin/sh\ni=0\nwhile [ ! -e release ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done\necho \"deployed $*\"\n",
    )
    .unwrap();
    let body = fixture("github/push.json");
    let main = {
        let mut v: Value = serde_json::from_slice(&body).unwrap();
        v["ref"] = json!("refs/heads/main");
        serde_json::to_vec(&v).unwrap()
    };
    let sig = format!("sha256={}", hmac_sha256_hex("recipe-github-secret-62", &main));
    let push = |id: &str| {
        let r = d.post_json(
            "/hooks/github",
            &[
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &sig),
                ("X-GitHub-Delivery", id),
            ],
            &main,
        );
        Daemon::task_ids(&r).remove(0)
    };
    let a = push("push-a");
    eventually("deploy A to run", Duration::from_secs(10), || {
        d.get(&format!("/tasks/{a}")).json()["status"] == "running"
    });
    let (b_, c, last) = (push("push-b"), push("push-c"), push("push-d"));
    std::fs::write(d.path("release"), "").unwrap();
    assert_eq!(d.wait_task(&a)["status"], "succeeded");
    for superseded in [&b_, &c] {
        let t = d.wait_task(superseded);
        assert_eq!(t["status"], "cancelled", "{t}");
    }
    let t = d.wait_task(&last);
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(
        t["stdout"],
        "deployed --ref=refs/heads/main --repo=Codertocat/Hello-World\n"
    );
}

#[test]
fn register_recipe_dry_run_shows_the_hook_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    install_handlers(dir.path());
    let config = dir.path().join("webhook.yaml");
    std::fs::write(&config, block("register-webhook.md", "yaml")).unwrap();
    let out = Command::new(BIN)
        .args([
            "hooks",
            "install",
            "gitlab",
            "--project",
            "acme/app",
            "--dry-run",
            "--config",
        ])
        .arg(&config)
        .envs(ENV)
        .env_remove("GITLAB_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("POST https://gitlab.com/api/v4/projects/acme%2Fapp/hooks  (not sent: --dry-run)\n"),
        "{stdout}"
    );
    let shown: Value = serde_json::from_str(&stdout[stdout.find('{').unwrap()..]).unwrap();
    assert_eq!(shown["url"], "https://hooks.example.com/hooks/gitlab");
    assert_eq!(shown["token"], "***");
    assert_eq!(
        (shown["push_events"].as_bool(), shown["merge_requests_events"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(shown["pipeline_events"], false);
    assert!(!stdout.contains("recipe-gitlab-token-51"));
}
