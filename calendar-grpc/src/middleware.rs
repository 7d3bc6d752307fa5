//! The tower middleware of the server, outermost first:
//!
//! 1. [`RequestMetricsLayer`] (whole server): for calendar methods, a span per request
//!    (`request{grpc.method, user}`, the user filled in by the interceptor), one log line when
//!    the response is ready, and the request counter and latency histogram labelled by the
//!    gRPC code. Health and reflection pass through unmeasured.
//! 2. [`DeadlineLayer`] (whole server): answers DEADLINE_EXCEEDED when the request's
//!    `grpc-timeout` (or the server's own limit) passes first, dropping the handler.
//! 3. [`GuardedCalendar`] (the calendar service only): the `x-user-id` interceptor, then load
//!    shedding: at most N requests run at once across all connections; the next one is refused
//!    at once with RESOURCE_EXHAUSTED instead of waiting in an unbounded queue.
//!
//! Why our own deadline layer: tonic's server also enforces `grpc-timeout`, but answers
//! CANCELLED ("Timeout expired") from outside every layer, where no metric sees it. Ours
//! runs inside tonic's and arms its timer first, so it answers first, with the code the gRPC
//! specification gives an expired deadline. Tonic's remains a backstop.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderMap;
use metrics::{counter, histogram};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::BoxFuture;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Status};
use tower::limit::{ConcurrencyLimit, GlobalConcurrencyLimitLayer};
use tower::load_shed::LoadShed;
use tower::load_shed::error::Overloaded;
use tower::{Layer, Service, ServiceBuilder};
use tracing::{Instrument as _, Level, info_span};

use crate::auth::UserIdInterceptor;
use crate::metric_names::{REQUEST_DURATION, REQUESTS_HANDLED};
use crate::proto::calendar::v1::calendar_service_server::{CalendarServiceServer, SERVICE_NAME};
use crate::service::CalendarApi;

/// The methods of `calendar.v1.CalendarService`: the values of the `grpc_method` label. A path
/// naming another method is labelled `unknown`, so clients cannot grow the label set.
pub const CALENDAR_METHODS: [&str; 7] = [
    "CreateEvent",
    "GetEvent",
    "UpdateEvent",
    "DeleteEvent",
    "ListDayEvents",
    "ListWeekEvents",
    "ListMonthEvents",
];

/// The calendar method a request path names (`/calendar.v1.CalendarService/GetEvent`), or
/// `None` for another service.
fn calendar_method(path: &str) -> Option<&'static str> {
    let method = path
        .strip_prefix('/')?
        .strip_prefix(SERVICE_NAME)?
        .strip_prefix('/')?;
    Some(
        CALENDAR_METHODS
            .into_iter()
            .find(|known| *known == method)
            .unwrap_or("unknown"),
    )
}

/// The status code of a unary response: its `grpc-status` header, or OK when absent (a
/// successful unary response carries its status in the trailers).
fn grpc_code(headers: &HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .map_or(Code::Ok, |value| Code::from_bytes(value.as_bytes()))
}

/// A code's name as gRPC writes it (`INVALID_ARGUMENT`), the value of the `grpc_code` label.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Adds [`RequestMetrics`]: span, log line, counter and histogram per calendar request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMetricsLayer;

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics { inner }
    }
}

/// See [`RequestMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    /// The service measured.
    inner: S,
}

/// One calendar request being measured. Recorded when dropped: with the response's code once
/// it is known, as CANCELLED if the request is dropped before (the client went away, or
/// tonic's own deadline fired).
struct Measurement {
    /// The calendar method called.
    method: &'static str,
    /// When the request arrived.
    started: Instant,
    /// The response's code, once known.
    code: Option<Code>,
}

impl Measurement {
    /// Notes the response's code, recorded when the measurement is dropped.
    fn finish(&mut self, code: Code) {
        self.code = Some(code);
    }
}

impl Drop for Measurement {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        let name = code_name(code);
        let elapsed = self.started.elapsed();
        let labels = [
            ("grpc_service", SERVICE_NAME),
            ("grpc_method", self.method),
            ("grpc_code", name),
        ];
        counter!(REQUESTS_HANDLED, &labels).increment(1);
        histogram!(REQUEST_DURATION, &labels).record(elapsed.as_secs_f64());
        let latency_ms = elapsed.as_secs_f64() * 1_000.0;
        if matches!(
            code,
            Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable
        ) {
            tracing::event!(Level::WARN, grpc.code = name, latency_ms, "request failed");
        } else {
            tracing::event!(
                Level::INFO,
                grpc.code = name,
                latency_ms,
                "request finished"
            );
        }
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RequestMetrics<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let Some(method) = calendar_method(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        let span = info_span!(
            "request",
            grpc.method = method,
            user = tracing::field::Empty
        );
        let mut measurement = Measurement {
            method,
            started: Instant::now(),
            code: None,
        };
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let response = future.await?;
                measurement.finish(grpc_code(response.headers()));
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// Parses a `grpc-timeout` header value: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`
/// milliseconds, `u` microseconds, `n` nanoseconds). `None` if malformed.
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 99,999,999: every product below fits in a u64.
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(amount * 3_600),
        b"M" => Duration::from_secs(amount * 60),
        b"S" => Duration::from_secs(amount),
        b"m" => Duration::from_millis(amount),
        b"u" => Duration::from_micros(amount),
        b"n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Adds [`Deadline`]: DEADLINE_EXCEEDED at the earlier of the request's `grpc-timeout` and
/// `max` (the server's limit for requests that set none, or a shorter one).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer {
    /// The server's limit, if any.
    max: Option<Duration>,
}

impl DeadlineLayer {
    /// Deadlines from `grpc-timeout`, capped at `max` when given.
    pub fn new(max: Option<Duration>) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            max: self.max,
        }
    }
}

/// See [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    /// The service given the deadline.
    inner: S,
    /// The server's limit, if any.
    max: Option<Duration>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Deadline<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>, Error = Infallible>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let requested = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| parse_grpc_timeout(value.as_bytes()));
        // Fixed now, before the handler runs and before tonic arms its own timer.
        let deadline = requested
            .into_iter()
            .chain(self.max)
            .min()
            .and_then(|timeout| Instant::now().checked_add(timeout));
        let future = self.inner.call(request);
        Box::pin(async move {
            let Some(deadline) = deadline else {
                return future.await;
            };
            match tokio::time::timeout_at(deadline, future).await {
                Ok(result) => result,
                Err(_) => Ok(Status::deadline_exceeded(
                    "the deadline passed before the response was ready",
                )
                .into_http()),
            }
        })
    }
}

/// The calendar server behind the load shedder.
type Limited = LoadShed<ConcurrencyLimit<CalendarServiceServer<CalendarApi>>>;

/// The calendar service as served: callers checked by [`UserIdInterceptor`], then at most
/// `limit` requests at once across all connections, the next refused with RESOURCE_EXHAUSTED
/// (tower's `LoadShed` over a `GlobalConcurrencyLimit`).
#[derive(Clone)]
pub struct GuardedCalendar {
    /// Caller check, then load shedding, then the service.
    inner: InterceptedService<Limited, UserIdInterceptor>,
    /// Requests at once, for the RESOURCE_EXHAUSTED message.
    limit: usize,
}

impl std::fmt::Debug for GuardedCalendar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedCalendar")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl GuardedCalendar {
    /// Guards `server`, running at most `limit` of its requests at once.
    pub fn new(server: CalendarServiceServer<CalendarApi>, limit: usize) -> Self {
        let limited = ServiceBuilder::new()
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(limit))
            .service(server);
        Self {
            inner: InterceptedService::new(limited, UserIdInterceptor),
            limit,
        }
    }
}

impl NamedService for GuardedCalendar {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<Body>> for GuardedCalendar {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // `LoadShed` is always ready: it notes whether the limit has room, and `call` refuses
        // the request if not. It fails only if the service below fails, which it cannot.
        Service::<http::Request<Body>>::poll_ready(&mut self.inner, cx).map(|_| Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let limit = self.limit;
        let future = self.inner.call(request);
        Box::pin(async move {
            Ok(match future.await {
                Ok(response) => response.map(Body::new),
                Err(error) if error.is::<Overloaded>() => Status::resource_exhausted(format!(
                    "the server is at its limit of {limit} requests at once: retry with backoff"
                ))
                .into_http(),
                Err(error) => Status::from_error(error).into_http(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn calendar_paths_name_known_methods_only() {
        assert_eq!(
            calendar_method("/calendar.v1.CalendarService/GetEvent"),
            Some("GetEvent")
        );
        assert_eq!(
            calendar_method("/calendar.v1.CalendarService/Steal"),
            Some("unknown")
        );
        assert_eq!(calendar_method("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            calendar_method("/calendar.v1.CalendarServiceX/GetEvent"),
            None
        );
    }

    #[test]
    fn the_method_list_matches_the_proto() {
        let descriptors =
            prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
        let service = descriptors
            .file
            .iter()
            .filter(|file| file.package() == "calendar.v1")
            .flat_map(|file| &file.service)
            .find(|service| service.name() == "CalendarService")
            .unwrap();
        let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        assert_eq!(methods, CALENDAR_METHODS);
    }

    #[test]
    fn unary_codes_come_from_the_header_or_are_ok() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_code(&headers), Code::Ok);
        headers.insert("grpc-status", "8".parse().unwrap());
        assert_eq!(grpc_code(&headers), Code::ResourceExhausted);
        assert_eq!(code_name(grpc_code(&headers)), "RESOURCE_EXHAUSTED");
    }

    #[test]
    fn grpc_timeouts_parse_per_the_protocol() {
        let cases: [(&[u8], Option<Duration>); 10] = [
            (b"1H", Some(Duration::from_secs(3_600))),
            (b"2M", Some(Duration::from_secs(120))),
            (b"3S", Some(Duration::from_secs(3))),
            (b"250m", Some(Duration::from_millis(250))),
            (b"7u", Some(Duration::from_micros(7))),
            (b"99999999n", Some(Duration::from_nanos(99_999_999))),
            (b"123456789m", None),
            (b"5", None),
            (b"m", None),
            (b"5x", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_grpc_timeout(value), expected, "{value:?}");
        }
        assert_eq!(parse_grpc_timeout(b""), None);
        assert_eq!(parse_grpc_timeout(b"-5S"), None);
    }
}
