//! The server process's assembly: in-process reminders and the storage choice.

use std::sync::Arc;
use std::time::Duration;

use calendar_adapters::memory::MemoryEventRepository;
use calendar_core::{
    EventDetails, EventId, EventRepository, EventSpan, MockNotifier, NotifyBefore, SchedulerConfig,
    SenderConfig, Title, UserId,
};
use calendar_grpc::app::{self, AppError};
use calendar_grpc::config::Config;
use chrono::{TimeDelta, Utc};
use clap::Parser as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::support::metrics;

#[tokio::test]
async fn in_process_reminders_reach_the_notifier() {
    let events = Arc::new(MemoryEventRepository::new());
    // Starts in two minutes, reminds five minutes before: due now, and not late.
    let now = Utc::now();
    let mut details = EventDetails::new(
        Title::new("Standup").unwrap(),
        EventSpan::new(now + TimeDelta::minutes(2), TimeDelta::minutes(15)).unwrap(),
    );
    details.notify_before = Some(NotifyBefore::new(TimeDelta::minutes(5)).unwrap());
    let event = calendar_core::Event::new(
        EventId::generate(),
        UserId::new("ann").unwrap(),
        details,
        now,
    );
    events.insert(&event).await.unwrap();

    let (delivered, mut deliveries) = mpsc::unbounded_channel();
    let mut notifier = MockNotifier::new();
    notifier.expect_notify().returning(move |notification| {
        let _ = delivered.send(notification.clone());
        Ok(())
    });
    let shutdown = CancellationToken::new();
    let pipeline = tokio::spawn(app::run_reminders(
        events,
        Arc::new(notifier),
        SchedulerConfig {
            tick_interval: Duration::from_millis(20),
            ..SchedulerConfig::default()
        },
        SenderConfig::default(),
        shutdown.clone(),
    ));
    let notification = tokio::time::timeout(Duration::from_secs(5), deliveries.recv())
        .await
        .expect("the reminder was delivered")
        .unwrap();
    assert_eq!(notification.event_id(), event.id());
    assert_eq!(notification.title().as_str(), "Standup");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), pipeline)
        .await
        .expect("the pipeline stops at shutdown")
        .unwrap();
}

fn config(args: &[&str]) -> Config {
    let defaults = [
        "calendar-grpc",
        "--listen-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--drain-timeout",
        "1s",
    ];
    let mut config = Config::try_parse_from(defaults.iter().chain(args)).unwrap();
    // The test run's own DATABASE_URL must not pick the storage.
    config.database_url = None;
    config
}

#[tokio::test]
async fn the_embedded_server_starts_and_stops() {
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let config = config(&["--reminders", "in-process"]);
    tokio::time::timeout(
        Duration::from_secs(10),
        app::run(&config, metrics().clone(), shutdown),
    )
    .await
    .expect("it stops at shutdown")
    .unwrap();
}

#[tokio::test]
async fn a_bad_database_url_stops_the_start() {
    let mut config = config(&[]);
    config.database_url = Some("mysql://calendar@localhost/calendar".to_owned());
    let error = app::run(&config, metrics().clone(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(error, AppError::Storage(_)), "{error}");
}
