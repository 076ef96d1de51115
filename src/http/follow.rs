//! Live output as Server-Sent Events. Each follower has its own bounded
//! buffer: a slow one is told how many lines it missed and never slows the
//! handler or the other followers.

use crate::engine::Engine;
use crate::process::output::Line;
use actix_web::HttpResponse;
use bytes::Bytes;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

/// Events queued for one HTTP connection before the writer waits for it.
const CONNECTION_BUFFER: usize = 64;

fn event(name: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + name.len() + 16);
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    // A line break inside the data would end the field: one `data:` per piece.
    for piece in data.split('\n') {
        out.push_str("data: ");
        out.push_str(piece.trim_end_matches('\r'));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

fn line_event(line: &Line) -> Bytes {
    event(line.stream.as_str(), &line.text)
}

/// The SSE response for task `id`.
pub fn stream(engine: Engine, id: Uuid) -> HttpResponse {
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
        .streaming(body)
}

/// Sends lines until the task ends, then its status. Returns early when the client goes away.
async fn pump(engine: &Engine, id: Uuid, tx: &mpsc::Sender<Bytes>) -> Result<(), ()> {
    let ids = [id];
    loop {
        let Some((finished, snapshot, mut rx)) = engine.with_task(&id, |t| {
            let (lines, rx) = t.output.follow();
            (t.state.is_finished(), lines, rx)
        }) else {
            return Ok(());
        };
        if finished {
            // Everything is in the tails, a last line without a newline included.
            let full = engine.with_task(&id, all_lines).unwrap_or_default();
            for line in &full {
                send(tx, line_event(line)).await?;
            }
            return send_status(engine, id, tx).await;
        }
        for line in &snapshot {
            send(tx, line_event(line)).await?;
        }
        loop {
            tokio::select! {
                received = rx.recv() => match received {
                    Ok(line) => send(tx, line_event(&line)).await?,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        send(tx, event("missed", &format!("{{\"lines\":{n}}}"))).await?;
                    }
                    // The output was replaced (a retry began): follow the new one.
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                done = engine.wait_finished(&ids, tokio::time::Instant::now() + Duration::from_secs(3600)) => {
                    if done {
                        while let Ok(line) = rx.try_recv() {
                            send(tx, line_event(&line)).await?;
                        }
                        return send_status(engine, id, tx).await;
                    }
                }
            }
            if tx.is_closed() {
                return Err(());
            }
        }
    }
}

fn all_lines(t: &crate::engine::task::Task) -> Vec<Line> {
    use crate::process::output::Stream;
    let mut lines = Vec::new();
    for (stream, tail) in [(Stream::Stdout, &t.output.stdout), (Stream::Stderr, &t.output.stderr)] {
        let text = tail.lock().unwrap_or_else(|p| p.into_inner()).text();
        let text = text.strip_suffix('\n').unwrap_or(&text);
        if !text.is_empty() {
            lines.extend(text.split('\n').map(|l| Line {
                stream,
                text: l.to_string(),
            }));
        }
    }
    lines
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
