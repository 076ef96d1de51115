//! The SQLite store's schema and its migrations, versioned with `PRAGMA user_version`.

use super::record::{encode, parse_deep, DeliveryRecord, TaskRecord};
use rusqlite::{params, Connection, Transaction};

/// One step from version `i` to `i + 1`.
enum Migration {
    Sql(&'static str),
    Rust(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

const MIGRATIONS: &[Migration] = &[
    // 1: tasks and deliveries; `data` held the API's JSON.
    Migration::Sql(
        "CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        source TEXT NOT NULL,
        event TEXT NOT NULL,
        program TEXT NOT NULL,
        status TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        callbacks_pending INTEGER NOT NULL DEFAULT 0,
        data TEXT NOT NULL,
        body BLOB
    );
    CREATE INDEX tasks_status ON tasks (status, seq);
    CREATE INDEX tasks_source ON tasks (source, seq);
    CREATE INDEX tasks_event ON tasks (event, seq);
    CREATE INDEX tasks_program ON tasks (program, seq);
    CREATE INDEX tasks_finished ON tasks (finished_ms) WHERE finished_ms IS NOT NULL;
    CREATE TABLE deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        delivery_id TEXT NOT NULL,
        source TEXT NOT NULL,
        event TEXT,
        outcome TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        data TEXT NOT NULL,
        body BLOB
    );
    CREATE INDEX deliveries_source ON deliveries (source, seq);
    CREATE INDEX deliveries_event ON deliveries (event, seq);
    CREATE INDEX deliveries_outcome ON deliveries (outcome, seq);
    CREATE INDEX deliveries_received ON deliveries (received_ms);",
    ),
    // 2: `data` holds a typed record (`record.rs`); rows that cannot be
    // converted are moved, whole, to `quarantine` (never deleted).
    Migration::Rust(to_typed_records),
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Why the schema could not be brought up to date (the SQLite twin of
/// `postgres::schema::SchemaError`).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("the store has schema version {found}, newer than this hookrunner's {VERSION}: upgrade hookrunner, or move the file aside to start fresh")]
    Newer { found: i64 },
    /// What `hookrunner db check` calls no hookrunner store is not made one.
    #[error("the store has schema version {found}, which no hookrunner writes: it is not a hookrunner store, or it was changed by hand; give `state.path` a file of hookrunner's own")]
    Negative { found: i64 },
    #[error("the file holds another program's tables ({tables}) and no hookrunner schema: it is not a hookrunner store; give `state.path` a file of hookrunner's own")]
    Foreign { tables: String },
    #[error("migration to version {version} failed")]
    Failed {
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{op}")]
    Db {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> MigrateError {
    move |source| MigrateError::Db { op, source }
}

/// Brings the schema up to [`VERSION`]; refuses a file written by a newer hookrunner.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db("read the schema version"))?;
    if current > VERSION {
        return Err(MigrateError::Newer { found: current });
    }
    if current < 0 {
        return Err(MigrateError::Negative { found: current });
    }
    if current == 0 {
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
            .map_err(db("list the tables"))?;
        if !tables.is_empty() {
            let shown: Vec<String> = tables
                .iter()
                .take(5)
                .map(|t| crate::logging::escape(t).into_owned())
                .collect();
            return Err(MigrateError::Foreign {
                tables: format!("{}{}", shown.join(", "), if tables.len() > 5 { ", ..." } else { "" }),
            });
        }
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = (i + 1) as i64;
        let failed = |source| MigrateError::Failed { version, source };
        let tx = conn.transaction().map_err(failed)?;
        match step {
            Migration::Sql(sql) => tx.execute_batch(sql),
            Migration::Rust(f) => f(&tx),
        }
        .map_err(failed)?;
        tx.pragma_update(None, "user_version", version).map_err(failed)?;
        tx.commit().map_err(failed)?;
        if i + 1 == 2 && current >= 1 {
            tracing::info!("the store was migrated to schema version 2 (typed records)");
        }
    }
    Ok(())
}

/// Version 1 → 2: every row's JSON becomes a typed record.
fn to_typed_records(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE quarantine (
            tbl TEXT NOT NULL,
            id TEXT NOT NULL,
            data TEXT NOT NULL,
            body BLOB,
            error TEXT NOT NULL,
            moved_ms INTEGER NOT NULL
        );",
    )?;
    let now = super::millis(std::time::SystemTime::now());
    for (table, convert) in [
        ("tasks", convert_task as fn(&str) -> Result<String, String>),
        ("deliveries", convert_delivery),
    ] {
        let rows: Vec<(String, String)> = {
            let mut stmt = tx.prepare(&format!("SELECT id, data FROM {table}"))?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (id, data) in rows {
            match convert(&data) {
                Ok(record) => {
                    tx.execute(
                        &format!("UPDATE {table} SET data = ?1 WHERE id = ?2"),
                        params![record, id],
                    )?;
                }
                Err(error) => {
                    tracing::error!(table, id = %id, %error, "a stored row could not be converted; it was moved to the `quarantine` table");
                    tx.execute(
                        &format!(
                            "INSERT INTO quarantine (tbl, id, data, body, error, moved_ms)
                             SELECT ?1, id, data, body, ?2, ?3 FROM {table} WHERE id = ?4"
                        ),
                        params![table, error, now, id],
                    )?;
                    tx.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [&id])?;
                }
            }
        }
    }
    Ok(())
}

fn convert_task(data: &str) -> Result<String, String> {
    let v = parse_deep(data)?;
    Ok(encode(&TaskRecord::from_v1(&v)?))
}

fn convert_delivery(data: &str) -> Result<String, String> {
    let v = parse_deep(data)?;
    Ok(encode(&DeliveryRecord::from_v1(&v)?))
}
