//! The figures as people read them: Markdown tables (pasteable into the README) for a load
//! run and for a whole suite.

use std::fmt::Write as _;

use crate::cpu::Usage;
use crate::load::{Figures, LoadReport};
use crate::reminders::{ReminderReport, Schedule};
use crate::suite::SuiteReport;

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(value: f64) -> String {
    // `+ 0.0` turns -0 into 0.
    let rounded = value.round() + 0.0;
    let digits = format!("{:.0}", rounded.abs());
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if rounded < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

fn errors(figures: &Figures) -> String {
    if figures.errors.is_empty() {
        return "0".to_owned();
    }
    figures
        .errors
        .iter()
        .map(|(code, count)| format!("{count} {code}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One load run: a row for all requests and one per operation.
pub(crate) fn load_table(report: &LoadReport) -> String {
    let mut out = format!(
        "{} connections x {} in flight, {:.0} s after {:.0} s of warm-up\n\n",
        report.shape.connections,
        report.shape.in_flight,
        report.shape.duration.as_secs_f64(),
        report.shape.warmup.as_secs_f64()
    );
    out.push_str("| operation | OK/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---|\n");
    let mut row = |name: &str, figures: &Figures| {
        let _ = writeln!(
            out,
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {} |",
            thousands(figures.per_second),
            figures.p50_ms,
            figures.p90_ms,
            figures.p99_ms,
            figures.p999_ms,
            figures.max_ms,
            errors(figures)
        );
    };
    row("all", &report.total);
    if report.operations.len() > 1 {
        for (name, figures) in &report.operations {
            row(name, figures);
        }
    }
    out
}

/// Whether a target is met, as a cell.
fn verdict(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

/// The reminders target's rate: delivered per second.
const REMINDERS_PER_SECOND: f64 = 5_000.0;
/// The reminders target's lateness p99, in milliseconds.
const REMINDER_LATENESS_P99_MS: f64 = 1_500.0;

fn ratio(project: f64, ceiling: f64) -> f64 {
    if ceiling > 0.0 {
        project / ceiling
    } else {
        0.0
    }
}

/// When the scheduler of a reminders run published.
#[derive(Debug, Clone, Copy)]
enum Publishing {
    /// Up to its default look-ahead before the due instant.
    Ahead,
    /// Only once due (look-ahead 0).
    WhenDue,
}

impl Publishing {
    fn words(self, report: &ReminderReport) -> String {
        match self {
            Self::Ahead => match report.held_before_due {
                Some(held) => format!(
                    "published ahead ({} held by the sender just before due)",
                    thousands(held)
                ),
                None => "published ahead".to_owned(),
            },
            Self::WhenDue => "published once due (look-ahead 0)".to_owned(),
        }
    }
}

/// A reminders run's schedule, in words.
fn schedule(report: &ReminderReport) -> String {
    match report.schedule {
        Schedule::Burst { count } => {
            format!("reminders, {} due at one instant", thousands(count as f64))
        }
        Schedule::Steady { rate, seconds } => {
            format!("reminders, {}/s for {seconds} s", thousands(rate as f64))
        }
    }
}

/// CPU of one measurement, the machine's other load included.
fn cpu_row(out: &mut String, what: &str, usage: &Usage) {
    let mut groups: Vec<(&&str, &f64)> = usage.groups.iter().collect();
    groups.sort_by(|a, b| b.1.total_cmp(a.1));
    let accounted: f64 = usage.groups.values().sum();
    let listed: Vec<String> = groups
        .iter()
        .map(|(name, used)| format!("{name} {used:.0}%"))
        .collect();
    let _ = writeln!(
        out,
        "| {what} | {:.0}% | {} | {:.0}% |",
        usage.machine_busy,
        listed.join(", "),
        (usage.machine_busy - accounted).max(0.0)
    );
}

/// The whole suite: the results table with ratios and targets, then where the CPU went.
pub(crate) fn suite_table(suite: &SuiteReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ncalendar-bench suite, {}: {} cores ({}), {} RAM; PostgreSQL {}, RabbitMQ {}; load \
         average before: {}",
        suite.started_at,
        suite.machine.cores,
        suite.machine.cpu_model,
        suite.machine.memory,
        suite.machine.postgres,
        suite.machine.rabbitmq,
        suite.machine.load_average_before
    );
    let _ = writeln!(
        out,
        "load: {} connections x {} in flight = {} requests (pgbench: as many clients), {:.0} s \
         measured after {:.0} s of warm-up; {} events over {} users\n",
        suite.connections,
        suite.in_flight,
        suite.concurrency,
        suite.duration_seconds,
        suite.warmup_seconds,
        thousands(suite.events as f64),
        thousands(f64::from(suite.users))
    );
    out.push_str(
        "| scenario | calendar | ceiling | ratio | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | target | met |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n");
    let mut cpu = String::new();
    let c = suite.concurrency;
    if let Some(day) = &suite.day {
        let f = &day.project.figures.total;
        let r = ratio(f.per_second, day.ceiling.figures.transactions_per_second);
        let _ = writeln!(
            out,
            "| day list, {} events ({c} in flight) | {}/s | pgbench {}/s | {:.0}% | {:.2} | {:.2} | {:.2} | {:.2} | {} | >= 60%, p99 < 10 ms | {} |",
            thousands(suite.events as f64),
            thousands(f.per_second),
            thousands(day.ceiling.figures.transactions_per_second),
            r * 100.0,
            f.p50_ms,
            f.p90_ms,
            f.p99_ms,
            f.p999_ms,
            errors(f),
            verdict(r >= 0.6 && f.p99_ms < 10.0)
        );
        cpu_row(&mut cpu, "day list: calendar", &day.project.cpu);
        cpu_row(&mut cpu, "day list: pgbench", &day.ceiling.cpu);
    }
    if let Some(create) = &suite.create_postgres {
        let f = &create.project.figures.total;
        let r = ratio(f.per_second, create.ceiling.figures.transactions_per_second);
        let _ = writeln!(
            out,
            "| create, PostgreSQL ({c} in flight) | {}/s | pgbench {}/s | {:.0}% | {:.2} | {:.2} | {:.2} | {:.2} | {} | >= 70%, p99 < 20 ms | {} |",
            thousands(f.per_second),
            thousands(create.ceiling.figures.transactions_per_second),
            r * 100.0,
            f.p50_ms,
            f.p90_ms,
            f.p99_ms,
            f.p999_ms,
            errors(f),
            verdict(r >= 0.7 && f.p99_ms < 20.0)
        );
        cpu_row(&mut cpu, "create: calendar", &create.project.cpu);
        cpu_row(&mut cpu, "create: pgbench", &create.ceiling.cpu);
    }
    if let Some(mixed) = &suite.mixed {
        let f = &mixed.figures.total;
        let _ = writeln!(
            out,
            "| mixed: 80% day/week, 15% create, 5% update/delete ({c} in flight) | {}/s | | | {:.2} | {:.2} | {:.2} | {:.2} | {} | | |",
            thousands(f.per_second),
            f.p50_ms,
            f.p90_ms,
            f.p99_ms,
            f.p999_ms,
            errors(f)
        );
        cpu_row(&mut cpu, "mixed: calendar", &mixed.cpu);
    }
    if let Some(memory) = &suite.create_memory {
        let f = &memory.figures.total;
        let _ = writeln!(
            out,
            "| create, memory ({c} in flight) | {}/s | | | {:.2} | {:.2} | {:.2} | {:.2} | {} | >= 25,000/s | {} |",
            thousands(f.per_second),
            f.p50_ms,
            f.p90_ms,
            f.p99_ms,
            f.p999_ms,
            errors(f),
            verdict(f.per_second >= 25_000.0)
        );
        cpu_row(&mut cpu, "create in memory: calendar", &memory.cpu);
    }
    let broker = suite
        .amqp_ceiling
        .as_ref()
        .map_or(0.0, |ceiling| ceiling.figures.confirmed_per_second);
    let runs = [
        (&suite.reminders_burst, Publishing::Ahead),
        (&suite.reminders_steady, Publishing::Ahead),
        (&suite.reminders_burst_when_due, Publishing::WhenDue),
    ];
    for (run, publishing) in runs {
        let Some(run) = run else { continue };
        let f = &run.figures;
        let on_time = f.lateness_p99_ms < REMINDER_LATENESS_P99_MS;
        let (ceiling, ratio_cell, target, met) = match (f.schedule, publishing) {
            // Published ahead, they must be delivered when due.
            (Schedule::Burst { .. }, Publishing::Ahead) => (
                String::new(),
                String::new(),
                "lateness p99 < 1.5 s",
                on_time,
            ),
            // A stream at the target rate with every reminder delivered sustains that rate.
            (Schedule::Steady { rate, .. }, _) => (
                String::new(),
                String::new(),
                "5,000/s sustained, lateness p99 < 1.5 s",
                rate as f64 >= REMINDERS_PER_SECOND && f.delivered >= f.expected && on_time,
            ),
            // Published only once due: the pipeline's own rate, claim to recorded delivery.
            (Schedule::Burst { .. }, Publishing::WhenDue) => (
                format!("amqprs publish {}/s", thousands(broker)),
                format!("{:.0}%", ratio(f.delivered_per_second, broker) * 100.0),
                ">= 5,000/s",
                f.delivered_per_second >= REMINDERS_PER_SECOND,
            ),
        };
        let lost = f.expected.saturating_sub(f.delivered);
        let what = format!("{}, {}", schedule(f), publishing.words(f));
        let _ = writeln!(
            out,
            "| {what} (lateness) | {}/s delivered | {ceiling} | {ratio_cell} | {:.0} | {:.0} | {:.0} | max {:.0} | {} | {target} | {} |",
            thousands(f.delivered_per_second),
            f.lateness_p50_ms,
            f.lateness_p90_ms,
            f.lateness_p99_ms,
            f.lateness_max_ms,
            if lost == 0 {
                "0".to_owned()
            } else {
                format!("{lost} not delivered")
            },
            verdict(met && lost == 0)
        );
        cpu_row(&mut cpu, &what, &run.cpu);
    }
    if let Some(ceiling) = &suite.amqp_ceiling {
        cpu_row(
            &mut cpu,
            "RabbitMQ ceiling (amqprs publisher)",
            &ceiling.cpu,
        );
    }
    if let Some(stored) = suite.create_postgres_transactions {
        let _ = writeln!(
            out,
            "\ncreate on PostgreSQL: the service stored {} events in {} transactions, {:.1} a transaction (creates arriving together are inserted together; pgbench commits each INSERT alone)",
            thousands(stored.rows as f64),
            thousands(stored.transactions as f64),
            stored.rows as f64 / stored.transactions.max(1) as f64
        );
    }
    if let Some(duplicates) = suite.reminders_duplicates {
        let _ = writeln!(
            out,
            "\nreminders: published with confirms, deduplicated by the deliveries table; the sender suppressed {} duplicates",
            thousands(duplicates)
        );
    }
    if let Some(seed) = &suite.seed {
        let _ = writeln!(
            out,
            "seed: {} rows in {:.1} s ({}/s, COPY)",
            thousands(seed.rows as f64),
            seed.seconds,
            thousands(seed.rows_per_second)
        );
    }
    out.push_str(
        "\nCPU during each measurement (100% = one core; other = the rest of the machine)\n\n",
    );
    out.push_str("| measurement | machine busy | by process | other |\n|---|---:|---|---:|\n");
    out.push_str(&cpu);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }
}
