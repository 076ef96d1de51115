//! Reading a request body within `server.max_body`, and parsing it as JSON.

use super::error::ApiError;
use crate::mapping::wanted::Wanted;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::time::Duration;

/// How long a sender may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the whole body, refusing more than `limit` bytes (413) before reading it all.
pub async fn read(headers: &HeaderMap, mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let capacity = declared.map(|n| n as usize).unwrap_or(8192).min(limit);
    let read_all = async {
        let mut body = BytesMut::with_capacity(capacity);
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("the request body could not be read: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(BODY_TIMEOUT, read_all)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
}

/// A parsed body: the JSON value, and the JSON text handlers get on stdin.
pub struct Parsed {
    pub json: serde_json::Value,
    pub stdin: Bytes,
}

/// Parses a JSON body, or a form body whose `payload` field holds JSON (GitHub's form mode),
/// into a value holding the `wanted` parts (all of it is checked).
/// With `plain_forms` (Slack's slash commands), a form without `payload` becomes a
/// JSON object of its fields.
pub fn parse(headers: &HeaderMap, body: &Bytes, wanted: &Wanted, plain_forms: bool) -> Result<Parsed, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let is_json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        let json = wanted
            .parse(body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
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
                return Err(ApiError::BadRequest(
                    "the form body has no `payload` field holding JSON".into(),
                ))
            }
        };
        let json = wanted
            .parse(payload.as_bytes())
            .map_err(|e| ApiError::BadRequest(format!("the form's `payload` field is not valid JSON: {e}")))?;
        return Ok(Parsed {
            json,
            stdin: Bytes::from(payload),
        });
    }
    let shown = if content_type.is_empty() {
        "none".to_string()
    } else {
        format!("`{content_type}`")
    };
    Err(ApiError::UnsupportedMediaType(format!(
        "the content type must be application/json or application/x-www-form-urlencoded (got {shown})"
    )))
}
