//! # taskwheel-server
//!
//! The running service: the [`Engine`] (use cases on top of a store), the
//! in-memory helpers it keeps in step with the store, and the HTTP adapter.
//!
//! ## Layout
//! - [`engine`]: validation, calls into the store, wake-ups after each change.
//! - `dispatch`: long-poll waiters per queue, woken when jobs become available.
//! - `schedules`: the schedule use cases of the engine (create, patch, pause, trigger, next).
//! - `queues`: queue statistics and flow-control settings (pause, concurrency, rate).
//! - `cluster`: with a shared database: shard leases for the timer work, and the database clock.
//! - `timers`: one task sleeping until the next due job, schedule tick or lease expiry.
//! - `lateness`: how late due work becomes available (a histogram).
//! - [`api`]: REST API v1 (axum), a thin adapter over the engine.
//!
//! ## Threading model
//! Request handlers and the timer loop run on the tokio runtime and share the
//! engine through an `Arc`. Store calls hop to the store's own threads (for
//! SQLite: one writer thread and a reader pool), so no handler blocks the runtime.
//!
//! Architecture invariant: the server holds no state that the store does not
//! also hold; after a crash, [`serve`] rebuilds waiters and timers from it.

pub mod api;
mod cluster;
mod dispatch;
pub mod engine;
mod lateness;
mod queues;
mod schedules;
mod timers;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use cluster::{ClusterOptions, DatabaseClock};
pub use engine::{Engine, EngineError, EngineOptions};
pub use lateness::LatenessSummary;

/// Serves the API on `listener` and runs the timer loop until `shutdown`
/// resolves; then stops taking requests, ends long-polls and returns once
/// in-flight requests are answered.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let timers = tokio::spawn(Arc::clone(&engine).run_timers());
    let membership = engine
        .options
        .cluster
        .clone()
        .map(|options| tokio::spawn(Arc::clone(&engine).run_membership(options)));
    let app = api::router(Arc::clone(&engine));
    let stopping = Arc::clone(&engine);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.shut_down();
        })
        .await;
    engine.shut_down();
    let _ = timers.await;
    if let Some(membership) = membership {
        let _ = membership.await;
    }
    result
}
