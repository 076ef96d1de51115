//! `POST /hooks/{source}`: a delivery in, tasks out.
//!
//! Order of checks: unknown source (404), IP allowlist (403), body size (413),
//! signature or token (401), content type (415), body and event (400). Only
//! then are rules evaluated and tasks queued, all of a delivery's or none.

use super::access::client_addr;
use super::body;
use super::error::ApiError;
use super::AppState;
use crate::auth::{self, ip};
use crate::engine::{NewTask, SubmitError};
use crate::mapping::event::{action_of, event_of};
use crate::mapping::{Delivery, Verdict};
use crate::process::program::Invocation;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Serialize)]
struct Accepted<'a> {
    delivery_id: &'a str,
    source: &'a str,
    event: &'a str,
    tasks: Vec<TaskRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[derive(Serialize)]
struct TaskRef {
    id: Uuid,
    program: String,
    status: &'static str,
    url: String,
}

pub async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let source_name = path.into_inner();
    let config = state.config.clone();
    let Some(source) = config.sources.get(&source_name) else {
        return Err(ApiError::NotFound(format!("there is no source named `{source_name}`")));
    };
    if let Some(allowed) = &source.allow_ips {
        let client = client_addr(&req, &state);
        if !ip::contains(allowed, client) {
            tracing::warn!(source = %source_name, %client, "delivery refused: address not in allow_ips");
            return Err(ApiError::Forbidden(format!(
                "address {client} is not in `allow_ips` of source `{source_name}`"
            )));
        }
    }
    let headers = req.headers();
    let raw = body::read(headers, payload, config.server.max_body).await?;
    let query: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
    if let Err(e) = auth::verify(&source.auth, headers, &query, &raw, std::time::SystemTime::now()) {
        tracing::warn!(source = %source_name, reason = %e, "delivery refused");
        return Err(ApiError::Unauthorized(format!("{e}")));
    }
    let parsed = body::parse(headers, &raw)?;
    let event = event_of(&source.event, headers, &parsed.json).map_err(ApiError::BadRequest)?;
    let action = action_of(&parsed.json);
    if let Some(answer) = source.challenge(&parsed.json) {
        return Ok(HttpResponse::Ok().json(answer));
    }
    let delivery_id: String = source.delivery_id(headers, &parsed.json).unwrap_or_else(|| Uuid::new_v4().to_string());

    let delivery = Delivery {
        source: &source_name,
        event: &event.name,
        raw_event: event.raw.as_deref(),
        action,
        body: &parsed.json,
        headers,
        query: &query,
    };
    let matches = source.routes.evaluate(&delivery, |mapping, rule, verdict| match verdict {
        Verdict::Error(e) => tracing::warn!(
            %delivery_id, mapping = %mapping.key, rule = rule.index, error = %e,
            "condition could not be evaluated; counted as not matched"
        ),
        v => tracing::debug!(%delivery_id, mapping = %mapping.key, rule = rule.index, verdict = ?v, "rule judged"),
    });

    if matches.is_empty() {
        tracing::info!(source = %source_name, event = %event.name, %delivery_id, "delivery ignored: no rule matched");
        return Ok(HttpResponse::Ok().json(Accepted {
            delivery_id: &delivery_id,
            source: &source_name,
            event: &event.name,
            tasks: Vec::new(),
            message: Some(format!("no rule matched event `{}` of source `{source_name}`; nothing was run", event.name)),
        }));
    }

    let shared_delivery: Arc<str> = delivery_id.as_str().into();
    let shared_event: Arc<str> = event.name.as_str().into();
    let mut tasks = Vec::with_capacity(matches.len());
    let mut refs = Vec::with_capacity(matches.len());
    for m in matches {
        let id = Uuid::new_v4();
        let task_id = id.to_string();
        let inv = Invocation {
            source: &source_name,
            event: &event.name,
            task_id: &task_id,
            delivery_id: &delivery_id,
            payload: &parsed.stdin,
            params: &m.params,
        };
        refs.push(TaskRef { id, program: m.program.name.clone(), status: "queued", url: format!("/tasks/{id}") });
        tasks.push(NewTask {
            id,
            delivery_id: shared_delivery.clone(),
            source: source.name.clone(),
            event: shared_event.clone(),
            argv: m.program.argv(&inv),
            env: m.program.env(&inv),
            params: m.params.to_vec(),
            program: m.program,
            body: parsed.stdin.clone(),
        });
    }
    match state.engine.submit(tasks) {
        Ok(()) => {}
        Err(SubmitError::QueueFull) => {
            tracing::warn!(source = %source_name, %delivery_id, "delivery refused: the task queue is full");
            return Err(ApiError::QueueFull);
        }
        Err(SubmitError::ShuttingDown) => return Err(ApiError::ShuttingDown),
    }
    tracing::info!(source = %source_name, event = %event.name, %delivery_id, tasks = refs.len(), "delivery accepted");
    Ok(HttpResponse::Accepted().json(Accepted {
        delivery_id: &delivery_id,
        source: &source_name,
        event: &event.name,
        tasks: refs,
        message: None,
    }))
}
