-- Who runs a maintenance task (cleanup) and until when: of several schedulers, only the holder
-- of an unexpired claim cleans up. A claim is taken over once it has run out.
CREATE TABLE maintenance_claims (
    task       text        PRIMARY KEY,
    holder     text        NOT NULL CHECK (octet_length(holder) BETWEEN 1 AND 200),
    expires_at timestamptz NOT NULL
);
