//! The event name of a delivery: where a source reads it (an [`EventSpec`],
//! set at load by its provider or its `event:` key) and reading it.

use super::params::{lookup, Step};
use super::wanted::Wanted;
use crate::headers::Headers;
use serde_json::Value;

/// Reads a provider's event its own way (`providers/gitlab.rs`, ...).
pub type ReadEvent = fn(&dyn Headers, &Value) -> Result<Event, String>;

/// Where a source's event name comes from.
#[derive(Debug, Clone)]
pub enum EventSpec {
    /// A header that must be present (`X-GitHub-Event`, or a generic source's `event.header`).
    Header(String),
    /// A field of the body (Stripe's `type`, a standard or generic source's `event.field`).
    Field(Vec<Step>),
    /// No event in the delivery: always `default`.
    Fixed,
    /// A provider's own way (GitLab's header or `object_kind`, ...), reading
    /// these top-level body fields.
    Custom {
        read: ReadEvent,
        body_keys: &'static [&'static str],
    },
}

/// A delivery's event: the name mappings match, and the raw value when it differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub raw: Option<String>,
}

/// Reads the event; the error is the 400 message.
pub fn event_of(spec: &EventSpec, headers: &dyn Headers, body: &Value) -> Result<Event, String> {
    let plain = |name: String| Event { name, raw: None };
    match spec {
        EventSpec::Header(name) => match headers.get(name).map(str::trim) {
            Some(v) if !v.is_empty() => Ok(plain(v.to_string())),
            _ => Err(format!("the `{name}` header is missing")),
        },
        EventSpec::Field(path) => match lookup(body, path) {
            Some(Value::String(s)) if !s.is_empty() => Ok(plain(s.clone())),
            Some(Value::Number(n)) => Ok(plain(n.to_string())),
            _ => Err("the body has no event name in the configured `event.field`".to_string()),
        },
        EventSpec::Fixed => Ok(plain("default".to_string())),
        EventSpec::Custom { read, .. } => read(headers, body),
    }
}

impl EventSpec {
    /// Adds what [`event_of`] and [`action_of`] read from a body to `wanted`.
    pub fn read_from_body(&self, wanted: &mut Wanted) {
        wanted.add_key("action");
        match self {
            EventSpec::Custom { body_keys, .. } => {
                for key in *body_keys {
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
