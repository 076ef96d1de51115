//! `POST /hooks/{source}`: the request handed to [`intake::admit`], and its
//! answer as HTTP.

use super::access::client_addr;
use super::body;
use super::error::ApiError;
use super::AppState;
use crate::intake::{self, Answer, Arrival, Queued};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
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

/// The query's pairs, decoded.
pub(crate) fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
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
    let query = query_pairs(&req);
    let config = state.config();
    let client = client_addr(&req, &state);
    let arrival = Arrival {
        source: &source,
        client,
        headers: req.headers(),
        query: &query,
        request_id: rid.clone(),
        request: crate::mapping::Request {
            method: req.method().as_str().to_string(),
            path: req.uri().path().to_string(),
            remote_addr: req.peer_addr().map(|a| a.to_string()),
            client_ip: match client {
                crate::auth::ip::Client::Addr(ip) => Some(ip.to_string()),
                crate::auth::ip::Client::Unknown => None,
            },
        },
    };
    let body = body::read(req.headers(), payload, config.server.max_body);
    let mut response = match intake::admit(state.intake(&config), &arrival, body).await {
        Ok(answer) => answer_response(answer),
        Err(e) => ApiError::from(e).error_response(),
    };
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&rid) {
        response
            .headers_mut()
            .insert(actix_web::http::header::HeaderName::from_static("x-request-id"), v);
    }
    response
}

/// A judged delivery's answer.
#[derive(Serialize)]
struct Judged<'a> {
    delivery_id: &'a str,
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    source: &'a str,
    tasks: &'a [TaskRef<'a>],
}

/// A queued task in an answer.
#[derive(Serialize)]
struct TaskRef<'a> {
    id: Uuid,
    program: &'a str,
    status: &'static str,
    url: String,
}

fn refs(tasks: &[Queued]) -> Vec<TaskRef<'_>> {
    tasks
        .iter()
        .map(|t| TaskRef {
            id: t.id,
            program: &t.program,
            status: "queued",
            url: format!("/tasks/{}", t.id),
        })
        .collect()
}

/// An admitted delivery's answer as HTTP.
pub(crate) fn answer_response(answer: Answer) -> HttpResponse {
    match answer {
        Answer::Accepted { about, tasks } => HttpResponse::Accepted().json(Judged {
            delivery_id: &about.delivery_id,
            event: &about.event,
            message: None,
            source: &about.source,
            tasks: &refs(&tasks),
        }),
        Answer::Ignored { about, message, .. } => HttpResponse::Ok().json(Judged {
            delivery_id: &about.delivery_id,
            event: &about.event,
            message: Some(&message),
            source: &about.source,
            tasks: &[],
        }),
        Answer::Duplicate { about, first, tasks } => HttpResponse::Ok().json(serde_json::json!({
            "delivery_id": about.delivery_id,
            "source": about.source,
            "event": about.event,
            "duplicate": true,
            "first_delivery": first,
            "tasks": tasks.iter().map(|id| serde_json::json!({"id": id, "url": format!("/tasks/{id}")})).collect::<Vec<_>>(),
            "message": "this delivery was already received; nothing was run",
        })),
        Answer::Finished { about, tasks } => HttpResponse::Ok().json(serde_json::json!({
            "delivery_id": about.delivery_id,
            "source": about.source,
            "event": about.event,
            "finished": true,
            "tasks": tasks,
        })),
        Answer::Handshake(v) | Answer::DryRun(v) => HttpResponse::Ok().json(v),
    }
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
