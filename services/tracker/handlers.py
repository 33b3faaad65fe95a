"""Department events → tracker state. Runs inside the batch transaction of duban.consumer."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from duban.catalog import Catalog
from duban.consumer import InboundEvent, PermanentEventError
from duban import outbox
from services.tracker import store

TASK_UPDATED = "duban.tracker.task.updated.v1"


def task_snapshot(row: dict) -> dict:
    """The change event's data: the task's current state (area and departments are catalog facts)."""
    return {"status": row["status"], "percent": row["percent"], "light": row["light"],
            "reported_at": row["last_report_at"].isoformat()}


class TrackerHandlers:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def __call__(self, conn: asyncpg.Connection, event: InboundEvent) -> None:
        if event.type == "duban.task.progress-reported.v1":
            await self.progress_reported(conn, event.ce)
        # Other department event types are accepted by contract and applied as the tracker grows;
        # the ledger still records them so a replay applies them exactly once later.

    async def progress_reported(self, conn: asyncpg.Connection, ce: dict) -> None:
        task_id, data = ce["subject"], ce["data"]
        if task_id not in {t.id for t in self.catalog.tasks}:
            raise PermanentEventError("unknown_task", f"no task {task_id} in the plan")
        changed = await store.record_progress(
            conn, source=ce["source"], event_id=ce["id"], task_id=task_id, at=datetime.fromisoformat(ce["time"]),
            status=data["status"], percent=data["percent"], note=data.get("note"), evidence_url=data.get("evidence_url"))
        if changed:
            await outbox.add(conn, type=TASK_UPDATED, subject=task_id, data=task_snapshot(changed))
