//! Schedules over HTTP: CRUD, validation, DST-aware previews, and firing on an
//! injected clock.

use std::time::Duration;

use serde_json::json;

use crate::common::TestServer;

fn t0() -> jiff::Timestamp {
    "2026-03-07T12:00:00Z".parse().unwrap()
}

#[tokio::test]
async fn create_inspect_and_preview() {
    let (server, _clock) = TestServer::with_manual_clock(t0()).await;
    let (status, s) = server
        .post(
            "/api/v1/schedules",
            json!({"name": "nightly", "cron": "30 2 * * *", "timezone": "America/New_York",
                   "job": {"kind": "report", "payload": {"x": 1}}}),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    // 2026-03-08 is spring-forward day in New York: 02:30 does not exist, so it runs at 03:00 EDT.
    assert_eq!(s["next_fire_at"], "2026-03-08T07:00:00Z");
    assert_eq!(s["misfire"], "skip");
    assert_eq!(s["overlap"], "allow");
    assert_eq!(s["health"]["fired"], 0);
    let id = s["id"].as_str().unwrap();

    let (_, by_name) = server.get("/api/v1/schedules/nightly").await;
    assert_eq!(by_name["id"], id);
    let (_, by_id) = server.get(&format!("/api/v1/schedules/{id}")).await;
    assert_eq!(by_id["name"], "nightly");
    let (_, next) = server.get("/api/v1/schedules/nightly/next?count=3").await;
    assert_eq!(
        next["next"],
        json!([
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:30:00Z",
            "2026-03-10T06:30:00Z"
        ])
    );
    let (_, all) = server.get("/api/v1/schedules").await;
    assert_eq!(all["schedules"].as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn bad_schedules_are_refused_with_the_field_named() {
    let server = TestServer::start().await;
    let job = json!({"kind": "k"});
    let cases = [
        (
            json!({"name": "a", "cron": "61 * * * *", "job": job}),
            "cron",
        ),
        (
            json!({"name": "a", "cron": "0 0 31 2 *", "job": job}),
            "cron",
        ),
        (
            json!({"name": "a", "cron": "* * * * *", "timezone": "Nowhere/City", "job": job}),
            "timezone",
        ),
        (json!({"name": "a", "every": "0s", "job": job}), "every"),
        (
            json!({"name": "a", "cron": "* * * * *", "every": "1m", "job": job}),
            "every",
        ),
        (json!({"name": "a", "job": job}), "cron"),
        (json!({"cron": "* * * * *", "job": job}), "name"),
        (json!({"name": "a", "cron": "* * * * *"}), "job"),
        (
            json!({"name": "a", "cron": "* * * * *", "job": {"kind": "k", "delay": "1s"}}),
            "job.delay",
        ),
        (
            json!({"name": "a", "cron": "* * * * *", "overlap": "sometimes", "job": job}),
            "overlap",
        ),
    ];
    for (body, field) in cases {
        let (status, resp) = server.post("/api/v1/schedules", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert_eq!(resp["error"]["field"], field, "{body} -> {resp}");
    }
    let (_, all) = server.get("/api/v1/schedules").await;
    assert!(
        all["schedules"].as_array().unwrap().is_empty(),
        "nothing half-written"
    );
    server
        .post(
            "/api/v1/schedules",
            json!({"name": "a", "every": "1m", "job": job}),
        )
        .await;
    let (status, resp) = server
        .post(
            "/api/v1/schedules",
            json!({"name": "a", "every": "2m", "job": job}),
        )
        .await;
    assert_eq!(
        (status, resp["error"]["code"].clone()),
        (409, json!("conflict"))
    );
    let (status, resp) = server.get("/api/v1/schedules/missing").await;
    assert_eq!(
        (status, resp["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let (status, resp) = server.get("/api/v1/schedules/a/next?count=0").await;
    assert_eq!(
        (status, resp["error"]["field"].clone()),
        (400, json!("count"))
    );
    server.stop().await;
}

#[tokio::test]
async fn ticks_fire_on_the_injected_clock() {
    let (server, clock) = TestServer::with_manual_clock(t0()).await;
    let (_, s) = server
        .post(
            "/api/v1/schedules",
            json!({"name": "every10", "every": "10s", "job": {"kind": "k", "queue": "sched"}}),
        )
        .await;
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["next_fire_at"], "2026-03-07T12:00:10Z");

    clock.advance(Duration::from_secs(10));
    server.engine.tick().await.unwrap();
    let (_, jobs) = server.get("/api/v1/jobs?queue=sched").await;
    let jobs = jobs["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["schedule_id"], id);
    assert_eq!(jobs[0]["fire_time"], "2026-03-07T12:00:10Z");
    assert_eq!(jobs[0]["state"], "available");

    // Paused across three ticks, then resumed: `skip` fires only the latest.
    let (_, paused) = server
        .post("/api/v1/schedules/every10/pause", json!({}))
        .await;
    assert_eq!(paused["paused"], true);
    clock.advance(Duration::from_secs(35));
    server.engine.tick().await.unwrap();
    assert_eq!(
        server.get("/api/v1/jobs?queue=sched").await.1["jobs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    server
        .post("/api/v1/schedules/every10/resume", json!({}))
        .await;
    server.engine.tick().await.unwrap();
    let (_, jobs) = server.get("/api/v1/jobs?queue=sched").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(jobs["jobs"][0]["fire_time"], "2026-03-07T12:00:40Z");
    let (_, s) = server.get("/api/v1/schedules/every10").await;
    assert_eq!(s["health"]["fired"], 2);
    assert_eq!(s["health"]["missed"], 2);
    assert_eq!(s["last_fire_at"], "2026-03-07T12:00:40Z");
    assert_eq!(s["next_fire_at"], "2026-03-07T12:00:50Z");

    let (status, triggered) = server
        .post("/api/v1/schedules/every10/trigger", json!({}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(triggered["fire_time"], "2026-03-07T12:00:45Z");

    let (status, patched) = server
        .patch(
            "/api/v1/schedules/every10",
            json!({"every": "1m", "overlap": "forbid"}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["every"], "1m");
    assert_eq!(patched["overlap"], "forbid");
    assert_eq!(
        patched["next_fire_at"], "2026-03-07T12:01:00Z",
        "a new timing restarts from now"
    );

    let (status, _) = server.delete("/api/v1/schedules/every10").await;
    assert_eq!(status, 204);
    let (status, _) = server.get("/api/v1/schedules/every10").await;
    assert_eq!(status, 404);
    let (_, stats) = server.get("/api/v1/stats").await;
    assert!(stats["lateness"]["count"].as_u64().unwrap() >= 2);
    server.stop().await;
}
