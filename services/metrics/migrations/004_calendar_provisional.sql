-- Figures computed on a provisional calendar year (statutory holidays only, docs/calendar.md) say so,
-- and are recomputed when the year's official schedule arrives.
ALTER TABLE cases ADD COLUMN calendar_provisional boolean NOT NULL DEFAULT false;
-- Measured cases of the row whose clock rests on a provisional year: the figure is provisional while > 0.
ALTER TABLE indicator_sums ADD COLUMN provisional integer NOT NULL DEFAULT 0;
-- The calendar version a clock-based value was computed with (NULL for reported figures).
ALTER TABLE indicator_history ADD COLUMN calendar_version text;
CREATE INDEX cases_recompute ON cases (calendar_version) WHERE calendar_provisional OR clock_error IS NOT NULL;
