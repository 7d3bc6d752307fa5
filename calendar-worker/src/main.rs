//! `calendar-worker`: the calendar's reminder scheduler and notification sender.
//! See `calendar-worker --help`.

use calendar_adapters::service;
use calendar_worker::config::Config;
use clap::Parser as _;

/// mimalloc rather than glibc's malloc: under load, allocation took a tenth of the worker's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    service::init_tracing(config.common().log_format, &config.common().log_filter)?;
    let metrics = service::install_prometheus(service::LATENCY_BUCKETS)?;
    let shutdown = service::shutdown_signal()?;
    calendar_worker::app::run(&config, metrics, shutdown).await?;
    Ok(())
}
