//! Pagination of event lists: a page size and an opaque keyset page token.
//!
//! Lists are ordered by (start, id). A page token names the last event of the previous page and
//! the range the list was asked for, so the next page starts strictly after that event: no event
//! that existed throughout is skipped or repeated, however many are inserted meanwhile.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::event::Event;
use super::ids::EventId;
use super::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use super::period::TimeRange;

/// How many events a page holds: 1 to [`MAX_PAGE_SIZE`]; [`DEFAULT_PAGE_SIZE`] by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageSize(u32);

/// Why a number is not a [`PageSize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageSizeError {
    /// Zero.
    #[error("page size must be at least 1")]
    Zero,
    /// More than [`MAX_PAGE_SIZE`].
    #[error("page size {size} is larger than the maximum {max}")]
    TooLarge {
        /// The size given.
        size: u32,
        /// The maximum.
        max: u32,
    },
}

impl PageSize {
    /// Validates a page size.
    pub fn new(size: u32) -> Result<Self, PageSizeError> {
        match size {
            0 => Err(PageSizeError::Zero),
            size if size > MAX_PAGE_SIZE => Err(PageSizeError::TooLarge {
                size,
                max: MAX_PAGE_SIZE,
            }),
            size => Ok(Self(size)),
        }
    }

    /// The largest page, [`MAX_PAGE_SIZE`].
    pub fn max() -> Self {
        Self(MAX_PAGE_SIZE)
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageSize {
    fn default() -> Self {
        Self(DEFAULT_PAGE_SIZE)
    }
}

/// A position in a list ordered by (start, id): the last event already returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cursor {
    /// The start of that event.
    pub start: DateTime<Utc>,
    /// Its id.
    pub id: EventId,
}

impl Cursor {
    /// The position of `event`.
    pub fn after(event: &Event) -> Self {
        let (start, id) = event.sort_key();
        Self { start, id }
    }

    /// Whether `event` comes after this position.
    pub fn precedes(&self, event: &Event) -> bool {
        (self.start, self.id) < event.sort_key()
    }
}

/// An opaque token for the next page of a list, bound to the range that list covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageToken {
    range: TimeRange,
    cursor: Cursor,
}

/// Why a page token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageTokenError {
    /// Not a token this service issued (or damaged on the way).
    #[error("page token is malformed")]
    Malformed,
    /// Issued for a different list (another period or time zone).
    #[error("page token belongs to a different list")]
    OtherList,
}

const TOKEN_FORMAT: u8 = 1;
const TOKEN_BYTES: usize = 1 + 8 + 8 + 8 + 16;
/// Longest text worth decoding: the encoding of [`TOKEN_BYTES`] is 55 characters.
const MAX_TOKEN_TEXT: usize = 64;

impl PageToken {
    /// The token continuing the list over `range` after `cursor`.
    pub fn new(range: TimeRange, cursor: Cursor) -> Self {
        Self { range, cursor }
    }

    /// Decodes a token from its text.
    pub fn parse(text: &str) -> Result<Self, PageTokenError> {
        if text.len() > MAX_TOKEN_TEXT {
            return Err(PageTokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| PageTokenError::Malformed)?;
        let bytes: [u8; TOKEN_BYTES] = bytes.try_into().map_err(|_| PageTokenError::Malformed)?;
        if bytes[0] != TOKEN_FORMAT {
            return Err(PageTokenError::Malformed);
        }
        let instant = |at: usize| {
            let mut micros = [0u8; 8];
            micros.copy_from_slice(&bytes[at..at + 8]);
            DateTime::from_timestamp_micros(i64::from_be_bytes(micros))
                .ok_or(PageTokenError::Malformed)
        };
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&bytes[25..41]);
        let range =
            TimeRange::new(instant(1)?, instant(9)?).map_err(|_| PageTokenError::Malformed)?;
        let cursor = Cursor {
            start: instant(17)?,
            id: EventId::from_uuid(Uuid::from_bytes(uuid))
                .map_err(|_| PageTokenError::Malformed)?,
        };
        Ok(Self { range, cursor })
    }

    /// The cursor, if the token was issued for a list over `range`.
    pub fn cursor_for(&self, range: &TimeRange) -> Result<Cursor, PageTokenError> {
        if self.range == *range {
            Ok(self.cursor)
        } else {
            Err(PageTokenError::OtherList)
        }
    }
}

impl fmt::Display for PageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[0] = TOKEN_FORMAT;
        bytes[1..9].copy_from_slice(&self.range.start().timestamp_micros().to_be_bytes());
        bytes[9..17].copy_from_slice(&self.range.end().timestamp_micros().to_be_bytes());
        bytes[17..25].copy_from_slice(&self.cursor.start.timestamp_micros().to_be_bytes());
        bytes[25..41].copy_from_slice(self.cursor.id.as_uuid().as_bytes());
        f.write_str(&URL_SAFE_NO_PAD.encode(bytes))
    }
}

/// Which page of a list to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// How many events at most.
    pub size: PageSize,
    /// Where to continue; `None` for the first page.
    pub token: Option<PageToken>,
}

impl PageRequest {
    /// The first page of `size` events.
    pub fn first(size: PageSize) -> Self {
        Self { size, token: None }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// The events, ordered by (start, id).
    pub events: Vec<Event>,
    /// The token of the next page; `None` on the last page.
    pub next_page_token: Option<PageToken>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn range() -> TimeRange {
        TimeRange::new(
            DateTime::from_timestamp(1_772_323_200, 0).unwrap(),
            DateTime::from_timestamp(1_772_409_600, 0).unwrap(),
        )
        .unwrap()
    }

    fn cursor() -> Cursor {
        Cursor {
            start: DateTime::from_timestamp_micros(1_772_350_000_123_456).unwrap(),
            id: EventId::generate(),
        }
    }

    #[test]
    fn page_size_bounds() {
        assert_eq!(PageSize::new(0), Err(PageSizeError::Zero));
        assert_eq!(PageSize::new(1).unwrap().get(), 1);
        assert_eq!(PageSize::new(MAX_PAGE_SIZE).unwrap(), PageSize::max());
        assert!(matches!(
            PageSize::new(MAX_PAGE_SIZE + 1),
            Err(PageSizeError::TooLarge { .. })
        ));
        assert_eq!(PageSize::default().get(), DEFAULT_PAGE_SIZE);
    }

    #[test]
    fn token_round_trips_and_is_bound_to_its_list() {
        let token = PageToken::new(range(), cursor());
        let text = token.to_string();
        assert_eq!(text.len(), 55);
        let parsed = PageToken::parse(&text).unwrap();
        assert_eq!(parsed, token);
        assert_eq!(parsed.cursor_for(&range()), Ok(token.cursor));
        let other =
            TimeRange::new(range().start(), range().end() + chrono::TimeDelta::hours(1)).unwrap();
        assert_eq!(parsed.cursor_for(&other), Err(PageTokenError::OtherList));
    }

    #[test]
    fn forged_tokens_are_malformed() {
        let text = PageToken::new(range(), cursor()).to_string();
        for forged in [
            String::new(),
            "!!!".to_owned(),
            text[..54].to_owned(),
            format!("{text}AA"),
            "A".repeat(10_000),
        ] {
            assert_eq!(
                PageToken::parse(&forged),
                Err(PageTokenError::Malformed),
                "{forged:?}"
            );
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        bytes[0] = 2;
        assert_eq!(
            PageToken::parse(&URL_SAFE_NO_PAD.encode(&bytes)),
            Err(PageTokenError::Malformed),
            "unknown format"
        );
        let mut nil = URL_SAFE_NO_PAD.decode(&text).unwrap();
        nil[25..41].fill(0);
        assert_eq!(
            PageToken::parse(&URL_SAFE_NO_PAD.encode(&nil)),
            Err(PageTokenError::Malformed),
            "nil event id"
        );
        let mut backwards = URL_SAFE_NO_PAD.decode(&text).unwrap();
        backwards[1..9].copy_from_slice(&i64::MAX.to_be_bytes());
        assert_eq!(
            PageToken::parse(&URL_SAFE_NO_PAD.encode(&backwards)),
            Err(PageTokenError::Malformed),
            "range ending before it starts"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_what_it_issued(text in "[A-Za-z0-9_-]{0,70}") {
            if let Ok(token) = PageToken::parse(&text) {
                prop_assert_eq!(token.to_string(), text);
            }
        }

        #[test]
        fn decoded_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..60)) {
            let _ = PageToken::parse(&URL_SAFE_NO_PAD.encode(bytes));
        }
    }
}
