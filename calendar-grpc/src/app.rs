//! Assembly of the server process from its [`Config`]: the event store, the in-process
//! reminder pipeline when it runs here, the metrics endpoint and the gRPC server, all stopped
//! by one shutdown token.
//!
//! | configuration | events | reminders |
//! |---|---|---|
//! | nothing (embedded default) | in memory | scheduler and sender in-process, over an in-memory queue, delivered to the log |
//! | `DATABASE_URL` | PostgreSQL, migrations applied at start | `calendar-worker` (or `--reminders in-process`) |

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use calendar_adapters::log::LogNotifier;
use calendar_adapters::memory::{MemoryDeliveryLog, MemoryEventRepository, MemoryQueue};
use calendar_adapters::postgres::{self, PoolSettings, PostgresError, PostgresEventRepository};
use calendar_adapters::service::{PrometheusHandle, serve_metrics};
use calendar_core::{
    EventRepository, NotificationSender, Notifier, ReminderScheduler, SchedulerConfig,
    SenderConfig, SystemClock,
};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::server::{self, ServeError};

/// Why the server process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// An address could not be listened on.
    #[error("cannot listen on {address} for {what}: {source}")]
    Bind {
        /// What the address was for.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// PostgreSQL could not be set up: a bad URL or settings, or migrations that fail.
    #[error(transparent)]
    Storage(#[from] PostgresError),
    /// The gRPC server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

async fn bind(what: &'static str, address: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| AppError::Bind {
            what,
            address,
            source,
        })
}

/// The event store the configuration names: PostgreSQL when a database URL is set, memory
/// otherwise. `None` if `shutdown` came while waiting for the database.
async fn open_storage(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<dyn EventRepository>>, AppError> {
    let Some(url) = &config.database_url else {
        info!("storage: in memory (events are lost when the process exits)");
        return Ok(Some(Arc::new(MemoryEventRepository::new())));
    };
    let settings = PoolSettings {
        max_connections: config.database_max_connections,
        acquire_timeout: config.database_acquire_timeout,
    };
    let pool = postgres::connect(url, &settings).await?;
    if !postgres::migrate_when_reachable(&pool, shutdown).await? {
        return Ok(None);
    }
    info!("storage: PostgreSQL, migrations applied");
    Ok(Some(Arc::new(PostgresEventRepository::new(pool))))
}

/// Runs the reminder scheduler and the notification sender in this process, over an
/// in-memory queue and delivery log, delivering to `notifier`, until `shutdown`.
///
/// The queue lives and dies with the process: a reminder published but not yet delivered when
/// the process stops is not delivered. Fine for the embedded mode; with PostgreSQL, the
/// worker's durable queue keeps the at-least-once promise.
pub async fn run_reminders(
    events: Arc<dyn EventRepository>,
    notifier: Arc<dyn Notifier>,
    scheduler: SchedulerConfig,
    sender: SenderConfig,
    shutdown: CancellationToken,
) {
    let clock = Arc::new(SystemClock);
    let queue = Arc::new(MemoryQueue::new());
    let scheduler = ReminderScheduler::new(events.clone(), queue.clone(), clock.clone(), scheduler);
    let sender = NotificationSender::new(
        queue,
        Arc::new(MemoryDeliveryLog::new()),
        events,
        notifier,
        clock,
        sender,
    );
    tokio::join!(scheduler.run(shutdown.clone()), sender.run(shutdown));
}

/// Runs the server process until `shutdown` is cancelled (or the server fails), then stops
/// everything it started, waiting at most the drain timeout for the background tasks.
pub async fn run(
    config: &Config,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let Some(repository) = open_storage(config, &shutdown).await? else {
        info!("stopped before the storage was ready");
        return Ok(());
    };
    let listener = bind("gRPC", config.listen_addr).await?;
    let metrics_listener = bind("metrics", config.metrics_addr).await?;

    let mut background = JoinSet::new();
    background.spawn(serve_metrics(
        metrics_listener,
        metrics,
        None,
        shutdown.clone(),
    ));
    if config.reminders_in_process() {
        info!("reminders: scheduled and delivered in this process, to the log");
        background.spawn(run_reminders(
            repository.clone(),
            Arc::new(LogNotifier),
            config.scheduler_config(),
            config.sender_config(),
            shutdown.clone(),
        ));
    } else {
        info!("reminders: left to calendar-worker");
    }

    let served = server::run(
        listener,
        repository,
        config.server_settings(),
        shutdown.clone(),
    )
    .await;
    // The server may have stopped on its own (an error): stop the rest too.
    shutdown.cancel();
    let stopped = tokio::time::timeout(config.drain_timeout, async {
        while background.join_next().await.is_some() {}
    })
    .await;
    if stopped.is_err() {
        warn!(drain_timeout = ?config.drain_timeout, "background tasks did not stop in time");
    }
    served.map_err(AppError::from)
}
