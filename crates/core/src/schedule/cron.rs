//! Cron expressions: parsing them with croner (with error messages that name
//! the cron field at fault), and turning croner's wall-clock matches into
//! real instants under the DST rules documented in [`super`].
//!
//! Croner is used only as a wall-clock matcher: every search runs on
//! [`jiff::civil::DateTime`], which has no time zone, so croner never applies
//! its own DST rules. Its rules classify a pattern as fixed-time only when
//! second, minute *and* hour are single values, whereas ours look at the hour
//! field alone and offer per-schedule policies, so the mapping from wall clock
//! to instants happens here, in [`CronTiming::next_after`].

use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, CronComponent, YEAR_LOWER_LIMIT, YEAR_UPPER_LIMIT};
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::{DstGap, DstOverlap};
use crate::error::FieldError;

/// The macros users may write instead of five fields. `@midnight` is Vixie's
/// spelling of `@daily`; croner does not know it, so it is translated here.
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "@yearly"),
    ("@annually", "@annually"),
    ("@monthly", "@monthly"),
    ("@weekly", "@weekly"),
    ("@daily", "@daily"),
    ("@midnight", "@daily"),
    ("@hourly", "@hourly"),
];

/// Names and allowed values of the fields of a 6-field expression; a 5-field
/// expression is the same without the first.
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12"),
    ("day-of-week", "0-7"),
];

/// Any pattern that can fire does so within one 400-year Gregorian cycle
/// (after which dates, weekdays and leap days repeat), so a search that finds
/// nothing in [`PROBE_YEARS`] proves it never will.
const PROBE_FROM: DateTime = jiff::civil::datetime(2000, 1, 1, 0, 0, 0, 0);
const PROBE_YEARS: &str = "2000-2399";

/// A parsed cron expression and the facts about it that the DST rules need.
#[derive(Debug, Clone)]
pub(crate) struct CronTiming {
    /// The expression as the user wrote it (trimmed), for display.
    pub(crate) expr: String,
    cron: Cron,
    /// The hour field covers all 24 hours (`*`, `*/1`, `0-23`): the schedule
    /// is about elapsed time within the day, so it follows real time through
    /// DST changes instead of the gap/overlap policies.
    follows_real_time: bool,
}

/// What one matching wall-clock time is in real time.
enum WallTime {
    /// It happens once.
    Once(Timestamp),
    /// The clocks go back over it: it happens twice, earlier first.
    Twice(Timestamp, Timestamp),
    /// The clocks skip it; the value is the first instant after the gap.
    Skipped(Timestamp),
}

impl CronTiming {
    /// Parses `expr`; every error names the field `cron`.
    pub(crate) fn parse(expr: &str) -> Result<Self, FieldError> {
        let expr = expr.trim();
        let cron = parse_cron(expr)?;
        // A pattern whose day, month and weekday fields never meet would
        // otherwise make every search run to croner's year-5000 limit.
        let fires = within_one_cycle(&cron)
            .find_next_occurrence(&PROBE_FROM, true)
            .is_ok();
        if !fires {
            return Err(FieldError::new(
                "cron",
                format!(
                    "`{expr}` never fires: no date matches its day-of-month, month and day-of-week fields"
                ),
            ));
        }
        let follows_real_time = cron.pattern.hours.values().len() == 24;
        Ok(Self {
            expr: expr.to_string(),
            cron,
            follows_real_time,
        })
    }

    /// Whether `wall` (a local date and time) matches the expression.
    #[cfg(test)]
    pub(crate) fn matches(&self, wall: DateTime) -> bool {
        self.cron.is_time_matching(&wall).unwrap_or(false)
    }

    /// Whether the hour field covers all hours (see the module doc of [`super`]).
    pub(crate) fn follows_real_time(&self) -> bool {
        self.follows_real_time
    }

    /// The first fire time strictly after `t` in `tz`, or `None` when there
    /// is none before the end of croner's or jiff's range.
    pub(crate) fn next_after(
        &self,
        tz: &TimeZone,
        gap: DstGap,
        overlap: DstOverlap,
        t: Timestamp,
    ) -> Option<Timestamp> {
        let policy = Policy {
            shift: !self.follows_real_time && gap == DstGap::Shift,
            both: self.follows_real_time || overlap == DstOverlap::Both,
        };
        let ahead = self.first_from(tz, policy, t, tz.to_datetime(t), false);
        // The walk above moves forward on the wall clock. When `t` is in the
        // first pass of a repeated range, the second pass (same wall times,
        // later instants) lies ahead in real time but behind on the wall
        // clock, so walk it too, from its start, and keep the earlier answer.
        if policy.both
            && let Some(second_pass) = second_pass_start(tz, t)
        {
            let repeat = self.first_from(tz, policy, t, tz.to_datetime(second_pass), true);
            return match (ahead, repeat) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        ahead
    }

    /// Walks wall-clock matches from `wall` and returns the first instant
    /// after `t` that one of them fires at. Outside a repeated range, wall
    /// order is real-time order, so the first hit is the earliest.
    fn first_from(
        &self,
        tz: &TimeZone,
        policy: Policy,
        t: Timestamp,
        mut wall: DateTime,
        mut inclusive: bool,
    ) -> Option<Timestamp> {
        loop {
            // An error here is croner's search limit (year 5000) or the end
            // of jiff's range: either way there is no next fire time.
            let m = self.cron.find_next_occurrence(&wall, inclusive).ok()?;
            inclusive = false;
            wall = m;
            match locate(tz, m)? {
                WallTime::Once(at) if at > t => return Some(at),
                WallTime::Once(_) => {}
                WallTime::Twice(first, _) if first > t => return Some(first),
                WallTime::Twice(_, second) if policy.both && second > t => return Some(second),
                WallTime::Twice(..) => {}
                WallTime::Skipped(after_gap) => {
                    if policy.shift && after_gap > t {
                        return Some(after_gap);
                    }
                    // Nothing inside the gap exists: resume where it ends
                    // rather than stepping through it match by match.
                    wall = tz.to_datetime(after_gap);
                    inclusive = true;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Policy {
    /// A skipped wall time fires at the first instant after the gap.
    shift: bool,
    /// A repeated wall time fires at both of its instants.
    both: bool,
}

/// A copy of `cron` that only matches in [`PROBE_YEARS`], so that the search
/// proving it never fires stops after one cycle instead of croner's year 5000
/// (a tenth of the time).
fn within_one_cycle(cron: &Cron) -> Cron {
    let mut probe = cron.clone();
    // 0 = no L/W/# features: the year field has none. Parsing a fixed range
    // into a fresh component cannot fail; if it ever did, the unbounded copy
    // gives the same answer, only slower.
    let mut years = CronComponent::new(YEAR_LOWER_LIMIT as u16, YEAR_UPPER_LIMIT as u16, 0, 0);
    if years.parse(PROBE_YEARS).is_ok() {
        probe.pattern.years = years;
    }
    probe
}

/// Where a wall-clock time falls in real time in `tz`. `None` only at the
/// edges of jiff's representable range.
fn locate(tz: &TimeZone, wall: DateTime) -> Option<WallTime> {
    Some(match tz.to_ambiguous_timestamp(wall).offset() {
        AmbiguousOffset::Unambiguous { offset } => WallTime::Once(offset.to_timestamp(wall).ok()?),
        AmbiguousOffset::Fold { before, after } => {
            let a = before.to_timestamp(wall).ok()?;
            let b = after.to_timestamp(wall).ok()?;
            WallTime::Twice(a.min(b), a.max(b))
        }
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, the wall time names an instant
            // before the transition; the next transition is the gap's end.
            let before_gap = after.to_timestamp(wall).ok()?;
            WallTime::Skipped(tz.following(before_gap).next()?.timestamp())
        }
    })
}

/// When `t` is in the first pass of a repeated range of wall-clock times,
/// the instant the second pass starts (the transition that repeats them).
fn second_pass_start(tz: &TimeZone, t: Timestamp) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(tz.to_datetime(t)).offset() {
        AmbiguousOffset::Fold { before, .. } if tz.to_offset(t) == before => tz
            .following(t)
            .next()
            .map(|transition| transition.timestamp()),
        _ => None,
    }
}

/// Parses with croner, configured for our contract: 5 fields, or 6 with
/// leading seconds; no year field; Vixie's OR rule for day-of-month and
/// day-of-week (croner's default).
fn parse_cron(expr: &str) -> Result<Cron, FieldError> {
    if expr.is_empty() {
        return Err(FieldError::new("cron", "must not be empty"));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    if expr.starts_with('@') {
        let lower = expr.to_ascii_lowercase();
        let Some((_, croner_name)) = MACROS.iter().find(|(name, _)| *name == lower) else {
            let names: Vec<&str> = MACROS.iter().map(|(name, _)| *name).collect();
            return Err(FieldError::new(
                "cron",
                format!(
                    "`{expr}` is not a known macro; use one of {}",
                    names.join(" ")
                ),
            ));
        };
        return parser
            .parse(croner_name)
            .map_err(|e| FieldError::new("cron", format!("`{expr}`: {}", croner_message(&e))));
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if !(5..=6).contains(&fields.len()) {
        return Err(FieldError::new(
            "cron",
            format!(
                "`{expr}` has {} field{}; expected 5 (minute hour day-of-month month day-of-week) \
                 or 6 (second first)",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    parser
        .parse(expr)
        .map_err(|e| explain_parse_error(&parser, expr, &fields, &e))
}

/// Croner reports *what* is wrong ("Number out of bounds.") but not *where*.
/// Find the field by parsing each one alone among wildcards, and say which
/// field, which value, and what it allows.
fn explain_parse_error(
    parser: &CronParser,
    expr: &str,
    fields: &[&str],
    whole: &CronError,
) -> FieldError {
    let names = &FIELDS[6 - fields.len()..];
    for (i, (value, (name, range))) in fields.iter().zip(names).enumerate() {
        let probe: Vec<&str> = (0..fields.len())
            .map(|j| if i == j { *value } else { "*" })
            .collect();
        let Err(e) = parser.parse(&probe.join(" ")) else {
            continue;
        };
        let detail = match value.parse::<u32>() {
            // The common mistake gets the plain message.
            Ok(n) if !in_range(n, range) => format!("{n} is out of range {range}"),
            _ => format!(
                "`{value}`: {} (allowed: {range}{})",
                croner_message(&e),
                extras(name)
            ),
        };
        return FieldError::new("cron", format!("{name} field: {detail} (in `{expr}`)"));
    }
    FieldError::new("cron", format!("`{expr}`: {}", croner_message(whole)))
}

fn in_range(n: u32, range: &str) -> bool {
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    let (lo, hi) = (lo.parse().unwrap_or(0), hi.parse().unwrap_or(u32::MAX));
    (lo..=hi).contains(&n)
}

/// The extra syntax a field accepts beyond numbers, `*`, `,`, `-` and `/`.
fn extras(name: &str) -> &'static str {
    match name {
        "day-of-month" => ", L, W, ?",
        "month" => " or JAN-DEC",
        "day-of-week" => " or SUN-SAT, L, #, ?",
        _ => "",
    }
}

/// Croner's message without its variant prefix and final period, lowercased
/// at the start so it reads inside our sentence.
fn croner_message(e: &CronError) -> String {
    let text = match e {
        CronError::ComponentError(m) | CronError::InvalidPattern(m) => m.clone(),
        CronError::IllegalCharacters(m) => m.replace("CronPattern contains", "contains"),
        other => other.to_string(),
    };
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
