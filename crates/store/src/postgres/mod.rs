//! The PostgreSQL engine, for several taskwheel nodes sharing one database.
//!
//! # Layout
//! - `schema`: tables, indexes and embedded migrations, applied by
//!   [`PgStore::connect`] under an advisory lock so nodes starting together
//!   migrate once.
//! - `workflows`: job dependencies (release of blocked children) and workflows.
//! - `jobs`, `schedules`: the SQL of each operation, as functions over a
//!   `tx::Tx`; transitions are decided by `taskwheel_core::lifecycle`.
//! - `group`: group commit of concurrent submits, heartbeats and reports.
//! - `tx`: one operation's transaction; it notifies other nodes of newly
//!   available jobs as part of its commit.
//! - `listen`: the receiving side of those notifications
//!   ([`PgStore::listen`]), on the channel [`CHANNEL`].
//! - `rows`: row mapping, and `timestamptz` for `jiff::Timestamp`.
//! - `cluster`: node membership and the scheduler shard leases that split
//!   timer work between nodes (with fencing epochs).
//!
//! # Concurrency
//! Every [`Store`] operation is one transaction at READ COMMITTED on a pooled
//! connection (reads are one statement), except that concurrent submits,
//! heartbeats and worker reports share one (`group`: group commit, each
//! still judged and answered on its own). Nodes coordinate only through row
//! locks and unique indexes, never through memory:
//! - dequeue, promotion, reaping and schedule firing take their rows
//!   `FOR UPDATE SKIP LOCKED`, so nodes split the work instead of waiting, and
//!   a row is never claimed twice;
//! - a transition of one job locks its row `FOR UPDATE`, so a concurrent
//!   transition is judged on the committed state (the lease token fences a
//!   stale worker);
//! - idempotent submission and schedule ticks insert `ON CONFLICT DO NOTHING`
//!   on the unique (tenant, idempotency_key) and (schedule_id, fire_time)
//!   indexes: the database, not the code path, guarantees one job per key or
//!   tick.
//!
//! A deadlock or a connection that broke before COMMIT rolls the transaction
//! back; it is run again from the start (see `error.rs`).

mod cluster;
mod error;
mod jobs;
mod listen;
mod queues;
mod rows;
mod schedules;
mod schema;
mod tx;
mod workflows;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx_postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use taskwheel_core::firing::ScheduleId;
use taskwheel_core::lifecycle::FailureCause;
use taskwheel_core::queue::{QueuePatch, QueueSettings, QueueStats};
use taskwheel_core::recurring::ScheduleRecord;
use taskwheel_core::workflow::{NewWorkflow, WorkflowId};
use taskwheel_core::{Clock, Job, JobId, LeaseToken, NewJob, Progress};
use tokio::sync::{Mutex, broadcast};

use crate::{
    Completion, Heartbeat, JobFilter, LeaseParams, Leased, Moved, NodeInfo, NodeStatus, QueueRef,
    Released, Result, ScheduleKey, ShardClaim, Store, StoreError, Submitted, Woken,
    WorkflowSubmitted,
};
use error::{Fault, Res};
use tx::Tx;

pub use listen::CHANNEL;
pub use schema::SCHEMA_VERSION;

/// How many times a transaction runs when it keeps losing deadlocks.
const MAX_CONFLICT_TRIES: u32 = 3;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database`, with libpq-style
    /// parameters (`sslmode`, ...).
    pub url: String,
    /// The schema that holds taskwheel's tables, created if missing; `None`
    /// uses the role's `search_path` (usually `public`). A plain identifier:
    /// lowercase letters, digits and `_`.
    pub schema: Option<String>,
    /// The pool's size: the most operations in flight at once on this node.
    pub max_connections: u32,
    /// How long an operation waits for a free connection before it answers
    /// [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// Shown in `pg_stat_activity`; the listener's connection adds `-listener`.
    pub application_name: String,
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            application_name: "taskwheel".into(),
        }
    }

    fn validate(&self) -> Result<()> {
        if let Some(schema) = &self.schema {
            let plain = !schema.is_empty()
                && schema.len() <= 63
                && !schema.starts_with(|c: char| c.is_ascii_digit())
                && schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !plain {
                return Err(StoreError::Backend(format!(
                    "invalid PostgreSQL schema name `{schema}`: use lowercase letters, digits and `_`"
                )));
            }
        }
        if self.max_connections == 0 {
            return Err(StoreError::Backend(
                "the PostgreSQL pool needs at least one connection".into(),
            ));
        }
        Ok(())
    }
}

/// The PostgreSQL engine. Cheap to share behind an `Arc`; every node of a
/// cluster opens its own on the same database.
pub struct PgStore {
    pool: PgPool,
    /// Connection options of the listener's dedicated connection.
    listener_options: PgConnectOptions,
    /// Started by the first [`PgStore::listen`]; a tokio Mutex because
    /// starting it awaits the `LISTEN`.
    listener: Mutex<Option<listen::Listener>>,
    max_connections: u32,
    /// Where submits, heartbeats and worker reports go to share transactions.
    groups: group::Groups,
}

/// Runs `$body`, an expression yielding a future that uses `$tx: &mut Tx`,
/// in a fresh transaction, and commits it. A deadlock or a connection lost
/// before COMMIT rolls everything back, so the whole body runs again (a
/// macro, not a closure, so the body can borrow the caller's arguments on
/// every run).
macro_rules! transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        // A `PgStore` or a `group::Db`: anything with `pool` and `max_connections`.
        let store = $store;
        let (mut conflicts, mut disconnects) = (0u32, 0u32);
        loop {
            let outcome = async {
                let mut tx = Tx::begin(&store.pool).await?;
                let value = {
                    let $tx = &mut tx;
                    $body.await
                };
                match value {
                    Ok(value) => {
                        tx.commit().await?;
                        Res::Ok(value)
                    }
                    Err(fault) => {
                        tx.rollback().await;
                        Err(fault)
                    }
                }
            }
            .await;
            match outcome {
                Ok(value) => break Ok(value),
                Err(Fault::Transient(message)) if conflicts + 1 < MAX_CONFLICT_TRIES => {
                    conflicts += 1;
                    tracing::debug!(%message, "transaction lost a conflict; running it again");
                }
                Err(Fault::Disconnected(message)) if disconnects < store.max_connections => {
                    disconnects += 1;
                    tracing::debug!(%message, "connection lost before commit; running it again");
                }
                Err(fault) => break Err(StoreError::from(fault)),
            }
        }
    }};
}

mod group;

/// Runs a read (`$body` uses `$db: &PgPool`), again on another connection if
/// the first one turns out to be dead.
macro_rules! read {
    ($store:expr, |$db:ident| $body:expr) => {{
        let store: &PgStore = $store;
        let mut disconnects = 0u32;
        loop {
            let $db = &store.pool;
            match $body.await {
                Ok(value) => break Ok(value),
                Err(Fault::Disconnected(message)) if disconnects < store.max_connections => {
                    disconnects += 1;
                    tracing::debug!(%message, "connection lost; reading again");
                }
                Err(fault) => break Err(StoreError::from(fault)),
            }
        }
    }};
}

impl PgStore {
    /// Connects with the defaults of [`PgConfig::new`] and migrates.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(PgConfig::new(url)).await
    }

    /// Connects, creates the schema if named and missing, and migrates it.
    pub async fn connect_with(config: PgConfig) -> Result<Self> {
        config.validate()?;
        let mut options: PgConnectOptions = config
            .url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        if let Some(schema) = &config.schema {
            // Set at connection startup: no extra round trip, and every
            // connection the pool ever opens gets it.
            options = options.options([("search_path", schema)]);
        }
        let listener_options = options
            .clone()
            .application_name(&format!("{}-listener", config.application_name));
        let options = options.application_name(&config.application_name);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            // A ping per acquire would add a round trip to every operation;
            // a dead connection instead fails at BEGIN and the operation
            // runs again on another (`transaction!`).
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        schema::migrate(&pool, config.schema.as_deref()).await?;
        let groups = group::Groups::start(group::Db {
            pool: pool.clone(),
            max_connections: config.max_connections,
        });
        Ok(Self {
            groups,
            pool,
            listener_options,
            listener: Mutex::new(None),
            max_connections: config.max_connections,
        })
    }

    /// A receiver of the queues in which jobs just became available, on any
    /// node of the cluster (this one included), from `LISTEN` on [`CHANNEL`].
    ///
    /// The first call opens the listener's own connection and returns once
    /// `LISTEN` is in effect; later calls share it. The listener reconnects
    /// by itself and then announces every queue that has available jobs, to
    /// make up for notifications lost meanwhile. On
    /// `broadcast::error::RecvError::Lagged`, wake every waiter.
    pub async fn listen(&self) -> Result<broadcast::Receiver<QueueRef>> {
        let mut listener = self.listener.lock().await;
        if let Some(running) = listener.as_ref() {
            return Ok(running.subscribe());
        }
        let (running, receiver) =
            listen::Listener::start(self.listener_options.clone(), self.pool.clone()).await?;
        *listener = Some(running);
        Ok(receiver)
    }

    /// Closes every connection, waiting for operations in flight; later
    /// operations answer [`StoreError::Closed`].
    pub async fn close(&self) {
        self.listener.lock().await.take();
        self.pool.close().await;
    }
}

async fn timer_pass(
    tx: &mut Tx,
    clock: &dyn Clock,
    claim: Option<&ShardClaim>,
) -> Res<(Woken, Option<Timestamp>)> {
    let Some(shards) = owned_shards(tx, claim).await? else {
        // Nothing of ours to do; the node's next claim may change that.
        return Ok((Woken::default(), None));
    };
    // Read after BEGIN (and after the claim check): the pass's `now` is when it really runs.
    let now = clock.now();
    let mut woken = schedules::fire(tx, now, &shards).await?;
    woken.merge(jobs::promote_due(tx, now, &shards).await?);
    woken.merge(jobs::reap_expired(tx, now, &shards).await?);
    woken.merge(queues::wake_refilled(tx, now).await?);
    let next = jobs::next_timer(tx.conn(), &shards).await?;
    Ok((woken, next))
}

/// Retention for the shards `claim` holds (all of them without a claim).
async fn purge_finished(
    tx: &mut Tx,
    before: Timestamp,
    limit: u32,
    claim: Option<&ShardClaim>,
) -> Res<u64> {
    match owned_shards(tx, claim).await? {
        Some(shards) => jobs::purge_finished(tx, before, limit, &shards).await,
        None => Ok(0),
    }
}

/// The shards `claim` still validly holds (all of them without a claim),
/// checked inside the caller's transaction; `None` when it holds none.
async fn owned_shards(tx: &mut Tx, claim: Option<&ShardClaim>) -> Res<Option<cluster::Shards>> {
    let shards = match claim {
        None => cluster::Shards::all(),
        Some(claim) => cluster::valid_shards(tx, claim).await?,
    };
    Ok((!shards.owned.is_empty()).then_some(shards))
}

#[async_trait]
impl Store for PgStore {
    async fn submit(&self, job: NewJob, now: Timestamp) -> Result<Submitted> {
        self.groups
            .run(|reply| group::Op::Submit {
                job: Box::new(job),
                now,
                reply,
            })
            .await
    }

    async fn submit_batch(
        &self,
        jobs: Vec<NewJob>,
        atomic: bool,
        now: Timestamp,
    ) -> Result<Vec<Result<Submitted>>> {
        transaction!(self, |tx| async {
            let items = jobs.iter().map(|job| (job.clone(), now)).collect();
            let answers = jobs::submit_many(tx, items).await?;
            if atomic && let Some(Err(e)) = answers.iter().find(|a| a.is_err()) {
                return Err(Fault::Store(e.clone()));
            }
            Ok(answers)
        })
    }

    async fn get_job(&self, tenant: &str, id: JobId) -> Result<Job> {
        read!(self, |db| jobs::get_job(db, tenant, id))
    }

    async fn list_jobs(&self, tenant: &str, filter: &JobFilter) -> Result<Vec<Job>> {
        read!(self, |db| jobs::list_jobs(db, tenant, filter))
    }

    async fn lease_detailed(&self, params: LeaseParams, now: Timestamp) -> Result<Leased> {
        transaction!(self, |tx| jobs::lease(tx, &params, now))
    }

    async fn heartbeat(
        &self,
        tenant: &str,
        id: JobId,
        token: LeaseToken,
        progress: Option<Progress>,
        now: Timestamp,
    ) -> Result<Heartbeat> {
        let beat = jobs::Beat {
            tenant: tenant.to_string(),
            id,
            token,
            progress,
            now,
        };
        self.groups
            .run(|reply| group::Op::Heartbeat { beat, reply })
            .await
    }

    async fn complete(
        &self,
        tenant: &str,
        items: Vec<Completion>,
        now: Timestamp,
    ) -> Result<Vec<Result<Moved>>> {
        let tenant = tenant.to_string();
        self.groups
            .run(|reply| group::Op::Complete {
                tenant,
                items,
                now,
                reply,
            })
            .await
    }

    async fn fail(
        &self,
        tenant: &str,
        id: JobId,
        token: LeaseToken,
        error: String,
        cause: FailureCause,
        now: Timestamp,
    ) -> Result<Moved> {
        let report = group::Report::new(tenant, id, token, now);
        self.groups
            .run(|reply| group::Op::Fail {
                report,
                error,
                cause,
                reply,
            })
            .await
    }

    async fn snooze(
        &self,
        tenant: &str,
        id: JobId,
        token: LeaseToken,
        delay: Duration,
        now: Timestamp,
    ) -> Result<Moved> {
        let report = group::Report::new(tenant, id, token, now);
        self.groups
            .run(|reply| group::Op::Snooze {
                report,
                delay,
                reply,
            })
            .await
    }

    async fn cancel(
        &self,
        tenant: &str,
        id: JobId,
        now: Timestamp,
    ) -> Result<(Job, Vec<Released>)> {
        transaction!(self, |tx| jobs::cancel(tx, tenant, id, now))
    }

    async fn submit_workflow(
        &self,
        workflow: NewWorkflow,
        now: Timestamp,
    ) -> Result<WorkflowSubmitted> {
        transaction!(self, |tx| workflows::submit_workflow(
            tx,
            workflow.clone(),
            now
        ))
    }

    async fn get_workflow(&self, tenant: &str, id: WorkflowId) -> Result<WorkflowSubmitted> {
        // The workflow row and its jobs from one snapshot.
        transaction!(self, |tx| workflows::load(tx, tenant, id))
    }

    async fn cancel_workflow(
        &self,
        tenant: &str,
        id: WorkflowId,
        now: Timestamp,
    ) -> Result<(WorkflowSubmitted, Vec<Released>)> {
        transaction!(self, |tx| workflows::cancel_workflow(tx, tenant, id, now))
    }

    async fn rerun(&self, tenant: &str, id: JobId, now: Timestamp) -> Result<Job> {
        transaction!(self, |tx| jobs::rerun(tx, tenant, id, now))
    }

    async fn promote_due(&self, now: Timestamp) -> Result<Woken> {
        transaction!(self, |tx| jobs::promote_due(
            tx,
            now,
            &cluster::Shards::all()
        ))
    }

    async fn reap_expired(&self, now: Timestamp) -> Result<Woken> {
        transaction!(self, |tx| async {
            let mut woken = jobs::reap_expired(tx, now, &cluster::Shards::all()).await?;
            woken.merge(queues::wake_refilled(tx, now).await?);
            Res::Ok(woken)
        })
    }

    async fn fire_schedules(&self, now: Timestamp) -> Result<Woken> {
        transaction!(self, |tx| schedules::fire(tx, now, &cluster::Shards::all()))
    }

    async fn next_timer(&self) -> Result<Option<Timestamp>> {
        read!(self, |db| jobs::next_timer(db, &cluster::Shards::all()))
    }

    async fn timer_pass(
        &self,
        clock: Arc<dyn Clock>,
        shards: Option<&ShardClaim>,
    ) -> Result<(Woken, Option<Timestamp>)> {
        transaction!(self, |tx| timer_pass(tx, clock.as_ref(), shards))
    }

    async fn claim_shards(&self, node: &NodeInfo, ttl: Duration) -> Result<Option<ShardClaim>> {
        transaction!(self, |tx| cluster::claim(tx, node, ttl)).map(Some)
    }

    async fn release_shards(&self, node: &str) -> Result<()> {
        transaction!(self, |tx| cluster::release(tx, node))
    }

    async fn cluster(&self) -> Result<Vec<NodeStatus>> {
        read!(self, |db| cluster::nodes(db))
    }

    async fn database_now(&self) -> Result<Option<Timestamp>> {
        read!(self, |db| cluster::database_now(db)).map(Some)
    }

    async fn queue_settings(&self, tenant: &str, queue: &str) -> Result<QueueSettings> {
        read!(self, |db| queues::get(db, tenant, queue))
    }

    async fn update_queue(
        &self,
        tenant: &str,
        queue: &str,
        patch: QueuePatch,
        now: Timestamp,
    ) -> Result<QueueSettings> {
        transaction!(self, |tx| queues::update(tx, tenant, queue, &patch, now))
    }

    async fn queue_stats(
        &self,
        tenant: &str,
        queue: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<QueueStats>> {
        read!(self, |db| queues::stats(db, tenant, queue, now))
    }

    async fn purge_finished(
        &self,
        before: Timestamp,
        limit: u32,
        shards: Option<&ShardClaim>,
    ) -> Result<u64> {
        transaction!(self, |tx| purge_finished(tx, before, limit, shards))
    }

    async fn create_schedule(&self, schedule: ScheduleRecord) -> Result<ScheduleRecord> {
        transaction!(self, |tx| schedules::create(tx, schedule.clone()))
    }

    async fn get_schedule(&self, tenant: &str, key: &ScheduleKey) -> Result<ScheduleRecord> {
        read!(self, |db| schedules::get(db, tenant, key))
    }

    async fn list_schedules(&self, tenant: &str) -> Result<Vec<ScheduleRecord>> {
        read!(self, |db| schedules::list(db, tenant))
    }

    async fn update_schedule(&self, schedule: ScheduleRecord) -> Result<ScheduleRecord> {
        transaction!(self, |tx| schedules::update(tx, schedule.clone()))
    }

    async fn delete_schedule(&self, tenant: &str, id: ScheduleId) -> Result<()> {
        transaction!(self, |tx| schedules::delete(tx, tenant, id))
    }

    async fn trigger_schedule(&self, tenant: &str, id: ScheduleId, now: Timestamp) -> Result<Job> {
        transaction!(self, |tx| schedules::trigger(tx, tenant, id, now))
    }
}
