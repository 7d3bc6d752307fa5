//! Calendar periods (a day, a week, a month) in an IANA time zone, as ranges of instants.
//!
//! A period starts at local midnight of its first date and ends at local midnight of the date
//! after its last, so a day is 23 or 25 hours long when the clocks change. Where local midnight
//! does not exist (a DST gap at midnight, as in America/Sao_Paulo until 2019) the day starts at
//! the first instant after the gap; where it happens twice, at the first. An event belongs to a
//! period when it overlaps it.

use std::fmt;

use chrono::{
    DateTime, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;

use super::event::EventSpan;
use super::limits::{earliest_date, latest_date};

/// A half-open range of instants `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeRange {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// Why two instants are not a [`TimeRange`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("range end {end} is before its start {start}")]
pub struct TimeRangeError {
    /// The start given.
    pub start: DateTime<Utc>,
    /// The end given.
    pub end: DateTime<Utc>,
}

impl TimeRange {
    /// The range `[start, end)`; empty when they are equal.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, TimeRangeError> {
        if end < start {
            Err(TimeRangeError { start, end })
        } else {
            Ok(Self { start, end })
        }
    }

    /// The first instant in the range.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// The first instant after the range.
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// Whether the instant is in the range.
    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        self.start <= instant && instant < self.end
    }

    /// Whether the range holds no instant.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether an event spanning `span` belongs to the range: it starts before the range ends
    /// and ends after the range starts. Nothing belongs to an empty range.
    pub fn overlaps(&self, span: &EventSpan) -> bool {
        !self.is_empty() && span.start() < self.end && span.end() > self.start
    }
}

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    /// One local day.
    Day,
    /// Seven local days from the given date.
    Week,
    /// From the given date to the same date next month (clamped to the month's last day:
    /// 31 January runs to 28 or 29 February).
    Month,
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        })
    }
}

/// A day, week or month from a date, in a time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    kind: PeriodKind,
    first_date: NaiveDate,
    zone: Tz,
    range: TimeRange,
}

/// Why a period cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// The date lies outside the calendar's years.
    #[error("date {date} is outside {earliest}..={latest}")]
    DateOutOfRange {
        /// The date given.
        date: NaiveDate,
        /// The first date allowed.
        earliest: NaiveDate,
        /// The last date allowed.
        latest: NaiveDate,
    },
}

/// Why a name is not a time zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not an IANA time zone name (such as \"Europe/Berlin\")")]
pub struct TimeZoneError {
    /// The name given (at most 64 characters of it).
    pub name: String,
}

/// Looks up an IANA time zone by its exact name (`Europe/Berlin`, `UTC`).
pub fn parse_time_zone(name: &str) -> Result<Tz, TimeZoneError> {
    name.parse::<Tz>().map_err(|_| TimeZoneError {
        name: name.chars().take(64).collect(),
    })
}

impl Period {
    /// The period of `kind` starting on `first_date` in `zone`.
    pub fn new(kind: PeriodKind, first_date: NaiveDate, zone: Tz) -> Result<Self, PeriodError> {
        let (earliest, latest) = (earliest_date(), latest_date());
        if first_date < earliest || first_date > latest {
            return Err(PeriodError::DateOutOfRange {
                date: first_date,
                earliest,
                latest,
            });
        }
        // Dates up to 9999-12-31 plus a month stay far inside chrono's range.
        let after = match kind {
            PeriodKind::Day => first_date.checked_add_days(Days::new(1)),
            PeriodKind::Week => first_date.checked_add_days(Days::new(7)),
            PeriodKind::Month => first_date.checked_add_months(Months::new(1)),
        }
        .unwrap_or(NaiveDate::MAX);
        let range = TimeRange {
            start: start_of_day(first_date, zone),
            end: start_of_day(after, zone),
        };
        Ok(Self {
            kind,
            first_date,
            zone,
            range,
        })
    }

    /// The local day `date` in `zone`.
    pub fn day(date: NaiveDate, zone: Tz) -> Result<Self, PeriodError> {
        Self::new(PeriodKind::Day, date, zone)
    }

    /// Seven local days from `date` in `zone`.
    pub fn week(date: NaiveDate, zone: Tz) -> Result<Self, PeriodError> {
        Self::new(PeriodKind::Week, date, zone)
    }

    /// From `date` to the same date next month in `zone`.
    pub fn month(date: NaiveDate, zone: Tz) -> Result<Self, PeriodError> {
        Self::new(PeriodKind::Month, date, zone)
    }

    /// Day, week or month.
    pub fn kind(&self) -> PeriodKind {
        self.kind
    }

    /// The local date the period starts on.
    pub fn first_date(&self) -> NaiveDate {
        self.first_date
    }

    /// The time zone of its midnights.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The instants it covers.
    pub fn range(&self) -> TimeRange {
        self.range
    }
}

/// The first instant of local date `date` in `zone`: local midnight, or where midnight falls in
/// a DST gap, the end of the gap; where midnight happens twice, the first time.
pub fn start_of_day(date: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    if let Some(first) = zone.from_local_datetime(&midnight).earliest() {
        return first.to_utc();
    }
    first_instant_at_or_after(midnight, zone)
}

/// The first instant whose local wall time in `zone` is at or after `wall`, for a `wall` time
/// that the zone skips. Offsets are within ±26 hours, so the answer lies within ±36 hours of
/// `wall` read as UTC; transitions fall on whole seconds, so a search by seconds is exact.
fn first_instant_at_or_after(wall: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    let window = TimeDelta::hours(36).num_seconds();
    let base = wall.and_utc().timestamp();
    let (mut before, mut after) = (base - window, base + window);
    let local_at = |secs: i64| {
        DateTime::from_timestamp(secs, 0)
            .map(|t| zone.from_utc_datetime(&t.naive_utc()).naive_local())
    };
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        match local_at(middle) {
            Some(local) if local >= wall => after = middle,
            _ => before = middle,
        }
    }
    DateTime::from_timestamp(after, 0).unwrap_or_else(|| wall.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use proptest::prelude::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn zone(name: &str) -> Tz {
        parse_time_zone(name).unwrap()
    }

    fn hours(period: &Period) -> i64 {
        (period.range().end() - period.range().start()).num_hours()
    }

    #[test]
    fn utc_day_is_24_hours() {
        let day = Period::day(date("2026-03-29"), Tz::UTC).unwrap();
        assert_eq!(day.range().start(), at("2026-03-29T00:00:00Z"));
        assert_eq!(hours(&day), 24);
    }

    #[test]
    fn berlin_dst_days_have_23_and_25_hours() {
        let spring = Period::day(date("2026-03-29"), zone("Europe/Berlin")).unwrap();
        assert_eq!(spring.range().start(), at("2026-03-28T23:00:00Z"));
        assert_eq!(spring.range().end(), at("2026-03-29T22:00:00Z"));
        assert_eq!(hours(&spring), 23);
        let autumn = Period::day(date("2026-10-25"), zone("Europe/Berlin")).unwrap();
        assert_eq!(autumn.range().start(), at("2026-10-24T22:00:00Z"));
        assert_eq!(hours(&autumn), 25);
    }

    #[test]
    fn sao_paulo_midnight_gap_starts_the_day_after_the_gap() {
        // 2018-11-04 00:00 did not exist in Sao Paulo: clocks jumped from 00:00 -03 to 01:00 -02.
        let day = Period::day(date("2018-11-04"), zone("America/Sao_Paulo")).unwrap();
        assert_eq!(day.range().start(), at("2018-11-04T03:00:00Z"));
        assert_eq!(hours(&day), 23);
        // 2019-02-16 23:00..24:00 happened twice: the day before the change has 25 hours.
        let long = Period::day(date("2019-02-16"), zone("America/Sao_Paulo")).unwrap();
        assert_eq!(long.range().start(), at("2019-02-16T02:00:00Z"));
        assert_eq!(hours(&long), 25);
    }

    #[test]
    fn apia_skipped_day_is_an_empty_period() {
        // Samoa moved across the date line: 2011-12-30 never happened in Pacific/Apia.
        let skipped = Period::day(date("2011-12-30"), zone("Pacific/Apia")).unwrap();
        assert_eq!(skipped.range().start(), skipped.range().end());
        let before = Period::day(date("2011-12-29"), zone("Pacific/Apia")).unwrap();
        assert_eq!(before.range().end(), skipped.range().start());
    }

    #[test]
    fn week_and_month_lengths() {
        let berlin = zone("Europe/Berlin");
        let week = Period::week(date("2026-03-23"), berlin).unwrap();
        assert_eq!(hours(&week), 7 * 24 - 1);
        let jan = Period::month(date("2026-01-31"), berlin).unwrap();
        assert_eq!(
            jan.range().end(),
            start_of_day(date("2026-02-28"), berlin),
            "31 January runs to the end of February, clamped"
        );
        let leap = Period::month(date("2028-01-31"), Tz::UTC).unwrap();
        assert_eq!(leap.range().end(), at("2028-02-29T00:00:00Z"));
        let last = Period::month(date("9999-12-31"), Tz::UTC).unwrap();
        assert_eq!(last.range().end().year(), 10000);
    }

    #[test]
    fn dates_outside_the_calendar_are_rejected() {
        assert!(matches!(
            Period::day(date("1899-12-31"), Tz::UTC),
            Err(PeriodError::DateOutOfRange { .. })
        ));
        assert!(Period::day(date("1900-01-01"), zone("Pacific/Kiritimati")).is_ok());
        assert!(Period::day(date("9999-12-31"), zone("Pacific/Kiritimati")).is_ok());
        assert!(matches!(
            Period::day(NaiveDate::from_ymd_opt(10000, 1, 1).unwrap(), Tz::UTC),
            Err(PeriodError::DateOutOfRange { .. })
        ));
    }

    #[test]
    fn unknown_time_zones_are_named_in_the_error() {
        assert_eq!(
            parse_time_zone("Mars/Olympus_Mons"),
            Err(TimeZoneError {
                name: "Mars/Olympus_Mons".into()
            })
        );
        assert!(parse_time_zone("").is_err());
        assert!(parse_time_zone("europe/berlin").is_err(), "names are exact");
    }

    #[test]
    fn membership_is_overlap() {
        let day = Period::day(date("2026-03-01"), Tz::UTC).unwrap().range();
        let span = |start: &str, minutes: i64| {
            EventSpan::new(at(start), TimeDelta::minutes(minutes)).unwrap()
        };
        assert!(
            day.overlaps(&span("2026-02-28T23:00:00Z", 61)),
            "crosses the start"
        );
        assert!(
            !day.overlaps(&span("2026-02-28T23:00:00Z", 60)),
            "ends at the start"
        );
        assert!(
            day.overlaps(&span("2026-03-01T23:59:00Z", 60)),
            "crosses the end"
        );
        assert!(
            !day.overlaps(&span("2026-03-02T00:00:00Z", 60)),
            "starts at the end"
        );
        assert!(
            day.overlaps(&span("2026-02-01T00:00:00Z", 60 * 24 * 60)),
            "covers it"
        );
    }

    const ZONES: &[&str] = &[
        "Europe/Berlin",
        "America/Sao_Paulo",
        "America/New_York",
        "America/Havana",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Pacific/Apia",
        "Pacific/Chatham",
        "UTC",
    ];

    proptest! {
        #[test]
        fn every_instant_is_in_exactly_one_day(
            zone_index in 0..ZONES.len(),
            secs in -2_208_902_400i64..4_102_444_800,
        ) {
            let zone = zone(ZONES[zone_index]);
            let instant = DateTime::from_timestamp(secs, 0).unwrap();
            let local_date = instant.with_timezone(&zone).date_naive();
            let candidates = [local_date.pred_opt().unwrap(), local_date, local_date.succ_opt().unwrap()];
            let containing: Vec<NaiveDate> = candidates
                .into_iter()
                .filter(|d| *d >= earliest_date())
                .filter(|d| Period::day(*d, zone).unwrap().range().contains(instant))
                .collect();
            prop_assert_eq!(containing, vec![local_date]);
        }

        #[test]
        fn days_tile_weeks_and_months(
            zone_index in 0..ZONES.len(),
            day_offset in 0i64..73_000,
        ) {
            let zone = zone(ZONES[zone_index]);
            let first = date("1901-01-01") + TimeDelta::days(day_offset);
            let day = Period::day(first, zone).unwrap().range();
            let next = Period::day(first.succ_opt().unwrap(), zone).unwrap().range();
            prop_assert_eq!(day.end(), next.start());
            prop_assert!(day.start() <= day.end());
            let length = day.end() - day.start();
            prop_assert!(length <= TimeDelta::hours(26), "{first} is {length}");
            let week = Period::week(first, zone).unwrap().range();
            prop_assert_eq!(week.start(), day.start());
            prop_assert_eq!(week.end(), Period::day(first + TimeDelta::days(7), zone).unwrap().range().start());
            let month = Period::month(first, zone).unwrap().range();
            let same_day_next_month = first.checked_add_months(Months::new(1)).unwrap();
            prop_assert_eq!(month.end(), Period::day(same_day_next_month, zone).unwrap().range().start());
        }

        #[test]
        fn local_midnight_maps_back_to_its_date(
            zone_index in 0..ZONES.len(),
            day_offset in 0i64..73_000,
        ) {
            let zone = zone(ZONES[zone_index]);
            let first = date("1901-01-01") + TimeDelta::days(day_offset);
            let range = Period::day(first, zone).unwrap().range();
            if range.start() < range.end() {
                let local = range.start().with_timezone(&zone);
                prop_assert_eq!(local.date_naive(), first);
            }
        }
    }
}
