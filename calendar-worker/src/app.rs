//! Wiring the worker's roles: PostgreSQL (migrated at start), the RabbitMQ connection, the use
//! case of the role, the metrics and health endpoint, and the shutdown.
//!
//! Readiness (`GET /health/ready`) is true while RabbitMQ's connection is up and the last
//! PostgreSQL check succeeded. On SIGINT or SIGTERM the role finishes what it has in hand (the
//! scheduler its tick, the sender the notifications it is delivering), bounded by the drain
//! timeout, then the broker connection closes: unacknowledged messages return to the queue.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use calendar_adapters::amqp::{AmqpBroker, AmqpConfig, AmqpError};
use calendar_adapters::log::LogNotifier;
use calendar_adapters::postgres::{
    self, Connections, PostgresDeliveryLog, PostgresError, PostgresEventRepository,
};
use calendar_adapters::service::{PrometheusHandle, serve_metrics};
use calendar_core::{EventRepository, NotificationSender, ReminderScheduler, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Common, Config, Role};

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The metrics address could not be listened on.
    #[error("cannot listen on {address} for metrics and health: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// PostgreSQL could not be set up: a bad URL or settings, or migrations that fail.
    #[error(transparent)]
    Storage(#[from] PostgresError),
    /// The broker configuration is invalid.
    #[error(transparent)]
    Broker(#[from] AmqpError),
}

/// Runs the configured role until `shutdown` is cancelled.
pub async fn run(
    config: &Config,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let common = config.common();
    let pool = postgres::connect(&common.database_url, &common.pool_settings()).await?;
    if !postgres::migrate_when_reachable(&pool, &shutdown).await? {
        info!("stopped before PostgreSQL was reachable");
        return Ok(());
    }
    // One set of connections for the role's adapters and the readiness check. Every statement
    // of a role works on a batch: planned for its values each time, no cached plan outlives a
    // table's growth.
    let connections = Connections::from(pool).planning_every_statement();
    let clock = Arc::new(SystemClock);
    match &config.role {
        Role::Scheduler(args) => {
            let endpoint = bind(args.metrics_addr).await?;
            let broker = start_broker(args.amqp_config(), false)?;
            let events = Arc::new(PostgresEventRepository::new(connections.clone()));
            let scheduler =
                ReminderScheduler::new(events, broker.clone(), clock, args.scheduler_config());
            info!(role = "scheduler", "calendar-worker started");
            serve(
                common,
                endpoint,
                metrics,
                &broker,
                connections,
                &shutdown,
                {
                    let shutdown = shutdown.clone();
                    async move { scheduler.run(shutdown).await }
                },
            )
            .await;
        }
        Role::Sender(args) => {
            let endpoint = bind(args.metrics_addr).await?;
            let broker = start_broker(args.amqp_config(), true)?;
            let sender = NotificationSender::new(
                broker.clone(),
                Arc::new(PostgresDeliveryLog::new(connections.clone())),
                Arc::new(PostgresEventRepository::new(connections.clone())),
                Arc::new(LogNotifier),
                clock,
                args.sender_config(),
            );
            info!(role = "sender", "calendar-worker started");
            serve(
                common,
                endpoint,
                metrics,
                &broker,
                connections,
                &shutdown,
                {
                    let shutdown = shutdown.clone();
                    async move { sender.run(shutdown).await }
                },
            )
            .await;
        }
    }
    info!("calendar-worker stopped");
    Ok(())
}

async fn bind(address: SocketAddr) -> Result<TcpListener, WorkerError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| WorkerError::Bind { address, source })
}

fn start_broker(config: AmqpConfig, consume: bool) -> Result<Arc<AmqpBroker>, WorkerError> {
    info!(url = %config.redacted_url(), queue = %config.queue, "connecting to RabbitMQ");
    Ok(Arc::new(AmqpBroker::start(config, consume)?))
}

/// Runs `role` with the metrics and health endpoint beside it; once `shutdown` is cancelled,
/// gives the role the drain timeout to finish, then closes the broker connection.
async fn serve(
    common: &Common,
    endpoint: TcpListener,
    metrics: PrometheusHandle,
    broker: &Arc<AmqpBroker>,
    connections: Connections,
    shutdown: &CancellationToken,
    role: impl Future<Output = ()>,
) {
    let (readiness, ready) = watch::channel(false);
    let endpoint = tokio::spawn(serve_metrics(
        endpoint,
        metrics,
        Some(ready),
        shutdown.clone(),
    ));
    let watcher = tokio::spawn(watch_readiness(
        broker.clone(),
        PostgresEventRepository::new(connections),
        common.health_interval,
        readiness,
        shutdown.clone(),
    ));
    tokio::pin!(role);
    let finished = tokio::select! {
        () = &mut role => true,
        () = shutdown.cancelled() => false,
    };
    if !finished {
        info!(drain_timeout = ?common.drain_timeout, "shutting down: finishing the work in hand");
        if tokio::time::timeout(common.drain_timeout, &mut role)
            .await
            .is_err()
        {
            warn!("the work in hand did not finish within the drain timeout");
        }
    }
    shutdown.cancel();
    broker.close().await;
    for task in [endpoint, watcher] {
        if let Err(error) = task.await {
            warn!(%error, "a background task ended abnormally");
        }
    }
}

/// Keeps `readiness` true while the broker is connected and PostgreSQL answered its last check.
async fn watch_readiness(
    broker: Arc<AmqpBroker>,
    events: PostgresEventRepository,
    interval: std::time::Duration,
    readiness: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let mut broker_ready = broker.readiness();
    let mut database_ready = false;
    let mut checks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = checks.tick() => {
                let ok = tokio::time::timeout(interval, events.check()).await.is_ok_and(|r| r.is_ok());
                if ok != database_ready {
                    if ok { info!("PostgreSQL reachable") } else { warn!("PostgreSQL check failed") }
                }
                database_ready = ok;
            }
            changed = broker_ready.changed() => if changed.is_err() { break },
        }
        let ready = database_ready && *broker_ready.borrow();
        readiness.send_if_modified(|current| std::mem::replace(current, ready) != ready);
    }
    readiness.send_replace(false);
}
