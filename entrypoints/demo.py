"""A demo feed of realistic department events, posted to intake the way department systems do."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import structlog

from duban.catalog import load_catalog
from duban.events.models import department_source, source_department
from services.intake.cli import SERVICE as INTAKE
from services.intake.keys import provision_keys

log = structlog.get_logger(__name__)

NOTES = ["已完成方案制定，正在推进落实", "已召开专题协调会", "系统已上线试运行", "已按期完成阶段目标", "正在协调相关单位"]


def progress_event(rng: random.Random, now: datetime) -> dict:
    catalog = load_catalog()
    task = rng.choice(catalog.tasks)
    percent = rng.randrange(10, 101, 10)
    return {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": department_source(task.lead[0]),
        "type": "duban.task.progress-reported.v1", "subject": task.id, "time": now.isoformat(),
        "datacontenttype": "application/json",
        "data": {"status": "done" if percent == 100 else "in_progress", "percent": percent, "note": rng.choice(NOTES)},
    }


def demo_departments() -> set[str]:
    """The departments the demo feed posts as (each task's first lead department)."""
    return {task.lead[0] for task in load_catalog().tasks}


async def demo_keys(database_url: str) -> dict[str, str]:
    """The demo departments post with keys of their own, as real department systems do: fresh ones on
    every start, the earlier demo keys revoked. Department code → token."""
    return await provision_keys(database_url, INTAKE.schema, demo_departments(), "demo")


async def run_demo_feed(intake_url: str, keys: dict[str, str], *, interval_s: float = 2.0,
                        seed: int | None = None) -> None:
    """Post progress events the way department systems do: each department its own batch, with
    its own API key (`keys`: department code → token)."""
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=intake_url, timeout=10.0) as client:
        while True:
            now = datetime.now(timezone.utc) - timedelta(seconds=1)
            batches: dict[str, list[dict]] = {}
            for event in (progress_event(rng, now) for _ in range(rng.randint(1, 4))):
                batches.setdefault(source_department(event["source"]), []).append(event)
            for department, batch in batches.items():
                try:
                    response = await client.post("/v1/events", json=batch, headers={
                        "content-type": "application/cloudevents-batch+json",
                        "authorization": f"Bearer {keys[department]}"})
                    log.info("demo events posted", department=department, count=len(batch),
                             status=response.status_code)
                except httpx.HTTPError as exc:
                    log.warning("demo post failed", error=str(exc))
            await asyncio.sleep(interval_s)
