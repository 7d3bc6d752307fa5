//! Publisher confirms: matching the broker's acks, nacks and returns to the publishes they
//! answer.
//!
//! On a channel in confirm mode the broker numbers published messages 1, 2, 3, ... in the
//! order it receives them, and answers each (or a run of them, `multiple`) with an ack or a
//! nack. A `mandatory` message that no queue takes comes back as a return, followed by its ack:
//! that ack is then a failure.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use calendar_core::QueueError;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::sync::lock;

/// Where a message is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// The main exchange, for consumers.
    Main,
    /// The retry queue, to come back after its TTL.
    Retry,
}

/// The publishes of one channel awaiting the broker's answer.
#[derive(Debug, Default)]
pub(super) struct Confirms {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The number the broker will give the next publish.
    next: u64,
    waiting: BTreeMap<u64, Waiter>,
    /// Once the channel is gone, nothing more will be answered.
    closed: bool,
}

#[derive(Debug)]
struct Waiter {
    message_id: String,
    returned: Option<String>,
    answer: oneshot::Sender<Result<(), QueueError>>,
    /// Holds a place among the publishes in flight until answered.
    _permit: OwnedSemaphorePermit,
}

/// A publish awaiting its confirmation.
#[derive(Debug)]
pub(super) struct PendingConfirm {
    answer: oneshot::Receiver<Result<(), QueueError>>,
}

impl PendingConfirm {
    /// The broker's answer, or [`QueueError::Unconfirmed`] after `timeout`.
    pub(super) async fn wait(self, timeout: Duration) -> Result<(), QueueError> {
        match tokio::time::timeout(timeout, self.answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(QueueError::Unavailable(
                "the connection was lost before the broker confirmed".into(),
            )),
            Err(_) => Err(QueueError::Unconfirmed {
                waited_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

impl Confirms {
    /// Confirms numbered from 1, as on a channel just put in confirm mode.
    pub(super) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                next: 1,
                ..State::default()
            }),
        }
    }

    /// Registers the next publish; call it, then publish, under one lock so that numbers
    /// follow the order of publishing.
    pub(super) fn register(
        &self,
        message_id: &str,
        permit: OwnedSemaphorePermit,
    ) -> Result<(u64, PendingConfirm), QueueError> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(QueueError::Unavailable(
                "the publishing channel is closed".into(),
            ));
        }
        let (answer, receiver) = oneshot::channel();
        let number = state.next;
        state.next += 1;
        state.waiting.insert(
            number,
            Waiter {
                message_id: message_id.to_owned(),
                returned: None,
                answer,
                _permit: permit,
            },
        );
        Ok((number, PendingConfirm { answer: receiver }))
    }

    /// The publish `number` never reached the broker.
    pub(super) fn fail(&self, number: u64, error: QueueError) {
        if let Some(waiter) = lock(&self.state).waiting.remove(&number) {
            let _ = waiter.answer.send(Err(error));
        }
    }

    /// The broker took `number` (and with `multiple`, every earlier one).
    pub(super) fn ack(&self, number: u64, multiple: bool) {
        self.answer(number, multiple, |waiter| match &waiter.returned {
            None => Ok(()),
            Some(reason) => Err(QueueError::Refused {
                reason: format!("unroutable: {reason}"),
            }),
        });
    }

    /// The broker refused `number` (and with `multiple`, every earlier one).
    pub(super) fn nack(&self, number: u64, multiple: bool) {
        self.answer(number, multiple, |_| {
            Err(QueueError::Refused {
                reason: "the broker refused the message (nack)".to_owned(),
            })
        });
    }

    /// The broker returned the message `message_id` as unroutable; its ack follows.
    pub(super) fn returned(&self, message_id: &str, reason: String) {
        let mut state = lock(&self.state);
        if let Some(waiter) = state
            .waiting
            .values_mut()
            .find(|w| w.message_id == message_id && w.returned.is_none())
        {
            waiter.returned = Some(reason);
        }
    }

    /// The channel is gone: every waiting publish fails, and later ones are refused.
    pub(super) fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        for (_, waiter) in std::mem::take(&mut state.waiting) {
            let _ = waiter.answer.send(Err(QueueError::Unavailable(
                "the connection was lost before the broker confirmed".into(),
            )));
        }
    }

    /// How many publishes await an answer.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        lock(&self.state).waiting.len()
    }

    fn answer(
        &self,
        number: u64,
        multiple: bool,
        result: impl Fn(&Waiter) -> Result<(), QueueError>,
    ) {
        let mut state = lock(&self.state);
        let answered: Vec<u64> = if multiple {
            state.waiting.range(..=number).map(|(n, _)| *n).collect()
        } else {
            vec![number]
        };
        for n in answered {
            if let Some(waiter) = state.waiting.remove(&n) {
                let outcome = result(&waiter);
                let _ = waiter.answer.send(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    fn permit(semaphore: &Arc<Semaphore>) -> OwnedSemaphorePermit {
        semaphore.clone().try_acquire_owned().unwrap()
    }

    #[tokio::test]
    async fn acks_nacks_and_returns_reach_their_publishes() {
        let semaphore = Arc::new(Semaphore::new(10));
        let confirms = Confirms::new();
        let pending: Vec<PendingConfirm> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .map(|id| confirms.register(id, permit(&semaphore)).unwrap().1)
            .collect();
        assert_eq!(semaphore.available_permits(), 5);
        confirms.returned("d", "NO_ROUTE".into());
        confirms.ack(2, true);
        confirms.nack(3, false);
        confirms.ack(5, true);
        let timeout = Duration::from_secs(1);
        let mut results = Vec::new();
        for p in pending {
            results.push(p.wait(timeout).await);
        }
        assert!(results[0].is_ok() && results[1].is_ok() && results[4].is_ok());
        assert!(
            matches!(&results[2], Err(QueueError::Refused { reason }) if reason.contains("nack"))
        );
        assert!(
            matches!(&results[3], Err(QueueError::Refused { reason }) if reason.contains("NO_ROUTE"))
        );
        assert_eq!(
            semaphore.available_permits(),
            10,
            "answered publishes free their place"
        );
    }

    #[tokio::test]
    async fn a_closed_channel_fails_what_waits_and_refuses_more() {
        let semaphore = Arc::new(Semaphore::new(10));
        let confirms = Confirms::new();
        let (_, pending) = confirms.register("a", permit(&semaphore)).unwrap();
        confirms.close();
        assert!(matches!(
            pending.wait(Duration::from_secs(1)).await,
            Err(QueueError::Unavailable(_))
        ));
        assert!(confirms.register("b", permit(&semaphore)).is_err());
        assert_eq!(confirms.waiting(), 0);
    }

    #[tokio::test]
    async fn an_unanswered_publish_times_out() {
        let semaphore = Arc::new(Semaphore::new(1));
        let confirms = Confirms::new();
        let (_, pending) = confirms.register("a", permit(&semaphore)).unwrap();
        assert!(matches!(
            pending.wait(Duration::from_millis(10)).await,
            Err(QueueError::Unconfirmed { waited_ms: 10 })
        ));
    }
}
