//! The `calendar` command-line client: create, show, change, delete and list events on a
//! calendar server, as tables for people or JSON for scripts.
//!
//! ```text
//! calendar --user ann create --title Standup --start +5m --duration 15m --notify-before 1m
//! calendar --user ann day
//! calendar --user ann --json week 2026-03-02 --time-zone Europe/Berlin
//! calendar --addr http://127.0.0.1:50051 health
//! ```
//!
//! `health` asks the server's `grpc.health.v1.Health` service and exits 0 only when it answers
//! SERVING: the container health check of the server's image, which has no other gRPC client.
//!
//! [`run`] executes parsed arguments and writes the result to any writer, so tests drive it
//! like the binary does. Every failure becomes a [`CliError`] whose message says what went
//! wrong in the user's terms, listing the offending fields of an invalid request.

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use calendar_core::{Tz, parse_time_zone};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, TimeZone as _, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt as _;

use crate::auth::USER_ID_METADATA;
use crate::mapping::{
    datetime_to_timestamp, delta_to_duration, duration_to_delta, naive_to_date,
    timestamp_to_datetime,
};
use crate::middleware::code_name;
use crate::proto::calendar::v1 as pb;
use crate::proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use crate::status::{CONFLICTING_EVENT_ID, REASON_TIME_SLOT_BUSY, REASON_VERSION_MISMATCH};
use calendar_adapters::service::duration::{format_duration, parse_duration};

/// Command-line client of the calendar's gRPC service.
#[derive(Debug, Clone, Parser)]
#[command(name = "calendar", version)]
pub struct Cli {
    /// Address of the calendar server.
    #[arg(
        long,
        env = "CALENDAR_ADDR",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub addr: String,

    /// The user to act as (sent as the x-user-id metadata). Required.
    #[arg(long, short, env = "CALENDAR_USER", global = true)]
    pub user: Option<String>,

    /// The IANA time zone times are shown in, local start times are read in, and days, weeks
    /// and months are cut in.
    #[arg(long, env = "CALENDAR_TIME_ZONE", default_value = "UTC", global = true)]
    pub time_zone: String,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// Deadline of each request.
    #[arg(long, env = "CALENDAR_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create an event.
    Create(CreateArgs),
    /// Show an event.
    Get {
        /// The event's id.
        id: String,
    },
    /// Change an event: read it, apply the given changes, write it back only if nobody changed
    /// it in between.
    Update(UpdateArgs),
    /// Delete an event (and its reminder).
    Delete {
        /// The event's id.
        id: String,
    },
    /// List the events of a day.
    Day(ListArgs),
    /// List the events of the seven days from a date.
    Week(ListArgs),
    /// List the events from a date to the same date next month.
    Month(ListArgs),
    /// Check the server's health: exit 0 only when it is SERVING.
    ///
    /// Asks grpc.health.v1 Check (no user needed) and prints the status. Exits 0 when it is
    /// SERVING, 1 otherwise: NOT_SERVING, an unknown service, no answer within --timeout, or
    /// no server. The container health check of the server's image.
    Health(HealthArgs),
}

/// The arguments of `health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The service to ask about, such as calendar.v1.CalendarService; the server as a whole
    /// if not given.
    #[arg(long, default_value = "")]
    pub service: String,
}

/// Whether an event may overlap the user's other events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Overlap {
    /// It blocks its time slot: creating it over another blocking event fails.
    Reject,
    /// It may overlap anything.
    Allow,
}

impl Overlap {
    fn to_proto(self) -> pb::OverlapPolicy {
        match self {
            Self::Reject => pb::OverlapPolicy::Reject,
            Self::Allow => pb::OverlapPolicy::Allow,
        }
    }
}

/// The arguments of `create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The title.
    #[arg(long)]
    pub title: String,
    /// When it starts: RFC 3339 (2026-03-02T09:00:00+01:00), a local time in --time-zone
    /// (2026-03-02T09:00 or "2026-03-02 09:00"), or from now (+5m, +1h30m).
    #[arg(long, allow_hyphen_values = true)]
    pub start: String,
    /// How long it lasts (15m, 1h30m, 2d).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Duration,
    /// A longer description.
    #[arg(long)]
    pub description: Option<String>,
    /// Remind this long before the start (0 for at the start); no reminder if not given.
    #[arg(long, value_parser = parse_duration)]
    pub notify_before: Option<Duration>,
    /// Whether it may overlap other events.
    #[arg(long, value_enum, default_value_t = Overlap::Reject)]
    pub overlap: Overlap,
    /// The id to give the event (a UUID): running the same command again is then safe.
    #[arg(long)]
    pub id: Option<String>,
}

/// The arguments of `update`: only what changes.
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    /// The event's id.
    pub id: String,
    /// A new title.
    #[arg(long)]
    pub title: Option<String>,
    /// A new start (as for create).
    #[arg(long, allow_hyphen_values = true)]
    pub start: Option<String>,
    /// A new duration.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// A new description.
    #[arg(long, conflicts_with = "no_description")]
    pub description: Option<String>,
    /// Remove the description.
    #[arg(long)]
    pub no_description: bool,
    /// A new reminder lead.
    #[arg(long, value_parser = parse_duration, conflicts_with = "no_reminder")]
    pub notify_before: Option<Duration>,
    /// Remove the reminder.
    #[arg(long)]
    pub no_reminder: bool,
    /// A new overlap policy.
    #[arg(long, value_enum)]
    pub overlap: Option<Overlap>,
}

/// The arguments of `day`, `week` and `month`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// The first date (YYYY-MM-DD); today in --time-zone if not given.
    pub date: Option<NaiveDate>,
    /// Most events to show (0: the server's default, 100).
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    /// Continue a list: the token printed after its previous page.
    #[arg(long)]
    pub page_token: Option<String>,
}

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The arguments do not make a request.
    Usage(String),
    /// The server could not be reached.
    Connect {
        /// The address tried.
        addr: String,
        /// Why it failed.
        source: tonic::transport::Error,
    },
    /// The server refused or failed the request.
    Status(Status),
    /// The server's answer does not make sense.
    Response(String),
    /// The server answered the health check with another status than SERVING.
    NotServing {
        /// The service asked about; empty for the server as a whole.
        service: String,
        /// The status it reported, such as `NOT_SERVING`.
        status: String,
    },
    /// Writing the output failed.
    Output(io::Error),
}

impl CliError {
    /// The process exit code: 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl From<Status> for CliError {
    fn from(status: Status) -> Self {
        Self::Status(status)
    }
}

impl From<io::Error> for CliError {
    fn from(error: io::Error) -> Self {
        Self::Output(error)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) => f.write_str(message),
            Self::Connect { addr, source } => write!(
                f,
                "cannot connect to {addr}: {source} (is the server running? `cargo run -p calendar-grpc` starts one)"
            ),
            Self::Status(status) => f.write_str(&describe_status(status)),
            Self::Response(message) => write!(f, "unexpected answer from the server: {message}"),
            Self::NotServing { service, status } if service.is_empty() => {
                write!(f, "the server reports {status}")
            }
            Self::NotServing { service, status } => {
                write!(f, "the server reports {status} for {service}")
            }
            Self::Output(error) => write!(f, "cannot write the output: {error}"),
        }
    }
}

impl std::error::Error for CliError {}

/// A status in the user's terms: the code, the server's message, the details that help (the
/// offending fields, the conflicting event) and what to do about it.
pub fn describe_status(status: &Status) -> String {
    let details = status.get_error_details();
    let violations = details
        .bad_request()
        .map(|bad_request| bad_request.field_violations.as_slice())
        .unwrap_or_default();
    // The message of an invalid request repeats its violations: list them instead.
    let message = if violations.is_empty() {
        status.message()
    } else {
        "invalid fields"
    };
    let mut text = format!("{}: {message}", code_name(status.code()));
    for violation in violations {
        text.push_str(&format!(
            "\n  - {}: {}",
            violation.field, violation.description
        ));
    }
    if let Some(info) = details.error_info() {
        if info.reason == REASON_TIME_SLOT_BUSY
            && let Some(id) = info.metadata.get(CONFLICTING_EVENT_ID)
        {
            text.push_str(&format!(
                "\n  conflicting event: {id} (see `calendar get {id}`; --overlap allow lets events overlap)"
            ));
        }
        if info.reason == REASON_VERSION_MISMATCH {
            text.push_str("\n  the event changed since it was read: run the command again");
        }
    }
    let hint = match status.code() {
        Code::Unauthenticated => Some("name the user with --user or CALENDAR_USER"),
        Code::Unavailable => Some("the server or its storage is unavailable: try again later"),
        Code::ResourceExhausted => Some("the server is busy: try again in a moment"),
        Code::DeadlineExceeded => Some("no answer within --timeout"),
        // How tonic reports a deadline it enforced itself.
        Code::Cancelled if status.message() == "Timeout expired" => {
            Some("no answer within --timeout")
        }
        _ => None,
    };
    if let Some(hint) = hint {
        text.push_str("\n  ");
        text.push_str(hint);
    }
    text
}

/// Reads a start time: `+<duration>` from `now`, RFC 3339 with an offset, or a local date and
/// time in `zone` (`2026-03-02T09:00`, `2026-03-02 09:00:30`).
pub fn parse_start(text: &str, zone: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Some(offset) = text.strip_prefix('+') {
        let offset = parse_duration(offset).map_err(|error| error.to_string())?;
        return TimeDelta::from_std(offset)
            .ok()
            .and_then(|offset| now.checked_add_signed(offset))
            .ok_or_else(|| format!("{text:?} is too far in the future"));
    }
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.to_utc());
    }
    let local = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .into_iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .ok_or_else(|| {
            format!(
                "{text:?} is not a start time: write 2026-03-02T09:00:00+01:00, 2026-03-02 09:00 (in --time-zone) or +5m"
            )
        })?;
    zone.from_local_datetime(&local)
        .earliest()
        .map(|instant| instant.to_utc())
        .ok_or_else(|| format!("{text} does not exist in {zone} (a daylight-saving gap)"))
}

/// An event as the client shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    /// The id.
    pub id: String,
    /// The title.
    pub title: String,
    /// The description, if any.
    pub description: Option<String>,
    /// The start.
    pub start_time: DateTime<Utc>,
    /// The end (exclusive).
    pub end_time: DateTime<Utc>,
    /// The length, as `15m`.
    pub duration: String,
    /// The reminder lead, as `10m`, if any.
    pub notify_before: Option<String>,
    /// When the reminder falls due, if any.
    pub remind_at: Option<DateTime<Utc>>,
    /// `reject` or `allow`.
    pub overlap_policy: &'static str,
    /// The version.
    pub version: i64,
    /// When it was created.
    pub create_time: DateTime<Utc>,
    /// When it was last changed.
    pub update_time: DateTime<Utc>,
}

impl EventView {
    /// The view of an event the server sent.
    pub fn from_proto(event: &pb::Event) -> Result<Self, CliError> {
        let bad = |what: &str| CliError::Response(format!("event {} has {what}", event.id));
        let instant = |timestamp: Option<&prost_types::Timestamp>, what: &str| {
            timestamp
                .and_then(|t| timestamp_to_datetime(t).ok())
                .ok_or_else(|| bad(what))
        };
        let start_time = instant(event.start_time.as_ref(), "no valid start_time")?;
        let duration = event
            .duration
            .as_ref()
            .and_then(|d| duration_to_delta(d).ok())
            .ok_or_else(|| bad("no valid duration"))?;
        let notify_before = event
            .notify_before
            .as_ref()
            .map(|lead| duration_to_delta(lead).map_err(|_| bad("an invalid notify_before")))
            .transpose()?;
        let overlap_policy = match pb::OverlapPolicy::try_from(event.overlap_policy) {
            Ok(pb::OverlapPolicy::Allow) => "allow",
            Ok(pb::OverlapPolicy::Reject | pb::OverlapPolicy::Unspecified) => "reject",
            Err(_) => return Err(bad("an unknown overlap_policy")),
        };
        Ok(Self {
            id: event.id.clone(),
            title: event.title.clone(),
            description: (!event.description.is_empty()).then(|| event.description.clone()),
            start_time,
            end_time: start_time + duration,
            duration: format_duration(duration),
            notify_before: notify_before.map(format_duration),
            remind_at: notify_before.map(|lead| start_time - lead),
            overlap_policy,
            version: event.version,
            create_time: instant(event.create_time.as_ref(), "no valid create_time")?,
            update_time: instant(event.update_time.as_ref(), "no valid update_time")?,
        })
    }
}

/// A page of events as the client shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageView {
    /// The events, by start time.
    pub events: Vec<EventView>,
    /// The token of the next page, if there is one.
    pub next_page_token: Option<String>,
}

/// Writes times in one zone.
struct Times {
    /// The zone times are written in.
    zone: Tz,
}

impl Times {
    fn full(&self, instant: DateTime<Utc>) -> String {
        instant
            .with_timezone(&self.zone)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }

    /// The end, without its date when it is the start's date.
    fn end(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
        let (start, end) = (
            start.with_timezone(&self.zone),
            end.with_timezone(&self.zone),
        );
        if start.date_naive() == end.date_naive() {
            end.format("%H:%M").to_string()
        } else {
            end.format("%Y-%m-%d %H:%M").to_string()
        }
    }
}

fn write_event(out: &mut dyn Write, event: &EventView, times: &Times) -> io::Result<()> {
    let zone = times.zone;
    writeln!(out, "id:          {}", event.id)?;
    writeln!(out, "title:       {}", event.title)?;
    writeln!(
        out,
        "when:        {} - {} ({zone}, {})",
        times.full(event.start_time),
        times.end(event.start_time, event.end_time),
        event.duration
    )?;
    match (&event.notify_before, event.remind_at) {
        (Some(lead), Some(at)) => {
            writeln!(out, "reminder:    {lead} before, at {}", times.full(at))?
        }
        _ => writeln!(out, "reminder:    none")?,
    }
    writeln!(out, "overlap:     {}", event.overlap_policy)?;
    if let Some(description) = &event.description {
        writeln!(
            out,
            "description: {}",
            description.replace('\n', "\n             ")
        )?;
    }
    writeln!(out, "version:     {}", event.version)?;
    writeln!(out, "created:     {}", times.full(event.create_time))?;
    writeln!(out, "updated:     {}", times.full(event.update_time))
}

fn write_table(out: &mut dyn Write, rows: &[Vec<String>]) -> io::Result<()> {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .map(|row| row.get(column).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            let width = widths.get(column).copied().unwrap_or(0);
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn write_page(out: &mut dyn Write, page: &PageView, times: &Times, more: &str) -> io::Result<()> {
    if page.events.is_empty() {
        writeln!(out, "no events")?;
    } else {
        let mut rows = vec![
            [
                "START", "END", "TITLE", "REMINDER", "OVERLAP", "VERSION", "ID",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for event in &page.events {
            rows.push(vec![
                times.full(event.start_time),
                times.end(event.start_time, event.end_time),
                event.title.clone(),
                event
                    .notify_before
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |lead| format!("{lead} before")),
                event.overlap_policy.to_owned(),
                event.version.to_string(),
                event.id.clone(),
            ]);
        }
        write_table(out, &rows)?;
    }
    if let Some(token) = &page.next_page_token {
        writeln!(out, "more: {more} --page-token {token}")?;
    }
    Ok(())
}

fn write_json(out: &mut dyn Write, value: &impl Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value)
        .map_err(|error| CliError::Output(io::Error::other(error)))?;
    writeln!(out)?;
    Ok(())
}

/// A connected client with the caller and deadline every request carries.
struct Session {
    /// The connected client.
    client: CalendarServiceClient<Channel>,
    /// The `x-user-id` value.
    user: MetadataValue<tonic::metadata::Ascii>,
    /// The deadline of every request.
    timeout: Duration,
}

impl Session {
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(USER_ID_METADATA, self.user.clone());
        request.set_timeout(self.timeout);
        request
    }

    async fn get(&mut self, id: &str) -> Result<pb::Event, Status> {
        let request = self.request(pb::GetEventRequest { id: id.to_owned() });
        Ok(self.client.get_event(request).await?.into_inner())
    }
}

/// A channel to the server at `--addr` (`http://` assumed when no scheme is given).
async fn open_channel(cli: &Cli) -> Result<Channel, CliError> {
    let addr = if cli.addr.contains("://") {
        cli.addr.clone()
    } else {
        format!("http://{}", cli.addr)
    };
    let connect_error = |source| CliError::Connect {
        addr: addr.clone(),
        source,
    };
    Endpoint::from_shared(addr.clone())
        .map_err(connect_error)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(connect_error)
}

async fn connect(cli: &Cli) -> Result<Session, CliError> {
    let user = cli.user.as_deref().ok_or_else(|| {
        CliError::Usage("no user: name one with --user or CALENDAR_USER".to_owned())
    })?;
    let user = MetadataValue::try_from(user)
        .map_err(|_| CliError::Usage(format!("the user {user:?} is not plain ASCII")))?;
    Ok(Session {
        client: CalendarServiceClient::new(open_channel(cli).await?),
        user,
        timeout: cli.timeout,
    })
}

/// The outcome of `health`, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthView {
    /// The service asked about; empty for the server as a whole.
    pub service: String,
    /// The status the server reported: `SERVING`, `NOT_SERVING`, `UNKNOWN` or
    /// `SERVICE_UNKNOWN`.
    pub status: String,
}

/// `health`: prints the status the server reports for `args.service`, and fails unless it is
/// SERVING. The server answers NOT_FOUND for a service it does not know.
async fn check_health(cli: &Cli, args: &HealthArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let mut client = HealthClient::new(open_channel(cli).await?);
    let mut request = Request::new(HealthCheckRequest {
        service: args.service.clone(),
    });
    request.set_timeout(cli.timeout);
    let answer = client.check(request).await?.into_inner();
    let status = ServingStatus::try_from(answer.status).unwrap_or(ServingStatus::Unknown);
    let view = HealthView {
        service: args.service.clone(),
        status: status.as_str_name().to_owned(),
    };
    if cli.json {
        write_json(out, &view)?;
    } else {
        writeln!(out, "{}", view.status)?;
    }
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(CliError::NotServing {
            service: view.service,
            status: view.status,
        })
    }
}

fn std_to_proto(duration: Duration) -> Result<prost_types::Duration, CliError> {
    TimeDelta::from_std(duration)
        .map(delta_to_duration)
        .map_err(|_| CliError::Usage(format!("{duration:?} is too long")))
}

/// Runs the command, writing its result to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    if let Command::Health(args) = &cli.command {
        return check_health(&cli, args, out).await;
    }
    let zone =
        parse_time_zone(&cli.time_zone).map_err(|error| CliError::Usage(error.to_string()))?;
    let times = Times { zone };
    let mut session = connect(&cli).await?;
    let now = Utc::now();
    let show = |out: &mut dyn Write, event: &pb::Event| -> Result<(), CliError> {
        let view = EventView::from_proto(event)?;
        if cli.json {
            write_json(out, &view)
        } else {
            write_event(out, &view, &times).map_err(CliError::from)
        }
    };
    match &cli.command {
        Command::Create(args) => {
            let start = parse_start(&args.start, zone, now).map_err(CliError::Usage)?;
            let event = pb::Event {
                title: args.title.clone(),
                description: args.description.clone().unwrap_or_default(),
                start_time: Some(datetime_to_timestamp(start)),
                duration: Some(std_to_proto(args.duration)?),
                notify_before: args.notify_before.map(std_to_proto).transpose()?,
                overlap_policy: args.overlap.to_proto().into(),
                ..pb::Event::default()
            };
            let request = session.request(pb::CreateEventRequest {
                event: Some(event),
                event_id: args.id.clone().unwrap_or_default(),
            });
            let created = session.client.create_event(request).await?.into_inner();
            show(out, &created)
        }
        Command::Get { id } => {
            let event = session.get(id).await?;
            show(out, &event)
        }
        Command::Update(args) => {
            let mut event = session.get(&args.id).await?;
            let expected_version = Some(event.version);
            if let Some(title) = &args.title {
                event.title.clone_from(title);
            }
            if let Some(start) = &args.start {
                let start = parse_start(start, zone, now).map_err(CliError::Usage)?;
                event.start_time = Some(datetime_to_timestamp(start));
            }
            if let Some(duration) = args.duration {
                event.duration = Some(std_to_proto(duration)?);
            }
            if args.no_description {
                event.description.clear();
            } else if let Some(description) = &args.description {
                event.description.clone_from(description);
            }
            if args.no_reminder {
                event.notify_before = None;
            } else if let Some(lead) = args.notify_before {
                event.notify_before = Some(std_to_proto(lead)?);
            }
            if let Some(overlap) = args.overlap {
                event.overlap_policy = overlap.to_proto().into();
            }
            let request = session.request(pb::UpdateEventRequest {
                event: Some(event),
                expected_version,
            });
            let updated = session.client.update_event(request).await?.into_inner();
            show(out, &updated)
        }
        Command::Delete { id } => {
            let request = session.request(pb::DeleteEventRequest { id: id.clone() });
            session.client.delete_event(request).await?;
            if cli.json {
                write_json(out, &serde_json::json!({ "deleted": id }))
            } else {
                writeln!(out, "deleted {id}").map_err(CliError::from)
            }
        }
        Command::Day(args) | Command::Week(args) | Command::Month(args) => {
            let date = args
                .date
                .unwrap_or_else(|| now.with_timezone(&zone).date_naive());
            let (events, next_page_token) =
                list(&mut session, &cli.command, date, &cli.time_zone, args).await?;
            let page = PageView {
                events: events
                    .iter()
                    .map(EventView::from_proto)
                    .collect::<Result<_, _>>()?,
                next_page_token: (!next_page_token.is_empty()).then_some(next_page_token),
            };
            if cli.json {
                write_json(out, &page)
            } else {
                let kind = match &cli.command {
                    Command::Week(_) => "week",
                    Command::Month(_) => "month",
                    _ => "day",
                };
                let more = format!("calendar {kind} {date} --time-zone {zone}");
                write_page(out, &page, &times, &more).map_err(CliError::from)
            }
        }
        // Answered above, before a user is asked for.
        Command::Health(args) => check_health(&cli, args, out).await,
    }
}

/// Calls the list method of `command`.
async fn list(
    session: &mut Session,
    command: &Command,
    date: NaiveDate,
    time_zone: &str,
    args: &ListArgs,
) -> Result<(Vec<pb::Event>, String), CliError> {
    let date = Some(naive_to_date(date));
    let time_zone = time_zone.to_owned();
    let page_token = args.page_token.clone().unwrap_or_default();
    let page_size = args.page_size;
    Ok(match command {
        Command::Week(_) => {
            let request = session.request(pb::ListWeekEventsRequest {
                date,
                time_zone,
                page_size,
                page_token,
            });
            let page = session.client.list_week_events(request).await?.into_inner();
            (page.events, page.next_page_token)
        }
        Command::Month(_) => {
            let request = session.request(pb::ListMonthEventsRequest {
                date,
                time_zone,
                page_size,
                page_token,
            });
            let page = session
                .client
                .list_month_events(request)
                .await?
                .into_inner();
            (page.events, page.next_page_token)
        }
        _ => {
            let request = session.request(pb::ListDayEventsRequest {
                date,
                time_zone,
                page_size,
                page_token,
            });
            let page = session.client.list_day_events(request).await?.into_inner();
            (page.events, page.next_page_token)
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use tonic_types::{ErrorDetails, FieldViolation};

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn health_needs_no_user_and_names_what_is_not_serving() {
        let cli = Cli::try_parse_from(["calendar", "health"]).unwrap();
        assert!(matches!(&cli.command, Command::Health(args) if args.service.is_empty()));
        let cli = Cli::try_parse_from(["calendar", "health", "--service", "calendar.v1.X"]);
        assert!(
            matches!(&cli.unwrap().command, Command::Health(args) if args.service == "calendar.v1.X")
        );

        let server = CliError::NotServing {
            service: String::new(),
            status: "NOT_SERVING".into(),
        };
        assert_eq!(server.to_string(), "the server reports NOT_SERVING");
        assert_eq!(server.exit_code(), 1);
        let service = CliError::NotServing {
            service: "calendar.v1.CalendarService".into(),
            status: "UNKNOWN".into(),
        };
        assert_eq!(
            service.to_string(),
            "the server reports UNKNOWN for calendar.v1.CalendarService"
        );
    }

    #[test]
    fn starts_are_absolute_local_or_relative() {
        let now = at("2026-03-02T08:00:00Z");
        let berlin = Tz::Europe__Berlin;
        assert_eq!(
            parse_start("2026-03-02T09:00:00+01:00", Tz::UTC, now),
            Ok(at("2026-03-02T08:00:00Z"))
        );
        assert_eq!(
            parse_start("2026-03-02 09:00", berlin, now),
            Ok(at("2026-03-02T08:00:00Z"))
        );
        assert_eq!(
            parse_start("2026-07-02T09:00", berlin, now),
            Ok(at("2026-07-02T07:00:00Z"))
        );
        assert_eq!(
            parse_start("+1h30m", berlin, now),
            Ok(at("2026-03-02T09:30:00Z"))
        );
        let gap = parse_start("2026-03-29 02:30", berlin, now).unwrap_err();
        assert!(gap.contains("does not exist"), "{gap}");
        assert!(parse_start("tomorrow", Tz::UTC, now).is_err());
        assert!(parse_start("+soon", Tz::UTC, now).is_err());
    }

    #[test]
    fn statuses_are_described_with_their_details() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "invalid request",
            ErrorDetails::with_bad_request(vec![
                FieldViolation::new("event.title", "title is empty"),
                FieldViolation::new("event.duration", "is required"),
            ]),
        );
        assert_eq!(
            describe_status(&status),
            "INVALID_ARGUMENT: invalid fields\n  - event.title: title is empty\n  - event.duration: is required"
        );
        let busy = crate::status::from_calendar_error(calendar_core::CalendarError::SlotBusy {
            conflicting: Some("0190f5d2-6a43-7c3e-9a10-6f2b3c4d5e6f".parse().unwrap()),
        });
        assert!(
            describe_status(&busy)
                .contains("conflicting event: 0190f5d2-6a43-7c3e-9a10-6f2b3c4d5e6f")
        );
        let denied = Status::unauthenticated("missing x-user-id metadata");
        assert!(describe_status(&denied).ends_with("--user or CALENDAR_USER"));
    }

    #[test]
    fn events_are_shown_in_the_chosen_zone() {
        let event = pb::Event {
            id: "e1".into(),
            title: "Standup".into(),
            start_time: Some(datetime_to_timestamp(at("2026-03-02T08:00:00Z"))),
            duration: Some(delta_to_duration(TimeDelta::minutes(15))),
            notify_before: Some(delta_to_duration(TimeDelta::minutes(10))),
            overlap_policy: pb::OverlapPolicy::Reject.into(),
            version: 1,
            create_time: Some(datetime_to_timestamp(at("2026-03-01T08:00:00Z"))),
            update_time: Some(datetime_to_timestamp(at("2026-03-01T08:00:00Z"))),
            ..pb::Event::default()
        };
        let view = EventView::from_proto(&event).unwrap();
        assert_eq!(view.end_time, at("2026-03-02T08:15:00Z"));
        assert_eq!(view.remind_at, Some(at("2026-03-02T07:50:00Z")));
        let times = Times {
            zone: Tz::Europe__Berlin,
        };
        let page = PageView {
            events: vec![view.clone()],
            next_page_token: Some("abc".into()),
        };
        let mut out = Vec::new();
        write_page(&mut out, &page, &times, "calendar day 2026-03-02").unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "START             END    TITLE    REMINDER    OVERLAP  VERSION  ID"
        );
        assert_eq!(
            lines[1],
            "2026-03-02 09:00  09:15  Standup  10m before  reject   1        e1"
        );
        assert_eq!(lines[2], "more: calendar day 2026-03-02 --page-token abc");

        let mut out = Vec::new();
        write_event(&mut out, &view, &times).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("when:        2026-03-02 09:00 - 09:15 (Europe/Berlin, 15m)"));
        assert!(text.contains("reminder:    10m before, at 2026-03-02 08:50"));

        let broken = pb::Event {
            duration: None,
            ..event
        };
        assert!(matches!(
            EventView::from_proto(&broken),
            Err(CliError::Response(_))
        ));
    }
}
