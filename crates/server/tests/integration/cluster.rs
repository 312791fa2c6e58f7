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
    for round in 1..=5 {
        clock.advance(Duration::from_secs(10));
        // Both nodes run their timer pass at the same moment. A pass of a
        // node's own timer loop may hold the schedule's row lock, making
        // both skip it: run them again until the tick is fired (once).
        for _ in 0..100 {
            let (ra, rb) = tokio::join!(a.engine.tick(), b.engine.tick());
            ra.unwrap();
            rb.unwrap();
            let (_, s) = a.get("/api/v1/schedules/tick").await;
            if s["health"]["fired"] == round {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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

fn member(name: &str) -> taskwheel_server::EngineOptions {
    taskwheel_server::EngineOptions {
        timer_ceiling: Duration::from_secs(1),
        cluster: Some(taskwheel_server::ClusterOptions {
            node: taskwheel_store::NodeInfo {
                id: name.into(),
                address: format!("{name}:7070"),
            },
            shard_ttl: Duration::from_secs(3),
        }),
        ..taskwheel_server::EngineOptions::default()
    }
}

async fn member_node(config: &PgConfig, name: &str, clock: Arc<dyn Clock>) -> TestServer {
    let store = PgStore::connect_with(config.clone())
        .await
        .expect("connect");
    let remote = store.listen().await.expect("listen");
    TestServer::on_store_with(Arc::new(store), remote, clock, member(name)).await
}

/// Polls `GET /api/v1/cluster` until `done` holds; membership runs on its own schedule.
async fn cluster_until(server: &TestServer, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let (_, view) = server.get("/api/v1/cluster").await;
        if done(&view) {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "cluster never reached the expected shape: {:?}",
        server.get("/api/v1/cluster").await.1
    );
}

fn shard_counts(view: &Value) -> Vec<usize> {
    let mut counts: Vec<usize> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["shards"].as_array().unwrap().len())
        .collect();
    counts.sort();
    counts
}

#[tokio::test]
async fn shards_are_shared_fairly_and_taken_over() {
    let Some(config) = fresh_schema().await else {
        return;
    };
    let a = member_node(&config, "node-a", Arc::new(SystemClock)).await;
    let view = cluster_until(&a, |v| shard_counts(v) == vec![16]).await;
    assert_eq!(view["mode"], "cluster");
    assert_eq!(view["nodes"][0]["id"], "node-a");

    let b = member_node(&config, "node-b", Arc::new(SystemClock)).await;
    let view = cluster_until(&a, |v| shard_counts(v) == vec![8, 8]).await;
    assert_eq!(
        view["nodes"].as_array().unwrap().len(),
        2,
        "a joining node gets its share: {view}"
    );

    // A stops cleanly: it gives its shards back, and B takes them all.
    a.stop().await;
    let view = cluster_until(&b, |v| shard_counts(v) == vec![16]).await;
    assert_eq!(view["nodes"][0]["id"], "node-b");
    b.stop().await;
}

#[tokio::test]
async fn a_node_with_a_stale_claim_cannot_fire() {
    let Some(config) = fresh_schema().await else {
        return;
    };
    let store = PgStore::connect_with(config.clone())
        .await
        .expect("connect");
    let start = taskwheel_core::Timestamp::now();
    let request: taskwheel_core::recurring::ScheduleRequest =
        serde_json::from_value(json!({"name": "s", "every": "1s", "job": {"kind": "k"}})).unwrap();
    let record = taskwheel_core::recurring::ScheduleRecord::create(
        "default",
        request.into_definition().unwrap(),
        false,
        start,
    )
    .unwrap();
    use taskwheel_store::Store as _;
    store.create_schedule(record).await.unwrap();
    let a = taskwheel_store::NodeInfo {
        id: "a".into(),
        address: "a".into(),
    };
    let b = taskwheel_store::NodeInfo {
        id: "b".into(),
        address: "b".into(),
    };
    let ttl = Duration::from_secs(30);
    let stale = store.claim_shards(&a, ttl).await.unwrap().unwrap();
    assert_eq!(stale.owned.len(), 16);
    // A loses its leases (as if they expired) and B takes them over with new epochs.
    store.release_shards("a").await.unwrap();
    let fresh = store.claim_shards(&b, ttl).await.unwrap().unwrap();
    assert_eq!(fresh.owned.len(), 16);
    assert!(
        fresh.owned.iter().zip(&stale.owned).all(|(f, s)| f.1 > s.1),
        "takeover bumps every epoch"
    );

    let later = Arc::new(ManualClock::new(start + jiff::SignedDuration::from_secs(5)));
    let (woken, next) = store.timer_pass(later.clone(), Some(&stale)).await.unwrap();
    assert!(
        woken.due.is_empty() && next.is_none(),
        "the fenced node does nothing"
    );
    let (woken, _) = store.timer_pass(later, Some(&fresh)).await.unwrap();
    assert_eq!(woken.due.len(), 1, "the new owner fires the due tick");
    store.close().await;
}

#[tokio::test]
async fn a_node_whose_clock_is_five_minutes_fast_reclaims_no_lease_early() {
    let Some(config) = fresh_schema().await else {
        return;
    };
    // Node B's own clock runs 5 minutes ahead; it reads time through the database clock.
    let skewed = Arc::new(ManualClock::new(
        taskwheel_core::Timestamp::now() + jiff::SignedDuration::from_secs(300),
    ));
    let clock = Arc::new(taskwheel_server::DatabaseClock::new(skewed.clone()));
    let store = PgStore::connect_with(config.clone())
        .await
        .expect("connect");
    use taskwheel_store::Store as _;
    let before = skewed.now();
    let database = store.database_now().await.unwrap().unwrap();
    clock.observe(before, database, skewed.now());
    let remote = store.listen().await.unwrap();
    let b = TestServer::on_store_with(Arc::new(store), remote, clock, member("node-b")).await;
    let a = node(&config, Arc::new(SystemClock)).await;

    let (_, job) = a
        .post("/api/v1/jobs", json!({"kind": "k", "queue": "skew"}))
        .await;
    let (_, leased) = a
        .post(
            "/api/v1/lease",
            json!({"worker": "w", "queues": ["skew"], "lease": "30s"}),
        )
        .await;
    assert_eq!(leased["jobs"][0]["id"], job["id"]);
    // B's timer pass, once it holds the shards, must not see the 30 s lease as 5 minutes old.
    cluster_until(&b, |v| shard_counts(v) == vec![16]).await;
    b.engine.tick().await.unwrap();
    let (_, got) = a
        .get(&format!("/api/v1/jobs/{}", job["id"].as_str().unwrap()))
        .await;
    assert_eq!(got["state"], "running", "no early reclaim: {got}");
    a.stop().await;
    b.stop().await;
}
