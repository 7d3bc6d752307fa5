use std::sync::Arc;

use chrono::NaiveDate;
use chrono_tz::Tz;
use tracing::{debug, info};

use crate::domain::{
    Event, EventDetails, EventId, EventPage, PageRequest, PageToken, PageTokenError, Period,
    PeriodError, UserId, Version, page::Cursor,
};
use crate::ports::{BoxError, Clock, EventRepository, RepositoryError};

/// Why a calendar operation failed. The variants map one to one onto the gRPC codes the
/// service returns (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED, INVALID_ARGUMENT,
/// UNAVAILABLE, INTERNAL).
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// The caller has no event with this id.
    #[error("event {id} not found")]
    NotFound {
        /// The id asked for.
        id: EventId,
    },
    /// The id is taken by an event with different content.
    #[error("event {id} already exists with different content")]
    AlreadyExists {
        /// The id.
        id: EventId,
    },
    /// The event would overlap another event that blocks its slot.
    #[error("time slot is busy{}", conflicting.map(|id| format!(": event {id} overlaps it")).unwrap_or_default())]
    SlotBusy {
        /// The event in the way, when known.
        conflicting: Option<EventId>,
    },
    /// The event changed since the caller read it.
    #[error("event is at version {current}, not {expected}")]
    VersionMismatch {
        /// The version the caller expected.
        expected: Version,
        /// The version stored.
        current: Version,
    },
    /// The page token does not fit this list.
    #[error("invalid page token: {0}")]
    InvalidPageToken(#[from] PageTokenError),
    /// The period asked for is outside the calendar.
    #[error("invalid period: {0}")]
    InvalidPeriod(#[from] PeriodError),
    /// Storage is unreachable for now.
    #[error("storage unavailable")]
    Unavailable(#[source] BoxError),
    /// Storage failed unexpectedly.
    #[error("internal storage failure")]
    Internal(#[source] BoxError),
}

impl From<RepositoryError> for CalendarError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::NotFound { id } => Self::NotFound { id },
            RepositoryError::AlreadyExists { id } => Self::AlreadyExists { id },
            RepositoryError::SlotBusy { conflicting } => Self::SlotBusy { conflicting },
            RepositoryError::VersionMismatch { expected, current } => {
                Self::VersionMismatch { expected, current }
            }
            RepositoryError::Unavailable(source) => Self::Unavailable(source),
            RepositoryError::Internal(source) => Self::Internal(source),
        }
    }
}

/// A user's calendar: create, read, update, delete and list events.
#[derive(Clone)]
pub struct Calendar {
    events: Arc<dyn EventRepository>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Calendar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calendar").finish_non_exhaustive()
    }
}

impl Calendar {
    /// A calendar over an event store and a clock.
    pub fn new(events: Arc<dyn EventRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { events, clock }
    }

    /// Creates an event for `owner`.
    ///
    /// With `id` given by the client the create is retryable: a retry with the same details
    /// returns the stored event; an id taken by different details (or another user) is
    /// [`CalendarError::AlreadyExists`]. Without `id` the service assigns a UUIDv7.
    #[tracing::instrument(skip_all, fields(user = %owner))]
    pub async fn create(
        &self,
        owner: &UserId,
        id: Option<EventId>,
        details: EventDetails,
    ) -> Result<Event, CalendarError> {
        let event = Event::new(
            id.unwrap_or_else(EventId::generate),
            owner.clone(),
            details,
            self.clock.now(),
        );
        match self.events.insert(&event).await {
            Ok(()) => {
                info!(event_id = %event.id(), start = %event.span().start(), "event created");
                Ok(event)
            }
            Err(
                error @ (RepositoryError::AlreadyExists { .. } | RepositoryError::SlotBusy { .. }),
            ) if id.is_some() => self.retried_or_refused(owner, &event, error).await,
            Err(error) => Err(error.into()),
        }
    }

    /// After an insert with a client-chosen id was refused: the stored event if this is the
    /// same create retried (the store may report that as the id taken or as the slot taken by
    /// the event itself), otherwise the refusal.
    async fn retried_or_refused(
        &self,
        owner: &UserId,
        event: &Event,
        refusal: RepositoryError,
    ) -> Result<Event, CalendarError> {
        let id = event.id();
        match self.events.get(owner, id).await? {
            Some(stored) if stored.details() == event.details() => {
                info!(event_id = %id, "event create retried: returning the stored event");
                Ok(stored)
            }
            Some(_) => Err(CalendarError::AlreadyExists { id }),
            None => match refusal {
                RepositoryError::SlotBusy { conflicting } if conflicting != Some(id) => {
                    Err(CalendarError::SlotBusy { conflicting })
                }
                _ => Err(CalendarError::AlreadyExists { id }),
            },
        }
    }

    /// `owner`'s event `id`.
    #[tracing::instrument(skip_all, fields(user = %owner, event_id = %id))]
    pub async fn get(&self, owner: &UserId, id: EventId) -> Result<Event, CalendarError> {
        self.events
            .get(owner, id)
            .await?
            .ok_or(CalendarError::NotFound { id })
    }

    /// Replaces the details of `owner`'s event `id`; with `expected` given, only if the event
    /// is still at that version. A changed start or reminder lead re-arms the reminder.
    #[tracing::instrument(skip_all, fields(user = %owner, event_id = %id))]
    pub async fn update(
        &self,
        owner: &UserId,
        id: EventId,
        details: EventDetails,
        expected: Option<Version>,
    ) -> Result<Event, CalendarError> {
        let event = self
            .events
            .update(owner, id, &details, expected, self.clock.now())
            .await?;
        info!(version = %event.version(), "event updated");
        Ok(event)
    }

    /// Deletes `owner`'s event `id` and cancels its reminder.
    #[tracing::instrument(skip_all, fields(user = %owner, event_id = %id))]
    pub async fn delete(&self, owner: &UserId, id: EventId) -> Result<(), CalendarError> {
        self.events.delete(owner, id).await?;
        info!("event deleted");
        Ok(())
    }

    /// One page of `owner`'s events overlapping `period`, ordered by (start, id).
    #[tracing::instrument(skip_all, fields(user = %owner, period = %period.kind(), date = %period.first_date()))]
    pub async fn list(
        &self,
        owner: &UserId,
        period: &Period,
        page: &PageRequest,
    ) -> Result<EventPage, CalendarError> {
        let range = period.range();
        let after = page
            .token
            .as_ref()
            .map(|token| token.cursor_for(&range))
            .transpose()?;
        let size = page.size.get();
        // One more than the page holds tells whether another page follows.
        let mut events = self.events.list(owner, range, after, size + 1).await?;
        let next_page_token = if events.len() > size as usize {
            events.truncate(size as usize);
            events
                .last()
                .map(|last| PageToken::new(range, Cursor::after(last)))
        } else {
            None
        };
        debug!(
            count = events.len(),
            more = next_page_token.is_some(),
            "events listed"
        );
        Ok(EventPage {
            events,
            next_page_token,
        })
    }

    /// One page of `owner`'s events on local day `date` in `zone`.
    pub async fn list_day(
        &self,
        owner: &UserId,
        date: NaiveDate,
        zone: Tz,
        page: &PageRequest,
    ) -> Result<EventPage, CalendarError> {
        self.list(owner, &Period::day(date, zone)?, page).await
    }

    /// One page of `owner`'s events in the seven local days from `date` in `zone`.
    pub async fn list_week(
        &self,
        owner: &UserId,
        date: NaiveDate,
        zone: Tz,
        page: &PageRequest,
    ) -> Result<EventPage, CalendarError> {
        self.list(owner, &Period::week(date, zone)?, page).await
    }

    /// One page of `owner`'s events from `date` to the same date next month in `zone`.
    pub async fn list_month(
        &self,
        owner: &UserId,
        date: NaiveDate,
        zone: Tz,
        page: &PageRequest,
    ) -> Result<EventPage, CalendarError> {
        self.list(owner, &Period::month(date, zone)?, page).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PageSize, TimeRange};
    use crate::ports::{MockClock, MockEventRepository};
    use crate::testkit::fixtures::{at, details, event, user};
    use chrono::{DateTime, Utc};
    use mockall::predicate::eq;

    fn now() -> DateTime<Utc> {
        at("2030-01-01T12:00:00Z")
    }

    fn calendar(repo: MockEventRepository) -> Calendar {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        Calendar::new(Arc::new(repo), Arc::new(clock))
    }

    fn lunch() -> EventDetails {
        details("Lunch", at("2030-01-02T12:00:00Z"), 60)
    }

    #[tokio::test]
    async fn create_assigns_an_id_and_stores_the_event() {
        let mut repo = MockEventRepository::new();
        repo.expect_insert()
            .withf(|e| {
                e.owner().as_str() == "ann"
                    && e.details() == &lunch()
                    && e.version() == Version::FIRST
                    && e.created_at() == now()
                    && e.id().as_uuid().get_version_num() == 7
            })
            .times(1)
            .returning(|_| Ok(()));
        let created = calendar(repo)
            .create(&user("ann"), None, lunch())
            .await
            .unwrap();
        assert_eq!(created.details(), &lunch());
        assert_eq!(created.updated_at(), now());
    }

    #[tokio::test]
    async fn create_keeps_a_client_chosen_id() {
        let id = EventId::generate();
        let mut repo = MockEventRepository::new();
        repo.expect_insert()
            .withf(move |e| e.id() == id)
            .times(1)
            .returning(|_| Ok(()));
        let created = calendar(repo)
            .create(&user("ann"), Some(id), lunch())
            .await
            .unwrap();
        assert_eq!(created.id(), id);
    }

    #[tokio::test]
    async fn retried_create_returns_the_stored_event() {
        let stored = event(&user("ann"), lunch(), at("2029-12-31T00:00:00Z"));
        let id = stored.id();
        let mut repo = MockEventRepository::new();
        repo.expect_insert()
            .times(1)
            .returning(move |_| Err(RepositoryError::AlreadyExists { id }));
        let found = stored.clone();
        repo.expect_get()
            .with(eq(user("ann")), eq(id))
            .times(1)
            .returning(move |_, _| Ok(Some(found.clone())));
        let created = calendar(repo)
            .create(&user("ann"), Some(id), lunch())
            .await
            .unwrap();
        assert_eq!(created, stored, "the first create's event, not a new one");
    }

    #[tokio::test]
    async fn retried_create_meeting_itself_as_the_conflict_returns_the_stored_event() {
        let stored = event(&user("ann"), lunch(), now());
        let id = stored.id();
        let mut repo = MockEventRepository::new();
        repo.expect_insert().times(1).returning(move |_| {
            Err(RepositoryError::SlotBusy {
                conflicting: Some(id),
            })
        });
        let found = stored.clone();
        repo.expect_get()
            .times(1)
            .returning(move |_, _| Ok(Some(found.clone())));
        let created = calendar(repo)
            .create(&user("ann"), Some(id), lunch())
            .await
            .unwrap();
        assert_eq!(created.id(), id);
    }

    #[tokio::test]
    async fn create_with_a_taken_id_and_other_content_is_already_exists() {
        let stored = event(
            &user("ann"),
            details("Other", at("2030-01-02T12:00:00Z"), 60),
            now(),
        );
        let id = stored.id();
        let mut repo = MockEventRepository::new();
        repo.expect_insert()
            .returning(move |_| Err(RepositoryError::AlreadyExists { id }));
        repo.expect_get()
            .returning(move |_, _| Ok(Some(stored.clone())));
        let error = calendar(repo)
            .create(&user("ann"), Some(id), lunch())
            .await
            .unwrap_err();
        assert!(matches!(error, CalendarError::AlreadyExists { id: taken } if taken == id));
    }

    #[tokio::test]
    async fn create_with_an_id_taken_by_another_user_is_already_exists() {
        let id = EventId::generate();
        let mut repo = MockEventRepository::new();
        repo.expect_insert()
            .returning(move |_| Err(RepositoryError::AlreadyExists { id }));
        repo.expect_get().returning(|_, _| Ok(None));
        let error = calendar(repo)
            .create(&user("ann"), Some(id), lunch())
            .await
            .unwrap_err();
        assert!(matches!(error, CalendarError::AlreadyExists { .. }));
    }

    #[tokio::test]
    async fn create_with_an_id_into_a_busy_slot_is_slot_busy() {
        let id = EventId::generate();
        let other = EventId::generate();
        let mut repo = MockEventRepository::new();
        repo.expect_insert().returning(move |_| {
            Err(RepositoryError::SlotBusy {
                conflicting: Some(other),
            })
        });
        repo.expect_get().returning(|_, _| Ok(None));
        let error = calendar(repo)
            .create(&user("ann"), Some(id), lunch())
            .await
            .unwrap_err();
        assert!(matches!(error, CalendarError::SlotBusy { conflicting: Some(c) } if c == other));
    }

    #[tokio::test]
    async fn create_into_a_busy_slot_names_the_conflict() {
        let other = EventId::generate();
        let mut repo = MockEventRepository::new();
        repo.expect_insert().returning(move |_| {
            Err(RepositoryError::SlotBusy {
                conflicting: Some(other),
            })
        });
        repo.expect_get().never();
        let error = calendar(repo)
            .create(&user("ann"), None, lunch())
            .await
            .unwrap_err();
        assert!(matches!(error, CalendarError::SlotBusy { conflicting: Some(c) } if c == other));
        assert!(error.to_string().contains(&other.to_string()));
    }

    #[tokio::test]
    async fn storage_failures_map_to_unavailable_and_internal() {
        let mut repo = MockEventRepository::new();
        repo.expect_insert()
            .returning(|_| Err(RepositoryError::Unavailable("down".into())));
        repo.expect_get()
            .returning(|_, _| Err(RepositoryError::Internal("corrupt row".into())));
        let calendar = calendar(repo);
        let error = calendar
            .create(&user("ann"), None, lunch())
            .await
            .unwrap_err();
        assert!(matches!(error, CalendarError::Unavailable(_)));
        let error = calendar
            .get(&user("ann"), EventId::generate())
            .await
            .unwrap_err();
        assert!(matches!(error, CalendarError::Internal(_)));
        assert_eq!(
            error.to_string(),
            "internal storage failure",
            "no internals in the message"
        );
    }

    #[tokio::test]
    async fn get_of_a_missing_or_foreign_event_is_not_found() {
        let id = EventId::generate();
        let mut repo = MockEventRepository::new();
        repo.expect_get()
            .with(eq(user("bob")), eq(id))
            .returning(|_, _| Ok(None));
        let error = calendar(repo).get(&user("bob"), id).await.unwrap_err();
        assert!(matches!(error, CalendarError::NotFound { id: missing } if missing == id));
    }

    #[tokio::test]
    async fn update_passes_the_expected_version_and_the_time() {
        let id = EventId::generate();
        let revised = event(&user("ann"), lunch(), now()).revised(lunch(), now());
        let mut repo = MockEventRepository::new();
        let returned = revised.clone();
        repo.expect_update()
            .withf(move |owner, updated, details, expected, at| {
                owner.as_str() == "ann"
                    && *updated == id
                    && details == &lunch()
                    && *expected == Some(Version::FIRST)
                    && *at == now()
            })
            .times(1)
            .returning(move |_, _, _, _, _| Ok(returned.clone()));
        let updated = calendar(repo)
            .update(&user("ann"), id, lunch(), Some(Version::FIRST))
            .await
            .unwrap();
        assert_eq!(updated, revised);
    }

    #[tokio::test]
    async fn update_refusals_keep_their_meaning() {
        let id = EventId::generate();
        let current = Version::FIRST.next();
        let mut repo = MockEventRepository::new();
        let mut answers = vec![
            RepositoryError::NotFound { id },
            RepositoryError::VersionMismatch {
                expected: Version::FIRST,
                current,
            },
            RepositoryError::SlotBusy { conflicting: None },
        ]
        .into_iter();
        repo.expect_update()
            .times(3)
            .returning(move |_, _, _, _, _| Err(answers.next().unwrap()));
        let calendar = calendar(repo);
        let ann = user("ann");
        let errors = [
            calendar.update(&ann, id, lunch(), None).await.unwrap_err(),
            calendar
                .update(&ann, id, lunch(), Some(Version::FIRST))
                .await
                .unwrap_err(),
            calendar.update(&ann, id, lunch(), None).await.unwrap_err(),
        ];
        assert!(matches!(errors[0], CalendarError::NotFound { .. }));
        assert!(matches!(
            errors[1],
            CalendarError::VersionMismatch { expected: Version::FIRST, current: c } if c == current
        ));
        assert!(matches!(
            errors[2],
            CalendarError::SlotBusy { conflicting: None }
        ));
    }

    #[tokio::test]
    async fn delete_is_scoped_by_owner() {
        let id = EventId::generate();
        let mut repo = MockEventRepository::new();
        repo.expect_delete()
            .with(eq(user("ann")), eq(id))
            .times(1)
            .returning(|_, _| Ok(()));
        repo.expect_delete()
            .with(eq(user("bob")), eq(id))
            .times(1)
            .returning(|_, id| Err(RepositoryError::NotFound { id }));
        let calendar = calendar(repo);
        calendar.delete(&user("ann"), id).await.unwrap();
        assert!(matches!(
            calendar.delete(&user("bob"), id).await,
            Err(CalendarError::NotFound { .. })
        ));
    }

    fn events_on_the_day(count: usize) -> Vec<Event> {
        let mut events: Vec<Event> = (0..count)
            .map(|i| {
                event(
                    &user("ann"),
                    details(
                        "E",
                        at("2030-01-02T08:00:00Z") + chrono::TimeDelta::hours(i as i64),
                        30,
                    ),
                    now(),
                )
            })
            .collect();
        events.sort_by_key(Event::sort_key);
        events
    }

    #[tokio::test]
    async fn list_asks_for_one_more_than_the_page_and_issues_a_token() {
        let day = Period::day("2030-01-02".parse().unwrap(), Tz::UTC).unwrap();
        let events = events_on_the_day(3);
        let mut repo = MockEventRepository::new();
        let returned = events.clone();
        repo.expect_list()
            .withf(move |owner, range, after, limit| {
                owner.as_str() == "ann" && *range == day.range() && after.is_none() && *limit == 3
            })
            .times(1)
            .returning(move |_, _, _, _| Ok(returned.clone()));
        let page = calendar(repo)
            .list(
                &user("ann"),
                &day,
                &PageRequest::first(PageSize::new(2).unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(page.events, events[..2].to_vec());
        let token = page.next_page_token.expect("a next page");
        assert_eq!(
            token.cursor_for(&day.range()),
            Ok(Cursor::after(&events[1])),
            "the token continues after the last event of the page"
        );
    }

    #[tokio::test]
    async fn list_continues_from_the_token_and_ends_without_one() {
        let day = Period::day("2030-01-02".parse().unwrap(), Tz::UTC).unwrap();
        let events = events_on_the_day(3);
        let cursor = Cursor::after(&events[1]);
        let mut repo = MockEventRepository::new();
        let last = vec![events[2].clone()];
        repo.expect_list()
            .withf(move |_, _, after, limit| *after == Some(cursor) && *limit == 3)
            .times(1)
            .returning(move |_, _, _, _| Ok(last.clone()));
        let request = PageRequest {
            size: PageSize::new(2).unwrap(),
            token: Some(PageToken::new(day.range(), cursor)),
        };
        let page = calendar(repo)
            .list(&user("ann"), &day, &request)
            .await
            .unwrap();
        assert_eq!(page.events, vec![events[2].clone()]);
        assert_eq!(page.next_page_token, None, "the last page has no token");
    }

    #[tokio::test]
    async fn a_token_from_another_list_is_refused_before_storage_is_asked() {
        let day = Period::day("2030-01-02".parse().unwrap(), Tz::UTC).unwrap();
        let other = TimeRange::new(
            day.range().start(),
            day.range().end() + chrono::TimeDelta::days(6),
        )
        .unwrap();
        let events = events_on_the_day(1);
        let mut repo = MockEventRepository::new();
        repo.expect_list().never();
        let request = PageRequest {
            size: PageSize::default(),
            token: Some(PageToken::new(other, Cursor::after(&events[0]))),
        };
        let error = calendar(repo)
            .list(&user("ann"), &day, &request)
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            CalendarError::InvalidPageToken(PageTokenError::OtherList)
        ));
    }

    #[tokio::test]
    async fn list_day_week_and_month_use_local_midnights() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let date: NaiveDate = "2030-03-31".parse().unwrap();
        let mut repo = MockEventRepository::new();
        // Clocks go forward in Berlin on 2030-03-31: that day has 23 hours.
        let expected = [
            (at("2030-03-30T23:00:00Z"), at("2030-03-31T22:00:00Z")),
            (at("2030-03-30T23:00:00Z"), at("2030-04-06T22:00:00Z")),
            // 31 March plus a month is 30 April, clamped.
            (at("2030-03-30T23:00:00Z"), at("2030-04-29T22:00:00Z")),
        ];
        for (start, end) in expected {
            repo.expect_list()
                .withf(move |_, range, _, _| range.start() == start && range.end() == end)
                .times(1)
                .returning(|_, _, _, _| Ok(Vec::new()));
        }
        let calendar = calendar(repo);
        let (ann, page) = (user("ann"), PageRequest::default());
        assert!(
            calendar
                .list_day(&ann, date, berlin, &page)
                .await
                .unwrap()
                .events
                .is_empty()
        );
        calendar.list_week(&ann, date, berlin, &page).await.unwrap();
        calendar
            .list_month(&ann, date, berlin, &page)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_period_outside_the_calendar_is_invalid() {
        let mut repo = MockEventRepository::new();
        repo.expect_list().never();
        let error = calendar(repo)
            .list_day(
                &user("ann"),
                "1800-01-01".parse().unwrap(),
                Tz::UTC,
                &PageRequest::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, CalendarError::InvalidPeriod(_)));
    }
}
