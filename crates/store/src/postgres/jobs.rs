//! The SQL of every job operation. Each function runs inside the caller's
//! [`Tx`] (one transaction per store operation) or, for single-statement
//! reads, directly on the pool.
//!
//! Locking, so that several nodes can share the database:
//! - **Lease** selects its candidates `FOR UPDATE SKIP LOCKED`: two leasers
//!   never wait for each other and never see the same row; a row another
//!   transaction is leasing is simply skipped. Only then are the locked rows
//!   updated, by id, so nothing unlocked is ever claimed.
//! - **Transitions** of one job (heartbeat, complete, fail, snooze, cancel,
//!   rerun) load the row `FOR UPDATE`, ask `taskwheel_core::lifecycle`, and
//!   write the verdict: a concurrent transition of the same job waits, then
//!   re-reads the committed state and is judged on it (a stale lease token
//!   loses). A worker's report locks the row only while it is running, so a
//!   stale report never hides an available job from a leaser. Batch
//!   completion locks its rows in id order, so two batches cannot deadlock
//!   each other. A refused transition rolls back at once, releasing its lock.
//! - **Promotion and reaping** take due rows `FOR UPDATE SKIP LOCKED` in
//!   slices: several nodes' timer passes split the work instead of queueing
//!   behind each other.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use sqlx_core::query::query;
use sqlx_core::query_as::query_as;
use sqlx_core::query_scalar::query_scalar;
use sqlx_core::row::Row;
use sqlx_core::sql_str::AssertSqlSafe;
use sqlx_postgres::{PgExecutor, PgPool};
use taskwheel_core::lifecycle::{self, CancelEffect, FailureCause, FailureVerdict};
use taskwheel_core::time::add;
use taskwheel_core::unique::{Resolution, UniqueOutcome};
use taskwheel_core::{
    AttemptOutcome, Job, JobId, JobState, LeaseToken, NewJob, Progress, RetryPolicy, RunningLease,
};
use uuid::Uuid;

use super::cluster::Shards;
use super::error::{Res, answer, is_unique_violation};
use super::queues;
use super::rows::{
    self, At, JOB_COLUMN_COUNT, Running, int, job_columns, running_columns, to_millis,
};
use super::tx::Tx;
use super::workflows;
use crate::{
    Completion, HOLDS_UNIQUE_KEY, Heartbeat, JobFilter, LeaseParams, Leased, LeasedJob, Moved,
    QueueRef, Released, Result, StoreError, Submitted, UNIQUE_TAKEN, Woken,
};

/// Promotion and reaping work in slices of this many jobs per statement.
const SLICE: i64 = 1000;

impl Running {
    /// The current lease, if `token` holds it.
    fn check(&self, token: LeaseToken) -> Result<&RunningLease> {
        lifecycle::check_lease(self.state, self.lease.as_ref(), token)?;
        self.lease.as_ref().ok_or(StoreError::Transition(
            lifecycle::TransitionError::StaleLease,
        ))
    }
}

/// How often a unique submission tries again when the job that held its key
/// left its unique states between the insert and the look-up.
const UNIQUE_TRIES: u32 = 5;

pub(super) async fn submit(tx: &mut Tx, job: NewJob, now: Timestamp) -> Res<Submitted> {
    let mut answers = submit_many(tx, vec![(job, now)]).await?;
    Ok(answers
        .pop()
        .ok_or_else(|| StoreError::Backend("a submit went unanswered".into()))??)
}

/// Submits one job in its own statements: its parents, its unique key.
async fn submit_one(tx: &mut Tx, job: NewJob, now: Timestamp) -> Res<Submitted> {
    for _ in 0..UNIQUE_TRIES {
        let unique = job.unique.as_ref().map(|_| UniqueOutcome::New);
        if let Some(inserted) = insert_job(tx, job.clone(), now).await? {
            return Ok(Submitted {
                job: inserted,
                deduplicated: false,
                unique,
            });
        }
        // ON CONFLICT DO NOTHING waited for any concurrent insert of the same key
        // to commit; this statement's fresh snapshot sees the winner.
        if let Some(key) = &job.idempotency_key {
            let existing = query(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE tenant = $1 AND idempotency_key = $2"
            ))
            .bind(&job.tenant)
            .bind(key)
            .fetch_optional(tx.conn())
            .await?;
            if let Some(row) = existing {
                return Ok(Submitted {
                    job: rows::job(&row)?,
                    deduplicated: true,
                    unique: None,
                });
            }
        }
        let Some(unique) = &job.unique else {
            break;
        };
        // Lock the holder: a concurrent lease, replace or completion waits,
        // or has committed and is re-checked against the predicate here.
        let holder = query(AssertSqlSafe(format!(
            "SELECT {} FROM jobs WHERE tenant = $1 AND unique_key = $2 AND {HOLDS_UNIQUE_KEY} FOR UPDATE",
            job_columns!()
        )))
        .bind(&job.tenant)
        .bind(&unique.key)
        .fetch_optional(tx.conn())
        .await?;
        let Some(holder) = holder else {
            // The holder just finished (left its states): insert again.
            continue;
        };
        let holder = rows::job(&holder)?;
        return match taskwheel_core::unique::on_conflict(unique.on_conflict, holder.state) {
            Resolution::Keep => Ok(Submitted {
                job: holder,
                deduplicated: false,
                unique: Some(UniqueOutcome::Deduplicated),
            }),
            Resolution::Overwrite => Ok(Submitted {
                job: overwrite(tx, holder.id, &job, now).await?,
                deduplicated: false,
                unique: Some(UniqueOutcome::Replaced),
            }),
        };
    }
    // Fresh v7 ids do not collide, and a submitted job has no schedule tick.
    Err(StoreError::Backend("a submitted job collided on insert".into()).into())
}

/// Overwrites the pending job `id` (locked by the caller) with the submission
/// `job` (replace and debounce): it keeps its id, key and attempt history
/// and gets a fresh budget.
async fn overwrite(tx: &mut Tx, id: JobId, job: &NewJob, now: Timestamp) -> Res<Job> {
    let state = job.initial_state(now);
    query(
        "UPDATE jobs SET queue = $2, kind = $3, payload = $4, priority = $5, state = $6, run_at = $7, \
         updated_at = $8, timeout_ms = $9, retry = $10, tags = $11, unique_states = $12, attempt = 0 \
         WHERE id = $1",
    )
    .bind(id.0)
    .bind(&job.queue)
    .bind(&job.kind)
    .bind(&job.payload)
    .bind(i16::from(job.priority.get()))
    .bind(state.as_str())
    .bind(At(job.run_at))
    .bind(At(now))
    .bind(job.timeout.map(to_millis))
    .bind(serde_json::to_value(&job.retry)?)
    .bind(serde_json::to_value(&job.tags)?)
    .bind(job.unique.as_ref().map(|u| i32::from(u.states.bits())))
    .execute(tx.conn())
    .await?;
    if state == JobState::Available {
        tx.wake(&job.tenant, &job.queue);
    }
    load_job(tx, &job.tenant, id, false).await
}

/// Submits many jobs (each with its own `now`) in two statements whatever
/// their number: one multi-row `INSERT ... ON CONFLICT DO NOTHING`, then one
/// lookup of the idempotency keys that were already taken. One answer per
/// job, in order. An earlier job of the same call with the same key counts
/// as taken (the later one answers it, deduplicated).
pub(super) async fn submit_many(
    tx: &mut Tx,
    jobs: Vec<(NewJob, Timestamp)>,
) -> Res<Vec<Result<Submitted>>> {
    if jobs.iter().any(|(job, _)| {
        !job.depends_on.is_empty() || job.workflow.is_some() || job.unique.is_some()
    }) {
        // Jobs with parents are judged on their parents' rows, unique jobs
        // on the holder of their key: one by one.
        let mut answers = Vec::with_capacity(jobs.len());
        for (job, now) in jobs {
            answers.push(answer(submit_one(tx, job, now).await)?);
        }
        return Ok(answers);
    }
    let n = jobs.len();
    let (mut ids, mut tenants, mut queues, mut kinds, mut payloads) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut priorities, mut states, mut run_ats, mut created) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut concurrency_keys = Vec::with_capacity(n);
    let (mut timeouts, mut retries, mut keys, mut tags, mut schedules, mut ticks) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (job, now) in &jobs {
        ids.push(job.id.0);
        tenants.push(job.tenant.as_str());
        queues.push(job.queue.as_str());
        kinds.push(job.kind.as_str());
        payloads.push(job.payload.clone());
        priorities.push(i16::from(job.priority.get()));
        states.push(job.initial_state(*now).as_str());
        run_ats.push(At(job.run_at));
        created.push(At(job.created_at));
        timeouts.push(job.timeout.map(to_millis));
        retries.push(serde_json::to_value(&job.retry)?);
        keys.push(job.idempotency_key.as_deref());
        tags.push(serde_json::to_value(&job.tags)?);
        schedules.push(job.schedule.map(|(id, _)| id.0));
        ticks.push(job.schedule.map(|(_, tick)| At(tick)));
        concurrency_keys.push(job.concurrency_key.as_deref());
    }
    // In the order given, so that of two jobs with one key the first wins.
    let inserted: Vec<Uuid> = query_scalar(
        "INSERT INTO jobs (id, tenant, queue, kind, payload, priority, state, run_at, created_at, \
         updated_at, timeout_ms, retry, idempotency_key, tags, schedule_id, fire_time, \
         concurrency_key) \
         SELECT id, tenant, queue, kind, payload, priority, state, run_at, created_at, created_at, \
         timeout_ms, retry, idempotency_key, tags, schedule_id, fire_time, concurrency_key \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::smallint[], \
         $7::text[], $8::timestamptz[], $9::timestamptz[], $10::bigint[], $11::jsonb[], $12::text[], \
         $13::jsonb[], $14::uuid[], $15::timestamptz[], $16::text[]) WITH ORDINALITY \
         AS u(id, tenant, queue, kind, payload, priority, state, run_at, created_at, timeout_ms, \
         retry, idempotency_key, tags, schedule_id, fire_time, concurrency_key, n) \
         ORDER BY n ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&queues)
    .bind(&kinds)
    .bind(&payloads)
    .bind(&priorities)
    .bind(&states)
    .bind(&run_ats)
    .bind(&created)
    .bind(&timeouts)
    .bind(&retries)
    .bind(&keys)
    .bind(&tags)
    .bind(&schedules)
    .bind(&ticks)
    .bind(&concurrency_keys)
    .fetch_all(tx.conn())
    .await?;
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    // ON CONFLICT DO NOTHING waited for any concurrent insert of the same key
    // to commit; this statement's fresh snapshot sees the winner.
    let (mut taken_tenants, mut taken_keys) = (vec![], vec![]);
    for (job, _) in &jobs {
        if let (false, Some(key)) = (inserted.contains(&job.id.0), &job.idempotency_key) {
            taken_tenants.push(job.tenant.as_str());
            taken_keys.push(key.as_str());
        }
    }
    let mut existing = HashMap::new();
    if !taken_keys.is_empty() {
        let found = query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE (tenant, idempotency_key) IN \
             (SELECT * FROM unnest($1::text[], $2::text[]))"
        ))
        .bind(&taken_tenants)
        .bind(&taken_keys)
        .fetch_all(tx.conn())
        .await?;
        for row in &found {
            let job = rows::job(row)?;
            if let Some(key) = job.idempotency_key.clone() {
                existing.insert((job.tenant.clone(), key), job);
            }
        }
    }
    let mut answers = Vec::with_capacity(n);
    for (job, now) in jobs {
        if inserted.contains(&job.id.0) {
            let state = job.initial_state(now);
            let job = stored(job, state, now);
            if job.state == JobState::Available {
                tx.wake(&job.tenant, &job.queue);
            }
            answers.push(Ok(Submitted {
                job,
                deduplicated: false,
                unique: None,
            }));
            continue;
        }
        let winner = job
            .idempotency_key
            .clone()
            .and_then(|key| existing.get(&(job.tenant.clone(), key)));
        answers.push(match winner {
            Some(winner) => Ok(Submitted {
                job: winner.clone(),
                deduplicated: true,
                unique: None,
            }),
            // Fresh v7 ids do not collide, and a submitted job has no schedule tick.
            None => Err(StoreError::Backend(format!(
                "job {} collided on insert",
                job.id
            ))),
        });
    }
    Ok(answers)
}

/// Inserts a job; `None` when it collides with an existing one on a unique
/// index: the same idempotency key, or the same (schedule, tick).
pub(super) async fn insert_job(tx: &mut Tx, job: NewJob, now: Timestamp) -> Res<Option<Job>> {
    let state = workflows::initial_state(tx, &job, now).await?;
    // A job whose parent already failed is skipped from the start.
    let finished_at = state.is_final().then_some(now);
    let has_parents = !job.depends_on.is_empty();
    let inserted = query(
        "INSERT INTO jobs (id, tenant, queue, kind, payload, priority, state, run_at, created_at, \
         updated_at, timeout_ms, retry, idempotency_key, tags, schedule_id, fire_time, finished_at, \
         depends_on, on_parent_failure, workflow_id, workflow_job, unique_key, unique_states, \
         concurrency_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) \
         ON CONFLICT DO NOTHING",
    )
    .bind(job.id.0)
    .bind(&job.tenant)
    .bind(&job.queue)
    .bind(&job.kind)
    .bind(&job.payload)
    .bind(i16::from(job.priority.get()))
    .bind(state.as_str())
    .bind(At(job.run_at))
    .bind(At(job.created_at))
    .bind(job.timeout.map(to_millis))
    .bind(serde_json::to_value(&job.retry)?)
    .bind(&job.idempotency_key)
    .bind(serde_json::to_value(&job.tags)?)
    .bind(job.schedule.map(|(id, _)| id.0))
    .bind(job.schedule.map(|(_, tick)| At(tick)))
    .bind(finished_at.map(At))
    .bind(has_parents.then(|| job.depends_on.iter().map(|p| p.0).collect::<Vec<Uuid>>()))
    .bind(has_parents.then_some(job.on_parent_failure.as_str()))
    .bind(job.workflow.as_ref().map(|(id, _)| id.0))
    .bind(job.workflow.as_ref().map(|(_, name)| name.as_str()))
    .bind(job.unique.as_ref().map(|u| u.key.as_str()))
    .bind(job.unique.as_ref().map(|u| i32::from(u.states.bits())))
    .bind(&job.concurrency_key)
    .execute(tx.conn())
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    workflows::insert_edges(tx, job.id, &job.depends_on).await?;
    if state == JobState::Available {
        tx.wake(&job.tenant, &job.queue);
    }
    Ok(Some(stored(job, state, now)))
}

/// The job a fresh insert of `job` in `state` stored.
fn stored(job: NewJob, state: JobState, now: Timestamp) -> Job {
    Job {
        state,
        // A job whose parent already failed is skipped from the start.
        finished_at: state.is_final().then_some(now),
        id: job.id,
        tenant: job.tenant,
        queue: job.queue,
        kind: job.kind,
        payload: job.payload,
        priority: job.priority,
        run_at: job.run_at,
        created_at: job.created_at,
        updated_at: job.created_at,
        timeout: job.timeout,
        retry: job.retry,
        idempotency_key: job.idempotency_key,
        tags: job.tags,
        concurrency_key: job.concurrency_key,
        schedule_id: job.schedule.map(|(id, _)| id),
        fire_time: job.schedule.map(|(_, tick)| tick),
        depends_on: job.depends_on,
        on_parent_failure: job.on_parent_failure,
        workflow: job.workflow,
        attempt: 0,
        cancel_requested: false,
        lease: None,
        unique_key: job.unique.map(|u| u.key),
        progress: None,
        attempts: Vec::new(),
    }
}

/// A job with its finished attempts, in one statement (one snapshot).
pub(super) async fn get_job(pool: &PgPool, tenant: &str, id: JobId) -> Res<Job> {
    let found = query(concat!(
        "SELECT j.*, a.* FROM (SELECT ",
        job_columns!(),
        " FROM jobs WHERE id = $1 AND tenant = $2) AS j \
         LEFT JOIN LATERAL (SELECT number, worker, started_at, finished_at, outcome, error, result \
         FROM attempts WHERE job_id = j.id) AS a ON true ORDER BY a.number"
    ))
    .bind(id.0)
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    let first = found.first().ok_or(StoreError::NotFound)?;
    let mut job = rows::job(first)?;
    // The job's columns, then the attempt's 7 (all NULL without attempts).
    for row in &found {
        if row.try_get::<Option<i32>, _>(JOB_COLUMN_COUNT)?.is_some() {
            job.attempts.push(rows::attempt(row, JOB_COLUMN_COUNT)?);
        }
    }
    Ok(job)
}

async fn load_job(tx: &mut Tx, tenant: &str, id: JobId, lock: bool) -> Res<Job> {
    let sql = if lock {
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1 AND tenant = $2 FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1 AND tenant = $2"
        )
    };
    let row = query(sql)
        .bind(id.0)
        .bind(tenant)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
    rows::job(&row)
}

pub(super) async fn list_jobs(pool: &PgPool, tenant: &str, filter: &JobFilter) -> Res<Vec<Job>> {
    let mut sql = String::from(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE tenant = $1"
    ));
    let mut n = 1;
    let mut arg = |sql: &mut String, clause: &str| {
        n += 1;
        // Writing to a String cannot fail.
        let _ = write!(sql, " AND {clause} ${n}");
    };
    if filter.queue.is_some() {
        arg(&mut sql, "queue =");
    }
    if filter.state.is_some() {
        arg(&mut sql, "state =");
    }
    if filter.kind.is_some() {
        arg(&mut sql, "kind =");
    }
    if filter.before.is_some() {
        arg(&mut sql, "id <");
    }
    let _ = write!(sql, " ORDER BY id DESC LIMIT ${}", n + 1);
    // Only placeholders are spliced in; every value is bound.
    let mut q = query(AssertSqlSafe(sql)).bind(tenant);
    if let Some(queue) = &filter.queue {
        q = q.bind(queue);
    }
    if let Some(state) = filter.state {
        q = q.bind(state.as_str());
    }
    if let Some(kind) = &filter.kind {
        q = q.bind(kind);
    }
    if let Some(before) = filter.before {
        q = q.bind(before.0);
    }
    let found = q.bind(i64::from(filter.limit)).fetch_all(pool).await?;
    found.iter().map(rows::job).collect()
}

pub(super) async fn lease(tx: &mut Tx, p: &LeaseParams, now: Timestamp) -> Res<Leased> {
    if p.max == 0 || p.queues.is_empty() {
        return Ok(Leased::default());
    }
    // Unlimited queues first, lock-free. Lock first, then update by id: a
    // plain `UPDATE ... WHERE id IN (SELECT ... LIMIT n)` does not lock its
    // subquery and can claim a row twice. One queue (the common case) walks
    // `jobs_available` in dispatch order and stops after `max` rows; several
    // queues have no single index order, so PostgreSQL sorts their available
    // rows (exact, but its cost grows with their backlog). Limited queues are
    // left out by a one-time check of their settings (an InitPlan, not a
    // per-row lookup).
    let candidates = if let [queue] = p.queues.as_slice() {
        query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE tenant = $1 AND state = 'available' AND queue = $2 \
             AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE tenant = $1 AND queue = $2 AND ",
            queues::limited_condition!(),
            ") ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE OF jobs SKIP LOCKED"
        ))
        .bind(&p.tenant)
        .bind(queue)
        .bind(i64::from(p.max))
        .fetch_all(tx.conn())
        .await?
    } else {
        query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE tenant = $1 AND state = 'available' AND queue = ANY($2) \
             AND queue <> ALL(ARRAY(SELECT queue FROM queue_settings WHERE tenant = $1 \
             AND queue = ANY($2) AND ",
            queues::limited_condition!(),
            ")) ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE OF jobs SKIP LOCKED"
        ))
        .bind(&p.tenant)
        .bind(&p.queues)
        .bind(i64::from(p.max))
        .fetch_all(tx.conn())
        .await?
    };
    let candidates = candidates.iter().map(rows::job).collect::<Res<Vec<_>>>()?;
    let mut leased = claim(tx, p, candidates, now).await?;
    let mut refill_at: Option<Timestamp> = None;
    if leased.len() < p.max as usize {
        // Short of `max`: limited queues, under their locked settings rows.
        // The jobs above are claimed already, so they count as running here.
        let limited = queues::lock_limited(tx, &p.tenant, &p.queues).await?;
        let mut picked = Vec::new();
        for q in &limited {
            let want = p.max.saturating_sub((leased.len() + picked.len()) as u32);
            if want == 0 {
                break;
            }
            let (jobs, refill) = queues::pick(tx, &p.tenant, q, want, now).await?;
            picked.extend(jobs);
            refill_at = refill_at.into_iter().chain(refill).min();
        }
        leased.extend(claim(tx, p, picked, now).await?);
    }
    Ok(Leased {
        jobs: leased,
        refill_at,
    })
}

/// Starts an attempt of each candidate (locked by the caller) under a fresh lease.
async fn claim(
    tx: &mut Tx,
    p: &LeaseParams,
    candidates: Vec<Job>,
    now: Timestamp,
) -> Res<Vec<LeasedJob>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut leased = Vec::with_capacity(candidates.len());
    let (mut ids, mut tokens, mut expiries, mut deadlines) = (vec![], vec![], vec![], vec![]);
    for mut job in candidates {
        let deadline = lifecycle::attempt_deadline(now, job.timeout);
        let lease = RunningLease {
            token: LeaseToken::random(),
            worker: p.worker.clone(),
            started_at: now,
            expires_at: lifecycle::lease_expiry(now, p.lease, deadline),
            deadline,
            duration: p.lease,
        };
        ids.push(job.id.0);
        tokens.push(lease.token.0);
        expiries.push(At(lease.expires_at));
        deadlines.push(lease.deadline.map(At));
        job.state = JobState::Running;
        job.attempt += 1;
        job.updated_at = now;
        job.progress = None;
        let (token, expires_at) = (lease.token, lease.expires_at);
        job.lease = Some(lease);
        leased.push(LeasedJob {
            job,
            token,
            expires_at,
            parents: Vec::new(),
        });
    }
    query(
        "UPDATE jobs AS j SET state = 'running', attempt = j.attempt + 1, \
         attempts_total = j.attempts_total + 1, lease_token = u.token, worker = $5, started_at = $6, \
         lease_expires_at = u.expires_at, deadline = u.deadline, lease_ms = $7, updated_at = $6, \
         progress_percent = NULL, progress_message = NULL, progress_at = NULL \
         FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[]) \
         AS u(id, token, expires_at, deadline) WHERE j.id = u.id",
    )
    .bind(ids)
    .bind(tokens)
    .bind(expiries)
    .bind(deadlines)
    .bind(&p.worker)
    .bind(At(now))
    .bind(to_millis(p.lease))
    .execute(tx.conn())
    .await?;
    workflows::add_parent_results(tx, &p.tenant, &mut leased).await?;
    Ok(leased)
}

/// Loads and locks a running job for a worker's report. Only a running row
/// is locked: a leaser skips locked rows, so locking an available job (say,
/// for a stale heartbeat after the job was reaped) would hide it from a
/// lease for no reason. A job that is not running gets its verdict from the
/// lifecycle without a lock.
async fn load_running(tx: &mut Tx, tenant: &str, id: JobId, token: LeaseToken) -> Res<Running> {
    let row = query(concat!(
        "SELECT ",
        running_columns!(),
        " FROM jobs WHERE id = $1 AND tenant = $2 AND state = 'running' FOR UPDATE"
    ))
    .bind(id.0)
    .bind(tenant)
    .fetch_optional(tx.conn())
    .await?;
    match row {
        Some(row) => rows::running(&row),
        None => Err(not_running(tx, tenant, id, token).await?.into()),
    }
}

/// Why a job is not there to report on: no such job, or the lifecycle's
/// verdict on a job that is not running (a stale lease).
async fn not_running(tx: &mut Tx, tenant: &str, id: JobId, token: LeaseToken) -> Res<StoreError> {
    let state: Option<String> =
        query_scalar("SELECT state FROM jobs WHERE id = $1 AND tenant = $2")
            .bind(id.0)
            .bind(tenant)
            .fetch_optional(tx.conn())
            .await?;
    let Some(state) = state else {
        return Ok(StoreError::NotFound);
    };
    let state: JobState = state.parse().map_err(StoreError::Backend)?;
    Ok(match lifecycle::check_lease(state, None, token) {
        Err(e) => e.into(),
        // Not running, yet the lifecycle accepts the token: impossible, but
        // say so rather than pretend.
        Ok(()) => StoreError::Backend(format!("job {id} is {state} but holds a lease")),
    })
}

pub(super) async fn heartbeat(
    tx: &mut Tx,
    tenant: &str,
    id: JobId,
    token: LeaseToken,
    progress: Option<Progress>,
    now: Timestamp,
) -> Res<Heartbeat> {
    let running = load_running(tx, tenant, id, token).await?;
    let lease = running.check(token)?;
    let expires_at = lifecycle::lease_expiry(now, lease.duration, lease.deadline);
    match progress {
        None => {
            query("UPDATE jobs SET lease_expires_at = $2 WHERE id = $1")
                .bind(id.0)
                .bind(At(expires_at))
                .execute(tx.conn())
                .await?;
        }
        Some(p) => {
            query(
                "UPDATE jobs SET lease_expires_at = $2, progress_percent = $3, progress_message = $4, \
                 progress_at = $5 WHERE id = $1",
            )
            .bind(id.0)
            .bind(At(expires_at))
            .bind(p.percent)
            .bind(p.message)
            .bind(At(p.updated_at))
            .execute(tx.conn())
            .await?;
        }
    }
    Ok(Heartbeat {
        expires_at,
        cancel_requested: running.cancel_requested,
    })
}

/// One heartbeat of [`heartbeat_many`].
#[derive(Clone)]
pub(super) struct Beat {
    pub(super) tenant: String,
    pub(super) id: JobId,
    pub(super) token: LeaseToken,
    /// A heartbeat that reports progress is run alone ([`heartbeat`]).
    pub(super) progress: Option<Progress>,
    pub(super) now: Timestamp,
}

/// Extends many leases in two statements whatever their number: lock the
/// running rows (in id order), then one `UPDATE` of the expiries the
/// lifecycle granted. Each heartbeat is judged on its own, so a stale token
/// fails only its own answer.
pub(super) async fn heartbeat_many(tx: &mut Tx, beats: Vec<Beat>) -> Res<Vec<Result<Heartbeat>>> {
    let ids: Vec<Uuid> = beats.iter().map(|b| b.id.0).collect();
    let jobs = lock_running(tx, &ids).await?;
    let mut answers = Vec::with_capacity(beats.len());
    let (mut extended, mut expiries) = (vec![], vec![]);
    for beat in beats {
        let Some(running) = jobs.get(&beat.id).filter(|r| r.tenant == beat.tenant) else {
            answers.push(Err(
                not_running(tx, &beat.tenant, beat.id, beat.token).await?
            ));
            continue;
        };
        match running.check(beat.token) {
            Ok(lease) => {
                let expires_at = lifecycle::lease_expiry(beat.now, lease.duration, lease.deadline);
                extended.push(beat.id.0);
                expiries.push(At(expires_at));
                answers.push(Ok(Heartbeat {
                    expires_at,
                    cancel_requested: running.cancel_requested,
                }));
            }
            Err(e) => answers.push(Err(e)),
        }
    }
    if !extended.is_empty() {
        query(
            "UPDATE jobs AS j SET lease_expires_at = u.expires_at \
             FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, expires_at) WHERE j.id = u.id",
        )
        .bind(extended)
        .bind(expiries)
        .execute(tx.conn())
        .await?;
    }
    Ok(answers)
}

/// Locks the running jobs among `ids`, in id order (so two callers cannot
/// deadlock each other), and loads what a worker's report needs.
pub(super) async fn lock_running(tx: &mut Tx, ids: &[Uuid]) -> Res<HashMap<JobId, Running>> {
    let locked = query(concat!(
        "SELECT ",
        running_columns!(),
        " FROM jobs WHERE id = ANY($1) AND state = 'running' ORDER BY id FOR UPDATE"
    ))
    .bind(ids)
    .fetch_all(tx.conn())
    .await?;
    let mut jobs = HashMap::with_capacity(locked.len());
    for row in &locked {
        let running = rows::running(row)?;
        jobs.insert(running.id, running);
    }
    Ok(jobs)
}

/// Completes a batch; see [`complete_many`].
pub(super) async fn complete(
    tx: &mut Tx,
    tenant: &str,
    items: Vec<Completion>,
    now: Timestamp,
) -> Res<Vec<Result<Moved>>> {
    let items = items
        .into_iter()
        .map(|item| Done {
            tenant: tenant.to_string(),
            item,
            now,
        })
        .collect();
    complete_many(tx, items).await
}

/// One completion of [`complete_many`], with its caller's tenant and `now`.
pub(super) struct Done {
    pub(super) tenant: String,
    pub(super) item: Completion,
    pub(super) now: Timestamp,
}

/// Completes many jobs in three statements whatever their number: lock the
/// rows (in id order), record the attempts, finish the jobs. Items are
/// judged one by one, so a stale token fails only its own item.
pub(super) async fn complete_many(tx: &mut Tx, items: Vec<Done>) -> Res<Vec<Result<Moved>>> {
    let ids: Vec<Uuid> = items.iter().map(|d| d.item.id.0).collect();
    let jobs = lock_running(tx, &ids).await?;
    let mut finished = HashSet::new();
    let mut outcomes = Vec::with_capacity(items.len());
    let (mut done, mut numbers, mut workers, mut started, mut ended, mut results) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    // Only jobs others depend on need their children looked at.
    let mut parents = Vec::new();
    // Children released by the batch are released as of its latest `now`.
    let mut latest = Timestamp::UNIX_EPOCH;
    // Each outcome's tenant, to tell which queues a completion freed.
    let tenants: Vec<String> = items.iter().map(|d| d.tenant.clone()).collect();
    for Done { tenant, item, now } in items {
        let Some(running) = jobs.get(&item.id).filter(|r| r.tenant == tenant) else {
            outcomes.push(Err(not_running(tx, &tenant, item.id, item.token).await?));
            continue;
        };
        if finished.contains(&item.id) {
            // Listed twice: the first completion ended the lease.
            outcomes.push(Err(lifecycle::TransitionError::StaleLease.into()));
            continue;
        }
        match running.check(item.token) {
            Ok(lease) => {
                finished.insert(item.id);
                done.push(item.id.0);
                if running.has_children {
                    parents.push(item.id);
                }
                numbers.push(int(running.attempts_total));
                workers.push(lease.worker.clone());
                started.push(At(lease.started_at));
                ended.push(At(now));
                latest = latest.max(now);
                results.push(item.result.map(rows::storable_json));
                outcomes.push(Ok(Moved {
                    state: JobState::Succeeded,
                    run_at: None,
                    queue: running.queue.clone(),
                    released: Vec::new(),
                    freed: false,
                }));
            }
            Err(e) => outcomes.push(Err(e)),
        }
    }
    if done.is_empty() {
        return Ok(outcomes);
    }
    query(
        "INSERT INTO attempts (job_id, number, worker, started_at, finished_at, outcome, result) \
         SELECT u.job_id, u.number, u.worker, u.started_at, u.finished_at, $6, u.result \
         FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::timestamptz[], $5::timestamptz[], \
         $7::jsonb[]) AS u(job_id, number, worker, started_at, finished_at, result)",
    )
    .bind(&done)
    .bind(numbers)
    .bind(workers)
    .bind(started)
    .bind(&ended)
    .bind(AttemptOutcome::Succeeded.as_str())
    .bind(results)
    .execute(tx.conn())
    .await?;
    // Finishing answers, in the same statement, which of the jobs' queues
    // count running jobs: their waiters may get a job now.
    let freed: Vec<(String, String)> = query_as(
        "WITH done AS (UPDATE jobs AS j SET state = $3, finished_at = u.at, updated_at = u.at, \
         lease_token = NULL, worker = NULL, started_at = NULL, lease_expires_at = NULL, deadline = NULL, \
         lease_ms = NULL FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at) WHERE j.id = u.id \
         RETURNING j.tenant, j.queue) \
         SELECT DISTINCT s.tenant, s.queue FROM queue_settings AS s \
         JOIN done AS d ON s.tenant = d.tenant AND s.queue = d.queue \
         WHERE s.concurrency IS NOT NULL OR s.key_concurrency IS NOT NULL",
    )
    .bind(&done)
    .bind(&ended)
    .bind(JobState::Succeeded.as_str())
    .fetch_all(tx.conn())
    .await?;
    for (tenant, queue) in &freed {
        tx.wake(tenant, queue);
    }
    for (moved, tenant) in outcomes.iter_mut().zip(&tenants) {
        if let Ok(moved) = moved {
            moved.freed = freed.contains(&(tenant.clone(), moved.queue.clone()));
        }
    }
    let mut released: HashMap<JobId, Vec<Released>> = HashMap::new();
    for (parent, child) in workflows::release_children(tx, parents, latest).await? {
        released.entry(parent).or_default().push(child);
    }
    if !released.is_empty() {
        for (item, outcome) in ids.iter().zip(outcomes.iter_mut()) {
            if let (Ok(moved), Some(children)) = (outcome, released.remove(&JobId(*item))) {
                moved.released = children;
            }
        }
    }
    Ok(outcomes)
}

pub(super) async fn fail(
    tx: &mut Tx,
    tenant: &str,
    id: JobId,
    token: LeaseToken,
    error: String,
    cause: FailureCause,
    now: Timestamp,
) -> Res<Moved> {
    let running = load_running(tx, tenant, id, token).await?;
    let lease = running.check(token)?.clone();
    apply_failure(tx, &running, &lease, cause, error, now).await
}

/// Ends a running attempt without success and moves the job where the lifecycle says.
async fn apply_failure(
    tx: &mut Tx,
    running: &Running,
    lease: &RunningLease,
    cause: FailureCause,
    error: String,
    now: Timestamp,
) -> Res<Moved> {
    let retry: RetryPolicy = serde_json::from_value(running.retry.clone())?;
    let verdict = lifecycle::on_failure(
        running.attempt,
        &retry,
        running.cancel_requested,
        cause,
        now,
        fastrand::f64(),
    );
    end_attempt(tx, running, lease, cause.outcome(), Some(error), now).await?;
    let mut moved = match verdict {
        FailureVerdict::RetryAt(at) => put_back(tx, running, at, 0, now).await?,
        FailureVerdict::Dead | FailureVerdict::Cancelled => {
            let state = verdict.state(now);
            let released = finish(tx, running.id, state, now).await?;
            if let (JobState::Failed, Some(schedule)) = (state, running.schedule_id) {
                // A schedule's health counts its dead-lettered runs.
                query("UPDATE schedules SET failed = failed + 1 WHERE id = $1")
                    .bind(schedule)
                    .execute(tx.conn())
                    .await?;
            }
            Moved {
                state,
                run_at: None,
                queue: running.queue.clone(),
                released,
                freed: false,
            }
        }
    };
    moved.freed = queues::frees_slot(tx, &running.tenant, &running.queue).await?;
    Ok(moved)
}

pub(super) async fn snooze(
    tx: &mut Tx,
    tenant: &str,
    id: JobId,
    token: LeaseToken,
    delay: Duration,
    now: Timestamp,
) -> Res<Moved> {
    let running = load_running(tx, tenant, id, token).await?;
    let lease = running.check(token)?.clone();
    end_attempt(tx, &running, &lease, AttemptOutcome::Released, None, now).await?;
    // A snooze is not a failure: give the attempt back to the budget.
    let mut moved = put_back(tx, &running, add(now, delay), 1, now).await?;
    moved.freed = queues::frees_slot(tx, &running.tenant, &running.queue).await?;
    Ok(moved)
}

/// Records the attempt that just ended.
async fn end_attempt(
    tx: &mut Tx,
    running: &Running,
    lease: &RunningLease,
    outcome: AttemptOutcome,
    error: Option<String>,
    now: Timestamp,
) -> Res<()> {
    query(
        "INSERT INTO attempts (job_id, number, worker, started_at, finished_at, outcome, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(running.id.0)
    .bind(int(running.attempts_total))
    .bind(&lease.worker)
    .bind(At(lease.started_at))
    .bind(At(now))
    .bind(outcome.as_str())
    .bind(error.map(rows::storable))
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Moves a job to a final state, clears its lease, and releases the
/// dependent jobs that were waiting for it.
async fn finish(tx: &mut Tx, id: JobId, state: JobState, now: Timestamp) -> Res<Vec<Released>> {
    let has_children = query(
        "UPDATE jobs SET state = $2, finished_at = $3, updated_at = $3, lease_token = NULL, \
         worker = NULL, started_at = NULL, lease_expires_at = NULL, deadline = NULL, lease_ms = NULL \
         WHERE id = $1 RETURNING has_children",
    )
    .bind(id.0)
    .bind(state.as_str())
    .bind(At(now))
    .fetch_one(tx.conn())
    .await?;
    if !has_children.try_get::<bool, _>(0)? {
        return Ok(Vec::new());
    }
    let released = workflows::release_children(tx, vec![id], now).await?;
    Ok(released.into_iter().map(|(_, child)| child).collect())
}

/// Returns a job to the queue, due at `at`; `refund` attempts are given back.
async fn put_back(
    tx: &mut Tx,
    running: &Running,
    at: Timestamp,
    refund: u32,
    now: Timestamp,
) -> Res<Moved> {
    let state = if at > now {
        JobState::Scheduled
    } else {
        JobState::Available
    };
    query(
        "UPDATE jobs SET state = $2, run_at = $3, attempt = attempt - $4, updated_at = $5, \
         lease_token = NULL, worker = NULL, started_at = NULL, lease_expires_at = NULL, \
         deadline = NULL, lease_ms = NULL WHERE id = $1",
    )
    .bind(running.id.0)
    .bind(state.as_str())
    .bind(At(at))
    .bind(int(refund))
    .bind(At(now))
    .execute(tx.conn())
    .await?;
    if state == JobState::Available {
        tx.wake(&running.tenant, &running.queue);
    }
    Ok(Moved {
        state,
        run_at: Some(at),
        queue: running.queue.clone(),
        released: Vec::new(),
        freed: false,
    })
}

pub(super) async fn cancel(
    tx: &mut Tx,
    tenant: &str,
    id: JobId,
    now: Timestamp,
) -> Res<(Job, Vec<Released>)> {
    let job = load_job(tx, tenant, id, true).await?;
    let released = match lifecycle::cancel(job.state)? {
        CancelEffect::Cancelled => finish(tx, id, JobState::Cancelled, now).await?,
        CancelEffect::Requested => {
            query("UPDATE jobs SET cancel_requested = true, updated_at = $2 WHERE id = $1")
                .bind(id.0)
                .bind(At(now))
                .execute(tx.conn())
                .await?;
            Vec::new()
        }
    };
    Ok((load_job(tx, tenant, id, false).await?, released))
}

pub(super) async fn rerun(tx: &mut Tx, tenant: &str, id: JobId, now: Timestamp) -> Res<Job> {
    let job = load_job(tx, tenant, id, true).await?;
    lifecycle::rerun(job.state)?;
    query(
        "UPDATE jobs SET state = 'available', run_at = $2, updated_at = $2, finished_at = NULL, \
         attempt = 0, cancel_requested = false WHERE id = $1",
    )
    .bind(id.0)
    .bind(At(now))
    .execute(tx.conn())
    .await
    .map_err(|e| {
        if is_unique_violation(&e, "jobs_unique") {
            StoreError::Conflict(UNIQUE_TAKEN.into()).into()
        } else {
            super::error::Fault::from(e)
        }
    })?;
    tx.wake(&job.tenant, &job.queue);
    load_job(tx, tenant, id, false).await
}

pub(super) async fn promote_due(tx: &mut Tx, now: Timestamp, shards: &Shards) -> Res<Woken> {
    let mut woken = Woken::default();
    let sql = format!(
        "WITH due AS MATERIALIZED (SELECT id FROM jobs WHERE state = 'scheduled' AND run_at <= $1{} \
         ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         UPDATE jobs AS j SET state = 'available', updated_at = $1 FROM due WHERE j.id = due.id \
         RETURNING j.tenant, j.queue, j.run_at",
        Shards::condition(3)
    );
    loop {
        let moved = query(AssertSqlSafe(sql.clone()))
            .bind(At(now))
            .bind(SLICE)
            .bind(shards.count)
            .bind(&shards.owned)
            .fetch_all(tx.conn())
            .await?;
        for row in &moved {
            let queue = QueueRef {
                tenant: row.try_get(0)?,
                queue: row.try_get(1)?,
            };
            tx.wake(&queue.tenant, &queue.queue);
            woken.queues.insert(queue);
            woken.due.push(row.try_get::<At, _>(2)?.0);
        }
        if (moved.len() as i64) < SLICE {
            return Ok(woken);
        }
    }
}

pub(super) async fn reap_expired(tx: &mut Tx, now: Timestamp, shards: &Shards) -> Res<Woken> {
    let mut woken = Woken::default();
    let sql = format!(
        "SELECT {} FROM jobs WHERE state = 'running' AND lease_expires_at <= $1{} \
         ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        running_columns!(),
        Shards::condition(3)
    );
    loop {
        let expired = query(AssertSqlSafe(sql.clone()))
            .bind(At(now))
            .bind(SLICE)
            .bind(shards.count)
            .bind(&shards.owned)
            .fetch_all(tx.conn())
            .await?;
        for row in &expired {
            let running = rows::running(row)?;
            let Some(lease) = running.lease.clone() else {
                continue;
            };
            let cause = lifecycle::expiry_cause(&lease, now);
            let error = match cause {
                FailureCause::TimedOut => format!(
                    "timed out: the attempt ran past its deadline {}",
                    lease.deadline.map(|d| d.to_string()).unwrap_or_default()
                ),
                _ => format!(
                    "lease expired: worker `{}` stopped heartbeating",
                    lease.worker
                ),
            };
            let moved = apply_failure(tx, &running, &lease, cause, error, now).await?;
            if moved.state == JobState::Available || moved.freed {
                woken.queues.insert(QueueRef {
                    tenant: running.tenant.clone(),
                    queue: running.queue.clone(),
                });
            }
            woken.add_released(&moved.released);
        }
        if (expired.len() as i64) < SLICE {
            return Ok(woken);
        }
    }
}

/// The earliest instant with timer work; each `MIN` is one descent of a partial index.
pub(super) async fn next_timer<'c>(
    db: impl PgExecutor<'c>,
    shards: &Shards,
) -> Res<Option<Timestamp>> {
    let only = Shards::condition(1);
    let next: Option<At> = query_scalar(AssertSqlSafe(format!(
        "SELECT LEAST(\
         (SELECT MIN(run_at) FROM jobs WHERE state = 'scheduled'{only}), \
         (SELECT MIN(lease_expires_at) FROM jobs WHERE state = 'running'{only}), \
         (SELECT MIN(next_fire_at) FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL{only}), \
         (SELECT MIN(wake_at) FROM queue_settings WHERE wake_at IS NOT NULL))"
    )))
    .bind(shards.count)
    .bind(&shards.owned)
    .fetch_one(db)
    .await?;
    Ok(next.map(|at| at.0))
}

/// The queues that have available jobs now: after the listener lost its
/// connection, these are announced again, since notifications sent while it
/// was away are gone.
pub(super) async fn available_queues(pool: &PgPool) -> Res<Vec<QueueRef>> {
    let found = query("SELECT DISTINCT tenant, queue FROM jobs WHERE state = 'available'")
        .fetch_all(pool)
        .await?;
    found
        .iter()
        .map(|row| {
            Ok(QueueRef {
                tenant: row.try_get(0)?,
                queue: row.try_get(1)?,
            })
        })
        .collect()
}

/// Retention: deletes up to `limit` jobs of `shards` that ended before
/// `before`, with their attempts and edges (see the SQLite engine for why a
/// blocked child may lose an ended parent).
pub(super) async fn purge_finished(
    tx: &mut Tx,
    before: Timestamp,
    limit: u32,
    shards: &Shards,
) -> Res<u64> {
    let ended: Vec<(Uuid, Option<Uuid>)> = sqlx_core::query_as::query_as(AssertSqlSafe(format!(
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_at IS NOT NULL \
         AND finished_at < $1 AND state IN ('succeeded', 'failed', 'cancelled', 'skipped'){} \
         ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, workflow_id",
        Shards::condition(3)
    )))
    .bind(At(before))
    .bind(i64::from(limit))
    .bind(shards.count)
    .bind(&shards.owned)
    .fetch_all(tx.conn())
    .await?;
    if ended.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = ended.iter().map(|(id, _)| *id).collect();
    let workflows: Vec<Uuid> = ended.iter().filter_map(|(_, w)| *w).collect();
    query("DELETE FROM attempts WHERE job_id = ANY($1)")
        .bind(&ids)
        .execute(tx.conn())
        .await?;
    query("DELETE FROM job_deps WHERE parent_id = ANY($1) OR child_id = ANY($1)")
        .bind(&ids)
        .execute(tx.conn())
        .await?;
    if !workflows.is_empty() {
        // A workflow goes with its last job.
        query(
            "DELETE FROM workflows AS w WHERE w.id = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM jobs WHERE workflow_id = w.id)",
        )
        .bind(&workflows)
        .execute(tx.conn())
        .await?;
    }
    Ok(ended.len() as u64)
}
