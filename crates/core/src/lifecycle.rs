//! The job state machine as pure functions: given where a job is and what
//! happened, where it goes next. The store applies these verdicts atomically;
//! it never decides a transition on its own.
//!
//! ```text
//! submit ──> scheduled ──(due)──> available ──(lease)──> running ──(complete)──> succeeded
//!               ^                    ^  ^                  │
//!               └──(retry backoff)───┼──┼──(fail/expire/───┤──(attempts exhausted, retry:false)──> failed
//!                                    │  │   timeout)       └──(cancel requested)──> cancelled
//!                                    │  └──(snooze/release)
//!                                    └──(manual retry of failed|cancelled)
//! scheduled|available ──(cancel)──> cancelled
//!
//! blocked ──(every parent ended; see `workflow::readiness`)──> scheduled|available
//!    └──(a parent failed|cancelled|skipped, policy skip)──> skipped
//! blocked ──(cancel)──> cancelled
//! skipped ──(manual retry)──> available
//! ```

use std::time::Duration;

use jiff::Timestamp;

use crate::job::{AttemptOutcome, JobState, LeaseToken, RunningLease};
use crate::retry::RetryPolicy;
use crate::time::add;

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("cannot {action} a job that is {state}")]
    WrongState {
        action: &'static str,
        state: JobState,
    },
    #[error("the lease token does not match the job's current lease (expired or re-leased)")]
    StaleLease,
}

/// Why a running attempt ended without success.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FailureCause {
    /// The worker reported an error. `retry: false` sends the job straight to `failed`;
    /// `retry_after` overrides the backoff for this one retry.
    Error {
        retry: bool,
        retry_after: Option<Duration>,
    },
    /// The worker asked for the job to be cancelled.
    CancelledByWorker,
    /// The lease ran out without a heartbeat.
    LeaseExpired,
    /// The attempt ran past the job's `timeout`.
    TimedOut,
}

impl FailureCause {
    pub fn outcome(self) -> AttemptOutcome {
        match self {
            FailureCause::Error { .. } => AttemptOutcome::Failed,
            FailureCause::CancelledByWorker => AttemptOutcome::Cancelled,
            FailureCause::LeaseExpired => AttemptOutcome::LeaseExpired,
            FailureCause::TimedOut => AttemptOutcome::TimedOut,
        }
    }
}

/// Where a job goes after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureVerdict {
    /// Try again at this instant (`scheduled` until then, `available` if already due).
    RetryAt(Timestamp),
    /// Dead-lettered: state `failed`.
    Dead,
    Cancelled,
}

impl FailureVerdict {
    pub fn state(self, now: Timestamp) -> JobState {
        match self {
            FailureVerdict::RetryAt(at) if at > now => JobState::Scheduled,
            FailureVerdict::RetryAt(_) => JobState::Available,
            FailureVerdict::Dead => JobState::Failed,
            FailureVerdict::Cancelled => JobState::Cancelled,
        }
    }
}

/// Decides what a failed attempt leads to.
///
/// `attempt` is the number of attempts started so far (the failed one included);
/// `sample` is a uniform random number in `[0, 1)` for the backoff jitter.
pub fn on_failure(
    attempt: u32,
    retry: &RetryPolicy,
    cancel_requested: bool,
    cause: FailureCause,
    now: Timestamp,
    sample: f64,
) -> FailureVerdict {
    if cancel_requested || cause == FailureCause::CancelledByWorker {
        return FailureVerdict::Cancelled;
    }
    let retry_after = match cause {
        FailureCause::Error { retry: false, .. } => return FailureVerdict::Dead,
        FailureCause::Error { retry_after, .. } => retry_after,
        _ => None,
    };
    if attempt >= retry.max_attempts {
        return FailureVerdict::Dead;
    }
    let wait = retry_after.unwrap_or_else(|| retry.delay(attempt, sample));
    FailureVerdict::RetryAt(add(now, wait))
}

/// Why an expired lease ended: past the job's deadline, or a silent worker.
pub fn expiry_cause(lease: &RunningLease, now: Timestamp) -> FailureCause {
    match lease.deadline {
        Some(deadline) if deadline <= now => FailureCause::TimedOut,
        _ => FailureCause::LeaseExpired,
    }
}

/// When a lease taken or extended at `now` runs out: `now + duration`, but
/// never past the attempt's deadline.
pub fn lease_expiry(now: Timestamp, duration: Duration, deadline: Option<Timestamp>) -> Timestamp {
    let until = add(now, duration);
    match deadline {
        Some(d) if d < until => d,
        _ => until,
    }
}

/// The hard end of an attempt started at `now` for a job with this timeout.
pub fn attempt_deadline(now: Timestamp, timeout: Option<Duration>) -> Option<Timestamp> {
    timeout.map(|t| add(now, t))
}

/// Checks that `token` holds the current lease of a job in `state`.
pub fn check_lease(
    state: JobState,
    lease: Option<&RunningLease>,
    token: LeaseToken,
) -> Result<(), TransitionError> {
    match (state, lease) {
        (JobState::Running, Some(l)) if l.token == token => Ok(()),
        _ => Err(TransitionError::StaleLease),
    }
}

/// What cancelling does to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelEffect {
    /// Pending: cancelled at once.
    Cancelled,
    /// Running: flagged; its worker learns at the next heartbeat.
    Requested,
}

pub fn cancel(state: JobState) -> Result<CancelEffect, TransitionError> {
    match state {
        s if s.is_pending() => Ok(CancelEffect::Cancelled),
        JobState::Running => Ok(CancelEffect::Requested),
        state => Err(TransitionError::WrongState {
            action: "cancel",
            state,
        }),
    }
}

/// A manual re-run: only for jobs that ended badly.
pub fn rerun(state: JobState) -> Result<(), TransitionError> {
    match state {
        JobState::Failed | JobState::Cancelled | JobState::Skipped => Ok(()),
        state => Err(TransitionError::WrongState {
            action: "retry",
            state,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::DurationSpec;
    use crate::retry::Backoff;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            backoff: Backoff::Fixed,
            base: DurationSpec(Duration::from_secs(10)),
            max: DurationSpec(Duration::from_secs(60)),
            jitter: 0.0,
        }
    }

    const NOW: &str = "2026-05-01T12:00:00Z";
    const ERR: FailureCause = FailureCause::Error {
        retry: true,
        retry_after: None,
    };

    #[test]
    fn failure_verdicts() {
        let now = t(NOW);
        // (attempt, max_attempts, cancel_requested, cause, expected)
        let cases = [
            (
                1,
                3,
                false,
                ERR,
                FailureVerdict::RetryAt(t("2026-05-01T12:00:10Z")),
            ),
            (3, 3, false, ERR, FailureVerdict::Dead),
            (
                1,
                3,
                false,
                FailureCause::Error {
                    retry: false,
                    retry_after: None,
                },
                FailureVerdict::Dead,
            ),
            (1, 3, true, ERR, FailureVerdict::Cancelled),
            (
                1,
                3,
                false,
                FailureCause::CancelledByWorker,
                FailureVerdict::Cancelled,
            ),
            (
                1,
                3,
                false,
                FailureCause::LeaseExpired,
                FailureVerdict::RetryAt(t("2026-05-01T12:00:10Z")),
            ),
            (
                1,
                1,
                false,
                FailureCause::LeaseExpired,
                FailureVerdict::Dead,
            ),
            (
                2,
                3,
                false,
                FailureCause::TimedOut,
                FailureVerdict::RetryAt(t("2026-05-01T12:00:10Z")),
            ),
            (
                1,
                3,
                false,
                FailureCause::Error {
                    retry: true,
                    retry_after: Some(Duration::from_secs(90)),
                },
                FailureVerdict::RetryAt(t("2026-05-01T12:01:30Z")),
            ),
        ];
        for (i, (attempt, max, cancel, cause, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                on_failure(attempt, &policy(max), cancel, cause, now, 0.5),
                want,
                "case {i}"
            );
        }
    }

    #[test]
    fn verdict_state_depends_on_due_time() {
        let now = t(NOW);
        assert_eq!(FailureVerdict::RetryAt(now).state(now), JobState::Available);
        assert_eq!(
            FailureVerdict::RetryAt(t("2026-05-01T12:00:01Z")).state(now),
            JobState::Scheduled
        );
        assert_eq!(FailureVerdict::Dead.state(now), JobState::Failed);
    }

    #[test]
    fn lease_never_outlives_the_deadline() {
        let now = t(NOW);
        let deadline = attempt_deadline(now, Some(Duration::from_secs(5)));
        assert_eq!(
            lease_expiry(now, Duration::from_secs(30), deadline),
            t("2026-05-01T12:00:05Z")
        );
        assert_eq!(
            lease_expiry(now, Duration::from_secs(30), None),
            t("2026-05-01T12:00:30Z")
        );
        assert_eq!(
            lease_expiry(now, Duration::from_secs(2), deadline),
            t("2026-05-01T12:00:02Z")
        );
    }

    #[test]
    fn expiry_past_deadline_is_a_timeout() {
        let now = t(NOW);
        let lease = RunningLease {
            token: LeaseToken::random(),
            worker: "w".into(),
            started_at: now,
            expires_at: t("2026-05-01T12:00:05Z"),
            deadline: Some(t("2026-05-01T12:00:05Z")),
            duration: Duration::from_secs(30),
        };
        assert_eq!(
            expiry_cause(&lease, t("2026-05-01T12:00:05Z")),
            FailureCause::TimedOut
        );
        let no_deadline = RunningLease {
            deadline: None,
            ..lease
        };
        assert_eq!(
            expiry_cause(&no_deadline, t("2026-05-01T12:00:05Z")),
            FailureCause::LeaseExpired
        );
    }

    #[test]
    fn stale_tokens_are_refused() {
        let token = LeaseToken::random();
        let lease = RunningLease {
            token,
            worker: "w".into(),
            started_at: t(NOW),
            expires_at: t(NOW),
            deadline: None,
            duration: Duration::from_secs(30),
        };
        assert_eq!(check_lease(JobState::Running, Some(&lease), token), Ok(()));
        assert_eq!(
            check_lease(JobState::Running, Some(&lease), LeaseToken::random()),
            Err(TransitionError::StaleLease)
        );
        assert_eq!(
            check_lease(JobState::Succeeded, None, token),
            Err(TransitionError::StaleLease)
        );
    }

    #[test]
    fn cancel_and_rerun_rules() {
        let table = [
            (JobState::Scheduled, Ok(CancelEffect::Cancelled), false),
            (JobState::Available, Ok(CancelEffect::Cancelled), false),
            (JobState::Running, Ok(CancelEffect::Requested), false),
            (JobState::Succeeded, Err(()), false),
            (JobState::Failed, Err(()), true),
            (JobState::Cancelled, Err(()), true),
        ];
        for (state, want_cancel, can_rerun) in table {
            assert_eq!(cancel(state).map_err(|_| ()), want_cancel, "cancel {state}");
            assert_eq!(rerun(state).is_ok(), can_rerun, "rerun {state}");
        }
    }
}
