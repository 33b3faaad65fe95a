"""The board's own SQL: the archive of the bulletins it issued (schema `board`). Everything else it shows
belongs to the other services and is read through their APIs."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

# A pool where each statement is a transaction of its own (the bulletin job holds none across HTTP calls).
Executor = asyncpg.Connection | asyncpg.Pool
SUMMARY_COLUMNS = "id, week, as_of, issued_at, issued_by, title, automatic, handed_over_at, handover_error"


async def archive(conn: Executor, *, week: str, as_of: datetime, issued_at: datetime, issued_by: str, title: str,
                  summary: list[str], html: str, docx: bytes, automatic: bool = False) -> int | None:
    """The new bulletin's id; None for an automatic one when the week already has its automatic bulletin (the
    unique index `bulletins_one_automatic_per_week` decides, also between replicas inserting at once)."""
    return await conn.fetchval(
        "INSERT INTO bulletins (week, as_of, issued_at, issued_by, title, summary, html, docx, automatic)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (week) WHERE automatic DO NOTHING RETURNING id",
        week, as_of, issued_at, issued_by, title, summary, html, docx, automatic)


async def automatic_issued(conn: Executor, week: str) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM bulletins WHERE week = $1 AND automatic)", week)


async def claim_handover(conn: Executor, lease: timedelta, *, passed: list[int]) -> asyncpg.Record | None:
    """The oldest bulletin the notifier has not accepted and no other board is handing over (its claim ran out or
    there is none), except those in `passed`; claimed for `lease` by the database's clock. One statement, committed
    at once: the claim, not a transaction, keeps other boards off it during the HTTP call."""
    return await conn.fetchrow(
        "UPDATE bulletins SET handoff_claimed_until = now() + $1 WHERE id = ("
        "  SELECT id FROM bulletins WHERE handed_over_at IS NULL AND id <> ALL($2::bigint[])"
        "   AND (handoff_claimed_until IS NULL OR handoff_claimed_until < now())"
        "  ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, week, title, summary, html, docx, handoff_claimed_until AS claim", lease, passed)


async def handed_over(conn: Executor, bulletin_id: int, at: datetime) -> None:
    """The first acceptance counts; a later one (a claim that ran out and was taken again) changes nothing."""
    await conn.execute("UPDATE bulletins SET handed_over_at = $2, handover_error = NULL, handoff_claimed_until = NULL"
                       " WHERE id = $1 AND handed_over_at IS NULL", bulletin_id, at)


async def handover_failed(conn: Executor, bulletin_id: int, claim: datetime, error: str) -> None:
    """The refusal, and the claim given up so that the next round of any board tries again; only while the claim
    is still this board's (one that ran out may be another's by now)."""
    await conn.execute("UPDATE bulletins SET handover_error = $3, handoff_claimed_until = NULL"
                       " WHERE id = $1 AND handoff_claimed_until = $2", bulletin_id, claim, error)


async def waiting_handovers(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM bulletins WHERE handed_over_at IS NULL")


async def list_bulletins(conn: asyncpg.Connection, *, limit: int, offset: int) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(f"SELECT {SUMMARY_COLUMNS} FROM bulletins ORDER BY week DESC, id DESC LIMIT $1 OFFSET $2",
                            limit, offset)
    return rows, await conn.fetchval("SELECT count(*) FROM bulletins")


async def get_bulletin(conn: asyncpg.Connection, bulletin_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {SUMMARY_COLUMNS}, html, docx FROM bulletins WHERE id = $1", bulletin_id)
