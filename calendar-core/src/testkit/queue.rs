//! The contract of the reminder queue: a [`ReminderQueue`] and the [`NotificationSource`]
//! reading what it publishes.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;

use super::fixtures::{at, user};
use crate::domain::{DecodeError, EventId, IdempotencyKey, Notification, Title};
use crate::ports::{Delivery, NotificationSource, ReminderQueue, SourceError};

/// A queue under test: both of its sides, plus what tests need to reach around them.
#[async_trait]
pub trait QueueFixture: Send + Sync {
    /// The publishing side.
    fn queue(&self) -> &dyn ReminderQueue;
    /// The consuming side, reading what [`queue`](Self::queue) publishes.
    fn source(&self) -> &dyn NotificationSource;
    /// Puts a raw body on the queue, as a faulty or foreign publisher would.
    async fn publish_raw(&self, body: &[u8]);
    /// Takes the bodies from the dead-letter queue, oldest first, waiting up to a few seconds
    /// for at least `expected` of them.
    async fn take_dead_letters(&self, expected: usize) -> Vec<Vec<u8>>;
}

fn notification(i: i64) -> Notification {
    let start = at("2030-03-01T09:00:00Z") + TimeDelta::minutes(i);
    Notification::new(
        EventId::generate(),
        user("ann"),
        Title::new(&format!("Reminder {i}")).unwrap_or_else(|e| panic!("{e}")),
        start,
        start - TimeDelta::minutes(15),
    )
}

async fn receive(fixture: &dyn QueueFixture) -> Delivery {
    match tokio::time::timeout(Duration::from_secs(10), fixture.source().receive()).await {
        Ok(Ok(delivery)) => delivery,
        Ok(Err(error)) => panic!("receive failed: {error}"),
        Err(_) => panic!("nothing received within 10 s"),
    }
}

async fn assert_nothing_arrives(fixture: &dyn QueueFixture, why: &str) {
    if let Ok(received) =
        tokio::time::timeout(Duration::from_millis(500), fixture.source().receive()).await
    {
        panic!("{why}, yet received {received:?}");
    }
}

/// The source keeps working: notification `i`, published now, arrives and is acknowledged.
async fn assert_still_works(fixture: &dyn QueueFixture, i: i64) {
    let sent = notification(i);
    publish_ok(fixture, std::slice::from_ref(&sent)).await;
    let delivery = receive(fixture).await;
    assert_eq!(
        delivery.message.as_ref().ok(),
        Some(&sent),
        "the source keeps working"
    );
    fixture.source().ack(delivery.tag).await.expect("ack");
}

async fn publish_ok(fixture: &dyn QueueFixture, batch: &[Notification]) {
    let results = fixture.queue().publish(batch).await;
    assert_eq!(results.len(), batch.len(), "one result per notification");
    for result in results {
        if let Err(error) = result {
            panic!("publishing to a working queue failed: {error}");
        }
    }
}

/// Published notifications arrive (first attempt), decode to what was sent, and once
/// acknowledged are gone.
pub async fn published_notifications_are_received_and_acked(fixture: &dyn QueueFixture) {
    let batch: Vec<Notification> = (0..3).map(notification).collect();
    publish_ok(fixture, &batch).await;
    let mut received = BTreeSet::new();
    for _ in 0..batch.len() {
        let delivery = receive(fixture).await;
        assert_eq!(delivery.attempt, 1, "first delivery");
        let notification = delivery
            .message
            .clone()
            .expect("a published notification decodes");
        assert!(batch.contains(&notification), "received what was published");
        received.insert(notification.idempotency_key());
        fixture.source().ack(delivery.tag).await.expect("ack");
    }
    let published: BTreeSet<IdempotencyKey> =
        batch.iter().map(Notification::idempotency_key).collect();
    assert_eq!(received, published, "each notification arrives once");
    assert_nothing_arrives(fixture, "all messages were acknowledged").await;
}

/// A retried message comes back with the next attempt number.
pub async fn retried_message_is_redelivered_with_the_next_attempt(fixture: &dyn QueueFixture) {
    let sent = notification(1);
    publish_ok(fixture, std::slice::from_ref(&sent)).await;
    let first = receive(fixture).await;
    assert_eq!(first.attempt, 1);
    fixture.source().retry(first.tag).await.expect("retry");
    let second = receive(fixture).await;
    assert_eq!(
        second.message.as_ref().ok(),
        Some(&sent),
        "the same notification"
    );
    assert_eq!(second.attempt, 2, "the next attempt");
    fixture.source().ack(second.tag).await.expect("ack");
    assert_nothing_arrives(fixture, "the retried message was acknowledged").await;
}

/// A dead-lettered message lands in the dead-letter queue and is not delivered again.
pub async fn dead_lettered_message_is_not_redelivered(fixture: &dyn QueueFixture) {
    let sent = notification(2);
    publish_ok(fixture, std::slice::from_ref(&sent)).await;
    let delivery = receive(fixture).await;
    fixture
        .source()
        .dead_letter(delivery.tag, "notifier refused it")
        .await
        .expect("dead letter");
    let dead = fixture.take_dead_letters(1).await;
    assert_eq!(dead.len(), 1, "one dead letter");
    assert_eq!(
        Notification::decode(&dead[0]).as_ref(),
        Ok(&sent),
        "the body is kept as published"
    );
    assert_nothing_arrives(fixture, "the message was dead-lettered").await;
}

/// A body that is not a notification arrives as a decode error, not as a failed receive, and
/// can be dead-lettered; the source keeps working.
pub async fn undecodable_message_arrives_as_a_decode_error(fixture: &dyn QueueFixture) {
    fixture.publish_raw(b"\x00 not json").await;
    fixture
        .publish_raw(br#"{"schema_version":99,"from":"the future"}"#)
        .await;
    let garbage = receive(fixture).await;
    assert!(
        matches!(garbage.message, Err(DecodeError::Malformed(_))),
        "got {:?}",
        garbage.message
    );
    fixture
        .source()
        .dead_letter(garbage.tag, "undecodable")
        .await
        .expect("dead letter");
    let future = receive(fixture).await;
    assert!(
        matches!(
            future.message,
            Err(DecodeError::UnsupportedVersion { found: 99, .. })
        ),
        "got {:?}",
        future.message
    );
    fixture
        .source()
        .dead_letter(future.tag, "unsupported version")
        .await
        .expect("dead letter");
    let dead = fixture.take_dead_letters(2).await;
    assert_eq!(dead.len(), 2);
    assert_still_works(fixture, 3).await;
}

/// A message is unsettled until settled, and settled once: settling it again is refused, and
/// the source keeps working.
pub async fn settling_twice_is_refused(fixture: &dyn QueueFixture) {
    publish_ok(fixture, &[notification(4), notification(5)]).await;
    let first = receive(fixture).await;
    assert!(
        fixture.source().is_unsettled(first.tag).await,
        "received, not yet settled"
    );
    fixture.source().ack(first.tag).await.expect("ack");
    assert!(!fixture.source().is_unsettled(first.tag).await, "settled");
    for (what, result) in [
        ("ack", fixture.source().ack(first.tag).await),
        ("retry", fixture.source().retry(first.tag).await),
        (
            "dead letter",
            fixture.source().dead_letter(first.tag, "again").await,
        ),
    ] {
        assert!(
            matches!(result, Err(SourceError::UnknownDelivery(tag)) if tag == first.tag),
            "a second {what} must be UnknownDelivery, got {result:?}"
        );
    }
    let second = receive(fixture).await;
    assert!(second.message.is_ok());
    fixture
        .source()
        .ack(second.tag)
        .await
        .expect("the source still works");
}

/// Messages acknowledged together are each settled, whatever lies between them; a tag
/// acknowledged again is refused.
pub async fn acknowledging_together_settles_each(fixture: &dyn QueueFixture) {
    publish_ok(
        fixture,
        &[notification(7), notification(8), notification(9)],
    )
    .await;
    let (first, second, third) = (
        receive(fixture).await,
        receive(fixture).await,
        receive(fixture).await,
    );
    // The second stays in hand, between the two acknowledged.
    fixture
        .source()
        .ack_all(&[first.tag, third.tag])
        .await
        .expect("ack all");
    assert!(!fixture.source().is_unsettled(first.tag).await);
    assert!(
        fixture.source().is_unsettled(second.tag).await,
        "not acknowledged"
    );
    assert!(!fixture.source().is_unsettled(third.tag).await);
    let again = fixture.source().ack_all(&[first.tag, second.tag]).await;
    assert!(
        matches!(again, Err(SourceError::UnknownDelivery(tag)) if tag == first.tag),
        "an acknowledged tag is refused, got {again:?}"
    );
    assert!(
        !fixture.source().is_unsettled(second.tag).await,
        "the tag it could settle was settled"
    );
    assert_nothing_arrives(fixture, "all three were acknowledged").await;
    assert_still_works(fixture, 10).await;
}

/// `receive` waits for a message published after it was called.
pub async fn receive_waits_for_a_message(fixture: &dyn QueueFixture) {
    let sent = notification(6);
    let publish_later = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        publish_ok(fixture, std::slice::from_ref(&sent)).await;
    };
    let (delivery, ()) = tokio::join!(receive(fixture), publish_later);
    assert_eq!(delivery.message.as_ref().ok(), Some(&sent));
    fixture.source().ack(delivery.tag).await.expect("ack");
}
