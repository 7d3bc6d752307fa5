//! Small builders for tests: users, instants and events.

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::{
    Event, EventDetails, EventId, EventSpan, NotifyBefore, OverlapPolicy, Title, UserId,
};

/// A valid user id.
///
/// # Panics
/// If `name` is not a valid [`UserId`].
pub fn user(name: &str) -> UserId {
    UserId::new(name).unwrap_or_else(|e| panic!("fixture user {name:?}: {e}"))
}

/// An instant from RFC 3339 text.
///
/// # Panics
/// If `text` is not RFC 3339.
pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("fixture instant {text:?}: {e}"))
        .to_utc()
}

/// Details of a blocking event titled `title` from `start` for `minutes`, without a reminder.
///
/// # Panics
/// If the values are out of the calendar's bounds.
pub fn details(title: &str, start: DateTime<Utc>, minutes: i64) -> EventDetails {
    let span = EventSpan::new(start, TimeDelta::minutes(minutes))
        .unwrap_or_else(|e| panic!("fixture span: {e}"));
    EventDetails::new(
        Title::new(title).unwrap_or_else(|e| panic!("fixture title: {e}")),
        span,
    )
}

/// The same details with a reminder `minutes` before the start.
///
/// # Panics
/// If `minutes` is out of bounds.
pub fn with_reminder(mut details: EventDetails, minutes: i64) -> EventDetails {
    details.notify_before = Some(
        NotifyBefore::new(TimeDelta::minutes(minutes))
            .unwrap_or_else(|e| panic!("fixture reminder: {e}")),
    );
    details
}

/// The same details with the [`OverlapPolicy::Allow`] policy.
pub fn overlapping(mut details: EventDetails) -> EventDetails {
    details.overlap = OverlapPolicy::Allow;
    details
}

/// A new event of `owner` with `details`, created at `created`.
pub fn event(owner: &UserId, details: EventDetails, created: DateTime<Utc>) -> Event {
    Event::new(EventId::generate(), owner.clone(), details, created)
}
