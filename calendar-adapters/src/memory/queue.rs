use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use calendar_core::{
    Delivery, DeliveryTag, Notification, NotificationSource, QueueError, ReminderQueue, SourceError,
};
use tokio::sync::Notify;

use super::lock;

/// An in-process reminder queue: both the publishing and the consuming side.
///
/// Messages are stored encoded, exactly as a broker would carry them, so a consumer decodes
/// what a publisher wrote. Publishing confirms at once (the message is in the queue); the queue
/// holds at most `capacity` unsettled messages and refuses more with [`QueueError::Full`].
#[derive(Debug)]
pub struct MemoryQueue {
    state: Mutex<State>,
    arrived: Notify,
    capacity: usize,
}

/// A message moved to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The body as published.
    pub body: Vec<u8>,
    /// Why it was dead-lettered.
    pub reason: String,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Message>,
    unsettled: HashMap<u64, Message>,
    dead: VecDeque<DeadLetter>,
    next_tag: u64,
    closed: bool,
}

#[derive(Debug)]
struct Message {
    body: Vec<u8>,
    attempt: u32,
}

impl MemoryQueue {
    /// The default capacity: 100,000 unsettled messages.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// An empty queue of [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY).
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An empty queue holding at most `capacity` unsettled messages.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
            capacity,
        }
    }

    /// Puts a body on the queue as is, as a foreign publisher could (tools and tests use it to
    /// exercise the consumer with bodies that are not notifications).
    pub fn publish_raw(&self, body: Vec<u8>) -> Result<(), QueueError> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(QueueError::Unavailable("the queue is closed".into()));
        }
        if state.ready.len() + state.unsettled.len() >= self.capacity {
            return Err(QueueError::Full {
                capacity: self.capacity,
            });
        }
        state.ready.push_back(Message { body, attempt: 1 });
        drop(state);
        self.arrived.notify_waiters();
        Ok(())
    }

    /// How many messages wait for a consumer or for settling.
    pub fn len(&self) -> usize {
        let state = lock(&self.state);
        state.ready.len() + state.unsettled.len()
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the messages of the dead-letter queue, oldest first.
    pub fn take_dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.state).dead.drain(..).collect()
    }

    /// Shuts the queue: publishing fails and `receive` returns [`SourceError::Closed`].
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.arrived.notify_waiters();
    }

    fn settle(&self, tag: DeliveryTag) -> Result<Message, SourceError> {
        lock(&self.state)
            .unsettled
            .remove(&tag.get())
            .ok_or(SourceError::UnknownDelivery(tag))
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ReminderQueue for MemoryQueue {
    async fn publish(&self, notifications: &[Notification]) -> Vec<Result<(), QueueError>> {
        notifications
            .iter()
            .map(|n| self.publish_raw(n.encode()))
            .collect()
    }
}

#[async_trait]
impl NotificationSource for MemoryQueue {
    async fn receive(&self) -> Result<Delivery, SourceError> {
        loop {
            // Register for wake-ups before looking, so a message published in between is seen.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let mut state = lock(&self.state);
                if state.closed {
                    return Err(SourceError::Closed);
                }
                if let Some(message) = state.ready.pop_front() {
                    state.next_tag += 1;
                    let tag = DeliveryTag::new(state.next_tag);
                    let delivery = Delivery {
                        tag,
                        attempt: message.attempt,
                        message: Notification::decode(&message.body),
                    };
                    state.unsettled.insert(tag.get(), message);
                    return Ok(delivery);
                }
            }
            arrived.await;
        }
    }

    async fn is_unsettled(&self, tag: DeliveryTag) -> bool {
        lock(&self.state).unsettled.contains_key(&tag.get())
    }

    async fn ack(&self, tag: DeliveryTag) -> Result<(), SourceError> {
        self.settle(tag).map(drop)
    }

    async fn ack_all(&self, tags: &[DeliveryTag]) -> Result<(), SourceError> {
        let mut first_error = None;
        for tag in tags {
            if let Err(error) = self.settle(*tag) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn retry(&self, tag: DeliveryTag) -> Result<(), SourceError> {
        let mut message = self.settle(tag)?;
        message.attempt = message.attempt.saturating_add(1);
        lock(&self.state).ready.push_front(message);
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn dead_letter(&self, tag: DeliveryTag, reason: &str) -> Result<(), SourceError> {
        let message = self.settle(tag)?;
        lock(&self.state).dead.push_back(DeadLetter {
            body: message.body,
            reason: reason.to_owned(),
        });
        Ok(())
    }
}
