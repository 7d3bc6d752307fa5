//! What the calendar's service binaries share (feature `service`): logs on stderr, the
//! Prometheus and health endpoint, the shutdown signal, and durations in configuration.
//!
//! - [`init_tracing`]: `tracing` events to stderr, as JSON lines or as human-readable lines,
//!   filtered by an `EnvFilter` directive (`info`, `calendar_grpc=debug,h2=warn`).
//! - [`install_prometheus`] and [`serve_metrics`]: the process-wide `metrics` recorder, whose
//!   histograms are rendered as real Prometheus histograms (fixed buckets, not summaries), and
//!   an HTTP endpoint on a listener the caller bound (port 0 in tests) answering
//!   `GET /metrics`, `GET /health/live` and, when the process reports readiness,
//!   `GET /health/ready`.
//! - [`shutdown_signal`]: a [`CancellationToken`] cancelled on the first SIGINT or SIGTERM.
//! - [`duration`]: durations as people write them (`90s`, `1h30m`, `365d`).
//!
//! A binary's `main` calls the first three in that order, then hands the token to its
//! long-running parts.

use std::convert::Infallible;
use std::fmt;
use std::io::{self, IsTerminal as _};
use std::str::FromStr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::{SubscriberInitExt as _, TryInitError};
use tracing_subscriber::{EnvFilter, fmt as log_fmt};

pub mod duration;

pub use metrics_exporter_prometheus::PrometheusHandle;

/// Upper bounds, in seconds, of the buckets of latency histograms: 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The path the metrics endpoint answers on.
pub const METRICS_PATH: &str = "/metrics";
/// The liveness path: 200 while the process serves HTTP at all.
pub const LIVE_PATH: &str = "/health/live";
/// The readiness path: 200 while the process is ready for work, 503 otherwise.
pub const READY_PATH: &str = "/health/ready";

/// How often the recorder drains its histogram samples when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line, with the fields of the current span: for log collectors.
    Json,
    /// Human-readable lines, coloured when stderr is a terminal: for people.
    #[default]
    Pretty,
}

impl LogFormat {
    /// The format's name: `json` or `pretty`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Pretty => "pretty",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    /// Parses `json` or `pretty`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(TelemetryError::UnknownLogFormat(other.to_owned())),
        }
    }
}

/// Why the logs, the metrics recorder or the signal handlers could not be set up.
#[derive(Debug)]
pub enum TelemetryError {
    /// The log format is neither `json` nor `pretty`.
    UnknownLogFormat(String),
    /// The log filter is not an `EnvFilter` directive.
    LogFilter(tracing_subscriber::filter::ParseError),
    /// A global `tracing` subscriber is already installed.
    Tracing(TryInitError),
    /// The Prometheus recorder could not be built or installed (a recorder is already
    /// installed, or the buckets are empty).
    Metrics(BuildError),
    /// The signal handlers could not be registered.
    Signal(io::Error),
}

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownLogFormat(name) => {
                write!(f, "unknown log format {name:?}: expected json or pretty")
            }
            Self::LogFilter(error) => write!(f, "invalid log filter: {error}"),
            Self::Tracing(error) => write!(f, "cannot install the log subscriber: {error}"),
            Self::Metrics(error) => write!(f, "cannot install the metrics recorder: {error}"),
            Self::Signal(error) => write!(f, "cannot listen for shutdown signals: {error}"),
        }
    }
}

impl std::error::Error for TelemetryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::UnknownLogFormat(_) => None,
            Self::LogFilter(error) => Some(error),
            Self::Tracing(error) => Some(error),
            Self::Metrics(error) => Some(error),
            Self::Signal(error) => Some(error),
        }
    }
}

/// Installs the global `tracing` subscriber: events at or above `filter` (an `EnvFilter`
/// directive such as `info` or `calendar_grpc=debug,info`) to stderr in `format`. JSON lines
/// carry the current span's fields under `span`.
pub fn init_tracing(format: LogFormat, filter: &str) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(filter).map_err(TelemetryError::LogFilter)?;
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(
                log_fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                log_fmt::layer()
                    .with_ansi(io::stderr().is_terminal())
                    .with_writer(io::stderr),
            )
            .try_init(),
    }
    .map_err(TelemetryError::Tracing)
}

/// Installs the process-wide Prometheus recorder for the `metrics` macros, rendering every
/// histogram with `buckets` (upper bounds, ascending; [`LATENCY_BUCKETS`] for latencies in
/// seconds), and returns the handle [`serve_metrics`] renders.
pub fn install_prometheus(buckets: &[f64]) -> Result<PrometheusHandle, TelemetryError> {
    PrometheusBuilder::new()
        .set_buckets(buckets)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(TelemetryError::Metrics)
}

/// Serves over HTTP/1.1 on `listener` until `shutdown` is cancelled: `GET /metrics` (the
/// Prometheus text format rendered from `handle`), `GET /health/live` (always 200) and, with
/// `ready` given, `GET /health/ready` (200 while it holds `true`, 503 otherwise); any other
/// path is 404. Also drains the recorder's histogram samples periodically, so memory stays
/// bounded between scrapes.
pub async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    ready: Option<watch::Receiver<bool>>,
    shutdown: CancellationToken,
) {
    if let Ok(address) = listener.local_addr() {
        info!(%address, path = METRICS_PATH, "metrics endpoint listening");
    }
    let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = upkeep.tick() => {
                handle.run_upkeep();
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    warn!(%error, "metrics endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&handle, ready.as_ref(), &request);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%error, "metrics connection ended with an error");
            }
        });
    }
    info!("metrics endpoint stopped");
}

fn respond(
    handle: &PrometheusHandle,
    ready: Option<&watch::Receiver<bool>>,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let metrics = path == METRICS_PATH;
    let (status, body) = if request.method() != Method::GET && request.method() != Method::HEAD {
        (StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned())
    } else if metrics {
        (StatusCode::OK, handle.render())
    } else if path == LIVE_PATH {
        (StatusCode::OK, "live\n".to_owned())
    } else if let (READY_PATH, Some(ready)) = (path, ready) {
        if *ready.borrow() {
            (StatusCode::OK, "ready\n".to_owned())
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned())
        }
    } else {
        (
            StatusCode::NOT_FOUND,
            format!("metrics are at {METRICS_PATH}, liveness at {LIVE_PATH}\n"),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let content_type = if metrics && status == StatusCode::OK {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A token cancelled, once, on the first SIGINT (Ctrl-C) or SIGTERM the process receives.
///
/// Registers the handlers before returning, so a signal arriving right after is not missed.
/// Must be called from within a Tokio runtime.
pub fn shutdown_signal() -> Result<CancellationToken, TelemetryError> {
    let token = CancellationToken::new();
    let cancel = token.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).map_err(TelemetryError::Signal)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(TelemetryError::Signal)?;
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            info!(signal = name, "shutdown requested");
            cancel.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            info!(signal = "Ctrl-C", "shutdown requested");
            cancel.cancel();
        }
    });
    Ok(token)
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn log_formats_parse_and_print() {
        for format in [LogFormat::Json, LogFormat::Pretty] {
            assert_eq!(format.to_string().parse::<LogFormat>().unwrap(), format);
        }
        let error = "yaml".parse::<LogFormat>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown log format \"yaml\": expected json or pretty"
        );
    }

    #[test]
    fn bad_filters_and_empty_buckets_are_refused() {
        assert!(matches!(
            init_tracing(LogFormat::Json, "calendar=loud"),
            Err(TelemetryError::LogFilter(_))
        ));
        assert!(matches!(
            install_prometheus(&[]),
            Err(TelemetryError::Metrics(_))
        ));
    }

    fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_the_rendered_metrics_until_shut_down() {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let (readiness, ready) = watch::channel(false);
        let server = tokio::spawn(serve_metrics(
            listener,
            handle,
            Some(ready),
            shutdown.clone(),
        ));

        let get_all =
            move || [METRICS_PATH, "/other", LIVE_PATH, READY_PATH].map(|path| get(address, path));
        let [found, missing, live, not_ready] = tokio::task::spawn_blocking(get_all).await.unwrap();
        assert!(found.starts_with("HTTP/1.1 200 OK"), "{found}");
        assert!(found.contains("text/plain; version=0.0.4"), "{found}");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        assert!(live.starts_with("HTTP/1.1 200 OK"), "{live}");
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        readiness.send_replace(true);
        let ready = tokio::task::spawn_blocking(move || get(address, READY_PATH))
            .await
            .unwrap();
        assert!(ready.starts_with("HTTP/1.1 200 OK"), "{ready}");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
