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
    // 2: schedules, and the tick each scheduled job belongs to.
    r#"
    CREATE TABLE schedules (
        id               BLOB    NOT NULL UNIQUE,
        tenant           TEXT    NOT NULL,
        name             TEXT    NOT NULL,
        definition       TEXT    NOT NULL,           -- JSON ScheduleDefinition
        paused           INTEGER NOT NULL DEFAULT 0,
        next_fire_at     INTEGER,                    -- the earliest unfired tick; NULL once ended
        last_fire_at     INTEGER,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        fired            INTEGER NOT NULL DEFAULT 0,
        missed           INTEGER NOT NULL DEFAULT 0,
        skipped_overlap  INTEGER NOT NULL DEFAULT 0,
        failed           INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX schedules_name ON schedules (tenant, name);
    CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0 AND next_fire_at IS NOT NULL;

    ALTER TABLE jobs ADD COLUMN schedule_id BLOB;
    ALTER TABLE jobs ADD COLUMN fire_time INTEGER;
    -- Exactly one job per (schedule, tick), whatever races or crashes happen.
    CREATE UNIQUE INDEX jobs_schedule_tick ON jobs (schedule_id, fire_time) WHERE schedule_id IS NOT NULL;
    -- For the overlap policy: is a run of this schedule still pending or running?
    CREATE INDEX jobs_schedule_active ON jobs (schedule_id)
        WHERE schedule_id IS NOT NULL AND state IN ('scheduled', 'available', 'running');
    "#,
    // 3: dependencies between jobs, and workflows.
    r#"
    ALTER TABLE jobs ADD COLUMN depends_on TEXT;         -- JSON array of parent ids; NULL without parents
    ALTER TABLE jobs ADD COLUMN on_parent_failure TEXT;  -- 'skip' | 'run'; NULL without parents
    ALTER TABLE jobs ADD COLUMN workflow_id BLOB;
    ALTER TABLE jobs ADD COLUMN workflow_job TEXT;       -- the job's name in its workflow
    CREATE INDEX jobs_workflow ON jobs (workflow_id) WHERE workflow_id IS NOT NULL;

    -- One row per (parent, child) edge: a parent's end finds its blocked
    -- children here, and a child counts its unfinished parents.
    CREATE TABLE job_deps (
        parent_id  BLOB NOT NULL,
        child_id   BLOB NOT NULL,
        PRIMARY KEY (parent_id, child_id)
    ) WITHOUT ROWID;
    CREATE INDEX job_deps_child ON job_deps (child_id, parent_id);

    CREATE TABLE workflows (
        id               BLOB    NOT NULL UNIQUE,
        tenant           TEXT    NOT NULL,
        name             TEXT,
        idempotency_key  TEXT,
        created_at       INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX workflows_idempotency ON workflows (tenant, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    "#,
    // 4: unique jobs and progress reports.
    r#"
    ALTER TABLE jobs ADD COLUMN unique_key TEXT;          -- 64 hex digits, tenant-free (taskwheel_core::unique)
    ALTER TABLE jobs ADD COLUMN unique_states INTEGER;    -- StateSet bitmask: the states the job holds its key in
    ALTER TABLE jobs ADD COLUMN progress_percent REAL;
    ALTER TABLE jobs ADD COLUMN progress_message TEXT;
    ALTER TABLE jobs ADD COLUMN progress_at INTEGER;
    -- At most one job per (tenant, key) among the jobs whose state is in their
    -- own unique_states. The CASE is StateSet::bit; the store's queries repeat
    -- this predicate verbatim (HOLDS_UNIQUE_KEY) so the index serves them.
    CREATE UNIQUE INDEX jobs_unique ON jobs (tenant, unique_key)
        WHERE unique_key IS NOT NULL AND (unique_states & CASE state WHEN 'scheduled' THEN 1
            WHEN 'available' THEN 2 WHEN 'running' THEN 4 WHEN 'succeeded' THEN 8
            WHEN 'failed' THEN 16 WHEN 'cancelled' THEN 32 WHEN 'blocked' THEN 64
            WHEN 'skipped' THEN 128 ELSE 0 END) <> 0;
    "#,
    // 5: queue flow control: per-queue settings, and the concurrency key of a job.
    r#"
    ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;
    -- Running jobs of a queue, per key: what concurrency and key_concurrency count.
    CREATE INDEX jobs_running_by_queue ON jobs (tenant, queue, concurrency_key) WHERE state = 'running';
    -- A row only for a queue whose settings were ever changed; none = running, no limits.
    CREATE TABLE queue_settings (
        tenant           TEXT    NOT NULL,
        queue            TEXT    NOT NULL,
        paused           INTEGER NOT NULL DEFAULT 0,
        concurrency      INTEGER,                    -- NULL = unlimited, like every limit here
        key_concurrency  INTEGER,
        rate_limit       INTEGER,                    -- tokens per rate_per_ms
        rate_per_ms      INTEGER,
        rate_burst       INTEGER,
        tokens           REAL,                       -- the token bucket, as of refilled_at
        refilled_at      INTEGER,
        wake_at          INTEGER,                    -- a lease ran out of tokens: wake waiters then
        updated_at       INTEGER NOT NULL,
        PRIMARY KEY (tenant, queue)
    ) WITHOUT ROWID;
    CREATE INDEX queue_settings_wake ON queue_settings (wake_at) WHERE wake_at IS NOT NULL;
    "#,
    // 6: which jobs have dependents, so ending a job without any looks for none.
    r#"
    ALTER TABLE jobs ADD COLUMN has_children INTEGER NOT NULL DEFAULT 0;
    UPDATE jobs SET has_children = 1 WHERE id IN (SELECT parent_id FROM job_deps);
    "#,
    // 7: retention finds ended jobs by when they ended.
    r#"
    CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
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
