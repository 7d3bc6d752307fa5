use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;
use calendar_core::limits::max_event_duration;
use calendar_core::{
    Cursor, Event, EventDetails, EventId, EventRepository, EventSpan, Notification, OverlapPolicy,
    ReminderKey, RepositoryError, TimeRange, UserId, Version,
};
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::lock;

/// Events and their reminder state in memory, indexed for the calendar's queries.
#[derive(Debug, Default)]
pub struct MemoryEventRepository {
    state: Mutex<State>,
}

/// An index key: an instant, then the event's UUID (so the nil UUID bounds ranges).
type Key = (DateTime<Utc>, Uuid);

#[derive(Debug, Default)]
struct State {
    /// Boxed: growing the map then moves a pointer per event, not the event, so the pause it
    /// makes under the lock stays short with millions of events.
    events: HashMap<Uuid, Box<Stored>>,
    /// Each owner's events by (start, id), with what conflict checks and range queries test.
    by_owner: HashMap<UserId, BTreeMap<Key, Slot>>,
    /// Reminders neither sent nor skipped, by (due instant, id).
    pending: BTreeSet<Key>,
    /// All events by (end, id), for cleanup.
    by_end: BTreeSet<Key>,
    /// Who may clean up, and until when.
    cleanup_claim: Option<(String, DateTime<Utc>)>,
}

/// What the owner index keeps of an event: enough to rule it in or out of a conflict or a
/// listed range without looking the event up (a cache miss per event in a large store), as the
/// index range reaches back the longest event duration and so spans many events.
#[derive(Debug, Clone, Copy)]
struct Slot {
    span: EventSpan,
    overlap: OverlapPolicy,
}

#[derive(Debug)]
struct Stored {
    event: Event,
    reminder: Option<Reminder>,
}

#[derive(Debug, Clone, Copy)]
struct Reminder {
    remind_at: DateTime<Utc>,
    leased_until: Option<DateTime<Utc>>,
    settled: bool,
}

impl Reminder {
    fn armed(remind_at: DateTime<Utc>) -> Self {
        Self {
            remind_at,
            leased_until: None,
            settled: false,
        }
    }
}

impl MemoryEventRepository {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        lock(&self.state).events.len()
    }

    /// Whether it holds no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl State {
    /// The first stored event `event` would conflict with, by (start, id): the rule of
    /// [`Event::conflicts_with`], read off the owner's index.
    fn conflict(&self, event: &Event) -> Option<EventId> {
        let overlap = event.details().overlap;
        if !overlap.conflicts_with(OverlapPolicy::Reject) {
            // It would not conflict even with a blocking event: with nothing, then.
            return None;
        }
        let span = event.span();
        let uuid = event.id().as_uuid();
        let lower = (span.start() - max_event_duration(), Uuid::nil());
        let upper = (span.end(), Uuid::nil());
        let ((_, found), _) = self
            .by_owner
            .get(event.owner())?
            .range((Bound::Excluded(lower), Bound::Excluded(upper)))
            .find(|((_, other), slot)| {
                *other != uuid && slot.overlap.conflicts_with(overlap) && slot.span.overlaps(span)
            })?;
        self.events.get(found).map(|stored| stored.event.id())
    }

    fn add(&mut self, event: Event, reminder: Option<Reminder>) {
        let uuid = event.id().as_uuid();
        self.by_owner
            .entry(event.owner().clone())
            .or_default()
            .insert(
                (event.span().start(), uuid),
                Slot {
                    span: *event.span(),
                    overlap: event.details().overlap,
                },
            );
        self.by_end.insert((event.span().end(), uuid));
        if let Some(r) = reminder.filter(|r| !r.settled) {
            self.pending.insert((r.remind_at, uuid));
        }
        self.events
            .insert(uuid, Box::new(Stored { event, reminder }));
    }

    fn remove(&mut self, id: EventId) {
        let uuid = id.as_uuid();
        let Some(stored) = self.events.remove(&uuid) else {
            return;
        };
        let event = &stored.event;
        if let Some(starts) = self.by_owner.get_mut(event.owner()) {
            starts.remove(&(event.span().start(), uuid));
            if starts.is_empty() {
                self.by_owner.remove(event.owner());
            }
        }
        self.by_end.remove(&(event.span().end(), uuid));
        if let Some(r) = stored.reminder {
            self.pending.remove(&(r.remind_at, uuid));
        }
    }

    /// The owner's event `id`, if they own it.
    fn owned(&self, owner: &UserId, id: EventId) -> Option<&Stored> {
        self.events
            .get(&id.as_uuid())
            .map(|stored| &**stored)
            .filter(|s| s.event.owner() == owner)
    }

    /// Applies `change` to the unsettled reminders named by `keys` (matched on the due instant);
    /// returns how many it changed.
    fn settle(&mut self, keys: &[ReminderKey], change: impl Fn(&mut Reminder) -> bool) -> u64 {
        let mut changed = 0;
        for key in keys {
            let Some(stored) = self.events.get_mut(&key.event_id.as_uuid()) else {
                continue;
            };
            let Some(reminder) = stored.reminder.as_mut() else {
                continue;
            };
            if reminder.remind_at != key.remind_at || reminder.settled {
                continue;
            }
            if !change(reminder) {
                continue;
            }
            if reminder.settled {
                self.pending
                    .remove(&(reminder.remind_at, key.event_id.as_uuid()));
            }
            changed += 1;
        }
        changed
    }
}

#[async_trait]
impl EventRepository for MemoryEventRepository {
    async fn insert(&self, event: &Event) -> Result<(), RepositoryError> {
        let mut state = lock(&self.state);
        if state.events.contains_key(&event.id().as_uuid()) {
            return Err(RepositoryError::AlreadyExists { id: event.id() });
        }
        if let Some(conflicting) = state.conflict(event) {
            return Err(RepositoryError::SlotBusy {
                conflicting: Some(conflicting),
            });
        }
        let reminder = event.details().reminder_at().map(Reminder::armed);
        state.add(event.clone(), reminder);
        Ok(())
    }

    async fn get(&self, owner: &UserId, id: EventId) -> Result<Option<Event>, RepositoryError> {
        Ok(lock(&self.state)
            .owned(owner, id)
            .map(|stored| stored.event.clone()))
    }

    async fn update(
        &self,
        owner: &UserId,
        id: EventId,
        details: &EventDetails,
        expected: Option<Version>,
        now: DateTime<Utc>,
    ) -> Result<Event, RepositoryError> {
        let mut state = lock(&self.state);
        let stored = state
            .owned(owner, id)
            .ok_or(RepositoryError::NotFound { id })?;
        let current = stored.event.version();
        if let Some(expected) = expected.filter(|v| *v != current) {
            return Err(RepositoryError::VersionMismatch { expected, current });
        }
        let revised = stored.event.revised(details.clone(), now);
        let reminder = match (stored.reminder, details.reminder_at()) {
            (Some(kept), Some(at)) if kept.remind_at == at => Some(kept),
            (_, due) => due.map(Reminder::armed),
        };
        if let Some(conflicting) = state.conflict(&revised) {
            return Err(RepositoryError::SlotBusy {
                conflicting: Some(conflicting),
            });
        }
        state.remove(id);
        state.add(revised.clone(), reminder);
        Ok(revised)
    }

    async fn delete(&self, owner: &UserId, id: EventId) -> Result<(), RepositoryError> {
        let mut state = lock(&self.state);
        if state.owned(owner, id).is_none() {
            return Err(RepositoryError::NotFound { id });
        }
        state.remove(id);
        Ok(())
    }

    async fn list(
        &self,
        owner: &UserId,
        range: TimeRange,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Event>, RepositoryError> {
        let state = lock(&self.state);
        let Some(starts) = state.by_owner.get(owner) else {
            return Ok(Vec::new());
        };
        // Anything overlapping the range starts at most the longest duration before it.
        let earliest = (range.start() - max_event_duration(), Uuid::nil());
        let lower = match after {
            Some(cursor) if (cursor.start, cursor.id.as_uuid()) >= earliest => {
                Bound::Excluded((cursor.start, cursor.id.as_uuid()))
            }
            _ => Bound::Excluded(earliest),
        };
        let upper = Bound::Excluded((range.end(), Uuid::nil()));
        if matches!((lower, upper), (Bound::Excluded(l), Bound::Excluded(u)) if l >= u) {
            return Ok(Vec::new());
        }
        Ok(starts
            .range((lower, upper))
            .filter(|(_, slot)| range.overlaps(&slot.span))
            .filter_map(|((_, uuid), _)| state.events.get(uuid))
            .take(limit as usize)
            .map(|stored| stored.event.clone())
            .collect())
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        ahead: TimeDelta,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<Notification>, RepositoryError> {
        let due_by = now.checked_add_signed(ahead).ok_or_else(|| {
            RepositoryError::Internal(
                format!("look-ahead {ahead} from {now} is out of range").into(),
            )
        })?;
        let mut state = lock(&self.state);
        let due: Vec<Uuid> = state
            .pending
            .range(..=(due_by, Uuid::max()))
            .map(|(_, uuid)| *uuid)
            .filter(|uuid| {
                state
                    .events
                    .get(uuid)
                    .and_then(|s| s.reminder)
                    .is_some_and(|r| r.leased_until.is_none_or(|until| until <= now))
            })
            .take(limit as usize)
            .collect();
        let mut claimed = Vec::with_capacity(due.len());
        for uuid in due {
            if let Some(stored) = state.events.get_mut(&uuid)
                && let Some(reminder) = stored.reminder.as_mut()
            {
                reminder.leased_until = Some(now + lease);
                claimed.extend(stored.event.notification());
            }
        }
        Ok(claimed)
    }

    async fn current_reminders(
        &self,
        reminders: &[ReminderKey],
    ) -> Result<Vec<Notification>, RepositoryError> {
        let state = lock(&self.state);
        let mut seen = HashSet::with_capacity(reminders.len());
        Ok(reminders
            .iter()
            .filter(|key| seen.insert(**key))
            .filter_map(|key| {
                let stored = state.events.get(&key.event_id.as_uuid())?;
                stored
                    .reminder
                    .filter(|r| r.remind_at == key.remind_at)
                    .and_then(|_| stored.event.notification())
            })
            .collect())
    }

    async fn mark_sent(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError> {
        Ok(lock(&self.state).settle(reminders, |r| {
            r.settled = true;
            true
        }))
    }

    async fn mark_skipped(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError> {
        // Sent and skipped differ only in why; both are final.
        self.mark_sent(reminders).await
    }

    async fn release(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError> {
        Ok(lock(&self.state).settle(reminders, |r| r.leased_until.take().is_some()))
    }

    async fn delete_ended_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        let mut state = lock(&self.state);
        let old: Vec<EventId> = state
            .by_end
            .range(..(cutoff, Uuid::nil()))
            .take(limit as usize)
            .filter_map(|(_, uuid)| state.events.get(uuid).map(|s| s.event.id()))
            .collect();
        for id in &old {
            state.remove(*id);
        }
        Ok(old.len() as u64)
    }

    async fn claim_cleanup(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, RepositoryError> {
        let mut state = lock(&self.state);
        let free = match &state.cleanup_claim {
            Some((current, end)) => current == holder || *end <= now,
            None => true,
        };
        if free {
            state.cleanup_claim = Some((holder.to_owned(), until));
        }
        Ok(free)
    }

    async fn check(&self) -> Result<(), RepositoryError> {
        Ok(())
    }
}
