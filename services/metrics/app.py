"""Metrics: turns tracker change events into the plan's figures on /metrics."""

from __future__ import annotations

import asyncio

import asyncpg
from fastapi import FastAPI
from prometheus_client import REGISTRY

from duban.catalog import load_catalog
from duban.consumer import InboundEvent
from duban.streamservice import StreamService
from services.metrics.settings import MetricsSettings
from services.metrics.tasks import TASK_UPDATED, TaskCountCollector, apply_task_updated


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    settings = settings or MetricsSettings()
    catalog = load_catalog()
    collector = TaskCountCollector()
    REGISTRY.register(collector)
    changed = asyncio.Event()

    async def handle(conn: asyncpg.Connection, event: InboundEvent) -> None:
        if event.type == TASK_UPDATED:
            await apply_task_updated(conn, event, catalog)

    async def keep_collector_fresh(pool: asyncpg.Pool) -> None:
        await collector.refresh(pool)
        while True:
            await changed.wait()
            changed.clear()
            await collector.refresh(pool)

    return StreamService(
        name="metrics", settings=settings, schema=settings.schema_name, group=settings.consumer_group,
        source_topic=settings.topic_tracker_changes, make_handler=lambda pool: handle,
        background=[keep_collector_fresh], after_batch=lambda result: changed.set(),
    ).create_app()
