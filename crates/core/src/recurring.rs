//! A schedule as users define it and as it is stored: the timing (see
//! [`crate::schedule`]), the job template each tick instantiates, and the
//! policies of [`crate::firing`]; plus its running state and health.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::DurationSpec;
use crate::error::FieldError;
use crate::firing::{DEFAULT_CATCH_UP_MAX, FirePolicy, MisfirePolicy, OverlapPolicy, ScheduleId};
use crate::job::{NewJob, Priority};
use crate::retry::RetryPolicy;
use crate::schedule::{Schedule, ScheduleSpec};
use crate::wire::{SubmitJob, validate_name};

/// The job each tick creates: a submit request without timing or idempotency
/// key (a schedule's jobs are keyed by their tick instead).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl JobTemplate {
    /// The job for the tick `fire_time` of schedule `id`, due at `run_at`.
    pub fn instantiate(
        &self,
        tenant: &str,
        id: ScheduleId,
        fire_time: Timestamp,
        run_at: Timestamp,
        now: Timestamp,
    ) -> Result<NewJob, FieldError> {
        let submit = SubmitJob {
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            priority: self.priority,
            run_at: Some(run_at),
            timeout: self.timeout,
            retry: self.retry.clone(),
            tags: self.tags.clone(),
            ..SubmitJob::default()
        };
        let mut job = submit
            .validate(tenant, now)
            .map_err(|e| FieldError::new(format!("job.{}", e.field), e.message))?;
        job.schedule = Some((id, fire_time));
        Ok(job)
    }
}

/// A complete, validated schedule definition (what `PATCH` replaces parts of).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleDefinition {
    pub name: String,
    #[serde(flatten)]
    pub timing: ScheduleSpec,
    pub job: JobTemplate,
    pub overlap: OverlapPolicy,
    pub misfire: MisfirePolicy,
    pub catch_up_max: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<Timestamp>,
}

impl ScheduleDefinition {
    /// The evaluator for this timing; `created_at` anchors `every` unless `start_at` is set.
    pub fn schedule(&self, created_at: Timestamp) -> Result<Schedule, FieldError> {
        Schedule::new(&self.timing, self.start_at.unwrap_or(created_at))
    }

    pub fn fire_policy(&self) -> FirePolicy {
        FirePolicy {
            misfire: self.misfire,
            catch_up_max: self.catch_up_max,
            starting_deadline: self.starting_deadline.map(|d| d.0),
            end_at: self.end_at,
        }
    }

    pub fn jitter(&self) -> Duration {
        self.jitter.map(|j| j.0).unwrap_or_default()
    }

    /// Checks everything that can be checked without a clock.
    pub fn validate(&self, tenant: &str, created_at: Timestamp) -> Result<Schedule, FieldError> {
        validate_name("name", &self.name)?;
        let schedule = self.schedule(created_at)?;
        self.job.instantiate(
            tenant,
            ScheduleId::new_v7(created_at),
            created_at,
            created_at,
            created_at,
        )?;
        if self.catch_up_max == 0 || self.catch_up_max > 1000 {
            return Err(FieldError::new("catch_up_max", "must be 1 to 1000"));
        }
        if let (Some(start), Some(end)) = (self.start_at, self.end_at)
            && end <= start
        {
            return Err(FieldError::new(
                "end_at",
                format!("{end} is not after start_at {start}"),
            ));
        }
        Ok(schedule)
    }

    /// The first tick: strictly after `now`, and not before `start_at`.
    pub fn first_tick(&self, schedule: &Schedule, now: Timestamp) -> Option<Timestamp> {
        let from = match self.start_at {
            // `start_at` itself may be a tick.
            Some(start) if start > now => start
                .checked_sub(jiff::SignedDuration::from_nanos(1))
                .unwrap_or(start),
            _ => now,
        };
        schedule
            .next_after(from)
            .filter(|t| self.end_at.is_none_or(|end| *t <= end))
    }
}

/// Counters an operator reads to see whether a schedule is healthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleHealth {
    /// Jobs created by ticks (manual triggers included).
    pub fired: u64,
    /// Ticks given up by the misfire policy or the starting deadline.
    pub missed: u64,
    /// Ticks skipped because the previous run was still going (`overlap: forbid`).
    pub skipped_overlap: u64,
    /// Jobs of this schedule that ended `failed`.
    pub failed: u64,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub id: ScheduleId,
    pub tenant: String,
    pub definition: ScheduleDefinition,
    pub paused: bool,
    /// The earliest tick not yet fired; `None` when the schedule has ended.
    pub next_fire_at: Option<Timestamp>,
    pub last_fire_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub health: ScheduleHealth,
}

impl ScheduleRecord {
    /// A new schedule created at `now`: validated, with its first tick computed.
    pub fn create(
        tenant: &str,
        definition: ScheduleDefinition,
        paused: bool,
        now: Timestamp,
    ) -> Result<Self, FieldError> {
        let schedule = definition.validate(tenant, now)?;
        Ok(Self {
            id: ScheduleId::new_v7(now),
            tenant: tenant.to_string(),
            next_fire_at: definition.first_tick(&schedule, now),
            definition,
            paused,
            last_fire_at: None,
            created_at: now,
            updated_at: now,
            health: ScheduleHealth::default(),
        })
    }

    /// This schedule with `definition` in place of its own, from `now` on. A
    /// changed timing restarts from the next tick after `now`; an unchanged
    /// one keeps its place, so pending missed ticks still follow the policy.
    pub fn redefine(
        mut self,
        definition: ScheduleDefinition,
        now: Timestamp,
    ) -> Result<Self, FieldError> {
        let schedule = definition.validate(&self.tenant, self.created_at)?;
        let timing_changed = definition.timing != self.definition.timing
            || definition.start_at != self.definition.start_at
            || definition.end_at != self.definition.end_at;
        if timing_changed {
            self.next_fire_at = definition.first_tick(&schedule, now);
        }
        self.definition = definition;
        self.updated_at = now;
        Ok(self)
    }
}

/// Fields of `POST /api/v1/schedules` and `PATCH /api/v1/schedules/{id}`; on
/// a PATCH every field is optional and replaces the stored one (giving any of
/// `cron`, `every`, `at` replaces the timing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_gap: Option<crate::schedule::DstGap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_overlap: Option<crate::schedule::DstOverlap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<OverlapPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<MisfirePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

impl ScheduleRequest {
    /// A new definition from a create request.
    pub fn into_definition(self) -> Result<ScheduleDefinition, FieldError> {
        let name = self
            .name
            .clone()
            .ok_or_else(|| FieldError::new("name", "is required"))?;
        let job = self
            .job
            .clone()
            .ok_or_else(|| FieldError::new("job", "is required"))?;
        let base = ScheduleDefinition {
            name,
            timing: ScheduleSpec::default(),
            job,
            overlap: OverlapPolicy::default(),
            misfire: MisfirePolicy::default(),
            catch_up_max: DEFAULT_CATCH_UP_MAX,
            starting_deadline: None,
            jitter: None,
            start_at: None,
            end_at: None,
        };
        Ok(self.apply_to(base))
    }

    /// This request's fields laid over `current`.
    pub fn apply_to(self, mut current: ScheduleDefinition) -> ScheduleDefinition {
        if self.cron.is_some() || self.every.is_some() || self.at.is_some() {
            current.timing.cron = self.cron;
            current.timing.every = self.every;
            current.timing.at = self.at;
        }
        if let Some(tz) = self.timezone {
            current.timing.timezone = tz;
        }
        if let Some(gap) = self.dst_gap {
            current.timing.dst_gap = gap;
        }
        if let Some(overlap) = self.dst_overlap {
            current.timing.dst_overlap = overlap;
        }
        if let Some(name) = self.name {
            current.name = name;
        }
        if let Some(job) = self.job {
            current.job = job;
        }
        current.overlap = self.overlap.unwrap_or(current.overlap);
        current.misfire = self.misfire.unwrap_or(current.misfire);
        current.catch_up_max = self.catch_up_max.unwrap_or(current.catch_up_max);
        current.starting_deadline = self.starting_deadline.or(current.starting_deadline);
        current.jitter = self.jitter.or(current.jitter);
        current.start_at = self.start_at.or(current.start_at);
        current.end_at = self.end_at.or(current.end_at);
        current
    }
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub id: ScheduleId,
    #[serde(flatten)]
    pub definition: ScheduleDefinition,
    pub paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fire_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub health: ScheduleHealth,
}

impl From<ScheduleRecord> for ScheduleView {
    fn from(r: ScheduleRecord) -> Self {
        Self {
            id: r.id,
            definition: r.definition,
            paused: r.paused,
            next_fire_at: r.next_fire_at,
            last_fire_at: r.last_fire_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            health: r.health,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

/// `GET /api/v1/schedules/{id}/next?count=N`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextFires {
    pub next: Vec<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-05-01T12:00:00Z".parse().unwrap()
    }

    fn create(body: Value) -> Result<ScheduleDefinition, FieldError> {
        let req: ScheduleRequest =
            serde_json::from_value(body).map_err(|e| FieldError::new("body", e.to_string()))?;
        let def = req.into_definition()?;
        def.validate("default", now())?;
        Ok(def)
    }

    #[test]
    fn create_with_defaults() {
        let def =
            create(json!({"name": "nightly", "cron": "0 3 * * *", "job": {"kind": "report"}}))
                .unwrap();
        assert_eq!(def.timing.timezone, "UTC");
        assert_eq!(def.overlap, OverlapPolicy::Allow);
        assert_eq!(def.misfire, MisfirePolicy::Skip);
        assert_eq!(def.catch_up_max, DEFAULT_CATCH_UP_MAX);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({"cron": "* * * * *", "job": {"kind": "k"}}), "name"),
            (json!({"name": "n", "cron": "* * * * *"}), "job"),
            (json!({"name": "n", "job": {"kind": "k"}}), "cron"),
            (
                json!({"name": "n", "cron": "61 * * * *", "job": {"kind": "k"}}),
                "cron",
            ),
            (
                json!({"name": "n", "cron": "* * * * *", "timezone": "Mars/Base", "job": {"kind": "k"}}),
                "timezone",
            ),
            (
                json!({"name": "n", "cron": "* * * * *", "job": {"kind": ""}}),
                "job.kind",
            ),
            (
                json!({"name": "n", "cron": "* * * * *", "job": {"kind": "k", "priority": 3, "queue": "a b"}}),
                "job.queue",
            ),
            (
                json!({"name": "bad name", "every": "1m", "job": {"kind": "k"}}),
                "name",
            ),
            (
                json!({"name": "n", "every": "1m", "catch_up_max": 0, "job": {"kind": "k"}}),
                "catch_up_max",
            ),
            (
                json!({"name": "n", "every": "1m", "start_at": "2026-06-01T00:00:00Z", "end_at": "2026-05-01T00:00:00Z", "job": {"kind": "k"}}),
                "end_at",
            ),
        ];
        for (body, field) in cases {
            let err = create(body.clone()).unwrap_err();
            assert_eq!(err.field, field, "{body}: {err}");
        }
    }

    #[test]
    fn patch_replaces_the_timing_whole() {
        let def = create(json!({"name": "n", "cron": "0 3 * * *", "timezone": "Europe/Paris", "job": {"kind": "k"}})).unwrap();
        let patch: ScheduleRequest =
            serde_json::from_value(json!({"every": "90s", "overlap": "forbid"})).unwrap();
        let patched = patch.apply_to(def);
        assert_eq!(patched.timing.cron, None);
        assert_eq!(
            patched.timing.every,
            Some(DurationSpec(Duration::from_secs(90)))
        );
        assert_eq!(patched.timing.timezone, "Europe/Paris");
        assert_eq!(patched.overlap, OverlapPolicy::Forbid);
    }

    #[test]
    fn first_tick_respects_start_at() {
        let def = create(json!({"name": "n", "every": "10s", "start_at": "2026-05-01T13:00:00Z", "job": {"kind": "k"}})).unwrap();
        let schedule = def.schedule(now()).unwrap();
        assert_eq!(
            def.first_tick(&schedule, now()),
            Some("2026-05-01T13:00:00Z".parse().unwrap())
        );
        let def = create(json!({"name": "n", "every": "10s", "job": {"kind": "k"}})).unwrap();
        let schedule = def.schedule(now()).unwrap();
        assert_eq!(
            def.first_tick(&schedule, now()),
            Some("2026-05-01T12:00:10Z".parse().unwrap())
        );
    }

    #[test]
    fn instantiated_jobs_carry_their_tick() {
        let def = create(json!({"name": "n", "every": "10s", "job": {"kind": "k", "queue": "q", "priority": "high"}})).unwrap();
        let id = ScheduleId::new_v7(now());
        let tick: Timestamp = "2026-05-01T12:00:10Z".parse().unwrap();
        let job = def
            .job
            .instantiate("default", id, tick, tick, now())
            .unwrap();
        assert_eq!(job.schedule, Some((id, tick)));
        assert_eq!(job.queue, "q");
        assert_eq!(job.run_at, tick);
    }
}
