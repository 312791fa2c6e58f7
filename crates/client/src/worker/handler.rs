//! What a job handler sees and returns: the [`Handler`] trait, the
//! [`JobContext`] it is given, and the typed [`Outcome`] that the worker turns
//! into a `complete`, `fail` or `snooze` request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;
use taskwheel_core::wire::{
    CompleteRequest, FailRequest, LeasedJob, MAX_PROGRESS_MESSAGE, ProgressReport, SnoozeRequest,
};
use taskwheel_core::workflow::ParentResult;
use taskwheel_core::{DurationSpec, JobId, LeaseToken, Timestamp};
use tokio::sync::watch;

/// Runs jobs of one kind. Registered on a [`WorkerBuilder`](super::WorkerBuilder).
///
/// The worker heartbeats while `handle` runs, so a handler only has to do the
/// work; it should watch [`JobContext::cancelled`] when the work is long.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, job: JobContext) -> Outcome;
}

/// A [`Handler`] made from an async closure; see [`handler_fn`].
pub struct FnHandler<F>(F);

/// Wraps `f` as a [`Handler`]: `handler_fn(|job| async move { Outcome::complete() })`.
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    FnHandler(f)
}

#[async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    async fn handle(&self, job: JobContext) -> Outcome {
        (self.0)(job).await
    }
}

/// One leased job as its handler sees it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobContext {
    job: Arc<LeasedJob>,
    worker_id: Arc<str>,
    /// Flips to `true` when a heartbeat answers `cancel_requested`; the sender
    /// lives in the task that supervises this job.
    cancel: watch::Receiver<bool>,
    /// The latest progress the handler reported; the supervisor sends it
    /// with a heartbeat (at once, at most about once a second).
    progress: Arc<watch::Sender<Option<ProgressReport>>>,
}

impl JobContext {
    pub(crate) fn new(
        job: LeasedJob,
        worker_id: Arc<str>,
        cancel: watch::Receiver<bool>,
        progress: Arc<watch::Sender<Option<ProgressReport>>>,
    ) -> Self {
        Self {
            job: Arc::new(job),
            worker_id,
            cancel,
            progress,
        }
    }

    /// Reports how far the job has got: `percent` (0 to 100) and a short
    /// message. The worker sends it to the server with a heartbeat right
    /// away (at most about once a second; the latest report wins), and the
    /// server shows it on the job. Out-of-range input is clamped rather
    /// than refused: a percentage below 0 counts as 0, above 100 as 100, and
    /// a message is cut to 1024 bytes.
    pub fn progress(&self, percent: f64, message: impl Into<String>) {
        self.report_progress(ProgressReport {
            percent: Some(percent),
            message: Some(message.into()),
        });
    }

    /// [`progress`](Self::progress) with either part optional.
    pub fn report_progress(&self, report: ProgressReport) {
        self.progress.send_replace(Some(storable_progress(report)));
    }

    /// The job and its lease as the server handed it out.
    pub fn leased(&self) -> &LeasedJob {
        &self.job
    }

    pub fn id(&self) -> JobId {
        self.job.job.id
    }

    pub fn kind(&self) -> &str {
        &self.job.job.kind
    }

    pub fn queue(&self) -> &str {
        &self.job.job.queue
    }

    pub fn payload(&self) -> &Value {
        &self.job.job.payload
    }

    /// The payload decoded into `T`.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.job.job.payload)
    }

    /// For a job with parents (`depends_on`, workflows): how each parent
    /// ended and what it returned, in the order the job lists them.
    pub fn parents(&self) -> &[ParentResult] {
        &self.job.parents
    }

    /// The result of the parent named `name` in this job's workflow.
    pub fn parent_result(&self, name: &str) -> Option<&Value> {
        self.job
            .parents
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| p.result.as_ref())
    }

    /// 1 for the first attempt of the current run.
    pub fn attempt(&self) -> u32 {
        self.job.job.attempt
    }

    /// The job's execution timeout, if it has one. The server ends the
    /// attempt when it runs out, whatever the handler does.
    pub fn timeout(&self) -> Option<Duration> {
        self.job.job.timeout.map(|t| t.0)
    }

    /// The hard end of this attempt on the server's clock, when the job has a timeout.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.job.job.lease.as_ref().and_then(|l| l.deadline)
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Someone cancelled the job through the API; stop and return [`Outcome::Cancel`].
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves once the job is cancelled; never resolves otherwise. Meant for
    /// `tokio::select!` next to the work.
    pub async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        if cancel.wait_for(|c| *c).await.is_err() {
            // The supervisor is gone, so the job is over and no cancel can come.
            std::future::pending::<()>().await;
        }
    }
}

/// A report the server accepts whatever the handler passed.
fn storable_progress(report: ProgressReport) -> ProgressReport {
    let percent = report
        .percent
        .filter(|p| !p.is_nan())
        .map(|p| p.clamp(0.0, 100.0));
    let message = report.message.map(|m| {
        let mut m = m.replace('\0', "\u{FFFD}");
        if m.len() > MAX_PROGRESS_MESSAGE {
            let mut end = MAX_PROGRESS_MESSAGE;
            while !m.is_char_boundary(end) {
                end -= 1;
            }
            m.truncate(end);
        }
        m
    });
    ProgressReport {
        // Neither part left (a NaN alone): report 0% rather than nothing.
        percent: if percent.is_none() && message.is_none() {
            Some(0.0)
        } else {
            percent
        },
        message,
    }
}

/// How a handler ended a job. The worker reports it to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success, with an optional result stored on the attempt.
    Complete(Option<Value>),
    /// The attempt failed. With `retry: true` the job's retry policy decides
    /// what happens next; `retry: false` sends it to `failed` at once.
    Fail { error: String, retry: bool },
    /// The attempt failed; try again after `delay` instead of the policy's backoff.
    RetryAfter { error: String, delay: Duration },
    /// Stop for good: the job becomes `cancelled` (the answer to a cancel request).
    Cancel { reason: String },
    /// Not now: put the job back, due after the delay, without counting the attempt.
    Snooze(Duration),
}

impl Outcome {
    pub fn complete() -> Self {
        Outcome::Complete(None)
    }

    pub fn complete_with(result: Value) -> Self {
        Outcome::Complete(Some(result))
    }

    /// A failure the retry policy may retry.
    pub fn retry(error: impl Into<String>) -> Self {
        Outcome::Fail {
            error: error.into(),
            retry: true,
        }
    }

    /// A failure no retry will fix (bad input, missing permission).
    pub fn fail_permanently(error: impl Into<String>) -> Self {
        Outcome::Fail {
            error: error.into(),
            retry: false,
        }
    }

    pub fn cancel(reason: impl Into<String>) -> Self {
        Outcome::Cancel {
            reason: reason.into(),
        }
    }

    /// The request that reports this outcome under `lease_token`.
    pub(crate) fn into_report(self, lease_token: LeaseToken) -> Report {
        match self {
            Outcome::Complete(result) => Report::Complete(CompleteRequest {
                lease_token,
                result,
            }),
            Outcome::Fail { error, retry } => Report::Fail(FailRequest {
                lease_token,
                error,
                retry,
                retry_after: None,
                cancel: false,
            }),
            Outcome::RetryAfter { error, delay } => Report::Fail(FailRequest {
                lease_token,
                error,
                retry: true,
                retry_after: Some(DurationSpec(delay)),
                cancel: false,
            }),
            Outcome::Cancel { reason } => Report::Fail(FailRequest {
                lease_token,
                error: reason,
                retry: false,
                retry_after: None,
                cancel: true,
            }),
            Outcome::Snooze(delay) => Report::Snooze(SnoozeRequest {
                lease_token,
                delay: DurationSpec(delay),
            }),
        }
    }
}

/// The request an [`Outcome`] becomes.
#[derive(Debug, Clone)]
pub(crate) enum Report {
    Complete(CompleteRequest),
    Fail(FailRequest),
    Snooze(SnoozeRequest),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token() -> LeaseToken {
        LeaseToken::random()
    }

    /// Each outcome as the JSON body the server receives.
    fn wire(outcome: Outcome, token: LeaseToken) -> (&'static str, Value) {
        match outcome.into_report(token) {
            Report::Complete(r) => ("complete", serde_json::to_value(r).unwrap()),
            Report::Fail(r) => ("fail", serde_json::to_value(r).unwrap()),
            Report::Snooze(r) => ("snooze", serde_json::to_value(r).unwrap()),
        }
    }

    #[test]
    fn progress_is_made_acceptable() {
        let cases = [
            (Some(150.0), Some("x".repeat(2000)), Some(100.0), 1024),
            (Some(-3.0), None, Some(0.0), 0),
            (Some(f64::NAN), None, Some(0.0), 0),
            (Some(42.5), Some("é".repeat(600)), Some(42.5), 1024),
        ];
        for (percent, message, want_percent, want_len) in cases {
            let out = storable_progress(ProgressReport { percent, message });
            assert_eq!(out.percent, want_percent);
            assert_eq!(out.message.as_ref().map_or(0, String::len), want_len);
            assert!(out.validate().is_ok());
        }
    }

    #[test]
    fn outcomes_map_to_requests() {
        let t = token();
        let cases = [
            (Outcome::complete(), "complete", json!({"lease_token": t})),
            (
                Outcome::complete_with(json!({"n": 1})),
                "complete",
                json!({"lease_token": t, "result": {"n": 1}}),
            ),
            (
                Outcome::retry("boom"),
                "fail",
                json!({"lease_token": t, "error": "boom", "retry": true, "cancel": false}),
            ),
            (
                Outcome::fail_permanently("bad input"),
                "fail",
                json!({"lease_token": t, "error": "bad input", "retry": false, "cancel": false}),
            ),
            (
                Outcome::RetryAfter {
                    error: "rate limited".into(),
                    delay: Duration::from_secs(90),
                },
                "fail",
                json!({"lease_token": t, "error": "rate limited", "retry": true,
                       "retry_after": "1m 30s", "cancel": false}),
            ),
            (
                Outcome::cancel("cancel requested"),
                "fail",
                json!({"lease_token": t, "error": "cancel requested", "retry": false, "cancel": true}),
            ),
            (
                Outcome::Snooze(Duration::ZERO),
                "snooze",
                json!({"lease_token": t, "delay": "0s"}),
            ),
        ];
        for (outcome, endpoint, body) in cases {
            let label = format!("{outcome:?}");
            assert_eq!(wire(outcome, t), (endpoint, body), "{label}");
        }
    }
}
