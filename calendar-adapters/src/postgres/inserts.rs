//! Creates that arrive together, inserted together.
//!
//! An insert on its own costs PostgreSQL a statement, a transaction and a wait for its commit
//! to reach the disk; with many creates at once, that per-statement work is most of what the
//! server spends on each. [`InsertQueue`] runs every insert through a few inserter tasks (a
//! quarter of the connections): an event to insert waits in the queue, and an inserter takes
//! everything waiting (up to [`MAX_EVENTS_PER_STATEMENT`]) into one `INSERT` and one commit.
//! A create that finds an inserter free starts at once, alone: batches form only while every
//! inserter is busy, so they add no wait of their own, and grow with the load.
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
use std::sync::{Arc, Mutex};

use calendar_core::{Description, Event, RepositoryError};
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tracing::debug;
use uuid::Uuid;

use super::connections::{Connections, Lease};
use super::error::{SharedError, repository_error};
use super::repository::PostgresEventRepository;
use crate::sync::lock;

/// Most events one `INSERT` takes: a few hundred kilobytes of statement at the most (titles of
/// 200 characters, descriptions of 10,000).
pub(super) const MAX_EVENTS_PER_STATEMENT: usize = 64;

/// The events waiting to be inserted, and the inserters at work on them (see the [module
/// documentation](self)).
pub(super) struct InsertQueue {
    connections: Connections,
    /// Most inserters at work at once: a quarter of the connections (at least one), so that
    /// reads always find connections too, and so that under load the events wait for a few
    /// large statements rather than many small ones: on two cores, 32 creates at once went
    /// in at 10,641/s with 16 inserters, 13,830/s with 8 and 15,702/s with 4.
    max_inserters: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for InsertQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("InsertQueue")
            .field("waiting", &state.waiting.len())
            .field("inserters", &state.inserters)
            .field("max_inserters", &self.max_inserters)
            .finish_non_exhaustive()
    }
}

struct State {
    /// In arrival order.
    waiting: Vec<Waiting>,
    /// Inserter tasks started and not yet finished. One leaves only once it has found nothing
    /// waiting, under the same lock as a new event is queued: no event is left without one.
    inserters: usize,
}

/// An event to insert, and where its answer goes.
struct Waiting {
    event: Event,
    answer: oneshot::Sender<Result<(), RepositoryError>>,
}

impl Waiting {
    /// Sends the answer; a caller that stopped waiting (its request was cancelled) misses it,
    /// as it would have missed a lone insert's.
    fn answer(self, result: Result<(), RepositoryError>) {
        let _ = self.answer.send(result);
    }
}

impl InsertQueue {
    pub(super) fn new(connections: Connections) -> Self {
        let max_connections =
            usize::try_from(connections.pg_pool().options().get_max_connections())
                .unwrap_or(usize::MAX);
        Self {
            connections,
            max_inserters: (max_connections / 4).max(1),
            state: Mutex::new(State {
                waiting: Vec::new(),
                inserters: 0,
            }),
        }
    }

    /// Inserts `event`, with whatever else is waiting when an inserter takes it.
    pub(super) async fn insert(self: &Arc<Self>, event: &Event) -> Result<(), RepositoryError> {
        let (answer, answered) = oneshot::channel();
        let start_inserter = {
            let mut state = lock(&self.state);
            state.waiting.push(Waiting {
                event: event.clone(),
                answer,
            });
            let start = state.inserters < self.max_inserters;
            if start {
                state.inserters += 1;
            }
            start
        };
        if start_inserter {
            // On a task of its own: a caller giving up (a cancelled request) does not abandon
            // the other events of its statement.
            Inserter::start(Arc::clone(self));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(RepositoryError::Internal("the insert was abandoned".into())))
    }

    /// Up to [`MAX_EVENTS_PER_STATEMENT`] of the events waiting, the earliest first; `None`
    /// when nothing waits, and then the calling inserter has left.
    fn take_or_leave(&self) -> Option<Vec<Waiting>> {
        let mut state = lock(&self.state);
        if state.waiting.is_empty() {
            state.inserters -= 1;
            return None;
        }
        let count = state.waiting.len().min(MAX_EVENTS_PER_STATEMENT);
        Some(state.waiting.drain(..count).collect())
    }
}

/// One inserter task: takes what waits, inserts it, until nothing waits.
struct Inserter {
    queue: Arc<InsertQueue>,
    /// Whether it left the queue (counted out) the normal way.
    left: bool,
}

impl Inserter {
    fn start(queue: Arc<InsertQueue>) {
        let mut inserter = Self { queue, left: false };
        // Not in the span of the create that started it: it inserts other creates' events too.
        tokio::spawn(async move { inserter.run().await });
    }

    async fn run(&mut self) {
        loop {
            // The connection first, so that what arrives while it is found joins the batch.
            let connection = self.queue.connections.acquire().await;
            let Some(batch) = self.queue.take_or_leave() else {
                self.left = true;
                if let Ok(connection) = connection {
                    connection.finish(&Ok::<(), ()>(()));
                }
                return;
            };
            match connection {
                Ok(connection) => insert_batch(connection, batch).await,
                Err(error) => {
                    let error = SharedError::new(error);
                    for waiting in batch {
                        waiting.answer(Err(error.repository_error()));
                    }
                }
            }
        }
    }
}

impl Drop for Inserter {
    /// An inserter dropped before it left (it panicked, or the runtime is shutting down) is
    /// counted out: the events it held got an error (their answers were dropped), and the next
    /// insert starts an inserter that takes whatever still waits.
    fn drop(&mut self) {
        if !self.left {
            lock(&self.queue.state).inserters -= 1;
        }
    }
}

/// Inserts `batch` on `connection`: alone as [`PostgresEventRepository::insert_on`] does, or
/// together (see the [module documentation](self)); answers each.
async fn insert_batch(mut connection: Lease, mut batch: Vec<Waiting>) {
    if batch.len() == 1 {
        let waiting = batch.remove(0);
        let inserted = PostgresEventRepository::insert_on(&mut connection, &waiting.event).await;
        connection.finish(&inserted);
        waiting.answer(inserted);
        return;
    }
    batch.sort_by(|a, b| {
        (a.event.owner(), a.event.span().start(), a.event.id()).cmp(&(
            b.event.owner(),
            b.event.span().start(),
            b.event.id(),
        ))
    });
    // An id given twice waits for the statement: it then finds the id taken, as it would
    // have after a lone insert of the first.
    let mut ids = HashSet::with_capacity(batch.len());
    let (together, repeated): (Vec<Waiting>, Vec<Waiting>) = batch
        .into_iter()
        .partition(|waiting| ids.insert(waiting.event.id()));
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
                if stored.contains(&waiting.event.id().as_uuid()) {
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
        let inserted = PostgresEventRepository::insert_on(&mut connection, &waiting.event).await;
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
    batch: &[Waiting],
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
    for Waiting { event, .. } in batch {
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
