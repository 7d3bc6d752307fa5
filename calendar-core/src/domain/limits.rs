//! The bounds every value of the calendar lives within.
//!
//! They are named here so that adapters (database CHECK constraints, protocol validation, docs)
//! can mirror them instead of repeating numbers.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// Longest title, in Unicode scalar values, after trimming surrounding whitespace.
pub const MAX_TITLE_CHARS: usize = 200;

/// Longest description, in Unicode scalar values.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;

/// Longest user id, in bytes (user ids are ASCII).
pub const MAX_USER_ID_LEN: usize = 128;

/// Shortest event, in minutes: the calendar is correct to the minute.
pub const MIN_EVENT_DURATION_MINUTES: i64 = 1;

/// Longest event, in days (a leap year).
pub const MAX_EVENT_DURATION_DAYS: i64 = 366;

/// Longest "remind me before", in days.
pub const MAX_NOTIFY_BEFORE_DAYS: i64 = 366;

/// The first calendar year an event may start in (UTC), and the first a period may be asked for.
pub const EARLIEST_YEAR: i32 = 1900;

/// The last calendar year an event may end in (UTC), and the last a period may be asked for.
pub const LATEST_YEAR: i32 = 9999;

/// Default number of events in one page of a list.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Largest number of events in one page of a list.
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// Largest encoded notification message accepted from a queue, in bytes.
pub const MAX_NOTIFICATION_MESSAGE_BYTES: usize = 64 * 1024;

/// Shortest event as a duration ([`MIN_EVENT_DURATION_MINUTES`]).
pub fn min_event_duration() -> TimeDelta {
    TimeDelta::minutes(MIN_EVENT_DURATION_MINUTES)
}

/// Longest event as a duration ([`MAX_EVENT_DURATION_DAYS`]).
pub fn max_event_duration() -> TimeDelta {
    TimeDelta::days(MAX_EVENT_DURATION_DAYS)
}

/// Longest reminder lead as a duration ([`MAX_NOTIFY_BEFORE_DAYS`]).
pub fn max_notify_before() -> TimeDelta {
    TimeDelta::days(MAX_NOTIFY_BEFORE_DAYS)
}

/// The first date a period may be asked for: 1 January of [`EARLIEST_YEAR`].
pub fn earliest_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(EARLIEST_YEAR, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// The last date a period may be asked for: 31 December of [`LATEST_YEAR`].
pub fn latest_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(LATEST_YEAR, 12, 31).unwrap_or(NaiveDate::MAX)
}

/// The earliest instant an event may start: midnight UTC opening [`EARLIEST_YEAR`].
pub fn earliest_start() -> DateTime<Utc> {
    earliest_date().and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The latest instant an event may end (exclusive bound of its span): midnight UTC closing
/// [`LATEST_YEAR`].
pub fn latest_end() -> DateTime<Utc> {
    latest_date().and_time(chrono::NaiveTime::MIN).and_utc() + TimeDelta::days(1)
}

/// Drops the sub-microsecond digits of an instant: instants are kept with microsecond precision,
/// the precision of PostgreSQL's `timestamptz`, so that a value reads back as it was written.
pub fn to_micros(instant: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(instant.timestamp_micros()).unwrap_or(instant)
}

/// Drops the sub-microsecond digits of a duration (see [`to_micros`]).
pub fn delta_to_micros(delta: TimeDelta) -> TimeDelta {
    delta
        .num_microseconds()
        .map_or(delta, TimeDelta::microseconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_the_documented_instants() {
        assert_eq!(earliest_start().to_rfc3339(), "1900-01-01T00:00:00+00:00");
        assert_eq!(latest_end().to_rfc3339(), "+10000-01-01T00:00:00+00:00");
        assert_eq!(latest_date().to_string(), "9999-12-31");
    }

    #[test]
    fn truncation_keeps_microseconds_only() {
        let instant = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(to_micros(instant).timestamp_subsec_nanos(), 123_456_000);
        let delta = TimeDelta::nanoseconds(1_999);
        assert_eq!(delta_to_micros(delta), TimeDelta::microseconds(1));
    }
}
