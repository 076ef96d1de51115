//! The task engine: a bounded FIFO queue in front of a global concurrency
//! limit, running each task's handler on the engine's own runtime.
//!
//! The engine runtime is separate from actix's worker runtimes, so running
//! handlers are not dropped when the HTTP server stops; `shutdown` drains it.

pub mod callback;
mod persist;
pub use persist::public;
mod recover;
pub use recover::Recovered;
pub mod stats;
pub mod table;
pub mod task;

use crate::process::program::OnBusy;
use crate::process::Ending;
use crate::process::{self, Output, RunSpec};
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use table::{Filter, TaskTable};
use task::{Attempt, Outcome, Status, Task, TaskState, TaskView};
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
    pub request_id: Arc<str>,
    pub source: Arc<str>,
    pub event: Arc<str>,
    pub program: Arc<process::Program>,
    pub params: Vec<(String, serde_json::Value)>,
    pub argv: Vec<String>,
    pub body: Bytes,
    pub record_id: Option<String>,
    pub rerun_of: Option<Uuid>,
    /// The rendered `concurrency_key`, if the program has one.
    pub key: Option<Arc<str>>,
}

/// Room held in the queue for a delivery's tasks until they are committed.
/// Dropping it without [`Engine::start`] gives the room back.
pub struct Reserved {
    engine: Engine,
    tasks: Vec<Task>,
    held: bool,
}

impl Reserved {
    /// The store rows of the reserved tasks (queued, with their bodies).
    pub fn rows(&self) -> Vec<crate::store::Op> {
        self.tasks
            .iter()
            .map(|t| crate::store::Op::PutTask(persist::row(t)))
            .collect()
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.held {
            let mut sched = self.engine.inner.lock_sched();
            sched.reserved = sched.reserved.saturating_sub(self.tasks.len());
        }
    }
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
    /// Swapped whole on a config reload.
    limits: arc_swap::ArcSwap<Limits>,
    runtime: Handle,
    table: TaskTable,
    sched: Mutex<Sched>,
    /// Woken whenever a task finishes.
    changed: Notify,
    stats: stats::Stats,
    /// Where task state is persisted, if anywhere.
    store: Option<crate::store::Store>,
    metrics: Arc<crate::metrics::Metrics>,
    next_seq: AtomicU64,
}

#[derive(Default)]
struct Sched {
    queue: VecDeque<Slot>,
    /// Running tasks and the channel that asks each to stop.
    running: HashMap<Uuid, Running>,
    /// Tasks waiting out a retry backoff (they count as queued).
    delayed: HashMap<Uuid, Slot>,
    /// Running tasks per program.
    per_program: HashMap<String, usize>,
    /// Concurrency keys held by a running or retrying task.
    busy_keys: HashSet<(String, Arc<str>)>,
    /// Room held for deliveries being committed to the store.
    reserved: usize,
    draining: bool,
    /// Shutdown ran out of grace: the tasks it stops are left as `running` in
    /// the store, to be found interrupted at the next start.
    abandoning: bool,
}

/// What the scheduler knows of a task that is not running.
#[derive(Clone)]
struct Slot {
    id: Uuid,
    program: Arc<process::Program>,
    key: Option<Arc<str>>,
}

impl Slot {
    fn key_id(&self) -> Option<(String, Arc<str>)> {
        self.key.as_ref().map(|k| (self.program.name.clone(), k.clone()))
    }
}

struct Running {
    slot: Slot,
    stop: watch::Sender<Option<String>>,
}

impl Sched {
    /// Tasks waiting: queued, or between attempts.
    fn waiting(&self) -> usize {
        self.queue.len() + self.delayed.len()
    }

    fn may_start(&self, slot: &Slot) -> bool {
        let program_room = slot
            .program
            .max_concurrent
            .is_none_or(|max| self.per_program.get(&slot.program.name).copied().unwrap_or(0) < max);
        program_room && slot.key_id().is_none_or(|k| !self.busy_keys.contains(&k))
    }
}

impl Engine {
    /// `runtime` runs the handlers; it must outlive the HTTP server.
    pub fn new(
        limits: Limits,
        runtime: Handle,
        store: Option<crate::store::Store>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                table: TaskTable::new(limits.keep),
                limits: arc_swap::ArcSwap::from_pointee(limits),
                runtime,
                sched: Mutex::new(Sched::default()),
                changed: Notify::new(),
                stats: stats::Stats::default(),
                store,
                metrics,
                next_seq: AtomicU64::new(1),
            }),
        }
    }

    /// Queues all of a delivery's tasks, or none of them (in-memory use; with a
    /// store, [`Engine::reserve`], commit [`Reserved::rows`], then [`Engine::start`]).
    pub fn submit(&self, tasks: Vec<NewTask>) -> Result<(), SubmitError> {
        let reserved = self.reserve(tasks)?;
        self.start(reserved);
        Ok(())
    }

    /// Checks there is room for all of `tasks` and holds it; nothing runs yet.
    pub fn reserve(&self, tasks: Vec<NewTask>) -> Result<Reserved, SubmitError> {
        let inner = &self.inner;
        let mut sched = inner.lock_sched();
        if sched.draining {
            return Err(SubmitError::ShuttingDown);
        }
        // Queued tasks the new ones will replace make room.
        let replaced = sched
            .queue
            .iter()
            .filter(|q| {
                tasks.iter().any(|t| {
                    matches!(t.program.on_busy, OnBusy::Replace | OnBusy::CancelRunning)
                        && t.key.is_some()
                        && q.program.name == t.program.name
                        && q.key == t.key
                })
            })
            .count();
        let free = inner.limits.load().max_concurrent.saturating_sub(sched.running.len());
        let waiting = (sched.waiting() + sched.reserved).saturating_sub(replaced);
        if waiting + tasks.len().saturating_sub(free) > inner.limits.load().max_queued {
            return Err(SubmitError::QueueFull);
        }
        sched.reserved += tasks.len();
        drop(sched);
        let now = SystemTime::now();
        let tasks = tasks
            .into_iter()
            .map(|t| Task {
                id: t.id,
                seq: inner.next_seq.fetch_add(1, Ordering::Relaxed),
                delivery_id: t.delivery_id,
                request_id: t.request_id,
                source: t.source,
                event: t.event,
                program: t.program,
                params: t.params,
                argv: t.argv,
                body: t.body,
                created_at: now,
                state: TaskState::Queued,
                output: Arc::new(Output::new(inner.limits.load().output_limit)),
                record_id: t.record_id,
                rerun_of: t.rerun_of,
                reruns: Vec::new(),
                key: t.key,
                attempt: 1,
                attempts: Vec::new(),
                next_attempt_at: None,
                callbacks: Vec::new(),
            })
            .collect();
        Ok(Reserved {
            engine: self.clone(),
            tasks,
            held: true,
        })
    }

    /// Queues reserved tasks and starts what may start. A task whose program
    /// says `on_busy: replace` or `cancel_running` supersedes the queued (and,
    /// for `cancel_running`, the running) task of its key.
    pub fn start(&self, mut reserved: Reserved) {
        let inner = &self.inner;
        let tasks = std::mem::take(&mut reserved.tasks);
        reserved.held = false;
        let mut superseded: Vec<(Uuid, String)> = Vec::new();
        let mut linked = Vec::new();
        {
            let mut sched = inner.lock_sched();
            sched.reserved = sched.reserved.saturating_sub(tasks.len());
            for t in &tasks {
                let (Some(key), OnBusy::Replace | OnBusy::CancelRunning) = (&t.key, t.program.on_busy) else {
                    continue;
                };
                sched.queue.retain(|q| {
                    let same = q.program.name == t.program.name && q.key.as_ref() == Some(key);
                    if same {
                        superseded.push((q.id, format!("superseded by {}", t.id)));
                    }
                    !same
                });
                if t.program.on_busy == OnBusy::CancelRunning {
                    for r in sched.running.values() {
                        if r.slot.program.name == t.program.name && r.slot.key.as_ref() == Some(key) {
                            let _ = r.stop.send(Some(format!("superseded by {}", t.id)));
                        }
                    }
                }
            }
            inner.stats.submitted.fetch_add(tasks.len() as u64, Ordering::Relaxed);
            for t in tasks {
                sched.queue.push_back(Slot {
                    id: t.id,
                    program: t.program.clone(),
                    key: t.key.clone(),
                });
                if let Some(old) = t.rerun_of {
                    inner.table.with(&old, |o| o.reruns.push(t.id));
                    linked.push(old);
                }
                inner.table.insert(t);
            }
            inner.start_ready(&mut sched);
        }
        for old in linked {
            inner.persist(old);
        }
        for (id, reason) in superseded {
            inner.finish(id, None, Outcome::Cancelled { reason });
        }
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
            if let Some(pos) = sched.queue.iter().position(|q| q.id == id) {
                sched.queue.remove(pos);
                true
            } else if let Some(slot) = sched.delayed.remove(&id) {
                if let Some(k) = slot.key_id() {
                    sched.busy_keys.remove(&k);
                }
                inner.start_ready(&mut sched);
                true
            } else if let Some(running) = sched.running.get(&id) {
                let _ = running.stop.send(Some(reason.to_string()));
                false
            } else {
                return Err(TaskError::Finished(id, status.as_str()));
            }
        };
        if was_queued {
            inner.finish(
                id,
                None,
                Outcome::Cancelled {
                    reason: reason.to_string(),
                },
            );
        }
        Ok(status)
    }

    /// Removes a finished task from the table.
    pub fn remove(&self, id: Uuid) -> Result<(), TaskError> {
        let status = self
            .inner
            .table
            .with(&id, |t| t.state.status())
            .ok_or(TaskError::NotFound(id))?;
        if !status.is_final() {
            return Err(TaskError::NotFinished(id, status.as_str()));
        }
        self.inner.table.remove(&id);
        if let Some(store) = &self.inner.store {
            store.write(vec![crate::store::Op::DeleteTask(id.to_string())]);
        }
        Ok(())
    }

    /// Waits until every task in `ids` has finished, or `deadline`; true if they all did.
    pub async fn wait_finished(&self, ids: &[Uuid], deadline: Instant) -> bool {
        let inner = &self.inner;
        loop {
            let mut notified = pin!(inner.changed.notified());
            notified.as_mut().enable();
            let done = ids
                .iter()
                .all(|id| inner.table.with(id, |t| t.state.is_finished()).unwrap_or(true));
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

    /// The engine's counters.
    pub fn stats(&self) -> &stats::Stats {
        &self.inner.stats
    }

    /// New limits from a reloaded config; tasks already queued or running keep going.
    /// (`tasks.keep` applies from the next start.)
    pub fn set_limits(&self, limits: Limits) {
        self.inner.limits.store(Arc::new(limits));
        let mut sched = self.inner.lock_sched();
        self.inner.start_ready(&mut sched);
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    /// (running, queued) counts.
    pub fn counts(&self) -> (usize, usize) {
        let sched = self.inner.lock_sched();
        (sched.running.len(), sched.waiting())
    }

    /// Stops taking tasks, lets queued and running ones go on until `grace`
    /// has passed, then stops what is still running (group SIGTERM, grace,
    /// SIGKILL) and cancels what never started. Returns once nothing runs.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        let durable = inner.store.is_some();
        inner.lock_sched().draining = true;
        let deadline = Instant::now() + grace;
        // With a store, queued tasks wait on disk for the next start; only running
        // ones get the grace. In memory, the queue is worked off within the grace too.
        let drained = inner
            .wait_until(deadline, |s| s.running.is_empty() && (durable || s.waiting() == 0))
            .await;
        let (stopped, never_started): (usize, Vec<Uuid>) = {
            let mut sched = inner.lock_sched();
            if !drained {
                sched.abandoning = durable;
                for running in sched.running.values() {
                    let _ = running
                        .stop
                        .send(Some("the daemon stopped while the task was running".into()));
                }
            }
            let delayed: Vec<Uuid> = sched.delayed.drain().map(|(id, _)| id).collect();
            let waiting = sched.queue.drain(..).map(|q| q.id).chain(delayed).collect();
            (sched.running.len(), waiting)
        };
        if durable {
            if !never_started.is_empty() {
                tracing::info!(
                    count = never_started.len(),
                    "queued tasks stay queued in the store and run at the next start"
                );
            }
            if stopped > 0 {
                tracing::warn!(
                    count = stopped,
                    "shutdown grace ended: running tasks are stopped and will show as interrupted"
                );
            }
        } else {
            if !never_started.is_empty() {
                tracing::error!(
                    count = never_started.len(),
                    "shutdown grace ended before these accepted tasks could start; they are cancelled"
                );
            }
            for id in never_started {
                tracing::error!(task_id = %id, "task cancelled: the daemon stopped before it started");
                inner.finish(
                    id,
                    None,
                    Outcome::Cancelled {
                        reason: "the daemon stopped before the task started".into(),
                    },
                );
            }
        }
        let far = Instant::now() + Duration::from_secs(3600);
        inner.wait_until(far, |s| s.running.is_empty()).await;
    }
}

impl Inner {
    /// Writes the task's current state to the store (in the next batch).
    fn persist(&self, id: Uuid) {
        let Some(store) = &self.store else { return };
        if let Some(row) = self.table.with(&id, |t| persist::row(t)) {
            store.write(vec![crate::store::Op::PutTask(row)]);
        }
    }

    fn lock_sched(&self) -> std::sync::MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts queued tasks, in order, while there is room; a task whose
    /// program is at its limit or whose key is busy waits, and later tasks may pass it.
    fn start_ready(self: &Arc<Self>, sched: &mut Sched) {
        // A stopping daemon with a store starts nothing new: the queue waits on disk.
        if sched.draining && self.store.is_some() {
            return;
        }
        while sched.running.len() < self.limits.load().max_concurrent {
            let Some(pos) = sched.queue.iter().position(|q| sched.may_start(q)) else {
                break;
            };
            let Some(slot) = sched.queue.remove(pos) else { break };
            let id = slot.id;
            *sched.per_program.entry(slot.program.name.clone()).or_default() += 1;
            if let Some(k) = slot.key_id() {
                sched.busy_keys.insert(k);
            }
            let (stop_tx, stop_rx) = watch::channel(None);
            sched.running.insert(id, Running { slot, stop: stop_tx });
            let inner = self.clone();
            self.runtime.spawn(async move { inner.run_task(id, stop_rx).await });
        }
    }

    async fn run_task(self: Arc<Self>, id: Uuid, stop: process::Stop) {
        // Take what the run needs out of the table; no guard lives across an await.
        let Some((spec, body, output, program, request_id)) = self.table.with(&id, |t| {
            // The environment is built now, not kept per queued task: it may hold
            // the program's secrets, and a queue of thousands would hold thousands.
            let task_id = t.id.to_string();
            let inv = process::program::Invocation {
                source: &t.source,
                event: &t.event,
                task_id: &task_id,
                delivery_id: &t.delivery_id,
                request_id: &t.request_id,
                payload: &t.body,
                params: &t.params,
            };
            let spec = RunSpec {
                argv: t.argv.clone(),
                env: t.program.env(&inv),
                working_dir: t.program.working_dir.clone(),
                timeout: t.program.timeout,
                kill_grace: t.program.kill_grace,
            };
            (
                spec,
                t.body.clone(),
                t.output.clone(),
                t.program.clone(),
                t.request_id.clone(),
            )
        }) else {
            return;
        };
        // With a store, `running` is on disk before the handler starts: a crash
        // then leaves it `interrupted`, never queued to run a second time.
        if let Some(store) = &self.store {
            let row = self.table.with(&id, |t| {
                t.state = TaskState::Running {
                    started_at: SystemTime::now(),
                    pid: 0,
                };
                persist::row(t)
            });
            if let Some(row) = row {
                if let Err(e) = store.commit(vec![crate::store::Op::PutTask(row)]).await {
                    tracing::warn!(task_id = %id, error = %e, "could not record the task as running before starting it");
                }
            }
        }
        let mut started_at = None;
        let ending = process::run(&spec, body, output, stop, |pid| {
            let now = SystemTime::now();
            started_at = Some(now);
            let created = self.table.with(&id, |t| {
                t.state = TaskState::Running { started_at: now, pid };
                t.created_at
            });
            if let Some(waited) = created.and_then(|c| now.duration_since(c).ok()) {
                self.metrics.task_started(waited);
            }
            tracing::info!(task_id = %id, request_id = %request_id, pid, "task started");
        })
        .await;
        let retry_code = matches!(ending, Ending::Exited(code) if program.retry_codes.contains(&code));
        let outcome = match ending {
            Ending::Exited(code) if program.success_codes.contains(&code) => Outcome::Succeeded { exit_code: code },
            Ending::Exited(0) => Outcome::Failed {
                exit_code: Some(0),
                error: Some("exit code 0 is not in `exit_codes.success`".into()),
            },
            other => Outcome::from_ending(other, program.timeout),
        };
        if let Some(delay) = self.retry_delay(id, &program, &outcome, retry_code) {
            self.retry_later(id, started_at, outcome, delay);
        } else {
            self.finish(id, started_at, outcome);
        }
    }

    /// Whether a run that ended with `outcome` gets another attempt, and after how long.
    fn retry_delay(
        &self,
        id: Uuid,
        program: &process::Program,
        outcome: &Outcome,
        retry_code: bool,
    ) -> Option<Duration> {
        let policy = program.retry.as_ref();
        let wanted = retry_code
            || match outcome {
                Outcome::Failed { .. } => policy.is_some_and(|p| p.on_failed),
                Outcome::TimedOut { .. } => policy.is_some_and(|p| p.on_timed_out),
                Outcome::Succeeded { .. } | Outcome::Cancelled { .. } | Outcome::Interrupted { .. } => false,
            };
        if !wanted || self.lock_sched().draining {
            return None;
        }
        // `exit_codes.retry` without a `retry` policy gets three attempts.
        let attempts = policy.map_or(3, |p| p.attempts);
        let attempt = self.table.with(&id, |t| t.attempt)?;
        if attempt >= attempts {
            return None;
        }
        Some(policy.map_or(Duration::from_secs(2), |p| p.delay(attempt + 1)))
    }

    /// Records the attempt that just ended and queues the next after `delay`;
    /// the task keeps its concurrency key meanwhile, so nothing of its key overtakes it.
    fn retry_later(self: &Arc<Self>, id: Uuid, started_at: Option<SystemTime>, outcome: Outcome, delay: Duration) {
        let now = SystemTime::now();
        let next_at = now + delay;
        self.table.with(&id, |t| {
            t.attempts
                .push(Attempt::record(t.attempt, started_at, now, &outcome, &t.output));
            t.attempt += 1;
            t.output = Arc::new(Output::new(self.limits.load().output_limit));
            t.state = TaskState::Queued;
            t.next_attempt_at = Some(next_at);
        });
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        self.persist(id);
        tracing::warn!(task_id = %id, status = ?outcome, retry_in = %humantime::format_duration(delay), "task attempt failed; retrying");
        {
            let mut sched = self.lock_sched();
            if let Some(running) = sched.running.remove(&id) {
                if let Some(n) = sched.per_program.get_mut(&running.slot.program.name) {
                    *n = n.saturating_sub(1);
                }
                sched.delayed.insert(id, running.slot);
            }
            self.start_ready(&mut sched);
        }
        self.changed.notify_waiters();
        self.resume_after(id, delay);
    }

    /// Puts a task waiting out a backoff back at the front of the queue after `delay`.
    fn resume_after(self: &Arc<Self>, id: Uuid, delay: Duration) {
        let inner = self.clone();
        self.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let mut sched = inner.lock_sched();
            // Cancelled meanwhile, or the daemon is stopping: nothing to do.
            let Some(slot) = sched.delayed.remove(&id) else { return };
            if let Some(k) = slot.key_id() {
                sched.busy_keys.remove(&k);
            }
            inner.table.with(&id, |t| t.next_attempt_at = None);
            sched.queue.push_front(slot);
            inner.start_ready(&mut sched);
        });
    }

    /// Records a task's outcome and lets the next queued task start.
    fn finish(self: &Arc<Self>, id: Uuid, started_at: Option<SystemTime>, outcome: Outcome) {
        let finished_at = SystemTime::now();
        let abandoning = self.lock_sched().abandoning;
        let status = self.table.with(&id, |t| {
            t.state = TaskState::Finished {
                started_at,
                finished_at,
                outcome: outcome.clone(),
            };
            t.body = Bytes::new();
            let run_time = started_at.and_then(|s| finished_at.duration_since(s).ok());
            if !abandoning {
                self.stats.finished(&t.program.name, t.state.status(), run_time);
                self.metrics
                    .task_finished(&t.program.name, t.state.status().as_str(), run_time);
            }
            t.state.status()
        });
        if let Some(status) = status {
            log_outcome(id, status, &outcome);
            // A task stopped because shutdown ran out of grace stays `running` on
            // disk: the next start marks it interrupted and reports it then.
            if !self.lock_sched().abandoning {
                self.start_callbacks(id, status);
                self.persist(id);
            }
        }
        self.table.finished(id);
        {
            let mut sched = self.lock_sched();
            if let Some(running) = sched.running.remove(&id) {
                if let Some(n) = sched.per_program.get_mut(&running.slot.program.name) {
                    *n = n.saturating_sub(1);
                }
                if let Some(k) = running.slot.key_id() {
                    sched.busy_keys.remove(&k);
                }
            }
            self.start_ready(&mut sched);
        }
        self.changed.notify_waiters();
    }

    /// Starts the task's `on_finish` callbacks whose `when` lists `status`.
    fn start_callbacks(self: &Arc<Self>, id: Uuid, status: Status) {
        let Some((callbacks, view)) = self.table.with(&id, |t| {
            let wanted: Vec<_> = t
                .program
                .callbacks
                .iter()
                .filter(|c| c.when.iter().any(|w| w == status.as_str()))
                .cloned()
                .collect();
            t.callbacks = wanted
                .iter()
                .map(|c| callback::CallbackState::pending(&c.url))
                .collect();
            (wanted, t.view())
        }) else {
            return;
        };
        if callbacks.is_empty() {
            return;
        }
        let body = callback::payload(&view);
        for (i, cb) in callbacks.into_iter().enumerate() {
            let inner = self.clone();
            let body = body.clone();
            let msg_id = format!("msg_{}_{i}", id.simple());
            self.runtime.spawn(async move {
                callback::deliver(cb, msg_id, body, |state| {
                    inner.table.with(&id, |t| {
                        if let Some(slot) = t.callbacks.get_mut(i) {
                            *slot = state;
                        }
                    });
                    inner.persist(id);
                })
                .await;
            });
        }
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
        Outcome::Succeeded { .. } => tracing::info!(task_id = %id, status = status.as_str(), "task finished"),
        Outcome::Failed { exit_code, error } => {
            tracing::warn!(task_id = %id, status = status.as_str(), exit_code, error = error.as_deref(), "task finished")
        }
        Outcome::TimedOut { .. } | Outcome::Cancelled { .. } | Outcome::Interrupted { .. } => {
            tracing::warn!(task_id = %id, status = status.as_str(), "task finished")
        }
    }
}
