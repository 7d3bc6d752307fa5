//! The contract of [`EventRepository`]: what every event store must do.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;

use super::fixtures::{at, details, event, overlapping, user, with_reminder};
use crate::domain::{
    Cursor, Event, EventDetails, EventId, Notification, ReminderKey, TimeRange, Version,
};
use crate::ports::{EventRepository, RepositoryError};

fn created() -> DateTime<Utc> {
    at("2030-01-01T00:00:00Z")
}

async fn insert_ok(repo: &dyn EventRepository, event: &Event) {
    if let Err(error) = repo.insert(event).await {
        panic!("inserting {:?} failed: {error}", event.title());
    }
}

/// Inserting `event` fails as [`RepositoryError::SlotBusy`], naming `in_the_way`.
async fn insert_refused(repo: &dyn EventRepository, event: &Event, in_the_way: &Event) {
    match repo.insert(event).await {
        Err(RepositoryError::SlotBusy { conflicting }) => assert_eq!(
            conflicting,
            Some(in_the_way.id()),
            "{:?} {:?}: the error names the event in the way",
            event.title(),
            event.span()
        ),
        other => panic!(
            "{:?} {:?} overlaps {:?}: expected SlotBusy, got {other:?}",
            event.title(),
            event.span(),
            in_the_way.title()
        ),
    }
}

fn ids(events: &[Event]) -> Vec<EventId> {
    events.iter().map(Event::id).collect()
}

/// An inserted event reads back equal, for its owner only.
pub async fn insert_then_get_returns_the_event(repo: &dyn EventRepository) {
    let ann = user("ann");
    let mut details = with_reminder(details("Dentist", at("2030-03-01T09:00:00Z"), 45), 30);
    details.description = Some(
        crate::domain::Description::new("Bring the X-rays.\nFloor 2")
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let stored = event(&ann, details, created());
    insert_ok(repo, &stored).await;
    let read = repo.get(&ann, stored.id()).await.expect("get");
    assert_eq!(
        read.as_ref(),
        Some(&stored),
        "the event reads back as written"
    );
    assert_eq!(
        repo.get(&ann, EventId::generate())
            .await
            .expect("get missing"),
        None
    );
}

/// An id is unique across all users.
pub async fn insert_rejects_a_taken_id(repo: &dyn EventRepository) {
    let first = event(
        &user("ann"),
        details("First", at("2030-03-01T09:00:00Z"), 60),
        created(),
    );
    insert_ok(repo, &first).await;
    let same_id_other_user = Event::new(
        first.id(),
        user("bob"),
        details("Second", at("2031-03-01T09:00:00Z"), 60),
        created(),
    );
    match repo.insert(&same_id_other_user).await {
        Err(RepositoryError::AlreadyExists { id }) => assert_eq!(id, first.id()),
        other => panic!("a taken id must be AlreadyExists, got {other:?}"),
    }
    match repo.insert(&first).await {
        Err(RepositoryError::AlreadyExists { id }) => assert_eq!(id, first.id()),
        other => panic!("inserting the same event twice must be AlreadyExists, got {other:?}"),
    }
    assert_eq!(repo.get(&user("bob"), first.id()).await.expect("get"), None);
}

/// Another user's event is indistinguishable from a missing one, and left untouched.
pub async fn users_are_isolated(repo: &dyn EventRepository) {
    let (ann, bob) = (user("ann"), user("bob"));
    let start = at("2030-03-01T09:00:00Z");
    let anns = event(&ann, details("Ann's", start, 60), created());
    insert_ok(repo, &anns).await;
    assert_eq!(repo.get(&bob, anns.id()).await.expect("get"), None);
    match repo
        .update(
            &bob,
            anns.id(),
            &details("Bob's now", start, 60),
            None,
            created(),
        )
        .await
    {
        Err(RepositoryError::NotFound { id }) => assert_eq!(id, anns.id()),
        other => panic!("updating another user's event must be NotFound, got {other:?}"),
    }
    match repo
        .update(
            &bob,
            anns.id(),
            &details("Bob's now", start, 60),
            Some(Version::FIRST),
            created(),
        )
        .await
    {
        Err(RepositoryError::NotFound { .. }) => {}
        other => panic!("a version check must not reveal another user's event, got {other:?}"),
    }
    match repo.delete(&bob, anns.id()).await {
        Err(RepositoryError::NotFound { id }) => assert_eq!(id, anns.id()),
        other => panic!("deleting another user's event must be NotFound, got {other:?}"),
    }
    let day =
        TimeRange::new(at("2030-03-01T00:00:00Z"), at("2030-03-02T00:00:00Z")).expect("range");
    assert!(
        repo.list(&bob, day, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    // Bob's own event in the same slot does not conflict with Ann's.
    insert_ok(repo, &event(&bob, details("Bob's", start, 60), created())).await;
    assert_eq!(
        repo.get(&ann, anns.id()).await.expect("get").as_ref(),
        Some(&anns)
    );
    assert_eq!(
        ids(&repo.list(&ann, day, None, 10).await.expect("list")),
        vec![anns.id()]
    );
}

/// Two blocking events of one user may not overlap; back-to-back events and `Allow` events may.
pub async fn overlapping_blocking_events_are_rejected(repo: &dyn EventRepository) {
    let ann = user("ann");
    let anns = |details: EventDetails| event(&ann, details, created());
    let blocking =
        |title: &str, start: &str, minutes: i64| anns(details(title, at(start), minutes));
    let nine = at("2030-03-01T09:00:00Z");
    let meeting = anns(details("Meeting", nine, 60));
    insert_ok(repo, &meeting).await;
    for (start, minutes) in [
        ("2030-03-01T09:30:00Z", 60),
        ("2030-03-01T08:00:00Z", 61),
        ("2030-03-01T08:00:00Z", 180),
        ("2030-03-01T09:00:00Z", 60),
    ] {
        let clash = blocking("Clash", start, minutes);
        insert_refused(repo, &clash, &meeting).await;
    }
    insert_ok(repo, &blocking("Before", "2030-03-01T08:00:00Z", 60)).await;
    insert_ok(repo, &blocking("After", "2030-03-01T10:00:00Z", 60)).await;
    insert_ok(repo, &anns(overlapping(details("Tentative", nine, 60)))).await;
    insert_ok(
        repo,
        &anns(overlapping(details("Also tentative", nine, 30))),
    )
    .await;
    let day =
        TimeRange::new(at("2030-03-01T00:00:00Z"), at("2030-03-02T00:00:00Z")).expect("range");
    assert_eq!(
        repo.list(&ann, day, None, 100).await.expect("list").len(),
        5
    );

    // A blocking event over a slot only non-blocking events hold is stored.
    let hold = anns(overlapping(details("Hold", at("2030-03-02T09:00:00Z"), 60)));
    insert_ok(repo, &hold).await;
    insert_ok(repo, &blocking("Booked", "2030-03-02T09:00:00Z", 60)).await;
    // A blocking event that began days earlier still holds the slot.
    let trip = blocking("Trip", "2030-03-05T00:00:00Z", 3 * 24 * 60);
    insert_ok(repo, &trip).await;
    let during = blocking("During the trip", "2030-03-07T12:00:00Z", 30);
    insert_refused(repo, &during, &trip).await;
}

/// Of 16 concurrent inserts into one slot, exactly one wins.
pub async fn concurrent_inserts_of_one_slot_have_one_winner(repo: &dyn EventRepository) {
    let ann = user("ann");
    let contenders: Vec<Event> = (0..16)
        .map(|i| {
            event(
                &ann,
                details(
                    &format!("Contender {i}"),
                    at("2030-03-01T09:00:00Z") + TimeDelta::minutes(i),
                    60,
                ),
                created(),
            )
        })
        .collect();
    let results = join_all(contenders.iter().map(|e| repo.insert(e))).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        winners, 1,
        "exactly one of 16 overlapping inserts succeeds: {results:?}"
    );
    for result in &results {
        assert!(
            matches!(result, Ok(()) | Err(RepositoryError::SlotBusy { .. })),
            "the losers are SlotBusy, got {result:?}"
        );
    }
    let day =
        TimeRange::new(at("2030-03-01T00:00:00Z"), at("2030-03-02T00:00:00Z")).expect("range");
    assert_eq!(
        repo.list(&ann, day, None, 100).await.expect("list").len(),
        1
    );
}

/// An update replaces the details, bumps the version, keeps `created_at`, sets `updated_at`.
pub async fn update_replaces_details_and_bumps_version(repo: &dyn EventRepository) {
    let ann = user("ann");
    let original = event(
        &ann,
        with_reminder(details("Draft", at("2030-03-01T09:00:00Z"), 60), 10),
        created(),
    );
    insert_ok(repo, &original).await;
    let later = at("2030-01-02T00:00:00Z");
    let replacement = details("Final", at("2030-03-01T09:30:00Z"), 90);
    let updated = repo
        .update(&ann, original.id(), &replacement, None, later)
        .await
        .expect("an event may move over its own old slot");
    assert_eq!(updated.details(), &replacement);
    assert_eq!(updated.version().get(), 2);
    assert_eq!(updated.created_at(), original.created_at());
    assert_eq!(updated.updated_at(), later);
    assert_eq!(updated.owner(), &ann);
    assert_eq!(
        repo.get(&ann, original.id()).await.expect("get").as_ref(),
        Some(&updated)
    );
    let again = repo
        .update(
            &ann,
            original.id(),
            &replacement,
            Some(updated.version()),
            later,
        )
        .await
        .expect("update at the expected version");
    assert_eq!(again.version().get(), 3);
}

/// Updates check the expected version, the owner's other events and existence.
pub async fn update_checks_version_and_overlap(repo: &dyn EventRepository) {
    let ann = user("ann");
    let first = event(
        &ann,
        details("First", at("2030-03-01T09:00:00Z"), 60),
        created(),
    );
    let second = event(
        &ann,
        details("Second", at("2030-03-01T11:00:00Z"), 60),
        created(),
    );
    insert_ok(repo, &first).await;
    insert_ok(repo, &second).await;
    let stale = Version::FIRST.next();
    match repo
        .update(
            &ann,
            first.id(),
            &details("Renamed", at("2030-03-01T09:00:00Z"), 60),
            Some(stale),
            created(),
        )
        .await
    {
        Err(RepositoryError::VersionMismatch { expected, current }) => {
            assert_eq!((expected, current), (stale, Version::FIRST));
        }
        other => panic!("a wrong expected version must be VersionMismatch, got {other:?}"),
    }
    match repo
        .update(
            &ann,
            first.id(),
            &details("Moved", at("2030-03-01T10:30:00Z"), 60),
            None,
            created(),
        )
        .await
    {
        Err(RepositoryError::SlotBusy { conflicting }) => {
            assert_eq!(conflicting, Some(second.id()))
        }
        other => panic!("moving onto another event must be SlotBusy, got {other:?}"),
    }
    assert_eq!(
        repo.get(&ann, first.id()).await.expect("get").as_ref(),
        Some(&first),
        "a refused update changes nothing"
    );
    let missing = EventId::generate();
    match repo
        .update(
            &ann,
            missing,
            &details("Ghost", at("2030-03-01T09:00:00Z"), 60),
            None,
            created(),
        )
        .await
    {
        Err(RepositoryError::NotFound { id }) => assert_eq!(id, missing),
        other => panic!("updating a missing event must be NotFound, got {other:?}"),
    }
    repo.update(
        &ann,
        first.id(),
        &overlapping(details("Tentative", at("2030-03-01T10:30:00Z"), 60)),
        Some(Version::FIRST),
        created(),
    )
    .await
    .expect("an Allow event may overlap");
}

/// A deleted event is gone; deleting it again is NotFound.
pub async fn delete_removes_the_event(repo: &dyn EventRepository) {
    let ann = user("ann");
    let doomed = event(
        &ann,
        details("Doomed", at("2030-03-01T09:00:00Z"), 60),
        created(),
    );
    insert_ok(repo, &doomed).await;
    repo.delete(&ann, doomed.id()).await.expect("delete");
    assert_eq!(repo.get(&ann, doomed.id()).await.expect("get"), None);
    match repo.delete(&ann, doomed.id()).await {
        Err(RepositoryError::NotFound { id }) => assert_eq!(id, doomed.id()),
        other => panic!("deleting twice must be NotFound, got {other:?}"),
    }
    insert_ok(
        repo,
        &event(
            &ann,
            details("Same slot", at("2030-03-01T09:00:00Z"), 60),
            created(),
        ),
    )
    .await;
}

/// A list holds exactly the owner's events overlapping the range, ordered by (start, id).
pub async fn list_returns_overlapping_events_in_order(repo: &dyn EventRepository) {
    let ann = user("ann");
    let day =
        TimeRange::new(at("2030-03-01T00:00:00Z"), at("2030-03-02T00:00:00Z")).expect("range");
    let make = |title: &str, start: &str, minutes: i64| {
        event(
            &ann,
            overlapping(details(title, at(start), minutes)),
            created(),
        )
    };
    let ends_at_start = make("ends at start", "2030-02-28T23:00:00Z", 60);
    let crosses_start = make("crosses start", "2030-02-28T23:00:00Z", 61);
    let inside_a = make("inside a", "2030-03-01T12:00:00Z", 30);
    let inside_b = make("inside b", "2030-03-01T12:00:00Z", 45);
    let crosses_end = make("crosses end", "2030-03-01T23:30:00Z", 60);
    let starts_at_end = make("starts at end", "2030-03-02T00:00:00Z", 60);
    let covers = make("covers", "2030-02-01T00:00:00Z", 60 * 24 * 40);
    let others = event(
        &user("bob"),
        details("bob's", at("2030-03-01T12:00:00Z"), 60),
        created(),
    );
    for e in [
        &ends_at_start,
        &crosses_start,
        &inside_a,
        &inside_b,
        &crosses_end,
        &starts_at_end,
        &covers,
        &others,
    ] {
        insert_ok(repo, e).await;
    }
    let mut expected = vec![
        covers.clone(),
        crosses_start.clone(),
        inside_a.clone(),
        inside_b.clone(),
        crosses_end.clone(),
    ];
    expected.sort_by_key(Event::sort_key);
    let listed = repo.list(&ann, day, None, 100).await.expect("list");
    assert_eq!(
        ids(&listed),
        ids(&expected),
        "events overlapping the day, by (start, id)"
    );
    assert_eq!(listed, expected, "listed events read back whole");
    let limited = repo.list(&ann, day, None, 2).await.expect("list");
    assert_eq!(ids(&limited), ids(&expected[..2]));
    let after = repo
        .list(&ann, day, Some(Cursor::after(&expected[2])), 100)
        .await
        .expect("list");
    assert_eq!(
        ids(&after),
        ids(&expected[3..]),
        "strictly after the cursor"
    );
    let empty = TimeRange::new(day.start(), day.start()).expect("range");
    assert!(
        repo.list(&ann, empty, None, 100)
            .await
            .expect("list")
            .is_empty()
    );
}

/// Paging by cursor sees every event that existed throughout exactly once, in order, while
/// events are inserted before and after the cursor between pages.
pub async fn list_pages_without_gaps_or_duplicates_under_inserts(repo: &dyn EventRepository) {
    let ann = user("ann");
    let day =
        TimeRange::new(at("2030-03-01T00:00:00Z"), at("2030-03-02T00:00:00Z")).expect("range");
    let base = at("2030-03-01T01:00:00Z");
    let mut originals = Vec::new();
    for i in 0..25 {
        // Pairs share a start, so ties are broken by id.
        let e = event(
            &ann,
            overlapping(details(
                &format!("E{i}"),
                base + TimeDelta::minutes(20 * (i / 2)),
                30,
            )),
            created(),
        );
        insert_ok(repo, &e).await;
        originals.push(e);
    }
    originals.sort_by_key(Event::sort_key);
    let mut seen: Vec<Event> = Vec::new();
    let mut cursor = None;
    let mut round = 0;
    loop {
        let page = repo.list(&ann, day, cursor, 7).await.expect("list");
        assert!(page.len() <= 7, "a page holds at most the limit");
        if page.is_empty() {
            break;
        }
        seen.extend(page.iter().cloned());
        cursor = page.last().map(Cursor::after);
        round += 1;
        let early = event(
            &ann,
            overlapping(details(
                "Inserted early",
                base - TimeDelta::minutes(30 - round),
                10,
            )),
            created(),
        );
        let late = event(
            &ann,
            overlapping(details(
                "Inserted late",
                base + TimeDelta::hours(10 + round),
                10,
            )),
            created(),
        );
        insert_ok(repo, &early).await;
        insert_ok(repo, &late).await;
        assert!(round < 50, "paging does not end");
    }
    let keys: Vec<_> = seen.iter().map(Event::sort_key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        keys, sorted,
        "pages are in (start, id) order without duplicates"
    );
    let seen_ids: BTreeSet<EventId> = seen.iter().map(Event::id).collect();
    for original in &originals {
        assert!(
            seen_ids.contains(&original.id()),
            "{:?} was skipped",
            original.title()
        );
    }
    assert!(
        seen.iter().any(|e| e.title().as_str() == "Inserted late"),
        "events inserted after the cursor are reached"
    );
}

/// A due reminder is claimed once per lease, again after the lease, never after it is sent.
pub async fn claim_due_leases_each_reminder(repo: &dyn EventRepository) {
    let ann = user("ann");
    let now = at("2030-03-01T08:50:00Z");
    let lease = TimeDelta::seconds(30);
    let due = event(
        &ann,
        with_reminder(details("Due", at("2030-03-01T09:00:00Z"), 60), 15),
        created(),
    );
    let exactly_due = event(
        &ann,
        with_reminder(details("Exactly due", at("2030-03-01T10:00:00Z"), 60), 70),
        created(),
    );
    let future = event(
        &ann,
        with_reminder(details("Future", at("2030-03-01T11:00:00Z"), 60), 15),
        created(),
    );
    let silent = event(
        &ann,
        details("No reminder", at("2030-03-01T12:00:00Z"), 60),
        created(),
    );
    for e in [&due, &exactly_due, &future, &silent] {
        insert_ok(repo, e).await;
    }
    let claimed = repo
        .claim_due(now, TimeDelta::zero(), lease, 100)
        .await
        .expect("claim");
    let expected: BTreeSet<_> = [due.notification(), exactly_due.notification()]
        .into_iter()
        .flatten()
        .map(|n| n.key())
        .collect();
    assert_eq!(
        claimed.iter().map(|n| n.key()).collect::<BTreeSet<_>>(),
        expected,
        "due at or before now"
    );
    let from_due = claimed
        .iter()
        .find(|n| n.event_id() == due.id())
        .expect("due claimed");
    assert_eq!(
        Some(from_due),
        due.notification().as_ref(),
        "the notification is built from the stored event"
    );
    assert!(
        repo.claim_due(now, TimeDelta::zero(), lease, 100)
            .await
            .expect("claim")
            .is_empty(),
        "leased reminders are not claimed again"
    );
    assert!(
        repo.claim_due(
            now + lease - TimeDelta::seconds(1),
            TimeDelta::zero(),
            lease,
            100
        )
        .await
        .expect("claim")
        .is_empty(),
        "not before the lease ends"
    );
    let after_lease = now + lease;
    let reclaimed = repo
        .claim_due(after_lease, TimeDelta::zero(), lease, 100)
        .await
        .expect("claim");
    assert_eq!(
        reclaimed.iter().map(|n| n.key()).collect::<BTreeSet<_>>(),
        expected,
        "claimed again once the lease ends"
    );
    let sent: Vec<ReminderKey> = reclaimed.iter().map(|n| n.key()).collect();
    assert_eq!(repo.mark_sent(&sent).await.expect("mark sent"), 2);
    assert_eq!(
        repo.mark_sent(&sent).await.expect("mark sent again"),
        0,
        "marking twice marks nothing"
    );
    assert!(
        repo.claim_due(
            after_lease + TimeDelta::hours(1),
            TimeDelta::zero(),
            lease,
            100
        )
        .await
        .expect("claim")
        .iter()
        .all(|n| n.event_id() == future.id()),
        "sent reminders are never claimed again"
    );
}

/// A claim looking ahead takes the reminders due by then, while leases are judged at the
/// claim's own instant.
pub async fn claim_due_looks_ahead(repo: &dyn EventRepository) {
    let ann = user("ann");
    let now = at("2030-03-01T08:45:00Z");
    let lease = TimeDelta::seconds(30);
    let soon = event(
        &ann,
        // Due 20 s from now.
        with_reminder(details("Soon", at("2030-03-01T09:00:20Z"), 1), 15),
        created(),
    );
    let later = event(
        &ann,
        // Due 2 minutes from now.
        with_reminder(details("Later", at("2030-03-01T09:02:00Z"), 30), 15),
        created(),
    );
    for e in [&soon, &later] {
        insert_ok(repo, e).await;
    }
    assert!(
        repo.claim_due(now, TimeDelta::zero(), lease, 10)
            .await
            .expect("claim")
            .is_empty(),
        "nothing is due yet"
    );
    let ahead = repo
        .claim_due(now, TimeDelta::seconds(30), lease, 10)
        .await
        .expect("claim ahead");
    assert_eq!(
        ahead.iter().map(Notification::key).collect::<Vec<_>>(),
        soon.notification()
            .map(|n| n.key())
            .into_iter()
            .collect::<Vec<_>>(),
        "due within the look-ahead"
    );
    assert!(
        repo.claim_due(
            now + TimeDelta::seconds(1),
            TimeDelta::minutes(5),
            lease,
            10
        )
        .await
        .expect("claim")
        .iter()
        .all(|n| n.event_id() == later.id()),
        "the lease runs from the claim's instant, however far a later claim looks ahead"
    );
    assert_eq!(
        repo.claim_due(now + lease, TimeDelta::zero(), lease, 10)
            .await
            .expect("claim after the lease")
            .iter()
            .map(Notification::event_id)
            .collect::<Vec<_>>(),
        [soon.id()],
        "claimed again once its lease ended"
    );
}

/// The reminders still wanted are those whose event exists with its reminder at the key's
/// instant, read as the event is now; deleted events and moved or removed reminders are out.
pub async fn current_reminders_are_those_still_armed(repo: &dyn EventRepository) {
    let ann = user("ann");
    let now = at("2030-03-01T08:00:00Z");
    let reminded = |title: &str, start: &str| {
        event(
            &ann,
            with_reminder(details(title, at(start), 30), 15),
            created(),
        )
    };
    let sent = reminded("Sent", "2030-03-01T09:00:00Z");
    let renamed = reminded("Renamed", "2030-03-01T10:00:00Z");
    let deleted = reminded("Deleted", "2030-03-01T11:00:00Z");
    let moved = reminded("Moved", "2030-03-01T12:00:00Z");
    let silenced = reminded("Silenced", "2030-03-01T13:00:00Z");
    for e in [&sent, &renamed, &deleted, &moved, &silenced] {
        insert_ok(repo, e).await;
    }
    let key = |e: &Event| {
        e.notification()
            .map(|n| n.key())
            .unwrap_or_else(|| panic!("{} has a reminder", e.title()))
    };
    let claimed = repo
        .claim_due(
            at("2030-03-01T08:45:00Z"),
            TimeDelta::zero(),
            TimeDelta::seconds(30),
            10,
        )
        .await
        .expect("claim");
    assert_eq!(
        repo.mark_sent(&[claimed[0].key()])
            .await
            .expect("mark sent"),
        1
    );

    let mut new_title = renamed.details().clone();
    new_title.title =
        crate::domain::Title::new("Renamed, room 4").unwrap_or_else(|e| panic!("{e}"));
    let renamed_now = repo
        .update(&ann, renamed.id(), &new_title, None, now)
        .await
        .expect("rename");
    repo.delete(&ann, deleted.id()).await.expect("delete");
    let moved_now = repo
        .update(
            &ann,
            moved.id(),
            &with_reminder(details("Moved", at("2030-03-01T12:30:00Z"), 30), 15),
            None,
            now,
        )
        .await
        .expect("move");
    let mut without = silenced.details().clone();
    without.notify_before = None;
    repo.update(&ann, silenced.id(), &without, None, now)
        .await
        .expect("silence");
    let unknown = ReminderKey {
        event_id: EventId::generate(),
        remind_at: at("2030-03-01T08:45:00Z"),
    };

    let asked = [
        key(&sent),
        key(&renamed),
        key(&deleted),
        key(&moved),
        key(&moved_now),
        key(&silenced),
        unknown,
        key(&sent),
    ];
    let mut current = repo.current_reminders(&asked).await.expect("current");
    current.sort_by_key(Notification::key);
    let mut expected: Vec<Notification> = [&sent, &renamed_now, &moved_now]
        .into_iter()
        .filter_map(|e| e.notification())
        .collect();
    expected.sort_by_key(Notification::key);
    assert_eq!(
        current, expected,
        "sent or pending, as the events read now, each once; not deleted, moved or removed"
    );
    assert!(
        repo.current_reminders(&[])
            .await
            .expect("none asked")
            .is_empty(),
        "nothing asked, nothing answered"
    );
}

/// A claim takes at most `limit` reminders, earliest due first.
pub async fn claim_due_respects_limit_and_order(repo: &dyn EventRepository) {
    let ann = user("ann");
    let mut events = Vec::new();
    for i in 0..6 {
        let e = event(
            &ann,
            overlapping(with_reminder(
                details(&format!("R{i}"), at("2030-03-01T09:00:00Z"), 60),
                10 * (i + 1),
            )),
            created(),
        );
        insert_ok(repo, &e).await;
        events.push(e);
    }
    let now = at("2030-03-01T09:00:00Z") - TimeDelta::minutes(1);
    let first = repo
        .claim_due(now, TimeDelta::zero(), TimeDelta::seconds(30), 4)
        .await
        .expect("claim");
    let mut times: Vec<_> = first.iter().map(|n| n.remind_at()).collect();
    assert_eq!(times.len(), 4);
    let earliest_four: Vec<_> = (3..=6)
        .rev()
        .map(|i| at("2030-03-01T09:00:00Z") - TimeDelta::minutes(10 * i))
        .collect();
    times.sort();
    assert_eq!(times, earliest_four, "earliest due first");
    let rest = repo
        .claim_due(now, TimeDelta::zero(), TimeDelta::seconds(30), 4)
        .await
        .expect("claim");
    assert_eq!(rest.len(), 2);
}

/// A released reminder is claimable at once; a skipped one never again.
pub async fn released_and_skipped_reminders(repo: &dyn EventRepository) {
    let ann = user("ann");
    let a = event(
        &ann,
        overlapping(with_reminder(
            details("A", at("2030-03-01T09:00:00Z"), 60),
            15,
        )),
        created(),
    );
    let b = event(
        &ann,
        overlapping(with_reminder(
            details("B", at("2030-03-01T09:00:00Z"), 60),
            15,
        )),
        created(),
    );
    insert_ok(repo, &a).await;
    insert_ok(repo, &b).await;
    let now = at("2030-03-01T08:50:00Z");
    let lease = TimeDelta::minutes(5);
    assert_eq!(
        repo.claim_due(now, TimeDelta::zero(), lease, 10)
            .await
            .expect("claim")
            .len(),
        2
    );
    let (a_key, b_key) = (
        a.reminder().expect("a reminder"),
        b.reminder().expect("b reminder"),
    );
    assert_eq!(repo.release(&[a_key]).await.expect("release"), 1);
    assert_eq!(repo.mark_skipped(&[b_key]).await.expect("skip"), 1);
    let again = repo
        .claim_due(now, TimeDelta::zero(), lease, 10)
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|n| n.key()).collect::<Vec<_>>(),
        vec![a_key],
        "released is claimable, skipped is not"
    );
    assert!(
        repo.claim_due(now + lease * 10, TimeDelta::zero(), lease, 10)
            .await
            .expect("claim")
            .iter()
            .all(|n| n.key() == a_key)
    );
    let gone = ReminderKey {
        event_id: EventId::generate(),
        remind_at: now,
    };
    assert_eq!(repo.mark_sent(&[gone]).await.expect("mark unknown"), 0);
    assert_eq!(repo.release(&[gone]).await.expect("release unknown"), 0);
}

/// Changing the reminder instant re-arms a sent reminder; other changes do not; a confirmation
/// of the old instant does not settle the new one; deleting cancels.
pub async fn update_rearms_and_delete_cancels_reminders(repo: &dyn EventRepository) {
    let ann = user("ann");
    let lease = TimeDelta::seconds(30);
    let original = with_reminder(details("Call", at("2030-03-01T09:00:00Z"), 30), 15);
    let e = event(&ann, original.clone(), created());
    insert_ok(repo, &e).await;
    let now = at("2030-03-01T08:50:00Z");
    let claimed = repo
        .claim_due(now, TimeDelta::zero(), lease, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let old_key = claimed[0].key();
    assert_eq!(repo.mark_sent(&[old_key]).await.expect("mark"), 1);

    let mut renamed = original.clone();
    renamed.title = crate::domain::Title::new("Call (renamed)").unwrap_or_else(|e| panic!("{e}"));
    repo.update(&ann, e.id(), &renamed, None, now)
        .await
        .expect("rename");
    assert!(
        repo.claim_due(now, TimeDelta::zero(), lease, 10)
            .await
            .expect("claim")
            .is_empty(),
        "a rename does not re-arm a sent reminder"
    );

    let moved = with_reminder(
        details("Call (renamed)", at("2030-03-01T09:05:00Z"), 30),
        15,
    );
    repo.update(&ann, e.id(), &moved, None, now)
        .await
        .expect("move");
    let rearmed = repo
        .claim_due(now, TimeDelta::zero(), lease, 10)
        .await
        .expect("claim");
    assert_eq!(rearmed.len(), 1, "moving the start re-arms the reminder");
    assert_eq!(rearmed[0].remind_at(), at("2030-03-01T08:50:00Z"));
    assert_eq!(rearmed[0].title().as_str(), "Call (renamed)");

    // Moved again while leased: the new reminder is due at once, and the old one's confirmation
    // must not settle it.
    let new_lead = with_reminder(moved.clone(), 20);
    repo.update(&ann, e.id(), &new_lead, None, now)
        .await
        .expect("new lead");
    assert_eq!(
        repo.mark_sent(&[rearmed[0].key()])
            .await
            .expect("stale mark"),
        0,
        "a stale key settles nothing"
    );
    let latest = repo
        .claim_due(now, TimeDelta::zero(), lease, 10)
        .await
        .expect("claim");
    assert_eq!(
        latest.iter().map(|n| n.remind_at()).collect::<Vec<_>>(),
        vec![at("2030-03-01T08:45:00Z")],
        "re-armed even while leased"
    );

    let mut silenced = new_lead.clone();
    silenced.notify_before = None;
    repo.update(&ann, e.id(), &silenced, None, now)
        .await
        .expect("silence");
    assert!(
        repo.claim_due(now + lease, TimeDelta::zero(), lease, 10)
            .await
            .expect("claim")
            .is_empty(),
        "removing the lead cancels"
    );

    let other = event(
        &ann,
        with_reminder(details("Other", at("2030-03-01T10:00:00Z"), 30), 90),
        created(),
    );
    insert_ok(repo, &other).await;
    repo.delete(&ann, other.id()).await.expect("delete");
    assert!(
        repo.claim_due(now + lease * 2, TimeDelta::zero(), lease, 10)
            .await
            .expect("claim")
            .is_empty(),
        "deleting cancels"
    );
}

/// Four concurrent claimers over 400 due reminders: each reminder is claimed exactly once.
pub async fn concurrent_claimers_never_share_a_reminder(repo: &dyn EventRepository) {
    let ann = user("ann");
    let start = at("2030-03-01T09:00:00Z");
    for i in 0..400 {
        let e = event(
            &ann,
            overlapping(with_reminder(
                details(&format!("R{i}"), start + TimeDelta::seconds(i), 30),
                10,
            )),
            created(),
        );
        insert_ok(repo, &e).await;
    }
    let now = start;
    let claimer = || async {
        let mut mine = Vec::new();
        loop {
            let batch = repo
                .claim_due(now, TimeDelta::zero(), TimeDelta::minutes(5), 25)
                .await
                .expect("claim");
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch.into_iter().map(|n| n.key()));
        }
    };
    let claims = join_all((0..4).map(|_| claimer())).await;
    let mut count: HashMap<ReminderKey, usize> = HashMap::new();
    for key in claims.iter().flatten() {
        *count.entry(*key).or_default() += 1;
    }
    assert_eq!(count.len(), 400, "every reminder is claimed");
    assert!(
        count.values().all(|n| *n == 1),
        "no reminder is claimed twice"
    );
}

/// Cleanup deletes events that ended before the cutoff, at most `limit` per call.
pub async fn cleanup_deletes_events_ended_before_the_cutoff_in_batches(repo: &dyn EventRepository) {
    let (ann, bob) = (user("ann"), user("bob"));
    let cutoff = at("2029-01-01T00:00:00Z");
    let mut old = Vec::new();
    for (i, owner) in [&ann, &bob, &ann].into_iter().enumerate() {
        let e = event(
            owner,
            with_reminder(
                details(
                    "Old",
                    at("2028-06-01T09:00:00Z") + TimeDelta::days(i as i64),
                    60,
                ),
                10,
            ),
            created(),
        );
        insert_ok(repo, &e).await;
        old.push(e);
    }
    let ends_at_cutoff = event(
        &ann,
        details("Ends at cutoff", cutoff - TimeDelta::hours(1), 60),
        created(),
    );
    let recent = event(
        &ann,
        details("Recent", at("2030-06-01T09:00:00Z"), 60),
        created(),
    );
    insert_ok(repo, &ends_at_cutoff).await;
    insert_ok(repo, &recent).await;
    assert_eq!(
        repo.delete_ended_before(cutoff, 2).await.expect("cleanup"),
        2
    );
    assert_eq!(
        repo.delete_ended_before(cutoff, 2).await.expect("cleanup"),
        1
    );
    assert_eq!(
        repo.delete_ended_before(cutoff, 2).await.expect("cleanup"),
        0
    );
    for e in &old {
        assert_eq!(
            repo.get(e.owner(), e.id()).await.expect("get"),
            None,
            "old events are gone"
        );
    }
    assert!(
        repo.get(&ann, ends_at_cutoff.id())
            .await
            .expect("get")
            .is_some(),
        "an event ending at the cutoff stays"
    );
    assert!(repo.get(&ann, recent.id()).await.expect("get").is_some());
    assert!(
        repo.claim_due(
            at("2030-01-01T00:00:00Z"),
            TimeDelta::zero(),
            TimeDelta::seconds(30),
            10
        )
        .await
        .expect("claim")
        .is_empty(),
        "deleted events' reminders are gone"
    );
}

/// A working store answers its health check.
pub async fn check_answers(repo: &dyn EventRepository) {
    repo.check()
        .await
        .expect("a working store answers its health check");
}

/// One cleanup claim at a time: others are refused until it runs out; its holder may renew it.
pub async fn cleanup_is_claimed_by_one_holder_at_a_time(repo: &dyn EventRepository) {
    let now = at("2030-03-01T09:00:00Z");
    let until = now + TimeDelta::minutes(5);
    assert!(
        repo.claim_cleanup("scheduler-a", now, until)
            .await
            .expect("claim"),
        "a free claim is granted"
    );
    assert!(
        !repo
            .claim_cleanup("scheduler-b", now + TimeDelta::minutes(1), until)
            .await
            .expect("claim"),
        "another holder is refused while the claim runs"
    );
    assert!(
        repo.claim_cleanup(
            "scheduler-a",
            now + TimeDelta::minutes(2),
            now + TimeDelta::minutes(10)
        )
        .await
        .expect("renew"),
        "the holder renews its claim"
    );
    assert!(
        !repo
            .claim_cleanup(
                "scheduler-b",
                now + TimeDelta::minutes(9),
                now + TimeDelta::minutes(20)
            )
            .await
            .expect("claim"),
        "the renewed claim still runs"
    );
    assert!(
        repo.claim_cleanup(
            "scheduler-b",
            now + TimeDelta::minutes(10),
            now + TimeDelta::minutes(20)
        )
        .await
        .expect("claim"),
        "a claim that ran out is taken over"
    );
    assert!(
        !repo
            .claim_cleanup(
                "scheduler-a",
                now + TimeDelta::minutes(11),
                now + TimeDelta::minutes(30)
            )
            .await
            .expect("claim"),
        "the old holder is refused now"
    );
    let racers = join_all((0..8).map(|i| async move {
        let holder = format!("racer-{i}");
        repo.claim_cleanup(
            &holder,
            now + TimeDelta::hours(1),
            now + TimeDelta::hours(2),
        )
        .await
    }))
    .await;
    let winners = racers.iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(
        winners, 1,
        "of concurrent claimers exactly one wins: {racers:?}"
    );
}

/// What one step of [`users_are_isolated_under_any_operations`] does.
#[derive(Debug, Clone)]
enum Step {
    /// `user` creates an event in hour `hour` of the test day.
    Create { user: usize, hour: u32 },
    /// `user` reads the `nth` event created so far (of whichever owner).
    Get { user: usize, nth: usize },
    /// `user` moves the `nth` event to hour `hour`.
    Update { user: usize, nth: usize, hour: u32 },
    /// `user` deletes the `nth` event.
    Delete { user: usize, nth: usize },
    /// `user` lists the test day.
    List { user: usize },
}

fn steps() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
    use proptest::prelude::*;
    let user = 0usize..2;
    let nth = 0usize..12;
    let hour = 0u32..24;
    let step = prop_oneof![
        3 => (user.clone(), hour.clone()).prop_map(|(user, hour)| Step::Create { user, hour }),
        2 => (user.clone(), nth.clone()).prop_map(|(user, nth)| Step::Get { user, nth }),
        2 => (user.clone(), nth.clone(), hour).prop_map(|(user, nth, hour)| Step::Update { user, nth, hour }),
        1 => (user.clone(), nth).prop_map(|(user, nth)| Step::Delete { user, nth }),
        1 => user.prop_map(|user| Step::List { user }),
    ];
    proptest::collection::vec(step, 1..40)
}

/// A property over generated operation sequences (64 sequences of up to 40 steps by two users):
/// whatever one user does, another user's events are never read, listed, changed or deleted
/// through it, and the user's own operations behave as if the other user did not exist.
/// Each sequence uses fresh user ids, so the store need not be empty.
pub async fn users_are_isolated_under_any_operations(repo: &dyn EventRepository) {
    use proptest::strategy::{Strategy as _, ValueTree as _};
    use proptest::test_runner::{Config, TestRunner};

    let day_start = at("2031-05-05T00:00:00Z");
    let day = TimeRange::new(day_start, day_start + TimeDelta::days(1)).expect("range");
    let mut runner = TestRunner::new(Config::default());
    for case in 0..64 {
        let sequence = steps()
            .new_tree(&mut runner)
            .expect("a generated sequence")
            .current();
        let users = [
            user(&format!("iso-{case}-a-{}", EventId::generate())),
            user(&format!("iso-{case}-b-{}", EventId::generate())),
        ];
        // The model: every event created so far and what its owner last stored.
        let mut model: Vec<(usize, Event, bool)> = Vec::new();
        for (index, step) in sequence.iter().enumerate() {
            let context = format!("case {case}, step {index} {step:?} of {sequence:?}");
            match *step {
                Step::Create { user, hour } => {
                    let details = overlapping(details(
                        "Iso",
                        day_start + TimeDelta::hours(i64::from(hour)),
                        30,
                    ));
                    let e = event(&users[user], details, created());
                    repo.insert(&e)
                        .await
                        .unwrap_or_else(|error| panic!("{context}: {error}"));
                    model.push((user, e, true));
                }
                Step::Get { user, nth } => {
                    let Some((owner, e, alive)) = model.get(nth) else {
                        continue;
                    };
                    let got = repo
                        .get(&users[user], e.id())
                        .await
                        .unwrap_or_else(|error| panic!("{context}: {error}"));
                    let expected = (*owner == user && *alive).then(|| e.clone());
                    assert_eq!(got, expected, "{context}");
                }
                Step::Update { user, nth, hour } => {
                    let Some((owner, e, alive)) = model.get_mut(nth) else {
                        continue;
                    };
                    let moved = overlapping(details(
                        "Moved",
                        day_start + TimeDelta::hours(i64::from(hour)),
                        30,
                    ));
                    let result = repo
                        .update(&users[user], e.id(), &moved, None, created())
                        .await;
                    if *owner == user && *alive {
                        *e = result.unwrap_or_else(|error| panic!("{context}: {error}"));
                    } else {
                        assert!(
                            matches!(result, Err(RepositoryError::NotFound { .. })),
                            "{context}: {result:?}"
                        );
                    }
                }
                Step::Delete { user, nth } => {
                    let Some((owner, e, alive)) = model.get_mut(nth) else {
                        continue;
                    };
                    let result = repo.delete(&users[user], e.id()).await;
                    if *owner == user && *alive {
                        result.unwrap_or_else(|error| panic!("{context}: {error}"));
                        *alive = false;
                    } else {
                        assert!(
                            matches!(result, Err(RepositoryError::NotFound { .. })),
                            "{context}: {result:?}"
                        );
                    }
                }
                Step::List { user } => {
                    let listed = repo
                        .list(&users[user], day, None, 100)
                        .await
                        .unwrap_or_else(|error| panic!("{context}: {error}"));
                    let mut expected: Vec<Event> = model
                        .iter()
                        .filter(|(owner, _, alive)| *owner == user && *alive)
                        .map(|(_, e, _)| e.clone())
                        .collect();
                    expected.sort_by_key(Event::sort_key);
                    assert_eq!(listed, expected, "{context}");
                }
            }
        }
        // In the end, each user sees exactly their own living events.
        for (owner, e, alive) in &model {
            for (who, user) in users.iter().enumerate() {
                let got = repo.get(user, e.id()).await.expect("get");
                assert_eq!(
                    got.is_some(),
                    who == *owner && *alive,
                    "case {case}: final state of {:?}",
                    e.id()
                );
            }
        }
    }
}
