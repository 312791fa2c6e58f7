//! Durability across `kill -9`: the real binary, a real socket, a real data
//! directory. Every job answered 201 must exist after the crash, and every
//! job must end `succeeded` exactly once, whatever was in flight.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use taskwheel_client::Client;
use taskwheel_core::wire::{CompleteRequest, LeaseRequest, ListJobsQuery, SubmitJob};
use taskwheel_core::{AttemptOutcome, DurationSpec, JobId, JobState};

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &std::path::Path, port: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_taskwheel"))
            .args([
                "server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir)
            .env("TASKWHEEL_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start server");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn ready(&self) -> Client {
        let client = Client::new(&self.url).unwrap();
        for _ in 0..200 {
            if client.health().await.is_ok() {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server did not start");
    }

    /// SIGKILL: no shutdown hook runs, nothing is flushed by the server.
    fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn lease_request(max: u32) -> LeaseRequest {
    LeaseRequest {
        queues: vec!["default".into()],
        max,
        wait: Some(DurationSpec(Duration::from_millis(500))),
        worker: "crash-test".into(),
        // Short, so jobs in flight at the crash come back quickly after restart.
        lease: Some(DurationSpec(Duration::from_secs(1))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_and_completes_each_job_once() {
    const JOBS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(dir.path(), port);
    let client = server.ready().await;

    let mut accepted: Vec<JobId> = Vec::new();
    for i in 0..JOBS {
        let mut job = SubmitJob::new("side-effect", json!({"n": i}));
        job.idempotency_key = Some(format!("job-{i}"));
        accepted.push(client.submit(&job).await.expect("201").id);
    }

    // Work through part of the queue, then crash with jobs leased and unfinished.
    let mut executions: HashMap<JobId, u32> = HashMap::new();
    let mut completions: HashMap<JobId, u32> = HashMap::new();
    for _ in 0..5 {
        for leased in client.lease(&lease_request(20)).await.unwrap().jobs {
            *executions.entry(leased.job.id).or_default() += 1;
            let done = CompleteRequest {
                lease_token: leased.lease_token,
                result: None,
            };
            client
                .complete(leased.job.id, &done)
                .await
                .expect("complete");
            *completions.entry(leased.job.id).or_default() += 1;
        }
    }
    let in_flight = client.lease(&lease_request(25)).await.unwrap().jobs;
    assert_eq!(in_flight.len(), 25);
    for leased in &in_flight {
        *executions.entry(leased.job.id).or_default() += 1; // started, never reported
    }
    // One more job, answered 201, and the crash right after it.
    let last = client
        .submit(&SubmitJob::new("side-effect", json!({"n": "last"})))
        .await
        .unwrap();
    accepted.push(last.id);
    server.kill9();

    let server = Server::start(dir.path(), port);
    let client = server.ready().await;
    assert_eq!(
        client
            .get_job(last.id)
            .await
            .expect("the last 201 survived")
            .state,
        JobState::Available
    );
    // A worker that survived the crash reports ten of its jobs; the other
    // fifteen are abandoned and must come back when their leases run out.
    let (reported, abandoned) = in_flight.split_at(10);
    for leased in reported {
        let late = CompleteRequest {
            lease_token: leased.lease_token,
            result: None,
        };
        client
            .complete(leased.job.id, &late)
            .await
            .expect("the lease outlived the restart");
        *completions.entry(leased.job.id).or_default() += 1;
    }

    // Drain the rest, including jobs whose lease ran out across the crash.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while completions.len() < accepted.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs left unfinished: {}",
            accepted.len() - completions.len()
        );
        for leased in client.lease(&lease_request(50)).await.unwrap().jobs {
            *executions.entry(leased.job.id).or_default() += 1;
            let done = CompleteRequest {
                lease_token: leased.lease_token,
                result: None,
            };
            client
                .complete(leased.job.id, &done)
                .await
                .expect("complete");
            *completions.entry(leased.job.id).or_default() += 1;
        }
    }

    let mut all = Vec::new();
    let mut query = ListJobsQuery {
        limit: Some(1000),
        ..ListJobsQuery::default()
    };
    loop {
        let page = client.list_jobs(&query).await.unwrap();
        all.extend(page.jobs);
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(all.len(), accepted.len(), "no job lost, none invented");
    assert!(
        all.iter().all(|j| j.state == JobState::Succeeded),
        "every job succeeded"
    );
    assert!(
        completions.values().all(|&n| n == 1),
        "each job completed exactly once"
    );
    let reruns = executions.values().filter(|&&n| n > 1).count();
    assert_eq!(
        reruns,
        abandoned.len(),
        "exactly the abandoned jobs ran again"
    );
    for leased in abandoned {
        let job = client.get_job(leased.job.id).await.unwrap();
        let outcomes: Vec<_> = job.attempts.iter().map(|a| a.outcome).collect();
        assert_eq!(
            outcomes,
            vec![AttemptOutcome::LeaseExpired, AttemptOutcome::Succeeded]
        );
    }
    eprintln!(
        "accepted {}, succeeded {}, executions {}, re-executed after the crash {}, lost 0",
        accepted.len(),
        all.len(),
        executions.values().sum::<u32>(),
        reruns
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_second_schedule_through_kill_9_fires_each_tick_at_most_once() {
    use taskwheel_core::recurring::{JobTemplate, ScheduleRequest};

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(dir.path(), port);
    let client = server.ready().await;
    let request = ScheduleRequest {
        name: Some("heartbeat".into()),
        every: Some(DurationSpec(Duration::from_secs(1))),
        job: Some(JobTemplate {
            kind: "tick".into(),
            ..JobTemplate::default()
        }),
        ..ScheduleRequest::default()
    };
    let schedule = client.create_schedule(&request).await.unwrap();

    // Let it fire a few times, then crash without warning.
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    server.kill9();
    let crashed_at = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let server = Server::start(dir.path(), port);
    let client = server.ready().await;
    let restarted_at = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(2_300)).await;

    let jobs = client
        .list_jobs(&ListJobsQuery {
            limit: Some(1000),
            ..ListJobsQuery::default()
        })
        .await
        .unwrap()
        .jobs;
    let mut ticks: Vec<jiff::Timestamp> = jobs.iter().filter_map(|j| j.fire_time).collect();
    ticks.sort();
    let distinct: std::collections::BTreeSet<_> = ticks.iter().collect();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "no tick fired twice: {ticks:?}"
    );
    assert!(jobs.iter().all(|j| j.schedule_id == Some(schedule.id)));
    assert!(
        ticks.len() >= 4,
        "it fired before and after the crash: {ticks:?}"
    );
    let during_downtime = ticks
        .iter()
        .filter(|t| **t > crashed_at && **t < restarted_at)
        .count();
    assert!(
        during_downtime <= 1,
        "misfire `skip` fires only the latest missed tick: {ticks:?}"
    );
    assert!(
        ticks.iter().any(|t| *t > restarted_at),
        "firing resumed after the restart: {ticks:?}"
    );
    let health = client.get_schedule("heartbeat").await.unwrap().health;
    assert!(
        health.missed >= 2,
        "ticks missed while down are counted: {health:?}"
    );
    eprintln!(
        "ticks fired {}, missed {}, duplicates 0",
        ticks.len(),
        health.missed
    );
}
