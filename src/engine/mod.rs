//! The task engine: admits a delivery's tasks (all or none), keeps them in
//! the scheduler ([`sched`]), starts them as slots free up on the engine's
//! own runtime, records every change in the store, and reports each end
//! (log, metrics, completion callbacks).
//!
//! The engine runtime is separate from actix's worker runtimes, so running
//! handlers are not dropped when the HTTP server stops; `shutdown` drains it.

pub mod callback;
pub mod cluster;
pub mod events;
mod recover;
pub mod sched;
pub mod task;

pub use recover::Recovered;

use crate::payload::uploads::Uploads;
use crate::process::program::OnBusy;
use crate::process::{self, OutputDir, OutputFiles, RunSpec};
use crate::store::record::{CallbackRecord, CallbackStatus, OutputRecord};
use crate::store::{Body, Op, Store};
use bytes::Bytes;
use sched::{Cancelled, Finished, Sched};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use task::{Attempt, Outcome, Status, Task, TaskSpec, TaskState, TaskView};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

pub use sched::Filter;

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

/// Finds a program of the config in force by name.
pub type FindProgram = Box<dyn Fn(&str) -> Option<Arc<process::Program>> + Send + Sync>;

/// The programs of the config in force, as the engine finds them: tasks
/// read back from a store name their program.
pub struct Programs {
    pub lookup: FindProgram,
    /// `max_concurrent` of the programs that have one (a cluster's claims honour them).
    pub limits: std::collections::HashMap<String, usize>,
    /// The names of every program (a cluster node claims only their tasks).
    pub known: Vec<String>,
    /// Whether any program has a `concurrency_key`.
    pub keyed: bool,
    /// The keyed programs whose new tasks replace older ones of their key
    /// (`on_busy: replace`, `false`; `cancel_running`, `true`).
    pub replacing: std::collections::HashMap<String, bool>,
}

impl Programs {
    /// No programs at all.
    pub fn none() -> Programs {
        Programs {
            lookup: Box::new(|_| None),
            limits: Default::default(),
            known: Vec::new(),
            keyed: false,
            replacing: Default::default(),
        }
    }
}

/// This node: its name and labels (`node:`).
#[derive(Debug, Clone, Default)]
pub struct NodeId {
    pub name: String,
    pub labels: Vec<String>,
}

/// The default for `tasks.shutdown_grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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
    /// A multipart body's boundary, to write its files again.
    pub boundary: Option<String>,
    pub record_id: Option<String>,
    pub rerun_of: Option<Uuid>,
    /// The rendered `concurrency_key`, if the program has one.
    pub key: Option<Arc<str>>,
    /// Only this node may run it (a `fan_out` program's task for that node).
    pub pinned_node: Option<String>,
}

/// Room held in the queue for a delivery's tasks until they are committed.
/// Dropping it without [`Engine::start`] gives the room back.
pub struct Reserved {
    engine: Engine,
    tasks: Vec<Task>,
}

impl Reserved {
    /// The store writes of the reserved tasks (queued, with their bodies).
    pub fn ops(&self) -> Vec<Op> {
        self.tasks
            .iter()
            .map(|t| Op::PutTask(Box::new(t.record()), Body::Set(t.body.clone())))
            .collect()
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            self.engine.inner.lock().unreserve(self.tasks.len());
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
    /// The cluster's database could not be asked.
    #[error("the database cannot be reached ({0})")]
    Store(String),
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
    sched: Mutex<Sched>,
    /// Woken whenever a task finishes or waits for a retry.
    changed: Notify,
    /// Where task state is persisted, if anywhere.
    store: Option<Store>,
    metrics: Arc<crate::metrics::Metrics>,
    next_seq: AtomicU64,
    outputs: OutputDir,
    /// The config's programs (swapped on reload).
    programs: arc_swap::ArcSwap<Programs>,
    /// This node.
    node: NodeId,
    /// Set when this node joins a cluster.
    cluster: std::sync::OnceLock<Arc<cluster::Cluster>>,
    /// Where the files of multipart deliveries go (set before serving).
    uploads: std::sync::OnceLock<Uploads>,
    /// What happens here, for `GET /events`.
    events: events::Hub,
    /// The output sizes last announced per running task (attempt, stdout, stderr),
    /// while someone listens to the events.
    output_seen: Mutex<std::collections::HashMap<Uuid, (u32, [u64; 2])>>,
}

/// How long the files of a multipart delivery that no unfinished task here
/// needs are left before the periodic sweep removes them.
const UPLOADS_KEPT_UNNEEDED: Duration = Duration::from_secs(600);

/// How often running tasks' output files are looked at for `task.output` events.
const OUTPUT_POLL: Duration = Duration::from_millis(100);

/// How much of each stream a running task's file keeps on disk, at least.
const MIN_OUTPUT_KEPT: u64 = 1 << 20;

/// How much of each stream a running task's file keeps on disk.
pub fn output_kept(limits: &Limits) -> u64 {
    (limits.output_limit as u64).max(MIN_OUTPUT_KEPT)
}

impl Engine {
    /// `runtime` runs the handlers; it must outlive the HTTP server. Output
    /// files go to `outputs`.
    pub fn new(
        limits: Limits,
        runtime: Handle,
        store: Option<Store>,
        metrics: Arc<crate::metrics::Metrics>,
        outputs: OutputDir,
        node: NodeId,
    ) -> Self {
        let engine = Engine {
            inner: Arc::new(Inner {
                sched: Mutex::new(Sched::new(limits.keep)),
                limits: arc_swap::ArcSwap::from_pointee(limits),
                runtime,
                changed: Notify::new(),
                store,
                metrics,
                next_seq: AtomicU64::new(1),
                outputs,
                programs: arc_swap::ArcSwap::from_pointee(Programs::none()),
                node,
                cluster: std::sync::OnceLock::new(),
                uploads: std::sync::OnceLock::new(),
                events: events::Hub::new(),
                output_seen: Mutex::new(Default::default()),
            }),
        };
        // Output growth is looked for only while someone listens to the events.
        let weak = Arc::downgrade(&engine.inner);
        let hub = engine.inner.events.clone();
        engine.inner.runtime.spawn(async move {
            loop {
                hub.wait_for_listener().await;
                while hub.listening() {
                    let Some(inner) = weak.upgrade() else { return };
                    inner.notice_output();
                    drop(inner);
                    tokio::time::sleep(OUTPUT_POLL).await;
                }
                if let Some(inner) = weak.upgrade() {
                    inner.output_seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
            }
        });
        if let Some(store) = &engine.inner.store {
            // The store prunes history; the output files of what it pruned go too.
            let outputs = engine.inner.outputs.clone();
            store.on_pruned(Box::new(move |ids| {
                for id in ids {
                    outputs.remove(*id);
                }
            }));
        }
        engine
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    /// What happens on this node, as events (`GET /events`).
    pub fn events(&self) -> &events::Hub {
        &self.inner.events
    }

    pub fn store(&self) -> Option<&Store> {
        self.inner.store.as_ref()
    }

    pub fn outputs(&self) -> &OutputDir {
        &self.inner.outputs
    }

    /// Where the files of multipart deliveries go; set once, before serving.
    pub fn set_uploads(&self, uploads: Uploads) {
        let _ = self.inner.uploads.set(uploads);
    }

    /// Where the files of multipart deliveries go, when set.
    pub fn uploads(&self) -> Option<&Uploads> {
        self.inner.uploads.get()
    }

    /// Removes the directories of multipart deliveries that no unfinished
    /// task of this node needs and that are older than `min_age` (a
    /// delivery being admitted writes its files before its tasks are queued).
    pub fn sweep_uploads(&self, min_age: Duration) -> usize {
        self.inner.sweep_uploads(min_age)
    }

    pub fn limits(&self) -> Arc<Limits> {
        self.inner.limits.load_full()
    }

    /// The config's programs, as tasks read back from a store find theirs.
    pub fn set_programs(&self, programs: Programs) {
        self.inner.programs.store(Arc::new(programs));
    }

    /// The nodes one task of a `fan_out` program goes to: every live node
    /// whose labels include all of `run_on` (just this one, alone).
    pub async fn fan_out_nodes(&self, run_on: &[String]) -> Vec<String> {
        match self.inner.cluster.get() {
            Some(cluster) => cluster.live_nodes_now(run_on).await,
            None if run_on.iter().all(|l| self.inner.node.labels.contains(l)) => vec![self.inner.node.name.clone()],
            None => Vec::new(),
        }
    }

    /// Queues all of a delivery's tasks, or none of them (in-memory use; with a
    /// store, [`Engine::reserve`], commit [`Reserved::ops`], then [`Engine::start`]).
    pub fn submit(&self, tasks: Vec<NewTask>) -> Result<(), SubmitError> {
        let reserved = self.reserve(tasks)?;
        self.start(reserved);
        Ok(())
    }

    /// Checks there is room for all of `tasks` and holds it; nothing runs yet.
    pub fn reserve(&self, tasks: Vec<NewTask>) -> Result<Reserved, SubmitError> {
        let inner = &self.inner;
        let now = SystemTime::now();
        let tasks: Vec<Task> = tasks
            .into_iter()
            .map(|t| {
                Task::new(
                    TaskSpec {
                        id: t.id,
                        seq: inner.next_seq.fetch_add(1, Ordering::Relaxed),
                        delivery_id: t.delivery_id,
                        request_id: t.request_id,
                        source: t.source,
                        event: t.event,
                        run_on: t.program.run_on.clone(),
                        program: t.program,
                        params: t.params,
                        argv: t.argv,
                        key: t.key,
                        created_at: now,
                        record_id: t.record_id,
                        rerun_of: t.rerun_of,
                        pinned_node: t.pinned_node,
                        boundary: t.boundary,
                    },
                    t.body,
                )
            })
            .collect();
        let refs: Vec<&Task> = tasks.iter().collect();
        let elsewhere = inner.cluster.get().map_or(0, |c| c.queued.load(Ordering::Relaxed));
        inner.lock().reserve_beside(&refs, &inner.limits.load(), elsewhere)?;
        Ok(Reserved {
            engine: self.clone(),
            tasks,
        })
    }

    /// Queues reserved tasks and starts what may start. In a cluster, they
    /// are in the shared queue already (committed): the nodes are told.
    pub fn start(&self, mut reserved: Reserved) {
        let inner = &self.inner;
        let tasks = std::mem::take(&mut reserved.tasks);
        if let Some(cluster) = inner.cluster.get() {
            let mut linked = Vec::new();
            // Counted against `max_queued` at once, not only at the next
            // count of the shared queue (which then corrects it); before
            // the room held for them is given back, so they never count
            // for nothing in between.
            cluster.queued.fetch_add(tasks.len(), Ordering::Relaxed);
            {
                let mut sched = inner.lock();
                sched.unreserve(tasks.len());
                // A rerun of a task this node holds is listed in its `reruns`.
                for t in &tasks {
                    if let Some(old) = t.spec.rerun_of {
                        if sched.link_rerun(old, t.id()) {
                            linked.push(old);
                        }
                    }
                }
            }
            for old in linked {
                inner.persist(old);
            }
            for t in &tasks {
                inner.events.publish("task.created", created_data(t));
                if matches!(t.spec.program.on_busy, OnBusy::Replace | OnBusy::CancelRunning) {
                    self.supersede_in_cluster(t);
                }
            }
            cluster.wake.notify_one();
            return;
        }
        let now = SystemTime::now();
        let mut superseded = Vec::new();
        let mut linked = Vec::new();
        {
            let mut sched = inner.lock();
            for t in tasks {
                linked.extend(t.spec.rerun_of);
                // Under the lock: `task.created` comes before anything else of the task.
                inner.events.publish("task.created", created_data(&t));
                superseded.extend(sched.enqueue(t, now));
            }
            inner.start_ready(&mut sched);
        }
        for old in linked {
            inner.persist(old);
        }
        for id in superseded {
            inner.report_finished(id, None);
        }
    }

    /// A task as the engine holds it now (a copy).
    pub fn get(&self, id: &Uuid) -> Option<Task> {
        self.inner.lock().get(id).cloned()
    }

    /// A task's view, if the engine holds it.
    pub fn task(&self, id: &Uuid) -> Option<TaskView> {
        let task = self.get(id)?;
        Some(self.inner.view(&task))
    }

    pub fn list(&self, filter: &Filter) -> Vec<TaskView> {
        let tasks = self.inner.lock().list(filter);
        tasks.iter().map(|t| self.inner.view(t)).collect()
    }

    /// The states of the newest `limit` tasks in memory, newest first.
    pub fn newest_states(&self, limit: usize) -> Vec<task::TaskState> {
        self.inner.lock().newest_states(limit)
    }

    /// A page of [`Engine::list`], and when more tasks follow it, the
    /// sequence number of its last task (where the next page starts).
    pub fn list_page(&self, filter: &Filter) -> (Vec<TaskView>, Option<u64>) {
        // One more than the page, to know whether another follows.
        let one_more = Filter {
            limit: filter.limit.saturating_add(1),
            ..filter.clone()
        };
        let mut tasks = self.inner.lock().list(&one_more);
        let next = if tasks.len() > filter.limit {
            tasks.truncate(filter.limit);
            tasks.last().map(|t| t.spec.seq)
        } else {
            None
        };
        (tasks.iter().map(|t| self.inner.view(t)).collect(), next)
    }

    /// A task's sequence number (a paging cursor), if the engine holds it.
    pub fn seq(&self, id: &Uuid) -> Option<u64> {
        self.inner.lock().seq(id)
    }

    /// (running, waiting)
    pub fn counts(&self) -> (usize, usize) {
        self.inner.lock().counts()
    }

    /// (running, waiting) on this node per program.
    pub fn counts_by_program(
        &self,
    ) -> (
        std::collections::HashMap<Arc<str>, usize>,
        std::collections::HashMap<Arc<str>, usize>,
    ) {
        self.inner.lock().counts_by_program()
    }

    /// Cancels a task wherever it is: this node's, or (in a cluster) one
    /// queued or running anywhere. Returns the status it had.
    pub async fn cancel_anywhere(&self, id: Uuid, reason: &str) -> Result<Status, TaskError> {
        match self.cancel(id, reason) {
            Err(TaskError::NotFound(_)) if self.inner.cluster.get().is_some() => self.cancel_remote(id, reason).await,
            Ok(Status::Running) => {
                self.note_cancel_in_cluster(id, reason).await;
                Ok(Status::Running)
            }
            Ok(was) => {
                // A task cancelled before it started is answered once that is
                // written: a crash right after the answer must not run it.
                if let Some(store) = &self.inner.store {
                    if let Err(e) = store.commit(Vec::new()).await {
                        tracing::warn!(task_id = %id, error = %e, "the cancel is not written yet; it is kept and written once the store can");
                    }
                }
                Ok(was)
            }
            other => other,
        }
    }

    /// Cancels a task: a queued one at once, a running one by stopping its
    /// process group (SIGTERM, grace, SIGKILL). Returns the status it had.
    pub fn cancel(&self, id: Uuid, reason: &str) -> Result<Status, TaskError> {
        let inner = &self.inner;
        let (was, cancelled) = {
            let mut sched = inner.lock();
            let was = sched.get(&id).ok_or(TaskError::NotFound(id))?.status();
            let cancelled = sched.cancel(id, reason, SystemTime::now())?;
            inner.start_ready(&mut sched);
            (was, cancelled)
        };
        if cancelled == Cancelled::WasQueued {
            inner.report_finished(id, None);
        }
        Ok(was)
    }

    /// Removes a finished task, its output files and its stored record.
    /// Returns once the record is gone from the store too, so a read that
    /// follows does not find it.
    pub async fn remove(&self, id: Uuid) -> Result<(), TaskError> {
        self.inner.lock().remove(id)?;
        self.inner.outputs.remove(id);
        self.delete_stored(id).await
    }

    async fn delete_stored(&self, id: Uuid) -> Result<(), TaskError> {
        if let Some(store) = &self.inner.store {
            store
                .commit(vec![Op::DeleteTask(id)])
                .await
                .map_err(|e| TaskError::Store(e.to_string()))?;
        }
        if let Some(cluster) = self.inner.cluster.get() {
            // The node that ran it may hold it (and its output files).
            if let Err(e) = cluster.pg.announce_deleted(id).await {
                tracing::warn!(task_id = %id, error = %e, "could not tell the other nodes of a deleted task; the node that ran it shows it until it forgets it");
            }
        }
        Ok(())
    }

    /// [`Engine::remove`] for a task the engine no longer holds (after a
    /// restart, or one another node ran): `stored` is its record.
    pub async fn remove_stored(&self, stored: &crate::store::record::TaskRecord) -> Result<(), TaskError> {
        let id = stored.id;
        let status = stored.state.status();
        if !status.is_final() {
            return Err(TaskError::NotFinished(id, status.as_str()));
        }
        self.inner.outputs.remove(id);
        self.delete_stored(id).await
    }

    /// A task's view: as this engine holds it, else as the store has it (a
    /// task of another node, in a cluster, or one no longer held).
    pub async fn task_anywhere(&self, id: &Uuid) -> Option<TaskView> {
        if let Some(view) = self.task(id) {
            return Some(view);
        }
        let record = self.store()?.task(*id).await.ok()??;
        Some(TaskView::of(&record, None))
    }

    /// Waits until every task in `ids` has finished, or `deadline`; true if they all did.
    pub async fn wait_finished(&self, ids: &[Uuid], deadline: Instant) -> bool {
        if self.cluster().is_some() {
            return self.wait_finished_anywhere(ids, deadline).await;
        }
        let inner = &self.inner;
        loop {
            let mut notified = pin!(inner.changed.notified());
            notified.as_mut().enable();
            let done = {
                let sched = inner.lock();
                ids.iter().all(|id| sched.get(id).is_none_or(|t| t.state.is_finished()))
            };
            if done {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// [`Engine::wait_finished`] in a cluster, where any node may run the
    /// tasks: one this node does not hold is read from the database, every
    /// 20 ms (or sooner when a task here changes), until its state is final.
    /// One that ended here counts once its end is written under this node's
    /// claim: if the task was taken over meanwhile (this node was cut off),
    /// the database's record, the taker's, is the one, and it is forgotten
    /// here so that the answer shows that record.
    async fn wait_finished_anywhere(&self, ids: &[Uuid], deadline: Instant) -> bool {
        let inner = &self.inner;
        let mut pending: Vec<Uuid> = ids.to_vec();
        loop {
            let mut notified = pin!(inner.changed.notified());
            notified.as_mut().enable();
            let mut still = Vec::with_capacity(pending.len());
            let mut written = None;
            for id in pending {
                let held = inner.lock().get(&id).map(|t| (t.state.is_finished(), t.claim));
                let finished = match held {
                    Some((false, _)) => false,
                    Some((true, claim)) => match self.store() {
                        None => true,
                        Some(store) => {
                            // One empty commit for all: what was queued before it is written.
                            if written.is_none() {
                                written = Some(store.commit(Vec::new()).await.is_ok());
                            }
                            written == Some(true)
                                && match store.task(id).await {
                                    Ok(Some(stored)) if stored.claim == claim => stored.state.status().is_final(),
                                    Ok(Some(stored)) => {
                                        let _ = inner.lock().remove(id);
                                        stored.state.status().is_final()
                                    }
                                    Ok(None) => true,
                                    Err(_) => false,
                                }
                        }
                    },
                    None => match self.store() {
                        Some(store) => match store.task(id).await {
                            Ok(Some(record)) => record.state.status().is_final(),
                            // Deleted: it is not running any more.
                            Ok(None) => true,
                            Err(_) => false,
                        },
                        None => true,
                    },
                };
                if !finished {
                    still.push(id);
                }
            }
            pending = still;
            if pending.is_empty() {
                return true;
            }
            let poll = tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_millis(20)));
            tokio::select! {
                _ = notified => {}
                _ = poll => {}
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// Drops finished tasks older than `keep_for`, and the upload directories
    /// nothing here needs, every minute, on the engine runtime.
    pub fn start_retention(&self, keep_for: Duration) {
        let inner = self.inner.clone();
        self.inner.runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60).min(keep_for));
            loop {
                tick.tick().await;
                if let Some(cutoff) = SystemTime::now().checked_sub(keep_for) {
                    let gone = inner.lock().evict_finished_before(cutoff);
                    inner.forget_outputs(&gone);
                }
                // Files of multipart deliveries nothing here needs (their
                // tasks ran on another node, or ended unseen).
                inner.sweep_uploads(UPLOADS_KEPT_UNNEEDED);
            }
        });
    }

    /// New limits from a reloaded config; tasks already queued or running keep going.
    /// (`tasks.keep` applies from the next start.)
    pub fn set_limits(&self, limits: Limits) {
        self.inner.limits.store(Arc::new(limits));
        let mut sched = self.inner.lock();
        self.inner.start_ready(&mut sched);
    }

    /// The text a task's stream holds so far: what its file still holds
    /// (with how many bytes trimming dropped from its front), else the tail
    /// kept in its record. `stored` is the task's record when the engine no
    /// longer holds it (its file may still be here).
    pub fn output_text(
        &self,
        id: &Uuid,
        stored: Option<&crate::store::record::TaskRecord>,
        stream: process::output::Stream,
    ) -> Option<(String, u64)> {
        let (attempt, kept) = match self.get(id) {
            Some(task) => {
                let output = task.output.unwrap_or_default();
                (task.attempt, output)
            }
            None => {
                let record = stored?;
                let view = task::TaskView::of(record, None);
                (
                    record.attempt,
                    OutputRecord {
                        stdout: view.stdout,
                        stderr: view.stderr,
                        ..Default::default()
                    },
                )
            }
        };
        let max = output_kept(&self.inner.limits.load()) + process::output::TRIM_SLACK;
        if let Some((bytes, skipped)) = self.inner.outputs.read_kept(*id, attempt, stream, max) {
            return Some((String::from_utf8_lossy(&bytes).into_owned(), skipped));
        }
        Some((
            match stream {
                process::output::Stream::Stdout => kept.stdout,
                process::output::Stream::Stderr => kept.stderr,
            },
            0,
        ))
    }

    /// Stops accepting tasks, lets running ones finish within `grace`, then stops
    /// the rest. With a store, queued tasks stay queued on disk for the next start;
    /// without one they are worked off within the grace, and what never started
    /// is finished `cancelled`. Returns once nothing runs.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        let durable = inner.store.is_some();
        inner.lock().draining = true;
        let deadline = Instant::now() + grace;
        let drained = inner
            .wait_until(deadline, |s| {
                let (running, waiting) = s.counts();
                running == 0 && (durable || waiting == 0)
            })
            .await;
        let (stopped, never_started): (usize, Vec<Uuid>) = {
            let mut sched = inner.lock();
            if !drained {
                sched.abandoning = durable;
                sched.stop_running(STOPPED_BY_SHUTDOWN);
            }
            let waiting = if durable { Vec::new() } else { sched.drain_waiting() };
            (sched.counts().0, waiting)
        };
        if durable {
            let (_, waiting) = inner.lock().counts();
            let clustered = inner.cluster.get().is_some();
            if waiting > 0 && !clustered {
                tracing::info!(
                    count = waiting,
                    "queued tasks stay queued in the store and run at the next start"
                );
            }
            if stopped > 0 && clustered {
                tracing::warn!(
                    count = stopped,
                    "shutdown grace ended: running tasks are stopped; another node takes them over as interrupted (or runs them again, on_interrupt: rerun)"
                );
            } else if stopped > 0 {
                tracing::warn!(
                    count = stopped,
                    "shutdown grace ended: running tasks are stopped and will show as interrupted at the next start"
                );
            }
        } else if !never_started.is_empty() {
            tracing::error!(
                count = never_started.len(),
                "shutdown grace ended before these accepted tasks could start; they are cancelled"
            );
            let now = SystemTime::now();
            for id in never_started {
                let finished = inner.lock().finish(
                    id,
                    Outcome::Cancelled {
                        reason: "the daemon stopped before the task started".into(),
                    },
                    now,
                );
                // One cancelled through the API meanwhile was reported then.
                if finished.is_some() {
                    tracing::error!(task_id = %id, "task cancelled: the daemon stopped before it started");
                    inner.report_finished(id, finished);
                }
            }
        }
        let far = Instant::now() + Duration::from_secs(3600);
        inner.wait_until(far, |s| s.counts().0 == 0).await;
        self.leave_cluster().await;
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a task's current state to the store (in the next batch).
    /// Handed to the writer under the scheduler's lock: two threads writing
    /// one task send their records in the order they read them, so an older
    /// one never lands after a newer one.
    fn persist(&self, id: Uuid) {
        let Some(store) = &self.store else { return };
        let sched = self.lock();
        if let Some(t) = sched.get(&id) {
            let body = if t.state.is_finished() { Body::Drop } else { Body::Keep };
            store.write(vec![Op::PutTask(Box::new(t.record()), body)]);
        }
    }

    /// A task's view: a running task's output read from its files.
    fn view(&self, task: &Task) -> TaskView {
        let record = task.record();
        if task.state.is_finished() {
            return TaskView::of(&record, None);
        }
        TaskView::of(
            &record,
            Some(self.tails(task.id(), task.attempt, self.limits.load().output_limit)),
        )
    }

    fn tails(&self, id: Uuid, attempt: u32, limit: usize) -> OutputRecord {
        use process::output::Stream;
        let out = self.outputs.tail(id, attempt, Stream::Stdout, limit);
        let err = self.outputs.tail(id, attempt, Stream::Stderr, limit);
        OutputRecord {
            stdout: out.text,
            stderr: err.text,
            stdout_truncated: out.truncated,
            stderr_truncated: err.truncated,
        }
    }

    /// Deletes the output files of tasks the engine dropped; with a SQLite
    /// store they stay until the store prunes the task (its history still
    /// shows it). A cluster's history keeps the tails in the database.
    fn forget_outputs(&self, gone: &[Task]) {
        if self.store.as_ref().is_none_or(|s| s.sqlite().is_none()) {
            for t in gone {
                self.outputs.remove(t.id());
            }
        }
    }

    /// Starts queued tasks, in order, while there is room.
    fn start_ready(self: &Arc<Self>, sched: &mut Sched) {
        // A stopping daemon with a store starts nothing new: the queue waits on disk.
        if sched.draining && self.store.is_some() {
            return;
        }
        let max = self.limits.load().max_concurrent;
        while let Some((id, stop)) = sched.next_ready(max, SystemTime::now()) {
            let inner = self.clone();
            self.runtime.spawn(async move { inner.run_task(id, stop).await });
        }
    }

    async fn run_task(self: Arc<Self>, id: Uuid, stop: process::Stop) {
        // Take what the run needs; no lock lives across an await.
        let Some((task, record)) = self.lock().get(&id).map(|t| (t.clone(), t.record())) else {
            return;
        };
        let spec = &task.spec;
        let program = spec.program.clone();
        // The environment is built now, not kept per queued task: it may hold
        // the program's secrets, and a queue of thousands would hold thousands.
        let task_id = id.to_string();
        let inv = process::program::Invocation {
            source: &spec.source,
            event: &spec.event,
            task_id: &task_id,
            delivery_id: &spec.delivery_id,
            request_id: &spec.request_id,
            payload: &task.body,
            params: &spec.params,
        };
        let mut env = program.env(&inv);
        if program.hook_env {
            env.push(("HOOK_NODE".into(), self.node.name.clone()));
        }
        // The files of a multipart delivery that this node does not have (yet).
        if let (Some(uploads), Some(record)) = (self.uploads.get(), spec.record_id.as_deref()) {
            if let Err(e) = uploads.restore(record, &task.body, spec.boundary.as_deref(), &spec.params) {
                tracing::warn!(task_id = %id, error = %e, "could not write the delivery's files again before the task starts");
            }
        }
        let run = RunSpec {
            argv: spec.argv.clone(),
            env,
            working_dir: program.working_dir.clone(),
            timeout: program.timeout,
            kill_grace: program.kill_grace,
        };
        // With a store, `running` is on disk before the handler starts: a crash
        // then leaves it `interrupted`, never queued to run a second time.
        // (A cluster's claim committed it so already.)
        let output_limit = self.limits.load().output_limit;
        if let Some(store) = self.store.as_ref().filter(|_| self.cluster.get().is_none()) {
            if let Err(e) = store.commit(vec![Op::PutTask(Box::new(record), Body::Keep)]).await {
                // Not started unrecorded: after a crash it would be queued
                // and run a second time.
                tracing::warn!(task_id = %id, error = %e, "could not record the task as running; it is not started");
                let why = format!("not started: its start could not be recorded ({e})");
                self.finish_attempt(id, &task, &program, process::Ending::SpawnFailed(why), output_limit);
                return;
            }
        }
        // `param_files`: a directory of this attempt's own, gone when it ends.
        let param_files = match process::files::ParamFiles::write(
            &self.outputs.path().join(format!("{id}.{}.files", task.attempt)),
            &program.param_files,
            &inv,
        ) {
            Ok(written) => written,
            Err(e) => {
                self.finish_attempt(
                    id,
                    &task,
                    &program,
                    process::Ending::SpawnFailed(e.to_string()),
                    output_limit,
                );
                return;
            }
        };
        let ending = match self.outputs.create(id, task.attempt) {
            Err(e) => process::Ending::SpawnFailed(format!(
                "could not create the output files in `{}`: {e}",
                self.outputs.path().display()
            )),
            Ok((stdout, stderr, pending)) => {
                let mut pending = Some(pending);
                let files = OutputFiles {
                    stdout,
                    stderr,
                    keep: output_kept(&self.limits.load()),
                };
                let mut run = run;
                run.env.extend(param_files.env());
                let ending = process::run(&run, task.body.clone(), files, stop, |pid| {
                    let now = SystemTime::now();
                    let mut sched = self.lock();
                    sched.started(id, pid, now);
                    // Nothing else waits to start: the next output files are made ahead.
                    let quiet = sched.counts().1 == 0
                        && self.cluster.get().is_none_or(|c| c.queued.load(Ordering::Relaxed) == 0);
                    // Under the lock: output is announced only once this is out.
                    self.events.publish(
                        "task.started",
                        serde_json::json!({
                            "task": id,
                            "program": program.name,
                            "source": &*spec.source,
                            "status": Status::Running,
                            "attempt": task.attempt,
                            "node": task.node.as_deref(),
                            "started_at": task::timestamp(now),
                        })
                        .to_string(),
                    );
                    drop(sched);
                    // The pid on disk lets a restart recognise a handler that outlived us.
                    self.persist(id);
                    if let Ok(waited) = now.duration_since(spec.created_at) {
                        self.metrics.task_started(waited);
                    }
                    tracing::info!(task_id = %id, request_id = %crate::logging::field(&spec.request_id), pid, "task started");
                    // The handler runs: its files get their names.
                    if let Some(pending) = pending.take() {
                        self.outputs.settle(pending, quiet);
                    }
                })
                .await;
                // Not started: the (empty) files still get their names.
                if let Some(pending) = pending {
                    self.outputs.settle(pending, false);
                }
                ending
            }
        };
        // The attempt is over: its `param_files` go before anyone hears so.
        drop(param_files);
        self.finish_attempt(id, &task, &program, ending, output_limit);
    }

    /// Records how an attempt ended: another attempt later, or the task's end.
    fn finish_attempt(
        self: &Arc<Self>,
        id: Uuid,
        task: &Task,
        program: &Arc<process::Program>,
        ending: process::Ending,
        output_limit: usize,
    ) {
        if self.lock().taken_over.remove(&id) {
            // Its outcome is the taker's (in the store, with its callbacks):
            // this node records none, sends none, and shows the store's.
            self.let_go_taken_over(id, task);
            return;
        }
        let retry_code = matches!(ending, process::Ending::Exited(code) if program.retry_codes.contains(&code));
        if self.events.listening() {
            // The last output, announced before the end.
            self.notice_output_of(id, task.attempt);
        }
        let outcome = match Outcome::of(ending, program) {
            // Stopped because the shutdown grace ran out, with a store: it
            // stays `running` on disk and the next start finds it
            // interrupted; what this daemon shows meanwhile says the same.
            Outcome::Cancelled { reason } if reason == STOPPED_BY_SHUTDOWN && self.lock().abandoning => {
                Outcome::Interrupted {
                    reason: recover::INTERRUPTED.into(),
                }
            }
            // Stopped by a node cut off from the database (a cluster): as
            // a takeover would have it, interrupted or run again.
            Outcome::Cancelled { reason } if reason == cluster::FENCED => {
                let asked = self.lock().cancel_asked(&id);
                match asked {
                    // A cancel asked for after the fence's stop is what the
                    // user was told: cancelled, never run again.
                    Some(asked) => Outcome::Cancelled { reason: asked },
                    None => {
                        let outcome = Outcome::Interrupted { reason };
                        if program.rerun_interrupted && task.spec.pinned_node.is_none() {
                            self.retry_later(id, task.attempt, outcome, Duration::ZERO);
                            return;
                        }
                        outcome
                    }
                }
            }
            other => other,
        };
        match self.retry_delay(task.attempt, program, &outcome, retry_code) {
            Some(delay) => self.retry_later(id, task.attempt, outcome, delay),
            None => {
                let tails = self.tails(id, task.attempt, output_limit);
                let finished = {
                    let mut sched = self.lock();
                    sched.update(&id, |t| t.output = Some(tails));
                    let finished = sched.finish(id, outcome, SystemTime::now());
                    self.start_ready(&mut sched);
                    finished
                };
                self.report_finished(id, finished);
            }
        }
    }

    /// Forgets a task whose work another node took over, once its handler
    /// here has stopped: nothing of it is recorded or sent from here.
    fn let_go_taken_over(self: &Arc<Self>, id: Uuid, task: &Task) {
        tracing::warn!(task_id = %id, "handler stopped: another node took this task over while this node could not reach the database");
        self.forget_uploads(task);
        {
            let mut sched = self.lock();
            sched.release(id);
            self.start_ready(&mut sched);
        }
        if let Some(cluster) = self.cluster.get() {
            cluster.wake.notify_one();
        }
        self.changed.notify_waiters();
    }

    /// Whether a run that ended with `outcome` gets another attempt, and after how long.
    fn retry_delay(
        &self,
        attempt: u32,
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
        if !wanted || self.lock().draining {
            return None;
        }
        // `exit_codes.retry` without a `retry` policy gets three attempts.
        let attempts = policy.map_or(3, |p| p.attempts);
        if attempt >= attempts {
            return None;
        }
        Some(policy.map_or(Duration::from_secs(2), |p| p.delay(attempt + 1)))
    }

    /// Records the attempt that just ended and queues the next after `delay`;
    /// the task keeps its concurrency key meanwhile, so nothing of its key overtakes it.
    fn retry_later(self: &Arc<Self>, id: Uuid, attempt: u32, outcome: Outcome, delay: Duration) {
        let now = SystemTime::now();
        let tails = self.tails(id, attempt, task::ATTEMPT_TAIL);
        tracing::warn!(task_id = %id, status = outcome.status().as_str(), retry_in = %humantime::format_duration(delay), "task attempt failed; retrying");
        if let Some(cluster) = self.cluster.get() {
            // Its next attempt waits in the shared queue, for any node that may run it.
            let (record, finished) = {
                let mut sched = self.lock();
                let started_at = sched.get(&id).and_then(|t| t.state.started_at());
                let ended = Attempt {
                    attempt,
                    outcome,
                    started_at,
                    finished_at: now,
                    stdout: tails.stdout,
                    stderr: tails.stderr,
                };
                sched.retry(id, ended, now + delay);
                let finished = sched.get(&id).map(finished_data);
                let record = sched.release(id).map(|mut t| {
                    t.node = None;
                    t.record()
                });
                self.start_ready(&mut sched);
                (record, finished)
            };
            // The write first: the other nodes read the task from the store when told.
            if let (Some(record), Some(store)) = (record, &self.store) {
                store.write(vec![Op::PutTask(Box::new(record), Body::Keep)]);
            }
            if let Some(data) = finished {
                self.events.publish("task.finished", data);
            }
            cluster.wake.notify_one();
            self.changed.notify_waiters();
            return;
        }
        {
            let mut sched = self.lock();
            let started_at = sched.get(&id).and_then(|t| t.state.started_at());
            let ended = Attempt {
                attempt,
                outcome,
                started_at,
                finished_at: now,
                stdout: tails.stdout,
                stderr: tails.stderr,
            };
            sched.retry(id, ended, now + delay);
            if let Some(t) = sched.get(&id) {
                self.events.publish("task.finished", finished_data(t));
            }
            self.start_ready(&mut sched);
        }
        self.persist(id);
        self.changed.notify_waiters();
        self.resume_after(id, delay);
    }

    /// Puts a task waiting out a backoff back at the front of the queue after `delay`.
    /// Frees a concurrency key held by a handler that outlived a crash
    /// ([`Sched::hold_orphan_key`]) once its process group is gone.
    fn free_key_when_gone(self: &Arc<Self>, pgid: u32, key: (Arc<str>, Arc<str>)) {
        let inner = self.clone();
        self.runtime.spawn(async move {
            if let Ok(pgid) = i32::try_from(pgid) {
                let group = nix::unistd::Pid::from_raw(pgid);
                while crate::process::group_alive(group) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            tracing::info!(program = %key.0, "the handler left running by the crash has ended; its concurrency key is free");
            let mut sched = inner.lock();
            sched.free_orphan_key(&key);
            inner.start_ready(&mut sched);
        });
    }

    fn resume_after(self: &Arc<Self>, id: Uuid, delay: Duration) {
        let inner = self.clone();
        self.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let mut sched = inner.lock();
            // Cancelled meanwhile, or the daemon is stopping: nothing to do.
            if sched.resume(id) {
                inner.start_ready(&mut sched);
            }
        });
    }

    /// Reports a task that just finished: the log line, metrics, its
    /// callbacks, the store, and whoever waits. A task stopped because
    /// shutdown ran out of grace is not reported: it stays `running` on disk,
    /// and the next start marks it interrupted and reports it then.
    fn report_finished(self: &Arc<Self>, id: Uuid, finished: Option<Finished>) {
        let abandoning = self.lock().abandoning;
        let Some(task) = self.lock().get(&id).cloned() else {
            self.changed.notify_waiters();
            return;
        };
        if let TaskState::Finished { outcome, .. } = &task.state {
            let abandoned = abandoning && matches!(outcome, Outcome::Interrupted { .. });
            if !abandoned {
                log_outcome(id, outcome);
                self.forget_uploads(&task);
                let ran = finished.as_ref().and_then(|f| f.ran);
                self.metrics
                    .task_finished(&task.spec.program.name, outcome.status().as_str(), ran);
                if self.cluster.get().is_some() && !task.spec.program.callbacks.is_empty() {
                    // In a cluster the end counts once it is written under
                    // this node's claim: a node cut off from the database
                    // may have had the task taken over meanwhile, and then
                    // the taker's outcome, and its callbacks, are the ones.
                    // The end is written with its callbacks pending, so that
                    // a node dying before it records their first attempt
                    // leaves them to the taker.
                    let status = outcome.status();
                    self.lock().update(&id, |t| {
                        t.callbacks = pending_callbacks(&wanted_callbacks(t, status));
                    });
                    self.persist(id);
                    let inner = self.clone();
                    let (status, claim) = (outcome.status(), task.claim);
                    self.runtime
                        .spawn(async move { inner.callbacks_once_written(id, status, claim).await });
                } else {
                    self.start_callbacks(id, outcome.status());
                    self.persist(id);
                }
            }
            // After the store write is on its way: announcing it costs that write nothing.
            self.events.publish("task.finished", finished_data(&task));
        }
        if let Some(f) = finished {
            self.forget_outputs(&f.evicted);
        }
        if let Some(cluster) = self.cluster.get() {
            // A slot is free here.
            cluster.wake.notify_one();
        }
        self.changed.notify_waiters();
    }

    /// Announces the output that running tasks' files gained since last looked.
    fn notice_output(&self) {
        let running: Vec<(Uuid, u32)> = {
            let sched = self.lock();
            // Only handlers already spawned (their `task.started` is out).
            sched
                .running_ids()
                .filter_map(|id| sched.get(id))
                .filter(|t| matches!(t.state, TaskState::Running { pid: Some(_), .. }))
                .map(|t| (t.id(), t.attempt))
                .collect()
        };
        let mut seen = self.output_seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|id, _| running.iter().any(|(r, _)| r == id));
        for (id, attempt) in running {
            self.output_grew(&mut seen, id, attempt);
        }
    }

    /// [`Inner::notice_output`] for one task's attempt.
    fn notice_output_of(&self, id: Uuid, attempt: u32) {
        let mut seen = self.output_seen.lock().unwrap_or_else(|p| p.into_inner());
        self.output_grew(&mut seen, id, attempt);
    }

    fn output_grew(&self, seen: &mut std::collections::HashMap<Uuid, (u32, [u64; 2])>, id: Uuid, attempt: u32) {
        use process::output::Stream;
        let entry = seen.entry(id).or_insert((attempt, [0, 0]));
        if entry.0 != attempt {
            *entry = (attempt, [0, 0]);
        }
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            // Trimming punches holes and keeps the size: the length is every byte written.
            let Ok(len) = std::fs::metadata(self.outputs.file(id, attempt, stream)).map(|m| m.len()) else {
                continue;
            };
            if len > entry.1[i] {
                entry.1[i] = len;
                self.events.publish(
                    "task.output",
                    serde_json::json!({ "task": id, "stream": stream.as_str(), "bytes": len }).to_string(),
                );
            }
        }
    }

    /// See [`Engine::sweep_uploads`].
    fn sweep_uploads(&self, min_age: Duration) -> usize {
        let Some(uploads) = self.uploads.get() else { return 0 };
        let needed: std::collections::HashSet<String> = self
            .lock()
            .unfinished_records()
            .map(crate::payload::uploads::dir_name)
            .collect();
        uploads.sweep(min_age, |name| needed.contains(name))
    }

    /// Removes the directory of a finished task's multipart delivery when no
    /// other unfinished task of that delivery is here to need it.
    fn forget_uploads(&self, task: &Task) {
        let (Some(uploads), Some(record)) = (self.uploads.get(), task.spec.record_id.as_deref()) else {
            return;
        };
        if uploads.dir_for(record).exists() && !self.lock().unfinished_records().any(|r| r == record) {
            uploads.remove(record);
        }
    }

    /// Starts the task's `on_finish` callbacks whose `when` lists `status`.
    /// (A cluster.) Waits until the store has every write queued so far,
    /// this task's end among them, then sends its callbacks if the stored
    /// task is still under this node's `claim`; if another node took it
    /// over, forgets it here (the store's record, the taker's, is shown).
    async fn callbacks_once_written(self: &Arc<Self>, id: Uuid, status: Status, claim: Option<Uuid>) {
        let Some(store) = self.store.clone() else { return };
        loop {
            // An empty commit: acknowledged once what was queued before it is written.
            if store.commit(Vec::new()).await.is_ok() {
                match store.task(id).await {
                    Ok(Some(stored)) if stored.claim == claim => {
                        self.start_callbacks(id, status);
                        return;
                    }
                    Ok(_) => {
                        tracing::warn!(task_id = %id, "the task's end was not recorded: another node took it over while this node could not reach the database; its outcome and callbacks are that node's");
                        let _ = self.lock().remove(id);
                        self.changed.notify_waiters();
                        return;
                    }
                    Err(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn start_callbacks(self: &Arc<Self>, id: Uuid, status: Status) {
        self.send_callbacks(id, status, false)
    }

    /// Sends the callbacks still pending in a task's record (after a restart
    /// or a takeover), going on from the attempts already made; those already
    /// delivered or failed are left alone. If the program's callbacks no
    /// longer match the record's (the config changed), they all start over.
    fn resume_callbacks(self: &Arc<Self>, id: Uuid, status: Status) {
        self.send_callbacks(id, status, true)
    }

    fn send_callbacks(self: &Arc<Self>, id: Uuid, status: Status, resume: bool) {
        let Some((callbacks, view)) = self.lock().update(&id, |t| {
            let wanted = wanted_callbacks(t, status);
            // Worked out here, with the program at hand.
            t.callbacks_unknown = false;
            let same = resume
                && t.callbacks.len() == wanted.len()
                && t.callbacks
                    .iter()
                    .zip(&wanted)
                    .all(|(r, c)| r.url == c.url.masked_webhook());
            if !same {
                t.callbacks = pending_callbacks(&wanted);
            }
            let todo: Vec<_> = wanted
                .into_iter()
                .zip(t.callbacks.iter().cloned())
                .enumerate()
                .filter(|(_, (_, r))| r.status == CallbackStatus::Pending)
                .collect();
            (todo, TaskView::of(&t.record(), None))
        }) else {
            return;
        };
        if callbacks.is_empty() {
            return;
        }
        let body = callback::payload(&view);
        for (i, (cb, record)) in callbacks {
            let inner = self.clone();
            let body = body.clone();
            // The task id exactly as the API shows it.
            let msg_id = format!("msg_{id}_{i}");
            self.runtime.spawn(async move {
                callback::resume(cb, msg_id, body, record, |state| {
                    inner.lock().update(&id, |t| {
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

    /// Waits until `done` holds for the scheduler, or `deadline`; true if it held.
    async fn wait_until(&self, deadline: Instant, done: impl Fn(&Sched) -> bool) -> bool {
        loop {
            let mut notified = pin!(self.changed.notified());
            notified.as_mut().enable();
            if done(&self.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(&self.lock());
            }
        }
    }
}

/// The task's `on_finish` callbacks whose `when` lists `status`.
fn wanted_callbacks(t: &Task, status: Status) -> Vec<crate::process::program::Callback> {
    t.spec
        .program
        .callbacks
        .iter()
        .filter(|c| c.when.contains(&status))
        .cloned()
        .collect()
}

/// The records of `callbacks` not sent yet.
fn pending_callbacks(callbacks: &[crate::process::program::Callback]) -> Vec<CallbackRecord> {
    callbacks
        .iter()
        .map(|c| CallbackRecord {
            url: c.url.masked_webhook(),
            status: CallbackStatus::Pending,
            attempts: 0,
            last_error: None,
        })
        .collect()
}

/// The data of a `task.created` event.
fn created_data(t: &Task) -> String {
    serde_json::json!({
        "task": t.id(),
        "program": t.spec.program.name,
        "source": &*t.spec.source,
        "delivery": t.spec.record_id,
        "status": t.status(),
        "node": t.node.as_deref(),
        "created_at": task::timestamp(t.spec.created_at),
    })
    .to_string()
}

/// The data of a `task.finished` event: a task that ended, or whose attempt
/// ended and that waits for the next (`queued`, with `next_attempt_at`).
fn finished_data(t: &Task) -> String {
    let (exit_code, finished_at, next_attempt_at) = match &t.state {
        TaskState::Finished {
            outcome, finished_at, ..
        } => (outcome.code_and_error().0, Some(*finished_at), None),
        TaskState::Queued { next_attempt_at } => {
            let last = t.attempts.last();
            (
                last.and_then(|a| a.outcome.code_and_error().0),
                last.map(|a| a.finished_at),
                *next_attempt_at,
            )
        }
        TaskState::Running { .. } => (None, None, None),
    };
    let attempt = match &t.state {
        TaskState::Queued { .. } => t.attempts.last().map_or(t.attempt, |a| a.attempt),
        _ => t.attempt,
    };
    serde_json::json!({
        "task": t.id(),
        "program": t.spec.program.name,
        "source": &*t.spec.source,
        "status": t.status(),
        "exit_code": exit_code,
        "attempt": attempt,
        "node": t.node.as_deref(),
        "finished_at": finished_at.map(task::timestamp),
        "next_attempt_at": next_attempt_at.map(task::timestamp),
    })
    .to_string()
}

/// Why a task that shutdown's grace ran out on was stopped (without a store,
/// its `cancelled` reason).
const STOPPED_BY_SHUTDOWN: &str = "the daemon stopped while the task was running";

fn log_outcome(id: Uuid, outcome: &Outcome) {
    let status = outcome.status().as_str();
    match outcome {
        Outcome::Succeeded { .. } => tracing::info!(task_id = %id, status, "task finished"),
        Outcome::Failed { exit_code, error } => {
            tracing::warn!(task_id = %id, status, exit_code, error = error.as_deref(), "task finished")
        }
        Outcome::TimedOut { .. } | Outcome::Cancelled { .. } | Outcome::Interrupted { .. } => {
            tracing::warn!(task_id = %id, status, "task finished")
        }
    }
}
