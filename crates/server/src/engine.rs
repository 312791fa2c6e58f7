//! The engine: every use case of the API, on top of a [`Store`]. It validates
//! requests, asks the store to make each change atomically, and then tells
//! the in-memory parts what changed: the dispatcher wakes long-polling
//! workers, the timer loop re-arms when something is due sooner.
//!
//! Memory holds only caches (waiters, the next timer instant); the store is
//! the truth, and everything here is rebuilt from it on start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use taskwheel_core::lifecycle::FailureCause;
use taskwheel_core::time::add;
use taskwheel_core::wire::{self, LeaseRequest, SubmitBatch, SubmitJob};
use taskwheel_core::workflow::{SubmitWorkflow, WorkflowId};
use taskwheel_core::{Clock, FieldError, Job, JobId, JobState, LeaseToken};
use taskwheel_store::{
    Completion, Heartbeat, JobFilter, LeaseParams, LeasedJob, Moved, NodeStatus, QueueRef,
    Released, ShardClaim, Store, StoreError, Submitted, WorkflowSubmitted,
};
use tokio::sync::{broadcast, watch};

use crate::cluster::{ClusterOptions, HeldShards};
use crate::dispatch::Dispatch;
use crate::lateness::{Lateness, LatenessSummary};
use crate::timers::TimerTarget;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// How long ended jobs are kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Settings of an engine; the defaults suit a single node.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The longest the timer loop sleeps without asking the store again. On
    /// one node every change re-arms it, so this is only a safety net; with
    /// several nodes, work created elsewhere (a schedule made on another node,
    /// a node that died) is seen within this bound.
    pub timer_ceiling: Duration,
    /// Set when the store is shared with other nodes.
    pub cluster: Option<ClusterOptions>,
    /// How long ended jobs (succeeded, failed, cancelled, skipped) are kept
    /// before the timer loop deletes them; `None` keeps them for ever.
    pub retention: Option<Duration>,
}

/// Retention deletes at most this many jobs per pass, and runs a pass at
/// most this often, so it never holds up due work.
const PURGE_BATCH: u32 = 1000;
const PURGE_EVERY: Duration = Duration::from_secs(10);

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            timer_ceiling: Duration::from_secs(60),
            cluster: None,
            retention: Some(DEFAULT_RETENTION),
        }
    }
}

pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) dispatch: Arc<Dispatch>,
    pub(crate) timers: TimerTarget,
    lateness: Lateness,
    pub(crate) options: EngineOptions,
    /// The scheduler shards this node holds; `None` until the first claim, and
    /// for ever on a single-node store.
    pub(crate) shards: Mutex<Option<HeldShards>>,
    /// When retention last ran (this engine's clock).
    last_purge: Mutex<Option<Timestamp>>,
    /// Flipped once at shutdown so long-polls return at once instead of holding it up.
    shutdown: watch::Sender<bool>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Arc<Self> {
        Self::with_options(store, clock, EngineOptions::default())
    }

    pub fn with_options(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        options: EngineOptions,
    ) -> Arc<Self> {
        Arc::new(Self {
            options,
            shards: Mutex::new(None),
            last_purge: Mutex::new(None),
            store,
            clock,
            dispatch: Arc::default(),
            timers: TimerTarget::default(),
            lateness: Lateness::default(),
            shutdown: watch::Sender::new(false),
        })
    }

    /// The current instant at the precision the stores keep (microseconds),
    /// so what an answer says is exactly what a later read returns.
    pub fn now(&self) -> Timestamp {
        taskwheel_core::time::from_micros(taskwheel_core::time::to_micros(self.clock.now()))
    }

    /// Ends pending long-polls and stops the timer loop.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Wakes local long-polls for jobs made available by other nodes (the
    /// store's cross-node notifications), until shutdown.
    pub async fn follow_remote_wakeups(self: Arc<Self>, mut remote: broadcast::Receiver<QueueRef>) {
        let mut shutdown = self.shutdown_signal();
        loop {
            tokio::select! {
                received = remote.recv() => match received {
                    Ok(q) => self.dispatch.wake(&q.tenant, &q.queue),
                    // Some notifications were dropped: wake everyone rather than miss one.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.dispatch.wake_all(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    pub async fn submit(&self, tenant: &str, request: SubmitJob) -> Result<Submitted> {
        let now = self.now();
        let job = request.validate(tenant, now)?;
        let submitted = self.store.submit(job, now).await?;
        self.announce_submitted(&submitted);
        Ok(submitted)
    }

    /// Submits many jobs in one store transaction: one answer per item, in
    /// order. `items` are the requests as read (an item that could not be
    /// read carries its error); every error names `jobs[i].field`. With
    /// `atomic`, the first invalid item is the answer and nothing is stored.
    pub async fn submit_batch(
        &self,
        tenant: &str,
        items: Vec<std::result::Result<SubmitJob, FieldError>>,
        atomic: bool,
    ) -> Result<Vec<Result<Submitted>>> {
        let now = self.now();
        let checked: Vec<_> = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                item.and_then(|request| request.validate(tenant, now))
                    .map_err(|e| SubmitBatch::item_error(i, e))
            })
            .collect();
        if atomic && let Some(Err(e)) = checked.iter().find(|c| c.is_err()) {
            return Err(e.clone().into());
        }
        let mut answers = Vec::with_capacity(checked.len());
        let mut valid = Vec::with_capacity(checked.len());
        for item in checked {
            match item {
                Ok(job) => {
                    valid.push(job);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e.into()))),
            }
        }
        let mut stored = self
            .store
            .submit_batch(valid, atomic, now)
            .await?
            .into_iter();
        let answers = answers
            .into_iter()
            .enumerate()
            .map(|(i, answer)| {
                answer.unwrap_or_else(|| {
                    let submitted = match stored.next() {
                        Some(Ok(submitted)) => submitted,
                        // Refused on what the database holds (an unknown parent).
                        Some(Err(StoreError::Invalid(e))) => {
                            return Err(SubmitBatch::item_error(i, e).into());
                        }
                        Some(Err(e)) => return Err(e.into()),
                        None => {
                            return Err(StoreError::Backend(
                                "the store answered too few items".into(),
                            )
                            .into());
                        }
                    };
                    self.announce_submitted(&submitted);
                    Ok(submitted)
                })
            })
            .collect();
        Ok(answers)
    }

    pub async fn get_job(&self, tenant: &str, id: JobId) -> Result<Job> {
        Ok(self.store.get_job(tenant, id).await?)
    }

    pub async fn list_jobs(&self, tenant: &str, query: wire::ListJobsQuery) -> Result<Vec<Job>> {
        let limit = query.limit.unwrap_or(wire::DEFAULT_LIST_LIMIT);
        if limit == 0 || limit > wire::MAX_LIST_LIMIT {
            return Err(
                FieldError::new("limit", format!("must be 1 to {}", wire::MAX_LIST_LIMIT)).into(),
            );
        }
        let before = query
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<JobId>()
                    .map_err(|_| FieldError::new("cursor", format!("`{c}` is not a cursor")))
            })
            .transpose()?;
        let filter = JobFilter {
            queue: query.queue,
            state: query.state,
            kind: query.kind,
            before,
            limit,
        };
        Ok(self.store.list_jobs(tenant, &filter).await?)
    }

    /// Leases jobs, long-polling up to `wait` when none are available. Jobs
    /// with parents come with their parents' outcomes and results.
    pub async fn lease(&self, tenant: &str, request: LeaseRequest) -> Result<Vec<LeasedJob>> {
        request.validate()?;
        let wait = request.wait.map(|w| w.0).unwrap_or(Duration::ZERO);
        let give_up = tokio::time::Instant::now() + wait;
        let params = LeaseParams {
            tenant: tenant.to_string(),
            queues: request.queues,
            max: request.max,
            worker: request.worker,
            lease: request.lease.map(|l| l.0).unwrap_or(wire::DEFAULT_LEASE),
        };
        let mut shutdown = self.shutdown_signal();
        loop {
            // Register before looking, so a job that arrives in between still wakes us.
            let registration = self.dispatch.register(tenant, &params.queues);
            let leased = self
                .store
                .lease_detailed(params.clone(), self.now())
                .await?;
            // A rate-limited queue ran dry: the timer pass at its next token wakes its waiters.
            if let Some(refill) = leased.refill_at {
                self.timers.arm(refill);
            }
            let leased = leased.jobs;
            if let Some(first) = leased.iter().map(|l| l.expires_at).min() {
                self.timers.arm(first);
            }
            if !leased.is_empty() || wait.is_zero() || *shutdown.borrow() {
                return Ok(leased);
            }
            tokio::select! {
                _ = registration.woken() => {}
                _ = tokio::time::sleep_until(give_up) => return Ok(Vec::new()),
                _ = shutdown.changed() => return Ok(Vec::new()),
            }
        }
    }

    /// Extends a lease and stores the progress the worker reports with it.
    pub async fn heartbeat(
        &self,
        tenant: &str,
        id: JobId,
        request: wire::HeartbeatRequest,
    ) -> Result<Heartbeat> {
        request.validate()?;
        let now = self.now();
        let progress = request.progress.map(|p| p.at(now));
        Ok(self
            .store
            .heartbeat(tenant, id, request.lease_token, progress, now)
            .await?)
    }

    pub async fn complete(
        &self,
        tenant: &str,
        items: Vec<Completion>,
    ) -> Result<Vec<Result<Moved, StoreError>>> {
        let outcomes = self.store.complete(tenant, items, self.now()).await?;
        for moved in outcomes.iter().flatten() {
            self.announce_moved(tenant, moved);
        }
        Ok(outcomes)
    }

    pub async fn fail(
        &self,
        tenant: &str,
        id: JobId,
        token: LeaseToken,
        request: wire::FailRequest,
    ) -> Result<Moved> {
        let cause = if request.cancel {
            FailureCause::CancelledByWorker
        } else {
            FailureCause::Error {
                retry: request.retry,
                retry_after: request.retry_after.map(|d| d.0),
            }
        };
        let moved = self
            .store
            .fail(tenant, id, token, request.error, cause, self.now())
            .await?;
        self.announce_moved(tenant, &moved);
        Ok(moved)
    }

    pub async fn snooze(
        &self,
        tenant: &str,
        id: JobId,
        token: LeaseToken,
        delay: Duration,
    ) -> Result<Moved> {
        let moved = self
            .store
            .snooze(tenant, id, token, delay, self.now())
            .await?;
        self.announce_moved(tenant, &moved);
        Ok(moved)
    }

    pub async fn cancel(&self, tenant: &str, id: JobId) -> Result<Job> {
        let (job, released) = self.store.cancel(tenant, id, self.now()).await?;
        self.announce_released(&released);
        Ok(job)
    }

    /// Checks and stores a workflow (or finds it by its idempotency key).
    pub async fn submit_workflow(
        &self,
        tenant: &str,
        request: SubmitWorkflow,
    ) -> Result<WorkflowSubmitted> {
        let now = self.now();
        let workflow = request.validate(tenant, now)?;
        let submitted = self.store.submit_workflow(workflow, now).await?;
        if !submitted.deduplicated {
            for job in &submitted.jobs {
                self.announce(&job.tenant, &job.queue, job.state, job.run_at);
            }
        }
        Ok(submitted)
    }

    pub async fn get_workflow(&self, tenant: &str, id: WorkflowId) -> Result<WorkflowSubmitted> {
        Ok(self.store.get_workflow(tenant, id).await?)
    }

    /// Cancels what has not ended yet; running jobs learn it at their next heartbeat.
    pub async fn cancel_workflow(&self, tenant: &str, id: WorkflowId) -> Result<WorkflowSubmitted> {
        let (workflow, released) = self.store.cancel_workflow(tenant, id, self.now()).await?;
        self.announce_released(&released);
        Ok(workflow)
    }

    pub async fn rerun(&self, tenant: &str, id: JobId) -> Result<Job> {
        let job = self.store.rerun(tenant, id, self.now()).await?;
        self.announce(&job.tenant, &job.queue, job.state, job.run_at);
        Ok(job)
    }

    /// Fires due schedules, promotes due jobs and reaps expired leases once,
    /// waking the queues that gained work; returns when the next pass is due.
    /// The timer loop calls this; tests call it after moving a manual clock.
    pub async fn tick(&self) -> Result<Option<Timestamp>> {
        let shards = self.current_shards();
        let (woken, next) = self
            .store
            .timer_pass(Arc::clone(&self.clock), shards.as_ref())
            .await?;
        self.lateness.record(&woken.due, self.now());
        for q in woken.queues {
            self.dispatch.wake(&q.tenant, &q.queue);
        }
        self.purge_if_due(shards.as_ref()).await?;
        Ok(next)
    }

    /// Retention: every [`PURGE_EVERY`] of this clock, deletes up to
    /// [`PURGE_BATCH`] jobs that ended longer than `retention` ago (of this
    /// node's shards). A backlog drains a batch per pass.
    async fn purge_if_due(&self, shards: Option<&ShardClaim>) -> Result<()> {
        let Some(retention) = self.options.retention else {
            return Ok(());
        };
        let now = self.now();
        {
            let mut last = self.last_purge.lock().expect("purge lock");
            if last.is_some_and(|at| now < add(at, PURGE_EVERY)) {
                return Ok(());
            }
            *last = Some(now);
        }
        let before = taskwheel_core::time::sub(now, retention);
        let purged = self
            .store
            .purge_finished(before, PURGE_BATCH, shards)
            .await?;
        if purged > 0 {
            tracing::debug!(purged, "deleted ended jobs past retention");
        }
        Ok(())
    }

    /// The shards the timer pass may work on: `None` (all) on a single node;
    /// in a cluster, nothing until the first claim and nothing once it is stale.
    fn current_shards(&self) -> Option<ShardClaim> {
        let cluster = self.options.cluster.as_ref()?;
        let held = self.shards.lock().expect("shards lock");
        Some(match held.as_ref() {
            Some(held) => held.current(cluster.shard_ttl),
            None => ShardClaim {
                node: cluster.node.id.clone(),
                ..ShardClaim::default()
            },
        })
    }

    /// The nodes sharing this store and their shards; just this node on a single-node store.
    pub async fn cluster(&self) -> Result<Vec<NodeStatus>> {
        Ok(self.store.cluster().await?)
    }

    /// How late due work has been made available since the server started.
    pub fn lateness(&self) -> LatenessSummary {
        self.lateness.summary()
    }

    /// Tells waiters or the timer loop about a job now in `state`, due at `run_at`.
    fn announce(&self, tenant: &str, queue: &str, state: JobState, run_at: Timestamp) {
        match state {
            JobState::Available => self.dispatch.wake(tenant, queue),
            JobState::Scheduled => self.timers.arm(run_at),
            _ => {}
        }
    }

    /// A stored or replaced job (not one found under its key) may be due now or later.
    fn announce_submitted(&self, submitted: &Submitted) {
        let unchanged = submitted.deduplicated
            || submitted.unique == Some(taskwheel_core::unique::UniqueOutcome::Deduplicated);
        if !unchanged {
            let job = &submitted.job;
            self.announce(&job.tenant, &job.queue, job.state, job.run_at);
        }
    }

    fn announce_moved(&self, tenant: &str, moved: &Moved) {
        // A limited queue's slot is free: its waiters may get a job now.
        if moved.freed {
            self.dispatch.wake(tenant, &moved.queue);
        }
        if let Some(run_at) = moved.run_at {
            self.announce(tenant, &moved.queue, moved.state, run_at);
        }
        self.announce_released(&moved.released);
    }

    /// Jobs whose parents just ended: wake their queues, arm their timers.
    fn announce_released(&self, released: &[Released]) {
        for r in released {
            self.announce(&r.tenant, &r.queue, r.state, r.run_at);
        }
    }
}
