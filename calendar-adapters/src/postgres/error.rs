//! The adapter's own errors, and how driver errors become calendar-core's.

use std::sync::Arc;

use calendar_core::RepositoryError;
use sqlx::error::ErrorKind;
use sqlx::migrate::MigrateError;
use uuid::Uuid;

/// Why the PostgreSQL adapter could not be set up ([`connect`](super::connect),
/// [`migrate`](super::migrate)).
///
/// The repository's own operations fail with calendar-core's
/// [`RepositoryError`] instead.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The connection URL is not one sqlx understands as PostgreSQL.
    #[error("invalid PostgreSQL connection URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    /// The pool settings cannot work (for example zero connections).
    #[error("invalid PostgreSQL pool settings: {0}")]
    InvalidSettings(&'static str),
    /// The server could not be reached, or did not answer in time: retrying later may succeed.
    #[error("PostgreSQL is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A migration failed, or the migrations the database records do not match the embedded
    /// ones (an applied migration was edited or removed). Retrying will not help.
    #[error("migrating the database failed: {0}")]
    Migration(#[source] MigrateError),
}

impl PostgresError {
    /// Sorts a migration failure into "the server is away" and "the migrations are wrong".
    pub(super) fn from_migration(error: MigrateError) -> Self {
        match error {
            MigrateError::Execute(error) | MigrateError::ExecuteMigration(error, _)
                if is_transient(&error) =>
            {
                Self::Unavailable(error)
            }
            other => Self::Migration(other),
        }
    }
}

/// A constraint of the `events` table that a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Violation {
    /// SQLSTATE 23P01: the overlap rule (`events_no_overlap`).
    Overlap,
    /// SQLSTATE 23505: the id is taken.
    Id,
}

/// Which of the table's constraints `error` reports as broken, if any.
pub(super) fn violation(error: &sqlx::Error) -> Option<Violation> {
    match error.as_database_error()?.kind() {
        ErrorKind::ExclusionViolation => Some(Violation::Overlap),
        ErrorKind::UniqueViolation => Some(Violation::Id),
        _ => None,
    }
}

/// Whether retrying later may succeed: the server or the network is away or overloaded, the pool
/// had no connection in time, or the transaction lost a race the server resolved by aborting it.
pub(super) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            // 08: connection exception. 53: insufficient resources (too many connections, out of
            // memory or disk). 57: operator intervention (shutdown, "cannot connect now", and
            // 57014 query_canceled, which statement_timeout raises). 40001 / 40P01:
            // serialization failure and deadlock, where the server aborted us to let another win.
            ["08", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "40001"
                || code == "40P01"
                // 55000 object_not_in_prerequisite_state: what connecting gets from a database
                // that does not allow connections for now (ALTER DATABASE ... ALLOW_CONNECTIONS
                // false, during maintenance or a restore). No statement of the adapters raises it.
                || code == "55000"
        }),
        _ => false,
    }
}

/// A driver error as calendar-core's error: [`RepositoryError::Unavailable`] when retrying later
/// may succeed, [`RepositoryError::Internal`] otherwise. Callers that can name the event in the
/// way or the taken id look at [`violation`] first.
pub(super) fn repository_error(error: sqlx::Error) -> RepositoryError {
    if is_transient(&error) {
        RepositoryError::Unavailable(Box::new(error))
    } else {
        RepositoryError::Internal(Box::new(error))
    }
}

/// A driver error that several operations failed with at once (the events waiting for one
/// insert when no connection came): each gets a [`RepositoryError`] of its own, sharing it.
#[derive(Debug, Clone)]
pub(super) struct SharedError {
    error: Arc<sqlx::Error>,
}

impl SharedError {
    pub(super) fn new(error: sqlx::Error) -> Self {
        Self {
            error: Arc::new(error),
        }
    }

    /// As [`repository_error`] sorts it.
    pub(super) fn repository_error(&self) -> RepositoryError {
        if is_transient(&self.error) {
            RepositoryError::Unavailable(Box::new(self.clone()))
        } else {
            RepositoryError::Internal(Box::new(self.clone()))
        }
    }
}

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// A stored row that calendar-core's constructors refuse.
#[derive(Debug, thiserror::Error)]
#[error("stored event {id} is invalid: {field}: {reason}")]
pub(super) struct InvalidRow {
    /// The row's id.
    pub(super) id: Uuid,
    /// The column that failed.
    pub(super) field: &'static str,
    /// Why.
    pub(super) reason: String,
}

impl From<InvalidRow> for RepositoryError {
    fn from(invalid: InvalidRow) -> Self {
        RepositoryError::Internal(Box::new(invalid))
    }
}

#[cfg(test)]
mod tests {
    //! Real errors from a real server, sorted as the module documentation promises.

    use sqlx::PgPool;

    use super::*;

    const EVENT: &str = "INSERT INTO events (id, user_id, title, start_at, end_at, overlap_policy, \
        version, created_at, updated_at) VALUES ($1, 'ann', 'Meeting', \
        '2030-03-01T09:00:00Z', '2030-03-01T10:00:00Z', 'reject', 1, now(), now())";

    async fn failure(pool: &PgPool, sql: &'static str, id: Uuid) -> sqlx::Error {
        match sqlx::query(sql).bind(id).execute(pool).await {
            Err(error) => error,
            Ok(_) => panic!("{sql} succeeded"),
        }
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn constraint_violations_are_recognised(pool: PgPool) {
        let id = Uuid::now_v7();
        sqlx::query(EVENT).bind(id).execute(&pool).await.unwrap();

        let taken = failure(&pool, EVENT, id).await;
        assert_eq!(taken.as_database_error().unwrap().code().unwrap(), "23505");
        assert_eq!(violation(&taken), Some(Violation::Id));

        let overlapping = failure(&pool, EVENT, Uuid::now_v7()).await;
        assert_eq!(
            overlapping.as_database_error().unwrap().code().unwrap(),
            "23P01"
        );
        assert_eq!(violation(&overlapping), Some(Violation::Overlap));
        assert!(matches!(
            repository_error(overlapping),
            RepositoryError::Internal(_)
        ));
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn statement_timeouts_are_transient_other_failures_are_not(pool: PgPool) {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SET LOCAL statement_timeout = '20ms'")
            .execute(&mut *tx)
            .await
            .unwrap();
        let timeout = sqlx::query("SELECT pg_sleep(2)")
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert_eq!(
            timeout.as_database_error().unwrap().code().unwrap(),
            "57014"
        );
        assert!(matches!(
            repository_error(timeout),
            RepositoryError::Unavailable(_)
        ));
        drop(tx);

        let division = sqlx::query("SELECT 1 / 0")
            .execute(&pool)
            .await
            .unwrap_err();
        assert_eq!(violation(&division), None);
        assert!(matches!(
            repository_error(division),
            RepositoryError::Internal(_)
        ));
    }

    #[sqlx::test(migrations = false)]
    async fn a_database_refusing_connections_is_transient(pool: PgPool) {
        use sqlx::Connection as _;
        use sqlx::postgres::PgConnection;

        let options = (*pool.connect_options()).clone();
        let database = options.get_database().unwrap().to_owned();
        // A database cannot bar connections to itself: the change is made from another one.
        let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
            .await
            .unwrap();
        let allow = |allowed: bool| {
            format!("ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS {allowed}")
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(allow(false)))
            .execute(&mut admin)
            .await
            .unwrap();
        let refused = PgConnection::connect_with(&options).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(allow(true)))
            .execute(&mut admin)
            .await
            .unwrap();
        let refused = refused.expect_err("the database refuses connections");
        assert_eq!(
            refused.as_database_error().unwrap().code().unwrap(),
            "55000"
        );
        assert!(matches!(
            repository_error(refused),
            RepositoryError::Unavailable(_)
        ));
    }

    #[test]
    fn a_migration_that_cannot_reach_the_server_is_unavailable() {
        let refused = sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert!(matches!(
            PostgresError::from_migration(MigrateError::Execute(refused)),
            PostgresError::Unavailable(_)
        ));
        assert!(matches!(
            PostgresError::from_migration(MigrateError::VersionMismatch(2)),
            PostgresError::Migration(_)
        ));
    }
}
