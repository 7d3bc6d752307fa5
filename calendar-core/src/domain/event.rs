//! Events and the validated values they are made of.
//!
//! Every field of an [`Event`] is a type whose constructor checks it, so an event that breaks a
//! rule of the calendar cannot be built.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

use super::ids::{EventId, UserId, Version};
use super::limits::{
    MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS, delta_to_micros, earliest_start, latest_end,
    max_event_duration, max_notify_before, min_event_duration, to_micros,
};
use super::notification::{Notification, ReminderKey};

/// The title of an event: trimmed of surrounding whitespace, 1 to [`MAX_TITLE_CHARS`] characters,
/// no control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Title(String);

/// Why a text is not a [`Title`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    /// Empty or only whitespace.
    #[error("title is empty")]
    Empty,
    /// Longer than [`MAX_TITLE_CHARS`] characters after trimming.
    #[error("title is {chars} characters long, the limit is {max}")]
    TooLong {
        /// Characters given (after trimming).
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A control character (line breaks and tabs included: a title is one line).
    #[error("title has a control character at character {position}")]
    ControlCharacter {
        /// Index, in characters of the trimmed title, of the first control character.
        position: usize,
    },
}

impl Title {
    /// Trims and validates a title.
    pub fn new(value: &str) -> Result<Self, TitleError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(TitleError::Empty);
        }
        let chars = trimmed.chars().count();
        if chars > MAX_TITLE_CHARS {
            return Err(TitleError::TooLong {
                chars,
                max: MAX_TITLE_CHARS,
            });
        }
        if let Some(position) = trimmed.chars().position(char::is_control) {
            return Err(TitleError::ControlCharacter { position });
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Title {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Title {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Title({:?})", self.0)
    }
}

/// The description of an event: 1 to [`MAX_DESCRIPTION_CHARS`] characters, kept as given;
/// line breaks and tabs are allowed, other control characters are not. An event without a
/// description has `None`, never an empty one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Description(String);

/// Why a text is not a [`Description`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    /// Empty: leave the description out instead.
    #[error("description is empty")]
    Empty,
    /// Longer than [`MAX_DESCRIPTION_CHARS`] characters.
    #[error("description is {chars} characters long, the limit is {max}")]
    TooLong {
        /// Characters given.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A control character other than line feed, carriage return and tab.
    #[error("description has a control character at character {position}")]
    ControlCharacter {
        /// Index, in characters, of the first offending character.
        position: usize,
    },
}

impl Description {
    /// Validates a description.
    pub fn new(value: &str) -> Result<Self, DescriptionError> {
        if value.is_empty() {
            return Err(DescriptionError::Empty);
        }
        let chars = value.chars().count();
        if chars > MAX_DESCRIPTION_CHARS {
            return Err(DescriptionError::TooLong {
                chars,
                max: MAX_DESCRIPTION_CHARS,
            });
        }
        if let Some(position) = value
            .chars()
            .position(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(DescriptionError::ControlCharacter { position });
        }
        Ok(Self(value.to_owned()))
    }

    /// The description.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Description({} chars)", self.0.chars().count())
    }
}

/// When an event happens: a start instant and a duration, the half-open span
/// `[start, start + duration)`.
///
/// The duration is [`min_event_duration`] to [`max_event_duration`]; the span lies within
/// [`earliest_start`] and [`latest_end`]. Instants and durations are kept to the microsecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventSpan {
    start: DateTime<Utc>,
    duration: TimeDelta,
}

/// Why a start and duration are not an [`EventSpan`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventSpanError {
    /// Shorter than [`min_event_duration`] (zero and negative included).
    #[error("duration {duration} is shorter than the minimum {min}")]
    TooShort {
        /// The duration given.
        duration: TimeDelta,
        /// The minimum.
        min: TimeDelta,
    },
    /// Longer than [`max_event_duration`].
    #[error("duration {duration} is longer than the maximum {max}")]
    TooLong {
        /// The duration given.
        duration: TimeDelta,
        /// The maximum.
        max: TimeDelta,
    },
    /// Starts before [`earliest_start`].
    #[error("start {start} is before the earliest allowed {earliest}")]
    StartTooEarly {
        /// The start given.
        start: DateTime<Utc>,
        /// The earliest start allowed.
        earliest: DateTime<Utc>,
    },
    /// Ends after [`latest_end`].
    #[error("end {end} is after the latest allowed {latest}")]
    EndTooLate {
        /// Where the event would end.
        end: DateTime<Utc>,
        /// The latest end allowed.
        latest: DateTime<Utc>,
    },
}

impl EventSpan {
    /// Validates a start and a duration (both truncated to the microsecond).
    pub fn new(start: DateTime<Utc>, duration: TimeDelta) -> Result<Self, EventSpanError> {
        let start = to_micros(start);
        let duration = delta_to_micros(duration);
        if duration < min_event_duration() {
            return Err(EventSpanError::TooShort {
                duration,
                min: min_event_duration(),
            });
        }
        if duration > max_event_duration() {
            return Err(EventSpanError::TooLong {
                duration,
                max: max_event_duration(),
            });
        }
        if start < earliest_start() {
            return Err(EventSpanError::StartTooEarly {
                start,
                earliest: earliest_start(),
            });
        }
        let end = start + duration;
        if end > latest_end() {
            return Err(EventSpanError::EndTooLate {
                end,
                latest: latest_end(),
            });
        }
        Ok(Self { start, duration })
    }

    /// Validates a span given by its bounds.
    pub fn from_bounds(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, EventSpanError> {
        Self::new(start, end - start)
    }

    /// The first instant of the event.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// How long the event lasts.
    pub fn duration(&self) -> TimeDelta {
        self.duration
    }

    /// The first instant after the event (exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        self.start + self.duration
    }

    /// Whether two spans share an instant. Back-to-back spans (one ends where the other starts)
    /// do not.
    pub fn overlaps(&self, other: &EventSpan) -> bool {
        self.start < other.end() && other.start < self.end()
    }
}

/// How long before its start an event's reminder falls due: 0 to [`max_notify_before`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NotifyBefore(TimeDelta);

/// Why a duration is not a [`NotifyBefore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyBeforeError {
    /// Negative: a reminder after the start is not a reminder.
    #[error("reminder lead {0} is negative")]
    Negative(TimeDelta),
    /// Longer than [`max_notify_before`].
    #[error("reminder lead {lead} is longer than the maximum {max}")]
    TooLong {
        /// The lead given.
        lead: TimeDelta,
        /// The maximum.
        max: TimeDelta,
    },
}

impl NotifyBefore {
    /// Validates a reminder lead (truncated to the microsecond).
    pub fn new(lead: TimeDelta) -> Result<Self, NotifyBeforeError> {
        let lead = delta_to_micros(lead);
        if lead < TimeDelta::zero() {
            return Err(NotifyBeforeError::Negative(lead));
        }
        if lead > max_notify_before() {
            return Err(NotifyBeforeError::TooLong {
                lead,
                max: max_notify_before(),
            });
        }
        Ok(Self(lead))
    }

    /// The lead.
    pub fn get(&self) -> TimeDelta {
        self.0
    }
}

/// Whether an event may share its time with the owner's other events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OverlapPolicy {
    /// The event blocks its time slot: it may not overlap another `Reject` event of the same
    /// owner (the "time slot busy" rule). Back-to-back events are fine.
    #[default]
    Reject,
    /// The event may overlap anything (a reminder-only entry, a tentative booking).
    Allow,
}

impl OverlapPolicy {
    /// The policy's name in storage and messages: `reject` or `allow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Allow => "allow",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "reject" => Some(Self::Reject),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }

    /// Whether two events with these policies, overlapping in time, are a conflict.
    pub fn conflicts_with(self, other: OverlapPolicy) -> bool {
        self == Self::Reject && other == Self::Reject
    }
}

/// What a client says about an event: everything but its identity, owner and bookkeeping.
/// Creating takes it; updating replaces it whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventDetails {
    /// Short text naming the event.
    pub title: Title,
    /// When it happens.
    pub span: EventSpan,
    /// Longer text, if any.
    pub description: Option<Description>,
    /// How long before the start to remind the owner, if at all.
    pub notify_before: Option<NotifyBefore>,
    /// Whether the event may overlap the owner's other events.
    pub overlap: OverlapPolicy,
}

impl EventDetails {
    /// Details with a title and a span, no description, no reminder, the default policy.
    pub fn new(title: Title, span: EventSpan) -> Self {
        Self {
            title,
            span,
            description: None,
            notify_before: None,
            overlap: OverlapPolicy::default(),
        }
    }

    /// When the reminder falls due: the start minus the lead, if there is a reminder.
    pub fn reminder_at(&self) -> Option<DateTime<Utc>> {
        self.notify_before
            .map(|lead| self.span.start() - lead.get())
    }
}

/// A stored event: its details, identity, owner and bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    id: EventId,
    owner: UserId,
    details: EventDetails,
    version: Version,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Event {
    /// A new event at [`Version::FIRST`], created at `now`.
    pub fn new(id: EventId, owner: UserId, details: EventDetails, now: DateTime<Utc>) -> Self {
        let now = to_micros(now);
        Self {
            id,
            owner,
            details,
            version: Version::FIRST,
            created_at: now,
            updated_at: now,
        }
    }

    /// Rebuilds an event from storage. `updated_at` earlier than `created_at` is raised to it.
    pub fn restore(
        id: EventId,
        owner: UserId,
        details: EventDetails,
        version: Version,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Self {
        let created_at = to_micros(created_at);
        Self {
            id,
            owner,
            details,
            version,
            created_at,
            updated_at: to_micros(updated_at).max(created_at),
        }
    }

    /// This event with its details replaced: the next version, updated at `now`.
    #[must_use]
    pub fn revised(&self, details: EventDetails, now: DateTime<Utc>) -> Self {
        Self {
            id: self.id,
            owner: self.owner.clone(),
            details,
            version: self.version.next(),
            created_at: self.created_at,
            updated_at: to_micros(now).max(self.created_at),
        }
    }

    /// The event's id.
    pub fn id(&self) -> EventId {
        self.id
    }

    /// Who owns it.
    pub fn owner(&self) -> &UserId {
        &self.owner
    }

    /// What it is.
    pub fn details(&self) -> &EventDetails {
        &self.details
    }

    /// Its title.
    pub fn title(&self) -> &Title {
        &self.details.title
    }

    /// When it happens.
    pub fn span(&self) -> &EventSpan {
        &self.details.span
    }

    /// Its revision.
    pub fn version(&self) -> Version {
        self.version
    }

    /// When it was created.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// When it was last changed.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }

    /// The key that orders lists of events: start, then id.
    pub fn sort_key(&self) -> (DateTime<Utc>, EventId) {
        (self.details.span.start(), self.id)
    }

    /// The event's reminder, if it has one.
    pub fn reminder(&self) -> Option<ReminderKey> {
        self.details.reminder_at().map(|remind_at| ReminderKey {
            event_id: self.id,
            remind_at,
        })
    }

    /// The notification its reminder delivers, if it has one.
    pub fn notification(&self) -> Option<Notification> {
        self.details.reminder_at().map(|remind_at| {
            Notification::new(
                self.id,
                self.owner.clone(),
                self.details.title.clone(),
                self.details.span.start(),
                remind_at,
            )
        })
    }

    /// Whether this event and `other` may not both exist: same owner, both blocking their slot,
    /// overlapping in time, different events.
    pub fn conflicts_with(&self, other: &Event) -> bool {
        self.id != other.id
            && self.owner == other.owner
            && self.details.overlap.conflicts_with(other.details.overlap)
            && self.details.span.overlaps(&other.details.span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::limits::{MAX_EVENT_DURATION_DAYS, MIN_EVENT_DURATION_MINUTES};
    use proptest::prelude::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn title_is_trimmed_and_bounded() {
        assert_eq!(Title::new("  Standup \t").unwrap().as_str(), "Standup");
        assert_eq!(Title::new(" \n "), Err(TitleError::Empty));
        assert_eq!(
            Title::new(&"é".repeat(MAX_TITLE_CHARS + 1)),
            Err(TitleError::TooLong {
                chars: MAX_TITLE_CHARS + 1,
                max: MAX_TITLE_CHARS
            })
        );
        assert!(Title::new(&"é".repeat(MAX_TITLE_CHARS)).is_ok());
        assert_eq!(
            Title::new("a\u{7}b"),
            Err(TitleError::ControlCharacter { position: 1 })
        );
        assert_eq!(
            Title::new("two\nlines"),
            Err(TitleError::ControlCharacter { position: 3 })
        );
    }

    #[test]
    fn description_allows_line_breaks_only() {
        assert!(Description::new("line one\r\nline two\tindented").is_ok());
        assert_eq!(Description::new(""), Err(DescriptionError::Empty));
        assert_eq!(
            Description::new("bell\u{7}"),
            Err(DescriptionError::ControlCharacter { position: 4 })
        );
        assert!(matches!(
            Description::new(&"x".repeat(MAX_DESCRIPTION_CHARS + 1)),
            Err(DescriptionError::TooLong { .. })
        ));
    }

    #[test]
    fn span_bounds() {
        let start = at("2026-03-01T09:00:00Z");
        assert!(matches!(
            EventSpan::new(start, TimeDelta::zero()),
            Err(EventSpanError::TooShort { .. })
        ));
        assert!(matches!(
            EventSpan::new(start, TimeDelta::seconds(59)),
            Err(EventSpanError::TooShort { .. })
        ));
        assert!(EventSpan::new(start, TimeDelta::minutes(MIN_EVENT_DURATION_MINUTES)).is_ok());
        assert!(EventSpan::new(start, TimeDelta::days(MAX_EVENT_DURATION_DAYS)).is_ok());
        assert!(matches!(
            EventSpan::new(
                start,
                TimeDelta::days(MAX_EVENT_DURATION_DAYS) + TimeDelta::seconds(1)
            ),
            Err(EventSpanError::TooLong { .. })
        ));
        assert!(matches!(
            EventSpan::new(at("1899-12-31T23:59:59Z"), TimeDelta::hours(1)),
            Err(EventSpanError::StartTooEarly { .. })
        ));
        assert!(EventSpan::new(at("1900-01-01T00:00:00Z"), TimeDelta::hours(1)).is_ok());
        assert!(EventSpan::new(at("9999-12-31T23:00:00Z"), TimeDelta::hours(1)).is_ok());
        assert!(matches!(
            EventSpan::new(at("9999-12-31T23:00:00Z"), TimeDelta::minutes(61)),
            Err(EventSpanError::EndTooLate { .. })
        ));
    }

    #[test]
    fn span_drops_nanoseconds() {
        let start = at("2026-03-01T09:00:00.123456789Z");
        let span = EventSpan::new(start, TimeDelta::hours(1) + TimeDelta::nanoseconds(5)).unwrap();
        assert_eq!(span.start(), at("2026-03-01T09:00:00.123456Z"));
        assert_eq!(span.duration(), TimeDelta::hours(1));
    }

    #[test]
    fn back_to_back_spans_do_not_overlap() {
        let a = EventSpan::new(at("2026-03-01T09:00:00Z"), TimeDelta::hours(1)).unwrap();
        let b = EventSpan::new(at("2026-03-01T10:00:00Z"), TimeDelta::hours(1)).unwrap();
        let c = EventSpan::new(at("2026-03-01T09:59:00Z"), TimeDelta::hours(1)).unwrap();
        assert!(!a.overlaps(&b) && !b.overlaps(&a));
        assert!(a.overlaps(&c) && c.overlaps(&b));
        assert!(a.overlaps(&a));
    }

    #[test]
    fn notify_before_bounds() {
        assert!(NotifyBefore::new(TimeDelta::zero()).is_ok());
        assert!(matches!(
            NotifyBefore::new(TimeDelta::seconds(-1)),
            Err(NotifyBeforeError::Negative(_))
        ));
        assert!(NotifyBefore::new(max_notify_before()).is_ok());
        assert!(matches!(
            NotifyBefore::new(max_notify_before() + TimeDelta::seconds(1)),
            Err(NotifyBeforeError::TooLong { .. })
        ));
    }

    #[test]
    fn overlap_policy_conflicts_only_between_blocking_events() {
        use OverlapPolicy::*;
        assert!(Reject.conflicts_with(Reject));
        assert!(!Reject.conflicts_with(Allow));
        assert!(!Allow.conflicts_with(Reject));
        assert!(!Allow.conflicts_with(Allow));
        for policy in [Reject, Allow] {
            assert_eq!(OverlapPolicy::parse(policy.as_str()), Some(policy));
        }
        assert_eq!(OverlapPolicy::parse("maybe"), None);
    }

    #[test]
    fn event_lifecycle_and_reminder() {
        let owner = UserId::new("ann").unwrap();
        let span = EventSpan::new(at("2026-03-01T09:00:00Z"), TimeDelta::hours(1)).unwrap();
        let mut details = EventDetails::new(Title::new("Standup").unwrap(), span);
        details.notify_before = Some(NotifyBefore::new(TimeDelta::minutes(15)).unwrap());
        let created = at("2026-02-01T00:00:00Z");
        let event = Event::new(EventId::generate(), owner.clone(), details.clone(), created);
        assert_eq!(event.version(), Version::FIRST);
        let reminder = event.reminder().unwrap();
        assert_eq!(reminder.remind_at, at("2026-03-01T08:45:00Z"));
        let notification = event.notification().unwrap();
        assert_eq!(notification.key(), reminder);
        assert_eq!(notification.user(), &owner);

        let later = at("2026-02-02T00:00:00Z");
        let mut changed = details.clone();
        changed.notify_before = None;
        let revised = event.revised(changed, later);
        assert_eq!(revised.version().get(), 2);
        assert_eq!(revised.created_at(), created);
        assert_eq!(revised.updated_at(), later);
        assert_eq!(revised.reminder(), None);
    }

    #[test]
    fn conflicts_need_same_owner_both_blocking_and_overlap() {
        let span = EventSpan::new(at("2026-03-01T09:00:00Z"), TimeDelta::hours(1)).unwrap();
        let details = EventDetails::new(Title::new("A").unwrap(), span);
        let now = at("2026-01-01T00:00:00Z");
        let ann = UserId::new("ann").unwrap();
        let bob = UserId::new("bob").unwrap();
        let a = Event::new(EventId::generate(), ann.clone(), details.clone(), now);
        let b = Event::new(EventId::generate(), ann.clone(), details.clone(), now);
        let c = Event::new(EventId::generate(), bob, details.clone(), now);
        let mut allow = details.clone();
        allow.overlap = OverlapPolicy::Allow;
        let d = Event::new(EventId::generate(), ann, allow, now);
        assert!(a.conflicts_with(&b));
        assert!(
            !a.conflicts_with(&a),
            "an event does not conflict with itself"
        );
        assert!(!a.conflicts_with(&c), "owners are independent");
        assert!(!a.conflicts_with(&d), "allow never conflicts");
    }

    proptest! {
        #[test]
        fn title_validation_matches_its_rules(value in "\\PC{0,210}|[ \\t\\n\\x07a-z]{0,20}") {
            let trimmed = value.trim();
            let expected_ok = !trimmed.is_empty()
                && trimmed.chars().count() <= MAX_TITLE_CHARS
                && !trimmed.chars().any(char::is_control);
            let parsed = Title::new(&value);
            prop_assert_eq!(parsed.is_ok(), expected_ok);
            if let Ok(title) = parsed {
                prop_assert_eq!(title.as_str(), trimmed);
                prop_assert_eq!(Title::new(title.as_str()), Ok(title.clone()));
            }
        }

        #[test]
        fn span_accepts_exactly_the_bounded_ones(
            start_secs in -2_500_000_000i64..253_402_300_800,
            duration_secs in -100i64..(400 * 86_400),
        ) {
            let start = DateTime::from_timestamp(start_secs, 0).unwrap();
            let duration = TimeDelta::seconds(duration_secs);
            let expected_ok = duration >= min_event_duration()
                && duration <= max_event_duration()
                && start >= earliest_start()
                && start + duration <= latest_end();
            let span = EventSpan::new(start, duration);
            prop_assert_eq!(span.is_ok(), expected_ok);
            if let Ok(span) = span {
                prop_assert_eq!(span.start(), start);
                prop_assert_eq!(span.end() - span.start(), duration);
                prop_assert_eq!(EventSpan::from_bounds(span.start(), span.end()), Ok(span));
            }
        }

        #[test]
        fn overlap_is_symmetric_and_matches_the_half_open_rule(
            a_start in 0i64..10_000, a_len in 60i64..5_000,
            b_start in 0i64..10_000, b_len in 60i64..5_000,
        ) {
            let base = at("2026-01-01T00:00:00Z");
            let a = EventSpan::new(base + TimeDelta::seconds(a_start), TimeDelta::seconds(a_len)).unwrap();
            let b = EventSpan::new(base + TimeDelta::seconds(b_start), TimeDelta::seconds(b_len)).unwrap();
            prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
            let shares_a_second = (a_start..a_start + a_len).any(|s| s >= b_start && s < b_start + b_len);
            prop_assert_eq!(a.overlaps(&b), shares_a_second);
        }
    }
}
