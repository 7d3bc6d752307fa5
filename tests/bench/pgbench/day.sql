-- The SELECT of a list read alone (calendar-adapters/src/postgres/lists.rs, List::alone),
-- character for character between the markers; calendar-bench replaces each $n by the pgbench
-- expression of the same value (see tests/bench/pgbench.rs) and checks, in its tests, that the
-- statement is still one the adapter runs (.sqlx/).
-- statement:
SELECT id, user_id, title, description, start_at, end_at, overlap_policy,
       remind_at, version, created_at, updated_at
FROM events
WHERE user_id = $1
  AND (start_at, id) > ($2, $3)
  AND start_at < $4
  AND end_at > $5
ORDER BY start_at, id
LIMIT $6
