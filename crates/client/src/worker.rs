//! The worker SDK: a [`Worker`] leases jobs from named queues, runs each with
//! the [`Handler`] registered for its kind, heartbeats while it runs, and
//! reports the handler's [`Outcome`].
//!
//! ## How it runs
//! - Backpressure: a semaphore holds one permit per concurrency slot; a lease
//!   request asks for as many jobs as there are free permits (at least one),
//!   and long-polls so an idle worker costs one open request.
//! - Failures talking to the server are logged and retried with capped,
//!   jittered exponential backoff; they never end the run loop.
//! - Shutdown ([`Worker::run_until`]): stop leasing, let running jobs finish
//!   within the grace period, then abort the rest and release them (snooze
//!   with delay 0) so another worker picks them up without losing an attempt.
//!
//! `supervise` owns the life of one job; `handler` the types handlers use.

mod handler;
mod supervise;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use taskwheel_core::FieldError;
use taskwheel_core::wire::{
    DEFAULT_LEASE, DEFAULT_QUEUE, LeaseRequest, LeasedJob, MAX_LEASE_BATCH, MAX_LEASE_WAIT,
    MAX_NAME_LEN, validate_name,
};
use taskwheel_core::{DurationSpec, LeaseToken};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

pub use handler::{FnHandler, Handler, JobContext, Outcome, handler_fn};

use crate::client::{Client, ClientError};

pub const DEFAULT_CONCURRENCY: usize = 10;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(30);
/// An empty lease answer faster than this means the server is not long-polling
/// (or `poll_wait` is tiny); the loop then waits out the rest of it so it does
/// not spin.
const MIN_EMPTY_POLL: Duration = Duration::from_secs(1);
/// How long releasing unfinished jobs at shutdown may take in all.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a worker could not be built or had to stop.
///
/// Each message already includes its cause, so no variant exposes it again as
/// `source()` (reports that walk the chain would print it twice).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error("invalid worker setting {0}")]
    Config(FieldError),
    /// The server refused the lease request itself (a 400): retrying the same
    /// request cannot help, so the worker stops instead of looping.
    #[error("the server refused the lease request: {0}")]
    Rejected(ClientError),
    /// An executor could not build its HTTP client (the TLS backend failed to start).
    #[error("cannot set up an HTTP client: {}", crate::client::error_chain(.0))]
    HttpSetup(reqwest::Error),
}

impl From<FieldError> for WorkerError {
    fn from(e: FieldError) -> Self {
        WorkerError::Config(e)
    }
}

impl From<reqwest::Error> for WorkerError {
    fn from(e: reqwest::Error) -> Self {
        WorkerError::HttpSetup(e)
    }
}

/// What the run loop and every job supervisor share.
struct Shared {
    client: Client,
    worker_id: Arc<str>,
    heartbeat_interval: Duration,
    handlers: HashMap<String, Arc<dyn Handler>>,
}

/// Configures a [`Worker`]; start from [`Worker::builder`].
pub struct WorkerBuilder {
    client: Client,
    queues: Vec<String>,
    concurrency: usize,
    worker_id: Option<String>,
    lease: Duration,
    heartbeat_interval: Option<Duration>,
    shutdown_grace: Duration,
    poll_wait: Duration,
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl WorkerBuilder {
    /// The queues to lease from, replacing earlier ones. Default: `default`.
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Jobs run at once. Default 10.
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.concurrency = jobs;
        self
    }

    /// The name this worker leases under, shown on attempts. Default: `hostname-pid`.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// How long a lease lasts without a heartbeat. Default 30s.
    pub fn lease_duration(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often a running job is heartbeated. Default: a third of the lease.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = Some(interval);
        self
    }

    /// How long running jobs may take to finish after shutdown starts. Default 30s.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long one lease request long-polls when no job is available. Default 30s.
    pub fn poll_wait(mut self, wait: Duration) -> Self {
        self.poll_wait = wait;
        self
    }

    /// Runs jobs of `kind` with `handler`, replacing an earlier one for that kind.
    pub fn handler(mut self, kind: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
    }

    /// Runs jobs of `kind` with an async closure.
    pub fn handler_fn<F, Fut>(self, kind: impl Into<String>, f: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        self.handler(kind, handler_fn(f))
    }

    /// Checks the settings the server would refuse, so mistakes surface at start-up.
    pub fn build(self) -> Result<Worker, WorkerError> {
        if self.queues.is_empty() {
            return Err(FieldError::new("queues", "name at least one queue").into());
        }
        for (i, q) in self.queues.iter().enumerate() {
            validate_name(&format!("queues[{i}]"), q)?;
        }
        if self.concurrency == 0 {
            return Err(FieldError::new("concurrency", "must be at least 1").into());
        }
        let worker_id = self.worker_id.unwrap_or_else(default_worker_id);
        validate_name("worker_id", &worker_id)?;
        if self.lease < Duration::from_secs(1) {
            return Err(FieldError::new("lease_duration", "must be at least 1s").into());
        }
        let heartbeat_interval = self.heartbeat_interval.unwrap_or(self.lease / 3);
        if heartbeat_interval.is_zero() || heartbeat_interval >= self.lease {
            return Err(FieldError::new(
                "heartbeat_interval",
                "must be longer than zero and shorter than the lease duration",
            )
            .into());
        }
        if self.poll_wait > MAX_LEASE_WAIT {
            return Err(FieldError::new("poll_wait", "must be at most 5m").into());
        }
        for kind in self.handlers.keys() {
            validate_name("handler kind", kind)?;
        }
        Ok(Worker {
            shared: Arc::new(Shared {
                client: self.client,
                worker_id: worker_id.into(),
                heartbeat_interval,
                handlers: self.handlers,
            }),
            queues: self.queues,
            concurrency: self.concurrency,
            lease: self.lease,
            shutdown_grace: self.shutdown_grace,
            poll_wait: self.poll_wait,
        })
    }
}

/// A configured worker; consume it with [`Worker::run_until`] or [`Worker::run`].
pub struct Worker {
    shared: Arc<Shared>,
    queues: Vec<String>,
    concurrency: usize,
    lease: Duration,
    shutdown_grace: Duration,
    poll_wait: Duration,
}

impl Worker {
    pub fn builder(client: Client) -> WorkerBuilder {
        WorkerBuilder {
            client,
            queues: vec![DEFAULT_QUEUE.to_string()],
            concurrency: DEFAULT_CONCURRENCY,
            worker_id: None,
            lease: DEFAULT_LEASE,
            heartbeat_interval: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            poll_wait: DEFAULT_POLL_WAIT,
            handlers: HashMap::new(),
        }
    }

    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    /// The kinds this worker has handlers for, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.shared.handlers.keys().map(String::as_str).collect();
        kinds.sort_unstable();
        kinds
    }

    /// Runs until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run(self) -> Result<(), WorkerError> {
        self.run_until(shutdown_signal()).await
    }

    /// Leases and runs jobs until `shutdown` resolves, then stops leasing,
    /// waits up to the grace period for running jobs, and releases the rest.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        // Turned true when the grace period is over: every supervisor aborts
        // its handler and releases its job.
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut jobs = JoinSet::new();
        let mut backoff = Backoff::default();
        let mut shutdown = std::pin::pin!(shutdown);
        info!(
            worker = %self.shared.worker_id,
            queues = ?self.queues,
            concurrency = self.concurrency,
            kinds = ?self.kinds(),
            "worker started"
        );

        let result = loop {
            // Reap finished supervisors so the set does not grow over a long run.
            while jobs.try_join_next().is_some() {}
            let permits = tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                permits = free_slots(&slots) => permits,
            };
            let request = self.lease_request(permits.len());
            let asked_at = Instant::now();
            // Dropping an in-flight long poll at shutdown is deliberate: waiting
            // for it could take the whole poll. A job the server leased at that
            // very moment comes back when its lease expires.
            let answer = tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                answer = self.shared.client.lease(&request) => answer,
            };
            match answer {
                Ok(answer) => {
                    backoff.reset();
                    let leased = answer.jobs.len();
                    self.start_jobs(answer.jobs, permits, &mut jobs, &stop_rx);
                    let early = MIN_EMPTY_POLL.saturating_sub(asked_at.elapsed());
                    if leased == 0 && !early.is_zero() {
                        tokio::select! {
                            () = &mut shutdown => break Ok(()),
                            () = tokio::time::sleep(early) => {}
                        }
                    }
                }
                Err(e) if e.is_invalid_request() => break Err(WorkerError::Rejected(e)),
                Err(e) => {
                    let delay = backoff.next_delay();
                    warn!(error = %e, retry_in = ?delay, "lease request failed");
                    tokio::select! {
                        () = &mut shutdown => break Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        };

        info!(running = jobs.len(), "worker stopping: no new leases");
        drain(jobs, self.shutdown_grace, &stop_tx).await;
        info!("worker stopped");
        result
    }

    fn lease_request(&self, max: usize) -> LeaseRequest {
        LeaseRequest {
            queues: self.queues.clone(),
            max: u32::try_from(max).unwrap_or(MAX_LEASE_BATCH),
            wait: Some(DurationSpec(self.poll_wait)),
            worker: self.shared.worker_id.to_string(),
            lease: Some(DurationSpec(self.lease)),
        }
    }

    /// Starts one supervisor per leased job, each holding one permit until it ends.
    fn start_jobs(
        &self,
        leased: Vec<LeasedJob>,
        permits: Vec<OwnedSemaphorePermit>,
        jobs: &mut JoinSet<()>,
        stop: &watch::Receiver<bool>,
    ) {
        let mut permits = permits.into_iter();
        for job in leased {
            let shared = self.shared.clone();
            let stop = stop.clone();
            match permits.next() {
                Some(permit) => {
                    jobs.spawn(async move {
                        supervise::supervise(shared, job, stop).await;
                        drop(permit);
                    });
                }
                // The server sent more than `max`: hand the extra back at once
                // rather than run past the concurrency limit.
                None => {
                    warn!(id = %job.job.id, "server leased more jobs than asked for; releasing");
                    jobs.spawn(release(shared, job.job.id, job.lease_token));
                }
            }
        }
        // Unused permits drop here and free their slots.
    }
}

/// Waits for one free slot, then takes every other free one too (up to the
/// most one lease request may ask for).
async fn free_slots(slots: &Arc<Semaphore>) -> Vec<OwnedSemaphorePermit> {
    let Ok(first) = slots.clone().acquire_owned().await else {
        // The semaphore is never closed; if it were, there would be no slots to wait for.
        return std::future::pending().await;
    };
    let mut permits = vec![first];
    while permits.len() < MAX_LEASE_BATCH as usize {
        match slots.clone().try_acquire_owned() {
            Ok(permit) => permits.push(permit),
            Err(_) => break,
        }
    }
    permits
}

async fn release(shared: Arc<Shared>, id: taskwheel_core::JobId, lease_token: LeaseToken) {
    let request = taskwheel_core::wire::SnoozeRequest {
        lease_token,
        delay: DurationSpec(Duration::ZERO),
    };
    if let Err(e) = shared.client.snooze(id, &request).await {
        warn!(%id, error = %e, "could not release the job; it comes back when its lease expires");
    }
}

/// Waits up to `grace` for running jobs, then has the rest release their jobs.
async fn drain(mut jobs: JoinSet<()>, grace: Duration, stop: &watch::Sender<bool>) {
    if jobs.is_empty() {
        return;
    }
    info!(
        running = jobs.len(),
        ?grace,
        "waiting for running jobs to finish"
    );
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = jobs.join_next() => if next.is_none() { return },
            () = &mut deadline => break,
        }
    }
    warn!(
        running = jobs.len(),
        "grace period over; aborting and releasing the remaining jobs"
    );
    stop.send_replace(true);
    let released = tokio::time::timeout(RELEASE_TIMEOUT, async {
        while jobs.join_next().await.is_some() {}
    })
    .await;
    if released.is_err() {
        // Dropping the set aborts what is left; those leases simply expire.
        warn!(
            left = jobs.len(),
            "releasing took too long; leaving those leases to expire"
        );
    }
}

/// Capped exponential backoff with full jitter, for a server that is down.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let ceiling = BACKOFF_MIN
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        // Jitter in [ceiling/2, ceiling]: a fleet of workers restarted together
        // does not hammer the server in lockstep.
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// `hostname-pid`, reduced to the characters a worker name allows.
fn default_worker_id() -> String {
    let raw = format!("{}-{}", hostname(), std::process::id());
    let mut id: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.len() > MAX_NAME_LEN {
        // Keep the end: the pid tells two workers on one host apart.
        id = id[id.len() - MAX_NAME_LEN..].to_string();
    }
    id
}

fn hostname() -> String {
    #[cfg(unix)]
    {
        let name = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        if !name.is_empty() {
            return name;
        }
    }
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "worker".to_string())
}

/// Resolves on SIGTERM (how service managers and Kubernetes stop a process) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            // Without the handler Ctrl-C kills the process outright; other signals still work.
            warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("Ctrl-C received"),
        () = terminate => info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> WorkerBuilder {
        Worker::builder(Client::new("http://127.0.0.1:1").unwrap())
    }

    #[test]
    fn defaults_are_valid() {
        let w = builder()
            .handler_fn("k", |_| async { Outcome::complete() })
            .build()
            .unwrap();
        assert_eq!(w.queues(), ["default"]);
        assert_eq!(w.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(w.shared.heartbeat_interval, Duration::from_secs(10));
        assert_eq!(w.kinds(), ["k"]);
        assert!(validate_name("w", w.worker_id()).is_ok());
        assert!(w.worker_id().ends_with(&format!("-{}", std::process::id())));
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let cases: [(WorkerBuilder, &str); 7] = [
            (builder().queues(Vec::<String>::new()), "queues"),
            (builder().queues(["ok", "not ok"]), "queues[1]"),
            (builder().concurrency(0), "concurrency"),
            (builder().worker_id("a/b"), "worker_id"),
            (
                builder().lease_duration(Duration::from_millis(10)),
                "lease_duration",
            ),
            (
                builder().heartbeat_interval(Duration::from_secs(30)),
                "heartbeat_interval",
            ),
            (builder().poll_wait(Duration::from_secs(3600)), "poll_wait"),
        ];
        for (b, field) in cases {
            match b.build() {
                Err(WorkerError::Config(e)) => assert_eq!(e.field, field),
                Err(e) => panic!("{field}: unexpected {e}"),
                Ok(_) => panic!("{field}: accepted"),
            }
        }
    }

    #[test]
    fn lease_request_asks_for_free_slots() {
        let w = builder()
            .queues(["a", "b"])
            .worker_id("w1")
            .build()
            .unwrap();
        let r = w.lease_request(3);
        assert_eq!(r.max, 3);
        assert_eq!(r.queues, ["a", "b"]);
        assert_eq!(r.worker, "w1");
        assert!(r.validate().is_ok());
    }

    #[test]
    fn backoff_grows_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(
            first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN,
            "{first:?}"
        );
        for _ in 0..40 {
            assert!(b.next_delay() <= BACKOFF_MAX);
        }
        assert!(b.next_delay() >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN);
    }

    #[tokio::test]
    async fn free_slots_takes_every_free_permit() {
        let slots = Arc::new(Semaphore::new(4));
        let held = slots.clone().try_acquire_owned().unwrap();
        let permits = free_slots(&slots).await;
        assert_eq!(permits.len(), 3);
        drop(held);
        assert_eq!(slots.available_permits(), 1);
    }
}
