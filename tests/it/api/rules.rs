//! What the API refuses: a busy time slot, invalid input, another user's event; each refusal
//! leaves the stored rows exactly as they were.

use calendar_grpc::proto::calendar::v1 as pb;
use chrono::TimeDelta;
use tonic::{Code, Status};
use uuid::Uuid;

use super::{Api, as_user, create_request, date, days_ahead, event, refused};

#[tokio::test]
async fn an_overlapping_event_is_refused_naming_the_event_in_the_way() {
    let mut api = Api::start().await;
    let ann = api.user();
    let nine = days_ahead(50) + TimeDelta::hours(9);
    let planning = api.create(&ann, event("Planning", nine, 60)).await;
    let lunch = api
        .create(&ann, event("Lunch", nine + TimeDelta::hours(3), 60))
        .await;
    let before = api.stored(&ann).await;

    let standup = event("Standup", nine + TimeDelta::minutes(30), 30);
    let status = refused(
        api.client
            .create_event(as_user(&ann, create_request(standup)))
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains(&planning.id), "{status:?}");
    assert_eq!(api.stored(&ann).await, before);

    // Moving an event into the slot is refused the same way.
    let mut earlier_lunch = event("Lunch", nine + TimeDelta::minutes(15), 60);
    earlier_lunch.id = lunch.id.clone();
    let update = pb::UpdateEventRequest {
        event: Some(earlier_lunch),
        expected_version: None,
    };
    let status = refused(
        api.client.update_event(as_user(&ann, update)).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains(&planning.id), "{status:?}");
    assert_eq!(api.stored(&ann).await, before);

    // Events are half-open: one starting as another ends does not overlap it. An event that
    // allows overlaps may share the slot, and so may another user's.
    api.create(&ann, event("Retro", nine + TimeDelta::hours(1), 30))
        .await;
    let mut tentative = event("Maybe", nine + TimeDelta::minutes(30), 30);
    tentative.overlap_policy = pb::OverlapPolicy::Allow.into();
    api.create(&ann, tentative).await;
    let bob = api.user();
    api.create(&bob, event("Planning", nine, 60)).await;
    assert_eq!(api.stored(&ann).await.len(), before.len() + 2);
    assert_eq!(api.stored(&bob).await.len(), 1);
    api.finish().await;
}

/// Asserts that `status` is INVALID_ARGUMENT naming `field` (`invalid request: <field>: ...`).
#[track_caller]
fn names_field(status: &Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(&format!(" {field}: ")),
        "the message does not name {field}: {status:?}"
    );
}

#[tokio::test]
async fn invalid_input_is_refused_naming_the_field_and_stores_nothing() {
    let mut api = Api::start().await;
    let ann = api.user();
    let start = days_ahead(60) + TimeDelta::hours(10);
    let kept = api.create(&ann, event("Kept", start, 30)).await;
    let before = api.stored(&ann).await;
    let later = start + TimeDelta::hours(2);

    let creates = [
        ("event.title", event(" \t ", later, 30), String::new()),
        (
            "event.start_time",
            pb::Event {
                start_time: None,
                ..event("No start", later, 30)
            },
            String::new(),
        ),
        ("event.duration", event("Instant", later, 0), String::new()),
        (
            "event_id",
            event("Bad id", later, 30),
            "not-a-uuid".to_owned(),
        ),
    ];
    for (field, event, event_id) in creates {
        let request = pb::CreateEventRequest {
            event: Some(event),
            event_id,
        };
        let result = api.client.create_event(as_user(&ann, request)).await;
        names_field(&refused(result, Code::InvalidArgument), field);
    }

    let mut untitled = event("", start, 30);
    untitled.id = kept.id.clone();
    let update = pb::UpdateEventRequest {
        event: Some(untitled),
        expected_version: None,
    };
    let result = api.client.update_event(as_user(&ann, update)).await;
    names_field(&refused(result, Code::InvalidArgument), "event.title");

    let get = pb::GetEventRequest {
        id: "42".to_owned(),
    };
    let result = api.client.get_event(as_user(&ann, get)).await;
    names_field(&refused(result, Code::InvalidArgument), "id");
    let delete = pb::DeleteEventRequest { id: String::new() };
    let result = api.client.delete_event(as_user(&ann, delete)).await;
    names_field(&refused(result, Code::InvalidArgument), "id");

    let day = |time_zone: &str, page_size| pb::ListDayEventsRequest {
        date: date(start.date_naive()),
        time_zone: time_zone.to_owned(),
        page_size,
        page_token: String::new(),
    };
    let result = api
        .client
        .list_day_events(as_user(&ann, day("Mars/Olympus_Mons", 10)))
        .await;
    names_field(&refused(result, Code::InvalidArgument), "time_zone");
    let result = api
        .client
        .list_day_events(as_user(&ann, day("UTC", -1)))
        .await;
    names_field(&refused(result, Code::InvalidArgument), "page_size");

    assert_eq!(api.stored(&ann).await, before);
    api.finish().await;
}

#[tokio::test]
async fn another_users_event_is_not_found_and_stays_as_it_was() {
    let mut api = Api::start().await;
    let ann = api.user();
    let bob = api.user();
    let start = days_ahead(70) + TimeDelta::hours(14);
    let private = api
        .create(&ann, event("Ann's appointment", start, 60))
        .await;
    let before = api.stored(&ann).await;
    let get = |id: &str| pb::GetEventRequest { id: id.to_owned() };

    let status = refused(
        api.client.get_event(as_user(&bob, get(&private.id))).await,
        Code::NotFound,
    );
    // Indistinguishable from an event that does not exist.
    let nobodys = Uuid::new_v4().to_string();
    let missing = refused(
        api.client.get_event(as_user(&bob, get(&nobodys))).await,
        Code::NotFound,
    );
    assert_eq!(
        status.message().replace(&private.id, "<id>"),
        missing.message().replace(&nobodys, "<id>")
    );

    let mut takeover = event("Bob's now", start, 60);
    takeover.id = private.id.clone();
    let update = pb::UpdateEventRequest {
        event: Some(takeover),
        expected_version: None,
    };
    refused(
        api.client.update_event(as_user(&bob, update)).await,
        Code::NotFound,
    );
    let delete = pb::DeleteEventRequest {
        id: private.id.clone(),
    };
    refused(
        api.client.delete_event(as_user(&bob, delete)).await,
        Code::NotFound,
    );
    let day = pb::ListDayEventsRequest {
        date: date(start.date_naive()),
        ..pb::ListDayEventsRequest::default()
    };
    let listed = api
        .client
        .list_day_events(as_user(&bob, day.clone()))
        .await
        .expect("ListDayEvents")
        .into_inner();
    assert_eq!(listed.events, []);

    assert_eq!(api.stored(&ann).await, before);
    assert_eq!(api.stored(&bob).await, []);
    // The owner still has it, unchanged.
    let read = api
        .client
        .get_event(as_user(&ann, get(&private.id)))
        .await
        .expect("GetEvent")
        .into_inner();
    assert_eq!(read, private);
    let listed = api
        .client
        .list_day_events(as_user(&ann, day))
        .await
        .expect("ListDayEvents")
        .into_inner();
    assert_eq!(listed.events, [private]);
    api.finish().await;
}
