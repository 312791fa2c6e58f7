//! Fault tests of a PostgreSQL cluster: real `taskwheel server` processes on
//! one real database, killed with SIGKILL and restarted; a real `taskwheel
//! worker` frozen with SIGSTOP past its deadline and resumed; a private
//! PostgreSQL restarted under load. Everything talks over loopback sockets.
//!
//! Each cluster test gets a fresh database `tw_fault_<pid>_<n>` on the server
//! at `TASKWHEEL_TEST_DATABASE_URL` (default [`DEFAULT_URL`]; the role must be
//! allowed to create databases), dropped when the test ends; databases left by
//! test processes that are gone are dropped by the next run. Without a
//! reachable server every test is skipped with one line on stderr, unless
//! `TASKWHEEL_REQUIRE_POSTGRES=1`, which turns that into a failure.
//!
//! The restart test never touches that shared server: it runs its own
//! PostgreSQL (`initdb` and `pg_ctl` from `/usr/lib/postgresql/<ver>/bin`, as
//! the `postgres` OS user), and is skipped with a message when it cannot.
//!
//! Tests take turns ([`SERIAL`]): each starts two or three servers, and the
//! machine may have two cores. When a test fails, its nodes' logs are kept and
//! their directory is printed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};
use sqlx_core::connection::Connection as _;
use sqlx_core::sql_str::AssertSqlSafe;
use sqlx_postgres::PgConnection;
use taskwheel_client::{Client, ClientError};
use taskwheel_core::firing::ScheduleId;
use taskwheel_core::recurring::{JobTemplate, ScheduleRequest};
use taskwheel_core::wire::{
    CompleteRequest, FailRequest, JobView, LeaseRequest, ListJobsQuery, SubmitJob,
};
use taskwheel_core::{
    AttemptOutcome, Backoff, DurationSpec, ErrorCode, JobId, JobState, LeaseToken, RetryPolicy,
};
use tokio::sync::OnceCell;

const DEFAULT_URL: &str = "postgres://taskwheel:taskwheel@127.0.0.1:5432/taskwheel_test";
const DB_PREFIX: &str = "tw_fault_";
const BIN: &str = env!("CARGO_BIN_EXE_taskwheel");
/// How long a node may take from spawn to a healthy `/healthz`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The shared PostgreSQL server, fresh databases, turns.

fn admin_url() -> String {
    std::env::var("TASKWHEEL_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

fn required() -> bool {
    std::env::var("TASKWHEEL_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// A URL without its password, for messages.
fn shown(raw: &str) -> String {
    match sqlx_core::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => raw.to_string(),
    }
}

/// One test at a time (see the module doc). A tokio mutex: it is held across
/// awaits, works from every test's runtime, and is not poisoned by a failure.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the shared server answers; decided once per test process.
async fn reachable() -> bool {
    static REACHABLE: OnceCell<bool> = OnceCell::const_new();
    *REACHABLE
        .get_or_init(|| async {
            match probe().await {
                Ok(()) => true,
                Err(e) if required() => panic!(
                    "PostgreSQL is required (TASKWHEEL_REQUIRE_POSTGRES=1) but cannot connect to {}: {e}",
                    shown(&admin_url())
                ),
                Err(e) => {
                    // Straight to stderr: libtest swallows eprintln! of a passing test.
                    let _ = writeln!(
                        std::io::stderr(),
                        "skipping PostgreSQL fault tests: cannot connect to {} ({e}) (set TASKWHEEL_TEST_DATABASE_URL)",
                        shown(&admin_url())
                    );
                    false
                }
            }
        })
        .await
}

/// Connects to the shared server, waiting out a full house for a while: a
/// server that refuses for lack of connection slots (other test runs) is
/// there, and skipping would hide the tests.
async fn admin_connection() -> Result<PgConnection, String> {
    let mut tries = 0;
    loop {
        tries += 1;
        let error =
            match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url()))
                .await
            {
                Err(_) => return Err("timed out".to_string()),
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => e,
            };
        let busy = matches!(&error, sqlx_core::Error::Database(db)
            if matches!(db.code().as_deref(), Some("53300" | "57P03")));
        if !busy || tries == 30 {
            return Err(error.to_string());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs one statement on the shared server (`CREATE`/`DROP DATABASE` cannot
/// run inside a transaction, so no pool, no transaction).
async fn admin_exec(sql: String) -> Result<(), String> {
    let mut conn = admin_connection().await?;
    let done = sqlx_core::query::query(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string());
    let _ = conn.close().await;
    done.map(drop)
}

/// Connects once, and drops the databases of earlier test processes that are gone.
async fn probe() -> Result<(), String> {
    let mut conn = admin_connection().await?;
    let names: Vec<String> = sqlx_core::query_scalar::query_scalar(
        "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)",
    )
    .bind(DB_PREFIX)
    .fetch_all(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    let _ = conn.close().await;
    for name in names {
        let pid = name[DB_PREFIX.len()..].split('_').next().unwrap_or("");
        let alive = pid.parse::<u32>().is_ok_and(|pid| {
            pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            admin_exec(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
        }
    }
    Ok(())
}

/// A database of its own for one test, dropped (with its connections) on drop.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{DB_PREFIX}{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // template0: nobody is ever connected to it, so creation cannot be
        // refused because "the source database is being accessed by other users".
        admin_exec(format!("CREATE DATABASE {name} TEMPLATE template0"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let mut url = sqlx_core::Url::parse(&admin_url()).expect("a database URL");
        url.set_path(&format!("/{name}"));
        Self {
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // A runtime of its own on a thread of its own: drop may run inside the
        // test's runtime, which must not be blocked on from within.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(admin_exec(sql))
        })
        .join();
        if let Ok(Err(e)) = dropped {
            let _ = writeln!(std::io::stderr(), "could not drop {}: {e}", self.name);
        }
    }
}

/// What a cluster test holds: its turn, a fresh database, a directory for logs.
struct Fixture {
    db: TestDb,
    logs: tempfile::TempDir,
    // Last: the turn passes on only after the database is gone.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Fixture {
    async fn node(&self, name: &str) -> Node {
        Node::start(name, &self.db.url, self.logs.path()).await
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.logs.disable_cleanup(true);
            let _ = writeln!(
                std::io::stderr(),
                "node logs kept in {}",
                self.logs.path().display()
            );
        }
    }
}

/// Waits for its turn, then makes a fresh database; `None` (skip) without PostgreSQL.
async fn fixture() -> Option<Fixture> {
    let turn = SERIAL.lock().await;
    if !reachable().await {
        return None;
    }
    Some(Fixture {
        db: TestDb::create().await,
        logs: tempfile::Builder::new()
            .prefix("tw-fault-logs-")
            .tempdir()
            .unwrap(),
        _turn: turn,
    })
}

// ---------------------------------------------------------------------------
// Processes.

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The last lines of a log file, for failure messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn signal(child: &Child, signal: Signal) {
    kill_process(Pid::from_child(child), signal).expect("send a signal");
}

/// The state letter of a process in /proc (`T` = stopped), if it exists.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ...`: comm may contain spaces and parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// One `taskwheel server` process on a fixed loopback port, so it can be
/// killed and restarted at the same address.
struct Node {
    name: String,
    addr: String,
    database_url: String,
    log: PathBuf,
    child: Option<Child>,
    client: Client,
}

impl Node {
    async fn start(name: &str, database_url: &str, logs: &Path) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut node = Self {
            name: name.to_string(),
            client: Client::new(&format!("http://{addr}")).unwrap(),
            addr,
            database_url: database_url.to_string(),
            log: logs.join(format!("node-{name}.log")),
            child: None,
        };
        node.restart().await;
        node
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} is running", self.name);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log");
        let child = Command::new(BIN)
            .args(["server", "--listen", &self.addr, "--database-url"])
            .arg(&self.database_url)
            .env("TASKWHEEL_LOG", "warn")
            // With scheduler shard leases, a dead node's timer work is taken
            // over after this; builds without them ignore the variable.
            .env("TASKWHEEL_SHARD_TTL", "2s")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start taskwheel server");
        self.child = Some(child);
    }

    async fn ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.client.health().await.is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "node {} exited with {status} while starting:\n{}",
                    self.name,
                    log_tail(&self.log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "node {} not healthy after {READY_TIMEOUT:?}:\n{}",
                self.name,
                log_tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn restart(&mut self) {
        self.spawn();
        self.ready().await;
    }

    /// SIGKILL: no shutdown hook runs; its connections die with it.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Any child process, SIGKILLed on drop (a stopped process dies too).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------
// Client helpers.

/// Calls until an answer that is not transient (no answer, 5xx), for up to
/// about 20 s; panics on anything else.
async fn patiently<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut last = None;
    for _ in 0..200 {
        match call().await {
            Ok(value) => return value,
            Err(e) if e.is_transient() => last = Some(e),
            Err(e) => panic!("{what}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: still failing: {last:?}")
}

/// Every job of `queue` (all pages), newest first.
async fn all_jobs(client: &Client, queue: &str) -> Vec<JobView> {
    let mut jobs = Vec::new();
    let mut query = ListJobsQuery {
        queue: Some(queue.into()),
        limit: Some(1000),
        ..ListJobsQuery::default()
    };
    loop {
        let page = patiently("list jobs", || client.list_jobs(&query)).await;
        jobs.extend(page.jobs);
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return jobs,
        }
    }
}

fn lease_request(
    queue: &str,
    worker: &str,
    max: u32,
    wait: Duration,
    lease: Duration,
) -> LeaseRequest {
    LeaseRequest {
        queues: vec![queue.into()],
        max,
        wait: Some(DurationSpec(wait)),
        worker: worker.into(),
        lease: Some(DurationSpec(lease)),
    }
}

fn no_backoff() -> RetryPolicy {
    RetryPolicy {
        backoff: Backoff::None,
        ..RetryPolicy::default()
    }
}

fn assert_lease_mismatch<T: std::fmt::Debug>(what: &str, answer: Result<T, ClientError>) {
    match answer {
        Err(ClientError::Api { status, error }) => assert_eq!(
            (status, error.code),
            (409, ErrorCode::LeaseMismatch),
            "{what}: {}",
            error.message
        ),
        other => panic!("{what}: expected 409 lease_mismatch, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// 1. kill -9 of a node under every-second schedules.

/// Twelve every-second schedules on three nodes (so that, with timer work
/// split between nodes by shard, the killed node almost surely owned some:
/// the measured resume gap shows it): one node is killed with SIGKILL, later
/// restarted; then the whole cluster is killed for 3.5 s and two nodes come
/// back. Every tick fires at most once, on the grid, never later than the
/// next tick (misfire `skip`), and `health` accounts for every tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_keeps_every_second_schedules_firing_each_tick_once() {
    const SCHEDULES: usize = 12;
    /// "Firing continues on the other nodes within a few seconds."
    const RESUME_BOUND: Duration = Duration::from_secs(8);
    let Some(fx) = fixture().await else {
        return;
    };
    let started = Instant::now();
    let mut nodes = vec![fx.node("a").await, fx.node("b").await, fx.node("c").await];

    // The first tick of each schedule: nothing before it may fire, and
    // everything from it on either fires or counts as missed.
    let mut first_tick: HashMap<ScheduleId, Timestamp> = HashMap::new();
    let mut names = Vec::new();
    for i in 0..SCHEDULES {
        let request = ScheduleRequest {
            name: Some(format!("tick-{i}")),
            every: Some(DurationSpec(Duration::from_secs(1))),
            job: Some(JobTemplate {
                kind: "tick".into(),
                queue: Some("ticks".into()),
                ..JobTemplate::default()
            }),
            ..ScheduleRequest::default()
        };
        let schedule = nodes[i % 3]
            .client
            .create_schedule(&request)
            .await
            .expect("create schedule");
        first_tick.insert(schedule.id, schedule.next_fire_at.expect("a first tick"));
        names.push(format!("tick-{i}"));
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    // One node dies. Every schedule must fire again, on the survivors.
    nodes[1].kill9();
    let killed_at = Timestamp::now();
    let wait_from = Instant::now();
    let resumed = loop {
        let jobs = all_jobs(&nodes[0].client, "ticks").await;
        let mut first_after: HashMap<ScheduleId, Timestamp> = HashMap::new();
        for job in jobs
            .iter()
            .filter(|j| j.fire_time.is_some_and(|t| t > killed_at))
        {
            let id = job.schedule_id.expect("a schedule's job");
            let at = first_after.entry(id).or_insert(job.created_at);
            *at = (*at).min(job.created_at);
        }
        if first_after.len() == SCHEDULES {
            break first_after;
        }
        assert!(
            wait_from.elapsed() < RESUME_BOUND,
            "{} of {SCHEDULES} schedules fired nothing in the {RESUME_BOUND:?} after a node was killed",
            SCHEDULES - first_after.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let resume_gap = resumed
        .values()
        .map(|at| Duration::try_from(at.duration_since(killed_at)).unwrap_or_default())
        .max()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // It comes back and rejoins.
    nodes[1].restart().await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;

    // The whole cluster dies; two nodes come back after 3.5 s.
    for node in &mut nodes {
        node.kill9();
    }
    let all_killed_at = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let restarting_at = Timestamp::now();
    nodes[0].spawn();
    nodes[2].spawn();
    nodes[0].ready().await;
    nodes[2].ready().await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    // Stop firing, so the jobs and the counters are read at one point.
    for name in &names {
        patiently("pause", || nodes[2].client.pause_schedule(name)).await;
    }
    let jobs = all_jobs(&nodes[0].client, "ticks").await;

    let mut pairs = HashSet::new();
    for job in &jobs {
        let key = (job.schedule_id, job.fire_time);
        assert!(pairs.insert(key), "tick fired twice: {key:?}");
    }
    let mut report = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let schedule = patiently("get schedule", || nodes[0].client.get_schedule(name)).await;
        let first = first_tick[&schedule.id];
        let mine: Vec<&JobView> = jobs
            .iter()
            .filter(|j| j.schedule_id == Some(schedule.id))
            .collect();
        let mut ticks: Vec<Timestamp> = mine.iter().map(|j| j.fire_time.unwrap()).collect();
        ticks.sort();
        for job in &mine {
            let tick = job.fire_time.unwrap();
            let offset = tick.as_microsecond() - first.as_microsecond();
            assert!(
                offset >= 0 && offset % 1_000_000 == 0,
                "{name}: tick {tick} is not on the grid from {first}"
            );
            // `skip` fires only the most recent due tick, so no job is made
            // for a tick once the next one is due: created < tick + 1 s.
            let late = job.created_at.duration_since(tick);
            assert!(
                late < jiff::SignedDuration::from_secs(1),
                "{name}: tick {tick} fired {late:?} late although a later tick was due (misfire skip)"
            );
        }
        let last = *ticks.last().expect("it fired");
        let grid = (last.as_microsecond() - first.as_microsecond()) / 1_000_000 + 1;
        let holes = grid as u64 - ticks.len() as u64;
        assert_eq!(
            schedule.health.fired,
            ticks.len() as u64,
            "{name}: health.fired counts the jobs"
        );
        assert_eq!(
            schedule.health.missed, holes,
            "{name}: every tick from the first one either fired or was counted missed"
        );
        let in_outage = ticks
            .iter()
            .filter(|t| **t > all_killed_at && **t < restarting_at)
            .count();
        assert!(
            in_outage <= 1,
            "{name}: misfire `skip` fires at most the latest tick missed while all nodes were down: {ticks:?}"
        );
        assert!(
            schedule.health.missed >= 2,
            "{name}: the ticks of a 3.5 s outage are counted missed: {:?}",
            schedule.health
        );
        assert!(
            ticks.iter().any(|t| *t > restarting_at),
            "{name}: firing resumed after the cluster restart"
        );
        if i < 3 {
            report.push(format!("{name}: fired {}, missed {holes}", ticks.len()));
        }
    }
    eprintln!(
        "{SCHEDULES} every-second schedules, {} ticks, duplicates 0; after kill -9 of one node every schedule fired again within {resume_gap:.1?}; {} ({:.1?} in all)",
        jobs.len(),
        report.join(", "),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 2. A stale worker is fenced.

/// The client-level case: a lease of 1 s taken through node A is never
/// heartbeated; once it expires, node B hands the job to another worker, and
/// every call with the old token, through either node, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_fenced_on_every_node() {
    let Some(fx) = fixture().await else {
        return;
    };
    let a = fx.node("a").await;
    let b = fx.node("b").await;
    let mut submit = SubmitJob::new("fenced", json!({"n": 1}));
    submit.queue = Some("fence".into());
    submit.retry = Some(no_backoff());
    let job = a.client.submit(&submit).await.unwrap();

    let second = Duration::from_secs(1);
    let stale = a
        .client
        .lease(&lease_request("fence", "stale", 1, second, second))
        .await
        .unwrap()
        .jobs
        .pop()
        .expect("leased");
    assert_eq!(stale.job.id, job.id);
    let token = stale.lease_token;

    // No heartbeat: after about a second the job is someone else's.
    let expired_wait = Instant::now();
    let fresh = b
        .client
        .lease(&lease_request(
            "fence",
            "fresh",
            1,
            Duration::from_secs(10),
            Duration::from_secs(30),
        ))
        .await
        .unwrap()
        .jobs
        .pop()
        .expect("re-leased through node B after the lease expired");
    let relet_after = expired_wait.elapsed();
    assert_eq!((fresh.job.id, fresh.job.attempt), (job.id, 2));

    for node in [&a, &b] {
        assert_lease_mismatch(
            &format!("stale heartbeat via {}", node.name),
            node.client.heartbeat(job.id, token).await,
        );
        let complete = CompleteRequest {
            lease_token: token,
            result: Some(json!({"by": "stale"})),
        };
        assert_lease_mismatch(
            &format!("stale complete via {}", node.name),
            node.client.complete(job.id, &complete).await,
        );
        let fail = FailRequest {
            lease_token: token,
            error: "stale".into(),
            retry: true,
            retry_after: None,
            cancel: false,
        };
        assert_lease_mismatch(
            &format!("stale fail via {}", node.name),
            node.client.fail(job.id, &fail).await,
        );
    }
    let during = a.client.get_job(job.id).await.unwrap();
    assert_eq!(during.state, JobState::Running);
    assert_eq!(during.lease.map(|l| l.worker).as_deref(), Some("fresh"));

    b.client.heartbeat(job.id, fresh.lease_token).await.unwrap();
    let done = a
        .client
        .complete(
            job.id,
            &CompleteRequest {
                lease_token: fresh.lease_token,
                result: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_lease_mismatch(
        "stale complete after the end",
        b.client
            .complete(
                job.id,
                &CompleteRequest {
                    lease_token: token,
                    result: None,
                },
            )
            .await,
    );
    let end = b.client.get_job(job.id).await.unwrap();
    let attempts: Vec<(&str, AttemptOutcome)> = end
        .attempts
        .iter()
        .map(|a| (a.worker.as_str(), a.outcome))
        .collect();
    assert_eq!(
        attempts,
        vec![
            ("stale", AttemptOutcome::LeaseExpired),
            ("fresh", AttemptOutcome::Succeeded)
        ]
    );
    assert_eq!(end.state, JobState::Succeeded);
    eprintln!(
        "a 1 s lease was re-let on the other node after {relet_after:.1?}; 7 stale calls refused with 409"
    );
}

/// One HTTP exchange seen by [`RecordingProxy`].
#[derive(Debug, Clone)]
struct Exchange {
    method: String,
    path: String,
    status: u16,
    body: Value,
    at: Instant,
}

/// A pass-through HTTP proxy in front of a node that records every exchange:
/// how the test learns a real worker process's lease token and sees what the
/// server answered its reports.
struct RecordingProxy {
    url: String,
    log: Arc<Mutex<Vec<Exchange>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingProxy {
    async fn start(target: String) -> Self {
        use axum::http::{Method, StatusCode, Uri, header};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<Exchange>>> = Arc::default();
        let http = reqwest::Client::new();
        let recorder = Arc::clone(&log);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, body: axum::body::Bytes| {
                let (log, http, target) = (Arc::clone(&recorder), http.clone(), target.clone());
                async move {
                    let path = uri
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default();
                    let answer = http
                        .request(method.clone(), format!("{target}{path}"))
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(body.to_vec())
                        .send()
                        .await;
                    let (status, bytes) = match answer {
                        Ok(r) => (r.status().as_u16(), r.bytes().await.unwrap_or_default()),
                        Err(_) => (502, axum::body::Bytes::new()),
                    };
                    log.lock().unwrap().push(Exchange {
                        method: method.to_string(),
                        path,
                        status,
                        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        at: Instant::now(),
                    });
                    (
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                        [(header::CONTENT_TYPE, "application/json")],
                        bytes,
                    )
                }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, log, task }
    }

    fn exchanges(&self) -> Vec<Exchange> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The real thing: a `taskwheel worker` process (reaching node A through a
/// recording proxy) runs a `command` job with a 5 s timeout, which bounds its
/// lease (the CLI worker has no lease flag; its lease is 30 s). The test
/// freezes it with SIGSTOP as soon as the program has started; the server
/// ends the attempt at the deadline (`timed_out`) and node B hands the job to
/// another worker. The stale token is refused for heartbeat, complete and
/// fail; then SIGCONT: the worker's own report is refused with 409
/// `lease_mismatch` too, and the job ends succeeded once, by the new worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_frozen_with_sigstop_past_its_deadline_is_fenced_after_sigcont() {
    let Some(fx) = fixture().await else {
        return;
    };
    let a = fx.node("a").await;
    let b = fx.node("b").await;
    let proxy = RecordingProxy::start(a.url()).await;
    let worker_log = fx.logs.path().join("worker.log");
    let worker = Reaped(
        Command::new(BIN)
            .args(["worker", "--server", &proxy.url, "--queues", "frozen"])
            .args([
                "--allow-command",
                "--worker-id",
                "frozen-worker",
                "--concurrency",
                "1",
            ])
            .env("TASKWHEEL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&worker_log).unwrap())
            .spawn()
            .expect("start taskwheel worker"),
    );
    let worker_pid = worker.0.id();

    // The program says when it runs, so the freeze lands while it does.
    let marker = fx.logs.path().join("started");
    let mut submit = SubmitJob::new(
        "command",
        json!({"program": "/bin/sh", "args": ["-c", format!("touch '{}'; sleep 1", marker.display())]}),
    );
    submit.queue = Some("frozen".into());
    submit.timeout = Some(DurationSpec(Duration::from_secs(5)));
    submit.retry = Some(no_backoff());
    let job = a.client.submit(&submit).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "the worker never started the job:\n{}",
            log_tail(&worker_log)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(&worker.0, Signal::STOP);
    let frozen_at = Instant::now();
    let token: LeaseToken = proxy
        .exchanges()
        .iter()
        .filter(|x| x.path == "/api/v1/lease" && x.status == 200)
        .flat_map(|x| x.body["jobs"].as_array().cloned().unwrap_or_default())
        .find(|j| j["id"] == json!(job.id))
        .map(|j| serde_json::from_value(j["lease_token"].clone()).unwrap())
        .expect("the worker's lease went through the proxy");

    // Past the deadline, node B gives the job to another worker.
    let fresh = b
        .client
        .lease(&lease_request(
            "frozen",
            "fresh-worker",
            1,
            Duration::from_secs(15),
            Duration::from_secs(30),
        ))
        .await
        .unwrap()
        .jobs
        .pop()
        .expect("re-leased through node B after the frozen worker's deadline");
    let relet_after = frozen_at.elapsed();
    assert_eq!((fresh.job.id, fresh.job.attempt), (job.id, 2));
    assert_eq!(
        process_state(worker_pid),
        Some('T'),
        "the worker is still stopped"
    );

    // The stale token, through node A (where the worker leased) and node B.
    assert_lease_mismatch("stale heartbeat", a.client.heartbeat(job.id, token).await);
    assert_lease_mismatch(
        "stale complete",
        a.client
            .complete(
                job.id,
                &CompleteRequest {
                    lease_token: token,
                    result: None,
                },
            )
            .await,
    );
    assert_lease_mismatch(
        "stale fail",
        b.client
            .fail(
                job.id,
                &FailRequest {
                    lease_token: token,
                    error: "stale".into(),
                    retry: false,
                    retry_after: None,
                    cancel: false,
                },
            )
            .await,
    );

    // Thaw: the worker finds its program done (or its timeout passed) and reports.
    signal(&worker.0, Signal::CONT);
    let resumed_at = Instant::now();
    let report_path = |x: &Exchange| {
        x.method == "POST"
            && x.path.starts_with(&format!("/api/v1/jobs/{}/", job.id))
            && x.at > resumed_at
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let report = loop {
        if let Some(x) = proxy.exchanges().into_iter().find(|x| report_path(x)) {
            break x;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed worker never reported:\n{}",
            log_tail(&worker_log)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        (report.status, report.body["error"]["code"].as_str()),
        (409, Some("lease_mismatch")),
        "the resumed worker's {} {} was answered {} {}",
        report.method,
        report.path,
        report.status,
        report.body
    );
    let during = b.client.get_job(job.id).await.unwrap();
    assert_eq!(during.state, JobState::Running);
    assert_eq!(
        during.lease.map(|l| l.worker).as_deref(),
        Some("fresh-worker"),
        "the stale report changed nothing"
    );

    let done = a
        .client
        .complete(
            job.id,
            &CompleteRequest {
                lease_token: fresh.lease_token,
                result: Some(json!({"by": "fresh-worker"})),
            },
        )
        .await
        .expect("the new worker completes");
    assert_eq!(done.state, JobState::Succeeded);
    // Give the thawed worker time to try anything else it would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reports: Vec<(String, u16)> = proxy
        .exchanges()
        .into_iter()
        .filter(|x| report_path(x))
        .map(|x| (x.path, x.status))
        .collect();
    assert_eq!(
        reports.len(),
        1,
        "one report from the thawed worker: {reports:?}"
    );

    let end = a.client.get_job(job.id).await.unwrap();
    assert_eq!(end.state, JobState::Succeeded);
    let attempts: Vec<(&str, AttemptOutcome)> = end
        .attempts
        .iter()
        .map(|a| (a.worker.as_str(), a.outcome))
        .collect();
    assert_eq!(
        attempts,
        vec![
            ("frozen-worker", AttemptOutcome::TimedOut),
            ("fresh-worker", AttemptOutcome::Succeeded)
        ]
    );
    assert_eq!(end.attempts[1].result, Some(json!({"by": "fresh-worker"})));
    eprintln!(
        "worker frozen {relet_after:.1?} until re-leased on the other node; after SIGCONT its {} got 409 lease_mismatch; succeeded once",
        report.path.rsplit('/').next().unwrap_or_default()
    );
}

// ---------------------------------------------------------------------------
// 3. PostgreSQL restarted under load (a private instance).

/// A PostgreSQL server of this test's own, in a temporary directory, run as
/// the `postgres` OS user (the server refuses to run as root).
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Through `runuser -u postgres` (we are root), or directly (we are postgres).
    runuser: bool,
}

impl PrivatePostgres {
    /// Initialises and starts it, or says why it cannot.
    fn start() -> Result<Self, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|_| "no /usr/lib/postgresql".to_string())?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .max()
            .map(|(_, bin)| bin)
            .ok_or("no PostgreSQL server binaries in /usr/lib/postgresql/<version>/bin")?;
        let id = |flag: &str| -> Result<u32, String> {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .map_err(|e| format!("id: {e}"))?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|_| "no `postgres` OS user".to_string())
        };
        let (uid, gid) = (id("-u")?, id("-g")?);
        let me = rustix::process::geteuid();
        let runuser = if me.is_root() {
            true
        } else if me.as_raw() == uid {
            false
        } else {
            return Err(
                "neither root nor the `postgres` user, so cannot run PostgreSQL as `postgres`"
                    .into(),
            );
        };
        let dir = tempfile::Builder::new()
            .prefix("tw-fault-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        let pg = Self {
            dir,
            bin,
            port: free_port(),
            runuser,
        };
        let data = pg.data();
        let initdb = ["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"];
        finished(
            "initdb",
            pg.command("initdb")
                .args(["-D", &data])
                .args(initdb)
                .args(["--no-sync"])
                .output(),
        )?;
        finished("pg_ctl start", pg.ctl("start").output())?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.runuser {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.stdin(Stdio::null());
        command
    }

    /// `pg_ctl <action>` (`start`, `stop`, `restart`), waiting for it to take
    /// effect; a stop is `-m fast`: sessions are disconnected, the server
    /// shuts down cleanly.
    fn ctl(&self, action: &str) -> Command {
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {}",
            self.port,
            self.dir.path().display()
        );
        let mut command = self.command("pg_ctl");
        // Always `-l`: without it the server would inherit pg_ctl's output
        // pipes, and reading them to their end would wait for the server to exit.
        command
            .args(["-D", &self.data(), "-l", &log.display().to_string()])
            .args(["-o", &options, "-m", "fast", "-w", "-t", "60", action]);
        command
    }

    async fn control(&self, action: &str) -> Result<(), String> {
        let mut command = tokio::process::Command::from(self.ctl(action));
        command.kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(90), command.output())
            .await
            .map_err(|_| format!("pg_ctl {action} did not return in 90 s"))?;
        finished(&format!("pg_ctl {action}"), out)
    }
}

/// The output of a finished program as a result.
fn finished(what: &str, out: std::io::Result<std::process::Output>) -> Result<(), String> {
    let out = out.map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// What the producers saw.
#[derive(Default)]
struct Submissions {
    /// Idempotency key → the job answered 201, when, and through which node.
    accepted: HashMap<String, (JobId, Instant, usize)>,
    /// Keys whose submission got no 201 (outcome unknown until asked again).
    unanswered: Vec<String>,
    /// When each 503 `unavailable` came.
    unavailable: Vec<Instant>,
    /// Failures other than 503 `unavailable`.
    other: Vec<String>,
}

/// When the test did what to PostgreSQL.
struct Timeline {
    restart_began: Instant,
    restarted: Instant,
    stopping: Instant,
    started_again: Instant,
}

/// Two nodes on a private PostgreSQL, four producers submitting without
/// pause; first `pg_ctl restart -m fast`, then a longer outage (stop, 6 s
/// down, longer than a node's 5 s wait for a connection, start). Every job
/// answered 201 must be there afterwards, whole; every failure must be a 503;
/// a submission that got a 503 is asked again with its idempotency key and
/// ends as exactly one job; both nodes serve again without being touched,
/// including cross-node wake-ups through their restored LISTEN connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_load_loses_no_accepted_job() {
    const PRODUCERS: usize = 4;
    const MAX_PER_PRODUCER: usize = 5_000;
    const OUTAGE: Duration = Duration::from_secs(6);
    let turn = SERIAL.lock().await;
    let pg = match tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap()
    {
        Ok(pg) => pg,
        Err(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "skipping the PostgreSQL restart test: cannot run a private PostgreSQL: {why}"
            );
            return;
        }
    };
    let mut logs = tempfile::Builder::new()
        .prefix("tw-fault-logs-")
        .tempdir()
        .unwrap();
    let nodes = [
        Node::start("a", &pg.url(), logs.path()).await,
        Node::start("b", &pg.url(), logs.path()).await,
    ];
    let clients: Vec<Client> = nodes.iter().map(|n| n.client.clone()).collect();

    let tally = Arc::new(Mutex::new(Submissions::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (tally, stop, clients) = (Arc::clone(&tally), Arc::clone(&stop), clients.clone());
        producers.push(tokio::spawn(async move {
            for n in 0..MAX_PER_PRODUCER {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("p{p}-{n}");
                let mut submit = SubmitJob::new("load", json!({"key": key}));
                submit.queue = Some("load".into());
                submit.idempotency_key = Some(key.clone());
                let node = (p + n) % 2;
                let answer = clients[node].submit(&submit).await;
                let now = Instant::now();
                {
                    let mut t = tally.lock().unwrap();
                    match answer {
                        Ok(job) if job.deduplicated != Some(true) => {
                            t.accepted.insert(key, (job.id, now, node));
                            continue;
                        }
                        Ok(job) => t.other.push(format!(
                            "{key}: a fresh key answered as a duplicate of {}",
                            job.id
                        )),
                        Err(e) if e.code() == Some(ErrorCode::Unavailable) => {
                            t.unavailable.push(now)
                        }
                        Err(e) => t.other.push(format!("{key}: {e}")),
                    }
                    t.unanswered.push(key);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let restart_began = Instant::now();
    pg.control("restart").await.expect("pg_ctl restart");
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let stopping = Instant::now();
    pg.control("stop").await.expect("pg_ctl stop");
    tokio::time::sleep(OUTAGE).await;
    pg.control("start").await.expect("pg_ctl start");
    let started_again = Instant::now();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.unwrap();
    }
    let when = Timeline {
        restart_began,
        restarted,
        stopping,
        started_again,
    };

    // Each node serves again by itself.
    for node in &nodes {
        let mut probe = SubmitJob::new("probe", json!(null));
        probe.queue = Some("probe".into());
        patiently(
            &format!("submit through node {} after the outage", node.name),
            || node.client.submit(&probe),
        )
        .await;
    }
    // And hears the other through LISTEN again: a long poll on B, a submit on A.
    let waiting = {
        let b = clients[1].clone();
        tokio::spawn(async move {
            let asked = Instant::now();
            let leased = b
                .lease(&lease_request(
                    "wake",
                    "waiter",
                    1,
                    Duration::from_secs(20),
                    Duration::from_secs(30),
                ))
                .await;
            (leased, asked.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut wake = SubmitJob::new("wake", json!(null));
    wake.queue = Some("wake".into());
    let woken_job = patiently("submit the wake-up job", || clients[0].submit(&wake)).await;
    let (leased, waited) = waiting.await.unwrap();
    let leased = leased.expect("lease on B");
    assert_eq!(
        leased.jobs.first().map(|j| j.job.id),
        Some(woken_job.id),
        "a long poll on B is answered with the job submitted on A"
    );

    let t = std::mem::take(&mut *tally.lock().unwrap());
    assert!(
        t.other.is_empty(),
        "every failure is a 503 `unavailable`; also got {} others, e.g. {:?}",
        t.other.len(),
        &t.other[..t.other.len().min(5)]
    );
    let accepted_between = |from: Instant, to: Instant| {
        t.accepted
            .values()
            .filter(|(_, at, _)| *at > from && *at < to)
            .count()
    };
    let after_restart = accepted_between(when.restarted, when.stopping);
    assert!(after_restart > 0, "submissions succeed after the restart");
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            t.accepted
                .values()
                .any(|(_, at, n)| *n == i && *at > when.started_again),
            "node {} accepts submissions again after the outage, by itself",
            node.name
        );
    }
    let recovered = t
        .accepted
        .values()
        .filter(|(_, at, _)| *at > when.started_again)
        .map(|(_, at, _)| *at - when.started_again)
        .min()
        .unwrap_or_default();
    let late_503 = t
        .unavailable
        .iter()
        .filter(|at| **at > when.started_again + Duration::from_secs(1))
        .count();
    assert_eq!(
        late_503, 0,
        "no 503 more than a second after PostgreSQL is back"
    );

    // An unanswered submission, asked again with its key: it either had been
    // applied (the same job, deduplicated) or not (created now), never twice.
    let mut resolved: HashMap<String, JobId> = HashMap::new();
    let mut applied = 0;
    for (i, key) in t.unanswered.iter().enumerate() {
        let mut submit = SubmitJob::new("load", json!({"key": key}));
        submit.queue = Some("load".into());
        submit.idempotency_key = Some(key.clone());
        let client = &clients[i % 2];
        let job = patiently("submit again", || client.submit(&submit)).await;
        if job.deduplicated == Some(true) {
            applied += 1;
        }
        resolved.insert(key.clone(), job.id);
    }

    let jobs = all_jobs(&clients[1], "load").await;
    let mut by_key: HashMap<String, &JobView> = HashMap::new();
    for job in &jobs {
        let key = job
            .idempotency_key
            .clone()
            .expect("every load job has a key");
        assert_eq!(
            job.payload,
            json!({"key": key}),
            "job {} is whole: its payload matches its key",
            job.id
        );
        assert_eq!(
            (
                job.kind.as_str(),
                job.state,
                job.attempt,
                job.lease.is_none()
            ),
            ("load", JobState::Available, 0, true),
            "job {} is in a valid, untouched state",
            job.id
        );
        assert!(
            by_key.insert(key.clone(), job).is_none(),
            "one job per key: {key}"
        );
    }
    for (key, (id, _, _)) in &t.accepted {
        assert_eq!(
            by_key.get(key).map(|j| j.id),
            Some(*id),
            "the job answered 201 for {key} is still there"
        );
    }
    for (key, id) in &resolved {
        assert_eq!(by_key.get(key).map(|j| j.id), Some(*id));
    }
    assert_eq!(
        jobs.len(),
        t.accepted.len() + resolved.len(),
        "no job exists that was never answered"
    );
    let in_window = |from: Instant, to: Instant| {
        t.unavailable
            .iter()
            .filter(|at| **at >= from && **at <= to)
            .count()
    };
    eprintln!(
        "submitted {} (201: {}, {after_restart} between the restart and the outage); \
         pg_ctl restart took {:.1?} and drew {} 503s; the {OUTAGE:?} outage drew {} 503s, first 201 {recovered:.1?} after PostgreSQL was back; \
         unanswered then asked again: {} ({applied} had been applied); a long poll on B woken by a submit on A after {waited:.1?}",
        t.accepted.len() + t.unanswered.len(),
        t.accepted.len(),
        when.restarted - when.restart_began,
        in_window(when.restart_began, when.stopping),
        in_window(when.stopping, when.started_again + Duration::from_secs(60)),
        t.unanswered.len(),
    );
    assert!(
        waited < Duration::from_secs(5),
        "B was woken through LISTEN/NOTIFY, not by its wait running out ({waited:?})"
    );
    logs.disable_cleanup(std::thread::panicking());
    drop(nodes);
    drop(pg);
    drop(turn);
}

// ---------------------------------------------------------------------------
// 4. One idempotency key, many concurrent submissions, two nodes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_with_one_key_on_two_nodes_make_one_job() {
    const CONCURRENT: usize = 50;
    const ROUNDS: usize = 4;
    let Some(fx) = fixture().await else {
        return;
    };
    let nodes = [fx.node("a").await, fx.node("b").await];
    for round in 0..ROUNDS {
        let key = format!("same-key-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(CONCURRENT));
        let mut tasks = Vec::new();
        for i in 0..CONCURRENT {
            let client = nodes[i % 2].client.clone();
            let barrier = Arc::clone(&barrier);
            let mut submit = SubmitJob::new("once", json!({"round": round}));
            submit.queue = Some("once".into());
            submit.idempotency_key = Some(key.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                client.submit(&submit).await
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap().unwrap_or_else(|e| panic!("{key}: {e}")));
        }
        let ids: BTreeSet<JobId> = answers.iter().map(|j| j.id).collect();
        assert_eq!(
            ids.len(),
            1,
            "{key}: every answer carries the one job's id: {ids:?}"
        );
        let created = answers
            .iter()
            .filter(|j| j.deduplicated != Some(true))
            .count();
        assert_eq!(
            created, 1,
            "{key}: exactly one answer created the job (201), the others are `deduplicated` (200)"
        );
    }
    let jobs = all_jobs(&nodes[1].client, "once").await;
    let keys: BTreeSet<_> = jobs
        .iter()
        .filter_map(|j| j.idempotency_key.clone())
        .collect();
    assert_eq!(
        (jobs.len(), keys.len()),
        (ROUNDS, ROUNDS),
        "one job per key"
    );
    eprintln!("{ROUNDS} rounds of {CONCURRENT} concurrent submissions over 2 nodes: one job each");
}

// ---------------------------------------------------------------------------
// 5. Chaos.

/// A chaos completion refused with 409 `lease_mismatch`, and whose lease it was.
#[derive(Debug, Clone)]
struct Refusal {
    id: JobId,
    worker: String,
    started_at: Option<Timestamp>,
    /// An earlier try of the same completion got no answer.
    unanswered: bool,
}

/// What the chaos run's producers and workers saw.
#[derive(Default)]
struct Chaos {
    /// Idempotency key → the job id every answer for it carried.
    accepted: Mutex<HashMap<String, JobId>>,
    /// The side effect: runs per job id (recording it is idempotent).
    executions: Mutex<HashMap<JobId, u32>>,
    /// Completions answered 200, per job id.
    completed: Mutex<HashMap<JobId, u32>>,
    leased: AtomicU64,
    submit_retries: AtomicU64,
    /// Completions refused with 409 `lease_mismatch`: (job, worker, lease
    /// start, whether an earlier try went unanswered). Unanswered first: it
    /// had been applied, or the lease ran out meanwhile; answered at once:
    /// the lease had run out.
    refused: Mutex<Vec<Refusal>>,
    stop: AtomicBool,
}

impl Chaos {
    fn random(clients: &[Client]) -> &Client {
        &clients[fastrand::usize(..clients.len())]
    }

    async fn produce(&self, clients: &[Client], keys: Vec<(usize, Instant)>) {
        for (n, due) in keys {
            tokio::time::sleep_until(due.into()).await;
            let key = format!("chaos-{n}");
            let mut submit = SubmitJob::new("chaos", json!({"n": n}));
            submit.queue = Some("chaos".into());
            submit.idempotency_key = Some(key.clone());
            let mut tries = 0;
            let job = loop {
                tries += 1;
                match Self::random(clients).submit(&submit).await {
                    Ok(job) => break job,
                    Err(e) if e.is_transient() && tries < 200 => {
                        self.submit_retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("submit {key}: {e}"),
                }
            };
            let mut accepted = self.accepted.lock().unwrap();
            let id = *accepted.entry(key.clone()).or_insert(job.id);
            assert_eq!(id, job.id, "{key}: one key, one job");
        }
    }

    async fn work(&self, clients: &[Client], worker: String) {
        let request = lease_request(
            "chaos",
            &worker,
            5,
            Duration::from_millis(500),
            Duration::from_secs(2),
        );
        while !self.stop.load(Ordering::Relaxed) {
            let leased = match Self::random(clients).lease(&request).await {
                Ok(answer) => answer.jobs,
                Err(e) if e.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => panic!("lease: {e}"),
            };
            for job in leased {
                self.leased.fetch_add(1, Ordering::Relaxed);
                *self
                    .executions
                    .lock()
                    .unwrap()
                    .entry(job.job.id)
                    .or_default() += 1;
                let lease = Refusal {
                    id: job.job.id,
                    worker: worker.clone(),
                    started_at: job.job.lease.as_ref().map(|l| l.started_at),
                    unanswered: false,
                };
                self.complete(clients, job.job.id, job.lease_token, lease)
                    .await;
            }
        }
    }

    /// Completes, sending again to another node when no answer came; gives up
    /// after a while (the lease then runs out and the job runs again).
    async fn complete(&self, clients: &[Client], id: JobId, token: LeaseToken, lease: Refusal) {
        let request = CompleteRequest {
            lease_token: token,
            result: Some(json!({"done": true})),
        };
        let mut unanswered = false;
        for _ in 0..40 {
            match Self::random(clients).complete(id, &request).await {
                Ok(outcome) => {
                    assert_eq!(outcome.state, JobState::Succeeded);
                    *self.completed.lock().unwrap().entry(id).or_default() += 1;
                    return;
                }
                Err(e) if e.is_lease_mismatch() => {
                    self.refused.lock().unwrap().push(Refusal {
                        unanswered,
                        ..lease
                    });
                    return;
                }
                Err(e) if e.is_transient() => {
                    unanswered = true;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("complete {id}: {e}"),
            }
        }
    }
}

/// Three nodes, 2,000 jobs submitted over ~10 s by eight producers through
/// random nodes, twelve worker loops leasing (up to 5 jobs, 2 s leases) from
/// random nodes and completing through
/// random nodes, and a node killed with SIGKILL and restarted every 1-1.8 s
/// until the work is done (at most ten times). Answers lost with a node are
/// resolved the way a real client would: a submission is sent again with its
/// idempotency key, a completion again with its lease token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_9_and_restarts_lose_no_job_and_complete_each_once() {
    const JOBS: usize = 2_000;
    const PRODUCERS: usize = 8;
    const WORKERS: usize = 12;
    const SUBMIT_SPAN: Duration = Duration::from_secs(10);
    const MAX_KILLS: u32 = 10;
    /// A hang, not slowness: nothing submitted or run for this long.
    const STALL_LIMIT: Duration = Duration::from_secs(15);
    const RUN_LIMIT: Duration = Duration::from_secs(90);
    let Some(fx) = fixture().await else {
        return;
    };
    let mut nodes = [fx.node("a").await, fx.node("b").await, fx.node("c").await];
    let clients: Arc<Vec<Client>> = Arc::new(nodes.iter().map(|n| n.client.clone()).collect());
    let chaos = Arc::new(Chaos::default());
    let started = Instant::now();

    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let keys: Vec<(usize, Instant)> = (p..JOBS)
            .step_by(PRODUCERS)
            .map(|n| (n, started + SUBMIT_SPAN.mul_f64(n as f64 / JOBS as f64)))
            .collect();
        let (chaos, clients) = (Arc::clone(&chaos), Arc::clone(&clients));
        tasks.push(tokio::spawn(
            async move { chaos.produce(&clients, keys).await },
        ));
    }
    let mut producers = std::mem::take(&mut tasks);
    for w in 0..WORKERS {
        let (chaos, clients) = (Arc::clone(&chaos), Arc::clone(&clients));
        tasks.push(tokio::spawn(async move {
            chaos.work(&clients, format!("chaos-w{w}")).await
        }));
    }

    // Kill and restart until every job is done.
    let mut kills = 0u32;
    let mut submitted_after = None;
    let mut restarting = Duration::ZERO;
    let mut next_kill = Instant::now() + Duration::from_millis(fastrand::u64(1_000..1_800));
    // (accepted, executed), and when it last changed: the shared server may
    // be slow (other tests), so the bound is on a lack of progress.
    let mut progress = ((0, 0), Instant::now());
    loop {
        let now = (
            chaos.accepted.lock().unwrap().len(),
            chaos.executions.lock().unwrap().len(),
        );
        if now != progress.0 {
            progress = (now, Instant::now());
        }
        assert!(
            progress.1.elapsed() < STALL_LIMIT && started.elapsed() < RUN_LIMIT,
            "no progress for {STALL_LIMIT:?} or not done after {RUN_LIMIT:?}: accepted {}, executed {}",
            now.0,
            now.1
        );
        if kills < MAX_KILLS && Instant::now() >= next_kill {
            let victim = fastrand::usize(..nodes.len());
            nodes[victim].kill9();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(fastrand::u64(200..600))).await;
            let restart = Instant::now();
            nodes[victim].restart().await;
            restarting += restart.elapsed();
            next_kill = Instant::now() + Duration::from_millis(fastrand::u64(1_000..1_800));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let submitted = producers.iter().all(|p| p.is_finished());
        if submitted && submitted_after.is_none() {
            submitted_after = Some(started.elapsed());
            if now.0 < JOBS {
                // A producer gave up: let its panic tell why.
                for p in std::mem::take(&mut producers) {
                    p.await.unwrap();
                }
            }
        }
        let executed = chaos.executions.lock().unwrap().len();
        if submitted && executed == JOBS {
            let jobs = all_jobs(Chaos::random(&clients), "chaos").await;
            if jobs.len() == JOBS && jobs.iter().all(|j| j.state == JobState::Succeeded) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    let run_time = started.elapsed();
    chaos.stop.store(true, Ordering::Relaxed);
    for task in producers.into_iter().chain(tasks) {
        task.await.unwrap();
    }

    let jobs = all_jobs(&clients[0], "chaos").await;
    let accepted = chaos.accepted.lock().unwrap().clone();
    let accepted_ids: HashSet<JobId> = accepted.values().copied().collect();
    let stored: HashSet<JobId> = jobs.iter().map(|j| j.id).collect();
    assert_eq!(accepted.len(), JOBS);
    assert_eq!(accepted_ids.len(), JOBS, "one job per key");
    assert_eq!(
        stored, accepted_ids,
        "the stored jobs are exactly the accepted ones"
    );
    let succeeded = jobs
        .iter()
        .filter(|j| j.state == JobState::Succeeded)
        .count();
    let state: HashMap<JobId, JobState> = jobs.iter().map(|j| (j.id, j.state)).collect();
    let lost = accepted_ids
        .iter()
        .filter(|id| state.get(id) != Some(&JobState::Succeeded))
        .count();
    let completed = chaos.completed.lock().unwrap().clone();
    let duplicates = completed.values().filter(|&&n| n > 1).count();
    let executions = chaos.executions.lock().unwrap().clone();
    let re_executed = executions.values().filter(|&&n| n > 1).count();
    assert!(
        accepted_ids.iter().all(|id| executions.contains_key(id)),
        "the side effect ran for every job"
    );

    // Attempts from the store, eight readers at once.
    let ids: Vec<JobId> = accepted_ids.iter().copied().collect();
    let mut readers = Vec::new();
    for chunk in ids.chunks(JOBS.div_ceil(8)) {
        let (chunk, client) = (chunk.to_vec(), clients[readers.len() % 3].clone());
        readers.push(tokio::spawn(async move {
            let mut found = Vec::new();
            for id in chunk {
                found.push(patiently("get job", || client.get_job(id)).await);
            }
            found
        }));
    }
    let mut stored_jobs: HashMap<JobId, JobView> = HashMap::new();
    for reader in readers {
        for job in reader.await.unwrap() {
            stored_jobs.insert(job.id, job);
        }
    }
    let mut attempts = 0;
    for job in stored_jobs.values() {
        attempts += job.attempts.len();
        // Attempts 1..=n: every one but the last lost its lease (the workers
        // never fail a job), the last succeeded.
        let numbers: Vec<u32> = job.attempts.iter().map(|a| a.number).collect();
        let outcomes: Vec<AttemptOutcome> = job.attempts.iter().map(|a| a.outcome).collect();
        let n = job.attempts.len();
        let mut expected = vec![AttemptOutcome::LeaseExpired; n.saturating_sub(1)];
        expected.push(AttemptOutcome::Succeeded);
        assert_eq!(
            (numbers, outcomes),
            ((1..=n as u32).collect::<Vec<_>>(), expected),
            "job {}: {:?}",
            job.id,
            job.attempts
        );
        assert_eq!(job.attempt as usize, n, "job {}: attempts counted", job.id);
    }
    // Each refused completion: its lease really was over, or (its answer
    // lost) its own earlier try had been applied.
    let refused = chaos.refused.lock().unwrap().clone();
    let mut applied_unanswered = 0;
    for r in &refused {
        let job = &stored_jobs[&r.id];
        // Compared in µs, the store's precision: a lease answer carries the
        // clock's nanoseconds, the attempt read back later does not.
        let Some(attempt) = job.attempts.iter().find(|a| {
            a.worker == r.worker
                && Some(a.started_at.as_microsecond())
                    == r.started_at.map(Timestamp::as_microsecond)
        }) else {
            panic!(
                "job {}: no attempt of the refused lease {r:?}: {:?}",
                r.id, job.attempts
            );
        };
        match (attempt.outcome, r.unanswered) {
            (AttemptOutcome::LeaseExpired, _) => {}
            (AttemptOutcome::Succeeded, true) => applied_unanswered += 1,
            (outcome, _) => panic!(
                "job {}: a completion was refused, yet its lease ended {outcome:?}: {r:?}",
                r.id
            ),
        }
    }

    eprintln!(
        "accepted {}, succeeded {succeeded}, attempts {attempts}, duplicate completions {duplicates}, lost {lost}",
        accepted.len()
    );
    eprintln!(
        "  {kills} kill -9 + restarts (spawn to healthy: {:.1?} on average) in {run_time:.1?} (all submitted after {:.1?}); leases {}, re-executed {re_executed}, completions answered 200 {}, \
         completions refused {} (answer lost but applied: {applied_unanswered}, lease over: {}), submissions sent again {}",
        restarting / kills.max(1),
        submitted_after.unwrap_or_default(),
        chaos.leased.load(Ordering::Relaxed),
        completed.len(),
        refused.len(),
        refused.len() - applied_unanswered,
        chaos.submit_retries.load(Ordering::Relaxed),
    );
    assert_eq!(succeeded, JOBS, "every accepted job succeeded");
    assert_eq!(lost, 0);
    assert_eq!(duplicates, 0, "no job completed twice");
    assert!(kills >= 3, "the run saw several kills ({kills})");
}
