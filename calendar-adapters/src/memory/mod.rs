//! In-process adapters: an event store, a reminder queue and a delivery log, all in memory.
//!
//! They keep nothing across restarts; they are what the service runs on when nothing else is
//! configured, and what tests run against. They enforce every rule the PostgreSQL and RabbitMQ
//! adapters do (the same contract suite runs on both).

mod delivery_log;
mod queue;
mod repository;

pub use delivery_log::MemoryDeliveryLog;
pub use queue::{DeadLetter, MemoryQueue};
pub use repository::MemoryEventRepository;

use crate::sync::lock;
