//! What a schedule does when its time comes: which ticks to fire after a
//! delay or downtime (misfire policy, starting deadline, end), what to do when
//! its previous run is still going (overlap policy), and the stable jitter
//! offset. Pure: the store calls [`plan`] inside the transaction that creates
//! the jobs, so the decision and its effect are one atomic step.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schedule::Schedule;
use crate::time::add;

/// A schedule's id: a UUIDv7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScheduleId(pub Uuid);

impl ScheduleId {
    pub fn new_v7(at: Timestamp) -> Self {
        Self(crate::job::JobId::new_v7(at).0)
    }
}

impl fmt::Display for ScheduleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ScheduleId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// What happens to a tick while a job of the same schedule is still pending or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Fire anyway: runs may overlap.
    #[default]
    Allow,
    /// Skip the tick (counted as `skipped_overlap`).
    Forbid,
    /// Cancel the previous run (pending: at once; running: through its heartbeat), then fire.
    Replace,
}

/// Which missed ticks fire after downtime or a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// Fire only the most recent missed tick.
    #[default]
    Skip,
    /// Fire one job for all the missed ticks, for the earliest of them.
    RunOnce,
    /// Fire every missed tick, at most `catch_up_max` (the most recent ones).
    CatchUp,
}

/// The default bound on `catch_up`.
pub const DEFAULT_CATCH_UP_MAX: u32 = 10;
/// The most ticks one planning pass looks at; beyond that, missed ticks are
/// counted only up to this number and the plan jumps to the latest one.
pub const SCAN_LIMIT: usize = 10_000;

/// The policies that shape a firing plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirePolicy {
    pub misfire: MisfirePolicy,
    pub catch_up_max: u32,
    /// A tick more than this late is dropped (counted as missed) whatever the misfire policy.
    pub starting_deadline: Option<Duration>,
    /// No tick after this instant fires.
    pub end_at: Option<Timestamp>,
}

/// The outcome of planning: ticks to fire now, ticks given up, and the next tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    pub fire: Vec<Timestamp>,
    pub missed: u64,
    /// `None` when the schedule has no more ticks.
    pub next: Option<Timestamp>,
}

/// Plans the ticks of `schedule` that are due at `now`, starting with the
/// earliest unfired tick `due` (which must itself be a tick, `<= now`).
pub fn plan(schedule: &Schedule, due: Timestamp, now: Timestamp, policy: &FirePolicy) -> FirePlan {
    let end = policy.end_at.map_or(now, |end| end.min(now));
    let mut ticks = Vec::new();
    let mut cursor = Some(due);
    while let Some(t) = cursor {
        if t > end || ticks.len() >= SCAN_LIMIT {
            break;
        }
        ticks.push(t);
        cursor = schedule.next_after(t);
    }
    // Too many to walk (long downtime on a dense schedule): jump to the latest tick.
    if let Some(t) = cursor.filter(|t| *t <= end) {
        if let Some(latest) = latest_at_or_before(schedule, t, end) {
            ticks.push(latest);
        }
        cursor = schedule.next_after(end);
    }
    let scanned = ticks.len() as u64;
    if let Some(deadline) = policy.starting_deadline {
        ticks.retain(|t| add(*t, deadline) >= now);
    }
    let fire = match (policy.misfire, ticks.len()) {
        (_, 0) => Vec::new(),
        (MisfirePolicy::Skip, _) => vec![*ticks.last().expect("not empty")],
        (MisfirePolicy::RunOnce, _) => vec![ticks[0]],
        (MisfirePolicy::CatchUp, n) => {
            let keep = (policy.catch_up_max.max(1) as usize).min(n);
            ticks.split_off(n - keep)
        }
    };
    let next = cursor.filter(|t| policy.end_at.is_none_or(|end| *t <= end));
    FirePlan {
        missed: scanned - fire.len() as u64,
        fire,
        next,
    }
}

/// The latest tick in `[from, until]`, found by widening a window back from
/// `until` so a dense schedule after a long outage costs a handful of steps.
fn latest_at_or_before(
    schedule: &Schedule,
    from: Timestamp,
    until: Timestamp,
) -> Option<Timestamp> {
    let mut window = Duration::from_secs(1);
    loop {
        let start = until
            .checked_sub(jiff::SignedDuration::try_from(window).ok()?)
            .unwrap_or(from)
            .max(from);
        // `start` itself may be a tick: look from just before it.
        let mut latest = None;
        let mut cursor = schedule.next_after(
            start
                .checked_sub(jiff::SignedDuration::from_nanos(1))
                .ok()?,
        );
        let mut steps = 0;
        while let Some(t) = cursor.filter(|t| *t <= until) {
            latest = Some(t);
            steps += 1;
            if steps > SCAN_LIMIT {
                break;
            }
            cursor = schedule.next_after(t);
        }
        if latest.is_some() || start == from {
            return latest;
        }
        window = window.saturating_mul(8);
    }
}

/// A stable per-schedule delay in `[0, jitter)`, so many schedules on the same
/// tick spread out the same way every time.
pub fn jitter_offset(id: ScheduleId, jitter: Duration) -> Duration {
    let millis = jitter.as_millis() as u64;
    if millis == 0 {
        return Duration::ZERO;
    }
    // FNV-1a over the id: stable across releases and platforms, unlike std's hasher.
    let hash =
        id.0.as_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
    Duration::from_millis(hash % millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::DurationSpec;
    use crate::schedule::ScheduleSpec;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn every(secs: u64) -> Schedule {
        let spec = ScheduleSpec {
            every: Some(DurationSpec(Duration::from_secs(secs))),
            ..ScheduleSpec::default()
        };
        Schedule::new(&spec, t("2026-01-01T00:00:00Z")).unwrap()
    }

    fn policy(misfire: MisfirePolicy) -> FirePolicy {
        FirePolicy {
            misfire,
            catch_up_max: 3,
            starting_deadline: None,
            end_at: None,
        }
    }

    #[test]
    fn on_time_every_policy_fires_the_one_due_tick() {
        for misfire in [
            MisfirePolicy::Skip,
            MisfirePolicy::RunOnce,
            MisfirePolicy::CatchUp,
        ] {
            let p = plan(
                &every(10),
                t("2026-01-01T00:00:10Z"),
                t("2026-01-01T00:00:10.002Z"),
                &policy(misfire),
            );
            assert_eq!(p.fire, vec![t("2026-01-01T00:00:10Z")], "{misfire:?}");
            assert_eq!(p.missed, 0);
            assert_eq!(p.next, Some(t("2026-01-01T00:00:20Z")));
        }
    }

    #[test]
    fn misfire_policies_after_downtime() {
        // Down from 00:00:10 to 00:01:05: ticks 10, 20, ..., 60 were missed.
        let (due, now) = (t("2026-01-01T00:00:10Z"), t("2026-01-01T00:01:05Z"));
        let table = [
            (MisfirePolicy::Skip, vec!["2026-01-01T00:01:00Z"], 5),
            (MisfirePolicy::RunOnce, vec!["2026-01-01T00:00:10Z"], 5),
            (
                MisfirePolicy::CatchUp,
                vec![
                    "2026-01-01T00:00:40Z",
                    "2026-01-01T00:00:50Z",
                    "2026-01-01T00:01:00Z",
                ],
                3,
            ),
        ];
        for (misfire, fire, missed) in table {
            let p = plan(&every(10), due, now, &policy(misfire));
            let want: Vec<Timestamp> = fire.into_iter().map(t).collect();
            assert_eq!(p.fire, want, "{misfire:?}");
            assert_eq!(p.missed, missed, "{misfire:?}");
            assert_eq!(p.next, Some(t("2026-01-01T00:01:10Z")));
        }
    }

    #[test]
    fn starting_deadline_drops_late_ticks() {
        let mut p = policy(MisfirePolicy::CatchUp);
        p.starting_deadline = Some(Duration::from_secs(25));
        let first = plan(
            &every(10),
            t("2026-01-01T00:00:10Z"),
            t("2026-01-01T00:01:05Z"),
            &p,
        );
        assert_eq!(
            first.fire,
            vec![
                t("2026-01-01T00:00:40Z"),
                t("2026-01-01T00:00:50Z"),
                t("2026-01-01T00:01:00Z")
            ]
        );
        let mut p = policy(MisfirePolicy::Skip);
        p.starting_deadline = Some(Duration::from_secs(2));
        let second = plan(
            &every(10),
            t("2026-01-01T00:00:10Z"),
            t("2026-01-01T00:01:05Z"),
            &p,
        );
        assert!(second.fire.is_empty(), "even the latest tick is 5s late");
        assert_eq!(second.missed, 6);
    }

    #[test]
    fn end_at_stops_the_schedule() {
        let mut p = policy(MisfirePolicy::CatchUp);
        p.end_at = Some(t("2026-01-01T00:00:30Z"));
        let ended = plan(
            &every(10),
            t("2026-01-01T00:00:20Z"),
            t("2026-01-01T00:05:00Z"),
            &p,
        );
        assert_eq!(
            ended.fire,
            vec![t("2026-01-01T00:00:20Z"), t("2026-01-01T00:00:30Z")]
        );
        assert_eq!(ended.next, None);
    }

    #[test]
    fn a_year_of_downtime_on_a_per_second_schedule_is_cheap() {
        let p = plan(
            &every(1),
            t("2026-01-01T00:00:01Z"),
            t("2027-01-01T00:00:00.5Z"),
            &policy(MisfirePolicy::Skip),
        );
        assert_eq!(p.fire, vec![t("2027-01-01T00:00:00Z")]);
        assert_eq!(p.next, Some(t("2027-01-01T00:00:01Z")));
        assert_eq!(
            p.missed, SCAN_LIMIT as u64,
            "missed is counted up to the scan limit"
        );
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let id = ScheduleId(Uuid::from_u128(42));
        let a = jitter_offset(id, Duration::from_secs(10));
        assert_eq!(a, jitter_offset(id, Duration::from_secs(10)));
        assert!(a < Duration::from_secs(10));
        assert_eq!(jitter_offset(id, Duration::ZERO), Duration::ZERO);
        let spread: std::collections::HashSet<_> = (0..50u128)
            .map(|i| jitter_offset(ScheduleId(Uuid::from_u128(i)), Duration::from_secs(60)))
            .collect();
        assert!(spread.len() > 40, "offsets spread out");
    }
}
