//! Bad input for every RPC: generated requests (structured and raw bytes) are accepted or
//! refused naming their fields, never a panic; extreme values through a running server are
//! refused with a clear status and leave the stored state unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use calendar_adapters::memory::MemoryEventRepository;
use calendar_grpc::proto::calendar::v1 as pb;
use calendar_grpc::proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use calendar_grpc::proto::google::r#type::Date;
use calendar_grpc::robustness::{Outcome, Rpc, check, encode};
use calendar_grpc::server::{self, ServerSettings};
use proptest::prelude::*;
use prost_types::{Duration, Timestamp};
use tokio_util::sync::CancellationToken;
use tonic::metadata::{BinaryMetadataValue, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

// ---------------------------------------------------------------------------------------------
// Generated requests.

/// Text a client might send: empty, ordinary, very long, with control characters, odd Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ -~]{1,40}",
        "\\PC{0,30}",
        "[\\x00-\\x1f\\x7f ]{1,10}",
        "[a-z ]{190,210}",
        (1usize..4).prop_map(|n| "é".repeat(100 * n)),
    ]
}

/// Seconds since the epoch around the edges: far past and future, the calendar's bounds.
fn seconds() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -62_135_596_800i64..=-62_135_596_700, // year 1
        -2_208_988_900i64..=-2_208_988_700,   // 1900
        1_700_000_000i64..2_000_000_000,      // now-ish
        253_402_300_000i64..=253_402_300_900, // 9999-12-31 and just after
    ]
}

fn nanos() -> impl Strategy<Value = i32> {
    prop_oneof![
        any::<i32>(),
        0i32..1_000_000_000,
        Just(999_999_999),
        Just(1_000_000_000)
    ]
}

fn timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    proptest::option::weighted(
        0.9,
        (seconds(), nanos()).prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }),
    )
}

fn duration() -> impl Strategy<Value = Option<Duration>> {
    let seconds = prop_oneof![
        any::<i64>(),
        -10i64..10,
        0i64..(400 * 86_400),
        Just(366 * 86_400),
        Just(366 * 86_400 + 1)
    ];
    proptest::option::weighted(
        0.8,
        (seconds, nanos()).prop_map(|(seconds, nanos)| Duration { seconds, nanos }),
    )
}

fn event() -> impl Strategy<Value = pb::Event> {
    (
        text(),
        text(),
        timestamp(),
        duration(),
        duration(),
        prop_oneof![0i32..3, any::<i32>()],
        prop_oneof![
            Just(String::new()),
            "[0-9a-f-]{0,40}",
            Just("0190f5d2-6a43-7c3e-9a10-6f2b3c4d5e6f".to_owned())
        ],
    )
        .prop_map(
            |(title, description, start_time, duration, notify_before, overlap_policy, id)| {
                pb::Event {
                    id,
                    title,
                    description,
                    start_time,
                    duration,
                    notify_before,
                    overlap_policy,
                    ..pb::Event::default()
                }
            },
        )
}

fn date() -> impl Strategy<Value = Option<Date>> {
    proptest::option::weighted(
        0.9,
        (
            prop_oneof![
                any::<i32>(),
                1i32..10_001,
                Just(1),
                Just(9999),
                Just(10_000)
            ],
            -1i32..14,
            -1i32..33,
        )
            .prop_map(|(year, month, day)| Date { year, month, day }),
    )
}

fn zone() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("Europe/Berlin".to_owned()),
        Just("America/Sao_Paulo".to_owned()),
        Just("Mars/Olympus_Mons".to_owned()),
        "\\PC{0,40}",
    ]
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[A-Za-z0-9_-]{0,60}", "\\PC{0,80}"]
}

fn list_fields() -> impl Strategy<Value = (Option<Date>, String, i32, String)> {
    (
        date(),
        zone(),
        prop_oneof![any::<i32>(), -1i32..1_100, Just(i32::MAX)],
        token(),
    )
}

/// A request of `rpc`, generated, as the bytes a client would send.
fn body(rpc: Rpc) -> BoxedStrategy<Vec<u8>> {
    match rpc {
        Rpc::CreateEvent => (
            proptest::option::weighted(0.9, event()),
            prop_oneof![Just(String::new()), "[0-9a-f-]{0,40}"],
        )
            .prop_map(|(event, event_id)| encode(&pb::CreateEventRequest { event, event_id }))
            .boxed(),
        Rpc::UpdateEvent => (
            proptest::option::weighted(0.9, event()),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(event, expected_version)| {
                encode(&pb::UpdateEventRequest {
                    event,
                    expected_version,
                })
            })
            .boxed(),
        Rpc::GetEvent => text()
            .prop_map(|id| encode(&pb::GetEventRequest { id }))
            .boxed(),
        Rpc::DeleteEvent => text()
            .prop_map(|id| encode(&pb::DeleteEventRequest { id }))
            .boxed(),
        Rpc::ListDayEvents => list_fields()
            .prop_map(|(date, time_zone, page_size, page_token)| {
                encode(&pb::ListDayEventsRequest {
                    date,
                    time_zone,
                    page_size,
                    page_token,
                })
            })
            .boxed(),
        Rpc::ListWeekEvents => list_fields()
            .prop_map(|(date, time_zone, page_size, page_token)| {
                encode(&pb::ListWeekEventsRequest {
                    date,
                    time_zone,
                    page_size,
                    page_token,
                })
            })
            .boxed(),
        Rpc::ListMonthEvents => list_fields()
            .prop_map(|(date, time_zone, page_size, page_token)| {
                encode(&pb::ListMonthEventsRequest {
                    date,
                    time_zone,
                    page_size,
                    page_token,
                })
            })
            .boxed(),
    }
}

fn any_rpc() -> impl Strategy<Value = Rpc> {
    proptest::sample::select(Rpc::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Structured requests with edge values in every field.
    #[test]
    fn generated_requests_are_accepted_or_refused_by_field((rpc, body) in any_rpc().prop_flat_map(|rpc| (Just(rpc), body(rpc)))) {
        let outcome = check(rpc, &body);
        prop_assert!(outcome.is_ok(), "{rpc:?}: {}", outcome.unwrap_err());
        prop_assert_ne!(outcome.unwrap(), Outcome::Undecodable, "a well-formed message decodes");
    }

    /// Raw bytes: truncated, garbled or random bodies.
    #[test]
    fn arbitrary_bytes_never_break_the_promise(rpc in any_rpc(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let outcome = check(rpc, &body);
        prop_assert!(outcome.is_ok(), "{rpc:?}: {}", outcome.unwrap_err());
    }

    /// A valid body cut short or with a byte flipped.
    #[test]
    fn damaged_bodies_never_break_the_promise(
        (rpc, body) in any_rpc().prop_flat_map(|rpc| (Just(rpc), body(rpc))),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bits in 1u8..=255,
    ) {
        if !body.is_empty() {
            let mut flipped = body.clone();
            let at = flip.index(flipped.len());
            flipped[at] ^= bits;
            prop_assert!(check(rpc, &flipped).is_ok());
            prop_assert!(check(rpc, &body[..cut.index(body.len())]).is_ok());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Extreme values through a running server.

struct Server {
    repository: Arc<MemoryEventRepository>,
    client: CalendarServiceClient<Channel>,
    shutdown: CancellationToken,
}

async fn server() -> Server {
    let repository = Arc::new(MemoryEventRepository::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(server::run(
        listener,
        repository.clone(),
        ServerSettings::default(),
        shutdown.clone(),
    ));
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Server {
        repository,
        client: CalendarServiceClient::new(channel),
        shutdown,
    }
}

fn as_ann<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-user-id", MetadataValue::from_static("ann"));
    request
}

fn at(text: &str) -> Timestamp {
    let instant = chrono::DateTime::parse_from_rfc3339(text).unwrap();
    Timestamp {
        seconds: instant.timestamp(),
        nanos: 0,
    }
}

fn minutes(n: i64) -> Option<Duration> {
    Some(Duration {
        seconds: n * 60,
        nanos: 0,
    })
}

fn valid_event() -> pb::Event {
    pb::Event {
        title: "Standup".into(),
        start_time: Some(at("2030-03-04T09:00:00Z")),
        duration: minutes(15),
        ..pb::Event::default()
    }
}

/// The fields a status's BadRequest names.
fn named(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn assert_refused(result: Result<tonic::Response<pb::Event>, Status>, field: &str, case: &str) {
    let status = result.expect_err(case);
    assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
    assert!(
        named(&status).contains(&field.to_owned()),
        "{case}: names {:?}, not {field}",
        named(&status)
    );
    assert!(!status.message().is_empty(), "{case}: a message");
}

#[tokio::test]
async fn extreme_events_are_refused_naming_the_field_and_change_nothing() {
    let mut server = server().await;
    let stored = server
        .client
        .create_event(as_ann(pb::CreateEventRequest {
            event: Some(valid_event()),
            event_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let with = |change: &dyn Fn(&mut pb::Event)| {
        let mut event = valid_event();
        change(&mut event);
        event
    };
    let cases: Vec<(&str, pb::Event, &str)> = vec![
        (
            "empty title",
            with(&|e| e.title = String::new()),
            "event.title",
        ),
        (
            "blank title",
            with(&|e| e.title = " \t ".into()),
            "event.title",
        ),
        (
            "huge title",
            with(&|e| e.title = "x".repeat(201)),
            "event.title",
        ),
        (
            "control character",
            with(&|e| e.title = "Stand\u{7}up".into()),
            "event.title",
        ),
        (
            "line break in title",
            with(&|e| e.title = "Stand\nup".into()),
            "event.title",
        ),
        (
            "huge description",
            with(&|e| e.description = "x".repeat(10_001)),
            "event.description",
        ),
        (
            "NUL in description",
            with(&|e| e.description = "a\0b".into()),
            "event.description",
        ),
        (
            "year 1",
            with(&|e| e.start_time = Some(at("0001-01-01T00:00:00Z"))),
            "event.start_time",
        ),
        (
            "year 1899",
            with(&|e| e.start_time = Some(at("1899-12-31T23:59:59Z"))),
            "event.start_time",
        ),
        (
            "ends after 9999",
            with(&|e| e.start_time = Some(at("9999-12-31T23:50:00Z"))),
            "event.duration",
        ),
        (
            "no start",
            with(&|e| e.start_time = None),
            "event.start_time",
        ),
        (
            "nanos out of range",
            with(&|e| {
                e.start_time = Some(Timestamp {
                    seconds: 1_900_000_000,
                    nanos: 1_000_000_000,
                })
            }),
            "event.start_time",
        ),
        (
            "seconds out of range",
            with(&|e| {
                e.start_time = Some(Timestamp {
                    seconds: i64::MAX,
                    nanos: 0,
                })
            }),
            "event.start_time",
        ),
        (
            "zero duration",
            with(&|e| {
                e.duration = Some(Duration {
                    seconds: 0,
                    nanos: 0,
                })
            }),
            "event.duration",
        ),
        (
            "negative duration",
            with(&|e| {
                e.duration = Some(Duration {
                    seconds: -60,
                    nanos: 0,
                })
            }),
            "event.duration",
        ),
        (
            "maximal duration + 1 s",
            with(&|e| {
                e.duration = Some(Duration {
                    seconds: 366 * 86_400 + 1,
                    nanos: 0,
                })
            }),
            "event.duration",
        ),
        (
            "i64::MAX duration",
            with(&|e| {
                e.duration = Some(Duration {
                    seconds: i64::MAX,
                    nanos: 0,
                })
            }),
            "event.duration",
        ),
        (
            "mixed-sign duration",
            with(&|e| {
                e.duration = Some(Duration {
                    seconds: 60,
                    nanos: -1,
                })
            }),
            "event.duration",
        ),
        (
            "negative reminder",
            with(&|e| e.notify_before = minutes(-1)),
            "event.notify_before",
        ),
        (
            "reminder too early",
            with(&|e| e.notify_before = minutes(366 * 24 * 60 + 1)),
            "event.notify_before",
        ),
        (
            "unknown overlap policy",
            with(&|e| e.overlap_policy = 7),
            "event.overlap_policy",
        ),
    ];
    for (case, event, field) in cases {
        let result = server
            .client
            .create_event(as_ann(pb::CreateEventRequest {
                event: Some(event.clone()),
                event_id: String::new(),
            }))
            .await;
        assert_refused(result, field, case);
        let mut update = event;
        update.id = stored.id.clone();
        let result = server
            .client
            .update_event(as_ann(pb::UpdateEventRequest {
                event: Some(update),
                expected_version: None,
            }))
            .await;
        assert_refused(result, field, &format!("update: {case}"));
    }
    for (case, event_id) in [
        ("not a UUID", "tomorrow"),
        ("nil UUID", "00000000-0000-0000-0000-000000000000"),
    ] {
        let result = server
            .client
            .create_event(as_ann(pb::CreateEventRequest {
                event: Some(valid_event()),
                event_id: event_id.into(),
            }))
            .await;
        assert_refused(result, "event_id", case);
    }
    let result = server
        .client
        .update_event(as_ann(pb::UpdateEventRequest {
            event: Some(pb::Event {
                id: stored.id.clone(),
                ..valid_event()
            }),
            expected_version: Some(0),
        }))
        .await;
    assert_refused(result, "expected_version", "version 0");

    assert_eq!(
        server.repository.len(),
        1,
        "no rejected request stored anything"
    );
    let after = server
        .client
        .get_event(as_ann(pb::GetEventRequest {
            id: stored.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, stored, "no rejected update changed the event");
    server.shutdown.cancel();
}

#[tokio::test]
async fn extreme_list_requests_are_refused_or_bounded() {
    let mut server = server().await;
    let list = |date: Option<Date>, time_zone: &str, page_size: i32, page_token: &str| {
        pb::ListDayEventsRequest {
            date,
            time_zone: time_zone.into(),
            page_size,
            page_token: page_token.into(),
        }
    };
    let day = |year, month, day| Some(Date { year, month, day });
    let refused = [
        ("no date", list(None, "", 0, ""), "date"),
        ("year 1", list(day(1, 1, 1), "", 0, ""), "date"),
        ("year 10000", list(day(10_000, 1, 1), "", 0, ""), "date"),
        ("30 February", list(day(2030, 2, 30), "", 0, ""), "date"),
        ("month 13", list(day(2030, 13, 1), "", 0, ""), "date"),
        (
            "unknown zone",
            list(day(2030, 3, 4), "Mars/Olympus_Mons", 0, ""),
            "time_zone",
        ),
        (
            "zone with control characters",
            list(day(2030, 3, 4), "Europe/\u{0}", 0, ""),
            "time_zone",
        ),
        (
            "negative page size",
            list(day(2030, 3, 4), "", -1, ""),
            "page_size",
        ),
        (
            "forged page token",
            list(
                day(2030, 3, 4),
                "",
                0,
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
            "page_token",
        ),
        (
            "garbage page token",
            list(day(2030, 3, 4), "", 0, "!!!"),
            "page_token",
        ),
        (
            "huge page token",
            list(day(2030, 3, 4), "", 0, &"A".repeat(100_000)),
            "page_token",
        ),
    ];
    for (case, request, field) in refused {
        let status = server
            .client
            .list_day_events(as_ann(request))
            .await
            .expect_err(case);
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        assert!(
            named(&status).contains(&field.to_owned()),
            "{case}: {:?}",
            named(&status)
        );
    }
    // Accepted at the edges: page size 0 (the default) and the largest (capped), the first and
    // last dates, DST gap and fold days.
    for (case, request) in [
        ("page size 0", list(day(2030, 3, 4), "", 0, "")),
        (
            "page size i32::MAX",
            list(day(2030, 3, 4), "", i32::MAX, ""),
        ),
        (
            "1900-01-01 in Kiritimati",
            list(day(1900, 1, 1), "Pacific/Kiritimati", 0, ""),
        ),
        ("9999-12-31", list(day(9999, 12, 31), "", 0, "")),
        (
            "Berlin's spring gap",
            list(day(2030, 3, 31), "Europe/Berlin", 0, ""),
        ),
        (
            "Berlin's autumn fold",
            list(day(2030, 10, 27), "Europe/Berlin", 0, ""),
        ),
        (
            "Sao Paulo's midnight gap",
            list(day(2018, 11, 4), "America/Sao_Paulo", 0, ""),
        ),
        (
            "Apia's missing day",
            list(day(2011, 12, 30), "Pacific/Apia", 0, ""),
        ),
    ] {
        server
            .client
            .list_day_events(as_ann(request))
            .await
            .unwrap_or_else(|status| panic!("{case}: {status:?}"));
    }
    server.shutdown.cancel();
}

#[tokio::test]
async fn bad_metadata_and_oversized_messages_are_refused_cleanly() {
    let mut server = server().await;
    let create = || pb::CreateEventRequest {
        event: Some(valid_event()),
        event_id: String::new(),
    };
    let mut binary = Request::new(create());
    binary.metadata_mut().insert_bin(
        "x-user-id-bin",
        BinaryMetadataValue::from_bytes(&[0xff, 0xfe, 0x00]),
    );
    let status = server
        .client
        .create_event(binary)
        .await
        .expect_err("no user");
    assert_eq!(status.code(), Code::Unauthenticated);
    for user in ["", "ann smith", "ann\u{7f}", &"a".repeat(129)] {
        let mut request = Request::new(create());
        if let Ok(value) = user.parse() {
            request.metadata_mut().insert("x-user-id", value);
        }
        let status = server.client.create_event(request).await.expect_err(user);
        assert_eq!(status.code(), Code::Unauthenticated, "{user:?}");
    }
    let mut huge = valid_event();
    huge.description = "x".repeat(300 * 1024);
    let status = server
        .client
        .create_event(as_ann(pb::CreateEventRequest {
            event: Some(huge),
            event_id: String::new(),
        }))
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(server.repository.len(), 0, "nothing was stored");
    server.shutdown.cancel();
}
