//! Duration text: `500ms`, `30s`, `1m30s`, `2h`.
//!
//! The grammar is Go's `time.ParseDuration` without signs: one or more
//! `<number><unit>` terms, where the number is a decimal with an optional
//! fraction (`1.5s`) and the unit is one of `h`, `m`, `s`, `ms`, `us` (or
//! `µs`) and `ns`. Terms add up, so `1m30s` is ninety seconds. Outer
//! whitespace is ignored; a bare number (`30`) is rejected because its unit
//! would be a guess. The same text is used by the config (`lifecycle.restart`)
//! and by the relay's `heartbeat_interval` (docs/spec.md §4), so both share this parser.

use std::time::Duration;

/// The units accepted by [`parse_duration`], with their length in nanoseconds.
///
/// Longer spellings come first so that `ms` is not read as `m` followed by `s`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
];

/// Why a duration text was rejected. The error carries the input text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The text is empty (or only whitespace).
    #[error("empty duration (expected e.g. \"500ms\", \"30s\", \"1m30s\")")]
    Empty,
    /// A term does not start with a number (e.g. `-1s`, `s`, `1s x`).
    #[error("invalid duration {text:?}: expected a number at {rest:?}")]
    ExpectedNumber {
        /// The whole input.
        text: String,
        /// The unparsed remainder where a number was expected.
        rest: String,
    },
    /// A number has no unit after it (`30`).
    #[error(
        "invalid duration {text:?}: missing unit after {number:?} (use h, m, s, ms, us or ns)"
    )]
    MissingUnit {
        /// The whole input.
        text: String,
        /// The number that lacks a unit.
        number: String,
    },
    /// The unit is not one of `h`, `m`, `s`, `ms`, `us`, `µs`, `ns`.
    #[error("invalid duration {text:?}: unknown unit {unit:?} (use h, m, s, ms, us or ns)")]
    UnknownUnit {
        /// The whole input.
        text: String,
        /// The unit as written.
        unit: String,
    },
    /// The value does not fit in a [`Duration`].
    #[error("invalid duration {text:?}: too large")]
    Overflow {
        /// The whole input.
        text: String,
    },
    /// The duration is zero where a positive one is required.
    #[error("invalid duration {text:?}: must be greater than zero")]
    Zero {
        /// The whole input.
        text: String,
    },
}

/// Parses duration text such as `500ms`, `30s`, `1m30s` or `2h`.
///
/// Zero (`0s`) is accepted; use [`parse_positive_duration`] where a duration
/// must be greater than zero.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use wsrelay_config::parse_duration;
///
/// assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert!(parse_duration("30").is_err());
/// ```
///
/// # Errors
///
/// Returns a [`DurationError`] naming the problem and the input text when the
/// text is empty, a term has no number or no unit, the unit is unknown or the
/// total does not fit in a [`Duration`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = trimmed;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (nanos, after) = parse_term(trimmed, rest)?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| DurationError::Overflow {
                text: trimmed.to_owned(),
            })?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow {
        text: trimmed.to_owned(),
    })?;
    // The remainder is below 10^9 and always fits in a u32.
    let sub_nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub_nanos))
}

/// Parses duration text like [`parse_duration`] and rejects zero.
///
/// # Errors
///
/// Everything [`parse_duration`] rejects, plus [`DurationError::Zero`].
pub fn parse_positive_duration(text: &str) -> Result<Duration, DurationError> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(DurationError::Zero {
            text: text.trim().to_owned(),
        });
    }
    Ok(duration)
}

/// Formats a duration in the canonical form that [`parse_duration`] reads
/// back: `1h2m3s`, `500ms`, `1s250ms`, `0s` for zero.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use wsrelay_config::format_duration;
///
/// assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
/// assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
/// ```
#[must_use]
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let mut nanos = duration.as_nanos();
    let mut out = String::new();
    for (unit, len) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        let count = nanos / len;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(unit);
            nanos %= len;
        }
    }
    out
}

/// Parses one `<number><unit>` term at the start of `rest`; returns its
/// length in nanoseconds and the text after it.
fn parse_term<'a>(text: &str, rest: &'a str) -> Result<(u128, &'a str), DurationError> {
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let number = &rest[..number_len];
    let (whole, frac) = split_number(number).ok_or_else(|| DurationError::ExpectedNumber {
        text: text.to_owned(),
        rest: rest.to_owned(),
    })?;
    let after_number = &rest[number_len..];
    let unit_len = after_number
        .find(|c: char| c.is_ascii_digit() || c == '.')
        .unwrap_or(after_number.len());
    let unit = &after_number[..unit_len];
    if unit.is_empty() {
        return Err(DurationError::MissingUnit {
            text: text.to_owned(),
            number: number.to_owned(),
        });
    }
    let unit_nanos = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, len)| *len)
        .ok_or_else(|| DurationError::UnknownUnit {
            text: text.to_owned(),
            unit: unit.to_owned(),
        })?;
    let overflow = || DurationError::Overflow {
        text: text.to_owned(),
    };
    let whole: u128 = whole.parse().map_err(|_| overflow())?;
    let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
    // Fractions are exact down to the nanosecond; finer digits are dropped.
    let mut scale = unit_nanos;
    for digit in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos += u128::from(digit - b'0') * scale;
    }
    Ok((nanos, &after_number[unit_len..]))
}

/// Splits `12.5` into `("12", "5")`; `None` unless there is at least one digit
/// and at most one dot.
fn split_number(number: &str) -> Option<(&str, &str)> {
    let (whole, frac) = match number.split_once('.') {
        Some((whole, frac)) if !frac.contains('.') => (whole, frac),
        Some(_) => return None,
        None => (number, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let whole = if whole.is_empty() { "0" } else { whole };
    Some((whole, frac))
}
