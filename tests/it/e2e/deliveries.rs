//! The reminders a test expects, and what the senders made of them: how often each was
//! delivered (the notifier's log lines, counted per idempotency key across every sender that
//! ran, killed ones included), how many duplicates were suppressed, and how late each was
//! delivered (the sender's own record, `deliveries.delivered_at`, against the due instant).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use calendar_adapters::log::NOTIFICATION_TARGET;
use calendar_core::instruments::{
    NOTIFICATIONS_CANCELLED, NOTIFICATIONS_DEAD_LETTERED, NOTIFICATIONS_DELIVERED,
    NOTIFICATIONS_DUPLICATE, REMINDERS_CONFIRMED, REMINDERS_FAILED,
};
use calendar_core::{EventId, ReminderKey};
use calendar_grpc::mapping::{duration_to_delta, timestamp_to_datetime};
use calendar_grpc::proto::calendar::v1 as pb;
use chrono::{DateTime, TimeDelta, Utc};

use super::eventually;
use super::stack::{Stack, Worker};

/// The message of the sender's line for a notification it received again and did not deliver.
const SUPPRESSED_MESSAGE: &str = "duplicate notification suppressed";

/// One reminder a test expects delivered.
#[derive(Debug, Clone)]
pub(crate) struct Reminder {
    /// When it falls due.
    pub(crate) remind_at: DateTime<Utc>,
    /// Its idempotency key: `<event id>@<due instant in µs>`.
    pub(crate) key: String,
}

impl Reminder {
    /// The reminder of `event`, as the server returned the event.
    pub(crate) fn of(event: &pb::Event) -> Self {
        let start = timestamp_to_datetime(event.start_time.as_ref().expect("a start time"))
            .expect("a valid start time");
        let lead = duration_to_delta(event.notify_before.as_ref().expect("a reminder"))
            .expect("a valid reminder lead");
        let event_id: EventId = event.id.parse().expect("an event id");
        let remind_at = start - lead;
        Self {
            remind_at,
            key: ReminderKey {
                event_id,
                remind_at,
            }
            .idempotency_key()
            .as_str()
            .to_owned(),
        }
    }
}

/// What the senders logged, over every life of every sender.
#[derive(Debug, Default)]
pub(crate) struct Logged {
    /// Notification lines per idempotency key.
    per_key: HashMap<String, usize>,
    /// Notification lines per event.
    per_event: HashMap<String, usize>,
    /// Lines saying a duplicate was suppressed.
    pub(crate) suppressed: usize,
}

impl Logged {
    /// What `senders` have logged so far.
    pub(crate) fn by(senders: &[Worker]) -> Self {
        let mut logged = Self::default();
        for sender in senders {
            sender.process.with_lines(|lines| {
                for line in lines {
                    if line["target"] == NOTIFICATION_TARGET {
                        let field = |name: &str| line[name].as_str().unwrap_or_default().to_owned();
                        *logged.per_key.entry(field("idempotency_key")).or_default() += 1;
                        *logged.per_event.entry(field("event_id")).or_default() += 1;
                    } else if line["message"] == SUPPRESSED_MESSAGE {
                        logged.suppressed += 1;
                    }
                }
            });
        }
        logged
    }

    /// How many times the reminder with this idempotency key was delivered.
    pub(crate) fn times(&self, key: &str) -> usize {
        self.per_key.get(key).copied().unwrap_or(0)
    }

    /// How many reminders of the event `event_id` were delivered.
    pub(crate) fn of_event(&self, event_id: &str) -> usize {
        self.per_event.get(event_id).copied().unwrap_or(0)
    }

    /// How many of `reminders` were delivered at least once.
    pub(crate) fn delivered(&self, reminders: &[Reminder]) -> usize {
        reminders.iter().filter(|r| self.times(&r.key) > 0).count()
    }
}

/// Waits until every one of `reminders` has been delivered at least once, and recorded in the
/// sender's delivery log (which it writes just after delivering).
pub(crate) async fn wait_for_delivery(stack: &Stack, reminders: &[Reminder], timeout: Duration) {
    let keys: Vec<&str> = reminders.iter().map(|r| r.key.as_str()).collect();
    eventually("every reminder delivered", timeout, async || {
        let delivered = Logged::by(&stack.senders).delivered(reminders);
        if delivered < reminders.len() {
            return Err(format!("{delivered} of {} delivered", reminders.len()));
        }
        let recorded: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE idempotency_key = ANY($1)")
                .bind(&keys)
                .fetch_one(&stack.database.pool)
                .await
                .expect("the sender's delivery log");
        if recorded == i64::try_from(keys.len()).expect("a small count") {
            Ok(())
        } else {
            Err(format!("all delivered, {recorded} recorded"))
        }
    })
    .await;
}

/// Waits until nothing more will reach the senders: no reminder is pending any more (so
/// none will be published again), the schedulers confirmed at least `published` messages, and
/// the running senders have handled (delivered, suppressed or dropped as cancelled) as many
/// messages as the schedulers published. Only then are the counts per key final. Senders that were killed are
/// not counted: after a kill, use [`wait_for_delivery`] alone.
pub(crate) async fn wait_until_settled(stack: &Stack, published: usize) {
    eventually("the queue drained", Duration::from_secs(30), async || {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE reminder_state = 'pending'")
                .fetch_one(&stack.database.pool)
                .await
                .expect("the events");
        if pending > 0 {
            return Err(format!("{pending} reminders pending"));
        }
        let mut confirmed = 0.0;
        for scheduler in &stack.schedulers {
            confirmed += scheduler.metric(REMINDERS_CONFIRMED).await;
            let failed = scheduler.metric(REMINDERS_FAILED).await;
            assert!(
                failed == 0.0,
                "{} failed to publish {failed}",
                scheduler.process.name()
            );
        }
        let mut handled = 0.0;
        for sender in &stack.senders {
            handled += sender.metric(NOTIFICATIONS_DELIVERED).await
                + sender.metric(NOTIFICATIONS_DUPLICATE).await
                + sender.metric(NOTIFICATIONS_CANCELLED).await;
            let dead = sender.metric(NOTIFICATIONS_DEAD_LETTERED).await;
            assert!(
                dead == 0.0,
                "{} dead-lettered {dead}",
                sender.process.name()
            );
        }
        if confirmed >= published as f64 && handled >= confirmed {
            Ok(())
        } else {
            Err(format!(
                "{confirmed} published (of {published} expected), {handled} handled"
            ))
        }
    })
    .await;
}

/// A scenario's figures.
#[derive(Debug)]
pub(crate) struct Figures {
    /// Reminders expected.
    pub(crate) expected: usize,
    /// Of those, delivered at least once.
    pub(crate) delivered: usize,
    /// Keys of the expected reminders never delivered.
    pub(crate) lost: Vec<String>,
    /// Deliveries beyond the first of a reminder.
    pub(crate) again: usize,
    /// Notifications the senders received again and did not deliver.
    pub(crate) suppressed: usize,
    /// Deliveries of reminders the test did not expect.
    pub(crate) unexpected: usize,
    /// Delivered reminders missing from the sender's record.
    pub(crate) unrecorded: usize,
    /// How late each recorded reminder was delivered, ascending.
    pub(crate) lateness: Vec<TimeDelta>,
}

impl Figures {
    /// The figures of `reminders` from what the senders logged and recorded.
    pub(crate) async fn measure(stack: &Stack, reminders: &[Reminder]) -> Self {
        let logged = Logged::by(&stack.senders);
        let recorded: HashMap<String, DateTime<Utc>> =
            sqlx::query_as("SELECT idempotency_key, delivered_at FROM deliveries")
                .fetch_all(&stack.database.pool)
                .await
                .expect("the sender's delivery log")
                .into_iter()
                .collect();
        let mut lateness: Vec<TimeDelta> = reminders
            .iter()
            .filter_map(|r| Some(*recorded.get(&r.key)? - r.remind_at))
            .collect();
        lateness.sort();
        let expected_lines: usize = reminders.iter().map(|r| logged.times(&r.key)).sum();
        let all_lines: usize = logged.per_key.values().sum();
        let delivered = logged.delivered(reminders);
        Self {
            expected: reminders.len(),
            delivered,
            lost: reminders
                .iter()
                .filter(|r| logged.times(&r.key) == 0)
                .map(|r| r.key.clone())
                .collect(),
            again: expected_lines - delivered,
            suppressed: logged.suppressed,
            unexpected: all_lines - expected_lines,
            unrecorded: reminders
                .iter()
                .filter(|r| logged.times(&r.key) > 0 && !recorded.contains_key(&r.key))
                .count(),
            lateness,
        }
    }

    /// The `p`-th percentile of the lateness (nearest rank), 0 < p <= 100.
    pub(crate) fn lateness_percentile(&self, p: usize) -> TimeDelta {
        let rank = (self.lateness.len() * p).div_ceil(100).max(1);
        self.lateness
            .get(rank - 1)
            .copied()
            .unwrap_or(TimeDelta::zero())
    }

    /// Fails unless every expected reminder was delivered and recorded, and nothing else was
    /// delivered.
    pub(crate) fn assert_none_lost(&self) {
        assert!(self.lost.is_empty(), "{self}; lost: {:?}", self.lost);
        assert_eq!(self.unrecorded, 0, "delivered but not recorded; {self}");
        assert_eq!(self.unexpected, 0, "unexpected deliveries; {self}");
    }

    /// Fails unless every expected reminder was delivered exactly once, no duplicate even
    /// reached a sender, and nothing else was delivered.
    pub(crate) fn assert_exactly_once(&self) {
        self.assert_none_lost();
        assert_eq!(self.again, 0, "delivered more than once; {self}");
        assert_eq!(self.suppressed, 0, "published more than once; {self}");
    }

    /// Fails unless each reminder was delivered at or after its due instant, at most `bound`
    /// after.
    pub(crate) fn assert_late_at_most(&self, bound: TimeDelta) {
        let (Some(first), Some(last)) = (self.lateness.first(), self.lateness.last()) else {
            panic!("no delivery recorded; {self}");
        };
        assert!(
            *first >= TimeDelta::zero(),
            "delivered before it was due; {self}"
        );
        assert!(
            *last <= bound,
            "delivered later than {}; {self}",
            seconds(bound)
        );
    }
}

/// Seconds, to the millisecond.
fn seconds(delta: TimeDelta) -> String {
    format!("{:.3} s", delta.num_milliseconds() as f64 / 1000.0)
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} reminders: {} delivered, {} lost, {} delivered again, {} duplicates suppressed, \
             {} unexpected; lateness p50 {}, p99 {}, max {}",
            self.expected,
            self.delivered,
            self.lost.len(),
            self.again,
            self.suppressed,
            self.unexpected,
            seconds(self.lateness_percentile(50)),
            seconds(self.lateness_percentile(99)),
            seconds(self.lateness.last().copied().unwrap_or_default()),
        )
    }
}
