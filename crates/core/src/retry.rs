//! How often a job is tried and how long to wait between tries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::DurationSpec;

/// The shape of the wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// `base * 2^(n-1)` after the n-th failed attempt, capped at `max`.
    #[default]
    Exponential,
    /// `base` every time.
    Fixed,
    /// Retry at once.
    None,
}

/// A job's retry policy. Every field has a default, so `{}` is a valid policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. `1` means no retries (at most once).
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub base: DurationSpec,
    pub max: DurationSpec,
    /// Spread each wait uniformly by up to this fraction either way (0 to 1).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff::Exponential,
            base: DurationSpec(Duration::from_secs(1)),
            max: DurationSpec(Duration::from_secs(3600)),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// Checks the policy; the error names the field at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_attempts == 0 {
            return Err(("max_attempts", "must be at least 1".into()));
        }
        if self.max_attempts > 1000 {
            return Err(("max_attempts", "must be at most 1000".into()));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err((
                "jitter",
                format!("{} is not a fraction between 0 and 1", self.jitter),
            ));
        }
        if self.max.0 < self.base.0 {
            return Err((
                "max",
                format!("{} is shorter than base {}", self.max, self.base),
            ));
        }
        Ok(())
    }

    /// The wait after the `failed_attempts`-th failure (1-based). `sample` is a
    /// uniform random number in `[0, 1)` supplied by the caller, so this stays pure.
    pub fn delay(&self, failed_attempts: u32, sample: f64) -> Duration {
        let nominal = match self.backoff {
            Backoff::None => return Duration::ZERO,
            Backoff::Fixed => self.base.0,
            Backoff::Exponential => {
                let exp = failed_attempts.saturating_sub(1).min(63);
                self.base
                    .0
                    .checked_mul(1u32.checked_shl(exp).unwrap_or(u32::MAX))
                    .unwrap_or(self.max.0)
                    .min(self.max.0)
            }
        };
        let spread = 1.0 + self.jitter * (2.0 * sample.clamp(0.0, 1.0) - 1.0);
        nominal.mul_f64(spread).min(self.max.0.max(self.base.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, base: u64, max: u64, jitter: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            backoff,
            base: DurationSpec(Duration::from_secs(base)),
            max: DurationSpec(Duration::from_secs(max)),
            jitter,
        }
    }

    #[test]
    fn exponential_doubles_and_caps() {
        let p = policy(Backoff::Exponential, 2, 60, 0.0);
        let waits: Vec<u64> = (1..=7).map(|n| p.delay(n, 0.5).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            p.delay(500, 0.5).as_secs(),
            60,
            "huge attempt counts saturate"
        );
    }

    #[test]
    fn fixed_and_none() {
        assert_eq!(
            policy(Backoff::Fixed, 7, 60, 0.0).delay(5, 0.9).as_secs(),
            7
        );
        assert_eq!(
            policy(Backoff::None, 7, 60, 0.5).delay(5, 0.9),
            Duration::ZERO
        );
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let p = policy(Backoff::Fixed, 10, 60, 0.2);
        assert_eq!(p.delay(1, 0.0), Duration::from_secs(8));
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(10));
        assert!(p.delay(1, 0.999) <= Duration::from_secs(12));
        assert!(p.delay(1, 0.999) > Duration::from_millis(11_900));
    }

    #[test]
    fn jitter_never_exceeds_max() {
        let p = policy(Backoff::Exponential, 10, 20, 1.0);
        for n in 1..10 {
            assert!(p.delay(n, 0.999) <= Duration::from_secs(20));
        }
    }

    #[test]
    fn validation_names_the_field() {
        let p = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.validate().unwrap_err().0, "max_attempts");
        let p = RetryPolicy {
            jitter: 1.5,
            ..RetryPolicy::default()
        };
        assert_eq!(p.validate().unwrap_err().0, "jitter");
        let p = policy(Backoff::Exponential, 10, 5, 0.0);
        assert_eq!(p.validate().unwrap_err().0, "max");
        assert!(RetryPolicy::default().validate().is_ok());
    }

    #[test]
    fn empty_object_is_the_default_policy() {
        let p: RetryPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, RetryPolicy::default());
        assert!(serde_json::from_str::<RetryPolicy>(r#"{"tries": 3}"#).is_err());
    }
}
