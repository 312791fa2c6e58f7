//! The behaviour every engine must show, written once and run against each
//! engine (see `tests/sqlite.rs`): each case gets a fresh, empty store and
//! drives time through the `now` arguments, so nothing here sleeps.
//!
//! An engine's test file invokes [`conformance_tests!`](crate::conformance_tests)
//! with an async expression that yields a fresh `Arc<dyn Store>`.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use taskwheel_core::lifecycle::{FailureCause, TransitionError};
use taskwheel_core::queue::{QueuePatch, QueueSettings, RateLimit, RatePeriod};
use taskwheel_core::time::add;
use taskwheel_core::unique::UniqueOutcome;
use taskwheel_core::wire::SubmitJob;
use taskwheel_core::{
    AttemptOutcome, Backoff, DurationSpec, Job, JobId, JobState, LeaseToken, NewJob, Priority,
    Progress, RetryPolicy,
};

use crate::{Completion, JobFilter, LeaseParams, LeasedJob, ScheduleKey, Store, StoreError};

mod dependencies;
mod retention;
pub use dependencies::*;
pub use retention::*;

/// What an engine's test hands the suite: a fresh store, or, for an engine
/// whose server may be absent on this machine, `None` to skip the case.
pub trait FreshStore {
    fn into_store(self) -> Option<Arc<dyn Store>>;
}

impl FreshStore for Arc<dyn Store> {
    fn into_store(self) -> Option<Arc<dyn Store>> {
        Some(self)
    }
}

impl FreshStore for Option<Arc<dyn Store>> {
    fn into_store(self) -> Option<Arc<dyn Store>> {
        self
    }
}

/// Generates one `#[tokio::test]` per conformance case. `$make` is an async
/// expression that yields a fresh `Arc<dyn Store>`, or an
/// `Option<Arc<dyn Store>>` whose `None` skips the case (see [`FreshStore`]).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(store) = $crate::conformance::FreshStore::into_store($make.await) else {
                    return;
                };
                $crate::conformance::$case(store).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_tests!($make;
            submit_then_get_round_trips,
            delayed_job_is_promoted_when_due,
            lease_order_is_priority_then_due_time,
            lease_takes_only_named_queues_and_at_most_max,
            a_leased_job_is_not_leased_again,
            complete_is_fenced_by_the_lease_token,
            failures_back_off_then_dead_letter,
            fail_without_retry_dead_letters_at_once,
            expired_lease_returns_job_and_counts_attempt,
            timeout_is_enforced_through_the_lease,
            heartbeat_extends_the_lease,
            cancel_pending_and_running,
            rerun_gives_a_fresh_budget,
            idempotency_key_dedupes,
            snooze_does_not_count_an_attempt,
            list_filters_and_pages_newest_first,
            tenants_are_isolated,
            batch_completion_reports_each_item,
            next_timer_covers_due_jobs_and_leases,
            schedule_fires_each_tick_once,
            a_tick_cannot_fire_twice_even_if_the_schedule_is_rewound,
            misfire_policies_apply_after_downtime,
            overlap_forbid_and_replace,
            paused_schedules_do_not_fire_and_resume_by_policy,
            schedules_by_name_trigger_and_delete,
            dead_lettered_runs_count_against_the_schedule,
            a_child_waits_for_every_parent,
            a_failed_parent_skips_its_descendants,
            unknown_parents_are_refused_and_nothing_is_stored,
            cancelling_a_parent_or_a_blocked_child,
            parents_ending_at_once_release_the_child_once,
            a_workflow_fans_out_and_in,
            a_workflow_is_cancelled_and_deduplicated,
            ended_jobs_are_purged_after_retention,
            a_workflow_goes_with_its_last_job,
            unique_skip_returns_the_job_holding_the_key,
            unique_replace_overwrites_only_a_pending_job,
            unique_debounce_pushes_the_run_time,
            unique_period_buckets_split_the_key,
            unique_states_decide_how_long_a_key_is_held,
            concurrent_unique_submits_make_one_job,
            heartbeat_progress_is_stored_and_kept,
            snoozes_never_use_up_the_attempt_budget,
            a_blocked_job_holds_its_unique_key,
            paused_queue_leases_nothing_until_resumed,
            concurrency_caps_running_jobs_of_a_queue,
            key_concurrency_caps_each_key_without_blocking_others,
            rate_limit_refills_with_time,
            fair_dispatch_does_not_starve_a_small_key,
            queue_stats_count_depth_age_and_throughput,
            submit_batch_answers_each_item_in_order,
            atomic_submit_batch_stores_all_or_nothing,
            concurrent_reports_each_get_their_own_answer,
        );
    };
}

fn t0() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().expect("valid instant")
}

fn secs(s: u64) -> Timestamp {
    add(t0(), Duration::from_secs(s))
}

fn new_job(body: serde_json::Value, now: Timestamp) -> NewJob {
    serde_json::from_value::<SubmitJob>(body)
        .expect("valid request")
        .validate("default", now)
        .expect("valid job")
}

fn fixed_retry(max_attempts: u32, wait: u64) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff: Backoff::Fixed,
        base: DurationSpec(Duration::from_secs(wait)),
        max: DurationSpec(Duration::from_secs(wait.max(1))),
        jitter: 0.0,
    }
}

async fn submit(store: &Arc<dyn Store>, body: serde_json::Value, now: Timestamp) -> Job {
    store
        .submit(new_job(body, now), now)
        .await
        .expect("submit")
        .job
}

fn params(queues: &[&str], max: u32) -> LeaseParams {
    LeaseParams {
        tenant: "default".into(),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        max,
        worker: "worker-1".into(),
        lease: Duration::from_secs(30),
    }
}

async fn lease_one(store: &Arc<dyn Store>, now: Timestamp) -> LeasedJob {
    let mut jobs = store
        .lease(params(&["default"], 1), now)
        .await
        .expect("lease");
    assert_eq!(jobs.len(), 1, "expected one job to lease");
    jobs.remove(0)
}

async fn state_of(store: &Arc<dyn Store>, id: JobId) -> JobState {
    store.get_job("default", id).await.expect("get").state
}

fn error_cause() -> FailureCause {
    FailureCause::Error {
        retry: true,
        retry_after: None,
    }
}

pub async fn submit_then_get_round_trips(store: Arc<dyn Store>) {
    let job = submit(
        &store,
        json!({"kind": "email.send", "payload": {"to": "a@b.c"}, "priority": "high", "tags": ["x"], "timeout": "1m"}),
        t0(),
    )
    .await;
    assert_eq!(job.state, JobState::Available);
    let got = store.get_job("default", job.id).await.expect("get");
    assert_eq!(got, job);
    assert_eq!(got.payload, json!({"to": "a@b.c"}));
    assert_eq!(got.priority, Priority::HIGH);
    assert_eq!(got.timeout, Some(Duration::from_secs(60)));
    assert!(matches!(
        store.get_job("default", JobId::new_v7(t0())).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn delayed_job_is_promoted_when_due(store: Arc<dyn Store>) {
    let job = submit(&store, json!({"kind": "k", "delay": "10s"}), t0()).await;
    assert_eq!(job.state, JobState::Scheduled);
    assert!(
        store
            .lease(params(&["default"], 10), secs(11))
            .await
            .unwrap()
            .is_empty(),
        "not leasable before promotion"
    );
    assert!(store.promote_due(secs(9)).await.unwrap().queues.is_empty());
    assert_eq!(state_of(&store, job.id).await, JobState::Scheduled);
    let woken = store.promote_due(secs(10)).await.unwrap();
    assert_eq!(woken.queues.len(), 1);
    assert_eq!(woken.queues.first().unwrap().queue, "default");
    assert_eq!(
        woken.due,
        vec![secs(10)],
        "the due instant, to measure lateness"
    );
    assert_eq!(state_of(&store, job.id).await, JobState::Available);
}

pub async fn lease_order_is_priority_then_due_time(store: Arc<dyn Store>) {
    let low = submit(&store, json!({"kind": "k", "priority": 2}), t0()).await;
    let early = submit(&store, json!({"kind": "k", "priority": 5}), t0()).await;
    let late = submit(&store, json!({"kind": "k", "priority": 5}), secs(1)).await;
    let high = submit(&store, json!({"kind": "k", "priority": 9}), secs(2)).await;
    let leased = store
        .lease(params(&["default"], 10), secs(3))
        .await
        .unwrap();
    let order: Vec<JobId> = leased.iter().map(|l| l.job.id).collect();
    assert_eq!(order, vec![high.id, early.id, late.id, low.id]);
}

pub async fn lease_takes_only_named_queues_and_at_most_max(store: Arc<dyn Store>) {
    for _ in 0..3 {
        submit(&store, json!({"kind": "k", "queue": "a"}), t0()).await;
    }
    submit(&store, json!({"kind": "k", "queue": "b"}), t0()).await;
    let two = store.lease(params(&["a"], 2), t0()).await.unwrap();
    assert_eq!(two.len(), 2);
    assert!(
        two.iter()
            .all(|l| l.job.queue == "a" && l.job.state == JobState::Running && l.job.attempt == 1)
    );
    let rest = store.lease(params(&["a", "b"], 10), t0()).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(
        store
            .lease(params(&["a", "b", "c"], 10), t0())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_leased_job_is_not_leased_again(store: Arc<dyn Store>) {
    let job = submit(&store, json!({"kind": "k"}), t0()).await;
    let leased = lease_one(&store, t0()).await;
    assert_eq!(leased.job.id, job.id);
    assert_eq!(leased.expires_at, secs(30));
    assert!(
        store
            .lease(params(&["default"], 10), secs(1))
            .await
            .unwrap()
            .is_empty()
    );
    let stored = store.get_job("default", job.id).await.unwrap();
    assert_eq!(stored.state, JobState::Running);
    assert_eq!(stored.lease.expect("lease").worker, "worker-1");
}

pub async fn complete_is_fenced_by_the_lease_token(store: Arc<dyn Store>) {
    submit(&store, json!({"kind": "k"}), t0()).await;
    let leased = lease_one(&store, t0()).await;
    let stale = taskwheel_core::LeaseToken::random();
    let wrong = store
        .complete(
            "default",
            vec![Completion {
                id: leased.job.id,
                token: stale,
                result: None,
            }],
            secs(1),
        )
        .await
        .unwrap();
    assert!(matches!(
        wrong[0],
        Err(StoreError::Transition(TransitionError::StaleLease))
    ));
    assert_eq!(
        state_of(&store, leased.job.id).await,
        JobState::Running,
        "a stale token changes nothing"
    );
    let done = store
        .complete(
            "default",
            vec![Completion {
                id: leased.job.id,
                token: leased.token,
                result: Some(json!({"ok": 1})),
            }],
            secs(2),
        )
        .await
        .unwrap();
    assert_eq!(done[0].as_ref().unwrap().state, JobState::Succeeded);
    let again = store
        .complete(
            "default",
            vec![Completion {
                id: leased.job.id,
                token: leased.token,
                result: None,
            }],
            secs(3),
        )
        .await
        .unwrap();
    assert!(again[0].is_err(), "a job completes once");
    let job = store.get_job("default", leased.job.id).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.finished_at, Some(secs(2)));
    assert!(job.lease.is_none());
    assert_eq!(job.attempts.len(), 1);
    assert_eq!(job.attempts[0].outcome, AttemptOutcome::Succeeded);
    assert_eq!(job.attempts[0].result, Some(json!({"ok": 1})));
    assert_eq!(job.attempts[0].started_at, t0());
}

pub async fn failures_back_off_then_dead_letter(store: Arc<dyn Store>) {
    let retry = serde_json::to_value(fixed_retry(2, 10)).unwrap();
    let job = submit(&store, json!({"kind": "k", "retry": retry}), t0()).await;
    let first = lease_one(&store, t0()).await;
    let moved = store
        .fail(
            "default",
            job.id,
            first.token,
            "boom 1".into(),
            error_cause(),
            secs(1),
        )
        .await
        .unwrap();
    assert_eq!(moved.state, JobState::Scheduled);
    assert_eq!(moved.run_at, Some(secs(11)));
    assert!(store.promote_due(secs(10)).await.unwrap().queues.is_empty());
    assert_eq!(store.promote_due(secs(11)).await.unwrap().queues.len(), 1);
    let second = lease_one(&store, secs(11)).await;
    assert_eq!(second.job.attempt, 2);
    let moved = store
        .fail(
            "default",
            job.id,
            second.token,
            "boom 2".into(),
            error_cause(),
            secs(12),
        )
        .await
        .unwrap();
    assert_eq!(moved.state, JobState::Failed);
    let dead = store.get_job("default", job.id).await.unwrap();
    assert_eq!(dead.state, JobState::Failed);
    let errors: Vec<_> = dead
        .attempts
        .iter()
        .map(|a| (a.number, a.error.clone().unwrap()))
        .collect();
    assert_eq!(
        errors,
        vec![(1, "boom 1".to_string()), (2, "boom 2".to_string())]
    );
}

pub async fn fail_without_retry_dead_letters_at_once(store: Arc<dyn Store>) {
    let job = submit(&store, json!({"kind": "k"}), t0()).await;
    let leased = lease_one(&store, t0()).await;
    let cause = FailureCause::Error {
        retry: false,
        retry_after: None,
    };
    let moved = store
        .fail(
            "default",
            job.id,
            leased.token,
            "bad input".into(),
            cause,
            secs(1),
        )
        .await
        .unwrap();
    assert_eq!(moved.state, JobState::Failed);
    let stale = store
        .fail(
            "default",
            job.id,
            leased.token,
            "again".into(),
            cause,
            secs(2),
        )
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::Transition(TransitionError::StaleLease))
    ));
}

pub async fn expired_lease_returns_job_and_counts_attempt(store: Arc<dyn Store>) {
    let retry = serde_json::to_value(RetryPolicy {
        backoff: Backoff::None,
        ..fixed_retry(3, 0)
    })
    .unwrap();
    let job = submit(&store, json!({"kind": "k", "retry": retry}), t0()).await;
    let leased = lease_one(&store, t0()).await;
    assert!(
        store
            .reap_expired(secs(29))
            .await
            .unwrap()
            .queues
            .is_empty()
    );
    let woken = store.reap_expired(secs(30)).await.unwrap();
    assert_eq!(woken.queues.len(), 1, "the queue is woken");
    let back = store.get_job("default", job.id).await.unwrap();
    assert_eq!(back.state, JobState::Available);
    assert_eq!(back.attempt, 1);
    assert_eq!(back.attempts[0].outcome, AttemptOutcome::LeaseExpired);
    let stale = store
        .heartbeat("default", job.id, leased.token, None, secs(31))
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::Transition(TransitionError::StaleLease))
    ));
    let again = lease_one(&store, secs(31)).await;
    assert_eq!(again.job.attempt, 2);
    let late = store
        .complete(
            "default",
            vec![Completion {
                id: job.id,
                token: leased.token,
                result: None,
            }],
            secs(32),
        )
        .await
        .unwrap();
    assert!(
        late[0].is_err(),
        "the first worker cannot complete a re-leased job"
    );
}

pub async fn timeout_is_enforced_through_the_lease(store: Arc<dyn Store>) {
    let job = submit(
        &store,
        json!({"kind": "k", "timeout": "5s", "retry": {"max_attempts": 1}}),
        t0(),
    )
    .await;
    let leased = lease_one(&store, t0()).await;
    assert_eq!(leased.expires_at, secs(5), "the lease ends at the deadline");
    let beat = store
        .heartbeat("default", job.id, leased.token, None, secs(4))
        .await
        .unwrap();
    assert_eq!(
        beat.expires_at,
        secs(5),
        "a heartbeat never extends past the deadline"
    );
    store.reap_expired(secs(5)).await.unwrap();
    let dead = store.get_job("default", job.id).await.unwrap();
    assert_eq!(dead.state, JobState::Failed);
    assert_eq!(dead.attempts[0].outcome, AttemptOutcome::TimedOut);
}

pub async fn heartbeat_extends_the_lease(store: Arc<dyn Store>) {
    let job = submit(&store, json!({"kind": "k"}), t0()).await;
    let leased = lease_one(&store, t0()).await;
    let beat = store
        .heartbeat("default", job.id, leased.token, None, secs(20))
        .await
        .unwrap();
    assert_eq!(beat.expires_at, secs(50));
    assert!(!beat.cancel_requested);
    store.reap_expired(secs(35)).await.unwrap();
    assert_eq!(state_of(&store, job.id).await, JobState::Running);
}

pub async fn cancel_pending_and_running(store: Arc<dyn Store>) {
    let pending = submit(&store, json!({"kind": "k", "delay": "1h"}), t0()).await;
    let (cancelled, _) = store.cancel("default", pending.id, secs(1)).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(
        store
            .promote_due(secs(7200))
            .await
            .unwrap()
            .queues
            .is_empty(),
        "a cancelled job never runs"
    );

    let running = submit(&store, json!({"kind": "k"}), t0()).await;
    let leased = lease_one(&store, t0()).await;
    let (flagged, _) = store.cancel("default", running.id, secs(1)).await.unwrap();
    assert_eq!(flagged.state, JobState::Running);
    assert!(flagged.cancel_requested);
    let beat = store
        .heartbeat("default", running.id, leased.token, None, secs(2))
        .await
        .unwrap();
    assert!(
        beat.cancel_requested,
        "the worker learns at its next heartbeat"
    );
    let moved = store
        .fail(
            "default",
            running.id,
            leased.token,
            "stopped".into(),
            error_cause(),
            secs(3),
        )
        .await
        .unwrap();
    assert_eq!(
        moved.state,
        JobState::Cancelled,
        "a cancel-requested job is not retried"
    );
    let refused = store.cancel("default", running.id, secs(4)).await;
    assert!(matches!(
        refused,
        Err(StoreError::Transition(TransitionError::WrongState { .. }))
    ));
}

pub async fn rerun_gives_a_fresh_budget(store: Arc<dyn Store>) {
    let job = submit(
        &store,
        json!({"kind": "k", "retry": {"max_attempts": 1}}),
        t0(),
    )
    .await;
    let leased = lease_one(&store, t0()).await;
    store
        .fail(
            "default",
            job.id,
            leased.token,
            "x".into(),
            error_cause(),
            secs(1),
        )
        .await
        .unwrap();
    assert_eq!(state_of(&store, job.id).await, JobState::Failed);
    let again = store.rerun("default", job.id, secs(2)).await.unwrap();
    assert_eq!(again.state, JobState::Available);
    assert_eq!(again.attempt, 0);
    assert_eq!(again.finished_at, None);
    let second = lease_one(&store, secs(3)).await;
    store
        .complete(
            "default",
            vec![Completion {
                id: job.id,
                token: second.token,
                result: None,
            }],
            secs(4),
        )
        .await
        .unwrap();
    let done = store.get_job("default", job.id).await.unwrap();
    let numbers: Vec<u32> = done.attempts.iter().map(|a| a.number).collect();
    assert_eq!(
        numbers,
        vec![1, 2],
        "attempt numbers continue across a re-run"
    );
    assert!(matches!(
        store.rerun("default", job.id, secs(5)).await,
        Err(StoreError::Transition(_))
    ));
}

pub async fn idempotency_key_dedupes(store: Arc<dyn Store>) {
    let first = store
        .submit(
            new_job(json!({"kind": "k", "idempotency_key": "order-7"}), t0()),
            t0(),
        )
        .await
        .unwrap();
    assert!(!first.deduplicated);
    let second = store
        .submit(
            new_job(
                json!({"kind": "other", "idempotency_key": "order-7"}),
                secs(1),
            ),
            secs(1),
        )
        .await
        .unwrap();
    assert!(second.deduplicated);
    assert_eq!(second.job.id, first.job.id);
    assert_eq!(
        second.job.kind, "k",
        "the original job is returned unchanged"
    );
    let all = store
        .list_jobs(
            "default",
            &JobFilter {
                limit: 10,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

pub async fn snooze_does_not_count_an_attempt(store: Arc<dyn Store>) {
    let job = submit(&store, json!({"kind": "k"}), t0()).await;
    let leased = lease_one(&store, t0()).await;
    let moved = store
        .snooze(
            "default",
            job.id,
            leased.token,
            Duration::from_secs(60),
            secs(1),
        )
        .await
        .unwrap();
    assert_eq!(moved.state, JobState::Scheduled);
    assert_eq!(moved.run_at, Some(secs(61)));
    let back = store.get_job("default", job.id).await.unwrap();
    assert_eq!(back.attempt, 0);
    assert_eq!(back.attempts[0].outcome, AttemptOutcome::Released);
    let released = submit(&store, json!({"kind": "k"}), secs(2)).await;
    let leased = lease_one(&store, secs(2)).await;
    assert_eq!(leased.job.id, released.id);
    let moved = store
        .snooze(
            "default",
            released.id,
            leased.token,
            Duration::ZERO,
            secs(3),
        )
        .await
        .unwrap();
    assert_eq!(
        moved.state,
        JobState::Available,
        "a zero snooze releases the job at once"
    );
    assert_eq!(moved.queue, "default");
}

pub async fn list_filters_and_pages_newest_first(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let queue = if i % 2 == 0 { "even" } else { "odd" };
        ids.push(
            submit(&store, json!({"kind": "k", "queue": queue}), secs(i))
                .await
                .id,
        );
    }
    let page1 = store
        .list_jobs(
            "default",
            &JobFilter {
                limit: 2,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page1.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let page2 = store
        .list_jobs(
            "default",
            &JobFilter {
                limit: 2,
                before: Some(ids[3]),
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page2.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let even = store
        .list_jobs(
            "default",
            &JobFilter {
                limit: 10,
                queue: Some("even".into()),
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(even.len(), 3);
    store.lease(params(&["odd"], 1), secs(10)).await.unwrap();
    let running = store
        .list_jobs(
            "default",
            &JobFilter {
                limit: 10,
                state: Some(JobState::Running),
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].queue, "odd");
    let none = store
        .list_jobs(
            "default",
            &JobFilter {
                limit: 10,
                kind: Some("nope".into()),
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(none.is_empty());
}

pub async fn tenants_are_isolated(store: Arc<dyn Store>) {
    let mut other = new_job(json!({"kind": "k", "idempotency_key": "same"}), t0());
    other.tenant = "acme".into();
    let theirs = store.submit(other, t0()).await.unwrap().job;
    let ours = store
        .submit(
            new_job(json!({"kind": "k", "idempotency_key": "same"}), t0()),
            t0(),
        )
        .await
        .unwrap();
    assert!(!ours.deduplicated, "idempotency keys are per tenant");
    assert!(matches!(
        store.get_job("default", theirs.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.cancel("default", theirs.id, t0()).await,
        Err(StoreError::NotFound)
    ));
    let leased = store.lease(params(&["default"], 10), t0()).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].job.id, ours.job.id);
    let listed = store
        .list_jobs(
            "default",
            &JobFilter {
                limit: 10,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

pub async fn batch_completion_reports_each_item(store: Arc<dyn Store>) {
    for _ in 0..3 {
        submit(&store, json!({"kind": "k"}), t0()).await;
    }
    let leased = store.lease(params(&["default"], 3), t0()).await.unwrap();
    let mut items: Vec<Completion> = leased
        .iter()
        .map(|l| Completion {
            id: l.job.id,
            token: l.token,
            result: None,
        })
        .collect();
    items[1].token = taskwheel_core::LeaseToken::random();
    let results = store.complete("default", items, secs(1)).await.unwrap();
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(results[1].is_err());
    assert_eq!(
        state_of(&store, leased[0].job.id).await,
        JobState::Succeeded
    );
    assert_eq!(state_of(&store, leased[1].job.id).await, JobState::Running);
}

pub async fn next_timer_covers_due_jobs_and_leases(store: Arc<dyn Store>) {
    assert_eq!(store.next_timer().await.unwrap(), None);
    submit(&store, json!({"kind": "k", "delay": "100s"}), t0()).await;
    assert_eq!(store.next_timer().await.unwrap(), Some(secs(100)));
    submit(&store, json!({"kind": "k"}), t0()).await;
    lease_one(&store, t0()).await;
    assert_eq!(
        store.next_timer().await.unwrap(),
        Some(secs(30)),
        "the lease runs out first"
    );
}

mod schedules {
    //! Schedule cases: firing, exactly-once ticks, misfire and overlap policies.

    use super::*;
    use taskwheel_core::recurring::{ScheduleRecord, ScheduleRequest};

    pub(super) async fn create(
        store: &Arc<dyn Store>,
        body: serde_json::Value,
        now: Timestamp,
    ) -> ScheduleRecord {
        let request: ScheduleRequest = serde_json::from_value(body).expect("valid request");
        let record = ScheduleRecord::create(
            "default",
            request.into_definition().expect("definition"),
            false,
            now,
        )
        .expect("valid schedule");
        store
            .create_schedule(record)
            .await
            .expect("create schedule")
    }

    pub(super) async fn jobs_of(store: &Arc<dyn Store>) -> Vec<Job> {
        let mut jobs = store
            .list_jobs(
                "default",
                &JobFilter {
                    limit: 1000,
                    ..JobFilter::default()
                },
            )
            .await
            .unwrap();
        jobs.reverse();
        jobs
    }
}

pub async fn schedule_fires_each_tick_once(store: Arc<dyn Store>) {
    let s = schedules::create(
        &store,
        json!({"name": "tick", "every": "10s", "job": {"kind": "k", "queue": "q"}}),
        t0(),
    )
    .await;
    assert_eq!(s.next_fire_at, Some(secs(10)));
    assert!(
        store
            .fire_schedules(secs(9))
            .await
            .unwrap()
            .queues
            .is_empty()
    );
    let woken = store.fire_schedules(secs(10)).await.unwrap();
    assert_eq!(woken.due, vec![secs(10)]);
    assert_eq!(woken.queues.first().unwrap().queue, "q");
    assert!(
        store.fire_schedules(secs(10)).await.unwrap().due.is_empty(),
        "a tick fires once"
    );
    store.fire_schedules(secs(20)).await.unwrap();
    let jobs = schedules::jobs_of(&store).await;
    let ticks: Vec<_> = jobs
        .iter()
        .map(|j| (j.schedule_id, j.fire_time, j.state))
        .collect();
    assert_eq!(
        ticks,
        vec![
            (Some(s.id), Some(secs(10)), JobState::Available),
            (Some(s.id), Some(secs(20)), JobState::Available)
        ]
    );
    let s = store
        .get_schedule("default", &ScheduleKey::Name("tick".into()))
        .await
        .unwrap();
    assert_eq!(
        (s.health.fired, s.last_fire_at, s.next_fire_at),
        (2, Some(secs(20)), Some(secs(30)))
    );
}

pub async fn a_tick_cannot_fire_twice_even_if_the_schedule_is_rewound(store: Arc<dyn Store>) {
    let s = schedules::create(
        &store,
        json!({"name": "tick", "every": "10s", "job": {"kind": "k"}}),
        t0(),
    )
    .await;
    store.fire_schedules(secs(10)).await.unwrap();
    // As if a crash had lost the schedule's advance but kept the job.
    let mut rewound = store
        .get_schedule("default", &ScheduleKey::Id(s.id))
        .await
        .unwrap();
    rewound.next_fire_at = Some(secs(10));
    store.update_schedule(rewound).await.unwrap();
    store.fire_schedules(secs(10)).await.unwrap();
    assert_eq!(
        schedules::jobs_of(&store).await.len(),
        1,
        "the unique (schedule, tick) key holds"
    );
}

pub async fn misfire_policies_apply_after_downtime(store: Arc<dyn Store>) {
    let skip = schedules::create(
        &store,
        json!({"name": "skip", "every": "10s", "job": {"kind": "skip"}}),
        t0(),
    )
    .await;
    let once = schedules::create(
        &store,
        json!({"name": "once", "every": "10s", "misfire": "run_once", "job": {"kind": "once"}}),
        t0(),
    )
    .await;
    let catch_up = schedules::create(
        &store,
        json!({"name": "catch", "every": "10s", "misfire": "catch_up", "catch_up_max": 2, "job": {"kind": "catch"}}),
        t0(),
    )
    .await;
    // Down until 00:01:05: ticks 10..60 were missed.
    store.fire_schedules(secs(65)).await.unwrap();
    let jobs = schedules::jobs_of(&store).await;
    let fired = |kind: &str| -> Vec<Timestamp> {
        let mut ticks: Vec<Timestamp> = jobs
            .iter()
            .filter(|j| j.kind == kind)
            .filter_map(|j| j.fire_time)
            .collect();
        ticks.sort();
        ticks
    };
    assert_eq!(fired("skip"), vec![secs(60)]);
    assert_eq!(fired("once"), vec![secs(10)]);
    assert_eq!(fired("catch"), vec![secs(50), secs(60)]);
    for (id, missed) in [(skip.id, 5), (once.id, 5), (catch_up.id, 4)] {
        let s = store
            .get_schedule("default", &ScheduleKey::Id(id))
            .await
            .unwrap();
        assert_eq!(s.health.missed, missed);
        assert_eq!(s.next_fire_at, Some(secs(70)));
    }
}

pub async fn overlap_forbid_and_replace(store: Arc<dyn Store>) {
    let forbid = schedules::create(
        &store,
        json!({"name": "forbid", "every": "10s", "overlap": "forbid", "job": {"kind": "forbid", "queue": "f"}}),
        t0(),
    )
    .await;
    store.fire_schedules(secs(10)).await.unwrap();
    store.fire_schedules(secs(20)).await.unwrap();
    let s = store
        .get_schedule("default", &ScheduleKey::Id(forbid.id))
        .await
        .unwrap();
    assert_eq!(
        (s.health.fired, s.health.skipped_overlap),
        (1, 1),
        "the first run is still pending"
    );

    let replace = schedules::create(
        &store,
        json!({"name": "replace", "every": "10s", "overlap": "replace", "job": {"kind": "replace", "queue": "r"}}),
        secs(20),
    )
    .await;
    store.fire_schedules(secs(30)).await.unwrap();
    let running = store.lease(params(&["r"], 1), secs(30)).await.unwrap();
    assert_eq!(running.len(), 1);
    store.fire_schedules(secs(40)).await.unwrap();
    let old = store.get_job("default", running[0].job.id).await.unwrap();
    assert!(old.cancel_requested, "the running one is asked to stop");
    let jobs = schedules::jobs_of(&store).await;
    let replaced: Vec<_> = jobs
        .iter()
        .filter(|j| j.schedule_id == Some(replace.id))
        .collect();
    assert_eq!(replaced.len(), 2);
}

pub async fn paused_schedules_do_not_fire_and_resume_by_policy(store: Arc<dyn Store>) {
    let s = schedules::create(
        &store,
        json!({"name": "p", "every": "10s", "job": {"kind": "k"}}),
        t0(),
    )
    .await;
    let mut paused = s.clone();
    paused.paused = true;
    store.update_schedule(paused).await.unwrap();
    store.fire_schedules(secs(35)).await.unwrap();
    assert!(schedules::jobs_of(&store).await.is_empty());
    assert_eq!(
        store.next_timer().await.unwrap(),
        None,
        "a paused schedule arms no timer"
    );
    let mut resumed = store
        .get_schedule("default", &ScheduleKey::Id(s.id))
        .await
        .unwrap();
    resumed.paused = false;
    store.update_schedule(resumed).await.unwrap();
    store.fire_schedules(secs(36)).await.unwrap();
    let jobs = schedules::jobs_of(&store).await;
    assert_eq!(jobs.len(), 1, "skip: only the latest missed tick");
    assert_eq!(jobs[0].fire_time, Some(secs(30)));
}

pub async fn schedules_by_name_trigger_and_delete(store: Arc<dyn Store>) {
    let s = schedules::create(
        &store,
        json!({"name": "daily", "cron": "0 3 * * *", "job": {"kind": "k"}}),
        t0(),
    )
    .await;
    let request: taskwheel_core::recurring::ScheduleRequest =
        serde_json::from_value(json!({"name": "daily", "every": "1m", "job": {"kind": "k"}}))
            .unwrap();
    let twin = taskwheel_core::recurring::ScheduleRecord::create(
        "default",
        request.into_definition().unwrap(),
        false,
        t0(),
    )
    .unwrap();
    assert!(matches!(
        store.create_schedule(twin).await,
        Err(StoreError::Conflict(_))
    ));
    let job = store
        .trigger_schedule("default", s.id, secs(5))
        .await
        .unwrap();
    assert_eq!(
        (job.schedule_id, job.fire_time, job.state),
        (Some(s.id), Some(secs(5)), JobState::Available)
    );
    let listed = store.list_schedules("default").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].health.fired, 1);
    assert!(matches!(
        store.get_schedule("acme", &ScheduleKey::Id(s.id)).await,
        Err(StoreError::ScheduleNotFound)
    ));
    store.delete_schedule("default", s.id).await.unwrap();
    assert!(matches!(
        store.get_schedule("default", &ScheduleKey::Id(s.id)).await,
        Err(StoreError::ScheduleNotFound)
    ));
    assert_eq!(
        store.get_job("default", job.id).await.unwrap().state,
        JobState::Available,
        "its jobs stay"
    );
}

pub async fn dead_lettered_runs_count_against_the_schedule(store: Arc<dyn Store>) {
    let s = schedules::create(
        &store,
        json!({"name": "f", "every": "10s", "job": {"kind": "k", "retry": {"max_attempts": 1}}}),
        t0(),
    )
    .await;
    store.fire_schedules(secs(10)).await.unwrap();
    let leased = lease_one(&store, secs(10)).await;
    store
        .fail(
            "default",
            leased.job.id,
            leased.token,
            "x".into(),
            error_cause(),
            secs(11),
        )
        .await
        .unwrap();
    let s = store
        .get_schedule("default", &ScheduleKey::Id(s.id))
        .await
        .unwrap();
    assert_eq!(s.health.failed, 1);
    assert_eq!(
        store.next_timer().await.unwrap(),
        Some(secs(20)),
        "the next tick arms the timer"
    );
}

/// Completes a leased job, which must succeed.
async fn complete_ok(store: &Arc<dyn Store>, id: JobId, token: LeaseToken, now: Timestamp) {
    let moved = store
        .complete(
            "default",
            vec![Completion {
                id,
                token,
                result: None,
            }],
            now,
        )
        .await
        .expect("complete")
        .pop()
        .expect("one result")
        .expect("completed");
    assert_eq!(moved.state, JobState::Succeeded);
}

/// Submits `body` at `now` and answers the stored job and the unique outcome.
async fn submit_unique(
    store: &Arc<dyn Store>,
    body: serde_json::Value,
    now: Timestamp,
) -> (Job, Option<UniqueOutcome>) {
    let submitted = store.submit(new_job(body, now), now).await.expect("submit");
    assert!(!submitted.deduplicated, "no idempotency key involved");
    (submitted.job, submitted.unique)
}

async fn count_jobs(store: &Arc<dyn Store>) -> usize {
    schedules::jobs_of(store).await.len()
}

pub async fn unique_skip_returns_the_job_holding_the_key(store: Arc<dyn Store>) {
    let body = json!({"kind": "report", "payload": {"customer": 7, "day": 1}, "unique": {}});
    let (first, outcome) = submit_unique(&store, body.clone(), t0()).await;
    assert_eq!(outcome, Some(UniqueOutcome::New));
    assert_eq!(first.unique_key.as_ref().map(String::len), Some(64));
    let (again, outcome) = submit_unique(&store, body, secs(1)).await;
    assert_eq!(outcome, Some(UniqueOutcome::Deduplicated));
    assert_eq!(again, first, "the holder is returned unchanged");
    // Another payload is another key (default: kind, queue and payload).
    let (other, outcome) = submit_unique(
        &store,
        json!({"kind": "report", "payload": {"customer": 7, "day": 2}, "unique": {}}),
        secs(2),
    )
    .await;
    assert_eq!(outcome, Some(UniqueOutcome::New));
    assert_ne!(other.id, first.id);
    // Unique by one payload field: the other fields do not matter.
    let by_customer = |day: u32| json!({"kind": "report", "payload": {"customer": 7, "day": day}, "unique": {"by": ["kind", "payload.customer"]}});
    let (a, outcome) = submit_unique(&store, by_customer(1), secs(3)).await;
    assert_eq!(outcome, Some(UniqueOutcome::New));
    let (b, outcome) = submit_unique(&store, by_customer(9), secs(4)).await;
    assert_eq!(outcome, Some(UniqueOutcome::Deduplicated));
    assert_eq!(b.id, a.id);
    // A plain submission is never affected.
    let (_, outcome) = submit_unique(&store, json!({"kind": "report"}), secs(5)).await;
    assert_eq!(outcome, None);
    assert_eq!(count_jobs(&store).await, 4);
    // Keys are per tenant.
    let mut job = new_job(
        json!({"kind": "report", "payload": {"customer": 7, "day": 1}, "unique": {}}),
        secs(6),
    );
    job.tenant = "other".into();
    let theirs = store.submit(job, secs(6)).await.unwrap();
    assert_eq!(theirs.unique, Some(UniqueOutcome::New));
}

pub async fn unique_replace_overwrites_only_a_pending_job(store: Arc<dyn Store>) {
    let replace = |v: u32, extra: serde_json::Value| {
        let mut body = json!({"kind": "sync", "payload": {"v": v},
                              "unique": {"by": ["kind"], "on_conflict": "replace"}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (first, outcome) = submit_unique(&store, replace(1, json!({"delay": "1m"})), t0()).await;
    assert_eq!(outcome, Some(UniqueOutcome::New));
    assert_eq!(first.state, JobState::Scheduled);
    let (second, outcome) = submit_unique(
        &store,
        replace(2, json!({"priority": "high", "tags": ["b"]})),
        secs(1),
    )
    .await;
    assert_eq!(outcome, Some(UniqueOutcome::Replaced));
    assert_eq!(second.id, first.id, "the job keeps its id");
    assert_eq!(second.payload, json!({"v": 2}));
    assert_eq!(second.priority, Priority::HIGH);
    assert_eq!(second.tags, vec!["b".to_string()]);
    assert_eq!(second.state, JobState::Available, "due now, as submitted");
    assert_eq!(second.run_at, secs(1));
    assert_eq!(store.get_job("default", first.id).await.unwrap(), second);
    // Running: the submission is deduplicated, the job untouched.
    let leased = lease_one(&store, secs(2)).await;
    assert_eq!(leased.job.id, first.id);
    let (third, outcome) = submit_unique(&store, replace(3, json!({})), secs(3)).await;
    assert_eq!(outcome, Some(UniqueOutcome::Deduplicated));
    assert_eq!(third.state, JobState::Running);
    assert_eq!(third.payload, json!({"v": 2}));
    assert_eq!(count_jobs(&store).await, 1);
    // Finished (succeeded is not among the default states): the key is free.
    complete_ok(&store, first.id, leased.token, secs(4)).await;
    let (fourth, outcome) = submit_unique(&store, replace(4, json!({})), secs(5)).await;
    assert_eq!(outcome, Some(UniqueOutcome::New));
    assert_ne!(fourth.id, first.id);
    assert_eq!(count_jobs(&store).await, 2);
}

pub async fn unique_debounce_pushes_the_run_time(store: Arc<dyn Store>) {
    let debounce = |v: u32| {
        json!({"kind": "reindex", "payload": {"v": v},
               "unique": {"key": "index-7", "on_conflict": "debounce", "debounce": "30s"}})
    };
    let (first, outcome) = submit_unique(&store, debounce(1), t0()).await;
    assert_eq!(outcome, Some(UniqueOutcome::New));
    assert_eq!(first.state, JobState::Scheduled);
    assert_eq!(
        first.run_at,
        secs(30),
        "a debounced job waits out its debounce"
    );
    let (second, outcome) = submit_unique(&store, debounce(2), secs(20)).await;
    assert_eq!(outcome, Some(UniqueOutcome::Replaced));
    assert_eq!(second.id, first.id);
    assert_eq!(second.payload, json!({"v": 2}), "the latest payload wins");
    assert_eq!(second.run_at, secs(50));
    assert!(
        store.promote_due(secs(30)).await.unwrap().queues.is_empty(),
        "the old run time has passed without the job running"
    );
    assert_eq!(store.promote_due(secs(50)).await.unwrap().queues.len(), 1);
    // Available but not yet leased: still pending, pushed back again.
    let (third, outcome) = submit_unique(&store, debounce(3), secs(51)).await;
    assert_eq!(outcome, Some(UniqueOutcome::Replaced));
    assert_eq!((third.state, third.run_at), (JobState::Scheduled, secs(81)));
    assert!(
        store
            .lease(params(&["default"], 1), secs(60))
            .await
            .unwrap()
            .is_empty(),
        "a debounced job is not leased before its time"
    );
    assert_eq!(count_jobs(&store).await, 1);
}

pub async fn unique_period_buckets_split_the_key(store: Arc<dyn Store>) {
    let hourly = json!({"kind": "digest", "unique": {"by": ["kind"], "period": "1h"}});
    // t0 is on an hour boundary: [t0, t0 + 1h) is one bucket.
    let (first, outcome) = submit_unique(&store, hourly.clone(), t0()).await;
    assert_eq!(outcome, Some(UniqueOutcome::New));
    let (same, outcome) = submit_unique(&store, hourly.clone(), secs(3599)).await;
    assert_eq!(outcome, Some(UniqueOutcome::Deduplicated));
    assert_eq!(same.id, first.id);
    let (next, outcome) = submit_unique(&store, hourly, secs(3600)).await;
    assert_eq!(outcome, Some(UniqueOutcome::New), "a new hour, a new key");
    assert_ne!(next.unique_key, first.unique_key);
    assert_eq!(count_jobs(&store).await, 2);
}

pub async fn unique_states_decide_how_long_a_key_is_held(store: Arc<dyn Store>) {
    let body = |states: serde_json::Value| {
        json!({"kind": "k", "retry": {"max_attempts": 1},
               "unique": {"key": "once", "states": states}})
    };
    let with_succeeded = json!(["scheduled", "available", "running", "succeeded"]);
    let (first, _) = submit_unique(&store, body(with_succeeded.clone()), t0()).await;
    let leased = lease_one(&store, t0()).await;
    complete_ok(&store, first.id, leased.token, secs(1)).await;
    let (again, outcome) = submit_unique(&store, body(with_succeeded), secs(2)).await;
    assert_eq!(
        outcome,
        Some(UniqueOutcome::Deduplicated),
        "a succeeded job holds the key when its states include succeeded"
    );
    assert_eq!((again.id, again.state), (first.id, JobState::Succeeded));

    // Default states: a dead-lettered job frees its key...
    let (dead, _) = submit_unique(
        &store,
        json!({"kind": "k2", "retry": {"max_attempts": 1},
                                                 "unique": {"key": "k2"}}),
        secs(3),
    )
    .await;
    let leased = lease_one(&store, secs(3)).await;
    store
        .fail(
            "default",
            dead.id,
            leased.token,
            "boom".into(),
            error_cause(),
            secs(4),
        )
        .await
        .unwrap();
    let (fresh, outcome) = submit_unique(
        &store,
        json!({"kind": "k2", "unique": {"key": "k2"}}),
        secs(5),
    )
    .await;
    assert_eq!(outcome, Some(UniqueOutcome::New));
    assert_ne!(fresh.id, dead.id);
    // ...and cannot be re-run while another job holds it.
    assert!(matches!(
        store.rerun("default", dead.id, secs(6)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(state_of(&store, dead.id).await, JobState::Failed);
    store.cancel("default", fresh.id, secs(7)).await.unwrap();
    let rerun = store.rerun("default", dead.id, secs(8)).await.unwrap();
    assert_eq!(
        rerun.state,
        JobState::Available,
        "free again once the holder is cancelled"
    );
}

pub async fn concurrent_unique_submits_make_one_job(store: Arc<dyn Store>) {
    let submits: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                // Different payloads, one key: the key is unique by kind.
                let body = json!({"kind": "k", "payload": {"i": i},
                                  "unique": {"by": ["kind"], "on_conflict": if i % 2 == 0 { "skip" } else { "replace" }}});
                store.submit(new_job(body, t0()), t0()).await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for submit in submits {
        let submitted = submit.await.expect("task").expect("submit");
        ids.insert(submitted.job.id);
        created += usize::from(submitted.unique == Some(UniqueOutcome::New));
    }
    assert_eq!(ids.len(), 1, "every submission answers the same job");
    assert_eq!(created, 1, "exactly one submission created it");
    assert_eq!(count_jobs(&store).await, 1);
}

pub async fn heartbeat_progress_is_stored_and_kept(store: Arc<dyn Store>) {
    let retry = serde_json::to_value(fixed_retry(2, 0)).unwrap();
    let job = submit(&store, json!({"kind": "k", "retry": retry}), t0()).await;
    assert_eq!(job.progress, None);
    let leased = lease_one(&store, t0()).await;
    let progress = Progress {
        percent: Some(40.5),
        message: Some("copied 4 of 10 files".into()),
        updated_at: secs(5),
    };
    store
        .heartbeat(
            "default",
            job.id,
            leased.token,
            Some(progress.clone()),
            secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_job("default", job.id).await.unwrap().progress,
        Some(progress.clone())
    );
    // A heartbeat without progress leaves it; a stale one changes nothing.
    store
        .heartbeat("default", job.id, leased.token, None, secs(6))
        .await
        .unwrap();
    assert_eq!(
        store.get_job("default", job.id).await.unwrap().progress,
        Some(progress.clone())
    );
    // A new report replaces the whole progress.
    let message_only = Progress {
        percent: None,
        message: Some("almost".into()),
        updated_at: secs(7),
    };
    store
        .heartbeat(
            "default",
            job.id,
            leased.token,
            Some(message_only.clone()),
            secs(7),
        )
        .await
        .unwrap();
    store
        .fail(
            "default",
            job.id,
            leased.token,
            "boom".into(),
            error_cause(),
            secs(8),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_job("default", job.id).await.unwrap().progress,
        Some(message_only),
        "kept after the attempt ends"
    );
    // A new attempt starts from nothing, and its progress outlives the job.
    let second = lease_one(&store, secs(9)).await;
    assert_eq!(second.job.progress, None);
    assert_eq!(
        store.get_job("default", job.id).await.unwrap().progress,
        None
    );
    let done = Progress {
        percent: Some(100.0),
        message: None,
        updated_at: secs(10),
    };
    store
        .heartbeat(
            "default",
            job.id,
            second.token,
            Some(done.clone()),
            secs(10),
        )
        .await
        .unwrap();
    complete_ok(&store, job.id, second.token, secs(11)).await;
    let finished = store.get_job("default", job.id).await.unwrap();
    assert_eq!(finished.state, JobState::Succeeded);
    assert_eq!(finished.progress, Some(done));
}

pub async fn snoozes_never_use_up_the_attempt_budget(store: Arc<dyn Store>) {
    let job = submit(
        &store,
        json!({"kind": "k", "retry": {"max_attempts": 1}}),
        t0(),
    )
    .await;
    for i in 0..3 {
        let leased = lease_one(&store, secs(i * 10)).await;
        assert_eq!(leased.job.attempt, 1, "snooze {i}: still the first attempt");
        let moved = store
            .snooze(
                "default",
                job.id,
                leased.token,
                Duration::from_secs(5),
                secs(i * 10 + 1),
            )
            .await
            .unwrap();
        assert_eq!(moved.state, JobState::Scheduled);
        store.promote_due(secs(i * 10 + 6)).await.unwrap();
    }
    let last = lease_one(&store, secs(30)).await;
    assert_eq!(last.job.attempt, 1);
    complete_ok(&store, job.id, last.token, secs(31)).await;
    let done = store.get_job("default", job.id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let outcomes: Vec<_> = done.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            AttemptOutcome::Released,
            AttemptOutcome::Released,
            AttemptOutcome::Released,
            AttemptOutcome::Succeeded
        ]
    );
}

pub async fn a_blocked_job_holds_its_unique_key(store: Arc<dyn Store>) {
    let parent = submit(&store, json!({"kind": "parent"}), t0()).await;
    let (child, outcome) = submit_unique(
        &store,
        json!({"kind": "child", "depends_on": [parent.id], "unique": {"key": "c"}}),
        t0(),
    )
    .await;
    assert_eq!(outcome, Some(UniqueOutcome::New));
    assert_eq!(child.state, JobState::Blocked);
    // Blocked is a holding state, and a replace never overwrites it.
    for policy in ["skip", "replace"] {
        let (held, outcome) = submit_unique(
            &store,
            json!({"kind": "child", "payload": 2, "unique": {"key": "c", "on_conflict": policy}}),
            secs(1),
        )
        .await;
        assert_eq!(outcome, Some(UniqueOutcome::Deduplicated), "{policy}");
        assert_eq!((held.id, held.state), (child.id, JobState::Blocked));
    }
    // Released by its parent, it keeps the key without colliding.
    let leased = lease_one(&store, secs(2)).await;
    assert_eq!(leased.job.id, parent.id);
    complete_ok(&store, parent.id, leased.token, secs(3)).await;
    assert_eq!(state_of(&store, child.id).await, JobState::Available);
    let (again, outcome) = submit_unique(
        &store,
        json!({"kind": "child", "unique": {"key": "c"}}),
        secs(4),
    )
    .await;
    assert_eq!(
        (outcome, again.id),
        (Some(UniqueOutcome::Deduplicated), child.id)
    );
    assert_eq!(count_jobs(&store).await, 2);
}

// ---- Queue flow control ----

async fn set_queue(store: &Arc<dyn Store>, queue: &str, patch: serde_json::Value) -> QueueSettings {
    let patch: QueuePatch = serde_json::from_value(patch).expect("valid patch");
    patch
        .apply_to(QueueSettings::default())
        .expect("patch validates");
    store
        .update_queue("default", queue, patch, t0())
        .await
        .expect("update queue")
}

/// How many jobs one lease of `queues` gets.
async fn count_leased(store: &Arc<dyn Store>, queues: &[&str], max: u32, now: Timestamp) -> usize {
    store
        .lease(params(queues, max), now)
        .await
        .expect("lease")
        .len()
}

async fn complete_all(store: &Arc<dyn Store>, leased: &[LeasedJob], now: Timestamp) -> Vec<bool> {
    let items = leased
        .iter()
        .map(|l| Completion {
            id: l.job.id,
            token: l.token,
            result: None,
        })
        .collect();
    store
        .complete("default", items, now)
        .await
        .expect("complete")
        .into_iter()
        .map(|m| m.expect("completed").freed)
        .collect()
}

pub async fn paused_queue_leases_nothing_until_resumed(store: Arc<dyn Store>) {
    assert_eq!(
        store.queue_settings("default", "q").await.unwrap(),
        QueueSettings::default(),
        "a queue without settings is running and unlimited"
    );
    for _ in 0..2 {
        submit(&store, json!({"kind": "k", "queue": "q"}), t0()).await;
    }
    submit(&store, json!({"kind": "k", "queue": "other"}), t0()).await;
    let paused = set_queue(&store, "q", json!({"paused": true})).await;
    assert!(paused.paused);
    assert_eq!(store.queue_settings("default", "q").await.unwrap(), paused);
    assert_eq!(count_leased(&store, &["q"], 10, t0()).await, 0);
    let both = store
        .lease(params(&["q", "other"], 10), t0())
        .await
        .unwrap();
    assert_eq!(both.len(), 1, "other queues are not held up");
    assert_eq!(both[0].job.queue, "other");
    set_queue(&store, "q", json!({"paused": false})).await;
    assert_eq!(count_leased(&store, &["q"], 10, secs(1)).await, 2);
}

pub async fn concurrency_caps_running_jobs_of_a_queue(store: Arc<dyn Store>) {
    set_queue(&store, "c", json!({"concurrency": 2})).await;
    for _ in 0..5 {
        submit(&store, json!({"kind": "k", "queue": "c"}), t0()).await;
    }
    submit(&store, json!({"kind": "k", "queue": "free"}), t0()).await;
    let first = store.lease(params(&["c", "free"], 10), t0()).await.unwrap();
    assert_eq!(first.iter().filter(|l| l.job.queue == "c").count(), 2);
    assert_eq!(first.iter().filter(|l| l.job.queue == "free").count(), 1);
    assert_eq!(count_leased(&store, &["c"], 10, t0()).await, 0);
    let (c_jobs, free_jobs): (Vec<LeasedJob>, Vec<LeasedJob>) =
        first.into_iter().partition(|l| l.job.queue == "c");
    assert_eq!(complete_all(&store, &free_jobs, secs(1)).await, vec![false]);
    assert_eq!(
        complete_all(&store, &c_jobs[..1], secs(1)).await,
        vec![true],
        "ending a job of a limited queue frees a slot"
    );
    let next = store.lease(params(&["c"], 10), secs(1)).await.unwrap();
    assert_eq!(next.len(), 1);
    // A failure that goes back to the queue frees its slot too.
    let moved = store
        .fail(
            "default",
            next[0].job.id,
            next[0].token,
            "x".into(),
            error_cause(),
            secs(2),
        )
        .await
        .unwrap();
    assert!(moved.freed);
    // Lifting the limit lets the rest run (the failed one waits out its backoff).
    set_queue(&store, "c", json!({"concurrency": null})).await;
    assert_eq!(count_leased(&store, &["c"], 10, secs(100)).await, 2);
}

pub async fn key_concurrency_caps_each_key_without_blocking_others(store: Arc<dyn Store>) {
    set_queue(&store, "k", json!({"key_concurrency": 1})).await;
    for key in ["a", "a", "a", "b", "b"] {
        submit(
            &store,
            json!({"kind": "k", "queue": "k", "concurrency_key": key}),
            t0(),
        )
        .await;
    }
    submit(&store, json!({"kind": "k", "queue": "k"}), t0()).await;
    let first = store.lease(params(&["k"], 10), t0()).await.unwrap();
    let mut keys: Vec<Option<String>> = first
        .iter()
        .map(|l| l.job.concurrency_key.clone())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![None, Some("a".into()), Some("b".into())],
        "one per key; jobs without a key are not limited"
    );
    assert_eq!(count_leased(&store, &["k"], 10, t0()).await, 0);
    let a = first
        .iter()
        .find(|l| l.job.concurrency_key.as_deref() == Some("a"))
        .unwrap();
    assert_eq!(
        complete_all(&store, std::slice::from_ref(a), secs(1)).await,
        vec![true]
    );
    let next = store.lease(params(&["k"], 10), secs(1)).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].job.concurrency_key.as_deref(), Some("a"));
    assert_eq!(
        store
            .get_job("default", next[0].job.id)
            .await
            .unwrap()
            .concurrency_key
            .as_deref(),
        Some("a"),
        "the key is stored"
    );
}

pub async fn rate_limit_refills_with_time(store: Arc<dyn Store>) {
    let settings = set_queue(
        &store,
        "r",
        json!({"rate": {"limit": 2, "per": "1s", "burst": 2}}),
    )
    .await;
    assert_eq!(
        settings.rate,
        Some(RateLimit {
            limit: 2,
            per: RatePeriod::Second,
            burst: 2
        })
    );
    for _ in 0..10 {
        submit(&store, json!({"kind": "k", "queue": "r"}), t0()).await;
    }
    let burst = store
        .lease_detailed(params(&["r"], 10), t0())
        .await
        .unwrap();
    assert_eq!(burst.jobs.len(), 2, "the burst");
    let at = |ms: u64| add(t0(), Duration::from_millis(ms));
    assert_eq!(burst.refill_at, Some(at(500)), "one token per 500ms");
    let dry = store
        .lease_detailed(params(&["r"], 10), at(100))
        .await
        .unwrap();
    assert!(dry.jobs.is_empty());
    assert_eq!(dry.refill_at, Some(at(500)));
    let next = store.next_timer().await.unwrap().expect("a timer");
    assert!(next <= at(500), "the refill is a timer: {next}");
    // The timer pass at the refill wakes the queue's waiters.
    let clock: Arc<dyn taskwheel_core::Clock> = Arc::new(taskwheel_core::ManualClock::new(at(500)));
    let (woken, _) = store.timer_pass(clock, None).await.unwrap();
    assert!(woken.queues.iter().any(|q| q.queue == "r"), "{woken:?}");
    assert_eq!(count_leased(&store, &["r"], 10, at(500)).await, 1);
    assert_eq!(count_leased(&store, &["r"], 10, at(900)).await, 0);
    // Tokens pile up to the burst, no further.
    assert_eq!(count_leased(&store, &["r"], 10, at(60_000)).await, 2);
    set_queue(&store, "r", json!({"rate": null})).await;
    assert_eq!(count_leased(&store, &["r"], 10, at(60_000)).await, 5);
}

pub async fn fair_dispatch_does_not_starve_a_small_key(store: Arc<dyn Store>) {
    const BIG: usize = 10_000;
    set_queue(&store, "fair", json!({"concurrency": 100_000})).await;
    let mut batch = tokio::task::JoinSet::new();
    for i in 0..BIG {
        let store = Arc::clone(&store);
        batch.spawn(async move {
            let job = new_job(
                json!({"kind": "k", "queue": "fair", "concurrency_key": "big"}),
                t0(),
            );
            store.submit(job, t0()).await.expect("submit");
        });
        if batch.len() >= 200 || i + 1 == BIG {
            while let Some(done) = batch.join_next().await {
                done.expect("task");
            }
        }
    }
    let mut small = std::collections::HashSet::new();
    for _ in 0..10 {
        let job = submit(
            &store,
            json!({"kind": "k", "queue": "fair", "concurrency_key": "small"}),
            secs(1),
        )
        .await;
        small.insert(job.id);
    }
    let urgent = submit(
        &store,
        json!({"kind": "k", "queue": "fair", "concurrency_key": "big", "priority": 9}),
        secs(2),
    )
    .await;
    let first = store.lease(params(&["fair"], 11), secs(3)).await.unwrap();
    assert_eq!(first[0].job.id, urgent.id, "priorities still come first");
    let mut leased_small = first.iter().filter(|l| small.contains(&l.job.id)).count();
    let second = store.lease(params(&["fair"], 11), secs(3)).await.unwrap();
    leased_small += second.iter().filter(|l| small.contains(&l.job.id)).count();
    assert_eq!(
        leased_small, 10,
        "the small key's 10 jobs are all out within two batches of 11, with 10,000 ahead of them"
    );
}

pub async fn queue_stats_count_depth_age_and_throughput(store: Arc<dyn Store>) {
    for _ in 0..3 {
        submit(&store, json!({"kind": "k", "queue": "s"}), t0()).await;
    }
    submit(
        &store,
        json!({"kind": "k", "queue": "s", "delay": "1h"}),
        t0(),
    )
    .await;
    let leased = store.lease(params(&["s"], 2), secs(10)).await.unwrap();
    complete_all(&store, &leased[..1], secs(20)).await;
    set_queue(&store, "idle", json!({"concurrency": 4})).await;
    let all = store.queue_stats("default", None, secs(30)).await.unwrap();
    let names: Vec<&str> = all.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["idle", "s"],
        "queues with jobs or settings, by name"
    );
    let s = &all[1];
    assert_eq!(
        (
            s.depth.scheduled,
            s.depth.available,
            s.depth.running,
            s.depth.succeeded
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(s.oldest_available, Some(t0()));
    assert_eq!(s.finished_last_minute, 1);
    assert_eq!(all[0].settings.concurrency, Some(4));
    let later = store
        .queue_stats("default", Some("s"), secs(200))
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].finished_last_minute, 0, "a minute later");
    let none = store
        .queue_stats("default", Some("nothing"), secs(30))
        .await
        .unwrap();
    assert_eq!(none.len(), 1);
    assert_eq!(none[0].depth.available, 0);
    assert!(
        store
            .queue_stats("other-tenant", None, secs(30))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn submit_batch_answers_each_item_in_order(store: Arc<dyn Store>) {
    let earlier = submit(
        &store,
        json!({"kind": "old", "idempotency_key": "k0"}),
        t0(),
    )
    .await;
    let batch = vec![
        new_job(json!({"kind": "a", "idempotency_key": "k1"}), secs(1)),
        new_job(json!({"kind": "b"}), secs(1)),
        new_job(json!({"kind": "c", "idempotency_key": "k0"}), secs(1)),
        new_job(json!({"kind": "d", "idempotency_key": "k1"}), secs(1)),
        new_job(json!({"kind": "e", "delay": "10s"}), secs(1)),
    ];
    let ids: Vec<JobId> = batch.iter().map(|j| j.id).collect();
    let answers = store.submit_batch(batch, false, secs(1)).await.unwrap();
    let answers: Vec<_> = answers.into_iter().map(|a| a.expect("stored")).collect();
    assert_eq!(answers.len(), 5);
    let kinds: Vec<&str> = answers.iter().map(|a| a.job.kind.as_str()).collect();
    assert_eq!(kinds, ["a", "b", "old", "a", "e"], "answers in order");
    let dedup: Vec<bool> = answers.iter().map(|a| a.deduplicated).collect();
    assert_eq!(dedup, [false, false, true, true, false]);
    assert_eq!(answers[0].job.id, ids[0]);
    assert_eq!(answers[1].job.id, ids[1]);
    assert_eq!(
        answers[2].job.id, earlier.id,
        "a key already stored answers its job"
    );
    assert_eq!(
        answers[3].job.id, ids[0],
        "a key used earlier in the batch answers that job"
    );
    assert_eq!(answers[4].job.state, JobState::Scheduled);
    assert_eq!(answers[1].job.state, JobState::Available);
    assert_eq!(
        count_jobs(&store).await,
        4,
        "the old job and three new ones"
    );
    assert_eq!(store.get_job("default", ids[4]).await.unwrap().kind, "e");
    assert!(matches!(
        store.get_job("default", ids[3]).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .submit_batch(Vec::new(), true, secs(2))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn atomic_submit_batch_stores_all_or_nothing(store: Arc<dyn Store>) {
    let taken = new_job(json!({"kind": "k"}), t0());
    store.submit(taken.clone(), t0()).await.unwrap();
    // A job whose id is taken cannot be stored.
    let fresh = new_job(json!({"kind": "fresh"}), secs(1));
    let refused = store
        .submit_batch(vec![fresh.clone(), taken.clone()], true, secs(1))
        .await;
    assert!(refused.is_err(), "an atomic batch fails as a whole");
    assert!(
        matches!(
            store.get_job("default", fresh.id).await,
            Err(StoreError::NotFound)
        ),
        "nothing of a failed atomic batch is stored"
    );
    let answers = store
        .submit_batch(vec![fresh.clone(), taken], false, secs(1))
        .await
        .unwrap();
    assert!(answers[0].is_ok());
    assert!(
        answers[1].is_err(),
        "the failing item answers its own error"
    );
    // A job whose parent does not exist is refused alone; one whose parent
    // is there waits for it.
    let unknown = JobId::new_v7(t0()).to_string();
    let parent = fresh.id.to_string();
    let batch = vec![
        new_job(json!({"kind": "orphan", "depends_on": [unknown]}), secs(2)),
        new_job(json!({"kind": "child", "depends_on": [parent]}), secs(2)),
    ];
    let answers = store.submit_batch(batch, false, secs(2)).await.unwrap();
    assert!(
        matches!(answers[0], Err(StoreError::Invalid(_))),
        "{:?}",
        answers[0]
    );
    assert_eq!(answers[1].as_ref().unwrap().job.state, JobState::Blocked);
    assert_eq!(
        store.get_job("default", fresh.id).await.unwrap().kind,
        "fresh"
    );
}

/// Many submits, heartbeats and reports at once, stale tokens among them:
/// engines that group concurrent operations must still answer each alone.
pub async fn concurrent_reports_each_get_their_own_answer(store: Arc<dyn Store>) {
    const N: usize = 60;
    for _ in 0..N {
        submit(
            &store,
            json!({"kind": "k", "retry": {"max_attempts": 1}}),
            t0(),
        )
        .await;
    }
    let leased = store
        .lease(params(&["default"], N as u32), t0())
        .await
        .unwrap();
    assert_eq!(leased.len(), N);
    let now = secs(5);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, job) in leased.iter().enumerate() {
        let (store, id) = (store.clone(), job.job.id);
        // Odd jobs are reported on with a token that is not theirs.
        let token = if i % 2 == 0 {
            job.token
        } else {
            taskwheel_core::LeaseToken::random()
        };
        tasks.spawn(async move {
            let ok = match i / 15 {
                0 => store
                    .heartbeat("default", id, token, None, now)
                    .await
                    .map(|b| {
                        assert_eq!(b.expires_at, add(now, Duration::from_secs(30)));
                    }),
                1 => {
                    let item = Completion {
                        id,
                        token,
                        result: Some(json!(i)),
                    };
                    let mut answers = store.complete("default", vec![item], now).await.unwrap();
                    answers
                        .remove(0)
                        .map(|m| assert_eq!(m.state, JobState::Succeeded))
                }
                2 => store
                    .fail("default", id, token, format!("e{i}"), error_cause(), now)
                    .await
                    .map(|m| assert_eq!(m.state, JobState::Failed)),
                _ => store
                    .snooze("default", id, token, Duration::from_secs(60), now)
                    .await
                    .map(|m| assert_eq!(m.state, JobState::Scheduled)),
            };
            (
                i,
                ok.map_err(|e| matches!(e, StoreError::Transition(TransitionError::StaleLease))),
            )
        });
    }
    for i in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            let body = json!({"kind": "dup", "idempotency_key": format!("key-{}", i % 4)});
            let submitted = store.submit(new_job(body, now), now).await.unwrap();
            (
                1000 + i,
                Ok(()).map(|()| assert_eq!(submitted.job.kind, "dup")),
            )
        });
    }
    // Reports on a job that does not exist answer NotFound, alone.
    for _ in 0..3 {
        let store = store.clone();
        tasks.spawn(async move {
            let unknown = JobId::new_v7(now);
            let beat = store
                .heartbeat(
                    "default",
                    unknown,
                    taskwheel_core::LeaseToken::random(),
                    None,
                    now,
                )
                .await;
            (2000, Err(!matches!(beat, Err(StoreError::NotFound))))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, outcome) = joined.expect("no task panics");
        match i {
            2000 => assert_eq!(outcome, Err(false), "an unknown job answers NotFound"),
            1000.. => assert_eq!(outcome, Ok(())),
            i if i % 2 == 0 => assert_eq!(outcome, Ok(()), "job {i}: its own token is accepted"),
            i => assert_eq!(outcome, Err(true), "job {i}: a stale token is refused"),
        }
    }
    let all = store
        .list_jobs(
            "default",
            &JobFilter {
                kind: Some("dup".into()),
                limit: 100,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 4, "one job per idempotency key");
    for (i, job) in leased.iter().enumerate() {
        let stored = store.get_job("default", job.job.id).await.unwrap();
        let expected = match (i % 2, i / 15) {
            (1, _) | (_, 0) => JobState::Running,
            (_, 1) => JobState::Succeeded,
            (_, 2) => JobState::Failed,
            _ => JobState::Scheduled,
        };
        assert_eq!(stored.state, expected, "job {i}");
        if i % 2 == 0 && i / 15 == 0 {
            assert_eq!(
                stored.lease.as_ref().expect("running").expires_at,
                add(now, Duration::from_secs(30))
            );
        }
        if i % 2 == 1 {
            assert_eq!(
                stored.lease.as_ref().expect("running").expires_at,
                add(t0(), Duration::from_secs(30))
            );
        }
    }
}
