-- Lights: the reason and instant of the current light, and on what calendar basis it was computed.
-- light_as_of is NULL until the first evaluation (its light-changed event then has from = null).
ALTER TABLE tasks
    ADD COLUMN light_reason         text,
    ADD COLUMN light_as_of          timestamptz,
    ADD COLUMN light_basis          text NOT NULL DEFAULT 'working_days',
    ADD COLUMN light_uncovered_year integer,
    ADD COLUMN next_due             date,
    ADD COLUMN last_event_id        text;

-- The current report of a task is the first in this order (services/tracker/store.py, current_reports).
CREATE INDEX task_reports_current ON task_reports (task_id, event_time DESC, source DESC, event_id DESC);

-- Every accepted milestone completion; milestone states are derived from these.
CREATE TABLE milestone_completions (
    source       text        NOT NULL,
    event_id     text        NOT NULL,
    task_id      text        NOT NULL REFERENCES tasks (id),
    milestone_id text        NOT NULL,
    event_time   timestamptz NOT NULL,
    note         text,
    evidence_url text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);
CREATE INDEX milestone_completions_by_task ON milestone_completions (task_id);

-- One row per occurrence of a milestone (a yearly milestone has one per year), as last evaluated.
CREATE TABLE milestones (
    milestone_id  text        NOT NULL,
    due           date        NOT NULL,
    task_id       text        NOT NULL REFERENCES tasks (id),
    starts        date        NOT NULL,
    status        text        NOT NULL,
    done_at       timestamptz,
    done_by       text,
    done_event_id text,
    status_as_of  timestamptz NOT NULL,
    PRIMARY KEY (milestone_id, due)
);
CREATE INDEX milestones_by_task ON milestones (task_id, due);

-- Every accepted case event: a case's state is the fold of these (services/tracker/domain/cases.py).
CREATE TABLE case_events (
    source      text        NOT NULL,
    event_id    text        NOT NULL,
    department  text        NOT NULL,
    case_id     text        NOT NULL,
    type        text        NOT NULL,
    event_time  timestamptz NOT NULL,
    data        jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);
CREATE INDEX case_events_by_case ON case_events (department, case_id);

-- Case ids are unique per department only. `state` is the folded state, `announced` what the
-- change events last said about it (so nothing is announced twice and corrections are detected).
CREATE TABLE cases (
    department text        NOT NULL,
    case_id    text        NOT NULL,
    case_type  text,
    status     text        NOT NULL DEFAULT 'pending',
    opened_at  timestamptz,
    ended_at   timestamptz,
    state      jsonb       NOT NULL DEFAULT '{}',
    announced  jsonb       NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (department, case_id)
);
CREATE INDEX cases_by_status ON cases (department, status, case_id);
CREATE INDEX cases_by_id ON cases (case_id);
