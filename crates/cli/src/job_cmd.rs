//! `taskwheel job …`: submit, inspect, list, cancel and retry jobs through the
//! REST API. Prints aligned tables for people and, with `--json`, the API's
//! JSON for scripts.

use std::fmt::Write as _;

use serde_json::Value;
use taskwheel_client::Client;
use taskwheel_core::unique::{UniqueOutcome, UniqueSpec};
use taskwheel_core::wire::{JobList, JobView, ListJobsQuery, ProgressView, SubmitJob};
use taskwheel_core::workflow::ParentFailure;
use taskwheel_core::{DurationSpec, JobId, JobState, Priority, RetryPolicy, Timestamp};

use crate::output::{
    explain, fields, instant, one_line, parse_duration_spec, parse_payload, print_json, table,
};

#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum JobCommand {
    /// Submit a job.
    Submit(SubmitArgs),
    /// Submit many jobs in one request and one transaction (up to 10,000).
    SubmitBatch(BatchArgs),
    /// Show one job with its attempts.
    Get { id: JobId },
    /// List jobs, newest first.
    List(ListArgs),
    /// Cancel a job; a running one is asked to stop at its next heartbeat.
    Cancel { id: JobId },
    /// Run a failed or cancelled job again.
    Retry { id: JobId },
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SubmitArgs {
    /// What the job is; selects the worker handler (`http`, `command`, or your own).
    #[arg(long)]
    kind: String,
    /// Queue to put the job on [default: default].
    #[arg(long)]
    queue: Option<String>,
    /// The job's input, as JSON (`@path` reads it from a file).
    #[arg(long, value_parser = parse_payload)]
    payload: Option<Value>,
    /// 0 to 9 or low, normal, high, critical [default: normal].
    #[arg(long)]
    priority: Option<Priority>,
    /// Run after this long, such as `30s` or `1h 30m`.
    #[arg(long, value_parser = parse_duration_spec, conflicts_with = "run_at")]
    delay: Option<DurationSpec>,
    /// Run at this instant (RFC 3339, such as `2026-05-01T12:00:00Z`).
    #[arg(long)]
    run_at: Option<Timestamp>,
    /// End an attempt that runs longer than this.
    #[arg(long, value_parser = parse_duration_spec)]
    timeout: Option<DurationSpec>,
    /// Attempts in all, the first included; 1 means no retries.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Submitting again with the same key returns the first job instead of a new one.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// A tag to find the job by (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// A job that must end first (repeatable); the job is `blocked` until then.
    #[arg(long = "depends-on")]
    depends_on: Vec<JobId>,
    /// When a parent fails or is cancelled: `skip` this job [default] or `run` it anyway.
    #[arg(long)]
    on_parent_failure: Option<ParentFailure>,
    /// At most one job per unique key, as JSON, such as
    /// `{"by": ["kind", "payload.customer"], "period": "1h"}` (see docs/API.md).
    #[arg(long, value_parser = parse_unique)]
    unique: Option<Box<UniqueSpec>>,
    /// Groups the job (say, by customer) for its queue's per-key concurrency limit.
    #[arg(long)]
    concurrency_key: Option<String>,
}

/// Boxed: the spec is large next to the other commands' arguments.
fn parse_unique(arg: &str) -> Result<Box<UniqueSpec>, String> {
    serde_json::from_str(arg).map_err(|e| format!("not a unique spec: {e}"))
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ListArgs {
    #[arg(long)]
    queue: Option<String>,
    /// blocked, scheduled, available, running, succeeded, failed, cancelled or skipped.
    #[arg(long)]
    state: Option<JobState>,
    #[arg(long)]
    kind: Option<String>,
    /// Jobs per page (1 to 1000) [default: 50].
    #[arg(long)]
    limit: Option<u32>,
    /// The cursor printed under the previous page.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BatchArgs {
    /// The jobs, as for `POST /api/v1/jobs`: a JSON array, or one JSON
    /// object per line (ndjson); `-` reads standard input.
    file: String,
    /// All or nothing: one invalid job rejects the batch and nothing is stored.
    #[arg(long)]
    atomic: bool,
}

/// Reads a batch file: a JSON array of submit requests, or one per line.
fn parse_batch(text: &str) -> Result<Vec<SubmitJob>, String> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).map_err(|e| format!("not a JSON array of jobs: {e}"));
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

fn read_batch(file: &str) -> anyhow::Result<Vec<SubmitJob>> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?
    };
    parse_batch(&text).map_err(|e| anyhow::anyhow!("{file}: {e}"))
}

impl SubmitArgs {
    fn into_request(self) -> SubmitJob {
        SubmitJob {
            queue: self.queue,
            kind: self.kind,
            payload: self.payload.unwrap_or(Value::Null),
            priority: self.priority,
            run_at: self.run_at,
            delay: self.delay,
            timeout: self.timeout,
            retry: self.max_attempts.map(|max_attempts| RetryPolicy {
                max_attempts,
                ..RetryPolicy::default()
            }),
            idempotency_key: self.idempotency_key,
            tags: self.tags,
            depends_on: self.depends_on,
            on_parent_failure: self.on_parent_failure,
            unique: self.unique.map(|u| *u),
            concurrency_key: self.concurrency_key,
        }
    }
}

impl From<ListArgs> for ListJobsQuery {
    fn from(a: ListArgs) -> Self {
        Self {
            queue: a.queue,
            state: a.state,
            kind: a.kind,
            limit: a.limit,
            cursor: a.cursor,
        }
    }
}

/// Runs one job command against the server at `server`.
pub(crate) async fn run(server: &str, json: bool, cmd: JobCommand) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    match cmd {
        JobCommand::Submit(args) => {
            let job = client
                .submit(&args.into_request())
                .await
                .map_err(|e| explain(e, server))?;
            if json {
                return print_json(&job);
            }
            print!("{}", jobs_table(std::slice::from_ref(&job)));
            if job.deduplicated == Some(true) {
                println!("(an earlier job with this idempotency key was returned)");
            }
            match job.unique {
                Some(UniqueOutcome::Deduplicated) => {
                    println!("(the job holding this unique key was returned)")
                }
                Some(UniqueOutcome::Replaced) => {
                    println!("(the pending job holding this unique key was replaced)")
                }
                _ => {}
            }
        }
        JobCommand::SubmitBatch(args) => {
            let jobs = read_batch(&args.file)?;
            let answer = client
                .submit_batch(&jobs, args.atomic)
                .await
                .map_err(|e| explain(e, server))?;
            if json {
                print_json(&answer)?;
            } else {
                let rows = answer
                    .results
                    .iter()
                    .enumerate()
                    .map(|(i, r)| match (&r.job, &r.error) {
                        (Some(job), _) => {
                            let mut state = state_text(job);
                            if job.deduplicated == Some(true) {
                                state.push_str(" (deduplicated)");
                            }
                            vec![i.to_string(), job.id.to_string(), job.kind.clone(), state]
                        }
                        (None, error) => vec![
                            i.to_string(),
                            "-".into(),
                            "-".into(),
                            error
                                .as_ref()
                                .map_or("refused".into(), |e| one_line(&e.message)),
                        ],
                    })
                    .collect();
                print!("{}", table(&["#", "ID", "KIND", "STATE/ERROR"], rows));
            }
            let refused = answer.results.iter().filter(|r| r.error.is_some()).count();
            if refused > 0 {
                anyhow::bail!("{refused} of {} jobs were refused", answer.results.len());
            }
        }
        JobCommand::Get { id } => {
            let job = client.get_job(id).await.map_err(|e| explain(e, server))?;
            if json {
                return print_json(&job);
            }
            print!("{}", job_detail(&job));
        }
        JobCommand::List(args) => {
            let list = client
                .list_jobs(&args.into())
                .await
                .map_err(|e| explain(e, server))?;
            if json {
                return print_json(&list);
            }
            print!("{}", list_text(&list));
        }
        JobCommand::Cancel { id } => {
            let job = client.cancel(id).await.map_err(|e| explain(e, server))?;
            if json {
                return print_json(&job);
            }
            print!("{}", jobs_table(std::slice::from_ref(&job)));
            if job.cancel_requested && job.state == JobState::Running {
                println!("(running: its worker is asked to stop at its next heartbeat)");
            }
        }
        JobCommand::Retry { id } => {
            let job = client.retry(id).await.map_err(|e| explain(e, server))?;
            if json {
                return print_json(&job);
            }
            print!("{}", jobs_table(std::slice::from_ref(&job)));
        }
    }
    Ok(())
}

fn jobs_table(jobs: &[JobView]) -> String {
    let rows = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.queue.clone(),
                j.kind.clone(),
                state_text(j),
                j.priority.to_string(),
                format!("{}/{}", j.attempt, j.retry.max_attempts),
                instant(j.run_at),
            ]
        })
        .collect();
    table(
        &[
            "ID", "QUEUE", "KIND", "STATE", "PRIORITY", "ATTEMPT", "RUN_AT",
        ],
        rows,
    )
}

fn list_text(list: &JobList) -> String {
    let mut text = if list.jobs.is_empty() {
        "no jobs\n".to_string()
    } else {
        jobs_table(&list.jobs)
    };
    if let Some(cursor) = &list.next_cursor {
        let _ = writeln!(text, "more: --cursor {cursor}");
    }
    text
}

fn state_text(job: &JobView) -> String {
    if job.cancel_requested && !job.state.is_final() {
        format!("{} (cancel requested)", job.state)
    } else {
        job.state.to_string()
    }
}

/// `40% copied 4 of 10 files (2026-05-01T12:00:00Z)`.
fn progress_text(p: &ProgressView) -> String {
    let mut parts = Vec::new();
    if let Some(percent) = p.percent {
        parts.push(format!("{percent}%"));
    }
    if let Some(message) = &p.message {
        parts.push(one_line(message));
    }
    parts.push(format!("({})", instant(p.updated_at)));
    parts.join(" ")
}

/// A job's fields one per line, then its attempts as a table.
fn job_detail(job: &JobView) -> String {
    let mut list: Vec<(&str, String)> = vec![
        ("id", job.id.to_string()),
        ("queue", job.queue.clone()),
        ("kind", job.kind.clone()),
        ("state", state_text(job)),
        ("priority", job.priority.to_string()),
        (
            "attempt",
            format!("{} of {}", job.attempt, job.retry.max_attempts),
        ),
        ("run_at", instant(job.run_at)),
        ("created_at", instant(job.created_at)),
        ("updated_at", instant(job.updated_at)),
    ];
    if let Some(at) = job.finished_at {
        list.push(("finished_at", instant(at)));
    }
    if let Some(t) = job.timeout {
        list.push(("timeout", t.to_string()));
    }
    if let Some(key) = &job.idempotency_key {
        list.push(("idempotency_key", key.clone()));
    }
    if !job.tags.is_empty() {
        list.push(("tags", job.tags.join(", ")));
    }
    if !job.depends_on.is_empty() {
        let parents: Vec<String> = job.depends_on.iter().map(JobId::to_string).collect();
        let policy = job.on_parent_failure.unwrap_or_default().as_str();
        list.push((
            "depends_on",
            format!("{} (on parent failure: {policy})", parents.join(", ")),
        ));
    }
    if let (Some(id), Some(name)) = (&job.workflow_id, &job.workflow_job) {
        list.push(("workflow", format!("{id} (as `{name}`)")));
    }
    if let Some(key) = &job.unique_key {
        list.push(("unique_key", key.clone()));
    }
    if let Some(progress) = &job.progress {
        list.push(("progress", progress_text(progress)));
    }
    if let Some(lease) = &job.lease {
        list.push((
            "lease",
            format!(
                "worker {}, expires {}",
                lease.worker,
                instant(lease.expires_at)
            ),
        ));
    }
    list.push(("payload", job.payload.to_string()));

    let mut text = fields(&list);
    if !job.attempts.is_empty() {
        let rows = job
            .attempts
            .iter()
            .map(|a| {
                let detail = match (&a.error, &a.result) {
                    (Some(error), _) => one_line(error),
                    (None, Some(result)) => one_line(&result.to_string()),
                    (None, None) => String::new(),
                };
                vec![
                    a.number.to_string(),
                    a.worker.clone(),
                    instant(a.started_at),
                    instant(a.finished_at),
                    a.outcome.as_str().to_string(),
                    detail,
                ]
            })
            .collect();
        text.push_str("\nattempts:\n");
        text.push_str(&table(
            &[
                "#",
                "WORKER",
                "STARTED",
                "FINISHED",
                "OUTCOME",
                "ERROR/RESULT",
            ],
            rows,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;
    use std::time::Duration;
    use taskwheel_core::unique::OnConflict;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        job: JobCommand,
    }

    fn parse(args: &[&str]) -> Result<JobCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("job").chain(args.iter().copied())).map(|c| c.job)
    }

    #[test]
    fn batch_files_are_a_json_array_or_one_job_a_line() {
        let array = parse_batch(r#"[{"kind": "a"}, {"kind": "b", "queue": "q"}]"#).unwrap();
        assert_eq!(array.len(), 2);
        assert_eq!(array[1].queue.as_deref(), Some("q"));
        let lines = parse_batch("{\"kind\": \"a\"}\n\n{\"kind\": \"b\"}\n").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].kind, "b");
        let bad = parse_batch("{\"kind\": \"a\"}\n{\"colour\": 1}\n").unwrap_err();
        assert!(bad.starts_with("line 2:"), "{bad}");
        let cmd = parse(&["submit-batch", "jobs.ndjson", "--atomic"]).unwrap();
        assert!(matches!(
            cmd,
            JobCommand::SubmitBatch(BatchArgs { atomic: true, .. })
        ));
    }

    #[test]
    fn submit_flags_build_the_request() {
        let cmd = parse(&[
            "submit",
            "--kind",
            "http",
            "--queue",
            "q",
            "--payload",
            r#"{"url":"http://x"}"#,
            "--priority",
            "high",
            "--delay",
            "1m",
            "--timeout",
            "30s",
            "--max-attempts",
            "3",
            "--idempotency-key",
            "k1",
            "--tag",
            "a",
            "--tag",
            "b",
            "--unique",
            r#"{"by": ["kind"], "on_conflict": "replace"}"#,
        ])
        .unwrap();
        let JobCommand::Submit(args) = cmd else {
            panic!("{cmd:?}")
        };
        let req = args.into_request();
        assert_eq!(req.kind, "http");
        assert_eq!(req.queue.as_deref(), Some("q"));
        assert_eq!(req.payload, json!({"url": "http://x"}));
        assert_eq!(req.priority, Some(Priority::HIGH));
        assert_eq!(req.delay, Some(DurationSpec(Duration::from_secs(60))));
        assert_eq!(req.timeout, Some(DurationSpec(Duration::from_secs(30))));
        assert_eq!(req.retry.map(|r| r.max_attempts), Some(3));
        assert_eq!(req.idempotency_key.as_deref(), Some("k1"));
        assert_eq!(req.tags, ["a", "b"]);
        let unique = req.unique.expect("a unique spec");
        assert_eq!(unique.by, Some(vec!["kind".to_string()]));
        assert_eq!(unique.on_conflict, OnConflict::Replace);
    }

    #[test]
    fn bad_flags_are_refused_by_the_parser() {
        for args in [
            &["submit"][..],
            &["submit", "--kind", "k", "--payload", "{nope"],
            &["submit", "--kind", "k", "--delay", "soon"],
            &["submit", "--kind", "k", "--priority", "urgent"],
            &[
                "submit",
                "--kind",
                "k",
                "--unique",
                r#"{"on_conflict": "merge"}"#,
            ],
            &[
                "submit",
                "--kind",
                "k",
                "--delay",
                "1s",
                "--run-at",
                "2026-01-01T00:00:00Z",
            ],
            &["get", "not-a-uuid"],
            &["list", "--state", "done"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
    }

    fn job() -> JobView {
        let at: Timestamp = "2026-05-01T12:00:00.123Z".parse().unwrap();
        JobView {
            id: "0192e4a0-0000-7000-8000-000000000000".parse().unwrap(),
            queue: "default".into(),
            kind: "http".into(),
            payload: json!({"url": "http://x"}),
            priority: 5,
            state: JobState::Running,
            run_at: at,
            created_at: at,
            updated_at: at,
            finished_at: None,
            timeout: None,
            retry: RetryPolicy::default(),
            idempotency_key: None,
            tags: vec![],
            concurrency_key: None,
            schedule_id: None,
            fire_time: None,
            depends_on: Vec::new(),
            on_parent_failure: None,
            workflow_id: None,
            workflow_job: None,
            attempt: 1,
            cancel_requested: true,
            lease: None,
            attempts: vec![],
            unique_key: None,
            progress: Some(ProgressView {
                percent: Some(40.0),
                message: Some("copied 4 of 10 files".into()),
                updated_at: at,
            }),
            deduplicated: None,
            unique: None,
        }
    }

    #[test]
    fn job_rows_show_what_matters() {
        let text = jobs_table(&[job()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID "));
        for part in [
            "default",
            "http",
            "running (cancel requested)",
            "1/5",
            "2026-05-01T12:00:00Z",
        ] {
            assert!(lines[1].contains(part), "{part} missing in {text}");
        }
        let detail = job_detail(&job());
        assert!(detail.contains("attempt:    1 of 5"), "{detail}");
        assert!(
            detail.contains("progress:   40% copied 4 of 10 files (2026-05-01T12:00:00"),
            "{detail}"
        );
        assert!(
            detail.contains(r#"payload:    {"url":"http://x"}"#),
            "{detail}"
        );
    }

    #[test]
    fn list_mentions_the_next_page() {
        let list = JobList {
            jobs: vec![],
            next_cursor: Some("abc".into()),
        };
        assert_eq!(list_text(&list), "no jobs\nmore: --cursor abc\n");
    }
}
