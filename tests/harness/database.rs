//! A database of one's own on the PostgreSQL server, for one test: a random name, a pool on
//! it, and dropped afterwards, also when the test panics.

use sqlx::PgPool;

use super::services::{self, DatabaseError};

/// A database of this test's own on the `DATABASE_URL` server ([`services::admin_url`]),
/// dropped (best effort) with it.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    /// The server's URL the database was created through.
    admin_url: String,
    /// The database's URL, for the processes.
    pub url: String,
    /// A pool on it, for the test's own queries.
    pub pool: PgPool,
    /// Whether it has been dropped already.
    dropped: bool,
}

impl TestDatabase {
    /// Creates the database `<prefix><random suffix>` (`calendar_e2e_3f2a…`) and connects a
    /// pool to it.
    pub async fn create(prefix: &str) -> Result<Self, DatabaseError> {
        let admin_url = services::admin_url();
        let name = format!("{prefix}{}", services::suffix());
        let url = services::create_database(&admin_url, &name).await?;
        match PgPool::connect(&url).await {
            Ok(pool) => Ok(Self {
                name,
                admin_url,
                url,
                pool,
                dropped: false,
            }),
            Err(source) => {
                // Created but unusable: take it away again rather than leave it behind.
                let _ = services::drop_database(&admin_url, &name).await;
                Err(DatabaseError::Unreachable {
                    url: services::redacted(&url),
                    source,
                })
            }
        }
    }

    /// Its name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes the pool and drops the database, FORCE ending any other connection to it.
    pub async fn drop_now(mut self) -> Result<(), DatabaseError> {
        self.pool.close().await;
        // Whatever the outcome, the drop below must not try again.
        self.dropped = true;
        services::drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for TestDatabase {
    /// Drops it if the test did not get to (it panicked): drop cannot await, so a thread with a
    /// runtime of its own does it.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?
                .block_on(services::drop_database(&admin_url, &name))
                .ok()
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
