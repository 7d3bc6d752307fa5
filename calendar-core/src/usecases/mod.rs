//! The use cases: what the calendar does, written against the ports only.
//!
//! - [`Calendar`]: create, read, update, delete and list a user's events.
//! - [`ReminderScheduler`]: publish due reminders to the queue; clean up old events.
//! - [`NotificationSender`]: deliver queued notifications, once each.
//!
//! The two background use cases have a single-step method (`tick`, `cleanup`, `step`) that
//! tests drive, and a `run` loop that repeats it until a shutdown token is cancelled.

mod calendar;
pub mod instruments;
mod scheduler;
mod sender;

pub use calendar::{Calendar, CalendarError};
pub use scheduler::{ReminderScheduler, SchedulerConfig, SchedulerError, TickReport};
pub use sender::{DeliveryOutcome, MAX_ACK_DELAY, NotificationSender, SenderConfig, SenderError};
