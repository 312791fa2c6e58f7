//! `POST /api/v1/jobs/batch`: per-item answers, atomic batches, limits.

use serde_json::{Value, json};
use taskwheel_client::Client;
use taskwheel_core::wire::SubmitJob;

use crate::common::TestServer;

async fn count_jobs(server: &TestServer) -> usize {
    let (status, all) = server.get("/api/v1/jobs?limit=1000").await;
    assert_eq!(status, 200, "{all}");
    all["jobs"].as_array().unwrap().len()
}

#[tokio::test]
async fn each_item_gets_its_own_answer() {
    let server = TestServer::start().await;
    let body = json!({"jobs": [
        {"kind": "a"},
        {"payload": 1},
        {"kind": "b", "idempotency_key": "k"},
        {"kind": "c", "idempotency_key": "k"},
        {"kind": "d", "colour": "red"},
        {"kind": "e", "priority": "urgent"},
        "not a job",
        {"kind": "f", "delay": "1h"},
    ]});
    let (status, resp) = server.post("/api/v1/jobs/batch", body).await;
    assert_eq!(status, 200, "{resp}");
    let results = resp["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    let field = |i: usize| results[i]["error"]["field"].as_str().unwrap().to_string();
    assert_eq!(results[0]["job"]["kind"], "a");
    assert_eq!(results[0]["job"]["state"], "available");
    assert_eq!(results[0]["job"]["deduplicated"], false);
    assert_eq!(field(1), "jobs[1].kind");
    assert_eq!(results[1]["error"]["code"], "invalid_request");
    assert_eq!(results[2]["job"]["deduplicated"], false);
    assert_eq!(results[3]["job"]["deduplicated"], true);
    assert_eq!(results[3]["job"]["id"], results[2]["job"]["id"]);
    assert_eq!(results[3]["job"]["kind"], "b", "the first job with the key");
    assert_eq!(field(4), "jobs[4].colour");
    assert_eq!(field(5), "jobs[5].priority");
    assert_eq!(field(6), "jobs[6]");
    assert_eq!(results[7]["job"]["state"], "scheduled");
    for i in [0, 2, 3, 7] {
        assert!(
            results[i].get("error").is_none(),
            "item {i}: {}",
            results[i]
        );
    }
    for i in [1, 4, 5, 6] {
        assert!(results[i].get("job").is_none(), "item {i}: {}", results[i]);
    }
    assert_eq!(count_jobs(&server).await, 3, "a, b and f are stored");
    // The stored jobs are there for workers at once.
    let (status, leased) = server
        .post(
            "/api/v1/lease",
            json!({"queues": ["default"], "max": 10, "worker": "w", "wait": "0s"}),
        )
        .await;
    assert_eq!(status, 200, "{leased}");
    assert_eq!(leased["jobs"].as_array().unwrap().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn an_atomic_batch_stores_all_or_nothing() {
    let server = TestServer::start().await;
    let body = json!({"atomic": true, "jobs": [
        {"kind": "a"},
        {"kind": "b"},
        {"kind": "c", "queue": "has space"},
    ]});
    let (status, resp) = server.post("/api/v1/jobs/batch", body).await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["error"]["code"], "invalid_request");
    assert_eq!(resp["error"]["field"], "jobs[2].queue");
    assert_eq!(
        count_jobs(&server).await,
        0,
        "nothing of a refused batch is stored"
    );

    let body = json!({"atomic": true, "jobs": ["x"]});
    let (status, resp) = server.post("/api/v1/jobs/batch", body).await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["error"]["field"], "jobs[0]");

    let body = json!({"atomic": true, "jobs": [{"kind": "a"}, {"kind": "b"}]});
    let (status, resp) = server.post("/api/v1/jobs/batch", body).await;
    assert_eq!(status, 200, "{resp}");
    let kinds: Vec<&Value> = resp["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["job"]["kind"])
        .collect();
    assert_eq!(kinds, [&json!("a"), &json!("b")]);
    assert_eq!(count_jobs(&server).await, 2);
    server.stop().await;
}

#[tokio::test]
async fn batch_size_is_limited() {
    let server = TestServer::start().await;
    for body in [
        json!({"jobs": []}),
        json!({}),
        json!({"jobs": vec![json!({"kind": "k"}); 10_001]}),
    ] {
        let (status, resp) = server.post("/api/v1/jobs/batch", body).await;
        assert_eq!(status, 400, "{resp}");
        assert_eq!(resp["error"]["field"], "jobs", "{resp}");
    }
    let (status, resp) = server
        .post(
            "/api/v1/jobs/batch",
            json!({"jobs": [{"kind": "k"}], "atomic": "yes"}),
        )
        .await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["error"]["field"], "atomic");
    assert_eq!(count_jobs(&server).await, 0);

    // The limit itself is accepted, through the client.
    let client = Client::new(&server.url).unwrap();
    let jobs = vec![SubmitJob::new("k", json!({})); 10_000];
    let resp = client.submit_batch(&jobs, false).await.unwrap();
    assert_eq!(resp.results.len(), 10_000);
    assert!(
        resp.results
            .iter()
            .all(|r| r.error.is_none() && r.job.is_some())
    );
    let refused = client
        .submit_batch(&[SubmitJob::new("", json!({}))], true)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("jobs[0].kind"), "{refused}");
    server.stop().await;
}
