//! A task: one run of one program for one delivery, and its state.

use crate::process::{Ending, Output, Program};
use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use std::time::SystemTime;
use uuid::Uuid;

/// Where a task is in its life. Each state carries only what is true in it.
#[derive(Debug, Clone)]
pub enum TaskState {
    Queued,
    Running {
        started_at: SystemTime,
        pid: u32,
    },
    Finished {
        started_at: Option<SystemTime>,
        finished_at: SystemTime,
        outcome: Outcome,
    },
}

/// How a finished task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0, or a code listed in `exit_codes.success`.
    Succeeded {
        exit_code: i32,
    },
    /// Non-zero exit (`exit_code`), a signal, or a program that could not start.
    Failed {
        exit_code: Option<i32>,
        error: Option<String>,
    },
    TimedOut {
        after: std::time::Duration,
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
            Outcome::TimedOut { after } => (
                None,
                Some(format!("timed out after {}", humantime::format_duration(*after))),
            ),
            Outcome::Cancelled { reason } | Outcome::Interrupted { reason } => (None, Some(reason.clone())),
        }
    }

    pub fn from_ending(ending: Ending, timeout: std::time::Duration) -> Self {
        match ending {
            Ending::Exited(0) => Outcome::Succeeded { exit_code: 0 },
            Ending::Exited(code) => Outcome::Failed {
                exit_code: Some(code),
                error: None,
            },
            Ending::Signaled { name, .. } => Outcome::Failed {
                exit_code: None,
                error: Some(format!("killed by {name}")),
            },
            Ending::TimedOut => Outcome::TimedOut { after: timeout },
            Ending::Stopped(reason) => Outcome::Cancelled { reason },
            Ending::SpawnFailed(reason) => Outcome::Failed {
                exit_code: None,
                error: Some(reason),
            },
        }
    }
}

/// The status names the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Interrupted,
}

impl Status {
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }

    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::TimedOut,
        Status::Cancelled,
        Status::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
        }
    }
}

impl TaskState {
    pub fn is_finished(&self) -> bool {
        matches!(self, TaskState::Finished { .. })
    }

    pub fn status(&self) -> Status {
        match self {
            TaskState::Queued => Status::Queued,
            TaskState::Running { .. } => Status::Running,
            TaskState::Finished { outcome, .. } => match outcome {
                Outcome::Succeeded { .. } => Status::Succeeded,
                Outcome::Failed { .. } => Status::Failed,
                Outcome::TimedOut { .. } => Status::TimedOut,
                Outcome::Cancelled { .. } => Status::Cancelled,
                Outcome::Interrupted { .. } => Status::Interrupted,
            },
        }
    }
}

/// One task as the engine keeps it.
#[derive(Debug)]
pub struct Task {
    pub id: Uuid,
    /// Creation order, for listing newest first.
    pub seq: u64,
    pub delivery_id: Arc<str>,
    pub request_id: Arc<str>,
    pub source: Arc<str>,
    pub event: Arc<str>,
    pub program: Arc<Program>,
    pub params: Vec<(String, serde_json::Value)>,
    pub argv: Vec<String>,
    /// The request body for stdin; dropped once the task has finished.
    pub body: Bytes,
    pub created_at: SystemTime,
    pub state: TaskState,
    pub output: Arc<Output>,
    /// The delivery record the task came from (its body is kept there for reruns).
    pub record_id: Option<String>,
    /// The task this one re-runs, and the tasks that re-ran this one.
    pub rerun_of: Option<Uuid>,
    pub reruns: Vec<Uuid>,
    /// The rendered `concurrency_key`.
    pub key: Option<Arc<str>>,
    /// The current attempt, from 1.
    pub attempt: u32,
    /// Earlier attempts that ended and were retried.
    pub attempts: Vec<Attempt>,
    /// When the next attempt may start (while waiting out a backoff).
    pub next_attempt_at: Option<SystemTime>,
    /// The `on_finish` callbacks and where each stands.
    pub callbacks: Vec<super::callback::CallbackState>,
}

/// One attempt of a task that was retried.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: String,
    /// The last bytes of its output.
    pub stdout: String,
    pub stderr: String,
}

/// How much output an earlier attempt keeps.
const ATTEMPT_TAIL: usize = 2048;

fn tail(text: String) -> String {
    if text.len() <= ATTEMPT_TAIL {
        return text;
    }
    let mut cut = text.len() - ATTEMPT_TAIL;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text[cut..].to_string()
}

impl Attempt {
    pub fn record(
        attempt: u32,
        started_at: Option<SystemTime>,
        finished_at: SystemTime,
        outcome: &Outcome,
        output: &Output,
    ) -> Self {
        let (exit_code, error) = outcome.code_and_error();
        Attempt {
            attempt,
            status: outcome.status(),
            exit_code,
            error,
            started_at: started_at.map(timestamp),
            finished_at: timestamp(finished_at),
            stdout: tail(output.stdout.lock().unwrap_or_else(|p| p.into_inner()).text()),
            stderr: tail(output.stderr.lock().unwrap_or_else(|p| p.into_inner()).text()),
        }
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn millis_between(a: SystemTime, b: SystemTime) -> u64 {
    b.duration_since(a).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A task as the HTTP API shows it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: Uuid,
    pub delivery_id: Arc<str>,
    pub request_id: Arc<str>,
    pub source: Arc<str>,
    pub event: Arc<str>,
    pub program: String,
    pub params: serde_json::Map<String, serde_json::Value>,
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
    pub concurrency_key: Option<Arc<str>>,
    pub attempt: u32,
    pub attempts: Vec<Attempt>,
    pub next_attempt_at: Option<String>,
    pub callbacks: Vec<super::callback::CallbackState>,
    pub url: String,
}

impl Task {
    pub fn view(&self) -> TaskView {
        let (started_at, finished_at) = match &self.state {
            TaskState::Queued => (None, None),
            TaskState::Running { started_at, .. } => (Some(*started_at), None),
            TaskState::Finished {
                started_at,
                finished_at,
                ..
            } => (*started_at, Some(*finished_at)),
        };
        let (exit_code, error) = match &self.state {
            TaskState::Finished { outcome, .. } => outcome.code_and_error(),
            _ => (None, None),
        };
        let duration_ms = match (started_at, finished_at) {
            (Some(s), Some(f)) => Some(millis_between(s, f)),
            (Some(s), None) => Some(millis_between(s, SystemTime::now())),
            _ => None,
        };
        let (stdout, stdout_truncated) = {
            let t = self.output.stdout.lock().unwrap_or_else(|p| p.into_inner());
            (t.text(), t.truncated())
        };
        let (stderr, stderr_truncated) = {
            let t = self.output.stderr.lock().unwrap_or_else(|p| p.into_inner());
            (t.text(), t.truncated())
        };
        TaskView {
            id: self.id,
            delivery_id: self.delivery_id.clone(),
            request_id: self.request_id.clone(),
            source: self.source.clone(),
            event: self.event.clone(),
            program: self.program.name.clone(),
            params: self.params.iter().cloned().collect(),
            argv: self.argv.clone(),
            status: self.state.status(),
            exit_code,
            error,
            created_at: timestamp(self.created_at),
            started_at: started_at.map(timestamp),
            finished_at: finished_at.map(timestamp),
            duration_ms,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            rerun_of: self.rerun_of,
            reruns: self.reruns.clone(),
            concurrency_key: self.key.clone(),
            attempt: self.attempt,
            attempts: self.attempts.clone(),
            next_attempt_at: self.next_attempt_at.map(timestamp),
            callbacks: self.callbacks.clone(),
            url: format!("/tasks/{}", self.id),
        }
    }
}
