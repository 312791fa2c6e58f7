//! `taskwheel cron next`: prints when a cron expression fires, so a user can
//! check an expression, and what it does on DST days, before scheduling a job
//! with it. The evaluation is taskwheel-core's; this module only parses the
//! command line and prints.

use std::io::Write;

use anyhow::Context;
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use taskwheel_core::schedule::{Schedule, ScheduleSpec, format_in_zone};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum CronCommand {
    /// Print the next fire times of a cron expression.
    Next {
        /// 5 fields (minute hour day-of-month month day-of-week), 6 with
        /// leading seconds, or a macro such as @daily.
        expr: String,
        /// The IANA time zone the expression is read in.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Start after this instant: RFC 3339, or a local date-time in --tz
        /// (2026-03-08T00:00). Default: now.
        #[arg(long)]
        from: Option<String>,
        /// How many fire times to print.
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
}

pub(crate) fn run(cmd: CronCommand) -> anyhow::Result<()> {
    match cmd {
        CronCommand::Next {
            expr,
            tz,
            from,
            count,
        } => {
            let lines = next_fire_times(&expr, &tz, from.as_deref(), Timestamp::now(), count)?;
            let mut out = std::io::stdout().lock();
            for line in lines {
                match writeln!(out, "{line}") {
                    Ok(()) => {}
                    // The reader has seen enough (`| head -1`): not an error.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
    }
}

/// The first `count` fire times of `expr` in `tz` after `from` (or `now`),
/// each as RFC 3339 with the zone's offset: `2026-03-08T03:00:00-04:00`.
fn next_fire_times(
    expr: &str,
    tz: &str,
    from: Option<&str>,
    now: Timestamp,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    // The anchor only matters for `every` schedules; a cron one ignores it.
    let schedule = Schedule::new(&ScheduleSpec::cron(expr, tz), now)?;
    let zone = schedule.timezone();
    let from = match from {
        Some(text) => parse_from(text, zone)?,
        None => now,
    };
    Ok(schedule
        .upcoming(from)
        .take(count)
        .map(|t| format_in_zone(t, zone))
        .collect())
}

/// `--from` as an RFC 3339 instant, or as a local date-time in `zone`.
fn parse_from(text: &str, zone: &TimeZone) -> anyhow::Result<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let local: DateTime = text.parse().with_context(|| {
        format!(
            "--from: `{text}` is neither an RFC 3339 instant (2026-03-08T00:00:00Z) \
             nor a local date-time (2026-03-08T00:00)"
        )
    })?;
    Ok(local
        .to_zoned(zone.clone())
        .with_context(|| format!("--from: `{text}` is out of range"))?
        .timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn prints_fire_times_with_the_zone_offset() {
        let lines = next_fire_times(
            "30 2 * * *",
            "America/New_York",
            Some("2026-03-07T12:00:00-05:00"),
            now(),
            3,
        )
        .unwrap();
        assert_eq!(
            lines,
            [
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00",
                "2026-03-10T02:30:00-04:00"
            ]
        );
    }

    #[test]
    fn from_defaults_to_now_and_accepts_local_times() {
        let utc = next_fire_times("@daily", "UTC", None, now(), 1).unwrap();
        assert_eq!(utc, ["2026-01-02T00:00:00+00:00"]);
        let local = next_fire_times(
            "0 9 * * *",
            "Asia/Kathmandu",
            Some("2026-06-01T09:00"),
            now(),
            1,
        )
        .unwrap();
        assert_eq!(local, ["2026-06-02T09:00:00+05:45"]);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let err = next_fire_times("61 * * * *", "UTC", None, now(), 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cron: minute field: 61 is out of range 0-59 (in `61 * * * *`)"
        );
        let err = next_fire_times("* * * * *", "Mars/Base", None, now(), 1).unwrap_err();
        assert!(
            err.to_string().starts_with("timezone: `Mars/Base`"),
            "{err}"
        );
        let err = next_fire_times("* * * * *", "UTC", Some("soon"), now(), 1).unwrap_err();
        assert!(err.to_string().starts_with("--from: `soon`"), "{err}");
    }
}
