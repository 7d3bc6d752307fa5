//! One connection to the broker with its channels, and the supervisor that replaces it when it
//! is lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use amqprs::callbacks::{ChannelCallback, ConnectionCallback};
use amqprs::channel::{
    BasicConsumeArguments, BasicGetArguments, BasicPublishArguments, BasicQosArguments, Channel,
    ConfirmSelectArguments, ConsumerMessage, ExchangeDeclareArguments, QueueBindArguments,
    QueueDeclareArguments,
};
use amqprs::connection::Connection;
use amqprs::{
    Ack, BasicProperties, Cancel, Close, CloseChannel, FieldTable, FieldValue, Nack, Return,
};
use async_trait::async_trait;
use calendar_core::{QueueError, SourceError};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Mutex, Notify, Semaphore};
use tracing::{info, warn};

use super::confirms::{Confirms, PendingConfirm, Route};
use super::{AmqpConfig, Shared, unavailable};

/// The names of the topology, derived from the queue's name.
#[derive(Debug, Clone)]
struct Names {
    queue: String,
    retry: String,
    dead_letter_exchange: String,
    dead: String,
}

impl Names {
    fn new(queue: &str) -> Self {
        Self {
            queue: queue.to_owned(),
            retry: format!("{queue}.retry"),
            dead_letter_exchange: format!("{queue}.dead-letter"),
            dead: format!("{queue}.dead"),
        }
    }
}

/// A message as the broker delivered it.
pub(super) struct Received {
    pub(super) broker_tag: u64,
    pub(super) properties: BasicProperties,
    pub(super) body: Vec<u8>,
}

/// A live connection: a publishing channel in confirm mode and, for a sender, a consuming one.
pub(super) struct Session {
    generation: u64,
    connection: Connection,
    names: Names,
    publisher: Channel,
    confirms: Arc<Confirms>,
    /// Publishes are numbered by the broker in the order it receives them: register and
    /// publish under this lock.
    publishing: Mutex<()>,
    consumer: Option<Channel>,
    /// What the consumers on the consuming channel receive (several share a prefetch above
    /// AMQP's 16-bit limit).
    messages: Option<Mutex<Consumers>>,
    /// Signalled by the callbacks when the broker closes the connection or a channel.
    lost: Arc<Notify>,
}

impl Session {
    /// Connects, declares the topology, opens the publishing channel in confirm mode and,
    /// when `consume`, starts consuming.
    async fn open(shared: &Shared, generation: u64) -> Result<Self, amqprs::error::Error> {
        let config = &shared.config;
        let arguments = config
            .connection_arguments()
            .map_err(|e| amqprs::error::Error::UriError(e.to_string()))?;
        let connection = Connection::open(&arguments).await?;
        let lost = Arc::new(Notify::new());
        connection
            .register_callback(LossWatch {
                lost: lost.clone(),
                confirms: None,
            })
            .await?;
        let names = Names::new(&config.queue);
        let publisher = connection.open_channel(None).await?;
        let confirms = Arc::new(Confirms::new());
        publisher
            .register_callback(LossWatch {
                lost: lost.clone(),
                confirms: Some(confirms.clone()),
            })
            .await?;
        declare(&publisher, &names, config).await?;
        publisher
            .confirm_select(ConfirmSelectArguments::default())
            .await?;
        let (consumer, messages) = if shared.consume {
            let channel = connection.open_channel(None).await?;
            channel
                .register_callback(LossWatch {
                    lost: lost.clone(),
                    confirms: None,
                })
                .await?;
            // Not global: the prefetch applies to each consumer started after it.
            let (consumers, each) = config.consumers();
            channel
                .basic_qos(BasicQosArguments::new(0, each, false))
                .await?;
            let mut receivers = Vec::new();
            for consumer in 1..=consumers {
                let tag = if consumer == 1 {
                    format!("{}-{generation}", config.connection_name)
                } else {
                    format!("{}-{generation}-{consumer}", config.connection_name)
                };
                let (_, messages) = channel
                    .basic_consume_rx(
                        BasicConsumeArguments::new(&names.queue, &tag)
                            .manual_ack(true)
                            .finish(),
                    )
                    .await?;
                receivers.push(messages);
            }
            (Some(channel), Some(Mutex::new(Consumers::new(receivers))))
        } else {
            (None, None)
        };
        Ok(Self {
            generation,
            connection,
            names,
            publisher,
            confirms,
            publishing: Mutex::new(()),
            consumer,
            messages,
            lost,
        })
    }

    /// Which connection this is, counting from 1.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Publishes a persistent, mandatory message and returns its pending confirmation.
    pub(super) async fn publish(
        &self,
        route: Route,
        properties: BasicProperties,
        body: Vec<u8>,
        in_flight: &Arc<Semaphore>,
    ) -> Result<PendingConfirm, QueueError> {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| unavailable("the broker connection is closed"))?;
        let arguments = match route {
            Route::Main => BasicPublishArguments::new(&self.names.queue, &self.names.queue),
            Route::Retry => BasicPublishArguments::new("", &self.names.retry),
        }
        .mandatory(true)
        .finish();
        let message_id = properties.message_id().cloned().unwrap_or_default();
        let _in_order = self.publishing.lock().await;
        let (number, pending) = self.confirms.register(&message_id, permit)?;
        if let Err(error) = self
            .publisher
            .basic_publish(properties, body, arguments)
            .await
        {
            // The channel cannot carry more: its numbering is lost with it.
            self.confirms.fail(number, unavailable(error.to_string()));
            self.confirms.close();
            self.lost.notify_one();
        }
        Ok(pending)
    }

    /// The consuming channel.
    pub(super) fn consumer(&self) -> Result<&Channel, SourceError> {
        self.consumer
            .as_ref()
            .ok_or_else(|| SourceError::Unavailable("not consuming".into()))
    }

    /// The next message from the queue; cancel safe.
    pub(super) async fn next_message(&self) -> Result<Received, SourceError> {
        let messages = self
            .messages
            .as_ref()
            .ok_or_else(|| SourceError::Unavailable("not consuming".into()))?;
        let mut messages = messages.lock().await;
        // What was taken from a receiver waits in the consumers' heads, not in this future:
        // dropping it loses nothing.
        std::future::poll_fn(|cx| messages.poll_next(cx)).await
    }

    /// Takes up to `max` messages from the dead-letter queue.
    pub(super) async fn take_dead_letters(
        &self,
        max: usize,
    ) -> Result<Vec<(BasicProperties, Vec<u8>)>, QueueError> {
        let mut taken = Vec::new();
        while taken.len() < max {
            let got = self
                .publisher
                .basic_get(
                    BasicGetArguments::new(&self.names.dead)
                        .no_ack(true)
                        .finish(),
                )
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            match got {
                Some((_, properties, body)) => taken.push((properties, body)),
                None => break,
            }
        }
        Ok(taken)
    }

    /// Closes the channels and the connection (unsettled messages return to the queue).
    async fn close(&self) {
        self.confirms.close();
        for channel in [self.consumer.clone(), Some(self.publisher.clone())]
            .into_iter()
            .flatten()
        {
            if let Err(error) = channel.close().await {
                warn!(%error, "closing an AMQP channel failed");
            }
        }
        if let Err(error) = self.connection.clone().close().await {
            warn!(%error, "closing the AMQP connection failed");
        }
    }
}

/// The receivers of the consumers on the consuming channel, merged back into the broker's
/// order. The broker numbers a channel's deliveries and sends them in that order, and amqprs
/// hands each to its consumer's receiver as it reads them; so once a message is seen at the
/// head of one receiver, every message numbered before it is already in its receiver, and
/// taking the lowest-numbered head keeps the broker's order. That order is what lets the
/// sender's batches be acknowledged with `multiple` (see [`super::unsettled`]).
pub(super) struct Consumers {
    receivers: Vec<UnboundedReceiver<ConsumerMessage>>,
    /// Per receiver, the message taken from it and not handed out yet.
    heads: Vec<Option<Received>>,
}

impl Consumers {
    fn new(receivers: Vec<UnboundedReceiver<ConsumerMessage>>) -> Self {
        Self {
            heads: receivers.iter().map(|_| None).collect(),
            receivers,
        }
    }

    /// The next message in the broker's order.
    fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Result<Received, SourceError>> {
        // Twice: a message dispatched before one seen on the first pass, to a receiver already
        // looked at, is there by the second.
        for _ in 0..2 {
            for (receiver, head) in self.receivers.iter_mut().zip(&mut self.heads) {
                if head.is_some() {
                    continue;
                }
                match receiver.poll_recv(cx) {
                    Poll::Ready(Some(message)) => *head = Some(received(message)?),
                    Poll::Ready(None) => {
                        return Poll::Ready(Err(SourceError::Unavailable(
                            "the consuming channel closed".into(),
                        )));
                    }
                    Poll::Pending => {}
                }
            }
        }
        let lowest = self
            .heads
            .iter_mut()
            .filter(|head| head.is_some())
            .min_by_key(|head| head.as_ref().map_or(u64::MAX, |m| m.broker_tag));
        match lowest.and_then(Option::take) {
            Some(message) => Poll::Ready(Ok(message)),
            None => Poll::Pending,
        }
    }
}

/// A delivery as the sender's side needs it.
fn received(mut message: ConsumerMessage) -> Result<Received, SourceError> {
    match (
        message.deliver.take(),
        message.basic_properties.take(),
        message.content.take(),
    ) {
        (Some(deliver), Some(properties), Some(body)) => Ok(Received {
            broker_tag: deliver.delivery_tag(),
            properties,
            body,
        }),
        _ => Err(SourceError::Unavailable(
            "the broker delivered an incomplete message".into(),
        )),
    }
}

/// Declares the exchanges and queues (idempotent when they exist with the same arguments).
async fn declare(
    channel: &Channel,
    names: &Names,
    config: &AmqpConfig,
) -> Result<(), amqprs::error::Error> {
    let queue_type = config.queue_type.as_str();
    let table = |entries: &[(&str, &str)]| {
        let mut table = FieldTable::new();
        for (key, value) in entries {
            if let (Ok(key), Ok(value)) = ((*key).try_into(), (*value).try_into()) {
                table.insert(key, FieldValue::S(value));
            }
        }
        if let Some(expiry) = config.expire_unused_after
            && let Ok(key) = "x-expires".try_into()
        {
            let millis = i32::try_from(expiry.as_millis()).unwrap_or(i32::MAX);
            table.insert(key, FieldValue::I(millis));
        }
        table
    };
    channel
        .exchange_declare(
            ExchangeDeclareArguments::new(&names.queue, "direct")
                .durable(true)
                .finish(),
        )
        .await?;
    channel
        .exchange_declare(
            ExchangeDeclareArguments::new(&names.dead_letter_exchange, "fanout")
                .durable(true)
                .finish(),
        )
        .await?;
    channel
        .queue_declare(
            QueueDeclareArguments::durable_client_named(&names.dead)
                .arguments(table(&[("x-queue-type", queue_type)]))
                .finish(),
        )
        .await?;
    channel
        .queue_bind(QueueBindArguments::new(
            &names.dead,
            &names.dead_letter_exchange,
            "",
        ))
        .await?;
    channel
        .queue_declare(
            QueueDeclareArguments::durable_client_named(&names.queue)
                .arguments(table(&[
                    ("x-queue-type", queue_type),
                    ("x-dead-letter-exchange", &names.dead_letter_exchange),
                ]))
                .finish(),
        )
        .await?;
    channel
        .queue_bind(QueueBindArguments::new(
            &names.queue,
            &names.queue,
            &names.queue,
        ))
        .await?;
    channel
        .queue_declare(
            QueueDeclareArguments::durable_client_named(&names.retry)
                .arguments(table(&[
                    ("x-queue-type", queue_type),
                    ("x-dead-letter-exchange", &names.queue),
                    ("x-dead-letter-routing-key", &names.queue),
                ]))
                .finish(),
        )
        .await?;
    Ok(())
}

/// Receives the broker's notices: confirms for the publishing channel, and any close or
/// consumer cancellation, which means the session must be replaced.
struct LossWatch {
    lost: Arc<Notify>,
    confirms: Option<Arc<Confirms>>,
}

#[async_trait]
impl ConnectionCallback for LossWatch {
    async fn close(&mut self, _: &Connection, close: Close) -> Result<(), amqprs::error::Error> {
        warn!(%close, "the broker closed the connection");
        self.lost.notify_one();
        Ok(())
    }

    async fn blocked(&mut self, _: &Connection, reason: String) {
        warn!(%reason, "the broker blocked publishing (resource alarm)");
    }

    async fn unblocked(&mut self, _: &Connection) {
        info!("the broker unblocked publishing");
    }

    async fn secret_updated(&mut self, _: &Connection) {}
}

#[async_trait]
impl ChannelCallback for LossWatch {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        warn!(%close, "the broker closed a channel");
        if let Some(confirms) = &self.confirms {
            confirms.close();
        }
        self.lost.notify_one();
        Ok(())
    }

    async fn cancel(&mut self, _: &Channel, cancel: Cancel) -> Result<(), amqprs::error::Error> {
        warn!(
            consumer = cancel.consumer_tag(),
            "the broker cancelled the consumer"
        );
        self.lost.notify_one();
        Ok(())
    }

    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        if let Some(confirms) = &self.confirms {
            confirms.ack(ack.delivery_tag(), ack.mutiple());
        }
    }

    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        if let Some(confirms) = &self.confirms {
            confirms.nack(nack.delivery_tag(), nack.multiple());
        }
    }

    async fn publish_return(
        &mut self,
        _: &Channel,
        ret: Return,
        properties: BasicProperties,
        _: Vec<u8>,
    ) {
        if let Some(confirms) = &self.confirms {
            let id = properties.message_id().map(String::as_str).unwrap_or("");
            confirms.returned(id, format!("{} {}", ret.reply_code(), ret.reply_text()));
        }
    }
}

/// Keeps a session up until shutdown: connects, and when the connection or a channel is lost,
/// marks the broker not ready and reconnects with exponential backoff.
pub(super) async fn supervise(shared: Arc<Shared>) {
    let config = &shared.config;
    let mut delay = config.reconnect_delay;
    let mut generation = 0;
    while !shared.shutdown.is_cancelled() {
        generation += 1;
        let opened = tokio::select! {
            () = shared.shutdown.cancelled() => break,
            opened = Session::open(&shared, generation) => opened,
        };
        match opened {
            Ok(session) => {
                let session = Arc::new(session);
                *shared.session.write().await = Some(session.clone());
                shared.ready.send_replace(true);
                if generation > 1 {
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("calendar_amqp_reconnects_total").increment(1);
                }
                metrics::gauge!("calendar_amqp_connected").set(1.0);
                info!(url = %config.redacted_url(), queue = %config.queue, generation, "connected to the broker");
                delay = config.reconnect_delay;
                let shutting_down = tokio::select! {
                    () = shared.shutdown.cancelled() => true,
                    _ = session.connection.listen_network_io_failure() => false,
                    () = session.lost.notified() => false,
                };
                shared.ready.send_replace(false);
                metrics::gauge!("calendar_amqp_connected").set(0.0);
                *shared.session.write().await = None;
                session.close().await;
                if shutting_down {
                    break;
                }
                warn!(
                    generation,
                    "lost the connection to the broker; reconnecting"
                );
            }
            Err(error) => {
                warn!(url = %config.redacted_url(), %error, retry_in = ?delay, "could not connect to the broker");
            }
        }
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(config.max_reconnect_delay);
    }
    shared.ready.send_replace(false);
}
