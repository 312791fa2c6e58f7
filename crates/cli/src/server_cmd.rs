//! `taskwheel server` and `taskwheel dev`: open the store, serve the API, and
//! (for `dev`) run a worker with the built-in executors in the same process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use taskwheel_client::Client;
use taskwheel_client::executors::{BuiltinOptions, builtin_worker};
use taskwheel_core::{Clock, SystemClock};
use taskwheel_server::{ClusterOptions, DatabaseClock, Engine, EngineOptions};
use taskwheel_store::{NodeInfo, PgStore, SqliteStore, Store};
use tokio::net::TcpListener;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "TASKWHEEL_LISTEN", default_value = "127.0.0.1:7070")]
    pub(crate) listen: SocketAddr,
    /// Where the embedded store keeps its data (created if missing).
    #[arg(long, env = "TASKWHEEL_DATA_DIR", default_value = "./taskwheel-data")]
    pub(crate) data_dir: PathBuf,
    /// Use PostgreSQL instead of the embedded store (`postgres://user:pass@host/db`);
    /// any number of nodes may share one database.
    #[arg(long, env = "TASKWHEEL_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// With PostgreSQL: how long a node's scheduler shard leases last without
    /// renewal, i.e. how soon other nodes take over the timer work of a node that died.
    #[arg(long, env = "TASKWHEEL_SHARD_TTL", default_value = "5s", value_parser = taskwheel_core::parse_duration)]
    pub(crate) shard_ttl: Duration,
    /// How long ended jobs (succeeded, failed, cancelled, skipped) are kept,
    /// with their attempts, before they are deleted; `off` keeps them for ever.
    #[arg(long, env = "TASKWHEEL_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub(crate) retention: Retention,
}

/// `--retention`: a duration, or `off`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention(Option<Duration>);

fn parse_retention(arg: &str) -> Result<Retention, String> {
    if arg == "off" {
        return Ok(Retention(None));
    }
    match taskwheel_core::parse_duration(arg)? {
        d if d.is_zero() => Err("give a duration longer than zero, or `off`".into()),
        d => Ok(Retention(Some(d))),
    }
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DevArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// Jobs the in-process worker runs at once.
    #[arg(long, default_value_t = 8)]
    pub(crate) concurrency: usize,
}

/// With several nodes, work created on another node is picked up by this
/// node's timer loop within this bound.
const CLUSTER_TIMER_CEILING: Duration = Duration::from_secs(1);

/// Opens the store and binds the socket; errors here are the user's to fix.
async fn start(args: &ServerArgs) -> anyhow::Result<(Arc<Engine>, TcpListener)> {
    let engine = match &args.database_url {
        None => {
            let store = SqliteStore::open(&args.data_dir)
                .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
            tracing::info!(data_dir = %args.data_dir.display(), "embedded store");
            let options = EngineOptions {
                retention: args.retention.0,
                ..EngineOptions::default()
            };
            Engine::with_options(Arc::new(store), Arc::new(SystemClock), options)
        }
        Some(url) => {
            let store = PgStore::connect(url)
                .await
                .context("connecting to PostgreSQL")?;
            let remote = store.listen().await.context("listening for other nodes")?;
            let node = NodeInfo {
                id: format!(
                    "{}-{}",
                    args.listen,
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                ),
                address: args.listen.to_string(),
            };
            let options = EngineOptions {
                timer_ceiling: CLUSTER_TIMER_CEILING,
                cluster: Some(ClusterOptions {
                    node: node.clone(),
                    shard_ttl: args.shard_ttl,
                }),
                retention: args.retention.0,
            };
            // Every decision about time is the database's, whatever this machine's clock says.
            let clock = Arc::new(DatabaseClock::new(Arc::new(SystemClock)));
            let before = SystemClock.now();
            if let Some(database) = store
                .database_now()
                .await
                .context("reading the database clock")?
            {
                clock.observe(before, database, SystemClock.now());
            }
            let engine = Engine::with_options(Arc::new(store), clock.clone(), options);
            tokio::spawn(Arc::clone(&engine).run_clock_sync(clock));
            tokio::spawn(Arc::clone(&engine).follow_remote_wakeups(remote));
            tracing::info!(node = %node.id, shard_ttl = ?args.shard_ttl, "PostgreSQL store");
            engine
        }
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "taskwheel server ready");
    Ok((engine, listener))
}

pub(crate) async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let (engine, listener) = start(&args).await?;
    taskwheel_server::serve(listener, engine, taskwheel_client::shutdown_signal()).await?;
    tracing::info!("taskwheel server stopped");
    Ok(())
}

pub(crate) async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let (engine, listener) = start(&args.server).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let worker = builtin_worker(
        Client::new(&url)?,
        BuiltinOptions {
            concurrency: args.concurrency,
            allow_command: true,
            worker_id: Some("dev-worker".into()),
            ..BuiltinOptions::default()
        },
    )?;
    tracing::info!(%url, "dev worker runs `http` and `command` jobs on queue `default`");
    let server = tokio::spawn(taskwheel_server::serve(
        listener,
        engine,
        taskwheel_client::shutdown_signal(),
    ));
    worker
        .run_until(taskwheel_client::shutdown_signal())
        .await?;
    server.await??;
    Ok(())
}
