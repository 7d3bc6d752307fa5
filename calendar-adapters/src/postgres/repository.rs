//! [`EventRepository`] on PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use calendar_core::limits::{max_event_duration, to_micros};
use calendar_core::{
    Cursor, Description, Event, EventDetails, EventId, EventRepository, EventSpan, Notification,
    NotifyBefore, OverlapPolicy, ReminderKey, RepositoryError, TimeRange, Title, UserId, Version,
};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use super::connections::{Connections, Lease};
use super::error::{InvalidRow, Violation, repository_error, violation};
use super::inserts::{Insert, InsertQueue, MAX_EVENTS_PER_STATEMENT};
use super::lists::{List, ListQueue, MAX_LISTS_PER_STATEMENT};

/// Events and their reminder state in PostgreSQL (see the [module documentation](super)).
///
/// Cheap to clone: clones share the connections.
#[derive(Debug, Clone)]
pub struct PostgresEventRepository {
    connections: Connections,
    /// Where inserts wait for an inserter, to be run together under load (see
    /// [`InsertQueue`]).
    inserts: Arc<InsertQueue>,
    /// Where lists wait for a reader, to be read together under load (see [`ListQueue`]).
    lists: Arc<ListQueue>,
}

impl PostgresEventRepository {
    /// A repository on `connections`, whose database has the migrations applied
    /// ([`migrate`](super::migrate)). Given a sqlx pool, it opens connections of its own
    /// ([`Connections::from`]): give a process's adapters clones of one [`Connections`].
    pub fn new(connections: impl Into<Connections>) -> Self {
        let connections = connections.into();
        let quarter = connections.max_open() / 4;
        Self {
            // A quarter of the connections: other statements always find connections too, and
            // under load the events wait for a few large statements rather than many small
            // ones, which cost the server more per event (on two cores, 32 creates at once went
            // in at 10,641/s with 16 inserters, 13,830/s with 8 and 15,702/s with 4).
            inserts: Arc::new(InsertQueue::new(
                connections.clone(),
                quarter,
                MAX_EVENTS_PER_STATEMENT,
            )),
            // As many readers, for the same reasons: on two cores, 32 day lists at once were
            // read at 15,392 and 15,778/s each alone, 17,671 and 17,740/s with 4 readers and
            // 15,170 and 16,310/s with 8. Fewer readers gained little more there (1: 19,865/s),
            // and would leave a larger database server's cores idle: each statement runs on one.
            lists: Arc::new(ListQueue::new(
                connections.clone(),
                quarter,
                MAX_LISTS_PER_STATEMENT,
            )),
            connections,
        }
    }

    /// A connection for the next statements.
    async fn connection(&self) -> Result<Lease, RepositoryError> {
        self.connections.acquire().await.map_err(repository_error)
    }

    /// Names the first (by start, then id) of `owner`'s blocking events other than `except`
    /// that overlaps `span`: the event a write was refused for.
    async fn event_in_the_way(
        connection: &mut PgConnection,
        owner: &UserId,
        span: &EventSpan,
        except: EventId,
    ) -> Result<Option<EventId>, RepositoryError> {
        let found = sqlx::query_scalar!(
            r#"
            SELECT id FROM events
            WHERE user_id = $1
              AND overlap_policy = 'reject'
              AND span && tstzrange($2, $3, '[)')
              AND id <> $4
            ORDER BY start_at, id
            LIMIT 1
            "#,
            owner.as_str(),
            span.start(),
            span.end(),
            except.as_uuid(),
        )
        .fetch_optional(connection)
        .await
        .map_err(repository_error)?;
        found.map(|id| event_id(id, "id")).transpose()
    }

    /// What an insert that `ON CONFLICT DO NOTHING` skipped ran into: the id, or (for a blocking
    /// event) another event in its slot. `None` when neither is there any more.
    async fn insert_conflict(
        connection: &mut PgConnection,
        event: &Event,
    ) -> Result<Option<RepositoryError>, RepositoryError> {
        let taken = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM events WHERE id = $1) AS "taken!""#,
            event.id().as_uuid(),
        )
        .fetch_one(&mut *connection)
        .await
        .map_err(repository_error)?;
        if taken {
            return Ok(Some(RepositoryError::AlreadyExists { id: event.id() }));
        }
        if event.details().overlap != OverlapPolicy::Reject {
            return Ok(None);
        }
        let conflicting =
            Self::event_in_the_way(connection, event.owner(), event.span(), event.id()).await?;
        Ok(conflicting.map(|id| RepositoryError::SlotBusy {
            conflicting: Some(id),
        }))
    }

    /// [`insert`](EventRepository::insert) of `event` alone, on `connection`.
    pub(super) async fn insert_on(
        connection: &mut PgConnection,
        event: &Event,
    ) -> Result<(), RepositoryError> {
        let details = event.details();
        let remind_at = details.reminder_at();
        for _ in 0..INSERT_ATTEMPTS {
            // No conflict target: both the primary key and the overlap rule are arbiters, so a
            // conflict skips the row instead of failing, and concurrent inserts into one slot
            // wait for each other rather than deadlock. Then ask what was in the way.
            let inserted = sqlx::query!(
                r#"
                INSERT INTO events (
                    id, user_id, title, description, start_at, end_at, overlap_policy,
                    version, created_at, updated_at, remind_at, reminder_state
                )
                VALUES (
                    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                    CASE WHEN $11::timestamptz IS NULL THEN NULL ELSE 'pending' END
                )
                ON CONFLICT DO NOTHING
                "#,
                event.id().as_uuid(),
                event.owner().as_str(),
                details.title.as_str(),
                details.description.as_ref().map(Description::as_str),
                details.span.start(),
                details.span.end(),
                details.overlap.as_str(),
                event.version().as_i64(),
                event.created_at(),
                event.updated_at(),
                remind_at,
            )
            .execute(&mut *connection)
            .await
            .map_err(|error| match violation(&error) {
                Some(Violation::Id) => RepositoryError::AlreadyExists { id: event.id() },
                _ => repository_error(error),
            })?;
            if inserted.rows_affected() == 1 {
                return Ok(());
            }
            if let Some(conflict) = Self::insert_conflict(connection, event).await? {
                return Err(conflict);
            }
            // What was in the way has been deleted meanwhile: the slot may be free now.
        }
        Err(RepositoryError::SlotBusy { conflicting: None })
    }

    /// [`update`](EventRepository::update) on `connection`, in a transaction.
    async fn update_on(
        connection: &mut PgConnection,
        owner: &UserId,
        id: EventId,
        details: &EventDetails,
        expected: Option<Version>,
        now: DateTime<Utc>,
    ) -> Result<Event, RepositoryError> {
        let mut tx = connection.begin().await.map_err(repository_error)?;
        // Lock the row first, so the version checked is the version replaced.
        let current = sqlx::query_scalar!(
            "SELECT version FROM events WHERE id = $1 AND user_id = $2 FOR UPDATE",
            id.as_uuid(),
            owner.as_str(),
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(repository_error)?
        .ok_or(RepositoryError::NotFound { id })?;
        let current =
            Version::from_i64(current).map_err(|e| invalid(id.as_uuid(), "version", e))?;
        if let Some(expected) = expected.filter(|expected| *expected != current) {
            return Err(RepositoryError::VersionMismatch { expected, current });
        }
        // The reminder is re-armed (pending, unleased) when its instant changes, kept otherwise.
        let updated = sqlx::query_as!(
            EventRow,
            r#"
            UPDATE events SET
                title = $3,
                description = $4,
                start_at = $5,
                end_at = $6,
                overlap_policy = $7,
                remind_at = $8,
                reminder_state = CASE
                    WHEN $8::timestamptz IS NULL THEN NULL
                    WHEN remind_at = $8 THEN reminder_state
                    ELSE 'pending'
                END,
                reminder_leased_until = CASE
                    WHEN remind_at = $8 THEN reminder_leased_until
                END,
                version = version + 1,
                updated_at = GREATEST($9, created_at)
            WHERE id = $1 AND user_id = $2
            RETURNING id, user_id, title, description, start_at, end_at, overlap_policy,
                      remind_at, version, created_at, updated_at
            "#,
            id.as_uuid(),
            owner.as_str(),
            details.title.as_str(),
            details.description.as_ref().map(Description::as_str),
            details.span.start(),
            details.span.end(),
            details.overlap.as_str(),
            details.reminder_at(),
            to_micros(now),
        )
        .fetch_one(&mut *tx)
        .await;
        let updated = match updated {
            Ok(row) => row,
            Err(error) if violation(&error) == Some(Violation::Overlap) => {
                // The transaction is void; dropping it rolls it back. Name the event in the way.
                drop(tx);
                let conflicting =
                    Self::event_in_the_way(connection, owner, &details.span, id).await?;
                return Err(RepositoryError::SlotBusy { conflicting });
            }
            Err(error) => return Err(repository_error(error)),
        };
        tx.commit().await.map_err(repository_error)?;
        updated.into_event()
    }

    /// Settles the unsettled reminders named by `keys` as `state` (`sent` or `skipped`).
    async fn settle(&self, keys: &[ReminderKey], state: &str) -> Result<u64, RepositoryError> {
        let (ids, instants) = unzip_keys(keys);
        let mut connection = self.connection().await?;
        let settled = sqlx::query!(
            r#"
            UPDATE events SET reminder_state = $3, reminder_leased_until = NULL
            FROM UNNEST($1::uuid[], $2::timestamptz[]) AS settled (id, remind_at)
            WHERE events.id = settled.id
              AND events.remind_at = settled.remind_at
              AND events.reminder_state = 'pending'
            "#,
            &ids,
            &instants,
            state,
        )
        .execute(&mut *connection)
        .await;
        connection.finish(&settled);
        let settled = settled.map_err(repository_error)?;
        Ok(settled.rows_affected())
    }
}

/// How many times an insert is tried when the row it ran into is gone before it could be named.
const INSERT_ATTEMPTS: usize = 3;

#[async_trait]
impl EventRepository for PostgresEventRepository {
    async fn insert(&self, event: &Event) -> Result<(), RepositoryError> {
        self.inserts.run(Insert(event.clone())).await
    }

    async fn get(&self, owner: &UserId, id: EventId) -> Result<Option<Event>, RepositoryError> {
        let mut connection = self.connection().await?;
        let row = sqlx::query_as!(
            EventRow,
            r#"
            SELECT id, user_id, title, description, start_at, end_at, overlap_policy,
                   remind_at, version, created_at, updated_at
            FROM events
            WHERE id = $1 AND user_id = $2
            "#,
            id.as_uuid(),
            owner.as_str(),
        )
        .fetch_optional(&mut *connection)
        .await;
        connection.finish(&row);
        let row = row.map_err(repository_error)?;
        row.map(EventRow::into_event).transpose()
    }

    async fn update(
        &self,
        owner: &UserId,
        id: EventId,
        details: &EventDetails,
        expected: Option<Version>,
        now: DateTime<Utc>,
    ) -> Result<Event, RepositoryError> {
        let mut connection = self.connection().await?;
        let updated = Self::update_on(&mut connection, owner, id, details, expected, now).await;
        // Any way out but the commit leaves a rollback queued: finished with an error, the
        // connection goes back once it is sent.
        connection.finish(&updated);
        updated
    }

    async fn delete(&self, owner: &UserId, id: EventId) -> Result<(), RepositoryError> {
        let mut connection = self.connection().await?;
        let deleted = sqlx::query!(
            "DELETE FROM events WHERE id = $1 AND user_id = $2",
            id.as_uuid(),
            owner.as_str(),
        )
        .execute(&mut *connection)
        .await;
        connection.finish(&deleted);
        let deleted = deleted.map_err(repository_error)?;
        if deleted.rows_affected() == 0 {
            return Err(RepositoryError::NotFound { id });
        }
        Ok(())
    }

    async fn list(
        &self,
        owner: &UserId,
        range: TimeRange,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Event>, RepositoryError> {
        if range.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        // Anything overlapping the range starts at most the longest duration before it: with
        // that lower bound the scan of (user_id, start_at, id) is bounded on both sides.
        let earliest = (to_micros(range.start()) - max_event_duration(), Uuid::nil());
        let (after_start, after_id) = match after {
            Some(cursor) if (cursor.start, cursor.id.as_uuid()) > earliest => {
                (cursor.start, cursor.id.as_uuid())
            }
            _ => earliest,
        };
        self.lists
            .run(List {
                owner: owner.clone(),
                after: (after_start, after_id),
                starts_before: micros_ceil(range.end()),
                ends_after: to_micros(range.start()),
                limit: i64::from(limit),
            })
            .await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        ahead: TimeDelta,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<Notification>, RepositoryError> {
        let leased_until = now.checked_add_signed(lease).ok_or_else(|| {
            RepositoryError::Internal(format!("lease {lease} from {now} is out of range").into())
        })?;
        let due_by = now.checked_add_signed(ahead).ok_or_else(|| {
            RepositoryError::Internal(
                format!("look-ahead {ahead} from {now} is out of range").into(),
            )
        })?;
        // SKIP LOCKED: concurrent claimers step over the rows another is claiming right now
        // instead of waiting for it, and the lease keeps them off once that claim commits.
        // `(SELECT $1)` hides the instant from the planner: judged by statistics gathered before
        // a burst of reminders fell due, `remind_at <= $1` looks like a handful of rows, and the
        // plan then reads and sorts every due reminder to take the first batch (on 100,000 due:
        // tens of ms per claim). Hidden, it is estimated as a wide range, and the plan walks
        // events_reminder_due in order and stops after the batch, whatever is due.
        let mut connection = self.connection().await?;
        let rows = sqlx::query_as!(
            EventRow,
            r#"
            WITH due AS (
                SELECT id FROM events
                WHERE reminder_state = 'pending'
                  AND remind_at <= (SELECT $1::timestamptz)
                  AND (reminder_leased_until IS NULL OR reminder_leased_until <= $4)
                ORDER BY remind_at, id
                LIMIT $2
                FOR UPDATE SKIP LOCKED
            )
            UPDATE events SET reminder_leased_until = $3
            FROM due
            WHERE events.id = due.id
            RETURNING events.id, events.user_id, events.title, events.description,
                      events.start_at, events.end_at, events.overlap_policy, events.remind_at,
                      events.version, events.created_at, events.updated_at
            "#,
            to_micros(due_by),
            i64::from(limit),
            // Rounded up, so that a lease never ends before the caller asked.
            micros_ceil(leased_until),
            to_micros(now),
        )
        .fetch_all(&mut *connection)
        .await;
        connection.finish(&rows);
        let rows = rows.map_err(repository_error)?;
        let mut claimed = rows
            .into_iter()
            .map(EventRow::into_notification)
            .collect::<Result<Vec<_>, RepositoryError>>()?;
        // RETURNING keeps no order: give the earliest due first, as claimed.
        claimed.sort_by_key(|notification| (notification.remind_at(), notification.event_id()));
        Ok(claimed)
    }

    async fn current_reminders(
        &self,
        reminders: &[ReminderKey],
    ) -> Result<Vec<Notification>, RepositoryError> {
        if reminders.is_empty() {
            return Ok(Vec::new());
        }
        // Each key once, so that each is answered once; each is one primary-key lookup.
        let mut seen = HashSet::with_capacity(reminders.len());
        let unique: Vec<ReminderKey> = reminders
            .iter()
            .copied()
            .filter(|key| seen.insert(*key))
            .collect();
        let (ids, instants) = unzip_keys(&unique);
        let mut connection = self.connection().await?;
        let rows = sqlx::query_as!(
            EventRow,
            r#"
            SELECT events.id, events.user_id, events.title, events.description,
                   events.start_at, events.end_at, events.overlap_policy, events.remind_at,
                   events.version, events.created_at, events.updated_at
            FROM UNNEST($1::uuid[], $2::timestamptz[]) AS asked (id, remind_at)
            JOIN events ON events.id = asked.id AND events.remind_at = asked.remind_at
            "#,
            &ids,
            &instants,
        )
        .fetch_all(&mut *connection)
        .await;
        connection.finish(&rows);
        let rows = rows.map_err(repository_error)?;
        rows.into_iter().map(EventRow::into_notification).collect()
    }

    async fn mark_sent(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError> {
        self.settle(reminders, "sent").await
    }

    async fn mark_skipped(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError> {
        self.settle(reminders, "skipped").await
    }

    async fn release(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError> {
        let (ids, instants) = unzip_keys(reminders);
        let mut connection = self.connection().await?;
        let released = sqlx::query!(
            r#"
            UPDATE events SET reminder_leased_until = NULL
            FROM UNNEST($1::uuid[], $2::timestamptz[]) AS released (id, remind_at)
            WHERE events.id = released.id
              AND events.remind_at = released.remind_at
              AND events.reminder_state = 'pending'
              AND events.reminder_leased_until IS NOT NULL
            "#,
            &ids,
            &instants,
        )
        .execute(&mut *connection)
        .await;
        connection.finish(&released);
        let released = released.map_err(repository_error)?;
        Ok(released.rows_affected())
    }

    async fn delete_ended_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        // Bounded batches keep each transaction short. Rows a concurrent writer holds at this
        // moment are skipped rather than waited for; the next pass takes them.
        let mut connection = self.connection().await?;
        let deleted = sqlx::query!(
            r#"
            DELETE FROM events
            WHERE id IN (
                SELECT id FROM events
                WHERE end_at < $1
                ORDER BY end_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED
            )
            "#,
            micros_ceil(cutoff),
            i64::from(limit),
        )
        .execute(&mut *connection)
        .await;
        connection.finish(&deleted);
        let deleted = deleted.map_err(repository_error)?;
        Ok(deleted.rows_affected())
    }

    async fn claim_cleanup(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, RepositoryError> {
        // One statement: take the claim if it is free, ours, or run out; otherwise leave it.
        let mut connection = self.connection().await?;
        let claimed = sqlx::query_scalar!(
            r#"
            INSERT INTO maintenance_claims AS claim (task, holder, expires_at)
            VALUES ('cleanup', $1, $3)
            ON CONFLICT (task) DO UPDATE
                SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                WHERE claim.holder = EXCLUDED.holder OR claim.expires_at <= $2
            RETURNING holder
            "#,
            holder,
            to_micros(now),
            micros_ceil(until),
        )
        .fetch_optional(&mut *connection)
        .await;
        connection.finish(&claimed);
        let claimed = claimed.map_err(repository_error)?;
        Ok(claimed.is_some())
    }

    async fn check(&self) -> Result<(), RepositoryError> {
        // Whatever the reason, a store that cannot run `SELECT 1` is not serving.
        let unavailable = |error| RepositoryError::Unavailable(Box::new(error));
        let mut connection = self.connections.acquire().await.map_err(unavailable)?;
        let checked = sqlx::query_scalar!(r#"SELECT 1 AS "one!""#)
            .fetch_one(&mut *connection)
            .await;
        connection.finish(&checked);
        checked.map(drop).map_err(unavailable)
    }
}

/// An `events` row as the queries that return whole events read it.
pub(super) struct EventRow {
    pub(super) id: Uuid,
    pub(super) user_id: String,
    pub(super) title: String,
    pub(super) description: Option<String>,
    pub(super) start_at: DateTime<Utc>,
    pub(super) end_at: DateTime<Utc>,
    pub(super) overlap_policy: String,
    pub(super) remind_at: Option<DateTime<Utc>>,
    pub(super) version: i64,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
}

impl EventRow {
    /// The notification of the reminder of an event read for it (by its reminder instant).
    fn into_notification(self) -> Result<Notification, RepositoryError> {
        let id = self.id;
        self.into_event()?
            .notification()
            .ok_or_else(|| invalid(id, "remind_at", "read for its reminder, without one").into())
    }

    /// The event, rebuilt through calendar-core's validating constructors.
    pub(super) fn into_event(self) -> Result<Event, RepositoryError> {
        let row = self.id;
        let id = event_id(row, "id")?;
        let owner = UserId::new(self.user_id).map_err(|e| invalid(row, "user_id", e))?;
        let title = Title::new(&self.title).map_err(|e| invalid(row, "title", e))?;
        let span = EventSpan::from_bounds(self.start_at, self.end_at)
            .map_err(|e| invalid(row, "start_at, end_at", e))?;
        let description = self
            .description
            .as_deref()
            .map(Description::new)
            .transpose()
            .map_err(|e| invalid(row, "description", e))?;
        // The lead is stored as the instant it leads to; it reads back exactly.
        let notify_before = self
            .remind_at
            .map(|remind_at| NotifyBefore::new(self.start_at - remind_at))
            .transpose()
            .map_err(|e| invalid(row, "remind_at", e))?;
        let overlap = OverlapPolicy::parse(&self.overlap_policy)
            .ok_or_else(|| invalid(row, "overlap_policy", "neither 'reject' nor 'allow'"))?;
        let version = Version::from_i64(self.version).map_err(|e| invalid(row, "version", e))?;
        let details = EventDetails {
            title,
            span,
            description,
            notify_before,
            overlap,
        };
        Ok(Event::restore(
            id,
            owner,
            details,
            version,
            self.created_at,
            self.updated_at,
        ))
    }
}

fn event_id(uuid: Uuid, field: &'static str) -> Result<EventId, RepositoryError> {
    EventId::from_uuid(uuid).map_err(|e| invalid(uuid, field, e).into())
}

fn invalid(id: Uuid, field: &'static str, reason: impl ToString) -> InvalidRow {
    InvalidRow {
        id,
        field,
        reason: reason.to_string(),
    }
}

/// The ids and reminder instants of `keys`, as two arrays for `UNNEST`.
fn unzip_keys(keys: &[ReminderKey]) -> (Vec<Uuid>, Vec<DateTime<Utc>>) {
    keys.iter()
        .map(|key| (key.event_id.as_uuid(), key.remind_at))
        .unzip()
}

/// The first whole microsecond at or after `instant`. PostgreSQL keeps microseconds: stored
/// instants are whole microseconds, so `stored < instant` is `stored < micros_ceil(instant)`,
/// where sending `instant` as is would round it one way or the other.
fn micros_ceil(instant: DateTime<Utc>) -> DateTime<Utc> {
    let floor = to_micros(instant);
    if floor == instant {
        instant
    } else {
        floor + TimeDelta::microseconds(1)
    }
}
