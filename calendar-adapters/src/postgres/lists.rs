//! Lists that arrive together, read together.
//!
//! Lists run through a [`BatchQueue`] of [`List`]s: while its readers are all busy, the lists
//! waiting go into the next free one's statement, up to [`MAX_LISTS_PER_STATEMENT`], which
//! reads each list's page with the lone list's scan of `(user_id, start_at, id)` (a lateral
//! join over the lists asked for); a list that finds a reader free runs alone, by the lone
//! list's statement. Each list gets its own page, as it would have alone; should the
//! statement fail, every list of it is read on its own (the queue does that), so that each
//! gets its own answer.

use calendar_core::{Event, RepositoryError, UserId};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use tracing::debug;
use uuid::Uuid;

use super::batches::{Answer, BatchQueue, Job};
use super::error::repository_error;
use super::repository::EventRow;

/// Most lists one statement reads.
pub(super) const MAX_LISTS_PER_STATEMENT: usize = 32;

/// A page of one user's events: those that start before `starts_before` and end after
/// `ends_after`, after `after` in (start, id) order, at most `limit`.
pub(super) struct List {
    pub(super) owner: UserId,
    pub(super) after: (DateTime<Utc>, Uuid),
    pub(super) starts_before: DateTime<Utc>,
    pub(super) ends_after: DateTime<Utc>,
    pub(super) limit: i64,
}

/// Where lists wait for a reader.
pub(super) type ListQueue = BatchQueue<List>;

impl Job for List {
    type Output = Vec<Event>;

    async fn alone(&self, connection: &mut PgConnection) -> Answer<Self> {
        let rows = sqlx::query_as!(
            EventRow,
            r#"
            SELECT id, user_id, title, description, start_at, end_at, overlap_policy,
                   remind_at, version, created_at, updated_at
            FROM events
            WHERE user_id = $1
              AND (start_at, id) > ($2, $3)
              AND start_at < $4
              AND end_at > $5
            ORDER BY start_at, id
            LIMIT $6
            "#,
            self.owner.as_str(),
            self.after.0,
            self.after.1,
            self.starts_before,
            self.ends_after,
            self.limit,
        )
        .fetch_all(connection)
        .await
        .map_err(repository_error)?;
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// Every list's page; a row that fails validation fails its list's page alone.
    async fn together(
        connection: &mut PgConnection,
        batch: &[&Self],
    ) -> Result<Vec<Option<Answer<Self>>>, RepositoryError> {
        let pages = list_together(connection, batch).await?;
        debug!(lists = batch.len(), "lists read together");
        Ok(pages.into_iter().map(Some).collect())
    }
}

/// The page of each list of `batch`, in order, from one statement.
async fn list_together(
    connection: &mut PgConnection,
    batch: &[&List],
) -> Result<Vec<Answer<List>>, RepositoryError> {
    let mut owners = Vec::with_capacity(batch.len());
    let mut after_starts = Vec::with_capacity(batch.len());
    let mut after_ids = Vec::with_capacity(batch.len());
    let mut starts_before = Vec::with_capacity(batch.len());
    let mut ends_after = Vec::with_capacity(batch.len());
    let mut limits = Vec::with_capacity(batch.len());
    for list in batch {
        owners.push(list.owner.as_str());
        after_starts.push(list.after.0);
        after_ids.push(list.after.1);
        starts_before.push(list.starts_before);
        ends_after.push(list.ends_after);
        limits.push(list.limit);
    }
    let rows = sqlx::query!(
        r#"
        SELECT asked.n AS "n!", page.id AS "id!", page.user_id AS "user_id!",
               page.title AS "title!", page.description, page.start_at AS "start_at!",
               page.end_at AS "end_at!", page.overlap_policy AS "overlap_policy!",
               page.remind_at, page.version AS "version!", page.created_at AS "created_at!",
               page.updated_at AS "updated_at!"
        FROM UNNEST(
            $1::text[], $2::timestamptz[], $3::uuid[], $4::timestamptz[], $5::timestamptz[],
            $6::int8[]
        ) WITH ORDINALITY AS asked (
            user_id, after_start, after_id, starts_before, ends_after, page_size, n
        )
        CROSS JOIN LATERAL (
            SELECT id, user_id, title, description, start_at, end_at, overlap_policy,
                   remind_at, version, created_at, updated_at
            FROM events
            WHERE events.user_id = asked.user_id
              AND (events.start_at, events.id) > (asked.after_start, asked.after_id)
              AND events.start_at < asked.starts_before
              AND events.end_at > asked.ends_after
            ORDER BY events.start_at, events.id
            LIMIT asked.page_size
        ) AS page
        "#,
        &owners as &[&str],
        &after_starts,
        &after_ids,
        &starts_before,
        &ends_after,
        &limits,
    )
    .fetch_all(connection)
    .await
    .map_err(repository_error)?;
    let mut pages: Vec<Answer<List>> = batch.iter().map(|_| Ok(Vec::new())).collect();
    for row in rows {
        // `n` counts the lists from 1.
        let Some(page) = usize::try_from(row.n - 1)
            .ok()
            .and_then(|index| pages.get_mut(index))
        else {
            return Err(RepositoryError::Internal(
                format!("a row of list {} of {}", row.n, batch.len()).into(),
            ));
        };
        let Ok(events) = page else {
            continue;
        };
        let row = EventRow {
            id: row.id,
            user_id: row.user_id,
            title: row.title,
            description: row.description,
            start_at: row.start_at,
            end_at: row.end_at,
            overlap_policy: row.overlap_policy,
            remind_at: row.remind_at,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        };
        match row.into_event() {
            Ok(event) => events.push(event),
            Err(error) => *page = Err(error),
        }
    }
    // In (start, id) order, as each page's scan returned it, whatever order the join kept.
    for events in pages.iter_mut().flatten() {
        events.sort_by_key(|event| (event.span().start(), event.id().as_uuid()));
    }
    Ok(pages)
}
