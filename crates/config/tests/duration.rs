//! `parse_duration`: examples, errors and a round trip property.

use std::time::Duration;

use proptest::prelude::*;
use wsrelay_config::{format_duration, parse_duration, parse_positive_duration, DurationError};

#[test]
fn examples() {
    let table = [
        ("500ms", Duration::from_millis(500)),
        ("30s", Duration::from_secs(30)),
        ("1m30s", Duration::from_secs(90)),
        ("2h", Duration::from_secs(7200)),
        ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
        ("1.5s", Duration::from_millis(1500)),
        (".5m", Duration::from_secs(30)),
        ("10µs", Duration::from_micros(10)),
        (" 0s ", Duration::ZERO),
    ];
    for (text, expected) in table {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
}

#[test]
fn errors_name_the_problem() {
    type IsExpected = fn(&DurationError) -> bool;
    let cases: [(&str, IsExpected, &str); 7] = [
        ("", |e| matches!(e, DurationError::Empty), "empty duration"),
        (
            "30",
            |e| matches!(e, DurationError::MissingUnit { .. }),
            "missing unit",
        ),
        (
            "5d",
            |e| matches!(e, DurationError::UnknownUnit { .. }),
            "unknown unit \"d\"",
        ),
        (
            "-1s",
            |e| matches!(e, DurationError::ExpectedNumber { .. }),
            "expected a number",
        ),
        (
            "1..2s",
            |e| matches!(e, DurationError::ExpectedNumber { .. }),
            "expected a number",
        ),
        (
            "1s 2s",
            |e| matches!(e, DurationError::UnknownUnit { .. }),
            "unknown unit \"s \"",
        ),
        (
            "99999999999999999999999h",
            |e| matches!(e, DurationError::Overflow { .. }),
            "too large",
        ),
    ];
    for (text, is_expected, message) in cases {
        let err = parse_duration(text).unwrap_err();
        assert!(is_expected(&err), "{text}: {err:?}");
        assert!(err.to_string().contains(message), "{text}: {err}");
    }
    let err = parse_positive_duration("0ms").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid duration \"0ms\": must be greater than zero"
    );
}

#[test]
fn formats_canonically() {
    assert_eq!(format_duration(Duration::ZERO), "0s");
    assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(format_duration(Duration::new(3600, 1)), "1h1ns");
}

proptest! {
    #[test]
    fn format_then_parse_round_trips(secs in 0u64..10_000_000_000, nanos in 0u32..1_000_000_000) {
        let duration = Duration::new(secs, nanos);
        prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
    }

    #[test]
    fn never_panics(text in "\\PC{0,24}") {
        let _ = parse_duration(&text);
    }
}
