//! What the nodes of a cluster do together through the database: register
//! and heartbeat, claim queued work under cluster-wide limits, take over the
//! work of a node whose lease expired (exactly once), remember delivery keys
//! for dedup, and ask the node running a task to stop it.
//!
//! Times that decide liveness are the database's (`clock_timestamp()`), so
//! nodes' clocks need not agree. Claims are serialised by a transaction
//! advisory lock: with it, "a program under its `max_concurrent`" and "a key
//! not held" are true across the cluster when a claim commits, and the
//! unique index on held keys backs that up.

use super::{column, db, message, put_task, task_row, Postgres, RawTx, CANCEL_CHANNEL, NOTIFY_QUEUE};
use crate::store::record::{StateRecord, TaskRecord};
use crate::store::{Body, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
use uuid::Uuid;

/// The database's clock, in milliseconds since the Unix epoch.
pub(super) const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The advisory lock class of node names (with the name's hash), held
/// while a node joins.
const NAME_LOCK: i32 = 0x686f_6f6b;

/// The advisory lock every claim holds while it picks tasks.
const CLAIM_LOCK: i64 = 0x686f_6f6b_0003;

/// How long a dedup key must have been held, its delivery still not in the
/// database, before the key counts as stranded: longer than a commit may
/// take (the writer gives up on a batch after 10 s).
const STRANDED_MS: i64 = 15_000;

/// How long a claim or a takeover waits for a lock before it gives up and
/// is tried again at the next tick. Locks of ours are held for milliseconds;
/// one held longer belongs to a node cut off in the middle of a transaction
/// (the server ends that transaction once it has been idle for as long as a
/// query may take), and waiting on it must not look like a database that
/// stopped answering (which refuses deliveries with 503).
macro_rules! lock_wait {
    () => {
        "SET LOCAL lock_timeout = '2s'"
    };
}
const LOCK_WAIT: &str = lock_wait!();

/// A claim's transaction begun, with [`LOCK_WAIT`] and its planner settings.
const BEGIN_CLAIM: &str = concat!(
    "BEGIN; ",
    lock_wait!(),
    "; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"
);

/// The connection a node heartbeats on, apart from the pool (see
/// [`Postgres::heartbeat`]), and the connections of tries given up that
/// still wait for the database's answer.
#[derive(Default, Clone)]
pub struct HeartbeatLine(std::sync::Arc<tokio::sync::Mutex<Line>>);

#[derive(Default)]
struct Line {
    current: Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)>,
    /// Connections whose try was given up, kept until the database answers
    /// (or the kernel gives up on them): at most [`MAX_ABANDONED`], so a
    /// database that takes heartbeats but never answers (a synchronous
    /// standby gone) is not handed a new connection every try.
    abandoned: Vec<tokio::task::JoinHandle<()>>,
}

/// The most connections of given-up heartbeats a node keeps waiting.
const MAX_ABANDONED: usize = 3;

impl Drop for Line {
    fn drop(&mut self) {
        if let Some((_, conn)) = self.current.take() {
            conn.abort();
        }
        for conn in self.abandoned.drain(..) {
            conn.abort();
        }
    }
}

/// This node, as it registers.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Vec<String>,
    pub url: String,
    pub lease_ms: i64,
}

/// A node as `GET /nodes` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeRow {
    pub name: String,
    pub labels: Vec<String>,
    pub version: String,
    pub url: String,
    pub started_at: String,
    pub last_heartbeat: String,
    pub heartbeat_age_ms: i64,
    /// `alive`, `stopped` or `dead` (taken over).
    pub status: String,
    pub alive: bool,
    pub running: i32,
    pub claimed: i64,
    pub taken_over_by: Option<String>,
}

/// Why a node may not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("node name `{name}` is in use by a live node (last heartbeat {age_ms} ms ago); give this node another name (`node.name`, --node-name or HOOKRUNNER_NODE_NAME)")]
    NameInUse { name: String, age_ms: i64 },
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A dead node's work, locked for its taker: each row's record and body.
pub struct Orphans {
    /// The node that died (or stopped, or whose earlier run crashed).
    pub node: String,
    /// Its tasks that were running, or claimed and not yet started.
    pub running: Vec<(TaskRecord, Bytes)>,
    /// Queued tasks only it could run (`fan_out`).
    pub pinned: Vec<TaskRecord>,
    /// Finished tasks whose callbacks it had not delivered.
    pub callbacks: Vec<TaskRecord>,
    /// Running tasks someone asked to cancel (the reason), which the node
    /// did not get to stop.
    pub cancels: HashMap<Uuid, String>,
    /// The node died (its lease expired) rather than stopping or being this
    /// node's own earlier run: whether a claimed task's handler started is
    /// unknown.
    pub died: bool,
}

/// A row running under a node, as [`Postgres::running_here`] reads it.
pub struct RunningRow {
    pub id: Uuid,
    pub claim: Option<Uuid>,
    /// Why its stop was asked for, if it was.
    pub cancel_requested: Option<String>,
}

impl Orphans {
    /// Nothing yet of `node`'s work.
    fn none_of(node: &str) -> Orphans {
        Orphans {
            node: node.to_string(),
            running: Vec::new(),
            pinned: Vec::new(),
            callbacks: Vec::new(),
            cancels: HashMap::new(),
            died: false,
        }
    }
}

/// What the taker decided for one orphan: its new record and what to do with its body.
pub type Decision = (TaskRecord, Body);

/// What a claim found.
pub struct Claimed {
    pub tasks: Vec<(TaskRecord, Bytes)>,
    /// When the earliest queued task this node may run becomes due (a retry's backoff).
    pub next_due_ms: Option<i64>,
    /// Keys whose older tasks a newer one replaces but which are still
    /// there to replace: the node that queued the newer one has not
    /// superseded them (it died just after its `202`, or its config said
    /// `queue`). Each is to be [`Postgres::supersede`]d by `by`.
    pub stale: Vec<Stale>,
}

/// The older tasks of `program`'s `key`, to be superseded by the task `by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub program: String,
    pub key: String,
    pub by: Uuid,
}

/// A task holding its key (running, or waiting out a retry's backoff), as a claim sees it.
struct Holder {
    program: String,
    key: String,
    id: Uuid,
    seq: i64,
    pinned: Option<String>,
    running: bool,
    /// Asked to stop already.
    stopping: bool,
}

/// Cluster-wide limits a claim honours besides keys: `max_concurrent` per program.
pub type ProgramLimits = HashMap<String, usize>;

/// What a claim needs to know of this node's programs.
pub struct ClaimPrograms {
    /// `max_concurrent` of the programs that have one.
    pub limits: ProgramLimits,
    /// Every program's name: only their tasks are claimed.
    pub known: Vec<String>,
    /// Whether any program has a `concurrency_key`.
    pub keyed: bool,
    /// Keyed programs whose new tasks replace the older ones of their key:
    /// `true` where they also stop the running one (`cancel_running`).
    pub replacing: HashMap<String, bool>,
}

impl Postgres {
    /// Joins the cluster as `node` with a new incarnation. A live node of the
    /// same name is refused; an earlier run of this node that did not stop
    /// cleanly is handed to `take` (its work, locked) before the join commits.
    pub async fn join(
        &self,
        node: &NodeInfo,
        incarnation: Uuid,
        take: impl FnOnce(Orphans) -> Vec<Decision> + Send + 'static,
    ) -> Result<Vec<Uuid>, JoinError> {
        let node = node.clone();
        let version = env!("CARGO_PKG_VERSION").to_string();
        let result = self
            .with("join the cluster", move |mut c| async move {
                let e = db("join the cluster");
                let tx = c.transaction().await.map_err(&e)?;
                tx.batch_execute(LOCK_WAIT).await.map_err(&e)?;
                // Two nodes joining under one new name at once: a row that
                // does not exist yet locks nothing, so the name itself is
                // locked; the second then finds the first alive.
                tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&NAME_LOCK, &node.name])
                    .await
                    .map_err(&e)?;
                let row = tx
                    .query_opt(
                        &format!(
                            "SELECT status, {NOW_MS} - heartbeat_ms, lease_ms FROM nodes WHERE name = $1 FOR UPDATE"
                        ),
                        &[&node.name],
                    )
                    .await
                    .map_err(&e)?;
                let mut touched = Vec::new();
                if let Some(row) = row {
                    let (status, age, lease): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
                    if status == "alive" && age < lease {
                        return Ok(Err((node.name.clone(), age)));
                    }
                    if status != "dead" {
                        // Our own earlier run: what it left is ours to settle.
                        let orphans = orphans_of(&tx, &node.name).await?;
                        touched = settle(&tx, &node.name, orphans, take).await?;
                    }
                }
                tx.execute(
                    &format!(
                        "INSERT INTO nodes (name, incarnation, labels, version, url, started_ms, heartbeat_ms, lease_ms, status, running)
                         VALUES ($1, $2, $3, $4, $5, {NOW_MS}, {NOW_MS}, $6, 'alive', 0)
                         ON CONFLICT (name) DO UPDATE SET incarnation = excluded.incarnation, labels = excluded.labels,
                           version = excluded.version, url = excluded.url, started_ms = excluded.started_ms,
                           heartbeat_ms = excluded.heartbeat_ms, lease_ms = excluded.lease_ms, status = 'alive',
                           running = 0, taken_over_by = NULL, taken_over_ms = NULL"
                    ),
                    &[&node.name, &incarnation, &node.labels, &version, &node.url, &node.lease_ms],
                )
                .await
                .map_err(&e)?;
                tx.batch_execute(NOTIFY_QUEUE)
                    .await
                    .map_err(&e)?;
                tx.commit().await.map_err(&e)?;
                Ok(Ok(touched))
            })
            .await?;
        result.map_err(|(name, age_ms)| JoinError::NameInUse { name, age_ms })
    }

    /// Renews this node's lease; `false` when the cluster no longer counts it
    /// alive (another node took its work over).
    /// Renews this node's lease on `line`, a connection of its own outside
    /// the pool (opened again when it broke): a node whose pool is busy (a
    /// takeover, a writer's backlog, many listings) still heartbeats.
    /// Opening a connection may take up to `connect_within`, the heartbeat
    /// itself up to `within`; a try given up leaves its connection to end
    /// by itself (see [`Line::abandoned`]), so that the next try does not
    /// queue behind a silent one. Ok(false): the cluster no longer counts
    /// this run alive.
    pub async fn heartbeat(
        &self,
        line: &HeartbeatLine,
        name: &str,
        incarnation: Uuid,
        running: i32,
        (connect_within, within): (std::time::Duration, std::time::Duration),
    ) -> Result<bool, StoreError> {
        let name = name.to_string();
        let config = self.pg_config.clone();
        let tls = self.tls.clone();
        let line = line.0.clone();
        let shared = self.shared.clone();
        let describe = self.describe();
        let late = |what: &str, after: std::time::Duration| {
            StoreError::message(
                "heartbeat",
                format!(
                    "the database did not {what} within {}",
                    humantime::format_duration(after)
                ),
            )
        };
        let result = self
            .rt
            .spawn(async move {
                let mut line = line.lock().await;
                line.abandoned.retain(|conn| !conn.is_finished());
                if line.current.as_ref().is_some_and(|(c, _)| c.is_closed()) {
                    if let Some((_, conn)) = line.current.take() {
                        conn.abort();
                    }
                }
                if line.current.is_none() {
                    if line.abandoned.len() >= MAX_ABANDONED {
                        return Err(StoreError::message(
                            "heartbeat",
                            "the database has not answered the last heartbeats",
                        ));
                    }
                    // The connection's task, once there is one, whatever
                    // becomes of the try: never left running unaccounted.
                    let mut spawned = None;
                    let connect = async {
                        let (c, connection) = config
                            .connect(tls)
                            .await
                            .map_err(|e| StoreError::new("connect to heartbeat", e))?;
                        spawned = Some(tokio::spawn(async move {
                            let _ = connection.await;
                        }));
                        // As the pool's: a heartbeat answered is one kept
                        // (`synchronous_commit`), or the fence would count
                        // from one the database may lose.
                        c.batch_execute(&super::session_settings())
                            .await
                            .map_err(db("heartbeat"))?;
                        Ok(c)
                    };
                    let connected = tokio::time::timeout(connect_within, connect).await;
                    match (connected, spawned) {
                        (Ok(Ok(c)), Some(conn)) => line.current = Some((c, conn)),
                        (Err(_), conn) => {
                            // Waits for the settings' answer, as a given-up try does.
                            line.abandoned.extend(conn);
                            return Err(late("let this node connect", connect_within));
                        }
                        (Ok(result), conn) => {
                            if let Some(conn) = conn {
                                conn.abort();
                            }
                            return Err(result.err().unwrap_or_else(|| StoreError::message("heartbeat", "no connection")));
                        }
                    }
                }
                let Some((c, _)) = line.current.as_ref() else {
                    return Err(StoreError::message("heartbeat", "no connection"));
                };
                let sql = format!(
                    "UPDATE nodes SET heartbeat_ms = {NOW_MS}, running = $3 WHERE name = $1 AND incarnation = $2 AND status = 'alive'"
                );
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&name, &incarnation, &running];
                let update = c.execute(&sql, &params);
                match tokio::time::timeout(within, update).await {
                    Ok(Ok(n)) => Ok(n == 1),
                    Ok(Err(e)) => {
                        if let Some((_, conn)) = line.current.take() {
                            conn.abort();
                        }
                        Err(db("heartbeat")(e))
                    }
                    Err(_) => {
                        // Given up: with its client gone, the connection
                        // ends once the database answers, or the kernel
                        // gives up on it (`tcp_user_timeout`).
                        if let Some((_, conn)) = line.current.take() {
                            line.abandoned.push(conn);
                        }
                        Err(late("answer", within))
                    }
                }
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::new("heartbeat", e)));
        if let Err(e) = &result {
            if super::is_connection_error(e) {
                super::note(&shared, &describe, &Err(e.clone()));
            }
        }
        result
    }

    /// Marks this node stopped: others take over what it leaves at once.
    pub async fn leave(&self, name: &str, incarnation: Uuid) -> Result<(), StoreError> {
        let name = name.to_string();
        self.with("leave the cluster", move |c| async move {
            c.execute(
                "UPDATE nodes SET status = 'stopped', running = 0 WHERE name = $1 AND incarnation = $2 AND status = 'alive'",
                &[&name, &incarnation],
            )
            .await
            .map_err(db("leave the cluster"))?;
            c.batch_execute(NOTIFY_QUEUE)
                .await
                .map_err(db("leave the cluster"))?;
            Ok(())
        })
        .await
    }

    /// Takes over every node whose lease expired (or that stopped with work
    /// left), each exactly once: marks it dead and hands its work, locked, to
    /// `take`, whose decisions are written in the same transaction. Returns
    /// the nodes taken over and the tasks written.
    pub async fn take_over(
        &self,
        me: &str,
        take: impl Fn(Orphans) -> Vec<Decision> + Send + Sync + 'static,
    ) -> Result<Vec<(String, Vec<Uuid>)>, StoreError> {
        let me = me.to_string();
        self.with("take over a dead node", move |mut c| async move {
            let e = db("take over a dead node");
            let tx = c.transaction().await.map_err(&e)?;
            tx.batch_execute(LOCK_WAIT).await.map_err(&e)?;
            let expired = tx
                .query(
                    &format!(
                        "SELECT name FROM nodes WHERE name <> $1 AND
                           ((status = 'alive' AND heartbeat_ms + lease_ms < {NOW_MS}) OR status = 'stopped')
                         FOR UPDATE SKIP LOCKED"
                    ),
                    &[&me],
                )
                .await
                .map_err(&e)?;
            let mut taken = Vec::new();
            for row in expired {
                let name: String = row.get(0);
                let mut orphans = orphans_of(&tx, &name).await?;
                let had_work = !(orphans.running.is_empty() && orphans.pinned.is_empty() && orphans.callbacks.is_empty());
                let was_stopped = tx
                    .execute(
                        &format!(
                            "UPDATE nodes SET status = 'dead', running = 0, taken_over_by = $2, taken_over_ms = {NOW_MS} WHERE name = $1 AND status = 'alive'"
                        ),
                        &[&name, &me],
                    )
                    .await
                    .map_err(&e)?
                    == 0;
                orphans.died = !was_stopped;
                if was_stopped && !had_work {
                    // Stopped cleanly and left nothing: it stays `stopped`.
                    continue;
                }
                if was_stopped {
                    tx.execute(
                        &format!("UPDATE nodes SET running = 0, taken_over_by = $2, taken_over_ms = {NOW_MS} WHERE name = $1"),
                        &[&name, &me],
                    )
                    .await
                    .map_err(&e)?;
                }
                let written = settle(&tx, &me, orphans, &take).await?;
                taken.push((name, written));
            }
            // A fan_out task pinned to a node that was taken over in the
            // moment between its delivery reading the live nodes and its
            // commit: settled as that node's takeover would have.
            let stranded = tx
                .query(
                    "SELECT DISTINCT t.pinned_node FROM tasks t JOIN nodes n ON n.name = t.pinned_node
                     WHERE t.status = 'queued' AND n.status = 'dead' AND n.name <> $1",
                    &[&me],
                )
                .await
                .map_err(&e)?;
            for row in stranded {
                let name: String = row.get(0);
                let mut orphans = orphans_of(&tx, &name).await?;
                orphans.died = true;
                let written = settle(&tx, &me, orphans, &take).await?;
                if !written.is_empty() {
                    taken.push((name, written));
                }
            }
            if !taken.is_empty() {
                tx.batch_execute(NOTIFY_QUEUE)
                    .await
                    .map_err(&e)?;
            }
            tx.commit().await.map_err(&e)?;
            Ok(taken)
        })
        .await
    }

    /// Claims up to `n` queued tasks this node may run (nothing unless this
    /// run of it, `incarnation`, is alive in the cluster), oldest first: its
    /// labels include the task's `run_on`, the task is pinned to no other
    /// node, its program is under its `max_concurrent` across the cluster,
    /// and its key is held by no other task. Each comes back running on this
    /// node under a new claim.
    pub async fn claim(
        &self,
        node: &str,
        incarnation: Uuid,
        labels: &[String],
        n: usize,
        programs: ClaimPrograms,
        now_ms: i64,
    ) -> Result<Claimed, StoreError> {
        let node = node.to_string();
        let labels = labels.to_vec();
        let ClaimPrograms {
            limits,
            known,
            keyed,
            replacing,
        } = programs;
        self.with("claim tasks", move |c| async move {
            let e = db("claim tasks");
            // Its `BEGIN` rides with the first queries, its `COMMIT` with
            // the updates: two round trips for a claim without keys or
            // limits. Any early return below closes the connection, which
            // rolls the claim back.
            let raw = RawTx::new(c);
            let tx = raw.c();
            // With keys or limits in the config, claims go one at a time from
            // the start: a node that chose its rows while another held its
            // own locked (SKIP LOCKED) could pass over an older task of a key
            // and claim a younger one of the same key, out of order.
            let serial = keyed || !limits.is_empty();
            let scan = (n * 8).clamp(32, 512) as i64;
            // Prepared (cached), so that each request below is sent the
            // moment its future is first polled, not after a round trip.
            let alive_stmt = tx
                .prepare_cached(
                    "SELECT 1 FROM nodes WHERE name = $1 AND incarnation = $2 AND status = 'alive' FOR SHARE",
                )
                .await
                .map_err(&e)?;
            let lock_stmt = tx
                .prepare_cached("SELECT pg_advisory_xact_lock($1)")
                .await
                .map_err(&e)?;
            // Only programs this node has (another node, with a newer config,
            // may have queued a program this one does not know yet).
            let candidates_stmt = tx
                .prepare_cached(
                    "SELECT seq, id, program, key, record, body, pinned_node FROM tasks
                     WHERE status = 'queued' AND (next_attempt_ms IS NULL OR next_attempt_ms <= $1)
                       AND run_on <@ $2 AND (pinned_node IS NULL OR pinned_node = $3)
                       AND program = ANY($5)
                     ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED",
                )
                .await
                .map_err(&e)?;
            let next_due_stmt = tx
                .prepare_cached(
                    "SELECT MIN(next_attempt_ms) FROM tasks WHERE status = 'queued' AND next_attempt_ms > $1
                       AND run_on <@ $2 AND (pinned_node IS NULL OR pinned_node = $3) AND program = ANY($4)",
                )
                .await
                .map_err(&e)?;
            // Locked rows are this node's to claim (SKIP LOCKED: no other
            // node waits on them, none claims them twice).
            // Only a node the cluster counts alive, in this run, claims: one
            // taken over while cut off must not claim new work before it
            // learns so (and stops what it runs). The row is held shared
            // until the claim commits, so a takeover of this node waits for
            // it (and then sees what it claimed) or comes first (and then
            // nothing is claimed).
            //
            // All in one round trip: tokio-postgres sends the futures' requests
            // in the order they are first polled and PostgreSQL runs them in
            // that order, so the settings (the planner misjudges `run_on <@
            // labels` and would rather sort every queued row than walk the
            // queue index in order: 10 ms a claim with a long queue instead
            // of under one) and the lock hold for the queries behind them.
            let (_, _, alive, mut candidates, next_due) = futures_util::future::try_join5(
                tx.batch_execute(BEGIN_CLAIM),
                async {
                    if serial {
                        tx.execute(&lock_stmt, &[&CLAIM_LOCK]).await?;
                    }
                    Ok(())
                },
                tx.query_opt(&alive_stmt, &[&node, &incarnation]),
                tx.query(&candidates_stmt, &[&now_ms, &labels, &node, &scan, &known]),
                tx.query_one(&next_due_stmt, &[&now_ms, &labels, &node, &known]),
            )
            .await
            .map_err(&e)?;
            if alive.is_none() {
                let rolled_back = tx.batch_execute("ROLLBACK").await;
                raw.end(&rolled_back);
                rolled_back.map_err(&e)?;
                return Ok(Claimed {
                    tasks: Vec::new(),
                    next_due_ms: None,
                    stale: Vec::new(),
                });
            }
            let next_due_ms: Option<i64> = next_due.get(0);
            // Program limits and keys hold across nodes: counting what runs
            // and claiming is one node at a time, and only when they matter.
            let guarded = candidates
                .iter()
                .any(|r| r.get::<_, Option<String>>(3).is_some() || limits.contains_key(&r.get::<_, String>(2)));
            let mut running: HashMap<String, usize> = HashMap::new();
            // Who holds each key (a task running, or waiting between attempts).
            let mut holders: Vec<Holder> = Vec::new();
            if guarded {
                if !serial {
                    tx.execute(&lock_stmt, &[&CLAIM_LOCK]).await.map_err(&e)?;
                }
                let (counts, keys) = futures_util::future::try_join(
                    tx.query(
                        "SELECT program, count(*) FROM tasks WHERE status = 'running' GROUP BY program",
                        &[],
                    ),
                    tx.query(
                        "SELECT program, key, id, seq, pinned_node, status = 'running', cancel_requested IS NOT NULL
                         FROM tasks WHERE holds_key",
                        &[],
                    ),
                )
                .await
                .map_err(&e)?;
                for row in counts {
                    running.insert(row.get(0), row.get::<_, i64>(1) as usize);
                }
                holders = keys
                    .iter()
                    .map(|r| Holder {
                        program: r.get(0),
                        key: r.get(1),
                        id: r.get(2),
                        seq: r.get(3),
                        pinned: r.get(4),
                        running: r.get(5),
                        stopping: r.get(6),
                    })
                    .collect();
            }
            let mut claimed = Vec::new();
            let mut stale: Vec<Stale> = Vec::new();
            // The task of a key just after `seq`, queued for the same node
            // (a `fan_out` delivery's tasks for other nodes are not newer
            // ones of this task's key, they are its siblings).
            let newer_stmt = tx
                .prepare_cached(
                    "SELECT id FROM tasks WHERE program = $1 AND key = $2 AND seq > $3
                       AND pinned_node IS NOT DISTINCT FROM $4 AND status IN ('queued', 'running')
                     ORDER BY seq LIMIT 1",
                )
                .await
                .map_err(&e)?;
            // An older queued task of a key that this node may not run (pinned
            // to another node, `fan_out`, or labelled for others): it goes
            // first, wherever it runs (the older ones this node may run come
            // before in the windows, and are judged first).
            let older_elsewhere_stmt = tx
                .prepare_cached(
                    "SELECT 1 FROM tasks WHERE program = $1 AND key = $2 AND seq < $3 AND status = 'queued'
                       AND ((pinned_node IS NOT NULL AND pinned_node <> $4) OR NOT (run_on <@ $5))
                     LIMIT 1",
                )
                .await
                .map_err(&e)?;
            // A window of the oldest claimable rows whose programs are all at
            // their limit, or whose keys are all busy, must not hide the rows
            // behind it: the next window leaves those programs and keys out.
            let next_window_stmt = tx
                .prepare_cached(
                    "SELECT seq, id, program, key, record, body, pinned_node FROM tasks
                     WHERE status = 'queued' AND (next_attempt_ms IS NULL OR next_attempt_ms <= $1)
                       AND run_on <@ $2 AND (pinned_node IS NULL OR pinned_node = $3)
                       AND program = ANY($5) AND seq > $6 AND NOT (program = ANY($7))
                       AND (key IS NULL OR NOT EXISTS (
                             SELECT 1 FROM unnest($8::text[], $9::text[], $10::uuid[]) AS h(p, k, holder)
                             WHERE h.p = tasks.program AND h.k = tasks.key AND h.holder <> tasks.id))
                     ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED",
                )
                .await
                .map_err(&e)?;
            for window in 0.. {
                let last_seq = candidates.last().map(|r| r.get::<_, i64>(0));
                let full_window = candidates.len() as i64 == scan;
                for row in &candidates {
                    if claimed.len() >= n {
                        break;
                    }
                    let (seq, id, program, key, pinned): (i64, Uuid, String, Option<String>, Option<String>) =
                        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(6));
                    // A task a newer one of its key replaces never starts,
                    // whether or not the node that queued the newer one
                    // lived to supersede it (`on_busy: replace`).
                    let replacing_key = key.as_ref().zip(replacing.get(&program));
                    if let Some((k, _)) = replacing_key {
                        if let Some(newer) = tx
                            .query_opt(&newer_stmt, &[&program, k, &seq, &pinned])
                            .await
                            .map_err(&e)?
                        {
                            stale.push(Stale {
                                program: program.clone(),
                                key: k.clone(),
                                by: newer.get(0),
                            });
                            continue;
                        }
                    }
                    if let Some(max) = limits.get(&program) {
                        if running.get(&program).copied().unwrap_or(0) >= *max {
                            continue;
                        }
                    }
                    if let Some(k) = &key {
                        if tx
                            .query_opt(&older_elsewhere_stmt, &[&program, k, &seq, &node, &labels])
                            .await
                            .map_err(&e)?
                            .is_some()
                        {
                            continue;
                        }
                        if let Some(h) = holders
                            .iter()
                            .find(|h| h.program == program && h.key == *k && h.id != id)
                        {
                            // An older holder this task replaces: waiting out a
                            // backoff (superseded), or running under
                            // `cancel_running` and not yet asked to stop.
                            if let Some((_, &stops)) = replacing_key {
                                if h.seq < seq && h.pinned == pinned && (!h.running || (stops && !h.stopping)) {
                                    stale.push(Stale {
                                        program: program.clone(),
                                        key: k.clone(),
                                        by: id,
                                    });
                                }
                            }
                            continue;
                        }
                        holders.push(Holder {
                            program: program.clone(),
                            key: k.clone(),
                            id,
                            seq,
                            pinned: pinned.clone(),
                            running: true,
                            stopping: false,
                        });
                    }
                    let Ok(mut record) = task_row(seq, id.to_string(), row.get(4)) else {
                        continue;
                    };
                    record.state = StateRecord::Running {
                        started_ms: now_ms,
                        pid: None,
                    };
                    record.node = Some(node.clone());
                    record.claim = Some(Uuid::new_v4());
                    *running.entry(program).or_default() += 1;
                    let body: Option<Vec<u8>> = row.get(5);
                    claimed.push((record, Bytes::from(body.unwrap_or_default())));
                }
                // Without limits or keys every row of a window is claimable.
                let (Some(last_seq), true, true, true) = (last_seq, guarded, full_window, claimed.len() < n) else {
                    break;
                };
                if window >= 16 {
                    break;
                }
                let full: Vec<&String> = limits
                    .iter()
                    .filter(|(p, max)| running.get(*p).copied().unwrap_or(0) >= **max)
                    .map(|(p, _)| p)
                    .collect();
                let held_programs: Vec<&String> = holders.iter().map(|h| &h.program).collect();
                let held_keys: Vec<&String> = holders.iter().map(|h| &h.key).collect();
                let held_ids: Vec<Uuid> = holders.iter().map(|h| h.id).collect();
                candidates = tx
                    .query(
                        &next_window_stmt,
                        &[
                            &now_ms,
                            &labels,
                            &node,
                            &scan,
                            &known,
                            &last_seq,
                            &full,
                            &held_programs,
                            &held_keys,
                            &held_ids,
                        ],
                    )
                    .await
                    .map_err(&e)?;
            }
            let update = tx
                .prepare_cached(
                    "UPDATE tasks SET status = 'running', node = $2, claim = $3, holds_key = $4,
                       next_attempt_ms = NULL, cancel_requested = NULL, record = $5 WHERE id = $1",
                )
                .await
                .map_err(&e)?;
            let encoded: Vec<String> = claimed.iter().map(|(r, _)| crate::store::record::encode(r)).collect();
            let committed = futures_util::future::try_join(
                futures_util::future::try_join_all(claimed.iter().zip(&encoded).map(|((r, _), record)| {
                    let update = &update;
                    let node = &node;
                    async move {
                        tx.execute(update, &[&r.id, node, &r.claim, &r.key.is_some(), record])
                            .await
                    }
                })),
                tx.batch_execute("COMMIT"),
            )
            .await;
            raw.end(&committed);
            committed.map_err(&e)?;
            stale.dedup();
            Ok(Claimed {
                tasks: claimed,
                next_due_ms,
                stale,
            })
        })
        .await
    }

    /// Cancels a task that has not started, wherever it was queued: its new
    /// record (finished by `finish`), or `None` when it is not queued.
    pub async fn cancel_queued(
        &self,
        id: Uuid,
        node: &str,
        finish: impl FnOnce(TaskRecord) -> TaskRecord + Send + 'static,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let node = node.to_string();
        self.with("cancel a queued task", move |mut c| async move {
            let e = db("cancel a queued task");
            let tx = c.transaction().await.map_err(&e)?;
            let Some(row) = tx
                .query_opt(
                    "SELECT seq, id::text, record FROM tasks WHERE id = $1 AND status = 'queued' FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(&e)?
            else {
                return Ok(None);
            };
            let Ok(record) = task_row(row.get(0), row.get(1), row.get(2)) else {
                return Ok(None);
            };
            let mut done = finish(record);
            // Whoever cancels it answers for its callbacks, under a claim of
            // its own: a write of whoever held it before (the node whose
            // attempt put it to wait out a backoff) no longer counts.
            // (Unless it lacks the program: then a node that has it does.)
            take_row(&tx, &mut done).await.map_err(&e)?;
            put_written(&tx, &done, &Body::Drop, &node).await?;
            tx.batch_execute(NOTIFY_QUEUE).await.map_err(&e)?;
            tx.commit().await.map_err(&e)?;
            Ok(Some(done))
        })
        .await
    }

    /// Tells every node that task `id` was deleted (`NOTIFY`): the node that
    /// ran it forgets it and its output files too.
    pub async fn announce_deleted(&self, id: Uuid) -> Result<(), StoreError> {
        self.with("announce a deleted task", move |c| async move {
            let payload = serde_json::json!({"id": id, "deleted": true}).to_string();
            c.execute("SELECT pg_notify($1, $2)", &[&CANCEL_CHANNEL, &payload])
                .await
                .map_err(db("announce a deleted task"))?;
            Ok(())
        })
        .await
    }

    /// Asks the node running task `id` to stop it (`NOTIFY`); the node it
    /// runs on, or `None` when it is not running.
    pub async fn request_cancel(&self, id: Uuid, reason: &str) -> Result<Option<String>, StoreError> {
        let reason = reason.to_string();
        self.with("cancel a running task", move |c| async move {
            let e = db("cancel a running task");
            let row = c
                .query_opt(
                    "UPDATE tasks SET cancel_requested = $2 WHERE id = $1 AND status = 'running' RETURNING node",
                    &[&id, &reason],
                )
                .await
                .map_err(&e)?;
            let Some(row) = row else { return Ok(None) };
            let payload = serde_json::json!({"id": id, "reason": reason}).to_string();
            c.execute("SELECT pg_notify($1, $2)", &[&CANCEL_CHANNEL, &payload])
                .await
                .map_err(&e)?;
            Ok(row.get(0))
        })
        .await
    }

    /// Notes in the database a cancel this node carries out itself, so that
    /// a node taking the task over (this one dying before the end is
    /// written) settles it `cancelled` rather than `interrupted`.
    pub async fn note_cancel(&self, id: Uuid, reason: &str) -> Result<(), StoreError> {
        let reason = reason.to_string();
        self.with("note a cancel", move |c| async move {
            c.execute(
                "UPDATE tasks SET cancel_requested = $2 WHERE id = $1 AND status = 'running'",
                &[&id, &reason],
            )
            .await
            .map_err(db("note a cancel"))?;
            Ok(())
        })
        .await
    }

    /// Sends `payloads` on `channel` (`NOTIFY`), in order, in one round trip.
    pub async fn notify_all(&self, channel: &'static str, payloads: Vec<String>) -> Result<(), StoreError> {
        self.with("notify the other nodes", move |c| async move {
            c.execute(
                "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                &[&channel, &payloads],
            )
            .await
            .map_err(db("notify the other nodes"))?;
            Ok(())
        })
        .await
    }

    /// Tasks running on `node` whose stop was asked for, with the reason
    /// (for a node that missed the notification).
    pub async fn cancel_requests(&self, node: &str) -> Result<Vec<(Uuid, String)>, StoreError> {
        let rows = self.running_here(node).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r.id, r.cancel_requested?)))
            .collect())
    }

    /// The queued tasks of `program` with `key` older than `by` and pinned
    /// alike (a `fan_out` delivery's tasks never supersede each other),
    /// finished by `finish` (superseded); and asks the node running one to
    /// stop it when `stop_running`. Returns the superseded records.
    pub async fn supersede(
        &self,
        program: &str,
        key: &str,
        by: Uuid,
        stop_running: bool,
        node: &str,
        finish: impl Fn(TaskRecord) -> TaskRecord + Send + 'static,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let (program, key, node) = (column(program).into_owned(), column(key).into_owned(), node.to_string());
        self.with("supersede queued tasks", move |mut c| async move {
            let e = db("supersede queued tasks");
            let tx = c.transaction().await.map_err(&e)?;
            let rows = tx
                .query(
                    // Only what came before `by`: it may run already (the
                    // other nodes were woken before this), and a later task
                    // of the key is not its to supersede.
                    "SELECT t.seq, t.id::text, t.record FROM tasks t, tasks b
                     WHERE b.id = $3 AND t.program = $1 AND t.key = $2 AND t.status = 'queued' AND t.id <> $3
                       AND t.seq < b.seq AND t.pinned_node IS NOT DISTINCT FROM b.pinned_node FOR UPDATE OF t",
                    &[&program, &key, &by],
                )
                .await
                .map_err(&e)?;
            let mut done = Vec::new();
            for row in rows {
                let Ok(record) = task_row(row.get(0), row.get(1), row.get(2)) else {
                    continue;
                };
                let mut finished = finish(record);
                // Its callbacks are this node's to send, under a claim of its own.
                take_row(&tx, &mut finished).await.map_err(&e)?;
                put_written(&tx, &finished, &Body::Drop, &node).await?;
                done.push(finished);
            }
            if stop_running {
                let reason = format!("superseded by {by}");
                let running = tx
                    .query(
                        "UPDATE tasks t SET cancel_requested = $3 FROM tasks b
                         WHERE b.id = $4 AND t.program = $1 AND t.key = $2 AND t.status = 'running' AND t.id <> $4
                           AND t.seq < b.seq AND t.pinned_node IS NOT DISTINCT FROM b.pinned_node RETURNING t.id",
                        &[&program, &key, &reason, &by],
                    )
                    .await
                    .map_err(&e)?;
                for row in running {
                    let id: Uuid = row.get(0);
                    let payload = serde_json::json!({"id": id, "reason": reason}).to_string();
                    tx.execute("SELECT pg_notify($1, $2)", &[&CANCEL_CHANNEL, &payload])
                        .await
                        .map_err(&e)?;
                }
            }
            if !done.is_empty() {
                // A key a superseded task held is free: nodes look for work.
                tx.batch_execute(NOTIFY_QUEUE).await.map_err(&e)?;
            }
            tx.commit().await.map_err(&e)?;
            Ok(done)
        })
        .await
    }

    /// Finished tasks whose callbacks no node sends, and whose program
    /// `known` names: those no node is named for (the node that took them
    /// over lacked their program), and, with `own`, those named for `node`
    /// that it does not hold (`holding`) and that finished over 30 s ago
    /// (the answer to the write that gave them to it was lost). Now
    /// `node`'s to send, up to 100 at a time, each under the new claim
    /// given with it.
    pub async fn adopt_callbacks(
        &self,
        node: &str,
        known: &[String],
        own: bool,
        holding: Vec<Uuid>,
    ) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let (node, known) = (node.to_string(), known.to_vec());
        self.with("adopt callbacks", move |c| async move {
            let rows = c
                .query(
                    &format!(
                        "UPDATE tasks SET node = $1, claim = gen_random_uuid() WHERE id IN (
                           SELECT id FROM tasks WHERE callbacks_pending
                             AND status NOT IN ('queued', 'running') AND program = ANY($2)
                             AND (node IS NULL OR ($3 AND node = $1 AND finished_ms < {NOW_MS} - 30000
                                                   AND NOT (id = ANY($4))))
                           ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED)
                         RETURNING id, claim"
                    ),
                    &[&node, &known, &own, &holding],
                )
                .await
                .map_err(db("adopt callbacks"))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .await
    }

    /// The rows that say `node` runs them: for its cancel requests, and for
    /// the heartbeat's look for claims whose answer was lost.
    pub async fn running_here(&self, node: &str) -> Result<Vec<RunningRow>, StoreError> {
        let node = node.to_string();
        self.with("list the tasks running here", move |c| async move {
            let rows = c
                .query(
                    "SELECT id, claim, cancel_requested FROM tasks WHERE node = $1 AND status = 'running'",
                    &[&node],
                )
                .await
                .map_err(db("list the tasks running here"))?;
            Ok(rows
                .iter()
                .map(|r| RunningRow {
                    id: r.get(0),
                    claim: r.get(1),
                    cancel_requested: r.get(2),
                })
                .collect())
        })
        .await
    }

    /// Settles tasks `node` claimed without learning it did (the answer to
    /// its claim was lost): each row of `lost` still running there under
    /// the same claim is locked and handed to `take`, whose decisions are
    /// written in the same transaction. Returns the tasks written.
    pub async fn release_lost_claims(
        &self,
        node: &str,
        lost: Vec<(Uuid, Uuid)>,
        take: impl FnOnce(Orphans) -> Vec<Decision> + Send + 'static,
    ) -> Result<Vec<Uuid>, StoreError> {
        let node = node.to_string();
        self.with("put back a lost claim", move |mut c| async move {
            let e = db("put back a lost claim");
            let tx = c.transaction().await.map_err(&e)?;
            tx.batch_execute(LOCK_WAIT).await.map_err(&e)?;
            let ids: Vec<Uuid> = lost.iter().map(|(id, _)| *id).collect();
            let mut orphans = Orphans::none_of(&node);
            for row in tx
                .query(
                    "SELECT seq, id::text, record, body, cancel_requested, claim FROM tasks
                     WHERE node = $1 AND status = 'running' AND id = ANY($2) ORDER BY seq FOR UPDATE",
                    &[&node, &ids],
                )
                .await
                .map_err(&e)?
            {
                let claim: Option<Uuid> = row.get(5);
                let Ok(r) = task_row(row.get(0), row.get(1), row.get(2)) else {
                    continue;
                };
                if !lost.iter().any(|(id, c)| *id == r.id && Some(*c) == claim) {
                    continue;
                }
                if let Some(reason) = row.get::<_, Option<String>>(4) {
                    orphans.cancels.insert(r.id, reason);
                }
                let body: Option<Vec<u8>> = row.get(3);
                orphans.running.push((r, Bytes::from(body.unwrap_or_default())));
            }
            if orphans.running.is_empty() {
                return Ok(Vec::new());
            }
            let written = settle(&tx, &node, orphans, take).await?;
            tx.batch_execute(NOTIFY_QUEUE).await.map_err(&e)?;
            tx.commit().await.map_err(&e)?;
            Ok(written)
        })
        .await
    }

    /// Gives back callbacks adopted under `claim` that this node cannot send
    /// after all (their program left its config): for another node.
    pub async fn abandon_callbacks(&self, id: Uuid, claim: Uuid) -> Result<(), StoreError> {
        self.with("give callbacks back", move |c| async move {
            c.execute(
                "UPDATE tasks SET node = NULL WHERE id = $1 AND claim = $2",
                &[&id, &claim],
            )
            .await
            .map_err(db("give callbacks back"))?;
            Ok(())
        })
        .await
    }

    /// Checks a delivery's dedup key across the cluster: `None` if new (now
    /// held for `record_id` for `window_ms`), else the first delivery's record id.
    ///
    /// A key is held before its delivery is committed; a node that dies (or
    /// loses the database) in between cannot forget it again. A key held
    /// longer than any commit may take whose delivery is not in the
    /// database is such a stranded key, and is taken over (delivery records
    /// named by a live key are never pruned, so an absent one never was).
    pub async fn dedup_check(
        &self,
        source: &str,
        key: &str,
        window_ms: i64,
        record_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let (source, key, record_id) = (
            column(source).into_owned(),
            column(key).into_owned(),
            column(record_id).into_owned(),
        );
        self.with("check a delivery key", move |c| async move {
            let e = db("check a delivery key");
            let row = c
                .query_opt(
                    &format!(
                        "INSERT INTO dedup (source, key, first_id, expires_ms) VALUES ($1, $2, $3, {NOW_MS} + $4)
                         ON CONFLICT (source, key) DO UPDATE SET first_id = excluded.first_id, expires_ms = excluded.expires_ms
                           WHERE dedup.expires_ms < {NOW_MS}
                              OR (dedup.expires_ms - $4 < {NOW_MS} - {STRANDED_MS}
                                  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = dedup.first_id))
                         RETURNING first_id"
                    ),
                    &[&source, &key, &record_id, &window_ms],
                )
                .await
                .map_err(&e)?;
            if row.is_some() {
                return Ok(None);
            }
            let first = c
                .query_opt("SELECT first_id FROM dedup WHERE source = $1 AND key = $2", &[&source, &key])
                .await
                .map_err(&e)?;
            Ok(Some(first.map(|r| r.get(0)).unwrap_or_default()))
        })
        .await
    }

    /// Forgets a delivery key (its delivery was not accepted after all).
    pub async fn dedup_forget(&self, source: &str, key: &str) -> Result<(), StoreError> {
        let (source, key) = (column(source).into_owned(), column(key).into_owned());
        self.with("forget a delivery key", move |c| async move {
            c.execute("DELETE FROM dedup WHERE source = $1 AND key = $2", &[&source, &key])
                .await
                .map_err(db("forget a delivery key"))?;
            Ok(())
        })
        .await
    }

    /// Every node the cluster has known, with what it runs and has claimed.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        self.with("list nodes", |c| async move {
            let rows = c
                .query(
                    &format!(
                        "SELECT n.name, n.labels, n.version, n.url, n.started_ms, n.heartbeat_ms,
                           {NOW_MS} - n.heartbeat_ms, n.lease_ms, n.status, n.running, n.taken_over_by,
                           (SELECT count(*) FROM tasks t WHERE t.node = n.name AND t.status = 'running')
                         FROM nodes n ORDER BY n.name"
                    ),
                    &[],
                )
                .await
                .map_err(db("list nodes"))?;
            let time = |ms: i64| humantime::format_rfc3339_millis(crate::store::time_of(ms)).to_string();
            Ok(rows
                .iter()
                .map(|r| {
                    let status: String = r.get(8);
                    let age: i64 = r.get(6);
                    let lease: i64 = r.get(7);
                    NodeRow {
                        name: r.get(0),
                        labels: r.get(1),
                        version: r.get(2),
                        // As every URL is shown, though a node's is its address.
                        url: crate::secret::mask_url(r.get(3)),
                        started_at: time(r.get(4)),
                        last_heartbeat: time(r.get(5)),
                        heartbeat_age_ms: age,
                        alive: status == "alive" && age < lease,
                        status,
                        running: r.get(9),
                        claimed: r.get(11),
                        taken_over_by: r.get(10),
                    }
                })
                .collect())
        })
        .await
    }

    /// How many tasks wait in the cluster's queue.
    pub async fn queued(&self) -> Result<usize, StoreError> {
        self.with("count queued tasks", |c| async move {
            let row = c
                .query_one("SELECT count(*) FROM tasks WHERE status = 'queued'", &[])
                .await
                .map_err(db("count queued tasks"))?;
            Ok(row.get::<_, i64>(0) as usize)
        })
        .await
    }

    /// A running task's node and that node's API address.
    pub async fn running_on(&self, id: Uuid) -> Result<Option<(String, String)>, StoreError> {
        self.with("find a task's node", move |c| async move {
            let row = c
                .query_opt(
                    "SELECT t.node, n.url FROM tasks t JOIN nodes n ON n.name = t.node WHERE t.id = $1 AND t.status = 'running'",
                    &[&id],
                )
                .await
                .map_err(db("find a task's node"))?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
        .await
    }
}

/// A node's work, locked.
async fn orphans_of(tx: &deadpool_postgres::Transaction<'_>, node: &str) -> Result<Orphans, StoreError> {
    let e = db("read a node's work");
    let mut orphans = Orphans::none_of(node);
    for row in tx
        .query(
            "SELECT seq, id::text, record, body, cancel_requested FROM tasks WHERE node = $1 AND status = 'running' ORDER BY seq FOR UPDATE",
            &[&node],
        )
        .await
        .map_err(&e)?
    {
        let body: Option<Vec<u8>> = row.get(3);
        match task_row(row.get(0), row.get(1), row.get(2)) {
            Ok(r) => {
                if let Some(reason) = row.get::<_, Option<String>>(4) {
                    orphans.cancels.insert(r.id, reason);
                }
                orphans.running.push((r, Bytes::from(body.unwrap_or_default())))
            }
            Err(u) => tracing::error!(table = u.table, id = %u.id, error = %u.error, "a task of a node taken over cannot be read; it is left as it is"),
        }
    }
    for row in tx
        .query(
            "SELECT seq, id::text, record FROM tasks WHERE pinned_node = $1 AND status = 'queued' ORDER BY seq FOR UPDATE",
            &[&node],
        )
        .await
        .map_err(&e)?
    {
        if let Ok(r) = task_row(row.get(0), row.get(1), row.get(2)) {
            orphans.pinned.push(r);
        }
    }
    for row in tx
        .query(
            "SELECT seq, id::text, record FROM tasks WHERE node = $1 AND callbacks_pending AND status NOT IN ('queued', 'running') FOR UPDATE",
            &[&node],
        )
        .await
        .map_err(&e)?
    {
        if let Ok(r) = task_row(row.get(0), row.get(1), row.get(2)) {
            orphans.callbacks.push(r);
        }
    }
    Ok(orphans)
}

/// Writes the taker's decisions for `orphans` (whatever their claims were):
/// each row's claim is cleared, and the rows that end up with the taker
/// (finished with callbacks to send) name it as their node.
async fn settle(
    tx: &deadpool_postgres::Transaction<'_>,
    taker: &str,
    orphans: Orphans,
    take: impl FnOnce(Orphans) -> Vec<Decision>,
) -> Result<Vec<Uuid>, StoreError> {
    let e = db("settle a node's work");
    let mut written = Vec::new();
    for (mut record, body) in take(orphans) {
        // The old claim goes: nothing the dead node writes later counts. A
        // finished task whose callbacks the taker sends gets a claim of the
        // taker's, so that nothing an earlier holder of them writes counts
        // either (a node cut off while sending them).
        if crate::store::postgres::columns(&record).callbacks_pending && !record.callbacks_unknown {
            take_row(tx, &mut record).await.map_err(&e)?;
        } else {
            tx.execute("UPDATE tasks SET claim = NULL WHERE id = $1", &[&record.id])
                .await
                .map_err(&e)?;
            record.claim = None;
        }
        // Its callbacks are the taker's to send (the record still says where
        // it ran), or, when the taker lacks the program, wait for a node
        // that has it (`adopt_callbacks`).
        put_written(tx, &record, &body, taker).await?;
        written.push(record.id);
    }
    Ok(written)
}

/// Gives `record`'s row a new claim, in the row and the record alike: the
/// writes of whoever held it before are dropped from now on.
async fn take_row(
    tx: &deadpool_postgres::Transaction<'_>,
    record: &mut TaskRecord,
) -> Result<(), tokio_postgres::Error> {
    let claim = Uuid::new_v4();
    tx.execute("UPDATE tasks SET claim = $2 WHERE id = $1", &[&record.id, &claim])
        .await?;
    record.claim = Some(claim);
    Ok(())
}

/// [`put_task`] by `sender` of a row this transaction holds: not written is
/// an error, never an outcome reported but not stored.
async fn put_written(
    tx: &deadpool_postgres::Transaction<'_>,
    record: &TaskRecord,
    body: &Body,
    sender: &str,
) -> Result<(), StoreError> {
    match put_task(tx, record, body, Some(sender)).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(message(
            "write a task",
            format!("the row of task {} was not written", record.id),
        )),
        Err(e) => Err(db("write a task")(e)),
    }
}

/// A store error from a message (for the node loops).
pub fn error(op: &'static str, text: impl Into<String>) -> StoreError {
    message(op, text)
}
