//! The `taskwheel` binary: parses the command line and hands off to one
//! module per command. Errors are reported here, and only here, with anyhow.

mod bench;
mod cron_cmd;
mod job_cmd;
mod output;
mod queue_cmd;
mod schedule_cmd;
mod server_cmd;
mod worker_cmd;
mod workflow_cmd;

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
    /// Run a worker with the built-in `http` and `command` executors.
    Worker(worker_cmd::WorkerArgs),
    /// Submit, inspect, list, cancel and re-run jobs.
    Job {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: job_cmd::JobCommand,
    },
    /// Create, inspect, pause, resume, trigger and delete recurring schedules.
    Schedule {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: schedule_cmd::ScheduleCommand,
    },
    /// Submit, inspect and cancel workflows (graphs of jobs with dependencies).
    Workflow {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: workflow_cmd::WorkflowCommand,
    },
    /// List queues, pause and resume them, set their concurrency and rate limits.
    Queue {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: queue_cmd::QueueCommand,
    },
    /// Check cron expressions without a server.
    #[command(subcommand)]
    Cron(cron_cmd::CronCommand),
    /// Measure throughput, latency and memory of a server over HTTP.
    Bench(bench::BenchArgs),
}

/// Where the API commands send their requests, and how they print answers.
#[derive(Debug, clap::Args)]
struct Remote {
    /// The server to talk to.
    #[arg(
        long,
        global = true,
        env = "TASKWHEEL_SERVER",
        default_value = "http://127.0.0.1:7070"
    )]
    server: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("TASKWHEEL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli)));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole chain of causes on one line, without a backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => server_cmd::server(args).await,
        Command::Dev(args) => server_cmd::dev(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Cron(command) => cron_cmd::run(command),
        Command::Worker(args) => worker_cmd::run(args).await,
        Command::Job { remote, command } => {
            job_cmd::run(&remote.server, remote.json, command).await
        }
        Command::Schedule { remote, command } => {
            schedule_cmd::run(&remote.server, remote.json, command).await
        }
        Command::Workflow { remote, command } => {
            workflow_cmd::run(&remote.server, remote.json, command).await
        }
        Command::Queue { remote, command } => {
            queue_cmd::run(&remote.server, remote.json, command).await
        }
    }
}
