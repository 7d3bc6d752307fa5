-- The sender's delivery log: the idempotency key (`<event id>@<reminder instant in µs>`) of
-- every notification delivered, so that one published twice is delivered once, across sender
-- restarts and between competing senders. Keys older than the sender's retention are deleted
-- (by delivered_at); a duplicate only arrives minutes after the first delivery.
CREATE TABLE deliveries (
    idempotency_key text        PRIMARY KEY CHECK (octet_length(idempotency_key) BETWEEN 1 AND 100),
    delivered_at    timestamptz NOT NULL
);

CREATE INDEX deliveries_delivered_at ON deliveries (delivered_at);
