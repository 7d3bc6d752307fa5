//! The request streams of the scenarios, over the calendar the seed lays out ([`Dataset`]):
//! users named `1` to `users`, their events on the days from [`Dataset::first_day`].
//!
//! - `create`: a 60-minute `ALLOW` event with a reminder 10 minutes before, for a random user
//!   at a random minute of the dataset's days (the same row pgbench's INSERT writes).
//! - `day`: a random user's random day (UTC), first page (100).
//! - `mixed`: 40% day lists, 40% week lists, 15% creates, 2.5% updates (a new title) and 2.5%
//!   deletes of events the task has seen (listed or created).

use std::collections::HashSet;

use calendar_grpc::auth::USER_ID_METADATA;
use calendar_grpc::mapping::{datetime_to_timestamp, delta_to_duration, naive_to_date};
use calendar_grpc::proto::calendar::v1 as pb;
use calendar_grpc::proto::google::r#type::Date;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use clap::ValueEnum;
use serde::Serialize;
use tonic::Request;
use tonic::metadata::MetadataValue;

use crate::load::{Client, Outcome, Workload};

/// The seeded calendar: who has events, and on which days.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Dataset {
    /// Users `1` to `users`.
    pub(crate) users: u32,
    /// The first day of events (UTC), a Monday.
    pub(crate) first_day: NaiveDate,
    /// How many days carry events.
    pub(crate) days: u32,
}

impl Dataset {
    /// `users` users with `events_per_user` events each, on at least 28 days from Monday
    /// 2030-01-07 (more if their events do not fit four a day).
    pub(crate) fn for_events(users: u32, events_per_user: u32) -> Self {
        Self {
            users,
            first_day: NaiveDate::from_ymd_opt(2030, 1, 7).unwrap_or_default(),
            days: events_per_user.div_ceil(crate::seed::SLOTS_PER_DAY).max(28),
        }
    }

    /// Midnight (UTC) of the first day.
    pub(crate) fn start(&self) -> DateTime<Utc> {
        self.first_day.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// The `day`-th day of the dataset.
    pub(crate) fn day(&self, day: u32) -> NaiveDate {
        self.first_day + TimeDelta::days(i64::from(day))
    }
}

/// How long a benchmark create's event lasts.
pub(crate) const CREATE_DURATION_MINUTES: i64 = 60;
/// How long before its start a benchmark create's reminder falls due.
pub(crate) const CREATE_NOTIFY_MINUTES: i64 = 10;
/// The title of a benchmark create's event.
pub(crate) const CREATE_TITLE: &str = "Benchmark event";

/// The scenarios that drive the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scenario {
    /// Creates for random users at random times (overlap ALLOW).
    Create,
    /// A random user's day.
    Day,
    /// 80% day/week lists, 15% creates, 5% updates or deletes.
    Mixed,
}

/// One task's request stream.
#[derive(Debug)]
pub(crate) struct Stream {
    scenario: Scenario,
    dataset: Dataset,
    rng: fastrand::Rng,
    /// This task's number among `tasks`: it updates and deletes only the events of users
    /// `u` with `u % tasks == task`, so that no two tasks change the same event.
    task: u32,
    tasks: u32,
    /// Events of its users this task has seen, with their owner: what it updates and deletes.
    seen: Vec<(u32, pb::Event)>,
    /// The ids in `seen`.
    seen_ids: HashSet<String>,
}

/// Most events a task remembers for updates and deletes.
const SEEN_CAPACITY: usize = 1_000;

impl Stream {
    /// The stream of task `task` of `tasks` (its random numbers are its own, seeded from
    /// `seed`).
    pub(crate) fn new(
        scenario: Scenario,
        dataset: Dataset,
        seed: u64,
        task: usize,
        tasks: usize,
    ) -> Self {
        Self {
            scenario,
            dataset,
            rng: fastrand::Rng::with_seed(seed ^ (task as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            task: u32::try_from(task).unwrap_or(0),
            tasks: u32::try_from(tasks).unwrap_or(1).max(1),
            seen: Vec::new(),
            seen_ids: HashSet::new(),
        }
    }

    fn user(&mut self) -> u32 {
        self.rng.u32(1..=self.dataset.users.max(1))
    }

    fn date(&mut self) -> Date {
        let day = self.rng.u32(0..self.dataset.days.max(1));
        naive_to_date(self.dataset.day(day))
    }

    /// Remembers `event` of `user` for a later update or delete, if `user` is this task's and
    /// the event is not remembered yet.
    fn remember(&mut self, user: u32, event: pb::Event) {
        if user % self.tasks != self.task || self.seen_ids.contains(&event.id) {
            return;
        }
        self.seen_ids.insert(event.id.clone());
        if self.seen.len() < SEEN_CAPACITY {
            self.seen.push((user, event));
        } else {
            let slot = self.rng.usize(..self.seen.len());
            let (_, forgotten) = std::mem::replace(&mut self.seen[slot], (user, event));
            self.seen_ids.remove(&forgotten.id);
        }
    }

    async fn create(&mut self, client: &mut Client) -> Outcome {
        let user = self.user();
        let minutes = i64::from(self.dataset.days) * 24 * 60;
        let start = self.dataset.start() + TimeDelta::minutes(self.rng.i64(0..minutes.max(1)));
        let event = pb::Event {
            title: CREATE_TITLE.to_owned(),
            start_time: Some(datetime_to_timestamp(start)),
            duration: Some(delta_to_duration(TimeDelta::minutes(
                CREATE_DURATION_MINUTES,
            ))),
            notify_before: Some(delta_to_duration(TimeDelta::minutes(CREATE_NOTIFY_MINUTES))),
            overlap_policy: pb::OverlapPolicy::Allow.into(),
            ..pb::Event::default()
        };
        let request = pb::CreateEventRequest {
            event: Some(event),
            event_id: String::new(),
        };
        let result = client.create_event(as_user(user, request)).await;
        let result = result.map(|created| {
            if self.scenario == Scenario::Mixed {
                self.remember(user, created.into_inner());
            }
        });
        ("create", result)
    }

    async fn list_day(&mut self, client: &mut Client) -> Outcome {
        let user = self.user();
        let request = pb::ListDayEventsRequest {
            date: Some(self.date()),
            ..pb::ListDayEventsRequest::default()
        };
        let result = client.list_day_events(as_user(user, request)).await;
        let result = result.map(|page| {
            if self.scenario == Scenario::Mixed {
                self.remember_one(user, page.into_inner().events);
            }
        });
        ("day", result)
    }

    async fn list_week(&mut self, client: &mut Client) -> Outcome {
        let user = self.user();
        let request = pb::ListWeekEventsRequest {
            date: Some(self.date()),
            ..pb::ListWeekEventsRequest::default()
        };
        let result = client.list_week_events(as_user(user, request)).await;
        let result = result.map(|page| self.remember_one(user, page.into_inner().events));
        ("week", result)
    }

    /// Remembers one of a listed page's events.
    fn remember_one(&mut self, user: u32, mut events: Vec<pb::Event>) {
        if !events.is_empty() {
            let pick = self.rng.usize(..events.len());
            self.remember(user, events.swap_remove(pick));
        }
    }

    /// Updates (a new title) or deletes an event seen before; creates one if none was.
    async fn change(&mut self, client: &mut Client, delete: bool) -> Outcome {
        if self.seen.is_empty() {
            return self.create(client).await;
        }
        let (user, event) = self.seen.swap_remove(self.rng.usize(..self.seen.len()));
        self.seen_ids.remove(&event.id);
        if delete {
            let request = pb::DeleteEventRequest { id: event.id };
            let result = client.delete_event(as_user(user, request)).await;
            return ("delete", result.map(drop));
        }
        let request = pb::UpdateEventRequest {
            event: Some(pb::Event {
                title: format!("Updated {}", self.rng.u32(..)),
                ..event
            }),
            expected_version: None,
        };
        let result = client.update_event(as_user(user, request)).await;
        let result = result.map(|updated| self.remember(user, updated.into_inner()));
        ("update", result)
    }
}

impl Workload for Stream {
    async fn next(&mut self, client: &mut Client) -> Outcome {
        match self.scenario {
            Scenario::Create => self.create(client).await,
            Scenario::Day => self.list_day(client).await,
            Scenario::Mixed => match self.rng.u32(0..1_000) {
                0..400 => self.list_day(client).await,
                400..800 => self.list_week(client).await,
                800..950 => self.create(client).await,
                950..975 => self.change(client, false).await,
                _ => self.change(client, true).await,
            },
        }
    }
}

/// A request from user `user`.
fn as_user<T>(user: u32, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(USER_ID_METADATA, MetadataValue::from(user));
    request
}
