use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::instruments::{self, seconds};
use crate::domain::{IdempotencyKey, Notification};
use crate::ports::{
    Clock, Delivery, DeliveryLog, DeliveryLogError, DeliveryTag, NotificationSource, Notifier,
    NotifyError, SourceError,
};

/// How the sender handles failures and load.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Deliveries of one message after which a failing notifier sends it to the dead-letter
    /// queue instead of retrying.
    pub max_attempts: u32,
    /// Most messages in hand at once in [`NotificationSender::run`] (received, not yet
    /// settled). What arrives together is handled as one batch: deduplicated with one question
    /// to the delivery log and recorded with one write. Larger batches mean fewer round trips
    /// to the delivery log per message; a sender killed mid-batch may have notified up to this
    /// many messages it had not yet recorded, which are then delivered again. Keep it at or
    /// below the queue's prefetch: the broker hands over no more than that unacknowledged.
    pub concurrency: usize,
    /// Pause before receiving again after the queue or the delivery log failed.
    pub error_backoff: Duration,
    /// How long delivered keys are remembered for deduplication. A duplicate arrives when a
    /// reminder is published again after its lease ran out, minutes after the first.
    pub delivery_retention: chrono::TimeDelta,
    /// Time between forgetting keys older than the retention.
    pub prune_interval: Duration,
}

impl Default for SenderConfig {
    /// 5 attempts, 256 messages in hand (the queue's default prefetch), 1 s pause after a
    /// failure; delivered keys kept 7 days, pruned hourly.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            concurrency: 256,
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
}

/// Delivers queued notifications: deduplicate, notify, record, acknowledge.
///
/// A notification published twice is delivered once (the delivery log remembers its
/// idempotency key); a message that cannot be decoded goes to the dead-letter queue and the
/// sender carries on. Messages that arrive together are handled as a batch: one question to
/// the delivery log for all of them, then one write recording those delivered.
#[derive(Clone)]
pub struct NotificationSender {
    source: Arc<dyn NotificationSource>,
    deliveries: Arc<dyn DeliveryLog>,
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
    /// A sender reading `source`, deduplicating with `deliveries`, delivering through `notifier`.
    pub fn new(
        source: Arc<dyn NotificationSource>,
        deliveries: Arc<dyn DeliveryLog>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        config: SenderConfig,
    ) -> Self {
        Self {
            source,
            deliveries,
            notifier,
            clock,
            config,
        }
    }

    /// Receives one message and handles it.
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
    /// dead letter: one question to the delivery log for all of them, the notifier for those
    /// not delivered before (a key twice in the batch is notified once), one write recording
    /// those delivered, then their acknowledgements.
    ///
    /// Returns the outcome of each message, in order. Every message is settled (or left to the
    /// source to deliver again) whatever happens; an error reports the first failure: then the
    /// delivery log could not be asked (every decodable message went back to the queue), or
    /// the source failed to settle one.
    #[tracing::instrument(name = "deliver", skip_all, fields(messages = deliveries.len()))]
    pub async fn handle_batch(
        &self,
        deliveries: Vec<Delivery>,
    ) -> Result<Vec<DeliveryOutcome>, SenderError> {
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
            return finish(outcomes, first_error);
        }

        let keys: Vec<IdempotencyKey> = pending.iter().map(|(_, p)| p.key.clone()).collect();
        let mut delivered_before = match self.deliveries.delivered_among(&keys).await {
            Ok(delivered) => delivered,
            Err(error) => {
                for (_, message) in &pending {
                    if let Err(retry) = self.source.retry(message.tag).await {
                        warn!(tag = %message.tag, error = %retry, "could not return a message to the queue");
                    }
                }
                return Err(error.into());
            }
        };
        // Duplicates are acknowledged at once; a key twice in the batch is notified once.
        let mut fresh = Vec::with_capacity(pending.len());
        let mut seen = HashSet::with_capacity(pending.len());
        for (index, message) in pending {
            if delivered_before.contains(&message.key) || !seen.insert(message.key.clone()) {
                note(self.source.ack(message.tag).await.map_err(Into::into));
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
        if delivered.is_empty() {
            return finish(outcomes, first_error);
        }
        metrics::counter!(instruments::NOTIFICATIONS_DELIVERED).increment(delivered.len() as u64);
        if let Err(error) = self.deliveries.record_all_delivered(&records).await {
            // Delivered but not recorded: acknowledging is still right (not acknowledging would
            // deliver them again for certain); only a later duplicate would get through.
            warn!(count = records.len(), %error, "delivered notifications could not be recorded");
        }
        for (index, message) in delivered {
            note(self.source.ack(message.tag).await.map_err(Into::into));
            debug!(key = %message.key, "notification delivered");
            outcomes[index] = Some(DeliveryOutcome::Delivered);
        }
        finish(outcomes, first_error)
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
    /// returns. Each message received is handled together with every other already waiting
    /// ([`handle_batch`](Self::handle_batch)), so batches grow with the load. Prunes the
    /// delivery log at start and every [`SenderConfig::prune_interval`].
    pub async fn run(&self, shutdown: CancellationToken) {
        info!(config = ?self.config, "notification sender started");
        let capacity = self.config.concurrency.max(1);
        let mut in_flight = FuturesUnordered::new();
        let mut in_hand = 0;
        let mut paused_until: Option<Instant> = None;
        if let Err(error) = self.prune().await {
            warn!(%error, "pruning the delivery log failed");
        }
        let mut next_prune = Instant::now() + self.config.prune_interval;
        let mut closed = false;
        while !closed {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = sleep_until(next_prune) => {
                    if let Err(error) = self.prune().await {
                        warn!(%error, "pruning the delivery log failed");
                    }
                    next_prune = Instant::now() + self.config.prune_interval;
                }
                Some((count, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    in_hand -= count;
                    if let Err(error) = result {
                        warn!(%error, "delivery failed; pausing");
                        paused_until = Some(Instant::now() + self.config.error_backoff);
                    }
                }
                () = sleep_until(paused_until.unwrap_or_else(Instant::now)), if paused_until.is_some() => {
                    paused_until = None;
                }
                received = self.source.receive(), if paused_until.is_none() && in_hand < capacity => {
                    match received {
                        Ok(delivery) => {
                            let mut batch = vec![delivery];
                            // Whatever else has arrived joins the batch (receive is cancel
                            // safe: a receive that would wait is dropped, losing nothing).
                            while in_hand + batch.len() < capacity {
                                match self.source.receive().now_or_never() {
                                    Some(Ok(delivery)) => batch.push(delivery),
                                    Some(Err(SourceError::Closed)) => {
                                        closed = true;
                                        break;
                                    }
                                    Some(Err(error)) => {
                                        warn!(%error, "receiving failed; pausing");
                                        paused_until = Some(Instant::now() + self.config.error_backoff);
                                        break;
                                    }
                                    None => break,
                                }
                            }
                            let count = batch.len();
                            in_hand += count;
                            in_flight.push(self.handle_batch(batch).map(move |result| (count, result)));
                        }
                        Err(SourceError::Closed) => break,
                        Err(error) => {
                            warn!(%error, "receiving failed; pausing");
                            paused_until = Some(Instant::now() + self.config.error_backoff);
                        }
                    }
                }
            }
        }
        let unfinished = in_hand;
        while let Some((_, result)) = in_flight.next().await {
            if let Err(error) = result {
                warn!(%error, "delivery failed during shutdown");
            }
        }
        info!(finished = unfinished, "notification sender stopped");
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
    use crate::domain::{DecodeError, Event, Notification};
    use crate::ports::{MockClock, MockDeliveryLog, MockNotificationSource, MockNotifier};
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
    }

    impl Ports {
        fn new() -> Self {
            Self {
                source: MockNotificationSource::new(),
                log: MockDeliveryLog::new(),
                notifier: MockNotifier::new(),
            }
        }

        fn sender(self) -> NotificationSender {
            let notifier = Arc::new(self.notifier);
            build(self.source, self.log, notifier)
        }

        /// A sender with this notifier instead of the mock.
        fn sender_with(self, notifier: Arc<dyn Notifier>) -> NotificationSender {
            build(self.source, self.log, notifier)
        }
    }

    fn build(
        source: MockNotificationSource,
        log: MockDeliveryLog,
        notifier: Arc<dyn Notifier>,
    ) -> NotificationSender {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        NotificationSender::new(
            Arc::new(source),
            Arc::new(log),
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
        ports
            .notifier
            .expect_notify()
            .withf(|n| *n == notification())
            .times(1)
            .returning(|_| Ok(()));
        ports
            .log
            .expect_record_all_delivered()
            .withf(move |deliveries| deliveries == [(key.clone(), now())])
            .times(1)
            .returning(|_| Ok(()));
        ports
            .source
            .expect_ack()
            .with(eq(DeliveryTag::new(7)))
            .times(1)
            .returning(|_| Ok(()));
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
        ports.notifier.expect_notify().never();
        ports.log.expect_record_all_delivered().never();
        ports.source.expect_ack().times(1).returning(|_| Ok(()));
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
        ports
            .log
            .expect_delivered_among()
            .returning(|_| Ok(HashSet::new()));
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
        ports
            .log
            .expect_delivered_among()
            .returning(|_| Ok(HashSet::new()));
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
        ports
            .log
            .expect_delivered_among()
            .returning(|_| Ok(HashSet::new()));
        ports
            .notifier
            .expect_notify()
            .times(1)
            .returning(|_| Ok(()));
        ports
            .log
            .expect_record_all_delivered()
            .returning(|_| Err(DeliveryLogError::Unavailable("db down".into())));
        ports.source.expect_ack().times(1).returning(|_| Ok(()));
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
            .expect_ack()
            .returning(|tag| Err(SourceError::UnknownDelivery(tag)));
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
        let notified = fresh.clone();
        ports
            .notifier
            .expect_notify()
            .withf(move |n| *n == notified)
            .times(1)
            .returning(|_| Ok(()));
        ports
            .log
            .expect_record_all_delivered()
            .withf(move |deliveries| deliveries == [(fresh_key.clone(), now())])
            .times(1)
            .returning(|_| Ok(()));
        ports.source.expect_ack().times(3).returning(|_| Ok(()));
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
        ports.source.expect_ack().never();
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
        ports.source.expect_ack().times(2).returning(|_| Ok(()));
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
        ports
            .log
            .expect_delivered_among()
            .returning(|_| Ok(HashSet::new()));
        ports
            .log
            .expect_record_all_delivered()
            .returning(|_| Ok(()));
        ports.log.expect_forget_before().returning(|_| Ok(0));
        ports.source.expect_ack().times(1).returning(|_| Ok(()));
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
}
