"""A tracker schema of each test's own on the session PostgreSQL, and department events to feed it."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from duban.broker import make_producer
from duban.catalog import load_catalog
from duban.consumer import Delivery, LedgerConsumer, validate_by_model
from duban.events.kafka import to_kafka
from duban.settings import ServiceSettings
from duban.workcal import WorkingCalendar
from services.tracker import store
from services.tracker.evaluation import TaskEvaluator
from services.tracker.handlers import TrackerHandlers
from tests.conftest import migrated_schema

SH = ZoneInfo("Asia/Shanghai")
CATALOG = load_catalog()
CALENDAR = WorkingCalendar()
# Lights are evaluated as of this instant unless a test says otherwise: mid-plan-year 2021.
NOW = datetime(2021, 9, 1, 2, 0, tzinfo=timezone.utc)


def at(text: str) -> datetime:
    """An Asia/Shanghai civil time as an instant."""
    return datetime.fromisoformat(text).replace(tzinfo=SH)


def department_event(type_: str, department: str, subject: str, time: datetime | str, data: dict,
                     event_id: str | None = None) -> dict:
    time = at(time) if isinstance(time, str) else time
    return {"specversion": "1.0", "id": event_id or str(uuid.uuid4()), "source": f"/departments/{department}",
            "type": type_, "subject": subject, "time": time.isoformat(), "datacontenttype": "application/json",
            "data": data}


def progress(task_id: str, department: str, time, status: str, percent: int, **extra) -> dict:
    return department_event("duban.task.progress-reported.v1", department, task_id, time,
                            {"status": status, "percent": percent, **extra})


def case_event(kind: str, case_id: str, time, data: dict, *, department: str = "tax-bureau",
               case_type: str = "export_tax_refund", event_id: str | None = None) -> dict:
    return department_event(f"duban.case.{kind}.v1", department, case_id, time, {"case_type": case_type, **data},
                            event_id)


def delivery(ce: dict, topic: str = "duban.dept-events", offset: int = 0) -> Delivery:
    key, value, headers = to_kafka(ce)
    return Delivery(topic, 0, offset, key, value, tuple(headers))


@pytest.fixture
async def schema(database_url: str) -> str:
    async with migrated_schema(database_url, "tracker") as name:
        yield name


@pytest.fixture
async def pool(database_url: str, schema: str) -> asyncpg.Pool:
    # Named apart from the tracker's own connections (duban-<schema>), which some tests terminate.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4, server_settings={
        "search_path": schema, "application_name": "tracker-tests", "timezone": "UTC"})
    async with pool.acquire() as conn:
        await store.sync_catalog(conn, CATALOG)
    yield pool
    await pool.close()


class Tracker:
    """The tracker's consumer path in-process: decode, ledger, batch handler, outbox, as the service runs it."""

    def __init__(self, pool: asyncpg.Pool, producer, now: datetime = NOW) -> None:
        self.pool, self.now = pool, now
        self.evaluator = TaskEvaluator(CATALOG, CALENDAR)
        self.consumer = LedgerConsumer(name="tracker", pool=pool, producer=producer,
                                       handler=TrackerHandlers(CATALOG, self.evaluator, lambda: self.now),
                                       validate=validate_by_model)

    async def send(self, *events: dict):
        return await self.consumer.apply([delivery(e, offset=i) for i, e in enumerate(events)])

    async def outbox(self, type_: str | None = None) -> list[dict]:
        rows = await self.pool.fetch("SELECT type, subject, data FROM outbox WHERE $1::text IS NULL OR type = $1"
                                     " ORDER BY seq", type_)
        return [{"type": r["type"], "subject": r["subject"], "data": json.loads(r["data"])} for r in rows]


@pytest.fixture
async def producer(kafka_bootstrap: str):
    producer = make_producer(ServiceSettings(kafka_bootstrap=kafka_bootstrap))
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def tracker(pool, producer) -> Tracker:
    return Tracker(pool, producer)
