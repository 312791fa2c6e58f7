//! `--suite chain`: how much a dependency costs. One workflow of `--count`
//! no-op jobs, each depending on the one before, is drained by one worker
//! that leases one job and completes it before asking again: every link
//! waits for its parent's completion, which releases it in the same
//! transaction. The same worker then runs as many independent jobs the same
//! way, so the difference between the two is what dependencies add.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use taskwheel_client::Client;
use taskwheel_core::DurationSpec;
use taskwheel_core::wire::{LeaseRequest, SubmitJob};
use taskwheel_core::workflow::{SubmitWorkflow, WorkflowJob, WorkflowState};

use super::{BenchArgs, Latency, RunId, complete_all, histogram};

#[derive(Debug, serde::Serialize)]
struct ChainReport {
    jobs: u64,
    submit_ms: f64,
    chain_ms: f64,
    chain_link: Latency,
    independent_ms: f64,
    independent_link: Latency,
}

pub(super) async fn chain(client: &Client, args: &BenchArgs, run: &RunId) -> anyhow::Result<()> {
    let n = args.count;
    ensure!(
        (1..=taskwheel_core::workflow::MAX_WORKFLOW_JOBS as u64).contains(&n),
        "--count: a chain has 1 to {} jobs",
        taskwheel_core::workflow::MAX_WORKFLOW_JOBS
    );
    let queue = run.name("chain");
    let job = |queue: &str| {
        let mut job = SubmitJob::new("noop", serde_json::Value::Null);
        job.queue = Some(queue.to_string());
        job
    };
    let workflow = SubmitWorkflow {
        name: Some(queue.clone()),
        idempotency_key: None,
        jobs: (0..n)
            .map(|i| WorkflowJob {
                name: format!("link-{i}"),
                depends_on: if i == 0 {
                    vec![]
                } else {
                    vec![format!("link-{}", i - 1)]
                },
                job: job(&queue),
            })
            .collect(),
    };
    eprintln!("chain: a workflow of {n} jobs, each waiting for the one before");
    let started = Instant::now();
    let submitted = client.submit_workflow(&workflow).await?;
    let submit_ms = started.elapsed().as_secs_f64() * 1e3;
    let (chain_ms, chain_link) = one_at_a_time(client, &queue, n).await?;
    let done = client.get_workflow(submitted.id).await?;
    if done.state != WorkflowState::Succeeded {
        bail!("the chain ended {:?}, not succeeded", done.state);
    }

    let plain = run.name("plain");
    eprintln!("independent: {n} jobs without dependencies, the same way");
    for _ in 0..n {
        client.submit(&job(&plain)).await?;
    }
    let (independent_ms, independent_link) = one_at_a_time(client, &plain, n).await?;

    let report = ChainReport {
        jobs: n,
        submit_ms,
        chain_ms,
        chain_link,
        independent_ms,
        independent_link,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let per = |ms: f64| ms * 1e3 / n as f64;
    println!("workflow of {n} submitted in       {submit_ms:.1} ms");
    println!(
        "chain of {n} drained in           {chain_ms:.1} ms ({:.0} µs per link; link p50 {:.2} ms, p99 {:.2} ms)",
        per(chain_ms),
        report.chain_link.p50_ms,
        report.chain_link.p99_ms
    );
    println!(
        "{n} independent jobs drained in   {independent_ms:.1} ms ({:.0} µs per job; p50 {:.2} ms, p99 {:.2} ms)",
        per(independent_ms),
        report.independent_link.p50_ms,
        report.independent_link.p99_ms
    );
    println!(
        "what the dependencies added       {:.1} ms in all ({:.0} µs per link)",
        chain_ms - independent_ms,
        per(chain_ms - independent_ms)
    );
    Ok(())
}

/// One worker: lease one job (long-polling), complete it, repeat `n` times.
/// Answers the total time and, per job, the time from the previous
/// completion's answer to this lease's answer.
async fn one_at_a_time(client: &Client, queue: &str, n: u64) -> anyhow::Result<(f64, Latency)> {
    let request = LeaseRequest {
        queues: vec![queue.to_string()],
        max: 1,
        wait: Some(DurationSpec(Duration::from_secs(5))),
        worker: "bench-chain".into(),
        lease: None,
    };
    let mut links = histogram();
    let started = Instant::now();
    let mut since = Instant::now();
    for i in 0..n {
        let leased = client.lease(&request).await?.jobs;
        ensure!(
            leased.len() == 1,
            "job {i} of {n} was not handed out within 5 s"
        );
        links.record(since.elapsed().as_micros().max(1) as u64)?;
        complete_all(client, &leased).await?;
        since = Instant::now();
    }
    Ok((started.elapsed().as_secs_f64() * 1e3, Latency::from(&links)))
}
