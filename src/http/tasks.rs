//! `GET /tasks` and `GET /tasks/{id}`.

use super::access::authorize_api;
use super::error::ApiError;
use super::AppState;
use crate::engine::table::Filter;
use crate::engine::task::Status;
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
    limit: Option<String>,
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let q = web::Query::<ListQuery>::from_query(req.query_string()).map_err(|e| {
        ApiError::BadRequest(format!(
            "invalid query ({e}); filters are status, source, event, program and limit"
        ))
    })?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::BadRequest(format!("unknown status `{s}`: expected one of {}", names.join(", ")))
        })?),
    };
    let limit = parse_limit(q.limit.as_deref())?;
    let filter = Filter {
        status,
        source: q.source.clone(),
        event: q.event.clone(),
        program: q.program.clone(),
        limit,
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({ "tasks": state.engine.list(&filter) })))
}

/// `?limit=`: 1 to 1000, default 50.
pub fn parse_limit(text: Option<&str>) -> Result<usize, ApiError> {
    match text {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"))),
        },
    }
}

pub async fn get(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let text = path.into_inner();
    let not_found = || ApiError::NotFound(format!("there is no task `{text}`"));
    let id = Uuid::parse_str(&text).map_err(|_| not_found())?;
    let task = state.engine.task(&id).ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(task))
}
