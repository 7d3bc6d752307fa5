//! Adapters for the ports of `calendar-core`, each behind its own cargo feature.
//!
//! | feature | adapters |
//! |---|---|
//! | `memory` (default) | [`memory::MemoryEventRepository`], [`memory::MemoryQueue`], [`memory::MemoryDeliveryLog`] |
//! | `log` (default) | [`log::LogNotifier`] |
//! | `postgres` | [`postgres::PostgresEventRepository`]: the event store on PostgreSQL, with [`postgres::connect`] and [`postgres::migrate`] |
//! | `amqp` | [`amqp::AmqpBroker`]: the reminder queue on RabbitMQ |
//! | `service` | not an adapter: what the service binaries share, [`service`] (logs on stderr, the Prometheus and health endpoint, the shutdown signal, durations) |
//!
//! Every event store and queue here passes the contract suite of `calendar-core`'s `testkit`.

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "log")]
pub mod log;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "service")]
pub mod service;
#[cfg(any(feature = "memory", feature = "amqp", feature = "postgres"))]
mod sync;
