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
//! broke, a row the server refuses), every event of it is inserted on its own, so that each
//! gets its own answer. Rows go in sorted by owner and start, the order in which two
//! statements over one user's slots do not wait for each other in a cycle.

use std::collections::HashSet;

use calendar_core::{Description, Event, EventId, RepositoryError, UserId};
use chrono::{DateTime, Utc};
use tracing::debug;
use uuid::Uuid;

use super::batches::{BatchQueue, Job, Waiting};
use super::connections::Lease;
use super::error::repository_error;
use super::repository::PostgresEventRepository;

/// Most events one `INSERT` takes: a few hundred kilobytes of statement at the most (titles of
/// 200 characters, descriptions of 10,000).
pub(super) const MAX_EVENTS_PER_STATEMENT: usize = 64;

/// An event to insert.
pub(super) struct Insert(pub(super) Event);

/// Where inserts wait for an inserter.
pub(super) type InsertQueue = BatchQueue<Insert>;

impl Waiting<Insert> {
    fn event(&self) -> &Event {
        &self.job.0
    }

    /// Where the event goes in a statement: by owner, then start (then id, to be total).
    fn insertion_order(&self) -> (&UserId, DateTime<Utc>, EventId) {
        let event = self.event();
        (event.owner(), event.span().start(), event.id())
    }
}

impl Job for Insert {
    type Output = ();

    async fn run(connection: Lease, batch: Vec<Waiting<Self>>) {
        insert_batch(connection, batch).await;
    }
}

/// Inserts `batch` on `connection`: alone as [`PostgresEventRepository::insert_on`] does, or
/// together (see the [module documentation](self)); answers each.
async fn insert_batch(mut connection: Lease, mut batch: Vec<Waiting<Insert>>) {
    if batch.len() == 1 {
        let waiting = batch.remove(0);
        let inserted = PostgresEventRepository::insert_on(&mut connection, waiting.event()).await;
        connection.finish(&inserted);
        waiting.answer(inserted);
        return;
    }
    batch.sort_by(|a, b| a.insertion_order().cmp(&b.insertion_order()));
    // An id given twice waits for the statement: it then finds the id taken, as it would
    // have after a lone insert of the first.
    let mut ids = HashSet::with_capacity(batch.len());
    let (together, repeated): (Vec<Waiting<Insert>>, Vec<Waiting<Insert>>) = batch
        .into_iter()
        .partition(|waiting| ids.insert(waiting.event().id()));
    let count = together.len();
    let stored = insert_together(&mut connection, &together).await;
    let mut clean = true;
    let alone = match stored {
        Ok(stored) => {
            debug!(
                events = count,
                stored = stored.len(),
                "events inserted together"
            );
            let mut alone = Vec::new();
            for waiting in together {
                if stored.contains(&waiting.event().id().as_uuid()) {
                    waiting.answer(Ok(()));
                } else {
                    alone.push(waiting);
                }
            }
            alone
        }
        Err(error) => {
            debug!(events = count, %error, "inserting events together failed; each goes alone");
            clean = false;
            together
        }
    };
    for waiting in alone.into_iter().chain(repeated) {
        let inserted = PostgresEventRepository::insert_on(&mut connection, waiting.event()).await;
        clean &= inserted.is_ok()
            || matches!(
                inserted,
                Err(RepositoryError::AlreadyExists { .. } | RepositoryError::SlotBusy { .. })
            );
        waiting.answer(inserted);
    }
    // After a failure the connection is checked before it is used again.
    connection.finish(&if clean { Ok(()) } else { Err(()) });
}

/// Inserts every event of `batch` (their ids distinct) that finds its id free and, for a
/// blocking one, its slot free, in one statement; returns the ids stored.
async fn insert_together(
    connection: &mut Lease,
    batch: &[Waiting<Insert>],
) -> Result<HashSet<Uuid>, RepositoryError> {
    let mut ids = Vec::with_capacity(batch.len());
    let mut owners = Vec::with_capacity(batch.len());
    let mut titles = Vec::with_capacity(batch.len());
    let mut descriptions = Vec::with_capacity(batch.len());
    let mut starts = Vec::with_capacity(batch.len());
    let mut ends = Vec::with_capacity(batch.len());
    let mut overlaps = Vec::with_capacity(batch.len());
    let mut versions = Vec::with_capacity(batch.len());
    let mut created = Vec::with_capacity(batch.len());
    let mut updated = Vec::with_capacity(batch.len());
    let mut reminders: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(batch.len());
    for waiting in batch {
        let event = waiting.event();
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
    .fetch_all(&mut **connection)
    .await
    .map_err(repository_error)?;
    Ok(stored.into_iter().collect())
}
