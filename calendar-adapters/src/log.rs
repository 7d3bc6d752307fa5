//! A notifier that delivers by logging: one structured line per notification.

use async_trait::async_trait;
use calendar_core::{Notification, Notifier, NotifyError};
use chrono::SecondsFormat::AutoSi;

/// The `tracing` target of the notification lines, for filtering them
/// (`RUST_LOG=calendar::notification=info`).
pub const NOTIFICATION_TARGET: &str = "calendar::notification";

/// Delivers each notification as one `INFO` event on the [`NOTIFICATION_TARGET`] target, with
/// the fields `event_id`, `user`, `title`, `event_start` and `remind_at` (RFC 3339, UTC) and
/// `idempotency_key`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        tracing::info!(
            target: NOTIFICATION_TARGET,
            event_id = %notification.event_id(),
            user = %notification.user(),
            title = %notification.title(),
            event_start = %notification.event_start().to_rfc3339_opts(AutoSi, true),
            remind_at = %notification.remind_at().to_rfc3339_opts(AutoSi, true),
            idempotency_key = %notification.idempotency_key(),
            "reminder delivered"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calendar_core::Event;
    use calendar_core::testkit::fixtures::{at, details, user, with_reminder};
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_one_structured_line_per_notification() {
        let notification = Event::new(
            "0190f5d2-6a43-7c3e-9a10-6f2b3c4d5e6f".parse().unwrap(),
            user("ann"),
            with_reminder(details("Dentist", at("2030-03-01T09:00:00Z"), 30), 15),
            at("2030-01-01T00:00:00Z"),
        )
        .notification()
        .unwrap();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(LogNotifier.notify(&notification)).unwrap();
        });
        let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {output}");
        for field in [
            r#""target":"calendar::notification""#,
            r#""event_id":"0190f5d2-6a43-7c3e-9a10-6f2b3c4d5e6f""#,
            r#""user":"ann""#,
            r#""title":"Dentist""#,
            r#""event_start":"2030-03-01T09:00:00Z""#,
            r#""remind_at":"2030-03-01T08:45:00Z""#,
            r#""idempotency_key":"0190f5d2-6a43-7c3e-9a10-6f2b3c4d5e6f@1898585100000000""#,
        ] {
            assert!(
                lines[0].contains(field),
                "{field} missing from {}",
                lines[0]
            );
        }
    }
}
