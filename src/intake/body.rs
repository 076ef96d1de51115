//! A delivery's body as a payload: its kind (from the Content-Type, the
//! source's `content_type`, or its content), whether the source accepts it
//! (`bodies`), and its parse: JSON (sparse: only what judging reads, see
//! `mapping::wanted`), a form, a multipart body, XML or text. The
//! providers' form mode (a form whose `payload` field holds JSON, and
//! Slack's plain forms) works whatever `bodies` says.

use super::Refused;
use crate::config::Source;
use crate::headers::Headers;
use crate::mapping::wanted::Wanted;
use crate::payload::{form, multipart, xml, Kind, Kinds};
use bytes::Bytes;
use serde_json::Value;
use std::path::PathBuf;

/// A parsed body.
pub struct Parsed {
    /// The payload `payload.*` params read: `null` for an empty body.
    pub json: Value,
    /// What handlers get on stdin, and what is kept for replay: the body as
    /// received, but in the providers' form mode (the `payload` field's JSON,
    /// a plain form's fields as JSON).
    pub stdin: Bytes,
    /// What it was taken as; `None` for an empty body.
    pub kind: Option<Kind>,
    /// The file parts of a multipart body: written for the tasks that read them.
    pub files: Vec<multipart::File>,
    /// A multipart body's boundary (from its Content-Type): kept with its
    /// tasks, so that a file is written again from the same parts.
    pub boundary: Option<String>,
}

/// What a source accepts, and what it reads.
pub struct Accepts<'a> {
    pub source: &'a str,
    /// The parts of a JSON body judging reads.
    pub wanted: &'a Wanted,
    pub bodies: Kinds,
    /// Used instead of the request's Content-Type (`content_type`).
    pub content_type: Option<&'a str>,
    /// A form without `payload` is a delivery made of its fields (Slack).
    pub plain_forms: bool,
}

impl<'a> Accepts<'a> {
    pub fn of(source: &'a Source) -> Self {
        Accepts {
            source: &source.name,
            wanted: &source.body,
            bodies: source.bodies,
            content_type: source.content_type.as_deref(),
            plain_forms: source.provider.plain_forms(),
        }
    }
}

/// Parses `body` as the source takes it; file parts of a multipart body get
/// paths in `uploads()` (the delivery's directory, asked for only then;
/// nothing is written here).
pub fn parse(
    headers: &dyn Headers,
    body: &Bytes,
    accepts: &Accepts<'_>,
    uploads: &dyn Fn() -> PathBuf,
) -> Result<Parsed, Refused> {
    if body.is_empty() {
        return Ok(Parsed {
            json: Value::Null,
            stdin: body.clone(),
            kind: None,
            files: Vec::new(),
            boundary: None,
        });
    }
    let sent = headers
        .get_bytes("content-type")
        .map(String::from_utf8_lossy)
        .filter(|v| !v.trim().is_empty());
    let kind = match accepts.content_type.or(sent.as_deref()) {
        Some(ct) => Kind::of_content_type(ct),
        None => Kind::of_content(body),
    };
    // How the kind was told, for the messages of a refusal (written only then).
    let how = || match (accepts.content_type, &sent) {
        (Some(ct), _) => format!("the source's `content_type` `{ct}`"),
        (None, Some(ct)) => format!("Content-Type `{}`", crate::logging::escape(ct)),
        (None, None) => "judged by its content, without a Content-Type".into(),
    };
    let taken = |json: Value| Parsed {
        json,
        stdin: body.clone(),
        kind: Some(kind),
        files: Vec::new(),
        boundary: None,
    };
    if kind == Kind::Form && (accepts.plain_forms || !accepts.bodies.contains(Kind::Form)) {
        return provider_form(body, accepts, &how);
    }
    if !accepts.bodies.contains(kind) {
        return Err(Refused::UnsupportedMediaType(format!(
            "the body is {kind} ({}), and source `{}` accepts only {}",
            how(),
            accepts.source,
            accepts.bodies
        )));
    }
    match kind {
        Kind::Json => {
            let json = accepts
                .wanted
                .parse(body)
                .map_err(|e| Refused::BadRequest(format!("the body is not valid JSON: {e}")))?;
            Ok(taken(json))
        }
        Kind::Form => {
            let fields =
                form::parse(body).map_err(|e| Refused::BadRequest(format!("the form body is not valid: {e}")))?;
            Ok(taken(Value::Object(fields)))
        }
        Kind::Multipart => {
            // The boundary is in the real header, whatever `content_type` says.
            let boundary = sent
                .as_deref()
                .and_then(multipart::boundary)
                .ok_or_else(|| Refused::BadRequest("the multipart body's Content-Type has no `boundary`".into()))?;
            let parts = multipart::parse(body, &boundary).map_err(Refused::BadRequest)?;
            let (json, files) = multipart::payload(body, &parts, &uploads())
                .map_err(|e| Refused::BadRequest(format!("the multipart body is not valid: {e}")))?;
            Ok(Parsed {
                files,
                boundary: Some(boundary),
                ..taken(json)
            })
        }
        Kind::Xml => {
            let json = xml::parse(body).map_err(|e| Refused::BadRequest(format!("the body is not valid XML: {e}")))?;
            Ok(taken(json))
        }
        Kind::Text => {
            let text =
                std::str::from_utf8(body).map_err(|_| Refused::BadRequest("the body is not UTF-8 text".into()))?;
            Ok(taken(Value::String(text.to_string())))
        }
    }
}

/// A form the providers' way: its `payload` field's JSON (GitHub's and
/// Gitea's form mode; also Slack's interactivity), else, for a provider
/// that takes them, its fields.
fn provider_form(body: &Bytes, accepts: &Accepts<'_>, how: &dyn Fn() -> String) -> Result<Parsed, Refused> {
    let payload = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned());
    let parsed = |json: Value, stdin: Bytes| Parsed {
        json,
        stdin,
        kind: Some(Kind::Form),
        files: Vec::new(),
        boundary: None,
    };
    match payload {
        Some(payload) => {
            let json = accepts
                .wanted
                .parse(payload.as_bytes())
                .map_err(|e| Refused::BadRequest(format!("the form's `payload` field is not valid JSON: {e}")))?;
            Ok(parsed(json, Bytes::from(payload)))
        }
        None if accepts.plain_forms => {
            let fields: serde_json::Map<String, Value> = form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            let json = Value::Object(fields);
            Ok(parsed(json.clone(), Bytes::from(json.to_string())))
        }
        None => Err(Refused::UnsupportedMediaType(format!(
            "the body is a form ({}) without a `payload` field holding JSON, and source `{}` accepts only {} (add `form` to its `bodies` to take plain forms)",
            how(),
            accepts.source,
            accepts.bodies
        ))),
    }
}

/// Whether the body kept for a delivery (its `stdin`) is the JSON of a
/// provider's form, not the form itself: replays read it as JSON.
pub fn kept_as_json(headers: &dyn Headers, accepts: &Accepts<'_>) -> bool {
    let ct = accepts.content_type.map(str::to_string).or_else(|| {
        headers
            .get_bytes("content-type")
            .map(|v| String::from_utf8_lossy(v).into_owned())
    });
    let form = ct.is_some_and(|ct| Kind::of_content_type(&ct) == Kind::Form);
    form && (accepts.plain_forms || !accepts.bodies.contains(Kind::Form))
}
