//! Jira: the event in `X-Jira-Event-Type`, else the body's `webhookEvent`;
//! the delivery id in `X-Atlassian-Webhook-Identifier`; a token (Jira
//! Server: `X-Webhook-Token` or `?token=`) or a secret (Jira Cloud:
//! `X-Hub-Signature: sha256=<hex>`).

use super::{header, hub_sha256, plain, Provider, SourceKeys, Written};
use crate::auth::Auth;
use crate::headers::Headers;
use crate::mapping::event::{Event, EventSpec};
use serde_json::Value;

#[derive(Debug)]
pub struct Jira;

fn read_event(headers: &dyn Headers, body: &Value) -> Result<Event, String> {
    if let Some(v) = header(headers, "X-Jira-Event-Type") {
        return Ok(plain(v));
    }
    match body.get("webhookEvent").and_then(Value::as_str) {
        Some(e) if !e.is_empty() => Ok(plain(e)),
        _ => Err("the body has no `webhookEvent` and no `X-Jira-Event-Type` header was sent".to_string()),
    }
}

impl Provider for Jira {
    fn name(&self) -> &'static str {
        "jira"
    }

    fn keys(&self) -> &'static [&'static str] {
        &["token", "tokens", "secret", "secrets"]
    }

    fn auth(&self, keys: &mut dyn SourceKeys) -> Option<Auth> {
        match (keys.secrets(&["token", "tokens"]), keys.secrets(&["secret", "secrets"])) {
            (Written::Invalid, _) | (_, Written::Invalid) => None,
            (Written::Given(tokens), Written::Missing) => Some(Auth::Token {
                secrets: tokens,
                header: Some("X-Webhook-Token".into()),
                query: Some("token".into()),
            }),
            (Written::Missing, Written::Given(secrets)) => Some(hub_sha256(secrets)),
            (Written::Given(_), Written::Given(_)) => {
                keys.error(None, "provider `jira` takes a `token` or a `secret`, not both".into());
                None
            }
            (Written::Missing, Written::Missing) => {
                keys.error(None, "provider `jira` needs a `token` (Jira Server: `X-Webhook-Token` header or `?token=`) or a `secret` (Jira Cloud: `X-Hub-Signature`)".into());
                None
            }
        }
    }

    fn event(&self, _keys: &mut dyn SourceKeys) -> EventSpec {
        EventSpec::Custom {
            read: read_event,
            body_keys: &["webhookEvent"],
        }
    }

    fn delivery_headers(&self) -> &'static [&'static str] {
        &["X-Atlassian-Webhook-Identifier"]
    }

    fn event_header(&self, event: &str) -> Option<(&'static str, String)> {
        Some(("X-Jira-Event-Type", event.to_string()))
    }
}
