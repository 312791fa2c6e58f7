//! The SQL of every operation, as plain functions over a connection. The
//! writer thread calls the mutating ones inside its group transaction; the
//! reader pool calls the rest. Transitions are decided by
//! `taskwheel_core::lifecycle`; these functions load, ask, and write.

use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use taskwheel_core::lifecycle::{self, CancelEffect, FailureCause, FailureVerdict};
use taskwheel_core::time::{add, from_micros, to_micros};
use taskwheel_core::unique::{self, Resolution, UniqueOutcome};
use taskwheel_core::{
    AttemptOutcome, Job, JobId, JobState, LeaseToken, NewJob, Progress, RetryPolicy, RunningLease,
};

use super::queues;
use super::rows::{self, JOB_COLUMNS, to_millis};
use super::workflows;
use crate::{
    Completion, HOLDS_UNIQUE_KEY, Heartbeat, JobFilter, LeaseParams, Leased, LeasedJob, Moved,
    QueueRef, Released, Result, StoreError, Submitted, UNIQUE_TAKEN, Woken,
};

/// Reaping and promotion work in slices of this many jobs per statement.
const SLICE: usize = 1000;

pub(super) fn submit(conn: &Connection, job: NewJob, now: Timestamp) -> Result<Submitted> {
    // The writer runs one operation at a time, so looking before inserting
    // is race-free here; the unique indexes still back every rule.
    if let Some(key) = &job.idempotency_key {
        let existing = conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ?1 AND idempotency_key = ?2"
            ))?
            .query_row(params![job.tenant, key], |row| Ok(rows::job(row)))
            .optional()?
            .transpose()?;
        if let Some(job) = existing {
            return Ok(Submitted {
                job,
                deduplicated: true,
                unique: None,
            });
        }
    }
    if let Some(unique) = &job.unique {
        let holder = conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ?1 AND unique_key = ?2 AND {HOLDS_UNIQUE_KEY}"
            ))?
            .query_row(params![job.tenant, unique.key], |row| Ok(rows::job(row)))
            .optional()?
            .transpose()?;
        if let Some(holder) = holder {
            return match unique::on_conflict(unique.on_conflict, holder.state) {
                Resolution::Keep => Ok(Submitted {
                    job: holder,
                    deduplicated: false,
                    unique: Some(UniqueOutcome::Deduplicated),
                }),
                Resolution::Overwrite => Ok(Submitted {
                    job: overwrite(conn, holder.id, &job, now)?,
                    deduplicated: false,
                    unique: Some(UniqueOutcome::Replaced),
                }),
            };
        }
    }
    let unique = job.unique.as_ref().map(|_| UniqueOutcome::New);
    insert_job(conn, job, now).map(|job| Submitted {
        job: job.expect("only a scheduled job can collide on its tick"),
        deduplicated: false,
        unique,
    })
}

/// Overwrites the pending job `id` with the submission `job` (replace and
/// debounce): it keeps its id, key and attempt history and gets a fresh budget.
fn overwrite(conn: &Connection, id: JobId, job: &NewJob, now: Timestamp) -> Result<Job> {
    conn.prepare_cached(
        "UPDATE jobs SET queue = ?2, kind = ?3, payload = ?4, priority = ?5, state = ?6, run_at = ?7, \
         updated_at = ?8, timeout_ms = ?9, retry = ?10, tags = ?11, unique_states = ?12, attempt = 0 \
         WHERE id = ?1",
    )?
    .execute(params![
        id.0,
        job.queue,
        job.kind,
        serde_json::to_string(&job.payload)?,
        job.priority.get(),
        job.initial_state(now).as_str(),
        to_micros(job.run_at),
        to_micros(now),
        job.timeout.map(to_millis),
        serde_json::to_string(&job.retry)?,
        serde_json::to_string(&job.tags)?,
        job.unique.as_ref().map(|u| u.states.bits()),
    ])?;
    load_job(conn, &job.tenant, id)
}

/// Submits each job in order, in the writer's transaction. Without `atomic`
/// each item runs in its own savepoint, so a failing item is rolled back
/// alone; with it, the first failure is the answer and the writer rolls the
/// whole operation back.
pub(super) fn submit_batch(
    conn: &Connection,
    jobs: Vec<NewJob>,
    atomic: bool,
    now: Timestamp,
) -> Result<Vec<Result<Submitted>>> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        if atomic {
            outcomes.push(Ok(submit(conn, job, now)?));
            continue;
        }
        // A refused item rolls back alone (savepoints nest by name).
        outcomes.push(super::writer::in_savepoint(conn, |c| submit(c, job, now)));
    }
    Ok(outcomes)
}

/// Inserts a job; `None` when a job for the same (schedule, tick) already exists.
pub(super) fn insert_job(conn: &Connection, job: NewJob, now: Timestamp) -> Result<Option<Job>> {
    let state = workflows::initial_state(conn, &job, now)?;
    // A job whose parent already failed is skipped from the start.
    let finished_at = state.is_final().then_some(now);
    let has_parents = !job.depends_on.is_empty();
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO jobs (id, tenant, queue, kind, payload, priority, state, run_at, created_at, \
             updated_at, timeout_ms, retry, idempotency_key, tags, schedule_id, fire_time, finished_at, \
             depends_on, on_parent_failure, workflow_id, workflow_job, unique_key, unique_states, \
             concurrency_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
        )?
        .execute(params![
            job.id.0,
            job.tenant,
            job.queue,
            job.kind,
            serde_json::to_string(&job.payload)?,
            job.priority.get(),
            state.as_str(),
            to_micros(job.run_at),
            to_micros(job.created_at),
            job.timeout.map(to_millis),
            serde_json::to_string(&job.retry)?,
            job.idempotency_key,
            serde_json::to_string(&job.tags)?,
            job.schedule.map(|(id, _)| id.0),
            job.schedule.map(|(_, tick)| to_micros(tick)),
            finished_at.map(to_micros),
            has_parents
                .then(|| serde_json::to_string(&job.depends_on))
                .transpose()?,
            has_parents.then_some(job.on_parent_failure.as_str()),
            job.workflow.as_ref().map(|(id, _)| id.0),
            job.workflow.as_ref().map(|(_, name)| name.as_str()),
            job.unique.as_ref().map(|u| u.key.as_str()),
            job.unique.as_ref().map(|u| u.states.bits()),
            job.concurrency_key,
        ])?;
    if inserted == 0 {
        if job.schedule.is_some() {
            return Ok(None);
        }
        // OR IGNORE hid a collision no unscheduled job can have (ids are fresh v7s,
        // idempotency and unique keys were checked above in this transaction).
        return Err(StoreError::Backend(format!(
            "job {} collided on insert",
            job.id
        )));
    }
    workflows::insert_edges(conn, job.id, &job.depends_on)?;
    Ok(Some(Job {
        id: job.id,
        tenant: job.tenant,
        queue: job.queue,
        kind: job.kind,
        payload: job.payload,
        priority: job.priority,
        state,
        run_at: job.run_at,
        created_at: job.created_at,
        updated_at: job.created_at,
        finished_at,
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
    }))
}

pub(super) fn get_job(conn: &Connection, tenant: &str, id: JobId) -> Result<Job> {
    let mut job = load_job(conn, tenant, id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT number, worker, started_at, finished_at, outcome, error, result FROM attempts \
         WHERE job_id = ?1 ORDER BY number",
    )?;
    let mut found = stmt.query(params![id.0])?;
    while let Some(row) = found.next()? {
        job.attempts.push(rows::attempt(row)?);
    }
    Ok(job)
}

fn load_job(conn: &Connection, tenant: &str, id: JobId) -> Result<Job> {
    conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND tenant = ?2"
    ))?
    .query_row(params![id.0, tenant], |row| Ok(rows::job(row)))
    .optional()?
    .ok_or(StoreError::NotFound)?
}

pub(super) fn list_jobs(conn: &Connection, tenant: &str, filter: &JobFilter) -> Result<Vec<Job>> {
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ?");
    let mut args: Vec<rusqlite::types::Value> = vec![tenant.to_string().into()];
    if let Some(queue) = &filter.queue {
        sql.push_str(" AND queue = ?");
        args.push(queue.clone().into());
    }
    if let Some(state) = filter.state {
        sql.push_str(" AND state = ?");
        args.push(state.as_str().to_string().into());
    }
    if let Some(kind) = &filter.kind {
        sql.push_str(" AND kind = ?");
        args.push(kind.clone().into());
    }
    if let Some(before) = filter.before {
        sql.push_str(" AND id < ?");
        args.push(before.0.as_bytes().to_vec().into());
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    args.push(i64::from(filter.limit).into());
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut found = stmt.query(params_from_iter(args))?;
    let mut jobs = Vec::new();
    while let Some(row) = found.next()? {
        jobs.push(rows::job(row)?);
    }
    Ok(jobs)
}

pub(super) fn lease(conn: &Connection, p: &LeaseParams, now: Timestamp) -> Result<Leased> {
    let limited = queues::limited(conn, &p.tenant, &p.queues)?;
    let plain: Vec<&String> = p
        .queues
        .iter()
        .filter(|q| !limited.iter().any(|l| &l.queue == *q))
        .collect();
    let mut candidates = if plain.is_empty() {
        Vec::new()
    } else {
        available(conn, &p.tenant, &plain, p.max)?
    };
    let mut refill_at: Option<Timestamp> = None;
    for q in &limited {
        let want = p.max.saturating_sub(candidates.len() as u32);
        if want == 0 {
            break;
        }
        let (picked, refill) = queues::pick(conn, &p.tenant, q, want, now)?;
        candidates.extend(picked);
        refill_at = refill_at.into_iter().chain(refill).min();
    }
    Ok(Leased {
        jobs: claim(conn, p, candidates, now)?,
        refill_at,
    })
}

/// The first `max` available jobs of `queues` in dispatch order.
fn available(conn: &Connection, tenant: &str, queues: &[&String], max: u32) -> Result<Vec<Job>> {
    let marks = vec!["?"; queues.len()].join(", ");
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ? AND state = 'available' AND queue IN ({marks}) \
         ORDER BY priority DESC, run_at, id LIMIT ?"
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::with_capacity(queues.len() + 2);
    args.push(tenant.to_string().into());
    args.extend(queues.iter().map(|q| (*q).clone().into()));
    args.push(i64::from(max).into());
    let mut candidates = Vec::new();
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut found = stmt.query(params_from_iter(args))?;
    while let Some(row) = found.next()? {
        candidates.push(rows::job(row)?);
    }
    Ok(candidates)
}

/// Starts an attempt of each candidate under a fresh lease.
fn claim(
    conn: &Connection,
    p: &LeaseParams,
    candidates: Vec<Job>,
    now: Timestamp,
) -> Result<Vec<LeasedJob>> {
    let mut update = conn.prepare_cached(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, attempts_total = attempts_total + 1, \
         lease_token = ?2, worker = ?3, started_at = ?4, lease_expires_at = ?5, deadline = ?6, lease_ms = ?7, \
         updated_at = ?4, progress_percent = NULL, progress_message = NULL, progress_at = NULL WHERE id = ?1",
    )?;
    let mut leased = Vec::with_capacity(candidates.len());
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
        update.execute(params![
            job.id.0,
            lease.token.0,
            lease.worker,
            to_micros(now),
            to_micros(lease.expires_at),
            lease.deadline.map(to_micros),
            to_millis(lease.duration),
        ])?;
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
    workflows::add_parent_results(conn, &p.tenant, &mut leased)?;
    Ok(leased)
}

/// The columns a transition of a running job needs, without the payload.
struct Running {
    tenant: String,
    queue: String,
    state: JobState,
    attempt: u32,
    attempts_total: u32,
    cancel_requested: bool,
    retry: String,
    lease: Option<RunningLease>,
    /// Whether other jobs depend on this one.
    has_children: bool,
    /// Whether its queue counts running jobs (a concurrency limit), so its
    /// end frees a slot for waiting workers.
    frees_slot: bool,
}

impl Running {
    fn check(&self, token: LeaseToken) -> Result<&RunningLease> {
        lifecycle::check_lease(self.state, self.lease.as_ref(), token)?;
        self.lease.as_ref().ok_or(StoreError::Transition(
            lifecycle::TransitionError::StaleLease,
        ))
    }
}

fn load_running(conn: &Connection, tenant: &str, id: JobId) -> Result<Running> {
    conn.prepare_cached(
        "SELECT tenant, queue, state, attempt, attempts_total, cancel_requested, retry, \
         lease_token, worker, started_at, lease_expires_at, deadline, lease_ms, has_children, \
         EXISTS (SELECT 1 FROM queue_settings s WHERE s.tenant = jobs.tenant AND s.queue = jobs.queue \
                 AND (s.concurrency IS NOT NULL OR s.key_concurrency IS NOT NULL)) \
         FROM jobs WHERE id = ?1 AND tenant = ?2",
    )?
    .query_row(params![id.0, tenant], |row| {
        Ok((|| {
            let state: String = row.get(2)?;
            Ok(Running {
                tenant: row.get(0)?,
                queue: row.get(1)?,
                state: rows::parse_state(&state)?,
                attempt: row.get(3)?,
                attempts_total: row.get(4)?,
                cancel_requested: row.get(5)?,
                retry: row.get(6)?,
                lease: rows::lease(row, 7)?,
                has_children: row.get(13)?,
                frees_slot: row.get(14)?,
            })
        })())
    })
    .optional()?
    .ok_or(StoreError::NotFound)?
}

pub(super) fn heartbeat(
    conn: &Connection,
    tenant: &str,
    id: JobId,
    token: LeaseToken,
    progress: Option<Progress>,
    now: Timestamp,
) -> Result<Heartbeat> {
    let running = load_running(conn, tenant, id)?;
    let lease = running.check(token)?;
    let expires_at = lifecycle::lease_expiry(now, lease.duration, lease.deadline);
    // One write of the row, with the progress when the worker reported some.
    match progress {
        None => conn
            .prepare_cached("UPDATE jobs SET lease_expires_at = ?2 WHERE id = ?1")?
            .execute(params![id.0, to_micros(expires_at)])?,
        Some(p) => conn
            .prepare_cached(
                "UPDATE jobs SET lease_expires_at = ?2, progress_percent = ?3, progress_message = ?4, \
                 progress_at = ?5 WHERE id = ?1",
            )?
            .execute(params![
                id.0,
                to_micros(expires_at),
                p.percent,
                p.message,
                to_micros(p.updated_at)
            ])?,
    };
    Ok(Heartbeat {
        expires_at,
        cancel_requested: running.cancel_requested,
    })
}

pub(super) fn complete(
    conn: &Connection,
    tenant: &str,
    items: Vec<Completion>,
    now: Timestamp,
) -> Result<Vec<Result<Moved>>> {
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        outcomes.push(complete_one(conn, tenant, item, now));
    }
    Ok(outcomes)
}

fn complete_one(
    conn: &Connection,
    tenant: &str,
    item: Completion,
    now: Timestamp,
) -> Result<Moved> {
    let running = load_running(conn, tenant, item.id)?;
    let lease = running.check(item.token)?;
    let result = item.result.map(|r| serde_json::to_string(&r)).transpose()?;
    end_attempt(
        conn,
        item.id,
        &running,
        lease,
        AttemptOutcome::Succeeded,
        None,
        result,
        now,
    )?;
    let released = finish(
        conn,
        item.id,
        JobState::Succeeded,
        running.has_children,
        now,
    )?;
    Ok(Moved {
        state: JobState::Succeeded,
        run_at: None,
        freed: running.frees_slot,
        queue: running.queue,
        released,
    })
}

pub(super) fn fail(
    conn: &Connection,
    tenant: &str,
    id: JobId,
    token: LeaseToken,
    error: String,
    cause: FailureCause,
    now: Timestamp,
) -> Result<Moved> {
    let running = load_running(conn, tenant, id)?;
    let lease = running.check(token)?.clone();
    apply_failure(conn, id, &running, &lease, cause, error, now)
}

/// Marks a job that left `running` as freeing a slot if its queue counts running jobs.
fn freeing(running: &Running, mut moved: Moved) -> Moved {
    moved.freed = running.frees_slot;
    moved
}

/// Ends a running attempt without success and moves the job where the lifecycle says.
fn apply_failure(
    conn: &Connection,
    id: JobId,
    running: &Running,
    lease: &RunningLease,
    cause: FailureCause,
    error: String,
    now: Timestamp,
) -> Result<Moved> {
    let retry: RetryPolicy = serde_json::from_str(&running.retry)?;
    let verdict = lifecycle::on_failure(
        running.attempt,
        &retry,
        running.cancel_requested,
        cause,
        now,
        fastrand::f64(),
    );
    end_attempt(
        conn,
        id,
        running,
        lease,
        cause.outcome(),
        Some(error),
        None,
        now,
    )?;
    match verdict {
        FailureVerdict::RetryAt(at) => {
            let moved = put_back(conn, id, &running.queue, at, 0, now)?;
            Ok(freeing(running, moved))
        }
        FailureVerdict::Dead | FailureVerdict::Cancelled => {
            let state = verdict.state(now);
            let released = finish(conn, id, state, running.has_children, now)?;
            if state == JobState::Failed {
                // A schedule's health counts its dead-lettered runs.
                conn.prepare_cached(
                    "UPDATE schedules SET failed = failed + 1 \
                     WHERE id = (SELECT schedule_id FROM jobs WHERE id = ?1)",
                )?
                .execute(params![id.0])?;
            }
            let moved = Moved {
                state,
                run_at: None,
                queue: running.queue.clone(),
                released,
                freed: false,
            };
            Ok(freeing(running, moved))
        }
    }
}

pub(super) fn snooze(
    conn: &Connection,
    tenant: &str,
    id: JobId,
    token: LeaseToken,
    delay: Duration,
    now: Timestamp,
) -> Result<Moved> {
    let running = load_running(conn, tenant, id)?;
    let lease = running.check(token)?;
    end_attempt(
        conn,
        id,
        &running,
        lease,
        AttemptOutcome::Released,
        None,
        None,
        now,
    )?;
    // A snooze is not a failure: give the attempt back to the budget.
    let moved = put_back(conn, id, &running.queue, add(now, delay), 1, now)?;
    Ok(freeing(&running, moved))
}

/// Records the attempt that just ended.
#[allow(clippy::too_many_arguments)]
fn end_attempt(
    conn: &Connection,
    id: JobId,
    running: &Running,
    lease: &RunningLease,
    outcome: AttemptOutcome,
    error: Option<String>,
    result: Option<String>,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO attempts (job_id, number, worker, started_at, finished_at, outcome, error, result) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id.0,
        running.attempts_total,
        lease.worker,
        to_micros(lease.started_at),
        to_micros(now),
        outcome.as_str(),
        error,
        result,
    ])?;
    Ok(())
}

/// Moves a job to a final state, clears its lease, and releases the
/// dependent jobs that were waiting for it.
pub(super) fn finish(
    conn: &Connection,
    id: JobId,
    state: JobState,
    has_children: bool,
    now: Timestamp,
) -> Result<Vec<Released>> {
    end(conn, id, state, now)?;
    // Most jobs have no dependents: then nothing more is read.
    if has_children {
        workflows::release_children(conn, vec![id], now)
    } else {
        Ok(Vec::new())
    }
}

/// The write of [`finish`], without looking at children. A plain update of
/// one row by id: no `RETURNING`, which would make SQLite keep a statement
/// journal of every page it changes.
pub(super) fn end(conn: &Connection, id: JobId, state: JobState, now: Timestamp) -> Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET state = ?2, finished_at = ?3, updated_at = ?3, lease_token = NULL, worker = NULL, \
         started_at = NULL, lease_expires_at = NULL, deadline = NULL, lease_ms = NULL WHERE id = ?1",
    )?
    .execute(params![id.0, state.as_str(), to_micros(now)])?;
    Ok(())
}

/// Returns a job to the queue, due at `at`; `refund` attempts are given back.
fn put_back(
    conn: &Connection,
    id: JobId,
    queue: &str,
    at: Timestamp,
    refund: u32,
    now: Timestamp,
) -> Result<Moved> {
    let state = if at > now {
        JobState::Scheduled
    } else {
        JobState::Available
    };
    conn.prepare_cached(
        "UPDATE jobs SET state = ?2, run_at = ?3, attempt = attempt - ?4, updated_at = ?5, lease_token = NULL, \
         worker = NULL, started_at = NULL, lease_expires_at = NULL, deadline = NULL, lease_ms = NULL WHERE id = ?1",
    )?
    .execute(params![id.0, state.as_str(), to_micros(at), refund, to_micros(now)])?;
    Ok(Moved {
        state,
        run_at: Some(at),
        queue: queue.to_string(),
        released: Vec::new(),
        freed: false,
    })
}

pub(super) fn cancel(
    conn: &Connection,
    tenant: &str,
    id: JobId,
    now: Timestamp,
) -> Result<(Job, Vec<Released>)> {
    let job = load_job(conn, tenant, id)?;
    let released = match lifecycle::cancel(job.state)? {
        // Looking for children costs what reading the flag would.
        CancelEffect::Cancelled => finish(conn, id, JobState::Cancelled, true, now)?,
        CancelEffect::Requested => {
            conn.prepare_cached(
                "UPDATE jobs SET cancel_requested = 1, updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id.0, to_micros(now)])?;
            Vec::new()
        }
    };
    Ok((load_job(conn, tenant, id)?, released))
}

pub(super) fn rerun(conn: &Connection, tenant: &str, id: JobId, now: Timestamp) -> Result<Job> {
    let job = load_job(conn, tenant, id)?;
    lifecycle::rerun(job.state)?;
    conn.prepare_cached(
        "UPDATE jobs SET state = 'available', run_at = ?2, updated_at = ?2, finished_at = NULL, attempt = 0, \
         cancel_requested = 0 WHERE id = ?1",
    )?
    .execute(params![id.0, to_micros(now)])
    .map_err(|e| match e.sqlite_error_code() {
        // Only `jobs_unique` can refuse this: another job took the key meanwhile.
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict(UNIQUE_TAKEN.into()),
        _ => e.into(),
    })?;
    load_job(conn, tenant, id)
}

pub(super) fn promote_due(conn: &Connection, now: Timestamp) -> Result<Woken> {
    let mut woken = Woken::default();
    let mut stmt = conn.prepare_cached(
        "UPDATE jobs SET state = 'available', updated_at = ?1 WHERE state = 'scheduled' AND run_at <= ?1 \
         RETURNING tenant, queue, run_at",
    )?;
    let mut moved = stmt.query(params![to_micros(now)])?;
    while let Some(row) = moved.next()? {
        woken.queues.insert(QueueRef {
            tenant: row.get(0)?,
            queue: row.get(1)?,
        });
        woken.due.push(from_micros(row.get(2)?));
    }
    Ok(woken)
}

pub(super) fn reap_expired(conn: &Connection, now: Timestamp) -> Result<Woken> {
    let mut woken = Woken::default();
    loop {
        let expired: Vec<(JobId, String)> = conn
            .prepare_cached(
                "SELECT id, tenant FROM jobs WHERE state = 'running' AND lease_expires_at <= ?1 \
                 ORDER BY lease_expires_at LIMIT ?2",
            )?
            .query_map(params![to_micros(now), SLICE as i64], |row| {
                Ok((JobId(row.get(0)?), row.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (id, tenant) in &expired {
            let running = load_running(conn, tenant, *id)?;
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
            let moved = apply_failure(conn, *id, &running, &lease, cause, error, now)?;
            if moved.state == JobState::Available || moved.freed {
                woken.queues.insert(QueueRef {
                    tenant: running.tenant.clone(),
                    queue: running.queue.clone(),
                });
            }
            woken.add_released(&moved.released);
        }
        if expired.len() < SLICE {
            break;
        }
    }
    Ok(woken)
}

pub(super) fn next_timer(conn: &Connection) -> Result<Option<Timestamp>> {
    let next: Option<i64> = conn
        .prepare_cached(
            "SELECT MIN(t) FROM (SELECT MIN(run_at) AS t FROM jobs WHERE state = 'scheduled' \
             UNION ALL SELECT MIN(lease_expires_at) FROM jobs WHERE state = 'running' \
             UNION ALL SELECT MIN(next_fire_at) FROM schedules WHERE paused = 0 AND next_fire_at IS NOT NULL \
             UNION ALL SELECT MIN(wake_at) FROM queue_settings WHERE wake_at IS NOT NULL)",
        )?
        .query_row([], |row| row.get(0))?;
    Ok(next.map(from_micros))
}

/// Retention: deletes up to `limit` jobs that ended before `before`, with
/// their attempts and edges. A blocked child that loses an ended parent
/// this way still judges its parents right: only unfinished and
/// unsuccessful parents count, and an unsuccessful one already skipped it
/// (or, policy `run`, only needs it ended).
pub(super) fn purge_finished(conn: &Connection, before: Timestamp, limit: u32) -> Result<u64> {
    let ended = conn
        .prepare_cached(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_at IS NOT NULL \
             AND finished_at < ?1 AND state IN ('succeeded', 'failed', 'cancelled', 'skipped') \
             ORDER BY finished_at LIMIT ?2) RETURNING id, workflow_id",
        )?
        .query_map(params![to_micros(before), i64::from(limit)], |row| {
            Ok((
                row.get::<_, uuid::Uuid>(0)?,
                row.get::<_, Option<uuid::Uuid>>(1)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut attempts = conn.prepare_cached("DELETE FROM attempts WHERE job_id = ?1")?;
    let mut edges =
        conn.prepare_cached("DELETE FROM job_deps WHERE parent_id = ?1 OR child_id = ?1")?;
    // A workflow goes with its last job.
    let mut workflows = conn.prepare_cached(
        "DELETE FROM workflows WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM jobs WHERE workflow_id = ?1)",
    )?;
    for (id, workflow) in &ended {
        attempts.execute(params![id])?;
        edges.execute(params![id])?;
        if let Some(workflow) = workflow {
            workflows.execute(params![workflow])?;
        }
    }
    Ok(ended.len() as u64)
}
