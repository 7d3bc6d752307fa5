//! The received messages the sender has not settled yet, by the tag handed to it, with the
//! order the broker numbered them in: an acknowledgement with `multiple` settles every message
//! the broker delivered on the channel up to a broker tag, so it may cover a set of messages
//! only when every other message below them has been received and settled, its settling sent
//! to the broker. (With several consumers on the channel, the broker's numbering is shared
//! between them and their messages are received in no fixed order.) A message being settled
//! therefore keeps its place in that order, after it is taken, until its settling has been
//! sent ([`UnsettledMessages::sent`]): a message covered twice would be an unknown tag to the
//! broker the second time, and it closes the channel for that.

use std::collections::{BTreeSet, HashMap};

use amqprs::BasicProperties;

/// A received message, until the sender settles it.
pub(super) struct Unsettled {
    /// The session it arrived on: its broker tag means nothing on another.
    pub(super) generation: u64,
    pub(super) broker_tag: u64,
    pub(super) properties: BasicProperties,
    pub(super) body: Vec<u8>,
    pub(super) attempt: u32,
}

/// The unsettled messages.
#[derive(Default)]
pub(super) struct UnsettledMessages {
    by_tag: HashMap<u64, Unsettled>,
    /// (session, broker tag) of each, and of each taken whose settling is not sent yet, in the
    /// broker's order.
    order: BTreeSet<(u64, u64)>,
    /// Which broker tags have been received on the newest session, and which session that is
    /// (what was received on older ones no longer matters).
    received: (u64, Received),
}

/// The broker tags received on one session: all of 1 to `through`, and those in `ahead`.
#[derive(Default)]
struct Received {
    through: u64,
    ahead: BTreeSet<u64>,
}

impl Received {
    fn add(&mut self, broker_tag: u64) {
        if broker_tag != self.through + 1 {
            self.ahead.insert(broker_tag);
            return;
        }
        self.through = broker_tag;
        while self.ahead.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }
}

impl UnsettledMessages {
    pub(super) fn insert(&mut self, tag: u64, message: Unsettled) {
        let (newest, received) = &mut self.received;
        if message.generation > *newest {
            *newest = message.generation;
            *received = Received::default();
        }
        if message.generation == *newest {
            received.add(message.broker_tag);
        }
        self.order.insert((message.generation, message.broker_tag));
        if let Some(replaced) = self.by_tag.insert(tag, message) {
            self.order
                .remove(&(replaced.generation, replaced.broker_tag));
        }
    }

    pub(super) fn get(&self, tag: u64) -> Option<&Unsettled> {
        self.by_tag.get(&tag)
    }

    /// Takes the message out to settle it: nobody else can from now on. Until
    /// [`sent`](Self::sent) is called for it, it still counts as not settled.
    pub(super) fn take(&mut self, tag: u64) -> Option<Unsettled> {
        self.by_tag.remove(&tag)
    }

    /// The settling of the taken message `broker_tag` of session `generation` has been sent to
    /// the broker (or never will be: its channel is gone).
    pub(super) fn sent(&mut self, generation: u64, broker_tag: u64) {
        self.order.remove(&(generation, broker_tag));
    }

    /// The lowest broker tag of session `generation`, other than the `own` ones (sorted), that
    /// an acknowledgement with `multiple` must not reach: the lowest not settled, or the
    /// lowest not received yet.
    pub(super) fn first_not_settled(&self, generation: u64, own: &[u64]) -> u64 {
        let (newest, received) = &self.received;
        let unreceived = if generation == *newest {
            received.through + 1
        } else {
            1
        };
        self.order
            .range((generation, 0)..=(generation, u64::MAX))
            .map(|(_, broker_tag)| *broker_tag)
            .find(|broker_tag| own.binary_search(broker_tag).is_err())
            .map_or(unreceived, |broker_tag| broker_tag.min(unreceived))
    }
}

/// How to acknowledge `taken` (broker tags of one session, taken out of the unsettled ones,
/// sorted) when `bound` is the session's first other tag not settled
/// ([`UnsettledMessages::first_not_settled`]): the largest tag to acknowledge with `multiple`
/// (covering every taken tag below `bound`), if any, and the tags to acknowledge one by one.
pub(super) fn acknowledgements(taken: &[u64], bound: u64) -> (Option<u64>, Vec<u64>) {
    let multiple = taken.iter().filter(|tag| **tag < bound).max().copied();
    let single = taken.iter().filter(|tag| **tag >= bound).copied().collect();
    (multiple, single)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(generation: u64, broker_tag: u64) -> Unsettled {
        Unsettled {
            generation,
            broker_tag,
            properties: BasicProperties::default(),
            body: Vec::new(),
            attempt: 1,
        }
    }

    /// Takes the message and marks its settling sent.
    fn settle(unsettled: &mut UnsettledMessages, tag: u64) {
        let message = unsettled.take(tag).expect("unsettled");
        unsettled.sent(message.generation, message.broker_tag);
    }

    #[test]
    fn a_multiple_acknowledgement_stops_below_what_is_unsettled_or_not_received() {
        let mut unsettled = UnsettledMessages::default();
        for tag in 1..=4 {
            unsettled.insert(tag, message(1, tag));
        }
        assert_eq!(unsettled.first_not_settled(1, &[]), 1);
        assert_eq!(
            unsettled.first_not_settled(1, &[1, 2]),
            3,
            "3 is still unsettled"
        );
        for tag in 1..=4 {
            settle(&mut unsettled, tag);
        }
        assert_eq!(
            unsettled.first_not_settled(1, &[]),
            5,
            "all received are settled"
        );
        // Tag 6 arrives before 5 (another consumer's): 5 is not received yet.
        unsettled.insert(6, message(1, 6));
        settle(&mut unsettled, 6);
        assert_eq!(unsettled.first_not_settled(1, &[]), 5);
        unsettled.insert(5, message(1, 5));
        assert_eq!(unsettled.first_not_settled(1, &[]), 5);
        settle(&mut unsettled, 5);
        assert_eq!(unsettled.first_not_settled(1, &[]), 7);
        assert!(unsettled.take(5).is_none(), "taken once");
        // A new session numbers from 1 again.
        unsettled.insert(7, message(2, 1));
        assert_eq!(unsettled.first_not_settled(2, &[]), 1);
        assert!(unsettled.get(7).is_some());
    }

    #[test]
    fn a_message_being_settled_elsewhere_bounds_a_multiple_acknowledgement() {
        let mut unsettled = UnsettledMessages::default();
        for tag in 1..=4 {
            unsettled.insert(tag, message(1, tag));
        }
        // 1 and 2 taken by one settler, not sent yet; 3 and 4 by another.
        for tag in 1..=4 {
            assert!(unsettled.take(tag).is_some());
        }
        assert_eq!(
            unsettled.first_not_settled(1, &[3, 4]),
            1,
            "the other's must not be covered before it sends them"
        );
        assert_eq!(unsettled.first_not_settled(1, &[1, 2]), 3);
        unsettled.sent(1, 1);
        unsettled.sent(1, 2);
        assert_eq!(unsettled.first_not_settled(1, &[3, 4]), 5);
    }

    #[test]
    fn one_acknowledgement_covers_the_taken_tags_below_the_bound() {
        assert_eq!(acknowledgements(&[1, 2, 3], 4), (Some(3), vec![]));
        // Tag 4 is still held: 1 to 3 in one, 5 and 6 one by one.
        assert_eq!(acknowledgements(&[1, 2, 3, 5, 6], 4), (Some(3), vec![5, 6]));
        assert_eq!(acknowledgements(&[8, 9], 2), (None, vec![8, 9]));
        assert_eq!(acknowledgements(&[], 2), (None, vec![]));
    }
}
