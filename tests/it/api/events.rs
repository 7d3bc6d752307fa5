//! One event's life through the API, and the idempotent create with an id the client chose,
//! each step checked against its `events` row.

use calendar_grpc::proto::calendar::v1 as pb;
use chrono::TimeDelta;
use tonic::Code;
use uuid::Uuid;

use super::{Api, Stored, as_user, days_ahead, event, refused, start_of};

#[tokio::test]
async fn an_event_is_created_read_replaced_and_deleted() {
    let mut api = Api::start().await;
    let ann = api.user();
    let start = days_ahead(30) + TimeDelta::hours(9);

    let mut input = event("Design review", start, 45);
    input.description = "Room 4".to_owned();
    let created = api.create(&ann, input).await;
    assert_eq!(created.title, "Design review");
    assert_eq!(start_of(&created), start);
    assert_eq!(created.version, 1);
    let id: Uuid = created.id.parse().expect("the server assigns a UUID");
    let mut row = Stored {
        id,
        user_id: ann.clone(),
        title: "Design review".to_owned(),
        description: Some("Room 4".to_owned()),
        start_at: start,
        end_at: start + TimeDelta::minutes(45),
        overlap_policy: "reject".to_owned(),
        version: 1,
    };
    assert_eq!(api.stored_event(&created.id).await, Some(row.clone()));

    let read = api
        .client
        .get_event(as_user(
            &ann,
            pb::GetEventRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .expect("GetEvent")
        .into_inner();
    assert_eq!(read, created);

    // A full replace: the description left unset is cleared.
    let moved = start + TimeDelta::hours(2);
    let mut replacement = event("Design review, moved", moved, 60);
    replacement.id = created.id.clone();
    let update = pb::UpdateEventRequest {
        event: Some(replacement),
        expected_version: Some(1),
    };
    let updated = api
        .client
        .update_event(as_user(&ann, update.clone()))
        .await
        .expect("UpdateEvent")
        .into_inner();
    assert_eq!(updated.version, 2);
    assert_eq!(start_of(&updated), moved);
    assert_eq!(updated.description, "");
    row = Stored {
        title: "Design review, moved".to_owned(),
        description: None,
        start_at: moved,
        end_at: moved + TimeDelta::hours(1),
        version: 2,
        ..row
    };
    assert_eq!(api.stored(&ann).await, [row.clone()]);

    // The same update again expects version 1, which is gone: refused, nothing written.
    let stale = refused(
        api.client.update_event(as_user(&ann, update)).await,
        Code::Aborted,
    );
    assert!(stale.message().contains("version"), "{stale:?}");
    assert_eq!(api.stored(&ann).await, [row]);

    let delete = || pb::DeleteEventRequest {
        id: created.id.clone(),
    };
    api.client
        .delete_event(as_user(&ann, delete()))
        .await
        .expect("DeleteEvent");
    assert_eq!(api.stored_event(&created.id).await, None);
    refused(
        api.client
            .get_event(as_user(
                &ann,
                pb::GetEventRequest {
                    id: created.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
    );
    refused(
        api.client.delete_event(as_user(&ann, delete())).await,
        Code::NotFound,
    );
    api.finish().await;
}

#[tokio::test]
async fn a_create_retried_with_the_clients_id_is_idempotent() {
    let mut api = Api::start().await;
    let ann = api.user();
    let bob = api.user();
    let start = days_ahead(31) + TimeDelta::hours(15);
    let id = Uuid::new_v4();
    let request = pb::CreateEventRequest {
        event: Some(event("Dentist", start, 30)),
        event_id: id.to_string(),
    };

    let first = api
        .client
        .create_event(as_user(&ann, request.clone()))
        .await
        .expect("CreateEvent")
        .into_inner();
    assert_eq!(first.id, id.to_string());
    // The retry (a lost answer, a timeout) returns the stored event and writes nothing.
    let retried = api
        .client
        .create_event(as_user(&ann, request.clone()))
        .await
        .expect("the retried CreateEvent")
        .into_inner();
    assert_eq!(retried, first);
    let stored = api.stored(&ann).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!((stored[0].id, stored[0].version), (id, 1));

    // Other details under the same id are another event: refused, the first one kept.
    let conflicting = pb::CreateEventRequest {
        event: Some(event("Dentist, later", start + TimeDelta::hours(1), 30)),
        ..request.clone()
    };
    let status = refused(
        api.client.create_event(as_user(&ann, conflicting)).await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains(&id.to_string()), "{status:?}");
    assert_eq!(api.stored(&ann).await, stored);

    // Nor can another user take the id: the event stays the first user's.
    refused(
        api.client.create_event(as_user(&bob, request)).await,
        Code::AlreadyExists,
    );
    assert_eq!(api.stored(&ann).await, stored);
    assert_eq!(api.stored(&bob).await, []);
    api.finish().await;
}
