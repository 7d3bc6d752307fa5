//! The gRPC server, `calendar-grpc`, as a process of its own on a PostgreSQL database, and
//! clients of it (or of any server, by URL).

use std::net::SocketAddr;

use calendar_grpc::proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use tonic::codegen::http::uri::InvalidUri;
use tonic::transport::Channel;

use super::process::{Process, ProcessError, binary};

/// A running `calendar-grpc` and where it listens.
#[derive(Debug)]
pub struct GrpcServer {
    /// The process (killed on drop).
    pub process: Process,
    /// Where its gRPC server listens.
    pub address: SocketAddr,
}

impl GrpcServer {
    /// Starts `calendar-grpc` (built next to the running executable) on the PostgreSQL database
    /// `database_url`, with its gRPC server and its metrics endpoint on port 0 of 127.0.0.1 and
    /// JSON logs at `info`, named `name` in messages. Returns once it listens: it has applied
    /// the migrations by then. Without `AMQP_URL` in its environment it leaves reminders to the
    /// workers.
    pub async fn start(name: &str, database_url: &str) -> Result<Self, ProcessError> {
        Self::start_with(
            name,
            &[
                ("DATABASE_URL", database_url),
                ("CALENDAR_LOG_FORMAT", "json"),
                ("RUST_LOG", "info"),
            ],
        )
        .await
    }

    /// Starts `calendar-grpc` with exactly the environment `env` (the storage, the log format
    /// and filter are the caller's: JSON logs are needed to find where it listens), its gRPC
    /// server and metrics endpoint on port 0 of 127.0.0.1. Returns once it listens.
    pub async fn start_with(name: &str, env: &[(&str, &str)]) -> Result<Self, ProcessError> {
        let process = Process::start(
            name,
            &binary("calendar-grpc")?,
            &[
                "--listen-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ],
            env,
        )?;
        let address = process.listening_address("gRPC server listening").await?;
        Ok(Self { process, address })
    }

    /// Its gRPC endpoint as a URL, for [`connect`].
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not one a channel can use.
    #[error("{url} is not a gRPC endpoint URL (http://host:port): {source}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        source: InvalidUri,
    },
    /// Nothing answered there.
    #[error("cannot connect to the gRPC server at {url}: {source:?}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
}

/// A calendar client connected to the server at `url` (`http://127.0.0.1:50051`).
pub async fn connect(url: &str) -> Result<CalendarServiceClient<Channel>, ConnectError> {
    let channel = Channel::from_shared(url.to_owned())
        .map_err(|source| ConnectError::Url {
            url: url.to_owned(),
            source,
        })?
        .connect()
        .await
        .map_err(|source| ConnectError::Connect {
            url: url.to_owned(),
            source,
        })?;
    Ok(CalendarServiceClient::new(channel))
}
