//! The README's operator reference checked against the binaries: the configuration tables of
//! `calendar-grpc` and `calendar` against their `--help`, the metrics table against the
//! metric names the code records.

use calendar_core::usecases::instruments;
use calendar_grpc::metric_names;

use crate::options_table::{assert_documented, differences, help_of, parse_help, readme};

#[test]
fn every_server_option_is_in_the_readme_table() {
    let help = help_of(env!("CARGO_BIN_EXE_calendar-grpc"), &[]);
    assert_documented(
        &readme(env!("CARGO_MANIFEST_DIR")),
        "calendar-grpc",
        &[("", &help)],
    );
}

#[test]
fn every_client_option_is_in_the_readme_table() {
    let help = help_of(env!("CARGO_BIN_EXE_calendar"), &[]);
    assert_documented(
        &readme(env!("CARGO_MANIFEST_DIR")),
        "calendar",
        &[("", &help)],
    );
}

/// A `--help` in clap's long format, and one in its short format.
const LONG_HELP: &str = "Usage: demo serve [OPTIONS] --database-url <DATABASE_URL>

Options:
  -h, --help
          Print help

Storage:
      --database-url <DATABASE_URL>
          PostgreSQL URL

          [env: DATABASE_URL]

      --mode <MODE>
          How

          Possible values:
          - fast: Quickly
          - safe: Carefully

          [env: DEMO_MODE=fast]
          [default: safe]
";

const SHORT_HELP: &str = "Usage: demo [OPTIONS] <COMMAND>

Options:
      --addr <ADDR>  Address [env: DEMO_ADDR=] [default: http://127.0.0.1:1]
  -u, --user <USER>  The user [env: DEMO_USER=]
      --json         Print JSON
  -h, --help         Print help
";

#[test]
fn help_is_read_in_both_of_claps_formats() {
    let long = parse_help(LONG_HELP);
    assert_eq!(long.len(), 2, "{long:?}");
    let url = &long["--database-url"];
    assert_eq!(url.env.as_deref(), Some("DATABASE_URL"));
    assert!(url.required && url.default.is_none());
    let mode = &long["--mode"];
    assert_eq!(
        mode.env.as_deref(),
        Some("DEMO_MODE"),
        "the value shown is not the name"
    );
    assert_eq!(mode.default.as_deref(), Some("safe"));
    assert_eq!(mode.values, ["fast", "safe"]);
    assert!(!mode.required);

    let short = parse_help(SHORT_HELP);
    assert_eq!(
        short.keys().collect::<Vec<_>>(),
        ["--addr", "--json", "--user"]
    );
    assert_eq!(
        short["--addr"].default.as_deref(),
        Some("http://127.0.0.1:1")
    );
    assert_eq!(short["--user"].env.as_deref(), Some("DEMO_USER"));
    assert_eq!(short["--json"], Default::default());
}

#[test]
fn the_table_check_reports_every_kind_of_drift() {
    let good = "<!-- options: demo -->
| variable | flag | role | default | meaning |
|---|---|---|---|---|
| `DATABASE_URL` | `--database-url` | serve | required | where |
| `DEMO_MODE` | `--mode` | serve | `safe` | `fast` or `safe` |
| `DEMO_ADDR` | `--addr` | client | `http://127.0.0.1:1` | address |
| `DEMO_USER` | `--user` | client | unset | who |
| — | `--json` | client | unset | JSON |
";
    let helps = [("serve", LONG_HELP), ("client", SHORT_HELP)];
    assert_eq!(differences(good, "demo", &helps), Vec::<String>::new());

    for (change, from, to, expected) in [
        (
            "a row removed",
            "| `DEMO_USER` | `--user` | client | unset | who |\n",
            "",
            "--user (DEMO_USER) is missing",
        ),
        (
            "a wrong default",
            "| `safe` |",
            "| `fast` |",
            "--mode defaults to `safe`, the README says `fast`",
        ),
        (
            "a wrong variable",
            "`DEMO_ADDR`",
            "`DEMO_ADRR`",
            "--addr reads DEMO_ADDR, the README says `DEMO_ADRR`",
        ),
        (
            "required lost",
            "| required |",
            "| unset |",
            "--database-url is required",
        ),
        (
            "a value unnamed",
            "`fast` or `safe`",
            "quick or `safe`",
            "--mode's meaning does not name `fast`",
        ),
        (
            "a stale row",
            "| — | `--json` |",
            "| — | `--jsn` |",
            "the README documents --jsn",
        ),
        (
            "a variable invented",
            "| — | `--json` |",
            "| `DEMO_JSON` | `--json` |",
            "--json has no variable",
        ),
        (
            "a default invented",
            "| `DEMO_USER` | `--user` | client | unset |",
            "| `DEMO_USER` | `--user` | client | `ann` |",
            "--user has no default",
        ),
        (
            "the wrong role",
            "| `DEMO_MODE` | `--mode` | serve |",
            "| `DEMO_MODE` | `--mode` | client |",
            "`demo serve`: --mode (DEMO_MODE) is missing",
        ),
        (
            "no marker",
            "<!-- options: demo -->",
            "",
            "has no `<!-- options: demo -->`",
        ),
    ] {
        let drifted = good.replace(from, to);
        assert_ne!(drifted, good, "{change}: the replacement applies");
        let problems = differences(&drifted, "demo", &helps);
        assert!(
            problems.iter().any(|problem| problem.contains(expected)),
            "{change}: expected {expected:?} in {problems:#?}"
        );
    }
}

/// Every metric the processes record, with its kind: the server's, the use cases', and the
/// broker connection's (named in calendar-adapters' amqp session).
fn recorded_metrics() -> Vec<(&'static str, &'static str)> {
    let mut metrics = vec![
        (metric_names::REQUESTS_HANDLED, "counter"),
        (metric_names::REQUEST_DURATION, "histogram"),
        (metric_names::EVENTS_CREATED, "counter"),
        (metric_names::EVENTS_UPDATED, "counter"),
        (metric_names::EVENTS_DELETED, "counter"),
        (metric_names::SLOT_CONFLICTS, "counter"),
        (metric_names::VERSION_CONFLICTS, "counter"),
        (metric_names::STORAGE_FAILURES, "counter"),
        (metric_names::STORAGE_UP, "gauge"),
        ("calendar_amqp_connected", "gauge"),
        ("calendar_amqp_reconnects_total", "counter"),
    ];
    metrics.extend(
        instruments::ALL
            .iter()
            .map(|(name, kind, _)| (*name, *kind)),
    );
    metrics
}

#[test]
fn every_metric_is_in_the_readme_table() {
    let readme = readme(env!("CARGO_MANIFEST_DIR"));
    let table = readme
        .split_once("<!-- metrics -->")
        .expect("README.md has a `<!-- metrics -->` table")
        .1;
    let rows: Vec<Vec<String>> = table
        .lines()
        .map(str::trim)
        .skip_while(|line| line.is_empty())
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect();
    let recorded = recorded_metrics();
    for (name, kind) in &recorded {
        let row = rows.iter().find(|row| row[0] == *name);
        assert!(
            row.is_some(),
            "{name} is missing from the README's metrics table"
        );
        assert_eq!(row.unwrap()[1], *kind, "the kind of {name}");
    }
    for row in &rows {
        assert!(
            recorded.iter().any(|(name, _)| *name == row[0]),
            "the README lists {}, which nothing records",
            row[0]
        );
    }
}
