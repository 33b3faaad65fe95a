-- Tables every event-consuming service has in its own schema (the search_path is that schema).

-- Processed-events ledger: (source, id) is the CloudEvents idempotency key. An event whose key is
-- already here has taken effect and is skipped, whatever the redelivery.
CREATE TABLE processed_events (
    source       text        NOT NULL,
    id           text        NOT NULL,
    type         text        NOT NULL,
    topic        text        NOT NULL,
    kafka_partition integer  NOT NULL,
    kafka_offset bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, id)
);

-- Transactional outbox: change events written in the same transaction as the state they announce,
-- relayed to Kafka in id order by one relay at a time (see duban/outbox.py).
CREATE TABLE outbox (
    seq          bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    type         text        NOT NULL,
    subject      text        NOT NULL,
    event_time   timestamptz NOT NULL,
    data         jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

-- Wake the relay once per inserting statement instead of making it poll hard.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_inserted AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
