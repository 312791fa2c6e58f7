//! Schedule endpoints: create, inspect, change, pause, resume, trigger, preview.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use taskwheel_core::recurring::{NextFires, ScheduleList, ScheduleRequest, ScheduleView};
use taskwheel_core::wire::JobView;

use super::error::ApiError;
use super::extract::{JsonBody, QueryParams, Tenant};
use crate::engine::Engine;

type Answer<T> = Result<T, ApiError>;

pub(crate) async fn create(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<ScheduleRequest>,
) -> Answer<(StatusCode, Json<ScheduleView>)> {
    let record = engine.create_schedule(&tenant, request).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

pub(crate) async fn list(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
) -> Answer<Json<ScheduleList>> {
    let schedules = engine.list_schedules(&tenant).await?;
    Ok(Json(ScheduleList {
        schedules: schedules.into_iter().map(ScheduleView::from).collect(),
    }))
}

pub(crate) async fn get(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(key): Path<String>,
) -> Answer<Json<ScheduleView>> {
    Ok(Json(engine.get_schedule(&tenant, &key).await?.into()))
}

pub(crate) async fn patch(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<ScheduleRequest>,
) -> Answer<Json<ScheduleView>> {
    Ok(Json(
        engine.patch_schedule(&tenant, &key, request).await?.into(),
    ))
}

pub(crate) async fn delete(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(key): Path<String>,
) -> Answer<StatusCode> {
    engine.delete_schedule(&tenant, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn pause(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(key): Path<String>,
) -> Answer<Json<ScheduleView>> {
    Ok(Json(engine.set_paused(&tenant, &key, true).await?.into()))
}

pub(crate) async fn resume(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(key): Path<String>,
) -> Answer<Json<ScheduleView>> {
    Ok(Json(engine.set_paused(&tenant, &key, false).await?.into()))
}

pub(crate) async fn trigger(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(key): Path<String>,
) -> Answer<(StatusCode, Json<JobView>)> {
    let job = engine.trigger_schedule(&tenant, &key).await?;
    Ok((StatusCode::CREATED, Json(job.into())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NextQuery {
    #[serde(default = "five")]
    count: usize,
}

fn five() -> usize {
    5
}

pub(crate) async fn next(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(key): Path<String>,
    QueryParams(query): QueryParams<NextQuery>,
) -> Answer<Json<NextFires>> {
    let next = engine.next_fires(&tenant, &key, query.count).await?;
    Ok(Json(NextFires { next }))
}
