//! # taskwheel-core
//!
//! The domain of taskwheel as plain data and pure functions: what a job is,
//! which states it moves through and why, how long to wait before a retry, how
//! durations and priorities are spelled, and the JSON shapes of the public API.
//!
//! ## Layout
//! - [`time`]: the [`Clock`] seam (system clock, manual clock for tests).
//! - [`duration`]: parsing and printing durations such as `1500ms`, `30s`, `5m`.
//! - [`job`]: ids, states, priorities, the stored [`Job`] and its [`Attempt`]s.
//! - [`retry`]: [`RetryPolicy`] and backoff arithmetic.
//! - [`schedule`]: when a cron, interval or one-shot schedule fires, in any time zone.
//! - [`firing`]: misfire, overlap and jitter: which ticks a due schedule fires.
//! - [`recurring`]: a schedule as defined and stored: timing, job template, policies, health.
//! - [`lifecycle`]: the state machine; what a failure, an expiry or a cancel turns a job into.
//! - [`workflow`]: dependencies between jobs (`depends_on`) and workflows: when a child may run, cycle checks.
//! - [`unique`]: unique jobs: the key a submission computes and what a collision does.
//! - [`queue`]: per-queue flow control (pause, concurrency, per-key concurrency, rate).
//! - [`wire`]: request and response bodies of REST API v1, and their validation.
//! - [`error`]: the public error-code table shared by every API adapter.
//!
//! Architecture invariant: nothing here does I/O, spawns, sleeps or reads the
//! system clock except through [`SystemClock`]. Time always comes in as an
//! argument, so every rule is testable with a fixed instant.

pub mod duration;
pub mod error;
pub mod firing;
pub mod job;
pub mod lifecycle;
pub mod queue;
pub mod recurring;
pub mod retry;
pub mod schedule;
pub mod time;
pub mod unique;
pub mod wire;
pub mod workflow;

pub use duration::{DurationSpec, parse_duration};
pub use error::{ErrorCode, FieldError};
pub use job::{
    Attempt, AttemptOutcome, Job, JobId, JobState, LeaseToken, NewJob, Priority, Progress,
    RunningLease, TENANT_DEFAULT,
};
pub use lifecycle::{FailureCause, FailureVerdict, TransitionError};
pub use retry::{Backoff, RetryPolicy};
pub use schedule::{DstGap, DstOverlap, Schedule, ScheduleSpec};
pub use time::{Clock, ManualClock, SystemClock};

pub use jiff::Timestamp;
