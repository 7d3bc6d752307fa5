use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::BoxError;
use crate::domain::{
    Cursor, Event, EventDetails, EventId, Notification, ReminderKey, TimeRange, UserId, Version,
};

/// Why the event store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// No event with this id belongs to the caller (another user's event looks the same).
    #[error("event {id} not found")]
    NotFound {
        /// The id asked for.
        id: EventId,
    },
    /// An event with this id already exists.
    #[error("event {id} already exists")]
    AlreadyExists {
        /// The id.
        id: EventId,
    },
    /// The event would overlap another of the owner's events, and both block their slot.
    #[error("time slot is busy{}", conflicting.map(|id| format!(" (event {id})")).unwrap_or_default())]
    SlotBusy {
        /// The event in the way, when the store can name it.
        conflicting: Option<EventId>,
    },
    /// The event is not at the version the caller expected.
    #[error("event is at version {current}, not {expected}")]
    VersionMismatch {
        /// The version the caller expected.
        expected: Version,
        /// The version stored.
        current: Version,
    },
    /// The store cannot be reached for now (connection refused, pool exhausted, timeout).
    #[error("event store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The store failed in a way retrying will not fix (a bug, corrupt data).
    #[error("event store failure: {0}")]
    Internal(#[source] BoxError),
}

/// Where events and their reminder state live.
///
/// Every event operation is scoped by owner: another user's event behaves exactly like a
/// missing one. Reminder state (due, leased, sent or skipped) is kept with the event and changes
/// in the same write as the event.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait EventRepository: Send + Sync {
    /// Stores a new event and arms its reminder, if it has one.
    ///
    /// MUST return [`RepositoryError::AlreadyExists`] if any event (of any owner) has this id,
    /// and otherwise [`RepositoryError::SlotBusy`] if the event conflicts with a stored one
    /// ([`Event::conflicts_with`]); the check and the write are one atomic step, so of two
    /// conflicting concurrent inserts exactly one succeeds.
    async fn insert(&self, event: &Event) -> Result<(), RepositoryError>;

    /// MUST return the event `id` if `owner` owns it, `Ok(None)` otherwise.
    async fn get(&self, owner: &UserId, id: EventId) -> Result<Option<Event>, RepositoryError>;

    /// Replaces the details of `owner`'s event `id`, bumping its version and setting its
    /// `updated_at` to `now` ([`Event::revised`]), and returns the stored result.
    ///
    /// If the reminder instant changes, the reminder is re-armed (due again, unleased, unsent);
    /// if it does not, its state is kept. MUST return [`RepositoryError::NotFound`] if `owner`
    /// has no such event; [`RepositoryError::VersionMismatch`] if `expected` is given and is not
    /// the stored version; [`RepositoryError::SlotBusy`] if the new details conflict with
    /// another event. Check and write are atomic.
    async fn update(
        &self,
        owner: &UserId,
        id: EventId,
        details: &EventDetails,
        expected: Option<Version>,
        now: DateTime<Utc>,
    ) -> Result<Event, RepositoryError>;

    /// Deletes `owner`'s event `id`, cancelling its reminder.
    ///
    /// MUST return [`RepositoryError::NotFound`] if `owner` has no such event.
    async fn delete(&self, owner: &UserId, id: EventId) -> Result<(), RepositoryError>;

    /// `owner`'s events overlapping `range` (start < range end and end > range start), ordered
    /// by (start, id), strictly after `after` when given, at most `limit` of them.
    async fn list(
        &self,
        owner: &UserId,
        range: TimeRange,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Event>, RepositoryError>;

    /// Claims up to `limit` reminders due by `now + ahead` (`ahead` >= 0: the scheduler's
    /// look-ahead, so that reminders reach the senders before they fall due): neither sent nor
    /// skipped, and not leased (or with a lease that ended at or before `now`); earliest due
    /// first. Each is leased until `now + lease`, so concurrent claimers never get the same
    /// reminder while the lease runs, and a claimer that dies leaves it to be claimed again
    /// after the lease.
    ///
    /// MUST return the notifications of the claimed reminders, built from the events as stored.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        ahead: TimeDelta,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<Notification>, RepositoryError>;

    /// The reminders among `reminders` that their events still want sent as keyed: the event
    /// exists and its reminder falls due at the key's instant (whatever its state). The sender
    /// asks just before delivering, so that a reminder published before its event was deleted,
    /// or before its reminder moved, is not delivered.
    ///
    /// MUST return the notification of each such reminder, built from the event as stored now
    /// (its current title and start), once per key and in no particular order; keys of deleted
    /// events and of moved or removed reminders are left out.
    async fn current_reminders(
        &self,
        reminders: &[ReminderKey],
    ) -> Result<Vec<Notification>, RepositoryError>;

    /// Marks reminders as sent: they are never claimed again. A key whose event is gone, or
    /// whose event's reminder instant has changed since the claim (re-armed), is ignored.
    ///
    /// MUST return how many reminders it marked.
    async fn mark_sent(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError>;

    /// Marks reminders as skipped (their event had started before they could be sent): never
    /// claimed again. Keys are matched as in [`mark_sent`](Self::mark_sent).
    ///
    /// MUST return how many reminders it marked.
    async fn mark_skipped(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError>;

    /// Ends the lease of reminders that were claimed but not published, so the next claim takes
    /// them without waiting for the lease to run out. Keys are matched as in
    /// [`mark_sent`](Self::mark_sent).
    ///
    /// MUST return how many leases it ended.
    async fn release(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError>;

    /// Deletes up to `limit` events (of any owner) that ended before `cutoff`.
    ///
    /// MUST return how many it deleted; fewer than `limit` means none are left but, possibly,
    /// events a concurrent writer held at that moment, which a later call deletes.
    async fn delete_ended_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, RepositoryError>;

    /// Claims the right to run cleanup for `holder` until `until`, so that of several
    /// schedulers only one cleans up at a time.
    ///
    /// MUST return `true` if no other holder's claim is still running at `now` (a claim whose
    /// end is at or before `now` has run out), recording `holder`'s claim until `until`;
    /// `true` also when `holder` renews its own claim; `false` otherwise, changing nothing.
    /// Check and write are atomic.
    async fn claim_cleanup(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, RepositoryError>;

    /// MUST return `Ok` when the store answers, [`RepositoryError::Unavailable`] when it does not.
    async fn check(&self) -> Result<(), RepositoryError>;
}
