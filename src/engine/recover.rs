//! Restart recovery: what the store says was queued runs again in its order
//! and keys; what was running is marked interrupted (or run again with
//! `on_interrupt: rerun`); backoffs resume; undelivered callbacks are retried.
//! A stored row that cannot be read is never skipped silently: it is logged
//! with its id and counted (`Recovered::unreadable`), and `/readyz` and
//! `hookrunner db check` report it.

use super::task::{Attempt, Outcome, Status, Task, TaskState};
use super::Engine;
use crate::process::Program;
use crate::store::StoreError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// What a start found in the store.
#[derive(Debug, Default)]
pub struct Recovered {
    pub queued: usize,
    pub interrupted: usize,
    pub rerun: usize,
    pub orphaned: usize,
    pub callbacks: usize,
    /// Unfinished rows that could not be read (logged with their ids).
    pub unreadable: usize,
    /// Output files of tasks no longer stored, deleted.
    pub stray_outputs: usize,
}

pub(super) const INTERRUPTED: &str = "daemon stopped while running";

/// Whether the process `pid` is still the handler of task `id`: alive, and
/// with `HOOK_TASK_ID=<id>` in its environment (a pid recorded before a
/// reboot may belong to someone else by now). A handler without the `HOOK_*`
/// variables (`hook_env: false`) is recognised instead as the leader of its
/// own process group that started when the task did (`started_at`).
pub(super) fn still_ours(pid: u32, id: Uuid, started_at: SystemTime) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("HOOK_TASK_ID={id}");
    let mut vars = environ.split(|b| *b == 0);
    if vars.clone().any(|v| v == wanted.as_bytes()) {
        return true;
    }
    !vars.any(|v| v.starts_with(b"HOOK_TASK_ID=")) && started_near(pid, started_at)
}

/// Whether `pid` leads its own process group and started within a few
/// seconds of `at`.
fn started_near(pid: u32, at: SystemTime) -> bool {
    let read = || -> Option<bool> {
        let (leader, started) = group_leader_since(pid)?;
        let started = started.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
        let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
        Some(leader && (started - at).abs() < 3.0)
    };
    read().unwrap_or(false)
}

/// Whether `pid` leads its own process group, and when it started (by
/// `/proc/<pid>/stat` and the boot time in `/proc/stat`).
fn group_leader_since(pid: u32) -> Option<(bool, SystemTime)> {
    stat_of(pid).map(|s| (s.group == pid, s.since))
}

/// What `/proc/<pid>/stat` says of a process.
struct Stat {
    parent: u32,
    group: u32,
    since: SystemTime,
    /// When it started, in clock ticks after boot (what tells it from a
    /// later process given the same pid).
    ticks: u64,
}

fn stat_of(pid: u32) -> Option<Stat> {
    let stat = crate::process::parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let (parent, group) = (stat.parent, u32::try_from(stat.group).ok()?);
    let ticks_since_boot = stat.start_ticks?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let started = boot as f64 + ticks_since_boot as f64 / hz as f64;
    Some(Stat {
        parent,
        group,
        since: std::time::UNIX_EPOCH + Duration::from_secs_f64(started),
        ticks: ticks_since_boot,
    })
}

/// The handlers alive on this host that lead their process group, by the
/// `HOOK_TASK_ID` in their environment, with when each started. A crash
/// between a handler's spawn and the write that records its pid leaves a
/// task stored as not yet started while its handler runs on: recovery looks
/// it up here (once, and only when some task could be in that state) so that
/// it is treated as the run it is, never started a second time beside it.
/// A handler without the `HOOK_*` variables (`hook_env: false`) cannot be
/// found this way.
pub(super) fn live_handlers() -> std::collections::HashMap<Uuid, (u32, SystemTime)> {
    handlers_here()
        .into_iter()
        .map(|h| (h.id, (h.pid, h.stat.since)))
        .collect()
}

/// A handler alive on this host, leading its own process group.
struct Handler {
    pid: u32,
    id: Uuid,
    /// Its `HOOK_NODE`.
    node: Option<String>,
    stat: Stat,
}

/// The handlers alive on this host that lead their process group, known by
/// the `HOOK_TASK_ID` in their environment. Only processes of the daemon's
/// own user: another user's process is none of its handlers, whatever its
/// environment says.
fn handlers_here() -> Vec<Handler> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    let Some(me) = effective_uid("self") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if effective_uid(&pid.to_string()) != Some(me) {
            continue;
        }
        // Another user's process: its environment cannot be read anyway.
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let var = |name: &[u8]| {
            environ
                .split(|b| *b == 0)
                .find_map(|v| v.strip_prefix(name))
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        let Some(id) = var(b"HOOK_TASK_ID=").and_then(|v| Uuid::parse_str(v).ok()) else {
            continue;
        };
        let node = var(b"HOOK_NODE=").map(str::to_string);
        if let Some(stat) = stat_of(pid).filter(|s| s.group == pid) {
            found.push(Handler { pid, id, node, stat });
        }
    }
    found
}

/// The effective user id of process `pid` (`self` for this one), from the
/// `Uid:` line of `/proc/<pid>/status` (the owner of `/proc/<pid>` is root
/// for a process that is not dumpable, a daemon given capabilities say).
fn effective_uid(pid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// A handler that an earlier run of this node left on this host.
#[derive(Debug, Clone)]
pub(super) struct Orphan {
    pub pid: u32,
    pub id: Uuid,
    /// When it started (clock ticks after boot), to tell it from a later
    /// process given its pid.
    ticks: u64,
}

/// The handlers on this host that node `node` started and no daemon runs
/// any more: their parent is not a hookrunner (neither this binary nor a
/// process of the same name, so a daemon run from another path, an older
/// build or one being replaced, still owns its handlers): the daemon that
/// spawned them died and they were adopted.
pub(super) fn orphans_of(node: &str) -> Vec<Orphan> {
    let exe = |pid: &str| {
        let path = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        let path = path.to_string_lossy();
        Some(path.strip_suffix(" (deleted)").unwrap_or(&path).to_string())
    };
    let comm = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|c| c.trim_end_matches('\n').to_string())
    };
    let (Some(my_exe), Some(my_comm)) = (exe("self"), comm("self")) else {
        return Vec::new();
    };
    handlers_here()
        .into_iter()
        .filter(|h| h.node.as_deref() == Some(node))
        .filter(|h| {
            let parent = h.stat.parent.to_string();
            exe(&parent).as_deref() != Some(my_exe.as_str()) && comm(&parent).as_deref() != Some(my_comm.as_str())
        })
        .map(|h| Orphan {
            pid: h.pid,
            id: h.id,
            ticks: h.stat.ticks,
        })
        .collect()
}

/// Stops the process groups of `orphans` together (see [`stop_groups`]),
/// leaving alone a handler whose pid now belongs to another process (it
/// ended since it was found, and the pid was given again).
pub(super) fn stop_orphans(orphans: Vec<(Orphan, Duration)>) {
    stop_groups(orphans.into_iter().map(|(o, grace)| (o.pid, Some(o.ticks), grace)));
}

/// Stops process groups together, each `(leader, its start time if it
/// must be checked again, grace)`: SIGTERM to all at once, then SIGKILL to
/// each group still there when its grace is over.
fn stop_groups(groups: impl IntoIterator<Item = (u32, Option<u64>, Duration)>) {
    use nix::sys::signal::{killpg, Signal};
    let start = std::time::Instant::now();
    let mut stopping = Vec::new();
    for (pid, ticks, grace) in groups {
        // Under 2 is no handler's group (to `killpg`, 0 is the daemon's own).
        let Ok(raw @ 2..) = i32::try_from(pid) else {
            continue;
        };
        // Its leader gone, its group may live on; a pid that leads a group
        // is given to no new process while the group lasts.
        if let Some(ticks) = ticks {
            if !stat_of(pid).is_none_or(|s| s.ticks == ticks && s.group == pid) {
                continue;
            }
        }
        let group = nix::unistd::Pid::from_raw(raw);
        let _ = killpg(group, Signal::SIGTERM);
        stopping.push((group, pid, start + grace));
    }
    loop {
        stopping.retain(|(group, pid, deadline)| {
            if !crate::process::group_alive(*group) {
                return false;
            }
            if std::time::Instant::now() >= *deadline {
                crate::process::kill_group(*pid);
                return false;
            }
            true
        });
        if stopping.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A task stored as not (yet) started whose handler is alive here: the
/// state of the run it is (see [`live_handlers`]).
pub(super) fn started_unrecorded(
    task: &Task,
    live: &mut Option<std::collections::HashMap<Uuid, (u32, SystemTime)>>,
    now: SystemTime,
) -> Option<TaskState> {
    let could_have_started = match task.state {
        TaskState::Queued { next_attempt_at } => next_attempt_at.is_none_or(|at| at <= now),
        TaskState::Running { pid: None, .. } => true,
        _ => false,
    };
    if !could_have_started {
        return None;
    }
    let (pid, started_at) = *live.get_or_insert_with(live_handlers).get(&task.id())?;
    Some(TaskState::Running {
        started_at,
        pid: Some(pid),
    })
}

/// Stops the process group of a handler that outlived the daemon: SIGTERM,
/// up to `grace` for it to go, then SIGKILL.
pub(super) fn stop_orphan(pgid: u32, grace: Duration) {
    stop_groups([(pgid, None, grace)]);
}

impl Engine {
    /// Loads unfinished work from the store. Call once, before serving.
    /// `program` finds a program of the config in force by name.
    pub fn recover(&self, program: &dyn Fn(&str) -> Option<Arc<Program>>) -> Result<Recovered, StoreError> {
        let inner = &self.inner;
        // A cluster's nodes settle what was left when they join (`cluster.rs`).
        let Some(store) = inner.store.as_ref().filter(|s| s.sqlite().is_some()) else {
            return Ok(Recovered::default());
        };
        inner.next_seq.store(store.max_task_seq()? + 1, Ordering::Relaxed);
        let mut found = Recovered::default();
        let mut to_persist = Vec::new();
        let mut interrupted = Vec::new();
        let mut delayed = Vec::new();
        let output_limit = inner.limits.load().output_limit;
        let (records, unreadable) = store.unfinished_tasks()?;
        found.unreadable = unreadable.len();
        let now = SystemTime::now();
        let mut live = None;
        let mut settled = std::collections::HashSet::new();
        for (record, body) in records {
            let (program, gone) = match program(&record.program) {
                Some(p) => (p, false),
                None => (
                    Arc::new(Program {
                        name: record.program.as_str().into(),
                        ..Program::default()
                    }),
                    true,
                ),
            };
            let mut task = Task::from_record(&record, program, body);
            if !gone && !task.state.is_finished() {
                // It runs with the program as configured now.
                task.render_again();
            }
            let id = task.id();
            settled.insert(id);
            if gone {
                found.orphaned += 1;
                tracing::warn!(task_id = %id, program = %record.program, "task not run: its program is no longer in the config");
                task.output = Some(inner.tails(id, task.attempt, output_limit));
                task.state = TaskState::Finished {
                    started_at: task.state.started_at(),
                    finished_at: now,
                    outcome: Outcome::Failed {
                        exit_code: None,
                        error: Some(format!("program `{}` is no longer in the config", record.program)),
                    },
                };
                task.body = bytes::Bytes::new();
                inner.lock().restore(task);
                to_persist.push(id);
                continue;
            }
            if let Some(state) = started_unrecorded(&task, &mut live, now) {
                tracing::warn!(task_id = %id, "the daemon stopped before it recorded that this task started, but its handler is running");
                task.state = state;
            }
            if let TaskState::Running { started_at, pid } = task.state {
                found.interrupted += 1;
                let orphan = pid.filter(|p| still_ours(*p, id, started_at));
                if let Some(pid) = orphan {
                    if task.spec.program.rerun_interrupted {
                        // It runs again: the old run must not go on beside it.
                        tracing::warn!(task_id = %id, pid, "the handler of an interrupted task is still running; its process group is stopped before the task runs again");
                        stop_orphan(pid, task.spec.program.kill_grace);
                    } else {
                        tracing::warn!(task_id = %id, pid, "the handler of an interrupted task is still running; it is left alone and its output goes on into its file");
                    }
                }
                let tails = inner.tails(id, task.attempt, output_limit);
                let outcome = Outcome::Interrupted {
                    reason: INTERRUPTED.into(),
                };
                if task.spec.program.rerun_interrupted {
                    found.rerun += 1;
                    tracing::warn!(task_id = %id, "task interrupted: the daemon stopped while it ran; it runs again (on_interrupt: rerun)");
                    task.attempts.push(Attempt {
                        attempt: task.attempt,
                        outcome,
                        started_at: Some(started_at),
                        finished_at: now,
                        stdout: super::task::last_bytes(&tails.stdout, super::task::ATTEMPT_TAIL).into(),
                        stderr: super::task::last_bytes(&tails.stderr, super::task::ATTEMPT_TAIL).into(),
                    });
                    task.attempt += 1;
                    task.state = TaskState::Queued { next_attempt_at: None };
                } else {
                    tracing::warn!(task_id = %id, "task interrupted: the daemon stopped while it ran");
                    if let Some(pid) = orphan {
                        // Its handler runs on: nothing of its key starts beside it.
                        let held = inner.lock().hold_orphan_key(&task);
                        if let Some(key) = held {
                            inner.free_key_when_gone(pid, key);
                        }
                    }
                    task.output = Some(tails);
                    task.state = TaskState::Finished {
                        started_at: Some(started_at),
                        finished_at: now,
                        outcome,
                    };
                    task.body = bytes::Bytes::new();
                    inner
                        .metrics
                        .task_finished(&task.spec.program.name, Status::Interrupted.as_str(), None);
                    inner.lock().restore(task);
                    interrupted.push(id);
                    to_persist.push(id);
                    continue;
                }
            } else {
                found.queued += 1;
            }
            if let TaskState::Queued {
                next_attempt_at: Some(at),
            } = task.state
            {
                if at > now {
                    delayed.push((id, at.duration_since(now).unwrap_or(Duration::ZERO)));
                } else {
                    task.state = TaskState::Queued { next_attempt_at: None };
                }
            }
            inner.lock().restore(task);
            to_persist.push(id);
        }
        // Handlers left alone at an earlier start (their tasks are
        // `interrupted` on disk by now) may still run: their keys stay held
        // across this start too, until they end.
        let sqlite = store.sqlite().expect("checked above");
        for (id, (pid, _)) in live.get_or_insert_with(live_handlers).iter() {
            if settled.contains(id) {
                continue;
            }
            let Ok(Some(Ok(record))) = sqlite.task(*id) else {
                continue;
            };
            let Some(program) = program(&record.program) else {
                continue;
            };
            let task = Task::from_record(&record, program, bytes::Bytes::new());
            if !matches!(task.state, TaskState::Finished { .. }) {
                continue;
            }
            let held = inner.lock().hold_orphan_key(&task);
            if let Some(key) = held {
                tracing::warn!(task_id = %id, pid, "the handler of an interrupted task is still running from an earlier start; its concurrency key stays held until it ends");
                inner.free_key_when_gone(*pid, key);
            }
        }
        for (id, delay) in delayed {
            inner.resume_after(id, delay);
        }
        for id in interrupted {
            inner.start_callbacks(id, Status::Interrupted);
        }
        for id in to_persist {
            inner.persist(id);
        }
        // Callbacks that had not been delivered when the daemon stopped.
        for record in store.tasks_with_pending_callbacks()? {
            let Some(program) = program(&record.program) else {
                continue;
            };
            let task = Task::from_record(&record, program, bytes::Bytes::new());
            let TaskState::Finished { outcome, .. } = &task.state else {
                continue;
            };
            let (id, status) = (task.id(), outcome.status());
            if inner.lock().get(&id).is_none() {
                inner.lock().restore(task);
            }
            found.callbacks += 1;
            inner.resume_callbacks(id, status);
        }
        // Output files whose task the store no longer has.
        let known = store.task_ids()?;
        found.stray_outputs = inner.outputs.sweep(|id: Uuid| known.contains(&id));
        // Attempts that were running have ended: their `param_files` go; so do
        // the files of multipart deliveries no unfinished task needs.
        inner.outputs.sweep_param_files();
        inner.sweep_uploads(Duration::ZERO);
        let mut sched = inner.lock();
        inner.start_ready(&mut sched);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_handler_without_hook_variables_is_known_by_its_group_and_start() {
        let started = SystemTime::now();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .env_clear()
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let id = Uuid::new_v4();
        assert!(
            still_ours(pid, id, started),
            "no HOOK_TASK_ID: its group and start time tell"
        );
        assert!(
            !still_ours(pid, id, started - Duration::from_secs(60)),
            "started at another time"
        );
        let _ = child.kill();
        let _ = child.wait();

        // With HOOK_TASK_ID, only its own id counts, whenever it started.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .env_clear()
            .env("HOOK_TASK_ID", id.to_string())
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(still_ours(pid, id, started - Duration::from_secs(60)));
        assert!(!still_ours(pid, Uuid::new_v4(), started));
        let _ = child.kill();
        let _ = child.wait();
    }
}
