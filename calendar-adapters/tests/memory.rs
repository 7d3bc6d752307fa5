//! The contract suite on the in-memory adapters.

#![allow(clippy::expect_used)]

use async_trait::async_trait;
use calendar_adapters::memory::{MemoryEventRepository, MemoryQueue};
use calendar_core::testkit::QueueFixture;
use calendar_core::{NotificationSource, ReminderQueue};

calendar_core::repository_contract_tests! {
    #[tokio::test]
    fn() => MemoryEventRepository::new()
}

struct MemoryQueueFixture(MemoryQueue);

#[async_trait]
impl QueueFixture for MemoryQueueFixture {
    fn queue(&self) -> &dyn ReminderQueue {
        &self.0
    }

    fn source(&self) -> &dyn NotificationSource {
        &self.0
    }

    async fn publish_raw(&self, body: &[u8]) {
        self.0.publish_raw(body.to_vec()).expect("publish raw");
    }

    async fn take_dead_letters(&self, _expected: usize) -> Vec<Vec<u8>> {
        // Dead-lettering is synchronous here: whatever is expected is already there.
        self.0
            .take_dead_letters()
            .into_iter()
            .map(|dead| dead.body)
            .collect()
    }
}

calendar_core::queue_contract_tests! {
    #[tokio::test]
    fn() => MemoryQueueFixture(MemoryQueue::new())
}

calendar_core::delivery_log_contract_tests! {
    #[tokio::test]
    fn() => calendar_adapters::memory::MemoryDeliveryLog::new()
}
