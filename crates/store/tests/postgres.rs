//! The conformance suite against a real PostgreSQL server, each case in a
//! fresh schema of the database at `TASKWHEEL_TEST_DATABASE_URL` (default
//! [`DEFAULT_URL`]); then what only a shared database has: several nodes
//! (stores) submitting and leasing concurrently, migrating at once, and
//! waking each other through LISTEN/NOTIFY, also after the listener's
//! connection is killed.
//!
//! Without a reachable server every case is skipped with one line on stderr,
//! so `cargo test` passes on a fresh machine; with
//! `TASKWHEEL_REQUIRE_POSTGRES=1` (CI) they fail instead.
//!
//! Schemas are named `tw_test_<pid>_<n>`; each run drops those left by test
//! processes that no longer exist.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use sqlx_core::connection::Connection as _;
use sqlx_core::sql_str::AssertSqlSafe;
use sqlx_postgres::PgConnection;
use taskwheel_core::queue::QueuePatch;
use taskwheel_core::unique::UniqueOutcome;
use taskwheel_core::wire::SubmitJob;
use taskwheel_core::{JobState, NewJob};
use taskwheel_store::{Completion, JobFilter, LeaseParams, PgConfig, PgStore, QueueRef, Store};
use tokio::sync::{OnceCell, broadcast};

const DEFAULT_URL: &str = "postgres://taskwheel:taskwheel@127.0.0.1:5432/taskwheel_test";
const SCHEMA_PREFIX: &str = "tw_test_";

fn url() -> String {
    std::env::var("TASKWHEEL_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

fn required() -> bool {
    std::env::var("TASKWHEEL_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// The URL without its password, for messages.
fn shown_url() -> String {
    let raw = url();
    match sqlx_core::Url::parse(&raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => raw,
    }
}

/// Whether the server answers; decided once per test process.
async fn reachable() -> bool {
    static REACHABLE: OnceCell<bool> = OnceCell::const_new();
    *REACHABLE
        .get_or_init(|| async {
            match probe().await {
                Ok(()) => true,
                Err(e) if required() => panic!(
                    "PostgreSQL is required (TASKWHEEL_REQUIRE_POSTGRES=1) but cannot connect to {}: {e}",
                    shown_url()
                ),
                Err(e) => {
                    // Straight to stderr: libtest would swallow eprintln! of a passing test.
                    let _ = writeln!(
                        std::io::stderr(),
                        "skipping PostgreSQL tests: cannot connect to {} ({e}) (set TASKWHEEL_TEST_DATABASE_URL)",
                        shown_url()
                    );
                    false
                }
            }
        })
        .await
}

/// Connects once, and drops the schemas of earlier test processes that are gone.
async fn probe() -> Result<(), String> {
    let mut conn = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url()))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if std::path::Path::new("/proc/self").exists() {
        let schemas: Vec<String> = sqlx_core::query_scalar::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)",
        )
        .bind(SCHEMA_PREFIX)
        .fetch_all(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
        for schema in schemas {
            let pid = schema[SCHEMA_PREFIX.len()..]
                .split('_')
                .next()
                .unwrap_or("");
            let alive = pid.parse::<u32>().is_ok_and(|pid| {
                pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
            if !alive
                && schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                sqlx_core::query::query(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            }
        }
    }
    conn.close().await.map_err(|e| e.to_string())
}

/// A configuration for a fresh, uniquely named schema; `None` when skipping.
async fn fresh_config(max_connections: u32) -> Option<PgConfig> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    if !reachable().await {
        return None;
    }
    let schema = format!(
        "{SCHEMA_PREFIX}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut config = PgConfig::new(url());
    config.max_connections = max_connections;
    // Also the application name, so a test can find its own connections.
    config.application_name = schema.clone();
    config.schema = Some(schema);
    Some(config)
}

async fn connect(config: &PgConfig) -> PgStore {
    PgStore::connect_with(config.clone())
        .await
        .expect("connect to PostgreSQL")
}

async fn fresh() -> Option<Arc<dyn Store>> {
    let config = fresh_config(3).await?;
    Some(Arc::new(connect(&config).await))
}

taskwheel_store::conformance_tests!(fresh());

// ---- What only a shared database shows ----

fn t0() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().expect("valid instant")
}

fn new_job(body: serde_json::Value, now: Timestamp) -> NewJob {
    serde_json::from_value::<SubmitJob>(body)
        .expect("valid request")
        .validate("default", now)
        .expect("valid job")
}

async fn job_count(store: &PgStore) -> usize {
    let filter = JobFilter {
        limit: 1000,
        ..JobFilter::default()
    };
    store.list_jobs("default", &filter).await.unwrap().len()
}

/// Two "nodes": two stores, each with its own pool, on one schema.
async fn two_nodes(max_connections: u32) -> Option<(PgConfig, Arc<PgStore>, Arc<PgStore>)> {
    let config = fresh_config(max_connections).await?;
    let a = Arc::new(connect(&config).await);
    let b = Arc::new(connect(&config).await);
    Some((config, a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_at_once_migrate_once() {
    let Some(config) = fresh_config(2).await else {
        return;
    };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { PgStore::connect_with(config).await })
        })
        .collect();
    for start in starts {
        start.await.expect("task").expect("connect and migrate");
    }
    let mut conn = PgConnection::connect(&url()).await.unwrap();
    let schema = config.schema.as_deref().unwrap();
    let versions: Vec<i32> = sqlx_core::query_scalar::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM {schema}.taskwheel_migrations ORDER BY version"
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let all: Vec<i32> = (1..=taskwheel_store::postgres::SCHEMA_VERSION as i32).collect();
    assert_eq!(versions, all, "each migration applied once");
}

#[tokio::test]
async fn instants_round_trip_at_microsecond_precision() {
    let Some(store) = fresh().await else {
        return;
    };
    let now: Timestamp = "2026-06-01T00:00:00.123456Z".parse().unwrap();
    let job = new_job(
        json!({"kind": "k", "run_at": "2026-06-01T00:00:07.654321Z"}),
        now,
    );
    let submitted = store.submit(job, now).await.unwrap().job;
    let got = store.get_job("default", submitted.id).await.unwrap();
    assert_eq!(got.created_at, now);
    assert_eq!(got.run_at, "2026-06-01T00:00:07.654321Z".parse().unwrap());
    assert_eq!(got, submitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_with_one_key_make_one_job() {
    let Some((_, a, b)) = two_nodes(10).await else {
        return;
    };
    let submits: Vec<_> = (0..50)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let job = new_job(json!({"kind": "k", "idempotency_key": "once"}), t0());
                store.submit(job, t0()).await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut created = 0;
    for submit in submits {
        let submitted = submit.await.expect("task").expect("submit");
        ids.insert(submitted.job.id);
        created += usize::from(!submitted.deduplicated);
    }
    assert_eq!(ids.len(), 1, "every submission returns the same job");
    assert_eq!(created, 1, "exactly one submission created it");
    assert_eq!(job_count(&a).await, 1);
}

/// 50 submissions of one unique job, split over two nodes, skip and replace
/// mixed, while a third party leases it: one job, whatever the interleaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_unique_submits_on_two_nodes_make_one_job() {
    let Some((_, a, b)) = two_nodes(10).await else {
        return;
    };
    let submits: Vec<_> = (0..50)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let policy = if i % 3 == 0 { "replace" } else { "skip" };
                let job = new_job(
                    json!({"kind": "k", "payload": {"i": i},
                           "unique": {"by": ["kind"], "on_conflict": policy}}),
                    t0(),
                );
                store.submit(job, t0()).await
            })
        })
        .collect();
    let leaser = {
        let a = a.clone();
        tokio::spawn(async move {
            let params = LeaseParams {
                tenant: "default".into(),
                queues: vec!["default".into()],
                max: 1,
                worker: "w".into(),
                lease: Duration::from_secs(30),
            };
            for _ in 0..20 {
                if !a.lease(params.clone(), t0()).await.unwrap().is_empty() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut ids = HashSet::new();
    let mut created = 0;
    for submit in submits {
        let submitted = submit.await.expect("task").expect("submit");
        ids.insert(submitted.job.id);
        created += usize::from(submitted.unique == Some(UniqueOutcome::New));
    }
    leaser.await.unwrap();
    assert_eq!(ids.len(), 1, "every submission answers the same job");
    assert_eq!(created, 1, "exactly one submission created it");
    assert_eq!(job_count(&a).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_leases_never_share_a_job() {
    const JOBS: usize = 500;
    const LEASERS: usize = 8;
    let Some((_, a, b)) = two_nodes(10).await else {
        return;
    };
    let submits: Vec<_> = (0..JOBS)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.submit(new_job(json!({"kind": "k"}), t0()), t0()).await })
        })
        .collect();
    for submit in submits {
        submit.await.expect("task").expect("submit");
    }
    let leasers: Vec<_> = (0..LEASERS)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let params = LeaseParams {
                        tenant: "default".into(),
                        queues: vec!["default".into()],
                        max: 7,
                        worker: format!("worker-{i}"),
                        lease: Duration::from_secs(60),
                    };
                    let got = store.lease(params, t0()).await.expect("lease");
                    // Empty means every available row was free or locked by
                    // another leaser's transaction, which takes it: done.
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|l| l.job.id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for leaser in leasers {
        let mine = leaser.await.expect("task");
        total += mine.len();
        seen.extend(mine);
    }
    assert_eq!(total, JOBS, "every job leased exactly once");
    assert_eq!(seen.len(), JOBS, "no job leased twice");
    let running = a
        .list_jobs(
            "default",
            &JobFilter {
                limit: 1000,
                state: Some(JobState::Running),
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(running.len(), JOBS);
}

/// Workers on three nodes lease, "run" and complete the jobs of one limited
/// queue as fast as they can; the jobs they hold at any instant, counted by
/// the workers themselves (up on lease, down before complete), never exceed
/// the queue's concurrency, nor its per-key limit for any key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_hold_across_nodes_leasing_concurrently() {
    const JOBS: usize = 120;
    const KEYS: usize = 6;
    const CONCURRENCY: usize = 4;
    const PER_KEY: usize = 1;
    let Some(config) = fresh_config(6).await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Arc::new(connect(&config).await));
    }
    let patch: QueuePatch =
        serde_json::from_value(json!({"concurrency": CONCURRENCY, "key_concurrency": PER_KEY}))
            .unwrap();
    nodes[0]
        .update_queue("default", "lim", patch, t0())
        .await
        .unwrap();
    for i in 0..JOBS {
        let job = new_job(
            json!({"kind": "k", "queue": "lim", "concurrency_key": format!("key-{}", i % KEYS)}),
            t0(),
        );
        nodes[i % 3].submit(job, t0()).await.unwrap();
    }
    #[derive(Default)]
    struct Held {
        total: usize,
        per_key: std::collections::HashMap<String, usize>,
        max_total: usize,
        max_per_key: usize,
        done: usize,
    }
    let held = Arc::new(std::sync::Mutex::new(Held::default()));
    let workers: Vec<_> = (0..9)
        .map(|w| {
            let store = nodes[w % 3].clone();
            let held = held.clone();
            tokio::spawn(async move {
                loop {
                    if held.lock().unwrap().done >= JOBS {
                        return;
                    }
                    let params = LeaseParams {
                        tenant: "default".into(),
                        queues: vec!["lim".into()],
                        max: 3,
                        worker: format!("worker-{w}"),
                        lease: Duration::from_secs(600),
                    };
                    let got = store.lease(params, t0()).await.expect("lease");
                    if got.is_empty() {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    {
                        let mut h = held.lock().unwrap();
                        for l in &got {
                            h.total += 1;
                            let key = l.job.concurrency_key.clone().unwrap();
                            let n = h.per_key.entry(key).or_default();
                            *n += 1;
                            let n = *n;
                            h.max_per_key = h.max_per_key.max(n);
                            h.max_total = h.max_total.max(h.total);
                        }
                    }
                    // "Run" the jobs: let other workers lease meanwhile.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let mut items = Vec::new();
                    {
                        let mut h = held.lock().unwrap();
                        for l in &got {
                            h.total -= 1;
                            *h.per_key
                                .get_mut(l.job.concurrency_key.as_deref().unwrap())
                                .unwrap() -= 1;
                            items.push(Completion {
                                id: l.job.id,
                                token: l.token,
                                result: None,
                            });
                        }
                    }
                    for outcome in store
                        .complete("default", items, t0())
                        .await
                        .expect("complete")
                    {
                        outcome.expect("completed");
                        held.lock().unwrap().done += 1;
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(120), worker)
            .await
            .expect("workers finish")
            .expect("task");
    }
    let h = held.lock().unwrap();
    assert_eq!(h.done, JOBS);
    assert!(
        h.max_total <= CONCURRENCY,
        "{} running at once",
        h.max_total
    );
    assert!(
        h.max_per_key <= PER_KEY,
        "{} of one key at once",
        h.max_per_key
    );
    assert!(h.max_total >= 2, "the workers did run jobs side by side");
}

/// A rate limit is one token bucket for the whole cluster: nine leasers on
/// three nodes, all at the same instant, start exactly `burst` jobs; one
/// second later exactly `limit` more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_holds_across_nodes() {
    const LIMIT: usize = 10;
    let Some(config) = fresh_config(6).await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Arc::new(connect(&config).await));
    }
    let patch: QueuePatch =
        serde_json::from_value(json!({"rate": {"limit": LIMIT, "per": "1s", "burst": LIMIT}}))
            .unwrap();
    nodes[0]
        .update_queue("default", "rated", patch, t0())
        .await
        .unwrap();
    for i in 0..100 {
        let job = new_job(json!({"kind": "k", "queue": "rated"}), t0());
        nodes[i % 3].submit(job, t0()).await.unwrap();
    }
    for (round, now) in [t0(), t0() + jiff::SignedDuration::from_secs(1)]
        .into_iter()
        .enumerate()
    {
        let leasers: Vec<_> = (0..9)
            .map(|w| {
                let store = nodes[w % 3].clone();
                tokio::spawn(async move {
                    let mut got = 0;
                    // Until the bucket is dry for this leaser (a few empty answers).
                    for _ in 0..5 {
                        let params = LeaseParams {
                            tenant: "default".into(),
                            queues: vec!["rated".into()],
                            max: 3,
                            worker: format!("w{w}"),
                            lease: Duration::from_secs(600),
                        };
                        got += store.lease(params, now).await.expect("lease").len();
                    }
                    got
                })
            })
            .collect();
        let mut started = 0;
        for leaser in leasers {
            started += leaser.await.expect("task");
        }
        assert_eq!(started, LIMIT, "round {round}: started {started} jobs");
    }
}

/// Waits for a notification of `queue`, skipping other tests' (the channel is database-wide).
async fn heard(rx: &mut broadcast::Receiver<QueueRef>, queue: &str, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(q) if q.queue == queue && q.tenant == "default" => return true,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// A queue name no other test uses.
fn unique_queue(config: &PgConfig, what: &str) -> String {
    format!("{}-{what}", config.schema.as_deref().unwrap()).replace('_', "-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_jobs_notify_other_nodes() {
    let Some((config, a, b)) = two_nodes(3).await else {
        return;
    };
    let mut rx = b.listen().await.expect("listen");
    let now_queue = unique_queue(&config, "now");
    a.submit(
        new_job(json!({"kind": "k", "queue": now_queue}), t0()),
        t0(),
    )
    .await
    .unwrap();
    assert!(heard(&mut rx, &now_queue, Duration::from_secs(10)).await);

    let later = unique_queue(&config, "later");
    a.submit(
        new_job(json!({"kind": "k", "queue": later, "delay": "10s"}), t0()),
        t0(),
    )
    .await
    .unwrap();
    assert!(
        !heard(&mut rx, &later, Duration::from_millis(300)).await,
        "a delayed job is not available yet"
    );
    a.promote_due(t0() + jiff::SignedDuration::from_secs(10))
        .await
        .unwrap();
    assert!(heard(&mut rx, &later, Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_reconnects_and_announces_what_it_missed() {
    let Some((config, a, b)) = two_nodes(3).await else {
        return;
    };
    let mut rx = b.listen().await.expect("listen");
    let schema = config.schema.clone().unwrap();
    let mut admin = PgConnection::connect(&url()).await.unwrap();
    // An available job nobody announced, as if its notification had been
    // sent while the listener was away.
    let silent = unique_queue(&config, "silent");
    sqlx_core::query::query(AssertSqlSafe(format!(
        "INSERT INTO {schema}.jobs (id, tenant, queue, kind, payload, priority, state, run_at, \
         created_at, updated_at, retry, tags) \
         VALUES (gen_random_uuid(), 'default', $1, 'k', '{{}}', 5, 'available', now(), now(), now(), '{{}}', '[]')"
    )))
    .bind(&silent)
    .execute(&mut admin)
    .await
    .unwrap();
    assert!(!heard(&mut rx, &silent, Duration::from_millis(300)).await);

    let listener_name = format!("{}-listener", config.application_name);
    let pids = |name: String| {
        sqlx_core::query_scalar::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(name)
    };
    let before = pids(listener_name.clone())
        .fetch_all(&mut admin)
        .await
        .unwrap();
    assert_eq!(before.len(), 1, "one listener connection");
    sqlx_core::query::query("SELECT pg_terminate_backend($1)")
        .bind(before[0])
        .execute(&mut admin)
        .await
        .unwrap();
    assert!(
        heard(&mut rx, &silent, Duration::from_secs(15)).await,
        "after reconnecting, queues with available jobs are announced"
    );

    let after = pids(listener_name).fetch_all(&mut admin).await.unwrap();
    assert_eq!(after.len(), 1, "the listener reconnected");
    assert_ne!(after, before);
    let again = unique_queue(&config, "again");
    a.submit(new_job(json!({"kind": "k", "queue": again}), t0()), t0())
        .await
        .unwrap();
    assert!(heard(&mut rx, &again, Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_run_again_on_a_fresh_connection_after_the_server_kills_theirs() {
    let Some(config) = fresh_config(3).await else {
        return;
    };
    let store = connect(&config).await;
    // Open and park the pool's connections, as a busy node would have them.
    let warm: Vec<_> = (0..3)
        .map(|_| store.submit(new_job(json!({"kind": "k"}), t0()), t0()))
        .collect();
    for submit in warm {
        submit.await.unwrap();
    }
    let mut admin = PgConnection::connect(&url()).await.unwrap();
    let killed: Vec<bool> = sqlx_core::query_scalar::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&config.application_name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "the pool had idle connections");
    // Give the server a moment to close them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let job = store
        .submit(new_job(json!({"kind": "k"}), t0()), t0())
        .await
        .expect("a write runs again on a live connection");
    let listed = store
        .list_jobs(
            "default",
            &JobFilter {
                limit: 10,
                ..JobFilter::default()
            },
        )
        .await
        .expect("so does a read");
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().any(|j| j.id == job.job.id));
}

#[tokio::test]
async fn worker_reports_with_nul_characters_are_stored() {
    let Some(store) = fresh().await else {
        return;
    };
    let params = || LeaseParams {
        tenant: "default".into(),
        queues: vec!["default".into()],
        max: 1,
        worker: "w".into(),
        lease: Duration::from_secs(30),
    };
    let job = store
        .submit(new_job(json!({"kind": "k"}), t0()), t0())
        .await
        .unwrap()
        .job;
    let first = store.lease(params(), t0()).await.unwrap().remove(0);
    let cause = taskwheel_core::lifecycle::FailureCause::Error {
        retry: true,
        retry_after: Some(Duration::ZERO),
    };
    store
        .fail(
            "default",
            job.id,
            first.token,
            "bad\0byte".into(),
            cause,
            t0(),
        )
        .await
        .expect("PostgreSQL text cannot hold NUL; the engine must not refuse the report");
    let second = store.lease(params(), t0()).await.unwrap().remove(0);
    let done = store
        .complete(
            "default",
            vec![taskwheel_store::Completion {
                id: job.id,
                token: second.token,
                result: Some(json!({"out": "a\u{0}b"})),
            }],
            t0(),
        )
        .await
        .unwrap();
    assert!(done[0].is_ok());
    let stored = store.get_job("default", job.id).await.unwrap();
    assert_eq!(stored.attempts[0].error.as_deref(), Some("bad\u{FFFD}byte"));
    assert_eq!(
        stored.attempts[1].result,
        Some(json!({"out": "a\u{FFFD}b"}))
    );
}
