//! The PostgreSQL mode: migrations at start and health following the database.

use std::sync::Arc;

use calendar_adapters::postgres::{self, PgPool, PostgresEventRepository};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{TestServer, as_user, create, event, settings, tomorrow_at, wait_for_health};

#[sqlx::test(migrations = false)]
async fn migrations_are_applied_at_start(pool: PgPool) {
    let migrated = postgres::migrate_when_reachable(&pool, &CancellationToken::new())
        .await
        .unwrap();
    assert!(migrated, "the database is reachable");
    let repository = Arc::new(PostgresEventRepository::new(pool));
    let server = TestServer::start(repository, settings()).await;
    let mut client = server.client().await;
    client
        .create_event(as_user(
            "ann",
            create(event("Migrated", tomorrow_at(9), 30)),
        ))
        .await
        .expect("the schema exists");
    server.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn health_turns_not_serving_when_postgres_is_unreachable(pool: PgPool) {
    let repository = Arc::new(PostgresEventRepository::new(pool.clone()));
    let server = TestServer::start(repository, settings()).await;
    for service in ["", "calendar.v1.CalendarService"] {
        wait_for_health(server.channel().await, service, ServingStatus::Serving).await;
    }
    pool.close().await;
    for service in ["", "calendar.v1.CalendarService"] {
        wait_for_health(server.channel().await, service, ServingStatus::NotServing).await;
    }
    server.stop().await;
}
