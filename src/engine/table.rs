//! The in-memory task table: lookups by id, listing newest first, and
//! eviction of the oldest finished tasks beyond `tasks.keep`.

use super::task::{Status, Task, TaskView};
use dashmap::DashMap;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use uuid::Uuid;

/// Which tasks `GET /tasks` wants.
#[derive(Debug, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub source: Option<String>,
    pub event: Option<String>,
    pub program: Option<String>,
    pub limit: usize,
    /// Only tasks created before this one (a paging cursor).
    pub before: Option<Uuid>,
}

impl Filter {
    fn matches(&self, t: &Task) -> bool {
        self.status.is_none_or(|s| t.state.status() == s)
            && self.source.as_deref().is_none_or(|s| *t.source == *s)
            && self.event.as_deref().is_none_or(|e| *t.event == *e)
            && self.program.as_deref().is_none_or(|p| t.program.name == p)
    }
}

pub struct TaskTable {
    tasks: DashMap<Uuid, Task>,
    /// Creation order (`Task::seq` → id).
    order: Mutex<BTreeMap<u64, Uuid>>,
    /// Finished tasks, oldest first, for eviction.
    finished: Mutex<VecDeque<Uuid>>,
    keep: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TaskTable {
    pub fn new(keep: usize) -> Self {
        TaskTable {
            tasks: DashMap::new(),
            order: Mutex::new(BTreeMap::new()),
            finished: Mutex::new(VecDeque::new()),
            keep,
        }
    }

    pub fn insert(&self, task: Task) {
        let (seq, id) = (task.seq, task.id);
        self.tasks.insert(id, task);
        lock(&self.order).insert(seq, id);
    }

    /// Runs `f` on the task, if it is still known. `f` must not block or await.
    pub fn with<R>(&self, id: &Uuid, f: impl FnOnce(&mut Task) -> R) -> Option<R> {
        self.tasks.get_mut(id).map(|mut t| f(&mut t))
    }

    pub fn view(&self, id: &Uuid) -> Option<TaskView> {
        self.tasks.get(id).map(|t| t.view())
    }

    /// Records that a task finished, and evicts the oldest finished tasks beyond `keep`.
    pub fn finished(&self, id: Uuid) {
        let evicted: Vec<Uuid> = {
            let mut finished = lock(&self.finished);
            finished.push_back(id);
            let excess = finished.len().saturating_sub(self.keep);
            finished.drain(..excess).collect()
        };
        for id in evicted {
            if let Some((_, task)) = self.tasks.remove(&id) {
                lock(&self.order).remove(&task.seq);
            }
        }
    }

    /// Tasks matching `filter`, newest first.
    pub fn list(&self, filter: &Filter) -> Vec<TaskView> {
        let before = match &filter.before {
            Some(id) => match self.tasks.get(id) {
                Some(t) => t.seq,
                None => return Vec::new(),
            },
            None => u64::MAX,
        };
        let ids: Vec<Uuid> = {
            let order = lock(&self.order);
            order
                .range(..before)
                .map(|(_, id)| id)
                .rev()
                .filter(|id| self.tasks.get(id).is_some_and(|t| filter.matches(&t)))
                .take(filter.limit)
                .copied()
                .collect()
        };
        ids.iter().filter_map(|id| self.view(id)).collect()
    }

    /// Removes a task from the table (the caller checked it is finished).
    pub fn remove(&self, id: &Uuid) -> bool {
        match self.tasks.remove(id) {
            Some((_, task)) => {
                lock(&self.order).remove(&task.seq);
                true
            }
            None => false,
        }
    }

    /// Evicts finished tasks that finished before `cutoff`.
    pub fn evict_finished_before(&self, cutoff: std::time::SystemTime) {
        loop {
            let oldest = lock(&self.finished).front().copied();
            let Some(id) = oldest else { break };
            let expired = match self.tasks.get(&id) {
                Some(t) => match &t.state {
                    super::task::TaskState::Finished { finished_at, .. } => *finished_at < cutoff,
                    _ => false,
                },
                None => true, // already removed
            };
            if !expired {
                break;
            }
            lock(&self.finished).pop_front();
            self.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}
