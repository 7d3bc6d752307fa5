//! `calendar-bench soak`: a long run of the `mixed` load at a fixed rate against
//! `calendar-grpc` on PostgreSQL, with `calendar-worker scheduler` and `sender` delivering a
//! steady stream of reminders meanwhile, on a database and a queue of the run's own.
//!
//! It passes when no request failed (the load's users are split between its tasks, so no two
//! requests race for one event: any error is a fault), every reminder was delivered, and each
//! process's resident memory at the end is within [`RSS_TOLERANCE`] of its level after the
//! first minute (the warm-up: pools, caches and buffers filled). The figures are printed either
//! way; a failed check makes the command fail.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use calendar_adapters::postgres::{self, PoolSettings};
use calendar_tests::harness::services;
use serde::Serialize;
use tokio::time::Instant;

use crate::SoakArgs;
use crate::load::{self, LoadReport, LoadShape};
use crate::reminders::{self, ReminderReport, Schedule};
use crate::scenario::{Dataset, Scenario, Stream};
use crate::seed;
use crate::suite::{STOP_TIMEOUT, Server, Worker};

/// How far above its level after the warm-up a process's resident memory may end.
const RSS_TOLERANCE: f64 = 0.10;

/// One process's resident memory over the run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Memory {
    /// After the warm-up, in KiB.
    pub(crate) after_warmup_kib: u64,
    /// At the end, in KiB.
    pub(crate) end_kib: u64,
    /// The most seen after the warm-up, in KiB.
    pub(crate) max_kib: u64,
    /// End over after-warm-up, minus one.
    pub(crate) growth: f64,
    /// Every sample: seconds from the start, KiB.
    pub(crate) samples: Vec<(u64, u64)>,
}

/// What a soak run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SoakReport {
    pub(crate) rate: f64,
    pub(crate) seconds: f64,
    pub(crate) load: LoadReport,
    pub(crate) reminders: ReminderReport,
    pub(crate) memory: BTreeMap<String, Memory>,
    /// What failed the run; empty when it passed.
    pub(crate) failures: Vec<String>,
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Samples the resident memory of `processes` every `every` until `until`.
async fn sample_memory(
    processes: Vec<(String, u32)>,
    started: Instant,
    every: Duration,
    until: Instant,
) -> anyhow::Result<BTreeMap<String, Vec<(u64, u64)>>> {
    let mut samples: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let every = every.max(Duration::from_secs(1));
    let mut next = started;
    loop {
        let at = Instant::now().duration_since(started).as_secs();
        for (name, pid) in &processes {
            samples
                .entry(name.clone())
                .or_default()
                .push((at, rss_kib(*pid)?));
        }
        next += every;
        if next > until {
            return Ok(samples);
        }
        tokio::time::sleep_until(next).await;
    }
}

/// The memory figures of one process from its samples, the warm-up ending at `warmup` s.
fn memory(samples: Vec<(u64, u64)>, warmup: u64) -> anyhow::Result<Memory> {
    let after: Vec<&(u64, u64)> = samples.iter().filter(|(at, _)| *at >= warmup).collect();
    let (Some(first), Some(last)) = (after.first(), after.last()) else {
        bail!("no memory sample after the warm-up of {warmup} s");
    };
    let after_warmup_kib = first.1;
    let end_kib = last.1;
    Ok(Memory {
        after_warmup_kib,
        end_kib,
        max_kib: after.iter().map(|(_, kib)| *kib).max().unwrap_or(end_kib),
        growth: end_kib as f64 / after_warmup_kib.max(1) as f64 - 1.0,
        samples,
    })
}

/// Runs the soak; prints its figures; fails when a check failed.
pub(crate) async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let events_per_user = u32::try_from(args.events / u64::from(args.users))
        .context("too many events per user")?
        .max(1);
    let dataset = Dataset::for_events(args.users, events_per_user);
    let warmup = args.warmup.as_secs();
    if args.duration <= args.warmup + Duration::from_secs(60) {
        bail!("--duration must exceed the warm-up ({warmup} s) by a minute at least");
    }
    services::require_broker(&args.amqp_url)
        .await
        .map_err(anyhow::Error::msg)?;
    services::drop_database(&args.database_url, &args.database).await?;
    let database_url = services::create_database(&args.database_url, &args.database).await?;
    let outcome = soak(&args, &database_url, dataset, events_per_user).await;
    if let Err(error) = services::drop_database(&args.database_url, &args.database).await {
        eprintln!(
            "warning: could not drop the database {}: {error}",
            args.database
        );
    }
    let report = outcome?;
    crate::print_text(&text(&report))?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if report.failures.is_empty() {
        Ok(())
    } else {
        bail!("the soak failed: {}", report.failures.join("; "))
    }
}

async fn soak(
    args: &SoakArgs,
    database_url: &str,
    dataset: Dataset,
    events_per_user: u32,
) -> anyhow::Result<SoakReport> {
    let pool = postgres::connect(
        database_url,
        &PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(30),
        },
    )
    .await?;
    postgres::migrate(&pool).await?;
    eprintln!(
        "==> seeding {} events over {} users",
        u64::from(dataset.users) * u64::from(events_per_user),
        dataset.users
    );
    seed::seed_calendar(&pool, dataset, events_per_user, 2).await?;
    seed::settle(&pool).await?;

    eprintln!("==> calendar-grpc, calendar-worker scheduler and sender");
    let mut server = Server::start(Some(database_url), None).await?;
    let queue = format!("calendar.soak.{}", services::suffix());
    let mut scheduler =
        Worker::start("scheduler", database_url, &args.amqp_url, &queue, &[]).await?;
    let mut sender = Worker::start("sender", database_url, &args.amqp_url, &queue, &[]).await?;
    let processes = vec![
        ("calendar-grpc".to_owned(), server.process.id()),
        ("scheduler".to_owned(), scheduler.process.id()),
        ("sender".to_owned(), sender.process.id()),
    ];

    eprintln!(
        "==> mixed at {} requests/s and {} reminders/s for {:?}",
        args.rate, args.reminder_rate, args.duration
    );
    let started = Instant::now();
    let until = started + args.duration;
    let memory_samples = tokio::spawn(sample_memory(processes, started, args.sample_every, until));
    // The reminders fall due from `lead` after the start until a minute before the end, so
    // that the last are delivered within the run.
    let lead = Duration::from_secs(30);
    let steady_seconds = args
        .duration
        .saturating_sub(lead + Duration::from_secs(60))
        .as_secs()
        .max(1);
    let reminder_pool = pool.clone();
    let reminder_rate = args.reminder_rate;
    let users = args.users;
    let reminders = tokio::spawn(async move {
        reminders::run(
            &reminder_pool,
            Schedule::Steady {
                rate: reminder_rate,
                seconds: steady_seconds,
            },
            reminders::Settings {
                users,
                streams: 1,
                lead,
                stall_timeout: Duration::from_secs(60),
            },
        )
        .await
    });
    let shape = LoadShape {
        connections: args.connections,
        in_flight: args.in_flight,
        warmup: args.warmup,
        duration: args.duration - args.warmup,
        rate: Some(args.rate),
    };
    let channels = load::connect(&server.url, shape.connections).await?;
    let seed = args.seed;
    let load = load::run(&channels, shape, started, |task| {
        Stream::new(Scenario::Mixed, dataset, seed, task, shape.concurrency())
    })
    .await?;
    let samples = memory_samples.await.context("the memory sampler")??;
    let reminders = reminders.await.context("the reminders")??;
    let seconds = started.elapsed().as_secs_f64();

    let mut failures = Vec::new();
    for process in [
        &mut server.process,
        &mut scheduler.process,
        &mut sender.process,
    ] {
        if !process.is_running() {
            failures.push(format!("{} exited during the run", process.name()));
        }
    }
    let mut memory_figures = BTreeMap::new();
    for (name, samples) in samples {
        let figures = memory(samples, args.warmup.as_secs())?;
        if figures.growth > RSS_TOLERANCE {
            failures.push(format!(
                "{name}: resident memory grew {:.1}% after the warm-up ({} KiB to {} KiB)",
                figures.growth * 100.0,
                figures.after_warmup_kib,
                figures.end_kib
            ));
        }
        memory_figures.insert(name, figures);
    }
    if load.total.error_count() > 0 {
        failures.push(format!(
            "{} requests failed: {:?}",
            load.total.error_count(),
            load.total.errors
        ));
    }
    if reminders.delivered != reminders.expected {
        failures.push(format!(
            "{} of {} reminders delivered",
            reminders.delivered, reminders.expected
        ));
    }

    server.stop().await?;
    for worker in [scheduler, sender] {
        let mut process = worker.process;
        process.terminate(STOP_TIMEOUT).await?;
    }
    pool.close().await;
    Ok(SoakReport {
        rate: args.rate,
        seconds,
        load,
        reminders,
        memory: memory_figures,
        failures,
    })
}

/// The report as text.
fn text(report: &SoakReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let total = &report.load.total;
    let _ = writeln!(
        out,
        "soak: {:.0} s; mixed at {:.0} requests/s asked, {:.0}/s answered OK ({} requests), \
         p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; errors: {}",
        report.seconds,
        report.rate,
        total.per_second,
        total.ok,
        total.p50_ms,
        total.p99_ms,
        total.p999_ms,
        total.max_ms,
        if total.errors.is_empty() {
            "none".to_owned()
        } else {
            format!("{:?}", total.errors)
        }
    );
    let reminders = &report.reminders;
    let _ = writeln!(
        out,
        "reminders: {} of {} delivered, lateness p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        reminders.delivered,
        reminders.expected,
        reminders.lateness_p50_ms,
        reminders.lateness_p99_ms,
        reminders.lateness_max_ms
    );
    let _ = writeln!(
        out,
        "{:<14} {:>16} {:>12} {:>12} {:>8}",
        "resident", "after warm-up", "end", "max", "growth"
    );
    for (name, memory) in &report.memory {
        let _ = writeln!(
            out,
            "{:<14} {:>12.1} MiB {:>8.1} MiB {:>8.1} MiB {:>7.1}%",
            name,
            memory.after_warmup_kib as f64 / 1024.0,
            memory.end_kib as f64 / 1024.0,
            memory.max_kib as f64 / 1024.0,
            memory.growth * 100.0
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if report.failures.is_empty() {
            "passed".to_owned()
        } else {
            format!("FAILED: {}", report.failures.join("; "))
        }
    );
    out
}
