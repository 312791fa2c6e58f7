//! This node's place in a cluster: it keeps its scheduler shard leases
//! renewed (the timer loop works only on the shards it holds) and keeps its
//! clock in step with the database's, so every decision about time (lease
//! expiry, due jobs, schedule ticks) is the database's, not the node's.
//!
//! On a single-node store (SQLite) neither loop runs: the store says it has no
//! shards, and the node's own clock is the only one.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use taskwheel_core::Clock;
use taskwheel_store::{NodeInfo, ShardClaim};
use tokio::time::Instant;

use crate::engine::Engine;

/// How often the clock offset to the database is measured.
const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(10);

/// Settings of a node that shares its database with others.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub node: NodeInfo,
    /// How long a shard lease lasts without renewal: the takeover time after a node dies.
    pub shard_ttl: Duration,
}

/// The shards this node may work on, and when it last heard so from the database.
#[derive(Debug, Clone)]
pub(crate) struct HeldShards {
    pub(crate) claim: ShardClaim,
    renewed: Instant,
}

impl HeldShards {
    pub(crate) fn new(claim: ShardClaim) -> Self {
        Self {
            claim,
            renewed: Instant::now(),
        }
    }

    /// The claim, unless it has not been renewed for `ttl`: then the leases may
    /// already belong to others, and this node must stop at once.
    pub(crate) fn current(&self, ttl: Duration) -> ShardClaim {
        if self.renewed.elapsed() < ttl {
            self.claim.clone()
        } else {
            ShardClaim {
                owned: Vec::new(),
                ..self.claim.clone()
            }
        }
    }
}

/// A clock that reads the node's clock and adds the measured offset to the
/// database's clock.
pub struct DatabaseClock {
    local: Arc<dyn Clock>,
    offset_micros: AtomicI64,
}

impl DatabaseClock {
    pub fn new(local: Arc<dyn Clock>) -> Self {
        Self {
            local,
            offset_micros: AtomicI64::new(0),
        }
    }

    /// Records a measurement: `local_before` and `local_after` bracket the read of `database`.
    pub fn observe(&self, local_before: Timestamp, database: Timestamp, local_after: Timestamp) {
        let rtt = local_after.duration_since(local_before);
        let midpoint = local_before + rtt / 2;
        let offset = database.duration_since(midpoint).as_micros();
        self.offset_micros
            .store(i64::try_from(offset).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn local(&self) -> &Arc<dyn Clock> {
        &self.local
    }
}

impl Clock for DatabaseClock {
    fn now(&self) -> Timestamp {
        let offset = SignedDuration::from_micros(self.offset_micros.load(Ordering::Relaxed));
        self.local
            .now()
            .checked_add(offset)
            .unwrap_or(self.local.now())
    }
}

impl Engine {
    /// Keeps this node's shard leases renewed until shutdown, then gives them up.
    pub(crate) async fn run_membership(self: Arc<Self>, options: ClusterOptions) {
        let mut shutdown = self.shutdown_signal();
        let every = options.shard_ttl / 3;
        loop {
            match self
                .store
                .claim_shards(&options.node, options.shard_ttl)
                .await
            {
                Ok(Some(claim)) => {
                    let gained = {
                        let mut held = self.shards.lock().expect("shards lock");
                        let before = held
                            .as_ref()
                            .map(|h| h.claim.owned.clone())
                            .unwrap_or_default();
                        let gained = claim.owned.iter().any(|s| !before.contains(s));
                        *held = Some(HeldShards::new(claim));
                        gained
                    };
                    if gained {
                        // Work may be due on the new shards right now.
                        self.timers.arm(Timestamp::MIN);
                    }
                }
                Ok(None) => return,
                Err(e) => tracing::warn!(error = %e, "cannot renew shard leases"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => break,
            }
        }
        if let Err(e) = self.store.release_shards(&options.node.id).await {
            tracing::warn!(error = %e, "cannot release shard leases at shutdown");
        }
    }

    /// Measures the offset of `clock` to the database's clock, until shutdown.
    pub async fn run_clock_sync(self: Arc<Self>, clock: Arc<DatabaseClock>) {
        let mut shutdown = self.shutdown_signal();
        loop {
            let before = clock.local().now();
            match self.store.database_now().await {
                Ok(Some(database)) => clock.observe(before, database, clock.local().now()),
                Ok(None) => return,
                Err(e) => tracing::warn!(error = %e, "cannot read the database clock"),
            }
            tokio::select! {
                _ = tokio::time::sleep(CLOCK_SYNC_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskwheel_core::ManualClock;

    #[test]
    fn a_skewed_node_reads_the_database_clock() {
        let t = |s: &str| -> Timestamp { s.parse().unwrap() };
        // The node's clock runs 5 minutes fast.
        let local = Arc::new(ManualClock::new(t("2026-01-01T00:05:00Z")));
        let clock = DatabaseClock::new(local.clone());
        clock.observe(
            t("2026-01-01T00:05:00Z"),
            t("2026-01-01T00:00:00.001Z"),
            t("2026-01-01T00:05:00.002Z"),
        );
        assert_eq!(clock.now(), t("2026-01-01T00:00:00Z"));
        local.advance(Duration::from_secs(30));
        assert_eq!(clock.now(), t("2026-01-01T00:00:30Z"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unrenewed_claim_is_dropped_after_its_ttl() {
        let claim = ShardClaim {
            node: "n".into(),
            shard_count: 16,
            owned: vec![(1, 3)],
        };
        let held = HeldShards::new(claim);
        assert_eq!(held.current(Duration::from_secs(5)).owned, vec![(1, 3)]);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(held.current(Duration::from_secs(5)).owned.is_empty());
    }
}
