-- The thresholds (50, 75, 100 % of the allowed time) each case has passed: a case is warned about a
-- threshold once. `announced` is false for a lower threshold passed in the same check as a higher
-- one, which alone is announced.
CREATE TABLE case_warnings (
    department text        NOT NULL,
    case_id    text        NOT NULL,
    threshold  smallint    NOT NULL CHECK (threshold IN (50, 75, 100)),
    indicator  text        NOT NULL,
    crossed_at timestamptz NOT NULL,
    announced  boolean     NOT NULL,
    PRIMARY KEY (department, case_id, threshold),
    FOREIGN KEY (department, case_id) REFERENCES cases (department, case_id)
);
