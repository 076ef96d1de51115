//! GitHub repository and organization hooks (`/repos/{owner}/{repo}/hooks`,
//! `/orgs/{org}/hooks`), with a bearer token.

use super::api::Method;
use super::gitlab::id_text;
use super::{encode, Forge, Hook, Want};
use serde_json::{json, Value};

/// The events a GitHub hook can subscribe to (GitHub's "Webhook events and
/// payloads", without `ping`, which every new hook gets unasked). A name not
/// here is a typo to refuse before the API is called; an event GitHub adds
/// later can be subscribed with `*` until it is added here.
const EVENTS: &[&str] = &[
    "branch_protection_configuration",
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "code_scanning_alert",
    "commit_comment",
    "create",
    "custom_property",
    "custom_property_values",
    "delete",
    "dependabot_alert",
    "deploy_key",
    "deployment",
    "deployment_protection_rule",
    "deployment_review",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "github_app_authorization",
    "gollum",
    "installation",
    "installation_repositories",
    "installation_target",
    "issue_comment",
    "issue_dependencies",
    "issues",
    "label",
    "marketplace_purchase",
    "member",
    "membership",
    "merge_group",
    "meta",
    "milestone",
    "org_block",
    "organization",
    "package",
    "page_build",
    "personal_access_token_request",
    "project",
    "project_card",
    "project_column",
    "projects_v2",
    "projects_v2_item",
    "projects_v2_status_update",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "push",
    "registry_package",
    "release",
    "repository",
    "repository_advisory",
    "repository_dispatch",
    "repository_import",
    "repository_ruleset",
    "repository_vulnerability_alert",
    "secret_scanning_alert",
    "secret_scanning_alert_location",
    "secret_scanning_scan",
    "security_advisory",
    "security_and_analysis",
    "sponsorship",
    "star",
    "status",
    "sub_issues",
    "team",
    "team_add",
    "watch",
    "workflow_dispatch",
    "workflow_job",
    "workflow_run",
];

pub struct Github {
    /// `repos/{owner}/{repo}` or `orgs/{org}`, encoded.
    path: String,
    what: String,
    org: bool,
}

impl Github {
    pub fn repo(owner: &str, name: &str) -> Github {
        Github {
            path: format!("/repos/{}/{}", encode(owner), encode(name)),
            what: format!("repository {owner}/{name}"),
            org: false,
        }
    }

    pub fn org(org: &str) -> Github {
        Github {
            path: format!("/orgs/{}", encode(org)),
            what: format!("organization {org}"),
            org: true,
        }
    }

    fn body(&self, want: &Want, create: bool) -> Value {
        let mut body = json!({
            "active": true,
            "events": want.events,
            "config": {
                "url": want.url,
                "content_type": "json",
                "secret": want.secret,
                "insecure_ssl": "0",
            },
        });
        if create {
            body["name"] = json!("web");
        }
        body
    }
}

impl Forge for Github {
    fn service(&self) -> &'static str {
        "GitHub"
    }

    fn describe(&self) -> String {
        format!("GitHub {}", self.what)
    }

    fn resource_path(&self) -> String {
        self.path.clone()
    }

    fn list_path(&self) -> String {
        format!("{}/hooks?per_page=100", self.path)
    }

    fn known_events(&self) -> Vec<&'static str> {
        EVENTS.to_vec()
    }

    fn event_of_key(&self, key: &str) -> Option<String> {
        let name = key.split('.').next().unwrap_or(key).trim().to_ascii_lowercase();
        // GitHub sends `ping` to every new hook; it is not subscribed to.
        EVENTS.contains(&name.as_str()).then_some(name)
    }

    fn all_events(&self) -> Vec<String> {
        vec!["*".to_string()]
    }

    fn parse_hook(&self, v: &Value) -> Hook {
        let events: Vec<String> = v
            .get("events")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        let active = v.get("active").and_then(Value::as_bool).unwrap_or(true);
        let mut problems = Vec::new();
        if !active {
            problems.push("inactive (active: false): GitHub delivers nothing to it".to_string());
        }
        let last = v.get("last_response").cloned().unwrap_or(Value::Null);
        let code = last.get("code").and_then(Value::as_u64);
        let status = last.get("status").and_then(Value::as_str).unwrap_or("");
        let message = last.get("message").and_then(Value::as_str).unwrap_or("");
        let failing = match code {
            Some(c) => !(200..300).contains(&c),
            None => !matches!(status, "" | "active" | "unused"),
        };
        if failing {
            let code = code.map_or(String::new(), |c| format!(" HTTP {c}"));
            let message = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            problems.push(format!("failing: the last delivery got{code} ({status}){message}"));
        }
        let config = v.get("config").cloned().unwrap_or(Value::Null);
        if config.get("insecure_ssl").and_then(Value::as_str) == Some("1") {
            problems.push("SSL verification is off (insecure_ssl: 1)".to_string());
        }
        Hook {
            id: id_text(v.get("id")),
            url: config.get("url").and_then(Value::as_str).unwrap_or("").to_string(),
            all_events: events.iter().any(|e| e == "*"),
            events,
            state: if !active {
                "disabled"
            } else if failing {
                "failing"
            } else {
                "active"
            },
            problems,
        }
    }

    fn create(&self, want: &Want) -> (Method, String, Value) {
        (Method::Post, format!("{}/hooks", self.path), self.body(want, true))
    }

    fn update(&self, id: &str, want: &Want) -> (Method, String, Value) {
        (
            Method::Patch,
            format!("{}/hooks/{}", self.path, encode(id)),
            self.body(want, false),
        )
    }

    fn delete_path(&self, id: &str) -> String {
        format!("{}/hooks/{}", self.path, encode(id))
    }

    fn admin_advice(&self) -> String {
        if self.org {
            "the token needs to belong to an organization owner, with the `admin:org_hook` scope (classic token) or the organization permission \"Webhooks: read and write\" (fine-grained token)".into()
        } else {
            "the token needs admin rights on the repository, with the `admin:repo_hook` scope (classic token) or the repository permission \"Webhooks: read and write\" (fine-grained token)".into()
        }
    }
}
