//! The Rust worker SDK against a real server: handlers by kind, typed
//! outcomes, cancellation through heartbeats, graceful shutdown.

use std::time::Duration;

use serde_json::json;
use taskwheel_client::{Client, Outcome, Worker};
use taskwheel_core::wire::SubmitJob;
use taskwheel_core::{AttemptOutcome, JobId, JobState};
use tokio::sync::oneshot;

use crate::common::TestServer;

/// Polls until the job reaches `state`; integration plumbing, not a timing assertion.
async fn wait_for(client: &Client, id: JobId, state: JobState) -> taskwheel_core::wire::JobView {
    for _ in 0..500 {
        let job = client.get_job(id).await.expect("get");
        if job.state == state {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never reached {state}");
}

/// Runs `worker` until the sender is used (or dropped).
fn run(
    worker: Worker,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), taskwheel_client::WorkerError>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
    }));
    (stop, running)
}

fn submit(kind: &str, payload: serde_json::Value) -> SubmitJob {
    SubmitJob::new(kind, payload)
}

#[tokio::test]
async fn handlers_run_by_kind_with_typed_outcomes() {
    let server = TestServer::start().await;
    let client = Client::new(&server.url).unwrap();
    let worker = Worker::builder(client.clone())
        .concurrency(4)
        .poll_wait(Duration::from_secs(1))
        .handler_fn("double", |ctx| async move {
            let n = ctx.payload()["n"].as_i64().unwrap_or(0);
            Outcome::complete_with(json!({"doubled": n * 2}))
        })
        .handler_fn("reject", |_ctx| async {
            Outcome::fail_permanently("bad input")
        })
        .handler_fn("later", |ctx| async move {
            if ctx.attempt() == 1 {
                Outcome::RetryAfter {
                    error: "not yet".into(),
                    delay: Duration::from_millis(200),
                }
            } else {
                Outcome::complete()
            }
        })
        .build()
        .unwrap();
    let (stop, running) = run(worker);

    let double = client
        .submit(&submit("double", json!({"n": 21})))
        .await
        .unwrap()
        .id;
    let reject = client
        .submit(&submit("reject", json!({})))
        .await
        .unwrap()
        .id;
    let later = client.submit(&submit("later", json!({}))).await.unwrap().id;
    let unknown = client
        .submit(&submit("no-such-kind", json!({})))
        .await
        .unwrap()
        .id;

    let done = wait_for(&client, double, JobState::Succeeded).await;
    assert_eq!(done.attempts[0].result, Some(json!({"doubled": 42})));
    let dead = wait_for(&client, reject, JobState::Failed).await;
    assert_eq!(dead.attempts.len(), 1, "retry: false is not retried");
    assert_eq!(dead.attempts[0].error.as_deref(), Some("bad input"));
    let retried = wait_for(&client, later, JobState::Succeeded).await;
    assert_eq!(retried.attempts.len(), 2);
    assert_eq!(retried.attempts[0].outcome, AttemptOutcome::Failed);
    let unknown = wait_for(&client, unknown, JobState::Failed).await;
    assert!(
        unknown.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no-such-kind")
    );

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_cancel_reaches_the_running_handler() {
    let server = TestServer::start().await;
    let client = Client::new(&server.url).unwrap();
    let (started_tx, started) = tokio::sync::mpsc::unbounded_channel::<()>();
    let worker = Worker::builder(client.clone())
        .heartbeat_interval(Duration::from_millis(50))
        .poll_wait(Duration::from_secs(1))
        .handler_fn("long", move |ctx| {
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send(());
                ctx.cancelled().await;
                Outcome::cancel("asked to stop")
            }
        })
        .build()
        .unwrap();
    let (stop, running) = run(worker);
    let id = client.submit(&submit("long", json!({}))).await.unwrap().id;
    let mut started = started;
    tokio::time::timeout(Duration::from_secs(10), started.recv())
        .await
        .expect("handler started");
    let flagged = client.cancel(id).await.unwrap();
    assert!(flagged.cancel_requested);
    let job = wait_for(&client, id, JobState::Cancelled).await;
    assert_eq!(job.attempts[0].outcome, AttemptOutcome::Cancelled);
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test]
async fn shutdown_releases_jobs_that_outlive_the_grace_period() {
    let server = TestServer::start().await;
    let client = Client::new(&server.url).unwrap();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
    let worker = Worker::builder(client.clone())
        .shutdown_grace(Duration::from_millis(200))
        .poll_wait(Duration::from_secs(1))
        .handler_fn("stuck", move |_ctx| {
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send(());
                std::future::pending::<()>().await;
                Outcome::complete()
            }
        })
        .build()
        .unwrap();
    let (stop, running) = run(worker);
    let id = client.submit(&submit("stuck", json!({}))).await.unwrap().id;
    tokio::time::timeout(Duration::from_secs(10), started.recv())
        .await
        .expect("handler started");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("shutdown ends after the grace period")
        .unwrap()
        .unwrap();
    let job = client.get_job(id).await.unwrap();
    assert_eq!(
        job.state,
        JobState::Available,
        "released for another worker"
    );
    assert_eq!(job.attempt, 0, "a release does not spend an attempt");
    assert_eq!(job.attempts[0].outcome, AttemptOutcome::Released);
    server.stop().await;
}

#[tokio::test]
async fn a_handler_reads_its_parents_results() {
    let server = TestServer::start().await;
    let client = Client::new(&server.url).unwrap();
    let worker = Worker::builder(client.clone())
        .concurrency(2)
        .poll_wait(Duration::from_secs(1))
        .handler_fn("count", |ctx| async move {
            Outcome::complete_with(json!(ctx.payload()["n"].as_i64().unwrap_or(0)))
        })
        .handler_fn("sum", |ctx| async move {
            let total: i64 = ctx
                .parents()
                .iter()
                .filter_map(|p| p.result.as_ref().and_then(|r| r.as_i64()))
                .sum();
            let first = ctx.parent_result("a").cloned();
            Outcome::complete_with(json!({"total": total, "a": first}))
        })
        .build()
        .unwrap();
    let (stop, running) = run(worker);
    let workflow = serde_json::from_value(json!({"jobs": [
        {"name": "a", "kind": "count", "payload": {"n": 2}},
        {"name": "b", "kind": "count", "payload": {"n": 40}},
        {"name": "total", "kind": "sum", "depends_on": ["a", "b"]},
    ]}))
    .unwrap();
    let submitted = client.submit_workflow(&workflow).await.unwrap();
    let total = submitted.job_ids["total"];
    let done = wait_for(&client, total, JobState::Succeeded).await;
    assert_eq!(done.attempts[0].result, Some(json!({"total": 42, "a": 2})));
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn handlers_report_progress_that_the_job_shows() {
    let server = TestServer::start().await;
    let client = Client::new(&server.url).unwrap();
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let proceed = go.clone();
    // The default heartbeat interval (10s) is far longer than this test: the
    // reports travel because the SDK sends them at once.
    let worker = Worker::builder(client.clone())
        .poll_wait(Duration::from_secs(1))
        .handler_fn("steps", move |ctx| {
            let proceed = proceed.clone();
            async move {
                ctx.progress(50.0, "halfway");
                proceed.notified().await;
                ctx.progress(100.0, "done");
                Outcome::complete()
            }
        })
        .build()
        .unwrap();
    let (stop, running) = run(worker);
    let id = client.submit(&submit("steps", json!({}))).await.unwrap().id;
    let mut seen = None;
    for _ in 0..250 {
        let job = client.get_job(id).await.unwrap();
        if job.progress.is_some() {
            seen = Some(job);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job = seen.expect("the progress reached the server");
    assert_eq!(job.state, JobState::Running);
    let progress = job.progress.unwrap();
    assert_eq!(progress.percent, Some(50.0));
    assert_eq!(progress.message.as_deref(), Some("halfway"));

    go.notify_one();
    let done = wait_for(&client, id, JobState::Succeeded).await;
    let progress = done.progress.expect("kept after the job ends");
    assert_eq!(
        (progress.percent, progress.message.as_deref()),
        (Some(100.0), Some("done")),
        "a report made just before the end is stored before the outcome"
    );
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    server.stop().await;
}
