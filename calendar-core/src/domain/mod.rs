//! The calendar's values: events, reminders, periods and pages, each validated on construction.

pub mod event;
pub mod ids;
pub mod limits;
pub mod notification;
pub mod page;
pub mod period;

pub use event::{
    Description, DescriptionError, Event, EventDetails, EventSpan, EventSpanError, NotifyBefore,
    NotifyBeforeError, OverlapPolicy, Title, TitleError,
};
pub use ids::{EventId, EventIdError, UserId, UserIdError, Version, VersionError};
pub use notification::{
    DecodeError, IdempotencyKey, NOTIFICATION_CONTENT_TYPE, NOTIFICATION_SCHEMA_VERSION,
    Notification, ReminderKey,
};
pub use page::{
    Cursor, EventPage, PageRequest, PageSize, PageSizeError, PageToken, PageTokenError,
};
pub use period::{
    Period, PeriodError, PeriodKind, TimeRange, TimeRangeError, TimeZoneError, parse_time_zone,
    start_of_day,
};
