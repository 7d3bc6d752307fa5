//! The worker's configuration: a role (`scheduler` or `sender`) and its options, each with an
//! environment variable of the same meaning and a default, all shown by
//! `calendar-worker <role> --help`.

use std::net::SocketAddr;
use std::time::Duration;

use calendar_adapters::amqp::{AmqpConfig, MAX_PREFETCH, QueueType};
use calendar_adapters::postgres::PoolSettings;
use calendar_adapters::service::LogFormat;
use calendar_adapters::service::duration::parse_duration;
use calendar_core::{SchedulerConfig, SenderConfig};
use chrono::TimeDelta;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// The calendar's background worker.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "calendar-worker",
    version,
    about = "The calendar's reminder scheduler and notification sender (PostgreSQL + RabbitMQ).",
    long_about = "The calendar's reminder scheduler and notification sender.\n\n\
        `scheduler` publishes due reminders from PostgreSQL to RabbitMQ and cleans up old \
        events; `sender` delivers them from RabbitMQ, once each, to the log. Run as many of \
        each as you like. Every option has an environment variable; see `<role> --help`."
)]
pub struct Config {
    /// What this process does.
    #[command(subcommand)]
    pub role: Role,
}

/// The worker's roles.
#[derive(Debug, Clone, Subcommand)]
pub enum Role {
    /// Publish due reminders to RabbitMQ (with confirms) and clean up old events.
    Scheduler(SchedulerArgs),
    /// Deliver reminders from RabbitMQ to the log, deduplicated, then acknowledge them.
    Sender(SenderArgs),
}

/// Queue types, as options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueKind {
    /// Classic queues: a single broker.
    Classic,
    /// Quorum queues: a RabbitMQ cluster.
    Quorum,
}

/// What both roles need: storage, broker, logs, shutdown.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// PostgreSQL URL (postgres://user:password@host/db). Migrations are applied at start.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        help_heading = "Storage"
    )]
    pub database_url: String,

    /// Most PostgreSQL connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Storage")]
    pub database_max_connections: u32,

    /// Longest an operation waits for a PostgreSQL connection.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration, help_heading = "Storage")]
    pub database_acquire_timeout: Duration,

    /// RabbitMQ URL (amqp://user:password@host:5672/vhost, or amqps:// for TLS).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true,
        help_heading = "Queue"
    )]
    pub amqp_url: String,

    /// The reminder queue's name; its exchange, retry and dead-letter queues are named after it.
    #[arg(
        long,
        env = "CALENDAR_QUEUE",
        default_value = "calendar.reminders",
        help_heading = "Queue"
    )]
    pub queue: String,

    /// classic (one broker) or quorum (a cluster). Must match what the queue was declared as.
    #[arg(long, env = "CALENDAR_QUEUE_TYPE", value_enum, default_value_t = QueueKind::Classic, help_heading = "Queue")]
    pub queue_type: QueueKind,

    /// Let RabbitMQ delete the queues after they have been unused this long (x-expires), for
    /// short-lived environments; unset (the default) keeps them. Must match how the queues
    /// were declared.
    #[arg(long, env = "CALENDAR_QUEUE_EXPIRES", value_parser = parse_duration, help_heading = "Queue")]
    pub queue_expires: Option<Duration>,

    /// Longest the process waits at shutdown for the work in hand to finish.
    #[arg(long, env = "CALENDAR_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration, help_heading = "Process")]
    pub drain_timeout: Duration,

    /// Time between readiness checks of PostgreSQL (RabbitMQ's connection is followed live).
    #[arg(long, env = "CALENDAR_HEALTH_INTERVAL", default_value = "5s", value_parser = parse_duration, help_heading = "Process")]
    pub health_interval: Duration,

    /// Log line format on stderr: json (one object per line) or pretty (for people).
    #[arg(long, env = "CALENDAR_LOG_FORMAT", default_value_t = LogFormat::Pretty, help_heading = "Logs")]
    pub log_format: LogFormat,

    /// Which log lines to write: a tracing filter such as info or calendar=debug,info.
    #[arg(long, env = "RUST_LOG", default_value = "info", help_heading = "Logs")]
    pub log_filter: String,
}

/// The scheduler's options.
#[derive(Debug, Clone, Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub common: Common,

    /// Address of the HTTP endpoint: GET /metrics (Prometheus), /health/live, /health/ready.
    #[arg(
        long,
        env = "CALENDAR_METRICS_ADDR",
        default_value = "127.0.0.1:9465",
        help_heading = "Process"
    )]
    pub metrics_addr: SocketAddr,

    /// Time between looks for due reminders (when the last look found less than a batch).
    #[arg(long, env = "CALENDAR_SCHEDULER_TICK", default_value = "1s", value_parser = parse_duration, help_heading = "Scheduler")]
    pub tick: Duration,

    /// Most reminders claimed and published per tick.
    #[arg(long, env = "CALENDAR_SCHEDULER_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Scheduler")]
    pub batch_size: u32,

    /// How far ahead of their due instant reminders are published (at most 10m); senders hold
    /// them until then. 0 publishes each only once due.
    #[arg(long, env = "CALENDAR_SCHEDULER_LOOK_AHEAD", default_value = "30s", value_parser = parse_look_ahead, help_heading = "Scheduler")]
    pub look_ahead: Duration,

    /// How long a claimed reminder stays leased; unconfirmed ones are claimed again after it.
    #[arg(long, env = "CALENDAR_SCHEDULER_LEASE", default_value = "30s", value_parser = parse_duration, help_heading = "Scheduler")]
    pub lease: Duration,

    /// Events that ended longer ago than this are deleted.
    #[arg(long, env = "CALENDAR_RETENTION", default_value = "365d", value_parser = parse_duration, help_heading = "Scheduler")]
    pub retention: Duration,

    /// Time between cleanups of old events (one scheduler at a time cleans up).
    #[arg(long, env = "CALENDAR_CLEANUP_INTERVAL", default_value = "1h", value_parser = parse_duration, help_heading = "Scheduler")]
    pub cleanup_interval: Duration,

    /// Most events deleted per cleanup statement.
    #[arg(long, env = "CALENDAR_CLEANUP_BATCH_SIZE", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Scheduler")]
    pub cleanup_batch_size: u32,

    /// Most published reminders awaiting RabbitMQ's confirmation at once.
    #[arg(long, env = "AMQP_MAX_IN_FLIGHT", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Queue")]
    pub max_in_flight: u32,

    /// How long a publish waits for its confirmation before it counts as failed.
    #[arg(long, env = "AMQP_CONFIRM_TIMEOUT", default_value = "10s", value_parser = parse_duration, help_heading = "Queue")]
    pub confirm_timeout: Duration,
}

/// The sender's options.
#[derive(Debug, Clone, Args)]
pub struct SenderArgs {
    #[command(flatten)]
    pub common: Common,

    /// Address of the HTTP endpoint: GET /metrics (Prometheus), /health/live, /health/ready.
    #[arg(
        long,
        env = "CALENDAR_METRICS_ADDR",
        default_value = "127.0.0.1:9466",
        help_heading = "Process"
    )]
    pub metrics_addr: SocketAddr,

    /// Most notifications in hand at once, handled in batches.
    #[arg(long, env = "CALENDAR_SENDER_CONCURRENCY", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Sender")]
    pub concurrency: u32,

    /// Most notifications held because they arrived before they fall due (the scheduler's
    /// look-ahead); with this many held, nothing more is received until one falls due. 0
    /// delivers early ones on arrival.
    #[arg(long, env = "CALENDAR_SENDER_MAX_HELD", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_PREFETCH)), help_heading = "Sender")]
    pub max_held: u32,

    /// Deliveries of one notification before a failing one goes to the dead-letter queue.
    #[arg(long, env = "CALENDAR_SENDER_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Sender")]
    pub max_attempts: u32,

    /// How long delivered notifications are remembered for deduplication.
    #[arg(long, env = "CALENDAR_DELIVERY_RETENTION", default_value = "7d", value_parser = parse_duration, help_heading = "Sender")]
    pub delivery_retention: Duration,

    /// Most unacknowledged messages RabbitMQ sends this process at once [default:
    /// --concurrency plus --max-held].
    #[arg(long, env = "AMQP_PREFETCH", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PREFETCH)), help_heading = "Queue")]
    pub prefetch: Option<u32>,

    /// Delay before a notification whose delivery failed is tried again; doubles per attempt.
    #[arg(long, env = "CALENDAR_RETRY_DELAY", default_value = "1s", value_parser = parse_duration, help_heading = "Sender")]
    pub retry_delay: Duration,

    /// The longest retry delay.
    #[arg(long, env = "CALENDAR_MAX_RETRY_DELAY", default_value = "5m", value_parser = parse_duration, help_heading = "Sender")]
    pub max_retry_delay: Duration,
}

/// A configured duration as a time delta (configured durations are far below its bound).
fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// A look-ahead: a duration of at most [`SchedulerConfig::MAX_LOOK_AHEAD`].
fn parse_look_ahead(text: &str) -> Result<Duration, String> {
    let look_ahead = parse_duration(text).map_err(|e| e.to_string())?;
    if delta(look_ahead) > SchedulerConfig::MAX_LOOK_AHEAD {
        return Err(format!(
            "{text} is longer than the longest look-ahead, {} minutes: RabbitMQ closes a \
             channel holding a message unacknowledged for too long",
            SchedulerConfig::MAX_LOOK_AHEAD.num_minutes()
        ));
    }
    Ok(look_ahead)
}

impl Config {
    /// The options both roles share.
    pub fn common(&self) -> &Common {
        match &self.role {
            Role::Scheduler(args) => &args.common,
            Role::Sender(args) => &args.common,
        }
    }
}

impl Common {
    /// The connection pool's settings.
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.database_max_connections,
            acquire_timeout: self.database_acquire_timeout,
        }
    }

    /// The broker connection's configuration, with the defaults of what is not configurable.
    pub fn amqp_config(&self, connection_name: &str) -> AmqpConfig {
        AmqpConfig {
            url: self.amqp_url.clone(),
            queue: self.queue.clone(),
            queue_type: match self.queue_type {
                QueueKind::Classic => QueueType::Classic,
                QueueKind::Quorum => QueueType::Quorum,
            },
            connection_name: connection_name.to_owned(),
            expire_unused_after: self.queue_expires,
            ..AmqpConfig::default()
        }
    }
}

impl SchedulerArgs {
    /// The scheduler use case's configuration.
    pub fn scheduler_config(&self) -> SchedulerConfig {
        SchedulerConfig {
            tick_interval: self.tick,
            batch_size: self.batch_size,
            look_ahead: delta(self.look_ahead),
            lease: delta(self.lease),
            retention: delta(self.retention),
            cleanup_interval: self.cleanup_interval,
            cleanup_batch_size: self.cleanup_batch_size,
            ..SchedulerConfig::default()
        }
    }

    /// The broker connection: publishing only.
    pub fn amqp_config(&self) -> AmqpConfig {
        AmqpConfig {
            max_in_flight: usize::try_from(self.max_in_flight).unwrap_or(usize::MAX),
            confirm_timeout: self.confirm_timeout,
            ..self.common.amqp_config("calendar-scheduler")
        }
    }
}

impl SenderArgs {
    /// The sender use case's configuration.
    pub fn sender_config(&self) -> SenderConfig {
        SenderConfig {
            max_attempts: self.max_attempts,
            concurrency: usize::try_from(self.concurrency).unwrap_or(usize::MAX),
            max_held: usize::try_from(self.max_held).unwrap_or(usize::MAX),
            delivery_retention: delta(self.delivery_retention),
            ..SenderConfig::default()
        }
    }

    /// The prefetch: as configured, or room for the notifications in hand and held.
    pub fn prefetch(&self) -> u32 {
        self.prefetch.unwrap_or_else(|| {
            self.concurrency
                .saturating_add(self.max_held)
                .min(MAX_PREFETCH)
        })
    }

    /// The broker connection: consuming (and republishing retries).
    pub fn amqp_config(&self) -> AmqpConfig {
        AmqpConfig {
            prefetch: self.prefetch(),
            retry_delay: self.retry_delay,
            max_retry_delay: self.max_retry_delay,
            ..self.common.amqp_config("calendar-sender")
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("calendar-worker").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_use_cases_and_the_broker() {
        let config = parse(&["scheduler", "--database-url", "postgres://db/calendar"]);
        let Role::Scheduler(args) = &config.role else {
            panic!("a scheduler");
        };
        let scheduler = args.scheduler_config();
        let defaults = SchedulerConfig::default();
        assert_eq!(scheduler.tick_interval, defaults.tick_interval);
        assert_eq!(scheduler.batch_size, defaults.batch_size);
        assert_eq!(scheduler.look_ahead, defaults.look_ahead);
        assert_eq!(scheduler.lease, defaults.lease);
        assert_eq!(scheduler.retention, defaults.retention);
        assert_eq!(scheduler.cleanup_interval, defaults.cleanup_interval);
        let amqp = args.amqp_config();
        assert_eq!(amqp.queue, "calendar.reminders");
        assert_eq!(amqp.max_in_flight, AmqpConfig::default().max_in_flight);
        assert_eq!(args.metrics_addr.port(), 9465);

        let config = parse(&["sender", "--database-url", "postgres://db/calendar"]);
        let Role::Sender(args) = &config.role else {
            panic!("a sender");
        };
        let sender = args.sender_config();
        assert_eq!(sender.max_attempts, SenderConfig::default().max_attempts);
        assert_eq!(sender.concurrency, SenderConfig::default().concurrency);
        assert_eq!(sender.max_held, SenderConfig::default().max_held);
        assert_eq!(
            sender.delivery_retention,
            SenderConfig::default().delivery_retention
        );
        assert_eq!(args.amqp_config().prefetch, AmqpConfig::default().prefetch);
        assert_eq!(
            args.metrics_addr.port(),
            9466,
            "a scheduler and a sender fit on one host"
        );
    }

    #[test]
    fn options_reach_the_use_cases() {
        let config = parse(&[
            "sender",
            "--database-url",
            "postgres://db/calendar",
            "--queue-type",
            "quorum",
            "--queue",
            "reminders.eu",
            "--concurrency",
            "64",
            "--retry-delay",
            "250ms",
            "--delivery-retention",
            "2d",
        ]);
        let Role::Sender(args) = &config.role else {
            panic!("a sender");
        };
        assert_eq!(args.sender_config().concurrency, 64);
        assert_eq!(
            args.amqp_config().prefetch,
            64 + 100_000,
            "room for those in hand and those held"
        );
        assert_eq!(args.sender_config().delivery_retention, TimeDelta::days(2));
        let amqp = args.amqp_config();
        assert_eq!(
            (amqp.queue.as_str(), amqp.queue_type),
            ("reminders.eu", QueueType::Quorum)
        );
        assert_eq!(amqp.retry_delay, Duration::from_millis(250));
    }

    #[test]
    fn a_database_is_required_and_bad_values_are_refused() {
        let run = |args: &[&str]| {
            Config::try_parse_from(std::iter::once("calendar-worker").chain(args.iter().copied()))
        };
        // Unless DATABASE_URL is in the environment, which tests do not set for this binary.
        if std::env::var_os("DATABASE_URL").is_none() {
            assert!(run(&["scheduler"]).is_err());
        }
        assert!(run(&["sender", "--database-url", "x", "--concurrency", "0"]).is_err());
        assert!(run(&["scheduler", "--database-url", "x", "--tick", "soon"]).is_err());
        assert!(run(&["scheduler", "--database-url", "x", "--look-ahead", "11m"]).is_err());
        assert!(run(&["scheduler", "--database-url", "x", "--look-ahead", "10m"]).is_ok());
        assert!(run(&["sender", "--database-url", "x", "--prefetch", "0"]).is_err());
        assert!(run(&["sender", "--database-url", "x", "--prefetch", "1048561"]).is_err());
        assert!(run(&["dispatcher", "--database-url", "x"]).is_err());
    }
}
