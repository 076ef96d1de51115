//! Tasks as store rows: the API's JSON of the task, plus what a restart needs.

use super::task::Task;
use crate::store::{millis, TaskRow};

/// The row for a task. Its body is kept while the task may still run.
pub fn row(t: &Task) -> TaskRow {
    let view = t.view();
    let mut data = serde_json::to_value(&view).unwrap_or_default();
    if let Some(obj) = data.as_object_mut() {
        // Fields the API does not show; names starting with `_` are stripped when read.
        obj.insert("_seq".into(), t.seq.into());
        obj.insert("_record_id".into(), t.record_id.clone().into());
        obj.insert("_created_ms".into(), millis(t.created_at).into());
    }
    let finished = view.status.is_final();
    TaskRow {
        id: t.id.to_string(),
        seq: t.seq as i64,
        source: t.source.to_string(),
        event: t.event.to_string(),
        program: t.program.name.clone(),
        status: view.status.as_str().to_string(),
        created_ms: millis(t.created_at),
        finished_ms: finished
            .then(|| {
                view.finished_at
                    .as_deref()
                    .and_then(|f| humantime::parse_rfc3339(f).ok())
                    .map(millis)
            })
            .flatten(),
        callbacks_pending: t.callbacks.iter().any(|c| c.status == "pending"),
        data: data.to_string(),
        body: (!finished).then(|| t.body.to_vec()),
    }
}

/// A stored task's JSON as the API shows it.
pub fn public(mut data: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = data.as_object_mut() {
        obj.retain(|k, _| !k.starts_with('_'));
    }
    data
}
