//! The API-level suite: `calendar.v1.CalendarService` driven through the network with the
//! generated client, as a client of a deployment would, and what each request left in the
//! `events` table checked with SQL. The in-process tests of `calendar-grpc` cover every status
//! and detail; this suite runs against a server by address and verifies the stored state.
//!
//! - [`events`]: create, get, update, delete, and the idempotent create with a client's id.
//! - [`lists`]: day, week and month in an IANA time zone across a daylight-saving change, and
//!   pagination with page tokens.
//! - [`rules`]: the overlap rule, invalid input, and users' isolation from each other.
//!
//! # Target
//!
//! - With `CALENDAR_API_ADDR` set (`http://api:50051`), every test talks to the server there
//!   and checks the state in the database named by `CALENDAR_API_DATABASE_URL`, the one that
//!   server stores in. Without that second variable the tests fail (they never skip).
//! - Otherwise each test starts its own `calendar-grpc` (built next to the test executable:
//!   `cargo build -p calendar-grpc --bins`) on a database of its own (`calendar_api_*`, on the
//!   `DATABASE_URL` server, dropped afterwards), and stops it gracefully at the end.
//!
//! Each test makes up its users (`api-<uuid>`), so runs against a shared database never see
//! each other's events; at its end (also when it panics) it deletes whatever rows its users
//! still have. It creates no reminders, so a deployment's workers have nothing to send.
//!
//! # Against a deployment
//!
//! ```sh
//! CALENDAR_API_ADDR=http://127.0.0.1:50051 \
//! CALENDAR_API_DATABASE_URL=postgres://calendar:<password>@127.0.0.1:5432/calendar \
//!     cargo test -p calendar-tests --test it -- api::
//! ```
//!
//! `docker compose --profile test run --rm integration-tests` (deploy/compose.yaml) runs
//! exactly that against the compose `api` service.

use std::time::Duration;

use calendar_grpc::mapping::{
    datetime_to_timestamp, delta_to_duration, naive_to_date, timestamp_to_datetime,
};
use calendar_grpc::proto::calendar::v1 as pb;
use calendar_grpc::proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use calendar_grpc::proto::google::r#type::Date;
use calendar_tests::harness::database::TestDatabase;
use calendar_tests::harness::grpc::{self, GrpcServer};
use calendar_tests::harness::services;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Row as _};
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

pub(crate) use crate::as_user;

mod events;
mod lists;
mod rules;

/// The server to test, by URL; unset: a server of the test's own.
const ADDR_VARIABLE: &str = "CALENDAR_API_ADDR";
/// The database the server at [`ADDR_VARIABLE`] stores in.
const DATABASE_VARIABLE: &str = "CALENDAR_API_DATABASE_URL";
/// Longest the test's own server may take to stop after SIGTERM (its drain timeout is 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

type Client = CalendarServiceClient<Channel>;

/// Where the requests go.
#[derive(Debug)]
enum Target {
    /// A server someone else runs, named by [`ADDR_VARIABLE`].
    Deployed {
        /// Its database's URL, for the clean-up after a panic.
        database_url: String,
    },
    /// A server of this test's own on a database of its own. Fields drop in order: the server
    /// is killed before its database is dropped.
    Own {
        server: GrpcServer,
        database: TestDatabase,
    },
}

/// One test's view of the API: a client, a pool on the server's database, and the users the
/// test made up. End it with [`finish`](Self::finish).
#[derive(Debug)]
pub(crate) struct Api {
    /// A client of the server.
    pub(crate) client: Client,
    /// The server's database, for the state checks.
    pool: PgPool,
    /// Every user of [`user`](Self::user), whose rows go at the end.
    users: Vec<String>,
    /// Taken by [`finish`](Self::finish).
    target: Option<Target>,
}

impl Api {
    /// The target of the environment (see the module documentation), connected.
    pub(crate) async fn start() -> Self {
        let (url, pool, target) = match std::env::var(ADDR_VARIABLE) {
            Ok(url) => {
                assert!(!url.trim().is_empty(), "{ADDR_VARIABLE} is set but empty");
                let database_url = std::env::var(DATABASE_VARIABLE)
                    .ok()
                    .filter(|database_url| !database_url.trim().is_empty())
                    .unwrap_or_else(|| {
                        panic!(
                            "{ADDR_VARIABLE} is set ({url}) but {DATABASE_VARIABLE} is not: the \
                             API suite checks what the server stored, so it needs the URL of the \
                             database the server at {url} uses"
                        )
                    });
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&database_url)
                    .await
                    .unwrap_or_else(|error| {
                        panic!(
                            "cannot connect to {DATABASE_VARIABLE} ({}): {error}",
                            services::redacted(&database_url)
                        )
                    });
                (url, pool, Target::Deployed { database_url })
            }
            Err(_) => {
                let database = TestDatabase::create("calendar_api_")
                    .await
                    .unwrap_or_else(|error| panic!("cannot create the test database: {error}"));
                let server = GrpcServer::start("calendar-grpc", &database.url)
                    .await
                    .unwrap_or_else(|error| panic!("{error}"));
                let pool = database.pool.clone();
                (server.url(), pool, Target::Own { server, database })
            }
        };
        let client = grpc::connect(&url)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self {
            client,
            pool,
            users: Vec::new(),
            target: Some(target),
        }
    }

    /// A user id nobody else uses, whose rows [`finish`](Self::finish) deletes.
    pub(crate) fn user(&mut self) -> String {
        let user = format!("api-{}", Uuid::new_v4());
        self.users.push(user.clone());
        user
    }

    /// `user`'s rows in the `events` table, ordered by (start, id) as the lists are.
    pub(crate) async fn stored(&self, user: &str) -> Vec<Stored> {
        sqlx::query(
            "SELECT id, user_id, title, description, start_at, end_at, overlap_policy, version \
             FROM events WHERE user_id = $1 ORDER BY start_at, id",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_else(|error| panic!("reading {user}'s events: {error}"))
        .iter()
        .map(Stored::from_row)
        .collect()
    }

    /// The row of event `id`, whoever owns it.
    pub(crate) async fn stored_event(&self, id: &str) -> Option<Stored> {
        let id: Uuid = id
            .parse()
            .unwrap_or_else(|_| panic!("{id:?} is not a UUID"));
        sqlx::query(
            "SELECT id, user_id, title, description, start_at, end_at, overlap_policy, version \
             FROM events WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .unwrap_or_else(|error| panic!("reading event {id}: {error}"))
        .as_ref()
        .map(Stored::from_row)
    }

    /// Deletes the rows the test's users still have (on a deployment), or stops the test's own
    /// server, checking that it shut down gracefully, and drops its database.
    pub(crate) async fn finish(mut self) {
        match self.target.take() {
            None => {}
            Some(Target::Deployed { .. }) => {
                sqlx::query("DELETE FROM events WHERE user_id = ANY($1)")
                    .bind(&self.users[..])
                    .execute(&self.pool)
                    .await
                    .unwrap_or_else(|error| panic!("deleting the test's events: {error}"));
                self.pool.close().await;
            }
            Some(Target::Own {
                mut server,
                database,
            }) => {
                server
                    .process
                    .terminate(STOP_TIMEOUT)
                    .await
                    .unwrap_or_else(|error| panic!("{error}"));
                let name = database.name().to_owned();
                if let Err(error) = database.drop_now().await {
                    eprintln!("could not drop the test database {name}: {error}");
                }
            }
        }
    }
}

impl Drop for Api {
    /// After a panic on a deployment, deletes the rows of the test's users, best effort: drop
    /// cannot await, so a thread with a runtime and a connection of its own does it. (A test's
    /// own database is dropped by its [`TestDatabase`].)
    fn drop(&mut self) {
        let Some(Target::Deployed { database_url }) = &self.target else {
            return;
        };
        if self.users.is_empty() {
            return;
        }
        let (database_url, users) = (database_url.clone(), self.users.clone());
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&database_url).await.ok()?;
                let deleted = sqlx::query("DELETE FROM events WHERE user_id = ANY($1)")
                    .bind(&users[..])
                    .execute(&mut connection)
                    .await
                    .ok();
                let _ = connection.close().await;
                deleted
            })
        })
        .join();
        if !matches!(deleted, Ok(Some(_))) {
            eprintln!("could not delete the events of {:?}", self.users);
        }
    }
}

/// An `events` row, as far as the API sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) id: Uuid,
    pub(crate) user_id: String,
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) start_at: DateTime<Utc>,
    pub(crate) end_at: DateTime<Utc>,
    /// `reject` or `allow`.
    pub(crate) overlap_policy: String,
    pub(crate) version: i64,
}

impl Stored {
    fn from_row(row: &PgRow) -> Self {
        Self {
            id: column(row, "id"),
            user_id: column(row, "user_id"),
            title: column(row, "title"),
            description: column(row, "description"),
            start_at: column(row, "start_at"),
            end_at: column(row, "end_at"),
            overlap_policy: column(row, "overlap_policy"),
            version: column(row, "version"),
        }
    }
}

/// Column `name` of `row`.
fn column<T>(row: &PgRow, name: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name)
        .unwrap_or_else(|error| panic!("events.{name}: {error}"))
}

/// Midnight (UTC) `days` days from today: in the future, so that a deployment's clean-up of
/// events that ended a retention ago never races a test.
pub(crate) fn days_ahead(days: i64) -> DateTime<Utc> {
    (Utc::now() + TimeDelta::days(days))
        .date_naive()
        .and_time(NaiveTime::MIN)
        .and_utc()
}

/// An event from `start` lasting `minutes`, blocking its slot (the default policy), without a
/// reminder.
pub(crate) fn event(title: &str, start: DateTime<Utc>, minutes: i64) -> pb::Event {
    pb::Event {
        title: title.to_owned(),
        start_time: Some(datetime_to_timestamp(start)),
        duration: Some(delta_to_duration(TimeDelta::minutes(minutes))),
        ..pb::Event::default()
    }
}

/// A create request for `event`, the server choosing the id.
pub(crate) fn create_request(event: pb::Event) -> pb::CreateEventRequest {
    pb::CreateEventRequest {
        event: Some(event),
        event_id: String::new(),
    }
}

impl Api {
    /// Creates `event` for `user`; panics if the server refuses it.
    pub(crate) async fn create(&mut self, user: &str, event: pb::Event) -> pb::Event {
        self.client
            .create_event(as_user(user, create_request(event)))
            .await
            .unwrap_or_else(|status| panic!("CreateEvent failed: {status:?}"))
            .into_inner()
    }
}

/// The start of an event message.
pub(crate) fn start_of(event: &pb::Event) -> DateTime<Utc> {
    timestamp_to_datetime(event.start_time.as_ref().expect("a start time")).expect("an instant")
}

/// A protobuf date.
pub(crate) fn date(date: NaiveDate) -> Option<Date> {
    Some(naive_to_date(date))
}

/// Asserts that `result` failed with `code` and returns the status.
#[track_caller]
pub(crate) fn refused<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    code: Code,
) -> Status {
    match result {
        Ok(response) => panic!("expected {code:?}, the server answered {response:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            status
        }
    }
}
