//! The contract suite, concurrency and failure behaviour of the PostgreSQL event store.
//!
//! Every test runs on a fresh database that `#[sqlx::test]` creates from `DATABASE_URL` (for
//! example `postgres://postgres@127.0.0.1:5432/postgres`) and migrates; `deploy/test.sh` sets it.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use calendar_adapters::postgres::{
    self, PgPool, PoolSettings, PostgresError, PostgresEventRepository,
};
use calendar_core::testkit;
use calendar_core::testkit::fixtures::{at, details, event, overlapping, user, with_reminder};
use calendar_core::{
    Cursor, Event, EventId, EventRepository, ReminderKey, RepositoryError, TimeRange, UserId,
};
use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

calendar_core::repository_contract_tests! {
    #[sqlx::test(migrations = "../migrations")]
    fn(pool: PgPool) => PostgresEventRepository::new(pool)
}

calendar_core::delivery_log_contract_tests! {
    #[sqlx::test(migrations = "../migrations")]
    fn(pool: PgPool) => calendar_adapters::postgres::PostgresDeliveryLog::new(pool)
}

/// A pool of `size` connections to the test database, all opened up front, so that as many
/// operations really run at once on the server. Close it before the test ends: the test
/// database is dropped afterwards.
async fn wide_pool(options: PgConnectOptions, size: u32) -> PgPool {
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .connect_with(options)
        .await
        .expect("connect");
    let warm = join_all((0..size).map(|_| pool.acquire())).await;
    assert!(warm.iter().all(Result::is_ok), "opening {size} connections");
    pool
}

/// A pool of 4 connections ([`wide_pool`]) to the test database, where inserting an event
/// titled one of `titles` (an SQL list of literals) first runs `body` (PL/pgSQL), in a trigger.
async fn pool_with_insert_trigger(options: PgConnectOptions, titles: &str, body: &str) -> PgPool {
    let pool = wide_pool(options, 4).await;
    // The titles and body are this file's literals.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION on_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$; \
         CREATE TRIGGER on_insert BEFORE INSERT ON events FOR EACH ROW \
         WHEN (NEW.title IN ({titles})) EXECUTE FUNCTION on_insert();"
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool
}

fn created() -> DateTime<Utc> {
    at("2030-01-01T00:00:00Z")
}

/// The contract's race, with a connection per contender: 16 inserts really at once on the
/// server (the contract suite's pool has 5 connections).
#[sqlx::test(migrations = "../migrations")]
async fn sixteen_concurrent_creates_in_one_slot_have_one_winner(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = wide_pool(options, 16).await;
    let started = Instant::now();
    testkit::repository::concurrent_inserts_of_one_slot_have_one_winner(
        &PostgresEventRepository::new(pool.clone()),
    )
    .await;
    eprintln!("16 concurrent creates took {:?}", started.elapsed());
    pool.close().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn sixteen_concurrent_retries_of_one_create_store_it_once(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = wide_pool(options, 16).await;
    let repo = PostgresEventRepository::new(pool.clone());
    let standup = event(
        &user("ann"),
        with_reminder(details("Standup", at("2030-03-01T09:00:00Z"), 15), 5),
        created(),
    );
    let results = join_all((0..16).map(|_| repo.insert(&standup))).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for result in &results {
        match result {
            Ok(()) => {}
            Err(RepositoryError::AlreadyExists { id }) => assert_eq!(*id, standup.id()),
            Err(other) => panic!(
                "a retried create of a taken id is AlreadyExists, even though it also overlaps \
                 itself: {other:?}"
            ),
        }
    }
    assert_eq!(
        repo.get(&user("ann"), standup.id()).await.unwrap(),
        Some(standup)
    );
    pool.close().await;
}

/// Creates that arrive together share statements and commits (the rows one statement stored
/// have one `xmin`, its transaction), and each still gets its own answer: the free ones are
/// stored, and a taken id or a taken slot is refused naming what is in the way, whether that
/// was stored before or by another row of the same statement.
#[sqlx::test(migrations = "../migrations")]
async fn creates_arriving_together_share_statements_with_an_answer_each(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = wide_pool(options, 16).await;
    let repo = PostgresEventRepository::new(pool.clone());
    let ann = user("ann");
    let stored_before = event(
        &ann,
        details("Stored before", at("2030-03-02T09:00:00Z"), 60),
        created(),
    );
    repo.insert(&stored_before).await.unwrap();
    // 48 free events of 12 users, blocking with a reminder and overlapping without.
    let free: Vec<Event> = (0..48)
        .map(|i| {
            let slot = details(
                &format!("Free {i}"),
                at("2030-03-01T00:00:00Z") + TimeDelta::hours(i),
                30,
            );
            let slot = if i % 2 == 0 {
                with_reminder(slot, 10)
            } else {
                overlapping(slot)
            };
            event(&user(&format!("user-{}", i % 12)), slot, created())
        })
        .collect();
    let contenders: Vec<Event> = (0..8)
        .map(|i| {
            let start = at("2030-03-01T09:00:00Z") + TimeDelta::minutes(i);
            event(
                &user("bob"),
                details(&format!("Contender {i}"), start, 60),
                created(),
            )
        })
        .collect();
    let in_the_way = event(
        &ann,
        details("In the way", at("2030-03-02T09:30:00Z"), 60),
        created(),
    );
    let taken_id = Event::new(
        stored_before.id(),
        user("carol"),
        details("Taken id", at("2030-05-01T09:00:00Z"), 60),
        created(),
    );
    let all: Vec<&Event> = free
        .iter()
        .chain(&contenders)
        .chain([&in_the_way, &taken_id])
        .collect();
    let results = join_all(all.iter().map(|event| repo.insert(event))).await;
    let (free_results, rest) = results.split_at(free.len());
    let (contender_results, rest) = rest.split_at(contenders.len());
    assert!(
        free_results.iter().all(Result::is_ok),
        "every free event is stored: {free_results:?}"
    );
    for stored in &free {
        assert_eq!(
            repo.get(stored.owner(), stored.id())
                .await
                .unwrap()
                .as_ref(),
            Some(stored)
        );
    }
    let winners: Vec<&Event> = contenders
        .iter()
        .zip(contender_results)
        .filter(|(_, result)| result.is_ok())
        .map(|(contender, _)| contender)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "one contender wins: {contender_results:?}"
    );
    for result in contender_results.iter().filter(|result| result.is_err()) {
        assert!(
            matches!(result, Err(RepositoryError::SlotBusy { conflicting }) if *conflicting == Some(winners[0].id())),
            "a losing contender is told the winner is in the way: {result:?}"
        );
    }
    assert!(
        matches!(&rest[0], Err(RepositoryError::SlotBusy { conflicting }) if *conflicting == Some(stored_before.id())),
        "{:?}",
        rest[0]
    );
    assert!(
        matches!(&rest[1], Err(RepositoryError::AlreadyExists { id }) if *id == stored_before.id()),
        "{:?}",
        rest[1]
    );
    let (transactions, rows): (i64, i64) =
        sqlx::query_as("SELECT count(DISTINCT xmin::text), count(*) FROM events WHERE id <> $1")
            .bind(stored_before.id().as_uuid())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rows, 49);
    assert!(
        transactions * 2 < rows,
        "{rows} events arriving together were stored by {transactions} transactions"
    );
    pool.close().await;
}

/// Lists that arrive together (read in shared statements) get each the page it would have
/// alone: 48 lists of six users' days, weeks and pages at once, against the same lists one at a
/// time.
#[sqlx::test(migrations = "../migrations")]
async fn lists_arriving_together_get_the_pages_they_get_alone(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = wide_pool(options, 16).await;
    let repo = PostgresEventRepository::new(pool.clone());
    // Each user's events every 5 hours over 10 days, every third overlapping and lasting a
    // day and a half, so that some began before the range listed.
    for u in 0..6 {
        for k in 0..48 {
            let start = at("2030-03-01T00:00:00Z") + TimeDelta::hours(5 * k + u);
            let slot = if k % 3 == 0 {
                overlapping(details(&format!("Long {k}"), start, 36 * 60))
            } else {
                details(&format!("Event {k}"), start, 60)
            };
            repo.insert(&event(&user(&format!("user-{u}")), slot, created()))
                .await
                .unwrap();
        }
    }
    let day = |d: i64| {
        let start = at("2030-03-01T00:00:00Z") + TimeDelta::days(d);
        TimeRange::new(start, start + TimeDelta::days(1)).unwrap()
    };
    let week = TimeRange::new(at("2030-03-02T00:00:00Z"), at("2030-03-09T00:00:00Z")).unwrap();
    let first_page = repo.list(&user("user-2"), week, None, 5).await.unwrap();
    let after = Cursor::after(first_page.last().unwrap());
    let asked: Vec<(UserId, TimeRange, Option<Cursor>, u32)> = (0..48)
        .map(|i| {
            // user-6 has no events.
            let owner = user(&format!("user-{}", i % 7));
            match i % 4 {
                0 => (owner, day(i % 10), None, 100),
                1 => (owner, week, None, 100),
                2 => (owner, week, None, 3),
                _ => (user("user-2"), week, Some(after), 5),
            }
        })
        .collect();
    let mut alone = Vec::new();
    for (owner, range, after, limit) in &asked {
        alone.push(repo.list(owner, *range, *after, *limit).await.unwrap());
    }
    assert!(
        alone.iter().any(|page| page.len() > 10),
        "pages of many events"
    );
    assert!(alone.iter().any(Vec::is_empty), "empty pages");
    let together = join_all(
        asked
            .iter()
            .map(|(owner, range, after, limit)| repo.list(owner, *range, *after, *limit)),
    )
    .await;
    for ((page, alone), asked) in together.into_iter().zip(&alone).zip(&asked) {
        assert_eq!(&page.unwrap(), alone, "{asked:?}");
    }
    pool.close().await;
}

/// A create whose caller gave up while it waited for the inserter is not inserted; one whose
/// statement stalls is abandoned once its caller gives up, so the creates after it do not wait
/// for the stalled statement. A trigger makes the server slow for some titles; the pool of 4
/// connections has one inserter.
#[sqlx::test(migrations = "../migrations")]
async fn creates_whose_callers_gave_up_do_not_hold_the_inserter(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = pool_with_insert_trigger(
        options,
        "'Slow', 'Stalled'",
        "PERFORM pg_sleep(CASE NEW.title WHEN 'Slow' THEN 1 ELSE 20 END); RETURN NEW;",
    )
    .await;
    let repo = PostgresEventRepository::new(pool.clone());
    let ann = user("ann");
    let create = |title: &str, hour: i64| {
        let start = at("2030-03-01T00:00:00Z") + TimeDelta::hours(hour);
        event(&ann, details(title, start, 30), created())
    };
    let slow = create("Slow", 0);
    let given_up = create("Given up", 1);
    let stalled = create("Stalled", 2);
    let quick = create("Quick", 3);
    let slow_insert = tokio::spawn({
        let (repo, slow) = (repo.clone(), slow.clone());
        async move { repo.insert(&slow).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Queued behind the slow insert, and given up before the inserter is free.
    let waited = tokio::time::timeout(Duration::from_millis(100), repo.insert(&given_up)).await;
    assert!(waited.is_err(), "the insert waits behind the slow one");
    slow_insert.await.unwrap().expect("the slow insert");
    let waited = tokio::time::timeout(Duration::from_millis(300), repo.insert(&stalled)).await;
    assert!(waited.is_err(), "the stalled insert is given up");
    let quick_insert = tokio::time::timeout(Duration::from_secs(10), repo.insert(&quick)).await;
    assert!(
        matches!(quick_insert, Ok(Ok(()))),
        "the next create does not wait for the stalled statement: {quick_insert:?}"
    );
    assert_eq!(
        repo.get(&ann, slow.id()).await.unwrap().as_ref(),
        Some(&slow)
    );
    assert_eq!(
        repo.get(&ann, quick.id()).await.unwrap().as_ref(),
        Some(&quick)
    );
    assert_eq!(
        repo.get(&ann, given_up.id()).await.unwrap(),
        None,
        "a create given up before its statement began is not inserted"
    );
    // The stalled statement still sleeps on the server: cancelled, so the database can go.
    sqlx::query(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

/// A statement of several creates that the server refuses for one of its rows (here a trigger
/// refuses a title) fails that create alone: the others are stored.
#[sqlx::test(migrations = "../migrations")]
async fn a_create_refused_in_a_shared_statement_fails_alone(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = pool_with_insert_trigger(
        options,
        "'Refused'",
        "RAISE EXCEPTION 'refused: %', NEW.title;",
    )
    .await;
    let repo = PostgresEventRepository::new(pool.clone());
    let events: Vec<Event> = (0..16)
        .map(|i| {
            let title = if i == 7 {
                "Refused".to_owned()
            } else {
                format!("Fine {i}")
            };
            let start = at("2030-03-01T00:00:00Z") + TimeDelta::hours(i);
            event(&user("ann"), details(&title, start, 30), created())
        })
        .collect();
    let results = join_all(events.iter().map(|event| repo.insert(event))).await;
    for (i, (event, result)) in events.iter().zip(&results).enumerate() {
        if i == 7 {
            assert!(
                matches!(result, Err(RepositoryError::Internal(_))),
                "the refused create fails: {result:?}"
            );
            assert_eq!(repo.get(event.owner(), event.id()).await.unwrap(), None);
        } else {
            assert!(result.is_ok(), "create {i} is stored: {result:?}");
            assert_eq!(
                repo.get(event.owner(), event.id()).await.unwrap().as_ref(),
                Some(event)
            );
        }
    }
    pool.close().await;
}

/// Inserts `count` valid events of 100 users, each with a reminder due at `due` or up to
/// `count` seconds before it, in one statement.
async fn seed_due_reminders(
    pool: &PgPool,
    count: i32,
    due: DateTime<Utc>,
) -> BTreeSet<ReminderKey> {
    sqlx::query(
        "INSERT INTO events (id, user_id, title, start_at, end_at, overlap_policy, version, \
             created_at, updated_at, remind_at, reminder_state) \
         SELECT gen_random_uuid(), 'user-' || (n % 100), 'Reminder ' || n, \
             $1 + make_interval(hours => 1, secs => n), \
             $1 + make_interval(hours => 1, secs => n, mins => 30), \
             'allow', 1, $2, $2, \
             $1 - make_interval(secs => n), 'pending' \
         FROM generate_series(0, $3 - 1) AS n",
    )
    .bind(due)
    .bind(created())
    .bind(count)
    .execute(pool)
    .await
    .expect("seed");
    let keys: Vec<(Uuid, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, remind_at FROM events WHERE remind_at IS NOT NULL")
            .fetch_all(pool)
            .await
            .unwrap();
    keys.into_iter()
        .map(|(id, remind_at)| ReminderKey {
            event_id: EventId::from_uuid(id).unwrap(),
            remind_at,
        })
        .collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn four_concurrent_claimers_claim_ten_thousand_reminders_exactly_once(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = wide_pool(options, 4).await;
    let repo = PostgresEventRepository::new(pool.clone());
    let now = at("2030-03-01T09:00:00Z");
    let started = Instant::now();
    let seeded = seed_due_reminders(&pool, 10_000, now).await;
    eprintln!("seeding 10,000 events took {:?}", started.elapsed());
    assert_eq!(seeded.len(), 10_000);

    let claimer = || async {
        let mut mine = Vec::new();
        loop {
            let batch = repo
                .claim_due(now, TimeDelta::zero(), TimeDelta::minutes(5), 100)
                .await
                .expect("claim");
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch.iter().map(|n| n.key()));
        }
    };
    let started = Instant::now();
    let claims = join_all((0..4).map(|_| claimer())).await;
    eprintln!(
        "4 claimers took {:?} for 10,000 reminders ({:?} each)",
        started.elapsed(),
        claims.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let mut count: HashMap<ReminderKey, usize> = HashMap::new();
    for key in claims.iter().flatten() {
        *count.entry(*key).or_default() += 1;
    }
    assert!(
        count.values().all(|n| *n == 1),
        "no reminder is claimed twice"
    );
    assert_eq!(
        count.keys().copied().collect::<BTreeSet<_>>(),
        seeded,
        "every reminder is claimed"
    );
    assert!(
        claims.iter().filter(|mine| !mine.is_empty()).count() > 1,
        "the claimers really ran side by side"
    );
    let all: Vec<ReminderKey> = seeded.into_iter().collect();
    assert_eq!(repo.mark_sent(&all).await.unwrap(), 10_000);
    assert!(
        repo.claim_due(
            now + TimeDelta::days(1),
            TimeDelta::zero(),
            TimeDelta::minutes(5),
            100
        )
        .await
        .unwrap()
        .is_empty()
    );
    pool.close().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_claimer_that_dies_leaves_its_reminders_to_be_claimed_after_the_lease(pool: PgPool) {
    let repo = PostgresEventRepository::new(pool.clone());
    let now = at("2030-03-01T09:00:00Z");
    let lease = TimeDelta::seconds(30);
    let seeded = seed_due_reminders(&pool, 50, now).await;

    // The first claimer takes everything, then dies: it never confirms nor releases.
    let doomed = PostgresEventRepository::new(pool.clone());
    let taken: BTreeSet<ReminderKey> = doomed
        .claim_due(now, TimeDelta::zero(), lease, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|n| n.key())
        .collect();
    assert_eq!(taken, seeded);
    drop(doomed);

    let survivor = repo;
    assert!(
        survivor
            .claim_due(
                now + lease - TimeDelta::microseconds(1),
                TimeDelta::zero(),
                lease,
                1_000
            )
            .await
            .unwrap()
            .is_empty(),
        "not a microsecond before the lease ends"
    );
    let retaken: Vec<ReminderKey> = survivor
        .claim_due(now + lease, TimeDelta::zero(), lease, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|n| n.key())
        .collect();
    assert_eq!(
        retaken.iter().copied().collect::<BTreeSet<_>>(),
        seeded,
        "all of them once the lease has run out"
    );
    let mut in_order = retaken.clone();
    in_order.sort_by_key(|key| (key.remind_at, key.event_id));
    assert_eq!(retaken, in_order, "earliest due first");
    assert_eq!(survivor.mark_sent(&retaken).await.unwrap(), 50);
    assert!(
        survivor
            .claim_due(now + lease * 10, TimeDelta::zero(), lease, 1_000)
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_row_that_fails_validation_is_an_internal_error(pool: PgPool) {
    let repo = PostgresEventRepository::new(pool.clone());
    let id = Uuid::now_v7();
    // Within every CHECK constraint, but a title with a control character is not a Title.
    sqlx::query(
        "INSERT INTO events (id, user_id, title, start_at, end_at, overlap_policy, version, \
             created_at, updated_at, remind_at, reminder_state) \
         VALUES ($1, 'ann', E'Bell\\x07', '2030-03-01T09:00:00Z', '2030-03-01T10:00:00Z', \
             'reject', 1, $2, $2, '2030-03-01T08:50:00Z', 'pending')",
    )
    .bind(id)
    .bind(created())
    .execute(&pool)
    .await
    .unwrap();
    let ann = user("ann");
    let expect_internal = |result: Result<_, RepositoryError>, what: &str| match result {
        Err(RepositoryError::Internal(error)) => {
            let message = error.to_string();
            assert!(
                message.contains(&id.to_string()) && message.contains("title"),
                "{what}: the error names the row and the column: {message}"
            );
        }
        other => panic!("{what}: expected Internal, got {:?}", other.map(|_| ())),
    };
    let event_id = EventId::from_uuid(id).unwrap();
    expect_internal(repo.get(&ann, event_id).await.map(drop), "get");
    let day = TimeRange::new(at("2030-03-01T00:00:00Z"), at("2030-03-02T00:00:00Z")).unwrap();
    expect_internal(repo.list(&ann, day, None, 10).await.map(drop), "list");
    // Read in one statement with other lists, the row fails its own list alone.
    let bobs = event(
        &user("bob"),
        details("Bob's", at("2030-03-01T09:00:00Z"), 60),
        created(),
    );
    repo.insert(&bobs).await.unwrap();
    let lists = join_all((0..8).map(|i| {
        let owner = if i % 2 == 0 { user("ann") } else { user("bob") };
        let repo = &repo;
        async move { (i, repo.list(&owner, day, None, 10).await) }
    }))
    .await;
    for (i, listed) in lists {
        if i % 2 == 0 {
            expect_internal(listed.map(drop), "list together");
        } else {
            assert_eq!(listed.unwrap(), vec![bobs.clone()], "list {i}");
        }
    }
    expect_internal(
        repo.claim_due(
            at("2030-03-01T09:00:00Z"),
            TimeDelta::zero(),
            TimeDelta::seconds(30),
            10,
        )
        .await
        .map(drop),
        "claim",
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn the_database_refuses_rows_outside_the_domain_limits(pool: PgPool) {
    let insert = |title: &'static str, start: &'static str, end: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO events (id, user_id, title, start_at, end_at, overlap_policy, \
                     version, created_at, updated_at) \
                 VALUES (gen_random_uuid(), 'ann', $1, $2::timestamptz, $3::timestamptz, 'allow', \
                     1, $4, $4)",
            )
            .bind(title)
            .bind(start)
            .bind(end)
            .bind(created())
            .execute(&pool)
            .await
        }
    };
    let check_violation = |result: Result<_, sqlx::Error>, what: &str| {
        let error = result.expect_err(what);
        assert_eq!(
            error.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("23514"),
            "{what}: {error}"
        );
    };
    let long_title: &'static str = "x".repeat(201).leak();
    check_violation(
        insert(long_title, "2030-03-01T09:00:00Z", "2030-03-01T10:00:00Z").await,
        "201 characters",
    );
    check_violation(
        insert("Blink", "2030-03-01T09:00:00Z", "2030-03-01T09:00:59Z").await,
        "59 seconds",
    );
    check_violation(
        insert(
            "Marathon",
            "2030-01-01T00:00:00Z",
            "2031-01-02T00:00:00.000001Z",
        )
        .await,
        "366 days and a microsecond",
    );
    check_violation(
        insert("Old", "1899-12-31T23:00:00Z", "1900-01-01T01:00:00Z").await,
        "before 1900",
    );
    check_violation(
        insert("Late", "9999-12-31T23:30:00Z", "10000-01-01T00:30:00Z").await,
        "after 9999",
    );
    insert(
        long_title.split_at(200).0,
        "9999-12-31T23:00:00Z",
        "10000-01-01T00:00:00Z",
    )
    .await
    .expect("200 characters, ending at the very end");
    insert("Leap year", "2028-01-01T00:00:00Z", "2029-01-01T00:00:00Z")
        .await
        .expect("366 days");
}

#[sqlx::test(migrations = false)]
async fn two_processes_migrating_at_once_both_succeed(_: PgPoolOptions, options: PgConnectOptions) {
    let first = PgPoolOptions::new().connect_lazy_with(options.clone());
    let second = PgPoolOptions::new().connect_lazy_with(options);
    let (a, b) = futures::join!(postgres::migrate(&first), postgres::migrate(&second));
    a.expect("first migrator");
    b.expect("second migrator");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&first)
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .count();
    assert_eq!(
        applied,
        i64::try_from(files).unwrap(),
        "each migration once"
    );
    postgres::migrate(&first)
        .await
        .expect("migrating again is a no-op");
    PostgresEventRepository::new(first.clone())
        .check()
        .await
        .expect("check");
    first.close().await;
    second.close().await;
}

#[tokio::test]
async fn a_server_that_is_down_fails_operations_not_start_up() {
    let settings = PoolSettings {
        max_connections: 2,
        acquire_timeout: Duration::from_millis(300),
    };
    // Nothing listens on port 1.
    let pool = postgres::connect("postgres://postgres@127.0.0.1:1/calendar", &settings)
        .await
        .expect("connecting is lazy: no server needed yet");
    let repo = PostgresEventRepository::new(pool.clone());
    assert!(matches!(
        repo.check().await,
        Err(RepositoryError::Unavailable(_))
    ));
    assert!(matches!(
        repo.get(&user("ann"), EventId::generate()).await,
        Err(RepositoryError::Unavailable(_))
    ));
    assert!(matches!(
        repo.insert(&event(
            &user("ann"),
            overlapping(details("Offline", at("2030-03-01T09:00:00Z"), 30)),
            created()
        ))
        .await,
        Err(RepositoryError::Unavailable(_))
    ));
    assert!(matches!(
        postgres::migrate(&pool).await,
        Err(PostgresError::Unavailable(_))
    ));
}

#[tokio::test]
async fn connect_refuses_bad_urls_and_settings() {
    let defaults = PoolSettings::default();
    assert_eq!(defaults.max_connections, 10);
    assert_eq!(defaults.acquire_timeout, Duration::from_secs(5));
    for url in [
        "mysql://localhost/calendar",
        "postgres://localhost:port/calendar",
        "localhost",
    ] {
        assert!(
            matches!(
                postgres::connect(url, &defaults).await,
                Err(PostgresError::InvalidUrl(_))
            ),
            "{url}"
        );
    }
    postgres::connect(
        "postgresql://calendar:secret@db.example:6432/calendar?sslmode=require",
        &defaults,
    )
    .await
    .expect("a valid URL");
    let none = PoolSettings {
        max_connections: 0,
        ..PoolSettings::default()
    };
    assert!(matches!(
        postgres::connect("postgres://localhost/calendar", &none).await,
        Err(PostgresError::InvalidSettings(_))
    ));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_closed_pool_is_unavailable(pool: PgPool) {
    let repo = PostgresEventRepository::new(pool.clone());
    repo.check().await.expect("open pool");
    pool.close().await;
    assert!(matches!(
        repo.check().await,
        Err(RepositoryError::Unavailable(_))
    ));
    assert!(matches!(
        repo.claim_due(created(), TimeDelta::zero(), TimeDelta::seconds(30), 10)
            .await,
        Err(RepositoryError::Unavailable(_))
    ));
}

#[tokio::test]
async fn an_unreachable_database_is_waited_for_until_shutdown() {
    let settings = PoolSettings {
        max_connections: 1,
        acquire_timeout: Duration::from_millis(100),
    };
    // Nothing listens on port 1.
    let pool = postgres::connect("postgres://calendar@127.0.0.1:1/calendar", &settings)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let migrated = postgres::migrate_when_reachable(&pool, &shutdown)
        .await
        .unwrap();
    assert!(!migrated, "nothing migrated without a database");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1_400),
        "{waited:?}: it retried"
    );
    assert!(
        waited < Duration::from_secs(5),
        "{waited:?}: it stopped at shutdown"
    );
}
