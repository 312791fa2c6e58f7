//! Timer benchmarks: how late due work starts when there is a lot of it.
//!
//! - `schedules`: `--count` schedules with `every: 1s` fire for `--seconds`
//!   while `--workers` drain their jobs; lateness is measured inside the
//!   server (tick → job available, from `/api/v1/stats`) and at the worker
//!   (tick → job received).
//! - `delayed`: `--count` jobs are parked an hour ahead, then `--light-jobs`
//!   probes are submitted with delays of 0.5–1.5 s to one long-polling worker;
//!   lateness is due time → available (server) and due time → received (worker).
//!
//! Both report the server's RSS, which must not grow with the parked jobs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use jiff::Timestamp;
use serde_json::json;
use taskwheel_client::Client;
use taskwheel_core::DurationSpec;
use taskwheel_core::recurring::{JobTemplate, ScheduleRequest};
use taskwheel_core::wire::{LeaseRequest, SubmitJob};

use super::{BenchArgs, Latency, RunId, complete_all, histogram, rss_kib};

fn mib(pid: Option<u32>) -> Option<(f64, f64)> {
    pid.and_then(rss_kib)
        .map(|(rss, hwm)| (rss as f64 / 1024.0, hwm as f64 / 1024.0))
}

fn print_rss(label: &str, rss: Option<(f64, f64)>) {
    match rss {
        Some((now, peak)) => println!("{label:<34} {now:.1} MiB (peak {peak:.1} MiB)"),
        None => println!("{label:<34} n/a (external server)"),
    }
}

fn print_latency(label: &str, l: &Latency) {
    println!(
        "{label:<34} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.p50_ms, l.p99_ms, l.max_ms
    );
}

async fn server_lateness(client: &Client) -> anyhow::Result<Latency> {
    let stats = client.stats().await?;
    let l = &stats["lateness"];
    Ok(Latency {
        p50_ms: l["p50_ms"].as_f64().unwrap_or_default(),
        p99_ms: l["p99_ms"].as_f64().unwrap_or_default(),
        max_ms: l["max_ms"].as_f64().unwrap_or_default(),
    })
}

fn late_micros(due: Timestamp) -> u64 {
    Timestamp::now().duration_since(due).as_micros().max(1) as u64
}

/// Runs `count` jobs of work through `make`, `concurrency` at a time.
async fn fan_out<F, Fut>(count: u64, concurrency: usize, make: F) -> anyhow::Result<()>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, make) = (next.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                make(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// `keep`: leave the schedules behind (their store is thrown away anyway);
/// otherwise they are deleted after the measurement, so that they do not
/// keep firing into the next run on the same database or server.
pub(super) async fn schedules(
    client: &Client,
    args: &BenchArgs,
    pid: Option<u32>,
    run: &RunId,
    keep: bool,
) -> anyhow::Result<()> {
    eprintln!(
        "creating {} schedules firing every {}",
        args.count,
        DurationSpec(args.every)
    );
    let started = Instant::now();
    let c = client.clone();
    let every = args.every;
    let (prefix, queue) = (run.name("bench"), run.name("sched"));
    let (create_prefix, create_queue) = (prefix.clone(), queue.clone());
    fan_out(args.count, args.producers, move |i| {
        let (c, name, queue) = (
            c.clone(),
            format!("{create_prefix}-{i}"),
            create_queue.clone(),
        );
        async move {
            let request = ScheduleRequest {
                name: Some(name),
                every: Some(DurationSpec(every)),
                job: Some(JobTemplate {
                    kind: "noop".into(),
                    queue: Some(queue),
                    ..JobTemplate::default()
                }),
                ..ScheduleRequest::default()
            };
            c.create_schedule(&request).await?;
            Ok(())
        }
    })
    .await?;
    eprintln!(
        "created in {:.1}s; draining for {}s with {} workers",
        started.elapsed().as_secs_f64(),
        args.seconds,
        args.workers
    );

    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..args.workers {
        let (client, stop, received) = (client.clone(), stop.clone(), received.clone());
        let request = LeaseRequest {
            queues: vec![queue.clone()],
            max: args.batch,
            wait: Some(DurationSpec(Duration::from_millis(200))),
            worker: format!("bench-{w}"),
            lease: None,
        };
        workers.push(tokio::spawn(async move {
            let mut pickup = histogram();
            while !stop.load(Ordering::Relaxed) {
                let leased = client.lease(&request).await?.jobs;
                for job in &leased {
                    if let Some(tick) = job.job.fire_time {
                        pickup.saturating_record(late_micros(tick));
                    }
                }
                if leased.is_empty() {
                    continue;
                }
                received.fetch_add(leased.len() as u64, Ordering::Relaxed);
                complete_all(&client, &leased).await?;
            }
            anyhow::Ok(pickup)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let rss = mib(pid);
    stop.store(true, Ordering::Relaxed);
    let mut pickup: Histogram<u64> = histogram();
    for w in workers {
        pickup.add(w.await??)?;
    }
    let lateness = server_lateness(client).await?;
    if !keep {
        eprintln!("deleting the schedules");
        let c = client.clone();
        fan_out(args.count, args.producers, move |i| {
            let (c, name) = (c.clone(), format!("{prefix}-{i}"));
            async move {
                c.delete_schedule(&name).await?;
                Ok(())
            }
        })
        .await?;
    }
    println!(
        "schedules                          {} every {}",
        args.count,
        DurationSpec(args.every)
    );
    println!("seconds measured                   {}", args.seconds);
    println!(
        "jobs received by workers           {}",
        received.load(Ordering::Relaxed)
    );
    print_latency("lateness tick → available", &lateness);
    print_latency("lateness tick → worker pickup", &Latency::from(&pickup));
    print_rss("server RSS while firing", rss);
    Ok(())
}

pub(super) async fn delayed(
    client: &Client,
    args: &BenchArgs,
    pid: Option<u32>,
    run: &RunId,
) -> anyhow::Result<()> {
    let (parked_queue, probe_queue) = (run.name("parked"), run.name("probe"));
    let before = mib(pid);
    eprintln!("parking {} delayed jobs an hour ahead", args.count);
    let started = Instant::now();
    let c = client.clone();
    fan_out(args.count, args.producers, move |i| {
        let (c, queue) = (c.clone(), parked_queue.clone());
        async move {
            let mut job = SubmitJob::new("noop", json!({ "i": i }));
            job.queue = Some(queue);
            // Spread over an hour so the timer index really holds a million instants.
            job.delay = Some(DurationSpec(
                Duration::from_secs(3600) + Duration::from_millis(i % 3_600_000),
            ));
            c.submit(&job).await?;
            Ok(())
        }
    })
    .await?;
    eprintln!("parked in {:.1}s", started.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let parked = mib(pid);

    eprintln!("{} probes due 0.5–1.5 s after submission", args.light_jobs);
    let probes = args.light_jobs;
    let worker = {
        let (client, queue) = (client.clone(), probe_queue.clone());
        tokio::spawn(async move {
            let request = LeaseRequest {
                queues: vec![queue],
                max: 10,
                wait: Some(DurationSpec(Duration::from_secs(1))),
                worker: "probe-worker".into(),
                lease: None,
            };
            let mut late = histogram();
            let mut seen = 0;
            while seen < probes {
                let leased = client.lease(&request).await?.jobs;
                for job in &leased {
                    late.saturating_record(late_micros(job.job.run_at));
                }
                seen += leased.len() as u64;
                complete_all(&client, &leased).await?;
            }
            anyhow::Ok(late)
        })
    };
    for i in 0..probes {
        let mut job = SubmitJob::new("noop", json!({}));
        job.queue = Some(probe_queue.clone());
        job.delay = Some(DurationSpec(Duration::from_millis(500 + (i * 7919) % 1000)));
        client.submit(&job).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pickup = worker.await??;
    let lateness = server_lateness(client).await?;
    println!("delayed jobs parked                {}", args.count);
    println!("probes                             {probes}");
    print_latency("lateness due → available", &lateness);
    print_latency("lateness due → worker pickup", &Latency::from(&pickup));
    print_rss("server RSS before parking", before);
    print_rss("server RSS with jobs parked", parked);
    print_rss("server RSS after probes", mib(pid));
    Ok(())
}
