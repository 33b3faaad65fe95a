"""Task counts by status, light, area and lead department, from tracker change events."""

from __future__ import annotations

from collections import Counter as Tally
from datetime import datetime

import asyncpg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from duban.catalog import Catalog
from duban.consumer import InboundEvent

TASK_UPDATED = "duban.tracker.task.updated.v1"
LIGHT_CHANGED = "duban.tracker.task.light-changed.v1"


async def apply_task_updated(conn: asyncpg.Connection, event: InboundEvent, catalog: Catalog) -> None:
    data, task = event.ce["data"], catalog.task(event.ce["subject"])
    # Change events of one task arrive in order (same key), but a replay may resend older ones:
    # keep the newest by event time.
    await conn.execute(
        "INSERT INTO task_state (task_id, area, lead, status, light, percent, as_of) VALUES ($1,$2,$3,$4,$5,$6,$7)"
        " ON CONFLICT (task_id) DO UPDATE SET area = EXCLUDED.area, lead = EXCLUDED.lead, status = EXCLUDED.status,"
        " light = EXCLUDED.light, percent = EXCLUDED.percent, as_of = EXCLUDED.as_of"
        " WHERE task_state.as_of <= EXCLUDED.as_of",
        task.id, task.area, list(task.lead), data["status"], data["light"], data["percent"],
        datetime.fromisoformat(data["reported_at"]))


async def apply_light_changed(conn: asyncpg.Connection, event: InboundEvent, catalog: Catalog) -> None:
    """A light change alone (time passed, no report): the light moves, the reported state stays.
    A task no department has reported on yet is counted too, as not started (all 28 are on the
    overview); its `as_of` of -infinity lets its first report replace that placeholder."""
    task = catalog.task(event.ce["subject"])
    await conn.execute(
        "INSERT INTO task_state (task_id, area, lead, status, light, percent, as_of)"
        " VALUES ($1, $2, $3, 'not_started', $4, 0, '-infinity')"
        " ON CONFLICT (task_id) DO UPDATE SET light = EXCLUDED.light",
        task.id, task.area, list(task.lead), event.ce["data"]["to"])


class TaskCountCollector(Collector):
    """Exposes counts from an in-memory copy refreshed after each applied batch: a scrape never
    touches the database, and its cost is bounded by the 28 tasks, not by history."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    async def refresh(self, pool: asyncpg.Pool) -> None:
        self.rows = [dict(r) for r in await pool.fetch("SELECT task_id, area, lead, status, light FROM task_state")]

    def collect(self):
        by_status = GaugeMetricFamily("duban_tasks", "Plan tasks by status, light and area",
                                      labels=["status", "light", "area"])
        for (status, light, area), n in sorted(Tally((r["status"], r["light"], r["area"]) for r in self.rows).items()):
            by_status.add_metric([status, light, area], n)
        yield by_status
        by_lead = GaugeMetricFamily("duban_department_tasks", "Plan tasks led by each department, by light",
                                    labels=["department", "light"])
        tally = Tally((code, r["light"]) for r in self.rows for code in r["lead"])
        for (code, light), n in sorted(tally.items()):
            by_lead.add_metric([code, light], n)
        yield by_lead
