//! The README's configuration table of `calendar-worker` checked against the `--help` of both
//! roles, so neither can drift from the other.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The checker is calendar-grpc's; a crate's tests can only run that crate's binaries.
#[path = "../../calendar-grpc/tests/grpc/options_table.rs"]
mod options_table;

use options_table::{assert_documented, help_of, readme};

#[test]
fn every_option_of_both_roles_is_in_the_readme_table() {
    let worker = env!("CARGO_BIN_EXE_calendar-worker");
    let scheduler = help_of(worker, &["scheduler"]);
    let sender = help_of(worker, &["sender"]);
    assert_documented(
        &readme(env!("CARGO_MANIFEST_DIR")),
        "calendar-worker",
        &[("scheduler", &scheduler), ("sender", &sender)],
    );
}
