//! Restart recovery: what the store says was queued runs again in its order
//! and keys; what was running is marked interrupted (or run again with
//! `on_interrupt: rerun`); backoffs resume; undelivered callbacks are retried.

use super::task::{Attempt, Outcome, Status, Task, TaskState};
use super::{Engine, Slot};
use crate::config::Config;
use crate::process::program::Invocation;
use crate::process::Output;
use crate::store::StoreError;
use bytes::Bytes;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// What a start found in the store.
#[derive(Debug, Default)]
pub struct Recovered {
    pub queued: usize,
    pub interrupted: usize,
    pub rerun: usize,
    pub orphaned: usize,
    pub callbacks: usize,
}

const INTERRUPTED: &str = "daemon stopped while running";

fn time(v: &Value) -> Option<SystemTime> {
    v.as_str().and_then(|s| humantime::parse_rfc3339(s).ok())
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or("").to_string()
}

impl Engine {
    /// Loads unfinished work from the store. Call once, before serving.
    pub fn recover(&self, config: &Config) -> Result<Recovered, StoreError> {
        let inner = &self.inner;
        let Some(store) = &inner.store else {
            return Ok(Recovered::default());
        };
        inner
            .next_seq
            .store(store.max_task_seq()? as u64 + 1, Ordering::Relaxed);
        let mut found = Recovered::default();
        let mut to_persist = Vec::new();
        let mut interrupted = Vec::new();
        for (data, body) in store.unfinished_tasks()? {
            let Ok(v) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            let body = Bytes::from(body.unwrap_or_default());
            let Some(mut task) = self.rebuild(&v, body, config) else {
                found.orphaned += 1;
                continue;
            };
            let id = task.id;
            let was_running = v["status"] == "running";
            let mut sched = inner.lock_sched();
            if task.program.name.is_empty() {
                // Its program is gone from the config.
                found.orphaned += 1;
                inner.table.insert(task);
                drop(sched);
                to_persist.push(id);
                continue;
            }
            if was_running {
                found.interrupted += 1;
                let started = time(&v["started_at"]);
                if task.program.rerun_interrupted {
                    found.rerun += 1;
                    tracing::warn!(task_id = %id, "task interrupted: the daemon stopped while it ran; it runs again (on_interrupt: rerun)");
                    let outcome = Outcome::Interrupted {
                        reason: INTERRUPTED.into(),
                    };
                    task.attempts.push(Attempt::record(
                        task.attempt,
                        started,
                        SystemTime::now(),
                        &outcome,
                        &task.output,
                    ));
                    task.attempt += 1;
                    task.output = Arc::new(Output::new(inner.limits.load().output_limit));
                } else {
                    task.state = TaskState::Finished {
                        started_at: started,
                        finished_at: SystemTime::now(),
                        outcome: Outcome::Interrupted {
                            reason: INTERRUPTED.into(),
                        },
                    };
                    task.body = Bytes::new();
                    tracing::warn!(task_id = %id, "task interrupted: the daemon stopped while it ran");
                    let program = task.program.name.clone();
                    inner.table.insert(task);
                    inner.table.finished(id);
                    drop(sched);
                    inner.stats.finished(&program, Status::Interrupted, None);
                    inner
                        .metrics
                        .task_finished(&program, Status::Interrupted.as_str(), None);
                    interrupted.push(id);
                    to_persist.push(id);
                    continue;
                }
            } else {
                found.queued += 1;
            }
            let slot = Slot {
                id,
                program: task.program.clone(),
                key: task.key.clone(),
            };
            let due = task.next_attempt_at.filter(|at| *at > SystemTime::now());
            inner.table.insert(task);
            match due {
                Some(at) => {
                    // Waiting out a backoff: hold the key and resume at the right time.
                    if let Some(k) = slot.key_id() {
                        sched.busy_keys.insert(k);
                    }
                    sched.delayed.insert(id, slot);
                    let delay = at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
                    inner.resume_after(id, delay);
                }
                None => sched.queue.push_back(slot),
            }
            drop(sched);
            to_persist.push(id);
        }
        for id in interrupted {
            inner.start_callbacks(id, Status::Interrupted);
        }
        for id in to_persist {
            inner.persist(id);
        }
        // Callbacks that had not been delivered when the daemon stopped.
        for data in store.tasks_with_pending_callbacks()? {
            let Ok(v) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            let Some(task) = self.rebuild(&v, Bytes::new(), config) else {
                continue;
            };
            if task.program.name.is_empty() || !task.state.is_finished() {
                continue;
            }
            let (id, status) = (task.id, task.state.status());
            if inner.table.view(&id).is_none() {
                inner.table.insert(task);
                inner.table.finished(id);
            }
            found.callbacks += 1;
            inner.start_callbacks(id, status);
        }
        let mut sched = inner.lock_sched();
        inner.start_ready(&mut sched);
        Ok(found)
    }

    /// A task from its stored JSON. A task whose program left the config comes
    /// back failed, with a program of empty name as the marker.
    fn rebuild(&self, v: &Value, body: Bytes, config: &Config) -> Option<Task> {
        let inner = &self.inner;
        let id = Uuid::parse_str(v["id"].as_str()?).ok()?;
        let program_name = text(v, "program");
        let params: Vec<(String, Value)> = v["params"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let (source, event, delivery_id) = (text(v, "source"), text(v, "event"), text(v, "delivery_id"));
        let request_id = text(v, "request_id");
        let created_at = v["_created_ms"]
            .as_u64()
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
            .unwrap_or_else(SystemTime::now);
        let output = Arc::new(Output::new(inner.limits.load().output_limit));
        output
            .stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(text(v, "stdout").as_bytes());
        output
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(text(v, "stderr").as_bytes());
        let status = serde_json::from_value::<Status>(v["status"].clone()).ok()?;
        let (program, orphan) = match config.program(&program_name) {
            Some(p) => (p, None),
            None => (
                Arc::new(crate::process::Program::default()),
                Some(format!("program `{program_name}` is no longer in the config")),
            ),
        };
        let task_id = id.to_string();
        let inv = Invocation {
            source: &source,
            event: &event,
            task_id: &task_id,
            delivery_id: &delivery_id,
            request_id: &request_id,
            payload: &body,
            params: &params,
        };
        let (argv, key) = match orphan {
            None => (program.argv(&inv), program.key(&inv)),
            Some(_) => (
                v["argv"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                    .unwrap_or_default(),
                None,
            ),
        };
        let exit_code = v["exit_code"].as_i64().map(|c| c as i32);
        let error = v["error"].as_str().map(String::from);
        let state = if let Some(reason) = orphan {
            TaskState::Finished {
                started_at: None,
                finished_at: SystemTime::now(),
                outcome: Outcome::Failed {
                    exit_code: None,
                    error: Some(reason),
                },
            }
        } else if status.is_final() {
            let outcome = match status {
                Status::Succeeded => Outcome::Succeeded {
                    exit_code: exit_code.unwrap_or(0),
                },
                Status::TimedOut => Outcome::TimedOut { after: program.timeout },
                Status::Cancelled => Outcome::Cancelled {
                    reason: error.unwrap_or_default(),
                },
                Status::Interrupted => Outcome::Interrupted {
                    reason: error.unwrap_or_default(),
                },
                _ => Outcome::Failed { exit_code, error },
            };
            TaskState::Finished {
                started_at: time(&v["started_at"]),
                finished_at: time(&v["finished_at"]).unwrap_or_else(SystemTime::now),
                outcome,
            }
        } else {
            TaskState::Queued
        };
        Some(Task {
            id,
            seq: v["_seq"].as_u64().unwrap_or(0),
            delivery_id: delivery_id.as_str().into(),
            request_id: request_id.as_str().into(),
            source: source.as_str().into(),
            event: event.as_str().into(),
            program,
            params,
            argv,
            body,
            created_at,
            state,
            output,
            record_id: v["_record_id"].as_str().map(String::from),
            rerun_of: v["rerun_of"].as_str().and_then(|s| Uuid::parse_str(s).ok()),
            reruns: v["reruns"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                        .collect()
                })
                .unwrap_or_default(),
            key,
            attempt: v["attempt"].as_u64().unwrap_or(1) as u32,
            attempts: serde_json::from_value(v["attempts"].clone()).unwrap_or_default(),
            next_attempt_at: time(&v["next_attempt_at"]),
            callbacks: serde_json::from_value(v["callbacks"].clone()).unwrap_or_default(),
        })
    }
}
