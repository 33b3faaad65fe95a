"""The intake schema: department API keys (stored as hashes) and the events the broker acknowledged."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import asyncpg

KEY_COLUMNS = "key_id, department, label, created_at, revoked_at, replaced_by"


# --- API keys ----------------------------------------------------------------------------------------


async def insert_key(conn: asyncpg.Connection, key_id: str, department: str, token_sha256: bytes,
                     label: str) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO api_keys (key_id, department, token_sha256, label) VALUES ($1, $2, $3, $4) RETURNING {KEY_COLUMNS}",
        key_id, department, token_sha256, label)


async def department_of_token(conn: asyncpg.Connection | asyncpg.Pool, token_sha256: bytes) -> str | None:
    """The department of a key that is neither revoked nor expired."""
    return await conn.fetchval(
        "SELECT department FROM api_keys WHERE token_sha256 = $1 AND (revoked_at IS NULL OR revoked_at > now())",
        token_sha256)


async def keys_of(conn: asyncpg.Connection, department: str | None, include_revoked: bool) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {KEY_COLUMNS} FROM api_keys WHERE ($1::text IS NULL OR department = $1)"
        " AND ($2 OR revoked_at IS NULL OR revoked_at > now()) ORDER BY department, created_at",
        department, include_revoked)


async def lock_key(conn: asyncpg.Connection, key_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1 FOR UPDATE", key_id)


async def revoke_key(conn: asyncpg.Connection, key_id: str, after: timedelta = timedelta(0),
                     replaced_by: str | None = None) -> asyncpg.Record | None:
    """End the key `after` from now (never later than an end it already has); None for an unknown key."""
    return await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = LEAST(coalesce(revoked_at, 'infinity'), now() + $2),"
        f" replaced_by = coalesce($3, replaced_by) WHERE key_id = $1 RETURNING {KEY_COLUMNS}",
        key_id, after, replaced_by)


async def revoke_labelled(conn: asyncpg.Connection, label: str) -> None:
    await conn.execute("UPDATE api_keys SET revoked_at = now()"
                       " WHERE label = $1 AND (revoked_at IS NULL OR revoked_at > now())", label)


# --- accepted events ---------------------------------------------------------------------------------


async def known(pool: asyncpg.Pool, source: str, ids: list[str]) -> dict[str, bytes]:
    """id → payload hash of the events among `ids` already accepted from `source` (one query)."""
    rows = await pool.fetch("SELECT id, payload_hash FROM accepted_events WHERE source = $1 AND id = ANY($2::text[])",
                            source, ids)
    return {row["id"]: row["payload_hash"] for row in rows}


async def record(pool: asyncpg.Pool, source: str, events: Iterable[tuple[Mapping[str, Any], bytes]]) -> None:
    """Record acknowledged events (one statement). A concurrent request that published the same
    event first already wrote its row: the second copy on the topic is deduplicated downstream."""
    ids, types, subjects, hashes = [], [], [], []
    for event, digest in events:
        ids.append(event["id"])
        types.append(event["type"])
        subjects.append(event["subject"])
        hashes.append(digest)
    if ids:
        await pool.execute(
            "INSERT INTO accepted_events (source, id, type, subject, payload_hash)"
            " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[]) ON CONFLICT DO NOTHING",
            source, ids, types, subjects, hashes)
