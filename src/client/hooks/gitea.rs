//! Gitea, Forgejo and Gogs repository and organization hooks
//! (`/api/v1/repos/{owner}/{repo}/hooks`, `/api/v1/orgs/{org}/hooks`),
//! with `Authorization: token ...`.

use super::api::Method;
use super::gitlab::id_text;
use super::{encode, Forge, Hook, Want};
use serde_json::{json, Value};

/// The hook event names a mapping key (an `X-Gitea-Event` value) stands for.
const EVENTS: [(&str, &[&str]); 14] = [
    ("push", &["push"]),
    ("create", &["create"]),
    ("delete", &["delete"]),
    ("fork", &["fork"]),
    ("issues", &["issues", "issue_assign", "issue_label", "issue_milestone"]),
    ("issue_comment", &["issue_comment", "pull_request_comment"]),
    (
        "pull_request",
        &[
            "pull_request",
            "pull_request_assign",
            "pull_request_label",
            "pull_request_milestone",
            "pull_request_sync",
            "pull_request_review_request",
        ],
    ),
    ("pull_request_approved", &["pull_request_review_approved"]),
    ("pull_request_rejected", &["pull_request_review_rejected"]),
    ("pull_request_comment", &["pull_request_review_comment"]),
    ("release", &["release"]),
    ("wiki", &["wiki"]),
    ("repository", &["repository"]),
    ("package", &["package"]),
];

pub struct Gitea {
    /// `gitea`, `forgejo` or `gogs`: the hook `type`.
    kind: &'static str,
    service: &'static str,
    path: String,
    what: String,
    org: bool,
}

impl Gitea {
    pub fn repo(kind: &'static str, service: &'static str, owner: &str, name: &str) -> Gitea {
        Gitea {
            kind,
            service,
            path: format!("/repos/{}/{}", encode(owner), encode(name)),
            what: format!("repository {owner}/{name}"),
            org: false,
        }
    }

    pub fn org(kind: &'static str, service: &'static str, org: &str) -> Gitea {
        Gitea {
            kind,
            service,
            path: format!("/orgs/{}", encode(org)),
            what: format!("organization {org}"),
            org: true,
        }
    }

    fn config(&self, want: &Want) -> Value {
        json!({"url": want.url, "content_type": "json", "secret": want.secret})
    }
}

impl Forge for Gitea {
    fn service(&self) -> &'static str {
        self.service
    }

    fn describe(&self) -> String {
        format!("{} {}", self.service, self.what)
    }

    fn resource_path(&self) -> String {
        self.path.clone()
    }

    fn list_path(&self) -> String {
        format!("{}/hooks?limit=50", self.path)
    }

    fn known_events(&self) -> Vec<&'static str> {
        EVENTS.iter().map(|(k, _)| *k).collect()
    }

    fn event_of_key(&self, key: &str) -> Option<String> {
        let name = key.split('.').next().unwrap_or(key).trim().to_ascii_lowercase();
        EVENTS.iter().any(|(k, _)| *k == name).then_some(name)
    }

    fn all_events(&self) -> Vec<String> {
        self.known_events().into_iter().map(String::from).collect()
    }

    /// Gitea's list names the fine-grained events (`issue_label`); they are
    /// folded back into the mapping keys that cover them all.
    fn parse_hook(&self, v: &Value) -> Hook {
        let raw: Vec<&str> = v
            .get("events")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let events = EVENTS
            .iter()
            .filter(|(_, names)| names.iter().all(|n| raw.contains(n)))
            .map(|(k, _)| k.to_string())
            .collect();
        let active = v.get("active").and_then(Value::as_bool).unwrap_or(true);
        let mut problems = Vec::new();
        if !active {
            problems.push(format!(
                "inactive (active: false): {} delivers nothing to it",
                self.service
            ));
        }
        Hook {
            id: id_text(v.get("id")),
            url: v
                .get("config")
                .and_then(|c| c.get("url"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            events,
            all_events: false,
            state: if active { "active" } else { "disabled" },
            problems,
        }
    }

    fn create(&self, want: &Want) -> (Method, String, Value) {
        let body = json!({
            "type": self.kind,
            "config": self.config(want),
            "events": provider_events(&want.events),
            "branch_filter": "*",
            "active": true,
        });
        (Method::Post, format!("{}/hooks", self.path), body)
    }

    fn update(&self, id: &str, want: &Want) -> (Method, String, Value) {
        let body = json!({
            "config": self.config(want),
            "events": provider_events(&want.events),
            "branch_filter": "*",
            "active": true,
        });
        (Method::Patch, format!("{}/hooks/{}", self.path, encode(id)), body)
    }

    fn delete_path(&self, id: &str) -> String {
        format!("{}/hooks/{}", self.path, encode(id))
    }

    fn admin_advice(&self) -> String {
        if self.org {
            "the token needs to belong to an owner of the organization, with the `write:organization` scope".into()
        } else {
            "the token needs admin rights on the repository, with the `write:repository` scope".into()
        }
    }
}

/// The hook's `events` for the wanted mapping keys.
fn provider_events(keys: &[String]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for (key, names) in EVENTS {
        if keys.iter().any(|k| k == key) {
            for n in names {
                if !out.contains(n) {
                    out.push(n);
                }
            }
        }
    }
    out
}
