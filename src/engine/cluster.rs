//! The engine as one node of a cluster sharing a PostgreSQL store.
//!
//! Admission commits a delivery's tasks to the shared queue (any node may
//! accept); each node then claims what it may run ([`Postgres::claim`]: its
//! labels, pins, cluster-wide program limits and keys) up to its own
//! `tasks.max_concurrent`, when woken by `NOTIFY`, when a retry becomes due,
//! and every few seconds in case a notification was lost. A node
//! heartbeats; when another node's lease expires it takes that node's work
//! over, exactly once ([`Postgres::take_over`]), deciding for each task what
//! its program says ([`decide`]). Stopping is asked of the node running a
//! task through `NOTIFY` too, and so are the events of `/events` while
//! another node has listeners ([`relay`]).

use super::events::Event;
use super::task::{Attempt, Outcome, Status, Task, TaskState};
use super::{Engine, Inner};
use crate::process::Program;
use crate::store::postgres::cluster::{Decision, JoinError, NodeInfo, Orphans};
use crate::store::postgres::{Postgres, CANCEL_CHANNEL, EVENTS_CHANNEL, MAX_NOTIFY, QUEUE_CHANNEL, WATCH_CHANNEL};
use crate::store::record::{CallbackRecord, CallbackStatus};
use crate::store::{millis, Body};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

/// How often a node looks for work even without being told of any.
const SAFETY_POLL: Duration = Duration::from_secs(5);
/// How many events may wait to be relayed; more are dropped (listeners elsewhere get a `reset`).
const RELAY_ROOM: usize = 4096;
/// How many events one `NOTIFY` round trip carries at most.
const RELAY_BATCH: usize = 256;
/// How old (in leases) the last heartbeat the database took may be before
/// this node stops the tasks that must never run twice at once ([`fence`]);
/// what is left of them is killed at [`KILL_AT`], before any other node
/// may count this one dead (at a whole lease).
const FENCE_AT: f64 = 0.7;
const KILL_AT: f64 = 0.85;
/// How often a fenced node looks again (for handlers started meanwhile, and for its kill time).
const FENCE_TICK: Duration = Duration::from_millis(50);
/// The outcome of a task [`fence`] stopped (`interrupted`, or run again
/// with `on_interrupt: rerun`).
pub(super) const FENCED: &str = "this node could not reach the database for most of its lease: the task was stopped before another node could take it over, so that it never runs twice at once";

/// This node's place in the cluster.
pub struct Cluster {
    pub(super) pg: Arc<Postgres>,
    pub(super) info: NodeInfo,
    incarnation: Mutex<Uuid>,
    /// When this node sent the last heartbeat (or join) the database took:
    /// the cluster counts it dead a lease after that at the earliest.
    beat: Mutex<Instant>,
    /// Wakes the claim loop.
    pub(super) wake: Notify,
    /// The cluster's queue length, as last counted (for `max_queued`).
    pub(super) queued: AtomicUsize,
    /// Live nodes and their labels, as last read (for `fan_out`).
    live: Mutex<Vec<(String, Vec<String>)>>,
    /// Since when the database answers without a break: a node takes over
    /// others only after a whole lease of that, so that every live node has
    /// had the chance to heartbeat after an outage of the database.
    connected_since: Mutex<Option<Instant>>,
    /// Leaving: claim nothing more.
    leaving: AtomicBool,
    /// Until when another node's `/events` has listeners (it says so every heartbeat).
    watched_until: Mutex<Option<Instant>>,
    /// Claims asked for whose tasks are not yet in this node's table: while
    /// there are some, a row running here that the table lacks may be one
    /// of theirs, not a lost claim.
    claiming: AtomicUsize,
}

impl Cluster {
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The cluster's queue length, as last counted.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn incarnation(&self) -> Uuid {
        *self.incarnation.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn beat(&self) -> Instant {
        *self.beat.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The database took a heartbeat (or join) this node sent at `sent`.
    fn beaten(&self, sent: Instant) {
        let mut beat = self.beat.lock().unwrap_or_else(|p| p.into_inner());
        *beat = (*beat).max(sent);
    }

    /// The live nodes whose labels include all of `run_on`.
    pub fn live_nodes(&self, run_on: &[String]) -> Vec<String> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, labels)| run_on.iter().all(|l| labels.contains(l)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// As [`Cluster::live_nodes`], read from the database now (the last
    /// heartbeat's list when it cannot be read).
    pub async fn live_nodes_now(&self, run_on: &[String]) -> Vec<String> {
        if let Ok(nodes) = self.pg.nodes().await {
            *self.live.lock().unwrap_or_else(|p| p.into_inner()) = nodes
                .into_iter()
                .filter(|n| n.alive)
                .map(|n| (n.name, n.labels))
                .collect();
        }
        self.live_nodes(run_on)
    }

    fn connected(&self, ok: bool) {
        let mut since = self.connected_since.lock().unwrap_or_else(|p| p.into_inner());
        match (ok, since.is_some()) {
            (true, false) => *since = Some(Instant::now()),
            (false, true) => *since = None,
            _ => {}
        }
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.info.lease_ms as u64)
    }

    /// How often this node heartbeats (and, with listeners, says so): a third of the lease.
    fn every(&self) -> Duration {
        (self.lease() / 3).max(Duration::from_millis(200))
    }

    /// Whether another node's `/events` has had listeners lately.
    fn watched(&self) -> bool {
        self.watched_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t > Instant::now())
    }

    /// Connected for at least a whole lease.
    fn steady(&self) -> bool {
        let lease = self.lease();
        self.connected_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() >= lease)
    }
}

impl Engine {
    /// Joins the cluster whose database is this engine's store, as `info`:
    /// settles what an earlier run of this node left (like a restart's
    /// recovery), then starts claiming work, heartbeating and watching for
    /// dead nodes.
    pub async fn join_cluster(&self, info: NodeInfo) -> Result<(), JoinError> {
        let inner = self.inner.clone();
        let Some(pg) = inner.store.as_ref().and_then(|s| s.postgres()).cloned() else {
            return Ok(());
        };
        let incarnation = Uuid::new_v4();
        let runtime = inner.runtime.clone();
        let decider = inner.clone();
        let me = info.name.clone();
        pg.set_node(&info.name);
        stop_orphans(
            &inner,
            &pg,
            &info.name,
            Duration::from_millis(info.lease_ms.max(0) as u64),
        )
        .await;
        let sent = Instant::now();
        let touched = pg
            .join(&info, incarnation, move |orphans| decide(&decider, orphans, &me))
            .await?;
        let cluster = Arc::new(Cluster {
            pg,
            info,
            incarnation: Mutex::new(incarnation),
            beat: Mutex::new(sent),
            wake: Notify::new(),
            queued: AtomicUsize::new(0),
            live: Mutex::new(Vec::new()),
            connected_since: Mutex::new(Some(Instant::now())),
            leaving: AtomicBool::new(false),
            watched_until: Mutex::new(None),
            claiming: AtomicUsize::new(0),
        });
        if inner.cluster.set(cluster.clone()).is_err() {
            return Ok(());
        }
        if !touched.is_empty() {
            tracing::warn!(count = touched.len(), "settled what an earlier run of this node left");
        }
        let after = inner.clone();
        runtime.spawn(async move { after.settled(touched).await });
        runtime.spawn(heartbeats(inner.clone(), cluster.clone()));
        runtime.spawn(fence(inner.clone(), cluster.clone()));
        runtime.spawn(listen(inner.clone(), cluster.clone()));
        if let Some(events) = inner.events.relay_to(RELAY_ROOM) {
            runtime.spawn(relay(inner.clone(), cluster.clone(), events));
        }
        runtime.spawn(watching(inner.clone(), cluster.clone()));
        runtime.spawn(claims(inner, cluster));
        Ok(())
    }

    /// The cluster this node is part of, if any.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.get()
    }
}

impl Inner {
    /// Reports the tasks a takeover (or a join) wrote: finished ones are
    /// counted and their callbacks sent from here.
    async fn settled(self: &Arc<Self>, ids: Vec<Uuid>) {
        let Some(store) = self.store.clone() else { return };
        for id in ids {
            let Ok(Some(record)) = store.task(id).await else {
                continue;
            };
            let program = self.program(&record.program);
            let task = Task::from_record(&record, program, bytes::Bytes::new());
            let TaskState::Finished { outcome, .. } = &task.state else {
                continue;
            };
            let status = outcome.status();
            log_taken(id, outcome);
            self.events.publish("task.finished", super::finished_data(&task));
            self.metrics
                .task_finished(&task.spec.program.name, status.as_str(), None);
            if record.callbacks.iter().any(|c| c.status == CallbackStatus::Pending) && !record.callbacks_unknown {
                // As written, under the claim the takeover gave it.
                self.lock().replace_or_restore(task);
                self.resume_callbacks(id, status);
            }
        }
        self.changed.notify_waiters();
    }

    /// Sends the callbacks of finished tasks no node was sending (a node
    /// lacking their program took them over, see `decide`; or the answer
    /// to the write that gave them to this node was lost), now that this
    /// node adopted them under a claim of its own: those its config wants
    /// for the task's end, going on from any attempts made.
    async fn adopt(self: &Arc<Self>, adopted: Vec<(Uuid, Uuid)>) {
        let Some(store) = self.store.clone() else { return };
        for (id, claim) in adopted {
            let Ok(Some(record)) = store.task(id).await else {
                continue;
            };
            let Some(program) = (self.programs.load().lookup)(&record.program) else {
                // Gone from the config since (a reload): for another node.
                if let Some(cluster) = self.cluster.get() {
                    let _ = cluster.pg.abandon_callbacks(id, claim).await;
                }
                continue;
            };
            let mut task = Task::from_record(&record, program, bytes::Bytes::new());
            // Its writes count from now on, anyone else's no longer.
            task.claim = Some(claim);
            let TaskState::Finished { outcome, .. } = &task.state else {
                continue;
            };
            let status = outcome.status();
            tracing::info!(task_id = %id, program = %record.program, "sending callbacks no node was sending");
            task.callbacks_unknown = false;
            // This copy, under the new claim (an older one of this node's is stale).
            self.lock().replace_or_restore(task);
            self.resume_callbacks(id, status);
            // Written now: with none to send, the task no longer waits.
            self.persist(id);
        }
    }

    /// A program of the config in force, or a stand-in named `name` (whose
    /// tasks fail: it is no longer in the config).
    pub(super) fn program(&self, name: &str) -> Arc<Program> {
        (self.programs.load().lookup)(name).unwrap_or_else(|| {
            Arc::new(Program {
                name: name.into(),
                ..Program::default()
            })
        })
    }
}

fn log_taken(id: Uuid, outcome: &Outcome) {
    let (_, error) = outcome.code_and_error();
    tracing::warn!(task_id = %id, status = outcome.status().as_str(), reason = error.as_deref(), "task settled after its node stopped");
}

/// What becomes of a dead node's work, as its programs say: a task that had
/// not started goes back to the queue; one that ran is `interrupted` (or
/// queued again as its next attempt with `on_interrupt: rerun`); a task
/// pinned to the dead node (`fan_out`) is `interrupted`, never moved; a
/// finished task's undelivered callbacks are sent by the taker.
pub(super) fn decide(inner: &Arc<Inner>, orphans: Orphans, me: &str) -> Vec<Decision> {
    let now = SystemTime::now();
    let ours = orphans.node == me;
    let reason_ran = if ours {
        "daemon stopped while running".to_string()
    } else {
        format!("node `{}` stopped while the task ran", orphans.node)
    };
    let output_limit = inner.limits.load().output_limit;
    let mut out = Vec::new();
    let mut live = None;
    for (record, body) in orphans.running {
        let known = (inner.programs.load().lookup)(&record.program).is_some();
        // A program this node lacks (another node has it: a rolling change
        // of the config) is settled by what its record says of it, and its
        // task goes back to the queue for a node that has it, as any other.
        let program = if known {
            inner.program(&record.program)
        } else {
            Arc::new(Program {
                name: record.program.as_str().into(),
                rerun_interrupted: record.rerun_interrupted,
                ..Program::default()
            })
        };
        let mut task = Task::from_record(&record, program.clone(), body);
        if ours {
            // Claimed here, and its handler started before the crash let
            // this node record it: the run it is, not a task to start again.
            if let Some(state) = super::recover::started_unrecorded(&task, &mut live, now) {
                tracing::warn!(task_id = %task.id(), "this node stopped before it recorded that the task started, but its handler is running");
                task.state = state;
            }
        }
        let pinned_here = record.pinned_node.as_deref() == Some(orphans.node.as_str());
        // This node's earlier run spawned its handler (the attempt's output
        // files got their names, which happens only then) but died before it
        // recorded the pid: the handler ran, and is gone.
        let spawned_here = ours
            && matches!(task.state, TaskState::Running { pid: None, .. })
            && inner
                .outputs
                .file(task.id(), task.attempt, crate::process::output::Stream::Stdout)
                .exists();
        let started = spawned_here || matches!(task.state, TaskState::Running { pid: Some(_), .. });
        let tails = if ours {
            inner.tails(task.id(), task.attempt, output_limit)
        } else {
            Default::default()
        };
        let started_at = match task.state {
            TaskState::Running { started_at, .. } => Some(started_at),
            _ => None,
        };
        if let (
            true,
            TaskState::Running {
                started_at,
                pid: Some(pid),
            },
        ) = (ours, &task.state)
        {
            // This node's earlier run left it: its handler may still be
            // alive here, as after a single node's restart.
            if super::recover::still_ours(*pid, task.id(), *started_at) {
                if program.rerun_interrupted && !pinned_here {
                    tracing::warn!(task_id = %task.id(), pid, "the handler of an interrupted task is still running; its process group is stopped before the task runs again");
                    super::recover::stop_orphan(*pid, program.kill_grace);
                } else {
                    tracing::warn!(task_id = %task.id(), pid, "the handler of an interrupted task is still running; it is left alone and its output goes on into its file");
                }
            }
        }
        if let Some(reason) = orphans.cancels.get(&task.id()) {
            // Cancelled by request before the node could stop it: cancelled,
            // never run again.
            finish(
                &mut task,
                started_at.filter(|_| started),
                now,
                Outcome::Cancelled { reason: reason.clone() },
            );
        } else if !started {
            let why = if pinned_here {
                Some("stopped before the task started; it was pinned to that node (fan_out)")
            } else if orphans.died && !program.rerun_interrupted {
                // Its handler may have started in the moment before the node
                // died: a program not run again after an interruption is not
                // risked twice.
                Some("died after claiming the task, before it recorded a start: it may have run, so it is not run again (on_interrupt: mark)")
            } else {
                None
            };
            let Some(why) = why else {
                // Claimed, never started: someone else may take it.
                task.state = TaskState::Queued { next_attempt_at: None };
                task.node = None;
                out.push((task.record(), Body::Keep));
                continue;
            };
            finish(
                &mut task,
                None,
                now,
                Outcome::Interrupted {
                    reason: format!("node `{}` {why}", orphans.node),
                },
            );
        } else if program.rerun_interrupted && !pinned_here {
            task.attempts.push(Attempt {
                attempt: task.attempt,
                outcome: Outcome::Interrupted {
                    reason: reason_ran.clone(),
                },
                started_at,
                finished_at: now,
                // The end of its output, as any earlier attempt keeps.
                stdout: super::task::last_bytes(&tails.stdout, super::task::ATTEMPT_TAIL).into(),
                stderr: super::task::last_bytes(&tails.stderr, super::task::ATTEMPT_TAIL).into(),
            });
            task.attempt += 1;
            task.state = TaskState::Queued { next_attempt_at: None };
            task.node = None;
            out.push((task.record(), Body::Keep));
            continue;
        } else {
            task.output = Some(tails);
            finish(
                &mut task,
                started_at,
                now,
                Outcome::Interrupted {
                    reason: reason_ran.clone(),
                },
            );
        }
        out.push((task.record(), Body::Drop));
    }
    for record in orphans.pinned {
        let program = inner.program(&record.program);
        let mut task = Task::from_record(&record, program, bytes::Bytes::new());
        finish(
            &mut task,
            None,
            now,
            Outcome::Interrupted {
                reason: format!(
                    "node `{}` is gone and the task was pinned to it (fan_out)",
                    orphans.node
                ),
            },
        );
        out.push((task.record(), Body::Drop));
    }
    for record in orphans.callbacks {
        // Unchanged: the taker sends them.
        out.push((record, Body::Keep));
    }
    mark_unknown_callbacks(inner, &mut out);
    out
}

/// Finishes a task taken over, with its callbacks marked pending (the taker sends them).
fn finish(task: &mut Task, started_at: Option<SystemTime>, now: SystemTime, outcome: Outcome) {
    let status = outcome.status();
    task.callbacks = task
        .spec
        .program
        .callbacks
        .iter()
        .filter(|c| c.when.contains(&status))
        .map(|c| CallbackRecord {
            url: c.url.masked_webhook(),
            status: CallbackStatus::Pending,
            attempts: 0,
            last_error: None,
        })
        .collect();
    task.state = TaskState::Finished {
        started_at,
        finished_at: now,
        outcome,
    };
    task.body = bytes::Bytes::new();
}

/// Heartbeats every third of the lease (joining again when the cluster
/// counted this node dead), and after each heartbeat taken asks for a
/// [`round`]. The round runs apart, so that however long it takes
/// (a takeover of many tasks), no heartbeat waits for it, and heartbeats
/// go over a connection of their own, so that none waits for the pool: a
/// busy node is neither fenced ([`fence`]) nor taken over for being busy.
/// A heartbeat that fails or gets no answer within a fifth of the lease is
/// tried again every twentieth of it (on a new connection) until one is
/// taken: a blip of the database costs a node its keyed tasks only when it
/// lasts until 70 % of a lease after the last heartbeat taken (see
/// [`heartbeat_pace`]).
async fn heartbeats(inner: Arc<Inner>, cluster: Arc<Cluster>) {
    let lease = cluster.lease();
    let (budget, retry) = heartbeat_pace(lease);
    let line = crate::store::postgres::cluster::HeartbeatLine::default();
    let next_round = Arc::new(Notify::new());
    inner
        .runtime
        .spawn(round(inner.clone(), cluster.clone(), next_round.clone()));
    let mut next = Instant::now();
    loop {
        tokio::time::sleep_until(next).await;
        if cluster.leaving.load(Ordering::Relaxed) {
            // The round ends too.
            next_round.notify_one();
            return;
        }
        let running = inner.lock().counts().0 as i32;
        let sent = Instant::now();
        match cluster
            .pg
            .heartbeat(&line, cluster.name(), cluster.incarnation(), running, budget)
            .await
        {
            Ok(true) => {
                cluster.beaten(sent);
                cluster.connected(true);
                next_round.notify_one();
                next = sent + cluster.every();
            }
            Ok(false) => {
                cluster.connected(true);
                rejoin(&inner, &cluster).await;
                next = Instant::now() + cluster.every();
            }
            Err(e) => {
                if cluster.steady() {
                    tracing::error!(error = %e, "cannot heartbeat: the database is out of reach; running tasks go on (but those that must never run twice at once, stopped at 70 % of the lease), their ends are recorded once it is back");
                }
                cluster.connected(false);
                next = (sent + retry).max(Instant::now());
            }
        }
    }
}

/// For a lease: how long opening the heartbeat's connection may take (a
/// fifth of the lease, but up to 2 s within its first third: a database a
/// few round trips away, with TLS, still connects under a short lease),
/// how long one heartbeat may take (a fifth), and how soon a failed one is
/// tried again (a twentieth).
fn heartbeat_pace(lease: Duration) -> ((Duration, Duration), Duration) {
    let within = lease / 5;
    let connect = within.max(Duration::from_secs(2).min(lease / 3));
    ((connect, within), lease / 20)
}

/// After a heartbeat the database took: refreshes what admission needs to
/// know of the cluster; takes over nodes whose lease expired; sends the
/// callbacks no node sends; puts back claims whose answer was lost.
async fn round(inner: Arc<Inner>, cluster: Arc<Cluster>, next: Arc<Notify>) {
    let mut suspects: HashMap<(Uuid, Uuid), Instant> = HashMap::new();
    loop {
        next.notified().await;
        if cluster.leaving.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(n) = cluster.pg.queued().await {
            cluster.queued.store(n, Ordering::Relaxed);
        }
        if let Ok(nodes) = cluster.pg.nodes().await {
            *cluster.live.lock().unwrap_or_else(|p| p.into_inner()) = nodes
                .into_iter()
                .filter(|n| n.alive)
                .map(|n| (n.name, n.labels))
                .collect();
        }
        if !cluster.steady() {
            continue;
        }
        let decider = inner.clone();
        let me = cluster.name().to_string();
        let taken = cluster
            .pg
            .take_over(cluster.name(), move |orphans| decide(&decider, orphans, &me))
            .await;
        match taken {
            Ok(taken) => {
                for (node, ids) in taken {
                    tracing::warn!(node = %node, tasks = ids.len(), "took over the work of a node whose lease expired");
                    inner.settled(ids).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not check for dead nodes"),
        }
        let known = inner.programs.load().known.clone();
        // Its own rows only while its writes go through: one waiting in the
        // writer's backlog may be the one that says they were delivered.
        let own = cluster.pg.healthy();
        let holding = inner.lock().sending_callbacks();
        match cluster.pg.adopt_callbacks(cluster.name(), &known, own, holding).await {
            Ok(ids) => inner.adopt(ids).await,
            Err(e) => tracing::debug!(error = %e, "could not look for callbacks no node sends"),
        }
        lost_claims(&inner, &cluster, &mut suspects).await;
    }
}

/// Puts back the tasks of a claim that committed but whose answer was lost
/// (the connection dropped at that moment): rows running under this node
/// that its table does not hold, with no claim of its own in flight, its
/// writes going through, seen so twice a whole lease apart under the same
/// claim. This node never started them, so they go back to the queue (or
/// end cancelled, when that was asked for meanwhile).
async fn lost_claims(inner: &Arc<Inner>, cluster: &Arc<Cluster>, suspects: &mut HashMap<(Uuid, Uuid), Instant>) {
    let Ok(rows) = cluster.pg.running_here(cluster.name()).await else {
        return;
    };
    // After the rows were read: a claim that gave one of them has either
    // put its tasks in the table by now, or lost its answer.
    let quiet = cluster.claiming.load(Ordering::SeqCst) == 0 && cluster.pg.healthy();
    let unknown: HashSet<(Uuid, Uuid)> = {
        let sched = inner.lock();
        rows.into_iter()
            .filter_map(|r| Some((r.id, r.claim?)))
            .filter(|(id, _)| sched.get(id).is_none())
            .collect()
    };
    if !quiet {
        suspects.clear();
        return;
    }
    suspects.retain(|k, _| unknown.contains(k));
    let now = Instant::now();
    let mut lost = Vec::new();
    for k in unknown {
        let since = *suspects.entry(k).or_insert(now);
        if now.duration_since(since) >= cluster.lease() {
            lost.push(k);
        }
    }
    if lost.is_empty() {
        return;
    }
    let decider = inner.clone();
    match cluster
        .pg
        .release_lost_claims(cluster.name(), lost, move |orphans| decide_lost(&decider, orphans))
        .await
    {
        Ok(ids) if !ids.is_empty() => {
            tracing::warn!(
                tasks = ids.len(),
                "tasks this node claimed without learning it (the database's answer was lost) go back to the queue"
            );
            for id in &ids {
                suspects.retain(|(s, _), _| s != id);
            }
            inner.settled(ids).await;
            cluster.wake.notify_one();
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "could not put back a lost claim"),
    }
}

/// What becomes of tasks claimed here without this node learning it: they
/// never started, so they go back to the queue as they were (a `fan_out`
/// task stays pinned here), or end cancelled when that was asked for.
fn decide_lost(inner: &Arc<Inner>, orphans: Orphans) -> Vec<Decision> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for (record, body) in orphans.running {
        let mut task = Task::from_record(&record, inner.program(&record.program), body);
        if let Some(reason) = orphans.cancels.get(&task.id()) {
            finish(&mut task, None, now, Outcome::Cancelled { reason: reason.clone() });
            out.push((task.record(), Body::Drop));
        } else {
            task.state = TaskState::Queued { next_attempt_at: None };
            task.node = None;
            out.push((task.record(), Body::Keep));
        }
    }
    mark_unknown_callbacks(inner, &mut out);
    out
}

/// A finished task whose callbacks this node cannot send (it lacks the
/// program, so it knows neither their URLs nor their secrets) is left for
/// a node that has it, which works them out and sends them (`adopt_callbacks`).
fn mark_unknown_callbacks(inner: &Arc<Inner>, out: &mut [Decision]) {
    for (record, _) in out {
        let finished = matches!(record.state, crate::store::record::StateRecord::Finished { .. });
        if finished && (inner.programs.load().lookup)(&record.program).is_none() {
            record.callbacks_unknown = true;
        }
    }
}

/// The cluster counted this node dead (its lease expired while it could not
/// reach the database) and its work was taken over: what it still runs no
/// longer counts, so it is stopped; the node joins again as a new run.
async fn rejoin(inner: &Arc<Inner>, cluster: &Arc<Cluster>) {
    tracing::error!("this node's lease expired and its work was taken over by another node: its running tasks are stopped, and it joins again");
    {
        let mut sched = inner.lock();
        let ids: Vec<Uuid> = sched.running_ids().copied().collect();
        sched.taken_over.extend(ids);
        sched.stop_running("this node's work was taken over by another node");
        // What ended here while cut off may not have been recorded (the
        // taker's outcome was): from now on the store's records are shown.
        sched.forget_finished();
    }
    let incarnation = Uuid::new_v4();
    let sent = Instant::now();
    match cluster.pg.join(&cluster.info, incarnation, |_| Vec::new()).await {
        Ok(_) => {
            *cluster.incarnation.lock().unwrap_or_else(|p| p.into_inner()) = incarnation;
            cluster.beaten(sent);
            cluster.wake.notify_one();
        }
        Err(e) => tracing::error!(error = %e, "could not join the cluster again"),
    }
}

/// Keeps a node cut off from the database from running a task beside the
/// node that takes it over. A lease after the last heartbeat the database
/// took, the cluster counts this node dead, and the taker runs again what
/// ran here (`on_interrupt: rerun`) and frees its keys and program slots:
/// so, from 70 % of a lease on without a heartbeat taken, the running tasks
/// whose programs say so (`on_interrupt: rerun`, a `concurrency_key`, a
/// program's `max_concurrent`) are stopped (SIGTERM), and at 85 % what is
/// left of their process groups is killed. A stopped task ends
/// `interrupted` (or runs again, `on_interrupt: rerun`), which is written
/// if the database comes back before the lease is over; otherwise the
/// taker's outcome stands. Other tasks keep running through any outage.
async fn fence(inner: Arc<Inner>, cluster: Arc<Cluster>) {
    let lease = cluster.lease();
    loop {
        let beat = cluster.beat();
        tokio::time::sleep_until(beat + lease.mul_f64(FENCE_AT)).await;
        if cluster.leaving.load(Ordering::Relaxed) {
            return;
        }
        if cluster.beat() != beat {
            continue;
        }
        let kill_at = beat + lease.mul_f64(KILL_AT);
        let mut told = false;
        while cluster.beat() == beat && !cluster.leaving.load(Ordering::Relaxed) {
            let groups = inner.lock().stop_where(FENCED, |t| {
                must_not_run_twice(&t.spec.program, t.spec.key.is_some(), t.spec.pinned_node.is_some())
            });
            if !groups.is_empty() && !told {
                tracing::warn!(
                    tasks = groups.len(),
                    "this node has not reached the database for most of its lease: the tasks that must never run twice at once are stopped before another node takes them over"
                );
                told = true;
            }
            if Instant::now() >= kill_at {
                for group in groups {
                    crate::process::kill_group(group);
                }
            }
            tokio::time::sleep(FENCE_TICK).await;
        }
    }
}

/// Whether a task of `program` (`keyed`, `pinned` to a node) running here
/// would run beside another once a takeover gave its work, its key or its
/// program's slot to another node.
fn must_not_run_twice(program: &Program, keyed: bool, pinned: bool) -> bool {
    (program.rerun_interrupted && !pinned) || keyed || program.max_concurrent.is_some()
}

/// Stops the handlers that an earlier run of this node left on this host
/// when its daemon died (`kill -9`, the OOM killer), where their tasks must
/// never run twice at once: the other nodes cannot see them, and once that
/// run's lease is over one of them runs such a task again, or the next of
/// its key, beside them. Done at start, before joining (also when the join
/// is then refused because that run's lease still holds the name), so a
/// daemon restarted at once, as systemd does, leaves no such window. Their
/// tasks are read together, within a fifth of the lease; a handler whose
/// task cannot be read (the database out of reach) is stopped too, as it
/// may be one of those. All are stopped at once.
async fn stop_orphans(inner: &Arc<Inner>, pg: &Arc<Postgres>, node: &str, lease: Duration) {
    let me = node.to_string();
    let orphans = tokio::task::spawn_blocking(move || super::recover::orphans_of(&me))
        .await
        .unwrap_or_default();
    if orphans.is_empty() {
        return;
    }
    // One deadline for all, each read on its own: one slow read leaves the others.
    let deadline = Instant::now() + lease / 5;
    let records = futures_util::future::join_all(
        orphans
            .iter()
            .map(|o| async move { tokio::time::timeout_at(deadline, pg.task(o.id)).await.ok() }),
    )
    .await;
    let programs = inner.programs.load();
    let mut stop = Vec::new();
    for (i, orphan) in orphans.into_iter().enumerate() {
        let (id, pid) = (orphan.id, orphan.pid);
        match &records[i] {
            Some(Ok(Some(Ok(record)))) => {
                let Some(program) = (programs.lookup)(&record.program) else {
                    continue;
                };
                if !must_not_run_twice(&program, record.key.is_some(), record.pinned_node.is_some()) {
                    continue;
                }
                tracing::warn!(task_id = %id, pid, "a handler that an earlier run of this node left running when its daemon died is stopped (its process group): its task must never run twice at once, and another node may run it or the next of its key");
                stop.push((orphan, program.kill_grace));
            }
            // No such task in this cluster: not one of its handlers.
            Some(Ok(None)) => {}
            _ => {
                tracing::warn!(task_id = %id, pid, "a handler that an earlier run of this node left running when its daemon died is stopped (its process group): its task cannot be read, and it may be one that must never run twice at once");
                stop.push((orphan, Program::default().kill_grace));
            }
        }
    }
    let _ = tokio::task::spawn_blocking(move || super::recover::stop_orphans(stop)).await;
}

/// Listens for `NOTIFY`: work to claim, tasks to stop, other nodes'
/// events and watchers. Reconnects when the connection drops, and then
/// looks for what it may have missed (and tells this node's event
/// listeners to reload: other nodes' events may have been missed).
async fn listen(inner: Arc<Inner>, cluster: Arc<Cluster>) {
    let mut backoff = Duration::from_millis(200);
    let mut first = true;
    loop {
        if cluster.leaving.load(Ordering::Relaxed) {
            return;
        }
        let (client, mut rx) = match cluster.pg.dedicated().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let listening = client
            .batch_execute(&format!(
                "LISTEN {QUEUE_CHANNEL}; LISTEN {CANCEL_CHANNEL}; LISTEN {EVENTS_CHANNEL}; LISTEN {WATCH_CHANNEL};"
            ))
            .await;
        if listening.is_err() {
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(200);
        if !first {
            inner.events.reset();
        }
        first = false;
        // Anything missed while not listening.
        cluster.wake.notify_one();
        if let Ok(requests) = cluster.pg.cancel_requests(cluster.name()).await {
            for (id, reason) in requests {
                stop_here(&inner, id, &reason);
            }
        }
        while let Some(n) = rx.recv().await {
            match n.channel() {
                CANCEL_CHANNEL => {
                    let v: serde_json::Value = serde_json::from_str(n.payload()).unwrap_or_default();
                    if v["deleted"] == true {
                        if let Some(id) = v["id"].as_str().and_then(|s| s.parse().ok()) {
                            forget_here(&inner, id);
                        }
                    } else if let (Some(id), Some(reason)) =
                        (v["id"].as_str().and_then(|s| s.parse().ok()), v["reason"].as_str())
                    {
                        stop_here(&inner, id, reason);
                    }
                }
                EVENTS_CHANNEL => relayed(&inner, &cluster, n.payload()),
                WATCH_CHANNEL => {
                    if n.payload() != cluster.name() {
                        *cluster.watched_until.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Instant::now() + cluster.lease());
                        inner.events.set_relaying(true);
                    }
                }
                _ => cluster.wake.notify_one(),
            }
        }
        drop(client);
    }
}

/// An event another node relayed: published here (see [`parse_relayed`]).
fn relayed(inner: &Arc<Inner>, cluster: &Arc<Cluster>, payload: &str) {
    match parse_relayed(payload, cluster.name()) {
        Some(Relayed::Reset) => inner.events.reset(),
        Some(Relayed::Event(kind, data)) => inner.events.publish_relayed(kind, data.to_string()),
        None => {}
    }
}

/// What a payload on the events channel says.
#[derive(Debug, PartialEq)]
enum Relayed<'a> {
    /// Events of the sender were lost on the way: listeners reload.
    Reset,
    /// An event: its kind and JSON.
    Event(&'a str, &'a str),
}

/// Reads a payload as [`relay_payloads`] writes it (`kind`, the sender's
/// name as a JSON string, the event's JSON, one per line); `None` for this
/// node's own (`me`) and for anything else: an event's JSON is one line,
/// so nothing another database client sends can end an SSE event early.
fn parse_relayed<'a>(payload: &'a str, me: &str) -> Option<Relayed<'a>> {
    let mut parts = payload.splitn(3, '\n');
    let (kind, from, data) = (parts.next()?, parts.next()?, parts.next()?);
    if data.contains(['\n', '\r']) || serde_json::from_str::<String>(from).ok()? == me {
        return None;
    }
    Some(if kind == "reset" {
        Relayed::Reset
    } else {
        Relayed::Event(kind, data)
    })
}

/// Relays this node's events to the others while one of them has
/// listeners, a batch per round trip, once the store has committed what
/// they tell of. Events that could not be sent
/// (the database out of reach, the relay full, one too long for `NOTIFY`)
/// are replaced by a `reset`, so that listeners elsewhere reload.
async fn relay(inner: Arc<Inner>, cluster: Arc<Cluster>, mut events: tokio::sync::mpsc::Receiver<Arc<Event>>) {
    let from = serde_json::Value::from(cluster.name()).to_string();
    let mut lost = false;
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        while batch.len() < RELAY_BATCH {
            match events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if !cluster.watched() {
            inner.events.set_relaying(false);
            // A watcher that came meanwhile keeps it on.
            if cluster.watched() {
                inner.events.set_relaying(true);
            }
            // Nobody elsewhere missed anything: a new watcher starts afresh.
            inner.events.take_dropped();
            lost = false;
            continue;
        }
        lost |= inner.events.take_dropped();
        let payloads = relay_payloads(&batch, &from, lost);
        // What the events tell must be readable from every node when they
        // arrive: the store's writes queued before them are committed first.
        if let Err(e) = cluster.pg.commit(Vec::new()).await {
            tracing::debug!(error = %e, "events not relayed: the writes they tell of are not committed");
            lost = true;
            continue;
        }
        match cluster.pg.notify_all(EVENTS_CHANNEL, payloads).await {
            Ok(()) => lost = false,
            Err(e) => {
                tracing::debug!(error = %e, "could not relay events to the other nodes");
                lost = true;
            }
        }
    }
}

/// The `NOTIFY` payloads of a batch of events from the node `from` (its
/// name as a JSON string): `kind`, `from` and the event's JSON, one per
/// line. A `reset` comes first when earlier events were `lost`, and stands
/// in for an event too long for `NOTIFY` (one `reset` for a run of them).
fn relay_payloads(batch: &[Arc<Event>], from: &str, lost: bool) -> Vec<String> {
    let reset = format!("reset\n{from}\n{{}}");
    let mut payloads = Vec::with_capacity(batch.len() + 1);
    if lost {
        payloads.push(reset.clone());
    }
    for e in batch {
        let payload = format!("{}\n{from}\n{}", e.kind, e.data);
        if payload.len() <= MAX_NOTIFY {
            payloads.push(payload);
        } else if payloads.last() != Some(&reset) {
            payloads.push(reset.clone());
        }
    }
    payloads
}

/// While this node's `/events` has listeners, tells the other nodes so
/// every third of the lease (they relay their events for as long as a lease).
async fn watching(inner: Arc<Inner>, cluster: Arc<Cluster>) {
    loop {
        inner.events.wait_for_listener().await;
        while inner.events.listening() {
            if cluster.leaving.load(Ordering::Relaxed) {
                return;
            }
            let me = vec![cluster.name().to_string()];
            if let Err(e) = cluster.pg.notify_all(WATCH_CHANNEL, me).await {
                tracing::debug!(error = %e, "could not tell the other nodes this one has event listeners");
            }
            tokio::time::sleep(cluster.every()).await;
        }
    }
}

/// Another node deleted finished task `id`: this node forgets its copy and
/// the output files it kept of it.
fn forget_here(inner: &Arc<Inner>, id: Uuid) {
    if inner.lock().remove(id).is_ok() {
        inner.outputs.remove(id);
    }
}

/// Stops a task if it runs on this node.
fn stop_here(inner: &Arc<Inner>, id: Uuid, reason: &str) {
    let mut sched = inner.lock();
    if sched.is_running(&id) {
        tracing::info!(task_id = %id, reason, "stopping a task at another node's request");
        let _ = sched.cancel(id, reason, SystemTime::now());
    }
}

/// Claims work while this node has room: when woken, when a retry is due,
/// and every few seconds.
async fn claims(inner: Arc<Inner>, cluster: Arc<Cluster>) {
    let mut next_due: Option<Instant> = None;
    loop {
        let sleep_until = next_due
            .unwrap_or_else(|| Instant::now() + SAFETY_POLL)
            .min(Instant::now() + SAFETY_POLL);
        tokio::select! {
            _ = cluster.wake.notified() => {}
            _ = tokio::time::sleep_until(sleep_until) => {}
        }
        loop {
            if cluster.leaving.load(Ordering::Relaxed) {
                return;
            }
            let free = {
                let sched = inner.lock();
                if sched.draining {
                    break;
                }
                inner.limits.load().max_concurrent.saturating_sub(sched.counts().0)
            };
            if free == 0 {
                break;
            }
            let programs = {
                let programs = inner.programs.load();
                crate::store::postgres::cluster::ClaimPrograms {
                    limits: programs.limits.clone(),
                    known: programs.known.clone(),
                    keyed: programs.keyed,
                    replacing: programs.replacing.clone(),
                }
            };
            let now_ms = millis(SystemTime::now());
            // Counted until its tasks are in the table (or it failed).
            let _claiming = Claiming::new(&cluster.claiming);
            let claimed = match cluster
                .pg
                .claim(
                    cluster.name(),
                    cluster.incarnation(),
                    &cluster.info.labels,
                    free,
                    programs,
                    now_ms,
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "could not claim work");
                    next_due = Some(Instant::now() + Duration::from_millis(500));
                    break;
                }
            };
            next_due = claimed.next_due_ms.map(|due| {
                let wait = (due - now_ms).max(0) as u64;
                Instant::now() + Duration::from_millis(wait)
            });
            let got = claimed.tasks.len();
            // No longer queued: counted so until the next count of the queue.
            let _ = cluster
                .queued
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(got)));
            for (record, body) in claimed.tasks {
                let program = inner.program(&record.program);
                let mut task = Task::from_record(&record, program, body);
                // This node's program: its command, as configured here.
                task.render_again();
                task.node = Some(cluster.name().into());
                let id = task.id();
                let stop = inner.lock().insert_running(task);
                let run = inner.clone();
                inner.runtime.spawn(async move { run.run_task(id, stop).await });
            }
            for stale in claimed.stale {
                let program = inner.program(&stale.program);
                supersede(&inner, &cluster, program, stale.key, stale.by);
            }
            if got < free {
                break;
            }
        }
    }
}

/// One claim in flight, counted while it lives.
struct Claiming<'a>(&'a AtomicUsize);

impl<'a> Claiming<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Claiming(count)
    }
}

impl Drop for Claiming<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Engine {
    /// Leaves the cluster after the shutdown's drain: no more claims or
    /// heartbeats; what is left running here is taken over by another node
    /// at once (or settled by this node's next start).
    pub(super) async fn leave_cluster(&self) {
        let Some(cluster) = self.inner.cluster.get() else {
            return;
        };
        cluster.leaving.store(true, Ordering::Relaxed);
        cluster.wake.notify_one();
        // The ends of the tasks that ran here are written first: once this
        // node is `stopped`, another takes over whatever still looks running.
        if let Some(store) = self.inner.store.as_ref() {
            if let Err(e) = store.commit(Vec::new()).await {
                tracing::warn!(error = %e, "could not write the last task ends before leaving the cluster");
            }
        }
        if let Err(e) = cluster.pg.leave(cluster.name(), cluster.incarnation()).await {
            tracing::warn!(error = %e, "could not tell the cluster this node stops; its lease will expire instead");
        }
    }

    /// (A cluster.) Keeps in the database a cancel of a task running here,
    /// for whoever takes it over should this node die before its end is
    /// written.
    pub(super) async fn note_cancel_in_cluster(&self, id: Uuid, reason: &str) {
        let Some(cluster) = self.inner.cluster.get() else {
            return;
        };
        if let Err(e) = cluster.pg.note_cancel(id, reason).await {
            tracing::warn!(task_id = %id, error = %e, "could not note the cancel in the database; the handler is being stopped all the same");
        }
    }

    /// Cancels a task anywhere in the cluster: queued, at once (its callbacks
    /// sent from here); running on another node, by asking that node.
    pub(super) async fn cancel_remote(&self, id: Uuid, reason: &str) -> Result<Status, super::TaskError> {
        let Some(cluster) = self.inner.cluster.get().cloned() else {
            return Err(super::TaskError::NotFound(id));
        };
        let inner = self.inner.clone();
        let why = reason.to_string();
        let finisher = inner.clone();
        let cancelled = cluster
            .pg
            .cancel_queued(id, cluster.name(), move |record| {
                let program = finisher.program(&record.program);
                let mut task = Task::from_record(&record, program, bytes::Bytes::new());
                finish(&mut task, None, SystemTime::now(), Outcome::Cancelled { reason: why });
                // Its callbacks are for a node with the program to send.
                task.callbacks_unknown = (finisher.programs.load().lookup)(&record.program).is_none();
                task.record()
            })
            .await
            .map_err(|e| super::TaskError::Store(e.to_string()))?;
        if let Some(record) = cancelled {
            let program = inner.program(&record.program);
            let task = Task::from_record(&record, program, bytes::Bytes::new());
            inner
                .metrics
                .task_finished(&task.spec.program.name, Status::Cancelled.as_str(), None);
            inner.lock().restore(task);
            if !record.callbacks_unknown {
                inner.start_callbacks(id, Status::Cancelled);
            }
            inner.changed.notify_waiters();
            return Ok(Status::Queued);
        }
        match cluster.pg.request_cancel(id, reason).await {
            Ok(Some(_)) => Ok(Status::Running),
            Ok(None) => match self.store().map(|s| s.task(id)) {
                Some(read) => match read.await {
                    Ok(Some(r)) => Err(super::TaskError::Finished(id, r.state.status().as_str())),
                    Ok(None) => Err(super::TaskError::NotFound(id)),
                    Err(e) => Err(super::TaskError::Store(e.to_string())),
                },
                None => Err(super::TaskError::NotFound(id)),
            },
            Err(e) => Err(super::TaskError::Store(e.to_string())),
        }
    }

    /// After queuing a task whose program replaces others of its key: the
    /// queued ones anywhere are cancelled (reported from here), and with
    /// `cancel_running` the running one is asked to stop.
    pub(super) fn supersede_in_cluster(&self, task: &Task) {
        let Some(cluster) = self.inner.cluster.get() else {
            return;
        };
        let Some(key) = task.spec.key.clone() else { return };
        supersede(
            &self.inner,
            cluster,
            task.spec.program.clone(),
            key.to_string(),
            task.id(),
        );
    }
}

/// Supersedes the older tasks of `program`'s `key` (queued, and with
/// `cancel_running` the running one) in favour of the task `by`: after
/// queuing `by`, or when a claim finds them left over (the node that queued
/// `by` died before it could).
fn supersede(inner: &Arc<Inner>, cluster: &Arc<Cluster>, program: Arc<Program>, key: String, by: Uuid) {
    let stop_running = program.on_busy == crate::process::program::OnBusy::CancelRunning;
    let (inner, cluster) = (inner.clone(), cluster.clone());
    {
        let runtime = inner.runtime.clone();
        runtime.spawn(async move {
            let reason = format!("superseded by {by}");
            // Tried again while the database refuses (the older tasks of the
            // key must not run for a hiccup); it only ever touches tasks
            // older than `by`, so a late try is still right.
            let mut backoff = Duration::from_millis(500);
            let done = loop {
                let (finisher, reason) = (inner.clone(), reason.clone());
                let done = cluster
                    .pg
                    .supersede(&program.name, &key, by, stop_running, cluster.name(), move |record| {
                        let program = finisher.program(&record.program);
                        let mut task = Task::from_record(&record, program, bytes::Bytes::new());
                        finish(
                            &mut task,
                            None,
                            SystemTime::now(),
                            Outcome::Cancelled { reason: reason.clone() },
                        );
                        task.record()
                    })
                    .await;
                match done {
                    Err(e) if !cluster.leaving.load(Ordering::Relaxed) && backoff < Duration::from_secs(60) => {
                        tracing::warn!(error = %e, "could not supersede the queued tasks of a key; trying again");
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                    done => break done,
                }
            };
            match done {
                Ok(records) => {
                    for record in records {
                        let id = record.id;
                        let task = Task::from_record(&record, inner.program(&record.program), bytes::Bytes::new());
                        inner
                            .metrics
                            .task_finished(&task.spec.program.name, Status::Cancelled.as_str(), None);
                        inner.lock().restore(task);
                        inner.start_callbacks(id, Status::Cancelled);
                    }
                    inner.changed.notify_waiters();
                }
                Err(e) => tracing::warn!(error = %e, "could not supersede the queued tasks of a key"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &'static str, data: &str) -> Arc<Event> {
        Arc::new(Event {
            id: 1,
            kind,
            data: data.into(),
        })
    }

    #[test]
    fn relayed_events_read_back_and_what_cannot_go_becomes_a_reset() {
        let from = serde_json::Value::from("web-1").to_string();
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_NOTIFY));
        let batch = [
            event("task.started", r#"{"task":"t1"}"#),
            event("task.finished", &big),
            event("task.finished", &big),
            event("delivery.recorded", r#"{"delivery":"d"}"#),
        ];
        let sent = relay_payloads(&batch, &from, false);
        let read: Vec<_> = sent.iter().map(|p| parse_relayed(p, "web-2").unwrap()).collect();
        assert_eq!(
            read,
            [
                Relayed::Event("task.started", r#"{"task":"t1"}"#),
                // Two events too long for NOTIFY: one reset in their place.
                Relayed::Reset,
                Relayed::Event("delivery.recorded", r#"{"delivery":"d"}"#),
            ]
        );
        assert!(sent.iter().all(|p| p.len() <= MAX_NOTIFY));
        // After a loss, the reset comes first.
        let sent = relay_payloads(&batch[..1], &from, true);
        assert_eq!(parse_relayed(&sent[0], "web-2"), Some(Relayed::Reset));
        assert_eq!(sent.len(), 2);
        // A node skips its own; odd payloads are ignored, not published.
        assert_eq!(parse_relayed(&sent[1], "web-1"), None);
        for odd in [
            "task.started",
            "task.started\n\"web-1\"",
            "task.started\nweb-1\n{}",
            "task.started\n\"web-3\"\n{}\n\nevent: x",
            "task.started\n\"web-3\"\n{}\r",
        ] {
            assert_eq!(parse_relayed(odd, "web-2"), None, "{odd:?}");
        }
    }
}
