//! The queue contract suite on RabbitMQ, plus what only a real broker can show: publisher
//! confirms, the dead-letter queue and surviving a lost connection.
//!
//! Needs the broker at `AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`); each test
//! declares its own queues, which the broker deletes a minute after the test.

#![cfg(feature = "amqp")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use amqprs::BasicProperties;
use async_trait::async_trait;
use calendar_adapters::amqp::{AmqpBroker, AmqpConfig, QueueType};
use calendar_core::testkit::QueueFixture;
use calendar_core::testkit::fixtures::{at, user};
use calendar_core::{
    EventId, Notification, NotificationSource, QueueError, ReminderQueue, SourceError, Title,
};

fn config(queue_type: QueueType) -> AmqpConfig {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let queue = format!("calendar.test.{}", uuid::Uuid::new_v4().simple());
    AmqpConfig {
        url,
        connection_name: queue.clone(),
        queue,
        queue_type,
        retry_delay: Duration::from_millis(50),
        confirm_timeout: Duration::from_secs(5),
        prefetch: 16,
        expire_unused_after: Some(Duration::from_secs(60)),
        ..AmqpConfig::default()
    }
}

async fn start(config: AmqpConfig, consume: bool) -> AmqpBroker {
    let url = config.redacted_url();
    let broker = AmqpBroker::start(config, consume).expect("valid configuration");
    assert!(
        broker.wait_ready(Duration::from_secs(15)).await,
        "RabbitMQ is not reachable at {url}: start it (`rabbitmq-server -detached`) or set AMQP_URL"
    );
    broker
}

struct RabbitFixture(AmqpBroker);

impl RabbitFixture {
    async fn new(queue_type: QueueType) -> Self {
        Self(start(config(queue_type), true).await)
    }
}

#[async_trait]
impl QueueFixture for RabbitFixture {
    fn queue(&self) -> &dyn ReminderQueue {
        &self.0
    }

    fn source(&self) -> &dyn NotificationSource {
        &self.0
    }

    async fn publish_raw(&self, body: &[u8]) {
        let properties = BasicProperties::default()
            .with_message_id(&uuid::Uuid::new_v4().to_string())
            .with_persistence(true)
            .finish();
        self.0
            .publish_raw(properties, body.to_vec())
            .await
            .expect("raw publish confirmed");
    }

    async fn take_dead_letters(&self, expected: usize) -> Vec<Vec<u8>> {
        let mut bodies = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while bodies.len() < expected && tokio::time::Instant::now() < deadline {
            let taken = self
                .0
                .take_dead_letters(expected - bodies.len())
                .await
                .unwrap();
            if taken.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            bodies.extend(taken.into_iter().map(|(_, body)| body));
        }
        bodies
    }
}

calendar_core::queue_contract_tests! {
    #[tokio::test]
    fn() => RabbitFixture::new(QueueType::Classic).await
}

mod quorum {
    use super::*;

    calendar_core::queue_contract_tests! {
        #[tokio::test]
        fn() => RabbitFixture::new(QueueType::Quorum).await
    }
}

fn notification(i: i64) -> Notification {
    let start = at("2030-03-01T09:00:00Z") + chrono::TimeDelta::minutes(i);
    Notification::new(
        EventId::generate(),
        user("ann"),
        Title::new(&format!("Reminder {i}")).unwrap(),
        start,
        start - chrono::TimeDelta::minutes(15),
    )
}

#[tokio::test]
async fn messages_carry_their_id_content_type_and_schema_version() {
    let fixture = RabbitFixture::new(QueueType::Classic).await;
    let sent = notification(1);
    let results = fixture.0.publish(std::slice::from_ref(&sent)).await;
    assert!(results[0].is_ok());
    let delivery = fixture.0.receive().await.unwrap();
    fixture
        .0
        .dead_letter(delivery.tag, "inspect")
        .await
        .unwrap();
    let dead = loop {
        let taken = fixture.0.take_dead_letters(1).await.unwrap();
        if let Some(first) = taken.into_iter().next() {
            break first;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (properties, body) = dead;
    assert_eq!(
        properties.message_id().map(String::as_str),
        Some(sent.idempotency_key().as_str())
    );
    assert_eq!(
        properties.content_type().map(String::as_str),
        Some("application/json")
    );
    assert_eq!(properties.delivery_mode(), Some(2), "persistent");
    let headers = format!("{:?}", properties.headers());
    assert!(headers.contains("schema-version"), "{headers}");
    assert_eq!(Notification::decode(&body), Ok(sent));
}

#[tokio::test]
async fn a_thousand_publishes_are_all_confirmed_through_a_small_window() {
    let mut config = config(QueueType::Classic);
    config.max_in_flight = 32;
    let broker = start(config, true).await;
    let batch: Vec<Notification> = (0..1_000).map(notification).collect();
    let results = broker.publish(&batch).await;
    assert_eq!(results.len(), 1_000);
    assert!(results.iter().all(Result::is_ok), "every publish confirmed");
    let mut keys = std::collections::HashSet::new();
    for _ in 0..1_000 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), broker.receive())
            .await
            .expect("all published messages arrive")
            .unwrap();
        keys.insert(delivery.message.unwrap().idempotency_key());
        broker.ack(delivery.tag).await.unwrap();
    }
    assert_eq!(keys.len(), 1_000, "each message once");
}

#[tokio::test]
async fn acknowledgements_in_any_order_and_grouping_never_upset_the_broker() {
    // A multiple acknowledgement reaching a message still in hand would make the broker close
    // the channel at that message's own acknowledgement (an unknown tag): a reconnect.
    let broker = start(config(QueueType::Classic), true).await;
    let batch: Vec<Notification> = (0..6).map(notification).collect();
    assert!(broker.publish(&batch).await.iter().all(Result::is_ok));
    let mut tags = Vec::new();
    for _ in 0..batch.len() {
        tags.push(broker.receive().await.unwrap().tag);
    }
    for group in [
        vec![tags[1], tags[3]],
        vec![tags[0]],
        vec![tags[5], tags[2]],
        vec![tags[4]],
    ] {
        broker.ack_all(&group).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(broker.reconnects(), 0, "the channel stayed up");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), broker.receive())
            .await
            .is_err(),
        "every message acknowledged once"
    );
}

#[tokio::test]
async fn a_prefetch_above_amqps_16_bits_is_honoured_by_several_consumers() {
    // Two consumers of 32,800 each: every message arrives unacknowledged, one more does not.
    const PREFETCH: u32 = 65_600;
    let mut config = config(QueueType::Classic);
    config.prefetch = PREFETCH;
    let broker = start(config, true).await;
    for chunk in 0..(i64::from(PREFETCH) / 1_000 + 1) {
        let batch: Vec<Notification> = (chunk * 1_000..(chunk + 1) * 1_000)
            .filter(|i| *i < i64::from(PREFETCH) + 1)
            .map(notification)
            .collect();
        let results = broker.publish(&batch).await;
        assert!(results.iter().all(Result::is_ok), "every publish confirmed");
    }
    let mut first = None;
    for _ in 0..PREFETCH {
        let delivery = tokio::time::timeout(Duration::from_secs(10), broker.receive())
            .await
            .expect("every message up to the prefetch arrives unacknowledged")
            .unwrap();
        first.get_or_insert(delivery.tag);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), broker.receive())
            .await
            .is_err(),
        "no more than the prefetch unacknowledged"
    );
    broker.ack(first.unwrap()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), broker.receive())
        .await
        .expect("an acknowledgement makes room for the next")
        .unwrap();
}

/// A raw connection for reaching around the adapter.
async fn raw_channel() -> (amqprs::connection::Connection, amqprs::channel::Channel) {
    let connection = amqprs::connection::Connection::open(
        &amqprs::connection::OpenConnectionArguments::new("127.0.0.1", 5672, "guest", "guest"),
    )
    .await
    .unwrap();
    let channel = connection.open_channel(None).await.unwrap();
    (connection, channel)
}

#[tokio::test]
async fn an_unroutable_publish_is_a_failure_the_scheduler_sees() {
    let config = config(QueueType::Classic);
    let queue = config.queue.clone();
    let broker = start(config, false).await;
    let (_connection, channel) = raw_channel().await;
    channel
        .queue_delete(amqprs::channel::QueueDeleteArguments::new(&queue))
        .await
        .unwrap();
    let results = broker.publish(&[notification(1)]).await;
    assert!(
        matches!(&results[0], Err(QueueError::Refused { reason }) if reason.contains("unroutable")),
        "got {results:?}"
    );
}

/// Closes the broker side of the connection named `name`, as a broker restart would.
fn close_connection(name: &str) {
    let listing = Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "--quiet"])
        .output()
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let pid = listing
        .lines()
        .find(|line| line.contains(name))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("connection {name} not listed by rabbitmqctl:\n{listing}"));
    let closed = Command::new("rabbitmqctl")
        .args(["close_connection", pid, "closed by the test"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(closed.status.success(), "{closed:?}");
}

#[tokio::test]
async fn a_lost_connection_is_re_established_and_unsettled_messages_come_back() {
    let config = config(QueueType::Classic);
    let name = config.connection_name.clone();
    let broker = start(config, true).await;
    let sent = notification(1);
    assert!(broker.publish(std::slice::from_ref(&sent)).await[0].is_ok());
    let first = broker.receive().await.unwrap();
    assert!(broker.is_unsettled(first.tag).await);

    close_connection(&name);
    let mut readiness = broker.readiness();
    tokio::time::timeout(Duration::from_secs(10), readiness.wait_for(|ready| !*ready))
        .await
        .expect("readiness drops while disconnected")
        .unwrap();
    assert!(
        broker.wait_ready(Duration::from_secs(15)).await,
        "reconnected"
    );
    assert_eq!(broker.reconnects(), 1);

    assert!(
        !broker.is_unsettled(first.tag).await,
        "a message of the lost channel is no longer held"
    );
    assert!(
        matches!(
            broker.ack(first.tag).await,
            Err(SourceError::UnknownDelivery(_))
        ),
        "a tag from the lost channel cannot be settled"
    );
    let again = tokio::time::timeout(Duration::from_secs(10), broker.receive())
        .await
        .expect("the unsettled message is redelivered")
        .unwrap();
    assert_eq!(again.message.as_ref().ok(), Some(&sent));
    broker.ack(again.tag).await.unwrap();
    let later = notification(2);
    assert!(
        broker.publish(std::slice::from_ref(&later)).await[0].is_ok(),
        "publishing resumed"
    );
    let next = broker.receive().await.unwrap();
    assert_eq!(next.message.as_ref().ok(), Some(&later));
    broker.ack(next.tag).await.unwrap();
}

#[tokio::test]
async fn a_closed_broker_says_so() {
    let broker = start(config(QueueType::Classic), true).await;
    broker.close().await;
    assert!(!broker.is_ready());
    assert!(matches!(broker.receive().await, Err(SourceError::Closed)));
    assert!(matches!(
        broker.publish(&[notification(1)]).await[0],
        Err(QueueError::Unavailable(_))
    ));
}
