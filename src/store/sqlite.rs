//! The SQLite backend: one file (WAL, `synchronous=FULL`) behind a single
//! writer thread that commits in batches, so many concurrent deliveries
//! share one fsync and no runtime thread ever waits on the disk. Reads use
//! their own connection (WAL lets them run beside the writer).

use super::record::{decode, encode, CallbackStatus, DeliveryRecord, StateRecord, TaskRecord, Unreadable};
use super::{
    millis, schema, Body, CheckReport, DeliveryQuery, OnPruned, Op, RecentDelivery, Retention, StoreError, TaskQuery,
};
use crate::status::Outcome;
use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;
use uuid::Uuid;

fn err(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::new(op, e)
}

type Ack = oneshot::Sender<Result<(), StoreError>>;

enum Cmd {
    Write(Vec<Op>, Option<Ack>),
    /// Flush everything and stop.
    Close(mpsc::Sender<()>),
}

pub struct Sqlite {
    path: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    shared: Arc<Shared>,
    reader: Mutex<Connection>,
}

/// What the writer thread and the handle share.
struct Shared {
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
    on_pruned: Mutex<Option<OnPruned>>,
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError::new(
            format!(
                "cannot open the store `{}` (if the file is damaged, run `hookrunner db check`, or move it aside to start with an empty store)",
                path.display()
            ),
            e,
        )
    })?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(err("set the busy timeout"))?;
    Ok(conn)
}

/// Refuses a file that is not a database or is damaged.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let result: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| {
            StoreError::new(
                format!(
                    "the store `{0}` is not a readable hookrunner database. Move it aside with its `-wal` and `-shm` files (e.g. `mv {0} {0}.broken`, `mv {0}-wal {0}.broken-wal`) to start with an empty store, or inspect it with `hookrunner db check`",
                    path.display()
                ),
                e,
            )
        })?;
    if result != "ok" {
        return Err(StoreError::message(
            format!("open the store `{}`", path.display()),
            format!("the file is damaged ({result}). Move it aside to start with an empty store; `hookrunner db check` prints the details"),
        ));
    }
    Ok(())
}

impl Sqlite {
    pub fn open(
        path: &Path,
        retention: Retention,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Sqlite, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::new(format!("cannot create the store's directory `{}`", dir.display()), e))?;
        }
        let mut conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        quick_check(&conn, path)?;
        // auto_vacuum only takes effect on an empty file; set it before the first table.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(err("set auto_vacuum"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err("set journal_mode"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("set synchronous"))?;
        schema::migrate(&mut conn)
            .map_err(|e| StoreError::new(format!("migrate the store `{}`", path.display()), e))?;
        let reader = open_conn(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            on_pruned: Mutex::new(None),
        });
        let writer = Writer {
            conn,
            path: path.to_path_buf(),
            shared: shared.clone(),
            retention,
            backlog: Vec::new(),
            metrics,
        };
        std::thread::Builder::new()
            .name("hookrunner-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::new("start the store's writer thread", e))?;
        Ok(Sqlite {
            path: path.to_path_buf(),
            tx: Mutex::new(Some(tx)),
            shared,
            reader: Mutex::new(reader),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn on_pruned(&self, f: OnPruned) {
        *self.shared.on_pruned.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    fn send(&self, cmd: Cmd) -> bool {
        match self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(tx) => tx.send(cmd).is_ok(),
            None => false,
        }
    }

    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        if !self.send(Cmd::Write(ops, Some(tx))) {
            return Err(StoreError::message("commit", "the store is closed"));
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::message("commit", "the store's writer stopped")))
    }

    pub fn write(&self, ops: Vec<Op>) {
        self.send(Cmd::Write(ops, None));
    }

    pub fn close(&self) {
        let (tx, rx) = mpsc::channel();
        if self.send(Cmd::Close(tx)) {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn read<R>(&self, op: &'static str, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(err(op))
    }

    pub fn list_tasks(&self, q: &TaskQuery) -> Result<super::Rows<TaskRecord>, StoreError> {
        if q.node.is_some() {
            // A SQLite store is one node's, outside any cluster: its tasks have no node.
            return Ok(Vec::new());
        }
        let (low, high) = match &q.id_prefix {
            Some(p) => {
                let (low, high) = super::id_range(p);
                (Some(low), Some(high))
            }
            None => (None, None),
        };
        let filters = [
            ("status = ", q.status.map(|s| s.as_str().to_string())),
            ("source = ", q.source.clone()),
            ("event = ", q.event.clone()),
            ("program = ", q.program.clone()),
            ("id >= ", low),
            ("id <= ", high),
        ];
        let rows = self.read("list tasks", |c| list(c, "tasks", "0", &filters, q.before_seq, q.limit))?;
        Ok(rows
            .into_iter()
            .map(|(id, data, seq, _)| (seq, decode_task(id, data)))
            .collect())
    }

    pub fn task_seq(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        self.read("find a task", |c| {
            c.query_row("SELECT seq FROM tasks WHERE id = ?", [id.to_string()], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
        })
        .map(|s| s.map(|s| s as u64))
    }

    pub fn task(&self, id: Uuid) -> Result<Option<Result<TaskRecord, Unreadable>>, StoreError> {
        let key = id.to_string();
        let row: Option<Data> = self.read("read a task", |c| {
            c.query_row("SELECT data FROM tasks WHERE id = ?", [&key], |r| r.get(0))
                .optional()
        })?;
        Ok(row.map(|data| decode_task(Id(key), data)))
    }

    pub fn unfinished_tasks(&self) -> Result<Vec<Result<super::WithBody, Unreadable>>, StoreError> {
        let rows: Vec<(Id, Data, BodyCell)> = self.read("read unfinished tasks", |c| {
            let mut stmt =
                c.prepare("SELECT id, data, body FROM tasks WHERE status IN ('queued', 'running') ORDER BY seq")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .map(|(Id(id), data, BodyCell(body))| match body {
                Ok(body) => decode_task(Id(id), data).map(|r| (r, Bytes::from(body.unwrap_or_default()))),
                Err(error) => Err(Unreadable {
                    table: "tasks",
                    id,
                    error,
                }),
            })
            .collect())
    }

    pub fn tasks_with_pending_callbacks(&self) -> Result<Vec<Result<TaskRecord, Unreadable>>, StoreError> {
        let rows: Vec<(Id, Data)> = self.read("read tasks with pending callbacks", |c| {
            let mut stmt = c.prepare("SELECT id, data FROM tasks WHERE callbacks_pending = 1 ORDER BY seq")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        Ok(rows.into_iter().map(|(id, data)| decode_task(id, data)).collect())
    }

    pub fn max_task_seq(&self) -> Result<u64, StoreError> {
        self.read("read the last task number", |c| {
            c.query_row("SELECT COALESCE(MAX(seq), 0) FROM tasks", [], |r| r.get::<_, i64>(0))
        })
        .map(|s| s.max(0) as u64)
    }

    pub fn task_ids(&self) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        let ids: Vec<String> = self.read("read task ids", |c| {
            let mut stmt = c.prepare("SELECT id FROM tasks")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// Deliveries, each with whether its body is still kept (for replay).
    pub fn list_deliveries(&self, q: &DeliveryQuery) -> Result<super::Rows<(DeliveryRecord, bool)>, StoreError> {
        let filters = [
            ("source", q.source.clone()),
            ("event", q.event.clone()),
            ("outcome", q.outcome.map(|o| o.as_str().to_string())),
        ];
        let rows = self.read("list deliveries", |c| {
            list(c, "deliveries", "length(body) > 0", &filters, q.before_seq, q.limit)
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, data, seq, kept)| (seq, decode_delivery(id, data).map(|r| (r, kept))))
            .collect())
    }

    /// Whether any delivery is stored.
    pub fn has_deliveries(&self) -> Result<bool, StoreError> {
        self.read("count deliveries", |c| {
            c.query_row("SELECT EXISTS (SELECT 1 FROM deliveries)", [], |r| r.get::<_, bool>(0))
        })
    }

    pub fn delivery_seq(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.read("find a delivery", |c| {
            c.query_row("SELECT seq FROM deliveries WHERE id = ?", [id], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|s| s.map(|s| s as u64))
    }

    #[allow(clippy::type_complexity)]
    pub fn delivery(
        &self,
        id: &str,
    ) -> Result<Option<Result<(DeliveryRecord, Option<Bytes>), Unreadable>>, StoreError> {
        let row: Option<(Data, BodyCell)> = self.read("read a delivery", |c| {
            c.query_row("SELECT data, body FROM deliveries WHERE id = ?", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })?;
        Ok(row.map(|(data, BodyCell(body))| match body {
            Ok(body) => decode_delivery(Id(id.to_string()), data).map(|r| (r, body.map(Bytes::from))),
            Err(error) => Err(Unreadable {
                table: "deliveries",
                id: id.to_string(),
                error,
            }),
        }))
    }

    pub fn recent_deliveries(&self, since: SystemTime) -> Result<Vec<RecentDelivery>, StoreError> {
        self.read("read recent deliveries", |c| {
            let mut stmt = c.prepare(
                "SELECT source, delivery_id, id, received_ms FROM deliveries
                 WHERE received_ms >= ? AND outcome IN ('accepted', 'ignored') ORDER BY seq",
            )?;
            let rows = stmt.query_map([millis(since)], |r| {
                Ok(RecentDelivery {
                    source: r.get(0)?,
                    delivery_id: r.get(1)?,
                    record_id: r.get(2)?,
                    received_ms: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }
}

/// A row's `id` as text, whatever the column holds (a row changed by hand
/// is still named when it is reported).
struct Id(String);

impl rusqlite::types::FromSql for Id {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::ValueRef as V;
        Ok(Id(match v {
            V::Text(b) | V::Blob(b) => String::from_utf8_lossy(b).into_owned(),
            V::Integer(i) => i.to_string(),
            V::Real(f) => f.to_string(),
            V::Null => "NULL".into(),
        }))
    }
}

/// A row's `data` column: its text, or why it holds none. Reading it never
/// fails, so one row changed by hand (a blob, a number) is reported as
/// unreadable instead of failing every read of its table.
struct Data(Result<String, String>);

impl rusqlite::types::FromSql for Data {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::ValueRef as V;
        Ok(Data(match v {
            V::Text(b) | V::Blob(b) => {
                String::from_utf8(b.to_vec()).map_err(|_| "its data is not UTF-8 text".to_string())
            }
            V::Integer(_) | V::Real(_) => Err("its data is a number, not a record".into()),
            V::Null => Err("its data is NULL".into()),
        }))
    }
}

/// A row's `body` column: bytes (a blob, or text written by hand), none, or
/// why it is neither.
struct BodyCell(Result<Option<Vec<u8>>, String>);

impl rusqlite::types::FromSql for BodyCell {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::ValueRef as V;
        Ok(BodyCell(match v {
            V::Text(b) | V::Blob(b) => Ok(Some(b.to_vec())),
            V::Null => Ok(None),
            V::Integer(_) | V::Real(_) => Err("its body is a number, not bytes".into()),
        }))
    }
}

fn decode_task(Id(id): Id, Data(data): Data) -> Result<TaskRecord, Unreadable> {
    data.and_then(|d| decode(&d)).map_err(|error| Unreadable {
        table: "tasks",
        id,
        error,
    })
}

fn decode_delivery(Id(id): Id, Data(data): Data) -> Result<DeliveryRecord, Unreadable> {
    data.and_then(|d| decode(&d)).map_err(|error| Unreadable {
        table: "deliveries",
        id,
        error,
    })
}

/// Rows of `table` (id, record, sequence number and the value of `flag`,
/// newest first) matching the given column filters, before `before_seq`.
/// Column names and `flag` are ours, never input.
fn list(
    c: &Connection,
    table: &str,
    flag: &str,
    filters: &[(&str, Option<String>)],
    before_seq: Option<u64>,
    limit: usize,
) -> rusqlite::Result<Vec<(Id, Data, u64, bool)>> {
    let before = before_seq.map_or(i64::MAX, |s| s as i64);
    let mut sql = format!("SELECT id, data, seq, coalesce({flag}, 0) FROM {table} WHERE seq < ?1");
    let mut args: Vec<&String> = Vec::new();
    for (col, value) in filters {
        if let Some(v) = value {
            args.push(v);
            // `col` is `name = ` (or another comparison) from this file, never input.
            let col = if col.ends_with(' ') {
                col.to_string()
            } else {
                format!("{col} = ")
            };
            sql.push_str(&format!(" AND {col}?{}", args.len() + 1));
        }
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
    let mut stmt = c.prepare_cached(&sql)?;
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&before];
    values.extend(args.iter().map(|a| *a as &dyn rusqlite::ToSql));
    let rows = stmt.query_map(values.as_slice(), |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64, r.get(3)?))
    })?;
    rows.collect()
}

/// Reads every task and delivery row of the store at `path` (a read-only
/// connection of its own): how many of each, and those that cannot be read.
pub fn unreadable_rows(path: &Path) -> Result<(usize, usize, Vec<Unreadable>), StoreError> {
    decode_rows(&open_conn(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?)
}

fn decode_rows(conn: &Connection) -> Result<(usize, usize, Vec<Unreadable>), StoreError> {
    let (mut tasks, mut deliveries, mut unreadable) = (0, 0, Vec::new());
    for table in ["tasks", "deliveries"] {
        let mut stmt = conn
            .prepare(&format!("SELECT id, data FROM {table}"))
            .map_err(err("read the rows"))?;
        // One row at a time: a store of a million rows is not held in memory.
        let mut rows = stmt.query([]).map_err(err("read the rows"))?;
        while let Some(row) = rows.next().map_err(err("read the rows"))? {
            let (id, data): (Id, Data) = (
                row.get(0).map_err(err("read the rows"))?,
                row.get(1).map_err(err("read the rows"))?,
            );
            let decoded = if table == "tasks" {
                tasks += 1;
                decode_task(id, data).map(|_| ())
            } else {
                deliveries += 1;
                decode_delivery(id, data).map(|_| ())
            };
            if let Err(u) = decoded {
                unreadable.push(u);
            }
        }
    }
    Ok((tasks, deliveries, unreadable))
}

/// `hookrunner db check`.
pub fn check(path: &Path) -> Result<CheckReport, StoreError> {
    let conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let schema_version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err("read the schema version"))?;
    // A page too damaged for the check itself to finish is its finding.
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut stmt| stmt.query_map([], |r| r.get::<_, String>(0))?.collect())
        .unwrap_or_else(|e| vec![format!("the check could not finish: {e}")]);
    let mut report = CheckReport {
        integrity,
        schema_version,
        ours: schema::VERSION,
        tasks: 0,
        deliveries: 0,
        unreadable: Vec::new(),
        quarantined: 0,
        foreign_tables: Vec::new(),
    };
    if schema_version == 0 {
        // Empty, or another program's SQLite file.
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .map_err(err("list the tables"))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Id>(0))
            .map_err(err("list the tables"))?;
        report.foreign_tables = rows
            .map(|r| r.map(|Id(name)| name))
            .collect::<Result<_, _>>()
            .map_err(err("list the tables"))?;
        return Ok(report);
    }
    if !report.intact() || schema_version < 2 || schema_version > schema::VERSION {
        // Still version 1 (the next start converts it; nothing to decode
        // yet), or a newer hookrunner's, which this one cannot read.
        return Ok(report);
    }
    (report.tasks, report.deliveries, report.unreadable) = decode_rows(&conn)?;
    report.quarantined = conn
        .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get::<_, i64>(0))
        .map_err(err("count quarantined rows"))? as usize;
    Ok(report)
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    shared: Arc<Shared>,
    retention: Retention,
    /// Unacknowledged writes that failed, tried again with the next batch.
    backlog: Vec<Op>,
    metrics: Arc<crate::metrics::Metrics>,
}

const MAX_BATCH: usize = 1024;
const MAX_BACKLOG: usize = 100_000;
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// Drops the records of refused deliveries beyond the newest `?1`.
const PRUNE_REFUSED: &str = "DELETE FROM deliveries WHERE outcome = 'refused' AND seq <= (
    SELECT seq FROM deliveries WHERE outcome = 'refused' ORDER BY seq DESC LIMIT 1 OFFSET ?1)";

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut last_prune = Instant::now();
        loop {
            // While unhealthy, wake up to probe the disk even when nothing arrives.
            let wait = if self.shared.healthy.load(Ordering::Relaxed) {
                PRUNE_EVERY
            } else {
                Duration::from_millis(500)
            };
            let first = match rx.recv_timeout(wait) {
                Ok(cmd) => Some(cmd),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
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
            let result = if ops.is_empty() && self.shared.healthy.load(Ordering::Relaxed) {
                Ok(())
            } else {
                let started = Instant::now();
                let result = self.apply(&ops);
                self.metrics.store_written(started.elapsed());
                result
            };
            match &result {
                Ok(()) => {
                    if !self.shared.healthy.swap(true, Ordering::Relaxed) {
                        tracing::info!(store = %self.path.display(), "the store accepts writes again");
                    }
                }
                Err(e) => {
                    if self.shared.healthy.swap(false, Ordering::Relaxed) {
                        tracing::error!(store = %self.path.display(), error = %e, "the store cannot write: deliveries are refused with 503 until it can");
                    }
                    *self.shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
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
                match self.prune() {
                    Ok(pruned) if !pruned.is_empty() => {
                        if let Some(f) = self.shared.on_pruned.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                            f(&pruned);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning the store failed"),
                }
            }
            if let Some(done) = close {
                // Everything into the database file itself: a copy of it
                // alone, once the daemon stopped, holds all (the `-wal` file
                // is left empty).
                if let Err(e) = self
                    .conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))
                {
                    tracing::warn!(error = %e, "could not move the store's log into its file at the stop");
                }
                let _ = done.send(());
                break;
            }
        }
    }

    fn apply(&mut self, ops: &[(Op, bool)]) -> Result<(), StoreError> {
        let e = err("write a batch");
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut put_task = tx
                .prepare_cached(
                    "INSERT INTO tasks (id, seq, source, event, program, status, created_ms, finished_ms, callbacks_pending, data, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT(id) DO UPDATE SET status = excluded.status, finished_ms = excluded.finished_ms,
                       callbacks_pending = excluded.callbacks_pending, data = excluded.data,
                       body = CASE WHEN ?12 THEN tasks.body ELSE excluded.body END",
                )
                .map_err(&e)?;
            let mut put_delivery = tx
                .prepare_cached(
                    "INSERT INTO deliveries (id, delivery_id, source, event, outcome, received_ms, data, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(id) DO UPDATE SET outcome = excluded.outcome, data = excluded.data,
                       body = COALESCE(excluded.body, deliveries.body)",
                )
                .map_err(&e)?;
            let mut delete_task = tx.prepare_cached("DELETE FROM tasks WHERE id = ?").map_err(&e)?;
            let mut refused = false;
            for (op, _) in ops {
                match op {
                    Op::PutTask(t, body) => {
                        let finished_ms = match &t.state {
                            StateRecord::Finished { finished_ms, .. } => Some(*finished_ms),
                            _ => None,
                        };
                        let pending = t.callbacks.iter().any(|c| c.status == CallbackStatus::Pending);
                        let (body, keep) = match body {
                            Body::Keep => (None, true),
                            Body::Set(b) => (Some(&b[..]), false),
                            Body::Drop => (None, false),
                        };
                        put_task
                            .execute(params![
                                t.id.to_string(),
                                t.seq as i64,
                                t.source,
                                t.event,
                                t.program,
                                t.state.status().as_str(),
                                t.created_ms,
                                finished_ms,
                                pending,
                                encode(t.as_ref()),
                                body,
                                keep
                            ])
                            .map_err(&e)?;
                    }
                    Op::PutDelivery(d, body) => {
                        refused |= d.outcome == Outcome::Refused;
                        put_delivery
                            .execute(params![
                                d.id,
                                d.delivery_id,
                                d.source,
                                d.event,
                                d.outcome.as_str(),
                                d.received_ms,
                                encode(d.as_ref()),
                                body.as_deref()
                            ])
                            .map_err(&e)?;
                    }
                    Op::DeleteTask(id) => {
                        delete_task.execute([id.to_string()]).map_err(&e)?;
                    }
                }
            }
            // Refused records are held to their budget in the batch that
            // wrote them: a flood of them never grows the file past it, and
            // never waits for the prune to be listed within it.
            if refused {
                tx.prepare_cached(PRUNE_REFUSED)
                    .and_then(|mut s| s.execute([self.retention.refused as i64]))
                    .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    /// Drops tasks beyond `tasks.keep` or older than `tasks.keep_for`,
    /// deliveries beyond `deliveries.keep` (refused ones apart, beyond
    /// `deliveries.keep_refused`), bodies beyond `deliveries.body_bytes`; then
    /// gives freed pages back to the file system a little at a time. Returns
    /// the pruned tasks' ids.
    fn prune(&mut self) -> Result<Vec<Uuid>, StoreError> {
        let e = err("prune");
        let r = &self.retention;
        let cutoff = millis(SystemTime::now()) - r.tasks_for.as_millis() as i64;
        let c = &self.conn;
        let pruned: Vec<String> = {
            let mut stmt = c
                .prepare_cached(
                    "DELETE FROM tasks WHERE finished_ms IS NOT NULL AND callbacks_pending = 0 AND (finished_ms < ?1 OR seq <= (SELECT seq FROM tasks ORDER BY seq DESC LIMIT 1 OFFSET ?2)) RETURNING id",
                )
                .map_err(&e)?;
            let rows = stmt
                .query_map(params![cutoff, r.tasks as i64], |row| row.get(0))
                .map_err(&e)?;
            rows.collect::<Result<_, _>>().map_err(&e)?
        };
        let deliveries = c
            .execute(
                "DELETE FROM deliveries WHERE outcome <> 'refused' AND seq <= (
                    SELECT seq FROM deliveries WHERE outcome <> 'refused' ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
                params![r.deliveries as i64],
            )
            .map_err(&e)?;
        let refused = c.execute(PRUNE_REFUSED, params![r.refused as i64]).map_err(&e)?;
        // Bodies: keep the newest up to the byte budget.
        let bodies = c
            .execute(
                "UPDATE deliveries SET body = NULL WHERE body IS NOT NULL AND seq < (
                SELECT COALESCE(MIN(seq), 0) FROM (
                    SELECT seq, SUM(LENGTH(body)) OVER (ORDER BY seq DESC) AS total
                    FROM deliveries WHERE body IS NOT NULL
                ) WHERE total <= ?1)",
                params![r.body_bytes as i64],
            )
            .map_err(&e)?;
        c.execute_batch("PRAGMA incremental_vacuum(2000);").map_err(&e)?;
        tracing::debug!(tasks = pruned.len(), deliveries, refused, bodies, "store pruned");
        Ok(pruned.iter().filter_map(|id| id.parse().ok()).collect())
    }
}
