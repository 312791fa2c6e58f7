//! Conformance cases for retention: deleting jobs that ended long ago.

use std::sync::Arc;

use serde_json::json;
use taskwheel_core::JobState;

use super::*;
use crate::{Completion, Store, StoreError};

pub async fn ended_jobs_are_purged_after_retention(store: Arc<dyn Store>) {
    let parent = submit(&store, json!({"kind": "p"}), t0()).await;
    let other = submit(&store, json!({"kind": "p", "queue": "slow"}), t0()).await;
    let child = submit(
        &store,
        json!({"kind": "c", "queue": "kids", "depends_on": [parent.id, other.id]}),
        t0(),
    )
    .await;
    let waiting = submit(&store, json!({"kind": "w", "delay": "1h"}), t0()).await;
    let leased = lease_one(&store, secs(1)).await;
    assert_eq!(leased.job.id, parent.id);
    store
        .complete(
            "default",
            vec![Completion {
                id: parent.id,
                token: leased.token,
                result: Some(json!(1)),
            }],
            secs(2),
        )
        .await
        .unwrap();
    let (cancelled, _) = store
        .cancel(
            "default",
            submit(&store, json!({"kind": "x"}), secs(2)).await.id,
            secs(3),
        )
        .await
        .unwrap();

    // Nothing ended before the cut-off: nothing goes.
    assert_eq!(store.purge_finished(secs(2), 100, None).await.unwrap(), 0);
    // At most `limit` per call, oldest first.
    assert_eq!(store.purge_finished(secs(60), 1, None).await.unwrap(), 1);
    assert!(matches!(
        store.get_job("default", parent.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.purge_finished(secs(60), 100, None).await.unwrap(), 1);
    assert!(matches!(
        store.get_job("default", cancelled.id).await,
        Err(StoreError::NotFound)
    ));
    for id in [other.id, child.id, waiting.id] {
        assert!(
            store.get_job("default", id).await.is_ok(),
            "unended jobs stay"
        );
    }
    // The blocked child lost an ended parent and still waits for the other.
    assert_eq!(state_of(&store, child.id).await, JobState::Blocked);
    let slow = store.lease(params(&["slow"], 1), secs(61)).await.unwrap();
    let moved = store
        .complete(
            "default",
            vec![Completion {
                id: other.id,
                token: slow[0].token,
                result: None,
            }],
            secs(62),
        )
        .await
        .unwrap();
    let released = &moved[0].as_ref().unwrap().released;
    assert_eq!(released.len(), 1);
    assert_eq!(state_of(&store, child.id).await, JobState::Available);
    let kid = store.lease(params(&["kids"], 1), secs(63)).await.unwrap();
    assert_eq!(kid[0].parents.len(), 1, "only the parent still stored");
}

pub async fn a_workflow_goes_with_its_last_job(store: Arc<dyn Store>) {
    let workflow = serde_json::from_value::<taskwheel_core::workflow::SubmitWorkflow>(json!({
        "jobs": [{"name": "a", "kind": "k"}, {"name": "b", "kind": "k", "depends_on": ["a"]}]
    }))
    .unwrap()
    .validate("default", t0())
    .unwrap();
    let stored = store.submit_workflow(workflow, t0()).await.unwrap();
    let id = stored.workflow.id;
    let a = lease_one(&store, secs(1)).await;
    store
        .fail(
            "default",
            a.job.id,
            a.token,
            "no".into(),
            FailureCause::Error {
                retry: false,
                retry_after: None,
            },
            secs(2),
        )
        .await
        .unwrap();
    // `a` failed and `b` was skipped: both ended at secs(2).
    assert_eq!(store.purge_finished(secs(3), 1, None).await.unwrap(), 1);
    assert_eq!(
        store.get_workflow("default", id).await.unwrap().jobs.len(),
        1
    );
    assert_eq!(store.purge_finished(secs(3), 10, None).await.unwrap(), 1);
    assert!(matches!(
        store.get_workflow("default", id).await,
        Err(StoreError::WorkflowNotFound)
    ));
}
