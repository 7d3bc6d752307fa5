//! Day, week and month lists bounded by local midnights of an IANA time zone, on a day with a
//! daylight-saving change, and a list read page by page.

use calendar_grpc::proto::calendar::v1 as pb;
use chrono::{DateTime, Datelike as _, NaiveDate, TimeDelta, Utc};
use tonic::Code;
use uuid::Uuid;

use super::{Api, as_user, date, days_ahead, event, refused, start_of};

const BERLIN: &str = "Europe/Berlin";

/// Next year's last Sunday of March: Europe/Berlin moves from CET (UTC+1) to CEST (UTC+2) at
/// 01:00 UTC that day, so the day lasts 23 hours. Next year's, so that the events are in the
/// future (see [`days_ahead`]).
fn next_spring_forward() -> NaiveDate {
    let year = Utc::now().year() + 1;
    let last = NaiveDate::from_ymd_opt(year, 3, 31).expect("31 March");
    last - TimeDelta::days(i64::from(last.weekday().num_days_from_sunday()))
}

/// `hour`:00 UTC on `date`.
fn utc(date: NaiveDate, hour: u32) -> DateTime<Utc> {
    date.and_hms_opt(hour, 0, 0).expect("an hour").and_utc()
}

/// An interval of UTC instants, half-open like a listed period.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Window {
    /// Whether `event` overlaps the window: the rule of the lists.
    fn overlaps(self, event: &pb::Event) -> bool {
        let duration = event.duration.as_ref().expect("a duration");
        let end = start_of(event)
            + TimeDelta::seconds(duration.seconds)
            + TimeDelta::nanoseconds(i64::from(duration.nanos));
        start_of(event) < self.end && end > self.start
    }
}

/// The ids of `events` overlapping `window`, in the lists' order: by start, then id.
fn expected(events: &[pb::Event], window: Window) -> Vec<String> {
    let mut overlapping: Vec<&pb::Event> = events
        .iter()
        .filter(|event| window.overlaps(event))
        .collect();
    overlapping.sort_by_key(|event| (start_of(event), event.id.parse::<Uuid>().expect("a UUID")));
    overlapping.iter().map(|event| event.id.clone()).collect()
}

fn ids(events: &[pb::Event]) -> Vec<String> {
    events.iter().map(|event| event.id.clone()).collect()
}

#[tokio::test]
async fn day_week_and_month_run_from_local_midnight_to_local_midnight() {
    let mut api = Api::start().await;
    let ann = api.user();
    let day = next_spring_forward();
    let week_from = day - TimeDelta::days(6);
    let month_from = NaiveDate::from_ymd_opt(day.year(), 3, 1).expect("1 March");

    // The periods' bounds in UTC, from the CET/CEST offsets.
    let berlin_day = Window {
        start: utc(day - TimeDelta::days(1), 23),
        end: utc(day, 22),
    };
    assert_eq!(berlin_day.end - berlin_day.start, TimeDelta::hours(23));
    let utc_day = Window {
        start: utc(day, 0),
        end: utc(day + TimeDelta::days(1), 0),
    };
    let berlin_week = Window {
        start: utc(week_from - TimeDelta::days(1), 23),
        end: utc(day, 22),
    };
    let berlin_month = Window {
        start: utc(month_from - TimeDelta::days(1), 23),
        end: utc(
            NaiveDate::from_ymd_opt(day.year(), 3, 31).expect("31 March"),
            22,
        ),
    };

    // On each side of every bound, an event touching it: an event ending at a period's start
    // or starting at its end is outside it. They may overlap each other (bounds coincide).
    // One more spans all of the day.
    let mut created = Vec::new();
    let mut edges: Vec<DateTime<Utc>> = [berlin_day, utc_day, berlin_week, berlin_month]
        .iter()
        .flat_map(|window| [window.start, window.end])
        .collect();
    edges.sort();
    edges.dedup();
    let half_hour = TimeDelta::minutes(30);
    for edge in edges {
        for start in [edge - half_hour, edge] {
            let mut touching = event(&format!("at {start}"), start, 30);
            touching.overlap_policy = pb::OverlapPolicy::Allow.into();
            created.push(api.create(&ann, touching).await);
        }
    }
    let mut long = event("Conference", utc(day - TimeDelta::days(2), 12), 3 * 24 * 60);
    long.overlap_policy = pb::OverlapPolicy::Allow.into();
    created.push(api.create(&ann, long).await);
    assert_eq!(api.stored(&ann).await.len(), created.len());

    let day_list = |time_zone: &str| pb::ListDayEventsRequest {
        date: date(day),
        time_zone: time_zone.to_owned(),
        ..pb::ListDayEventsRequest::default()
    };
    let listed = api
        .client
        .list_day_events(as_user(&ann, day_list(BERLIN)))
        .await
        .expect("ListDayEvents in Berlin")
        .into_inner();
    assert_eq!(ids(&listed.events), expected(&created, berlin_day));
    assert_eq!(listed.next_page_token, "");
    // The 23rd hour is the next day: a day of 24 hours would reach its first event.
    let last = listed.events.last().expect("events on the day");
    assert_eq!(start_of(last), berlin_day.end - half_hour);

    let listed = api
        .client
        .list_day_events(as_user(&ann, day_list("")))
        .await
        .expect("ListDayEvents in UTC")
        .into_inner();
    assert_eq!(ids(&listed.events), expected(&created, utc_day));

    let listed = api
        .client
        .list_week_events(as_user(
            &ann,
            pb::ListWeekEventsRequest {
                date: date(week_from),
                time_zone: BERLIN.to_owned(),
                ..pb::ListWeekEventsRequest::default()
            },
        ))
        .await
        .expect("ListWeekEvents")
        .into_inner();
    assert_eq!(ids(&listed.events), expected(&created, berlin_week));

    let listed = api
        .client
        .list_month_events(as_user(
            &ann,
            pb::ListMonthEventsRequest {
                date: date(month_from),
                time_zone: BERLIN.to_owned(),
                ..pb::ListMonthEventsRequest::default()
            },
        ))
        .await
        .expect("ListMonthEvents")
        .into_inner();
    assert_eq!(ids(&listed.events), expected(&created, berlin_month));
    // Every event but the one ending at the first local midnight of March and the one starting
    // at the first of April.
    assert_eq!(listed.events.len(), created.len() - 2);
    for listed in &listed.events {
        let stored = created.iter().find(|event| event.id == listed.id);
        assert_eq!(Some(listed), stored, "a listed event is the created one");
    }
    api.finish().await;
}

#[tokio::test]
async fn a_long_list_is_read_page_by_page_in_stored_order() {
    let mut api = Api::start().await;
    let ann = api.user();
    let morning = days_ahead(40) + TimeDelta::hours(8);
    // Seven events, some starting together: pages break ties by id.
    for hours in [0, 0, 0, 1, 2, 2, 3] {
        let mut booking = event("Booking", morning + TimeDelta::hours(hours), 30);
        booking.overlap_policy = pb::OverlapPolicy::Allow.into();
        api.create(&ann, booking).await;
    }
    let page = |page_token: String| pb::ListDayEventsRequest {
        date: date(morning.date_naive()),
        time_zone: "UTC".to_owned(),
        page_size: 3,
        page_token,
    };

    let mut listed = Vec::new();
    let mut sizes = Vec::new();
    let mut tokens = Vec::new();
    let mut token = String::new();
    loop {
        let response = api
            .client
            .list_day_events(as_user(&ann, page(token)))
            .await
            .expect("ListDayEvents")
            .into_inner();
        sizes.push(response.events.len());
        listed.extend(response.events);
        if response.next_page_token.is_empty() {
            break;
        }
        token = response.next_page_token;
        tokens.push(token.clone());
    }
    assert_eq!(sizes, [3, 3, 1]);
    let stored: Vec<Uuid> = api.stored(&ann).await.iter().map(|row| row.id).collect();
    let listed_ids: Vec<Uuid> = listed
        .iter()
        .map(|event| event.id.parse().expect("a UUID"))
        .collect();
    assert_eq!(
        listed_ids, stored,
        "the pages, in order, are the stored rows"
    );

    // A token continues its own list only.
    let status = refused(
        api.client
            .list_week_events(as_user(
                &ann,
                pb::ListWeekEventsRequest {
                    date: date(morning.date_naive()),
                    time_zone: "UTC".to_owned(),
                    page_size: 3,
                    page_token: tokens[0].clone(),
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("page_token"), "{status:?}");
    api.finish().await;
}
