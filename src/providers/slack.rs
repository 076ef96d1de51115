//! Slack: the Events API's `event.type` (else the top-level `type`, or
//! `slash_command` for a slash command's form), the delivery id in the
//! body's `event_id`, `X-Slack-Signature: v0=...` over the timestamp and
//! body, and the `url_verification` handshake answered with its challenge.

use super::{plain, required, Provider, SourceKeys};
use crate::auth::Auth;
use crate::headers::Headers;
use crate::mapping::event::{Event, EventSpec};
use serde_json::Value;

#[derive(Debug)]
pub struct Slack;

fn read_event(_headers: &dyn Headers, body: &Value) -> Result<Event, String> {
    let name = match body.get("event") {
        Some(Value::Object(event)) => event.get("type"),
        _ => body.get("type"),
    };
    match name.and_then(Value::as_str) {
        Some(t) if !t.is_empty() => Ok(plain(t)),
        // Slash commands are forms with a `command` field and no type.
        _ if body.get("command").and_then(Value::as_str).is_some() => Ok(plain("slash_command")),
        _ => Err("the body has no `event.type`, no `type` and no slash `command`".to_string()),
    }
}

impl Provider for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn keys(&self) -> &'static [&'static str] {
        &["secret", "secrets", "tolerance"]
    }

    fn auth(&self, keys: &mut dyn SourceKeys) -> Option<Auth> {
        let secrets = required(
            keys,
            &["secret", "secrets"],
            "provider `slack` needs a `secret` (the app's signing secret, used to check `X-Slack-Signature`)",
        )?;
        Some(Auth::Slack {
            secrets,
            tolerance: keys.tolerance()?,
        })
    }

    fn event(&self, _keys: &mut dyn SourceKeys) -> EventSpec {
        EventSpec::Custom {
            read: read_event,
            body_keys: &["event", "type", "command"],
        }
    }

    fn delivery_field(&self) -> Option<&'static str> {
        Some("event_id")
    }

    fn handshake(&self, body: &Value) -> Option<Value> {
        if body.get("type")?.as_str()? != "url_verification" {
            return None;
        }
        let challenge = body.get("challenge")?.as_str()?;
        Some(serde_json::json!({ "challenge": challenge }))
    }

    fn handshake_keys(&self) -> &'static [&'static str] {
        &["type", "challenge"]
    }

    fn plain_forms(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_then_top_level_type() {
        let h = crate::headers::HeaderPairs::new();
        let read = |b: Value| read_event(&h, &b);
        let callback = serde_json::json!({"type": "event_callback", "event": {"type": "app_mention"}});
        assert_eq!(read(callback).unwrap().name, "app_mention");
        let handshake = serde_json::json!({"type": "url_verification", "challenge": "x"});
        assert_eq!(read(handshake).unwrap().name, "url_verification");
        let err = read(serde_json::json!({"event": {}})).unwrap_err();
        assert_eq!(err, "the body has no `event.type`, no `type` and no slash `command`");
    }

    #[test]
    fn only_url_verification_is_a_handshake() {
        let body = serde_json::json!({"type": "url_verification", "challenge": "abc", "token": "t"});
        assert_eq!(Slack.handshake(&body), Some(serde_json::json!({"challenge": "abc"})));
        assert_eq!(Slack.handshake(&serde_json::json!({"type": "event_callback"})), None);
    }
}
