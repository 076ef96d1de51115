//! What the store keeps: typed, versioned records of tasks and deliveries.
//!
//! A record is not the API's view of a task or delivery. It holds what a
//! restart needs, in a shape that never nests deeper than a few levels
//! whatever a delivery carried: param values are kept as their JSON *text*
//! and the body as bytes beside the record (a column of its own), so a body
//! the parser accepted is always a record the store can read back.
//!
//! Every record carries `v`, the version of its shape ([`VERSION`]). The
//! schema migration to version 2 (`sqlite::migrate`) rewrote the version-1
//! rows (the API's JSON plus `_seq`, `_record_id`, `_created_ms`) into this
//! shape ([`TaskRecord::from_v1`], [`DeliveryRecord::from_v1`]).

use crate::status::{Outcome, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The shape of the records this build writes.
pub const VERSION: u32 = 2;

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub v: u32,
    pub id: Uuid,
    /// Creation order.
    pub seq: u64,
    pub delivery_id: String,
    /// The delivery record the task came from.
    pub record_id: Option<String>,
    pub request_id: String,
    pub source: String,
    pub event: String,
    pub program: String,
    /// Params in mapping order: each value as its JSON text.
    pub params: Vec<(String, String)>,
    pub argv: Vec<String>,
    /// The rendered `concurrency_key`.
    pub key: Option<String>,
    pub created_ms: i64,
    pub state: StateRecord,
    /// The current attempt, from 1.
    pub attempt: u32,
    /// Earlier attempts.
    pub attempts: Vec<AttemptRecord>,
    pub rerun_of: Option<Uuid>,
    pub reruns: Vec<Uuid>,
    pub callbacks: Vec<CallbackRecord>,
    /// The output's tails, once the task has finished.
    pub output: Option<OutputRecord>,
    /// The node that runs or ran it (a cluster's store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Only nodes with all these labels may run it (`run_on`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_on: Vec<String>,
    /// Only this node may run it (one task of a `fan_out` program).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_node: Option<String>,
    /// The claim under which its node runs it: a node's later writes count
    /// only while the stored claim is still theirs (not after a takeover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Uuid>,
    /// A multipart body's boundary, to write its files again from the
    /// stored body (absent in rows written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary: Option<String>,
    /// Its program says `on_interrupt: rerun`: a node taking it over that
    /// lacks the program (a rolling change of the config) still knows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rerun_interrupted: bool,
    /// Finished by a node that lacked its program (a takeover during a
    /// rolling change of the config): which callbacks it has is for a node
    /// with the program to work out and send.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub callbacks_unknown: bool,
}

/// A task's state, with only the data valid in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StateRecord {
    /// Waiting for a slot, or (with `next_attempt_ms`) for its retry's backoff.
    Queued { next_attempt_ms: Option<i64> },
    /// Committed as running before its handler was spawned; the pid once known.
    Running { started_ms: i64, pid: Option<u32> },
    Finished {
        started_ms: Option<i64>,
        finished_ms: i64,
        status: Status,
        exit_code: Option<i32>,
        error: Option<String>,
        /// For `timed_out`: the timeout.
        timeout_ms: Option<u64>,
    },
}

impl StateRecord {
    pub fn status(&self) -> Status {
        match self {
            StateRecord::Queued { .. } => Status::Queued,
            StateRecord::Running { .. } => Status::Running,
            StateRecord::Finished { status, .. } => *status,
        }
    }
}

/// An attempt that ended and was retried (or interrupted and run again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// For `timed_out`: the timeout.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    pub started_ms: Option<i64>,
    pub finished_ms: i64,
    /// The last bytes of its output.
    pub stdout: String,
    pub stderr: String,
}

/// Where one completion callback stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackRecord {
    /// Masked: no password, no query values.
    pub url: String,
    pub status: CallbackStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    Pending,
    Delivered,
    Failed,
}

impl CallbackStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackStatus::Pending => "pending",
            CallbackStatus::Delivered => "delivered",
            CallbackStatus::Failed => "failed",
        }
    }
}

/// The tails of a finished task's output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub v: u32,
    pub id: String,
    pub delivery_id: String,
    pub request_id: String,
    pub source: String,
    pub event: Option<String>,
    /// The provider's own event name, when it differs (GitLab's `Push Hook`).
    pub raw_event: Option<String>,
    pub received_ms: i64,
    pub remote_addr: String,
    /// Masked as recorded.
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body_size: u64,
    pub outcome: Outcome,
    pub status: u16,
    pub reason: Option<String>,
    /// Params per mapping key, each value as its JSON text.
    pub params: Vec<(String, Vec<(String, String)>)>,
    pub rules: Vec<RuleRecord>,
    pub task_ids: Vec<Uuid>,
    pub duplicate_of: Option<String>,
    pub replay_of: Option<String>,
    pub replays: Vec<String>,
    /// What did not go as written while judging (a `parse_json` value missing or not JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How one rule was judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRecord {
    pub mapping: String,
    pub rule: usize,
    pub condition: Option<String>,
    pub program: String,
    pub result: String,
}

/// Why a stored row could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub table: &'static str,
    pub id: String,
    pub error: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} row `{}`: {}", self.table, self.id, self.error)
    }
}

/// Reads a record; anything but the current version is refused with the reason.
pub fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
    #[derive(Deserialize)]
    struct Version {
        v: Option<u32>,
    }
    match serde_json::from_str::<Version>(text) {
        Ok(Version { v: Some(VERSION) }) => serde_json::from_str(text).map_err(|e| e.to_string()),
        Ok(Version { v: Some(v) }) => Err(format!("record version {v}, this hookrunner reads version {VERSION}")),
        Ok(Version { v: None }) => Err("not a versioned record".into()),
        Err(e) => Err(e.to_string()),
    }
}

pub fn encode<T: Serialize>(record: &T) -> String {
    // Records hold strings, numbers and flat lists: serialising cannot fail.
    serde_json::to_string(record).unwrap_or_default()
}

/// Parses JSON of any depth (version-1 rows could nest deeper than the
/// default limit of 128, which is how they became unreadable).
pub fn parse_deep(text: &str) -> Result<Value, String> {
    use serde::Deserialize as _;
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let value = Value::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

fn ms_of(v: &Value) -> Option<i64> {
    let t = humantime::parse_rfc3339(v.as_str()?).ok()?;
    Some(crate::store::millis(t))
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn opt_text(v: &Value, key: &str) -> Option<String> {
    v[key].as_str().map(String::from)
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn ids(v: &Value) -> Vec<Uuid> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn params_of(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
        .unwrap_or_default()
}

impl TaskRecord {
    /// A version-1 row (the API's JSON of the task plus `_seq`, `_record_id`,
    /// `_created_ms`) in the current shape.
    pub fn from_v1(v: &Value) -> Result<TaskRecord, String> {
        let id: Uuid = v["id"].as_str().and_then(|s| s.parse().ok()).ok_or("no task id")?;
        let status = v["status"].as_str().and_then(Status::parse).ok_or("no known status")?;
        let state = match status {
            Status::Queued => StateRecord::Queued {
                next_attempt_ms: ms_of(&v["next_attempt_at"]),
            },
            Status::Running => StateRecord::Running {
                started_ms: ms_of(&v["started_at"]).unwrap_or_default(),
                pid: None,
            },
            status => StateRecord::Finished {
                started_ms: ms_of(&v["started_at"]),
                finished_ms: ms_of(&v["finished_at"]).unwrap_or_default(),
                status,
                exit_code: v["exit_code"].as_i64().map(|c| c as i32),
                error: opt_text(v, "error"),
                timeout_ms: None,
            },
        };
        let attempts = v["attempts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|at| AttemptRecord {
                        attempt: at["attempt"].as_u64().unwrap_or(1) as u32,
                        status: at["status"].as_str().and_then(Status::parse).unwrap_or(Status::Failed),
                        exit_code: at["exit_code"].as_i64().map(|c| c as i32),
                        error: opt_text(at, "error"),
                        timeout_ms: None,
                        started_ms: ms_of(&at["started_at"]),
                        finished_ms: ms_of(&at["finished_at"]).unwrap_or_default(),
                        stdout: text(at, "stdout"),
                        stderr: text(at, "stderr"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let callbacks = v["callbacks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| CallbackRecord {
                        url: crate::secret::mask_webhook_url(&text(c, "url")),
                        status: match c["status"].as_str() {
                            Some("delivered") => CallbackStatus::Delivered,
                            Some("failed") => CallbackStatus::Failed,
                            _ => CallbackStatus::Pending,
                        },
                        attempts: c["attempts"].as_u64().unwrap_or(0) as u32,
                        last_error: opt_text(c, "last_error"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let output = OutputRecord {
            stdout: text(v, "stdout"),
            stderr: text(v, "stderr"),
            stdout_truncated: v["stdout_truncated"].as_bool().unwrap_or(false),
            stderr_truncated: v["stderr_truncated"].as_bool().unwrap_or(false),
        };
        Ok(TaskRecord {
            v: VERSION,
            id,
            seq: v["_seq"].as_u64().unwrap_or(0),
            delivery_id: text(v, "delivery_id"),
            record_id: opt_text(v, "_record_id"),
            request_id: text(v, "request_id"),
            source: text(v, "source"),
            event: text(v, "event"),
            program: text(v, "program"),
            params: params_of(&v["params"]),
            argv: v["argv"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            key: opt_text(v, "concurrency_key"),
            created_ms: v["_created_ms"].as_i64().unwrap_or_default(),
            state,
            attempt: v["attempt"].as_u64().unwrap_or(1) as u32,
            attempts,
            rerun_of: v["rerun_of"].as_str().and_then(|s| s.parse().ok()),
            reruns: ids(&v["reruns"]),
            callbacks,
            output: Some(output),
            node: None,
            run_on: Vec::new(),
            pinned_node: None,
            claim: None,
            boundary: None,
            rerun_interrupted: false,
            callbacks_unknown: false,
        })
    }
}

impl DeliveryRecord {
    /// A version-1 row (the API's JSON of the delivery) in the current shape.
    pub fn from_v1(v: &Value) -> Result<DeliveryRecord, String> {
        let id = opt_text(v, "id").ok_or("no delivery id")?;
        let outcome = v["outcome"]
            .as_str()
            .and_then(Outcome::parse)
            .ok_or("no known outcome")?;
        let params = v["params"]
            .as_object()
            .map(|by_key| {
                by_key
                    .iter()
                    .map(|(k, values)| (k.clone(), params_of(values)))
                    .collect()
            })
            .unwrap_or_default();
        let rules = v["rules"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| RuleRecord {
                        mapping: text(r, "mapping"),
                        rule: r["rule"].as_u64().unwrap_or(0) as usize,
                        condition: opt_text(r, "if"),
                        program: text(r, "program"),
                        result: text(r, "result"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(DeliveryRecord {
            v: VERSION,
            delivery_id: opt_text(v, "delivery_id").unwrap_or_else(|| id.clone()),
            id,
            request_id: text(v, "request_id"),
            source: text(v, "source"),
            event: opt_text(v, "event"),
            raw_event: opt_text(v, "raw_event"),
            received_ms: ms_of(&v["received_at"]).unwrap_or_default(),
            remote_addr: text(v, "remote_addr"),
            headers: pairs(&v["headers"]),
            query: pairs(&v["query"]),
            body_size: v["body_size"].as_u64().unwrap_or(0),
            outcome,
            status: v["status"].as_u64().unwrap_or(0) as u16,
            reason: opt_text(v, "reason"),
            params,
            rules,
            task_ids: ids(&v["task_ids"]),
            duplicate_of: opt_text(v, "duplicate_of"),
            replay_of: opt_text(v, "replay_of"),
            replays: v["replays"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            notes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn a_record_stays_flat_whatever_its_params_hold() {
        let value: Value = parse_deep(&deep(127)).unwrap();
        let record = TaskRecord {
            v: VERSION,
            id: Uuid::new_v4(),
            seq: 1,
            delivery_id: "d".into(),
            record_id: None,
            request_id: "r".into(),
            source: "s".into(),
            event: "e".into(),
            program: "p".into(),
            params: vec![("deep".into(), value.to_string())],
            argv: vec![],
            key: None,
            created_ms: 0,
            state: StateRecord::Queued { next_attempt_ms: None },
            attempt: 1,
            attempts: vec![],
            rerun_of: None,
            reruns: vec![],
            callbacks: vec![],
            output: None,
            node: None,
            run_on: Vec::new(),
            pinned_node: None,
            claim: None,
            boundary: None,
            rerun_interrupted: false,
            callbacks_unknown: false,
        };
        let text = encode(&record);
        // The default reader (limit 128) reads it back.
        assert_eq!(decode::<TaskRecord>(&text), Ok(record));
    }

    #[test]
    fn other_versions_are_refused_with_the_reason() {
        assert!(decode::<TaskRecord>(r#"{"v":3}"#).unwrap_err().contains("version 3"));
        assert!(decode::<TaskRecord>(r#"{"id":"x"}"#)
            .unwrap_err()
            .contains("not a versioned record"));
        assert!(decode::<TaskRecord>("not json").is_err());
    }

    #[test]
    fn version_one_rows_convert() {
        let v1 = serde_json::json!({
            "id": "2b1f0f9e-0a5e-4c2b-9a57-3f8f5c1f4b1a", "_seq": 7, "_record_id": "rec",
            "_created_ms": 1000, "delivery_id": "d", "request_id": "r", "source": "github",
            "event": "push", "program": "deploy", "params": {"ref": "refs/heads/main", "n": [1, 2]},
            "argv": ["a", "--ref=refs/heads/main"], "status": "failed", "exit_code": 3,
            "error": null, "started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:01.000Z",
            "stdout": "out", "stderr": "err", "attempt": 2, "concurrency_key": "k",
            "attempts": [{"attempt": 1, "status": "failed", "exit_code": 1, "error": null,
                "started_at": null, "finished_at": "2026-01-01T00:00:00.000Z", "stdout": "", "stderr": "x"}],
            "callbacks": [{"url": "http://h/cb", "status": "pending", "attempts": 0, "last_error": null}],
            "reruns": [], "rerun_of": null
        });
        let r = TaskRecord::from_v1(&v1).unwrap();
        assert_eq!(r.seq, 7);
        // In the order the version-1 row wrote them.
        assert_eq!(
            r.params,
            [
                ("ref".to_string(), "\"refs/heads/main\"".to_string()),
                ("n".into(), "[1,2]".into())
            ]
        );
        assert_eq!(r.state.status(), Status::Failed);
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(r.callbacks[0].status, CallbackStatus::Pending);
        assert_eq!(r.output.as_ref().unwrap().stdout, "out");
        assert_eq!(r.key.as_deref(), Some("k"));
    }
}
