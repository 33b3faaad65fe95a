"""The tracker's PostgreSQL state: tasks and their reports."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from duban.catalog import Catalog

TASK_COLUMNS = ("id, area, title, lead, responsible, status, percent, light, last_report_at, last_reporter,"
                " last_note, evidence_url, updated_at")


async def sync_catalog(conn: asyncpg.Connection, catalog: Catalog) -> None:
    """Make the tasks table hold every catalog task; the plan's facts win, reported state is kept."""
    await conn.executemany(
        "INSERT INTO tasks (id, area, title, lead, responsible) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (id) DO UPDATE SET area = EXCLUDED.area, title = EXCLUDED.title,"
        " lead = EXCLUDED.lead, responsible = EXCLUDED.responsible",
        [(t.id, t.area, t.title, list(t.lead), list(t.responsible)) for t in catalog.tasks])


async def record_progress(conn: asyncpg.Connection, *, source: str, event_id: str, task_id: str, at: datetime,
                          status: str, percent: int, note: str | None, evidence_url: str | None) -> dict | None:
    """Store a report and, if it is the newest in event time, make it the task's current state.

    Returns the task's new row when the current state changed (a late report only joins the history)."""
    await conn.execute(
        "INSERT INTO task_reports (source, event_id, task_id, event_time, status, percent, note, evidence_url)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        source, event_id, task_id, at, status, percent, note, evidence_url)
    row = await conn.fetchrow(
        f"UPDATE tasks SET status = $2, percent = $3, last_report_at = $4, last_reporter = $5, last_note = $6,"
        f" evidence_url = $7, updated_at = now()"
        f" WHERE id = $1 AND (last_report_at IS NULL OR last_report_at <= $4) RETURNING {TASK_COLUMNS}",
        task_id, status, percent, at, source, note, evidence_url)
    return dict(row) if row else None


async def list_tasks(conn: asyncpg.Connection, *, area: str | None, department: str | None, status: str | None,
                     light: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
    where = ["($1::text IS NULL OR area = $1)", "($2::text IS NULL OR $2 = ANY(lead) OR $2 = ANY(responsible))",
             "($3::text IS NULL OR status = $3)", "($4::text IS NULL OR light = $4)"]
    clause = " AND ".join(where)
    total = await conn.fetchval(f"SELECT count(*) FROM tasks WHERE {clause}", area, department, status, light)
    rows = await conn.fetch(f"SELECT {TASK_COLUMNS} FROM tasks WHERE {clause} ORDER BY id LIMIT $5 OFFSET $6",
                            area, department, status, light, limit, offset)
    return [dict(r) for r in rows], total


async def get_task(conn: asyncpg.Connection, task_id: str) -> dict | None:
    row = await conn.fetchrow(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1", task_id)
    if row is None:
        return None
    history = await conn.fetch(
        "SELECT source, event_id, event_time, status, percent, note, evidence_url FROM task_reports"
        " WHERE task_id = $1 ORDER BY event_time, received_at", task_id)
    return {**dict(row), "history": [dict(h) for h in history]}
