"""Notifier: escalation of overdue work (DESIGN §5) and its notices on WeCom, DingTalk, e-mail and webhooks."""

from __future__ import annotations

import structlog
from fastapi import FastAPI
from prometheus_client import Gauge

from duban.catalog import load_catalog
from duban.streamservice import StreamService
from duban.workcal import OfficeHours
from services.notifier import api
from services.notifier.handlers import NotifierHandler
from services.notifier.routes import Routes
from services.notifier.scheduler import scheduling_job, sendable_from
from services.notifier.settings import NotifierSettings
from services.notifier.warnings import CaseWarningPlanner

log = structlog.get_logger(__name__)

UNROUTED_DEPARTMENTS = Gauge("duban_notifier_unrouted_departments",
                             "Departments of the plan that no route reaches: their notices go nowhere")


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()
    catalog = load_catalog()
    hours = OfficeHours.from_env()
    # A routes file that does not load stops the start: better than notices silently going nowhere.
    routes = Routes.load(settings.notifier_routes, catalog)
    report_unrouted(routes, catalog, settings)
    planner = CaseWarningPlanner(catalog, routes, lambda moment: sendable_from(hours, settings, moment), settings.clock)
    handler = NotifierHandler(catalog, planner)
    app = StreamService(
        name="notifier", settings=settings, schema=settings.schema_name, group=settings.consumer_group,
        source_topic=settings.topic_tracker_changes, make_handler=lambda pool: handler,
        routers=[api.router],
        background=[scheduling_job(catalog, hours, routes, settings, settings.clock)],
    ).create_app()
    return api.install(app, catalog, hours, settings, settings.clock, routes)


def report_unrouted(routes: Routes, catalog, settings: NotifierSettings) -> list[str]:
    """A department nobody can be told about is worth a warning at start (and a gauge), not a silent gap."""
    unrouted = routes.unrouted(catalog)
    UNROUTED_DEPARTMENTS.set(len(unrouted))
    if unrouted:
        log.warning("departments without a route; their notices go nowhere (duban routes check)",
                    routes_file=str(settings.notifier_routes), departments=unrouted)
    return unrouted
