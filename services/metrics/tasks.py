"""Task counts by status, light, area and lead department, as the tracker's change events left them."""

from __future__ import annotations

from collections import Counter as Tally

import asyncpg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.metrics import store

class TaskCountCollector(Collector):
    """Exposes counts from an in-memory copy refreshed after each applied batch: a scrape never
    touches the database, and its cost is bounded by the 28 tasks, not by history."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    async def refresh(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            self.rows = await store.read_task_state(conn)

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
