"""A metrics schema of each test's own on the session PostgreSQL, and events as the tracker sends them."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from duban.catalog import load_catalog
from duban.consumer import Delivery, InboundEvent
from duban.workcal import OfficeHours, OfficeSchedule, WorkingCalendar
from services.metrics.handlers import MetricsHandlers
from tests.conftest import ROOT, at, migrated_schema, schema_pool

MIGRATIONS = ROOT / "services" / "metrics" / "migrations"
SH = ZoneInfo("Asia/Shanghai")
CATALOG = load_catalog()
HOURS = OfficeHours(WorkingCalendar(), OfficeSchedule.default())


@pytest.fixture
async def schema(database_url: str) -> str:
    async with migrated_schema(database_url, "metrics") as name:
        yield name


@pytest.fixture
async def pool(database_url: str, schema: str) -> asyncpg.Pool:
    async with schema_pool(database_url, schema, max_size=4) as pool:
        yield pool


class Feed:
    """Applies events the way duban.consumer does, through the service's handler: checked, then
    applied in a transaction, each on its own (`send`) or together (`send_batch`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.handlers = MetricsHandlers(CATALOG, HOURS)

    async def send(self, ce: dict) -> None:
        await self.send_batch([ce])

    async def send_batch(self, ces: list[dict]) -> None:
        events = [InboundEvent(ce, Delivery("duban.tracker-changes", 0, 0, None, None, ())) for ce in ces]
        for event in events:
            event.prepared = self.handlers.check(event)
        async with self.pool.acquire() as conn, conn.transaction():
            await self.handlers.apply_batch(conn, events)

    async def opened(self, case_id: str, case_type: str, department: str, opened: str) -> None:
        await self.send(tracker_event("duban.tracker.case.opened.v1", case_id, {
            "department": department, "case_type": case_type, "opened_at": at(opened).isoformat()}))

    async def closed(self, case_id: str, case_type: str, department: str, opened: str, closed: str, *,
                     steps: int = 3, instantly: bool = False, trips: int = 1, pauses=()) -> None:
        await self.send(tracker_event("duban.tracker.case.closed.v1", case_id, {
            "department": department, "case_type": case_type, "outcome": "completed",
            "opened_at": at(opened).isoformat(), "closed_at": at(closed).isoformat(),
            "handled_instantly": instantly, "trips": trips, "steps": steps,
            "paused_intervals": [{"from": at(a).isoformat(), "to": at(b).isoformat(), "reason": r}
                                 for a, b, r in pauses]}))


def tracker_event(type_: str, subject: str, data: dict) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/services/tracker", "type": type_,
            "subject": subject, "time": datetime.now(SH).isoformat(), "datacontenttype": "application/json",
            "data": data}


@pytest.fixture
async def feed(pool: asyncpg.Pool) -> Feed:
    return Feed(pool)
