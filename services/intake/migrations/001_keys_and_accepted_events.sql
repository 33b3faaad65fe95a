-- Department API keys. Only a SHA-256 of each token is kept: the token is 256 random bits, so a
-- fast hash is as strong as a slow one and costs microseconds per request (docs/intake.md).
CREATE TABLE api_keys (
    key_id       text        PRIMARY KEY,          -- the token's visible prefix, dbk_<code>_<8 characters>
    department   text        NOT NULL,
    token_sha256 bytea       NOT NULL UNIQUE,
    label        text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- NULL: valid. A future instant: valid until then (a rotated key's grace period). Past: revoked.
    revoked_at   timestamptz,
    replaced_by  text        REFERENCES api_keys (key_id)
);
CREATE INDEX api_keys_department ON api_keys (department);

-- Events the broker acknowledged, by their idempotency key. Written only after the acknowledgement,
-- so a repeat is answered as a duplicate and never published twice.
CREATE TABLE accepted_events (
    source       text        NOT NULL,
    id           text        NOT NULL,
    type         text        NOT NULL,
    subject      text        NOT NULL,
    accepted_at  timestamptz NOT NULL DEFAULT now(),
    payload_hash bytea       NOT NULL,             -- SHA-256 of the event without source and id
    PRIMARY KEY (source, id)
);
