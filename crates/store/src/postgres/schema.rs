//! The PostgreSQL schema and its migrations: the same tables, columns and
//! indexes as the SQLite engine (`sqlite/schema.rs`), in PostgreSQL types.
//!
//! - Ids and lease tokens are `uuid`; instants are `timestamptz`
//!   (microsecond precision, like every instant in taskwheel, and readable in
//!   `psql`); durations are milliseconds in `bigint`; payloads, results, retry
//!   policies, tags and schedule definitions are `jsonb`.
//! - Migrations are embedded, applied in order, and recorded in
//!   `taskwheel_migrations`. Several nodes may start at once: they all run
//!   [`migrate`], which takes a transaction-scoped advisory lock first, so one
//!   node migrates and the others wait, then find nothing left to do. DDL is
//!   transactional in PostgreSQL, so a crash mid-migration leaves the schema
//!   as it was.

use sqlx_core::sql_str::AssertSqlSafe;
use sqlx_postgres::PgPool;

use super::error::Res;

/// Each entry moves the schema from version `index` to `index + 1`. Never edit
/// a released entry; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: jobs, their finished attempts, schedules (SQLite's migrations 1 and 2).
    r#"
    CREATE TABLE jobs (
        id                uuid        PRIMARY KEY,   -- UUIDv7
        tenant            text        NOT NULL,
        queue             text        NOT NULL,
        kind              text        NOT NULL,
        payload           jsonb       NOT NULL,
        priority          smallint    NOT NULL,
        state             text        NOT NULL,
        run_at            timestamptz NOT NULL,
        created_at        timestamptz NOT NULL,
        updated_at        timestamptz NOT NULL,
        finished_at       timestamptz,
        timeout_ms        bigint,
        retry             jsonb       NOT NULL,      -- RetryPolicy
        idempotency_key   text,
        tags              jsonb       NOT NULL,      -- array of strings
        attempt           integer     NOT NULL DEFAULT 0, -- attempts in the current run
        attempts_total    integer     NOT NULL DEFAULT 0, -- attempts over the job's life (numbers attempt rows)
        cancel_requested  boolean     NOT NULL DEFAULT false,
        lease_token       uuid,                      -- the lease columns are set only while running
        worker            text,
        started_at        timestamptz,
        lease_expires_at  timestamptz,
        deadline          timestamptz,
        lease_ms          bigint,
        schedule_id       uuid,                      -- the schedule and tick that created the job
        fire_time         timestamptz
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
    -- Exactly one job per (schedule, tick), whatever races, crashes or nodes.
    CREATE UNIQUE INDEX jobs_schedule_tick ON jobs (schedule_id, fire_time) WHERE schedule_id IS NOT NULL;
    -- For the overlap policy: is a run of this schedule still pending or running?
    CREATE INDEX jobs_schedule_active ON jobs (schedule_id)
        WHERE schedule_id IS NOT NULL AND state IN ('scheduled', 'available', 'running');

    CREATE TABLE attempts (
        job_id       uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        number       integer     NOT NULL,
        worker       text        NOT NULL,
        started_at   timestamptz NOT NULL,
        finished_at  timestamptz NOT NULL,
        outcome      text        NOT NULL,
        error        text,
        result       jsonb,
        PRIMARY KEY (job_id, number)
    );

    CREATE TABLE schedules (
        id               uuid        PRIMARY KEY,
        tenant           text        NOT NULL,
        name             text        NOT NULL,
        definition       jsonb       NOT NULL,       -- ScheduleDefinition
        paused           boolean     NOT NULL DEFAULT false,
        next_fire_at     timestamptz,                -- the earliest unfired tick; NULL once ended
        last_fire_at     timestamptz,
        created_at       timestamptz NOT NULL,
        updated_at       timestamptz NOT NULL,
        fired            bigint      NOT NULL DEFAULT 0,
        missed           bigint      NOT NULL DEFAULT 0,
        skipped_overlap  bigint      NOT NULL DEFAULT 0,
        failed           bigint      NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX schedules_name ON schedules (tenant, name);
    CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused AND next_fire_at IS NOT NULL;
    "#,
    // 2: cluster membership and scheduler shard leases (see cluster.rs).
    r#"
    CREATE TABLE nodes (
        id          text        PRIMARY KEY,
        address     text        NOT NULL,
        started_at  timestamptz NOT NULL,
        last_seen   timestamptz NOT NULL
    );
    CREATE TABLE shard_leases (
        shard       integer     PRIMARY KEY,
        owner       text,
        epoch       bigint      NOT NULL DEFAULT 0,   -- bumped by every takeover: the fencing token
        expires_at  timestamptz NOT NULL DEFAULT '-infinity'
    );
    INSERT INTO shard_leases (shard) SELECT generate_series(0, 15);
    "#,
    // 3: dependencies between jobs, and workflows (SQLite's migration 3).
    r#"
    ALTER TABLE jobs ADD COLUMN depends_on uuid[];          -- NULL without parents
    ALTER TABLE jobs ADD COLUMN on_parent_failure text;     -- 'skip' | 'run'; NULL without parents
    ALTER TABLE jobs ADD COLUMN workflow_id uuid;
    ALTER TABLE jobs ADD COLUMN workflow_job text;          -- the job's name in its workflow
    CREATE INDEX jobs_workflow ON jobs (workflow_id) WHERE workflow_id IS NOT NULL;

    CREATE TABLE job_deps (
        parent_id  uuid NOT NULL,
        child_id   uuid NOT NULL,
        PRIMARY KEY (parent_id, child_id)
    );
    CREATE INDEX job_deps_child ON job_deps (child_id, parent_id);

    CREATE TABLE workflows (
        id               uuid        PRIMARY KEY,
        tenant           text        NOT NULL,
        name             text,
        idempotency_key  text,
        created_at       timestamptz NOT NULL
    );
    CREATE UNIQUE INDEX workflows_idempotency ON workflows (tenant, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    "#,
    // 4: unique jobs and progress reports (SQLite's migration 4).
    r#"
    ALTER TABLE jobs ADD COLUMN unique_key text;            -- 64 hex digits, tenant-free (taskwheel_core::unique)
    ALTER TABLE jobs ADD COLUMN unique_states integer;      -- StateSet bitmask: the states the job holds its key in
    ALTER TABLE jobs ADD COLUMN progress_percent double precision;
    ALTER TABLE jobs ADD COLUMN progress_message text;
    ALTER TABLE jobs ADD COLUMN progress_at timestamptz;
    -- At most one job per (tenant, key) among the jobs whose state is in their
    -- own unique_states. The CASE is StateSet::bit; the store's queries repeat
    -- this predicate verbatim (HOLDS_UNIQUE_KEY) so the index serves them.
    CREATE UNIQUE INDEX jobs_unique ON jobs (tenant, unique_key)
        WHERE unique_key IS NOT NULL AND (unique_states & CASE state WHEN 'scheduled' THEN 1
            WHEN 'available' THEN 2 WHEN 'running' THEN 4 WHEN 'succeeded' THEN 8
            WHEN 'failed' THEN 16 WHEN 'cancelled' THEN 32 WHEN 'blocked' THEN 64
            WHEN 'skipped' THEN 128 ELSE 0 END) <> 0;
    "#,
    // 5: queue flow control (SQLite's migration 5): per-queue settings, and a job's concurrency key.
    r#"
    ALTER TABLE jobs ADD COLUMN concurrency_key text;
    -- Running jobs of a queue, per key: what concurrency and key_concurrency count.
    CREATE INDEX jobs_running_by_queue ON jobs (tenant, queue, concurrency_key) WHERE state = 'running';
    -- A row only for a queue whose settings were ever changed; none = running, no limits.
    -- A lease of a limited queue locks its row FOR UPDATE: the limits hold across nodes.
    CREATE TABLE queue_settings (
        tenant           text        NOT NULL,
        queue            text        NOT NULL,
        paused           boolean     NOT NULL DEFAULT false,
        concurrency      integer,                    -- NULL = unlimited, like every limit here
        key_concurrency  integer,
        rate_limit       integer,                    -- tokens per rate_per_ms
        rate_per_ms      bigint,
        rate_burst       integer,
        tokens           double precision,           -- the token bucket, as of refilled_at
        refilled_at      timestamptz,
        wake_at          timestamptz,                -- a lease ran out of tokens: wake waiters then
        updated_at       timestamptz NOT NULL,
        PRIMARY KEY (tenant, queue)
    );
    CREATE INDEX queue_settings_wake ON queue_settings (wake_at) WHERE wake_at IS NOT NULL;
    "#,
    // 6: which jobs have dependents (SQLite's migration 6).
    r#"
    ALTER TABLE jobs ADD COLUMN has_children boolean NOT NULL DEFAULT false;
    UPDATE jobs SET has_children = true WHERE id IN (SELECT parent_id FROM job_deps);
    "#,
    // 7: retention finds ended jobs by when they ended (SQLite's migration 7).
    r#"
    CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
    "#,
];

/// The schema version a fully migrated database is at.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The advisory lock class of migrations (two-key form: class, schema hash),
/// so a migration in one schema does not wait for one in another.
const MIGRATION_LOCK_CLASS: i32 = 0x7457_6d67; // "tWmg"

/// Creates `schema` if it is named and missing, then brings it to the newest
/// version, all in one transaction under the migration lock.
pub(super) async fn migrate(pool: &PgPool, schema: Option<&str>) -> Res<()> {
    let mut tx = pool.begin().await?;
    // Scoped to the transaction: released by COMMIT or ROLLBACK, and by the
    // server if this node dies, so a crash never leaves it held.
    sqlx_core::query::query(
        "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE($2, current_schema(), 'public')))",
    )
    .bind(MIGRATION_LOCK_CLASS)
    .bind(schema)
    .execute(&mut *tx)
    .await?;
    if let Some(schema) = schema {
        // The name is checked to be a plain identifier (`PgConfig::validate`).
        sqlx_core::query::query(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut *tx)
        .await?;
    }
    sqlx_core::query::query(
        "CREATE TABLE IF NOT EXISTS taskwheel_migrations (
            version     integer     PRIMARY KEY,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *tx)
    .await?;
    let current: i32 = sqlx_core::query_scalar::query_scalar(
        "SELECT COALESCE(MAX(version), 0) FROM taskwheel_migrations",
    )
    .fetch_one(&mut *tx)
    .await?;
    let current = usize::try_from(current).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        // A multi-statement script needs the simple query protocol.
        sqlx_core::raw_sql::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx_core::query::query("INSERT INTO taskwheel_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    tx.commit().await?;
    Ok(())
}
