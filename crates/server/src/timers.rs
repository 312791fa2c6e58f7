//! The timer loop: one task that sleeps until the earliest instant at which
//! the store has time-based work (a scheduled job falls due, a lease runs
//! out), then promotes and reaps. It is not a periodic scan: the store's
//! indexes answer "when is the next one?", and anything that creates an
//! earlier instant re-arms the loop at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use taskwheel_core::time::to_micros;
use tokio::sync::Notify;

use crate::engine::Engine;

/// Pause after a store error before trying again.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// The instant the loop is sleeping towards, and the bell that wakes it early.
pub(crate) struct TimerTarget {
    /// µs since the epoch; `i64::MAX` while the loop is recomputing, so every
    /// `arm` during that window rings the bell and nothing is missed.
    at: AtomicI64,
    bell: Notify,
}

impl Default for TimerTarget {
    fn default() -> Self {
        Self {
            at: AtomicI64::new(i64::MAX),
            bell: Notify::new(),
        }
    }
}

impl TimerTarget {
    /// Makes sure the loop wakes by `at`.
    pub(crate) fn arm(&self, at: Timestamp) {
        let at = to_micros(at);
        if at < self.at.fetch_min(at, Ordering::AcqRel) {
            self.bell.notify_one();
        }
    }
}

impl Engine {
    /// Runs until shutdown. Errors are logged and retried: the loop never dies.
    pub async fn run_timers(self: Arc<Self>) {
        let mut shutdown = self.shutdown_signal();
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.timers.at.store(i64::MAX, Ordering::Release);
            let sleep = match self.tick().await {
                Ok(Some(next)) => {
                    self.timers.arm(next);
                    let wait = self.now().duration_until(next);
                    Duration::try_from(wait)
                        .unwrap_or(Duration::ZERO)
                        .min(self.options.timer_ceiling)
                }
                Ok(None) => self.options.timer_ceiling,
                Err(e) => {
                    tracing::warn!(error = %e, "timer pass failed");
                    ERROR_PAUSE
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.timers.bell.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn arming_earlier_rings_and_later_does_not() {
        let target = TimerTarget::default();
        let t: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        target.arm(t);
        tokio::time::timeout(Duration::from_secs(1), target.bell.notified())
            .await
            .expect("first arm rings");
        target.arm("2026-01-01T00:00:20Z".parse().unwrap());
        assert!(
            tokio::time::timeout(Duration::from_secs(1), target.bell.notified())
                .await
                .is_err(),
            "a later instant does not ring"
        );
        target.arm("2026-01-01T00:00:05Z".parse().unwrap());
        tokio::time::timeout(Duration::from_secs(1), target.bell.notified())
            .await
            .expect("an earlier instant rings");
    }
}
