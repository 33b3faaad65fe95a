-- The 督查通报 the board handed over (POST /v1/bulletins), kept as received: the Word document is attached
-- to each mail, the HTML is the mail's body. Keyed by the board's bulletin id: a repeat is the same bulletin.
CREATE TABLE bulletins (
    bulletin_id bigint      PRIMARY KEY,
    week        text        NOT NULL,
    title       text        NOT NULL,
    summary     text[]      NOT NULL,
    html        text        NOT NULL,
    document    bytea       NOT NULL,
    received_at timestamptz NOT NULL,
    received_by text        NOT NULL
);

-- Its mails are deliveries (kind 'bulletin', item = the bulletin id, level 0, window = the day received),
-- once per district-office e-mail address, planned in the transaction that stored the bulletin.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_kind_check,
    ADD CONSTRAINT deliveries_kind_check
        CHECK (kind IN ('escalation', 'case-warning', 'digest', 'weekly-digest', 'bulletin'));
