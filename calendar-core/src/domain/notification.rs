//! Reminders and the notifications that deliver them, with their message encoding.
//!
//! A [`Notification`] travels from the scheduler to the sender through a queue as a small JSON
//! document ([`Notification::encode`], [`Notification::decode`]) carrying a schema version.
//! Every queue adapter uses this one encoding, so a sender can read what any scheduler wrote.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::event::Title;
use super::ids::{EventId, UserId};
use super::limits::{MAX_NOTIFICATION_MESSAGE_BYTES, to_micros};

/// The version of the message encoding [`Notification::encode`] writes and
/// [`Notification::decode`] reads.
pub const NOTIFICATION_SCHEMA_VERSION: u32 = 1;

/// The content type of an encoded notification.
pub const NOTIFICATION_CONTENT_TYPE: &str = "application/json";

/// One reminder of one event: the event and the instant the reminder falls due.
///
/// When an event's start or lead changes, its reminder instant changes and so does the key: a
/// confirmation for the old reminder never settles the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReminderKey {
    /// The event reminded of.
    pub event_id: EventId,
    /// When the reminder falls due.
    pub remind_at: DateTime<Utc>,
}

impl ReminderKey {
    /// The key under which a delivery of this reminder is deduplicated.
    pub fn idempotency_key(&self) -> IdempotencyKey {
        IdempotencyKey(format!(
            "{}@{}",
            self.event_id,
            self.remind_at.timestamp_micros()
        ))
    }
}

/// The deduplication key of a notification: `<event id>@<reminder instant in µs since epoch>`.
/// Used as the message id on the queue and as the key of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key as text (at most 60 ASCII bytes).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reminder on its way to the event's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    event_id: EventId,
    user: UserId,
    title: Title,
    event_start: DateTime<Utc>,
    remind_at: DateTime<Utc>,
}

/// Why bytes from a queue are not a notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_NOTIFICATION_MESSAGE_BYTES`].
    #[error("message is {len} bytes, the limit is {max}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a JSON document of the expected shape.
    #[error("message is not a notification document: {0}")]
    Malformed(String),
    /// Written with a schema version this build does not read.
    #[error("message schema version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// The version in the message.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A field is present but not valid.
    #[error("message field {field} is invalid: {reason}")]
    InvalidField {
        /// The field's name in the document.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The wire shape of a notification.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    schema_version: u32,
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    title: Cow<'a, str>,
    #[serde(borrow)]
    event_start: Cow<'a, str>,
    #[serde(borrow)]
    remind_at: Cow<'a, str>,
}

impl Notification {
    /// A notification of `event_id`'s reminder falling due at `remind_at`.
    pub fn new(
        event_id: EventId,
        user: UserId,
        title: Title,
        event_start: DateTime<Utc>,
        remind_at: DateTime<Utc>,
    ) -> Self {
        Self {
            event_id,
            user,
            title,
            event_start: to_micros(event_start),
            remind_at: to_micros(remind_at),
        }
    }

    /// The event reminded of.
    pub fn event_id(&self) -> EventId {
        self.event_id
    }

    /// Who is reminded: the event's owner.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The event's title.
    pub fn title(&self) -> &Title {
        &self.title
    }

    /// When the event starts.
    pub fn event_start(&self) -> DateTime<Utc> {
        self.event_start
    }

    /// When the reminder fell due.
    pub fn remind_at(&self) -> DateTime<Utc> {
        self.remind_at
    }

    /// The reminder this notification delivers.
    pub fn key(&self) -> ReminderKey {
        ReminderKey {
            event_id: self.event_id,
            remind_at: self.remind_at,
        }
    }

    /// Its deduplication key.
    pub fn idempotency_key(&self) -> IdempotencyKey {
        self.key().idempotency_key()
    }

    /// The message body: a JSON document with `schema_version` [`NOTIFICATION_SCHEMA_VERSION`].
    pub fn encode(&self) -> Vec<u8> {
        let event_id = self.event_id.to_string();
        let event_start = self
            .event_start
            .to_rfc3339_opts(SecondsFormat::Micros, true);
        let remind_at = self.remind_at.to_rfc3339_opts(SecondsFormat::Micros, true);
        let wire = Wire {
            schema_version: NOTIFICATION_SCHEMA_VERSION,
            event_id: Cow::Owned(event_id),
            user_id: Cow::Borrowed(self.user.as_str()),
            title: Cow::Borrowed(self.title.as_str()),
            event_start: Cow::Owned(event_start),
            remind_at: Cow::Owned(remind_at),
        };
        // Serialising a struct of strings and an integer cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Reads a message body written by [`encode`](Self::encode), validating every field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_NOTIFICATION_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_NOTIFICATION_MESSAGE_BYTES,
            });
        }
        // Read the version first, so a newer document is reported as such, not as malformed.
        #[derive(Deserialize)]
        struct Versioned {
            schema_version: u32,
        }
        let versioned: Versioned =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if versioned.schema_version != NOTIFICATION_SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: versioned.schema_version,
                supported: NOTIFICATION_SCHEMA_VERSION,
            });
        }
        let wire: Wire<'_> =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let invalid =
            |field: &'static str, reason: String| DecodeError::InvalidField { field, reason };
        let instant = |field: &'static str, text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.to_utc())
                .map_err(|e| invalid(field, e.to_string()))
        };
        Ok(Self::new(
            wire.event_id
                .parse()
                .map_err(|e: super::ids::EventIdError| invalid("event_id", e.to_string()))?,
            UserId::new(wire.user_id.into_owned())
                .map_err(|e| invalid("user_id", e.to_string()))?,
            Title::new(&wire.title).map_err(|e| invalid("title", e.to_string()))?,
            instant("event_start", &wire.event_start)?,
            instant("remind_at", &wire.remind_at)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Notification {
        Notification::new(
            "0190f5d2-6a43-7c3e-9a10-6f2b3c4d5e6f".parse().unwrap(),
            UserId::new("ann").unwrap(),
            Title::new("Dentist \"Dr. Who\" ✓").unwrap(),
            DateTime::parse_from_rfc3339("2026-03-01T09:00:00.5Z")
                .unwrap()
                .to_utc(),
            DateTime::parse_from_rfc3339("2026-03-01T08:45:00Z")
                .unwrap()
                .to_utc(),
        )
    }

    #[test]
    fn encodes_a_readable_versioned_document() {
        let text = String::from_utf8(sample().encode()).unwrap();
        assert_eq!(
            text,
            r#"{"schema_version":1,"event_id":"0190f5d2-6a43-7c3e-9a10-6f2b3c4d5e6f","user_id":"ann","title":"Dentist \"Dr. Who\" ✓","event_start":"2026-03-01T09:00:00.500000Z","remind_at":"2026-03-01T08:45:00.000000Z"}"#
        );
        assert_eq!(Notification::decode(text.as_bytes()), Ok(sample()));
    }

    #[test]
    fn idempotency_key_is_event_and_instant() {
        assert_eq!(
            sample().idempotency_key().as_str(),
            "0190f5d2-6a43-7c3e-9a10-6f2b3c4d5e6f@1772354700000000"
        );
    }

    #[test]
    fn rejects_what_is_not_a_notification() {
        assert!(matches!(
            Notification::decode(b"\xff\xfe"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Notification::decode(br#"{"schema_version":1}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            Notification::decode(br#"{"schema_version":2,"anything":true}"#),
            Err(DecodeError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        );
        let text = String::from_utf8(sample().encode()).unwrap();
        let bad_user = text.replace(r#""ann""#, r#""a n""#);
        assert!(matches!(
            Notification::decode(bad_user.as_bytes()),
            Err(DecodeError::InvalidField {
                field: "user_id",
                ..
            })
        ));
        let bad_time = text.replace("2026-03-01T08:45:00.000000Z", "yesterday");
        assert!(matches!(
            Notification::decode(bad_time.as_bytes()),
            Err(DecodeError::InvalidField {
                field: "remind_at",
                ..
            })
        ));
        let extra = text.replace(r#""schema_version":1,"#, r#""schema_version":1,"x":1,"#);
        assert!(matches!(
            Notification::decode(extra.as_bytes()),
            Err(DecodeError::Malformed(_))
        ));
        let huge = vec![b' '; MAX_NOTIFICATION_MESSAGE_BYTES + 1];
        assert!(matches!(
            Notification::decode(&huge),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Notification::decode(&bytes);
        }

        #[test]
        fn encoding_round_trips(
            title in "[^\\p{Cc}]{1,50}",
            start in 0i64..4_000_000_000_000_000,
            lead in 0i64..31_622_400_000_000,
        ) {
            prop_assume!(!title.trim().is_empty());
            let start = DateTime::from_timestamp_micros(start).unwrap();
            let remind_at = start - chrono::TimeDelta::microseconds(lead);
            let n = Notification::new(
                EventId::generate(),
                UserId::new("u-1").unwrap(),
                Title::new(&title).unwrap(),
                start,
                remind_at,
            );
            prop_assert_eq!(Notification::decode(&n.encode()), Ok(n));
        }
    }
}
