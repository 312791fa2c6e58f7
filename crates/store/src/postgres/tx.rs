//! [`Tx`]: one operation's transaction, plus the queues it made jobs
//! available in. Committing sends one `pg_notify` per such queue first, in the
//! same transaction, so other nodes hear of the jobs exactly when they become
//! visible (PostgreSQL delivers notifications at commit, and drops them on
//! rollback).

use std::collections::BTreeSet;

use sqlx_core::transaction::Transaction;
use sqlx_postgres::{PgConnection, PgPool, Postgres};

use super::error::{Fault, Res};
use super::listen::CHANNEL;
use crate::{QueueRef, StoreError};

pub(super) struct Tx {
    inner: Transaction<'static, Postgres>,
    /// Deduplicated: a transaction that frees 1000 jobs in one queue sends one notification.
    available: BTreeSet<QueueRef>,
}

impl Tx {
    pub(super) async fn begin(pool: &PgPool) -> Res<Self> {
        // BEGIN is the first thing a pooled connection sends, so a connection
        // that died while idle fails here, before anything ran.
        Ok(Self {
            inner: pool.begin().await?,
            available: BTreeSet::new(),
        })
    }

    pub(super) fn conn(&mut self) -> &mut PgConnection {
        &mut self.inner
    }

    /// Records that jobs became available in `tenant`/`queue`.
    pub(super) fn wake(&mut self, tenant: &str, queue: &str) {
        self.available.insert(QueueRef {
            tenant: tenant.to_string(),
            queue: queue.to_string(),
        });
    }

    pub(super) async fn commit(mut self) -> Res<()> {
        if !self.available.is_empty() {
            let payloads: Vec<String> = self.available.iter().map(payload).collect();
            sqlx_core::query::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
                .bind(CHANNEL)
                .bind(payloads)
                .execute(&mut *self.inner)
                .await?;
        }
        self.inner.commit().await.map_err(|e| match Fault::from(e) {
            // The COMMIT may or may not have reached the server: never run the
            // transaction again on our own.
            Fault::Disconnected(message) => Fault::Store(StoreError::Unavailable(format!(
                "{message} (while committing: the operation may or may not have been applied)"
            ))),
            other => other,
        })
    }

    /// Ends the transaction without effect, before the operation answers:
    /// its row locks must not linger until the pool gets round to it, since
    /// a leaser skips locked rows. A failure here is only logged: the server
    /// rolls back anyway when the connection goes.
    pub(super) async fn rollback(self) {
        if let Err(e) = self.inner.rollback().await {
            tracing::debug!(error = %e, "rollback failed");
        }
    }
}

/// The notification payload of a queue: `tenant/queue`. Queue names never
/// contain `/` (the API rejects them), so the last `/` splits it back.
pub(super) fn payload(q: &QueueRef) -> String {
    format!("{}/{}", q.tenant, q.queue)
}
