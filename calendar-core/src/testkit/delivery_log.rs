//! The contract of [`DeliveryLog`]: what every delivery log must do.

use std::collections::HashSet;

use chrono::TimeDelta;

use super::fixtures::at;
use crate::domain::{EventId, IdempotencyKey, ReminderKey};
use crate::ports::DeliveryLog;

fn key(minutes: i64) -> IdempotencyKey {
    ReminderKey {
        event_id: EventId::generate(),
        remind_at: at("2030-03-01T09:00:00Z") + TimeDelta::minutes(minutes),
    }
    .idempotency_key()
}

/// A key never recorded was not delivered; a recorded one was, and recording is idempotent.
pub async fn recorded_keys_are_delivered(log: &dyn DeliveryLog) {
    let (first, second) = (key(1), key(2));
    assert!(!log.was_delivered(&first).await.expect("was delivered"));
    log.record_delivered(&first, at("2030-03-01T09:00:01Z"))
        .await
        .expect("record");
    log.record_delivered(&first, at("2030-03-01T09:00:02Z"))
        .await
        .expect("recording twice is fine");
    assert!(log.was_delivered(&first).await.expect("was delivered"));
    assert!(
        !log.was_delivered(&second).await.expect("was delivered"),
        "keys are distinct"
    );
}

/// Forgetting drops exactly the keys recorded before the cutoff, by their first record.
pub async fn forgetting_drops_only_older_keys(log: &dyn DeliveryLog) {
    let (old, again, recent) = (key(1), key(2), key(3));
    log.record_delivered(&old, at("2030-03-01T08:00:00Z"))
        .await
        .expect("record");
    log.record_delivered(&again, at("2030-03-01T08:30:00Z"))
        .await
        .expect("record");
    log.record_delivered(&again, at("2030-03-01T10:00:00Z"))
        .await
        .expect("record again");
    log.record_delivered(&recent, at("2030-03-01T09:30:00Z"))
        .await
        .expect("record");
    let forgotten = log
        .forget_before(at("2030-03-01T09:00:00Z"))
        .await
        .expect("forget");
    assert_eq!(
        forgotten, 2,
        "the two keys first recorded before the cutoff"
    );
    assert!(!log.was_delivered(&old).await.expect("was delivered"));
    assert!(
        !log.was_delivered(&again).await.expect("was delivered"),
        "a second record does not renew a key"
    );
    assert!(log.was_delivered(&recent).await.expect("was delivered"));
    assert_eq!(
        log.forget_before(at("2030-03-01T09:00:00Z"))
            .await
            .expect("forget"),
        0
    );
}

/// Asking about many keys at once answers as asking about each; recording many at once is
/// idempotent per key and keeps each key's first instant, also for a key twice in one batch.
pub async fn batches_answer_as_single_keys_do(log: &dyn DeliveryLog) {
    let (first, second, never) = (key(1), key(2), key(3));
    assert!(log.delivered_among(&[]).await.expect("no keys").is_empty());
    log.record_all_delivered(&[]).await.expect("no deliveries");
    assert!(
        log.delivered_among(&[first.clone(), second.clone()])
            .await
            .expect("delivered among")
            .is_empty()
    );
    log.record_delivered(&first, at("2030-03-01T09:00:01Z"))
        .await
        .expect("record");
    log.record_all_delivered(&[
        (second.clone(), at("2030-03-01T09:00:02Z")),
        (second.clone(), at("2030-03-01T09:30:00Z")),
        (first.clone(), at("2030-03-01T09:40:00Z")),
    ])
    .await
    .expect("record a batch");
    assert_eq!(
        log.delivered_among(&[first.clone(), never.clone(), second.clone()])
            .await
            .expect("delivered among"),
        HashSet::from([first.clone(), second.clone()]),
    );
    assert!(log.was_delivered(&second).await.expect("was delivered"));
    assert!(!log.was_delivered(&never).await.expect("was delivered"));
    assert_eq!(
        log.forget_before(at("2030-03-01T09:10:00Z"))
            .await
            .expect("forget"),
        2,
        "both keys by their first instants"
    );
    assert!(
        log.delivered_among(&[first, second])
            .await
            .expect("delivered among")
            .is_empty()
    );
}
