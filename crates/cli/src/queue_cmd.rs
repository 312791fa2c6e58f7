//! `taskwheel queue …`: list queues with their depth and limits, inspect one,
//! pause and resume it, and set or lift its concurrency, per-key concurrency
//! and rate limits through the REST API. Prints tables for people and, with
//! `--json`, the API's JSON for scripts.

use taskwheel_client::Client;
use taskwheel_core::queue::{QueueList, QueuePatch, QueueView, RateLimit};

use crate::output::{explain, fields, print_json, table};

#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum QueueCommand {
    /// List the queues that have jobs or settings, with depth and limits.
    List,
    /// Show one queue: depth per state, age of the oldest pending job, throughput, limits.
    Get {
        /// The queue's name.
        name: String,
    },
    /// Stop handing out the queue's jobs (running ones finish) until resumed.
    Pause {
        /// The queue's name.
        name: String,
    },
    /// Hand out the queue's jobs again; waiting workers are woken.
    Resume {
        /// The queue's name.
        name: String,
    },
    /// Set or lift limits; flags not given stay as they are.
    Set(SetArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SetArgs {
    /// The queue's name.
    name: String,
    /// The most running jobs of the queue across all nodes, or `none`.
    #[arg(long, value_name = "N|none", value_parser = parse_limit)]
    concurrency: Option<Option<u32>>,
    /// Jobs started per second or minute, such as `100/1s` or `600/1m`, or `none`.
    #[arg(long, value_name = "N/1s|N/1m|none", value_parser = parse_rate)]
    rate: Option<Option<RateLimit>>,
    /// How many jobs may start at once after an idle spell [default: the rate's N].
    #[arg(long, value_name = "N", requires = "rate")]
    burst: Option<u32>,
    /// The most running jobs per concurrency key, or `none`.
    #[arg(long, value_name = "N|none", value_parser = parse_limit)]
    key_concurrency: Option<Option<u32>>,
}

impl SetArgs {
    fn into_patch(self) -> QueuePatch {
        let rate = self.rate.map(|rate| {
            rate.map(|r| RateLimit {
                burst: self.burst.unwrap_or(r.burst),
                ..r
            })
        });
        QueuePatch {
            paused: None,
            concurrency: self.concurrency,
            rate,
            key_concurrency: self.key_concurrency,
        }
    }
}

/// `5`, or `none` / `unlimited` to lift the limit.
fn parse_limit(arg: &str) -> Result<Option<u32>, String> {
    match arg {
        "none" | "unlimited" => Ok(None),
        n => n
            .parse::<u32>()
            .map(Some)
            .map_err(|_| format!("`{n}` is not a limit (a whole number, or `none`)")),
    }
}

/// `100/1s`, `600/1m`, or `none`.
fn parse_rate(arg: &str) -> Result<Option<RateLimit>, String> {
    if matches!(arg, "none" | "unlimited") {
        return Ok(None);
    }
    let (limit, per) = arg
        .split_once('/')
        .ok_or_else(|| format!("`{arg}` is not a rate (use `100/1s`, `600/1m` or `none`)"))?;
    let limit = limit
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("`{limit}` is not a number of jobs"))?;
    Ok(Some(RateLimit {
        limit,
        per: per.trim().parse()?,
        burst: 0,
    }))
}

/// Runs one queue command against the server at `server`.
pub(crate) async fn run(server: &str, json: bool, cmd: QueueCommand) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    let patch = |paused: bool| QueuePatch {
        paused: Some(paused),
        ..QueuePatch::default()
    };
    let queue = match cmd {
        QueueCommand::List => {
            let list = client.list_queues().await.map_err(|e| explain(e, server))?;
            if json {
                return print_json(&list);
            }
            print!("{}", list_text(&list));
            return Ok(());
        }
        QueueCommand::Get { name } => {
            let queue = client
                .get_queue(&name)
                .await
                .map_err(|e| explain(e, server))?;
            if json {
                return print_json(&queue);
            }
            print!("{}", queue_detail(&queue));
            return Ok(());
        }
        QueueCommand::Pause { name } => client.update_queue(&name, &patch(true)).await,
        QueueCommand::Resume { name } => client.update_queue(&name, &patch(false)).await,
        QueueCommand::Set(args) => {
            let name = args.name.clone();
            client.update_queue(&name, &args.into_patch()).await
        }
    }
    .map_err(|e| explain(e, server))?;
    if json {
        return print_json(&queue);
    }
    print!("{}", queues_table(std::slice::from_ref(&queue)));
    Ok(())
}

fn limit_text(limit: Option<u32>) -> String {
    limit.map_or_else(|| "-".to_string(), |n| n.to_string())
}

fn rate_text(rate: Option<RateLimit>) -> String {
    rate.map_or_else(|| "-".to_string(), |r| r.to_string())
}

fn queues_table(queues: &[QueueView]) -> String {
    let rows = queues
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                if q.paused { "paused" } else { "running" }.to_string(),
                q.depth.available.to_string(),
                q.depth.running.to_string(),
                q.depth.scheduled.to_string(),
                format!("{:.1}s", q.oldest_pending_age_secs),
                q.finished_last_minute.to_string(),
                limit_text(q.concurrency),
                limit_text(q.key_concurrency),
                rate_text(q.rate),
            ]
        })
        .collect();
    table(
        &[
            "QUEUE",
            "STATE",
            "AVAILABLE",
            "RUNNING",
            "SCHEDULED",
            "OLDEST",
            "DONE/MIN",
            "CONCURRENCY",
            "PER-KEY",
            "RATE",
        ],
        rows,
    )
}

fn list_text(list: &QueueList) -> String {
    if list.queues.is_empty() {
        "no queues\n".to_string()
    } else {
        queues_table(&list.queues)
    }
}

fn queue_detail(q: &QueueView) -> String {
    let d = &q.depth;
    fields(&[
        ("queue", q.name.clone()),
        (
            "state",
            if q.paused { "paused" } else { "running" }.to_string(),
        ),
        (
            "depth",
            format!(
                "{} scheduled, {} available, {} running, {} succeeded, {} failed, {} cancelled",
                d.scheduled, d.available, d.running, d.succeeded, d.failed, d.cancelled
            ),
        ),
        (
            "oldest pending",
            format!("{:.1}s", q.oldest_pending_age_secs),
        ),
        ("done last minute", q.finished_last_minute.to_string()),
        ("concurrency", limit_text(q.concurrency)),
        ("key concurrency", limit_text(q.key_concurrency)),
        ("rate", rate_text(q.rate)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskwheel_core::queue::{QueueDepth, RatePeriod};

    #[test]
    fn limits_and_rates_parse_or_say_why_not() {
        assert_eq!(parse_limit("5"), Ok(Some(5)));
        assert_eq!(parse_limit("none"), Ok(None));
        assert!(parse_limit("-1").unwrap_err().contains("not a limit"));
        assert_eq!(
            parse_rate("100/1s"),
            Ok(Some(RateLimit {
                limit: 100,
                per: RatePeriod::Second,
                burst: 0
            }))
        );
        assert_eq!(
            parse_rate("600/1m").unwrap().unwrap().per,
            RatePeriod::Minute
        );
        assert_eq!(parse_rate("none"), Ok(None));
        assert!(parse_rate("100").unwrap_err().contains("not a rate"));
        assert!(parse_rate("100/1h").unwrap_err().contains("rate period"));
    }

    #[test]
    fn set_builds_a_patch_of_only_the_given_flags() {
        let args = SetArgs {
            name: "q".into(),
            concurrency: Some(Some(3)),
            rate: Some(parse_rate("10/1s").unwrap()),
            burst: Some(4),
            key_concurrency: None,
        };
        let patch = serde_json::to_value(args.into_patch()).unwrap();
        assert_eq!(
            patch,
            serde_json::json!({"concurrency": 3, "rate": {"limit": 10, "per": "1s", "burst": 4}})
        );
    }

    #[test]
    fn the_table_shows_limits_and_depth() {
        let view = QueueView {
            name: "mail".into(),
            paused: true,
            concurrency: Some(5),
            rate: None,
            key_concurrency: None,
            depth: QueueDepth {
                available: 7,
                ..QueueDepth::default()
            },
            oldest_pending_age_secs: 1.25,
            finished_last_minute: 3,
        };
        let text = queues_table(&[view]);
        let row = text.lines().nth(1).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            vec!["mail", "paused", "7", "0", "0", "1.2s", "3", "5", "-", "-"]
        );
    }
}
