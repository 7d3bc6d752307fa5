//! The ports' mocks, used the way a downstream crate uses them: through the `mocks` feature.

use std::sync::Arc;

use calendar_core::{
    Calendar, CalendarError, Clock, DeliveryLog, EventDetails, EventId, EventRepository, EventSpan,
    MockClock, MockDeliveryLog, MockEventRepository, MockNotificationSource, MockNotifier,
    MockReminderQueue, NotificationSource, Notifier, ReminderQueue, RepositoryError, Title, UserId,
};
use chrono::{DateTime, TimeDelta, Utc};

fn takes_every_port(
    _: &dyn EventRepository,
    _: &dyn ReminderQueue,
    _: &dyn NotificationSource,
    _: &dyn DeliveryLog,
    _: &dyn Notifier,
    _: &dyn Clock,
) {
}

/// Compiles only if every mock is usable where its port is expected.
#[test]
fn every_mock_stands_in_for_its_port() {
    takes_every_port(
        &MockEventRepository::new(),
        &MockReminderQueue::new(),
        &MockNotificationSource::new(),
        &MockDeliveryLog::new(),
        &MockNotifier::new(),
        &MockClock::new(),
    );
    let _shared: Arc<dyn EventRepository> = Arc::new(MockEventRepository::new());
}

fn noon() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-05-01T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn clock_at(now: DateTime<Utc>) -> Arc<MockClock> {
    let mut clock = MockClock::new();
    clock.expect_now().return_const(now);
    Arc::new(clock)
}

#[tokio::test]
async fn a_busy_slot_reaches_the_caller_with_the_event_in_the_way() {
    let in_the_way = EventId::generate();
    let mut repository = MockEventRepository::new();
    repository
        .expect_insert()
        .withf(|event| event.title().as_str() == "Lunch" && event.created_at() == noon())
        .times(1)
        .returning(move |_| {
            Err(RepositoryError::SlotBusy {
                conflicting: Some(in_the_way),
            })
        });
    let calendar = Calendar::new(Arc::new(repository), clock_at(noon()));
    let details = EventDetails::new(
        Title::new("Lunch").unwrap(),
        EventSpan::new(noon() + TimeDelta::hours(1), TimeDelta::hours(1)).unwrap(),
    );
    let error = calendar
        .create(&UserId::new("ann").unwrap(), None, details)
        .await
        .unwrap_err();
    assert!(
        matches!(error, CalendarError::SlotBusy { conflicting: Some(id) } if id == in_the_way),
        "got {error:?}"
    );
}

#[tokio::test]
async fn the_store_being_down_is_unavailable_not_missing() {
    let mut repository = MockEventRepository::new();
    repository
        .expect_get()
        .returning(|_, _| Err(RepositoryError::Unavailable("connection refused".into())));
    let calendar = Calendar::new(Arc::new(repository), clock_at(noon()));
    let error = calendar
        .get(&UserId::new("ann").unwrap(), EventId::generate())
        .await
        .unwrap_err();
    assert!(
        matches!(error, CalendarError::Unavailable(_)),
        "got {error:?}"
    );
}
