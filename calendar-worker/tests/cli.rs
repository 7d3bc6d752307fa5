//! The `calendar-worker` binary's command line, run as a process: what an operator sees.
//! (Also what makes `cargo test --workspace` build the binary for the end-to-end tests.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

/// Runs `calendar-worker` with `args` and no environment at all.
fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_calendar-worker"))
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

/// The long help of a role.
fn help(role: &str) -> String {
    let output = worker(&[role, "--help"]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// Each option of `help` with the text that describes it, up to the next option or heading.
fn options(help: &str) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--") {
            let name = rest.split([' ', '<']).next().unwrap_or_default();
            options.push((format!("--{name}"), String::new()));
        } else if trimmed.starts_with("-h, --help") || line.starts_with(|c: char| c != ' ') {
            // Help itself, and headings, end the option before.
            options.push((String::new(), String::new()));
        } else if let Some((_, text)) = options.last_mut() {
            text.push_str(trimmed);
            text.push('\n');
        }
    }
    options.retain(|(name, _)| !name.is_empty() && name != "--version");
    options
}

#[test]
fn the_help_names_both_roles() {
    let output = worker(&["--help"]);
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("scheduler"), "{help}");
    assert!(help.contains("sender"), "{help}");
}

/// Options of both roles, with their environment variables.
const SHARED: &[(&str, &str)] = &[
    ("--database-url", "DATABASE_URL"),
    ("--amqp-url", "AMQP_URL"),
    ("--queue", "CALENDAR_QUEUE"),
    ("--queue-expires", "CALENDAR_QUEUE_EXPIRES"),
    ("--metrics-addr", "CALENDAR_METRICS_ADDR"),
    ("--log-format", "CALENDAR_LOG_FORMAT"),
];

#[test]
fn every_option_of_both_roles_shows_its_environment_variable() {
    let scheduler = [
        ("--tick", "CALENDAR_SCHEDULER_TICK"),
        ("--lease", "CALENDAR_SCHEDULER_LEASE"),
        ("--max-in-flight", "AMQP_MAX_IN_FLIGHT"),
    ];
    let sender = [
        ("--concurrency", "CALENDAR_SENDER_CONCURRENCY"),
        ("--prefetch", "AMQP_PREFETCH"),
        ("--delivery-retention", "CALENDAR_DELIVERY_RETENTION"),
    ];
    for (role, own) in [("scheduler", scheduler), ("sender", sender)] {
        let expected: Vec<_> = SHARED.iter().chain(&own).collect();
        let help = help(role);
        let options = options(&help);
        assert!(options.len() >= expected.len(), "{role}: {options:?}");
        for (option, text) in &options {
            assert!(
                text.contains("[env: "),
                "{role} {option} shows no environment variable:\n{help}"
            );
        }
        for (option, variable) in expected {
            let Some((_, text)) = options.iter().find(|(name, _)| name == option) else {
                panic!("{role} --help does not list {option}:\n{help}");
            };
            assert!(
                text.contains(&format!("[env: {variable}")),
                "{role} {option} is not {variable}:\n{text}"
            );
        }
    }
}

#[test]
fn a_role_without_a_database_says_what_is_missing() {
    for role in ["scheduler", "sender"] {
        let output = worker(&[role]);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("--database-url"), "{stderr}");
    }
}
