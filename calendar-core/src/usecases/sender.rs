use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{FutureExt as _, StreamExt as _};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};

use super::instruments::{self, seconds};
use crate::domain::{IdempotencyKey, Notification, ReminderKey};
use crate::ports::{
    Clock, Delivery, DeliveryLog, DeliveryLogError, DeliveryTag, EventRepository,
    NotificationSource, Notifier, NotifyError, RepositoryError, SourceError,
};

/// Longest [`NotificationSender::run`] keeps the acknowledgements of delivered and recorded
/// messages back while other deliveries are under way (see there).
pub const MAX_ACK_DELAY: Duration = Duration::from_secs(5);

/// How the sender handles failures and load.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Deliveries of one message after which a failing notifier sends it to the dead-letter
    /// queue instead of retrying.
    pub max_attempts: u32,
    /// Most messages being handled at once in [`NotificationSender::run`] (received, due, not
    /// yet settled; held ones apart). What is ready together is handled as one batch: checked
    /// with one question to the event store and one to the delivery log, and recorded with
    /// one write; held messages falling due are handled in batches of a quarter of this, so
    /// that several overlap. Larger batches mean fewer round trips per message; a sender
    /// killed mid-batch may have notified up to this many messages it had not yet recorded,
    /// which are then delivered again. The queue's prefetch must have room for these and the
    /// held ones: the broker hands over no more than that unacknowledged.
    pub concurrency: usize,
    /// Most messages held back at once: received before their reminder falls due (the
    /// scheduler publishes ahead, `SchedulerConfig::look_ahead`), they are delivered when it
    /// does. Held messages stay unacknowledged, so the queue's prefetch must have room for
    /// them beside `concurrency`; with this many held, the sender receives nothing more until
    /// the earliest falls due. 0 holds nothing: early messages are delivered on arrival.
    pub max_held: usize,
    /// Pause before receiving again after the queue or the delivery log failed.
    pub error_backoff: Duration,
    /// How long delivered keys are remembered for deduplication. A duplicate arrives when a
    /// reminder is published again after its lease ran out, minutes after the first.
    pub delivery_retention: chrono::TimeDelta,
    /// Time between forgetting keys older than the retention.
    pub prune_interval: Duration,
}

impl Default for SenderConfig {
    /// 5 attempts, 1,024 messages in hand and up to 100,000 held until they fall due (the
    /// queue's default prefetch is their sum), 1 s pause after a failure; delivered keys kept
    /// 7 days, pruned hourly.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            concurrency: 1_024,
            max_held: 100_000,
            error_backoff: Duration::from_secs(1),
            delivery_retention: chrono::TimeDelta::days(7),
            prune_interval: Duration::from_secs(3600),
        }
    }
}

/// What became of one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The notifier delivered it; it is recorded and acknowledged.
    Delivered,
    /// It had been delivered before; acknowledged without notifying again.
    Duplicate,
    /// Its event was deleted, or its reminder moved or removed, after it was published:
    /// acknowledged without notifying.
    Cancelled,
    /// The notifier failed; the message went back to the queue.
    Retried {
        /// The attempt that failed.
        attempt: u32,
    },
    /// Undecodable, refused by the notifier or out of attempts: moved to the dead-letter queue.
    DeadLettered {
        /// Why.
        reason: String,
    },
}

/// Why handling a message failed. The message has been returned to the queue when possible.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The queue failed (receiving or settling).
    #[error("notification source: {0}")]
    Source(#[from] SourceError),
    /// The delivery log could not say whether the notification was delivered.
    #[error("delivery log: {0}")]
    DeliveryLog(#[from] DeliveryLogError),
    /// The event store could not say whether the reminders are still wanted.
    #[error("event store: {0}")]
    Events(#[from] RepositoryError),
}

/// Delivers queued notifications when they fall due: check, deduplicate, notify, record,
/// acknowledge.
///
/// A message that arrives before its reminder falls due is held until then. Just before
/// delivering, the sender asks the event store whether each reminder is still wanted: one
/// whose event was deleted, or whose reminder moved, after it was published is dropped, and
/// the others are delivered as their events read now. A notification published twice is
/// delivered once (the delivery log remembers its idempotency key); a message that cannot be
/// decoded goes to the dead-letter queue and the sender carries on. Messages handled together
/// are one batch: one question to the event store and one to the delivery log for all of
/// them, then one write recording those delivered.
#[derive(Clone)]
pub struct NotificationSender {
    source: Arc<dyn NotificationSource>,
    deliveries: Arc<dyn DeliveryLog>,
    events: Arc<dyn EventRepository>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    config: SenderConfig,
}

impl std::fmt::Debug for NotificationSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationSender")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A decoded message of a batch, on its way through the notifier.
struct Pending {
    tag: DeliveryTag,
    attempt: u32,
    notification: Notification,
    key: IdempotencyKey,
}

/// A message of a batch after the notifier: its place in the batch, the notifier's answer and
/// when it came.
type Notified = (usize, Pending, Result<(), NotifyError>, DateTime<Utc>);

impl NotificationSender {
    /// A sender reading `source`, deduplicating with `deliveries`, checking reminders against
    /// `events`, delivering through `notifier`.
    pub fn new(
        source: Arc<dyn NotificationSource>,
        deliveries: Arc<dyn DeliveryLog>,
        events: Arc<dyn EventRepository>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        config: SenderConfig,
    ) -> Self {
        Self {
            source,
            deliveries,
            events,
            notifier,
            clock,
            config,
        }
    }

    /// Receives one message and handles it at once, due or not.
    pub async fn step(&self) -> Result<DeliveryOutcome, SenderError> {
        let delivery = self.source.receive().await?;
        self.handle(delivery).await
    }

    /// Handles one received message, settling it with exactly one of ack, retry or dead letter.
    pub async fn handle(&self, delivery: Delivery) -> Result<DeliveryOutcome, SenderError> {
        let mut outcomes = self.handle_batch(vec![delivery]).await?;
        // One message in, one outcome out.
        Ok(outcomes.pop().unwrap_or(DeliveryOutcome::Duplicate))
    }

    /// Handles received messages together, settling each with exactly one of ack, retry or
    /// dead letter: one question to the event store (which reminders are still wanted, as
    /// their events read now) and one to the delivery log for all of them, the notifier for
    /// those still wanted and not delivered before (a key twice in the batch is notified
    /// once), one write recording those delivered, then the acknowledgement of all of them.
    ///
    /// Returns the outcome of each message, in order. Every message is settled (or left to the
    /// source to deliver again) whatever happens; an error reports the first failure: then the
    /// event store or the delivery log could not be asked (every decodable message went back
    /// to the queue), or the source failed to settle one.
    pub async fn handle_batch(
        &self,
        deliveries: Vec<Delivery>,
    ) -> Result<Vec<DeliveryOutcome>, SenderError> {
        let (outcomes, acks) = self.deliver_batch(deliveries).await;
        let acknowledged = self.acknowledge(&acks).await;
        let outcomes = outcomes?;
        acknowledged?;
        Ok(outcomes)
    }

    /// [`handle_batch`](Self::handle_batch) but for the acknowledgements, which it returns
    /// (the messages delivered and recorded, duplicates and cancelled reminders) for the
    /// caller to send, beside the outcomes or the first error.
    #[tracing::instrument(name = "deliver", skip_all, fields(messages = deliveries.len()))]
    async fn deliver_batch(
        &self,
        deliveries: Vec<Delivery>,
    ) -> (Result<Vec<DeliveryOutcome>, SenderError>, Vec<DeliveryTag>) {
        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; deliveries.len()];
        let mut first_error: Option<SenderError> = None;
        let mut note = |result: Result<(), SenderError>| {
            if let Err(error) = result
                && first_error.is_none()
            {
                first_error = Some(error);
            }
        };
        let mut pending = Vec::with_capacity(deliveries.len());
        for (index, delivery) in deliveries.into_iter().enumerate() {
            match delivery.message {
                Ok(notification) => pending.push((
                    index,
                    Pending {
                        tag: delivery.tag,
                        attempt: delivery.attempt,
                        key: notification.idempotency_key(),
                        notification,
                    },
                )),
                Err(error) => {
                    let reason = format!("undecodable message: {error}");
                    note(self.dead_letter(delivery.tag, &reason).await);
                    outcomes[index] = Some(DeliveryOutcome::DeadLettered { reason });
                }
            }
        }
        if pending.is_empty() {
            return (finish(outcomes, first_error), Vec::new());
        }

        let keys: Vec<IdempotencyKey> = pending.iter().map(|(_, p)| p.key.clone()).collect();
        let reminders: Vec<ReminderKey> =
            pending.iter().map(|(_, p)| p.notification.key()).collect();
        let (current, delivered_before) = tokio::join!(
            self.events.current_reminders(&reminders),
            self.deliveries.delivered_among(&keys),
        );
        let asked = match (current, delivered_before) {
            (Ok(current), Ok(delivered)) => Ok((current, delivered)),
            (Err(error), _) => Err(SenderError::Events(error)),
            (_, Err(error)) => Err(SenderError::DeliveryLog(error)),
        };
        let (current, mut delivered_before) = match asked {
            Ok(answers) => answers,
            Err(error) => {
                for (_, message) in &pending {
                    if let Err(retry) = self.source.retry(message.tag).await {
                        warn!(tag = %message.tag, error = %retry, "could not return a message to the queue");
                    }
                }
                return (Err(error), Vec::new());
            }
        };
        let current: HashMap<ReminderKey, Notification> = current
            .into_iter()
            .map(|notification| (notification.key(), notification))
            .collect();
        // Reminders no longer wanted and duplicates are not notified; a key twice in the batch
        // is notified once. All are acknowledged together at the end.
        let mut acks = Vec::with_capacity(pending.len());
        let mut fresh = Vec::with_capacity(pending.len());
        let mut seen = HashSet::with_capacity(pending.len());
        for (index, mut message) in pending {
            let Some(now_reads) = current.get(&message.notification.key()) else {
                acks.push(message.tag);
                metrics::counter!(instruments::NOTIFICATIONS_CANCELLED).increment(1);
                info!(key = %message.key, "reminder dropped: its event was deleted or its reminder moved after it was published");
                outcomes[index] = Some(DeliveryOutcome::Cancelled);
                continue;
            };
            // Delivered as the event reads now (a title changed since publishing, say).
            message.notification = now_reads.clone();
            if delivered_before.contains(&message.key) || !seen.insert(message.key.clone()) {
                acks.push(message.tag);
                metrics::counter!(instruments::NOTIFICATIONS_DUPLICATE).increment(1);
                info!(key = %message.key, "duplicate notification suppressed");
                outcomes[index] = Some(DeliveryOutcome::Duplicate);
            } else {
                fresh.push((index, message));
            }
        }
        delivered_before.clear();

        let notified: Vec<Notified> = futures::stream::iter(fresh)
            .map(|(index, message)| async move {
                let result = self.notifier.notify(&message.notification).await;
                (index, message, result, self.clock.now())
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let mut delivered = Vec::with_capacity(notified.len());
        let mut records = Vec::with_capacity(notified.len());
        let lag = metrics::histogram!(instruments::NOTIFICATION_DELIVERY_LAG);
        for (index, message, result, delivered_at) in notified {
            let outcome = match result {
                Ok(()) => {
                    lag.record(seconds(delivered_at - message.notification.remind_at()));
                    records.push((message.key.clone(), delivered_at));
                    delivered.push((index, message));
                    continue;
                }
                Err(NotifyError::Rejected(reason)) => {
                    let reason = format!("notifier refused it: {reason}");
                    note(self.dead_letter(message.tag, &reason).await);
                    DeliveryOutcome::DeadLettered { reason }
                }
                Err(error @ NotifyError::Unavailable(_)) => {
                    if message.attempt >= self.config.max_attempts {
                        let reason = format!("notifier failed {} times: {error}", message.attempt);
                        note(self.dead_letter(message.tag, &reason).await);
                        DeliveryOutcome::DeadLettered { reason }
                    } else {
                        warn!(key = %message.key, %error, "notifier failed; message returned to the queue");
                        note(self.source.retry(message.tag).await.map_err(Into::into));
                        metrics::counter!(instruments::NOTIFICATIONS_RETRIED).increment(1);
                        DeliveryOutcome::Retried {
                            attempt: message.attempt,
                        }
                    }
                }
            };
            outcomes[index] = Some(outcome);
        }
        if !delivered.is_empty() {
            metrics::counter!(instruments::NOTIFICATIONS_DELIVERED)
                .increment(delivered.len() as u64);
            if let Err(error) = self.deliveries.record_all_delivered(&records).await {
                // Delivered but not recorded: acknowledging is still right (not acknowledging
                // would deliver them again for certain); only a later duplicate would get
                // through.
                warn!(count = records.len(), %error, "delivered notifications could not be recorded");
            }
            for (index, message) in delivered {
                acks.push(message.tag);
                debug!(key = %message.key, "notification delivered");
                outcomes[index] = Some(DeliveryOutcome::Delivered);
            }
        }
        (finish(outcomes, first_error), acks)
    }

    /// Acknowledges `tags` (nothing to do when there are none).
    async fn acknowledge(&self, tags: &[DeliveryTag]) -> Result<(), SenderError> {
        if tags.is_empty() {
            return Ok(());
        }
        Ok(self.source.ack_all(tags).await?)
    }

    async fn dead_letter(&self, tag: DeliveryTag, reason: &str) -> Result<(), SenderError> {
        warn!(%reason, "message moved to the dead-letter queue");
        self.source.dead_letter(tag, reason).await?;
        metrics::counter!(instruments::NOTIFICATIONS_DEAD_LETTERED).increment(1);
        Ok(())
    }

    /// Forgets delivered keys older than the retention.
    pub async fn prune(&self) -> Result<u64, SenderError> {
        let cutoff = self.clock.now() - self.config.delivery_retention;
        let forgotten = self.deliveries.forget_before(cutoff).await?;
        debug!(forgotten, %cutoff, "delivery log pruned");
        Ok(forgotten)
    }

    /// Handles messages, at most [`SenderConfig::concurrency`] in hand at once, until
    /// `shutdown` is cancelled or the source closes; then finishes the messages in hand and
    /// returns. A message received before its reminder falls due is held (at most
    /// [`SenderConfig::max_held`] at once) and handled when it does; the others are handled on
    /// arrival. Whatever is ready together is handled as one batch
    /// ([`handle_batch`](Self::handle_batch)), so batches grow with the load.
    ///
    /// A batch's acknowledgements are sent once no other batch is under way and nothing held
    /// is due, all of them together, or [`MAX_ACK_DELAY`] after the first at the latest: when
    /// many reminders fall due at once, the broker settles them after they are delivered
    /// instead of competing with their delivery for the machine. What is kept back is done
    /// with but for the broker's record (delivered and recorded, a duplicate, or a reminder no
    /// longer wanted): if the sender dies first, the broker delivers it again and the delivery
    /// log (or the event store) keeps it from being notified twice. Kept-back messages count
    /// against the queue's prefetch: with it full, nothing more arrives until they are sent.
    ///
    /// At shutdown, the batches under way are finished and every acknowledgement is sent. Held
    /// messages still unsettled stay so: the queue delivers them again once this source is
    /// closed (RabbitMQ requeues a closed channel's unacknowledged messages). Prunes the
    /// delivery log at start and every [`SenderConfig::prune_interval`].
    pub async fn run(&self, shutdown: CancellationToken) {
        info!(config = ?self.config, "notification sender started");
        let capacity = self.config.concurrency.max(1);
        let mut in_flight = JoinSet::new();
        let mut in_hand = 0;
        let mut held = Held::new();
        let mut paused_until: Option<Instant> = None;
        if let Err(error) = self.prune().await {
            warn!(%error, "pruning the delivery log failed");
        }
        let mut next_prune = Instant::now() + self.config.prune_interval;
        let mut unacknowledged = Unacknowledged::default();
        let mut closed = false;
        while !closed {
            let next_due = held.next_due().map(|due| self.instant_of(due));
            let acknowledge_by = unacknowledged.due;
            let room_to_receive = in_hand < capacity && !held.is_full(self.config.max_held);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = sleep_until(next_prune) => {
                    if let Err(error) = self.prune().await {
                        warn!(%error, "pruning the delivery log failed");
                    }
                    next_prune = Instant::now() + self.config.prune_interval;
                }
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let Handled { count, result, acks } = joined_batch(joined);
                    in_hand -= count;
                    unacknowledged.add(acks);
                    if let Err(error) = result {
                        warn!(%error, "delivery failed; pausing");
                        paused_until = self.paused();
                    }
                    // Acknowledged once no other delivery is under way or due: while many
                    // fall due at once, the broker's work of settling them waits until they
                    // are delivered instead of competing with it.
                    let more_due = held.next_due().is_some_and(|due| due <= self.clock.now());
                    if in_flight.is_empty()
                        && !more_due
                        && self.send_acknowledgements(&mut unacknowledged).await.is_err()
                    {
                        paused_until = self.paused();
                    }
                }
                () = sleep_until(acknowledge_by.unwrap_or_else(Instant::now)), if acknowledge_by.is_some() => {
                    if self.send_acknowledgements(&mut unacknowledged).await.is_err() {
                        paused_until = self.paused();
                    }
                }
                () = sleep_until(paused_until.unwrap_or_else(Instant::now)), if paused_until.is_some() => {
                    paused_until = None;
                }
                () = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() && paused_until.is_none() && in_hand < capacity => {
                    // In batches of a quarter of what may be in hand, so that one batch's
                    // questions to the stores overlap another's notifying and recording.
                    let batch = held.take_due(
                        self.clock.now(),
                        (capacity / 4).max(1).min(capacity - in_hand),
                    );
                    if !batch.is_empty() {
                        let count = batch.len();
                        in_hand += count;
                        self.spawn_batch(&mut in_flight, batch, true);
                    }
                }
                received = self.source.receive(), if paused_until.is_none() && room_to_receive => {
                    match received {
                        Ok(delivery) => {
                            let now = self.clock.now();
                            let mut batch = Vec::new();
                            let mut next = Some(delivery);
                            // Whatever else has arrived joins the batch or the held messages
                            // (receive is cancel safe: a receive that would wait is dropped,
                            // losing nothing).
                            while let Some(delivery) = next.take() {
                                match self.hold_until(&delivery, now) {
                                    Some(due) => held.insert(due, delivery),
                                    None => batch.push(delivery),
                                }
                                if in_hand + batch.len() >= capacity
                                    || held.is_full(self.config.max_held)
                                {
                                    break;
                                }
                                match self.source.receive().now_or_never() {
                                    Some(Ok(delivery)) => next = Some(delivery),
                                    Some(Err(SourceError::Closed)) => closed = true,
                                    Some(Err(error)) => {
                                        warn!(%error, "receiving failed; pausing");
                                        paused_until = self.paused();
                                    }
                                    None => {}
                                }
                            }
                            if !batch.is_empty() {
                                let count = batch.len();
                                in_hand += count;
                                self.spawn_batch(&mut in_flight, batch, false);
                            }
                        }
                        Err(SourceError::Closed) => break,
                        Err(error) => {
                            warn!(%error, "receiving failed; pausing");
                            paused_until = self.paused();
                        }
                    }
                }
            }
        }
        let unfinished = in_hand;
        while let Some(joined) = in_flight.join_next().await {
            let Handled { result, acks, .. } = joined_batch(joined);
            unacknowledged.add(acks);
            if let Err(error) = result {
                warn!(%error, "delivery failed during shutdown");
            }
        }
        // A failure is logged; the broker delivers those again, to be found delivered.
        let _ = self.send_acknowledgements(&mut unacknowledged).await;
        // The held ones stay unsettled: the queue delivers them again once the source closes.
        info!(
            finished = unfinished,
            held = held.len(),
            "notification sender stopped"
        );
    }

    /// Until when [`run`](Self::run) pauses after a failure: the error backoff from now.
    fn paused(&self) -> Option<Instant> {
        Some(Instant::now() + self.config.error_backoff)
    }

    /// When to deliver `delivery` if not on arrival: its reminder's due instant, if that is
    /// after `now` and the sender holds messages.
    fn hold_until(&self, delivery: &Delivery, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &delivery.message {
            Ok(notification) if self.config.max_held > 0 && notification.remind_at() > now => {
                Some(notification.remind_at())
            }
            _ => None,
        }
    }

    /// The runtime's instant at which the clock reads `due`: at once if it already does, and
    /// at least a millisecond on otherwise (so a clock slower than the runtime's is waited
    /// for, not spun on).
    fn instant_of(&self, due: DateTime<Utc>) -> Instant {
        let wait = match (due - self.clock.now()).to_std() {
            Ok(wait) if !wait.is_zero() => wait.max(Duration::from_millis(1)),
            _ => Duration::ZERO,
        };
        Instant::now() + wait
    }

    /// Starts handling `batch` ([`handle_received`](Self::handle_received)) on a task of its
    /// own, so that batches under way together use every core.
    fn spawn_batch(&self, tasks: &mut JoinSet<Handled>, batch: Vec<Delivery>, held: bool) {
        let sender = self.clone();
        tasks.spawn(async move { sender.handle_received(batch, held).await }.in_current_span());
    }

    /// Handles a batch from [`run`](Self::run); returns its size with the result. Messages that
    /// were held are first checked with the source: one lost with its connection meanwhile is
    /// delivered again under a new tag, so this copy is dropped unhandled.
    async fn handle_received(&self, batch: Vec<Delivery>, held: bool) -> Handled {
        let count = batch.len();
        let batch = if held {
            let mut live = Vec::with_capacity(batch.len());
            for delivery in batch {
                if self.source.is_unsettled(delivery.tag).await {
                    live.push(delivery);
                }
            }
            if live.is_empty() {
                return Handled {
                    count,
                    result: Ok(()),
                    acks: Vec::new(),
                };
            }
            live
        } else {
            batch
        };
        let (outcomes, acks) = self.deliver_batch(batch).await;
        Handled {
            count,
            result: outcomes.map(drop),
            acks,
        }
    }

    /// Sends the acknowledgements kept back in `unacknowledged`, and logs the outcome. On
    /// failure, the broker delivers again what it did not get the acknowledgement of, and the
    /// delivery log keeps that from being notified twice.
    async fn send_acknowledgements(
        &self,
        unacknowledged: &mut Unacknowledged,
    ) -> Result<(), SenderError> {
        let tags = unacknowledged.take();
        if tags.is_empty() {
            return Ok(());
        }
        let sent = self.acknowledge(&tags).await;
        match &sent {
            Ok(()) => debug!(count = tags.len(), "notifications acknowledged"),
            Err(error) => warn!(count = tags.len(), %error, "acknowledging failed"),
        }
        sent
    }
}

/// A batch of [`NotificationSender::run`] handled: how many messages it took, whether it
/// failed, and the acknowledgements it leaves to send.
struct Handled {
    count: usize,
    result: Result<(), SenderError>,
    acks: Vec<DeliveryTag>,
}

/// Acknowledgements kept back by [`NotificationSender::run`], and when they are sent at the
/// latest ([`MAX_ACK_DELAY`] after the first).
#[derive(Default)]
struct Unacknowledged {
    tags: Vec<DeliveryTag>,
    due: Option<Instant>,
}

impl Unacknowledged {
    fn add(&mut self, tags: Vec<DeliveryTag>) {
        if tags.is_empty() {
            return;
        }
        self.due
            .get_or_insert_with(|| Instant::now() + MAX_ACK_DELAY);
        self.tags.extend(tags);
    }

    /// All of them, leaving none.
    fn take(&mut self) -> Vec<DeliveryTag> {
        self.due = None;
        std::mem::take(&mut self.tags)
    }
}

/// Messages received before they fall due, by due instant, then arrival; their count is the
/// held gauge.
struct Held {
    messages: BTreeMap<(DateTime<Utc>, u64), Delivery>,
    arrivals: u64,
    gauge: metrics::Gauge,
}

impl Held {
    fn new() -> Self {
        Self {
            messages: BTreeMap::new(),
            arrivals: 0,
            gauge: metrics::gauge!(instruments::NOTIFICATIONS_HELD),
        }
    }

    fn insert(&mut self, due: DateTime<Utc>, delivery: Delivery) {
        self.arrivals += 1;
        self.messages.insert((due, self.arrivals), delivery);
        self.gauge.set(self.messages.len() as f64);
    }

    fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether `max` are held (never, with a `max` of 0: nothing is held then).
    fn is_full(&self, max: usize) -> bool {
        max > 0 && self.messages.len() >= max
    }

    fn next_due(&self) -> Option<DateTime<Utc>> {
        self.messages.first_key_value().map(|((due, _), _)| *due)
    }

    /// Up to `max` of the messages due at `now`, earliest first.
    fn take_due(&mut self, now: DateTime<Utc>, max: usize) -> Vec<Delivery> {
        let mut due = Vec::new();
        while due.len() < max {
            match self.messages.first_entry() {
                Some(entry) if entry.key().0 <= now => due.push(entry.remove()),
                _ => break,
            }
        }
        self.gauge.set(self.messages.len() as f64);
        due
    }
}

/// What a batch's task returned; a panic in it goes on in the caller, as it would have had the
/// batch run there (the tasks are never aborted while awaited).
fn joined_batch(joined: Result<Handled, tokio::task::JoinError>) -> Handled {
    match joined {
        Ok(handled) => handled,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Every outcome of a batch, or its first error.
fn finish(
    outcomes: Vec<Option<DeliveryOutcome>>,
    first_error: Option<SenderError>,
) -> Result<Vec<DeliveryOutcome>, SenderError> {
    match first_error {
        Some(error) => Err(error),
        // Every message got its outcome on its way through the batch.
        None => Ok(outcomes.into_iter().flatten().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DecodeError, Event, EventId, Notification, Title};
    use crate::ports::{
        MockClock, MockDeliveryLog, MockEventRepository, MockNotificationSource, MockNotifier,
    };
    use crate::testkit::fixtures::{at, details, user, with_reminder};
    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use mockall::predicate::eq;
    use std::collections::HashSet;
    use std::sync::Mutex;

    fn now() -> DateTime<Utc> {
        at("2030-01-01T12:00:00Z")
    }

    fn notification() -> Notification {
        Event::new(
            "0190f5d2-6a43-7c3e-9a10-6f2b3c4d5e6f".parse().unwrap(),
            user("ann"),
            with_reminder(details("Call", at("2030-01-01T12:10:00Z"), 30), 10),
            now(),
        )
        .notification()
        .unwrap()
    }

    fn delivery(tag: u64, attempt: u32) -> Delivery {
        Delivery {
            tag: DeliveryTag::new(tag),
            attempt,
            message: Ok(notification()),
        }
    }

    struct Ports {
        source: MockNotificationSource,
        log: MockDeliveryLog,
        notifier: MockNotifier,
        /// The event store; by default one where the reminders of [`notification`] and
        /// [`other_notification`] are still wanted, as they are.
        events: Option<MockEventRepository>,
    }

    impl Ports {
        fn new() -> Self {
            Self {
                source: MockNotificationSource::new(),
                log: MockDeliveryLog::new(),
                notifier: MockNotifier::new(),
                events: None,
            }
        }

        fn sender(self) -> NotificationSender {
            let notifier = Arc::new(self.notifier);
            build(self.source, self.log, self.events, notifier)
        }

        /// A sender with this notifier instead of the mock.
        fn sender_with(self, notifier: Arc<dyn Notifier>) -> NotificationSender {
            build(self.source, self.log, self.events, notifier)
        }
    }

    /// Expects nothing notified or recorded, and the message tagged `tag` acknowledged.
    fn expect_acked_unnotified(ports: &mut Ports, tag: &'static [u64]) {
        ports.notifier.expect_notify().never();
        ports.log.expect_record_all_delivered().never();
        expect_acked(&mut ports.source, tag);
    }

    /// Expects the delivery log asked, knowing none of the keys.
    fn expect_nothing_delivered_before(log: &mut MockDeliveryLog) {
        log.expect_delivered_among()
            .returning(|_| Ok(HashSet::new()));
    }

    /// Expects `expected` notified, once.
    fn expect_notified(notifier: &mut MockNotifier, expected: Notification) {
        notifier
            .expect_notify()
            .withf(move |n| *n == expected)
            .times(1)
            .returning(|_| Ok(()));
    }

    /// Expects the messages tagged `tags` acknowledged, together, once.
    fn expect_acked(source: &mut MockNotificationSource, tags: &'static [u64]) {
        source
            .expect_ack_all()
            .withf(move |acked| acked.iter().map(|t| t.get()).eq(tags.iter().copied()))
            .times(1)
            .returning(|_| Ok(()));
    }

    /// An event store where `wanted` are the reminders still wanted, as they read.
    fn events_wanting(wanted: Vec<Notification>) -> MockEventRepository {
        let mut events = MockEventRepository::new();
        events.expect_current_reminders().returning(move |keys| {
            Ok(wanted
                .iter()
                .filter(|n| keys.contains(&n.key()))
                .cloned()
                .collect())
        });
        events
    }

    fn build(
        source: MockNotificationSource,
        log: MockDeliveryLog,
        events: Option<MockEventRepository>,
        notifier: Arc<dyn Notifier>,
    ) -> NotificationSender {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        NotificationSender::new(
            Arc::new(source),
            Arc::new(log),
            Arc::new(
                events
                    .unwrap_or_else(|| events_wanting(vec![notification(), other_notification()])),
            ),
            notifier,
            Arc::new(clock),
            SenderConfig {
                max_attempts: 3,
                ..SenderConfig::default()
            },
        )
    }

    #[tokio::test]
    async fn a_new_notification_is_delivered_recorded_and_acked() {
        let mut ports = Ports::new();
        let key = notification().idempotency_key();
        let asked = key.clone();
        ports
            .log
            .expect_delivered_among()
            .withf(move |keys| keys == [asked.clone()])
            .times(1)
            .returning(|_| Ok(HashSet::new()));
        expect_notified(&mut ports.notifier, notification());
        ports
            .log
            .expect_record_all_delivered()
            .withf(move |deliveries| deliveries == [(key.clone(), now())])
            .times(1)
            .returning(|_| Ok(()));
        expect_acked(&mut ports.source, &[7]);
        let outcome = ports.sender().handle(delivery(7, 1)).await.unwrap();
        assert_eq!(outcome, DeliveryOutcome::Delivered);
    }

    #[tokio::test]
    async fn a_duplicate_is_acked_without_notifying() {
        let mut ports = Ports::new();
        ports
            .log
            .expect_delivered_among()
            .returning(|keys| Ok(keys.iter().cloned().collect()));
        expect_acked_unnotified(&mut ports, &[1]);
        let outcome = ports.sender().handle(delivery(1, 2)).await.unwrap();
        assert_eq!(outcome, DeliveryOutcome::Duplicate);
    }

    #[tokio::test]
    async fn an_undecodable_message_goes_to_the_dead_letter_queue() {
        let mut ports = Ports::new();
        ports.log.expect_delivered_among().never();
        ports
            .source
            .expect_dead_letter()
            .withf(|tag, reason| tag.get() == 3 && reason.contains("undecodable"))
            .times(1)
            .returning(|_, _| Ok(()));
        let garbage = Delivery {
            tag: DeliveryTag::new(3),
            attempt: 1,
            message: Err(DecodeError::Malformed("expected value".into())),
        };
        let outcome = ports.sender().handle(garbage).await.unwrap();
        assert!(
            matches!(outcome, DeliveryOutcome::DeadLettered { reason } if reason.contains("expected value"))
        );
    }

    #[tokio::test]
    async fn a_failing_notifier_retries_until_the_last_attempt() {
        let mut ports = Ports::new();
        expect_nothing_delivered_before(&mut ports.log);
        ports
            .notifier
            .expect_notify()
            .times(2)
            .returning(|_| Err(NotifyError::Unavailable("smtp down".into())));
        ports.log.expect_record_all_delivered().never();
        ports
            .source
            .expect_retry()
            .with(eq(DeliveryTag::new(1)))
            .times(1)
            .returning(|_| Ok(()));
        ports
            .source
            .expect_dead_letter()
            .withf(|tag, reason| tag.get() == 2 && reason.contains("3 times"))
            .times(1)
            .returning(|_, _| Ok(()));
        let sender = ports.sender();
        assert_eq!(
            sender.handle(delivery(1, 2)).await.unwrap(),
            DeliveryOutcome::Retried { attempt: 2 }
        );
        assert!(matches!(
            sender.handle(delivery(2, 3)).await.unwrap(),
            DeliveryOutcome::DeadLettered { .. }
        ));
    }

    #[tokio::test]
    async fn a_refused_notification_is_dead_lettered_at_once() {
        let mut ports = Ports::new();
        expect_nothing_delivered_before(&mut ports.log);
        ports
            .notifier
            .expect_notify()
            .returning(|_| Err(NotifyError::Rejected("no such mailbox".into())));
        ports.source.expect_retry().never();
        ports
            .source
            .expect_dead_letter()
            .withf(|_, reason| reason.contains("no such mailbox"))
            .times(1)
            .returning(|_, _| Ok(()));
        let outcome = ports.sender().handle(delivery(1, 1)).await.unwrap();
        assert!(matches!(outcome, DeliveryOutcome::DeadLettered { .. }));
    }

    #[tokio::test]
    async fn without_the_delivery_log_the_message_goes_back() {
        let mut ports = Ports::new();
        ports
            .log
            .expect_delivered_among()
            .returning(|_| Err(DeliveryLogError::Unavailable("db down".into())));
        ports.notifier.expect_notify().never();
        ports.source.expect_retry().times(1).returning(|_| Ok(()));
        let error = ports.sender().handle(delivery(1, 1)).await.unwrap_err();
        assert!(matches!(error, SenderError::DeliveryLog(_)));
    }

    #[tokio::test]
    async fn a_delivery_that_cannot_be_recorded_is_still_acked() {
        let mut ports = Ports::new();
        expect_nothing_delivered_before(&mut ports.log);
        ports
            .notifier
            .expect_notify()
            .times(1)
            .returning(|_| Ok(()));
        ports
            .log
            .expect_record_all_delivered()
            .returning(|_| Err(DeliveryLogError::Unavailable("db down".into())));
        ports.source.expect_ack_all().times(1).returning(|_| Ok(()));
        let outcome = ports.sender().handle(delivery(1, 1)).await.unwrap();
        assert_eq!(outcome, DeliveryOutcome::Delivered);
    }

    #[tokio::test]
    async fn queue_failures_are_reported() {
        let mut ports = Ports::new();
        ports
            .log
            .expect_delivered_among()
            .returning(|keys| Ok(keys.iter().cloned().collect()));
        ports
            .source
            .expect_ack_all()
            .returning(|tags| Err(SourceError::UnknownDelivery(tags[0])));
        ports
            .source
            .expect_receive()
            .times(1)
            .returning(|| Err(SourceError::Unavailable("connection reset".into())));
        let sender = ports.sender();
        assert!(matches!(
            sender.handle(delivery(9, 1)).await,
            Err(SenderError::Source(SourceError::UnknownDelivery(_)))
        ));
        assert!(matches!(
            sender.step().await,
            Err(SenderError::Source(SourceError::Unavailable(_)))
        ));
    }

    /// A notification of another event than [`notification`]'s.
    fn other_notification() -> Notification {
        Event::new(
            "0190f5d2-6a43-7c3e-9a10-6f2b3c4d5e70".parse().unwrap(),
            user("bob"),
            with_reminder(details("Call", at("2030-01-01T12:10:00Z"), 30), 10),
            now(),
        )
        .notification()
        .unwrap()
    }

    #[tokio::test]
    async fn a_batch_asks_the_log_once_records_once_and_notifies_a_key_once() {
        let mut ports = Ports::new();
        let (known, fresh) = (notification(), other_notification());
        let known_key = known.idempotency_key();
        let fresh_key = fresh.idempotency_key();
        let asked = [known_key.clone(), fresh_key.clone(), fresh_key.clone()];
        ports
            .log
            .expect_delivered_among()
            .withf(move |keys| keys == asked)
            .times(1)
            .returning(move |_| Ok(HashSet::from([known_key.clone()])));
        expect_notified(&mut ports.notifier, fresh.clone());
        ports
            .log
            .expect_record_all_delivered()
            .withf(move |deliveries| deliveries == [(fresh_key.clone(), now())])
            .times(1)
            .returning(|_| Ok(()));
        expect_acked(&mut ports.source, &[1, 3, 2]);
        let batch = vec![
            Delivery {
                tag: DeliveryTag::new(1),
                attempt: 1,
                message: Ok(known),
            },
            Delivery {
                tag: DeliveryTag::new(2),
                attempt: 1,
                message: Ok(fresh.clone()),
            },
            Delivery {
                tag: DeliveryTag::new(3),
                attempt: 1,
                message: Ok(fresh),
            },
        ];
        let outcomes = ports.sender().handle_batch(batch).await.unwrap();
        assert_eq!(
            outcomes,
            [
                DeliveryOutcome::Duplicate,
                DeliveryOutcome::Delivered,
                DeliveryOutcome::Duplicate
            ]
        );
    }

    #[tokio::test]
    async fn a_batch_the_log_cannot_answer_for_goes_back_to_the_queue() {
        let mut ports = Ports::new();
        ports
            .log
            .expect_delivered_among()
            .times(1)
            .returning(|_| Err(DeliveryLogError::Unavailable("db down".into())));
        ports.notifier.expect_notify().never();
        ports.source.expect_ack_all().never();
        ports.source.expect_retry().times(2).returning(|_| Ok(()));
        let error = ports
            .sender()
            .handle_batch(vec![delivery(1, 1), delivery(2, 1)])
            .await
            .unwrap_err();
        assert!(matches!(error, SenderError::DeliveryLog(_)));
    }

    #[tokio::test]
    async fn run_handles_messages_until_the_source_closes() {
        let mut ports = Ports::new();
        let mut received = vec![
            Ok(delivery(1, 1)),
            Ok(Delivery {
                tag: DeliveryTag::new(2),
                attempt: 1,
                message: Ok(other_notification()),
            }),
            Err(SourceError::Closed),
        ]
        .into_iter();
        ports
            .source
            .expect_receive()
            .times(3)
            .returning(move || received.next().unwrap());
        // What arrived together is one batch: one question, one record.
        ports
            .log
            .expect_delivered_among()
            .withf(|keys| keys.len() == 2)
            .times(1)
            .returning(|_| Ok(HashSet::new()));
        ports
            .notifier
            .expect_notify()
            .times(2)
            .returning(|_| Ok(()));
        ports
            .log
            .expect_record_all_delivered()
            .withf(|deliveries| deliveries.len() == 2)
            .times(1)
            .returning(|_| Ok(()));
        ports
            .source
            .expect_ack_all()
            .withf(|tags| tags.len() == 2)
            .times(1)
            .returning(|_| Ok(()));
        ports
            .log
            .expect_forget_before()
            .times(1)
            .returning(|_| Ok(0));
        ports.sender().run(CancellationToken::new()).await;
    }

    #[tokio::test]
    async fn prune_forgets_keys_older_than_the_retention() {
        let mut ports = Ports::new();
        ports
            .log
            .expect_forget_before()
            .with(eq(now() - chrono::TimeDelta::days(7)))
            .times(1)
            .returning(|_| Ok(12));
        assert_eq!(ports.sender().prune().await.unwrap(), 12);
    }

    /// A notifier that takes its time, counting what it delivered.
    struct Slow {
        delivered: Mutex<u32>,
    }

    #[async_trait]
    impl Notifier for Slow {
        async fn notify(&self, _: &Notification) -> Result<(), NotifyError> {
            tokio::time::sleep(Duration::from_secs(5)).await;
            *self.delivered.lock().unwrap() += 1;
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_finishes_the_messages_in_hand() {
        let mut ports = Ports::new();
        let mut first = Some(delivery(1, 1));
        ports
            .source
            .expect_receive()
            .returning(move || match first.take() {
                Some(d) => Ok(d),
                // Nothing more arrives: a real source waits; this one fails, which pauses the loop.
                None => Err(SourceError::Unavailable("idle".into())),
            });
        expect_nothing_delivered_before(&mut ports.log);
        ports
            .log
            .expect_record_all_delivered()
            .returning(|_| Ok(()));
        ports.log.expect_forget_before().returning(|_| Ok(0));
        ports.source.expect_ack_all().times(1).returning(|_| Ok(()));
        let slow = Arc::new(Slow {
            delivered: Mutex::new(0),
        });
        let sender = ports.sender_with(slow.clone());
        let shutdown = CancellationToken::new();
        let running = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { sender.run(shutdown).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        shutdown.cancel();
        running.await.unwrap();
        assert_eq!(
            *slow.delivered.lock().unwrap(),
            1,
            "the delivery under way finished"
        );
    }
    #[tokio::test]
    async fn a_reminder_no_longer_wanted_is_acked_without_notifying() {
        let mut ports = Ports::new();
        ports.events = Some(events_wanting(Vec::new()));
        expect_nothing_delivered_before(&mut ports.log);
        expect_acked_unnotified(&mut ports, &[4]);
        let outcome = ports.sender().handle(delivery(4, 1)).await.unwrap();
        assert_eq!(outcome, DeliveryOutcome::Cancelled);
    }

    #[tokio::test]
    async fn a_notification_is_delivered_as_its_event_reads_now() {
        let mut ports = Ports::new();
        let published = notification();
        let renamed = Notification::new(
            published.event_id(),
            published.user().clone(),
            Title::new("Call, moved to room 4").unwrap(),
            published.event_start(),
            published.remind_at(),
        );
        let mut events = MockEventRepository::new();
        let asked = published.key();
        let reads = renamed.clone();
        events
            .expect_current_reminders()
            .withf(move |keys| keys == [asked])
            .times(1)
            .returning(move |_| Ok(vec![reads.clone()]));
        ports.events = Some(events);
        expect_nothing_delivered_before(&mut ports.log);
        expect_notified(&mut ports.notifier, renamed);
        ports
            .log
            .expect_record_all_delivered()
            .times(1)
            .returning(|_| Ok(()));
        ports.source.expect_ack_all().times(1).returning(|_| Ok(()));
        let outcome = ports.sender().handle(delivery(1, 1)).await.unwrap();
        assert_eq!(outcome, DeliveryOutcome::Delivered);
    }

    #[tokio::test]
    async fn without_the_event_store_the_batch_goes_back_to_the_queue() {
        let mut ports = Ports::new();
        let mut events = MockEventRepository::new();
        events
            .expect_current_reminders()
            .returning(|_| Err(RepositoryError::Unavailable("db down".into())));
        ports.events = Some(events);
        expect_nothing_delivered_before(&mut ports.log);
        ports.notifier.expect_notify().never();
        ports.source.expect_ack_all().never();
        ports.source.expect_retry().times(2).returning(|_| Ok(()));
        let error = ports
            .sender()
            .handle_batch(vec![delivery(1, 1), delivery(2, 1)])
            .await
            .unwrap_err();
        assert!(matches!(error, SenderError::Events(_)), "{error}");
    }

    /// A clock that reads [`now`] when the test starts and moves with tokio's (paused) time.
    struct TestClock(Instant);

    impl Clock for TestClock {
        fn now(&self) -> DateTime<Utc> {
            now() + chrono::TimeDelta::from_std(self.0.elapsed()).unwrap()
        }
    }

    /// A source handing out `script`, then waiting for ever; records what is acknowledged, and
    /// reports the tags in `lost` as no longer held.
    #[derive(Default)]
    struct Scripted {
        script: Mutex<std::collections::VecDeque<Delivery>>,
        acked: Mutex<Vec<u64>>,
        /// Each call of `ack_all`: when, and its tags (sorted).
        acknowledgements: Mutex<Vec<(Instant, Vec<u64>)>>,
        lost: Vec<u64>,
    }

    #[async_trait]
    impl NotificationSource for Scripted {
        async fn receive(&self) -> Result<Delivery, SourceError> {
            let next = self.script.lock().unwrap().pop_front();
            match next {
                Some(delivery) => Ok(delivery),
                None => std::future::pending().await,
            }
        }
        async fn is_unsettled(&self, tag: DeliveryTag) -> bool {
            !self.lost.contains(&tag.get()) && !self.acked.lock().unwrap().contains(&tag.get())
        }
        async fn ack(&self, tag: DeliveryTag) -> Result<(), SourceError> {
            self.acked.lock().unwrap().push(tag.get());
            Ok(())
        }
        async fn ack_all(&self, tags: &[DeliveryTag]) -> Result<(), SourceError> {
            let mut call: Vec<u64> = tags.iter().map(|tag| tag.get()).collect();
            call.sort_unstable();
            self.acknowledgements
                .lock()
                .unwrap()
                .push((Instant::now(), call));
            for tag in tags {
                self.ack(*tag).await?;
            }
            Ok(())
        }
        async fn retry(&self, tag: DeliveryTag) -> Result<(), SourceError> {
            panic!("nothing is retried here, yet {tag} was");
        }
        async fn dead_letter(&self, tag: DeliveryTag, _: &str) -> Result<(), SourceError> {
            panic!("nothing is dead-lettered here, yet {tag} was");
        }
    }

    /// A notifier recording when (by `clock`) it delivered which reminder.
    struct Recording {
        clock: Arc<TestClock>,
        delivered: Mutex<Vec<(EventId, DateTime<Utc>)>>,
    }

    #[async_trait]
    impl Notifier for Recording {
        async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
            self.delivered
                .lock()
                .unwrap()
                .push((notification.event_id(), self.clock.now()));
            Ok(())
        }
    }

    /// A reminder of a fresh event starting at `start`, due 10 minutes before.
    fn reminder_of_event_at(start: &str) -> Notification {
        Event::new(
            EventId::generate(),
            user("ann"),
            with_reminder(details("Review", at(start), 30), 10),
            now(),
        )
        .notification()
        .unwrap()
    }

    /// A source handing out `notifications`, tagged 1, 2, ... in order.
    fn scripted(notifications: &[&Notification]) -> Scripted {
        let deliveries = (1..)
            .zip(notifications)
            .map(|(tag, notification)| Delivery {
                tag: DeliveryTag::new(tag),
                attempt: 1,
                message: Ok((*notification).clone()),
            });
        Scripted {
            script: Mutex::new(deliveries.collect()),
            ..Scripted::default()
        }
    }

    /// Runs a sender on `source` (and a delivery log that has delivered nothing) with
    /// `max_held`, where `wanted` are the reminders still wanted, for `minutes` of paused time.
    async fn run_for(
        source: Arc<Scripted>,
        wanted: Vec<Notification>,
        max_held: usize,
        minutes: u64,
    ) -> Vec<(EventId, DateTime<Utc>)> {
        let clock = Arc::new(TestClock(Instant::now()));
        let notifier = Arc::new(Recording {
            clock: clock.clone(),
            delivered: Mutex::new(Vec::new()),
        });
        let config = SenderConfig {
            max_held,
            ..SenderConfig::default()
        };
        run_with(source, wanted, notifier.clone(), clock, config, minutes).await;
        notifier.delivered.lock().unwrap().clone()
    }

    /// Runs a sender on `source`, `notifier` and `clock` with `config` (and a delivery log
    /// that has delivered nothing), where `wanted` are the reminders still wanted, for
    /// `minutes` of paused time, then shuts it down.
    async fn run_with(
        source: Arc<Scripted>,
        wanted: Vec<Notification>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<TestClock>,
        config: SenderConfig,
        minutes: u64,
    ) {
        let mut log = MockDeliveryLog::new();
        expect_nothing_delivered_before(&mut log);
        log.expect_record_all_delivered().returning(|_| Ok(()));
        log.expect_forget_before().returning(|_| Ok(0));
        let sender = NotificationSender::new(
            source,
            Arc::new(log),
            Arc::new(events_wanting(wanted)),
            notifier,
            clock,
            config,
        );
        let shutdown = CancellationToken::new();
        let running = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { sender.run(shutdown).await }
        });
        tokio::time::sleep(Duration::from_secs(minutes * 60)).await;
        shutdown.cancel();
        running.await.unwrap();
    }

    /// Runs a sender whose notifier takes 5 s per notification, handling held messages one
    /// per batch, on reminders due at the given instants (published ahead, all wanted), for
    /// `minutes`; returns the acknowledgements it sent, with their times from the start.
    async fn acknowledgements_of_slow_deliveries(
        starts: &[&str],
        minutes: u64,
    ) -> Vec<(Duration, Vec<u64>)> {
        let reminders: Vec<Notification> = starts
            .iter()
            .map(|start| reminder_of_event_at(start))
            .collect();
        let source = Arc::new(scripted(&reminders.iter().collect::<Vec<_>>()));
        let started = Instant::now();
        let slow = Arc::new(Slow {
            delivered: Mutex::new(0),
        });
        let config = SenderConfig {
            // Held messages fall due in batches of a quarter of this: one each.
            concurrency: 4,
            ..SenderConfig::default()
        };
        let clock = Arc::new(TestClock(started));
        run_with(
            source.clone(),
            reminders,
            slow.clone(),
            clock,
            config,
            minutes,
        )
        .await;
        assert_eq!(*slow.delivered.lock().unwrap(), starts.len() as u32);
        let acknowledgements = source.acknowledgements.lock().unwrap().clone();
        acknowledgements
            .into_iter()
            .map(|(when, tags)| (when - started, tags))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn acknowledgements_wait_until_no_other_delivery_is_under_way_then_go_together() {
        // Due at 12:10, each handled in a batch of its own, the three under way together.
        let starts = ["2030-01-01T12:20:00Z"; 3];
        assert_eq!(
            acknowledgements_of_slow_deliveries(&starts, 15).await,
            [(Duration::from_secs(605), vec![1, 2, 3])],
            "one acknowledgement of the three, when the last was delivered (5 s after 12:10)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn acknowledgements_wait_at_most_max_ack_delay() {
        // Due at 12:10:00, :04 and :08: each delivery overlaps the next.
        let starts = [
            "2030-01-01T12:20:00Z",
            "2030-01-01T12:20:04Z",
            "2030-01-01T12:20:08Z",
        ];
        let first_delivered = Duration::from_secs(605);
        assert_eq!(
            acknowledgements_of_slow_deliveries(&starts, 15).await,
            [
                (first_delivered + MAX_ACK_DELAY, vec![1, 2]),
                (Duration::from_secs(613), vec![3]),
            ],
            "the first two when the first had waited MAX_ACK_DELAY, the last once it was alone"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_early_message_is_held_until_it_falls_due_and_the_next_is_not_kept_waiting() {
        // Due at 12:10 and at 12:05 (published ahead), and at 12:00 (due now).
        let (later, sooner, due) = (
            reminder_of_event_at("2030-01-01T12:20:00Z"),
            reminder_of_event_at("2030-01-01T12:15:00Z"),
            reminder_of_event_at("2030-01-01T12:10:00Z"),
        );
        let source = Arc::new(scripted(&[&later, &sooner, &due]));
        let delivered = run_for(
            source.clone(),
            vec![later.clone(), sooner.clone(), due.clone()],
            10,
            15,
        )
        .await;
        assert_eq!(
            delivered,
            [
                (due.event_id(), at("2030-01-01T12:00:00Z")),
                (sooner.event_id(), at("2030-01-01T12:05:00Z")),
                (later.event_id(), at("2030-01-01T12:10:00Z")),
            ],
            "each delivered when it falls due, to the millisecond"
        );
        assert_eq!(*source.acked.lock().unwrap(), [3, 2, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_reminder_cancelled_meanwhile_or_lost_with_its_connection_is_not_delivered() {
        let (deleted, lost, kept) = (
            reminder_of_event_at("2030-01-01T12:20:00Z"),
            reminder_of_event_at("2030-01-01T12:20:00Z"),
            reminder_of_event_at("2030-01-01T12:20:00Z"),
        );
        let source = Arc::new(Scripted {
            lost: vec![2],
            ..scripted(&[&deleted, &lost, &kept])
        });
        // By the time they fall due, `deleted`'s event is gone.
        let delivered = run_for(source.clone(), vec![lost, kept.clone()], 10, 15).await;
        assert_eq!(delivered, [(kept.event_id(), at("2030-01-01T12:10:00Z"))]);
        let mut acked = source.acked.lock().unwrap().clone();
        acked.sort_unstable();
        assert_eq!(
            acked,
            [1, 3],
            "the cancelled one acknowledged, the lost one left to its redelivery"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_max_held_messages_held_nothing_more_is_received_until_one_falls_due() {
        let (early, due) = (
            reminder_of_event_at("2030-01-01T12:20:00Z"),
            reminder_of_event_at("2030-01-01T12:10:00Z"),
        );
        let source = Arc::new(scripted(&[&early, &due]));
        let mut delivered = run_for(source, vec![early.clone(), due.clone()], 1, 15).await;
        delivered.sort_unstable();
        let mut expected = [
            (early.event_id(), at("2030-01-01T12:10:00Z")),
            (due.event_id(), at("2030-01-01T12:10:00Z")),
        ];
        expected.sort_unstable();
        assert_eq!(
            delivered, expected,
            "the message behind the held one waited for it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn holding_nothing_delivers_early_messages_on_arrival() {
        let early = reminder_of_event_at("2030-01-01T12:20:00Z");
        let source = Arc::new(scripted(&[&early]));
        let delivered = run_for(source, vec![early.clone()], 0, 1).await;
        assert_eq!(delivered, [(early.event_id(), now())]);
    }
}
