//! `taskwheel server` and `taskwheel dev`: open the store, serve the API, and
//! (for `dev`) run a worker with the built-in executors in the same process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use taskwheel_client::Client;
use taskwheel_client::executors::{BuiltinOptions, builtin_worker};
use taskwheel_core::SystemClock;
use taskwheel_server::Engine;
use taskwheel_store::SqliteStore;
use tokio::net::TcpListener;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "TASKWHEEL_LISTEN", default_value = "127.0.0.1:7070")]
    pub(crate) listen: SocketAddr,
    /// Where the embedded store keeps its data (created if missing).
    #[arg(long, env = "TASKWHEEL_DATA_DIR", default_value = "./taskwheel-data")]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DevArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// Jobs the in-process worker runs at once.
    #[arg(long, default_value_t = 8)]
    pub(crate) concurrency: usize,
}

/// Opens the store and binds the socket; errors here are the user's to fix.
async fn start(args: &ServerArgs) -> anyhow::Result<(Arc<Engine>, TcpListener)> {
    let store = SqliteStore::open(&args.data_dir)
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let engine = Engine::new(Arc::new(store), Arc::new(SystemClock));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        data_dir = %args.data_dir.display(),
        "taskwheel server ready"
    );
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
