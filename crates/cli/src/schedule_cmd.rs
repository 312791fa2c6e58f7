//! `taskwheel schedule …`: create, list, inspect, pause, resume, trigger and
//! delete schedules through the REST API, and preview their next ticks.
//! Prints tables for people and, with `--json`, the API's JSON for scripts.
//! Instants of a schedule are printed in its own time zone, since that is the
//! zone its timing is written in.

use jiff::tz::TimeZone;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use taskwheel_client::Client;
use taskwheel_core::firing::{MisfirePolicy, OverlapPolicy};
use taskwheel_core::recurring::{JobTemplate, ScheduleList, ScheduleRequest, ScheduleView};
use taskwheel_core::schedule::ScheduleSpec;
use taskwheel_core::wire::JobView;
use taskwheel_core::{DstGap, DstOverlap, DurationSpec, Priority, RetryPolicy, Timestamp};

use crate::output::{
    explain, fields, instant, one_line, parse_duration_spec, parse_payload, print_json, table,
};

#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Create a schedule.
    // Boxed: its many flags would make every other variant as large.
    Create(Box<CreateArgs>),
    /// List the schedules with their next tick and health.
    List,
    /// Show one schedule: timing, policies, job template and health.
    Get {
        /// The schedule's id or name.
        key: String,
    },
    /// Stop firing until resumed.
    Pause {
        /// The schedule's id or name.
        key: String,
    },
    /// Fire again; ticks missed while paused follow the misfire policy.
    Resume {
        /// The schedule's id or name.
        key: String,
    },
    /// Create one job from the schedule's template now, outside its timing.
    Trigger {
        /// The schedule's id or name.
        key: String,
    },
    /// Delete a schedule; jobs it already created are kept.
    Delete {
        /// The schedule's id or name.
        key: String,
    },
    /// Print the schedule's next fire times, in its time zone.
    Next {
        /// The schedule's id or name.
        key: String,
        /// How many fire times to print (1 to 1000).
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(
    clap::ArgGroup::new("timing")
        .required(true)
        .args(["cron", "every", "at"])
))]
pub(crate) struct CreateArgs {
    /// A unique name to address the schedule by (`A-Z a-z 0-9 _ - . :`).
    #[arg(long)]
    name: String,
    /// Fire on a cron expression: 5 fields, 6 with leading seconds, or a macro
    /// such as @daily (check it first with `taskwheel cron next`).
    #[arg(long, value_name = "EXPR")]
    cron: Option<String>,
    /// Fire at a fixed interval, such as `30s` or `1h 30m`, from --start-at or creation.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_spec)]
    every: Option<DurationSpec>,
    /// Fire once at this instant: RFC 3339, or a local date-time in --tz (2026-06-01T09:00).
    #[arg(long, value_name = "INSTANT")]
    at: Option<String>,
    /// The IANA time zone --cron and --at are read in [default: UTC].
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
    /// A local time skipped by DST: `shift` fires after the gap, `skip` does not fire [default: shift].
    #[arg(long, value_name = "shift|skip", value_parser = parse_choice::<DstGap>)]
    dst_gap: Option<DstGap>,
    /// A local time that happens twice: fire at the `first` or at `both` [default: first].
    #[arg(long, value_name = "first|both", value_parser = parse_choice::<DstOverlap>)]
    dst_overlap: Option<DstOverlap>,
    /// What each job is; selects the worker handler (`http`, `command`, or your own).
    #[arg(long)]
    kind: String,
    /// Queue to put the jobs on [default: default].
    #[arg(long)]
    queue: Option<String>,
    /// The jobs' input, as JSON (`@path` reads it from a file).
    #[arg(long, value_parser = parse_payload)]
    payload: Option<Value>,
    /// 0 to 9 or low, normal, high, critical [default: normal].
    #[arg(long)]
    priority: Option<Priority>,
    /// End an attempt that runs longer than this.
    #[arg(long, value_parser = parse_duration_spec)]
    timeout: Option<DurationSpec>,
    /// Attempts per job in all, the first included; 1 means no retries.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// A tag for the jobs (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// A tick while the previous job is still pending or running: `allow` it,
    /// `forbid` it (skip the tick), or `replace` the previous job [default: allow].
    #[arg(long, value_name = "allow|forbid|replace", value_parser = parse_choice::<OverlapPolicy>)]
    overlap: Option<OverlapPolicy>,
    /// Ticks missed during downtime or a pause: `skip` to the latest, `run_once`
    /// for all of them, or `catch_up` each (at most --catch-up-max) [default: skip].
    #[arg(
        long,
        value_name = "skip|run_once|catch_up",
        value_parser = parse_choice::<MisfirePolicy>
    )]
    misfire: Option<MisfirePolicy>,
    /// The most missed ticks `--misfire catch_up` fires (1 to 1000) [default: 10].
    #[arg(long, value_name = "N")]
    catch_up_max: Option<u32>,
    /// Give up a tick that could not fire within this long of its time.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_spec)]
    starting_deadline: Option<DurationSpec>,
    /// Spread each job's start by up to this long (a stable offset per tick).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_spec)]
    jitter: Option<DurationSpec>,
    /// No tick before this instant (RFC 3339); also anchors --every.
    #[arg(long)]
    start_at: Option<Timestamp>,
    /// No tick after this instant (RFC 3339).
    #[arg(long)]
    end_at: Option<Timestamp>,
    /// Create the schedule paused.
    #[arg(long)]
    paused: bool,
}

impl CreateArgs {
    fn into_request(self) -> ScheduleRequest {
        ScheduleRequest {
            name: Some(self.name),
            cron: self.cron,
            every: self.every,
            at: self.at,
            timezone: self.tz,
            dst_gap: self.dst_gap,
            dst_overlap: self.dst_overlap,
            job: Some(JobTemplate {
                queue: self.queue,
                kind: self.kind,
                payload: self.payload.unwrap_or(Value::Null),
                priority: self.priority,
                timeout: self.timeout,
                retry: self.max_attempts.map(|max_attempts| RetryPolicy {
                    max_attempts,
                    ..RetryPolicy::default()
                }),
                tags: self.tags,
            }),
            overlap: self.overlap,
            misfire: self.misfire,
            catch_up_max: self.catch_up_max,
            starting_deadline: self.starting_deadline,
            jitter: self.jitter,
            start_at: self.start_at,
            end_at: self.end_at,
            paused: self.paused.then_some(true),
        }
    }
}

/// Runs one schedule command against the server at `server`.
pub(crate) async fn run(server: &str, json: bool, cmd: ScheduleCommand) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    match cmd {
        ScheduleCommand::Create(args) => {
            let schedule = client
                .create_schedule(&args.into_request())
                .await
                .map_err(|e| explain(e, server))?;
            print_schedule(json, &schedule)?;
        }
        ScheduleCommand::List => {
            let list = client
                .list_schedules()
                .await
                .map_err(|e| explain(e, server))?;
            if json {
                return print_json(&list);
            }
            print!("{}", list_text(&list));
        }
        ScheduleCommand::Get { key } => {
            let schedule = client
                .get_schedule(&key)
                .await
                .map_err(|e| explain(e, server))?;
            if json {
                return print_json(&schedule);
            }
            print!("{}", schedule_detail(&schedule));
        }
        ScheduleCommand::Pause { key } => {
            let schedule = client
                .pause_schedule(&key)
                .await
                .map_err(|e| explain(e, server))?;
            print_schedule(json, &schedule)?;
        }
        ScheduleCommand::Resume { key } => {
            let schedule = client
                .resume_schedule(&key)
                .await
                .map_err(|e| explain(e, server))?;
            print_schedule(json, &schedule)?;
        }
        ScheduleCommand::Trigger { key } => {
            let job = client
                .trigger_schedule(&key)
                .await
                .map_err(|e| explain(e, server))?;
            if json {
                return print_json(&job);
            }
            println!("{}", triggered_text(&job));
        }
        ScheduleCommand::Delete { key } => {
            client
                .delete_schedule(&key)
                .await
                .map_err(|e| explain(e, server))?;
            // The API answers 204 without a body, so `--json` prints nothing.
            if !json {
                println!("deleted schedule {key}");
            }
        }
        ScheduleCommand::Next { key, count } => {
            if json {
                return print_json(
                    &client
                        .next_fires(&key, count)
                        .await
                        .map_err(|e| explain(e, server))?,
                );
            }
            // The answer is in UTC; the schedule says which zone a person expects.
            let schedule = client
                .get_schedule(&key)
                .await
                .map_err(|e| explain(e, server))?;
            let next = client
                .next_fires(&key, count)
                .await
                .map_err(|e| explain(e, server))?;
            print!("{}", next_text(&schedule, &next.next));
        }
    }
    Ok(())
}

fn print_schedule(json: bool, schedule: &ScheduleView) -> anyhow::Result<()> {
    if json {
        return print_json(schedule);
    }
    print!("{}", schedules_table(std::slice::from_ref(schedule)));
    Ok(())
}

fn schedules_table(schedules: &[ScheduleView]) -> String {
    let rows = schedules
        .iter()
        .map(|s| {
            let zone = &s.definition.timing.timezone;
            vec![
                s.definition.name.clone(),
                timing_text(&s.definition.timing),
                next_text_cell(s),
                s.last_fire_at
                    .map_or_else(|| "-".to_string(), |t| instant_in(t, zone)),
                yes_no(s.paused),
                s.health.fired.to_string(),
                s.health.missed.to_string(),
                s.health.failed.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "TIMING", "NEXT", "LAST", "PAUSED", "FIRED", "MISSED", "FAILED",
        ],
        rows,
    )
}

fn list_text(list: &ScheduleList) -> String {
    if list.schedules.is_empty() {
        "no schedules\n".to_string()
    } else {
        schedules_table(&list.schedules)
    }
}

/// `cron `0 3 * * *` in Europe/Paris`, `every 1h 30m`, `at 2026-06-01T09:00 in
/// Europe/Paris`. An interval is the same in every zone, so it names none.
fn timing_text(spec: &ScheduleSpec) -> String {
    let zone = &spec.timezone;
    match (&spec.cron, &spec.every, &spec.at) {
        (Some(cron), _, _) => format!("cron `{cron}` in {zone}"),
        (None, Some(every), _) => format!("every {every}"),
        (None, None, Some(at)) => format!("at {at} in {zone}"),
        (None, None, None) => "-".to_string(),
    }
}

/// The next tick; a schedule without one has ended (its `at` fired, or `end_at` passed).
fn next_text_cell(s: &ScheduleView) -> String {
    match s.next_fire_at {
        Some(t) => instant_in(t, &s.definition.timing.timezone),
        None => "ended".to_string(),
    }
}

/// A schedule's fields one per line, then its health.
fn schedule_detail(s: &ScheduleView) -> String {
    let def = &s.definition;
    let zone = &def.timing.timezone;
    let mut list: Vec<(&str, String)> = vec![
        ("id", s.id.to_string()),
        ("name", def.name.clone()),
        ("timing", timing_text(&def.timing)),
    ];
    if def.timing.cron.is_some() {
        list.push((
            "dst",
            format!(
                "gap {}, overlap {}",
                wire_name(def.timing.dst_gap),
                wire_name(def.timing.dst_overlap)
            ),
        ));
    }
    list.push(("paused", yes_no(s.paused)));
    list.push(("next_fire_at", next_text_cell(s)));
    if let Some(t) = s.last_fire_at {
        list.push(("last_fire_at", instant_in(t, zone)));
    }
    if let Some(t) = def.start_at {
        list.push(("start_at", instant_in(t, zone)));
    }
    if let Some(t) = def.end_at {
        list.push(("end_at", instant_in(t, zone)));
    }
    list.push(("overlap", wire_name(def.overlap)));
    let misfire = match def.misfire {
        MisfirePolicy::CatchUp => {
            format!("{} (at most {})", wire_name(def.misfire), def.catch_up_max)
        }
        other => wire_name(other),
    };
    list.push(("misfire", misfire));
    if let Some(d) = def.starting_deadline {
        list.push(("starting_deadline", d.to_string()));
    }
    if let Some(d) = def.jitter {
        list.push(("jitter", d.to_string()));
    }
    list.push((
        "job.queue",
        def.job.queue.clone().unwrap_or_else(|| "default".into()),
    ));
    list.push(("job.kind", def.job.kind.clone()));
    if let Some(p) = def.job.priority {
        list.push(("job.priority", p.get().to_string()));
    }
    if let Some(t) = def.job.timeout {
        list.push(("job.timeout", t.to_string()));
    }
    if let Some(retry) = &def.job.retry {
        list.push(("job.max_attempts", retry.max_attempts.to_string()));
    }
    if !def.job.tags.is_empty() {
        list.push(("job.tags", def.job.tags.join(", ")));
    }
    list.push(("job.payload", one_line(&def.job.payload.to_string())));
    list.push(("created_at", instant(s.created_at)));
    list.push(("updated_at", instant(s.updated_at)));

    let mut text = fields(&list);
    text.push_str("\nhealth:\n");
    text.push_str(&fields(&[
        ("fired", s.health.fired.to_string()),
        ("missed", s.health.missed.to_string()),
        ("skipped_overlap", s.health.skipped_overlap.to_string()),
        ("failed", s.health.failed.to_string()),
    ]));
    text
}

/// One fire time per line in the schedule's zone, or why there are none.
fn next_text(schedule: &ScheduleView, next: &[Timestamp]) -> String {
    if next.is_empty() {
        return "no more fire times: the schedule has ended\n".to_string();
    }
    let zone = &schedule.definition.timing.timezone;
    let mut text: String = next
        .iter()
        .map(|t| format!("{}\n", instant_in(*t, zone)))
        .collect();
    if schedule.paused {
        text.push_str("(paused: none of these fire until it is resumed)\n");
    }
    text
}

fn triggered_text(job: &JobView) -> String {
    format!(
        "created job {} (queue {}, kind {}, state {}, run_at {})",
        job.id,
        job.queue,
        job.kind,
        job.state,
        instant(job.run_at)
    )
}

/// `t` in `zone` to the second, with the zone's offset
/// (`2026-03-08T03:00:00-04:00`); in UTC, with `Z`, if this build does not
/// know the zone.
fn instant_in(t: Timestamp, zone: &str) -> String {
    match TimeZone::get(zone) {
        Ok(tz) => t.to_zoned(tz).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        Err(_) => instant(t),
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// A policy's wire spelling (`run_once`), which is also what the flags take.
fn wire_name(value: impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// A policy flag by its wire spelling; `-` may stand for `_` (`run-once`).
fn parse_choice<T: DeserializeOwned>(arg: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(arg.replace('-', "_"))).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;
    use std::time::Duration;
    use taskwheel_core::JobState;
    use taskwheel_core::recurring::{ScheduleDefinition, ScheduleHealth};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        schedule: ScheduleCommand,
    }

    fn parse(args: &[&str]) -> Result<ScheduleCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("schedule").chain(args.iter().copied()))
            .map(|c| c.schedule)
    }

    fn create(args: &[&str]) -> Result<ScheduleRequest, clap::Error> {
        let all = [&["create", "--name", "n", "--kind", "k"][..], args].concat();
        match parse(&all)? {
            ScheduleCommand::Create(a) => Ok(a.into_request()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_flags_build_the_request() {
        let req = create(&[
            "--cron",
            "0 3 * * *",
            "--tz",
            "Europe/Paris",
            "--dst-gap",
            "skip",
            "--dst-overlap",
            "both",
            "--queue",
            "q",
            "--payload",
            r#"{"url":"http://x"}"#,
            "--priority",
            "high",
            "--timeout",
            "30s",
            "--max-attempts",
            "3",
            "--tag",
            "a",
            "--overlap",
            "forbid",
            "--misfire",
            "catch_up",
            "--catch-up-max",
            "4",
            "--starting-deadline",
            "5m",
            "--jitter",
            "10s",
            "--start-at",
            "2026-06-01T00:00:00Z",
            "--end-at",
            "2026-12-01T00:00:00Z",
            "--paused",
        ])
        .unwrap();
        let secs = |s| Some(DurationSpec(Duration::from_secs(s)));
        let expected = ScheduleRequest {
            name: Some("n".into()),
            cron: Some("0 3 * * *".into()),
            every: None,
            at: None,
            timezone: Some("Europe/Paris".into()),
            dst_gap: Some(DstGap::Skip),
            dst_overlap: Some(DstOverlap::Both),
            job: Some(JobTemplate {
                queue: Some("q".into()),
                kind: "k".into(),
                payload: json!({"url": "http://x"}),
                priority: Some(Priority::HIGH),
                timeout: secs(30),
                retry: Some(RetryPolicy {
                    max_attempts: 3,
                    ..RetryPolicy::default()
                }),
                tags: vec!["a".into()],
            }),
            overlap: Some(OverlapPolicy::Forbid),
            misfire: Some(MisfirePolicy::CatchUp),
            catch_up_max: Some(4),
            starting_deadline: secs(300),
            jitter: secs(10),
            start_at: Some("2026-06-01T00:00:00Z".parse().unwrap()),
            end_at: Some("2026-12-01T00:00:00Z".parse().unwrap()),
            paused: Some(true),
        };
        assert_eq!(req, expected);
    }

    #[test]
    fn unset_flags_are_left_to_the_server() {
        let req = create(&["--every", "90s"]).unwrap();
        // Only what was given is sent: the server owns the defaults.
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"name": "n", "every": "1m 30s", "job": {"kind": "k", "payload": null}})
        );
        let req = create(&["--at", "2026-06-01T09:00", "--misfire", "run-once"]).unwrap();
        assert_eq!(req.at.as_deref(), Some("2026-06-01T09:00"));
        assert_eq!(req.misfire, Some(MisfirePolicy::RunOnce));
    }

    #[test]
    fn bad_flags_are_refused_by_the_parser() {
        for args in [
            // No timing, or two.
            &["create", "--name", "n", "--kind", "k"][..],
            &[
                "create",
                "--name",
                "n",
                "--kind",
                "k",
                "--cron",
                "* * * * *",
                "--every",
                "1m",
            ],
            &[
                "create",
                "--name",
                "n",
                "--kind",
                "k",
                "--every",
                "1m",
                "--at",
                "2026-01-01T00:00:00Z",
            ],
            &["create", "--kind", "k", "--every", "1m"],
            &["create", "--name", "n", "--every", "1m"],
            &["create", "--name", "n", "--kind", "k", "--every", "often"],
            &[
                "create",
                "--name",
                "n",
                "--kind",
                "k",
                "--every",
                "1m",
                "--overlap",
                "never",
            ],
            &[
                "create",
                "--name",
                "n",
                "--kind",
                "k",
                "--every",
                "1m",
                "--misfire",
                "all",
            ],
            &[
                "create",
                "--name",
                "n",
                "--kind",
                "k",
                "--every",
                "1m",
                "--dst-gap",
                "both",
            ],
            &[
                "create",
                "--name",
                "n",
                "--kind",
                "k",
                "--every",
                "1m",
                "--start-at",
                "tomorrow",
            ],
            &[
                "create",
                "--name",
                "n",
                "--kind",
                "k",
                "--every",
                "1m",
                "--payload",
                "{nope",
            ],
            &["get"],
            &["next", "n", "--count", "-1"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
    }

    #[test]
    fn next_counts_five_by_default() {
        let cmd = parse(&["next", "nightly"]).unwrap();
        assert!(
            matches!(&cmd, ScheduleCommand::Next { key, count: 5 } if key == "nightly"),
            "{cmd:?}"
        );
    }

    fn schedule(timing: ScheduleSpec) -> ScheduleView {
        let at: Timestamp = "2026-05-01T12:00:00.123Z".parse().unwrap();
        ScheduleView {
            id: "0192e4a0-0000-7000-8000-000000000000".parse().unwrap(),
            definition: ScheduleDefinition {
                name: "nightly".into(),
                timing,
                job: JobTemplate {
                    kind: "report".into(),
                    payload: json!({"day": "today"}),
                    ..JobTemplate::default()
                },
                overlap: OverlapPolicy::Forbid,
                misfire: MisfirePolicy::CatchUp,
                catch_up_max: 3,
                starting_deadline: None,
                jitter: None,
                start_at: None,
                end_at: None,
            },
            paused: false,
            next_fire_at: Some("2026-05-02T01:00:00Z".parse().unwrap()),
            last_fire_at: None,
            created_at: at,
            updated_at: at,
            health: ScheduleHealth {
                fired: 12,
                missed: 2,
                skipped_overlap: 1,
                failed: 3,
            },
        }
    }

    #[test]
    fn timings_read_as_written() {
        let cases = [
            (
                ScheduleSpec::cron("0 3 * * *", "Europe/Paris"),
                "cron `0 3 * * *` in Europe/Paris",
            ),
            (
                ScheduleSpec {
                    every: Some(DurationSpec(Duration::from_secs(5400))),
                    ..ScheduleSpec::default()
                },
                "every 1h 30m",
            ),
            (
                ScheduleSpec {
                    at: Some("2026-06-01T09:00".into()),
                    timezone: "Asia/Kathmandu".into(),
                    ..ScheduleSpec::default()
                },
                "at 2026-06-01T09:00 in Asia/Kathmandu",
            ),
            (ScheduleSpec::default(), "-"),
        ];
        for (spec, expected) in cases {
            assert_eq!(timing_text(&spec), expected, "{spec:?}");
        }
    }

    #[test]
    fn instants_are_shown_in_the_schedule_zone() {
        let t: Timestamp = "2026-03-08T07:00:00.5Z".parse().unwrap();
        let cases = [
            ("America/New_York", "2026-03-08T03:00:00-04:00"),
            ("UTC", "2026-03-08T07:00:00+00:00"),
            ("Asia/Kathmandu", "2026-03-08T12:45:00+05:45"),
            ("Mars/Base", "2026-03-08T07:00:00Z"),
        ];
        for (zone, expected) in cases {
            assert_eq!(instant_in(t, zone), expected, "{zone}");
        }
    }

    #[test]
    fn schedule_rows_show_what_matters() {
        let mut paused = schedule(ScheduleSpec::cron("0 3 * * *", "Europe/Paris"));
        paused.paused = true;
        paused.next_fire_at = None;
        paused.last_fire_at = Some("2026-05-01T01:00:00Z".parse().unwrap());
        let text = schedules_table(&[
            schedule(ScheduleSpec::cron("0 3 * * *", "Europe/Paris")),
            paused,
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME", "TIMING", "NEXT", "LAST", "PAUSED", "FIRED", "MISSED", "FAILED"
            ]
        );
        for part in [
            "nightly",
            "cron `0 3 * * *` in Europe/Paris",
            "2026-05-02T03:00:00+02:00",
            " - ",
            " no ",
        ] {
            assert!(lines[1].contains(part), "{part} missing in {text}");
        }
        assert!(lines[1].ends_with("12     2       3"), "{text}");
        for part in ["ended", "2026-05-01T03:00:00+02:00", " yes "] {
            assert!(lines[2].contains(part), "{part} missing in {text}");
        }
        let empty = ScheduleList { schedules: vec![] };
        assert_eq!(list_text(&empty), "no schedules\n");
    }

    #[test]
    fn detail_shows_fields_policies_and_health() {
        let text = schedule_detail(&schedule(ScheduleSpec::cron("0 3 * * *", "Europe/Paris")));
        let pairs: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k, v.trim()))
            .collect();
        for pair in [
            ("id", "0192e4a0-0000-7000-8000-000000000000"),
            ("timing", "cron `0 3 * * *` in Europe/Paris"),
            ("dst", "gap shift, overlap first"),
            ("paused", "no"),
            ("next_fire_at", "2026-05-02T03:00:00+02:00"),
            ("overlap", "forbid"),
            ("misfire", "catch_up (at most 3)"),
            ("job.queue", "default"),
            ("job.kind", "report"),
            ("job.payload", r#"{"day":"today"}"#),
            ("created_at", "2026-05-01T12:00:00Z"),
            ("fired", "12"),
            ("missed", "2"),
            ("skipped_overlap", "1"),
            ("failed", "3"),
        ] {
            assert!(pairs.contains(&pair), "{pair:?} missing in\n{text}");
        }
        assert!(text.contains("\nhealth:\n"), "{text}");
        assert!(!text.contains("last_fire_at"), "{text}");

        let every = ScheduleSpec {
            every: Some(DurationSpec(Duration::from_secs(60))),
            ..ScheduleSpec::default()
        };
        let text = schedule_detail(&schedule(every));
        assert!(
            !text.contains("dst:"),
            "an interval has no DST rules: {text}"
        );
    }

    #[test]
    fn next_times_are_local_and_say_when_there_are_none() {
        let mut s = schedule(ScheduleSpec::cron("0 3 * * *", "Europe/Paris"));
        let next = [
            "2026-05-02T01:00:00Z".parse().unwrap(),
            "2026-05-03T01:00:00Z".parse().unwrap(),
        ];
        assert_eq!(
            next_text(&s, &next),
            "2026-05-02T03:00:00+02:00\n2026-05-03T03:00:00+02:00\n"
        );
        s.paused = true;
        assert!(
            next_text(&s, &next).ends_with("(paused: none of these fire until it is resumed)\n")
        );
        assert_eq!(
            next_text(&s, &[]),
            "no more fire times: the schedule has ended\n"
        );
    }

    #[test]
    fn triggered_jobs_are_named() {
        let at: Timestamp = "2026-05-01T12:00:00Z".parse().unwrap();
        let job = JobView {
            id: "0192e4a0-0000-7000-8000-000000000001".parse().unwrap(),
            queue: "default".into(),
            kind: "report".into(),
            payload: Value::Null,
            priority: 5,
            state: JobState::Available,
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
            attempt: 0,
            cancel_requested: false,
            lease: None,
            attempts: vec![],
            unique_key: None,
            progress: None,
            deduplicated: None,
            unique: None,
        };
        assert_eq!(
            triggered_text(&job),
            "created job 0192e4a0-0000-7000-8000-000000000001 \
             (queue default, kind report, state available, run_at 2026-05-01T12:00:00Z)"
        );
    }

    #[test]
    fn policies_parse_by_their_wire_names() {
        for name in ["allow", "forbid", "replace"] {
            let p: OverlapPolicy = parse_choice(name).unwrap();
            assert_eq!(wire_name(p), name);
        }
        for name in ["skip", "run_once", "catch_up"] {
            let p: MisfirePolicy = parse_choice(name).unwrap();
            assert_eq!(wire_name(p), name);
        }
        assert_eq!(
            parse_choice::<MisfirePolicy>("catch-up"),
            Ok(MisfirePolicy::CatchUp)
        );
        let err = parse_choice::<OverlapPolicy>("never").unwrap_err();
        assert!(err.contains("`allow`, `forbid`, `replace`"), "{err}");
    }
}
