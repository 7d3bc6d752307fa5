//! The names and labels of every metric the service records, in one place for dashboards and
//! alerts. Served in the Prometheus text format by the metrics endpoint.
//!
//! Per request (calendar service methods only; labels `grpc_service`, `grpc_method`,
//! `grpc_code` such as `OK` or `INVALID_ARGUMENT`):
//! - [`REQUESTS_HANDLED`], a counter;
//! - [`REQUEST_DURATION`], a histogram in seconds with the buckets of
//!   `calendar_adapters::service::LATENCY_BUCKETS`.
//!
//! Domain counters: [`EVENTS_CREATED`], [`EVENTS_UPDATED`], [`EVENTS_DELETED`],
//! [`SLOT_CONFLICTS`], [`VERSION_CONFLICTS`], [`STORAGE_FAILURES`] (label `kind`:
//! `unavailable` or `internal`); and the gauge [`STORAGE_UP`].

/// Counter: calendar requests answered, by service, method and status code.
pub const REQUESTS_HANDLED: &str = "grpc_server_handled_total";

/// Histogram: seconds from receiving a calendar request to sending its response, by service,
/// method and status code.
pub const REQUEST_DURATION: &str = "grpc_server_handling_seconds";

/// Counter: events created (a retried create with a client-chosen id counts again).
pub const EVENTS_CREATED: &str = "calendar_events_created_total";

/// Counter: events updated.
pub const EVENTS_UPDATED: &str = "calendar_events_updated_total";

/// Counter: events deleted.
pub const EVENTS_DELETED: &str = "calendar_events_deleted_total";

/// Counter: creates and updates refused because the time slot was busy.
pub const SLOT_CONFLICTS: &str = "calendar_slot_conflicts_total";

/// Counter: updates refused because the event was at another version.
pub const VERSION_CONFLICTS: &str = "calendar_version_conflicts_total";

/// Counter: requests that failed in storage, by `kind` (`unavailable`, `internal`).
pub const STORAGE_FAILURES: &str = "calendar_storage_failures_total";

/// Gauge: 1 while the last storage health check succeeded, 0 otherwise.
pub const STORAGE_UP: &str = "calendar_storage_up";
