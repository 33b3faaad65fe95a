"""Tracker: applies department events to task/milestone/case state and announces changes."""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI

from duban.catalog import load_catalog
from duban.streamservice import StreamService
from duban.workcal import OfficeHours, WorkingCalendar
from services.tracker import api, extensions, store
from services.tracker.evaluation import TaskEvaluator, count_awaiting
from services.tracker.handlers import TrackerHandlers
from services.tracker.scheduled import CaseWarner, case_warning_job, reevaluation_job
from services.tracker.settings import TrackerSettings


def create_app(settings: TrackerSettings | None = None) -> FastAPI:
    settings = settings or TrackerSettings()
    catalog = load_catalog()
    evaluator = TaskEvaluator(catalog, WorkingCalendar(), settings.retroactive_grace_working_days,
                              settings.verification_grace_working_days)

    async def seed_tasks(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await store.sync_catalog(conn, catalog)
            await extensions.count_extended(conn)
            await count_awaiting(conn)

    app = StreamService(
        name="tracker", settings=settings, schema=settings.schema_name, group=settings.consumer_group,
        source_topic=settings.topic_dept_events,
        make_handler=lambda pool: TrackerHandlers(catalog, evaluator, settings.clock),
        routers=[api.router], on_start=seed_tasks, relay_topic=settings.topic_tracker_changes,
        batch_size=settings.batch_size, retry_budget_s=settings.retry_budget_s,
        background=[reevaluation_job(evaluator, settings.clock, settings.reevaluate_interval_s),
                    case_warning_job(CaseWarner(catalog, OfficeHours.from_env()), settings.clock,
                                     settings.case_warning_interval_s)],
    ).create_app()
    return api.install(app, catalog, evaluator, settings.clock)
