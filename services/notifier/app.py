"""Notifier: lights and escalation of overdue work."""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI

from duban.catalog import load_catalog
from duban.consumer import InboundEvent
from duban.streamservice import StreamService
from services.notifier.lights import TASK_UPDATED, apply_task_updated
from services.notifier.settings import NotifierSettings


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()
    catalog = load_catalog()

    async def handle(conn: asyncpg.Connection, event: InboundEvent) -> None:
        if event.type == TASK_UPDATED:
            await apply_task_updated(conn, event, catalog)

    return StreamService(
        name="notifier", settings=settings, schema=settings.schema_name, group=settings.consumer_group,
        source_topic=settings.topic_tracker_changes, make_handler=lambda pool: handle,
    ).create_app()
