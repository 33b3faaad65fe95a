-- Events the district office voided: applied once, found wrong (a report dated 9999-12-31 that would
-- stay its task's latest for ever), and excluded from every fold since. Who, when and why are kept;
-- the voided row itself stays in its table, so nothing accepted is lost. Append-only: a void is
-- never edited or withdrawn (a wrong void is answered by the department resending the event anew).
CREATE TABLE voided_events (
    source     text        NOT NULL,
    event_id   text        NOT NULL,
    type       text        NOT NULL,
    subject    text        NOT NULL,
    reason     text        NOT NULL CHECK (length(btrim(reason)) > 0),
    principal  text        NOT NULL CHECK (length(btrim(principal)) > 0),
    voided_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);

CREATE FUNCTION voided_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'voided_events is append-only: a void is never changed or removed';
END $$;
CREATE TRIGGER voided_events_append_only BEFORE UPDATE OR DELETE ON voided_events
    FOR EACH ROW EXECUTE FUNCTION voided_events_append_only();
