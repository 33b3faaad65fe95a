-- Cases learnt from tracker change events, the running sums behind every indicator, and the
-- audit trail of published values. Arithmetic lives in services/metrics/indicators.py.

CREATE TABLE cases (
    case_id            text        PRIMARY KEY,
    case_type          text        NOT NULL,
    department         text        NOT NULL,
    status             text        NOT NULL CHECK (status IN ('open', 'closed', 'cancelled')),
    opened_at          timestamptz NOT NULL,
    ended_at           timestamptz,           -- closed or cancelled at (event data, not receipt)
    closed_on          date,                  -- Asia/Shanghai date of closing: the case's periods
    outcome            text,
    handled_instantly  boolean,
    trips              integer,
    steps              integer,
    paused_intervals   jsonb       NOT NULL DEFAULT '[]',  -- as reported: [{from, to, reason}]
    -- The clock at close, paused time excluded; NULL with clock_error when the working-day
    -- calendar does not cover the case's dates (never a Mon–Fri guess).
    calendar_days      integer,
    working_days       integer,
    working_hours      double precision,
    calendar_version   text,
    clock_error        text,
    uncovered_year     integer,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'closed') = (closed_on IS NOT NULL)),
    CHECK (clock_error IS NULL OR working_days IS NULL)
);
CREATE INDEX cases_closed_by_period ON cases (case_type, closed_on, department) WHERE status = 'closed';
CREATE INDEX cases_open ON cases (case_type, department) WHERE status = 'open';
CREATE INDEX cases_uncovered ON cases (case_type) WHERE clock_error IS NOT NULL;

-- One row per (indicator, period, department); department 'all' is the plan-wide figure.
-- Updated in the transaction that changes a case, so reading a value never scans cases.
CREATE TABLE indicator_sums (
    indicator_id  text             NOT NULL,
    period        text             NOT NULL,   -- 2021 | 2021-Q3 | 2021-09
    department    text             NOT NULL,
    n             integer          NOT NULL DEFAULT 0,
    total         double precision NOT NULL DEFAULT 0,
    maximum       double precision,
    unmeasured    integer          NOT NULL DEFAULT 0,
    reported      double precision,
    reported_at   timestamptz,
    value         double precision,            -- the published value (NULL: nothing measured)
    as_of         timestamptz      NOT NULL DEFAULT now(),  -- when the published value last changed
    PRIMARY KEY (indicator_id, period, department)
);

-- Every published value, appended when it changes: what the system said, when, and why.
CREATE TABLE indicator_history (
    id            bigserial        PRIMARY KEY,
    indicator_id  text             NOT NULL,
    period        text             NOT NULL,
    department    text             NOT NULL,
    value         double precision,
    samples       integer          NOT NULL,
    as_of         timestamptz      NOT NULL,
    cause         text             NOT NULL   -- the event (source id) or operation that changed it
);
CREATE INDEX indicator_history_key ON indicator_history (indicator_id, period, department, as_of);

-- Closed-case durations in working days, per histogram bucket (not cumulative: one row per case).
CREATE TABLE case_duration_buckets (
    case_type   text             NOT NULL,
    department  text             NOT NULL,
    le          double precision NOT NULL,     -- bucket upper bound; 'Infinity' for +Inf
    count       bigint           NOT NULL DEFAULT 0,
    sum         double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (case_type, department, le)
);

-- Figures departments report for the indicators that are not computed from cases.
CREATE TABLE reported_values (
    source        text             NOT NULL,
    event_id      text             NOT NULL,
    indicator_id  text             NOT NULL,
    period        text             NOT NULL,
    department    text             NOT NULL,
    value         double precision NOT NULL,
    unit          text             NOT NULL,
    note          text,
    reported_at   timestamptz      NOT NULL,  -- event time: the latest report of a period wins
    received_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);
CREATE INDEX reported_values_key ON reported_values (indicator_id, period, reported_at);
