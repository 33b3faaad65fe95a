"""The board's own SQL: the archive of the bulletins it issued (schema `board`). Everything else it shows
belongs to the other services and is read through their APIs."""

from __future__ import annotations

from datetime import datetime

import asyncpg

SUMMARY_COLUMNS = "id, week, as_of, issued_at, issued_by, title, automatic, handed_over_at, handover_error"


async def archive(conn: asyncpg.Connection, *, week: str, as_of: datetime, issued_at: datetime, issued_by: str,
                  title: str, summary: list[str], html: str, docx: bytes, automatic: bool = False) -> int:
    return await conn.fetchval(
        "INSERT INTO bulletins (week, as_of, issued_at, issued_by, title, summary, html, docx, automatic)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        week, as_of, issued_at, issued_by, title, summary, html, docx, automatic)


async def lock_automatic_week(conn: asyncpg.Connection, week: str) -> bool:
    """Within a transaction: True when this replica may issue the week's automatic bulletin now, i.e. no other
    holds the week (the advisory lock, released at commit) and none was issued (the unique index backs this)."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", f"duban-board-bulletin:{week}"):
        return False
    return not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM bulletins WHERE week = $1 AND automatic)", week)


async def claim_handovers(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Bulletins the notifier has not accepted yet, oldest first; SKIP LOCKED: a replica passes over the ones
    another is handing over."""
    return await conn.fetch(
        "SELECT id, week, title, summary, html, docx FROM bulletins WHERE handed_over_at IS NULL"
        " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED", limit)


async def handed_over(conn: asyncpg.Connection, bulletin_id: int, at: datetime) -> None:
    await conn.execute("UPDATE bulletins SET handed_over_at = $2, handover_error = NULL WHERE id = $1",
                       bulletin_id, at)


async def handover_failed(conn: asyncpg.Connection, bulletin_id: int, error: str) -> None:
    await conn.execute("UPDATE bulletins SET handover_error = $2 WHERE id = $1", bulletin_id, error)


async def waiting_handovers(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM bulletins WHERE handed_over_at IS NULL")


async def list_bulletins(conn: asyncpg.Connection, *, limit: int, offset: int) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(f"SELECT {SUMMARY_COLUMNS} FROM bulletins ORDER BY week DESC, id DESC LIMIT $1 OFFSET $2",
                            limit, offset)
    return rows, await conn.fetchval("SELECT count(*) FROM bulletins")


async def get_bulletin(conn: asyncpg.Connection, bulletin_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {SUMMARY_COLUMNS}, html, docx FROM bulletins WHERE id = $1", bulletin_id)
