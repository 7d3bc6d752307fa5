//! The server's configuration: command-line options, each with an environment variable of the
//! same meaning and a default, all shown by `calendar-grpc --help`.
//!
//! With no configuration at all the server runs embedded: events in memory, reminders
//! scheduled and delivered in-process (to the log). Setting `DATABASE_URL` switches the events
//! to PostgreSQL; reminders are then the worker's job unless `--reminders in-process` asks for
//! them here too.

use std::net::SocketAddr;
use std::time::Duration;

use calendar_adapters::service::LogFormat;
use calendar_core::{SchedulerConfig, SenderConfig};
use chrono::TimeDelta;
use clap::{Parser, ValueEnum};

use crate::server::ServerSettings;
use calendar_adapters::service::duration::parse_duration;

/// Where reminders are scheduled and delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Reminders {
    /// In-process with in-memory storage; left to `calendar-worker` with PostgreSQL.
    Auto,
    /// In this process: the scheduler and the sender run here over an in-memory queue and
    /// deliver to the log.
    InProcess,
    /// Not here: a `calendar-worker` does it.
    Off,
}

/// The calendar's gRPC server.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "calendar-grpc",
    version,
    about = "The calendar's gRPC server (calendar.v1.CalendarService, health, reflection).",
    long_about = "The calendar's gRPC server (calendar.v1.CalendarService, health, reflection).\n\n\
        With no configuration it runs embedded: events in memory, reminders delivered to the log \
        by an in-process scheduler and sender. With DATABASE_URL it stores events in PostgreSQL \
        (migrations are applied at start) and leaves reminders to calendar-worker."
)]
pub struct Config {
    /// Address the gRPC server listens on. The default accepts local connections only; in a
    /// container use 0.0.0.0:50051.
    #[arg(
        long,
        env = "CALENDAR_LISTEN_ADDR",
        default_value = "127.0.0.1:50051",
        help_heading = "Server"
    )]
    pub listen_addr: SocketAddr,

    /// Address of the Prometheus metrics endpoint (GET /metrics), a separate HTTP port.
    #[arg(
        long,
        env = "CALENDAR_METRICS_ADDR",
        default_value = "127.0.0.1:9464",
        help_heading = "Server"
    )]
    pub metrics_addr: SocketAddr,

    /// Longest the server waits at shutdown for open requests and connections to finish.
    #[arg(long, env = "CALENDAR_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration, help_heading = "Server")]
    pub drain_timeout: Duration,

    /// Time between storage health checks (grpc.health.v1 turns NOT_SERVING when one fails).
    #[arg(long, env = "CALENDAR_HEALTH_INTERVAL", default_value = "5s", value_parser = parse_duration, help_heading = "Server")]
    pub health_interval: Duration,

    /// Most calendar requests handled at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "CALENDAR_CONCURRENCY_LIMIT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Limits")]
    pub concurrency_limit: u32,

    /// Largest request message accepted, in bytes.
    #[arg(
        long,
        env = "CALENDAR_MAX_REQUEST_BYTES",
        default_value_t = 256 * 1024,
        help_heading = "Limits"
    )]
    pub max_request_bytes: usize,

    /// Largest response message sent, in bytes (a page of 1,000 events with the longest
    /// descriptions is about 41 MB).
    #[arg(
        long,
        env = "CALENDAR_MAX_RESPONSE_BYTES",
        default_value_t = 64 * 1024 * 1024,
        help_heading = "Limits"
    )]
    pub max_response_bytes: usize,

    /// Longest a request may run when its client sets no shorter deadline; 0 for no limit.
    #[arg(long, env = "CALENDAR_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration, help_heading = "Limits")]
    pub request_timeout: Duration,

    /// PostgreSQL URL (postgres://user:password@host/db). Unset: events are kept in memory and
    /// lost at exit.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        help_heading = "Storage"
    )]
    pub database_url: Option<String>,

    /// Most PostgreSQL connections in the pool.
    // 16: a quarter of them (4) insert the creates and a quarter read the lists, those that
    // arrive together in one statement (calendar-adapters' PostgreSQL batch queues), and the
    // rest serve gets, updates and deletes. With 32 creates in flight on 2 cores, 4 inserters
    // stored 15,702 events a second, 8 inserters 13,830 and 16 inserters 10,641: fewer,
    // larger statements cost the server less per event; lists behave alike.
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..),
        help_heading = "Storage"
    )]
    pub database_max_connections: u32,

    /// Longest a request waits for a PostgreSQL connection before failing with UNAVAILABLE.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration, help_heading = "Storage")]
    pub database_acquire_timeout: Duration,

    /// Where reminders are scheduled and delivered: auto (here with in-memory storage, by
    /// calendar-worker with PostgreSQL), in-process, or off.
    #[arg(
        long,
        env = "CALENDAR_REMINDERS",
        value_enum,
        default_value_t = Reminders::Auto,
        help_heading = "Reminders"
    )]
    pub reminders: Reminders,

    /// In-process scheduler: time between looks for due reminders.
    #[arg(long, env = "CALENDAR_SCHEDULER_TICK", default_value = "1s", value_parser = parse_duration, help_heading = "Reminders")]
    pub scheduler_tick: Duration,

    /// In-process scheduler: most reminders claimed per tick.
    #[arg(long, env = "CALENDAR_SCHEDULER_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Reminders")]
    pub scheduler_batch_size: u32,

    /// In-process scheduler: how long a claimed reminder stays leased before it is claimed
    /// again.
    #[arg(long, env = "CALENDAR_SCHEDULER_LEASE", default_value = "30s", value_parser = parse_duration, help_heading = "Reminders")]
    pub scheduler_lease: Duration,

    /// In-process scheduler: events that ended longer ago than this are deleted.
    #[arg(long, env = "CALENDAR_RETENTION", default_value = "365d", value_parser = parse_duration, help_heading = "Reminders")]
    pub retention: Duration,

    /// In-process scheduler: time between cleanups of old events.
    #[arg(long, env = "CALENDAR_CLEANUP_INTERVAL", default_value = "1h", value_parser = parse_duration, help_heading = "Reminders")]
    pub cleanup_interval: Duration,

    /// In-process sender: most notifications in hand at once, handled in batches.
    #[arg(long, env = "CALENDAR_SENDER_CONCURRENCY", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Reminders")]
    pub sender_concurrency: u32,

    /// In-process sender: deliveries of one notification before it is dead-lettered.
    #[arg(long, env = "CALENDAR_SENDER_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Reminders")]
    pub sender_max_attempts: u32,

    /// Log line format on stderr: json (one object per line) or pretty (for people).
    #[arg(long, env = "CALENDAR_LOG_FORMAT", default_value_t = LogFormat::Pretty, help_heading = "Logs")]
    pub log_format: LogFormat,

    /// Which log lines to write: a tracing filter such as info or calendar_grpc=debug,info.
    #[arg(long, env = "RUST_LOG", default_value = "info", help_heading = "Logs")]
    pub log_filter: String,
}

/// A configured duration as a time delta (configured durations are far below its bound).
fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

impl Config {
    /// Whether reminders run in this process.
    pub fn reminders_in_process(&self) -> bool {
        match self.reminders {
            Reminders::Auto => self.database_url.is_none(),
            Reminders::InProcess => true,
            Reminders::Off => false,
        }
    }

    /// The server's limits and timings.
    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            concurrency_limit: usize::try_from(self.concurrency_limit).unwrap_or(usize::MAX),
            max_request_bytes: self.max_request_bytes,
            max_response_bytes: self.max_response_bytes,
            request_timeout: (!self.request_timeout.is_zero()).then_some(self.request_timeout),
            drain_timeout: self.drain_timeout,
            health_interval: self.health_interval,
        }
    }

    /// The in-process scheduler's configuration.
    pub fn scheduler_config(&self) -> SchedulerConfig {
        SchedulerConfig {
            tick_interval: self.scheduler_tick,
            batch_size: self.scheduler_batch_size,
            lease: delta(self.scheduler_lease),
            retention: delta(self.retention),
            cleanup_interval: self.cleanup_interval,
            ..SchedulerConfig::default()
        }
    }

    /// The in-process sender's configuration.
    pub fn sender_config(&self) -> SenderConfig {
        SenderConfig {
            max_attempts: self.sender_max_attempts,
            concurrency: usize::try_from(self.sender_concurrency).unwrap_or(usize::MAX),
            ..SenderConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("calendar-grpc").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn every_option_shows_its_environment_variable_and_default() {
        let help = Config::command().render_long_help().to_string();
        for (option, variable) in [
            ("--listen-addr", "CALENDAR_LISTEN_ADDR"),
            ("--metrics-addr", "CALENDAR_METRICS_ADDR"),
            ("--database-url", "DATABASE_URL"),
            ("--reminders", "CALENDAR_REMINDERS"),
            ("--log-format", "CALENDAR_LOG_FORMAT"),
            ("--log-filter", "RUST_LOG"),
            ("--concurrency-limit", "CALENDAR_CONCURRENCY_LIMIT"),
            ("--drain-timeout", "CALENDAR_DRAIN_TIMEOUT"),
        ] {
            assert!(help.contains(option), "{option} missing from --help");
            assert!(help.contains(&format!("[env: {variable}")), "{variable}");
        }
        assert!(help.contains("[default: 127.0.0.1:50051]"));
        assert!(help.contains("[default: 10s]"));
        for command in Config::command().get_arguments() {
            let id = command.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            assert!(
                command.get_env().is_some(),
                "{id} has no environment variable"
            );
        }
    }

    #[test]
    fn defaults_match_the_use_cases_defaults() {
        let config = parse(&[]);
        let scheduler = config.scheduler_config();
        let expected = SchedulerConfig::default();
        assert_eq!(scheduler.tick_interval, expected.tick_interval);
        assert_eq!(scheduler.batch_size, expected.batch_size);
        assert_eq!(scheduler.lease, expected.lease);
        assert_eq!(scheduler.retention, expected.retention);
        assert_eq!(scheduler.cleanup_interval, expected.cleanup_interval);
        let sender = config.sender_config();
        assert_eq!(sender.max_attempts, SenderConfig::default().max_attempts);
        assert_eq!(sender.concurrency, SenderConfig::default().concurrency);
        let settings = config.server_settings();
        let expected = ServerSettings::default();
        assert_eq!(settings.concurrency_limit, expected.concurrency_limit);
        assert_eq!(settings.max_request_bytes, expected.max_request_bytes);
        assert_eq!(settings.max_response_bytes, expected.max_response_bytes);
        assert_eq!(settings.request_timeout, expected.request_timeout);
        assert_eq!(settings.drain_timeout, expected.drain_timeout);
        assert_eq!(settings.health_interval, expected.health_interval);
    }

    #[test]
    fn reminders_follow_the_storage_unless_told() {
        let memory = parse(&["--reminders", "auto"]);
        assert_eq!(memory.reminders_in_process(), memory.database_url.is_none());
        let postgres = parse(&["--database-url", "postgres://localhost/calendar"]);
        assert!(!postgres.reminders_in_process());
        let forced = parse(&[
            "--database-url",
            "postgres://localhost/calendar",
            "--reminders",
            "in-process",
        ]);
        assert!(forced.reminders_in_process());
        assert!(!parse(&["--reminders", "off"]).reminders_in_process());
    }

    #[test]
    fn options_are_validated() {
        let parsed = parse(&["--request-timeout", "0", "--log-format", "json"]);
        assert_eq!(parsed.server_settings().request_timeout, None);
        assert_eq!(parsed.log_format, LogFormat::Json);
        for bad in [
            ["--concurrency-limit", "0"],
            ["--database-max-connections", "0"],
            ["--drain-timeout", "soon"],
            ["--log-format", "xml"],
            ["--listen-addr", "localhost"],
        ] {
            let args = std::iter::once("calendar-grpc").chain(bad);
            assert!(Config::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}
