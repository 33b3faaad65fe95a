"""Metrics: turns tracker change events into the plan's indicators, on /metrics and /v1/indicators."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from fastapi import FastAPI
from prometheus_client import REGISTRY

from duban.catalog import load_catalog
from duban.events.models import IndicatorValueReported
from duban.pg import transient
from duban.streamservice import SideStream, StreamService
from duban.workcal import OfficeHours
from services.metrics import api, store
from services.metrics.domain.indicators import check_supported
from services.metrics.exposition import IndicatorCollector, take_snapshot
from services.metrics.handlers import MetricsHandlers
from services.metrics.lag import ConsumerLag
from services.metrics.settings import MetricsSettings
from services.metrics.tasks import TaskCountCollector

log = structlog.get_logger(__name__)

# Batches can come tens a second; one snapshot a second for all of them keeps its queries and its
# figures' arithmetic off the consumer's event loop, and /metrics is scraped far less often.
SNAPSHOT_MIN_INTERVAL_S = 1.0


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    settings = settings or MetricsSettings()
    catalog = load_catalog()
    check_supported(catalog)
    hours = OfficeHours.from_env()
    handlers = MetricsHandlers(catalog, hours)
    tasks, indicators, lag = TaskCountCollector(), IndicatorCollector(), ConsumerLag(settings)
    for collector in (tasks, indicators, lag):
        REGISTRY.register(collector)
    changed = asyncio.Event()

    async def keep_snapshots_fresh(pool: asyncpg.Pool) -> None:
        while True:
            changed.clear()
            try:
                await tasks.refresh(pool)
                async with pool.acquire() as conn:
                    indicators.snapshot = await take_snapshot(
                        conn, catalog, hours, now=settings.clock(), exposed_years=settings.exposed_years,
                        approx_tolerance=settings.approx_tolerance)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # /metrics keeps the last snapshot (its timestamp shows its age, MetricsSnapshotStale alerts);
                # /readyz reports the database. A refusal no retry gets past is a defect: said as an error.
                say = log.warning if transient(exc) else log.error
                say("snapshot refresh failed", error=f"{type(exc).__name__}: {exc}", transient=transient(exc))
            await asyncio.sleep(SNAPSHOT_MIN_INTERVAL_S)  # batches applied meanwhile set `changed`
            try:
                await asyncio.wait_for(changed.wait(),
                                       timeout=max(0.0, settings.snapshot_max_age_s - SNAPSHOT_MIN_INTERVAL_S))
            except TimeoutError:
                pass  # open cases age with the clock: refresh anyway

    def after_batch(_result) -> None:
        changed.set()

    async def reclock(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            if done := await store.recompute_calendar(conn, catalog, hours):
                log.info("clocks recomputed on the current calendar", cases=done, calendar=hours.calendar.version)

    app = StreamService(
        name="metrics", settings=settings, schema=settings.schema_name, group=settings.consumer_group,
        source_topic=settings.topic_tracker_changes, make_handler=lambda pool: handlers,
        routers=[api.router], on_start=reclock,
        background=[keep_snapshots_fresh, lag.run], after_batch=after_batch,
        # Indicator reports are department events the tracker does not re-announce: read from the
        # department topic in a group of their own (docs/decisions/004-metrics-indicator-reports.md).
        side_streams=[SideStream("metrics-reports", settings.reports_consumer_group, settings.topic_dept_events,
                                 (IndicatorValueReported,))],
    ).create_app()
    return api.install(app, catalog, hours, settings)
