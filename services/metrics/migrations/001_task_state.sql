-- The metrics service's copy of each task's state, learnt from tracker change events.
CREATE TABLE task_state (
    task_id    text PRIMARY KEY,
    area       text        NOT NULL,
    lead       text[]      NOT NULL,
    status     text        NOT NULL,
    light      text        NOT NULL,
    percent    integer     NOT NULL,
    as_of      timestamptz NOT NULL
);
