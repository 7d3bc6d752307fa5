use chrono::{DateTime, Utc};

use crate::domain::limits::to_micros;

/// The current time. A port so that tests can stop and move it.
///
/// Synchronous: reading a clock does not wait on anything.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// The current instant, to the microsecond.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        to_micros(Utc::now())
    }
}
