//! Identifiers: of events, of their owners, and of an event's revision.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::limits::MAX_USER_ID_LEN;

/// The identity of an event: a UUID, never the nil or max UUID.
///
/// Ids the service assigns are UUIDv7, so they sort by creation time; clients may choose their
/// own (any version) to make a create retryable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(Uuid);

/// Why a value is not an [`EventId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventIdError {
    /// The text is not a UUID.
    #[error("event id is not a UUID")]
    Malformed,
    /// The nil (all zeros) or max (all ones) UUID, which mean "no id" in many systems.
    #[error("event id must not be the nil or max UUID")]
    Reserved,
}

impl EventId {
    /// A new, time-ordered (UUIDv7) id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps a UUID, refusing the nil and max UUIDs.
    pub fn from_uuid(uuid: Uuid) -> Result<Self, EventIdError> {
        if uuid.is_nil() || uuid.is_max() {
            Err(EventIdError::Reserved)
        } else {
            Ok(Self(uuid))
        }
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl FromStr for EventId {
    type Err = EventIdError;

    /// Parses the hyphenated, simple, braced or URN form of a UUID.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let uuid = Uuid::try_parse(text).map_err(|_| EventIdError::Malformed)?;
        Self::from_uuid(uuid)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0.hyphenated())
    }
}

/// The owner of events: an opaque, case-sensitive ASCII identifier given by the caller
/// (for example the subject of an upstream identity token).
///
/// 1 to [`MAX_USER_ID_LEN`] bytes of ASCII letters, digits and `-_.@:+`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

/// Why a value is not a [`UserId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    /// Empty.
    #[error("user id is empty")]
    Empty,
    /// Longer than [`MAX_USER_ID_LEN`] bytes.
    #[error("user id is {len} bytes long, the limit is {max}")]
    TooLong {
        /// The length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside ASCII letters, digits and `-_.@:+`.
    #[error(
        "user id has a character other than ASCII letters, digits and -_.@:+ at byte {position}"
    )]
    InvalidCharacter {
        /// Byte offset of the first offending character.
        position: usize,
    },
}

impl UserId {
    /// Validates a user id.
    pub fn new(value: impl Into<String>) -> Result<Self, UserIdError> {
        let value = value.into();
        if value.is_empty() {
            return Err(UserIdError::Empty);
        }
        if value.len() > MAX_USER_ID_LEN {
            return Err(UserIdError::TooLong {
                len: value.len(),
                max: MAX_USER_ID_LEN,
            });
        }
        if let Some(position) = value.bytes().position(|b| !Self::allowed(b)) {
            return Err(UserIdError::InvalidCharacter { position });
        }
        Ok(Self(value))
    }

    fn allowed(byte: u8) -> bool {
        byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'@' | b':' | b'+')
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserId {
    type Err = UserIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::new(text)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({:?})", self.0)
    }
}

/// The revision of an event, for optimistic concurrency: 1 when created, one more on every
/// update. Fits PostgreSQL's `bigint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(u64);

/// Why a number is not a [`Version`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version must be between 1 and {max}, got {value}", max = i64::MAX)]
pub struct VersionError {
    /// The number given.
    pub value: i128,
}

impl Version {
    /// The version of a newly created event.
    pub const FIRST: Version = Version(1);

    /// Validates a version number: 1 to `i64::MAX`.
    pub fn new(value: u64) -> Result<Self, VersionError> {
        if value == 0 || value > i64::MAX as u64 {
            Err(VersionError {
                value: i128::from(value),
            })
        } else {
            Ok(Self(value))
        }
    }

    /// Validates a version read from a signed column.
    pub fn from_i64(value: i64) -> Result<Self, VersionError> {
        u64::try_from(value)
            .map_err(|_| VersionError {
                value: i128::from(value),
            })
            .and_then(Self::new)
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The number as a signed integer, as stored in PostgreSQL (always positive).
    pub fn as_i64(self) -> i64 {
        // Construction bounds the value by i64::MAX.
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// The version after this one; saturates at the bound, which no event reaches in practice.
    #[must_use]
    pub fn next(self) -> Self {
        Self((self.0 + 1).min(i64::MAX as u64))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn event_id_rejects_reserved_and_malformed() {
        assert_eq!(
            "not-a-uuid".parse::<EventId>(),
            Err(EventIdError::Malformed)
        );
        assert_eq!(
            "00000000-0000-0000-0000-000000000000".parse::<EventId>(),
            Err(EventIdError::Reserved)
        );
        assert_eq!(EventId::from_uuid(Uuid::max()), Err(EventIdError::Reserved));
        let id = EventId::generate();
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(id.to_string().parse::<EventId>(), Ok(id));
    }

    #[test]
    fn user_id_rules() {
        assert_eq!(UserId::new(""), Err(UserIdError::Empty));
        assert_eq!(
            UserId::new("a".repeat(MAX_USER_ID_LEN + 1)),
            Err(UserIdError::TooLong {
                len: MAX_USER_ID_LEN + 1,
                max: MAX_USER_ID_LEN
            })
        );
        assert!(UserId::new("a".repeat(MAX_USER_ID_LEN)).is_ok());
        assert_eq!(
            UserId::new("ann smith"),
            Err(UserIdError::InvalidCharacter { position: 3 })
        );
        assert_eq!(
            UserId::new("é"),
            Err(UserIdError::InvalidCharacter { position: 0 })
        );
        assert_eq!(
            UserId::new("ann@example.com").unwrap().as_str(),
            "ann@example.com"
        );
    }

    #[test]
    fn version_bounds() {
        assert!(Version::new(0).is_err());
        assert!(Version::new(i64::MAX as u64 + 1).is_err());
        assert!(Version::from_i64(-1).is_err());
        assert_eq!(Version::FIRST.next().get(), 2);
        assert_eq!(Version::from_i64(7).unwrap().as_i64(), 7);
    }

    proptest! {
        #[test]
        fn user_id_accepts_exactly_the_allowed_alphabet(value in "\\PC{0,140}") {
            let expected_ok = !value.is_empty()
                && value.len() <= MAX_USER_ID_LEN
                && value.bytes().all(UserId::allowed);
            let parsed = UserId::new(value.clone());
            prop_assert_eq!(parsed.is_ok(), expected_ok);
            if let Ok(id) = parsed {
                prop_assert_eq!(id.as_str(), value.as_str());
            }
        }

        #[test]
        fn event_id_round_trips_through_text(bytes in any::<[u8; 16]>()) {
            let uuid = Uuid::from_bytes(bytes);
            match EventId::from_uuid(uuid) {
                Ok(id) => prop_assert_eq!(id.to_string().parse::<EventId>(), Ok(id)),
                Err(_) => prop_assert!(uuid.is_nil() || uuid.is_max()),
            }
        }
    }
}
