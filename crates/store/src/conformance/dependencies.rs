//! Conformance cases for jobs with parents (`depends_on`) and workflows.

use std::sync::Arc;

use serde_json::json;
use taskwheel_core::workflow::{SubmitWorkflow, WorkflowId, WorkflowState};
use taskwheel_core::{FieldError, JobState};

use super::*;
use crate::{Completion, Released, Store, StoreError};

fn with_parents(body: serde_json::Value, parents: &[&Job]) -> serde_json::Value {
    let mut body = body;
    body["depends_on"] = json!(parents.iter().map(|p| p.id).collect::<Vec<_>>());
    body
}

async fn complete(
    store: &Arc<dyn Store>,
    leased: &LeasedJob,
    result: serde_json::Value,
) -> Vec<Released> {
    let mut out = store
        .complete(
            "default",
            vec![Completion {
                id: leased.job.id,
                token: leased.token,
                result: Some(result),
            }],
            secs(1),
        )
        .await
        .expect("complete");
    out.remove(0).expect("completed").released
}

/// Leases the one available job, which must be `id`.
async fn lease_exactly(store: &Arc<dyn Store>, id: JobId) -> LeasedJob {
    let leased = lease_one(store, secs(1)).await;
    assert_eq!(leased.job.id, id, "the job expected to be leased");
    leased
}

fn workflow(body: serde_json::Value) -> taskwheel_core::workflow::NewWorkflow {
    serde_json::from_value::<SubmitWorkflow>(body)
        .expect("valid request")
        .validate("default", t0())
        .expect("valid workflow")
}

pub async fn a_child_waits_for_every_parent(store: Arc<dyn Store>) {
    let p1 = submit(&store, json!({"kind": "p"}), t0()).await;
    let p2 = submit(&store, json!({"kind": "p"}), t0()).await;
    let child = submit(
        &store,
        with_parents(json!({"kind": "c"}), &[&p1, &p2]),
        t0(),
    )
    .await;
    assert_eq!(child.state, JobState::Blocked);
    assert_eq!(child.depends_on, vec![p1.id, p2.id]);
    let later = submit(
        &store,
        with_parents(json!({"kind": "c", "delay": "1h"}), &[&p1]),
        t0(),
    )
    .await;

    let mut both = store
        .lease(params(&["default"], 10), secs(1))
        .await
        .unwrap();
    assert_eq!(both.len(), 2, "the parents, not the blocked children");
    both.sort_by_key(|l| l.job.id != p1.id);
    let (first, second) = (both.remove(0), both.remove(0));
    assert!(
        complete(&store, &first, json!(1))
            .await
            .iter()
            .any(|r| r.id == later.id)
    );
    assert_eq!(
        state_of(&store, child.id).await,
        JobState::Blocked,
        "one parent is still running"
    );
    assert_eq!(
        state_of(&store, later.id).await,
        JobState::Scheduled,
        "released, but due in an hour"
    );
    let released = complete(&store, &second, json!(2)).await;
    assert_eq!(released.len(), 1);
    assert_eq!(
        (released[0].id, released[0].state),
        (child.id, JobState::Available)
    );
    assert_eq!(released[0].queue, "default");
    let leased = lease_exactly(&store, child.id).await;
    assert_eq!(leased.job.depends_on, vec![p1.id, p2.id]);

    // The parents' outcomes come with the lease, in `depends_on` order.
    let seen: Vec<_> = leased
        .parents
        .iter()
        .map(|p| (p.id, p.state, p.result.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (p1.id, JobState::Succeeded, Some(json!(1))),
            (p2.id, JobState::Succeeded, Some(json!(2))),
        ]
    );
}

pub async fn a_failed_parent_skips_its_descendants(store: Arc<dyn Store>) {
    let parent = submit(
        &store,
        json!({"kind": "p", "retry": {"max_attempts": 1}}),
        t0(),
    )
    .await;
    let child = submit(&store, with_parents(json!({"kind": "c"}), &[&parent]), t0()).await;
    let grandchild = submit(&store, with_parents(json!({"kind": "g"}), &[&child]), t0()).await;
    let anyway = submit(
        &store,
        with_parents(
            json!({"kind": "cleanup", "on_parent_failure": "run"}),
            &[&parent],
        ),
        t0(),
    )
    .await;
    let leased = lease_exactly(&store, parent.id).await;
    // The lease runs out with no attempts left: the reaper dead-letters it.
    let woken = store.reap_expired(secs(60)).await.unwrap();
    assert_eq!(state_of(&store, parent.id).await, JobState::Failed);
    assert_eq!(
        woken.queues.len(),
        1,
        "the queue of the released cleanup job"
    );
    assert_eq!(state_of(&store, child.id).await, JobState::Skipped);
    assert_eq!(state_of(&store, grandchild.id).await, JobState::Skipped);
    assert_eq!(state_of(&store, anyway.id).await, JobState::Available);
    assert!(
        store
            .get_job("default", child.id)
            .await
            .unwrap()
            .finished_at
            .is_some()
    );
    drop(leased);

    // Parents that already ended decide at once.
    let late = submit(
        &store,
        with_parents(json!({"kind": "c"}), &[&parent]),
        secs(61),
    )
    .await;
    assert_eq!(late.state, JobState::Skipped);
    let done = submit(&store, json!({"kind": "p", "queue": "other"}), secs(61)).await;
    let leased = store.lease(params(&["other"], 1), secs(61)).await.unwrap();
    complete(&store, &leased[0], json!(null)).await;
    let ready = submit(
        &store,
        with_parents(json!({"kind": "c", "queue": "other"}), &[&done]),
        secs(62),
    )
    .await;
    assert_eq!(ready.state, JobState::Available);

    // A skipped job can be re-run by hand.
    let rerun = store.rerun("default", child.id, secs(70)).await.unwrap();
    assert_eq!(rerun.state, JobState::Available);
}

pub async fn unknown_parents_are_refused_and_nothing_is_stored(store: Arc<dyn Store>) {
    let known = submit(&store, json!({"kind": "p"}), t0()).await;
    let elsewhere = {
        let mut job = new_job(json!({"kind": "p"}), t0());
        job.tenant = "other".into();
        store.submit(job, t0()).await.unwrap().job
    };
    for (parents, field) in [
        (vec![known.id, JobId::new_v7(t0())], "depends_on[1]"),
        (vec![elsewhere.id], "depends_on[0]"),
    ] {
        let body = json!({"kind": "c", "depends_on": parents});
        match store.submit(new_job(body, t0()), t0()).await {
            Err(StoreError::Invalid(FieldError { field: f, .. })) => assert_eq!(f, field),
            other => panic!("expected a refusal naming {field}, got {other:?}"),
        }
    }
    let all = store
        .list_jobs(
            "default",
            &JobFilter {
                limit: 100,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "only the parent is stored");
}

pub async fn cancelling_a_parent_or_a_blocked_child(store: Arc<dyn Store>) {
    let parent = submit(&store, json!({"kind": "p"}), t0()).await;
    let child = submit(&store, with_parents(json!({"kind": "c"}), &[&parent]), t0()).await;
    let other = submit(&store, with_parents(json!({"kind": "c"}), &[&parent]), t0()).await;
    let (cancelled, released) = store.cancel("default", other.id, secs(1)).await.unwrap();
    assert_eq!(
        cancelled.state,
        JobState::Cancelled,
        "a blocked job is pending: cancelled at once"
    );
    assert!(released.is_empty());
    let (_, released) = store.cancel("default", parent.id, secs(2)).await.unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(
        (released[0].id, released[0].state),
        (child.id, JobState::Skipped)
    );
    assert_eq!(
        state_of(&store, other.id).await,
        JobState::Cancelled,
        "ended jobs stay as they are"
    );
}

pub async fn parents_ending_at_once_release_the_child_once(store: Arc<dyn Store>) {
    let mut parents = Vec::new();
    for _ in 0..20 {
        parents.push(submit(&store, json!({"kind": "p"}), t0()).await);
    }
    let refs: Vec<&Job> = parents.iter().collect();
    let child = submit(&store, with_parents(json!({"kind": "c"}), &refs), t0()).await;
    let leased = store
        .lease(params(&["default"], 20), secs(1))
        .await
        .unwrap();
    assert_eq!(leased.len(), 20);
    // Twenty single completions at once: on a shared database they race.
    let mut tasks = tokio::task::JoinSet::new();
    for l in &leased {
        let store = store.clone();
        let item = Completion {
            id: l.job.id,
            token: l.token,
            result: None,
        };
        tasks.spawn(async move { store.complete("default", vec![item], secs(2)).await });
    }
    let mut released: Vec<Released> = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        for moved in outcome.expect("task").expect("complete") {
            released.extend(moved.expect("completed").released);
        }
    }
    assert_eq!(released.len(), 1, "released once: {released:?}");
    assert_eq!(released[0].id, child.id);
    assert_eq!(state_of(&store, child.id).await, JobState::Available);
}

pub async fn a_workflow_fans_out_and_in(store: Arc<dyn Store>) {
    let mut jobs = vec![json!({"name": "root", "kind": "split"})];
    jobs.extend(
        (0..100)
            .map(|i| json!({"name": format!("part-{i}"), "kind": "work", "depends_on": ["root"]})),
    );
    jobs.push(json!({
        "name": "join", "kind": "merge",
        "depends_on": (0..100).map(|i| format!("part-{i}")).collect::<Vec<_>>()
    }));
    let stored = store
        .submit_workflow(workflow(json!({"name": "etl", "jobs": jobs})), t0())
        .await
        .unwrap();
    assert!(!stored.deduplicated);
    assert_eq!(stored.jobs.len(), 102);
    let states: Vec<JobState> = stored.jobs.iter().map(|j| j.state).collect();
    assert_eq!(states[0], JobState::Available);
    assert!(states[1..].iter().all(|s| *s == JobState::Blocked));
    let id = stored.workflow.id;

    let root = lease_one(&store, secs(1)).await;
    assert_eq!(root.job.workflow.as_ref().unwrap().1, "root");
    assert_eq!(complete(&store, &root, json!("split")).await.len(), 100);
    let parts = store
        .lease(params(&["default"], 200), secs(2))
        .await
        .unwrap();
    assert_eq!(parts.len(), 100, "every part, and not the join");
    let items = parts
        .iter()
        .map(|l| Completion {
            id: l.job.id,
            token: l.token,
            result: Some(json!(l.job.workflow.as_ref().unwrap().1)),
        })
        .collect();
    let outcomes = store.complete("default", items, secs(3)).await.unwrap();
    let released: Vec<Released> = outcomes
        .into_iter()
        .flat_map(|o| o.unwrap().released)
        .collect();
    assert_eq!(released.len(), 1, "the join, released by the last part");
    let join = lease_one(&store, secs(4)).await;
    assert_eq!(join.job.workflow.as_ref().unwrap().1, "join");
    let names: Vec<String> = join
        .parents
        .iter()
        .map(|p| p.name.clone().unwrap())
        .collect();
    let listed: Vec<String> = (0..100).map(|i| format!("part-{i}")).collect();
    assert_eq!(names, listed, "in the order the join lists them");
    assert!(join.parents.iter().all(
        |p| p.state == JobState::Succeeded && p.result == Some(json!(p.name.clone().unwrap()))
    ));

    let running = store.get_workflow("default", id).await.unwrap();
    assert_eq!(
        WorkflowState::of(running.jobs.iter().map(|j| j.state)),
        WorkflowState::Running
    );
    assert_eq!(
        running.jobs[0].workflow.as_ref().unwrap().1,
        "root",
        "parents first"
    );
    assert_eq!(running.jobs[101].workflow.as_ref().unwrap().1, "join");
    complete(&store, &join, json!("done")).await;
    let done = store.get_workflow("default", id).await.unwrap();
    assert_eq!(
        WorkflowState::of(done.jobs.iter().map(|j| j.state)),
        WorkflowState::Succeeded
    );
    assert_eq!(done.workflow.name.as_deref(), Some("etl"));
}

pub async fn a_workflow_is_cancelled_and_deduplicated(store: Arc<dyn Store>) {
    let body = json!({"idempotency_key": "nightly-1", "jobs": [
        {"name": "a", "kind": "k"},
        {"name": "b", "kind": "k", "depends_on": ["a"]},
        {"name": "c", "kind": "k", "depends_on": ["b"]},
        {"name": "side", "kind": "k", "delay": "1h"},
    ]});
    let first = store
        .submit_workflow(workflow(body.clone()), t0())
        .await
        .unwrap();
    let again = store
        .submit_workflow(workflow(body), secs(1))
        .await
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.workflow.id, first.workflow.id);
    assert_eq!(again.jobs.len(), 4);
    let outside = submit(
        &store,
        with_parents(
            json!({"kind": "after", "on_parent_failure": "run"}),
            &[&first.jobs[2]],
        ),
        t0(),
    )
    .await;

    let a = lease_one(&store, secs(1)).await;
    let (cancelled, released) = store
        .cancel_workflow("default", first.workflow.id, secs(2))
        .await
        .unwrap();
    let by_name = |name: &str| {
        cancelled
            .jobs
            .iter()
            .find(|j| j.workflow.as_ref().unwrap().1 == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("a").state, JobState::Running);
    assert!(
        by_name("a").cancel_requested,
        "a running job learns through its heartbeat"
    );
    for name in ["b", "c", "side"] {
        assert_eq!(by_name(name).state, JobState::Cancelled, "{name}");
    }
    assert_eq!(
        released.len(),
        1,
        "the job outside the workflow that waited on c"
    );
    assert_eq!(
        (released[0].id, released[0].state),
        (outside.id, JobState::Available)
    );
    assert_eq!(
        WorkflowState::of(cancelled.jobs.iter().map(|j| j.state)),
        WorkflowState::Running
    );
    // The worker gives up: the workflow has ended, cancelled.
    store
        .fail(
            "default",
            a.job.id,
            a.token,
            "stopped".into(),
            FailureCause::CancelledByWorker,
            secs(3),
        )
        .await
        .unwrap();
    let ended = store
        .get_workflow("default", first.workflow.id)
        .await
        .unwrap();
    assert_eq!(
        WorkflowState::of(ended.jobs.iter().map(|j| j.state)),
        WorkflowState::Cancelled
    );

    assert!(matches!(
        store
            .get_workflow("default", WorkflowId::new_v7(t0()))
            .await,
        Err(StoreError::WorkflowNotFound)
    ));
    assert!(matches!(
        store.get_workflow("other", first.workflow.id).await,
        Err(StoreError::WorkflowNotFound)
    ));
}
