//! Parsing a delivery's body: JSON, or a form whose `payload` field holds
//! JSON (GitHub's form mode), or (for a provider that takes them, Slack's
//! slash commands) a plain form, into a value holding what judging reads.

use super::Refused;
use crate::headers::Headers;
use crate::mapping::wanted::Wanted;
use bytes::Bytes;

/// A parsed body: the JSON value, and the JSON text handlers get on stdin.
pub struct Parsed {
    pub json: serde_json::Value,
    pub stdin: Bytes,
}

/// Parses `body` into a value holding the `wanted` parts (all of it is checked).
/// With `plain_forms`, a form without `payload` becomes a JSON object of its fields.
pub fn parse(headers: &dyn Headers, body: &Bytes, wanted: &Wanted, plain_forms: bool) -> Result<Parsed, Refused> {
    let content_type = headers.get("content-type").unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let is_json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        let json = wanted
            .parse(body)
            .map_err(|e| Refused::BadRequest(format!("the body is not valid JSON: {e}")))?;
        return Ok(Parsed {
            json,
            stdin: body.clone(),
        });
    }
    if essence == "application/x-www-form-urlencoded" {
        let payload = form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned());
        let payload = match payload {
            Some(p) => p,
            None if plain_forms => {
                let fields: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(body)
                    .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                    .collect();
                let json = serde_json::Value::Object(fields);
                return Ok(Parsed {
                    stdin: Bytes::from(json.to_string()),
                    json,
                });
            }
            None => {
                return Err(Refused::BadRequest(
                    "the form body has no `payload` field holding JSON".into(),
                ))
            }
        };
        let json = wanted
            .parse(payload.as_bytes())
            .map_err(|e| Refused::BadRequest(format!("the form's `payload` field is not valid JSON: {e}")))?;
        return Ok(Parsed {
            json,
            stdin: Bytes::from(payload),
        });
    }
    let shown = if content_type.is_empty() {
        "none".to_string()
    } else {
        format!("`{}`", crate::logging::escape(content_type))
    };
    Err(Refused::UnsupportedMediaType(format!(
        "the content type must be application/json or application/x-www-form-urlencoded (got {shown})"
    )))
}
