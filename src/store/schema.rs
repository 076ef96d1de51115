//! The store's schema and its migrations, versioned with `PRAGMA user_version`.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: tasks and deliveries.
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
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to [`VERSION`]; refuses a file written by a newer hookrunner.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if current > VERSION {
        return Err(format!(
            "the store has schema version {current}, newer than this hookrunner's {VERSION}: upgrade hookrunner, or move the file aside to start fresh"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration to version {} failed: {e}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(())
}
