//! # taskwheel-store
//!
//! The [`Store`] trait: every durable operation on jobs, each one atomic, each
//! taking the current instant as an argument (`now`) so callers and tests
//! control time. The engines behind it:
//!
//! - [`sqlite`]: the embedded default. One writer thread owns the write
//!   connection and groups concurrent operations into one transaction and one
//!   fsync; a small pool of read connections serves lookups (WAL mode).
//! - [`postgres`]: for several nodes sharing one PostgreSQL database. Every
//!   operation is one transaction on a connection pool (concurrent submits,
//!   heartbeats and worker reports share one); dequeue is
//!   `FOR UPDATE SKIP LOCKED`, and `LISTEN/NOTIFY` tells other nodes when jobs
//!   become available.
//!
//! Jobs may depend on other jobs: a child is `blocked` until its parents
//! end, and the transaction that ends a parent also releases (or skips) its
//! children, following `taskwheel_core::workflow::readiness`.
//!
//! [`conformance`] is the behaviour every engine must show; each engine's
//! tests run it.
//!
//! Architecture invariant: this is the only crate that contains SQL, and the
//! store never decides a state transition itself: it loads the job, asks
//! `taskwheel_core::lifecycle`, and writes the verdict in the same transaction.

pub mod conformance;
mod error;
pub mod postgres;
pub mod sqlite;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::Value;
use taskwheel_core::firing::ScheduleId;
use taskwheel_core::lifecycle::FailureCause;
use taskwheel_core::queue::{QueuePatch, QueueSettings, QueueStats};
use taskwheel_core::recurring::ScheduleRecord;
use taskwheel_core::unique::UniqueOutcome;
use taskwheel_core::workflow::{NewWorkflow, ParentResult, WorkflowId, WorkflowRecord};
use taskwheel_core::{Clock, Job, JobId, JobState, LeaseToken, NewJob, Progress};

pub use error::StoreError;
pub use postgres::{PgConfig, PgStore};
pub use sqlite::SqliteStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The outcome of a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub job: Job,
    /// True when a job with the same idempotency key already existed and is returned instead.
    pub deduplicated: bool,
    /// For a job submitted with `unique` (and not deduplicated by its
    /// idempotency key): whether it is new, the existing holder of its key,
    /// or the existing pending holder overwritten by this submission.
    pub unique: Option<UniqueOutcome>,
}

/// The condition under which a job holds its unique key: its state is in
/// its own `unique_states` (the bits of `taskwheel_core::unique::StateSet`).
/// Both engines' `jobs_unique` index has exactly this predicate; queries
/// repeat it verbatim so the index serves them.
pub(crate) const HOLDS_UNIQUE_KEY: &str = "unique_key IS NOT NULL AND (unique_states & CASE state WHEN 'scheduled' THEN 1 \
     WHEN 'available' THEN 2 WHEN 'running' THEN 4 WHEN 'succeeded' THEN 8 \
     WHEN 'failed' THEN 16 WHEN 'cancelled' THEN 32 WHEN 'blocked' THEN 64 \
     WHEN 'skipped' THEN 128 ELSE 0 END) <> 0";

/// Why a finished job with a unique key cannot run again (rerun).
pub(crate) const UNIQUE_TAKEN: &str =
    "another job with the same unique key holds it now (pending or running); cancel that job first";

/// What a worker asks for when it leases.
#[derive(Debug, Clone)]
pub struct LeaseParams {
    pub tenant: String,
    pub queues: Vec<String>,
    pub max: u32,
    pub worker: String,
    pub lease: Duration,
}

/// A job handed to a worker, with the token that proves its lease.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedJob {
    pub job: Job,
    pub token: LeaseToken,
    pub expires_at: Timestamp,
    /// For a job with parents: how each ended and its result, in
    /// `depends_on` order (read in the lease's own transaction).
    pub parents: Vec<ParentResult>,
}

/// A lease's jobs, and when a rate-limited queue it found dry gets its next
/// token (the caller arms a timer for it, so waiting workers are woken then).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Leased {
    pub jobs: Vec<LeasedJob>,
    pub refill_at: Option<Timestamp>,
}

/// A heartbeat's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub expires_at: Timestamp,
    pub cancel_requested: bool,
}

/// One completion in a batch.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: JobId,
    pub token: LeaseToken,
    pub result: Option<Value>,
}

/// Where a job went after `complete`, `fail` or `snooze`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub state: JobState,
    /// The job's due time when it was put back (`scheduled` or `available`).
    pub run_at: Option<Timestamp>,
    /// The job's queue, so the caller can wake its waiters.
    pub queue: String,
    /// Dependent jobs this job's end moved out of `blocked`.
    pub released: Vec<Released>,
    /// The job left `running` in a queue with a concurrency or per-key
    /// limit: a worker waiting on that queue may get a job now.
    pub freed: bool,
}

/// A job that left `blocked` because its parents ended (in the same
/// transaction): now `available`, `scheduled` or `skipped`. The caller wakes
/// its queue or arms its timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub id: JobId,
    pub tenant: String,
    pub queue: String,
    pub state: JobState,
    pub run_at: Timestamp,
}

/// What [`Store::submit_workflow`] stored, or found under the same idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowSubmitted {
    pub workflow: WorkflowRecord,
    /// Parents before children.
    pub jobs: Vec<Job>,
    pub deduplicated: bool,
}

/// Filters for [`Store::list_jobs`]; newest first, `before` is the paging cursor.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub queue: Option<String>,
    pub state: Option<JobState>,
    pub kind: Option<String>,
    pub before: Option<JobId>,
    pub limit: u32,
}

/// What a timer pass did: queues that gained available jobs (to wake their
/// waiters), and the due instants of the jobs it made available (to measure lateness).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Woken {
    pub queues: BTreeSet<QueueRef>,
    pub due: Vec<Timestamp>,
}

impl Woken {
    pub fn merge(&mut self, other: Woken) {
        self.queues.extend(other.queues);
        self.due.extend(other.due);
    }

    /// Adds the queues of released jobs that became available.
    pub fn add_released(&mut self, released: &[Released]) {
        for r in released.iter().filter(|r| r.state == JobState::Available) {
            self.queues.insert(QueueRef {
                tenant: r.tenant.clone(),
                queue: r.queue.clone(),
            });
        }
    }
}

/// A node of a cluster, as it introduces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Unique for the life of the process.
    pub id: String,
    /// Where its API listens, for operators.
    pub address: String,
}

/// The scheduler shards a node holds. Timer work (firing schedules, promoting
/// due jobs, reaping leases) is split by a hash of the object's id into
/// `shard_count` shards; each is leased to one node at a time, and every
/// takeover bumps the shard's epoch, so a node that lost a shard cannot act
/// on it with its old claim (fencing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardClaim {
    pub node: String,
    pub shard_count: u32,
    /// `(shard, epoch)` for each shard held.
    pub owned: Vec<(u32, i64)>,
}

/// A node as `GET /api/v1/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: String,
    pub address: String,
    pub started_at: Timestamp,
    pub last_seen: Timestamp,
    pub shards: Vec<u32>,
}

/// Which schedule a request names: its id, or its name (unique per tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleKey {
    Id(ScheduleId),
    Name(String),
}

/// A queue in which jobs just became available, so its waiting workers can be woken.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueRef {
    pub tenant: String,
    pub queue: String,
}

/// Durable job storage. Every method is one atomic step: it either happens
/// whole or not at all, and a crash between two calls leaves valid state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new job, or returns the existing one with the same idempotency key.
    /// A job with parents (`depends_on`, all in the same tenant, else
    /// [`StoreError::Invalid`]) starts `blocked`, or `skipped`, or runnable,
    /// from how its parents stand right now.
    ///
    /// A submission with `unique` returns the existing holder of its unique
    /// key, or overwrites it, by its `on_conflict`
    /// policy (`taskwheel_core::unique::on_conflict`): at most one job ever
    /// holds a key, however many nodes submit at once.
    async fn submit(&self, job: NewJob, now: Timestamp) -> Result<Submitted>;

    /// Stores a whole workflow in one transaction (its jobs come parents
    /// first), or returns the one stored earlier under its idempotency key.
    async fn submit_workflow(
        &self,
        workflow: NewWorkflow,
        now: Timestamp,
    ) -> Result<WorkflowSubmitted>;

    /// A workflow and its jobs (without attempts), parents before children.
    async fn get_workflow(&self, tenant: &str, id: WorkflowId) -> Result<WorkflowSubmitted>;

    /// Cancels every job of the workflow that has not ended: pending ones at
    /// once, running ones through their heartbeat. Answers the workflow after,
    /// and the jobs outside it that this released.
    async fn cancel_workflow(
        &self,
        tenant: &str,
        id: WorkflowId,
        now: Timestamp,
    ) -> Result<(WorkflowSubmitted, Vec<Released>)>;

    /// Stores many jobs in one transaction: one result per item, in order,
    /// each as [`Store::submit`] would answer it (an idempotency key already
    /// stored, or used by an earlier item of the batch, answers that job,
    /// deduplicated). With `atomic`, the first failing item fails the whole
    /// call with its error and nothing is stored.
    async fn submit_batch(
        &self,
        jobs: Vec<NewJob>,
        atomic: bool,
        now: Timestamp,
    ) -> Result<Vec<Result<Submitted>>>;

    /// A job with its finished attempts.
    async fn get_job(&self, tenant: &str, id: JobId) -> Result<Job>;

    async fn list_jobs(&self, tenant: &str, filter: &JobFilter) -> Result<Vec<Job>>;

    /// Leases up to `max` available jobs: highest priority first, then
    /// earliest due, then oldest. Jobs with parents come with their parents' results.
    ///
    /// Queues with flow-control settings (see [`Store::update_queue`]) are
    /// leased under them, atomically: nothing from a paused queue, no more
    /// running jobs than `concurrency` and (per concurrency key)
    /// `key_concurrency`, no more starts than the rate's token bucket holds;
    /// within such a queue, jobs of equal priority are taken round-robin
    /// across concurrency keys. Unlimited queues are leased first, then
    /// limited ones with what `max` leaves.
    async fn lease(&self, params: LeaseParams, now: Timestamp) -> Result<Vec<LeasedJob>> {
        Ok(self.lease_detailed(params, now).await?.jobs)
    }

    /// [`Store::lease`], also saying when the next rate token of a queue it
    /// found dry comes in.
    async fn lease_detailed(&self, params: LeaseParams, now: Timestamp) -> Result<Leased>;

    /// Extends the lease; `progress`, when given, replaces the job's stored progress.
    async fn heartbeat(
        &self,
        tenant: &str,
        id: JobId,
        token: LeaseToken,
        progress: Option<Progress>,
        now: Timestamp,
    ) -> Result<Heartbeat>;

    /// Completes many leased jobs in one transaction; one result per item, in order.
    async fn complete(
        &self,
        tenant: &str,
        items: Vec<Completion>,
        now: Timestamp,
    ) -> Result<Vec<Result<Moved>>>;

    async fn fail(
        &self,
        tenant: &str,
        id: JobId,
        token: LeaseToken,
        error: String,
        cause: FailureCause,
        now: Timestamp,
    ) -> Result<Moved>;

    /// Puts a running job back, due after `delay`, without counting the attempt.
    async fn snooze(
        &self,
        tenant: &str,
        id: JobId,
        token: LeaseToken,
        delay: Duration,
        now: Timestamp,
    ) -> Result<Moved>;

    /// Cancels a pending job, or flags a running one for its worker to see.
    /// Answers the job and the dependent jobs its end released.
    async fn cancel(&self, tenant: &str, id: JobId, now: Timestamp)
    -> Result<(Job, Vec<Released>)>;

    /// Makes a failed or cancelled job available again with a fresh attempt budget.
    async fn rerun(&self, tenant: &str, id: JobId, now: Timestamp) -> Result<Job>;

    /// Moves every scheduled job due at or before `now` to available.
    async fn promote_due(&self, now: Timestamp) -> Result<Woken>;

    /// Ends every running attempt whose lease ran out at or before `now` (timeouts included)
    /// and applies the retry policy.
    async fn reap_expired(&self, now: Timestamp) -> Result<Woken>;

    /// Fires every unpaused schedule whose next tick is at or before `now`,
    /// following its misfire and overlap policies: one transaction creates the
    /// jobs and advances the schedule, and the unique (schedule, tick) key
    /// makes a second job for the same tick impossible.
    async fn fire_schedules(&self, now: Timestamp) -> Result<Woken>;

    /// The earliest instant at which promotion, reaping or firing has work.
    async fn next_timer(&self) -> Result<Option<Timestamp>>;

    /// One whole timer pass: fire due schedules, promote due jobs, reap
    /// expired leases, and say when the next pass is due. Engines should do
    /// it in one round trip, reading `clock` when the pass actually starts
    /// (not when it was queued): the pass is on the path of every due job, so
    /// its latency is the scheduler's lateness.
    ///
    /// `shards` limits the pass to the scheduler shards this node holds
    /// (several nodes on one database); engines check the claim inside the
    /// pass's transaction and do nothing for a shard whose lease was lost.
    /// `None`: this node does all the work (single-node engines ignore it).
    async fn timer_pass(
        &self,
        clock: Arc<dyn Clock>,
        shards: Option<&ShardClaim>,
    ) -> Result<(Woken, Option<Timestamp>)> {
        let _ = shards;
        let now = clock.now();
        let mut woken = self.fire_schedules(now).await?;
        woken.merge(self.promote_due(now).await?);
        woken.merge(self.reap_expired(now).await?);
        Ok((woken, self.next_timer().await?))
    }

    /// Retention: deletes up to `limit` jobs that ended (succeeded, failed,
    /// cancelled, skipped) before `before`, with their attempts and
    /// dependency edges, oldest first; answers how many. `shards` limits it
    /// to this node's scheduler shards, as for [`Store::timer_pass`].
    async fn purge_finished(
        &self,
        before: Timestamp,
        limit: u32,
        shards: Option<&ShardClaim>,
    ) -> Result<u64>;

    /// Registers or refreshes `node` and claims its fair share of the
    /// scheduler shards for `ttl`, judged by the database's clock. Answers the
    /// shards the node holds now, each with its fencing epoch; `None` means
    /// the engine serves a single node, which does all the timer work.
    async fn claim_shards(&self, node: &NodeInfo, ttl: Duration) -> Result<Option<ShardClaim>> {
        let _ = (node, ttl);
        Ok(None)
    }

    /// Gives up a node's shards at once (at shutdown), so others need not wait for expiry.
    async fn release_shards(&self, node: &str) -> Result<()> {
        let _ = node;
        Ok(())
    }

    /// The nodes seen recently and the shards each holds; empty for single-node engines.
    async fn cluster(&self) -> Result<Vec<NodeStatus>> {
        Ok(Vec::new())
    }

    /// The database's clock, for engines whose nodes must agree on time; `None` otherwise.
    async fn database_now(&self) -> Result<Option<Timestamp>> {
        Ok(None)
    }

    /// A queue's flow-control settings; the default (running, no limits) when none are stored.
    async fn queue_settings(&self, tenant: &str, queue: &str) -> Result<QueueSettings>;

    /// Lays `patch` over a queue's settings in one transaction and answers
    /// the result. A changed rate starts with a full token bucket. The
    /// caller has validated the patch (`QueuePatch::apply_to`).
    async fn update_queue(
        &self,
        tenant: &str,
        queue: &str,
        patch: QueuePatch,
        now: Timestamp,
    ) -> Result<QueueSettings>;

    /// Depth per state, oldest available job, jobs finished in the minute
    /// before `now`, and settings: of `queue`, or of every queue that has
    /// jobs or settings (by name).
    async fn queue_stats(
        &self,
        tenant: &str,
        queue: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<QueueStats>>;

    /// Stores a new schedule; a taken name answers [`StoreError::Conflict`].
    async fn create_schedule(&self, schedule: ScheduleRecord) -> Result<ScheduleRecord>;

    async fn get_schedule(&self, tenant: &str, key: &ScheduleKey) -> Result<ScheduleRecord>;

    /// All schedules of a tenant, by name.
    async fn list_schedules(&self, tenant: &str) -> Result<Vec<ScheduleRecord>>;

    /// Replaces a schedule's definition, paused flag and next tick.
    async fn update_schedule(&self, schedule: ScheduleRecord) -> Result<ScheduleRecord>;

    /// Deletes a schedule; the jobs it created stay.
    async fn delete_schedule(&self, tenant: &str, id: ScheduleId) -> Result<()>;

    /// Creates one job for the schedule now (tick = `now`), outside its timing.
    async fn trigger_schedule(&self, tenant: &str, id: ScheduleId, now: Timestamp) -> Result<Job>;
}
