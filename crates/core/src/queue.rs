//! Queues as operators steer them: the per-queue flow-control settings
//! (paused, concurrency, per-key concurrency, rate), the token bucket behind
//! the rate limit, the `PATCH /api/v1/queues/{name}` request that changes
//! them, and the views `GET /api/v1/queues` answers with.
//!
//! The stores enforce these settings inside their lease transaction; this
//! module only says what they mean (pure arithmetic, time as an argument).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::FieldError;
use crate::job::JobState;
use crate::time::add;

/// The highest accepted concurrency or rate figure.
pub const MAX_LIMIT: u32 = 1_000_000;

/// Rounding slack in token arithmetic: far below one job, far above float error.
const TOKEN_EPSILON: f64 = 1e-6;

/// The period a rate limit counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RatePeriod {
    Second,
    Minute,
}

impl RatePeriod {
    pub fn duration(self) -> Duration {
        match self {
            RatePeriod::Second => Duration::from_secs(1),
            RatePeriod::Minute => Duration::from_secs(60),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RatePeriod::Second => "1s",
            RatePeriod::Minute => "1m",
        }
    }

    /// The period whose length is `ms` milliseconds, as stored.
    pub fn from_millis(ms: i64) -> Option<Self> {
        match ms {
            1000 => Some(RatePeriod::Second),
            60_000 => Some(RatePeriod::Minute),
            _ => None,
        }
    }
}

impl fmt::Display for RatePeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RatePeriod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1s" | "s" | "second" => Ok(RatePeriod::Second),
            "1m" | "m" | "minute" => Ok(RatePeriod::Minute),
            other => Err(format!("`{other}` is not a rate period (`1s` or `1m`)")),
        }
    }
}

impl Serialize for RatePeriod {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RatePeriod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Jobs started per period, through a token bucket: `limit` tokens refill
/// evenly over each `per`, the bucket holds at most `burst`, and every lease
/// of a job takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub limit: u32,
    pub per: RatePeriod,
    /// Defaults to `limit`.
    #[serde(default)]
    pub burst: u32,
}

impl RateLimit {
    /// Checks the figures; a zero `burst` becomes `limit`.
    pub fn validated(mut self) -> Result<Self, FieldError> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(FieldError::new(
                "rate.limit",
                format!("must be 1 to {MAX_LIMIT}"),
            ));
        }
        if self.burst == 0 {
            self.burst = self.limit;
        }
        if self.burst > MAX_LIMIT {
            return Err(FieldError::new(
                "rate.burst",
                format!("must be 1 to {MAX_LIMIT}"),
            ));
        }
        Ok(self)
    }

    /// The period in microseconds.
    fn period_micros(&self) -> f64 {
        self.per.duration().as_micros() as f64
    }

    /// The bucket as it stands at `now`: refilled for the time since it was
    /// last looked at, capped at `burst`. A clock that went back refills nothing.
    pub fn refill(&self, bucket: TokenBucket, now: Timestamp) -> TokenBucket {
        let elapsed = now
            .as_microsecond()
            .saturating_sub(bucket.refilled_at.as_microsecond())
            .max(0) as f64;
        // Multiply before dividing: whole periods give whole tokens exactly.
        let gained = elapsed * f64::from(self.limit) / self.period_micros();
        TokenBucket {
            tokens: (bucket.tokens + gained).min(f64::from(self.burst)),
            refilled_at: bucket.refilled_at.max(now),
        }
    }

    /// When a refilled `bucket` will next hold a whole token.
    pub fn next_token_at(&self, bucket: TokenBucket) -> Timestamp {
        let missing = (1.0 - bucket.tokens).max(0.0);
        let micros =
            (missing * self.period_micros() / f64::from(self.limit) - TOKEN_EPSILON).ceil();
        add(
            bucket.refilled_at,
            Duration::from_micros((micros as u64).max(1)),
        )
    }

    /// A full bucket, as a new or changed rate starts with.
    pub fn full(&self, now: Timestamp) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(self.burst),
            refilled_at: now,
        }
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} burst {}", self.limit, self.per, self.burst)
    }
}

/// The state of a rate limit, kept in the queue's settings row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    pub tokens: f64,
    pub refilled_at: Timestamp,
}

impl TokenBucket {
    /// How many jobs the bucket lets start now (a hair under a whole token,
    /// left by floating-point rounding, counts as whole).
    pub fn whole(&self) -> u32 {
        (self.tokens + TOKEN_EPSILON)
            .max(0.0)
            .floor()
            .min(f64::from(u32::MAX)) as u32
    }

    /// Takes `n` tokens (at most what is there).
    pub fn take(&mut self, n: u32) {
        self.tokens = (self.tokens - f64::from(n)).max(0.0);
    }
}

/// A queue's flow-control settings. A queue without stored settings has the
/// default: running, no limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueSettings {
    pub paused: bool,
    /// The most running jobs of the queue across all nodes; `None` = unlimited.
    pub concurrency: Option<u32>,
    /// Jobs started per period; `None` = unlimited.
    pub rate: Option<RateLimit>,
    /// The most running jobs per concurrency key; `None` = unlimited.
    pub key_concurrency: Option<u32>,
}

impl QueueSettings {
    /// Whether a lease must consult (and lock) these settings; a queue that is
    /// not limited takes the plain dequeue path.
    pub fn is_limited(&self) -> bool {
        self.paused
            || self.concurrency.is_some()
            || self.rate.is_some()
            || self.key_concurrency.is_some()
    }

    /// How many jobs a lease may start in this queue now, at most `want`,
    /// with `running` jobs of the queue running and the rate bucket as
    /// refilled to the lease's instant. Per-key limits are applied while
    /// picking the jobs.
    pub fn allowance(&self, want: u32, running: u64, bucket: Option<&TokenBucket>) -> u32 {
        if self.paused {
            return 0;
        }
        let mut allowed = want;
        if let Some(limit) = self.concurrency {
            let free = u64::from(limit).saturating_sub(running);
            allowed = allowed.min(u32::try_from(free).unwrap_or(u32::MAX));
        }
        if let (Some(_), Some(bucket)) = (self.rate, bucket) {
            allowed = allowed.min(bucket.whole());
        }
        allowed
    }

    /// The rate bucket as it stands at `now`, from the stored one (a full
    /// bucket if none is stored yet); `None` without a rate.
    pub fn bucket_at(&self, stored: Option<TokenBucket>, now: Timestamp) -> Option<TokenBucket> {
        let rate = self.rate?;
        Some(rate.refill(stored.unwrap_or_else(|| rate.full(now)), now))
    }
}

/// `PATCH /api/v1/queues/{name}`: each field absent = unchanged, `null` =
/// unlimited, a value = the new limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub concurrency: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub rate: Option<Option<RateLimit>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_concurrency: Option<Option<u32>>,
}

/// A field that is present, possibly `null` (absent stays `None` by `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl QueuePatch {
    /// Lays the patch over `current`; `rate_changed` says whether the token
    /// bucket must start afresh.
    pub fn apply_to(&self, current: QueueSettings) -> Result<(QueueSettings, bool), FieldError> {
        let limit = |field: &str, v: Option<u32>| match v {
            Some(n) if n == 0 || n > MAX_LIMIT => Err(FieldError::new(
                field,
                format!("must be 1 to {MAX_LIMIT}, or null for unlimited"),
            )),
            other => Ok(other),
        };
        let mut next = current;
        if let Some(paused) = self.paused {
            next.paused = paused;
        }
        if let Some(c) = self.concurrency {
            next.concurrency = limit("concurrency", c)?;
        }
        if let Some(k) = self.key_concurrency {
            next.key_concurrency = limit("key_concurrency", k)?;
        }
        if let Some(rate) = self.rate {
            next.rate = rate.map(RateLimit::validated).transpose()?;
        }
        Ok((next, next.rate != current.rate))
    }
}

/// Jobs of a queue per state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueDepth {
    pub scheduled: u64,
    pub available: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Waiting for parents (`depends_on`).
    pub blocked: u64,
    /// A parent failed and the job will not run.
    pub skipped: u64,
}

impl QueueDepth {
    pub fn add(&mut self, state: JobState, n: u64) {
        let slot = match state {
            JobState::Scheduled => &mut self.scheduled,
            JobState::Available => &mut self.available,
            JobState::Running => &mut self.running,
            JobState::Succeeded => &mut self.succeeded,
            JobState::Failed => &mut self.failed,
            JobState::Cancelled => &mut self.cancelled,
            JobState::Blocked => &mut self.blocked,
            JobState::Skipped => &mut self.skipped,
        };
        *slot += n;
    }
}

/// What the store knows about a queue at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueStats {
    pub name: String,
    pub depth: QueueDepth,
    /// The due time of the oldest available job.
    pub oldest_available: Option<Timestamp>,
    /// Jobs that reached a final state in the last minute.
    pub finished_last_minute: u64,
    pub settings: QueueSettings,
}

impl QueueStats {
    /// The entry of queue `name` in `found`, added empty if missing.
    pub fn slot(
        found: &mut std::collections::BTreeMap<String, QueueStats>,
        name: String,
    ) -> &mut QueueStats {
        found.entry(name.clone()).or_insert_with(|| QueueStats {
            name,
            ..QueueStats::default()
        })
    }
}

/// A queue as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    pub name: String,
    pub paused: bool,
    pub concurrency: Option<u32>,
    pub rate: Option<RateLimit>,
    pub key_concurrency: Option<u32>,
    pub depth: QueueDepth,
    /// How long the oldest available job has been due, in seconds (0 when none).
    pub oldest_pending_age_secs: f64,
    /// Jobs that reached a final state in the last minute.
    pub finished_last_minute: u64,
}

impl QueueView {
    pub fn new(stats: QueueStats, now: Timestamp) -> Self {
        let age = stats
            .oldest_available
            .map(|at| (now.as_microsecond() - at.as_microsecond()).max(0) as f64 / 1e6)
            .unwrap_or(0.0);
        Self {
            name: stats.name,
            paused: stats.settings.paused,
            concurrency: stats.settings.concurrency,
            rate: stats.settings.rate,
            key_concurrency: stats.settings.key_concurrency,
            depth: stats.depth,
            oldest_pending_age_secs: age,
            finished_last_minute: stats.finished_last_minute,
        }
    }
}

/// `GET /api/v1/queues`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueList {
    pub queues: Vec<QueueView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn bucket_refills_evenly_and_caps_at_burst() {
        let rate = RateLimit {
            limit: 10,
            per: RatePeriod::Second,
            burst: 5,
        };
        let t0 = at("2026-01-01T00:00:00Z");
        let mut b = rate.full(t0);
        assert_eq!(b.whole(), 5);
        b.take(5);
        assert_eq!(b.whole(), 0);
        assert_eq!(rate.next_token_at(b), at("2026-01-01T00:00:00.1Z"));
        let b2 = rate.refill(b, at("2026-01-01T00:00:00.25Z"));
        assert_eq!(b2.whole(), 2);
        assert_eq!(rate.refill(b, at("2026-01-01T00:01:00Z")).whole(), 5);
        // A clock that went back refills nothing and does not move the mark back.
        let back = rate.refill(b2, t0);
        assert_eq!(back.whole(), 2);
        assert_eq!(back.refilled_at, b2.refilled_at);
    }

    #[test]
    fn allowance_is_the_tightest_limit() {
        let t0 = at("2026-01-01T00:00:00Z");
        let rate = RateLimit {
            limit: 3,
            per: RatePeriod::Second,
            burst: 3,
        };
        let s = QueueSettings {
            concurrency: Some(5),
            rate: Some(rate),
            ..QueueSettings::default()
        };
        assert_eq!(s.allowance(10, 0, Some(&rate.full(t0))), 3);
        assert_eq!(s.allowance(10, 4, Some(&rate.full(t0))), 1);
        assert_eq!(s.allowance(10, 9, Some(&rate.full(t0))), 0);
        assert_eq!(s.allowance(2, 0, Some(&rate.full(t0))), 2);
        let paused = QueueSettings {
            paused: true,
            ..QueueSettings::default()
        };
        assert_eq!(paused.allowance(10, 0, None), 0);
        assert_eq!(QueueSettings::default().allowance(7, 100, None), 7);
    }

    #[test]
    fn patch_sets_clears_and_names_bad_fields() {
        let patch: QueuePatch =
            serde_json::from_value(json!({"concurrency": 3, "rate": {"limit": 100, "per": "1m"}}))
                .unwrap();
        let (s, rate_changed) = patch.apply_to(QueueSettings::default()).unwrap();
        assert_eq!(s.concurrency, Some(3));
        assert_eq!(s.rate.unwrap().burst, 100, "burst defaults to limit");
        assert!(rate_changed);
        assert!(s.is_limited());
        let clear: QueuePatch =
            serde_json::from_value(json!({"concurrency": null, "rate": null})).unwrap();
        let (s, _) = clear.apply_to(s).unwrap();
        assert_eq!(s, QueueSettings::default());
        assert!(!s.is_limited());
        let untouched: QueuePatch = serde_json::from_value(json!({"paused": true})).unwrap();
        let (p, rate_changed) = untouched
            .apply_to(QueueSettings {
                concurrency: Some(2),
                ..QueueSettings::default()
            })
            .unwrap();
        assert_eq!(
            (p.paused, p.concurrency, rate_changed),
            (true, Some(2), false)
        );
        for (body, field) in [
            (json!({"concurrency": 0}), "concurrency"),
            (json!({"key_concurrency": 0}), "key_concurrency"),
            (json!({"rate": {"limit": 0, "per": "1s"}}), "rate.limit"),
            (
                json!({"rate": {"limit": 1, "per": "1s", "burst": 2_000_000}}),
                "rate.burst",
            ),
        ] {
            let patch: QueuePatch = serde_json::from_value(body.clone()).unwrap();
            let err = patch.apply_to(QueueSettings::default()).unwrap_err();
            assert_eq!(err.field, field, "{body}");
        }
        assert!(
            serde_json::from_value::<QueuePatch>(json!({"rate": {"limit": 1, "per": "1h"}}))
                .is_err()
        );
    }
}
