use std::fmt;

use async_trait::async_trait;

use super::BoxError;
use crate::domain::{DecodeError, Notification};

/// Why a notification was not confirmed by the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker cannot be reached (connection down, reconnecting).
    #[error("queue unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The broker refused the message (negative confirm, unroutable return).
    #[error("queue refused the message: {reason}")]
    Refused {
        /// What the broker said.
        reason: String,
    },
    /// No confirmation arrived in time; the message may or may not be queued.
    #[error("no confirmation from the queue within {waited_ms} ms")]
    Unconfirmed {
        /// How long the publisher waited.
        waited_ms: u64,
    },
    /// The queue is at its capacity.
    #[error("queue is full ({capacity} messages)")]
    Full {
        /// The queue's capacity.
        capacity: usize,
    },
}

/// The publishing side of the reminder queue: what the scheduler hands due notifications to.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ReminderQueue: Send + Sync {
    /// Publishes each notification durably, with its idempotency key as message id, and waits
    /// for the queue to confirm it.
    ///
    /// MUST return one result per notification, in order: `Ok` only for a notification the
    /// queue confirmed it holds durably; an error for every other (refused, unconfirmed,
    /// unavailable). A notification that got an error may still arrive (a confirmation lost on
    /// the way): consumers deduplicate.
    async fn publish(&self, notifications: &[Notification]) -> Vec<Result<(), QueueError>>;
}

/// Names one received message until it is settled. Only the source that issued it knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryTag(u64);

impl DeliveryTag {
    /// A tag with an adapter-chosen number.
    pub fn new(value: u64) -> Self {
        Self(value)
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for DeliveryTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A received message, to be settled with exactly one of ack, retry or dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Names the message when settling it.
    pub tag: DeliveryTag,
    /// 1 on the first delivery, one more on each redelivery after a retry.
    pub attempt: u32,
    /// The notification, or why the body is not one.
    pub message: Result<Notification, DecodeError>,
}

/// Why the consuming side of the queue failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source was shut down: nothing more will arrive.
    #[error("notification source is closed")]
    Closed,
    /// The broker cannot be reached for now.
    #[error("notification source unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The tag names no unsettled message of this source (already settled, or issued before a
    /// reconnect; the broker redelivers such messages).
    #[error("delivery {0} is unknown or already settled")]
    UnknownDelivery(DeliveryTag),
}

/// The consuming side of the reminder queue: what the sender reads notifications from.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait NotificationSource: Send + Sync {
    /// Waits for the next message.
    ///
    /// MUST return every message at least once until it is acknowledged or dead-lettered; a
    /// body that does not decode arrives as `Delivery { message: Err(..) }`, never as an error
    /// of the call. MUST return [`SourceError::Closed`] once the source is shut down. Cancel
    /// safe: dropping the future loses no message.
    async fn receive(&self) -> Result<Delivery, SourceError>;

    /// Whether `tag` still names a message this source can settle.
    ///
    /// MUST return `false` once the message is settled, and once the source has lost it (the
    /// connection it arrived on dropped: the broker then delivers it again, under another tag).
    /// The sender asks before handling a message it held back until its due instant.
    async fn is_unsettled(&self, tag: DeliveryTag) -> bool;

    /// Settles a message as handled: it is never delivered again.
    async fn ack(&self, tag: DeliveryTag) -> Result<(), SourceError>;

    /// Settles messages as handled, as [`ack`](Self::ack) of each would, in one go where the
    /// queue allows.
    ///
    /// MUST settle every tag it can, and return the first failure:
    /// [`SourceError::UnknownDelivery`] for a tag it could not settle.
    async fn ack_all(&self, tags: &[DeliveryTag]) -> Result<(), SourceError>;

    /// Returns a message to the queue, to be delivered again with `attempt` one higher.
    async fn retry(&self, tag: DeliveryTag) -> Result<(), SourceError>;

    /// Moves a message to the dead-letter queue, where operators inspect it; it is not
    /// delivered again. `reason` says why, for those operators.
    async fn dead_letter(&self, tag: DeliveryTag, reason: &str) -> Result<(), SourceError>;
}
