-- Each task's light as the notifier last learnt it, and since when: escalation waits are measured from `since`.
CREATE TABLE task_lights (
    task_id     text PRIMARY KEY,
    light       text        NOT NULL,
    since       timestamptz NOT NULL,
    lead        text[]      NOT NULL,
    responsible text[]      NOT NULL
);
