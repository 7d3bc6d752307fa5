use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use calendar_core::{DeliveryLog, DeliveryLogError, IdempotencyKey};
use chrono::{DateTime, Utc};

use crate::sync::lock;

/// The keys of delivered notifications, in memory. The sender forgets old ones
/// ([`DeliveryLog::forget_before`]) after its retention.
#[derive(Debug, Default)]
pub struct MemoryDeliveryLog {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    delivered: HashMap<IdempotencyKey, DateTime<Utc>>,
    /// The same keys by the instant they were recorded, for forgetting the oldest.
    by_time: BTreeSet<(DateTime<Utc>, IdempotencyKey)>,
}

impl MemoryDeliveryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys it remembers.
    pub fn len(&self) -> usize {
        lock(&self.state).delivered.len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl DeliveryLog for MemoryDeliveryLog {
    async fn was_delivered(&self, key: &IdempotencyKey) -> Result<bool, DeliveryLogError> {
        Ok(lock(&self.state).delivered.contains_key(key))
    }

    async fn record_delivered(
        &self,
        key: &IdempotencyKey,
        at: DateTime<Utc>,
    ) -> Result<(), DeliveryLogError> {
        let mut state = lock(&self.state);
        if !state.delivered.contains_key(key) {
            state.delivered.insert(key.clone(), at);
            state.by_time.insert((at, key.clone()));
        }
        Ok(())
    }

    async fn delivered_among(
        &self,
        keys: &[IdempotencyKey],
    ) -> Result<HashSet<IdempotencyKey>, DeliveryLogError> {
        let state = lock(&self.state);
        Ok(keys
            .iter()
            .filter(|key| state.delivered.contains_key(*key))
            .cloned()
            .collect())
    }

    async fn record_all_delivered(
        &self,
        deliveries: &[(IdempotencyKey, DateTime<Utc>)],
    ) -> Result<(), DeliveryLogError> {
        let mut state = lock(&self.state);
        for (key, at) in deliveries {
            if !state.delivered.contains_key(key) {
                state.delivered.insert(key.clone(), *at);
                state.by_time.insert((*at, key.clone()));
            }
        }
        Ok(())
    }

    async fn forget_before(&self, cutoff: DateTime<Utc>) -> Result<u64, DeliveryLogError> {
        let mut state = lock(&self.state);
        let mut forgotten = 0;
        while let Some((at, _)) = state.by_time.first() {
            if *at >= cutoff {
                break;
            }
            if let Some((_, key)) = state.by_time.pop_first() {
                state.delivered.remove(&key);
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }
}
