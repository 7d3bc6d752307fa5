//! `calendar.v1.CalendarService` over the [`Calendar`] use case: check the caller, convert the
//! request ([`crate::mapping`]), call the use case, convert the answer or the error
//! ([`crate::status`]), count what happened.

use calendar_core::{Calendar, CalendarError, Period, PeriodKind};
use metrics::counter;
use tonic::{Request, Response, Status};

use crate::auth::caller;
use crate::mapping::{self, ListRequest};
use crate::metric_names::{
    EVENTS_CREATED, EVENTS_DELETED, EVENTS_UPDATED, SLOT_CONFLICTS, STORAGE_FAILURES,
    VERSION_CONFLICTS,
};
use crate::proto::calendar::v1 as pb;
use crate::proto::calendar::v1::calendar_service_server::CalendarService;
use crate::status::from_calendar_error;

/// The implementation of `calendar.v1.CalendarService`. Serve it behind the `x-user-id`
/// interceptor ([`crate::middleware::GuardedCalendar`] does): without it every call is
/// UNAUTHENTICATED.
#[derive(Debug, Clone)]
pub struct CalendarApi {
    calendar: Calendar,
}

impl CalendarApi {
    /// The service over `calendar`.
    pub fn new(calendar: Calendar) -> Self {
        Self { calendar }
    }
}

/// Counts a failure among the domain counters and turns it into its status.
fn failed(error: CalendarError) -> Status {
    match &error {
        CalendarError::SlotBusy { .. } => counter!(SLOT_CONFLICTS).increment(1),
        CalendarError::VersionMismatch { .. } => counter!(VERSION_CONFLICTS).increment(1),
        CalendarError::Unavailable(_) => {
            counter!(STORAGE_FAILURES, "kind" => "unavailable").increment(1);
        }
        CalendarError::Internal(_) => counter!(STORAGE_FAILURES, "kind" => "internal").increment(1),
        _ => {}
    }
    from_calendar_error(error)
}

impl CalendarApi {
    /// One page of the list `request` asks for, over a period of `kind`.
    async fn list<T: ListRequest>(
        &self,
        request: &Request<T>,
        kind: PeriodKind,
    ) -> Result<(Vec<pb::Event>, String), Status> {
        let user = caller(request)?;
        let query = mapping::list_query_from_proto(request.get_ref())?;
        let period = Period::new(kind, query.date, query.zone)
            .map_err(|error| failed(CalendarError::InvalidPeriod(error)))?;
        let page = self
            .calendar
            .list(&user, &period, &query.page)
            .await
            .map_err(failed)?;
        Ok(mapping::page_to_proto(&page))
    }
}

#[tonic::async_trait]
impl CalendarService for CalendarApi {
    async fn create_event(
        &self,
        request: Request<pb::CreateEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let user = caller(&request)?;
        let create = mapping::create_event_from_proto(request.get_ref())?;
        let event = self
            .calendar
            .create(&user, create.id, create.details)
            .await
            .map_err(failed)?;
        counter!(EVENTS_CREATED).increment(1);
        Ok(Response::new(mapping::event_to_proto(&event)))
    }

    async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let user = caller(&request)?;
        let id = mapping::event_id_from_proto(&request.get_ref().id, "id")?;
        let event = self.calendar.get(&user, id).await.map_err(failed)?;
        Ok(Response::new(mapping::event_to_proto(&event)))
    }

    async fn update_event(
        &self,
        request: Request<pb::UpdateEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let user = caller(&request)?;
        let update = mapping::update_event_from_proto(request.get_ref())?;
        let event = self
            .calendar
            .update(&user, update.id, update.details, update.expected)
            .await
            .map_err(failed)?;
        counter!(EVENTS_UPDATED).increment(1);
        Ok(Response::new(mapping::event_to_proto(&event)))
    }

    async fn delete_event(
        &self,
        request: Request<pb::DeleteEventRequest>,
    ) -> Result<Response<()>, Status> {
        let user = caller(&request)?;
        let id = mapping::event_id_from_proto(&request.get_ref().id, "id")?;
        self.calendar.delete(&user, id).await.map_err(failed)?;
        counter!(EVENTS_DELETED).increment(1);
        Ok(Response::new(()))
    }

    async fn list_day_events(
        &self,
        request: Request<pb::ListDayEventsRequest>,
    ) -> Result<Response<pb::ListDayEventsResponse>, Status> {
        let (events, next_page_token) = self.list(&request, PeriodKind::Day).await?;
        Ok(Response::new(pb::ListDayEventsResponse {
            events,
            next_page_token,
        }))
    }

    async fn list_week_events(
        &self,
        request: Request<pb::ListWeekEventsRequest>,
    ) -> Result<Response<pb::ListWeekEventsResponse>, Status> {
        let (events, next_page_token) = self.list(&request, PeriodKind::Week).await?;
        Ok(Response::new(pb::ListWeekEventsResponse {
            events,
            next_page_token,
        }))
    }

    async fn list_month_events(
        &self,
        request: Request<pb::ListMonthEventsRequest>,
    ) -> Result<Response<pb::ListMonthEventsResponse>, Status> {
        let (events, next_page_token) = self.list(&request, PeriodKind::Month).await?;
        Ok(Response::new(pb::ListMonthEventsResponse {
            events,
            next_page_token,
        }))
    }
}
