-- Parked outbox rows: a change event that can never be published (it breaks its contract, the broker
-- refuses its size) is kept and marked with the reason instead of blocking every row after it.
-- Operators list and release them with `duban outbox` (docs/runbooks/dead-letters-increasing.md).
ALTER TABLE outbox ADD COLUMN parked_at timestamptz, ADD COLUMN park_reason text;
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_parked ON outbox (seq) WHERE parked_at IS NOT NULL;
