//! Admission again, for work that arrived before: a recorded delivery
//! replayed against the current config ([`replay`]), and a task run again
//! with the same program, params and body ([`rerun`]). Neither checks auth
//! or dedup again; both queue like a new delivery (all or nothing, on disk
//! before the answer).

use super::body::{kept_as_json, Accepts, Parsed};
use super::{judge_and_queue, queue, Answer, Facts, Intake, Parts, Refused};
use crate::delivery::record::Record;
use crate::delivery::Outcome;
use crate::engine::task::{params_of, TaskView};
use crate::engine::NewTask;
use crate::mapping::event::Event;
use crate::mapping::Request;
use crate::process::program::Invocation;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use std::sync::Arc;
use uuid::Uuid;

/// A read of the store; `None` when there is no store.
async fn read<R, Fut>(store: Option<&Store>, f: impl FnOnce(Store) -> Fut) -> Result<Option<R>, Refused>
where
    Fut: std::future::Future<Output = Result<R, StoreError>>,
{
    let Some(store) = store.cloned() else {
        return Ok(None);
    };
    f(store)
        .await
        .map(Some)
        .map_err(|e| Refused::StoreUnavailable(e.to_string()))
}

/// A delivery on record: in the log, else read back from the store (and put in the log).
async fn recorded(at: Intake<'_>, id: &str) -> Result<Arc<Record>, Refused> {
    if let Some(r) = at.deliveries.get(id) {
        return Ok(r);
    }
    let key = id.to_string();
    let found = read(at.deliveries.store(), move |s| async move { s.delivery(&key).await })
        .await?
        .flatten();
    let (record, body) = found.ok_or_else(|| Refused::NotFound(format!("there is no delivery `{id}` on record")))?;
    let record = Record::from_record(record, body);
    at.deliveries.insert(&record, true);
    Ok(Arc::new(record))
}

/// What a replay did: the new record's id, and how it was answered.
pub struct Replayed {
    pub record: String,
    pub result: Result<Answer, Refused>,
}

/// Runs a recorded delivery again against the current config: a new record,
/// linked both ways, and new tasks. Refused outright (404, 409) when there is
/// nothing to replay.
pub async fn replay(at: Intake<'_>, id: &str, request_id: String) -> Result<Replayed, Refused> {
    let original = recorded(at, id).await?;
    let body: Bytes = original.body().ok_or_else(|| {
        Refused::Conflict(format!(
            "the body of delivery `{id}` is not kept (it was {} or has been evicted), so it cannot be replayed",
            original.outcome.as_str()
        ))
    })?;
    let source = at
        .config
        .sources
        .get(&original.source)
        .ok_or_else(|| Refused::Conflict(format!("source `{}` is no longer in the config", original.source)))?;
    let event = Event {
        name: original.event.clone().unwrap_or_else(|| "default".into()),
        raw: original.raw_event.clone(),
    };
    let mut facts = Facts::new(
        &original.source,
        "replay".into(),
        original.headers.clone(),
        original.query.clone(),
        request_id,
    );
    facts.delivery_id = original.delivery_id.clone();
    facts.event = Some(event.clone());
    facts.body_size = original.body_size;
    facts.replay_of = Some(original.id.clone());
    // The body is read again as the source takes it now; a provider's form
    // was kept as the JSON it carried.
    let accepts = Accepts::of(source);
    let parsed = if kept_as_json(&original.headers, &accepts) {
        let json = serde_json::from_slice(&body)
            .map_err(|e| Refused::Conflict(format!("the recorded body is not JSON: {e}")))?;
        Parsed {
            json,
            stdin: body.clone(),
            kind: Some(crate::payload::Kind::Form),
            files: Vec::new(),
            boundary: None,
        }
    } else {
        let dir = match at.engine.uploads() {
            Some(u) => u.dir_for(&facts.id),
            None => std::path::PathBuf::from("<uploads>").join(&facts.id),
        };
        super::body::parse(&original.headers, &body, &accepts, &|| dir.clone()).map_err(|e| {
            Refused::Conflict(format!(
                "the recorded body cannot be read as the source takes it now: {e}"
            ))
        })?
    };
    let request = Request {
        method: "POST".into(),
        path: format!("{}/{}", at.config.server.prefix, original.source),
        remote_addr: None,
        client_ip: original
            .remote_addr
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| ip.to_string()),
    };
    let parts = Parts {
        event: &event,
        json: &parsed.json,
        stdin: &parsed.stdin,
        headers: &original.headers,
        query: &original.query,
        request: &request,
        raw: &body,
        files: &parsed.files,
        boundary: parsed.boundary.as_deref(),
    };
    let result = judge_and_queue(at, source, &parts, &mut facts).await;
    let new_id = facts.id.clone();
    let result = match result {
        Ok((answer, None)) => Ok(answer),
        Ok((answer, Some(outcome))) => {
            facts.body = Some(body);
            let why = match &answer {
                Answer::Ignored { why, .. } => Some(why.clone()),
                _ => None,
            };
            super::record_delivery(at, facts.record(outcome, answer.status(), why), false);
            Ok(answer)
        }
        Err(e) => {
            super::record_delivery(
                at,
                facts.record(Outcome::Rejected, e.status(), Some(e.to_string())),
                false,
            );
            Err(e)
        }
    };
    at.deliveries.add_replay(&original, new_id.clone());
    Ok(Replayed { record: new_id, result })
}

/// Runs a task again: a new task with the same program (as configured now),
/// params and body, linked to the old one.
pub async fn rerun(at: Intake<'_>, old: Uuid, request_id: String) -> Result<TaskView, Refused> {
    // The program as the config defines it now (a rerun after a fix runs
    // the fixed program), whether the task is in memory or only stored.
    let found = at.engine.get(&old).and_then(|t| {
        let s = &t.spec;
        Some((
            at.config.program(&s.program.name)?,
            s.params.clone(),
            s.source.clone(),
            s.event.clone(),
            s.delivery_id.clone(),
            s.record_id.clone(),
            t.body.clone(),
            s.boundary.clone(),
        ))
    });
    let found = match found {
        Some(f) => Some(f),
        // Only in the store's history: take what it recorded.
        None => read(at.engine.store(), move |s| async move { s.task(old).await })
            .await?
            .flatten()
            .and_then(|r| {
                let program = at.config.program(&r.program)?;
                Some((
                    program,
                    params_of(&r.params),
                    r.source.as_str().into(),
                    r.event.as_str().into(),
                    r.delivery_id.as_str().into(),
                    r.record_id.clone(),
                    Bytes::new(),
                    r.boundary.clone(),
                ))
            }),
    };
    let (program, params, source, event, delivery_id, record_id, mut body, boundary) = found
        .ok_or_else(|| Refused::NotFound(format!("there is no task `{old}` whose program is still in the config")))?;
    // An empty body is a body too (a bare POST): the record says whether it was kept.
    let mut kept = !body.is_empty();
    if !kept {
        if let Some(r) = record_id.as_deref() {
            if let Ok(Some(b)) = recorded(at, r).await.map(|record| record.body()) {
                body = b;
                kept = true;
            }
        }
    }
    if !kept {
        return Err(Refused::Conflict(format!(
            "the body of task `{old}`'s delivery is no longer kept, so it cannot be re-run"
        )));
    }
    let id = Uuid::new_v4();
    let task_id = id.to_string();
    let inv = Invocation {
        source: &source,
        event: &event,
        task_id: &task_id,
        delivery_id: &delivery_id,
        request_id: &request_id,
        payload: &body,
        params: &params,
    };
    let (argv, key) = (program.argv(&inv), program.key(&inv));
    program
        .check_runnable(&inv, &argv)
        .map_err(|why| Refused::Unprocessable(format!("task `{old}` cannot be run again: {why}")))?;
    let new = NewTask {
        id,
        delivery_id,
        request_id: request_id.as_str().into(),
        source,
        event,
        argv,
        params,
        program,
        body,
        boundary,
        record_id,
        rerun_of: Some(old),
        key,
        pinned_node: None,
    };
    queue(at, vec![new], None).await?;
    // In a cluster the new task is in the shared queue, not this node's memory.
    at.engine
        .task_anywhere(&id)
        .await
        .ok_or_else(|| Refused::NotFound(format!("there is no task `{id}`")))
}
