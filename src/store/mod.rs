//! The durable store: tasks, deliveries and their bodies, as typed records
//! ([`record`]), behind one interface that the engine, the delivery log and
//! the HTTP API use whatever the backend.
//!
//! A delivery's `202` waits for [`Store::commit`] (on disk, fsync'd, shared
//! with concurrent deliveries: group commit); status changes, output tails
//! and callback states go through [`Store::write`] and need no answer. Reads
//! decode every row into its record; a row that cannot be read is never
//! skipped silently: it is logged with its id, counted
//! ([`Store::unreadable`]), and shown by `/readyz` and `hookrunner db check`.
//!
//! The backend is SQLite ([`sqlite`]): one file, one writer thread.

pub mod record;
mod schema;
mod sqlite;

use bytes::Bytes;
use record::{DeliveryRecord, TaskRecord, Unreadable};
use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

pub use schema::VERSION as SCHEMA_VERSION;

/// Why the store refused: what it was doing, and the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {source}")]
pub struct StoreError {
    pub op: Cow<'static, str>,
    #[source]
    pub source: Arc<dyn std::error::Error + Send + Sync>,
}

/// A cause that is only a sentence.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Message(pub String);

impl StoreError {
    pub fn new(op: impl Into<Cow<'static, str>>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError {
            op: op.into(),
            source: Arc::new(source),
        }
    }

    pub fn message(op: impl Into<Cow<'static, str>>, text: impl Into<String>) -> Self {
        StoreError::new(op, Message(text.into()))
    }
}

/// What a task write does with the task's stored body (stdin for its handler).
#[derive(Debug, Clone)]
pub enum Body {
    /// Leave it as stored (a state change of a task that may still run).
    Keep,
    /// Store these bytes (a new task).
    Set(Bytes),
    /// Drop it (the task has finished).
    Drop,
}

/// One change to the store.
#[derive(Debug, Clone)]
pub enum Op {
    /// A task's record, and what happens to its body.
    PutTask(Box<TaskRecord>, Body),
    DeleteTask(Uuid),
    /// A delivery's record, and its kept body (`None`: keep what is stored).
    PutDelivery(Box<DeliveryRecord>, Option<Bytes>),
}

/// How much history the store keeps.
#[derive(Debug, Clone)]
pub struct Retention {
    pub tasks: usize,
    pub tasks_for: Duration,
    pub deliveries: usize,
    pub body_bytes: usize,
}

/// Which tasks a list wants, newest first.
#[derive(Debug, Default, Clone)]
pub struct TaskQuery {
    pub status: Option<crate::status::Status>,
    pub source: Option<String>,
    pub event: Option<String>,
    pub program: Option<String>,
    /// Only tasks created before the one with this sequence number.
    pub before_seq: Option<u64>,
    pub limit: usize,
}

/// Which deliveries a list wants, newest first.
#[derive(Debug, Default, Clone)]
pub struct DeliveryQuery {
    pub source: Option<String>,
    pub event: Option<String>,
    pub outcome: Option<crate::status::Outcome>,
    /// Only deliveries received before the one with this sequence number.
    pub before_seq: Option<u64>,
    pub limit: usize,
}

/// A delivery's key as remembered for dedup.
#[derive(Debug, Clone)]
pub struct RecentDelivery {
    pub source: String,
    pub delivery_id: String,
    pub record_id: String,
    pub received_ms: i64,
}

/// An unfinished task as stored: its record and its body.
pub type WithBody = (TaskRecord, Bytes);

/// What a read found: the records it could read, and the rows it could not.
pub type Found<T> = (Vec<T>, Vec<Unreadable>);

/// Called with the ids of tasks the store pruned (to delete their output files).
pub type OnPruned = Box<dyn Fn(&[Uuid]) + Send + Sync>;

#[derive(Clone)]
pub struct Store {
    backend: Arc<sqlite::Sqlite>,
    /// Rows that could not be read, as found by reads so far (the first 100).
    unreadable: Arc<Mutex<UnreadableLog>>,
}

#[derive(Default)]
struct UnreadableLog {
    count: usize,
    first: Vec<Unreadable>,
}

/// Milliseconds since the Unix epoch.
pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

impl Store {
    /// Opens (or creates) the SQLite store at `path`: checks it, migrates it, and starts the writer.
    pub fn open(path: &Path, retention: Retention, metrics: Arc<crate::metrics::Metrics>) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Arc::new(sqlite::Sqlite::open(path, retention, metrics)?),
            unreadable: Arc::default(),
        })
    }

    /// Where the store is, for logs and messages.
    pub fn describe(&self) -> String {
        format!("sqlite:{}", self.backend.path().display())
    }

    /// Whether the last write succeeded.
    pub fn healthy(&self) -> bool {
        self.backend.healthy()
    }

    pub fn last_error(&self) -> Option<String> {
        self.backend.last_error()
    }

    /// Writes `ops` and waits until they are on disk.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.backend.commit(ops).await
    }

    /// Writes `ops` in the next batch, without waiting.
    pub fn write(&self, ops: Vec<Op>) {
        self.backend.write(ops)
    }

    /// Flushes every pending write and stops the writer.
    pub fn close(&self) {
        self.backend.close()
    }

    /// Sets what is told of pruned tasks.
    pub fn on_pruned(&self, f: OnPruned) {
        self.backend.on_pruned(f)
    }

    /// Keeps the records that decode; logs and counts the rest.
    fn readable<T>(&self, rows: Vec<Result<T, Unreadable>>) -> Vec<T> {
        rows.into_iter()
            .filter_map(|r| r.map_err(|u| self.note_unreadable(u)).ok())
            .collect()
    }

    fn note_unreadable(&self, u: Unreadable) {
        let mut log = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
        if log.first.contains(&u) {
            return;
        }
        tracing::error!(table = u.table, id = %u.id, error = %u.error, "a stored row cannot be read; it is left as it is (see `hookrunner db check`)");
        log.count += 1;
        if log.first.len() < 100 {
            log.first.push(u);
        }
    }

    /// How many stored rows reads have found unreadable, and the first of them.
    pub fn unreadable(&self) -> (usize, Vec<Unreadable>) {
        let log = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
        (log.count, log.first.clone())
    }

    pub fn list_tasks(&self, q: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
        Ok(self.readable(self.backend.list_tasks(q)?))
    }

    /// A task's sequence number (a paging cursor), if it is stored.
    pub fn task_seq(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        self.backend.task_seq(id)
    }

    pub fn task(&self, id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.readable(self.backend.task(id)?.into_iter().collect()).pop())
    }

    /// Tasks that had not finished, oldest first, with their bodies (for
    /// recovery), and the rows among them that could not be read.
    pub fn unfinished_tasks(&self) -> Result<Found<WithBody>, StoreError> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for row in self.backend.unfinished_tasks()? {
            match row {
                Ok(r) => ok.push(r),
                Err(u) => {
                    self.note_unreadable(u.clone());
                    bad.push(u);
                }
            }
        }
        Ok((ok, bad))
    }

    /// Finished tasks whose callbacks were not all delivered.
    pub fn tasks_with_pending_callbacks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        Ok(self.readable(self.backend.tasks_with_pending_callbacks()?))
    }

    pub fn max_task_seq(&self) -> Result<u64, StoreError> {
        self.backend.max_task_seq()
    }

    /// Every stored task id (to find output files nobody owns).
    pub fn task_ids(&self) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        self.backend.task_ids()
    }

    pub fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<DeliveryRecord>, StoreError> {
        Ok(self.readable(self.backend.list_deliveries(q)?))
    }

    /// A delivery's sequence number (a paging cursor), if it is stored.
    pub fn delivery_seq(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.backend.delivery_seq(id)
    }

    /// A delivery's record and kept body.
    pub fn delivery(&self, id: &str) -> Result<Option<(DeliveryRecord, Option<Bytes>)>, StoreError> {
        Ok(self.readable(self.backend.delivery(id)?.into_iter().collect()).pop())
    }

    /// Delivery keys seen since `since` (to refill the dedup window after a restart).
    pub fn recent_deliveries(&self, since: SystemTime) -> Result<Vec<RecentDelivery>, StoreError> {
        self.backend.recent_deliveries(since)
    }
}

/// `hookrunner db check`: what a full check of the store at `path` found.
#[derive(Debug)]
pub struct CheckReport {
    /// SQLite's `integrity_check` lines (`ok` when fine).
    pub integrity: Vec<String>,
    pub schema_version: i64,
    pub tasks: usize,
    pub deliveries: usize,
    /// Rows whose record cannot be read.
    pub unreadable: Vec<Unreadable>,
    /// Rows the migration to typed records could not convert.
    pub quarantined: usize,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.integrity == ["ok"] && self.schema_version <= SCHEMA_VERSION && self.unreadable.is_empty()
    }
}

/// Checks the store file at `path` without changing it: SQLite's integrity
/// check, the schema version, and that every row's record can be read.
pub fn check(path: &Path) -> Result<CheckReport, StoreError> {
    sqlite::check(path)
}
