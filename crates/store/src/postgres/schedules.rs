//! The SQL of schedules: their CRUD, and firing, where one transaction plans
//! the due ticks (through `taskwheel_core::firing`), applies the overlap
//! policy, inserts one job per tick, and advances the schedule.
//!
//! Several nodes may fire at once. Each takes its due schedules
//! `FOR UPDATE SKIP LOCKED`, so a schedule is fired by one node at a time and
//! the others move on to the rest; and a job's insert is
//! `ON CONFLICT DO NOTHING` on the unique (schedule_id, fire_time) index, so
//! even a schedule whose `next_fire_at` was rewound cannot fire a tick twice.
//! Lock order is schedule, then its jobs (a manual trigger locks the schedule
//! before inserting too); the one path that goes the other way, a run
//! dead-lettered while its schedule fires with `overlap: replace`, can
//! deadlock, and PostgreSQL's detector plus the transaction retry resolve it.

use jiff::Timestamp;
use serde_json::Value;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_core::sql_str::AssertSqlSafe;
use sqlx_postgres::{PgPool, PgRow};
use taskwheel_core::firing::{self, OverlapPolicy, ScheduleId};
use taskwheel_core::recurring::{ScheduleHealth, ScheduleRecord};
use taskwheel_core::time::add;
use taskwheel_core::{Job, JobState};
use uuid::Uuid;

use super::cluster::Shards;
use super::error::{Res, is_unique_violation};
use super::jobs::insert_job;
use super::rows::{At, instant};
use super::tx::Tx;
use super::workflows::{Group, cancel_group};
use crate::{QueueRef, ScheduleKey, StoreError, Woken};

macro_rules! schedule_columns {
    () => {
        "id, tenant, definition, paused, next_fire_at, last_fire_at, created_at, updated_at, \
         fired, missed, skipped_overlap, failed"
    };
}

/// Schedules fired per statement; a pass loops until none is due.
const SLICE: i64 = 500;

fn record(row: &PgRow) -> Res<ScheduleRecord> {
    let counter =
        |i: usize| -> Res<u64> { Ok(u64::try_from(row.try_get::<i64, _>(i)?).unwrap_or(0)) };
    Ok(ScheduleRecord {
        id: ScheduleId(row.try_get::<Uuid, _>(0)?),
        tenant: row.try_get(1)?,
        definition: serde_json::from_value(row.try_get::<Value, _>(2)?)?,
        paused: row.try_get(3)?,
        next_fire_at: instant(row, 4)?,
        last_fire_at: instant(row, 5)?,
        created_at: row.try_get::<At, _>(6)?.0,
        updated_at: row.try_get::<At, _>(7)?.0,
        health: ScheduleHealth {
            fired: counter(8)?,
            missed: counter(9)?,
            skipped_overlap: counter(10)?,
            failed: counter(11)?,
        },
    })
}

/// A taken name is the caller's conflict; anything else is the database's.
fn name_taken(e: sqlx_core::Error, name: &str) -> super::error::Fault {
    if is_unique_violation(&e, "schedules_name") {
        StoreError::Conflict(format!("a schedule named `{name}` already exists")).into()
    } else {
        e.into()
    }
}

pub(super) async fn create(tx: &mut Tx, s: ScheduleRecord) -> Res<ScheduleRecord> {
    let row = query(concat!(
        "INSERT INTO schedules (id, tenant, name, definition, paused, next_fire_at, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ",
        schedule_columns!()
    ))
    .bind(s.id.0)
    .bind(&s.tenant)
    .bind(&s.definition.name)
    .bind(serde_json::to_value(&s.definition)?)
    .bind(s.paused)
    .bind(s.next_fire_at.map(At))
    .bind(At(s.created_at))
    .fetch_one(tx.conn())
    .await
    .map_err(|e| name_taken(e, &s.definition.name))?;
    record(&row)
}

pub(super) async fn get(pool: &PgPool, tenant: &str, key: &ScheduleKey) -> Res<ScheduleRecord> {
    let found = match key {
        ScheduleKey::Id(id) => {
            query(concat!(
                "SELECT ",
                schedule_columns!(),
                " FROM schedules WHERE id = $1 AND tenant = $2"
            ))
            .bind(id.0)
            .bind(tenant)
            .fetch_optional(pool)
            .await?
        }
        ScheduleKey::Name(name) => {
            query(concat!(
                "SELECT ",
                schedule_columns!(),
                " FROM schedules WHERE name = $1 AND tenant = $2"
            ))
            .bind(name)
            .bind(tenant)
            .fetch_optional(pool)
            .await?
        }
    };
    record(&found.ok_or(StoreError::ScheduleNotFound)?)
}

pub(super) async fn list(pool: &PgPool, tenant: &str) -> Res<Vec<ScheduleRecord>> {
    let found = query(concat!(
        "SELECT ",
        schedule_columns!(),
        " FROM schedules WHERE tenant = $1 ORDER BY name"
    ))
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    found.iter().map(record).collect()
}

pub(super) async fn update(tx: &mut Tx, s: ScheduleRecord) -> Res<ScheduleRecord> {
    let row = query(concat!(
        "UPDATE schedules SET name = $3, definition = $4, paused = $5, next_fire_at = $6, \
         updated_at = $7 WHERE id = $1 AND tenant = $2 RETURNING ",
        schedule_columns!()
    ))
    .bind(s.id.0)
    .bind(&s.tenant)
    .bind(&s.definition.name)
    .bind(serde_json::to_value(&s.definition)?)
    .bind(s.paused)
    .bind(s.next_fire_at.map(At))
    .bind(At(s.updated_at))
    .fetch_optional(tx.conn())
    .await
    .map_err(|e| name_taken(e, &s.definition.name))?;
    record(&row.ok_or(StoreError::ScheduleNotFound)?)
}

pub(super) async fn delete(tx: &mut Tx, tenant: &str, id: ScheduleId) -> Res<()> {
    let gone = query("DELETE FROM schedules WHERE id = $1 AND tenant = $2")
        .bind(id.0)
        .bind(tenant)
        .execute(tx.conn())
        .await?
        .rows_affected();
    if gone == 0 {
        return Err(StoreError::ScheduleNotFound.into());
    }
    Ok(())
}

pub(super) async fn trigger(tx: &mut Tx, tenant: &str, id: ScheduleId, now: Timestamp) -> Res<Job> {
    // Lock the schedule first, as firing does, so the two cannot deadlock.
    let row = query(concat!(
        "SELECT ",
        schedule_columns!(),
        " FROM schedules WHERE id = $1 AND tenant = $2 FOR UPDATE"
    ))
    .bind(id.0)
    .bind(tenant)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::ScheduleNotFound)?;
    let s = record(&row)?;
    let job = s
        .definition
        .job
        .instantiate(tenant, id, now, now, now)
        .map_err(|e| StoreError::Backend(format!("stored job template is invalid: {e}")))?;
    let job = insert_job(tx, job, now).await?.ok_or_else(|| {
        StoreError::Conflict("this schedule was triggered at this very instant already".into())
    })?;
    query("UPDATE schedules SET fired = fired + 1, last_fire_at = $2 WHERE id = $1")
        .bind(id.0)
        .bind(At(now))
        .execute(tx.conn())
        .await?;
    Ok(job)
}

pub(super) async fn fire(tx: &mut Tx, now: Timestamp, shards: &Shards) -> Res<Woken> {
    let mut woken = Woken::default();
    let sql = format!(
        "SELECT {} FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= $1{} \
         ORDER BY next_fire_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        schedule_columns!(),
        Shards::condition(3)
    );
    loop {
        let due = query(AssertSqlSafe(sql.clone()))
            .bind(At(now))
            .bind(SLICE)
            .bind(shards.count)
            .bind(&shards.owned)
            .fetch_all(tx.conn())
            .await?;
        for row in &due {
            fire_one(tx, &record(row)?, now, &mut woken).await?;
        }
        if (due.len() as i64) < SLICE {
            return Ok(woken);
        }
    }
}

async fn fire_one(tx: &mut Tx, s: &ScheduleRecord, now: Timestamp, woken: &mut Woken) -> Res<()> {
    let Some(due) = s.next_fire_at else {
        return Ok(());
    };
    let schedule = match s.definition.schedule(s.created_at) {
        Ok(schedule) => schedule,
        Err(e) => {
            // Validated on write, so only a change of rules can get here; stop it
            // rather than retry it on every pass.
            tracing::error!(schedule = %s.id, error = %e, "stored schedule no longer valid; stopping it");
            query("UPDATE schedules SET next_fire_at = NULL WHERE id = $1")
                .bind(s.id.0)
                .execute(tx.conn())
                .await?;
            return Ok(());
        }
    };
    let plan = firing::plan(&schedule, due, now, &s.definition.fire_policy());
    let (mut fired, mut skipped) = (0i64, 0i64);
    let offset = firing::jitter_offset(s.id, s.definition.jitter());
    for &tick in &plan.fire {
        match s.definition.overlap {
            OverlapPolicy::Allow => {}
            OverlapPolicy::Forbid if has_active_run(tx, s.id).await? => {
                skipped += 1;
                continue;
            }
            OverlapPolicy::Forbid => {}
            OverlapPolicy::Replace => {
                // Pending runs are cancelled, running ones asked to stop.
                let released = cancel_group(tx, Group::Schedule(s.id), now).await?;
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
        if let Some(job) = insert_job(tx, job, now).await? {
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
    query(
        "UPDATE schedules SET next_fire_at = $2, last_fire_at = COALESCE($3, last_fire_at), \
         fired = fired + $4, missed = missed + $5, skipped_overlap = skipped_overlap + $6 WHERE id = $1",
    )
    .bind(s.id.0)
    .bind(plan.next.map(At))
    .bind(plan.fire.last().map(|t| At(*t)))
    .bind(fired)
    .bind(i64::try_from(plan.missed).unwrap_or(i64::MAX))
    .bind(skipped)
    .execute(tx.conn())
    .await?;
    Ok(())
}

async fn has_active_run(tx: &mut Tx, id: ScheduleId) -> Res<bool> {
    let found = query(
        "SELECT 1 FROM jobs WHERE schedule_id = $1 AND state IN ('scheduled', 'available', 'running') \
         LIMIT 1",
    )
    .bind(id.0)
    .fetch_optional(tx.conn())
    .await?;
    Ok(found.is_some())
}
