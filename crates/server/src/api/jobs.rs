//! Job endpoints for producers and operators: submit, inspect, list, cancel, re-run.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use taskwheel_core::unique::UniqueOutcome;
use taskwheel_core::wire::{
    JobList, JobView, ListJobsQuery, SubmitBatch, SubmitBatchResponse, SubmitItemResult, SubmitJob,
};
use taskwheel_store::Submitted;

use super::error::ApiError;
use super::extract::{JsonBody, QueryParams, Tenant, item, job_id};
use crate::engine::Engine;

type Answer<T> = Result<T, ApiError>;

pub(crate) async fn submit(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<SubmitJob>,
) -> Answer<(StatusCode, Json<JobView>)> {
    let submitted = engine.submit(&tenant, request).await?;
    // 201 only when this submission created the job.
    let created =
        !submitted.deduplicated && submitted.unique.is_none_or(|u| u == UniqueOutcome::New);
    let view = submitted_view(submitted);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// A submitted job as answered: the job, and whether it was new.
fn submitted_view(submitted: Submitted) -> JobView {
    let mut view = JobView::from(submitted.job);
    view.deduplicated = Some(submitted.deduplicated);
    view.unique = submitted.unique;
    view
}

/// `POST /api/v1/jobs/batch`: 200 with one result per item, in order (an
/// atomic batch with an invalid item answers 400 instead).
pub(crate) async fn submit_batch(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<SubmitBatch>,
) -> Answer<Json<SubmitBatchResponse>> {
    request.check_size()?;
    let items = request.jobs.into_iter().map(item::<SubmitJob>).collect();
    let answers = engine.submit_batch(&tenant, items, request.atomic).await?;
    let results = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(submitted) => SubmitItemResult {
                job: Some(submitted_view(submitted)),
                error: None,
            },
            Err(e) => SubmitItemResult {
                job: None,
                error: Some(ApiError::from(e).0),
            },
        })
        .collect();
    Ok(Json(SubmitBatchResponse { results }))
}

pub(crate) async fn get(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer<Json<JobView>> {
    let job = engine.get_job(&tenant, job_id(&id)?).await?;
    Ok(Json(job.into()))
}

pub(crate) async fn list(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    QueryParams(query): QueryParams<ListJobsQuery>,
) -> Answer<Json<JobList>> {
    let limit = query
        .limit
        .unwrap_or(taskwheel_core::wire::DEFAULT_LIST_LIMIT) as usize;
    let jobs = engine.list_jobs(&tenant, query).await?;
    let next_cursor = (jobs.len() == limit)
        .then(|| jobs.last().map(|j| j.id.to_string()))
        .flatten();
    Ok(Json(JobList {
        jobs: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

pub(crate) async fn cancel(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer<Json<JobView>> {
    let job = engine.cancel(&tenant, job_id(&id)?).await?;
    Ok(Json(job.into()))
}

pub(crate) async fn retry(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer<Json<JobView>> {
    let job = engine.rerun(&tenant, job_id(&id)?).await?;
    Ok(Json(job.into()))
}
