//! Durations as people write them on a command line: `90s`, `15m`, `1h30m`, `365d`, `250ms`.
//!
//! Used by the service binaries' configuration and by the `calendar` client.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::TimeDelta;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing given.
    #[error("empty duration: write for example 90s, 15m, 1h30m or 2d")]
    Empty,
    /// A number without a unit, a unit without a number, or an unknown unit.
    #[error("{0:?} is not a duration: write numbers with units ms, s, m, h or d, as in 1h30m")]
    Malformed(String),
    /// Larger than this program can count.
    #[error("{0:?} is too long a duration")]
    Overflow(String),
}

/// Parses a sequence of `<whole number><unit>` (units `ms`, `s`, `m`, `h`, `d`), summed:
/// `1h30m` is 90 minutes. `0` alone is zero.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let malformed = || DurationError::Malformed(text.to_owned());
    let overflow = || DurationError::Overflow(text.to_owned());
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(malformed());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| overflow())?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit_millis: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(malformed()),
        };
        rest = &rest[unit_len..];
        let millis = number.checked_mul(unit_millis).ok_or_else(overflow)?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(overflow)?;
    }
    Ok(total)
}

/// Writes a duration the way [`parse_duration`] reads it, largest units first (`1h30m`,
/// `2d`, `0s`); sub-millisecond digits are left out, a negative duration gets a `-`.
pub fn format_duration(delta: TimeDelta) -> String {
    let mut text = String::new();
    if delta < TimeDelta::zero() {
        text.push('-');
    }
    let mut millis = delta.num_milliseconds().unsigned_abs();
    if millis == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if millis >= size {
            // Writing to a String cannot fail.
            let _ = write!(text, "{}{unit}", millis / size);
            millis %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums_them() {
        let cases = [
            ("0", 0),
            ("250ms", 250),
            ("90s", 90_000),
            ("15m", 900_000),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
            (" 1d1h1m1s1ms ", 90_061_001),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        assert_eq!(parse_duration("  "), Err(DurationError::Empty));
        for text in ["15", "m", "1.5h", "-5m", "5 m", "5w", "1h30"] {
            assert!(
                matches!(parse_duration(text), Err(DurationError::Malformed(_))),
                "{text}"
            );
        }
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formats_what_it_parses() {
        for text in ["0s", "250ms", "1m30s", "1h30m", "366d", "1d1h1m1s1ms"] {
            let parsed = parse_duration(text).unwrap();
            let delta = TimeDelta::from_std(parsed).unwrap();
            assert_eq!(format_duration(delta), text);
        }
        assert_eq!(format_duration(TimeDelta::minutes(-5)), "-5m");
    }
}
