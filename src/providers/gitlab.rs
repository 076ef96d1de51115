//! GitLab: the event in `X-Gitlab-Event` (`Push Hook` → `push`), else the
//! body's `object_kind`; the delivery id in `Idempotency-Key` (GitLab 17.4+,
//! the same across retries) or `X-Gitlab-Event-UUID`; the secret token in
//! `X-Gitlab-Token`, and/or a signing token checked as Standard Webhooks.

use super::{header, plain, Provider, SourceKeys, Written};
use crate::auth::Auth;
use crate::headers::Headers;
use crate::mapping::event::{Event, EventSpec};
use serde_json::Value;

#[derive(Debug)]
pub struct Gitlab;

/// `Push Hook` → `push`, `Merge Request Hook` → `merge_request`, `Job Hook` → `job`.
pub fn normalise(raw: &str) -> String {
    let base = raw.strip_suffix(" Hook").unwrap_or(raw);
    base.trim().to_ascii_lowercase().replace(' ', "_")
}

/// GitLab's `X-Gitlab-Event` for an event name: `push` → `Push Hook`,
/// `merge_request` → `Merge Request Hook`; a value already ending in ` Hook`
/// is sent as given.
pub fn event_header(event: &str) -> String {
    if event.ends_with(" Hook") {
        return event.to_string();
    }
    let words: Vec<String> = event
        .split(['_', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect();
    format!("{} Hook", words.join(" "))
}

fn read_event(headers: &dyn Headers, body: &Value) -> Result<Event, String> {
    if let Some(raw) = header(headers, "X-Gitlab-Event") {
        return Ok(Event {
            name: normalise(raw),
            raw: Some(raw.to_string()),
        });
    }
    match body.get("object_kind").and_then(Value::as_str) {
        Some("build") => Ok(plain("job")),
        Some(kind) if !kind.is_empty() => Ok(plain(kind)),
        _ => Err("the `X-Gitlab-Event` header is missing and the body has no `object_kind`".to_string()),
    }
}

impl Provider for Gitlab {
    fn name(&self) -> &'static str {
        "gitlab"
    }

    fn keys(&self) -> &'static [&'static str] {
        &[
            "token",
            "tokens",
            "secrets",
            "signing_secret",
            "signing_secrets",
            "tolerance",
        ]
    }

    fn auth(&self, keys: &mut dyn SourceKeys) -> Option<Auth> {
        // GitLab calls its token the "secret token": `secrets` lists tokens.
        let token = keys.secrets(&["token", "tokens", "secrets"]);
        let signing = keys.signing_keys(&["signing_secret", "signing_secrets"]);
        let token_auth = |secrets| Auth::Token {
            secrets,
            header: Some("X-Gitlab-Token".into()),
            query: None,
        };
        match (token, signing) {
            (Written::Invalid, _) | (_, Written::Invalid) => None,
            (Written::Missing, Written::Missing) => {
                keys.error(
                    None,
                    "provider `gitlab` needs a `token` (the webhook's secret token, sent as `X-Gitlab-Token`)".into(),
                );
                None
            }
            (Written::Given(tokens), Written::Missing) => {
                if keys.has("tolerance") {
                    keys.error(
                        Some("tolerance"),
                        "`tolerance` applies only to GitLab's signing token (`signing_secret`)".into(),
                    );
                    return None;
                }
                Some(token_auth(tokens))
            }
            (token, Written::Given(signing)) => {
                let signed = Auth::Standard {
                    keys: signing,
                    tolerance: keys.tolerance()?,
                };
                match token {
                    // Both set in GitLab: it sends both, and both must match.
                    Written::Given(tokens) => Some(Auth::All(vec![token_auth(tokens), signed])),
                    _ => Some(signed),
                }
            }
        }
    }

    fn event(&self, _keys: &mut dyn SourceKeys) -> EventSpec {
        EventSpec::Custom {
            read: read_event,
            body_keys: &["object_kind"],
        }
    }

    fn delivery_headers(&self) -> &'static [&'static str] {
        // Idempotency-Key stays the same across retries; it is also the
        // `webhook-id` of signed deliveries.
        &["Idempotency-Key", "X-Gitlab-Event-UUID"]
    }

    fn event_header(&self, event: &str) -> Option<(&'static str, String)> {
        Some(("X-Gitlab-Event", event_header(event)))
    }

    fn normalise_event(&self, raw: &str) -> Option<String> {
        raw.ends_with(" Hook").then(|| normalise(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_both_ways() {
        for (header, name) in [
            ("Push Hook", "push"),
            ("Merge Request Hook", "merge_request"),
            ("Job Hook", "job"),
            ("Tag Push Hook", "tag_push"),
        ] {
            assert_eq!(normalise(header), name);
            assert_eq!(event_header(name), header);
        }
        assert_eq!(event_header("Pipeline Hook"), "Pipeline Hook");
    }

    #[test]
    fn the_header_then_object_kind() {
        let h = crate::headers::HeaderPairs::new();
        let read = |b: Value| read_event(&h, &b).map(|e| e.name);
        assert_eq!(read(serde_json::json!({"object_kind": "build"})), Ok("job".into()));
        assert_eq!(read(serde_json::json!({"object_kind": "push"})), Ok("push".into()));
        assert!(read(serde_json::json!({})).is_err());
        let h: crate::headers::HeaderPairs = [("X-Gitlab-Event", "Pipeline Hook")].into_iter().collect();
        let e = read_event(&h, &serde_json::json!({"object_kind": "x"})).unwrap();
        assert_eq!((e.name.as_str(), e.raw.as_deref()), ("pipeline", Some("Pipeline Hook")));
    }
}
