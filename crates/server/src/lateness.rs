//! How late due work is made available: for each job a timer pass makes
//! available (a delayed job promoted, a schedule tick fired), the time from
//! its due instant to the moment the pass committed. Kept as a histogram so
//! tail figures are exact; served by `GET /api/v1/stats`.

use std::sync::Mutex;

use hdrhistogram::Histogram;
use jiff::Timestamp;
use serde::Serialize;

/// Lateness figures in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatenessSummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub(crate) struct Lateness {
    // A std Mutex: recording is a few array writes, never held across an await.
    micros: Mutex<Histogram<u64>>,
}

impl Default for Lateness {
    fn default() -> Self {
        Self {
            micros: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            ),
        }
    }
}

impl Lateness {
    pub(crate) fn record(&self, due: &[Timestamp], now: Timestamp) {
        let mut h = self.micros.lock().expect("lateness lock");
        for d in due {
            let late = now.duration_since(*d).as_micros().max(1) as u64;
            h.saturating_record(late);
        }
    }

    pub(crate) fn summary(&self) -> LatenessSummary {
        let h = self.micros.lock().expect("lateness lock");
        let ms = |us: u64| us as f64 / 1000.0;
        LatenessSummary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_time_from_due_to_now() {
        let l = Lateness::default();
        let now: Timestamp = "2026-01-01T00:00:01Z".parse().unwrap();
        let due = [
            "2026-01-01T00:00:00.998Z".parse().unwrap(),
            "2026-01-01T00:00:00.990Z".parse().unwrap(),
        ];
        l.record(&due, now);
        let s = l.summary();
        assert_eq!(s.count, 2);
        assert!((s.max_ms - 10.0).abs() < 0.1, "{s:?}");
        assert!((s.p50_ms - 2.0).abs() < 0.1, "{s:?}");
    }
}
