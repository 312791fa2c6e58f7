//! Queue endpoints: list with statistics, inspect one, change its flow control.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use taskwheel_core::queue::{QueueList, QueuePatch, QueueView};

use super::error::ApiError;
use super::extract::{JsonBody, Tenant};
use crate::engine::Engine;

type Answer<T> = Result<T, ApiError>;

pub(crate) async fn list(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
) -> Answer<Json<QueueList>> {
    let now = engine.now();
    let queues = engine.list_queues(&tenant).await?;
    Ok(Json(QueueList {
        queues: queues.into_iter().map(|q| QueueView::new(q, now)).collect(),
    }))
}

pub(crate) async fn get(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Answer<Json<QueueView>> {
    let stats = engine.get_queue(&tenant, &name).await?;
    Ok(Json(QueueView::new(stats, engine.now())))
}

pub(crate) async fn patch(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    JsonBody(patch): JsonBody<QueuePatch>,
) -> Answer<Json<QueueView>> {
    engine.patch_queue(&tenant, &name, patch).await?;
    let stats = engine.get_queue(&tenant, &name).await?;
    Ok(Json(QueueView::new(stats, engine.now())))
}
