//! The calendar's gRPC service, `calendar.v1.CalendarService`, the server process around it and
//! its command-line client, `calendar`.
//!
//! # Layout
//!
//! - [`proto`]: the code generated from `proto/calendar/v1/calendar.proto` at build time
//!   (protox and tonic-prost-build, no `protoc`), and the descriptor set reflection serves.
//! - [`mapping`]: messages to domain values through the domain's validating constructors, and
//!   back; a refused value becomes a field violation naming the request field.
//! - [`status`]: every failure as a gRPC status with `google.rpc` error details.
//! - [`auth`]: the caller from the `x-user-id` metadata.
//! - [`service`]: the service implementation over the `Calendar` use case.
//! - [`middleware`]: per-request span, log line and metrics; deadlines; load shedding.
//! - [`metric_names`]: the names of every metric.
//! - [`server`]: [`server::run`], the server on a bound listener with health, reflection,
//!   limits and a bounded drain.
//! - [`config`] and [`app`]: the server binary's options (clap, with environment variables) and
//!   its assembly (in-memory or PostgreSQL storage, in-process reminders, metrics endpoint).
//! - [`cli`]: the `calendar` command-line client.
//! - [`robustness`]: the promise about any request body (accepted, or refused naming its
//!   fields), checked by the property tests and the fuzz target.
//!
//! The binaries, `calendar-grpc` (the server) and `calendar` (the client), only parse their
//! arguments and call into these modules.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod mapping;
pub mod metric_names;
pub mod middleware;
pub mod proto;
pub mod robustness;
pub mod server;
pub mod service;
pub mod status;
