use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::BoxError;
use crate::domain::IdempotencyKey;

/// Why the delivery log could not answer.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryLogError {
    /// The log's storage cannot be reached for now.
    #[error("delivery log unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The storage failed in a way retrying will not fix.
    #[error("delivery log failure: {0}")]
    Internal(#[source] BoxError),
}

/// The record of notifications already delivered, by idempotency key, so that a notification
/// published twice is delivered once. The record must outlive a restart of the sender; the
/// sender forgets keys older than its retention ([`forget_before`](Self::forget_before)).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// MUST return `Ok(true)` if [`record_delivered`](Self::record_delivered) succeeded for
    /// `key` before (within the log's retention), `Ok(false)` otherwise.
    async fn was_delivered(&self, key: &IdempotencyKey) -> Result<bool, DeliveryLogError>;

    /// Records that the notification with `key` was delivered at `at`.
    ///
    /// MUST be idempotent: recording a key twice is `Ok` and keeps the first instant.
    async fn record_delivered(
        &self,
        key: &IdempotencyKey,
        at: DateTime<Utc>,
    ) -> Result<(), DeliveryLogError>;

    /// The keys among `keys` that [`was_delivered`](Self::was_delivered) would answer `true`
    /// for: what a sender deduplicates a batch of notifications by.
    ///
    /// MUST return exactly those keys. The default asks for each key in turn; a log that can
    /// answer for many keys at once (one round trip) should.
    async fn delivered_among(
        &self,
        keys: &[IdempotencyKey],
    ) -> Result<HashSet<IdempotencyKey>, DeliveryLogError> {
        let mut delivered = HashSet::new();
        for key in keys {
            if self.was_delivered(key).await? {
                delivered.insert(key.clone());
            }
        }
        Ok(delivered)
    }

    /// Records each `(key, at)` of `deliveries` as [`record_delivered`](Self::record_delivered)
    /// does: what a sender records a batch of notifications with.
    ///
    /// MUST be idempotent per key, keeping a key's first instant, also when a key appears twice
    /// in `deliveries`. The default records each in turn; a log that can record many at once
    /// (one round trip, one commit) should.
    async fn record_all_delivered(
        &self,
        deliveries: &[(IdempotencyKey, DateTime<Utc>)],
    ) -> Result<(), DeliveryLogError> {
        for (key, at) in deliveries {
            self.record_delivered(key, *at).await?;
        }
        Ok(())
    }

    /// Forgets the keys recorded before `cutoff` (the log's retention ends there).
    ///
    /// MUST return how many keys it forgot.
    async fn forget_before(&self, cutoff: DateTime<Utc>) -> Result<u64, DeliveryLogError>;
}
