-- One row per escalation of an item (a task T05 or a milestone T05-M1): at most one open per item.
CREATE TABLE escalations (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item               text        NOT NULL,
    kind               text        NOT NULL CHECK (kind IN ('task', 'milestone')),
    task_id            text        NOT NULL,
    light              text        NOT NULL CHECK (light IN ('yellow', 'red')),
    level              smallint    NOT NULL CHECK (level BETWEEN 1 AND 3),
    deadline           date        NOT NULL,
    opened_at          timestamptz NOT NULL,
    level_since        timestamptz NOT NULL,
    red_since          timestamptz,
    -- The task's lead and responsible units, and the departments the current level addresses.
    units              text[]      NOT NULL,
    addressees         text[]      NOT NULL DEFAULT '{}',
    acknowledged_at    timestamptz,
    acknowledged_by    text,
    acknowledged_note  text,
    acknowledged_until timestamptz,
    resolved_at        timestamptz,
    -- When the scheduler looks at it next (now for a fresh change).
    next_check_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX escalations_one_open_per_item ON escalations (item) WHERE resolved_at IS NULL;
CREATE INDEX escalations_due ON escalations (next_check_at) WHERE resolved_at IS NULL;

-- One notice to one address. The unique key makes planning idempotent: a window's notice to a
-- recipient exists once, however often or on however many replicas the scheduler runs.
CREATE TABLE deliveries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    escalation_id bigint      NOT NULL REFERENCES escalations (id),
    item          text        NOT NULL,
    level         smallint    NOT NULL,
    window_start  date        NOT NULL,
    channel       text        NOT NULL,
    recipient     text        NOT NULL,
    departments   text[]      NOT NULL,
    notice        jsonb       NOT NULL,
    status        text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead', 'cancelled')),
    not_before    timestamptz NOT NULL,
    attempts      integer     NOT NULL DEFAULT 0,
    last_error    text,
    created_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    UNIQUE (item, level, window_start, channel, recipient)
);
CREATE INDEX deliveries_due ON deliveries (not_before) WHERE status = 'pending';
CREATE INDEX deliveries_of_escalation ON deliveries (escalation_id);

-- Each attempt on a rate-limited channel (the robots), per address: the rolling minute's count.
CREATE TABLE robot_sends (
    recipient text        NOT NULL,
    sent_at   timestamptz NOT NULL
);
CREATE INDEX robot_sends_recent ON robot_sends (recipient, sent_at);
