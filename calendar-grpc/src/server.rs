//! The gRPC server: [`run`] serves the calendar, health and reflection on an already bound
//! listener until a shutdown token is cancelled, then drains for a bounded time.
//!
//! - `calendar.v1.CalendarService` behind the `x-user-id` check and load shedding, with
//!   message size limits ([`crate::middleware`]).
//! - `grpc.health.v1.Health`: the overall status (`""`) and `calendar.v1.CalendarService`
//!   are SERVING while [`EventRepository::check`] succeeds, polled every
//!   [`ServerSettings::health_interval`], and NOT_SERVING while it fails and from the moment
//!   shutdown starts.
//! - Server reflection, v1 and v1alpha, describing the calendar and health services with their
//!   documentation.
//!
//! Shutdown: on cancellation, health turns NOT_SERVING, the listener closes, and open
//! connections are asked to finish (HTTP/2 GOAWAY) while requests in flight complete. Tonic
//! waits for every connection to close, which a client holding one open can delay forever, so
//! [`run`] returns after [`ServerSettings::drain_timeout`] at the latest; connections still
//! open then are left to the runtime (closed when the process exits).

use std::sync::Arc;
use std::time::Duration;

use calendar_core::{Calendar, EventRepository, SystemClock};
use metrics::gauge;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::metric_names::STORAGE_UP;
use crate::middleware::{DeadlineLayer, GuardedCalendar, RequestMetricsLayer};
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::proto::calendar::v1::calendar_service_server::{CalendarServiceServer, SERVICE_NAME};
use crate::service::CalendarApi;

/// The server's limits and timings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Most calendar requests handled at once, across all connections; more are refused with
    /// RESOURCE_EXHAUSTED. At least 1.
    pub concurrency_limit: usize,
    /// Largest request message accepted, in bytes (larger: OUT_OF_RANGE).
    pub max_request_bytes: usize,
    /// Largest response message sent, in bytes.
    pub max_response_bytes: usize,
    /// Longest a request may run: the deadline of requests without `grpc-timeout`, and the
    /// cap of those with one. `None`: only the client's deadline applies.
    pub request_timeout: Option<Duration>,
    /// Longest the server waits, after shutdown starts, for connections to finish.
    pub drain_timeout: Duration,
    /// Time between storage health checks; also the longest one check may take.
    pub health_interval: Duration,
}

impl Default for ServerSettings {
    /// 256 requests at once; 256 KiB requests, 64 MiB responses (a page of 1,000 events with
    /// the longest descriptions is about 41 MB); 30 s per request; 10 s of drain; a health
    /// check every 5 s.
    fn default() -> Self {
        Self {
            concurrency_limit: 256,
            max_request_bytes: 256 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            request_timeout: Some(Duration::from_secs(30)),
            drain_timeout: Duration::from_secs(10),
            health_interval: Duration::from_secs(5),
        }
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener has no local address (it is not bound).
    #[error("the listener is not bound: {0}")]
    Listener(#[source] std::io::Error),
    /// The reflection service could not read the descriptor set.
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves on `listener` over `repository` until `shutdown` is cancelled, then drains for at
/// most [`ServerSettings::drain_timeout`] and returns.
pub async fn run(
    listener: TcpListener,
    repository: Arc<dyn EventRepository>,
    settings: ServerSettings,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let address = listener.local_addr().map_err(ServeError::Listener)?;

    let (reporter, health) = tonic_health::server::health_reporter();
    set_status(&reporter, ServingStatus::NotServing).await;
    let watcher = tokio::spawn(watch_storage(
        repository.clone(),
        reporter,
        settings.health_interval,
        shutdown.clone(),
    ));

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let calendar = Calendar::new(repository, Arc::new(SystemClock));
    let calendar = CalendarServiceServer::new(CalendarApi::new(calendar))
        .max_decoding_message_size(settings.max_request_bytes)
        .max_encoding_message_size(settings.max_response_bytes);

    let router = Server::builder()
        .layer(RequestMetricsLayer)
        .layer(DeadlineLayer::new(settings.request_timeout))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(GuardedCalendar::new(
            calendar,
            settings.concurrency_limit.max(1),
        ));

    let stopping = shutdown.clone();
    let signal = async move {
        stopping.cancelled().await;
        // The watcher reports NOT_SERVING as it stops.
        if let Err(error) = watcher.await {
            warn!(%error, "the storage health watcher failed");
        }
        info!("shutting down: draining connections");
    };
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    info!(%address, "gRPC server listening");
    let serve = router.serve_with_incoming_shutdown(incoming, signal);
    let drain_bound = async {
        shutdown.cancelled().await;
        tokio::time::sleep(settings.drain_timeout).await;
    };
    tokio::select! {
        served = serve => served?,
        () = drain_bound => warn!(
            drain_timeout = ?settings.drain_timeout,
            "drain timed out; connections still open are dropped"
        ),
    }
    info!("gRPC server stopped");
    Ok(())
}

/// Sets the overall status and the calendar service's.
async fn set_status(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// Checks the storage every `interval` and reports the outcome as the health status, until
/// `shutdown`; then reports NOT_SERVING for good. Logs each change.
async fn watch_storage(
    repository: Arc<dyn EventRepository>,
    reporter: HealthReporter,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut last: Option<bool> = None;
    loop {
        let checked = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            checked = tokio::time::timeout(interval, repository.check()) => checked,
        };
        let up = match checked {
            Ok(Ok(())) => {
                if last != Some(true) {
                    info!("storage reachable: SERVING");
                }
                true
            }
            Ok(Err(error)) => {
                if last != Some(false) {
                    warn!(%error, "storage check failed: NOT_SERVING");
                }
                false
            }
            Err(_) => {
                if last != Some(false) {
                    warn!(timeout = ?interval, "storage check timed out: NOT_SERVING");
                }
                false
            }
        };
        if last != Some(up) {
            let status = if up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_status(&reporter, status).await;
            last = Some(up);
        }
        gauge!(STORAGE_UP).set(if up { 1.0 } else { 0.0 });
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    set_status(&reporter, ServingStatus::NotServing).await;
}
