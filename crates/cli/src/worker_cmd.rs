//! `taskwheel worker`: a worker process with the built-in `http` and
//! `command` executors, running until SIGTERM or Ctrl-C.

use std::time::Duration;

use anyhow::Context;
use taskwheel_client::Client;
use taskwheel_client::executors::{BuiltinOptions, builtin_worker};
use taskwheel_client::worker::DEFAULT_CONCURRENCY;
use taskwheel_core::parse_duration;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WorkerArgs {
    /// URL of the taskwheel server.
    #[arg(
        long,
        env = "TASKWHEEL_SERVER",
        default_value = "http://127.0.0.1:7070"
    )]
    pub(crate) server: String,
    /// Queues to take jobs from, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub(crate) queues: Vec<String>,
    /// Jobs run at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub(crate) concurrency: usize,
    /// Run `command` jobs. Anyone who can submit a job can then run programs
    /// as this worker's user, so enable it only where that is acceptable.
    #[arg(long)]
    pub(crate) allow_command: bool,
    /// The name this worker leases under [default: hostname-pid].
    #[arg(long)]
    pub(crate) worker_id: Option<String>,
    /// How long running jobs may take to finish after SIGTERM/Ctrl-C before
    /// they are aborted and handed back to the server.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub(crate) shutdown_grace: Duration,
}

pub(crate) async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    // Not fatal: the worker retries until the server is up, which is what a
    // service manager starting both at once needs. But say so early.
    if let Err(e) = client.health().await {
        tracing::warn!(server = %args.server, error = %e, "server not reachable yet; will keep trying");
    }
    let worker = builtin_worker(
        client,
        BuiltinOptions {
            queues: args.queues,
            concurrency: args.concurrency,
            allow_command: args.allow_command,
            worker_id: args.worker_id,
            shutdown_grace: Some(args.shutdown_grace),
        },
    )
    .context("invalid worker settings")?;
    tracing::info!(
        server = %args.server,
        worker = worker.worker_id(),
        allow_command = args.allow_command,
        "worker running `http`{} jobs; stop with Ctrl-C or SIGTERM",
        if args.allow_command { " and `command`" } else { "" }
    );
    worker.run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use taskwheel_client::worker::DEFAULT_SHUTDOWN_GRACE;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerArgs,
    }

    #[test]
    fn defaults_match_the_sdk() {
        let cli = Cli::try_parse_from(["taskwheel"]).unwrap();
        assert_eq!(cli.worker.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(cli.worker.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(cli.worker.queues, ["default"]);
        assert!(!cli.worker.allow_command);
    }

    #[test]
    fn queues_are_comma_separated() {
        let cli = Cli::try_parse_from(["taskwheel", "--queues", "a,b", "--allow-command"]).unwrap();
        assert_eq!(cli.worker.queues, ["a", "b"]);
        assert!(cli.worker.allow_command);
    }
}
