"""The four services' HTTP APIs under real servers, each on a fresh schema, for the checks every route
shares: who may call it at all (401), and which department may see what (403)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from duban.catalog import load_catalog
from duban.workcal import OfficeHours, OfficeSchedule, WorkingCalendar
from services.metrics import api as metrics_api
from services.metrics.settings import MetricsSettings
from services.notifier import api as notifier_api
from services.notifier.settings import NotifierSettings
from services.tracker import store as tracker_store
from services.tracker import api as tracker_api
from tests.conftest import ROOT, Tokens, migrated_schema, read_api, schema_pool, serving
from tests.intake.conftest import intake_settings, running_intake
from tests.notifier.conftest import Clock, Feed, light_changed

CATALOG = load_catalog()
HOURS = OfficeHours(WorkingCalendar(), OfficeSchedule.default())
OPENAPI = ROOT / "contracts" / "openapi"


@dataclass
class Api:
    name: str
    url: str
    pool: asyncpg.Pool | None = None

    @property
    def openapi(self) -> Path:
        return OPENAPI / f"{self.name}.json"

    def operations(self) -> set[tuple[str, str]]:
        document = json.loads(self.openapi.read_text(encoding="utf-8"))
        return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


@contextlib.asynccontextmanager
async def service_api(name: str, database_url: str, kafka_bootstrap: str, tokens: Tokens) -> AsyncIterator[Api]:
    """One service's API as it serves it; intake whole (it has no separate read router)."""
    async with migrated_schema(database_url, name) as schema:
        if name == "intake":
            settings = intake_settings(database_url, schema, kafka_bootstrap, rate_limit_per_s=1e9,
                                       rate_limit_burst=10**9)
            async with running_intake(settings) as intake:
                yield Api(name, intake.url, intake.pool)
            return
        async with schema_pool(database_url, schema) as pool:
            if name == "tracker":
                async with pool.acquire() as conn:
                    await tracker_store.sync_catalog(conn, CATALOG)
                app = tracker_api.install(read_api(tracker_api.router, pool, tokens), CATALOG)
            elif name == "metrics":
                app = metrics_api.install(read_api(metrics_api.router, pool, tokens), CATALOG, HOURS, MetricsSettings())
            else:
                app = notifier_api.install(read_api(notifier_api.router, pool, tokens), CATALOG, HOURS,
                                           NotifierSettings(), Clock())
            async with serving(app) as url:
                yield Api(name, url, pool)


async def escalate(api: Api, task_id: str) -> int:
    """An open escalation of the task (red since the notifier test clock's morning); its id."""
    await Feed(api.pool).send(light_changed(task_id, "red", Clock().now))
    return await api.pool.fetchval("SELECT id FROM escalations WHERE item = $1 AND resolved_at IS NULL", task_id)
