//! Mapping between PostgreSQL rows and domain values, and [`At`]: a
//! `jiff::Timestamp` as `timestamptz`, which sqlx does not map itself.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use sqlx_core::decode::Decode;
use sqlx_core::encode::{Encode, IsNull};
use sqlx_core::error::BoxDynError;
use sqlx_core::row::Row;
use sqlx_core::types::Type;
use sqlx_postgres::types::{Oid, PgHasArrayType};
use sqlx_postgres::{PgArgumentBuffer, PgRow, PgTypeInfo, PgValueFormat, PgValueRef, Postgres};
use taskwheel_core::firing::ScheduleId;
use taskwheel_core::time::{from_micros, to_micros};
use taskwheel_core::workflow::{ParentFailure, WorkflowId};
use taskwheel_core::{
    Attempt, AttemptOutcome, Job, JobId, JobState, LeaseToken, Priority, Progress, RunningLease,
};
use uuid::Uuid;

use super::error::Res;
use crate::StoreError;

/// An instant as `timestamptz`. On the wire PostgreSQL sends microseconds
/// since 2000-01-01 UTC, so the round trip is exact at taskwheel's precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct At(pub(super) Timestamp);

/// 2000-01-01T00:00:00Z, PostgreSQL's epoch, in microseconds since the Unix epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const TIMESTAMPTZ: Oid = Oid(1184);
const TIMESTAMPTZ_ARRAY: Oid = Oid(1185);

impl Type<Postgres> for At {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(TIMESTAMPTZ)
    }
}

impl PgHasArrayType for At {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(TIMESTAMPTZ_ARRAY)
    }
}

impl Encode<'_, Postgres> for At {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let micros = to_micros(self.0).saturating_sub(PG_EPOCH_MICROS);
        buf.extend(&micros.to_be_bytes());
        Ok(IsNull::No)
    }

    fn size_hint(&self) -> usize {
        8
    }
}

impl Decode<'_, Postgres> for At {
    fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
                let micros = i64::from_be_bytes(bytes).saturating_add(PG_EPOCH_MICROS);
                Ok(At(from_micros(micros)))
            }
            // Only the simple query protocol answers in text, as
            // `2026-06-01 00:00:00.123456+00`, which jiff reads.
            PgValueFormat::Text => Ok(At(value.as_str()?.parse()?)),
        }
    }
}

/// The column list every full job read selects, in the order [`job`] reads
/// them; a macro so queries can be `concat!`ed into static strings.
macro_rules! job_columns {
    () => {
        "id, tenant, queue, kind, payload, priority, state, run_at, created_at, updated_at, \
         finished_at, timeout_ms, retry, idempotency_key, tags, attempt, cancel_requested, \
         lease_token, worker, started_at, lease_expires_at, deadline, lease_ms, schedule_id, fire_time, \
         depends_on, on_parent_failure, workflow_id, workflow_job, \
         unique_key, progress_percent, progress_message, progress_at, \
         concurrency_key"
    };
}
pub(super) use job_columns;

/// How many columns [`job_columns`] lists (a join's next columns start here).
pub(super) const JOB_COLUMN_COUNT: usize = 34;

/// The columns a transition of a running job needs (no payload), in the
/// order [`running`] reads them.
macro_rules! running_columns {
    () => {
        "id, tenant, queue, state, attempt, attempts_total, cancel_requested, retry, schedule_id, \
         lease_token, worker, started_at, lease_expires_at, deadline, lease_ms, has_children"
    };
}
pub(super) use running_columns;

pub(super) fn job(row: &PgRow) -> Res<Job> {
    let priority: i16 = row.try_get(5)?;
    let priority = u8::try_from(priority)
        .map_err(|_| StoreError::Backend(format!("stored priority {priority} is out of range")))
        .and_then(|p| Priority::new(p).map_err(StoreError::Backend))?;
    Ok(Job {
        id: JobId(row.try_get(0)?),
        tenant: row.try_get(1)?,
        queue: row.try_get(2)?,
        kind: row.try_get(3)?,
        payload: row.try_get(4)?,
        priority,
        state: parse_state(row.try_get(6)?)?,
        run_at: row.try_get::<At, _>(7)?.0,
        created_at: row.try_get::<At, _>(8)?.0,
        updated_at: row.try_get::<At, _>(9)?.0,
        finished_at: instant(row, 10)?,
        timeout: row.try_get::<Option<i64>, _>(11)?.map(millis),
        retry: serde_json::from_value(row.try_get::<Value, _>(12)?)?,
        idempotency_key: row.try_get(13)?,
        tags: serde_json::from_value(row.try_get::<Value, _>(14)?)?,
        attempt: count(row.try_get(15)?),
        cancel_requested: row.try_get(16)?,
        lease: lease(row, 17)?,
        schedule_id: row.try_get::<Option<Uuid>, _>(23)?.map(ScheduleId),
        fire_time: instant(row, 24)?,
        depends_on: row
            .try_get::<Option<Vec<Uuid>>, _>(25)?
            .unwrap_or_default()
            .into_iter()
            .map(JobId)
            .collect(),
        on_parent_failure: ParentFailure::from_stored(row.try_get(26)?)
            .map_err(StoreError::Backend)?,
        workflow: match (
            row.try_get::<Option<Uuid>, _>(27)?,
            row.try_get::<Option<String>, _>(28)?,
        ) {
            (Some(id), Some(name)) => Some((WorkflowId(id), name)),
            _ => None,
        },
        unique_key: row.try_get(29)?,
        progress: instant(row, 32)?
            .map(|at| -> Res<Progress> {
                Ok(Progress {
                    percent: row.try_get(30)?,
                    message: row.try_get(31)?,
                    updated_at: at,
                })
            })
            .transpose()?,
        concurrency_key: row.try_get(33)?,
        attempts: Vec::new(),
    })
}

/// Reads the six lease columns starting at `first` (token, worker, started,
/// expires, deadline, duration); `None` unless the job is running.
fn lease(row: &PgRow, first: usize) -> Res<Option<RunningLease>> {
    let Some(token) = row.try_get::<Option<Uuid>, _>(first)? else {
        return Ok(None);
    };
    Ok(Some(RunningLease {
        token: LeaseToken(token),
        worker: row.try_get(first + 1)?,
        started_at: row.try_get::<At, _>(first + 2)?.0,
        expires_at: row.try_get::<At, _>(first + 3)?.0,
        deadline: instant(row, first + 4)?,
        duration: millis(row.try_get(first + 5)?),
    }))
}

/// What a transition of a running job reads, locked `FOR UPDATE`.
pub(super) struct Running {
    pub(super) id: JobId,
    pub(super) tenant: String,
    pub(super) queue: String,
    pub(super) state: JobState,
    pub(super) attempt: u32,
    pub(super) attempts_total: u32,
    pub(super) cancel_requested: bool,
    pub(super) retry: Value,
    pub(super) schedule_id: Option<Uuid>,
    pub(super) lease: Option<RunningLease>,
    /// Whether other jobs depend on this one.
    pub(super) has_children: bool,
}

pub(super) fn running(row: &PgRow) -> Res<Running> {
    Ok(Running {
        id: JobId(row.try_get(0)?),
        tenant: row.try_get(1)?,
        queue: row.try_get(2)?,
        state: parse_state(row.try_get(3)?)?,
        attempt: count(row.try_get(4)?),
        attempts_total: count(row.try_get(5)?),
        cancel_requested: row.try_get(6)?,
        retry: row.try_get(7)?,
        schedule_id: row.try_get(8)?,
        lease: lease(row, 9)?,
        has_children: row.try_get(15)?,
    })
}

/// Reads `number, worker, started_at, finished_at, outcome, error, result`
/// starting at column `first`.
pub(super) fn attempt(row: &PgRow, first: usize) -> Res<Attempt> {
    let outcome: &str = row.try_get(first + 4)?;
    Ok(Attempt {
        number: count(row.try_get(first)?),
        worker: row.try_get(first + 1)?,
        started_at: row.try_get::<At, _>(first + 2)?.0,
        finished_at: row.try_get::<At, _>(first + 3)?.0,
        outcome: outcome
            .parse::<AttemptOutcome>()
            .map_err(StoreError::Backend)?,
        error: row.try_get(first + 5)?,
        result: row.try_get(first + 6)?,
    })
}

pub(super) fn instant(row: &PgRow, index: usize) -> Res<Option<Timestamp>> {
    Ok(row.try_get::<Option<At>, _>(index)?.map(|at| at.0))
}

pub(super) fn parse_state(s: &str) -> Res<JobState> {
    Ok(s.parse().map_err(StoreError::Backend)?)
}

/// A stored count (never negative) as the domain's `u32`.
pub(super) fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// A domain count as PostgreSQL's `integer`.
pub(super) fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) fn to_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// PostgreSQL's `text` and `jsonb` cannot hold U+0000. Text a worker reports
/// (error messages, results) gets U+FFFD in its place, rather than having
/// the report refused and the job left running until its lease runs out.
pub(super) fn storable(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

/// [`storable`] for every string and key of a JSON value.
pub(super) fn storable_json(v: Value) -> Value {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if !has_nul(&v) {
        return v;
    }
    match v {
        Value::String(s) => Value::String(storable(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(storable_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (storable(k), storable_json(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_become_replacement_characters() {
        let v = serde_json::json!({"a\u{0}": ["x\u{0}y", 1], "ok": "fine"});
        assert_eq!(
            storable_json(v),
            serde_json::json!({"a\u{FFFD}": ["x\u{FFFD}y", 1], "ok": "fine"})
        );
        assert_eq!(storable("plain".into()), "plain");
    }

    #[test]
    fn text_timestamptz_parses() {
        let at: Timestamp = "2026-06-01 00:00:00.123456+00".parse().unwrap();
        assert_eq!(at, "2026-06-01T00:00:00.123456Z".parse().unwrap());
    }
}
