"""The metrics schema: cases, the running sums of every indicator, published values and their history.

Every write runs inside the batch transaction of duban.consumer, so a case and the sums it feeds
change together or not at all. What the numbers mean is decided in services/metrics/domain/indicators.py."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from itertools import accumulate

import asyncpg

from duban.catalog import Catalog
from duban.catalog.models import Indicator
from duban.workcal import OfficeHours
from services.metrics.domain.indicators import (
    ALL_DEPARTMENTS,
    CLOCK_UNITS,
    CaseFacts,
    Clock,
    ClockReading,
    Period,
    Sums,
    duration_bucket,
    measure,
    read_clock,
    sums_fed,
    value_of,
)

SUMS_COLUMNS = "indicator_id, period, department, n, total, maximum, unmeasured, reported, value, as_of, provisional"


@dataclass(frozen=True)
class ClosedCase:
    """A case as the tracker announced its closing, with the clock computed at apply time."""

    case_id: str
    case_type: str
    department: str
    opened_at: datetime
    closed_at: datetime
    closed_on: date
    outcome: str
    handled_instantly: bool
    trips: int
    steps: int
    paused_intervals: list[dict]
    reading: ClockReading
    calendar_version: str
    cause: str  # what closed it: the event (source id), or the operation

    @property
    def facts(self) -> CaseFacts:
        return CaseFacts(self.case_type, self.department, self.closed_on, self.steps, self.handled_instantly,
                         self.trips, self.reading.clock)


def facts_of(row: asyncpg.Record) -> CaseFacts:
    clock = None if row["working_days"] is None else Clock(row["calendar_days"], row["working_days"],
                                                          row["working_hours"], row["calendar_provisional"])
    return CaseFacts(row["case_type"], row["department"], row["closed_on"], row["steps"], row["handled_instantly"],
                     row["trips"], clock)


def sums_of(row: asyncpg.Record) -> Sums:
    return Sums(n=row["n"], total=row["total"], maximum=row["maximum"], unmeasured=row["unmeasured"],
                reported=row["reported"], provisional=row["provisional"])


def _sums_rows(sums: Iterable[tuple[tuple[str, str, str], Sums]]) -> list[tuple]:
    return [(*key, s.n, s.total, s.maximum, s.unmeasured, s.provisional) for key, s in sums]


# --- what a batch of events changes ----------------------------------------------------------------


@dataclass(frozen=True)
class TaskState:
    """A task's reported state (a TaskUpdated)."""

    task_id: str
    area: str
    lead: list[str]
    status: str
    light: str
    percent: int
    as_of: datetime


@dataclass(frozen=True)
class TaskLight:
    """A light change alone (time passed, no report): the light moves, the reported state stays."""

    task_id: str
    area: str
    lead: list[str]
    light: str


@dataclass(frozen=True)
class CaseOpened:
    case_id: str
    case_type: str
    department: str
    opened_at: datetime


@dataclass(frozen=True)
class CaseCancelled:
    case_id: str
    case_type: str
    department: str
    opened_at: datetime
    cancelled_at: datetime
    cause: str


@dataclass(frozen=True)
class Report:
    """A department's figure for an indicator and period."""

    source: str
    event_id: str
    indicator_id: str
    period: str
    department: str
    value: float
    unit: str
    note: str | None
    reported_at: datetime

    @property
    def cause(self) -> str:
        return f"{self.source} {self.event_id}"


Change = TaskState | TaskLight | CaseOpened | ClosedCase | CaseCancelled | Report

CASE_COLUMNS = ("case_id", "case_type", "department", "status", "opened_at", "ended_at", "closed_on", "outcome",
                "handled_instantly", "trips", "steps", "paused_intervals", "calendar_days", "working_days",
                "working_hours", "calendar_provisional", "calendar_version", "clock_error", "uncovered_year")
CASE_TYPES = ("text", "text", "text", "text", "timestamptz", "timestamptz", "date", "text", "bool", "int", "int",
              "jsonb", "int", "int", "float8", "bool", "text", "text", "int")
_NO_CLOCK = {"closed_on": None, "calendar_days": None, "working_days": None, "working_hours": None,
             "calendar_provisional": False, "clock_error": None, "uncovered_year": None}
TASK_COLUMNS = ("task_id", "area", "lead", "status", "light", "percent", "as_of")


@dataclass(slots=True)
class _SumsRow:
    """One indicator_sums row as the batch leaves it."""

    sums: Sums
    reported_at: datetime | None
    value: float | None
    published: bool = False  # its value changed in this batch: as_of moves on


class MetricsBatch:
    """The writes of a batch of events, with one statement per table.

    The rows the events touch are read (and locked) first; each event then changes them in memory,
    in delivery order, with the arithmetic the per-row SQL used to do (float sums added in the same
    order), and every value an event changes gets its history row with that event's cause, as if the
    events had been applied one by one. `flush` writes the result. The one step that needs the
    database mid-batch, a maximum recomputed after its case left the sums, flushes what came before."""

    def __init__(self, conn: asyncpg.Connection, catalog: Catalog) -> None:
        self.conn, self.catalog = conn, catalog
        self.tasks: dict[str, dict] = {}
        self.cases: dict[tuple[str, str], dict | None] = {}
        self.sums: dict[tuple[str, str, str], _SumsRow] = {}
        self._dirty_tasks: set[str] = set()
        self._dirty_cases: set[tuple[str, str]] = set()
        self._history: list[tuple] = []
        self._buckets: dict[tuple[str, str, float], list] = defaultdict(lambda: [0, 0.0])
        self._reports: list[Report] = []

    async def apply(self, changes: Sequence[Change]) -> None:
        """Apply `changes` in order and write the result."""
        await self._load(changes)
        for change in changes:
            match change:
                case TaskState():
                    self._task_state(change)
                case TaskLight():
                    self._task_light(change)
                case CaseOpened():
                    self._open_case(change)
                case ClosedCase():
                    await self._close_case(change)
                case CaseCancelled():
                    await self._cancel_case(change)
                case Report():
                    self._report(change)
        await self.flush()

    async def _load(self, changes: Sequence[Change]) -> None:
        task_ids = sorted({c.task_id for c in changes if isinstance(c, TaskState | TaskLight)})
        if task_ids:
            # A task no department has reported on yet is stored as of -infinity (any report is newer): None here.
            rows = await self.conn.fetch(f"SELECT {', '.join(TASK_COLUMNS[:-1])}, nullif(as_of, '-infinity') AS as_of"
                                         " FROM task_state WHERE task_id = ANY($1::text[]) ORDER BY task_id FOR UPDATE",
                                         task_ids)
            self.tasks = {r["task_id"]: dict(r) for r in rows}
        keys = sorted({(c.department, c.case_id) for c in changes if isinstance(c, CaseOpened | ClosedCase | CaseCancelled)})
        if keys:
            rows = await self.conn.fetch(
                f"SELECT {', '.join(CASE_COLUMNS)} FROM cases WHERE (department, case_id) IN"
                " (SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY department, case_id FOR UPDATE",
                *map(list, zip(*keys, strict=True)))
            self.cases = dict.fromkeys(keys) | {(r["department"], r["case_id"]): dict(r) for r in rows}
        sums_keys = set()
        for change in changes:
            if isinstance(change, ClosedCase):
                sums_keys.update(key for key, _ in self._fed(change.facts))
            if isinstance(change, ClosedCase | CaseCancelled):
                if (old := self.cases[(change.department, change.case_id)]) and old["status"] == "closed":
                    sums_keys.update(key for key, _ in self._fed(facts_of(old)))
            if isinstance(change, Report):
                sums_keys.update((change.indicator_id, change.period, d) for d in (change.department, ALL_DEPARTMENTS))
        if sums_keys:
            await self._lock_sums(sorted(sums_keys))

    async def _lock_sums(self, keys: list[tuple[str, str, str]]) -> None:
        # Insert-or-lock: a row another consumer inserts meanwhile is waited for, never overwritten.
        rows = await self.conn.fetch(
            "INSERT INTO indicator_sums AS s (indicator_id, period, department)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
            " ON CONFLICT (indicator_id, period, department) DO UPDATE SET n = s.n"
            f" RETURNING {SUMS_COLUMNS}, reported_at", *map(list, zip(*keys, strict=True)))
        self.sums = {(r["indicator_id"], r["period"], r["department"]): _SumsRow(sums_of(r), r["reported_at"], r["value"])
                     for r in rows}

    def _fed(self, facts: CaseFacts) -> Iterator[tuple[tuple[str, str, str], Sums]]:
        return sums_fed(self.catalog.indicators_for_case_type(facts.case_type), facts)

    # --- tasks: change events of one task arrive in order (same key), but a replay may resend older ones

    def _task_state(self, change: TaskState) -> None:
        row = self.tasks.get(change.task_id)
        if row is None or row["as_of"] is None or row["as_of"] <= change.as_of:  # the newest by event time stays
            self.tasks[change.task_id] = {"task_id": change.task_id, "area": change.area, "lead": change.lead,
                                          "status": change.status, "light": change.light, "percent": change.percent,
                                          "as_of": change.as_of}
            self._dirty_tasks.add(change.task_id)

    def _task_light(self, change: TaskLight) -> None:
        """A task no department has reported on yet is counted too, as not started (all 28 are on the
        overview), until its first report."""
        row = self.tasks.get(change.task_id)
        if row is None:
            row = self.tasks[change.task_id] = {"task_id": change.task_id, "area": change.area, "lead": change.lead,
                                                "status": "not_started", "percent": 0, "as_of": None}
        row["light"] = change.light
        self._dirty_tasks.add(change.task_id)

    # --- cases

    def _set_case(self, key: tuple[str, str], row: dict) -> None:
        self.cases[key] = row
        self._dirty_cases.add(key)

    def _open_case(self, change: CaseOpened) -> None:
        # A case already closed or cancelled stays so: its opening is old news (a replay, or a late copy).
        key = (change.department, change.case_id)
        old = self.cases[key]
        if old is None:
            self._set_case(key, {**dict.fromkeys(CASE_COLUMNS), **_NO_CLOCK, "case_id": change.case_id,
                                 "case_type": change.case_type, "department": change.department, "status": "open",
                                 "opened_at": change.opened_at, "paused_intervals": "[]"})
        elif old["status"] == "open":
            self._set_case(key, {**old, "case_type": change.case_type, "opened_at": change.opened_at})

    async def _close_case(self, case: ClosedCase) -> None:
        """The case closed, added to the sums of its periods. A second, different closing of the same case
        (a correction) first takes the earlier one out, so the sums always hold each case once."""
        key = (case.department, case.case_id)
        old = self.cases[key]
        if old is not None and old["status"] == "closed":
            if facts_of(old) == case.facts and old["ended_at"] == case.closed_at:
                return
            await self._count(key, facts_of(old), sign=-1, cause=case.cause, calendar_version=case.calendar_version)
        clock = case.reading.clock
        self._set_case(key, {
            "case_id": case.case_id, "case_type": case.case_type, "department": case.department, "status": "closed",
            "opened_at": case.opened_at, "ended_at": case.closed_at, "closed_on": case.closed_on,
            "outcome": case.outcome, "handled_instantly": case.handled_instantly, "trips": case.trips,
            "steps": case.steps, "paused_intervals": json.dumps(case.paused_intervals),
            **dict(zip(("calendar_days", "working_days", "working_hours", "calendar_provisional"),
                       clock if clock else (None, None, None, False), strict=True)),
            "calendar_version": case.calendar_version, "clock_error": case.reading.error,
            "uncovered_year": case.reading.uncovered_year})
        await self._count(key, case.facts, sign=1, cause=case.cause, calendar_version=case.calendar_version)

    async def _cancel_case(self, change: CaseCancelled) -> None:
        """A cancelled case (withdrawn, not concluded) is in no indicator; if it had been counted as
        closed, it leaves its periods' sums."""
        key = (change.department, change.case_id)
        old = self.cases[key]
        if old is None:
            self._set_case(key, {**dict.fromkeys(CASE_COLUMNS), **_NO_CLOCK, "case_id": change.case_id,
                                 "case_type": change.case_type, "department": change.department,
                                 "status": "cancelled", "opened_at": change.opened_at,
                                 "ended_at": change.cancelled_at, "paused_intervals": "[]"})
            return
        if old["status"] == "closed":
            await self._count(key, facts_of(old), sign=-1, cause=change.cause,
                              calendar_version=old["calendar_version"])
        self._set_case(key, {**old, **_NO_CLOCK, "status": "cancelled", "ended_at": change.cancelled_at})

    async def _count(self, key: tuple[str, str], facts: CaseFacts, *, sign: int, cause: str,
                     calendar_version: str) -> None:
        """Add (sign 1) or take out (sign -1) one closed case from its sums and its histogram bucket."""
        touched = []
        for sums_key, part in self._fed(facts):
            row = self.sums[sums_key]
            row.sums += part if sign > 0 else -part
            touched.append(sums_key)
        if sign < 0:
            # A maximum cannot be un-added: recompute it from the other cases of the period if this case held it.
            for sums_key in touched:
                ind, row = self.catalog.indicator(sums_key[0]), self.sums[sums_key]
                if ind.aggregate == "max" and row.sums.maximum == measure(ind, facts):
                    await self.flush()
                    maximum = await _recompute_maximum(self.conn, ind, sums_key, key, facts)
                    row.sums = replace(row.sums, maximum=maximum)
        self._publish(touched, cause, calendar_version)
        if facts.clock is not None:
            days = facts.clock.working_days
            bucket = self._buckets[(facts.case_type, facts.department, duration_bucket(days))]
            bucket[0] += sign
            bucket[1] += sign * days

    # --- reported figures

    def _report(self, report: Report) -> None:
        """Keep every report; the latest by event time is the period's figure (a late, older report
        joins the record without replacing a newer one)."""
        self._reports.append(report)
        touched = [(report.indicator_id, report.period, d) for d in (report.department, ALL_DEPARTMENTS)]
        for sums_key in touched:
            row = self.sums[sums_key]
            newer = row.reported_at is None or row.reported_at <= report.reported_at
            row.sums = replace(row.sums, n=row.sums.n + 1, reported=report.value if newer else row.sums.reported)
            row.reported_at = report.reported_at if newer else row.reported_at
        self._publish(touched, report.cause, None)

    # --- published values

    def _publish(self, keys: Iterable[tuple[str, str, str]], cause: str, calendar_version: str | None) -> None:
        """Each row's value as computed from its sums; a changed value gets a new as_of and a history row,
        which records the calendar version that computed the clocks behind it (None for reported figures)."""
        for key in keys:
            row = self.sums[key]
            value = value_of(self.catalog.indicator(key[0]), row.sums)
            if value != row.value:
                row.value, row.published = value, True
                self._history.append((*key, value, row.sums.n, cause, calendar_version))

    async def flush(self) -> None:
        """Write what the batch changed so far."""
        conn = self.conn
        if self._dirty_tasks:
            await conn.executemany(
                f"INSERT INTO task_state ({', '.join(TASK_COLUMNS)}) VALUES ($1, $2, $3, $4, $5, $6,"
                " coalesce($7, '-infinity'::timestamptz))"
                " ON CONFLICT (task_id) DO UPDATE SET area = EXCLUDED.area, lead = EXCLUDED.lead,"
                " status = EXCLUDED.status, light = EXCLUDED.light, percent = EXCLUDED.percent, as_of = EXCLUDED.as_of",
                [tuple(self.tasks[t][c] for c in TASK_COLUMNS) for t in sorted(self._dirty_tasks)])
        sums = [(*key, r.sums.n, r.sums.total, r.sums.maximum, r.sums.unmeasured, r.sums.provisional, r.sums.reported,
                 r.reported_at, r.value, r.published) for key, r in sorted(self.sums.items())]
        # One statement for the other tables (round trips are what a batch costs under load); a part
        # with nothing to write gets empty arrays.
        await conn.execute(_WRITE_BATCH, *_columns(CASE_TYPES, [tuple(self.cases[key][c] for c in CASE_COLUMNS)
                                                               for key in sorted(self._dirty_cases)]),
                           *_columns(_SUMS_TYPES, sums), *_columns(_HISTORY_TYPES, self._history),
                           *_columns(_BUCKET_TYPES, [(*key, *acc) for key, acc in self._buckets.items()]),
                           *_columns(_REPORT_TYPES, [(r.source, r.event_id, r.indicator_id, r.period, r.department,
                                                      r.value, r.unit, r.note, r.reported_at) for r in self._reports]))
        for row in self.sums.values():
            row.published = False
        self._history.clear()
        self._buckets.clear()
        self._reports.clear()
        self._dirty_tasks.clear()
        self._dirty_cases.clear()


async def _recompute_maximum(conn: asyncpg.Connection, ind: Indicator, sums_key: tuple[str, str, str],
                             case_key: tuple[str, str], facts: CaseFacts) -> float | None:
    """The largest measure of the period's other closed cases (the stored cases, the batch's so far flushed)."""
    _, period_key, department = sums_key
    period = Period.parse(period_key)
    column = "steps" if ind.unit == "steps" else ind.unit
    assert column in (*CLOCK_UNITS, "steps")  # a column name from the catalog's closed list of units
    return await conn.fetchval(
        f"SELECT max({column}) FROM cases WHERE status = 'closed'"
        " AND case_type = $1 AND closed_on BETWEEN $2 AND $3 AND ($4 = $5 OR department = $4)"
        " AND (department, case_id) <> ($6, $7)",
        facts.case_type, period.first, period.last, department, ALL_DEPARTMENTS, *case_key)


def _columns(types: Sequence[str], rows: Sequence[tuple]) -> list[list]:
    """`rows` as one list per column, for unnest."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in types]


def _unnest(types: Sequence[str], first: int) -> str:
    return "unnest(" + ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, first)) + ")"


_SUMS_TYPES = ("text", "text", "text", "int", "float8", "float8", "int", "int", "float8", "timestamptz", "float8", "bool")
_HISTORY_TYPES = ("text", "text", "text", "float8", "int", "text", "text")
_BUCKET_TYPES = ("text", "text", "float8", "bigint", "float8")
_REPORT_TYPES = ("text", "text", "text", "text", "text", "float8", "text", "text", "timestamptz")
_FIRST = list(accumulate((len(t) for t in (CASE_TYPES, _SUMS_TYPES, _HISTORY_TYPES, _BUCKET_TYPES)), initial=1))
_HISTORY_INSERT = (
    "INSERT INTO indicator_history (indicator_id, period, department, value, samples, as_of, cause, calendar_version)"
    " SELECT i, p, d, v, s, now(), c, cv FROM {} WITH ORDINALITY AS h (i, p, d, v, s, c, cv, n) ORDER BY n")
# The tables are disjoint, so the order in which PostgreSQL runs the parts does not matter.
_WRITE_BATCH = (
    f"WITH cases_written AS (INSERT INTO cases ({', '.join(CASE_COLUMNS)}) SELECT * FROM {_unnest(CASE_TYPES, _FIRST[0])}"
    " ON CONFLICT (department, case_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in CASE_COLUMNS[3:]) + ", updated_at = now()),"
    " sums_written AS (UPDATE indicator_sums s SET n = v.n, total = v.total, maximum = v.maximum,"
    " unmeasured = v.unmeasured, provisional = v.provisional, reported = v.reported, reported_at = v.reported_at,"
    " value = v.value, as_of = CASE WHEN v.published THEN now() ELSE s.as_of END"
    f" FROM {_unnest(_SUMS_TYPES, _FIRST[1])} AS v (indicator_id, period, department, n, total, maximum, unmeasured,"
    " provisional, reported, reported_at, value, published)"
    " WHERE (s.indicator_id, s.period, s.department) = (v.indicator_id, v.period, v.department)),"
    f" history_written AS ({_HISTORY_INSERT.format(_unnest(_HISTORY_TYPES, _FIRST[2]))}),"
    " buckets_written AS (INSERT INTO case_duration_buckets AS b (case_type, department, le, count, sum)"
    f" SELECT * FROM {_unnest(_BUCKET_TYPES, _FIRST[3])} ON CONFLICT (case_type, department, le) DO UPDATE"
    " SET count = b.count + EXCLUDED.count, sum = b.sum + EXCLUDED.sum)"
    " INSERT INTO reported_values (source, event_id, indicator_id, period, department, value, unit, note, reported_at)"
    f" SELECT * FROM {_unnest(_REPORT_TYPES, _FIRST[4])}")


async def publish(conn: asyncpg.Connection, catalog: Catalog, rows: Iterable[asyncpg.Record], *, cause: str,
                  calendar_version: str | None = None) -> None:
    """Store each row's value as computed from its sums; a changed value gets a new as_of and a history row."""
    changed = []
    for row in rows:
        value = value_of(catalog.indicator(row["indicator_id"]), sums_of(row))
        if value != row["value"]:
            changed.append((row["indicator_id"], row["period"], row["department"], value, row["n"], cause,
                            calendar_version))
    if not changed:
        return
    await conn.execute(
        "UPDATE indicator_sums s SET value = v.value, as_of = now()"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) AS v (indicator_id, period, department, value)"
        " WHERE (s.indicator_id, s.period, s.department) = (v.indicator_id, v.period, v.department)",
        *map(list, zip(*(c[:4] for c in changed), strict=True)))
    await conn.execute(_HISTORY_INSERT.format(_unnest(_HISTORY_TYPES, 1)), *_columns(_HISTORY_TYPES, changed))


# --- rebuilding from the stored cases --------------------------------------------------------------


async def rebuild(conn: asyncpg.Connection, catalog: Catalog, *, cause: str, calendar_version: str | None = None,
                  chunk: int = 20_000) -> int:
    """Recompute every case-fed sum and the duration histogram from the cases table, in one pass, with
    the same arithmetic as the event path. For a bulk load, and after a definition or calendar change.
    Values that change are published with a history row; returns the number of cases read."""
    sums: dict[tuple[str, str, str], Sums] = defaultdict(Sums)
    buckets: dict[tuple[str, str, float], list] = defaultdict(lambda: [0, 0.0])
    indicators = {t: catalog.indicators_for_case_type(t) for t in catalog.case_types}
    read = 0
    async with conn.transaction():
        cursor = await conn.cursor(
            "SELECT case_type, department, closed_on, steps, handled_instantly, trips, calendar_days, working_days,"
            " working_hours, calendar_provisional FROM cases WHERE status = 'closed'")
        while records := await cursor.fetch(chunk):
            read += len(records)
            for row in records:
                facts = facts_of(row)
                for key, part in sums_fed(indicators[facts.case_type], facts):
                    sums[key] += part
                if facts.clock is not None:
                    days = facts.clock.working_days
                    acc = buckets[(facts.case_type, facts.department, duration_bucket(days))]
                    acc[0] += 1
                    acc[1] += days
        case_fed = [i.id for i in catalog.indicators if i.feed.kind == "case"]
        await conn.execute("UPDATE indicator_sums SET n = 0, total = 0, maximum = NULL, unmeasured = 0, provisional = 0"
                           " WHERE indicator_id = ANY($1::text[])", case_fed)
        await conn.execute("CREATE TEMP TABLE rebuilt_sums (LIKE indicator_sums INCLUDING DEFAULTS) ON COMMIT DROP")
        await conn.copy_records_to_table(
            "rebuilt_sums",
            columns=["indicator_id", "period", "department", "n", "total", "maximum", "unmeasured", "provisional"],
            records=_sums_rows(sums.items()))
        await conn.execute(
            "INSERT INTO indicator_sums AS s (indicator_id, period, department, n, total, maximum, unmeasured,"
            " provisional) SELECT indicator_id, period, department, n, total, maximum, unmeasured, provisional"
            " FROM rebuilt_sums ON CONFLICT (indicator_id, period, department) DO UPDATE SET"
            " n = EXCLUDED.n, total = EXCLUDED.total, maximum = EXCLUDED.maximum, unmeasured = EXCLUDED.unmeasured,"
            " provisional = EXCLUDED.provisional")
        rows = await conn.fetch(f"SELECT {SUMS_COLUMNS} FROM indicator_sums WHERE indicator_id = ANY($1::text[])",
                                case_fed)
        await publish(conn, catalog, rows, cause=cause, calendar_version=calendar_version)
        await conn.execute("TRUNCATE case_duration_buckets")
        await conn.copy_records_to_table(
            "case_duration_buckets", columns=["case_type", "department", "le", "count", "sum"],
            records=[(*key, *acc) for key, acc in buckets.items()])
    return read



# --- reads -----------------------------------------------------------------------------------------


async def read_task_state(conn: asyncpg.Connection) -> list[dict]:
    return [dict(r) for r in await conn.fetch("SELECT task_id, area, lead, status, light FROM task_state")]


async def read_sums(conn: asyncpg.Connection, *, from_year: int | None = None, period: str | None = None
                    ) -> dict[tuple[str, str, str], tuple[Sums, datetime]]:
    """Stored sums of the periods from `from_year` on, or of one period."""
    rows = await conn.fetch(
        f"SELECT {SUMS_COLUMNS} FROM indicator_sums"
        " WHERE ($1::int IS NULL OR left(period, 4)::int >= $1) AND ($2::text IS NULL OR period = $2)",
        from_year, period)
    return {(r["indicator_id"], r["period"], r["department"]): (sums_of(r), r["as_of"]) for r in rows}


async def read_open_cases(conn: asyncpg.Connection, *, case_type: str | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT case_id, case_type, department, opened_at FROM cases WHERE status = 'open'"
        " AND ($1::text IS NULL OR case_type = $1) ORDER BY opened_at, case_id", case_type)


async def read_duration_buckets(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT case_type, department, le, count, sum FROM case_duration_buckets"
                            " ORDER BY case_type, department, le")


async def count_uncovered(conn: asyncpg.Connection) -> dict[str, int]:
    """Closed cases stored without a clock, by case type (a partial index keeps this off the cases' bulk)."""
    rows = await conn.fetch("SELECT case_type, count(*) AS n FROM cases WHERE clock_error IS NOT NULL"
                            " GROUP BY case_type")
    return {r["case_type"]: r["n"] for r in rows}


async def list_period_cases(conn: asyncpg.Connection, *, case_type: str, period: Period, department: str,
                            limit: int, offset: int) -> list[dict]:
    """The period's closed cases, each with its paused intervals as a list ([{from, to, reason}])."""
    rows = await conn.fetch(
        "SELECT case_id, department, opened_at, ended_at AS closed_at, closed_on, outcome, handled_instantly, trips,"
        " steps, paused_intervals, calendar_days, working_days, working_hours,"
        " calendar_provisional AS provisional, calendar_version, clock_error"
        " FROM cases WHERE status = 'closed' AND case_type = $1 AND closed_on BETWEEN $2 AND $3"
        " AND ($4 = $5 OR department = $4) ORDER BY closed_on, case_id LIMIT $6 OFFSET $7",
        case_type, period.first, period.last, department, ALL_DEPARTMENTS, limit, offset)
    return [{**r, "paused_intervals": json.loads(r["paused_intervals"])} for r in rows]


async def read_history(conn: asyncpg.Connection, *, indicator_id: str, period: str, department: str,
                       latest: int) -> list[asyncpg.Record]:
    """The `latest` published values, oldest first."""
    rows = await conn.fetch(
        "SELECT value, samples, as_of, cause, calendar_version FROM indicator_history"
        " WHERE indicator_id = $1 AND period = $2 AND department = $3 ORDER BY as_of DESC, id DESC LIMIT $4",
        indicator_id, period, department, latest)
    return rows[::-1]


async def recompute_calendar(conn: asyncpg.Connection, catalog: Catalog, hours: OfficeHours, *,
                             every_case: bool = False) -> int:
    """Recompute the clocks of the closed cases computed on a provisional calendar year or stored without
    a clock (or, with `every_case`, of every closed case: after a correction of an official year), by
    another calendar version than `hours.calendar`'s (an official year file arrived, the package was
    upgraded). A changed clock replaces the case's earlier self in the sums, each changed
    value published with a history row naming the new version; the earlier rows keep the version that
    computed them. Returns how many cases got a different clock."""
    version = hours.calendar.version
    rows = await conn.fetch("SELECT * FROM cases WHERE status = 'closed' AND ($2 OR calendar_provisional"
                            " OR clock_error IS NOT NULL) AND calendar_version IS DISTINCT FROM $1", version, every_case)
    closings = []
    for row in rows:
        pauses = [(datetime.fromisoformat(p["from"]), datetime.fromisoformat(p["to"]), p["reason"])
                  for p in json.loads(row["paused_intervals"])]
        reading = read_clock(hours, opened_at=row["opened_at"], closed_at=row["ended_at"], pauses=pauses)
        if reading.clock != facts_of(row).clock:
            closings.append(ClosedCase(
                case_id=row["case_id"], case_type=row["case_type"], department=row["department"],
                opened_at=row["opened_at"], closed_at=row["ended_at"], closed_on=row["closed_on"],
                outcome=row["outcome"], handled_instantly=row["handled_instantly"], trips=row["trips"],
                steps=row["steps"], paused_intervals=json.loads(row["paused_intervals"]), reading=reading,
                calendar_version=version, cause=f"calendar {version}"))
    async with conn.transaction():
        await MetricsBatch(conn, catalog).apply(closings)
        # Same clock (still provisional, or the official year agrees): only the version moves on.
        await conn.execute("UPDATE cases SET calendar_version = $1 WHERE (department, case_id) IN"
                           " (SELECT * FROM unnest($2::text[], $3::text[]))", version,
                           [r["department"] for r in rows], [r["case_id"] for r in rows])
    return len(closings)
