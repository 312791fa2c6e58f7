//! Queue flow control on PostgreSQL: the `queue_settings` rows, the picking
//! of jobs from a limited queue (fair across concurrency keys, within its
//! limits), the token-bucket wake-ups, and the queue statistics.
//!
//! Why the limits hold with several nodes leasing at once: a lease locks the
//! settings row of every limited queue it leases from (`FOR UPDATE`, in
//! queue order), so leases of one limited queue run one after another. Under
//! READ COMMITTED each statement sees what committed before it began, so the
//! next lease's count of running jobs (and its token bucket, kept in the
//! same row) includes everything the previous one started. Ending a job only
//! lowers the count, so it needs no lock. Queues without limits never touch
//! these rows beyond a one-time check and keep the lock-free
//! `SKIP LOCKED` dequeue.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::{PgPool, PgRow};
use taskwheel_core::Job;
use taskwheel_core::queue::{
    QueuePatch, QueueSettings, QueueStats, RateLimit, RatePeriod, TokenBucket,
};
use uuid::Uuid;

use super::error::Res;
use super::rows::{self, At, instant, job_columns, to_millis};
use super::tx::Tx;
use crate::{QueueRef, StoreError, Woken};

/// The columns [`settings`] reads, in order.
macro_rules! settings_columns {
    () => {
        "paused, concurrency, key_concurrency, rate_limit, rate_per_ms, rate_burst, tokens, refilled_at"
    };
}

/// The condition of a row with a limit (a paused queue counts as limited).
macro_rules! limited_condition {
    () => {
        "(paused OR concurrency IS NOT NULL OR key_concurrency IS NOT NULL OR rate_limit IS NOT NULL)"
    };
}
pub(super) use limited_condition;

/// A limited queue as a lease found it, its row locked.
pub(super) struct Limited {
    pub(super) queue: String,
    pub(super) settings: QueueSettings,
    pub(super) bucket: Option<TokenBucket>,
}

fn limit(row: &PgRow, i: usize) -> Res<Option<u32>> {
    Ok(row.try_get::<Option<i32>, _>(i)?.map(rows::count))
}

/// Reads the settings columns starting at `first`.
fn settings(row: &PgRow, first: usize) -> Res<(QueueSettings, Option<TokenBucket>)> {
    let rate = match (
        limit(row, first + 3)?,
        row.try_get::<Option<i64>, _>(first + 4)?,
    ) {
        (Some(limit_), Some(per)) => Some(RateLimit {
            limit: limit_,
            per: RatePeriod::from_millis(per)
                .ok_or_else(|| StoreError::Backend(format!("stored rate period {per}ms")))?,
            burst: limit(row, first + 5)?.unwrap_or(limit_),
        }),
        _ => None,
    };
    let bucket = match (rate, row.try_get::<Option<f64>, _>(first + 6)?) {
        (Some(_), Some(tokens)) => Some(TokenBucket {
            tokens,
            refilled_at: instant(row, first + 7)?.unwrap_or_default(),
        }),
        _ => None,
    };
    Ok((
        QueueSettings {
            paused: row.try_get(first)?,
            concurrency: limit(row, first + 1)?,
            key_concurrency: limit(row, first + 2)?,
            rate,
        },
        bucket,
    ))
}

/// The limited queues among `queues`, their settings rows locked until commit.
pub(super) async fn lock_limited(
    tx: &mut Tx,
    tenant: &str,
    queues: &[String],
) -> Res<Vec<Limited>> {
    let found = query(concat!(
        "SELECT queue, ",
        settings_columns!(),
        " FROM queue_settings WHERE tenant = $1 AND queue = ANY($2) AND ",
        limited_condition!(),
        " ORDER BY queue FOR UPDATE"
    ))
    .bind(tenant)
    .bind(queues)
    .fetch_all(tx.conn())
    .await?;
    found
        .iter()
        .map(|row| {
            let (settings, bucket) = settings(row, 1)?;
            Ok(Limited {
                queue: row.try_get(0)?,
                settings,
                bucket,
            })
        })
        .collect()
}

/// Picks and locks up to `want` jobs of a limited queue (its settings row
/// locked by [`lock_limited`]) for a lease at `now`, within its limits, and
/// takes their tokens from the bucket; with the instant of the next token if
/// the bucket is now dry. The caller claims them in the same transaction.
pub(super) async fn pick(
    tx: &mut Tx,
    tenant: &str,
    q: &Limited,
    want: u32,
    now: Timestamp,
) -> Res<(Vec<Job>, Option<Timestamp>)> {
    if q.settings.paused {
        return Ok((Vec::new(), None));
    }
    let running: i64 = if q.settings.concurrency.is_some() {
        sqlx_core::query_scalar::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE tenant = $1 AND queue = $2 AND state = 'running'",
        )
        .bind(tenant)
        .bind(&q.queue)
        .fetch_one(tx.conn())
        .await?
    } else {
        0
    };
    let bucket = q.settings.bucket_at(q.bucket, now);
    let allowance =
        q.settings
            .allowance(want, u64::try_from(running).unwrap_or(0), bucket.as_ref());
    let mut jobs = Vec::new();
    if allowance > 0 {
        // Round-robin across keys: each key's n-th job (by dispatch order)
        // comes before any key's (n+1)-th, within one priority; a key at its
        // `key_concurrency` contributes nothing more. Jobs without a key
        // share one turn.
        let ids: Vec<Uuid> = sqlx_core::query_scalar::query_scalar(
            "WITH busy AS (SELECT concurrency_key AS k, COUNT(*) AS n FROM jobs \
             WHERE tenant = $1 AND queue = $2 AND state = 'running' AND concurrency_key IS NOT NULL \
             GROUP BY concurrency_key), \
             ranked AS (SELECT id, priority, run_at, concurrency_key AS k, ROW_NUMBER() OVER \
             (PARTITION BY concurrency_key ORDER BY priority DESC, run_at, id) AS rn FROM jobs \
             WHERE tenant = $1 AND queue = $2 AND state = 'available') \
             SELECT r.id FROM ranked AS r LEFT JOIN busy AS b ON b.k = r.k \
             WHERE $3::integer IS NULL OR r.k IS NULL OR r.rn + COALESCE(b.n, 0) <= $3 \
             ORDER BY r.priority DESC, r.rn, r.run_at, r.id LIMIT $4",
        )
        .bind(tenant)
        .bind(&q.queue)
        .bind(q.settings.key_concurrency.map(rows::int))
        .bind(i64::from(allowance))
        .fetch_all(tx.conn())
        .await?;
        if !ids.is_empty() {
            // Leases of this queue wait for its settings row, so no other
            // leaser holds these rows; a job being cancelled right now is skipped.
            let locked = query(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE id = ANY($1) AND state = 'available' FOR UPDATE SKIP LOCKED"
            ))
            .bind(&ids)
            .fetch_all(tx.conn())
            .await?;
            let mut by_id = std::collections::HashMap::with_capacity(locked.len());
            for row in &locked {
                let job = rows::job(row)?;
                by_id.insert(job.id.0, job);
            }
            jobs.extend(ids.iter().filter_map(|id| by_id.remove(id)));
        }
    }
    let mut refill_at = None;
    if let (Some(rate), Some(mut bucket)) = (q.settings.rate, bucket) {
        bucket.take(jobs.len() as u32);
        // A dry bucket: wake this queue's waiters when the next token is in.
        refill_at = (bucket.whole() == 0).then(|| rate.next_token_at(bucket));
        query(
            "UPDATE queue_settings SET tokens = $3, refilled_at = $4, wake_at = $5 \
             WHERE tenant = $1 AND queue = $2",
        )
        .bind(tenant)
        .bind(&q.queue)
        .bind(bucket.tokens)
        .bind(At(bucket.refilled_at))
        .bind(refill_at.map(At))
        .execute(tx.conn())
        .await?;
    }
    Ok((jobs, refill_at))
}

/// Whether a running job of `queue` that ends frees a slot of a limit; if
/// so, its waiters on every node are woken at commit.
pub(super) async fn frees_slot(tx: &mut Tx, tenant: &str, queue: &str) -> Res<bool> {
    let found = query(
        "SELECT 1 FROM queue_settings WHERE tenant = $1 AND queue = $2 \
         AND (concurrency IS NOT NULL OR key_concurrency IS NOT NULL)",
    )
    .bind(tenant)
    .bind(queue)
    .fetch_optional(tx.conn())
    .await?
    .is_some();
    if found {
        tx.wake(tenant, queue);
    }
    Ok(found)
}

/// Wakes the queues whose token bucket refilled by `now` after a lease found it dry.
pub(super) async fn wake_refilled(tx: &mut Tx, now: Timestamp) -> Res<Woken> {
    let found = query(
        "UPDATE queue_settings SET wake_at = NULL WHERE wake_at <= $1 RETURNING tenant, queue",
    )
    .bind(At(now))
    .fetch_all(tx.conn())
    .await?;
    let mut woken = Woken::default();
    for row in &found {
        let q = QueueRef {
            tenant: row.try_get(0)?,
            queue: row.try_get(1)?,
        };
        tx.wake(&q.tenant, &q.queue);
        woken.queues.insert(q);
    }
    Ok(woken)
}

pub(super) async fn get<'c>(
    db: impl sqlx_postgres::PgExecutor<'c>,
    tenant: &str,
    queue: &str,
) -> Res<QueueSettings> {
    let row = query(concat!(
        "SELECT ",
        settings_columns!(),
        " FROM queue_settings WHERE tenant = $1 AND queue = $2"
    ))
    .bind(tenant)
    .bind(queue)
    .fetch_optional(db)
    .await?;
    Ok(match row {
        Some(row) => settings(&row, 0)?.0,
        None => QueueSettings::default(),
    })
}

pub(super) async fn update(
    tx: &mut Tx,
    tenant: &str,
    queue: &str,
    patch: &QueuePatch,
    now: Timestamp,
) -> Res<QueueSettings> {
    // Create the row if missing, then lock it: concurrent patches apply one after another.
    query(
        "INSERT INTO queue_settings (tenant, queue, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant, queue) DO NOTHING",
    )
    .bind(tenant)
    .bind(queue)
    .bind(At(now))
    .execute(tx.conn())
    .await?;
    let row = query(concat!(
        "SELECT ",
        settings_columns!(),
        " FROM queue_settings WHERE tenant = $1 AND queue = $2 FOR UPDATE"
    ))
    .bind(tenant)
    .bind(queue)
    .fetch_one(tx.conn())
    .await?;
    let current = settings(&row, 0)?.0;
    let (next, rate_changed) = patch
        .apply_to(current)
        .map_err(|e| StoreError::Backend(format!("unvalidated queue settings: {e}")))?;
    let rate = next.rate;
    let bucket = rate.map(|r| r.full(now));
    query(
        "UPDATE queue_settings SET paused = $3, concurrency = $4, key_concurrency = $5, \
         rate_limit = $6, rate_per_ms = $7, rate_burst = $8, updated_at = $9, \
         tokens = CASE WHEN $10 THEN $11 ELSE tokens END, \
         refilled_at = CASE WHEN $10 THEN $12 ELSE refilled_at END, \
         wake_at = CASE WHEN $10 THEN NULL ELSE wake_at END \
         WHERE tenant = $1 AND queue = $2",
    )
    .bind(tenant)
    .bind(queue)
    .bind(next.paused)
    .bind(next.concurrency.map(rows::int))
    .bind(next.key_concurrency.map(rows::int))
    .bind(rate.map(|r| rows::int(r.limit)))
    .bind(rate.map(|r| to_millis(r.per.duration())))
    .bind(rate.map(|r| rows::int(r.burst)))
    .bind(At(now))
    .bind(rate_changed)
    .bind(bucket.map(|b| b.tokens))
    .bind(bucket.map(|b| At(b.refilled_at)))
    .execute(tx.conn())
    .await?;
    // Resumed or loosened: waiting workers on every node try again.
    tx.wake(tenant, queue);
    Ok(next)
}

pub(super) async fn stats(
    pool: &PgPool,
    tenant: &str,
    queue: Option<&str>,
    now: Timestamp,
) -> Res<Vec<QueueStats>> {
    let mut found: BTreeMap<String, QueueStats> = BTreeMap::new();
    let minute_ago = At(taskwheel_core::time::sub(now, Duration::from_secs(60)));
    let depth = query(
        "SELECT queue, state, COUNT(*), MIN(run_at) FILTER (WHERE state = 'available'), \
         COUNT(*) FILTER (WHERE finished_at >= $3) FROM jobs \
         WHERE tenant = $1 AND ($2::text IS NULL OR queue = $2) GROUP BY queue, state",
    )
    .bind(tenant)
    .bind(queue)
    .bind(minute_ago)
    .fetch_all(pool)
    .await?;
    for row in &depth {
        let stats = QueueStats::slot(&mut found, row.try_get(0)?);
        let state = rows::parse_state(row.try_get(1)?)?;
        stats
            .depth
            .add(state, u64::try_from(row.try_get::<i64, _>(2)?).unwrap_or(0));
        if let Some(at) = instant(row, 3)? {
            stats.oldest_available = Some(at);
        }
        stats.finished_last_minute += u64::try_from(row.try_get::<i64, _>(4)?).unwrap_or(0);
    }
    let settings_rows = query(concat!(
        "SELECT queue, ",
        settings_columns!(),
        " FROM queue_settings WHERE tenant = $1 AND ($2::text IS NULL OR queue = $2)"
    ))
    .bind(tenant)
    .bind(queue)
    .fetch_all(pool)
    .await?;
    for row in &settings_rows {
        QueueStats::slot(&mut found, row.try_get(0)?).settings = settings(row, 1)?.0;
    }
    if let Some(queue) = queue {
        QueueStats::slot(&mut found, queue.to_string());
    }
    Ok(found.into_values().collect())
}
