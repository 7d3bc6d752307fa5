//! The PostgreSQL server and the RabbitMQ broker the end-to-end tests and the benchmark run on:
//! their default URLs, databases of one's own, whether the broker answers, and connections to
//! it for the tests' own clients.

use std::time::Duration;

use amqprs::callbacks::DefaultConnectionCallback;
use amqprs::connection::Connection;
use calendar_adapters::amqp::AmqpConfig;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tokio::net::TcpStream;

/// The PostgreSQL server databases are created on, unless `DATABASE_URL` names one.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The broker, unless `AMQP_URL` names one.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// `AMQP_URL`, or [`DEFAULT_AMQP_URL`].
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// A random lowercase hexadecimal suffix for names.
pub fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A URL with its password replaced, for messages.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Why a database could not be created or dropped.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The server's URL does not parse.
    #[error("{url} is not a URL: {source}")]
    Url {
        /// The URL, redacted.
        url: String,
        /// Why.
        source: url::ParseError,
    },
    /// The name would need quoting: only lowercase ASCII letters, digits and `_` are taken.
    #[error("{0:?} is not a plain database name (a-z, 0-9, _)")]
    Name(String),
    /// The server cannot be reached.
    #[error(
        "PostgreSQL is not reachable through {url}: {source}. Start it, or point DATABASE_URL at \
         a server whose user may create databases"
    )]
    Unreachable {
        /// The URL, redacted.
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The statement failed.
    #[error("{statement}: {source}")]
    Statement {
        /// What was run.
        statement: String,
        /// Why it failed.
        source: sqlx::Error,
    },
}

/// The URL of database `name` on the server of `admin_url`.
pub fn database_url(admin_url: &str, name: &str) -> Result<String, DatabaseError> {
    let mut url = url::Url::parse(admin_url).map_err(|source| DatabaseError::Url {
        url: redacted(admin_url),
        source,
    })?;
    url.set_path(name);
    Ok(url.to_string())
}

/// Runs `statement` on the server of `admin_url`, outside any transaction.
async fn administer(admin_url: &str, statement: String) -> Result<(), DatabaseError> {
    let mut admin =
        PgConnection::connect(admin_url)
            .await
            .map_err(|source| DatabaseError::Unreachable {
                url: redacted(admin_url),
                source,
            })?;
    let done = sqlx::raw_sql(AssertSqlSafe(statement.clone()))
        .execute(&mut admin)
        .await
        .map(drop)
        .map_err(|source| DatabaseError::Statement { statement, source });
    let _ = admin.close().await;
    done
}

fn plain(name: &str) -> Result<&str, DatabaseError> {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        Ok(name)
    } else {
        Err(DatabaseError::Name(name.to_owned()))
    }
}

/// Creates the database `name` (plain: a-z, 0-9, _) on the server of `admin_url` and returns
/// its URL.
pub async fn create_database(admin_url: &str, name: &str) -> Result<String, DatabaseError> {
    let name = plain(name)?;
    administer(admin_url, format!("CREATE DATABASE {name}")).await?;
    database_url(admin_url, name)
}

/// Drops the database `name` if it exists, FORCE ending any connection to it (a killed
/// process's).
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), DatabaseError> {
    let name = plain(name)?;
    administer(
        admin_url,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await
}

/// Whether something accepts connections at the broker's address within 5 s: an error naming
/// the address otherwise (a worker would only retry and never get ready).
pub async fn require_broker(amqp_url: &str) -> Result<(), String> {
    let url = url::Url::parse(amqp_url).map_err(|error| format!("AMQP_URL: {error}"))?;
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port().unwrap_or(5672);
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect((host.as_str(), port)),
    )
    .await;
    if matches!(connected, Ok(Ok(_))) {
        Ok(())
    } else {
        Err(format!(
            "RabbitMQ is not reachable at {host}:{port} (AMQP_URL). Start it (rabbitmq-server \
             -detached) or point AMQP_URL at a broker"
        ))
    }
}

/// A connection to the broker of `amqp_url`, opened within 5 s: an error saying why not (the
/// broker is down, still starting, or refuses the credentials).
pub async fn connect_broker(amqp_url: &str) -> Result<Connection, String> {
    let config = AmqpConfig {
        connection_name: "calendar-tests".to_owned(),
        ..AmqpConfig::new(amqp_url)
    };
    let arguments = config
        .connection_arguments()
        .map_err(|error| format!("AMQP_URL: {error}"))?;
    let connection = tokio::time::timeout(Duration::from_secs(5), Connection::open(&arguments))
        .await
        .map_err(|_| {
            format!(
                "RabbitMQ at {} did not answer within 5 s",
                redacted(amqp_url)
            )
        })?
        .map_err(|error| format!("RabbitMQ at {}: {error}", redacted(amqp_url)))?;
    connection
        .register_callback(DefaultConnectionCallback)
        .await
        .map_err(|error| format!("RabbitMQ at {}: {error}", redacted(amqp_url)))?;
    Ok(connection)
}
