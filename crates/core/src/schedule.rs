//! When a schedule fires: the timing half of a schedule (the job template is
//! the other half, kept elsewhere). This module owns the user-facing spec of
//! that timing, its validation, and the pure function from "an instant" to
//! "the next fire time after it". Nothing here stores, sleeps or reads a
//! clock; the caller passes every instant in.
//!
//! # Timing
//!
//! A [`ScheduleSpec`] gives exactly one of:
//! - `cron`: 5 fields (`minute hour day-of-month month day-of-week`), or 6
//!   with leading seconds; ranges, lists, steps, month and weekday names
//!   (`MON-FRI`), the macros `@yearly @annually @monthly @weekly @daily
//!   @midnight @hourly`, and croner's `L`, `W` and `#`. When both day-of-month
//!   and day-of-week are restricted, a day matches when *either* does
//!   (Vixie's rule; croner's `+` prefix on day-of-week asks for both).
//!   Expressions are matched against the local wall clock in `timezone`.
//!   An expression that can never fire (`0 0 30 2 *`) is rejected.
//! - `every`: a fixed interval (at least 1s) of elapsed time. Ticks are
//!   `anchor + k·interval` for k = 0, 1, 2, …, so they never drift; the
//!   anchor is given when the schedule is built (normally its creation time).
//!   Time zones and DST do not affect intervals.
//! - `at`: one instant. RFC 3339 with an offset names it exactly; a local
//!   date-time without offset (`2026-12-24T18:00`) is read in `timezone`
//!   with the DST rules below (a one-shot fires once, so a repeated local
//!   time always means its first occurrence).
//!
//! `timezone` is an IANA name (default `UTC`).
//!
//! # DST rules for cron
//!
//! Daylight saving time makes some local times not exist (spring forward:
//! the gap) and others happen twice (fall back: the overlap).
//!
//! - **Gap**, with `dst_gap: shift` (the default): a tick whose local time does
//!   not exist fires once, at the first instant after the gap. A daily 02:30
//!   in America/New_York runs at 03:00 EDT on spring-forward day; several
//!   skipped ticks (`*/15 2 * * *`) still fire only once. With
//!   `dst_gap: skip`, skipped ticks do not fire.
//! - **Overlap**, with `dst_overlap: first` (the default): a tick whose local
//!   time happens twice fires once, at the first occurrence. A daily 01:30 in
//!   America/New_York runs at 01:30 EDT, not again at 01:30 EST. With
//!   `dst_overlap: both`, it fires at both occurrences.
//! - **Hour field covering every hour** (`*`, `*/1`, `0-23`): the schedule is
//!   about elapsed time within the day (`*/15 * * * *`), so it follows real
//!   time whatever the policies say: it fires at every real occurrence of a
//!   repeated local time (through both passes of the repeated hour, strictly
//!   increasing in real time), and a local time that does not exist has no
//!   occurrence, so it does not fire (the next real tick comes at most an
//!   hour later). This is Vixie cron's treatment of wildcard-hour jobs.
//!
//! Fire times are strictly increasing: [`Schedule::next_after`] is "the first
//! fire time strictly after `t`", and [`Schedule::upcoming`] chains it.

mod cron;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Serialize};

use crate::duration::DurationSpec;
use crate::error::FieldError;

use self::cron::CronTiming;

/// The time zone a spec without one uses.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// The shortest accepted `every`: finer ticks would be a busy loop, not a schedule.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What a cron tick does when its local time is skipped by a DST gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DstGap {
    /// Fire once at the first instant after the gap.
    #[default]
    Shift,
    /// Do not fire.
    Skip,
}

/// What a cron tick does when its local time happens twice (DST overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DstOverlap {
    /// Fire once, at the first occurrence.
    #[default]
    First,
    /// Fire at both occurrences.
    Both,
}

/// The timing of a schedule as users write it (JSON, CLI). Exactly one of
/// `cron`, `every` and `at` is given; [`Schedule::new`] checks the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<DurationSpec>,
    /// An RFC 3339 instant, or a local date-time read in `timezone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default)]
    pub dst_gap: DstGap,
    #[serde(default)]
    pub dst_overlap: DstOverlap,
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_string()
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        Self {
            cron: None,
            every: None,
            at: None,
            timezone: default_timezone(),
            dst_gap: DstGap::default(),
            dst_overlap: DstOverlap::default(),
        }
    }
}

impl ScheduleSpec {
    /// A cron spec in `timezone` with the default DST policies.
    pub fn cron(expr: impl Into<String>, timezone: impl Into<String>) -> Self {
        Self {
            cron: Some(expr.into()),
            timezone: timezone.into(),
            ..Self::default()
        }
    }
}

/// A validated schedule timing: ask it when it fires next.
#[derive(Debug, Clone)]
pub struct Schedule {
    timing: Timing,
    tz: TimeZone,
    dst_gap: DstGap,
    dst_overlap: DstOverlap,
}

#[derive(Debug, Clone)]
enum Timing {
    // Boxed: a parsed cron pattern is ten times the size of the other kinds.
    Cron(Box<CronTiming>),
    Every {
        interval: Duration,
        anchor: Timestamp,
    },
    At(Timestamp),
}

impl Schedule {
    /// Validates `spec`. `anchor` is where an `every` schedule's ticks are
    /// counted from (normally the instant the schedule was created); the
    /// other kinds ignore it. Errors name the field at fault.
    pub fn new(spec: &ScheduleSpec, anchor: Timestamp) -> Result<Self, FieldError> {
        let tz = TimeZone::get(&spec.timezone).map_err(|_| {
            FieldError::new(
                "timezone",
                format!(
                    "`{}` is not a known IANA time zone (e.g. UTC, Europe/Paris, America/New_York)",
                    spec.timezone
                ),
            )
        })?;
        let given: Vec<&str> = [
            spec.cron.as_ref().map(|_| "cron"),
            spec.every.as_ref().map(|_| "every"),
            spec.at.as_ref().map(|_| "at"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let timing = match (&spec.cron, spec.every, &spec.at) {
            _ if given.len() > 1 => {
                return Err(FieldError::new(
                    given[1],
                    format!(
                        "give only one of cron, every and at (got {})",
                        given.join(", ")
                    ),
                ));
            }
            (Some(expr), _, _) => Timing::Cron(Box::new(CronTiming::parse(expr)?)),
            (_, Some(every), _) => {
                if every.0 < MIN_INTERVAL {
                    return Err(FieldError::new(
                        "every",
                        format!("`{every}` is shorter than the minimum of 1s"),
                    ));
                }
                Timing::Every {
                    interval: every.0,
                    anchor,
                }
            }
            (_, _, Some(at)) => Timing::At(parse_at(at, &tz, spec.dst_gap)?),
            (None, None, None) => {
                return Err(FieldError::new("cron", "give one of cron, every or at"));
            }
        };
        Ok(Self {
            timing,
            tz,
            dst_gap: spec.dst_gap,
            dst_overlap: spec.dst_overlap,
        })
    }

    /// The first fire time strictly after `t`; `None` when there is none
    /// (an `at` that has passed, or the end of representable time).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.timing {
            Timing::Cron(cron) => cron.next_after(&self.tz, self.dst_gap, self.dst_overlap, t),
            Timing::Every { interval, anchor } => every_next_after(*anchor, *interval, t),
            Timing::At(at) => (*at > t).then_some(*at),
        }
    }

    /// The fire times strictly after `t`, in increasing order.
    pub fn upcoming(&self, t: Timestamp) -> Upcoming<'_> {
        Upcoming {
            schedule: self,
            after: Some(t),
        }
    }

    /// The time zone the schedule is evaluated in (and its times are best shown in).
    pub fn timezone(&self) -> &TimeZone {
        &self.tz
    }
}

/// Iterator of fire times from [`Schedule::upcoming`].
#[derive(Debug, Clone)]
pub struct Upcoming<'a> {
    schedule: &'a Schedule,
    /// `None` once the schedule has no more fire times.
    after: Option<Timestamp>,
}

impl Iterator for Upcoming<'_> {
    type Item = Timestamp;

    fn next(&mut self) -> Option<Timestamp> {
        let next = self.schedule.next_after(self.after?);
        self.after = next;
        next
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let zone = self.tz.iana_name().unwrap_or(DEFAULT_TIMEZONE);
        match &self.timing {
            Timing::Cron(cron) => {
                write!(f, "cron `{}` in {zone}", cron.expr)?;
                // The policies only matter, and are only shown, when the
                // hour field is restricted.
                if !cron.follows_real_time() {
                    if self.dst_gap != DstGap::default() {
                        f.write_str(", dst_gap skip")?;
                    }
                    if self.dst_overlap != DstOverlap::default() {
                        f.write_str(", dst_overlap both")?;
                    }
                }
                Ok(())
            }
            Timing::Every { interval, anchor } => write!(
                f,
                "every {} from {}",
                DurationSpec(*interval),
                show(*anchor, &self.tz)
            ),
            Timing::At(at) => write!(f, "at {}", show(*at, &self.tz)),
        }
    }
}

/// An instant as RFC 3339 with the offset it has in `tz`: `2026-03-08T03:00:00-04:00`.
pub fn format_in_zone(t: Timestamp, tz: &TimeZone) -> String {
    show(t, tz).to_string()
}

fn show(t: Timestamp, tz: &TimeZone) -> impl fmt::Display {
    t.display_with_offset(tz.to_offset(t))
}

/// `anchor + k·interval` for the smallest k ≥ 0 that lands after `t`.
fn every_next_after(anchor: Timestamp, interval: Duration, t: Timestamp) -> Option<Timestamp> {
    if t < anchor {
        return Some(anchor);
    }
    // Whole-nanosecond arithmetic, so ticks are exact however many have passed.
    let step = i128::try_from(interval.as_nanos()).ok()?;
    let since = t.as_nanosecond() - anchor.as_nanosecond();
    let k = since / step + 1;
    Timestamp::from_nanosecond(anchor.as_nanosecond().checked_add(k.checked_mul(step)?)?).ok()
}

/// `at` as an RFC 3339 instant, or as a local date-time in `tz`.
fn parse_at(text: &str, tz: &TimeZone, gap: DstGap) -> Result<Timestamp, FieldError> {
    let text = text.trim();
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let local: DateTime = text.parse().map_err(|_| {
        FieldError::new(
            "at",
            format!(
                "`{text}` is neither an RFC 3339 instant (2026-03-08T09:00:00Z) \
                 nor a local date-time (2026-03-08T09:00)"
            ),
        )
    })?;
    let zone = tz.iana_name().unwrap_or(DEFAULT_TIMEZONE);
    let out_of_range = || FieldError::new("at", format!("`{text}` is out of range"));
    match tz.to_ambiguous_timestamp(local).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(local),
        // A one-shot fires once: a repeated local time means its first occurrence.
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(local),
        AmbiguousOffset::Gap { after, .. } => {
            if gap == DstGap::Skip {
                return Err(FieldError::new(
                    "at",
                    format!(
                        "`{text}` does not exist in {zone} (the clocks skip it) and dst_gap is skip"
                    ),
                ));
            }
            let before_gap = after.to_timestamp(local).map_err(|_| out_of_range())?;
            return tz
                .following(before_gap)
                .next()
                .map(|transition| transition.timestamp())
                .ok_or_else(out_of_range);
        }
    }
    .map_err(|_| out_of_range())
}
