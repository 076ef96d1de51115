//! A task: one run of one program for one delivery, its state, its store
//! record and its API view.

use crate::process::{Ending, Program};
pub use crate::status::Status;
use crate::store::record::{AttemptRecord, CallbackRecord, OutputRecord, StateRecord, TaskRecord};
use crate::store::{millis, time_of};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Where a task is in its life. Each state carries only what is true in it.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Waiting for a slot; with `next_attempt_at`, waiting out a retry's backoff first.
    Queued { next_attempt_at: Option<SystemTime> },
    /// Taken off the queue at `started_at`; `pid` once the handler was spawned.
    Running { started_at: SystemTime, pid: Option<u32> },
    Finished {
        started_at: Option<SystemTime>,
        finished_at: SystemTime,
        outcome: Outcome,
    },
}

impl TaskState {
    pub fn is_finished(&self) -> bool {
        matches!(self, TaskState::Finished { .. })
    }

    pub fn status(&self) -> Status {
        match self {
            TaskState::Queued { .. } => Status::Queued,
            TaskState::Running { .. } => Status::Running,
            TaskState::Finished { outcome, .. } => outcome.status(),
        }
    }

    /// When its handler started (running with a pid, or finished after starting).
    pub fn started_at(&self) -> Option<SystemTime> {
        match self {
            TaskState::Queued { .. } | TaskState::Running { pid: None, .. } => None,
            TaskState::Running { started_at, .. } => Some(*started_at),
            TaskState::Finished { started_at, .. } => *started_at,
        }
    }
}

/// How a finished task (or attempt) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A code listed in `exit_codes.success` (0 by default).
    Succeeded {
        exit_code: i32,
    },
    /// Another exit code, a signal, or a program that could not start.
    Failed {
        exit_code: Option<i32>,
        error: Option<String>,
    },
    TimedOut {
        after: Duration,
    },
    Cancelled {
        reason: String,
    },
    /// The daemon stopped while it ran (found at the next start).
    Interrupted {
        reason: String,
    },
}

impl Outcome {
    pub fn status(&self) -> Status {
        match self {
            Outcome::Succeeded { .. } => Status::Succeeded,
            Outcome::Failed { .. } => Status::Failed,
            Outcome::TimedOut { .. } => Status::TimedOut,
            Outcome::Cancelled { .. } => Status::Cancelled,
            Outcome::Interrupted { .. } => Status::Interrupted,
        }
    }

    /// The `exit_code` and `error` the API shows for this outcome.
    pub fn code_and_error(&self) -> (Option<i32>, Option<String>) {
        match self {
            Outcome::Succeeded { exit_code } => (Some(*exit_code), None),
            Outcome::Failed { exit_code, error } => (*exit_code, error.clone()),
            Outcome::TimedOut { after } => (None, Some(timed_out_message(*after))),
            Outcome::Cancelled { reason } | Outcome::Interrupted { reason } => (None, Some(reason.clone())),
        }
    }

    /// How a handler's ending counts for `program`.
    pub fn of(ending: Ending, program: &Program) -> Self {
        match ending {
            Ending::Exited(code) if program.success_codes.contains(&code) => Outcome::Succeeded { exit_code: code },
            Ending::Exited(0) => Outcome::Failed {
                exit_code: Some(0),
                error: Some("exit code 0 is not in `exit_codes.success`".into()),
            },
            Ending::Exited(code) => Outcome::Failed {
                exit_code: Some(code),
                error: None,
            },
            Ending::Signaled { name, .. } => Outcome::Failed {
                exit_code: None,
                error: Some(format!("killed by {name}")),
            },
            Ending::TimedOut => Outcome::TimedOut { after: program.timeout },
            Ending::Stopped(reason) => Outcome::Cancelled { reason },
            Ending::SpawnFailed(reason) => Outcome::Failed {
                exit_code: None,
                error: Some(reason),
            },
        }
    }

    fn record(&self) -> (Status, Option<i32>, Option<String>, Option<u64>) {
        let timeout_ms = match self {
            Outcome::TimedOut { after } => Some(after.as_millis() as u64),
            _ => None,
        };
        let (code, error) = match self {
            Outcome::TimedOut { .. } => (None, None),
            other => other.code_and_error(),
        };
        (self.status(), code, error, timeout_ms)
    }

    fn from_record(status: Status, exit_code: Option<i32>, error: Option<String>, timeout_ms: Option<u64>) -> Self {
        match status {
            Status::Succeeded => Outcome::Succeeded {
                exit_code: exit_code.unwrap_or(0),
            },
            Status::TimedOut => Outcome::TimedOut {
                after: Duration::from_millis(timeout_ms.unwrap_or(0)),
            },
            Status::Cancelled => Outcome::Cancelled {
                reason: error.unwrap_or_default(),
            },
            Status::Interrupted => Outcome::Interrupted {
                reason: error.unwrap_or_default(),
            },
            Status::Failed | Status::Queued | Status::Running => Outcome::Failed { exit_code, error },
        }
    }
}

fn timed_out_message(after: Duration) -> String {
    format!("timed out after {}", humantime::format_duration(after))
}

/// What a task is, fixed when it is created.
#[derive(Debug)]
pub struct TaskSpec {
    pub id: Uuid,
    /// Creation order, for listing newest first.
    pub seq: u64,
    pub delivery_id: Arc<str>,
    pub request_id: Arc<str>,
    pub source: Arc<str>,
    pub event: Arc<str>,
    pub program: Arc<Program>,
    /// In mapping order.
    pub params: Vec<(String, Value)>,
    pub argv: Vec<String>,
    /// The rendered `concurrency_key`.
    pub key: Option<Arc<str>>,
    pub created_at: SystemTime,
    /// The delivery record the task came from (its body is kept there for reruns).
    pub record_id: Option<String>,
    /// The task this one re-runs.
    pub rerun_of: Option<Uuid>,
    /// Only nodes with all these labels may run it.
    pub run_on: Vec<String>,
    /// Only this node may run it (a `fan_out` program's task for that node).
    pub pinned_node: Option<String>,
    /// A multipart body's boundary, to write its files again.
    pub boundary: Option<String>,
}

/// One task as the engine keeps it.
#[derive(Debug, Clone)]
pub struct Task {
    pub spec: Arc<TaskSpec>,
    pub state: TaskState,
    /// The current attempt, from 1.
    pub attempt: u32,
    /// Earlier attempts that ended and were retried.
    pub attempts: Vec<Attempt>,
    /// The tasks that re-ran this one.
    pub reruns: Vec<Uuid>,
    /// The `on_finish` callbacks and where each stands.
    pub callbacks: Vec<CallbackRecord>,
    /// The request body for stdin; dropped once the task has finished.
    pub body: Bytes,
    /// The output's tails, once finished.
    pub output: Option<OutputRecord>,
    /// The node that runs or ran it (in a cluster).
    pub node: Option<Arc<str>>,
    /// The claim its node runs it under (in a cluster).
    pub claim: Option<Uuid>,
    /// Finished without its program at hand: its callbacks are not known
    /// yet (see [`TaskRecord::callbacks_unknown`]).
    pub callbacks_unknown: bool,
}

/// One attempt of a task that was retried.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempt: u32,
    pub outcome: Outcome,
    pub started_at: Option<SystemTime>,
    pub finished_at: SystemTime,
    /// The last bytes of its output.
    pub stdout: String,
    pub stderr: String,
}

/// How much output an earlier attempt keeps.
pub const ATTEMPT_TAIL: usize = 2048;

/// The last `max` bytes of `text`, from a character boundary.
pub fn last_bytes(text: &str, max: usize) -> &str {
    let mut cut = text.len().saturating_sub(max);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    &text[cut..]
}

impl Task {
    pub fn new(spec: TaskSpec, body: Bytes) -> Task {
        Task {
            spec: Arc::new(spec),
            state: TaskState::Queued { next_attempt_at: None },
            attempt: 1,
            attempts: Vec::new(),
            reruns: Vec::new(),
            callbacks: Vec::new(),
            body,
            output: None,
            node: None,
            claim: None,
            callbacks_unknown: false,
        }
    }

    pub fn id(&self) -> Uuid {
        self.spec.id
    }

    pub fn status(&self) -> Status {
        self.state.status()
    }

    /// The task as the store keeps it.
    pub fn record(&self) -> TaskRecord {
        let s = &self.spec;
        let state = match &self.state {
            TaskState::Queued { next_attempt_at } => StateRecord::Queued {
                next_attempt_ms: next_attempt_at.map(millis),
            },
            TaskState::Running { started_at, pid } => StateRecord::Running {
                started_ms: millis(*started_at),
                pid: *pid,
            },
            TaskState::Finished {
                started_at,
                finished_at,
                outcome,
            } => {
                let (status, exit_code, error, timeout_ms) = outcome.record();
                StateRecord::Finished {
                    started_ms: started_at.map(millis),
                    finished_ms: millis(*finished_at),
                    status,
                    exit_code,
                    error,
                    timeout_ms,
                }
            }
        };
        TaskRecord {
            v: crate::store::record::VERSION,
            id: s.id,
            seq: s.seq,
            delivery_id: s.delivery_id.to_string(),
            record_id: s.record_id.clone(),
            request_id: s.request_id.to_string(),
            source: s.source.to_string(),
            event: s.event.to_string(),
            program: s.program.name.to_string(),
            params: s.params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
            argv: s.argv.clone(),
            key: s.key.as_deref().map(String::from),
            created_ms: millis(s.created_at),
            state,
            attempt: self.attempt,
            attempts: self.attempts.iter().map(Attempt::record).collect(),
            rerun_of: s.rerun_of,
            reruns: self.reruns.clone(),
            callbacks: self.callbacks.clone(),
            output: self.output.clone(),
            node: self.node.as_deref().map(String::from),
            run_on: s.run_on.clone(),
            pinned_node: s.pinned_node.clone(),
            claim: self.claim,
            boundary: s.boundary.clone(),
            rerun_interrupted: s.program.rerun_interrupted,
            callbacks_unknown: self.callbacks_unknown,
        }
    }

    /// A task from its record, with `program` (the config's current one,
    /// resolved by the caller) and its body.
    pub fn from_record(r: &TaskRecord, program: Arc<Program>, body: Bytes) -> Task {
        let spec = TaskSpec {
            id: r.id,
            seq: r.seq,
            delivery_id: r.delivery_id.as_str().into(),
            request_id: r.request_id.as_str().into(),
            source: r.source.as_str().into(),
            event: r.event.as_str().into(),
            program,
            params: params_of(&r.params),
            argv: r.argv.clone(),
            key: r.key.as_deref().map(Arc::from),
            created_at: time_of(r.created_ms),
            record_id: r.record_id.clone(),
            rerun_of: r.rerun_of,
            run_on: r.run_on.clone(),
            pinned_node: r.pinned_node.clone(),
            boundary: r.boundary.clone(),
        };
        Task {
            spec: Arc::new(spec),
            state: state_of(&r.state),
            attempt: r.attempt,
            attempts: r.attempts.iter().map(Attempt::from_record).collect(),
            reruns: r.reruns.clone(),
            callbacks: r.callbacks.clone(),
            body,
            output: r.output.clone(),
            node: r.node.as_deref().map(Arc::from),
            claim: r.claim,
            callbacks_unknown: r.callbacks_unknown,
        }
    }
}

impl Task {
    /// Renders argv and the concurrency key again from the stored params and
    /// body with the task's program (the config's current one, after a restart).
    pub fn render_again(&mut self) {
        let s = &self.spec;
        let task_id = s.id.to_string();
        let inv = crate::process::program::Invocation {
            source: &s.source,
            event: &s.event,
            task_id: &task_id,
            delivery_id: &s.delivery_id,
            request_id: &s.request_id,
            payload: &self.body,
            params: &s.params,
        };
        let (argv, key) = (s.program.argv(&inv), s.program.key(&inv));
        self.spec = Arc::new(TaskSpec {
            id: s.id,
            seq: s.seq,
            delivery_id: s.delivery_id.clone(),
            request_id: s.request_id.clone(),
            source: s.source.clone(),
            event: s.event.clone(),
            program: s.program.clone(),
            params: s.params.clone(),
            argv,
            key,
            created_at: s.created_at,
            record_id: s.record_id.clone(),
            rerun_of: s.rerun_of,
            run_on: s.run_on.clone(),
            pinned_node: s.pinned_node.clone(),
            boundary: s.boundary.clone(),
        });
    }
}

/// Param values from their JSON text (a value that does not parse stays a string).
pub fn params_of(params: &[(String, String)]) -> Vec<(String, Value)> {
    params.iter().map(|(k, text)| (k.clone(), param_value(text))).collect()
}

/// The deepest a param's value can nest: a body nests at most 127 levels
/// (the parsers' limit), an XML element's attributes add one, and a
/// `parse_json` string adds at most 127 more where it sits.
const PARAM_DEPTH: usize = 512;

/// One param's value from its JSON text. serde_json stops at 128 levels, one
/// short of what an XML body or a `parse_json` param can make, so a deeper
/// value is read again without that limit (up to [`PARAM_DEPTH`]) instead
/// of turning into a string of JSON text in the API.
fn param_value(text: &str) -> Value {
    match serde_json::from_str(text) {
        Ok(value) => value,
        Err(_) if nesting(text) <= PARAM_DEPTH => {
            crate::store::record::parse_deep(text).unwrap_or_else(|_| Value::String(text.to_string()))
        }
        Err(_) => Value::String(text.to_string()),
    }
}

/// The deepest nesting of `[` and `{` in JSON text (outside strings).
fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn state_of(r: &StateRecord) -> TaskState {
    match r {
        StateRecord::Queued { next_attempt_ms } => TaskState::Queued {
            next_attempt_at: next_attempt_ms.map(time_of),
        },
        StateRecord::Running { started_ms, pid } => TaskState::Running {
            started_at: time_of(*started_ms),
            pid: *pid,
        },
        StateRecord::Finished {
            started_ms,
            finished_ms,
            status,
            exit_code,
            error,
            timeout_ms,
        } => TaskState::Finished {
            started_at: started_ms.map(time_of),
            finished_at: time_of(*finished_ms),
            outcome: Outcome::from_record(*status, *exit_code, error.clone(), *timeout_ms),
        },
    }
}

impl Attempt {
    fn record(&self) -> AttemptRecord {
        let (status, exit_code, error, timeout_ms) = self.outcome.record();
        AttemptRecord {
            attempt: self.attempt,
            status,
            exit_code,
            error,
            timeout_ms,
            started_ms: self.started_at.map(millis),
            finished_ms: millis(self.finished_at),
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
        }
    }

    fn from_record(r: &AttemptRecord) -> Attempt {
        Attempt {
            attempt: r.attempt,
            outcome: Outcome::from_record(r.status, r.exit_code, r.error.clone(), r.timeout_ms),
            started_at: r.started_ms.map(time_of),
            finished_at: time_of(r.finished_ms),
            stdout: r.stdout.clone(),
            stderr: r.stderr.clone(),
        }
    }
}

/// The error text of a stored ending: the timeout's sentence for `timed_out`.
fn error_text(status: Status, error: &Option<String>, timeout_ms: Option<u64>) -> Option<String> {
    match (status, timeout_ms) {
        (Status::TimedOut, Some(ms)) => Some(timed_out_message(Duration::from_millis(ms))),
        _ => error.clone(),
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    // RFC 3339 has four-digit years: a later time (which no duration the
    // config takes can reach) is written as the last one it has, not a panic.
    const LAST: Duration = Duration::from_secs(253_402_300_799); // 9999-12-31T23:59:59Z
    let t = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) if since > LAST => SystemTime::UNIX_EPOCH + LAST,
        _ => t,
    };
    humantime::format_rfc3339_millis(t).to_string()
}

fn millis_between(a: SystemTime, b: SystemTime) -> u64 {
    b.duration_since(a).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Params as a JSON object in mapping order.
#[derive(Debug, Clone, Default)]
pub struct ParamsView(pub Vec<(String, Value)>);

impl Serialize for ParamsView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// One earlier attempt as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: String,
    pub stdout: String,
    pub stderr: String,
}

impl AttemptView {
    fn of(r: &AttemptRecord) -> Self {
        AttemptView {
            attempt: r.attempt,
            status: r.status,
            exit_code: r.exit_code,
            error: error_text(r.status, &r.error, r.timeout_ms),
            started_at: r.started_ms.map(|ms| timestamp(time_of(ms))),
            finished_at: timestamp(time_of(r.finished_ms)),
            stdout: r.stdout.clone(),
            stderr: r.stderr.clone(),
        }
    }
}

/// A task as the HTTP API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: Uuid,
    pub delivery_id: String,
    pub request_id: String,
    pub source: String,
    pub event: String,
    pub program: String,
    pub params: ParamsView,
    pub argv: Vec<String>,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub rerun_of: Option<Uuid>,
    pub reruns: Vec<Uuid>,
    pub concurrency_key: Option<String>,
    pub attempt: u32,
    pub attempts: Vec<AttemptView>,
    pub next_attempt_at: Option<String>,
    pub callbacks: Vec<CallbackRecord>,
    /// The node that runs or ran it (in a cluster).
    pub node: Option<String>,
    /// The labels a node needs to run it (`run_on`).
    pub run_on: Vec<String>,
    /// The one node that may run it (a `fan_out` program's task).
    pub pinned_node: Option<String>,
    pub url: String,
}

impl TaskView {
    /// The view of a task's record; `output` replaces the record's tails
    /// (a task that has not finished reads them from its files).
    pub fn of(r: &TaskRecord, output: Option<OutputRecord>) -> TaskView {
        let (status, exit_code, error, started, finished, next) = match &r.state {
            StateRecord::Queued { next_attempt_ms } => (Status::Queued, None, None, None, None, *next_attempt_ms),
            StateRecord::Running { started_ms, .. } => (Status::Running, None, None, Some(*started_ms), None, None),
            StateRecord::Finished {
                started_ms,
                finished_ms,
                status,
                exit_code,
                error,
                timeout_ms,
            } => (
                *status,
                *exit_code,
                error_text(*status, error, *timeout_ms),
                *started_ms,
                Some(*finished_ms),
                None,
            ),
        };
        let started_at = started.map(time_of);
        let finished_at = finished.map(time_of);
        let duration_ms = match (started_at, finished_at) {
            (Some(s), Some(f)) => Some(millis_between(s, f)),
            (Some(s), None) => Some(millis_between(s, SystemTime::now())),
            _ => None,
        };
        let output = output.or_else(|| r.output.clone()).unwrap_or_default();
        TaskView {
            id: r.id,
            delivery_id: r.delivery_id.clone(),
            request_id: r.request_id.clone(),
            source: r.source.clone(),
            event: r.event.clone(),
            program: r.program.clone(),
            params: ParamsView(params_of(&r.params)),
            argv: r.argv.clone(),
            status,
            exit_code,
            error,
            created_at: timestamp(time_of(r.created_ms)),
            started_at: started_at.map(timestamp),
            finished_at: finished_at.map(timestamp),
            duration_ms,
            stdout: output.stdout,
            stderr: output.stderr,
            stdout_truncated: output.stdout_truncated,
            stderr_truncated: output.stderr_truncated,
            rerun_of: r.rerun_of,
            reruns: r.reruns.clone(),
            concurrency_key: r.key.clone(),
            attempt: r.attempt,
            attempts: r.attempts.iter().map(AttemptView::of).collect(),
            next_attempt_at: next.map(|ms| timestamp(time_of(ms))),
            callbacks: r.callbacks.clone(),
            node: r.node.clone(),
            run_on: r.run_on.clone(),
            pinned_node: r.pinned_node.clone(),
            url: format!("/tasks/{}", r.id),
        }
    }
}

#[cfg(test)]
mod timestamp_tests {
    use super::timestamp;
    use std::time::{Duration, SystemTime};

    #[test]
    fn any_time_has_a_timestamp() {
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(6_000_000 * 86_400);
        assert_eq!(timestamp(far), "9999-12-31T23:59:59.000Z");
    }
}

#[cfg(test)]
mod param_tests {
    use super::params_of;
    use serde_json::Value;

    #[test]
    fn a_param_deeper_than_serde_jsons_limit_stays_a_value() {
        let deep = |n: usize| format!("{}{{\"a\":\"x]\\\"[\"}}{}", "[".repeat(n), "]".repeat(n));
        for n in [1, 127, 128, 200, 400] {
            let params = params_of(&[("p".into(), deep(n))]);
            let value = &params[0].1;
            assert!(value.is_array(), "depth {n}: {value}");
            assert_eq!(serde_json::to_string(value).unwrap(), deep(n));
        }
        // Text that is not JSON, or absurdly deep, stays the text.
        let params = params_of(&[("p".into(), "not json".into()), ("q".into(), deep(5000))]);
        assert_eq!(params[0].1, Value::String("not json".into()));
        assert_eq!(params[1].1, Value::String(deep(5000)));
    }
}
