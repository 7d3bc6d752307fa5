//! The reminder queue on RabbitMQ (AMQP 0-9-1), on amqprs.
//!
//! # Topology
//!
//! For a queue named `Q` (default `calendar.reminders`), declared on every (re)connect:
//!
//! | name | kind | role |
//! |---|---|---|
//! | `Q` | durable direct exchange | what the scheduler publishes to (routing key `Q`) |
//! | `Q` | durable queue, bound to it | what senders consume; dead-letters to `Q.dead-letter` |
//! | `Q.retry` | durable queue, no consumer | messages waiting out a retry delay (per-message TTL), then dead-lettered back to exchange `Q` |
//! | `Q.dead-letter` | durable fanout exchange | where rejected messages go |
//! | `Q.dead` | durable queue, bound to it | dead letters, for operators |
//!
//! Queues are classic by default, or quorum ([`QueueType::Quorum`]) for clusters.
//!
//! # Guarantees
//!
//! - Publishing: persistent messages, `mandatory`, on a channel in confirm mode, with at most
//!   [`AmqpConfig::max_in_flight`] unconfirmed. A publish is `Ok` only once the broker confirmed
//!   it; a negative confirm, an unroutable return, a timeout or a lost connection is an error the
//!   scheduler sees (and retries: the sender deduplicates).
//! - Consuming: manual acknowledgements with a prefetch (above AMQP's 16-bit limit, shared by
//!   several consumers on the channel); a message is acknowledged only when the sender settles
//!   it. A retry republishes the message to `Q.retry` with its attempt number
//!   and a delay that doubles per attempt, then acknowledges the original; a dead letter is
//!   rejected into `Q.dead`. An unsettled message is redelivered by the broker if the connection
//!   drops.
//! - A supervisor task keeps the connection: it notices a lost connection or channel, reconnects
//!   with exponential backoff, re-declares the topology and resumes publishing and consuming.
//!   [`AmqpBroker::is_ready`] is false meanwhile.
//! - `amqps://` URLs use TLS (rustls with the `ring` provider, installed explicitly; server
//!   certificates checked against the Mozilla roots).
//!
//! Every message carries the notification's idempotency key as message id, the content type
//! and a `schema-version` header.

mod config;
mod confirms;
mod session;
mod unsettled;

pub use config::{AmqpConfig, AmqpConfigError, MAX_PREFETCH, QueueType};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqprs::channel::{BasicAckArguments, BasicNackArguments, BasicRejectArguments};
use amqprs::{BasicProperties, FieldTable, FieldValue};
use async_trait::async_trait;
use calendar_core::{
    Delivery, DeliveryTag, NOTIFICATION_CONTENT_TYPE, NOTIFICATION_SCHEMA_VERSION, Notification,
    NotificationSource, QueueError, ReminderQueue, SourceError,
};
use tokio::sync::{RwLock, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::confirms::Route;
use self::session::Session;
use self::unsettled::{Unsettled, UnsettledMessages, acknowledgements};
use crate::sync::lock;

/// The header carrying the schema version of the body.
pub const SCHEMA_VERSION_HEADER: &str = "schema-version";
/// The header carrying the delivery attempt a retried message is on (absent: 1).
pub const ATTEMPT_HEADER: &str = "x-calendar-attempt";

/// Why the broker adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] AmqpConfigError),
}

/// A connection to RabbitMQ, kept alive by a supervisor task, with the reminder queue's
/// publishing side ([`ReminderQueue`]) and, when asked for, its consuming side
/// ([`NotificationSource`]).
pub struct AmqpBroker {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBroker")
            .field("queue", &self.shared.config.queue)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

/// What the supervisor and the two sides share.
struct Shared {
    config: AmqpConfig,
    /// Whether to consume (a sender) or only publish (a scheduler).
    consume: bool,
    /// The live session, if connected.
    session: RwLock<Option<Arc<Session>>>,
    ready: watch::Sender<bool>,
    /// Bounds the unconfirmed publishes across reconnects.
    in_flight: Arc<Semaphore>,
    /// Received messages not yet settled, by the tag handed to the sender.
    unsettled: Mutex<UnsettledMessages>,
    next_tag: AtomicU64,
    reconnects: AtomicU64,
    shutdown: CancellationToken,
}

impl AmqpBroker {
    /// Starts the supervisor, which connects (and keeps reconnecting) in the background; the
    /// broker is usable at once and [ready](Self::is_ready) once connected. With `consume`, it
    /// also consumes the queue (for [`NotificationSource`]). Must be called within a tokio
    /// runtime.
    pub fn start(config: AmqpConfig, consume: bool) -> Result<Self, AmqpError> {
        config.validate()?;
        config::install_crypto_provider();
        let (ready, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            config,
            consume,
            session: RwLock::new(None),
            ready,
            unsettled: Mutex::new(UnsettledMessages::default()),
            next_tag: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        let supervisor = tokio::spawn(session::supervise(shared.clone()));
        Ok(Self {
            shared,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }

    /// Whether a connection is up with the topology declared.
    pub fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// Follows readiness: a receiver that sees every change.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.shared.ready.subscribe()
    }

    /// Waits until ready or until `timeout` passes; returns whether ready.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut ready = self.readiness();
        tokio::time::timeout(timeout, ready.wait_for(|ready| *ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// How many times the connection was re-established after being lost.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// The configuration.
    pub fn config(&self) -> &AmqpConfig {
        &self.shared.config
    }

    /// Stops consuming and closes the connection. Unsettled messages return to the queue;
    /// unconfirmed publishes fail.
    pub async fn close(&self) {
        self.shared.shutdown.cancel();
        let supervisor = lock(&self.supervisor).take();
        if let Some(supervisor) = supervisor
            && let Err(error) = supervisor.await
        {
            warn!(%error, "AMQP supervisor ended abnormally");
        }
        info!("AMQP connection closed");
    }

    /// Publishes `body` with `properties` to the main exchange, bypassing the notification
    /// encoding (tools and tests use it to put arbitrary bodies on the queue), and waits for
    /// the broker's confirmation.
    pub async fn publish_raw(
        &self,
        properties: BasicProperties,
        body: Vec<u8>,
    ) -> Result<(), QueueError> {
        self.shared.publish(Route::Main, properties, body).await
    }

    /// Takes up to `max` messages from the dead-letter queue (acknowledging them), oldest
    /// first: their bodies and properties.
    pub async fn take_dead_letters(
        &self,
        max: usize,
    ) -> Result<Vec<(BasicProperties, Vec<u8>)>, QueueError> {
        let session = self.shared.session().await.map_err(unavailable)?;
        session.take_dead_letters(max).await
    }
}

impl Drop for AmqpBroker {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

fn unavailable(error: impl Into<calendar_core::BoxError>) -> QueueError {
    QueueError::Unavailable(error.into())
}

impl Shared {
    async fn session(&self) -> Result<Arc<Session>, &'static str> {
        self.session
            .read()
            .await
            .clone()
            .ok_or("not connected to the broker")
    }

    async fn publish(
        &self,
        route: Route,
        properties: BasicProperties,
        body: Vec<u8>,
    ) -> Result<(), QueueError> {
        let session = self.session().await.map_err(unavailable)?;
        let pending = session
            .publish(route, properties, body, &self.in_flight)
            .await?;
        pending.wait(self.config.confirm_timeout).await
    }

    fn properties(message_id: &str, attempt: u32) -> BasicProperties {
        let mut headers = FieldTable::new();
        if let Ok(name) = SCHEMA_VERSION_HEADER.try_into() {
            headers.insert(name, FieldValue::I(NOTIFICATION_SCHEMA_VERSION as i32));
        }
        if attempt > 1
            && let Ok(name) = ATTEMPT_HEADER.try_into()
        {
            headers.insert(name, FieldValue::I(attempt as i32));
        }
        BasicProperties::default()
            .with_message_id(message_id)
            .with_content_type(NOTIFICATION_CONTENT_TYPE)
            .with_persistence(true)
            .with_headers(headers)
            .finish()
    }

    /// Takes a message out of the unsettled ones to settle it; it keeps its place in the
    /// broker's order until the returned guard is dropped, after its settling was sent.
    fn take_unsettled(&self, tag: DeliveryTag) -> Result<Settling<'_>, SourceError> {
        let message = lock(&self.unsettled)
            .take(tag.get())
            .ok_or(SourceError::UnknownDelivery(tag))?;
        Ok(Settling {
            shared: self,
            message,
        })
    }

    /// The session a message arrived on, if it is still the live one.
    async fn session_of(
        &self,
        tag: DeliveryTag,
        message: &Unsettled,
    ) -> Result<Arc<Session>, SourceError> {
        match self.session().await {
            Ok(session) if session.generation() == message.generation => Ok(session),
            // The channel it came on is gone, and the broker requeued the message with it.
            _ => Err(SourceError::UnknownDelivery(tag)),
        }
    }
}

/// A message taken out to be settled: dropped once its settling has been sent (or failed).
struct Settling<'a> {
    shared: &'a Shared,
    message: Unsettled,
}

impl std::ops::Deref for Settling<'_> {
    type Target = Unsettled;

    fn deref(&self) -> &Unsettled {
        &self.message
    }
}

impl std::ops::DerefMut for Settling<'_> {
    fn deref_mut(&mut self) -> &mut Unsettled {
        &mut self.message
    }
}

impl Drop for Settling<'_> {
    fn drop(&mut self) {
        lock(&self.shared.unsettled).sent(self.message.generation, self.message.broker_tag);
    }
}

/// The publishing side: what the scheduler hands due notifications to.
#[async_trait]
impl ReminderQueue for AmqpBroker {
    async fn publish(&self, notifications: &[Notification]) -> Vec<Result<(), QueueError>> {
        let session = match self.shared.session().await {
            Ok(session) => session,
            Err(reason) => {
                return notifications
                    .iter()
                    .map(|_| Err(unavailable(reason)))
                    .collect();
            }
        };
        // Publish the whole batch, then wait for the confirms: they arrive pipelined.
        let mut pending = Vec::with_capacity(notifications.len());
        for notification in notifications {
            let properties = Shared::properties(notification.idempotency_key().as_str(), 1);
            pending.push(
                session
                    .publish(
                        Route::Main,
                        properties,
                        notification.encode(),
                        &self.shared.in_flight,
                    )
                    .await,
            );
        }
        let deadline = tokio::time::Instant::now() + self.shared.config.confirm_timeout;
        let mut results = Vec::with_capacity(pending.len());
        for published in pending {
            results.push(match published {
                Ok(confirm) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    confirm.wait(left).await
                }
                Err(error) => Err(error),
            });
        }
        results
    }
}

/// The consuming side: what the sender reads notifications from.
#[async_trait]
impl NotificationSource for AmqpBroker {
    async fn receive(&self) -> Result<Delivery, SourceError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(SourceError::Closed);
        }
        if !self.shared.consume {
            return Err(SourceError::Unavailable(
                "this broker connection was started without consuming".into(),
            ));
        }
        let session = self
            .shared
            .session()
            .await
            .map_err(|e| SourceError::Unavailable(e.into()))?;
        let message = tokio::select! {
            () = self.shared.shutdown.cancelled() => return Err(SourceError::Closed),
            message = session.next_message() => message?,
        };
        let attempt = attempt_of(&message.properties);
        let tag = self.shared.next_tag.fetch_add(1, Ordering::Relaxed) + 1;
        let delivery = Delivery {
            tag: DeliveryTag::new(tag),
            attempt,
            message: Notification::decode(&message.body),
        };
        lock(&self.shared.unsettled).insert(
            tag,
            Unsettled {
                generation: session.generation(),
                broker_tag: message.broker_tag,
                properties: message.properties,
                body: message.body,
                attempt,
            },
        );
        Ok(delivery)
    }

    async fn is_unsettled(&self, tag: DeliveryTag) -> bool {
        let live = self.shared.session().await.ok().map(|s| s.generation());
        let mut unsettled = lock(&self.shared.unsettled);
        match unsettled.get(tag.get()) {
            Some(message) if Some(message.generation) == live => true,
            Some(_) => {
                // Its channel is gone and the broker requeued it: forget this copy.
                if let Some(message) = unsettled.take(tag.get()) {
                    unsettled.sent(message.generation, message.broker_tag);
                }
                false
            }
            None => false,
        }
    }

    /// One acknowledgement with `multiple` for the tags below every message still unsettled
    /// (or not yet received) on the channel, one each for the others.
    async fn ack_all(&self, tags: &[DeliveryTag]) -> Result<(), SourceError> {
        let session = self.shared.session().await.ok();
        let generation = session.as_ref().map(|s| s.generation());
        let mut first_error = None;
        let (taken, bound) = {
            let mut unsettled = lock(&self.shared.unsettled);
            let mut taken = Vec::with_capacity(tags.len());
            for tag in tags {
                match unsettled.take(tag.get()) {
                    Some(message) if Some(message.generation) == generation => {
                        taken.push(message.broker_tag);
                    }
                    // Of a lost channel: the broker requeued it.
                    Some(message) => {
                        unsettled.sent(message.generation, message.broker_tag);
                        first_error.get_or_insert(SourceError::UnknownDelivery(*tag));
                    }
                    None => {
                        first_error.get_or_insert(SourceError::UnknownDelivery(*tag));
                    }
                }
            }
            taken.sort_unstable();
            let bound = generation.map_or(0, |g| unsettled.first_not_settled(g, &taken));
            (taken, bound)
        };
        let sent = match (session, generation) {
            (Some(session), Some(generation)) if !taken.is_empty() => {
                let sent = send_acks(&session, &taken, bound).await;
                let mut unsettled = lock(&self.shared.unsettled);
                for broker_tag in &taken {
                    unsettled.sent(generation, *broker_tag);
                }
                sent
            }
            _ => Ok(()),
        };
        sent.and(first_error.map_or(Ok(()), Err))
    }

    async fn ack(&self, tag: DeliveryTag) -> Result<(), SourceError> {
        // The same path as a batch's: an acknowledgement must know what a concurrent
        // `multiple` one may cover.
        self.ack_all(std::slice::from_ref(&tag)).await
    }

    async fn retry(&self, tag: DeliveryTag) -> Result<(), SourceError> {
        let mut message = self.shared.take_unsettled(tag)?;
        let session = self.shared.session_of(tag, &message).await?;
        let next = message.attempt.saturating_add(1);
        let delay = self.shared.config.retry_delay(message.attempt);
        let message_id = message.properties.message_id().cloned().unwrap_or_default();
        let mut properties = Shared::properties(&message_id, next);
        if let Some(content_type) = message.properties.content_type() {
            properties.with_content_type(content_type);
        }
        properties.with_expiration(&delay.as_millis().to_string());
        let consumer = session.consumer()?;
        match self
            .shared
            .publish(Route::Retry, properties, std::mem::take(&mut message.body))
            .await
        {
            Ok(()) => consumer
                .basic_ack(BasicAckArguments::new(message.broker_tag, false))
                .await
                .map_err(|e| SourceError::Unavailable(e.into())),
            Err(error) => {
                // Could not park it for later: put it straight back instead.
                warn!(%error, "retry queue unavailable; requeueing the message at once");
                consumer
                    .basic_nack(BasicNackArguments::new(message.broker_tag, false, true))
                    .await
                    .map_err(|e| SourceError::Unavailable(e.into()))
            }
        }
    }

    async fn dead_letter(&self, tag: DeliveryTag, reason: &str) -> Result<(), SourceError> {
        let message = self.shared.take_unsettled(tag)?;
        let session = self.shared.session_of(tag, &message).await?;
        warn!(
            message_id = message
                .properties
                .message_id()
                .map(String::as_str)
                .unwrap_or(""),
            reason, "rejecting the message to the dead-letter queue"
        );
        session
            .consumer()?
            .basic_reject(BasicRejectArguments::new(message.broker_tag, false))
            .await
            .map_err(|e| SourceError::Unavailable(e.into()))
    }
}

/// Acknowledges `taken` (sorted broker tags of `session`): in one acknowledgement with
/// `multiple` those below `bound`, one by one the others.
async fn send_acks(session: &Session, taken: &[u64], bound: u64) -> Result<(), SourceError> {
    let (multiple, single) = acknowledgements(taken, bound);
    let consumer = session.consumer()?;
    let unavailable = |e: amqprs::error::Error| SourceError::Unavailable(e.into());
    if let Some(up_to) = multiple {
        consumer
            .basic_ack(BasicAckArguments::new(up_to, true))
            .await
            .map_err(unavailable)?;
    }
    for broker_tag in single {
        consumer
            .basic_ack(BasicAckArguments::new(broker_tag, false))
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// The attempt a message is on: our retry header, or for a quorum queue's redeliveries after
/// a consumer was lost, one more than the broker's delivery count, whichever is higher.
fn attempt_of(properties: &BasicProperties) -> u32 {
    let header = |name: &str| -> Option<i64> {
        let name = name.try_into().ok()?;
        match properties.headers()?.get(&name)? {
            FieldValue::I(v) => Some(i64::from(*v)),
            FieldValue::i(v) => Some(i64::from(*v)),
            FieldValue::l(v) => Some(*v),
            FieldValue::s(v) => Some(i64::from(*v)),
            FieldValue::u(v) => Some(i64::from(*v)),
            FieldValue::b(v) => Some(i64::from(*v)),
            FieldValue::B(v) => Some(i64::from(*v)),
            _ => None,
        }
    };
    let ours = header(ATTEMPT_HEADER).unwrap_or(1);
    let broker = header("x-delivery-count").map_or(1, |count| count + 1);
    u32::try_from(ours.max(broker).max(1)).unwrap_or(u32::MAX)
}
