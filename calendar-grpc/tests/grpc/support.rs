//! A server on port 0, clients for it, and event stores that block or fail on demand.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use calendar_adapters::memory::MemoryEventRepository;
use calendar_adapters::service::{LATENCY_BUCKETS, PrometheusHandle, install_prometheus};
use calendar_core::{
    Cursor, Event, EventDetails, EventId, EventRepository, Notification, ReminderKey,
    RepositoryError, TimeRange, UserId, Version,
};
use calendar_grpc::auth::USER_ID_METADATA;
use calendar_grpc::mapping::{datetime_to_timestamp, delta_to_duration};
use calendar_grpc::proto::calendar::v1 as pb;
use calendar_grpc::proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use calendar_grpc::server::{self, ServeError, ServerSettings};
use chrono::{DateTime, TimeDelta, Utc};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The process-wide Prometheus recorder, installed by the first test that needs it (or the
/// first server, so that every server's metrics land in it).
pub(crate) fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| install_prometheus(LATENCY_BUCKETS).unwrap())
}

/// Logs to the test output when `TEST_LOG` is set.
fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = calendar_adapters::service::init_tracing(
                calendar_adapters::service::LogFormat::Pretty,
                "debug,h2=info,hyper=info,tower=info",
            );
        }
    });
}

/// Settings for tests: short health interval and drain.
pub(crate) fn settings() -> ServerSettings {
    ServerSettings {
        health_interval: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(2),
        ..ServerSettings::default()
    }
}

/// A server running on an ephemeral port.
pub(crate) struct TestServer {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Cancels it.
    pub(crate) shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
}

impl TestServer {
    /// Starts a server over `repository`.
    pub(crate) async fn start(
        repository: Arc<dyn EventRepository>,
        settings: ServerSettings,
    ) -> Self {
        init_logs();
        metrics();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::run(
            listener,
            repository,
            settings,
            shutdown.clone(),
        ));
        Self {
            addr,
            shutdown,
            task,
        }
    }

    /// Starts a server over an empty in-memory store.
    pub(crate) async fn memory() -> Self {
        Self::start(Arc::new(MemoryEventRepository::new()), settings()).await
    }

    /// A connected channel.
    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A calendar client.
    pub(crate) async fn client(&self) -> CalendarServiceClient<Channel> {
        CalendarServiceClient::new(self.channel().await)
    }

    /// Cancels the server and waits for it to return; how long that took.
    pub(crate) async fn stop(self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the server did not stop")
            .unwrap()
            .unwrap();
        started.elapsed()
    }
}

/// A request from `user`.
pub(crate) fn as_user<T>(user: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(USER_ID_METADATA, user.parse().unwrap());
    request
}

/// A future instant, whole seconds, so round trips compare equal.
pub(crate) fn tomorrow_at(hour: u32) -> DateTime<Utc> {
    let date = (Utc::now() + TimeDelta::days(1)).date_naive();
    date.and_hms_opt(hour, 0, 0).unwrap().and_utc()
}

/// An event message starting at `start`, lasting `minutes`.
pub(crate) fn event(title: &str, start: DateTime<Utc>, minutes: i64) -> pb::Event {
    pb::Event {
        title: title.into(),
        start_time: Some(datetime_to_timestamp(start)),
        duration: Some(delta_to_duration(TimeDelta::minutes(minutes))),
        ..pb::Event::default()
    }
}

/// A create request for `event`.
pub(crate) fn create(event: pb::Event) -> pb::CreateEventRequest {
    pb::CreateEventRequest {
        event: Some(event),
        event_id: String::new(),
    }
}

/// A request for an event nobody created.
pub(crate) fn unknown_event() -> pb::GetEventRequest {
    pb::GetEventRequest {
        id: uuid::Uuid::now_v7().to_string(),
    }
}

/// The fields a status's BadRequest details name.
pub(crate) fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// An in-memory store whose event reads (`get`, `list`) can be held at a gate, and whose
/// health check can be made to fail.
pub(crate) struct GatedRepository {
    inner: MemoryEventRepository,
    /// Whether reads wait for the gate.
    gating: bool,
    /// `true` once the gate is open.
    open: watch::Sender<bool>,
    /// Reads that reached the gate.
    entered: AtomicUsize,
    /// Reads dropped while waiting at the gate (cancelled by a deadline or a shutdown).
    abandoned: Arc<AtomicUsize>,
    arrived: Notify,
    /// Whether `check` fails.
    down: AtomicBool,
}

/// Counts a read dropped before the gate let it through.
struct Waiting {
    abandoned: Arc<AtomicUsize>,
    passed: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.passed {
            self.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl GatedRepository {
    fn new(gating: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryEventRepository::new(),
            gating,
            open: watch::channel(!gating).0,
            entered: AtomicUsize::new(0),
            abandoned: Arc::new(AtomicUsize::new(0)),
            arrived: Notify::new(),
            down: AtomicBool::new(false),
        })
    }

    /// A store whose reads wait until [`open`](Self::open).
    pub(crate) fn closed() -> Arc<Self> {
        Self::new(true)
    }

    /// A store that never holds reads.
    pub(crate) fn ungated() -> Arc<Self> {
        Self::new(false)
    }

    /// Lets every waiting and future read through.
    pub(crate) fn open(&self) {
        self.open.send_replace(true);
    }

    /// Waits until `count` reads are at the gate.
    pub(crate) async fn wait_for_entered(&self, count: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let arrived = self.arrived.notified();
                if self.entered.load(Ordering::SeqCst) >= count {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .expect("reads did not reach the gate");
    }

    /// Reads dropped at the gate.
    pub(crate) fn abandoned(&self) -> usize {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// Makes the health check fail (`true`) or succeed.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    async fn gate(&self) {
        if !self.gating {
            return;
        }
        let mut open = self.open.subscribe();
        let mut waiting = Waiting {
            abandoned: self.abandoned.clone(),
            passed: false,
        };
        self.entered.fetch_add(1, Ordering::SeqCst);
        self.arrived.notify_waiters();
        let _ = open.wait_for(|open| *open).await;
        waiting.passed = true;
    }
}

#[async_trait]
impl EventRepository for GatedRepository {
    async fn insert(&self, event: &Event) -> Result<(), RepositoryError> {
        self.inner.insert(event).await
    }

    async fn get(&self, owner: &UserId, id: EventId) -> Result<Option<Event>, RepositoryError> {
        self.gate().await;
        self.inner.get(owner, id).await
    }

    async fn update(
        &self,
        owner: &UserId,
        id: EventId,
        details: &EventDetails,
        expected: Option<Version>,
        now: DateTime<Utc>,
    ) -> Result<Event, RepositoryError> {
        self.inner.update(owner, id, details, expected, now).await
    }

    async fn delete(&self, owner: &UserId, id: EventId) -> Result<(), RepositoryError> {
        self.inner.delete(owner, id).await
    }

    async fn list(
        &self,
        owner: &UserId,
        range: TimeRange,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Event>, RepositoryError> {
        self.gate().await;
        self.inner.list(owner, range, after, limit).await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        ahead: TimeDelta,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<Notification>, RepositoryError> {
        self.inner.claim_due(now, ahead, lease, limit).await
    }

    async fn current_reminders(
        &self,
        reminders: &[ReminderKey],
    ) -> Result<Vec<Notification>, RepositoryError> {
        self.inner.current_reminders(reminders).await
    }

    async fn mark_sent(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError> {
        self.inner.mark_sent(reminders).await
    }

    async fn claim_cleanup(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, RepositoryError> {
        self.inner.claim_cleanup(holder, now, until).await
    }

    async fn mark_skipped(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError> {
        self.inner.mark_skipped(reminders).await
    }

    async fn release(&self, reminders: &[ReminderKey]) -> Result<u64, RepositoryError> {
        self.inner.release(reminders).await
    }

    async fn delete_ended_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        self.inner.delete_ended_before(cutoff, limit).await
    }

    async fn check(&self) -> Result<(), RepositoryError> {
        if self.down.load(Ordering::SeqCst) {
            Err(RepositoryError::Unavailable(
                "the test took storage down".into(),
            ))
        } else {
            Ok(())
        }
    }
}

/// Waits until the health service reports `expected` for `service` ("" for the server).
pub(crate) async fn wait_for_health(channel: Channel, service: &str, expected: ServingStatus) {
    let mut client = HealthClient::new(channel);
    let request = || HealthCheckRequest {
        service: service.to_owned(),
    };
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let status = client
                .check(request())
                .await
                .map(|r| r.into_inner().status());
            if status.as_ref().ok() == Some(&expected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{service:?} never reported {expected:?}");
}

/// A calendar client over a bare HTTP/2 connection: unlike tonic's channel, it does not give up
/// at the request's deadline itself, so what a test sees is the server's answer.
pub(crate) async fn bare_client(
    addr: SocketAddr,
) -> CalendarServiceClient<
    impl tonic::client::GrpcService<
        tonic::body::Body,
        ResponseBody = hyper::body::Incoming,
        Error = hyper::Error,
    > + Clone,
> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let service = tower::service_fn(move |request: http::Request<tonic::body::Body>| {
        let mut sender = sender.clone();
        async move { sender.send_request(request).await }
    });
    let origin = format!("http://{addr}").parse().unwrap();
    CalendarServiceClient::with_origin(service, origin)
}
