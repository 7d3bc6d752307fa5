-- The "time slot busy" rule, enforced by the database so that two concurrent writers can never
-- both win: no two 'reject' events of one user may overlap. Spans are half-open, so
-- back-to-back events (one ends where the next starts) do not overlap. A violation is SQLSTATE
-- 23P01 (exclusion_violation); inserts use ON CONFLICT DO NOTHING against it instead.
-- The constraint's GiST index also answers "which event is in the way?".
ALTER TABLE events
    ADD CONSTRAINT events_no_overlap
    EXCLUDE USING gist (user_id WITH =, span WITH &&)
    WHERE (overlap_policy = 'reject');
