"""The board's own SQL: the archive of the bulletins it issued (schema `board`). Everything else it shows
belongs to the other services and is read through their APIs."""

from __future__ import annotations

from datetime import datetime

import asyncpg

SUMMARY_COLUMNS = "id, week, as_of, issued_at, issued_by, title"


async def archive(conn: asyncpg.Connection, *, week: str, as_of: datetime, issued_at: datetime, issued_by: str,
                  title: str, html: str, docx: bytes) -> int:
    return await conn.fetchval(
        "INSERT INTO bulletins (week, as_of, issued_at, issued_by, title, html, docx)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id", week, as_of, issued_at, issued_by, title, html, docx)


async def list_bulletins(conn: asyncpg.Connection, *, limit: int, offset: int) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(f"SELECT {SUMMARY_COLUMNS} FROM bulletins ORDER BY week DESC, id DESC LIMIT $1 OFFSET $2",
                            limit, offset)
    return rows, await conn.fetchval("SELECT count(*) FROM bulletins")


async def get_bulletin(conn: asyncpg.Connection, bulletin_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {SUMMARY_COLUMNS}, html, docx FROM bulletins WHERE id = $1", bulletin_id)
