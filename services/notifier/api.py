"""The escalations' read API and acknowledgement; errors are RFC 9457 problem documents."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from duban.api_deps import (PAGE_SIZE_DEFAULT, ChangingPrincipal, Clock, CurrentPrincipal, Hours, Limit, Offset,
                            PlanCatalog, Pool, authenticated, from_app_state)
from duban.catalog import Catalog
from duban.pg import BIGINT_MAX
from duban.problems import Problem
from duban.workcal import OfficeHours
from services.notifier import store
from services.notifier.domain.escalation import LEVEL_NAMES, civil, midnight
from services.notifier.settings import NotifierSettings

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


# Every route needs a bearer token; a department sees and acknowledges the escalations of its own tasks.
router = APIRouter(prefix="/v1", dependencies=[Depends(authenticated)])
Settings = Annotated[NotifierSettings, Depends(from_app_state("settings"))]


def install(app: FastAPI, catalog: Catalog, hours: OfficeHours, settings: NotifierSettings,
            clock: Callable[[], datetime]) -> FastAPI:
    """Put on app.state what the routes read besides the pool and the token verifier; returns the app."""
    app.state.catalog, app.state.hours, app.state.settings, app.state.clock = catalog, hours, settings, clock
    return app


async def one(conn: asyncpg.Connection, escalation_id: int, *, lock: bool = False) -> asyncpg.Record:
    row = await store.escalation(conn, escalation_id, lock=lock)
    if row is None:
        raise Problem(404, "escalation-not-found", f"no escalation {escalation_id}")
    return row


async def with_deliveries(conn: asyncpg.Connection, row: asyncpg.Record) -> dict:
    return escalation_view(row, await store.deliveries_of(conn, row["id"]))


@router.get("/escalations")
async def list_escalations(
    pool: Pool,
    principal: CurrentPrincipal,
    catalog: PlanCatalog,
    level: Annotated[int | None, Query(ge=1, le=3)] = None,
    department: Annotated[str | None, Query(pattern=r"^[a-z0-9-]+$",
                                            description="a unit of the task, or addressed at the current level")] = None,
    open: Annotated[bool | None, Query(description="true: unresolved only; false: resolved only")] = None,
    task_id: Annotated[str | None, Query(pattern=r"^T[0-9]{2}$", description="the escalations of this task")] = None,
    limit: Limit = PAGE_SIZE_DEFAULT,
    offset: Offset = 0,
) -> dict:
    if department is not None:
        principal.require_department(department, "escalations")
    task_ids = principal.visible_tasks(catalog)
    if task_id is not None:
        if task_id not in {t.id for t in catalog.tasks}:
            raise Problem(404, "task-not-found", f"no task {task_id!r}; the plan's tasks are T01–T28")
        principal.require_task(catalog, task_id, "escalation")
        task_ids = [task_id]
    async with pool.acquire() as conn:
        rows, total, deliveries = await store.list_escalations(
            conn, level=level, department=department, open=open, task_ids=task_ids, limit=limit, offset=offset)
    return {"items": [{**escalation_view(r), "deliveries": deliveries.get(r["id"], {})} for r in rows],
            "total": total, "limit": limit, "offset": offset}


@router.get("/escalations/{escalation_id}")
async def get_escalation(pool: Pool, principal: CurrentPrincipal, catalog: PlanCatalog,
                         escalation_id: EscalationId) -> dict:
    async with pool.acquire() as conn:
        row = await one(conn, escalation_id)
        principal.require_task(catalog, row["task_id"], "escalation")
        return await with_deliveries(conn, row)


@router.post("/escalations/{escalation_id}/acknowledge")
async def acknowledge(pool: Pool, principal: ChangingPrincipal, catalog: PlanCatalog, hours: Hours, settings: Settings,
                      clock: Clock, escalation_id: EscalationId, body: Acknowledgement) -> dict:
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
        await store.acknowledge(conn, escalation_id, at=now, by=principal.subject, note=body.note, until=body.until)
        await store.record(conn, escalation_id, "acknowledged", now, store.ladder_of(row), principal=principal.subject,
                           until=body.until.isoformat(), note=body.note)
        return await with_deliveries(conn, await one(conn, escalation_id))


@router.get("/escalations/{escalation_id}/history", response_model=HistoryPage)
async def escalation_history(pool: Pool, principal: CurrentPrincipal, catalog: PlanCatalog,
                             escalation_id: EscalationId, limit: Limit = PAGE_SIZE_DEFAULT, offset: Offset = 0) -> dict:
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
    catalog: PlanCatalog,
    status: Literal["pending", "sent", "dead", "cancelled"] | None = None,
    channel: Literal["wecom", "dingtalk", "email", "webhook"] | None = None,
    limit: Limit = PAGE_SIZE_DEFAULT,
    offset: Offset = 0,
) -> dict:
    async with pool.acquire() as conn:
        items = await store.list_deliveries(conn, status=status, channel=channel,
                                            task_ids=principal.visible_tasks(catalog), limit=limit, offset=offset)
    return {"items": items, "limit": limit, "offset": offset}
