//! A task's output from the node that runs it: in a cluster, a request for
//! the live output of a task running on another node is passed through to
//! that node's API (with this node's API token) and its answer streamed back.

use super::error::ApiError;
use super::AppState;
use actix_web::HttpResponse;
use bytes::Bytes;
use std::io::Read;
use std::time::Duration;
use uuid::Uuid;

/// The node running task `id` and its API address, when that is another node.
pub async fn elsewhere(state: &AppState, id: Uuid) -> Result<Option<(String, String)>, ApiError> {
    let Some(cluster) = state.engine.cluster() else {
        return Ok(None);
    };
    let Some(pg) = state.engine.store().and_then(|s| s.postgres()) else {
        return Ok(None);
    };
    let found = pg.running_on(id).await.map_err(|e| ApiError::Store(e.to_string()))?;
    Ok(found.filter(|(node, _)| node != cluster.name()))
}

/// Passes `GET <path_and_query>` to the node at `base` and streams its answer back.
pub async fn pass(
    state: actix_web::web::Data<AppState>,
    grant: super::access::Grant,
    node: &str,
    base: &str,
    path_and_query: &str,
    sse: bool,
) -> Result<HttpResponse, ApiError> {
    let url = format!("{}{path_and_query}", base.trim_end_matches('/'));
    let token = state
        .config()
        .api_tokens
        .first()
        .map(|t| String::from_utf8_lossy(t.expose()).into_owned());
    let node = node.to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let (head_tx, head_rx) = tokio::sync::oneshot::channel::<Result<(u16, String), String>>();
    tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .redirects(0)
            .build();
        let mut req = agent.get(&url);
        if let Some(t) = &token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        if sse {
            req = req.set("Accept", "text/event-stream");
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                let _ = head_tx.send(Err(format!("node `{node}` cannot be reached: {}", t.kind())));
                return;
            }
        };
        let content_type = resp.content_type().to_string();
        let _ = head_tx.send(Ok((resp.status(), content_type)));
        let mut reader = resp.into_reader();
        let mut buf = vec![0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let (status, content_type) = head_rx
        .await
        .map_err(|_| ApiError::StoreUnavailable("the node's answer was lost".into()))?
        .map_err(ApiError::NodeUnavailable)?;
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let mut response = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY),
    );
    response.content_type(content_type);
    if sse {
        response
            .insert_header(("Cache-Control", "no-cache"))
            .insert_header(("X-Accel-Buffering", "no"));
    }
    // The client's own right to read is checked as long as it reads.
    Ok(response.streaming(super::access::guarded(Box::pin(body), grant, state)))
}
