//! The gRPC status of every failure, with `google.rpc` error details a client can act on.
//!
//! | failure | code | details |
//! |---|---|---|
//! | [`InvalidArgument`], bad page token or period | INVALID_ARGUMENT | `BadRequest`, one field violation per field |
//! | [`CalendarError::NotFound`] | NOT_FOUND | `ResourceInfo` naming the event |
//! | [`CalendarError::AlreadyExists`] | ALREADY_EXISTS | `ResourceInfo` naming the event |
//! | [`CalendarError::SlotBusy`] | FAILED_PRECONDITION | `ErrorInfo` `TIME_SLOT_BUSY` with `conflicting_event_id`, `PreconditionFailure` |
//! | [`CalendarError::VersionMismatch`] | ABORTED | `ErrorInfo` `VERSION_MISMATCH` with both versions |
//! | [`CalendarError::Unavailable`] | UNAVAILABLE | none; the cause is logged |
//! | [`CalendarError::Internal`] | INTERNAL | none; the cause is logged, never sent |

use std::collections::HashMap;

use calendar_core::CalendarError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};
use tracing::{error, warn};

use crate::mapping::InvalidArgument;

/// The `domain` of the `google.rpc.ErrorInfo` details this service sends.
pub const ERROR_DOMAIN: &str = "calendar.v1";

/// The `resource_type` of the `google.rpc.ResourceInfo` details naming an event.
pub const EVENT_RESOURCE_TYPE: &str = "calendar.v1.Event";

/// `ErrorInfo.reason` of a busy time slot.
pub const REASON_TIME_SLOT_BUSY: &str = "TIME_SLOT_BUSY";

/// `ErrorInfo.reason` of a version mismatch.
pub const REASON_VERSION_MISMATCH: &str = "VERSION_MISMATCH";

/// `ErrorInfo.metadata` key naming the event in the way of a busy slot.
pub const CONFLICTING_EVENT_ID: &str = "conflicting_event_id";

impl From<InvalidArgument> for Status {
    fn from(error: InvalidArgument) -> Self {
        let violations: Vec<tonic_types::FieldViolation> = error
            .violations
            .iter()
            .map(|v| tonic_types::FieldViolation::new(&v.field, &v.description))
            .collect();
        Status::with_error_details(
            Code::InvalidArgument,
            format!("invalid request: {error}"),
            ErrorDetails::with_bad_request(violations),
        )
    }
}

/// The status of a failed calendar operation. Storage failures are logged here with their
/// cause; the status carries none of it.
pub fn from_calendar_error(error: CalendarError) -> Status {
    let message = error.to_string();
    match error {
        CalendarError::NotFound { id } => Status::with_error_details(
            Code::NotFound,
            message,
            ErrorDetails::with_resource_info(
                EVENT_RESOURCE_TYPE,
                id.to_string(),
                "",
                "the caller has no event with this id",
            ),
        ),
        CalendarError::AlreadyExists { id } => Status::with_error_details(
            Code::AlreadyExists,
            message,
            ErrorDetails::with_resource_info(
                EVENT_RESOURCE_TYPE,
                id.to_string(),
                "",
                "the id is taken by an event with other content",
            ),
        ),
        CalendarError::SlotBusy { conflicting } => {
            let subject = conflicting.map(|id| id.to_string()).unwrap_or_default();
            let metadata: HashMap<String, String> = conflicting
                .map(|id| (CONFLICTING_EVENT_ID.to_owned(), id.to_string()))
                .into_iter()
                .collect();
            let mut details =
                ErrorDetails::with_error_info(REASON_TIME_SLOT_BUSY, ERROR_DOMAIN, metadata);
            details.add_precondition_failure_violation(
                REASON_TIME_SLOT_BUSY,
                subject,
                "the event overlaps another event that blocks its time slot",
            );
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
        CalendarError::VersionMismatch { expected, current } => Status::with_error_details(
            Code::Aborted,
            format!("{message}: read the event again and retry"),
            ErrorDetails::with_error_info(
                REASON_VERSION_MISMATCH,
                ERROR_DOMAIN,
                HashMap::from([
                    ("expected_version".to_owned(), expected.to_string()),
                    ("current_version".to_owned(), current.to_string()),
                ]),
            ),
        ),
        CalendarError::InvalidPageToken(error) => {
            InvalidArgument::field("page_token", error).into()
        }
        CalendarError::InvalidPeriod(error) => InvalidArgument::field("date", error).into(),
        CalendarError::Unavailable(source) => {
            warn!(error = %source, cause = ?source.source().map(ToString::to_string), "storage unavailable");
            Status::unavailable("storage is unavailable for now: retry with backoff")
        }
        CalendarError::Internal(source) => {
            error!(error = %source, cause = ?source.source().map(ToString::to_string), "internal storage failure");
            Status::internal("internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use calendar_core::{EventId, PageTokenError, Version};

    use super::*;

    #[test]
    fn invalid_arguments_carry_one_violation_per_field() {
        let mut error = InvalidArgument::field("event.title", "title is empty");
        error
            .violations
            .extend(InvalidArgument::field("page_size", "-1 is negative").violations);
        let status = Status::from(error);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid request: event.title: title is empty; page_size: -1 is negative"
        );
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["event.title", "page_size"]);
        assert_eq!(violations[0].description, "title is empty");
    }

    #[test]
    fn missing_and_taken_events_name_the_resource() {
        let id = EventId::generate();
        for (error, code) in [
            (CalendarError::NotFound { id }, Code::NotFound),
            (CalendarError::AlreadyExists { id }, Code::AlreadyExists),
        ] {
            let status = from_calendar_error(error);
            assert_eq!(status.code(), code);
            assert!(status.message().contains(&id.to_string()));
            let details = status.get_error_details();
            let resource = details.resource_info().unwrap();
            assert_eq!(resource.resource_type, EVENT_RESOURCE_TYPE);
            assert_eq!(resource.resource_name, id.to_string());
        }
    }

    #[test]
    fn a_busy_slot_names_the_conflicting_event() {
        let other = EventId::generate();
        let status = from_calendar_error(CalendarError::SlotBusy {
            conflicting: Some(other),
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains(&other.to_string()));
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, REASON_TIME_SLOT_BUSY);
        assert_eq!(info.metadata[CONFLICTING_EVENT_ID], other.to_string());
        let violation = &details.precondition_failure().unwrap().violations[0];
        assert_eq!(violation.subject, other.to_string());

        let unknown = from_calendar_error(CalendarError::SlotBusy { conflicting: None });
        assert_eq!(unknown.code(), Code::FailedPrecondition);
        let details = unknown.get_error_details();
        assert!(details.error_info().unwrap().metadata.is_empty());
    }

    #[test]
    fn a_version_mismatch_is_aborted_with_both_versions() {
        let status = from_calendar_error(CalendarError::VersionMismatch {
            expected: Version::new(2).unwrap(),
            current: Version::new(3).unwrap(),
        });
        assert_eq!(status.code(), Code::Aborted);
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, REASON_VERSION_MISMATCH);
        assert_eq!(info.metadata["expected_version"], "2");
        assert_eq!(info.metadata["current_version"], "3");
    }

    #[test]
    fn list_errors_name_their_field() {
        let token = from_calendar_error(CalendarError::InvalidPageToken(PageTokenError::OtherList));
        assert_eq!(token.code(), Code::InvalidArgument);
        let details = token.get_error_details();
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "page_token"
        );

        let period = calendar_core::Period::day(
            chrono::NaiveDate::from_ymd_opt(1800, 1, 1).unwrap(),
            calendar_core::Tz::UTC,
        )
        .unwrap_err();
        let status = from_calendar_error(CalendarError::InvalidPeriod(period));
        let details = status.get_error_details();
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "date"
        );
    }

    #[test]
    fn storage_failures_do_not_leak_their_cause() {
        let unavailable =
            from_calendar_error(CalendarError::Unavailable("connection refused".into()));
        assert_eq!(unavailable.code(), Code::Unavailable);
        assert!(!unavailable.message().contains("refused"));
        let internal = from_calendar_error(CalendarError::Internal(
            "duplicate key value violates constraint events_pkey".into(),
        ));
        assert_eq!(internal.code(), Code::Internal);
        assert_eq!(internal.message(), "internal error");
        assert!(internal.details().is_empty());
    }
}
