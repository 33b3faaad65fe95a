-- The audit trail of every escalation: each level and light change, acknowledgement (with the
-- authenticated principal), extension, verification event and delivery attempt with its result, as a
-- row added when it happens. Append-only: a trigger refuses UPDATE and DELETE, so what an auditor reads
-- is what was written then, whatever the escalation's own row says now (GET /v1/escalations/{id}/history).
CREATE TABLE escalation_history (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    escalation_id bigint      NOT NULL REFERENCES escalations (id),
    at            timestamptz NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('opened', 'level-changed', 'light-changed', 'resolved',
                                                       'acknowledged', 'extension-decided', 'awaiting-verification',
                                                       'verified', 'returned', 'resumed', 'delivery')),
    principal     text,       -- who, when a person acted (the token's subject)
    level         smallint    NOT NULL,
    light         text        NOT NULL,
    detail        jsonb       NOT NULL DEFAULT '{}',
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX escalation_history_of ON escalation_history (escalation_id, id);

CREATE FUNCTION escalation_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'escalation_history is append-only: an entry is never changed or removed';
END $$;
CREATE TRIGGER escalation_history_append_only BEFORE UPDATE OR DELETE ON escalation_history
    FOR EACH ROW EXECUTE FUNCTION escalation_history_append_only();

-- 办结销号: while the district office has not verified the department's "done", the item's escalation
-- waits (nothing is planned or sent); a return resumes it, a verification resolves it.
ALTER TABLE escalations ADD COLUMN awaiting_verification_since timestamptz;
DROP INDEX escalations_due;
CREATE INDEX escalations_due ON escalations (next_check_at) WHERE resolved_at IS NULL AND awaiting_verification_since IS NULL;

-- Approved extensions (the extension-decided events): the deadline in force of a
-- milestone occurrence, which notices name instead of the plan's date.
CREATE TABLE milestone_deadlines (
    milestone_id text NOT NULL,
    original_due date NOT NULL,
    due          date NOT NULL,
    PRIMARY KEY (milestone_id, original_due)
);
