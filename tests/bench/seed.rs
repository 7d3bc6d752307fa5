//! Fast seeding with `COPY ... FROM STDIN`, several streams at once: the calendar the `day` and
//! `mixed` scenarios read ([`seed_calendar`]), and the reminders that fall due together for the
//! `reminders` scenario ([`seed_reminders`]).
//!
//! Every row is one the service could have written: titles, descriptions, spans and reminder
//! leads within calendar-core's limits, version 1, `REJECT` events of one user never
//! overlapping (each user has at most four events a day, in two-hour slots from 08:00, each
//! lasting at most an hour and starting in the slot's first hour). [`verify_calendar`] reads a
//! sample back through the PostgreSQL adapter, which validates every row it reads.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use calendar_adapters::postgres::{PgPool, PostgresEventRepository};
use calendar_core::{EventRepository as _, TimeRange, UserId};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use crate::scenario::Dataset;

/// The columns every seeded row sets (`span` is generated; the lease is empty).
const COPY_EVENTS: &str = "COPY events (id, user_id, title, description, start_at, end_at, \
    overlap_policy, version, created_at, updated_at, remind_at, reminder_state) FROM STDIN";

/// Bytes of rows sent to the server at once.
const CHUNK_BYTES: usize = 512 * 1024;

/// Events a user has at most on one day: one per two-hour slot from 08:00.
pub(crate) const SLOTS_PER_DAY: u32 = 4;

/// Titles of seeded events.
const TITLES: [&str; 8] = [
    "Standup",
    "1:1 with Ann",
    "Design review",
    "Lunch",
    "Planning",
    "Customer call",
    "Dentist",
    "Focus time",
];

/// How long seeding took.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SeedReport {
    pub(crate) rows: u64,
    pub(crate) seconds: f64,
    pub(crate) rows_per_second: f64,
}

/// One `events` row.
struct Row<'a> {
    id: Uuid,
    user: u32,
    title: &'a str,
    description: Option<&'a str>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    reject: bool,
    created: DateTime<Utc>,
    remind_at: Option<DateTime<Utc>>,
}

/// `instant` as PostgreSQL reads a `timestamptz`, to the microsecond.
fn write_instant(out: &mut String, instant: DateTime<Utc>) {
    let _ = write!(out, "{}", instant.format("%Y-%m-%d %H:%M:%S%.6f+00"));
}

/// `text` escaped for COPY's text format.
fn write_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

impl Row<'_> {
    /// Appends the row in COPY's text format.
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{}\t{}\t", self.id, self.user);
        write_text(out, self.title);
        out.push('\t');
        match self.description {
            Some(description) => write_text(out, description),
            None => out.push_str("\\N"),
        }
        out.push('\t');
        write_instant(out, self.start);
        out.push('\t');
        write_instant(out, self.end);
        out.push_str(if self.reject {
            "\treject\t1\t"
        } else {
            "\tallow\t1\t"
        });
        write_instant(out, self.created);
        out.push('\t');
        write_instant(out, self.created);
        out.push('\t');
        match self.remind_at {
            Some(remind_at) => {
                write_instant(out, remind_at);
                out.push_str("\tpending\n");
            }
            None => out.push_str("\\N\t\\N\n"),
        }
    }
}

/// The rows of one stream: `rows(out, i)` appends the `i`-th row of the stream.
async fn copy_stream(
    pool: &PgPool,
    count: u64,
    mut rows: impl FnMut(&mut String, u64),
) -> anyhow::Result<u64> {
    let mut connection = pool.acquire().await.context("a database connection")?;
    let mut copy = connection
        .copy_in_raw(COPY_EVENTS)
        .await
        .context("starting COPY into events")?;
    let mut buffer = String::with_capacity(CHUNK_BYTES + 4096);
    for i in 0..count {
        rows(&mut buffer, i);
        if buffer.len() >= CHUNK_BYTES {
            copy.send(buffer.as_bytes()).await.context("sending rows")?;
            buffer.clear();
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer.as_bytes()).await.context("sending rows")?;
    }
    copy.finish().await.context("finishing COPY into events")
}

/// Runs `streams` COPY streams at once, stream `s` writing the rows `rows(s)` makes, `count(s)`
/// of them; how many rows went in, and how fast.
async fn copy_streams<R>(
    pool: &PgPool,
    streams: u32,
    count: impl Fn(u32) -> u64,
    rows: impl Fn(u32) -> R,
) -> anyhow::Result<SeedReport>
where
    R: FnMut(&mut String, u64) + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for stream in 0..streams.max(1) {
        let pool = pool.clone();
        let count = count(stream);
        let rows = rows(stream);
        tasks.spawn(async move { copy_stream(&pool, count, rows).await });
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined.context("a seeding task failed")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(SeedReport {
        rows: total,
        seconds,
        rows_per_second: total as f64 / seconds.max(f64::EPSILON),
    })
}

/// The `k`-th event of user `user` in `dataset` (`k` below the dataset's events per user).
fn calendar_row(
    dataset: &Dataset,
    rng: &mut fastrand::Rng,
    user: u32,
    k: u32,
    created: DateTime<Utc>,
    out: &mut String,
) {
    const DESCRIPTION: &str = "Agenda: what happened since last time, what is next, and \
        anything that blocks us. Notes go to the shared folder.";
    let day = k % dataset.days;
    let slot = k / dataset.days;
    let start = dataset.start()
        + TimeDelta::days(i64::from(day))
        + TimeDelta::hours(8 + 2 * i64::from(slot))
        + TimeDelta::minutes(rng.i64(0..60));
    let end = start + TimeDelta::minutes(15 * rng.i64(1..=4));
    Row {
        id: Uuid::now_v7(),
        user,
        title: TITLES[rng.usize(..TITLES.len())],
        description: (rng.u8(..10) < 3).then_some(DESCRIPTION),
        start,
        end,
        reject: rng.u8(..10) < 8,
        created,
        remind_at: rng.bool().then(|| start - TimeDelta::minutes(10)),
    }
    .write(out);
}

/// Seeds `dataset`: its users' events (`events_per_user` each), over `streams` COPY streams.
pub(crate) async fn seed_calendar(
    pool: &PgPool,
    dataset: Dataset,
    events_per_user: u32,
    streams: u32,
) -> anyhow::Result<SeedReport> {
    ensure!(
        events_per_user <= dataset.days * SLOTS_PER_DAY,
        "{events_per_user} events per user do not fit in {} days of {SLOTS_PER_DAY} slots",
        dataset.days
    );
    let streams = streams.clamp(1, dataset.users.max(1));
    let users_per_stream = dataset.users.div_ceil(streams);
    let first_user = move |stream: u32| 1 + stream * users_per_stream;
    let last_user =
        move |stream: u32| (first_user(stream) + users_per_stream - 1).min(dataset.users);
    let created = Utc::now();
    copy_streams(
        pool,
        streams,
        |stream| u64::from(last_user(stream) + 1 - first_user(stream)) * u64::from(events_per_user),
        |stream| {
            let mut rng = fastrand::Rng::with_seed(u64::from(stream));
            move |out: &mut String, i: u64| {
                let user = first_user(stream)
                    + u32::try_from(i / u64::from(events_per_user)).unwrap_or(u32::MAX);
                let k = u32::try_from(i % u64::from(events_per_user)).unwrap_or(0);
                calendar_row(&dataset, &mut rng, user, k, created, out);
            }
        },
    )
    .await
}

/// Reads the whole span of the dataset of `sample` random users back through the PostgreSQL
/// adapter, which validates every row: each must have `events_per_user` valid events.
pub(crate) async fn verify_calendar(
    pool: &PgPool,
    dataset: Dataset,
    events_per_user: u32,
    sample: u32,
) -> anyhow::Result<()> {
    let repository = PostgresEventRepository::new(pool.clone());
    let range = TimeRange::new(
        dataset.start(),
        dataset.start() + TimeDelta::days(i64::from(dataset.days)),
    )
    .context("the dataset's range")?;
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..sample {
        let user = rng.u32(1..=dataset.users.max(1));
        let owner = UserId::new(user.to_string()).context("a user id")?;
        let events = repository
            .list(&owner, range, None, events_per_user + 1)
            .await
            .with_context(|| format!("reading user {user}'s seeded events back"))?;
        ensure!(
            events.len() == events_per_user as usize,
            "user {user} has {} seeded events, not {events_per_user}",
            events.len()
        );
    }
    Ok(())
}

/// How a seeded reminder's event relates to its due instant.
pub(crate) const REMINDER_LEAD: TimeDelta = TimeDelta::minutes(10);

/// Seeds `count` events over `users` users whose reminders fall due at `due(i)` (the event
/// starting [`REMINDER_LEAD`] later, lasting 30 minutes, overlap `ALLOW`), over `streams` COPY
/// streams.
pub(crate) async fn seed_reminders(
    pool: &PgPool,
    count: u64,
    users: u32,
    streams: u32,
    due: impl Fn(u64) -> DateTime<Utc> + Clone + Send + 'static,
) -> anyhow::Result<SeedReport> {
    let streams = streams.max(1);
    let per_stream = count.div_ceil(u64::from(streams));
    let created = Utc::now();
    copy_streams(
        pool,
        streams,
        |stream| {
            count
                .saturating_sub(u64::from(stream) * per_stream)
                .min(per_stream)
        },
        |stream| {
            let due = due.clone();
            move |out: &mut String, i: u64| {
                let i = u64::from(stream) * per_stream + i;
                let remind_at = due(i);
                let start = remind_at + REMINDER_LEAD;
                Row {
                    id: Uuid::now_v7(),
                    user: 1 + u32::try_from(i % u64::from(users.max(1))).unwrap_or(0),
                    title: "Reminder benchmark",
                    description: None,
                    start,
                    end: start + TimeDelta::minutes(30),
                    reject: false,
                    created,
                    remind_at: Some(remind_at),
                }
                .write(out);
            }
        },
    )
    .await
}

/// Brings the planner's statistics and the visibility map up to date after a seed (the
/// machine may run without autovacuum), and checkpoints, so that the seed's writes are not
/// flushed during a measurement. CHECKPOINT needs a superuser (or pg_checkpoint): without, the
/// checkpointer's own schedule applies, and a warning says so.
pub(crate) async fn settle(pool: &PgPool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for statement in ["VACUUM (ANALYZE) events", "VACUUM (ANALYZE) deliveries"] {
        sqlx::raw_sql(statement)
            .execute(pool)
            .await
            .with_context(|| format!("{statement} after seeding"))?;
    }
    if let Err(error) = sqlx::raw_sql("CHECKPOINT").execute(pool).await {
        eprintln!("warning: CHECKPOINT after seeding failed ({error}); measurements may meet it");
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use calendar_core::{EventSpan, NotifyBefore, Title};
    use chrono::NaiveDate;

    use super::*;

    fn parse(field: &str) -> DateTime<Utc> {
        DateTime::parse_from_str(field, "%Y-%m-%d %H:%M:%S%.6f%#z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn a_users_seeded_events_are_valid_and_rejecting_ones_never_overlap() {
        let dataset = Dataset {
            users: 1,
            first_day: NaiveDate::from_ymd_opt(2030, 1, 7).unwrap(),
            days: 28,
        };
        let mut rng = fastrand::Rng::with_seed(1);
        let mut out = String::new();
        for k in 0..dataset.days * SLOTS_PER_DAY {
            calendar_row(&dataset, &mut rng, 1, k, Utc::now(), &mut out);
        }
        let mut rejecting: Vec<EventSpan> = Vec::new();
        for line in out.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 12, "{line}");
            Title::new(fields[2]).unwrap();
            let span = EventSpan::from_bounds(parse(fields[4]), parse(fields[5])).unwrap();
            if fields[10] != "\\N" {
                NotifyBefore::new(span.start() - parse(fields[10])).unwrap();
                assert_eq!(fields[11], "pending");
            }
            if fields[6] == "reject" {
                assert!(
                    rejecting.iter().all(|other| !other.overlaps(&span)),
                    "{line}"
                );
                rejecting.push(span);
            }
        }
        assert!(rejecting.len() > 50, "most events reject overlaps");
    }

    #[test]
    fn copy_text_is_escaped() {
        let mut out = String::new();
        write_text(&mut out, "a\tb\\c\nd");
        assert_eq!(out, "a\\tb\\\\c\\nd");
    }
}
