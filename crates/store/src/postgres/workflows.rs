//! Dependencies and workflows on PostgreSQL: the state a job with parents
//! starts in, the release of blocked children in the transaction that ends a
//! parent, and the workflow table.
//!
//! Two parents of one child may end at the same time on two nodes. Each
//! transaction locks the blocked child `FOR UPDATE` before counting its
//! parents in a later statement: the second one waits for the first to
//! commit, and its count (a fresh snapshot at READ COMMITTED) sees both
//! parents ended. A child being submitted locks its parents (`FOR NO KEY
//! UPDATE`: it marks them as having children), so
//! a parent cannot end unseen between the child's count and its commit.

use std::collections::HashMap;

use jiff::Timestamp;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_core::sql_str::AssertSqlSafe;
use taskwheel_core::firing::ScheduleId;
use taskwheel_core::workflow::{
    NewWorkflow, ParentFailure, ParentResult, Standing, WorkflowId, WorkflowRecord, in_listed_order,
};
use taskwheel_core::{FieldError, JobId, JobState, NewJob};
use uuid::Uuid;

use super::error::Res;
use super::jobs;
use super::rows::{self, At, job_columns};
use super::tx::Tx;
use crate::{LeasedJob, Released, StoreError, WorkflowSubmitted};

/// The state a new job starts in: from its parents when it has some (every
/// one must exist in the tenant; they stay locked until commit),
/// else from its due time.
pub(super) async fn initial_state(tx: &mut Tx, job: &NewJob, now: Timestamp) -> Res<JobState> {
    if job.depends_on.is_empty() {
        return Ok(job.initial_state(now));
    }
    let ids: Vec<Uuid> = job.depends_on.iter().map(|id| id.0).collect();
    let found = query(
        // FOR NO KEY UPDATE, not FOR SHARE: the parents are marked as having
        // children below, and two submits upgrading shared locks would deadlock.
        "SELECT id, state FROM jobs WHERE id = ANY($1) AND tenant = $2 ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(&ids)
    .bind(&job.tenant)
    .fetch_all(tx.conn())
    .await?;
    let mut states = HashMap::with_capacity(found.len());
    for row in &found {
        states.insert(
            row.try_get::<Uuid, _>(0)?,
            rows::parse_state(row.try_get(1)?)?,
        );
    }
    if let Some((i, missing)) = ids
        .iter()
        .enumerate()
        .find(|(_, id)| !states.contains_key(id))
    {
        return Err(StoreError::from(FieldError::new(
            format!("depends_on[{i}]"),
            format!("no job {missing}"),
        ))
        .into());
    }
    Ok(Standing::of(states.into_values()).state(job.on_parent_failure, job.run_at, now))
}

/// Records the (parent, child) edges of a stored job, and marks the parents
/// as having children.
pub(super) async fn insert_edges(tx: &mut Tx, child: JobId, parents: &[JobId]) -> Res<()> {
    if parents.is_empty() {
        return Ok(());
    }
    let parents: Vec<Uuid> = parents.iter().map(|id| id.0).collect();
    query("INSERT INTO job_deps (parent_id, child_id) SELECT unnest($1::uuid[]), $2")
        .bind(&parents)
        .bind(child.0)
        .execute(tx.conn())
        .await?;
    query("UPDATE jobs SET has_children = true WHERE id = ANY($1) AND NOT has_children")
        .bind(&parents)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// After `ended` reached final states: every blocked child of theirs whose
/// parents now allow it leaves `blocked`; children skipped this way end too,
/// so their own children are looked at in turn. Each release is answered
/// with the parent that caused it. One statement finds the children of a
/// whole batch, so parents without children cost one round trip.
pub(super) async fn release_children(
    tx: &mut Tx,
    ended: Vec<JobId>,
    now: Timestamp,
) -> Res<Vec<(JobId, Released)>> {
    let mut frontier: Vec<Uuid> = ended.iter().map(|id| id.0).collect();
    let mut released = Vec::new();
    while !frontier.is_empty() {
        let blocked = query(
            "SELECT c.id, d.parent_id, c.tenant, c.queue, c.run_at, c.on_parent_failure, c.has_children \
             FROM job_deps d JOIN jobs c ON c.id = d.child_id \
             WHERE d.parent_id = ANY($1) AND c.state = 'blocked' ORDER BY c.id FOR UPDATE OF c",
        )
        .bind(&frontier)
        .fetch_all(tx.conn())
        .await?;
        if blocked.is_empty() {
            break;
        }
        // A child of several ended parents is listed (and locked) once per parent.
        let mut children: Vec<Uuid> = Vec::with_capacity(blocked.len());
        for row in &blocked {
            let child: Uuid = row.try_get(0)?;
            if children.last() != Some(&child) {
                children.push(child);
            }
        }
        // A later statement than the lock: it sees parents ended by
        // transactions that committed while this one waited.
        let parents = query(
            "SELECT d.child_id, p.state FROM job_deps d JOIN jobs p ON p.id = d.parent_id \
             WHERE d.child_id = ANY($1)",
        )
        .bind(&children)
        .fetch_all(tx.conn())
        .await?;
        let mut standing: HashMap<Uuid, Vec<JobState>> = HashMap::new();
        for row in &parents {
            standing
                .entry(row.try_get(0)?)
                .or_default()
                .push(rows::parse_state(row.try_get(1)?)?);
        }
        let (mut skipped, mut moved, mut states) = (Vec::new(), Vec::new(), Vec::new());
        // Skipped children that others depend on: the next round looks at theirs.
        let mut next = Vec::new();
        for row in &blocked {
            let child: Uuid = row.try_get(0)?;
            let Some(parent_states) = standing.remove(&child) else {
                // Its second row: already judged.
                continue;
            };
            let policy =
                ParentFailure::from_stored(row.try_get(5)?).map_err(StoreError::Backend)?;
            let run_at = row.try_get::<At, _>(4)?.0;
            let state = Standing::of(parent_states).state(policy, run_at, now);
            let release = Released {
                id: JobId(child),
                tenant: row.try_get(2)?,
                queue: row.try_get(3)?,
                state,
                run_at,
            };
            match state {
                JobState::Blocked => continue,
                JobState::Skipped => {
                    skipped.push(child);
                    if row.try_get(6)? {
                        next.push(child);
                    }
                }
                JobState::Available => {
                    tx.wake(&release.tenant, &release.queue);
                    moved.push(child);
                    states.push(state.as_str());
                }
                _ => {
                    moved.push(child);
                    states.push(state.as_str());
                }
            }
            released.push((JobId(row.try_get(1)?), release));
        }
        if !moved.is_empty() {
            query(
                "UPDATE jobs AS j SET state = u.state, updated_at = $3 \
                 FROM unnest($1::uuid[], $2::text[]) AS u(id, state) WHERE j.id = u.id",
            )
            .bind(&moved)
            .bind(&states)
            .bind(At(now))
            .execute(tx.conn())
            .await?;
        }
        if !skipped.is_empty() {
            query(
                "UPDATE jobs SET state = 'skipped', finished_at = $2, updated_at = $2 WHERE id = ANY($1)",
            )
            .bind(&skipped)
            .bind(At(now))
            .execute(tx.conn())
            .await?;
        }
        frontier = next;
    }
    Ok(released)
}

pub(super) async fn submit_workflow(
    tx: &mut Tx,
    workflow: NewWorkflow,
    now: Timestamp,
) -> Res<WorkflowSubmitted> {
    let inserted = query(
        "INSERT INTO workflows (id, tenant, name, idempotency_key, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(workflow.id.0)
    .bind(&workflow.tenant)
    .bind(&workflow.name)
    .bind(&workflow.idempotency_key)
    .bind(At(workflow.created_at))
    .execute(tx.conn())
    .await?
    .rows_affected();
    if inserted == 0 {
        // The idempotency key is taken: this statement's snapshot sees the
        // winner, which committed before ON CONFLICT returned.
        let id: Uuid = query("SELECT id FROM workflows WHERE tenant = $1 AND idempotency_key = $2")
            .bind(&workflow.tenant)
            .bind(&workflow.idempotency_key)
            .fetch_one(tx.conn())
            .await?
            .try_get(0)?;
        let mut found = load(tx, &workflow.tenant, WorkflowId(id)).await?;
        found.deduplicated = true;
        return Ok(found);
    }
    let record = workflow.record();
    let mut stored = Vec::with_capacity(workflow.jobs.len());
    for job in workflow.jobs {
        let job = jobs::insert_job(tx, job, now)
            .await?
            .ok_or_else(|| StoreError::Backend("a workflow job collided on insert".into()))?;
        stored.push(job);
    }
    Ok(WorkflowSubmitted {
        workflow: record,
        jobs: stored,
        deduplicated: false,
    })
}

/// A workflow and its jobs, read in one transaction.
pub(super) async fn load(tx: &mut Tx, tenant: &str, id: WorkflowId) -> Res<WorkflowSubmitted> {
    let row = query(
        "SELECT name, idempotency_key, created_at FROM workflows WHERE id = $1 AND tenant = $2",
    )
    .bind(id.0)
    .bind(tenant)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::WorkflowNotFound)?;
    let workflow = WorkflowRecord {
        id,
        tenant: tenant.to_string(),
        name: row.try_get(0)?,
        idempotency_key: row.try_get(1)?,
        created_at: row.try_get::<At, _>(2)?.0,
    };
    let found = query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE workflow_id = $1 AND tenant = $2"
    ))
    .bind(id.0)
    .bind(tenant)
    .fetch_all(tx.conn())
    .await?;
    let jobs = found.iter().map(rows::job).collect::<Res<Vec<_>>>()?;
    Ok(WorkflowSubmitted {
        workflow,
        jobs: taskwheel_core::workflow::parents_first(jobs),
        deduplicated: false,
    })
}

/// The jobs a group cancel takes: a schedule's runs, or a workflow's jobs.
pub(super) enum Group<'a> {
    Schedule(ScheduleId),
    Workflow(&'a str, WorkflowId),
}

/// Cancels every unfinished job of `group`: pending ones at once, running
/// ones through their heartbeat. Answers the jobs outside the group that
/// waited on a cancelled one and were released.
pub(super) async fn cancel_group(
    tx: &mut Tx,
    group: Group<'_>,
    now: Timestamp,
) -> Res<Vec<Released>> {
    let (filter, id, tenant) = match group {
        Group::Schedule(id) => ("schedule_id = $1", id.0, None),
        Group::Workflow(tenant, id) => ("workflow_id = $1 AND tenant = $3", id.0, Some(tenant)),
    };
    let mut pending = query(AssertSqlSafe(format!(
        "UPDATE jobs SET state = 'cancelled', finished_at = $2, updated_at = $2 \
         WHERE {filter} AND state IN ('blocked', 'scheduled', 'available') RETURNING id, has_children"
    )))
    .bind(id)
    .bind(At(now));
    let mut running = query(AssertSqlSafe(format!(
        "UPDATE jobs SET cancel_requested = true, updated_at = $2 WHERE {filter} AND state = 'running'"
    )))
    .bind(id)
    .bind(At(now));
    if let Some(tenant) = tenant {
        pending = pending.bind(tenant);
        running = running.bind(tenant);
    }
    // Only jobs others depend on need their children looked at.
    let mut parents = Vec::new();
    for row in pending.fetch_all(tx.conn()).await? {
        if row.try_get(1)? {
            parents.push(JobId(row.try_get(0)?));
        }
    }
    running.execute(tx.conn()).await?;
    if parents.is_empty() {
        return Ok(Vec::new());
    }
    let released = release_children(tx, parents, now).await?;
    Ok(released.into_iter().map(|(_, child)| child).collect())
}

pub(super) async fn cancel_workflow(
    tx: &mut Tx,
    tenant: &str,
    id: WorkflowId,
    now: Timestamp,
) -> Res<(WorkflowSubmitted, Vec<Released>)> {
    // An unknown id cancels nothing, and the read after answers 404 (and
    // rolls the transaction back).
    let released = cancel_group(tx, Group::Workflow(tenant, id), now).await?;
    Ok((load(tx, tenant, id).await?, released))
}

/// Fills in the parents' outcomes and results of leased jobs that have
/// parents, in one statement for the whole batch.
pub(super) async fn add_parent_results(
    tx: &mut Tx,
    tenant: &str,
    leased: &mut [LeasedJob],
) -> Res<()> {
    let children: Vec<Uuid> = leased
        .iter()
        .filter(|l| !l.job.depends_on.is_empty())
        .map(|l| l.job.id.0)
        .collect();
    if children.is_empty() {
        return Ok(());
    }
    let found = query(
        "SELECT d.child_id, p.id, p.workflow_job, p.state, \
         (SELECT a.result FROM attempts a WHERE a.job_id = p.id AND a.outcome = 'succeeded' \
          ORDER BY a.number DESC LIMIT 1) \
         FROM job_deps d JOIN jobs p ON p.id = d.parent_id WHERE d.child_id = ANY($1) AND p.tenant = $2",
    )
    .bind(&children)
    .bind(tenant)
    .fetch_all(tx.conn())
    .await?;
    let mut by_child: HashMap<Uuid, Vec<ParentResult>> = HashMap::new();
    for row in &found {
        by_child
            .entry(row.try_get(0)?)
            .or_default()
            .push(ParentResult {
                id: JobId(row.try_get(1)?),
                name: row.try_get(2)?,
                state: rows::parse_state(row.try_get(3)?)?,
                result: row.try_get(4)?,
            });
    }
    for l in leased.iter_mut() {
        if let Some(parents) = by_child.remove(&l.job.id.0) {
            l.parents = parents;
            in_listed_order(&l.job.depends_on, &mut l.parents);
        }
    }
    Ok(())
}
