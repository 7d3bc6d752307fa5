//! Conversions between the messages of `calendar.v1` and the domain of `calendar-core`.
//!
//! Inbound, every value goes through the domain's validating constructor ([`Title::new`],
//! [`EventSpan::new`], ...). A value the domain refuses becomes a [`FieldViolation`] naming the
//! request field by its path (`event.title`, `page_size`), and every violation of a request is
//! reported at once, as `google.rpc.BadRequest` expects. Outbound conversions cannot fail.
//!
//! Proto types stay inside this crate: the service converts at its edge and the domain never
//! sees them.

use std::fmt;

use calendar_core::limits::MAX_PAGE_SIZE;
use calendar_core::{
    Description, Event, EventDetails, EventId, EventPage, EventSpan, EventSpanError, NotifyBefore,
    OverlapPolicy, PageRequest, PageSize, PageToken, Title, Tz, Version, parse_time_zone,
};
use chrono::{DateTime, Datelike as _, NaiveDate, TimeDelta, Utc};
use prost_types::{Duration as ProtoDuration, Timestamp};

use crate::proto::calendar::v1 as pb;
use crate::proto::google::r#type::Date;

/// One request field the API refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request: dot-separated field names (`event.start_time`).
    pub field: String,
    /// What is wrong with its value.
    pub description: String,
}

/// A request the API refuses: at least one [`FieldViolation`], in the order of the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidArgument {
    /// Every offending field.
    pub violations: Vec<FieldViolation>,
}

impl InvalidArgument {
    /// A refusal of one field.
    pub fn field(field: impl Into<String>, description: impl fmt::Display) -> Self {
        Self {
            violations: vec![FieldViolation {
                field: field.into(),
                description: description.to_string(),
            }],
        }
    }

    /// Whether `field` is among the offending fields.
    pub fn names(&self, field: &str) -> bool {
        self.violations.iter().any(|v| v.field == field)
    }
}

impl fmt::Display for InvalidArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, violation) in self.violations.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", violation.field, violation.description)?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidArgument {}

/// Collects the violations of one request. Every method that returns `None` records a
/// violation, so "no violation" implies every value was produced.
#[derive(Default)]
struct Violations(Vec<FieldViolation>);

impl Violations {
    fn add(&mut self, field: &str, description: impl fmt::Display) {
        self.0.push(FieldViolation {
            field: field.to_owned(),
            description: description.to_string(),
        });
    }

    fn check<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|error| self.add(field, error)).ok()
    }

    fn required<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.add(field, "is required");
        }
        value
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, InvalidArgument> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(InvalidArgument { violations: self.0 }),
        }
    }
}

/// Joins a field path: `path("event", "title")` is `event.title`.
fn path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// A `Timestamp` as an instant. Refuses nanos outside 0..1e9 and instants chrono cannot hold.
pub fn timestamp_to_datetime(timestamp: &Timestamp) -> Result<DateTime<Utc>, String> {
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .ok_or_else(|| format!("nanos {} is outside 0 to 999999999", timestamp.nanos))?;
    DateTime::from_timestamp(timestamp.seconds, nanos).ok_or_else(|| {
        format!(
            "{} seconds since the epoch is out of range",
            timestamp.seconds
        )
    })
}

/// An instant as a `Timestamp`.
pub fn datetime_to_timestamp(instant: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: instant.timestamp(),
        // Below 1e9, so it fits.
        nanos: i32::try_from(instant.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A `Duration` as a time delta. Refuses nanos beyond ±999,999,999 or of the other sign than
/// the seconds, as the type's definition does.
pub fn duration_to_delta(duration: &ProtoDuration) -> Result<TimeDelta, String> {
    let (seconds, nanos) = (duration.seconds, duration.nanos);
    if !(-999_999_999..=999_999_999).contains(&nanos) {
        return Err(format!("nanos {nanos} is outside -999999999 to 999999999"));
    }
    if (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0) {
        return Err("seconds and nanos have different signs".to_owned());
    }
    TimeDelta::try_seconds(seconds)
        .and_then(|whole| whole.checked_add(&TimeDelta::nanoseconds(i64::from(nanos))))
        .ok_or_else(|| format!("{seconds} seconds is out of range"))
}

/// A time delta as a `Duration`.
pub fn delta_to_duration(delta: TimeDelta) -> ProtoDuration {
    ProtoDuration {
        seconds: delta.num_seconds(),
        nanos: delta.subsec_nanos(),
    }
}

/// A `google.type.Date` as a date: only a full date (year, month and day set) that exists.
pub fn date_to_naive(date: &Date) -> Result<NaiveDate, String> {
    if date.year == 0 || date.month == 0 || date.day == 0 {
        return Err("must be a full date with year, month and day set".to_owned());
    }
    u32::try_from(date.month)
        .ok()
        .zip(u32::try_from(date.day).ok())
        .and_then(|(month, day)| NaiveDate::from_ymd_opt(date.year, month, day))
        .ok_or_else(|| {
            format!(
                "{:04}-{:02}-{:02} is not a date",
                date.year, date.month, date.day
            )
        })
}

/// A date as a `google.type.Date`.
pub fn naive_to_date(date: NaiveDate) -> Date {
    Date {
        year: date.year(),
        // 1 to 12 and 1 to 31: they fit.
        month: i32::try_from(date.month()).unwrap_or(0),
        day: i32::try_from(date.day()).unwrap_or(0),
    }
}

/// An `OverlapPolicy` value as the domain's policy; unspecified is the default, `Reject`.
pub fn overlap_from_proto(value: i32) -> Result<OverlapPolicy, String> {
    match pb::OverlapPolicy::try_from(value) {
        Ok(pb::OverlapPolicy::Unspecified | pb::OverlapPolicy::Reject) => Ok(OverlapPolicy::Reject),
        Ok(pb::OverlapPolicy::Allow) => Ok(OverlapPolicy::Allow),
        Err(_) => Err(format!("{value} is not an OverlapPolicy")),
    }
}

/// The domain's policy as an `OverlapPolicy` (never unspecified).
pub fn overlap_to_proto(policy: OverlapPolicy) -> pb::OverlapPolicy {
    match policy {
        OverlapPolicy::Reject => pb::OverlapPolicy::Reject,
        OverlapPolicy::Allow => pb::OverlapPolicy::Allow,
    }
}

/// A required event id in field `field`.
pub fn event_id_from_proto(text: &str, field: &str) -> Result<EventId, InvalidArgument> {
    if text.is_empty() {
        return Err(InvalidArgument::field(field, "is required"));
    }
    text.parse()
        .map_err(|error| InvalidArgument::field(field, error))
}

/// An event as its message, every field set.
pub fn event_to_proto(event: &Event) -> pb::Event {
    let details = event.details();
    pb::Event {
        id: event.id().to_string(),
        title: details.title.as_str().to_owned(),
        description: details
            .description
            .as_ref()
            .map(|d| d.as_str().to_owned())
            .unwrap_or_default(),
        start_time: Some(datetime_to_timestamp(details.span.start())),
        duration: Some(delta_to_duration(details.span.duration())),
        notify_before: details
            .notify_before
            .map(|lead| delta_to_duration(lead.get())),
        overlap_policy: overlap_to_proto(details.overlap).into(),
        version: event.version().as_i64(),
        create_time: Some(datetime_to_timestamp(event.created_at())),
        update_time: Some(datetime_to_timestamp(event.updated_at())),
    }
}

/// The client-settable fields of `event` as details, violations named under `prefix`.
fn details_from_proto(
    event: &pb::Event,
    prefix: &str,
    violations: &mut Violations,
) -> Option<EventDetails> {
    let title = violations.check(&path(prefix, "title"), Title::new(&event.title));
    let description = if event.description.is_empty() {
        Some(None)
    } else {
        violations
            .check(
                &path(prefix, "description"),
                Description::new(&event.description),
            )
            .map(Some)
    };
    let start_field = path(prefix, "start_time");
    let start = violations
        .required(&start_field, event.start_time.as_ref())
        .and_then(|start| violations.check(&start_field, timestamp_to_datetime(start)));
    let duration_field = path(prefix, "duration");
    let duration = violations
        .required(&duration_field, event.duration.as_ref())
        .and_then(|duration| violations.check(&duration_field, duration_to_delta(duration)));
    let span = start.zip(duration).and_then(|(start, duration)| {
        EventSpan::new(start, duration)
            .map_err(|error| {
                let field = match error {
                    EventSpanError::StartTooEarly { .. } => &start_field,
                    EventSpanError::TooShort { .. }
                    | EventSpanError::TooLong { .. }
                    | EventSpanError::EndTooLate { .. } => &duration_field,
                };
                violations.add(field, error);
            })
            .ok()
    });
    let lead_field = path(prefix, "notify_before");
    let notify_before = match &event.notify_before {
        None => Some(None),
        Some(lead) => violations
            .check(&lead_field, duration_to_delta(lead))
            .and_then(|lead| violations.check(&lead_field, NotifyBefore::new(lead)))
            .map(Some),
    };
    let overlap = violations.check(
        &path(prefix, "overlap_policy"),
        overlap_from_proto(event.overlap_policy),
    );
    Some(EventDetails {
        title: title?,
        span: span?,
        description: description?,
        notify_before: notify_before?,
        overlap: overlap?,
    })
}

/// What a CreateEvent asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateEvent {
    /// The id the client chose, if any.
    pub id: Option<EventId>,
    /// The event's details.
    pub details: EventDetails,
}

/// Validates a CreateEvent request.
pub fn create_event_from_proto(
    request: &pb::CreateEventRequest,
) -> Result<CreateEvent, InvalidArgument> {
    let mut violations = Violations::default();
    let id = if request.event_id.is_empty() {
        Some(None)
    } else {
        violations
            .check("event_id", request.event_id.parse::<EventId>())
            .map(Some)
    };
    let details = violations
        .required("event", request.event.as_ref())
        .and_then(|event| details_from_proto(event, "event", &mut violations));
    let create = id
        .zip(details)
        .map(|(id, details)| CreateEvent { id, details });
    violations.finish(create)
}

/// What an UpdateEvent asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateEvent {
    /// The event to replace.
    pub id: EventId,
    /// Its new details.
    pub details: EventDetails,
    /// The version the client read, if it asked for the check.
    pub expected: Option<Version>,
}

/// Validates an UpdateEvent request.
pub fn update_event_from_proto(
    request: &pb::UpdateEventRequest,
) -> Result<UpdateEvent, InvalidArgument> {
    let mut violations = Violations::default();
    let event = violations.required("event", request.event.as_ref());
    let id = event.and_then(|event| {
        if event.id.is_empty() {
            violations.add("event.id", "is required");
            None
        } else {
            violations.check("event.id", event.id.parse::<EventId>())
        }
    });
    let details = event.and_then(|event| details_from_proto(event, "event", &mut violations));
    let expected = match request.expected_version {
        None => Some(None),
        Some(version) => violations
            .check("expected_version", Version::from_i64(version))
            .map(Some),
    };
    let update = id
        .zip(details)
        .zip(expected)
        .map(|((id, details), expected)| UpdateEvent {
            id,
            details,
            expected,
        });
    violations.finish(update)
}

/// A page size per AIP-158: 0 means the default, sizes above the maximum are lowered to it,
/// negative sizes are refused.
pub fn page_size_from_proto(size: i32) -> Result<PageSize, String> {
    match u32::try_from(size) {
        Err(_) => Err(format!("{size} is negative")),
        Ok(0) => Ok(PageSize::default()),
        Ok(size) => PageSize::new(size.min(MAX_PAGE_SIZE)).map_err(|error| error.to_string()),
    }
}

/// The fields every list request has.
pub trait ListRequest {
    /// The local date the period starts on.
    fn date(&self) -> Option<&Date>;
    /// The IANA time zone; empty for UTC.
    fn time_zone(&self) -> &str;
    /// The requested page size.
    fn page_size(&self) -> i32;
    /// The page token; empty for the first page.
    fn page_token(&self) -> &str;
}

macro_rules! list_request {
    ($($request:ty),*) => {$(
        impl ListRequest for $request {
            fn date(&self) -> Option<&Date> {
                self.date.as_ref()
            }
            fn time_zone(&self) -> &str {
                &self.time_zone
            }
            fn page_size(&self) -> i32 {
                self.page_size
            }
            fn page_token(&self) -> &str {
                &self.page_token
            }
        }
    )*};
}

list_request!(
    pb::ListDayEventsRequest,
    pb::ListWeekEventsRequest,
    pb::ListMonthEventsRequest
);

/// What a list request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// The local date the period starts on.
    pub date: NaiveDate,
    /// The time zone of its midnights.
    pub zone: Tz,
    /// Which page.
    pub page: PageRequest,
}

/// Validates a list request. Whether the date lies in the calendar's years, and whether the
/// token belongs to this list, the use case checks.
pub fn list_query_from_proto(request: &impl ListRequest) -> Result<ListQuery, InvalidArgument> {
    let mut violations = Violations::default();
    let date = violations
        .required("date", request.date())
        .and_then(|date| violations.check("date", date_to_naive(date)));
    let zone = if request.time_zone().is_empty() {
        Some(Tz::UTC)
    } else {
        violations.check("time_zone", parse_time_zone(request.time_zone()))
    };
    let size = violations.check("page_size", page_size_from_proto(request.page_size()));
    let token = if request.page_token().is_empty() {
        Some(None)
    } else {
        violations
            .check("page_token", PageToken::parse(request.page_token()))
            .map(Some)
    };
    let query = date
        .zip(zone)
        .zip(size.zip(token))
        .map(|((date, zone), (size, token))| ListQuery {
            date,
            zone,
            page: PageRequest { size, token },
        });
    violations.finish(query)
}

/// A page as its events and next page token (empty on the last page).
pub fn page_to_proto(page: &EventPage) -> (Vec<pb::Event>, String) {
    (
        page.events.iter().map(event_to_proto).collect(),
        page.next_page_token
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use calendar_core::UserId;
    use calendar_core::limits::DEFAULT_PAGE_SIZE;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn timestamp(text: &str) -> Timestamp {
        datetime_to_timestamp(at(text))
    }

    fn minutes(n: i64) -> ProtoDuration {
        delta_to_duration(TimeDelta::minutes(n))
    }

    fn valid_event() -> pb::Event {
        pb::Event {
            title: "  Standup ".into(),
            start_time: Some(timestamp("2026-03-02T09:00:00Z")),
            duration: Some(minutes(15)),
            ..pb::Event::default()
        }
    }

    fn create(event: pb::Event) -> Result<CreateEvent, InvalidArgument> {
        create_event_from_proto(&pb::CreateEventRequest {
            event: Some(event),
            event_id: String::new(),
        })
    }

    /// The fields a rejected create names, in order.
    fn rejected_fields(event: pb::Event) -> Vec<String> {
        create(event)
            .unwrap_err()
            .violations
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn timestamps_round_trip_and_refuse_bad_nanos() {
        for text in [
            "2026-03-02T09:00:00.123456789Z",
            "1900-01-01T00:00:00Z",
            "1969-12-31T23:59:59.5Z",
        ] {
            let ts = timestamp(text);
            assert!((0..1_000_000_000).contains(&ts.nanos));
            assert_eq!(timestamp_to_datetime(&ts), Ok(at(text)));
        }
        let before_epoch = timestamp("1969-12-31T23:59:59.5Z");
        assert_eq!(
            (before_epoch.seconds, before_epoch.nanos),
            (-1, 500_000_000)
        );
        for nanos in [-1, 1_000_000_000] {
            let bad = Timestamp { seconds: 0, nanos };
            assert!(timestamp_to_datetime(&bad).unwrap_err().contains("nanos"));
        }
        let far = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert!(
            timestamp_to_datetime(&far)
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn durations_round_trip_and_refuse_malformed_ones() {
        for delta in [
            TimeDelta::zero(),
            TimeDelta::minutes(90),
            TimeDelta::milliseconds(1_500),
            TimeDelta::milliseconds(-1_500),
        ] {
            assert_eq!(duration_to_delta(&delta_to_duration(delta)), Ok(delta));
        }
        assert_eq!(
            delta_to_duration(TimeDelta::milliseconds(-1_500)),
            ProtoDuration {
                seconds: -1,
                nanos: -500_000_000
            }
        );
        let mixed = ProtoDuration {
            seconds: 1,
            nanos: -1,
        };
        assert!(duration_to_delta(&mixed).unwrap_err().contains("signs"));
        let big_nanos = ProtoDuration {
            seconds: 0,
            nanos: 1_000_000_000,
        };
        assert!(duration_to_delta(&big_nanos).unwrap_err().contains("nanos"));
        let huge = ProtoDuration {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert!(
            duration_to_delta(&huge)
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn dates_must_be_full_and_real() {
        let date = |year, month, day| Date { year, month, day };
        assert_eq!(
            date_to_naive(&date(2026, 2, 28)),
            Ok(NaiveDate::from_ymd_opt(2026, 2, 28).unwrap())
        );
        assert_eq!(
            naive_to_date(NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()),
            date(2026, 2, 28)
        );
        for partial in [date(0, 2, 28), date(2026, 0, 1), date(2026, 2, 0)] {
            assert!(date_to_naive(&partial).unwrap_err().contains("full date"));
        }
        for impossible in [date(2026, 2, 29), date(2026, 13, 1), date(2026, -1, 1)] {
            assert!(
                date_to_naive(&impossible)
                    .unwrap_err()
                    .contains("not a date")
            );
        }
    }

    #[test]
    fn overlap_policy_defaults_to_reject_and_refuses_unknown_values() {
        assert_eq!(overlap_from_proto(0), Ok(OverlapPolicy::Reject));
        assert_eq!(overlap_from_proto(1), Ok(OverlapPolicy::Reject));
        assert_eq!(overlap_from_proto(2), Ok(OverlapPolicy::Allow));
        assert!(overlap_from_proto(7).is_err());
        for policy in [OverlapPolicy::Reject, OverlapPolicy::Allow] {
            assert_eq!(
                overlap_from_proto(overlap_to_proto(policy).into()),
                Ok(policy)
            );
        }
    }

    #[test]
    fn create_maps_every_field() {
        let mut event = valid_event();
        event.description = "Room 4\nbring notes".into();
        event.notify_before = Some(minutes(10));
        event.overlap_policy = pb::OverlapPolicy::Allow.into();
        // Output-only fields and the id are ignored on create.
        event.id = "not even a uuid".into();
        event.version = -3;
        let id = EventId::generate();
        let create = create_event_from_proto(&pb::CreateEventRequest {
            event: Some(event),
            event_id: id.to_string(),
        })
        .unwrap();
        assert_eq!(create.id, Some(id));
        let details = create.details;
        assert_eq!(details.title.as_str(), "Standup");
        assert_eq!(details.description.unwrap().as_str(), "Room 4\nbring notes");
        assert_eq!(details.span.start(), at("2026-03-02T09:00:00Z"));
        assert_eq!(details.span.duration(), TimeDelta::minutes(15));
        assert_eq!(details.notify_before.unwrap().get(), TimeDelta::minutes(10));
        assert_eq!(details.overlap, OverlapPolicy::Allow);
    }

    #[test]
    fn create_defaults_optional_fields() {
        let create = create(valid_event()).unwrap();
        assert_eq!(create.id, None);
        assert_eq!(create.details.description, None);
        assert_eq!(create.details.notify_before, None);
        assert_eq!(create.details.overlap, OverlapPolicy::Reject);
    }

    #[test]
    fn create_names_each_rejected_field() {
        let missing = create_event_from_proto(&pb::CreateEventRequest::default()).unwrap_err();
        assert_eq!(missing.violations.len(), 1);
        assert!(missing.names("event"));

        let bad_id = create_event_from_proto(&pb::CreateEventRequest {
            event: Some(valid_event()),
            event_id: "00000000-0000-0000-0000-000000000000".into(),
        })
        .unwrap_err();
        assert!(bad_id.names("event_id"));

        type Break = fn(&mut pb::Event);
        let cases: Vec<(&str, Break)> = vec![
            ("event.title", |e| e.title = " ".into()),
            ("event.title", |e| e.title = "a\u{7}b".into()),
            ("event.title", |e| e.title = "x".repeat(201)),
            ("event.description", |e| e.description = "bell\u{7}".into()),
            ("event.description", |e| e.description = "x".repeat(10_001)),
            ("event.start_time", |e| e.start_time = None),
            ("event.start_time", |e| {
                e.start_time = Some(Timestamp {
                    seconds: 0,
                    nanos: -5,
                })
            }),
            ("event.start_time", |e| {
                e.start_time = Some(timestamp("1899-12-31T23:00:00Z"))
            }),
            ("event.duration", |e| e.duration = None),
            ("event.duration", |e| e.duration = Some(minutes(0))),
            ("event.duration", |e| {
                e.duration = Some(delta_to_duration(TimeDelta::days(367)))
            }),
            ("event.duration", |e| {
                e.start_time = Some(timestamp("9999-12-31T23:30:00Z"));
                e.duration = Some(minutes(31));
            }),
            ("event.duration", |e| {
                e.duration = Some(ProtoDuration {
                    seconds: 60,
                    nanos: -1,
                })
            }),
            ("event.notify_before", |e| {
                e.notify_before = Some(minutes(-1))
            }),
            ("event.notify_before", |e| {
                e.notify_before = Some(delta_to_duration(TimeDelta::days(367)))
            }),
            ("event.overlap_policy", |e| e.overlap_policy = 9),
        ];
        for (field, break_it) in cases {
            let mut event = valid_event();
            break_it(&mut event);
            assert_eq!(rejected_fields(event), vec![field.to_owned()], "{field}");
        }
    }

    #[test]
    fn create_reports_every_violation_at_once() {
        let event = pb::Event {
            title: String::new(),
            overlap_policy: 42,
            ..pb::Event::default()
        };
        assert_eq!(
            rejected_fields(event),
            vec![
                "event.title",
                "event.start_time",
                "event.duration",
                "event.overlap_policy"
            ]
        );
        let error = create(pb::Event::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "event.title: title is empty; event.start_time: is required; event.duration: is required"
        );
    }

    #[test]
    fn update_maps_id_details_and_expected_version() {
        let id = EventId::generate();
        let mut event = valid_event();
        event.id = id.to_string();
        let update = update_event_from_proto(&pb::UpdateEventRequest {
            event: Some(event.clone()),
            expected_version: Some(3),
        })
        .unwrap();
        assert_eq!(update.id, id);
        assert_eq!(update.expected, Some(Version::new(3).unwrap()));
        assert_eq!(update.details.title.as_str(), "Standup");
        let unchecked = update_event_from_proto(&pb::UpdateEventRequest {
            event: Some(event),
            expected_version: None,
        })
        .unwrap();
        assert_eq!(unchecked.expected, None);
    }

    #[test]
    fn update_names_each_rejected_field() {
        let missing = update_event_from_proto(&pb::UpdateEventRequest::default()).unwrap_err();
        assert!(missing.names("event"));

        let no_id = update_event_from_proto(&pb::UpdateEventRequest {
            event: Some(valid_event()),
            expected_version: None,
        })
        .unwrap_err();
        assert_eq!(no_id.violations.len(), 1);
        assert!(no_id.names("event.id"));

        let mut event = valid_event();
        event.id = "nope".into();
        event.title = String::new();
        let error = update_event_from_proto(&pb::UpdateEventRequest {
            event: Some(event),
            expected_version: Some(0),
        })
        .unwrap_err();
        let fields: Vec<&str> = error.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["event.id", "event.title", "expected_version"]);
    }

    #[test]
    fn event_ids_are_required_and_validated() {
        let id = EventId::generate();
        assert_eq!(event_id_from_proto(&id.to_string(), "id"), Ok(id));
        assert!(event_id_from_proto("", "id").unwrap_err().names("id"));
        let malformed = event_id_from_proto("42", "id").unwrap_err();
        assert_eq!(malformed.to_string(), "id: event id is not a UUID");
    }

    #[test]
    fn events_map_to_messages_field_by_field() {
        let owner = UserId::new("ann").unwrap();
        let span = EventSpan::new(at("2026-03-02T09:00:00.25Z"), TimeDelta::minutes(30)).unwrap();
        let mut details = EventDetails::new(Title::new("Review").unwrap(), span);
        details.description = Some(Description::new("agenda").unwrap());
        details.notify_before = Some(NotifyBefore::new(TimeDelta::minutes(5)).unwrap());
        details.overlap = OverlapPolicy::Allow;
        let created = at("2026-03-01T12:00:00Z");
        let event = Event::new(EventId::generate(), owner, details.clone(), created)
            .revised(details, at("2026-03-01T13:00:00Z"));
        let message = event_to_proto(&event);
        assert_eq!(message.id, event.id().to_string());
        assert_eq!(message.title, "Review");
        assert_eq!(message.description, "agenda");
        assert_eq!(
            message.start_time,
            Some(timestamp("2026-03-02T09:00:00.25Z"))
        );
        assert_eq!(message.duration, Some(minutes(30)));
        assert_eq!(message.notify_before, Some(minutes(5)));
        assert_eq!(message.overlap_policy, i32::from(pb::OverlapPolicy::Allow));
        assert_eq!(message.version, 2);
        assert_eq!(message.create_time, Some(timestamp("2026-03-01T12:00:00Z")));
        assert_eq!(message.update_time, Some(timestamp("2026-03-01T13:00:00Z")));

        // What goes out comes back in as the same details.
        let back = create(message).unwrap();
        assert_eq!(&back.details, event.details());
    }

    #[test]
    fn page_size_follows_aip_158() {
        assert_eq!(page_size_from_proto(0).unwrap().get(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size_from_proto(1).unwrap().get(), 1);
        assert_eq!(page_size_from_proto(1_000).unwrap().get(), 1_000);
        assert_eq!(page_size_from_proto(1_001).unwrap().get(), MAX_PAGE_SIZE);
        assert_eq!(page_size_from_proto(i32::MAX).unwrap().get(), MAX_PAGE_SIZE);
        assert!(page_size_from_proto(-1).unwrap_err().contains("negative"));
    }

    #[test]
    fn list_queries_map_and_name_each_rejected_field() {
        let request = pb::ListWeekEventsRequest {
            date: Some(Date {
                year: 2026,
                month: 3,
                day: 29,
            }),
            time_zone: "Europe/Berlin".into(),
            page_size: 5,
            page_token: String::new(),
        };
        let query = list_query_from_proto(&request).unwrap();
        assert_eq!(query.date, NaiveDate::from_ymd_opt(2026, 3, 29).unwrap());
        assert_eq!(query.zone, Tz::Europe__Berlin);
        assert_eq!(query.page.size.get(), 5);
        assert_eq!(query.page.token, None);

        let utc = list_query_from_proto(&pb::ListDayEventsRequest {
            date: request.date,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(utc.zone, Tz::UTC);
        assert_eq!(utc.page.size, PageSize::default());

        let error = list_query_from_proto(&pb::ListMonthEventsRequest {
            date: None,
            time_zone: "Mars/Olympus".into(),
            page_size: -1,
            page_token: "not a token".into(),
        })
        .unwrap_err();
        let fields: Vec<&str> = error.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["date", "time_zone", "page_size", "page_token"]);
    }

    #[test]
    fn pages_map_their_events_and_token() {
        let owner = UserId::new("ann").unwrap();
        let span = EventSpan::new(at("2026-03-02T09:00:00Z"), TimeDelta::minutes(30)).unwrap();
        let event = Event::new(
            EventId::generate(),
            owner,
            EventDetails::new(Title::new("Plain").unwrap(), span),
            at("2026-03-01T12:00:00Z"),
        );
        let message = event_to_proto(&event);
        assert_eq!(message.description, "");
        assert_eq!(message.notify_before, None);
        assert_eq!(message.overlap_policy, i32::from(pb::OverlapPolicy::Reject));

        let range =
            calendar_core::TimeRange::new(at("2026-03-02T00:00:00Z"), at("2026-03-03T00:00:00Z"))
                .unwrap();
        let token = PageToken::new(range, calendar_core::Cursor::after(&event));
        let page = EventPage {
            events: vec![event.clone()],
            next_page_token: Some(token.clone()),
        };
        let (events, next_page_token) = page_to_proto(&page);
        assert_eq!(events, vec![message]);
        assert_eq!(PageToken::parse(&next_page_token), Ok(token));

        let last = EventPage {
            events: Vec::new(),
            next_page_token: None,
        };
        assert_eq!(page_to_proto(&last), (Vec::new(), String::new()));
    }
}
