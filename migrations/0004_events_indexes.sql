-- A user's events overlapping [t1, t2), ordered by (start, id) for keyset pagination:
--   WHERE user_id = $1 AND (start_at, id) > ($cursor) AND start_at < t2 AND end_at > t1
--   ORDER BY start_at, id LIMIT n
-- Events last at most 366 days, so the scan starts 366 days before t1 at the latest.
CREATE INDEX events_user_start ON events (user_id, start_at, id);

-- Reminders waiting to be sent, earliest due first: the scheduler's claim reads only these.
-- Sent and skipped reminders (the vast majority, over time) are not in the index.
CREATE INDEX events_reminder_due ON events (remind_at, id) WHERE reminder_state = 'pending';

-- Cleanup of events that ended before a cutoff.
CREATE INDEX events_end ON events (end_at);
