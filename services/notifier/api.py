"""The escalations' read API and acknowledgement; errors are RFC 9457 problem documents."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from duban.auth import ChangingPrincipal, CurrentPrincipal, authenticated
from duban.catalog import Catalog
from duban.pg import BIGINT_MAX
from duban.problems import Problem
from duban.workcal import OfficeHours
from services.notifier import store
from services.notifier.escalation import LEVEL_NAMES, civil, midnight
from services.notifier.settings import NotifierSettings

DELIVERY_COLUMNS = ("id, level, window_start, channel, recipient, departments, status, not_before, attempts,"
                    " last_error, created_at, finished_at")


def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
EscalationId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


class Acknowledgement(BaseModel):
    """Who acknowledges is the caller's token (its subject is recorded as `acknowledged_by`), never the body."""
    model_config = ConfigDict(extra="forbid")
    until: AwareDatetime = Field(description="escalation pauses until this instant")
    note: str | None = Field(None, max_length=2000)


class HistoryEntry(BaseModel):
    id: int
    at: datetime = Field(description="when it happened (for a tracker event, its as_of)")
    kind: Literal["opened", "level-changed", "light-changed", "resolved", "acknowledged", "extension-decided",
                  "awaiting-verification", "verified", "returned", "resumed", "delivery"]
    principal: str | None = Field(description="who acted: the token subject, or the tracker event's decided_by")
    level: int = Field(description="the escalation's level then")
    light: Literal["yellow", "red"]
    detail: dict = Field(description="what the entry says: e.g. a delivery's channel, recipient, attempt, outcome"
                                     " (sent, retry, dead, cancelled) and error; a level change's previous level")
    recorded_at: datetime


class HistoryPage(BaseModel):
    items: list[HistoryEntry]
    total: int
    limit: int
    offset: int


def escalation_view(row: asyncpg.Record, deliveries: list[asyncpg.Record] | None = None) -> dict:
    view = {k: row[k] for k in row.keys()}
    view["level_name"] = LEVEL_NAMES[row["level"]]
    view["open"] = row["resolved_at"] is None
    if deliveries is not None:
        view["deliveries"] = [dict(d) for d in deliveries]
    return view


def make_router(catalog: Catalog, hours: OfficeHours, settings: NotifierSettings,
                clock: Callable[[], datetime]) -> APIRouter:
    # Every route needs a bearer token; a department sees and acknowledges the escalations of its own tasks.
    router = APIRouter(prefix="/v1", dependencies=[Depends(authenticated)])

    async def one(conn: asyncpg.Connection, escalation_id: int, *, lock: bool = False) -> asyncpg.Record:
        row = await conn.fetchrow(f"SELECT {store.ESCALATION_COLUMNS} FROM escalations WHERE id = $1"
                                  + (" FOR UPDATE" if lock else ""), escalation_id)
        if row is None:
            raise Problem(404, "escalation-not-found", f"no escalation {escalation_id}")
        return row

    async def with_deliveries(conn: asyncpg.Connection, row: asyncpg.Record) -> dict:
        deliveries = await conn.fetch(f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE escalation_id = $1 ORDER BY id",
                                      row["id"])
        return escalation_view(row, deliveries)

    @router.get("/escalations")
    async def list_escalations(
        pool: Pool,
        principal: CurrentPrincipal,
        level: Annotated[int | None, Query(ge=1, le=3)] = None,
        department: Annotated[str | None, Query(pattern=r"^[a-z0-9-]+$",
                                                description="a unit of the task, or addressed at the current level")] = None,
        open: Annotated[bool | None, Query(description="true: unresolved only; false: resolved only")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
    ) -> dict:
        if department is not None:
            principal.require_department(department, "escalations")
        where = ("($1::int IS NULL OR level = $1) AND ($2::text IS NULL OR $2 = ANY(units || addressees))"
                 " AND ($3::bool IS NULL OR (resolved_at IS NULL) = $3) AND ($4::text[] IS NULL OR task_id = ANY($4))")
        filters = (level, department, open, principal.visible_tasks(catalog))
        async with pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT {store.ESCALATION_COLUMNS} FROM escalations WHERE {where}"
                                    " ORDER BY id DESC LIMIT $5 OFFSET $6", *filters, limit, offset)
            total = await conn.fetchval(f"SELECT count(*) FROM escalations WHERE {where}", *filters)
            counts = await conn.fetch("SELECT escalation_id, status, count(*) AS n FROM deliveries"
                                      " WHERE escalation_id = ANY($1) GROUP BY escalation_id, status", [r["id"] for r in rows])
        by_escalation: dict[int, dict[str, int]] = {}
        for c in counts:
            by_escalation.setdefault(c["escalation_id"], {})[c["status"]] = c["n"]
        return {"items": [{**escalation_view(r), "deliveries": by_escalation.get(r["id"], {})} for r in rows],
                "total": total, "limit": limit, "offset": offset}

    @router.get("/escalations/{escalation_id}")
    async def get_escalation(pool: Pool, principal: CurrentPrincipal, escalation_id: EscalationId) -> dict:
        async with pool.acquire() as conn:
            row = await one(conn, escalation_id)
            principal.require_task(catalog, row["task_id"], "escalation")
            return await with_deliveries(conn, row)

    @router.post("/escalations/{escalation_id}/acknowledge")
    async def acknowledge(pool: Pool, principal: ChangingPrincipal, escalation_id: EscalationId, body: Acknowledgement) -> dict:
        now = clock()
        # The end of the last working day allowed.
        latest = midnight(hours.calendar.add_working_days(civil(now), settings.acknowledge_max_days) + timedelta(days=1))
        if body.until <= now:
            raise Problem(422, "acknowledgement-in-the-past", "until must lie in the future", now=now.isoformat())
        if body.until > latest:
            raise Problem(422, "acknowledgement-too-long",
                          f"an acknowledgement pauses escalation for at most {settings.acknowledge_max_days} working days",
                          latest=latest.isoformat())
        async with pool.acquire() as conn, conn.transaction():
            row = await one(conn, escalation_id, lock=True)
            principal.require_task(catalog, row["task_id"], "escalation")
            if row["resolved_at"] is not None:
                raise Problem(409, "escalation-resolved", f"escalation {escalation_id} was resolved at "
                              f"{row['resolved_at'].isoformat()}; there is nothing to acknowledge")
            await conn.execute(
                "UPDATE escalations SET acknowledged_at = $2, acknowledged_by = $3, acknowledged_note = $4,"
                " acknowledged_until = $5, next_check_at = $5 WHERE id = $1",
                escalation_id, now, principal.subject, body.note, body.until)
            await store.record(conn, escalation_id, "acknowledged", now, store.ladder_of(row), principal=principal.subject,
                               until=body.until.isoformat(), note=body.note)
            await store.cancel_pending(conn, escalation_id, "acknowledged")
            return await with_deliveries(conn, await one(conn, escalation_id))

    @router.get("/escalations/{escalation_id}/history", response_model=HistoryPage)
    async def escalation_history(pool: Pool, principal: CurrentPrincipal, escalation_id: EscalationId,
                                 limit: Annotated[int, Query(ge=1, le=500)] = 100,
                                 offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0) -> dict:
        """The escalation's audit trail, oldest first: opened, light and level changes, acknowledgements,
        extensions, verification, every delivery attempt and its result. Entries are never changed."""
        async with pool.acquire() as conn:
            row = await one(conn, escalation_id)
            principal.require_task(catalog, row["task_id"], "escalation")
            items, total = await store.history(conn, escalation_id, limit=limit, offset=offset)
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @router.get("/deliveries")
    async def list_deliveries(
        pool: Pool,
        principal: CurrentPrincipal,
        status: Literal["pending", "sent", "dead", "cancelled"] | None = None,
        channel: Literal["wecom", "dingtalk", "email", "webhook"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
    ) -> dict:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT kind, escalation_id, item, notice, {DELIVERY_COLUMNS} FROM deliveries WHERE ($1::text IS NULL OR"
                " status = $1) AND ($2::text IS NULL OR channel = $2) AND ($5::text[] IS NULL OR escalation_id IN"
                " (SELECT id FROM escalations WHERE task_id = ANY($5))) ORDER BY id DESC LIMIT $3 OFFSET $4",
                status, channel, limit, offset, principal.visible_tasks(catalog))
        return {"items": [{**dict(r), "notice": json.loads(r["notice"])} for r in rows], "limit": limit, "offset": offset}

    return router
