use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::instruments::{self, seconds};
use crate::domain::{Notification, ReminderKey};
use crate::ports::{Clock, EventRepository, ReminderQueue, RepositoryError};

/// How the scheduler paces itself.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Time between ticks when nothing is left due. A tick that claims a full batch is followed
    /// at once by the next.
    pub tick_interval: Duration,
    /// Most reminders claimed (and published) by one tick.
    pub batch_size: u32,
    /// Most ticks under way at once while reminders are due in full batches: with 2, the
    /// next batch is claimed while the last is published and confirmed.
    pub batches_in_flight: usize,
    /// How far ahead of their due instant reminders are claimed and published: senders hold
    /// what arrives early and deliver it when it falls due, so that many reminders due at one
    /// instant (every meeting at nine) are in the senders' hands by then instead of queueing
    /// behind each other. Zero publishes each reminder only once it is due. What is published
    /// ahead stays unacknowledged in a sender until it falls due, so this times the peak rate
    /// of reminders is what the senders hold (see `SenderConfig::max_held`). A negative one
    /// counts as zero; keep it at most [`Self::MAX_LOOK_AHEAD`].
    pub look_ahead: TimeDelta,
    /// How long a claim holds a reminder: after it, a reminder claimed but never confirmed is
    /// claimed again (by this or another scheduler).
    pub lease: TimeDelta,
    /// Events that ended longer ago than this are deleted.
    pub retention: TimeDelta,
    /// Time between cleanups.
    pub cleanup_interval: Duration,
    /// Most events deleted by one statement of a cleanup.
    pub cleanup_batch_size: u32,
    /// How long a scheduler's claim to clean up lasts; renewed between batches. Of several
    /// schedulers only the claim's holder cleans up.
    pub cleanup_lease: TimeDelta,
}

impl SchedulerConfig {
    /// The longest look-ahead a scheduler should be given: what it publishes ahead waits
    /// unacknowledged in a sender until due, and RabbitMQ closes the channel of a consumer
    /// holding a message unacknowledged for longer than its `consumer_timeout` (30 minutes by
    /// default).
    pub const MAX_LOOK_AHEAD: TimeDelta = TimeDelta::minutes(10);
}

impl Default for SchedulerConfig {
    /// Ticks every second in batches of 500, two under way at once while batches come full,
    /// publishing reminders up to 30 s ahead of their due instant, with a 30 s lease; keeps
    /// events 365 days after they end, cleaning up hourly in batches of 1,000 under a 5-minute
    /// claim.
    fn default() -> Self {
        Self {
            tick_interval: Duration::from_secs(1),
            batch_size: 500,
            batches_in_flight: 2,
            look_ahead: TimeDelta::seconds(30),
            lease: TimeDelta::seconds(30),
            retention: TimeDelta::days(365),
            cleanup_interval: Duration::from_secs(3600),
            cleanup_batch_size: 1_000,
            cleanup_lease: TimeDelta::minutes(5),
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Reminders claimed.
    pub claimed: usize,
    /// Reminders the queue confirmed, now marked sent.
    pub published: usize,
    /// Reminders the queue did not confirm, released for the next tick.
    pub failed: usize,
    /// Reminders not sent because their event had already started.
    pub skipped_late: usize,
    /// For each published reminder, how long after its due instant it was confirmed (negative
    /// when it was published ahead of it).
    pub lags: Vec<TimeDelta>,
}

/// Why a tick or a cleanup failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The event store failed; the tick's claims run out with their lease.
    #[error("event store: {0}")]
    Repository(#[from] RepositoryError),
}

/// Finds due reminders and publishes them; deletes old events.
///
/// At least once: a reminder is marked sent only after the queue confirmed it, so a crash
/// anywhere means it is published again after its lease, never lost. Several schedulers may run
/// at once: claims are exclusive while their lease runs.
#[derive(Clone)]
pub struct ReminderScheduler {
    events: Arc<dyn EventRepository>,
    queue: Arc<dyn ReminderQueue>,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
    /// Names this scheduler in cleanup claims.
    holder: String,
}

impl std::fmt::Debug for ReminderScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReminderScheduler")
            .field("holder", &self.holder)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ReminderScheduler {
    /// A scheduler over an event store, a queue and a clock.
    pub fn new(
        events: Arc<dyn EventRepository>,
        queue: Arc<dyn ReminderQueue>,
        clock: Arc<dyn Clock>,
        config: SchedulerConfig,
    ) -> Self {
        Self {
            events,
            queue,
            clock,
            config,
            holder: format!("scheduler-{}", uuid::Uuid::new_v4()),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// One tick: claim the reminders due within the look-ahead, skip those whose event already
    /// started, publish the rest, mark the confirmed ones sent and release the others.
    #[tracing::instrument(name = "scheduler_tick", skip_all)]
    pub async fn tick(&self) -> Result<TickReport, SchedulerError> {
        let now = self.clock.now();
        let claimed = self
            .events
            .claim_due(
                now,
                self.config.look_ahead.max(TimeDelta::zero()),
                self.config.lease,
                self.config.batch_size,
            )
            .await?;
        let mut report = TickReport {
            claimed: claimed.len(),
            ..TickReport::default()
        };
        if claimed.is_empty() {
            return Ok(report);
        }
        metrics::counter!(instruments::REMINDERS_CLAIMED).increment(claimed.len() as u64);
        let (late, due): (Vec<Notification>, Vec<Notification>) = claimed
            .into_iter()
            .partition(|notification| notification.event_start() <= now);
        if !late.is_empty() {
            for notification in &late {
                warn!(
                    event_id = %notification.event_id(),
                    remind_at = %notification.remind_at(),
                    event_start = %notification.event_start(),
                    "reminder skipped: its event has already started"
                );
            }
            let keys: Vec<ReminderKey> = late.iter().map(Notification::key).collect();
            self.events.mark_skipped(&keys).await?;
            report.skipped_late = late.len();
            metrics::counter!(instruments::REMINDERS_SKIPPED_LATE).increment(late.len() as u64);
        }
        if due.is_empty() {
            return Ok(report);
        }
        metrics::counter!(instruments::REMINDERS_PUBLISHED).increment(due.len() as u64);
        let results = self.queue.publish(&due).await;
        let confirmed_at = self.clock.now();
        let mut confirmed = Vec::with_capacity(due.len());
        let mut failed = Vec::new();
        for (notification, result) in due.iter().zip(results) {
            match result {
                Ok(()) => {
                    report.lags.push(confirmed_at - notification.remind_at());
                    confirmed.push(notification.key());
                }
                Err(error) => {
                    warn!(event_id = %notification.event_id(), %error, "reminder not confirmed by the queue; will retry");
                    failed.push(notification.key());
                }
            }
        }
        // A published reminder the queue did not answer for counts as failed: it is released
        // and published again, and the sender deduplicates.
        failed.extend(
            due.iter()
                .skip(confirmed.len() + failed.len())
                .map(Notification::key),
        );
        report.published = confirmed.len();
        report.failed = failed.len();
        metrics::counter!(instruments::REMINDERS_CONFIRMED).increment(confirmed.len() as u64);
        metrics::counter!(instruments::REMINDERS_FAILED).increment(failed.len() as u64);
        let lag = metrics::histogram!(instruments::REMINDER_PUBLISH_LAG);
        for delta in &report.lags {
            // Confirmed ahead of its due instant: not late at all.
            lag.record(seconds((*delta).max(TimeDelta::zero())));
        }
        if !failed.is_empty()
            && let Err(error) = self.events.release(&failed).await
        {
            warn!(%error, count = failed.len(), "could not release unpublished reminders; their lease will run out");
        }
        if !confirmed.is_empty() {
            self.events.mark_sent(&confirmed).await?;
        }
        info!(
            claimed = report.claimed,
            published = report.published,
            failed = report.failed,
            skipped_late = report.skipped_late,
            "scheduler tick"
        );
        Ok(report)
    }

    /// Claims the cleanup (or renews this scheduler's claim); whether it holds it now.
    async fn claim_cleanup(&self) -> Result<bool, SchedulerError> {
        let now = self.clock.now();
        Ok(self
            .events
            .claim_cleanup(&self.holder, now, now + self.config.cleanup_lease)
            .await?)
    }

    /// Deletes, in batches, every event that ended more than the retention ago, if this
    /// scheduler holds the cleanup claim (it claims it first, and renews it between batches).
    /// Stops early, between batches, when `shutdown` is cancelled or the claim is lost.
    #[tracing::instrument(name = "cleanup", skip_all, fields(holder = %self.holder))]
    pub async fn cleanup(&self, shutdown: &CancellationToken) -> Result<u64, SchedulerError> {
        if !self.claim_cleanup().await? {
            debug!("another scheduler holds the cleanup claim");
            return Ok(0);
        }
        let cutoff = self.clock.now() - self.config.retention;
        let mut deleted = 0;
        loop {
            let batch = self
                .events
                .delete_ended_before(cutoff, self.config.cleanup_batch_size)
                .await?;
            deleted += batch;
            if batch < u64::from(self.config.cleanup_batch_size) || shutdown.is_cancelled() {
                break;
            }
            if !self.claim_cleanup().await? {
                warn!("the cleanup claim passed to another scheduler; stopping");
                break;
            }
        }
        metrics::counter!(instruments::EVENTS_CLEANED_UP).increment(deleted);
        info!(deleted, %cutoff, "cleanup finished");
        Ok(deleted)
    }

    /// Ticks until `shutdown` is cancelled, and cleans up every cleanup interval (the first
    /// cleanup at start). A tick under way when the token is cancelled finishes first.
    pub async fn run(&self, shutdown: CancellationToken) {
        info!(config = ?self.config, "reminder scheduler started");
        tokio::join!(self.run_ticks(&shutdown), self.run_cleanups(&shutdown));
        info!("reminder scheduler stopped");
    }

    /// Ticks every interval; while reminders come in full batches, keeps
    /// [`SchedulerConfig::batches_in_flight`] ticks under way at once, so that claiming the
    /// next batch overlaps publishing the last (claims never overlap: each takes reminders no
    /// other holds). Ticks under way when `shutdown` is cancelled finish first.
    async fn run_ticks(&self, shutdown: &CancellationToken) {
        let mut in_flight = FuturesUnordered::new();
        // Whether the last tick to end claimed a full batch: more are probably due.
        let mut busy = false;
        let mut next = Instant::now();
        loop {
            let room = if busy {
                self.config.batches_in_flight.max(1)
            } else {
                1
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some((started, ticked)) = in_flight.next(), if !in_flight.is_empty() => {
                    let (started, ticked): (Instant, Result<TickReport, SchedulerError>) =
                        (started, ticked);
                    match ticked {
                        Ok(report) if report.claimed >= self.config.batch_size as usize => {
                            busy = true;
                            next = Instant::now();
                        }
                        Ok(_) => {
                            busy = false;
                            next = started + self.config.tick_interval;
                        }
                        Err(error) => {
                            warn!(%error, "scheduler tick failed");
                            busy = false;
                            next = started + self.config.tick_interval;
                        }
                    }
                }
                () = sleep_until(next), if in_flight.len() < room => {
                    let started = Instant::now();
                    in_flight.push(self.tick().map(move |ticked| (started, ticked)));
                    next = if busy {
                        started
                    } else {
                        started + self.config.tick_interval
                    };
                }
            }
        }
        while let Some((_, ticked)) = in_flight.next().await {
            if let Err(error) = ticked {
                warn!(%error, "scheduler tick failed");
            }
        }
    }

    async fn run_cleanups(&self, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(error) = self.cleanup(shutdown).await {
                warn!(%error, "cleanup failed");
            }
            debug!(interval = ?self.config.cleanup_interval, "next cleanup scheduled");
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(self.config.cleanup_interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Event;
    use crate::ports::{MockClock, MockEventRepository, MockReminderQueue, QueueError};
    use crate::testkit::fixtures::{at, details, event, user, with_reminder};
    use chrono::{DateTime, Utc};
    use std::sync::Mutex;

    fn now() -> DateTime<Utc> {
        at("2030-01-01T12:00:00Z")
    }

    /// A reminder due `lead` minutes before an event starting `starts_in` minutes from now.
    fn reminder(starts_in: i64, lead: i64) -> Notification {
        let e: Event = event(
            &user("ann"),
            with_reminder(
                details("Call", now() + TimeDelta::minutes(starts_in), 30),
                lead,
            ),
            now(),
        );
        e.notification().unwrap()
    }

    fn scheduler(repo: MockEventRepository, queue: MockReminderQueue) -> ReminderScheduler {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        ReminderScheduler::new(
            Arc::new(repo),
            Arc::new(queue),
            Arc::new(clock),
            SchedulerConfig {
                batch_size: 3,
                ..SchedulerConfig::default()
            },
        )
    }

    fn keys(notifications: &[Notification]) -> Vec<ReminderKey> {
        notifications.iter().map(Notification::key).collect()
    }

    #[tokio::test]
    async fn a_quiet_tick_publishes_nothing() {
        let mut repo = MockEventRepository::new();
        repo.expect_claim_due()
            .withf(|at, ahead, lease, limit| {
                *at == now()
                    && *ahead == TimeDelta::seconds(30)
                    && *lease == TimeDelta::seconds(30)
                    && *limit == 3
            })
            .times(1)
            .returning(|_, _, _, _| Ok(Vec::new()));
        let mut queue = MockReminderQueue::new();
        queue.expect_publish().never();
        let report = scheduler(repo, queue).tick().await.unwrap();
        assert_eq!(report, TickReport::default());
    }

    #[tokio::test]
    async fn confirmed_reminders_are_marked_sent() {
        let due = vec![reminder(10, 15), reminder(5, 5)];
        let mut repo = MockEventRepository::new();
        let claimed = due.clone();
        repo.expect_claim_due()
            .returning(move |_, _, _, _| Ok(claimed.clone()));
        let expected = keys(&due);
        repo.expect_mark_sent()
            .withf(move |marked| marked == expected.as_slice())
            .times(1)
            .returning(|marked| Ok(marked.len() as u64));
        repo.expect_release().never();
        let mut queue = MockReminderQueue::new();
        let published = due.clone();
        queue
            .expect_publish()
            .withf(move |batch| batch == published.as_slice())
            .times(1)
            .returning(|batch| batch.iter().map(|_| Ok(())).collect());
        let report = scheduler(repo, queue).tick().await.unwrap();
        assert_eq!((report.claimed, report.published, report.failed), (2, 2, 0));
        assert_eq!(report.lags, vec![TimeDelta::minutes(5), TimeDelta::zero()]);
    }

    #[tokio::test]
    async fn reminders_within_the_look_ahead_are_published_before_they_fall_due() {
        // Due in 20 s: its event starts in 10 min 20 s, far from started.
        let ahead = reminder_of_event_starting_in(TimeDelta::seconds(620));
        let mut repo = MockEventRepository::new();
        let claimed = vec![ahead.clone()];
        repo.expect_claim_due()
            .withf(|at, look_ahead, _, _| *at == now() && *look_ahead == TimeDelta::seconds(30))
            .times(1)
            .returning(move |_, _, _, _| Ok(claimed.clone()));
        repo.expect_mark_skipped().never();
        repo.expect_mark_sent()
            .times(1)
            .returning(|marked| Ok(marked.len() as u64));
        let mut queue = MockReminderQueue::new();
        queue
            .expect_publish()
            .times(1)
            .returning(|batch| batch.iter().map(|_| Ok(())).collect());
        let report = scheduler(repo, queue).tick().await.unwrap();
        assert_eq!((report.published, report.skipped_late), (1, 0));
        assert_eq!(
            report.lags,
            vec![-TimeDelta::seconds(20)],
            "confirmed 20 s before it falls due"
        );
    }

    /// A reminder 10 minutes before an event starting `starts_in` from now.
    fn reminder_of_event_starting_in(starts_in: TimeDelta) -> Notification {
        let e: Event = event(
            &user("ann"),
            with_reminder(details("Call", now() + starts_in, 30), 10),
            now(),
        );
        e.notification().unwrap()
    }

    #[tokio::test]
    async fn unconfirmed_reminders_are_released_not_marked() {
        let due = vec![reminder(10, 15), reminder(20, 30), reminder(30, 45)];
        let mut repo = MockEventRepository::new();
        let claimed = due.clone();
        repo.expect_claim_due()
            .returning(move |_, _, _, _| Ok(claimed.clone()));
        let sent = vec![due[0].key(), due[2].key()];
        repo.expect_mark_sent()
            .withf(move |marked| marked == sent.as_slice())
            .times(1)
            .returning(|marked| Ok(marked.len() as u64));
        let released = vec![due[1].key()];
        repo.expect_release()
            .withf(move |keys| keys == released.as_slice())
            .times(1)
            .returning(|keys| Ok(keys.len() as u64));
        let mut queue = MockReminderQueue::new();
        queue.expect_publish().returning(|_| {
            vec![
                Ok(()),
                Err(QueueError::Refused {
                    reason: "NACK".into(),
                }),
                Ok(()),
            ]
        });
        let report = scheduler(repo, queue).tick().await.unwrap();
        assert_eq!((report.published, report.failed), (2, 1));
    }

    #[tokio::test]
    async fn notifications_the_queue_did_not_answer_for_count_as_failed() {
        let due = vec![reminder(10, 15), reminder(20, 30)];
        let mut repo = MockEventRepository::new();
        let claimed = due.clone();
        repo.expect_claim_due()
            .returning(move |_, _, _, _| Ok(claimed.clone()));
        repo.expect_mark_sent()
            .times(1)
            .returning(|m| Ok(m.len() as u64));
        let unanswered = vec![due[1].key()];
        repo.expect_release()
            .withf(move |keys| keys == unanswered.as_slice())
            .times(1)
            .returning(|k| Ok(k.len() as u64));
        let mut queue = MockReminderQueue::new();
        queue.expect_publish().returning(|_| vec![Ok(())]);
        let report = scheduler(repo, queue).tick().await.unwrap();
        assert_eq!((report.published, report.failed), (1, 1));
    }

    #[tokio::test]
    async fn reminders_of_started_events_are_skipped_and_counted() {
        let started = reminder(0, 15);
        let long_started = reminder(-30, 15);
        let upcoming = reminder(10, 15);
        let claimed = vec![started.clone(), upcoming.clone(), long_started.clone()];
        let mut repo = MockEventRepository::new();
        repo.expect_claim_due()
            .returning(move |_, _, _, _| Ok(claimed.clone()));
        let skipped = vec![started.key(), long_started.key()];
        repo.expect_mark_skipped()
            .withf(move |keys| keys == skipped.as_slice())
            .times(1)
            .returning(|k| Ok(k.len() as u64));
        repo.expect_mark_sent()
            .times(1)
            .returning(|m| Ok(m.len() as u64));
        let mut queue = MockReminderQueue::new();
        let only_upcoming = vec![upcoming];
        queue
            .expect_publish()
            .withf(move |batch| batch == only_upcoming.as_slice())
            .times(1)
            .returning(|batch| batch.iter().map(|_| Ok(())).collect());
        let report = scheduler(repo, queue).tick().await.unwrap();
        assert_eq!((report.skipped_late, report.published), (2, 1));
    }

    #[tokio::test]
    async fn store_failures_fail_the_tick() {
        let mut repo = MockEventRepository::new();
        repo.expect_claim_due()
            .times(1)
            .returning(|_, _, _, _| Err(RepositoryError::Unavailable("down".into())));
        let mut queue = MockReminderQueue::new();
        queue.expect_publish().never();
        assert!(matches!(
            scheduler(repo, queue).tick().await,
            Err(SchedulerError::Repository(RepositoryError::Unavailable(_)))
        ));

        let due = vec![reminder(10, 15)];
        let mut repo = MockEventRepository::new();
        repo.expect_claim_due()
            .returning(move |_, _, _, _| Ok(due.clone()));
        repo.expect_mark_sent()
            .returning(|_| Err(RepositoryError::Unavailable("down".into())));
        let mut queue = MockReminderQueue::new();
        queue
            .expect_publish()
            .returning(|b| b.iter().map(|_| Ok(())).collect());
        assert!(
            scheduler(repo, queue).tick().await.is_err(),
            "a confirmed reminder that cannot be marked is reported (its lease will run out)"
        );
    }

    #[tokio::test]
    async fn a_failed_release_leaves_it_to_the_lease() {
        let due = vec![reminder(10, 15)];
        let mut repo = MockEventRepository::new();
        repo.expect_claim_due()
            .returning(move |_, _, _, _| Ok(due.clone()));
        repo.expect_release()
            .times(1)
            .returning(|_| Err(RepositoryError::Unavailable("down".into())));
        let mut queue = MockReminderQueue::new();
        queue
            .expect_publish()
            .returning(|_| vec![Err(QueueError::Unconfirmed { waited_ms: 5_000 })]);
        let report = scheduler(repo, queue).tick().await.unwrap();
        assert_eq!(report.failed, 1);
    }

    #[tokio::test]
    async fn cleanup_deletes_in_batches_until_a_short_one() {
        let mut repo = MockEventRepository::new();
        repo.expect_claim_cleanup()
            .withf(|holder, at, until| {
                holder.starts_with("scheduler-")
                    && *at == now()
                    && *until == now() + TimeDelta::minutes(5)
            })
            .times(3)
            .returning(|_, _, _| Ok(true));
        let mut batches = vec![3, 3, 1].into_iter();
        repo.expect_delete_ended_before()
            .withf(|cutoff, limit| *cutoff == now() - TimeDelta::days(365) && *limit == 3)
            .times(3)
            .returning(move |_, _| Ok(batches.next().unwrap()));
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        let scheduler = ReminderScheduler::new(
            Arc::new(repo),
            Arc::new(MockReminderQueue::new()),
            Arc::new(clock),
            SchedulerConfig {
                cleanup_batch_size: 3,
                ..SchedulerConfig::default()
            },
        );
        assert_eq!(
            scheduler.cleanup(&CancellationToken::new()).await.unwrap(),
            7
        );
    }

    #[tokio::test]
    async fn cleanup_is_left_to_the_claim_holder() {
        let mut repo = MockEventRepository::new();
        repo.expect_claim_cleanup()
            .times(1)
            .returning(|_, _, _| Ok(false));
        repo.expect_delete_ended_before().never();
        let scheduler = scheduler(repo, MockReminderQueue::new());
        assert_eq!(
            scheduler.cleanup(&CancellationToken::new()).await.unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn cleanup_stops_when_the_claim_is_lost() {
        let mut repo = MockEventRepository::new();
        let mut claims = vec![true, false].into_iter();
        repo.expect_claim_cleanup()
            .times(2)
            .returning(move |_, _, _| Ok(claims.next().unwrap()));
        repo.expect_delete_ended_before()
            .times(1)
            .returning(|_, limit| Ok(u64::from(limit)));
        let scheduler = scheduler(repo, MockReminderQueue::new());
        assert_eq!(
            scheduler.cleanup(&CancellationToken::new()).await.unwrap(),
            1_000
        );
    }

    #[tokio::test(start_paused = true)]
    async fn run_ticks_every_interval_until_shutdown() {
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let mut repo = MockEventRepository::new();
        let seen = ticks.clone();
        repo.expect_claim_due().returning(move |_, _, _, _| {
            seen.lock().unwrap().push(Instant::now());
            Ok(Vec::new())
        });
        repo.expect_claim_cleanup().returning(|_, _, _| Ok(true));
        repo.expect_delete_ended_before()
            .times(1)
            .returning(|_, _| Ok(0));
        let scheduler = scheduler(repo, MockReminderQueue::new());
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        let running = tokio::spawn({
            let (scheduler, shutdown) = (scheduler.clone(), shutdown.clone());
            async move { scheduler.run(shutdown).await }
        });
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        shutdown.cancel();
        running.await.unwrap();
        let offsets: Vec<u64> = ticks
            .lock()
            .unwrap()
            .iter()
            .map(|t| (*t - started).as_secs())
            .collect();
        assert_eq!(
            offsets,
            vec![0, 1, 2, 3],
            "one tick a second, none after shutdown"
        );
    }

    /// A queue that takes 100 ms to confirm a batch.
    struct SlowQueue;

    #[async_trait::async_trait]
    impl ReminderQueue for SlowQueue {
        async fn publish(
            &self,
            notifications: &[Notification],
        ) -> Vec<Result<(), crate::ports::QueueError>> {
            tokio::time::sleep(Duration::from_millis(100)).await;
            notifications.iter().map(|_| Ok(())).collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn while_batches_come_full_the_next_claim_overlaps_the_last_publish() {
        let claims = Arc::new(Mutex::new(Vec::new()));
        let full = vec![reminder(10, 15), reminder(11, 15), reminder(12, 15)];
        let mut answers = vec![full.clone(), full.clone(), full].into_iter();
        let mut repo = MockEventRepository::new();
        let seen = claims.clone();
        repo.expect_claim_due().returning(move |_, _, _, _| {
            seen.lock().unwrap().push(Instant::now());
            Ok(answers.next().unwrap_or_default())
        });
        repo.expect_mark_sent().returning(|m| Ok(m.len() as u64));
        repo.expect_claim_cleanup().returning(|_, _, _| Ok(true));
        repo.expect_delete_ended_before().returning(|_, _| Ok(0));
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        let scheduler = ReminderScheduler::new(
            Arc::new(repo),
            Arc::new(SlowQueue),
            Arc::new(clock),
            SchedulerConfig {
                batch_size: 3,
                ..SchedulerConfig::default()
            },
        );
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        let running = tokio::spawn({
            let (scheduler, shutdown) = (scheduler.clone(), shutdown.clone());
            async move { scheduler.run(shutdown).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        shutdown.cancel();
        running.await.unwrap();
        let offsets: Vec<u128> = claims
            .lock()
            .unwrap()
            .iter()
            .map(|t| (*t - started).as_millis())
            .collect();
        assert_eq!(
            offsets[..3],
            [0, 100, 100],
            "once a batch came full, two ticks run at once: {offsets:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_followed_at_once_by_the_next_tick() {
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let full = vec![reminder(10, 15), reminder(11, 15), reminder(12, 15)];
        let mut answers = vec![full.clone(), Vec::new()].into_iter();
        let mut repo = MockEventRepository::new();
        let seen = ticks.clone();
        repo.expect_claim_due().returning(move |_, _, _, _| {
            seen.lock().unwrap().push(Instant::now());
            Ok(answers.next().unwrap_or_default())
        });
        repo.expect_mark_sent().returning(|m| Ok(m.len() as u64));
        repo.expect_claim_cleanup().returning(|_, _, _| Ok(true));
        repo.expect_delete_ended_before().returning(|_, _| Ok(0));
        let mut queue = MockReminderQueue::new();
        queue
            .expect_publish()
            .returning(|b| b.iter().map(|_| Ok(())).collect());
        let scheduler = scheduler(repo, queue);
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        let running = tokio::spawn({
            let (scheduler, shutdown) = (scheduler.clone(), shutdown.clone());
            async move { scheduler.run(shutdown).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        shutdown.cancel();
        running.await.unwrap();
        let offsets: Vec<Duration> = ticks.lock().unwrap().iter().map(|t| *t - started).collect();
        assert_eq!(offsets, vec![Duration::ZERO, Duration::ZERO]);
    }
}
