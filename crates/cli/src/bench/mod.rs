//! `taskwheel bench`: measures a server the way users meet it, over HTTP.
//!
//! It starts a server of its own (this binary, embedded store, fresh data
//! directory) unless `--server` names one. `--suite jobs` (the default) runs
//! four phases:
//! 1. enqueue: N jobs submitted by S concurrent producers (submit latency);
//! 2. burn-down: M workers drain the pre-filled queue with batched lease and completion;
//! 3. continuous: producers and workers run together (end-to-end rate, pickup latency);
//! 4. light load: one job at a time to an idle long-polling worker (pickup latency).
//!
//! Pickup latency is measured inside this process (the producer stamps the
//! payload with its monotonic clock, the worker reads it on receipt), so both
//! ends use the same clock. RSS comes from /proc of the server process.
//!
//! `--suite schedules` and `--suite delayed` measure timers (see [`timers`]).

mod timers;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::json;
use taskwheel_client::Client;
use taskwheel_core::DurationSpec;
use taskwheel_core::wire::{CompleteBatch, CompleteItem, LeaseRequest, SubmitJob};
use tokio::sync::Mutex;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Benchmark this server instead of starting one (RSS is then not reported).
    #[arg(long)]
    server: Option<String>,
    /// Jobs per phase.
    #[arg(long, default_value_t = 50_000)]
    jobs: u64,
    /// Concurrent producers.
    #[arg(long, default_value_t = 32)]
    producers: usize,
    /// Concurrent workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Jobs per lease and per completion batch.
    #[arg(long, default_value_t = 200)]
    batch: u32,
    /// Jobs in the light-load pickup phase, one at a time.
    #[arg(long, default_value_t = 2_000)]
    light_jobs: u64,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Suite::Jobs)]
    suite: Suite,
    /// `schedules`: schedules firing every second; `delayed`: delayed jobs pending.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// `schedules`: how long to let them fire.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// `schedules`: their interval (`1s` fires each one every second; `1h` measures idle schedules).
    #[arg(long, default_value = "1s", value_parser = taskwheel_core::parse_duration)]
    every: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Suite {
    /// Enqueue, burn-down, continuous and light-load job phases.
    Jobs,
    /// `--count` schedules firing every second: lateness and RSS.
    Schedules,
    /// `--count` delayed jobs pending far ahead, plus probes due soon: lateness and RSS.
    Delayed,
}

/// The process under test, when the bench started it.
struct SpawnedServer {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server() -> anyhow::Result<(SpawnedServer, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let child = Command::new(std::env::current_exe()?)
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .env("TASKWHEEL_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting the server under test")?;
    Ok((
        SpawnedServer { child, _dir: dir },
        format!("http://127.0.0.1:{port}"),
    ))
}

async fn wait_healthy(client: &Client) -> anyhow::Result<()> {
    for _ in 0..200 {
        if client.health().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not become healthy within 10s")
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/status"))).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug, serde::Serialize)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl From<&Histogram<u64>> for Latency {
    fn from(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct Report {
    jobs: u64,
    producers: usize,
    workers: usize,
    batch: u32,
    enqueue_jobs_per_s: f64,
    submit_latency: Latency,
    burn_down_jobs_per_s: f64,
    continuous_jobs_per_s: f64,
    continuous_pickup: Latency,
    continuous_pickup_in_server: Latency,
    light_pickup: Latency,
    light_pickup_in_server: Latency,
    idle_rss_mib: Option<f64>,
    peak_rss_mib: Option<f64>,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (spawned, url) = match &args.server {
        Some(url) => (None, url.clone()),
        None => {
            let (s, url) = spawn_server()?;
            (Some(s), url)
        }
    };
    let client = Client::new(&url)?;
    wait_healthy(&client).await?;
    let pid = spawned.as_ref().map(|s| s.child.id());
    match args.suite {
        Suite::Jobs => {}
        Suite::Schedules => return timers::schedules(&client, &args, pid).await,
        Suite::Delayed => return timers::delayed(&client, &args, pid).await,
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = pid.and_then(rss_kib).map(|(rss, _)| rss as f64 / 1024.0);
    let epoch = Instant::now();

    eprintln!(
        "enqueue: {} jobs from {} producers",
        args.jobs, args.producers
    );
    let (enqueue_secs, submit_latency) = produce(&client, &args, "burn", epoch).await?;
    eprintln!(
        "burn-down: {} workers, batches of {}",
        args.workers, args.batch
    );
    let started = Instant::now();
    drain(&client, &args, "burn", args.jobs, epoch).await?;
    let burn_secs = started.elapsed().as_secs_f64();

    eprintln!("continuous: producers and workers together");
    let started = Instant::now();
    let drainer = {
        let (client, args) = (client.clone(), args.clone());
        tokio::spawn(async move { drain(&client, &args, "cont", args.jobs, epoch).await })
    };
    produce(&client, &args, "cont", epoch).await?;
    let continuous_pickup = drainer.await??;
    let continuous_secs = started.elapsed().as_secs_f64();

    eprintln!("light load: {} jobs one at a time", args.light_jobs);
    let light_pickup = light_load(&client, &args, epoch).await?;
    let peak = pid.and_then(rss_kib).map(|(_, hwm)| hwm as f64 / 1024.0);

    let report = Report {
        jobs: args.jobs,
        producers: args.producers,
        workers: args.workers,
        batch: args.batch,
        enqueue_jobs_per_s: args.jobs as f64 / enqueue_secs,
        submit_latency: Latency::from(&submit_latency),
        burn_down_jobs_per_s: args.jobs as f64 / burn_secs,
        continuous_jobs_per_s: args.jobs as f64 / continuous_secs,
        continuous_pickup: Latency::from(&continuous_pickup.0),
        continuous_pickup_in_server: Latency::from(&continuous_pickup.1),
        light_pickup: Latency::from(&light_pickup.0),
        light_pickup_in_server: Latency::from(&light_pickup.1),
        idle_rss_mib: idle,
        peak_rss_mib: peak,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// Submits `args.jobs` jobs to `queue`; returns the elapsed seconds and the submit latencies.
async fn produce(
    client: &Client,
    args: &BenchArgs,
    queue: &str,
    epoch: Instant,
) -> anyhow::Result<(f64, Histogram<u64>)> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.producers {
        let (client, next, total, queue) =
            (client.clone(), next.clone(), args.jobs, queue.to_string());
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let mut job =
                    SubmitJob::new("noop", json!({ "t": epoch.elapsed().as_micros() as u64 }));
                job.queue = Some(queue.clone());
                let sent = Instant::now();
                client.submit(&job).await?;
                latency.record(sent.elapsed().as_micros().max(1) as u64)?;
            }
            anyhow::Ok(latency)
        }));
    }
    let mut all = histogram();
    for task in tasks {
        all.add(task.await??)?;
    }
    Ok((started.elapsed().as_secs_f64(), all))
}

/// Pickup latencies: as the producer and worker see it (stamp to receipt, over
/// HTTP), and inside the server (job created to job leased).
type Pickup = (Histogram<u64>, Histogram<u64>);

/// Leases and completes `total` jobs of `queue` with `args.workers` workers.
async fn drain(
    client: &Client,
    args: &BenchArgs,
    queue: &str,
    total: u64,
    epoch: Instant,
) -> anyhow::Result<Pickup> {
    let done = Arc::new(AtomicU64::new(0));
    let pickup = Arc::new(Mutex::new((histogram(), histogram())));
    let mut tasks = Vec::new();
    for w in 0..args.workers {
        let (client, done, pickup) = (client.clone(), done.clone(), pickup.clone());
        let request = LeaseRequest {
            queues: vec![queue.to_string()],
            max: args.batch,
            wait: Some(DurationSpec(Duration::from_millis(200))),
            worker: format!("bench-{w}"),
            lease: None,
        };
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            let mut server_side = histogram();
            while done.load(Ordering::Relaxed) < total {
                let leased = client.lease(&request).await?.jobs;
                if leased.is_empty() {
                    continue;
                }
                let now = epoch.elapsed().as_micros() as u64;
                for job in &leased {
                    let stamped = job.job.payload["t"].as_u64().unwrap_or(now);
                    local.record(now.saturating_sub(stamped).max(1))?;
                    if let Some(lease) = &job.job.lease {
                        let inside = lease.started_at.duration_since(job.job.created_at);
                        server_side.record((inside.as_micros().max(1)) as u64)?;
                    }
                }
                complete_all(&client, &leased).await?;
                done.fetch_add(leased.len() as u64, Ordering::Relaxed);
            }
            let mut pickup = pickup.lock().await;
            pickup.0.add(local)?;
            pickup.1.add(server_side)?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let histogram = pickup.lock().await.clone();
    Ok(histogram)
}

/// One job at a time to one idle long-polling worker: pickup latency without queueing.
async fn light_load(client: &Client, args: &BenchArgs, epoch: Instant) -> anyhow::Result<Pickup> {
    let worker = {
        let client = client.clone();
        let light = BenchArgs {
            workers: 1,
            batch: 1,
            ..args.clone()
        };
        let total = args.light_jobs;
        tokio::spawn(async move { drain(&client, &light, "light", total, epoch).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..args.light_jobs {
        let mut job = SubmitJob::new("noop", json!({ "t": epoch.elapsed().as_micros() as u64 }));
        job.queue = Some("light".into());
        client.submit(&job).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    worker.await?
}

/// Completes leased jobs with one batch request; any refusal is a bench failure.
async fn complete_all(
    client: &Client,
    leased: &[taskwheel_core::wire::LeasedJob],
) -> anyhow::Result<()> {
    if leased.is_empty() {
        return Ok(());
    }
    let batch = CompleteBatch {
        completions: leased
            .iter()
            .map(|j| CompleteItem {
                id: j.job.id,
                lease_token: j.lease_token,
                result: None,
            })
            .collect(),
    };
    let answer = client.complete_batch(&batch).await?;
    if let Some(failed) = answer.results.iter().find(|r| r.error.is_some()) {
        bail!("completion refused: {:?}", failed.error);
    }
    Ok(())
}

fn print_report(r: &Report) {
    let lat = |l: &Latency| {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.p50_ms, l.p99_ms, l.max_ms
        )
    };
    let mib = |m: Option<f64>| {
        m.map(|v| format!("{v:.1} MiB"))
            .unwrap_or_else(|| "n/a".into())
    };
    println!("jobs per phase       {}", r.jobs);
    println!(
        "producers / workers  {} / {} (batch {})",
        r.producers, r.workers, r.batch
    );
    println!("enqueue              {:.0} jobs/s", r.enqueue_jobs_per_s);
    println!("submit latency       {}", lat(&r.submit_latency));
    println!("burn-down            {:.0} jobs/s", r.burn_down_jobs_per_s);
    println!("continuous           {:.0} jobs/s", r.continuous_jobs_per_s);
    println!("pickup (continuous)  {}", lat(&r.continuous_pickup));
    println!(
        "  inside the server  {}",
        lat(&r.continuous_pickup_in_server)
    );
    println!("pickup (light load)  {}", lat(&r.light_pickup));
    println!("  inside the server  {}", lat(&r.light_pickup_in_server));
    println!("server RSS idle      {}", mib(r.idle_rss_mib));
    println!("server RSS peak      {}", mib(r.peak_rss_mib));
}
