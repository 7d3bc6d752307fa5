//! The connections the PostgreSQL adapters run their statements on.
//!
//! sqlx's pool checks a connection with a round trip to the server (a `Sync` and its
//! `ReadyForQuery`) when it hands the connection out, and again when it takes it back: a
//! statement costs three round trips, and the server three wake-ups. [`Connections`] keeps idle
//! connections of its own instead, so a statement costs one. A connection is checked only where
//! it may be bad:
//!
//! - handed out after more than [`CHECK_AFTER_IDLE`] idle: the server may have restarted or
//!   dropped it meanwhile (a connection used within that time that the server lost fails its
//!   statement as unavailable, once, and is discarded);
//! - given back after statements that failed or were abandoned half-way (a deadline dropped
//!   them): the check also sends what sqlx left queued, such as the `ROLLBACK` of an abandoned
//!   transaction, so that no idle connection holds a transaction (and its locks) open. The
//!   connection goes back only if the check succeeds.
//!
//! Opening a connection retries with backoff while the server refuses connections or is still
//! starting, within the acquire timeout, as sqlx's pool does; a connection whose caller gave up
//! while it was opening still joins the idle ones. The sqlx pool the connections
//! are built from ([`Connections::from`]) supplies the connection options, the limits and the
//! closing: once it is closed, no connection is handed out.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection as _, PgPool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::error::is_transient;
use crate::sync::lock;

/// A connection idle for longer than this is checked before it is handed out.
pub(super) const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The longest pause between two attempts to open a connection.
const MAX_OPEN_BACKOFF: Duration = Duration::from_secs(1);

/// The connections the PostgreSQL adapters share: at most the pool's `max_connections` open at
/// once, each statement (or transaction) on one connection taken for its duration (see the
/// [module documentation](self)).
///
/// Build one from the pool [`connect`](super::connect) returns and give clones of it to every
/// adapter of a process: clones share the connections, while two built from the same pool
/// each open their own.
#[derive(Clone)]
pub struct Connections {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("idle", &lock(&self.shared.idle).len())
            .field("available", &self.shared.permits.available_permits())
            .finish_non_exhaustive()
    }
}

struct Shared {
    /// Where the options and limits come from, and whose closing closes these too.
    pool: PgPool,
    /// The options connections are opened with: the pool's, plus ours.
    options: PgConnectOptions,
    /// Connections waiting for a statement, the most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// One per connection that may be open.
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
}

impl Shared {
    /// No connection open yet; as many may open as `pool` allows, with `options`.
    fn new(pool: PgPool, options: PgConnectOptions) -> Self {
        let max = max_open(&pool);
        Self {
            acquire_timeout: pool.options().get_acquire_timeout(),
            options,
            pool,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max)),
        }
    }
}

struct Idle {
    connection: PgConnection,
    since: Instant,
}

impl From<PgPool> for Connections {
    /// Connections with `pool`'s connect options, `max_connections` and acquire timeout. They
    /// are opened on demand, not taken from `pool`.
    fn from(pool: PgPool) -> Self {
        let options = (*pool.connect_options()).clone();
        Self {
            shared: Arc::new(Shared::new(pool, options)),
        }
    }
}

impl Connections {
    /// These connections, with every statement planned for the values it runs with, every
    /// time (`plan_cache_mode = force_custom_plan`), instead of reusing a plan made for earlier
    /// values: for a process whose statements each work on a batch (the worker), where a plan
    /// costs little beside the batch, and a reused plan chosen while a table was small (a
    /// sequential scan of a near-empty `deliveries`) would otherwise stay in use as the table
    /// grows, until an ANALYZE replaces it, reading the whole table for every batch.
    ///
    /// Call it before cloning: only connections opened afterwards plan this way.
    #[must_use]
    pub fn planning_every_statement(self) -> Self {
        let options = self
            .shared
            .options
            .clone()
            .options([("plan_cache_mode", "force_custom_plan")]);
        Self {
            shared: Arc::new(Shared::new(self.shared.pool.clone(), options)),
        }
    }

    /// Most connections open at once: the pool's `max_connections` (at least 1).
    pub(super) fn max_open(&self) -> usize {
        max_open(&self.shared.pool)
    }

    /// The sqlx pool these connections were built from: for what runs rarely (migrations) or
    /// needs sqlx's pool (`COPY` in tools).
    pub fn pg_pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// A connection for a statement: an idle one, or a new one while fewer than the maximum
    /// are open. Waits at most the acquire timeout for one.
    ///
    /// # Errors
    ///
    /// [`sqlx::Error::PoolClosed`] once the pool is closed, [`sqlx::Error::PoolTimedOut`] when no
    /// connection came in time, and the error of opening one when the server refuses it for a
    /// reason that waiting does not fix (or once the time is up).
    pub(super) async fn acquire(&self) -> Result<Lease, sqlx::Error> {
        let shared = &self.shared;
        if shared.pool.is_closed() {
            return Err(sqlx::Error::PoolClosed);
        }
        let deadline = Instant::now() + shared.acquire_timeout;
        let permit =
            match tokio::time::timeout_at(deadline, shared.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(sqlx::Error::PoolClosed),
                Err(_) => return Err(sqlx::Error::PoolTimedOut),
            };
        loop {
            let idle = lock(&shared.idle).pop();
            let Some(Idle {
                mut connection,
                since,
            }) = idle
            else {
                break;
            };
            if since.elapsed() <= CHECK_AFTER_IDLE
                || matches!(
                    tokio::time::timeout_at(deadline, connection.ping()).await,
                    Ok(Ok(()))
                )
            {
                return Ok(Lease::new(connection, self.shared.clone(), permit));
            }
            // Gone bad while idle: dropped (closing it would only wait on a dead socket).
        }
        // Opened in a task of its own, so that a caller giving up (its deadline, a health
        // check's timeout) does not waste the connection half-open: it goes to the idle ones.
        let (opened, receiver) = tokio::sync::oneshot::channel();
        let opener = self.shared.clone();
        tokio::spawn(async move {
            let result = open(&opener, deadline)
                .await
                .map(|connection| (connection, permit));
            if let Err(Ok((connection, permit))) = opened.send(result) {
                give_back(&opener, connection);
                drop(permit);
            }
        });
        // The task ends only by sending, unless the runtime is shutting down.
        let (connection, permit) = receiver.await.map_err(|_| sqlx::Error::PoolClosed)??;
        Ok(Lease::new(connection, self.shared.clone(), permit))
    }
}

/// Most connections open at once on `pool`'s settings (at least 1).
fn max_open(pool: &PgPool) -> usize {
    usize::try_from(pool.options().get_max_connections())
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Opens a connection, retrying with backoff while the server is away, until `deadline`.
async fn open(shared: &Shared, deadline: Instant) -> Result<PgConnection, sqlx::Error> {
    let options = &shared.options;
    let mut backoff = Duration::from_millis(10);
    loop {
        match tokio::time::timeout_at(deadline, PgConnection::connect_with(options)).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(error)) if is_transient(&error) && Instant::now() + backoff < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_OPEN_BACKOFF);
            }
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        }
    }
}

/// A connection taken from [`Connections`] for some statements. Call [`finish`](Self::finish)
/// with their result when they are done: dropped otherwise (the statements were abandoned), or
/// finished with an error, it is checked before it goes back.
pub(super) struct Lease {
    /// Always `Some` until dropped.
    connection: Option<PgConnection>,
    shared: Arc<Shared>,
    permit: Option<OwnedSemaphorePermit>,
    /// Whether the statements completed and left nothing behind.
    clean: bool,
}

impl Lease {
    fn new(connection: PgConnection, shared: Arc<Shared>, permit: OwnedSemaphorePermit) -> Self {
        Self {
            connection: Some(connection),
            shared,
            permit: Some(permit),
            clean: false,
        }
    }

    /// Gives the connection back, straight to the idle ones if `result` is `Ok` (every
    /// statement done, any transaction committed), after a check otherwise.
    pub(super) fn finish<T, E>(mut self, result: &Result<T, E>) {
        self.clean = result.is_ok();
    }
}

impl Deref for Lease {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match &self.connection {
            Some(connection) => connection,
            None => unreachable!("a lease holds its connection until it is dropped"),
        }
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match &mut self.connection {
            Some(connection) => connection,
            None => unreachable!("a lease holds its connection until it is dropped"),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        let permit = self.permit.take();
        if self.clean {
            give_back(&self.shared, connection);
            drop(permit);
            return;
        }
        // The check flushes what sqlx queued (an abandoned transaction's ROLLBACK) and drains
        // what an abandoned statement left unread. Without a runtime, the connection is dropped.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        runtime.spawn(async move {
            let checked = tokio::time::timeout(shared.acquire_timeout, connection.ping()).await;
            if matches!(checked, Ok(Ok(()))) {
                give_back(&shared, connection);
            }
            drop(permit);
        });
    }
}

/// Puts `connection` among the idle ones, unless the pool has been closed meanwhile.
fn give_back(shared: &Shared, connection: PgConnection) {
    if shared.pool.is_closed() {
        return;
    }
    lock(&shared.idle).push(Idle {
        connection,
        since: Instant::now(),
    });
}
