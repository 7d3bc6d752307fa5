//! What the service promises about any bytes a client sends as a calendar request, as one
//! check that the property tests (`tests/bad_input.rs`) and the fuzz target (`fuzz/`) share.
//!
//! A request body either does not decode as protobuf (tonic answers INTERNAL, as the gRPC
//! status code guide asks for unparseable messages), or it decodes and its fields are either
//! accepted or refused with INVALID_ARGUMENT whose `google.rpc.BadRequest` names request fields
//! from [`REQUEST_FIELDS`], each with a description. Nothing panics; an accepted event reads back
//! the same through the service's own encoding.

use tonic::Code;
use tonic_types::StatusExt as _;

use crate::mapping::{self, InvalidArgument, ListRequest};
use crate::proto::calendar::v1 as pb;

/// Every field path a refusal may name.
pub const REQUEST_FIELDS: &[&str] = &[
    "id",
    "event",
    "event_id",
    "event.id",
    "event.title",
    "event.description",
    "event.start_time",
    "event.duration",
    "event.notify_before",
    "event.overlap_policy",
    "expected_version",
    "date",
    "time_zone",
    "page_size",
    "page_token",
];

/// The RPCs of `calendar.v1.CalendarService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// `CreateEvent`.
    CreateEvent,
    /// `GetEvent`.
    GetEvent,
    /// `UpdateEvent`.
    UpdateEvent,
    /// `DeleteEvent`.
    DeleteEvent,
    /// `ListDayEvents`.
    ListDayEvents,
    /// `ListWeekEvents`.
    ListWeekEvents,
    /// `ListMonthEvents`.
    ListMonthEvents,
}

impl Rpc {
    /// Every RPC.
    pub const ALL: [Rpc; 7] = [
        Rpc::CreateEvent,
        Rpc::GetEvent,
        Rpc::UpdateEvent,
        Rpc::DeleteEvent,
        Rpc::ListDayEvents,
        Rpc::ListWeekEvents,
        Rpc::ListMonthEvents,
    ];
}

/// What became of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not protobuf of the request's type.
    Undecodable,
    /// Every field valid.
    Accepted,
    /// Refused, naming these fields.
    Refused(Vec<String>),
}

/// Decodes `body` as `rpc`'s request and validates it as the service does; `Err` describes a
/// broken promise (see the module documentation).
pub fn check(rpc: Rpc, body: &[u8]) -> Result<Outcome, String> {
    let validated = match rpc {
        Rpc::CreateEvent => decode::<pb::CreateEventRequest>(body).map(|request| {
            mapping::create_event_from_proto(&request).and_then(|create| {
                round_trip(&request.event, &create.details)?;
                Ok(())
            })
        }),
        Rpc::UpdateEvent => decode::<pb::UpdateEventRequest>(body).map(|request| {
            mapping::update_event_from_proto(&request).and_then(|update| {
                round_trip(&request.event, &update.details)?;
                Ok(())
            })
        }),
        Rpc::GetEvent => decode::<pb::GetEventRequest>(body)
            .map(|request| mapping::event_id_from_proto(&request.id, "id").map(drop)),
        Rpc::DeleteEvent => decode::<pb::DeleteEventRequest>(body)
            .map(|request| mapping::event_id_from_proto(&request.id, "id").map(drop)),
        Rpc::ListDayEvents => decode::<pb::ListDayEventsRequest>(body).map(list),
        Rpc::ListWeekEvents => decode::<pb::ListWeekEventsRequest>(body).map(list),
        Rpc::ListMonthEvents => decode::<pb::ListMonthEventsRequest>(body).map(list),
    };
    match validated {
        None => Ok(Outcome::Undecodable),
        Some(Ok(())) => Ok(Outcome::Accepted),
        Some(Err(refusal)) => refused(refusal).map(Outcome::Refused),
    }
}

fn decode<M: prost::Message + Default>(body: &[u8]) -> Option<M> {
    M::decode(body).ok()
}

fn list(request: impl ListRequest) -> Result<(), InvalidArgument> {
    mapping::list_query_from_proto(&request).map(drop)
}

/// An accepted event must read back as it was accepted: what the service stores and returns
/// says the same as what the client sent.
fn round_trip(
    sent: &Option<pb::Event>,
    accepted: &calendar_core::EventDetails,
) -> Result<(), InvalidArgument> {
    let Some(sent) = sent else {
        return Err(InvalidArgument::field("event", "accepted without an event"));
    };
    let stored = calendar_core::Event::new(
        calendar_core::EventId::generate(),
        calendar_core::UserId::new("round-trip").map_err(|e| InvalidArgument::field("event", e))?,
        accepted.clone(),
        chrono::Utc::now(),
    );
    let returned = mapping::event_to_proto(&stored);
    let again = mapping::create_event_from_proto(&pb::CreateEventRequest {
        event: Some(pb::Event {
            id: String::new(),
            ..returned
        }),
        event_id: String::new(),
    })?;
    if again.details != *accepted || sent.title.trim() != accepted.title.as_str() {
        return Err(InvalidArgument::field(
            "event",
            format!(
                "does not read back as accepted: {:?} became {:?}",
                accepted, again.details
            ),
        ));
    }
    Ok(())
}

/// The fields a refusal names, if it keeps the promise.
fn refused(refusal: InvalidArgument) -> Result<Vec<String>, String> {
    if refusal.violations.is_empty() {
        return Err("a refusal without a field violation".to_owned());
    }
    for violation in &refusal.violations {
        if !REQUEST_FIELDS.contains(&violation.field.as_str()) {
            return Err(format!(
                "a violation names an unknown field {:?}",
                violation.field
            ));
        }
        if violation.description.trim().is_empty() {
            return Err(format!(
                "the violation of {} has no description",
                violation.field
            ));
        }
    }
    let fields: Vec<String> = refusal.violations.iter().map(|v| v.field.clone()).collect();
    let status = tonic::Status::from(refusal);
    if status.code() != Code::InvalidArgument {
        return Err(format!("a refusal became {:?}", status.code()));
    }
    let named: Vec<String> = status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    if named != fields {
        return Err(format!(
            "BadRequest names {named:?}, the refusal {fields:?}"
        ));
    }
    Ok(fields)
}

/// `message` encoded, for building request bodies.
pub fn encode(message: &impl prost::Message) -> Vec<u8> {
    message.encode_to_vec()
}
