//! `GET /events`: this node's task and delivery events as Server-Sent
//! Events, read from the engine's event hub (`engine::events`).

use super::error::ApiError;
use super::{access, AppState};
use crate::engine::events::{Event, Next};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use std::time::Duration;

/// A comment line after this much silence, so proxies and clients know the stream lives.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /events` (same access rule as `/tasks`). `Last-Event-ID: n` or
/// `?since=n` resumes after event `n`.
pub async fn stream(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let grant = access::authorize_stream(&req, &state)?;
    let since = since(&req)?;
    // Stopping: a stream opened now would end at once, and a client that
    // reconnects would open one again and again until the daemon is gone.
    if state.engine.events().is_closed() {
        return Err(ApiError::Stopping);
    }
    let listener = state.engine.events().subscribe(since);
    let body = futures_util::stream::unfold((listener, true), |(mut listener, first)| async move {
        if first {
            // Something at once, so a client knows it is connected.
            return Some((
                Ok::<_, actix_web::Error>(Bytes::from_static(b": connected\n\n")),
                (listener, false),
            ));
        }
        let bytes = tokio::select! {
            next = listener.next() => render(next)?,
            _ = tokio::time::sleep(KEEP_ALIVE) => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok::<_, actix_web::Error>(bytes), (listener, false)))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(access::guarded(Box::pin(body), grant, state)))
}

/// The id to resume after: `Last-Event-ID` (what browsers send), else `?since=`.
fn since(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let bad = |what: &str, text: &str| {
        ApiError::BadRequest(format!(
            "{what} must be the id of an event (a whole number), not `{}`",
            crate::logging::escape(text)
        ))
    };
    let mut since = None;
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if k != "since" {
            // As `/tasks` and `/deliveries` answer a name they do not know.
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter `{}`: `/events` takes only `since`",
                crate::logging::escape(&crate::delivery::record::cut(&k, 64))
            )));
        }
        since = Some(v.trim().parse().map_err(|_| bad("`since`", &v))?);
    }
    if let Some(v) = req.headers().get("last-event-id") {
        let text = String::from_utf8_lossy(v.as_bytes());
        let text = text.trim();
        // An empty id is what a browser sends before it saw one.
        if text.is_empty() {
            return Ok(None);
        }
        return text.parse().map(Some).map_err(|_| bad("`Last-Event-ID`", text));
    }
    Ok(since)
}

/// The bytes of what a listener got; `None` ends the stream.
fn render(next: Next) -> Option<Bytes> {
    Some(match next {
        Next::Closed => return None,
        Next::Reset { oldest, newest } => {
            // Its id is the newest one's: a client that reconnects goes on from there.
            Bytes::from(format!("id: {newest}\nevent: reset\ndata: {{\"oldest\":{oldest}}}\n\n"))
        }
        Next::Events(events) => {
            let mut out = String::with_capacity(events.iter().map(|e| e.data.len() + 48).sum());
            for e in &events {
                push_event(&mut out, e);
            }
            Bytes::from(out)
        }
    })
}

fn push_event(out: &mut String, e: &Event) {
    use std::fmt::Write;
    // The data is one line of JSON (serde_json escapes line breaks).
    let _ = write!(out, "id: {}\nevent: {}\ndata: {}\n\n", e.id, e.kind, e.data);
}
