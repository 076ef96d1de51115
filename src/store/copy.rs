//! `hookrunner db copy`: a single node's SQLite history into a cluster's
//! PostgreSQL database. Run it with the node stopped: its queued tasks are
//! queued in the cluster (any node may run them), and a task found running
//! is marked `interrupted`, as that node's restart would (its callbacks,
//! and those still pending, are sent by a node of the cluster that has
//! the program).

use super::record::{decode, DeliveryRecord, StateRecord, TaskRecord};
use super::{Body, Op, Retention, Store, StoreError};
use crate::secret::SecretUrl;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// What a copy did.
#[derive(Debug, Default)]
pub struct Copied {
    pub tasks: usize,
    pub deliveries: usize,
    /// Rows that could not be read (left behind, named in the log).
    pub skipped: usize,
    /// Tasks found running, copied as `interrupted`.
    pub interrupted: usize,
    /// Rows the database held already (by id): left as they are, not counted as copied.
    pub already: usize,
}

fn sqlite_err(e: rusqlite::Error) -> StoreError {
    StoreError::new("read the SQLite store", e)
}

/// Copies every task and delivery of the SQLite store at `from` into the
/// PostgreSQL database at `to` (created or migrated as a node would).
pub fn sqlite_to_postgres(from: &Path, to: &SecretUrl) -> Result<Copied, StoreError> {
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| StoreError::new(format!("open `{}`", from.display()), e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite_err)?;
    if version != super::SCHEMA_VERSION {
        return Err(StoreError::message(
            "copy",
            format!(
                "`{}` has schema version {version}; start this hookrunner on it once (it migrates to {}), stop it, then copy",
                from.display(),
                super::SCHEMA_VERSION
            ),
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| StoreError::new("start a runtime", e))?;
    let retention = Retention {
        tasks: usize::MAX / 2,
        tasks_for: Duration::from_secs(u32::MAX as u64),
        deliveries: usize::MAX / 2,
        refused: usize::MAX / 2,
        body_bytes: usize::MAX / 2,
    };
    let store = Store::open_postgres(to, 2, runtime.handle().clone(), retention)?;
    // What a copy made before (or the cluster since) is not written again:
    // a row there may have moved on (a copied queued task run since).
    let (tasks_there, deliveries_there) = match store.postgres() {
        Some(pg) => runtime.block_on(pg.with("read the ids the database holds", |c| async move {
            let e = super::postgres::db("read the ids the database holds");
            let tasks = c.query("SELECT id::text FROM tasks", &[]).await.map_err(&e)?;
            let deliveries = c.query("SELECT id FROM deliveries", &[]).await.map_err(&e)?;
            Ok((
                tasks.iter().map(|r| r.get::<_, String>(0)).collect::<HashSet<String>>(),
                deliveries
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<HashSet<String>>(),
            ))
        }))?,
        None => Default::default(),
    };
    let mut copied = Copied::default();
    let mut ops = Vec::new();
    {
        let mut stmt = conn
            .prepare("SELECT id, data, body FROM deliveries ORDER BY seq")
            .map_err(sqlite_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                ))
            })
            .map_err(sqlite_err)?;
        for row in rows {
            let (id, data, body) = row.map_err(sqlite_err)?;
            match decode::<DeliveryRecord>(&data) {
                Ok(r) if deliveries_there.contains(&r.id) => copied.already += 1,
                Ok(r) => {
                    ops.push(Op::PutDelivery(Box::new(r), body.map(Bytes::from)));
                    copied.deliveries += 1;
                }
                Err(error) => {
                    tracing::error!(id = %id, %error, "a delivery cannot be read; it is not copied");
                    copied.skipped += 1;
                }
            }
        }
    }
    {
        let mut stmt = conn
            .prepare("SELECT id, data, body FROM tasks ORDER BY seq")
            .map_err(sqlite_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                ))
            })
            .map_err(sqlite_err)?;
        for row in rows {
            let (id, data, body) = row.map_err(sqlite_err)?;
            let mut r = match decode::<TaskRecord>(&data) {
                Ok(r) => r,
                Err(error) => {
                    tracing::error!(id = %id, %error, "a task cannot be read; it is not copied");
                    copied.skipped += 1;
                    continue;
                }
            };
            if tasks_there.contains(&r.id.to_string()) {
                copied.already += 1;
                continue;
            }
            if let StateRecord::Running { started_ms, .. } = r.state {
                r.state = StateRecord::Finished {
                    started_ms: Some(started_ms),
                    finished_ms: super::millis(std::time::SystemTime::now()),
                    status: crate::status::Status::Interrupted,
                    exit_code: None,
                    error: Some("daemon stopped while running".into()),
                    timeout_ms: None,
                };
                // Its `on_finish` callbacks for `interrupted`, as the node's
                // restart would send them: a node of the cluster that has the
                // program works them out and sends them.
                r.callbacks_unknown = true;
                copied.interrupted += 1;
            }
            r.node = None;
            r.claim = None;
            let body = match (&r.state, body) {
                (StateRecord::Queued { .. }, Some(b)) => Body::Set(Bytes::from(b)),
                _ => Body::Drop,
            };
            ops.push(Op::PutTask(Box::new(r), body));
            copied.tasks += 1;
        }
    }
    for chunk in ops.chunks(500) {
        runtime.block_on(store.commit(chunk.to_vec()))?;
    }
    store.close();
    Ok(copied)
}
