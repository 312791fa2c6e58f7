//! `taskwheel bench`: measures a server the way users meet it, over HTTP.
//!
//! It starts a server of its own (this binary, embedded store, fresh data
//! directory) unless `--server` names one. With `--database-url` it starts
//! `--nodes` servers instead, all on that PostgreSQL database, and spreads
//! producers and workers over them round-robin (task `i` talks to node
//! `i % N` through a client of its own). `--suite jobs` (the default) runs
//! four phases:
//! 1. enqueue: N jobs submitted by S concurrent producers (submit latency);
//! 2. burn-down: M workers drain the pre-filled queue with batched lease and completion;
//! 3. continuous: producers and workers run together (end-to-end rate, pickup latency);
//! 4. light load: one job at a time to an idle long-polling worker (pickup latency);
//! 5. enqueue, batched: N jobs again, `--batch` per `POST /api/v1/jobs/batch`
//!    request (the jobs are left queued).
//!
//! Pickup latency is measured inside this process (the producer stamps the
//! payload with its monotonic clock, the worker reads it on receipt), so both
//! ends use the same clock. The in-server pickup (job created → leased) is
//! stamped by the servers; with several nodes the two instants may come from
//! two nodes, each following the database clock, so it carries their offset
//! error. RSS comes from /proc of the server processes.
//!
//! A PostgreSQL database outlives the run, so every queue and schedule name
//! carries a suffix unique to the run: rows left by an earlier run never mix
//! with this one's (they still take space: figures are best taken on a fresh
//! database).
//!
//! `--suite schedules` and `--suite delayed` measure timers (see [`timers`]);
//! `--suite chain` what a dependency between jobs costs (see [`chain`]).

mod chain;
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
use tokio::sync::{Mutex, Notify};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Benchmark this server instead of starting one (RSS is then not
    /// reported); repeat it for the nodes of a cluster.
    #[arg(long, conflicts_with_all = ["database_url", "nodes"])]
    server: Vec<String>,
    /// Start the servers on this PostgreSQL database instead of the embedded
    /// store. The bench leaves its jobs there: give it a database it may fill.
    #[arg(long)]
    database_url: Option<String>,
    /// Servers to start on `--database-url`; producers and workers are spread
    /// over them round-robin.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    nodes: u16,
    /// Jobs per phase.
    #[arg(long, default_value_t = 50_000)]
    jobs: u64,
    /// Concurrent producers.
    #[arg(long, default_value_t = 32)]
    producers: usize,
    /// Concurrent workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Jobs per lease, per completion batch and per batched submit.
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
    /// `schedules`: schedules firing every second; `delayed`: delayed jobs pending;
    /// `chain`: jobs in the chain.
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
    /// A workflow of `--count` jobs in a chain, one worker: the cost of a dependency.
    Chain,
}

/// A process under test, when the bench started it.
struct SpawnedServer {
    child: Child,
    /// The embedded store's data directory; none on PostgreSQL.
    _dir: Option<tempfile::TempDir>,
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this binary's server on a free loopback port: on a fresh embedded
/// store, or on `database_url`.
fn spawn_server(database_url: Option<&str>) -> anyhow::Result<(SpawnedServer, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["server", "--listen", &format!("127.0.0.1:{port}")]);
    let dir = match database_url {
        Some(url) => {
            command.args(["--database-url", url]);
            None
        }
        None => {
            let dir = tempfile::tempdir()?;
            command.arg("--data-dir").arg(dir.path());
            // The server reads this too; the embedded store must not be
            // swapped for PostgreSQL behind the user's back.
            command.env_remove("TASKWHEEL_DATABASE_URL");
            Some(dir)
        }
    };
    let child = command
        .env("TASKWHEEL_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting the server under test")?;
    Ok((
        SpawnedServer { child, _dir: dir },
        format!("http://127.0.0.1:{port}"),
    ))
}

/// The nodes under test, by URL; cheap to clone into tasks.
#[derive(Clone)]
struct Targets(Arc<[String]>);

impl Targets {
    /// A client of its own for task `i`, on node `i % N`.
    fn client(&self, i: usize) -> anyhow::Result<Client> {
        Ok(Client::new(&self.0[i % self.0.len()])?)
    }
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
    store: &'static str,
    nodes: usize,
    jobs: u64,
    producers: usize,
    workers: usize,
    batch: u32,
    enqueue_jobs_per_s: f64,
    submit_latency: Latency,
    enqueue_batched_jobs_per_s: f64,
    burn_down_jobs_per_s: f64,
    continuous_jobs_per_s: f64,
    burn_down_jobs_per_lease: f64,
    continuous_jobs_per_lease: f64,
    continuous_pickup: Latency,
    continuous_pickup_in_server: Latency,
    light_pickup: Latency,
    light_pickup_in_server: Latency,
    /// Summed over the nodes.
    idle_rss_mib: Option<f64>,
    /// The sum of each node's peak (an upper bound of the peak of the sum).
    peak_rss_mib: Option<f64>,
    node_idle_rss_mib: Vec<f64>,
    node_peak_rss_mib: Vec<f64>,
}

/// Each node's RSS (`peak`: its high-water mark) in MiB; empty when the bench
/// did not start the servers or one of them is gone.
fn node_rss_mib(pids: &[u32], peak: bool) -> Vec<f64> {
    let all: Option<Vec<f64>> = pids
        .iter()
        .map(|&pid| rss_kib(pid).map(|(rss, hwm)| if peak { hwm } else { rss } as f64 / 1024.0))
        .collect();
    all.unwrap_or_default()
}

fn sum(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum())
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let nodes = usize::from(args.nodes);
    if nodes > 1 && args.database_url.is_none() {
        bail!("several nodes share a PostgreSQL database: give --database-url");
    }
    let mut spawned = Vec::new();
    let urls = if args.server.is_empty() {
        let mut urls = Vec::new();
        for _ in 0..nodes {
            let (server, url) = spawn_server(args.database_url.as_deref())?;
            spawned.push(server);
            urls.push(url);
        }
        urls
    } else {
        args.server.clone()
    };
    let targets = Targets(urls.into());
    for i in 0..targets.0.len() {
        wait_healthy(&targets.client(i)?).await?;
    }
    let pids: Vec<u32> = spawned.iter().map(|s| s.child.id()).collect();
    let run = RunId::new();
    match args.suite {
        Suite::Jobs => {}
        Suite::Schedules | Suite::Delayed | Suite::Chain if targets.0.len() > 1 => {
            bail!(
                "the schedules, delayed and chain suites measure one node: drop --nodes or give one --server"
            )
        }
        Suite::Schedules => {
            // Only a store the bench made itself is thrown away after the run.
            let keep = args.database_url.is_none() && args.server.is_empty();
            let client = targets.client(0)?;
            return timers::schedules(&client, &args, pids.first().copied(), &run, keep).await;
        }
        Suite::Delayed => {
            let client = targets.client(0)?;
            return timers::delayed(&client, &args, pids.first().copied(), &run).await;
        }
        Suite::Chain => return chain::chain(&targets.client(0)?, &args, &run).await,
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = node_rss_mib(&pids, false);
    let epoch = Instant::now();
    let (burn, cont) = (run.name("burn"), run.name("cont"));

    eprintln!(
        "enqueue: {} jobs from {} producers, {} node(s)",
        args.jobs,
        args.producers,
        targets.0.len()
    );
    let (enqueue_secs, submit_latency) = produce(&targets, &args, &burn, epoch).await?;
    eprintln!(
        "burn-down: {} workers, batches of {}",
        args.workers, args.batch
    );
    let started = Instant::now();
    let burn_down = drain(&targets, &args, &burn, args.jobs, epoch, None).await?;
    let burn_secs = started.elapsed().as_secs_f64();

    eprintln!("continuous: producers and workers together");
    let started = Instant::now();
    let drainer = {
        let (targets, args, cont) = (targets.clone(), args.clone(), cont.clone());
        tokio::spawn(async move { drain(&targets, &args, &cont, args.jobs, epoch, None).await })
    };
    produce(&targets, &args, &cont, epoch).await?;
    let continuous = drainer.await??;
    let continuous_secs = started.elapsed().as_secs_f64();

    eprintln!("light load: {} jobs one at a time", args.light_jobs);
    let light_pickup = light_load(&targets, &args, &run.name("light"), epoch).await?;
    eprintln!(
        "enqueue, batched: {} jobs in batches of {}",
        args.jobs, args.batch
    );
    let batched_secs = produce_batched(&targets, &args, &run.name("batched")).await?;
    let peak = node_rss_mib(&pids, true);

    let report = Report {
        store: if args.database_url.is_some() {
            "postgres"
        } else if args.server.is_empty() {
            "sqlite"
        } else {
            "external"
        },
        nodes: targets.0.len(),
        jobs: args.jobs,
        producers: args.producers,
        workers: args.workers,
        batch: args.batch,
        enqueue_jobs_per_s: args.jobs as f64 / enqueue_secs,
        submit_latency: Latency::from(&submit_latency),
        enqueue_batched_jobs_per_s: args.jobs as f64 / batched_secs,
        burn_down_jobs_per_s: args.jobs as f64 / burn_secs,
        continuous_jobs_per_s: args.jobs as f64 / continuous_secs,
        burn_down_jobs_per_lease: burn_down.jobs_per_lease(args.jobs),
        continuous_jobs_per_lease: continuous.jobs_per_lease(args.jobs),
        continuous_pickup: Latency::from(&continuous.pickup.0),
        continuous_pickup_in_server: Latency::from(&continuous.pickup.1),
        light_pickup: Latency::from(&light_pickup.0),
        light_pickup_in_server: Latency::from(&light_pickup.1),
        idle_rss_mib: sum(&idle),
        peak_rss_mib: sum(&peak),
        node_idle_rss_mib: idle,
        node_peak_rss_mib: peak,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// Makes this run's queue and schedule names unique, so that rows an earlier
/// run left in a shared database are never leased, counted or collided with.
struct RunId(String);

impl RunId {
    fn new() -> Self {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        Self(format!("{micros:x}"))
    }

    /// `base` with this run's suffix: `burn-18c0f3a2b4d`.
    fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.0)
    }
}

/// Submits `args.jobs` jobs to `queue`; returns the elapsed seconds and the submit latencies.
async fn produce(
    targets: &Targets,
    args: &BenchArgs,
    queue: &str,
    epoch: Instant,
) -> anyhow::Result<(f64, Histogram<u64>)> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let clients = (0..args.producers)
        .map(|p| targets.client(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    for client in clients {
        let (next, total, queue) = (next.clone(), args.jobs, queue.to_string());
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

/// Submits `args.jobs` jobs to `queue`, `args.batch` per request; returns the elapsed seconds.
async fn produce_batched(targets: &Targets, args: &BenchArgs, queue: &str) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let clients = (0..args.producers)
        .map(|p| targets.client(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in clients {
        let (next, total, batch) = (next.clone(), args.jobs, u64::from(args.batch.max(1)));
        let mut job = SubmitJob::new("noop", json!({}));
        job.queue = Some(queue.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= total {
                    return anyhow::Ok(());
                }
                let jobs = vec![job.clone(); (batch.min(total - from)) as usize];
                let answer = client.submit_batch(&jobs, false).await?;
                if let Some(error) = answer.results.iter().find_map(|r| r.error.as_ref()) {
                    bail!("a batched submit failed: {}", error.message);
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Pickup latencies: as the producer and worker see it (stamp to receipt, over
/// HTTP), and inside the server (job created to job leased).
type Pickup = (Histogram<u64>, Histogram<u64>);

/// What a drain saw.
struct Drained {
    pickup: Pickup,
    /// Lease requests that returned jobs: with `total`, the mean batch, which
    /// says how many lease and completion transactions a job cost.
    leases: u64,
}

impl Drained {
    fn jobs_per_lease(&self, total: u64) -> f64 {
        total as f64 / self.leases.max(1) as f64
    }
}

/// Leases and completes `total` jobs of `queue` with `args.workers` workers,
/// worker `w` on node `w % N`; `completed` is notified after each completion.
async fn drain(
    targets: &Targets,
    args: &BenchArgs,
    queue: &str,
    total: u64,
    epoch: Instant,
    completed: Option<Arc<Notify>>,
) -> anyhow::Result<Drained> {
    let done = Arc::new(AtomicU64::new(0));
    let leases = Arc::new(AtomicU64::new(0));
    let pickup = Arc::new(Mutex::new((histogram(), histogram())));
    let mut tasks = Vec::new();
    for w in 0..args.workers {
        let (client, done, leases, pickup, completed) = (
            targets.client(w)?,
            done.clone(),
            leases.clone(),
            pickup.clone(),
            completed.clone(),
        );
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
                leases.fetch_add(1, Ordering::Relaxed);
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
                if let Some(completed) = &completed {
                    completed.notify_one();
                }
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
    let pickup = pickup.lock().await.clone();
    Ok(Drained {
        pickup,
        leases: leases.load(Ordering::Relaxed),
    })
}

/// One job at a time to one idle long-polling worker: pickup latency without
/// queueing. Each job is submitted 2 ms after the worker completed the one
/// before, so a worker slower than the submissions (lease and completion are
/// two commits on PostgreSQL) cannot build a backlog and measure queueing.
/// The worker polls node 0 and the jobs are submitted to node `1 % N`: with
/// several nodes, every pickup crosses nodes (a PostgreSQL notification wakes
/// the worker).
async fn light_load(
    targets: &Targets,
    args: &BenchArgs,
    queue: &str,
    epoch: Instant,
) -> anyhow::Result<Pickup> {
    let completed = Arc::new(Notify::new());
    let mut worker = {
        let (targets, queue, completed) = (targets.clone(), queue.to_string(), completed.clone());
        let light = BenchArgs {
            workers: 1,
            batch: 1,
            ..args.clone()
        };
        let total = args.light_jobs;
        tokio::spawn(async move {
            let drained = drain(&targets, &light, &queue, total, epoch, Some(completed)).await?;
            Ok(drained.pickup)
        })
    };
    let client = targets.client(1)?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..args.light_jobs {
        let mut job = SubmitJob::new("noop", json!({ "t": epoch.elapsed().as_micros() as u64 }));
        job.queue = Some(queue.to_string());
        client.submit(&job).await?;
        tokio::select! {
            _ = completed.notified() => {}
            // The worker failed: its error is the one to report.
            ended = &mut worker => return ended?,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                bail!("light load: a job was not completed within 30 s")
            }
        }
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
    println!("store / nodes        {} / {}", r.store, r.nodes);
    println!("jobs per phase       {}", r.jobs);
    println!(
        "producers / workers  {} / {} (batch {})",
        r.producers, r.workers, r.batch
    );
    println!("enqueue              {:.0} jobs/s", r.enqueue_jobs_per_s);
    println!("submit latency       {}", lat(&r.submit_latency));
    println!(
        "enqueue, batched     {:.0} jobs/s ({} per request)",
        r.enqueue_batched_jobs_per_s, r.batch
    );
    println!(
        "burn-down            {:.0} jobs/s ({:.1} jobs per lease)",
        r.burn_down_jobs_per_s, r.burn_down_jobs_per_lease
    );
    println!(
        "continuous           {:.0} jobs/s ({:.1} jobs per lease)",
        r.continuous_jobs_per_s, r.continuous_jobs_per_lease
    );
    println!("pickup (continuous)  {}", lat(&r.continuous_pickup));
    println!(
        "  inside the server  {}",
        lat(&r.continuous_pickup_in_server)
    );
    println!("pickup (light load)  {}", lat(&r.light_pickup));
    println!("  inside the server  {}", lat(&r.light_pickup_in_server));
    let per_node = |values: &[f64]| {
        if values.len() < 2 {
            return String::new();
        }
        let each: Vec<String> = values.iter().map(|v| format!("{v:.1}")).collect();
        format!(" (sum of {} nodes: {} MiB)", values.len(), each.join(" + "))
    };
    println!(
        "server RSS idle      {}{}",
        mib(r.idle_rss_mib),
        per_node(&r.node_idle_rss_mib)
    );
    println!(
        "server RSS peak      {}{}",
        mib(r.peak_rss_mib),
        per_node(&r.node_peak_rss_mib)
    );
}
