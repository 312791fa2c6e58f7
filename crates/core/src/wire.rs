//! Request and response bodies of REST API v1, shared by the server and the
//! Rust client, and the validation that turns a request into domain values.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::DurationSpec;
use crate::error::{ErrorCode, FieldError};
use crate::firing::ScheduleId;
use crate::job::{
    Attempt, AttemptOutcome, Job, JobId, JobState, LeaseToken, NewJob, Priority, Progress,
};
use crate::retry::RetryPolicy;
use crate::time::add;
use crate::unique::{Conflict, UniqueOutcome, UniqueSpec};
use crate::workflow::{ParentFailure, ParentResult, WorkflowId, validate_parents};

/// Longest accepted names (queue, kind, worker) and keys.
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_KEY_LEN: usize = 255;
pub const MAX_TAGS: usize = 32;
/// The longest progress message a heartbeat may carry, in bytes.
pub const MAX_PROGRESS_MESSAGE: usize = 1024;
/// The most jobs one lease request may take.
pub const MAX_LEASE_BATCH: u32 = 1000;
/// The longest a lease request may long-poll.
pub const MAX_LEASE_WAIT: Duration = Duration::from_secs(300);
/// The default lease duration; a heartbeat extends by the same amount.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
pub const DEFAULT_QUEUE: &str = "default";

/// `POST /api/v1/jobs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Jobs that must end before this one runs; it is `blocked` until then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<JobId>,
    /// What to do when a parent fails, is cancelled or skipped (default `skip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_parent_failure: Option<ParentFailure>,
    /// At most one job per unique key among the jobs in the key's states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<UniqueSpec>,
    /// Groups jobs for the queue's `key_concurrency` limit and fair dispatch (e.g. a customer id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
}

impl SubmitJob {
    /// A request for a job of `kind` with `payload` on the default queue.
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        Self {
            kind: kind.into(),
            payload,
            ..Self::default()
        }
    }

    /// Checks every field and builds the job to store. `now` is the submission instant.
    pub fn validate(self, tenant: &str, now: Timestamp) -> Result<NewJob, FieldError> {
        let queue = self.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_string());
        validate_name("queue", &queue)?;
        if self.kind.is_empty() {
            return Err(FieldError::new("kind", "is required"));
        }
        validate_name("kind", &self.kind)?;
        let mut run_at = match (self.run_at, self.delay) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "delay",
                    "give either run_at or delay, not both",
                ));
            }
            (Some(at), None) => at.max(now),
            (None, Some(d)) => add(now, d.0),
            (None, None) => now,
        };
        if self.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(FieldError::new("timeout", "must be longer than zero"));
        }
        if contains_nul(&self.payload) {
            return Err(FieldError::new("payload", NUL_MESSAGE));
        }
        let retry = self.retry.unwrap_or_default();
        retry
            .validate()
            .map_err(|(field, msg)| FieldError::new(format!("retry.{field}"), msg))?;
        if let Some(key) = &self.idempotency_key {
            validate_key("idempotency_key", key)?;
        }
        validate_parents("depends_on", &self.depends_on)?;
        if let Some(key) = &self.concurrency_key
            && (key.is_empty() || key.len() > MAX_KEY_LEN || key.contains('\0'))
        {
            return Err(FieldError::new(
                "concurrency_key",
                format!("must be 1 to {MAX_KEY_LEN} bytes long, without NUL characters"),
            ));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(FieldError::new("tags", format!("at most {MAX_TAGS} tags")));
        }
        for (i, tag) in self.tags.iter().enumerate() {
            if tag.is_empty() || tag.len() > MAX_NAME_LEN || tag.contains('\0') {
                return Err(FieldError::new(
                    format!("tags[{i}]"),
                    format!("must be 1 to {MAX_NAME_LEN} bytes long"),
                ));
            }
        }
        let unique = self
            .unique
            .as_ref()
            .map(|u| u.resolve(&self.kind, &queue, &self.payload, now))
            .transpose()?;
        if unique
            .as_ref()
            .is_some_and(|u| u.on_conflict != Conflict::Skip)
            && !self.depends_on.is_empty()
        {
            return Err(FieldError::new(
                "unique.on_conflict",
                "replace and debounce cannot be combined with depends_on (a blocked job is never overwritten)",
            ));
        }
        if let Some(Conflict::Debounce(d)) = unique.as_ref().map(|u| u.on_conflict) {
            // A debounced job runs `debounce` after its latest submission.
            run_at = run_at.max(add(now, d));
        }
        Ok(NewJob {
            id: crate::job::JobId::new_v7(now),
            tenant: tenant.to_string(),
            queue,
            kind: self.kind,
            payload: self.payload,
            priority: self.priority.unwrap_or_default(),
            run_at,
            created_at: now,
            timeout: self.timeout.map(|t| t.0),
            retry,
            idempotency_key: self.idempotency_key,
            tags: self.tags,
            concurrency_key: self.concurrency_key,
            schedule: None,
            depends_on: self.depends_on,
            on_parent_failure: self.on_parent_failure.unwrap_or_default(),
            workflow: None,
            unique,
        })
    }
}

/// Checks a client-chosen key (idempotency key and the like).
pub fn validate_key(field: &str, key: &str) -> Result<(), FieldError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.contains('\0') {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_KEY_LEN} bytes long, without NUL characters"),
        ));
    }
    Ok(())
}

const NUL_MESSAGE: &str =
    "must not contain the NUL character (\\u0000): databases cannot store it in text";

/// Whether any string or key in `v` contains U+0000.
pub fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// Queue, kind and worker names: 1 to 128 of `A-Z a-z 0-9 _ - . :`.
pub fn validate_name(field: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_NAME_LEN} characters long"),
        ));
    }
    if name.chars().all(|c| c == '.') {
        return Err(FieldError::new(
            field,
            format!("`{name}` is not a name (it would read as a path)"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(FieldError::new(
            field,
            format!("`{name}` contains `{bad}`; use letters, digits, `_`, `-`, `.`, `:`"),
        ));
    }
    Ok(())
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: JobId,
    pub queue: String,
    pub kind: String,
    pub payload: Value,
    pub priority: u8,
    pub state: JobState,
    pub run_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    pub retry: RetryPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// The schedule that created the job, and the tick (RFC 3339 UTC) it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<ScheduleId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fire_time: Option<Timestamp>,
    /// The jobs this one waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<JobId>,
    /// Shown for jobs with parents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_parent_failure: Option<ParentFailure>,
    /// The workflow the job belongs to, and its name there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<WorkflowId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_job: Option<String>,
    /// Attempts started in the current run (reset by a manual retry).
    pub attempt: u32,
    pub cancel_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseView>,
    /// Finished attempts, oldest first (only on `GET /api/v1/jobs/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptView>,
    /// The key of a job submitted with `unique`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// The latest progress its worker reported; kept after the job ends,
    /// cleared when a new attempt starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressView>,
    /// Present on submit: true when an earlier job with the same idempotency key was returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplicated: Option<bool>,
    /// Present on a submit with `unique`: whether it created a job, returned
    /// the existing one, or overwrote the existing pending one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<UniqueOutcome>,
}

/// A job's progress as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub updated_at: Timestamp,
}

impl From<Progress> for ProgressView {
    fn from(p: Progress) -> Self {
        Self {
            percent: p.percent,
            message: p.message,
            updated_at: p.updated_at,
        }
    }
}

/// The lease of a running job (without its token, which only the worker sees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseView {
    pub worker: String,
    pub started_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptView {
    pub number: u32,
    pub worker: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        Self {
            number: a.number,
            worker: a.worker.clone(),
            started_at: a.started_at,
            finished_at: a.finished_at,
            outcome: a.outcome,
            error: a.error.clone(),
            result: a.result.clone(),
        }
    }
}

impl From<Job> for JobView {
    fn from(j: Job) -> Self {
        Self {
            attempts: j.attempts.iter().map(AttemptView::from).collect(),
            id: j.id,
            queue: j.queue,
            kind: j.kind,
            payload: j.payload,
            priority: j.priority.get(),
            state: j.state,
            run_at: j.run_at,
            created_at: j.created_at,
            updated_at: j.updated_at,
            finished_at: j.finished_at,
            timeout: j.timeout.map(DurationSpec),
            retry: j.retry,
            idempotency_key: j.idempotency_key,
            tags: j.tags,
            concurrency_key: j.concurrency_key,
            schedule_id: j.schedule_id,
            fire_time: j.fire_time,
            on_parent_failure: (!j.depends_on.is_empty()).then_some(j.on_parent_failure),
            depends_on: j.depends_on,
            workflow_id: j.workflow.as_ref().map(|(id, _)| *id),
            workflow_job: j.workflow.map(|(_, name)| name),
            attempt: j.attempt,
            cancel_requested: j.cancel_requested,
            lease: j.lease.map(|l| LeaseView {
                worker: l.worker,
                started_at: l.started_at,
                expires_at: l.expires_at,
                deadline: l.deadline,
            }),
            unique_key: j.unique_key,
            progress: j.progress.map(ProgressView::from),
            deduplicated: None,
            unique: None,
        }
    }
}

/// `GET /api/v1/jobs` answer: newest first; pass `next_cursor` as `cursor` for the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/lease`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    #[serde(default = "default_queues")]
    pub queues: Vec<String>,
    #[serde(default = "one")]
    pub max: u32,
    /// Long-poll for up to this long when nothing is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<DurationSpec>,
    pub worker: String,
    /// Lease duration (default 30s); each heartbeat extends by this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<DurationSpec>,
}

fn default_queues() -> Vec<String> {
    vec![DEFAULT_QUEUE.to_string()]
}

fn one() -> u32 {
    1
}

impl LeaseRequest {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.queues.is_empty() {
            return Err(FieldError::new("queues", "name at least one queue"));
        }
        for (i, q) in self.queues.iter().enumerate() {
            validate_name(&format!("queues[{i}]"), q)?;
        }
        if self.max == 0 || self.max > MAX_LEASE_BATCH {
            return Err(FieldError::new(
                "max",
                format!("must be 1 to {MAX_LEASE_BATCH}"),
            ));
        }
        if self.wait.is_some_and(|w| w.0 > MAX_LEASE_WAIT) {
            return Err(FieldError::new("wait", "must be at most 5m"));
        }
        if self.lease.is_some_and(|l| l.0 < Duration::from_secs(1)) {
            return Err(FieldError::new("lease", "must be at least 1s"));
        }
        validate_name("worker", &self.worker)
    }
}

/// One leased job: the job and the token that proves the lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeasedJob {
    #[serde(flatten)]
    pub job: JobView,
    pub lease_token: LeaseToken,
    pub lease_expires_at: Timestamp,
    /// For a job with parents: how each ended, and its result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ParentResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseResponse {
    pub jobs: Vec<LeasedJob>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub lease_token: LeaseToken,
    /// How far the job has got; replaces the progress stored on the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressReport>,
}

impl HeartbeatRequest {
    pub fn validate(&self) -> Result<(), FieldError> {
        self.progress
            .as_ref()
            .map_or(Ok(()), ProgressReport::validate)
    }
}

/// What a worker reports about a running job's progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    /// 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ProgressReport {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.percent.is_none() && self.message.is_none() {
            return Err(FieldError::new("progress", "give percent, message or both"));
        }
        if let Some(p) = self.percent
            && !(0.0..=100.0).contains(&p)
        {
            return Err(FieldError::new(
                "progress.percent",
                format!("{p} is out of range (0 to 100)"),
            ));
        }
        if let Some(m) = &self.message
            && (m.len() > MAX_PROGRESS_MESSAGE || m.contains('\0'))
        {
            return Err(FieldError::new(
                "progress.message",
                format!(
                    "must be at most {MAX_PROGRESS_MESSAGE} bytes long, without NUL characters"
                ),
            ));
        }
        Ok(())
    }

    /// The progress to store, reported at `now`.
    pub fn at(self, now: Timestamp) -> Progress {
        Progress {
            percent: self.percent,
            message: self.message,
            updated_at: now,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub lease_expires_at: Timestamp,
    /// The job was cancelled: stop working on it and report `fail` with `cancel: true`.
    pub cancel_requested: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub lease_token: LeaseToken,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub lease_token: LeaseToken,
    pub error: String,
    /// `false` sends the job to `failed` at once, whatever attempts remain.
    #[serde(default = "yes")]
    pub retry: bool,
    /// Wait this long before the retry instead of the backoff policy's wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<DurationSpec>,
    /// The worker cancels the job (state `cancelled`, no retry).
    #[serde(default)]
    pub cancel: bool,
}

fn yes() -> bool {
    true
}

/// Put a running job back, due after `delay`, without counting the attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnoozeRequest {
    pub lease_token: LeaseToken,
    #[serde(default)]
    pub delay: DurationSpec,
}

/// The most jobs one `POST /api/v1/jobs/batch` may carry.
pub const MAX_SUBMIT_BATCH: usize = 10_000;

/// `POST /api/v1/jobs/batch`: many submissions in one request and one
/// transaction. Each item is a [`SubmitJob`], kept as raw JSON until it is
/// read on its own, so a malformed item is reported by its index
/// (`jobs[3].kind`) without losing the others. With `atomic`, one invalid
/// item rejects the whole batch and nothing is stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    pub jobs: Vec<Value>,
    #[serde(default)]
    pub atomic: bool,
}

impl SubmitBatch {
    /// Checks the number of items: at least one, at most [`MAX_SUBMIT_BATCH`].
    pub fn check_size(&self) -> Result<(), FieldError> {
        if self.jobs.is_empty() || self.jobs.len() > MAX_SUBMIT_BATCH {
            return Err(FieldError::new(
                "jobs",
                format!("give 1 to {MAX_SUBMIT_BATCH} jobs per request"),
            ));
        }
        Ok(())
    }

    /// Names `field` of item `index`: `jobs[3].kind`, or `jobs[3]` for the
    /// item as a whole (an empty `field`).
    pub fn item_error(index: usize, e: FieldError) -> FieldError {
        let field = if e.field.is_empty() {
            format!("jobs[{index}]")
        } else {
            format!("jobs[{index}].{}", e.field)
        };
        FieldError::new(field, e.message)
    }
}

/// One entry per submitted job, in request order: the job (with
/// `deduplicated`), or why the item was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitBatchResponse {
    pub results: Vec<SubmitItemResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitItemResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// `POST /api/v1/jobs/complete`: many completions in one request and one commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteBatch {
    pub completions: Vec<CompleteItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteItem {
    pub id: JobId,
    pub lease_token: LeaseToken,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// One entry per completion, in request order: `error` is absent when it took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteBatchResponse {
    pub results: Vec<ItemResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub id: JobId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /api/v1/jobs` query string.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListJobsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// 1 to 1000, default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

pub const DEFAULT_LIST_LIMIT: u32 = 50;
pub const MAX_LIST_LIMIT: u32 = 1000;

/// The answer to `complete`, `fail` and `snooze`: where the job went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    pub id: JobId,
    pub state: JobState,
    /// When the job is due again (present when it was put back for a retry or snooze).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<Timestamp>,
}

/// `GET /api/v1/cluster`: the nodes sharing this server's database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// `single` on the embedded store (one node does everything), `cluster` on PostgreSQL.
    pub mode: String,
    pub nodes: Vec<NodeView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub id: String,
    pub address: String,
    pub started_at: Timestamp,
    pub last_seen: Timestamp,
    /// The scheduler shards the node holds now.
    pub shards: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-05-01T12:00:00Z".parse().unwrap()
    }

    fn submit(body: Value) -> Result<NewJob, FieldError> {
        let req: SubmitJob =
            serde_json::from_value(body).map_err(|e| FieldError::new("body", e.to_string()))?;
        req.validate("default", now())
    }

    #[test]
    fn minimal_submit_gets_defaults() {
        let job = submit(json!({"kind": "email.send"})).unwrap();
        assert_eq!(job.queue, "default");
        assert_eq!(job.priority, Priority::NORMAL);
        assert_eq!(job.run_at, now());
        assert_eq!(job.initial_state(now()), JobState::Available);
        assert_eq!(job.payload, Value::Null);
    }

    #[test]
    fn delay_and_run_at_schedule_the_job() {
        let job = submit(json!({"kind": "k", "delay": "1500ms"})).unwrap();
        assert_eq!(job.run_at, "2026-05-01T12:00:01.5Z".parse().unwrap());
        assert_eq!(job.initial_state(now()), JobState::Scheduled);
        let job = submit(json!({"kind": "k", "delay": 30})).unwrap();
        assert_eq!(job.run_at, "2026-05-01T12:00:30Z".parse().unwrap());
        let job = submit(json!({"kind": "k", "run_at": "2026-05-01T14:00:00+02:00"})).unwrap();
        assert_eq!(
            job.run_at,
            now(),
            "an instant in the past or now is due now"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({}), "kind"),
            (json!({"kind": ""}), "kind"),
            (json!({"kind": "a b"}), "kind"),
            (json!({"kind": "k", "queue": "x/y"}), "queue"),
            (json!({"kind": "k", "queue": ".."}), "queue"),
            (
                json!({"kind": "k", "delay": "1s", "run_at": "2026-05-01T12:00:00Z"}),
                "delay",
            ),
            (json!({"kind": "k", "timeout": "0s"}), "timeout"),
            (
                json!({"kind": "k", "retry": {"max_attempts": 0}}),
                "retry.max_attempts",
            ),
            (
                json!({"kind": "k", "idempotency_key": ""}),
                "idempotency_key",
            ),
            (json!({"kind": "k", "tags": ["ok", ""]}), "tags[1]"),
            (
                json!({"kind": "k", "concurrency_key": ""}),
                "concurrency_key",
            ),
            (
                json!({"kind": "k", "payload": {"a": ["x\u{0}y"]}}),
                "payload",
            ),
            (
                json!({"kind": "k", "idempotency_key": "a\u{0}"}),
                "idempotency_key",
            ),
            (
                json!({"kind": "k", "unique": {"by": ["x"]}}),
                "unique.by[0]",
            ),
            (
                json!({"kind": "k", "unique": {"period": "100ms"}}),
                "unique.period",
            ),
            (
                json!({"kind": "k", "depends_on": ["0192e4a0-0000-7000-8000-000000000000"],
                       "unique": {"on_conflict": "replace"}}),
                "unique.on_conflict",
            ),
        ];
        for (body, field) in cases {
            let err = submit(body.clone()).unwrap_err();
            assert_eq!(err.field, field, "{body}: {err}");
        }
    }

    #[test]
    fn unique_submissions_carry_their_key_and_debounce_delays() {
        let job = submit(json!({"kind": "k", "unique": {}})).unwrap();
        let unique = job.unique.expect("a unique job");
        assert_eq!(unique.key.len(), 64);
        assert_eq!(job.run_at, now());
        let job =
            submit(json!({"kind": "k", "unique": {"on_conflict": "debounce", "debounce": "30s"}}))
                .unwrap();
        assert_eq!(job.run_at, "2026-05-01T12:00:30Z".parse().unwrap());
        let job = submit(json!({"kind": "k", "delay": "1m",
                                "unique": {"on_conflict": "debounce", "debounce": "30s"}}))
        .unwrap();
        assert_eq!(
            job.run_at,
            "2026-05-01T12:01:00Z".parse().unwrap(),
            "a later run time than the debounce stands"
        );
        assert!(submit(json!({"kind": "k"})).unwrap().unique.is_none());
    }

    #[test]
    fn progress_reports_are_checked() {
        let ok = [
            json!({"percent": 0}),
            json!({"percent": 100, "message": "done"}),
            json!({"message": "starting"}),
        ];
        for p in ok {
            let r: ProgressReport = serde_json::from_value(p.clone()).unwrap();
            assert!(r.validate().is_ok(), "{p}");
        }
        let long = "x".repeat(MAX_PROGRESS_MESSAGE + 1);
        let bad = [
            (json!({}), "progress"),
            (json!({"percent": 100.5}), "progress.percent"),
            (json!({"percent": -0.1}), "progress.percent"),
            (json!({"message": long}), "progress.message"),
            (json!({"message": "a\u{0}"}), "progress.message"),
        ];
        for (p, field) in bad {
            let r: ProgressReport = serde_json::from_value(p.clone()).unwrap();
            assert_eq!(r.validate().unwrap_err().field, field, "{p}");
        }
    }

    #[test]
    fn lease_request_validation() {
        let ok: LeaseRequest = serde_json::from_value(json!({"worker": "w1"})).unwrap();
        assert_eq!(ok.queues, vec!["default"]);
        assert_eq!(ok.max, 1);
        assert!(ok.validate().is_ok());
        let cases = [
            (json!({"worker": "w", "queues": []}), "queues"),
            (json!({"worker": "w", "max": 0}), "max"),
            (json!({"worker": "w", "max": 5000}), "max"),
            (json!({"worker": "w", "wait": "1h"}), "wait"),
            (json!({"worker": "w", "lease": "10ms"}), "lease"),
            (json!({"worker": ""}), "worker"),
        ];
        for (body, field) in cases {
            let req: LeaseRequest = serde_json::from_value(body.clone()).unwrap();
            assert_eq!(req.validate().unwrap_err().field, field, "{body}");
        }
    }

    #[test]
    fn fail_request_defaults_to_retry() {
        let r: FailRequest = serde_json::from_value(json!({
            "lease_token": "0192e4a0-0000-4000-8000-000000000000", "error": "boom"
        }))
        .unwrap();
        assert!(r.retry);
        assert!(!r.cancel);
    }
}
