//! What the dashboard needs beyond the task and delivery routes:
//! `GET /-/overview` (counts and limits per program, the sources) and
//! `POST /-/dry-run` (a payload judged by a source, nothing run).

use super::access::authorize_api;
use super::error::ApiError;
use super::AppState;
use crate::auth::Auth;
use crate::engine::task::{Status, TaskState};
use crate::store::record::StateRecord;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `GET /-/overview`: this node, its limits, running and queued tasks per
/// program with each program's limit and environment names, and the sources
/// (names, providers, the kind of auth; never a secret).
pub async fn overview(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let config = state.config();
    // Counted under the scheduler's lock, no task's view built: a queue of
    // 100,000 costs a walk over their ids.
    let (running, queued) = state.engine.counts_by_program();
    let (total_running, total_queued) = state.engine.counts();
    let programs: Vec<_> = config
        .programs
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "running": running.get(&*p.name).copied().unwrap_or(0),
                "queued": queued.get(&*p.name).copied().unwrap_or(0),
                "max_concurrent": p.max_concurrent,
                "timeout_ms": p.timeout.as_millis() as u64,
                "retries": p.retry.is_some(),
                "run_on": p.run_on,
                "env": p.env_names(),
            })
        })
        .collect();
    let mut sources: Vec<_> = config.sources.values().collect();
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    let sources: Vec<_> = sources
        .iter()
        .map(|s| {
            let auth = match &s.auth {
                Auth::None => "none",
                Auth::Token { .. } => "token",
                Auth::Basic { .. } => "basic",
                _ => "signature",
            };
            json!({
                "name": s.name,
                "provider": s.provider.name(),
                "auth": auth,
                "methods": s.methods,
                "url": format!("{}/{}", config.server.prefix, s.name),
            })
        })
        .collect();
    let last_hour = last_hour(&state).await;
    Ok(HttpResponse::Ok().json(json!({
        "node": config.node.name,
        "clustered": state.engine.cluster().is_some(),
        "version": env!("CARGO_PKG_VERSION"),
        // As `/readyz` names it (`sqlite:<path>`, or the masked URL).
        "store": state.deliveries.store().map(|s| s.describe()),
        "limits": {
            "max_concurrent": config.limits.max_concurrent,
            "max_queued": config.limits.max_queued,
        },
        "running": total_running,
        "queued": total_queued,
        "programs": programs,
        "sources": sources,
        "last_hour": last_hour,
    })))
}

/// How many tasks the overview's failure figures look at: the newest.
const RECENT_TASKS: usize = 1000;

/// Among the newest 1000 tasks (the store's when there is one, else those in
/// memory): how many finished in the last hour, and how many of those ended
/// other than `succeeded` or `cancelled`. Null when the store cannot be read.
async fn last_hour(state: &AppState) -> serde_json::Value {
    // Each task's status, and when it finished.
    let live = |t: &TaskState| match t {
        TaskState::Finished { finished_at, .. } => (t.status(), Some(*finished_at)),
        _ => (t.status(), None),
    };
    let from_memory = || state.engine.newest_states(RECENT_TASKS).iter().map(live).collect();
    let states: Vec<(Status, Option<SystemTime>)> = if state.engine.store().is_some() {
        let query = crate::store::TaskQuery {
            limit: RECENT_TASKS,
            ..Default::default()
        };
        match state
            .read_store(move |s| async move { s.list_tasks(&query).await })
            .await
        {
            Ok(Some(page)) => page
                .rows
                .into_iter()
                // A task still in memory in its live state (the stored one can trail).
                .map(|r| match state.engine.get(&r.id) {
                    Some(t) => live(&t.state),
                    None => match r.state {
                        StateRecord::Finished {
                            status, finished_ms, ..
                        } => (
                            status,
                            Some(UNIX_EPOCH + Duration::from_millis(finished_ms.max(0) as u64)),
                        ),
                        other => (other.status(), None),
                    },
                })
                .collect(),
            Ok(None) => from_memory(),
            Err(_) => return serde_json::Value::Null,
        }
    } else {
        from_memory()
    };
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let (mut finished, mut failed) = (0, 0);
    for (status, finished_at) in &states {
        if finished_at.is_some_and(|t| t >= hour_ago) {
            finished += 1;
            if !matches!(status, Status::Succeeded | Status::Cancelled) {
                failed += 1;
            }
        }
    }
    json!({ "finished": finished, "failed": failed, "among_newest": states.len() })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRun {
    source: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    query: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

/// `POST /-/dry-run`: `{"source", "headers": [[name, value]...], "query":
/// [[name, value]...], "body": "<text>"}` judged as that source judges a
/// delivery, without its signature check; answers the dry run's trace.
pub async fn dry_run(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let config = state.config();
    // The body travels as a JSON string: room for its escapes and the headers.
    let limit = config.server.max_body.saturating_mul(2).saturating_add(256 << 10);
    let raw = super::body::read(req.headers(), payload, limit).await?;
    let asked: DryRun = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be JSON {{\"source\", \"headers\": [[name, value], ...], \"query\": [[name, value], ...], \"body\": \"...\"}} ({})",
            crate::logging::escape(&e.to_string())
        ))
    })?;
    let mut headers = crate::headers::HeaderPairs::new();
    for (name, value) in &asked.headers {
        let name = name.trim();
        if !crate::headers::valid_name(name) {
            return Err(ApiError::BadRequest(format!(
                "`{}` is not a header name",
                crate::logging::escape(name)
            )));
        }
        headers.add(name, value.trim().as_bytes());
    }
    let trace = crate::intake::dry_run(
        state.intake(&config),
        &asked.source,
        &headers,
        &asked.query,
        bytes::Bytes::from(asked.body.into_bytes()),
    )?;
    Ok(HttpResponse::Ok().json(trace))
}
