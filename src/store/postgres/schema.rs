//! The PostgreSQL store's schema, versioned in `hookrunner_meta`. Nodes
//! starting together migrate once: under a session advisory lock, the first
//! applies what is missing and the others find it done. A database written
//! by a newer hookrunner is refused with the versions named.

use tokio_postgres::Client;

/// Each entry moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: tasks, deliveries, dedup keys and nodes.
    "CREATE TABLE tasks (
        seq BIGSERIAL UNIQUE,
        id UUID PRIMARY KEY,
        source TEXT NOT NULL,
        event TEXT NOT NULL,
        program TEXT NOT NULL,
        status TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        finished_ms BIGINT,
        callbacks_pending BOOLEAN NOT NULL DEFAULT false,
        node TEXT,
        pinned_node TEXT,
        run_on TEXT[] NOT NULL DEFAULT '{}',
        key TEXT,
        holds_key BOOLEAN NOT NULL DEFAULT false,
        next_attempt_ms BIGINT,
        claim UUID,
        cancel_requested TEXT,
        record TEXT NOT NULL,
        body BYTEA
    );
    CREATE INDEX tasks_queue ON tasks (seq) WHERE status = 'queued';
    CREATE INDEX tasks_delayed ON tasks (next_attempt_ms) WHERE status = 'queued' AND next_attempt_ms IS NOT NULL;
    CREATE INDEX tasks_running ON tasks (node) WHERE status = 'running';
    CREATE UNIQUE INDEX tasks_key_held ON tasks (program, key) WHERE holds_key;
    CREATE INDEX tasks_status ON tasks (status, seq);
    CREATE INDEX tasks_source ON tasks (source, seq);
    CREATE INDEX tasks_event ON tasks (event, seq);
    CREATE INDEX tasks_program ON tasks (program, seq);
    CREATE INDEX tasks_finished ON tasks (finished_ms) WHERE finished_ms IS NOT NULL;
    CREATE INDEX tasks_callbacks ON tasks (node) WHERE callbacks_pending;
    CREATE TABLE deliveries (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        delivery_id TEXT NOT NULL,
        source TEXT NOT NULL,
        event TEXT,
        outcome TEXT NOT NULL,
        received_ms BIGINT NOT NULL,
        record TEXT NOT NULL,
        body BYTEA
    );
    CREATE INDEX deliveries_source ON deliveries (source, seq);
    CREATE INDEX deliveries_event ON deliveries (event, seq);
    CREATE INDEX deliveries_outcome ON deliveries (outcome, seq);
    CREATE INDEX deliveries_received ON deliveries (received_ms);
    CREATE TABLE dedup (
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        first_id TEXT NOT NULL,
        expires_ms BIGINT NOT NULL,
        PRIMARY KEY (source, key)
    );
    CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        incarnation UUID NOT NULL,
        labels TEXT[] NOT NULL,
        version TEXT NOT NULL,
        url TEXT NOT NULL,
        started_ms BIGINT NOT NULL,
        heartbeat_ms BIGINT NOT NULL,
        lease_ms BIGINT NOT NULL,
        status TEXT NOT NULL,
        running INTEGER NOT NULL DEFAULT 0,
        taken_over_by TEXT,
        taken_over_ms BIGINT
    );",
    // 2: a key's tasks in order, for a claim asking whether a newer task of
    // a task's key replaces it (`on_busy: replace`), without walking the
    // program's whole history.
    "CREATE INDEX tasks_key ON tasks (program, key, seq) WHERE key IS NOT NULL;",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock nodes take to migrate one at a time.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_0001;

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the database has schema version {found}, newer than this hookrunner's {ours}: upgrade this node to the version the other nodes run")]
    Newer { found: i64, ours: i64 },
    #[error("migration to version {version} failed: {source}")]
    Failed {
        version: i64,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Damaged(String),
}

/// The schema version the database has (0: none yet). A database that has
/// hookrunner's tables but no readable version is an error that says so,
/// not an empty database to migrate (which would fail on the tables there).
pub async fn version(client: &Client) -> Result<i64, SchemaError> {
    let row = client
        .query_one(
            "SELECT to_regclass('hookrunner_meta') IS NOT NULL, to_regclass('tasks') IS NOT NULL",
            &[],
        )
        .await?;
    let (meta, tasks): (bool, bool) = (row.get(0), row.get(1));
    let row = if meta {
        client
            .query_opt("SELECT value FROM hookrunner_meta WHERE key = 'schema_version'", &[])
            .await?
    } else {
        None
    };
    match row.map(|r| r.get::<_, String>(0)) {
        None if tasks => Err(SchemaError::Damaged(format!(
            "the database has a `tasks` table but {}: it holds another program's tables, or a hookrunner schema whose version was lost; use a database of hookrunner's own (or restore `hookrunner_meta`)",
            if meta {
                "no `schema_version` row in `hookrunner_meta`"
            } else {
                "no `hookrunner_meta` table"
            }
        ))),
        None => Ok(0),
        Some(text) => match text.trim().parse::<i64>() {
            Ok(0) if tasks => Err(SchemaError::Damaged(
                "`hookrunner_meta` says the schema version is 0 (no schema), but the database has a `tasks` table: the version was changed by hand or by another program".into(),
            )),
            Ok(v) if v >= 0 => Ok(v),
            _ => Err(SchemaError::Damaged(format!(
                "`hookrunner_meta` says the schema version is `{}`, which is not a version number: the table was changed by hand or by another program",
                crate::logging::escape(&text.chars().take(40).collect::<String>())
            ))),
        },
    }
}

/// Brings the schema up to [`VERSION`], once, whatever other nodes do meanwhile.
pub async fn migrate(client: &mut Client) -> Result<i64, SchemaError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = migrate_locked(client).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn migrate_locked(client: &mut Client) -> Result<i64, SchemaError> {
    let current = version(client).await?;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS hookrunner_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        .await?;
    if current > VERSION {
        return Err(SchemaError::Newer {
            found: current,
            ours: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let failed = |source| SchemaError::Failed { version, source };
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO hookrunner_meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&version.to_string()],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(version, "the database was migrated");
    }
    Ok(current)
}
