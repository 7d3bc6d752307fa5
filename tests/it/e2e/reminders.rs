//! The scenarios of reminders end to end: delivered once and on time, held by the sender when
//! published ahead and checked against their event when due, re-armed by an update, cancelled
//! by a delete, skipped once their event started, exactly once with competing schedulers and
//! senders, and nothing lost when a sender is killed mid-stream.
//!
//! Each prints its figures (run with `--nocapture` to see them) and fails on any loss or
//! violated bound.

use std::time::Duration;

use calendar_core::instruments::{
    NOTIFICATIONS_CANCELLED, NOTIFICATIONS_DUPLICATE, REMINDERS_CONFIRMED, REMINDERS_SKIPPED_LATE,
};
use calendar_grpc::mapping::{datetime_to_timestamp, delta_to_duration};
use calendar_grpc::proto::calendar::v1 as pb;
use calendar_grpc::proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt as _;
use tonic::transport::Channel;

use super::deliveries::{Figures, Logged, Reminder, wait_for_delivery, wait_until_settled};
use super::eventually;
use super::stack::{Role, Stack};
use crate::as_user;

/// How long before its event a reminder falls due: longer than a scheduler tick, so that the
/// event has not started when its reminder is due (a reminder whose event started is skipped).
const LEAD: TimeDelta = TimeDelta::minutes(10);

/// The promise: a reminder is delivered within this of its due instant (the scheduler ticks
/// every second).
const ON_TIME: TimeDelta = TimeDelta::seconds(2);

/// Most creates in flight at once (the server refuses more than 256).
const CREATES_IN_FLIGHT: usize = 64;

type Client = CalendarServiceClient<Channel>;

/// Now, to the millisecond.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// A 30-minute event starting at `start` with a reminder [`LEAD`] before; it may overlap
/// others, so that any number fit in a user's calendar.
fn event(title: &str, start: DateTime<Utc>) -> pb::Event {
    pb::Event {
        title: title.to_owned(),
        start_time: Some(datetime_to_timestamp(start)),
        duration: Some(delta_to_duration(TimeDelta::minutes(30))),
        notify_before: Some(delta_to_duration(LEAD)),
        overlap_policy: pb::OverlapPolicy::Allow.into(),
        ..pb::Event::default()
    }
}

/// A start whose reminder falls due `due_in` after `now`.
fn due_at(now: DateTime<Utc>, due_in: TimeDelta) -> DateTime<Utc> {
    now + LEAD + due_in
}

async fn create(client: &mut Client, user: &str, event: pb::Event) -> pb::Event {
    let request = pb::CreateEventRequest {
        event: Some(event),
        event_id: String::new(),
    };
    client
        .create_event(as_user(user, request))
        .await
        .unwrap_or_else(|status| panic!("CreateEvent failed: {status:?}"))
        .into_inner()
}

/// Moves `event` to start at `start`, its reminder still [`LEAD`] before.
async fn move_to(
    client: &mut Client,
    user: &str,
    event: pb::Event,
    start: DateTime<Utc>,
) -> pb::Event {
    let request = pb::UpdateEventRequest {
        expected_version: Some(event.version),
        event: Some(pb::Event {
            start_time: Some(datetime_to_timestamp(start)),
            ..event
        }),
    };
    client
        .update_event(as_user(user, request))
        .await
        .unwrap_or_else(|status| panic!("UpdateEvent failed: {status:?}"))
        .into_inner()
}

/// Creates `count` events at once (at most [`CREATES_IN_FLIGHT`] in flight), spread over 100
/// users, the `i`-th with its reminder due `due_in(i)` after `now`; their reminders.
async fn create_many(
    stack: &Stack,
    count: usize,
    now: DateTime<Utc>,
    due_in: impl Fn(usize) -> TimeDelta,
) -> Vec<Reminder> {
    let client = stack.client().await;
    futures::stream::iter(0..count)
        .map(|i| {
            let mut client = client.clone();
            let event = event(&format!("Reminder {i}"), due_at(now, due_in(i)));
            async move { Reminder::of(&create(&mut client, &format!("user-{}", i % 100), event).await) }
        })
        .buffer_unordered(CREATES_IN_FLIGHT)
        .collect()
        .await
}

/// `count` instants spread evenly over [`from`, `to`].
fn spread(count: usize, from: TimeDelta, to: TimeDelta) -> impl Fn(usize) -> TimeDelta {
    let step = (to - from) / i32::try_from(count.max(2) - 1).expect("a small count");
    move |i| from + step * i32::try_from(i).expect("a small index")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_due_in_one_to_three_seconds_are_delivered_once_within_two_seconds() {
    let stack = Stack::start(1, 1).await;
    let count = 30;

    let reminders = create_many(
        &stack,
        count,
        now(),
        spread(count, TimeDelta::seconds(1), TimeDelta::seconds(3)),
    )
    .await;
    wait_for_delivery(&stack, &reminders, Duration::from_secs(20)).await;
    wait_until_settled(&stack, count).await;

    let figures = Figures::measure(&stack, &reminders).await;
    eprintln!("on time: {figures}");
    figures.assert_exactly_once();
    figures.assert_late_at_most(ON_TIME);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_published_ahead_is_held_until_due_and_checked_against_its_event_then() {
    let stack = Stack::start(1, 1).await;
    let (scheduler, sender) = (&stack.schedulers[0], &stack.senders[0]);
    let mut client = stack.client().await;
    // Each event's reminder falls due 8 s from now.
    let start = due_at(now(), TimeDelta::seconds(8));
    let kept = create(&mut client, "ann", event("Kept", start)).await;
    let renamed = create(&mut client, "bob", event("Renamed", start)).await;
    let deleted = create(&mut client, "cid", event("Deleted", start)).await;
    // The scheduler looks 30 s ahead: all three are published at its next tick.
    scheduler
        .wait_for_metric(REMINDERS_CONFIRMED, 3.0, Duration::from_secs(5))
        .await;
    let request = pb::UpdateEventRequest {
        expected_version: Some(renamed.version),
        event: Some(pb::Event {
            title: "Renamed, room 4".to_owned(),
            ..renamed.clone()
        }),
    };
    client
        .update_event(as_user("bob", request))
        .await
        .expect("UpdateEvent");
    client
        .delete_event(as_user(
            "cid",
            pb::DeleteEventRequest {
                id: deleted.id.clone(),
            },
        ))
        .await
        .expect("DeleteEvent");
    assert!(
        now() < start - LEAD,
        "the test ran too slowly: its reminders fell due before the changes were made"
    );

    let delivered = [Reminder::of(&kept), Reminder::of(&renamed)];
    wait_for_delivery(&stack, &delivered, Duration::from_secs(20)).await;
    // The deleted event's reminder dropped.
    sender
        .wait_for_metric(NOTIFICATIONS_CANCELLED, 1.0, Duration::from_secs(10))
        .await;
    let logged = Logged::by(&stack.senders);
    assert_eq!(
        logged.of_event(&deleted.id),
        0,
        "the deleted event's reminder was delivered"
    );
    let title = sender.process.with_lines(|lines| {
        lines
            .iter()
            .find(|line| line["event_id"] == renamed.id.as_str() && line["title"].is_string())
            .and_then(|line| line["title"].as_str().map(str::to_owned))
    });
    assert_eq!(
        title.as_deref(),
        Some("Renamed, room 4"),
        "delivered as the event read when it fell due"
    );
    let figures = Figures::measure(&stack, &delivered).await;
    eprintln!("published ahead and held: {figures}");
    figures.assert_exactly_once();
    // Held until due: not before it (checked here), and within the promise after.
    figures.assert_late_at_most(ON_TIME);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_rearms_a_delete_cancels_and_a_started_event_is_skipped() {
    let stack = Stack::start(1, 1).await;
    let scheduler = &stack.schedulers[0];
    let skipped_before = scheduler.metric(REMINDERS_SKIPPED_LATE).await;
    let mut client = stack.client().await;
    let t0 = now();

    // Due in 2 s, then moved: due in 5 s instead.
    let moved = create(
        &mut client,
        "ann",
        event("Moved", due_at(t0, TimeDelta::seconds(2))),
    )
    .await;
    let moved_from = Reminder::of(&moved);
    let moved = move_to(&mut client, "ann", moved, due_at(t0, TimeDelta::seconds(5))).await;
    let moved_to = Reminder::of(&moved);
    assert_ne!(moved_from.key, moved_to.key);

    // Due in 2 s, deleted at once.
    let deleted = create(
        &mut client,
        "bob",
        event("Deleted", due_at(t0, TimeDelta::seconds(2))),
    )
    .await;
    client
        .delete_event(as_user(
            "bob",
            pb::DeleteEventRequest {
                id: deleted.id.clone(),
            },
        ))
        .await
        .expect("DeleteEvent");

    // Started a minute ago: its reminder fell due 11 minutes ago.
    let started = create(
        &mut client,
        "cid",
        event("Started", t0 - TimeDelta::minutes(1)),
    )
    .await;

    // Due in 1 s; once delivered, moved: a reminder that was sent is armed again.
    let again = create(
        &mut client,
        "dee",
        event("Again", due_at(t0, TimeDelta::seconds(1))),
    )
    .await;
    let again_first = Reminder::of(&again);
    wait_for_delivery(
        &stack,
        std::slice::from_ref(&again_first),
        Duration::from_secs(10),
    )
    .await;
    let again = move_to(
        &mut client,
        "dee",
        again,
        due_at(now(), TimeDelta::seconds(1)),
    )
    .await;
    let again_second = Reminder::of(&again);

    let delivered = [moved_to, again_first, again_second];
    wait_for_delivery(&stack, &delivered, Duration::from_secs(15)).await;
    // The started event's reminder skipped.
    scheduler
        .wait_for_metric(
            REMINDERS_SKIPPED_LATE,
            skipped_before + 1.0,
            Duration::from_secs(10),
        )
        .await;
    scheduler
        .process
        .wait_for_line("the skipped reminder", Duration::from_secs(1), |line| {
            line["message"] == "reminder skipped: its event has already started"
                && line["event_id"] == started.id.as_str()
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    wait_until_settled(&stack, delivered.len()).await;

    // The scheduler claims in order of due instant, so what fell due 3 s before the moved
    // reminder's new instant (its old instant, the deleted event's) would have been delivered.
    let logged = Logged::by(&stack.senders);
    assert_eq!(
        logged.times(&moved_from.key),
        0,
        "delivered for the instant it was moved from"
    );
    assert_eq!(logged.of_event(&moved.id), 1, "the moved event's reminder");
    assert_eq!(
        logged.of_event(&deleted.id),
        0,
        "the deleted event's reminder was delivered"
    );
    assert_eq!(
        logged.of_event(&started.id),
        0,
        "the started event's reminder was delivered"
    );
    assert_eq!(logged.of_event(&again.id), 2, "the reminder armed again");
    let figures = Figures::measure(&stack, &delivered).await;
    eprintln!("re-armed, cancelled, skipped: {figures}");
    figures.assert_exactly_once();
    figures.assert_late_at_most(ON_TIME);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_and_two_senders_deliver_a_thousand_reminders_exactly_once() {
    let stack = Stack::start(2, 2).await;
    let count = 1_000;

    let started = tokio::time::Instant::now();
    let reminders = create_many(
        &stack,
        count,
        now(),
        spread(count, TimeDelta::seconds(5), TimeDelta::seconds(7)),
    )
    .await;
    eprintln!("created {count} events in {:?}", started.elapsed());
    wait_for_delivery(&stack, &reminders, Duration::from_secs(60)).await;
    wait_until_settled(&stack, count).await;

    let figures = Figures::measure(&stack, &reminders).await;
    eprintln!("two schedulers, two senders: {figures}");
    for scheduler in &stack.schedulers {
        eprintln!(
            "  {} published {}",
            scheduler.process.name(),
            scheduler.metric(REMINDERS_CONFIRMED).await
        );
    }
    for sender in &stack.senders {
        let delivered = Logged::by(std::slice::from_ref(sender)).delivered(&reminders);
        eprintln!("  {} delivered {delivered}", sender.process.name());
        assert!(delivered > 0, "{} delivered nothing", sender.process.name());
    }
    figures.assert_exactly_once();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_mid_stream_and_restarted_loses_nothing() {
    let mut stack = Stack::start(1, 1).await;
    let count = 1_000;

    // A stream of about 170 reminders a second.
    let reminders = create_many(
        &stack,
        count,
        now(),
        spread(count, TimeDelta::seconds(4), TimeDelta::seconds(10)),
    )
    .await;
    eventually("a third delivered", Duration::from_secs(30), async || {
        let delivered = Logged::by(&stack.senders).delivered(&reminders);
        if delivered >= count / 3 {
            Ok(())
        } else {
            Err(format!("{delivered} delivered"))
        }
    })
    .await;
    stack.senders[0].process.kill();
    let before = Logged::by(&stack.senders).delivered(&reminders);
    assert!(before < count, "the stream was over before the kill");

    stack.start_worker(Role::Sender).await;
    wait_for_delivery(&stack, &reminders, Duration::from_secs(60)).await;
    let suppressed_metric = stack.senders[1].metric(NOTIFICATIONS_DUPLICATE).await;

    let figures = Figures::measure(&stack, &reminders).await;
    eprintln!(
        "sender killed after {before} of {count} and restarted: {figures}; the restarted sender \
         counted {suppressed_metric} duplicates suppressed"
    );
    figures.assert_none_lost();
    stack.stop().await;
}
