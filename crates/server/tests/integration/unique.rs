//! Unique jobs and progress reports over REST API v1: the `unique` answer
//! and its status codes, period buckets on the server's clock, the progress
//! a heartbeat stores, and the errors that name a bad field.

use std::time::Duration;

use serde_json::{Value, json};
use taskwheel_core::Clock;
use taskwheel_core::time::add;

use crate::common::TestServer;

fn t0() -> jiff::Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

async fn job_count(server: &TestServer) -> usize {
    let (_, all) = server.get("/api/v1/jobs").await;
    all["jobs"].as_array().unwrap().len()
}

async fn lease_one(server: &TestServer) -> Value {
    let (status, resp) = server.post("/api/v1/lease", json!({"worker": "w1"})).await;
    assert_eq!(status, 200, "{resp}");
    resp["jobs"][0].clone()
}

#[tokio::test]
async fn unique_outcomes_and_status_codes() {
    let (server, clock) = TestServer::with_manual_clock(t0()).await;
    let skip = json!({"kind": "digest", "payload": {"n": 1},
                      "unique": {"by": ["kind"], "period": "1h"}});
    let (status, first) = server.post("/api/v1/jobs", skip.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["unique"], "new");
    assert_eq!(first["deduplicated"], false);
    assert_eq!(first["unique_key"].as_str().unwrap().len(), 64);

    clock.advance(Duration::from_secs(3599));
    let (status, again) = server.post("/api/v1/jobs", skip.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["unique"], "deduplicated");
    assert_eq!(again["id"], first["id"]);

    // The next hour on the server's clock is a new bucket, a new key.
    clock.advance(Duration::from_secs(1));
    let (status, next) = server.post("/api/v1/jobs", skip).await;
    assert_eq!(status, 201, "{next}");
    assert_ne!(next["id"], first["id"]);

    let replace = |n: u32| {
        json!({"kind": "sync", "payload": {"n": n},
               "unique": {"key": "sync-7", "on_conflict": "replace"}})
    };
    let (_, original) = server.post("/api/v1/jobs", replace(1)).await;
    let (status, replaced) = server.post("/api/v1/jobs", replace(2)).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["unique"], "replaced");
    assert_eq!(replaced["id"], original["id"]);
    assert_eq!(replaced["payload"], json!({"n": 2}));
    let (_, got) = server
        .get(&format!(
            "/api/v1/jobs/{}",
            original["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(got["payload"], json!({"n": 2}));
    assert!(
        got.get("unique").is_none(),
        "the outcome belongs to submit answers"
    );

    // Debounce: the job is due `debounce` after the latest submission.
    let debounce = json!({"kind": "reindex",
                          "unique": {"key": "ix", "on_conflict": "debounce", "debounce": "30s"}});
    let (status, first) = server.post("/api/v1/jobs", debounce.clone()).await;
    assert_eq!((status, &first["state"]), (201, &json!("scheduled")));
    clock.advance(Duration::from_secs(10));
    let (status, pushed) = server.post("/api/v1/jobs", debounce).await;
    assert_eq!((status, &pushed["unique"]), (200, &json!("replaced")));
    let due: jiff::Timestamp = pushed["run_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(due, add(clock.now(), Duration::from_secs(30)));
    server.stop().await;
}

#[tokio::test]
async fn rerun_of_a_job_whose_key_was_taken_is_a_conflict() {
    let server = TestServer::start().await;
    let body = json!({"kind": "k", "retry": {"max_attempts": 1}, "unique": {"key": "once"}});
    let (_, first) = server.post("/api/v1/jobs", body.clone()).await;
    let id = first["id"].as_str().unwrap().to_string();
    let leased = lease_one(&server).await;
    let (status, _) = server
        .post(
            &format!("/api/v1/jobs/{id}/fail"),
            json!({"lease_token": leased["lease_token"], "error": "boom"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, second) = server.post("/api/v1/jobs", body).await;
    assert_eq!((status, &second["unique"]), (201, &json!("new")));
    let (status, err) = server
        .post(&format!("/api/v1/jobs/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "conflict");
    server.stop().await;
}

#[tokio::test]
async fn bad_unique_specs_name_the_field_and_write_nothing() {
    let server = TestServer::start().await;
    let cases = [
        (json!({"by": ["kind", "owner"]}), "unique.by[1]"),
        (json!({"by": []}), "unique.by"),
        (json!({"period": "0s"}), "unique.period"),
        (json!({"period": "soon"}), "unique.period"),
        (json!({"states": ["done"]}), "unique.states[0]"),
        (json!({"states": ["scheduled"]}), "unique.states"),
        (json!({"on_conflict": "merge"}), "unique.on_conflict"),
        (json!({"on_conflict": "debounce"}), "unique.debounce"),
        (json!({"key": ""}), "unique.key"),
        (json!({"keys": "x"}), "unique.keys"),
    ];
    for (unique, field) in cases {
        let (status, err) = server
            .post("/api/v1/jobs", json!({"kind": "k", "unique": unique}))
            .await;
        assert_eq!(status, 400, "{unique}: {err}");
        assert_eq!(err["error"]["code"], "invalid_request");
        assert_eq!(err["error"]["field"], field, "{unique}: {err}");
    }
    assert_eq!(job_count(&server).await, 0);
    server.stop().await;
}

#[tokio::test]
async fn heartbeat_progress_is_shown_on_the_job() {
    let (server, clock) = TestServer::with_manual_clock(t0()).await;
    let (_, job) = server.post("/api/v1/jobs", json!({"kind": "k"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    let leased = lease_one(&server).await;
    let token = leased["lease_token"].clone();
    clock.advance(Duration::from_secs(3));
    let (status, beat) = server
        .post(
            &format!("/api/v1/jobs/{id}/heartbeat"),
            json!({"lease_token": token, "progress": {"percent": 40, "message": "4 of 10"}}),
        )
        .await;
    assert_eq!(status, 200, "{beat}");
    let (_, running) = server.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(running["state"], "running");
    assert_eq!(
        running["progress"],
        json!({"percent": 40.0, "message": "4 of 10", "updated_at": "2026-06-01T00:00:03Z"})
    );

    let too_long = "x".repeat(1025);
    let cases = [
        (json!({"percent": 101}), "progress.percent"),
        (json!({"percent": -1}), "progress.percent"),
        (json!({"percent": "half"}), "progress.percent"),
        (json!({"message": too_long}), "progress.message"),
        (json!({}), "progress"),
        (json!({"percent": 1, "eta": "1m"}), "progress.eta"),
    ];
    for (progress, field) in cases {
        let (status, err) = server
            .post(
                &format!("/api/v1/jobs/{id}/heartbeat"),
                json!({"lease_token": token, "progress": progress}),
            )
            .await;
        assert_eq!(status, 400, "{progress}: {err}");
        assert_eq!(err["error"]["field"], field, "{progress}: {err}");
    }
    let (_, unchanged) = server.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(
        unchanged["progress"], running["progress"],
        "a refused report changes nothing"
    );

    let (status, _) = server
        .post(
            &format!("/api/v1/jobs/{id}/complete"),
            json!({"lease_token": token}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, done) = server.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["progress"]["percent"], 40.0, "kept after the job ends");
    server.stop().await;
}
