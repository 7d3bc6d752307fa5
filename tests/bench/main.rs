//! `calendar-bench`: the calendar's load generator and ceiling comparison.
//!
//! - `create`, `day`, `mixed`: drive a running `calendar-grpc` over N connections x M requests
//!   in flight for T seconds after a warm-up; latency in HDR histograms; `--json`.
//! - `seed`: fill a database with the calendar `day` and `mixed` read (COPY).
//! - `reminders`: seed reminders due at one instant (or at a steady rate) into the database of
//!   a running scheduler and sender, and measure delivered/s and lateness from the sender's
//!   record.
//! - `amqp-ceiling`: the broker's publish-with-confirms rate, from a bare amqprs publisher.
//! - `pgbench`: the database's rate for the adapter's INSERT or day query.
//! - `suite`: all of it, with the processes it measures, in one table (`bash deploy/bench.sh`).
//!
//! # Layout
//!
//! [`load`] drives the server, [`scenario`] says what each request is, [`seed`] writes the
//! data, [`reminders`], [`amqp_ceiling`] and [`pgbench`] measure the rest, [`cpu`] samples
//! where the CPU went, [`suite`] runs everything and [`report`] prints it.

mod amqp_ceiling;
mod cpu;
mod load;
mod pgbench;
mod reminders;
mod report;
mod scenario;
mod seed;
mod soak;
mod suite;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use calendar_adapters::postgres::{self, PoolSettings};
use calendar_adapters::service::duration::parse_duration;
use calendar_tests::harness::services;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::time::Instant;

use crate::load::LoadShape;
use crate::scenario::{Dataset, Scenario, Stream};

/// The calendar's load generator and ceiling comparison.
#[derive(Debug, Parser)]
#[command(name = "calendar-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create events for random users at random times (overlap ALLOW) on a running server.
    Create(LoadArgs),
    /// List a random user's day on a running server whose database `seed` filled.
    Day(LoadArgs),
    /// 80% day/week lists, 15% creates, 5% updates or deletes on a seeded server.
    Mixed(LoadArgs),
    /// Fill a database (migrated here) with the calendar `day` and `mixed` read.
    Seed(SeedArgs),
    /// Seed reminders into a running scheduler and sender's database; measure their delivery.
    Reminders(ReminderArgs),
    /// RabbitMQ's publish-with-confirms rate, from a bare amqprs publisher.
    AmqpCeiling(AmqpCeilingArgs),
    /// pgbench running the adapter's INSERT or day query on a seeded database.
    Pgbench(PgbenchArgs),
    /// Every scenario and its ceiling, with the processes measured started here: one table.
    Suite(SuiteArgs),
    /// Mixed load at a fixed rate for minutes, with the worker delivering reminders: errors,
    /// reminders and each process's resident memory.
    Soak(SoakArgs),
}

/// The seeded calendar's shape (the same for `seed` and for the scenarios that read it).
#[derive(Debug, Clone, Args)]
struct DatasetArgs {
    /// Users of the calendar, named 1 to N.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    users: u32,
    /// Events in all (spread evenly over the users).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
}

impl DatasetArgs {
    fn events_per_user(&self) -> anyhow::Result<u32> {
        Ok(u32::try_from(self.events / u64::from(self.users))
            .context("too many events per user")?
            .max(1))
    }

    fn dataset(&self) -> anyhow::Result<Dataset> {
        Ok(Dataset::for_events(self.users, self.events_per_user()?))
    }
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    connections: u16,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    in_flight: u16,
    /// Time before recording starts.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// Time recorded.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// At most this many requests a second in all, paced evenly; as fast as answers come
    /// when unset.
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,
    #[command(flatten)]
    dataset: DatasetArgs,
    /// Seed of the random numbers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SeedArgs {
    /// The database to fill (migrated first).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[command(flatten)]
    dataset: DatasetArgs,
    /// COPY streams at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    streams: u32,
}

#[derive(Debug, Args)]
struct ReminderArgs {
    /// The scheduler's and sender's database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Reminders due at one instant.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Instead: this many reminders a second, evenly spaced, for --for.
    #[arg(long)]
    rate: Option<u64>,
    /// How long the steady stream (--rate) lasts.
    #[arg(long = "for", default_value = "20s", value_parser = parse_duration)]
    steady_for: Duration,
    /// From the start of seeding to the first due instant.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    lead: Duration,
    /// Owners of the events.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    users: u32,
    /// COPY streams at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    streams: u32,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct AmqpCeilingArgs {
    /// The broker.
    #[arg(long, env = "AMQP_URL", default_value = services::DEFAULT_AMQP_URL, hide_env_values = true)]
    amqp_url: String,
    /// Messages to publish.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Most unconfirmed at once (the scheduler's default).
    #[arg(long, default_value_t = 1_024, value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 260)]
    body_bytes: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// pgbench's statements.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum PgbenchStatement {
    Insert,
    Day,
}

#[derive(Debug, Args)]
struct PgbenchArgs {
    /// Which statement.
    statement: PgbenchStatement,
    /// The seeded database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// pgbench clients.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    clients: u16,
    /// Time before measuring.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// Time measured.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    #[command(flatten)]
    dataset: DatasetArgs,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// The parts of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SuitePart {
    /// day list on PostgreSQL, and pgbench's.
    Day,
    /// create on PostgreSQL, and pgbench's.
    Create,
    /// mixed on PostgreSQL.
    Mixed,
    /// create in memory.
    Memory,
    /// the broker's ceiling, then reminders through scheduler and sender.
    Reminders,
}

#[derive(Debug, Args)]
pub(crate) struct SuiteArgs {
    /// The PostgreSQL server (the run creates and drops its own database there).
    #[arg(long, env = "DATABASE_URL", default_value = services::DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub(crate) database_url: String,
    /// The run's database, dropped and created afresh.
    #[arg(long, default_value = "calendar_bench")]
    pub(crate) database: String,
    /// The broker (the run declares its own queues, which expire after it).
    #[arg(long, env = "AMQP_URL", default_value = services::DEFAULT_AMQP_URL, hide_env_values = true)]
    pub(crate) amqp_url: String,
    /// A short run: 2 s warm-up, 5 s measured, 100,000 events, 20,000 reminders.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Only these parts (comma-separated); all by default.
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<SuitePart>,
    /// HTTP/2 connections of the load.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub(crate) connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub(crate) in_flight: usize,
    /// Time before recording starts [default: 5s, quick 2s].
    #[arg(long, value_parser = parse_duration)]
    pub(crate) warmup: Option<Duration>,
    /// Time recorded per measurement [default: 20s, quick 5s].
    #[arg(long, value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Users of the seeded calendar.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) users: u32,
    /// Events of the seeded calendar [default: 1,000,000, quick 100,000].
    #[arg(long)]
    pub(crate) events: Option<u64>,
    /// Reminders due at one instant [default: 100,000, quick 20,000].
    #[arg(long)]
    pub(crate) reminders: Option<u64>,
    /// Then a steady stream of this many reminders a second (0: none).
    #[arg(long, default_value_t = 5_000)]
    pub(crate) steady_rate: u64,
    /// How long the steady stream lasts [default: 20s, quick 5s].
    #[arg(long, value_parser = parse_duration)]
    pub(crate) steady_for: Option<Duration>,
    /// From the start of seeding reminders to their due instant.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) reminder_lead: Duration,
    /// COPY streams at once when seeding.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) streams: u32,
    /// The server's PostgreSQL pool size (DATABASE_MAX_CONNECTIONS); the server's default
    /// when unset.
    #[arg(long)]
    pub(crate) pool: Option<u32>,
    /// Seed of the random numbers.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Also write every figure as JSON to this file.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Keep the database afterwards.
    #[arg(long)]
    pub(crate) keep_database: bool,
}

/// A request rate: a finite number above 0.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate above 0 (requests a second)"
        )),
    }
}

#[derive(Debug, Args)]
pub(crate) struct SoakArgs {
    /// The PostgreSQL server (the run creates and drops its own database there).
    #[arg(long, env = "DATABASE_URL", default_value = services::DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub(crate) database_url: String,
    /// The run's database, dropped and created afresh.
    #[arg(long, default_value = "calendar_soak")]
    pub(crate) database: String,
    /// The broker (the run declares its own queue, which expires after it).
    #[arg(long, env = "AMQP_URL", default_value = services::DEFAULT_AMQP_URL, hide_env_values = true)]
    pub(crate) amqp_url: String,
    /// Requests a second of the mixed load (e.g. half the peak `bash deploy/bench.sh` measured).
    #[arg(long, value_parser = positive_rate)]
    pub(crate) rate: f64,
    /// Reminders falling due a second meanwhile.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) reminder_rate: u64,
    /// The whole run.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// The first part: not recorded, and memory is compared with its level at its end.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub(crate) warmup: Duration,
    /// Time between two samples of resident memory.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) sample_every: Duration,
    /// HTTP/2 connections of the load.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub(crate) connections: usize,
    /// Requests in flight per connection (at most).
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub(crate) in_flight: usize,
    /// Users of the seeded calendar.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) users: u32,
    /// Events of the seeded calendar.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) events: u64,
    /// Seed of the random numbers.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Also write every figure as JSON to this file.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value)?;
    writeln!(stdout)?;
    Ok(())
}

fn print_text(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{text}")?;
    Ok(())
}

async fn load(scenario: Scenario, args: LoadArgs) -> anyhow::Result<()> {
    let shape = LoadShape {
        connections: usize::from(args.connections),
        in_flight: usize::from(args.in_flight),
        warmup: args.warmup,
        duration: args.duration,
        rate: args.rate,
    };
    let dataset = args.dataset.dataset()?;
    let channels = load::connect(&args.server, shape.connections).await?;
    let report = load::run(&channels, shape, Instant::now(), |task| {
        Stream::new(scenario, dataset, args.seed, task, shape.concurrency())
    })
    .await?;
    if args.json {
        print_json(&report)
    } else {
        print_text(&report::load_table(&report))
    }
}

async fn pool(url: &str, connections: u32) -> anyhow::Result<postgres::PgPool> {
    let pool = postgres::connect(
        url,
        &PoolSettings {
            max_connections: connections,
            acquire_timeout: Duration::from_secs(30),
        },
    )
    .await?;
    postgres::migrate(&pool)
        .await
        .context("cannot migrate the database")?;
    Ok(pool)
}

// One thread: the load generator shares the machine with what it measures, and a single-threaded
// runtime spends less CPU per request (no work stealing, no wake-ups across threads) than the
// multi-threaded one did.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Create(args) => load(Scenario::Create, args).await,
        Command::Day(args) => load(Scenario::Day, args).await,
        Command::Mixed(args) => load(Scenario::Mixed, args).await,
        Command::Seed(args) => {
            let pool = pool(&args.database_url, args.streams + 1).await?;
            let dataset = args.dataset.dataset()?;
            let per_user = args.dataset.events_per_user()?;
            let report = seed::seed_calendar(&pool, dataset, per_user, args.streams).await?;
            seed::verify_calendar(&pool, dataset, per_user, 50).await?;
            let settled = seed::settle(&pool).await?;
            eprintln!(
                "{} rows in {:.1} s ({:.0} rows/s); vacuumed and analysed in {:.1} s",
                report.rows,
                report.seconds,
                report.rows_per_second,
                settled.as_secs_f64()
            );
            Ok(())
        }
        Command::Reminders(args) => {
            let pool = pool(&args.database_url, args.streams + 1).await?;
            let schedule = match args.rate {
                Some(rate) => reminders::Schedule::Steady {
                    rate,
                    seconds: args.steady_for.as_secs().max(1),
                },
                None => reminders::Schedule::Burst { count: args.count },
            };
            let report = reminders::run(
                &pool,
                schedule,
                reminders::Settings {
                    users: args.users,
                    streams: args.streams,
                    lead: args.lead,
                    stall_timeout: Duration::from_secs(30),
                },
            )
            .await?;
            if args.json {
                print_json(&report)
            } else {
                print_text(&format!(
                    "{} of {} delivered in {:.1} s: {:.0}/s; lateness p50 {:.0} ms, p90 {:.0} ms, \
                     p99 {:.0} ms, max {:.0} ms\n",
                    report.delivered,
                    report.expected,
                    report.seconds,
                    report.delivered_per_second,
                    report.lateness_p50_ms,
                    report.lateness_p90_ms,
                    report.lateness_p99_ms,
                    report.lateness_max_ms
                ))
            }
        }
        Command::AmqpCeiling(args) => {
            let queue = format!("calendar.bench.ceiling.{}", services::suffix());
            let report = amqp_ceiling::run(
                &args.amqp_url,
                &queue,
                args.messages,
                args.window,
                args.body_bytes,
            )
            .await?;
            if args.json {
                print_json(&report)
            } else {
                print_text(&format!(
                    "{} messages of {} bytes, window {}: {:.1} s, {:.0} confirmed/s\n",
                    report.messages,
                    report.body_bytes,
                    report.window,
                    report.seconds,
                    report.confirmed_per_second
                ))
            }
        }
        Command::Pgbench(args) => {
            pgbench::require()?;
            let directory =
                std::env::temp_dir().join(format!("calendar-bench-{}", std::process::id()));
            std::fs::create_dir_all(&directory)?;
            let report = pgbench::run(pgbench::Run {
                database_url: &args.database_url,
                statement: match args.statement {
                    PgbenchStatement::Insert => pgbench::Statement::Insert,
                    PgbenchStatement::Day => pgbench::Statement::Day,
                },
                dataset: args.dataset.dataset()?,
                clients: usize::from(args.clients),
                warmup: args.warmup,
                duration: args.duration,
                directory: &directory,
            })
            .await;
            let _ = std::fs::remove_dir_all(&directory);
            let report = report?;
            if args.json {
                print_json(&report)
            } else {
                print_text(&format!(
                    "{:.0} transactions/s, latency average {:.2} ms, {} failed\n",
                    report.transactions_per_second, report.latency_average_ms, report.failed
                ))
            }
        }
        Command::Suite(args) => suite::run(args).await,
        Command::Soak(args) => soak::run(args).await,
    }
}
