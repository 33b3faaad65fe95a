-- The hand-off's claim: a board that is handing a bulletin to the notifier holds it until this instant (the
-- database's clock), so that no other board posts it meanwhile; the claim is a short committed UPDATE, not a row
-- lock held across the HTTP call. A board that stops mid-hand-off leaves a claim that simply runs out.
ALTER TABLE bulletins ADD COLUMN handoff_claimed_until timestamptz;
