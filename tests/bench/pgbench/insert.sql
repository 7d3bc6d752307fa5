-- The INSERT of PostgresEventRepository::insert (calendar-adapters/src/postgres/repository.rs),
-- character for character between the markers; calendar-bench replaces each $n by the pgbench
-- expression of the same value (see tests/bench/pgbench.rs) and checks, in its tests, that the
-- statement is still one the adapter runs (.sqlx/).
-- statement:
INSERT INTO events (
    id, user_id, title, description, start_at, end_at, overlap_policy,
    version, created_at, updated_at, remind_at, reminder_state
)
VALUES (
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
    CASE WHEN $11::timestamptz IS NULL THEN NULL ELSE 'pending' END
)
ON CONFLICT DO NOTHING
