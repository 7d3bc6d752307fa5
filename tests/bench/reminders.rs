//! The `reminders` scenario: events whose reminders fall due (all at one instant, or spread at
//! a steady rate) are seeded straight into the database of a running scheduler and sender,
//! then the sender's own record, `deliveries.delivered_at`, says when each was delivered.
//!
//! A delivery's idempotency key is `<event id>@<due instant in µs>`, so lateness (delivery
//! minus due instant) comes from the table alone. Throughput is the reminders delivered over
//! the time from the first due instant to the last delivery.

use std::time::Duration;

use anyhow::Context as _;
use calendar_adapters::postgres::PgPool;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio::time::Instant;

use crate::seed::{self, SeedReport};

/// How a scenario's reminders fall due.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub(crate) enum Schedule {
    /// `count` reminders due at one instant.
    Burst { count: u64 },
    /// `rate` reminders a second for `seconds`, evenly spaced.
    Steady { rate: u64, seconds: u64 },
}

impl Schedule {
    /// How many reminders.
    pub(crate) fn count(&self) -> u64 {
        match *self {
            Self::Burst { count } => count,
            Self::Steady { rate, seconds } => rate * seconds,
        }
    }

    /// When the `i`-th falls due, from `first`.
    fn due(&self, first: DateTime<Utc>) -> impl Fn(u64) -> DateTime<Utc> + Clone + Send + 'static {
        let step_micros = match *self {
            Self::Burst { .. } => 0,
            Self::Steady { rate, .. } => 1_000_000 / rate.max(1),
        };
        move |i| {
            first
                + TimeDelta::microseconds(
                    i64::try_from(i.saturating_mul(step_micros)).unwrap_or(i64::MAX),
                )
        }
    }
}

/// What the sender recorded of one run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReminderReport {
    pub(crate) schedule: Schedule,
    pub(crate) seed: SeedReport,
    /// Reminders seeded.
    pub(crate) expected: u64,
    /// Reminders the sender recorded as delivered.
    pub(crate) delivered: u64,
    /// From the first due instant to the last delivery.
    pub(crate) seconds: f64,
    /// Delivered per second over that time.
    pub(crate) delivered_per_second: f64,
    /// Lateness (delivery minus due instant) percentiles, in milliseconds.
    pub(crate) lateness_p50_ms: f64,
    pub(crate) lateness_p90_ms: f64,
    pub(crate) lateness_p99_ms: f64,
    pub(crate) lateness_max_ms: f64,
    /// Notifications the sender held just before the first due instant (published ahead),
    /// when its metrics were read.
    pub(crate) held_before_due: Option<f64>,
}

/// How to run the scenario.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Owners of the seeded events.
    pub(crate) users: u32,
    /// Parallel COPY streams.
    pub(crate) streams: u32,
    /// From the start of seeding to the first due instant: seeding must end before it.
    pub(crate) lead: Duration,
    /// Longest to wait without a new delivery before giving up.
    pub(crate) stall_timeout: Duration,
}

/// Seeds `schedule`'s reminders, the first due `settings.lead` from now, and waits for the
/// sender to deliver them all (or to stall).
pub(crate) async fn run(
    pool: &PgPool,
    schedule: Schedule,
    settings: Settings,
) -> anyhow::Result<ReminderReport> {
    let expected = schedule.count();
    let lead = TimeDelta::from_std(settings.lead).context("the lead")?;
    // Whole milliseconds, as the clients of the service write them.
    let first_due = DateTime::from_timestamp_millis((Utc::now() + lead).timestamp_millis())
        .context("the first due instant")?;
    let last_due = schedule.due(first_due)(expected.saturating_sub(1));
    let seeded = seed::seed_reminders(
        pool,
        expected,
        settings.users,
        settings.streams,
        schedule.due(first_due),
    )
    .await?;
    // As after any bulk load: the statistics a production database's autovacuum would have
    // gathered by then (this machine's PostgreSQL may run without autovacuum), and the seed's
    // writes flushed before the measurement rather than during it.
    seed::settle(pool).await?;
    if Utc::now() >= first_due {
        anyhow::bail!(
            "seeding {expected} reminders (and analysing them) took {:.1} s and more, longer than \
             the lead of {:?}: the first ones were visible late. Give a longer lead \
             (--reminder-lead)",
            seeded.seconds,
            settings.lead
        );
    }
    wait_for_deliveries(pool, first_due, last_due, expected, settings.stall_timeout).await?;
    let lateness = lateness(pool, first_due, last_due).await?;
    let delivered = lateness.len() as u64;
    let last_delivery = lateness
        .iter()
        .map(|(remind_at, late)| *remind_at + *late)
        .max()
        .unwrap_or(first_due);
    let seconds = (last_delivery - first_due).as_seconds_f64();
    let mut late: Vec<i64> = lateness
        .iter()
        .map(|(_, late)| late.num_microseconds().unwrap_or(i64::MAX))
        .collect();
    late.sort_unstable();
    let ms = |quantile: f64| {
        if late.is_empty() {
            return 0.0;
        }
        let rank = ((late.len() as f64 * quantile).ceil() as usize).clamp(1, late.len());
        late[rank - 1] as f64 / 1_000.0
    };
    Ok(ReminderReport {
        schedule,
        seed: seeded,
        expected,
        delivered,
        seconds,
        delivered_per_second: delivered as f64 / seconds.max(f64::EPSILON),
        lateness_p50_ms: ms(0.50),
        lateness_p90_ms: ms(0.90),
        lateness_p99_ms: ms(0.99),
        lateness_max_ms: ms(1.0),
        held_before_due: None,
    })
}

/// Recorded deliveries of reminders due in [`first_due`, `last_due`].
async fn delivered_count(
    pool: &PgPool,
    first_due: DateTime<Utc>,
    last_due: DateTime<Utc>,
) -> anyhow::Result<u64> {
    // The key's instant after the `@` is the due instant in µs.
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE delivered_at >= $1 \
         AND split_part(idempotency_key, '@', 2)::bigint BETWEEN $2 AND $3",
    )
    .bind(first_due - TimeDelta::seconds(1))
    .bind(first_due.timestamp_micros())
    .bind(last_due.timestamp_micros())
    .fetch_one(pool)
    .await
    .context("counting deliveries")?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Waits until `expected` deliveries are recorded, or none came for `stall_timeout`.
async fn wait_for_deliveries(
    pool: &PgPool,
    first_due: DateTime<Utc>,
    last_due: DateTime<Utc>,
    expected: u64,
    stall_timeout: Duration,
) -> anyhow::Result<()> {
    let until_due = (first_due - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(until_due).await;
    let mut last = 0;
    let mut progressed = Instant::now();
    loop {
        let delivered = delivered_count(pool, first_due, last_due).await?;
        if delivered >= expected {
            return Ok(());
        }
        if delivered > last {
            last = delivered;
            progressed = Instant::now();
        } else if Utc::now() > last_due && progressed.elapsed() > stall_timeout {
            eprintln!(
                "warning: {delivered} of {expected} reminders delivered, none for {stall_timeout:?}: \
                 measuring what arrived"
            );
            return Ok(());
        }
        // Each look scans the recent deliveries: once a second keeps it out of the way.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Each delivery of a reminder due in [`first_due`, `last_due`]: its due instant and lateness.
async fn lateness(
    pool: &PgPool,
    first_due: DateTime<Utc>,
    last_due: DateTime<Utc>,
) -> anyhow::Result<Vec<(DateTime<Utc>, TimeDelta)>> {
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT idempotency_key, delivered_at FROM deliveries WHERE delivered_at >= $1 \
         AND split_part(idempotency_key, '@', 2)::bigint BETWEEN $2 AND $3",
    )
    .bind(first_due - TimeDelta::seconds(1))
    .bind(first_due.timestamp_micros())
    .bind(last_due.timestamp_micros())
    .fetch_all(pool)
    .await
    .context("reading the deliveries")?;
    rows.into_iter()
        .map(|(key, delivered_at)| {
            let due = key
                .rsplit_once('@')
                .and_then(|(_, micros)| micros.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_micros)
                .with_context(|| format!("{key} is not an idempotency key"))?;
            Ok((due, delivered_at - due))
        })
        .collect()
}
