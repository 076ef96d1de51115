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
//! The backend is SQLite ([`sqlite`]: one file, one writer thread, one
//! node) or PostgreSQL ([`postgres`]: shared by the nodes of a cluster).

pub mod copy;
pub mod postgres;
pub mod record;
mod schema;
pub mod sqlite;

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
#[error("{op}: {}", causes(&**source))]
pub struct StoreError {
    pub op: Cow<'static, str>,
    #[source]
    pub source: Arc<dyn std::error::Error + Send + Sync>,
}

/// An error and its causes, `a: b: c`, each cause left out when the text
/// before already says it (many errors repeat their source's words).
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

/// Whether a PostgreSQL URL's TLS settings (`sslmode`, `sslrootcert`) make
/// sense: the sentence that says why not. The URL is not repeated.
pub fn check_postgres_url(url: &str) -> Result<(), String> {
    postgres::tls::split(url).map(|_| ())
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
    /// Records of deliveries that passed their source's auth.
    pub deliveries: usize,
    /// Records of deliveries refused before or at auth (`outcome = 'refused'`).
    pub refused: usize,
    pub body_bytes: usize,
}

/// A list's rows as read, each with its sequence number, newest first.
pub type Rows<T> = Vec<(u64, Result<T, Unreadable>)>;

/// One page of a list, newest first.
#[derive(Debug)]
pub struct Page<T> {
    pub rows: Vec<T>,
    /// When the page was full: the sequence number of the oldest row read,
    /// from which the next page goes on (`before_seq`); `None` at the end.
    pub next_seq: Option<u64>,
}

/// Which tasks a list wants, newest first.
#[derive(Debug, Default, Clone)]
pub struct TaskQuery {
    pub status: Option<crate::status::Status>,
    pub source: Option<String>,
    pub event: Option<String>,
    pub program: Option<String>,
    /// Only tasks run by this node (a cluster's store).
    pub node: Option<String>,
    /// Only tasks whose id (lower-case, hyphenated) starts with this.
    pub id_prefix: Option<String>,
    /// Only tasks created before the one with this sequence number.
    pub before_seq: Option<u64>,
    pub limit: usize,
}

/// The ids a prefix of a hyphenated id covers, as the lowest and highest of
/// them: a range an index on the id answers.
pub fn id_range(prefix: &str) -> (String, String) {
    const SHAPE: &str = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    let fill = |c: char| -> String {
        let rest = &SHAPE[prefix.len().min(SHAPE.len())..];
        let tail: String = rest.chars().map(|s| if s == '-' { '-' } else { c }).collect();
        format!("{prefix}{tail}")
    };
    (fill('0'), fill('f'))
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
    backend: Backend,
    /// Rows that could not be read, as found by reads so far (the first 100).
    unreadable: Arc<Mutex<UnreadableLog>>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<sqlite::Sqlite>),
    Postgres(Arc<postgres::Postgres>),
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
        Ok(Store::with(Backend::Sqlite(Arc::new(sqlite::Sqlite::open(
            path, retention, metrics,
        )?))))
    }

    /// Connects to the PostgreSQL database at `url` (a cluster's shared
    /// store), migrates it once, and starts the writer on `rt`.
    pub fn open_postgres(
        url: &crate::secret::SecretUrl,
        connections: usize,
        rt: tokio::runtime::Handle,
        retention: Retention,
    ) -> Result<Store, StoreError> {
        Ok(Store::with(Backend::Postgres(Arc::new(postgres::Postgres::open(
            url,
            connections,
            rt,
            retention,
        )?))))
    }

    fn with(backend: Backend) -> Store {
        Store {
            backend,
            unreadable: Arc::default(),
        }
    }

    /// The SQLite backend, if that is this store's.
    pub fn sqlite(&self) -> Option<&sqlite::Sqlite> {
        match &self.backend {
            Backend::Sqlite(s) => Some(s),
            Backend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL backend (a cluster's), if that is this store's.
    pub fn postgres(&self) -> Option<&Arc<postgres::Postgres>> {
        match &self.backend {
            Backend::Postgres(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }

    /// Where the store is, for logs and messages (a password masked).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(s) => format!("sqlite:{}", s.path().display()),
            Backend::Postgres(p) => p.describe(),
        }
    }

    /// Whether the last write succeeded.
    pub fn healthy(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(s) => s.healthy(),
            Backend::Postgres(p) => p.healthy(),
        }
    }

    pub fn last_error(&self) -> Option<String> {
        match &self.backend {
            Backend::Sqlite(s) => s.last_error(),
            Backend::Postgres(p) => p.last_error(),
        }
    }

    /// Writes `ops` and waits until they are on disk.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.commit(ops).await,
            Backend::Postgres(p) => p.commit(ops).await,
        }
    }

    /// Writes `ops` in the next batch, without waiting.
    pub fn write(&self, ops: Vec<Op>) {
        match &self.backend {
            Backend::Sqlite(s) => s.write(ops),
            Backend::Postgres(p) => p.write(ops),
        }
    }

    /// Flushes every pending write and stops the writer.
    pub fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close(),
            Backend::Postgres(p) => p.close(),
        }
    }

    /// Sets what is told of pruned tasks (SQLite: the only node deletes their output files).
    pub fn on_pruned(&self, f: OnPruned) {
        if let Backend::Sqlite(s) = &self.backend {
            s.on_pruned(f)
        }
    }

    /// Keeps the records that decode; logs and counts the rest.
    /// A list's readable rows, and where the next page starts when more
    /// rows follow this one (`rows` holds one more than the page when they
    /// do: the lists ask for `limit + 1`; unreadable rows count, they were read).
    fn page<T>(&self, mut rows: Rows<T>, limit: usize) -> Page<T> {
        let next_seq = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|(seq, _)| *seq)
        } else {
            None
        };
        Page {
            rows: self.readable(rows.into_iter().map(|(_, r)| r).collect()),
            next_seq,
        }
    }

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

    /// Reads every stored task and delivery once, so that a row that cannot
    /// be read is logged with its id and counted (`/readyz`) at the start,
    /// not only when a read comes across it. SQLite only (a cluster's
    /// database is every node's: `hookrunner db check` reads it). Returns
    /// how many rows were read and how many of them were unreadable.
    pub fn scan(&self) -> Result<(usize, usize), StoreError> {
        let Backend::Sqlite(s) = &self.backend else {
            return Ok((0, 0));
        };
        let (tasks, deliveries, unreadable) = sqlite::unreadable_rows(s.path())?;
        let bad = unreadable.len();
        for u in unreadable {
            self.note_unreadable(u);
        }
        Ok((tasks + deliveries, bad))
    }

    /// How many stored rows reads have found unreadable, and the first of them.
    pub fn unreadable(&self) -> (usize, Vec<Unreadable>) {
        let log = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
        (log.count, log.first.clone())
    }

    /// Runs a blocking SQLite read on the blocking pool.
    async fn blocking<R: Send + 'static>(
        s: &Arc<sqlite::Sqlite>,
        f: impl FnOnce(&sqlite::Sqlite) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let s = s.clone();
        tokio::task::spawn_blocking(move || f(&s))
            .await
            .unwrap_or_else(|e| Err(StoreError::new("read", e)))
    }

    pub async fn list_tasks(&self, q: &TaskQuery) -> Result<Page<TaskRecord>, StoreError> {
        let limit = q.limit;
        let mut q = q.clone();
        q.limit = limit.saturating_add(1);
        let rows = match &self.backend {
            Backend::Sqlite(s) => Store::blocking(s, move |s| s.list_tasks(&q)).await?,
            Backend::Postgres(p) => p.list_tasks(&q).await?,
        };
        Ok(self.page(rows, limit))
    }

    /// A task's sequence number (a paging cursor), if it is stored.
    pub async fn task_seq(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => Store::blocking(s, move |s| s.task_seq(id)).await,
            Backend::Postgres(p) => p.task_seq(id).await,
        }
    }

    pub async fn task(&self, id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
        let row = match &self.backend {
            Backend::Sqlite(s) => Store::blocking(s, move |s| s.task(id)).await?,
            Backend::Postgres(p) => p.task(id).await?,
        };
        Ok(self.readable(row.into_iter().collect()).pop())
    }

    /// Tasks that had not finished, oldest first, with their bodies (SQLite's
    /// recovery), and the rows among them that could not be read.
    pub fn unfinished_tasks(&self) -> Result<Found<WithBody>, StoreError> {
        let Backend::Sqlite(s) = &self.backend else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for row in s.unfinished_tasks()? {
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

    /// Finished tasks whose callbacks were not all delivered (SQLite's recovery).
    pub fn tasks_with_pending_callbacks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(self.readable(s.tasks_with_pending_callbacks()?)),
            Backend::Postgres(_) => Ok(Vec::new()),
        }
    }

    /// The highest task sequence number stored (SQLite's recovery).
    pub fn max_task_seq(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.max_task_seq(),
            Backend::Postgres(_) => Ok(0),
        }
    }

    /// Every stored task id (to find output files nobody owns; SQLite).
    pub fn task_ids(&self) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.task_ids(),
            Backend::Postgres(_) => Ok(Default::default()),
        }
    }

    /// Deliveries, each with whether its body is still kept (for replay).
    pub async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Page<(DeliveryRecord, bool)>, StoreError> {
        let limit = q.limit;
        let mut q = q.clone();
        q.limit = limit.saturating_add(1);
        let rows = match &self.backend {
            Backend::Sqlite(s) => Store::blocking(s, move |s| s.list_deliveries(&q)).await?,
            Backend::Postgres(p) => p.list_deliveries(&q).await?,
        };
        Ok(self.page(rows, limit))
    }

    /// A delivery's sequence number (a paging cursor), if it is stored.
    pub async fn delivery_seq(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let id = id.to_string();
        match &self.backend {
            Backend::Sqlite(s) => Store::blocking(s, move |s| s.delivery_seq(&id)).await,
            Backend::Postgres(p) => p.delivery_seq(&id).await,
        }
    }

    /// A delivery's record and kept body.
    pub async fn delivery(&self, id: &str) -> Result<Option<(DeliveryRecord, Option<Bytes>)>, StoreError> {
        let id = id.to_string();
        let row = match &self.backend {
            Backend::Sqlite(s) => Store::blocking(s, move |s| s.delivery(&id)).await?,
            Backend::Postgres(p) => p.delivery(&id).await?,
        };
        Ok(self.readable(row.into_iter().collect()).pop())
    }

    /// Delivery keys seen since `since` (to refill the dedup window after a restart; SQLite).
    pub fn recent_deliveries(&self, since: SystemTime) -> Result<Vec<RecentDelivery>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.recent_deliveries(since),
            Backend::Postgres(_) => Ok(Vec::new()),
        }
    }
}

/// `hookrunner db check`: what a full check of the store at `path` found.
#[derive(Debug)]
pub struct CheckReport {
    /// SQLite's `integrity_check` lines (`ok` when fine); none for PostgreSQL,
    /// which keeps its own.
    pub integrity: Vec<String>,
    pub schema_version: i64,
    /// The schema version this hookrunner writes for that kind of store.
    pub ours: i64,
    pub tasks: usize,
    pub deliveries: usize,
    /// Rows whose record cannot be read.
    pub unreadable: Vec<Unreadable>,
    /// Rows the migration to typed records could not convert.
    pub quarantined: usize,
    /// Tables of a database at schema version 0 that hookrunner does not
    /// make: another program's file, not an empty store.
    pub foreign_tables: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.intact() && self.known_version() && self.foreign_tables.is_empty() && self.unreadable.is_empty()
    }

    /// Whether the schema version is one some hookrunner writes (0 to ours).
    pub fn known_version(&self) -> bool {
        (0..=self.ours).contains(&self.schema_version)
    }

    /// Whether the database itself is sound (SQLite's integrity check).
    pub fn intact(&self) -> bool {
        self.integrity.is_empty() || self.integrity == ["ok"]
    }

    /// Whether a newer hookrunner wrote it (this one cannot read it).
    pub fn newer(&self) -> bool {
        self.schema_version > self.ours
    }
}

/// Checks the store file at `path` without changing it: SQLite's integrity
/// check, the schema version, and that every row's record can be read.
pub fn check(path: &Path) -> Result<CheckReport, StoreError> {
    sqlite::check(path)
}

/// The same for a cluster's PostgreSQL database (its schema version is its
/// own, [`postgres::SCHEMA_VERSION`]).
pub fn check_postgres(url: &crate::secret::SecretUrl) -> Result<CheckReport, StoreError> {
    postgres::check(url)
}
