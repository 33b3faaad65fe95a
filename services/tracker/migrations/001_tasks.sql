-- Task state: one row per plan task (seeded from the catalog), updated by department reports.
CREATE TABLE tasks (
    id             text PRIMARY KEY,
    area           text   NOT NULL,
    title          text   NOT NULL,
    lead           text[] NOT NULL,
    responsible    text[] NOT NULL,
    status         text   NOT NULL DEFAULT 'not_started',
    percent        integer NOT NULL DEFAULT 0,
    light          text   NOT NULL DEFAULT 'green',
    last_report_at timestamptz,
    last_reporter  text,
    last_note      text,
    evidence_url   text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Every accepted progress report, in event time: the task's history.
CREATE TABLE task_reports (
    source       text        NOT NULL,
    event_id     text        NOT NULL,
    task_id      text        NOT NULL REFERENCES tasks (id),
    event_time   timestamptz NOT NULL,
    status       text        NOT NULL,
    percent      integer     NOT NULL,
    note         text,
    evidence_url text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);
CREATE INDEX task_reports_by_task ON task_reports (task_id, event_time);
