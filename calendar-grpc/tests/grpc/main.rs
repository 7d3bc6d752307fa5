//! The gRPC service end to end: a real tonic client (and the `calendar` binary) against a
//! server on port 0, on the in-memory store or on stores that block or fail on demand.
//!
//! Set `TEST_LOG=1` to see the server's logs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Runs each scenario, an `async fn(Arc<dyn EventRepository>)` of the invoking module, as one
/// test on the in-memory store and one on PostgreSQL (a fresh, migrated database per test from
/// `DATABASE_URL`, as `deploy/test.sh` sets it).
macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {
        mod on_memory {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let store = calendar_adapters::memory::MemoryEventRepository::new();
                    super::$scenario(std::sync::Arc::new(store)).await;
                }
            )*
        }

        mod on_postgres {
            $(
                #[sqlx::test(migrations = "../migrations")]
                async fn $scenario(pool: sqlx::PgPool) {
                    let store = calendar_adapters::postgres::PostgresEventRepository::new(pool);
                    super::$scenario(std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

mod app;
mod cli;
mod errors;
mod lifecycle;
mod limits;
mod metrics;
mod options_table;
mod postgres;
mod readme;
mod rpc;
mod support;
