//! The task engine: a bounded FIFO queue in front of a global concurrency
//! limit, running each task's handler on the engine's own runtime.
//!
//! The engine runtime is separate from actix's worker runtimes, so running
//! handlers are not dropped when the HTTP server stops; `shutdown` drains it.

pub mod table;
pub mod task;

use crate::process::{self, Output, RunSpec};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use table::{Filter, TaskTable};
use task::{Outcome, Status, Task, TaskState, TaskView};
use tokio::runtime::Handle;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use uuid::Uuid;

/// The engine's limits, from `tasks:` in the config.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_concurrent: usize,
    pub max_queued: usize,
    pub keep: usize,
    /// Finished tasks older than this are dropped.
    pub keep_for: Duration,
    pub output_limit: usize,
    /// How long a stopping daemon lets tasks finish.
    pub shutdown_grace: Duration,
}

/// A task ready to be queued: everything but its place in the engine.
#[derive(Debug)]
pub struct NewTask {
    pub id: Uuid,
    pub delivery_id: Arc<str>,
    pub source: Arc<str>,
    pub event: Arc<str>,
    pub program: Arc<process::Program>,
    pub params: Vec<(String, serde_json::Value)>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub body: Bytes,
    pub record_id: Option<String>,
    pub rerun_of: Option<Uuid>,
}

/// Why a task could not be cancelled or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("there is no task `{0}`")]
    NotFound(Uuid),
    #[error("task `{0}` has already finished ({1})")]
    Finished(Uuid, &'static str),
    #[error("task `{0}` has not finished yet ({1}); cancel it first")]
    NotFinished(Uuid, &'static str),
}

/// Why the engine refused a delivery's tasks. Nothing of the delivery was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the task queue is full")]
    QueueFull,
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    limits: Limits,
    runtime: Handle,
    table: TaskTable,
    sched: Mutex<Sched>,
    /// Woken whenever a task finishes.
    changed: Notify,
    next_seq: AtomicU64,
}

#[derive(Default)]
struct Sched {
    queue: VecDeque<Uuid>,
    /// Running tasks and the channel that asks each to stop.
    running: HashMap<Uuid, watch::Sender<Option<String>>>,
    draining: bool,
}

impl Engine {
    /// `runtime` runs the handlers; it must outlive the HTTP server.
    pub fn new(limits: Limits, runtime: Handle) -> Self {
        Engine {
            inner: Arc::new(Inner {
                table: TaskTable::new(limits.keep),
                limits,
                runtime,
                sched: Mutex::new(Sched::default()),
                changed: Notify::new(),
                next_seq: AtomicU64::new(1),
            }),
        }
    }

    /// Queues all of a delivery's tasks, or none of them.
    pub fn submit(&self, tasks: Vec<NewTask>) -> Result<(), SubmitError> {
        let inner = &self.inner;
        let mut sched = inner.lock_sched();
        if sched.draining {
            return Err(SubmitError::ShuttingDown);
        }
        let free = inner.limits.max_concurrent.saturating_sub(sched.running.len());
        if sched.queue.len() + tasks.len().saturating_sub(free) > inner.limits.max_queued {
            return Err(SubmitError::QueueFull);
        }
        let now = SystemTime::now();
        for t in tasks {
            let id = t.id;
            inner.table.insert(Task {
                id,
                seq: inner.next_seq.fetch_add(1, Ordering::Relaxed),
                delivery_id: t.delivery_id,
                source: t.source,
                event: t.event,
                program: t.program,
                params: t.params,
                argv: t.argv,
                env: t.env,
                body: t.body,
                created_at: now,
                state: TaskState::Queued,
                output: Arc::new(Output::new(inner.limits.output_limit)),
                record_id: t.record_id,
                rerun_of: t.rerun_of,
                reruns: Vec::new(),
            });
            if let Some(old) = t.rerun_of {
                inner.table.with(&old, |o| o.reruns.push(id));
            }
            sched.queue.push_back(id);
        }
        inner.start_ready(&mut sched);
        Ok(())
    }

    pub fn task(&self, id: &Uuid) -> Option<TaskView> {
        self.inner.table.view(id)
    }

    /// Runs `f` on a task (it must not block); `None` if unknown.
    pub fn with_task<R>(&self, id: &Uuid, f: impl FnOnce(&Task) -> R) -> Option<R> {
        self.inner.table.with(id, |t| f(t))
    }

    /// Cancels a task: a queued one at once, a running one by stopping its
    /// process group (SIGTERM, grace, SIGKILL). Returns the status it had.
    pub fn cancel(&self, id: Uuid, reason: &str) -> Result<Status, TaskError> {
        let inner = &self.inner;
        let status = inner
            .table
            .with(&id, |t| t.state.status())
            .ok_or(TaskError::NotFound(id))?;
        let was_queued = {
            let mut sched = inner.lock_sched();
            if let Some(pos) = sched.queue.iter().position(|q| *q == id) {
                sched.queue.remove(pos);
                true
            } else if let Some(stop) = sched.running.get(&id) {
                let _ = stop.send(Some(reason.to_string()));
                false
            } else {
                return Err(TaskError::Finished(id, status.as_str()));
            }
        };
        if was_queued {
            inner.finish(id, None, Outcome::Cancelled { reason: reason.to_string() });
        }
        Ok(status)
    }

    /// Removes a finished task from the table.
    pub fn remove(&self, id: Uuid) -> Result<(), TaskError> {
        let status = self.inner.table.with(&id, |t| t.state.status()).ok_or(TaskError::NotFound(id))?;
        if !matches!(status, Status::Succeeded | Status::Failed | Status::TimedOut | Status::Cancelled) {
            return Err(TaskError::NotFinished(id, status.as_str()));
        }
        self.inner.table.remove(&id);
        Ok(())
    }

    /// Waits until every task in `ids` has finished, or `deadline`; true if they all did.
    pub async fn wait_finished(&self, ids: &[Uuid], deadline: Instant) -> bool {
        let inner = &self.inner;
        loop {
            let mut notified = pin!(inner.changed.notified());
            notified.as_mut().enable();
            let done = ids.iter().all(|id| inner.table.with(id, |t| t.state.is_finished()).unwrap_or(true));
            if done {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Drops finished tasks older than `keep_for`, every minute, on the engine runtime.
    pub fn start_retention(&self, keep_for: Duration) {
        let inner = self.inner.clone();
        self.inner.runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60).min(keep_for));
            loop {
                tick.tick().await;
                if let Some(cutoff) = SystemTime::now().checked_sub(keep_for) {
                    inner.table.evict_finished_before(cutoff);
                }
            }
        });
    }

    pub fn list(&self, filter: &Filter) -> Vec<TaskView> {
        self.inner.table.list(filter)
    }

    /// (running, queued) counts.
    pub fn counts(&self) -> (usize, usize) {
        let sched = self.inner.lock_sched();
        (sched.running.len(), sched.queue.len())
    }

    /// Stops taking tasks, lets queued and running ones go on until `grace`
    /// has passed, then stops what is still running (group SIGTERM, grace,
    /// SIGKILL) and cancels what never started. Returns once nothing runs.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.lock_sched().draining = true;
        let deadline = Instant::now() + grace;
        let drained = inner.wait_until(deadline, |s| s.queue.is_empty() && s.running.is_empty()).await;
        if drained {
            return;
        }
        let never_started: Vec<Uuid> = {
            let mut sched = inner.lock_sched();
            for stop in sched.running.values() {
                let _ = stop.send(Some("the daemon stopped while the task was running".into()));
            }
            sched.queue.drain(..).collect()
        };
        if !never_started.is_empty() {
            tracing::error!(count = never_started.len(), "shutdown grace ended before these accepted tasks could start; they are cancelled");
        }
        for id in never_started {
            tracing::error!(task_id = %id, "task cancelled: the daemon stopped before it started");
            inner.finish(id, None, Outcome::Cancelled { reason: "the daemon stopped before the task started".into() });
        }
        let far = Instant::now() + Duration::from_secs(3600);
        inner.wait_until(far, |s| s.running.is_empty()).await;
    }
}

impl Inner {
    fn lock_sched(&self) -> std::sync::MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts queued tasks while there is room.
    fn start_ready(self: &Arc<Self>, sched: &mut Sched) {
        while sched.running.len() < self.limits.max_concurrent {
            let Some(id) = sched.queue.pop_front() else { break };
            let (stop_tx, stop_rx) = watch::channel(None);
            sched.running.insert(id, stop_tx);
            let inner = self.clone();
            self.runtime.spawn(async move { inner.run_task(id, stop_rx).await });
        }
    }

    async fn run_task(self: Arc<Self>, id: Uuid, stop: process::Stop) {
        // Take what the run needs out of the table; no guard lives across an await.
        let Some((spec, body, output, timeout)) = self.table.with(&id, |t| {
            let spec = RunSpec {
                argv: t.argv.clone(),
                env: t.env.clone(),
                working_dir: t.program.working_dir.clone(),
                timeout: t.program.timeout,
                kill_grace: t.program.kill_grace,
            };
            (spec, std::mem::take(&mut t.body), t.output.clone(), t.program.timeout)
        }) else {
            return;
        };
        let mut started_at = None;
        let ending = process::run(&spec, body, output, stop, |pid| {
            let now = SystemTime::now();
            started_at = Some(now);
            self.table.with(&id, |t| t.state = TaskState::Running { started_at: now, pid });
            tracing::info!(task_id = %id, pid, "task started");
        })
        .await;
        self.finish(id, started_at, Outcome::from_ending(ending, timeout));
    }

    /// Records a task's outcome and lets the next queued task start.
    fn finish(self: &Arc<Self>, id: Uuid, started_at: Option<SystemTime>, outcome: Outcome) {
        let finished_at = SystemTime::now();
        let status = self.table.with(&id, |t| {
            t.state = TaskState::Finished { started_at, finished_at, outcome: outcome.clone() };
            t.body = Bytes::new();
            t.state.status()
        });
        if let Some(status) = status {
            log_outcome(id, status, &outcome);
        }
        self.table.finished(id);
        {
            let mut sched = self.lock_sched();
            sched.running.remove(&id);
            self.start_ready(&mut sched);
        }
        self.changed.notify_waiters();
    }

    /// Waits until `done` holds for the scheduler state, or `deadline`; true if it held.
    async fn wait_until(&self, deadline: Instant, done: impl Fn(&Sched) -> bool) -> bool {
        loop {
            let mut notified = pin!(self.changed.notified());
            notified.as_mut().enable();
            if done(&self.lock_sched()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(&self.lock_sched());
            }
        }
    }
}

fn log_outcome(id: Uuid, status: Status, outcome: &Outcome) {
    match outcome {
        Outcome::Succeeded => tracing::info!(task_id = %id, status = status.as_str(), "task finished"),
        Outcome::Failed { exit_code, error } => {
            tracing::warn!(task_id = %id, status = status.as_str(), exit_code, error = error.as_deref(), "task finished")
        }
        Outcome::TimedOut { .. } | Outcome::Cancelled { .. } => {
            tracing::warn!(task_id = %id, status = status.as_str(), "task finished")
        }
    }
}
