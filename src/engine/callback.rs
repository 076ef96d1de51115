//! Completion callbacks: when a task ends, POST its result to each
//! `on_finish` URL, signed per Standard Webhooks, with retries and backoff.
//! Each callback's state is kept on the task; its URL is only ever shown
//! masked ([`crate::secret::mask_url`]).

use super::task::TaskView;
use crate::auth::standard::SigningKey;
use crate::process::program::Callback;
use crate::store::record::{CallbackRecord, CallbackStatus};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The JSON a callback receives.
pub fn payload(task: &TaskView) -> Vec<u8> {
    const TAIL: usize = 4096;
    let tail = |s: &str| super::task::last_bytes(s, TAIL).to_string();
    serde_json::to_vec(&serde_json::json!({
        "type": format!("task.{}", task.status.as_str()),
        "task": {
            "id": task.id,
            "delivery_id": task.delivery_id,
            "source": task.source,
            "event": task.event,
            "program": task.program,
            "params": task.params,
            "status": task.status,
            "exit_code": task.exit_code,
            "error": task.error,
            "attempt": task.attempt,
            "started_at": task.started_at,
            "finished_at": task.finished_at,
            "duration_ms": task.duration_ms,
            "stdout": tail(&task.stdout),
            "stderr": tail(&task.stderr),
        }
    }))
    .unwrap_or_default()
}

/// Sends one POST; blocking, so it runs on the blocking pool.
fn post_once(cb: &Callback, msg_id: &str, body: &[u8]) -> Result<(), String> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .redirects(0)
        .build();
    let mut req = agent
        .post(cb.url.expose())
        .set("Content-Type", "application/json")
        .set("User-Agent", concat!("hookrunner/", env!("CARGO_PKG_VERSION")))
        .set("webhook-id", msg_id)
        .set("webhook-timestamp", &ts.to_string());
    if let Some(secret) = &cb.secret {
        let text = String::from_utf8_lossy(secret.expose());
        req = req.set(
            "webhook-signature",
            &SigningKey::for_signing(&text).sign(msg_id, ts, body),
        );
    }
    match req.send_bytes(body) {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, _)) => Err(format!("the receiver answered HTTP {code}")),
        // The kind only: ureq's own message would name the URL, credentials and all.
        Err(ureq::Error::Transport(t)) => Err(format!("could not reach the receiver: {}", t.kind())),
    }
}

/// Delivers one callback, retrying with exponential backoff; `report` gets each state.
pub async fn deliver(cb: Callback, msg_id: String, body: Vec<u8>, report: impl FnMut(CallbackRecord)) {
    let state = CallbackRecord {
        url: cb.url.masked_webhook(),
        status: CallbackStatus::Pending,
        attempts: 0,
        last_error: None,
    };
    resume(cb, msg_id, body, state, report).await
}

/// [`deliver`] going on from `state`: a pending callback whose first
/// `state.attempts` attempts were made before a restart or a takeover.
pub async fn resume(
    cb: Callback,
    msg_id: String,
    body: Vec<u8>,
    mut state: CallbackRecord,
    mut report: impl FnMut(CallbackRecord),
) {
    if state.attempts > 0 && state.attempts < cb.attempts {
        // The backoff the next attempt would have waited.
        tokio::time::sleep(
            cb.backoff
                .saturating_mul(1 << (state.attempts - 1).min(10))
                .min(Duration::from_secs(600)),
        )
        .await;
    }
    // At least one more attempt, even if the config now allows fewer.
    let last = cb.attempts.max(state.attempts + 1);
    for attempt in state.attempts + 1..=last {
        let (c, id, b) = (cb.clone(), msg_id.clone(), body.clone());
        let result = tokio::task::spawn_blocking(move || post_once(&c, &id, &b))
            .await
            .unwrap_or_else(|e| Err(format!("the callback sender failed: {e}")));
        state.attempts = attempt;
        match result {
            Ok(()) => {
                state.status = CallbackStatus::Delivered;
                state.last_error = None;
                report(state);
                return;
            }
            Err(e) => {
                tracing::warn!(url = %state.url, attempt, error = %e, "completion callback failed");
                state.last_error = Some(e);
                if attempt == last {
                    state.status = CallbackStatus::Failed;
                    report(state);
                    return;
                }
                report(state.clone());
                let step = cb
                    .backoff
                    .saturating_mul(1 << (attempt - 1).min(10))
                    .min(Duration::from_secs(600));
                tokio::time::sleep(step).await;
            }
        }
    }
}
