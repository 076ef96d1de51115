//! The PostgreSQL backend: the store a cluster's nodes share.
//!
//! Every PostgreSQL connection lives on the engine runtime (the HTTP
//! server's runtimes stop at shutdown, while the engine still records the
//! ends of its tasks): each operation is spawned there and awaited by its
//! caller. Writes go through one writer task per node that applies whatever
//! has queued up in one transaction, so concurrent deliveries share a commit
//! (group commit, as with SQLite); `synchronous_commit` stays on, so a
//! commit is on disk when it answers. Cluster operations (claiming work,
//! heartbeats, takeover, dedup keys) are in [`cluster`].

pub mod cluster;
mod schema;
pub mod tls;

use super::record::{decode, encode, CallbackStatus, DeliveryRecord, StateRecord, TaskRecord, Unreadable};
use super::{Body, DeliveryQuery, Message, Op, Retention, StoreError, TaskQuery};
use crate::secret::SecretUrl;
use bytes::Bytes;
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use schema::VERSION as SCHEMA_VERSION;

type Ack = oneshot::Sender<Result<(), StoreError>>;

enum Cmd {
    Write(Vec<Op>, Option<Ack>),
    /// Flush everything and stop.
    Close(oneshot::Sender<()>),
}

macro_rules! queue_channel {
    () => {
        "hookrunner_queue"
    };
}
/// The channel `NOTIFY`/`LISTEN` use to wake nodes when there is work.
pub const QUEUE_CHANNEL: &str = queue_channel!();
/// Wakes the nodes listening on [`QUEUE_CHANNEL`] (as simple SQL: no
/// statement to prepare, so it can be sent behind others without waiting),
/// the one way every write that frees or queues work does it.
pub(crate) const NOTIFY_QUEUE: &str = concat!("NOTIFY ", queue_channel!());
/// The channel that asks the node running a task to stop it.
pub const CANCEL_CHANNEL: &str = "hookrunner_cancel";
/// The channel nodes relay their `/events` on, while another node listens.
pub const EVENTS_CHANNEL: &str = "hookrunner_events";
/// The channel a node whose `/events` has listeners says so on (its name).
pub const WATCH_CHANNEL: &str = "hookrunner_watch";
/// The longest payload `NOTIFY` takes (PostgreSQL's limit is 8000 bytes).
pub const MAX_NOTIFY: usize = 7999;

pub struct Postgres {
    url: SecretUrl,
    pg_config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    pool: Pool,
    rt: Handle,
    tx: Mutex<Option<mpsc::UnboundedSender<Cmd>>>,
    shared: Arc<Shared>,
}

struct Shared {
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// This node's name, once it joined a cluster: the node whose writes of
    /// a finished task with callbacks pending make it their sender.
    node: std::sync::OnceLock<String>,
}

/// How long to wait for a connection before giving up (the delivery then gets 503).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a query or a batch of writes may take on an open connection.
/// A database that stops answering without closing the connection (a
/// network partition, a hung server) is then out of reach, as a refused
/// connection is: deliveries get 503 and `/readyz` says why, instead of
/// waiting for as long as the silence lasts.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What each pooled connection sets for its session, so that a node cut
/// off in the middle of a transaction does not keep its row locks (and with
/// them the takeover of its work) for as long as the cut lasts: the server
/// ends a transaction left idle longer than a query may take (every
/// transaction of ours runs under [`QUERY_TIMEOUT`], so none waits that long
/// between two statements and still counts). Sent as a statement, not as a
/// startup option, so that poolers refusing the `options` parameter still
/// connect. And `synchronous_commit` off (for the database or the role) is
/// put back on for these sessions: a `202` follows a commit that is on disk.
/// (`local`, `remote_write` and `remote_apply` are left as they are.)
fn session_settings() -> String {
    format!(
        "SET idle_in_transaction_session_timeout = '{}ms';
         SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'",
        QUERY_TIMEOUT.as_millis()
    )
}

/// The error of a query that got no answer within [`QUERY_TIMEOUT`].
#[derive(Debug)]
struct NoAnswer;

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the database did not answer within {}",
            humantime::format_duration(QUERY_TIMEOUT)
        )
    }
}

impl std::error::Error for NoAnswer {}

impl Postgres {
    /// Connects to `url`, brings the schema up to date (once, whatever other
    /// nodes do) and starts the writer. Runs on `rt`.
    pub fn open(url: &SecretUrl, connections: usize, rt: Handle, retention: Retention) -> Result<Postgres, StoreError> {
        let describe = url.masked();
        let (rest, tls_settings) = tls::split(url.expose())
            .map_err(|e| StoreError::message(format!("read the database URL `{describe}`"), e))?;
        let mut pg_config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| StoreError::new(format!("read the database URL `{describe}`"), e))?;
        pg_config.ssl_mode(tls_settings.mode.ssl_mode());
        pg_config.connect_timeout(CONNECT_TIMEOUT);
        // A peer gone silent: the kernel gives the connection up after
        // unacknowledged data (or keepalive probes) go unanswered this long.
        pg_config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(QUERY_TIMEOUT);
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("hookrunner");
        }
        let tls =
            tls::connector(&tls_settings).map_err(|e| StoreError::message(format!("connect to {describe}"), e))?;
        let manager = Manager::from_config(
            pg_config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(connections)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(Duration::from_secs(5)))
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move {
                    client
                        .batch_execute(&session_settings())
                        .await
                        .map_err(HookError::Backend)
                })
            }))
            .build()
            .map_err(|e| StoreError::new("set up the connection pool", e))?;
        let migrated = {
            let pool = pool.clone();
            rt.block_on(async move {
                let mut client = pool
                    .get()
                    .await
                    .map_err(|e| StoreError::new(format!("connect to {describe}"), e))?;
                schema::migrate(&mut client)
                    .await
                    .map_err(|e| StoreError::new(format!("migrate the database {describe}"), e))
            })
        };
        migrated?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            node: std::sync::OnceLock::new(),
        });
        let writer = Writer {
            pool: pool.clone(),
            shared: shared.clone(),
            retention,
            backlog: Vec::new(),
            describe: url.masked(),
        };
        rt.spawn(writer.run(rx));
        Ok(Postgres {
            url: url.clone(),
            pg_config,
            tls,
            pool,
            rt,
            tx: Mutex::new(Some(tx)),
            shared,
        })
    }

    /// The database, for messages (its password masked).
    pub fn describe(&self) -> String {
        self.url.masked()
    }

    /// Names the node this store writes for, once it joined a cluster
    /// (see `put_task_with`).
    pub fn set_node(&self, name: &str) {
        let _ = self.shared.node.set(name.to_string());
    }

    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn send(&self, cmd: Cmd) -> bool {
        match self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(tx) => tx.send(cmd).is_ok(),
            None => false,
        }
    }

    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        // The last write failed and none has worked since: refused at once
        // (a 503 for a delivery) rather than after another wait of up to
        // QUERY_TIMEOUT behind the writer's own retry; the writer tries
        // again every half second and lifts this when a write works.
        if !self.healthy() {
            let why = self
                .last_error()
                .unwrap_or_else(|| "the database is out of reach".into());
            return Err(StoreError::message("commit", why));
        }
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

    /// Flushes every pending write and stops the writer (blocking; call off the runtimes).
    pub fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::Close(tx)) {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), rx).await });
        }
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Runs `f` with a pooled connection, on the engine runtime.
    pub(crate) async fn with<R, F, Fut>(&self, op: &'static str, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, StoreError>> + Send,
    {
        let pool = self.pool.clone();
        let shared = self.shared.clone();
        let describe = self.describe();
        let result = self
            .rt
            .spawn(async move {
                let work = async move {
                    let client = pool.get().await.map_err(|e| StoreError::new(op, e))?;
                    f(client).await
                };
                tokio::time::timeout(QUERY_TIMEOUT, work)
                    .await
                    .unwrap_or_else(|_| Err(StoreError::new(op, NoAnswer)))
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::new(op, e)));
        // A read that cannot reach the database says so as loudly as a write.
        if let Err(e) = &result {
            if is_connection_error(e) {
                note(&shared, &describe, &Err(e.clone()));
            }
        }
        result
    }

    /// A dedicated connection (not from the pool) on the engine runtime, for `LISTEN`.
    pub(crate) async fn dedicated(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            mpsc::UnboundedReceiver<tokio_postgres::Notification>,
        ),
        StoreError,
    > {
        let config = self.pg_config.clone();
        let tls = self.tls.clone();
        self.rt
            .spawn(async move {
                use futures_util::StreamExt;
                let (client, mut connection) = config
                    .connect(tls)
                    .await
                    .map_err(|e| StoreError::new("connect to listen", e))?;
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let tokio_postgres::AsyncMessage::Notification(n) = message {
                            if tx.send(n).is_err() {
                                break;
                            }
                        }
                    }
                });
                Ok((client, rx))
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::new("connect to listen", e)))
    }

    pub async fn list_tasks(&self, q: &TaskQuery) -> Result<super::Rows<TaskRecord>, StoreError> {
        let q = q.clone();
        self.with("list tasks", move |c| async move {
            let mut sql = "SELECT seq, id::text, record FROM tasks WHERE seq < $1".to_string();
            let before = q.before_seq.map_or(i64::MAX, |s| s as i64);
            let mut args: Vec<String> = Vec::new();
            let (low, high) = match &q.id_prefix {
                Some(p) => {
                    let (low, high) = crate::store::id_range(p);
                    (Some(low), Some(high))
                }
                None => (None, None),
            };
            for (test, value) in [
                ("status = ", q.status.map(|s| s.as_str().to_string())),
                ("source = ", q.source.as_deref().map(|v| column(v).into_owned())),
                ("event = ", q.event.as_deref().map(|v| column(v).into_owned())),
                ("program = ", q.program.as_deref().map(|v| column(v).into_owned())),
                ("node = ", q.node.clone()),
                ("id >= ", low),
                ("id <= ", high),
            ] {
                if let Some(v) = value {
                    args.push(v);
                    // The id is a UUID column: the bound, sent as text, is cast to one.
                    let n = args.len() + 1;
                    if test.starts_with("id ") {
                        sql.push_str(&format!(" AND {test}(${n}::text)::uuid"));
                    } else {
                        sql.push_str(&format!(" AND {test}${n}"));
                    }
                }
            }
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", q.limit));
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&before];
            params.extend(args.iter().map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync)));
            let rows = c.query(&sql, &params).await.map_err(db("list tasks"))?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u64, task_row(r.get(0), r.get(1), r.get(2))))
                .collect())
        })
        .await
    }

    pub async fn task_seq(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        self.with("find a task", move |c| async move {
            let row = c
                .query_opt("SELECT seq FROM tasks WHERE id = $1", &[&id])
                .await
                .map_err(db("find a task"))?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
        .await
    }

    pub async fn task(&self, id: Uuid) -> Result<Option<Result<TaskRecord, Unreadable>>, StoreError> {
        self.with("read a task", move |c| async move {
            let row = c
                .query_opt("SELECT seq, id::text, record FROM tasks WHERE id = $1", &[&id])
                .await
                .map_err(db("read a task"))?;
            Ok(row.map(|r| task_row(r.get(0), r.get(1), r.get(2))))
        })
        .await
    }

    /// Deliveries, each with whether its body is still kept (for replay).
    pub async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<super::Rows<(DeliveryRecord, bool)>, StoreError> {
        let q = q.clone();
        self.with("list deliveries", move |c| async move {
            let mut sql =
                "SELECT id, record, seq, coalesce(length(body) > 0, false) FROM deliveries WHERE seq < $1".to_string();
            let before = q.before_seq.map_or(i64::MAX, |s| s as i64);
            let mut args: Vec<String> = Vec::new();
            for (col, value) in [
                ("source", q.source.as_deref().map(|v| column(v).into_owned())),
                ("event", q.event.as_deref().map(|v| column(v).into_owned())),
                ("outcome", q.outcome.map(|o| o.as_str().to_string())),
            ] {
                if let Some(v) = value {
                    args.push(v);
                    sql.push_str(&format!(" AND {col} = ${}", args.len() + 1));
                }
            }
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", q.limit));
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&before];
            params.extend(args.iter().map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync)));
            let rows = c.query(&sql, &params).await.map_err(db("list deliveries"))?;
            Ok(rows
                .iter()
                .map(|r| {
                    let kept: bool = r.get(3);
                    (
                        r.get::<_, i64>(2) as u64,
                        delivery_row(r.get(0), r.get(1)).map(|d| (d, kept)),
                    )
                })
                .collect())
        })
        .await
    }

    pub async fn delivery_seq(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let id = column(id).into_owned();
        self.with("find a delivery", move |c| async move {
            let row = c
                .query_opt("SELECT seq FROM deliveries WHERE id = $1", &[&id])
                .await
                .map_err(db("find a delivery"))?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
        .await
    }

    #[allow(clippy::type_complexity)]
    pub async fn delivery(
        &self,
        id: &str,
    ) -> Result<Option<Result<(DeliveryRecord, Option<Bytes>), Unreadable>>, StoreError> {
        let id = column(id).into_owned();
        self.with("read a delivery", move |c| async move {
            let row = c
                .query_opt("SELECT id, record, body FROM deliveries WHERE id = $1", &[&id])
                .await
                .map_err(db("read a delivery"))?;
            Ok(row.map(|r| {
                let body: Option<Vec<u8>> = r.get(2);
                delivery_row(r.get(0), r.get(1)).map(|d| (d, body.map(Bytes::from)))
            }))
        })
        .await
    }

    pub async fn max_task_seq(&self) -> Result<u64, StoreError> {
        self.with("read the last task number", |c| async move {
            let row = c
                .query_one("SELECT COALESCE(MAX(seq), 0) FROM tasks", &[])
                .await
                .map_err(db("read the last task number"))?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })
        .await
    }
}

/// Whether an error is about reaching the database (not about one query).
fn is_connection_error(e: &StoreError) -> bool {
    let cause: &(dyn std::error::Error + 'static) = &*e.source;
    if cause.downcast_ref::<deadpool_postgres::PoolError>().is_some() || cause.downcast_ref::<NoAnswer>().is_some() {
        return true;
    }
    cause
        .downcast_ref::<tokio_postgres::Error>()
        .is_some_and(|pg| pg.as_db_error().is_none())
}

/// Whether PostgreSQL refused a write for what it holds (a data exception,
/// class 22, or a value past a limit, class 54): writing it again fails the
/// same way, so it must not hold up the writes batched with it.
fn is_refused_content(e: &StoreError) -> bool {
    let cause: &(dyn std::error::Error + 'static) = &*e.source;
    cause
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|pg| pg.code())
        .is_some_and(|code| matches!(&code.code()[..2], "22" | "54"))
}

/// What one op writes, for a log line (ids only, never contents).
fn op_names(op: &Op) -> String {
    match op {
        Op::PutTask(t, _) => format!("task {}", t.id),
        Op::DeleteTask(id) => format!("the deletion of task {id}"),
        Op::PutDelivery(d, _) => format!("delivery {}", crate::logging::escape(&d.id)),
    }
}

/// Records the outcome of a write (or a failed read): the store is healthy
/// again after a success, unhealthy (logged once) after a failure.
fn note(shared: &Shared, describe: &str, result: &Result<(), StoreError>) {
    match result {
        Ok(()) => {
            if !shared.healthy.swap(true, Ordering::Relaxed) {
                tracing::info!(store = %describe, "the database accepts writes again");
            }
        }
        Err(e) => {
            if shared.healthy.swap(false, Ordering::Relaxed) {
                tracing::error!(store = %describe, error = %e, "the database cannot write: deliveries are refused with 503 until it can");
            }
            *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }
}

/// The longest value a free-form `TEXT` column keeps as it is.
const MAX_COLUMN: usize = 1024;

/// A free-form value (a source, event, program, delivery id, concurrency or
/// dedup key: text a delivery brings) as its `TEXT` column holds it, for
/// filters, lookups and keys; the record beside it keeps the exact value.
/// PostgreSQL's text cannot hold a NUL (the write fails), and its indexes
/// refuse an entry of more than about 2.7 KB: such a value is kept with each
/// NUL as U+FFFD and cut to under 1 KiB, followed by `#` and the SHA-256 of
/// the whole (so two values stay two). Every bind of such a column goes
/// through here, so a filter finds what a write stored.
pub(crate) fn column(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_COLUMN && !value.contains('\0') {
        return std::borrow::Cow::Borrowed(value);
    }
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(value.as_bytes()));
    let mut kept = value.replace('\0', "\u{FFFD}");
    let mut end = (MAX_COLUMN - 1 - digest.len()).min(kept.len());
    while !kept.is_char_boundary(end) {
        end -= 1;
    }
    kept.truncate(end);
    kept.push('#');
    kept.push_str(&digest);
    std::borrow::Cow::Owned(kept)
}

pub(crate) fn db(op: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::new(op, e)
}

pub(crate) fn task_row(seq: i64, id: String, record: String) -> Result<TaskRecord, Unreadable> {
    decode::<TaskRecord>(&record)
        .map(|mut r| {
            // The cluster numbers tasks in the order the database took them.
            r.seq = seq as u64;
            r
        })
        .map_err(|error| Unreadable {
            table: "tasks",
            id,
            error,
        })
}

fn delivery_row(id: String, record: String) -> Result<DeliveryRecord, Unreadable> {
    decode(&record).map_err(|error| Unreadable {
        table: "deliveries",
        id,
        error,
    })
}

/// Whether a task in this state holds its concurrency key: while it runs,
/// and while it waits out a retry's backoff.
pub(crate) fn holds_key(r: &TaskRecord) -> bool {
    r.key.is_some()
        && matches!(
            r.state,
            StateRecord::Running { .. }
                | StateRecord::Queued {
                    next_attempt_ms: Some(_)
                }
        )
}

/// The columns of a task's row, from its record.
pub(crate) struct Columns {
    pub status: &'static str,
    pub finished_ms: Option<i64>,
    pub callbacks_pending: bool,
    pub holds_key: bool,
    pub next_attempt_ms: Option<i64>,
}

pub(crate) fn columns(r: &TaskRecord) -> Columns {
    Columns {
        status: r.state.status().as_str(),
        finished_ms: match &r.state {
            StateRecord::Finished { finished_ms, .. } => Some(*finished_ms),
            _ => None,
        },
        callbacks_pending: r.callbacks_unknown || r.callbacks.iter().any(|c| c.status == CallbackStatus::Pending),
        holds_key: holds_key(r),
        next_attempt_ms: match &r.state {
            StateRecord::Queued { next_attempt_ms } => *next_attempt_ms,
            _ => None,
        },
    }
}

/// Writes a task's row in `tx`: inserted if new; otherwise updated only while
/// its claim is still the one the record names (a node's late write after a
/// takeover changes nothing). Returns whether a row was written.
const PUT_TASK: &str =
    "INSERT INTO tasks (id, source, event, program, status, created_ms, finished_ms, callbacks_pending,
        node, pinned_node, run_on, key, holds_key, next_attempt_ms, claim, record, body)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
     ON CONFLICT (id) DO UPDATE SET status = excluded.status, finished_ms = excluded.finished_ms,
       callbacks_pending = excluded.callbacks_pending, node = excluded.node,
       holds_key = excluded.holds_key, next_attempt_ms = excluded.next_attempt_ms,
       record = excluded.record,
       body = CASE WHEN $18 THEN tasks.body ELSE excluded.body END
     WHERE tasks.claim IS NOT DISTINCT FROM excluded.claim";

const DELETE_TASK: &str = "DELETE FROM tasks WHERE id = $1";

const PUT_DELIVERY: &str = "INSERT INTO deliveries (id, delivery_id, source, event, outcome, received_ms, record, body)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, record = excluded.record,
       body = COALESCE(excluded.body, deliveries.body)";

pub(crate) async fn put_task(
    tx: &deadpool_postgres::Transaction<'_>,
    r: &TaskRecord,
    body: &Body,
    sender: Option<&str>,
) -> Result<bool, tokio_postgres::Error> {
    let stmt = tx.prepare_cached(PUT_TASK).await?;
    put_task_with(&**tx, &stmt, r, body, sender).await
}

/// [`put_task`] with the statement prepared once for a batch, written by
/// the node `sender` (if it is one of a cluster).
///
/// The row's `node` is where the task runs or ran, except while callbacks
/// are pending: then it is the node that sends them, the writer (the one
/// that finished the task, or took it over, or adopted its callbacks), so
/// that a takeover of that node finds them; or none, waiting for a node
/// with the program, when the writer could not work them out.
async fn put_task_with(
    tx: &impl tokio_postgres::GenericClient,
    stmt: &tokio_postgres::Statement,
    r: &TaskRecord,
    body: &Body,
    sender: Option<&str>,
) -> Result<bool, tokio_postgres::Error> {
    let c = columns(r);
    let (source, event, program) = (column(&r.source), column(&r.event), column(&r.program));
    let key = r.key.as_deref().map(column);
    let node = if r.callbacks_unknown {
        None
    } else if c.callbacks_pending {
        sender.or(r.node.as_deref())
    } else {
        r.node.as_deref()
    };
    let (body, keep) = match body {
        Body::Keep => (None, true),
        Body::Set(b) => (Some(&b[..]), false),
        Body::Drop => (None, false),
    };
    let n = tx
        .execute(
            stmt,
            &[
                &r.id,
                &source,
                &event,
                &program,
                &c.status,
                &r.created_ms,
                &c.finished_ms,
                &c.callbacks_pending,
                &node,
                &r.pinned_node,
                &r.run_on,
                &key,
                &c.holds_key,
                &c.next_attempt_ms,
                &r.claim,
                &encode(r),
                &body,
                &keep,
            ],
        )
        .await?;
    Ok(n > 0)
}

/// A transaction whose `BEGIN` and `COMMIT` are sent like any other
/// statement, so they can ride in one round trip with the statements
/// between them (tokio-postgres sends requests in the order their futures
/// are first polled; `Transaction` waits for its `BEGIN` and its `COMMIT`).
///
/// Ended with [`RawTx::end`] once a `COMMIT` or `ROLLBACK` was answered,
/// the connection goes back to the pool. Dropped otherwise (an error
/// returned early, a timeout, a failure before everything was sent), it
/// closes its connection, which rolls back whatever reached the server: a
/// connection never goes back to the pool inside a transaction.
pub(crate) struct RawTx {
    client: Option<deadpool_postgres::Object>,
}

impl RawTx {
    pub(crate) fn new(client: deadpool_postgres::Object) -> RawTx {
        RawTx { client: Some(client) }
    }

    /// The connection, for the statements of the transaction.
    pub(crate) fn c(&self) -> &deadpool_postgres::ClientWrapper {
        self.client
            .as_ref()
            .expect("a RawTx holds its connection until it is ended or dropped")
    }

    /// Ends the transaction after the join that carried its `COMMIT` (or
    /// `ROLLBACK`) returned `result`. With `Ok`, or an error from the
    /// server (which can only come once every request was sent, the
    /// `COMMIT` among them, and which ends the transaction), the connection
    /// goes back to the pool; after any other error it is closed.
    pub(crate) fn end<T>(mut self, result: &Result<T, tokio_postgres::Error>) {
        if result.as_ref().is_ok() || result.as_ref().is_err_and(|e| e.as_db_error().is_some()) {
            drop(self.client.take());
        }
    }
}

impl Drop for RawTx {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

struct Writer {
    pool: Pool,
    shared: Arc<Shared>,
    retention: Retention,
    /// Unacknowledged writes that failed, tried again with the next batch.
    backlog: Vec<Op>,
    describe: String,
}

const MAX_BATCH: usize = 1024;
const MAX_BACKLOG: usize = 100_000;
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// One node at a time prunes.
const PRUNE_LOCK: i64 = 0x686f_6f6b_0002;
/// One node at a time drops refused records (in its batch or its prune), so
/// two never wait on each other's rows.
const PRUNE_REFUSED_LOCK: i64 = 0x686f_6f6b_0004;
/// Drops the records of refused deliveries beyond the newest `$1`, if this
/// transaction gets `$2` (the lock taken once, before any row is touched).
const PRUNE_REFUSED: &str = "WITH held AS (SELECT pg_try_advisory_xact_lock($2) AS got)
    DELETE FROM deliveries WHERE (SELECT got FROM held) AND outcome = 'refused' AND seq <= (
        SELECT seq FROM deliveries WHERE outcome = 'refused' ORDER BY seq DESC LIMIT 1 OFFSET $1)";

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut last_prune = tokio::time::Instant::now();
        loop {
            let wait = if self.shared.healthy.load(Ordering::Relaxed) {
                PRUNE_EVERY
            } else {
                Duration::from_millis(500)
            };
            let first = match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(cmd)) => Some(cmd),
                Ok(None) => break,
                Err(_) => None,
            };
            // Each op with the index of the answer its command waits for, if any.
            let mut ops: Vec<(Op, Option<usize>)> = std::mem::take(&mut self.backlog)
                .into_iter()
                .map(|o| (o, None))
                .collect();
            let mut acks = Vec::new();
            let mut close = None;
            let mut add = |cmd: Cmd, ops: &mut Vec<(Op, Option<usize>)>, acks: &mut Vec<Ack>| match cmd {
                Cmd::Write(o, ack) => {
                    let acked = ack.is_some().then_some(acks.len());
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
            let all: Vec<&Op> = ops.iter().map(|(op, _)| op).collect();
            let mut result = if ops.is_empty() && self.shared.healthy.load(Ordering::Relaxed) {
                Ok(())
            } else {
                self.apply_in_time(&all).await
            };
            drop(all);
            if result.as_ref().is_err_and(is_refused_content) {
                // One write the database will never take must not hold up
                // the rest: each command's writes again on their own.
                result = self.isolate(ops, acks).await;
            } else {
                if result.is_err() {
                    // Keep what nobody waits for; the acknowledged ones are answered 503.
                    self.backlog = ops
                        .into_iter()
                        .filter(|(_, acked)| acked.is_none())
                        .map(|(o, _)| o)
                        .take(MAX_BACKLOG)
                        .collect();
                }
                for ack in acks {
                    let _ = ack.send(result.clone());
                }
            }
            note(&self.shared, &self.describe, &result);
            if let Err(e) = &result {
                // What queued up behind the failed write is answered now
                // (a delivery's 503), not after a write of its own that
                // would wait as long again; writes nobody waits for join
                // the backlog.
                while let Ok(cmd) = rx.try_recv() {
                    match cmd {
                        Cmd::Write(ops, Some(ack)) => {
                            drop(ops);
                            let _ = ack.send(Err(e.clone()));
                        }
                        Cmd::Write(ops, None) => {
                            let room = MAX_BACKLOG.saturating_sub(self.backlog.len());
                            self.backlog.extend(ops.into_iter().take(room));
                        }
                        Cmd::Close(done) => {
                            close = Some(done);
                            break;
                        }
                    }
                }
            }
            if result.is_ok() && last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                let pruned = tokio::time::timeout(QUERY_TIMEOUT, self.prune())
                    .await
                    .unwrap_or_else(|_| Err(StoreError::new("prune", NoAnswer)));
                if let Err(e) = pruned {
                    tracing::warn!(error = %e, "pruning the database failed");
                }
            }
            if let Some(done) = close {
                let _ = done.send(());
                break;
            }
        }
    }

    async fn apply_in_time(&mut self, ops: &[&Op]) -> Result<(), StoreError> {
        tokio::time::timeout(QUERY_TIMEOUT, self.apply(ops))
            .await
            .unwrap_or_else(|_| Err(StoreError::new("write a batch", NoAnswer)))
    }

    /// Writes a batch the database refused for its content again, a
    /// command at a time (a waiting command's writes together, in one
    /// transaction, as before; each write nobody waits for alone). A
    /// waiting command gets its own result; a write nobody waits for that
    /// is refused again is dropped with an error line naming it (the
    /// record in memory stays as it was), and one that fails for another
    /// reason waits in the backlog. The result is the batch's, as
    /// [`note`] takes it: an error only if something could not be tried.
    async fn isolate(&mut self, ops: Vec<(Op, Option<usize>)>, acks: Vec<Ack>) -> Result<(), StoreError> {
        let mut groups: Vec<(Vec<Op>, Option<usize>)> = Vec::new();
        for (op, acked) in ops {
            match groups.last_mut() {
                Some((group, Some(i))) if acked == Some(*i) => group.push(op),
                _ => groups.push((vec![op], acked)),
            }
        }
        let mut acks: Vec<Option<Ack>> = acks.into_iter().map(Some).collect();
        let mut outcome = Ok(());
        for (group, acked) in groups {
            let refs: Vec<&Op> = group.iter().collect();
            let result = if outcome.is_ok() {
                self.apply_in_time(&refs).await
            } else {
                // The database stopped answering: the rest waits for it.
                outcome.clone()
            };
            match (acked, &result) {
                (Some(i), _) => {
                    if let Some(ack) = acks.get_mut(i).and_then(Option::take) {
                        let _ = ack.send(result.clone());
                    }
                }
                (None, Ok(())) => {}
                (None, Err(e)) if is_refused_content(e) => {
                    let what = group.iter().map(op_names).collect::<Vec<_>>().join(", ");
                    tracing::error!(store = %self.describe, error = %e, "the database refused to store {what}; the write is dropped");
                }
                (None, Err(_)) => {
                    if self.backlog.len() < MAX_BACKLOG {
                        self.backlog.extend(group);
                    }
                }
            }
            if result.as_ref().is_err_and(|e| !is_refused_content(e)) && outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }

    async fn apply(&mut self, ops: &[&Op]) -> Result<(), StoreError> {
        let e = db("write a batch");
        let tx = RawTx::new(self.pool.get().await.map_err(|e| StoreError::new("write a batch", e))?);
        let client = tx.c();
        let put_task_stmt = client.prepare_cached(PUT_TASK).await.map_err(&e)?;
        let put_delivery_stmt = client.prepare_cached(PUT_DELIVERY).await.map_err(&e)?;
        // Every statement prepared ahead (once per connection): one given
        // as text would be prepared in a round trip of its own, and run
        // after what was sent behind it.
        let delete_stmt = client.prepare_cached(DELETE_TASK).await.map_err(&e)?;
        let prune_stmt = client.prepare_cached(PRUNE_REFUSED).await.map_err(&e)?;
        let (c, put_task_stmt, put_delivery_stmt, delete_stmt) =
            (&**client, &put_task_stmt, &put_delivery_stmt, &delete_stmt);
        let sender = self.shared.node.get().map(String::as_str);
        // The whole transaction in one round trip: `BEGIN`, one statement
        // per op, the prune, the wake-up and `COMMIT`, each sent without
        // waiting for the one before (tokio-postgres sends requests in the
        // order their futures are first polled, and the joins below poll
        // them in this order). If a statement fails, PostgreSQL refuses
        // the rest of the transaction and answers the `COMMIT` with a
        // rollback; the joins return the failed statement's own error
        // (its answer comes first).
        let begin = c.batch_execute("BEGIN");
        let writes = futures_util::future::try_join_all(ops.iter().map(|op| async move {
            match op {
                Op::PutTask(t, body) => {
                    if !put_task_with(c, put_task_stmt, t, body, sender).await? {
                        tracing::debug!(task_id = %t.id, "a stale write of a task was dropped (its claim changed)");
                    }
                }
                Op::PutDelivery(d, body) => {
                    c.execute(
                        put_delivery_stmt,
                        &[
                            &column(&d.id),
                            &column(&d.delivery_id),
                            &column(&d.source),
                            &d.event.as_deref().map(column),
                            &d.outcome.as_str(),
                            &d.received_ms,
                            &encode(d.as_ref()),
                            &body.as_deref(),
                        ],
                    )
                    .await?;
                }
                Op::DeleteTask(id) => {
                    c.execute(delete_stmt, &[id]).await?;
                }
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
        // Refused records are held to their budget in the batch that wrote
        // them, by one node at a time (any other batch leaves it to the next).
        let refused = ops
            .iter()
            .any(|op| matches!(op, Op::PutDelivery(d, _) if d.outcome == crate::status::Outcome::Refused));
        let prune = async {
            if refused {
                c.execute(&prune_stmt, &[&(self.retention.refused as i64), &PRUNE_REFUSED_LOCK])
                    .await?;
            }
            Ok(())
        };
        // Queued work, or a slot or key set free: nodes look for work. (A
        // write dropped as stale wakes them for nothing; they find nothing.)
        let wake = ops
            .iter()
            .any(|op| matches!(op, Op::PutTask(t, _) if !matches!(t.state, StateRecord::Running { .. })));
        let notify = async {
            if wake {
                c.batch_execute(NOTIFY_QUEUE).await?;
            }
            Ok(())
        };
        let commit = c.batch_execute("COMMIT");
        let result = futures_util::future::try_join5(begin, writes, prune, notify, commit).await;
        tx.end(&result);
        result.map(drop).map_err(&e)
    }

    /// Drops what retention says (one node at a time), and dedup keys past their window.
    async fn prune(&mut self) -> Result<(), StoreError> {
        let e = db("prune");
        let r = self.retention.clone();
        let mut client = self.pool.get().await.map_err(|e| StoreError::new("prune", e))?;
        let tx = client.transaction().await.map_err(&e)?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK])
            .await
            .map_err(&e)?
            .get(0);
        if !locked {
            return Ok(());
        }
        let now = super::millis(std::time::SystemTime::now());
        let cutoff = now - r.tasks_for.as_millis() as i64;
        let tasks = tx
            .execute(
                "DELETE FROM tasks WHERE finished_ms IS NOT NULL AND NOT callbacks_pending
               AND (finished_ms < $1 OR seq <= (SELECT seq FROM tasks ORDER BY seq DESC LIMIT 1 OFFSET $2))",
                &[&cutoff, &(r.tasks as i64)],
            )
            .await
            .map_err(&e)?;
        let deliveries = tx
            .execute(
                // The first delivery of a live dedup key stays: its absence
                // would say the key was stranded (see `dedup_check`).
                format!(
                    "DELETE FROM deliveries WHERE outcome <> 'refused' AND seq <= (
                        SELECT seq FROM deliveries WHERE outcome <> 'refused' ORDER BY seq DESC LIMIT 1 OFFSET $1)
                       AND NOT EXISTS (SELECT 1 FROM dedup WHERE dedup.first_id = deliveries.id AND dedup.expires_ms >= {})",
                    cluster::NOW_MS
                )
                .as_str(),
                &[&(r.deliveries as i64)],
            )
            .await
            .map_err(&e)?;
        let refused = tx
            .execute(PRUNE_REFUSED, &[&(r.refused as i64), &PRUNE_REFUSED_LOCK])
            .await
            .map_err(&e)?;
        let bodies = tx
            .execute(
                "UPDATE deliveries SET body = NULL WHERE body IS NOT NULL AND seq < (
                    SELECT COALESCE(MIN(seq), 0) FROM (
                        SELECT seq, SUM(LENGTH(body)) OVER (ORDER BY seq DESC) AS total
                        FROM deliveries WHERE body IS NOT NULL
                    ) kept WHERE total <= $1)",
                &[&(r.body_bytes as i64)],
            )
            .await
            .map_err(&e)?;
        tx.execute("DELETE FROM dedup WHERE expires_ms < $1", &[&now])
            .await
            .map_err(&e)?;
        tx.commit().await.map_err(&e)?;
        tracing::debug!(tasks, deliveries, refused, bodies, "store pruned");
        Ok(())
    }
}

/// A cause that is only a sentence (re-exported for the cluster module).
pub(crate) fn message(op: &'static str, text: impl Into<String>) -> StoreError {
    StoreError::new(op, Message(text.into()))
}

/// `hookrunner db check` on a cluster's database, without changing it: its
/// schema version, and that every task and delivery row can be read.
pub fn check(url: &SecretUrl) -> Result<super::CheckReport, StoreError> {
    let describe = url.masked();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::new("start a runtime", e))?;
    runtime.block_on(async move {
        let (rest, settings) = tls::split(url.expose())
            .map_err(|e| StoreError::message(format!("read the database URL `{describe}`"), e))?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| StoreError::new(format!("read the database URL `{describe}`"), e))?;
        config.ssl_mode(settings.mode.ssl_mode());
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("hookrunner db check");
        let connector =
            tls::connector(&settings).map_err(|e| StoreError::message(format!("connect to {describe}"), e))?;
        let (client, connection) = config
            .connect(connector)
            .await
            .map_err(|e| StoreError::new(format!("connect to {describe}"), e))?;
        tokio::spawn(connection);
        let e = db("check the database");
        let schema_version = schema::version(&client)
            .await
            .map_err(|err| StoreError::new("check the database", err))?;
        let mut report = super::CheckReport {
            integrity: Vec::new(),
            schema_version,
            ours: SCHEMA_VERSION,
            tasks: 0,
            deliveries: 0,
            unreadable: Vec::new(),
            quarantined: 0,
            foreign_tables: Vec::new(),
        };
        if schema_version == 0 || schema_version > SCHEMA_VERSION {
            return Ok(report);
        }
        // Page through by seq: a large history is never held at once.
        let mut unreadable = Vec::new();
        report.tasks = page_by_seq(&client, "SELECT seq, id::text, record FROM tasks", |row| {
            if let Err(u) = task_row(row.get(0), row.get(1), row.get(2)) {
                unreadable.push(u);
            }
        })
        .await
        .map_err(&e)?;
        report.deliveries = page_by_seq(&client, "SELECT seq, id, record FROM deliveries", |row| {
            if let Err(u) = delivery_row(row.get(1), row.get(2)) {
                unreadable.push(u);
            }
        })
        .await
        .map_err(&e)?;
        report.unreadable = unreadable;
        Ok(report)
    })
}

/// Every row of `select` (whose first column is `seq`), a thousand at a
/// time in `seq` order, handed to `each`; how many there were.
async fn page_by_seq(
    client: &tokio_postgres::Client,
    select: &str,
    mut each: impl FnMut(&tokio_postgres::Row),
) -> Result<usize, tokio_postgres::Error> {
    let query = format!("{select} WHERE seq > $1 ORDER BY seq LIMIT 1000");
    let (mut after, mut count) = (0i64, 0usize);
    loop {
        let rows = client.query(query.as_str(), &[&after]).await?;
        let Some(last) = rows.last() else { return Ok(count) };
        after = last.get(0);
        count += rows.len();
        rows.iter().for_each(&mut each);
    }
}
