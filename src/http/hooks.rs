//! `<prefix>/<source>` (`POST /hooks/{source}` by default): the request
//! handed to [`intake::admit_shaped`], and its answer as HTTP, shaped by the
//! source's `response`, `methods` and `cors`.

use super::access::{authorize_api, client_addr};
use super::body;
use super::error::ApiError;
use super::AppState;
use crate::config::{Cors, Reply, API_PATHS};
use crate::intake::{self, Answer, Arrival, Queued};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
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

/// Whether `path` is a hook's: under `prefix` and not under one of the
/// API's paths (which take precedence).
pub(crate) fn is_hook_path(path: &str, prefix: &str) -> bool {
    if !path.strip_prefix(prefix).is_some_and(|t| t.starts_with('/')) {
        return false;
    }
    // `/` (and `//...`) names no source: with an empty prefix it is the dashboard's.
    let first = path[1..].split('/').next().unwrap_or_default();
    !first.is_empty() && !API_PATHS.contains(&first)
}

/// Every hook path: the paths under `server.prefix` (`/hooks` by default)
/// that no API route takes, judged by the config in force (so a reload can
/// move the prefix), without a `{source}` pattern's regex match per delivery.
pub(crate) fn scope() -> actix_web::Scope {
    web::scope("")
        .guard(actix_web::guard::fn_guard(guard))
        .default_service(web::to(entry))
}

/// Whether a request is for a hook, under the config in force.
fn guard(ctx: &actix_web::guard::GuardContext<'_>) -> bool {
    ctx.app_data::<web::Data<AppState>>()
        .is_some_and(|state| is_hook_path(ctx.head().uri.path(), &state.config.load().server.prefix))
}

/// `<prefix>/<source>`: a preflight (with `cors`), a method the source does
/// not take (405), or a delivery; a path naming no source is a 404.
pub async fn entry(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let config = state.config();
    let Some(name) = source_in_path(req.path(), &config.server.prefix) else {
        return ApiError::NotFound(format!("there is nothing at `{}`", req.path())).error_response();
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let source = config.sources.get(&name).cloned();
    if let Some(source) = &source {
        let method = req.method().as_str();
        let preflight = method == "OPTIONS" && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if let (Some(cors), Some(origin), true) = (&source.cors, &origin, preflight) {
            return answer_preflight(&source.name, cors, origin);
        }
        if !source.methods.iter().any(|m| m == method) {
            let mut response = ApiError::MethodNotAllowed(method.to_string()).error_response();
            let mut allow = source.methods.clone();
            if source.cors.is_some() && !allow.iter().any(|m| m == "OPTIONS") {
                allow.push("OPTIONS".into());
            }
            if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                response.headers_mut().insert(header::ALLOW, v);
            }
            add_cors(&mut response, source.cors.as_ref(), origin.as_deref());
            return response;
        }
    }
    let mut response = receive(req, name, payload, state).await;
    if let Some(source) = &source {
        add_cors(&mut response, source.cors.as_ref(), origin.as_deref());
    }
    response
}

/// The source name of `<prefix>/<source>`, percent-decoded: `team/app` is
/// reached as `<prefix>/team/app` and as `<prefix>/team%2Fapp`.
fn source_in_path(path: &str, prefix: &str) -> Option<String> {
    let tail = path.strip_prefix(prefix)?.strip_prefix('/')?;
    if tail.is_empty() {
        return None;
    }
    // Bytes that are not UTF-8 name no source (every name is text), but the
    // request is still refused and recorded as one to an unknown source.
    let name = percent_encoding::percent_decode_str(tail).decode_utf8_lossy();
    Some(name.into_owned())
}

/// A browser's preflight: `204` with what `cors` allows, or `403` for an
/// origin it does not list. Nothing runs and nothing is recorded.
fn answer_preflight(source: &str, cors: &Cors, origin: &str) -> HttpResponse {
    let Some(allowed) = cors.allow_origin(origin) else {
        let mut response = ApiError::Forbidden(format!(
            "origin `{}` is not allowed by `cors` of source `{source}`",
            crate::logging::escape(origin)
        ))
        .error_response();
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
        return response;
    };
    let mut response = HttpResponse::NoContent();
    if let Ok(v) = HeaderValue::from_str(allowed) {
        response.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, v));
    }
    response.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, cors.methods.join(", ")));
    if !cors.headers.is_empty() {
        response.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, cors.headers.join(", ")));
    }
    if let Some(age) = cors.max_age {
        response.insert_header((header::ACCESS_CONTROL_MAX_AGE, age.as_secs().to_string()));
    }
    if cors.varies() {
        response.insert_header((header::VARY, "Origin"));
    }
    response.finish()
}

/// `Access-Control-Allow-Origin` (and `Vary: Origin`) on an answer to a
/// request from an origin `cors` allows.
fn add_cors(response: &mut HttpResponse, cors: Option<&Cors>, origin: Option<&str>) {
    let (Some(cors), Some(origin)) = (cors, origin) else {
        return;
    };
    let headers = response.headers_mut();
    if cors.varies() {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(v) = cors.allow_origin(origin).and_then(|a| HeaderValue::from_str(a).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
}

async fn receive(req: HttpRequest, source: String, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let rid = request_id(&req);
    let query = query_pairs(&req);
    // A dry run shows the daemon's own view (argv, params, every rule's
    // condition): behind the API rule, besides the source's own auth.
    // (A `dry_run` that is neither on nor off is refused by `admit`.)
    if intake::query_flag(&query, "dry_run").unwrap_or(false) {
        if let Err(e) = authorize_api(&req, &state) {
            let mut response = e.error_response();
            if let Ok(v) = HeaderValue::from_str(&rid) {
                response
                    .headers_mut()
                    .insert(header::HeaderName::from_static("x-request-id"), v);
            }
            return response;
        }
    }
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
            remote_addr: req.peer_addr().map(crate::auth::ip::socket_text),
            client_ip: match client {
                crate::auth::ip::Client::Addr(ip) => Some(crate::auth::ip::ip_text(ip)),
                crate::auth::ip::Client::Unknown => None,
            },
        },
    };
    let body = body::read(req.headers(), payload, config.server.max_body);
    let admitted = intake::admit_shaped(state.intake(&config), &arrival, body).await;
    let mut response = match admitted.result {
        Ok(answer) => shaped_response(answer, admitted.reply.as_deref()),
        Err(e) => {
            let mut response = ApiError::from(e).error_response();
            if let Some(reply) = &admitted.reply {
                add_headers(&mut response, reply, false);
            }
            response
        }
    };
    if let Ok(v) = HeaderValue::from_str(&rid) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), v);
    }
    response
}

/// An answer as the source's `response` shapes it: its status, a text body
/// instead of the JSON where one applies, and its headers.
fn shaped_response(answer: Answer, reply: Option<&Reply>) -> HttpResponse {
    let Some(reply) = reply else {
        return answer_response(answer);
    };
    let status = StatusCode::from_u16(answer.status_under(reply)).unwrap_or(StatusCode::OK);
    let mut response = match answer.text_under(reply) {
        Some(text) => HttpResponse::build(status)
            .content_type("text/plain; charset=utf-8")
            .body(text),
        None => {
            let mut response = answer_response(answer);
            *response.status_mut() = status;
            response
        }
    };
    let text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    add_headers(&mut response, reply, text);
    response
}

/// `response.headers` on an answer; a `Content-Type` among them only on a
/// text body (a JSON answer stays `application/json`).
fn add_headers(response: &mut HttpResponse, reply: &Reply, text_body: bool) {
    for (name, value) in &reply.headers {
        if !text_body && name.eq_ignore_ascii_case("content-type") {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(n, v);
        }
    }
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

/// A waited-for task as its sender sees it: how it ended and what it
/// printed (what waiting is for), not the daemon's own view of it (argv,
/// params, callbacks, node, key, links), which stays behind the API rule.
#[derive(Serialize)]
struct WaitedTask<'a> {
    id: Uuid,
    program: &'a str,
    status: crate::status::Status,
    exit_code: Option<i32>,
    error: Option<&'a str>,
    created_at: &'a str,
    started_at: Option<&'a str>,
    finished_at: Option<&'a str>,
    duration_ms: Option<u64>,
    attempt: u32,
    stdout: &'a str,
    stderr: &'a str,
    stdout_truncated: bool,
    stderr_truncated: bool,
    url: &'a str,
}

impl<'a> WaitedTask<'a> {
    fn of(t: &'a crate::engine::task::TaskView) -> Self {
        WaitedTask {
            id: t.id,
            program: &t.program,
            status: t.status,
            exit_code: t.exit_code,
            error: t.error.as_deref(),
            created_at: &t.created_at,
            started_at: t.started_at.as_deref(),
            finished_at: t.finished_at.as_deref(),
            duration_ms: t.duration_ms,
            attempt: t.attempt,
            stdout: &t.stdout,
            stderr: &t.stderr,
            stdout_truncated: t.stdout_truncated,
            stderr_truncated: t.stderr_truncated,
            url: &t.url,
        }
    }
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
    let status = StatusCode::from_u16(answer.status()).unwrap_or(StatusCode::OK);
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
        Answer::Finished { about, tasks, .. } => HttpResponse::build(status).json(serde_json::json!({
            "delivery_id": about.delivery_id,
            "source": about.source,
            "event": about.event,
            "finished": true,
            "tasks": tasks.iter().map(WaitedTask::of).collect::<Vec<_>>(),
        })),
        Answer::Handshake(v) | Answer::DryRun(v) => HttpResponse::Ok().json(v),
    }
}

#[cfg(test)]
mod tests {
    use super::{is_hook_path, source_in_path};

    #[test]
    fn the_source_is_everything_after_the_prefix_decoded() {
        let cases = [
            ("/hooks/github", "/hooks", Some("github")),
            ("/hooks/my%20ci", "/hooks", Some("my ci")),
            ("/hooks/a/b", "/hooks", Some("a/b")),
            ("/hooks/a%2Fb", "/hooks", Some("a/b")),
            ("/hooks/a/", "/hooks", Some("a/")),
            ("/api/v1/x", "/api/v1", Some("x")),
            ("/x", "", Some("x")),
            ("/team/app", "", Some("team/app")),
            ("/hooks/%ff", "/hooks", Some("\u{fffd}")),
        ];
        for (path, prefix, name) in cases {
            assert_eq!(source_in_path(path, prefix).as_deref(), name, "{path} under {prefix:?}");
        }
        for (path, prefix) in [
            ("/hooks", "/hooks"),
            ("/hooks/", "/hooks"),
            ("/hooksx/a", "/hooks"),
            ("/api/x", "/api/v1"),
            ("/", ""),
        ] {
            assert_eq!(source_in_path(path, prefix), None, "{path} under {prefix:?}");
        }
    }

    #[test]
    fn api_paths_are_never_hook_paths() {
        assert!(is_hook_path("/hooks/tasks", "/hooks"));
        assert!(is_hook_path("/x", ""));
        assert!(!is_hook_path("/tasks", ""));
        assert!(!is_hook_path("/", ""), "the dashboard's redirect");
        assert!(!is_hook_path("//x", ""));
        assert!(!is_hook_path("/ui/app.js", ""));
        assert!(!is_hook_path("/tasks/1/output", ""));
        assert!(!is_hook_path("/-/reload", ""));
        assert!(!is_hook_path("/hooks", "/hooks"));
        assert!(!is_hook_path("/tasks", "/hooks"));
    }
}
