//! [`DeliveryLog`] on PostgreSQL: the `deliveries` table.

use std::collections::HashSet;

use async_trait::async_trait;
use calendar_core::limits::to_micros;
use calendar_core::{DeliveryLog, DeliveryLogError, IdempotencyKey};
use chrono::{DateTime, Utc};

use super::connections::{Connections, Lease};
use super::error::is_transient;

/// The keys of delivered notifications in PostgreSQL, shared by every sender and kept across
/// restarts.
///
/// Cheap to clone: clones share the connections.
#[derive(Debug, Clone)]
pub struct PostgresDeliveryLog {
    connections: Connections,
}

impl PostgresDeliveryLog {
    /// A delivery log on `connections`, whose database has the migrations applied
    /// ([`migrate`](super::migrate)). Given a sqlx pool, it opens connections of its own
    /// ([`Connections::from`]): give a process's adapters clones of one [`Connections`].
    pub fn new(connections: impl Into<Connections>) -> Self {
        Self {
            connections: connections.into(),
        }
    }

    /// A connection for the next statement.
    async fn connection(&self) -> Result<Lease, DeliveryLogError> {
        self.connections.acquire().await.map_err(log_error)
    }
}

fn log_error(error: sqlx::Error) -> DeliveryLogError {
    if is_transient(&error) {
        DeliveryLogError::Unavailable(Box::new(error))
    } else {
        DeliveryLogError::Internal(Box::new(error))
    }
}

#[async_trait]
impl DeliveryLog for PostgresDeliveryLog {
    async fn was_delivered(&self, key: &IdempotencyKey) -> Result<bool, DeliveryLogError> {
        let mut connection = self.connection().await?;
        let delivered = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM deliveries WHERE idempotency_key = $1) AS "delivered!""#,
            key.as_str(),
        )
        .fetch_one(&mut *connection)
        .await;
        connection.finish(&delivered);
        delivered.map_err(log_error)
    }

    async fn record_delivered(
        &self,
        key: &IdempotencyKey,
        at: DateTime<Utc>,
    ) -> Result<(), DeliveryLogError> {
        let mut connection = self.connection().await?;
        let recorded = sqlx::query!(
            "INSERT INTO deliveries (idempotency_key, delivered_at) VALUES ($1, $2) \
             ON CONFLICT (idempotency_key) DO NOTHING",
            key.as_str(),
            to_micros(at),
        )
        .execute(&mut *connection)
        .await;
        connection.finish(&recorded);
        recorded.map(drop).map_err(log_error)
    }

    async fn delivered_among(
        &self,
        keys: &[IdempotencyKey],
    ) -> Result<HashSet<IdempotencyKey>, DeliveryLogError> {
        let texts: Vec<&str> = keys.iter().map(IdempotencyKey::as_str).collect();
        let mut connection = self.connection().await?;
        let found = sqlx::query_scalar!(
            "SELECT idempotency_key FROM deliveries WHERE idempotency_key = ANY($1)",
            &texts as &[&str],
        )
        .fetch_all(&mut *connection)
        .await;
        connection.finish(&found);
        let found: HashSet<String> = found.map_err(log_error)?.into_iter().collect();
        Ok(keys
            .iter()
            .filter(|key| found.contains(key.as_str()))
            .cloned()
            .collect())
    }

    async fn record_all_delivered(
        &self,
        deliveries: &[(IdempotencyKey, DateTime<Utc>)],
    ) -> Result<(), DeliveryLogError> {
        let (keys, instants): (Vec<&str>, Vec<DateTime<Utc>>) = deliveries
            .iter()
            .map(|(key, at)| (key.as_str(), to_micros(*at)))
            .unzip();
        let mut connection = self.connection().await?;
        // One statement and one commit for the batch. DO NOTHING keeps a key's first instant,
        // also for a key given twice here.
        let recorded = sqlx::query!(
            "INSERT INTO deliveries (idempotency_key, delivered_at) \
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[]) \
             ON CONFLICT (idempotency_key) DO NOTHING",
            &keys as &[&str],
            &instants,
        )
        .execute(&mut *connection)
        .await;
        connection.finish(&recorded);
        recorded.map(drop).map_err(log_error)
    }

    async fn forget_before(&self, cutoff: DateTime<Utc>) -> Result<u64, DeliveryLogError> {
        let mut connection = self.connection().await?;
        let forgotten = sqlx::query!(
            "DELETE FROM deliveries WHERE delivered_at < $1",
            to_micros(cutoff),
        )
        .execute(&mut *connection)
        .await;
        connection.finish(&forgotten);
        forgotten
            .map(|done| done.rows_affected())
            .map_err(log_error)
    }
}
