//! The `taskwheel` binary: parses the command line and hands off to one
//! module per command. Errors are reported here, and only here, with anyhow.

mod bench;
mod server_cmd;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "taskwheel",
    version,
    about = "A durable, distributed job scheduler and task queue"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server on the embedded store.
    Server(server_cmd::ServerArgs),
    /// Run the server plus a worker with the built-in `http` and `command` executors.
    Dev(server_cmd::DevArgs),
    /// Measure throughput, latency and memory of a server over HTTP.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("TASKWHEEL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => server_cmd::server(args).await,
        Command::Dev(args) => server_cmd::dev(args).await,
        Command::Bench(args) => bench::run(args).await,
    }
}
