//! Load shedding, message size and deadlines.

use std::time::{Duration, Instant};

use calendar_grpc::mapping::naive_to_date;
use calendar_grpc::proto::calendar::v1 as pb;
use calendar_grpc::server::ServerSettings;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{
    GatedRepository, TestServer, as_user, bare_client, create, event, settings, tomorrow_at,
    unknown_event, wait_for_health,
};

fn day() -> pb::ListDayEventsRequest {
    pb::ListDayEventsRequest {
        date: Some(naive_to_date(tomorrow_at(0).date_naive())),
        ..Default::default()
    }
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_are_shed_at_once() {
    let repository = GatedRepository::closed();
    let server = TestServer::start(
        repository.clone(),
        ServerSettings {
            concurrency_limit: 2,
            ..settings()
        },
    )
    .await;
    let channel = server.channel().await;
    let mut in_flight = Vec::new();
    for _ in 0..2 {
        let mut client = pb::calendar_service_client::CalendarServiceClient::new(channel.clone());
        in_flight.push(tokio::spawn(async move {
            client.list_day_events(as_user("ann", day())).await
        }));
    }
    repository.wait_for_entered(2).await;

    // A third request, on another connection too, is refused without waiting.
    let mut other = server.client().await;
    let started = Instant::now();
    let shed = other
        .list_day_events(as_user("bob", day()))
        .await
        .unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert!(shed.message().contains("limit of 2"), "{}", shed.message());
    assert!(started.elapsed() < Duration::from_secs(2));
    let get = other
        .get_event(as_user("bob", unknown_event()))
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::ResourceExhausted);

    // Health is not shed: probes keep working under load.
    wait_for_health(server.channel().await, "", ServingStatus::Serving).await;

    repository.open();
    for request in in_flight {
        request.await.unwrap().expect("admitted requests complete");
    }
    other
        .list_day_events(as_user("bob", day()))
        .await
        .expect("capacity is back once requests finish");
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_request_is_refused() {
    let server = TestServer::start(
        GatedRepository::ungated(),
        ServerSettings {
            max_request_bytes: 1_024,
            ..settings()
        },
    )
    .await;
    let mut client = server.client().await;
    let mut big = event("Big", tomorrow_at(9), 15);
    big.description = "x".repeat(4_000);
    let status = client
        .create_event(as_user("ann", create(big)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    client
        .create_event(as_user("ann", create(event("Small", tomorrow_at(9), 15))))
        .await
        .expect("a request under the limit passes");
    server.stop().await;
}

#[tokio::test]
async fn the_client_deadline_is_honoured_and_the_handler_dropped() {
    let repository = GatedRepository::closed();
    let server = TestServer::start(repository.clone(), settings()).await;
    let mut client = bare_client(server.addr).await;
    let mut request = as_user("ann", day());
    request.set_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let status = client.list_day_events(request).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(repository.abandoned(), 1, "the blocked read was cancelled");

    // Tonic's own client gives up at the deadline too (it reports CANCELLED, "Timeout
    // expired"); the server drops that handler as well.
    let mut tonic_client = server.client().await;
    let mut request = as_user("ann", day());
    request.set_timeout(Duration::from_millis(100));
    let status = tonic_client.list_day_events(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), async {
        while repository.abandoned() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the second blocked read was cancelled");
    server.stop().await;
}

#[tokio::test]
async fn the_server_request_timeout_caps_requests_without_a_deadline() {
    let repository = GatedRepository::closed();
    let server = TestServer::start(
        repository.clone(),
        ServerSettings {
            request_timeout: Some(Duration::from_millis(300)),
            ..settings()
        },
    )
    .await;
    let mut client = server.client().await;
    let started = Instant::now();
    let status = client
        .list_day_events(as_user("ann", day()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    server.stop().await;
}
