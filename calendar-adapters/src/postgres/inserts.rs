//! Creates that arrive together, inserted together.
//!
//! Inserts run through a [`BatchQueue`] of [`Insert`]s: while its inserters are all busy, the
//! events waiting go into the next free one's `INSERT` and commit, up to
//! [`MAX_EVENTS_PER_STATEMENT`]; an event that finds an inserter free is inserted at once, by
//! the lone insert's statement.
//!
//! Each event still succeeds or fails alone. The statement skips (`ON CONFLICT DO NOTHING`)
//! a row whose id is taken or whose slot a blocking event holds, including one taken by an
//! earlier row of the same statement, and returns the ids it stored; each skipped event is
//! then inserted on its own ([`PostgresEventRepository::insert_on`]), which names what was in
//! its way exactly as a lone insert does. Should the statement fail (a deadlock the server
//! broke, a row the server refuses), every event of it is inserted on its own (the queue
//! does that), so that each gets its own answer. Rows go in sorted by owner and start, the
//! order in which two statements over one user's slots do not wait for each other in a cycle.

use std::collections::HashSet;

use calendar_core::{Description, Event, EventId, RepositoryError, UserId};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use tracing::debug;
use uuid::Uuid;

use super::batches::{Answer, BatchQueue, Job};
use super::error::repository_error;
use super::repository::PostgresEventRepository;

/// Most events one `INSERT` takes: a few hundred kilobytes of statement at the most (titles of
/// 200 characters, descriptions of 10,000).
pub(super) const MAX_EVENTS_PER_STATEMENT: usize = 64;

/// An event to insert.
pub(super) struct Insert(pub(super) Event);

/// Where inserts wait for an inserter.
pub(super) type InsertQueue = BatchQueue<Insert>;

impl Insert {
    /// Where the event goes in a statement: by owner, then start (then id, to be total).
    fn insertion_order(&self) -> (&UserId, DateTime<Utc>, EventId) {
        (self.0.owner(), self.0.span().start(), self.0.id())
    }
}

impl Job for Insert {
    type Output = ();

    async fn alone(&self, connection: &mut PgConnection) -> Answer<Self> {
        PostgresEventRepository::insert_on(connection, &self.0).await
    }

    /// Stored events are answered; one the statement skipped, and one whose id an earlier
    /// event of the batch has too (it then finds the id taken, as it would have after a lone
    /// insert of the first), are inserted alone after it.
    async fn together(
        connection: &mut PgConnection,
        batch: &[&Self],
    ) -> Result<Vec<Option<Answer<Self>>>, RepositoryError> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&a, &b| batch[a].insertion_order().cmp(&batch[b].insertion_order()));
        let mut ids = HashSet::with_capacity(batch.len());
        let inserted: Vec<usize> = order
            .into_iter()
            .filter(|&index| ids.insert(batch[index].0.id()))
            .collect();
        let events: Vec<&Event> = inserted.iter().map(|&index| &batch[index].0).collect();
        let stored = insert_together(connection, &events).await?;
        debug!(
            events = batch.len(),
            stored = stored.len(),
            "events inserted together"
        );
        let mut answers: Vec<Option<Answer<Self>>> = batch.iter().map(|_| None).collect();
        for index in inserted {
            if stored.contains(&batch[index].0.id().as_uuid()) {
                answers[index] = Some(Ok(()));
            }
        }
        Ok(answers)
    }
}

/// Inserts every event of `events` (their ids distinct), in their order, that finds its id free
/// and, for a blocking one, its slot free, in one statement; returns the ids stored.
async fn insert_together(
    connection: &mut PgConnection,
    events: &[&Event],
) -> Result<HashSet<Uuid>, RepositoryError> {
    let mut ids = Vec::with_capacity(events.len());
    let mut owners = Vec::with_capacity(events.len());
    let mut titles = Vec::with_capacity(events.len());
    let mut descriptions = Vec::with_capacity(events.len());
    let mut starts = Vec::with_capacity(events.len());
    let mut ends = Vec::with_capacity(events.len());
    let mut overlaps = Vec::with_capacity(events.len());
    let mut versions = Vec::with_capacity(events.len());
    let mut created = Vec::with_capacity(events.len());
    let mut updated = Vec::with_capacity(events.len());
    let mut reminders: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(events.len());
    for event in events {
        let details = event.details();
        ids.push(event.id().as_uuid());
        owners.push(event.owner().as_str());
        titles.push(details.title.as_str());
        descriptions.push(details.description.as_ref().map(Description::as_str));
        starts.push(details.span.start());
        ends.push(details.span.end());
        overlaps.push(details.overlap.as_str());
        versions.push(event.version().as_i64());
        created.push(event.created_at());
        updated.push(event.updated_at());
        reminders.push(details.reminder_at());
    }
    let stored = sqlx::query_scalar!(
        r#"
        INSERT INTO events (
            id, user_id, title, description, start_at, end_at, overlap_policy,
            version, created_at, updated_at, remind_at, reminder_state
        )
        SELECT id, user_id, title, description, start_at, end_at, overlap_policy,
               version, created_at, updated_at, remind_at,
               CASE WHEN remind_at IS NULL THEN NULL ELSE 'pending' END
        FROM UNNEST(
            $1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
            $7::text[], $8::int8[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[]
        ) WITH ORDINALITY AS batch (
            id, user_id, title, description, start_at, end_at, overlap_policy,
            version, created_at, updated_at, remind_at, ordinality
        )
        ORDER BY ordinality
        ON CONFLICT DO NOTHING
        RETURNING id
        "#,
        &ids,
        &owners as &[&str],
        &titles as &[&str],
        &descriptions as &[Option<&str>],
        &starts,
        &ends,
        &overlaps as &[&str],
        &versions,
        &created,
        &updated,
        &reminders as &[Option<DateTime<Utc>>],
    )
    .fetch_all(connection)
    .await
    .map_err(repository_error)?;
    Ok(stored.into_iter().collect())
}
