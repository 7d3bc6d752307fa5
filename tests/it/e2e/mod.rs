//! Reminders end to end: the built binaries (`calendar-grpc`, `calendar-worker scheduler`,
//! `calendar-worker sender`) as real processes on PostgreSQL and RabbitMQ, driven through gRPC
//! and watched through their JSON logs, their /metrics and the sender's delivery log.
//!
//! - `calendar_tests::harness`: one binary as a child process, its stderr captured, killed on
//!   drop; the processes' HTTP endpoint; databases of one's own (shared with the benchmark).
//! - [`stack`]: a deployment of its own per test (database, queue, server, workers).
//! - [`deliveries`]: the reminders a test expects, and what the senders made of them
//!   (deliveries per idempotency key, duplicates, lateness).
//! - [`reminders`]: the scenarios.
//! - [`dead_letters`]: messages on the queue that are not notifications.
//! - [`faults`]: reminders through killed workers, a restarted broker and cut database
//!   connections (ignored by default: it restarts the machine's broker).
//!
//! PostgreSQL (`DATABASE_URL`) and RabbitMQ (`AMQP_URL`) must be running: a missing one fails
//! the test, it is never skipped (`bash deploy/test.sh` starts both). The binaries must be
//! built (`cargo test --workspace` builds them). The scenarios run one at a time (each
//! [`stack::Stack`] holds the others off): they measure lateness on a machine they share with
//! the rest of the suite.

use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

mod dead_letters;
mod deliveries;
mod faults;
mod reminders;
mod stack;

/// Holds the other end-to-end scenarios off while the guard lives.
async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: std::sync::OnceLock<Mutex<()>> = std::sync::OnceLock::new();
    SERIAL.get_or_init(|| Mutex::new(())).lock().await
}

/// How often [`eventually`] looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What `check` returns once it returns `Ok`, looking every [`POLL_INTERVAL`]; if `timeout`
/// passes first, panics with `what` and the last `Err` (what `check` saw).
async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) => assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; {state}"
            ),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
