//! Durations as users write them: `1500ms`, `30s`, `5m`, `1h 30m`, ISO 8601
//! (`PT30S`), or a bare integer number of seconds. Parsing is jiff's; this
//! module only adds the integer form, rejects negatives, and prints compactly.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses a duration string. Errors are messages fit to show a user.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    // SignedDuration refuses days (they are not uniform in general); a duration
    // here is an amount of elapsed time, so a day is 24 hours.
    let signed = s
        .parse::<jiff::SignedDuration>()
        .or_else(|_| {
            s.parse::<jiff::Span>()
                .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()))
        })
        .map_err(|_| {
            format!("`{s}` is not a duration (use forms like `1500ms`, `30s`, `5m`, `1h 30m`, `2d`, or seconds)")
        })?;
    if signed.is_negative() {
        return Err(format!("`{s}` is negative"));
    }
    Duration::try_from(signed).map_err(|_| format!("`{s}` is out of range"))
}

/// Formats a duration the way it is best read: `250ms`, `30s`, `5m`, `1h 30m`.
pub fn format_duration(d: Duration) -> String {
    let signed = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    format!("{signed:#}")
}

/// A duration on the wire: accepts a string or integer seconds, prints a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationSpec(pub Duration);

impl From<Duration> for DurationSpec {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Fractional(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Self(Duration::from_secs(s))),
            Raw::Fractional(f) => Duration::try_from_secs_f64(f).map(Self).map_err(|_| {
                serde::de::Error::custom(format!("`{f}` is not a non-negative number of seconds"))
            }),
            Raw::Text(t) => parse_duration(&t)
                .map(Self)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let cases = [
            ("1500ms", Duration::from_millis(1500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h 30m", Duration::from_secs(5400)),
            ("2d", Duration::from_secs(2 * 86400)),
            ("PT30S", Duration::from_secs(30)),
            ("45", Duration::from_secs(45)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_garbage_and_negatives() {
        for bad in ["", "soon", "-5s", "5 parsecs"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn prints_compactly_and_round_trips() {
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(30),
            Duration::from_secs(5400),
        ] {
            let text = format_duration(d);
            assert_eq!(parse_duration(&text), Ok(d), "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
    }

    #[test]
    fn wire_form_accepts_integers_and_strings() {
        let a: DurationSpec = serde_json::from_str("12").unwrap();
        let b: DurationSpec = serde_json::from_str("\"12s\"").unwrap();
        let c: DurationSpec = serde_json::from_str("1.5").unwrap();
        assert_eq!(a, b);
        assert_eq!(c.0, Duration::from_millis(1500));
        assert!(serde_json::from_str::<DurationSpec>("\"later\"").is_err());
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"12s\"");
    }
}
