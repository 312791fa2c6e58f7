//! Queue endpoints and flow control over HTTP: statistics, settings and
//! their validation, and long-polling workers woken when a queue is resumed,
//! a concurrency slot frees up, or the rate bucket refills.

use std::time::{Duration, Instant};

use crate::common::TestServer;
use serde_json::{Value, json};

fn t0() -> jiff::Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

async fn submit(server: &TestServer, body: Value) -> Value {
    let (status, job) = server.post("/api/v1/jobs", body).await;
    assert_eq!(status, 201, "{job}");
    job
}

async fn lease(server: &TestServer, body: Value) -> Vec<Value> {
    let (status, resp) = server.post("/api/v1/lease", body).await;
    assert_eq!(status, 200, "{resp}");
    resp["jobs"].as_array().unwrap().clone()
}

/// Starts a long-poll on `queue` (up to 30s) and answers what it got and how long it took.
fn long_poll(server: &TestServer, queue: &str) -> tokio::task::JoinHandle<(usize, Duration)> {
    let (http, url) = (server.http.clone(), server.url.clone());
    let body = json!({"worker": "w2", "queues": [queue], "max": 5, "wait": "30s"});
    tokio::spawn(async move {
        let started = Instant::now();
        let resp: Value = http
            .post(format!("{url}/api/v1/lease"))
            .json(&body)
            .send()
            .await
            .expect("lease")
            .json()
            .await
            .expect("body");
        (resp["jobs"].as_array().unwrap().len(), started.elapsed())
    })
}

/// The long-poll got one job, well before its 30s wait ran out.
async fn assert_woken_with_one_job(poll: tokio::task::JoinHandle<(usize, Duration)>) {
    let (got, took) = poll.await.unwrap();
    assert_eq!(got, 1);
    assert!(
        took < Duration::from_secs(10),
        "woken, not timed out: {took:?}"
    );
}

/// Lets a spawned long-poll reach its wait (its result does not depend on it).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn queues_show_depth_settings_and_change() {
    let server = TestServer::start().await;
    for _ in 0..3 {
        submit(&server, json!({"kind": "k", "queue": "mail"})).await;
    }
    submit(
        &server,
        json!({"kind": "k", "queue": "sms", "concurrency_key": "cust-1"}),
    )
    .await;
    lease(
        &server,
        json!({"worker": "w", "queues": ["mail"], "max": 1}),
    )
    .await;
    let (status, list) = server.get("/api/v1/queues").await;
    assert_eq!(status, 200, "{list}");
    let queues = list["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 2);
    assert_eq!(queues[0]["name"], "mail");
    assert_eq!(queues[0]["depth"]["available"], 2);
    assert_eq!(queues[0]["depth"]["running"], 1);
    assert_eq!(queues[0]["concurrency"], Value::Null);
    assert_eq!(queues[0]["paused"], false);

    let (status, patched) = server
        .patch(
            "/api/v1/queues/mail",
            json!({"paused": true, "concurrency": 5, "key_concurrency": 2,
                   "rate": {"limit": 100, "per": "1m", "burst": 20}}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["paused"], true);
    assert_eq!(patched["concurrency"], 5);
    assert_eq!(patched["key_concurrency"], 2);
    assert_eq!(
        patched["rate"],
        json!({"limit": 100, "per": "1m", "burst": 20})
    );
    assert_eq!(patched["depth"]["available"], 2);
    let (_, mut got) = server.get("/api/v1/queues/mail").await;
    assert!(got["oldest_pending_age_secs"].as_f64().unwrap() > 0.0);
    let mut patched = patched;
    for view in [&mut got, &mut patched] {
        view.as_object_mut()
            .unwrap()
            .remove("oldest_pending_age_secs");
    }
    assert_eq!(got, patched);

    let (_, cleared) = server
        .patch(
            "/api/v1/queues/mail",
            json!({"concurrency": null, "rate": null}),
        )
        .await;
    assert_eq!(cleared["concurrency"], Value::Null);
    assert_eq!(cleared["rate"], Value::Null);
    assert_eq!(cleared["key_concurrency"], 2, "absent fields stay");
    assert_eq!(cleared["paused"], true);

    let (status, fresh) = server.get("/api/v1/queues/nothing-yet").await;
    assert_eq!(status, 200);
    assert_eq!(fresh["depth"]["available"], 0);
    let (_, job) = server.get("/api/v1/jobs?queue=sms").await;
    assert_eq!(job["jobs"][0]["concurrency_key"], "cust-1");
    server.stop().await;
}

#[tokio::test]
async fn bad_queue_settings_name_the_field_and_change_nothing() {
    let server = TestServer::start().await;
    let cases = [
        (json!({"concurrency": 0}), "concurrency"),
        (json!({"concurrency": -1}), "concurrency"),
        (json!({"concurrency": "lots"}), "concurrency"),
        (json!({"key_concurrency": 0}), "key_concurrency"),
        (json!({"paused": "yes"}), "paused"),
        (json!({"rate": {"limit": 0, "per": "1s"}}), "rate.limit"),
        (json!({"rate": {"limit": 5, "per": "1h"}}), "rate.per"),
        (json!({"rate": {"limit": 5}}), "rate.per"),
        (
            json!({"concurrency": 3, "rate": {"limit": 5, "per": "1s", "burst": 2_000_000}}),
            "rate.burst",
        ),
        (json!({"colour": "red"}), "colour"),
    ];
    for (body, field) in cases {
        let (status, resp) = server.patch("/api/v1/queues/q", body.clone()).await;
        assert_eq!(status, 400, "{body}: {resp}");
        assert_eq!(resp["error"]["code"], "invalid_request");
        assert_eq!(resp["error"]["field"], field, "{body}: {resp}");
    }
    let (_, q) = server.get("/api/v1/queues/q").await;
    assert_eq!(q["concurrency"], Value::Null, "nothing half-written");
    let (status, resp) = server
        .patch("/api/v1/queues/has%20space", json!({"paused": true}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(resp["error"]["field"], "name");
    let (status, resp) = server
        .post("/api/v1/jobs", json!({"kind": "k", "concurrency_key": ""}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(resp["error"]["field"], "concurrency_key");
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_worker_is_woken_when_its_queue_resumes() {
    let server = TestServer::start().await;
    server
        .patch("/api/v1/queues/p", json!({"paused": true}))
        .await;
    submit(&server, json!({"kind": "k", "queue": "p"})).await;
    let poll = long_poll(&server, "p");
    settle().await;
    let (status, _) = server
        .patch("/api/v1/queues/p", json!({"paused": false}))
        .await;
    assert_eq!(status, 200);
    assert_woken_with_one_job(poll).await;
    server.stop().await;
}

#[tokio::test]
async fn a_freed_concurrency_slot_wakes_a_waiting_worker() {
    let server = TestServer::start().await;
    server
        .patch("/api/v1/queues/c", json!({"concurrency": 1}))
        .await;
    for _ in 0..2 {
        submit(&server, json!({"kind": "k", "queue": "c"})).await;
    }
    let first = lease(&server, json!({"worker": "w", "queues": ["c"], "max": 5})).await;
    assert_eq!(first.len(), 1, "the limit");
    let poll = long_poll(&server, "c");
    settle().await;
    let id = first[0]["id"].as_str().unwrap();
    let (status, _) = server
        .post(
            &format!("/api/v1/jobs/{id}/complete"),
            json!({"lease_token": first[0]["lease_token"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_woken_with_one_job(poll).await;
    server.stop().await;
}

#[tokio::test]
async fn a_refilled_rate_bucket_wakes_a_waiting_worker() {
    let (server, clock) = TestServer::with_manual_clock(t0()).await;
    server
        .patch(
            "/api/v1/queues/r",
            json!({"rate": {"limit": 1, "per": "1s", "burst": 1}}),
        )
        .await;
    for _ in 0..2 {
        submit(&server, json!({"kind": "k", "queue": "r"})).await;
    }
    let first = lease(&server, json!({"worker": "w", "queues": ["r"], "max": 5})).await;
    assert_eq!(first.len(), 1, "the burst");
    let poll = long_poll(&server, "r");
    settle().await;
    assert!(!poll.is_finished(), "no token yet");
    clock.advance(Duration::from_secs(1));
    server.engine.tick().await.unwrap();
    assert_woken_with_one_job(poll).await;
    server.stop().await;
}
