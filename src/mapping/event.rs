//! The event name of a delivery, as each provider sends it.

use super::params::{lookup, Step};
use super::wanted::Wanted;
use actix_web::http::header::HeaderMap;
use serde_json::Value;

/// Where a source's event name comes from.
#[derive(Debug, Clone)]
pub enum EventSpec {
    /// A header that must be present (`X-GitHub-Event`, or a generic source's `event.header`).
    Header(String),
    /// `X-Gitlab-Event` normalised (`Push Hook` → `push`), else the body's `object_kind`.
    Gitlab,
    /// `X-Jira-Event-Type`, else the body's `webhookEvent`.
    Jira,
    /// Slack: the body's `event.type` (Events API), else its top-level `type`
    /// (`url_verification`, interactive payloads such as `block_actions`).
    Slack,
    /// A field of the body (Stripe's `type`, a standard or generic source's `event.field`).
    Field(Vec<Step>),
    /// No event in the delivery: always `default`.
    Fixed,
}

/// A delivery's event: the name mappings match, and the raw value when it differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub raw: Option<String>,
}

/// Reads the event; the error is the 400 message.
pub fn event_of(spec: &EventSpec, headers: &HeaderMap, body: &Value) -> Result<Event, String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let plain = |name: String| Event { name, raw: None };
    match spec {
        EventSpec::Header(name) => match header(name) {
            Some(v) if !v.is_empty() => Ok(plain(v.to_string())),
            _ => Err(format!("the `{name}` header is missing")),
        },
        EventSpec::Gitlab => {
            if let Some(raw) = header("X-Gitlab-Event").filter(|v| !v.is_empty()) {
                return Ok(Event {
                    name: normalise_gitlab(raw),
                    raw: Some(raw.to_string()),
                });
            }
            match body.get("object_kind").and_then(Value::as_str) {
                Some("build") => Ok(plain("job".to_string())),
                Some(kind) if !kind.is_empty() => Ok(plain(kind.to_string())),
                _ => Err("the `X-Gitlab-Event` header is missing and the body has no `object_kind`".to_string()),
            }
        }
        EventSpec::Jira => {
            if let Some(v) = header("X-Jira-Event-Type").filter(|v| !v.is_empty()) {
                return Ok(plain(v.to_string()));
            }
            match body.get("webhookEvent").and_then(Value::as_str) {
                Some(e) if !e.is_empty() => Ok(plain(e.to_string())),
                _ => Err("the body has no `webhookEvent` and no `X-Jira-Event-Type` header was sent".to_string()),
            }
        }
        EventSpec::Slack => {
            let name = match body.get("event") {
                Some(Value::Object(event)) => event.get("type"),
                _ => body.get("type"),
            };
            match name.and_then(Value::as_str) {
                Some(t) if !t.is_empty() => Ok(plain(t.to_string())),
                // Slash commands are forms with a `command` field and no type.
                _ if body.get("command").and_then(Value::as_str).is_some() => Ok(plain("slash_command".to_string())),
                _ => Err("the body has no `event.type`, no `type` and no slash `command`".to_string()),
            }
        }
        EventSpec::Field(path) => match lookup(body, path) {
            Some(Value::String(s)) if !s.is_empty() => Ok(plain(s.clone())),
            Some(Value::Number(n)) => Ok(plain(n.to_string())),
            _ => Err("the body has no event name in the configured `event.field`".to_string()),
        },
        EventSpec::Fixed => Ok(plain("default".to_string())),
    }
}

/// `Push Hook` → `push`, `Merge Request Hook` → `merge_request`, `Job Hook` → `job`.
pub fn normalise_gitlab(raw: &str) -> String {
    let base = raw.strip_suffix(" Hook").unwrap_or(raw);
    base.trim().to_ascii_lowercase().replace(' ', "_")
}

impl EventSpec {
    /// Adds what [`event_of`] and [`action_of`] read from a body to `wanted`.
    pub fn read_from_body(&self, wanted: &mut Wanted) {
        wanted.add_key("action");
        match self {
            EventSpec::Gitlab => wanted.add_key("object_kind"),
            EventSpec::Jira => wanted.add_key("webhookEvent"),
            EventSpec::Slack => {
                for key in ["event", "type", "command"] {
                    wanted.add_key(key);
                }
            }
            EventSpec::Field(path) => wanted.add(path),
            EventSpec::Header(_) | EventSpec::Fixed => {}
        }
    }
}

/// The body's top-level `action` string, or "".
pub fn action_of(body: &Value) -> &str {
    body.get("action").and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_event_type_then_top_level_type() {
        let h = HeaderMap::new();
        let callback = serde_json::json!({"type": "event_callback", "event": {"type": "app_mention"}});
        assert_eq!(event_of(&EventSpec::Slack, &h, &callback).unwrap().name, "app_mention");
        let handshake = serde_json::json!({"type": "url_verification", "challenge": "x"});
        assert_eq!(
            event_of(&EventSpec::Slack, &h, &handshake).unwrap().name,
            "url_verification"
        );
        let err = event_of(&EventSpec::Slack, &h, &serde_json::json!({"event": {}})).unwrap_err();
        assert_eq!(err, "the body has no `event.type`, no `type` and no slash `command`");
    }

    #[test]
    fn gitlab_names() {
        assert_eq!(normalise_gitlab("Push Hook"), "push");
        assert_eq!(normalise_gitlab("Merge Request Hook"), "merge_request");
        assert_eq!(normalise_gitlab("Job Hook"), "job");
        assert_eq!(normalise_gitlab("Tag Push Hook"), "tag_push");
    }
}
