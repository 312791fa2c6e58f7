//! Workflow endpoints: submit a graph of named jobs in one transaction,
//! follow its state, cancel what has not ended.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use taskwheel_core::workflow::{SubmitWorkflow, WorkflowId, WorkflowView};
use taskwheel_store::WorkflowSubmitted;

use super::error::ApiError;
use super::extract::{JsonBody, Tenant};
use crate::engine::Engine;

type Answer<T> = Result<T, ApiError>;

fn workflow_id(raw: &str) -> Result<WorkflowId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::field("id", format!("`{raw}` is not a workflow id (a UUID)")))
}

fn view(found: WorkflowSubmitted) -> WorkflowView {
    WorkflowView::new(found.workflow, found.jobs)
}

/// 201 with the workflow and its job ids; 200 when the idempotency key
/// named a workflow stored earlier.
pub(crate) async fn submit(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<SubmitWorkflow>,
) -> Answer<(StatusCode, Json<WorkflowView>)> {
    let submitted = engine.submit_workflow(&tenant, request).await?;
    let deduplicated = submitted.deduplicated;
    let mut answer = view(submitted);
    answer.deduplicated = Some(deduplicated);
    let status = if deduplicated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(answer)))
}

pub(crate) async fn get(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer<Json<WorkflowView>> {
    let found = engine.get_workflow(&tenant, workflow_id(&id)?).await?;
    Ok(Json(view(found)))
}

pub(crate) async fn cancel(
    State(engine): State<Arc<Engine>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer<Json<WorkflowView>> {
    let found = engine.cancel_workflow(&tenant, workflow_id(&id)?).await?;
    Ok(Json(view(found)))
}
