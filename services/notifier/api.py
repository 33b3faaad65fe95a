"""The escalations' read API and acknowledgement, and the hand-off of the board's 督查通报 for mailing; errors
are RFC 9457 problem documents."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Literal

import asyncpg
import structlog
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Response
from pydantic import AwareDatetime, Base64Bytes, BaseModel, ConfigDict, Field

from duban.api_deps import (PAGE_SIZE_DEFAULT, ChangingPrincipal, Clock, CurrentPrincipal, Hours, Limit, Offset,
                            PlanCatalog, Pool, authenticated, from_app_state)
from duban.auth import forbidden
from duban.catalog import Catalog
from duban.events.models import Markup, Note, Title
from duban.pg import BIGINT_MAX
from duban.problems import Problem
from duban.workcal import OfficeHours
from services.notifier import store
from services.notifier.domain.escalation import LEVEL_NAMES, civil, midnight
from services.notifier.domain.messages import BulletinNotice
from services.notifier.routes import Routes
from services.notifier.scheduler import sendable_from
from services.notifier.settings import NotifierSettings

log = structlog.get_logger(__name__)

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


BulletinRoutes = Annotated[Routes, Depends(from_app_state("routes"))]


def install(app: FastAPI, catalog: Catalog, hours: OfficeHours, settings: NotifierSettings,
            clock: Callable[[], datetime], routes: Routes | None = None) -> FastAPI:
    """Put on app.state what the routes read besides the pool and the token verifier (the recipients: the
    routes file of the settings unless given); returns the app."""
    app.state.catalog, app.state.hours, app.state.settings, app.state.clock = catalog, hours, settings, clock
    app.state.routes = routes if routes is not None else Routes.load(settings.notifier_routes, catalog)
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


# -- 督查通报 from the board -----------------------------------------------------------------------------

DOCUMENT_MAX_BYTES = 10 * 1024 * 1024
ZIP_MAGIC = b"PK\x03\x04"  # a .docx is a zip package


class BulletinHandover(BaseModel):
    """An issued bulletin as the board archived it. The bulletin id is the idempotency key."""
    model_config = ConfigDict(extra="forbid")
    bulletin_id: int = Field(ge=1, le=BIGINT_MAX, description="the board's id of the bulletin")
    week: str = Field(pattern=r"^[0-9]{4}-W[0-9]{2}$", description="ISO week, e.g. 2021-W38")
    title: Title = Field(description="the bulletin's title: the mail's subject and the attachment's name")
    summary: list[Note] = Field(max_length=20, description="一、总体情况: the mail's text")
    html: Markup = Field(description="the bulletin as an HTML fragment: the mail's HTML body")
    document: Base64Bytes = Field(description="the Word document (.docx), base64; attached to each mail")


class BulletinDelivery(BaseModel):
    channel: str
    recipient: str
    status: Literal["pending", "sent", "dead", "cancelled"]
    attempts: int
    last_error: str | None
    finished_at: datetime | None


class BulletinReceipt(BaseModel):
    bulletin_id: int
    week: str
    title: str
    received_at: datetime
    received_by: str = Field(description="the token subject that handed it over")
    deliveries: list[BulletinDelivery] = Field(description="one mail per e-mail address of the district office")


async def receipt(conn: asyncpg.Connection, row: asyncpg.Record) -> dict:
    return {**{k: row[k] for k in ("bulletin_id", "week", "title", "received_at", "received_by")},
            "deliveries": [dict(d) for d in await store.bulletin_deliveries(conn, row["bulletin_id"])]}


@router.post("/bulletins", status_code=201, response_model=BulletinReceipt,
             responses={200: {"model": BulletinReceipt, "description": "a repeat: the first hand-off's receipt"}})
async def hand_over_bulletin(pool: Pool, principal: CurrentPrincipal, hours: Hours, settings: Settings, clock: Clock,
                             routes: BulletinRoutes, body: BulletinHandover, response: Response) -> dict:
    """The board hands over a 督查通报 it issued; stored with one mail planned per e-mail address of the district
    office (DUBAN_TOP_DEPARTMENT in the routes file) in one transaction, sent with the notices' retries. A
    repeat of the same bulletin id answers the first receipt (200) and sends nothing again."""
    if principal.role != "district-office":
        raise forbidden("only the district office hands over a 督查通报")
    if len(body.document) > DOCUMENT_MAX_BYTES or not body.document.startswith(ZIP_MAGIC):
        raise Problem(422, "bad-document", f"document must be a Word document (.docx) of at most"
                      f" {DOCUMENT_MAX_BYTES // 1024 // 1024} MiB")
    now = clock()
    async with pool.acquire() as conn, conn.transaction():
        created = await store.receive_bulletin(conn, bulletin_id=body.bulletin_id, week=body.week, title=body.title,
                                               summary=body.summary, html=body.html, document=body.document, at=now,
                                               by=principal.subject)
        row = await store.bulletin(conn, body.bulletin_id)
        if not created:
            if (row["week"], row["title"], row["document"]) != (body.week, body.title, body.document):
                raise Problem(409, "bulletin-conflict", f"bulletin {body.bulletin_id} was handed over with another"
                              " week, title or document", received_at=row["received_at"].isoformat())
            response.status_code = 200
            return await receipt(conn, row)
        notice = BulletinNotice(body.bulletin_id, body.week, body.title, body.summary)
        targets = routes.email_targets(settings.top_department)
        for target in targets:
            await store.plan_delivery(conn, kind=notice.KIND, escalation_id=None, item=notice.subject, level=0,
                                      window=civil(now), channel=target.channel, recipient=target.recipient,
                                      departments=[settings.top_department], notice=notice.as_json(),
                                      not_before=sendable_from(hours, settings, now), now=now)
        if not targets:
            log.warning("the district office has no e-mail route; the bulletin is kept but mailed to nobody",
                        department=settings.top_department, bulletin=body.bulletin_id)
        log.info("bulletin received", bulletin=body.bulletin_id, week=body.week, mails=len(targets))
        return await receipt(conn, row)
