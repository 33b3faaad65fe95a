-- The bulletin the board issues on its schedule (issued_by 'schedule'): one per week, whichever replica
-- gets there first. And the hand-off of every bulletin to the notifier, which mails it to the district
-- office: a bulletin waits with handed_over_at NULL (and the last refusal) until the notifier accepted it.
ALTER TABLE bulletins
    ADD COLUMN automatic      boolean     NOT NULL DEFAULT false,
    ADD COLUMN summary        text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN handed_over_at timestamptz,
    ADD COLUMN handover_error text;
CREATE UNIQUE INDEX bulletins_one_automatic_per_week ON bulletins (week) WHERE automatic;
CREATE INDEX bulletins_to_hand_over ON bulletins (id) WHERE handed_over_at IS NULL;
-- Issued before bulletins were mailed: they were circulated by hand and are not mailed now.
UPDATE bulletins SET handed_over_at = issued_at;
