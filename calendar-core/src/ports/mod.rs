//! The ports: what the use cases need from the outside world, as traits adapters implement.
//!
//! Each port has one error enum. Adapters translate their driver's failures into its variants,
//! so no driver type reaches the domain. With the `mocks` feature every port has a mockall mock
//! (`MockEventRepository`, `MockReminderQueue`, `MockNotificationSource`, `MockDeliveryLog`,
//! `MockNotifier`, `MockClock`) for unit tests downstream.

mod clock;
mod delivery_log;
mod notifier;
mod queue;
mod repository;

pub use clock::{Clock, SystemClock};
pub use delivery_log::{DeliveryLog, DeliveryLogError};
pub use notifier::{Notifier, NotifyError};
pub use queue::{
    Delivery, DeliveryTag, NotificationSource, QueueError, ReminderQueue, SourceError,
};
pub use repository::{EventRepository, RepositoryError};

#[cfg(any(test, feature = "mocks"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mocks"))]
pub use delivery_log::MockDeliveryLog;
#[cfg(any(test, feature = "mocks"))]
pub use notifier::MockNotifier;
#[cfg(any(test, feature = "mocks"))]
pub use queue::{MockNotificationSource, MockReminderQueue};
#[cfg(any(test, feature = "mocks"))]
pub use repository::MockEventRepository;

/// A boxed error from an adapter's driver, kept as the source of a port error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
