//! The durable store: SQLite (WAL, fsync on commit) behind a single writer
//! thread that commits in batches, so many concurrent deliveries share one
//! fsync and no runtime thread ever waits on the disk.
//!
//! A delivery's `202` waits for [`Store::commit`]; status changes, output and
//! callback states are written with [`Store::write`] and need no answer.
//! Reads use their own connection (WAL lets them run beside the writer).

mod schema;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Why the store refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// A task as stored: indexed columns plus the task's JSON.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: String,
    pub seq: i64,
    pub source: String,
    pub event: String,
    pub program: String,
    pub status: String,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    pub callbacks_pending: bool,
    pub data: String,
    /// The body for stdin, kept while the task may still run.
    pub body: Option<Vec<u8>>,
}

/// A delivery record as stored.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: String,
    pub delivery_id: String,
    pub source: String,
    pub event: Option<String>,
    pub outcome: String,
    pub received_ms: i64,
    pub data: String,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub enum Op {
    PutTask(TaskRow),
    DeleteTask(String),
    PutDelivery(DeliveryRow),
}

/// A row's JSON and its kept body.
pub type WithBody = (String, Option<Vec<u8>>);

/// How much history the store keeps.
#[derive(Debug, Clone)]
pub struct Retention {
    pub tasks: usize,
    pub tasks_for: Duration,
    pub deliveries: usize,
    pub body_bytes: usize,
}

enum Cmd {
    Write(Vec<Op>, Option<oneshot::Sender<Result<(), StoreError>>>),
    /// Flush everything and stop.
    Close(std::sync::mpsc::Sender<()>),
}

/// Filters for listing, with a `before` cursor (a row's id).
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub status: Option<String>,
    pub source: Option<String>,
    pub event: Option<String>,
    pub program: Option<String>,
    pub outcome: Option<String>,
    pub before: Option<String>,
    pub limit: usize,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
    reader: Mutex<Connection>,
}

/// Milliseconds since the Unix epoch.
pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError(format!(
            "cannot open the store `{}`: {e}. If the file is damaged, run `hookrunner db check`, or move it aside to start with an empty store",
            path.display()
        ))
    })?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    Ok(conn)
}

impl Store {
    /// Opens (or creates) the store at `path`: checks it, migrates it, and starts the writer.
    pub fn open(path: &Path, retention: Retention, metrics: Arc<crate::metrics::Metrics>) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("cannot create the store's directory `{}`: {e}", dir.display())))?;
        }
        let mut conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        check(&conn, path)?;
        // auto_vacuum only takes effect on an empty file; set it before the first table.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        schema::migrate(&mut conn).map_err(|e| StoreError(format!("store `{}`: {e}", path.display())))?;
        let reader = open_conn(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            tx: Mutex::new(Some(tx)),
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            reader: Mutex::new(reader),
        });
        let writer = Writer {
            conn,
            inner: inner.clone(),
            retention,
            backlog: Vec::new(),
            metrics,
        };
        std::thread::Builder::new()
            .name("hookrunner-store".into())
            .spawn(move || writer.run(rx))
            .map_err(err)?;
        Ok(Store { inner })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether the last write succeeded.
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.inner.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn send(&self, cmd: Cmd) -> bool {
        match self.inner.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(tx) => tx.send(cmd).is_ok(),
            None => false,
        }
    }

    /// Writes `ops` and waits until they are on disk (fsync'd).
    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        if !self.send(Cmd::Write(ops, Some(tx))) {
            return Err(StoreError("the store is closed".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError("the store writer stopped".into())))
    }

    /// Writes `ops` in the next batch, without waiting.
    pub fn write(&self, ops: Vec<Op>) {
        self.send(Cmd::Write(ops, None));
    }

    /// Flushes every pending write and stops the writer.
    pub fn close(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.send(Cmd::Close(tx)) {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
        self.inner.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, StoreError> {
        let conn = self.inner.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(err)
    }

    /// Tasks as JSON, newest first.
    pub fn list_tasks(&self, q: &Query) -> Result<Vec<String>, StoreError> {
        let filters = [
            ("status", &q.status),
            ("source", &q.source),
            ("event", &q.event),
            ("program", &q.program),
        ];
        self.read(|c| list(c, "tasks", &filters, q))
    }

    pub fn task(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            c.query_row("SELECT data FROM tasks WHERE id = ?", [id], |r| r.get(0))
                .optional()
        })
    }

    /// Tasks that had not finished, oldest first, with their bodies (for recovery).
    pub fn unfinished_tasks(&self) -> Result<Vec<WithBody>, StoreError> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT data, body FROM tasks WHERE status IN ('queued', 'running') ORDER BY seq")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Finished tasks whose callbacks were not all delivered.
    pub fn tasks_with_pending_callbacks(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT data FROM tasks WHERE callbacks_pending = 1 ORDER BY seq")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    pub fn max_task_seq(&self) -> Result<i64, StoreError> {
        self.read(|c| c.query_row("SELECT COALESCE(MAX(seq), 0) FROM tasks", [], |r| r.get(0)))
    }

    /// Deliveries as JSON, newest first.
    pub fn list_deliveries(&self, q: &Query) -> Result<Vec<String>, StoreError> {
        let filters = [("source", &q.source), ("event", &q.event), ("outcome", &q.outcome)];
        self.read(|c| list(c, "deliveries", &filters, q))
    }

    /// A delivery's JSON and kept body.
    pub fn delivery(&self, id: &str) -> Result<Option<WithBody>, StoreError> {
        self.read(|c| {
            c.query_row("SELECT data, body FROM deliveries WHERE id = ?", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
    }

    /// Delivery keys seen since `since` (to refill the dedup window after a restart).
    pub fn recent_deliveries(&self, since: SystemTime) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT source, delivery_id, id, received_ms FROM deliveries
                 WHERE received_ms >= ? AND outcome IN ('accepted', 'ignored') ORDER BY seq",
            )?;
            let rows = stmt.query_map([millis(since)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect()
        })
    }
}

/// Rows of `table` (`data`, newest first) matching the given column filters,
/// before the row whose id is `q.before`. Column names are ours, never input.
fn list(c: &Connection, table: &str, filters: &[(&str, &Option<String>)], q: &Query) -> rusqlite::Result<Vec<String>> {
    let before = match &q.before {
        Some(id) => c
            .query_row(&format!("SELECT seq FROM {table} WHERE id = ?"), [id], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(-1),
        None => i64::MAX,
    };
    let mut sql = format!("SELECT data FROM {table} WHERE seq < ?1");
    let mut args: Vec<&String> = Vec::new();
    for (col, value) in filters {
        if let Some(v) = value {
            args.push(v);
            sql.push_str(&format!(" AND {col} = ?{}", args.len() + 1));
        }
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", q.limit));
    let mut stmt = c.prepare_cached(&sql)?;
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&before];
    values.extend(args.iter().map(|a| *a as &dyn rusqlite::ToSql));
    let rows = stmt.query_map(values.as_slice(), |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// Refuses a file that is not a database or is damaged.
fn check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let result: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| {
        StoreError(format!(
            "the store `{}` is not a readable hookrunner database ({e}). Move it aside (e.g. `mv {0} {0}.broken`) to start with an empty store, or inspect it with `hookrunner db check`",
            path.display()
        ))
    })?;
    if result != "ok" {
        return Err(StoreError(format!(
            "the store `{}` is damaged ({result}). Move it aside to start with an empty store; `hookrunner db check` prints the details",
            path.display()
        )));
    }
    Ok(())
}

/// `hookrunner db check`: the integrity check's report, and whether it passed.
pub fn integrity_check(path: &Path) -> Result<(bool, Vec<String>), StoreError> {
    let conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(err)?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let ok = lines == ["ok"];
    let mut report = lines;
    report.push(format!(
        "schema version {version} (this hookrunner writes {})",
        schema::VERSION
    ));
    Ok((ok && version <= schema::VERSION, report))
}

struct Writer {
    conn: Connection,
    inner: Arc<Inner>,
    retention: Retention,
    /// Unacknowledged writes that failed, tried again with the next batch.
    backlog: Vec<Op>,
    metrics: Arc<crate::metrics::Metrics>,
}

const MAX_BATCH: usize = 1024;
const MAX_BACKLOG: usize = 100_000;
const PRUNE_EVERY: Duration = Duration::from_secs(10);

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut last_prune = Instant::now();
        loop {
            // While unhealthy, wake up to probe the disk even when nothing arrives.
            let first = if self.inner.healthy.load(Ordering::Relaxed) {
                match rx.recv_timeout(PRUNE_EVERY) {
                    Ok(cmd) => Some(cmd),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv_timeout(Duration::from_millis(500)) {
                    Ok(cmd) => Some(cmd),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            };
            // Each op with whether someone waits for it (then a failure is answered, not retried).
            let mut ops: Vec<(Op, bool)> = std::mem::take(&mut self.backlog)
                .into_iter()
                .map(|o| (o, false))
                .collect();
            let mut acks = Vec::new();
            let mut close = None;
            let mut add = |cmd: Cmd, ops: &mut Vec<(Op, bool)>, acks: &mut Vec<_>| match cmd {
                Cmd::Write(o, ack) => {
                    let acked = ack.is_some();
                    acks.extend(ack);
                    ops.extend(o.into_iter().map(|op| (op, acked)));
                }
                Cmd::Close(done) => close = Some(done),
            };
            if let Some(cmd) = first {
                add(cmd, &mut ops, &mut acks);
            }
            while ops.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(cmd) => add(cmd, &mut ops, &mut acks),
                    Err(_) => break,
                }
            }
            let result = if ops.is_empty() && self.inner.healthy.load(Ordering::Relaxed) {
                Ok(())
            } else {
                let started = Instant::now();
                let result = self.apply(&ops);
                self.metrics.store_written(started.elapsed());
                result
            };
            match &result {
                Ok(()) => {
                    if !self.inner.healthy.swap(true, Ordering::Relaxed) {
                        tracing::info!(store = %self.inner.path.display(), "the store accepts writes again");
                    }
                }
                Err(e) => {
                    if self.inner.healthy.swap(false, Ordering::Relaxed) {
                        tracing::error!(store = %self.inner.path.display(), error = %e, "the store cannot write: deliveries are refused with 503 until it can");
                    }
                    *self.inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.0.clone());
                    // Keep what nobody waits for; the acknowledged ones are answered 503.
                    self.backlog = ops
                        .into_iter()
                        .filter(|(_, acked)| !acked)
                        .map(|(o, _)| o)
                        .take(MAX_BACKLOG)
                        .collect();
                }
            }
            for ack in acks {
                let _ = ack.send(result.clone());
            }
            if result.is_ok() && last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                if let Err(e) = self.prune() {
                    tracing::warn!(error = %e, "pruning the store failed");
                }
            }
            if let Some(done) = close {
                let _ = done.send(());
                break;
            }
        }
    }

    fn apply(&mut self, ops: &[(Op, bool)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut put_task = tx
                .prepare_cached(
                    "INSERT INTO tasks (id, seq, source, event, program, status, created_ms, finished_ms, callbacks_pending, data, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT(id) DO UPDATE SET status = excluded.status, finished_ms = excluded.finished_ms,
                       callbacks_pending = excluded.callbacks_pending, data = excluded.data, body = excluded.body",
                )
                .map_err(err)?;
            let mut put_delivery = tx
                .prepare_cached(
                    "INSERT INTO deliveries (id, delivery_id, source, event, outcome, received_ms, data, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(id) DO UPDATE SET outcome = excluded.outcome, data = excluded.data,
                       body = COALESCE(excluded.body, deliveries.body)",
                )
                .map_err(err)?;
            let mut delete_task = tx.prepare_cached("DELETE FROM tasks WHERE id = ?").map_err(err)?;
            for (op, _) in ops {
                match op {
                    Op::PutTask(t) => put_task
                        .execute(params![
                            t.id,
                            t.seq,
                            t.source,
                            t.event,
                            t.program,
                            t.status,
                            t.created_ms,
                            t.finished_ms,
                            t.callbacks_pending,
                            t.data,
                            t.body
                        ])
                        .map(|_| ())
                        .map_err(err)?,
                    Op::PutDelivery(d) => put_delivery
                        .execute(params![
                            d.id,
                            d.delivery_id,
                            d.source,
                            d.event,
                            d.outcome,
                            d.received_ms,
                            d.data,
                            d.body
                        ])
                        .map(|_| ())
                        .map_err(err)?,
                    Op::DeleteTask(id) => delete_task.execute([id]).map(|_| ()).map_err(err)?,
                }
            }
        }
        tx.commit().map_err(err)
    }

    /// Drops tasks beyond `tasks.keep` or older than `tasks.keep_for`, deliveries
    /// beyond `deliveries.keep`, bodies beyond `deliveries.body_bytes`; then gives
    /// freed pages back to the file system a little at a time.
    fn prune(&mut self) -> Result<(), StoreError> {
        let r = &self.retention;
        let cutoff = millis(SystemTime::now()) - r.tasks_for.as_millis() as i64;
        let c = &self.conn;
        c.execute(
            "DELETE FROM tasks WHERE finished_ms IS NOT NULL AND (finished_ms < ?1 OR seq <= (SELECT seq FROM tasks ORDER BY seq DESC LIMIT 1 OFFSET ?2))",
            params![cutoff, r.tasks as i64],
        )
        .map_err(err)?;
        c.execute(
            "DELETE FROM deliveries WHERE seq <= (SELECT seq FROM deliveries ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
            params![r.deliveries as i64],
        )
        .map_err(err)?;
        // Bodies: keep the newest up to the byte budget.
        c.execute(
            "UPDATE deliveries SET body = NULL WHERE body IS NOT NULL AND seq < (
                SELECT COALESCE(MIN(seq), 0) FROM (
                    SELECT seq, SUM(LENGTH(body)) OVER (ORDER BY seq DESC) AS total
                    FROM deliveries WHERE body IS NOT NULL
                ) WHERE total <= ?1)",
            params![r.body_bytes as i64],
        )
        .map_err(err)?;
        c.execute_batch("PRAGMA incremental_vacuum(2000);").map_err(err)?;
        Ok(())
    }
}
