//! `calendar-bench suite`: every scenario and its ceiling in one run, on a database and a queue
//! of the run's own, with the processes it measures started here and stopped at the end.
//!
//! 1. A fresh database (`calendar_bench`), migrated and seeded (`--events` over `--users`).
//! 2. `calendar-grpc` on PostgreSQL: `day`, then pgbench's day query; `create`, then pgbench's
//!    INSERT; `mixed`. The same concurrency for both (`--connections` x `--in-flight`
//!    requests, as many pgbench clients).
//! 3. `calendar-grpc` in memory: `create`.
//! 4. The broker's ceiling: a bare amqprs publisher with confirms.
//! 5. `calendar-worker scheduler` and `sender` on a queue of the run's own, as configured by
//!    default (publishing up to 30 s ahead): reminders all due at one instant, then a steady
//!    stream; then a scheduler publishing only what is due (look-ahead 0) and the burst again,
//!    for the pipeline's own rate.
//!
//! The processes log warnings only (plus the lines that say where they listen, and the
//! sender's one line per delivered notification, which is its delivery). CPU per process is
//! sampled during each measurement.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use calendar_adapters::postgres::{self, PgPool, PoolSettings};
use calendar_core::{Event, EventDetails, EventId, EventSpan, NotifyBefore, Title, UserId};
use calendar_tests::harness::grpc::GrpcServer;
use calendar_tests::harness::process::{Process, binary};
use calendar_tests::harness::{http, services};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::SuiteArgs;
use crate::amqp_ceiling::{self, CeilingReport};
use crate::cpu::{self, Group, Snapshot, Usage};
use crate::load::{self, LoadReport, LoadShape};
use crate::pgbench::{self, PgbenchReport, Statement};
use crate::reminders::{self, ReminderReport, Schedule};
use crate::report;
use crate::scenario::{Dataset, Scenario, Stream};
use crate::seed::{self, SeedReport};

/// How long before the first due instant the sender's held notifications are counted.
const HELD_SAMPLED_BEFORE_DUE: Duration = Duration::from_millis(200);

/// Longest a process may take to start and get ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a process may take to stop after SIGTERM.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The log filter of the measured processes: warnings, and the lines saying where they listen.
const QUIET: &str = "warn,calendar_grpc::server=info,calendar_adapters::service=info";
/// The sender's: also its notification lines, which are how the log notifier delivers.
const QUIET_SENDER: &str = "warn,calendar_adapters::service=info,calendar::notification=info";
/// How a notification line is recognised (JSON logs), to count rather than keep it.
const NOTIFICATION_LINE: &str = "\"target\":\"calendar::notification\"";

/// A measurement under load, and the CPU it took.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Measured<T> {
    pub(crate) figures: T,
    pub(crate) cpu: Usage,
}

/// The project's figure beside its ceiling.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Compared<P, C> {
    pub(crate) project: Measured<P>,
    pub(crate) ceiling: Measured<C>,
}

/// Everything one suite run measured.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct SuiteReport {
    pub(crate) started_at: String,
    pub(crate) machine: Machine,
    pub(crate) concurrency: usize,
    pub(crate) connections: usize,
    pub(crate) in_flight: usize,
    pub(crate) warmup_seconds: f64,
    pub(crate) duration_seconds: f64,
    pub(crate) events: u64,
    pub(crate) users: u32,
    pub(crate) seed: Option<SeedReport>,
    pub(crate) day: Option<Compared<LoadReport, PgbenchReport>>,
    pub(crate) create_postgres: Option<Compared<LoadReport, PgbenchReport>>,
    /// The events the service stored during its create load, and the transactions that stored
    /// them (creates arriving together are inserted together).
    pub(crate) create_postgres_transactions: Option<Transactions>,
    pub(crate) mixed: Option<Measured<LoadReport>>,
    pub(crate) create_memory: Option<Measured<LoadReport>>,
    pub(crate) amqp_ceiling: Option<Measured<CeilingReport>>,
    /// Reminders due at one instant, published ahead by the scheduler's default look-ahead.
    pub(crate) reminders_burst: Option<Measured<ReminderReport>>,
    pub(crate) reminders_steady: Option<Measured<ReminderReport>>,
    /// Reminders due at one instant, published only once due (look-ahead 0): the pipeline's
    /// own rate, from claim to recorded delivery.
    pub(crate) reminders_burst_when_due: Option<Measured<ReminderReport>>,
    /// Duplicates the sender suppressed over both reminder runs (there should be none).
    pub(crate) reminders_duplicates: Option<f64>,
}

/// Rows and the transactions that wrote them.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Transactions {
    pub(crate) rows: u64,
    pub(crate) transactions: u64,
}

impl Transactions {
    /// The events created since `from` (by their `created_at`), and the distinct transactions
    /// (`xmin`) that stored them.
    async fn of_events_created_since(pool: &PgPool, from: DateTime<Utc>) -> anyhow::Result<Self> {
        let (rows, transactions): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT xmin::text) FROM events WHERE created_at >= $1",
        )
        .bind(from)
        .fetch_one(pool)
        .await
        .context("counting the transactions of the created events")?;
        Ok(Self {
            rows: u64::try_from(rows).unwrap_or(0),
            transactions: u64::try_from(transactions).unwrap_or(0),
        })
    }
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) cpu_model: String,
    pub(crate) memory: String,
    pub(crate) load_average_before: String,
    pub(crate) postgres: String,
    pub(crate) rabbitmq: String,
}

impl Machine {
    async fn describe(pool: &PgPool) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let memory = read("/proc/meminfo")
            .lines()
            .next()
            .map(|line| {
                line.split_whitespace()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let postgres = sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(pool)
            .await
            .unwrap_or_default();
        let rabbitmq = std::process::Command::new("rabbitmqctl")
            .arg("version")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            memory,
            load_average_before: read("/proc/loadavg").trim().to_owned(),
            postgres,
            rabbitmq,
        }
    }
}

/// Samples CPU from `from` to `until` (both in the future), in the background.
fn sample_cpu(groups: Vec<Group>, from: Instant, until: Instant) -> JoinHandle<Usage> {
    tokio::spawn(async move {
        tokio::time::sleep_until(from).await;
        let before = Snapshot::take(&groups);
        tokio::time::sleep_until(until).await;
        Usage::between(&before, &Snapshot::take(&groups))
    })
}

/// A started `calendar-grpc`.
pub(crate) struct Server {
    pub(crate) process: Process,
    pub(crate) url: String,
}

impl Server {
    pub(crate) async fn start(
        database_url: Option<&str>,
        pool: Option<u32>,
    ) -> anyhow::Result<Self> {
        let pool = pool.map(|size| size.to_string());
        let mut env = vec![("CALENDAR_LOG_FORMAT", "json"), ("RUST_LOG", QUIET)];
        if let Some(url) = database_url {
            env.push(("DATABASE_URL", url));
        }
        if let Some(size) = &pool {
            env.push(("DATABASE_MAX_CONNECTIONS", size));
        }
        let name = if database_url.is_some() {
            "calendar-grpc (PostgreSQL)"
        } else {
            "calendar-grpc (memory)"
        };
        let GrpcServer { process, address } = GrpcServer::start_with(name, &env).await?;
        Ok(Self {
            process,
            url: format!("http://{address}"),
        })
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        Ok(self.process.terminate(STOP_TIMEOUT).await?)
    }
}

/// A started `calendar-worker`.
pub(crate) struct Worker {
    pub(crate) process: Process,
    http: std::net::SocketAddr,
}

impl Worker {
    /// Starts `calendar-worker <role>` on the database, broker and queue, with `settings`
    /// (environment variables) on top of its defaults.
    pub(crate) async fn start(
        role: &str,
        database_url: &str,
        amqp_url: &str,
        queue: &str,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let sender = role == "sender";
        let mut environment = vec![
            ("DATABASE_URL", database_url),
            ("AMQP_URL", amqp_url),
            ("CALENDAR_QUEUE", queue),
            ("CALENDAR_QUEUE_EXPIRES", "5m"),
            ("CALENDAR_LOG_FORMAT", "json"),
            ("RUST_LOG", if sender { QUIET_SENDER } else { QUIET }),
        ];
        environment.extend_from_slice(settings);
        let process = Process::start_counting(
            &format!("calendar-worker {role}"),
            &binary("calendar-worker")?,
            &[role, "--metrics-addr", "127.0.0.1:0"],
            &environment,
            sender.then_some(NOTIFICATION_LINE),
        )?;
        let http = process
            .listening_address("metrics endpoint listening")
            .await?;
        if let Err(status) = http::wait_until_ready(http, START_TIMEOUT).await {
            bail!(
                "{} not ready within {START_TIMEOUT:?} (last answer {status}):\n{}",
                process.name(),
                process.tail()
            );
        }
        Ok(Self { process, http })
    }

    pub(crate) async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (_, body) = http::get(self.http, "/metrics")
            .await
            .with_context(|| format!("{}: GET /metrics", self.process.name()))?;
        Ok(http::metric_sum(&body, name))
    }
}

/// The settings of one run, resolved.
struct Plan {
    admin_url: String,
    amqp_url: String,
    database: String,
    shape: LoadShape,
    dataset: Dataset,
    events_per_user: u32,
    burst: u64,
    steady: Option<(u64, u64)>,
    lead: Duration,
    streams: u32,
    pool: Option<u32>,
    seed: u64,
    scratch: PathBuf,
    scenarios: Vec<crate::SuitePart>,
}

impl Plan {
    fn wants(&self, part: crate::SuitePart) -> bool {
        self.scenarios.is_empty() || self.scenarios.contains(&part)
    }
}

/// Runs the suite; prints the table, writes JSON where asked.
pub(crate) async fn run(args: SuiteArgs) -> anyhow::Result<()> {
    let quick = args.quick;
    let pick = |given: Option<Duration>, normal: u64, short: u64| {
        given.unwrap_or(Duration::from_secs(if quick { short } else { normal }))
    };
    let users = args.users;
    let events = args
        .events
        .unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let events_per_user = u32::try_from(events / u64::from(users.max(1)))
        .context("too many events per user")?
        .max(1);
    let plan = Plan {
        admin_url: args.database_url.clone(),
        amqp_url: args.amqp_url.clone(),
        database: args.database.clone(),
        shape: LoadShape {
            connections: args.connections,
            in_flight: args.in_flight,
            warmup: pick(args.warmup, 5, 2),
            duration: pick(args.duration, 20, 5),
            rate: None,
        },
        dataset: Dataset::for_events(users, events_per_user),
        events_per_user,
        burst: args
            .reminders
            .unwrap_or(if quick { 20_000 } else { 100_000 }),
        steady: (args.steady_rate > 0).then(|| {
            (
                args.steady_rate,
                pick(args.steady_for, 20, 5).as_secs().max(1),
            )
        }),
        lead: args.reminder_lead,
        streams: args.streams,
        pool: args.pool,
        seed: args.seed,
        scratch: std::env::temp_dir().join(format!("calendar-bench-{}", std::process::id())),
        scenarios: args.only.clone(),
    };
    pgbench::require()?;
    for name in ["calendar-grpc", "calendar-worker"] {
        binary(name)?;
    }
    services::require_broker(&plan.amqp_url)
        .await
        .map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&plan.scratch)
        .with_context(|| format!("creating {}", plan.scratch.display()))?;

    services::drop_database(&plan.admin_url, &plan.database).await?;
    let database_url = services::create_database(&plan.admin_url, &plan.database).await?;
    let outcome = measure(&plan, &database_url).await;
    if args.keep_database {
        eprintln!("kept the database {}", plan.database);
    } else if let Err(error) = services::drop_database(&plan.admin_url, &plan.database).await {
        eprintln!(
            "warning: could not drop the database {}: {error}",
            plan.database
        );
    }
    let _ = std::fs::remove_dir_all(&plan.scratch);
    let suite = outcome?;
    crate::print_text(&report::suite_table(&suite))?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&suite)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Prints progress on stderr.
fn step(what: &str) {
    eprintln!("==> {what}");
}

async fn measure(plan: &Plan, database_url: &str) -> anyhow::Result<SuiteReport> {
    let pool = postgres::connect(
        database_url,
        &PoolSettings {
            max_connections: plan.streams.max(2) + 2,
            acquire_timeout: Duration::from_secs(30),
        },
    )
    .await?;
    postgres::migrate(&pool).await?;
    let mut suite = SuiteReport {
        started_at: Utc::now().to_rfc3339(),
        machine: Machine::describe(&pool).await,
        concurrency: plan.shape.concurrency(),
        connections: plan.shape.connections,
        in_flight: plan.shape.in_flight,
        warmup_seconds: plan.shape.warmup.as_secs_f64(),
        duration_seconds: plan.shape.duration.as_secs_f64(),
        events: u64::from(plan.dataset.users) * u64::from(plan.events_per_user),
        users: plan.dataset.users,
        ..SuiteReport::default()
    };
    eprintln!(
        "machine: {} cores ({}), load average before: {}",
        suite.machine.cores, suite.machine.cpu_model, suite.machine.load_average_before
    );

    use crate::SuitePart as Part;
    if plan.wants(Part::Day) || plan.wants(Part::Create) || plan.wants(Part::Mixed) {
        step(&format!(
            "seeding {} events over {} users",
            suite.events, plan.dataset.users
        ));
        let seeded =
            seed::seed_calendar(&pool, plan.dataset, plan.events_per_user, plan.streams).await?;
        eprintln!(
            "    {} rows in {:.1} s ({:.0} rows/s)",
            seeded.rows, seeded.seconds, seeded.rows_per_second
        );
        seed::verify_calendar(&pool, plan.dataset, plan.events_per_user, 50).await?;
        let settled = seed::settle(&pool).await?;
        eprintln!(
            "    vacuumed, analysed and checkpointed in {:.1} s",
            settled.as_secs_f64()
        );
        suite.seed = Some(seeded);

        step("calendar-grpc on PostgreSQL");
        let server = Server::start(Some(database_url), plan.pool).await?;
        let groups = cpu::groups(&[("calendar-grpc", server.process.id())]);
        if plan.wants(Part::Day) {
            suite.day = Some(
                compared(
                    plan,
                    &server,
                    &groups,
                    database_url,
                    Scenario::Day,
                    Statement::Day,
                )
                .await?,
            );
        }
        if plan.wants(Part::Create) {
            // As `compared`, counting the transactions of the service's creates before
            // pgbench adds rows of its own.
            step("create on postgresql");
            let from = Utc::now();
            let project = load(plan, &server.url, &groups, Scenario::Create).await?;
            let stored = Transactions::of_events_created_since(&pool, from).await?;
            eprintln!(
                "    the service stored {} events in {} transactions",
                stored.rows, stored.transactions
            );
            let ceiling = pgbench_ceiling(plan, &groups, database_url, Statement::Insert).await?;
            suite.create_postgres = Some(Compared { project, ceiling });
            suite.create_postgres_transactions = Some(stored);
        }
        if plan.wants(Part::Mixed) {
            step("mixed on PostgreSQL");
            suite.mixed = Some(load(plan, &server.url, &groups, Scenario::Mixed).await?);
        }
        server.stop().await?;
    }

    if plan.wants(Part::Memory) {
        step("calendar-grpc in memory: create");
        let server = Server::start(None, None).await?;
        let groups = cpu::groups(&[("calendar-grpc", server.process.id())]);
        suite.create_memory = Some(load(plan, &server.url, &groups, Scenario::Create).await?);
        server.stop().await?;
    }

    if plan.wants(Part::Reminders) {
        reminder_runs(plan, &pool, database_url, &mut suite).await?;
    }
    pool.close().await;
    Ok(suite)
}

/// One load run of `scenario` against `server`, with CPU sampled over the recorded window.
async fn load(
    plan: &Plan,
    server: &str,
    groups: &[Group],
    scenario: Scenario,
) -> anyhow::Result<Measured<LoadReport>> {
    let channels = load::connect(server, plan.shape.connections).await?;
    let started = Instant::now();
    let window_start = started + plan.shape.warmup;
    let cpu = sample_cpu(
        groups.to_vec(),
        window_start,
        window_start + plan.shape.duration,
    );
    let figures = load::run(&channels, plan.shape, started, |task| {
        Stream::new(
            scenario,
            plan.dataset,
            plan.seed,
            task,
            plan.shape.concurrency(),
        )
    })
    .await?;
    let cpu = cpu.await.context("the CPU sampler")?;
    eprintln!(
        "    {:.0}/s, p99 {:.2} ms, {} errors; {}",
        figures.total.per_second,
        figures.total.p99_ms,
        figures.total.error_count(),
        cpu.line()
    );
    Ok(Measured { figures, cpu })
}

/// `scenario` on the server, then pgbench's `statement` at the same concurrency.
async fn compared(
    plan: &Plan,
    server: &Server,
    groups: &[Group],
    database_url: &str,
    scenario: Scenario,
    statement: Statement,
) -> anyhow::Result<Compared<LoadReport, PgbenchReport>> {
    step(&format!("{scenario:?} on PostgreSQL").to_lowercase());
    let project = load(plan, &server.url, groups, scenario).await?;
    let ceiling = pgbench_ceiling(plan, groups, database_url, statement).await?;
    Ok(Compared { project, ceiling })
}

/// pgbench's `statement` at the load's concurrency, with CPU sampled over its measured run.
async fn pgbench_ceiling(
    plan: &Plan,
    groups: &[Group],
    database_url: &str,
    statement: Statement,
) -> anyhow::Result<Measured<PgbenchReport>> {
    step(&format!("pgbench: the {statement:?} statement").to_lowercase());
    let measured_from = Instant::now() + plan.shape.warmup;
    let cpu = sample_cpu(
        groups.to_vec(),
        // pgbench's measured run starts once its warm-up run has ended and it has connected.
        measured_from + Duration::from_secs(1),
        measured_from + plan.shape.duration,
    );
    let figures = pgbench::run(pgbench::Run {
        database_url,
        statement,
        dataset: plan.dataset,
        clients: plan.shape.concurrency(),
        warmup: plan.shape.warmup,
        duration: plan.shape.duration,
        directory: &plan.scratch,
    })
    .await?;
    let cpu = cpu.await.context("the CPU sampler")?;
    eprintln!(
        "    {:.0}/s, latency average {:.2} ms; {}",
        figures.transactions_per_second,
        figures.latency_average_ms,
        cpu.line()
    );
    Ok(Measured { figures, cpu })
}

/// The size of an encoded notification, for the broker's ceiling.
fn notification_bytes() -> anyhow::Result<usize> {
    let start = Utc::now() + TimeDelta::minutes(20);
    let mut details = EventDetails::new(
        Title::new("Reminder benchmark")?,
        EventSpan::new(start, TimeDelta::minutes(30))?,
    );
    details.notify_before = Some(NotifyBefore::new(TimeDelta::minutes(10))?);
    let event = Event::new(
        EventId::generate(),
        UserId::new("1234")?,
        details,
        Utc::now(),
    );
    Ok(event
        .notification()
        .context("the event has a reminder")?
        .encode()
        .len())
}

/// The broker's ceiling, then the reminders through a scheduler and a sender.
async fn reminder_runs(
    plan: &Plan,
    pool: &PgPool,
    database_url: &str,
    suite: &mut SuiteReport,
) -> anyhow::Result<()> {
    let suffix = services::suffix();
    step("RabbitMQ ceiling: a bare amqprs publisher with confirms");
    let groups = cpu::groups(&[]);
    let before = Snapshot::take(&groups);
    let ceiling = amqp_ceiling::run(
        &plan.amqp_url,
        &format!("calendar.bench.ceiling.{suffix}"),
        plan.burst,
        1_024,
        notification_bytes()?,
    )
    .await?;
    let cpu = Usage::between(&before, &Snapshot::take(&groups));
    eprintln!(
        "    {:.0} confirmed/s; {}",
        ceiling.confirmed_per_second,
        cpu.line()
    );
    suite.amqp_ceiling = Some(Measured {
        figures: ceiling,
        cpu,
    });

    step("calendar-worker scheduler and sender (their defaults: publishing 30 s ahead)");
    let queue = format!("calendar.bench.{suffix}");
    let scheduler = Worker::start("scheduler", database_url, &plan.amqp_url, &queue, &[]).await?;
    let sender = Worker::start("sender", database_url, &plan.amqp_url, &queue, &[]).await?;
    let settings = reminders::Settings {
        users: plan.dataset.users,
        streams: plan.streams,
        lead: plan.lead,
        stall_timeout: Duration::from_secs(30),
    };
    let burst = Schedule::Burst { count: plan.burst };
    step(&format!("reminders: {} due at one instant", plan.burst));
    suite.reminders_burst = Some(reminder_run(pool, &scheduler, &sender, burst, settings).await?);
    if let Some((rate, seconds)) = plan.steady {
        step(&format!("reminders: {rate}/s for {seconds} s"));
        suite.reminders_steady = Some(
            reminder_run(
                pool,
                &scheduler,
                &sender,
                Schedule::Steady { rate, seconds },
                settings,
            )
            .await?,
        );
    }
    let Worker {
        process: mut scheduler,
        ..
    } = scheduler;
    scheduler.terminate(STOP_TIMEOUT).await?;

    step("calendar-worker scheduler publishing each reminder only once due (look-ahead 0)");
    let scheduler = Worker::start(
        "scheduler",
        database_url,
        &plan.amqp_url,
        &queue,
        &[("CALENDAR_SCHEDULER_LOOK_AHEAD", "0")],
    )
    .await?;
    step(&format!("reminders: {} due at one instant", plan.burst));
    suite.reminders_burst_when_due =
        Some(reminder_run(pool, &scheduler, &sender, burst, settings).await?);
    suite.reminders_duplicates = Some(
        sender
            .metric(calendar_core::instruments::NOTIFICATIONS_DUPLICATE)
            .await?,
    );
    eprintln!(
        "    the sender logged {} notifications",
        sender.process.counted()
    );
    let Worker {
        process: mut scheduler,
        ..
    } = scheduler;
    let Worker {
        process: mut sender,
        ..
    } = sender;
    scheduler.terminate(STOP_TIMEOUT).await?;
    sender.terminate(STOP_TIMEOUT).await?;
    Ok(())
}

/// One reminders run through `scheduler` and `sender`, with CPU sampled from the first due
/// instant to the last delivery, and the notifications the sender held just before it.
async fn reminder_run(
    pool: &PgPool,
    scheduler: &Worker,
    sender: &Worker,
    schedule: Schedule,
    settings: reminders::Settings,
) -> anyhow::Result<Measured<ReminderReport>> {
    let groups = cpu::groups(&[
        ("scheduler", scheduler.process.id()),
        ("sender", sender.process.id()),
    ]);
    // The sampler starts when the reminders fall due and stops when the run returns.
    let due_in = settings.lead;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep(due_in).await;
        let before = Snapshot::take(&groups);
        let _ = stopped.await;
        Usage::between(&before, &Snapshot::take(&groups))
    });
    let held = async {
        tokio::time::sleep(due_in.saturating_sub(HELD_SAMPLED_BEFORE_DUE)).await;
        sender
            .metric(calendar_core::instruments::NOTIFICATIONS_HELD)
            .await
    };
    let (figures, held) = tokio::join!(reminders::run(pool, schedule, settings), held);
    let mut figures = figures?;
    figures.held_before_due = Some(held?);
    let _ = stop.send(());
    let cpu = sampler.await.context("the CPU sampler")?;
    eprintln!(
        "    {} held before due; {} of {} delivered, {:.0}/s, lateness p50 {:.0} ms, p99 {:.0} ms; {}",
        figures.held_before_due.unwrap_or_default(),
        figures.delivered,
        figures.expected,
        figures.delivered_per_second,
        figures.lateness_p50_ms,
        figures.lateness_p99_ms,
        cpu.line()
    );
    Ok(Measured { figures, cpu })
}
