//! Worker endpoints: lease (long-poll), heartbeat, complete, fail, snooze.
//! Every call after the lease carries the lease token; a stale one answers
//! 409 `lease_mismatch` and changes nothing.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use taskwheel_core::JobId;
use taskwheel_core::wire::{
    CompleteBatch, CompleteBatchResponse, CompleteRequest, FailRequest, HeartbeatRequest,
    HeartbeatResponse, ItemResult, JobOutcome, JobView, LeaseRequest, LeaseResponse, LeasedJob,
    SnoozeRequest,
};
use taskwheel_store::{Completion, Moved};

use super::error::ApiError;
use super::extract::{JsonBody, Tenant, job_id};
use crate::engine::Engine;

type Answer<T> = Result<T, ApiError>;

/// The most completions one batch request may carry.
const MAX_COMPLETE_BATCH: usize = 10_000;

pub(crate) async fn lease(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<LeaseRequest>,
) -> Answer<Json<LeaseResponse>> {
    let leased = engine.lease(&tenant, request).await?;
    let jobs = leased
        .into_iter()
        .map(|l| LeasedJob {
            lease_token: l.token,
            lease_expires_at: l.expires_at,
            job: JobView::from(l.job),
            parents: l.parents,
        })
        .collect();
    Ok(Json(LeaseResponse { jobs }))
}

pub(crate) async fn heartbeat(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<HeartbeatRequest>,
) -> Answer<Json<HeartbeatResponse>> {
    let beat = engine.heartbeat(&tenant, job_id(&id)?, request).await?;
    Ok(Json(HeartbeatResponse {
        lease_expires_at: beat.expires_at,
        cancel_requested: beat.cancel_requested,
    }))
}

pub(crate) async fn complete(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CompleteRequest>,
) -> Answer<Json<JobOutcome>> {
    let id = job_id(&id)?;
    let item = Completion {
        id,
        token: request.lease_token,
        result: request.result,
    };
    let moved = engine
        .complete(&tenant, vec![item])
        .await?
        .pop()
        .expect("one result per completion")?;
    Ok(Json(outcome(id, moved)))
}

pub(crate) async fn complete_batch(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<CompleteBatch>,
) -> Answer<Json<CompleteBatchResponse>> {
    if request.completions.len() > MAX_COMPLETE_BATCH {
        return Err(ApiError::field(
            "completions",
            format!("at most {MAX_COMPLETE_BATCH} per request"),
        ));
    }
    let ids: Vec<JobId> = request.completions.iter().map(|c| c.id).collect();
    let items = request
        .completions
        .into_iter()
        .map(|c| Completion {
            id: c.id,
            token: c.lease_token,
            result: c.result,
        })
        .collect();
    let results = engine.complete(&tenant, items).await?;
    let results = ids
        .into_iter()
        .zip(results)
        .map(|(id, r)| ItemResult {
            id,
            error: r.err().map(|e| ApiError::from(e).0),
        })
        .collect();
    Ok(Json(CompleteBatchResponse { results }))
}

pub(crate) async fn fail(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<FailRequest>,
) -> Answer<Json<JobOutcome>> {
    let id = job_id(&id)?;
    let token = request.lease_token;
    let moved = engine.fail(&tenant, id, token, request).await?;
    Ok(Json(outcome(id, moved)))
}

pub(crate) async fn snooze(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<SnoozeRequest>,
) -> Answer<Json<JobOutcome>> {
    let id = job_id(&id)?;
    let moved = engine
        .snooze(&tenant, id, request.lease_token, request.delay.0)
        .await?;
    Ok(Json(outcome(id, moved)))
}

fn outcome(id: JobId, moved: Moved) -> JobOutcome {
    JobOutcome {
        id,
        state: moved.state,
        run_at: moved.run_at,
    }
}
