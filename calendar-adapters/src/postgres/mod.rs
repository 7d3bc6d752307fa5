//! The PostgreSQL event store and delivery log (feature `postgres`): [`PostgresEventRepository`]
//! and [`PostgresDeliveryLog`] on [`Connections`] built from a sqlx [`PgPool`], with [`connect`]
//! to build the pool and [`migrate`] to bring the schema up to date.
//!
//! # What it stores
//!
//! Three tables (see `migrations/` at the workspace root). `deliveries` holds the idempotency
//! keys of delivered notifications ([`PostgresDeliveryLog`]); `maintenance_claims` says which
//! scheduler may clean up. `events` holds an event per row, its span as
//! `timestamptz` start and end plus a generated half-open `tstzrange`, and its reminder state on
//! the same row (`remind_at`, `reminder_state` pending / sent / skipped, and
//! `reminder_leased_until`), so an event and its reminder always change in one write. CHECK
//! constraints mirror calendar-core's limits; every row read back goes through calendar-core's
//! validating constructors, and a row that fails them is a [`RepositoryError::Internal`].
//!
//! The overlap rule is the database's: an exclusion constraint (`btree_gist`) forbids two
//! overlapping `reject` events of one user, so of two concurrent writers exactly one wins.
//!
//! # How reminders are claimed
//!
//! [`claim_due`](calendar_core::EventRepository::claim_due) picks the earliest pending reminders
//! that are due and not leased with `FOR UPDATE SKIP LOCKED` (concurrent schedulers step over
//! each other's rows instead of waiting) and sets their lease in the same statement. Only what
//! the caller confirms is marked sent or skipped; a claimer that dies leaves its reminders to be
//! claimed again once the lease has run out. Updating an event re-arms its reminder when the
//! reminder instant changes; deleting the event deletes the reminder with it. Every instant
//! (`now`, leases, cutoffs) comes from the caller, never from the database's clock, so this
//! store and the in-memory one behave identically.
//!
//! # Connections and plans
//!
//! Statements run on [`Connections`]: idle connections kept without sqlx's checks on every
//! hand-out and return, so a statement costs one round trip (see its documentation). Build one
//! `Connections` per process and give clones to every adapter.
//!
//! Inserts and lists go through queues of their own (`batches.rs`): one that finds one of a
//! few workers free (a quarter of the connections for each) runs at once, alone; while all
//! are busy, those waiting run together, in one statement (and, for inserts, one commit),
//! each still answered on its own: an event stored or refused as it would have been alone
//! (`inserts.rs`), a list given its own page (`lists.rs`). Under load this costs the server
//! a fraction of a statement per request.
//!
//! Statements are prepared once per connection and reuse their plans, as sqlx does by default:
//! right for the statements of requests (insert, get, list, update, delete), which run often
//! and cheaply. A process whose statements work on batches (claiming and settling reminders,
//! deduplicating and recording deliveries: the worker) builds its connections with
//! [`Connections::planning_every_statement`] instead, so that no plan chosen while a table was
//! small outlives the table's growth.
//!
//! # Errors
//!
//! | PostgreSQL | [`RepositoryError`] |
//! |---|---|
//! | 23P01 `exclusion_violation` (the overlap rule) | [`SlotBusy`](calendar_core::RepositoryError::SlotBusy), naming the event in the way (found by a follow-up query) |
//! | 23505 `unique_violation` (the id) | [`AlreadyExists`](calendar_core::RepositoryError::AlreadyExists) |
//! | connection, TLS, pool timeout or closed pool, class 08 (connection), 53 (resources), 57 (operator intervention, statement timeout), 40001 / 40P01 (serialization failure, deadlock) | [`Unavailable`](calendar_core::RepositoryError::Unavailable): retrying later may succeed |
//! | anything else, and rows that fail validation | [`Internal`](calendar_core::RepositoryError::Internal) |
//!
//! Inserts do not actually raise 23P01 or 23505: they use `ON CONFLICT DO NOTHING` (which, unlike
//! a failing insert, never deadlocks against a concurrent insert into the same slot) and then
//! ask which row was in the way. Updates do raise 23P01; the event in the way is then looked up
//! after the rollback, so if it is deleted in between, `conflicting` is `None`. Two updates
//! moving two events of one user onto each other at the same instant can deadlock in the overlap
//! check: PostgreSQL aborts one (40P01, [`Unavailable`](calendar_core::RepositoryError::Unavailable))
//! and the other gets the slot. No sqlx type crosses into calendar-core: driver errors are boxed
//! into the [`RepositoryError`] variants above.
//!
//! # Building
//!
//! Queries are checked at compile time against the offline data in `.sqlx/` at the workspace
//! root. Build with `SQLX_OFFLINE=true` (or without `DATABASE_URL` set); after changing a query
//! or a migration, run `cargo sqlx prepare --workspace -- --all-targets --all-features` against a
//! migrated database and commit `.sqlx/`.
//!
//! # Example
//!
//! ```no_run
//! use calendar_adapters::postgres::{self, PoolSettings, PostgresEventRepository};
//!
//! # async fn run() -> Result<(), postgres::PostgresError> {
//! let pool = postgres::connect("postgres://calendar@db/calendar", &PoolSettings::default()).await?;
//! postgres::migrate(&pool).await?;
//! let connections = postgres::Connections::from(pool);
//! let events = PostgresEventRepository::new(connections.clone());
//! let deliveries = postgres::PostgresDeliveryLog::new(connections);
//! # Ok(())
//! # }
//! ```
//!
//! [`RepositoryError`]: calendar_core::RepositoryError
//! [`RepositoryError::Internal`]: calendar_core::RepositoryError::Internal

mod batches;
mod connections;
mod delivery_log;
mod error;
mod inserts;
mod lists;
mod repository;

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

pub use connections::Connections;
pub use delivery_log::PostgresDeliveryLog;
pub use error::PostgresError;
pub use repository::PostgresEventRepository;
/// The connection pool every PostgreSQL adapter runs on.
pub use sqlx::PgPool;

/// The migrations in `migrations/` at the workspace root, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// How many connections the pool may open and how long a query waits for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once (at least 1). Default 10. Keep the sum over all replicas
    /// under the server's `max_connections`.
    pub max_connections: u32,
    /// How long an operation waits for a connection, including (re)connecting to a server that
    /// is down or restarting, before it fails as unavailable. Default 5 seconds.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    /// 10 connections, 5 seconds.
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Builds a connection pool for the PostgreSQL database at `url`
/// (`postgres://user:password@host:port/database?sslmode=...`).
///
/// It only parses the URL: no connection is opened here, so a server that is down at start-up
/// does not stop the process. Connections are opened when an operation needs one; opening
/// retries with backoff while the server refuses connections or is still starting, for up to
/// [`PoolSettings::acquire_timeout`], after which that operation fails (a repository maps it to
/// [`RepositoryError::Unavailable`](calendar_core::RepositoryError::Unavailable)). The adapters
/// run on [`Connections`] built from this pool, which check a connection idle for more than a
/// second before handing it out, so they recover by themselves after the server restarts. TLS
/// (rustls, with the webpki root certificates) follows the URL's `sslmode`.
///
/// # Errors
///
/// [`PostgresError::InvalidUrl`] if `url` is not a `postgres://` or `postgresql://` URL sqlx
/// can parse;
/// [`PostgresError::InvalidSettings`] if `settings` allow no connection.
pub async fn connect(url: &str, settings: &PoolSettings) -> Result<PgPool, PostgresError> {
    if settings.max_connections == 0 {
        return Err(PostgresError::InvalidSettings(
            "max_connections must be at least 1",
        ));
    }
    // sqlx would read any URL as PostgreSQL's; a `mysql://` URL is a mistake worth naming.
    if !["postgres://", "postgresql://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        return Err(PostgresError::InvalidUrl(sqlx::Error::Configuration(
            "the URL must start with postgres:// or postgresql://".into(),
        )));
    }
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy(url)
        .map_err(PostgresError::InvalidUrl)
}

/// Longest pause between two attempts of [`migrate_when_reachable`].
const MAX_MIGRATION_BACKOFF: Duration = Duration::from_secs(30);

/// Applies the migrations as [`migrate`] does, waiting for a database that cannot be reached
/// yet (a process that starts before its database): while the server is unavailable it retries
/// with a pause growing from 1 s to 30 s, until `shutdown` is cancelled.
///
/// Returns `true` once the migrations are applied, `false` if `shutdown` came first.
///
/// # Errors
///
/// [`PostgresError::Migration`] if a migration fails for another reason than the server being
/// away.
pub async fn migrate_when_reachable(
    pool: &PgPool,
    shutdown: &CancellationToken,
) -> Result<bool, PostgresError> {
    let mut backoff = Duration::from_secs(1);
    loop {
        match migrate(pool).await {
            Ok(()) => return Ok(true),
            Err(PostgresError::Unavailable(error)) => {
                tracing::warn!(%error, retry_in = ?backoff, "PostgreSQL unreachable: cannot apply the migrations yet");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(false),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_MIGRATION_BACKOFF);
            }
            Err(error) => return Err(error),
        }
    }
}

/// Applies the embedded migrations that the database has not applied yet, in order.
///
/// Safe when several processes start at once: sqlx's migrator holds a PostgreSQL advisory lock
/// (`pg_advisory_lock`, keyed by the database name) while it reads and applies migrations, so
/// the others wait, then find nothing left to apply. Each migration runs in its own transaction.
/// The migrations run on a connection taken out of the pool and closed afterwards, so if one
/// fails or this future is dropped half-way, the session (and with it the advisory lock) ends
/// instead of going back to the pool still holding the lock.
///
/// # Errors
///
/// [`PostgresError::Unavailable`] if the server cannot be reached (worth retrying);
/// [`PostgresError::Migration`] if a migration fails or the database's history does not match
/// the embedded migrations (an applied migration was changed or is missing).
pub async fn migrate(pool: &PgPool) -> Result<(), PostgresError> {
    let mut connection = pool
        .acquire()
        .await
        .map_err(PostgresError::Unavailable)?
        .detach();
    let applied = MIGRATOR.run(&mut connection).await;
    if let Err(error) = sqlx::Connection::close(connection).await {
        // Closing politely only says goodbye to the server; the session ends either way.
        tracing::debug!(%error, "closing the migration connection failed");
    }
    applied.map_err(PostgresError::from_migration)
}
