//! The calendar's background worker, one binary with two roles:
//!
//! - `calendar-worker scheduler`: claims due reminders in PostgreSQL, publishes them to
//!   RabbitMQ with publisher confirms, marks them sent; cleans up old events (one scheduler at
//!   a time). Several may run at once: claims are exclusive while their lease runs.
//! - `calendar-worker sender`: consumes the queue, deduplicates by idempotency key against the
//!   delivery log in PostgreSQL, delivers through the log notifier (one structured line per
//!   notification on stderr), acknowledges. Several may run at once: competing consumers.
//!
//! # Layout
//!
//! - [`config`]: the command line and environment ([`config::Config`]).
//! - [`app`]: wiring the roles from calendar-core's use cases and calendar-adapters' ports, the
//!   metrics and health endpoint, and the shutdown.

pub mod app;
pub mod config;
