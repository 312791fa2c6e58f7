//! Unique jobs: which submissions count as "the same job", and what a
//! submission does when such a job already exists.
//!
//! A [`UniqueSpec`] on a submission names the parts that make a job unique
//! (an explicit key, the kind, the queue, the payload or some payload fields,
//! a time bucket). [`UniqueSpec::resolve`] turns it into a [`Uniqueness`]: a
//! tenant-free key (a SHA-256 of a canonical encoding of those parts), the
//! set of job states in which a job holds its key ([`StateSet`], stored as a
//! bitmask), and the conflict policy. The stores enforce "at most one job per
//! (tenant, key) among the jobs in their states" with a partial unique index;
//! [`on_conflict`] decides what a colliding submission does.

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::duration::DurationSpec;
use crate::error::FieldError;
use crate::job::JobState;
use crate::time::to_micros;
use crate::wire::{MAX_NAME_LEN, validate_key};

/// The most parts a `unique.by` list may name.
pub const MAX_UNIQUE_BY: usize = 16;

/// `unique` on `POST /api/v1/jobs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniqueSpec {
    /// An explicit key, part of the unique key when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `kind`, `queue`, `payload`, or `payload.<field>[.<field>...]`. Default:
    /// `["kind", "queue", "payload"]` without a `key`, nothing with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Vec<String>>,
    /// Uniqueness holds within fixed windows of this length (UTC, from the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<DurationSpec>,
    /// The states in which a job blocks another with its key; default
    /// scheduled, available, running (which must always be included);
    /// blocked (waiting for parents) is always added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<JobState>>,
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// For `debounce`: how long after the latest submission the job runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<DurationSpec>,
}

/// What a submission does when a job with its unique key exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Return the existing job unchanged.
    #[default]
    Skip,
    /// Overwrite a pending existing job with this submission.
    Replace,
    /// Overwrite a pending existing job's payload and push its run time to now + `debounce`.
    Debounce,
}

/// A set of job states as a bitmask, the form the stores keep it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateSet(u8);

impl StateSet {
    /// The states every unique job holds its key in (blocked, scheduled,
    /// available, running): it never leaves them except towards a final
    /// state, so no release by a parent, retry, snooze or lease expiry can
    /// collide with another job's key.
    pub const ACTIVE: StateSet = StateSet(0b0100_0111);
    /// The ones a request must name when it lists states (blocked is added).
    const REQUIRED: u8 = 0b111;

    /// The bit of `state`; the stores' index predicate spells the same table as SQL.
    pub fn bit(state: JobState) -> u8 {
        match state {
            JobState::Scheduled => 1,
            JobState::Available => 2,
            JobState::Running => 4,
            JobState::Succeeded => 8,
            JobState::Failed => 16,
            JobState::Cancelled => 32,
            JobState::Blocked => 64,
            JobState::Skipped => 128,
        }
    }

    pub fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn contains(self, state: JobState) -> bool {
        self.0 & Self::bit(state) != 0
    }

    pub fn states(self) -> Vec<JobState> {
        JobState::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .collect()
    }
}

/// A validated `unique` spec: what the store writes and how it resolves a collision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uniqueness {
    /// 64 hex digits; the same for every submission that counts as the same job.
    pub key: String,
    pub states: StateSet,
    pub on_conflict: Conflict,
}

/// [`OnConflict`] with its debounce delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Skip,
    Replace,
    Debounce(Duration),
}

/// What a colliding submission does to the existing job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Leave it; answer it as `deduplicated`.
    Keep,
    /// Overwrite it with the submission (id and attempt history stay); answer `replaced`.
    Overwrite,
}

/// How a submission with a `unique` spec ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UniqueOutcome {
    New,
    Deduplicated,
    Replaced,
}

/// The decision for a submission whose key is held by a job in `existing` state:
/// only a scheduled or available job is ever overwritten; a blocked one
/// (its dependencies stay as they are), a running or a finished one is kept.
pub fn on_conflict(policy: Conflict, existing: JobState) -> Resolution {
    let waiting = matches!(existing, JobState::Scheduled | JobState::Available);
    match policy {
        Conflict::Replace | Conflict::Debounce(_) if waiting => Resolution::Overwrite,
        _ => Resolution::Keep,
    }
}

impl UniqueSpec {
    /// Checks the spec and computes the key of a job of `kind` on `queue`
    /// with `payload`, submitted at `now`. Errors name `unique.<field>`.
    pub fn resolve(
        &self,
        kind: &str,
        queue: &str,
        payload: &Value,
        now: Timestamp,
    ) -> Result<Uniqueness, FieldError> {
        if let Some(key) = &self.key {
            validate_key("unique.key", key)?;
        }
        let default_by = || {
            if self.key.is_some() {
                Vec::new()
            } else {
                vec!["kind".into(), "queue".into(), "payload".into()]
            }
        };
        let by = self.by.clone().unwrap_or_else(default_by);
        if by.len() > MAX_UNIQUE_BY {
            return Err(FieldError::new(
                "unique.by",
                format!("at most {MAX_UNIQUE_BY} parts"),
            ));
        }
        if self.key.is_none() && by.is_empty() {
            return Err(FieldError::new(
                "unique.by",
                "name at least one part (kind, queue, payload, payload.<field>) or give unique.key",
            ));
        }
        let mut parts = Vec::with_capacity(by.len());
        for (i, part) in by.iter().enumerate() {
            let field = format!("unique.by[{i}]");
            let parsed = Part::parse(part).map_err(|m| FieldError::new(&field, m))?;
            if parts.contains(&parsed) {
                return Err(FieldError::new(field, format!("`{part}` is named twice")));
            }
            parts.push(parsed);
        }
        let bucket = match self.period {
            Some(p) if p.0 < Duration::from_secs(1) => {
                return Err(FieldError::new("unique.period", "must be at least 1s"));
            }
            Some(p) => {
                let micros = i64::try_from(p.0.as_micros()).unwrap_or(i64::MAX);
                Some((micros, to_micros(now).div_euclid(micros)))
            }
            None => None,
        };
        let states = match &self.states {
            None => StateSet::ACTIVE,
            Some(list) => {
                let mut bits = 0u8;
                for (i, state) in list.iter().enumerate() {
                    let bit = StateSet::bit(*state);
                    if bits & bit != 0 {
                        return Err(FieldError::new(
                            format!("unique.states[{i}]"),
                            format!("`{state}` is named twice"),
                        ));
                    }
                    bits |= bit;
                }
                if bits & StateSet::REQUIRED != StateSet::REQUIRED {
                    return Err(FieldError::new(
                        "unique.states",
                        "must include scheduled, available and running (a job keeps its key \
                         while it is pending or running; add succeeded, failed or cancelled to \
                         keep it longer)",
                    ));
                }
                StateSet(bits | StateSet::ACTIVE.0)
            }
        };
        let on_conflict = match (self.on_conflict, self.debounce) {
            (OnConflict::Debounce, Some(d)) if !d.0.is_zero() => Conflict::Debounce(d.0),
            (OnConflict::Debounce, _) => {
                return Err(FieldError::new(
                    "unique.debounce",
                    "on_conflict `debounce` needs a debounce longer than zero",
                ));
            }
            (_, Some(_)) => {
                return Err(FieldError::new(
                    "unique.debounce",
                    "only allowed with on_conflict `debounce`",
                ));
            }
            (OnConflict::Skip, None) => Conflict::Skip,
            (OnConflict::Replace, None) => Conflict::Replace,
        };
        let mut canonical = String::from("taskwheel-unique-v1");
        if let Some(key) = &self.key {
            push_part(&mut canonical, "key", key);
        }
        for part in &parts {
            match part {
                Part::Kind => push_part(&mut canonical, "kind", kind),
                Part::Queue => push_part(&mut canonical, "queue", queue),
                Part::Payload => push_part(&mut canonical, "payload", &canonical_json(payload)),
                Part::Field(path) => {
                    let value = path
                        .iter()
                        .try_fold(payload, |v, name| v.get(name))
                        .map(canonical_json)
                        // Absent differs from any JSON value, `null` included.
                        .unwrap_or_else(|| "absent".into());
                    push_part(
                        &mut canonical,
                        &format!("payload.{}", path.join(".")),
                        &value,
                    );
                }
            }
        }
        if let Some((length, bucket)) = bucket {
            push_part(&mut canonical, "period", &format!("{length}:{bucket}"));
        }
        Ok(Uniqueness {
            key: hex_sha256(&canonical),
            states,
            on_conflict,
        })
    }
}

/// One entry of `unique.by`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Kind,
    Queue,
    Payload,
    /// A path into the payload object, one name per level.
    Field(Vec<String>),
}

impl Part {
    fn parse(s: &str) -> Result<Part, String> {
        match s {
            "kind" => Ok(Part::Kind),
            "queue" => Ok(Part::Queue),
            "payload" => Ok(Part::Payload),
            _ => {
                let names: Vec<String> = s
                    .strip_prefix("payload.")
                    .ok_or_else(|| format!("`{s}` is not kind, queue, payload or payload.<field>"))?
                    .split('.')
                    .map(str::to_string)
                    .collect();
                if s.len() > MAX_NAME_LEN || names.iter().any(|n| n.is_empty() || n.contains('\0'))
                {
                    return Err(format!(
                        "`{s}` is not a payload field path (payload.<name>[.<name>...], at most {MAX_NAME_LEN} bytes)"
                    ));
                }
                Ok(Part::Field(names))
            }
        }
    }
}

/// Appends `|name=<length>:<value>`: the lengths keep every encoding unambiguous.
fn push_part(out: &mut String, name: &str, value: &str) {
    // Writing to a String cannot fail.
    let _ = write!(out, "|{name}={}:{value}", value.len());
}

/// JSON with object keys sorted at every level, whatever map order serde_json was built with.
fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical_json(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

fn hex_sha256(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest.iter() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(v: Value) -> UniqueSpec {
        serde_json::from_value(v).unwrap()
    }

    fn key(v: Value, kind: &str, queue: &str, payload: Value, now: &str) -> String {
        spec(v).resolve(kind, queue, &payload, at(now)).unwrap().key
    }

    const T: &str = "2026-06-01T00:10:00Z";

    #[test]
    fn keys_depend_on_exactly_the_named_parts() {
        let base = key(json!({}), "k", "q", json!({"a": 1, "b": 2}), T);
        assert_eq!(base.len(), 64);
        // Same parts, keys in another order: same key.
        assert_eq!(base, key(json!({}), "k", "q", json!({"b": 2, "a": 1}), T));
        assert_ne!(base, key(json!({}), "k2", "q", json!({"a": 1, "b": 2}), T));
        assert_ne!(base, key(json!({}), "k", "q2", json!({"a": 1, "b": 2}), T));
        assert_ne!(base, key(json!({}), "k", "q", json!({"a": 1}), T));
        let by_customer = json!({"by": ["kind", "payload.customer"]});
        assert_eq!(
            key(
                by_customer.clone(),
                "k",
                "q",
                json!({"customer": 7, "x": 1}),
                T
            ),
            key(
                by_customer.clone(),
                "k",
                "other",
                json!({"customer": 7, "x": 2}),
                T
            ),
        );
        assert_ne!(
            key(by_customer.clone(), "k", "q", json!({"customer": 7}), T),
            key(by_customer.clone(), "k", "q", json!({"customer": 8}), T),
        );
        assert_ne!(
            key(by_customer.clone(), "k", "q", json!({"customer": null}), T),
            key(by_customer, "k", "q", json!({}), T),
            "an absent field differs from null"
        );
        let nested = json!({"by": ["payload.a.b"]});
        assert_eq!(
            key(nested.clone(), "k", "q", json!({"a": {"b": 1, "c": 1}}), T),
            key(nested, "x", "y", json!({"a": {"b": 1, "c": 2}}), T),
        );
        // An explicit key alone ignores kind, queue and payload.
        let explicit = json!({"key": "report-7"});
        assert_eq!(
            key(explicit.clone(), "k", "q", json!(1), T),
            key(explicit, "k2", "q2", json!(2), T)
        );
        assert_ne!(
            key(json!({"key": "a"}), "k", "q", json!(1), T),
            key(json!({"key": "b"}), "k", "q", json!(1), T)
        );
    }

    #[test]
    fn periods_bucket_by_submission_time() {
        let hourly = json!({"period": "1h"});
        let k = |now| key(hourly.clone(), "k", "q", json!({}), now);
        assert_eq!(k("2026-06-01T00:00:00Z"), k("2026-06-01T00:59:59Z"));
        assert_ne!(k("2026-06-01T00:59:59Z"), k("2026-06-01T01:00:00Z"));
        assert_ne!(
            key(json!({"period": "1h"}), "k", "q", json!({}), T),
            key(json!({"period": "2h"}), "k", "q", json!({}), T),
            "the window length is part of the key"
        );
    }

    #[test]
    fn states_and_policies() {
        let u = spec(json!({})).resolve("k", "q", &json!(1), at(T)).unwrap();
        assert_eq!(u.states, StateSet::ACTIVE);
        assert_eq!(u.on_conflict, Conflict::Skip);
        let u = spec(
            json!({"states": ["running", "available", "scheduled", "succeeded"],
                            "on_conflict": "debounce", "debounce": "30s"}),
        )
        .resolve("k", "q", &json!(1), at(T))
        .unwrap();
        assert_eq!(
            u.states.states(),
            vec![
                JobState::Blocked,
                JobState::Scheduled,
                JobState::Available,
                JobState::Running,
                JobState::Succeeded
            ]
        );
        assert_eq!(u.on_conflict, Conflict::Debounce(Duration::from_secs(30)));
        let cases = [
            (Conflict::Skip, JobState::Available, Resolution::Keep),
            (
                Conflict::Replace,
                JobState::Scheduled,
                Resolution::Overwrite,
            ),
            (
                Conflict::Replace,
                JobState::Available,
                Resolution::Overwrite,
            ),
            (Conflict::Replace, JobState::Running, Resolution::Keep),
            (Conflict::Replace, JobState::Blocked, Resolution::Keep),
            (Conflict::Replace, JobState::Succeeded, Resolution::Keep),
            (
                Conflict::Debounce(Duration::from_secs(1)),
                JobState::Available,
                Resolution::Overwrite,
            ),
            (
                Conflict::Debounce(Duration::from_secs(1)),
                JobState::Running,
                Resolution::Keep,
            ),
        ];
        for (policy, state, want) in cases {
            assert_eq!(on_conflict(policy, state), want, "{policy:?} {state}");
        }
    }

    #[test]
    fn bad_specs_name_the_field() {
        let cases = [
            (json!({"key": ""}), "unique.key"),
            (json!({"by": []}), "unique.by"),
            (json!({"by": ["kind", "tenant"]}), "unique.by[1]"),
            (json!({"by": ["kind", "kind"]}), "unique.by[1]"),
            (json!({"by": ["payload."]}), "unique.by[0]"),
            (json!({"by": ["payload.a..b"]}), "unique.by[0]"),
            (json!({"period": "500ms"}), "unique.period"),
            (
                json!({"states": ["scheduled", "available"]}),
                "unique.states",
            ),
            (
                json!({"states": ["scheduled", "available", "running", "running"]}),
                "unique.states[3]",
            ),
            (json!({"on_conflict": "debounce"}), "unique.debounce"),
            (json!({"debounce": "5s"}), "unique.debounce"),
        ];
        for (body, field) in cases {
            let err = spec(body.clone())
                .resolve("k", "q", &json!({}), at(T))
                .unwrap_err();
            assert_eq!(err.field, field, "{body}: {err}");
        }
    }
}
