//! Cross-node wake-ups: PostgreSQL `LISTEN/NOTIFY` on the channel
//! [`CHANNEL`] (`taskwheel_available`).
//!
//! Every transaction that makes jobs available (submit of an immediate job,
//! promotion, a retry due at once, a reaped lease retried at once, snooze 0,
//! manual rerun, a schedule firing) sends `pg_notify('taskwheel_available',
//! '<tenant>/<queue>')` once per queue before it commits (see `tx.rs`).
//! PostgreSQL delivers it to every listening session at commit, on every
//! node, including the one that sent it.
//!
//! [`Listener`] holds one dedicated connection in `LISTEN taskwheel_available`
//! and forwards each notification as a [`QueueRef`] on a
//! `tokio::sync::broadcast` channel. When the connection is lost it reconnects
//! by itself (with backoff), and since notifications sent meanwhile are gone,
//! it then announces every queue that has available jobs, so no waiter sleeps
//! through a job that arrived during the gap. A receiver that falls behind
//! gets `RecvError::Lagged`; it should then wake all its waiters.
//!
//! The channel is database-wide: deployments in different schemas of one
//! database hear each other's queues, which costs only a spurious re-query.

use std::time::{Duration, Instant};

use sqlx_postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::error::Res;
use super::jobs;
use crate::QueueRef;

/// The notification channel.
pub const CHANNEL: &str = "taskwheel_available";

/// Notifications buffered per receiver before it lags.
const CAPACITY: usize = 4096;
/// Reconnection backoff bounds.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);

/// The running listener task; dropping it stops the task.
pub(super) struct Listener {
    sender: broadcast::Sender<QueueRef>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Connects, subscribes, and starts forwarding. Returns only once
    /// `LISTEN` is in effect, so the first receiver misses nothing committed
    /// after this returns.
    pub(super) async fn start(
        options: PgConnectOptions,
        pool: PgPool,
    ) -> Res<(Self, broadcast::Receiver<QueueRef>)> {
        // Its own pool of one connection, so LISTEN never takes a connection
        // from the operations' pool; sqlx uses it to reconnect.
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options);
        let first = subscribe(&own).await?;
        let (sender, receiver) = broadcast::channel(CAPACITY);
        let task = tokio::spawn(run(first, own, pool, sender.clone()));
        Ok((Self { sender, task }, receiver))
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<QueueRef> {
        self.sender.subscribe()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn subscribe(own: &PgPool) -> Res<PgListener> {
    let mut listener = PgListener::connect_with(own).await?;
    // Report a lost connection to us (`Ok(None)`) instead of reconnecting
    // inside `try_recv`: we must re-announce queues after any gap.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn run(first: PgListener, own: PgPool, pool: PgPool, sender: broadcast::Sender<QueueRef>) {
    let mut listener = Some(first);
    // Grows while connections keep failing or dropping at once, so a
    // flapping server is not hammered; a connection that held resets it.
    let mut backoff = RETRY_MIN;
    loop {
        let mut current = match listener.take() {
            Some(l) => l,
            None => match subscribe(&own).await {
                Ok(l) => {
                    tracing::info!("PostgreSQL LISTEN connection restored");
                    resync(&pool, &sender).await;
                    l
                }
                Err(e) => {
                    let e = crate::StoreError::from(e);
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot LISTEN on PostgreSQL");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    continue;
                }
            },
        };
        let connected = Instant::now();
        loop {
            match current.try_recv().await {
                Ok(Some(notification)) => match parse(notification.payload()) {
                    // No receiver right now is fine: nobody is waiting.
                    Some(queue) => drop(sender.send(queue)),
                    None => tracing::warn!(
                        payload = notification.payload(),
                        "ignoring a malformed {CHANNEL} notification"
                    ),
                },
                Ok(None) => {
                    tracing::warn!("PostgreSQL LISTEN connection lost; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL LISTEN connection failed; reconnecting");
                    break;
                }
            }
        }
        // Dropping it closes or returns its connection; the next turn opens a fresh one.
        drop(current);
        if connected.elapsed() >= STABLE {
            backoff = RETRY_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// Announces every queue with available jobs, to cover notifications lost
/// while the connection was down.
async fn resync(pool: &PgPool, sender: &broadcast::Sender<QueueRef>) {
    match jobs::available_queues(pool).await {
        Ok(queues) => {
            for queue in queues {
                drop(sender.send(queue));
            }
        }
        Err(e) => {
            let e = crate::StoreError::from(e);
            tracing::warn!(error = %e, "cannot list available queues after reconnecting");
        }
    }
}

/// `tenant/queue` back into a [`QueueRef`]; queue names never contain `/`.
fn parse(payload: &str) -> Option<QueueRef> {
    let (tenant, queue) = payload.rsplit_once('/')?;
    Some(QueueRef {
        tenant: tenant.to_string(),
        queue: queue.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        let q = QueueRef {
            tenant: "acme/eu".into(),
            queue: "emails".into(),
        };
        assert_eq!(parse(&super::super::tx::payload(&q)), Some(q));
        assert_eq!(parse("no-slash"), None);
    }
}
