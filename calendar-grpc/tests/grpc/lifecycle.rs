//! Health, reflection and shutdown.

use std::time::Duration;

use calendar_grpc::mapping::naive_to_date;
use calendar_grpc::proto::calendar::v1 as pb;
use calendar_grpc::server::ServerSettings;
use futures::StreamExt as _;
use prost::Message as _;
use tonic::Request;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1 as reflection;
use tonic_reflection::pb::v1alpha as reflection_alpha;

use crate::support::{
    GatedRepository, TestServer, as_user, settings, tomorrow_at, wait_for_health,
};

const CALENDAR: &str = "calendar.v1.CalendarService";

#[tokio::test]
async fn health_follows_the_storage_without_a_user() {
    let repository = GatedRepository::ungated();
    let server = TestServer::start(repository.clone(), settings()).await;
    for service in ["", CALENDAR] {
        wait_for_health(server.channel().await, service, ServingStatus::Serving).await;
    }
    repository.set_down(true);
    for service in ["", CALENDAR] {
        wait_for_health(server.channel().await, service, ServingStatus::NotServing).await;
    }
    repository.set_down(false);
    wait_for_health(server.channel().await, CALENDAR, ServingStatus::Serving).await;
    server.stop().await;
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_describe_the_services_without_a_user() {
    let server = TestServer::memory().await;

    let mut client =
        reflection::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let requests = futures::stream::iter([
        reflection::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                reflection::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        },
        reflection::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                reflection::server_reflection_request::MessageRequest::FileContainingSymbol(
                    CALENDAR.to_owned(),
                ),
            ),
        },
    ]);
    let mut responses = client
        .server_reflection_info(Request::new(requests))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(listed)) = responses.next().await else {
        panic!("no list of services")
    };
    let Some(reflection::server_reflection_response::MessageResponse::ListServicesResponse(listed)) =
        listed.message_response
    else {
        panic!("not a list of services")
    };
    let names: Vec<String> = listed.service.into_iter().map(|s| s.name).collect();
    for expected in [
        CALENDAR,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    let Some(Ok(file)) = responses.next().await else {
        panic!("no file")
    };
    let Some(reflection::server_reflection_response::MessageResponse::FileDescriptorResponse(
        files,
    )) = file.message_response
    else {
        panic!("not a file")
    };
    let descriptors: Vec<prost_types::FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .collect();
    let calendar = descriptors
        .iter()
        .find(|file| file.name() == "calendar/v1/calendar.proto")
        .expect("the calendar's file");
    assert_eq!(calendar.service[0].method.len(), 7);
    let documented = calendar
        .source_code_info
        .as_ref()
        .is_some_and(|info| info.location.iter().any(|l| l.leading_comments.is_some()));
    assert!(documented, "the descriptors carry the documentation");

    let mut alpha = reflection_alpha::server_reflection_client::ServerReflectionClient::new(
        server.channel().await,
    );
    let requests = futures::stream::iter([reflection_alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            reflection_alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    }]);
    let mut responses = alpha
        .server_reflection_info(Request::new(requests))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(listed)) = responses.next().await else {
        panic!("no v1alpha answer")
    };
    assert!(matches!(
        listed.message_response,
        Some(reflection_alpha::server_reflection_response::MessageResponse::ListServicesResponse(ref list))
            if list.service.iter().any(|s| s.name == CALENDAR)
    ));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let repository = GatedRepository::closed();
    let server = TestServer::start(repository.clone(), settings()).await;
    let mut client = server.client().await;
    let in_flight = tokio::spawn(async move {
        client
            .list_day_events(as_user(
                "ann",
                pb::ListDayEventsRequest {
                    date: Some(naive_to_date(tomorrow_at(0).date_naive())),
                    ..Default::default()
                },
            ))
            .await
    });
    repository.wait_for_entered(1).await;
    let release = repository.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        release.open();
    });
    let took = server.stop().await;
    in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert!(
        took < settings().drain_timeout,
        "the server stopped when its connections finished, after {took:?}"
    );
    assert_eq!(repository.abandoned(), 0);
}

#[tokio::test]
async fn shutdown_reports_not_serving_and_bounds_the_drain() {
    let drain_timeout = Duration::from_millis(500);
    let server = TestServer::start(
        GatedRepository::ungated(),
        ServerSettings {
            drain_timeout,
            ..settings()
        },
    )
    .await;
    wait_for_health(server.channel().await, "", ServingStatus::Serving).await;
    // A health watch never ends by itself: it holds its connection open through the drain.
    let mut watch = HealthClient::new(server.channel().await)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let stopping = tokio::spawn(server.stop());
    let update = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("a health update at shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(update.status(), ServingStatus::NotServing);
    let took = stopping.await.unwrap();
    assert!(
        took >= drain_timeout,
        "stopped after {took:?}, before the drain bound"
    );
    assert!(
        took < drain_timeout + Duration::from_secs(2),
        "stopped after {took:?}"
    );
}
