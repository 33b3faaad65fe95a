-- Deliveries of other notices than an escalation's: case warnings (item = <department>/<case id>,
-- level = the threshold in %, window = the day the case opened) and digests (item = the department,
-- level 0, window = the day or the week's first working day). Once per
-- (kind, item, level, window, channel, recipient).
ALTER TABLE deliveries
    ALTER COLUMN escalation_id DROP NOT NULL,
    ADD COLUMN kind text NOT NULL DEFAULT 'escalation' CHECK (kind IN ('escalation', 'case-warning', 'digest', 'weekly-digest')),
    ADD CONSTRAINT deliveries_escalation_has_its_escalation CHECK ((kind = 'escalation') = (escalation_id IS NOT NULL)),
    DROP CONSTRAINT deliveries_item_level_window_start_channel_recipient_key;
CREATE UNIQUE INDEX deliveries_once ON deliveries (kind, item, level, window_start, channel, recipient);

-- Case warnings as received (the notice's facts), for the digests of departments whose routes take one.
CREATE TABLE case_warnings (
    department text        NOT NULL,
    case_id    text        NOT NULL,
    threshold  smallint    NOT NULL,
    as_of      timestamptz NOT NULL,
    notice     jsonb       NOT NULL,
    PRIMARY KEY (department, case_id, threshold)
);
CREATE INDEX case_warnings_recent ON case_warnings (department, as_of);
