"""The notifier schema's escalations and deliveries: the SQL, kept apart from the ladder's rules."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta

import asyncpg

from duban.catalog.models import Task
from services.notifier.domain.escalation import Ladder

DELIVERY_COLUMNS = ("id, level, window_start, channel, recipient, departments, status, not_before, attempts,"
                    " last_error, created_at, finished_at")
ESCALATION_COLUMNS = (
    "id, item, kind, task_id, light, level, deadline, opened_at, level_since, red_since, units, addressees,"
    " acknowledged_at, acknowledged_by, acknowledged_note, acknowledged_until, resolved_at, next_check_at,"
    " awaiting_verification_since")
# A pending delivery no replica is sending: never claimed, or its claim's lease ran out.
UNCLAIMED = "(claimed_until IS NULL OR claimed_until <= clock_timestamp())"


def ladder_of(row: asyncpg.Record) -> Ladder:
    return Ladder(row["light"], row["level"], row["level_since"], row["red_since"], row["acknowledged_until"],
                  row["resolved_at"])


async def open_escalation(conn: asyncpg.Connection, item: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ESCALATION_COLUMNS} FROM escalations WHERE item = $1 AND resolved_at IS NULL FOR UPDATE", item)


async def open_deadlines(conn: asyncpg.Connection, task_id: str, kind: str) -> list[date]:
    return [r["deadline"] for r in await conn.fetch(
        "SELECT deadline FROM escalations WHERE task_id = $1 AND kind = $2 AND resolved_at IS NULL", task_id, kind)]


async def insert_escalation(conn: asyncpg.Connection, *, item: str, kind: str, task_id: str, ladder: Ladder,
                            deadline: date, units: list[str]) -> None:
    escalation_id = await conn.fetchval(
        "INSERT INTO escalations (item, kind, task_id, light, level, deadline, opened_at, level_since, red_since,"
        " units, next_check_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $7) RETURNING id",
        item, kind, task_id, ladder.light, ladder.level, deadline, ladder.level_since, ladder.red_since, units)
    await record(conn, escalation_id, "opened", ladder.level_since, ladder, deadline=deadline.isoformat())


async def update_ladder(conn: asyncpg.Connection, escalation_id: int, ladder: Ladder, *, deadline: date,
                        next_check_at: datetime, before: Ladder) -> None:
    """Store where the escalation stands; what changed since `before` goes into its history."""
    await conn.execute(
        "UPDATE escalations SET light = $2, level = $3, level_since = $4, red_since = $5, acknowledged_until = $6,"
        " resolved_at = $7, deadline = $8, next_check_at = $9 WHERE id = $1",
        escalation_id, ladder.light, ladder.level, ladder.level_since, ladder.red_since, ladder.acknowledged_until,
        ladder.resolved_at, deadline, next_check_at)
    if ladder.light != before.light:
        await record(conn, escalation_id, "light-changed", ladder.level_since, ladder, before=before.light)
    if ladder.level != before.level:
        await record(conn, escalation_id, "level-changed", ladder.level_since, ladder, before=before.level)
    if ladder.resolved_at is not None and before.resolved_at is None:
        await record(conn, escalation_id, "resolved", ladder.resolved_at, ladder)
        await cancel_pending(conn, escalation_id, "resolved")


async def record(conn: asyncpg.Connection, escalation_id: int, kind: str, at: datetime, ladder: Ladder, *,
                 principal: str | None = None, **detail) -> None:
    """Add an entry to the escalation's append-only history (migration 004)."""
    await conn.execute(
        "INSERT INTO escalation_history (escalation_id, at, kind, principal, level, light, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        escalation_id, at, kind, principal, ladder.level, ladder.light, json.dumps(detail, ensure_ascii=False, default=str))


async def history(conn: asyncpg.Connection, escalation_id: int, *, limit: int, offset: int
                  ) -> tuple[list[dict], int]:
    rows = await conn.fetch("SELECT id, at, kind, principal, level, light, detail, recorded_at FROM escalation_history"
                            " WHERE escalation_id = $1 ORDER BY id LIMIT $2 OFFSET $3", escalation_id, limit, offset)
    total = await conn.fetchval("SELECT count(*) FROM escalation_history WHERE escalation_id = $1", escalation_id)
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows], total


async def set_awaiting_verification(conn: asyncpg.Connection, escalation_id: int, since: datetime | None,
                                    next_check_at: datetime) -> None:
    """Pause (since = when the "done" was reported) or resume (None) the escalation; a pause cancels
    the notices not yet sent."""
    await conn.execute("UPDATE escalations SET awaiting_verification_since = $2, next_check_at = $3 WHERE id = $1",
                       escalation_id, since, next_check_at)
    if since is not None:
        await cancel_pending(conn, escalation_id, "awaiting verification")


async def set_deadline(conn: asyncpg.Connection, escalation_id: int, deadline: date) -> None:
    await conn.execute("UPDATE escalations SET deadline = $2 WHERE id = $1", escalation_id, deadline)


async def record_extension(conn: asyncpg.Connection, milestone_id: str, original_due: date, due: date) -> None:
    await conn.execute(
        "INSERT INTO milestone_deadlines (milestone_id, original_due, due) VALUES ($1, $2, $3)"
        " ON CONFLICT (milestone_id, original_due) DO UPDATE SET due = EXCLUDED.due", milestone_id, original_due, due)


async def extended_deadlines(conn: asyncpg.Connection, milestone_ids: list[str]) -> dict[tuple[str, date], date]:
    """(milestone id, plan due date) → the date of its approved extension."""
    rows = await conn.fetch("SELECT milestone_id, original_due, due FROM milestone_deadlines"
                            " WHERE milestone_id = ANY($1::text[])", milestone_ids)
    return {(r["milestone_id"], r["original_due"]): r["due"] for r in rows}


async def cancel_pending(conn: asyncpg.Connection, escalation_id: int, why: str) -> None:
    """Notices not yet sent are moot once the item is resolved or acknowledged. One being sent right now
    is left to its sender: it records what happened, and a failed one is cancelled when claimed again."""
    await conn.execute("UPDATE deliveries SET status = 'cancelled', last_error = $2 WHERE escalation_id = $1"
                       f" AND status = 'pending' AND {UNCLAIMED}", escalation_id, why)


async def claim_due_escalations(conn: asyncpg.Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    # SKIP LOCKED: a replica passes over the rows another is evaluating instead of waiting for them.
    return await conn.fetch(
        f"SELECT {ESCALATION_COLUMNS} FROM escalations WHERE resolved_at IS NULL AND next_check_at <= $1"
        " AND awaiting_verification_since IS NULL"
        " ORDER BY next_check_at, id LIMIT $2 FOR UPDATE SKIP LOCKED", now, limit)


async def set_addressees(conn: asyncpg.Connection, escalation_id: int, addressees: list[str]) -> None:
    await conn.execute("UPDATE escalations SET addressees = $2 WHERE id = $1", escalation_id, addressees)


async def plan_delivery(conn: asyncpg.Connection, *, escalation_id: int | None, item: str, level: int, window: date,
                        channel: str, recipient: str, departments: list[str], notice: dict, not_before: datetime,
                        now: datetime, kind: str = "escalation") -> bool:
    """Record a notice to send; False when this (kind, item, level, window, channel, recipient) exists already."""
    status = await conn.execute(
        "INSERT INTO deliveries (escalation_id, item, level, window_start, channel, recipient, departments, notice,"
        " not_before, created_at, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11)"
        " ON CONFLICT DO NOTHING",
        escalation_id, item, level, window, channel, recipient, departments, json.dumps(notice, ensure_ascii=False),
        not_before, now, kind)
    return status == "INSERT 0 1"


async def record_case_warning(conn: asyncpg.Connection, *, department: str, case_id: str, threshold: int,
                              as_of: datetime, notice: dict) -> None:
    await conn.execute(
        "INSERT INTO case_warnings (department, case_id, threshold, as_of, notice) VALUES ($1, $2, $3, $4, $5::jsonb)"
        " ON CONFLICT DO NOTHING", department, case_id, threshold, as_of, json.dumps(notice, ensure_ascii=False))


async def open_items_of(conn: asyncpg.Connection, department: str) -> list[asyncpg.Record]:
    """Open escalations of the tasks the department leads or works on, oldest deadline first; not those
    paused while their "done" awaits verification: there is nothing left to chase."""
    return await conn.fetch(
        "SELECT item, task_id, light, level, deadline FROM escalations WHERE resolved_at IS NULL AND $1 = ANY(units)"
        " AND awaiting_verification_since IS NULL ORDER BY deadline, item", department)


async def case_warnings_between(conn: asyncpg.Connection, department: str, after: datetime,
                                until: datetime) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT notice FROM case_warnings WHERE department = $1 AND as_of > $2 AND as_of <= $3"
        " ORDER BY as_of, case_id, threshold", department, after, until)


async def lights_of(conn: asyncpg.Connection, task_ids: list[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT task_id, light FROM task_lights WHERE task_id = ANY($1)", task_ids)
    return {r["task_id"]: r["light"] for r in rows}


async def due_delivery(conn: asyncpg.Connection, now: datetime) -> asyncpg.Record | None:
    """The next due notice nobody is sending, locked for the caller's short transaction. SKIP LOCKED: a
    replica passes over the row another is deciding on; `UNCLAIMED`: and the one another is sending."""
    return await conn.fetchrow(
        "SELECT d.id, d.kind, d.item, d.level, d.window_start, d.channel, d.recipient, d.notice, d.attempts,"
        " e.resolved_at, e.acknowledged_until, e.awaiting_verification_since FROM deliveries d LEFT JOIN escalations e ON e.id = d.escalation_id"
        f" WHERE d.status = 'pending' AND d.not_before <= $1 AND {UNCLAIMED}"
        " ORDER BY d.not_before, d.id LIMIT 1 FOR UPDATE OF d SKIP LOCKED", now)


async def claim(conn: asyncpg.Connection, delivery_id: int, lease: timedelta) -> uuid.UUID:
    """Make the delivery the caller's to send for `lease` of real time; returns the claim's token. The
    attempt counts from here, so one whose sender never comes back counts too."""
    token = uuid.uuid4()
    await conn.execute("UPDATE deliveries SET claim = $2, claimed_until = clock_timestamp() + $3::interval,"
                       " attempts = attempts + 1 WHERE id = $1", delivery_id, token, lease)
    return token


async def postpone(conn: asyncpg.Connection, delivery_id: int, not_before: datetime) -> None:
    await conn.execute("UPDATE deliveries SET not_before = $2 WHERE id = $1", delivery_id, not_before)


async def finish(conn: asyncpg.Connection, delivery_id: int, status: str, now: datetime, error: str | None = None) -> None:
    await conn.execute("UPDATE deliveries SET status = $2, finished_at = $3, last_error = $4 WHERE id = $1",
                       delivery_id, status, now, error)
    await _record_delivery(conn, delivery_id, status, error, now)


async def record_attempt(conn: asyncpg.Connection, delivery_id: int, claim: uuid.UUID, *, status: str,
                         error: str | None, not_before: datetime | None, now: datetime) -> bool:
    """Record how a claimed send went and release the claim; False, recording nothing, when the claim is
    no longer the caller's (it outlived its lease and another replica took the delivery over)."""
    updated = await conn.execute(
        "UPDATE deliveries SET status = $2::text, last_error = $3,"
        " not_before = coalesce($4::timestamptz, not_before),"
        " finished_at = CASE WHEN $2::text = 'pending' THEN NULL ELSE $5::timestamptz END,"
        " claim = NULL, claimed_until = NULL"
        " WHERE id = $1 AND claim = $6 AND status = 'pending'", delivery_id, status, error, not_before, now, claim)
    if updated != "UPDATE 1":
        return False
    await _record_delivery(conn, delivery_id, "retry" if status == "pending" else status, error, now)
    return True


async def _record_delivery(conn: asyncpg.Connection, delivery_id: int, outcome: str, error: str | None,
                           now: datetime) -> None:
    """An escalation's delivery, as it ended this time (sent, retry, dead, cancelled), in its history."""
    await conn.execute(
        "INSERT INTO escalation_history (escalation_id, at, kind, level, light, detail)"
        " SELECT d.escalation_id, $2, 'delivery', d.level, e.light, jsonb_build_object('delivery_id', d.id,"
        " 'channel', d.channel, 'recipient', d.recipient, 'window', d.window_start, 'attempt', d.attempts,"
        " 'outcome', $3::text, 'error', $4::text)"
        " FROM deliveries d JOIN escalations e ON e.id = d.escalation_id WHERE d.id = $1",
        delivery_id, now, outcome, error)


async def robot_slot(conn: asyncpg.Connection, recipient: str, now: datetime, per_minute: int) -> datetime | None:
    """Take one of a robot's sends in the rolling minute ending now; or, when all are spent, return when
    the oldest comes back. Taken when the message is claimed, so one being sent counts; the transaction
    lock serialises replicas' claims on one robot."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"duban-notifier-robot:{recipient}")
    await conn.execute("DELETE FROM robot_sends WHERE recipient = $1 AND sent_at <= $2::timestamptz - interval '1 minute'",
                       recipient, now)
    recent = await conn.fetch("SELECT sent_at FROM robot_sends WHERE recipient = $1 AND sent_at > $2::timestamptz - interval '1 minute'"
                              " ORDER BY sent_at DESC LIMIT $3", recipient, now, per_minute)
    if len(recent) >= per_minute:
        return recent[-1]["sent_at"] + timedelta(minutes=1)
    await conn.execute("INSERT INTO robot_sends (recipient, sent_at) VALUES ($1, $2)", recipient, now)
    return None


async def counts(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """Open escalations per level and whether paused awaiting verification, and deliveries waiting or
    dead per channel (for the gauges)."""
    levels = await conn.fetch("SELECT level, awaiting_verification_since IS NOT NULL AS awaiting, count(*) AS n"
                              " FROM escalations WHERE resolved_at IS NULL GROUP BY 1, 2")
    waiting = await conn.fetch("SELECT channel, status, count(*) AS n FROM deliveries WHERE status IN ('pending', 'dead')"
                               " GROUP BY channel, status")
    return levels, waiting


async def follow_light(conn: asyncpg.Connection, task: Task, light: str, at: datetime) -> bool:
    """Record the task's light as of `at` (its units as the plan names them now); True when it changed."""
    previous = await conn.fetchval("SELECT light FROM task_lights WHERE task_id = $1", task.id)
    await conn.execute(
        "INSERT INTO task_lights (task_id, light, since, lead, responsible) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (task_id) DO UPDATE SET lead = EXCLUDED.lead, responsible = EXCLUDED.responsible,"
        " light = EXCLUDED.light, since = CASE WHEN task_lights.light = EXCLUDED.light THEN task_lights.since"
        " ELSE EXCLUDED.since END",
        task.id, light, at, list(task.lead), list(task.responsible))
    return previous != light


# -- bulletins (POST /v1/bulletins) ---------------------------------------------------------------


async def receive_bulletin(conn: asyncpg.Connection, *, bulletin_id: int, week: str, title: str, summary: list[str],
                           html: str, document: bytes, at: datetime, by: str) -> bool:
    """Keep a bulletin the board handed over; False when this bulletin id is here already (a repeat)."""
    status = await conn.execute(
        "INSERT INTO bulletins (bulletin_id, week, title, summary, html, document, received_at, received_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (bulletin_id) DO NOTHING",
        bulletin_id, week, title, summary, html, document, at, by)
    return status == "INSERT 0 1"


async def bulletin(conn: asyncpg.Connection, bulletin_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT bulletin_id, week, title, received_at, received_by, document FROM bulletins"
                               " WHERE bulletin_id = $1", bulletin_id)


async def bulletin_content(conn: asyncpg.Connection, bulletin_id: int) -> asyncpg.Record:
    return await conn.fetchrow("SELECT html, document FROM bulletins WHERE bulletin_id = $1", bulletin_id)


async def bulletin_deliveries(conn: asyncpg.Connection, bulletin_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT channel, recipient, status, attempts, last_error, finished_at FROM deliveries"
                            " WHERE kind = 'bulletin' AND item = $1 ORDER BY id", str(bulletin_id))


# -- the read API ---------------------------------------------------------------------------------


async def escalation(conn: asyncpg.Connection, escalation_id: int, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ESCALATION_COLUMNS} FROM escalations WHERE id = $1"
                               + (" FOR UPDATE" if lock else ""), escalation_id)


async def deliveries_of(conn: asyncpg.Connection, escalation_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE escalation_id = $1 ORDER BY id",
                            escalation_id)


async def list_escalations(conn: asyncpg.Connection, *, level: int | None, department: str | None, open: bool | None,
                           task_ids: list[str] | None, limit: int, offset: int
                           ) -> tuple[list[asyncpg.Record], int, dict[int, dict[str, int]]]:
    """A page of escalations, newest first, the total, and each one's deliveries counted by status."""
    where = ("($1::int IS NULL OR level = $1) AND ($2::text IS NULL OR $2 = ANY(units || addressees))"
             " AND ($3::bool IS NULL OR (resolved_at IS NULL) = $3) AND ($4::text[] IS NULL OR task_id = ANY($4))")
    filters = (level, department, open, task_ids)
    rows = await conn.fetch(f"SELECT {ESCALATION_COLUMNS} FROM escalations WHERE {where}"
                            " ORDER BY id DESC LIMIT $5 OFFSET $6", *filters, limit, offset)
    total = await conn.fetchval(f"SELECT count(*) FROM escalations WHERE {where}", *filters)
    counts = await conn.fetch("SELECT escalation_id, status, count(*) AS n FROM deliveries"
                              " WHERE escalation_id = ANY($1) GROUP BY escalation_id, status", [r["id"] for r in rows])
    by_escalation: dict[int, dict[str, int]] = {}
    for c in counts:
        by_escalation.setdefault(c["escalation_id"], {})[c["status"]] = c["n"]
    return rows, total, by_escalation


async def acknowledge(conn: asyncpg.Connection, escalation_id: int, *, at: datetime, by: str, note: str | None,
                      until: datetime) -> None:
    """Pause the escalation until `until` and cancel what it has not sent yet."""
    await conn.execute(
        "UPDATE escalations SET acknowledged_at = $2, acknowledged_by = $3, acknowledged_note = $4,"
        " acknowledged_until = $5, next_check_at = $5 WHERE id = $1",
        escalation_id, at, by, note, until)
    await cancel_pending(conn, escalation_id, "acknowledged")


async def list_deliveries(conn: asyncpg.Connection, *, status: str | None, channel: str | None,
                          task_ids: list[str] | None, limit: int, offset: int) -> list[dict]:
    rows = await conn.fetch(
        f"SELECT kind, escalation_id, item, notice, {DELIVERY_COLUMNS} FROM deliveries WHERE ($1::text IS NULL OR"
        " status = $1) AND ($2::text IS NULL OR channel = $2) AND ($5::text[] IS NULL OR escalation_id IN"
        " (SELECT id FROM escalations WHERE task_id = ANY($5))) ORDER BY id DESC LIMIT $3 OFFSET $4",
        status, channel, limit, offset, task_ids)
    return [{**dict(r), "notice": json.loads(r["notice"])} for r in rows]
