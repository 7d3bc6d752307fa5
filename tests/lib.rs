//! Tests across the calendar's crates and processes (the tests live in `it/`), and the load
//! generator `calendar-bench` (in `bench/`), with what both share to run the calendar's
//! binaries as processes ([`harness`]).

pub mod harness;
