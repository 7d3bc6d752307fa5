//! Reminders through faults: a stack of two schedulers and two senders receives a stream of
//! events through gRPC (several clients, each retrying a failed create under the event's own id,
//! so a retried create is idempotent and the expected reminders are exactly the events
//! stored), while the scenario kills (SIGKILL) and restarts schedulers and senders, stops and
//! starts the broker's application, cuts every PostgreSQL connection of the stack's database
//! and then has the database refuse connections for a while. No reminder may be lost; one may
//! be delivered twice only where a sender died between delivering it and recording it.
//!
//! Ignored by default: it restarts the machine's RabbitMQ, which every other test using the
//! broker would notice. `bash deploy/test.sh` runs it alone, after the rest:
//!
//! ```text
//! cargo test -p calendar-tests --test it -- --ignored e2e::faults:: --test-threads 1 --nocapture
//! ```
//!
//! `CALENDAR_FAULTS_LONG=1` runs the long version (5,000 events over a minute instead of 1,000
//! over 30 s). The broker is restarted with `rabbitmqctl` (`RABBITMQCTL` names another one), so
//! `AMQP_URL` must be the broker of this machine, and the test must run as a user that may
//! control it.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use calendar_core::SenderConfig;
use calendar_core::instruments::NOTIFICATIONS_DUPLICATE;
use calendar_grpc::mapping::{datetime_to_timestamp, delta_to_duration};
use calendar_grpc::proto::calendar::v1 as pb;
use calendar_grpc::proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use calendar_tests::harness::services;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tokio::time::{Instant, sleep, sleep_until};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::deliveries::{Figures, Logged, Reminder};
use super::eventually;
use super::stack::{Role, Stack};

type Client = CalendarServiceClient<Channel>;

/// How many events, created over how long.
#[derive(Debug, Clone, Copy)]
struct Scale {
    name: &'static str,
    events: usize,
    window: Duration,
}

/// The default: about two minutes in all on a two-core machine.
const SHORT: Scale = Scale {
    name: "short",
    events: 1_000,
    window: Duration::from_secs(30),
};

/// With `CALENDAR_FAULTS_LONG=1`.
const LONG: Scale = Scale {
    name: "long",
    events: 5_000,
    window: Duration::from_secs(60),
};

/// How long before its event a reminder falls due: the event is far from started when its
/// reminder is due, however late it was created (a reminder whose event started is skipped).
const LEAD: TimeDelta = TimeDelta::minutes(10);

/// How long after its create was planned an event's reminder falls due: reminders fall due
/// through the whole window, while the faults happen.
const DUE_AFTER_CREATE: TimeDelta = TimeDelta::seconds(3);

/// Client tasks creating events at once.
const CLIENTS: usize = 4;

/// The deadline each gRPC call carries (`grpc-timeout`).
const CALL_DEADLINE: Duration = Duration::from_secs(2);

/// Longest the test waits for any answer to a call: a call that takes this long hangs.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a create may keep failing before the test gives up on it.
const CREATE_GIVE_UP: Duration = Duration::from_secs(60);

/// How long the database refuses connections.
const REFUSING_FOR: Duration = Duration::from_secs(3);

/// Longest the service may take to create an event again once connections are allowed.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the broker's application stays stopped, so the workers notice and retry.
const BROKER_DOWN_FOR: Duration = Duration::from_secs(1);

/// Longest the broker may take to answer again after `start_app`.
const BROKER_TIMEOUT: Duration = Duration::from_secs(90);

/// Longest a `rabbitmqctl` command may take.
const RABBITMQCTL_TIMEOUT: Duration = Duration::from_secs(120);

/// After the last event is created, the longest the delivery of every reminder may take: a
/// reminder claimed by a killed scheduler is published again once its lease (30 s) runs out,
/// and a worker reconnects to the broker within 10 s.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the senders must have logged nothing before the counts are final.
const QUIET_FOR: Duration = Duration::from_secs(2);

/// One disturbance.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL the worker of this role in this slot (0 or 1), then start another in its place.
    Kill(Role, usize),
    /// `rabbitmqctl stop_app`, then `start_app`, then wait until the broker answers.
    BrokerRestart,
    /// Terminate every connection to the stack's database.
    CutConnections,
    /// The stack's database refuses connections ([`REFUSING_FOR`]) and loses those it had.
    RefuseConnections,
}

/// The faults, in order, spread evenly over the window: each role's instances alternately
/// killed five times, the broker restarted twice, the database's connections cut once, then
/// refused for a while.
const PLAN: [Fault; 14] = [
    Fault::Kill(Role::Scheduler, 0),
    Fault::Kill(Role::Sender, 0),
    Fault::BrokerRestart,
    Fault::Kill(Role::Scheduler, 1),
    Fault::Kill(Role::Sender, 1),
    Fault::CutConnections,
    Fault::Kill(Role::Scheduler, 0),
    Fault::Kill(Role::Sender, 0),
    Fault::RefuseConnections,
    Fault::Kill(Role::Scheduler, 1),
    Fault::Kill(Role::Sender, 1),
    Fault::BrokerRestart,
    Fault::Kill(Role::Scheduler, 0),
    Fault::Kill(Role::Sender, 0),
];

/// A request from `user`, with the [`CALL_DEADLINE`].
fn as_user<T>(user: &str, message: T) -> Request<T> {
    let mut request = crate::as_user(user, message);
    request.set_timeout(CALL_DEADLINE);
    request
}

/// An event whose reminder falls due at `due`; it may overlap others.
fn event(title: String, due: DateTime<Utc>) -> pb::Event {
    pb::Event {
        title,
        start_time: Some(datetime_to_timestamp(due + LEAD)),
        duration: Some(delta_to_duration(TimeDelta::minutes(30))),
        notify_before: Some(delta_to_duration(LEAD)),
        overlap_policy: pb::OverlapPolicy::Allow.into(),
        ..pb::Event::default()
    }
}

/// Failed calls by gRPC code.
type Failures = BTreeMap<String, usize>;

/// Whether a failed create is tried again: the server or its storage was away, busy, or did
/// not answer in time, or an internal error (retrying is safe: the create carries its id). An
/// INTERNAL answer is counted and fails the test at the end (storage that is away must be
/// UNAVAILABLE), after the figures. Anything else (invalid, the id taken by other details)
/// fails the test at once.
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
    )
}

/// Creates `event` under `id` for `user`, trying again with backoff while it fails in a way
/// that may pass, for at most `give_up`; the failures on the way are added to `failures`. The
/// same id and details each time: a create that succeeded unseen (its answer lost) returns the
/// stored event when tried again.
async fn create_until_stored(
    client: &mut Client,
    user: &str,
    id: &str,
    event: &pb::Event,
    give_up: Duration,
    failures: &mut Failures,
) -> pb::Event {
    let deadline = Instant::now() + give_up;
    let mut backoff = Duration::from_millis(50);
    loop {
        let request = as_user(
            user,
            pb::CreateEventRequest {
                event: Some(event.clone()),
                event_id: id.to_owned(),
            },
        );
        let status = match tokio::time::timeout(CLIENT_TIMEOUT, client.create_event(request)).await
        {
            Ok(Ok(created)) => return created.into_inner(),
            Ok(Err(status)) => status,
            Err(_) => panic!("CreateEvent {id} hung: no answer within {CLIENT_TIMEOUT:?}"),
        };
        assert!(retryable(&status), "CreateEvent {id} failed: {status:?}");
        assert!(
            Instant::now() < deadline,
            "CreateEvent {id} still failing after {give_up:?}: {status:?}"
        );
        *failures.entry(format!("{:?}", status.code())).or_default() += 1;
        sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// One create a client task makes: when, and what.
struct Planned {
    at: Instant,
    id: String,
    user: String,
    event: pb::Event,
}

/// What a client task created, and the failures it went through.
async fn create_planned(mut client: Client, planned: Vec<Planned>) -> (Vec<pb::Event>, Failures) {
    let mut created = Vec::with_capacity(planned.len());
    let mut failures = Failures::new();
    for plan in planned {
        sleep_until(plan.at).await;
        created.push(
            create_until_stored(
                &mut client,
                &plan.user,
                &plan.id,
                &plan.event,
                CREATE_GIVE_UP,
                &mut failures,
            )
            .await,
        );
    }
    (created, failures)
}

/// Where each slot's current worker is in [`Stack::schedulers`] and [`Stack::senders`].
#[derive(Debug)]
struct Slots {
    schedulers: [usize; 2],
    senders: [usize; 2],
}

impl Slots {
    fn of(&mut self, role: Role) -> &mut [usize; 2] {
        match role {
            Role::Scheduler => &mut self.schedulers,
            Role::Sender => &mut self.senders,
        }
    }
}

/// A fault as it happened: when it began (since the window began), how long it took, what it
/// did.
struct Happened {
    at: Duration,
    took: Duration,
    what: String,
}

impl fmt::Display for Happened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "+{:.1}s {} ({:.1} s)",
            self.at.as_secs_f64(),
            self.what,
            self.took.as_secs_f64()
        )
    }
}

/// SIGKILLs the worker of `role` in `slot` and starts another in its place (ready when this
/// returns).
async fn kill_and_replace(stack: &mut Stack, slots: &mut Slots, role: Role, slot: usize) -> String {
    let index = slots.of(role)[slot];
    let workers = match role {
        Role::Scheduler => &mut stack.schedulers,
        Role::Sender => &mut stack.senders,
    };
    let killed = workers[index].process.name().to_owned();
    workers[index].process.kill();
    stack.start_worker(role).await;
    let workers = match role {
        Role::Scheduler => &stack.schedulers,
        Role::Sender => &stack.senders,
    };
    slots.of(role)[slot] = workers.len() - 1;
    format!(
        "kill -9 {killed}, {} started",
        workers[workers.len() - 1].process.name()
    )
}

/// The `rabbitmqctl` to control the local broker with: `RABBITMQCTL`, else the usual path, else
/// the one on `PATH`.
fn rabbitmqctl() -> String {
    std::env::var("RABBITMQCTL").unwrap_or_else(|_| {
        let usual = "/usr/sbin/rabbitmqctl";
        if Path::new(usual).is_file() {
            usual.to_owned()
        } else {
            "rabbitmqctl".to_owned()
        }
    })
}

/// Runs `rabbitmqctl <action>`; panics unless it succeeds in time.
async fn control_broker(action: &str) {
    let command = rabbitmqctl();
    let output = tokio::time::timeout(
        RABBITMQCTL_TIMEOUT,
        tokio::process::Command::new(&command)
            .arg(action)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{command} {action}: no end within {RABBITMQCTL_TIMEOUT:?}"))
    .unwrap_or_else(|error| panic!("cannot run {command} {action}: {error}"));
    assert!(
        output.status.success(),
        "{command} {action} ended with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts the broker's application again if the test ends (panics) while it is stopped, so
/// that a failed run does not leave the machine's broker down.
struct BrokerStopped {
    restarted: bool,
}

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        if !self.restarted {
            let started = std::process::Command::new(rabbitmqctl())
                .arg("start_app")
                .status();
            eprintln!("the broker was left stopped; rabbitmqctl start_app: {started:?}");
        }
    }
}

/// Stops the broker's application, starts it again, and waits until it accepts connections.
async fn restart_broker(amqp_url: &str) -> String {
    let mut stopped = BrokerStopped { restarted: false };
    control_broker("stop_app").await;
    let down = Instant::now();
    sleep(BROKER_DOWN_FOR).await;
    control_broker("start_app").await;
    eventually("the broker answering again", BROKER_TIMEOUT, async || {
        let connection = services::connect_broker(amqp_url).await?;
        let _ = connection.close().await;
        Ok(())
    })
    .await;
    stopped.restarted = true;
    format!(
        "rabbitmqctl stop_app, start_app: broker answering again after {:.1} s",
        down.elapsed().as_secs_f64()
    )
}

/// A connection to the PostgreSQL server through `DATABASE_URL` (its own database, not the
/// stack's), for what the test does to the stack's database.
async fn admin() -> PgConnection {
    let url = services::admin_url();
    PgConnection::connect(&url)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", services::redacted(&url)))
}

/// Terminates every connection to the database `name`; how many there were.
async fn cut_connections(name: &str) -> i64 {
    let mut admin = admin().await;
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE terminated) FROM ( \
             SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() \
         ) AS backends",
    )
    .bind(name)
    .fetch_one(&mut admin)
    .await
    .unwrap_or_else(|error| panic!("terminating the connections to {name}: {error}"));
    let _ = admin.close().await;
    cut
}

/// Lets the database `name` accept connections, or not.
async fn allow_connections(name: &str, allow: bool) {
    let mut admin = admin().await;
    // The name is plain (a-z, 0-9, _): the harness made it so.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {allow}"
    )))
    .execute(&mut admin)
    .await
    .unwrap_or_else(|error| panic!("ALLOW_CONNECTIONS {allow} on {name}: {error}"));
    let _ = admin.close().await;
}

/// One call while the database refuses connections, and what became of it.
struct Probe {
    /// The code the client saw.
    code: Code,
    /// How long the call took.
    took: Duration,
    /// The code and latency in the server's line for the request, if it logged one.
    logged: Option<(String, f64)>,
}

impl Probe {
    /// Why the answer breaks the promise (a call while the storage is away fails by its deadline
    /// with a code that says to come back), if it does.
    fn broken(&self, status: &Status) -> Option<String> {
        // tonic's client enforces the deadline itself too: CANCELLED "Timeout expired" is the
        // deadline passing on the client's side, a moment before the server's own answer.
        let retry_later = matches!(self.code, Code::Unavailable | Code::DeadlineExceeded)
            || (self.code == Code::Cancelled && status.message() == "Timeout expired");
        let in_time = self.took <= CALL_DEADLINE + Duration::from_millis(500);
        (!retry_later || !in_time).then(|| {
            format!(
                "GetEvent while the database refused connections answered {status:?} after \
                 {:?} (deadline {CALL_DEADLINE:?}); UNAVAILABLE or DEADLINE_EXCEEDED by the \
                 deadline expected",
                self.took
            )
        })
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} in {:.2} s", self.code, self.took.as_secs_f64())?;
        match &self.logged {
            Some((code, latency_ms)) => write!(f, " (server: {code} in {latency_ms:.0} ms)"),
            None => write!(f, " (no server line)"),
        }
    }
}

/// A GetEvent (of an event that does not exist) as `user`, with the [`CALL_DEADLINE`]; what
/// the client and the server made of it. Panics if it hangs.
async fn probe(stack: &Stack, client: &Client, user: &str) -> (Probe, Status) {
    let asked = Instant::now();
    let request = as_user(
        user,
        pb::GetEventRequest {
            id: uuid::Uuid::new_v4().to_string(),
        },
    );
    let answer = tokio::time::timeout(CLIENT_TIMEOUT, client.clone().get_event(request)).await;
    let took = asked.elapsed();
    let status = match answer {
        Err(_) => panic!("GetEvent hung: no answer within {CLIENT_TIMEOUT:?}"),
        Ok(Ok(event)) => Status::internal(format!("an event came back: {event:?}")),
        Ok(Err(status)) => status,
    };
    let logged = stack
        .server()
        .wait_for_line("the probe's request", Duration::from_secs(1), |line| {
            line["span"]["user"] == user
                && line["span"]["grpc.method"] == "GetEvent"
                && line["grpc.code"].is_string()
        })
        .await
        .ok()
        .map(|line| {
            (
                line["grpc.code"].as_str().unwrap_or("?").to_owned(),
                line["latency_ms"].as_f64().unwrap_or(f64::NAN),
            )
        });
    let probe = Probe {
        code: status.code(),
        took,
        logged,
    };
    (probe, status)
}

/// The database refuses connections for [`REFUSING_FOR`], having lost those it had: calls
/// meanwhile must fail by their deadline, telling the client to come back (UNAVAILABLE, or
/// DEADLINE_EXCEEDED), never hang; once connections are allowed, the service must recover by
/// itself. Broken promises go to `violations`.
async fn refuse_connections(
    stack: &Stack,
    client: &Client,
    violations: &mut Vec<String>,
) -> String {
    let name = stack.database.name();
    allow_connections(name, false).await;
    let refusing = Instant::now();
    let cut = cut_connections(name).await;

    // The first call may find a connection the server has not used since the cut; the next
    // ones open new connections, which the database refuses.
    let mut probes = Vec::new();
    while probes.len() < 2
        || (probes.len() < 5 && refusing.elapsed() + CALL_DEADLINE < REFUSING_FOR)
    {
        let (probe, status) = probe(stack, client, &format!("probe-{}", probes.len() + 1)).await;
        violations.extend(probe.broken(&status));
        probes.push(probe);
    }

    sleep_until(refusing + REFUSING_FOR).await;
    allow_connections(name, true).await;
    let allowed = Instant::now();
    let mut failures = Failures::new();
    let probe_event = pb::Event {
        notify_before: None,
        ..event("Recovery probe".to_owned(), Utc::now())
    };
    create_until_stored(
        &mut client.clone(),
        "probe",
        &uuid::Uuid::new_v4().to_string(),
        &probe_event,
        RECOVERY_TIMEOUT,
        &mut failures,
    )
    .await;
    format!(
        "database refused connections for {:.1} s ({cut} connections cut), GetEvent meanwhile: \
         {}; a create succeeded {:.1} s after connections were allowed again ({} attempts \
         failed before)",
        REFUSING_FOR.as_secs_f64(),
        probes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        allowed.elapsed().as_secs_f64(),
        failures.values().sum::<usize>()
    )
}

/// Injects `fault`; what it did. Broken promises go to `violations`.
async fn inject(
    stack: &mut Stack,
    client: &Client,
    slots: &mut Slots,
    fault: Fault,
    violations: &mut Vec<String>,
) -> String {
    match fault {
        Fault::Kill(role, slot) => kill_and_replace(stack, slots, role, slot).await,
        Fault::BrokerRestart => {
            let amqp_url = stack.amqp_url().to_owned();
            restart_broker(&amqp_url).await
        }
        Fault::CutConnections => {
            let cut = cut_connections(stack.database.name()).await;
            format!("pg_terminate_backend: {cut} connections cut")
        }
        Fault::RefuseConnections => refuse_connections(stack, client, violations).await,
    }
}

/// Waits until the counts are final: no reminder pending (none will be published again), then
/// the senders silent for [`QUIET_FOR`] (what was still queued has been handled).
async fn wait_until_quiet(stack: &Stack) {
    eventually("no reminder pending", DELIVERY_TIMEOUT, async || {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE reminder_state = 'pending'")
                .fetch_one(&stack.database.pool)
                .await
                .expect("the events");
        if pending == 0 {
            Ok(())
        } else {
            Err(format!("{pending} reminders pending"))
        }
    })
    .await;
    let lines = || -> usize {
        stack
            .senders
            .iter()
            .map(|sender| sender.process.with_lines(<[_]>::len))
            .sum()
    };
    let mut last = (lines(), Instant::now());
    eventually("the senders quiet", Duration::from_secs(30), async || {
        let now = lines();
        if now != last.0 {
            last = (now, Instant::now());
        }
        if last.1.elapsed() >= QUIET_FOR {
            Ok(())
        } else {
            Err(format!(
                "{now} lines logged, the last {:?} ago",
                last.1.elapsed()
            ))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the machine's RabbitMQ: run alone (deploy/test.sh does, after the rest)"]
async fn reminders_survive_kills_broker_restarts_and_cut_connections() {
    let scale = match std::env::var("CALENDAR_FAULTS_LONG").as_deref() {
        Ok("1") => LONG,
        _ => SHORT,
    };
    let mut stack = Stack::start(2, 2).await;
    let client = stack.client().await;

    // The events, their creates spread evenly over the window and over the client tasks, each
    // reminder due DUE_AFTER_CREATE after its create was planned.
    let began = Instant::now();
    let t0 = Utc::now();
    let t0 = DateTime::from_timestamp_millis(t0.timestamp_millis()).unwrap_or(t0);
    let mut plans: Vec<Vec<Planned>> = (0..CLIENTS).map(|_| Vec::new()).collect();
    for i in 0..scale.events {
        let offset = scale.window.mul_f64(i as f64 / scale.events as f64);
        let due = t0 + TimeDelta::from_std(offset).expect("a short offset") + DUE_AFTER_CREATE;
        plans[i % CLIENTS].push(Planned {
            at: began + offset,
            id: uuid::Uuid::new_v4().to_string(),
            user: format!("user-{}", i % 100),
            event: event(format!("Fault {i}"), due),
        });
    }
    let clients: Vec<_> = plans
        .into_iter()
        .map(|planned| tokio::spawn(create_planned(client.clone(), planned)))
        .collect();

    let mut slots = Slots {
        schedulers: [0, 1],
        senders: [0, 1],
    };
    let mut timeline = Vec::with_capacity(PLAN.len());
    let mut violations = Vec::new();
    for (k, fault) in PLAN.into_iter().enumerate() {
        let planned_at = scale.window.mul_f64((k as f64 + 0.5) / PLAN.len() as f64);
        sleep_until(began + planned_at).await;
        let at = began.elapsed();
        let what = inject(&mut stack, &client, &mut slots, fault, &mut violations).await;
        timeline.push(Happened {
            at,
            took: began.elapsed() - at,
            what,
        });
    }

    let mut events = Vec::with_capacity(scale.events);
    let mut failures = Failures::new();
    for task in clients {
        let (created, failed) = task.await.expect("a client task");
        events.extend(created);
        for (code, count) in failed {
            *failures.entry(code).or_default() += count;
        }
    }
    let created_in = began.elapsed();

    // Exactly the events created are stored, each with its reminder.
    let expected: HashSet<&str> = events.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(expected.len(), scale.events, "an event created twice");
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT id::text FROM events WHERE remind_at IS NOT NULL")
            .fetch_all(&stack.database.pool)
            .await
            .expect("the events");
    assert_eq!(
        stored.iter().map(String::as_str).collect::<HashSet<_>>(),
        expected,
        "the events stored are not those created"
    );
    let reminders: Vec<Reminder> = events.iter().map(Reminder::of).collect();

    eventually("every reminder delivered", DELIVERY_TIMEOUT, async || {
        let delivered = Logged::by(&stack.senders).delivered(&reminders);
        if delivered == reminders.len() {
            Ok(())
        } else {
            Err(format!("{delivered} of {} delivered", reminders.len()))
        }
    })
    .await;
    let delivered_in = began.elapsed();
    wait_until_quiet(&stack).await;

    let figures = Figures::measure(&stack, &reminders).await;
    let logged = Logged::by(&stack.senders);
    let twice: Vec<&Reminder> = reminders
        .iter()
        .filter(|reminder| logged.times(&reminder.key) > 1)
        .collect();
    // Who delivered them, the killed senders marked: a sender killed between delivering and
    // recording explains one.
    let delivered_by = |reminder: &Reminder| -> String {
        let senders: Vec<String> = stack
            .senders
            .iter()
            .enumerate()
            .filter_map(|(index, sender)| {
                let times = Logged::by(std::slice::from_ref(sender)).times(&reminder.key);
                let killed = if slots.senders.contains(&index) {
                    ""
                } else {
                    " (killed)"
                };
                (times > 0).then(|| format!("{}{killed} {times}x", sender.process.name()))
            })
            .collect();
        format!("{} by {}", reminder.key, senders.join(", "))
    };
    let twice_shown: Vec<String> = twice.iter().take(5).map(|r| delivered_by(r)).collect();
    // The killed senders' counts died with them: only the live ones' are left.
    let mut suppressed_by_live = 0.0;
    for slot in slots.senders {
        suppressed_by_live += stack.senders[slot].metric(NOTIFICATIONS_DUPLICATE).await;
    }
    // A sender records a delivery before acknowledging it, and holds at most `concurrency`
    // messages unsettled (its run loop receives no more), so a SIGKILL can leave at most that
    // many delivered but unrecorded: the broker gives them to the other sender, whose delivery
    // log does not know them, and they are delivered again. Everything else that delivers a
    // message again (a killed scheduler's lease running out, the broker restarting under
    // unacknowledged messages, a cut connection failing a claim's mark) reaches a sender whose
    // delivery log knows the key, and is suppressed; unless the record itself failed (its
    // connection cut under it): the sender acknowledges such a delivery anyway, so a copy
    // published again would get through, once per unrecorded delivery at most.
    let sender_kills = PLAN
        .iter()
        .filter(|fault| matches!(fault, Fault::Kill(Role::Sender, _)))
        .count();
    let bound = sender_kills * SenderConfig::default().concurrency + figures.unrecorded;
    eprintln!(
        "faults ({}: {} events over {:?}, created in {:.1} s, all delivered {:.1} s after the \
         start): {figures}; {} delivered twice {twice_shown:?} (extra deliveries bound \
         {bound}), {} delivered but unrecorded, {suppressed_by_live} duplicates suppressed by \
         the live senders (metric); creates failed and retried: {failures:?}; timeline: {}",
        scale.name,
        scale.events,
        scale.window,
        created_in.as_secs_f64(),
        delivered_in.as_secs_f64(),
        twice.len(),
        figures.unrecorded,
        timeline
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    if let Some(internal) = failures.get("Internal") {
        violations.push(format!(
            "the server answered {internal} creates with INTERNAL: storage that is away must be \
             UNAVAILABLE (see the server's \"internal storage failure\" lines)"
        ));
    }
    assert!(figures.lost.is_empty(), "lost: {:?}", figures.lost);
    assert_eq!(figures.delivered, scale.events, "{figures}");
    assert_eq!(figures.unexpected, 0, "unexpected deliveries; {figures}");
    assert!(
        figures.again <= bound,
        "{} extra deliveries, more than {sender_kills} sender kills can explain ({bound}); \
         {figures}",
        figures.again
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    stack.stop().await;
}
