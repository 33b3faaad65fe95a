"""The metrics schema: cases, the running sums of every indicator, published values and their history.

Every write runs inside the batch transaction of duban.consumer, so a case and the sums it feeds
change together or not at all. What the numbers mean is decided in services/metrics/domain/indicators.py."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

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


# --- tasks -----------------------------------------------------------------------------------------


async def save_task_state(conn: asyncpg.Connection, *, task_id: str, area: str, lead: list[str], status: str,
                          light: str, percent: int, as_of: datetime) -> None:
    # Change events of one task arrive in order (same key), but a replay may resend older ones:
    # keep the newest by event time.
    await conn.execute(
        "INSERT INTO task_state (task_id, area, lead, status, light, percent, as_of) VALUES ($1,$2,$3,$4,$5,$6,$7)"
        " ON CONFLICT (task_id) DO UPDATE SET area = EXCLUDED.area, lead = EXCLUDED.lead, status = EXCLUDED.status,"
        " light = EXCLUDED.light, percent = EXCLUDED.percent, as_of = EXCLUDED.as_of"
        " WHERE task_state.as_of <= EXCLUDED.as_of",
        task_id, area, lead, status, light, percent, as_of)


async def save_task_light(conn: asyncpg.Connection, *, task_id: str, area: str, lead: list[str], light: str) -> None:
    """A light change alone (time passed, no report): the light moves, the reported state stays.
    A task no department has reported on yet is counted too, as not started (all 28 are on the
    overview); its `as_of` of -infinity lets its first report replace that placeholder."""
    await conn.execute(
        "INSERT INTO task_state (task_id, area, lead, status, light, percent, as_of)"
        " VALUES ($1, $2, $3, 'not_started', $4, 0, '-infinity')"
        " ON CONFLICT (task_id) DO UPDATE SET light = EXCLUDED.light",
        task_id, area, lead, light)


async def read_task_state(conn: asyncpg.Connection) -> list[dict]:
    return [dict(r) for r in await conn.fetch("SELECT task_id, area, lead, status, light FROM task_state")]


# --- cases -----------------------------------------------------------------------------------------


async def open_case(conn: asyncpg.Connection, *, case_id: str, case_type: str, department: str,
                    opened_at: datetime) -> None:
    # A case already closed or cancelled stays so: its opening is old news (a replay, or a late copy).
    await conn.execute(
        "INSERT INTO cases (case_id, case_type, department, status, opened_at) VALUES ($1, $2, $3, 'open', $4)"
        " ON CONFLICT (department, case_id) DO UPDATE SET case_type = EXCLUDED.case_type,"
        " opened_at = EXCLUDED.opened_at, updated_at = now() WHERE cases.status = 'open'",
        case_id, case_type, department, opened_at)


async def close_case(conn: asyncpg.Connection, catalog: Catalog, case: ClosedCase, *, cause: str) -> None:
    """Record the case closed and add it to the sums of its periods. A second, different closing of
    the same case (a correction) first takes the earlier one out, so the sums always hold each case once."""
    old = await conn.fetchrow("SELECT * FROM cases WHERE department = $1 AND case_id = $2 FOR UPDATE",
                              case.department, case.case_id)
    if old is not None and old["status"] == "closed":
        if facts_of(old) == case.facts and old["ended_at"] == case.closed_at:
            return
        await _count(conn, catalog, old["case_id"], facts_of(old), sign=-1, cause=cause,
                     calendar_version=case.calendar_version)
    clock = case.reading.clock
    await conn.execute(
        "INSERT INTO cases (case_id, case_type, department, status, opened_at, ended_at, closed_on, outcome,"
        " handled_instantly, trips, steps, paused_intervals, calendar_days, working_days, working_hours,"
        " calendar_provisional, calendar_version, clock_error, uncovered_year)"
        " VALUES ($1, $2, $3, 'closed', $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16, $17, $18)"
        " ON CONFLICT (department, case_id) DO UPDATE SET case_type = EXCLUDED.case_type,"
        " status = 'closed', opened_at = EXCLUDED.opened_at, ended_at = EXCLUDED.ended_at,"
        " closed_on = EXCLUDED.closed_on, outcome = EXCLUDED.outcome, handled_instantly = EXCLUDED.handled_instantly,"
        " trips = EXCLUDED.trips, steps = EXCLUDED.steps, paused_intervals = EXCLUDED.paused_intervals,"
        " calendar_days = EXCLUDED.calendar_days, working_days = EXCLUDED.working_days,"
        " working_hours = EXCLUDED.working_hours, calendar_provisional = EXCLUDED.calendar_provisional,"
        " calendar_version = EXCLUDED.calendar_version,"
        " clock_error = EXCLUDED.clock_error, uncovered_year = EXCLUDED.uncovered_year, updated_at = now()",
        case.case_id, case.case_type, case.department, case.opened_at, case.closed_at, case.closed_on, case.outcome,
        case.handled_instantly, case.trips, case.steps, json.dumps(case.paused_intervals),
        *(clock if clock else (None, None, None, False)), case.calendar_version, case.reading.error,
        case.reading.uncovered_year)
    await _count(conn, catalog, case.case_id, case.facts, sign=1, cause=cause, calendar_version=case.calendar_version)


async def cancel_case(conn: asyncpg.Connection, catalog: Catalog, *, case_id: str, case_type: str, department: str,
                      opened_at: datetime, cancelled_at: datetime, cause: str) -> None:
    """A cancelled case (withdrawn, not concluded) is in no indicator; if it had been counted as
    closed, it leaves its periods' sums."""
    old = await conn.fetchrow("SELECT * FROM cases WHERE department = $1 AND case_id = $2 FOR UPDATE",
                              department, case_id)
    if old is not None and old["status"] == "closed":
        await _count(conn, catalog, case_id, facts_of(old), sign=-1, cause=cause,
                     calendar_version=old["calendar_version"])
    await conn.execute(
        "INSERT INTO cases (case_id, case_type, department, status, opened_at, ended_at)"
        " VALUES ($1, $2, $3, 'cancelled', $4, $5)"
        " ON CONFLICT (department, case_id) DO UPDATE SET status = 'cancelled', ended_at = EXCLUDED.ended_at, closed_on = NULL,"
        " calendar_days = NULL, working_days = NULL, working_hours = NULL, calendar_provisional = false,"
        " clock_error = NULL,"
        " uncovered_year = NULL, updated_at = now()",
        case_id, case_type, department, opened_at, cancelled_at)


def _sums_rows(sums: Iterable[tuple[tuple[str, str, str], Sums]]) -> list[tuple]:
    return [(*key, s.n, s.total, s.maximum, s.unmeasured, s.provisional) for key, s in sums]


async def _count(conn: asyncpg.Connection, catalog: Catalog, case_id: str, facts: CaseFacts, *, sign: int,
                 cause: str, calendar_version: str) -> None:
    """Add (sign 1) or take out (sign -1) one closed case from its sums and its histogram bucket."""
    rows = await conn.fetch(
        "INSERT INTO indicator_sums AS s (indicator_id, period, department, n, total, maximum, unmeasured, provisional)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::float8[], $6::float8[], $7::int[],"
        " $8::int[])"
        " ON CONFLICT (indicator_id, period, department) DO UPDATE SET n = s.n + EXCLUDED.n,"
        " total = s.total + EXCLUDED.total, maximum = GREATEST(s.maximum, EXCLUDED.maximum),"
        " unmeasured = s.unmeasured + EXCLUDED.unmeasured, provisional = s.provisional + EXCLUDED.provisional"
        f" RETURNING {SUMS_COLUMNS}",
        *map(list, zip(*_sums_rows((key, part if sign > 0 else -part) for key, part in
                                   sums_fed(catalog.indicators_for_case_type(facts.case_type), facts)), strict=True)))
    if sign < 0:
        # A maximum cannot be un-added: recompute it from the other cases of the period if this case held it.
        rows = [await _recompute_maximum(conn, catalog.indicator(r["indicator_id"]), r, case_id, facts)
                if catalog.indicator(r["indicator_id"]).aggregate == "max"
                and r["maximum"] == measure(catalog.indicator(r["indicator_id"]), facts)
                else r for r in rows]
    await publish(conn, catalog, rows, cause=cause, calendar_version=calendar_version)
    if facts.clock is not None:
        days = facts.clock.working_days
        await conn.execute(
            "INSERT INTO case_duration_buckets AS b (case_type, department, le, count, sum) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (case_type, department, le) DO UPDATE SET count = b.count + EXCLUDED.count,"
            " sum = b.sum + EXCLUDED.sum",
            facts.case_type, facts.department, duration_bucket(days), sign, sign * days)


async def _recompute_maximum(conn: asyncpg.Connection, ind: Indicator, row: asyncpg.Record, case_id: str,
                             facts: CaseFacts) -> asyncpg.Record:
    period = Period.parse(row["period"])
    column = "steps" if ind.unit == "steps" else ind.unit
    assert column in (*CLOCK_UNITS, "steps")  # a column name from the catalog's closed list of units
    return await conn.fetchrow(
        f"UPDATE indicator_sums SET maximum = (SELECT max({column}) FROM cases WHERE status = 'closed'"
        "  AND case_type = $4 AND closed_on BETWEEN $5 AND $6 AND ($3 = $8 OR department = $3)"
        "  AND (department, case_id) <> ($9, $7))"
        f" WHERE indicator_id = $1 AND period = $2 AND department = $3 RETURNING {SUMS_COLUMNS}",
        ind.id, row["period"], row["department"], facts.case_type, period.first, period.last, case_id,
        ALL_DEPARTMENTS, facts.department)


# --- reported figures ------------------------------------------------------------------------------


async def record_report(conn: asyncpg.Connection, catalog: Catalog, *, source: str, event_id: str,
                        indicator_id: str, period: str, department: str, value: float, unit: str,
                        note: str | None, reported_at: datetime) -> None:
    """Keep every report; the latest by event time is the period's figure (a late, older report
    joins the record without replacing a newer one)."""
    await conn.execute(
        "INSERT INTO reported_values (source, event_id, indicator_id, period, department, value, unit, note,"
        " reported_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        source, event_id, indicator_id, period, department, value, unit, note, reported_at)
    rows = await conn.fetch(
        "INSERT INTO indicator_sums AS s (indicator_id, period, department, n, reported, reported_at)"
        " SELECT $1, $2, d, 1, $4, $5 FROM unnest($3::text[]) AS d"
        " ON CONFLICT (indicator_id, period, department) DO UPDATE SET n = s.n + 1,"
        " reported = CASE WHEN s.reported_at > EXCLUDED.reported_at THEN s.reported ELSE EXCLUDED.reported END,"
        " reported_at = GREATEST(s.reported_at, EXCLUDED.reported_at)"
        f" RETURNING {SUMS_COLUMNS}",
        indicator_id, period, [department, ALL_DEPARTMENTS], value, reported_at)
    await publish(conn, catalog, rows, cause=f"{source} {event_id}")


# --- published values ------------------------------------------------------------------------------


async def publish(conn: asyncpg.Connection, catalog: Catalog, rows: Iterable[asyncpg.Record], *, cause: str,
                  calendar_version: str | None = None) -> None:
    """Store each row's value as computed from its sums; a changed value gets a new as_of and a history row,
    which records the calendar version that computed the clocks behind it (None for reported figures)."""
    changed = []
    for row in rows:
        value = value_of(catalog.indicator(row["indicator_id"]), sums_of(row))
        if value != row["value"]:
            changed.append((row["indicator_id"], row["period"], row["department"], value, row["n"]))
    if not changed:
        return
    columns = list(map(list, zip(*changed, strict=True)))
    await conn.execute(
        "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::int[])"
        "  AS v (indicator_id, period, department, value, samples)),"
        " u AS (UPDATE indicator_sums s SET value = v.value, as_of = now() FROM v"
        "  WHERE (s.indicator_id, s.period, s.department) = (v.indicator_id, v.period, v.department))"
        " INSERT INTO indicator_history (indicator_id, period, department, value, samples, as_of, cause,"
        " calendar_version) SELECT indicator_id, period, department, value, samples, now(), $6, $7 FROM v",
        *columns, cause, calendar_version)


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
                            limit: int, offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT case_id, department, opened_at, ended_at AS closed_at, closed_on, outcome, handled_instantly, trips,"
        " steps, paused_intervals, calendar_days, working_days, working_hours,"
        " calendar_provisional AS provisional, calendar_version, clock_error"
        " FROM cases WHERE status = 'closed' AND case_type = $1 AND closed_on BETWEEN $2 AND $3"
        " AND ($4 = $5 OR department = $4) ORDER BY closed_on, case_id LIMIT $6 OFFSET $7",
        case_type, period.first, period.last, department, ALL_DEPARTMENTS, limit, offset)


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
    version, changed = hours.calendar.version, 0
    rows = await conn.fetch("SELECT * FROM cases WHERE status = 'closed' AND ($2 OR calendar_provisional"
                            " OR clock_error IS NOT NULL) AND calendar_version IS DISTINCT FROM $1", version, every_case)
    for row in rows:
        pauses = [(datetime.fromisoformat(p["from"]), datetime.fromisoformat(p["to"]), p["reason"])
                  for p in json.loads(row["paused_intervals"])]
        reading = read_clock(hours, opened_at=row["opened_at"], closed_at=row["ended_at"], pauses=pauses)
        async with conn.transaction():
            if reading.clock != facts_of(row).clock:
                await close_case(conn, catalog, ClosedCase(
                    case_id=row["case_id"], case_type=row["case_type"], department=row["department"],
                    opened_at=row["opened_at"], closed_at=row["ended_at"], closed_on=row["closed_on"],
                    outcome=row["outcome"], handled_instantly=row["handled_instantly"], trips=row["trips"],
                    steps=row["steps"], paused_intervals=json.loads(row["paused_intervals"]), reading=reading,
                    calendar_version=version), cause=f"calendar {version}")
                changed += 1
            else:  # same clock (still provisional, or the official year agrees): only the version moves on
                await conn.execute("UPDATE cases SET calendar_version = $1 WHERE department = $2 AND case_id = $3",
                                   version, row["department"], row["case_id"])
    return changed
