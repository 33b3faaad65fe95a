"""Notifier: escalation of overdue work (DESIGN §5) and its notices on WeCom, DingTalk, e-mail and webhooks."""

from __future__ import annotations

from fastapi import FastAPI

from duban.catalog import load_catalog
from duban.streamservice import StreamService
from duban.workcal import OfficeHours
from services.notifier.api import make_router
from services.notifier.handlers import NotifierHandler
from services.notifier.routes import Routes
from services.notifier.scheduler import scheduling_job
from services.notifier.settings import NotifierSettings


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()
    catalog = load_catalog()
    hours = OfficeHours.from_env()
    # A routes file that does not load stops the start: better than notices silently going nowhere.
    routes = Routes.load(settings.notifier_routes, catalog)
    handler = NotifierHandler(catalog)
    return StreamService(
        name="notifier", settings=settings, schema=settings.schema_name, group=settings.consumer_group,
        source_topic=settings.topic_tracker_changes, make_handler=lambda pool: handler,
        routers=[make_router(catalog, hours, settings, settings.clock)],
        background=[scheduling_job(catalog, hours, routes, settings, settings.clock)],
    ).create_app()
