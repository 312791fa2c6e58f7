//! Where "now" comes from. Everything that depends on time takes a [`Clock`]
//! (or a plain `now` argument), so tests move time forward instead of sleeping.

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// A source of the current instant.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to; for tests of time-based logic.
#[derive(Debug)]
pub struct ManualClock {
    // A std Mutex: the critical section is a copy, never held across an await.
    now: Mutex<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().expect("clock lock");
        *now = add(*now, by);
    }

    pub fn set(&self, to: Timestamp) {
        *self.now.lock().expect("clock lock") = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().expect("clock lock")
    }
}

/// `t + d`, saturating at the largest representable instant.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    let signed = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_add(signed).unwrap_or(Timestamp::MAX)
}

/// `t - d`, saturating at the smallest representable instant.
pub fn sub(t: Timestamp, d: Duration) -> Timestamp {
    let signed = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_sub(signed).unwrap_or(Timestamp::MIN)
}

/// Microseconds since the Unix epoch: the storage representation of instants.
pub fn to_micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// The inverse of [`to_micros`]; out-of-range values clamp to the representable range.
pub fn from_micros(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(if us < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), "2026-01-01T00:00:01.5Z".parse().unwrap());
    }

    #[test]
    fn micros_round_trip() {
        let t: Timestamp = "2026-03-08T07:30:00.123456Z".parse().unwrap();
        assert_eq!(from_micros(to_micros(t)), t);
    }
}
