//! `calendar-grpc`: the calendar's gRPC server. See `calendar-grpc --help`.

use calendar_adapters::service;
use calendar_grpc::config::Config;
use clap::Parser as _;

/// mimalloc rather than glibc's malloc: under load, allocation took a tenth of the server's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    service::init_tracing(config.log_format, &config.log_filter)?;
    let metrics = service::install_prometheus(service::LATENCY_BUCKETS)?;
    let shutdown = service::shutdown_signal()?;
    calendar_grpc::app::run(&config, metrics, shutdown).await?;
    Ok(())
}
