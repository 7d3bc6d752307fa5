//! The calendar deployed as in production, for one test: a PostgreSQL database and a RabbitMQ
//! queue of its own, the gRPC server (`calendar-grpc`, PostgreSQL mode: reminders are left to
//! the workers) and any number of schedulers and senders (`calendar-worker scheduler|sender`),
//! each a real process listening on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use calendar_grpc::proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use calendar_tests::harness::database::TestDatabase;
use calendar_tests::harness::grpc::{self, GrpcServer};
use calendar_tests::harness::process::{Process, binary};
use calendar_tests::harness::{http, services};
use tokio::sync::MutexGuard;
use tonic::transport::Channel;

use super::one_at_a_time;

/// Longest a process may take to start and get ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a process may take to stop after SIGTERM (its drain timeout is 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A `calendar-worker` process and its HTTP endpoint (metrics and health).
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) process: Process,
    /// Where it serves /metrics, /health/live and /health/ready.
    pub(crate) http: SocketAddr,
}

impl Worker {
    /// The sum of the samples of the counter (or gauge) `name` on its /metrics; 0 when the
    /// metric has not been recorded yet.
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let (status, body) = http::get(self.http, "/metrics")
            .await
            .unwrap_or_else(|error| panic!("{}: GET /metrics: {error}", self.process.name()));
        assert_eq!(status, 200, "{}: GET /metrics: {body}", self.process.name());
        http::metric_sum(&body, name)
    }

    /// Waits until the counter `name` reaches `at_least`, failing after `timeout`.
    pub(crate) async fn wait_for_metric(&self, name: &str, at_least: f64, timeout: Duration) {
        super::eventually(
            &format!("{} {name} at {at_least}", self.process.name()),
            timeout,
            async || {
                let value = self.metric(name).await;
                if value >= at_least {
                    Ok(())
                } else {
                    Err(format!("{value} so far"))
                }
            },
        )
        .await;
    }
}

/// The roles of `calendar-worker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Scheduler,
    Sender,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Scheduler => "scheduler",
            Self::Sender => "sender",
        }
    }
}

/// The server, the workers, their database and their queue. One at a time: a stack holds the
/// other tests' stacks off from its start to its end.
///
/// Fields drop in order: the processes are killed before their database is dropped, and the
/// next test starts after that.
#[derive(Debug)]
pub(crate) struct Stack {
    server: GrpcServer,
    /// Every scheduler started, in order.
    pub(crate) schedulers: Vec<Worker>,
    /// Every sender started, in order, those killed included (their logs still count).
    pub(crate) senders: Vec<Worker>,
    /// The queue's name, the test's own.
    queue: String,
    amqp_url: String,
    pub(crate) database: TestDatabase,
    /// Holds the other tests' stacks off until this one is gone.
    serial: MutexGuard<'static, ()>,
}

impl Stack {
    /// A fresh database and queue, the server, then `schedulers` schedulers and `senders`
    /// senders, each ready (its /health/ready answers 200) when this returns.
    pub(crate) async fn start(schedulers: usize, senders: usize) -> Self {
        let serial = one_at_a_time().await;
        let amqp_url = services::amqp_url();
        if let Err(error) = services::require_broker(&amqp_url).await {
            panic!("{error}; bash deploy/test.sh starts it");
        }
        let database = TestDatabase::create("calendar_e2e_")
            .await
            .unwrap_or_else(|error| panic!("cannot create the test database: {error}"));
        // The server applies the migrations before it listens, so the workers find them done.
        let server = GrpcServer::start("server", &database.url)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let mut stack = Self {
            server,
            schedulers: Vec::new(),
            senders: Vec::new(),
            queue: format!("calendar.e2e.{}", services::suffix()),
            amqp_url,
            database,
            serial,
        };
        for _ in 0..schedulers {
            stack.start_worker(Role::Scheduler).await;
        }
        for _ in 0..senders {
            stack.start_worker(Role::Sender).await;
        }
        stack
    }

    /// Starts one more worker in `role` and waits until it is ready.
    pub(crate) async fn start_worker(&mut self, role: Role) {
        let workers = match role {
            Role::Scheduler => &mut self.schedulers,
            Role::Sender => &mut self.senders,
        };
        let name = format!("{}-{}", role.as_str(), workers.len() + 1);
        let process = Process::start(
            &name,
            &binary("calendar-worker").unwrap_or_else(|error| panic!("{error}")),
            &[role.as_str(), "--metrics-addr", "127.0.0.1:0"],
            &[
                ("DATABASE_URL", &self.database.url),
                ("AMQP_URL", &self.amqp_url),
                ("CALENDAR_QUEUE", &self.queue),
                // The broker deletes the test's queues once they are unused.
                ("CALENDAR_QUEUE_EXPIRES", "5m"),
                ("CALENDAR_LOG_FORMAT", "json"),
                ("RUST_LOG", "info"),
            ],
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let http = process
            .listening_address("metrics endpoint listening")
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let worker = Worker { process, http };
        wait_until_ready(&worker).await;
        workers.push(worker);
    }

    /// A client of the gRPC server.
    pub(crate) async fn client(&self) -> CalendarServiceClient<Channel> {
        grpc::connect(&self.server.url())
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// The queue's name: the workers' exchange and queue, with `.dead` its dead-letter queue.
    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    /// The broker the workers use.
    pub(crate) fn amqp_url(&self) -> &str {
        &self.amqp_url
    }

    /// The gRPC server's process, for its log (a line per request, with its gRPC code).
    pub(crate) fn server(&self) -> &Process {
        &self.server.process
    }

    /// Every process, the server first.
    fn processes(&mut self) -> impl Iterator<Item = &mut Process> {
        std::iter::once(&mut self.server.process).chain(
            self.schedulers
                .iter_mut()
                .chain(self.senders.iter_mut())
                .map(|worker| &mut worker.process),
        )
    }

    /// Stops every process with SIGTERM, workers first, and checks that each shut down cleanly
    /// and in time; then drops the database and lets the next test start.
    pub(crate) async fn stop(mut self) {
        let mut processes: Vec<&mut Process> = self.processes().collect();
        processes.rotate_left(1);
        for process in processes {
            process
                .terminate(STOP_TIMEOUT)
                .await
                .unwrap_or_else(|error| panic!("{error}"));
        }
        let Self {
            database, serial, ..
        } = self;
        let name = database.name().to_owned();
        if let Err(error) = database.drop_now().await {
            eprintln!("could not drop the test database {name}: {error}");
        }
        drop(serial);
    }
}

/// Waits until the worker's /health/ready answers 200: connected to RabbitMQ, PostgreSQL
/// checked.
async fn wait_until_ready(worker: &Worker) {
    if let Err(status) = http::wait_until_ready(worker.http, START_TIMEOUT).await {
        panic!(
            "{} not ready within {START_TIMEOUT:?} (last answer {status}):\n{}",
            worker.process.name(),
            worker.process.tail()
        );
    }
}
