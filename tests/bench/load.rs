//! The load driver: N HTTP/2 connections to the server, M requests in flight on each (closed
//! loop: a task sends its next request when the previous one is answered), a warm-up that is
//! not recorded, then T seconds recorded in HDR histograms per operation.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use calendar_grpc::middleware::code_name;
use calendar_grpc::proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// The gRPC client every task drives.
pub(crate) type Client = CalendarServiceClient<Channel>;

/// Largest latency recorded, in microseconds (a minute); slower answers are clamped to it.
const MAX_LATENCY_MICROS: u64 = 60_000_000;

/// How hard and how long to drive the server.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct LoadShape {
    /// HTTP/2 connections.
    pub(crate) connections: usize,
    /// Requests in flight on each connection.
    pub(crate) in_flight: usize,
    /// Not recorded: connections warm, caches filled, pools opened.
    #[serde(with = "seconds")]
    pub(crate) warmup: Duration,
    /// Recorded.
    #[serde(with = "seconds")]
    pub(crate) duration: Duration,
    /// At most this many requests a second in all, evenly paced over the tasks; `None`: each
    /// task sends as soon as its previous request is answered.
    pub(crate) rate: Option<f64>,
}

impl LoadShape {
    /// Requests in flight in all.
    pub(crate) fn concurrency(&self) -> usize {
        self.connections * self.in_flight
    }
}

/// Durations as seconds in JSON.
mod seconds {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_secs_f64())
    }
}

/// What one request did: which operation it was, and how it ended.
pub(crate) type Outcome = (&'static str, Result<(), tonic::Status>);

/// A stream of requests: each task of the load has its own (its own random numbers, its own
/// memory of events to update).
pub(crate) trait Workload: Send + 'static {
    /// Sends the next request on `client` and waits for its answer.
    fn next(&mut self, client: &mut Client) -> impl Future<Output = Outcome> + Send;
}

/// Latency and errors of the requests of one operation (or of all).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figures {
    /// Answered OK in the recorded window.
    pub(crate) ok: u64,
    /// OK answers per second.
    pub(crate) per_second: f64,
    /// Latency percentiles of the OK answers, in milliseconds.
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) mean_ms: f64,
    /// Failed requests by gRPC code (`UNAVAILABLE`, ...).
    pub(crate) errors: BTreeMap<&'static str, u64>,
}

impl Figures {
    fn of(recorded: &Recorded, window: Duration) -> Self {
        let ms = |quantile: f64| recorded.latency.value_at_quantile(quantile) as f64 / 1_000.0;
        Self {
            ok: recorded.latency.len(),
            per_second: recorded.latency.len() as f64 / window.as_secs_f64(),
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: recorded.latency.max() as f64 / 1_000.0,
            mean_ms: recorded.latency.mean() / 1_000.0,
            errors: recorded.errors.clone(),
        }
    }

    /// All failed requests.
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// What a load run measured: everything together, and each operation.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadReport {
    pub(crate) shape: LoadShape,
    pub(crate) total: Figures,
    pub(crate) operations: BTreeMap<&'static str, Figures>,
}

/// Recorded answers: OK latencies in microseconds, failures by code.
struct Recorded {
    latency: Histogram<u64>,
    errors: BTreeMap<&'static str, u64>,
}

impl Recorded {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
                .context("an HDR histogram")?,
            errors: BTreeMap::new(),
        })
    }

    fn record(&mut self, result: &Result<(), tonic::Status>, elapsed: Duration) {
        match result {
            Ok(()) => {
                let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                self.latency
                    .saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
            }
            Err(status) => *self.errors.entry(code_name(status.code())).or_default() += 1,
        }
    }

    fn add(&mut self, other: &Self) -> anyhow::Result<()> {
        self.latency
            .add(&other.latency)
            .context("merging histograms")?;
        for (code, count) in &other.errors {
            *self.errors.entry(code).or_default() += count;
        }
        Ok(())
    }
}

/// What one task recorded.
struct TaskRecord {
    total: Recorded,
    operations: BTreeMap<&'static str, Recorded>,
}

impl TaskRecord {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            total: Recorded::new()?,
            operations: BTreeMap::new(),
        })
    }

    fn record(&mut self, (operation, result): &Outcome, elapsed: Duration) -> anyhow::Result<()> {
        self.total.record(result, elapsed);
        let recorded = match self.operations.entry(operation) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(Recorded::new()?),
        };
        recorded.record(result, elapsed);
        Ok(())
    }
}

/// Opens `count` HTTP/2 connections to `server` (`http://host:port`).
pub(crate) async fn connect(server: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(server.to_owned())
        .with_context(|| format!("{server} is not a server URL (http://host:port)"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot connect to the calendar server at {server}"))?,
        );
    }
    Ok(channels)
}

/// Drives `channels` (one per connection, `shape.in_flight` tasks on each) with the workloads
/// `workload(task)` makes, from `started` for the warm-up and the recorded window.
pub(crate) async fn run<W: Workload>(
    channels: &[Channel],
    shape: LoadShape,
    started: Instant,
    mut workload: impl FnMut(usize) -> W,
) -> anyhow::Result<LoadReport> {
    let recording_from = started + shape.warmup;
    let until = recording_from + shape.duration;
    let mut tasks = tokio::task::JoinSet::new();
    // Paced: each task sends every `pace`, the tasks' turns staggered over one pace.
    let concurrency = shape.concurrency().max(1);
    let pace = shape
        .rate
        .filter(|rate| *rate > 0.0)
        .map(|rate| Duration::from_secs_f64(concurrency as f64 / rate));
    for (index, channel) in channels.iter().enumerate() {
        for slot in 0..shape.in_flight {
            let task = index * shape.in_flight + slot;
            let mut workload = workload(task);
            let mut client =
                Client::new(channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
            let mut turn =
                pace.map(|pace| started + pace.mul_f64(task as f64 / concurrency as f64));
            tasks.spawn(async move {
                let mut record = TaskRecord::new()?;
                loop {
                    if let (Some(pace), Some(next)) = (pace, turn.as_mut()) {
                        tokio::time::sleep_until(*next).await;
                        // A turn missed (a slow answer) is skipped, not made up in a burst.
                        *next = (*next + pace).max(Instant::now());
                    }
                    let sent = Instant::now();
                    if sent >= until {
                        break;
                    }
                    let outcome = workload.next(&mut client).await;
                    let answered = Instant::now();
                    if sent >= recording_from && answered <= until {
                        record.record(&outcome, answered - sent)?;
                    }
                }
                anyhow::Ok(record)
            });
        }
    }
    let mut total = Recorded::new()?;
    let mut operations: BTreeMap<&'static str, Recorded> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let record = joined.context("a load task failed")??;
        total.add(&record.total)?;
        for (operation, recorded) in record.operations {
            match operations.entry(operation) {
                std::collections::btree_map::Entry::Occupied(mut entry) => {
                    entry.get_mut().add(&recorded)?;
                }
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(recorded);
                }
            }
        }
    }
    Ok(LoadReport {
        shape,
        total: Figures::of(&total, shape.duration),
        operations: operations
            .iter()
            .map(|(operation, recorded)| (*operation, Figures::of(recorded, shape.duration)))
            .collect(),
    })
}
