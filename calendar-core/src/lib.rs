//! The calendar's domain: events, periods, reminders, the ports they need and the use cases
//! that tie them together. Pure: no runtime, database, broker or protocol in here.
//!
//! # Layout
//!
//! - [`domain`]: validated values. [`Event`] (made of [`Title`], [`EventSpan`],
//!   [`Description`], [`NotifyBefore`], [`OverlapPolicy`]), [`Notification`], [`Period`] (a day,
//!   week or month in an IANA time zone), pages and page tokens, and the [`domain::limits`]
//!   every value lives within. A value that breaks a rule cannot be constructed.
//! - [`ports`]: the traits adapters implement: [`EventRepository`], [`ReminderQueue`],
//!   [`NotificationSource`], [`DeliveryLog`], [`Notifier`], [`Clock`]. With the `mocks` feature
//!   each has a mockall mock (`MockEventRepository`, ...).
//! - [`usecases`]: [`Calendar`] (create, get, update, delete, list), [`ReminderScheduler`]
//!   (due reminders to the queue; cleanup) and [`NotificationSender`] (queue to notifier, once).
//! - `testkit` (feature `testkit`): the contract suite every adapter runs.
//!
//! # Example
//!
//! Embed the calendar with the in-memory adapters from `calendar-adapters`, create an event
//! with a reminder, list its day, then run one scheduler tick and one sender step:
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use calendar_adapters::memory::{MemoryDeliveryLog, MemoryEventRepository, MemoryQueue};
//! use calendar_core::{
//!     Calendar, Clock, DeliveryOutcome, EventDetails, EventSpan, NotificationSender, Notifier,
//!     NotifyBefore, NotifyError, Notification, PageRequest, ReminderScheduler,
//!     SchedulerConfig, SenderConfig, SystemClock, Title, Tz, UserId,
//! };
//! use chrono::TimeDelta;
//!
//! /// A notifier of our own: prints the reminder.
//! struct Print;
//!
//! #[async_trait]
//! impl Notifier for Print {
//!     async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
//!         println!("reminder for {}: {:?} starts at {}", n.user(), n.title(), n.event_start());
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let clock = Arc::new(SystemClock);
//! let events = Arc::new(MemoryEventRepository::new());
//! let queue = Arc::new(MemoryQueue::new());
//! let calendar = Calendar::new(events.clone(), clock.clone());
//!
//! // A standup in ten minutes, with a reminder fifteen minutes before: due already.
//! let ann = UserId::new("ann")?;
//! let start = clock.now() + TimeDelta::minutes(10);
//! let mut details = EventDetails::new(
//!     Title::new("Standup")?,
//!     EventSpan::new(start, TimeDelta::minutes(15))?,
//! );
//! details.notify_before = Some(NotifyBefore::new(TimeDelta::minutes(15))?);
//! let standup = calendar.create(&ann, None, details).await?;
//!
//! let day = calendar
//!     .list_day(&ann, start.date_naive(), Tz::UTC, &PageRequest::default())
//!     .await?;
//! assert_eq!(day.events, vec![standup.clone()]);
//!
//! let scheduler = ReminderScheduler::new(
//!     events.clone(),
//!     queue.clone(),
//!     clock.clone(),
//!     SchedulerConfig::default(),
//! );
//! let tick = scheduler.tick().await?;
//! assert_eq!(tick.published, 1);
//!
//! // The sender checks each reminder against the event store before delivering it.
//! let sender = NotificationSender::new(
//!     queue,
//!     Arc::new(MemoryDeliveryLog::new()),
//!     events,
//!     Arc::new(Print),
//!     clock,
//!     SenderConfig::default(),
//! );
//! assert_eq!(sender.step().await?, DeliveryOutcome::Delivered);
//! # Ok(())
//! # }
//! ```
//!
//! The services in this workspace wire the same use cases to PostgreSQL, RabbitMQ and gRPC.

pub mod domain;
pub mod ports;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod usecases;

pub use chrono_tz::Tz;
pub use domain::*;
pub use ports::*;
pub use usecases::*;
