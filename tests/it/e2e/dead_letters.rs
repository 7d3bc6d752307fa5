//! Messages on the reminder queue that are not notifications: published straight onto a
//! stack's queue by a bare amqprs client (as a foreign or future publisher would), each must end
//! in the dead-letter queue, the sender must carry on, and a valid notification after them (of
//! an event that exists) must be delivered.

use std::collections::HashMap;
use std::time::Duration;

use amqprs::channel::{BasicGetArguments, BasicPublishArguments, Channel};
use amqprs::{BasicProperties, FieldTable, FieldValue};
use calendar_core::instruments::{NOTIFICATIONS_DEAD_LETTERED, NOTIFICATIONS_DELIVERED};
use calendar_core::{
    EventId, NOTIFICATION_CONTENT_TYPE, NOTIFICATION_SCHEMA_VERSION, Notification, Title, UserId,
};
use calendar_grpc::mapping::{datetime_to_timestamp, delta_to_duration};
use calendar_grpc::proto::calendar::v1 as pb;
use calendar_tests::harness::{http, services};
use chrono::{DateTime, TimeDelta, Utc};

use super::deliveries::{Logged, Reminder, wait_for_delivery};
use super::eventually;
use super::stack::Stack;
use crate::as_user;

/// The header in which the queue adapter (`calendar_adapters::amqp::SCHEMA_VERSION_HEADER`)
/// states the version of the body's encoding.
const SCHEMA_VERSION_HEADER: &str = "schema-version";

/// The adapter's line for each message it rejects to the dead-letter queue.
const REJECTED_MESSAGE: &str = "rejecting the message to the dead-letter queue";

/// One message that is not a notification, and what the sender's reason for rejecting it must
/// say.
struct Bad {
    /// Its message id, to recognise it in the dead-letter queue and the sender's log.
    id: &'static str,
    body: Vec<u8>,
    /// The schema version its header claims.
    header_version: i32,
    reason: &'static str,
}

/// The notification of an event created through the stack's server, due now (the stack runs no
/// scheduler: the test publishes it itself). The event exists, so the sender delivers it.
async fn notification(stack: &Stack) -> Notification {
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now");
    let (title, start, lead) = (
        "After the bad messages",
        now + TimeDelta::minutes(10),
        TimeDelta::minutes(10),
    );
    let request = pb::CreateEventRequest {
        event: Some(pb::Event {
            title: title.to_owned(),
            start_time: Some(datetime_to_timestamp(start)),
            duration: Some(delta_to_duration(TimeDelta::minutes(30))),
            notify_before: Some(delta_to_duration(lead)),
            ..pb::Event::default()
        }),
        event_id: String::new(),
    };
    let created = stack
        .client()
        .await
        .create_event(as_user("ann", request))
        .await
        .unwrap_or_else(|status| panic!("CreateEvent failed: {status:?}"))
        .into_inner();
    Notification::new(
        created.id.parse::<EventId>().expect("an event id"),
        UserId::new("ann").expect("a user id"),
        Title::new(title).expect("a title"),
        start,
        start - lead,
    )
}

/// The properties the queue adapter gives a notification: its message id, the content type,
/// persistent, and the schema version header.
fn properties(message_id: &str, schema_version: i32) -> BasicProperties {
    let mut headers = FieldTable::new();
    headers.insert(
        SCHEMA_VERSION_HEADER.try_into().expect("a header name"),
        FieldValue::I(schema_version),
    );
    BasicProperties::default()
        .with_message_id(message_id)
        .with_content_type(NOTIFICATION_CONTENT_TYPE)
        .with_persistence(true)
        .with_headers(headers)
        .finish()
}

/// Publishes `body` to the stack's exchange with the queue's routing key, as the scheduler does.
async fn publish(channel: &Channel, queue: &str, properties: BasicProperties, body: Vec<u8>) {
    channel
        .basic_publish(
            properties,
            body,
            BasicPublishArguments::new(queue, queue).finish(),
        )
        .await
        .unwrap_or_else(|error| panic!("publishing onto {queue}: {error}"));
}

/// A text header of a dead letter (those the broker adds: `x-first-death-reason`, ...).
fn text_header(properties: &BasicProperties, name: &str) -> Option<String> {
    let name = name.try_into().ok()?;
    match properties.headers()?.get(&name)? {
        FieldValue::S(text) => Some(text.to_string()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_are_not_notifications_are_dead_lettered_and_the_sender_carries_on() {
    let mut stack = Stack::start(0, 1).await;
    let queue = stack.queue().to_owned();
    let dead = format!("{queue}.dead");
    let connection = services::connect_broker(stack.amqp_url())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let channel = connection.open_channel(None).await.expect("a channel");

    let valid = notification(&stack).await;
    let encoded = valid.encode();
    let mut future = serde_json::from_slice::<serde_json::Value>(&encoded).expect("JSON");
    future["schema_version"] = 99.into();
    let current = i32::try_from(NOTIFICATION_SCHEMA_VERSION).expect("a small version");
    let bad = [
        Bad {
            id: "bad-garbage",
            body: b"\x00\xff\xfeGARBAGE\x07 not a notification".to_vec(),
            header_version: current,
            reason: "not a notification document",
        },
        Bad {
            id: "bad-truncated",
            body: encoded[..encoded.len() / 2].to_vec(),
            header_version: current,
            reason: "not a notification document",
        },
        Bad {
            id: "bad-future-version",
            body: serde_json::to_vec(&future).expect("JSON"),
            header_version: 99,
            reason: "schema version 99 is not supported",
        },
        Bad {
            id: "bad-empty",
            body: Vec::new(),
            header_version: current,
            reason: "not a notification document",
        },
    ];
    for message in &bad {
        publish(
            &channel,
            &queue,
            properties(message.id, message.header_version),
            message.body.clone(),
        )
        .await;
    }
    // The channel keeps the order: the valid one reaches the queue after the bad ones.
    let expected = Reminder {
        remind_at: valid.remind_at(),
        key: valid.idempotency_key().as_str().to_owned(),
    };
    publish(
        &channel,
        &queue,
        properties(&expected.key, current),
        encoded.clone(),
    )
    .await;

    wait_for_delivery(
        &stack,
        std::slice::from_ref(&expected),
        Duration::from_secs(15),
    )
    .await;

    // Every bad message in the dead-letter queue, as it was sent, rejected from the queue.
    let mut dead_letters: HashMap<String, (BasicProperties, Vec<u8>)> = HashMap::new();
    eventually(
        "every bad message dead-lettered",
        Duration::from_secs(10),
        async || {
            while let Some((_, properties, body)) = channel
                .basic_get(BasicGetArguments::new(&dead).no_ack(true).finish())
                .await
                .unwrap_or_else(|error| panic!("reading {dead}: {error}"))
            {
                let id = properties.message_id().cloned().unwrap_or_default();
                assert!(
                    dead_letters
                        .insert(id.clone(), (properties, body))
                        .is_none(),
                    "{id} dead-lettered twice"
                );
            }
            if dead_letters.len() >= bad.len() {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} in {dead}: {:?}",
                    dead_letters.len(),
                    bad.len(),
                    dead_letters.keys().collect::<Vec<_>>()
                ))
            }
        },
    )
    .await;
    assert_eq!(
        dead_letters.len(),
        bad.len(),
        "only the bad messages are dead letters: {:?}",
        dead_letters.keys().collect::<Vec<_>>()
    );
    let sender = &stack.senders[0];
    for message in &bad {
        let (properties, body) = dead_letters
            .get(message.id)
            .unwrap_or_else(|| panic!("{} is not in {dead}", message.id));
        assert_eq!(body, &message.body, "{}: the body changed", message.id);
        // The adapter rejects without requeueing; the broker says so in the headers it adds.
        assert_eq!(
            text_header(properties, "x-first-death-reason").as_deref(),
            Some("rejected"),
            "{}: {properties:?}",
            message.id
        );
        assert_eq!(
            text_header(properties, "x-first-death-queue").as_deref(),
            Some(queue.as_str()),
            "{}: {properties:?}",
            message.id
        );
        // The adapter sets no reason header: the sender's log line says why.
        let line = sender
            .process
            .wait_for_line(
                &format!("the rejection of {}", message.id),
                Duration::from_secs(1),
                |line| line["message"] == REJECTED_MESSAGE && line["message_id"] == message.id,
            )
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let reason = line["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("undecodable message") && reason.contains(message.reason),
            "{}: rejected because {reason:?}, expected {:?}",
            message.id,
            message.reason
        );
    }

    // The sender carried on: still running and ready, the valid notification delivered once.
    assert!(
        stack.senders[0].process.is_running(),
        "the sender exited:\n{}",
        stack.senders[0].process.tail()
    );
    let sender = &stack.senders[0];
    let (status, _) = http::get(sender.http, "/health/ready")
        .await
        .unwrap_or_else(|error| panic!("the sender's readiness: {error}"));
    assert_eq!(status, 200, "the sender is not ready");
    assert_eq!(Logged::by(&stack.senders).times(&expected.key), 1);
    assert_eq!(sender.metric(NOTIFICATIONS_DELIVERED).await, 1.0);
    assert_eq!(
        sender.metric(NOTIFICATIONS_DEAD_LETTERED).await,
        bad.len() as f64
    );
    eprintln!(
        "bad messages: {} dead-lettered ({}), the valid one delivered after them",
        dead_letters.len(),
        bad.iter().map(|m| m.id).collect::<Vec<_>>().join(", ")
    );
    let _ = channel.close().await;
    let _ = connection.close().await;
    stack.stop().await;
}
