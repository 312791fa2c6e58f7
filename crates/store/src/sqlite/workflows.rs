//! Dependencies and workflows on SQLite: the state a job with parents starts
//! in, the release of blocked children in the transaction that ends a
//! parent, and the workflow table. One writer means no concurrent parent can
//! end between the count and the write.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use taskwheel_core::firing::ScheduleId;
use taskwheel_core::time::{from_micros, to_micros};
use taskwheel_core::workflow::{
    NewWorkflow, ParentFailure, ParentResult, Standing, WorkflowId, WorkflowRecord, in_listed_order,
};
use taskwheel_core::{FieldError, Job, JobId, JobState, NewJob};

use super::ops;
use super::rows::{self, JOB_COLUMNS};
use crate::{LeasedJob, Released, Result, StoreError, WorkflowSubmitted};

/// The state a new job starts in: from its parents when it has some (every
/// one must exist in the tenant), else from its due time.
pub(super) fn initial_state(conn: &Connection, job: &NewJob, now: Timestamp) -> Result<JobState> {
    if job.depends_on.is_empty() {
        return Ok(job.initial_state(now));
    }
    let mut lookup = conn.prepare_cached("SELECT state FROM jobs WHERE id = ?1 AND tenant = ?2")?;
    let mut states = Vec::with_capacity(job.depends_on.len());
    for (i, parent) in job.depends_on.iter().enumerate() {
        let state: Option<String> = lookup
            .query_row(params![parent.0, job.tenant], |row| row.get(0))
            .optional()?;
        let state = state.ok_or_else(|| {
            FieldError::new(format!("depends_on[{i}]"), format!("no job {parent}"))
        })?;
        states.push(rows::parse_state(&state)?);
    }
    Ok(Standing::of(states).state(job.on_parent_failure, job.run_at, now))
}

/// Records the (parent, child) edges of a stored job, and marks the parents
/// as having children.
pub(super) fn insert_edges(conn: &Connection, child: JobId, parents: &[JobId]) -> Result<()> {
    if parents.is_empty() {
        return Ok(());
    }
    let mut insert =
        conn.prepare_cached("INSERT INTO job_deps (parent_id, child_id) VALUES (?1, ?2)")?;
    let mut mark =
        conn.prepare_cached("UPDATE jobs SET has_children = 1 WHERE id = ?1 AND has_children = 0")?;
    for parent in parents {
        insert.execute(params![parent.0, child.0])?;
        mark.execute(params![parent.0])?;
    }
    Ok(())
}

/// After `ended` reached final states: every blocked child of theirs whose
/// parents now allow it leaves `blocked` (children skipped this way end
/// too, so their own children are looked at in turn).
pub(super) fn release_children(
    conn: &Connection,
    ended: Vec<JobId>,
    now: Timestamp,
) -> Result<Vec<Released>> {
    let mut work = ended;
    let mut released = Vec::new();
    let mut children = conn.prepare_cached(
        "SELECT c.id, c.tenant, c.queue, c.run_at, c.on_parent_failure, c.has_children FROM job_deps d \
         JOIN jobs c ON c.id = d.child_id WHERE d.parent_id = ?1 AND c.state = 'blocked'",
    )?;
    let mut parents = conn.prepare_cached(
        "SELECT p.state FROM job_deps d JOIN jobs p ON p.id = d.parent_id WHERE d.child_id = ?1",
    )?;
    while let Some(parent) = work.pop() {
        let blocked = children
            .query_map(params![parent.0], |row| {
                Ok((
                    JobId(row.get(0)?),
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    from_micros(row.get(3)?),
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, bool>(5)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (child, tenant, queue, run_at, policy, has_children) in blocked {
            let policy =
                ParentFailure::from_stored(policy.as_deref()).map_err(StoreError::Backend)?;
            let states = parents
                .query_map(params![child.0], |row| row.get::<_, String>(0))?
                .map(|s| rows::parse_state(&s?))
                .collect::<Result<Vec<_>>>()?;
            let state = Standing::of(states).state(policy, run_at, now);
            match state {
                JobState::Blocked => continue,
                JobState::Skipped => {
                    ops::end(conn, child, JobState::Skipped, now)?;
                    if has_children {
                        work.push(child);
                    }
                }
                _ => {
                    conn.prepare_cached(
                        "UPDATE jobs SET state = ?2, updated_at = ?3 WHERE id = ?1",
                    )?
                    .execute(params![
                        child.0,
                        state.as_str(),
                        to_micros(now)
                    ])?;
                }
            }
            released.push(Released {
                id: child,
                tenant,
                queue,
                state,
                run_at,
            });
        }
    }
    Ok(released)
}

pub(super) fn submit_workflow(
    conn: &Connection,
    workflow: NewWorkflow,
    now: Timestamp,
) -> Result<WorkflowSubmitted> {
    if let Some(key) = &workflow.idempotency_key {
        let existing: Option<WorkflowId> = conn
            .prepare_cached("SELECT id FROM workflows WHERE tenant = ?1 AND idempotency_key = ?2")?
            .query_row(params![workflow.tenant, key], |row| {
                Ok(WorkflowId(row.get(0)?))
            })
            .optional()?;
        if let Some(id) = existing {
            let mut found = get_workflow(conn, &workflow.tenant, id)?;
            found.deduplicated = true;
            return Ok(found);
        }
    }
    conn.prepare_cached(
        "INSERT INTO workflows (id, tenant, name, idempotency_key, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        workflow.id.0,
        workflow.tenant,
        workflow.name,
        workflow.idempotency_key,
        to_micros(workflow.created_at),
    ])?;
    let record = workflow.record();
    let mut jobs = Vec::with_capacity(workflow.jobs.len());
    for job in workflow.jobs {
        let stored = ops::insert_job(conn, job, now)?
            .ok_or_else(|| StoreError::Backend("a workflow job collided on insert".into()))?;
        jobs.push(stored);
    }
    Ok(WorkflowSubmitted {
        workflow: record,
        jobs,
        deduplicated: false,
    })
}

pub(super) fn get_workflow(
    conn: &Connection,
    tenant: &str,
    id: WorkflowId,
) -> Result<WorkflowSubmitted> {
    let workflow = conn
        .prepare_cached(
            "SELECT name, idempotency_key, created_at FROM workflows WHERE id = ?1 AND tenant = ?2",
        )?
        .query_row(params![id.0, tenant], |row| {
            Ok(WorkflowRecord {
                id,
                tenant: tenant.to_string(),
                name: row.get(0)?,
                idempotency_key: row.get(1)?,
                created_at: from_micros(row.get(2)?),
            })
        })
        .optional()?
        .ok_or(StoreError::WorkflowNotFound)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE workflow_id = ?1 AND tenant = ?2"
    ))?;
    let mut found = stmt.query(params![id.0, tenant])?;
    let mut jobs: Vec<Job> = Vec::new();
    while let Some(row) = found.next()? {
        jobs.push(rows::job(row)?);
    }
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
pub(super) fn cancel_group(
    conn: &Connection,
    group: Group<'_>,
    now: Timestamp,
) -> Result<Vec<Released>> {
    let (filter, id, tenant) = match group {
        Group::Schedule(id) => ("schedule_id = ?1", id.0, None),
        Group::Workflow(tenant, id) => ("workflow_id = ?1 AND tenant = ?3", id.0, Some(tenant)),
    };
    // `?3` is bound only when the filter uses it.
    let mut args: Vec<rusqlite::types::Value> =
        vec![id.as_bytes().to_vec().into(), to_micros(now).into()];
    args.extend(tenant.map(|t| t.to_string().into()));
    conn.prepare_cached(&format!(
        "UPDATE jobs SET cancel_requested = 1, updated_at = ?2 WHERE {filter} AND state = 'running'"
    ))?
    .execute(params_from_iter(&args))?;
    let cancelled = conn
        .prepare_cached(&format!(
            "UPDATE jobs SET state = 'cancelled', finished_at = ?2, updated_at = ?2 \
             WHERE {filter} AND state IN ('blocked', 'scheduled', 'available') RETURNING id, has_children"
        ))?
        .query_map(params_from_iter(&args), |row| {
            Ok((JobId(row.get(0)?), row.get::<_, bool>(1)?))
        })?
        .filter_map(|r| r.map(|(id, has)| has.then_some(id)).transpose())
        .collect::<rusqlite::Result<Vec<_>>>()?;
    release_children(conn, cancelled, now)
}

pub(super) fn cancel_workflow(
    conn: &Connection,
    tenant: &str,
    id: WorkflowId,
    now: Timestamp,
) -> Result<(WorkflowSubmitted, Vec<Released>)> {
    // An unknown id cancels nothing, and the read after answers 404 (and
    // rolls the operation back).
    let released = cancel_group(conn, Group::Workflow(tenant, id), now)?;
    Ok((get_workflow(conn, tenant, id)?, released))
}

/// Fills in the parents' outcomes and results of leased jobs that have parents.
pub(super) fn add_parent_results(
    conn: &Connection,
    tenant: &str,
    leased: &mut [LeasedJob],
) -> Result<()> {
    if leased.iter().all(|l| l.job.depends_on.is_empty()) {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT p.id, p.workflow_job, p.state, \
         (SELECT a.result FROM attempts a WHERE a.job_id = p.id AND a.outcome = 'succeeded' \
          ORDER BY a.number DESC LIMIT 1) \
         FROM job_deps d JOIN jobs p ON p.id = d.parent_id WHERE d.child_id = ?1 AND p.tenant = ?2",
    )?;
    for l in leased.iter_mut().filter(|l| !l.job.depends_on.is_empty()) {
        let mut found = stmt.query(params![l.job.id.0, tenant])?;
        while let Some(row) = found.next()? {
            let state: String = row.get(2)?;
            let result: Option<String> = row.get(3)?;
            l.parents.push(ParentResult {
                id: JobId(row.get(0)?),
                name: row.get(1)?,
                state: rows::parse_state(&state)?,
                result: result.map(|r| serde_json::from_str(&r)).transpose()?,
            });
        }
        in_listed_order(&l.job.depends_on, &mut l.parents);
    }
    Ok(())
}
