//! The SQLite schema and its migrations, applied in order and recorded in
//! `PRAGMA user_version`, so opening a data directory of any earlier version
//! brings it up to date.

use rusqlite::Connection;

use crate::Result;

/// Each entry moves the schema from version `index` to `index + 1`. Never edit
/// a released entry; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: jobs and their finished attempts.
    r#"
    CREATE TABLE jobs (
        id                BLOB    NOT NULL UNIQUE,   -- UUIDv7, 16 bytes
        tenant            TEXT    NOT NULL,
        queue             TEXT    NOT NULL,
        kind              TEXT    NOT NULL,
        payload           TEXT    NOT NULL,          -- JSON
        priority          INTEGER NOT NULL,
        state             TEXT    NOT NULL,
        run_at            INTEGER NOT NULL,          -- µs since the epoch, like every instant here
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL,
        finished_at       INTEGER,
        timeout_ms        INTEGER,
        retry             TEXT    NOT NULL,          -- JSON RetryPolicy
        idempotency_key   TEXT,
        tags              TEXT    NOT NULL,          -- JSON array
        attempt           INTEGER NOT NULL DEFAULT 0, -- attempts in the current run
        attempts_total    INTEGER NOT NULL DEFAULT 0, -- attempts over the job's life (numbers attempt rows)
        cancel_requested  INTEGER NOT NULL DEFAULT 0,
        lease_token       BLOB,                      -- the lease columns are set only while running
        worker            TEXT,
        started_at        INTEGER,
        lease_expires_at  INTEGER,
        deadline          INTEGER,
        lease_ms          INTEGER
    );
    -- The dispatch order: highest priority, then earliest due, then oldest.
    CREATE INDEX jobs_available ON jobs (tenant, queue, priority DESC, run_at, id) WHERE state = 'available';
    -- The timers: next due job, next lease to run out.
    CREATE INDEX jobs_scheduled ON jobs (run_at) WHERE state = 'scheduled';
    CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE state = 'running';
    CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
    -- Listing, newest first, optionally by state.
    CREATE INDEX jobs_by_tenant ON jobs (tenant, id);
    CREATE INDEX jobs_by_state ON jobs (tenant, state, id);

    CREATE TABLE attempts (
        job_id       BLOB    NOT NULL,
        number       INTEGER NOT NULL,
        worker       TEXT    NOT NULL,
        started_at   INTEGER NOT NULL,
        finished_at  INTEGER NOT NULL,
        outcome      TEXT    NOT NULL,
        error        TEXT,
        result       TEXT,                           -- JSON
        PRIMARY KEY (job_id, number)
    ) WITHOUT ROWID;
    "#,
];

/// Brings the database to the newest schema, one transaction per step.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (version + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "applied SQLite migration");
    }
    Ok(())
}
