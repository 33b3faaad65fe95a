"""Tracker: applies department events to task/milestone/case state and announces changes."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from fastapi import FastAPI

from duban.catalog import load_catalog
from duban.streamservice import StreamService
from services.tracker import api, store
from services.tracker.handlers import TrackerHandlers
from services.tracker.settings import TrackerSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: TrackerSettings | None = None) -> FastAPI:
    settings = settings or TrackerSettings()
    catalog = load_catalog()

    async def seed_tasks(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await store.sync_catalog(conn, catalog)

    return StreamService(
        name="tracker", settings=settings, schema=settings.schema_name, group=settings.consumer_group,
        source_topic=settings.topic_dept_events, make_handler=lambda pool: TrackerHandlers(catalog),
        routers=[api.router], on_start=seed_tasks, relay_topic=settings.topic_tracker_changes,
        batch_size=settings.batch_size,
    ).create_app()
