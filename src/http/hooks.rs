//! `POST /hooks/{source}`: a delivery in, tasks out, and a record of how it
//! was judged.
//!
//! Order of checks: unknown source (404), IP allowlist (403), body size (413),
//! signature or token (401), content type (415), body and event (400), then
//! dedup, rules, and the queue (503). A delivery's tasks are queued all
//! together or not at all. Every request leaves a record in the delivery log,
//! refused ones included (dry runs excepted).

use super::access::client_addr;
use super::body;
use super::error::ApiError;
use super::AppState;
use crate::auth;
use crate::config::{DedupKey, Source};
use crate::delivery::dedup::Seen;
use crate::delivery::record::{mask_headers, mask_query, params_json, rule_traces};
use crate::delivery::{Outcome, Record};
use crate::engine::{NewTask, SubmitError};
use crate::mapping::event::{action_of, event_of, Event};
use crate::mapping::{Delivery, Verdict};
use crate::process::program::Invocation;
use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

/// The request's id: its `X-Request-Id` when sent (and sane), else a new one.
pub(crate) fn request_id(req: &HttpRequest) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| Uuid::new_v4().simple().to_string())
}

/// Everything under `/hooks`: `POST /hooks/<source>` is a delivery; any other
/// method there is a 405, any other path a 404.
pub async fn entry(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(source) = source_in_path(req.path()) else {
        return super::not_found(req).await;
    };
    if req.method() != actix_web::http::Method::POST {
        return super::method_not_allowed(req).await;
    }
    Ok(receive(req, source, payload, state).await)
}

/// The (percent-decoded) source name of `/hooks/<source>`.
fn source_in_path(path: &str) -> Option<String> {
    let tail = path.strip_prefix("/hooks/")?;
    if tail.is_empty() || tail.contains('/') {
        return None;
    }
    let name = percent_encoding::percent_decode_str(tail).decode_utf8().ok()?;
    Some(name.into_owned())
}

async fn receive(req: HttpRequest, source: String, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let rid = request_id(&req);
    // Every log line of the delivery names `request_id` itself: a tracing
    // span per request cost more than the rest of an ignored delivery's logging.
    let mut response = receive_with_id(req, source, payload, state, rid.clone()).await;
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&rid) {
        response
            .headers_mut()
            .insert(actix_web::http::header::HeaderName::from_static("x-request-id"), v);
    }
    response
}

async fn receive_with_id(
    req: HttpRequest,
    source_name: String,
    payload: web::Payload,
    state: web::Data<AppState>,
    rid: String,
) -> HttpResponse {
    let query: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let dry_run = super::query_flag(&query, "dry_run");
    let client = client_addr(&req, &state);
    let config = state.config();
    let source = config.sources.get(&source_name);
    // Mask whatever carries this source's secrets, besides the usual names.
    let (secret_headers, secret_query) = source.map(|s| s.auth.secret_carriers()).unwrap_or_default();
    let mut rec = Record::new(
        &source_name,
        client.to_string(),
        mask_headers(req.headers(), &secret_headers),
        mask_query(&query, &secret_query),
    );
    rec.request_id = rid;
    let result = match source {
        None => Err(ApiError::NotFound(format!("there is no source named `{source_name}`"))),
        Some(source) => receive_from(&req, payload, &state, source, client, &query, dry_run, &mut rec).await,
    };
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(source = %source_name, %client, request_id = %rec.request_id, reason = %e, "delivery refused");
            rec.outcome = Outcome::Rejected;
            rec.reason = Some(e.to_string());
            state.metrics.rejection(e.reason());
            e.error_response()
        }
    };
    if !dry_run {
        state.metrics.delivery(source.map(|s| &s.name), rec.outcome.as_str());
        if rec.outcome == Outcome::Duplicate {
            if let Some(s) = source {
                state.metrics.dedup_hit(&s.name);
            }
        }
        rec.status = response.status().as_u16();
        let persisted = rec.persisted;
        state.deliveries.insert(rec, persisted);
    }
    response
}

#[allow(clippy::too_many_arguments)]
async fn receive_from(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    source: &Arc<Source>,
    client: crate::auth::ip::Client,
    query: &[(String, String)],
    dry_run: bool,
    rec: &mut Record,
) -> Result<HttpResponse, ApiError> {
    if let Some(allowed) = &source.allow_ips {
        if !client.is_in(allowed) {
            return Err(ApiError::Forbidden(format!(
                "address {client} is not in `allow_ips` of source `{}`",
                source.name
            )));
        }
    }
    let headers = req.headers();
    let raw = body::read(headers, payload, state.config().server.max_body).await?;
    rec.body_size = raw.len();
    auth::verify(&source.auth, headers, query, &raw, std::time::SystemTime::now()).map_err(|e| {
        ApiError::BadCredentials {
            message: e.to_string(),
            basic: matches!(source.auth, auth::Auth::Basic { .. }),
        }
    })?;
    let parsed = body::parse(
        headers,
        &raw,
        &source.body,
        source.provider == crate::config::Provider::Slack,
    )?;
    if let Some(answer) = source.challenge(&parsed.json) {
        rec.outcome = Outcome::Ignored;
        rec.reason = Some("handshake answered; nothing to run".into());
        return Ok(HttpResponse::Ok().json(answer));
    }
    let event = event_of(&source.event, headers, &parsed.json).map_err(ApiError::BadRequest)?;
    rec.event = Some(event.name.clone());
    rec.raw_event = event.raw.clone();
    let provider_id = source.delivery_id(headers, &parsed.json);
    if let Some(id) = &provider_id {
        rec.delivery_id = id.clone();
        if !state.deliveries.contains(id) {
            rec.id = id.clone();
        }
    }
    let parts = Parts {
        event: &event,
        json: &parsed.json,
        stdin: &parsed.stdin,
        headers,
        query,
    };
    if dry_run {
        return Ok(dry_run_answer(source, &parts, rec));
    }
    let wait = wait_for(query, source, &parts)?;

    let dedup_key = source.dedup.as_ref().and_then(|d| {
        let key = match d.key {
            DedupKey::DeliveryId => provider_id.clone()?,
            DedupKey::BodySha256 => hex::encode(Sha256::digest(&raw)),
        };
        Some((key, d.window))
    });
    if let Some((key, window)) = &dedup_key {
        if let Seen::Repeat(first) = state.dedup.check(&source.name, key, *window, &rec.id) {
            rec.outcome = Outcome::Duplicate;
            rec.reason = Some(format!(
                "already received inside the dedup window as delivery `{first}`; nothing was run"
            ));
            rec.duplicate_of = Some(first.clone());
            let task_ids = state
                .deliveries
                .get(&first)
                .map(|r| r.task_ids.clone())
                .unwrap_or_default();
            tracing::info!(source = %source.name, delivery_id = %rec.delivery_id, request_id = %rec.request_id, first = %first, "duplicate delivery: nothing run");
            return Ok(HttpResponse::Ok().json(json!({
                "delivery_id": rec.delivery_id,
                "source": source.name,
                "event": event.name,
                "duplicate": true,
                "first_delivery": first,
                "tasks": task_ids.iter().map(|id| json!({"id": id, "url": format!("/tasks/{id}")})).collect::<Vec<_>>(),
                "message": "this delivery was already received; nothing was run",
            })));
        }
    }
    let result = dispatch(state, source, &parts, rec).await;
    if let (Ok(_), Some(wait), Outcome::Accepted) = (&result, wait, rec.outcome) {
        let deadline = tokio::time::Instant::now() + wait;
        if state.engine.wait_finished(&rec.task_ids, deadline).await {
            rec.keep_body(parsed.stdin.clone());
            let tasks: Vec<_> = rec.task_ids.iter().filter_map(|id| state.engine.task(id)).collect();
            return Ok(HttpResponse::Ok().json(json!({
                "delivery_id": rec.delivery_id,
                "source": source.name,
                "event": event.name,
                "finished": true,
                "tasks": tasks,
            })));
        }
    }
    if result.is_err() {
        // Not accepted after all: a retry must run.
        if let Some((key, _)) = &dedup_key {
            state.dedup.forget(&source.name, key);
        }
    } else if rec.body_len() == 0 {
        rec.keep_body(parsed.stdin.clone());
    }
    result
}

/// The longest `?wait=` accepted.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// How long to hold the answer: `?wait=30s`, else the longest `wait` of the programs that would run.
fn wait_for(
    query: &[(String, String)],
    source: &Source,
    parts: &Parts<'_>,
) -> Result<Option<std::time::Duration>, ApiError> {
    if let Some((_, text)) = query.iter().find(|(k, _)| k == "wait") {
        let wait = crate::config::parse_duration(text).map_err(|e| ApiError::BadRequest(format!("`wait`: {e}")))?;
        if wait > MAX_WAIT {
            return Err(ApiError::BadRequest(format!(
                "`wait` may be at most {}",
                humantime::format_duration(MAX_WAIT)
            )));
        }
        return Ok(Some(wait));
    }
    if !source.routes.any_program_waits() {
        return Ok(None);
    }
    let judgement = source.routes.judge(&parts.delivery(&source.name));
    Ok(judgement.matches.iter().filter_map(|m| m.program.wait).max())
}

/// What rules and handlers see of a delivery.
pub(crate) struct Parts<'a> {
    pub event: &'a Event,
    pub json: &'a Value,
    /// The JSON text handlers get on stdin.
    pub stdin: &'a Bytes,
    pub headers: &'a HeaderMap,
    pub query: &'a [(String, String)],
}

impl Parts<'_> {
    pub(crate) fn delivery<'a>(&'a self, source: &'a str) -> Delivery<'a> {
        Delivery {
            source,
            event: &self.event.name,
            raw_event: self.event.raw.as_deref(),
            action: action_of(self.json),
            body: self.json,
            headers: self.headers,
            query: self.query,
        }
    }
}

/// Judges a delivery and queues its tasks; fills in the record.
pub(super) async fn dispatch(
    state: &AppState,
    source: &Source,
    parts: &Parts<'_>,
    rec: &mut Record,
) -> Result<HttpResponse, ApiError> {
    let delivery = parts.delivery(&source.name);
    let judgement = source.routes.judge(&delivery);
    for t in &judgement.trace {
        if let Verdict::Error(e) = &t.verdict {
            tracing::warn!(delivery_id = %rec.delivery_id, request_id = %rec.request_id, mapping = %t.mapping.key, rule = t.rule, error = %e,
                "condition could not be evaluated; counted as not matched");
        }
    }
    rec.params = judgement.params.clone();
    rec.rules = rule_traces(&judgement);
    let event = &parts.event.name;
    if judgement.matches.is_empty() {
        rec.outcome = Outcome::Ignored;
        rec.reason = Some(if judgement.trace.is_empty() {
            format!("no mapping of source `{}` has a key for event `{event}`", source.name)
        } else {
            "no rule matched".to_string()
        });
        tracing::debug!(source = %source.name, %event, delivery_id = %rec.delivery_id, request_id = %rec.request_id, "delivery ignored: no rule matched");
        let message = format!(
            "no rule matched event `{event}` of source `{}`; nothing was run (see /deliveries/{})",
            source.name, rec.id
        );
        return Ok(HttpResponse::Ok().json(Answer {
            delivery_id: &rec.delivery_id,
            event,
            message: Some(message),
            source: &source.name,
            tasks: &[],
        }));
    }

    let shared_delivery: Arc<str> = rec.delivery_id.as_str().into();
    let shared_event: Arc<str> = event.as_str().into();
    let mut tasks = Vec::with_capacity(judgement.matches.len());
    let mut refs = Vec::with_capacity(judgement.matches.len());
    for m in judgement.matches {
        let trace_index = m.trace_index;
        let id = Uuid::new_v4();
        let task_id = id.to_string();
        let inv = Invocation {
            source: &source.name,
            event,
            task_id: &task_id,
            delivery_id: &rec.delivery_id,
            request_id: &rec.request_id,
            payload: parts.stdin,
            params: &m.params,
        };
        let argv = m.program.argv(&inv);
        if let Err(why) = m.program.check_runnable(&inv, &argv) {
            // Nothing of the delivery is queued; the trace says which rule could not run.
            let t = &mut rec.rules[trace_index];
            t.result = format!("matched, but cannot run: {why}");
            let message = format!(
                "rule {} of mapping `{}` matched, but program `{}` cannot be run: {why}; nothing of this delivery was queued",
                t.rule, t.mapping, t.program
            );
            return Err(ApiError::Unprocessable(message));
        }
        refs.push(TaskRef {
            id,
            program: m.program.clone(),
            status: "queued",
        });
        tasks.push(NewTask {
            id,
            delivery_id: shared_delivery.clone(),
            request_id: rec.request_id.as_str().into(),
            source: source.name.clone(),
            event: shared_event.clone(),
            argv,
            key: m.program.key(&inv),
            params: m.params.to_vec(),
            program: m.program,
            body: parts.stdin.clone(),
            record_id: Some(rec.id.clone()),
            rerun_of: None,
        });
    }
    rec.task_ids = tasks.iter().map(|t| t.id).collect();
    rec.outcome = Outcome::Accepted;
    // The record is committed with the tasks, before the answer exists.
    rec.status = 202;
    rec.keep_body(parts.stdin.clone());
    if let Err(e) = queue_tasks(state, tasks, Some(&mut *rec)).await {
        rec.task_ids.clear();
        rec.drop_body();
        return Err(e);
    }
    tracing::info!(source = %source.name, %event, delivery_id = %rec.delivery_id, request_id = %rec.request_id, tasks = refs.len(), "delivery accepted");
    Ok(HttpResponse::Accepted().json(Answer {
        delivery_id: &rec.delivery_id,
        event,
        message: None,
        source: &source.name,
        tasks: &refs,
    }))
}

/// The answer to a delivery that was judged: what it was and what it started.
#[derive(serde::Serialize)]
struct Answer<'a> {
    delivery_id: &'a str,
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    source: &'a str,
    tasks: &'a [TaskRef],
}

/// A queued task in [`Answer`].
struct TaskRef {
    id: Uuid,
    program: Arc<crate::process::Program>,
    status: &'static str,
}

impl serde::Serialize for TaskRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("TaskRef", 4)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("program", &self.program.name)?;
        out.serialize_field("status", self.status)?;
        out.serialize_field("url", &format_args!("/tasks/{}", self.id))?;
        out.end()
    }
}

/// Queues tasks; with a store, only once they (and the delivery record) are on
/// disk, so a `202` is never answered for work a crash could lose.
pub(super) async fn queue_tasks(
    state: &AppState,
    tasks: Vec<NewTask>,
    rec: Option<&mut Record>,
) -> Result<(), ApiError> {
    let reserved = state.engine.reserve(tasks).map_err(|e| match e {
        SubmitError::QueueFull => ApiError::QueueFull,
        SubmitError::ShuttingDown => ApiError::ShuttingDown,
    })?;
    if let Some(store) = state.deliveries.store() {
        let mut ops = reserved.ops();
        let rec = rec.inspect(|r| ops.insert(0, r.op()));
        if let Err(e) = store.commit(ops).await {
            let request_id = rec.as_ref().map_or("", |r| r.request_id.as_str());
            tracing::error!(error = %e, request_id, "delivery refused: the store cannot write");
            return Err(ApiError::StoreUnavailable(e.to_string()));
        }
        if let Some(r) = rec {
            r.persisted = true;
        }
    }
    state.engine.start(reserved);
    Ok(())
}

/// `?dry_run=1`: the full trace and the argv each matching rule would run; nothing runs.
fn dry_run_answer(source: &Source, parts: &Parts<'_>, rec: &Record) -> HttpResponse {
    HttpResponse::Ok().json(explain(source, parts, &rec.delivery_id))
}

/// The trace of how a delivery would be judged, with the argv of each match.
pub fn explain(source: &Source, parts: &Parts<'_>, delivery_id: &str) -> Value {
    let delivery = parts.delivery(&source.name);
    let judgement = source.routes.judge(&delivery);
    let params = crate::delivery::record::ParamsByKey(params_json(&judgement.params));
    let mut rules = rule_traces(&judgement);
    for m in &judgement.matches {
        let inv = Invocation {
            source: &source.name,
            event: &parts.event.name,
            task_id: "<task_id>",
            delivery_id,
            request_id: "<request_id>",
            payload: parts.stdin,
            params: &m.params,
        };
        rules[m.trace_index].argv = Some(m.program.argv(&inv));
    }
    json!({
        "dry_run": true,
        "delivery_id": delivery_id,
        "source": source.name,
        "event": parts.event.name,
        "action": action_of(parts.json),
        "params": params,
        "rules": rules,
        "would_run": judgement.matches.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::source_in_path;

    #[test]
    fn the_source_is_the_one_segment_after_hooks() {
        assert_eq!(source_in_path("/hooks/github").as_deref(), Some("github"));
        assert_eq!(source_in_path("/hooks/my%20ci").as_deref(), Some("my ci"));
        for none in [
            "/hooks",
            "/hooks/",
            "/hooks/a/b",
            "/hooks/a/",
            "/hooksx/a",
            "/hooks/%ff",
        ] {
            assert_eq!(source_in_path(none), None, "{none}");
        }
    }
}
