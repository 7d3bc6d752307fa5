//! Every error code the calendar service answers, with its details: the domain's on the
//! in-memory store and on PostgreSQL, storage failures on a mock, the caller check.

use std::sync::Arc;

use calendar_core::{EventRepository, MockEventRepository, RepositoryError};
use calendar_grpc::mapping::naive_to_date;
use calendar_grpc::proto::calendar::v1 as pb;
use calendar_grpc::proto::google::r#type::Date;
use calendar_grpc::status::{CONFLICTING_EVENT_ID, REASON_TIME_SLOT_BUSY, REASON_VERSION_MISMATCH};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};
use tonic_types::StatusExt as _;

use crate::support::{
    TestServer, as_user, create, event, settings, tomorrow_at, unknown_event, violated_fields,
};

on_every_store!(
    invalid_arguments_name_every_offending_field,
    missing_events_are_not_found_for_every_method,
    a_busy_slot_is_a_failed_precondition_naming_the_other_event,
    a_stale_version_is_aborted,
);

pub(crate) async fn invalid_arguments_name_every_offending_field(store: Arc<dyn EventRepository>) {
    let server = TestServer::start(store, settings()).await;
    let mut client = server.client().await;

    let mut broken = event("", tomorrow_at(9), 15);
    broken.duration = None;
    broken.overlap_policy = 12;
    let status = client
        .create_event(as_user("ann", create(broken)))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["event.title", "event.duration", "event.overlap_policy"]
    );
    assert!(status.message().contains("event.title: title is empty"));

    let status = client
        .get_event(as_user("ann", pb::GetEventRequest { id: "42".into() }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["id"]);

    let status = client
        .update_event(as_user("ann", pb::UpdateEventRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["event"]);

    let status = client
        .delete_event(as_user("ann", pb::DeleteEventRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["id"]);

    let status = client
        .list_day_events(as_user(
            "ann",
            pb::ListDayEventsRequest {
                date: Some(naive_to_date(tomorrow_at(0).date_naive())),
                time_zone: "Europe/Atlantis".into(),
                page_size: -5,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["time_zone", "page_size"]);

    let status = client
        .list_month_events(as_user(
            "ann",
            pb::ListMonthEventsRequest {
                date: Some(Date {
                    year: 1800,
                    month: 1,
                    day: 1,
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["date"],
        "outside the calendar's years"
    );
    server.stop().await;
}

pub(crate) async fn missing_events_are_not_found_for_every_method(store: Arc<dyn EventRepository>) {
    let server = TestServer::start(store, settings()).await;
    let mut client = server.client().await;
    let id = uuid::Uuid::now_v7().to_string();

    let get = client
        .get_event(as_user("ann", pb::GetEventRequest { id: id.clone() }))
        .await
        .unwrap_err();
    let mut replacement = event("Anything", tomorrow_at(9), 15);
    replacement.id = id.clone();
    let update = client
        .update_event(as_user(
            "ann",
            pb::UpdateEventRequest {
                event: Some(replacement),
                expected_version: None,
            },
        ))
        .await
        .unwrap_err();
    let delete = client
        .delete_event(as_user("ann", pb::DeleteEventRequest { id: id.clone() }))
        .await
        .unwrap_err();
    for status in [get, update, delete] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().contains(&id));
        let details = status.get_error_details();
        let resource = details.resource_info().unwrap();
        assert_eq!(resource.resource_type, "calendar.v1.Event");
        assert_eq!(resource.resource_name, id);
    }
    server.stop().await;
}

pub(crate) async fn a_busy_slot_is_a_failed_precondition_naming_the_other_event(
    store: Arc<dyn EventRepository>,
) {
    let server = TestServer::start(store, settings()).await;
    let mut client = server.client().await;
    let start = tomorrow_at(14);
    let first = client
        .create_event(as_user("ann", create(event("Planning", start, 60))))
        .await
        .unwrap()
        .into_inner();
    let overlapping = event("Lunch", start + chrono::TimeDelta::minutes(30), 60);
    let status = client
        .create_event(as_user("ann", create(overlapping.clone())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains(&first.id), "{}", status.message());
    let details = status.get_error_details();
    let info = details.error_info().unwrap();
    assert_eq!(info.reason, REASON_TIME_SLOT_BUSY);
    assert_eq!(info.metadata[CONFLICTING_EVENT_ID], first.id);
    assert_eq!(
        details.precondition_failure().unwrap().violations[0].subject,
        first.id
    );

    let mut allowed = overlapping;
    allowed.overlap_policy = pb::OverlapPolicy::Allow.into();
    client
        .create_event(as_user("ann", create(allowed)))
        .await
        .expect("an ALLOW event may overlap");
    server.stop().await;
}

pub(crate) async fn a_stale_version_is_aborted(store: Arc<dyn EventRepository>) {
    let server = TestServer::start(store, settings()).await;
    let mut client = server.client().await;
    let created = client
        .create_event(as_user("ann", create(event("Retro", tomorrow_at(16), 45))))
        .await
        .unwrap()
        .into_inner();
    let status = client
        .update_event(as_user(
            "ann",
            pb::UpdateEventRequest {
                event: Some(created),
                expected_version: Some(7),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let details = status.get_error_details();
    let info = details.error_info().unwrap();
    assert_eq!(info.reason, REASON_VERSION_MISMATCH);
    assert_eq!(info.metadata["expected_version"], "7");
    assert_eq!(info.metadata["current_version"], "1");
    server.stop().await;
}

#[tokio::test]
async fn storage_failures_are_unavailable_or_internal_without_internals() {
    let mut repository = MockEventRepository::new();
    repository.expect_check().returning(|| Ok(()));
    repository
        .expect_get()
        .returning(|_, _| Err(RepositoryError::Unavailable("connection refused".into())));
    repository.expect_list().returning(|_, _, _, _| {
        Err(RepositoryError::Internal(
            "column \"secret_column\" does not exist".into(),
        ))
    });
    let server = TestServer::start(Arc::new(repository), settings()).await;
    let mut client = server.client().await;

    let unavailable = client
        .get_event(as_user("ann", unknown_event()))
        .await
        .unwrap_err();
    assert_eq!(unavailable.code(), Code::Unavailable);
    assert!(!unavailable.message().contains("refused"));

    let internal = client
        .list_day_events(as_user(
            "ann",
            pb::ListDayEventsRequest {
                date: Some(naive_to_date(tomorrow_at(0).date_naive())),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(internal.code(), Code::Internal);
    assert_eq!(internal.message(), "internal error");
    assert!(internal.details().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn calls_without_a_valid_user_are_unauthenticated() {
    let server = TestServer::memory().await;
    let mut client = server.client().await;

    let missing = client
        .get_event(Request::new(unknown_event()))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(missing.message().contains("missing x-user-id"));

    let mut malformed = Request::new(unknown_event());
    malformed
        .metadata_mut()
        .insert("x-user-id", MetadataValue::from_static("ann smith"));
    let status = client.get_event(malformed).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("not a valid user id"));

    let mut not_ascii = Request::new(unknown_event());
    not_ascii.metadata_mut().insert(
        "x-user-id",
        MetadataValue::try_from("ann\u{e9}".as_bytes()).unwrap(),
    );
    let status = client.get_event(not_ascii).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("not visible ASCII"));

    let list = client
        .list_day_events(Request::new(pb::ListDayEventsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(
        list.code(),
        Code::Unauthenticated,
        "the caller is checked before the request"
    );
    server.stop().await;
}
