//! Jobs with parents and workflows over HTTP: submit, follow, cancel, the
//! parents' results handed to the child, and the errors for bad graphs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::TestServer;

async fn lease(server: &TestServer, queue: &str, max: u32) -> Vec<Value> {
    let (status, resp) = server
        .post(
            "/api/v1/lease",
            json!({"worker": "w", "queues": [queue], "max": max}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["jobs"].as_array().unwrap().clone()
}

async fn complete(server: &TestServer, job: &Value, result: Value) {
    let (status, resp) = server
        .post(
            &format!("/api/v1/jobs/{}/complete", job["id"].as_str().unwrap()),
            json!({"lease_token": job["lease_token"], "result": result}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
}

#[tokio::test]
async fn a_workflow_runs_in_dependency_order_and_hands_results_down() {
    let server = TestServer::start().await;
    let (status, wf) = server
        .post(
            "/api/v1/workflows",
            json!({"name": "report", "jobs": [
                {"name": "render", "kind": "pdf", "queue": "wf", "depends_on": ["fetch-a", "fetch-b"]},
                {"name": "fetch-a", "kind": "http", "queue": "wf"},
                {"name": "fetch-b", "kind": "http", "queue": "wf"},
            ]}),
        )
        .await;
    assert_eq!(status, 201, "{wf}");
    assert_eq!(wf["state"], "running");
    assert_eq!(wf["deduplicated"], false);
    let render_id = wf["job_ids"]["render"].clone();
    assert_eq!(wf["jobs"][2]["workflow_job"], "render", "parents first");
    assert_eq!(wf["jobs"][2]["state"], "blocked");
    assert_eq!(wf["jobs"][2]["depends_on"].as_array().unwrap().len(), 2);

    // A worker waiting on the queue is woken when the last parent completes.
    let fetches = lease(&server, "wf", 10).await;
    assert_eq!(fetches.len(), 2, "only the fetches are available");
    let waiting = {
        let (url, http) = (server.url.clone(), server.http.clone());
        tokio::spawn(async move {
            http.post(format!("{url}/api/v1/lease"))
                .json(&json!({"worker": "w2", "queues": ["wf"], "wait": "20s"}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    for f in &fetches {
        let name = f["workflow_job"].as_str().unwrap();
        complete(&server, f, json!({"from": name})).await;
    }
    let resp = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken by the release")
        .unwrap();
    let render = &resp["jobs"][0];
    assert_eq!(render["id"], render_id);
    let parents = render["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 2);
    for p in parents {
        assert_eq!(p["state"], "succeeded");
        assert_eq!(p["result"], json!({"from": p["name"]}));
    }
    complete(&server, render, json!("done")).await;
    let id = wf["id"].as_str().unwrap();
    let (status, done) = server.get(&format!("/api/v1/workflows/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["name"], "report");
    server.stop().await;
}

#[tokio::test]
async fn depends_on_by_id_blocks_skips_and_cancels() {
    let server = TestServer::start().await;
    let (_, parent) = server
        .post(
            "/api/v1/jobs",
            json!({"kind": "k", "retry": {"max_attempts": 1}}),
        )
        .await;
    let (status, child) = server
        .post(
            "/api/v1/jobs",
            json!({"kind": "k", "depends_on": [parent["id"]]}),
        )
        .await;
    assert_eq!(status, 201, "{child}");
    assert_eq!(child["state"], "blocked");
    assert_eq!(child["on_parent_failure"], "skip");
    let (_, anyway) = server
        .post(
            "/api/v1/jobs",
            json!({"kind": "k", "depends_on": [parent["id"]], "on_parent_failure": "run"}),
        )
        .await;
    let leased = lease(&server, "default", 10).await;
    assert_eq!(leased.len(), 1);
    let (status, _) = server
        .post(
            &format!("/api/v1/jobs/{}/fail", parent["id"].as_str().unwrap()),
            json!({"lease_token": leased[0]["lease_token"], "error": "boom"}),
        )
        .await;
    assert_eq!(status, 200);
    let state = |job: &Value| {
        let path = format!("/api/v1/jobs/{}", job["id"].as_str().unwrap());
        let server = &server;
        async move { server.get(&path).await.1["state"].clone() }
    };
    assert_eq!(state(&child).await, "skipped");
    assert_eq!(state(&anyway).await, "available");
    let (_, skipped) = server.get("/api/v1/jobs?state=skipped").await;
    assert_eq!(skipped["jobs"].as_array().unwrap().len(), 1);

    // A blocked job can be cancelled outright.
    let (_, p2) = server
        .post("/api/v1/jobs", json!({"kind": "k", "queue": "q2"}))
        .await;
    let (_, c2) = server
        .post(
            "/api/v1/jobs",
            json!({"kind": "k", "queue": "q2", "depends_on": [p2["id"]]}),
        )
        .await;
    let (status, cancelled) = server
        .delete(&format!("/api/v1/jobs/{}", c2["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (status, cancelled["state"].clone()),
        (200, json!("cancelled"))
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_graphs_name_the_field_and_store_nothing() {
    let server = TestServer::start().await;
    let unknown = "0190b3a6-0000-7000-8000-000000000000";
    let cases = [
        (
            "/api/v1/jobs",
            json!({"kind": "k", "depends_on": [unknown]}),
            "depends_on[0]",
        ),
        (
            "/api/v1/jobs",
            json!({"kind": "k", "depends_on": ["x"]}),
            "",
        ),
        (
            "/api/v1/workflows",
            json!({"jobs": [
                {"name": "a", "kind": "k", "depends_on": ["b"]},
                {"name": "b", "kind": "k", "depends_on": ["a"]},
            ]}),
            "depends_on",
        ),
        (
            "/api/v1/workflows",
            json!({"jobs": [{"name": "a", "kind": "k", "depends_on": ["ghost"]}]}),
            "jobs[0].depends_on[0]",
        ),
        (
            "/api/v1/workflows",
            json!({"jobs": [{"name": "a", "kind": "k", "queue": ""}]}),
            "jobs[0].queue",
        ),
        ("/api/v1/workflows", json!({"jobs": []}), "jobs"),
    ];
    for (path, body, field) in cases {
        let (status, resp) = server.post(path, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert_eq!(resp["error"]["code"], "invalid_request");
        let got = resp["error"]["field"].as_str().unwrap_or_default();
        assert!(got.contains(field), "{body}: field {got}, want {field}");
    }
    let (_, cycle) = server
        .post(
            "/api/v1/workflows",
            json!({"jobs": [
                {"name": "a", "kind": "k", "depends_on": ["b"]},
                {"name": "b", "kind": "k", "depends_on": ["a"]},
            ]}),
        )
        .await;
    let message = cycle["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cycle") && message.contains('a') && message.contains('b'),
        "{message}"
    );
    let (_, all) = server.get("/api/v1/jobs").await;
    assert!(all["jobs"].as_array().unwrap().is_empty(), "nothing stored");
    let (status, _) = server.get(&format!("/api/v1/workflows/{unknown}")).await;
    assert_eq!(status, 404);
    let (status, resp) = server.get("/api/v1/workflows/nope").await;
    assert_eq!((status, resp["error"]["field"].clone()), (400, json!("id")));
    server.stop().await;
}

#[tokio::test]
async fn deleting_a_workflow_cancels_what_has_not_ended() {
    let server = TestServer::start().await;
    let body = json!({"idempotency_key": "run-7", "jobs": [
        {"name": "a", "kind": "k", "queue": "c"},
        {"name": "b", "kind": "k", "queue": "c", "depends_on": ["a"]},
        {"name": "c", "kind": "k", "queue": "c", "depends_on": ["b"]},
    ]});
    let (status, wf) = server.post("/api/v1/workflows", body.clone()).await;
    assert_eq!(status, 201);
    let (status, again) = server.post("/api/v1/workflows", body).await;
    assert_eq!((status, again["deduplicated"].clone()), (200, json!(true)));
    assert_eq!(again["id"], wf["id"]);
    let running = lease(&server, "c", 1).await;
    let id = wf["id"].as_str().unwrap();
    let (status, cancelled) = server.delete(&format!("/api/v1/workflows/{id}")).await;
    assert_eq!(status, 200, "{cancelled}");
    let states: Vec<Value> = cancelled["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].clone())
        .collect();
    assert_eq!(
        states,
        [json!("running"), json!("cancelled"), json!("cancelled")]
    );
    assert_eq!(cancelled["jobs"][0]["cancel_requested"], true);
    // The worker sees the request at its heartbeat and gives up.
    let job_path = format!("/api/v1/jobs/{}", running[0]["id"].as_str().unwrap());
    let (_, beat) = server
        .post(
            &format!("{job_path}/heartbeat"),
            json!({"lease_token": running[0]["lease_token"]}),
        )
        .await;
    assert_eq!(beat["cancel_requested"], true);
    server
        .post(
            &format!("{job_path}/fail"),
            json!({"lease_token": running[0]["lease_token"], "error": "cancelled", "cancel": true}),
        )
        .await;
    let (_, ended) = server.get(&format!("/api/v1/workflows/{id}")).await;
    assert_eq!(ended["state"], "cancelled");
    server.stop().await;
}
