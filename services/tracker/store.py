"""The tracker's PostgreSQL state: tasks, reports, milestones, cases and their events.

Writes take whole batches (one statement per table per batch, via unnest); rows of one aggregate
are locked in key order so that concurrent transactions (the batch, the scheduled evaluation and case
warnings, the API's extensions and verifications, two replicas during a rebalance) serialise per
aggregate instead of deadlocking. The lock is FOR NO KEY UPDATE, the one an UPDATE of non-key columns
takes: it excludes every other writer of the row but not the FOR KEY SHARE of a foreign-key check, so a
batch is not held up by the case-warning job's transaction, which key-shares each case it warns about
(case_warnings references cases) while it scans a few hundred of them, nor by an uncommitted report
of a task it is about to evaluate."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime

import asyncpg
import orjson

from duban.catalog import Catalog
from duban.events.models import TaskMilestoneCompleted, TaskProgressReported
from services.tracker.domain.cases import KINDS, Announced, CaseEvent

TASK_COLUMNS = ("id, area, title, lead, responsible, status, percent, light, light_reason, light_as_of, light_basis,"
                " light_uncovered_year, next_due, last_report_at, last_reporter, last_event_id, last_note,"
                " evidence_url, updated_at")


def _json(value: dict) -> str:
    # orjson: a tenth of json's time on a batch's case states. It writes instants as RFC 3339 (with a T),
    # which every reader of the state parses (datetime.fromisoformat, PostgreSQL, pydantic).
    return orjson.dumps(value).decode()


# orjson reads an integer of 19 digits or more as a float where json keeps an int (as duban.events.kafka).
_LONG_DIGITS = re.compile(r"[0-9]{19}")


def _loads(text: str):
    """json.loads at a third of its cost: orjson, unless the text holds an integer orjson would not keep."""
    return json.loads(text) if _LONG_DIGITS.search(text) else orjson.loads(text)


def _columns(rows: Sequence[tuple]) -> list[list]:
    return [list(column) for column in zip(*rows, strict=True)]


async def sync_catalog(conn: asyncpg.Connection, catalog: Catalog) -> None:
    """Make the tasks table hold every catalog task; the plan's facts win, reported state is kept."""
    await conn.executemany(
        "INSERT INTO tasks (id, area, title, lead, responsible) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (id) DO UPDATE SET area = EXCLUDED.area, title = EXCLUDED.title,"
        " lead = EXCLUDED.lead, responsible = EXCLUDED.responsible",
        [(t.id, t.area, t.title, list(t.lead), list(t.responsible)) for t in catalog.tasks])


# --- tasks: writes ---------------------------------------------------------------------------------


async def insert_reports(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    """rows: (source, event_id, task_id, event_time, status, percent, note, evidence_url)."""
    if rows:
        await conn.execute(
            "INSERT INTO task_reports (source, event_id, task_id, event_time, status, percent, note, evidence_url)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::int[],"
            " $7::text[], $8::text[]) ON CONFLICT DO NOTHING", *_columns(rows))


async def insert_completions(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    """rows: (source, event_id, task_id, milestone_id, event_time, note, evidence_url)."""
    if rows:
        await conn.execute(
            "INSERT INTO milestone_completions (source, event_id, task_id, milestone_id, event_time, note, evidence_url)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],"
            " $7::text[]) ON CONFLICT DO NOTHING", *_columns(rows))


async def lock_tasks(conn: asyncpg.Connection, task_ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE",
                            sorted(task_ids))
    return {r["id"]: r for r in rows}


# Voided events stay in their tables but take no part in any fold (services/tracker/void.py).
_NOT_VOIDED = "NOT EXISTS (SELECT 1 FROM voided_events v WHERE v.source = {0}.source AND v.event_id = {0}.event_id)"


async def current_reports(conn: asyncpg.Connection, task_ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    """Each task's report that is current: the latest in event time, ties broken by (source, id), so the
    outcome does not depend on arrival order."""
    rows = await conn.fetch(
        "SELECT r.* FROM unnest($1::text[]) AS t (id) CROSS JOIN LATERAL"
        " (SELECT task_id, source, event_id, event_time, status, percent, note, evidence_url FROM task_reports tr"
        f"  WHERE task_id = t.id AND {_NOT_VOIDED.format('tr')}"
        "  ORDER BY event_time DESC, source DESC, event_id DESC LIMIT 1) AS r", list(task_ids))
    return {r["task_id"]: r for r in rows}


async def completions_of(conn: asyncpg.Connection, task_ids: Sequence[str]) -> dict[str, list[asyncpg.Record]]:
    rows = await conn.fetch("SELECT task_id, source, event_id, milestone_id, event_time FROM milestone_completions mc"
                            f" WHERE task_id = ANY($1::text[]) AND {_NOT_VOIDED.format('mc')}", list(task_ids))
    out: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        out[row["task_id"]].append(row)
    return out


async def milestone_states(conn: asyncpg.Connection, task_ids: Sequence[str]
                           ) -> dict[tuple[str, object], tuple[str, str | None, str]]:
    """(milestone_id, due) -> (status, id of the completion that did it, status last announced)."""
    rows = await conn.fetch("SELECT milestone_id, due, status, done_event_id, announced FROM milestones"
                            " WHERE task_id = ANY($1::text[])", list(task_ids))
    return {(r["milestone_id"], r["due"]): (r["status"], r["done_event_id"], r["announced"]) for r in rows}


async def save_milestones(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    """rows: (milestone_id, due, task_id, starts, status, done_at, done_by, done_event_id, status_as_of, announced)."""
    if rows:
        await conn.execute(
            "INSERT INTO milestones (milestone_id, due, task_id, starts, status, done_at, done_by, done_event_id,"
            " status_as_of, announced) SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::date[], $5::text[],"
            " $6::timestamptz[], $7::text[], $8::text[], $9::timestamptz[], $10::text[])"
            " ON CONFLICT (milestone_id, due) DO UPDATE SET starts = EXCLUDED.starts, status = EXCLUDED.status,"
            " done_at = EXCLUDED.done_at, done_by = EXCLUDED.done_by, done_event_id = EXCLUDED.done_event_id,"
            " status_as_of = EXCLUDED.status_as_of, announced = EXCLUDED.announced", *_columns(rows))


async def verification_outcomes(conn: asyncpg.Connection, task_ids: Sequence[str]) -> dict[tuple[str, str], str]:
    """(source, event id) of a judged report or completion → 'verified' or 'returned'."""
    rows = await conn.fetch("SELECT source, event_id, outcome FROM verification_decisions"
                            " WHERE task_id = ANY($1::text[])", list(task_ids))
    return {(r["source"], r["event_id"]): r["outcome"] for r in rows}


async def save_tasks(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    """rows: (id, status, percent, last_report_at, last_reporter, last_event_id, last_note, evidence_url,
    light, light_reason, light_as_of, light_basis, light_uncovered_year, next_due)."""
    if rows:
        await conn.execute(
            "UPDATE tasks t SET status = u.status, percent = u.percent, last_report_at = u.last_report_at,"
            " last_reporter = u.last_reporter, last_event_id = u.last_event_id, last_note = u.last_note,"
            " evidence_url = u.evidence_url, light = u.light, light_reason = u.light_reason,"
            " light_as_of = u.light_as_of, light_basis = u.light_basis,"
            " light_uncovered_year = u.light_uncovered_year, next_due = u.next_due, updated_at = clock_timestamp()"
            " FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],"
            " $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::text[], $13::int[], $14::date[])"
            " AS u (id, status, percent, last_report_at, last_reporter, last_event_id, last_note, evidence_url,"
            " light, light_reason, light_as_of, light_basis, light_uncovered_year, next_due) WHERE t.id = u.id",
            *_columns(rows))


# --- cases: writes ---------------------------------------------------------------------------------


async def insert_case_events(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    """rows: (source, event_id, department, case_id, type, event_time, data as JSON text)."""
    if rows:
        await conn.execute(
            "INSERT INTO case_events (source, event_id, department, case_id, type, event_time, data)"
            " SELECT s, i, d, c, t, e, j::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
            " $5::text[], $6::timestamptz[], $7::text[]) AS u (s, i, d, c, t, e, j) ON CONFLICT DO NOTHING",
            *_columns(rows))


async def lock_cases(conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Announced]:
    """Create the rows of cases not seen before and lock all of them; returns what was announced of each."""
    departments, case_ids = _columns(sorted(keys))
    await conn.execute(
        "INSERT INTO cases (department, case_id) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
        departments, case_ids)
    rows = await conn.fetch(
        "SELECT department, case_id, announced FROM cases WHERE (department, case_id) IN"
        " (SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY department, case_id FOR NO KEY UPDATE",
        departments, case_ids)
    return {(r["department"], r["case_id"]): Announced.from_json(json.loads(r["announced"])) for r in rows}


async def case_events_of(conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]
                         ) -> dict[tuple[str, str], list[CaseEvent]]:
    departments, case_ids = _columns(keys)
    rows = await conn.fetch(
        "SELECT department, case_id, source, event_id, type, event_time, data FROM case_events ce"
        " WHERE (department, case_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
        f" AND {_NOT_VOIDED.format('ce')}", departments, case_ids)
    out: dict[tuple[str, str], list[CaseEvent]] = defaultdict(list)
    for r in rows:
        out[(r["department"], r["case_id"])].append(
            CaseEvent(r["source"], r["event_id"], KINDS[r["type"]], r["event_time"], _loads(r["data"])))
    return out


async def save_cases(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    """rows: (department, case_id, case_type, status, opened_at, ended_at, state dict, announced dict)."""
    if rows:
        await conn.execute(
            "UPDATE cases c SET case_type = u.case_type, status = u.status, opened_at = u.opened_at,"
            " ended_at = u.ended_at, state = u.state::jsonb, announced = u.announced::jsonb,"
            " updated_at = clock_timestamp()"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],"
            " $7::text[], $8::text[]) AS u (department, case_id, case_type, status, opened_at, ended_at, state,"
            " announced) WHERE (c.department, c.case_id) = (u.department, u.case_id)",
            *_columns([(*r[:6], _json(r[6]), _json(r[7])) for r in rows]))


# --- reads -----------------------------------------------------------------------------------------

_TASK_FILTER = ("($1::text IS NULL OR area = $1) AND ($2::text[] IS NULL OR id = ANY($2::text[]))"
                " AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR light = $4)")


async def list_tasks(conn: asyncpg.Connection, *, area: str | None, task_ids: Sequence[str] | None,
                     status: str | None, light: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
    """Tasks matching every given filter (`task_ids`: e.g. a department's, as the catalog knows them)."""
    args = (area, None if task_ids is None else list(task_ids), status, light)
    total = await conn.fetchval(f"SELECT count(*) FROM tasks WHERE {_TASK_FILTER}", *args)
    rows = await conn.fetch(f"SELECT {TASK_COLUMNS} FROM tasks WHERE {_TASK_FILTER} ORDER BY id LIMIT $5 OFFSET $6",
                            *args, limit, offset)
    return [dict(r) for r in rows], total


async def get_task(conn: asyncpg.Connection, task_id: str) -> dict | None:
    row = await conn.fetchrow(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1", task_id)
    return None if row is None else (await with_milestones(conn, [dict(row)]))[0]


async def with_milestones(conn: asyncpg.Connection, tasks: list[dict]) -> list[dict]:
    """The tasks with their report count, milestones (and their extensions) and milestone completions:
    four statements, however many tasks."""
    ids = [task["id"] for task in tasks]
    history_totals = dict(await conn.fetch(
        "SELECT task_id, count(*) FROM task_reports WHERE task_id = ANY($1::text[]) GROUP BY task_id", ids))
    milestones = await conn.fetch(
        "SELECT task_id, milestone_id, due, starts, status, done_at, done_by, done_event_id, status_as_of FROM milestones"
        " WHERE task_id = ANY($1::text[]) ORDER BY due, milestone_id", ids)
    completions = await conn.fetch(
        "SELECT task_id, source, event_id, milestone_id, event_time, note, evidence_url FROM milestone_completions"
        " WHERE task_id = ANY($1::text[]) ORDER BY event_time, source, event_id", ids)
    extensions = await conn.fetch(
        f"SELECT {EXTENSION_COLUMNS} FROM milestone_extensions WHERE task_id = ANY($1::text[]) ORDER BY id", ids)
    return [{**task, "history_total": history_totals.get(task["id"], 0),
             "milestones": [_with_extensions(dict(m), [e for e in extensions if e["task_id"] == task["id"]])
                            for m in milestones if m["task_id"] == task["id"]],
             "milestone_completions": [dict(c) for c in completions if c["task_id"] == task["id"]]}
            for task in tasks]


EXTENSION_COLUMNS = ("id, task_id, milestone_id, original_due, requested_due, reason, evidence, requested_by,"
                     " requested_at, status, decided_by, decided_at, decision_reason")


def extension_of(row: asyncpg.Record) -> dict:
    return {**dict(row), "evidence": json.loads(row["evidence"])}


def _with_extensions(milestone: dict, extensions: Sequence[asyncpg.Record]) -> dict:
    """The occurrence with its plan date as `original_due`, its deadline as `due` (the last approved
    extension's date, if any) and every extension request about it."""
    mine = [extension_of(e) for e in extensions
            if (e["milestone_id"], e["original_due"]) == (milestone["milestone_id"], milestone["due"])]
    approved = [e for e in mine if e["status"] == "approved"]
    due = max(approved, key=lambda e: e["decided_at"])["requested_due"] if approved else milestone["due"]
    return {**milestone, "original_due": milestone["due"], "due": due, "extensions": mine}


async def approved_extensions(conn: asyncpg.Connection, task_ids: Sequence[str]) -> dict[tuple[str, date], date]:
    """(milestone id, plan due date) → the date of its latest approved extension."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (milestone_id, original_due) milestone_id, original_due, requested_due"
        " FROM milestone_extensions WHERE task_id = ANY($1::text[]) AND status = 'approved'"
        " ORDER BY milestone_id, original_due, decided_at DESC, id DESC", list(task_ids))
    return {(r["milestone_id"], r["original_due"]): r["requested_due"] for r in rows}


async def task_history(conn: asyncpg.Connection, task_id: str, *, limit: int, offset: int) -> tuple[list[dict], int]:
    """A page of the task's reports, the latest (in event time) first."""
    total = await conn.fetchval("SELECT count(*) FROM task_reports WHERE task_id = $1", task_id)
    rows = await conn.fetch(
        "SELECT source, event_id, event_time, status, percent, note, evidence_url FROM task_reports"
        " WHERE task_id = $1 ORDER BY event_time DESC, source DESC, event_id DESC LIMIT $2 OFFSET $3",
        task_id, limit, offset)
    return [dict(r) for r in rows], total


async def get_case(conn: asyncpg.Connection, department: str, case_id: str) -> dict | None:
    row = await conn.fetchrow("SELECT state, updated_at FROM cases WHERE department = $1 AND case_id = $2",
                              department, case_id)
    if row is None:
        return None
    events = await conn.fetch(
        "SELECT source, event_id, type, event_time, data FROM case_events WHERE department = $1 AND case_id = $2"
        " ORDER BY event_time, source, event_id", department, case_id)
    return {**json.loads(row["state"]), "updated_at": row["updated_at"],
            "history": [{**dict(e), "data": json.loads(e["data"])} for e in events]}


async def departments_of_case(conn: asyncpg.Connection, case_id: str) -> list[str]:
    return [r["department"] for r in await conn.fetch(
        "SELECT department FROM cases WHERE case_id = $1 ORDER BY department", case_id)]


async def open_cases(conn: asyncpg.Connection, department: str, *, limit: int, offset: int
                     ) -> tuple[list[dict], int]:
    where = "department = $1 AND status IN ('open', 'paused', 'pending')"
    total = await conn.fetchval(f"SELECT count(*) FROM cases WHERE {where}", department)
    rows = await conn.fetch(f"SELECT case_id, case_type, status, opened_at FROM cases WHERE {where}"
                            " ORDER BY opened_at NULLS LAST, case_id LIMIT $2 OFFSET $3", department, limit, offset)
    return [dict(r) for r in rows], total


async def open_cases_to_warn(conn: asyncpg.Connection, case_types: Sequence[str], after: tuple[str, str],
                             limit: int) -> list[asyncpg.Record]:
    """Open or paused cases of these types after the key `after`, in key order, with the thresholds
    they were already warned about."""
    return await conn.fetch(
        "SELECT c.department, c.case_id, c.case_type, c.opened_at, c.state,"
        " coalesce((SELECT array_agg(w.threshold) FROM case_warnings w"
        "           WHERE (w.department, w.case_id) = (c.department, c.case_id)), '{}') AS warned"
        " FROM cases c WHERE c.status IN ('open', 'paused') AND c.opened_at IS NOT NULL"
        " AND c.case_type = ANY($1::text[]) AND (c.department, c.case_id) > ($2, $3)"
        " ORDER BY c.department, c.case_id LIMIT $4", list(case_types), after[0], after[1], limit)


async def record_warnings(conn: asyncpg.Connection, department: str, case_id: str, thresholds: Sequence[int],
                          indicator: str, crossed_at: datetime) -> list[int]:
    """Mark the thresholds passed (the highest one announced); returns those not marked before."""
    rows = await conn.fetch(
        "INSERT INTO case_warnings (department, case_id, threshold, indicator, crossed_at, announced)"
        " SELECT $1, $2, t, $4, $5, t = $6 FROM unnest($3::smallint[]) AS t"
        " ON CONFLICT DO NOTHING RETURNING threshold", department, case_id, list(thresholds), indicator, crossed_at,
        max(thresholds))
    return sorted(r["threshold"] for r in rows)


async def all_task_ids(conn: asyncpg.Connection) -> list[str]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM tasks ORDER BY id")]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def count_extended_occurrences(conn: asyncpg.Connection) -> int:
    """Milestone occurrences whose deadline an approved extension moved."""
    return await conn.fetchval(
        "SELECT count(DISTINCT (milestone_id, original_due)) FROM milestone_extensions WHERE status = 'approved'")


async def occurrences_of(conn: asyncpg.Connection, task_id: str, milestone_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT due, status FROM milestones WHERE task_id = $1 AND milestone_id = $2 ORDER BY due",
                            task_id, milestone_id)


async def insert_extension(conn: asyncpg.Connection, task_id: str, milestone_id: str, original_due: date,
                           requested_due: date, reason: str, evidence: list[str], principal: str,
                           now: datetime) -> dict:
    """A new request; raises UniqueViolationError while the occurrence has an undecided one."""
    row = await conn.fetchrow(
        "INSERT INTO milestone_extensions (task_id, milestone_id, original_due, requested_due, reason, evidence,"
        f" requested_by, requested_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {EXTENSION_COLUMNS}",
        task_id, milestone_id, original_due, requested_due, reason, json.dumps(evidence), principal, now)
    return extension_of(row)


async def task_of_extension(conn: asyncpg.Connection, extension_id: int) -> str | None:
    return await conn.fetchval("SELECT task_id FROM milestone_extensions WHERE id = $1", extension_id)


async def decide_extension(conn: asyncpg.Connection, extension_id: int, status: str, principal: str, now: datetime,
                           reason: str) -> dict | None:
    """The request with its decision; None when it was decided before."""
    row = await conn.fetchrow(
        "UPDATE milestone_extensions SET status = $2, decided_by = $3, decided_at = $4, decision_reason = $5"
        f" WHERE id = $1 AND status = 'requested' RETURNING {EXTENSION_COLUMNS}",
        extension_id, status, principal, now, reason)
    return None if row is None else extension_of(row)


async def list_extensions(conn: asyncpg.Connection, *, status: str | None, task_ids: list[str] | None,
                          limit: int, offset: int) -> tuple[list[dict], int]:
    where = "($1::text IS NULL OR status = $1) AND ($2::text[] IS NULL OR task_id = ANY($2))"
    rows = await conn.fetch(f"SELECT {EXTENSION_COLUMNS} FROM milestone_extensions WHERE {where}"
                            " ORDER BY id LIMIT $3 OFFSET $4", status, task_ids, limit, offset)
    total = await conn.fetchval(f"SELECT count(*) FROM milestone_extensions WHERE {where}", status, task_ids)
    return [extension_of(r) for r in rows], total


async def find_applied_event(conn: asyncpg.Connection, source: str, event_id: str) -> asyncpg.Record | None:
    """Where an applied department event is kept, and what it belongs to: kind 'task' (subject = the
    task) or 'case' (subject = the case, with its department)."""
    return await conn.fetchrow(
        "SELECT 'task' AS kind, $3::text AS type, task_id AS subject, NULL AS department"
        " FROM task_reports WHERE source = $1 AND event_id = $2"
        " UNION ALL SELECT 'task', $4::text, task_id, NULL FROM milestone_completions"
        " WHERE source = $1 AND event_id = $2"
        " UNION ALL SELECT 'case', type, case_id, department FROM case_events WHERE source = $1 AND event_id = $2",
        source, event_id, TaskProgressReported.TYPE, TaskMilestoneCompleted.TYPE)


async def record_void(conn: asyncpg.Connection, source: str, event_id: str, type_: str, subject: str, reason: str,
                      principal: str) -> datetime | None:
    """When the void was recorded; None when the event was voided before."""
    return await conn.fetchval(
        "INSERT INTO voided_events (source, event_id, type, subject, reason, principal)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING voided_at",
        source, event_id, type_, subject, reason, principal)


async def last_outbox_seq(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT coalesce(max(seq), 0) FROM outbox")


async def outbox_rows_after(conn: asyncpg.Connection, seq: int) -> int:
    return await conn.fetchval("SELECT count(*) FROM outbox WHERE seq > $1", seq)


# --- replay: the schema rebuilt from the topic (services/tracker/replay.py) ----------------------

# The district office's voids and the extension requests with their decisions are records of what
# people decided, not derived state: they outlive the rebuild (table → the columns copied).
_DECISIONS = {
    "voided_events": ("source", "event_id", "type", "subject", "reason", "principal", "voided_at"),
    "milestone_extensions": ("id", "task_id", "milestone_id", "original_due", "requested_due", "reason", "evidence",
                             "requested_by", "requested_at", "status", "decided_by", "decided_at", "decision_reason"),
    "verification_decisions": ("id", "task_id", "milestone_id", "due", "source", "event_id", "requested_at", "outcome",
                               "reason", "decided_by", "decided_at"),
}


async def take_relay_lock(conn: asyncpg.Connection, schema: str) -> bool:
    """The schema's relay lock (duban/outbox.py), held by every running tracker; False while one runs."""
    return await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"duban-relay:{schema}")


async def decisions_of(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple]]:
    kept = {}
    for table, columns in _DECISIONS.items():
        if await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".{table}') is not None:
            kept[table] = [tuple(r) for r in await conn.fetch(f'SELECT {", ".join(columns)} FROM "{schema}".{table}')]
    return kept


async def drop_schema(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def restore_decisions(conn: asyncpg.Connection, kept: dict[str, list[tuple]]) -> None:
    for table, records in kept.items():
        await conn.copy_records_to_table(table, records=records, columns=_DECISIONS[table])
    # New requests and decisions are numbered after the copied ones.
    for table in ("milestone_extensions", "verification_decisions"):
        await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false)"
                           f" FROM {table}")


async def mark_outbox_published(conn: asyncpg.Connection) -> None:
    """The rebuilt outbox repeats what was announced before: nothing in it is to be published again."""
    await conn.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")


# --- verification (services/tracker/verification.py) ----------------------------------------------

DECISION_COLUMNS = ("task_id, milestone_id, due, source, event_id, requested_at, outcome, reason, decided_by,"
                    " decided_at")


async def count_awaiting_verification(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM tasks WHERE status = 'awaiting_verification') AS task,"
        " (SELECT count(*) FROM milestones WHERE status = 'awaiting_verification') AS milestone")
    return dict(row)


async def awaiting_request(conn: asyncpg.Connection, task_id: str, milestone_id: str | None) -> asyncpg.Record | None:
    """The report or completion awaiting verification: the task's current done report, or the
    milestone's oldest occurrence completed and undecided."""
    if milestone_id is None:
        return await conn.fetchrow(
            "SELECT NULL::date AS due, last_reporter AS source, last_event_id AS event_id, last_report_at AS requested_at"
            " FROM tasks WHERE id = $1 AND status = 'awaiting_verification'", task_id)
    return await conn.fetchrow(
        "SELECT due, done_by AS source, done_event_id AS event_id, done_at AS requested_at FROM milestones"
        " WHERE task_id = $1 AND milestone_id = $2 AND status = 'awaiting_verification' ORDER BY due LIMIT 1",
        task_id, milestone_id)


async def record_verification(conn: asyncpg.Connection, task_id: str, milestone_id: str | None,
                              request: asyncpg.Record, *, outcome: str, reason: str | None, principal: str,
                              now: datetime) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO verification_decisions (task_id, milestone_id, due, source, event_id, requested_at, outcome,"
        f" reason, decided_by, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {DECISION_COLUMNS}",
        task_id, milestone_id, request["due"], request["source"], request["event_id"], request["requested_at"],
        outcome, reason, principal, now)


# Everything awaiting (derived: tasks and occurrences) and everything decided (recorded), in one list.
_VERIFICATIONS = (
    "SELECT id AS task_id, NULL::text AS milestone_id, NULL::date AS due, last_reporter AS source,"
    " last_event_id AS event_id, last_report_at AS requested_at, NULL::text AS outcome, NULL::text AS reason,"
    " NULL::text AS decided_by, NULL::timestamptz AS decided_at FROM tasks WHERE status = 'awaiting_verification'"
    " UNION ALL SELECT task_id, milestone_id, due, done_by, done_event_id, done_at, NULL, NULL, NULL, NULL"
    " FROM milestones WHERE status = 'awaiting_verification'"
    f" UNION ALL SELECT {DECISION_COLUMNS} FROM verification_decisions"
)


async def verifications(conn: asyncpg.Connection, *, status: str | None, task_ids: Sequence[str] | None, limit: int,
                        offset: int) -> tuple[list[asyncpg.Record], int]:
    """Requests awaiting and decisions taken (status awaiting, verified or returned), oldest request first."""
    where = ("($1::text IS NULL OR coalesce(outcome, 'awaiting') = $1)"
             " AND ($2::text[] IS NULL OR task_id = ANY($2))")
    rows = await conn.fetch(f"SELECT * FROM ({_VERIFICATIONS}) v WHERE {where}"
                            " ORDER BY requested_at, task_id, milestone_id NULLS FIRST, due, source, event_id"
                            " LIMIT $3 OFFSET $4", status, task_ids, limit, offset)
    total = await conn.fetchval(f"SELECT count(*) FROM ({_VERIFICATIONS}) v WHERE {where}", status, task_ids)
    return rows, total
