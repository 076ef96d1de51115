//! GitLab project and group hooks (`/api/v4/projects/:id/hooks`,
//! `/api/v4/groups/:id/hooks`), authenticated with `PRIVATE-TOKEN`.

use super::api::Method;
use super::{encode, Forge, Hook, Want};
use serde_json::{json, Map, Value};

/// Event names (the mapping keys hookrunner gives GitLab events) and the
/// hook's flag for each.
pub const EVENTS: [(&str, &str); 13] = [
    ("push", "push_events"),
    ("tag_push", "tag_push_events"),
    ("merge_request", "merge_requests_events"),
    ("issue", "issues_events"),
    ("confidential_issue", "confidential_issues_events"),
    ("note", "note_events"),
    ("confidential_note", "confidential_note_events"),
    ("pipeline", "pipeline_events"),
    ("job", "job_events"),
    ("wiki_page", "wiki_page_events"),
    ("deployment", "deployment_events"),
    ("release", "releases_events"),
    ("feature_flag", "feature_flag_events"),
];

pub struct Gitlab {
    /// `projects` or `groups`.
    kind: &'static str,
    /// As given: a numeric id or a path.
    id: String,
}

impl Gitlab {
    pub fn project(id: &str) -> Gitlab {
        Gitlab {
            kind: "projects",
            id: id.trim().trim_matches('/').to_string(),
        }
    }

    pub fn group(id: &str) -> Gitlab {
        Gitlab {
            kind: "groups",
            id: id.trim().trim_matches('/').to_string(),
        }
    }

    fn noun(&self) -> &'static str {
        if self.kind == "projects" {
            "project"
        } else {
            "group"
        }
    }

    fn body(&self, want: &Want) -> Value {
        let mut body = Map::new();
        body.insert("url".into(), json!(want.url));
        body.insert("name".into(), json!(want.name));
        body.insert("description".into(), json!(want.description));
        body.insert("token".into(), json!(want.secret));
        for (event, flag) in EVENTS {
            body.insert(flag.into(), json!(want.events.iter().any(|e| e == event)));
        }
        body.insert("enable_ssl_verification".into(), json!(true));
        Value::Object(body)
    }
}

/// A GitLab event name from a mapping key: `push`, `merge_request.open` →
/// `merge_request`, `Push Hook` → `push`, `build` → `job`.
pub fn event_of_key(key: &str) -> String {
    let base = key.split('.').next().unwrap_or(key);
    let base = base.strip_suffix(" Hook").unwrap_or(base);
    let name = base.trim().to_ascii_lowercase().replace(' ', "_");
    match name.as_str() {
        "build" => "job".into(),
        "tag" => "tag_push".into(),
        "merge_requests" | "mr" => "merge_request".into(),
        "issues" => "issue".into(),
        "releases" => "release".into(),
        "wiki" => "wiki_page".into(),
        _ => name,
    }
}

impl Forge for Gitlab {
    fn service(&self) -> &'static str {
        "GitLab"
    }

    fn describe(&self) -> String {
        format!("GitLab {} {}", self.noun(), self.id)
    }

    fn resource_path(&self) -> String {
        format!("/{}/{}", self.kind, encode(&self.id))
    }

    fn list_path(&self) -> String {
        format!("{}/hooks?per_page=100", self.resource_path())
    }

    fn known_events(&self) -> Vec<&'static str> {
        EVENTS.iter().map(|(e, _)| *e).collect()
    }

    fn event_of_key(&self, key: &str) -> Option<String> {
        let name = event_of_key(key);
        EVENTS.iter().any(|(e, _)| *e == name).then_some(name)
    }

    fn all_events(&self) -> Vec<String> {
        self.known_events().into_iter().map(String::from).collect()
    }

    fn parse_hook(&self, v: &Value) -> Hook {
        let events = EVENTS
            .iter()
            .filter(|(_, flag)| v.get(*flag).and_then(Value::as_bool) == Some(true))
            .map(|(e, _)| e.to_string())
            .collect();
        let alert = v.get("alert_status").and_then(Value::as_str).unwrap_or("executable");
        let until = v.get("disabled_until").and_then(Value::as_str).unwrap_or("");
        let mut problems = Vec::new();
        match alert {
            "disabled" => problems.push("disabled by GitLab after repeated failed deliveries (alert_status: disabled); fix the receiver, then re-enable it in the hook's settings or run `hooks install` again".to_string()),
            "temporarily_disabled" => problems.push(format!(
                "temporarily disabled by GitLab after failed deliveries{}",
                if until.is_empty() { String::new() } else { format!(" (until {until})") }
            )),
            _ => {}
        }
        if v.get("enable_ssl_verification").and_then(Value::as_bool) == Some(false) {
            problems.push("SSL verification is off".to_string());
        }
        Hook {
            id: id_text(v.get("id")),
            url: v.get("url").and_then(Value::as_str).unwrap_or("").to_string(),
            events,
            all_events: false,
            state: if alert == "executable" { "active" } else { "disabled" },
            problems,
        }
    }

    fn create(&self, want: &Want) -> (Method, String, Value) {
        (Method::Post, format!("{}/hooks", self.resource_path()), self.body(want))
    }

    fn update(&self, id: &str, want: &Want) -> (Method, String, Value) {
        (
            Method::Put,
            format!("{}/hooks/{}", self.resource_path(), encode(id)),
            self.body(want),
        )
    }

    fn delete_path(&self, id: &str) -> String {
        format!("{}/hooks/{}", self.resource_path(), encode(id))
    }

    fn admin_advice(&self) -> String {
        if self.kind == "projects" {
            "the token needs the Maintainer (or Owner) role on the project and the `api` scope".into()
        } else {
            "the token needs the Owner role on the group and the `api` scope (group hooks are a GitLab Premium feature)"
                .into()
        }
    }
}

/// A hook id as text (GitLab and GitHub send numbers).
pub fn id_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Number(_)) => v.to_string(),
        _ => String::new(),
    }
}
