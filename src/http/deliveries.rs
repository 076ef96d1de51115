//! `GET /deliveries`, `GET /deliveries/{id}` and `POST /deliveries/{id}/replay`.

use super::access::authorize_api;
use super::error::ApiError;
use super::AppState;
use crate::delivery::record::Record;
use crate::delivery::{Below, Filter, Outcome};
use actix_web::http::header::HeaderValue;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    source: Option<String>,
    event: Option<String>,
    outcome: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// What `GET /deliveries` was asked for, from its query string alone
/// (whether `before` names a delivery on record is checked by the handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryListQuery {
    pub source: Option<String>,
    pub event: Option<String>,
    pub outcome: Option<Outcome>,
    /// 1 to 1000, default 50.
    pub limit: usize,
    pub before: Option<String>,
}

/// Parses the query string of `GET /deliveries` (without the `?`).
pub fn parse_delivery_list_query(query_string: &str) -> Result<DeliveryListQuery, ApiError> {
    let q: ListQuery = super::parse_query_string(query_string, "source, event, outcome, limit and before")?;
    let outcome = super::parse_choice("outcome", q.outcome.as_deref(), &Outcome::ALL, Outcome::as_str)?;
    let limit = super::tasks::parse_limit(q.limit.as_deref())?;
    Ok(DeliveryListQuery {
        source: q.source,
        event: q.event,
        outcome,
        limit,
        before: q.before,
    })
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let q = parse_delivery_list_query(req.query_string())?;
    let (outcome, limit) = (q.outcome, q.limit);
    // A cursor's form is always read as a cursor, even past any place in the log.
    if let Some(b) = q.before.as_deref() {
        if super::cursor_form(b).is_some() && super::parse_cursor(b).is_none() {
            return Err(ApiError::BadRequest(format!(
                "`before`: the cursor `{}` is past every place in the log",
                crate::logging::escape(b)
            )));
        }
    }
    let no_cursor = |b: &str| {
        ApiError::BadRequest(format!(
            "`before`: there is no delivery `{}` on record",
            crate::logging::escape(b)
        ))
    };
    let filter = Filter {
        source: q.source.clone(),
        event: q.event.clone(),
        outcome,
        limit,
    };
    // A `next` cursor is a place in the log, good after its record is gone.
    let cursor = q.before.as_deref().and_then(super::parse_cursor);
    if state.deliveries.store().is_none() {
        let below = match (cursor, q.before.as_deref()) {
            (Some(n), _) => Some(Below::Seq(n)),
            (None, Some(id)) => Some(Below::Record(id)),
            (None, None) => None,
        };
        let (records, next) = state
            .deliveries
            .page(&filter, below)
            .ok_or_else(|| no_cursor(q.before.as_deref().unwrap_or_default()))?;
        let deliveries: Vec<_> = records.iter().map(|r| r.view()).collect();
        return Ok(HttpResponse::Ok().json(json!({ "deliveries": deliveries, "next": next.map(super::cursor) })));
    };
    let before_seq = match (cursor, q.before.clone()) {
        (Some(seq), _) => Some(seq),
        (None, None) => None,
        (None, Some(b)) => Some(
            state
                .read_store(move |s| async move { s.delivery_seq(&b).await })
                .await?
                .flatten()
                .ok_or_else(|| no_cursor(q.before.as_deref().unwrap_or_default()))?,
        ),
    };
    let query = crate::store::DeliveryQuery {
        source: q.source.clone(),
        event: q.event.clone(),
        outcome: filter.outcome,
        before_seq,
        limit,
    };
    let Some(page) = state
        .read_store(move |s| async move { s.list_deliveries(&query).await })
        .await?
    else {
        return Ok(HttpResponse::Ok().json(json!({ "deliveries": [], "next": null })));
    };
    let deliveries: Vec<serde_json::Value> = page
        .rows
        .into_iter()
        .map(|(stored, body_kept)| {
            // Records still in memory may have gained links (replays) since.
            match state.deliveries.get(&stored.id) {
                Some(r) => r.view(),
                None => {
                    // The body itself is not read for a list.
                    let mut view = Record::from_record(stored, None).view();
                    view["body_kept"] = body_kept.into();
                    view
                }
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "deliveries": deliveries, "next": page.next_seq.map(super::cursor) })))
}

pub async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let id = path.into_inner();
    if let Some(record) = state.deliveries.get(&id) {
        return Ok(HttpResponse::Ok().json(record.view()));
    }
    let record = stored(&state, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no delivery `{id}` on record")))?;
    Ok(HttpResponse::Ok().json(record.view()))
}

/// A delivery from the store, with its kept body.
async fn stored(state: &AppState, id: &str) -> Result<Option<Record>, ApiError> {
    let key = id.to_string();
    let row = state
        .read_store(move |s| async move { s.delivery(&key).await })
        .await?
        .flatten();
    Ok(row.map(|(record, body)| Record::from_record(record, body)))
}

/// Runs a recorded delivery again against the current config: new tasks,
/// linked both ways. Auth and dedup are not checked again.
pub async fn replay(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let id = path.into_inner();
    let config = state.config();
    let replayed = crate::intake::replay(state.intake(&config), &id, super::hooks::request_id(&req)).await?;
    let mut response = match replayed.result {
        Ok(answer) => super::hooks::answer_response(answer),
        Err(e) => actix_web::ResponseError::error_response(&ApiError::from(e)),
    };
    if let Ok(v) = HeaderValue::from_str(&crate::delivery::record::url(&replayed.record)) {
        response.headers_mut().insert(actix_web::http::header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /deliveries/{id}/body`: the kept body (what handlers got on stdin),
/// as bytes that no browser renders: `application/octet-stream`, as an
/// attachment, under a sandboxing policy. `404` if there is no such record
/// or its body is not kept.
pub async fn body(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let id = path.into_inner();
    let body = match state.deliveries.get(&id) {
        Some(record) => Some(record.body()),
        None => stored(&state, &id).await?.map(|r| r.body()),
    };
    let Some(body) = body else {
        return Err(ApiError::NotFound(format!("there is no delivery `{id}` on record")));
    };
    let body = body.filter(|b| !b.is_empty()).ok_or_else(|| {
        ApiError::NotFound(format!(
            "the body of delivery `{id}` is not kept (see `deliveries.body_bytes`)"
        ))
    })?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("Content-Disposition", "attachment"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Content-Security-Policy", "sandbox; default-src 'none'"))
        .insert_header(("Cache-Control", "no-store"))
        .body(body))
}
