//! Queue flow control on SQLite: the `queue_settings` rows, the picking of
//! jobs from a limited queue (fair across concurrency keys, within its
//! limits), the token-bucket wake-ups, and the queue statistics.
//!
//! Every mutation runs on the single writer thread, inside its transaction,
//! so the count of running jobs a lease reads cannot change before it writes.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use taskwheel_core::Job;
use taskwheel_core::queue::{
    QueuePatch, QueueSettings, QueueStats, RateLimit, RatePeriod, TokenBucket,
};
use taskwheel_core::time::{from_micros, to_micros};

use super::rows::{self, JOB_COLUMNS, to_millis};
use crate::{QueueRef, Result, StoreError, Woken};

/// The columns [`settings`] reads, in order.
const SETTINGS_COLUMNS: &str = "paused, concurrency, key_concurrency, rate_limit, rate_per_ms, rate_burst, \
     tokens, refilled_at";

/// The condition of a row with a limit (a paused queue counts as limited).
const LIMITED: &str = "(paused = 1 OR concurrency IS NOT NULL OR key_concurrency IS NOT NULL \
     OR rate_limit IS NOT NULL)";

/// A limited queue as a lease found it.
pub(super) struct Limited {
    pub(super) queue: String,
    pub(super) settings: QueueSettings,
    pub(super) bucket: Option<TokenBucket>,
}

/// Reads [`SETTINGS_COLUMNS`] starting at `first`.
fn settings(row: &Row<'_>, first: usize) -> Result<(QueueSettings, Option<TokenBucket>)> {
    let limit: Option<u32> = row.get(first + 3)?;
    let per: Option<i64> = row.get(first + 4)?;
    let rate = match (limit, per) {
        (Some(limit), Some(per)) => Some(RateLimit {
            limit,
            per: RatePeriod::from_millis(per)
                .ok_or_else(|| StoreError::Backend(format!("stored rate period {per}ms")))?,
            burst: row.get::<_, Option<u32>>(first + 5)?.unwrap_or(limit),
        }),
        _ => None,
    };
    let bucket = match (rate, row.get::<_, Option<f64>>(first + 6)?) {
        (Some(_), Some(tokens)) => Some(TokenBucket {
            tokens,
            refilled_at: from_micros(row.get::<_, Option<i64>>(first + 7)?.unwrap_or(0)),
        }),
        _ => None,
    };
    Ok((
        QueueSettings {
            paused: row.get(first)?,
            concurrency: row.get(first + 1)?,
            key_concurrency: row.get(first + 2)?,
            rate,
        },
        bucket,
    ))
}

/// The limited queues among `queues`.
pub(super) fn limited(conn: &Connection, tenant: &str, queues: &[String]) -> Result<Vec<Limited>> {
    let marks = vec!["?"; queues.len()].join(", ");
    let sql = format!(
        "SELECT queue, {SETTINGS_COLUMNS} FROM queue_settings WHERE tenant = ? AND queue IN ({marks}) \
         AND {LIMITED} ORDER BY queue"
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::with_capacity(queues.len() + 1);
    args.push(tenant.to_string().into());
    args.extend(queues.iter().map(|q| q.clone().into()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut found = stmt.query(params_from_iter(args))?;
    let mut limited = Vec::new();
    while let Some(row) = found.next()? {
        let (settings, bucket) = settings(row, 1)?;
        limited.push(Limited {
            queue: row.get(0)?,
            settings,
            bucket,
        });
    }
    Ok(limited)
}

/// Picks up to `want` jobs of a limited queue for a lease at `now`, within
/// its limits, and takes their tokens from the bucket; with the instant of
/// the next token if the bucket is now dry. The caller claims them in the
/// same transaction.
pub(super) fn pick(
    conn: &Connection,
    tenant: &str,
    q: &Limited,
    want: u32,
    now: Timestamp,
) -> Result<(Vec<Job>, Option<Timestamp>)> {
    if q.settings.paused {
        return Ok((Vec::new(), None));
    }
    let running: u64 = if q.settings.concurrency.is_some() {
        conn.prepare_cached(
            "SELECT COUNT(*) FROM jobs WHERE tenant = ?1 AND queue = ?2 AND state = 'running'",
        )?
        .query_row(params![tenant, q.queue], |row| row.get::<_, i64>(0))?
        .max(0) as u64
    } else {
        0
    };
    let bucket = q.settings.bucket_at(q.bucket, now);
    let allowance = q.settings.allowance(want, running, bucket.as_ref());
    let mut jobs = Vec::new();
    if allowance > 0 {
        // Round-robin across keys: each key's n-th job (by dispatch order)
        // comes before any key's (n+1)-th, within one priority; a key at its
        // `key_concurrency` contributes nothing more. Jobs without a key
        // share one turn.
        let ids: Vec<Vec<u8>> = conn
            .prepare_cached(
                "WITH busy AS (SELECT concurrency_key AS k, COUNT(*) AS n FROM jobs \
                 WHERE tenant = ?1 AND queue = ?2 AND state = 'running' AND concurrency_key IS NOT NULL \
                 GROUP BY concurrency_key), \
                 ranked AS (SELECT id, priority, run_at, concurrency_key AS k, ROW_NUMBER() OVER \
                 (PARTITION BY concurrency_key ORDER BY priority DESC, run_at, id) AS rn FROM jobs \
                 WHERE tenant = ?1 AND queue = ?2 AND state = 'available') \
                 SELECT r.id FROM ranked AS r LEFT JOIN busy AS b ON b.k = r.k \
                 WHERE ?3 IS NULL OR r.k IS NULL OR r.rn + COALESCE(b.n, 0) <= ?3 \
                 ORDER BY r.priority DESC, r.rn, r.run_at, r.id LIMIT ?4",
            )?
            .query_map(
                params![
                    tenant,
                    q.queue,
                    q.settings.key_concurrency,
                    i64::from(allowance)
                ],
                |row| row.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?;
        let mut load =
            conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?;
        for id in ids {
            jobs.push(load.query_row(params![id], |row| Ok(rows::job(row)))??);
        }
    }
    let mut refill_at = None;
    if let (Some(rate), Some(mut bucket)) = (q.settings.rate, bucket) {
        bucket.take(jobs.len() as u32);
        // A dry bucket: wake this queue's waiters when the next token is in.
        refill_at = (bucket.whole() == 0).then(|| rate.next_token_at(bucket));
        conn.prepare_cached(
            "UPDATE queue_settings SET tokens = ?3, refilled_at = ?4, wake_at = ?5 \
             WHERE tenant = ?1 AND queue = ?2",
        )?
        .execute(params![
            tenant,
            q.queue,
            bucket.tokens,
            to_micros(bucket.refilled_at),
            refill_at.map(to_micros)
        ])?;
    }
    Ok((jobs, refill_at))
}

/// Wakes the queues whose token bucket refilled by `now` after a lease found it dry.
pub(super) fn wake_refilled(conn: &Connection, now: Timestamp) -> Result<Woken> {
    let mut woken = Woken::default();
    let mut stmt = conn.prepare_cached(
        "UPDATE queue_settings SET wake_at = NULL WHERE wake_at <= ?1 RETURNING tenant, queue",
    )?;
    let mut rows = stmt.query(params![to_micros(now)])?;
    while let Some(row) = rows.next()? {
        woken.queues.insert(QueueRef {
            tenant: row.get(0)?,
            queue: row.get(1)?,
        });
    }
    Ok(woken)
}

pub(super) fn get(conn: &Connection, tenant: &str, queue: &str) -> Result<QueueSettings> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SETTINGS_COLUMNS} FROM queue_settings WHERE tenant = ?1 AND queue = ?2"
        ))?
        .query_row(params![tenant, queue], |row| Ok(settings(row, 0)))
        .optional()?
        .transpose()?
        .map(|(s, _)| s)
        .unwrap_or_default())
}

pub(super) fn update(
    conn: &Connection,
    tenant: &str,
    queue: &str,
    patch: &QueuePatch,
    now: Timestamp,
) -> Result<QueueSettings> {
    let current = get(conn, tenant, queue)?;
    let (next, rate_changed) = patch
        .apply_to(current)
        .map_err(|e| StoreError::Backend(format!("unvalidated queue settings: {e}")))?;
    let rate = next.rate;
    conn.prepare_cached(
        "INSERT INTO queue_settings (tenant, queue, paused, concurrency, key_concurrency, rate_limit, \
         rate_per_ms, rate_burst, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (tenant, queue) DO UPDATE SET paused = ?3, concurrency = ?4, key_concurrency = ?5, \
         rate_limit = ?6, rate_per_ms = ?7, rate_burst = ?8, updated_at = ?9",
    )?
    .execute(params![
        tenant,
        queue,
        next.paused,
        next.concurrency,
        next.key_concurrency,
        rate.map(|r| r.limit),
        rate.map(|r| to_millis(r.per.duration())),
        rate.map(|r| r.burst),
        to_micros(now),
    ])?;
    if rate_changed {
        let bucket = rate.map(|r| r.full(now));
        conn.prepare_cached(
            "UPDATE queue_settings SET tokens = ?3, refilled_at = ?4, wake_at = NULL \
             WHERE tenant = ?1 AND queue = ?2",
        )?
        .execute(params![
            tenant,
            queue,
            bucket.map(|b| b.tokens),
            bucket.map(|b| to_micros(b.refilled_at)),
        ])?;
    }
    Ok(next)
}

pub(super) fn stats(
    conn: &Connection,
    tenant: &str,
    queue: Option<&str>,
    now: Timestamp,
) -> Result<Vec<QueueStats>> {
    let mut found: BTreeMap<String, QueueStats> = BTreeMap::new();
    let minute_ago = to_micros(now) - 60_000_000;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT queue, state, COUNT(*), MIN(CASE WHEN state = 'available' THEN run_at END), \
             SUM(CASE WHEN finished_at >= ?3 THEN 1 ELSE 0 END) FROM jobs \
             WHERE tenant = ?1 AND (?2 IS NULL OR queue = ?2) GROUP BY queue, state",
        )?;
        let mut rows = stmt.query(params![tenant, queue, minute_ago])?;
        while let Some(row) = rows.next()? {
            let stats = QueueStats::slot(&mut found, row.get(0)?);
            let state: String = row.get(1)?;
            let n: i64 = row.get(2)?;
            stats.depth.add(rows::parse_state(&state)?, n.max(0) as u64);
            if let Some(at) = row.get::<_, Option<i64>>(3)? {
                stats.oldest_available = Some(from_micros(at));
            }
            stats.finished_last_minute += row.get::<_, Option<i64>>(4)?.unwrap_or(0).max(0) as u64;
        }
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT queue, {SETTINGS_COLUMNS} FROM queue_settings WHERE tenant = ?1 AND (?2 IS NULL OR queue = ?2)"
    ))?;
    let mut rows = stmt.query(params![tenant, queue])?;
    while let Some(row) = rows.next()? {
        QueueStats::slot(&mut found, row.get(0)?).settings = settings(row, 1)?.0;
    }
    if let Some(queue) = queue {
        QueueStats::slot(&mut found, queue.to_string());
    }
    Ok(found.into_values().collect())
}
