//! The schedule contract as tables: (expression, zone, options, from, the
//! fire times that follow), then errors, then properties checked against a
//! brute-force oracle that walks real time minute by minute.

use proptest::prelude::*;
use serde_json::json;

use super::cron::CronTiming;
use super::*;

const NY: &str = "America/New_York";
const LONDON: &str = "Europe/London";
const LORD_HOWE: &str = "Australia/Lord_Howe";
const KATHMANDU: &str = "Asia/Kathmandu";
const UTC: &str = "UTC";

/// The DST options a table row runs with.
#[derive(Debug, Clone, Copy)]
enum Opts {
    Default,
    Skip,
    Both,
}

fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad instant `{s}` in test: {e}"))
}

fn spec(expr: &str, zone: &str, opts: Opts) -> ScheduleSpec {
    let mut spec = ScheduleSpec::cron(expr, zone);
    match opts {
        Opts::Default => {}
        Opts::Skip => spec.dst_gap = DstGap::Skip,
        Opts::Both => spec.dst_overlap = DstOverlap::Both,
    }
    spec
}

/// The fire times after `from`, as RFC 3339 with the zone's offset, must be `expected`.
fn check(schedule: &Schedule, from: &str, expected: &[&str]) {
    let got: Vec<String> = schedule
        .upcoming(ts(from))
        .take(expected.len() + 1)
        .map(|t| format_in_zone(t, schedule.timezone()))
        .collect();
    assert_eq!(
        &got[..expected.len().min(got.len())],
        expected,
        "{schedule} after {from}"
    );
}

#[test]
fn cron_fire_times() {
    use Opts::*;
    #[rustfmt::skip]
    let cases: &[(&str, &str, Opts, &str, &[&str])] = &[
        // New York, spring forward 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        ("30 2 * * *", NY, Default, "2026-03-07T00:00:00-05:00",
            &["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
        ("30 2 * * *", NY, Skip, "2026-03-07T00:00:00-05:00",
            &["2026-03-07T02:30:00-05:00", "2026-03-09T02:30:00-04:00"]),
        // Four skipped ticks fire once.
        ("*/15 2 * * *", NY, Default, "2026-03-08T00:00:00-05:00",
            &["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"]),
        // A skipped tick that coincides with a real one fires once.
        ("*/30 1-3 * * *", NY, Default, "2026-03-08T01:20:00-05:00",
            &["2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]),
        // Every-hour schedules follow real time: the missing hour has no ticks.
        ("*/30 * * * *", NY, Default, "2026-03-08T01:00:00-05:00",
            &["2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]),
        ("5 * * * *", NY, Default, "2026-03-08T01:00:00-05:00",
            &["2026-03-08T01:05:00-05:00", "2026-03-08T03:05:00-04:00"]),
        // New York, fall back 2026-11-01: 02:00 EDT goes back to 01:00 EST.
        ("30 1 * * *", NY, Default, "2026-10-31T12:00:00-04:00",
            &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        ("30 1 * * *", NY, Both, "2026-10-31T12:00:00-04:00",
            &["2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00", "2026-11-02T01:30:00-05:00"]),
        // Already fired in the first pass: the second pass does not fire again.
        ("30 1 * * *", NY, Default, "2026-11-01T01:10:00-05:00",
            &["2026-11-02T01:30:00-05:00"]),
        ("*/15 1 * * *", NY, Default, "2026-11-01T00:00:00-04:00",
            &["2026-11-01T01:00:00-04:00", "2026-11-01T01:15:00-04:00", "2026-11-01T01:30:00-04:00",
              "2026-11-01T01:45:00-04:00", "2026-11-02T01:00:00-05:00"]),
        ("*/30 * * * *", NY, Default, "2026-11-01T00:45:00-04:00",
            &["2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T01:00:00-05:00",
              "2026-11-01T01:30:00-05:00", "2026-11-01T02:00:00-05:00"]),
        // Starting inside the first pass, then inside the second.
        ("*/30 * * * *", NY, Default, "2026-11-01T01:40:00-04:00",
            &["2026-11-01T01:00:00-05:00", "2026-11-01T01:30:00-05:00", "2026-11-01T02:00:00-05:00"]),
        ("*/30 * * * *", NY, Default, "2026-11-01T01:10:00-05:00",
            &["2026-11-01T01:30:00-05:00", "2026-11-01T02:00:00-05:00"]),
        ("0 */1 * * *", NY, Default, "2026-11-01T00:30:00-04:00",
            &["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
        // London, spring forward 2026-03-29 (01:00 GMT -> 02:00 BST), fall back 2026-10-25.
        ("30 1 * * *", LONDON, Default, "2026-03-28T12:00:00Z",
            &["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"]),
        ("30 1 * * *", LONDON, Default, "2026-10-24T12:00:00+01:00",
            &["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"]),
        ("*/30 * * * *", LONDON, Default, "2026-10-25T00:50:00+01:00",
            &["2026-10-25T01:00:00+01:00", "2026-10-25T01:30:00+01:00", "2026-10-25T01:00:00+00:00",
              "2026-10-25T01:30:00+00:00", "2026-10-25T02:00:00+00:00"]),
        // Lord Howe moves its clocks by 30 minutes: back 2026-04-05 (02:00 -> 01:30),
        // forward 2026-10-04 (02:00 -> 02:30).
        ("45 1 * * *", LORD_HOWE, Default, "2026-04-04T12:00:00+11:00",
            &["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]),
        ("45 1 * * *", LORD_HOWE, Both, "2026-04-04T12:00:00+11:00",
            &["2026-04-05T01:45:00+11:00", "2026-04-05T01:45:00+10:30", "2026-04-06T01:45:00+10:30"]),
        ("*/15 * * * *", LORD_HOWE, Default, "2026-04-05T01:20:00+11:00",
            &["2026-04-05T01:30:00+11:00", "2026-04-05T01:45:00+11:00", "2026-04-05T01:30:00+10:30",
              "2026-04-05T01:45:00+10:30", "2026-04-05T02:00:00+10:30"]),
        ("15 2 * * *", LORD_HOWE, Default, "2026-10-03T12:00:00+10:30",
            &["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]),
        ("15 2 * * *", LORD_HOWE, Skip, "2026-10-03T12:00:00+10:30",
            &["2026-10-05T02:15:00+11:00"]),
        ("*/15 * * * *", LORD_HOWE, Default, "2026-10-04T01:40:00+10:30",
            &["2026-10-04T01:45:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00"]),
        // Kathmandu is +05:45: a daily 09:00 fires at 03:15Z.
        ("0 9 * * *", KATHMANDU, Default, "2026-06-01T00:00:00Z",
            &["2026-06-01T09:00:00+05:45", "2026-06-02T09:00:00+05:45"]),
        // Leap days: the next 29 February after 2026 is in 2028.
        ("0 0 29 2 *", UTC, Default, "2026-01-01T00:00:00Z",
            &["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]),
        // Six fields: seconds first.
        ("*/20 * * * * *", UTC, Default, "2026-01-01T00:00:00Z",
            &["2026-01-01T00:00:20+00:00", "2026-01-01T00:00:40+00:00", "2026-01-01T00:01:00+00:00"]),
        ("30 15 10 * * *", UTC, Default, "2026-01-01T00:00:00Z",
            &["2026-01-01T10:15:30+00:00", "2026-01-02T10:15:30+00:00"]),
        // Macros (2026-01-01 is a Thursday).
        ("@hourly", UTC, Default, "2026-01-01T00:10:00Z",
            &["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"]),
        ("@daily", UTC, Default, "2026-01-01T00:10:00Z", &["2026-01-02T00:00:00+00:00"]),
        ("@midnight", UTC, Default, "2026-01-01T00:10:00Z", &["2026-01-02T00:00:00+00:00"]),
        ("@weekly", UTC, Default, "2026-01-01T00:10:00Z", &["2026-01-04T00:00:00+00:00"]),
        ("@monthly", UTC, Default, "2026-01-01T00:10:00Z", &["2026-02-01T00:00:00+00:00"]),
        ("@yearly", UTC, Default, "2026-01-01T00:10:00Z", &["2027-01-01T00:00:00+00:00"]),
        ("@ANNUALLY", UTC, Default, "2026-01-01T00:10:00Z", &["2027-01-01T00:00:00+00:00"]),
        // Names, ranges, lists.
        ("0 9 * * MON-FRI", UTC, Default, "2026-01-02T10:00:00Z",
            &["2026-01-05T09:00:00+00:00", "2026-01-06T09:00:00+00:00"]),
        ("0 0 1 JAN,jul *", UTC, Default, "2026-01-01T00:00:00Z",
            &["2026-07-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]),
        ("0 8-10/2 * * *", UTC, Default, "2026-01-01T00:00:00Z",
            &["2026-01-01T08:00:00+00:00", "2026-01-01T10:00:00+00:00", "2026-01-02T08:00:00+00:00"]),
        // Vixie: day-of-month and day-of-week both restricted: either matches.
        ("0 0 1 * MON", UTC, Default, "2026-01-26T12:00:00Z",
            &["2026-02-01T00:00:00+00:00", "2026-02-02T00:00:00+00:00", "2026-02-09T00:00:00+00:00"]),
        // Croner's `+`: both must match (1st of the month that is a Monday).
        ("0 0 1 * +MON", UTC, Default, "2026-01-01T00:00:00Z", &["2026-06-01T00:00:00+00:00"]),
        // L, W, #.
        ("0 0 L * *", UTC, Default, "2026-01-01T00:00:00Z",
            &["2026-01-31T00:00:00+00:00", "2026-02-28T00:00:00+00:00", "2026-03-31T00:00:00+00:00"]),
        ("0 0 L 2 *", UTC, Default, "2027-03-01T00:00:00Z", &["2028-02-29T00:00:00+00:00"]),
        ("0 0 15W * *", UTC, Default, "2026-02-01T00:00:00Z",
            &["2026-02-16T00:00:00+00:00", "2026-03-16T00:00:00+00:00", "2026-04-15T00:00:00+00:00"]),
        ("0 0 * * FRI#2", UTC, Default, "2026-01-01T00:00:00Z",
            &["2026-01-09T00:00:00+00:00", "2026-02-13T00:00:00+00:00"]),
        ("0 0 * * 5L", UTC, Default, "2026-01-01T00:00:00Z", &["2026-01-30T00:00:00+00:00"]),
        // Exactly on a tick: the next one.
        ("0 * * * *", UTC, Default, "2026-01-01T05:00:00Z", &["2026-01-01T06:00:00+00:00"]),
        ("0 * * * *", UTC, Default, "2026-01-01T04:59:59.999Z", &["2026-01-01T05:00:00+00:00"]),
    ];
    for (expr, zone, opts, from, expected) in cases {
        let schedule = Schedule::new(&spec(expr, zone, *opts), ts(from))
            .unwrap_or_else(|e| panic!("`{expr}` in {zone}: {e}"));
        check(&schedule, from, expected);
    }
}

#[test]
fn kathmandu_nine_am_is_quarter_past_three_utc() {
    let s = Schedule::new(
        &spec("0 9 * * *", KATHMANDU, Opts::Default),
        ts("2026-01-01T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(
        s.next_after(ts("2026-06-01T00:00:00Z")),
        Some(ts("2026-06-01T03:15:00Z"))
    );
}

#[test]
fn every_ticks_are_anchored() {
    let anchor = "2026-01-01T00:00:00Z";
    let every = |interval: &str, zone: &str| {
        let spec: ScheduleSpec =
            serde_json::from_value(json!({"every": interval, "timezone": zone})).unwrap();
        Schedule::new(&spec, ts(anchor)).unwrap()
    };
    let s = every("90s", UTC);
    check(
        &s,
        anchor,
        &["2026-01-01T00:01:30+00:00", "2026-01-01T00:03:00+00:00"],
    );
    check(&s, "2026-01-01T00:03:00Z", &["2026-01-01T00:04:30+00:00"]);
    check(
        &s,
        "2026-01-01T00:02:59.999Z",
        &["2026-01-01T00:03:00+00:00"],
    );
    // Before the anchor, the anchor itself is the first tick.
    check(&s, "2025-12-31T23:00:00Z", &["2026-01-01T00:00:00+00:00"]);
    // 151 days later is exactly tick 144960; no drift.
    check(&s, "2026-06-01T00:00:00Z", &["2026-06-01T00:01:30+00:00"]);
    // Intervals are elapsed time: DST does not bend them.
    check(
        &every("1h", NY),
        "2026-03-08T01:30:00-05:00",
        &["2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"],
    );
    check(
        &every("1500ms", UTC),
        anchor,
        &["2026-01-01T00:00:01.5+00:00"],
    );
}

#[test]
fn at_fires_once() {
    let at = |text: &str, zone: &str| {
        let spec: ScheduleSpec =
            serde_json::from_value(json!({"at": text, "timezone": zone})).unwrap();
        Schedule::new(&spec, ts("2026-01-01T00:00:00Z")).unwrap()
    };
    let s = at("2026-03-08T09:00:00Z", UTC);
    assert_eq!(
        s.upcoming(ts("2026-01-01T00:00:00Z")).collect::<Vec<_>>(),
        [ts("2026-03-08T09:00:00Z")]
    );
    assert_eq!(s.next_after(ts("2026-03-08T09:00:00Z")), None);
    // Local date-times are read in the zone, with the cron DST rules.
    check(
        &at("2026-03-08T02:30", NY),
        "2026-01-01T00:00:00Z",
        &["2026-03-08T03:00:00-04:00"],
    );
    check(
        &at("2026-11-01T01:30", NY),
        "2026-01-01T00:00:00Z",
        &["2026-11-01T01:30:00-04:00"],
    );
    check(
        &at("2026-07-01T12:00:00+02:00", NY),
        "2026-01-01T00:00:00Z",
        &["2026-07-01T06:00:00-04:00"],
    );
}

#[test]
fn errors_name_the_field() {
    #[rustfmt::skip]
    let cases = [
        (json!({"cron": "61 * * * *"}), "cron", "minute field: 61 is out of range 0-59 (in `61 * * * *`)"),
        (json!({"cron": "0 25 * * *"}), "cron", "hour field: 25 is out of range 0-23"),
        (json!({"cron": "0 0 32 * *"}), "cron", "day-of-month field: 32 is out of range 1-31"),
        (json!({"cron": "0 0 * 13 *"}), "cron", "month field: 13 is out of range 1-12"),
        (json!({"cron": "60 0 0 * * *"}), "cron", "second field: 60 is out of range 0-59"),
        (json!({"cron": "0 0 * * MON#6"}), "cron", "day-of-week field: `MON#6`"),
        (json!({"cron": "0 0 * * funday"}), "cron", "day-of-week field: `funday`"),
        (json!({"cron": "*/0 * * * *"}), "cron", "minute field: `*/0`: step cannot be zero"),
        (json!({"cron": "5-1 * * * *"}), "cron", "minute field: `5-1`"),
        (json!({"cron": "* * *"}), "cron", "`* * *` has 3 fields; expected 5"),
        (json!({"cron": "* * * * * * *"}), "cron", "has 7 fields"),
        (json!({"cron": ""}), "cron", "must not be empty"),
        (json!({"cron": "@reboot"}), "cron", "`@reboot` is not a known macro"),
        (json!({"cron": "0 0 31 2 *"}), "cron", "`0 0 31 2 *` never fires"),
        (json!({"cron": "0 0 30 2 *"}), "cron", "never fires"),
        (json!({"cron": "0 0 31 4,6,9,11 *"}), "cron", "never fires"),
        (json!({"cron": "* * * * *", "timezone": "Mars/Olympus_Mons"}), "timezone", "`Mars/Olympus_Mons` is not a known IANA time zone"),
        (json!({"every": "0s"}), "every", "`0s` is shorter than the minimum of 1s"),
        (json!({"every": "500ms"}), "every", "shorter than the minimum"),
        (json!({"at": "next tuesday"}), "at", "`next tuesday` is neither an RFC 3339 instant"),
        (json!({"at": "2026-03-08T02:30", "timezone": NY, "dst_gap": "skip"}), "at", "does not exist in America/New_York"),
        (json!({}), "cron", "give one of cron, every or at"),
        (json!({"cron": "* * * * *", "every": "1m"}), "every", "give only one of cron, every and at (got cron, every)"),
    ];
    for (body, field, message) in cases {
        let spec: ScheduleSpec = serde_json::from_value(body.clone()).unwrap();
        let err = Schedule::new(&spec, ts("2026-01-01T00:00:00Z")).unwrap_err();
        assert_eq!(err.field, field, "{body}: {err}");
        assert!(
            err.message.contains(message),
            "{body}: got `{err}`, want `{message}`"
        );
    }
}

#[test]
fn spec_is_strict_and_round_trips() {
    let spec: ScheduleSpec = serde_json::from_value(json!({"cron": "0 9 * * *"})).unwrap();
    assert_eq!(spec, ScheduleSpec::cron("0 9 * * *", "UTC"));
    assert!(
        serde_json::from_value::<ScheduleSpec>(json!({"cron": "* * * * *", "tz": "UTC"})).is_err()
    );
    assert!(
        serde_json::from_value::<ScheduleSpec>(json!({"cron": "* * * * *", "dst_gap": "later"}))
            .is_err()
    );
    let full =
        json!({"cron": "30 1 * * *", "timezone": NY, "dst_gap": "skip", "dst_overlap": "both"});
    let spec: ScheduleSpec = serde_json::from_value(full.clone()).unwrap();
    assert_eq!(serde_json::to_value(&spec).unwrap(), full);
}

#[test]
fn display_says_what_and_where() {
    let show = |body: serde_json::Value| {
        let spec: ScheduleSpec = serde_json::from_value(body).unwrap();
        Schedule::new(&spec, ts("2026-01-01T00:00:00Z"))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        show(json!({"cron": " 0 9 * * MON-FRI ", "timezone": "Europe/Paris"})),
        "cron `0 9 * * MON-FRI` in Europe/Paris"
    );
    assert_eq!(
        show(json!({"cron": "30 1 * * *", "dst_gap": "skip", "dst_overlap": "both"})),
        "cron `30 1 * * *` in UTC, dst_gap skip, dst_overlap both"
    );
    assert_eq!(
        show(json!({"every": "90s", "timezone": NY})),
        "every 1m 30s from 2025-12-31T19:00:00-05:00"
    );
    assert_eq!(
        show(json!({"at": "2026-03-08T09:00:00Z"})),
        "at 2026-03-08T09:00:00+00:00"
    );
}

#[test]
fn a_leap_day_schedule_is_found_quickly_far_ahead() {
    // 29 February that is also a Monday (croner's `+` AND): decades apart.
    let s = Schedule::new(
        &spec("0 0 29 2 +MON", UTC, Opts::Default),
        ts("2026-01-01T00:00:00Z"),
    )
    .unwrap();
    let got: Vec<Timestamp> = s.upcoming(ts("2026-01-01T00:00:00Z")).take(2).collect();
    assert_eq!(
        got,
        [ts("2044-02-29T00:00:00Z"), ts("2072-02-29T00:00:00Z")]
    );
}

// ---- Properties ----------------------------------------------------------

/// Zones with every kind of offset and DST shape: none, whole hours, 30
/// minutes, 45-minute offsets, the southern hemisphere, a midnight change.
const ZONES: [&str; 8] = [
    UTC,
    NY,
    LONDON,
    LORD_HOWE,
    KATHMANDU,
    "Pacific/Chatham",
    "America/Santiago",
    "Australia/Sydney",
];

fn minute_field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (1u32..=30).prop_map(|k| format!("*/{k}")),
        (0u32..60).prop_map(|n| n.to_string()),
        (0u32..60, 0u32..60).prop_map(|(a, b)| format!("{a},{b}")),
        (0u32..60, 0u32..60, 1u32..20).prop_map(|(a, b, k)| format!(
            "{}-{}/{k}",
            a.min(b),
            a.max(b)
        )),
    ]
}

fn hour_field() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("*".to_string()),
        1 => Just("*/1".to_string()),
        1 => (2u32..=12).prop_map(|k| format!("*/{k}")),
        // DST changes happen around 00:00-04:00 local: aim there often.
        3 => (0u32..4).prop_map(|n| n.to_string()),
        1 => (0u32..24).prop_map(|n| n.to_string()),
        1 => (0u32..24, 0u32..24).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        1 => (0u32..24, 0u32..24).prop_map(|(a, b)| format!("{a},{b}")),
    ]
}

fn dom_field() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("*".to_string()),
        1 => (1u32..=31).prop_map(|n| n.to_string()),
        1 => Just("L".to_string()),
        1 => (1u32..=31, 1u32..=31).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
    ]
}

fn month_field() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("*".to_string()),
        1 => (1u32..=12, 1u32..=12).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
    ]
}

fn dow_field() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => Just("*".to_string()),
        1 => (0u32..=7).prop_map(|n| n.to_string()),
        1 => Just("MON-FRI".to_string()),
        1 => Just("SAT,SUN".to_string()),
    ]
}

fn expression() -> impl Strategy<Value = String> {
    (
        minute_field(),
        hour_field(),
        dom_field(),
        month_field(),
        dow_field(),
    )
        .prop_map(|(m, h, dom, mon, dow)| format!("{m} {h} {dom} {mon} {dow}"))
}

/// A start instant: often shortly before a DST change of `zone`, so that
/// the window covers it.
fn start(zone: &TimeZone, day: i64, before_change_secs: i64, nanos: i32) -> Timestamp {
    let base = ts("2026-01-01T00:00:00Z") + jiff::SignedDuration::from_hours(24 * day);
    let near = zone
        .following(base)
        .next()
        .map(|tr| tr.timestamp())
        .filter(|t| *t < base + jiff::SignedDuration::from_hours(24 * 400))
        .unwrap_or(base);
    near - jiff::SignedDuration::new(before_change_secs, nanos)
}

/// Every fire time in `(t, end]`, found the slow way: visit every real minute,
/// ask croner whether its local time matches, and apply the DST rules.
fn oracle(
    cron: &CronTiming,
    tz: &TimeZone,
    gap: DstGap,
    overlap: DstOverlap,
    t: Timestamp,
    end: Timestamp,
) -> Vec<Timestamp> {
    let minute = jiff::SignedDuration::from_mins(1);
    let both = cron.follows_real_time() || overlap == DstOverlap::Both;
    let shift = !cron.follows_real_time() && gap == DstGap::Shift;
    let mut out = Vec::new();
    // The first whole minute after `t`.
    let mut i = Timestamp::from_second(t.as_second().div_euclid(60) * 60 + 60).unwrap();
    while i <= end {
        let wall = tz.to_datetime(i);
        if cron.matches(wall) {
            let second_pass = matches!(
                tz.to_ambiguous_timestamp(wall).offset(),
                AmbiguousOffset::Fold { after, .. } if tz.to_offset(i) == after
            );
            if !second_pass || both {
                out.push(i);
            }
        }
        i += minute;
    }
    if shift {
        // A gap fires at its end if any skipped local minute matches.
        for tr in tz.following(t - jiff::SignedDuration::from_secs(1)) {
            let at = tr.timestamp();
            if at > end {
                break;
            }
            let before = tz.to_offset(at - jiff::SignedDuration::from_secs(1));
            let after = tr.offset();
            if at <= t || after <= before {
                continue;
            }
            let (from, to) = (before.to_datetime(at), after.to_datetime(at));
            let mut wall = from;
            while wall < to {
                if cron.matches(wall) {
                    out.push(at);
                    break;
                }
                wall += minute;
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn cron_agrees_with_a_minute_by_minute_walk(
        expr in expression(),
        zone in proptest::sample::select(&ZONES[..]),
        day in 0i64..730,
        // Often inside the hour around the change (either pass of a repeat).
        before_change in prop_oneof![(-3600i64..3600), (-6 * 3600i64)..(36 * 3600)],
        nanos in prop_oneof![Just(0i32), 0i32..1_000_000_000],
        skip in any::<bool>(),
        both in any::<bool>(),
    ) {
        let spec = ScheduleSpec {
            dst_gap: if skip { DstGap::Skip } else { DstGap::Shift },
            dst_overlap: if both { DstOverlap::Both } else { DstOverlap::First },
            ..ScheduleSpec::cron(expr.clone(), zone)
        };
        // Some generated day/month combinations never fire (`0 0 31 2 *`).
        let (Ok(schedule), Ok(cron)) = (Schedule::new(&spec, Timestamp::UNIX_EPOCH), CronTiming::parse(&expr)) else {
            return Ok(());
        };
        let tz = schedule.timezone().clone();
        let t = start(&tz, day, before_change, nanos);
        let end = t + jiff::SignedDuration::from_hours(48);

        let got: Vec<Timestamp> = schedule.upcoming(t).take_while(|x| *x <= end).collect();
        let want = oracle(&cron, &tz, spec.dst_gap, spec.dst_overlap, t, end);
        let shown = |v: &[Timestamp]| v.iter().map(|x| format_in_zone(*x, &tz)).collect::<Vec<_>>();
        prop_assert_eq!(shown(&got), shown(&want), "`{}` in {} after {}", expr, zone, format_in_zone(t, &tz));

        // Spelled out, the same contract: strictly increasing, after `t`, and
        // each one matches in local time or is the end of a DST gap.
        let mut last = t;
        for x in got {
            prop_assert!(x > last);
            last = x;
            let at_gap_end = tz.preceding(x + jiff::SignedDuration::from_nanos(1)).next()
                .is_some_and(|tr| tr.timestamp() == x);
            prop_assert!(cron.matches(tz.to_datetime(x)) || at_gap_end);
        }
    }

    #[test]
    fn every_ticks_stay_on_the_grid(
        anchor_s in 1_700_000_000i64..1_900_000_000,
        interval_ms in 1_000u64..(3 * 86_400_000),
        offset_ms in -86_400_000i64..(400 * 86_400_000),
    ) {
        let anchor = Timestamp::from_second(anchor_s).unwrap();
        let interval = Duration::from_millis(interval_ms);
        let spec = ScheduleSpec { every: Some(DurationSpec(interval)), ..ScheduleSpec::default() };
        let s = Schedule::new(&spec, anchor).unwrap();
        let t = anchor + jiff::SignedDuration::from_millis(offset_ms);
        let next = s.next_after(t).unwrap();
        prop_assert!(next > t);
        let since = next.duration_since(anchor).as_millis();
        prop_assert!(since >= 0);
        prop_assert_eq!(since % i128::from(interval_ms), 0);
        // No tick was jumped over.
        prop_assert!(next == anchor || next - jiff::SignedDuration::from_millis(interval_ms as i64) <= t);
    }
}
