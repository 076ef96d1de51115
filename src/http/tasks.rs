//! `GET /tasks` and `GET /tasks/{id}`.

use super::access::authorize_api;
use super::error::ApiError;
use super::AppState;
use crate::engine::task::{Status, TaskView};
use crate::engine::{Filter, TaskError};
use crate::process::output::Stream;
use crate::store::record::TaskRecord;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    source: Option<String>,
    event: Option<String>,
    program: Option<String>,
    node: Option<String>,
    id: Option<String>,
    limit: Option<String>,
    before: Option<String>,
    output: Option<String>,
}

/// Where a page of `GET /tasks` starts: below a task, or at a `next` cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    Task(Uuid),
    Cursor(u64),
}

/// What `GET /tasks` was asked for, from its query string alone (whether
/// `before` names a task there is is checked by the handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskListQuery {
    pub status: Option<Status>,
    pub source: Option<String>,
    pub event: Option<String>,
    pub program: Option<String>,
    /// The node that runs or ran it (in a cluster).
    pub node: Option<String>,
    /// The start of the task's id (lower case, hyphenated as ids are shown).
    pub id_prefix: Option<String>,
    /// 1 to 1000, default 50.
    pub limit: usize,
    pub before: Option<Before>,
    /// `output=none`: each task without its output tails (`stdout`, `stderr`
    /// and those of its earlier attempts).
    pub without_output: bool,
}

/// Parses the query string of `GET /tasks` (without the `?`).
pub fn parse_task_list_query(query_string: &str) -> Result<TaskListQuery, ApiError> {
    let q: ListQuery = super::parse_query_string(
        query_string,
        "status, source, event, program, node, id, limit, before and output",
    )?;
    let status = super::parse_choice("status", q.status.as_deref(), &Status::ALL, Status::as_str)?;
    let limit = parse_limit(q.limit.as_deref())?;
    let before = match q.before.as_deref() {
        None => None,
        Some(b) => Some(match super::parse_cursor(b) {
            Some(seq) => Before::Cursor(seq),
            None => Before::Task(Uuid::parse_str(b).map_err(|_| {
                ApiError::BadRequest(format!(
                    "`before` must be a task id or the `next` of an earlier page, not `{}`",
                    crate::logging::escape(b)
                ))
            })?),
        }),
    };
    let without_output = match q.output.as_deref() {
        None | Some("tails") => false,
        Some("none") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown output `{}`: expected tails or none",
                crate::logging::escape(other)
            )))
        }
    };
    let id_prefix = match q.id.as_deref() {
        None | Some("") => None,
        Some(text) => Some(parse_id_prefix(text)?),
    };
    Ok(TaskListQuery {
        status,
        source: q.source,
        event: q.event,
        program: q.program,
        node: q.node,
        id_prefix,
        limit,
        before,
        without_output,
    })
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let q = parse_task_list_query(req.query_string())?;
    let (status, limit, before) = (q.status, q.limit, q.before);
    // A task id must name a task there is: its place in the history. A
    // cursor is that place itself, whether or not its task is still there.
    let before_seq = match before {
        None => None,
        Some(Before::Cursor(seq)) => Some(seq),
        Some(Before::Task(id)) => match state.engine.seq(&id) {
            Some(seq) => Some(seq),
            None => state
                .read_store(move |s| async move { s.task_seq(id).await })
                .await?
                .flatten()
                .ok_or_else(|| ApiError::BadRequest(format!("`before`: there is no task `{id}`")))
                .map(Some)?,
        },
    };
    let filter = Filter {
        status,
        source: q.source.clone(),
        event: q.event.clone(),
        program: q.program.clone(),
        node: q.node.clone(),
        id_prefix: q.id_prefix.clone(),
        limit,
        before_seq,
    };
    // Unfinished tasks are always in memory; history is in the store.
    let unfinished = filter.status.is_some_and(|s| !s.is_final());
    // (A cluster's queued and running tasks are the whole cluster's: from the store.)
    if (unfinished && state.engine.cluster().is_none()) || state.engine.store().is_none() {
        let (tasks, next_seq) = state.engine.list_page(&filter);
        return Ok(page(&tasks, next_seq, q.without_output));
    }
    // History comes from the store; tasks still in memory show their live state.
    let query = crate::store::TaskQuery {
        status: filter.status,
        source: filter.source.clone(),
        event: filter.event.clone(),
        program: filter.program.clone(),
        node: filter.node.clone(),
        id_prefix: filter.id_prefix.clone(),
        before_seq,
        limit,
    };
    let Some(records) = state
        .read_store(move |s| async move { s.list_tasks(&query).await })
        .await?
    else {
        return Ok(page(&[], None, q.without_output));
    };
    let tasks: Vec<TaskView> = records
        .rows
        .iter()
        .map(|r| state.engine.task(&r.id).unwrap_or_else(|| TaskView::of(r, None)))
        // The stored status can trail the live one by a moment.
        .filter(|view| filter.status.is_none_or(|s| view.status == s))
        .collect();
    Ok(page(&tasks, records.next_seq, q.without_output))
}

/// The answer of `GET /tasks`: the tasks (without their output tails when
/// asked), and `next`, the cursor of the following page (null at the end).
fn page(tasks: &[TaskView], next_seq: Option<u64>, without_output: bool) -> HttpResponse {
    let next = next_seq.map(super::cursor);
    if !without_output {
        return HttpResponse::Ok().json(serde_json::json!({ "tasks": tasks, "next": next }));
    }
    let tasks: Vec<serde_json::Value> = tasks
        .iter()
        .map(|t| {
            let mut v = serde_json::to_value(t).unwrap_or_default();
            if let Some(task) = v.as_object_mut() {
                task.remove("stdout");
                task.remove("stderr");
                if let Some(attempts) = task.get_mut("attempts").and_then(|a| a.as_array_mut()) {
                    for a in attempts.iter_mut().filter_map(|a| a.as_object_mut()) {
                        a.remove("stdout");
                        a.remove("stderr");
                    }
                }
            }
            v
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({ "tasks": tasks, "next": next }))
}

/// `?id=`: the start of a task id as ids are shown (`3f2a9c1e-4b…`), in
/// either case; answered as lower case.
fn parse_id_prefix(text: &str) -> Result<String, ApiError> {
    let lower = text.to_ascii_lowercase();
    let fits = lower.len() <= 36
        && lower.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if fits {
        Ok(lower)
    } else {
        Err(ApiError::BadRequest(format!(
            "`id` must be the start of a task id (hex digits, hyphenated as in 3f2a9c1e-4b7d-…), not `{}`",
            crate::logging::escape(text)
        )))
    }
}

/// `?limit=`: 1 to 1000, default 50.
pub fn parse_limit(text: Option<&str>) -> Result<usize, ApiError> {
    match text {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "`limit` must be a whole number from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

/// A task's stored record, if there is a store and it has one.
async fn stored_task(state: &AppState, id: Uuid) -> Result<Option<TaskRecord>, ApiError> {
    Ok(state
        .read_store(move |s| async move { s.task(id).await })
        .await?
        .flatten())
}

pub async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let text = path.into_inner();
    let not_found = || no_task(&text);
    let id = Uuid::parse_str(&text).map_err(|_| not_found())?;
    if let Some(task) = state.engine.task(&id) {
        return Ok(HttpResponse::Ok().json(task));
    }
    let stored = stored_task(&state, id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(TaskView::of(&stored, None)))
}

fn no_task(id: &dyn std::fmt::Display) -> ApiError {
    ApiError::NotFound(format!("there is no task `{id}`"))
}

fn task_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| no_task(&text))
}

fn task_error(e: TaskError) -> ApiError {
    match e {
        TaskError::NotFound(_) => ApiError::NotFound(e.to_string()),
        TaskError::Finished(..) | TaskError::NotFinished(..) => ApiError::Conflict(e.to_string()),
        TaskError::Store(why) => ApiError::Store(why),
    }
}

/// `POST /tasks/{id}/cancel`: queued → cancelled at once; running → its group is stopped.
pub async fn cancel(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let id = task_id(&path)?;
    let was = match state.engine.cancel_anywhere(id, "cancelled by request").await {
        Err(TaskError::NotFound(_)) => {
            // Only in the store (finished before this start): nothing to stop.
            let stored = stored_task(&state, id).await?.ok_or_else(|| no_task(&id))?;
            return Err(task_error(TaskError::Finished(id, stored.state.status().as_str())));
        }
        other => other.map_err(task_error)?,
    };
    tracing::info!(task_id = %id, was = was.as_str(), "task cancelled by request");
    let task = match state.engine.task(&id) {
        Some(view) => view,
        // Running on another node: it stops there.
        None => stored_task(&state, id)
            .await?
            .map(|r| TaskView::of(&r, None))
            .ok_or_else(|| no_task(&id))?,
    };
    Ok(HttpResponse::Accepted().json(task))
}

/// `DELETE /tasks/{id}`: forgets a finished task.
pub async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let id = task_id(&path)?;
    match state.engine.remove(id).await {
        Err(TaskError::NotFound(_)) => {
            // Only in the store: after a restart, or run by another node.
            let stored = stored_task(&state, id).await?.ok_or_else(|| no_task(&id))?;
            state.engine.remove_stored(&stored).await.map_err(task_error)?;
        }
        other => other.map_err(task_error)?,
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /tasks/{id}/output`: the output so far as text (`?stream=stderr` for
/// stderr); with `Accept: text/event-stream` or `?follow=1`, Server-Sent Events:
/// `stdout` and `stderr` lines as they are written, `missed` when a slow
/// follower fell behind, and a final `status` event.
pub async fn output(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let grant = super::access::authorize_stream(&req, &state)?;
    let id = task_id(&path)?;
    let query: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let follow = crate::intake::query_flag(&query, "follow").map_err(ApiError::BadRequest)?
        || req
            .headers()
            .get(actix_web::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
    if state.engine.task(&id).is_none() {
        // Running on another node of the cluster: from there.
        if let Some((node, url)) = super::proxy::elsewhere(&state, id).await? {
            let path = format!("/tasks/{id}/output?{}", req.query_string());
            return super::proxy::pass(state, grant, &node, &url, &path, follow).await;
        }
    }
    if follow {
        if state.engine.task(&id).is_none() {
            // Finished elsewhere (or before this node's start): what its record kept.
            let stored = stored_task(&state, id).await?.ok_or_else(|| no_task(&id))?;
            return Ok(super::follow::from_view(TaskView::of(&stored, None)));
        }
        return Ok(super::follow::stream(state.engine.clone(), id, grant, state));
    }
    let stream = match query.iter().find(|(k, _)| k == "stream").map(|(_, v)| v.as_str()) {
        None | Some("stdout") => Stream::Stdout,
        Some("stderr") => Stream::Stderr,
        Some(_) => return Err(ApiError::BadRequest("`stream` must be stdout or stderr".into())),
    };
    let stored = match state.engine.task(&id) {
        Some(_) => None,
        None => Some(stored_task(&state, id).await?.ok_or_else(|| no_task(&id))?),
    };
    let (text, skipped) = state
        .engine
        .output_text(&id, stored.as_ref(), stream)
        .ok_or_else(|| no_task(&id))?;
    let mut answer = HttpResponse::Ok();
    // A handler's output is anything: never taken for a page.
    answer
        .content_type("text/plain; charset=utf-8")
        .insert_header(("X-Content-Type-Options", "nosniff"));
    if skipped > 0 {
        // The front of a long output was let go (see HANDLERS.md, Output).
        answer.insert_header(("X-Output-Skipped-Bytes", skipped.to_string()));
    }
    Ok(answer.body(text))
}

/// `POST /tasks/{id}/rerun`: a new task with the same program, params and body, linked to the old one.
pub async fn rerun(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let old = task_id(&path)?;
    let config = state.config();
    let task = crate::intake::rerun(state.intake(&config), old, super::hooks::request_id(&req)).await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/tasks/{}", task.id)))
        .json(task))
}
