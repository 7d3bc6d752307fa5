//! Every RPC's happy path, on the in-memory store and on PostgreSQL.

use std::sync::Arc;

use calendar_core::EventRepository;
use calendar_grpc::mapping::{delta_to_duration, naive_to_date, timestamp_to_datetime};
use calendar_grpc::proto::calendar::v1 as pb;
use chrono::TimeDelta;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::support::{TestServer, as_user, create, event, settings, tomorrow_at};

on_every_store!(
    every_rpc_works_end_to_end,
    lists_are_paged_with_tokens_bound_to_their_list,
    a_create_with_a_client_id_is_idempotent,
    users_see_only_their_own_events,
);

pub(crate) async fn every_rpc_works_end_to_end(store: Arc<dyn EventRepository>) {
    let server = TestServer::start(store, settings()).await;
    let mut client = server.client().await;
    let start = tomorrow_at(9);

    let mut standup = event("Standup", start, 15);
    standup.description = "daily".into();
    standup.notify_before = Some(delta_to_duration(TimeDelta::minutes(10)));
    let created = client
        .create_event(as_user("ann", create(standup)))
        .await
        .unwrap()
        .into_inner();
    assert!(created.id.parse::<uuid::Uuid>().is_ok(), "{}", created.id);
    assert_eq!(created.title, "Standup");
    assert_eq!(created.description, "daily");
    assert_eq!(created.version, 1);
    assert_eq!(
        created.overlap_policy,
        i32::from(pb::OverlapPolicy::Reject),
        "unspecified means reject"
    );
    assert_eq!(created.create_time, created.update_time);
    assert_eq!(
        timestamp_to_datetime(created.start_time.as_ref().unwrap()),
        Ok(start)
    );

    let fetched = client
        .get_event(as_user(
            "ann",
            pb::GetEventRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, created);

    let mut moved = created.clone();
    moved.title = "Standup (moved)".into();
    moved.start_time = Some(calendar_grpc::mapping::datetime_to_timestamp(
        start + TimeDelta::hours(1),
    ));
    moved.notify_before = None;
    moved.overlap_policy = pb::OverlapPolicy::Allow.into();
    let updated = client
        .update_event(as_user(
            "ann",
            pb::UpdateEventRequest {
                event: Some(moved),
                expected_version: Some(1),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.id, created.id);
    assert_eq!(updated.version, 2);
    assert_eq!(updated.title, "Standup (moved)");
    assert_eq!(updated.notify_before, None);
    assert_eq!(updated.overlap_policy, i32::from(pb::OverlapPolicy::Allow));
    assert_eq!(updated.create_time, created.create_time);

    let date = Some(naive_to_date(start.date_naive()));
    let day = client
        .list_day_events(as_user(
            "ann",
            pb::ListDayEventsRequest {
                date,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(day.events, vec![updated.clone()]);
    assert_eq!(day.next_page_token, "");

    let week = client
        .list_week_events(as_user(
            "ann",
            pb::ListWeekEventsRequest {
                date,
                time_zone: "Europe/Berlin".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(week.events, vec![updated.clone()]);

    let month = client
        .list_month_events(as_user(
            "ann",
            pb::ListMonthEventsRequest {
                date,
                time_zone: "America/New_York".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(month.events, vec![updated]);

    client
        .delete_event(as_user(
            "ann",
            pb::DeleteEventRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .unwrap();
    let gone = client
        .get_event(as_user("ann", pb::GetEventRequest { id: created.id }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    server.stop().await;
}

pub(crate) async fn lists_are_paged_with_tokens_bound_to_their_list(
    store: Arc<dyn EventRepository>,
) {
    let server = TestServer::start(store, settings()).await;
    let mut client = server.client().await;
    let start = tomorrow_at(8);
    for hour in 0..3 {
        client
            .create_event(as_user(
                "ann",
                create(event(
                    &format!("slot {hour}"),
                    start + TimeDelta::hours(hour),
                    60,
                )),
            ))
            .await
            .unwrap();
    }
    let date = Some(naive_to_date(start.date_naive()));
    let page = |page_size, page_token: &str| {
        as_user(
            "ann",
            pb::ListDayEventsRequest {
                date,
                time_zone: String::new(),
                page_size,
                page_token: page_token.to_owned(),
            },
        )
    };
    let first = client
        .list_day_events(page(2, ""))
        .await
        .unwrap()
        .into_inner();
    let titles: Vec<&str> = first.events.iter().map(|e| e.title.as_str()).collect();
    assert_eq!(titles, ["slot 0", "slot 1"]);
    assert!(!first.next_page_token.is_empty());
    let second = client
        .list_day_events(page(2, &first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    let titles: Vec<&str> = second.events.iter().map(|e| e.title.as_str()).collect();
    assert_eq!(titles, ["slot 2"]);
    assert_eq!(second.next_page_token, "");

    let all = client
        .list_day_events(page(0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.events.len(), 3, "page size 0 is the default, 100");

    let other_list = client
        .list_week_events(as_user(
            "ann",
            pb::ListWeekEventsRequest {
                date,
                time_zone: String::new(),
                page_size: 2,
                page_token: first.next_page_token,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(crate::support::violated_fields(&other_list), ["page_token"]);
    server.stop().await;
}

pub(crate) async fn a_create_with_a_client_id_is_idempotent(store: Arc<dyn EventRepository>) {
    let server = TestServer::start(store, settings()).await;
    let mut client = server.client().await;
    let id = uuid::Uuid::new_v4().to_string();
    let request = |title: &str| {
        as_user(
            "ann",
            pb::CreateEventRequest {
                event: Some(event(title, tomorrow_at(10), 30)),
                event_id: id.clone(),
            },
        )
    };
    let first = client
        .create_event(request("Review"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, id);
    let retried = client
        .create_event(request("Review"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, first);

    let taken = client.create_event(request("Other")).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let details = taken.get_error_details();
    assert_eq!(details.resource_info().unwrap().resource_name, id);
    server.stop().await;
}

pub(crate) async fn users_see_only_their_own_events(store: Arc<dyn EventRepository>) {
    let server = TestServer::start(store, settings()).await;
    let mut client = server.client().await;
    let start = tomorrow_at(11);
    let ann = client
        .create_event(as_user("ann", create(event("Private", start, 30))))
        .await
        .unwrap()
        .into_inner();
    let stolen = client
        .get_event(as_user("bob", pb::GetEventRequest { id: ann.id }))
        .await
        .unwrap_err();
    assert_eq!(stolen.code(), Code::NotFound);
    let bob_day = client
        .list_day_events(as_user(
            "bob",
            pb::ListDayEventsRequest {
                date: Some(naive_to_date(start.date_naive())),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(bob_day.events.is_empty());
    // Bob's calendar is his own: the same slot is free for him.
    client
        .create_event(as_user("bob", create(event("Mine", start, 30))))
        .await
        .unwrap();
    server.stop().await;
}
