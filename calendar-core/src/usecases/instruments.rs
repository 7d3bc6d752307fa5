//! The metrics the use cases record, through the `metrics` facade: nothing is recorded until
//! the embedding process installs a recorder (the service binaries export them to Prometheus).

/// Counter: reminders claimed by scheduler ticks.
pub const REMINDERS_CLAIMED: &str = "calendar_reminders_claimed_total";
/// Counter: reminders handed to the queue.
pub const REMINDERS_PUBLISHED: &str = "calendar_reminders_published_total";
/// Counter: reminders the queue confirmed (then marked sent).
pub const REMINDERS_CONFIRMED: &str = "calendar_reminders_confirmed_total";
/// Counter: reminders the queue did not confirm (released for another try).
pub const REMINDERS_FAILED: &str = "calendar_reminders_publish_failed_total";
/// Counter: reminders skipped because their event had already started.
pub const REMINDERS_SKIPPED_LATE: &str = "calendar_reminders_skipped_late_total";
/// Histogram, seconds: from a reminder's due instant to the queue's confirmation; 0 for a
/// reminder confirmed ahead of its due instant (the scheduler's look-ahead).
pub const REMINDER_PUBLISH_LAG: &str = "calendar_reminder_publish_lag_seconds";
/// Counter: events deleted by cleanup.
pub const EVENTS_CLEANED_UP: &str = "calendar_events_cleaned_up_total";
/// Counter: notifications delivered by the notifier.
pub const NOTIFICATIONS_DELIVERED: &str = "calendar_notifications_delivered_total";
/// Counter: notifications received again and suppressed.
pub const NOTIFICATIONS_DUPLICATE: &str = "calendar_notifications_duplicates_suppressed_total";
/// Counter: notifications dropped because their event was deleted or their reminder moved
/// after they were published.
pub const NOTIFICATIONS_CANCELLED: &str = "calendar_notifications_cancelled_total";
/// Gauge: notifications a sender holds because they arrived before they fall due.
pub const NOTIFICATIONS_HELD: &str = "calendar_notifications_held";
/// Counter: notifications returned to the queue after the notifier failed.
pub const NOTIFICATIONS_RETRIED: &str = "calendar_notifications_retried_total";
/// Counter: messages moved to the dead-letter queue.
pub const NOTIFICATIONS_DEAD_LETTERED: &str = "calendar_notifications_dead_lettered_total";
/// Histogram, seconds: from a reminder's due instant to its delivery.
pub const NOTIFICATION_DELIVERY_LAG: &str = "calendar_notification_delivery_lag_seconds";

/// Every metric above with its kind and meaning, for documentation and exporters.
pub const ALL: &[(&str, &str, &str)] = &[
    (
        REMINDERS_CLAIMED,
        "counter",
        "reminders claimed by scheduler ticks",
    ),
    (
        REMINDERS_PUBLISHED,
        "counter",
        "reminders handed to the queue",
    ),
    (
        REMINDERS_CONFIRMED,
        "counter",
        "reminders the queue confirmed, then marked sent",
    ),
    (
        REMINDERS_FAILED,
        "counter",
        "reminders the queue did not confirm, released for another try",
    ),
    (
        REMINDERS_SKIPPED_LATE,
        "counter",
        "reminders skipped because their event had already started",
    ),
    (
        REMINDER_PUBLISH_LAG,
        "histogram",
        "seconds from a reminder's due instant to the queue's confirmation (0 when confirmed ahead of it)",
    ),
    (EVENTS_CLEANED_UP, "counter", "events deleted by cleanup"),
    (
        NOTIFICATIONS_DELIVERED,
        "counter",
        "notifications delivered by the notifier",
    ),
    (
        NOTIFICATIONS_DUPLICATE,
        "counter",
        "notifications received again and suppressed",
    ),
    (
        NOTIFICATIONS_CANCELLED,
        "counter",
        "notifications dropped: their event was deleted or their reminder moved after publishing",
    ),
    (
        NOTIFICATIONS_HELD,
        "gauge",
        "notifications held because they arrived before they fall due",
    ),
    (
        NOTIFICATIONS_RETRIED,
        "counter",
        "notifications returned to the queue after the notifier failed",
    ),
    (
        NOTIFICATIONS_DEAD_LETTERED,
        "counter",
        "messages moved to the dead-letter queue",
    ),
    (
        NOTIFICATION_DELIVERY_LAG,
        "histogram",
        "seconds from a reminder's due instant to its delivery",
    ),
];

/// A signed duration in seconds, for a histogram.
pub(crate) fn seconds(delta: chrono::TimeDelta) -> f64 {
    delta
        .num_microseconds()
        .map_or(f64::MAX, |us| us as f64 / 1e6)
}
