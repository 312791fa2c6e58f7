//! REST API v1: a thin adapter from HTTP to the [`Engine`]. Handlers parse,
//! call one engine method, and shape the answer; they hold no logic of their own.

mod error;
mod extract;
mod jobs;
mod queues;
mod schedules;
mod work;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::json;

use taskwheel_core::wire::{ClusterView, NodeView};

use crate::engine::Engine;

async fn cluster(
    State(engine): State<Arc<Engine>>,
) -> Result<axum::Json<ClusterView>, error::ApiError> {
    let nodes = engine.cluster().await?;
    let mode = if nodes.is_empty() {
        "single"
    } else {
        "cluster"
    };
    Ok(axum::Json(ClusterView {
        mode: mode.to_string(),
        nodes: nodes
            .into_iter()
            .map(|n| NodeView {
                id: n.id,
                address: n.address,
                started_at: n.started_at,
                last_seen: n.last_seen,
                shards: n.shards,
            })
            .collect(),
    }))
}

/// The whole HTTP surface; tests can drive it without a socket.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/api/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/api/v1/jobs/batch", post(jobs::submit_batch))
        .route("/api/v1/jobs/complete", post(work::complete_batch))
        .route("/api/v1/jobs/{id}", get(jobs::get).delete(jobs::cancel))
        .route("/api/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/api/v1/jobs/{id}/heartbeat", post(work::heartbeat))
        .route("/api/v1/jobs/{id}/complete", post(work::complete))
        .route("/api/v1/jobs/{id}/fail", post(work::fail))
        .route("/api/v1/jobs/{id}/snooze", post(work::snooze))
        .route("/api/v1/lease", post(work::lease))
        .route(
            "/api/v1/schedules",
            post(schedules::create).get(schedules::list),
        )
        .route(
            "/api/v1/schedules/{key}",
            get(schedules::get)
                .patch(schedules::patch)
                .delete(schedules::delete),
        )
        .route("/api/v1/schedules/{key}/pause", post(schedules::pause))
        .route("/api/v1/schedules/{key}/resume", post(schedules::resume))
        .route("/api/v1/schedules/{key}/trigger", post(schedules::trigger))
        .route("/api/v1/schedules/{key}/next", get(schedules::next))
        .route("/api/v1/workflows", post(workflows::submit))
        .route(
            "/api/v1/workflows/{id}",
            get(workflows::get).delete(workflows::cancel),
        )
        .route("/api/v1/queues", get(queues::list))
        .route(
            "/api/v1/queues/{name}",
            get(queues::get).patch(queues::patch),
        )
        .route("/api/v1/cluster", get(cluster))
        .route(
            "/api/v1/stats",
            get(|State(engine): State<Arc<Engine>>| async move {
                axum::Json(json!({"lateness": engine.lateness()}))
            }),
        )
        .fallback(|| async { error::ApiError::not_found_route() })
        .with_state(engine)
}
