//! What a job is: its identity, state, priority and the record of its attempts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::firing::ScheduleId;
use crate::retry::RetryPolicy;
use crate::unique::Uniqueness;
use crate::workflow::{ParentFailure, WorkflowId};

/// The tenant every object belongs to until authentication assigns others.
pub const TENANT_DEFAULT: &str = "default";

/// A job's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn new_v7(at: Timestamp) -> Self {
        let secs = at.as_second().max(0) as u64;
        let nanos = at.subsec_nanosecond().max(0) as u32;
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos);
        Self(Uuid::new_v7(ts))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Proof that a worker holds the current lease on a job. A new lease gets a
/// new token, so a worker whose lease expired cannot touch the job again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(pub Uuid);

impl LeaseToken {
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a job is in its life. See docs/ARCHITECTURE.md for the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its parents (`depends_on`) to finish.
    Blocked,
    /// Not yet due: a delayed job, or one waiting out a retry backoff.
    Scheduled,
    /// Due and waiting for a worker.
    Available,
    /// Leased by a worker.
    Running,
    Succeeded,
    /// Attempts exhausted or failed with `retry: false`: the dead-letter list.
    Failed,
    Cancelled,
    /// Never ran: a parent failed or was cancelled or skipped (`on_parent_failure: skip`).
    Skipped,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Blocked,
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Blocked => "blocked",
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Skipped => "skipped",
        }
    }

    /// Pending states: the job has not run to an end yet and can be cancelled outright.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            JobState::Blocked | JobState::Scheduled | JobState::Available
        )
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::Skipped
        )
    }

    /// Final states that do not count as success for a dependent job.
    pub fn is_unsuccessful_end(self) -> bool {
        self.is_final() && self != JobState::Succeeded
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a job state (one of blocked, scheduled, available, running, succeeded, failed, cancelled, skipped)"
                )
            })
    }
}

/// 0 (lowest) to 9 (highest); higher is leased first. Default 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Priority(u8);

impl Priority {
    pub const MAX: u8 = 9;
    pub const LOW: Priority = Priority(2);
    pub const NORMAL: Priority = Priority(5);
    pub const HIGH: Priority = Priority(7);
    pub const CRITICAL: Priority = Priority(9);

    pub fn new(value: u8) -> Result<Self, String> {
        if value <= Self::MAX {
            Ok(Self(value))
        } else {
            Err(format!(
                "{value} is out of range (0 to 9, or low, normal, high, critical)"
            ))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::NORMAL
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Self::LOW),
            "normal" => Ok(Self::NORMAL),
            "high" => Ok(Self::HIGH),
            "critical" => Ok(Self::CRITICAL),
            other => match other.parse::<u8>() {
                Ok(n) => Self::new(n),
                Err(_) => Err(format!(
                    "`{other}` is not a priority (0 to 9, or low, normal, high, critical)"
                )),
            },
        }
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => u8::try_from(n)
                .map_err(|_| {
                    format!("{n} is out of range (0 to 9, or low, normal, high, critical)")
                })
                .and_then(Priority::new)
                .map_err(serde::de::Error::custom),
            Raw::Name(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A validated job, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub id: JobId,
    pub tenant: String,
    pub queue: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: Priority,
    /// When the job becomes due. Equal to `created_at` for immediate jobs.
    pub run_at: Timestamp,
    pub created_at: Timestamp,
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub idempotency_key: Option<String>,
    pub tags: Vec<String>,
    /// Groups jobs (say, by customer) for the queue's per-key concurrency limit and fair dispatch.
    pub concurrency_key: Option<String>,
    /// The schedule and tick that created this job; at most one job per pair.
    pub schedule: Option<(ScheduleId, Timestamp)>,
    /// Jobs that must end before this one may run; empty for most jobs.
    pub depends_on: Vec<JobId>,
    pub on_parent_failure: ParentFailure,
    /// The workflow this job belongs to, and its name there.
    pub workflow: Option<(WorkflowId, String)>,
    /// The unique key and policy of a submission with `unique`.
    pub unique: Option<Uniqueness>,
}

impl NewJob {
    /// `scheduled` when due later than `now`, else `available`.
    pub fn initial_state(&self, now: Timestamp) -> JobState {
        if self.run_at > now {
            JobState::Scheduled
        } else {
            JobState::Available
        }
    }
}

/// The lease a running job is held under.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningLease {
    pub token: LeaseToken,
    pub worker: String,
    pub started_at: Timestamp,
    pub expires_at: Timestamp,
    /// Hard end of this attempt when the job has a `timeout`; heartbeats never extend past it.
    pub deadline: Option<Timestamp>,
    /// How far one heartbeat extends the lease.
    pub duration: Duration,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub tenant: String,
    pub queue: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: Priority,
    pub state: JobState,
    pub run_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub idempotency_key: Option<String>,
    pub tags: Vec<String>,
    pub concurrency_key: Option<String>,
    /// The schedule that created this job, and the tick it belongs to.
    pub schedule_id: Option<ScheduleId>,
    pub fire_time: Option<Timestamp>,
    pub depends_on: Vec<JobId>,
    pub on_parent_failure: ParentFailure,
    pub workflow: Option<(WorkflowId, String)>,
    /// Attempts started since the job was submitted or last re-run by hand.
    pub attempt: u32,
    pub cancel_requested: bool,
    /// Present while `state` is `running`.
    pub lease: Option<RunningLease>,
    /// The key of a job submitted with `unique` (see [`crate::unique`]).
    pub unique_key: Option<String>,
    /// The latest progress the worker of the current (or last) attempt reported.
    pub progress: Option<Progress>,
    /// Finished attempts, oldest first; filled only where asked for.
    pub attempts: Vec<Attempt>,
}

/// How far a running job has got, as its worker last reported with a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// 0 to 100.
    pub percent: Option<f64>,
    pub message: Option<String>,
    /// When the worker reported it (the heartbeat's instant).
    pub updated_at: Timestamp,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    Failed,
    /// The job ran past its `timeout`; the server ended the attempt.
    TimedOut,
    /// The worker stopped heartbeating and its lease ran out.
    LeaseExpired,
    Cancelled,
    /// Put back by the worker (for example at shutdown) without running it to an end.
    Released,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::LeaseExpired => "lease_expired",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Released => "released",
        }
    }
}

impl FromStr for AttemptOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            AttemptOutcome::Succeeded,
            AttemptOutcome::Failed,
            AttemptOutcome::TimedOut,
            AttemptOutcome::LeaseExpired,
            AttemptOutcome::Cancelled,
            AttemptOutcome::Released,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| format!("unknown attempt outcome `{s}`"))
    }
}

/// One finished run of a job by a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// 1-based, counted over the job's whole life (manual re-runs continue the count).
    pub number: u32,
    pub worker: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_accepts_numbers_and_names() {
        let cases = [
            ("3", 3),
            ("\"low\"", 2),
            ("\"normal\"", 5),
            ("\"high\"", 7),
            ("\"critical\"", 9),
            ("9", 9),
            ("0", 0),
        ];
        for (json, want) in cases {
            let p: Priority = serde_json::from_str(json).unwrap();
            assert_eq!(p.get(), want, "{json}");
        }
        for bad in ["10", "-1", "\"urgent\"", "300"] {
            assert!(serde_json::from_str::<Priority>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn job_ids_are_v7_and_sort_by_time() {
        let t1: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t2: Timestamp = "2026-01-01T00:00:01Z".parse().unwrap();
        let a = JobId::new_v7(t1);
        let b = JobId::new_v7(t2);
        assert_eq!(a.0.get_version_num(), 7);
        assert!(a < b);
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>(), Ok(s));
        }
        assert!("done".parse::<JobState>().is_err());
    }
}
