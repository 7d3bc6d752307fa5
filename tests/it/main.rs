//! Tests across the calendar's crates and processes, in one test binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod e2e;
mod mocks;
