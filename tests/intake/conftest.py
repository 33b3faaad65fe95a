"""Intake as department systems meet it: the real app under uvicorn on a free port, against the
session PostgreSQL (a schema of each test's own) and a broker (a topic of each test's own)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition

from duban.broker import ensure_topics
from services.intake import keys
from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from tests.conftest import free_port, migrated_schema

STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


class ServerThread:
    """uvicorn serving an app in a thread of its own, with its own event loop."""

    def __init__(self, app, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name=f"intake-{port}", daemon=True)

    def start(self, timeout_s: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("intake did not start; see the log above")
            if time.monotonic() > deadline:
                raise TimeoutError("intake did not start in time")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@dataclass
class Intake:
    url: str
    settings: IntakeSettings
    pool: asyncpg.Pool

    async def key(self, department: str, label: str = "test") -> str:
        async with self.pool.acquire() as conn:
            return (await keys.create_key(conn, department, label))[1]

    def client(self, department_key: str | None) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {department_key}"} if department_key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30.0)

    async def published(self, *, until_id: str | None = None, count: int | None = None,
                        timeout_s: float = 15.0) -> list[Any]:
        """The records on this test's topic: up to the one whose ce_id is `until_id`, or `count` of them."""
        return await read_topic(self.settings.kafka_bootstrap, self.settings.topic_dept_events,
                                until_id=until_id, count=count, timeout_s=timeout_s)


async def read_topic(bootstrap: str, topic: str, *, until_id: str | None = None, count: int | None = None,
                     timeout_s: float = 15.0) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer.client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            if count is not None and len(records) >= count:
                return records
            if until_id is not None and any(header(r, "ce_id") == until_id for r in records):
                return records
        if count is None and until_id is None:
            return records
        raise AssertionError(f"topic {topic} has {len(records)} records; waited for {until_id or count}")
    finally:
        await consumer.stop()


def header(record: Any, name: str) -> str | None:
    return next((value.decode() for key, value in record.headers if key == name), None)


def progress(task: str, department: str, percent: int = 60, **overrides: Any) -> dict[str, Any]:
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"/departments/{department}",
             "type": "duban.task.progress-reported.v1", "subject": task, "time": "2026-11-26T09:30:00+08:00",
             "datacontenttype": "application/json",
             "data": {"status": "in_progress", "percent": percent, "note": "企业开办一表填报已上线"}}
    event.update(overrides)
    return event


def case_opened(case_id: str, case_type: str, department: str) -> dict[str, Any]:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"/departments/{department}",
            "type": "duban.case.opened.v1", "subject": case_id, "time": datetime.now(timezone.utc).isoformat(),
            "data": {"case_type": case_type, "reference": "（2026）闽0102破7号"}}


@pytest.fixture
async def intake_schema(database_url: str) -> str:
    async with migrated_schema(database_url, "intake") as name:
        yield name


def intake_settings(database_url: str, schema: str, bootstrap: str, **overrides: Any) -> IntakeSettings:
    tag = uuid.uuid4().hex[:8]
    options = dict(database_url=database_url, schema_name=schema, kafka_bootstrap=bootstrap,
                   topic_dept_events=f"duban.dept-events.{tag}", topic_partitions=4, http_port=free_port(),
                   log_json=True, log_level="WARNING")
    options.update(overrides)
    return IntakeSettings(**options)


@pytest.fixture
async def intake(database_url: str, intake_schema: str, kafka_bootstrap: str) -> Intake:
    async with running_intake(intake_settings(database_url, intake_schema, kafka_bootstrap)) as running:
        yield running


class running_intake:
    """Creates the topic, starts intake on it and stops it afterwards."""

    def __init__(self, settings: IntakeSettings) -> None:
        self.settings = settings

    async def __aenter__(self) -> Intake:
        await ensure_topics(self.settings, [self.settings.topic_dept_events])
        self.pool = await asyncpg.create_pool(self.settings.database_url, min_size=1, max_size=2,
                                              server_settings={"search_path": self.settings.schema_name})
        self.server = ServerThread(create_app(self.settings), self.settings.http_port)
        await asyncio.to_thread(self.server.start)
        return Intake(f"http://127.0.0.1:{self.settings.http_port}", self.settings, self.pool)

    async def __aexit__(self, *exc_info) -> None:
        await asyncio.to_thread(self.server.stop)
        await self.pool.close()
