//! The embedded engine: SQLite in WAL mode in one file under the data
//! directory. Mutations go through the single [`writer`] thread, which groups
//! concurrent operations into one transaction and one fsync; lookups use the
//! [`readers`] pool.

mod checkpointer;
mod ops;
mod queues;
mod readers;
mod rows;
mod schedules;
mod schema;
mod workflows;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::Connection;
use taskwheel_core::firing::ScheduleId;
use taskwheel_core::lifecycle::FailureCause;
use taskwheel_core::queue::{QueuePatch, QueueSettings, QueueStats};
use taskwheel_core::recurring::ScheduleRecord;
use taskwheel_core::workflow::{NewWorkflow, WorkflowId};
use taskwheel_core::{Clock, Job, JobId, LeaseToken, NewJob, Progress};

use crate::{
    Completion, Heartbeat, JobFilter, LeaseParams, Leased, Moved, Released, Result, ScheduleKey,
    ShardClaim, Store, StoreError, Submitted, Woken, WorkflowSubmitted,
};
use readers::Readers;
use writer::Writer;

/// The database file inside the data directory.
pub const DB_FILE: &str = "taskwheel.db";
const READERS: usize = 4;

/// The SQLite engine. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    _checkpointer: checkpointer::Checkpointer,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, and migrates it.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Backend(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(DB_FILE);
        let mut conn = open_connection(&path, false)?;
        schema::migrate(&mut conn)?;
        // The checkpointer thread copies the WAL back; the writer must never stall on it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // Each operation of a group runs in a savepoint, so SQLite keeps the
        // pages it changes in a statement journal; in memory, not a temp
        // file written on every first change of a page (a third of the
        // burn-down throughput, measured).
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let writer = Writer::spawn(conn)
            .map_err(|e| StoreError::Backend(format!("cannot start the writer: {e}")))?;
        let readers = Readers::open(&path, READERS)?;
        let _checkpointer = checkpointer::Checkpointer::spawn(&path)?;
        Ok(Self {
            writer,
            readers,
            _checkpointer,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens one connection with the settings every connection shares.
fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL: readers never block the writer. synchronous=FULL: a commit is on
    // disk before anyone hears "accepted"; group commit pays for it.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn submit(&self, job: NewJob, now: Timestamp) -> Result<Submitted> {
        self.writer.write(move |c| ops::submit(c, job, now)).await
    }

    async fn submit_batch(
        &self,
        jobs: Vec<NewJob>,
        atomic: bool,
        now: Timestamp,
    ) -> Result<Vec<Result<Submitted>>> {
        self.writer
            .write(move |c| ops::submit_batch(c, jobs, atomic, now))
            .await
    }

    async fn get_job(&self, tenant: &str, id: JobId) -> Result<Job> {
        let tenant = tenant.to_string();
        self.readers
            .read(move |c| ops::get_job(c, &tenant, id))
            .await
    }

    async fn list_jobs(&self, tenant: &str, filter: &JobFilter) -> Result<Vec<Job>> {
        let (tenant, filter) = (tenant.to_string(), filter.clone());
        self.readers
            .read(move |c| ops::list_jobs(c, &tenant, &filter))
            .await
    }

    async fn lease_detailed(&self, params: LeaseParams, now: Timestamp) -> Result<Leased> {
        self.writer
            .write(move |c| ops::lease(c, &params, now))
            .await
    }

    async fn heartbeat(
        &self,
        tenant: &str,
        id: JobId,
        token: LeaseToken,
        progress: Option<Progress>,
        now: Timestamp,
    ) -> Result<Heartbeat> {
        let tenant = tenant.to_string();
        self.writer
            .write(move |c| ops::heartbeat(c, &tenant, id, token, progress, now))
            .await
    }

    async fn complete(
        &self,
        tenant: &str,
        items: Vec<Completion>,
        now: Timestamp,
    ) -> Result<Vec<Result<Moved>>> {
        let tenant = tenant.to_string();
        self.writer
            .write(move |c| ops::complete(c, &tenant, items, now))
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
        let tenant = tenant.to_string();
        self.writer
            .write(move |c| ops::fail(c, &tenant, id, token, error, cause, now))
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
        let tenant = tenant.to_string();
        self.writer
            .write(move |c| ops::snooze(c, &tenant, id, token, delay, now))
            .await
    }

    async fn submit_workflow(
        &self,
        workflow: NewWorkflow,
        now: Timestamp,
    ) -> Result<WorkflowSubmitted> {
        self.writer
            .write(move |c| workflows::submit_workflow(c, workflow, now))
            .await
    }

    async fn get_workflow(&self, tenant: &str, id: WorkflowId) -> Result<WorkflowSubmitted> {
        let tenant = tenant.to_string();
        self.readers
            .read(move |c| workflows::get_workflow(c, &tenant, id))
            .await
    }

    async fn cancel_workflow(
        &self,
        tenant: &str,
        id: WorkflowId,
        now: Timestamp,
    ) -> Result<(WorkflowSubmitted, Vec<Released>)> {
        let tenant = tenant.to_string();
        self.writer
            .write(move |c| workflows::cancel_workflow(c, &tenant, id, now))
            .await
    }

    async fn cancel(
        &self,
        tenant: &str,
        id: JobId,
        now: Timestamp,
    ) -> Result<(Job, Vec<Released>)> {
        let tenant = tenant.to_string();
        self.writer
            .write(move |c| ops::cancel(c, &tenant, id, now))
            .await
    }

    async fn rerun(&self, tenant: &str, id: JobId, now: Timestamp) -> Result<Job> {
        let tenant = tenant.to_string();
        self.writer
            .write(move |c| ops::rerun(c, &tenant, id, now))
            .await
    }

    async fn promote_due(&self, now: Timestamp) -> Result<Woken> {
        self.writer.write(move |c| ops::promote_due(c, now)).await
    }

    async fn reap_expired(&self, now: Timestamp) -> Result<Woken> {
        self.writer
            .write(move |c| {
                let mut woken = ops::reap_expired(c, now)?;
                woken.merge(queues::wake_refilled(c, now)?);
                Ok(woken)
            })
            .await
    }

    async fn fire_schedules(&self, now: Timestamp) -> Result<Woken> {
        self.writer.write(move |c| schedules::fire(c, now)).await
    }

    async fn next_timer(&self) -> Result<Option<Timestamp>> {
        self.readers.read(ops::next_timer).await
    }

    async fn timer_pass(
        &self,
        clock: Arc<dyn Clock>,
        // One node owns an embedded database: it does all the timer work.
        _shards: Option<&ShardClaim>,
    ) -> Result<(Woken, Option<Timestamp>)> {
        self.writer
            .write(move |c| {
                let now = clock.now();
                let mut woken = schedules::fire(c, now)?;
                woken.merge(ops::promote_due(c, now)?);
                woken.merge(ops::reap_expired(c, now)?);
                woken.merge(queues::wake_refilled(c, now)?);
                Ok((woken, ops::next_timer(c)?))
            })
            .await
    }

    async fn queue_settings(&self, tenant: &str, queue: &str) -> Result<QueueSettings> {
        let (tenant, queue) = (tenant.to_string(), queue.to_string());
        self.readers
            .read(move |c| queues::get(c, &tenant, &queue))
            .await
    }

    async fn update_queue(
        &self,
        tenant: &str,
        queue: &str,
        patch: QueuePatch,
        now: Timestamp,
    ) -> Result<QueueSettings> {
        let (tenant, queue) = (tenant.to_string(), queue.to_string());
        self.writer
            .write(move |c| queues::update(c, &tenant, &queue, &patch, now))
            .await
    }

    async fn queue_stats(
        &self,
        tenant: &str,
        queue: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<QueueStats>> {
        let (tenant, queue) = (tenant.to_string(), queue.map(str::to_string));
        self.readers
            .read(move |c| queues::stats(c, &tenant, queue.as_deref(), now))
            .await
    }

    async fn purge_finished(
        &self,
        before: Timestamp,
        limit: u32,
        // One node owns an embedded database.
        _shards: Option<&ShardClaim>,
    ) -> Result<u64> {
        self.writer
            .write(move |c| ops::purge_finished(c, before, limit))
            .await
    }

    async fn create_schedule(&self, schedule: ScheduleRecord) -> Result<ScheduleRecord> {
        self.writer
            .write(move |c| schedules::create(c, schedule))
            .await
    }

    async fn get_schedule(&self, tenant: &str, key: &ScheduleKey) -> Result<ScheduleRecord> {
        let (tenant, key) = (tenant.to_string(), key.clone());
        self.readers
            .read(move |c| schedules::get(c, &tenant, &key))
            .await
    }

    async fn list_schedules(&self, tenant: &str) -> Result<Vec<ScheduleRecord>> {
        let tenant = tenant.to_string();
        self.readers
            .read(move |c| schedules::list(c, &tenant))
            .await
    }

    async fn update_schedule(&self, schedule: ScheduleRecord) -> Result<ScheduleRecord> {
        self.writer
            .write(move |c| schedules::update(c, schedule))
            .await
    }

    async fn delete_schedule(&self, tenant: &str, id: ScheduleId) -> Result<()> {
        let tenant = tenant.to_string();
        self.writer
            .write(move |c| schedules::delete(c, &tenant, id))
            .await
    }

    async fn trigger_schedule(&self, tenant: &str, id: ScheduleId, now: Timestamp) -> Result<Job> {
        let tenant = tenant.to_string();
        self.writer
            .write(move |c| schedules::trigger(c, &tenant, id, now))
            .await
    }
}
