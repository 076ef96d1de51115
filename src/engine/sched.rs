//! The scheduler: the one owner of every task the engine holds and of where
//! each stands. Its methods move a task between states and keep these
//! invariants, which its unit tests check after every step:
//!
//! - a task id is in `queue` exactly when its state is `Queued` without a
//!   `next_attempt_at`; in `delayed` exactly when `Queued` with one; in
//!   `running` exactly when `Running`; in `finished` exactly when `Finished`;
//! - `per_program[p]` is the number of running tasks of program `p`;
//! - `busy_keys` holds the `(program, key)` of every running task and of every
//!   task waiting out a retry's backoff (nothing of its key overtakes it).
//!
//! Besides, `orphan_keys` holds the keys of interrupted tasks whose handler
//! outlived a crash and was left running (`on_interrupt: mark`): nothing of
//! such a key starts until the engine sees that handler gone.
//!
//! It does no I/O, spawns nothing and never waits: the engine calls it under
//! one `Mutex` and does the work its answers call for (spawn, persist, log).

use super::task::{Attempt, Outcome, Status, Task, TaskState};
use super::{Limits, SubmitError, TaskError};
use crate::process::program::OnBusy;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;
use uuid::Uuid;

/// A request to stop a running handler, with the reason the task will show.
pub type StopSender = watch::Sender<Option<String>>;

/// Which tasks a list wants.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub status: Option<Status>,
    pub source: Option<String>,
    pub event: Option<String>,
    pub program: Option<String>,
    /// Only tasks run by this node (in a cluster).
    pub node: Option<String>,
    /// Only tasks whose id (lower-case, hyphenated) starts with this.
    pub id_prefix: Option<String>,
    pub limit: usize,
    /// Only tasks created before this sequence number (a paging cursor).
    pub before_seq: Option<u64>,
}

impl Filter {
    fn matches(&self, t: &Task) -> bool {
        let s = &t.spec;
        self.status.is_none_or(|st| t.status() == st)
            && self.source.as_deref().is_none_or(|x| *s.source == *x)
            && self.event.as_deref().is_none_or(|x| *s.event == *x)
            && self.program.as_deref().is_none_or(|x| *s.program.name == *x)
            && self.node.as_deref().is_none_or(|x| t.node.as_deref() == Some(x))
            && self
                .id_prefix
                .as_deref()
                .is_none_or(|p| s.id.hyphenated().to_string().starts_with(p))
    }
}

/// What [`Sched::cancel`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// It had not started: it is now finished as cancelled.
    WasQueued,
    /// It runs: its handler was asked to stop.
    Stopping,
}

/// What [`Sched::finish`] did.
#[derive(Debug)]
pub struct Finished {
    pub status: Status,
    pub program: Arc<str>,
    /// How long it ran, if it started.
    pub ran: Option<std::time::Duration>,
    /// Finished tasks dropped to stay within `keep`.
    pub evicted: Vec<Task>,
}

#[derive(Default)]
pub struct Sched {
    tasks: HashMap<Uuid, Task>,
    /// Creation order (`seq` → id).
    order: BTreeMap<u64, Uuid>,
    /// Finished tasks, oldest first, for eviction.
    finished: VecDeque<Uuid>,
    queue: VecDeque<Uuid>,
    /// Tasks waiting out a retry's backoff (they count as queued).
    delayed: HashSet<Uuid>,
    /// Running tasks and the channel that asks each to stop.
    running: HashMap<Uuid, StopSender>,
    /// Running tasks a cancel was asked for ([`Sched::cancel`]), and why:
    /// that stop stands, whatever stop the daemon asks for before or after.
    cancels: HashMap<Uuid, String>,
    per_program: HashMap<Arc<str>, usize>,
    busy_keys: HashSet<(Arc<str>, Arc<str>)>,
    /// Keys held by handlers left running by a crash, with how many.
    orphan_keys: HashMap<(Arc<str>, Arc<str>), usize>,
    /// Room held for deliveries being committed to the store.
    reserved: usize,
    /// Finished tasks kept (`tasks.keep`).
    keep: usize,
    /// Shutting down: nothing is admitted, no retries.
    pub draining: bool,
    /// Shutdown ran out of grace: the tasks it stops are left as `running` in
    /// the store, to be found interrupted at the next start.
    pub abandoning: bool,
    /// Running tasks another node took over while this one could not reach
    /// the database (a cluster): their handlers are being stopped, and
    /// their ends are not this node's to record.
    pub taken_over: HashSet<Uuid>,
}

fn key_of(t: &Task) -> Option<(Arc<str>, Arc<str>)> {
    t.spec.key.as_ref().map(|k| (t.spec.program.name.clone(), k.clone()))
}

impl Sched {
    /// Adds `new` to the reruns of task `old`, if this node holds it;
    /// whether it did.
    pub fn link_rerun(&mut self, old: Uuid, new: Uuid) -> bool {
        match self.tasks.get_mut(&old) {
            Some(o) => {
                o.reruns.push(new);
                true
            }
            None => false,
        }
    }

    pub fn new(keep: usize) -> Self {
        Sched {
            keep: keep.max(1),
            ..Sched::default()
        }
    }

    /// Tasks waiting: queued, or between attempts.
    pub fn waiting(&self) -> usize {
        self.queue.len() + self.delayed.len()
    }

    /// (running, waiting)
    pub fn counts(&self) -> (usize, usize) {
        (self.running.len(), self.waiting())
    }

    /// (running, waiting) per program, counted without building any view
    /// (the running ones are what `per_program` keeps for the limits).
    pub fn counts_by_program(&self) -> (HashMap<Arc<str>, usize>, HashMap<Arc<str>, usize>) {
        let running = self
            .per_program
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        let mut waiting: HashMap<Arc<str>, usize> = HashMap::new();
        for t in self
            .queue
            .iter()
            .chain(&self.delayed)
            .filter_map(|id| self.tasks.get(id))
        {
            *waiting.entry(t.spec.program.name.clone()).or_default() += 1;
        }
        (running, waiting)
    }

    pub fn running_ids(&self) -> impl Iterator<Item = &Uuid> {
        self.running.keys()
    }

    /// The record ids of the deliveries of unfinished tasks (queued, running, between attempts).
    pub fn unfinished_records(&self) -> impl Iterator<Item = &str> {
        self.queue
            .iter()
            .chain(&self.delayed)
            .chain(self.running.keys())
            .filter_map(|id| self.tasks.get(id)?.spec.record_id.as_deref())
    }

    /// Holds room for `new` tasks (program and key of each), or refuses all of
    /// them. Queued tasks they would replace (`on_busy: replace` or
    /// `cancel_running`) make room.
    pub fn reserve(&mut self, new: &[&Task], limits: &Limits) -> Result<(), SubmitError> {
        self.reserve_beside(new, limits, 0)
    }

    /// As [`Sched::reserve`], with `elsewhere` tasks waiting outside this
    /// scheduler (a cluster's queue) counting against `max_queued` too.
    pub fn reserve_beside(&mut self, new: &[&Task], limits: &Limits, elsewhere: usize) -> Result<(), SubmitError> {
        if self.draining {
            return Err(SubmitError::ShuttingDown);
        }
        // Only tasks that replace look through the queue: admission stays
        // O(1) however long the queue is.
        let replacing: Vec<&Task> = new.iter().copied().filter(|t| may_supersede(t)).collect();
        let replaced = if replacing.is_empty() {
            0
        } else {
            self.queue
                .iter()
                .chain(&self.delayed)
                .filter_map(|id| self.tasks.get(id))
                .filter(|q| replacing.iter().any(|t| supersedes(t, q)))
                .count()
        };
        // Tasks held room for (their deliveries are committing) and the new
        // ones take free slots first, as they will once queued.
        let free = limits.max_concurrent.saturating_sub(self.running.len());
        let waiting = (self.waiting() + elsewhere).saturating_sub(replaced);
        if waiting + (self.reserved + new.len()).saturating_sub(free) > limits.max_queued {
            return Err(SubmitError::QueueFull);
        }
        self.reserved += new.len();
        Ok(())
    }

    /// Gives back room held by [`Sched::reserve`].
    pub fn unreserve(&mut self, n: usize) {
        self.reserved = self.reserved.saturating_sub(n);
    }

    /// Queues a reserved task. A task whose program says `on_busy: replace`
    /// or `cancel_running` supersedes the queued task of its key, which is
    /// finished as cancelled here (returned, to be reported), and for
    /// `cancel_running` asks the running one to stop.
    pub fn enqueue(&mut self, task: Task, now: SystemTime) -> Vec<Uuid> {
        self.unreserve(1);
        let mut superseded = Vec::new();
        if may_supersede(&task) {
            let reason = format!("superseded by {}", task.id());
            // Queued, or waiting out a retry's backoff (queued too, as the API shows it).
            let same: Vec<Uuid> = self
                .queue
                .iter()
                .chain(&self.delayed)
                .copied()
                .filter(|id| self.tasks.get(id).is_some_and(|q| supersedes(&task, q)))
                .collect();
            for id in same {
                self.finish(id, Outcome::Cancelled { reason: reason.clone() }, now);
                superseded.push(id);
            }
            if task.spec.program.on_busy == OnBusy::CancelRunning {
                for (id, stop) in &self.running {
                    if self.tasks.get(id).is_some_and(|r| supersedes(&task, r)) {
                        let _ = stop.send(Some(reason.clone()));
                    }
                }
            }
        }
        if let Some(old) = task.spec.rerun_of {
            self.link_rerun(old, task.id());
        }
        let id = task.id();
        self.order.insert(task.spec.seq, id);
        self.queue.push_back(id);
        self.tasks.insert(id, task);
        superseded
    }

    /// Whether the queued task `id` may start now: its program is under its
    /// limit and its key is free.
    fn may_start(&self, id: &Uuid) -> bool {
        let Some(t) = self.tasks.get(id) else { return false };
        let program = &t.spec.program;
        let program_room = program
            .max_concurrent
            .is_none_or(|max| self.per_program.get(&program.name).copied().unwrap_or(0) < max);
        program_room && key_of(t).is_none_or(|k| !self.busy_keys.contains(&k) && !self.orphan_keys.contains_key(&k))
    }

    /// Holds the key of `task`, whose handler outlived a crash and runs on
    /// unsupervised, until [`Sched::free_orphan_key`]. The key held, if any.
    pub fn hold_orphan_key(&mut self, task: &Task) -> Option<(Arc<str>, Arc<str>)> {
        let k = key_of(task)?;
        *self.orphan_keys.entry(k.clone()).or_default() += 1;
        Some(k)
    }

    /// The handler that held `key` is gone.
    pub fn free_orphan_key(&mut self, key: &(Arc<str>, Arc<str>)) {
        if let Some(n) = self.orphan_keys.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.orphan_keys.remove(key);
            }
        }
    }

    /// Takes the first queued task that may start, if a slot is free, and
    /// marks it running (no pid yet): later tasks may pass one whose program
    /// is at its limit or whose key is busy.
    pub fn next_ready(
        &mut self,
        max_concurrent: usize,
        now: SystemTime,
    ) -> Option<(Uuid, watch::Receiver<Option<String>>)> {
        if self.running.len() >= max_concurrent {
            return None;
        }
        let pos = self.queue.iter().position(|id| self.may_start(id))?;
        let id = self.queue.remove(pos)?;
        let t = self.tasks.get_mut(&id)?;
        t.state = TaskState::Running {
            started_at: now,
            pid: None,
        };
        *self.per_program.entry(t.spec.program.name.clone()).or_default() += 1;
        if let Some(k) = key_of(t) {
            self.busy_keys.insert(k);
        }
        let (tx, rx) = watch::channel(None);
        self.running.insert(id, tx);
        Some((id, rx))
    }

    /// Takes a task another place already marked running (a cluster's claim):
    /// it runs here now, counted like one this scheduler started.
    pub fn insert_running(&mut self, task: Task) -> watch::Receiver<Option<String>> {
        let id = task.id();
        *self.per_program.entry(task.spec.program.name.clone()).or_default() += 1;
        if let Some(k) = key_of(&task) {
            self.busy_keys.insert(k);
        }
        let (tx, rx) = watch::channel(None);
        self.running.insert(id, tx);
        self.order.insert(task.spec.seq, id);
        self.tasks.insert(id, task);
        rx
    }

    /// Lets go of a task that has not finished (a cluster's task leaving this
    /// node to wait for its retry elsewhere): it is gone from here, and what
    /// it held is free. Returns it.
    pub fn release(&mut self, id: Uuid) -> Option<Task> {
        let t = self.tasks.get(&id)?;
        if t.state.is_finished() {
            return None;
        }
        let key = key_of(t);
        let program = t.spec.program.name.clone();
        self.cancels.remove(&id);
        if self.running.remove(&id).is_some() {
            if let Some(n) = self.per_program.get_mut(&program) {
                *n = n.saturating_sub(1);
            }
            if let Some(k) = &key {
                self.busy_keys.remove(k);
            }
        } else if self.delayed.remove(&id) {
            if let Some(k) = &key {
                self.busy_keys.remove(k);
            }
        } else if let Some(pos) = self.queue.iter().position(|q| *q == id) {
            self.queue.remove(pos);
        }
        self.forget(id)
    }

    /// Whether a task is running here.
    pub fn is_running(&self, id: &Uuid) -> bool {
        self.running.contains_key(id)
    }

    /// The handler of a running task was spawned.
    pub fn started(&mut self, id: Uuid, pid: u32, at: SystemTime) {
        if let Some(t) = self.tasks.get_mut(&id) {
            if let TaskState::Running { .. } = t.state {
                t.state = TaskState::Running {
                    started_at: at,
                    pid: Some(pid),
                };
            }
        }
    }

    /// A running task's attempt ended and another follows after a backoff:
    /// it keeps its key meanwhile, but frees its program's slot.
    pub fn retry(&mut self, id: Uuid, ended: Attempt, next_at: SystemTime) -> bool {
        self.cancels.remove(&id);
        if self.running.remove(&id).is_none() {
            return false;
        }
        let Some(t) = self.tasks.get_mut(&id) else { return false };
        if let Some(n) = self.per_program.get_mut(&t.spec.program.name) {
            *n = n.saturating_sub(1);
        }
        t.attempts.push(ended);
        t.attempt += 1;
        t.state = TaskState::Queued {
            next_attempt_at: Some(next_at),
        };
        self.delayed.insert(id);
        true
    }

    /// A task's backoff is over: it goes to the front of the queue.
    pub fn resume(&mut self, id: Uuid) -> bool {
        if !self.delayed.remove(&id) {
            return false;
        }
        let Some(t) = self.tasks.get_mut(&id) else { return false };
        t.state = TaskState::Queued { next_attempt_at: None };
        if let Some(k) = key_of(t) {
            self.busy_keys.remove(&k);
        }
        self.queue.push_front(id);
        true
    }

    /// Finishes a task in whatever state it is (queued, waiting or running),
    /// freeing what it held; the oldest finished tasks beyond `keep` are
    /// dropped. `None` if the task is unknown or already finished.
    pub fn finish(&mut self, id: Uuid, outcome: Outcome, now: SystemTime) -> Option<Finished> {
        let t = self.tasks.get_mut(&id)?;
        if t.state.is_finished() {
            return None;
        }
        // A task taken off the queue whose handler never spawned did not start.
        let started_at = t.state.started_at();
        let key = key_of(t);
        self.cancels.remove(&id);
        if self.running.remove(&id).is_some() {
            if let Some(n) = self.per_program.get_mut(&t.spec.program.name) {
                *n = n.saturating_sub(1);
            }
            if let Some(k) = &key {
                self.busy_keys.remove(k);
            }
        } else if self.delayed.remove(&id) {
            if let Some(k) = &key {
                self.busy_keys.remove(k);
            }
        } else if let Some(pos) = self.queue.iter().position(|q| *q == id) {
            self.queue.remove(pos);
        }
        let status = outcome.status();
        t.state = TaskState::Finished {
            started_at,
            finished_at: now,
            outcome,
        };
        t.body = bytes::Bytes::new();
        let program = t.spec.program.name.clone();
        let ran = started_at.and_then(|s| now.duration_since(s).ok());
        self.finished.push_back(id);
        let excess = self.finished.len().saturating_sub(self.keep);
        // Never the task just finished: its callbacks are worked out next.
        let evicted = self.evict_oldest(excess, 1, |_| true);
        Some(Finished {
            status,
            program,
            ran,
            evicted,
        })
    }

    /// Cancels a task: one that has not started is finished at once, a
    /// running one is asked to stop.
    pub fn cancel(&mut self, id: Uuid, reason: &str, now: SystemTime) -> Result<Cancelled, TaskError> {
        let status = self.tasks.get(&id).ok_or(TaskError::NotFound(id))?.status();
        if let Some(stop) = self.running.get(&id) {
            let _ = stop.send(Some(reason.to_string()));
            self.cancels.insert(id, reason.to_string());
            return Ok(Cancelled::Stopping);
        }
        if status.is_final() {
            return Err(TaskError::Finished(id, status.as_str()));
        }
        self.finish(
            id,
            Outcome::Cancelled {
                reason: reason.to_string(),
            },
            now,
        );
        Ok(Cancelled::WasQueued)
    }

    /// Why a cancel of a running task was asked for, if one was.
    pub fn cancel_asked(&self, id: &Uuid) -> Option<String> {
        self.cancels.get(id).cloned()
    }

    /// Asks every running task to stop.
    pub fn stop_running(&self, reason: &str) {
        for stop in self.running.values() {
            let _ = stop.send(Some(reason.to_string()));
        }
    }

    /// Asks the running tasks `pick` chooses to stop for `reason` (unless
    /// already asked to stop for another); the process groups of all it
    /// chose that have one, for a kill that cannot wait.
    pub fn stop_where(&self, reason: &str, pick: impl Fn(&Task) -> bool) -> Vec<u32> {
        let mut groups = Vec::new();
        for (id, stop) in &self.running {
            let Some(task) = self.tasks.get(id).filter(|t| pick(t)) else {
                continue;
            };
            stop.send_if_modified(|asked| {
                let first = asked.is_none();
                if first {
                    *asked = Some(reason.to_string());
                }
                first
            });
            if let TaskState::Running { pid: Some(pid), .. } = task.state {
                groups.push(pid);
            }
        }
        groups
    }

    /// Every task that waits (queued or between attempts), taken off the queue.
    pub fn drain_waiting(&mut self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.queue.drain(..).collect();
        for id in self.delayed.drain() {
            if let Some(k) = self.tasks.get(&id).and_then(key_of) {
                self.busy_keys.remove(&k);
            }
            ids.push(id);
        }
        ids
    }

    fn forget(&mut self, id: Uuid) -> Option<Task> {
        let t = self.tasks.remove(&id)?;
        self.order.remove(&t.spec.seq);
        Some(t)
    }

    /// Removes a finished task.
    pub fn remove(&mut self, id: Uuid) -> Result<Task, TaskError> {
        let status = self.tasks.get(&id).ok_or(TaskError::NotFound(id))?.status();
        if !status.is_final() {
            return Err(TaskError::NotFinished(id, status.as_str()));
        }
        self.finished.retain(|f| *f != id);
        self.forget(id).ok_or(TaskError::NotFound(id))
    }

    /// Forgets every finished task (their records stay in the store); how many.
    pub fn forget_finished(&mut self) -> usize {
        let ids: Vec<Uuid> = self.finished.drain(..).collect();
        ids.into_iter().filter(|id| self.forget(*id).is_some()).count()
    }

    /// Drops finished tasks that finished before `cutoff`; returns them.
    pub fn evict_finished_before(&mut self, cutoff: SystemTime) -> Vec<Task> {
        self.evict_oldest(usize::MAX, 0, |t| match t.map(|t| &t.state) {
            Some(TaskState::Finished { finished_at, .. }) => *finished_at < cutoff,
            _ => true,
        })
    }

    /// Drops up to `count` of the oldest finished tasks, oldest first, while
    /// `due` holds for them, and never the newest `spare`. One whose
    /// callbacks are still being sent stays until they are done (their
    /// attempts are written to it) and is passed over.
    fn evict_oldest(&mut self, mut count: usize, spare: usize, due: impl Fn(Option<&Task>) -> bool) -> Vec<Task> {
        let mut gone = Vec::new();
        let mut i = 0;
        while count > 0 && i + spare < self.finished.len() {
            let id = self.finished[i];
            let task = self.tasks.get(&id);
            if !due(task) {
                break;
            }
            if task.is_some_and(sending_callbacks) {
                i += 1;
                continue;
            }
            self.finished.remove(i);
            count -= 1;
            gone.extend(self.forget(id));
        }
        gone
    }

    /// The finished tasks whose callbacks are still being sent.
    pub fn sending_callbacks(&self) -> Vec<Uuid> {
        self.finished
            .iter()
            .filter(|id| self.tasks.get(id).is_some_and(sending_callbacks))
            .copied()
            .collect()
    }

    pub fn get(&self, id: &Uuid) -> Option<&Task> {
        self.tasks.get(id)
    }

    /// Changes a task's data (callbacks, output tails); not its state.
    pub fn update<R>(&mut self, id: &Uuid, f: impl FnOnce(&mut Task) -> R) -> Option<R> {
        self.tasks.get_mut(id).map(f)
    }

    /// A task's sequence number, if the engine holds it.
    pub fn seq(&self, id: &Uuid) -> Option<u64> {
        self.tasks.get(id).map(|t| t.spec.seq)
    }

    /// The states of the newest `limit` tasks, newest first.
    pub fn newest_states(&self, limit: usize) -> Vec<TaskState> {
        self.order
            .values()
            .rev()
            .filter_map(|id| self.tasks.get(id))
            .take(limit)
            .map(|t| t.state.clone())
            .collect()
    }

    /// Tasks matching `filter`, newest first.
    pub fn list(&self, filter: &Filter) -> Vec<Task> {
        self.order
            .range(..filter.before_seq.unwrap_or(u64::MAX))
            .rev()
            .filter_map(|(_, id)| self.tasks.get(id))
            .filter(|t| filter.matches(t))
            .take(filter.limit)
            .cloned()
            .collect()
    }

    /// Puts back a task found in the store at a restart, in its state:
    /// queued, waiting out a backoff (holding its key), or finished.
    pub fn restore(&mut self, task: Task) {
        let id = task.id();
        match &task.state {
            TaskState::Queued { next_attempt_at: None } => self.queue.push_back(id),
            TaskState::Queued {
                next_attempt_at: Some(_),
            } => {
                if let Some(k) = key_of(&task) {
                    self.busy_keys.insert(k);
                }
                self.delayed.insert(id);
            }
            TaskState::Finished { .. } => self.finished.push_back(id),
            // Nothing runs at a restart: the caller decided what it became.
            TaskState::Running { .. } => return,
        }
        self.order.insert(task.spec.seq, id);
        self.tasks.insert(id, task);
    }

    /// Holds a finished `task` as read from the store: in place of the copy
    /// held (a stale one, under an older claim), or restored.
    pub fn replace_or_restore(&mut self, task: Task) {
        match self.tasks.get_mut(&task.id()) {
            Some(held) => *held = task,
            None => self.restore(task),
        }
    }

    /// Checks the invariants (tests).
    #[cfg(test)]
    fn check(&self) {
        for (id, t) in &self.tasks {
            let in_queue = self.queue.contains(id);
            let in_delayed = self.delayed.contains(id);
            let in_running = self.running.contains_key(id);
            let in_finished = self.finished.contains(id);
            match &t.state {
                TaskState::Queued { next_attempt_at: None } => {
                    assert!(in_queue && !in_delayed && !in_running && !in_finished)
                }
                TaskState::Queued {
                    next_attempt_at: Some(_),
                } => assert!(!in_queue && in_delayed && !in_running && !in_finished),
                TaskState::Running { .. } => assert!(!in_queue && !in_delayed && in_running && !in_finished),
                TaskState::Finished { .. } => assert!(!in_queue && !in_delayed && !in_running && in_finished),
            }
            assert_eq!(self.order.get(&t.spec.seq), Some(id));
        }
        for id in self
            .queue
            .iter()
            .chain(&self.delayed)
            .chain(self.running.keys())
            .chain(&self.finished)
        {
            assert!(self.tasks.contains_key(id), "{id} is scheduled but unknown");
        }
        let mut per_program: HashMap<Arc<str>, usize> = HashMap::new();
        let mut keys = HashSet::new();
        for id in self.running.keys() {
            let t = &self.tasks[id];
            *per_program.entry(t.spec.program.name.clone()).or_default() += 1;
            keys.extend(key_of(t));
        }
        for id in &self.delayed {
            keys.extend(key_of(&self.tasks[id]));
        }
        per_program.retain(|_, n| *n > 0);
        let mut counted = self.per_program.clone();
        counted.retain(|_, n| *n > 0);
        assert_eq!(counted, per_program);
        assert_eq!(self.busy_keys, keys);
    }
}

/// Whether some of a finished task's callbacks are still to be delivered.
fn sending_callbacks(t: &Task) -> bool {
    t.callbacks
        .iter()
        .any(|c| c.status == crate::store::record::CallbackStatus::Pending)
}

/// Whether `new` replaces `old` (same program, same key, `on_busy` says so).
/// Whether `new` replaces tasks of its key (`on_busy: replace` or `cancel_running`).
fn may_supersede(new: &Task) -> bool {
    matches!(new.spec.program.on_busy, OnBusy::Replace | OnBusy::CancelRunning) && new.spec.key.is_some()
}

fn supersedes(new: &Task, old: &Task) -> bool {
    may_supersede(new) && old.spec.program.name == new.spec.program.name && old.spec.key == new.spec.key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::task::TaskSpec;
    use crate::process::Program;
    use std::time::Duration;

    fn limits(max_concurrent: usize, max_queued: usize) -> Limits {
        Limits {
            max_concurrent,
            max_queued,
            keep: 100,
            keep_for: Duration::from_secs(60),
            output_limit: 1024,
            shutdown_grace: Duration::from_secs(1),
        }
    }

    fn program(name: &str, max: Option<usize>, on_busy: OnBusy, keyed: bool) -> Arc<Program> {
        Arc::new(Program {
            name: name.into(),
            max_concurrent: max,
            on_busy,
            concurrency_key: keyed.then(|| crate::process::Template::parse("{k}").unwrap()),
            ..Program::default()
        })
    }

    struct World {
        sched: Sched,
        seq: u64,
        now: SystemTime,
    }

    impl World {
        fn new(keep: usize) -> Self {
            World {
                sched: Sched::new(keep),
                seq: 0,
                now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            }
        }

        fn task(&mut self, program: &Arc<Program>, key: Option<&str>) -> Task {
            self.seq += 1;
            Task::new(
                TaskSpec {
                    id: Uuid::new_v4(),
                    seq: self.seq,
                    delivery_id: "d".into(),
                    request_id: "r".into(),
                    source: "s".into(),
                    event: "e".into(),
                    program: program.clone(),
                    params: vec![],
                    argv: vec![],
                    key: key.map(Arc::from),
                    created_at: self.now,
                    record_id: None,
                    rerun_of: None,
                    run_on: vec![],
                    pinned_node: None,
                    boundary: None,
                },
                bytes::Bytes::from_static(b"{}"),
            )
        }

        /// Reserves and enqueues; returns the id and what it superseded.
        fn submit(&mut self, program: &Arc<Program>, key: Option<&str>) -> (Uuid, Vec<Uuid>) {
            let t = self.task(program, key);
            self.sched.reserve(&[&t], &limits(100, 100)).unwrap();
            let id = t.id();
            let gone = self.sched.enqueue(t, self.now);
            self.sched.check();
            (id, gone)
        }

        fn start_all(&mut self, max: usize) -> Vec<Uuid> {
            let mut started = Vec::new();
            while let Some((id, _)) = self.sched.next_ready(max, self.now) {
                self.sched.started(id, 4242, self.now);
                started.push(id);
                self.sched.check();
            }
            started
        }

        /// A first attempt that failed with exit code 1, just now.
        fn failed_attempt(&self) -> Attempt {
            Attempt {
                attempt: 1,
                outcome: Outcome::Failed {
                    exit_code: Some(1),
                    error: None,
                },
                started_at: Some(self.now),
                finished_at: self.now,
                stdout: String::new(),
                stderr: String::new(),
            }
        }

        fn status(&self, id: Uuid) -> Status {
            self.sched.get(&id).unwrap().status()
        }

        fn finish(&mut self, id: Uuid) -> Finished {
            self.now += Duration::from_secs(1);
            let f = self
                .sched
                .finish(id, Outcome::Succeeded { exit_code: 0 }, self.now)
                .unwrap();
            self.sched.check();
            f
        }
    }

    #[test]
    fn stop_where_asks_only_the_chosen_running_tasks_and_keeps_an_earlier_reason() {
        let mut w = World::new(10);
        let (p, q) = (
            program("p", None, OnBusy::Queue, false),
            program("q", None, OnBusy::Queue, false),
        );
        let (a, b, c) = (w.submit(&p, None).0, w.submit(&p, None).0, w.submit(&q, None).0);
        let mut stops = HashMap::new();
        let mut pid = 100;
        while let Some((id, stop)) = w.sched.next_ready(10, w.now) {
            pid += 1;
            w.sched.started(id, pid, w.now);
            stops.insert(id, (stop, pid));
        }
        // b was asked to stop for something else first.
        w.sched.cancel(b, "cancelled by request", w.now).unwrap();
        let groups = w.sched.stop_where("fenced", |t| t.spec.program.name.as_ref() == "p");
        let mut want = vec![stops[&a].1, stops[&b].1];
        want.sort();
        let mut got = groups.clone();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(stops[&a].0.borrow().as_deref(), Some("fenced"));
        assert_eq!(stops[&b].0.borrow().as_deref(), Some("cancelled by request"));
        assert_eq!(*stops[&c].0.borrow(), None);
        // A cancel asked for after the fence's stop is remembered as such;
        // the daemon's own stops (shutdown) are not cancels.
        w.sched.cancel(a, "cancelled later", w.now).unwrap();
        w.sched.stop_running("the daemon stopped");
        assert_eq!(w.sched.cancel_asked(&a).as_deref(), Some("cancelled later"));
        assert_eq!(w.sched.cancel_asked(&b).as_deref(), Some("cancelled by request"));
        assert_eq!(w.sched.cancel_asked(&c), None);
        // Gone with the run.
        w.sched.release(a);
        assert_eq!(w.sched.cancel_asked(&a), None);
    }

    #[test]
    fn fifo_under_the_global_limit() {
        let mut w = World::new(10);
        let p = program("p", None, OnBusy::Queue, false);
        let ids: Vec<Uuid> = (0..5).map(|_| w.submit(&p, None).0).collect();
        assert_eq!(w.start_all(2), ids[..2]);
        assert_eq!(w.sched.counts(), (2, 3));
        let f = w.finish(ids[0]);
        assert_eq!((f.status, f.ran), (Status::Succeeded, Some(Duration::from_secs(1))));
        assert_eq!(w.start_all(2), ids[2..3]);
    }

    #[test]
    fn a_program_at_its_limit_lets_others_pass() {
        let mut w = World::new(10);
        let one = program("one", Some(1), OnBusy::Queue, false);
        let other = program("other", None, OnBusy::Queue, false);
        let a = w.submit(&one, None).0;
        let b = w.submit(&one, None).0;
        let c = w.submit(&other, None).0;
        assert_eq!(w.start_all(4), [a, c]);
        assert_eq!(w.status(b), Status::Queued);
        w.finish(a);
        assert_eq!(w.start_all(4), [b]);
    }

    #[test]
    fn one_key_runs_one_at_a_time_and_holds_through_a_backoff() {
        let mut w = World::new(10);
        let p = program("p", None, OnBusy::Queue, true);
        let a = w.submit(&p, Some("k")).0;
        let b = w.submit(&p, Some("k")).0;
        let c = w.submit(&p, Some("other")).0;
        assert_eq!(w.start_all(4), [a, c]);
        // a fails and waits to retry: b must still not start.
        assert!(w.sched.retry(a, w.failed_attempt(), w.now + Duration::from_secs(5)));
        w.sched.check();
        assert!(w.start_all(4).is_empty());
        assert_eq!(w.sched.get(&a).unwrap().attempt, 2);
        // Its backoff ends: it goes first again.
        assert!(w.sched.resume(a));
        w.sched.check();
        assert_eq!(w.start_all(4), [a]);
        w.finish(a);
        assert_eq!(w.start_all(4), [b]);
    }

    #[test]
    fn replace_supersedes_the_queued_task_of_its_key() {
        let mut w = World::new(10);
        let p = program("p", None, OnBusy::Replace, true);
        let a = w.submit(&p, Some("k")).0;
        assert_eq!(w.start_all(4), [a]);
        let b = w.submit(&p, Some("k")).0;
        let (c, gone) = w.submit(&p, Some("k"));
        assert_eq!(gone, [b]);
        assert_eq!(w.status(b), Status::Cancelled);
        assert_eq!(w.status(a), Status::Running, "replace leaves the running one alone");
        w.finish(a);
        assert_eq!(w.start_all(4), [c]);
    }

    #[test]
    fn counts_per_program_follow_starts_retries_and_ends() {
        let mut w = World::new(10);
        let (p, q) = (
            program("p", None, OnBusy::Queue, false),
            program("q", Some(1), OnBusy::Queue, false),
        );
        let a = w.submit(&p, None).0;
        w.submit(&q, None);
        w.submit(&q, None);
        w.start_all(4);
        let count = |m: &HashMap<Arc<str>, usize>, n: &str| m.get(n).copied().unwrap_or(0);
        let (running, waiting) = w.sched.counts_by_program();
        assert_eq!((count(&running, "p"), count(&running, "q")), (1, 1));
        assert_eq!((count(&waiting, "p"), count(&waiting, "q")), (0, 1));
        // Waiting out a backoff: waiting, no longer running.
        assert!(w.sched.retry(a, w.failed_attempt(), w.now + Duration::from_secs(5)));
        let (running, waiting) = w.sched.counts_by_program();
        assert_eq!((count(&running, "p"), count(&waiting, "p")), (0, 1));
    }

    #[test]
    fn replace_supersedes_a_task_of_its_key_waiting_to_retry() {
        let mut w = World::new(10);
        let p = program("p", None, OnBusy::Replace, true);
        let a = w.submit(&p, Some("k")).0;
        assert_eq!(w.start_all(4), [a]);
        assert!(w.sched.retry(a, w.failed_attempt(), w.now + Duration::from_secs(5)));
        w.sched.check();
        let (b, gone) = w.submit(&p, Some("k"));
        assert_eq!(gone, [a]);
        assert_eq!(w.status(a), Status::Cancelled);
        assert!(!w.sched.resume(a), "the superseded retry never comes back");
        assert_eq!(w.start_all(4), [b]);
    }

    #[test]
    fn cancel_running_asks_the_running_task_to_stop() {
        let mut w = World::new(10);
        let p = program("p", None, OnBusy::CancelRunning, true);
        let a = w.submit(&p, Some("k")).0;
        let (started, mut stop) = w.sched.next_ready(4, w.now).unwrap();
        assert_eq!(started, a);
        let (b, gone) = w.submit(&p, Some("k"));
        assert!(gone.is_empty());
        assert_eq!(
            stop.borrow_and_update().as_deref(),
            Some(format!("superseded by {b}").as_str())
        );
        // b waits for a's handler to stop and release the key.
        assert!(w.start_all(4).is_empty());
        w.sched.finish(
            a,
            Outcome::Cancelled {
                reason: "superseded".into(),
            },
            w.now,
        );
        assert_eq!(w.start_all(4), [b]);
    }

    #[test]
    fn the_queue_bound_counts_waiting_and_reserved_tasks() {
        let mut w = World::new(10);
        let p = program("p", None, OnBusy::Queue, false);
        let l = limits(1, 2);
        let t: Vec<Task> = (0..4).map(|_| w.task(&p, None)).collect();
        // One slot free plus two queued: three fit, a fourth does not.
        w.sched.reserve(&[&t[0], &t[1], &t[2]], &l).unwrap();
        assert_eq!(w.sched.reserve(&[&t[3]], &l), Err(SubmitError::QueueFull));
        w.sched.unreserve(3);
        w.sched.reserve(&[&t[3]], &l).unwrap();
        w.sched.draining = true;
        assert_eq!(w.sched.reserve(&[&t[0]], &l), Err(SubmitError::ShuttingDown));
    }

    #[test]
    fn deliveries_still_committing_take_free_slots_before_the_queue() {
        let mut w = World::new(10);
        let p = program("p", None, OnBusy::Queue, false);
        // No waiting at all, two free slots: two deliveries at once fit.
        let (a, b, c) = (w.task(&p, None), w.task(&p, None), w.task(&p, None));
        w.sched.reserve(&[&a], &limits(2, 0)).unwrap();
        w.sched.reserve(&[&b], &limits(2, 0)).unwrap();
        assert_eq!(w.sched.reserve(&[&c], &limits(2, 0)), Err(SubmitError::QueueFull));
    }

    #[test]
    fn cancel_finishes_what_has_not_started_and_stops_what_runs() {
        let mut w = World::new(10);
        let p = program("p", None, OnBusy::Queue, true);
        let a = w.submit(&p, Some("k")).0;
        let b = w.submit(&p, Some("k")).0;
        w.start_all(4);
        assert_eq!(w.sched.cancel(b, "no", w.now), Ok(Cancelled::WasQueued));
        w.sched.check();
        assert_eq!(w.status(b), Status::Cancelled);
        assert_eq!(w.sched.cancel(a, "stop", w.now), Ok(Cancelled::Stopping));
        assert_eq!(w.status(a), Status::Running, "it stops when its handler has stopped");
        assert_eq!(
            w.sched.cancel(b, "again", w.now),
            Err(TaskError::Finished(b, "cancelled"))
        );
        let unknown = Uuid::new_v4();
        assert_eq!(w.sched.cancel(unknown, "x", w.now), Err(TaskError::NotFound(unknown)));
    }

    #[test]
    fn finished_tasks_beyond_keep_are_evicted_oldest_first() {
        let mut w = World::new(2);
        let p = program("p", None, OnBusy::Queue, false);
        let ids: Vec<Uuid> = (0..3).map(|_| w.submit(&p, None).0).collect();
        w.start_all(4);
        assert!(w.finish(ids[0]).evicted.is_empty());
        assert!(w.finish(ids[1]).evicted.is_empty());
        let f = w.finish(ids[2]);
        assert_eq!(f.evicted.iter().map(Task::id).collect::<Vec<_>>(), [ids[0]]);
        assert!(w.sched.get(&ids[0]).is_none());
        assert_eq!(w.sched.remove(ids[1]).map(|t| t.id()), Ok(ids[1]));
        w.sched.check();
        let cutoff = w.now + Duration::from_secs(1);
        assert_eq!(w.sched.evict_finished_before(cutoff).len(), 1);
        w.sched.check();
    }

    #[test]
    fn a_finished_task_whose_callbacks_are_being_sent_is_not_evicted() {
        use crate::store::record::{CallbackRecord, CallbackStatus};
        let mut w = World::new(1);
        let p = program("p", None, OnBusy::Queue, false);
        let ids: Vec<Uuid> = (0..3).map(|_| w.submit(&p, None).0).collect();
        w.start_all(4);
        w.finish(ids[0]);
        let pending = CallbackRecord {
            url: "http://h/x".into(),
            status: CallbackStatus::Pending,
            attempts: 1,
            last_error: None,
        };
        w.sched.update(&ids[0], |t| t.callbacks = vec![pending]);
        // Beyond `keep`, the next oldest goes instead.
        assert!(w.finish(ids[1]).evicted.is_empty());
        let f = w.finish(ids[2]);
        assert_eq!(f.evicted.iter().map(Task::id).collect::<Vec<_>>(), [ids[1]]);
        assert!(w.sched.get(&ids[0]).is_some());
        let cutoff = w.now + Duration::from_secs(1);
        assert_eq!(
            w.sched
                .evict_finished_before(cutoff)
                .iter()
                .map(Task::id)
                .collect::<Vec<_>>(),
            [ids[2]]
        );
        // Delivered: it goes like any other.
        w.sched
            .update(&ids[0], |t| t.callbacks[0].status = CallbackStatus::Delivered);
        assert_eq!(
            w.sched
                .evict_finished_before(cutoff)
                .iter()
                .map(Task::id)
                .collect::<Vec<_>>(),
            [ids[0]]
        );
        w.sched.check();
    }

    #[test]
    fn a_claimed_task_runs_and_a_released_one_leaves_nothing_behind() {
        let mut w = World::new(10);
        let p = program("p", Some(1), OnBusy::Queue, true);
        let mut t = w.task(&p, Some("k"));
        t.state = TaskState::Running {
            started_at: w.now,
            pid: None,
        };
        let id = t.id();
        let _stop = w.sched.insert_running(t);
        w.sched.check();
        assert!(w.sched.is_running(&id));
        assert_eq!(w.sched.counts(), (1, 0));
        // Another of the program and key waits for it here.
        let (waiting, _) = w.submit(&p, Some("k"));
        assert!(w.start_all(4).is_empty());
        assert_eq!(w.sched.release(id).map(|t| t.id()), Some(id));
        w.sched.check();
        assert!(w.sched.get(&id).is_none());
        assert_eq!(w.start_all(4), [waiting]);
    }

    #[test]
    fn lists_newest_first_with_a_cursor() {
        let mut w = World::new(10);
        let p = program("p", None, OnBusy::Queue, false);
        let ids: Vec<Uuid> = (0..4).map(|_| w.submit(&p, None).0).collect();
        let list = |w: &World, f: Filter| w.sched.list(&f).iter().map(Task::id).collect::<Vec<_>>();
        assert_eq!(
            list(
                &w,
                Filter {
                    limit: 2,
                    ..Filter::default()
                }
            ),
            [ids[3], ids[2]]
        );
        let before = w.sched.seq(&ids[2]);
        assert_eq!(
            list(
                &w,
                Filter {
                    limit: 10,
                    before_seq: before,
                    ..Filter::default()
                }
            ),
            [ids[1], ids[0]]
        );
        w.start_all(1);
        assert_eq!(
            list(
                &w,
                Filter {
                    limit: 10,
                    status: Some(Status::Running),
                    ..Filter::default()
                }
            ),
            [ids[0]]
        );
    }
}
