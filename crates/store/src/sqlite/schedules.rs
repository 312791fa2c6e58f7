//! The SQL of schedules: their CRUD, and firing, where one transaction plans
//! the due ticks (through `taskwheel_core::firing`), applies the overlap
//! policy, inserts one job per tick, and advances the schedule.

use jiff::Timestamp;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use taskwheel_core::firing::{self, OverlapPolicy, ScheduleId};
use taskwheel_core::recurring::{ScheduleDefinition, ScheduleHealth, ScheduleRecord};
use taskwheel_core::time::{add, from_micros, to_micros};
use taskwheel_core::{Job, JobState};
use uuid::Uuid;

use super::ops::insert_job;
use super::workflows::{Group, cancel_group};
use crate::{QueueRef, Result, ScheduleKey, StoreError, Woken};

const COLUMNS: &str = "id, tenant, definition, paused, next_fire_at, last_fire_at, created_at, updated_at, \
     fired, missed, skipped_overlap, failed";

/// Schedules fired per statement; a pass loops until none is due.
const SLICE: i64 = 500;

fn record(row: &rusqlite::Row<'_>) -> Result<ScheduleRecord> {
    let definition: String = row.get(2)?;
    Ok(ScheduleRecord {
        id: ScheduleId(row.get::<_, Uuid>(0)?),
        tenant: row.get(1)?,
        definition: serde_json::from_str::<ScheduleDefinition>(&definition)?,
        paused: row.get(3)?,
        next_fire_at: row.get::<_, Option<i64>>(4)?.map(from_micros),
        last_fire_at: row.get::<_, Option<i64>>(5)?.map(from_micros),
        created_at: from_micros(row.get(6)?),
        updated_at: from_micros(row.get(7)?),
        health: ScheduleHealth {
            fired: row.get::<_, i64>(8)? as u64,
            missed: row.get::<_, i64>(9)? as u64,
            skipped_overlap: row.get::<_, i64>(10)? as u64,
            failed: row.get::<_, i64>(11)? as u64,
        },
    })
}

fn name_taken(e: rusqlite::Error, name: &str) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => {
            StoreError::Conflict(format!("a schedule named `{name}` already exists"))
        }
        _ => e.into(),
    }
}

pub(super) fn create(conn: &Connection, s: ScheduleRecord) -> Result<ScheduleRecord> {
    conn.prepare_cached(
        "INSERT INTO schedules (id, tenant, name, definition, paused, next_fire_at, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        s.id.0,
        s.tenant,
        s.definition.name,
        serde_json::to_string(&s.definition)?,
        s.paused,
        s.next_fire_at.map(to_micros),
        to_micros(s.created_at),
    ])
    .map_err(|e| name_taken(e, &s.definition.name))?;
    get(conn, &s.tenant, &ScheduleKey::Id(s.id))
}

pub(super) fn get(conn: &Connection, tenant: &str, key: &ScheduleKey) -> Result<ScheduleRecord> {
    let found = match key {
        ScheduleKey::Id(id) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM schedules WHERE id = ?1 AND tenant = ?2"
            ))?
            .query_row(params![id.0, tenant], |row| Ok(record(row)))
            .optional()?,
        ScheduleKey::Name(name) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM schedules WHERE name = ?1 AND tenant = ?2"
            ))?
            .query_row(params![name, tenant], |row| Ok(record(row)))
            .optional()?,
    };
    found.ok_or(StoreError::ScheduleNotFound)?
}

pub(super) fn list(conn: &Connection, tenant: &str) -> Result<Vec<ScheduleRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM schedules WHERE tenant = ?1 ORDER BY name"
    ))?;
    let mut rows = stmt.query(params![tenant])?;
    let mut all = Vec::new();
    while let Some(row) = rows.next()? {
        all.push(record(row)?);
    }
    Ok(all)
}

pub(super) fn update(conn: &Connection, s: ScheduleRecord) -> Result<ScheduleRecord> {
    let changed = conn
        .prepare_cached(
            "UPDATE schedules SET name = ?3, definition = ?4, paused = ?5, next_fire_at = ?6, updated_at = ?7 \
             WHERE id = ?1 AND tenant = ?2",
        )?
        .execute(params![
            s.id.0,
            s.tenant,
            s.definition.name,
            serde_json::to_string(&s.definition)?,
            s.paused,
            s.next_fire_at.map(to_micros),
            to_micros(s.updated_at),
        ])
        .map_err(|e| name_taken(e, &s.definition.name))?;
    if changed == 0 {
        return Err(StoreError::ScheduleNotFound);
    }
    get(conn, &s.tenant, &ScheduleKey::Id(s.id))
}

pub(super) fn delete(conn: &Connection, tenant: &str, id: ScheduleId) -> Result<()> {
    let gone = conn
        .prepare_cached("DELETE FROM schedules WHERE id = ?1 AND tenant = ?2")?
        .execute(params![id.0, tenant])?;
    if gone == 0 {
        return Err(StoreError::ScheduleNotFound);
    }
    Ok(())
}

pub(super) fn trigger(
    conn: &Connection,
    tenant: &str,
    id: ScheduleId,
    now: Timestamp,
) -> Result<Job> {
    let s = get(conn, tenant, &ScheduleKey::Id(id))?;
    let job = s
        .definition
        .job
        .instantiate(tenant, id, now, now, now)
        .map_err(|e| StoreError::Backend(format!("stored job template is invalid: {e}")))?;
    let job = insert_job(conn, job, now)?.ok_or_else(|| {
        StoreError::Conflict("this schedule was triggered at this very instant already".into())
    })?;
    conn.prepare_cached("UPDATE schedules SET fired = fired + 1, last_fire_at = ?2 WHERE id = ?1")?
        .execute(params![id.0, to_micros(now)])?;
    Ok(job)
}

pub(super) fn fire(conn: &Connection, now: Timestamp) -> Result<Woken> {
    let mut woken = Woken::default();
    loop {
        let due: Vec<ScheduleRecord> = {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM schedules WHERE paused = 0 AND next_fire_at IS NOT NULL \
                 AND next_fire_at <= ?1 ORDER BY next_fire_at LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![to_micros(now), SLICE])?;
            let mut due = Vec::new();
            while let Some(row) = rows.next()? {
                due.push(record(row)?);
            }
            due
        };
        for s in &due {
            fire_one(conn, s, now, &mut woken)?;
        }
        if (due.len() as i64) < SLICE {
            return Ok(woken);
        }
    }
}

fn fire_one(
    conn: &Connection,
    s: &ScheduleRecord,
    now: Timestamp,
    woken: &mut Woken,
) -> Result<()> {
    let Some(due) = s.next_fire_at else {
        return Ok(());
    };
    let schedule = match s.definition.schedule(s.created_at) {
        Ok(schedule) => schedule,
        Err(e) => {
            // Validated on write, so only a change of rules can get here; stop it
            // rather than retry it on every pass.
            tracing::error!(schedule = %s.id, error = %e, "stored schedule no longer valid; stopping it");
            conn.prepare_cached("UPDATE schedules SET next_fire_at = NULL WHERE id = ?1")?
                .execute(params![s.id.0])?;
            return Ok(());
        }
    };
    let plan = firing::plan(&schedule, due, now, &s.definition.fire_policy());
    let (mut fired, mut skipped) = (0u64, 0u64);
    let offset = firing::jitter_offset(s.id, s.definition.jitter());
    for &tick in &plan.fire {
        match s.definition.overlap {
            OverlapPolicy::Allow => {}
            OverlapPolicy::Forbid if has_active_run(conn, s.id)? => {
                skipped += 1;
                continue;
            }
            OverlapPolicy::Forbid => {}
            OverlapPolicy::Replace => {
                // Pending runs are cancelled, running ones asked to stop.
                let released = cancel_group(conn, Group::Schedule(s.id), now)?;
                woken.add_released(&released);
            }
        }
        let job = match s
            .definition
            .job
            .instantiate(&s.tenant, s.id, tick, add(tick, offset), now)
        {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(schedule = %s.id, error = %e, "stored job template is invalid");
                continue;
            }
        };
        if let Some(job) = insert_job(conn, job, now)? {
            fired += 1;
            if job.state == JobState::Available {
                woken.queues.insert(QueueRef {
                    tenant: job.tenant,
                    queue: job.queue,
                });
                woken.due.push(tick);
            }
        }
    }
    conn.prepare_cached(
        "UPDATE schedules SET next_fire_at = ?2, last_fire_at = COALESCE(?3, last_fire_at), \
         fired = fired + ?4, missed = missed + ?5, skipped_overlap = skipped_overlap + ?6 WHERE id = ?1",
    )?
    .execute(params![
        s.id.0,
        plan.next.map(to_micros),
        plan.fire.last().map(|t| to_micros(*t)),
        fired as i64,
        plan.missed as i64,
        skipped as i64,
    ])?;
    Ok(())
}

fn has_active_run(conn: &Connection, id: ScheduleId) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM jobs WHERE schedule_id = ?1 AND state IN ('scheduled', 'available', 'running') LIMIT 1",
        )?
        .exists(params![id.0])?)
}
