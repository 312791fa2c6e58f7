//! Several nodes on one PostgreSQL database: each test starts two real
//! servers (engines with their own HTTP listeners) on a fresh schema.
//!
//! Schemas are named like the store tests' (`tw_test_<pid>_...`), so their
//! clean-up drops the ones left by finished test processes.
//!
//! Skipped with one line on stderr when PostgreSQL is unreachable, unless
//! `TASKWHEEL_REQUIRE_POSTGRES=1` (CI), which turns that into a failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use taskwheel_core::{Clock, ManualClock, SystemClock};
use taskwheel_store::{PgConfig, PgStore};

use crate::common::TestServer;

fn url() -> String {
    std::env::var("TASKWHEEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://taskwheel:taskwheel@127.0.0.1:5432/taskwheel_test".into())
}

/// A config for a schema no other test uses, or `None` (skip) without PostgreSQL.
async fn fresh_schema() -> Option<PgConfig> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut config = PgConfig::new(url());
    config.schema = Some(format!(
        "tw_test_{}_cluster{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    match PgStore::connect_with(config.clone()).await {
        Ok(store) => {
            store.close().await;
            Some(config)
        }
        Err(e) if std::env::var("TASKWHEEL_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
            panic!("PostgreSQL is required but unreachable: {e}")
        }
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipping cluster tests: cannot connect to PostgreSQL ({e})"
            );
            None
        }
    }
}

async fn node(config: &PgConfig, clock: Arc<dyn Clock>) -> TestServer {
    let store = PgStore::connect_with(config.clone())
        .await
        .expect("connect");
    let remote = store.listen().await.expect("listen");
    TestServer::on_store(Arc::new(store), remote, clock).await
}

#[tokio::test]
async fn nodes_wake_each_other_and_share_leases() {
    let Some(config) = fresh_schema().await else {
        return;
    };
    let a = node(&config, Arc::new(SystemClock)).await;
    let b = node(&config, Arc::new(SystemClock)).await;

    // A worker long-polls node B; the job is submitted through node A.
    let waiting = {
        let (url, http) = (b.url.clone(), b.http.clone());
        tokio::spawn(async move {
            let resp = http
                .post(format!("{url}/api/v1/lease"))
                .json(&json!({"worker": "w", "queues": ["mail"], "wait": "20s"}))
                .send()
                .await
                .unwrap();
            resp.json::<Value>().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, job) = a
        .post("/api/v1/jobs", json!({"kind": "k", "queue": "mail"}))
        .await;
    assert_eq!(status, 201);
    let leased = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken through LISTEN/NOTIFY before the wait ran out")
        .unwrap();
    assert_eq!(leased["jobs"][0]["id"], job["id"]);

    // Leased on B, completed through A.
    let id = job["id"].as_str().unwrap();
    let token = leased["jobs"][0]["lease_token"].clone();
    let (status, done) = a
        .post(
            &format!("/api/v1/jobs/{id}/complete"),
            json!({"lease_token": token}),
        )
        .await;
    assert_eq!((status, done["state"].clone()), (200, json!("succeeded")));
    let (status, _) = b
        .post(
            &format!("/api/v1/jobs/{id}/complete"),
            json!({"lease_token": token}),
        )
        .await;
    assert_eq!(status, 409, "a job completes once, whichever node is asked");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn two_nodes_fire_each_tick_exactly_once() {
    let Some(config) = fresh_schema().await else {
        return;
    };
    let start: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let a = node(&config, clock.clone()).await;
    let b = node(&config, clock.clone()).await;
    let (status, _) = a
        .post(
            "/api/v1/schedules",
            json!({"name": "tick", "every": "10s", "job": {"kind": "k", "queue": "t"}}),
        )
        .await;
    assert_eq!(status, 201);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(10));
        // Both nodes run their timer pass at the same moment.
        let (ra, rb) = tokio::join!(a.engine.tick(), b.engine.tick());
        ra.unwrap();
        rb.unwrap();
    }
    let (_, jobs) = b.get("/api/v1/jobs?queue=t&limit=100").await;
    let mut ticks: Vec<String> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["fire_time"].as_str().unwrap().to_string())
        .collect();
    ticks.sort();
    assert_eq!(
        ticks,
        vec![
            "2026-06-01T00:00:10Z",
            "2026-06-01T00:00:20Z",
            "2026-06-01T00:00:30Z",
            "2026-06-01T00:00:40Z",
            "2026-06-01T00:00:50Z"
        ]
    );
    let (_, s) = a.get("/api/v1/schedules/tick").await;
    assert_eq!(s["health"]["fired"], 5);
    a.stop().await;
    b.stop().await;
}
