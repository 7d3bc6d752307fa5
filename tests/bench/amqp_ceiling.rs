//! The broker's ceiling for the reminders: a minimal amqprs publisher, with nothing of the
//! calendar's adapter, publishing persistent, `mandatory` messages the size of a notification
//! to a durable queue of its own on a channel in confirm mode, with a window of unconfirmed
//! publishes, and counting the broker's confirms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use amqprs::callbacks::{ChannelCallback, DefaultConnectionCallback};
use amqprs::channel::{
    BasicPublishArguments, Channel, ConfirmSelectArguments, QueueDeclareArguments,
    QueueDeleteArguments,
};
use amqprs::connection::Connection;
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return};
use anyhow::{Context as _, bail};
use async_trait::async_trait;
use calendar_adapters::amqp::AmqpConfig;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What the publisher achieved.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CeilingReport {
    pub(crate) messages: u64,
    pub(crate) window: u64,
    pub(crate) body_bytes: usize,
    pub(crate) seconds: f64,
    pub(crate) confirmed_per_second: f64,
}

/// Counts the broker's confirms.
#[derive(Default)]
struct Confirmed {
    /// Every delivery tag up to this one is confirmed (confirms are cumulative enough: a
    /// `multiple` ack covers every earlier tag, and this publisher does not care which).
    up_to: AtomicU64,
    nacked: AtomicBool,
    changed: Notify,
}

struct Confirms(Arc<Confirmed>);

#[async_trait]
impl ChannelCallback for Confirms {
    async fn close(&mut self, _: &Channel, _: CloseChannel) -> Result<(), amqprs::error::Error> {
        self.0.changed.notify_waiters();
        Ok(())
    }

    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }

    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.0.up_to.fetch_max(ack.delivery_tag(), Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }

    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.0.nacked.store(true, Ordering::Release);
        self.0
            .up_to
            .fetch_max(nack.delivery_tag(), Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }

    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

/// Publishes `messages` messages of `body_bytes` bytes with at most `window` unconfirmed to a
/// fresh durable queue `queue` (deleted afterwards), and measures the confirmed rate.
pub(crate) async fn run(
    amqp_url: &str,
    queue: &str,
    messages: u64,
    window: u64,
    body_bytes: usize,
) -> anyhow::Result<CeilingReport> {
    let config = AmqpConfig {
        connection_name: "calendar-bench".to_owned(),
        ..AmqpConfig::new(amqp_url)
    };
    let connection = Connection::open(&config.connection_arguments()?)
        .await
        .context("cannot connect to RabbitMQ")?;
    connection
        .register_callback(DefaultConnectionCallback)
        .await
        .context("connection callback")?;
    let channel = connection.open_channel(None).await.context("a channel")?;
    let confirmed = Arc::new(Confirmed::default());
    channel
        .register_callback(Confirms(confirmed.clone()))
        .await
        .context("channel callback")?;
    let mut arguments = FieldTable::new();
    if let Ok(key) = "x-expires".try_into() {
        // The broker deletes the queue a minute after its last use, should this run die.
        arguments.insert(key, FieldValue::I(60_000));
    }
    channel
        .queue_declare(
            QueueDeclareArguments::durable_client_named(queue)
                .arguments(arguments)
                .finish(),
        )
        .await
        .context("declaring the ceiling's queue")?;
    channel
        .confirm_select(ConfirmSelectArguments::default())
        .await
        .context("confirm mode")?;

    let body = vec![b'x'; body_bytes];
    let publish = BasicPublishArguments::new("", queue)
        .mandatory(true)
        .finish();
    let started = Instant::now();
    for published in 1..=messages {
        loop {
            let notified = confirmed.changed.notified();
            if published - confirmed.up_to.load(Ordering::Acquire) <= window {
                break;
            }
            if tokio::time::timeout(Duration::from_secs(10), notified)
                .await
                .is_err()
            {
                bail!("no confirm from the broker for 10 s");
            }
        }
        let properties = BasicProperties::default()
            .with_message_id(&format!("ceiling-{published}"))
            .with_content_type("application/json")
            .with_persistence(true)
            .finish();
        channel
            .basic_publish(properties, body.clone(), publish.clone())
            .await
            .context("publishing")?;
    }
    while confirmed.up_to.load(Ordering::Acquire) < messages {
        let notified = confirmed.changed.notified();
        if confirmed.up_to.load(Ordering::Acquire) >= messages {
            break;
        }
        if tokio::time::timeout(Duration::from_secs(10), notified)
            .await
            .is_err()
        {
            bail!("no confirm from the broker for 10 s");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if confirmed.nacked.load(Ordering::Acquire) {
        bail!("the broker refused (nacked) messages");
    }
    let _ = channel.queue_delete(QueueDeleteArguments::new(queue)).await;
    let _ = channel.close().await;
    let _ = connection.close().await;
    Ok(CeilingReport {
        messages,
        window,
        body_bytes,
        seconds,
        confirmed_per_second: messages as f64 / seconds.max(f64::EPSILON),
    })
}
