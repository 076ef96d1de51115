//! Live output as Server-Sent Events, read from the task's output files.
//! Each follower reads at its own pace (the file is its buffer), so a slow
//! one never slows the handler or the other followers; one that falls
//! behind what the file still keeps is told how much it missed.

use crate::engine::Engine;
use crate::process::output::{follow_start, Follower, Line, Stream};
use actix_web::HttpResponse;
use bytes::Bytes;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Events queued for one HTTP connection before the writer waits for it.
const CONNECTION_BUFFER: usize = 64;
/// How often a running task's files are read for new lines.
const POLL: Duration = Duration::from_millis(100);

fn event(name: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + name.len() + 16);
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    // A line break inside the data would end the field: one `data:` per
    // piece. SSE ends a line at CR as well as LF, so a bare CR in what a
    // handler printed splits too; otherwise the text after it would be read
    // as a field of its own (a forged `event: stderr`, say).
    for piece in data.split('\n') {
        for piece in piece.strip_suffix('\r').unwrap_or(piece).split('\r') {
            out.push_str("data: ");
            out.push_str(piece);
            out.push('\n');
        }
    }
    out.push('\n');
    Bytes::from(out)
}

fn line_event(line: &Line) -> Bytes {
    event(line.stream.as_str(), &line.text)
}

/// The SSE response for task `id`, for as long as `grant` holds.
pub fn stream(
    engine: Engine,
    id: Uuid,
    grant: super::access::Grant,
    state: actix_web::web::Data<super::AppState>,
) -> HttpResponse {
    let (tx, rx) = mpsc::channel::<Bytes>(CONNECTION_BUFFER);
    actix_web::rt::spawn(async move {
        let _ = pump(&engine, id, &tx).await;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(b), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(super::access::guarded(Box::pin(body), grant, state))
}

/// Sends lines until the task ends, then its status. Returns early when the client goes away.
async fn pump(engine: &Engine, id: Uuid, tx: &mpsc::Sender<Bytes>) -> Result<(), ()> {
    let limits = engine.limits();
    loop {
        let Some(task) = engine.get(&id) else { return Ok(()) };
        let attempt = task.attempt;
        let outputs = engine.outputs();
        let files = [Stream::Stdout, Stream::Stderr].map(|s| (s, outputs.file(id, attempt, s)));
        if task.state.is_finished() && files.iter().all(|(_, p)| !p.exists()) {
            // The files are gone: the tails kept with the task are all there is.
            let output = task.output.unwrap_or_default();
            for (stream, text) in [(Stream::Stdout, output.stdout), (Stream::Stderr, output.stderr)] {
                let text = text.strip_suffix('\n').unwrap_or(&text);
                for piece in text.split('\n').filter(|_| !text.is_empty()) {
                    send(
                        tx,
                        line_event(&Line {
                            stream,
                            text: piece.to_string(),
                        }),
                    )
                    .await?;
                }
            }
            return send_status(engine, id, tx).await;
        }
        // A new follower starts at most `output_limit` back, at a line's start.
        let mut followers = files.map(|(s, p)| {
            let start = follow_start(&p, limits.output_limit);
            Follower::new(p, s, start)
        });
        loop {
            let now = engine.get(&id);
            let finished = now.as_ref().is_none_or(|t| t.state.is_finished());
            let next_attempt = now.as_ref().is_some_and(|t| t.attempt != attempt);
            for f in &mut followers {
                let (lines, missed) = f.poll(finished || next_attempt);
                if missed > 0 {
                    send(tx, event("missed", &format!("{{\"bytes\":{missed}}}"))).await?;
                }
                for line in &lines {
                    send(tx, line_event(line)).await?;
                }
            }
            if finished {
                return send_status(engine, id, tx).await;
            }
            if next_attempt {
                // A retry began: follow its files.
                break;
            }
            if tx.is_closed() {
                return Err(());
            }
            engine.wait_finished(&[id], tokio::time::Instant::now() + POLL).await;
        }
    }
}

async fn send_status(engine: &Engine, id: Uuid, tx: &mpsc::Sender<Bytes>) -> Result<(), ()> {
    let Some(task) = engine.task(&id) else { return Ok(()) };
    let status = serde_json::json!({
        "id": task.id,
        "status": task.status,
        "exit_code": task.exit_code,
        "error": task.error,
        "duration_ms": task.duration_ms,
    });
    send(tx, event("status", &status.to_string())).await
}

async fn send(tx: &mpsc::Sender<Bytes>, bytes: Bytes) -> Result<(), ()> {
    tx.send(bytes).await.map_err(|_| ())
}

/// The SSE answer for a task this node does not hold: the output its record
/// kept, then its status.
pub fn from_view(task: crate::engine::task::TaskView) -> HttpResponse {
    let mut events = Vec::new();
    for (stream, text) in [(Stream::Stdout, &task.stdout), (Stream::Stderr, &task.stderr)] {
        let text = text.strip_suffix('\n').unwrap_or(text);
        for piece in text.split('\n').filter(|_| !text.is_empty()) {
            events.push(line_event(&Line {
                stream,
                text: piece.to_string(),
            }));
        }
    }
    let status = serde_json::json!({
        "id": task.id,
        "status": task.status,
        "exit_code": task.exit_code,
        "error": task.error,
        "duration_ms": task.duration_ms,
    });
    events.push(event("status", &status.to_string()));
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .body(events.concat())
}

#[cfg(test)]
mod tests {
    use super::event;

    #[test]
    fn no_text_can_end_the_data_field() {
        let text = "line1\rdata: x\r\revent: stderr\rdata: fake\r\nlast";
        let bytes = event("stdout", text);
        let out = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(
            out,
            "event: stdout\ndata: line1\ndata: data: x\ndata: \ndata: event: stderr\ndata: data: fake\ndata: last\n\n"
        );
        // Every line of the event but the blank one that ends it is a data field.
        let lines: Vec<&str> = out.split(['\r', '\n']).collect();
        assert!(
            lines[1..lines.len() - 2].iter().all(|l| l.starts_with("data: ")),
            "{lines:?}"
        );
    }
}
