//! Mapping between SQLite rows and domain values.

use std::time::Duration;

use rusqlite::Row;
use taskwheel_core::firing::ScheduleId;
use taskwheel_core::time::from_micros;
use taskwheel_core::workflow::{ParentFailure, WorkflowId};
use taskwheel_core::{
    Attempt, AttemptOutcome, Job, JobId, JobState, LeaseToken, Priority, Progress, RetryPolicy,
    RunningLease,
};
use uuid::Uuid;

use crate::{Result, StoreError};

/// The column list every full job read selects, in the order [`job`] reads them.
pub(super) const JOB_COLUMNS: &str = "id, tenant, queue, kind, payload, priority, state, run_at, created_at, \
     updated_at, finished_at, timeout_ms, retry, idempotency_key, tags, attempt, cancel_requested, \
     lease_token, worker, started_at, lease_expires_at, deadline, lease_ms, schedule_id, fire_time, \
     depends_on, on_parent_failure, workflow_id, workflow_job, \
     unique_key, progress_percent, progress_message, progress_at, concurrency_key";

pub(super) fn job(row: &Row<'_>) -> Result<Job> {
    let state: String = row.get(6)?;
    let payload: String = row.get(4)?;
    let retry: String = row.get(12)?;
    let tags: String = row.get(14)?;
    let priority: i64 = row.get(5)?;
    Ok(Job {
        id: JobId(row.get::<_, Uuid>(0)?),
        tenant: row.get(1)?,
        queue: row.get(2)?,
        kind: row.get(3)?,
        payload: serde_json::from_str(&payload)?,
        priority: Priority::new(priority as u8).map_err(StoreError::Backend)?,
        state: parse_state(&state)?,
        run_at: from_micros(row.get(7)?),
        created_at: from_micros(row.get(8)?),
        updated_at: from_micros(row.get(9)?),
        finished_at: row.get::<_, Option<i64>>(10)?.map(from_micros),
        timeout: row.get::<_, Option<i64>>(11)?.map(millis),
        retry: serde_json::from_str::<RetryPolicy>(&retry)?,
        idempotency_key: row.get(13)?,
        tags: serde_json::from_str(&tags)?,
        attempt: row.get(15)?,
        cancel_requested: row.get(16)?,
        lease: lease(row, 17)?,
        schedule_id: row.get::<_, Option<Uuid>>(23)?.map(ScheduleId),
        fire_time: row.get::<_, Option<i64>>(24)?.map(from_micros),
        depends_on: row
            .get::<_, Option<String>>(25)?
            .map(|ids| serde_json::from_str(&ids))
            .transpose()?
            .unwrap_or_default(),
        on_parent_failure: ParentFailure::from_stored(row.get::<_, Option<String>>(26)?.as_deref())
            .map_err(StoreError::Backend)?,
        workflow: match (
            row.get::<_, Option<Uuid>>(27)?,
            row.get::<_, Option<String>>(28)?,
        ) {
            (Some(id), Some(name)) => Some((WorkflowId(id), name)),
            _ => None,
        },
        unique_key: row.get(29)?,
        progress: row
            .get::<_, Option<i64>>(32)?
            .map(|at| -> rusqlite::Result<Progress> {
                Ok(Progress {
                    percent: row.get(30)?,
                    message: row.get(31)?,
                    updated_at: from_micros(at),
                })
            })
            .transpose()?,
        concurrency_key: row.get(33)?,
        attempts: Vec::new(),
    })
}

/// Reads the six lease columns starting at `first` (token, worker, started,
/// expires, deadline, duration); `None` unless the job is running.
pub(super) fn lease(row: &Row<'_>, first: usize) -> Result<Option<RunningLease>> {
    let Some(token) = row.get::<_, Option<Uuid>>(first)? else {
        return Ok(None);
    };
    Ok(Some(RunningLease {
        token: LeaseToken(token),
        worker: row.get(first + 1)?,
        started_at: from_micros(row.get(first + 2)?),
        expires_at: from_micros(row.get(first + 3)?),
        deadline: row.get::<_, Option<i64>>(first + 4)?.map(from_micros),
        duration: millis(row.get(first + 5)?),
    }))
}

pub(super) fn attempt(row: &Row<'_>) -> Result<Attempt> {
    let outcome: String = row.get(4)?;
    let result: Option<String> = row.get(6)?;
    Ok(Attempt {
        number: row.get(0)?,
        worker: row.get(1)?,
        started_at: from_micros(row.get(2)?),
        finished_at: from_micros(row.get(3)?),
        outcome: outcome
            .parse::<AttemptOutcome>()
            .map_err(StoreError::Backend)?,
        error: row.get(5)?,
        result: result.map(|r| serde_json::from_str(&r)).transpose()?,
    })
}

pub(super) fn parse_state(s: &str) -> Result<JobState> {
    s.parse().map_err(StoreError::Backend)
}

pub(super) fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

pub(super) fn to_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
